//! Selective runs (spec §3.16): run only the nodes on paths to the requested tasks.
//!
//! The map in upstream's JSON shape travels with the dispatcher message (and on to
//! sub-flows): per flow, the edges (by index, as strings) that may fire, each with the `to`
//! nodes it may start (an empty list: all of them).
//!
//! ```json
//! {"task_names": ["Task2"], "waiting_edges_subset": {"flow1": {"0": ["Task1"], "1": ["Task2"]}}}
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::spec::FlowSpec;
use crate::system::System;

/// Which edges of which flows a selective run lets fire, and which nodes they start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectiveMap {
    /// The requested tasks: they always run.
    pub task_names: Vec<String>,
    /// Flow name → edge index (a string, as upstream's JSON) → `to` nodes allowed (empty:
    /// all).
    pub waiting_edges_subset: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Why a selective run cannot be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectiveError {
    /// No flow of the system has this name.
    #[error("unknown flow `{0}`")]
    UnknownFlow(String),
    /// A task asked for is not in the flow.
    #[error("`{task}` is not a task of flow `{flow}`{hint} (its tasks: {known})")]
    UnknownTask {
        /// The task asked for.
        task: String,
        /// The flow of the selective run.
        flow: String,
        /// A hint: where the task is, if in a sub-flow, or a close name.
        hint: String,
        /// The flow's tasks, comma-separated.
        known: String,
    },
    /// No edge path from the flow's start reaches the task.
    #[error("no path from the start of flow `{flow}` leads to `{task}`")]
    NoPath {
        /// The task asked for.
        task: String,
        /// The flow of the selective run.
        flow: String,
    },
    /// No task was asked for.
    #[error("no tasks named: a selective run needs at least one task")]
    Empty,
    /// `run_subsequent` names a flow the selective run does not reach.
    #[error("`run_subsequent` names `{0}`, which is not a flow of this selective run")]
    UnknownSubsequentFlow(String),
}

/// Subsequent runs: none, in every traversed flow, or in the named flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunSubsequent {
    /// `run_subsequent: false`: no subsequent runs.
    No,
    /// `run_subsequent: true`: subsequent runs in every flow traversed.
    All,
    /// `run_subsequent: [flows]`: subsequent runs in the named flows.
    Flows(Vec<String>),
}

impl SelectiveMap {
    /// The map for a selective run of `flow` that must run `task_names`.
    pub fn compute(
        system: &System,
        flow: &str,
        task_names: &[String],
        follow_subflows: bool,
        run_subsequent: &RunSubsequent,
    ) -> Result<SelectiveMap, SelectiveError> {
        if task_names.is_empty() {
            return Err(SelectiveError::Empty);
        }
        let root = system
            .flow(flow)
            .ok_or_else(|| SelectiveError::UnknownFlow(flow.to_string()))?;
        let mut map = SelectiveMap {
            task_names: task_names.to_vec(),
            waiting_edges_subset: BTreeMap::new(),
        };
        // Flows to visit: the root, and with `follow_subflows` every sub-flow that holds a
        // requested task somewhere below it.
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut queue = vec![root];
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        while let Some(f) = queue.pop() {
            if !seen.insert(f.name()) {
                continue;
            }
            let mut targets: BTreeSet<&str> = BTreeSet::new();
            for t in task_names {
                if f.node(t).is_some_and(|n| !system.is_flow(n.name)) {
                    targets.insert(f.node(t).map(|n| n.name).unwrap_or_default());
                }
            }
            if follow_subflows {
                for n in &f.nodes {
                    // A flow already visited (a cycle of sub-flows) is not entered again.
                    if system.is_flow(n.name)
                        && !seen.contains(n.name)
                        && contains_task(system, n.name, task_names, &mut BTreeSet::new())
                    {
                        targets.insert(n.name);
                        if let Some(sub) = system.flow(n.name) {
                            queue.push(sub);
                        }
                    }
                }
            }
            if targets.is_empty() {
                continue;
            }
            let subset = paths_to(f.spec, &targets)?;
            for t in &targets {
                found.insert((*t).to_string());
            }
            map.waiting_edges_subset
                .insert(f.name().to_string(), subset);
        }
        for t in task_names {
            if !found.contains(t) {
                let known: Vec<&str> = root
                    .nodes
                    .iter()
                    .filter(|n| !system.is_flow(n.name))
                    .map(|n| n.name)
                    .collect();
                let in_subflow = system
                    .flows()
                    .iter()
                    .any(|f| f.id != root.id && f.node(t).is_some());
                return Err(SelectiveError::UnknownTask {
                    task: t.clone(),
                    flow: root.name().to_string(),
                    hint: if in_subflow && !follow_subflows {
                        " (it is in a sub-flow: use follow_subflows)".to_string()
                    } else {
                        String::new()
                    },
                    known: known.join(", "),
                });
            }
        }
        match run_subsequent {
            RunSubsequent::No => {}
            RunSubsequent::All => {
                let flows: Vec<String> = map.waiting_edges_subset.keys().cloned().collect();
                for f in flows {
                    map.add_subsequent(system, &f);
                }
            }
            RunSubsequent::Flows(names) => {
                for f in names {
                    if !map.waiting_edges_subset.contains_key(f) {
                        return Err(SelectiveError::UnknownSubsequentFlow(f.clone()));
                    }
                    map.add_subsequent(system, f);
                }
            }
        }
        Ok(map)
    }

