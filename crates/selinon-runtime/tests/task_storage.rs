//! Task code reaches storages (upstream `self.storage`,
//! `StoragePool.get_connected_storage(name)`): typed to the adapter's concrete type, connected
//! once per worker; `storage_readonly` refuses writes; a user storage's configuration has
//! `{VAR}` expanded.

use std::sync::{Arc, Mutex};

use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Recorder, import: tasks, storage: Api}
          - {name: Guarded, import: tasks, storage: Memory, storage_readonly: true}
          - {name: Stray, import: tasks}
        storages:
          - name: Api
            import: tasks
            classname: ApiStore
            configuration:
              dsn: "postgresql://{SELINON_TASK_STORAGE_USER}@db/{{literal}}"
              hosts: ["{SELINON_TASK_STORAGE_USER}-1", 2]
          - name: Unset
            import: tasks
            classname: ApiStore
            configuration: {dsn: "{SELINON_TASK_STORAGE_SURELY_UNSET}"}
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [record, guarded, stray]
        flow-definitions:
          - name: record
            edges:
              - {from: , to: [Recorder, Guarded]}
          - name: guarded
            edges:
              - {from: , to: Guarded}
          - name: stray
            edges:
              - {from: , to: Stray}
        "#
    );
}
use config::SYSTEM;

/// What the tasks saw, for the test to check.
#[derive(Default)]
pub struct Seen(pub Mutex<Vec<String>>);

impl Seen {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }
}

mod tasks {
    use std::sync::Mutex;

    use selinon_runtime::{
        async_trait, DataStorage, InMemoryStorage, Json, StorageError, StorageFromConfig, Task,
        TaskContext, TaskResult,
    };

    use super::Seen;

    /// A PostgreSQL-like user storage with a method of its own.
    pub struct ApiStore {
        pub configuration: Json,
        pub requests: Mutex<Vec<String>>,
    }

    impl ApiStore {
        pub fn store_api_requests(&self, request: &str) -> usize {
            let mut requests = self.requests.lock().unwrap();
            requests.push(request.to_string());
            requests.len()
        }
    }

    impl StorageFromConfig for ApiStore {
        fn from_config(configuration: &Json) -> Result<Self, StorageError> {
            Ok(ApiStore {
                configuration: configuration.clone(),
                requests: Mutex::default(),
            })
        }
    }

    #[async_trait]
    impl DataStorage for ApiStore {
        async fn connect(&self) -> Result<(), StorageError> {
            Ok(())
        }
        fn is_connected(&self) -> bool {
            true
        }
        async fn disconnect(&self) -> Result<(), StorageError> {
            Ok(())
        }
        async fn retrieve(&self, _f: &str, _t: &str, _i: &str) -> Result<Json, StorageError> {
            Err(StorageError::NotSupported("retrieve"))
        }
        async fn store(
            &self,
            _node_args: &Json,
            _flow_name: &str,
            _task_name: &str,
            task_id: &str,
            _result: &Json,
        ) -> Result<String, StorageError> {
            Ok(task_id.into())
        }
    }

    /// Calls its own storage's method, and reaches another storage by name.
    #[derive(Default)]
    pub struct Recorder;

