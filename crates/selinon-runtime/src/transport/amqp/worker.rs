//! A worker process: consumes task and dispatcher queues, runs tasks and dispatcher passes.
//!
//! # How a flow advances
//!
//! A task message is acknowledged only after everything it caused is safe:
//!
//! 1. the task runs (its result goes to its storage) — unless the message may repeat one
//!    already handled (the broker redelivered it, or it was published again from an outbox)
//!    and the backend has the task's end: then it is not run again;
//! 2. the worker runs the flow's dispatcher pass right away, on the event "this task ended"
//!    (no event message, no polling): [`crate::engine::dispatch_owned`] on the record it kept
//!    from the flow's last pass here (or read), then one commit: the change to the record,
//!    the task's end mark and the pass's outbox, if the record's version did not change (else
//!    it reads what other workers wrote since and redoes the pass);
//! 3. the outbox is published with confirms (and cleared in the background);
//! 4. the task message is acknowledged.
//!
//! Passes of one flow run one at a time in a worker; the task ends that arrive while one runs
//! go into the next together (a group commit), so a wide fan-in costs a few passes, not one
//! per node.
//!
//! A worker killed at any step leaves the message unacknowledged; the broker gives it to
//! another worker, which resumes: a finished task is not run again, an applied event is not
//! applied again, a committed outbox is published again. A task may run twice (killed
//! between 1 and the commit of 2), never zero times. Sub-flow ends, flow starts and flow
//! restarts travel as messages on the flow's dispatcher queue and go through the same
//! pass-commit-publish-ack steps.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::broker::{is_republished, Broker, BrokerError, DelayQueues, FLOW_ENDED_EXCHANGE};
use super::wire::{Body, ParentRef};
use crate::backend::{
    self, BackendError, Commit, Confirmed, FlowBackend, FlowDelta, FlowRecord, NodeTiming,
    Outgoing, RecordStatus, RecordWrite,
};
use crate::engine::{
    self, Action, DispatcherMessage, EngineEnv, FailureReason, FlowResult, NodeEvent, NodeStatus,
    PassOutcome, TaskMessage, Throttler,
};
use crate::envelope::{self, AttemptOutcome};
use crate::spec::SystemSpec;
use crate::storage::{expand_env, StoragePool};
use crate::storage::{DataStorage, StorageError};
use crate::system::System;
use crate::task::TaskEnv;
use crate::trace::{TraceSink, Tracer};

/// Why a message could not be handled now (it is requeued and handled again).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The broker failed (unreachable, or a publish was not confirmed).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The flow-state backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The pass that was to apply the message failed (for all the messages it applied).
    #[error(transparent)]
    Pass(Arc<HandleError>),
    /// The pass that was to apply the message was interrupted (a panic in it).
    #[error("the dispatcher pass was interrupted")]
    Interrupted,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A queue name could not be expanded (a `{VAR}` placeholder is not set).
    #[error("queue name of {what}: {error}")]
    Queue {
        /// The task or flow whose queue it is.
        what: String,
        /// What is wrong with it.
        error: String,
    },
    /// The worker was asked to consume a queue no task or flow uses.
    #[error("unknown queue `{queue}` (queues of this system: {known})")]
    UnknownQueue {
        /// The queue asked for.
        queue: String,
        /// The system's queues, comma-separated.
        known: String,
    },
    /// The broker could not be reached or set up.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The flow-state backend could not be reached.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Queue names with `{VAR}` placeholders expanded, once per process.
#[derive(Debug, Clone)]
pub(crate) struct Queues {
    tasks: HashMap<&'static str, String>,
    flows: HashMap<&'static str, String>,
}

impl Queues {
    pub fn new(system: &'static SystemSpec) -> Result<Self, WorkerError> {
        let expand = |what: String, q: &str| {
            expand_env(q).map_err(|e| WorkerError::Queue {
                what,
                error: e.to_string(),
            })
        };
        let mut tasks = HashMap::new();
        for t in system.tasks {
            tasks.insert(t.name, expand(format!("task `{}`", t.name), t.queue)?);
        }
        let mut flows = HashMap::new();
        for f in system.flows {
            flows.insert(f.name, expand(format!("flow `{}`", f.name), f.queue)?);
        }
        Ok(Queues { tasks, flows })
    }

    pub fn task(&self, name: &str) -> &str {
        self.tasks.get(name).map(String::as_str).unwrap_or("celery")
    }

    pub fn flow(&self, name: &str) -> &str {
        self.flows.get(name).map(String::as_str).unwrap_or("celery")
    }

    /// Every queue of the system, sorted, without repeats.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tasks
            .values()
            .chain(self.flows.values())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Configures a [`Worker`].
pub struct WorkerBuilder {
    system: &'static SystemSpec,
    amqp_url: String,
    backend: Option<Arc<dyn FlowBackend>>,
    queues: Option<Vec<String>>,
    concurrency: usize,
    resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    sinks: Vec<Arc<dyn TraceSink>>,
    config_trace: bool,
    storages: HashMap<String, Arc<dyn DataStorage>>,
    name: String,
    delay_queues: DelayQueues,
    max_nodes: usize,
    flow_cache: usize,
}

impl WorkerBuilder {
    pub(crate) fn new(system: &'static SystemSpec) -> Self {
        WorkerBuilder {
            system,
            amqp_url: super::broker::amqp_url_from_env(),
            backend: None,
            queues: None,
            concurrency: 16,
            resources: HashMap::new(),
            sinks: Vec::new(),
            config_trace: true,
            storages: HashMap::new(),
            name: format!("selinon-worker-{}", std::process::id()),
            delay_queues: DelayQueues::default(),
            max_nodes: crate::engine::DEFAULT_MAX_NODES,
            flow_cache: DEFAULT_FLOW_CACHE,
        }
    }

