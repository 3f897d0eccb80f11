//! The in-process runtime: the embedded default. Tokio tasks and channels, no server.
//!
//! Each flow instance is one tokio task that owns the flow's state (the single state writer)
//! and runs a dispatcher pass ([`crate::engine::dispatch_owned`]) whenever completions of its nodes
//! arrive on its channel; completions that arrive together are handled in one pass. A task a
//! pass starts is first polled in the flow's own tokio task: if it ends there, its end goes
//! straight into the next pass; if it has to wait, it runs on as a tokio task of its own and
//! reports its final status to the flow's channel. A sub-flow reports its end to its parent
//! flow's channel. Countdowns (throttling, retries) are timers, not
//! blocked workers. Queues are kept in traces but play no part in-process.
//!
//! Every flow and task a runtime spawns belongs to its root flow: a root flow that has not
//! ended within [`RuntimeBuilder::flow_timeout`] is stopped with all its sub-flows and tasks,
//! and [`Runtime::shutdown`] stops everything the runtime started. Dropping a [`Runtime`]
//! stops nothing (flows already started run on): call `shutdown` for that.
//!
//! ```no_run
//! # mod flows { pub mod flow1 { static SPEC: selinon_runtime::FlowSpec = selinon_runtime::FlowSpec::DEFAULT; pub static FLOW: selinon_runtime::Flow = selinon_runtime::Flow::new(&SPEC); } }
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> Result<(), selinon_runtime::RunError> {
//! let rt = selinon_runtime::Runtime::new(system);
//! let outcome = rt.run(&flows::flow1::FLOW, serde_json::json!({"name": "world"})).await?;
//! assert!(outcome.is_finished(), "failed nodes: {:?}", outcome.failed_nodes);
//! # Ok(()) }
//! ```

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

use crate::engine::{
    self, Action, DispatcherMessage, EngineEnv, FailureReason, FlowFailure, FlowResult, NodeEvent,
    NodeIds, NodeRef, PassOutcome, RunSubsequent, SelectiveError, SelectiveMap, TaskMessage,
    Throttler,
};
use crate::envelope::{self, AttemptOutcome};
use crate::spec::{self, FlowSpec, SystemSpec, Takes};
use crate::storage::StoragePool;
use crate::storage::{DataStorage, StorageError};
use crate::system::{Flow, System};
use crate::task::{decode_result, OutputOf, ResultError, TaskEnv, TaskNode};
use crate::trace::{TraceEvent, TraceSink, Tracer};

/// Why a flow could not be run to an end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// No flow of the system has this name.
    #[error("unknown flow `{name}` (flows: {known})")]
    UnknownFlow {
        /// The name asked for.
        name: String,
        /// The system's flows, comma-separated.
        known: String,
    },
    /// The flow's arguments could not be serialized to JSON.
    #[error("the arguments of flow `{flow}` are not JSON: {error}")]
    Arguments {
        /// The flow's name.
        flow: String,
        /// The serializer's message.
        error: String,
    },
    /// The runtime stopped before the named flow ended.
    #[error("flow `{0}` was abandoned before it ended (its runtime stopped)")]
    Aborted(String),
    /// A selective run could not be planned.
    #[error("selective run: {0}")]
    Selective(#[from] SelectiveError),
    /// The root flow had not ended within [`RuntimeBuilder::flow_timeout`]; it was stopped with
    /// its sub-flows and tasks.
    #[error(
        "flow `{flow}` did not end within {} (the runtime's flow_timeout): it was stopped, with its sub-flows and tasks",
        humantime::format_duration(*after)
    )]
    TimedOut {
        /// The flow's name.
        flow: String,
        /// The runtime's `flow_timeout`.
        after: Duration,
    },
}

/// How a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// The flow succeeded: nothing failed that a fallback did not handle.
    Finished,
    /// The flow failed: a node failed unhandled, or eagerly, or the dispatcher failed it.
    Failed,
}

/// The final state of a flow instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowOutcome {
    /// The flow's name.
    pub flow_name: String,
    /// The flow instance's id.
    pub flow_id: String,
    /// How the flow ended.
    pub status: FlowStatus,
    /// The flow's arguments at the end (changed by `node_args_from_first`).
    pub node_args: Json,
    /// Ids of finished instances per node name (tasks and sub-flows).
    pub finished_nodes: NodeIds,
    /// Ids of failed instances not handled by a fallback.
    pub failed_nodes: NodeIds,
    /// Nodes still running when the flow failed eagerly (abandoned, never waited for).
    pub active_nodes: Vec<NodeRef>,
    /// Flow restarts (`max_retry` of the flow) that happened.
    pub retried_count: u32,
    /// Why the instances of `failed_nodes` failed, by node id (see [`FlowOutcome::failures`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, FailureReason>,
}

