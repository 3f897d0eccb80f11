//! The IR: a checked configuration resolved into flow graphs.
//!
//! The IR is the one input of the code generator and of the simulator. Everything is resolved:
//! defaults are filled in, `propagate_*` flags are concrete sets of sub-flows, condition leaves
//! know the task they read and whether they are built-in, failures are grouped by node set with
//! their ordered alternatives. Collections that are sets are `BTreeSet`s so walking the IR is
//! deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::config::{self, Config, FlowSelection, Template};
use crate::diagnostics::{SourceMap, Span};
use selinon_runtime::predicates::{self, Reads};

/// Where an item was written: shown in generated doc comments and messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The file's path as displayed (relative when possible).
    pub file: String,
    /// Line (1-based).
    pub line: u32,
    /// Column (1-based, in characters).
    pub column: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A whole system: every task, storage and flow of a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct System {
    /// The files the system was read from (nodes file first), as displayed.
    pub files: Vec<String>,
    /// Every task, in nodes-file order.
    pub tasks: Vec<Task>,
    /// Every storage, in nodes-file order.
    pub storages: Vec<Storage>,
    /// In the order of the nodes file's `flows:` list.
    pub flows: Vec<Flow>,
    /// `global.predicates_module`, when it names a user module.
    pub custom_predicates_module: Option<String>,
    /// `global.migration_dir`, expanded when a worker starts.
    pub migration_dir: Option<Template>,
    /// The migration files found in `migration_dir` when the configuration was read (JSON
    /// text of `1.json`, `2.json`, …), embedded in the generated code.
    pub migrations: Vec<(u32, String)>,
    /// `global.trace`: where trace events go (empty when tracing is off).
    pub trace: Vec<TraceSink>,
}

impl System {
    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The storage named `name`.
    pub fn storage(&self, name: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.name == name)
    }

    /// Whether `name` is a task or a flow; `None` when it is neither.
    pub fn node_kind(&self, name: &str) -> Option<NodeKind> {
        if self.task(name).is_some() {
            Some(NodeKind::Task)
        } else if self.flow(name).is_some() {
            Some(NodeKind::Flow)
        } else {
            None
        }
    }
}

/// What a node of a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    /// A task.
    Task,
    /// A sub-flow.
    Flow,
}

/// A module path and a name in it (`myapp.tasks`, `Fetch`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Import {
    /// The module path as written in the YAML (`myapp.tasks`).
    pub module: String,
    /// The item's name in the module.
    pub name: String,
}

/// A task, with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The task's name.
    pub name: String,
    /// Where the task was written.
    pub origin: Origin,
    /// The class implementing the task (`import` + `classname`).
    pub class: Import,
    /// The storage its results are written to.
    pub storage: Option<String>,
    /// `storage_readonly`: results are not written to the storage.
    pub storage_readonly: bool,
    /// The name results are stored under (`storage_task_name`, default the task's name).
    pub storage_task_name: String,
    /// `output_schema`, when set.
    pub output_schema: Option<OutputSchema>,
    /// How many times a failed run is retried (default 0).
    pub max_retry: u64,
    /// Seconds to wait before a retry (default 0).
    pub retry_countdown_s: u64,
    /// Expanded when a worker starts.
    pub queue: Template,
    /// The minimal interval between two starts, in microseconds (`None`: no throttling).
    pub throttling_us: Option<u64>,
    /// `None`: always run (the default).
    pub selective_run_function: Option<Import>,
}

/// `output_schema` of a task: the JSON schema its results are validated against.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputSchema {
    /// The path as written in the YAML (relative to the nodes file's folder).
    pub path: String,
    /// The schema as compact JSON text, read by [`crate::check_files`] and
    /// [`crate::check_inline`] (and so by the [`crate::Builder`]). `None` after
    /// [`crate::check_strs`], which reads no file: such a system's generated code does not
    /// validate results.
    pub json: Option<String>,
}

/// A storage, with its defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// The storage's name.
    pub name: String,
    /// Where the storage was written.
    pub origin: Origin,
    /// The adapter (`import` + `classname`).
    pub class: Import,
    /// A mapping (options by name) or one positional value.
    pub configuration: Json,
    /// The cache of results in front of it.
    pub cache: Option<Cache>,
    /// Tasks storing into it, in nodes-file order.
    pub tasks: Vec<String>,
}

