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
    pub line: u32,
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
    pub tasks: Vec<Task>,
    pub storages: Vec<Storage>,
    /// In the order of the nodes file's `flows:` list.
    pub flows: Vec<Flow>,
    /// `global.predicates_module`, when it names a user module.
    pub custom_predicates_module: Option<String>,
    pub migration_dir: Option<Template>,
    /// The migration files found in `migration_dir` when the configuration was read (JSON
    /// text of `1.json`, `2.json`, …), embedded in the generated code.
    pub migrations: Vec<(u32, String)>,
    pub trace: Vec<TraceSink>,
}

impl System {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    pub fn storage(&self, name: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.name == name)
    }

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Task,
    Flow,
}

/// A module path and a name in it (`myapp.tasks`, `Fetch`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Import {
    pub module: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub name: String,
    pub origin: Origin,
    /// The class implementing the task (`import` + `classname`).
    pub class: Import,
    pub storage: Option<String>,
    pub storage_readonly: bool,
    /// The name results are stored under (`storage_task_name`, default the task's name).
    pub storage_task_name: String,
    pub output_schema: Option<OutputSchema>,
    pub max_retry: u64,
    pub retry_countdown_s: u64,
    /// Expanded when a worker starts.
    pub queue: Template,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    pub name: String,
    pub origin: Origin,
    pub class: Import,
    /// A mapping (options by name) or one positional value.
    pub configuration: Json,
    pub cache: Option<Cache>,
    /// Tasks storing into it, in nodes-file order.
    pub tasks: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    pub class: Import,
    pub max_cache_size: u64,
    pub configuration: Json,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TraceSink {
    Logging,
    Json,
    Function(Import),
    Storage { storage: String, method: String },
    Sentry { dsn: Template },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub name: String,
    pub origin: Origin,
    /// Every node the flow mentions, in order of first appearance (edges, then failures).
    pub nodes: Vec<FlowNode>,
    /// In YAML order; an edge's index is its position (part of the wire format).
    pub edges: Vec<Edge>,
    /// Failure entries grouped by node set; sets in sorted order.
    pub failures: Vec<FailureSet>,
    pub nowait: BTreeSet<String>,
    pub eager_failures: BTreeSet<String>,
    pub node_args_from_first: bool,
    pub propagate: Propagation,
    pub max_retry: u64,
    pub retry_countdown_s: u64,
    /// The dispatcher queue; expanded when a worker starts.
    pub queue: Template,
    pub throttling_us: Option<u64>,
    /// Cache of node states.
    pub cache: Option<Cache>,
    /// Upstream's polling strategy; kept for reference (our dispatch is event driven).
    pub sampling: Option<Sampling>,
}

impl Flow {
    pub fn node(&self, name: &str) -> Option<&FlowNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The sub-flows this flow starts.
    pub fn subflows(&self) -> impl Iterator<Item = &FlowNode> {
        self.nodes.iter().filter(|n| n.kind == NodeKind::Flow)
    }

    pub fn starting_edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(|e| e.from.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowNode {
    pub name: String,
    pub kind: NodeKind,
}

/// `propagate_*` flags resolved to the sub-flows they select (only sub-flows of this flow).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Propagation {
    pub node_args: BTreeSet<String>,
    pub parent: BTreeSet<String>,
    pub parent_failures: BTreeSet<String>,
    pub finished: BTreeSet<String>,
    pub compound_finished: BTreeSet<String>,
    pub failures: BTreeSet<String>,
    pub compound_failures: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub index: usize,
    pub origin: Origin,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub condition: Condition,
    /// The condition as the YAML writes it (`{"name": "alwaysTrue"}` when none is written):
    /// what a migration file records of a tainted edge.
    pub condition_written: Json,
    pub foreach: Option<Foreach>,
    pub selective: Option<Selective>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Foreach {
    pub function: Import,
    pub propagate_result: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Selective {
    pub tasks: Vec<String>,
    /// `None`: no subsequent runs; `Some(empty)`: all traversed flows; else the named flows.
    pub run_subsequent: Option<BTreeSet<String>>,
    pub follow_subflows: bool,
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// No condition written (`alwaysTrue`).
    Always,
    Predicate(Predicate),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    pub name: String,
    /// `true` for `selinon.predicates`; `false` for a user module.
    pub builtin: bool,
    /// The module a custom predicate comes from.
    pub module: String,
    pub reads: Reads,
    /// The task whose result the predicate reads (bound leaves only).
    pub node: Option<String>,
    /// Arguments in the order the YAML gives them.
    pub args: Vec<(String, Json)>,
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

#[derive(Clone, Debug, PartialEq)]
pub struct FailureAlternative {
    pub origin: Origin,
    pub fallback: FallbackTarget,
    pub condition: Condition,
    pub propagate_failure: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FallbackTarget {
    /// `fallback: true`: mark the failure handled, start nothing.
    Handled,
    Nodes(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub function: Import,
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
