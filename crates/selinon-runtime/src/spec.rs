//! What generated code tells the runtime about a system.
//!
//! `selinon-codegen` writes, for each configuration, one [`SystemSpec`] built from the types of
//! this module: every task with its queue, retries, storage and the Rust type that runs it;
//! every storage with its adapter; every flow with its edges (each with a compiled condition
//! function) and its failure entries. The tables say only what the YAML says: every type has
//! a `DEFAULT` constant, and generated code writes the values that differ from it
//! (`..TaskSpec::DEFAULT`). What can be derived from the tables (nodes of a flow, edges by
//! source node, the failure table, ids) is derived once by the runtime when it starts
//! ([`crate::system::System`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value as Json;

use crate::task::{TaskContext, TaskResult};
use crate::userfn::{ForeachFuture, SelectiveFuture, StorageView};

/// A boxed future, as returned by a task's [`RunTaskFn`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The results a condition may read: the stored results of the source tasks of one
/// combination of finished instances, fetched by the engine before the condition runs.
#[derive(Clone, Debug, Default)]
pub struct Db<'a> {
    results: Vec<(&'a str, &'a Json)>,
}

impl<'a> Db<'a> {
    /// An empty view (starting edges and failure conditions read no results).
    pub fn empty() -> Self {
        Db::default()
    }

    /// A view over `(task name, result)` pairs.
    pub fn new(results: impl IntoIterator<Item = (&'a str, &'a Json)>) -> Self {
        Db {
            results: results.into_iter().collect(),
        }
    }

    /// The result of the named source task, if it was fetched.
    pub fn get(&self, task: &str) -> Option<&'a Json> {
        self.results
            .iter()
            .find(|(name, _)| *name == task)
            .map(|(_, v)| *v)
    }
}

// Conditions and `foreach` functions are `&'static dyn Fn` rather than `fn` pointers:
// generated code passes its functions (`condition: &edge_1`), and the simulator, which runs a
// flow straight from the IR without compiling it, passes closures over the condition tree.

/// A compiled edge or fallback condition: `(results of the sources, flow arguments) -> bool`.
pub type ConditionFn = &'static (dyn Fn(&Db<'_>, &Json) -> bool + Send + Sync);

/// A `foreach` function: the items to start the edge's nodes for. Generated code wraps the
/// user's function, synchronous or `async`, with [`foreach!`](crate::foreach!) (see
/// [`crate::userfn`]).
pub type ForeachFn =
    &'static (dyn for<'a> Fn(&'a StorageView<'a>, &'a Json) -> ForeachFuture<'a> + Send + Sync);

/// A selective run function: `None` to run the task, or the id of an earlier run to reuse.
/// Generated code wraps the user's function, synchronous or `async`, with
/// [`selective_run!`](crate::selective_run!).
pub type SelectiveRunFn = &'static (dyn for<'a> Fn(&'a SelectiveRunInput<'a>, &'a StorageView<'a>) -> SelectiveFuture<'a>
              + Send
              + Sync);

/// What a selective run function is told about the task it decides on.
#[derive(Clone, Debug)]
pub struct SelectiveRunInput<'a> {
    /// The flow the task runs in.
    pub flow_name: &'a str,
    /// The task's name in the flow.
    pub node_name: &'a str,
    /// The arguments the task would run with.
    pub node_args: &'a Json,
    /// The tasks the selective run was asked to run.
    pub task_names: &'a [String],
}

/// Runs one attempt of a task's code: generated with [`task!`](crate::task!) for the user's
/// type (the simulator passes closures).
pub type RunTaskFn =
    &'static (dyn Fn(TaskContext, Json) -> BoxFuture<'static, TaskResult> + Send + Sync);

/// Builds a user storage adapter from its configuration: [`user_storage`] for the user's type.
pub type BuildStorageFn =
    fn(&Json) -> Result<Box<dyn crate::storage::DataStorage>, crate::storage::StorageError>;

/// The condition of edges and fallbacks that have none.
pub fn always(_db: &Db<'_>, _node_args: &Json) -> bool {
    true
}

