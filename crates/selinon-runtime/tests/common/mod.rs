//! Shared test support: a scripted task whose behaviour each test sets, helpers to write
//! systems as generated code does, and a stepper that drives the engine pass by pass the way
//! upstream's tests drive `SystemState.update()`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selinon_runtime::engine::{
    dispatch, Action, DispatcherMessage, EngineEnv, FlowResult, FlowState, NodeEvent, PassOutcome,
    Throttler,
};
use selinon_runtime::spec::{StorageAdapter, StorageSpec, SystemSpec, TaskSpec};
use selinon_runtime::trace::Tracer;
use selinon_runtime::{
    json, Db, Json, StorageError, Task, TaskContext, TaskError, TaskResult, TraceRecorder,
};

/// A task as generated code declares it: stored in `Memory`, no retries.
pub const fn task(name: &'static str) -> TaskSpec {
    TaskSpec {
        name,
        origin: "nodes.yml:1",
        class: "Scripted",
        // Queues are irrelevant in-process; an unexpanded placeholder must not break anything.
        queue: "{DEPLOYMENT_PREFIX}_tasks",
        storage: Some("Memory"),
        storage_readonly: false,
        storage_task_name: name,
        output_schema: None,
        max_retry: 0,
        retry_countdown: Duration::ZERO,
        throttling: None,
        selective_run_function: None,
    }
}

/// The built-in in-memory storage, as generated code declares it.
pub static STORAGES: [StorageSpec; 1] = [StorageSpec {
    name: "Memory",
    origin: "nodes.yml:40",
    adapter: StorageAdapter::Builtin {
        module: "selinon.storages.memory",
        class: "InMemoryStorage",
    },
    configuration: "{\"echo\":false}",
    cache: None,
}];

/// The condition of edges that have none.
pub fn always(_db: &Db<'_>, _node_args: &Json) -> bool {
    true
}

/// What a scripted task does on a run.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Returns this value on every run.
    Result(Json),
    /// One value per run (over all instances), the last repeating.
    Results(Vec<Json>),
    /// Fails on every run.
    Fail,
    /// Fails fatally (no retries).
    Fatal,
    /// Fails the first N runs (over all instances), then returns the value.
    FailTimes(u32, Json),
    /// Asks for a retry the first N runs (over all instances), then returns the value.
    RetryTimes(u32, Json),
    /// Panics.
    Panic,
    /// Sleeps, then returns the value.
    Sleep(Duration, Json),
}

/// One recorded run of a scripted task.
#[derive(Clone, Debug)]
pub struct Run {
    pub task_name: String,
    pub task_id: String,
    pub flow_name: String,
    pub node_args: Json,
    pub parent: Json,
    pub retried_count: u32,
}

/// What the scripted tasks of one runtime do; register it as a resource.
#[derive(Default)]
pub struct Script {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    runs: Mutex<Vec<Run>>,
}

impl Script {
    pub fn new() -> Arc<Script> {
        Arc::new(Script::default())
    }

    pub fn set(&self, task: &str, behaviour: Behaviour) -> &Self {
        self.behaviours
            .lock()
            .unwrap()
            .insert(task.to_string(), behaviour);
        self
    }

    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// Runs of one task (every attempt counts).
    pub fn runs_of(&self, task: &str) -> Vec<Run> {
        self.runs()
            .into_iter()
            .filter(|r| r.task_name == task)
            .collect()
    }

    pub fn count(&self, task: &str) -> usize {
        self.runs_of(task).len()
    }
}

/// The test task: does what the runtime's [`Script`] says for its node name; by default
/// returns `{"task": <name>}`.
#[derive(Default)]
pub struct Scripted;

