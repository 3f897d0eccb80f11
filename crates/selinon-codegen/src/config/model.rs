//! The configuration model: every key of a Selinon nodes file and flow file, with its real type,
//! its default, and the place it was written.
//!
//! The model is what the user wrote, checked for shape (types, required keys, unknown keys) but
//! not for meaning; `validate` checks meaning, and `ir` resolves it into graphs.

use crate::config::yaml::Node;
use crate::diagnostics::{FileId, Span};

/// A value with the place it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// A value written at `span`.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl Spanned<String> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// A name as written in the YAML (a task, flow, storage, predicate, ...).
pub type Name = Spanned<String>;

/// Default module of predicates (`global.predicates_module`).
pub const DEFAULT_PREDICATES_MODULE: &str = "selinon.predicates";
/// Default queue of tasks and dispatchers.
pub const DEFAULT_QUEUE: &str = "celery";
/// Default module of cache classes.
pub const DEFAULT_CACHE_IMPORT: &str = "selinon.caches";
/// Default cache class.
pub const DEFAULT_CACHE_NAME: &str = "LRU";
/// Default module of sampling strategies.
pub const DEFAULT_STRATEGY_IMPORT: &str = "selinon.strategies";
/// Default selective run function: `selinon.routines.always_run`.
pub const DEFAULT_SELECTIVE_RUN_FUNCTION: (&str, &str) = ("selinon.routines", "always_run");

/// A whole Selinon system: one nodes file and its flow files.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The nodes file.
    pub nodes_file: FileId,
    /// The flow files, in the order given.
    pub flow_files: Vec<FileId>,
    /// `tasks` of the nodes file, in file order.
    pub tasks: Vec<Task>,
    /// The `flows:` list of the nodes file: every flow of the system.
    pub flow_names: Vec<Name>,
    /// `storages` of the nodes file, in file order.
    pub storages: Vec<Storage>,
    /// `global` of the nodes file (all defaults when absent).
    pub global: Global,
    /// Every `flow-definitions` entry of every flow file, in file order.
    pub flows: Vec<Flow>,
}

impl Config {
    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name.value == name)
    }

    /// The flow definition named `name`.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name.value == name)
    }

    /// The storage named `name`.
    pub fn storage(&self, name: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.name.value == name)
    }

    /// Whether `name` is listed in the nodes file's `flows:`.
    pub fn is_flow(&self, name: &str) -> bool {
        self.flow_names.iter().any(|f| f.value == name)
    }

    /// Whether `name` is a task of the nodes file.
    pub fn is_task(&self, name: &str) -> bool {
        self.task(name).is_some()
    }
}

/// A string that may hold `{VAR}` placeholders, expanded from the environment when a worker
/// starts (never when code is generated). `{{` and `}}` are literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The string as written.
    pub raw: String,
    /// The string split into literal text and placeholders.
    pub parts: Vec<TemplatePart>,
}

/// A piece of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text (`{{` and `}}` already turned into braces).
    Text(String),
    /// A `{VAR}` placeholder: the environment variable's name.
    Env(String),
}

impl Template {
    /// Parses Python `str.format` syntax restricted to named fields, as upstream uses it.
    pub fn parse(raw: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => {
                    return Err(
                        "single `}` in a string with placeholders; write `}}` for a literal brace"
                            .into(),
                    )
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "placeholder `{{{name}` is not closed; write `{{VAR}}` or `{{{{` for a literal brace"
                                ))
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let valid = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
                    if !valid {
                        return Err(format!(
                            "`{{{name}}}` is not an environment variable placeholder; write `{{VAR_NAME}}`, or `{{{{`/`}}}}` for literal braces"
                        ));
                    }
                    if !text.is_empty() {
                        parts.push(TemplatePart::Text(std::mem::take(&mut text)));
                    }
                    parts.push(TemplatePart::Env(name));
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(TemplatePart::Text(text));
        }
        Ok(Template {
            raw: raw.to_string(),
            parts,
        })
    }

    /// A template holding no placeholder.
    pub fn literal(text: &str) -> Template {
        Template {
            raw: text.replace('{', "{{").replace('}', "}}"),
            parts: vec![TemplatePart::Text(text.to_string())],
        }
    }

    /// The environment variables the template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Env(v) => Some(v.as_str()),
            TemplatePart::Text(_) => None,
        })
    }

    /// The text when no placeholder is involved.
    pub fn as_literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|p| match p {
                TemplatePart::Text(t) => Some(t.as_str()),
                TemplatePart::Env(_) => None,
            })
            .collect()
    }

    /// Expands the placeholders with `lookup`; the first missing variable is the error.
    pub fn expand(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Env(v) => out.push_str(&lookup(v).ok_or_else(|| v.clone())?),
            }
        }
        Ok(out)
    }
}

