//! Reading the files of a configuration into the model, checking the shape of every key.
//!
//! Loading never stops at the first problem: a wrong key is reported and skipped, and the rest
//! of the file is still read, so one run shows every diagnostic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::model::*;
use crate::config::yaml::{self, Node, Value};
use crate::diagnostics::{did_you_mean, Diagnostic, Diagnostics, FileId, SourceMap, Span};

/// Loads a configuration from a nodes file and flow files or directories.
///
/// Every file read is added to `sources`; every problem goes to `diags`. `None` when the files
/// could not be read or parsed at all.
pub fn load_files(
    nodes: &Path,
    flows: &[PathBuf],
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Option<Config> {
    let nodes_doc = read_yaml(nodes, sources, diags);
    let mut flow_docs = Vec::new();
    let mut seen = BTreeSet::new();
    for path in flows {
        let from_dir = path.is_dir();
        for file in expand_flow_path(path, diags) {
            let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(key.clone()) {
                continue;
            }
            let same_as_nodes = std::fs::canonicalize(nodes).ok().as_ref() == Some(&key);
            if same_as_nodes {
                // A nodes file found while scanning a flows directory is a flow file only if
                // it holds flow definitions (`--flows flows/` beside `flows/nodes.yml`).
                let defines_flows = nodes_doc
                    .as_ref()
                    .and_then(|(_, doc)| doc.as_ref())
                    .is_some_and(|doc| doc.get("flow-definitions").is_some());
                if from_dir && !defines_flows {
                    continue;
                }
                flow_docs.push(nodes_doc.clone());
            } else {
                flow_docs.push(read_yaml(&file, sources, diags));
            }
        }
    }
    let nodes_doc = nodes_doc?;
    let flow_docs: Vec<(FileId, Option<Node>)> = flow_docs.into_iter().collect::<Option<_>>()?;
    Some(load_documents(nodes_doc, flow_docs, diags))
}

/// Loads a configuration held in strings (for tests and tools that generate YAML).
pub fn load_strs(
    nodes: (&str, &str),
    flows: &[(&str, &str)],
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Option<Config> {
    let mut parse = |(path, text): (&str, &str)| -> Option<(FileId, Option<Node>)> {
        let file = sources.add(PathBuf::from(path), text.to_string());
        let node = yaml::parse(file, text, diags).ok()?;
        Some((file, node))
    };
    let nodes_doc = parse(nodes);
    let mut flow_docs = Vec::new();
    for flow in flows {
        if flow.0 == nodes.0 {
            flow_docs.push(nodes_doc.clone());
        } else {
            flow_docs.push(parse(*flow));
        }
    }
    let nodes_doc = nodes_doc?;
    let flow_docs = flow_docs.into_iter().collect::<Option<Vec<_>>>()?;
    Some(load_documents(nodes_doc, flow_docs, diags))
}

/// The files a `--flows` path stands for: the file itself, or every non-hidden `*.yml` /
/// `*.yaml` below a directory, in path order.
pub fn expand_flow_path(path: &Path, diags: &mut Diagnostics) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                diags.push(
                    Diagnostic::error(
                        None,
                        format!("cannot read directory {}: {err}", dir.display()),
                    )
                    .with_help("check the path and its permissions"),
                );
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yml") | Some("yaml")
            ) {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        diags.push(
            Diagnostic::error(
                None,
                format!(
                    "directory {} holds no `*.yml` or `*.yaml` file",
                    path.display()
                ),
            )
            .with_help("point `--flows` at the flow files, or at the directory that holds them"),
        );
    }
    found
}

/// Reads and parses one file. `Some((file, None))` is an empty file.
fn read_yaml(
    path: &Path,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Option<(FileId, Option<Node>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            let what = if err.kind() == std::io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                format!("cannot be read: {err}")
            };
            diags.push(
                Diagnostic::error(None, format!("file {} {what}", path.display()))
                    .with_help("check the path given to `--nodes` / `--flows`"),
            );
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.into_bytes();
            let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let line = text.matches('\n').count() + 1;
            let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            let file = sources.add(path.to_path_buf(), lossy);
            diags.push(
                Diagnostic::error(
                    Span {
                        file,
                        line: line as u32,
                        column: column as u32,
                        end_line: line as u32,
                        end_column: column as u32 + 1,
                    },
                    format!(
                        "file is not valid UTF-8 (byte {valid} is not part of a UTF-8 character)"
                    ),
                )
                .with_help("save the file as UTF-8"),
            );
            return None;
        }
    };
    let text = text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text);
    let file = sources.add(path.to_path_buf(), text);
    let text = sources.get(file).text.clone();
    let node = yaml::parse(file, &text, diags).ok()?;
    Some((file, node))
}

