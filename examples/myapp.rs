//! The code the example configuration (`examples/flows/`) names: `import: myapp.tasks` and
//! `import: myapp.storages` map to these modules. Every example that uses it declares the
//! generated code as `crate::flows`.

pub mod tasks {
    use selinon_macros::task;
    use selinon_runtime::{TaskContext, TaskError, TaskResult};
    use serde::{Deserialize, Serialize};

    use crate::flows;

    /// What `ingest` (and its sub-flow `analyse`) is started with.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Package {
        pub name: String,
        /// `library` unless said otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub kind: Option<String>,
    }

    /// Where a release was found.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Release {
        pub name: String,
        pub url: String,
        #[serde(default)]
        pub mirror: bool,
    }

    /// What `ExtractMetadata` finds; the edge to `analyse` reads `kind` and `sources`.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Metadata {
        pub kind: String,
        pub sources: Vec<String>,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct License {
        pub license: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Findings {
        pub findings: u32,
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Summary {
        pub report: String,
    }

    /// Downloads a release; fails for the package `broken` so the fallback runs.
    #[task]
    pub async fn fetch_release(package: Package) -> TaskResult<Release> {
        if package.name == "broken" {
            return Err(TaskError::fatal("the release server does not have it"));
        }
        Ok(Release {
            url: format!("https://example.invalid/{}.tar.gz", package.name),
            name: package.name,
            mirror: false,
        })
    }

    /// The fallback of `FetchRelease`: reads why it failed.
    #[task]
    pub async fn fetch_from_mirror(ctx: &TaskContext, package: Package) -> TaskResult<Release> {
        if let Some(reason) = ctx.parent_task_exception("FetchRelease") {
            println!("  FetchRelease failed ({reason}): trying the mirror");
        }
        Ok(Release {
            url: format!("https://mirror.example.invalid/{}.tar.gz", package.name),
            name: package.name,
            mirror: true,
        })
    }

    /// Reads the package's metadata.
    #[task]
    pub async fn extract_metadata(package: Package) -> TaskResult<Metadata> {
        Ok(Metadata {
            kind: package.kind.unwrap_or_else(|| "library".into()),
            sources: vec!["src/lib.rs".into()],
        })
    }

    #[task]
    pub async fn check_license(_package: Package) -> TaskResult<License> {
        Ok(License {
            license: "MIT".into(),
        })
    }

    #[task]
    pub async fn scan_code(_package: Package) -> TaskResult<Findings> {
        Ok(Findings { findings: 0 })
    }

    /// Reads the metadata its parent stored, as `ExtractMetadata`'s result type.
    #[task]
    pub async fn report(ctx: &TaskContext) -> TaskResult<Summary> {
        let metadata = ctx.parent_result::<flows::tasks::ExtractMetadata>().await?;
        Ok(Summary {
            report: format!(
                "{} package, {} source files",
                metadata.kind,
                metadata.sources.len()
            ),
        })
    }
}

pub mod storages {
    /// Results kept in memory (the configuration's `directory` is not used here).
    pub type ResultStore = selinon_runtime::storage::InMemoryStorage;
}

/// Runs `ingest` for a package and prints how it ended, with what `ExtractMetadata` found;
/// panics when it did not end as expected.
pub async fn run_ingest(package: &str) {
    use crate::flows;

    let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
    let outcome = runtime
        .run(
            &flows::ingest::FLOW,
            tasks::Package {
                name: package.into(),
                kind: None,
            },
        )
        .await
        .expect("the flow runs");
    println!("{}", serde_json::to_string(&outcome).expect("JSON"));
    assert!(
        outcome.is_finished(),
        "ingest of {package} failed: {}",
        outcome.failures()
    );
    assert_eq!(outcome.finished("analyse").len(), 1, "analyse ran once");
    let metadata = runtime
        .result::<flows::tasks::ExtractMetadata>(&outcome)
        .await
        .expect("ExtractMetadata stored its result");
    println!("{package}: a {} with {:?}", metadata.kind, metadata.sources);
}
