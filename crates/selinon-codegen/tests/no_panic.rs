//! Property tests: arbitrary bytes and arbitrary YAML-shaped configurations go through loading,
//! the checks, lowering, diagnostics rendering and (when the config is valid) code generation and
//! plotting without a panic. Kept short for the normal test run (256 cases per property); the
//! cargo-fuzz target `load` (crates/selinon-codegen/fuzz) explores further.

use proptest::prelude::*;
use selinon_codegen::{check_strs, Checked};

/// Everything downstream of loading, on whatever came out of it.
fn exercise(checked: &Checked) {
    let _ = checked.diagnostics.render(&checked.sources, false);
    let _ = checked.diagnostics.render(&checked.sources, true);
    let _ = checked.diagnostics.to_json(&checked.sources);
    for d in checked.diagnostics.iter() {
        if let Some(span) = d.span {
            let _ = checked.sources.location(span);
        }
    }
    if let Some(system) = &checked.system {
        assert!(!checked.diagnostics.has_errors());
        for flow in &system.flows {
            let _ = selinon_codegen::plot::flow_to_dot(system, flow);
            let expand = selinon_codegen::plot::Options { expand: true };
            let _ = selinon_codegen::plot::flow_to_dot_with(system, flow, expand);
        }
        let _ = selinon_codegen::emit::render(system, "0", &Default::default());
    }
}

fn single(text: &str) -> Checked {
    check_strs(("system.yml", text), &[("system.yml", text)])
}

/// A YAML tree, rendered by [`Yaml::render`] in block or flow style.
#[derive(Clone, Debug)]
enum Yaml {
    Scalar(String),
    Seq(Vec<Yaml>),
    Map(Vec<(String, Yaml)>),
    /// The inner collection written in flow style (`{a: b}`, `[a, b]`).
    Flow(Box<Yaml>),
    /// `&name` before the value.
    Anchor(String, Box<Yaml>),
}

impl Yaml {
    fn render(&self) -> String {
        let mut out = String::new();
        self.block(0, &mut out);
        out.push('\n');
        out
    }

    /// Writes the value after `key:` or `-` (the caller wrote that, without a space).
    fn block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Yaml::Scalar(s) => {
                out.push(' ');
                out.push_str(s);
            }
            Yaml::Flow(inner) => {
                out.push(' ');
                inner.flow(out);
            }
            Yaml::Anchor(name, inner) => {
                out.push_str(&format!(" &{name}"));
                inner.block(indent, out);
            }
            Yaml::Seq(items) if items.is_empty() => out.push_str(" []"),
            Yaml::Map(entries) if entries.is_empty() => out.push_str(" {}"),
            Yaml::Seq(items) => {
                for item in items {
                    out.push('\n');
                    out.push_str(&pad);
                    out.push('-');
                    item.block(indent + 2, out);
                }
            }
            Yaml::Map(entries) => {
                for (key, value) in entries {
                    out.push('\n');
                    out.push_str(&pad);
                    out.push_str(key);
                    out.push(':');
                    value.block(indent + 2, out);
                }
            }
        }
    }

    fn flow(&self, out: &mut String) {
        match self {
            Yaml::Scalar(s) => out.push_str(s),
            Yaml::Flow(inner) => inner.flow(out),
            Yaml::Anchor(name, inner) => {
                out.push_str(&format!("&{name} "));
                inner.flow(out);
            }
            Yaml::Seq(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.flow(out);
                }
                out.push(']');
            }
            Yaml::Map(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(key);
                    out.push_str(": ");
                    value.flow(out);
                }
                out.push('}');
            }
        }
    }
}