/// `tasks[]` of the nodes file.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    /// The whole entry.
    pub span: Span,
    /// `name`: the task's name in flows.
    pub name: Name,
    /// `import`: the module holding the task type.
    pub import: Name,
    /// `classname`: the task type's name (default: `name`).
    pub classname: Option<Name>,
    /// `storage`: the storage the task's results are written to (default: none).
    pub storage: Option<Name>,
    /// `storage_readonly` (default `false`): the task reads from its storage but its results are
    /// not stored.
    pub storage_readonly: bool,
    /// `storage_task_name`: the name results are stored under (default: `name`).
    pub storage_task_name: Option<Name>,
    /// `output_schema`: path of a JSON schema the results must match, relative to the nodes file's
    /// folder.
    pub output_schema: Option<Name>,
    /// `max_retry` (default 0): how many times a failed run is retried.
    pub max_retry: Option<Spanned<u64>>,
    /// `retry_countdown` (default 0): seconds to wait before a retry.
    pub retry_countdown: Option<Spanned<u64>>,
    /// `queue` (default: `global.default_task_queue`, else `celery`).
    pub queue: Option<Spanned<Template>>,
    /// `throttling`: the minimal interval between two starts of the task.
    pub throttling: Option<Throttling>,
    /// `selective_run_function`: decides whether the task runs or reuses an earlier result
    /// (default: always run).
    pub selective_run_function: Option<FunctionRef>,
}

impl Task {
    /// The class (Rust type) implementing the task; defaults to the task's name.
    pub fn classname(&self) -> &str {
        self.classname.as_ref().unwrap_or(&self.name).as_str()
    }

    /// The name results are stored under; defaults to the task's name.
    pub fn storage_task_name(&self) -> &str {
        self.storage_task_name
            .as_ref()
            .unwrap_or(&self.name)
            .as_str()
    }

    /// `max_retry`, 0 when absent.
    pub fn max_retry(&self) -> u64 {
        self.max_retry.as_ref().map_or(0, |m| m.value)
    }

    /// `retry_countdown` in seconds, 0 when absent.
    pub fn retry_countdown(&self) -> u64 {
        self.retry_countdown.as_ref().map_or(0, |m| m.value)
    }
}

/// A reference to a function by module and name (`{name, import}`).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionRef {
    /// The whole block.
    pub span: Span,
    /// `name`: the function's name.
    pub name: Name,
    /// `import`: the module holding it.
    pub import: Name,
}

/// `storages[]` of the nodes file.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    /// The whole entry.
    pub span: Span,
    /// `name`: the storage's name, which tasks' `storage` keys refer to.
    pub name: Name,
    /// `import`: the module holding the storage adapter.
    pub import: Name,
    /// `classname`: the adapter type's name (default: `name`).
    pub classname: Option<Name>,
    /// A mapping (keyword arguments) or any other value (one positional argument).
    pub configuration: Node,
    /// `cache`: a cache of results in front of the storage (default: none).
    pub cache: Option<Cache>,
}

impl Storage {
    /// The adapter type's name: `classname`, defaulting to the storage's name.
    pub fn classname(&self) -> &str {
        self.classname.as_ref().unwrap_or(&self.name).as_str()
    }
}

/// A `cache` block of a storage (results) or a flow (node states).
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    /// The whole block.
    pub span: Span,
    /// `name`: the cache class (default `LRU`).
    pub name: Name,
    /// `import`: the module holding the cache class (default `selinon.caches`, the built-ins).
    pub import: Name,
    /// The `configuration` mapping; built-in caches read `max_cache_size` from it.
    pub configuration: Vec<(Name, Node)>,
}

