//! Counterparts of upstream `test/test_selective.py` (computing the selective map) and
//! `test/test_selective_flow.py` (running a flow selectively).

mod common;

use std::sync::Arc;

use common::*;
use selinon_runtime::engine::{RunSubsequent, SelectiveError, SelectiveMap};
use std::collections::{BTreeMap, BTreeSet};

use selinon_runtime::spec::SystemSpec;
use selinon_runtime::TraceRecorder;
use selinon_runtime::{json, RunError, Runtime, System, TraceEvent};

/// Expected subsets: flow → edge index → allowed `to` nodes.
type Subsets = BTreeMap<String, BTreeMap<usize, BTreeSet<String>>>;
type Expected<'a> = [(&'a str, &'a [(usize, &'a [&'a str])])];

fn subset(map: &SelectiveMap) -> Subsets {
    map.waiting_edges_subset
        .iter()
        .map(|(f, edges)| {
            (
                f.clone(),
                edges
                    .iter()
                    .map(|(i, to)| (i.parse().unwrap(), to.iter().cloned().collect()))
                    .collect(),
            )
        })
        .collect()
}

fn expect(entries: &Expected<'_>) -> Subsets {
    entries
        .iter()
        .map(|(f, edges)| {
            (
                f.to_string(),
                edges
                    .iter()
                    .map(|(i, to)| (*i, to.iter().map(|t| t.to_string()).collect()))
                    .collect(),
            )
        })
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// test_compute_selective_run_simple
#[test]
fn compute_simple() {
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
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: [Task1, Task2]}
                      - {from: [Task1, Task2], to: Task3}
                      - {from: Task1, to: Task4}
                      - {from: [Task3, Task4], to: Task5}
                      - {from: Task3, to: Task6}
            "#
        );
    }
    let map = SelectiveMap::compute(
        &System::new(&config::SYSTEM),
        "flow1",
        &names(&["Task4", "Task3"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[(
            "flow1",
            &[(0, &["Task1", "Task2"]), (1, &["Task3"]), (2, &["Task4"])]
        )])
    );
}

// test_compute_selective_run_cyclic: every path to Task4, the cyclic one too.
#[test]
fn compute_cyclic() {
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
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: [Task1, Task2]}
                      - {from: Task1, to: Task3}
                      - {from: Task2, to: Task4}
                      - {from: Task4, to: Task2}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let map = SelectiveMap::compute(
        &System::new(sys),
        "flow1",
        &names(&["Task4"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[(
            "flow1",
            &[(0, &["Task2"]), (2, &["Task4"]), (3, &["Task2"])]
        )])
    );
}

// test_compute_selective_run_multi_path
#[test]
fn compute_multi_path() {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory}
                  - {name: Task2, import: common, classname: Scripted, storage: Memory}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: , to: Task2}
                      - {from: Task1, to: Task3}
                      - {from: Task2, to: Task3}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let map = SelectiveMap::compute(
        &System::new(sys),
        "flow1",
        &names(&["Task3"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[(
            "flow1",
            &[
                (0, &["Task1"]),
                (1, &["Task2"]),
                (2, &["Task3"]),
                (3, &["Task3"])
            ]
        )])
    );
}

/// flow1 with the sub-flow flow2; Task2 is in both.
fn two_flows() -> &'static SystemSpec {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory}
                  - {name: Task2, import: common, classname: Scripted, storage: Memory}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                  - {name: Task4, import: common, classname: Scripted, storage: Memory}
                  - {name: Task5, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1, flow2]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: Task1, to: Task2}
                      - {from: Task1, to: flow2}
                      - {from: Task2, to: Task3}
                  - name: flow2
                    edges:
                      - {from: , to: Task4}
                      - {from: Task4, to: Task2}
                      - {from: Task2, to: Task5}
            "#
        );
    }
    &config::SYSTEM
}

// test_compute_selective_run_follow_subflows
#[test]
fn compute_follow_subflows() {
    let map = SelectiveMap::compute(
        &System::new(two_flows()),
        "flow1",
        &names(&["Task2"]),
        true,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[
            (
                "flow1",
                &[(0, &["Task1"]), (1, &["Task2"]), (2, &["flow2"])]
            ),
            ("flow2", &[(0, &["Task4"]), (1, &["Task2"])]),
        ])
    );
}

