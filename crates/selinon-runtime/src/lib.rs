//! Runtime for Selinon flows compiled to Rust.
//!
//! The generated code of `selinon-codegen` fills in a [`spec::SystemSpec`]: that is all the
//! runtime knows about a configuration; it derives its indexes from it once ([`System`]). Each
//! generated flow module has a handle, `FLOW`, that flows are started with. Users implement
//! [`Task`] (and, for their own storages, [`DataStorage`]).
//!
//! A first flow, end to end: the YAML (here inline; usually files, through `include_flows!` or
//! a `build.rs`), a typed task written as an `async fn`, a run in this process, and its outcome
//! (a failed flow's `outcome.failures()` says which node failed and why):
//!
//! ```
//! mod app {
//!     pub mod tasks {
//!         use selinon_macros::task;
//!         use selinon_runtime::TaskResult;
//!         use serde::{Deserialize, Serialize};
//!
//!         #[derive(Serialize, Deserialize)]
//!         pub struct Name {
//!             pub name: String,
//!         }
//!
//!         #[derive(Serialize, Deserialize)]
//!         pub struct Greeting {
//!             pub text: String,
//!         }
//!
//!         /// The YAML's task `Greet` (`import: app.tasks`).
//!         #[task]
//!         pub async fn greet(who: Name) -> TaskResult<Greeting> {
//!             Ok(Greeting { text: format!("hello {}", who.name) })
//!         }
//!     }
//! }
//!
//! mod flows {
//!     selinon_macros::flows!(r#"
//!         tasks:
//!           - {name: Greet, import: app.tasks, storage: Memory}
//!         storages:
//!           - {name: Memory, import: selinon.storages.memory, classname: InMemoryStorage,
//!              configuration: {echo: false}}
//!         flows: [hello]
//!         flow-definitions:
//!           - name: hello
//!             edges:
//!               - {from: , to: Greet}
//!     "#);
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let rt = selinon_runtime::Runtime::new(&flows::SYSTEM);
//!     let who = app::tasks::Name { name: "world".into() };
//!     let outcome = rt.run(&flows::hello::FLOW, who).await.unwrap();
//!     assert!(outcome.is_finished(), "{}", outcome.failures());
//!     let greeting = rt.result::<flows::tasks::Greet>(&outcome).await.unwrap();
//!     assert_eq!(greeting.text, "hello world");
//! }
//! ```
//!
//! Over AMQP the same generated code and tasks run on worker processes (module `amqp`, feature
//! `amqp`); the repository's README walks through both.
//!
//! Everything but [`predicates`] needs the default feature `rt` (tokio); the compiler depends on
//! this crate without it, for the built-in predicates it shares with generated code.
//!
//! The pieces: [`engine`] (one dispatcher pass, transport-independent), [`envelope`] (one task
//! attempt), [`storage`] (the storage trait, built-in adapters, caches and the pool), [`trace`]
//! (trace events and sinks), [`transport`] (in-process and AMQP), `backend` (feature `amqp`: flow
//! state of the distributed runtime).

#![warn(missing_docs)]

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