    impl Task for Recorder {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, _node_args: Json) -> TaskResult {
            let seen = ctx.resource::<Seen>().unwrap();
            let api = ctx.storage::<ApiStore>().await?;
            seen.push(format!("count {}", api.store_api_requests("GET /a")));
            seen.push(format!("configuration {}", api.configuration));
            let again = ctx.storage_named::<ApiStore>("Api").await?;
            seen.push(format!("count {}", again.store_api_requests("GET /b")));
            let memory = ctx.storage_named::<InMemoryStorage>("Memory").await?;
            seen.push(format!("memory connected {}", memory.is_connected()));
            let wrong = ctx
                .storage_named::<InMemoryStorage>("Api")
                .await
                .err()
                .unwrap();
            seen.push(format!("wrong {wrong}"));
            Ok(Json::Null)
        }
    }

    /// A `storage_readonly` task that tries to write to its own storage.
    #[derive(Default)]
    pub struct Guarded;

    impl Task for Guarded {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, node_args: Json) -> TaskResult {
            let seen = ctx.resource::<Seen>().unwrap();
            let own = ctx.storage_dyn("Memory").await?;
            let refused = own
                .store(&node_args, &ctx.flow_name, "Guarded", "x", &Json::Null)
                .await
                .err()
                .unwrap();
            seen.push(format!("refused {refused}"));
            let missing = own.retrieve(&ctx.flow_name, "Guarded", "x").await.is_err();
            seen.push(format!("reads pass {missing}"));
            Ok(Json::Null)
        }
    }

    /// A task without a storage asks for its own.
    #[derive(Default)]
    pub struct Stray;

    impl Task for Stray {
        type Args = Json;
        type Output = Json;

        async fn run(&self, ctx: &TaskContext, _node_args: Json) -> TaskResult {
            let seen = ctx.resource::<Seen>().unwrap();
            let err = ctx.storage::<InMemoryStorage>().await.err().unwrap();
            seen.push(format!("none {err}"));
            let unknown = ctx.storage_dyn("Nowhere").await.err().unwrap();
            seen.push(format!("unknown {unknown}"));
            Ok(Json::Null)
        }
    }
}

#[tokio::test]
async fn a_task_calls_its_own_storage_and_another_by_name() {
    // Only this test builds `Api`, whose configuration reads this variable.
    std::env::set_var("SELINON_TASK_STORAGE_USER", "svc");
    let seen = Arc::new(Seen::default());
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(seen.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run(&config::record::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let lines = seen.0.lock().unwrap().clone();
    let expected_config = json!({
        "dsn": "postgresql://svc@db/{literal}",
        "hosts": ["svc-1", 2],
    });
    let recorder: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("refused") && !l.starts_with("reads"))
        .collect();
    assert_eq!(
        recorder,
        vec![
            "count 1",
            &format!("configuration {expected_config}"),
            // The same instance: one adapter per storage per worker.
            "count 2",
            "memory connected true",
            "wrong storage configuration: storage `Api` is a \
             `task_storage::tasks::ApiStore`, not a \
             `selinon_runtime::storage::memory::InMemoryStorage`",
        ]
    );
    // Each storage connected once, though reached several times.
    assert_eq!(rec.count(TraceEvent::StorageConnect), 2);
}

#[tokio::test]
async fn a_readonly_task_cannot_write_to_its_storage() {
    let seen = Arc::new(Seen::default());
    let rt = Runtime::builder(&SYSTEM).resource_arc(seen.clone()).build();
    let outcome = rt.run(&config::guarded::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            "refused storage `Memory`: `store` refused: task `Guarded` has \
             `storage_readonly: true`, so its storage is read-only to it; drop \
             `storage_readonly` in the YAML to let it write"
                .to_string(),
            "reads pass true".to_string(),
        ]
    );
    // Nothing was stored by the task.
    let memory = rt.storage("Memory").await.unwrap();
    assert!(memory.retrieve("guarded", "Guarded", "x").await.is_err());
}

#[tokio::test]
async fn storage_errors_name_the_task_and_the_storage() {
    let seen = Arc::new(Seen::default());
    let rt = Runtime::builder(&SYSTEM).resource_arc(seen.clone()).build();
    let outcome = rt.run(&config::stray::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![
            "none storage configuration: task `Stray` has no storage; give it `storage: <name>` \
             in the YAML, or reach a storage by name with `storage_named`"
                .to_string(),
            "unknown storage configuration: unknown storage `Nowhere`".to_string(),
        ]
    );
}

#[tokio::test]
async fn an_unset_variable_in_a_user_storage_configuration_names_the_storage() {
    let rt = Runtime::builder(&SYSTEM).build();
    let err = rt
        .storage("Unset")
        .await
        .err()
        .expect("the variable is unset");
    let text = err.to_string();
    assert!(text.contains("storage `Unset` ("), "{text}");
    assert!(
        text.contains("environment variable `SELINON_TASK_STORAGE_SURELY_UNSET`"),
        "{text}"
    );
}
