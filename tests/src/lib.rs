//! Integration tests across the crates live in `tests/`. This library holds the system the
//! AMQP tests run on several worker processes (`src/bin/amqp_worker.rs`) and its tasks.

/// The test system (`amqp/nodes.yml`, `amqp/flows.yml`).
pub mod flows {
    selinon_macros::include_flows!("amqp/nodes.yml", "amqp/flows.yml");
}

/// Version 1 of the live-migration system (`amqp_migration/v1`): `A → B → C`.
pub mod flows_v1 {
    selinon_macros::include_flows!("amqp_migration/v1/nodes.yml", "amqp_migration/v1/flows.yml");
}

/// Version 2 (`amqp_migration/v2`): `A → B → D`, with the migration from version 1.
pub mod flows_v2 {
    selinon_macros::include_flows!("amqp_migration/v2/nodes.yml", "amqp_migration/v2/flows.yml");
}

/// Version 2 with the FAIL strategy (`amqp_migration/v2_fail`): a running version-1 flow whose
/// edge B → C fired fails (`tests/migration.rs`, in-process).
pub mod flows_v2_fail {
    selinon_macros::include_flows!(
        "amqp_migration/v2_fail/nodes.yml",
        "amqp_migration/v2/flows.yml"
    );
}

/// The system a worker process runs: env `SELINON_TEST_SYSTEM` = `main` (default), `v1` or
/// `v2`.
pub fn system_from_env() -> &'static selinon_runtime::SystemSpec {
    match std::env::var("SELINON_TEST_SYSTEM").as_deref() {
        Ok("v1") => &flows_v1::SYSTEM,
        Ok("v2") => &flows_v2::SYSTEM,
        _ => &flows::SYSTEM,
    }
}

/// The tasks of the test system. Every run is counted in Redis (hash
/// `selinon-test:runs:<ns>`, field `<task name>:<task id>`, where `ns` is the flow argument
/// `ns`), so a test sees across processes which nodes ran and how often.
pub mod testapp {
    use std::time::Duration;

    use selinon_runtime::{
        async_trait, json, DataStorage, Db, Json, StorageError, StorageFromConfig, StorageView,
        Task, TaskContext, TaskError, TaskResult, UserFnError,
    };

    /// The Redis connection of a worker, as a task resource.
    pub struct Counter(pub redis::aio::ConnectionManager);

