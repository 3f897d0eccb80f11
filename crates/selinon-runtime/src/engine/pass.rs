//! One dispatcher pass (spec §3.2), upstream `Dispatcher.run` + `SystemState.update`.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{json, Map, Value as Json};

use super::migration::{self, Migrated, TaintedFlowStrategy};
use super::state::{
    Action, DispatcherMessage, FlowFailure, FlowResult, FlowState, NodeEvent, NodeIds, NodeRef,
    NodeStatus, PassOutcome, PassOutput, TaskMessage,
};
use super::{EngineEnv, RunSubsequent, SelectiveMap, MIN_PASS_RETRY};
use crate::spec::{ConditionFn, Db, EdgeSpec, SelectiveRunInput, TaskSpec};
use crate::system::{Flow, NodeId, NodeKind, System};
use crate::trace::{TraceEvent, Tracer};
use crate::userfn::{StorageView, UserFnError};

/// Why a pass stopped early.
enum PassError {
    /// Upstream `FlowError`: the flow failed, with the state to report.
    Flow(FlowResult),
    /// Upstream `DispatcherRetry(keep_state=True)`: repeat the pass later on the same input
    /// (with why, when a user function asked for it).
    Retry(Option<String>),
    /// Anything else (upstream `DISPATCHER_FAILURE`): the flow fails at once, no retry.
    Dispatcher(String),
}

/// Runs one dispatcher pass of the flow instance `input` after the completions `events`.
///
/// Events for ids that are not active nodes of the flow (stale ids of an abandoned attempt,
/// `nowait` nodes) are ignored. On the first pass (`input.state` is `None`) the flow starts.
///
/// The pass runs in a `dispatcher` span (target `selinon`, level info) with fields
/// `flow_name` and `dispatcher_id`.
///
/// This clones `input`; [`dispatch_owned`] takes it by value, which a transport that is done
/// with the message should prefer: a pass then costs in proportion to what changed, not to the
/// size of the flow's state.
pub async fn dispatch(
    system: &System,
    input: &DispatcherMessage,
    events: &[NodeEvent],
    env: &dyn EngineEnv,
) -> PassOutput {
    dispatch_owned(system, input.clone(), events, env).await
}

/// [`dispatch`], taking the message by value: the pass changes it in place. When the pass must
/// be run again ([`PassOutcome::RetryPass`]) or the dispatcher fails the flow, the returned
/// message is `input` as it was given (the pass undoes what it did).
pub async fn dispatch_owned(
    system: &System,
    input: DispatcherMessage,
    events: &[NodeEvent],
    env: &dyn EngineEnv,
) -> PassOutput {
    let span = tracing::info_span!(
        target: "selinon",
        "dispatcher",
        flow_name = %input.flow_name,
        dispatcher_id = %input.flow_id,
    );
    tracing::Instrument::instrument(dispatch_in_span(system, input, events, env), span).await
}

/// What a pass changed in the message it was given, to give it back as it was when the pass
/// must be run again or fails as a dispatcher: the changes of a pass are few (the nodes that
/// ended, those it started), so undoing them costs far less than a copy of the whole state.
#[derive(Clone, Debug, Default)]
struct Undo {
    /// The whole input, kept when a migration changes the message (rare).
    input: Option<DispatcherMessage>,
    /// Whether the input had a state (`None` before the first pass).
    had_state: bool,
    /// The input's migration version (set on the first pass).
    migration_version: Option<u32>,
    /// `node_args` and `initial_node_args` before `node_args_from_first` replaced them.
    node_args: Option<(Json, Option<Json>)>,
    /// Active nodes that ended in this pass, at their positions in the input (ascending).
    removed_active: Vec<(usize, NodeRef)>,
    /// How many active nodes were left after the ended ones were taken out (nodes started by
    /// the pass come after them).
    active_base: usize,
    /// The active nodes that finished in this pass, at their positions in the input, when the
    /// caller asked for [`PassChanges`] (they join `removed_active` only when the pass gives
    /// its input back).
    ended_finished: Vec<(usize, NodeRef)>,
    /// One entry per id pushed to the finished ids, in order: the node's name, and whether
    /// the push made the name's list.
    finished: Vec<(Cow<'static, str>, bool)>,
    waiting_edges: usize,
    triggered_edges: usize,
    /// `failed_nodes` and `failure_reasons` before the pass changed either (copied once, by the
    /// first change: failures are rare).
    failures: Option<(
        NodeIds,
        std::collections::BTreeMap<String, super::FailureReason>,
    )>,
}

impl Undo {
    fn of(msg: &DispatcherMessage) -> Self {
        let state = msg.state.as_ref();
        Undo {
            had_state: state.is_some(),
            migration_version: msg.migration_version,
            active_base: state.map_or(0, |s| s.active_nodes.len()),
            waiting_edges: state.map_or(0, |s| s.waiting_edges.len()),
            triggered_edges: state.map_or(0, |s| s.triggered_edges.len()),
            ..Undo::default()
        }
    }

    /// Notes that an id is about to be pushed to the finished ids of `name` (the flow's own
    /// name for the node, when it has one: no copy).
    fn finished(&mut self, state: &FlowState, name: &str, of_flow: Option<&'static str>) {
        let created = !state.finished_nodes.contains_key(name);
        let name = match of_flow {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(name.to_string()),
        };
        self.finished.push((name, created));
    }

    /// Notes that the failed nodes or their reasons are about to change.
    fn failures(&mut self, state: &FlowState) {
        if self.failures.is_none() {
            self.failures = Some((state.failed_nodes.clone(), state.failure_reasons.clone()));
        }
    }

    /// The message as the pass was given it.
    fn restore(self, mut msg: DispatcherMessage, mut state: FlowState) -> DispatcherMessage {
        if let Some(input) = self.input {
            return input;
        }
        if let Some((node_args, initial)) = self.node_args {
            msg.node_args = node_args;
            msg.initial_node_args = initial;
        }
        msg.migration_version = self.migration_version;
        state.active_nodes.truncate(self.active_base);
        for (at, node) in self.removed_active {
            state.active_nodes.insert(at, node);
        }
        for (name, created) in self.finished.into_iter().rev() {
            if created {
                state.finished_nodes.remove(&*name);
            } else if let Some(ids) = state.finished_nodes.get_mut(&*name) {
                ids.pop();
            }
        }
        state.waiting_edges.truncate(self.waiting_edges);
        state.triggered_edges.truncate(self.triggered_edges);
        if let Some((failed, reasons)) = self.failures {
            state.failed_nodes = failed;
            state.failure_reasons = reasons;
        }
        msg.state = self.had_state.then_some(state);
        msg
    }
}

/// What a pass changed in the message it was given ([`PassOutput::changes`]): a transport that
/// stores what changed rather than whole states reads it here (the distributed runtime's flow
/// records, `crate::backend::FlowDelta`), and [`PassChanges::restore`] gives the input back
/// (to redo the pass on a newer state), both at the cost of the changes, not of the state.
#[derive(Clone, Debug)]
pub struct PassChanges {
    undo: Undo,
}

impl PassChanges {
    /// The message as the pass was given it, from the one it returned.
    pub fn restore(self, mut output: DispatcherMessage) -> DispatcherMessage {
        let state = output.state.take().unwrap_or_default();
        let mut undo = self.undo;
        undo.removed_active
            .extend(std::mem::take(&mut undo.ended_finished));
        undo.removed_active.sort_unstable_by_key(|(at, _)| *at);
        undo.restore(output, state)
    }

