//! `selinon status`: what a flow of the distributed runtime is doing, read from Redis
//! (`REDIS_URL`, else 127.0.0.1:6379; the test fails with how to start it when it does not
//! answer, see `selinon_testkit`).

use std::process::Command;

use selinon_runtime::amqp::{FlowBackend, RedisBackend};
use selinon_runtime::backend::{Commit, FlowRecord, NodeTiming, RecordStatus, RecordWrite};
use selinon_runtime::engine::{DispatcherMessage, FailureReason, FlowState, NodeRef, NodeStatus};

#[tokio::test]
async fn status_shows_running_finished_and_failed_nodes_with_timings() {
    let Some(redis_url) = selinon_testkit::redis_url() else {
        return;
    };
    let backend = RedisBackend::connect(&redis_url).await.unwrap();
    let flow_id = format!("status-test-{}", std::process::id());
    let mut message = DispatcherMessage::new(
        "order",
        &flow_id,
        serde_json::json!({"order": 7}),
        serde_json::Value::Null,
    );
    message.state = Some(FlowState {
        active_nodes: vec![NodeRef::new("ReserveStock", "t2")],
        finished_nodes: [("ValidateOrder".to_string(), vec!["t1".to_string()])].into(),
        failed_nodes: [("ChargeCard".to_string(), vec!["t3".to_string()])].into(),
        waiting_edges: vec![1],
        triggered_edges: vec![0, 1],
        failure_reasons: [(
            "t3".to_string(),
            FailureReason::Error("card declined".to_string()),
        )]
        .into(),
    });
    let timing = |node: &str, at: u64, end: Option<u64>, status| NodeTiming {
        node: node.into(),
        scheduled_ms: at,
        ended_ms: end,
        status,
    };
    let record = FlowRecord {
        message,
        report_to: None,
        status: RecordStatus::Running,
        result: None,
        created_ms: 1_000,
        updated_ms: 1_050,
        timings: [
            (
                "t1".to_string(),
                timing(
                    "ValidateOrder",
                    1_000,
                    Some(1_012),
                    Some(NodeStatus::Finished),
                ),
            ),
            ("t2".to_string(), timing("ReserveStock", 1_013, None, None)),
            (
                "t3".to_string(),
                timing("ChargeCard", 1_013, Some(1_020), Some(NodeStatus::Failed)),
            ),
        ]
        .into(),
    };
    assert!(backend
        .commit(&first_snapshot(&flow_id, &record))
        .await
        .unwrap());

    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_selinon"))
            .args(["status", &flow_id])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("flow order {flow_id} running")),
        "{text}"
    );
    let line = |node: &str| {
        text.lines()
            .find(|l| l.contains(node))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("ValidateOrder").trim_start().starts_with("finished"),
        "{text}"
    );
    assert!(line("ValidateOrder").contains("took 12 ms"), "{text}");
    assert!(
        line("ReserveStock").trim_start().starts_with("running"),
        "{text}"
    );
    assert!(
        line("ChargeCard").trim_start().starts_with("failed"),
        "{text}"
    );
    let after_charge_card = text
        .lines()
        .skip_while(|l| !l.contains("ChargeCard"))
        .nth(1)
        .unwrap_or_default();
    assert_eq!(after_charge_card.trim(), "reason: card declined", "{text}");

    let out = run(&["--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "running");
    assert_eq!(json["active_nodes"][0]["name"], "ReserveStock");
    assert_eq!(json["timings"]["t1"]["ended_ms"], 1_012);
    assert_eq!(json["failure_reasons"]["t3"], "card declined");

    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["status", "no-such-flow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record of flow no-such-flow"));
}

/// `status` takes the backend as workers and clients do: env `REDIS_URL` (or `--redis`), the
/// database in the URL's path.
#[tokio::test]
async fn status_reads_the_database_named_in_the_url() {
    let Some(redis_url) = selinon_testkit::redis_url() else {
        return;
    };
    // The same server, database 9.
    let base = redis_url.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = base.trim_end_matches('/');
    let db9 = format!("{base}/9");
    let backend = RedisBackend::connect(&db9).await.unwrap();
    let flow_id = format!("status-db-test-{}", std::process::id());
    let record = FlowRecord {
        message: DispatcherMessage::new(
            "order",
            &flow_id,
            serde_json::Value::Null,
            serde_json::Value::Null,
        ),
        report_to: None,
        status: RecordStatus::Finished,
        result: None,
        created_ms: 1_000,
        updated_ms: 1_010,
        timings: Default::default(),
    };
    assert!(backend
        .commit(&first_snapshot(&flow_id, &record))
        .await
        .unwrap());
    let status = |env: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_selinon"))
            .args(["status", &flow_id, "--format", "json"])
            .args(extra)
            .env("REDIS_URL", env)
            .output()
            .unwrap()
    };
    for out in [
        status(&db9, &[]),
        status(&format!("{base}/"), &["--redis", &db9]),
    ] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["status"], "finished");
    }
    // Database 0 (the default) does not hold it, and the error names the URL read.
    let out = status(&format!("{base}/"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no record of flow {flow_id} in {base}/ ")),
        "{err}"
    );
    // The default the workers use, when `REDIS_URL` is not set.
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["status", "--help"])
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[env: REDIS_URL=]"), "{help}");
    assert!(
        help.contains(&format!(
            "[default: {}]",
            selinon_runtime::amqp::DEFAULT_REDIS_URL
        )),
        "{help}"
    );
}

/// The commit that writes a flow's first record, whole.
fn first_snapshot<'a>(flow_id: &'a str, record: &'a FlowRecord) -> Commit<'a> {
    Commit {
        flow_id,
        expected: None,
        write: RecordWrite::Snapshot(record),
        ended: false,
        triggers: &[],
        outbox: &[],
        task_marks: &[],
    }
}
