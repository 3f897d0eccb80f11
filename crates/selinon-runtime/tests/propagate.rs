//! Counterpart of upstream `test/test_propagate.py`: sub-flows as nodes and the parent maps
//! of `propagate_node_args`, `propagate_parent`, `propagate_finished` and
//! `propagate_compound_finished` (§3.9).

mod common;

use common::*;
use selinon_runtime::{json, Json, Runtime};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Task1, import: common, classname: Scripted, storage: Memory}
          - {name: Task2, import: common, classname: Scripted, storage: Memory}
          - {name: Task3, import: common, classname: Scripted, storage: Memory}
          - {name: Task4, import: common, classname: Scripted, storage: Memory}
          - {name: TaskX, import: common, classname: Scripted, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [p_args, p_no_args, p_parent, p_compound, p_mixed, outer, inner, nested, flow2,
                flow3, flow4]
        flow-definitions:
          - name: p_args
            propagate_node_args: [flow2]
            edges:
              - {from: , to: flow2}
          - name: p_no_args
            edges:
              - {from: , to: flow2}
          - name: p_parent
            propagate_parent: [flow2]
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: flow2}
          # upstream test_propagate_parent_2
          - name: p_compound
            propagate_parent: [flow2]
            propagate_compound_finished: [flow2]
            edges:
              - {from: [flow2, Task2], to: TaskX}
              - {from: Task1, to: flow2}
              - {from: , to: [Task1, Task2]}
          # upstream test_propagate_compound_mixed
          - name: p_mixed
            propagate_finished: [flow2]
            propagate_compound_finished: [flow3]
            edges:
              - {from: , to: [flow2, flow3]}
              - {from: [flow2, flow3], to: TaskX}
          # Flows driven by hand in the step tests.
          - name: flow2
            edges:
              - {from: , to: Task1}
          - name: flow3
            edges:
              - {from: , to: Task1}
          - name: flow4
            edges:
              - {from: , to: Task1}
          # End to end: two levels of sub-flows.
          - name: outer
            propagate_finished: [inner]
            propagate_node_args: [inner]
            edges:
              - {from: , to: inner}
              - {from: inner, to: TaskX}
          - name: inner
            propagate_parent: [nested]
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: [Task2, nested]}
          - name: nested
            edges:
              - {from: , to: [Task3, Task3]}
        "#
    );
}
use config::SYSTEM;

// upstream: test_propagate.py::test_propagate_node_args_true / test_propagate_node_args_flow
#[tokio::test]
async fn node_args_reach_a_sub_flow_only_when_propagated() {
    let s = Stepper::start(&SYSTEM, "p_args", json!({"a": 1})).await;
    assert_eq!(s.started_names(), ["flow2"]);
    assert!(s.started[0].is_flow);
    assert_eq!(s.started[0].node_args, json!({"a": 1}));

    let s = Stepper::start(&SYSTEM, "p_no_args", json!({"a": 1})).await;
    assert_eq!(s.started[0].node_args, Json::Null);
}

// upstream: test_propagate.py::test_propagate_parent_flow
#[tokio::test]
async fn parent_reaches_a_sub_flow_and_its_starting_nodes() {
    let mut s = Stepper::start(&SYSTEM, "p_parent", Json::Null).await;
    let t1 = s.id("Task1");
    s.set_finished(&t1, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["flow2"]);
    let parent = s.started[0].parent.clone();
    assert_eq!(parent, json!({"Task1": t1}));

    // The sub-flow hands it to the nodes of its starting edges.
    let child = Stepper::start_with_parent(&SYSTEM, "flow2", Json::Null, parent.clone()).await;
    assert_eq!(child.started_names(), ["Task1"]);
    assert_eq!(child.started[0].parent, parent);
}

// upstream: test_propagate.py::test_propagate_parent_2
#[tokio::test]
async fn compound_finished_flattens_nested_sub_flows() {
    let mut s = Stepper::start(&SYSTEM, "p_compound", Json::Null).await;
    assert_eq!(s.started_names(), ["Task1", "Task2"]);
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_finished(&t1, json!(null));
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["flow2"]);
    assert_eq!(s.started[0].parent, json!({"Task1": t1}));
    let f2 = s.id("flow2");

    s.set_flow_result(
        "<flow3-id>",
        json!({"Task2": ["<task2-id2>"], "Task4": ["<task4-id1>", "<task4-id2>"]}),
    );
    s.set_flow_finished(
        &f2,
        json!({
            "flow3": ["<flow3-id>"],
            "Task2": ["<task2-id1>"],
            "Task3": ["<task3-id1>", "<task3-id2>"],
        }),
    );
    s.pass().await;
    assert_eq!(s.started_names(), ["TaskX"]);
    let parent = &s.started[0].parent;
    assert_eq!(parent["Task2"], json!(t2));
    let flow2 = parent["flow2"].as_object().unwrap();
    assert_eq!(
        sorted(&flow2.keys().cloned().collect::<Vec<_>>()),
        ["Task2", "Task3", "Task4"]
    );
    let ids = |k: &str| -> Vec<String> { serde_json::from_value(flow2[k].clone()).unwrap() };
    assert_eq!(sorted(&ids("Task2")), ["<task2-id1>", "<task2-id2>"]);
    assert_eq!(sorted(&ids("Task3")), ["<task3-id1>", "<task3-id2>"]);
    assert_eq!(sorted(&ids("Task4")), ["<task4-id1>", "<task4-id2>"]);
}

