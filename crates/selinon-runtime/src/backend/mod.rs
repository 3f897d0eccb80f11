//! The flow-state backend of the distributed runtime: where each flow instance's dispatcher
//! state lives between passes, with optimistic concurrency.
//!
//! Every record carries a version. A pass reads the record, computes the new state and
//! commits it only if the version is still the one it read ([`FlowBackend::commit`]);
//! otherwise it reads again and redoes the pass. So any worker may run a pass for any flow,
//! and concurrent completions of sibling tasks never lose an update: one state writer at a
//! time per flow, without locks or a central scheduler.
//!
//! The commit also stores, in the same atomic step, the *outbox* of the pass — the messages
//! it must publish — under the id of what triggered the pass. The outbox is deleted once
//! its messages are confirmed by the broker; a worker that dies in between leaves the
//! trigger unacknowledged, the broker redelivers it, and the next worker finds the outbox and
//! publishes it again. Nothing a committed pass decided is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::engine::{DispatcherMessage, FlowResult, NodeStatus};

use crate::transport::amqp::wire::ParentRef;

/// A backend failure (the server is unreachable, a record is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("flow-state backend ({backend}): {message}")]
pub struct BackendError {
    /// The backend's name (`redis`, `memory`).
    pub backend: &'static str,
    /// What failed.
    pub message: String,
}

/// Where a flow instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// The flow is running.
    Running,
    /// The flow finished.
    Finished,
    /// The flow failed.
    Failed,
}

/// The stored state of one flow instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// The dispatcher message: arguments, parent map, retries and the dispatcher state.
    pub message: DispatcherMessage,
    /// The parent flow to report the end to (none for roots and `nowait` sub-flows).
    #[serde(default)]
    pub report_to: Option<ParentRef>,
    /// Running, finished or failed.
    pub status: RecordStatus,
    /// Set when the flow ended.
    #[serde(default)]
    pub result: Option<FlowResult>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the record last changed: milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// When each node instance (by id) was scheduled and when its end was applied.
    #[serde(default)]
    pub timings: BTreeMap<String, NodeTiming>,
}

/// When a node instance was scheduled and ended (ms since the Unix epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTiming {
    /// The node's name in the flow.
    pub node: String,
    /// When the instance was scheduled.
    pub scheduled_ms: u64,
    /// When its end was applied (none while it runs).
    #[serde(default)]
    pub ended_ms: Option<u64>,
    /// How it ended (none while it runs).
    #[serde(default)]
    pub status: Option<NodeStatus>,
}

/// A message a pass publishes (kept in the outbox until the broker confirms it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Exchange (`""`: the default exchange, routing by queue name).
    #[serde(default)]
    pub exchange: String,
    /// Queue (or routing key), placeholders expanded.
    pub routing_key: String,
    /// The encoded body.
    pub body: String,
    /// Delivered after this many milliseconds (through a delay queue).
    #[serde(default)]
    pub delay_ms: u64,
    /// Persistent and confirmed; notifications are neither.
    #[serde(default = "yes")]
    pub durable: bool,
}

fn yes() -> bool {
    true
}

/// A record with the version it was read at.
#[derive(Clone, Debug)]
pub struct Versioned {
    /// The record's version: a commit succeeds only if it is still the stored one.
    pub version: u64,
    /// The record.
    pub record: FlowRecord,
}

/// A store for flow records, outboxes and task completion marks.
#[async_trait]
pub trait FlowBackend: Send + Sync + 'static {
    /// A name for messages (`redis`, `memory`).
    fn name(&self) -> &'static str;

    /// The record of a flow instance, if there is one.
    async fn load(&self, flow_id: &str) -> Result<Option<Versioned>, BackendError>;

    /// Writes `record` if the stored version is still `expected` (`None`: no record yet),
    /// with `outbox` under `trigger`, atomically; `Ok(false)` on a version conflict.
    /// Ended flows' records expire after `keep`.
    async fn commit(
        &self,
        flow_id: &str,
        expected: Option<u64>,
        record: &FlowRecord,
        trigger: &str,
        outbox: &[Outgoing],
    ) -> Result<bool, BackendError>;

    /// The outbox a committed pass left for `trigger`, if not yet cleared.
    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError>;

    /// Drops the outbox a pass left for `trigger` (once its messages are confirmed).
    async fn clear_outbox(&self, flow_id: &str, trigger: &str) -> Result<(), BackendError>;

    /// How a task instance ended, if a worker already ran it to its end.
    async fn task_status(&self, task_id: &str) -> Result<Option<NodeStatus>, BackendError>;

    /// Marks a task instance as ended, so that a redelivered message does not run it again.
    async fn set_task_status(&self, task_id: &str, status: NodeStatus) -> Result<(), BackendError>;
}

/// How long records of ended flows, outboxes and task marks are kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

fn status_str(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Finished => "finished",
        NodeStatus::Failed => "failed",
    }
}

fn parse_status(text: &str) -> Option<NodeStatus> {
    match text {
        "finished" => Some(NodeStatus::Finished),
        "failed" => Some(NodeStatus::Failed),
        _ => None,
    }
}