/// Everything about one configuration.
pub struct SystemSpec {
    /// The YAML files the code was generated from (relative paths).
    pub files: &'static [&'static str],
    /// Hash of the configuration's content (the generated file's header carries it too).
    pub content_hash: &'static str,
    /// The tasks of `tasks:`, in YAML order.
    pub tasks: &'static [TaskSpec],
    /// The flows of `flows:` (each a generated module's `SPEC`).
    pub flows: &'static [&'static FlowSpec],
    /// The storages of `storages:`.
    pub storages: &'static [StorageSpec],
    /// The trace sinks of `global.trace`, in YAML order.
    pub trace: &'static [TraceSpec],
    /// `global.migration_dir` and the migrations found there when the code was generated.
    pub migration_dir: Option<MigrationDir>,
}

impl SystemSpec {
    /// No task, flow, storage or trace sink.
    pub const DEFAULT: SystemSpec = SystemSpec {
        files: &[],
        content_hash: "",
        tasks: &[],
        flows: &[],
        storages: &[],
        trace: &[],
        migration_dir: None,
    };
}

/// `global.migration_dir` (spec §3.17).
#[derive(Debug)]
pub struct MigrationDir {
    /// The directory, unexpanded (read when a worker starts if `files` is empty).
    pub path: &'static str,
    /// `(N, JSON text of N.json)` as found when the code was generated.
    pub files: &'static [(u32, &'static str)],
}

/// A task of `tasks:`.
pub struct TaskSpec {
    /// `name` of the task, as flows refer to it.
    pub name: &'static str,
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// Runs the user's code.
    pub run: RunTaskFn,
    /// Queue name; `{VAR}` placeholders are expanded when a worker starts.
    pub queue: &'static str,
    /// `storage` of the task: the name of a storage of `storages:` its results go to.
    pub storage: Option<&'static str>,
    /// `storage_readonly` of the task: results are read from the storage but never written.
    pub storage_readonly: bool,
    /// The name results are stored under, when not the task's name.
    pub storage_task_name: Option<&'static str>,
    /// `output_schema`: every result is validated against it before it is stored.
    pub output_schema: Option<OutputSchema>,
    /// `max_retry` of the task (upstream default 0).
    pub max_retry: u32,
    /// `retry_countdown` of the task: the delay before a retry (upstream default 0 s).
    pub retry_countdown: Duration,
    /// `throttling` of the task: the least time between two starts of it (default none).
    pub throttling: Option<Duration>,
    /// `None`: always run (the default).
    pub selective_run_function: Option<SelectiveRunFn>,
}

impl TaskSpec {
    /// Upstream's defaults: queue `celery`, no storage, no retries, no throttling.
    pub const DEFAULT: TaskSpec = TaskSpec {
        name: "",
        origin: "",
        run: &no_code,
        queue: DEFAULT_QUEUE,
        storage: None,
        storage_readonly: false,
        storage_task_name: None,
        output_schema: None,
        max_retry: 0,
        retry_countdown: Duration::ZERO,
        throttling: None,
        selective_run_function: None,
    };

    /// The name the task's results are stored under (`storage_task_name`, else its name).
    pub fn storage_task_name(&self) -> &'static str {
        self.storage_task_name.unwrap_or(self.name)
    }
}

/// A task's `output_schema` (spec §3.13), embedded by the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSchema {
    /// The path as written in the YAML (shown in failure messages).
    pub path: &'static str,
    /// The schema's JSON text, read from `path` when the code was generated.
    pub json: &'static str,
}

/// Upstream's default queue.
pub const DEFAULT_QUEUE: &str = "celery";

/// The `run` of [`TaskSpec::DEFAULT`]: a task whose table names no code fails for good.
fn no_code(ctx: TaskContext, _node_args: Json) -> BoxFuture<'static, TaskResult> {
    Box::pin(async move {
        Err(crate::TaskError::fatal(format!(
            "no code for task `{}`: its `TaskSpec` has no `run`",
            ctx.task_name
        )))
    })
}

