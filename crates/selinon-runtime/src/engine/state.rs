//! The state of one flow instance and the messages around a dispatcher pass, in upstream's JSON
//! shape (§3.1), so that a transport can carry them as they are.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One node instance: its name in the flow and its id (task id or sub-flow id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    /// The node's name in the flow.
    pub name: String,
    /// The instance's id: a task id or a sub-flow's flow id.
    pub id: String,
}

impl NodeRef {
    /// A node instance from its name and id.
    pub fn new(name: impl Into<String>, id: impl Into<String>) -> Self {
        NodeRef {
            name: name.into(),
            id: id.into(),
        }
    }
}

/// Node name → ids, in the order the instances were seen.
pub type NodeIds = BTreeMap<String, Vec<String>>;

/// The dispatcher state of one flow instance (upstream `SystemState.to_dict()`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Scheduled and not yet final, in scheduling order; never `nowait` nodes.
    #[serde(default)]
    pub active_nodes: Vec<NodeRef>,
    /// Ids of finished instances, in observation order; never pruned.
    #[serde(default)]
    pub finished_nodes: NodeIds,
    /// Ids of failed instances not (yet) handled by a fallback, oldest first.
    #[serde(default)]
    pub failed_nodes: NodeIds,
    /// Indices of edges having a started (first pass) or finished source; only grows.
    #[serde(default)]
    pub waiting_edges: Vec<usize>,
    /// Indices of edges whose condition was ever true.
    #[serde(default)]
    pub triggered_edges: Vec<usize>,
    /// Why the instances of `failed_nodes` failed, by node id (an id is absent when its
    /// reason is unknown, e.g. a message from an older worker).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, FailureReason>,
}

impl FlowState {
    /// Nothing happened yet: the next pass starts the flow.
    pub fn is_fresh(&self) -> bool {
        self.active_nodes.is_empty()
            && self.finished_nodes.is_empty()
            && self.waiting_edges.is_empty()
            && self.failed_nodes.is_empty()
    }
}

/// What a flow reports when it ends (upstream's dispatcher result or `FlowError` state); a
/// parent flow reads `finished_nodes` for `propagate_finished`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowResult {
    /// Ids of the flow's finished node instances.
    #[serde(default)]
    pub finished_nodes: NodeIds,
    /// Ids of the flow's failed node instances that no fallback handled.
    #[serde(default)]
    pub failed_nodes: NodeIds,
    /// Node instances still running when the flow ended (`nowait` nodes are never here).
    #[serde(default)]
    pub active_nodes: Vec<NodeRef>,
    /// Why the instances of `failed_nodes` failed, by node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, FailureReason>,
}

impl FlowResult {
    /// The result of a flow left in `state`, with `active_nodes` still running.
    pub fn of_state(state: &FlowState, active_nodes: Vec<NodeRef>) -> Self {
        FlowResult {
            finished_nodes: state.finished_nodes.clone(),
            failed_nodes: state.failed_nodes.clone(),
            active_nodes,
            failure_reasons: reasons_of(&state.failed_nodes, &state.failure_reasons),
        }
    }

    /// Why the flow failed: its failed nodes and their reasons.
    pub fn failure(&self) -> FlowFailure {
        FlowFailure::of(&self.failed_nodes, &self.failure_reasons)
    }
}

/// The reasons of the instances in `failed` only.
fn reasons_of(
    failed: &NodeIds,
    reasons: &BTreeMap<String, FailureReason>,
) -> BTreeMap<String, FailureReason> {
    failed
        .values()
        .flatten()
        .filter_map(|id| Some((id.clone(), reasons.get(id)?.clone())))
        .collect()
}

/// Why a node instance failed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FailureReason {
    /// The task's error (its last attempt's, after the retries).
    Error(String),
    /// The sub-flow failed: why its nodes failed.
    Flow(FlowFailure),
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureReason::Error(text) => f.write_str(text),
            FailureReason::Flow(failure) => write!(f, "sub-flow failed: {failure}"),
        }
    }
}

/// The failed nodes of a flow and why each failed (nested for sub-flows): node name → the
/// reasons of its failed instances, oldest first (empty when none is known). No ids, so that
/// it reads the same wherever the flow ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowFailure {
    /// Node name → the reasons of its failed instances, oldest first.
    pub nodes: BTreeMap<String, Vec<FailureReason>>,
}

