//! Submitting flows and asking about them from any process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use tokio::sync::Notify;

use super::broker::{Broker, BrokerError, FLOW_ENDED_EXCHANGE};
use super::wire::Body;
use super::worker::{Queues, WorkerError};
use crate::backend::{BackendError, FlowBackend, FlowRecord, Outgoing, RecordStatus};
use crate::engine::{
    DispatcherMessage, FailureReason, FlowResult, NodeIds, NodeRef, RunSubsequent, SelectiveError,
    SelectiveMap,
};
use crate::spec::{Flow, FlowSpec, SystemSpec, Takes};
use crate::storage::StoragePool;
use crate::system::System;
use crate::task::{OutputOf, ResultError, TaskNode};
use crate::trace::{TraceEvent, Tracer};
use crate::transport::local::{FlowOutcome, FlowStatus};
use serde::de::DeserializeOwned;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    /// The flow did not end within the time waited for it.
    #[error("flow {flow_id} did not end within {after:?} (ask `status` what it is doing)")]
    TimedOut {
        /// The flow instance's id.
        flow_id: String,
        /// How long was waited.
        after: Duration,
    },
    /// The result backend has no record of this flow id.
    #[error("no record of flow {0} (never submitted, or ended more than a day ago)")]
    NoRecord(String),
    /// The broker could not be reached or refused a message.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The result backend could not be read or written.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The client could not be set up (a queue name, the broker or the backend).
    #[error(transparent)]
    Setup(#[from] WorkerError),
    /// A selective run could not be planned.
    #[error("selective run: {0}")]
    Selective(#[from] SelectiveError),
}

/// What a flow instance is doing ("what is my flow doing").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    /// The flow's name.
    pub flow_name: String,
    /// The flow instance's id.
    pub flow_id: String,
    /// Running, finished or failed.
    pub status: RecordStatus,
    /// The flow's arguments.
    pub node_args: Json,
    /// Running nodes (tasks and sub-flows).
    pub active_nodes: Vec<NodeRef>,
    /// Ids of finished instances per node name.
    pub finished_nodes: NodeIds,
    /// Ids of failed instances not handled by a fallback, per node name.
    pub failed_nodes: NodeIds,
    /// Why the instances of `failed_nodes` failed, by node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, FailureReason>,
    /// Flow restarts (`max_retry` of the flow) so far.
    pub retried_count: u32,
    /// When the flow was submitted: milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the record last changed: milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// Per node instance id: when it was scheduled and ended.
    pub timings: std::collections::BTreeMap<String, crate::backend::NodeTiming>,
}

impl FlowReport {
    /// The report of a stored record.
    pub fn from_record(record: FlowRecord) -> Self {
        let state = record.message.state.clone().unwrap_or_default();
        let result = match record.result {
            Some(r) => r,
            None => FlowResult::of_state(&state, state.active_nodes.clone()),
        };
        FlowReport {
            flow_name: record.message.flow_name,
            flow_id: record.message.flow_id,
            status: record.status,
            node_args: record.message.node_args,
            active_nodes: result.active_nodes,
            finished_nodes: result.finished_nodes,
            failed_nodes: result.failed_nodes,
            failure_reasons: result.failure_reasons,
            retried_count: record.message.retried_count,
            created_ms: record.created_ms,
            updated_ms: record.updated_ms,
            timings: record.timings,
        }
    }

    /// The final state, if the flow ended.
    pub fn outcome(&self) -> Option<FlowOutcome> {
        let status = match self.status {
            RecordStatus::Running => return None,
            RecordStatus::Finished => FlowStatus::Finished,
            RecordStatus::Failed => FlowStatus::Failed,
        };
        Some(FlowOutcome {
            flow_name: self.flow_name.clone(),
            flow_id: self.flow_id.clone(),
            status,
            node_args: self.node_args.clone(),
            finished_nodes: self.finished_nodes.clone(),
            failed_nodes: self.failed_nodes.clone(),
            active_nodes: self.active_nodes.clone(),
            retried_count: self.retried_count,
            failure_reasons: self.failure_reasons.clone(),
        })
    }
}