/// A storage of `storages:`.
#[derive(Debug)]
pub struct StorageSpec {
    /// `name` of the storage, as tasks refer to it.
    pub name: &'static str,
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// The adapter: a built-in (`selinon.storages.redis` …) or a user type.
    pub adapter: StorageAdapter,
    /// The YAML `configuration`, as JSON text (options by name, or one value).
    pub configuration: &'static str,
    /// `cache` of the storage: a cache of results in front of it (default none).
    pub cache: Option<CacheSpec>,
}

impl StorageSpec {
    /// The in-memory storage with no configuration and no cache.
    pub const DEFAULT: StorageSpec = StorageSpec {
        name: "",
        origin: "",
        adapter: StorageAdapter::Builtin {
            module: "selinon.storages.memory",
            class: "InMemoryStorage",
        },
        configuration: "{}",
        cache: None,
    };
}

/// Where a storage's adapter comes from.
pub enum StorageAdapter {
    /// One of the runtime's adapters, by upstream's module and class name.
    Builtin {
        /// Upstream's module, e.g. `selinon.storages.redis`.
        module: &'static str,
        /// Upstream's class, e.g. `RedisStorage`.
        class: &'static str,
    },
    /// A user type implementing the storage trait, built from the configuration
    /// (`StorageAdapter::User(user_storage::<MyStorage>)`).
    User(BuildStorageFn),
}

impl std::fmt::Debug for StorageAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageAdapter::Builtin { module, class } => write!(f, "Builtin({module}.{class})"),
            StorageAdapter::User(_) => f.write_str("User"),
        }
    }
}

/// Builds a user's storage type from its configuration: what generated `StorageAdapter::User`
/// entries name.
pub fn user_storage<T: crate::storage::StorageFromConfig>(
    configuration: &Json,
) -> Result<Box<dyn crate::storage::DataStorage>, crate::storage::StorageError> {
    Ok(Box::new(T::from_config(configuration)?))
}

/// A result or state cache (`cache:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    /// `LRU`, `MRU`, `FIFO`, `LIFO` or `RR` (built-in caches).
    pub kind: &'static str,
    /// `max_cache_size`: the most entries the cache holds.
    pub max_cache_size: usize,
}

/// A trace sink of `global.trace`.
#[derive(Debug)]
pub enum TraceSpec {
    /// `logging`: events go to `tracing`.
    Logging,
    /// `json: true`: one JSON line per event on standard output.
    Json,
    /// `function`: the user's function is called with each event's name and details.
    Function(fn(&str, &Json)),
    /// `storage`: events are handed to a storage's method.
    Storage {
        /// The storage's name (of `storages:`).
        storage: &'static str,
        /// The storage method called with each event.
        method: &'static str,
    },
    /// `sentry`: failures are reported to Sentry.
    Sentry {
        /// The Sentry DSN; `{VAR}` placeholders are expanded from the environment.
        dsn: &'static str,
    },
}

/// One flow: what a flow module's `FLOW` is, and what a flow is started with
/// (`runtime.run(&flows::ingest::FLOW, args)`).
pub struct FlowSpec {
    /// `name` of the flow.
    pub name: &'static str,
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// Dispatcher queue; `{VAR}` placeholders are expanded when a worker starts.
    pub queue: &'static str,
    /// In YAML order: an edge's index is its position.
    pub edges: &'static [EdgeSpec],
    /// The entries of `failures`, in YAML order; entries for the same set of nodes are
    /// alternatives, tried in that order.
    pub failures: &'static [FailureSpec],
    /// `nowait` of the flow: nodes the flow does not wait for.
    pub nowait: &'static [&'static str],
    /// `eager_failures` of the flow: nodes whose failure fails the flow at once.
    pub eager_failures: &'static [&'static str],
    /// `node_args_from_first` of the flow: when the first node finishes alone, its stored result
    /// becomes the flow's arguments (default false).
    pub node_args_from_first: bool,
    /// The flow's `propagate_*` flags.
    pub propagate: PropagateSpec,
    /// `max_retry` of the flow (upstream default 0).
    pub max_retry: u32,
    /// `retry_countdown` of the flow: the delay before a retry (upstream default 0 s).
    pub retry_countdown: Duration,
    /// `throttling` of the flow: the least time between two starts of it (default none).
    pub throttling: Option<Duration>,
    /// `cache` of the flow: a cache of its state (default none).
    pub cache: Option<CacheSpec>,
}