    /// Whether the other methods tell every change: the input had a state (it was not the
    /// flow's first pass) and no migration rewrote it.
    pub fn is_incremental(&self) -> bool {
        self.undo.had_state && self.undo.input.is_none()
    }

    /// The ids of the active nodes that ended in the pass, in their order in the input.
    pub fn ended(&self) -> Vec<&str> {
        let mut ended: Vec<(usize, &str)> = self
            .undo
            .removed_active
            .iter()
            .map(|(at, node)| (*at, node.id.as_str()))
            .chain(
                self.undo
                    .ended_finished
                    .iter()
                    .map(|(at, node)| (*at, node.id.as_str())),
            )
            .collect();
        ended.sort_unstable_by_key(|(at, _)| *at);
        ended.into_iter().map(|(_, id)| id).collect()
    }

    /// How many of the output's first active nodes were active before the pass; the nodes
    /// after them were started by it.
    pub fn kept_active(&self) -> usize {
        self.undo.active_base
    }

    /// The node names whose finished ids grew, with how many ids each gained (at the end of
    /// its list).
    pub fn finished_added(&self) -> Vec<(&str, usize)> {
        let mut added: Vec<(&str, usize)> = Vec::new();
        for (name, _) in &self.undo.finished {
            match added.iter_mut().find(|(n, _)| *n == name.as_ref()) {
                Some((_, count)) => *count += 1,
                None => added.push((name.as_ref(), 1)),
            }
        }
        added
    }

    /// Whether the failed nodes or their reasons changed.
    pub fn failures_changed(&self) -> bool {
        self.undo.failures.is_some()
    }

    /// How many waiting and triggered edges the input had (the lists only grow).
    pub fn edges_before(&self) -> (usize, usize) {
        (self.undo.waiting_edges, self.undo.triggered_edges)
    }

