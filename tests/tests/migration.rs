//! Migrations embedded in generated code, applied in this process. Flows of version 1 of a
//! system (`amqp_migration/v1`: `A → B → C`) are carried on by version 2 (`amqp_migration/v2`:
//! `A → B → D`, edges reordered). Version 2's generated code embeds its `migrations/1.json`,
//! found beside its nodes file, not in the working directory of the test (which has no
//! `migrations` folder): a test fails when the chain is not embedded.
//!
//! The live counterpart, with workers on RabbitMQ killed and replaced by version 2, is
//! `amqp_crash::running_flows_migrate_to_new_workers`.

use std::sync::Arc;
use std::time::Duration;

use selinon_runtime::engine::{
    dispatch, Action, DispatcherMessage, EngineEnv, FlowResult, NodeEvent, PassOutcome,
};
use selinon_runtime::trace::Tracer;
use selinon_runtime::{json, Json, StorageError, System, SystemSpec, TraceEvent, TraceRecorder};
use selinon_tests::{flows_v1, flows_v2, flows_v2_fail};

/// Passes without storages or sub-flows; trace events are recorded.
struct Env {
    tracer: Tracer,
    recorder: TraceRecorder,
}

impl Env {
    fn new() -> Self {
        let recorder = TraceRecorder::new();
        Env {
            tracer: Tracer::new(vec![Arc::new(recorder.clone())]),
            recorder,
        }
    }
}

#[selinon_runtime::async_trait]
impl EngineEnv for Env {
    async fn retrieve(&self, _: &str, _: &str, _: &str) -> Result<Json, StorageError> {
        Ok(Json::Null)
    }

    async fn flow_result(&self, _: &str, _: &str) -> Option<FlowResult> {
        None
    }

    fn throttle(&self, _: &str, _: bool, _: Duration) -> Duration {
        Duration::ZERO
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }
}

/// The ids and names of the nodes a pass starts.
fn started(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .map(|a| match a {
            Action::StartTask { message, .. } => {
                (message.task_id.clone(), message.task_name.clone())
            }
            Action::StartFlow { message, .. } => {
                (message.flow_id.clone(), message.flow_name.clone())
            }
        })
        .collect()
}

/// Runs version 1 from a fresh flow, finishing each started task, until `task` runs; returns
/// the flow's message then and the running instance's id.
async fn version_1_running(task: &str) -> (DispatcherMessage, String) {
    let system: &'static SystemSpec = &flows_v1::SYSTEM;
    let env = Env::new();
    let mut message = DispatcherMessage::new("mig", "flow-1", json!({}), Json::Null);
    let mut events = Vec::new();
    for _ in 0..4 {
        let out = dispatch(&System::new(system), &message, &events, &env).await;
        assert!(
            matches!(out.outcome, PassOutcome::Running),
            "{:?}",
            out.outcome
        );
        message = out.message;
        let now = started(&out.actions);
        if let Some((id, _)) = now.iter().find(|(_, name)| name == task) {
            assert_eq!(
                message.migration_version,
                Some(0),
                "version 1 has no migration"
            );
            return (message, id.clone());
        }
        events = now
            .into_iter()
            .map(|(id, _)| NodeEvent::finished(id))
            .collect();
    }
    panic!("{task} never started");
}

#[test]
fn version_2_embeds_its_migration_chain() {
    for system in [&flows_v2::SYSTEM, &flows_v2_fail::SYSTEM] {
        let dir = system.migration_dir.as_ref().expect("migration_dir");
        assert_eq!(dir.files.len(), 1);
        assert_eq!(dir.files[0].0, 1);
        assert!(dir.files[0].1.contains("\"mig\""), "{}", dir.files[0].1);
    }
}

/// B runs under version 1 when version 2 takes over: the flow is migrated (not tainted: the
/// edge B → C has not fired) and B's end starts D.
#[tokio::test]
async fn a_flow_running_b_is_migrated_and_goes_on_to_d() {
    let (v1, b) = version_1_running("B").await;
    let env = Env::new();
    let out = dispatch(
        &System::new(&flows_v2::SYSTEM),
        &v1,
        &[NodeEvent::finished(b)],
        &env,
    )
    .await;
    assert_eq!(out.message.migration_version, Some(1));
    let names: Vec<String> = started(&out.actions).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["D"], "{:?}", out.outcome);
    let migrated = env.recorder.of(TraceEvent::Migration);
    assert_eq!(migrated.len(), 1, "{migrated:?}");
    assert_eq!(migrated[0]["tainted_flow"], false);
}

/// C runs under version 1 (its edge B → C fired, and version 2 removed that edge): with the
/// FAIL strategy the migration fails the flow; the same state taken as version 2's (no
/// migration) finishes.
#[tokio::test]
async fn a_tainted_flow_fails_with_the_migration_and_finishes_without() {
    let (v1, c) = version_1_running("C").await;
    let c_ends = [NodeEvent::finished(c)];

    let env = Env::new();
    let migrated = dispatch(&System::new(&flows_v2_fail::SYSTEM), &v1, &c_ends, &env).await;
    assert!(
        matches!(migrated.outcome, PassOutcome::Failed(_)),
        "{:?}",
        migrated.outcome
    );
    assert!(migrated.actions.is_empty(), "{:?}", migrated.actions);
    let tainted = env.recorder.of(TraceEvent::MigrationTaintedFlow);
    assert_eq!(tainted.len(), 1, "{tainted:?}");
    assert_eq!(tainted[0]["tainted_flow_strategy"], "FAIL");

    let mut unmigrated = v1.clone();
    unmigrated.migration_version = Some(1);
    let env = Env::new();
    let out = dispatch(
        &System::new(&flows_v2_fail::SYSTEM),
        &unmigrated,
        &c_ends,
        &env,
    )
    .await;
    assert!(
        matches!(out.outcome, PassOutcome::Finished(_)),
        "{:?}",
        out.outcome
    );
    assert!(env.recorder.of(TraceEvent::MigrationTaintedFlow).is_empty());
}
