//! The corpus of real Selinon configurations (`shared/corpus`): every configuration upstream
//! Selinon 1.4.0 accepts is accepted, every one it rejects is rejected for the reason MANIFEST.md
//! gives.
//!
//! The corpus folder is `$SELINON_CORPUS_DIR` (set by `.ci/run`), else `../shared/corpus` beside
//! the workspace; when it is missing the test fails (`selinon_testkit::corpus_dir`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use selinon_codegen::{check_files, Checked, Diagnostic};

#[derive(Debug)]
struct Entry {
    name: String,
    accept: bool,
    nodes: PathBuf,
    flows: Vec<PathBuf>,
}

/// The lines of `CONFIGS.tsv`: folder, verdict, nodes file, space-separated flow files.
fn entries(corpus: &Path) -> Vec<Entry> {
    let path = corpus.join("CONFIGS.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert!(
                fields.len() == 4,
                "{}:{}: expected 4 tab-separated fields, found {}",
                path.display(),
                i + 1,
                fields.len()
            );
            let dir = corpus.join(fields[0]);
            let accept = match fields[1] {
                "ACCEPT" => true,
                "REJECT" => false,
                other => panic!("{}:{}: unknown verdict {other:?}", path.display(), i + 1),
            };
            Entry {
                name: fields[0].to_string(),
                accept,
                nodes: dir.join(fields[2]),
                flows: fields[3].split_whitespace().map(|f| dir.join(f)).collect(),
            }
        })
        .collect()
}

/// Upstream's counts for an accepted config, from `VALIDATION.json`.
#[derive(Debug, PartialEq)]
struct Counts {
    tasks: u64,
    flows: u64,
    storages: u64,
    edges: u64,
}

struct Upstream {
    counts: std::collections::BTreeMap<String, Counts>,
    env_placeholders: BTreeSet<String>,
}

