//! The stored form of a flow record: a snapshot and the deltas written since.
//!
//! A pass for one node's end changes a few entries of its flow's record: an id leaves
//! `active_nodes`, joins `finished_nodes`, a timing gets its end. Writing the whole record
//! each time would make a pass cost as much as the flow is large (a `foreach` over 5,000
//! items would rewrite 5,000 entries 5,000 times), so a pass writes a [`FlowDelta`]: what it
//! changed. A backend keeps the last snapshot and the deltas after it; readers apply them
//! ([`FlowRecord::apply`]). The writer folds the deltas into a new snapshot now and then
//! ([`snapshot_due`]) so that a cold read stays short, and always when the flow ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FlowRecord, NodeTiming, RecordStatus};
use crate::engine::{DispatcherMessage, FailureReason, FlowState, NodeIds, NodeRef, PassChanges};

/// What one committed pass changed in a running flow's record.
///
/// Lists are appended to, never rewritten: `active_nodes` loses the `ended` ids and gains
/// `started`; `finished_nodes` gains `finished`. The small parts that may shrink or be
/// reordered (failed nodes, their reasons, the edge lists, the message's other fields) are
/// replaced whole when they changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowDelta {
    /// Ids that left `active_nodes`, in their order there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
    /// Node instances appended to `active_nodes`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<NodeRef>,
    /// Ids appended to `finished_nodes`, by node name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub finished: NodeIds,
    /// The new `failed_nodes`, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<NodeIds>,
    /// The new `failure_reasons`, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<BTreeMap<String, FailureReason>>,
    /// The new `waiting_edges`, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_edges: Option<Vec<usize>>,
    /// The new `triggered_edges`, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_edges: Option<Vec<usize>>,
    /// The message without its state, when one of its fields changed (`node_args_from_first`,
    /// a migration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Box<DispatcherMessage>>,
    /// Timings set or replaced, by node id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, NodeTiming>,
    /// The record's `updated_ms` after the pass.
    pub updated_ms: u64,
}

/// Why a delta cannot be applied (the record it was written against is not the one given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a flow-record delta does not apply: {0}")]
pub struct DeltaMismatch(pub String);

impl FlowDelta {
    /// The changes from the running record `old` to the running record `new`, found by
    /// comparing them (the tests' reference for [`FlowDelta::from_changes`]), where `touched`
    /// names the timings the pass set. `None` when only a snapshot says it: the flow ended or
    /// restarted, or a list changed other than by appending.
    #[cfg(test)]
    pub fn between(old: &FlowRecord, new: &FlowRecord, touched: &[String]) -> Option<FlowDelta> {
        if old.status != RecordStatus::Running
            || new.status != RecordStatus::Running
            || old.report_to != new.report_to
            || old.created_ms != new.created_ms
        {
            return None;
        }
        let (Some(before), Some(after)) = (&old.message.state, &new.message.state) else {
            return None;
        };
        let mut delta = FlowDelta {
            updated_ms: new.updated_ms,
            ..FlowDelta::default()
        };
        if !same_head(&old.message, &new.message) {
            delta.head = Some(Box::new(new.message.clone_without_state()));
        }
        // `active_nodes`: the ones kept, in order, then the new ones (ids are unique).
        let mut j = 0;
        for node in &before.active_nodes {
            if after.active_nodes.get(j).is_some_and(|n| n == node) {
                j += 1;
            } else {
                delta.ended.push(node.id.clone());
            }
        }
        delta.started = after.active_nodes[j..].to_vec();
        // `finished_nodes` only grows.
        if before.finished_nodes.len() > after.finished_nodes.len() {
            return None;
        }
        for (name, ids) in &after.finished_nodes {
            let known = before.finished_nodes.get(name).map_or(0, Vec::len);
            if known > ids.len() {
                return None;
            }
            if known > 0 && before.finished_nodes[name].last() != ids.get(known - 1) {
                return None;
            }
            if known < ids.len() {
                delta.finished.insert(name.clone(), ids[known..].to_vec());
            }
        }
        if before
            .finished_nodes
            .keys()
            .any(|k| !after.finished_nodes.contains_key(k))
        {
            return None;
        }
        if before.failed_nodes != after.failed_nodes {
            delta.failed = Some(after.failed_nodes.clone());
        }
        if before.failure_reasons != after.failure_reasons {
            delta.reasons = Some(after.failure_reasons.clone());
        }
        if before.waiting_edges != after.waiting_edges {
            delta.waiting_edges = Some(after.waiting_edges.clone());
        }
        if before.triggered_edges != after.triggered_edges {
            delta.triggered_edges = Some(after.triggered_edges.clone());
        }
        for id in touched {
            delta
                .timings
                .insert(id.clone(), new.timings.get(id)?.clone());
        }
        Some(delta)
    }

