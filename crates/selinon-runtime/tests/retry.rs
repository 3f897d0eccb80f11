//! Counterparts of upstream `test/test_retry.py`, `test/test_flow_retry.py`,
//! `test/test_dispatcher.py` and `test/test_selinon_task_envelope.py`: task retries
//! (`max_retry`, `retry_countdown`, user retries, fatal errors, panics), flow retries and
//! dispatcher retries after storage issues.

mod common;

use common::*;
use selinon_runtime::engine::PassOutcome;
use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Retrying, import: common, classname: Scripted, storage: Memory, max_retry: 2}
          - {name: Once, import: common, classname: Scripted, storage: Memory, max_retry: 1}
          - {name: Task1, import: common, classname: Scripted, storage: Memory}
          - {name: Panicky, import: tasks, storage: Memory, max_retry: 3}
          - {name: Task2, import: common, classname: Scripted, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [retrying, once, flaky_flow, panicking, reading, reading_after_others, panicking_foreach]
        flow-definitions:
          - name: retrying
            edges:
              - {from: , to: Retrying}
          - name: once
            edges:
              - {from: , to: Once}
          - name: flaky_flow
            max_retry: 2
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
          - name: panicking
            edges:
              - {from: , to: Panicky}
          - name: reading
            edges:
              - {from: , to: Task1}
              - from: Task1
                to: Task2
                condition: {name: fieldExist, args: {key: ok}}
          - name: reading_after_others
            edges:
              - {from: , to: [Retrying, Task1, Once, Panicky]}
              - {from: Retrying, to: Task2}
              - from: Task1
                to: Task2
                condition: {name: fieldExist, args: {key: ok}}
          - name: panicking_foreach
            edges:
              - {from: , to: [Retrying, Task1]}
              - {from: Retrying, to: Task2}
              - from: Task1
                to: Task2
                foreach: {function: boom, import: tasks}
        "#
    );
}
use config::SYSTEM;

mod tasks {
    use selinon_runtime::{json, Db, Json, Task, TaskContext, TaskResult};

    /// A foreach function that panics.
    pub fn boom(_db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
        panic!("boom")
    }

    /// A task that panics on its first two runs of a flow argument `panics`, then succeeds.
    #[derive(Default)]
    pub struct Panicky;

    impl Task for Panicky {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, node_args: Json) -> TaskResult {
            let panics = node_args["panics"].as_u64().unwrap_or(u64::MAX);
            if u64::from(ctx.retried_count) < panics {
                panic!("Panicky panics on attempt {}", ctx.retried_count + 1);
            }
            Ok(json!({"survived": ctx.retried_count}))
        }
    }
}

fn runtime(script: &std::sync::Arc<Script>, recorder: &TraceRecorder) -> Runtime {
    Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .build()
}

// upstream: test_selinon_task_envelope.py::test_selinon_retry (retry, then success)
#[tokio::test]
async fn task_retries_then_succeeds() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Retrying", Behaviour::FailTimes(2, json!({"ok": 1})));
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::retrying::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let runs = script.runs_of("Retrying");
    assert_eq!(runs.len(), 3);
    assert_eq!(
        runs.iter().map(|r| r.retried_count).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // A retry keeps the task id, so the flow sees one node.
    assert!(runs.iter().all(|r| r.task_id == runs[0].task_id));
    assert_eq!(outcome.finished("Retrying"), [runs[0].task_id.clone()]);
    assert_eq!(rec.count(TraceEvent::TaskRetry), 2);
    assert_eq!(rec.count(TraceEvent::TaskEnd), 1);
    let stored = rt
        .task_result("retrying", "Retrying", &runs[0].task_id)
        .await
        .unwrap();
    assert_eq!(stored, json!({"ok": 1}));
}

// Task retries exhausted: the task fails, then the flow.
#[tokio::test]
async fn task_retries_exhausted_fail_the_flow() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Retrying", Behaviour::Fail);
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::retrying::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(script.count("Retrying"), 3, "max_retry 2: three attempts");
    assert_eq!(outcome.failed("Retrying").len(), 1);
    assert_eq!(rec.count(TraceEvent::TaskFailure), 1);
    // The in-memory storage has no store_error.
    assert_eq!(rec.count(TraceEvent::StorageOmitStoreError), 1);
    assert_eq!(rec.count(TraceEvent::FlowFailure), 1);
}

// A fatal error is not retried.
#[tokio::test]
async fn fatal_errors_are_not_retried() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Retrying", Behaviour::Fatal);
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::retrying::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(script.count("Retrying"), 1);
}

// upstream: test_selinon_task.py::test_retry (a user retry is not counted)
#[tokio::test]
async fn user_retries_are_not_counted() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Once", Behaviour::RetryTimes(5, json!({"done": true})));
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::once::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished());
    let runs = script.runs_of("Once");
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r.retried_count == 0));
    let user: Vec<bool> = rec
        .of(TraceEvent::TaskRetry)
        .iter()
        .map(|d| d["user_retry"].as_bool().unwrap())
        .collect();
    assert_eq!(user, [true; 5]);
}

// A panicking task is reported failed (after its retries) and the worker goes on.
#[tokio::test]
async fn a_panicking_task_fails_and_the_worker_goes_on() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::panicking::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.failed("Panicky").len(), 1);
    assert_eq!(rec.count(TraceEvent::TaskRetry), 3);
    let failure = &rec.of(TraceEvent::TaskFailure)[0];
    assert!(
        failure["what"].as_str().unwrap().contains("Panicky panics"),
        "{failure}"
    );

    // The same runtime goes on: a panic counts as an ordinary failure, so retries recover.
    let outcome = rt
        .run(&config::panicking::FLOW, json!({"panics": 2}))
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let id = &outcome.finished("Panicky")[0];
    let stored = rt.task_result("panicking", "Panicky", id).await.unwrap();
    assert_eq!(stored, json!({"survived": 2}));
}

