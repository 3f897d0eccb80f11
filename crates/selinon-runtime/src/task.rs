//! The task trait users implement, the context a task runs with, and task errors.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::engine::{FailureReason, FlowFailure};
use crate::storage::{DataStorage, StorageError, StoragePool};

/// What a task returns: its result (JSON unless the task says otherwise), or an error saying
/// whether to retry.
pub type TaskResult<T = Json> = Result<T, TaskError>;

/// A task's code. The YAML names the type (`import` + `classname`); a value is built with
/// `Default` for every run, as upstream builds its task class per run. Share expensive things
/// (clients, pools) as resources of the worker: [`TaskContext::resource`].
///
/// A task takes its flow's arguments as `Args` and returns `Output`: any serde types (or
/// [`Json`] for both, to stay untyped). Arguments that do not fit `Args` fail the task at once
/// (fatally, so the flow's fallbacks apply) with the field path in the error; the result is
/// serialised once, to the JSON that storages keep.
///
/// The shortest way to write one is an `async fn` with the `#[task]` attribute of
/// `selinon-macros`, which writes this impl:
///
/// ```
/// use selinon_runtime::{Task, TaskContext, TaskResult};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// pub struct Package {
///     name: String,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// pub struct Greeting {
///     greeting: String,
/// }
///
/// #[derive(Default)]
/// pub struct Hello;
///
/// impl Task for Hello {
///     type Args = Package;
///     type Output = Greeting;
///
///     async fn run(&self, _ctx: &TaskContext, args: Package) -> TaskResult<Greeting> {
///         Ok(Greeting { greeting: format!("hello {}", args.name) })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Selinon task",
    label = "named as a task in the YAML configuration",
    note = "implement `selinon_runtime::Task` for `{Self}` (and derive `Default`), or write an \
            `async fn` with `#[selinon_macros::task]`"
)]
pub trait Task: Default + Send + Sync + 'static {
    /// What the task takes: the flow's arguments (`node_args`), or a `foreach` item.
    type Args: DeserializeOwned + Send + 'static;
    /// What the task returns; stored as its JSON when the task has a storage.
    type Output: Serialize + Send + 'static;

    /// Runs the task.
    fn run(
        &self,
        ctx: &TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = TaskResult<Self::Output>> + Send;
}

/// A task of a generated configuration, by its YAML name: the generated `tasks` module has one
/// per task (`flows::tasks::FetchRelease`), to read its results typed
/// ([`TaskContext::parent_result`], [`crate::Runtime::results`]).
pub trait TaskNode: 'static {
    /// The task's name in the YAML.
    const NAME: &'static str;
    /// The type that runs it.
    type Task: Task;
}

/// The result type of a task node.
pub type OutputOf<N> = <<N as TaskNode>::Task as Task>::Output;

/// The `Args` of a task that does not read its arguments: any JSON fits, and a flow that
/// starts with such a task takes any serializable arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnyArgs;

impl<'de> serde::Deserialize<'de> for AnyArgs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| AnyArgs)
    }
}

/// Task arguments (`Task::Args`) that can be given as `A`: the same type, or anything
/// serializable for [`AnyArgs`]. Generated flow handles take `A` where the `Args` of every
/// starting task accepts it.
pub trait AcceptsArgs<A> {}

impl<X: DeserializeOwned> AcceptsArgs<X> for X {}

impl<A: Serialize> AcceptsArgs<A> for AnyArgs {}

/// What a `#[task]` function may return: `Result<T, E>` where `E` converts into a
/// [`TaskError`] (any `std::error::Error` does).
#[diagnostic::on_unimplemented(
    message = "a task function returns `TaskResult<Output>` (or `Result<Output, E>`), not `{Self}`",
    label = "the task's result type",
    note = "`Output` is any `Serialize` type; `E` any error that converts into `TaskError`"
)]
pub trait TaskReturn: Send {
    /// The task's result type, stored as JSON.
    type Output: Serialize + Send + 'static;
    /// The result as a [`TaskResult`].
    fn into_task_result(self) -> TaskResult<Self::Output>;
}

impl<T: Serialize + Send + 'static, E: Into<TaskError> + Send> TaskReturn for Result<T, E> {
    type Output = T;

    fn into_task_result(self) -> TaskResult<T> {
        self.map_err(Into::into)
    }
}