impl Cache {
    /// `max_cache_size` when it is a non-negative integer (0, the default, caches nothing).
    pub fn max_cache_size(&self) -> u64 {
        self.configuration
            .iter()
            .find(|(k, _)| k.value == "max_cache_size")
            .and_then(|(_, v)| match v.value {
                crate::config::yaml::Value::Int(i) => u64::try_from(i).ok(),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Whether the cache class comes from `selinon.caches`, the built-ins ([`BUILTIN_CACHES`]).
    pub fn is_builtin(&self) -> bool {
        self.import.value == DEFAULT_CACHE_IMPORT
    }
}

/// The built-in cache classes of `selinon.caches`.
pub const BUILTIN_CACHES: &[&str] = &["FIFO", "LIFO", "LRU", "MRU", "RR"];

/// `global` of the nodes file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Global {
    /// Where `global` was written; `None` when absent.
    pub span: Option<Span>,
    /// `predicates_module` (default `selinon.predicates`, the built-in predicates).
    pub predicates_module: Option<Name>,
    /// `default_task_queue`: the queue of tasks without `queue` (default `celery`).
    pub default_task_queue: Option<Spanned<Template>>,
    /// `default_dispatcher_queue`: the queue of flows without `queue` (default `celery`).
    pub default_dispatcher_queue: Option<Spanned<Template>>,
    /// `migration_dir`: the folder of migration files, relative to the nodes file (default: none).
    pub migration_dir: Option<Spanned<Template>>,
    /// Empty when tracing is off (no `trace`, or `trace: false`).
    pub trace: Vec<TraceSink>,
}

impl Global {
    /// The predicates module: `predicates_module`, else `selinon.predicates`.
    pub fn predicates_module(&self) -> &str {
        self.predicates_module
            .as_ref()
            .map_or(DEFAULT_PREDICATES_MODULE, |m| m.as_str())
    }

    /// Whether predicates come from a user module instead of the built-ins.
    pub fn has_custom_predicates(&self) -> bool {
        self.predicates_module() != DEFAULT_PREDICATES_MODULE
    }
}

/// One trace sink of `global.trace`.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSink {
    /// Where the sink was written.
    pub span: Span,
    /// Which sink it is.
    pub kind: TraceSinkKind,
}

/// The kinds of trace sink.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceSinkKind {
    /// `logging: true`: the `tracing` crate.
    Logging,
    /// `json: true`: one JSON line per event.
    Json,
    /// `function: {import, name}`: a user callback.
    Function(FunctionRef),
    /// `storage: {name, method}`: a method of a storage adapter.
    Storage {
        /// `name`: the storage.
        name: Name,
        /// `method`: the adapter's method that receives the events.
        method: String,
    },
    /// `sentry: {dsn}`.
    Sentry {
        /// `dsn`: where to send events; may hold `{VAR}` placeholders.
        dsn: Spanned<Template>,
    },
}

/// Which sub-flows a `propagate_*` flag selects: `false`/absent, `true`, or named flows.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum FlowSelection {
    /// `false` or absent: no sub-flow.
    #[default]
    None,
    /// `true`: every sub-flow; the span is where `true` was written.
    All(Span),
    /// The named sub-flows.
    Some(Vec<Name>),
}

impl FlowSelection {
    /// Whether the sub-flow `flow` is selected.
    pub fn selects(&self, flow: &str) -> bool {
        match self {
            FlowSelection::None => false,
            FlowSelection::All(_) => true,
            FlowSelection::Some(names) => names.iter().any(|n| n.value == flow),
        }
    }

    /// Whether nothing is selected.
    pub fn is_none(&self) -> bool {
        matches!(self, FlowSelection::None)
    }

    /// The named flows; empty unless flows are named.
    pub fn names(&self) -> &[Name] {
        match self {
            FlowSelection::Some(names) => names,
            _ => &[],
        }
    }
}

/// The `propagate_*` flags of a flow, in the order the spec lists them.
pub const PROPAGATE_FLAGS: &[&str] = &[
    "propagate_node_args",
    "propagate_parent",
    "propagate_parent_failures",
    "propagate_finished",
    "propagate_compound_finished",
    "propagate_failures",
    "propagate_compound_failures",
];

/// `flow-definitions[]` of a flow file.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The whole entry.
    pub span: Span,
    /// `name`: the flow's name (listed in the nodes file's `flows`).
    pub name: Name,
    /// `edges`, in order.
    pub edges: Vec<Edge>,
    /// `failures`, in order (default: none).
    pub failures: Vec<Failure>,
    /// `nowait`: nodes the flow starts but does not wait for.
    pub nowait: Vec<Name>,
    /// `eager_failures`: nodes whose failure stops the flow at once.
    pub eager_failures: Vec<Name>,
    /// `node_args_from_first` (default `false`): the result of the flow's first task becomes the
    /// flow's arguments.
    pub node_args_from_first: bool,
    /// `propagate_node_args`: sub-flows that get this flow's arguments.
    pub propagate_node_args: FlowSelection,
    /// `propagate_parent`: sub-flows that get their parent nodes' results.
    pub propagate_parent: FlowSelection,
    /// `propagate_parent_failures`: sub-flows that get their parent nodes' failures.
    pub propagate_parent_failures: FlowSelection,
    /// `propagate_finished`: sub-flows whose finished nodes the following nodes see as parents.
    pub propagate_finished: FlowSelection,
    /// `propagate_compound_finished`: as `propagate_finished`, with nested sub-flows flattened.
    pub propagate_compound_finished: FlowSelection,
    /// `propagate_failures`: sub-flows whose failures the following failure handlers see.
    pub propagate_failures: FlowSelection,
    /// `propagate_compound_failures`: as `propagate_failures`, with nested sub-flows flattened.
    pub propagate_compound_failures: FlowSelection,
    /// `max_retry` (default 0): how many times a failed flow is retried.
    pub max_retry: Option<Spanned<u64>>,
    /// `retry_countdown` (default 0): seconds to wait before a retry.
    pub retry_countdown: Option<Spanned<u64>>,
    /// `queue` of the flow's dispatcher (default: `global.default_dispatcher_queue`, else
    /// `celery`).
    pub queue: Option<Spanned<Template>>,
    /// `sampling` (default: none).
    pub sampling: Option<Sampling>,
    /// `throttling`: the minimal interval between two starts of the flow.
    pub throttling: Option<Throttling>,
    /// `cache`: a cache of node states (default: none).
    pub cache: Option<Cache>,
}