/// Every key the loader knows, plus a few it does not.
const KEYS: &[&str] = &[
    "tasks",
    "flows",
    "storages",
    "global",
    "flow-definitions",
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
    "configuration",
    "cache",
    "max_cache_size",
    "trace",
    "predicates_module",
    "default_task_queue",
    "default_dispatcher_queue",
    "migration_dir",
    "logging",
    "json",
    "function",
    "sentry",
    "dsn",
    "method",
    "edges",
    "from",
    "to",
    "condition",
    "foreach",
    "propagate_result",
    "selective",
    "follow_subflows",
    "run_subsequent",
    "failures",
    "nodes",
    "fallback",
    "propagate_failure",
    "nowait",
    "eager_failures",
    "propagate_parent",
    "propagate_parent_failures",
    "propagate_finished",
    "propagate_compound_finished",
    "propagate_node_args",
    "propagate_failures",
    "propagate_compound_failures",
    "node_args_from_first",
    "sampling",
    "strategy",
    "args",
    "node",
    "and",
    "or",
    "not",
    "days",
    "hours",
    "minutes",
    "seconds",
    "milliseconds",
    "microseconds",
    "weeks",
    "<<",
    "key",
    "value",
    "length",
    "unknown_key",
];

/// Scalars: node names (so references often resolve), predicate names, YAML 1.1 oddities,
/// placeholders, numbers, quoting.
const SCALARS: &[&str] = &[
    "T1",
    "T2",
    "T3",
    "f1",
    "f2",
    "S1",
    "app.tasks",
    "app.storages",
    "fieldEqual",
    "fieldLenLess",
    "alwaysTrue",
    "argsFieldExist",
    "isGhRepo",
    "constant",
    "~",
    "null",
    "",
    "True",
    "yes",
    "no",
    "off",
    "0",
    "1",
    "2",
    "-1",
    "3.5",
    "1e3",
    "0x1F",
    "0o17",
    "'quoted'",
    "\"dq\\u00e9\"",
    "{VAR}_queue",
    "'{a.b}'",
    "x y",
    "'it''s'",
    ".inf",
    "2001-12-14",
];

/// Scalars that often make the document itself invalid (undefined aliases, tags, stray
/// brackets).
const RISKY_SCALARS: &[&str] = &["{", "*a", "*b", "!!str 5", "!!int '7'", "!!map", "@x", "`y"];

fn scalar() -> impl Strategy<Value = Yaml> {
    prop_oneof![
        20 => prop::sample::select(SCALARS).prop_map(|s| Yaml::Scalar(s.to_string())),
        2 => "[a-zA-Z0-9_ .{}-]{0,12}".prop_map(|s| Yaml::Scalar(format!("'{s}'"))),
        1 => prop::sample::select(RISKY_SCALARS).prop_map(|s| Yaml::Scalar(s.to_string())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ]
}

/// Any tree of maps, lists and scalars, up to a few levels deep.
fn tree() -> impl Strategy<Value = Yaml> {
    scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            3 => prop::collection::vec(inner.clone(), 0..5).prop_map(Yaml::Seq),
            4 => prop::collection::vec((key(), inner.clone()), 0..6).prop_map(Yaml::Map),
            1 => inner.clone().prop_map(|y| Yaml::Flow(Box::new(y))),
            1 => (prop::sample::select(&["a", "b"][..]), inner)
                .prop_map(|(n, y)| Yaml::Anchor(n.to_string(), Box::new(y))),
        ]
    })
}

/// A mapping `name: <name>` plus `fixed` entries, and often some random entries with keys from
/// `keys`.
fn entity(
    name: &'static str,
    fixed: &'static [(&'static str, &'static str)],
    keys: &'static [&'static str],
) -> impl Strategy<Value = Yaml> {
    let entry = prop_oneof![
        8 => prop::sample::select(keys).prop_flat_map(|k| (Just(k.to_string()), value_for(k))),
        1 => (key(), tree()),
    ];
    let extras = prop_oneof![
        1 => Just(Vec::new()),
        2 => prop::collection::vec(entry, 1..4),
    ];
    extras.prop_map(move |extras| {
        let mut entries = vec![("name".to_string(), Yaml::Scalar(name.to_string()))];
        for (k, v) in fixed {
            entries.push((k.to_string(), Yaml::Scalar(v.to_string())));
        }
        entries.extend(extras);
        Yaml::Map(entries)
    })
}

