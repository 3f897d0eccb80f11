//! Shared test support: the task the tests' YAML names (`import: common`, `classname:
//! Scripted`), whose behaviour each test sets; a selective run function; and a stepper that
//! drives the engine pass by pass the way upstream's tests drive `SystemState.update()`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selinon_runtime::engine::{
    dispatch, Action, DispatcherMessage, EngineEnv, FlowResult, FlowState, NodeEvent, PassOutcome,
    Throttler,
};
use selinon_runtime::spec::{SelectiveRunInput, SystemSpec};
use selinon_runtime::trace::Tracer;
use selinon_runtime::{
    json, Json, StorageError, System, Task, TaskContext, TaskError, TaskResult, TraceRecorder,
};

/// What a scripted task does on a run.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Returns this value on every run.
    Result(Json),
    /// One value per run (over all instances), the last repeating.
    Results(Vec<Json>),
    /// Fails on every run.
    Fail,
    /// Fails on every run with this error text.
    FailWith(&'static str),
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
    /// What a fallback read of why its failed nodes failed: (node, error text) of every node
    /// it handles.
    pub parent_exceptions: Vec<(String, Option<String>)>,
    /// The same for failed sub-flows: (node, their reasons as text).
    pub parent_flow_exceptions: Vec<(String, Option<String>)>,
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
    type Args = Json;
    type Output = Json;

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
                parent_exceptions: ctx
                    .fallback_for
                    .iter()
                    .flat_map(|f| f.nodes.keys())
                    .map(|n| (n.clone(), ctx.parent_task_exception(n).map(String::from)))
                    .collect(),
                parent_flow_exceptions: ctx
                    .fallback_for
                    .iter()
                    .flat_map(|f| f.nodes.keys())
                    .map(|n| {
                        (
                            n.clone(),
                            ctx.parent_flow_exception(n).map(|f| f.to_string()),
                        )
                    })
                    .collect(),
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
            Some(Behaviour::FailWith(text)) => Err(TaskError::failed(text)),
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
    pub system: System,
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
            system: System::new(system),
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
        let out = dispatch(&self.system, &self.message, &events, &self.env).await;
        if matches!(out.outcome, PassOutcome::RetryPass { .. }) || out.failure.is_some() {
            // The pass changes its message in place and must undo what it did.
            assert_eq!(
                out.message, self.message,
                "a pass to repeat, or failed as a dispatcher, gives its input back"
            );
        }
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

/// The line (1-based) of the first line of `source` holding `needle`: where a test's inline
/// YAML defines something, for checking the origins the runtime reports.
pub fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` is not in the source"))
}

/// Sorted copy, for comparing sets.
pub fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// A selective run function (`selective_run_function: {name: reuse_earlier, import: common}`):
/// reuse the run `earlier-<Task>` (as if found in a storage).
pub fn reuse_earlier(input: &SelectiveRunInput<'_>) -> Option<String> {
    Some(format!("earlier-{}", input.node_name))
}