    /// Adds, to a fixed point, every non-starting edge whose sources are all requested tasks
    /// or nodes started by edges added so far, with all its `to` nodes.
    fn add_subsequent(&mut self, system: &System, flow: &str) {
        let Some(f) = system.flow(flow) else { return };
        let mut reached: BTreeSet<&str> = self
            .task_names
            .iter()
            .filter_map(|t| f.node(t).map(|n| n.name))
            .collect();
        let subset = self
            .waiting_edges_subset
            .entry(flow.to_string())
            .or_default();
        loop {
            let mut grew = false;
            for (index, e) in f.spec.edges.iter().enumerate() {
                if e.from.is_empty() || !e.from.iter().all(|s| reached.contains(s)) {
                    continue;
                }
                let all: Vec<String> = e.to.iter().map(|t| (*t).to_string()).collect();
                let entry = subset.entry(index.to_string()).or_default();
                if *entry != all {
                    *entry = all;
                    grew = true;
                }
                for t in e.to {
                    grew |= reached.insert(t);
                }
            }
            if !grew {
                break;
            }
        }
    }

    /// The `to` nodes edge `index` of `flow` may start: `None` if the edge may not fire,
    /// `Some([])` for all.
    pub fn allowed(&self, flow: &str, index: usize) -> Option<&[String]> {
        self.waiting_edges_subset
            .get(flow)
            .and_then(|edges| edges.get(&index.to_string()))
            .map(Vec::as_slice)
    }

    /// Whether the flow takes part (has edges in the map).
    pub fn covers(&self, flow: &str) -> bool {
        self.waiting_edges_subset.contains_key(flow)
    }

    /// Whether the task was asked for by the selective run.
    pub fn is_requested(&self, task: &str) -> bool {
        self.task_names.iter().any(|t| t == task)
    }
}

fn contains_task(
    system: &System,
    flow: &str,
    tasks: &[String],
    seen: &mut BTreeSet<String>,
) -> bool {
    if !seen.insert(flow.to_string()) {
        return false;
    }
    let Some(f) = system.flow(flow) else {
        return false;
    };
    f.nodes.iter().any(|n| {
        if system.is_flow(n.name) {
            contains_task(system, n.name, tasks, seen)
        } else {
            tasks.iter().any(|t| t == n.name)
        }
    })
}

/// The edges of `flow` on complete paths from its start to `targets`, each with the `to`
/// nodes on such a path (upstream's `_compute_paths`, normalised).
///
/// A path is found backwards: from a target, over an edge that starts it, to that edge's
/// sources, and on until every node on the way is started by an edge whose sources are all on
/// it too — a starting edge ends a path. A node no edge starts (one that only a fallback
/// starts) ends no path, so the edges out of it are not part of the run.
fn paths_to(
    flow: &FlowSpec,
    targets: &BTreeSet<&str>,
) -> Result<BTreeMap<String, Vec<String>>, SelectiveError> {
    let mut subset: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for target in targets {
        let paths = complete_paths(flow, target);
        // Upstream also counts paths that close a cycle without a starting edge (they add
        // the cycle's edges); a target with only such paths cannot be reached at all.
        let from_start = paths.iter().any(|path| {
            path.keys()
                .any(|&i| flow.edges.get(i).is_some_and(|e| e.from.is_empty()))
        });
        if !from_start {
            return Err(SelectiveError::NoPath {
                task: (*target).to_string(),
                flow: flow.name.to_string(),
            });
        }
        for path in paths {
            for (edge, to) in path {
                subset.entry(edge.to_string()).or_default().extend(to);
            }
        }
    }
    Ok(subset
        .into_iter()
        .map(|(edge, to)| (edge, to.into_iter().map(str::to_string).collect()))
        .collect())
}

/// Every complete path to `target`: per path, the edges (by index) it takes and the nodes
/// each starts on it.
fn complete_paths<'a>(flow: &'a FlowSpec, target: &'a str) -> Vec<BTreeMap<usize, Vec<&'a str>>> {
    struct Partial<'a> {
        to_expand: BTreeSet<&'a str>,
        visited: BTreeSet<&'a str>,
        expanded: BTreeMap<usize, Vec<&'a str>>,
    }
    let mut complete = Vec::new();
    let mut stack = vec![Partial {
        to_expand: BTreeSet::from([target]),
        visited: BTreeSet::new(),
        expanded: BTreeMap::new(),
    }];
    while let Some(partial) = stack.pop() {
        for name in &partial.to_expand {
            for (index, edge) in flow.edges.iter().enumerate() {
                if !edge.to.contains(name)
                    || partial
                        .expanded
                        .get(&index)
                        .is_some_and(|done| done.contains(name))
                {
                    continue;
                }
                let mut expanded = partial.expanded.clone();
                expanded.entry(index).or_default().push(name);
                let mut visited = partial.visited.clone();
                visited.insert(name);
                let mut to_expand = partial.to_expand.clone();
                to_expand.extend(edge.from.iter().copied().filter(|s| s != name));
                if visited == to_expand {
                    complete.push(expanded);
                } else {
                    stack.push(Partial {
                        to_expand,
                        visited,
                        expanded,
                    });
                }
            }
        }
    }
    complete
}
