//! Counterparts of upstream `test/test_node_failures.py` and `test/test_node_failures_cond.py`:
//! fallback selection (§3.12), `fallback: true`, eager failures, failed sub-flows.

mod common;

use common::*;
use selinon_runtime::engine::{FailureReason, PassOutcome};
use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Task1, import: common, classname: Scripted, storage: Memory}
          - {name: Task2, import: common, classname: Scripted, storage: Memory}
          - {name: Task3, import: common, classname: Scripted, storage: Memory}
          - {name: Task4, import: common, classname: Scripted, storage: Memory}
          - {name: Task5, import: common, classname: Scripted, storage: Memory}
          - {name: Task6, import: common, classname: Scripted, storage: Memory}
          - {name: Task7, import: common, classname: Scripted, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [single, fb_true, fb_start, two, cond, ties, eager, many, to_flow, nowait_fb, sub,
                failing_sub, outer, sub_fb]
        flow-definitions:
          - name: single
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
          - name: fb_true
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
            failures:
              - {nodes: Task1, fallback: true}
          - name: fb_start
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
            failures:
              - {nodes: Task1, fallback: Task3}
          - name: two
            edges:
              - {from: Task1, to: Task3}
              - {from: Task2, to: Task4}
              - {from: , to: [Task1, Task2]}
            failures:
              - {nodes: [Task1, Task2], fallback: Task5}
              - {nodes: Task1, fallback: Task6}
          # Task1's alternatives, tried in order.
          - name: cond
            edges:
              - {from: Task1, to: Task2}
              - {from: , to: Task1}
            failures:
              - {nodes: Task1, fallback: Task3}
              - nodes: Task1
                fallback: [Task4, Task5]
                condition: {name: argsFieldEqual, args: {key: x, value: 1}}
              - {nodes: Task1, fallback: [Task6, Task7]}
          - name: ties
            edges:
              - {from: , to: [Task1, Task2, Task3]}
            failures:
              - {nodes: [Task1, Task2], fallback: Task4}
              - {nodes: [Task1, Task3], fallback: Task5}
          - name: eager
            eager_failures: Task2
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
              - {from: Task1, to: Task3}
              - {from: Task2, to: Task4}
          - name: many
            edges:
              - {from: , to: [Task2, Task1, Task1]}
            failures:
              - {nodes: Task1, fallback: true}
          # Task1 falls back to the sub-flow `sub`, which gets the flow's arguments but no
          # parent, though `sub` propagates the parent when an edge starts it (after Task2).
          - name: to_flow
            propagate_node_args: [sub]
            propagate_parent: [sub]
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: Task2}
              - {from: Task2, to: sub}
            failures:
              - {nodes: Task1, fallback: sub}
          - name: nowait_fb
            nowait: Task3
            edges:
              - {from: , to: [Task1, Task2]}
            failures:
              - {nodes: Task1, fallback: Task3}
              - {nodes: Task2, fallback: Task4}
          - name: sub
            edges:
              - {from: , to: Task7}
          - name: failing_sub
            edges:
              - {from: , to: sub}
            failures:
              - {nodes: sub, fallback: true}
          # `sub` fails unhandled, next to a failing task.
          - name: outer
            edges:
              - {from: , to: [sub, Task1]}
          - name: sub_fb
            edges:
              - {from: , to: sub}
            failures:
              - {nodes: sub, fallback: Task3}
        "#
    );
}
use config::SYSTEM;

