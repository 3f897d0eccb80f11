//! Runtime for Selinon flows compiled to Rust.
//!
//! The generated code of `selinon-codegen` fills in a [`spec::SystemSpec`]: that is all the
//! runtime knows about a configuration. Users implement [`Task`] (and, for their own storages,
//! [`DataStorage`]).
//!
//! Running a flow in this process:
//!
//! ```no_run
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> Result<(), selinon_runtime::RunError> {
//! let rt = selinon_runtime::Runtime::new(system);
//! let outcome = rt.run_flow("flow1", selinon_runtime::json!({"name": "world"})).await?;
//! println!("{:?}: {:?}", outcome.status, outcome.finished_nodes);
//! # Ok(()) }
//! ```
//!
//! The pieces: [`engine`] (one dispatcher pass, transport-independent), [`envelope`] (one task
//! attempt), [`storage`] (the storage trait, built-in adapters, caches and the pool), [`trace`] (trace events and
//! sinks), [`transport`] (in-process and AMQP), [`backend`] (flow state of the distributed runtime).

#[cfg(feature = "amqp")]
pub mod backend;
pub mod engine;
pub mod envelope;
pub mod predicates;
pub mod spec;
pub mod storage;
pub mod task;
pub mod trace;
pub mod transport;

#[cfg(feature = "amqp")]
pub use transport::amqp;
pub use transport::local;

pub use async_trait::async_trait;
pub use local::{FlowHandle, FlowOutcome, FlowStatus, RunError, Runtime, RuntimeBuilder};
pub use serde_json::{json, Value as Json};
pub use spec::{Db, SystemSpec};
pub use storage::InMemoryStorage;
pub use storage::{DataStorage, StorageError, StorageFromConfig};
pub use task::{Task, TaskContext, TaskError, TaskResult};
pub use trace::{TraceEvent, TraceRecorder, TraceSink};