impl Task for Scripted {
    async fn run(&self, ctx: &TaskContext, node_args: Json) -> TaskResult {
        let script = ctx
            .resource::<Script>()
            .expect("tests register a Script resource");
        let nth = {
            let mut runs = script.runs.lock().unwrap();
            let nth = runs.iter().filter(|r| r.task_name == ctx.task_name).count() as u32;
            runs.push(Run {
                task_name: ctx.task_name.clone(),
                task_id: ctx.task_id.clone(),
                flow_name: ctx.flow_name.clone(),
                node_args: node_args.clone(),
                parent: ctx.parent.clone(),
                retried_count: ctx.retried_count,
            });
            nth
        };
        let behaviour = script
            .behaviours
            .lock()
            .unwrap()
            .get(&ctx.task_name)
            .cloned();
        match behaviour {
            None => Ok(json!({"task": ctx.task_name})),
            Some(Behaviour::Result(v)) => Ok(v),
            Some(Behaviour::Results(vs)) => Ok(vs
                .get(nth as usize)
                .or(vs.last())
                .cloned()
                .unwrap_or(Json::Null)),
            Some(Behaviour::Fail) => Err(TaskError::failed("scripted failure")),
            Some(Behaviour::Fatal) => Err(TaskError::fatal("scripted fatal failure")),
            Some(Behaviour::FailTimes(n, v)) => {
                if nth < n {
                    Err(TaskError::failed(format!("scripted failure {}", nth + 1)))
                } else {
                    Ok(v)
                }
            }
            Some(Behaviour::RetryTimes(n, v)) => {
                if nth < n {
                    Err(ctx.retry(Duration::from_millis(1)))
                } else {
                    Ok(v)
                }
            }
            Some(Behaviour::Panic) => panic!("scripted panic in {}", ctx.task_name),
            Some(Behaviour::Sleep(d, v)) => {
                tokio::time::sleep(d).await;
                Ok(v)
            }
        }
    }
}

/// An engine environment for stepping: results set by the test, ids `<n>` in order.
pub struct StepEnv {
    tracer: Tracer,
    pub recorder: TraceRecorder,
    results: Mutex<HashMap<String, Json>>,
    flow_results: Mutex<HashMap<String, FlowResult>>,
    next: AtomicUsize,
    throttler: Throttler,
    /// Task ids whose retrieval fails (a broken storage).
    pub broken: Mutex<Vec<String>>,
}

impl Default for StepEnv {
    fn default() -> Self {
        let recorder = TraceRecorder::new();
        StepEnv {
            tracer: Tracer::new(vec![Arc::new(recorder.clone())]),
            recorder,
            results: Mutex::default(),
            flow_results: Mutex::default(),
            next: AtomicUsize::new(0),
            throttler: Throttler::new(),
            broken: Mutex::default(),
        }
    }
}

#[selinon_runtime::async_trait]
impl EngineEnv for StepEnv {
    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError> {
        if self.broken.lock().unwrap().iter().any(|b| b == task_id) {
            return Err(StorageError::Backend {
                storage: "Memory".into(),
                message: "broken".into(),
            });
        }
        self.results
            .lock()
            .unwrap()
            .get(task_id)
            .cloned()
            .ok_or_else(|| StorageError::Missing {
                flow_name: flow_name.into(),
                task_name: task_name.into(),
                task_id: task_id.into(),
            })
    }

    async fn flow_result(&self, _flow_name: &str, flow_id: &str) -> Option<FlowResult> {
        self.flow_results.lock().unwrap().get(flow_id).cloned()
    }

    fn new_id(&self) -> String {
        format!("<{}>", self.next.fetch_add(1, Ordering::SeqCst))
    }

    fn throttle(&self, node: &str, is_flow: bool, interval: Duration) -> Duration {
        self.throttler.countdown(node, is_flow, interval)
    }

    fn tracer(&self) -> &Tracer {
        &self.tracer
    }
}

/// A node the last pass started.
#[derive(Clone, Debug)]
pub struct Started {
    pub name: String,
    pub id: String,
    pub node_args: Json,
    pub parent: Json,
    pub is_flow: bool,
    pub countdown: Duration,
}

