//! Trace events (upstream `selinon.trace`): what the engine, the task envelope and the storages
//! report, with upstream's names and numeric codes, delivered to [`TraceSink`]s.
//!
//! `global.trace` in the YAML selects the sinks ([`Tracer::from_spec`]): `logging` → the
//! [`tracing`] crate ([`TracingSink`]), `json` → one JSON line per event on stdout (warnings on
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
    fn trace(&self, event: TraceEvent, details: &Json);
}

/// The set of sinks events go to. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer {
    sinks: Arc<Vec<Arc<dyn TraceSink>>>,
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

    /// Whether any sink listens (details need not be built otherwise).
    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Sends an event to every sink.
    pub fn emit(&self, event: TraceEvent, details: Json) {
        for sink in self.sinks.iter() {
            if catch_unwind(AssertUnwindSafe(|| sink.trace(event, &details))).is_err() {
                eprintln!("selinon: a trace sink panicked on {event}; skipped");
            }
        }
    }

    /// Sends an event whose details are built only when some sink listens.
    pub fn emit_with(&self, event: TraceEvent, details: impl FnOnce() -> Json) {
        if self.is_enabled() {
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

/// Reports events through the [`tracing`] crate (upstream's `logging` sink): target `selinon`,
/// error level for `DISPATCHER_FAILURE`, warning for the warning class, info otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl TraceSink for TracingSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        let name = event.name();
        let details = details.to_string();
        if event == TraceEvent::DispatcherFailure {
            tracing::error!(target: "selinon", event = name, code = event.code(), %details, "SELINON {name}");
        } else if event.is_warning() {
            tracing::warn!(target: "selinon", event = name, code = event.code(), %details, "SELINON {name}");
        } else {
            tracing::info!(target: "selinon", event = name, code = event.code(), %details, "SELINON {name}");
        }
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
}