    /// The changes a pass made ([`PassChanges`], from the engine) that led to the running record
    /// `new`, where `touched` names the timings the pass set, at the cost of the changes
    /// alone. `None` when only a snapshot says it: the flow ended or restarted (or this is its
    /// first pass), or a migration rewrote the message.
    pub fn from_changes(
        changes: &PassChanges,
        new: &FlowRecord,
        touched: &[String],
    ) -> Option<FlowDelta> {
        if !changes.is_incremental() || new.status != RecordStatus::Running {
            return None;
        }
        let state = new.message.state.as_ref()?;
        let mut delta = FlowDelta {
            updated_ms: new.updated_ms,
            ended: changes.ended().into_iter().map(str::to_string).collect(),
            started: state.active_nodes.get(changes.kept_active()..)?.to_vec(),
            ..FlowDelta::default()
        };
        for (name, added) in changes.finished_added() {
            let ids = state.finished_nodes.get(name)?;
            let from = ids.len().checked_sub(added)?;
            delta
                .finished
                .insert(name.to_string(), ids[from..].to_vec());
        }
        if changes.failures_changed() {
            delta.failed = Some(state.failed_nodes.clone());
            delta.reasons = Some(state.failure_reasons.clone());
        }
        let (waiting, triggered) = changes.edges_before();
        if state.waiting_edges.len() != waiting {
            delta.waiting_edges = Some(state.waiting_edges.clone());
        }
        if state.triggered_edges.len() != triggered {
            delta.triggered_edges = Some(state.triggered_edges.clone());
        }
        if changes.head_changed(&new.message) {
            delta.head = Some(Box::new(new.message.clone_without_state()));
        }
        for id in touched {
            delta
                .timings
                .insert(id.clone(), new.timings.get(id)?.clone());
        }
        Some(delta)
    }

    /// Roughly how many entries the delta holds (to decide when a snapshot is due).
    pub fn entries(&self) -> usize {
        self.ended.len()
            + self.started.len()
            + self.finished.values().map(Vec::len).sum::<usize>()
            + self
                .failed
                .as_ref()
                .map_or(0, |f| f.values().map(Vec::len).sum())
            + self.reasons.as_ref().map_or(0, BTreeMap::len)
            + self.timings.len()
            + 1
    }
}

impl DispatcherMessage {
    /// The message with no state (the state's parts travel in deltas of their own).
    fn clone_without_state(&self) -> DispatcherMessage {
        DispatcherMessage {
            flow_name: self.flow_name.clone(),
            flow_id: self.flow_id.clone(),
            node_args: self.node_args.clone(),
            parent: self.parent.clone(),
            retried_count: self.retried_count,
            state: None,
            initial_node_args: self.initial_node_args.clone(),
            selective: self.selective.clone(),
            migration_version: self.migration_version,
        }
    }
}