impl FlowSpec {
    /// No edges, upstream's defaults for the rest.
    pub const DEFAULT: FlowSpec = FlowSpec {
        name: "",
        origin: "",
        queue: DEFAULT_QUEUE,
        edges: &[],
        failures: &[],
        nowait: &[],
        eager_failures: &[],
        node_args_from_first: false,
        propagate: PropagateSpec::DEFAULT,
        max_retry: 0,
        retry_countdown: Duration::ZERO,
        throttling: None,
        cache: None,
    };
}

/// A flow's handle: what generated code gives for each flow (`flows::ingest::FLOW`) and what
/// a flow is started with (`runtime.run(&flows::ingest::FLOW, args)`). `M` is the flow's
/// marker type, which says what the flow takes ([`Takes`]): the `Args` of its starting tasks.
pub struct Flow<M: ?Sized = Untyped> {
    spec: &'static FlowSpec,
    marker: PhantomData<fn() -> M>,
}

impl<M: ?Sized> Flow<M> {
    /// The handle of a flow spec.
    pub const fn new(spec: &'static FlowSpec) -> Self {
        Flow {
            spec,
            marker: PhantomData,
        }
    }

    /// The flow's spec.
    pub const fn spec(&self) -> &'static FlowSpec {
        self.spec
    }

    /// The same flow, started with any serializable arguments (for a flow whose starting tasks
    /// take different types, or arguments built as JSON).
    pub const fn untyped(&self) -> Flow<Untyped> {
        Flow::new(self.spec)
    }
}

impl<M: ?Sized> Clone for Flow<M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: ?Sized> Copy for Flow<M> {}

impl<M: ?Sized> std::ops::Deref for Flow<M> {
    type Target = FlowSpec;

    fn deref(&self) -> &FlowSpec {
        self.spec
    }
}

impl<M: ?Sized> std::fmt::Debug for Flow<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flow({})", self.spec.name)
    }
}

/// What a flow is started with: generated code implements `Takes<A>` for a flow's marker type
/// where every starting task of the flow (and every starting sub-flow its arguments reach)
/// takes `A` as its `Task::Args`.
#[diagnostic::on_unimplemented(
    message = "flow `{Self}` is not started with `{A}`",
    label = "the arguments of this flow",
    note = "a flow takes what its starting tasks take (their `Task::Args`); to pass anything \
            serializable, start it with `FLOW.untyped()`"
)]
pub trait Takes<A> {}

/// The marker of a flow handle that takes any serializable arguments.
#[derive(Debug)]
pub enum Untyped {}

impl<A: serde::Serialize> Takes<A> for Untyped {}

/// The `propagate_*` flags of a flow, resolved to the sub-flows they select.
#[derive(Debug, Default)]
pub struct PropagateSpec {
    /// `propagate_node_args`: sub-flows started with this flow's arguments (else none).
    pub node_args: &'static [&'static str],
    /// `propagate_parent`: sub-flows given the `parent` map of the edge that starts them.
    pub parent: &'static [&'static str],
    /// `propagate_finished`: sub-flows whose finished nodes (nested per sub-flow) go into the
    /// `parent` map of the nodes started after them.
    pub finished: &'static [&'static str],
    /// `propagate_compound_finished`: as `finished`, with the tasks of nested sub-flows merged
    /// under the sub-flow's name.
    pub compound_finished: &'static [&'static str],
    /// `propagate_failures`: checked, but without effect at run time (as upstream).
    pub failures: &'static [&'static str],
    /// `propagate_compound_failures`: checked, but without effect at run time (as upstream).
    pub compound_failures: &'static [&'static str],
}