/// A cache of a storage (results) or a flow (node states).
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    /// The cache class (`import` + `name`).
    pub class: Import,
    /// `configuration.max_cache_size` (default 0: nothing is cached).
    pub max_cache_size: u64,
    /// The whole `configuration` mapping.
    pub configuration: Json,
}

/// One sink of `global.trace`.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceSink {
    /// `logging: true`: the `tracing` crate.
    Logging,
    /// `json: true`: one JSON line per event.
    Json,
    /// `function`: a user callback.
    Function(Import),
    /// `storage`: a method of a storage adapter.
    Storage {
        /// The storage.
        storage: String,
        /// The adapter's method that receives the events.
        method: String,
    },
    /// `sentry`: events sent to Sentry.
    Sentry {
        /// Where to send events; expanded when a worker starts.
        dsn: Template,
    },
}

/// A flow, with its defaults filled in and its failures grouped.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The flow's name.
    pub name: String,
    /// Where the flow was written.
    pub origin: Origin,
    /// Every node the flow mentions, in order of first appearance (edges, then failures).
    pub nodes: Vec<FlowNode>,
    /// In YAML order; an edge's index is its position (part of the wire format).
    pub edges: Vec<Edge>,
    /// Failure entries grouped by node set; sets in sorted order.
    pub failures: Vec<FailureSet>,
    /// `nowait`: nodes the flow starts but does not wait for.
    pub nowait: BTreeSet<String>,
    /// `eager_failures`: nodes whose failure stops the flow at once.
    pub eager_failures: BTreeSet<String>,
    /// `node_args_from_first`: the first task's result becomes the flow's arguments.
    pub node_args_from_first: bool,
    /// The `propagate_*` flags.
    pub propagate: Propagation,
    /// How many times a failed flow is retried (default 0).
    pub max_retry: u64,
    /// Seconds to wait before a retry (default 0).
    pub retry_countdown_s: u64,
    /// The dispatcher queue; expanded when a worker starts.
    pub queue: Template,
    /// The minimal interval between two starts, in microseconds (`None`: no throttling).
    pub throttling_us: Option<u64>,
    /// Cache of node states.
    pub cache: Option<Cache>,
    /// Upstream's polling strategy; kept for reference (our dispatch is event driven).
    pub sampling: Option<Sampling>,
}

impl Flow {
    /// The node named `name` of this flow.
    pub fn node(&self, name: &str) -> Option<&FlowNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The sub-flows this flow starts.
    pub fn subflows(&self) -> impl Iterator<Item = &FlowNode> {
        self.nodes.iter().filter(|n| n.kind == NodeKind::Flow)
    }

    /// The edges that start the flow (no `from`).
    pub fn starting_edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(|e| e.from.is_empty())
    }
}

/// A node a flow mentions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowNode {
    /// The node's name.
    pub name: String,
    /// Task or sub-flow.
    pub kind: NodeKind,
}

/// `propagate_*` flags resolved to the sub-flows they select (only sub-flows of this flow).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Propagation {
    /// `propagate_node_args`.
    pub node_args: BTreeSet<String>,
    /// `propagate_parent`.
    pub parent: BTreeSet<String>,
    /// `propagate_parent_failures`.
    pub parent_failures: BTreeSet<String>,
    /// `propagate_finished`.
    pub finished: BTreeSet<String>,
    /// `propagate_compound_finished`.
    pub compound_finished: BTreeSet<String>,
    /// `propagate_failures`.
    pub failures: BTreeSet<String>,
    /// `propagate_compound_failures`.
    pub compound_failures: BTreeSet<String>,
}

/// An edge of a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Position in the flow's `edges` (part of the wire format of flow states).
    pub index: usize,
    /// Where the edge was written.
    pub origin: Origin,
    /// `from`: the nodes that must finish first; empty for a starting edge.
    pub from: Vec<String>,
    /// `to`: the nodes the edge starts.
    pub to: Vec<String>,
    /// `condition`: must hold for the edge to fire.
    pub condition: Condition,
    /// The condition as the YAML writes it (`{"name": "alwaysTrue"}` when none is written):
    /// what a migration file records of a tainted edge.
    pub condition_written: Json,
    /// `foreach`: start the `to` nodes once per item (`None`: once).
    pub foreach: Option<Foreach>,
    /// `selective`: run only the part of the flow leading to some tasks.
    pub selective: Option<Selective>,
}

