//! Counterparts of upstream `test/test_storage.py` and `test/test_selinon_task.py`: the
//! storage pool, `storage_readonly`, `storage_task_name`, `store_error`, user adapters and the
//! task context's access to parent results.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use selinon_runtime::spec::{
    run_boxed, BoxFuture, EdgeSpec, FlowSpec, PropagateSpec, StorageAdapter, StorageSpec,
    SystemSpec, TaskSpec,
};
use selinon_runtime::{
    async_trait, json, DataStorage, Json, Runtime, StorageError, StorageFromConfig, Task,
    TaskContext, TaskResult, TraceEvent, TraceRecorder,
};

pub static SYSTEM: SystemSpec = SystemSpec {
    files: &["nodes.yml", "flows.yml"],
    content_hash: "sha256:test",
    tasks: &TASKS,
    flows: &[&main_flow::FLOW, &sub::FLOW, &broken::FLOW],
    storages: &STORAGES2,
    trace: &[],
    migration_dir: None,
    run_task: &run_task,
};

static STORAGES2: [StorageSpec; 3] = [
    StorageSpec {
        name: "Memory",
        origin: "nodes.yml:40",
        adapter: StorageAdapter::Builtin {
            module: "selinon.storages.memory",
            class: "InMemoryStorage",
        },
        configuration: "{\"echo\":false}",
        cache: None,
    },
    StorageSpec {
        name: "Strict",
        origin: "nodes.yml:45",
        adapter: StorageAdapter::User {
            class: "tests::StrictStorage",
            build: build_storage_strict,
        },
        configuration: "{\"expect_task\":\"Aliased\"}",
        cache: None,
    },
    StorageSpec {
        name: "Redis",
        origin: "nodes.yml:50",
        adapter: StorageAdapter::Builtin {
            module: "selinon.storages.redis",
            class: "NoSuchRedis",
        },
        configuration: "{}",
        cache: None,
    },
];

static TASKS: [TaskSpec; 5] = [
    task("Producer"),
    TaskSpec {
        storage_readonly: true,
        ..task("ReadOnly")
    },
    TaskSpec {
        storage: Some("Strict"),
        storage_task_name: "Aliased",
        ..task("Renamed")
    },
    task("Reader"),
    TaskSpec {
        storage: Some("Redis"),
        ..task("Unbuildable")
    },
];

fn run_task(
    name: &str,
    ctx: TaskContext,
    node_args: Json,
) -> Option<BoxFuture<'static, TaskResult>> {
    Some(match name {
        "Producer" | "ReadOnly" | "Renamed" | "Unbuildable" => {
            run_boxed::<Scripted>(ctx, node_args)
        }
        "Reader" => run_boxed::<Reader>(ctx, node_args),
        _ => return None,
    })
}

/// Builds storage `Strict` (nodes.yml:45) from its configuration.
fn build_storage_strict(configuration: &Json) -> Result<Box<dyn DataStorage>, StorageError> {
    Ok(Box::new(<StrictStorage as StorageFromConfig>::from_config(
        configuration,
    )?))
}

/// A user storage that checks the task name it is given (upstream bug: store used the alias,
/// retrieve the real name) and supports `store_error`.
pub struct StrictStorage {
    expect_task: String,
    records: Mutex<HashMap<String, Json>>,
    errors: Mutex<HashMap<String, String>>,
}

impl StorageFromConfig for StrictStorage {
    fn from_config(configuration: &Json) -> Result<Self, StorageError> {
        let expect_task = configuration["expect_task"]
            .as_str()
            .ok_or_else(|| StorageError::Configuration("`expect_task` is required".into()))?;
        Ok(StrictStorage {
            expect_task: expect_task.to_string(),
            records: Mutex::default(),
            errors: Mutex::default(),
        })
    }
}

impl StrictStorage {
    fn check(&self, task_name: &str) -> Result<(), StorageError> {
        if task_name == self.expect_task {
            Ok(())
        } else {
            Err(StorageError::Backend {
                storage: "Strict".into(),
                message: format!("unexpected task name `{task_name}`"),
            })
        }
    }
}