/// Drives one flow instance pass by pass, as upstream's tests do with `SystemState`.
pub struct Stepper {
    pub system: &'static SystemSpec,
    pub env: StepEnv,
    pub message: DispatcherMessage,
    pending: VecDeque<NodeEvent>,
    /// Nodes started by the last pass.
    pub started: Vec<Started>,
    /// Every node started so far, in order.
    pub all_started: Vec<Started>,
    pub outcome: PassOutcome,
}

impl Stepper {
    /// Runs the first pass of a new instance of `flow`.
    pub async fn start(system: &'static SystemSpec, flow: &str, node_args: Json) -> Stepper {
        Self::start_with_parent(system, flow, node_args, Json::Null).await
    }

    pub async fn start_with_parent(
        system: &'static SystemSpec,
        flow: &str,
        node_args: Json,
        parent: Json,
    ) -> Stepper {
        let mut s = Stepper {
            system,
            env: StepEnv::default(),
            message: DispatcherMessage::new(flow, "<flow>", node_args, parent),
            pending: VecDeque::new(),
            started: Vec::new(),
            all_started: Vec::new(),
            outcome: PassOutcome::Running,
        };
        s.pass().await;
        s
    }

    /// Runs a pass over the completions set since the last one.
    pub async fn pass(&mut self) -> &PassOutcome {
        let events: Vec<NodeEvent> = self.pending.drain(..).collect();
        let out = dispatch(self.system, &self.message, &events, &self.env).await;
        self.started = out
            .actions
            .iter()
            .map(|a| match a {
                Action::StartTask {
                    message, countdown, ..
                } => Started {
                    name: message.task_name.clone(),
                    id: message.task_id.clone(),
                    node_args: message.node_args.clone(),
                    parent: message.parent.clone(),
                    is_flow: false,
                    countdown: *countdown,
                },
                Action::StartFlow {
                    message, countdown, ..
                } => Started {
                    name: message.flow_name.clone(),
                    id: message.flow_id.clone(),
                    node_args: message.node_args.clone(),
                    parent: message.parent.clone(),
                    is_flow: true,
                    countdown: *countdown,
                },
            })
            .collect();
        self.all_started.extend(self.started.clone());
        if let PassOutcome::RetryPass { .. } = out.outcome {
            // The same completions are to be seen again by the repeated pass.
            self.pending.extend(events);
        }
        self.message = out.message;
        self.outcome = out.outcome;
        &self.outcome
    }

    pub fn state(&self) -> FlowState {
        self.message.state.clone().unwrap_or_default()
    }

    /// Names of the nodes the last pass started, in order.
    pub fn started_names(&self) -> Vec<String> {
        self.started.iter().map(|s| s.name.clone()).collect()
    }

    /// Ids of the active instances of a node.
    pub fn active(&self, name: &str) -> Vec<String> {
        self.state()
            .active_nodes
            .iter()
            .filter(|n| n.name == name)
            .map(|n| n.id.clone())
            .collect()
    }

    /// The id of the only active instance of a node.
    pub fn id(&self, name: &str) -> String {
        let ids = self.active(name);
        assert_eq!(
            ids.len(),
            1,
            "one active `{name}` expected: {:?}",
            self.state()
        );
        ids[0].clone()
    }

    /// A started node (any pass) by id.
    pub fn started_by_id(&self, id: &str) -> Started {
        self.all_started
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .expect("started")
    }

    /// Marks a task instance finished with a stored result.
    pub fn set_finished(&mut self, id: &str, result: Json) {
        self.env
            .results
            .lock()
            .unwrap()
            .insert(id.to_string(), result);
        self.pending.push_back(NodeEvent::finished(id));
    }

    /// Marks a sub-flow instance finished with its result.
    pub fn set_flow_finished(&mut self, id: &str, finished_nodes: Json) {
        self.set_flow_result(id, finished_nodes);
        self.pending.push_back(NodeEvent::finished(id));
    }