impl std::fmt::Display for FlowReport {
    /// What a terminal shows: the flow, then one line per node instance in scheduling order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            RecordStatus::Running => "running",
            RecordStatus::Finished => "finished",
            RecordStatus::Failed => "failed",
        };
        writeln!(
            f,
            "flow {} {} {status} (retries {}, last change {} ms after its start)",
            self.flow_name,
            self.flow_id,
            self.retried_count,
            self.updated_ms.saturating_sub(self.created_ms)
        )?;
        let mut nodes: Vec<(&String, &crate::backend::NodeTiming)> = self.timings.iter().collect();
        nodes.sort_by_key(|(id, t)| (t.scheduled_ms, (*id).clone()));
        let state_of = |id: &str, name: &str| {
            let has = |m: &NodeIds| m.get(name).is_some_and(|ids| ids.iter().any(|i| i == id));
            if self.active_nodes.iter().any(|n| n.id == id) {
                "running"
            } else if has(&self.failed_nodes) {
                "failed"
            } else if has(&self.finished_nodes) {
                "finished"
            } else {
                "ended"
            }
        };
        for (id, t) in nodes {
            let state = state_of(id, &t.node);
            let since = t.scheduled_ms.saturating_sub(self.created_ms);
            match t.ended_ms {
                Some(end) => writeln!(
                    f,
                    "  {state:<9} {:<24} {id}  scheduled +{since} ms, took {} ms",
                    t.node,
                    end.saturating_sub(t.scheduled_ms)
                )?,
                None => writeln!(f, "  {state:<9} {:<24} {id}  scheduled +{since} ms", t.node)?,
            }
            match self.failure_reasons.get(id.as_str()) {
                Some(FailureReason::Error(text)) => writeln!(f, "            reason: {text}")?,
                Some(FailureReason::Flow(inner)) => writeln!(f, "            reason: [{inner}]")?,
                None => {}
            }
        }
        Ok(())
    }
}

/// Reads what a flow is doing from the backend (no broker needed).
pub async fn flow_status(
    backend: &dyn FlowBackend,
    flow_id: &str,
) -> Result<FlowReport, ClientError> {
    match backend.load(flow_id).await? {
        Some(v) => Ok(FlowReport::from_record(v.record)),
        None => Err(ClientError::NoRecord(flow_id.to_string())),
    }
}

/// Submits flows and waits for them; hears of flow ends from the broker as they happen.
pub struct Client {
    system: System,
    broker: Arc<Broker>,
    backend: Arc<dyn FlowBackend>,
    queues: Queues,
    tracer: Tracer,
    /// The system's storages, connected on first use: where typed results are read from.
    pool: StoragePool,
    ended: Arc<(Mutex<HashSet<String>>, Notify)>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the broker and starts listening for flow ends.
    pub async fn connect(
        system: &'static SystemSpec,
        amqp_url: &str,
        backend: Arc<dyn FlowBackend>,
    ) -> Result<Self, ClientError> {
        let broker = Arc::new(Broker::new(
            amqp_url,
            format!("selinon-client-{}", std::process::id()),
        ));
        let ended: Arc<(Mutex<HashSet<String>>, Notify)> = Arc::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(broker.clone(), ended.clone(), ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(broker.error("the listener stopped").into()),
        }
        Ok(Client {
            system: System::new(system),
            broker,
            backend,
            queues: Queues::new(system)?,
            tracer: Tracer::from_spec(system),
            pool: StoragePool::new(system, HashMap::new(), Tracer::new(Vec::new())),
            ended,
            listener,
        })
    }

    /// Connects to the broker and the flow-state backend that workers started by
    /// [`super::worker_main`] use by default: env `AMQP_URL` and `REDIS_URL` (the database in
    /// the URL's path), else the servers on 127.0.0.1 ([`super::amqp_url_from_env`],
    /// [`super::redis_url_from_env`]).
    pub async fn from_env(system: &'static SystemSpec) -> Result<Self, ClientError> {
        let backend = crate::backend::RedisBackend::connect(&crate::backend::redis_url_from_env())
            .await
            .map_err(ClientError::from)?;
        Client::connect(system, &super::amqp_url_from_env(), Arc::new(backend)).await
    }

    /// Stops listening and closes the connection.
    pub async fn close(self) {
        self.listener.abort();
        self.broker.close().await;
    }

    /// Starts a flow by its handle (the `FLOW` of its generated module); returns its id. The
    /// start is confirmed by the broker when this returns.
    pub async fn submit<M, A>(&self, flow: &Flow<M>, node_args: A) -> Result<String, ClientError>
    where
        M: Takes<A> + ?Sized,
        A: Serialize,
    {
        let ids = self.submit_many(flow, std::iter::once(node_args)).await?;
        Ok(ids.into_iter().next().expect("one flow"))
    }

