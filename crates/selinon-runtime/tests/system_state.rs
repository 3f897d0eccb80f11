//! Counterpart of upstream `test/test_system_state.py` (and the cycle example of spec §3.3):
//! the engine driven pass by pass, completions set by hand.

mod common;

use common::*;
use selinon_runtime::engine::PassOutcome;
use selinon_runtime::{json, Json, TraceEvent};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Task1, import: common, classname: Scripted, storage: Memory}
          - {name: Task2, import: common, classname: Scripted, storage: Memory}
          - {name: Task3, import: common, classname: Scripted, storage: Memory}
          - {name: Task4, import: common, classname: Scripted, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [simple, two_to_one, three_to_one_fail, one_to_two, cycle, two_to_one_recursive]
        flow-definitions:
          - name: simple
            edges:
              - {from: Task1, to: Task2}
              - {from: , to: Task1}
          - name: two_to_one
            edges:
              - {from: [Task1, Task2], to: Task3}
              - {from: , to: [Task1, Task2]}
          - name: three_to_one_fail
            edges:
              - from: [Task1, Task2, Task3]
                to: Task4
                condition: {name: alwaysFalse}
              - {from: , to: [Task1, Task2, Task3]}
          - name: one_to_two
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: [Task2, Task3]}
          # The cycle of spec §3.3: round again while Task4's result says `again`.
          - name: cycle
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: [Task2, Task3]}
              - {from: [Task2, Task3], to: Task4}
              - from: Task4
                to: Task1
                condition: {name: fieldEqual, args: {key: again, value: true}}
          - name: two_to_one_recursive
            edges:
              - {from: [Task1, Task2], to: Task3}
              - {from: Task3, to: Task2}
              - {from: , to: [Task1, Task2]}
        "#
    );
}
use config::SYSTEM;

// upstream: test_system_state.py::test_simple1
#[tokio::test]
async fn simple1() {
    let mut s = Stepper::start(&SYSTEM, "simple", Json::Null).await;
    assert!(s.is_running());
    assert_eq!(s.started_names(), ["Task1"]);
    assert_eq!(s.state().waiting_edges, [0]);
    assert_eq!(s.state().triggered_edges, [1]);

    // No change: a pass without completions changes nothing.
    let before = s.state();
    s.pass().await;
    assert!(s.started.is_empty());
    assert_eq!(s.state(), before);

    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(1));
    s.pass().await;
    assert!(s.is_running());
    assert_eq!(s.started_names(), ["Task2"]);
    assert_eq!(s.state().finished_nodes.len(), 1);
    assert_eq!(s.state().waiting_edges, [0]);
    // The parent of Task2 is Task1's instance.
    assert_eq!(s.started[0].parent, json!({"Task1": t1}));
    assert_eq!(s.message.node_args, Json::Null);

    let t2 = s.id("Task2");
    s.set_finished(&t2, json!(2));
    s.pass().await;
    assert!(s.is_finished());
    let st = s.state();
    assert!(st.active_nodes.is_empty());
    assert_eq!(st.finished_nodes["Task1"], [t1]);
    assert_eq!(st.finished_nodes["Task2"], [t2]);
}

// upstream: test_system_state.py::test_2_to_1
#[tokio::test]
async fn two_to_one_fires_when_the_last_source_finishes() {
    let mut s = Stepper::start(&SYSTEM, "two_to_one", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "Task2"]);
    assert_eq!(s.state().waiting_edges, [0]);
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));

    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert!(s.started.is_empty());
    assert_eq!(s.active("Task1"), std::slice::from_ref(&t1));
    assert!(s.state().finished_nodes.contains_key("Task2"));

    s.set_finished(
        &t1,
        json!("some result of task1 that shouldn't be propagated"),
    );
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
    assert_eq!(s.started[0].parent, json!({"Task1": t1, "Task2": t2}));
    assert_eq!(s.message.node_args, Json::Null);

    let t3 = s.id("Task3");
    s.set_finished(&t3, json!(null));
    s.pass().await;
    assert!(s.is_finished());
    assert_eq!(s.state().finished_nodes.len(), 3);
}

// upstream: test_system_state.py::test_2_to_1_separate (both sources seen in one pass)
#[tokio::test]
async fn two_to_one_sources_finishing_in_the_same_pass_fire_once() {
    let mut s = Stepper::start(&SYSTEM, "two_to_one", Json::Null).await;
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_finished(&t1, json!(null));
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
}