/// Values that make sense for `key` (written as inline YAML), and now and then any tree.
fn value_for(key: &str) -> BoxedStrategy<Yaml> {
    let good: &'static [&'static str] = match key {
        "import" => &["app.tasks", "app.other"],
        "classname" => &["Worker", "Other"],
        "storage" => &["S1"],
        "storage_readonly" | "propagate_result" => &["true", "false", "yes"],
        "node_args_from_first" => &["false", "no"],
        "storage_task_name" => &["T1", "Alias"],
        "output_schema" => &["schemas/out.json"],
        "max_retry" | "retry_countdown" => &["0", "2", "5"],
        "queue" => &["work_v0", "'{PREFIX}_q'", "~"],
        "throttling" => &["{seconds: 2}", "{minutes: 1, seconds: 3}"],
        "selective_run_function" => &["{name: run, import: app.selective}"],
        "configuration" => &["{dir: /tmp}", "plain string"],
        "cache" => &["{name: C, import: app.cache, configuration: {max_cache_size: 8}}"],
        "failures" => &[
            "[{nodes: T1, fallback: T3}]",
            "[{nodes: [T2, T3], fallback: [f2]}]",
            "[{nodes: T2, fallback: true}]",
            "[{nodes: T1, fallback: T3, condition: {name: alwaysTrue}}]",
        ],
        "nowait" | "eager_failures" => &["T2", "[T3]", "[]"],
        "propagate_parent"
        | "propagate_finished"
        | "propagate_compound_finished"
        | "propagate_node_args"
        | "propagate_failures"
        | "propagate_compound_failures"
        | "propagate_parent_failures" => &["true", "false", "False", "[f2]"],
        "sampling" => &["{name: constant, args: {retry: 3}}"],
        "foreach" => &["{import: app.foreach, function: items, propagate_result: false}"],
        "selective" => &["{tasks: [T2], follow_subflows: true}"],
        "condition" => &[
            "{name: alwaysTrue}",
            "{not: {name: argsFieldExist, args: {key: k}}}",
        ],
        _ => &["~"],
    };
    prop_oneof![
        6 => prop::sample::select(good).prop_map(|s| Yaml::Scalar(s.to_string())),
        1 => tree(),
    ]
    .boxed()
}

const TASK_KEYS: &[&str] = &[
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
const FLOW_KEYS: &[&str] = &[
    "edges",
    "failures",
    "nowait",
    "eager_failures",
    "propagate_parent",
    "propagate_finished",
    "propagate_compound_finished",
    "propagate_node_args",
    "propagate_failures",
    "propagate_compound_failures",
    "propagate_parent_failures",
    "node_args_from_first",
    "max_retry",
    "retry_countdown",
    "queue",
    "throttling",
    "sampling",
    "cache",
];
const EDGE_KEYS: &[&str] = &["foreach", "foreach", "selective", "condition"];
const GLOBALS: &[&str] = &[
    "{predicates_module: app.predicates, default_task_queue: tasks_q}",
    "{trace: [{logging: true}, {json: true}], migration_dir: migrations}",
    "{default_dispatcher_queue: '{PREFIX}_dispatch'}",
    "{trace: {function: {import: app.trace, name: trace}}}",
];
const STORAGE_KEYS: &[&str] = &["classname", "configuration", "cache"];

/// A condition tree: leaves are predicates, inner nodes `and` / `or` / `not`.
fn condition() -> impl Strategy<Value = Yaml> {
    let wild = (
        prop::sample::select(&["fieldEqual", "fieldLenLess", "nope", "isGhRepo"][..]),
        prop::collection::vec((key(), scalar()), 0..3),
        prop::option::of(prop::sample::select(&["T1", "T2", "f1"][..])),
    )
        .prop_map(|(name, args, node)| {
            let mut entries = vec![
                ("name".to_string(), Yaml::Scalar(name.to_string())),
                ("args".to_string(), Yaml::Map(args)),
            ];
            if let Some(node) = node {
                entries.push(("node".to_string(), Yaml::Scalar(node.to_string())));
            }
            Yaml::Map(entries)
        });
    let good = prop::sample::select(
        &[
            "{name: alwaysTrue}",
            "{name: alwaysFalse}",
            "{name: argsFieldExist, args: {key: a}}",
            "{name: argsFieldEqual, args: {key: [a, b], value: True}}",
            "{name: envEqual, args: {env: HOME, value: /root}}",
        ][..],
    )
    .prop_map(|s| Yaml::Scalar(s.to_string()));
    let leaf = prop_oneof![6 => good, 1 => wild];
    leaf.prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            (
                prop::sample::select(&["and", "or"][..]),
                prop::collection::vec(inner.clone(), 1..3)
            )
                .prop_map(|(op, items)| Yaml::Map(vec![(op.to_string(), Yaml::Seq(items))])),
            inner.prop_map(|c| Yaml::Map(vec![("not".to_string(), c)])),
        ]
    })
}

