//! Counterparts of upstream `test/test_foreach.py`, `test/test_nowait.py` and
//! `test/test_node_args.py`: `foreach` (with `propagate_result`), `nowait` nodes and
//! `node_args_from_first`.

mod common;

use std::time::Duration;

use common::*;
use selinon_runtime::spec::{
    run_boxed, BoxFuture, EdgeSpec, FlowSpec, ForeachSpec, PropagateSpec, SystemSpec, TaskSpec,
};
use selinon_runtime::{json, Db, Json, Runtime, TaskContext, TaskResult, TraceEvent};

pub static SYSTEM: SystemSpec = SystemSpec {
    files: &["nodes.yml", "flows.yml"],
    content_hash: "sha256:test",
    tasks: &TASKS,
    flows: &[
        &fe_start::FLOW,
        &fe_basic::FLOW,
        &fe_propagate::FLOW,
        &fe_sub::FLOW,
        &nw_task::FLOW,
        &nw_flow::FLOW,
        &na_first::FLOW,
        &na_flow::FLOW,
        &na_flow_propagate::FLOW,
    ],
    storages: &STORAGES,
    trace: &[],
    migration_dir: None,
    run_task: &run_task,
};

static TASKS: [TaskSpec; 4] = [task("Task1"), task("Task2"), task("Task3"), task("Task4")];

fn run_task(
    name: &str,
    ctx: TaskContext,
    node_args: Json,
) -> Option<BoxFuture<'static, TaskResult>> {
    Some(match name {
        "Task1" | "Task2" | "Task3" | "Task4" => run_boxed::<Scripted>(ctx, node_args),
        _ => return None,
    })
}

/// A user's foreach function: the items listed under `items` in the flow arguments.
fn items_of_args(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
    node_args["items"].as_array().cloned().unwrap_or_default()
}

/// A user's foreach function: the items listed in Task1's result.
fn items_of_task1(db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
    db.get("Task1")
        .and_then(|r| r["items"].as_array().cloned())
        .unwrap_or_default()
}

/// `→ Task1` for each of `node_args.items`.
mod fe_start {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "fe_start",
        edges: &EDGES,
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task1"],
        foreach: Some(ForeachSpec {
            function: &items_of_args,
            name: "tests.items_of_args",
            propagate_result: false,
        }),
        ..EDGE
    }];
}

/// `→ Task1`, `Task1 → Task2, Task3` for each item of Task1's result.
mod fe_basic {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "fe_basic",
        edges: &EDGES,
        edges_from: &edges_from,
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
            to: &["Task2", "Task3"],
            foreach: Some(ForeachSpec {
                function: &items_of_task1,
                name: "tests.items_of_task1",
                propagate_result: false,
            }),
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

/// `→ Task1`, `Task1 → fe_sub` for each item of Task1's result, the item as its arguments.
mod fe_propagate {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "fe_propagate",
        edges: &EDGES,
        edges_from: &edges_from,
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
            to: &["fe_sub"],
            foreach: Some(ForeachSpec {
                function: &items_of_task1,
                name: "tests.items_of_task1",
                propagate_result: true,
            }),
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

/// `→ Task4`.
mod fe_sub {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "fe_sub",
        edges: &EDGES,
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task4"],
        ..EDGE
    }];
}

/// `→ Task1, Task2` with `nowait: Task2`.
mod nw_task {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "nw_task",
        edges: &EDGES,
        nowait: &["Task2"],
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task1", "Task2"],
        ..EDGE
    }];
}

/// `→ Task1, fe_sub` with `nowait: fe_sub`.
mod nw_flow {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "nw_flow",
        edges: &EDGES,
        nowait: &["fe_sub"],
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Task1", "fe_sub"],
        ..EDGE
    }];
}

/// `node_args_from_first`: `→ Task1`, `Task1 → Task2, Task3`.
mod na_first {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "na_first",
        edges: &EDGES,
        edges_from: &edges_from,
        node_args_from_first: true,
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
            to: &["Task2", "Task3"],
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

/// `node_args_from_first`: `→ Task1`, `Task1 → fe_sub`.
mod na_flow {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "na_flow",
        edges: &EDGES,
        edges_from: &edges_from,
        node_args_from_first: true,
        ..common::FLOW
    };
    pub static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["Task1"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["Task1"],
            to: &["fe_sub"],
            ..EDGE
        },
    ];
    pub fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "Task1" => &[1],
            _ => &[],
        }
    }
}

/// As `na_flow` with `propagate_node_args: true`.
mod na_flow_propagate {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "na_flow_propagate",
        edges: &na_flow::EDGES,
        edges_from: &na_flow::edges_from,
        node_args_from_first: true,
        propagate: PropagateSpec {
            node_args: &["fe_sub"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
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
    let outcome = rt.run_flow("fe_propagate", json!({"x": 0})).await.unwrap();
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
    let outcome = tokio::time::timeout(Duration::from_secs(5), rt.run_flow("nw_task", Json::Null))
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
        .run_flow("na_first", json!({"original": true}))
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
