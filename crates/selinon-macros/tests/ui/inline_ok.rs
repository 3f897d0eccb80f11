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
        "#
    );
}

fn main() {
    assert_eq!(flows::SYSTEM.flows[0].name, "hello");
    // Origins are the Rust file's lines.
    assert_eq!(flows::SYSTEM.tasks[0].origin, concat!(file!(), ":23"));
    assert_eq!(flows::SYSTEM.flows[0].origin, concat!(file!(), ":27"));
}
