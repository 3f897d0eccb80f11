//! What the in-process runtime logs through `tracing`: failures always (without `global.trace`),
//! every event in `task` / `dispatcher` spans when `global.trace` names `logging`.

use std::sync::{Arc, Mutex};

use selinon_runtime::{json, Json, Runtime};

mod plain {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Fine, import: tasks}
          - {name: Broken, import: tasks}
        flows: [fine, broken]
        flow-definitions:
          - name: fine
            edges:
              - {from: , to: Fine}
          - name: broken
            edges:
              - {from: , to: Broken}
        "#
    );
}

mod logged {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Fine, import: tasks}
          - {name: Broken, import: tasks}
        flows: [fine, broken]
        flow-definitions:
          - name: fine
            edges:
              - {from: , to: Fine}
          - name: broken
            edges:
              - {from: , to: Broken}
        global:
          trace: [{logging: true}]
        "#
    );
}

mod tasks {
    use selinon_runtime::{json, Json, Task, TaskContext, TaskError, TaskResult};

    #[derive(Default)]
    pub struct Fine;

    impl Task for Fine {
        type Args = Json;
        type Output = Json;

        async fn run(&self, _ctx: &TaskContext, _node_args: Json) -> TaskResult {
            // A task's own log lines carry the ids of its span.
            tracing::info!("fetching");
            Ok(json!({"n": 1}))
        }
    }

    #[derive(Default)]
    pub struct Broken;

    impl Task for Broken {
        type Args = Json;
        type Output = Json;

        async fn run(&self, _ctx: &TaskContext, _node_args: Json) -> TaskResult {
            Err(TaskError::failed("disk full"))
        }
    }
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs both flows under a plain-text subscriber (level `max`) and returns what it wrote. The
/// test runtime is single-threaded: the runtime's spawned work logs to the scoped subscriber.
async fn logs(system: &'static selinon_runtime::SystemSpec, max: tracing::Level) -> String {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(max)
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = Runtime::new(system);
    let fine = runtime.run_flow_by_name("fine", Json::Null).await.unwrap();
    assert!(fine.is_finished());
    let broken = runtime
        .run_flow_by_name("broken", json!({"name": "serde"}))
        .await
        .unwrap();
    assert!(broken.is_failed());
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text
}

#[tokio::test]
async fn without_global_trace_failures_are_logged_and_nothing_else() {
    let text = logs(&plain::SYSTEM, tracing::Level::TRACE).await;
    let selinon: Vec<&str> = text.lines().filter(|l| l.contains(" selinon: ")).collect();
    assert_eq!(
        selinon.len(),
        3,
        "task, node and flow failures only:\n{text}"
    );
    let task = selinon
        .iter()
        .find(|l| l.contains("task Broken failed"))
        .unwrap_or_else(|| panic!("no task failure line:\n{text}"));
    assert!(
        task.starts_with(" WARN task{flow_name=broken dispatcher_id="),
        "{task}"
    );
    assert!(task.contains(" task_name=Broken task_id="), "{task}");
    assert!(
        task.contains("event=\"TASK_FAILURE\" error=disk full"),
        "{task}"
    );
    assert!(
        selinon
            .iter()
            .any(|l| l.starts_with("ERROR ") && l.contains("flow broken failed")),
        "{text}"
    );
    // The task's own line, in its span.
    assert!(
        text.lines()
            .any(|l| l.starts_with(" INFO task{flow_name=fine ")
                && l.contains(" task_name=Fine ")
                && l.ends_with(": logging::tasks: fetching")),
        "{text}"
    );
}

#[tokio::test]
async fn the_logging_sink_logs_every_event_at_its_level_once() {
    let text = logs(&logged::SYSTEM, tracing::Level::DEBUG).await;
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{text}"))
    };
    // A discarded result (a task without a storage) is a debug line, not a warning.
    let discard = line("TASK_DISCARD_RESULT");
    assert!(
        discard.starts_with("DEBUG task{flow_name=fine "),
        "{discard}"
    );
    assert!(
        discard.ends_with(
            r#"event="TASK_DISCARD_RESULT" details={"queue":"celery","result":{"n":1}}"#
        ),
        "{discard}"
    );
    let start = line("event=\"TASK_START\"");
    assert!(start.starts_with(" INFO task{flow_name=fine "), "{start}");
    // Dispatcher passes run in a span with the flow's ids.
    let flow_start = line("event=\"FLOW_START\"");
    assert!(
        flow_start.starts_with(" INFO dispatcher{flow_name=fine dispatcher_id="),
        "{flow_start}"
    );
    // Failures once (the sink logs them; the tracer does not repeat them).
    assert_eq!(text.matches("task Broken failed").count(), 1, "{text}");
    assert_eq!(
        text.matches("selinon: flow broken failed").count(),
        1,
        "{text}"
    );
}
