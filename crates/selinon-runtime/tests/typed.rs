//! Typed tasks end to end, in-process: `#[task]` functions over serde types, arguments that do
//! not fit fail the task at once with the field path (fallbacks apply, retries do not), results
//! are read as their task's type (in a task, from a flow's outcome, every instance started by
//! a `foreach`), and are stored as the JSON upstream's storages keep.

use selinon_runtime::engine::FailureReason;
use selinon_runtime::storage::InMemoryStorage;
use selinon_runtime::{json, ResultError, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Fetch, import: tasks, storage: Memory, max_retry: 3}
          - {name: Mirror, import: tasks, storage: Memory}
          - {name: Summarise, import: tasks, storage: Memory}
          - {name: Count, import: tasks, storage: Memory}
          - {name: Untyped, import: tasks, storage: Memory}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [release, plain, per_file]
        flow-definitions:
          - name: release
            edges:
              - {from: , to: Fetch}
              - {from: Fetch, to: Summarise}
              - {from: Mirror, to: Summarise}
            failures:
              - {nodes: Fetch, fallback: Mirror}
          - name: plain
            edges:
              - {from: , to: Untyped}
          - name: per_file
            edges:
              - from:
                to: Count
                foreach: {import: tasks, function: files}
        "#
    );
}
use config::{tasks as nodes, SYSTEM};

mod tasks {
    use selinon_macros::task;
    use selinon_runtime::{Db, Json, TaskContext, TaskResult};
    use serde::{Deserialize, Serialize};