    /// Counts this run; the number of runs of this task instance so far, this one included.
    pub async fn count_run(ctx: &TaskContext, args: &Json) -> Result<i64, TaskError> {
        let Some(counter) = ctx.resource::<Counter>() else {
            return Ok(1);
        };
        let ns = args["ns"].as_str().unwrap_or("default");
        let mut conn = counter.0.clone();
        redis::cmd("HINCRBY")
            .arg(format!("selinon-test:runs:{ns}"))
            .arg(format!("{}:{}", ctx.task_name, ctx.task_id))
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| TaskError::failed(format!("counting the run: {e}")))
    }

    /// Sleeps `sleep.<task name>` ms if given, else `sleep_ms`.
    async fn pause(ctx: &TaskContext, args: &Json) {
        let ms = args["sleep"][ctx.task_name.as_str()]
            .as_u64()
            .or_else(|| args["sleep_ms"].as_u64());
        if let Some(ms) = ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Returns its node name and arguments.
    #[derive(Default)]
    pub struct Echo;

    impl Task for Echo {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            pause(ctx, &args).await;
            Ok(json!({"task": ctx.task_name, "args": args}))
        }
    }

    /// A user storage (`Audit`): results are files below its configuration's `path` (with
    /// `{VAR}` expanded by the runtime), and a method of its own appends to `path/requests`.
    pub struct AuditStore {
        path: std::path::PathBuf,
        files: selinon_runtime::storage::Filesystem,
    }

    impl AuditStore {
        /// Appends a line to `path/requests`.
        pub fn store_api_requests(&self, line: &str) -> Result<(), TaskError> {
            use std::io::Write;
            std::fs::create_dir_all(&self.path)
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.path.join("requests"))
                })
                .and_then(|mut f| writeln!(f, "{line}"))
                .map_err(|e| TaskError::failed(format!("{}: {e}", self.path.display())))
        }
    }

    impl StorageFromConfig for AuditStore {
        fn from_config(configuration: &Json) -> Result<Self, StorageError> {
            let path = configuration["path"]
                .as_str()
                .ok_or_else(|| StorageError::Configuration("`path` is required".into()))?;
            Ok(AuditStore {
                path: path.into(),
                files: selinon_runtime::storage::Filesystem::new(path),
            })
        }
    }

    #[async_trait]
    impl DataStorage for AuditStore {
        async fn connect(&self) -> Result<(), StorageError> {
            self.files.connect().await
        }
        fn is_connected(&self) -> bool {
            self.files.is_connected()
        }
        async fn disconnect(&self) -> Result<(), StorageError> {
            self.files.disconnect().await
        }
        async fn retrieve(&self, flow: &str, task: &str, id: &str) -> Result<Json, StorageError> {
            self.files.retrieve(flow, task, id).await
        }
        async fn store(
            &self,
            node_args: &Json,
            flow: &str,
            task: &str,
            id: &str,
            result: &Json,
        ) -> Result<String, StorageError> {
            self.files.store(node_args, flow, task, id, result).await
        }
    }

    /// Records `Audited <ns>` through its own storage's method; reaches `Results` by name.
    #[derive(Default)]
    pub struct Audited;

    impl Task for Audited {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            let audit = ctx.storage::<AuditStore>().await?;
            audit.store_api_requests(&format!("{} {}", ctx.task_name, args["ns"]))?;
            let results = ctx
                .storage_named::<selinon_runtime::storage::Filesystem>("Results")
                .await?;
            Ok(json!({"results_connected": results.is_connected()}))
        }
    }

    /// Returns `{"go": <args.go>}` for the conditions after it.
    #[derive(Default)]
    pub struct Decide;

    impl Task for Decide {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            Ok(json!({"go": args["go"]}))
        }
    }

    /// Always fails.
    #[derive(Default)]
    pub struct Fail;

    impl Task for Fail {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            Err(TaskError::failed("Boom fails, as it should"))
        }
    }

    /// Fails its first run (per task instance), then succeeds.
    #[derive(Default)]
    pub struct Flaky;

    impl Task for Flaky {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            let runs = count_run(ctx, &args).await?;
            let fail_times = args["flaky_times"].as_i64().unwrap_or(1);
            if runs <= fail_times {
                return Err(TaskError::failed(format!("flaky run {runs}")));
            }
            Ok(json!({"runs": runs}))
        }
    }

    /// Panics.
    #[derive(Default)]
    pub struct Panics;

    impl Task for Panics {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            panic!("a task that panics");
        }
    }

    /// `foreach` of the `wide` flow: `width` items (from the flow arguments).
    pub fn width_items(_db: &Db<'_>, node_args: &Json) -> Vec<Json> {
        let width = node_args["width"].as_u64().unwrap_or(0);
        (0..width).map(|i| json!(i)).collect()
    }

    /// `foreach` of the `fanout` flow: ten items.
    pub fn ten_items(_db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
        (0..10).map(|i| json!(i)).collect()
    }

    /// A user storage over PostgreSQL (`ApiRequests`), as fabric8-analytics writes theirs:
    /// results in upstream's `result` table through the built-in adapter, and API requests in
    /// a table of its own (`table`, created by the test) through methods of its own.
    pub struct ApiStore {
        results: selinon_runtime::storage::PostgreSql,
        connection_string: String,
        table: String,
        client: tokio::sync::OnceCell<tokio_postgres::Client>,
    }

    impl ApiStore {
        fn error(&self, e: impl std::fmt::Display) -> StorageError {
            StorageError::Backend {
                storage: "ApiRequests".into(),
                message: e.to_string(),
            }
        }

        async fn client(&self) -> Result<&tokio_postgres::Client, StorageError> {
            self.client
                .get_or_try_init(|| async {
                    let (client, connection) =
                        tokio_postgres::connect(&self.connection_string, tokio_postgres::NoTls)
                            .await
                            .map_err(|e| self.error(e))?;
                    tokio::spawn(connection);
                    Ok(client)
                })
                .await
        }

        /// Records an API request of the flow run `ns`.
        pub async fn store_api_requests(&self, ns: &str, url: &str) -> Result<(), StorageError> {
            let sql = format!("INSERT INTO {} (ns, url) VALUES ($1, $2)", self.table);
            self.client()
                .await?
                .execute(&sql, &[&ns, &url])
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        }

        /// The API requests recorded for `ns`, oldest first.
        pub async fn api_requests(&self, ns: &str) -> Result<Vec<String>, StorageError> {
            let sql = format!("SELECT url FROM {} WHERE ns = $1 ORDER BY id", self.table);
            let rows = self
                .client()
                .await?
                .query(&sql, &[&ns])
                .await
                .map_err(|e| self.error(e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        }
    }

    impl StorageFromConfig for ApiStore {
        fn from_config(configuration: &Json) -> Result<Self, StorageError> {
            let table = configuration["table"]
                .as_str()
                .filter(|t| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .ok_or_else(|| {
                    StorageError::Configuration("`table` must be a plain SQL name".into())
                })?;
            let connection_string =
                configuration["connection_string"].as_str().ok_or_else(|| {
                    StorageError::Configuration("`connection_string` is required".into())
                })?;
            Ok(ApiStore {
                results: selinon_runtime::storage::PostgreSql::from_config_labelled(
                    configuration,
                    "ApiRequests",
                )?,
                connection_string: connection_string.into(),
                table: table.into(),
                client: tokio::sync::OnceCell::new(),
            })
        }
    }

    #[async_trait]
    impl DataStorage for ApiStore {
        async fn connect(&self) -> Result<(), StorageError> {
            self.results.connect().await?;
            self.client().await.map(|_| ())
        }
        fn is_connected(&self) -> bool {
            self.results.is_connected() && self.client.initialized()
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
            self.results.store(node_args, flow, task, id, result).await
        }
    }

    /// Records each of `args.urls` as an API request through its own storage's method.
    #[derive(Default)]
    pub struct RecordRequests;

    impl Task for RecordRequests {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, args: Json) -> TaskResult {
            count_run(ctx, &args).await?;
            let ns = args["ns"].as_str().unwrap_or("default");
            let store = ctx.storage::<ApiStore>().await?;
            let urls = args["urls"].as_array().cloned().unwrap_or_default();
            for url in &urls {
                store
                    .store_api_requests(ns, url.as_str().unwrap_or_default())
                    .await?;
            }
            Ok(json!({"recorded": urls.len()}))
        }
    }

    /// `foreach` of the `api_requests` flow: one item per API request recorded for the flow's
    /// `ns`, queried from PostgreSQL through the storage's own method.
    pub async fn recorded_requests(
        pool: &StorageView<'_>,
        node_args: &Json,
    ) -> Result<Vec<Json>, UserFnError> {
        let ns = node_args["ns"]
            .as_str()
            .ok_or_else(|| UserFnError::fatal("no `ns` in the flow arguments"))?;
        let store = pool.storage::<ApiStore>("ApiRequests").await?;
        let urls = store.api_requests(ns).await?;
        Ok(urls.into_iter().map(Json::from).collect())
    }

    /// What flow `typed` is started with.
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    pub struct Text {
        pub ns: String,
        pub text: String,
    }

    /// What `Measure` finds.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Measured {
        pub chars: usize,
        pub words: usize,
    }

    /// Measures a text (typed in and out).
    #[selinon_macros::task]
    pub async fn measure(ctx: &TaskContext, text: Text) -> TaskResult<Measured> {
        count_run(ctx, &json!({"ns": text.ns})).await?;
        Ok(Measured {
            chars: text.text.chars().count(),
            words: text.text.split_whitespace().count(),
        })
    }

    /// Reads `Measure`'s result as a `Measured`.
    #[selinon_macros::task]
    pub async fn describe(ctx: &TaskContext, text: Text) -> TaskResult<String> {
        count_run(ctx, &json!({"ns": text.ns})).await?;
        let measured = ctx.parent_result::<crate::flows::tasks::Measure>().await?;
        Ok(format!(
            "{} words, {} characters",
            measured.words, measured.chars
        ))
    }
}