#[async_trait]
impl DataStorage for StrictStorage {
    async fn connect(&self) -> Result<(), StorageError> {
        Ok(())
    }
    fn is_connected(&self) -> bool {
        true
    }
    async fn disconnect(&self) -> Result<(), StorageError> {
        Ok(())
    }
    async fn retrieve(
        &self,
        _f: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.check(task_name)?;
        self.records
            .lock()
            .unwrap()
            .get(task_id)
            .cloned()
            .ok_or_else(|| StorageError::Missing {
                flow_name: String::new(),
                task_name: task_name.into(),
                task_id: task_id.into(),
            })
    }
    async fn store(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError> {
        self.check(task_name)?;
        self.records
            .lock()
            .unwrap()
            .insert(task_id.into(), result.clone());
        Ok(task_id.into())
    }
    async fn store_error(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        task_name: &str,
        task_id: &str,
        error: &str,
    ) -> Result<(), StorageError> {
        self.check(task_name)?;
        self.errors
            .lock()
            .unwrap()
            .insert(task_id.into(), error.into());
        Ok(())
    }
}

/// Reads its parents' results through the context and returns them.
#[derive(Default)]
pub struct Reader;

impl Task for Reader {
    async fn run(&self, ctx: &TaskContext, _node_args: Json) -> TaskResult {
        let producer = ctx.parent_task_result("Producer").await?;
        let renamed = ctx.parent_task_result("Renamed").await?;
        let nested = ctx.parent_flow_result(&["sub"], "Producer", -1).await?;
        let missing = ctx.parent_task_result("ReadOnly").await.is_err();
        Ok(json!({
            "producer": producer,
            "renamed": renamed,
            "nested": nested,
            "no_parent": missing,
        }))
    }
}

/// `→ Producer, ReadOnly, Renamed, sub`; `{Producer, Renamed, sub} → Reader` with
/// `propagate_finished: [sub]`.
mod main_flow {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "main_flow",
        edges: &EDGES,
        edges_from: &edges_from,
        propagate: PropagateSpec {
            finished: &["sub"],
            ..NO_PROPAGATE
        },
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 2] = [
        EdgeSpec {
            index: 0,
            to: &["Producer", "ReadOnly", "Renamed", "sub"],
            ..EDGE
        },
        EdgeSpec {
            index: 1,
            from: &["Producer", "Renamed", "sub"],
            to: &["Reader"],
            ..EDGE
        },
    ];
    fn edges_from(node: &str) -> &'static [usize] {
        match node {
            "Producer" | "Renamed" | "sub" => &[1],
            _ => &[],
        }
    }
}

/// `→ Producer`.
mod sub {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "sub",
        edges: &EDGES,
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Producer"],
        ..EDGE
    }];
}

/// `→ Unbuildable`, whose storage names a built-in adapter that does not exist.
mod broken {
    use super::*;
    pub static FLOW: FlowSpec = FlowSpec {
        name: "broken",
        edges: &EDGES,
        ..common::FLOW
    };
    static EDGES: [EdgeSpec; 1] = [EdgeSpec {
        index: 0,
        to: &["Unbuildable"],
        ..EDGE
    }];
}

// upstream: test_storage.py::test_retrieve / test_store, test_selinon_task.py::
// test_parent_task_result / test_parent_flow_result / test_parent_task_result_error
#[tokio::test]
async fn results_are_stored_and_read_back_through_the_context() {
    let script = Script::new();
    script.set("Producer", Behaviour::Result(json!({"p": 1})));
    script.set("Renamed", Behaviour::Result(json!({"r": 2})));
    script.set("ReadOnly", Behaviour::Result(json!({"never": "stored"})));
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run_flow("main_flow", Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let reader = &outcome.finished("Reader")[0];
    let read = rt.task_result("main_flow", "Reader", reader).await.unwrap();
    assert_eq!(
        read,
        json!({
            "producer": {"p": 1},
            "renamed": {"r": 2},
            "nested": {"p": 1},
            "no_parent": true,
        })
    );
    // storage_readonly: nothing stored, the result is discarded (and traced).
    let ro = &outcome.finished("ReadOnly")[0];
    assert!(rt.task_result("main_flow", "ReadOnly", ro).await.is_err());
    assert_eq!(rec.count(TraceEvent::TaskDiscardResult), 1);
    // Each storage was connected once.
    assert_eq!(rec.count(TraceEvent::StorageConnect), 2);
}

// store_error on a storage that supports it; the alias is used there too.
#[tokio::test]
async fn store_error_uses_the_adapter_when_it_has_one() {
    let script = Script::new();
    script.set("Renamed", Behaviour::Fail);
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run_flow("main_flow", Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    assert_eq!(rec.count(TraceEvent::StorageStoreError), 1);
    assert_eq!(rec.count(TraceEvent::StorageOmitStoreError), 0);
}

// An unknown built-in adapter: the task fails with an error naming the storage.
#[tokio::test]
async fn unknown_builtin_storage_is_a_clear_error() {
    let script = Script::new();
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run_flow("broken", Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    let failure = &rec.of(TraceEvent::TaskFailure)[0];
    let what = failure["what"].as_str().unwrap();
    assert!(what.contains("storage `Redis` (nodes.yml:50)"), "{what}");
    assert!(
        what.contains("selinon.storages.redis.NoSuchRedis"),
        "{what}"
    );
    let err = rt.storage("Redis").await.err().expect("cannot be built");
    assert!(err.to_string().contains("storage `Redis`"));
}

// upstream: test_storage.py::test_connect_and_configuration — an adapter given to the
// builder replaces the one of the spec and is connected lazily.
#[tokio::test]
async fn adapters_can_be_given_to_the_builder() {
    let memory = selinon_runtime::InMemoryStorage::new();
    let script = Script::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .storage("Redis", memory)
        .build();
    let outcome = rt.run_flow("broken", Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let storage = rt.storage("Redis").await.unwrap();
    assert!(storage.is_connected());
    let id = &outcome.finished("Unbuildable")[0];
    assert_eq!(
        storage.retrieve("broken", "Unbuildable", id).await.unwrap(),
        json!({"task": "Unbuildable"})
    );
}