/// A node name, or a list of them; mostly names that exist.
fn names(common: &'static [&'static str]) -> impl Strategy<Value = Yaml> {
    let name = prop_oneof![
        12 => prop::sample::select(common),
        1 => prop::sample::select(&["T1", "T2", "T3", "f1", "f2", "", "nope"][..]),
    ]
    .prop_map(|s| Yaml::Scalar(s.to_string()));
    prop_oneof![
        3 => name.clone(),
        1 => prop::collection::vec(name, 1..3).prop_map(|mut items| {
            let mut seen = Vec::new();
            items.retain(|item| {
                let Yaml::Scalar(s) = item else { return true };
                let fresh = !seen.contains(s);
                seen.push(s.clone());
                fresh
            });
            Yaml::Seq(items)
        }),
    ]
}

fn edge() -> impl Strategy<Value = Yaml> {
    let start = Just(Yaml::Scalar(String::new()));
    (
        prop_oneof![1 => start, 2 => names(&["T1"])],
        names(&["T2", "T3", "f2"]),
        prop_oneof![2 => Just(None), 1 => condition().prop_map(Some)],
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec(
                prop::sample::select(EDGE_KEYS)
                    .prop_flat_map(|k| (Just(k.to_string()), value_for(k))),
                1..2
            ),
        ],
    )
        .prop_map(|(from, to, condition, extra)| {
            let mut entries = vec![("from".to_string(), from), ("to".to_string(), to)];
            if let Some(c) = condition {
                entries.push(("condition".to_string(), c));
            }
            entries.extend(extra);
            Yaml::Map(entries)
        })
}

fn flow_definition(name: &'static str) -> impl Strategy<Value = Yaml> {
    (
        prop::collection::vec(edge(), 1..5),
        entity("-", &[], FLOW_KEYS),
    )
        .prop_map(move |(mut edges, rest)| {
            let Yaml::Map(rest) = rest else {
                unreachable!()
            };
            // Start at least one node, as most real flows do.
            edges.insert(
                0,
                Yaml::Map(vec![
                    ("from".to_string(), Yaml::Scalar(String::new())),
                    ("to".to_string(), Yaml::Scalar("T1".to_string())),
                ]),
            );
            let mut entries = vec![
                ("name".to_string(), Yaml::Scalar(name.to_string())),
                ("edges".to_string(), Yaml::Seq(edges)),
            ];
            entries.extend(rest.into_iter().skip(1).filter(|(k, _)| k != "edges"));
            Yaml::Map(entries)
        })
}

