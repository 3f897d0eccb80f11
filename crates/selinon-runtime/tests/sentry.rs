//! The Sentry sink against a local HTTP endpoint that records what Sentry's SDK sends (the
//! envelopes), on loopback.
#![cfg(feature = "sentry")]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use selinon_runtime::trace::sentry::SentrySink;
use selinon_runtime::{json, Runtime};

/// A one-thread HTTP server that keeps every request body.
fn recording_endpoint() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head, then as many body bytes as Content-Length says.
            let body_start = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buf[..n]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(body_start) = body_start else {
                continue;
            };
            let head = String::from_utf8_lossy(&data[..body_start]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while data.len() < body_start + length {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            keep.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&data[body_start..]).into_owned());
            // One request per connection: the SDK must not reuse it for the next envelope.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (port, seen)
}

#[tokio::test]
async fn task_failures_reach_sentry_with_their_flow_and_task() {
    let (port, seen) = recording_endpoint();
    let sink = Arc::new(SentrySink::new(&format!("http://public@127.0.0.1:{port}/42")).unwrap());
    struct Shared(Arc<SentrySink>);
    impl selinon_runtime::TraceSink for Shared {
        fn trace(&self, event: selinon_runtime::TraceEvent, details: &selinon_runtime::Json) {
            self.0.trace(event, details)
        }
    }
    mod config {
        selinon_macros::flows!(
            r#"
            tasks:
              - {name: ChargeCard, import: common, classname: Scripted, storage: Memory}
            storages:
              - name: Memory
                import: selinon.storages.memory
                classname: InMemoryStorage
                configuration: {echo: false}
            flows: [orders]
            flow-definitions:
              - name: orders
                edges:
                  - {from: , to: ChargeCard}
            "#
        );
    }
    let script = Script::new();
    script.set("ChargeCard", Behaviour::Fail);
    let rt = Runtime::builder(&config::SYSTEM)
        .resource_arc(script)
        .trace_sink(Shared(sink.clone()))
        .build();
    assert!(rt
        .run(&config::orders::FLOW, json!({"order": 7}))
        .await
        .unwrap()
        .is_failed());
    assert!(sink.flush(Duration::from_secs(10)), "the events went out");

    let bodies = seen.lock().unwrap().clone();
    let task_failure = bodies
        .iter()
        .find(|b| b.contains("TASK_FAILURE"))
        .unwrap_or_else(|| panic!("no TASK_FAILURE envelope in {bodies:?}"));
    assert!(task_failure.contains("ChargeCard"), "{task_failure}");
    assert!(
        task_failure.contains("\"flow_name\":\"orders\""),
        "{task_failure}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("FLOW_FAILURE")),
        "{bodies:?}"
    );
    // Successes are not reported.
    assert!(!bodies.iter().any(|b| b.contains("TASK_END")), "{bodies:?}");
}

#[test]
fn a_bad_dsn_is_a_clear_error() {
    let err = SentrySink::new("not a dsn").unwrap_err();
    assert!(err.contains("Sentry DSN `not a dsn`"), "{err}");
}