/// Decodes a task's arguments from JSON; the error names the field path
/// (`node_args.name: missing field `name``).
pub fn decode_args<T: DeserializeOwned + 'static>(node_args: Json) -> Result<T, String> {
    // Untyped tasks take the JSON as it is, without a round trip through serde.
    let mut slot = Some(node_args);
    if let Some(args) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        return Ok(args);
    }
    decode_json(slot.unwrap_or_default(), "node_args")
}

/// Decodes JSON into `T`, naming the field path under `root` when it does not fit.
pub(crate) fn decode_json<T: DeserializeOwned>(value: Json, root: &str) -> Result<T, String> {
    // Straight through first; only an error pays for tracking the path (same error, with it).
    if let Ok(decoded) = T::deserialize(&value) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("{root}: {inner}")
        } else {
            format!("{root}.{path}: {inner}")
        }
    })
}

/// Encodes a task's result as JSON (once; untyped results are taken as they are).
pub fn encode_output<T: Serialize + 'static>(output: T) -> Result<Json, String> {
    let mut slot = Some(output);
    if let Some(json) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<Json>>()
        .and_then(Option::take)
    {
        return Ok(json);
    }
    serde_json::to_value(slot.as_ref()).map_err(|e| e.to_string())
}

/// Why a task run did not produce a result.
#[derive(Debug)]
pub enum TaskError {
    /// The task asks to be run again after `countdown` (upstream `self.retry()`); this does
    /// not count against `max_retry`.
    Retry {
        /// Delay before the task is run again.
        countdown: Duration,
    },
    /// A failure that retrying cannot fix: the task fails at once (upstream `FatalTaskError`).
    Fatal(String),
    /// Any other failure: retried up to `max_retry` times, then the task fails.
    Failed(String),
}

impl TaskError {
    /// A fatal error with a message.
    pub fn fatal(message: impl fmt::Display) -> Self {
        TaskError::Fatal(message.to_string())
    }

    /// An ordinary (retryable) error with a message.
    pub fn failed(message: impl fmt::Display) -> Self {
        TaskError::Failed(message.to_string())
    }

    /// A request to run again after `countdown`.
    pub fn retry(countdown: Duration) -> Self {
        TaskError::Retry { countdown }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Retry { countdown } => write!(f, "retry requested in {countdown:?}"),
            TaskError::Fatal(m) => write!(f, "fatal: {m}"),
            TaskError::Failed(m) => f.write_str(m),
        }
    }
}

/// Any error converts into an ordinary (retryable) failure, so `?` works in tasks.
impl<E: std::error::Error> From<E> for TaskError {
    fn from(err: E) -> Self {
        TaskError::Failed(err.to_string())
    }
}

/// What the engine lends a running task: results of other nodes, storages and resources.
pub trait TaskEnv: Send + Sync {
    /// The worker's storages: one adapter per storage, connected on first use.
    fn storages(&self) -> &StoragePool;

    /// A shared resource registered on the worker, by type.
    fn resource(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>>;
}

/// The context of one task run.
#[derive(Clone)]
pub struct TaskContext {
    /// The flow the task runs in.
    pub flow_name: String,
    /// The node name of the task (as in the YAML).
    pub task_name: String,
    /// This run's id (kept across retries).
    pub task_id: String,
    /// The id of the flow instance.
    pub dispatcher_id: String,
    /// The parent map: ids of the tasks (and, with `propagate_finished`, sub-flows) whose
    /// completion started this task; `null` for starting nodes and fallbacks.
    pub parent: Json,
    /// How many times this run was retried after a failure.
    pub retried_count: u32,
    /// A fallback's: the failed nodes it handles and why they failed (see
    /// [`TaskContext::parent_task_exception`]); `None` for other tasks.
    pub fallback_for: Option<FlowFailure>,
    env: Arc<dyn TaskEnv>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("flow_name", &self.flow_name)
            .field("task_name", &self.task_name)
            .field("task_id", &self.task_id)
            .field("dispatcher_id", &self.dispatcher_id)
            .field("parent", &self.parent)
            .field("retried_count", &self.retried_count)
            .field("fallback_for", &self.fallback_for)
            .finish_non_exhaustive()
    }
}

/// Why a task's result could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The parent map (the second field) has no node of this name.
    #[error("no parent node `{0}` (the parent map is {1})")]
    NoParentNode(String, Json),
    /// A flow's outcome has no finished instance of the task.
    #[error("task `{task}` did not finish in flow `{flow}` (finished: {finished})")]
    NotFinished {
        /// The task's name.
        task: String,
        /// The flow's name.
        flow: String,
        /// The nodes that did finish in the flow, comma-separated.
        finished: String,
    },
    /// The task's storage could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored result does not fit the task's `Output` type.
    #[error("the result of task `{task}` does not fit `{ty}`: {error}")]
    Decode {
        /// The task's name.
        task: String,
        /// The Rust type asked for.
        ty: &'static str,
        /// What does not fit (with the field path).
        error: String,
    },
}