    /// The broker (default: env `AMQP_URL`, else `amqp://127.0.0.1:5672/%2f`).
    pub fn amqp_url(mut self, url: impl Into<String>) -> Self {
        self.amqp_url = url.into();
        self
    }

    /// The flow-state backend shared by all workers (see [`super::RedisBackend`]).
    pub fn backend(mut self, backend: Arc<dyn FlowBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Consumes only these queues (default: every task and dispatcher queue of the system).
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Messages handled at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// A resource tasks get with [`crate::TaskContext::resource`].
    pub fn resource<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.resources.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// Also sends trace events to `sink` (besides the sinks of `global.trace`).
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

    /// Delay queue settings (the defaults suit production; tests shorten the expiry).
    pub fn delay_queues(mut self, delays: DelayQueues) -> Self {
        self.delay_queues = delays;
        self
    }

    /// The most nodes one flow instance may start (default
    /// [`crate::engine::DEFAULT_MAX_NODES`]); beyond it the flow fails with an error naming the
    /// edge, and the message that caused it goes to the dead-letter queue with that reason.
    pub fn max_nodes_per_flow(mut self, n: usize) -> Self {
        self.max_nodes = n.max(1);
        self
    }

    /// How many flows' records the worker keeps in memory between their passes (default
    /// [`DEFAULT_FLOW_CACHE`]). A pass that starts from a kept record reads nothing from the
    /// backend unless another worker wrote the flow since; an ended flow is forgotten at once,
    /// and beyond this many the least recently used are.
    pub fn flow_cache(mut self, flows: usize) -> Self {
        self.flow_cache = flows.max(1);
        self
    }

    /// The connection name shown by RabbitMQ.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The worker; fails if a queue name cannot be expanded, a chosen queue is no queue of the
    /// system, or no flow-state backend was given.
    pub fn build(mut self) -> Result<Worker, WorkerError> {
        let queues = Queues::new(self.system)?;
        let consume = match self.queues {
            Some(chosen) => {
                let all = queues.all();
                for q in &chosen {
                    if !all.contains(q) {
                        return Err(WorkerError::UnknownQueue {
                            queue: q.clone(),
                            known: all.join(", "),
                        });
                    }
                }
                chosen
            }
            None => queues.all(),
        };
        let backend = self.backend.ok_or_else(|| BackendError {
            backend: "none",
            message: "a distributed worker needs a flow-state backend: \
                      `.backend(Arc::new(RedisBackend::connect(url).await?))`"
                .into(),
        })?;
        for s in self.system.storages {
            let in_memory = matches!(
                s.adapter,
                crate::spec::StorageAdapter::Builtin {
                    class: "InMemoryStorage",
                    ..
                }
            );
            if in_memory && !self.storages.contains_key(s.name) {
                tracing::warn!(
                    "storage `{}` ({}) is in memory: each worker process has its own, so \
                     results are not shared between workers",
                    s.name,
                    s.origin
                );
            }
        }
        let mut sinks = if self.config_trace {
            let mut sinks = Tracer::sinks_from_spec(self.system);
            sinks.extend(Tracer::storage_sinks(self.system, &mut self.storages));
            sinks
        } else {
            Vec::new()
        };
        sinks.extend(self.sinks);
        let tracer = Tracer::new(sinks);
        let (clearer, confirmed) = mpsc::unbounded_channel();
        Ok(Worker {
            confirmed: Mutex::new(Some(confirmed)),
            shared: Arc::new(Shared {
                slots: FlowSlots::new(self.flow_cache),
                clearer,
                system: System::new(self.system),
                broker: Broker::new(self.amqp_url, self.name).with_delay_queues(self.delay_queues),
                backend,
                pool: StoragePool::new(self.system, self.storages, tracer.clone()),
                tracer,
                throttler: Throttler::new(),
                resources: self.resources,
                queues,
                max_nodes: self.max_nodes,
            }),
            consume,
            concurrency: self.concurrency,
        })
    }
}

/// A worker: `run_until(shutdown)` consumes until `shutdown` resolves, reconnecting when the
/// broker goes away.
pub struct Worker {
    shared: Arc<Shared>,
    /// Confirmed outboxes, for the task that clears them (taken when the worker runs).
    confirmed: Mutex<Option<mpsc::UnboundedReceiver<Confirmed>>>,
    consume: Vec<String>,
    concurrency: usize,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.consume)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub system: System,
    pub broker: Broker,
    pub backend: Arc<dyn FlowBackend>,
    pub pool: StoragePool,
    pub tracer: Tracer,
    pub throttler: Throttler,
    pub resources: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub queues: Queues,
    pub max_nodes: usize,
    pub slots: FlowSlots,
    pub clearer: mpsc::UnboundedSender<Confirmed>,
}

impl Worker {
    /// A builder for a worker of `system`.
    pub fn builder(system: &'static SystemSpec) -> WorkerBuilder {
        WorkerBuilder::new(system)
    }

    /// The queues this worker consumes.
    pub fn queues(&self) -> &[String] {
        &self.consume
    }

    /// Runs until Ctrl-C or SIGTERM.
    pub async fn run(self) -> Result<(), WorkerError> {
        self.run_until(shutdown_signal()).await
    }

