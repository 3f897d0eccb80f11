//! Runtime for Selinon flows compiled to Rust.
//!
//! The generated code of `selinon-codegen` fills in a [`spec::SystemSpec`]: that is all the
//! runtime knows about a configuration; it derives its indexes from it once ([`System`]). Each
//! generated flow module has a handle, `FLOW`, that flows are started with. Users implement
//! [`Task`] (and, for their own storages, [`DataStorage`]).
//!
//! Running a flow in this process:
//!
//! ```no_run
//! # mod flows { pub mod flow1 { static SPEC: selinon_runtime::FlowSpec = selinon_runtime::FlowSpec::DEFAULT; pub static FLOW: selinon_runtime::Flow = selinon_runtime::Flow::new(&SPEC); } }
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> Result<(), selinon_runtime::RunError> {
//! let rt = selinon_runtime::Runtime::new(system);
//! let outcome = rt.run(&flows::flow1::FLOW, selinon_runtime::json!({"name": "world"})).await?;
//! println!("{:?}: {:?}", outcome.status, outcome.finished_nodes);
//! # Ok(()) }
//! ```
//!
//! Everything but [`predicates`] needs the default feature `rt` (tokio); the compiler depends on
//! this crate without it, for the built-in predicates it shares with generated code.
//!
//! The pieces: [`engine`] (one dispatcher pass, transport-independent), [`envelope`] (one task
//! attempt), [`storage`] (the storage trait, built-in adapters, caches and the pool), [`trace`] (trace events and
//! sinks), [`transport`] (in-process and AMQP), [`backend`] (flow state of the distributed runtime).

#[cfg(feature = "amqp")]
pub mod backend;
#[cfg(feature = "rt")]
pub mod engine;
#[cfg(feature = "rt")]
pub mod envelope;
#[cfg(feature = "rt")]
pub mod logging;
pub mod predicates;
#[cfg(feature = "rt")]
pub mod schema;
#[cfg(feature = "rt")]
pub mod spec;
#[cfg(feature = "rt")]
pub mod storage;
#[cfg(feature = "rt")]
pub mod system;
#[cfg(feature = "rt")]
pub mod task;
#[cfg(feature = "rt")]
pub mod trace;
#[cfg(feature = "rt")]
pub mod transport;
#[cfg(feature = "rt")]
pub mod userfn;

#[cfg(feature = "amqp")]
pub use transport::amqp;
#[cfg(feature = "rt")]
pub use transport::local;

#[cfg(feature = "rt")]
pub use async_trait::async_trait;
#[cfg(feature = "rt")]
pub use local::{FlowHandle, FlowOutcome, FlowStatus, RunError, Runtime, RuntimeBuilder};
pub use serde_json::{json, Value as Json};
#[cfg(feature = "rt")]
pub use spec::{Db, Flow, FlowSpec, SystemSpec, Takes};
#[cfg(feature = "rt")]
pub use storage::InMemoryStorage;
#[cfg(feature = "rt")]
pub use storage::{DataStorage, StorageError, StorageFromConfig};
#[cfg(feature = "rt")]
pub use system::System;
#[cfg(feature = "rt")]
pub use task::{
    AcceptsArgs, AnyArgs, OutputOf, ResultError, Task, TaskContext, TaskError, TaskNode, TaskResult,
};
#[cfg(feature = "rt")]
pub use trace::{TraceEvent, TraceRecorder, TraceSink};
#[cfg(feature = "rt")]
pub use userfn::{StorageView, UserFnError};