    use super::nodes;

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Package {
        pub name: String,
        pub version: Version,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Version {
        pub major: u32,
        pub minor: u32,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Release {
        pub url: String,
        pub mirror: bool,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Summary {
        pub text: String,
    }

    #[task]
    pub async fn fetch(package: Package) -> TaskResult<Release> {
        Ok(Release {
            url: format!(
                "https://example.invalid/{}-{}.{}",
                package.name, package.version.major, package.version.minor
            ),
            mirror: false,
        })
    }

    /// The fallback of `Fetch`: takes the flow's arguments as JSON, whatever they are.
    #[task]
    pub async fn mirror(ctx: &TaskContext, args: Json) -> TaskResult<Release> {
        Ok(Release {
            url: format!(
                "mirror: {} ({})",
                args,
                ctx.parent_task_exception("Fetch").unwrap_or("no reason")
            ),
            mirror: true,
        })
    }

    /// Reads its parent's result as the parent's type, whichever of the two ran.
    #[task]
    pub async fn summarise(ctx: &TaskContext) -> TaskResult<Summary> {
        let release = match ctx.parent_result::<nodes::Fetch>().await {
            Ok(release) => release,
            Err(_) => ctx.parent_result::<nodes::Mirror>().await?,
        };
        Ok(Summary {
            text: format!("{} (mirror: {})", release.url, release.mirror),
        })
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Files {
        pub files: Vec<String>,
    }

    /// Started once per file (`foreach`); counts the bytes of the names.
    #[task]
    pub async fn count(files: Files) -> TaskResult<usize> {
        Ok(files.files.iter().map(String::len).sum())
    }

    pub fn files(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
        node_args["files"].as_array().cloned().unwrap_or_default()
    }

    /// An untyped task stays as it was: JSON in, JSON out.
    #[task]
    pub async fn untyped(args: Json) -> TaskResult<Json> {
        Ok(serde_json::json!({"echo": args}))
    }
}

fn runtime() -> Runtime {
    runtime_tracing(TraceRecorder::new())
}

fn runtime_tracing(trace: TraceRecorder) -> Runtime {
    Runtime::builder(&SYSTEM)
        .storage("Memory", InMemoryStorage::new())
        .without_config_trace()
        .trace_sink(trace)
        .build()
}

fn serde_1_0() -> tasks::Package {
    tasks::Package {
        name: "serde".into(),
        version: tasks::Version { major: 1, minor: 0 },
    }
}

#[tokio::test]
async fn a_typed_flow_runs_and_its_results_read_as_their_types() {
    let rt = runtime();
    let outcome = rt.run(&config::release::FLOW, serde_1_0()).await.unwrap();
    assert!(outcome.is_finished(), "{}", outcome.failures());

    let release: tasks::Release = rt.result::<nodes::Fetch>(&outcome).await.unwrap();
    assert_eq!(
        release,
        tasks::Release {
            url: "https://example.invalid/serde-1.0".into(),
            mirror: false
        }
    );
    let summary = rt.result::<nodes::Summarise>(&outcome).await.unwrap();
    assert_eq!(
        summary.text,
        "https://example.invalid/serde-1.0 (mirror: false)"
    );

    // Stored as upstream keeps results: the result's JSON, nothing around it.
    let stored = rt
        .task_result("release", "Fetch", &outcome.finished("Fetch")[0])
        .await
        .unwrap();
    assert_eq!(
        stored,
        json!({"url": "https://example.invalid/serde-1.0", "mirror": false})
    );

    // A task that did not run has no result to read.
    let err = rt.result::<nodes::Mirror>(&outcome).await.unwrap_err();
    assert!(
        matches!(&err, ResultError::NotFinished { task, .. } if task == "Mirror"),
        "{err}"
    );
}

#[tokio::test]
async fn arguments_that_do_not_fit_fail_the_task_at_once_naming_the_field() {
    let trace = TraceRecorder::new();
    let rt = runtime_tracing(trace.clone());
    // A missing nested field, through the untyped handle (typed, it would not compile).
    let outcome = rt
        .run(
            &config::release::FLOW.untyped(),
            json!({"name": "serde", "version": {"major": 1}}),
        )
        .await
        .unwrap();
    // The fallback applies; `max_retry: 3` does not (the failure is fatal).
    assert!(outcome.is_finished(), "{}", outcome.failures());
    assert_eq!(outcome.finished("Mirror").len(), 1);
    assert_eq!(trace.count(TraceEvent::TaskRetry), 0);
    assert_eq!(trace.count(TraceEvent::TaskFailure), 1);
    let mirror = rt.result::<nodes::Mirror>(&outcome).await.unwrap();
    assert!(mirror.mirror);
    for part in [
        "task `Fetch` of flow `release`",
        "do not fit `typed::tasks::Package`",
        "node_args.version: missing field `minor`",
    ] {
        assert!(mirror.url.contains(part), "`{part}` not in {}", mirror.url);
    }
    let summary = rt.result::<nodes::Summarise>(&outcome).await.unwrap();
    assert!(summary.text.ends_with("(mirror: true)"), "{}", summary.text);

    // A wrong type deep inside, and no fallback: the flow fails with the path as the reason.
    let outcome = rt
        .run(
            &config::per_file::FLOW.untyped(),
            json!({"files": ["a.rs", 7]}),
        )
        .await
        .unwrap();
    assert!(outcome.is_failed());
    assert_eq!(outcome.failed("Count").len(), 2);
    match outcome.failure_reason("Count") {
        Some(FailureReason::Error(text)) => assert!(
            text.contains("node_args.files[1]: invalid type: integer `7`, expected a string"),
            "{text}"
        ),
        other => panic!("unexpected reason {other:?}"),
    }
}

#[tokio::test]
async fn every_instance_of_a_foreach_task_reads_as_its_type() {
    let rt = runtime();
    let outcome = rt
        .run(
            &config::per_file::FLOW,
            tasks::Files {
                files: vec!["lib.rs".into(), "main.rs".into(), "a.rs".into()],
            },
        )
        .await
        .unwrap();
    assert!(outcome.is_finished(), "{}", outcome.failures());
    let counts: Vec<usize> = rt.results::<nodes::Count>(&outcome).await.unwrap();
    assert_eq!(counts, vec![17, 17, 17]);
}

#[tokio::test]
async fn untyped_tasks_take_and_return_json_as_before() {
    let rt = runtime();
    let outcome = rt
        .run(&config::plain::FLOW, json!({"anything": [1, 2]}))
        .await
        .unwrap();
    assert!(outcome.is_finished());
    let result = rt.result::<nodes::Untyped>(&outcome).await.unwrap();
    assert_eq!(result, json!({"echo": {"anything": [1, 2]}}));
}

#[tokio::test]
async fn a_stored_result_that_does_not_fit_its_type_is_an_error_naming_the_task() {
    let rt = runtime();
    let outcome = rt.run(&config::plain::FLOW, json!(1)).await.unwrap();
    // Overwrite the stored result with JSON that is not a `Release`, under `Fetch`'s name.
    let id = outcome.finished("Untyped")[0].clone();
    let memory = rt.storage("Memory").await.unwrap();
    memory
        .store(&json!(null), "plain", "Fetch", &id, &json!({"url": 3}))
        .await
        .unwrap();
    let mut forged = outcome.clone();
    forged.finished_nodes.insert("Fetch".into(), vec![id]);
    let err = rt.result::<nodes::Fetch>(&forged).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the result of task `Fetch` does not fit `typed::tasks::Release`")
            && text.contains("result.url: invalid type: integer `3`, expected a string"),
        "{text}"
    );
}