    /// Consumes until `shutdown` resolves, then stops taking messages and waits for the ones
    /// in hand.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let (stop_clearing, clearing_stopped) = oneshot::channel();
        let clearing = lock(&self.confirmed).take().map(|rx| {
            tokio::spawn(clear_outboxes(
                self.shared.backend.clone(),
                rx,
                clearing_stopped,
            ))
        });
        let prefetch = u16::try_from(self.concurrency * 2).unwrap_or(u16::MAX);
        tokio::pin!(shutdown);
        let mut wait = Duration::from_millis(100);
        'connect: loop {
            let link = tokio::select! {
                _ = &mut shutdown => break 'connect,
                link = self.shared.broker.link_with_retry(Duration::from_secs(3600)) => link?,
            };
            let setup = async {
                let channel = link.connection.create_channel().await.map_err(|e| {
                    self.shared
                        .broker
                        .error(format!("cannot open a channel: {e}"))
                })?;
                channel
                    .basic_qos(prefetch, BasicQosOptions::default())
                    .await
                    .map_err(|e| self.shared.broker.error(format!("basic_qos: {e}")))?;
                self.shared.broker.declare_common(&link).await?;
                let mut consumers = Vec::new();
                for queue in &self.consume {
                    self.shared
                        .broker
                        .declare(&link, queue, FieldTable::default())
                        .await?;
                    let consumer = channel
                        .basic_consume(
                            queue,
                            "",
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| {
                            self.shared
                                .broker
                                .error(format!("cannot consume `{queue}`: {e}"))
                        })?;
                    consumers.push((queue.clone(), consumer));
                }
                Ok::<_, BrokerError>((channel, consumers))
            };
            let (channel, consumers) = match setup.await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("{e}; reconnecting in {wait:?}");
                    self.shared.broker.drop_link(&link).await;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            wait = Duration::from_millis(100);
            tracing::info!(queues = ?self.consume, "worker consuming");
            let tags: Vec<String> = consumers.iter().map(|(_, c)| c.tag().to_string()).collect();
            let mut merged = futures::stream::select_all(
                consumers
                    .into_iter()
                    .map(|(queue, c)| c.map(move |d| (queue.clone(), d))),
            );
            loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        for tag in &tags {
                            let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                        }
                        // Messages in hand are acknowledged on this channel: wait for them.
                        let _ = permits.acquire_many(self.concurrency as u32).await;
                        let _ = channel.close(200, "bye").await;
                        break 'connect;
                    }
                    next = merged.next() => match next {
                        Some((queue, Ok(delivery))) => {
                            let permit = permits.clone().acquire_owned().await.expect("never closed");
                            let shared = self.shared.clone();
                            tokio::spawn(async move {
                                shared.handle_delivery(&queue, delivery).await;
                                drop(permit);
                            });
                        }
                        Some((queue, Err(e))) => {
                            tracing::warn!("consuming `{queue}` failed: {e}; reconnecting");
                            break;
                        }
                        None => {
                            tracing::warn!("the broker closed the consumers; reconnecting");
                            break;
                        }
                    }
                }
            }
            self.shared.broker.drop_link(&link).await;
            tokio::time::sleep(wait).await;
        }
        // Wait for the messages in hand, then for the last outboxes to be cleared.
        let _ = permits.acquire_many(self.concurrency as u32).await;
        let _ = stop_clearing.send(());
        if let Some(clearing) = clearing {
            let _ = clearing.await;
        }
        self.shared.pool.disconnect_all().await;
        self.shared.broker.close().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What a message asks for, as input to [`Shared::advance`].
enum Step {
    Start {
        message: Box<DispatcherMessage>,
        report_to: Option<ParentRef>,
    },
    Events(Vec<NodeEvent>),
    Kick(u32),
}

impl Step {
    /// The message that asks for this step.
    fn body(&self, flow_name: &str, flow_id: &str, trigger: &str) -> Body {
        match self {
            Step::Start { message, report_to } => Body::Start {
                message: message.clone(),
                report_to: report_to.clone(),
            },
            Step::Events(events) => Body::Event {
                flow_name: flow_name.to_string(),
                flow_id: flow_id.to_string(),
                id: trigger.to_string(),
                events: events.clone(),
            },
            Step::Kick(retried_count) => Body::Kick {
                flow_name: flow_name.to_string(),
                flow_id: flow_id.to_string(),
                retried_count: *retried_count,
            },
        }
    }
}

/// A step waiting for its flow's next pass, with the task mark it brings and where to say
/// that it is done.
struct Queued {
    trigger: String,
    step: Step,
    /// The task whose end the step reports (marked in the same commit).
    mark: Option<(String, NodeStatus)>,
    done: oneshot::Sender<Result<(), Arc<HandleError>>>,
}

/// The last committed record of a flow, as this worker wrote or read it.
struct Cached {
    version: u64,
    record: FlowRecord,
    /// Entries written as deltas since the last snapshot (see [`backend::snapshot_due`]).
    delta_entries: usize,
}

#[derive(Default)]
struct SlotInner {
    /// A pump runs this flow's passes.
    busy: bool,
    queue: VecDeque<Queued>,
    cached: Option<Cached>,
    /// When the slot was last used (a counter), to evict the least recent idle slots.
    used: u64,
}

/// One flow this worker passes for: passes of a flow run one at a time here, on the record
/// the last one committed, and the steps that arrive while one runs go into the next pass
/// together (a group commit).
#[derive(Default)]
struct FlowSlot {
    inner: Mutex<SlotInner>,
}

/// The flows this worker passes for, at most `capacity` of them kept when idle.
pub(crate) struct FlowSlots {
    slots: Mutex<HashMap<String, Arc<FlowSlot>>>,
    capacity: usize,
    clock: AtomicU64,
}

/// The default of [`WorkerBuilder::flow_cache`].
pub const DEFAULT_FLOW_CACHE: usize = 4096;

/// At most this many steps go into one pass.
const MAX_BATCH: usize = 512;

