mod app {
    pub mod tasks {
        use selinon_runtime::{Json, Task, TaskContext, TaskResult};

        #[derive(Default)]
        pub struct Hello;

        impl Task for Hello {
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
    assert_eq!(flows::hello::Node::from_name("Hello"), Some(flows::hello::Node::Hello));
}
