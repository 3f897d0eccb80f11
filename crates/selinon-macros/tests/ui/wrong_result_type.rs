//! A task's result is read as that task's type: reading it as another does not compile.

mod app {
    pub mod tasks {
        use selinon_macros::task;
        use selinon_runtime::{AnyArgs, TaskContext, TaskResult};
        use serde::{Deserialize, Serialize};

        #[derive(Serialize, Deserialize)]
        pub struct Greeting {
            pub text: String,
        }

        #[task]
        pub async fn hello(ctx: &TaskContext, _args: AnyArgs) -> TaskResult<Greeting> {
            let previous: u64 = ctx.parent_result::<crate::flows::tasks::Hello>().await?;
            Ok(Greeting {
                text: format!("hello again ({previous})"),
            })
        }
    }
}

mod flows {
    selinon_macros::include_flows!("ui-flows/hello.yml", "ui-flows/hello.yml");
}

fn main() {}
