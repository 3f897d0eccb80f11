//! The indexes the runtime derives once from a generated [`SystemSpec`] when it starts: ids of
//! tasks, flows and nodes, the nodes of each flow, edges by source node and the failure table.
//!
//! Generated code writes only what the YAML says; the engine works on what this module derives
//! from it, so that a pass (a task ended, its successors start) follows integer ids instead of
//! searching tables by name. Names still cross the boundaries (messages and the flow state are
//! upstream's JSON): each is looked up once, in a hash map.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::schema::SchemaSlot;
use crate::spec::{EdgeSpec, FailureSpec, FlowSpec, StorageSpec, SystemSpec, TaskSpec};
use crate::task::TaskError;

/// The position of a task in [`SystemSpec::tasks`].
pub type TaskId = usize;
/// The position of a flow in [`SystemSpec::flows`].
pub type FlowId = usize;
/// The position of a node in [`Flow::nodes`].
pub type NodeId = usize;

/// A generated system with the indexes the engine runs on.
#[derive(Debug)]
pub struct System {
    /// The tables the system was built from.
    pub spec: &'static SystemSpec,
    tasks: HashMap<&'static str, TaskId>,
    flow_ids: HashMap<&'static str, FlowId>,
    storages: HashMap<&'static str, usize>,
    flows: Vec<Flow>,
    /// Per task: its `output_schema`, compiled when the task first returns a result.
    schemas: Vec<SchemaSlot>,
}

/// What a node of a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A task of the system.
    Task(TaskId),
    /// A sub-flow of the system.
    Flow(FlowId),
    /// Neither a task nor a flow of the system (only hand-written tables have such nodes; the
    /// generator rejects them): starting it fails the flow.
    Unknown,
}

/// One node of a flow, with what the flow says about it.
#[derive(Debug)]
pub struct Node {
    /// The node's name in the flow.
    pub name: &'static str,
    /// Whether the node is a task or a sub-flow, and which.
    pub kind: NodeKind,
    /// The edges (indexes into [`FlowSpec::edges`]) that have the node as a source.
    pub edges_from: Vec<usize>,
    /// The node is in the flow's `nowait`: the flow does not wait for it.
    pub nowait: bool,
    /// The node is in the flow's `eager_failures`: its failure fails the flow at once.
    pub eager_failure: bool,
    /// A sub-flow selected by the flow's `propagate_node_args`: started with the flow's arguments.
    pub propagate_node_args: bool,
    /// A sub-flow selected by the flow's `propagate_parent`: given the `parent` map of its edge.
    pub propagate_parent: bool,
    /// A sub-flow selected by the flow's `propagate_finished`: its finished nodes go into the
    /// `parent` map of the nodes started after it.
    pub propagate_finished: bool,
    /// A sub-flow selected by the flow's `propagate_compound_finished` (as `propagate_finished`,
    /// nested sub-flows merged).
    pub propagate_compound_finished: bool,
}

impl Node {
    /// The node is a sub-flow.
    pub fn is_flow(&self) -> bool {
        matches!(self.kind, NodeKind::Flow(_))
    }
}

/// One flow with its derived tables.
#[derive(Debug)]
pub struct Flow {
    /// The flow's position in [`SystemSpec::flows`].
    pub id: FlowId,
    /// The flow's table, as generated.
    pub spec: &'static FlowSpec,
    /// Every node the flow names (edges, then fallbacks), in order of first appearance.
    pub nodes: Vec<Node>,
    node_ids: HashMap<&'static str, NodeId>,
    /// Per edge: the nodes of `to`.
    pub edge_to: Vec<Vec<NodeId>>,
    /// The edges that have no source.
    pub starting_edges: Vec<usize>,
    /// The failure table: the alternatives for one set of failed nodes (sorted by name).
    fallbacks: HashMap<Vec<NodeId>, Vec<&'static FailureSpec>>,
}