/// `foreach` of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Foreach {
    /// The function returning the items.
    pub function: Import,
    /// `propagate_result`: each item becomes the arguments of the sub-flows started for it.
    pub propagate_result: bool,
}

/// `selective` of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Selective {
    /// The tasks to run (with what they depend on).
    pub tasks: Vec<String>,
    /// `None`: no subsequent runs; `Some(empty)`: all traversed flows; else the named flows.
    pub run_subsequent: Option<BTreeSet<String>>,
    /// `follow_subflows`: look for the tasks inside sub-flows too.
    pub follow_subflows: bool,
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// No condition written (`alwaysTrue`).
    Always,
    /// A predicate call.
    Predicate(Predicate),
    /// Every condition holds.
    And(Vec<Condition>),
    /// At least one condition holds.
    Or(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

/// A predicate leaf of a condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    /// The predicate's name.
    pub name: String,
    /// `true` for `selinon.predicates`; `false` for a user module.
    pub builtin: bool,
    /// The module a custom predicate comes from.
    pub module: String,
    /// What the predicate reads: a task's result, the flow's arguments or nothing.
    pub reads: Reads,
    /// The task whose result the predicate reads (bound leaves only).
    pub node: Option<String>,
    /// Arguments in the order the YAML gives them.
    pub args: Vec<(String, Json)>,
    /// Where the predicate was written.
    pub origin: Origin,
}

impl Edge {
    /// The source tasks whose results the condition reads (fetched before it runs), sorted.
    pub fn reads(&self, system: &System) -> Vec<String> {
        let tasks: BTreeSet<&str> = self
            .condition
            .predicates()
            .into_iter()
            .filter_map(|p| p.node.as_deref())
            .filter(|n| system.task(n).is_some())
            .collect();
        tasks.into_iter().map(str::to_string).collect()
    }
}

