//! What generated code tells the runtime about a system.
//!
//! `selinon-codegen` writes, for each configuration, one [`SystemSpec`] constant built from the
//! types of this module: every task with its queue, retries and storage; every storage with its
//! adapter; every flow with its nodes, its edges (each with a compiled condition function), its
//! transition function (a `match` from a finished node to the edges it is a source of) and its
//! failure table (a `match` from a set of failed nodes to the fallback alternatives). The engine
//! needs nothing else: no YAML, no lookup by string in user code.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value as Json;

use crate::task::{TaskContext, TaskResult};

/// A boxed future, as returned by [`SystemSpec::run_task`].
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

// The functions below are `&'static dyn Fn` rather than `fn` pointers: generated code passes
// its functions (`condition: &edge_1_condition`), and the simulator, which runs a flow straight
// from the IR without compiling it, passes closures over the condition tree.

/// A compiled edge or fallback condition: `(results of the sources, flow arguments) -> bool`.
pub type ConditionFn = &'static (dyn Fn(&Db<'_>, &Json) -> bool + Send + Sync);

/// A compiled `foreach` function: the items to start the edge's nodes for.
pub type ForeachFn = &'static (dyn Fn(&Db<'_>, &Json) -> Vec<Json> + Send + Sync);

/// A selective run function: `None` to run the task, or the id of an earlier run to reuse.
pub type SelectiveRunFn = &'static (dyn Fn(&SelectiveRunInput<'_>) -> Option<String> + Send + Sync);

/// What a selective run function is told about the task it decides on.
#[derive(Clone, Debug)]
pub struct SelectiveRunInput<'a> {
    pub flow_name: &'a str,
    pub node_name: &'a str,
    pub node_args: &'a Json,
    pub task_names: &'a [String],
}

/// Runs a task by name: generated as a `match` that calls the user's type.
pub type RunTaskFn = &'static (dyn Fn(&str, TaskContext, Json) -> Option<BoxFuture<'static, TaskResult>>
              + Send
              + Sync);

/// A flow's transition function: the edges (by index) that have the node as a source.
pub type EdgesFromFn = &'static (dyn Fn(&str) -> &'static [usize] + Send + Sync);

/// A flow's failure table: the fallback alternatives for a sorted set of failed node names.
pub type FallbacksFn = &'static (dyn Fn(&[&str]) -> &'static [FallbackSpec] + Send + Sync);

/// Everything about one configuration.
pub struct SystemSpec {
    /// The YAML files the code was generated from (relative paths).
    pub files: &'static [&'static str],
    /// Hash of the configuration's content (the generated file's header carries it too).
    pub content_hash: &'static str,
    pub tasks: &'static [TaskSpec],
    pub flows: &'static [&'static FlowSpec],
    pub storages: &'static [StorageSpec],
    pub trace: &'static [TraceSpec],
    /// `global.migration_dir` and the migrations found there when the code was generated.
    pub migration_dir: Option<MigrationDir>,
    /// Runs a task's user code.
    pub run_task: RunTaskFn,
}

/// `global.migration_dir` (spec §3.17).
#[derive(Debug)]
pub struct MigrationDir {
    /// The directory, unexpanded (read when a worker starts if `files` is empty).
    pub path: &'static str,
    /// `(N, JSON text of N.json)` as found when the code was generated.
    pub files: &'static [(u32, &'static str)],
}

impl SystemSpec {
    pub fn task(&self, name: &str) -> Option<&'static TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }

    pub fn flow(&self, name: &str) -> Option<&'static FlowSpec> {
        self.flows.iter().copied().find(|f| f.name == name)
    }

    pub fn storage(&self, name: &str) -> Option<&'static StorageSpec> {
        self.storages.iter().find(|s| s.name == name)
    }

    pub fn is_flow(&self, name: &str) -> bool {
        self.flow(name).is_some()
    }
}

/// A task of `tasks:`.
pub struct TaskSpec {
    pub name: &'static str,
    /// `file:line` of the YAML definition.
    pub origin: &'static str,
    /// The Rust type implementing it, as written in the generated code.
    pub class: &'static str,
    /// Queue name; `{VAR}` placeholders are expanded when a worker starts.
    pub queue: &'static str,
    pub storage: Option<&'static str>,
    pub storage_readonly: bool,
    pub storage_task_name: &'static str,
    pub output_schema: Option<&'static str>,
    pub max_retry: u32,
    pub retry_countdown: Duration,
    pub throttling: Option<Duration>,
    /// `None`: always run (the default).
    pub selective_run_function: Option<SelectiveRunFn>,
}

/// A storage of `storages:`.
#[derive(Debug)]
pub struct StorageSpec {
    pub name: &'static str,
    pub origin: &'static str,
    /// The adapter: a built-in (`selinon.storages.redis` …) or a user type.
    pub adapter: StorageAdapter,
    /// The YAML `configuration`, as JSON text (options by name, or one value).
    pub configuration: &'static str,
    pub cache: Option<CacheSpec>,
}

/// Where a storage's adapter comes from.
#[derive(Debug)]
pub enum StorageAdapter {
    /// One of the runtime's adapters, by upstream's module and class name.
    Builtin {
        module: &'static str,
        class: &'static str,
    },
    /// A user type implementing the storage trait, built from the configuration.
    User {
        class: &'static str,
        build:
            fn(&Json) -> Result<Box<dyn crate::storage::DataStorage>, crate::storage::StorageError>,
    },
}

