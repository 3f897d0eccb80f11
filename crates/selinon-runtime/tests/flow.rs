//! Counterpart of upstream `test/test_flow.py` (a flow end to end, throttling) and of
//! `test/test_trace.py` in part: the in-process runtime's public API.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use selinon_runtime::trace::JsonLinesSink;
use selinon_runtime::{json, Json, RunError, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Task1, import: common, classname: Scripted, storage: Memory}
          - {name: Task2, import: common, classname: Scripted, storage: Memory}
          - {name: Task3, import: common, classname: Scripted, storage: Memory}
          - name: Throttled
            import: common
            classname: Scripted
            storage: Memory
            throttling: {milliseconds: 40}
          - {name: Add, import: tasks, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        global:
          trace:
            - function: {name: on_trace, import: tasks}
        flows: [chain, throttled, adder]
        flow-definitions:
          - name: chain
            edges:
              - {from: , to: Task1}
              - from: Task1
                to: Task2
                condition: {name: fieldEqual, args: {key: go, value: true}}
              - {from: Task2, to: Task3}
          - name: throttled
            edges:
              - {from: , to: [Throttled, Throttled, Throttled]}
          # A cycle of one task.
          - name: adder
            edges:
              - {from: , to: Add}
              - from: Add
                to: Add
                condition: {name: fieldLess, args: {key: value, value: 5}}
        "#
    );
}
use config::SYSTEM;

mod tasks {
    use std::sync::Mutex;

    use selinon_runtime::{json, Json, Task, TaskContext, TaskResult};

    /// Events seen by the `function` trace sink of `global.trace`.
    pub static FUNCTION_TRACE: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub fn on_trace(event: &str, _details: &Json) {
        FUNCTION_TRACE.lock().unwrap().push(event.to_string());
    }

    /// A small real task: adds 1 to `value` of its parent `Add`'s result (or of the flow
    /// arguments for the first one).
    #[derive(Default)]
    pub struct Add;

    impl Task for Add {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, node_args: Json) -> TaskResult {
            let value = match ctx.parent_task_result("Add").await {
                Ok(parent) => parent["value"].as_i64().unwrap_or(0),
                Err(_) => node_args["value"].as_i64().unwrap_or(0),
            };
            Ok(json!({"value": value + 1}))
        }
    }
}

// upstream: test_flow.py::test_simple_flow — the five-line API.
#[tokio::test]
async fn a_chain_runs_to_the_end() {
    let script = Script::new();
    script.set("Task1", Behaviour::Result(json!({"go": true})));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt
        .run(&config::chain::FLOW, json!({"user": "x"}))
        .await
        .unwrap();
    assert!(outcome.is_finished());
    assert_eq!(script.count("Task3"), 1);
    let names: Vec<&String> = outcome.finished_nodes.keys().collect();
    assert_eq!(names, ["Task1", "Task2", "Task3"]);
    // Each task got the flow arguments and its parent's id.
    let t2 = &script.runs_of("Task2")[0];
    assert_eq!(t2.node_args, json!({"user": "x"}));
    assert_eq!(t2.parent, json!({"Task1": outcome.finished("Task1")[0]}));
    let serialised = serde_json::to_value(&outcome).unwrap();
    assert_eq!(serialised["status"], "finished");
}

// A condition reading a result that makes it false: the chain stops, the flow succeeds.
#[tokio::test]
async fn a_false_condition_stops_the_chain() {
    let script = Script::new();
    script.set("Task1", Behaviour::Result(json!({"go": false})));
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run(&config::chain::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished());
    assert_eq!(script.count("Task2"), 0);
    let cond_false = rec.of(TraceEvent::EdgeCondFalse);
    assert_eq!(cond_false.len(), 1);
    assert_eq!(
        cond_false[0]["condition"],
        "fieldEqual(db.get('Task1'), key='go', value=True)"
    );
}

