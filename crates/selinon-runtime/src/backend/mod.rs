//! The flow-state backend of the distributed runtime: where each flow instance's dispatcher
//! state lives between passes, with optimistic concurrency.
//!
//! Every record carries a version. A pass computes the new state from the record and commits
//! it only if the version is still the one it started from ([`FlowBackend::commit`]);
//! otherwise it reads what changed and redoes the pass. So any worker may run a pass for any
//! flow, and concurrent completions of sibling tasks never lose an update: one state writer at
//! a time per flow, without locks or a central scheduler.
//!
//! A record is stored as a snapshot and the deltas written after it ([`FlowDelta`]): a pass
//! writes what it changed (an id leaves the active nodes, joins the finished ones), so its
//! cost does not grow with the flow, and a worker that kept the record from its last pass
//! reads nothing, or only the deltas written since by other workers ([`FlowBackend::read`]).
//! The writer folds the deltas into a new snapshot when they outgrow the record
//! ([`snapshot_due`]) and when the flow ends.
//!
//! The commit also stores, in the same atomic step, the *outbox* of the pass — the messages
//! it must publish — under the ids of what triggered the pass, and the marks of the tasks whose
//! ends it applied. The outbox is deleted once its messages are confirmed by the broker; a
//! worker that dies in between leaves the triggers unacknowledged, the broker redelivers them,
//! and the next worker finds the outbox and publishes it again. Nothing a committed pass
//! decided is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::engine::{DispatcherMessage, FlowResult, NodeStatus};

use crate::transport::amqp::wire::ParentRef;

mod record;

pub use record::{snapshot_due, DeltaMismatch, FlowDelta};

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

/// What [`FlowBackend::read`] found.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The record's version now.
    pub version: u64,
    /// The version of the stored snapshot (the deltas follow it).
    pub snapshot_version: u64,
    /// The snapshot, unless the reader's version is still covered by the deltas: then
    /// `deltas` are the ones written after that version.
    pub snapshot: Option<FlowRecord>,
    /// The deltas to apply, oldest first.
    pub deltas: Vec<FlowDelta>,
}

/// How a commit writes the record.
#[derive(Clone, Copy, Debug)]
pub enum RecordWrite<'a> {
    /// The whole record: a new snapshot (the deltas before it are dropped).
    Snapshot(&'a FlowRecord),
    /// What the pass changed, appended after the last snapshot.
    Delta(&'a FlowDelta),
}

/// One committed pass: the record, its outbox and the task marks, written in one atomic step.
#[derive(Clone, Copy, Debug)]
pub struct Commit<'a> {
    /// The flow instance.
    pub flow_id: &'a str,
    /// The version the pass read (`None`: there is no record yet).
    pub expected: Option<u64>,
    /// The record or what changed in it.
    pub write: RecordWrite<'a>,
    /// The flow ended: its record expires after [`KEEP`].
    pub ended: bool,
    /// What triggered the pass (task ids, sub-flow ids, `start`, `restart-N`): the outbox is
    /// kept under the first, and found from each of them.
    pub triggers: &'a [String],
    /// The messages the pass publishes.
    pub outbox: &'a [Outgoing],
    /// Task instances whose end the pass applied, marked so that a redelivered message does
    /// not run them again.
    pub task_marks: &'a [(String, NodeStatus)],
}

/// An outbox whose messages the broker confirmed: the key trigger and the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmed {
    /// The flow instance.
    pub flow_id: String,
    /// The triggers of the pass (see [`Commit::triggers`]).
    pub triggers: Vec<String>,
}

