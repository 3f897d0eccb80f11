//! Counterparts of upstream `test/test_storage.py` and `test/test_selinon_task.py`: the
//! storage pool, `storage_readonly`, `storage_task_name`, `store_error`, user adapters and the
//! task context's access to parent results.

mod common;

use common::*;
use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    selinon_macros::flows!(
        r#"
        tasks:
          - {name: Producer, import: common, classname: Scripted, storage: Memory}
          - name: ReadOnly
            import: common
            classname: Scripted
            storage: Memory
            storage_readonly: true
          - name: Renamed
            import: common
            classname: Scripted
            storage: Strict
            storage_task_name: Aliased
          - {name: Reader, import: tasks, storage: Memory}
          - {name: Unbuildable, import: common, classname: Scripted, storage: Unknown}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
          - name: Strict
            import: tasks
            classname: StrictStorage
            configuration: {expect_task: Aliased}
          # A built-in adapter that does not exist.
          - name: Unknown
            import: selinon.storages.unknown
            classname: NoSuchStorage
            configuration: {host: localhost}
        global:
          trace:
            - storage: {name: Strict, method: store_trace}
        flows: [main_flow, sub, broken]
        flow-definitions:
          - name: main_flow
            propagate_finished: [sub]
            edges:
              - {from: , to: [Producer, ReadOnly, Renamed, sub]}
              - {from: [Producer, Renamed, sub], to: Reader}
          - name: sub
            edges:
              - {from: , to: Producer}
          - name: broken
            edges:
              - {from: , to: Unbuildable}
        "#
    );
}
use config::SYSTEM;

mod tasks {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use selinon_runtime::{
        async_trait, json, DataStorage, Json, StorageError, StorageFromConfig, Task, TaskContext,
        TaskResult, TraceEvent,
    };

    /// A user storage that checks the task name it is given (upstream bug: store used the alias,
    /// retrieve the real name) and supports `store_error`.
    pub struct StrictStorage {
        expect_task: String,
        records: Mutex<HashMap<String, Json>>,
        errors: Mutex<HashMap<String, String>>,
        /// The trace events it got (`global.trace` storage sink): method, code, and how many
        /// results this instance held then.
        pub traced: Mutex<Vec<(String, u8, usize)>>,
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
                traced: Mutex::default(),
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
        fn trace(
            &self,
            method: &str,
            event: TraceEvent,
            _details: &Json,
        ) -> Result<(), StorageError> {
            let held = self.records.lock().unwrap().len();
            self.traced
                .lock()
                .unwrap()
                .push((method.to_string(), event.code(), held));
            Ok(())
        }
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
        type Args = Json;
        type Output = Json;

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
    let outcome = rt.run(&config::main_flow::FLOW, Json::Null).await.unwrap();
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
    let outcome = rt.run(&config::main_flow::FLOW, Json::Null).await.unwrap();
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
    let outcome = rt.run(&config::broken::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_failed());
    let failure = &rec.of(TraceEvent::TaskFailure)[0];
    let what = failure["what"].as_str().unwrap();
    // The storage and where the YAML above defines it.
    let origin = format!(
        "storage `Unknown` ({}:{})",
        file!(),
        line_of(include_str!("storage.rs"), "- name: Unknown")
    );
    assert!(what.contains(&origin), "{what} names {origin}");
    assert!(
        what.contains("selinon.storages.unknown.NoSuchStorage"),
        "{what}"
    );
    let err = rt.storage("Unknown").await.err().expect("cannot be built");
    assert!(err.to_string().contains("storage `Unknown`"));
}

// upstream: test_storage.py::test_connect_and_configuration — an adapter given to the
// builder replaces the one of the spec and is connected lazily.
#[tokio::test]
async fn adapters_can_be_given_to_the_builder() {
    let memory = selinon_runtime::InMemoryStorage::new();
    let script = Script::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .storage("Unknown", memory)
        .build();
    let outcome = rt.run(&config::broken::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let storage = rt.storage("Unknown").await.unwrap();
    assert!(storage.is_connected());
    let id = &outcome.finished("Unbuildable")[0];
    assert_eq!(
        storage.retrieve("broken", "Unbuildable", id).await.unwrap(),
        json!({"task": "Unbuildable"})
    );
}

// upstream: `global.trace: [{storage: {name, method}}]` calls `method(event, msg_dict)` of the
// storage instance the tasks use, with the event's integer code.
#[tokio::test]
async fn the_storage_trace_sink_gets_every_event_on_the_tasks_instance() {
    let strict = std::sync::Arc::new(
        <tasks::StrictStorage as selinon_runtime::StorageFromConfig>::from_config(
            &json!({"expect_task": "Aliased"}),
        )
        .unwrap(),
    );
    let script = Script::new();
    let rec = TraceRecorder::new();
    let rt = Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .storage_arc("Strict", strict.clone())
        .trace_sink(rec.clone())
        .build();
    let outcome = rt.run(&config::main_flow::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    let traced = strict.traced.lock().unwrap().clone();
    // Every event the recorder saw, in order, by code, through the YAML's method.
    let codes: Vec<u8> = traced.iter().map(|(_, code, _)| *code).collect();
    let seen: Vec<u8> = rec.events().iter().map(|(e, _)| e.code()).collect();
    assert_eq!(codes, seen);
    assert!(traced.iter().all(|(method, _, _)| method == "store_trace"));
    // The same instance stored `Renamed`'s result before the flow ended.
    let (_, _, held) = traced
        .iter()
        .rev()
        .find(|(_, code, _)| *code == TraceEvent::FlowEnd.code())
        .unwrap();
    assert_eq!(*held, 1);
}
