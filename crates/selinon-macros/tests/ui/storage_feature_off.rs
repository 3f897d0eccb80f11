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
    selinon_macros::include_flows!("ui-flows/redis.yml", "ui-flows/redis.yml");
}

// The Redis storage needs the runtime's `redis` feature, which this crate does not enable.
fn main() {}
