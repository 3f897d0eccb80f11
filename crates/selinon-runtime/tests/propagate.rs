//! Counterpart of upstream `test/test_propagate.py`: sub-flows as nodes and the parent maps
//! of `propagate_node_args`, `propagate_parent`, `propagate_finished` and
//! `propagate_compound_finished` (§3.9).

mod common;

use common::*;
use selinon_runtime::spec::{
    run_boxed, BoxFuture, EdgeSpec, FlowSpec, PropagateSpec, SystemSpec, TaskSpec,
};
use selinon_runtime::{json, Json, Runtime, TaskContext, TaskResult};

pub static SYSTEM: SystemSpec = SystemSpec {
    files: &["nodes.yml", "flows.yml"],
    content_hash: "sha256:test",
    tasks: &TASKS,
    flows: &[
        &p_args::FLOW,
        &p_no_args::FLOW,
        &p_parent::FLOW,
        &p_compound::FLOW,
        &p_mixed::FLOW,
        &outer::FLOW,
        &inner::FLOW,
        &nested::FLOW,
        &flow2::FLOW,
        &flow3::FLOW,
        &flow4::FLOW,
    ],
    storages: &STORAGES,
    trace: &[],
    migration_dir: None,
    run_task: &run_task,
};

static TASKS: [TaskSpec; 5] = [
    task("Task1"),
    task("Task2"),
    task("Task3"),
    task("Task4"),
    task("TaskX"),
];

fn run_task(
    name: &str,
    ctx: TaskContext,
    node_args: Json,
) -> Option<BoxFuture<'static, TaskResult>> {
    Some(match name {
        "Task1" | "Task2" | "Task3" | "Task4" | "TaskX" => run_boxed::<Scripted>(ctx, node_args),
        _ => return None,
    })
}

/// `→ flow2` with `propagate_node_args: [flow2]`.
mod p_args {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "p_args",
        edges: &EDGES,
        propagate: PropagateSpec {
            node_args: &["flow2"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    pub static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["flow2"],
        ..EDGE
    }];
}

/// `→ flow2`, nothing propagated.
mod p_no_args {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "p_no_args",
        edges: &p_args::EDGES,
        ..common::FLOW
    };
}

/// `→ Task1`, `Task1 → flow2` with `propagate_parent: [flow2]`.
mod p_parent {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "p_parent",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            parent: &["flow2"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["Task1"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["Task1"],
            to: &["flow2"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "Task1" => &[1],
            _ => &[],
        }
    }
}

/// upstream `test_propagate_parent_2`: `{flow2, Task2} → TaskX`, `Task1 → flow2`,
/// `→ Task1, Task2`; `propagate_compound_finished: [flow2]`.
mod p_compound {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "p_compound",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            parent: &["flow2"],
            compound_finished: &["flow2"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 3] = [
        EdgeSpec {
            index: 0,
            from: &["flow2", "Task2"],
            to: &["TaskX"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["Task1"],
            to: &["flow2"],
            ..EDGE
        },
        EdgeSpec {
            index: 2,
            to: &["Task1", "Task2"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "flow2" | "Task2" => &[0],
            "Task1" => &[1],
            _ => &[],
        }
    }
}

/// upstream `test_propagate_compound_mixed`: `→ flow2, flow3`, `{flow2, flow3} → TaskX`;
/// `propagate_finished: [flow2]`, `propagate_compound_finished: [flow3]`.
mod p_mixed {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "p_mixed",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            finished: &["flow2"],
            compound_finished: &["flow3"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["flow2", "flow3"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["flow2", "flow3"],
            to: &["TaskX"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "flow2" | "flow3" => &[1],
            _ => &[],
        }
    }
}

/// `→ Task1` (flows driven by hand in the step tests).
mod flow2 {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "flow2",
        edges: &EDGES,
        ..common::FLOW
    };
    pub static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task1"],
        ..EDGE
    }];
}

mod flow3 {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "flow3",
        edges: &flow2::EDGES,
        ..common::FLOW
    };
}

mod flow4 {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "flow4",
        edges: &flow2::EDGES,
        ..common::FLOW
    };
}

/// End to end: `→ inner`, `inner → TaskX` with `propagate_finished: [inner]`,
/// `propagate_node_args: [inner]`.
mod outer {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "outer",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            finished: &["inner"],
            node_args: &["inner"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["inner"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["inner"],
            to: &["TaskX"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "inner" => &[1],
            _ => &[],
        }
    }
}

/// `→ Task1`, `Task1 → Task2, nested`; `propagate_parent: [nested]`.
mod inner {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "inner",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            parent: &["nested"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["Task1"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["Task1"],
            to: &["Task2", "nested"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "Task1" => &[1],
            _ => &[],
        }
    }
}

/// `→ Task3, Task3`.
mod nested {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "nested",
        edges: &EDGES,
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task3", "Task3"],
        ..EDGE
    }];
}

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
    let outcome = rt.run_flow("outer", json!({"order": 7})).await.unwrap();
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
