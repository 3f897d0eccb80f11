//! The in-process runtime: the embedded default. Tokio tasks and channels, no server.
//!
//! Each flow instance is one tokio task that owns the flow's state (the single state writer)
//! and runs a dispatcher pass ([`crate::engine::dispatch`]) whenever completions of its nodes
//! arrive on its channel; completions that arrive together are handled in one pass. Tasks run
//! as tokio tasks that report their final status to their flow's channel; a sub-flow reports
//! its end to its parent flow's channel. Countdowns (throttling, retries) are timers, not
//! blocked workers. Queues are kept in traces but play no part in-process.
//!
//! ```no_run
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> Result<(), selinon_runtime::RunError> {
//! let rt = selinon_runtime::Runtime::new(system);
//! let outcome = rt.run_flow("flow1", serde_json::json!({"name": "world"})).await?;
//! assert!(outcome.is_finished(), "failed nodes: {:?}", outcome.failed_nodes);
//! # Ok(()) }
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::engine::{
    self, Action, DispatcherMessage, EngineEnv, FlowResult, NodeEvent, NodeIds, NodeRef,
    NodeStatus, PassOutcome, TaskMessage, Throttler,
};
use crate::envelope::{self, AttemptOutcome};
use crate::spec::{BoxFuture, SystemSpec};
use crate::storage::{DataStorage, StorageError};
use crate::storages::StoragePool;
use crate::task::TaskEnv;
use crate::trace::{TraceEvent, TraceSink, Tracer};

/// Why a flow could not be run to an end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("unknown flow `{name}` (flows: {known})")]
    UnknownFlow { name: String, known: String },
    #[error("flow `{0}` was abandoned before it ended (its runtime stopped)")]
    Aborted(String),
}

/// How a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    Finished,
    Failed,
}

/// The final state of a flow instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowOutcome {
    pub flow_name: String,
    pub flow_id: String,
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
}

impl FlowOutcome {
    pub fn is_finished(&self) -> bool {
        self.status == FlowStatus::Finished
    }

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
    Pending(oneshot::Receiver<FlowOutcome>),
    Error(Option<RunError>),
}

impl FlowHandle {
    /// The flow instance's id.
    pub fn id(&self) -> &str {
        &self.flow_id
    }

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
                .map(|r| r.map_err(|_| RunError::Aborted(flow_id))),
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

