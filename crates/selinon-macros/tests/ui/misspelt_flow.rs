mod app {
    pub mod tasks {
        use selinon_runtime::{Json, Task, TaskContext, TaskResult};

        #[derive(Default)]
        pub struct Hello;

        impl Task for Hello {
            type Args = Json;
            type Output = Json;

            async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
                Ok(args)
            }
        }
    }
}

mod flows {
    selinon_macros::include_flows!("ui-flows/hello.yml", "ui-flows/hello.yml");
}

/// A flow is started by its handle: a misspelt flow does not compile.
#[allow(dead_code)]
fn start(runtime: &selinon_runtime::Runtime) -> selinon_runtime::FlowHandle {
    runtime.run(&flows::helo::FLOW, selinon_runtime::json!({}))
}

fn main() {}