// test_compute_selective_run_follow_subflows_recursive: a cycle of sub-flows ends.
#[test]
fn compute_follow_subflows_recursive() {
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
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1, flow2, flow3]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: Task1, to: Task2}
                      - {from: Task1, to: flow2}
                      - {from: Task2, to: Task3}
                  - name: flow2
                    edges:
                      - {from: , to: Task4}
                      - {from: Task4, to: Task2}
                      - {from: Task4, to: flow3}
                      - {from: Task2, to: Task5}
                  - name: flow3
                    edges:
                      - {from: , to: Task6}
                      - {from: Task6, to: Task2}
                      - {from: Task6, to: flow1}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let map = SelectiveMap::compute(
        &System::new(sys),
        "flow1",
        &names(&["Task2"]),
        true,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[
            (
                "flow1",
                &[(0, &["Task1"]), (1, &["Task2"]), (2, &["flow2"])]
            ),
            (
                "flow2",
                &[(0, &["Task4"]), (1, &["Task2"]), (2, &["flow3"])]
            ),
            ("flow3", &[(0, &["Task6"]), (1, &["Task2"])]),
        ])
    );
}

// test_compute_selective_run_subsequent
#[test]
fn compute_subsequent() {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory}
                  - {name: Task2, import: common, classname: Scripted, storage: Memory}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: Task1, to: Task2}
                      - {from: Task2, to: Task3}
            "#
        );
    }
    let map = SelectiveMap::compute(
        &System::new(&config::SYSTEM),
        "flow1",
        &names(&["Task2"]),
        false,
        &RunSubsequent::All,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[(
            "flow1",
            &[(0, &["Task1"]), (1, &["Task2"]), (2, &["Task3"])]
        )])
    );
}

// test_compute_selective_run_follow_subflows_subsequent
#[test]
fn compute_follow_subflows_subsequent() {
    let map = SelectiveMap::compute(
        &System::new(two_flows()),
        "flow1",
        &names(&["Task2"]),
        true,
        &RunSubsequent::All,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[
            (
                "flow1",
                &[
                    (0, &["Task1"]),
                    (1, &["Task2"]),
                    (2, &["flow2"]),
                    (3, &["Task3"])
                ]
            ),
            (
                "flow2",
                &[(0, &["Task4"]), (1, &["Task2"]), (2, &["Task5"])]
            ),
        ])
    );
}

