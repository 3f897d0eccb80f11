//! Counterpart of upstream `test/migrations/test_migrate.py`: a flow's state written by an
//! older configuration is migrated at its next pass. The migration files are upstream's test
//! data (`test/data/migrations/migration_dirs/*`), in `migration_dirs/`, embedded by the
//! generator from `global.migration_dir`.

mod common;

use common::*;
use selinon_runtime::engine::{dispatch, DispatcherMessage, FlowState, NodeRef, PassOutcome};
use selinon_runtime::{json, System, TraceEvent};

// flow1 of every case: `→ Task1`, `Task1 → Task2`, `Task2 → Task3`, `Task2 → Task4`,
// `Task3 → Task5`; the migration chain is the case's folder of `migration_dirs/`.

fn message(version: Option<u32>, state: FlowState) -> DispatcherMessage {
    let mut m = DispatcherMessage::new("flow1", "flow-id", json!({}), json!(null));
    m.state = Some(state);
    m.migration_version = version;
    m
}

fn node(name: &str, id: &str) -> NodeRef {
    NodeRef::new(name, id)
}

// test_zero_migration / test_no_migration_version: nothing to migrate.
#[tokio::test]
async fn without_migrations_nothing_changes() {
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
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let out = dispatch(
        &System::new(sys),
        &DispatcherMessage::new("flow1", "id", json!({}), json!(null)),
        &[],
        &env,
    )
    .await;
    assert_eq!(out.message.migration_version, None);
    assert_eq!(env.recorder.count(TraceEvent::Migration), 0);
}

// test_start_latest_migration: a new flow starts at the latest version.
#[tokio::test]
async fn a_new_flow_starts_at_the_latest_version() {
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
            global: {migration_dir: migration_dirs/one_migration}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let out = dispatch(
        &System::new(sys),
        &DispatcherMessage::new("flow1", "id", json!({}), json!(null)),
        &[],
        &env,
    )
    .await;
    assert_eq!(out.message.migration_version, Some(1));
    assert!(matches!(out.outcome, PassOutcome::Running));
}

// test_one_migration: waiting edge 1 becomes 2; edge 0 fired but is not tainted.
#[tokio::test]
async fn one_migration_translates_waiting_edges() {
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
            global: {migration_dir: migration_dirs/one_migration}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        active_nodes: vec![node("Task3", "id3")],
        waiting_edges: vec![1],
        triggered_edges: vec![0],
        ..FlowState::default()
    };
    let out = dispatch(&System::new(sys), &message(Some(0), state), &[], &env).await;
    assert_eq!(out.message.migration_version, Some(1));
    let st = out.message.state.unwrap();
    assert_eq!(st.waiting_edges, [2]);
    assert_eq!(st.triggered_edges, [0]);
    let traced = env.recorder.of(TraceEvent::Migration);
    assert_eq!(traced.len(), 1);
    assert_eq!(traced[0]["tainted_flow"], false);
}

// test_migration_chaining: files 2 and 3 (no 1: older files removed) applied in order.
#[tokio::test]
async fn migrations_chain() {
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
            global: {migration_dir: migration_dirs/migration_chaining}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        active_nodes: vec![node("Task2", "id2")],
        finished_nodes: [("Task1".to_string(), vec!["id1".to_string()])].into(),
        waiting_edges: vec![1],
        triggered_edges: vec![0, 1],
        ..FlowState::default()
    };
    let out = dispatch(&System::new(sys), &message(Some(1), state), &[], &env).await;
    assert_eq!(out.message.migration_version, Some(3));
    let st = out.message.state.unwrap();
    // 2.json: Task2 is running, so the new edge 2 waits for it; 3.json: nothing to drop.
    assert_eq!(sorted(&st.waiting_edges), [1, 2]);
    assert_eq!(st.triggered_edges, [0, 1]);
    assert_eq!(
        env.recorder.of(TraceEvent::Migration)[0]["tainted_flow"],
        false
    );
}