/// Records in this process only: for tests and several workers in one process.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    flows: Mutex<HashMap<String, (u64, FlowRecord)>>,
    outboxes: Mutex<HashMap<(String, String), Vec<Outgoing>>>,
    tasks: Mutex<HashMap<String, NodeStatus>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl FlowBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, flow_id: &str) -> Result<Option<Versioned>, BackendError> {
        Ok(lock(&self.flows)
            .get(flow_id)
            .map(|(version, record)| Versioned {
                version: *version,
                record: record.clone(),
            }))
    }

    async fn commit(
        &self,
        flow_id: &str,
        expected: Option<u64>,
        record: &FlowRecord,
        trigger: &str,
        outbox: &[Outgoing],
    ) -> Result<bool, BackendError> {
        let mut flows = lock(&self.flows);
        let current = flows.get(flow_id).map(|(v, _)| *v);
        if current != expected {
            return Ok(false);
        }
        flows.insert(
            flow_id.to_string(),
            (expected.map_or(1, |v| v + 1), record.clone()),
        );
        if !outbox.is_empty() {
            lock(&self.outboxes).insert((flow_id.into(), trigger.into()), outbox.to_vec());
        }
        Ok(true)
    }

    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError> {
        Ok(lock(&self.outboxes)
            .get(&(flow_id.to_string(), trigger.to_string()))
            .cloned())
    }

    async fn clear_outbox(&self, flow_id: &str, trigger: &str) -> Result<(), BackendError> {
        lock(&self.outboxes).remove(&(flow_id.to_string(), trigger.to_string()));
        Ok(())
    }

    async fn task_status(&self, task_id: &str) -> Result<Option<NodeStatus>, BackendError> {
        Ok(lock(&self.tasks).get(task_id).copied())
    }

    async fn set_task_status(&self, task_id: &str, status: NodeStatus) -> Result<(), BackendError> {
        lock(&self.tasks).insert(task_id.to_string(), status);
        Ok(())
    }
}

/// The flow-state backend when neither `--redis` nor `REDIS_URL` names one (database 0).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// The flow-state backend's URL that workers ([`crate::amqp::worker_main`]), clients
/// ([`crate::amqp::Client::from_env`]) and `selinon status` use unless told otherwise: env
/// `REDIS_URL`, else [`DEFAULT_REDIS_URL`]. The database is the URL's path
/// (`redis://host:6379/9`), so one variable says it for every process.
pub fn redis_url_from_env() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// Records in Redis: a hash per flow (`selinon:flow:{ID}` with fields `v` and `rec`), the
/// outbox of a pass as `selinon:outbox:{ID}:TRIGGER` and task marks as `selinon:task:ID`.
/// The commit is one Lua script (check the version, write the record and the outbox), and
/// the keys of a flow share a hash tag so that it also works on Redis Cluster.
pub struct RedisBackend {
    url: String,
    conn: redis::aio::ConnectionManager,
    commit: redis::Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

const COMMIT_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'rec', ARGV[3])
if ARGV[5] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[6])
end
return 1
";

impl RedisBackend {
    /// Connects (and reconnects by itself after the server restarts).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let err = |e: redis::RedisError| BackendError {
            backend: "redis",
            message: format!("cannot connect to {url}: {e}"),
        };
        let client = redis::Client::open(url).map_err(err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(3);
        let conn = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(RedisBackend {
            url: url.to_string(),
            conn,
            commit: redis::Script::new(COMMIT_SCRIPT),
        })
    }

    fn flow_key(flow_id: &str) -> String {
        format!("selinon:flow:{{{flow_id}}}")
    }

    fn outbox_key(flow_id: &str, trigger: &str) -> String {
        format!("selinon:outbox:{{{flow_id}}}:{trigger}")
    }

    fn task_key(task_id: &str) -> String {
        format!("selinon:task:{task_id}")
    }

    fn error(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError {
            backend: "redis",
            message: format!("{}: {e}", self.url),
        }
    }
}

#[async_trait]
impl FlowBackend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, flow_id: &str) -> Result<Option<Versioned>, BackendError> {
        let mut conn = self.conn.clone();
        let (version, record): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(Self::flow_key(flow_id))
            .arg("v")
            .arg("rec")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        match (version, record) {
            (Some(version), Some(text)) => {
                let record = serde_json::from_str(&text).map_err(|e| {
                    self.error(format!("the record of flow {flow_id} is unreadable: {e}"))
                })?;
                Ok(Some(Versioned { version, record }))
            }
            _ => Ok(None),
        }
    }

    async fn commit(
        &self,
        flow_id: &str,
        expected: Option<u64>,
        record: &FlowRecord,
        trigger: &str,
        outbox: &[Outgoing],
    ) -> Result<bool, BackendError> {
        let mut conn = self.conn.clone();
        let text = serde_json::to_string(record).map_err(|e| self.error(e))?;
        let outbox_text = if outbox.is_empty() {
            String::new()
        } else {
            serde_json::to_string(outbox).map_err(|e| self.error(e))?
        };
        let expire = if record.status == RecordStatus::Running {
            String::new()
        } else {
            KEEP.as_secs().to_string()
        };
        let done: i64 = self
            .commit
            .key(Self::flow_key(flow_id))
            .key(Self::outbox_key(flow_id, trigger))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(expected.map_or(1, |v| v + 1))
            .arg(text)
            .arg(outbox_text)
            .arg(expire)
            .arg(KEEP.as_secs())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done == 1)
    }

    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("GET")
            .arg(Self::outbox_key(flow_id, trigger))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| self.error(e)))
            .transpose()
    }

    async fn clear_outbox(&self, flow_id: &str, trigger: &str) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(Self::outbox_key(flow_id, trigger))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn task_status(&self, task_id: &str) -> Result<Option<NodeStatus>, BackendError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("GET")
            .arg(Self::task_key(task_id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(text.as_deref().and_then(parse_status))
    }

    async fn set_task_status(&self, task_id: &str, status: NodeStatus) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(Self::task_key(task_id))
            .arg(status_str(status))
            .arg("EX")
            .arg(KEEP.as_secs())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}