impl FlowOutcome {
    /// Whether the flow finished.
    pub fn is_finished(&self) -> bool {
        self.status == FlowStatus::Finished
    }

    /// Whether the flow failed.
    pub fn is_failed(&self) -> bool {
        self.status == FlowStatus::Failed
    }

    /// Ids of the finished instances of a node (empty if none).
    pub fn finished(&self, node: &str) -> &[String] {
        self.finished_nodes
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Ids of the failed instances of a node (empty if none).
    pub fn failed(&self, node: &str) -> &[String] {
        self.failed_nodes
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Why the first failed instance of `node` failed (a task's error text, or a sub-flow's
    /// failed nodes and their reasons), if it failed and its reason is known.
    pub fn failure_reason(&self, node: &str) -> Option<&FailureReason> {
        self.failed(node)
            .iter()
            .find_map(|id| self.failure_reasons.get(id))
    }

    /// The failed nodes and why each failed; its `Display` reads `Node: reason; …`.
    pub fn failures(&self) -> FlowFailure {
        FlowFailure::of(&self.failed_nodes, &self.failure_reasons)
    }

    /// The results of the finished instances of task `N` in this flow, typed, read from the
    /// task's storage in `pool` (see [`Runtime::results`] and the AMQP client's `results`).
    pub async fn results<N: TaskNode>(
        &self,
        pool: &StoragePool,
    ) -> Result<Vec<OutputOf<N>>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        let mut out = Vec::new();
        for id in self.finished(N::NAME) {
            out.push(self.read::<N>(pool, id).await?);
        }
        Ok(out)
    }

    /// The stored result of instance `id` of task `N` of this flow, typed.
    async fn read<N: TaskNode>(
        &self,
        pool: &StoragePool,
        id: &str,
    ) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        decode_result::<N>(pool.retrieve(&self.flow_name, N::NAME, id).await?)
    }

    /// The result of task `N` in this flow (its first finished instance), typed; an error when
    /// it did not finish.
    pub async fn result<N: TaskNode>(&self, pool: &StoragePool) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        let Some(id) = self.finished(N::NAME).first() else {
            return Err(ResultError::NotFinished {
                task: N::NAME.to_string(),
                flow: self.flow_name.clone(),
                finished: self
                    .finished_nodes
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        self.read::<N>(pool, id).await
    }
}

/// A running flow: `.await` it for its [`FlowOutcome`]. The flow runs whether or not the
/// handle is awaited.
#[derive(Debug)]
pub struct FlowHandle {
    flow_name: String,
    flow_id: String,
    state: HandleState,
}

#[derive(Debug)]
enum HandleState {
    Pending(oneshot::Receiver<Result<FlowOutcome, RunError>>),
    Error(Option<RunError>),
}

impl FlowHandle {
    /// A handle whose flow could not start.
    fn failed(flow_name: &str, error: RunError) -> FlowHandle {
        FlowHandle {
            flow_name: flow_name.to_string(),
            flow_id: String::new(),
            state: HandleState::Error(Some(error)),
        }
    }

    /// The flow instance's id.
    pub fn id(&self) -> &str {
        &self.flow_id
    }

    /// The flow's name.
    pub fn flow_name(&self) -> &str {
        &self.flow_name
    }
}

impl Future for FlowHandle {
    type Output = Result<FlowOutcome, RunError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let flow_id = self.flow_id.clone();
        match &mut self.state {
            HandleState::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(RunError::Aborted(flow_id)))),
            HandleState::Error(err) => {
                Poll::Ready(Err(err.take().unwrap_or(RunError::Aborted(flow_id))))
            }
        }
    }
}

/// Configures a [`Runtime`]: shared resources for tasks, trace sinks, storage adapters.
pub struct RuntimeBuilder {
    system: &'static SystemSpec,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    sinks: Vec<Arc<dyn TraceSink>>,
    config_trace: bool,
    storages: HashMap<String, Arc<dyn DataStorage>>,
    max_concurrent_tasks: Option<usize>,
    flow_timeout: Option<Duration>,
    max_nodes: usize,
    inline_budget: Duration,
}

