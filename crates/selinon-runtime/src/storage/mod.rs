//! The storage trait: where task results live. The YAML assigns each task a storage; task code
//! never needs to know which.
//!
//! Built-in adapters (memory, filesystem, Redis, PostgreSQL, S3), result caches and the
//! storage pool live beside the trait.

pub mod cache;
mod filesystem;
mod memory;
mod pool;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;

pub use cache::{CacheKind, ResultCache};
pub use filesystem::Filesystem;
pub use memory::InMemoryStorage;
pub use pool::{build_adapter, expand_env, StoragePool, BUILTIN_ADAPTERS};
#[cfg(feature = "postgres")]
pub use postgres::PostgreSql;
#[cfg(feature = "redis")]
pub use redis::Redis;
#[cfg(feature = "s3")]
pub use s3::S3;

use async_trait::async_trait;
use serde_json::Value as Json;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage holds no result for this task instance.
    #[error("no record for task `{task_name}` id `{task_id}` in flow `{flow_name}`")]
    Missing {
        /// The flow the task ran in.
        flow_name: String,
        /// The task's name (or its `storage_task_name`).
        task_name: String,
        /// The task instance's id.
        task_id: String,
    },
    /// The adapter does not implement the named operation.
    #[error("the storage does not support `{0}`")]
    NotSupported(&'static str),
    /// The storage's `configuration` does not fit the adapter; the message says what is wrong.
    #[error("storage configuration: {0}")]
    Configuration(String),
    /// The storage's server or files failed (unreachable, refused, unreadable).
    #[error("storage `{storage}`: {message}")]
    Backend {
        /// The storage's name.
        storage: String,
        /// What failed.
        message: String,
    },
}

/// A storage adapter (upstream `DataStorage`). Built-in adapters and user types implement it.
#[async_trait]
pub trait DataStorage: std::any::Any + Send + Sync {
    /// Connects; called lazily, once per worker, before first use.
    async fn connect(&self) -> Result<(), StorageError>;

    /// Whether [`DataStorage::connect`] succeeded and no disconnect followed.
    fn is_connected(&self) -> bool;

    /// Closes connections; the storage may be connected again.
    async fn disconnect(&self) -> Result<(), StorageError>;

    /// The stored result of a task run.
    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError>;

    /// Stores a task's result; returns the record's id.
    async fn store(
        &self,
        node_args: &Json,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
        result: &Json,
    ) -> Result<String, StorageError>;

    /// Stores the error of a task that failed for good.
    async fn store_error(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        _task_name: &str,
        _task_id: &str,
        _error: &str,
    ) -> Result<(), StorageError> {
        Err(StorageError::NotSupported("store_error"))
    }

    /// Deletes a stored result.
    async fn delete(
        &self,
        _flow_name: &str,
        _task_name: &str,
        _task_id: &str,
    ) -> Result<(), StorageError> {
        Err(StorageError::NotSupported("delete"))
    }

    /// The adapter's concrete type, as errors of typed access name it.
    fn type_name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// Receives every trace event when `global.trace` names this storage
    /// (`- storage: {name: …, method: …}`; upstream calls `storage.<method>(event, msg_dict)`):
    /// `method` is the name the YAML gives (default `trace`), `event.code()` upstream's integer.
    /// Called synchronously, connected or not, on the instance the tasks use; an adapter that
    /// writes elsewhere should hand the write off (e.g. to a tokio task). The built-in adapters
    /// do not take trace events.
    fn trace(
        &self,
        _method: &str,
        _event: crate::trace::TraceEvent,
        _details: &Json,
    ) -> Result<(), StorageError> {
        Err(StorageError::NotSupported("trace"))
    }
}

/// A user storage type that the YAML names: built from its `configuration`.
pub trait StorageFromConfig: DataStorage + Sized {
    /// Builds the storage from the YAML `configuration` (as JSON); a wrong value is [`StorageError::Configuration`].
    fn from_config(configuration: &Json) -> Result<Self, StorageError>;
}