impl Flow {
    /// A flag by its YAML key (one of [`PROPAGATE_FLAGS`]).
    pub fn propagate(&self, key: &str) -> &FlowSelection {
        match key {
            "propagate_node_args" => &self.propagate_node_args,
            "propagate_parent" => &self.propagate_parent,
            "propagate_parent_failures" => &self.propagate_parent_failures,
            "propagate_finished" => &self.propagate_finished,
            "propagate_compound_finished" => &self.propagate_compound_finished,
            "propagate_failures" => &self.propagate_failures,
            "propagate_compound_failures" => &self.propagate_compound_failures,
            other => panic!("`{other}` is not a propagate flag"),
        }
    }

    /// `max_retry`, 0 when absent.
    pub fn max_retry(&self) -> u64 {
        self.max_retry.as_ref().map_or(0, |m| m.value)
    }

    /// `retry_countdown` in seconds, 0 when absent.
    pub fn retry_countdown(&self) -> u64 {
        self.retry_countdown.as_ref().map_or(0, |m| m.value)
    }

    /// Every node name the flow mentions as a source (edge `from`, failure `nodes`).
    pub fn sources(&self) -> impl Iterator<Item = &Name> {
        self.edges
            .iter()
            .flat_map(|e| e.from.iter())
            .chain(self.failures.iter().flat_map(|f| f.nodes.iter()))
    }

    /// Every node name the flow starts (edge `to`, failure fallbacks).
    pub fn destinations(&self) -> impl Iterator<Item = &Name> {
        self.edges
            .iter()
            .flat_map(|e| e.to.iter())
            .chain(self.failures.iter().flat_map(|f| f.fallback.nodes().iter()))
    }
}

/// One `edges[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// The whole entry.
    pub span: Span,
    /// Position in the flow's `edges` (part of the wire format of flow states).
    pub index: usize,
    /// Empty for a starting edge.
    pub from: Vec<Name>,
    /// `to`: the nodes the edge starts.
    pub to: Vec<Name>,
    /// `None` when no condition is written (`alwaysTrue`).
    pub condition: Option<Condition>,
    /// `foreach`: start the `to` nodes once per item a function returns (default: once).
    pub foreach: Option<Foreach>,
    /// `selective`: run only the part of the flow that leads to some tasks (default: all of it).
    pub selective: Option<SelectiveBlock>,
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The whole condition.
    pub span: Span,
    /// A predicate or a combination of conditions.
    pub kind: ConditionKind,
}

/// The shapes of a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionKind {
    /// A predicate call: `{name, node, args}`.
    Predicate {
        /// `name`: the predicate.
        name: Name,
        /// `node`: the task whose result the predicate reads.
        node: Option<Name>,
        /// `args`: the predicate's arguments by name.
        args: Vec<(Name, Node)>,
    },
    /// `and`: every condition holds.
    And(Vec<Condition>),
    /// `or`: at least one condition holds.
    Or(Vec<Condition>),
    /// `not`: the condition does not hold.
    Not(Box<Condition>),
}