impl RuntimeBuilder {
    /// A resource tasks get with [`crate::TaskContext::resource`] (one per type).
    pub fn resource<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.resources.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// A resource already shared elsewhere.
    pub fn resource_arc<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.resources.insert(TypeId::of::<T>(), value);
        self
    }

    /// Another trace sink, besides those of `global.trace`.
    pub fn trace_sink(mut self, sink: impl TraceSink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Ignores `global.trace` (only the sinks given here get events).
    pub fn without_config_trace(mut self) -> Self {
        self.config_trace = false;
        self
    }

    /// Uses this adapter for the storage `name` instead of building it from the spec.
    pub fn storage(mut self, name: impl Into<String>, adapter: impl DataStorage) -> Self {
        self.storages.insert(name.into(), Arc::new(adapter));
        self
    }

    /// As [`RuntimeBuilder::storage`], with a shared adapter.
    pub fn storage_arc(mut self, name: impl Into<String>, adapter: Arc<dyn DataStorage>) -> Self {
        self.storages.insert(name.into(), adapter);
        self
    }

    /// At most `n` task attempts run at once (unbounded by default).
    pub fn max_concurrent_tasks(mut self, n: usize) -> Self {
        self.max_concurrent_tasks = Some(n.max(1));
        self
    }

    /// A root flow (started by [`Runtime::run`]) that has not ended this long after it
    /// was started is stopped, with all its sub-flows and tasks (`nowait` ones included): its
    /// handle gives [`RunError::TimedOut`]. No limit by default.
    pub fn flow_timeout(mut self, after: Duration) -> Self {
        self.flow_timeout = Some(after);
        self
    }

    /// The most nodes one flow instance may start (default
    /// [`crate::engine::DEFAULT_MAX_NODES`]); beyond it the flow fails with an error naming the
    /// edge (a join on a cycle multiplies its instances each round).
    pub fn max_nodes_per_flow(mut self, n: usize) -> Self {
        self.max_nodes = n.max(1);
        self
    }

    /// How long the first polls of the tasks one pass started may take, in all, in the flow's
    /// own tokio task, before the rest are spawned without being polled there (default
    /// 200 µs). A task that ends at its first poll costs no spawn and no wake-up; the budget
    /// keeps long synchronous tasks of one flow running in parallel. `Duration::ZERO` spawns
    /// every task, so that the order of trace events depends on the tasks alone, not on how
    /// long their first polls took (what differential tests compare).
    pub fn inline_polls(mut self, budget: Duration) -> Self {
        self.inline_budget = budget;
        self
    }

    /// The runtime, with its trace sinks (those of `global.trace`, unless turned off, and those added).
    pub fn build(mut self) -> Runtime {
        let mut sinks = if self.config_trace {
            let mut sinks = Tracer::sinks_from_spec(self.system);
            sinks.extend(Tracer::storage_sinks(self.system, &mut self.storages));
            sinks
        } else {
            Vec::new()
        };
        sinks.extend(self.sinks);
        let tracer = Tracer::new(sinks);
        Runtime {
            inner: Arc::new(Inner {
                system: System::new(self.system),
                pool: StoragePool::new(self.system, self.storages, tracer.clone()),
                tracer,
                throttler: Throttler::new(),
                resources: self.resources,
                backend: Mutex::new(HashMap::new()),
                permits: self
                    .max_concurrent_tasks
                    .map(|n| Arc::new(Semaphore::new(n))),
                flow_timeout: self.flow_timeout,
                max_nodes: self.max_nodes,
                inline_budget: self.inline_budget,
                stopped: AtomicBool::new(false),
                roots: Mutex::default(),
                live: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }
}

/// Runs flows in this process. Cheap to clone; must be used inside a tokio runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("system", &self.inner.system.spec.files)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the defaults: storages from the spec, trace sinks from `global.trace`.
    pub fn new(system: &'static SystemSpec) -> Self {
        Runtime::builder(system).build()
    }

    /// A builder for a runtime of `system`.
    pub fn builder(system: &'static SystemSpec) -> RuntimeBuilder {
        RuntimeBuilder {
            system,
            resources: HashMap::new(),
            sinks: Vec::new(),
            config_trace: true,
            storages: HashMap::new(),
            max_concurrent_tasks: None,
            flow_timeout: None,
            max_nodes: crate::engine::DEFAULT_MAX_NODES,
            inline_budget: INLINE_BUDGET,
        }
    }

    /// The tables the runtime was built from.
    pub fn system(&self) -> &'static SystemSpec {
        self.inner.system.spec
    }

    /// Starts a flow (upstream `run_flow`) by its handle, the `FLOW` of its generated module;
    /// `.await` the handle for its final state. The arguments are what the flow's starting
    /// tasks take (their `Task::Args`); `FLOW.untyped()` takes anything that serializes.
    pub fn run<M, A>(&self, flow: &spec::Flow<M>, node_args: A) -> FlowHandle
    where
        M: Takes<A> + ?Sized,
        A: Serialize,
    {
        let flow = flow.spec();
        match self.resolve(flow, node_args) {
            Ok((flow, node_args)) => self.start_root(flow, node_args, None),
            Err(e) => FlowHandle::failed(flow.name, e),
        }
    }

    /// Starts a flow by its YAML name: for tools that take the name from a user (a CLI, an
    /// HTTP endpoint). Rust code names the flow's handle instead ([`Runtime::run`]).
    pub fn run_flow_by_name(&self, flow_name: &str, node_args: Json) -> FlowHandle {
        match self.inner.system.flow(flow_name) {
            Some(flow) => self.start_root(flow, node_args, None),
            None => FlowHandle::failed(flow_name, self.unknown_flow(flow_name)),
        }
    }

    fn unknown_flow(&self, name: &str) -> RunError {
        RunError::UnknownFlow {
            name: name.to_string(),
            known: self.inner.system.flow_names(),
        }
    }

    /// The indexed flow of a handle, and the arguments as JSON.
    fn resolve(
        &self,
        flow: &'static FlowSpec,
        node_args: impl Serialize,
    ) -> Result<(&Flow, Json), RunError> {
        let indexed = self
            .inner
            .system
            .flow_of(flow)
            .ok_or_else(|| self.unknown_flow(flow.name))?;
        let node_args = serde_json::to_value(node_args).map_err(|e| RunError::Arguments {
            flow: flow.name.to_string(),
            error: e.to_string(),
        })?;
        Ok((indexed, node_args))
    }

    /// Runs only what leads to `task_names` (upstream `run_flow_selective`, spec §3.16): the
    /// edges on paths from the flow's start to those tasks; a task on such a path that was not
    /// asked for runs unless its `selective_run_function` names an earlier run to reuse.
    /// `follow_subflows` also looks for the tasks inside sub-flows; `run_subsequent` also runs
    /// what follows the named tasks. An unknown task, or one no path leads to, is an error.
    pub fn run_selective<M, A>(
        &self,
        flow: &spec::Flow<M>,
        task_names: &[&str],
        node_args: A,
        follow_subflows: bool,
        run_subsequent: RunSubsequent,
    ) -> FlowHandle
    where
        M: Takes<A> + ?Sized,
        A: Serialize,
    {
        let flow = flow.spec();
        match self.resolve(flow, node_args) {
            Ok((flow, node_args)) => {
                self.start_selective(flow, task_names, node_args, follow_subflows, run_subsequent)
            }
            Err(e) => FlowHandle::failed(flow.name, e),
        }
    }

    /// [`Runtime::run_selective`] by the flow's YAML name, for tools.
    pub fn run_selective_by_name(
        &self,
        flow_name: &str,
        task_names: &[&str],
        node_args: Json,
        follow_subflows: bool,
        run_subsequent: RunSubsequent,
    ) -> FlowHandle {
        match self.inner.system.flow(flow_name) {
            Some(flow) => {
                self.start_selective(flow, task_names, node_args, follow_subflows, run_subsequent)
            }
            None => FlowHandle::failed(flow_name, self.unknown_flow(flow_name)),
        }
    }

    fn start_selective(
        &self,
        flow: &Flow,
        task_names: &[&str],
        node_args: Json,
        follow_subflows: bool,
        run_subsequent: RunSubsequent,
    ) -> FlowHandle {
        let tasks: Vec<String> = task_names.iter().map(|t| t.to_string()).collect();
        match SelectiveMap::compute(
            &self.inner.system,
            flow.name(),
            &tasks,
            follow_subflows,
            &run_subsequent,
        ) {
            Ok(map) => self.start_root(flow, node_args, Some(map)),
            Err(e) => FlowHandle::failed(flow.name(), RunError::Selective(e)),
        }
    }

    fn start_root(
        &self,
        flow: &Flow,
        node_args: Json,
        selective: Option<SelectiveMap>,
    ) -> FlowHandle {
        let flow_id = engine::random_id();
        let flow_name = flow.name();
        self.inner.tracer.emit_with(TraceEvent::FlowSchedule, || {
            json!({
                "flow_name": flow_name,
                "node_args": node_args,
                "dispatcher_id": flow_id,
                "queue": flow.spec.queue,
            })
        });
        let (tx, rx) = oneshot::channel();
        let mut message = DispatcherMessage::new(flow_name, flow_id.clone(), node_args, Json::Null);
        message.selective = selective;
        spawn_root_flow(self.inner.clone(), message, tx);
        FlowHandle {
            flow_name: flow_name.to_string(),
            flow_id,
            state: HandleState::Pending(rx),
        }
    }

    /// The stored result of a task instance (e.g. an id from [`FlowOutcome::finished`]).
    pub async fn task_result(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.inner
            .pool
            .retrieve(flow_name, task_name, task_id)
            .await
    }

    /// The result of task `N` in a flow's outcome, typed:
    /// `rt.result::<flows::tasks::Report>(&outcome).await?`.
    pub async fn result<N: TaskNode>(
        &self,
        outcome: &FlowOutcome,
    ) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        outcome.result::<N>(&self.inner.pool).await
    }

    /// The results of every finished instance of task `N` in a flow's outcome, typed.
    pub async fn results<N: TaskNode>(
        &self,
        outcome: &FlowOutcome,
    ) -> Result<Vec<OutputOf<N>>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        outcome.results::<N>(&self.inner.pool).await
    }

    /// The connected adapter of a storage.
    pub async fn storage(&self, name: &str) -> Result<Arc<dyn DataStorage>, StorageError> {
        self.inner.pool.get_connected_storage(name).await
    }

    /// Waits until no flow or task this runtime started is running: root flows, their
    /// sub-flows and tasks, and also `nowait` nodes and nodes abandoned by an eager failure,
    /// which run on after their flow ended.
    pub async fn wait_idle(&self) {
        self.inner.wait_idle().await;
    }

    /// Stops every flow and task this runtime started (their handles give
    /// [`RunError::Aborted`]; a task's code is dropped at its next `.await`), waits until they
    /// have stopped, then disconnects the storages. Flows started afterwards are aborted at once.
    pub async fn shutdown(&self) {
        self.inner.stop_all();
        self.inner.wait_idle().await;
        self.inner.pool.disconnect_all().await;
    }
}