impl PropagateSpec {
    /// Nothing propagated.
    pub const DEFAULT: PropagateSpec = PropagateSpec {
        node_args: &[],
        parent: &[],
        finished: &[],
        compound_finished: &[],
        failures: &[],
        compound_failures: &[],
    };
}

/// One edge.
pub struct EdgeSpec {
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// Empty for a starting edge.
    pub from: &'static [&'static str],
    /// `to`: the nodes started when the edge fires.
    pub to: &'static [&'static str],
    /// The source tasks whose results the condition reads.
    pub reads: &'static [&'static str],
    /// The compiled condition (see [`ConditionFn`]).
    pub condition: ConditionFn,
    /// The condition as upstream prints it in traces.
    pub condition_str: &'static str,
    /// The condition may block on I/O (it uses `httpStatus` or a user predicate): the pass
    /// evaluates it on tokio's blocking threads, never on a runtime thread.
    pub condition_blocking: bool,
    /// `foreach` of the edge: start the `to` nodes once per item (default none).
    pub foreach: Option<ForeachSpec>,
    /// `selective` of the edge, for selective runs (default none).
    pub selective: Option<SelectiveSpec>,
}

impl EdgeSpec {
    /// A starting edge to nothing with no condition.
    pub const DEFAULT: EdgeSpec = EdgeSpec {
        origin: "",
        from: &[],
        to: &[],
        reads: &[],
        condition: &always,
        condition_str: "True",
        condition_blocking: false,
        foreach: None,
        selective: None,
    };
}

/// An edge's `foreach`: the function that lists the items.
pub struct ForeachSpec {
    /// The user's function, wrapped by [`foreach!`](crate::foreach!).
    pub function: ForeachFn,
    /// `module.function`, for traces.
    pub name: &'static str,
    /// `propagate_result`: each item becomes the arguments of the sub-flows started for it (default false).
    pub propagate_result: bool,
}

#[derive(Debug)]
/// An edge's `selective`: which tasks a selective run of the flow runs.
pub struct SelectiveSpec {
    /// `tasks`: the tasks to run (with the nodes they need).
    pub tasks: &'static [&'static str],
    /// `None`: no subsequent runs; `Some([])`: in every flow; else in the named flows.
    pub run_subsequent: Option<&'static [&'static str]>,
    /// `follow_subflows`: also run the tasks in sub-flows (default false).
    pub follow_subflows: bool,
}

/// One entry of a flow's `failures`: what to start when all of `nodes` failed.
pub struct FailureSpec {
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// The failed nodes this entry handles.
    pub nodes: &'static [&'static str],
    /// `None` for `fallback: true` (the failure is handled, nothing starts).
    pub fallback: Option<&'static [&'static str]>,
    /// Failure conditions read only the flow's arguments.
    pub condition: ConditionFn,
    /// The condition as upstream prints it in traces.
    pub condition_str: &'static str,
    /// The condition may block on I/O: see [`EdgeSpec::condition_blocking`].
    pub condition_blocking: bool,
    /// `propagate_failure` of the entry: parsed, but without effect at run time (as upstream).
    pub propagate_failure: bool,
}

impl FailureSpec {
    /// Handles nothing, starts nothing, always applies.
    pub const DEFAULT: FailureSpec = FailureSpec {
        origin: "",
        nodes: &[],
        fallback: None,
        condition: &always,
        condition_str: "True",
        condition_blocking: false,
        propagate_failure: false,
    };
}

/// Runs a task type on a fresh value (`Default`), boxed: what [`task!`](crate::task!) names.
/// The arguments are decoded into the task's `Args` (a mismatch fails the task fatally, naming
/// the field path) and its `Output` is encoded as JSON once.
pub fn run_boxed<T: crate::task::Task>(
    ctx: TaskContext,
    node_args: Json,
) -> BoxFuture<'static, TaskResult> {
    Box::pin(async move {
        let args = crate::task::decode_args::<T::Args>(node_args).map_err(|e| {
            crate::TaskError::fatal(format!(
                "task `{}` of flow `{}`: the arguments do not fit `{}`: {e}",
                ctx.task_name,
                ctx.flow_name,
                std::any::type_name::<T::Args>()
            ))
        })?;
        let output = T::default().run(&ctx, args).await?;
        crate::task::encode_output(output).map_err(|e| {
            crate::TaskError::fatal(format!(
                "task `{}` of flow `{}`: its result (`{}`) cannot be written as JSON: {e}",
                ctx.task_name,
                ctx.flow_name,
                std::any::type_name::<T::Output>()
            ))
        })
    })
}

