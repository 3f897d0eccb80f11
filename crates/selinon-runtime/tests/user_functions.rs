//! `async` foreach and selective run functions with the storages at hand (upstream hands both
//! its `StoragePool`), what a pass does when one of them fails, and conditions that may block
//! on I/O, evaluated off the runtime's threads. No upstream counterpart: upstream's functions
//! are synchronous, and an exception in them is undefined behaviour.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use selinon_runtime::engine::RunSubsequent;
use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Count, import: common, classname: Scripted, storage: Ledger}
          - {name: Item, import: common, classname: Scripted, storage: Ledger}
          - name: Source
            import: common
            classname: Scripted
            storage: Ledger
            selective_run_function: {name: latest_stored, import: user_fns}
          - {name: Sink, import: common, classname: Scripted, storage: Ledger}
        storages:
          - name: Ledger
            import: ledger
            classname: Ledger
            configuration: {kind: ledger}
        flows: [counted, flaky, pipeline]
        flow-definitions:
          # The foreach reads Count's result and the storage's own bookkeeping.
          - name: counted
            edges:
              - {from: , to: Count}
              - from: Count
                to: Item
                foreach: {function: count_items, import: user_fns}
          # The foreach fails as the flow arguments say.
          - name: flaky
            edges:
              - {from: , to: Count}
              - from: Count
                to: Item
                foreach: {function: flaky_items, import: user_fns}
          - name: pipeline
            edges:
              - {from: , to: Source}
              - {from: Source, to: Sink}
        "#
    );
}

/// A condition of a user predicate (synchronous user code that may block, here on a slow
/// HTTP server through the built-in `httpStatus` predicate's function).
mod gated_config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Open, import: common, classname: Scripted}
          - {name: Tick, import: common, classname: Scripted}
        flows: [gated, ticking]
        flow-definitions:
          - name: gated
            edges:
              - from:
                to: Open
                condition: {name: serverAnswers, args: {status: 200}}
          - name: ticking
            edges:
              - {from: , to: Tick}
        global:
          predicates_module: user_predicates
        "#
    );
}

/// A user storage: results in memory, plus what a task may ask it besides (the latest stored
/// id and the number of results of a task), as a database would answer.
mod ledger {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use selinon_runtime::{
        async_trait, DataStorage, InMemoryStorage, Json, StorageError, StorageFromConfig,
    };

    #[derive(Default)]
    pub struct Ledger {
        results: InMemoryStorage,
        /// Per task name: stored ids, oldest first.
        ids: Mutex<HashMap<String, Vec<String>>>,
    }

    impl Ledger {
        /// The id of the task's latest stored result.
        pub fn latest(&self, task_name: &str) -> Option<String> {
            self.ids.lock().unwrap().get(task_name)?.last().cloned()
        }

        /// How many results of the task are stored.
        pub fn rows(&self, task_name: &str) -> usize {
            self.ids.lock().unwrap().get(task_name).map_or(0, Vec::len)
        }
    }

    impl StorageFromConfig for Ledger {
        fn from_config(_configuration: &Json) -> Result<Self, StorageError> {
            Ok(Ledger::default())
        }
    }

    #[async_trait]
    impl DataStorage for Ledger {
        async fn connect(&self) -> Result<(), StorageError> {
            self.results.connect().await
        }
        fn is_connected(&self) -> bool {
            self.results.is_connected()
        }
        async fn disconnect(&self) -> Result<(), StorageError> {
            self.results.disconnect().await
        }
        async fn retrieve(&self, flow: &str, task: &str, id: &str) -> Result<Json, StorageError> {
            self.results.retrieve(flow, task, id).await
        }
        async fn store(
            &self,
            node_args: &Json,
            flow: &str,
            task: &str,
            id: &str,
            result: &Json,
        ) -> Result<String, StorageError> {
            let record = self
                .results
                .store(node_args, flow, task, id, result)
                .await?;
            let mut ids = self.ids.lock().unwrap();
            ids.entry(task.to_string())
                .or_default()
                .push(id.to_string());
            Ok(record)
        }
    }
}

