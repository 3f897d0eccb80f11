//! Nothing is lost: worker processes killed with SIGKILL every second, and RabbitMQ itself
//! restarted, while flows run; every flow still reaches its correct final state.
//! Also: poison messages go to the dead-letter queue and the worker goes on.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use selinon_runtime::amqp::broker::connection_properties;
use selinon_runtime::{json, FlowOutcome};
use selinon_tests::{flows, flows_v1};
use support::{amqp_url, services, Cluster};

/// The final state every `everything` flow must reach: the retried task, the join, the
/// sub-flow and the fallback all done, nothing failed.
fn assert_everything_done(out: &FlowOutcome) {
    assert!(out.is_finished(), "{out:?}");
    for node in ["Flaky", "A", "B", "join", "D", "Recover"] {
        assert_eq!(out.finished(node).len(), 1, "{node}: {out:?}");
    }
    assert!(out.failed_nodes.is_empty(), "{out:?}");
}

/// Runs of task instances beyond the expected ones (`Flaky` fails once by design).
fn duplicates(runs: &HashMap<String, i64>) -> i64 {
    runs.iter()
        .map(|(key, n)| {
            let expected = if key.starts_with("Flaky:") { 2 } else { 1 };
            (n - expected).max(0)
        })
        .sum()
}

async fn wait_and_check(cluster: &Cluster, ids: &[String], ns: &str, patience: Duration) {
    let done = cluster.client.wait_all(ids, patience).await.unwrap();
    let lost: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
    for id in lost.iter().take(5) {
        eprintln!("not ended: {:?}", cluster.client.status(id).await);
    }
    assert!(
        lost.is_empty(),
        "{} of {} flows never ended",
        lost.len(),
        ids.len()
    );
    for out in done.values() {
        assert_everything_done(out);
    }
    let runs = cluster.runs(ns).await;
    // Every scheduled task instance ran (at least once): 6 tasks + 4 in the `join` sub-flow.
    assert_eq!(runs.len(), ids.len() * 10, "task instances that ran");
    eprintln!(
        "{} flows, {} task instances, {} duplicate runs",
        ids.len(),
        runs.len(),
        duplicates(&runs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_every_second_lose_no_flow() {
    if !services() {
        return;
    }
    let mut cluster = Cluster::start_with("crash", 3, 4).await;
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let ids = cluster
        .client
        .submit_many(
            &flows::everything::FLOW,
            (0..200).map(|_| json!({"ns": ns, "sleep_ms": 100})),
        )
        .await
        .unwrap();
    // Kill a worker (SIGKILL) every second and start a new one, until every flow ended.
    let started = Instant::now();
    let mut seed = 0x9e37_79b9_u64;
    let mut kills = 0;
    while started.elapsed() < Duration::from_secs(150) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ended = cluster
            .client
            .wait_all(&ids, Duration::ZERO)
            .await
            .unwrap()
            .len();
        if ended == ids.len() {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = (seed % 3) as usize;
        cluster.kill(victim).await;
        cluster.restart(victim);
        kills += 1;
        eprintln!(
            "killed worker {victim} with {ended} of {} flows ended",
            ids.len()
        );
    }
    assert!(kills >= 3, "the flows ran through several kills ({kills})");
    wait_and_check(&cluster, &ids, &ns, Duration::from_secs(60)).await;
    cluster.stop().await;
}

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl runs (it comes with rabbitmq-server)");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_mid_run_loses_no_flow() {
    if !services() {
        return;
    }
    let cluster = Cluster::start_with("restart", 3, 4).await;
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let ids = cluster
        .client
        .submit_many(
            &flows::everything::FLOW,
            (0..100).map(|_| json!({"ns": ns, "sleep_ms": 100})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    wait_and_check(&cluster, &ids, &ns, Duration::from_secs(60)).await;
    cluster.stop().await;
}

/// Up to `n` messages taken from the dead-letter queue that came from `queue` (within 20 s),
/// each as it came with the reason in its headers.
async fn dead_lettered(channel: &lapin::Channel, queue: &str, n: usize) -> Vec<(Vec<u8>, String)> {
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while found.len() < n && Instant::now() < deadline {
        let got = channel
            .basic_get(
                selinon_runtime::amqp::DEAD_LETTER_QUEUE,
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        let Some(message) = got else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let header = |name: &str| match headers.inner().get(name) {
            Some(lapin::types::AMQPValue::LongString(s)) => s.to_string(),
            _ => String::new(),
        };
        if header("x-selinon-queue") == queue {
            found.push((message.delivery.data.clone(), header("x-selinon-reason")));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue() {
    if !services() {
        return;
    }
    let mut cluster = Cluster::start("poison", 1).await;
    let queue = format!("{}_tasks", cluster.prefix);
    let conn = lapin::Connection::connect(&amqp_url(), connection_properties("selinon-test"))
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    // The queue may not be declared by the worker yet.
    channel
        .queue_declare(
            &queue,
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    let bad: [(&str, &[u8]); 5] = [
        ("not JSON", b"\xff\xfe garbage"),
        ("no version", br#"{"kind":"task"}"#),
        ("version 99", br#"{"v":99,"kind":"task"}"#),
        (
            "unknown task",
            br#"{"v":1,"kind":"task","task_name":"Nope","flow_name":"chain","task_id":"x","dispatcher_id":"y","report":true}"#,
        ),
        (
            "unknown flow",
            br#"{"v":1,"kind":"kick","flow_name":"nope","flow_id":"z","retried_count":0}"#,
        ),
    ];
    for (_, body) in bad {
        channel
            .basic_publish(
                "",
                &queue,
                lapin::options::BasicPublishOptions::default(),
                body,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }
    // The worker goes on: a flow still runs.
    let out = cluster
        .run(&flows::chain::FLOW, json!({"ns": "poison"}))
        .await;
    assert!(out.is_finished(), "{out:?}");
    cluster.assert_alive();

    // Each poison message is in the dead-letter queue with its reason.
    let reasons = dead_lettered(&channel, &queue, bad.len()).await;
    assert_eq!(reasons.len(), bad.len(), "{reasons:?}");
    for ((what, body), expected) in bad.iter().zip([
        "not a JSON object",
        "no version field",
        "version 99 is not supported",
        "unknown task `Nope`",
        "unknown flow `nope`",
    ]) {
        let (_, reason) = reasons
            .iter()
            .find(|(b, _)| b == body)
            .unwrap_or_else(|| panic!("{what}: not dead-lettered as it came"));
        assert!(reason.contains(expected), "{what}: {reason}");
    }
    cluster.kill(0).await;
    cluster.stop().await;
}

/// A live migration: flows of version 1 (`A → B → C`) are running when every worker is
/// killed and workers of version 2 (`A → B → D`, with `migrations/1.json`) take over. Each
/// flow is migrated at its next pass (IGNORE strategy: not tainted here) and ends with `D`,
/// never `C`; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_flows_migrate_to_new_workers() {
    if !services() {
        return;
    }
    let mut cluster = Cluster::start_system("migrate", 2, 16, "v1").await;
    let ns = uuid::Uuid::new_v4().simple().to_string();
    let ids = cluster
        .client
        .submit_many(
            &flows_v1::mig::FLOW,
            (0..12).map(|_| json!({"ns": ns, "sleep": {"B": 2500}})),
        )
        .await
        .unwrap();
    // Wait until every flow runs B (A ended under version 1); 12 flows fit in one worker's
    // 16 slots, so no B waits for another.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = cluster.runs_by_task(&ns).await;
        if runs.get("B").copied().unwrap_or(0) >= ids.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not start everywhere: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Version 2 takes over: the old workers die mid-task.
    eprintln!(
        "runs before the kill: {:?}",
        cluster.runs_by_task(&ns).await
    );
    cluster.system = "v2".into();
    for i in 0..2 {
        cluster.kill(i).await;
        cluster.restart(i);
    }
    let done = cluster
        .client
        .wait_all(&ids, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done.len(), ids.len(), "no flow lost");
    for out in done.values() {
        assert!(out.is_finished(), "{out:?}");
        assert_eq!(out.finished("D").len(), 1, "{out:?}");
        assert!(out.finished("C").is_empty(), "{out:?}");
    }
    let runs = cluster.runs_by_task(&ns).await;
    assert_eq!(runs.get("C"), None, "{runs:?}");
    assert_eq!(runs["D"], ids.len() as i64, "{runs:?}");
    cluster.stop().await;
}

/// A flow whose nodes multiply (a join on a cycle) fails at the node limit with the edge
/// named, and the worker goes on with other flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multiplying_flow_fails_at_the_node_limit_and_the_worker_goes_on() {
    if !services() {
        return;
    }
    std::env::set_var("SELINON_TEST_MAX_NODES", "300");
    let mut cluster = Cluster::start("limit", 1).await;
    let started = Instant::now();
    let ns = format!("{}-diamond", cluster.prefix);
    let out = cluster.run(&flows::diamond::FLOW, json!({"ns": ns})).await;
    assert_eq!(out.status, selinon_runtime::FlowStatus::Failed, "{out:?}");
    let runs: i64 = cluster.runs_by_task(&ns).await.values().sum();
    assert!((50..=300).contains(&runs), "it ran until the limit: {runs}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // What triggered the failing pass is in the dead-letter queue, with the reason.
    let conn = lapin::Connection::connect(&amqp_url(), connection_properties("selinon-test"))
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let dispatcher_queue = format!("{}_dispatcher", cluster.prefix);
    let dead = dead_lettered(&channel, &dispatcher_queue, 1).await;
    assert_eq!(dead.len(), 1, "no dead-lettered trigger");
    let reason = &dead[0].1;
    assert!(
        reason.contains("flow `diamond` would start more than 300 nodes")
            && reason.contains("edge #"),
        "{reason}"
    );
    let _ = conn.close(200, "bye").await;

    cluster.assert_alive();
    let ns = format!("{}-chain", cluster.prefix);
    let out = cluster.run(&flows::chain::FLOW, json!({"ns": ns})).await;
    assert!(out.is_finished(), "the worker goes on: {out:?}");
    cluster.stop().await;
}