// test_compute_selective_run_bad_task_names (upstream: SelectiveNoPathError)
#[test]
fn unknown_or_unreachable_tasks_are_clear_errors() {
    let err = SelectiveMap::compute(
        &System::new(two_flows()),
        "flow1",
        &names(&["TaskX"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap_err();
    assert!(matches!(err, SelectiveError::UnknownTask { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`TaskX` is not a task of flow `flow1`"),
        "{err}"
    );
    // Task4 is in the sub-flow only: the message says to follow sub-flows.
    let err = SelectiveMap::compute(
        &System::new(two_flows()),
        "flow1",
        &names(&["Task4"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap_err();
    assert!(err.to_string().contains("follow_subflows"), "{err}");
    // Task3 waits on itself: no path from the start leads to it.
    mod waits_on_itself {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: Task3, to: Task3}
            "#
        );
    }
    let sys = &waits_on_itself::SYSTEM;
    let err = SelectiveMap::compute(
        &System::new(sys),
        "flow1",
        &names(&["Task3"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap_err();
    assert_eq!(
        err,
        SelectiveError::NoPath {
            task: "Task3".into(),
            flow: "flow1".into()
        }
    );
}

async fn run_selective(
    sys: &'static SystemSpec,
    tasks: &[&str],
    follow: bool,
    subsequent: RunSubsequent,
) -> (selinon_runtime::FlowOutcome, Arc<Script>, TraceRecorder) {
    let script = Script::new();
    let recorder = TraceRecorder::new();
    let rt = Runtime::builder(sys)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .build();
    let out = rt
        .run_selective_by_name("flow1", tasks, json!({}), follow, subsequent)
        .await
        .unwrap();
    (out, script, recorder)
}

// test_selective_flow_one_task: only the path to Task2 runs.
#[tokio::test]
async fn only_the_path_to_the_task_runs() {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory}
                  - {name: Task2, import: common, classname: Scripted, storage: Memory}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                  - {name: Task4, import: common, classname: Scripted, storage: Memory}
                  - {name: Task5, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: [Task1, Task4]}
                      - {from: Task1, to: Task2}
                      - {from: Task2, to: Task3}
                      - {from: Task4, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let (out, script, recorder) = run_selective(sys, &["Task2"], false, RunSubsequent::No).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(script.count("Task1"), 1);
    assert_eq!(script.count("Task2"), 1);
    for skipped in ["Task3", "Task4", "Task5"] {
        assert_eq!(script.count(skipped), 0, "{skipped}");
    }
    assert!(recorder.count(TraceEvent::SelectiveOmitNode) >= 1);
    assert!(recorder.count(TraceEvent::SelectiveOmitEdge) >= 1);

    // With run_subsequent, what follows Task2 runs too.
    let (out, script, _) = run_selective(sys, &["Task2"], false, RunSubsequent::All).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(script.count("Task3"), 1);
    assert_eq!(script.count("Task4"), 0);
}

// test_selective_flow_first_task / reuse: a task on the path that was not asked for reuses
// an earlier run when its selective run function names one; the requested task still runs.
#[tokio::test]
async fn selective_run_function_reuses_earlier_results() {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Task1, import: common, classname: Scripted, storage: Memory, selective_run_function: {name: reuse_earlier, import: common}}
                  - {name: Task2, import: common, classname: Scripted, storage: Memory, selective_run_function: {name: reuse_earlier, import: common}}
                  - {name: Task3, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Task1}
                      - {from: Task1, to: Task2}
                      - {from: Task2, to: Task3}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let (out, script, recorder) = run_selective(sys, &["Task2"], false, RunSubsequent::No).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(script.count("Task1"), 0, "reused, not run");
    assert_eq!(out.finished("Task1"), ["earlier-Task1".to_string()]);
    assert_eq!(script.count("Task2"), 1, "requested: always runs");
    assert_eq!(
        script.runs_of("Task2")[0].parent,
        json!({"Task1": "earlier-Task1"})
    );
    assert_eq!(script.count("Task3"), 0);
    assert_eq!(recorder.count(TraceEvent::SelectiveTaskReuse), 1);
}

// test_selective_flow_subflow: the selective run goes on into the sub-flow.
#[tokio::test]
async fn follow_subflows_runs_the_path_inside_the_subflow() {
    let (out, script, _) = run_selective(two_flows(), &["Task2"], true, RunSubsequent::No).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(script.count("Task1"), 1);
    assert_eq!(script.count("Task4"), 1);
    assert_eq!(script.count("Task2"), 2, "in flow1 and in flow2");
    assert_eq!(script.count("Task3"), 0);
    assert_eq!(script.count("Task5"), 0);
}

#[tokio::test]
async fn unknown_task_is_an_error_of_the_handle() {
    let rt = Runtime::new(two_flows());
    let err = rt
        .run_selective_by_name("flow1", &["Nope"], json!({}), false, RunSubsequent::No)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Selective(_)), "{err}");
    assert!(
        err.to_string()
            .contains("`Nope` is not a task of flow `flow1`"),
        "{err}"
    );
}

// Upstream keeps only edges on a complete path from a starting edge to a requested task: an
// edge out of a node that only a fallback starts is not on one (fabric8's `cveCheckFlow`,
// `FinalizeTaskError → ResultCollector`).
#[tokio::test]
async fn an_edge_from_a_node_only_a_fallback_starts_is_not_on_the_path() {
    mod config {
        selinon_macros::flows!(
            r#"
                tasks:
                  - {name: Work, import: common, classname: Scripted, storage: Memory}
                  - {name: OnError, import: common, classname: Scripted, storage: Memory}
                  - {name: Target, import: common, classname: Scripted, storage: Memory}
                storages:
                  - name: Memory
                    import: selinon.storages.memory
                    classname: InMemoryStorage
                    configuration: {echo: false}
                flows: [flow1]
                flow-definitions:
                  - name: flow1
                    edges:
                      - {from: , to: Work}
                      - {from: Work, to: Target}
                      - {from: OnError, to: Target}
                    failures:
                      - {nodes: Work, fallback: OnError}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let map = SelectiveMap::compute(
        &System::new(sys),
        "flow1",
        &names(&["Target"]),
        false,
        &RunSubsequent::No,
    )
    .unwrap();
    assert_eq!(
        subset(&map),
        expect(&[("flow1", &[(0, &["Work"]), (1, &["Target"])])])
    );

    let script = Script::new();
    script.set("Work", Behaviour::Fail);
    let rt = Runtime::builder(sys).resource_arc(script.clone()).build();
    let out = rt
        .run_selective_by_name("flow1", &["Target"], json!({}), false, RunSubsequent::No)
        .await
        .unwrap();
    assert!(
        out.is_finished(),
        "the fallback handled the failure: {out:?}"
    );
    assert_eq!(script.count("Work"), 1);
    assert_eq!(script.count("OnError"), 1);
    assert_eq!(
        script.count("Target"),
        0,
        "no complete path leads through OnError"
    );
}
