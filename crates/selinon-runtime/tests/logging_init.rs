//! `worker_main` installs a log subscriber only when the program has none.

use std::process::{Command, ExitCode};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Fine, import: tasks}
        flows: [fine]
        flow-definitions:
          - name: fine
            edges:
              - {from: , to: Fine}
        "#
    );
}

mod tasks {
    use selinon_runtime::{Json, Task, TaskContext, TaskResult};

    #[derive(Default)]
    pub struct Fine;

    impl Task for Fine {
        type Args = Json;
        type Output = Json;

        async fn run(&self, _ctx: &TaskContext, node_args: Json) -> TaskResult {
            Ok(node_args)
        }
    }
}

fn worker_help() -> ExitCode {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(selinon_runtime::amqp::worker_main(
            &config::SYSTEM,
            ["--help".to_string()],
            |w| w,
        ))
}

const OWN_SUBSCRIBER: &str = "SELINON_TEST_OWN_SUBSCRIBER";

#[test]
fn worker_main_installs_a_subscriber_only_when_none_is_set() {
    if std::env::var_os(OWN_SUBSCRIBER).is_some() {
        // The child: the program installed its own subscriber before `worker_main`.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = seen.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_writer(move || Sink(writer.clone()))
                .with_ansi(false)
                .finish(),
        )
        .unwrap();
        assert_eq!(worker_help(), ExitCode::SUCCESS);
        assert!(!selinon_runtime::logging::init(), "a second subscriber");
        tracing::warn!("still mine");
        let seen = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert!(seen.contains("still mine"), "{seen}");
        return;
    }
    // This process: no subscriber until `worker_main` installs one.
    assert!(!tracing::dispatcher::has_been_set());
    assert_eq!(worker_help(), ExitCode::SUCCESS);
    assert!(tracing::dispatcher::has_been_set());
    // The same test in a child process that sets its own first.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_main_installs_a_subscriber_only_when_none_is_set",
            "--nocapture",
        ])
        .env(OWN_SUBSCRIBER, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the child ran the test"
    );
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