/// A store for flow records, outboxes and task completion marks.
///
/// A flow's record is stored as a snapshot and the deltas written after it (see
/// [`FlowDelta`]), so that a pass writes what it changed, not the whole record, and a worker
/// that holds a recent version of the record reads only what changed since.
#[async_trait]
pub trait FlowBackend: Send + Sync + 'static {
    /// A name for messages (`redis`, `memory`).
    fn name(&self) -> &'static str;

    /// The record of a flow instance, if there is one: only the deltas after `since` when
    /// they are all still stored, else the snapshot and the deltas after it.
    async fn read(&self, flow_id: &str, since: Option<u64>)
        -> Result<Option<Loaded>, BackendError>;

    /// Writes the record if the stored version is still `commit.expected`, with the outbox
    /// and the task marks, atomically; `Ok(false)` on a version conflict. Ended flows'
    /// records expire after [`KEEP`].
    async fn commit(&self, commit: &Commit<'_>) -> Result<bool, BackendError>;

    /// The outbox a committed pass left for `trigger`, if not yet cleared.
    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError>;

    /// Drops outboxes whose messages the broker confirmed.
    async fn clear_outboxes(&self, confirmed: &[Confirmed]) -> Result<(), BackendError>;

    /// How a task instance of the flow ended, if a worker already ran it to its end.
    async fn task_status(
        &self,
        flow_id: &str,
        task_id: &str,
    ) -> Result<Option<NodeStatus>, BackendError>;

    /// Marks a task instance as ended outside a pass (a `nowait` task, an event no pass
    /// applied).
    async fn set_task_status(
        &self,
        flow_id: &str,
        task_id: &str,
        status: NodeStatus,
    ) -> Result<(), BackendError>;

    /// The whole record of a flow instance: the snapshot with the deltas applied.
    async fn load(&self, flow_id: &str) -> Result<Option<Versioned>, BackendError> {
        let Some(loaded) = self.read(flow_id, None).await? else {
            return Ok(None);
        };
        let Some(mut record) = loaded.snapshot else {
            return Err(BackendError {
                backend: self.name(),
                message: format!("the record of flow {flow_id} has deltas but no snapshot"),
            });
        };
        for delta in loaded.deltas {
            record.apply(delta).map_err(|e| BackendError {
                backend: self.name(),
                message: format!("the record of flow {flow_id}: {e}"),
            })?;
        }
        Ok(Some(Versioned {
            version: loaded.version,
            record,
        }))
    }
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

/// One flow in a [`MemoryBackend`], stored as it would be in Redis (JSON text).
#[derive(Debug, Default)]
struct MemoryFlow {
    version: u64,
    snapshot_version: u64,
    snapshot: String,
    deltas: Vec<String>,
    /// Outboxes by key trigger, and key trigger by other trigger.
    outboxes: HashMap<String, String>,
    aliases: HashMap<String, String>,
    marks: HashMap<String, NodeStatus>,
}

/// Records in this process only: for tests and several workers in one process. Records,
/// deltas and outboxes are kept as JSON text, as Redis keeps them.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    flows: Mutex<HashMap<String, MemoryFlow>>,
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

fn memory_error(message: impl std::fmt::Display) -> BackendError {
    BackendError {
        backend: "memory",
        message: message.to_string(),
    }
}

/// Decodes a snapshot and deltas read from a backend.
fn decode_loaded(
    backend: &'static str,
    flow_id: &str,
    version: u64,
    snapshot_version: u64,
    snapshot: Option<&str>,
    deltas: &[String],
) -> Result<Loaded, BackendError> {
    let unreadable = |what: &str, e: serde_json::Error| BackendError {
        backend,
        message: format!("the {what} of flow {flow_id} is unreadable: {e}"),
    };
    let snapshot = snapshot
        .map(|text| serde_json::from_str(text).map_err(|e| unreadable("record", e)))
        .transpose()?;
    let deltas = deltas
        .iter()
        .map(|text| serde_json::from_str(text).map_err(|e| unreadable("record delta", e)))
        .collect::<Result<_, _>>()?;
    Ok(Loaded {
        version,
        snapshot_version,
        snapshot,
        deltas,
    })
}

fn encode_write(write: RecordWrite<'_>) -> Result<String, serde_json::Error> {
    match write {
        RecordWrite::Snapshot(record) => serde_json::to_string(record),
        RecordWrite::Delta(delta) => serde_json::to_string(delta),
    }
}

#[async_trait]
impl FlowBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn read(
        &self,
        flow_id: &str,
        since: Option<u64>,
    ) -> Result<Option<Loaded>, BackendError> {
        let flows = lock(&self.flows);
        let Some(flow) = flows.get(flow_id).filter(|f| f.version > 0) else {
            return Ok(None);
        };
        let loaded = match since {
            Some(v) if v >= flow.snapshot_version && v <= flow.version => decode_loaded(
                "memory",
                flow_id,
                flow.version,
                flow.snapshot_version,
                None,
                &flow.deltas[(v - flow.snapshot_version) as usize..],
            ),
            _ => decode_loaded(
                "memory",
                flow_id,
                flow.version,
                flow.snapshot_version,
                Some(&flow.snapshot),
                &flow.deltas,
            ),
        }?;
        Ok(Some(loaded))
    }

    async fn commit(&self, commit: &Commit<'_>) -> Result<bool, BackendError> {
        let text = encode_write(commit.write).map_err(memory_error)?;
        let outbox = if commit.outbox.is_empty() {
            None
        } else {
            Some(serde_json::to_string(commit.outbox).map_err(memory_error)?)
        };
        let mut flows = lock(&self.flows);
        let flow = flows.entry(commit.flow_id.to_string()).or_default();
        let current = (flow.version > 0).then_some(flow.version);
        if current != commit.expected {
            return Ok(false);
        }
        flow.version += 1;
        match commit.write {
            RecordWrite::Snapshot(_) => {
                flow.snapshot = text;
                flow.snapshot_version = flow.version;
                flow.deltas.clear();
            }
            RecordWrite::Delta(_) => flow.deltas.push(text),
        }
        if let (Some(outbox), Some((key, others))) = (outbox, commit.triggers.split_first()) {
            flow.outboxes.insert(key.clone(), outbox);
            for other in others {
                flow.aliases.insert(other.clone(), key.clone());
            }
        }
        for (task, status) in commit.task_marks {
            flow.marks.insert(task.clone(), *status);
        }
        Ok(true)
    }

    async fn outbox(
        &self,
        flow_id: &str,
        trigger: &str,
    ) -> Result<Option<Vec<Outgoing>>, BackendError> {
        let flows = lock(&self.flows);
        let Some(flow) = flows.get(flow_id) else {
            return Ok(None);
        };
        let key = flow.aliases.get(trigger).map_or(trigger, String::as_str);
        flow.outboxes
            .get(key)
            .map(|text| serde_json::from_str(text).map_err(memory_error))
            .transpose()
    }

    async fn clear_outboxes(&self, confirmed: &[Confirmed]) -> Result<(), BackendError> {
        let mut flows = lock(&self.flows);
        for c in confirmed {
            if let (Some(flow), Some((key, others))) =
                (flows.get_mut(&c.flow_id), c.triggers.split_first())
            {
                flow.outboxes.remove(key);
                for other in others {
                    flow.aliases.remove(other);
                }
            }
        }
        Ok(())
    }

    async fn task_status(
        &self,
        flow_id: &str,
        task_id: &str,
    ) -> Result<Option<NodeStatus>, BackendError> {
        Ok(lock(&self.flows)
            .get(flow_id)
            .and_then(|f| f.marks.get(task_id).copied()))
    }

    async fn set_task_status(
        &self,
        flow_id: &str,
        task_id: &str,
        status: NodeStatus,
    ) -> Result<(), BackendError> {
        lock(&self.flows)
            .entry(flow_id.to_string())
            .or_default()
            .marks
            .insert(task_id.to_string(), status);
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

/// Records in Redis. A flow is one hash, `selinon:flow:{ID}`, with the fields
///
/// - `v`: the record's version; `sv`: the version of the snapshot; `rec`: the snapshot
///   ([`FlowRecord`] as JSON);
/// - `o:TRIGGER`: the outbox of a pass (JSON), and `a:TRIGGER` → the trigger it is kept under,
///   for the other triggers of that pass;
/// - `k:TASK_ID`: how a task instance ended (`finished`, `failed`);
///
/// and the deltas after the snapshot are the list `selinon:log:{ID}` (JSON each). A commit is
/// one Lua script (check the version, write the snapshot or append the delta, the outbox and
/// the marks); a read is one script too. Both keys of a flow share a hash tag, so that it
/// also works on Redis Cluster. Records written before deltas existed (no `sv`) read as a
/// snapshot.
pub struct RedisBackend {
    url: String,
    conn: redis::aio::ConnectionManager,
    commit: redis::Script,
    read: redis::Script,
    mark: redis::Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

// KEYS: flow hash, log. ARGV: expected version ('' = no record yet), 's' (snapshot) or 'd'
// (delta), the JSON, expiry in seconds ('' = none), outbox JSON ('' = none), the number of
// triggers, the triggers, then (task id, status) pairs.
const COMMIT_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
local v = (tonumber(current) or 0) + 1
if ARGV[2] == 's' then
  redis.call('HSET', KEYS[1], 'v', v, 'sv', v, 'rec', ARGV[3])
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[1], 'v', v)
  redis.call('RPUSH', KEYS[2], ARGV[3])
end
local n = tonumber(ARGV[6])
if ARGV[5] ~= '' and n > 0 then
  local key = ARGV[7]
  redis.call('HSET', KEYS[1], 'o:' .. key, ARGV[5])
  for i = 2, n do
    redis.call('HSET', KEYS[1], 'a:' .. ARGV[6 + i], key)
  end
end
for i = 7 + n, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 'k:' .. ARGV[i], ARGV[i + 1])
end
if ARGV[4] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
";

// KEYS: flow hash, log. ARGV: the reader's version ('' = none). Returns nil, or
// {v, sv, snapshot or nil, deltas}.
const READ_SCRIPT: &str = r"
local h = redis.call('HMGET', KEYS[1], 'v', 'sv')
if not h[1] then return false end
local v = tonumber(h[1])
local sv = tonumber(h[2]) or v
local since = tonumber(ARGV[1])
if since and since >= sv and since <= v then
  return {h[1], tostring(sv), false, redis.call('LRANGE', KEYS[2], since - sv, -1)}
end
return {h[1], tostring(sv), redis.call('HGET', KEYS[1], 'rec'), redis.call('LRANGE', KEYS[2], 0, -1)}
";

// KEYS: flow hash. ARGV: field, status, expiry. A mark for a flow whose record is gone
// expires by itself.
const MARK_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HEXISTS', KEYS[1], 'v') == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
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
            read: redis::Script::new(READ_SCRIPT),
            mark: redis::Script::new(MARK_SCRIPT),
        })
    }

    fn flow_key(flow_id: &str) -> String {
        format!("selinon:flow:{{{flow_id}}}")
    }

    fn log_key(flow_id: &str) -> String {
        format!("selinon:log:{{{flow_id}}}")
    }

    fn error(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError {
            backend: "redis",
            message: format!("{}: {e}", self.url),
        }
    }
}