    /// Records a (nested) sub-flow's result without an event for this flow.
    pub fn set_flow_result(&mut self, id: &str, finished_nodes: Json) {
        let result = FlowResult {
            finished_nodes: serde_json::from_value(finished_nodes).expect("name → ids"),
            ..FlowResult::default()
        };
        self.env
            .flow_results
            .lock()
            .unwrap()
            .insert(id.to_string(), result);
    }

    pub fn set_failed(&mut self, id: &str) {
        self.pending.push_back(NodeEvent::failed(id));
    }

    pub fn is_running(&self) -> bool {
        matches!(self.outcome, PassOutcome::Running)
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.outcome, PassOutcome::Finished(_))
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, PassOutcome::Failed(_))
    }
}

/// Sorted copy, for comparing sets.
pub fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// No `propagate_*` flag set.
pub const NO_PROPAGATE: selinon_runtime::spec::PropagateSpec =
    selinon_runtime::spec::PropagateSpec {
        node_args: &[],
        parent: &[],
        finished: &[],
        compound_finished: &[],
        failures: &[],
        compound_failures: &[],
    };

/// A flow with no failures table.
pub fn no_fallbacks(_failed: &[&str]) -> &'static [selinon_runtime::spec::FallbackSpec] {
    &[]
}

fn no_edges(_node: &str) -> &'static [usize] {
    &[]
}

/// The fields a test flow leaves at their defaults: `FlowSpec { name, edges, …, ..FLOW }`.
pub const FLOW: selinon_runtime::spec::FlowSpec = selinon_runtime::spec::FlowSpec {
    name: "",
    origin: "flows.yml:1",
    queue: "{DEPLOYMENT_PREFIX}_dispatcher",
    nodes: &[],
    edges: &[],
    edges_from: &no_edges,
    fallbacks: &no_fallbacks,
    nowait: &[],
    eager_failures: &[],
    node_args_from_first: false,
    propagate: NO_PROPAGATE,
    max_retry: 0,
    retry_countdown: Duration::ZERO,
    throttling: None,
    cache: None,
};

/// The fields a test edge leaves at their defaults (no condition, no foreach).
pub const EDGE: selinon_runtime::spec::EdgeSpec = selinon_runtime::spec::EdgeSpec {
    index: 0,
    origin: "flows.yml:2",
    from: &[],
    to: &[],
    reads: &[],
    condition: &always,
    condition_str: "True",
    foreach: None,
    selective: None,
};

/// A fallback alternative with no condition.
pub const FALLBACK: selinon_runtime::spec::FallbackSpec = selinon_runtime::spec::FallbackSpec {
    origin: "flows.yml:3",
    nodes: None,
    condition: &always,
    condition_str: "True",
    propagate_failure: false,
};

// ---------------------------------------------------------------------------------------------
// Systems from upstream's edge tables (selective runs, migrations).

use std::collections::{BTreeMap as TableMap, BTreeSet as TableSet};

use selinon_runtime::spec::{
    run_boxed as table_run_boxed, BoxFuture as TableFuture, EdgeSpec, FlowSpec, MigrationDir,
    NodeKind, NodeSpec, PropagateSpec, SelectiveRunInput,
};

pub fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

pub fn leak_name(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn table_run_task(
    name: &str,
    ctx: TaskContext,
    node_args: Json,
) -> Option<TableFuture<'static, TaskResult>> {
    let _ = name;
    Some(table_run_boxed::<Scripted>(ctx, node_args))
}

/// `(from, to)` of one edge.
pub type Edge<'a> = (&'a [&'a str], &'a [&'a str]);
/// A flow's edges, upstream's edge-table notation.
pub type Table<'a> = [(&'a str, &'a [Edge<'a>])];

