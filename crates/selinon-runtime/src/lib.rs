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
//! attempt), [`storages`] (built-in adapters and the storage pool), [`trace`] (trace events and
//! sinks), [`local`] (the in-process runtime).

pub mod engine;
pub mod envelope;
pub mod local;
pub mod predicates;
pub mod spec;
pub mod storage;
pub mod storages;
pub mod task;
pub mod trace;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "sentry")]
pub mod sentry_sink;

pub use async_trait::async_trait;
pub use local::{FlowHandle, FlowOutcome, FlowStatus, RunError, Runtime, RuntimeBuilder};
pub use serde_json::{json, Value as Json};
pub use spec::{Db, SystemSpec};
pub use storage::{DataStorage, StorageError, StorageFromConfig};
pub use storages::InMemoryStorage;
pub use task::{Task, TaskContext, TaskError, TaskResult};
pub use trace::{TraceEvent, TraceRecorder, TraceSink};