    /// Starts a flow by its YAML name, for tools that take the name from a user (a CLI, an
    /// HTTP endpoint); Rust code names the flow's handle ([`Client::submit`]).
    pub async fn submit_by_name(
        &self,
        flow_name: &str,
        node_args: Json,
    ) -> Result<String, ClientError> {
        let flow = self
            .system
            .flow(flow_name)
            .ok_or_else(|| self.unknown_flow(flow_name))?;
        let ids = self
            .publish_starts(flow.spec, vec![node_args], None)
            .await?;
        Ok(ids.into_iter().next().expect("one flow"))
    }

    /// Starts a selective run of a flow (see [`crate::Runtime::run_selective`]).
    pub async fn submit_selective<M, A>(
        &self,
        flow: &Flow<M>,
        task_names: &[&str],
        node_args: A,
        follow_subflows: bool,
        run_subsequent: RunSubsequent,
    ) -> Result<String, ClientError>
    where
        M: Takes<A> + ?Sized,
        A: Serialize,
    {
        let flow = flow.spec();
        self.check(flow)?;
        let tasks: Vec<String> = task_names.iter().map(|t| t.to_string()).collect();
        let map = SelectiveMap::compute(
            &self.system,
            flow.name,
            &tasks,
            follow_subflows,
            &run_subsequent,
        )?;
        let args = vec![to_json(flow, node_args)?];
        let ids = self.publish_starts(flow, args, Some(map)).await?;
        Ok(ids.into_iter().next().expect("one flow"))
    }

    /// Starts one flow per argument, publishing them in one confirmed batch.
    pub async fn submit_many<M, A>(
        &self,
        flow: &Flow<M>,
        args: impl IntoIterator<Item = A>,
    ) -> Result<Vec<String>, ClientError>
    where
        M: Takes<A> + ?Sized,
        A: Serialize,
    {
        let flow = flow.spec();
        self.check(flow)?;
        let args = args
            .into_iter()
            .map(|a| to_json(flow, a))
            .collect::<Result<Vec<Json>, ClientError>>()?;
        self.publish_starts(flow, args, None).await
    }

    fn unknown_flow(&self, name: &str) -> ClientError {
        ClientError::UnknownFlow {
            name: name.into(),
            known: self.system.flow_names(),
        }
    }

    /// The handle must be one of this system's flows.
    fn check(&self, flow: &'static FlowSpec) -> Result<(), ClientError> {
        match self.system.flow_of(flow) {
            Some(_) => Ok(()),
            None => Err(self.unknown_flow(flow.name)),
        }
    }

    async fn publish_starts(
        &self,
        flow: &'static FlowSpec,
        args: Vec<Json>,
        selective: Option<SelectiveMap>,
    ) -> Result<Vec<String>, ClientError> {
        let flow_name = flow.name;
        let queue = self.queues.flow(flow_name).to_string();
        let mut ids = Vec::new();
        let mut batch = Vec::new();
        for node_args in args {
            let flow_id = uuid::Uuid::new_v4().to_string();
            self.tracer.emit_with(TraceEvent::FlowSchedule, || {
                json!({
                    "flow_name": flow_name,
                    "node_args": node_args,
                    "dispatcher_id": flow_id,
                    "queue": flow.queue,
                })
            });
            let mut message =
                DispatcherMessage::new(flow_name, flow_id.clone(), node_args, Json::Null);
            message.selective = selective.clone();
            let body = Body::Start {
                message: Box::new(message),
                report_to: None,
            };
            batch.push(Outgoing {
                exchange: String::new(),
                routing_key: queue.clone(),
                body: String::from_utf8(body.encode()).expect("JSON is UTF-8"),
                delay_ms: 0,
                durable: true,
            });
            ids.push(flow_id);
        }
        self.broker.publish_all(&batch).await?;
        Ok(ids)
    }