impl FlowFailure {
    /// The failed nodes `failed` with the known reasons of their instances (by node id).
    pub fn of(failed: &NodeIds, reasons: &BTreeMap<String, FailureReason>) -> Self {
        let nodes = failed
            .iter()
            .map(|(name, ids)| {
                let known = ids.iter().filter_map(|id| reasons.get(id).cloned());
                (name.clone(), known.collect())
            })
            .collect();
        FlowFailure { nodes }
    }

    /// Why the first failed instance of `node` failed, if known.
    pub fn reason(&self, node: &str) -> Option<&FailureReason> {
        self.nodes.get(node)?.first()
    }

    /// (node name, reason) of every failed instance whose reason is known.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FailureReason)> {
        self.nodes
            .iter()
            .flat_map(|(name, reasons)| reasons.iter().map(move |r| (name.as_str(), r)))
    }
}

impl std::fmt::Display for FlowFailure {
    /// `Node: reason; Other: reason`, a sub-flow's reasons in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut std::fmt::Formatter<'_>| {
            let s = if first { "" } else { "; " };
            first = false;
            f.write_str(s)
        };
        for (name, reasons) in &self.nodes {
            if reasons.is_empty() {
                sep(f)?;
                write!(f, "{name}: (reason unknown)")?;
            }
            for reason in reasons {
                sep(f)?;
                match reason {
                    FailureReason::Error(text) => write!(f, "{name}: {text}")?,
                    FailureReason::Flow(inner) => write!(f, "{name}: [{inner}]")?,
                }
            }
        }
        if self.nodes.is_empty() {
            f.write_str("no failed node")?;
        }
        Ok(())
    }
}

/// The message a dispatcher pass runs on (upstream's dispatcher task arguments, plus its id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DispatcherMessage {
    /// The flow's name.
    pub flow_name: String,
    /// The flow instance's id (upstream: the dispatcher task id).
    pub flow_id: String,
    /// The flow's arguments (changed once by `node_args_from_first`).
    #[serde(default)]
    pub node_args: Json,
    /// The parent map handed by the parent flow (`propagate_parent`), else `null`.
    #[serde(default)]
    pub parent: Json,
    /// Flow restarts so far.
    #[serde(default)]
    pub retried_count: u32,
    /// `None` before the first pass.
    #[serde(default)]
    pub state: Option<FlowState>,
    /// The arguments the flow was started with, kept when `node_args_from_first` replaced
    /// `node_args`, so that a flow restart starts from the same arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_node_args: Option<Json>,
    /// A selective run: the edges that may fire and the nodes they may start (§3.16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selective: Option<super::SelectiveMap>,
    /// The migration version the state was written at (§3.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_version: Option<u32>,
}

impl DispatcherMessage {
    /// The message of a new flow instance.
    pub fn new(
        flow_name: impl Into<String>,
        flow_id: impl Into<String>,
        node_args: Json,
        parent: Json,
    ) -> Self {
        DispatcherMessage {
            flow_name: flow_name.into(),
            flow_id: flow_id.into(),
            node_args,
            parent,
            retried_count: 0,
            state: None,
            initial_node_args: None,
            selective: None,
            migration_version: None,
        }
    }
}

/// The final status of a node instance, as the transport learned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// The task succeeded (its result is stored) or the sub-flow finished.
    Finished,
    /// The task failed for good (after its retries) or the sub-flow failed.
    Failed,
}

/// A node instance reached a final status: what makes a dispatcher pass run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeEvent {
    /// The node instance's id.
    pub id: String,
    /// Whether the instance finished or failed.
    pub status: NodeStatus,
    /// Why it failed, when known (absent in messages of older workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
}

impl NodeEvent {
    /// A node instance that finished.
    pub fn finished(id: impl Into<String>) -> Self {
        NodeEvent {
            id: id.into(),
            status: NodeStatus::Finished,
            reason: None,
        }
    }

    /// A failure whose reason is unknown.
    pub fn failed(id: impl Into<String>) -> Self {
        NodeEvent {
            id: id.into(),
            status: NodeStatus::Failed,
            reason: None,
        }
    }

    /// A failure and its reason.
    pub fn failed_because(id: impl Into<String>, reason: FailureReason) -> Self {
        NodeEvent {
            id: id.into(),
            status: NodeStatus::Failed,
            reason: Some(reason),
        }
    }
}