type ReadReply = Option<(u64, u64, Option<String>, Vec<String>)>;

#[async_trait]
impl FlowBackend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn read(
        &self,
        flow_id: &str,
        since: Option<u64>,
    ) -> Result<Option<Loaded>, BackendError> {
        let mut conn = self.conn.clone();
        let reply: ReadReply = self
            .read
            .key(Self::flow_key(flow_id))
            .key(Self::log_key(flow_id))
            .arg(since.map(|v| v.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let Some((version, snapshot_version, snapshot, deltas)) = reply else {
            return Ok(None);
        };
        let loaded = decode_loaded(
            "redis",
            flow_id,
            version,
            snapshot_version,
            snapshot.as_deref(),
            &deltas,
        )
        .map_err(|e| self.error(e.message))?;
        Ok(Some(loaded))
    }

    async fn commit(&self, commit: &Commit<'_>) -> Result<bool, BackendError> {
        let mut conn = self.conn.clone();
        let text = encode_write(commit.write).map_err(|e| self.error(e))?;
        let outbox_text = if commit.outbox.is_empty() {
            String::new()
        } else {
            serde_json::to_string(commit.outbox).map_err(|e| self.error(e))?
        };
        let mut invocation = self.commit.prepare_invoke();
        invocation
            .key(Self::flow_key(commit.flow_id))
            .key(Self::log_key(commit.flow_id))
            .arg(commit.expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(match commit.write {
                RecordWrite::Snapshot(_) => "s",
                RecordWrite::Delta(_) => "d",
            })
            .arg(text)
            .arg(if commit.ended {
                KEEP.as_secs().to_string()
            } else {
                String::new()
            })
            .arg(outbox_text)
            .arg(commit.triggers.len());
        for trigger in commit.triggers {
            invocation.arg(trigger);
        }
        for (task, status) in commit.task_marks {
            invocation.arg(task).arg(status_str(*status));
        }
        let done: i64 = invocation
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
        let key = Self::flow_key(flow_id);
        let (text, alias): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg(format!("o:{trigger}"))
            .arg(format!("a:{trigger}"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        let text = match (text, alias) {
            (Some(text), _) => Some(text),
            (None, Some(key_trigger)) => redis::cmd("HGET")
                .arg(&key)
                .arg(format!("o:{key_trigger}"))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(e))?,
            (None, None) => None,
        };
        text.map(|t| serde_json::from_str(&t).map_err(|e| self.error(e)))
            .transpose()
    }

    async fn clear_outboxes(&self, confirmed: &[Confirmed]) -> Result<(), BackendError> {
        if confirmed.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for c in confirmed {
            let Some((key, others)) = c.triggers.split_first() else {
                continue;
            };
            let cmd = pipe
                .cmd("HDEL")
                .arg(Self::flow_key(&c.flow_id))
                .arg(format!("o:{key}"));
            for other in others {
                cmd.arg(format!("a:{other}"));
            }
            cmd.ignore();
        }
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn task_status(
        &self,
        flow_id: &str,
        task_id: &str,
    ) -> Result<Option<NodeStatus>, BackendError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = redis::cmd("HGET")
            .arg(Self::flow_key(flow_id))
            .arg(format!("k:{task_id}"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(text.as_deref().and_then(parse_status))
    }

    async fn set_task_status(
        &self,
        flow_id: &str,
        task_id: &str,
        status: NodeStatus,
    ) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .mark
            .key(Self::flow_key(flow_id))
            .arg(format!("k:{task_id}"))
            .arg(status_str(status))
            .arg(KEEP.as_secs())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}