/// A whole configuration in one file, shaped like a real one so that loading, the checks and
/// often code generation are reached.
fn config() -> impl Strategy<Value = Yaml> {
    fn task(name: &'static str) -> impl Strategy<Value = Yaml> {
        prop_oneof![
            3 => Just(Yaml::Map(vec![
                ("name".to_string(), Yaml::Scalar(name.to_string())),
                ("import".to_string(), Yaml::Scalar("app.tasks".to_string())),
            ])),
            1 => entity(name, &[("import", "app.tasks")], TASK_KEYS),
        ]
    }
    let flows = prop_oneof![
        4 => Just(Yaml::Seq(vec![Yaml::Scalar("f1".into()), Yaml::Scalar("f2".into())])),
        1 => names(&["f1", "f2"]),
        4 => Just(Yaml::Scalar("[f1, f2]".into())),
    ];
    (
        (task("T1"), task("T2"), task("T3")),
        flows,
        prop::collection::vec(
            entity(
                "S1",
                &[("import", "app.storages"), ("configuration", "{dir: /tmp}")],
                STORAGE_KEYS,
            ),
            0..2,
        ),
        prop_oneof![
            4 => Just(None),
            2 => prop::sample::select(GLOBALS).prop_map(|g| Some(Yaml::Scalar(g.to_string()))),
            1 => tree().prop_map(Some),
        ],
        (flow_definition("f1"), flow_definition("f2")),
        prop_oneof![
            4 => Just(Vec::new()),
            1 => prop::collection::vec((key(), tree()), 1..2),
        ],
    )
        .prop_map(|((t1, t2, t3), flows, storages, global, (f1, f2), extra)| {
            let mut entries = vec![
                ("tasks".to_string(), Yaml::Seq(vec![t1, t2, t3])),
                ("flows".to_string(), flows),
                ("storages".to_string(), Yaml::Seq(storages)),
            ];
            if let Some(g) = global {
                entries.push(("global".to_string(), g));
            }
            entries.push(("flow-definitions".to_string(), Yaml::Seq(vec![f1, f2])));
            entries.extend(extra);
            Yaml::Map(entries)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise(&single(&text));
    }

    #[test]
    fn arbitrary_files_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // Through the file system: bytes that are not UTF-8, byte-order marks, CRLF.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no_panic_files");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yml");
        std::fs::write(&path, &bytes).unwrap();
        exercise(&selinon_codegen::check_files(&path, std::slice::from_ref(&path)));
    }

    #[test]
    fn yaml_ish_text_does_not_panic(text in "([a-z_\\-:&*!|>'\"#%@,?\\[\\]{}<~ ]|\n|\t|  |[0-9]){0,300}") {
        exercise(&single(&text));
        exercise(&check_strs(("nodes.yml", "tasks: []\nflows: []\n"), &[("flows.yml", &text)]));
    }

    #[test]
    fn arbitrary_trees_do_not_panic(doc in tree()) {
        let text = doc.render();
        exercise(&single(&text));
    }

    #[test]
    fn config_shaped_trees_do_not_panic(doc in config()) {
        let text = doc.render();
        let checked = single(&text);
        exercise(&checked);
        // The same content split into a nodes file and a flow file.
        if let Yaml::Map(entries) = &doc {
            let (defs, nodes): (Vec<_>, Vec<_>) =
                entries.iter().cloned().partition(|(k, _)| k == "flow-definitions");
            let nodes = Yaml::Map(nodes).render();
            let flows = Yaml::Map(defs).render();
            exercise(&check_strs(("nodes.yml", &nodes), &[("flows.yml", &flows)]));
        }
    }
}

#[test]
fn the_generator_reaches_the_checks_and_code_generation() {
    // Most generated configurations parse, and a fair share is valid, so the properties above
    // exercise the checks, lowering and code generation, not only the YAML parser.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut loaded, mut valid) = (0, 0);
    for _ in 0..200 {
        let doc = config().new_tree(&mut runner).unwrap().current();
        let checked = single(&doc.render());
        loaded += usize::from(checked.config.is_some());
        valid += usize::from(checked.system.is_some());
    }
    assert!(loaded >= 100, "only {loaded} of 200 generated configs load");
    assert!(
        valid >= 10,
        "only {valid} of 200 generated configs are valid"
    );
}
