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
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl Spanned<String> {
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
    pub nodes_file: FileId,
    pub flow_files: Vec<FileId>,
    pub tasks: Vec<Task>,
    /// The `flows:` list of the nodes file: every flow of the system.
    pub flow_names: Vec<Name>,
    pub storages: Vec<Storage>,
    pub global: Global,
    /// Every `flow-definitions` entry of every flow file, in file order.
    pub flows: Vec<Flow>,
}

impl Config {
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name.value == name)
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name.value == name)
    }

    pub fn storage(&self, name: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.name.value == name)
    }

    /// Whether `name` is listed in the nodes file's `flows:`.
    pub fn is_flow(&self, name: &str) -> bool {
        self.flow_names.iter().any(|f| f.value == name)
    }

    pub fn is_task(&self, name: &str) -> bool {
        self.task(name).is_some()
    }
}

/// A string that may hold `{VAR}` placeholders, expanded from the environment when a worker
/// starts (never when code is generated). `{{` and `}}` are literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub raw: String,
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
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
    pub span: Span,
    pub name: Name,
    pub import: Name,
    pub classname: Option<Name>,
    pub storage: Option<Name>,
    pub storage_readonly: bool,
    pub storage_task_name: Option<Name>,
    pub output_schema: Option<Name>,
    pub max_retry: Option<Spanned<u64>>,
    pub retry_countdown: Option<Spanned<u64>>,
    pub queue: Option<Spanned<Template>>,
    pub throttling: Option<Throttling>,
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

    pub fn max_retry(&self) -> u64 {
        self.max_retry.as_ref().map_or(0, |m| m.value)
    }

    pub fn retry_countdown(&self) -> u64 {
        self.retry_countdown.as_ref().map_or(0, |m| m.value)
    }
}

/// A reference to a function by module and name (`{name, import}`).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionRef {
    pub span: Span,
    pub name: Name,
    pub import: Name,
}

/// `storages[]` of the nodes file.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    pub span: Span,
    pub name: Name,
    pub import: Name,
    pub classname: Option<Name>,
    /// A mapping (keyword arguments) or any other value (one positional argument).
    pub configuration: Node,
    pub cache: Option<Cache>,
}

impl Storage {
    pub fn classname(&self) -> &str {
        self.classname.as_ref().unwrap_or(&self.name).as_str()
    }
}

/// A `cache` block of a storage (results) or a flow (node states).
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    pub span: Span,
    pub name: Name,
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

    pub fn is_builtin(&self) -> bool {
        self.import.value == DEFAULT_CACHE_IMPORT
    }
}

/// The built-in cache classes of `selinon.caches`.
pub const BUILTIN_CACHES: &[&str] = &["FIFO", "LIFO", "LRU", "MRU", "RR"];

/// `global` of the nodes file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Global {
    pub span: Option<Span>,
    pub predicates_module: Option<Name>,
    pub default_task_queue: Option<Spanned<Template>>,
    pub default_dispatcher_queue: Option<Spanned<Template>>,
    pub migration_dir: Option<Spanned<Template>>,
    /// Empty when tracing is off (no `trace`, or `trace: false`).
    pub trace: Vec<TraceSink>,
}

impl Global {
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
    pub span: Span,
    pub kind: TraceSinkKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TraceSinkKind {
    /// `logging: true`: the `tracing` crate.
    Logging,
    /// `json: true`: one JSON line per event.
    Json,
    /// `function: {import, name}`: a user callback.
    Function(FunctionRef),
    /// `storage: {name, method}`: a method of a storage adapter.
    Storage { name: Name, method: String },
    /// `sentry: {dsn}`.
    Sentry { dsn: Spanned<Template> },
}

/// Which sub-flows a `propagate_*` flag selects: `false`/absent, `true`, or named flows.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum FlowSelection {
    #[default]
    None,
    All(Span),
    Some(Vec<Name>),
}

impl FlowSelection {
    pub fn selects(&self, flow: &str) -> bool {
        match self {
            FlowSelection::None => false,
            FlowSelection::All(_) => true,
            FlowSelection::Some(names) => names.iter().any(|n| n.value == flow),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, FlowSelection::None)
    }

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
    pub span: Span,
    pub name: Name,
    pub edges: Vec<Edge>,
    pub failures: Vec<Failure>,
    pub nowait: Vec<Name>,
    pub eager_failures: Vec<Name>,
    pub node_args_from_first: bool,
    pub propagate_node_args: FlowSelection,
    pub propagate_parent: FlowSelection,
    pub propagate_parent_failures: FlowSelection,
    pub propagate_finished: FlowSelection,
    pub propagate_compound_finished: FlowSelection,
    pub propagate_failures: FlowSelection,
    pub propagate_compound_failures: FlowSelection,
    pub max_retry: Option<Spanned<u64>>,
    pub retry_countdown: Option<Spanned<u64>>,
    pub queue: Option<Spanned<Template>>,
    pub sampling: Option<Sampling>,
    pub throttling: Option<Throttling>,
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

    pub fn max_retry(&self) -> u64 {
        self.max_retry.as_ref().map_or(0, |m| m.value)
    }

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
    pub span: Span,
    /// Position in the flow's `edges` (part of the wire format of flow states).
    pub index: usize,
    /// Empty for a starting edge.
    pub from: Vec<Name>,
    pub to: Vec<Name>,
    /// `None` when no condition is written (`alwaysTrue`).
    pub condition: Option<Condition>,
    pub foreach: Option<Foreach>,
    pub selective: Option<SelectiveBlock>,
}

/// A condition tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub span: Span,
    pub kind: ConditionKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConditionKind {
    Predicate {
        name: Name,
        node: Option<Name>,
        args: Vec<(Name, Node)>,
    },
    And(Vec<Condition>),
    Or(Vec<Condition>),
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
    pub span: Span,
    pub function: Name,
    pub import: Name,
    pub propagate_result: bool,
}

/// `selective` of an edge.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectiveBlock {
    pub span: Span,
    pub tasks: Vec<Name>,
    pub run_subsequent: FlowSelection,
    pub follow_subflows: bool,
}

/// One `failures[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub span: Span,
    pub nodes: Vec<Name>,
    pub fallback: Fallback,
    pub condition: Option<Condition>,
    pub propagate_failure: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Fallback {
    /// `fallback: true`: the failure is handled, nothing is started.
    True(Span),
    Nodes(Vec<Name>),
}

impl Fallback {
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
    pub span: Span,
    pub name: Name,
    pub import: Name,
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