// upstream: test_node_failures.py::test_single_failure_flow_fail
#[tokio::test]
async fn single_failure_fails_the_flow() {
    let mut s = Stepper::start(&SYSTEM, "single", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    let PassOutcome::Failed(result) = &s.outcome else {
        panic!("flow should fail: {:?}", s.outcome)
    };
    assert_eq!(result.failed_nodes["Task1"], [t1]);
    assert!(s.all_started.iter().all(|n| n.name != "Task2"));
    assert_eq!(s.env.recorder.count(TraceEvent::FlowFailure), 1);
}

// upstream: test_node_failures.py::test_single_failure_flow_fallback_true
#[tokio::test]
async fn fallback_true_marks_the_failure_handled() {
    let mut s = Stepper::start(&SYSTEM, "fb_true", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    assert!(s.is_finished(), "{:?}", s.outcome);
    assert!(s.started.is_empty());
    assert!(s.state().failed_nodes.is_empty());
    assert_eq!(s.env.recorder.count(TraceEvent::FallbackStart), 1);
}

// upstream: test_node_failures.py::test_single_failure_flow_fallback_start
#[tokio::test]
async fn fallback_starts_with_no_parent_and_the_flow_arguments() {
    let mut s = Stepper::start(&SYSTEM, "fb_start", json!({"a": 1})).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    assert!(s.is_running());
    assert_eq!(s.started_names(), ["Task3"]);
    assert_eq!(s.started[0].parent, Json::Null);
    assert_eq!(s.started[0].node_args, json!({"a": 1}));
    assert!(s.state().failed_nodes.is_empty());
    let t3 = s.id("Task3");
    s.set_finished(&t3, json!(null));
    s.pass().await;
    assert!(s.is_finished());
}

// upstream: test_node_failures.py::test_two_failures_fallback_start (plus: the largest
// failed set wins over a smaller one)
#[tokio::test]
async fn two_failures_take_the_fallback_of_the_pair() {
    let mut s = Stepper::start(&SYSTEM, "two", Json::Null).await;
    assert_eq!(sorted(&s.state().waiting_edges), [0, 1]);
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_failed(&t1);
    s.pass().await;
    // Task2 is still active: fallbacks wait until nothing is active.
    assert!(s.started.is_empty());
    assert!(s.state().failed_nodes.contains_key("Task1"));
    s.set_failed(&t2);
    s.pass().await;
    assert_eq!(s.started_names(), ["Task5"]);
    assert!(s.state().failed_nodes.is_empty());
    let t5 = s.id("Task5");
    s.set_finished(&t5, json!(null));
    s.pass().await;
    assert!(s.is_finished());
}

// upstream: test_node_failures.py::test_singe_failure_flow_fallback (the single-node entry
// applies when only that node failed)
#[tokio::test]
async fn one_failure_of_two_takes_the_single_fallback() {
    let mut s = Stepper::start(&SYSTEM, "two", Json::Null).await;
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_failed(&t1);
    s.set_finished(&t2, json!(null));
    s.pass().await;
    // Fallbacks wait until nothing is active.
    assert_eq!(s.started_names(), ["Task4"]);
    let t4 = s.id("Task4");
    s.set_finished(&t4, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task6"]);
}

// upstream: test_node_failures.py::test_single_failure_finish_wait (no fallback for the
// failed node: the flow waits for the active ones, then fails)
#[tokio::test]
async fn failure_without_fallback_waits_then_fails() {
    let mut s = Stepper::start(&SYSTEM, "two", Json::Null).await;
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_failed(&t2);
    s.pass().await;
    assert!(s.is_running());
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
    let t3 = s.id("Task3");
    s.set_finished(&t3, json!(null));
    s.pass().await;
    assert!(s.is_failed(), "{:?}", s.outcome);
}

// upstream: test_node_failures_cond.py::test_multi_failures (every alternative whose
// condition holds runs)
#[tokio::test]
async fn every_true_alternative_runs() {
    let mut s = Stepper::start(&SYSTEM, "cond", json!({"x": 2})).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3", "Task6", "Task7"]);
    assert_eq!(s.env.recorder.count(TraceEvent::FallbackCondFalse), 1);
    assert_eq!(s.env.recorder.count(TraceEvent::FallbackCondTrue), 2);
}

// upstream: test_node_failures_cond.py::test_single_failure_cond_true
#[tokio::test]
async fn fallback_condition_on_the_flow_arguments() {
    let mut s = Stepper::start(&SYSTEM, "cond", json!({"x": 1})).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    assert_eq!(
        s.started_names(),
        ["Task3", "Task4", "Task5", "Task6", "Task7"]
    );
}

// spec §3.12: sets of equal size are tried in lexicographic order; a set whose node was
// consumed by an earlier one is skipped; failures left over fail the flow.
#[tokio::test]
async fn ties_go_to_the_lexicographically_first_set() {
    let mut s = Stepper::start(&SYSTEM, "ties", Json::Null).await;
    for t in ["Task1", "Task2", "Task3"] {
        let id = s.id(t);
        s.set_failed(&id);
    }
    s.pass().await;
    assert_eq!(s.started_names(), ["Task4"]);
    assert_eq!(s.state().failed_nodes.keys().collect::<Vec<_>>(), ["Task3"]);
    let t4 = s.id("Task4");
    s.set_finished(&t4, json!(null));
    s.pass().await;
    let PassOutcome::Failed(result) = &s.outcome else {
        panic!("Task3 is unhandled: {:?}", s.outcome)
    };
    assert!(result.failed_nodes.contains_key("Task3"));
}

// upstream: test_node_failures.py::test_eager_failures
#[tokio::test]
async fn eager_failure_fails_at_once() {
    let mut s = Stepper::start(&SYSTEM, "eager", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2", "Task3"]);
    let t2 = s.id("Task2");
    s.set_failed(&t2);
    s.pass().await;
    let PassOutcome::Failed(reported) = &s.outcome else {
        panic!("eager failure: {:?}", s.outcome)
    };
    let active: Vec<&str> = reported
        .active_nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(active, ["Task3"]);
    assert_eq!(
        reported.finished_nodes.keys().collect::<Vec<_>>(),
        ["Task1"]
    );
    assert_eq!(reported.failed_nodes.keys().collect::<Vec<_>>(), ["Task2"]);
    assert_eq!(s.env.recorder.count(TraceEvent::EagerFailure), 1);
}

// upstream: test_node_failures.py::test_multiple_failured_tasks (one failed instance is
// consumed per application, repeated for every instance)
#[tokio::test]
async fn fallback_true_consumes_every_failed_instance() {
    let mut s = Stepper::start(&SYSTEM, "many", Json::Null).await;
    let ids = s.active("Task1");
    assert_eq!(ids.len(), 2);
    for id in &ids {
        s.set_failed(id);
    }
    s.pass().await;
    assert_eq!(s.state().failed_nodes["Task1"].len(), 2);
    let t2 = s.id("Task2");
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert!(s.is_finished(), "{:?}", s.outcome);
    assert_eq!(s.env.recorder.count(TraceEvent::FallbackStart), 2);
}

// upstream: test_node_failures.py::test_single_failure_flow_fallback_to_flow
#[tokio::test]
async fn fallback_to_a_sub_flow() {
    let mut s = Stepper::start(&SYSTEM, "to_flow", json!({"a": 1})).await;
    let t1 = s.id("Task1");
    s.set_failed(&t1);
    s.pass().await;
    assert_eq!(s.started_names(), ["sub"]);
    assert!(s.started[0].is_flow);
    assert_eq!(s.started[0].node_args, json!({"a": 1}));
    assert_eq!(s.started[0].parent, Json::Null, "fallbacks get no parent");
}

// spec §3.8/§3.12: a nowait fallback is not waited for and stops fallback processing.
#[tokio::test]
async fn nowait_fallback_stops_fallbacks() {
    let mut s = Stepper::start(&SYSTEM, "nowait_fb", Json::Null).await;
    let t1 = s.id("Task1");
    let t2 = s.id("Task2");
    s.set_failed(&t1);
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
    assert!(s.is_finished(), "the nowait fallback is not waited for");

    let mut s = Stepper::start(&SYSTEM, "nowait_fb", Json::Null).await;
    let t1 = s.id("Task1");
    let t2 = s.id("Task2");
    s.set_failed(&t1);
    s.set_failed(&t2);
    s.pass().await;
    // Task1's nowait fallback stops the pass before Task2's fallback: the flow fails.
    assert_eq!(s.started_names(), ["Task3"]);
    assert!(s.is_failed(), "{:?}", s.outcome);
}

// upstream: test_node_failures.py::test_multiple_failures_from_subflow (end to end)
#[tokio::test]
async fn failed_sub_flow_is_a_failed_node() {
    let script = Script::new();
    script.set("Task7", Behaviour::Fail);
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt
        .run(&config::failing_sub::FLOW, Json::Null)
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert!(outcome.failed_nodes.is_empty());

    let outcome = rt.run(&config::sub::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.failed("Task7").len(), 1);
}

// The fallback scenarios end to end on the in-process runtime.
#[tokio::test]
async fn fallbacks_end_to_end() {
    let script = Script::new();
    script.set("Task1", Behaviour::Fail);
    script.set("Task2", Behaviour::Fail);
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();

    let outcome = rt.run(&config::two::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(script.count("Task5"), 1);
    assert_eq!(script.count("Task6"), 0);
    assert_eq!(script.count("Task3") + script.count("Task4"), 0);

    let outcome = rt.run(&config::single::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.failed("Task1").len(), 1);

    // Task1 succeeds, Task2 fails eagerly: the flow fails without waiting for Task3.
    let script = Script::new();
    script.set("Task2", Behaviour::Fail);
    script.set(
        "Task3",
        Behaviour::Sleep(std::time::Duration::from_secs(30), json!(null)),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt.run(&config::eager::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.failed("Task2").len(), 1);
    assert_eq!(outcome.active_nodes.len(), 1, "Task3 is abandoned");
    assert_eq!(script.count("Task4"), 0);
}

// A failed flow's outcome says why each node failed, and the trace does too.
#[tokio::test]
async fn a_failed_task_s_reason_reaches_the_outcome_and_the_trace() {
    let script = Script::new();
    script.set("Task1", Behaviour::FailWith("disk full"));
    let recorder = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .build();
    let outcome = rt.run(&config::single::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed(), "{outcome:?}");
    assert_eq!(
        outcome.failure_reason("Task1"),
        Some(&FailureReason::Error("disk full".into()))
    );
    assert_eq!(outcome.failure_reason("Task2"), None);
    assert_eq!(outcome.failures().to_string(), "Task1: disk full");

    let failures = recorder.of(TraceEvent::NodeFailure);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["node_name"], "Task1");
    assert_eq!(failures[0]["reason"], "disk full");
    let flow_failure = recorder.of(TraceEvent::FlowFailure);
    let task1 = &outcome.failed("Task1")[0];
    assert_eq!(
        flow_failure[0]["state"]["failure_reasons"][task1.as_str()],
        "disk full"
    );
}

// A failed sub-flow's reason is its own failed nodes' reasons, nested.
#[tokio::test]
async fn a_failed_sub_flow_s_reasons_nest() {
    let script = Script::new();
    script.set("Task7", Behaviour::FailWith("disk full"));
    script.set("Task1", Behaviour::FailWith("no route to host"));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt.run(&config::outer::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed(), "{outcome:?}");
    let Some(FailureReason::Flow(sub)) = outcome.failure_reason("sub") else {
        panic!("sub-flow reason expected: {outcome:?}")
    };
    assert_eq!(
        sub.reason("Task7"),
        Some(&FailureReason::Error("disk full".into()))
    );
    assert_eq!(sub.nodes["Task7"].len(), 1);
    assert_eq!(
        outcome.failure_reason("Task1"),
        Some(&FailureReason::Error("no route to host".into()))
    );
    assert_eq!(
        outcome.failures().to_string(),
        "Task1: no route to host; sub: [Task7: disk full]"
    );
    let failures = outcome.failures();
    let listed: Vec<&str> = failures.iter().map(|(name, _)| name).collect();
    assert_eq!(listed, ["Task1", "sub"]);
}

// A fallback reads why the node it handles failed (upstream `parent_task_exception`).
#[tokio::test]
async fn a_fallback_reads_why_its_node_failed() {
    let script = Script::new();
    script.set("Task1", Behaviour::FailWith("disk full"));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt.run(&config::fb_start::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let runs = script.runs();
    let fallback = runs
        .iter()
        .find(|r| r.task_name == "Task3")
        .expect("Task3 ran");
    assert_eq!(
        fallback.parent_exceptions,
        [("Task1".to_string(), Some("disk full".to_string()))]
    );
    let task1 = runs.iter().find(|r| r.task_name == "Task1").unwrap();
    assert!(task1.parent_exceptions.is_empty(), "not a fallback");
}

// A fallback of a failed sub-flow reads why the sub-flow's nodes failed (upstream
// `parent_flow_exception`).
#[tokio::test]
async fn a_fallback_reads_why_its_sub_flow_failed() {
    let script = Script::new();
    script.set("Task7", Behaviour::FailWith("disk full"));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt.run(&config::sub_fb::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let fallback = script.runs_of("Task3");
    assert_eq!(fallback.len(), 1);
    assert_eq!(
        fallback[0].parent_flow_exceptions,
        [("sub".to_string(), Some("Task7: disk full".to_string()))]
    );
    assert_eq!(fallback[0].parent_exceptions, [("sub".to_string(), None)]);
}