fn load_documents(
    (nodes_file, nodes_doc): (FileId, Option<Node>),
    flow_docs: Vec<(FileId, Option<Node>)>,
    diags: &mut Diagnostics,
) -> Config {
    let mut config = Config {
        nodes_file,
        flow_files: flow_docs.iter().map(|(f, _)| *f).collect(),
        tasks: Vec::new(),
        flow_names: Vec::new(),
        storages: Vec::new(),
        global: Global::default(),
        flows: Vec::new(),
    };
    let mut l = Loader { diags };
    match &nodes_doc {
        None => l.diags.error(
            Span::file_start(nodes_file),
            "the nodes file is empty",
            "a nodes file is a mapping with `tasks`, `flows` and optionally `storages` and `global`",
        ),
        Some(doc) => l.nodes_file(doc, &mut config),
    }
    if flow_docs.is_empty() {
        l.diags
            .push(Diagnostic::error(None, "no flow file given").with_help(
                "pass the files with `flow-definitions` through `--flows` (a file or a directory)",
            ));
    }
    for (file, doc) in &flow_docs {
        match doc {
            None => l.diags.error(
                Span::file_start(*file),
                "the flow file is empty",
                "a flow file is a mapping with a `flow-definitions` list",
            ),
            Some(doc) => l.flow_file(doc, *file == nodes_file, &mut config),
        }
    }
    config
}

const NODES_KEYS: &[&str] = &["tasks", "flows", "storages", "global", "flow-definitions"];
const TASK_KEYS: &[&str] = &[
    "name",
    "import",
    "classname",
    "storage",
    "storage_readonly",
    "storage_task_name",
    "output_schema",
    "max_retry",
    "retry_countdown",
    "queue",
    "throttling",
    "selective_run_function",
];
const STORAGE_KEYS: &[&str] = &["name", "import", "classname", "configuration", "cache"];
const CACHE_KEYS: &[&str] = &["name", "import", "configuration"];
const GLOBAL_KEYS: &[&str] = &[
    "predicates_module",
    "default_task_queue",
    "default_dispatcher_queue",
    "migration_dir",
    "trace",
];
const TRACE_KEYS: &[&str] = &["logging", "json", "function", "storage", "sentry"];
const FLOW_KEYS: &[&str] = &[
    "name",
    "edges",
    "failures",
    "nowait",
    "eager_failures",
    "node_args_from_first",
    "propagate_node_args",
    "propagate_parent",
    "propagate_parent_failures",
    "propagate_finished",
    "propagate_compound_finished",
    "propagate_failures",
    "propagate_compound_failures",
    "max_retry",
    "retry_countdown",
    "queue",
    "sampling",
    "throttling",
    "cache",
];
const EDGE_KEYS: &[&str] = &["from", "to", "condition", "foreach", "selective"];
const FOREACH_KEYS: &[&str] = &["function", "import", "propagate_result"];
const SELECTIVE_KEYS: &[&str] = &["tasks", "run_subsequent", "follow_subflows"];
const FAILURE_KEYS: &[&str] = &["nodes", "fallback", "condition", "propagate_failure"];
const SAMPLING_KEYS: &[&str] = &["name", "import", "args"];
const THROTTLING_KEYS: &[(&str, u64)] = &[
    ("weeks", 7 * 24 * 3600 * 1_000_000),
    ("days", 24 * 3600 * 1_000_000),
    ("hours", 3600 * 1_000_000),
    ("minutes", 60 * 1_000_000),
    ("seconds", 1_000_000),
    ("milliseconds", 1_000),
    ("microseconds", 1),
];
const FUNCTION_KEYS: &[&str] = &["name", "import"];
const LEAF_KEYS: &[&str] = &["name", "node", "args"];

/// A mapping being read: remembers which keys were used so the rest can be reported.
struct MapReader<'a> {
    node: &'a Node,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
}

impl<'a> MapReader<'a> {
    fn get(&mut self, key: &str) -> Option<&'a Node> {
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// A key that is present with a non-null value.
    fn get_some(&mut self, key: &str) -> Option<&'a Node> {
        self.get(key).filter(|v| !v.is_null())
    }

    fn unused(&self) -> impl Iterator<Item = &'a Node> + '_ {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|((k, _), _)| k)
    }
}

struct Loader<'d> {
    diags: &'d mut Diagnostics,
}