impl Condition {
    /// The condition as upstream prints it in traces (`condition_str`).
    pub fn to_source(&self) -> String {
        match self {
            Condition::Always => "True".into(),
            Condition::Predicate(p) => {
                let mut params = Vec::new();
                match p.reads {
                    Reads::Result => {
                        params.push(format!("db.get('{}')", p.node.as_deref().unwrap_or("?")))
                    }
                    Reads::NodeArgs => params.push("node_args".into()),
                    Reads::Nothing => {}
                }
                for (k, v) in &p.args {
                    params.push(format!("{k}={}", python_repr(v)));
                }
                format!("{}({})", p.name, params.join(", "))
            }
            Condition::And(items) => format!(
                "({})",
                items
                    .iter()
                    .map(Condition::to_source)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            Condition::Or(items) => format!(
                "({})",
                items
                    .iter()
                    .map(Condition::to_source)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Condition::Not(inner) => format!("(not {})", inner.to_source()),
        }
    }

    /// Whether evaluating the condition may block on I/O: it uses a blocking built-in
    /// (`httpStatus`) or a user predicate (synchronous user code, which may do I/O). The engine
    /// evaluates such conditions on tokio's blocking threads.
    pub fn may_block(&self) -> bool {
        self.predicates().iter().any(|p| {
            !p.builtin || selinon_runtime::predicates::builtin(&p.name).is_some_and(|b| b.blocking)
        })
    }

    /// Every predicate leaf, depth first.
    pub fn predicates(&self) -> Vec<&Predicate> {
        let mut out = Vec::new();
        fn walk<'a>(c: &'a Condition, out: &mut Vec<&'a Predicate>) {
            match c {
                Condition::Always => {}
                Condition::Predicate(p) => out.push(p),
                Condition::And(items) | Condition::Or(items) => {
                    items.iter().for_each(|i| walk(i, out))
                }
                Condition::Not(inner) => walk(inner, out),
            }
        }
        walk(self, &mut out);
        out
    }
}

/// A JSON value written the way Python's `repr` writes it.
fn python_repr(v: &Json) -> String {
    match v {
        Json::Null => "None".into(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Json::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// All failure entries of a flow that handle the same set of nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureSet {
    /// Sorted node names.
    pub nodes: BTreeSet<String>,
    /// Tried in YAML order; every alternative whose condition holds runs.
    pub alternatives: Vec<FailureAlternative>,
}

/// One `failures` entry of a [`FailureSet`].
#[derive(Clone, Debug, PartialEq)]
pub struct FailureAlternative {
    /// Where the entry was written.
    pub origin: Origin,
    /// What to start.
    pub fallback: FallbackTarget,
    /// Run the fallback only when it holds (`Always` when none is written).
    pub condition: Condition,
    /// `propagate_failure`: the failure still propagates to the parent flow after the fallback ran.
    pub propagate_failure: bool,
}

/// `fallback` of a failure entry.
#[derive(Clone, Debug, PartialEq)]
pub enum FallbackTarget {
    /// `fallback: true`: mark the failure handled, start nothing.
    Handled,
    /// The nodes to start.
    Nodes(Vec<String>),
}

/// `sampling` of a flow: upstream's polling strategy (kept for reference).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// The strategy function.
    pub function: Import,
    /// Its arguments by name.
    pub args: BTreeMap<String, Json>,
}

/// Lowers a configuration that passed validation.
pub fn lower(config: &Config, sources: &SourceMap) -> System {
    let origin = |span: Span| Origin {
        file: sources.get(span.file).display.clone(),
        line: span.line,
        column: span.column,
    };
    let default_task_queue = config.global.default_task_queue.as_ref().map_or_else(
        || Template::literal(config::DEFAULT_QUEUE),
        |q| q.value.clone(),
    );
    let default_dispatcher_queue = config.global.default_dispatcher_queue.as_ref().map_or_else(
        || Template::literal(config::DEFAULT_QUEUE),
        |q| q.value.clone(),
    );
    let predicates_module = config.global.predicates_module().to_string();
    let custom = config.global.has_custom_predicates();

    let mut files = vec![sources.get(config.nodes_file).display.clone()];
    for f in &config.flow_files {
        let d = sources.get(*f).display.clone();
        if !files.contains(&d) {
            files.push(d);
        }
    }
    files[1..].sort();

    let tasks = config
        .tasks
        .iter()
        .map(|t| Task {
            name: t.name.value.clone(),
            origin: origin(t.span),
            class: Import {
                module: t.import.value.clone(),
                name: t.classname().to_string(),
            },
            storage: t.storage.as_ref().map(|s| s.value.clone()),
            storage_readonly: t.storage_readonly,
            storage_task_name: t.storage_task_name().to_string(),
            output_schema: t.output_schema.as_ref().map(|s| OutputSchema {
                path: s.value.clone(),
                json: None,
            }),
            max_retry: t.max_retry(),
            retry_countdown_s: t.retry_countdown(),
            queue: t
                .queue
                .as_ref()
                .map_or_else(|| default_task_queue.clone(), |q| q.value.clone()),
            throttling_us: t.throttling.as_ref().map(|th| th.micros),
            selective_run_function: t.selective_run_function.as_ref().and_then(|f| {
                let import = Import {
                    module: f.import.value.clone(),
                    name: f.name.value.clone(),
                };
                let default = config::DEFAULT_SELECTIVE_RUN_FUNCTION;
                (import.module != default.0 || import.name != default.1).then_some(import)
            }),
        })
        .collect();

    let cache = |c: &config::Cache| Cache {
        class: Import {
            module: c.import.value.clone(),
            name: c.name.value.clone(),
        },
        max_cache_size: c.max_cache_size(),
        configuration: Json::Object(
            c.configuration
                .iter()
                .map(|(k, v)| (k.value.clone(), v.to_json()))
                .collect(),
        ),
    };

    let storages = config
        .storages
        .iter()
        .map(|s| Storage {
            name: s.name.value.clone(),
            origin: origin(s.span),
            class: Import {
                module: s.import.value.clone(),
                name: s.classname().to_string(),
            },
            configuration: s.configuration.to_json(),
            cache: s.cache.as_ref().map(cache),
            tasks: config
                .tasks
                .iter()
                .filter(|t| t.storage.as_ref().is_some_and(|n| n.value == s.name.value))
                .map(|t| t.name.value.clone())
                .collect(),
        })
        .collect();

    let lower_condition = |cond: Option<&config::Condition>, sources_of_edge: &[String]| {
        cond.map_or(Condition::Always, |c| {
            lower_cond(c, sources_of_edge, &predicates_module, custom, &origin)
        })
    };

    let mut flows = Vec::new();
    for name in &config.flow_names {
        let Some(f) = config.flow(&name.value) else {
            continue;
        };
        let mut nodes: Vec<FlowNode> = Vec::new();
        let mut add_node = |n: &str| {
            if !nodes.iter().any(|x| x.name == n) {
                let kind = if config.is_flow(n) {
                    NodeKind::Flow
                } else {
                    NodeKind::Task
                };
                nodes.push(FlowNode {
                    name: n.to_string(),
                    kind,
                });
            }
        };
        for e in &f.edges {
            e.from.iter().chain(&e.to).for_each(|n| add_node(&n.value));
        }
        for fl in &f.failures {
            fl.nodes
                .iter()
                .chain(fl.fallback.nodes())
                .for_each(|n| add_node(&n.value));
        }
        let subflows: BTreeSet<String> = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Flow)
            .map(|n| n.name.clone())
            .collect();
        let resolve = |sel: &FlowSelection| -> BTreeSet<String> {
            match sel {
                FlowSelection::None => BTreeSet::new(),
                FlowSelection::All(_) => subflows.clone(),
                FlowSelection::Some(names) => names
                    .iter()
                    .map(|n| n.value.clone())
                    .filter(|n| subflows.contains(n))
                    .collect(),
            }
        };
        let edges = f
            .edges
            .iter()
            .map(|e| {
                let from: Vec<String> = e.from.iter().map(|n| n.value.clone()).collect();
                Edge {
                    index: e.index,
                    origin: origin(e.span),
                    to: e.to.iter().map(|n| n.value.clone()).collect(),
                    condition: lower_condition(e.condition.as_ref(), &from),
                    condition_written: e.condition.as_ref().map_or_else(
                        || serde_json::json!({"name": "alwaysTrue"}),
                        config::Condition::to_json,
                    ),
                    from,
                    foreach: e.foreach.as_ref().map(|fe| Foreach {
                        function: Import {
                            module: fe.import.value.clone(),
                            name: fe.function.value.clone(),
                        },
                        propagate_result: fe.propagate_result,
                    }),
                    selective: e.selective.as_ref().map(|s| Selective {
                        tasks: s.tasks.iter().map(|t| t.value.clone()).collect(),
                        run_subsequent: match &s.run_subsequent {
                            FlowSelection::None => None,
                            FlowSelection::All(_) => Some(BTreeSet::new()),
                            FlowSelection::Some(n) => {
                                Some(n.iter().map(|x| x.value.clone()).collect())
                            }
                        },
                        follow_subflows: s.follow_subflows,
                    }),
                }
            })
            .collect();
        let mut failures: Vec<FailureSet> = Vec::new();
        for fl in &f.failures {
            let set: BTreeSet<String> = fl.nodes.iter().map(|n| n.value.clone()).collect();
            let failed: Vec<String> = set.iter().cloned().collect();
            let alternative = FailureAlternative {
                origin: origin(fl.span),
                fallback: match &fl.fallback {
                    config::Fallback::True(_) => FallbackTarget::Handled,
                    config::Fallback::Nodes(n) => {
                        FallbackTarget::Nodes(n.iter().map(|x| x.value.clone()).collect())
                    }
                },
                condition: lower_condition(fl.condition.as_ref(), &failed),
                propagate_failure: fl.propagate_failure,
            };
            match failures.iter_mut().find(|s| s.nodes == set) {
                Some(existing) => existing.alternatives.push(alternative),
                None => failures.push(FailureSet {
                    nodes: set,
                    alternatives: vec![alternative],
                }),
            }
        }
        failures.sort_by(|a, b| a.nodes.cmp(&b.nodes));
        flows.push(Flow {
            name: f.name.value.clone(),
            origin: origin(f.span),
            edges,
            failures,
            nowait: f.nowait.iter().map(|n| n.value.clone()).collect(),
            eager_failures: f.eager_failures.iter().map(|n| n.value.clone()).collect(),
            node_args_from_first: f.node_args_from_first,
            propagate: Propagation {
                node_args: resolve(&f.propagate_node_args),
                parent: resolve(&f.propagate_parent),
                parent_failures: resolve(&f.propagate_parent_failures),
                finished: resolve(&f.propagate_finished),
                compound_finished: resolve(&f.propagate_compound_finished),
                failures: resolve(&f.propagate_failures),
                compound_failures: resolve(&f.propagate_compound_failures),
            },
            max_retry: f.max_retry(),
            retry_countdown_s: f.retry_countdown(),
            queue: f
                .queue
                .as_ref()
                .map_or_else(|| default_dispatcher_queue.clone(), |q| q.value.clone()),
            throttling_us: f.throttling.as_ref().map(|t| t.micros),
            cache: f.cache.as_ref().map(cache),
            sampling: f.sampling.as_ref().map(|s| Sampling {
                function: Import {
                    module: s.import.value.clone(),
                    name: s.name.value.clone(),
                },
                args: s
                    .args
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.to_json()))
                    .collect(),
            }),
            nodes,
        });
    }

    let trace = config
        .global
        .trace
        .iter()
        .map(|s| match &s.kind {
            config::TraceSinkKind::Logging => TraceSink::Logging,
            config::TraceSinkKind::Json => TraceSink::Json,
            config::TraceSinkKind::Function(f) => TraceSink::Function(Import {
                module: f.import.value.clone(),
                name: f.name.value.clone(),
            }),
            config::TraceSinkKind::Storage { name, method } => TraceSink::Storage {
                storage: name.value.clone(),
                method: method.clone(),
            },
            config::TraceSinkKind::Sentry { dsn } => TraceSink::Sentry {
                dsn: dsn.value.clone(),
            },
        })
        .collect();

    System {
        files,
        tasks,
        storages,
        flows,
        custom_predicates_module: custom.then(|| predicates_module.clone()),
        migrations: Vec::new(),
        migration_dir: config
            .global
            .migration_dir
            .as_ref()
            .map(|m| m.value.clone()),
        trace,
    }
}

