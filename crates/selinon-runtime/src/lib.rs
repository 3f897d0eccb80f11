//! Runtime for Selinon flows compiled to Rust.
//!
//! The generated code of `selinon-codegen` fills in a [`spec::SystemSpec`]: that is all the
//! runtime knows about a configuration. Users implement [`Task`] (and, for their own storages,
//! [`DataStorage`]).

pub mod predicates;
pub mod spec;
pub mod storage;
pub mod task;

pub use async_trait::async_trait;
pub use serde_json::{json, Value as Json};
pub use spec::{Db, SystemSpec};
pub use storage::{DataStorage, StorageError, StorageFromConfig};
pub use task::{Task, TaskContext, TaskError, TaskResult};