/// The [`RunTaskFn`] of a YAML task run by a Rust type: `task!(crate::app::Fetch, "message")`.
/// Naming a type that is not a [`Task`](crate::Task) is a compile error whose message is the
/// given one (generated code names the YAML task and its `file:line` in it).
#[macro_export]
#[rustfmt::skip] // rustfmt indents the attribute further on every run
macro_rules! task {
    ($type:ty, $message:literal) => {{
        #[diagnostic::on_unimplemented(
            message = $message,
            label = "not a Selinon task",
            note = "implement `selinon_runtime::Task` for it, and derive `Default`"
        )]
        trait IsTask: $crate::Task {}
        impl<T: $crate::Task> IsTask for T {}
        const fn run<T: IsTask + 'static>() -> $crate::spec::RunTaskFn {
            &$crate::spec::run_boxed::<T>
        }
        run::<$type>()
    }};
}

// `Debug` by hand: the function fields have none.

impl std::fmt::Debug for SystemSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSpec")
            .field("files", &self.files)
            .field("content_hash", &self.content_hash)
            .field("tasks", &self.tasks)
            .field("flows", &self.flows)
            .field("storages", &self.storages)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("queue", &self.queue)
            .field("storage", &self.storage)
            .field("max_retry", &self.max_retry)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for FlowSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowSpec")
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("edges", &self.edges)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EdgeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSpec")
            .field("origin", &self.origin)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("condition_str", &self.condition_str)
            .field("foreach", &self.foreach)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ForeachSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeachSpec")
            .field("name", &self.name)
            .field("propagate_result", &self.propagate_result)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for FailureSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureSpec")
            .field("nodes", &self.nodes)
            .field("fallback", &self.fallback)
            .field("condition_str", &self.condition_str)
            .finish_non_exhaustive()
    }
}

/// Declares the macro that generated code names a built-in storage adapter with: the adapter
/// when the runtime's cargo feature is on, else a compile error that names the storage, its
/// YAML line (in `$what`) and the feature to enable.
macro_rules! builtin_storage_macro {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $module:literal, $class:literal, $adapter:literal) => {
        $(#[$doc])*
        #[cfg(feature = $feature)]
        #[macro_export]
        macro_rules! $name {
            ($what:literal) => {
                $crate::spec::StorageAdapter::Builtin {
                    module: $module,
                    class: $class,
                }
            };
        }

        $(#[$doc])*
        #[cfg(not(feature = $feature))]
        #[macro_export]
        macro_rules! $name {
            ($what:literal) => {
                compile_error!(concat!(
                    $what,
                    " uses the built-in ",
                    $adapter,
                    " storage adapter, but the `",
                    $feature,
                    "` feature of selinon-runtime is off: enable it in Cargo.toml \
                     (selinon-runtime = { version = \"…\", features = [\"",
                    $feature,
                    "\"] })"
                ))
            };
        }
    };
}

builtin_storage_macro!(
    /// The Redis storage adapter (feature `redis`): `redis_storage!("storage `X` (nodes.yml:3)")`.
    redis_storage,
    "redis",
    "selinon.storages.redis",
    "Redis",
    "Redis"
);
builtin_storage_macro!(
    /// The PostgreSQL storage adapter (feature `postgres`).
    postgres_storage,
    "postgres",
    "selinon.storages.postgresql",
    "PostgreSQL",
    "PostgreSQL"
);
builtin_storage_macro!(
    /// The S3 storage adapter (feature `s3`).
    s3_storage,
    "s3",
    "selinon.storages.s3",
    "S3",
    "S3"
);
