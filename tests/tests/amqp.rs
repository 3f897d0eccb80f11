//! The in-process engine's scenarios, over RabbitMQ with two worker processes (the real
//! broker and Redis on 127.0.0.1; see `support`). The in-process counterparts are in
//! `crates/selinon-runtime/tests/`.

mod support;

use std::time::Duration;

use selinon_runtime::amqp::RecordStatus;
use selinon_runtime::engine::{FailureReason, RunSubsequent};
use selinon_runtime::{json, FlowStatus};
use selinon_tests::{flows, testapp};
use support::{services, Cluster};

fn ns() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_scenarios_over_amqp_with_two_workers() {
    if !services() {
        return;
    }
    let cluster = Cluster::start("scenarios", 2).await;

    // test_flow: a chain runs each node once, in order.
    let n = ns();
    let out = cluster.run(&flows::chain::FLOW, json!({"ns": n})).await;
    assert_eq!(out.status, FlowStatus::Finished, "{out:?}");
    for task in ["A", "B", "C"] {
        assert_eq!(out.finished(task).len(), 1, "{task}: {out:?}");
    }
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.values().all(|r| *r == 1), "{runs:?}");

    // test_system_state: a join fires once, when both sources finished.
    let n = ns();
    let out = cluster.run(&flows::join::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("D").len(), 1, "{out:?}");
    assert_eq!(cluster.runs_by_task(&n).await["D"], 1);

    // Conditions read the stored result of the source (test_flow, conditions).
    for (go, ran, skipped) in [(true, "Accept", "Reject"), (false, "Reject", "Accept")] {
        let n = ns();
        let out = cluster
            .run(&flows::branch::FLOW, json!({"ns": n, "go": go}))
            .await;
        assert!(out.is_finished(), "{out:?}");
        assert_eq!(out.finished(ran).len(), 1, "go={go}: {out:?}");
        assert!(out.finished(skipped).is_empty(), "go={go}: {out:?}");
    }

    // test_node_failures: the fallback handles the failure, the flow finishes.
    let n = ns();
    let out = cluster.run(&flows::fallback::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    assert!(out.failed_nodes.is_empty(), "{out:?}");
    assert_eq!(out.finished("Recover").len(), 1);
    assert_eq!(out.finished("C").len(), 1);

    // test_node_failures: no fallback, the flow fails with the failed node.
    let n = ns();
    let out = cluster.run(&flows::failing::FLOW, json!({"ns": n})).await;
    assert_eq!(out.status, FlowStatus::Failed, "{out:?}");
    assert_eq!(out.failed("Boom").len(), 1, "{out:?}");
    assert_eq!(out.finished("A").len(), 1, "{out:?}");
    assert_eq!(
        out.failure_reason("Boom"),
        Some(&FailureReason::Error("Boom fails, as it should".into())),
        "{out:?}"
    );

    // test_selinon_task: a panicking task is a failed task, and the worker goes on.
    let n = ns();
    let out = cluster.run(&flows::panicking::FLOW, json!({"ns": n})).await;
    assert_eq!(out.status, FlowStatus::Failed, "{out:?}");
    assert_eq!(out.failed("Panics").len(), 1, "{out:?}");

    // test_retry: the task is retried (through a delay queue) and then succeeds.
    let n = ns();
    let out = cluster.run(&flows::flaky::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(runs["Flaky"], 2, "one failure, one success: {runs:?}");
    assert_eq!(runs["A"], 1, "{runs:?}");

    // test_flow_retry: the flow restarts max_retry times, then fails.
    let n = ns();
    let out = cluster
        .run(&flows::restarting::FLOW, json!({"ns": n}))
        .await;
    assert_eq!(out.status, FlowStatus::Failed, "{out:?}");
    assert_eq!(out.retried_count, 2, "{out:?}");
    assert_eq!(cluster.runs_by_task(&n).await["Boom"], 3);

    // test_nowait: the flow does not wait for `Side`, which still runs.
    let n = ns();
    let out = cluster
        .run(&flows::nowait::FLOW, json!({"ns": n, "sleep_ms": 0}))
        .await;
    assert!(out.is_finished(), "{out:?}");
    assert!(out.finished("Side").is_empty(), "{out:?}");
    let mut side_ran = false;
    for _ in 0..100 {
        if cluster.runs_by_task(&n).await.get("Side") == Some(&1) {
            side_ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(side_ran, "the nowait task ran");

    // test_foreach: ten instances; the edge from `Fan` fires once per finished instance (as
    // upstream: an edge fires for every new combination of finished sources).
    let n = ns();
    let out = cluster.run(&flows::fanout::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("Fan").len(), 10, "{out:?}");
    assert_eq!(out.finished("D").len(), 10, "{out:?}");

    // test_propagate: sub-flows as nodes, their ends reported to the parent.
    let n = ns();
    let out = cluster.run(&flows::parent::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("join").len(), 1, "{out:?}");
    assert_eq!(out.finished("chain").len(), 1, "{out:?}");
    assert_eq!(out.finished("D").len(), 1, "{out:?}");
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(runs["D"], 2, "D of join and D of parent: {runs:?}");
    assert_eq!(runs["C"], 2, "C of join and C of chain: {runs:?}");
    let child = cluster
        .client
        .status(&out.finished("join")[0])
        .await
        .unwrap();
    assert_eq!(child.status, RecordStatus::Finished);
    assert_eq!(child.flow_name, "join");

    // A failed sub-flow fails its parent; nothing after it runs.
    let n = ns();
    let out = cluster
        .run(&flows::parent_of_failing::FLOW, json!({"ns": n}))
        .await;
    assert_eq!(out.status, FlowStatus::Failed, "{out:?}");
    assert_eq!(out.failed("failing").len(), 1, "{out:?}");
    let Some(FailureReason::Flow(sub)) = out.failure_reason("failing") else {
        panic!("the sub-flow's reasons: {out:?}")
    };
    assert_eq!(
        sub.reason("Boom"),
        Some(&FailureReason::Error("Boom fails, as it should".into())),
        "{out:?}"
    );
    assert!(!cluster.runs_by_task(&n).await.contains_key("A") || out.finished("A").is_empty());

    // test_selective_flow: a selective run over AMQP runs only the path to `B`.
    let n = ns();
    let id = cluster
        .client
        .submit_selective(
            &flows::chain::FLOW,
            &["B"],
            json!({"ns": n}),
            false,
            RunSubsequent::No,
        )
        .await
        .unwrap();
    let out = cluster
        .client
        .wait(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(runs.get("A"), Some(&1), "{runs:?}");
    assert_eq!(runs.get("B"), Some(&1), "{runs:?}");
    assert_eq!(runs.get("C"), None, "{runs:?}");

    // A task calls a method of its own user storage (whose `{SELINON_TEST_STORE}` the worker
    // expanded) and reaches another storage by name, typed (a wrong type would fail the flow).
    let n = ns();
    let out = cluster.run(&flows::audited::FLOW, json!({"ns": n})).await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("Audited").len(), 1, "{out:?}");
    let requests = std::fs::read_to_string(cluster.store.join("audit/requests")).unwrap();
    assert!(requests.contains(&format!("Audited \"{n}\"")), "{requests}");

    // Typed tasks across processes: the flow takes the starting task's type, a task reads its
    // parent's result as the parent's type, and the client reads results typed.
    let n = ns();
    let text = testapp::Text {
        ns: n.clone(),
        text: "typed end to end".into(),
    };
    let id = cluster
        .client
        .submit(&flows::typed::FLOW, text)
        .await
        .unwrap();
    let out = cluster
        .client
        .wait(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    let measured = cluster
        .client
        .result::<flows::tasks::Measure>(&out)
        .await
        .unwrap();
    assert_eq!(
        measured,
        testapp::Measured {
            chars: 16,
            words: 4
        }
    );
    let described: String = cluster
        .client
        .result::<flows::tasks::Describe>(&out)
        .await
        .unwrap();
    assert_eq!(described, "4 words, 16 characters");
    // Arguments that do not fit fail the task at once, and the reason travels to the client.
    let id = cluster
        .client
        .submit(&flows::typed::FLOW.untyped(), json!({"ns": n}))
        .await
        .unwrap();
    let out = cluster
        .client
        .wait(&id, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(out.is_failed(), "{out:?}");
    let reason = out.failures().to_string();
    assert!(
        reason.contains("Measure") && reason.contains("node_args: missing field `text`"),
        "{reason}"
    );

    cluster.stop().await;
}

/// A foreach of 600 instances over two workers: each end is applied once, as a small delta of
/// the flow record (the workers check every delta they write against the record it stands for,
/// and every pass they undo on a conflict against its input), and the record read cold — the
/// last snapshot and the deltas after it — is the whole flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_foreach_is_written_as_deltas_across_workers() {
    if !services() {
        return;
    }
    let cluster = Cluster::start_with("wide", 2, 64).await;
    let n = ns();
    let width = 600;
    let id = cluster
        .client
        .submit(&flows::wide::FLOW, json!({"ns": n, "width": width}))
        .await
        .unwrap();
    // Mid-run, the record read cold (a snapshot and the deltas after it) is consistent: once
    // the foreach fired, every instance is either active or finished.
    let mut checked = 0;
    for _ in 0..2000 {
        let Ok(report) = cluster.client.status(&id).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if report.status != RecordStatus::Running {
            break;
        }
        if report.finished_nodes.contains_key("A") {
            let active = report
                .active_nodes
                .iter()
                .filter(|n| n.name == "Fan")
                .count();
            let finished = report.finished_nodes.get("Fan").map_or(0, Vec::len);
            assert_eq!(
                active + finished,
                width,
                "{active} active + {finished} finished"
            );
            checked += 1;
        }
    }
    let out = cluster
        .client
        .wait(&id, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("Fan").len(), width, "{out:?}");
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(
        runs["Fan"], width as i64,
        "each instance ran once: {runs:?}"
    );
    let report = cluster.client.status(&id).await.unwrap();
    assert_eq!(report.status, RecordStatus::Finished);
    assert!(checked > 0, "the record was read while the instances ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_flows_finish_once_each_across_workers() {
    if !services() {
        return;
    }
    let mut cluster = Cluster::start("many", 3).await;
    let n = ns();
    let ids = cluster
        .client
        .submit_many(&flows::everything::FLOW, (0..60).map(|_| json!({"ns": n})))
        .await
        .unwrap();
    let done = cluster
        .client
        .wait_all(&ids, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(done.len(), ids.len(), "every flow ended");
    for out in done.values() {
        assert!(out.is_finished(), "{out:?}");
        assert_eq!(out.finished("D").len(), 1, "{out:?}");
        assert_eq!(out.finished("Recover").len(), 1, "{out:?}");
    }
    // No crash, so no duplicates: every task instance ran exactly as often as it should.
    let runs = cluster.runs(&n).await;
    for (key, count) in &runs {
        let expected = if key.starts_with("Flaky:") { 2 } else { 1 };
        assert_eq!(*count, expected, "{key}");
    }
    cluster.assert_alive();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_what_a_running_flow_does() {
    if !services() {
        return;
    }
    let cluster = Cluster::start("status", 1).await;
    let n = ns();
    let id = cluster
        .submit(&flows::chain::FLOW, json!({"ns": n, "sleep_ms": 700}))
        .await;
    let mut seen_running = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(report) = cluster.client.status(&id).await {
            if report.status == RecordStatus::Running && !report.active_nodes.is_empty() {
                seen_running = Some(report);
                break;
            }
        }
    }
    let report = seen_running.expect("the flow was seen running");
    assert_eq!(report.flow_name, "chain");
    assert!(report
        .active_nodes
        .iter()
        .any(|n| n.name == "A" || n.name == "B"));
    let out = cluster
        .client
        .wait(&id, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(out.is_finished());
    let report = cluster.client.status(&id).await.unwrap();
    assert_eq!(report.status, RecordStatus::Finished);
    assert!(report.active_nodes.is_empty());
    assert_eq!(report.finished_nodes.len(), 3);
    cluster.stop().await;
}

// fabric8-analytics style: a task stores API requests through a method of its own PostgreSQL
// storage; the edge's `async` foreach queries them there to start one node per request. Over
// AMQP (the foreach runs in a worker's dispatcher pass), then in-process on the same system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_foreach_queries_what_a_task_stored_through_its_postgres_storage() {
    if !services() {
        return;
    }
    let Some(postgres) = selinon_testkit::postgres_url() else {
        return;
    };
    let cluster = Cluster::start("apireq", 2).await;
    // The storage's table (`{SELINON_TEST_PREFIX}_api_requests`), as a migration would make it.
    let table = format!("{}_api_requests", cluster.prefix);
    let (pg, connection) = tokio_postgres::connect(&postgres, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    pg.batch_execute(&format!(
        "CREATE TABLE {table} (id SERIAL PRIMARY KEY, ns TEXT NOT NULL, url TEXT NOT NULL)"
    ))
    .await
    .unwrap();
    let rows = |ns: String| {
        let pg = &pg;
        let sql = format!("SELECT count(*) FROM {table} WHERE ns = $1");
        async move {
            let row = pg.query_one(&sql, &[&ns]).await.unwrap();
            row.get::<_, i64>(0)
        }
    };

    let n = ns();
    let urls = json!(["/v1/a", "/v1/b", "/v1/c"]);
    let out = cluster
        .run(&flows::api_requests::FLOW, json!({"ns": n, "urls": urls}))
        .await;
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("RecordRequests").len(), 1, "{out:?}");
    assert_eq!(out.finished("PerRequest").len(), 3, "{out:?}");
    assert_eq!(rows(n.clone()).await, 3);
    let runs = cluster.runs_by_task(&n).await;
    assert_eq!(runs["RecordRequests"], 1, "{runs:?}");
    assert_eq!(runs["PerRequest"], 3, "{runs:?}");

    // In-process, with the storage's `{SELINON_TEST_PREFIX}` expanded from this process's
    // environment (the cluster set it): the same table.
    let rt = selinon_runtime::Runtime::builder(&selinon_tests::flows::SYSTEM)
        .without_config_trace()
        .build();
    let n = ns();
    let out = rt
        .run(
            &flows::api_requests::FLOW,
            json!({"ns": n, "urls": ["/v2/x", "/v2/y"]}),
        )
        .await
        .unwrap();
    assert!(out.is_finished(), "{out:?}");
    assert_eq!(out.finished("PerRequest").len(), 2, "{out:?}");
    assert_eq!(rows(n).await, 2);
    rt.shutdown().await;

    pg.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    cluster.stop().await;
}
