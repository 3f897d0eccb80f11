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

fn main() {
    assert_eq!(flows::SYSTEM.flows[0].name, "hello");
    // The flow's handle is the system's flow.
    assert!(std::ptr::eq(flows::SYSTEM.flows[0], flows::hello::FLOW.spec()));
}
