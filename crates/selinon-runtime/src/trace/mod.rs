//! Trace events (upstream `selinon.trace`): what the engine, the task envelope and the storages
//! report, with upstream's names and numeric codes, delivered to [`TraceSink`]s.
//!
//! Failures and warnings (events at [`tracing::Level::WARN`] and above, see
//! [`TraceEvent::level`]) are always logged through the [`tracing`] crate, target `selinon`, so a
//! program with a subscriber ([`crate::logging::init`]) sees why tasks and flows fail without any
//! configuration. `global.trace` in the YAML selects the sinks ([`Tracer::from_spec`]):
//! `logging` → every event through [`tracing`] ([`TracingSink`]), `json` → one JSON line per event on stdout (warnings on
//! stderr, [`JsonLinesSink::stdout`]), `function` → a user function ([`FunctionSink`]),
//! `storage` → the storage's `DataStorage::trace` ([`StorageSink`]). A
//! runtime builder may add more sinks, e.g. a [`JsonLinesSink`] over any writer or a
//! [`TraceRecorder`] that keeps events in memory.

#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "sentry")]
pub mod sentry;

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value as Json};

use crate::spec::{SystemSpec, TraceSpec};
use crate::storage::{build_adapter, DataStorage, StorageError};

macro_rules! trace_events {
    ($($variant:ident = $code:literal, $name:literal, $warning:literal;)*) => {
        /// A trace event, with upstream's name ([`TraceEvent::name`]) and code ([`TraceEvent::code`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TraceEvent {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), ").")]
                $variant = $code,
            )*
        }

        impl TraceEvent {
            /// Every event, by code.
            pub const ALL: &'static [TraceEvent] = &[$(TraceEvent::$variant),*];

            /// Upstream's name, e.g. `TASK_SCHEDULE`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(TraceEvent::$variant => $name,)*
                }
            }

            /// Upstream's numeric code.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// Whether upstream reports the event at warning level (and the JSON sink on stderr).
            pub const fn is_warning(self) -> bool {
                match self {
                    $(TraceEvent::$variant => $warning,)*
                }
            }

            /// The level the event is logged at through [`tracing`] (ours, not upstream's,
            /// which logs the warning class at warning and the rest at info): a flow or
            /// dispatcher failure is an error; a task failure, retry and the other problems
            /// are warnings; the life of flows and tasks (start, end, sub-flows, fallbacks,
            /// migrations) is info; the engine's and storages' inner steps (discarded
            /// results, caches, conditions, storage calls, wake-ups) are debug.
            pub const fn level(self) -> tracing::Level {
                use TraceEvent::*;
                match self {
                    FlowFailure | DispatcherFailure | MigrationError => tracing::Level::ERROR,
                    TaskFailure | TaskRetry | NodeFailure | FlowRetry | EagerFailure
                    | StorageOmitStoreError | NodeStateCacheIssue | TaskResultCacheIssue
                    | StorageIssue | ResultBackendIssue | MigrationSkew => tracing::Level::WARN,
                    FlowSchedule | FlowStart | FlowEnd | TaskStart | TaskEnd | SubflowSchedule
                    | FallbackStart | Migration | MigrationTaintedFlow | StorageStoreError => {
                        tracing::Level::INFO
                    }
                    _ => tracing::Level::DEBUG,
                }
            }

            /// The event of that name.
            pub fn from_name(name: &str) -> Option<TraceEvent> {
                match name {
                    $($name => Some(TraceEvent::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

trace_events! {
    DispatcherWakeup = 0, "DISPATCHER_WAKEUP", false;
    FlowSchedule = 1, "FLOW_SCHEDULE", false;
    FlowStart = 2, "FLOW_START", false;
    TaskSchedule = 3, "TASK_SCHEDULE", false;
    TaskStart = 4, "TASK_START", false;
    SubflowSchedule = 5, "SUBFLOW_SCHEDULE", false;
    TaskEnd = 6, "TASK_END", false;
    NodeSuccessful = 7, "NODE_SUCCESSFUL", false;
    TaskDiscardResult = 8, "TASK_DISCARD_RESULT", true;
    TaskFailure = 9, "TASK_FAILURE", true;
    TaskRetry = 10, "TASK_RETRY", true;
    FlowFailure = 11, "FLOW_FAILURE", true;
    DispatcherFailure = 12, "DISPATCHER_FAILURE", false;
    NodeFailure = 13, "NODE_FAILURE", true;
    FallbackStart = 14, "FALLBACK_START", false;
    DispatcherRetry = 15, "DISPATCHER_RETRY", false;
    FlowEnd = 16, "FLOW_END", false;
    StorageConnect = 17, "STORAGE_CONNECT", false;
    StorageDisconnect = 18, "STORAGE_DISCONNECT", false;
    StorageRetrieve = 19, "STORAGE_RETRIEVE", false;
    StorageRetrieved = 20, "STORAGE_RETRIEVED", false;
    StorageStore = 21, "STORAGE_STORE", false;
    StorageStored = 22, "STORAGE_STORED", false;
    EdgeCondFalse = 23, "EDGE_COND_FALSE", false;
    ForeachResult = 24, "FOREACH_RESULT", false;
    NodeStateCacheGet = 25, "NODE_STATE_CACHE_GET", false;
    NodeStateCacheAdd = 26, "NODE_STATE_CACHE_ADD", false;
    NodeStateCacheMiss = 27, "NODE_STATE_CACHE_MISS", false;
    NodeStateCacheHit = 28, "NODE_STATE_CACHE_HIT", false;
    TaskResultCacheGet = 29, "TASK_RESULT_CACHE_GET", false;
    TaskResultCacheAdd = 30, "TASK_RESULT_CACHE_ADD", false;
    TaskResultCacheMiss = 31, "TASK_RESULT_CACHE_MISS", false;
    TaskResultCacheHit = 32, "TASK_RESULT_CACHE_HIT", false;
    SelectiveOmitEdge = 33, "SELECTIVE_OMIT_EDGE", false;
    SelectiveOmitNode = 34, "SELECTIVE_OMIT_NODE", false;
    SelectiveRunFunc = 35, "SELECTIVE_RUN_FUNC", false;
    SelectiveTaskReuse = 36, "SELECTIVE_TASK_REUSE", false;
    StorageStoreError = 37, "STORAGE_STORE_ERROR", false;
    StorageOmitStoreError = 38, "STORAGE_OMIT_STORE_ERROR", true;
    FallbackCondFalse = 39, "FALLBACK_COND_FALSE", false;
    FallbackCondTrue = 40, "FALLBACK_COND_TRUE", false;
    NodeStateCacheIssue = 41, "NODE_STATE_CACHE_ISSUE", true;
    TaskResultCacheIssue = 42, "TASK_RESULT_CACHE_ISSUE", true;
    StorageIssue = 43, "STORAGE_ISSUE", true;
    ResultBackendIssue = 44, "RESULT_BACKEND_ISSUE", true;
    FlowRetry = 45, "FLOW_RETRY", true;
    Migration = 46, "MIGRATION", false;
    MigrationSkew = 47, "MIGRATION_SKEW", true;
    MigrationTaintedFlow = 48, "MIGRATION_TAINTED_FLOW", false;
    MigrationError = 49, "MIGRATION_ERROR", true;
    EagerFailure = 50, "EAGER_FAILURE", true;
    StorageDelete = 51, "STORAGE_DELETE", false;
    StorageDeleted = 52, "STORAGE_DELETED", false;
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Receives trace events. A panicking sink is reported on stderr and skipped.
pub trait TraceSink: Send + Sync {
    /// Receives one event with its details (upstream's trace message fields).
    fn trace(&self, event: TraceEvent, details: &Json);

    /// Whether the sink logs every event through [`tracing`] (then the tracer does not log
    /// failures and warnings a second time).
    fn logs_every_event(&self) -> bool {
        false
    }
}

/// The set of sinks events go to. Cheap to clone.
///
/// Events at [`tracing::Level::WARN`] and above are also logged through [`tracing`] when no
/// sink logs every event ([`TraceSink::logs_every_event`]).
#[derive(Clone, Default)]
pub struct Tracer {
    sinks: Arc<Vec<Arc<dyn TraceSink>>>,
    /// A sink logs every event: the tracer does not log failures itself.
    sink_logs: bool,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Tracer {
    /// A tracer over these sinks.
    pub fn new(sinks: Vec<Arc<dyn TraceSink>>) -> Self {
        Tracer {
            sink_logs: sinks.iter().any(|s| s.logs_every_event()),
            sinks: Arc::new(sinks),
        }
    }

    /// The sinks `global.trace` selects, but its `storage` entries ([`Tracer::storage_sinks`]).
    /// A `sentry` entry reports failures to Sentry when the runtime is built with the `sentry`
    /// feature (else it is logged and skipped).
    pub fn sinks_from_spec(system: &SystemSpec) -> Vec<Arc<dyn TraceSink>> {
        let mut sinks: Vec<Arc<dyn TraceSink>> = Vec::new();
        for entry in system.trace {
            match entry {
                TraceSpec::Logging => sinks.push(Arc::new(TracingSink)),
                TraceSpec::Json => sinks.push(Arc::new(JsonLinesSink::stdout())),
                TraceSpec::Function(f) => sinks.push(Arc::new(FunctionSink(*f))),
                TraceSpec::Storage { .. } => {}
                #[cfg(feature = "sentry")]
                TraceSpec::Sentry { dsn } => match crate::storage::expand_env(dsn)
                    .map_err(|e| e.to_string())
                    .and_then(|dsn| crate::trace::sentry::SentrySink::new(&dsn))
                {
                    Ok(sink) => sinks.push(Arc::new(sink)),
                    Err(e) => tracing::warn!("global.trace sentry: {e}; no Sentry reports"),
                },
                #[cfg(not(feature = "sentry"))]
                TraceSpec::Sentry { .. } => tracing::warn!(
                    "global.trace names Sentry, but selinon-runtime was built without its \
                     `sentry` feature: no Sentry reports"
                ),
            }
        }
        sinks
    }

    /// The sinks of the `storage` entries of `global.trace`: each sends every event to its
    /// storage's [`DataStorage::trace`]. The adapter is the one in `adapters` (the runtime's
    /// own storages), else it is built from the spec and added to `adapters`, so that tasks and
    /// trace events share one instance. A storage that cannot be built is logged and skipped
    /// (its tasks report the same error when they use it).
    pub fn storage_sinks(
        system: &SystemSpec,
        adapters: &mut HashMap<String, Arc<dyn DataStorage>>,
    ) -> Vec<Arc<dyn TraceSink>> {
        let mut sinks: Vec<Arc<dyn TraceSink>> = Vec::new();
        for entry in system.trace {
            let TraceSpec::Storage { storage, method } = entry else {
                continue;
            };
            let adapter = match adapters.get(*storage) {
                Some(a) => a.clone(),
                None => {
                    let built = system
                        .storages
                        .iter()
                        .find(|s| s.name == *storage)
                        .ok_or_else(|| format!("unknown storage `{storage}`"))
                        .and_then(|spec| build_adapter(spec).map_err(|e| e.to_string()));
                    match built {
                        Ok(a) => {
                            let a: Arc<dyn DataStorage> = Arc::from(a);
                            adapters.insert(storage.to_string(), a.clone());
                            a
                        }
                        Err(e) => {
                            tracing::warn!(
                                "global.trace storage `{storage}`: {e}; no events to it"
                            );
                            continue;
                        }
                    }
                }
            };
            sinks.push(Arc::new(StorageSink {
                storage,
                method,
                adapter,
                unsupported: AtomicBool::new(false),
            }));
        }
        sinks
    }

    /// The tracer `global.trace` selects (but its `storage` entries).
    pub fn from_spec(system: &SystemSpec) -> Self {
        Tracer::new(Self::sinks_from_spec(system))
    }

    /// Whether any sink listens (details need not be built otherwise; failures and warnings
    /// may still be logged, see [`Tracer::emit_with`]).
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Whether the tracer itself logs this event: a failure or warning, no sink logging every
    /// event, and a subscriber that wants it.
    fn logs(&self, event: TraceEvent) -> bool {
        !self.sink_logs
            && match event.level() {
                tracing::Level::ERROR => {
                    tracing::enabled!(target: "selinon", tracing::Level::ERROR)
                }
                tracing::Level::WARN => tracing::enabled!(target: "selinon", tracing::Level::WARN),
                _ => false,
            }
    }

    /// Sends an event to every sink (and logs it when it is a failure or a warning that no
    /// sink logs).
    pub fn emit(&self, event: TraceEvent, details: Json) {
        if self.logs(event) {
            log_event(event, &details);
        }
        for sink in self.sinks.iter() {
            if catch_unwind(AssertUnwindSafe(|| sink.trace(event, &details))).is_err() {
                eprintln!("selinon: a trace sink panicked on {event}; skipped");
            }
        }
    }

    /// Sends an event whose details are built only when some sink listens.
    pub fn emit_with(&self, event: TraceEvent, details: impl FnOnce() -> Json) {
        if self.is_enabled() || self.logs(event) {
            self.emit(event, details());
        }
    }
}

/// The host name, as upstream puts it in trace lines.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

/// Current time in RFC 3339 (UTC, microseconds).
fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// The JSON object of one trace line: `{event, time, details, node}`.
pub fn json_line(event: TraceEvent, details: &Json, node: &str) -> Json {
    json!({
        "event": event.name(),
        "time": now_rfc3339(),
        "details": details,
        "node": node,
    })
}

/// Reports every event through the [`tracing`] crate (upstream's `logging` sink); see
/// [`log_event`] for the lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl TraceSink for TracingSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        log_event(event, details);
    }

    fn logs_every_event(&self) -> bool {
        true
    }
}

/// Logs one event through [`tracing`]: target `selinon`, at [`TraceEvent::level`], with a short
/// message (`task Fetch failed`) and fields `event` (the upstream name), `flow_name`,
/// `dispatcher_id`, `node` (the task or sub-flow), `node_id`, `error` (why it failed) and
/// `details` (the remaining details but empty ones, as compact JSON). A field the current span already
/// carries (`task` and `dispatcher` spans carry the flow and node ids) is left out of the event.
pub fn log_event(event: TraceEvent, details: &Json) {
    let map = details.as_object();
    let text = |key: &str| map.and_then(|m| m.get(key)).and_then(Json::as_str);
    let span = tracing::Span::current();
    let in_span = |field: &str| {
        span.metadata()
            .is_some_and(|m| m.target() == "selinon" && m.fields().field(field).is_some())
    };
    let field = |keys: &[&str], span_field: &str| {
        if in_span(span_field) {
            None
        } else {
            keys.iter().find_map(|k| text(k))
        }
    };
    let flow_name = field(&["flow_name"], "flow_name");
    let dispatcher_id = field(&["dispatcher_id"], "dispatcher_id");
    let node = field(&["task_name", "node_name"], "task_name");
    let node_id = field(&["task_id", "node_id"], "task_id");
    let error = ["what", "error", "reason"]
        .iter()
        .find_map(|k| map.and_then(|m| m.get(*k)))
        .map(|e| match e {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        });
    const SHOWN: &[&str] = &[
        "flow_name",
        "dispatcher_id",
        "task_name",
        "node_name",
        "task_id",
        "node_id",
        "what",
        "error",
        "reason",
    ];
    let rest: Option<String> = match map {
        Some(m) => {
            let rest: serde_json::Map<String, Json> = m
                .iter()
                .filter(|(k, v)| !SHOWN.contains(&k.as_str()) && !is_empty(v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!rest.is_empty()).then(|| Json::Object(rest).to_string())
        }
        None if details.is_null() => None,
        None => Some(details.to_string()),
    };
    let message = summary(event, |k| text(k));
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: "selinon",
                $level,
                event = event.name(),
                flow_name = flow_name.map(tracing::field::display),
                dispatcher_id = dispatcher_id.map(tracing::field::display),
                node = node.map(tracing::field::display),
                node_id = node_id.map(tracing::field::display),
                error = error.as_deref().map(tracing::field::display),
                details = rest.as_deref().map(tracing::field::display),
                "{message}"
            )
        };
    }
    match event.level() {
        tracing::Level::ERROR => at!(tracing::Level::ERROR),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        _ => at!(tracing::Level::TRACE),
    }
}

/// Null, `{}` or `[]`: left out of a log line's details.
fn is_empty(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::Object(m) => m.is_empty(),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The readable message of an event's log line.
fn summary<'a>(event: TraceEvent, text: impl Fn(&str) -> Option<&'a str>) -> String {
    use TraceEvent::*;
    let flow = text("flow_name").unwrap_or("?");
    let node = text("task_name").or(text("node_name")).unwrap_or("?");
    match event {
        FlowSchedule => format!("flow {flow} scheduled"),
        FlowStart => format!("flow {flow} started"),
        FlowEnd => format!("flow {flow} finished"),
        FlowFailure => format!("flow {flow} failed"),
        FlowRetry => format!("flow {flow} is retried"),
        TaskSchedule => format!("task {node} scheduled"),
        TaskStart => format!("task {node} started"),
        TaskEnd => format!("task {node} finished"),
        TaskFailure => format!("task {node} failed"),
        TaskRetry => format!("task {node} is retried"),
        TaskDiscardResult => format!("task {node} has no storage: its result is not kept"),
        SubflowSchedule => format!(
            "sub-flow {} scheduled",
            text("child_flow_name").unwrap_or("?")
        ),
        NodeSuccessful => format!("node {node} of flow {flow} succeeded"),
        NodeFailure => format!("node {node} of flow {flow} failed"),
        EagerFailure => format!("flow {flow} fails early: node {node} failed"),
        FallbackStart => format!("flow {flow} starts a fallback"),
        DispatcherFailure => format!("dispatcher of flow {flow} failed"),
        DispatcherRetry => format!("dispatcher of flow {flow} waits for its nodes"),
        DispatcherWakeup => format!("dispatcher of flow {flow} wakes up"),
        other => other.name().to_lowercase().replace('_', " "),
    }
}

enum JsonTarget {
    /// stdout, warnings on stderr (upstream's `json: true`).
    Std,
    Writer(Mutex<Box<dyn Write + Send>>),
}

/// One JSON line per event: `{"event": …, "time": …, "details": {…}, "node": host}`.
pub struct JsonLinesSink {
    target: JsonTarget,
    node: String,
}

impl JsonLinesSink {
    /// Lines on stdout, the warning class on stderr (upstream's `json: true`).
    pub fn stdout() -> Self {
        JsonLinesSink {
            target: JsonTarget::Std,
            node: host_name(),
        }
    }

    /// Every line to one writer.
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        JsonLinesSink {
            target: JsonTarget::Writer(Mutex::new(Box::new(writer))),
            node: host_name(),
        }
    }
}

impl TraceSink for JsonLinesSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        let line = json_line(event, details, &self.node).to_string();
        // A sink never fails the caller: write errors are dropped.
        match &self.target {
            JsonTarget::Std if event.is_warning() => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            JsonTarget::Std => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            JsonTarget::Writer(w) => {
                let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(w, "{line}");
                let _ = w.flush();
            }
        }
    }
}