// upstream: test_system_state.py::test_3_to_1_fail
#[tokio::test]
async fn three_to_one_condition_false() {
    let mut s = Stepper::start(&SYSTEM, "three_to_one_fail", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "Task2", "Task3"]);
    assert_eq!(s.state().waiting_edges, [0]);
    for t in ["Task1", "Task2", "Task3"] {
        let id = s.id(t);
        s.set_finished(&id, json!(null));
    }
    s.pass().await;
    assert!(s.is_finished());
    assert!(s.started.is_empty());
    let st = s.state();
    assert_eq!(st.finished_nodes.len(), 3);
    assert!(!st.finished_nodes.contains_key("Task4"));
    assert!(st.triggered_edges == [1]);
    assert_eq!(s.env.recorder.count(TraceEvent::EdgeCondFalse), 1);
}

// upstream: test_system_state.py::test_1_to_2
#[tokio::test]
async fn one_to_two() {
    let mut s = Stepper::start(&SYSTEM, "one_to_two", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1"]);
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2", "Task3"]);
    let (t2, t3) = (s.id("Task2"), s.id("Task3"));
    s.set_finished(&t3, json!(null));
    s.pass().await;
    assert!(s.is_running());
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert!(s.is_finished());
}

// spec §3.3: in lap 2 of `→T1, T1→{T2,T3}, {T2,T3}→T4, T4→T1`, T4 runs for (T2₂,T3₁),
// (T2₁,T3₂) and (T2₂,T3₂): once per new combination of finished instances.
#[tokio::test]
async fn cycle_join_fires_once_per_combination() {
    let mut s = Stepper::start(&SYSTEM, "cycle", Json::Null).await;
    // Lap 1.
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    let (t2_1, t3_1) = (s.id("Task2"), s.id("Task3"));
    s.set_finished(&t2_1, json!(null));
    s.set_finished(&t3_1, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task4"]);
    let t4 = s.id("Task4");
    s.set_finished(&t4, json!({"again": true}));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task1"]);
    assert_eq!(s.started[0].parent, json!({"Task4": t4}));
    // Lap 2.
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    let (t2_2, t3_2) = (s.id("Task2"), s.id("Task3"));
    s.set_finished(&t2_2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task4"]);
    assert_eq!(s.started[0].parent, json!({"Task2": t2_2, "Task3": t3_1}));
    s.set_finished(&t3_2, json!(null));
    s.pass().await;
    let parents: Vec<Json> = s.started.iter().map(|x| x.parent.clone()).collect();
    assert_eq!(
        parents,
        [
            json!({"Task2": t2_1, "Task3": t3_2}),
            json!({"Task2": t2_2, "Task3": t3_2})
        ]
    );
    // The three Task4 of lap 2 stop the cycle.
    for id in s.active("Task4") {
        s.set_finished(&id, json!({"again": false}));
    }
    s.pass().await;
    assert!(s.is_finished());
    let st = s.state();
    assert_eq!(st.finished_nodes["Task4"].len(), 4);
    assert_eq!(st.finished_nodes["Task1"].len(), 2);
    assert_eq!(st.waiting_edges, [1, 2, 3]);
}

// upstream: test_system_state.py::test_2_to_1_recursive
#[tokio::test]
async fn two_to_one_recursive() {
    let mut s = Stepper::start(&SYSTEM, "two_to_one_recursive", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "Task2"]);
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert!(s.started.is_empty());
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
    let t3 = s.id("Task3");
    s.set_finished(&t3, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2"]);
    // The second Task2 pairs with the first Task1 again.
    let t2b = s.id("Task2");
    s.set_finished(&t2b, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task3"]);
    assert_eq!(s.started[0].parent, json!({"Task1": t1, "Task2": t2b}));
}

// The state has upstream's JSON shape and survives a round trip.
#[tokio::test]
async fn state_serialises_in_upstream_shape() {
    let mut s = Stepper::start(&SYSTEM, "two_to_one", json!({"a": 1})).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    let state = serde_json::to_value(s.state()).unwrap();
    let keys: Vec<&String> = state.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "active_nodes",
            "failed_nodes",
            "finished_nodes",
            "triggered_edges",
            "waiting_edges"
        ]
    );
    assert_eq!(state["finished_nodes"], json!({"Task1": [t1]}));
    assert_eq!(state["active_nodes"][0]["name"], "Task2");
    let message = serde_json::to_string(&s.message).unwrap();
    let back: selinon_runtime::engine::DispatcherMessage = serde_json::from_str(&message).unwrap();
    assert_eq!(back, s.message);
    assert!(matches!(s.outcome, PassOutcome::Running));
}