impl FlowSlots {
    pub(crate) fn new(capacity: usize) -> Self {
        FlowSlots {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
        }
    }

    fn slot(&self, flow_id: &str) -> Arc<FlowSlot> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(flow_id) {
            lock(&slot.inner).used = now;
            return slot.clone();
        }
        if slots.len() >= self.capacity {
            Self::evict(&mut slots, self.capacity);
        }
        let slot = Arc::new(FlowSlot::default());
        lock(&slot.inner).used = now;
        slots.insert(flow_id.to_string(), slot.clone());
        slot
    }

    /// Drops the least recently used idle slots, down to three quarters of `capacity`.
    fn evict(slots: &mut HashMap<String, Arc<FlowSlot>>, capacity: usize) {
        let mut idle: Vec<(u64, String)> = slots
            .iter()
            .filter_map(|(id, slot)| {
                let inner = lock(&slot.inner);
                (!inner.busy && inner.queue.is_empty()).then(|| (inner.used, id.clone()))
            })
            .collect();
        let excess = slots.len().saturating_sub(capacity * 3 / 4);
        idle.sort_unstable();
        for (_, id) in idle.into_iter().take(excess) {
            slots.remove(&id);
        }
    }

    /// Forgets an ended flow.
    fn remove(&self, flow_id: &str, slot: &Arc<FlowSlot>) {
        let mut slots = lock(&self.slots);
        if slots.get(flow_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            let inner = lock(&slot.inner);
            if inner.queue.is_empty() {
                drop(inner);
                slots.remove(flow_id);
            }
        }
    }

    /// How many flows are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.slots).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Clears a slot's `busy` flag however its pump ends (a panic included): the steps still
/// queued are dropped, so their messages are requeued and handled again.
struct PumpGuard(Arc<FlowSlot>);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        let mut inner = lock(&self.0.inner);
        if inner.busy {
            inner.busy = false;
            inner.queue.clear();
            inner.cached = None;
        }
    }
}

