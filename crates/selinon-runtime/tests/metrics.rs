//! The Prometheus metrics sink: counts and durations from a real in-process run, served over
//! HTTP on loopback, and accepted by a Prometheus text-format parser.
#![cfg(feature = "metrics")]

mod common;

use common::*;
use selinon_runtime::trace::metrics::MetricsSink;
use selinon_runtime::{json, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

fn value(scrape: &prometheus_parse::Scrape, metric: &str, label: (&str, &str)) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no {metric}{{{}={}}}", label.0, label.1))
}

#[tokio::test]
async fn metrics_count_flows_and_tasks_and_are_served() {
    mod config {
        selinon_macros::flows!(
            r#"
            tasks:
              - {name: Task1, import: common, classname: Scripted, storage: Memory}
              - {name: Task2, import: common, classname: Scripted, storage: Memory}
              - {name: Boom, import: common, classname: Scripted, storage: Memory}
            storages:
              - name: Memory
                import: selinon.storages.memory
                classname: InMemoryStorage
                configuration: {echo: false}
            global:
              default_task_queue: '{DEPLOYMENT_PREFIX}_tasks'
            flows: [good, bad]
            flow-definitions:
              - name: good
                edges:
                  - {from: , to: Task1}
                  - {from: Task1, to: Task2}
              - name: bad
                edges:
                  - {from: , to: Boom}
            "#
        );
    }
    // The tasks' queue is `{DEPLOYMENT_PREFIX}_tasks`: metrics name the expanded queue.
    std::env::set_var("DEPLOYMENT_PREFIX", "prod");
    let script = Script::new();
    script.set("Boom", Behaviour::Fail);
    let metrics = MetricsSink::new();
    let rt = Runtime::builder(&config::SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(metrics.clone())
        .build();
    for _ in 0..3 {
        assert!(rt
            .run(&config::good::FLOW, json!({}))
            .await
            .unwrap()
            .is_finished());
    }
    assert!(rt
        .run(&config::bad::FLOW, json!({}))
        .await
        .unwrap()
        .is_failed());

    let addr = metrics.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let body = scrape(addr).await;
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");

    assert_eq!(
        value(&parsed, "selinon_flows_started_total", ("flow", "good")),
        3.0
    );
    assert_eq!(
        value(&parsed, "selinon_flows_finished_total", ("flow", "good")),
        3.0
    );
    assert_eq!(
        value(&parsed, "selinon_flows_failed_total", ("flow", "bad")),
        1.0
    );
    assert_eq!(
        value(&parsed, "selinon_task_failures_total", ("task", "Boom")),
        1.0
    );
    // Histograms: one observation per successful run of Task2, per queue latency.
    let task2 = parsed
        .samples
        .iter()
        .find(|s| {
            s.metric == "selinon_task_duration_seconds" && s.labels.get("task") == Some("Task2")
        })
        .expect("task duration of Task2");
    match &task2.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 3.0, "{buckets:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        parsed
            .samples
            .iter()
            .any(|s| s.metric == "selinon_queue_latency_seconds"
                && s.labels.get("queue") == Some("prod_tasks")),
        "{body}"
    );
}