// upstream: test_propagate.py::test_propagate_compound_mixed
#[tokio::test]
async fn finished_and_compound_finished_side_by_side() {
    let mut s = Stepper::start(&SYSTEM, "p_mixed", Json::Null).await;
    assert_eq!(s.started_names(), ["flow2", "flow3"]);
    let (f2, f3) = (s.id("flow2"), s.id("flow3"));
    s.set_flow_result("<flow4-id>", json!({"Task2": ["<task2-id41>"]}));
    s.set_flow_finished(
        &f2,
        json!({
            "Task2": ["<task2-id21>"],
            "Task3": ["<task3-id21>", "<task3-id22>"],
            "flow4": ["<flow4-id>"],
        }),
    );
    s.set_flow_finished(
        &f3,
        json!({
            "Task2": ["<task2-id32>"],
            "Task3": ["<task3-id31>", "<task3-id32>"],
            "flow4": ["<flow4-id>"],
        }),
    );
    s.pass().await;
    assert_eq!(s.started_names(), ["TaskX"]);
    assert_eq!(
        s.started[0].parent,
        json!({
            "flow2": {
                "Task2": ["<task2-id21>"],
                "Task3": ["<task3-id21>", "<task3-id22>"],
                "flow4": {"Task2": ["<task2-id41>"]},
            },
            // flow4 is merged into flow3 (compound); nested ids come first, as upstream.
            "flow3": {
                "Task2": ["<task2-id41>", "<task2-id32>"],
                "Task3": ["<task3-id31>", "<task3-id32>"],
            },
        })
    );
}

// Sub-flows without either option contribute nothing to the parent map.
#[tokio::test]
async fn sub_flow_sources_without_propagation_contribute_nothing() {
    let mut s = Stepper::start(&SYSTEM, "p_compound", Json::Null).await;
    let (t1, t2) = (s.id("Task1"), s.id("Task2"));
    s.set_finished(&t1, json!(null));
    s.pass().await;
    let f2 = s.id("flow2");
    s.set_flow_finished(&f2, json!({"Task1": ["<x>"]}));
    s.set_finished(&t2, json!(null));
    s.pass().await;
    assert_eq!(s.started_names(), ["TaskX"]);
    assert_eq!(
        s.started[0].parent,
        json!({"flow2": {"Task1": ["<x>"]}, "Task2": t2})
    );
}

// End to end: nested sub-flows, `propagate_finished` through two levels, and a task reading
// a result of a nested sub-flow with `parent_flow_result`.
#[tokio::test]
async fn propagate_finished_end_to_end() {
    let script = Script::new();
    script.set(
        "Task3",
        Behaviour::Results(vec![json!({"n": 1}), json!({"n": 2})]),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .build();
    let outcome = rt
        .run(&config::outer::FLOW, json!({"order": 7}))
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(outcome.finished("inner").len(), 1);
    assert_eq!(outcome.finished("TaskX").len(), 1);

    let x = &script.runs_of("TaskX")[0];
    let inner = x.parent["inner"]
        .as_object()
        .expect("inner's finished nodes");
    assert_eq!(inner["Task1"].as_array().unwrap().len(), 1);
    assert_eq!(inner["Task2"].as_array().unwrap().len(), 1);
    let nested = inner["nested"]["Task3"].as_array().unwrap();
    assert_eq!(nested.len(), 2);
    // The nested sub-flow's tasks ran with no arguments (not propagated) and with inner's
    // parent map (propagate_parent).
    let t3 = script.runs_of("Task3");
    assert_eq!(t3[0].node_args, Json::Null);
    assert_eq!(t3[0].parent["Task1"], inner["Task1"][0]);
    // inner got the arguments.
    assert_eq!(script.runs_of("Task1")[0].node_args, json!({"order": 7}));

    // The results are readable through the parent map.
    let mut results = Vec::new();
    for id in nested {
        results.push(
            rt.task_result("nested", "Task3", id.as_str().unwrap())
                .await
                .unwrap(),
        );
    }
    results.sort_by_key(|r| r["n"].as_i64());
    assert_eq!(results, [json!({"n": 1}), json!({"n": 2})]);
}