impl Loader<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>, help: impl Into<String>) {
        self.diags.error(span, message, help);
    }

    fn map<'a>(&mut self, node: &'a Node, what: &str, help: &str) -> Option<MapReader<'a>> {
        match &node.value {
            Value::Map(entries) => Some(MapReader {
                node,
                entries,
                used: vec![false; entries.len()],
            }),
            _ => {
                self.error(
                    node.span,
                    format!("{what} must be a mapping, found {}", node.kind()),
                    help,
                );
                None
            }
        }
    }

    /// Reports the keys of `m` that were not read, as errors (or warnings) with a suggestion.
    fn finish(&mut self, m: MapReader<'_>, known: &[&str], what: &str, warn_only: bool) {
        let unknown: Vec<&Node> = m.unused().collect();
        for key in unknown {
            let text = key.key_text();
            let mut help = did_you_mean(&text, known.iter().copied());
            if help.is_empty() {
                help = format!("known keys: {}", known.join(", "));
            }
            let message = format!("unknown key `{text}` in {what}");
            if warn_only {
                self.diags.warning(key.span, message, help);
            } else {
                self.error(key.span, message, help);
            }
        }
    }

    fn list<'a>(&mut self, node: &'a Node, what: &str, help: &str) -> Option<&'a [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.error(
                    node.span,
                    format!("{what} must be a list, found {}", node.kind()),
                    help,
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Name> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
            _ => {
                self.error(
                    node.span,
                    format!("{what} must be a string, found {}", node.kind()),
                    "write the value as text (quote it if it looks like a number or a boolean)",
                );
                None
            }
        }
    }

    fn non_empty_string(&mut self, node: &Node, what: &str) -> Option<Name> {
        let s = self.string(node, what)?;
        if s.value.is_empty() {
            self.error(s.span, format!("{what} must not be empty"), "");
            return None;
        }
        Some(s)
    }

    /// A required string key.
    fn required(&mut self, m: &mut MapReader<'_>, key: &str, what: &str) -> Option<Name> {
        match m.get(key) {
            None => {
                self.error(
                    m.node.span,
                    format!("{what} has no `{key}`"),
                    format!("add `{key}: ...` to it"),
                );
                None
            }
            Some(node) => self.non_empty_string(node, &format!("`{key}` of {what}")),
        }
    }

    fn optional_string(&mut self, m: &mut MapReader<'_>, key: &str, what: &str) -> Option<Name> {
        let node = m.get_some(key)?;
        self.non_empty_string(node, &format!("`{key}` of {what}"))
    }

    fn boolean(&mut self, m: &mut MapReader<'_>, key: &str, what: &str) -> bool {
        match m.get(key) {
            None => false,
            Some(node) => match node.value {
                Value::Bool(b) => b,
                Value::Null => false,
                _ => {
                    self.error(
                        node.span,
                        format!(
                            "`{key}` of {what} must be true or false, found {}",
                            node.kind()
                        ),
                        "",
                    );
                    false
                }
            },
        }
    }

    fn count(&mut self, m: &mut MapReader<'_>, key: &str, what: &str) -> Option<Spanned<u64>> {
        let node = m.get_some(key)?;
        match node.value {
            Value::Int(i) if i >= 0 => Some(Spanned::new(i as u64, node.span)),
            _ => {
                self.error(
                    node.span,
                    format!(
                        "`{key}` of {what} must be a non-negative integer, found {}",
                        describe(node)
                    ),
                    format!("write e.g. `{key}: 3`"),
                );
                None
            }
        }
    }

    fn template(&mut self, node: &Node, what: &str) -> Option<Spanned<Template>> {
        let s = self.non_empty_string(node, what)?;
        match Template::parse(&s.value) {
            Ok(t) => Some(Spanned::new(t, s.span)),
            Err(msg) => {
                self.error(s.span, format!("bad placeholder in {what}: {msg}"), "");
                None
            }
        }
    }

    fn optional_template(
        &mut self,
        m: &mut MapReader<'_>,
        key: &str,
        what: &str,
    ) -> Option<Spanned<Template>> {
        let node = m.get_some(key)?;
        self.template(node, &format!("`{key}` of {what}"))
    }

    /// A node name or a list of names. `null` and `[]` give an empty list when `allow_empty`.
    fn names(&mut self, node: &Node, what: &str, allow_empty: bool) -> Vec<Name> {
        let names: Vec<Name> = match &node.value {
            Value::Str(s) => vec![Spanned::new(s.clone(), node.span)],
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| self.string(item, &format!("an entry of {what}")))
                .collect(),
            _ => {
                self.error(
                    node.span,
                    format!(
                        "{what} must be a name or a list of names, found {}",
                        node.kind()
                    ),
                    "write `Name` or `[Name1, Name2]`",
                );
                return Vec::new();
            }
        };
        if names.is_empty() && !allow_empty {
            self.error(
                node.span,
                format!("{what} must name at least one node"),
                "write `Name` or `[Name1, Name2]`",
            );
        }
        names
    }

    fn flow_selection(&mut self, node: &Node, what: &str) -> FlowSelection {
        match &node.value {
            Value::Null | Value::Bool(false) => FlowSelection::None,
            Value::Bool(true) => FlowSelection::All(node.span),
            Value::Str(_) | Value::Seq(_) => {
                let names = self.names(node, what, true);
                if names.is_empty() {
                    FlowSelection::None
                } else {
                    FlowSelection::Some(names)
                }
            }
            _ => {
                self.error(
                    node.span,
                    format!(
                        "{what} must be true, false, a flow name or a list of flow names, found {}",
                        node.kind()
                    ),
                    "",
                );
                FlowSelection::None
            }
        }
    }

    fn check_node_name(&mut self, name: &Name, what: &str) {
        let valid = name
            .value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.error(
                name.span,
                format!("invalid {what} name `{}`", name.value),
                "task and flow names start with a letter or `_` and hold only letters, digits and `_`",
            );
        }
    }

    // ---- nodes file ----------------------------------------------------------------------

    fn nodes_file(&mut self, doc: &Node, config: &mut Config) {
        let Some(mut m) = self.map(
            doc,
            "the nodes file",
            "a nodes file is a mapping with `tasks`, `flows` and optionally `storages` and `global`",
        ) else {
            return;
        };
        // Order as upstream: storages, global, tasks, flows.
        if let Some(node) = m.get_some("storages") {
            if let Some(items) = self.list(
                node,
                "`storages`",
                "write `storages:` followed by `- name: ...` entries",
            ) {
                config.storages = items.iter().filter_map(|s| self.storage(s)).collect();
            }
        } else {
            m.get("storages");
        }
        if let Some(node) = m.get("global") {
            config.global = self.global(node);
        }
        match m.get_some("tasks") {
            None => self.error(
                doc.span,
                "the nodes file has no `tasks` list",
                "add `tasks:` with at least one `- name: ... import: ...` entry",
            ),
            Some(node) => {
                if let Some(items) = self.list(
                    node,
                    "`tasks`",
                    "write `tasks:` followed by `- name: ...` entries",
                ) {
                    config.tasks = items.iter().filter_map(|t| self.task(t)).collect();
                }
            }
        }
        match m.get_some("flows") {
            None => self.error(
                doc.span,
                "the nodes file has no `flows` list",
                "add `flows:` listing the name of every flow",
            ),
            Some(node) => {
                if let Some(items) = self.list(node, "`flows`", "write `flows: [flow1, flow2]`") {
                    for item in items {
                        if let Some(name) = self.non_empty_string(item, "a flow name") {
                            self.check_node_name(&name, "flow");
                            config.flow_names.push(name);
                        }
                    }
                }
            }
        }
        m.get("flow-definitions");
        self.finish(m, NODES_KEYS, "the nodes file", true);
    }

    fn task(&mut self, node: &Node) -> Option<Task> {
        let mut m = self.map(
            node,
            "a task",
            "write a task as `- name: T\n  import: module`",
        )?;
        let name = self.required(&mut m, "name", "a task");
        let what = name
            .as_ref()
            .map_or("a task".to_string(), |n| format!("task `{}`", n.value));
        if let Some(name) = &name {
            self.check_node_name(name, "task");
        }
        let import = self.required(&mut m, "import", &what);
        let classname = self.optional_string(&mut m, "classname", &what);
        let storage = self.optional_string(&mut m, "storage", &what);
        let storage_readonly = self.boolean(&mut m, "storage_readonly", &what);
        let storage_task_name = self.optional_string(&mut m, "storage_task_name", &what);
        let output_schema = self.optional_string(&mut m, "output_schema", &what);
        let max_retry = self.count(&mut m, "max_retry", &what);
        let retry_countdown = self.count(&mut m, "retry_countdown", &what);
        let queue = self.optional_template(&mut m, "queue", &what);
        let throttling = m
            .get_some("throttling")
            .and_then(|t| self.throttling(t, &what));
        let selective_run_function = m
            .get_some("selective_run_function")
            .and_then(|f| self.function_ref(f, &format!("`selective_run_function` of {what}")));
        self.finish(m, TASK_KEYS, &what, false);
        Some(Task {
            span: node.span,
            name: name?,
            import: import?,
            classname,
            storage,
            storage_readonly,
            storage_task_name,
            output_schema,
            max_retry,
            retry_countdown,
            queue,
            throttling,
            selective_run_function,
        })
    }

    fn function_ref(&mut self, node: &Node, what: &str) -> Option<FunctionRef> {
        let mut m = self.map(
            node,
            what,
            "write `{name: function_name, import: module.path}`",
        )?;
        let name = self.required(&mut m, "name", what);
        let import = self.required(&mut m, "import", what);
        self.finish(m, FUNCTION_KEYS, what, false);
        Some(FunctionRef {
            span: node.span,
            name: name?,
            import: import?,
        })
    }

    fn storage(&mut self, node: &Node) -> Option<Storage> {
        let mut m = self.map(
            node,
            "a storage",
            "write a storage as `- name: S\n  import: module\n  configuration: ...`",
        )?;
        let name = self.required(&mut m, "name", "a storage");
        let what = name.as_ref().map_or("a storage".to_string(), |n| {
            format!("storage `{}`", n.value)
        });
        let import = self.required(&mut m, "import", &what);
        let classname = self.optional_string(&mut m, "classname", &what);
        let configuration = match m.get("configuration") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `configuration`"),
                    "add `configuration:` with the adapter's options",
                );
                None
            }
            Some(c) if !truthy(c) => {
                self.error(
                    c.span,
                    format!("`configuration` of {what} is empty"),
                    "give the adapter's options, e.g. `configuration: {host: localhost}`",
                );
                None
            }
            Some(c) => Some(c.clone()),
        };
        let cache = m
            .get("cache")
            .and_then(|c| self.cache(c, &format!("`cache` of {what}")));
        self.finish(m, STORAGE_KEYS, &what, false);
        Some(Storage {
            span: node.span,
            name: name?,
            import: import?,
            classname,
            configuration: configuration?,
            cache,
        })
    }

    fn cache(&mut self, node: &Node, what: &str) -> Option<Cache> {
        let mut m = self.map(
            node,
            what,
            "write `cache: {name: LRU, configuration: {max_cache_size: 10}}`",
        )?;
        let name = self
            .optional_string(&mut m, "name", what)
            .unwrap_or_else(|| Spanned::new(DEFAULT_CACHE_NAME.into(), node.span));
        let import = self
            .optional_string(&mut m, "import", what)
            .unwrap_or_else(|| Spanned::new(DEFAULT_CACHE_IMPORT.into(), node.span));
        let mut configuration = Vec::new();
        if let Some(c) = m.get_some("configuration") {
            if let Some(cm) = self.map(
                c,
                &format!("`configuration` of {what}"),
                "write `configuration: {max_cache_size: 10}`",
            ) {
                for (k, v) in cm.entries {
                    if let Some(key) = self.string(k, "a cache option") {
                        configuration.push((key, v.clone()));
                    }
                }
            }
        }
        self.finish(m, CACHE_KEYS, what, false);
        if import.value == DEFAULT_CACHE_IMPORT {
            if !BUILTIN_CACHES.contains(&name.value.as_str()) {
                let hint = did_you_mean(&name.value, BUILTIN_CACHES.iter().copied());
                self.error(
                    name.span,
                    format!("unknown cache `{}` in {what}", name.value),
                    if hint.is_empty() {
                        format!("the built-in caches are {}", BUILTIN_CACHES.join(", "))
                    } else {
                        hint
                    },
                );
            }
            for (key, value) in &configuration {
                if key.value != "max_cache_size" {
                    let hint = did_you_mean(&key.value, ["max_cache_size"]);
                    self.error(
                        key.span,
                        format!(
                            "unknown option `{}` of the built-in cache `{}`",
                            key.value, name.value
                        ),
                        if hint.is_empty() {
                            "the built-in caches take only `max_cache_size`".to_string()
                        } else {
                            hint
                        },
                    );
                } else if !matches!(value.value, Value::Int(i) if i >= 0) {
                    self.error(
                        value.span,
                        format!(
                            "`max_cache_size` must be a non-negative integer, found {}",
                            describe(value)
                        ),
                        "",
                    );
                }
            }
        }
        Some(Cache {
            span: node.span,
            name,
            import,
            configuration,
        })
    }

    fn global(&mut self, node: &Node) -> Global {
        let mut global = Global {
            span: Some(node.span),
            ..Global::default()
        };
        if node.is_null() {
            return global;
        }
        let Some(mut m) = self.map(node, "`global`", "write `global:` followed by its options")
        else {
            return global;
        };
        global.predicates_module = self.optional_string(&mut m, "predicates_module", "`global`");
        global.default_task_queue =
            self.optional_template(&mut m, "default_task_queue", "`global`");
        global.default_dispatcher_queue =
            self.optional_template(&mut m, "default_dispatcher_queue", "`global`");
        global.migration_dir = self.optional_template(&mut m, "migration_dir", "`global`");
        if let Some(trace) = m.get("trace") {
            global.trace = self.trace(trace);
        }
        self.finish(m, GLOBAL_KEYS, "`global`", false);
        global
    }

    fn trace(&mut self, node: &Node) -> Vec<TraceSink> {
        match &node.value {
            Value::Bool(false) => Vec::new(),
            Value::Map(_) => self.trace_entry(node),
            Value::Seq(items) => items.iter().flat_map(|i| self.trace_entry(i)).collect(),
            _ => {
                self.error(
                    node.span,
                    format!("`trace` must be a mapping, a list of mappings or false, found {}", describe(node)),
                    "write e.g. `trace: {json: true}` or `trace: [{logging: true}, {sentry: {dsn: ...}}]`",
                );
                Vec::new()
            }
        }
    }

    fn trace_entry(&mut self, node: &Node) -> Vec<TraceSink> {
        let Some(mut m) = self.map(node, "a `trace` entry", "write e.g. `{json: true}`") else {
            return Vec::new();
        };
        let mut sinks = Vec::new();
        let sink = |kind| TraceSink {
            span: node.span,
            kind,
        };
        if let Some(v) = m.get("logging") {
            if v.value == Value::Bool(true) {
                sinks.push(sink(TraceSinkKind::Logging));
            }
        }
        if let Some(v) = m.get("json") {
            match v.value {
                Value::Bool(true) => sinks.push(sink(TraceSinkKind::Json)),
                Value::Bool(false) => {}
                _ => self.error(
                    v.span,
                    format!(
                        "`json` of `trace` must be true or false, found {}",
                        v.kind()
                    ),
                    "",
                ),
            }
        }
        if let Some(v) = m.get("function") {
            if let Some(f) = self.function_ref(v, "the `function` trace sink") {
                sinks.push(sink(TraceSinkKind::Function(f)));
            }
        }
        if let Some(v) = m.get("storage") {
            if let Some(mut sm) = self.map(
                v,
                "the `storage` trace sink",
                "write `storage: {name: StorageName, method: trace}`",
            ) {
                let name = self.required(&mut sm, "name", "the `storage` trace sink");
                let method = self
                    .optional_string(&mut sm, "method", "the `storage` trace sink")
                    .map_or_else(|| "trace".to_string(), |m| m.value);
                self.finish(sm, &["name", "method"], "the `storage` trace sink", false);
                if let Some(name) = name {
                    sinks.push(sink(TraceSinkKind::Storage { name, method }));
                }
            }
        }
        if let Some(v) = m.get("sentry") {
            if let Some(mut sm) =
                self.map(v, "the `sentry` trace sink", "write `sentry: {dsn: ...}`")
            {
                match sm.get("dsn") {
                    None => self.error(
                        v.span,
                        "the `sentry` trace sink has no `dsn`",
                        "add `dsn: https://...`",
                    ),
                    Some(d) => {
                        if let Some(dsn) = self.template(d, "`dsn` of the `sentry` trace sink") {
                            sinks.push(sink(TraceSinkKind::Sentry { dsn }));
                        }
                    }
                }
                self.finish(sm, &["dsn"], "the `sentry` trace sink", false);
            }
        }
        // Upstream ignores other keys of a trace entry; a typo there silently loses a sink.
        self.finish(m, TRACE_KEYS, "a `trace` entry", true);
        sinks
    }

    fn throttling(&mut self, node: &Node, what: &str) -> Option<Throttling> {
        let what = format!("`throttling` of {what}");
        let m = self.map(node, &what, "write e.g. `throttling: {seconds: 10}`")?;
        let mut total: f64 = 0.0;
        let mut used = vec![false; m.entries.len()];
        for (i, (k, v)) in m.entries.iter().enumerate() {
            let key = k.key_text();
            if let Some((_, unit)) = THROTTLING_KEYS.iter().find(|(n, _)| *n == key) {
                used[i] = true;
                let amount = match v.value {
                    Value::Int(n) => n as f64,
                    Value::Float(f) if f.is_finite() => f,
                    _ => {
                        self.error(
                            v.span,
                            format!("`{key}` of {what} must be a number, found {}", v.kind()),
                            "",
                        );
                        continue;
                    }
                };
                total += amount * *unit as f64;
            }
        }
        let m = MapReader { used, ..m };
        let known: Vec<&str> = THROTTLING_KEYS.iter().map(|(k, _)| *k).collect();
        self.finish(m, &known, &what, false);
        if total < 0.0 {
            self.error(
                node.span,
                format!("{what} adds up to a negative interval"),
                "",
            );
            return None;
        }
        if total == 0.0 {
            return None;
        }
        Some(Throttling {
            span: node.span,
            micros: total.round() as u64,
        })
    }

    // ---- flow files ----------------------------------------------------------------------

    fn flow_file(&mut self, doc: &Node, is_nodes_file: bool, config: &mut Config) {
        let Some(mut m) = self.map(
            doc,
            "a flow file",
            "a flow file is a mapping with a `flow-definitions` list",
        ) else {
            return;
        };
        match m.get_some("flow-definitions") {
            None => self.error(
                doc.span,
                "this flow file has no `flow-definitions`",
                "add `flow-definitions:` with the flows' definitions, or do not pass this file through `--flows`",
            ),
            Some(defs) => {
                if let Some(items) = self.list(defs, "`flow-definitions`", "write `flow-definitions:` followed by `- name: ...` entries") {
                    for item in items {
                        if let Some(flow) = self.flow(item) {
                            config.flows.push(flow);
                        }
                    }
                }
            }
        }
        if !is_nodes_file {
            for key in ["tasks", "flows", "storages", "global"] {
                m.get(key);
            }
            self.finish(m, NODES_KEYS, "a flow file", true);
        }
    }

    fn flow(&mut self, node: &Node) -> Option<Flow> {
        let mut m = self.map(
            node,
            "a flow definition",
            "write a flow as `- name: flow1\n  edges: [...]`",
        )?;
        let name = self.required(&mut m, "name", "a flow definition");
        let what = name
            .as_ref()
            .map_or("a flow".to_string(), |n| format!("flow `{}`", n.value));
        let edges = match m.get_some("edges") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `edges`"),
                    "add `edges:` with at least one `- from: ... to: ...` entry",
                );
                Vec::new()
            }
            Some(e) => match self.list(
                e,
                &format!("`edges` of {what}"),
                "write `edges:` followed by `- from: ... to: ...` entries",
            ) {
                None => Vec::new(),
                Some([]) => {
                    self.error(
                        e.span,
                        format!("`edges` of {what} is empty"),
                        "add at least one edge",
                    );
                    Vec::new()
                }
                Some(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| self.edge(e, i, &what))
                    .collect(),
            },
        };
        let failures = match m.get_some("failures") {
            None => Vec::new(),
            Some(f) => match self.list(
                f,
                &format!("`failures` of {what}"),
                "write `failures:` followed by `- nodes: ... fallback: ...` entries",
            ) {
                None => Vec::new(),
                Some(items) => items
                    .iter()
                    .filter_map(|f| self.failure(f, &what))
                    .collect(),
            },
        };
        let nowait = m
            .get("nowait")
            .map(|n| self.names(n, &format!("`nowait` of {what}"), true))
            .unwrap_or_default();
        let eager_failures = m
            .get("eager_failures")
            .map(|n| {
                if matches!(n.value, Value::Bool(_)) {
                    self.error(
                        n.span,
                        format!("`eager_failures` of {what} must name nodes"),
                        "list the nodes whose failure stops the flow at once, e.g. `eager_failures: [Task1]`",
                    );
                    return Vec::new();
                }
                self.names(n, &format!("`eager_failures` of {what}"), true)
            })
            .unwrap_or_default();
        let node_args_from_first = self.boolean(&mut m, "node_args_from_first", &what);
        let mut selection = |l: &mut Self, key: &str| {
            m.get(key)
                .map(|n| l.flow_selection(n, &format!("`{key}` of {what}")))
                .unwrap_or_default()
        };
        let propagate_node_args = selection(self, "propagate_node_args");
        let propagate_parent = selection(self, "propagate_parent");
        let propagate_parent_failures = selection(self, "propagate_parent_failures");
        let propagate_finished = selection(self, "propagate_finished");
        let propagate_compound_finished = selection(self, "propagate_compound_finished");
        let propagate_failures = selection(self, "propagate_failures");
        let propagate_compound_failures = selection(self, "propagate_compound_failures");
        let max_retry = self.count(&mut m, "max_retry", &what);
        let retry_countdown = self.count(&mut m, "retry_countdown", &what);
        let queue = self.optional_template(&mut m, "queue", &what);
        let sampling = m.get_some("sampling").and_then(|s| self.sampling(s, &what));
        let throttling = m
            .get_some("throttling")
            .and_then(|t| self.throttling(t, &what));
        let cache = m
            .get("cache")
            .and_then(|c| self.cache(c, &format!("`cache` of {what}")));
        self.finish(m, FLOW_KEYS, &what, false);
        Some(Flow {
            span: node.span,
            name: name?,
            edges,
            failures,
            nowait,
            eager_failures,
            node_args_from_first,
            propagate_node_args,
            propagate_parent,
            propagate_parent_failures,
            propagate_finished,
            propagate_compound_finished,
            propagate_failures,
            propagate_compound_failures,
            max_retry,
            retry_countdown,
            queue,
            sampling,
            throttling,
            cache,
        })
    }

    fn edge(&mut self, node: &Node, index: usize, flow: &str) -> Option<Edge> {
        let what = format!("edge #{index} of {flow}");
        let mut m = self.map(node, &what, "write an edge as `- from: A\n  to: B`")?;
        let from = match m.get("from") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `from`"),
                    "add `from: Node`, or `from:` (empty) for a starting edge",
                );
                None
            }
            Some(f) => Some(self.names(f, &format!("`from` of {what}"), true)),
        };
        let to = match m.get("to") {
            None => {
                self.error(node.span, format!("{what} has no `to`"), "add `to: Node`");
                None
            }
            Some(t) => Some(self.names(t, &format!("`to` of {what}"), false)),
        };
        let condition = match m.get("condition") {
            None => None,
            Some(c) => Some(self.condition(c, &what)?),
        };
        let foreach = m.get_some("foreach").and_then(|f| self.foreach(f, &what));
        let selective = m
            .get_some("selective")
            .and_then(|s| self.selective(s, &what));
        self.finish(m, EDGE_KEYS, &what, false);
        Some(Edge {
            span: node.span,
            index,
            from: from?,
            to: to?,
            condition,
            foreach,
            selective,
        })
    }

    fn condition(&mut self, node: &Node, what: &str) -> Option<Condition> {
        let help = "a condition is `{name: predicate, args: {...}}` or `{and: [...]}`, `{or: [...]}`, `{not: {...}}`";
        if node.is_null() {
            self.error(node.span, format!("the condition of {what} is empty"), help);
            return None;
        }
        let mut m = self.map(node, &format!("the condition of {what}"), help)?;
        // Upstream's precedence: name > or > not > and.
        if let Some(name_node) = m.get("name") {
            let name = self.non_empty_string(name_node, "a predicate name")?;
            let node_ref = m
                .get_some("node")
                .and_then(|n| self.non_empty_string(n, "`node` of a predicate"));
            let mut args = Vec::new();
            if let Some(a) = m.get_some("args") {
                if let Some(am) = self.map(
                    a,
                    &format!("`args` of predicate `{}`", name.value),
                    "write `args: {key: ..., value: ...}`",
                ) {
                    for (k, v) in am.entries {
                        if let Some(key) = self.string(k, "a predicate argument name") {
                            args.push((key, v.clone()));
                        }
                    }
                }
            }
            self.finish(m, LEAF_KEYS, &format!("predicate `{}`", name.value), false);
            return Some(Condition {
                span: node.span,
                kind: ConditionKind::Predicate {
                    name,
                    node: node_ref,
                    args,
                },
            });
        }
        for op in ["or", "not", "and"] {
            let Some(inner) = m.get(op) else { continue };
            for other in ["or", "not", "and"] {
                if other != op {
                    if let Some(extra) = m.get(other) {
                        self.error(
                            extra.span,
                            format!("`{op}` and `{other}` in one condition mapping: upstream silently uses only `{op}`"),
                            format!("nest them, e.g. `{op}: [...]` inside an `and:` list"),
                        );
                    }
                }
            }
            let kind = if op == "not" {
                if !matches!(inner.value, Value::Map(_)) {
                    self.error(
                        inner.span,
                        format!(
                            "`not` takes one condition (a mapping), found {}",
                            inner.kind()
                        ),
                        "write `not: {name: predicate, ...}`",
                    );
                    return None;
                }
                ConditionKind::Not(Box::new(self.condition(inner, what)?))
            } else {
                let items = self.list(
                    inner,
                    &format!("`{op}`"),
                    &format!("write `{op}: [condition, condition]`"),
                )?;
                if items.is_empty() {
                    self.error(
                        inner.span,
                        format!("`{op}` has no conditions"),
                        format!("write `{op}: [condition, condition]`"),
                    );
                    return None;
                }
                let mut conds = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.condition(item, what) {
                        Some(c) => conds.push(c),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                if op == "or" {
                    ConditionKind::Or(conds)
                } else {
                    ConditionKind::And(conds)
                }
            };
            self.finish(m, &["or", "not", "and"], "a condition", false);
            return Some(Condition {
                span: node.span,
                kind,
            });
        }
        let keys: Vec<String> = m.unused().map(Node::key_text).collect();
        let first = m.unused().next().map_or(node.span, |k| k.span);
        let hint = keys
            .first()
            .map(|k| did_you_mean(k, ["name", "and", "or", "not"]))
            .unwrap_or_default();
        self.error(
            first,
            format!(
                "unknown predicate in the condition of {what}: no `name`, `and`, `or` or `not` key"
            ),
            if hint.is_empty() {
                help.to_string()
            } else {
                hint
            },
        );
        None
    }

    fn foreach(&mut self, node: &Node, what: &str) -> Option<Foreach> {
        let what = format!("`foreach` of {what}");
        let mut m = self.map(
            node,
            &what,
            "write `foreach: {function: name, import: module}`",
        )?;
        let function = self.required(&mut m, "function", &what);
        let import = self.required(&mut m, "import", &what);
        let propagate_result = self.boolean(&mut m, "propagate_result", &what);
        self.finish(m, FOREACH_KEYS, &what, false);
        Some(Foreach {
            span: node.span,
            function: function?,
            import: import?,
            propagate_result,
        })
    }

    fn selective(&mut self, node: &Node, what: &str) -> Option<SelectiveBlock> {
        let what = format!("`selective` of {what}");
        let mut m = self.map(node, &what, "write `selective: {tasks: [Task1]}`")?;
        let tasks = match m.get_some("tasks") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `tasks`"),
                    "add `tasks: [TaskName]`",
                );
                None
            }
            Some(t) => match &t.value {
                Value::Seq(_) => Some(self.names(t, &format!("`tasks` of {what}"), true)),
                _ => {
                    self.error(
                        t.span,
                        format!(
                            "`tasks` of {what} must be a list of task names, found {}",
                            t.kind()
                        ),
                        "write `tasks: [TaskName]`",
                    );
                    None
                }
            },
        };
        let run_subsequent = m
            .get("run_subsequent")
            .map(|r| self.flow_selection(r, &format!("`run_subsequent` of {what}")))
            .unwrap_or_default();
        let follow_subflows = self.boolean(&mut m, "follow_subflows", &what);
        self.finish(m, SELECTIVE_KEYS, &what, false);
        Some(SelectiveBlock {
            span: node.span,
            tasks: tasks?,
            run_subsequent,
            follow_subflows,
        })
    }

    fn failure(&mut self, node: &Node, flow: &str) -> Option<Failure> {
        let what = format!("a failure entry of {flow}");
        let mut m = self.map(
            node,
            &what,
            "write a failure as `- nodes: Task1\n  fallback: Task2`",
        )?;
        let nodes = match m.get("nodes") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `nodes`"),
                    "add `nodes: [Task1]`",
                );
                None
            }
            Some(n) => Some(self.names(n, &format!("`nodes` of {what}"), false)),
        };
        let fallback = match m.get("fallback") {
            None => {
                self.error(
                    node.span,
                    format!("{what} has no `fallback`"),
                    "add `fallback: Node` (or `fallback: true` to only mark the failure handled)",
                );
                None
            }
            Some(f) => match f.value {
                Value::Bool(true) => Some(Fallback::True(f.span)),
                Value::Bool(false) => {
                    self.error(
                        f.span,
                        format!("`fallback: false` in {what} is not supported"),
                        "remove the failure entry, or write `fallback: true` to mark the failure handled",
                    );
                    None
                }
                _ => Some(Fallback::Nodes(self.names(
                    f,
                    &format!("`fallback` of {what}"),
                    false,
                ))),
            },
        };
        let condition = match m.get("condition") {
            None => None,
            Some(c) => Some(self.condition(c, &what)?),
        };
        let propagate_failure = self.boolean(&mut m, "propagate_failure", &what);
        self.finish(m, FAILURE_KEYS, &what, false);
        Some(Failure {
            span: node.span,
            nodes: nodes?,
            fallback: fallback?,
            condition,
            propagate_failure,
        })
    }

    fn sampling(&mut self, node: &Node, flow: &str) -> Option<Sampling> {
        let what = format!("`sampling` of {flow}");
        let mut m = self.map(
            node,
            &what,
            "write `sampling: {name: constant, args: {retry: 2}}`",
        )?;
        if m.entries.is_empty() {
            return None;
        }
        let name = self.required(&mut m, "name", &what);
        let import = self
            .optional_string(&mut m, "import", &what)
            .unwrap_or_else(|| Spanned::new(DEFAULT_STRATEGY_IMPORT.into(), node.span));
        let mut args = Vec::new();
        match m.get("args") {
            None => self.error(
                node.span,
                format!("{what} has no `args`"),
                "add the strategy's arguments, e.g. `args: {start_retry: 2, max_retry: 120}`",
            ),
            Some(a) => {
                if let Some(am) = self.map(
                    a,
                    &format!("`args` of {what}"),
                    "write `args: {start_retry: 2, max_retry: 120}`",
                ) {
                    for (k, v) in am.entries {
                        if let Some(key) = self.string(k, "a strategy argument name") {
                            args.push((key, v.clone()));
                        }
                    }
                }
            }
        }
        self.finish(m, SAMPLING_KEYS, &what, false);
        Some(Sampling {
            span: node.span,
            name: name?,
            import,
            args,
        })
    }
}

/// Python truthiness of a YAML value.
fn truthy(node: &Node) -> bool {
    match &node.value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Seq(items) => !items.is_empty(),
        Value::Map(entries) => !entries.is_empty(),
    }
}

/// The kind of a value, with the value itself for scalars ("a string `abc`").
fn describe(node: &Node) -> String {
    match &node.value {
        Value::Int(i) => format!("{i}"),
        Value::Float(f) => format!("{f}"),
        Value::Str(s) => format!("the string `{s}`"),
        Value::Bool(b) => format!("`{b}`"),
        _ => node.kind().to_string(),
    }
}