// test_migration_chaining_tainted (IGNORE): a fired edge that is gone taints the flow, which
// goes on.
#[tokio::test]
async fn ignore_strategy_goes_on_with_a_tainted_flow() {
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
            global: {migration_dir: migration_dirs/migration_chaining}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        active_nodes: vec![node("Task4", "id4")],
        finished_nodes: [("Task3".to_string(), vec!["id3".to_string()])].into(),
        waiting_edges: vec![4],
        triggered_edges: vec![0, 1, 2],
        ..FlowState::default()
    };
    // Edge 2 becomes 3 in 2.json, and edge 3 is tainted in 3.json.
    let out = dispatch(&System::new(sys), &message(Some(1), state), &[], &env).await;
    assert!(
        matches!(out.outcome, PassOutcome::Running),
        "{:?}",
        out.outcome
    );
    assert_eq!(out.message.migration_version, Some(3));
    assert_eq!(out.message.state.unwrap().triggered_edges, [0, 1]);
    assert_eq!(
        env.recorder.of(TraceEvent::Migration)[0]["tainted_flow"],
        true
    );
}

// test_migration_flow_retry: the flow restarts from scratch, not counted as a retry.
#[tokio::test]
async fn retry_strategy_restarts_the_flow() {
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
            global: {migration_dir: migration_dirs/migration_flow_retry}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        finished_nodes: [
            ("Task1".to_string(), vec!["id1".to_string()]),
            ("Task2".to_string(), vec!["id2".to_string()]),
        ]
        .into(),
        active_nodes: vec![node("Task3", "id3")],
        waiting_edges: vec![2, 4],
        triggered_edges: vec![0, 1, 2],
        ..FlowState::default()
    };
    let out = dispatch(&System::new(sys), &message(Some(1), state), &[], &env).await;
    assert!(
        matches!(out.outcome, PassOutcome::Restart { .. }),
        "{:?}",
        out.outcome
    );
    assert!(out.message.state.is_none(), "from scratch");
    assert_eq!(out.message.retried_count, 0, "not counted as a flow retry");
    let traced = env.recorder.of(TraceEvent::MigrationTaintedFlow);
    assert_eq!(traced.len(), 1);
    assert_eq!(traced[0]["tainted_flow_strategy"], "RETRY");
    // The restarted flow starts at the latest version.
    let again = dispatch(&System::new(sys), &out.message, &[], &env).await;
    assert_eq!(again.message.migration_version, Some(2));
}

// test_migration_flow_fail: the flow fails with its state.
#[tokio::test]
async fn fail_strategy_fails_the_flow() {
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
            global: {migration_dir: migration_dirs/migration_flow_fail}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        finished_nodes: [
            ("Task1".to_string(), vec!["id1".to_string()]),
            ("Task2".to_string(), vec!["id2".to_string()]),
        ]
        .into(),
        active_nodes: vec![node("Task3", "id3")],
        waiting_edges: vec![2],
        triggered_edges: vec![0, 1],
        ..FlowState::default()
    };
    let out = dispatch(&System::new(sys), &message(Some(1), state), &[], &env).await;
    match out.outcome {
        PassOutcome::Failed(result) => assert_eq!(result.finished_nodes.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.recorder.of(TraceEvent::MigrationTaintedFlow)[0]["migration_version"],
        2
    );
}

// test_migration_skew: a message newer than this worker's migrations is put back.
#[tokio::test]
async fn a_newer_message_is_put_back_not_dropped() {
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
            global: {migration_dir: migration_dirs/one_migration}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &config::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        active_nodes: vec![node("Task1", "id1")],
        triggered_edges: vec![0],
        ..FlowState::default()
    };
    let input = message(Some(3), state);
    let out = dispatch(&System::new(sys), &input, &[], &env).await;
    assert!(
        matches!(out.outcome, PassOutcome::RetryPass { .. }),
        "{:?}",
        out.outcome
    );
    assert_eq!(out.message, input, "untouched, to be handled again");
    assert_eq!(env.recorder.count(TraceEvent::MigrationSkew), 1);
    // A gap in the chain is a skew too.
    mod gap {
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
            global: {migration_dir: migration_dirs/migration_gap}
            flows: [flow1]
            flow-definitions:
              - name: flow1
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
                  - {from: Task2, to: Task3}
                  - {from: Task2, to: Task4}
                  - {from: Task3, to: Task5}
            "#
        );
    }
    let sys = &gap::SYSTEM;
    let env = StepEnv::default();
    let state = FlowState {
        active_nodes: vec![node("Task1", "id1")],
        triggered_edges: vec![0],
        ..FlowState::default()
    };
    let out = dispatch(&System::new(sys), &message(Some(1), state), &[], &env).await;
    assert!(matches!(out.outcome, PassOutcome::RetryPass { .. }));
}