impl Condition {
    /// The condition as the YAML writes it: a predicate's `node` only when written, `args` as
    /// given (what upstream's `selinon migrate` records of a tainted edge).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map};
        match &self.kind {
            ConditionKind::Predicate { name, node, args } => {
                let mut m = Map::new();
                m.insert("name".into(), json!(name.value));
                if let Some(node) = node {
                    m.insert("node".into(), json!(node.value));
                }
                if !args.is_empty() {
                    let args: Map<String, serde_json::Value> = args
                        .iter()
                        .map(|(k, v)| (k.value.clone(), v.to_json()))
                        .collect();
                    m.insert("args".into(), serde_json::Value::Object(args));
                }
                serde_json::Value::Object(m)
            }
            ConditionKind::And(items) => {
                json!({"and": items.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            ConditionKind::Or(items) => {
                json!({"or": items.iter().map(Condition::to_json).collect::<Vec<_>>()})
            }
            ConditionKind::Not(inner) => json!({"not": inner.to_json()}),
        }
    }

    /// Every predicate leaf, depth first.
    pub fn leaves(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a Condition>) {
        match &self.kind {
            ConditionKind::Predicate { .. } => out.push(self),
            ConditionKind::And(items) | ConditionKind::Or(items) => {
                items.iter().for_each(|c| c.collect_leaves(out))
            }
            ConditionKind::Not(inner) => inner.collect_leaves(out),
        }
    }
}

/// `foreach` of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Foreach {
    /// The whole block.
    pub span: Span,
    /// `function`: the function returning the items.
    pub function: Name,
    /// `import`: the module holding it.
    pub import: Name,
    /// `propagate_result` (default `false`): each item becomes the arguments of the sub-flows
    /// started for it.
    pub propagate_result: bool,
}

/// `selective` of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectiveBlock {
    /// The whole block.
    pub span: Span,
    /// `tasks`: the tasks to run (with what they depend on).
    pub tasks: Vec<Name>,
    /// `run_subsequent` (default `false`): also run the nodes that follow the tasks (`true`: in
    /// every flow; or in the named flows).
    pub run_subsequent: FlowSelection,
    /// `follow_subflows` (default `false`): look for the tasks inside sub-flows too.
    pub follow_subflows: bool,
}

/// One `failures[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The whole entry.
    pub span: Span,
    /// `nodes`: the nodes whose failure the entry handles.
    pub nodes: Vec<Name>,
    /// `fallback`: what to start.
    pub fallback: Fallback,
    /// `condition`: run the fallback only when it holds (default: always).
    pub condition: Option<Condition>,
    /// `propagate_failure` (default `false`): the failure still propagates to the parent flow after
    /// the fallback ran.
    pub propagate_failure: bool,
}

/// `fallback` of a failure entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Fallback {
    /// `fallback: true`: the failure is handled, nothing is started.
    True(Span),
    /// The nodes to start.
    Nodes(Vec<Name>),
}

impl Fallback {
    /// The nodes to start; empty for `fallback: true`.
    pub fn nodes(&self) -> &[Name] {
        match self {
            Fallback::True(_) => &[],
            Fallback::Nodes(n) => n,
        }
    }
}

/// `sampling` of a flow: upstream's polling strategy. Our runtime is event driven and does not
/// poll; the block is kept so configurations load and so its arguments are checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// The whole block.
    pub span: Span,
    /// `name`: the strategy.
    pub name: Name,
    /// `import`: the module holding it (default `selinon.strategies`).
    pub import: Name,
    /// `args`: the strategy's arguments by name.
    pub args: Vec<(Name, Node)>,
}

/// The built-in sampling strategies of `selinon.strategies` with their parameters.
pub const BUILTIN_STRATEGIES: &[(&str, &[&str])] = &[
    ("biexponential_increase", &["start_retry", "max_retry"]),
    ("biexponential_decrease", &["start_retry", "stop_retry"]),
    ("biexponential_adapt", &["start_retry", "max_retry"]),
    ("linear_increase", &["start_retry", "max_retry", "step"]),
    ("linear_adapt", &["start_retry", "max_retry", "step"]),
    ("random", &["start_retry", "max_retry"]),
    ("constant", &["retry"]),
];

/// `throttling` of a task or flow: the minimal interval between two starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Throttling {
    /// The whole block.
    pub span: Span,
    /// Total interval in microseconds.
    pub micros: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_follow_python_format_syntax() {
        let t = Template::parse("{DEPLOYMENT_PREFIX}_ingestion_{{x}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["DEPLOYMENT_PREFIX"]);
        let expanded = t
            .expand(|v| (v == "DEPLOYMENT_PREFIX").then(|| "prod".into()))
            .unwrap();
        assert_eq!(expanded, "prod_ingestion_{x}");
        assert!(Template::parse("a}b").is_err());
        assert!(Template::parse("{unclosed").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("{0}").is_err());
        assert_eq!(
            Template::parse("plain").unwrap().as_literal().unwrap(),
            "plain"
        );
        assert_eq!(
            Template::parse("{A}").unwrap().expand(|_| None),
            Err("A".to_string())
        );
    }
}