/// Whether the message's fields other than its state are the same.
#[cfg(test)]
fn same_head(a: &DispatcherMessage, b: &DispatcherMessage) -> bool {
    a.flow_name == b.flow_name
        && a.flow_id == b.flow_id
        && a.retried_count == b.retried_count
        && a.migration_version == b.migration_version
        && a.node_args == b.node_args
        && a.parent == b.parent
        && a.initial_node_args == b.initial_node_args
        && a.selective == b.selective
}

impl FlowRecord {
    /// Applies a delta written against this record (see [`FlowDelta::from_changes`]).
    pub fn apply(&mut self, delta: FlowDelta) -> Result<(), DeltaMismatch> {
        let state: &mut FlowState = self
            .message
            .state
            .as_mut()
            .ok_or_else(|| DeltaMismatch("the record has no dispatcher state".into()))?;
        if !delta.ended.is_empty() {
            let mut ended = delta.ended.iter().peekable();
            let before = state.active_nodes.len();
            state.active_nodes.retain(|n| {
                if ended.peek().is_some_and(|id| **id == n.id) {
                    ended.next();
                    false
                } else {
                    true
                }
            });
            if let Some(id) = ended.next() {
                return Err(DeltaMismatch(format!(
                    "node {id} is not active ({} active nodes)",
                    before
                )));
            }
        }
        state.active_nodes.extend(delta.started);
        for (name, ids) in delta.finished {
            state.finished_nodes.entry(name).or_default().extend(ids);
        }
        if let Some(failed) = delta.failed {
            state.failed_nodes = failed;
        }
        if let Some(reasons) = delta.reasons {
            state.failure_reasons = reasons;
        }
        if let Some(edges) = delta.waiting_edges {
            state.waiting_edges = edges;
        }
        if let Some(edges) = delta.triggered_edges {
            state.triggered_edges = edges;
        }
        if let Some(head) = delta.head {
            let state = self.message.state.take();
            self.message = *head;
            self.message.state = state;
        }
        self.timings.extend(delta.timings);
        self.updated_ms = delta.updated_ms;
        Ok(())
    }

    /// Roughly how many entries the record holds (node ids and timings).
    pub fn entries(&self) -> usize {
        let state = self.message.state.as_ref().map_or(0, |s| {
            s.active_nodes.len()
                + s.finished_nodes.values().map(Vec::len).sum::<usize>()
                + s.failed_nodes.values().map(Vec::len).sum::<usize>()
        });
        state + self.timings.len() + 1
    }
}