/// A task to run (upstream's task envelope arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The task's name in the flow.
    pub task_name: String,
    /// The flow the task runs in.
    pub flow_name: String,
    /// The task instance's id (its results are stored under it).
    pub task_id: String,
    /// The flow instance the task reports to.
    pub dispatcher_id: String,
    /// The parent map: ids of the nodes whose results the task may read (node name → id,
    /// nested for sub-flows); `null` for none.
    #[serde(default)]
    pub parent: Json,
    /// The arguments the task runs with.
    #[serde(default)]
    pub node_args: Json,
    /// Failed attempts so far (user retries do not count).
    #[serde(default)]
    pub retried_count: u32,
    /// A fallback's: the failed nodes it handles and why they failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<FlowFailure>,
}

/// Something a pass asks the transport to do, after the new state is saved.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run a task (after `countdown`, from throttling).
    StartTask {
        /// The message of the task to run.
        message: TaskMessage,
        /// Task queue (unexpanded `{VAR}` placeholders).
        queue: &'static str,
        /// Delay before the task is sent (throttling), zero if none.
        countdown: Duration,
        /// `nowait`: its completion is never reported to the flow.
        nowait: bool,
    },
    /// Start a sub-flow (after `countdown`, from throttling); its end is reported to the
    /// parent flow as a [`NodeEvent`] for `message.flow_id`.
    StartFlow {
        /// Boxed: a dispatcher message is large, and most actions start tasks.
        message: Box<DispatcherMessage>,
        /// The flow that starts it.
        parent_flow_id: String,
        /// Dispatcher queue of the sub-flow (unexpanded `{VAR}` placeholders).
        queue: &'static str,
        /// Delay before the sub-flow starts (throttling), zero if none.
        countdown: Duration,
        /// `nowait`: its completion is never reported to the parent flow.
        nowait: bool,
    },
}

/// How a pass left the flow.
#[derive(Clone, Debug, PartialEq)]
pub enum PassOutcome {
    /// Nodes are active: the next pass runs when one of them ends.
    Running,
    /// Nothing is active and nothing failed unhandled: the flow succeeded.
    Finished(FlowResult),
    /// The flow failed for good (no flow retries left, or the pass itself failed).
    Failed(FlowResult),
    /// The flow failed and restarts from scratch after `countdown`: the returned message is
    /// the restart's (fresh state, `retried_count + 1`); run a pass on it with no events.
    Restart {
        /// Delay before the restart (the flow's `retry_countdown`).
        countdown: Duration,
    },
    /// The pass could not complete (a storage could not be read): run it again after
    /// `countdown` on the same input message and the same events. Nothing was started.
    RetryPass {
        /// Delay before the pass is run again.
        countdown: Duration,
    },
}

/// What one pass produced.
#[derive(Clone, Debug)]
pub struct PassOutput {
    /// The message to keep for the next pass (the input one for [`PassOutcome::RetryPass`]).
    pub message: DispatcherMessage,
    /// What to start, in order (empty for [`PassOutcome::RetryPass`]).
    pub actions: Vec<Action>,
    /// Whether the flow is still running, ended, or is run again.
    pub outcome: PassOutcome,
    /// Why the dispatcher itself failed the flow (`DISPATCHER_FAILURE`: an unknown flow, a
    /// migration that cannot apply, the node limit), for the transport to report.
    pub failure: Option<String>,
    /// What the pass changed in the message it was given, when it ran to its end without
    /// restarting the flow (see [`super::PassChanges`]).
    pub changes: Option<super::PassChanges>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_without_reasons_still_decode_and_none_are_written() {
        let event: NodeEvent = serde_json::from_value(json!({"id": "t1", "status": "failed"}))
            .expect("an event of an older worker");
        assert_eq!(event, NodeEvent::failed("t1"));
        assert_eq!(
            serde_json::to_value(NodeEvent::failed("t1")).unwrap(),
            json!({"id": "t1", "status": "failed"})
        );
        let state = FlowState::default();
        assert!(serde_json::to_value(&state)
            .unwrap()
            .get("failure_reasons")
            .is_none());
    }

    #[test]
    fn reasons_round_trip_nested() {
        let inner = FlowFailure::of(
            &[("Boom".to_string(), vec!["t2".to_string()])].into(),
            &[("t2".to_string(), FailureReason::Error("disk full".into()))].into(),
        );
        let event = NodeEvent::failed_because("f1", FailureReason::Flow(inner.clone()));
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(wire["reason"], json!({"Boom": ["disk full"]}));
        let back: NodeEvent = serde_json::from_value(wire).unwrap();
        assert_eq!(back, event);
        assert_eq!(inner.to_string(), "Boom: disk full");
    }
}