fn upstream(corpus: &Path) -> Upstream {
    let path = corpus.join("VALIDATION.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
    let mut counts = std::collections::BTreeMap::new();
    let mut env_placeholders = BTreeSet::new();
    for item in json.as_array().expect("VALIDATION.json is a list") {
        let name = item["config"].as_str().expect("config name").to_string();
        let c = &item["counts"];
        let n = |key: &str| {
            c[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: counts.{key}"))
        };
        counts.insert(
            name.clone(),
            Counts {
                tasks: n("tasks"),
                flows: n("flows"),
                storages: n("storages"),
                edges: n("edges"),
            },
        );
        for var in item["env_placeholders"].as_array().into_iter().flatten() {
            env_placeholders.insert(var.as_str().expect("a variable name").to_string());
        }
    }
    Upstream {
        counts,
        env_placeholders,
    }
}

/// Why upstream rejects a config (MANIFEST.md, "Negative cases"), as something to find among our
/// errors: words the message must contain (every group: one of its alternatives), and a text the
/// reported source line must contain.
struct Reason {
    config_suffix: &'static str,
    manifest: &'static str,
    message: &'static [&'static [&'static str]],
    line_contains: &'static str,
}

const REASONS: &[Reason] = &[
    Reason {
        config_suffix: "_bc798de",
        manifest: "Configuration of trace function expects dict",
        message: &[&["trace"], &["function"], &["mapping", "dict"]],
        line_contains: "function:",
    },
    Reason {
        config_suffix: "_f0fe9c4",
        manifest: "an edge names flow 'osioUserAnalysisFlow', which is not defined",
        message: &[
            &["`osioUserAnalysisFlow`"],
            &["not listed", "not defined", "unknown", "no such"],
        ],
        line_contains: "osioUserAnalysisFlow",
    },
    Reason {
        config_suffix: "_48f901c",
        manifest: "Empty flow: bayesianPackageTaggingFlow (listed in flows, no definition)",
        message: &[
            &["`bayesianPackageTaggingFlow`"],
            &["no definition", "empty flow"],
        ],
        line_contains: "bayesianPackageTaggingFlow",
    },
];

/// Configurations upstream accepts that we reject on purpose (COMPATIBILITY.md): every error
/// must be for that reason. Upstream reads `output_schema` files only when a task returns a
/// result (and then fails every run of the task); we embed them when generating code, so a
/// missing file is an error at the `output_schema` key. The corpus ships no schema file:
/// `output_schemas_of_corpus_configs_are_embedded` supplies them.
struct Stricter {
    config: &'static str,
    reason: Reason,
}

const MISSING_SCHEMA: Reason = Reason {
    config_suffix: "",
    manifest: "their `output_schema` files are not in the corpus",
    message: &[
        &["output schema of task"],
        &["cannot be read", "cannot be used"],
    ],
    line_contains: "output_schema:",
};

const STRICTER: &[Stricter] = &[
    Stricter {
        config: "selinon__selinon__2016_examples",
        reason: MISSING_SCHEMA,
    },
    Stricter {
        config: "selinon__selinon__test_set_config",
        reason: MISSING_SCHEMA,
    },
];

fn matches(checked: &Checked, d: &Diagnostic, reason: &Reason) -> bool {
    let message_ok = reason
        .message
        .iter()
        .all(|group| group.iter().any(|word| d.message.contains(word)));
    let line_ok = d.span.is_some_and(|span| {
        checked
            .sources
            .get(span.file)
            .text
            .lines()
            .nth(span.line.saturating_sub(1) as usize)
            .is_some_and(|line| line.contains(reason.line_contains))
    });
    d.is_error() && message_ok && line_ok
}

fn rendered_errors(checked: &Checked) -> String {
    let mut errors = selinon_codegen::Diagnostics::default();
    for d in checked.diagnostics.errors() {
        errors.push(d.clone());
    }
    let text = errors.render(&checked.sources, false);
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn corpus_configs_get_upstream_verdicts() {
    let Some(corpus) = selinon_testkit::corpus_dir() else {
        return;
    };
    let entries = entries(&corpus);
    assert!(!entries.is_empty(), "CONFIGS.tsv lists no configuration");
    let upstream = upstream(&corpus);

    // `{VAR}` placeholders are resolved when a worker starts: checking must not need them.
    for var in &upstream.env_placeholders {
        std::env::remove_var(var);
    }

    let mut failures = Vec::new();
    let mut placeholders_kept = 0;
    for entry in &entries {
        let missing: Vec<_> = std::iter::once(&entry.nodes)
            .chain(&entry.flows)
            .filter(|p| !p.is_file())
            .collect();
        if !missing.is_empty() {
            failures.push(format!("{}: files missing: {missing:?}", entry.name));
            continue;
        }
        let checked = check_files(&entry.nodes, &entry.flows);
        let errors = checked.diagnostics.error_count();
        if let Some(stricter) = STRICTER.iter().find(|s| s.config == entry.name) {
            let unexplained: Vec<_> = checked
                .diagnostics
                .errors()
                .filter(|d| !matches(&checked, d, &stricter.reason))
                .collect();
            if !entry.accept || errors == 0 || !unexplained.is_empty() {
                failures.push(format!(
                    "{}: upstream {}s it; we reject it on purpose only because {}, yet we \
                     report {errors} error(s):\n{}",
                    entry.name,
                    if entry.accept { "ACCEPT" } else { "REJECT" },
                    stricter.reason.manifest,
                    rendered_errors(&checked)
                ));
            }
            continue;
        }
        if entry.accept {
            if errors > 0 {
                failures.push(format!(
                    "{}: upstream ACCEPTs it, we report {errors} error(s):\n{}",
                    entry.name,
                    rendered_errors(&checked)
                ));
                continue;
            }
            let Some(system) = &checked.system else {
                failures.push(format!("{}: no errors but no IR", entry.name));
                continue;
            };
            let ours = Counts {
                tasks: system.tasks.len() as u64,
                flows: system.flows.len() as u64,
                storages: system.storages.len() as u64,
                edges: system.flows.iter().map(|f| f.edges.len() as u64).sum(),
            };
            match upstream.counts.get(&entry.name) {
                Some(theirs) if *theirs != ours => failures.push(format!(
                    "{}: upstream loads {theirs:?}, we load {ours:?}",
                    entry.name
                )),
                Some(_) => {}
                None => failures.push(format!("{}: not in VALIDATION.json", entry.name)),
            }
            placeholders_kept += system
                .tasks
                .iter()
                .map(|t| &t.queue.raw)
                .chain(system.flows.iter().map(|f| &f.queue.raw))
                .filter(|q| q.contains("{DEPLOYMENT_PREFIX}"))
                .count();
        } else {
            let Some(reason) = REASONS
                .iter()
                .find(|r| entry.name.ends_with(r.config_suffix))
            else {
                failures.push(format!(
                    "{}: upstream REJECTs it, but this test does not know why: add it to REASONS",
                    entry.name
                ));
                continue;
            };
            if errors == 0 {
                failures.push(format!(
                    "{}: upstream REJECTs it ({}), we report no error",
                    entry.name, reason.manifest
                ));
            } else if !checked
                .diagnostics
                .iter()
                .any(|d| matches(&checked, d, reason))
            {
                failures.push(format!(
                    "{}: upstream REJECTs it ({}); none of our {errors} error(s) says so (on a \
                     line containing {:?}):\n{}",
                    entry.name,
                    reason.manifest,
                    reason.line_contains,
                    rendered_errors(&checked)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus configs disagree with upstream:\n\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n\n")
    );
    assert!(
        placeholders_kept > 0,
        "no queue kept a `{{DEPLOYMENT_PREFIX}}` placeholder: are placeholders resolved at load?"
    );
    for reason in REASONS {
        assert!(
            entries
                .iter()
                .any(|e| !e.accept && e.name.ends_with(reason.config_suffix)),
            "CONFIGS.tsv no longer lists a REJECT config ending in {}",
            reason.config_suffix
        );
    }
}

/// Schemas for the corpus configurations that name `output_schema` files (the corpus ships
/// none): `(config, [(path as the YAML writes it, schema)])`. The 2016 example's conditions
/// read `foo` of Task1 and Task3.
const CORPUS_SCHEMAS: &[(&str, &[(&str, &str)])] = &[
    (
        "selinon__selinon__test_set_config",
        &[(
            "schema.json",
            r#"{"type": "object", "required": ["projectName"],
                "properties": {"projectName": {"type": "string"}}}"#,
        )],
    ),
    (
        "selinon__selinon__2016_examples",
        &[
            (
                "path/to/schema1.json",
                r#"{"type": "object", "properties": {"foo": {"type": "string"}}}"#,
            ),
            ("path/to/schema2.json", r#"{"type": "array"}"#),
            (
                "path/to/schema3.json",
                r##"{"$defs": {"foo": {"enum": ["bar", "baz"]}},
                    "properties": {"foo": {"$ref": "#/$defs/foo"}}}"##,
            ),
            ("path/to/schema4.json", r#"{}"#),
        ],
    ),
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The corpus configurations that use `output_schema`, with their schema files written beside
/// the nodes file: they load as upstream loads them, the generated code embeds every schema,
/// and a result is validated against an embedded schema the way a worker validates it.
#[test]
fn output_schemas_of_corpus_configs_are_embedded() {
    use selinon_runtime::schema::SchemaSlot;
    use selinon_runtime::spec::OutputSchema;

    let Some(corpus) = selinon_testkit::corpus_dir() else {
        return;
    };
    let upstream = upstream(&corpus);
    let entries = entries(&corpus);
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("corpus-output-schemas");
    let _ = std::fs::remove_dir_all(&scratch);
    // Every corpus configuration that names an output schema is covered here.
    for entry in &entries {
        let nodes = std::fs::read_to_string(&entry.nodes).unwrap();
        if nodes.contains("output_schema:") {
            assert!(
                CORPUS_SCHEMAS.iter().any(|(c, _)| *c == entry.name),
                "{} uses output_schema: add its schemas to CORPUS_SCHEMAS",
                entry.name
            );
        }
    }
    for (config, schemas) in CORPUS_SCHEMAS {
        let entry = entries.iter().find(|e| e.name == *config).unwrap();
        let dir = scratch.join(config);
        copy_dir(&corpus.join(config), &dir);
        for (path, schema) in *schemas {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, schema).unwrap();
        }
        let rel = |p: &Path| p.strip_prefix(corpus.join(config)).unwrap().to_path_buf();
        let nodes = dir.join(rel(&entry.nodes));
        let flows: Vec<PathBuf> = entry.flows.iter().map(|f| dir.join(rel(f))).collect();

        let checked = check_files(&nodes, &flows);
        assert!(
            !checked.diagnostics.has_errors(),
            "{config}:\n{}",
            rendered_errors(&checked)
        );
        let system = checked.system.as_ref().unwrap();
        let ours = Counts {
            tasks: system.tasks.len() as u64,
            flows: system.flows.len() as u64,
            storages: system.storages.len() as u64,
            edges: system.flows.iter().map(|f| f.edges.len() as u64).sum(),
        };
        assert_eq!(upstream.counts.get(*config), Some(&ours), "{config}");
        // Every task's schema is in the IR as compact JSON.
        for task in &system.tasks {
            let Some(schema) = &task.output_schema else {
                continue;
            };
            let (_, text) = schemas.iter().find(|(p, _)| *p == schema.path).unwrap();
            let expected: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                schema.json.as_deref(),
                Some(serde_json::to_string(&expected).unwrap().as_str()),
                "{config}: {}",
                task.name
            );
        }

        let mut builder = selinon_codegen::Builder::new()
            .base_dir(&dir)
            .nodes(rel(&entry.nodes));
        for f in &entry.flows {
            builder = builder.flows(rel(f));
        }
        let generated = builder.load().unwrap();
        let code = generated.code();
        for (path, _) in *schemas {
            assert!(
                code.contains(&format!("path: \"{path}\",")),
                "{config}: {path} is not embedded:\n{code}"
            );
            assert!(
                generated.files.iter().any(|f| f.ends_with(path)),
                "{config}: {path} is not watched"
            );
        }
        assert!(code.contains("json: r#\"{"), "{config}:\n{code}");
        if *config == "selinon__selinon__2016_examples" {
            // `"#` in the schema: the raw string takes one more `#`.
            assert!(
                code.contains(r###"json: r##"{"$defs""###),
                "{config}:\n{code}"
            );
        }
    }

    // A result checked against an embedded schema, as a worker checks it.
    let system = check_files(
        scratch.join("selinon__selinon__2016_examples/example_nodes.yml"),
        &[scratch.join("selinon__selinon__2016_examples/example_flows.yml")],
    )
    .system
    .unwrap();
    let task3 = system.task("Task3").unwrap();
    let ir = task3.output_schema.as_ref().unwrap();
    let schema = OutputSchema {
        path: Box::leak(ir.path.clone().into_boxed_str()),
        json: Box::leak(ir.json.clone().unwrap().into_boxed_str()),
    };
    let slot = SchemaSlot::default();
    slot.validate("Task3", &schema, &serde_json::json!({"foo": "bar"}))
        .unwrap();
    let err = slot
        .validate("Task3", &schema, &serde_json::json!({"foo": "qux"}))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("task `Task3`: the result does not match output schema `path/to/schema3.json`: at /foo: "),
        "{err}"
    );
}
