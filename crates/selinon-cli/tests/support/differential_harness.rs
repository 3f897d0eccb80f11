//! The harness of the differential tests (`tests/differential.rs`), compiled twice: into the
//! crate of generated code, where the stubs of `selinon_codegen::scaffold::harness_stubs` call
//! [`task`], [`foreach`] and [`predicate`], and into the test itself, which runs the simulator
//! with [`run`]. Both sides therefore run flows and summarise them with the same code; only
//! what is under test differs (generated code and these stubs, or the simulator's IR
//! interpretation and its mocks).
//!
//! The behaviour of the stubs copies the simulator's mocks (`selinon_cli::sim`) exactly:
//! a scenario is JSON `{"tasks": {name: {"result", "results", "fail", "fail_times"}},
//! "foreach": {function: [items]}, "predicates": {name: bool}}`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selinon_runtime::{
    Db, InMemoryStorage, Json, RunError, Runtime, SystemSpec, TaskContext, TaskError, TaskResult,
    TraceEvent, TraceSink,
};

struct State {
    scenario: Json,
    /// Runs per task name (for `results`).
    runs: HashMap<String, u64>,
    /// Runs per task instance (for `fail_times`).
    per_id: HashMap<String, u32>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Sets the scenario of the next runs, with fresh counts.
pub fn set_scenario(scenario: Json) {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = Some(State {
        scenario,
        runs: HashMap::new(),
        per_id: HashMap::new(),
    });
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.as_mut().expect("set_scenario before running flows"))
}

/// What a task does in the scenario (as `sim::system_spec` mocks it).
pub fn task(ctx: &TaskContext, _node_args: &Json) -> TaskResult {
    with_state(|state| {
        let name = ctx.task_name.as_str();
        let behaviour = &state.scenario["tasks"][name];
        let runs = state.runs.entry(name.to_string()).or_default();
        *runs += 1;
        let run_index = *runs - 1;
        let per = state.per_id.entry(ctx.task_id.clone()).or_default();
        *per += 1;
        let instance_runs = *per;
        let fail_times = behaviour["fail_times"].as_u64().unwrap_or(0);
        if behaviour["fail"] == Json::Bool(true) {
            Err(TaskError::failed(format!("{name} fails (scenario)")))
        } else if u64::from(instance_runs) <= fail_times {
            Err(TaskError::failed(format!(
                "{name} fails run {instance_runs} of {fail_times} (scenario)"
            )))
        } else if let Some(results) = behaviour["results"].as_array().filter(|r| !r.is_empty()) {
            let i = usize::try_from(run_index)
                .unwrap_or(usize::MAX)
                .min(results.len() - 1);
            Ok(results[i].clone())
        } else {
            Ok(behaviour
                .get("result")
                .cloned()
                .unwrap_or_else(|| Json::Object(Default::default())))
        }
    })
}

/// The items a `foreach` function returns in the scenario (none when not given).
pub fn foreach(name: &str, _db: &Db<'_>, _node_args: &Json) -> Vec<Json> {
    with_state(|state| {
        state.scenario["foreach"][name]
            .as_array()
            .cloned()
            .unwrap_or_default()
    })
}

/// The value of a custom predicate in the scenario (true when not given).
pub fn predicate(name: &str, _message: Option<&Json>, _node_args: &Json, _args: &Json) -> bool {
    with_state(|state| state.scenario["predicates"][name].as_bool().unwrap_or(true))
}

/// More task starts than this in one run count as an endless flow, as a timeout does: a cycle
/// through a join (`from: [A, B]`) fires once per new combination of finished sources, so its
/// runs grow exponentially, and each pass with them, long before any timeout.
pub const MAX_TASK_STARTS: u64 = 300;

/// Counts task and flow starts; wakes the run when there are too many.
#[derive(Default)]
struct Counter {
    counts: Mutex<Counts>,
    too_many: tokio::sync::Notify,
}

#[derive(Default)]
struct Counts {
    task_starts: u64,
    runs: BTreeMap<String, u64>,
    /// (flow name, flow id) of every flow start.
    flows: Vec<(String, String)>,
    /// Every event but the storages', without ids: `EVENT {details}`.
    events: Vec<String>,
}