/// The users' `async` functions.
mod user_fns {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};

    use selinon_runtime::spec::SelectiveRunInput;
    use selinon_runtime::{json, Json, StorageError, StorageView, UserFnError};

    use super::ledger::Ledger;

    /// One item per `n` of Count's result, each telling how many Count results the storage
    /// holds (asked through the storage's own method).
    pub async fn count_items(
        pool: &StorageView<'_>,
        _node_args: &Json,
    ) -> Result<Vec<Json>, UserFnError> {
        let Some(count) = pool.get("Count").await? else {
            return Err(UserFnError::fatal("Count is not a source of the edge"));
        };
        let ledger = pool.storage::<Ledger>("Ledger").await?;
        tokio::task::yield_now().await;
        let stored = ledger.rows("Count");
        let n = count["n"].as_u64().unwrap_or(0);
        Ok((0..n).map(|i| json!({"i": i, "stored": stored})).collect())
    }

    /// Calls of `flaky_items`, by the flow argument `key`.
    static CALLS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Mutex::default);

    /// Fails as `node_args.fail` says: `retry` on the first call (then two items), `fatal`
    /// always, `storage` with a storage error on the first call (then one item).
    pub async fn flaky_items(
        pool: &StorageView<'_>,
        node_args: &Json,
    ) -> Result<Vec<Json>, UserFnError> {
        let key = node_args["key"].as_str().unwrap_or_default().to_string();
        let call = {
            let mut calls = CALLS.lock().unwrap();
            let c = calls.entry(key).or_default();
            *c += 1;
            *c
        };
        match (node_args["fail"].as_str(), call) {
            (Some("retry"), 1) => Err(UserFnError::retry("the rows are not there yet")),
            (Some("fatal"), _) => Err(UserFnError::fatal("the rows can never be counted")),
            (Some("storage"), 1) => {
                // A storage of another type: a `StorageError`, which `?` makes transient.
                pool.storage::<selinon_runtime::InMemoryStorage>("Ledger")
                    .await?;
                unreachable!("`Ledger` is no InMemoryStorage")
            }
            (Some("storage"), _) => Ok(vec![json!(0)]),
            _ => Ok(vec![json!(0), json!(1)]),
        }
    }

    /// Reuses the latest stored result of the task, found through its storage's own method.
    pub async fn latest_stored(
        input: &SelectiveRunInput<'_>,
        pool: &StorageView<'_>,
    ) -> Result<Option<String>, StorageError> {
        let ledger = pool.task_storage::<Ledger>(input.node_name).await?;
        Ok(ledger.latest(input.node_name))
    }
}

/// The predicate of `gated_config`.
mod user_predicates {
    use selinon_runtime::{json, Json};

    /// The server at `node_args.host` answers `HEAD /` with `args.status` (blocking I/O).
    pub fn server_answers(_message: Option<&Json>, node_args: &Json, args: &Json) -> bool {
        selinon_runtime::predicates::http_status(&node_args["host"], &json!("/"), &args["status"])
    }
}

fn runtime(
    system: &'static selinon_runtime::SystemSpec,
) -> (Runtime, std::sync::Arc<Script>, TraceRecorder) {
    let script = Script::new();
    let recorder = TraceRecorder::new();
    let rt = Runtime::builder(system)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .without_config_trace()
        .build();
    (rt, script, recorder)
}

#[tokio::test]
async fn an_async_foreach_reads_results_and_storages_through_the_pool() {
    let (rt, script, recorder) = runtime(&config::SYSTEM);
    script.set("Count", Behaviour::Result(json!({"n": 3})));
    let outcome = rt.run(&config::counted::FLOW, json!({})).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(outcome.finished("Item").len(), 3, "{outcome:?}");
    assert_eq!(script.count("Item"), 3);
    let results = recorder.of(TraceEvent::ForeachResult);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        results[0]["result"],
        json!([
            {"i": 0, "stored": 1},
            {"i": 1, "stored": 1},
            {"i": 2, "stored": 1},
        ])
    );

    // No items: nothing starts, the flow finishes.
    script.set("Count", Behaviour::Result(json!({"n": 0})));
    let outcome = rt.run(&config::counted::FLOW, json!({})).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert!(outcome.finished("Item").is_empty(), "{outcome:?}");
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_transient_foreach_error_repeats_the_pass_without_starting_anything_twice() {
    for (fail, items) in [("retry", 2), ("storage", 1)] {
        let (rt, script, recorder) = runtime(&config::SYSTEM);
        let outcome = rt
            .run(&config::flaky::FLOW, json!({"fail": fail, "key": key()}))
            .await
            .unwrap();
        assert!(outcome.is_finished(), "{fail}: {outcome:?}");
        assert_eq!(outcome.finished("Item").len(), items, "{fail}: {outcome:?}");
        assert_eq!(script.count("Count"), 1, "{fail}: Count ran once");
        assert_eq!(script.count("Item"), items, "{fail}");
        let retries = recorder.of(TraceEvent::FlowRetry);
        assert_eq!(retries.len(), 1, "{fail}: {retries:?}");
        let what = retries[0]["what"].as_str().unwrap_or_default();
        assert!(
            what.starts_with("foreach function `user_fns.flaky_items` of edge #1 (")
                && what.contains("user_functions.rs:"),
            "{fail}: {what}"
        );
        let expected = match fail {
            "retry" => "the rows are not there yet",
            _ => "not a `selinon_runtime::storage::memory::InMemoryStorage`",
        };
        assert!(what.contains(expected), "{fail}: {what}");
        assert_eq!(retries[0]["keep_state"], json!(true));
    }
}