/// Expected subsets: flow → edge index → allowed `to` nodes.
pub type Subsets = TableMap<String, TableMap<usize, TableSet<String>>>;
pub type Expected<'a> = [(&'a str, &'a [(usize, &'a [&'a str])])];

/// A system from upstream's edge-table notation: `(flow, [(from, to)])`; every other name
/// is a scripted task (stored in `Memory`); the tasks named in `reuse` reuse an earlier run
/// in selective runs ([`reuse_earlier`]); `migrations` is the migration chain.
pub fn table_system(
    table: &Table<'_>,
    reuse: &[&str],
    migrations: &'static [(u32, &'static str)],
) -> &'static SystemSpec {
    let flow_names: TableSet<&str> = table.iter().map(|(f, _)| *f).collect();
    let mut task_names: TableSet<&str> = TableSet::new();
    for (_, edges) in table {
        for (from, to) in edges.iter() {
            task_names.extend(
                from.iter()
                    .chain(to.iter())
                    .filter(|n| !flow_names.contains(*n)),
            );
        }
    }
    let reuse: Vec<&'static str> = reuse.iter().map(|r| leak_name(r)).collect();
    let tasks: Vec<TaskSpec> = task_names
        .iter()
        .map(|t| {
            let n = leak_name(t);
            TaskSpec {
                selective_run_function: reuse.contains(&n).then_some(
                    &reuse_earlier
                        as &'static (dyn Fn(&SelectiveRunInput<'_>) -> Option<String>
                                      + Send
                                      + Sync),
                ),
                ..task(n)
            }
        })
        .collect();
    let mut flows: Vec<&'static FlowSpec> = Vec::new();
    for (flow, edges) in table {
        let edge_specs: Vec<EdgeSpec> = edges
            .iter()
            .enumerate()
            .map(|(i, (from, to))| EdgeSpec {
                index: i,
                origin: "flows.yml:1",
                from: leak(from.iter().map(|n| leak_name(n)).collect()),
                to: leak(to.iter().map(|n| leak_name(n)).collect()),
                reads: &[],
                condition: &always,
                condition_str: "{\"name\": \"alwaysTrue\"}",
                foreach: None,
                selective: None,
            })
            .collect();
        let edge_specs: &'static [EdgeSpec] = leak(edge_specs);
        let mut nodes: TableSet<&'static str> = TableSet::new();
        for e in edge_specs {
            nodes.extend(e.from.iter().chain(e.to.iter()));
        }
        let nodes: Vec<NodeSpec> = nodes
            .into_iter()
            .map(|n| NodeSpec {
                name: n,
                kind: if flow_names.contains(n) {
                    NodeKind::Flow
                } else {
                    NodeKind::Task
                },
            })
            .collect();
        let mut from_map: TableMap<&'static str, Vec<usize>> = TableMap::new();
        for e in edge_specs {
            for s in e.from {
                from_map.entry(s).or_default().push(e.index);
            }
        }
        let from_map: TableMap<&'static str, &'static [usize]> =
            from_map.into_iter().map(|(k, v)| (k, leak(v))).collect();
        let edges_from = Box::leak(Box::new(move |n: &str| -> &'static [usize] {
            from_map.get(n).copied().unwrap_or(&[])
        }));
        flows.push(Box::leak(Box::new(FlowSpec {
            name: leak_name(flow),
            origin: "flows.yml:1",
            queue: "flows",
            nodes: leak(nodes),
            edges: edge_specs,
            edges_from,
            fallbacks: &|_| &[],
            nowait: &[],
            eager_failures: &[],
            node_args_from_first: false,
            propagate: PropagateSpec::default(),
            max_retry: 0,
            retry_countdown: std::time::Duration::ZERO,
            throttling: None,
            cache: None,
        })));
    }
    Box::leak(Box::new(SystemSpec {
        files: &["nodes.yml", "flows.yml"],
        content_hash: "sha256:test",
        tasks: leak(tasks),
        flows: leak(flows),
        storages: &STORAGES,
        trace: &[],
        migration_dir: (!migrations.is_empty()).then_some(MigrationDir {
            path: "migration_dir",
            files: migrations,
        }),
        run_task: &table_run_task,
    }))
}

/// A selective run function: reuse the run `earlier-<Task>` (as if found in a storage).
pub fn reuse_earlier(input: &SelectiveRunInput<'_>) -> Option<String> {
    Some(format!("earlier-{}", input.node_name))
}