    /// Whether a field of the message other than its state changed (`node_args_from_first`,
    /// the migration version).
    pub fn head_changed(&self, output: &DispatcherMessage) -> bool {
        self.undo.node_args.is_some() || self.undo.migration_version != output.migration_version
    }
}

async fn dispatch_in_span(
    system: &System,
    input: DispatcherMessage,
    events: &[NodeEvent],
    env: &dyn EngineEnv,
) -> PassOutput {
    let tracer = env.tracer().clone();
    tracer.emit_with(TraceEvent::DispatcherWakeup, || {
        json!({
            "flow_name": input.flow_name,
            "dispatcher_id": input.flow_id,
            "node_args": input.node_args,
            "parent": input.parent,
            "retried_count": input.retried_count,
            "state": input.state,
            "queue": system.flow(&input.flow_name).map(|f| f.spec.queue),
        })
    });
    let Some(flow) = system.flow(&input.flow_name) else {
        let what = format!("unknown flow `{}`", input.flow_name);
        return dispatcher_failure(&tracer, input, what);
    };

    let mut undo = Undo::of(&input);
    if migration::pending(system.spec, &input) {
        undo.input = Some(input.clone());
    }
    let mut msg = match apply_migrations(system, flow.spec, input, &mut undo, &tracer) {
        Ok(msg) => msg,
        Err(output) => return *output,
    };
    // The pass owns the state; the message gets it back when the pass ends.
    let state = msg.state.take().unwrap_or_default();
    let retried_count = msg.retried_count;
    let mut pass = Pass {
        system,
        flow,
        spec: flow.spec,
        env,
        tracer: tracer.clone(),
        msg,
        state,
        actions: Vec::new(),
        reused: Vec::new(),
        nowait_started: 0,
        undo,
    };
    let run = AssertUnwindSafe(pass.update(events)).catch_unwind().await;
    let result = match run {
        Ok(r) => r,
        Err(panic) => Err(PassError::Dispatcher(format!(
            "panic in the pass (condition, foreach, selective run function or fallback \
             condition): {}",
            panic_message(&*panic)
        ))),
    };
    let Pass {
        mut msg,
        state,
        actions,
        undo,
        ..
    } = pass;

    match result {
        Ok(()) => {
            let done = state.active_nodes.is_empty();
            msg.state = Some(state);
            let st = msg.state.as_ref().expect("just set");
            if done {
                let result = FlowResult::of_state(st, Vec::new());
                tracer.emit_with(TraceEvent::FlowEnd, || {
                    json!({
                        "flow_name": msg.flow_name,
                        "dispatcher_id": msg.flow_id,
                        "node_args": msg.node_args,
                        "parent": msg.parent,
                        "retried_count": msg.retried_count,
                        "queue": flow.spec.queue,
                        "state": st,
                    })
                });
                PassOutput {
                    changes: Some(PassChanges { undo }),
                    failure: None,
                    message: msg,
                    actions,
                    outcome: PassOutcome::Finished(result),
                }
            } else {
                // Upstream's dispatcher re-queues itself here to look again after `retry`
                // seconds; ours waits for the next node event, so there is no `retry`.
                tracer.emit_with(TraceEvent::DispatcherRetry, || {
                    json!({
                        "flow_name": msg.flow_name,
                        "dispatcher_id": msg.flow_id,
                        "node_args": msg.node_args,
                        "parent": msg.parent,
                        "retried_count": msg.retried_count,
                        "queue": flow.spec.queue,
                        "state": st,
                        "selective": msg.selective,
                        "migration_version": msg.migration_version,
                    })
                });
                PassOutput {
                    changes: Some(PassChanges { undo }),
                    failure: None,
                    message: msg,
                    actions,
                    outcome: PassOutcome::Running,
                }
            }
        }
        Err(PassError::Flow(reported)) => {
            let will_retry = retried_count < flow.spec.max_retry;
            tracer.emit_with(TraceEvent::FlowFailure, || {
                json!({
                    "flow_name": msg.flow_name,
                    "dispatcher_id": msg.flow_id,
                    "node_args": msg.node_args,
                    "parent": msg.parent,
                    "retried_count": msg.retried_count,
                    "queue": flow.spec.queue,
                    "state": reported,
                    "will_retry": will_retry,
                })
            });
            if will_retry {
                let node_args = msg.initial_node_args.take().unwrap_or(msg.node_args);
                let restart = DispatcherMessage {
                    flow_name: msg.flow_name,
                    flow_id: msg.flow_id,
                    node_args,
                    parent: msg.parent,
                    retried_count: retried_count + 1,
                    state: None,
                    initial_node_args: None,
                    selective: msg.selective,
                    migration_version: None,
                };
                let countdown = flow.spec.retry_countdown;
                tracer.emit_with(TraceEvent::FlowRetry, || {
                    json!({
                        "flow_name": restart.flow_name,
                        "dispatcher_id": restart.flow_id,
                        "node_args": restart.node_args,
                        "parent": restart.parent,
                        "retried_count": restart.retried_count,
                        "countdown": countdown.as_secs_f64(),
                        "queue": flow.spec.queue,
                    })
                });
                PassOutput {
                    changes: None,
                    failure: None,
                    message: restart,
                    actions,
                    outcome: PassOutcome::Restart { countdown },
                }
            } else {
                msg.state = Some(state);
                PassOutput {
                    changes: None,
                    failure: None,
                    message: msg,
                    actions,
                    outcome: PassOutcome::Failed(reported),
                }
            }
        }
        Err(PassError::Retry(what)) => {
            let input = undo.restore(msg, state);
            let countdown = flow.spec.retry_countdown.max(MIN_PASS_RETRY);
            tracer.emit_with(TraceEvent::FlowRetry, || {
                let mut info = json!({
                    "flow_name": input.flow_name,
                    "dispatcher_id": input.flow_id,
                    "node_args": input.node_args,
                    "parent": input.parent,
                    "retried_count": input.retried_count,
                    "countdown": countdown.as_secs_f64(),
                    "queue": flow.spec.queue,
                    "keep_state": true,
                });
                if let Some(what) = &what {
                    info["what"] = json!(what);
                }
                info
            });
            PassOutput {
                changes: None,
                failure: None,
                message: input,
                actions: Vec::new(),
                outcome: PassOutcome::RetryPass { countdown },
            }
        }
        Err(PassError::Dispatcher(what)) => {
            dispatcher_failure(&tracer, undo.restore(msg, state), what)
        }
    }
}

/// Brings the message to the latest migration (§3.17); `Err` when the pass must not go on.
fn apply_migrations(
    system: &System,
    flow: &crate::spec::FlowSpec,
    mut msg: DispatcherMessage,
    undo: &mut Undo,
    tracer: &Tracer,
) -> Result<DispatcherMessage, Box<PassOutput>> {
    let migrated = migration::migrate(system.spec, &mut msg);
    if migrated == Migrated::Unchanged {
        return Ok(msg);
    }
    let (flow_name, flow_id) = (msg.flow_name.clone(), msg.flow_id.clone());
    let info = |extra: Json| {
        let mut info = json!({
            "flow_name": flow_name,
            "dispatcher_id": flow_id,
            "queue": flow.queue,
        });
        if let (Some(map), Json::Object(extra)) = (info.as_object_mut(), extra) {
            map.extend(extra);
        }
        info
    };
    // The message as the pass was given it (a migration that changed more than the version
    // only happens with a copy of the input at hand).
    let input = |undo: &mut Undo, mut msg: DispatcherMessage| {
        undo.input.take().unwrap_or_else(|| {
            msg.migration_version = undo.migration_version;
            msg
        })
    };
    let retry_pass = |message: DispatcherMessage| {
        Box::new(PassOutput {
            changes: None,
            failure: None,
            message,
            actions: Vec::new(),
            outcome: PassOutcome::RetryPass {
                countdown: flow.retry_countdown.max(MIN_PASS_RETRY),
            },
        })
    };
    match migrated {
        Migrated::Unchanged => Ok(msg),
        Migrated::Applied { from, to, tainted } => {
            tracer.emit_with(TraceEvent::Migration, || {
                info(json!({
                    "migration_version": from,
                    "latest_migration_version": to,
                    "tainted_flow": tainted,
                }))
            });
            Ok(msg)
        }
        Migrated::Skew { message, latest } => {
            tracer.emit_with(TraceEvent::MigrationSkew, || {
                info(json!({
                    "migration_version": message,
                    "latest_migration_version": latest,
                    "what": "the message comes from a newer configuration than this worker's; it is put back",
                }))
            });
            Err(retry_pass(input(undo, msg)))
        }
        Migrated::Error(what) => {
            tracer.emit_with(TraceEvent::MigrationError, || info(json!({"what": what})));
            Err(retry_pass(input(undo, msg)))
        }
        Migrated::Tainted {
            strategy,
            version,
            what,
        } => {
            tracer.emit_with(TraceEvent::MigrationTaintedFlow, || {
                info(json!({
                    "migration_version": version,
                    "tainted_flow_strategy": format!("{strategy:?}").to_uppercase(),
                    "what": what,
                }))
            });
            if strategy == TaintedFlowStrategy::Retry {
                // From scratch, not counted as a flow retry.
                let mut restart = msg;
                restart.node_args = restart
                    .initial_node_args
                    .take()
                    .unwrap_or(restart.node_args);
                restart.state = None;
                restart.migration_version = None;
                return Err(Box::new(PassOutput {
                    changes: None,
                    failure: None,
                    message: restart,
                    actions: Vec::new(),
                    outcome: PassOutcome::Restart {
                        countdown: Duration::ZERO,
                    },
                }));
            }
            let input = input(undo, msg);
            let state = input.state.clone().unwrap_or_default();
            Err(Box::new(PassOutput {
                changes: None,
                failure: None,
                message: input,
                actions: Vec::new(),
                outcome: PassOutcome::Failed(FlowResult::of_state(
                    &state,
                    state.active_nodes.clone(),
                )),
            }))
        }
    }
}

fn dispatcher_failure(tracer: &Tracer, input: DispatcherMessage, what: String) -> PassOutput {
    tracer.emit_with(TraceEvent::DispatcherFailure, || {
        json!({
            "flow_name": input.flow_name,
            "dispatcher_id": input.flow_id,
            "node_args": input.node_args,
            "parent": input.parent,
            "retried_count": input.retried_count,
            "state": input.state,
            "what": what,
        })
    });
    let outcome = match &input.state {
        Some(state) => FlowResult::of_state(state, state.active_nodes.clone()),
        None => FlowResult::default(),
    };
    PassOutput {
        changes: None,
        failure: Some(what),
        message: input,
        actions: Vec::new(),
        outcome: PassOutcome::Failed(outcome),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

struct Pass<'a> {
    system: &'a System,
    flow: &'a Flow,
    spec: &'static crate::spec::FlowSpec,
    env: &'a dyn EngineEnv,
    tracer: Tracer,
    msg: DispatcherMessage,
    state: FlowState,
    actions: Vec<Action>,
    /// Nodes a selective run reuses from an earlier run: finished as soon as started.
    reused: Vec<NodeRef>,
    /// `nowait` nodes this pass started (they are not in the state).
    nowait_started: usize,
    /// How to give the input back when the pass must not change it.
    undo: Undo,
}

/// What a selective run lets an edge do.
enum Allowed<'m> {
    /// Not a selective run (or the flow is not part of it): everything.
    All,
    /// The edge may not fire.
    Omit,
    /// The edge may start these `to` nodes (empty: all).
    Nodes(&'m [String]),
}

/// The product of the candidate id lists, in `itertools.product` order (last varies fastest).
fn cartesian(lists: &[&[String]]) -> Vec<Vec<String>> {
    if lists.iter().any(|l| l.is_empty()) {
        return Vec::new();
    }
    if lists.iter().all(|l| l.len() == 1) {
        return vec![lists.iter().map(|l| l[0].clone()).collect()];
    }
    let mut out = Vec::new();
    let mut idx = vec![0usize; lists.len()];
    loop {
        out.push(idx.iter().zip(lists).map(|(i, l)| l[*i].clone()).collect());
        let mut k = lists.len();
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            if idx[k] < lists[k].len() {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// The `k`-element combinations of `items`, in `itertools.combinations` (lexicographic) order.
fn combinations<'s>(items: &[&'s str], k: usize) -> Vec<Vec<&'s str>> {
    let n = items.len();
    if k == 0 || k > n {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        out.push(idx.iter().map(|i| items[*i]).collect());
        // The rightmost index that can still move right.
        let Some(i) = (0..k).rev().find(|&i| idx[i] != i + n - k) else {
            return out;
        };
        idx[i] += 1;
        for j in i + 1..k {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

/// The positions of the nodes of `active` that an event of `events` ended, with the event (the
/// first one for the node's id), in the order of `active`. The look-up stops once every event
/// found its node: nodes mostly end in the order they started, so it seldom goes far into a
/// long list of active nodes.
fn ended_nodes<'e>(active: &[NodeRef], events: &'e [NodeEvent]) -> Vec<(usize, &'e NodeEvent)> {
    // The first event of each id, sorted by id.
    let mut by_id: Vec<&NodeEvent> = events.iter().collect();
    by_id.sort_by(|a, b| a.id.cmp(&b.id)); // stable: the first event of an id comes first
    by_id.dedup_by(|later, first| later.id == first.id);
    let mut ended = Vec::with_capacity(by_id.len());
    for (at, node) in active.iter().enumerate() {
        if ended.len() == by_id.len() {
            break;
        }
        let i = by_id.partition_point(|e| e.id < node.id);
        if let Some(event) = by_id.get(i).filter(|e| e.id == node.id) {
            ended.push((at, *event));
        }
    }
    ended
}

impl Pass<'_> {
    fn info(&self) -> Json {
        json!({
            "flow_name": self.msg.flow_name,
            "dispatcher_id": self.msg.flow_id,
        })
    }

    fn info_with(&self, extra: Json) -> Json {
        let mut info = self.info();
        if let (Some(map), Json::Object(extra)) = (info.as_object_mut(), extra) {
            map.extend(extra);
        }
        info
    }

    async fn update(&mut self, events: &[NodeEvent]) -> Result<(), PassError> {
        if self.state.is_fresh() {
            self.start().await
        } else {
            self.continue_flow(events).await
        }
    }

    /// START: fire the starting edges (conditions over the parent map handed by the parent flow).
    async fn start(&mut self) -> Result<(), PassError> {
        self.tracer.emit_with(TraceEvent::FlowStart, || {
            self.info_with(json!({
                "queue": self.spec.queue,
                "node_args": self.msg.node_args,
                "parent": self.msg.parent,
                "retried_count": self.msg.retried_count,
            }))
        });
        let parent = match &self.msg.parent {
            Json::Null => Json::Object(Map::new()),
            p => p.clone(),
        };
        let mut started = Vec::new();
        let flow = self.flow;
        for &i in &flow.starting_edges {
            let edge = &self.spec.edges[i];
            if let Allowed::Omit = self.allowed(i) {
                self.selective_omit_edge(edge, i);
                continue;
            }
            let results = self
                .fetch_reads(edge, |name| {
                    parent.get(name).and_then(Json::as_str).map(str::to_string)
                })
                .await?;
            if self
                .holds(edge.condition, edge.condition_blocking, &results)
                .await?
            {
                let db = Db::new(results.iter().map(|(n, v)| (*n, v)));
                let s = self.fire(i, &db, &parent, true).await?;
                started.extend(s);
                self.trigger(i);
            } else {
                self.edge_cond_false(edge, &parent);
            }
        }
        self.update_waiting_edges(&started);
        self.finish_reused().await
    }

    /// What the selective run (if any) lets edge `index` of this flow do.
    fn allowed(&self, index: usize) -> Allowed<'_> {
        match &self.msg.selective {
            Some(map) if map.covers(self.spec.name) => match map.allowed(self.spec.name, index) {
                Some(nodes) => Allowed::Nodes(nodes),
                None => Allowed::Omit,
            },
            _ => Allowed::All,
        }
    }

    fn selective_omit_edge(&self, edge: &EdgeSpec, index: usize) {
        self.tracer.emit_with(TraceEvent::SelectiveOmitEdge, || {
            self.info_with(json!({
                "nodes_from": edge.from,
                "nodes_to": edge.to,
                "edge_index": index,
            }))
        });
    }

    /// Selectively reused nodes count as finished in the same pass.
    async fn finish_reused(&mut self) -> Result<(), PassError> {
        while !self.reused.is_empty() {
            let nodes = std::mem::take(&mut self.reused);
            self.update_waiting_edges(&nodes);
            self.start_new(&nodes).await?;
        }
        Ok(())
    }

    /// CONTINUE: collect the ended nodes, fire edges, then handle failures.
    async fn continue_flow(&mut self, events: &[NodeEvent]) -> Result<(), PassError> {
        // The active nodes that ended (by their position), in scheduling order.
        let ended = ended_nodes(&self.state.active_nodes, events);
        if ended.is_empty() {
            return Ok(());
        }
        let mut something_failed = false;
        for &(at, event) in &ended {
            let node = &self.state.active_nodes[at];
            match event.status {
                NodeStatus::Finished => {
                    self.tracer.emit_with(TraceEvent::NodeSuccessful, || {
                        self.info_with(json!({"node_name": node.name, "node_id": node.id}))
                    });
                }
                NodeStatus::Failed => {
                    let reason = event.reason.as_ref();
                    self.tracer.emit_with(TraceEvent::NodeFailure, || {
                        let mut info = json!({"node_name": node.name, "node_id": node.id});
                        if let Some(reason) = reason {
                            info["reason"] = json!(reason);
                        }
                        self.info_with(info)
                    });
                    self.undo.failures(&self.state);
                    let node = &self.state.active_nodes[at];
                    self.state
                        .failed_nodes
                        .entry(node.name.clone())
                        .or_default()
                        .push(node.id.clone());
                    if let Some(reason) = reason {
                        self.state
                            .failure_reasons
                            .insert(node.id.clone(), reason.clone());
                    }
                    if self.flow.node(&node.name).is_some_and(|n| n.eager_failure) {
                        self.tracer.emit_with(TraceEvent::EagerFailure, || {
                            self.info_with(json!({"node_name": node.name, "node_id": node.id}))
                        });
                        let mut others = std::mem::take(&mut self.state.active_nodes);
                        others.remove(at);
                        let reported = FlowResult::of_state(&self.state, others);
                        self.state.active_nodes = reported.active_nodes.clone();
                        return Err(PassError::Flow(reported));
                    }
                    something_failed = true;
                }
            }
        }
        // Out of the active nodes (the failed ones to the undo record).
        let ended: Vec<(usize, NodeStatus)> = ended.iter().map(|(at, e)| (*at, e.status)).collect();
        let finished = self.take_ended(&ended);
        let run = AssertUnwindSafe(self.after_ended(&finished, something_failed))
            .catch_unwind()
            .await;
        if !matches!(run, Ok(Ok(()))) {
            // The pass gives its input back: the finished nodes go back among the active ones.
            let at = ended
                .iter()
                .filter(|(_, status)| *status == NodeStatus::Finished)
                .map(|(at, _)| *at);
            self.undo.removed_active.extend(at.zip(finished));
            self.undo.removed_active.sort_unstable_by_key(|(at, _)| *at);
        }
        match run {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Takes the ended nodes (positions in scheduling order) out of the active ones, in one
    /// sweep from the first; returns the finished ones, and notes the failed ones in the undo
    /// record (the finished ones join them only when the pass must give its input back).
    fn take_ended(&mut self, ended: &[(usize, NodeStatus)]) -> Vec<NodeRef> {
        let Some(&(first, _)) = ended.first() else {
            return Vec::new();
        };
        let active = &mut self.state.active_nodes;
        let removed: Vec<NodeRef> = if ended.len() <= 8 {
            // A few: one move of the rest of the list each.
            let mut removed: Vec<NodeRef> = ended
                .iter()
                .rev()
                .map(|&(at, _)| active.remove(at))
                .collect();
            removed.reverse();
            removed
        } else {
            let mut at = first;
            let mut next = ended.iter().map(|(at, _)| *at).peekable();
            active
                .extract_if(first.., |_| {
                    let here = at;
                    at += 1;
                    next.next_if(|e| *e == here).is_some()
                })
                .collect()
        };
        self.undo.active_base = self.state.active_nodes.len();
        let mut finished = Vec::with_capacity(removed.len());
        for (&(at, status), node) in ended.iter().zip(removed) {
            if status == NodeStatus::Finished {
                self.undo.ended_finished.push((at, node.clone()));
                finished.push(node);
            } else {
                self.undo.removed_active.push((at, node));
            }
        }
        finished
    }

    /// What follows the end of `finished` nodes (and the failure of others): fire edges, run
    /// fallbacks.
    async fn after_ended(
        &mut self,
        finished: &[NodeRef],
        something_failed: bool,
    ) -> Result<(), PassError> {
        if finished.is_empty() && !something_failed {
            return Ok(());
        }
        self.update_waiting_edges(finished);
        self.start_new(finished).await?;
        self.finish_reused().await?;
        if self.state.active_nodes.is_empty() && !self.state.failed_nodes.is_empty() {
            let fallbacks = self.run_fallbacks().await?;
            if fallbacks.is_empty() && !self.state.failed_nodes.is_empty() {
                return Err(PassError::Flow(FlowResult::of_state(
                    &self.state,
                    Vec::new(),
                )));
            }
        }
        Ok(())
    }

    /// Adds to the waiting edges every edge having one of `nodes` as a source.
    fn update_waiting_edges(&mut self, nodes: &[NodeRef]) {
        let flow = self.flow;
        for node in nodes {
            let Some(n) = flow.node(&node.name) else {
                continue;
            };
            if n.nowait {
                continue;
            }
            for &idx in &n.edges_from {
                if let Allowed::Omit = self.allowed(idx) {
                    self.selective_omit_edge(&self.spec.edges[idx], idx);
                    continue;
                }
                if !self.state.waiting_edges.contains(&idx) {
                    self.state.waiting_edges.push(idx);
                }
            }
        }
    }

    fn trigger(&mut self, idx: usize) {
        if !self.state.triggered_edges.contains(&idx) {
            self.state.triggered_edges.push(idx);
        }
    }

    fn edge_cond_false(&self, edge: &EdgeSpec, parent: &Json) {
        self.tracer.emit_with(TraceEvent::EdgeCondFalse, || {
            self.info_with(json!({
                "nodes_to": edge.to,
                "nodes_from": edge.from,
                "condition": edge.condition_str,
                "parent": parent,
                "node_args": self.msg.node_args,
            }))
        });
    }

    /// Reads the results of the edge's `reads` tasks, with their ids from `id_of`.
    async fn fetch_reads(
        &self,
        edge: &EdgeSpec,
        id_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(&'static str, Json)>, PassError> {
        let mut results = Vec::new();
        // A foreach function is user code that may read any source's result (upstream hands
        // it the storage pool): fetch every source task's result for it.
        let names = edge.reads.iter().chain(
            edge.from
                .iter()
                .filter(|n| edge.foreach.is_some() && !edge.reads.contains(n)),
        );
        for &name in names {
            let Some(id) = id_of(name) else { continue };
            if self.system.task(name).and_then(|t| t.storage).is_none() {
                continue;
            }
            match self.env.retrieve(&self.msg.flow_name, name, &id).await {
                Ok(v) => results.push((name, v)),
                Err(err) => {
                    self.tracer.emit_with(TraceEvent::StorageIssue, || {
                        self.info_with(json!({
                            "task_name": name,
                            "task_id": id,
                            "what": err.to_string(),
                        }))
                    });
                    return Err(PassError::Retry(None));
                }
            }
        }
        Ok(results)
    }

    /// START_NEW: fire every waiting edge of each newly finished node, once per combination
    /// of finished instances of its other sources.
    async fn start_new(&mut self, finished: &[NodeRef]) -> Result<(), PassError> {
        if self.spec.node_args_from_first
            && finished.len() == 1
            && self.state.active_nodes.is_empty()
            && self.state.finished_nodes.is_empty()
        {
            let first = &finished[0];
            if self
                .system
                .task(&first.name)
                .and_then(|t| t.storage)
                .is_none()
            {
                return Err(PassError::Dispatcher(format!(
                    "node_args_from_first: `{}` has no storage to read its result from",
                    first.name
                )));
            }
            let value = self
                .env
                .retrieve(&self.msg.flow_name, &first.name, &first.id)
                .await
                .map_err(|e| PassError::Dispatcher(format!("node_args_from_first: {e}")))?;
            if self.undo.node_args.is_none() {
                self.undo.node_args = Some((
                    self.msg.node_args.clone(),
                    self.msg.initial_node_args.clone(),
                ));
            }
            if self.msg.initial_node_args.is_none() {
                self.msg.initial_node_args = Some(self.msg.node_args.clone());
            }
            self.msg.node_args = value;
        }

        for node in finished {
            let flow = self.flow;
            let of_flow = flow.node(&node.name);
            let from_edges = of_flow.map(|n| n.edges_from.as_slice()).unwrap_or_default();
            let edges: Vec<usize> = self
                .state
                .waiting_edges
                .iter()
                .copied()
                .filter(|i| from_edges.contains(i))
                .collect();
            for i in edges {
                let Some(edge) = self.spec.edges.get(i) else {
                    return Err(PassError::Dispatcher(format!(
                        "flow `{}` has no edge {i}",
                        self.spec.name
                    )));
                };
                let mut lists: Vec<&[String]> = Vec::with_capacity(edge.from.len());
                let mut complete = true;
                for &s in edge.from {
                    let list = if s == node.name {
                        std::slice::from_ref(&node.id)
                    } else {
                        self.state
                            .finished_nodes
                            .get(s)
                            .map(Vec::as_slice)
                            .unwrap_or_default()
                    };
                    if list.is_empty() {
                        // A source that has not finished: the edge does not fire yet (the
                        // other sources need not be looked up).
                        complete = false;
                        break;
                    }
                    lists.push(list);
                }
                if !complete {
                    self.check_size(i, 0)?;
                    continue;
                }
                let combinations = lists.iter().fold(1usize, |n, l| n.saturating_mul(l.len()));
                let combos = cartesian(&lists);
                self.check_size(i, combinations)?;
                for (k, combo) in combos.into_iter().enumerate() {
                    if k % 256 == 255 {
                        // A long pass lets the runtime's timers (flow timeouts) fire.
                        tokio::task::yield_now().await;
                    }
                    self.check_size(i, 0)?;
                    let mut parent = Map::new();
                    for (&name, id) in edge.from.iter().zip(&combo) {
                        let node = flow.node(name);
                        if node.is_some_and(|n| n.is_flow()) {
                            let compound = node.is_some_and(|n| n.propagate_compound_finished);
                            if compound || node.is_some_and(|n| n.propagate_finished) {
                                self.extend_parent_from_flow(&mut parent, name, id, compound)
                                    .await?;
                            }
                        } else {
                            parent.insert(name.to_string(), Json::String(id.clone()));
                        }
                    }
                    let results = self
                        .fetch_reads(edge, |n| {
                            edge.from
                                .iter()
                                .position(|s| *s == n)
                                .map(|p| combo[p].clone())
                        })
                        .await?;
                    let parent = Json::Object(parent);
                    if self
                        .holds(edge.condition, edge.condition_blocking, &results)
                        .await?
                    {
                        let db = Db::new(results.iter().map(|(n, v)| (*n, v)));
                        self.fire(i, &db, &parent, false).await?;
                        self.trigger(i);
                    } else {
                        self.edge_cond_false(edge, &parent);
                    }
                }
            }
            self.undo
                .finished(&self.state, &node.name, of_flow.map(|n| n.name));
            self.state
                .finished_nodes
                .entry(node.name.clone())
                .or_default()
                .push(node.id.clone());
        }
        Ok(())
    }

    /// Nodes this flow instance has started (finished, failed and active ones).
    fn size(&self) -> usize {
        let count = |ids: &NodeIds| ids.values().map(Vec::len).sum::<usize>();
        self.state.active_nodes.len()
            + count(&self.state.finished_nodes)
            + count(&self.state.failed_nodes)
            + self.nowait_started
    }

    /// Fails the flow when `edge` firing `more` times would take it past the node limit.
    fn check_size(&self, index: usize, more: usize) -> Result<(), PassError> {
        let edge = &self.spec.edges[index];
        let limit = self.env.max_nodes();
        let size = self.size();
        if size.saturating_add(more) <= limit {
            return Ok(());
        }
        let names = |n: &[&str]| n.join(", ");
        Err(PassError::Dispatcher(format!(
            "flow `{}` would start more than {limit} nodes: it has started {size}, and edge #{} \
             ([{}] → [{}], {}) would fire {} more time{} (a join on a cycle multiplies its \
             instances each round; end the loop with a condition, or raise the limit with \
             `max_nodes_per_flow` if the flow really is this big)",
            self.spec.name,
            index,
            names(edge.from),
            names(edge.to),
            edge.origin,
            more.max(1),
            if more == 1 { "" } else { "s" },
        )))
    }

    /// Adds what the sub-flow instance finished, recursively, to a parent map (§3.9).
    async fn extend_parent_from_flow(
        &self,
        parent: &mut Map<String, Json>,
        flow_name: &str,
        flow_id: &str,
        compound: bool,
    ) -> Result<(), PassError> {
        // (node name, ids, key path) — a stack, as upstream, so ids of nested flows come first.
        let mut stack: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
        let push = |stack: &mut Vec<(String, Vec<String>, Vec<String>)>,
                    of_flow: &str,
                    result: FlowResult,
                    keys: &[String]| {
            for (name, ids) in result.finished_nodes {
                let mut k = keys.to_vec();
                if !compound {
                    k.push(of_flow.to_string());
                }
                stack.push((name, ids, k));
            }
        };
        let top = self.flow_result(flow_name, flow_id).await?;
        push(&mut stack, flow_name, top, &[]);
        while let Some((name, ids, keys)) = stack.pop() {
            if self.system.is_flow(&name) {
                for id in &ids {
                    let nested = self.flow_result(&name, id).await?;
                    push(&mut stack, &name, nested, &keys);
                }
                continue;
            }
            let dst = if compound {
                object_at(parent, &[flow_name.to_string()])
            } else {
                object_at(parent, &keys)
            };
            let list = dst.entry(name).or_insert_with(|| Json::Array(Vec::new()));
            if !list.is_array() {
                *list = Json::Array(Vec::new());
            }
            if let Json::Array(list) = list {
                list.extend(ids.into_iter().map(Json::String));
            }
        }
        Ok(())
    }

    async fn flow_result(&self, flow_name: &str, flow_id: &str) -> Result<FlowResult, PassError> {
        match self.env.flow_result(flow_name, flow_id).await {
            Some(r) => Ok(r),
            None => {
                self.tracer.emit_with(TraceEvent::ResultBackendIssue, || {
                    self.info_with(json!({
                        "node_name": flow_name,
                        "node_id": flow_id,
                        "what": "no result for the sub-flow",
                    }))
                });
                Err(PassError::Retry(None))
            }
        }
    }

    /// Evaluates an edge or fallback condition over the fetched `results`; one that may block
    /// on I/O runs on tokio's blocking threads, so the pass never blocks a runtime thread.
    async fn holds(
        &self,
        condition: ConditionFn,
        blocking: bool,
        results: &[(&'static str, Json)],
    ) -> Result<bool, PassError> {
        if !blocking {
            let db = Db::new(results.iter().map(|(n, v)| (*n, v)));
            return Ok(condition(&db, &self.msg.node_args));
        }
        let results = results.to_vec();
        let node_args = self.msg.node_args.clone();
        tokio::task::spawn_blocking(move || {
            let db = Db::new(results.iter().map(|(n, v)| (*n, v)));
            condition(&db, &node_args)
        })
        .await
        .map_err(|err| {
            let what = match err.try_into_panic() {
                Ok(panic) => panic_message(&*panic),
                Err(err) => err.to_string(),
            };
            PassError::Dispatcher(format!("panic in a condition: {what}"))
        })
    }

    /// What the pass does when a user function (`what`) fails: see [`UserFnError`].
    fn user_fn_error(&self, what: String, err: UserFnError) -> PassError {
        match err {
            UserFnError::Retry(m) => PassError::Retry(Some(format!("{what}: {m}"))),
            UserFnError::Fatal(m) => PassError::Dispatcher(format!("{what}: {m}")),
        }
    }

    /// Starts the destinations of edge `index` (once, or once per `foreach` item); returns
    /// them when the caller `keep`s them.
    async fn fire(
        &mut self,
        index: usize,
        db: &Db<'_>,
        parent: &Json,
        keep: bool,
    ) -> Result<Vec<NodeRef>, PassError> {
        let flow = self.flow;
        let edge: &'static EdgeSpec = &self.spec.edges[index];
        let mut started = Vec::new();
        let to: Cow<'_, [NodeId]> = match self.allowed(index) {
            Allowed::All | Allowed::Nodes([]) => Cow::Borrowed(&flow.edge_to[index]),
            Allowed::Omit => Cow::Owned(Vec::new()),
            Allowed::Nodes(nodes) => {
                let (keep, omit): (Vec<NodeId>, Vec<NodeId>) = flow.edge_to[index]
                    .iter()
                    .partition(|&&t| nodes.iter().any(|n| n == flow.nodes[t].name));
                for node in omit {
                    let node = flow.nodes[node].name;
                    self.tracer.emit_with(TraceEvent::SelectiveOmitNode, || {
                        self.info_with(json!({"node_name": node, "edge_index": index}))
                    });
                }
                Cow::Owned(keep)
            }
        };
        match &edge.foreach {
            Some(foreach) => {
                let view =
                    StorageView::new(self.env.storage_pool(), &self.msg.flow_name, parent, db);
                let items = (foreach.function)(&view, &self.msg.node_args)
                    .await
                    .map_err(|err| {
                        let what = format!(
                            "foreach function `{}` of edge #{index} ({})",
                            foreach.name, edge.origin
                        );
                        self.user_fn_error(what, err)
                    })?;
                self.tracer.emit_with(TraceEvent::ForeachResult, || {
                    self.info_with(json!({
                        "nodes_to": edge.to,
                        "nodes_from": edge.from,
                        "foreach_str": foreach.name,
                        "condition_str": edge.condition_str,
                        "parent": parent,
                        "node_args": self.msg.node_args,
                        "result": items,
                    }))
                });
                for item in items {
                    for &to in to.iter() {
                        let args = if foreach.propagate_result {
                            item.clone()
                        } else {
                            self.msg.node_args.clone()
                        };
                        let force = foreach.propagate_result;
                        started.extend(
                            self.start_node(to, parent, args, Some(edge), force, keep)
                                .await?,
                        );
                    }
                }
            }
            None => {
                for &to in to.iter() {
                    let args = self.msg.node_args.clone();
                    started.extend(
                        self.start_node(to, parent, args, Some(edge), false, keep)
                            .await?,
                    );
                }
            }
        }
        Ok(started)
    }

    /// Schedules one node: a task, or a sub-flow (§3.9 decides its arguments and parent);
    /// returns it when the caller `keep`s it.
    async fn start_node(
        &mut self,
        node: NodeId,
        parent: &Json,
        node_args: Json,
        edge: Option<&'static EdgeSpec>,
        force_node_args: bool,
        keep: bool,
    ) -> Result<Option<NodeRef>, PassError> {
        let node = &self.flow.nodes[node];
        let name = node.name;
        let id = self.env.new_id();
        let nowait = node.nowait;
        if nowait {
            self.nowait_started += 1;
        }
        let condition_str = edge.map(|e| e.condition_str);
        let foreach_str = edge.and_then(|e| e.foreach.as_ref()).map(|f| f.name);
        match node.kind {
            NodeKind::Flow(child) => {
                let child = self.system.flow_by_id(child).spec;
                let args = if force_node_args || node.propagate_node_args {
                    node_args
                } else {
                    Json::Null
                };
                let child_parent = if node.propagate_parent {
                    parent.clone()
                } else {
                    Json::Null
                };
                let countdown = child
                    .throttling
                    .map(|t| self.env.throttle(name, true, t))
                    .unwrap_or(Duration::ZERO);
                self.tracer.emit_with(TraceEvent::SubflowSchedule, || {
                    self.info_with(json!({
                        "condition_str": condition_str,
                        "foreach_str": foreach_str,
                        "child_flow_name": name,
                        "child_dispatcher_id": id,
                        "queue": child.queue,
                        "countdown": countdown_json(countdown),
                        "node_args": args,
                        "parent": child_parent,
                    }))
                });
                let mut message = DispatcherMessage::new(name, id.clone(), args, child_parent);
                message.selective = match edge.and_then(|e| e.selective.as_ref()) {
                    // The edge's own `selective` block: the sub-flow runs selectively.
                    Some(spec) => {
                        let tasks: Vec<String> = spec.tasks.iter().map(|t| t.to_string()).collect();
                        let subsequent = match spec.run_subsequent {
                            None => RunSubsequent::No,
                            Some([]) => RunSubsequent::All,
                            Some(flows) => {
                                RunSubsequent::Flows(flows.iter().map(|f| f.to_string()).collect())
                            }
                        };
                        let map = SelectiveMap::compute(
                            self.system,
                            name,
                            &tasks,
                            spec.follow_subflows,
                            &subsequent,
                        )
                        .map_err(|e| {
                            PassError::Dispatcher(format!(
                                "`selective` of the edge to `{name}` ({}): {e}",
                                edge.map(|e| e.origin).unwrap_or_default()
                            ))
                        })?;
                        Some(map)
                    }
                    // A selective run goes on into the sub-flows it covers.
                    None => self
                        .msg
                        .selective
                        .as_ref()
                        .filter(|m| m.covers(name))
                        .cloned(),
                };
                self.actions.push(Action::StartFlow {
                    message: Box::new(message),
                    parent_flow_id: self.msg.flow_id.clone(),
                    queue: child.queue,
                    countdown,
                    nowait,
                });
            }
            NodeKind::Task(task) => {
                let task = self.system.task_by_id(task);
                if let Some(reused) = self.selective_reuse(task, &node_args, parent).await? {
                    let record = NodeRef::new(name, reused);
                    let kept = keep.then(|| record.clone());
                    self.reused.push(record);
                    return Ok(kept);
                }
                let countdown = task
                    .throttling
                    .map(|t| self.env.throttle(name, false, t))
                    .unwrap_or(Duration::ZERO);
                let message = TaskMessage {
                    task_name: name.to_string(),
                    flow_name: self.msg.flow_name.clone(),
                    task_id: id.clone(),
                    dispatcher_id: self.msg.flow_id.clone(),
                    parent: parent.clone(),
                    node_args,
                    retried_count: 0,
                    fallback_for: None,
                };
                self.tracer.emit_with(TraceEvent::TaskSchedule, || {
                    json!({
                        "task_name": message.task_name,
                        "flow_name": message.flow_name,
                        "parent": message.parent,
                        "node_args": message.node_args,
                        "dispatcher_id": message.dispatcher_id,
                        "task_id": message.task_id,
                        "queue": task.queue,
                        "condition_str": condition_str,
                        "foreach_str": foreach_str,
                        "countdown": countdown_json(countdown),
                    })
                });
                self.actions.push(Action::StartTask {
                    message,
                    queue: task.queue,
                    countdown,
                    nowait,
                });
            }
            NodeKind::Unknown => {
                return Err(PassError::Dispatcher(format!(
                    "`{name}` is neither a task nor a flow of the system"
                )))
            }
        }
        let record = NodeRef::new(name, id);
        if nowait {
            return Ok(keep.then_some(record));
        }
        let kept = keep.then(|| record.clone());
        self.state.active_nodes.push(record);
        Ok(kept)
    }

    /// In a selective run, a task that was not asked for may reuse an earlier run: its
    /// `selective_run_function` decides (none: the task runs).
    async fn selective_reuse(
        &self,
        task: &TaskSpec,
        node_args: &Json,
        parent: &Json,
    ) -> Result<Option<String>, PassError> {
        let Some(map) = self.msg.selective.as_ref() else {
            return Ok(None);
        };
        if !map.covers(self.spec.name) || map.is_requested(task.name) {
            return Ok(None);
        }
        let Some(decide) = task.selective_run_function else {
            return Ok(None);
        };
        let input = SelectiveRunInput {
            flow_name: &self.msg.flow_name,
            node_name: task.name,
            node_args,
            task_names: &map.task_names,
        };
        let db = Db::empty();
        let view = StorageView::new(self.env.storage_pool(), &self.msg.flow_name, parent, &db);
        let reuse = decide(&input, &view).await.map_err(|err| {
            let what = format!(
                "selective run function of task `{}` ({})",
                task.name, task.origin
            );
            self.user_fn_error(what, err)
        })?;
        self.tracer.emit_with(TraceEvent::SelectiveRunFunc, || {
            self.info_with(json!({
                "node_name": task.name,
                "node_args": node_args,
                "task_names": map.task_names,
                "result": reuse,
            }))
        });
        if let Some(id) = &reuse {
            self.tracer.emit_with(TraceEvent::SelectiveTaskReuse, || {
                self.info_with(json!({"node_name": task.name, "node_id": id}))
            });
        }
        Ok(reuse)
    }

    /// RUN_FALLBACKS (§3.12): largest failed set first, lexicographic ties, every alternative
    /// whose condition holds, one failed instance per node consumed per application.
    async fn run_fallbacks(&mut self) -> Result<Vec<NodeRef>, PassError> {
        let names: Vec<String> = self.state.failed_nodes.keys().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut started = Vec::new();
        for k in (1..=names.len()).rev() {
            for combo in combinations(&names, k) {
                let alternatives = self.flow.fallbacks(&combo);
                if alternatives.is_empty() {
                    continue;
                }
                loop {
                    if combo
                        .iter()
                        .any(|n| !self.state.failed_nodes.contains_key(*n))
                    {
                        break;
                    }
                    let (s, stop, ran) = self.run_fallback(&combo).await?;
                    started.extend(s);
                    if stop {
                        return Ok(started);
                    }
                    if !ran {
                        break;
                    }
                }
            }
        }
        Ok(started)
    }

    /// Applies the alternatives of one failed set once: (started, stop, ran).
    async fn run_fallback(
        &mut self,
        combo: &[&str],
    ) -> Result<(Vec<NodeRef>, bool, bool), PassError> {
        let nodes: Vec<Json> = combo
            .iter()
            .map(|n| json!({"name": n, "id": self.state.failed_nodes[*n][0]}))
            .collect();
        // What a fallback task reads of why its nodes failed (one instance of each).
        let handled: NodeIds = combo
            .iter()
            .map(|n| (n.to_string(), vec![self.state.failed_nodes[*n][0].clone()]))
            .collect();
        let fallback_for = FlowFailure::of(&handled, &self.state.failure_reasons);
        let mut ran = false;
        let mut stop = false;
        let mut started = Vec::new();
        let no_parent = Json::Null;
        let flow = self.flow;
        for alternative in flow.fallbacks(combo) {
            let detail = || {
                self.info_with(json!({
                    "nodes": nodes,
                    "fallback": match alternative.fallback {
                        Some(n) => json!(n),
                        None => json!(true),
                    },
                    "condition_strs": alternative.condition_str,
                }))
            };
            if !self
                .holds(alternative.condition, alternative.condition_blocking, &[])
                .await?
            {
                self.tracer.emit_with(TraceEvent::FallbackCondFalse, detail);
                continue;
            }
            ran = true;
            self.tracer.emit_with(TraceEvent::FallbackCondTrue, detail);
            self.tracer.emit_with(TraceEvent::FallbackStart, detail);
            let Some(fallback) = alternative.fallback else {
                continue;
            };
            for &name in fallback {
                let Some(node) = flow.node_id(name) else {
                    return Err(PassError::Dispatcher(format!(
                        "fallback `{name}` is not a node of flow `{}`",
                        self.spec.name
                    )));
                };
                let args = self.msg.node_args.clone();
                let record = self
                    .start_node(node, &no_parent, args, None, false, true)
                    .await?
                    .expect("kept");
                if let Some(Action::StartTask { message, .. }) = self.actions.last_mut() {
                    if message.task_id == record.id {
                        message.fallback_for = Some(fallback_for.clone());
                    }
                }
                if flow.nodes[node].nowait {
                    stop = true;
                } else {
                    started.push(record);
                }
            }
        }
        if ran {
            self.undo.failures(&self.state);
            for name in combo {
                if let Some(ids) = self.state.failed_nodes.get_mut(*name) {
                    let handled = ids.remove(0);
                    self.state.failure_reasons.remove(&handled);
                    if ids.is_empty() {
                        self.state.failed_nodes.remove(*name);
                    }
                }
            }
        }
        Ok((started, stop, ran))
    }
}

/// A countdown in traces: seconds, or `null` for none (as upstream).
fn countdown_json(countdown: Duration) -> Json {
    if countdown.is_zero() {
        Json::Null
    } else {
        json!(countdown.as_secs_f64())
    }
}

/// The object at a key path inside `map`, created (or replacing a non-object) as needed.
fn object_at<'m>(map: &'m mut Map<String, Json>, keys: &[String]) -> &'m mut Map<String, Json> {
    let mut cur = map;
    for k in keys {
        let slot = cur
            .entry(k.clone())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("just made an object");
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_and_combinations_follow_itertools() {
        let l = [
            vec!["a".to_string(), "b".into()],
            vec!["1".into(), "2".into()],
        ];
        let l: Vec<&[String]> = l.iter().map(Vec::as_slice).collect();
        let p: Vec<String> = cartesian(&l).into_iter().map(|c| c.concat()).collect();
        assert_eq!(p, ["a1", "a2", "b1", "b2"]);
        assert!(cartesian(&[&["a".to_string()][..], &[]]).is_empty());
        let c: Vec<String> = combinations(&["A", "B", "C"], 2)
            .into_iter()
            .map(|c| c.concat())
            .collect();
        assert_eq!(c, ["AB", "AC", "BC"]);
        assert_eq!(combinations(&["A", "B", "C"], 3).len(), 1);
        assert_eq!(combinations(&["A", "B", "C"], 1).len(), 3);
    }
}