/// Decodes a stored result of task node `N` into its `Output` type.
pub(crate) fn decode_result<N: TaskNode>(json: Json) -> Result<OutputOf<N>, ResultError>
where
    OutputOf<N>: DeserializeOwned,
{
    decode_json(json, "result").map_err(|error| ResultError::Decode {
        task: N::NAME.to_string(),
        ty: std::any::type_name::<OutputOf<N>>(),
        error,
    })
}

impl TaskContext {
    /// A context over an engine environment.
    pub fn new(
        flow_name: impl Into<String>,
        task_name: impl Into<String>,
        task_id: impl Into<String>,
        dispatcher_id: impl Into<String>,
        parent: Json,
        retried_count: u32,
        env: Arc<dyn TaskEnv>,
    ) -> Self {
        TaskContext {
            flow_name: flow_name.into(),
            task_name: task_name.into(),
            task_id: task_id.into(),
            dispatcher_id: dispatcher_id.into(),
            parent,
            retried_count,
            fallback_for: None,
            env,
        }
    }

    /// In a fallback: the error text of the failed task `name` it handles (upstream
    /// `parent_task_exception`); `None` elsewhere, or when the reason is unknown.
    pub fn parent_task_exception(&self, name: &str) -> Option<&str> {
        match self.fallback_for.as_ref()?.reason(name)? {
            FailureReason::Error(text) => Some(text),
            FailureReason::Flow(_) => None,
        }
    }

    /// In a fallback: why the nodes of the failed sub-flow `name` it handles failed (upstream
    /// `parent_flow_exception`); `None` elsewhere, or when the reason is unknown.
    pub fn parent_flow_exception(&self, name: &str) -> Option<&FlowFailure> {
        match self.fallback_for.as_ref()?.reason(name)? {
            FailureReason::Flow(failure) => Some(failure),
            FailureReason::Error(_) => None,
        }
    }

    /// The stored result of the parent task `name` (upstream `parent_task_result`).
    pub async fn parent_task_result(&self, name: &str) -> Result<Json, ResultError> {
        let id = self
            .parent
            .get(name)
            .and_then(Json::as_str)
            .ok_or_else(|| ResultError::NoParentNode(name.to_string(), self.parent.clone()))?;
        Ok(self
            .env
            .storages()
            .retrieve(&self.flow_name, name, id)
            .await?)
    }

    /// The stored result of task `task_name` inside the parent sub-flow reached by the path
    /// `flow_names` (upstream `parent_flow_result`); `index` picks one of several runs
    /// (negative counts from the end, `-1` is the last).
    pub async fn parent_flow_result(
        &self,
        flow_names: &[&str],
        task_name: &str,
        index: isize,
    ) -> Result<Json, ResultError> {
        let missing = || ResultError::NoParentNode(task_name.to_string(), self.parent.clone());
        let mut map = &self.parent;
        for flow in flow_names {
            map = map.get(*flow).ok_or_else(missing)?;
        }
        let ids = map
            .get(task_name)
            .and_then(Json::as_array)
            .ok_or_else(missing)?;
        let i = if index < 0 {
            ids.len().checked_sub(index.unsigned_abs())
        } else {
            Some(index as usize)
        };
        let id = i
            .and_then(|i| ids.get(i))
            .and_then(Json::as_str)
            .ok_or_else(missing)?;
        let flow = flow_names.last().copied().unwrap_or(&self.flow_name);
        Ok(self.env.storages().retrieve(flow, task_name, id).await?)
    }