struct Inner {
    system: System,
    pool: StoragePool,
    tracer: Tracer,
    throttler: Throttler,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Results of ended sub-flows by flow id, with the id of their root flow (dropped when
    /// the root ends).
    backend: Mutex<HashMap<String, (String, FlowResult)>>,
    permits: Option<Arc<Semaphore>>,
    flow_timeout: Option<Duration>,
    max_nodes: usize,
    /// See [`RuntimeBuilder::inline_polls`].
    inline_budget: Duration,
    /// Set by [`Runtime::shutdown`]: root flows started afterwards stop at once.
    stopped: AtomicBool,
    /// The stop signal of every root flow whose flows or tasks may still run.
    roots: Mutex<Roots>,
    /// Spawned flow instances and tasks not yet ended (see [`Live`]).
    live: AtomicUsize,
    /// Notified when `live` drops to zero.
    idle: Notify,
}

impl Inner {
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one spawned flow instance or task in [`Inner::live`] while it exists; the spawned
/// future borrows the runtime from it.
struct Live(Arc<Inner>);

impl Live {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.live.fetch_add(1, Ordering::AcqRel);
        Live(inner.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The stop signal of one root flow, shared by its sub-flows and tasks: set by the root's
/// timeout or by [`Runtime::shutdown`]. Checking it is an atomic load, and only work that
/// waits registers to be woken by it: a task that ends at its first poll pays two atomic
/// operations for it.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    notify: Notify,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// The stop signals of root flows, for [`Runtime::shutdown`]; dead entries are dropped as the
/// list grows.
#[derive(Default)]
struct Roots {
    list: Vec<std::sync::Weak<Stop>>,
    prune_at: usize,
}

impl Inner {
    /// A stop signal for a new root flow: already set when the runtime was shut down.
    fn new_root(&self) -> Arc<Stop> {
        let root = Arc::new(Stop::default());
        {
            let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
            if roots.list.len() >= roots.prune_at {
                roots.list.retain(|w| w.strong_count() > 0);
                roots.prune_at = (roots.list.len() * 2).max(64);
            }
            roots.list.push(Arc::downgrade(&root));
        }
        // Either `stop_all` sees this root in the list, or this sees its flag.
        if self.stopped.load(Ordering::SeqCst) {
            root.set();
        }
        root
    }

    /// Stops every root flow, running or to come, with its sub-flows and tasks.
    fn stop_all(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        for root in roots.list.iter().filter_map(std::sync::Weak::upgrade) {
            root.set();
        }
    }
}

/// Runs `work` unless or until `root` is stopped; the stop is checked at every poll, before the
/// work. The work stays where the caller pinned it (task and flow futures are large: moving
/// them costs more than the rest).
async fn until_stopped<F: Future>(root: &Stop, mut work: Pin<&mut F>) -> Option<F::Output> {
    // Created before the first check: a `set` after this point completes it.
    let notified = root.notify.notified();
    tokio::pin!(notified);
    std::future::poll_fn(|cx| {
        if root.is_set() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // Only `Stop::set` notifies: ready means stopped.
        notified.as_mut().poll(cx).map(|()| None)
    })
    .await
}

#[async_trait]
impl EngineEnv for Inner {
    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.pool.retrieve(flow_name, task_name, task_id).await
    }

    async fn flow_result(&self, _flow_name: &str, flow_id: &str) -> Option<FlowResult> {
        self.backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(flow_id)
            .map(|(_, r)| r.clone())
    }

    fn storage_pool(&self) -> Option<&StoragePool> {
        Some(&self.pool)
    }

    fn throttle(&self, node: &str, is_flow: bool, interval: Duration) -> Duration {
        self.throttler.countdown(node, is_flow, interval)
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    fn max_nodes(&self) -> usize {
        self.max_nodes
    }
}

impl TaskEnv for Inner {
    fn storages(&self) -> &StoragePool {
        &self.pool
    }

    fn resource(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.resources.get(&type_id).cloned()
    }
}

/// Where a flow reports its end.
enum Report {
    /// The caller of `run_flow` (through the flow's return value).
    Root,
    /// The parent flow, as a node event.
    Child(mpsc::UnboundedSender<NodeEvent>),
    /// Nobody (a `nowait` sub-flow).
    Nobody,
}

/// Spawns a root flow with its stop signal and its timeout; its outcome (or why it has none)
/// goes to `tx`.
fn spawn_root_flow(
    inner: Arc<Inner>,
    message: DispatcherMessage,
    tx: oneshot::Sender<Result<FlowOutcome, RunError>>,
) {
    let live = Live::new(&inner);
    // Boxed: the flow's future is large, and spawning moves a pointer instead of copying it.
    tokio::spawn(Box::pin(async move {
        let inner = &live.0;
        let root = inner.new_root();
        let root_id = message.flow_id.clone();
        let flow_name = message.flow_name.clone();
        let run = std::pin::pin!(run_flow_instance(
            inner,
            message,
            Report::Root,
            root_id.clone(),
            &root
        ));
        let result = match inner.flow_timeout {
            None => until_stopped(&root, run).await.flatten(),
            Some(after) => match tokio::time::timeout(after, until_stopped(&root, run)).await {
                Ok(outcome) => outcome.flatten(),
                Err(_) => {
                    // Stops the sub-flows and tasks of this flow, wherever they are.
                    root.set();
                    let _ = tx.send(Err(RunError::TimedOut {
                        flow: flow_name,
                        after,
                    }));
                    return drop_sub_flow_results(inner, &root_id);
                }
            },
        };
        drop_sub_flow_results(inner, &root_id);
        let _ = tx.send(result.ok_or(RunError::Aborted(root_id)));
    }));
}

/// Forgets the results of the ended sub-flows of a root flow that ended.
fn drop_sub_flow_results(inner: &Inner, root_id: &str) {
    inner
        .backend
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|_, (root, _)| root != root_id);
}

/// Spawns a sub-flow of a root flow; it ends early when the root or the runtime stops.
fn spawn_flow(
    inner: &Arc<Inner>,
    message: DispatcherMessage,
    countdown: Duration,
    report: Report,
    root_id: String,
    root: &Arc<Stop>,
) {
    let live = Live::new(inner);
    let root = root.clone();
    // Boxed, as a root flow's.
    tokio::spawn(Box::pin(async move {
        let inner = &live.0;
        let work = std::pin::pin!(async {
            if !countdown.is_zero() {
                tokio::time::sleep(countdown).await;
            }
            run_flow_instance(inner, message, report, root_id, &root).await;
        });
        until_stopped(&root, work).await;
    }));
}

/// The channel on which a flow hears of the ends of the tasks and sub-flows it waits for,
/// made when the first of them is spawned (a flow whose tasks all end at their first poll
/// never needs one).
#[derive(Default)]
struct Inbox(
    Option<(
        mpsc::UnboundedSender<NodeEvent>,
        mpsc::UnboundedReceiver<NodeEvent>,
    )>,
);

impl Inbox {
    fn sender(&mut self) -> &mpsc::UnboundedSender<NodeEvent> {
        &self.0.get_or_insert_with(mpsc::unbounded_channel).0
    }