/// Calls a function with the event name and details (upstream's `function` sink, which passes
/// the integer code instead: [`TraceEvent::from_name`] and [`TraceEvent::code`] give it).
#[derive(Clone, Copy)]
pub struct FunctionSink(pub fn(&str, &Json));

impl TraceSink for FunctionSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        (self.0)(event.name(), details)
    }
}

/// Sends every event to a storage's [`DataStorage::trace`] (upstream's `storage` sink). A
/// failure is logged through [`tracing`]; an adapter without the method, once.
pub struct StorageSink {
    storage: &'static str,
    method: &'static str,
    adapter: Arc<dyn DataStorage>,
    unsupported: AtomicBool,
}

impl TraceSink for StorageSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        match self.adapter.trace(self.method, event, details) {
            Ok(()) => {}
            Err(StorageError::NotSupported(_)) => {
                if !self.unsupported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "global.trace names storage `{}`, whose adapter does not take trace \
                         events (implement `DataStorage::trace`): no events to it",
                        self.storage
                    );
                }
            }
            Err(e) => tracing::warn!(
                "trace event {event} to storage `{}` (`{}`): {e}",
                self.storage,
                self.method
            ),
        }
    }
}

/// Keeps every event in memory, in order: for tests and simulations.
#[derive(Clone, Default)]
pub struct TraceRecorder {
    events: Arc<Mutex<Vec<(TraceEvent, Json)>>>,
}

