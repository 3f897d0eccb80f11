//! Prometheus metrics from the trace events (feature `metrics`): flows started, finished and
//! failed, task durations, failures and retries per task, and queue latency (from a task's
//! scheduling to its start, when both happen in this process).
//!
//! ```no_run
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> std::io::Result<()> {
//! let metrics = selinon_runtime::trace::metrics::MetricsSink::new();
//! let runtime = selinon_runtime::Runtime::builder(system).trace_sink(metrics.clone()).build();
//! let addr = metrics.serve("127.0.0.1:9464".parse().unwrap()).await?; // GET /metrics
//! # let _ = (runtime, addr); Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::trace::{TraceEvent, TraceSink};

struct Inner {
    registry: Registry,
    flows_started: IntCounterVec,
    flows_finished: IntCounterVec,
    flows_failed: IntCounterVec,
    task_duration: HistogramVec,
    task_failures: IntCounterVec,
    task_retries: IntCounterVec,
    queue_latency: HistogramVec,
    /// Task id → when it was scheduled, and its queue.
    scheduled: Mutex<HashMap<String, (Instant, String)>>,
    /// Task id → when its current attempt started.
    started: Mutex<HashMap<String, Instant>>,
}

/// Metrics kept from trace events; cheap to clone (clones share the metrics).
#[derive(Clone)]
pub struct MetricsSink(Arc<Inner>);

impl std::fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSink").finish_non_exhaustive()
    }
}

impl Default for MetricsSink {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ];
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

fn text<'a>(details: &'a Json, key: &str) -> &'a str {
    details[key].as_str().unwrap_or("")
}

impl MetricsSink {
    /// A sink with its own registry and no metric observed yet.
    pub fn new() -> Self {
        let registry = Registry::new();
        MetricsSink(Arc::new(Inner {
            flows_started: counter(
                &registry,
                "selinon_flows_started_total",
                "Flows started (restarts included).",
                "flow",
            ),
            flows_finished: counter(
                &registry,
                "selinon_flows_finished_total",
                "Flows that finished.",
                "flow",
            ),
            flows_failed: counter(
                &registry,
                "selinon_flows_failed_total",
                "Flows that failed for good.",
                "flow",
            ),
            task_duration: histogram(
                &registry,
                "selinon_task_duration_seconds",
                "Duration of successful task runs.",
                "task",
            ),
            task_failures: counter(
                &registry,
                "selinon_task_failures_total",
                "Tasks that failed for good.",
                "task",
            ),
            task_retries: counter(
                &registry,
                "selinon_task_retries_total",
                "Task runs that will be retried.",
                "task",
            ),
            queue_latency: histogram(
                &registry,
                "selinon_queue_latency_seconds",
                "Time from scheduling a task to its start.",
                "queue",
            ),
            registry,
            scheduled: Mutex::default(),
            started: Mutex::default(),
        }))
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.0.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("UTF-8")
    }

    /// Serves `GET /metrics` (any path, in fact) on `addr` until the runtime stops; returns
    /// the bound address (port 0 picks a free one).
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let sink = self.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    // Read the request head (a scrape has no body), then answer.
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while read < buf.len() {
                        match stream.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => read += n,
                        }
                        if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let body = sink.render();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(bound)
    }
}

impl TraceSink for MetricsSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        let m = &self.0;
        match event {
            TraceEvent::FlowStart => m
                .flows_started
                .with_label_values(&[text(details, "flow_name")])
                .inc(),
            TraceEvent::FlowEnd => m
                .flows_finished
                .with_label_values(&[text(details, "flow_name")])
                .inc(),
            TraceEvent::FlowFailure if details["will_retry"] != Json::Bool(true) => m
                .flows_failed
                .with_label_values(&[text(details, "flow_name")])
                .inc(),
            TraceEvent::TaskSchedule => {
                // The queue as the broker knows it (placeholders expanded when they can be).
                let raw = text(details, "queue");
                let queue = crate::storage::expand_env(raw).unwrap_or_else(|_| raw.to_string());
                m.scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        text(details, "task_id").to_string(),
                        (Instant::now(), queue),
                    );
            }
            TraceEvent::TaskStart => {
                let id = text(details, "task_id").to_string();
                if let Some((at, queue)) = m
                    .scheduled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                {
                    m.queue_latency
                        .with_label_values(&[queue.as_str()])
                        .observe(at.elapsed().as_secs_f64());
                }
                m.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Instant::now());
            }
            TraceEvent::TaskEnd => {
                let started = m
                    .started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(text(details, "task_id"));
                if let Some(at) = started {
                    m.task_duration
                        .with_label_values(&[text(details, "task_name")])
                        .observe(at.elapsed().as_secs_f64());
                }
            }
            TraceEvent::TaskFailure => {
                m.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(text(details, "task_id"));
                m.task_failures
                    .with_label_values(&[text(details, "task_name")])
                    .inc();
            }
            TraceEvent::TaskRetry => {
                m.started
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(text(details, "task_id"));
                m.task_retries
                    .with_label_values(&[text(details, "task_name")])
                    .inc();
            }
            _ => {}
        }
    }
}