    pub fn build(self) -> Runtime {
        let mut sinks = if self.config_trace {
            Tracer::sinks_from_spec(self.system)
        } else {
            Vec::new()
        };
        sinks.extend(self.sinks);
        let tracer = Tracer::new(sinks);
        Runtime {
            inner: Arc::new(Inner {
                system: self.system,
                pool: StoragePool::new(self.system, self.storages, tracer.clone()),
                tracer,
                throttler: Throttler::new(),
                resources: self.resources,
                backend: Mutex::new(HashMap::new()),
                permits: self
                    .max_concurrent_tasks
                    .map(|n| Arc::new(Semaphore::new(n))),
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
            .field("system", &self.inner.system.files)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the defaults: storages from the spec, trace sinks from `global.trace`.
    pub fn new(system: &'static SystemSpec) -> Self {
        Runtime::builder(system).build()
    }

    pub fn builder(system: &'static SystemSpec) -> RuntimeBuilder {
        RuntimeBuilder {
            system,
            resources: HashMap::new(),
            sinks: Vec::new(),
            config_trace: true,
            storages: HashMap::new(),
            max_concurrent_tasks: None,
        }
    }

    pub fn system(&self) -> &'static SystemSpec {
        self.inner.system
    }

    /// Starts a flow (upstream `run_flow`); `.await` the handle for its final state.
    pub fn run_flow(&self, flow_name: &str, node_args: Json) -> FlowHandle {
        let flow_id = uuid::Uuid::new_v4().to_string();
        let Some(flow) = self.inner.system.flow(flow_name) else {
            let known: Vec<&str> = self.inner.system.flows.iter().map(|f| f.name).collect();
            return FlowHandle {
                flow_name: flow_name.to_string(),
                flow_id,
                state: HandleState::Error(Some(RunError::UnknownFlow {
                    name: flow_name.to_string(),
                    known: known.join(", "),
                })),
            };
        };
        self.inner.tracer.emit_with(TraceEvent::FlowSchedule, || {
            json!({
                "flow_name": flow_name,
                "node_args": node_args,
                "dispatcher_id": flow_id,
                "queue": flow.queue,
            })
        });
        let (tx, rx) = oneshot::channel();
        let message = DispatcherMessage::new(flow_name, flow_id.clone(), node_args, Json::Null);
        spawn_flow(
            self.inner.clone(),
            message,
            Duration::ZERO,
            Report::Root(tx),
            flow_id.clone(),
        );
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

    /// The connected adapter of a storage.
    pub async fn storage(&self, name: &str) -> Result<Arc<dyn DataStorage>, StorageError> {
        self.inner.pool.get_connected_storage(name).await
    }

    /// Disconnects the storages.
    pub async fn shutdown(&self) {
        self.inner.pool.disconnect_all().await;
    }
}

struct Inner {
    system: &'static SystemSpec,
    pool: StoragePool,
    tracer: Tracer,
    throttler: Throttler,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Results of ended sub-flows by flow id, with the id of their root flow (dropped when
    /// the root ends).
    backend: Mutex<HashMap<String, (String, FlowResult)>>,
    permits: Option<Arc<Semaphore>>,
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

    fn throttle(&self, node: &str, is_flow: bool, interval: Duration) -> Duration {
        self.throttler.countdown(node, is_flow, interval)
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }
}

impl TaskEnv for Inner {
    fn retrieve<'a>(
        &'a self,
        flow_name: &'a str,
        task_name: &'a str,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Json, StorageError>> {
        Box::pin(self.pool.retrieve(flow_name, task_name, task_id))
    }

    fn resource(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.resources.get(&type_id).cloned()
    }
}

/// Where a flow reports its end.
enum Report {
    /// The caller of `run_flow`.
    Root(oneshot::Sender<FlowOutcome>),
    /// The parent flow, as a node event.
    Child(mpsc::UnboundedSender<NodeEvent>),
    /// Nobody (a `nowait` sub-flow).
    Nobody,
}

fn spawn_flow(
    inner: Arc<Inner>,
    message: DispatcherMessage,
    countdown: Duration,
    report: Report,
    root_id: String,
) {
    tokio::spawn(async move {
        if !countdown.is_zero() {
            tokio::time::sleep(countdown).await;
        }
        run_flow_instance(inner, message, report, root_id).await;
    });
}

fn drain(rx: &mut mpsc::UnboundedReceiver<NodeEvent>, events: &mut Vec<NodeEvent>) {
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
}

/// The single writer of one flow instance's state: a pass per batch of completions.
async fn run_flow_instance(
    inner: Arc<Inner>,
    mut message: DispatcherMessage,
    report: Report,
    root_id: String,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<NodeEvent>();
    let mut events: Vec<NodeEvent> = Vec::new();
    loop {
        let out = engine::dispatch(inner.system, &message, &events, &*inner).await;
        if let PassOutcome::RetryPass { countdown } = out.outcome {
            tokio::time::sleep(countdown).await;
            drain(&mut rx, &mut events);
            continue;
        }
        message = out.message;
        for action in out.actions {
            execute(&inner, action, &tx, &root_id);
        }
        match out.outcome {
            PassOutcome::Running => {
                events.clear();
                match rx.recv().await {
                    Some(e) => events.push(e),
                    None => return,
                }
                drain(&mut rx, &mut events);
            }
            PassOutcome::Restart { countdown } => {
                events.clear();
                if !countdown.is_zero() {
                    tokio::time::sleep(countdown).await;
                }
                // Completions of the abandoned attempt's nodes are not for the new attempt.
                let mut stale = Vec::new();
                drain(&mut rx, &mut stale);
            }
            PassOutcome::RetryPass { .. } => unreachable!("handled above"),
            PassOutcome::Finished(result) => {
                return end_flow(
                    &inner,
                    message,
                    FlowStatus::Finished,
                    result,
                    report,
                    &root_id,
                )
            }
            PassOutcome::Failed(result) => {
                return end_flow(
                    &inner,
                    message,
                    FlowStatus::Failed,
                    result,
                    report,
                    &root_id,
                )
            }
        }
    }
}

fn end_flow(
    inner: &Inner,
    message: DispatcherMessage,
    status: FlowStatus,
    result: FlowResult,
    report: Report,
    root_id: &str,
) {
    match report {
        Report::Root(tx) => {
            inner
                .backend
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (root, _)| root != root_id);
            let _ = tx.send(FlowOutcome {
                flow_name: message.flow_name,
                flow_id: message.flow_id,
                status,
                node_args: message.node_args,
                finished_nodes: result.finished_nodes,
                failed_nodes: result.failed_nodes,
                active_nodes: result.active_nodes,
                retried_count: message.retried_count,
            });
        }
        Report::Child(parent) => {
            let id = message.flow_id.clone();
            inner
                .backend
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), (root_id.to_string(), result));
            let event = match status {
                FlowStatus::Finished => NodeEvent::finished(id),
                FlowStatus::Failed => NodeEvent::failed(id),
            };
            // The parent may have ended already (eager failure): nobody listens then.
            let _ = parent.send(event);
        }
        Report::Nobody => {}
    }
}

fn execute(inner: &Arc<Inner>, action: Action, tx: &mpsc::UnboundedSender<NodeEvent>, root: &str) {
    match action {
        Action::StartTask {
            message,
            countdown,
            nowait,
            ..
        } => {
            let inner = inner.clone();
            let report = (!nowait).then(|| tx.clone());
            tokio::spawn(run_task(inner, message, countdown, report));
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
                Report::Child(tx.clone())
            };
            spawn_flow(inner.clone(), message, countdown, report, root.to_string());
        }
    }
}

/// Runs a task's attempts (retries after their countdowns) and reports its final status.
async fn run_task(
    inner: Arc<Inner>,
    mut message: TaskMessage,
    countdown: Duration,
    report: Option<mpsc::UnboundedSender<NodeEvent>>,
) {
    let mut wait = countdown;
    let status = loop {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let _permit = match &inner.permits {
            Some(p) => p.clone().acquire_owned().await.ok(),
            None => None,
        };
        let env: Arc<dyn TaskEnv> = inner.clone();
        let attempt =
            envelope::run_attempt(inner.system, &inner.pool, &inner.tracer, &message, env);
        // User code is already guarded in the envelope; this guards adapters and sinks too,
        // so that a flow always hears of its task.
        let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::Failed {
                error: "the task envelope panicked (storage adapter or trace sink)".into(),
            },
        };
        match outcome {
            AttemptOutcome::Succeeded => break NodeStatus::Finished,
            AttemptOutcome::Failed { .. } => break NodeStatus::Failed,
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
    if let Some(tx) = report {
        let _ = tx.send(NodeEvent {
            id: message.task_id,
            status,
        });
    }
}
