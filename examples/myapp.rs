//! The code the example configuration (`examples/flows/`) names: `import: myapp.tasks` and
//! `import: myapp.storages` map to these modules.

pub mod tasks {
    use selinon_runtime::{json, Json, Task, TaskContext, TaskError, TaskResult};

    /// Downloads a release; fails for the package `broken` so the fallback runs.
    #[derive(Default)]
    pub struct FetchRelease;

    impl Task for FetchRelease {
        async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
            let name = args["name"].as_str().unwrap_or("unknown");
            if name == "broken" {
                return Err(TaskError::fatal("the release server does not have it"));
            }
            Ok(json!({"name": name, "url": format!("https://example.invalid/{name}.tar.gz")}))
        }
    }

    /// The fallback of `FetchRelease`.
    #[derive(Default)]
    pub struct FetchFromMirror;

    impl Task for FetchFromMirror {
        async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
            Ok(json!({"name": args["name"], "mirror": true}))
        }
    }

    /// Reads the package's metadata.
    #[derive(Default)]
    pub struct ExtractMetadata;

    impl Task for ExtractMetadata {
        async fn run(&self, _ctx: &TaskContext, args: Json) -> TaskResult {
            Ok(
                json!({"kind": args["kind"].as_str().unwrap_or("library"), "sources": ["src/lib.rs"]}),
            )
        }
    }

    #[derive(Default)]
    pub struct CheckLicense;

    impl Task for CheckLicense {
        async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
            Ok(json!({"license": "MIT"}))
        }
    }

    #[derive(Default)]
    pub struct ScanCode;

    impl Task for ScanCode {
        async fn run(&self, _ctx: &TaskContext, _args: Json) -> TaskResult {
            Ok(json!({"findings": 0}))
        }
    }

    /// Reads the metadata its parent stored.
    #[derive(Default)]
    pub struct Report;

    impl Task for Report {
        async fn run(&self, ctx: &TaskContext, _args: Json) -> TaskResult {
            let metadata = ctx.parent_task_result("ExtractMetadata").await?;
            Ok(json!({"report": format!("{} package", metadata["kind"])}))
        }
    }
}

pub mod storages {
    /// Results kept in memory (the configuration's `directory` is not used here).
    pub type ResultStore = selinon_runtime::storage::InMemoryStorage;
}

/// Runs `ingest` (the flow of `system` whose handle is `ingest`) for a package and prints how it
/// ended; panics when it did not end as expected.
pub async fn run_ingest(
    system: &'static selinon_runtime::SystemSpec,
    ingest: &'static selinon_runtime::FlowSpec,
    package: &str,
) {
    let runtime = selinon_runtime::Runtime::new(system);
    let outcome = runtime
        .run(ingest, selinon_runtime::json!({"name": package}))
        .await
        .expect("the flow runs");
    println!("{}", serde_json::to_string(&outcome).expect("JSON"));
    assert!(outcome.is_finished(), "ingest of {package} failed");
    assert_eq!(outcome.finished("analyse").len(), 1, "analyse ran once");
}