/// Whether a writer should fold the deltas into a new snapshot: when the entries written
/// since the last snapshot outnumber the record's own (at least 64), so that a cold read costs
/// at most about twice the record and a pass's writes stay proportional to its changes.
pub fn snapshot_due(record_entries: usize, delta_entries_since_snapshot: usize) -> bool {
    delta_entries_since_snapshot >= record_entries.max(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FailureReason, FlowState, NodeRef};
    use serde_json::json;

    fn record(active: &[(&str, &str)], finished: &[(&str, &[&str])]) -> FlowRecord {
        let state = FlowState {
            active_nodes: active.iter().map(|(n, i)| NodeRef::new(*n, *i)).collect(),
            finished_nodes: finished
                .iter()
                .map(|(n, ids)| (n.to_string(), ids.iter().map(|s| s.to_string()).collect()))
                .collect(),
            waiting_edges: vec![0],
            triggered_edges: vec![0],
            ..FlowState::default()
        };
        let mut message = DispatcherMessage::new("f", "F1", json!({"a": 1}), json!(null));
        message.state = Some(state);
        FlowRecord {
            message,
            report_to: None,
            status: RecordStatus::Running,
            result: None,
            created_ms: 1,
            updated_ms: 1,
            timings: BTreeMap::new(),
        }
    }

    fn round_trip(old: &FlowRecord, new: &FlowRecord, touched: &[String]) -> FlowDelta {
        let delta = FlowDelta::between(old, new, touched).expect("a delta");
        let wire: FlowDelta =
            serde_json::from_str(&serde_json::to_string(&delta).unwrap()).unwrap();
        assert_eq!(wire, delta, "the delta survives JSON");
        let mut applied = old.clone();
        applied.apply(wire).expect("applies");
        assert_eq!(&applied, new);
        delta
    }

    #[test]
    fn one_end_of_a_wide_fan_out_writes_only_what_changed() {
        let ids: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
        let active: Vec<(&str, &str)> = ids.iter().map(|i| ("Work", i.as_str())).collect();
        let old = record(&active, &[("Split", &["s"])]);
        let mut new = old.clone();
        let state = new.message.state.as_mut().unwrap();
        state.active_nodes.remove(1234);
        state
            .finished_nodes
            .insert("Work".into(), vec!["w1234".into()]);
        new.timings.insert(
            "w1234".into(),
            NodeTiming {
                node: "Work".into(),
                scheduled_ms: 1,
                ended_ms: Some(5),
                status: Some(crate::engine::NodeStatus::Finished),
            },
        );
        new.updated_ms = 5;
        let delta = round_trip(&old, &new, &["w1234".to_string()]);
        assert_eq!(delta.ended, ["w1234"]);
        assert!(delta.started.is_empty() && delta.head.is_none() && delta.failed.is_none());
        assert!(serde_json::to_string(&delta).unwrap().len() < 200);
    }

    #[test]
    fn starts_reorders_failures_and_head_changes_round_trip() {
        let old = record(&[("A", "a1"), ("B", "b1"), ("C", "c1")], &[("S", &["s1"])]);
        let mut new = old.clone();
        {
            let state = new.message.state.as_mut().unwrap();
            state.active_nodes = vec![
                NodeRef::new("C", "c1"),
                NodeRef::new("A", "a1"),
                NodeRef::new("D", "d1"),
            ];
            state.finished_nodes.get_mut("S").unwrap().push("s2".into());
            state.finished_nodes.insert("B".into(), vec!["b1".into()]);
            state.failed_nodes.insert("X".into(), vec!["x1".into()]);
            state
                .failure_reasons
                .insert("x1".into(), FailureReason::Error("boom".into()));
            state.waiting_edges.push(3);
        }
        new.message.node_args = json!({"from": "first"});
        new.message.initial_node_args = Some(json!({"a": 1}));
        let delta = round_trip(&old, &new, &[]);
        assert_eq!(delta.ended, ["a1", "b1"]);
        assert!(delta.head.is_some());
    }

    #[test]
    fn ends_and_restarts_need_a_snapshot() {
        let old = record(&[("A", "a1")], &[]);
        let mut ended = old.clone();
        ended.status = RecordStatus::Finished;
        assert!(FlowDelta::between(&old, &ended, &[]).is_none());
        let mut restarted = old.clone();
        restarted.message.state = None;
        assert!(FlowDelta::between(&old, &restarted, &[]).is_none());
        let mut shrunk = record(&[("A", "a1")], &[("S", &["s1", "s2"])]);
        let grown = shrunk.clone();
        shrunk
            .message
            .state
            .as_mut()
            .unwrap()
            .finished_nodes
            .insert("S".into(), vec!["s9".into()]);
        assert!(FlowDelta::between(&shrunk, &grown, &[]).is_none());
    }

    #[test]
    fn a_delta_for_another_record_is_refused() {
        let old = record(&[("A", "a1")], &[]);
        let mut other = record(&[("B", "b1")], &[]);
        let delta = FlowDelta {
            ended: vec!["a1".into()],
            ..FlowDelta::default()
        };
        assert!(other.apply(delta).is_err());
        assert_eq!(old.entries(), 2);
    }

    #[test]
    fn snapshots_come_at_most_every_record_size_entries() {
        assert!(!snapshot_due(10, 63));
        assert!(snapshot_due(10, 64));
        assert!(!snapshot_due(10_000, 9_999));
        assert!(snapshot_due(10_000, 10_000));
    }
}