impl Shared {
    async fn handle_delivery(self: &Arc<Self>, queue: &str, delivery: lapin::message::Delivery) {
        let handled = match self.broker.delay_rest(queue, &delivery).await {
            Ok(true) => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(false) => self.handle_body(queue, &delivery).await,
        };
        if let Err(e) = handled {
            // The message stays: requeued after a pause, handled again.
            tracing::warn!("{e}; the message is requeued");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await;
            return;
        }
        if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
            // The broker redelivers it; the steps above are idempotent.
            tracing::warn!("ack failed: {e}");
        }
    }

    /// Handles a message whose delay (if any) is over; a poison message goes to the
    /// dead-letter queue.
    async fn handle_body(
        self: &Arc<Self>,
        queue: &str,
        delivery: &lapin::message::Delivery,
    ) -> Result<(), String> {
        match Body::decode(&delivery.data, &self.system) {
            Ok(body) => self
                .handle(body, is_republished(delivery))
                .await
                .map_err(|e| e.to_string()),
            Err(reason) => {
                tracing::error!(
                    queue,
                    "poison message: {reason}; moved to the dead-letter queue"
                );
                self.broker
                    .dead_letter(&delivery.data, queue, &reason)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Handles a message; `repeated` when it may repeat work already done (redelivered, or
    /// published again from an outbox).
    async fn handle(self: &Arc<Self>, body: Body, repeated: bool) -> Result<(), HandleError> {
        match body {
            Body::Task { message, report } => self.run_task(message, report, repeated).await,
            Body::Start { message, report_to } => {
                let flow_name = message.flow_name.clone();
                let flow_id = message.flow_id.clone();
                self.advance(
                    &flow_name,
                    &flow_id,
                    "start",
                    Step::Start { message, report_to },
                    None,
                )
                .await
            }
            Body::Event {
                flow_name,
                flow_id,
                id,
                events,
            } => {
                self.advance(&flow_name, &flow_id, &id, Step::Events(events), None)
                    .await
            }
            Body::Kick {
                flow_name,
                flow_id,
                retried_count,
            } => {
                let trigger = format!("restart-{retried_count}");
                self.advance(
                    &flow_name,
                    &flow_id,
                    &trigger,
                    Step::Kick(retried_count),
                    None,
                )
                .await
            }
        }
    }

    async fn run_task(
        self: &Arc<Self>,
        mut message: TaskMessage,
        report: bool,
        repeated: bool,
    ) -> Result<(), HandleError> {
        let mut why = None;
        // Only a message that may repeat one already handled can find its task marked: a
        // first delivery skips the read.
        let known = if repeated {
            self.backend
                .task_status(&message.dispatcher_id, &message.task_id)
                .await?
        } else {
            None
        };
        let (status, ran) = match known {
            Some(status) => {
                tracing::debug!(task_id = %message.task_id, "task already ran; not run again");
                (status, false)
            }
            None => {
                let env: Arc<dyn TaskEnv> = self.clone();
                let attempt =
                    envelope::run_attempt(&self.system, &self.pool, &self.tracer, &message, env);
                let outcome =
                    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(attempt))
                        .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => AttemptOutcome::Failed {
                            error: "the task envelope panicked (storage adapter or trace sink)"
                                .into(),
                        },
                    };
                let status = match outcome {
                    AttemptOutcome::Succeeded => NodeStatus::Finished,
                    AttemptOutcome::Failed { error } => {
                        why = Some(FailureReason::Error(error.clone()));
                        let reason = format!(
                            "task `{}` failed for good after {} retries: {error}",
                            message.task_name, message.retried_count
                        );
                        let body = Body::Task {
                            message: message.clone(),
                            report,
                        };
                        self.broker
                            .dead_letter(
                                &body.encode(),
                                self.queues.task(&message.task_name),
                                &reason,
                            )
                            .await?;
                        NodeStatus::Failed
                    }
                    AttemptOutcome::Retry {
                        countdown,
                        retried_count,
                        ..
                    } => {
                        message.retried_count = retried_count;
                        let out = Outgoing {
                            exchange: String::new(),
                            routing_key: self.queues.task(&message.task_name).to_string(),
                            body: String::from_utf8(Body::Task { message, report }.encode())
                                .expect("JSON is UTF-8"),
                            delay_ms: countdown.as_millis() as u64,
                            durable: true,
                        };
                        self.broker.publish_all(&[out]).await?;
                        return Ok(());
                    }
                };
                (status, true)
            }
        };
        if !report {
            if ran {
                self.backend
                    .set_task_status(&message.dispatcher_id, &message.task_id, status)
                    .await?;
            }
            return Ok(());
        }
        let event = NodeEvent {
            id: message.task_id.clone(),
            status,
            reason: why,
        };
        // The mark is written with the pass that applies the end (one atomic step).
        let mark = ran.then(|| (message.task_id.clone(), status));
        self.advance(
            &message.flow_name,
            &message.dispatcher_id,
            &message.task_id,
            Step::Events(vec![event]),
            mark,
        )
        .await
    }

    /// Publishes what a committed pass left for `trigger`, if it is still there.
    async fn republish(&self, flow_id: &str, trigger: &str) -> Result<(), HandleError> {
        if let Some(outbox) = self.backend.outbox(flow_id, trigger).await? {
            self.broker.republish_all(&outbox).await?;
            self.confirmed(flow_id, vec![trigger.to_string()]);
        }
        Ok(())
    }

    /// An outbox the broker confirmed: cleared in the background, many in one round trip.
    fn confirmed(&self, flow_id: &str, triggers: Vec<String>) {
        let _ = self.clearer.send(Confirmed {
            flow_id: flow_id.to_string(),
            triggers,
        });
    }

    fn outgoing(&self, routing_key: &str, body: &Body, delay: Duration) -> Outgoing {
        Outgoing {
            exchange: String::new(),
            routing_key: routing_key.to_string(),
            body: String::from_utf8(body.encode()).expect("JSON is UTF-8"),
            delay_ms: delay.as_millis() as u64,
            durable: true,
        }
    }

    /// Runs `step` in the flow's next pass (with the steps that arrive meanwhile) and waits
    /// until that pass is committed and its outbox confirmed.
    async fn advance(
        self: &Arc<Self>,
        flow_name: &str,
        flow_id: &str,
        trigger: &str,
        step: Step,
        mark: Option<(String, NodeStatus)>,
    ) -> Result<(), HandleError> {
        let slot = self.slots.slot(flow_id);
        let (done, result) = oneshot::channel();
        let start_pump = {
            let mut inner = lock(&slot.inner);
            inner.queue.push_back(Queued {
                trigger: trigger.to_string(),
                step,
                mark,
                done,
            });
            !std::mem::replace(&mut inner.busy, true)
        };
        if start_pump && self.pump_batch(flow_name, flow_id, &slot).await {
            // This caller ran its own step's pass (the usual, uncontended case: no task
            // spawned, no wake-up); the steps that queued up meanwhile get a pump of their own.
            let this = self.clone();
            let (flow_name, flow_id) = (flow_name.to_string(), flow_id.to_string());
            tokio::spawn(async move { this.pump(&flow_name, &flow_id, slot).await });
        }
        match result.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HandleError::Pass(e)),
            Err(_) => Err(HandleError::Pass(Arc::new(HandleError::Interrupted))),
        }
    }

    /// Runs a flow's passes while steps are queued for it.
    async fn pump(self: Arc<Self>, flow_name: &str, flow_id: &str, slot: Arc<FlowSlot>) {
        let _guard = PumpGuard(slot.clone());
        while self.pump_batch(flow_name, flow_id, &slot).await {}
    }

    /// Runs one pass for the next steps queued for a flow and tells each of them how it went;
    /// `false` when no step is left (the slot is then idle).
    async fn pump_batch(&self, flow_name: &str, flow_id: &str, slot: &Arc<FlowSlot>) -> bool {
        let (batch, cached) = {
            let mut inner = lock(&slot.inner);
            let Some(first) = inner.queue.pop_front() else {
                inner.busy = false;
                return false;
            };
            let mut items = vec![first];
            if matches!(items[0].step, Step::Events(_)) {
                while items.len() < MAX_BATCH
                    && matches!(inner.queue.front(), Some(q) if matches!(q.step, Step::Events(_)))
                {
                    items.extend(inner.queue.pop_front());
                }
            }
            (items, inner.cached.take())
        };
        let run = std::panic::AssertUnwindSafe(self.pass(flow_name, flow_id, &batch, cached));
        let (result, cached, ended) = match futures::FutureExt::catch_unwind(run).await {
            Ok(Ok((cached, ended))) => (Ok(()), cached, ended),
            Ok(Err(e)) => (Err(Arc::new(e)), None, false),
            Err(panic) => {
                tracing::error!(
                    flow_name,
                    flow_id,
                    "the dispatcher pass panicked: {}",
                    engine::panic_message(&*panic)
                );
                (Err(Arc::new(HandleError::Interrupted)), None, false)
            }
        };
        lock(&slot.inner).cached = cached;
        for item in batch {
            let _ = item.done.send(result.clone());
        }
        if ended {
            self.slots.remove(flow_id, slot);
        }
        let mut inner = lock(&slot.inner);
        if inner.queue.is_empty() {
            inner.busy = false;
            false
        } else {
            true
        }
    }

    /// The flow's record: the cached one brought up to date by the deltas written since, or
    /// read whole.
    async fn fresh(
        &self,
        flow_id: &str,
        cached: Option<Cached>,
    ) -> Result<Option<Cached>, HandleError> {
        let since = cached.as_ref().map(|c| c.version);
        let Some(loaded) = self.backend.read(flow_id, since).await? else {
            return Ok(None);
        };
        let (mut record, mut delta_entries) = match (loaded.snapshot, cached) {
            (Some(snapshot), _) => (snapshot, 0),
            (None, Some(c)) => (c.record, c.delta_entries),
            (None, None) => {
                return Err(BackendError {
                    backend: self.backend.name(),
                    message: format!("flow {flow_id}: deltas without a snapshot"),
                }
                .into())
            }
        };
        for delta in loaded.deltas {
            delta_entries += delta.entries();
            record.apply(delta).map_err(|e| BackendError {
                backend: self.backend.name(),
                message: format!("flow {flow_id}: {e}"),
            })?;
        }
        Ok(Some(Cached {
            version: loaded.version,
            record,
            delta_entries,
        }))
    }

    /// One dispatcher pass for the steps of `batch`, committed with optimistic concurrency,
    /// then its outbox published. Starts from `cached` (the record this worker committed
    /// last) and reads only what changed since when that turns out to be stale: a commit
    /// against a stale version fails, and the pass is redone on the record brought up to
    /// date. Returns the record committed (to start the next pass from) and whether the flow
    /// ended.
    async fn pass(
        &self,
        flow_name: &str,
        flow_id: &str,
        batch: &[Queued],
        mut cached: Option<Cached>,
    ) -> Result<(Option<Cached>, bool), HandleError> {
        let first = &batch[0];
        // Whether `cached` is known to be current. A flow's start reads nothing: its commit
        // fails if the flow exists.
        let mut verified = false;
        if cached.is_none() && !matches!(first.step, Step::Start { .. }) {
            verified = true;
            cached = self.fresh(flow_id, None).await?;
        }
        loop {
            // The steps that found nothing to do: their outboxes (if any) are published again.
            let mut stale: Vec<&Queued> = Vec::new();
            let (old, expected, delta_entries) = match (&first.step, cached) {
                (Step::Start { .. }, Some(c)) => {
                    cached = Some(c);
                    stale.push(first);
                    return self.finish_stale(flow_id, &stale, cached).await;
                }
                (Step::Start { message, report_to }, None) => {
                    let now = now_ms();
                    let record = FlowRecord {
                        message: (**message).clone(),
                        report_to: report_to.clone(),
                        status: RecordStatus::Running,
                        result: None,
                        created_ms: now,
                        updated_ms: now,
                        timings: BTreeMap::new(),
                    };
                    (record, None, 0)
                }
                (_, None) if !verified => {
                    verified = true;
                    cached = self.fresh(flow_id, None).await?;
                    continue;
                }
                (_, None) => {
                    tracing::warn!(
                        flow_name,
                        flow_id,
                        "no record of this flow (ended long ago?); message dropped"
                    );
                    return Ok((None, false));
                }
                (_, Some(c)) if c.record.status != RecordStatus::Running => {
                    cached = Some(c);
                    stale.extend(batch.iter());
                    return self.finish_stale(flow_id, &stale, cached).await;
                }
                (Step::Kick(retried_count), Some(c)) => {
                    let fresh = c.record.message.state.as_ref().is_none_or(|s| s.is_fresh());
                    if c.record.message.retried_count != *retried_count || !fresh {
                        cached = Some(c);
                        if !verified {
                            verified = true;
                            cached = self.fresh(flow_id, cached).await?;
                            continue;
                        }
                        stale.push(first);
                        return self.finish_stale(flow_id, &stale, cached).await;
                    }
                    (c.record, Some(c.version), c.delta_entries)
                }
                (Step::Events(_), Some(c)) => (c.record, Some(c.version), c.delta_entries),
            };
            let events: Vec<NodeEvent> = batch
                .iter()
                .flat_map(|q| match &q.step {
                    Step::Events(events) => events.as_slice(),
                    _ => &[],
                })
                .cloned()
                .collect();
            let FlowRecord {
                message: input,
                report_to,
                created_ms,
                updated_ms,
                mut timings,
                ..
            } = old;
            // Tests check every delta against the record it stands for.
            let checked_input = cfg!(debug_assertions).then(|| input.clone());
            let out = engine::dispatch_owned(&self.system, input, &events, self).await;
            let keep = |message: DispatcherMessage, timings| Cached {
                version: expected.unwrap_or_default(),
                record: FlowRecord {
                    message,
                    report_to: report_to.clone(),
                    status: RecordStatus::Running,
                    result: None,
                    created_ms,
                    updated_ms,
                    timings,
                },
                delta_entries,
            };
            let failure = out.failure.clone();
            if let PassOutcome::RetryPass { countdown } = out.outcome {
                // Nothing was decided: the same steps again later (the message is the input).
                let queue = self.queues.flow(flow_name).to_string();
                let countdown = countdown.max(engine::MIN_PASS_RETRY);
                let again: Vec<Outgoing> = batch
                    .iter()
                    .map(|q| {
                        let body = q.step.body(flow_name, flow_id, &q.trigger);
                        self.outgoing(&queue, &body, countdown)
                    })
                    .collect();
                self.broker.publish_all(&again).await?;
                let kept = expected.map(|_| keep(out.message, timings));
                return Ok((kept, false));
            }

            // The ids of the nodes that ended in the pass (`None`: the pass ended or restarted
            // the flow, and took every step), and the steps it applied: those with an event
            // for such a node.
            let ended: Option<HashSet<&str>> = match (&first.step, &out.changes) {
                (Step::Events(_), Some(changes)) if changes.is_incremental() => {
                    Some(changes.ended().into_iter().collect())
                }
                _ => None,
            };
            let applies =
                |e: &NodeEvent| ended.as_ref().is_none_or(|ids| ids.contains(e.id.as_str()));
            let (applied, others): (Vec<&Queued>, Vec<&Queued>) =
                batch.iter().partition(|q| match &q.step {
                    Step::Events(events) => ended.is_none() || events.iter().any(applies),
                    _ => true,
                });
            stale = others;
            if applied.is_empty() {
                // Nothing changed: the events are old news, unless this record is.
                let message = match out.changes {
                    Some(changes) => changes.restore(out.message),
                    None => out.message,
                };
                cached = Some(keep(message, timings));
                if !verified {
                    verified = true;
                    cached = self.fresh(flow_id, cached).await?;
                    continue;
                }
                return self.finish_stale(flow_id, &stale, cached).await;
            }

            let now = now_ms();
            // The timings this pass sets, with what they were (to undo on a conflict).
            let mut touched: Vec<(String, Option<NodeTiming>)> = Vec::new();
            let ended_ids = events.iter().filter(|e| applies(e));
            for e in ended_ids {
                let mut t = timings.get(&e.id).cloned().unwrap_or_default();
                t.ended_ms = Some(now);
                t.status = Some(e.status);
                touched.push((e.id.clone(), timings.insert(e.id.clone(), t)));
            }
            for action in &out.actions {
                let (name, id) = match action {
                    Action::StartTask { message, .. } => (&message.task_name, &message.task_id),
                    Action::StartFlow { message, .. } => (&message.flow_name, &message.flow_id),
                };
                let timing = NodeTiming {
                    node: name.clone(),
                    scheduled_ms: now,
                    ended_ms: None,
                    status: None,
                };
                touched.push((id.clone(), timings.insert(id.clone(), timing)));
            }
            let mut outbox = Vec::with_capacity(out.actions.len() + 1);
            for action in out.actions {
                match action {
                    Action::StartTask {
                        message,
                        countdown,
                        nowait,
                        ..
                    } => {
                        let queue = self.queues.task(&message.task_name).to_string();
                        let body = Body::Task {
                            message,
                            report: !nowait,
                        };
                        outbox.push(self.outgoing(&queue, &body, countdown));
                    }
                    Action::StartFlow {
                        message,
                        parent_flow_id,
                        countdown,
                        nowait,
                        ..
                    } => {
                        let queue = self.queues.flow(&message.flow_name).to_string();
                        let body = Body::Start {
                            message,
                            report_to: (!nowait).then(|| ParentRef {
                                flow_name: flow_name.to_string(),
                                flow_id: parent_flow_id,
                            }),
                        };
                        outbox.push(self.outgoing(&queue, &body, countdown));
                    }
                }
            }
            let mut record = FlowRecord {
                message: out.message,
                report_to: report_to.clone(),
                status: RecordStatus::Running,
                result: None,
                created_ms,
                updated_ms: now,
                timings,
            };
            let ended = |status: NodeStatus, reason: Option<FailureReason>| -> Vec<Outgoing> {
                match &report_to {
                    Some(parent) => {
                        let body = Body::Event {
                            flow_name: parent.flow_name.clone(),
                            flow_id: parent.flow_id.clone(),
                            id: flow_id.to_string(),
                            events: vec![NodeEvent {
                                id: flow_id.to_string(),
                                status,
                                reason,
                            }],
                        };
                        vec![self.outgoing(
                            self.queues.flow(&parent.flow_name),
                            &body,
                            Duration::ZERO,
                        )]
                    }
                    None => vec![Outgoing {
                        exchange: FLOW_ENDED_EXCHANGE.to_string(),
                        routing_key: String::new(),
                        body: json!({
                            "flow_name": flow_name,
                            "flow_id": flow_id,
                            "status": match status {
                                NodeStatus::Finished => "finished",
                                NodeStatus::Failed => "failed",
                            },
                        })
                        .to_string(),
                        delay_ms: 0,
                        durable: false,
                    }],
                }
            };
            match out.outcome {
                PassOutcome::Running => {}
                PassOutcome::Finished(result) => {
                    record.status = RecordStatus::Finished;
                    record.result = Some(result);
                    outbox.extend(ended(NodeStatus::Finished, None));
                }
                PassOutcome::Failed(result) => {
                    record.status = RecordStatus::Failed;
                    let reason = FailureReason::Flow(result.failure());
                    record.result = Some(result);
                    outbox.extend(ended(NodeStatus::Failed, Some(reason)));
                }
                PassOutcome::Restart { countdown } => {
                    let body = Body::Kick {
                        flow_name: flow_name.to_string(),
                        flow_id: flow_id.to_string(),
                        retried_count: record.message.retried_count,
                    };
                    outbox.push(self.outgoing(self.queues.flow(flow_name), &body, countdown));
                }
                PassOutcome::RetryPass { .. } => unreachable!("handled above"),
            }
            let flow_ended = record.status != RecordStatus::Running;

            // What to write: the delta, unless only a snapshot says it or one is due.
            let touched_ids: Vec<String> = touched.iter().map(|(id, _)| id.clone()).collect();
            let delta = match (&out.changes, expected) {
                (Some(changes), Some(_)) => FlowDelta::from_changes(changes, &record, &touched_ids),
                _ => None,
            }
            .filter(|d| !backend::snapshot_due(record.entries(), delta_entries + d.entries()));
            if let (Some(delta), Some(input)) = (&delta, &checked_input) {
                let mut replayed = keep(input.clone(), BTreeMap::new());
                replayed.record.timings = record.timings.clone();
                for (id, before) in &touched {
                    match before {
                        Some(t) => replayed.record.timings.insert(id.clone(), t.clone()),
                        None => replayed.record.timings.remove(id),
                    };
                }
                replayed
                    .record
                    .apply(delta.clone())
                    .expect("the delta applies");
                assert_eq!(replayed.record, record, "the delta stands for the record");
            }
            let write = match &delta {
                Some(delta) => RecordWrite::Delta(delta),
                None => RecordWrite::Snapshot(&record),
            };
            let triggers: Vec<String> = applied.iter().map(|q| q.trigger.clone()).collect();
            let marks: Vec<(String, NodeStatus)> =
                applied.iter().filter_map(|q| q.mark.clone()).collect();
            let committed = self
                .backend
                .commit(&Commit {
                    flow_id,
                    expected,
                    write,
                    ended: flow_ended,
                    triggers: &triggers,
                    outbox: &outbox,
                    task_marks: &marks,
                })
                .await?;
            if !committed {
                // Another worker wrote this flow meanwhile: bring the record up to date and
                // redo the pass.
                verified = true;
                let Some(changes) = out.changes.filter(|c| c.is_incremental()) else {
                    cached = self.fresh(flow_id, None).await?;
                    continue;
                };
                let FlowRecord {
                    message,
                    mut timings,
                    ..
                } = record;
                for (id, before) in touched.into_iter().rev() {
                    match before {
                        Some(t) => timings.insert(id, t),
                        None => timings.remove(&id),
                    };
                }
                let restored = changes.restore(message);
                if let Some(input) = &checked_input {
                    assert_eq!(&restored, input, "the pass's changes undo to its input");
                }
                let previous = keep(restored, timings);
                cached = self.fresh(flow_id, Some(previous)).await?;
                continue;
            }
            self.broker.publish_all(&outbox).await?;
            if !outbox.is_empty() {
                self.confirmed(flow_id, triggers);
            }
            if let Some(reason) = failure {
                // The flow failed for a reason of its own (not a node's): a copy of what
                // triggered the pass goes to the dead-letter queue with that reason.
                tracing::error!(
                    flow_name,
                    flow_id,
                    "the dispatcher failed the flow: {reason}"
                );
                let queue = self.queues.flow(flow_name).to_string();
                for item in &applied {
                    let body = item.step.body(flow_name, flow_id, &item.trigger).encode();
                    if let Err(e) = self.broker.dead_letter(&body, &queue, &reason).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            let version = expected.map_or(1, |v| v + 1);
            let delta_entries = match &delta {
                Some(d) => delta_entries + d.entries(),
                None => 0,
            };
            let next = (!flow_ended).then_some(Cached {
                version,
                record,
                delta_entries,
            });
            return self
                .finish_stale(flow_id, &stale, next)
                .await
                .map(|(c, _)| (c, flow_ended));
        }
    }

    /// Publishes again the outboxes of steps that found nothing to do (a redelivered
    /// message whose pass was committed already) and writes their task marks.
    async fn finish_stale(
        &self,
        flow_id: &str,
        stale: &[&Queued],
        cached: Option<Cached>,
    ) -> Result<(Option<Cached>, bool), HandleError> {
        for item in stale {
            self.republish(flow_id, &item.trigger).await?;
            if let Some((task, status)) = &item.mark {
                self.backend.set_task_status(flow_id, task, *status).await?;
            }
        }
        Ok((cached, false))
    }
}

/// Clears confirmed outboxes in the background: whatever gathered while the last batch was
/// being cleared goes in the next, in one round trip.
async fn clear_outboxes(
    backend: Arc<dyn FlowBackend>,
    mut confirmed: mpsc::UnboundedReceiver<Confirmed>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = confirmed.recv_many(&mut batch, 1024) => n == 0,
            _ = &mut stop => {
                while let Ok(c) = confirmed.try_recv() {
                    batch.push(c);
                }
                true
            }
        };
        if !batch.is_empty() {
            if let Err(e) = backend.clear_outboxes(&batch).await {
                tracing::warn!("{e} (those outboxes stay until their flows' records expire)");
            }
            batch.clear();
        }
        if stopping {
            return;
        }
    }
}