impl Flow {
    /// The flow's name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The id of the named node, if the flow has one.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    /// The named node, if the flow has one.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.node_id(name).map(|id| &self.nodes[id])
    }

    /// The edge at `index` of [`FlowSpec::edges`], if there is one.
    pub fn edge(&self, index: usize) -> Option<&'static EdgeSpec> {
        self.spec.edges.get(index)
    }

    /// The alternatives for a set of failed nodes (names sorted), in YAML order.
    pub fn fallbacks(&self, failed: &[&str]) -> &[&'static FailureSpec] {
        let key: Option<Vec<NodeId>> = failed.iter().map(|n| self.node_id(n)).collect();
        key.and_then(|key| self.fallbacks.get(&key))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether some failure entry handles this set of nodes.
    pub fn has_fallbacks(&self) -> bool {
        !self.fallbacks.is_empty()
    }
}

impl System {
    /// Derives the indexes of a generated system.
    pub fn new(spec: &'static SystemSpec) -> System {
        let tasks = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name, i))
            .collect();
        let flow_ids: HashMap<&'static str, FlowId> = spec
            .flows
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name, i))
            .collect();
        let storages = spec
            .storages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name, i))
            .collect();
        let mut system = System {
            spec,
            tasks,
            flow_ids,
            storages,
            flows: Vec::new(),
            schemas: spec.tasks.iter().map(|_| SchemaSlot::default()).collect(),
        };
        system.flows = spec
            .flows
            .iter()
            .enumerate()
            .map(|(id, f)| system.index_flow(id, f))
            .collect();
        system
    }

    fn index_flow(&self, id: FlowId, spec: &'static FlowSpec) -> Flow {
        let mut flow = Flow {
            id,
            spec,
            nodes: Vec::new(),
            node_ids: HashMap::new(),
            edge_to: Vec::new(),
            starting_edges: Vec::new(),
            fallbacks: HashMap::new(),
        };
        let add = |flow: &mut Flow, name: &'static str| -> NodeId {
            if let Some(&id) = flow.node_ids.get(name) {
                return id;
            }
            let kind = match (self.tasks.get(name), self.flow_ids.get(name)) {
                (_, Some(&f)) => NodeKind::Flow(f),
                (Some(&t), None) => NodeKind::Task(t),
                (None, None) => NodeKind::Unknown,
            };
            let p = &spec.propagate;
            let node = Node {
                name,
                kind,
                edges_from: Vec::new(),
                nowait: spec.nowait.contains(&name),
                eager_failure: spec.eager_failures.contains(&name),
                propagate_node_args: p.node_args.contains(&name),
                propagate_parent: p.parent.contains(&name),
                propagate_finished: p.finished.contains(&name),
                propagate_compound_finished: p.compound_finished.contains(&name),
            };
            flow.nodes.push(node);
            flow.node_ids.insert(name, flow.nodes.len() - 1);
            flow.nodes.len() - 1
        };
        for (i, edge) in spec.edges.iter().enumerate() {
            if edge.from.is_empty() {
                flow.starting_edges.push(i);
            }
            for &name in edge.from {
                let n = add(&mut flow, name);
                if !flow.nodes[n].edges_from.contains(&i) {
                    flow.nodes[n].edges_from.push(i);
                }
            }
            let to = edge.to.iter().map(|&name| add(&mut flow, name)).collect();
            flow.edge_to.push(to);
        }
        for failure in spec.failures {
            let mut names: Vec<&'static str> = failure.nodes.to_vec();
            names.sort_unstable();
            names.dedup();
            let key = names.iter().map(|&name| add(&mut flow, name)).collect();
            for &name in failure.fallback.unwrap_or(&[]) {
                add(&mut flow, name);
            }
            flow.fallbacks.entry(key).or_default().push(failure);
        }
        flow
    }

    /// The id of the named task, if the system has one.
    pub fn task_id(&self, name: &str) -> Option<TaskId> {
        self.tasks.get(name).copied()
    }

    /// The named task's table, if the system has one.
    pub fn task(&self, name: &str) -> Option<&'static TaskSpec> {
        self.task_id(name).map(|id| &self.spec.tasks[id])
    }

    /// The table of the task with this id.
    ///
    /// Panics if `id` is not a task id of this system.
    pub fn task_by_id(&self, id: TaskId) -> &'static TaskSpec {
        &self.spec.tasks[id]
    }

    /// Validates a result of task `id` against its `output_schema` (nothing to do without
    /// one). The schema is compiled on the first call for the task and kept.
    pub fn check_output(&self, id: TaskId, result: &Json) -> Result<(), TaskError> {
        let task = &self.spec.tasks[id];
        match &task.output_schema {
            None => Ok(()),
            Some(schema) => self.schemas[id].validate(task.name, schema, result),
        }
    }

    /// The named flow, if the system has one.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flow_ids.get(name).map(|&id| &self.flows[id])
    }

    /// The flow with this id.
    ///
    /// Panics if `id` is not a flow id of this system.
    pub fn flow_by_id(&self, id: FlowId) -> &Flow {
        &self.flows[id]
    }

    /// The flow of a handle, if it is one of this system's (the same static, not only the
    /// same name).
    pub fn flow_of(&self, handle: &'static FlowSpec) -> Option<&Flow> {
        self.flow(handle.name)
            .filter(|f| std::ptr::eq(f.spec, handle))
    }

    /// Every flow, by id.
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    /// Whether the system has a flow of this name.
    pub fn is_flow(&self, name: &str) -> bool {
        self.flow_ids.contains_key(name)
    }

    /// The named storage's table, if the system has one.
    pub fn storage(&self, name: &str) -> Option<&'static StorageSpec> {
        self.storages.get(name).map(|&i| &self.spec.storages[i])
    }

    /// Names of the system's flows, for messages.
    pub fn flow_names(&self) -> String {
        self.spec
            .flows
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EdgeSpec, FailureSpec, FlowSpec, TaskSpec};

    static TASKS: [TaskSpec; 3] = [
        TaskSpec {
            name: "A",
            ..TaskSpec::DEFAULT
        },
        TaskSpec {
            name: "B",
            ..TaskSpec::DEFAULT
        },
        TaskSpec {
            name: "C",
            ..TaskSpec::DEFAULT
        },
    ];
    static SUB: FlowSpec = FlowSpec {
        name: "sub",
        edges: &[EdgeSpec {
            to: &["C"],
            ..EdgeSpec::DEFAULT
        }],
        ..FlowSpec::DEFAULT
    };
    static MAIN: FlowSpec = FlowSpec {
        name: "main",
        edges: &[
            EdgeSpec {
                to: &["A"],
                ..EdgeSpec::DEFAULT
            },
            EdgeSpec {
                from: &["A"],
                to: &["B", "sub"],
                ..EdgeSpec::DEFAULT
            },
            EdgeSpec {
                from: &["A", "B"],
                to: &["C"],
                ..EdgeSpec::DEFAULT
            },
        ],
        failures: &[
            FailureSpec {
                nodes: &["B", "A"],
                fallback: Some(&["C"]),
                ..FailureSpec::DEFAULT
            },
            FailureSpec {
                nodes: &["A", "B"],
                ..FailureSpec::DEFAULT
            },
        ],
        nowait: &["C"],
        ..FlowSpec::DEFAULT
    };
    static SPEC: SystemSpec = SystemSpec {
        tasks: &TASKS,
        flows: &[&MAIN, &SUB],
        ..SystemSpec::DEFAULT
    };

    #[test]
    fn indexes_nodes_edges_and_failures_of_each_flow() {
        let system = System::new(&SPEC);
        let main = system.flow("main").unwrap();
        let names: Vec<&str> = main.nodes.iter().map(|n| n.name).collect();
        assert_eq!(names, ["A", "B", "sub", "C"]);
        assert_eq!(main.node("A").unwrap().edges_from, [1, 2]);
        assert_eq!(main.node("B").unwrap().edges_from, [2]);
        assert_eq!(main.node("sub").unwrap().kind, NodeKind::Flow(1));
        assert_eq!(main.node("C").unwrap().kind, NodeKind::Task(2));
        assert!(main.node("C").unwrap().nowait);
        assert_eq!(main.starting_edges, [0]);
        assert_eq!(main.edge_to[1], [1, 2]);
        let alternatives = main.fallbacks(&["A", "B"]);
        assert_eq!(alternatives.len(), 2, "both entries, in YAML order");
        assert_eq!(alternatives[0].fallback, Some(&["C"][..]));
        assert!(main.fallbacks(&["A"]).is_empty());
        assert!(system.flow_of(&SUB).is_some());
        assert_eq!(system.task_id("B"), Some(1));
        assert!(system.task("sub").is_none());
    }
}
