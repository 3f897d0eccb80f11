//! Stopping flows in-process: `RuntimeBuilder::flow_timeout` stops a root flow with its
//! sub-flows and tasks, `Runtime::shutdown` stops everything a runtime started, and
//! `Runtime::wait_idle` waits for what runs on after a flow ended (`nowait` nodes). No upstream
//! counterpart: upstream leaves this to Celery (`revoke`, worker shutdown).

mod common;

use std::time::{Duration, Instant};

use common::*;
use selinon_runtime::{json, Json, RunError, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Loop1, import: common, classname: Scripted, storage: Memory}
          - {name: Loop2, import: common, classname: Scripted, storage: Memory}
          - {name: Sleeper, import: common, classname: Scripted, storage: Memory}
          - {name: Quick, import: common, classname: Scripted, storage: Memory}
          - {name: Late, import: common, classname: Scripted, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [endless, outer, sleepy, leftover]
        flow-definitions:
          # A cycle with no way out.
          - name: endless
            edges:
              - {from: , to: Loop1}
              - {from: Loop1, to: Loop2}
              - {from: Loop2, to: Loop1}
          # The endless cycle as a sub-flow.
          - name: outer
            edges:
              - {from: , to: [Quick, endless]}
          - name: sleepy
            edges:
              - {from: , to: Sleeper}
          - name: leftover
            nowait: Late
            edges:
              - {from: , to: [Quick, Late]}
        "#
    );
}
use config::SYSTEM;

/// Checks that no task starts any more: the count of TASK_START events, after a short settle
/// (a task being polled on another worker thread at the moment of the stop may still log its
/// start), stays the same for a while.
async fn assert_no_more_starts(rec: &TraceRecorder) -> usize {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let settled = rec.of(TraceEvent::TaskStart).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rec.of(TraceEvent::TaskStart).len(),
        settled,
        "tasks still start after the flow was stopped"
    );
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_timeout_stops_an_endless_cycle() {
    let rec = TraceRecorder::new();
    let script = Script::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .flow_timeout(Duration::from_millis(200))
        .build();
    let started = Instant::now();
    let err = rt
        .run(&config::endless::FLOW, Json::Null)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err,
        RunError::TimedOut {
            flow: "endless".into(),
            after: Duration::from_millis(200)
        }
    );
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(
        err.to_string(),
        "flow `endless` did not end within 200ms (the runtime's flow_timeout): it was stopped, \
         with its sub-flows and tasks"
    );
    // The cycle went round many times before the timeout, and then stopped.
    let starts = assert_no_more_starts(&rec).await;
    assert!(starts > 10, "only {starts} task starts");
    assert_eq!(starts, script.runs().len());
    assert!(rec.of(TraceEvent::FlowEnd).is_empty());
    // Nothing of the flow is left running.
    tokio::time::timeout(Duration::from_secs(2), rt.wait_idle())
        .await
        .expect("the stopped flow left nothing running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_timeout_stops_sub_flows_and_spares_flows_that_end_in_time() {
    let rec = TraceRecorder::new();
    let script = Script::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .flow_timeout(Duration::from_millis(150))
        .build();
    // A flow that ends in time is not affected, nor are flows started next to it.
    let quick = rt.run(&config::leftover::FLOW, Json::Null);
    let err = rt.run(&config::outer::FLOW, Json::Null).await.unwrap_err();
    assert!(
        matches!(&err, RunError::TimedOut { flow, .. } if flow == "outer"),
        "{err:?}"
    );
    assert!(quick.await.unwrap().is_finished());
    let starts = assert_no_more_starts(&rec).await;
    assert!(script.count("Loop1") > 5, "{starts}");
    // The sub-flow started once and never ended.
    let flow_starts: Vec<Json> = rec
        .of(TraceEvent::FlowStart)
        .into_iter()
        .filter(|d| d["flow_name"] == "endless")
        .collect();
    assert_eq!(flow_starts.len(), 1);
    tokio::time::timeout(Duration::from_secs(2), rt.wait_idle())
        .await
        .expect("nothing left running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_aborts_running_flows() {
    let rec = TraceRecorder::new();
    let script = Script::new();
    script.set(
        "Sleeper",
        Behaviour::Sleep(Duration::from_secs(600), json!({})),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .build();
    let sleepy = rt.run(&config::sleepy::FLOW, Json::Null);
    let sleepy_id = sleepy.id().to_string();
    let endless = rt.run(&config::endless::FLOW, Json::Null);
    // Wait until the sleeping task runs and the cycle went round a few times.
    let deadline = Instant::now() + Duration::from_secs(10);
    while script.count("Sleeper") == 0 || script.count("Loop2") < 3 {
        assert!(Instant::now() < deadline, "the flows did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), rt.shutdown())
        .await
        .expect("shutdown stops a task in the middle of its run");
    assert_eq!(sleepy.await.unwrap_err(), RunError::Aborted(sleepy_id));
    assert!(matches!(endless.await, Err(RunError::Aborted(_))));
    // shutdown returned once everything had stopped.
    let starts = rec.of(TraceEvent::TaskStart).len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.of(TraceEvent::TaskStart).len(), starts);
    assert!(rec
        .of(TraceEvent::TaskEnd)
        .iter()
        .all(|d| d["task_name"] != "Sleeper"));
    // A flow started after the shutdown is aborted at once, and runs nothing.
    let late = rt.run(&config::leftover::FLOW, Json::Null);
    assert!(matches!(late.await, Err(RunError::Aborted(_))));
    assert_eq!(script.count("Quick"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_idle_waits_for_nowait_nodes() {
    let rec = TraceRecorder::new();
    let script = Script::new();
    script.set(
        "Late",
        Behaviour::Sleep(Duration::from_millis(150), json!({})),
    );
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .flow_timeout(Duration::from_secs(60))
        .build();
    let outcome = rt.run(&config::leftover::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished());
    let late_ended = |rec: &TraceRecorder| {
        rec.of(TraceEvent::TaskEnd)
            .iter()
            .any(|d| d["task_name"] == "Late")
    };
    assert!(!late_ended(&rec), "the flow does not wait for `Late`");
    tokio::time::timeout(Duration::from_secs(5), rt.wait_idle())
        .await
        .expect("idle once `Late` ended");
    assert!(late_ended(&rec));
    // Idle already: returns at once.
    tokio::time::timeout(Duration::from_millis(100), rt.wait_idle())
        .await
        .unwrap();
}

mod diamond {
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
        flows: [diamond]
        flow-definitions:
          # Upstream's diamond with its loop closed: every round multiplies the join's
          # instances.
          - name: diamond
            edges:
              - {from: , to: Task1}
              - {from: Task1, to: [Task2, Task3]}
              - {from: [Task2, Task3], to: Task4}
              - {from: Task4, to: Task1}
        "#
    );
}

#[tokio::test]
async fn a_flow_whose_nodes_multiply_fails_at_the_node_limit_naming_the_edge() {
    let script = Script::new();
    let recorder = TraceRecorder::new();
    let rt = Runtime::builder(&diamond::SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .max_nodes_per_flow(500)
        .build();
    let started = Instant::now();
    let out = rt.run(&diamond::diamond::FLOW, json!({})).await.unwrap();
    assert!(!out.is_finished(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let failures = recorder.of(TraceEvent::DispatcherFailure);
    let what = failures
        .iter()
        .filter_map(|f| f["what"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        what.contains("flow `diamond` would start more than 500 nodes") && what.contains("edge #"),
        "{what}"
    );
    let runs = script.runs().len();
    assert!((100..=500).contains(&runs), "ran up to the limit: {runs}");
    rt.wait_idle().await;
}
