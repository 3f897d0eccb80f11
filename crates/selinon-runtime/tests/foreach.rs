//! Counterparts of upstream `test/test_foreach.py`, `test/test_nowait.py` and
//! `test/test_node_args.py`: `foreach` (with `propagate_result`), `nowait` nodes and
//! `node_args_from_first`.

mod common;

use std::time::Duration;

use common::*;
use selinon_runtime::{json, Json, Runtime, TraceEvent};

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
        flows: [fe_start, fe_basic, fe_propagate, fe_sub, nw_task, nw_flow, na_first, na_flow,
                na_flow_propagate]
        flow-definitions:
          - name: fe_start
            edges:
              - from:
                to: Task1
                foreach: {function: items_of_args, import: foreach}
          - name: fe_basic
            edges:
              - {from: , to: Task1}
              - from: Task1
                to: [Task2, Task3]
                foreach: {function: items_of_task1, import: foreach}
          # Each item of Task1's result is the arguments of a sub-flow.
          - name: fe_propagate
            edges:
              - {from: , to: Task1}
              - from: Task1
                to: fe_sub
                foreach: {function: items_of_task1, import: foreach, propagate_result: true}
          - name: fe_sub
            edges:
              - {from: , to: Task4}
          - name: nw_task
            nowait: Task2
            edges:
              - {from: , to: [Task1, Task2]}
          - name: nw_flow
            nowait: fe_sub
            edges:
              - {from: , to: [Task1, fe_sub]}
          - name: na_first
            node_args_from_first: true
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: [Task2, Task3]}
          - name: na_flow
            node_args_from_first: true
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: fe_sub}
          - name: na_flow_propagate
            node_args_from_first: true
            propagate_node_args: [fe_sub]
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: fe_sub}
        "#
    );
}
use config::SYSTEM;

/// The users' foreach functions.
mod foreach {
    use selinon_runtime::{Db, Json};

    /// The items listed under `items` in the flow arguments.
    pub fn items_of_args(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
        node_args["items"].as_array().cloned().unwrap_or_default()
    }

    /// The items listed in Task1's result.
    pub fn items_of_task1(db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
        db.get("Task1")
            .and_then(|r| r["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

// upstream: test_foreach.py::test_foreach_start
#[tokio::test]
async fn foreach_on_a_starting_edge() {
    let s = Stepper::start(&SYSTEM, "fe_start", json!({"items": [1, 2, 3]})).await;
    assert_eq!(s.started_names(), ["Task1", "Task1", "Task1"]);
    assert!(s
        .started
        .iter()
        .all(|n| n.node_args == json!({"items": [1, 2, 3]})));
    assert_eq!(s.env.recorder.count(TraceEvent::ForeachResult), 1);

    // No items: nothing starts, the edge still counts as triggered, the flow ends.
    let s = Stepper::start(&SYSTEM, "fe_start", json!({"items": []})).await;
    assert!(s.started.is_empty());
    assert_eq!(s.state().triggered_edges, [0]);
    assert!(s.is_finished());
}

// upstream: test_foreach.py::test_foreach_basic
#[tokio::test]
async fn foreach_starts_every_destination_per_item() {
    let mut s = Stepper::start(&SYSTEM, "fe_basic", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!({"items": ["a", "b"]}));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2", "Task3", "Task2", "Task3"]);
    assert!(s.started.iter().all(|n| n.parent == json!({"Task1": t1})));
    assert!(s.started.iter().all(|n| n.node_args == Json::Null));
}

// upstream: test_foreach.py::test_foreach_propagate_result
#[tokio::test]
async fn foreach_propagate_result_into_sub_flows() {
    let mut s = Stepper::start(&SYSTEM, "fe_propagate", json!({"x": 0})).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!({"items": [{"n": 1}, {"n": 2}]}));
    s.pass().await;
    assert_eq!(s.started_names(), ["fe_sub", "fe_sub"]);
    assert_eq!(s.started[0].node_args, json!({"n": 1}));
    assert_eq!(s.started[1].node_args, json!({"n": 2}));

    // End to end.
    let script = Script::new();
    script.set(
        "Task1",
        Behaviour::Result(json!({"items": [{"n": 1}, {"n": 2}, {"n": 3}]})),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt
        .run(&config::fe_propagate::FLOW, json!({"x": 0}))
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(outcome.finished("fe_sub").len(), 3);
    let mut args: Vec<i64> = script
        .runs_of("Task4")
        .iter()
        .map(|r| r.node_args["n"].as_i64().unwrap())
        .collect();
    args.sort();
    assert_eq!(args, [1, 2, 3]);
}

// upstream: test_nowait.py::test_nowait_task
#[tokio::test]
async fn nowait_task_is_never_waited_for() {
    let mut s = Stepper::start(&SYSTEM, "nw_task", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "Task2"]);
    assert!(
        s.active("Task2").is_empty(),
        "nowait nodes are never tracked"
    );
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert!(s.is_finished());

    // End to end: the flow ends while the nowait task still sleeps.
    let script = Script::new();
    script.set(
        "Task2",
        Behaviour::Sleep(Duration::from_secs(30), json!(null)),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        rt.run(&config::nw_task::FLOW, Json::Null),
    )
    .await
    .expect("not waiting for the nowait task")
    .unwrap();
    assert!(outcome.is_finished());
    assert!(!outcome.finished_nodes.contains_key("Task2"));
}

// upstream: test_nowait.py::test_nowait_flow
#[tokio::test]
async fn nowait_sub_flow_is_never_waited_for() {
    let s = Stepper::start(&SYSTEM, "nw_flow", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "fe_sub"]);
    assert!(s.active("fe_sub").is_empty());
    assert_eq!(s.state().active_nodes.len(), 1);
}

// upstream: test_node_args.py::test_task2task and test_task2tasks
#[tokio::test]
async fn node_args_from_first_task() {
    let mut s = Stepper::start(&SYSTEM, "na_first", json!({"original": true})).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!("propagated result of Task1"));
    s.pass().await;
    assert_eq!(s.started_names(), ["Task2", "Task3"]);
    assert!(s
        .started
        .iter()
        .all(|n| n.node_args == json!("propagated result of Task1")));
    assert_eq!(s.message.node_args, json!("propagated result of Task1"));

    // End to end.
    let script = Script::new();
    script.set("Task1", Behaviour::Result(json!({"from": "Task1"})));
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt
        .run(&config::na_first::FLOW, json!({"original": true}))
        .await
        .unwrap();
    assert!(outcome.is_finished());
    assert_eq!(outcome.node_args, json!({"from": "Task1"}));
    assert_eq!(
        script.runs_of("Task1")[0].node_args,
        json!({"original": true})
    );
    assert_eq!(
        script.runs_of("Task3")[0].node_args,
        json!({"from": "Task1"})
    );
}

// upstream: test_node_args.py::test_task2flow and test_task2flow_propagate
#[tokio::test]
async fn node_args_from_first_into_a_sub_flow() {
    let mut s = Stepper::start(&SYSTEM, "na_flow", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!("propagated result of Task1"));
    s.pass().await;
    assert_eq!(s.started_names(), ["fe_sub"]);
    assert_eq!(s.started[0].node_args, Json::Null, "not propagated");

    let mut s = Stepper::start(&SYSTEM, "na_flow_propagate", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!("propagated result of Task1"));
    s.pass().await;
    assert_eq!(s.started[0].node_args, json!("propagated result of Task1"));
}