/// Details of events that hold ids (besides `*_id`), or differ between generated code and the
/// simulator by design: the simulator stores results in one in-memory storage of its own, with
/// no cache, so storage names differ, and the events of storage access (`STORAGE_*`, and the
/// caches' `*_CACHE_*`) are left out altogether; the simulator reads no migration chain, so
/// a message's `migration_version` differs.
const VOLATILE: &[&str] = &[
    "parent",
    "state",
    "storage",
    "storage_name",
    "migration_version",
];

fn is_volatile(key: &str) -> bool {
    key == "id" || key.ends_with("_id") || VOLATILE.contains(&key)
}

/// Removes volatile details, at any depth (e.g. the ids in `nodes: [{id, name}]`).
fn strip_volatile(value: &mut Json) {
    match value {
        Json::Object(map) => {
            map.retain(|k, _| !is_volatile(k));
            map.values_mut().for_each(strip_volatile);
        }
        Json::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

fn is_storage_event(event: TraceEvent) -> bool {
    event.name().starts_with("STORAGE_") || event.name().contains("_CACHE_")
}

impl TraceSink for Counter {
    fn trace(&self, event: TraceEvent, details: &Json) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !is_storage_event(event) {
            let mut details = details.clone();
            strip_volatile(&mut details);
            counts.events.push(format!("{event} {details}"));
        }
        match event {
            TraceEvent::TaskStart => {
                let name = details["task_name"].as_str().unwrap_or_default();
                *counts.runs.entry(name.to_string()).or_default() += 1;
                counts.task_starts += 1;
                if counts.task_starts == MAX_TASK_STARTS {
                    self.too_many.notify_one();
                }
            }
            TraceEvent::FlowStart => {
                let name = details["flow_name"].as_str().unwrap_or_default();
                let id = details["dispatcher_id"].as_str().unwrap_or_default();
                counts.flows.push((name.to_string(), id.to_string()));
            }
            _ => {}
        }
    }
}

/// Runs one flow on a fresh in-process runtime (one thread, every storage in memory, no
/// trace sinks of the configuration), waits until what runs on after the flow's end (`nowait`
/// nodes, nodes abandoned by an eager failure) has ended too, and summarises the run as JSON:
/// `{"status": "finished"|"failed"|"endless", "runs": {task: TASK_START count},
/// "flows": {flow: FLOW_START count, the root excluded}, "settled": bool}`. A flow is endless
/// when it has not ended within `timeout` or started more than [`MAX_TASK_STARTS`] tasks;
/// `settled` is false when work still ran then, or `timeout` after the flow's end (it is
/// stopped).
pub fn run(system: &'static SystemSpec, flow: &str, node_args: Json, timeout: Duration) -> Json {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let counter = Arc::new(Counter::default());
        let mut builder = Runtime::builder(system)
            .without_config_trace()
            .trace_sink(SharedSink(counter.clone()))
            .flow_timeout(timeout)
            // Every task spawned: the order of events must not depend on how long a first
            // poll took on either side.
            .inline_polls(Duration::ZERO);
        for storage in system.storages {
            builder = builder.storage(storage.name, InMemoryStorage::new());
        }
        let runtime = builder.build();
        let handle = runtime.run_flow_by_name(flow, node_args);
        let root_id = handle.id().to_string();
        let ended = tokio::select! {
            outcome = handle => Some(outcome),
            () = counter.too_many.notified() => None,
        };
        let status = match &ended {
            Some(Ok(outcome)) if outcome.is_finished() => "finished".to_string(),
            Some(Ok(_)) => "failed".to_string(),
            Some(Err(RunError::TimedOut { .. })) | None => "endless".to_string(),
            Some(Err(err)) => format!("error: {err}"),
        };
        let settled = ended.is_some()
            && tokio::select! {
                () = runtime.wait_idle() => true,
                () = tokio::time::sleep(timeout) => false,
                () = counter.too_many.notified() => false,
            };
        runtime.shutdown().await;
        let counts = counter.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut flows = BTreeMap::<String, u64>::new();
        for (name, id) in &counts.flows {
            if *id != root_id {
                *flows.entry(name.clone()).or_default() += 1;
            }
        }
        // The order of events is that of one runtime thread: the same on both sides as long as
        // they run the same flow the same way.
        let events = if ended.is_some() {
            counts.events.clone()
        } else {
            Vec::new()
        };
        serde_json::json!({
            "status": status,
            "runs": counts.runs,
            "flows": flows,
            "settled": settled,
            "events": events,
        })
    })
}

/// A sink shared with the caller.
struct SharedSink(Arc<Counter>);

impl TraceSink for SharedSink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        self.0.trace(event, details);
    }
}