fn lower_cond(
    c: &config::Condition,
    sources: &[String],
    module: &str,
    custom: bool,
    origin: &dyn Fn(Span) -> Origin,
) -> Condition {
    match &c.kind {
        config::ConditionKind::Predicate { name, node, args } => {
            // Built-in names keep their built-in meaning even with a custom module (a user
            // module upstream re-exports them); other names come from the user's module.
            let _ = custom;
            let builtin = predicates::builtin(&name.value);
            // A custom predicate reads the result when it is bound to a node explicitly or the
            // edge has one source; the generated code checks its real signature.
            let reads = builtin.map_or_else(
                || {
                    if node.is_some() || sources.len() == 1 {
                        Reads::Result
                    } else {
                        Reads::NodeArgs
                    }
                },
                |b| b.reads,
            );
            let node = match reads {
                Reads::Result => node
                    .as_ref()
                    .map(|n| n.value.clone())
                    .or_else(|| (sources.len() == 1).then(|| sources[0].clone())),
                _ => None,
            };
            Condition::Predicate(Predicate {
                name: name.value.clone(),
                builtin: builtin.is_some(),
                module: module.to_string(),
                reads,
                node,
                args: args
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.to_json()))
                    .collect(),
                origin: origin(c.span),
            })
        }
        config::ConditionKind::And(items) => Condition::And(
            items
                .iter()
                .map(|i| lower_cond(i, sources, module, custom, origin))
                .collect(),
        ),
        config::ConditionKind::Or(items) => Condition::Or(
            items
                .iter()
                .map(|i| lower_cond(i, sources, module, custom, origin))
                .collect(),
        ),
        config::ConditionKind::Not(inner) => {
            Condition::Not(Box::new(lower_cond(inner, sources, module, custom, origin)))
        }
    }
}