    /// The result of task `N` in a flow's outcome, typed, read from the task's storage:
    /// `client.result::<flows::tasks::Report>(&outcome).await?`.
    pub async fn result<N: TaskNode>(
        &self,
        outcome: &FlowOutcome,
    ) -> Result<OutputOf<N>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        outcome.result::<N>(&self.pool).await
    }

    /// The results of every finished instance of task `N` in a flow's outcome, typed.
    pub async fn results<N: TaskNode>(
        &self,
        outcome: &FlowOutcome,
    ) -> Result<Vec<OutputOf<N>>, ResultError>
    where
        OutputOf<N>: DeserializeOwned,
    {
        outcome.results::<N>(&self.pool).await
    }

    /// What a flow is doing now.
    pub async fn status(&self, flow_id: &str) -> Result<FlowReport, ClientError> {
        match self.backend.load(flow_id).await? {
            Some(v) => Ok(FlowReport::from_record(v.record)),
            None => Err(ClientError::NoRecord(flow_id.to_string())),
        }
    }

    /// Waits for a flow's end.
    pub async fn wait(&self, flow_id: &str, timeout: Duration) -> Result<FlowOutcome, ClientError> {
        let mut all = self.wait_all(&[flow_id.to_string()], timeout).await?;
        match all.remove(flow_id) {
            Some(outcome) => Ok(outcome),
            None => Err(ClientError::TimedOut {
                flow_id: flow_id.to_string(),
                after: timeout,
            }),
        }
    }

    /// Waits for the ends of these flows, at most `timeout`; the flows that ended by then.
    pub async fn wait_all(
        &self,
        flow_ids: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, FlowOutcome>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut done: HashMap<String, FlowOutcome> = HashMap::new();
        let mut pending: Vec<String> = flow_ids.to_vec();
        // Ends are announced on the broker; the backend is read for those announced and, now
        // and then, for all (an announcement may be missed while reconnecting).
        let mut sweep = tokio::time::Instant::now();
        loop {
            let notified = self.ended.1.notified();
            let announced: Vec<String> = {
                let mut ended = self.ended.0.lock().unwrap_or_else(|e| e.into_inner());
                pending
                    .iter()
                    .filter(|id| ended.remove(*id))
                    .cloned()
                    .collect()
            };
            let check: Vec<String> = if tokio::time::Instant::now() >= sweep {
                sweep = tokio::time::Instant::now() + Duration::from_secs(2);
                pending.clone()
            } else {
                announced
            };
            for id in check {
                if let Some(v) = self.backend.load(&id).await? {
                    if let Some(outcome) = FlowReport::from_record(v.record).outcome() {
                        done.insert(id, outcome);
                    }
                }
            }
            pending.retain(|id| !done.contains_key(id));
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(done);
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(500)),
                notified,
            )
            .await;
        }
    }
}

/// Listens for flow ends on an exclusive queue bound to the fanout exchange, reconnecting.
async fn listen(
    broker: Arc<Broker>,
    ended: Arc<(Mutex<HashSet<String>>, Notify)>,
    ready: tokio::sync::oneshot::Sender<Result<(), BrokerError>>,
) {
    let mut ready = Some(ready);
    let mut wait = Duration::from_millis(100);
    loop {
        let subscribed = async {
            let link = broker.link().await?;
            broker.declare_common(&link).await?;
            let channel = link
                .connection
                .create_channel()
                .await
                .map_err(|e| broker.error(format!("cannot open a channel: {e}")))?;
            let queue = channel
                .queue_declare(
                    "",
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker.error(format!("cannot declare a reply queue: {e}")))?;
            channel
                .queue_bind(
                    queue.name().as_str(),
                    FLOW_ENDED_EXCHANGE,
                    "",
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker.error(format!("cannot bind the reply queue: {e}")))?;
            let consumer = channel
                .basic_consume(
                    queue.name().as_str(),
                    "",
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| broker.error(format!("cannot consume the reply queue: {e}")))?;
            Ok::<_, BrokerError>((link, channel, consumer))
        }
        .await;
        match subscribed {
            Ok((link, _channel, mut consumer)) => {
                wait = Duration::from_millis(100);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
                while let Some(Ok(delivery)) = consumer.next().await {
                    #[derive(Deserialize)]
                    struct Ended {
                        flow_id: String,
                    }
                    if let Ok(e) = serde_json::from_slice::<Ended>(&delivery.data) {
                        ended
                            .0
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(e.flow_id);
                        ended.1.notify_waiters();
                    }
                }
                broker.drop_link(&link).await;
            }
            Err(e) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                tracing::warn!("{e}; retrying in {wait:?}");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Flow arguments as JSON.
fn to_json(flow: &FlowSpec, args: impl Serialize) -> Result<Json, ClientError> {
    serde_json::to_value(args).map_err(|e| ClientError::Arguments {
        flow: flow.name.to_string(),
        error: e.to_string(),
    })
}
