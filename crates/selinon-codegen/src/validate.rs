//! System checks over a loaded configuration.
//!
//! These are the checks upstream performs when it loads a configuration (names, references,
//! predicates and their arguments, the consistency rules of each flow), each reported with the
//! place it concerns and a way to fix it; plus checks upstream lacks where a configuration is
//! certainly broken (errors) or suspicious (warnings). Shape checks (types, required and unknown
//! keys) happen while loading, in `config::load`.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::*;
use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics, Span};
use selinon_runtime::predicates::{self, Reads};

/// Runs every check over a loaded configuration.
pub fn validate(config: &Config, diags: &mut Diagnostics) {
    let mut v = Validator { config, diags };
    v.names();
    v.tasks();
    v.storages();
    v.global();
    v.flow_definitions();
    for flow in &config.flows {
        if config.is_flow(&flow.name.value) {
            FlowCheck::new(&mut v, flow).run();
        }
    }
    v.unused();
}

struct Validator<'a, 'd> {
    config: &'a Config,
    diags: &'d mut Diagnostics,
}

impl<'a> Validator<'a, '_> {
    fn error(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diags.error(span, message, help);
    }

    fn warning(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diags.warning(span, message, help);
    }

    fn node_names(&self) -> impl Iterator<Item = &'a str> {
        let c = self.config;
        c.tasks
            .iter()
            .map(|t| t.name.as_str())
            .chain(c.flow_names.iter().map(|f| f.as_str()))
    }

    /// Reports `name` as an unknown node, with the nearest known name.
    fn unknown_node(&mut self, name: &Name, context: &str) {
        let hint = did_you_mean(&name.value, self.node_names());
        self.error(
            name.span,
            format!("unknown node `{}` in {context}", name.value),
            if hint.is_empty() {
                "every node must be a task of `tasks` or a flow of `flows` in the nodes file"
                    .to_string()
            } else {
                hint
            },
        );
    }

    fn names(&mut self) {
        let c = self.config;
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for task in &c.tasks {
            if let Some(first) = seen.get(task.name.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        task.name.span,
                        format!("task `{}` is defined twice", task.name.value),
                    )
                    .with_related(*first, "first defined here")
                    .with_help(
                        "rename one of them; several tasks may share a class through `classname`",
                    ),
                );
            } else {
                seen.insert(task.name.as_str(), task.name.span);
            }
        }
        let mut flows: BTreeMap<&str, Span> = BTreeMap::new();
        for flow in &c.flow_names {
            if let Some(first) = flows.get(flow.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        flow.span,
                        format!("flow `{}` is listed twice in `flows`", flow.value),
                    )
                    .with_related(*first, "first listed here")
                    .with_help("remove one of the two entries"),
                );
                continue;
            }
            flows.insert(flow.as_str(), flow.span);
            if let Some(task) = seen.get(flow.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        flow.span,
                        format!("`{}` is both a task and a flow", flow.value),
                    )
                    .with_related(*task, "the task")
                    .with_help("tasks and flows share one name space: rename one of them"),
                );
            }
        }
    }

    fn tasks(&mut self) {
        let c = self.config;
        for task in &c.tasks {
            let what = format!("task `{}`", task.name.value);
            self.module_path(&task.import, &format!("`import` of {what}"));
            if let Some(class) = &task.classname {
                self.identifier(class, &format!("`classname` of {what}"));
            } else {
                self.identifier(&task.name, &format!("the class of {what} (its name)"));
            }
            match &task.storage {
                Some(storage) if c.storage(&storage.value).is_none() => {
                    let hint =
                        did_you_mean(&storage.value, c.storages.iter().map(|s| s.name.as_str()));
                    self.error(
                        storage.span,
                        format!(
                            "{what} uses storage `{}`, which is not defined",
                            storage.value
                        ),
                        if hint.is_empty() {
                            "define it under `storages:` in the nodes file".to_string()
                        } else {
                            hint
                        },
                    );
                }
                None => {
                    if let Some(alias) = &task.storage_task_name {
                        self.error(
                            alias.span,
                            format!("{what} sets `storage_task_name` but has no `storage`"),
                            "add `storage: ...` to the task, or remove `storage_task_name`",
                        );
                    }
                    if task.storage_readonly {
                        self.warning(
                            task.span,
                            format!("{what} sets `storage_readonly` but has no `storage`"),
                            "add `storage: ...` to the task, or remove `storage_readonly`",
                        );
                    }
                }
                _ => {}
            }
            if let Some(countdown) = &task.retry_countdown {
                if countdown.value > 0 && task.max_retry() == 0 {
                    self.warning(
                        countdown.span,
                        format!(
                            "{what} sets `retry_countdown` but is never retried (`max_retry` is 0)"
                        ),
                        "set `max_retry`, or remove `retry_countdown`",
                    );
                }
            }
            if let Some(f) = &task.selective_run_function {
                self.module_path(&f.import, &format!("`selective_run_function` of {what}"));
                self.identifier(&f.name, &format!("`selective_run_function` of {what}"));
            }
        }
        // Tasks aliasing one class with different settings.
        let mut by_class: BTreeMap<(&str, &str), &Task> = BTreeMap::new();
        for task in &c.tasks {
            let key = (task.import.as_str(), task.classname());
            match by_class.get(&key) {
                None => {
                    by_class.insert(key, task);
                }
                Some(first) => {
                    let schema = |t: &Task| t.output_schema.as_ref().map(|s| s.value.clone());
                    if schema(first) != schema(task) || first.max_retry() != task.max_retry() {
                        self.diags.push(
                            Diagnostic::warning(
                                task.name.span,
                                format!(
                                    "tasks `{}` and `{}` share the class `{}.{}` but differ in `output_schema` or `max_retry`",
                                    first.name.value, task.name.value, key.0, key.1
                                ),
                            )
                            .with_related(first.name.span, "the other task")
                            .with_help("this is allowed; make sure it is intended"),
                        );
                    }
                }
            }
        }
    }

    fn storages(&mut self) {
        let c = self.config;
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for storage in &c.storages {
            let what = format!("storage `{}`", storage.name.value);
            if let Some(first) = seen.get(storage.name.as_str()) {
                self.diags.push(
                    Diagnostic::error(storage.name.span, format!("{what} is defined twice"))
                        .with_related(*first, "first defined here")
                        .with_help("rename one of them"),
                );
            } else {
                seen.insert(storage.name.as_str(), storage.name.span);
            }
            self.module_path(&storage.import, &format!("`import` of {what}"));
            if let Some(class) = &storage.classname {
                self.identifier(class, &format!("`classname` of {what}"));
            }
            if let Some(cache) = &storage.cache {
                self.module_path(&cache.import, &format!("the cache of {what}"));
            }
        }
    }

    fn global(&mut self) {
        let c = self.config;
        if let Some(module) = &c.global.predicates_module {
            self.module_path(module, "`predicates_module`");
        }
        for sink in &c.global.trace {
            match &sink.kind {
                TraceSinkKind::Storage { name, .. } if c.storage(&name.value).is_none() => {
                    let hint =
                        did_you_mean(&name.value, c.storages.iter().map(|s| s.name.as_str()));
                    self.error(
                        name.span,
                        format!(
                            "the `storage` trace sink names storage `{}`, which is not defined",
                            name.value
                        ),
                        if hint.is_empty() {
                            "define it under `storages:`".to_string()
                        } else {
                            hint
                        },
                    );
                }
                TraceSinkKind::Function(f) => {
                    self.module_path(&f.import, "the `function` trace sink");
                    self.identifier(&f.name, "the `function` trace sink");
                }
                _ => {}
            }
        }
    }

    fn flow_definitions(&mut self) {
        let c = self.config;
        let mut defined: BTreeMap<&str, Span> = BTreeMap::new();
        for flow in &c.flows {
            if let Some(first) = defined.get(flow.name.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        flow.name.span,
                        format!("flow `{}` has multiple definitions", flow.name.value),
                    )
                    .with_related(*first, "first defined here")
                    .with_help("keep one definition of the flow"),
                );
                continue;
            }
            defined.insert(flow.name.as_str(), flow.name.span);
            if !c.is_flow(&flow.name.value) {
                let hint = did_you_mean(&flow.name.value, c.flow_names.iter().map(|f| f.as_str()));
                self.error(
                    flow.name.span,
                    format!(
                        "flow `{}` is defined but not listed in `flows` of the nodes file",
                        flow.name.value
                    ),
                    if hint.is_empty() {
                        format!("add `{}` to `flows:` in the nodes file", flow.name.value)
                    } else {
                        hint
                    },
                );
            }
        }
        for name in &c.flow_names {
            if !defined.contains_key(name.as_str()) {
                self.error(
                    name.span,
                    format!(
                        "empty flow `{}`: it is listed in `flows` but has no definition",
                        name.value
                    ),
                    format!(
                        "add a `flow-definitions` entry with `name: {}`, or remove it from `flows`",
                        name.value
                    ),
                );
            }
        }
    }

    fn unused(&mut self) {
        let c = self.config;
        let used: BTreeSet<&str> = c
            .flows
            .iter()
            .flat_map(|f| f.sources().chain(f.destinations()))
            .map(|n| n.as_str())
            .collect();
        for task in &c.tasks {
            if !used.contains(task.name.as_str()) {
                self.warning(
                    task.name.span,
                    format!("task `{}` is not used in any flow", task.name.value),
                    "remove it, or start it from an edge",
                );
            }
        }
        for storage in &c.storages {
            let by_task = c.tasks.iter().any(|t| {
                t.storage
                    .as_ref()
                    .is_some_and(|s| s.value == storage.name.value)
            });
            let by_trace = c.global.trace.iter().any(|s| {
                matches!(&s.kind, TraceSinkKind::Storage { name, .. } if name.value == storage.name.value)
            });
            if !by_task && !by_trace {
                self.warning(
                    storage.name.span,
                    format!("storage `{}` is not used by any task", storage.name.value),
                    "remove it, or set `storage:` on the tasks that should use it",
                );
            }
        }
    }

    /// A dotted module path (`myapp.tasks`) that maps to a Rust path.
    fn module_path(&mut self, path: &Name, what: &str) {
        let valid = path.value.split('.').all(is_identifier);
        if !valid {
            self.error(
                path.span,
                format!("{what} `{}` is not a module path", path.value),
                "write a dotted path of identifiers, e.g. `myapp.tasks`",
            );
        }
    }

    fn identifier(&mut self, name: &Name, what: &str) {
        if !is_identifier(&name.value) {
            self.error(
                name.span,
                format!("{what} `{}` is not an identifier", name.value),
                "use letters, digits and `_`, not starting with a digit",
            );
        }
    }
}

fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The checks of one flow.
struct FlowCheck<'v, 'a, 'd> {
    v: &'v mut Validator<'a, 'd>,
    flow: &'a Flow,
    what: String,
    /// Node names started in this flow (edge destinations and fallbacks).
    started: BTreeSet<&'a str>,
    /// Node names used as sources (edge `from`, failure `nodes`).
    sources: BTreeSet<&'a str>,
}

impl<'v, 'a, 'd> FlowCheck<'v, 'a, 'd> {
    fn new(v: &'v mut Validator<'a, 'd>, flow: &'a Flow) -> Self {
        let started = flow.destinations().map(|n| n.as_str()).collect();
        let sources = flow.sources().map(|n| n.as_str()).collect();
        FlowCheck {
            v,
            what: format!("flow `{}`", flow.name.value),
            flow,
            started,
            sources,
        }
    }

    fn config(&self) -> &'a Config {
        self.v.config
    }

    fn is_subflow(&self, name: &str) -> bool {
        self.config().is_flow(name) && self.started.contains(name)
    }

    fn run(mut self) {
        self.edges();
        self.failures();
        self.nowait();
        self.eager_failures();
        self.node_args_from_first();
        self.propagation();
        self.sampling();
        self.reachability();
        self.multiplying_joins();
    }

    /// Checks that a node name exists; `false` when it does not.
    fn known(&mut self, name: &Name, context: &str) -> bool {
        let c = self.config();
        if c.is_task(&name.value) || c.is_flow(&name.value) {
            true
        } else {
            self.v.unknown_node(name, context);
            false
        }
    }

    fn edges(&mut self) {
        let flow = self.flow;
        if !flow.edges.iter().any(|e| e.from.is_empty()) && !flow.edges.is_empty() {
            self.v.error(
                flow.name.span,
                format!("{} has no starting edge", self.what),
                "add an edge with an empty `from:` that starts the flow's first nodes",
            );
        }
        for edge in &flow.edges {
            let context = format!("edge #{} of {}", edge.index, self.what);
            let mut seen = BTreeSet::new();
            for n in &edge.from {
                self.known(n, &context);
                if !seen.insert(n.as_str()) {
                    self.v.error(
                        n.span,
                        format!("`{}` appears twice in `from` of {context}", n.value),
                        "list each source once",
                    );
                }
            }
            for n in &edge.to {
                self.known(n, &context);
            }
            if let Some(cond) = &edge.condition {
                self.condition(cond, &edge.from, false, &context);
            }
            if let Some(foreach) = &edge.foreach {
                self.v
                    .module_path(&foreach.import, &format!("`foreach` of {context}"));
                self.v
                    .identifier(&foreach.function, &format!("`foreach` of {context}"));
                if foreach.propagate_result {
                    for n in &edge.to {
                        if self.config().is_task(&n.value) {
                            self.v.error(
                                n.span,
                                format!("`foreach` of {context} sets `propagate_result`, but `{}` is a task", n.value),
                                "`propagate_result` hands each item to sub-flows as their arguments: every `to` node must be a flow",
                            );
                        } else if flow.propagate_node_args.selects(&n.value) {
                            self.v.error(
                                n.span,
                                format!("`{}` gets its arguments both from `foreach` `propagate_result` and from `propagate_node_args` in {}", n.value, self.what),
                                "choose one: remove `propagate_result` or remove the flow from `propagate_node_args`",
                            );
                        }
                    }
                }
            }
            if let Some(selective) = &edge.selective {
                if edge.to.len() != 1 || !self.config().is_flow(&edge.to[0].value) {
                    self.v.error(
                        selective.span,
                        format!("`selective` of {context} needs exactly one `to` node, a flow"),
                        "a selective block runs part of one sub-flow: move the other destinations to their own edge",
                    );
                }
                for task in &selective.tasks {
                    if !self.config().is_task(&task.value) {
                        let hint = did_you_mean(
                            &task.value,
                            self.config().tasks.iter().map(|t| t.name.as_str()),
                        );
                        self.v.error(
                            task.span,
                            format!(
                                "`selective` of {context} names `{}`, which is not a task",
                                task.value
                            ),
                            if hint.is_empty() {
                                "name tasks of the sub-flow to run".to_string()
                            } else {
                                hint
                            },
                        );
                    }
                }
                for name in selective.run_subsequent.names() {
                    if !self.config().is_flow(&name.value) {
                        self.v.error(
                            name.span,
                            format!(
                                "`run_subsequent` of {context} names `{}`, which is not a flow",
                                name.value
                            ),
                            "list flows, or write `true` for all",
                        );
                    }
                }
            }
        }
    }

    /// Checks a condition tree. `sources` are the edge's `from` nodes (or a failure's `nodes`).
    fn condition(&mut self, cond: &Condition, sources: &[Name], in_failure: bool, context: &str) {
        for leaf in cond.leaves() {
            let ConditionKind::Predicate { name, node, args } = &leaf.kind else {
                continue;
            };
            if let Some(n) = node {
                if !sources.iter().any(|s| s.value == n.value) {
                    let names: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
                    self.v.error(
                        n.span,
                        format!("predicate `{}` reads node `{}`, which is not a source of {context}", name.value, n.value),
                        if names.is_empty() {
                            "a starting edge has no sources: its conditions can only read the flow's arguments".to_string()
                        } else {
                            format!("`node` must be one of: {}", names.join(", "))
                        },
                    );
                    continue;
                }
            }
            let Some(builtin) = predicates::builtin(&name.value) else {
                if self.config().global.has_custom_predicates() {
                    // A predicate of the user's module: compiling the generated code checks
                    // that it exists and what it takes.
                    continue;
                }
                let hint = did_you_mean(&name.value, predicates::names());
                self.v.error(
                    name.span,
                    format!("unknown predicate `{}` in {context}", name.value),
                    if hint.is_empty() {
                        "use a built-in predicate, or name your module in `global.predicates_module`".to_string()
                    } else {
                        hint
                    },
                );
                continue;
            };
            let given: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
            for (key, _) in args {
                if !builtin.args.contains(&key.as_str()) {
                    let hint = did_you_mean(&key.value, builtin.args.iter().copied());
                    self.v.error(
                        key.span,
                        format!(
                            "predicate `{}` takes no argument `{}`",
                            name.value, key.value
                        ),
                        if hint.is_empty() {
                            describe_args(builtin.args)
                        } else {
                            hint
                        },
                    );
                }
            }
            let missing: Vec<&str> = builtin
                .args
                .iter()
                .copied()
                .filter(|a| !given.contains(a))
                .collect();
            if !missing.is_empty() {
                self.v.error(
                    name.span,
                    format!(
                        "predicate `{}` needs argument{} {}",
                        name.value,
                        if missing.len() == 1 { "" } else { "s" },
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    format!("add them under `args:`; {}", describe_args(builtin.args)),
                );
            }
            if builtin.reads != Reads::Result {
                continue;
            }
            if in_failure {
                self.v.error(
                    name.span,
                    format!(
                        "predicate `{}` reads a task result, which failure conditions cannot",
                        name.value
                    ),
                    "failure conditions see only the flow's arguments: use an `args…` predicate",
                );
                continue;
            }
            let bound = match node {
                Some(n) => n.clone(),
                None if sources.len() == 1 => sources[0].clone(),
                None if sources.is_empty() => {
                    self.v.error(
                        name.span,
                        format!("predicate `{}` reads a task result, but {context} is a starting edge", name.value),
                        "on a starting edge only the flow's arguments can be read: use an `args…` predicate",
                    );
                    continue;
                }
                None => {
                    self.v.error(
                        name.span,
                        format!(
                            "predicate `{}` reads a task result, but {context} has several sources",
                            name.value
                        ),
                        format!(
                            "say which one with `node: {}`",
                            sources
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(" | ")
                        ),
                    );
                    continue;
                }
            };
            let c = self.config();
            if c.is_flow(&bound.value) {
                self.v.error(
                    name.span,
                    format!("predicate `{}` reads the result of `{}`, which is a flow", name.value, bound.value),
                    "flows have no result of their own: read one of its tasks in a condition inside that flow",
                );
            } else if let Some(task) = c.task(&bound.value) {
                if task.storage.is_none() {
                    self.v.error(
                        name.span,
                        format!(
                            "predicate `{}` reads the result of task `{}`, which has no storage",
                            name.value, bound.value
                        ),
                        format!(
                            "results are kept only in storages: set `storage:` on task `{}`",
                            bound.value
                        ),
                    );
                } else if task.storage_readonly {
                    self.v.error(
                        name.span,
                        format!("predicate `{}` reads the result of task `{}`, whose storage is read-only", name.value, bound.value),
                        format!("task `{}` does not store its result: remove `storage_readonly` or read another task", bound.value),
                    );
                }
            }
        }
    }

    fn failures(&mut self) {
        let flow = self.flow;
        for failure in &flow.failures {
            let context = format!("a failure entry of {}", self.what);
            let mut seen = BTreeSet::new();
            for n in &failure.nodes {
                if !self.known(n, &context) {
                    continue;
                }
                if !seen.insert(n.as_str()) {
                    self.v.error(
                        n.span,
                        format!("`{}` appears twice in `nodes` of {context}", n.value),
                        "list each node once",
                    );
                }
                if !self.started.contains(n.as_str()) {
                    self.v.warning(
                        n.span,
                        format!("{context} handles `{}`, which this flow never starts: the entry can never fire", n.value),
                        "remove the entry, or start the node from an edge",
                    );
                }
            }
            match &failure.fallback {
                Fallback::True(span) => {
                    if failure.propagate_failure {
                        self.v.error(
                            *span,
                            format!("{context} has `fallback: true` and `propagate_failure`"),
                            "a failure marked handled is not propagated: remove one of the two",
                        );
                    }
                }
                Fallback::Nodes(nodes) => {
                    for n in nodes {
                        self.known(n, &context);
                    }
                    if failure.nodes.len() == 1
                        && nodes.len() == 1
                        && nodes[0].value == failure.nodes[0].value
                    {
                        self.v.error(
                            nodes[0].span,
                            format!("cyclic fallback: `{}` falls back to itself", nodes[0].value),
                            "to retry a task use `max_retry`; a fallback must be another node",
                        );
                    }
                }
            }
            if let Some(cond) = &failure.condition {
                self.condition(cond, &failure.nodes, true, &context);
            }
        }
    }

    fn nowait(&mut self) {
        let flow = self.flow;
        for n in &flow.nowait {
            if !self.known(n, &format!("`nowait` of {}", self.what)) {
                continue;
            }
            if self.sources.contains(n.as_str()) {
                self.v.error(
                    n.span,
                    format!("`{}` is in `nowait` of {} but is a source of an edge or a failure", n.value, self.what),
                    "nobody waits for a `nowait` node, so nothing can follow it: remove it from `nowait` or from the sources",
                );
            }
            if !self.started.contains(n.as_str()) {
                self.v.error(
                    n.span,
                    format!(
                        "`{}` is in `nowait` of {} but the flow never starts it",
                        n.value, self.what
                    ),
                    "remove it from `nowait`, or start it from an edge",
                );
            }
        }
    }

    fn eager_failures(&mut self) {
        let flow = self.flow;
        for n in &flow.eager_failures {
            let in_flow = self.started.contains(n.as_str()) || self.sources.contains(n.as_str());
            if !in_flow {
                self.v.error(
                    n.span,
                    format!(
                        "`{}` is in `eager_failures` of {} but is not a node of the flow",
                        n.value, self.what
                    ),
                    "list nodes that the flow starts",
                );
            } else if flow.nowait.iter().any(|w| w.value == n.value) {
                self.v.error(
                    n.span,
                    format!("`{}` is in both `eager_failures` and `nowait` of {}", n.value, self.what),
                    "the failure of a `nowait` node is never observed: remove it from one of the two",
                );
            } else if flow
                .failures
                .iter()
                .any(|f| f.nodes.iter().any(|x| x.value == n.value))
            {
                self.v.error(
                    n.span,
                    format!("`{}` is in `eager_failures` of {} but a failure entry handles it", n.value, self.what),
                    "an eager failure stops the flow before any fallback: remove it from `eager_failures` or from `failures`",
                );
            }
        }
    }

    fn node_args_from_first(&mut self) {
        let flow = self.flow;
        if !flow.node_args_from_first {
            return;
        }
        let starting: Vec<&Edge> = flow.edges.iter().filter(|e| e.from.is_empty()).collect();
        let start_nodes: Vec<&Name> = starting.iter().flat_map(|e| e.to.iter()).collect();
        if starting.len() > 1 || start_nodes.len() > 1 {
            self.v.error(
                flow.name.span,
                format!("{} sets `node_args_from_first` but starts with more than one node", self.what),
                "`node_args_from_first` takes the result of the one first task as the flow's arguments: start with a single task",
            );
        }
        for n in start_nodes {
            if self.config().is_flow(&n.value) {
                self.v.error(
                    n.span,
                    format!(
                        "{} sets `node_args_from_first` but starts with the sub-flow `{}`",
                        self.what, n.value
                    ),
                    "the first node must be a task with a storage",
                );
            } else if let Some(task) = self.config().task(&n.value) {
                if task.storage.is_none() {
                    self.v.error(
                        n.span,
                        format!("{} sets `node_args_from_first`, but its first task `{}` has no storage", self.what, n.value),
                        format!("the first task's stored result becomes the flow's arguments: set `storage:` on `{}`", n.value),
                    );
                }
            }
        }
    }

    fn propagation(&mut self) {
        let flow = self.flow;
        for key in PROPAGATE_FLAGS {
            for n in flow.propagate(key).names() {
                if !self.config().is_flow(&n.value) {
                    let hint = did_you_mean(
                        &n.value,
                        self.config().flow_names.iter().map(|f| f.as_str()),
                    );
                    self.v.error(
                        n.span,
                        format!(
                            "`{key}` of {} names `{}`, which is not a flow",
                            self.what, n.value
                        ),
                        if hint.is_empty() {
                            "list sub-flows of this flow".to_string()
                        } else {
                            hint
                        },
                    );
                    continue;
                }
                let (must_be, ok) = match *key {
                    "propagate_finished"
                    | "propagate_compound_finished"
                    | "propagate_failures"
                    | "propagate_compound_failures" => (
                        "a source of an edge or a failure",
                        self.sources.contains(n.as_str()),
                    ),
                    "propagate_parent" => (
                        "started by an edge",
                        flow.edges
                            .iter()
                            .any(|e| e.to.iter().any(|t| t.value == n.value)),
                    ),
                    _ => ("a sub-flow of it", self.is_subflow(&n.value)),
                };
                if !ok {
                    let message = format!(
                        "`{key}` of {} names `{}`, which is not {must_be}",
                        self.what, n.value
                    );
                    // Upstream does not check `propagate_node_args` and `propagate_parent_failures`:
                    // such an entry has no effect, which is suspicious but not broken.
                    if matches!(*key, "propagate_node_args" | "propagate_parent_failures") {
                        self.v
                            .warning(n.span, message, "the entry has no effect: remove it");
                    } else {
                        self.v.error(
                            n.span,
                            message,
                            "remove the entry, or use the flow as the option requires",
                        );
                    }
                }
            }
        }
        for key in ["propagate_failures", "propagate_compound_failures"] {
            for n in flow.propagate(key).names() {
                let has_fallback = flow
                    .failures
                    .iter()
                    .any(|f| f.nodes.iter().any(|x| x.value == n.value));
                if self.sources.contains(n.as_str()) && !has_fallback {
                    self.v.error(
                        n.span,
                        format!("`{key}` of {} names `{}`, which has no failure entry", self.what, n.value),
                        "failures are propagated to fallbacks: add a `failures` entry for the sub-flow",
                    );
                }
            }
        }
        self.disjoint("propagate_finished", "propagate_compound_finished");
        self.disjoint("propagate_failures", "propagate_compound_failures");
        // A finished sub-flow's results reach its successors only through `parent`.
        for key in ["propagate_finished", "propagate_compound_finished"] {
            let sel = flow.propagate(key);
            if sel.is_none() {
                continue;
            }
            for edge in &flow.edges {
                let from_selected = edge
                    .from
                    .iter()
                    .any(|n| self.is_subflow(&n.value) && sel.selects(&n.value));
                if !from_selected {
                    continue;
                }
                for to in &edge.to {
                    if self.config().is_flow(&to.value) && !flow.propagate_parent.selects(&to.value)
                    {
                        self.v.warning(
                            to.span,
                            format!(
                                "sub-flow `{}` follows a sub-flow whose results `{key}` hands on, but `propagate_parent` of {} does not include it",
                                to.value, self.what
                            ),
                            format!("add `{}` to `propagate_parent`, or it will not see the results", to.value),
                        );
                    }
                }
            }
        }
    }

    fn disjoint(&mut self, a: &str, b: &str) {
        let flow = self.flow;
        let (sa, sb) = (flow.propagate(a), flow.propagate(b));
        let subflows: Vec<&str> = self
            .started
            .iter()
            .copied()
            .chain(self.sources.iter().copied())
            .filter(|n| self.config().is_flow(n))
            .collect();
        let overlap: BTreeSet<&str> = match (sa, sb) {
            (FlowSelection::All(_), FlowSelection::All(_)) => ["(all sub-flows)"].into(),
            (FlowSelection::All(_), FlowSelection::Some(names))
            | (FlowSelection::Some(names), FlowSelection::All(_)) => {
                names.iter().map(|n| n.as_str()).collect()
            }
            (FlowSelection::Some(x), FlowSelection::Some(y)) => x
                .iter()
                .filter(|n| y.iter().any(|m| m.value == n.value))
                .map(|n| n.as_str())
                .collect(),
            _ => BTreeSet::new(),
        };
        let _ = subflows;
        if !overlap.is_empty() {
            self.v.error(
                flow.name.span,
                format!(
                    "`{a}` and `{b}` of {} both select {}",
                    self.what,
                    overlap
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "a sub-flow's results are handed on one way: choose `{a}` or `{b}` for each"
                ),
            );
        }
    }

    fn sampling(&mut self) {
        let Some(sampling) = &self.flow.sampling else {
            return;
        };
        if sampling.import.value != DEFAULT_STRATEGY_IMPORT {
            self.v
                .module_path(&sampling.import, &format!("`sampling` of {}", self.what));
            return;
        }
        let Some((_, params)) = BUILTIN_STRATEGIES
            .iter()
            .find(|(n, _)| *n == sampling.name.value)
        else {
            let hint = did_you_mean(
                &sampling.name.value,
                BUILTIN_STRATEGIES.iter().map(|(n, _)| *n),
            );
            self.v.error(
                sampling.name.span,
                format!("unknown sampling strategy `{}`", sampling.name.value),
                if hint.is_empty() {
                    format!(
                        "the built-in strategies are {}",
                        BUILTIN_STRATEGIES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    hint
                },
            );
            return;
        };
        let given: BTreeSet<&str> = sampling.args.iter().map(|(k, _)| k.as_str()).collect();
        let expected: BTreeSet<&str> = params.iter().copied().collect();
        if given != expected {
            self.v.error(
                sampling.span,
                format!(
                    "sampling strategy `{}` takes the arguments {}, given {}",
                    sampling.name.value,
                    expected
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if given.is_empty() {
                        "none".to_string()
                    } else {
                        given
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
                "give exactly the strategy's arguments under `args:`",
            );
        }
    }

    /// Nodes that can never start: a task used as a source that no edge starts is an error (as
    /// upstream); an edge whose sources can never all finish is a warning.
    fn reachability(&mut self) {
        let flow = self.flow;
        let mut reported = BTreeSet::new();
        for n in flow.sources() {
            if self.started.contains(n.as_str()) || !reported.insert(n.as_str()) {
                continue;
            }
            let c = self.config();
            if c.is_task(&n.value) {
                self.v.error(
                    n.span,
                    format!("task `{}` is a source in {} but the flow never starts it", n.value, self.what),
                    format!("start `{}` from an edge of this flow, or remove the edges that wait for it", n.value),
                );
            } else if c.is_flow(&n.value) {
                self.v.warning(
                    n.span,
                    format!("sub-flow `{}` is a source in {} but the flow never starts it", n.value, self.what),
                    format!("start `{}` from an edge of this flow, or remove the edges that wait for it", n.value),
                );
            }
        }
        // Fixed point over edges: a node can start when its edge's sources can all finish.
        let mut can_run: BTreeSet<&str> = BTreeSet::new();
        let mut fired = vec![false; flow.edges.len()];
        loop {
            let mut changed = false;
            for (i, edge) in flow.edges.iter().enumerate() {
                if !fired[i] && edge.from.iter().all(|n| can_run.contains(n.as_str())) {
                    fired[i] = true;
                    changed = true;
                    can_run.extend(edge.to.iter().map(|n| n.as_str()));
                }
            }
            for failure in &flow.failures {
                if failure.nodes.iter().all(|n| can_run.contains(n.as_str())) {
                    for n in failure.fallback.nodes() {
                        changed |= can_run.insert(n.as_str());
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (i, edge) in flow.edges.iter().enumerate() {
            let all_started = edge.from.iter().all(|n| self.started.contains(n.as_str()));
            if !fired[i] && all_started {
                let waiting: Vec<&str> = edge
                    .from
                    .iter()
                    .filter(|n| !can_run.contains(n.as_str()))
                    .map(|n| n.as_str())
                    .collect();
                self.v.warning(
                    edge.span,
                    format!(
                        "edge #{} of {} can never fire: {} never start{} (each waits on the other)",
                        edge.index,
                        self.what,
                        waiting
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if waiting.len() == 1 { "s" } else { "" }
                    ),
                    "make sure a chain of edges from a starting edge leads to every source",
                );
            }
        }
    }

    /// A join on a cycle that leads back to two or more of its sources multiplies: each round
    /// adds instances of every source, and the join fires once per new combination of them
    /// (upstream's diamond pattern with its loop closed), so the flow grows without bound
    /// unless a condition ends the loop.
    fn multiplying_joins(&mut self) {
        let flow = self.flow;
        for edge in flow.edges.iter().filter(|e| e.from.len() >= 2) {
            // Nodes reachable forward from the join's targets.
            let mut reached: BTreeSet<&str> = edge.to.iter().map(|n| n.as_str()).collect();
            loop {
                let mut grew = false;
                for e in &flow.edges {
                    if e.from.iter().any(|n| reached.contains(n.as_str())) {
                        for t in &e.to {
                            grew |= reached.insert(t.as_str());
                        }
                    }
                }
                if !grew {
                    break;
                }
            }
            let mut again: Vec<&str> = edge
                .from
                .iter()
                .map(|n| n.as_str())
                .filter(|n| reached.contains(n))
                .collect();
            again.dedup();
            if again.len() < 2 {
                continue;
            }
            let unconditional = flow
                .edges
                .iter()
                .all(|e| e.condition.is_none() || e.from.is_empty());
            self.v.warning(
                edge.span,
                format!(
                    "edge #{} of {} joins {} and leads back to them: each round the join fires \
                     once per new combination of their instances, so the flow can grow without \
                     bound{}",
                    edge.index,
                    self.what,
                    again
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" and "),
                    if unconditional {
                        " (no condition on its edges ends the loop)"
                    } else {
                        ""
                    }
                ),
                "end the loop with a condition, or start the loop's next round from a sub-flow \
                 so that each round joins only its own nodes",
            );
        }
    }
}

fn describe_args(args: &[&str]) -> String {
    if args.is_empty() {
        "it takes no arguments".to_string()
    } else {
        format!(
            "it takes {}",
            args.iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