/// A result or state cache (`cache:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    /// `LRU`, `MRU`, `FIFO`, `LIFO` or `RR` (built-in caches).
    pub kind: &'static str,
    pub max_cache_size: usize,
}

/// A trace sink of `global.trace`.
#[derive(Debug)]
pub enum TraceSpec {
    Logging,
    Json,
    Function(fn(&str, &Json)),
    Storage {
        storage: &'static str,
        method: &'static str,
    },
    Sentry {
        dsn: &'static str,
    },
}

/// Whether a node of a flow is a task or a sub-flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Task,
    Flow,
}

#[derive(Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    pub kind: NodeKind,
}

/// One flow.
pub struct FlowSpec {
    pub name: &'static str,
    pub origin: &'static str,
    /// Dispatcher queue; `{VAR}` placeholders are expanded when a worker starts.
    pub queue: &'static str,
    pub nodes: &'static [NodeSpec],
    /// In YAML order: an edge's index is its position.
    pub edges: &'static [EdgeSpec],
    /// The flow's transition function: the edges (by index, in YAML order) that have the
    /// node as a source. Generated as a `match` over the node names.
    pub edges_from: EdgesFromFn,
    /// The failure table: the fallback alternatives for one set of failed node names (sorted
    /// by name), tried in YAML order. Generated as a `match` over the sets.
    pub fallbacks: FallbacksFn,
    pub nowait: &'static [&'static str],
    pub eager_failures: &'static [&'static str],
    pub node_args_from_first: bool,
    pub propagate: PropagateSpec,
    pub max_retry: u32,
    pub retry_countdown: Duration,
    pub throttling: Option<Duration>,
    pub cache: Option<CacheSpec>,
}

impl FlowSpec {
    pub fn node(&self, name: &str) -> Option<&'static NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn starting_edges(&self) -> impl Iterator<Item = &'static EdgeSpec> {
        self.edges.iter().filter(|e| e.from.is_empty())
    }

    pub fn is_nowait(&self, node: &str) -> bool {
        self.nowait.contains(&node)
    }
}

/// The `propagate_*` flags of a flow, resolved to the sub-flows they select.
#[derive(Debug, Default)]
pub struct PropagateSpec {
    pub node_args: &'static [&'static str],
    pub parent: &'static [&'static str],
    pub finished: &'static [&'static str],
    pub compound_finished: &'static [&'static str],
    pub failures: &'static [&'static str],
    pub compound_failures: &'static [&'static str],
}

/// One edge.
pub struct EdgeSpec {
    pub index: usize,
    pub origin: &'static str,
    /// Empty for a starting edge.
    pub from: &'static [&'static str],
    pub to: &'static [&'static str],
    /// The source tasks whose results the condition reads.
    pub reads: &'static [&'static str],
    pub condition: ConditionFn,
    /// The condition as upstream prints it in traces.
    pub condition_str: &'static str,
    pub foreach: Option<ForeachSpec>,
    pub selective: Option<SelectiveSpec>,
}

pub struct ForeachSpec {
    pub function: ForeachFn,
    /// `module.function`, for traces.
    pub name: &'static str,
    pub propagate_result: bool,
}

#[derive(Debug)]
pub struct SelectiveSpec {
    pub tasks: &'static [&'static str],
    /// `None`: no subsequent runs; `Some([])`: in every flow; else in the named flows.
    pub run_subsequent: Option<&'static [&'static str]>,
    pub follow_subflows: bool,
}

/// One alternative of a failure entry.
pub struct FallbackSpec {
    pub origin: &'static str,
    /// `None` for `fallback: true` (the failure is handled, nothing starts).
    pub nodes: Option<&'static [&'static str]>,
    /// Failure conditions read only the flow's arguments.
    pub condition: ConditionFn,
    pub condition_str: &'static str,
    pub propagate_failure: bool,
}

/// Runs a task type on a fresh value (`Default`), boxed: what generated `run_task` arms call.
pub fn run_boxed<T: crate::task::Task>(
    ctx: TaskContext,
    node_args: Json,
) -> BoxFuture<'static, TaskResult> {
    Box::pin(async move { T::default().run(&ctx, node_args).await })
}

/// Declares how generated code runs one YAML task: a trait implemented by every
/// [`Task`](crate::Task) type and a function bounded by it, so that naming a type that is not a
/// task is a compile error whose message names the YAML task and its `file:line`.
#[macro_export]
macro_rules! task_trait {
    ($name:ident, $run:ident, $message:literal, $label:literal) => {
        #[doc = $label]
        #[diagnostic::on_unimplemented(
                            message = $message,
                            label = "not a Selinon task",
                            note = "implement `selinon_runtime::Task` for it, and derive `Default`"
                        )]
        pub trait $name: $crate::Task {}

        impl<T: $crate::Task> $name for T {}

        #[doc = $label]
        pub fn $run<T: $name>(
            ctx: $crate::TaskContext,
            node_args: $crate::Json,
        ) -> $crate::spec::BoxFuture<'static, $crate::TaskResult> {
            $crate::spec::run_boxed::<T>(ctx, node_args)
        }
    };
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
            .field("class", &self.class)
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
            .field("nodes", &self.nodes)
            .field("edges", &self.edges)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EdgeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeSpec")
            .field("index", &self.index)
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

impl std::fmt::Debug for FallbackSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackSpec")
            .field("nodes", &self.nodes)
            .field("condition_str", &self.condition_str)
            .finish_non_exhaustive()
    }
}