impl TraceRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        TraceRecorder::default()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<(TraceEvent, Json)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The details of every event of one kind so far.
    pub fn of(&self, event: TraceEvent) -> Vec<Json> {
        self.events()
            .into_iter()
            .filter(|(e, _)| *e == event)
            .map(|(_, d)| d)
            .collect()
    }

    /// How many events of one kind were seen.
    pub fn count(&self, event: TraceEvent) -> usize {
        self.of(event).len()
    }

    /// Forgets the events seen so far.
    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl TraceSink for TraceRecorder {
    fn trace(&self, event: TraceEvent, details: &Json) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((event, details.clone()));
    }
}

impl fmt::Debug for TraceRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceRecorder")
            .field("events", &self.events().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_follow_upstream() {
        assert_eq!(TraceEvent::ALL.len(), 53);
        for (i, e) in TraceEvent::ALL.iter().enumerate() {
            assert_eq!(e.code() as usize, i);
            assert_eq!(TraceEvent::from_name(e.name()), Some(*e));
        }
        assert_eq!(TraceEvent::EagerFailure.code(), 50);
        assert!(TraceEvent::FlowRetry.is_warning());
        assert!(!TraceEvent::DispatcherFailure.is_warning());
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_sink_writes_one_object_per_line() {
        let buf = Buf::default();
        let tracer = Tracer::new(vec![Arc::new(JsonLinesSink::new(buf.clone()))]);
        tracer.emit(TraceEvent::FlowStart, json!({"flow_name": "f"}));
        tracer.emit(TraceEvent::FlowEnd, json!({"flow_name": "f"}));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "FLOW_START");
        assert_eq!(lines[1]["details"]["flow_name"], "f");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    struct Panicky;
    impl TraceSink for Panicky {
        fn trace(&self, _: TraceEvent, _: &Json) {
            panic!("sink bug")
        }
    }

    #[test]
    fn a_panicking_sink_is_skipped() {
        let rec = TraceRecorder::new();
        let tracer = Tracer::new(vec![Arc::new(Panicky), Arc::new(rec.clone())]);
        tracer.emit(TraceEvent::FlowStart, json!({}));
        assert_eq!(rec.count(TraceEvent::FlowStart), 1);
    }

    /// A fmt subscriber writing plain lines (no time, no colours) to a buffer.
    fn capture() -> (Buf, impl tracing::Subscriber + Send + Sync) {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .finish();
        (buf, subscriber)
    }

    fn text(buf: &Buf) -> String {
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    fn failure() -> Json {
        json!({
            "flow_name": "ingest",
            "task_name": "Fetch",
            "task_id": "t-1",
            "dispatcher_id": "d-1",
            "parent": null,
            "node_args": {"name": "serde"},
            "queue": "q",
            "what": "disk full",
            "retried_count": 0,
        })
    }

    #[test]
    fn the_logging_sink_writes_readable_lines_at_their_levels() {
        let (buf, subscriber) = capture();
        tracing::subscriber::with_default(subscriber, || {
            let tracer = Tracer::new(vec![Arc::new(TracingSink)]);
            tracer.emit(TraceEvent::TaskFailure, failure());
            tracer.emit(
                TraceEvent::TaskDiscardResult,
                json!({"flow_name": "ingest", "task_name": "Fetch", "task_id": "t-1", "result": {"n": 1}}),
            );
            tracer.emit(
                TraceEvent::FlowFailure,
                json!({"flow_name": "ingest", "dispatcher_id": "d-1"}),
            );
            tracer.emit(
                TraceEvent::FlowStart,
                json!({"flow_name": "ingest", "dispatcher_id": "d-1"}),
            );
        });
        let text = text(&buf);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                " WARN selinon: task Fetch failed event=\"TASK_FAILURE\" flow_name=ingest \
                 dispatcher_id=d-1 node=Fetch node_id=t-1 error=disk full \
                 details={\"node_args\":{\"name\":\"serde\"},\"queue\":\"q\",\"retried_count\":0}",
                "DEBUG selinon: task Fetch has no storage: its result is not kept \
                 event=\"TASK_DISCARD_RESULT\" flow_name=ingest node=Fetch node_id=t-1 \
                 details={\"result\":{\"n\":1}}",
                "ERROR selinon: flow ingest failed event=\"FLOW_FAILURE\" flow_name=ingest dispatcher_id=d-1",
                " INFO selinon: flow ingest started event=\"FLOW_START\" flow_name=ingest dispatcher_id=d-1",
            ],
            "{text}"
        );
    }

    #[test]
    fn levels_put_failures_above_the_life_of_flows_and_inner_steps_below() {
        use tracing::Level;
        assert_eq!(TraceEvent::DispatcherFailure.level(), Level::ERROR);
        assert_eq!(TraceEvent::FlowFailure.level(), Level::ERROR);
        assert_eq!(TraceEvent::TaskFailure.level(), Level::WARN);
        assert_eq!(TraceEvent::TaskRetry.level(), Level::WARN);
        assert_eq!(TraceEvent::NodeFailure.level(), Level::WARN);
        assert_eq!(TraceEvent::TaskStart.level(), Level::INFO);
        assert_eq!(TraceEvent::FlowEnd.level(), Level::INFO);
        assert_eq!(TraceEvent::TaskDiscardResult.level(), Level::DEBUG);
        assert_eq!(TraceEvent::StorageStored.level(), Level::DEBUG);
        // Every event upstream logs as a warning is at least info here; only the discarded
        // result (which upstream warns about for every task without a storage) is lower.
        for e in TraceEvent::ALL {
            if e.is_warning() && *e != TraceEvent::TaskDiscardResult {
                assert!(e.level() <= Level::WARN, "{e}");
            }
        }
    }

    #[test]
    fn failures_are_logged_without_the_logging_sink_and_only_once_with_it() {
        let (buf, subscriber) = capture();
        tracing::subscriber::with_default(subscriber, || {
            // No sink at all: failures still reach the log; the rest does not.
            let tracer = Tracer::new(Vec::new());
            tracer.emit_with(TraceEvent::TaskStart, || json!({"task_name": "Fetch"}));
            tracer.emit_with(TraceEvent::TaskFailure, failure);
            // A recorder and the logging sink: the failure is logged by the sink alone.
            let rec = TraceRecorder::new();
            let tracer = Tracer::new(vec![Arc::new(rec.clone()), Arc::new(TracingSink)]);
            tracer.emit_with(TraceEvent::TaskFailure, failure);
            assert_eq!(rec.count(TraceEvent::TaskFailure), 1);
        });
        let text = text(&buf);
        assert_eq!(text.matches("task Fetch failed").count(), 2, "{text}");
        assert!(!text.contains("TASK_START"), "{text}");
    }

    #[test]
    fn a_field_the_span_carries_is_not_repeated() {
        let (buf, subscriber) = capture();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                target: "selinon",
                "task",
                flow_name = "ingest",
                dispatcher_id = "d-1",
                task_name = "Fetch",
                task_id = "t-1",
            );
            let _entered = span.enter();
            Tracer::new(Vec::new()).emit(TraceEvent::TaskFailure, failure());
        });
        let text = text(&buf);
        assert_eq!(
            text.lines().next().unwrap_or(""),
            " WARN task{flow_name=\"ingest\" dispatcher_id=\"d-1\" task_name=\"Fetch\" task_id=\"t-1\"}: \
             selinon: task Fetch failed event=\"TASK_FAILURE\" error=disk full \
             details={\"node_args\":{\"name\":\"serde\"},\"queue\":\"q\",\"retried_count\":0}",
            "{text}"
        );
    }
}