#[tokio::test]
async fn a_fatal_foreach_error_fails_the_flow() {
    let (rt, script, recorder) = runtime(&config::SYSTEM);
    let outcome = rt
        .run(&config::flaky::FLOW, json!({"fail": "fatal", "key": key()}))
        .await
        .unwrap();
    assert!(outcome.is_failed(), "{outcome:?}");
    assert_eq!(script.count("Item"), 0);
    let failures = recorder.of(TraceEvent::DispatcherFailure);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let what = failures[0]["what"].as_str().unwrap_or_default();
    assert!(
        what.contains("foreach function `user_fns.flaky_items`")
            && what.ends_with(": the rows can never be counted"),
        "{what}"
    );
    assert_eq!(recorder.count(TraceEvent::FlowRetry), 0);
}

#[tokio::test]
async fn an_async_selective_run_function_reuses_the_latest_stored_result() {
    let (rt, script, recorder) = runtime(&config::SYSTEM);
    // A selective run before any result is stored: the function finds none, Source runs.
    let first = rt
        .run_selective(
            &config::pipeline::FLOW,
            &["Sink"],
            json!({}),
            false,
            RunSubsequent::No,
        )
        .await
        .unwrap();
    assert!(first.is_finished(), "{first:?}");
    assert_eq!(script.count("Source"), 1);
    let source_id = first.finished("Source")[0].clone();

    // Again: the function looks the latest Source result up in the storage and reuses it.
    let second = rt
        .run_selective(
            &config::pipeline::FLOW,
            &["Sink"],
            json!({}),
            false,
            RunSubsequent::No,
        )
        .await
        .unwrap();
    assert!(second.is_finished(), "{second:?}");
    assert_eq!(script.count("Source"), 1, "Source was not run again");
    assert_eq!(second.finished("Source"), std::slice::from_ref(&source_id));
    let sinks = script.runs_of("Sink");
    assert_eq!(sinks.len(), 2);
    assert_eq!(sinks[1].parent, json!({"Source": source_id}));
    let decisions: Vec<Json> = recorder
        .of(TraceEvent::SelectiveRunFunc)
        .into_iter()
        .map(|d| d["result"].clone())
        .collect();
    assert_eq!(decisions, [Json::Null, json!(source_id)]);
}

/// A server that answers every request with `200 OK`, `delay` after accepting it.
fn slow_server(delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            });
        }
    });
    addr
}

// The test runtime has one thread: a condition blocking it would stall every other flow.
#[tokio::test(flavor = "current_thread")]
async fn a_condition_blocking_on_a_slow_server_does_not_stall_the_runtime() {
    assert!(
        gated_config::gated::FLOW.edges[0].condition_blocking,
        "a user predicate's condition is marked as blocking"
    );
    let host = slow_server(Duration::from_millis(1500));
    let (rt, script, _) = runtime(&gated_config::SYSTEM);
    let started = Instant::now();
    let gated = rt.run(&gated_config::gated::FLOW, json!({"host": host}));
    // Meanwhile, other flows run and timers fire on the same thread.
    let others = async {
        let mut longest = Duration::ZERO;
        let mut ticks = 0;
        while started.elapsed() < Duration::from_millis(1200) {
            let before = Instant::now();
            let outcome = rt
                .run(&gated_config::ticking::FLOW, json!({}))
                .await
                .unwrap();
            assert!(outcome.is_finished(), "{outcome:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            longest = longest.max(before.elapsed());
            ticks += 1;
        }
        (longest, ticks)
    };
    let (gated, (longest, ticks)) = tokio::join!(gated, others);
    let gated = gated.unwrap();
    assert!(gated.is_finished(), "{gated:?}");
    assert_eq!(
        gated.finished("Open").len(),
        1,
        "the server answered 200: {gated:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "the condition waited for the server"
    );
    assert!(
        longest < Duration::from_millis(500),
        "a flow beside the condition took {longest:?}"
    );
    assert!(ticks >= 10, "{ticks} flows ran beside the condition");
    assert_eq!(script.count("Tick"), ticks);
}