// upstream: test_flow_retry.py / test_dispatcher.py::test_flow_error_retry
#[tokio::test]
async fn flow_retry_restarts_from_scratch() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Task1", Behaviour::FailTimes(2, json!({})));
    let rt = runtime(&script, &rec);
    let outcome = rt
        .run(&config::flaky_flow::FLOW, json!({"a": 1}))
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(outcome.retried_count, 2);
    assert_eq!(script.count("Task1"), 3);
    assert_eq!(script.count("Task2"), 1);
    assert_eq!(rec.count(TraceEvent::FlowRetry), 2);
    assert_eq!(rec.count(TraceEvent::FlowStart), 3);
    let will_retry: Vec<bool> = rec
        .of(TraceEvent::FlowFailure)
        .iter()
        .map(|d| d["will_retry"].as_bool().unwrap())
        .collect();
    assert_eq!(will_retry, [true, true]);
    // Every attempt had the flow's arguments and its own task ids.
    let runs = script.runs_of("Task1");
    assert!(runs.iter().all(|r| r.node_args == json!({"a": 1})));
    assert_eq!(
        sorted(&runs.iter().map(|r| r.task_id.clone()).collect::<Vec<_>>()).len(),
        3
    );
    // The final state is the last attempt's.
    assert_eq!(outcome.finished("Task1").len(), 1);
    assert!(outcome.failed_nodes.is_empty());
}

// Flow retries exhausted: the flow fails with the last attempt's state.
#[tokio::test]
async fn flow_retries_exhausted() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Task1", Behaviour::Fail);
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::flaky_flow::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.retried_count, 2);
    assert_eq!(script.count("Task1"), 3);
    assert_eq!(outcome.failed("Task1").len(), 1);
    let will_retry: Vec<bool> = rec
        .of(TraceEvent::FlowFailure)
        .iter()
        .map(|d| d["will_retry"].as_bool().unwrap())
        .collect();
    assert_eq!(will_retry, [true, true, false]);
}

// upstream: test_retry.py::test_retrieve_issue (a storage error while evaluating a condition
// repeats the pass later on the same state; nothing is started by the failed pass)
#[tokio::test]
async fn storage_issue_in_a_condition_repeats_the_pass() {
    let mut s = Stepper::start(&SYSTEM, "reading", Json::Null).await;
    let t1 = s.id("Task1");
    s.env.broken.lock().unwrap().push(t1.clone());
    s.set_finished(&t1, json!({"ok": true}));
    let before = s.message.clone();
    s.pass().await;
    assert!(matches!(s.outcome, PassOutcome::RetryPass { .. }));
    assert!(s.started.is_empty());
    assert_eq!(s.message, before, "the input state is kept");
    assert_eq!(s.env.recorder.count(TraceEvent::StorageIssue), 1);
    // The storage is back: the repeated pass sees the same completion.
    s.env.broken.lock().unwrap().clear();
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2"]);
}

// A pass that starts nodes, records a failure and then cannot read a storage gives back the
// state it was given, to the node (the pass changes its message in place and undoes that).
#[tokio::test]
async fn storage_issue_after_other_changes_keeps_the_input_state() {
    let mut s = Stepper::start(&SYSTEM, "reading_after_others", Json::Null).await;
    let (retrying, t1, once) = (s.id("Retrying"), s.id("Task1"), s.id("Once"));
    s.env.broken.lock().unwrap().push(t1.clone());
    s.set_finished(&retrying, json!({}));
    s.set_finished(&t1, json!({"ok": true}));
    s.set_failed(&once);
    let before = s.message.clone();
    s.pass().await;
    assert!(matches!(s.outcome, PassOutcome::RetryPass { .. }));
    assert!(s.started.is_empty());
    assert_eq!(s.message, before, "the input state is kept");
    s.env.broken.lock().unwrap().clear();
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2", "Task2"]);
    let state = s.state();
    assert_eq!(state.failed_nodes["Once"], [once]);
    let active: Vec<&str> = state.active_nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(active, ["Panicky", "Task2", "Task2"]);
}

// A pass that panics after it started nodes fails the flow with the state it was given.
#[tokio::test]
async fn a_panic_after_other_changes_fails_with_the_input_state() {
    let mut s = Stepper::start(&SYSTEM, "panicking_foreach", Json::Null).await;
    let (retrying, t1) = (s.id("Retrying"), s.id("Task1"));
    s.set_finished(&retrying, json!({}));
    s.set_finished(&t1, json!({}));
    let before = s.message.clone();
    s.pass().await;
    assert!(s.is_failed());
    assert!(s.started.is_empty());
    assert_eq!(s.message, before, "the input state is reported");
    assert_eq!(s.env.recorder.count(TraceEvent::DispatcherFailure), 1);
}

// upstream: test_dispatcher.py::test_dispacher_error (a failing pass fails the flow at once)
#[tokio::test]
async fn dispatcher_failure_fails_the_flow_without_retry() {
    let mut s = Stepper::start(&SYSTEM, "retrying", Json::Null).await;
    s.message.flow_name = "no_such_flow".into();
    s.pass().await;
    assert!(s.is_failed());
    assert_eq!(s.env.recorder.count(TraceEvent::DispatcherFailure), 1);
}
