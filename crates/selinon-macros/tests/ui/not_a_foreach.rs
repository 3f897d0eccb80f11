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

    pub mod fns {
        use selinon_runtime::Json;

        /// Takes the flow arguments only: neither shape of a foreach function.
        pub fn items(node_args: &Json) -> Vec<Json> {
            vec![node_args.clone()]
        }
    }
}

mod flows {
    selinon_macros::flows!(
        r#"
        tasks:
          - name: Hello
            import: app.tasks
        flows: [hello]
        flow-definitions:
          - name: hello
            edges:
              - from:
                to: Hello
                foreach: {function: items, import: app.fns}
        "#
    );
}

fn main() {
    let _ = &flows::SYSTEM;
}