    /// The result of the parent task `N`, as `N`'s result type (upstream `parent_task_result`,
    /// typed): `ctx.parent_result::<flows::tasks::FetchRelease>().await?`. Read from the task's
    /// storage, through its cache.
    pub async fn parent_result<N: TaskNode>(&self) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        decode_result::<N>(self.parent_task_result(N::NAME).await?)
    }

    /// The result of task `N` inside the parent sub-flow reached by `flow_names`, typed
    /// (upstream `parent_flow_result`); `index` as in [`TaskContext::parent_flow_result`].
    pub async fn parent_flow_result_of<N: TaskNode>(
        &self,
        flow_names: &[&str],
        index: isize,
    ) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        decode_result::<N>(self.parent_flow_result(flow_names, N::NAME, index).await?)
    }

    /// The result of any finished instance of task `N` in this flow, by its id (an id of the
    /// parent map, of a sub-flow's result, or one the task was told), typed.
    pub async fn task_result<N: TaskNode>(&self, task_id: &str) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        let json = self
            .env
            .storages()
            .retrieve(&self.flow_name, N::NAME, task_id)
            .await?;
        decode_result::<N>(json)
    }

    /// The task's own storage (`storage:` in the YAML) as its adapter's concrete type,
    /// connected on first use (once per worker), so the adapter's own methods are callable
    /// (upstream `self.storage`). For a `storage_readonly` task, writing its results stays the
    /// task's own business here: use [`TaskContext::storage_dyn`] for a guarded handle.
    pub async fn storage<T: DataStorage>(&self) -> Result<Arc<T>, StorageError> {
        let name = self.own_storage_name()?;
        self.storage_named(name).await
    }

    /// Any storage of the system by name, as its adapter's concrete type, connected on first
    /// use (upstream `StoragePool.get_connected_storage(name)`).
    pub async fn storage_named<T: DataStorage>(&self, name: &str) -> Result<Arc<T>, StorageError> {
        self.env
            .storages()
            .get_connected_storage_as::<T>(name)
            .await
    }

    /// Any storage of the system by name, untyped, connected on first use. The task's own
    /// storage comes read-only when the task is `storage_readonly`: `store`, `store_error` and
    /// `delete` fail.
    pub async fn storage_dyn(&self, name: &str) -> Result<Arc<dyn DataStorage>, StorageError> {
        let pool = self.env.storages();
        let adapter = pool.get_connected_storage(name).await?;
        if pool.storage_name_of(&self.task_name) == Some(name)
            && pool.is_storage_readonly(&self.task_name)
        {
            return Ok(Arc::new(ReadOnlyStorage {
                inner: adapter,
                storage: name.to_string(),
                task: self.task_name.clone(),
            }));
        }
        Ok(adapter)
    }

    fn own_storage_name(&self) -> Result<&'static str, StorageError> {
        self.env
            .storages()
            .storage_name_of(&self.task_name)
            .ok_or_else(|| {
                StorageError::Configuration(format!(
                    "task `{}` has no storage; give it `storage: <name>` in the YAML, or reach \
                     a storage by name with `storage_named`",
                    self.task_name
                ))
            })
    }

    /// A resource registered on the worker (a client, a pool, a configuration).
    pub fn resource<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.env
            .resource(TypeId::of::<T>())
            .and_then(|r| r.downcast::<T>().ok())
    }

    /// Asks to run this task again after `countdown` (not counted against `max_retry`).
    pub fn retry(&self, countdown: Duration) -> TaskError {
        TaskError::retry(countdown)
    }
}

/// The task's own storage as a `storage_readonly` task sees it: reads pass, writes fail.
struct ReadOnlyStorage {
    inner: Arc<dyn DataStorage>,
    storage: String,
    task: String,
}

impl ReadOnlyStorage {
    fn refuse<T>(&self, what: &str) -> Result<T, StorageError> {
        Err(StorageError::Backend {
            storage: self.storage.clone(),
            message: format!(
                "`{what}` refused: task `{}` has `storage_readonly: true`, so its storage is \
                 read-only to it; drop `storage_readonly` in the YAML to let it write",
                self.task
            ),
        })
    }
}

#[async_trait::async_trait]
impl DataStorage for ReadOnlyStorage {
    async fn connect(&self) -> Result<(), StorageError> {
        self.inner.connect().await
    }

    fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    async fn disconnect(&self) -> Result<(), StorageError> {
        self.inner.disconnect().await
    }

    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.inner.retrieve(flow_name, task_name, task_id).await
    }

    async fn store(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        _task_name: &str,
        _task_id: &str,
        _result: &Json,
    ) -> Result<String, StorageError> {
        self.refuse("store")
    }

    async fn store_error(
        &self,
        _node_args: &Json,
        _flow_name: &str,
        _task_name: &str,
        _task_id: &str,
        _error: &str,
    ) -> Result<(), StorageError> {
        self.refuse("store_error")
    }

    async fn delete(
        &self,
        _flow_name: &str,
        _task_name: &str,
        _task_id: &str,
    ) -> Result<(), StorageError> {
        self.refuse("delete")
    }

    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
}