    /// Moves the ends already received to `events`.
    fn drain(&mut self, events: &mut Vec<NodeEvent>) {
        if let Some((_, rx)) = &mut self.0 {
            while let Ok(e) = rx.try_recv() {
                events.push(e);
            }
        }
    }

    /// The next end (never `None` while the flow holds the sender).
    async fn recv(&mut self) -> Option<NodeEvent> {
        self.sender();
        match &mut self.0 {
            Some((_, rx)) => rx.recv().await,
            None => None,
        }
    }
}

/// The single writer of one flow instance's state: a pass per batch of completions. Returns
/// the outcome of a root flow (`None` for sub-flows, or when the flow was stopped).
///
/// The tasks a pass starts are polled here first, one after another: a task that ends at its
/// first poll (the usual case for short tasks) costs no spawn, no channel message and no
/// wakeup of another thread, and its end goes into the next pass directly. A task that has to
/// wait is spawned as it is and reports through the flow's channel; so is every task after
/// the first polls of a batch took [`INLINE_BUDGET`] (long synchronous tasks still run in
/// parallel on the runtime's threads).
async fn run_flow_instance(
    inner: &Arc<Inner>,
    mut message: DispatcherMessage,
    report: Report,
    root_id: String,
    root: &Arc<Stop>,
) -> Option<FlowOutcome> {
    let mut inbox = Inbox::default();
    let mut events: Vec<NodeEvent> = Vec::new();
    let mut started: Vec<Started> = Vec::new();
    let mut ended: Vec<NodeEvent> = Vec::new();
    loop {
        if root.is_set() {
            return None;
        }
        let out = engine::dispatch_owned(&inner.system, message, &events, &**inner).await;
        message = out.message;
        if let PassOutcome::RetryPass { countdown } = out.outcome {
            tokio::time::sleep(countdown).await;
            inbox.drain(&mut events);
            continue;
        }
        for action in out.actions {
            execute(inner, action, &mut inbox, &root_id, root, &mut started);
        }
        if !started.is_empty() {
            run_started(inner, &mut started, &mut inbox, &mut ended).await;
        }
        match out.outcome {
            PassOutcome::Running => {
                events.clear();
                events.append(&mut ended);
                if events.is_empty() {
                    match inbox.recv().await {
                        Some(e) => events.push(e),
                        None => return None,
                    }
                } else {
                    // Passes that follow each other without waiting still give way to other
                    // work (and to the root's timeout) when the scheduler's budget is spent.
                    tokio::task::coop::consume_budget().await;
                }
                inbox.drain(&mut events);
            }
            PassOutcome::Restart { countdown } => {
                events.clear();
                // Ends of the abandoned attempt's nodes are not for the new attempt.
                ended.clear();
                if !countdown.is_zero() {
                    tokio::time::sleep(countdown).await;
                }
                let mut stale = Vec::new();
                inbox.drain(&mut stale);
            }
            PassOutcome::RetryPass { .. } => unreachable!("handled above"),
            PassOutcome::Finished(result) => {
                return end_flow(
                    inner,
                    message,
                    FlowStatus::Finished,
                    result,
                    report,
                    &root_id,
                );
            }
            PassOutcome::Failed(result) => {
                return end_flow(inner, message, FlowStatus::Failed, result, report, &root_id);
            }
        }
    }
}

/// How long the first polls of the tasks a pass started may take, in all, before the rest are
/// spawned without being polled in the flow's own tokio task.
const INLINE_BUDGET: Duration = Duration::from_micros(200);

/// A task a pass started, not yet polled: its run is boxed so that it can be polled in the
/// flow's tokio task and then spawned without being moved.
struct Started {
    run: Pin<Box<dyn Future<Output = Option<NodeEvent>> + Send>>,
    /// Whether the flow waits for its end (not `nowait`).
    report: bool,
}

/// Polls each started task once, in the flow's tokio task: the ends of those that end go to
/// `ended`; the others are spawned and report through `tx`.
async fn run_started(
    inner: &Arc<Inner>,
    started: &mut Vec<Started>,
    inbox: &mut Inbox,
    ended: &mut Vec<NodeEvent>,
) {
    let t0 = std::time::Instant::now();
    let budget = inner.inline_budget;
    let mut inline = !budget.is_zero();
    std::future::poll_fn(|cx| {
        for Started { mut run, report } in started.drain(..) {
            if inline {
                match run.as_mut().poll(cx) {
                    Poll::Ready(event) => {
                        if let (Some(event), true) = (event, report) {
                            ended.push(event);
                        }
                    }
                    Poll::Pending => spawn_task(inner, run, report.then(|| inbox.sender().clone())),
                }
                inline = t0.elapsed() < budget;
            } else {
                spawn_task(inner, run, report.then(|| inbox.sender().clone()));
            }
        }
        Poll::Ready(())
    })
    .await;
}

/// Runs a started task in a tokio task of its own; its end goes to `report`.
fn spawn_task(
    inner: &Arc<Inner>,
    run: Pin<Box<dyn Future<Output = Option<NodeEvent>> + Send>>,
    report: Option<mpsc::UnboundedSender<NodeEvent>>,
) {
    let live = Live::new(inner);
    tokio::spawn(async move {
        let event = run.await;
        if let (Some(event), Some(tx)) = (event, report) {
            let _ = tx.send(event);
        }
        drop(live);
    });
}

/// Reports a flow's end; returns the outcome of a root flow (the caller of `run_flow` gets it,
/// and the root's sub-flow results are dropped, in [`spawn_root_flow`]).
fn end_flow(
    inner: &Inner,
    message: DispatcherMessage,
    status: FlowStatus,
    result: FlowResult,
    report: Report,
    root_id: &str,
) -> Option<FlowOutcome> {
    match report {
        Report::Root => {
            return Some(FlowOutcome {
                flow_name: message.flow_name,
                flow_id: message.flow_id,
                status,
                node_args: message.node_args,
                finished_nodes: result.finished_nodes,
                failed_nodes: result.failed_nodes,
                active_nodes: result.active_nodes,
                retried_count: message.retried_count,
                failure_reasons: result.failure_reasons,
            });
        }
        Report::Child(parent) => {
            let id = message.flow_id.clone();
            let event = match status {
                FlowStatus::Finished => NodeEvent::finished(&id),
                FlowStatus::Failed => {
                    NodeEvent::failed_because(&id, FailureReason::Flow(result.failure()))
                }
            };
            inner
                .backend
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, (root_id.to_string(), result));
            // The parent may have ended already (eager failure): nobody listens then.
            let _ = parent.send(event);
        }
        Report::Nobody => {}
    }
    None
}

fn execute(
    inner: &Arc<Inner>,
    action: Action,
    inbox: &mut Inbox,
    root_id: &str,
    root: &Arc<Stop>,
    started: &mut Vec<Started>,
) {
    match action {
        Action::StartTask {
            message,
            countdown,
            nowait,
            ..
        } => {
            let task_inner = inner.clone();
            let root = root.clone();
            // Boxed: polled in place here, then spawned as it is if it has to wait.
            let run = Box::pin(async move {
                let inner = &task_inner;
                let task = std::pin::pin!(run_task(inner, message, countdown, &root));
                until_stopped(&root, task).await.flatten()
            });
            if countdown.is_zero() {
                started.push(Started {
                    run,
                    report: !nowait,
                });
            } else {
                spawn_task(inner, run, (!nowait).then(|| inbox.sender().clone()));
            }
        }
        Action::StartFlow {
            message,
            countdown,
            nowait,
            ..
        } => {
            let report = if nowait {
                Report::Nobody
            } else {
                Report::Child(inbox.sender().clone())
            };
            spawn_flow(
                inner,
                *message,
                countdown,
                report,
                root_id.to_string(),
                root,
            );
        }
    }
}

/// Runs a task's attempts (retries after their countdowns); its final status, `None` when
/// stopped.
async fn run_task(
    inner: &Arc<Inner>,
    mut message: TaskMessage,
    countdown: Duration,
    root: &Stop,
) -> Option<NodeEvent> {
    let mut wait = countdown;
    let event = loop {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let _permit = match &inner.permits {
            Some(p) => p.clone().acquire_owned().await.ok(),
            None => None,
        };
        // Stopped while it waited (its countdown, a permit, or its turn to run).
        if root.is_set() {
            return None;
        }
        let env: Arc<dyn TaskEnv> = inner.clone();
        let attempt =
            envelope::run_attempt(&inner.system, &inner.pool, &inner.tracer, &message, env);
        // User code is already guarded in the envelope; this guards adapters and sinks too,
        // so that a flow always hears of its task.
        let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::Failed {
                error: "the task envelope panicked (storage adapter or trace sink)".into(),
            },
        };
        match outcome {
            AttemptOutcome::Succeeded => break NodeEvent::finished(&message.task_id),
            AttemptOutcome::Failed { error } => {
                break NodeEvent::failed_because(&message.task_id, FailureReason::Error(error))
            }
            AttemptOutcome::Retry {
                countdown,
                retried_count,
                ..
            } => {
                message.retried_count = retried_count;
                wait = countdown;
            }
        }
    };
    Some(event)
}
