//! A worker process: consumes task and dispatcher queues, runs tasks and dispatcher passes.
//!
//! # How a flow advances
//!
//! A task message is acknowledged only after everything it caused is safe:
//!
//! 1. the task runs (its result goes to its storage) — unless the backend already has the
//!    task's end (a redelivered duplicate), then it is not run again;
//! 2. its end is marked in the backend (`task_status`);
//! 3. the worker runs the flow's dispatcher pass right away, on the event "this task ended"
//!    (no event message, no polling): read the flow record, [`crate::engine::dispatch`],
//!    commit the new state with its outbox if the record's version did not change (else read
//!    again and redo the pass);
//! 4. the outbox is published with confirms and cleared;
//! 5. the task message is acknowledged.
//!
//! A worker killed at any step leaves the message unacknowledged; the broker gives it to
//! another worker, which resumes: a finished task is not run again, an applied event is not
//! applied again, a committed outbox is published again. A task may run twice (killed
//! between 1 and 2), never zero times. Sub-flow ends, flow starts and flow restarts travel as
//! messages on the flow's dispatcher queue and go through the same pass-commit-publish-ack
//! steps.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use serde_json::{json, Value as Json};
use tokio::sync::Semaphore;

use super::broker::{Broker, BrokerError, DelayQueues, FLOW_ENDED_EXCHANGE};
use super::wire::{Body, ParentRef};
use crate::backend::{BackendError, FlowBackend, FlowRecord, NodeTiming, Outgoing, RecordStatus};
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
        Ok(Worker {
            shared: Arc::new(Shared {
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
        // Wait for the messages in hand.
        let _ = permits.acquire_many(self.concurrency as u32).await;
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
            Ok(body) => self.handle(body).await.map_err(|e| e.to_string()),
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

    async fn handle(self: &Arc<Self>, body: Body) -> Result<(), HandleError> {
        match body {
            Body::Task { message, report } => self.run_task(message, report).await,
            Body::Start { message, report_to } => {
                let flow_name = message.flow_name.clone();
                let flow_id = message.flow_id.clone();
                self.advance(
                    &flow_name,
                    &flow_id,
                    "start",
                    Step::Start { message, report_to },
                )
                .await
            }
            Body::Event {
                flow_name,
                flow_id,
                id,
                events,
            } => {
                self.advance(&flow_name, &flow_id, &id, Step::Events(events))
                    .await
            }
            Body::Kick {
                flow_name,
                flow_id,
                retried_count,
            } => {
                let trigger = format!("restart-{retried_count}");
                self.advance(&flow_name, &flow_id, &trigger, Step::Kick(retried_count))
                    .await
            }
        }
    }

    async fn run_task(
        self: &Arc<Self>,
        mut message: TaskMessage,
        report: bool,
    ) -> Result<(), HandleError> {
        let mut why = None;
        let status = match self.backend.task_status(&message.task_id).await? {
            Some(status) => {
                tracing::debug!(task_id = %message.task_id, "task already ran; not run again");
                status
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
                self.backend
                    .set_task_status(&message.task_id, status)
                    .await?;
                status
            }
        };
        if !report {
            return Ok(());
        }
        let event = NodeEvent {
            id: message.task_id.clone(),
            status,
            reason: why,
        };
        self.advance(
            &message.flow_name,
            &message.dispatcher_id,
            &message.task_id,
            Step::Events(vec![event]),
        )
        .await
    }

    /// Publishes what a committed pass left for `trigger`, if it is still there.
    async fn republish(&self, flow_id: &str, trigger: &str) -> Result<(), HandleError> {
        if let Some(outbox) = self.backend.outbox(flow_id, trigger).await? {
            self.broker.publish_all(&outbox).await?;
            self.backend.clear_outbox(flow_id, trigger).await?;
        }
        Ok(())
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

    /// One dispatcher pass for a flow instance, committed with optimistic concurrency, then
    /// its outbox published.
    async fn advance(
        &self,
        flow_name: &str,
        flow_id: &str,
        trigger: &str,
        step: Step,
    ) -> Result<(), HandleError> {
        loop {
            let current = self.backend.load(flow_id).await?;
            let (input, events, expected, report_to, created_ms, mut timings) =
                match (&step, current) {
                    (Step::Start { message, report_to }, None) => (
                        (**message).clone(),
                        Vec::new(),
                        None,
                        report_to.clone(),
                        now_ms(),
                        BTreeMap::new(),
                    ),
                    (Step::Start { .. }, Some(_)) => return self.republish(flow_id, trigger).await,
                    (_, None) => {
                        tracing::warn!(
                            flow_name,
                            flow_id,
                            "no record of this flow (ended long ago?); message dropped"
                        );
                        return Ok(());
                    }
                    (_, Some(v)) if v.record.status != RecordStatus::Running => {
                        return self.republish(flow_id, trigger).await
                    }
                    (Step::Events(events), Some(v)) => {
                        let active = v
                            .record
                            .message
                            .state
                            .as_ref()
                            .map(|s| s.active_nodes.as_slice())
                            .unwrap_or_default();
                        let relevant: Vec<NodeEvent> = events
                            .iter()
                            .filter(|e| active.iter().any(|n| n.id == e.id))
                            .cloned()
                            .collect();
                        if relevant.is_empty() {
                            return self.republish(flow_id, trigger).await;
                        }
                        (
                            v.record.message,
                            relevant,
                            Some(v.version),
                            v.record.report_to,
                            v.record.created_ms,
                            v.record.timings,
                        )
                    }
                    (Step::Kick(retried_count), Some(v)) => {
                        let fresh = v.record.message.state.as_ref().is_none_or(|s| s.is_fresh());
                        if v.record.message.retried_count != *retried_count || !fresh {
                            return self.republish(flow_id, trigger).await;
                        }
                        (
                            v.record.message,
                            Vec::new(),
                            Some(v.version),
                            v.record.report_to,
                            v.record.created_ms,
                            v.record.timings,
                        )
                    }
                };

            let out = engine::dispatch_owned(&self.system, input, &events, self).await;
            let failure = out.failure.clone();
            if let PassOutcome::RetryPass { countdown } = out.outcome {
                // Nothing was decided: the same step again later.
                let body = step.body(flow_name, flow_id, trigger);
                let queue = self.queues.flow(flow_name).to_string();
                let countdown = countdown.max(engine::MIN_PASS_RETRY);
                self.broker
                    .publish_all(&[self.outgoing(&queue, &body, countdown)])
                    .await?;
                return Ok(());
            }

            let now = now_ms();
            for e in &events {
                let t = timings.entry(e.id.clone()).or_default();
                t.ended_ms = Some(now);
                t.status = Some(e.status);
            }
            let mut outbox = Vec::with_capacity(out.actions.len() + 1);
            for action in &out.actions {
                let (name, id) = match action {
                    Action::StartTask { message, .. } => (&message.task_name, &message.task_id),
                    Action::StartFlow { message, .. } => (&message.flow_name, &message.flow_id),
                };
                timings.insert(
                    id.clone(),
                    NodeTiming {
                        node: name.clone(),
                        scheduled_ms: now,
                        ended_ms: None,
                        status: None,
                    },
                );
            }
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
            if !self
                .backend
                .commit(flow_id, expected, &record, trigger, &outbox)
                .await?
            {
                // Another worker wrote this flow meanwhile: read it again.
                continue;
            }
            self.broker.publish_all(&outbox).await?;
            if !outbox.is_empty() {
                if let Err(e) = self.backend.clear_outbox(flow_id, trigger).await {
                    tracing::warn!("{e} (the outbox expires by itself)");
                }
            }
            if let Some(reason) = failure {
                // The flow failed for a reason of its own (not a node's): a copy of what
                // triggered the pass goes to the dead-letter queue with that reason.
                tracing::error!(
                    flow_name,
                    flow_id,
                    "the dispatcher failed the flow: {reason}"
                );
                let body = step.body(flow_name, flow_id, trigger).encode();
                let queue = self.queues.flow(flow_name).to_string();
                if let Err(e) = self.broker.dead_letter(&body, &queue, &reason).await {
                    tracing::warn!("{e}");
                }
            }
            return Ok(());
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