// A real task reading its parent's result through the context, in a cycle.
#[tokio::test]
async fn a_cycle_of_real_tasks() {
    let rt = Runtime::new(&SYSTEM);
    let outcome = rt
        .run(&config::adder::FLOW, json!({"value": 0}))
        .await
        .unwrap();
    assert!(outcome.is_finished());
    let ids = outcome.finished("Add");
    assert_eq!(ids.len(), 5);
    let last = rt.task_result("adder", "Add", &ids[4]).await.unwrap();
    assert_eq!(last, json!({"value": 5}));
}

// upstream: test_flow.py::test_throttle — successive starts of a throttled task are spaced.
#[tokio::test]
async fn throttled_starts_are_spaced() {
    let s = Stepper::start(&SYSTEM, "throttled", Json::Null).await;
    let countdowns: Vec<Duration> = s.started.iter().map(|n| n.countdown).collect();
    assert_eq!(countdowns[0], Duration::ZERO);
    // Spaced by the interval (minus the few microseconds between the starts).
    assert!(countdowns[1] > Duration::from_millis(35), "{countdowns:?}");
    assert!(countdowns[2] > Duration::from_millis(75), "{countdowns:?}");

    // End to end: the three runs take at least two intervals.
    let script = Script::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let start = std::time::Instant::now();
    let outcome = rt.run(&config::throttled::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished());
    assert!(start.elapsed() >= Duration::from_millis(75));
    assert_eq!(script.count("Throttled"), 3);
}

#[tokio::test]
async fn unknown_flow_is_an_error() {
    let rt = Runtime::new(&SYSTEM);
    let err = rt.run_flow_by_name("nope", Json::Null).await.unwrap_err();
    assert!(matches!(err, RunError::UnknownFlow { .. }));
    assert!(err.to_string().contains("chain"), "{err}");
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

// upstream: test_trace.py — events of a run, in order, to the sinks of `global.trace` and
// to a JSON-lines writer.
#[tokio::test]
async fn trace_events_of_a_run() {
    let script = Script::new();
    script.set("Task1", Behaviour::Result(json!({"go": true})));
    let buf = Buf::default();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(JsonLinesSink::new(buf.clone()))
        .build();
    let outcome = rt.run(&config::chain::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished());
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let events: Vec<String> = text
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("FLOW_SCHEDULE"));
    assert_eq!(events.last().map(String::as_str), Some("FLOW_END"));
    for e in [
        "DISPATCHER_WAKEUP",
        "FLOW_START",
        "TASK_SCHEDULE",
        "TASK_START",
        "STORAGE_CONNECT",
        "STORAGE_STORE",
        "TASK_END",
        "NODE_SUCCESSFUL",
        "STORAGE_RETRIEVE",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} missing in {events:?}");
    }
    assert_eq!(events.iter().filter(|e| *e == "TASK_END").count(), 3);
    // Every pass but the last leaves the flow running: DISPATCHER_RETRY, as upstream's
    // dispatcher reports each time it re-queues itself (at least once per task of the chain).
    let count = |name: &str| events.iter().filter(|e| *e == name).count();
    assert_eq!(count("DISPATCHER_RETRY"), count("DISPATCHER_WAKEUP") - 1);
    assert!(count("DISPATCHER_RETRY") >= 3, "{events:?}");
    let retry: Json = text
        .lines()
        .map(|l| serde_json::from_str::<Json>(l).unwrap())
        .find(|v| v["event"] == "DISPATCHER_RETRY")
        .unwrap();
    assert_eq!(retry["details"]["flow_name"], "chain");
    assert_eq!(
        retry["details"]["state"]["active_nodes"][0]["name"],
        "Task1"
    );
    // The `function` sink of `global.trace` got them too.
    assert!(tasks::FUNCTION_TRACE
        .lock()
        .unwrap()
        .iter()
        .any(|e| e == "FLOW_END"));
}

// Many flows at once on one runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_flows_concurrently() {
    let script = Script::new();
    script.set("Task1", Behaviour::Result(json!({"go": true})));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .without_config_trace()
        .max_concurrent_tasks(8)
        .build();
    let handles: Vec<_> = (0..50)
        .map(|i| rt.run(&config::chain::FLOW, json!({"i": i})))
        .collect();
    for h in handles {
        assert!(h.await.unwrap().is_finished());
    }
    assert_eq!(script.count("Task3"), 50);
}