#[async_trait]
impl EngineEnv for Shared {
    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        self.pool.retrieve(flow_name, task_name, task_id).await
    }

    async fn flow_result(&self, _flow_name: &str, flow_id: &str) -> Option<FlowResult> {
        match self.backend.load(flow_id).await {
            Ok(Some(v)) => v.record.result,
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
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

impl TaskEnv for Shared {
    fn storages(&self) -> &StoragePool {
        &self.pool
    }

    fn resource(&self, type_id: TypeId) -> Option<Arc<dyn Any + Send + Sync>> {
        self.resources.get(&type_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flows_a_worker_keeps_stay_within_its_cache_size() {
        let slots = FlowSlots::new(8);
        // A flow whose pass runs is never dropped, however many flows come after it.
        let busy = slots.slot("busy");
        lock(&busy.inner).busy = true;
        for i in 0..10_000 {
            slots.slot(&format!("flow-{i}"));
            assert!(slots.len() <= 9, "{} flows kept", slots.len());
        }
        assert!(Arc::ptr_eq(&slots.slot("busy"), &busy));
        // Recently used flows stay; an ended one is forgotten at once.
        let recent = slots.slot("flow-9999");
        slots.remove("flow-9999", &recent);
        assert!(!Arc::ptr_eq(&slots.slot("flow-9999"), &recent));
    }
}
