//! The `selinon` binary: exit codes (0 no errors, 1 errors, 2 usage), rustc-style diagnostics on
//! stderr, `--format json`, and the queue listings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn selinon(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(args)
        .current_dir(dir)
        .env_remove("SELINON_NODES")
        .output()
        .expect("run the selinon binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A fresh directory holding the given files, private to this call (tests run concurrently).
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// The repository's example configuration.
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flows")
}

const EXAMPLE_ARGS: &[&str] = &[
    "check",
    "--nodes",
    "nodes.yml",
    "--flows",
    "ingest.yml",
    "--flows",
    "analyse.yml",
];

const NODES: &str = "\
tasks:
  - name: Fetch
    import: app.tasks
    queue: '{PREFIX}_fetch'
  - name: Parse
    import: app.tasks
    max_retry: -1
flows: [main]
";

const FLOWS: &str = "\
flow-definitions:
  - name: main
    queue: main_v0
    edges:
      - from:
        to: Fetch
      - from: Fetch
        to: Parse
        condition:
          name: fieldLenLes
          args: {key: a}
";

fn broken() -> PathBuf {
    scratch("broken", &[("nodes.yml", NODES), ("flows/main.yml", FLOWS)])
}

#[test]
fn example_config_is_ok() {
    let out = selinon(&example_dir(), EXAMPLE_ARGS);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("configuration OK: 6 tasks, 2 flows, 1 storages"),
        "{err}"
    );
    assert!(
        !err.contains("warning"),
        "the example has no warnings:\n{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn errors_exit_1_with_rustc_style_diagnostics() {
    let out = selinon(
        &broken(),
        &["check", "--nodes", "nodes.yml", "--flows", "flows"],
    );
    assert_exit(&out, 1);
    let err = stderr(&out);
    // The negative retry count: header, location, the source line, a caret under the value.
    let expected = [
        "error: `max_retry` of task `Parse` must be a non-negative integer, found -1",
        " --> nodes.yml:7:16",
        "7 |     max_retry: -1",
        "  |                ^^",
    ];
    for line in expected {
        assert!(
            err.lines().any(|l| l == line),
            "missing line {line:?} in:\n{err}"
        );
    }
    // The misspelt predicate, in the flow file, with a suggestion.
    assert!(err.contains("fieldLenLes"), "{err}");
    assert!(err.contains("--> flows/main.yml:10:17"), "{err}");
    assert!(err.contains("did you mean `fieldLenLess`?"), "{err}");
    // Every problem of the run is reported, then a summary.
    assert!(
        err.trim_end().ends_with("2 errors, 0 warnings"),
        "summary line:\n{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "no colour when stderr is not a terminal"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn json_format_has_the_expected_fields() {
    let out = selinon(
        &broken(),
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "flows",
            "--format",
            "json",
        ],
    );
    assert_exit(&out, 1);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");
    assert_eq!(json["ok"], false, "{json:#}");
    let items = json["diagnostics"]
        .as_array()
        .expect("an array of diagnostics");
    assert_eq!(items.len(), 2, "{json:#}");
    for item in items {
        for key in ["severity", "message", "help", "location", "related"] {
            assert!(item.get(key).is_some(), "no `{key}` in {item:#}");
        }
        let loc = &item["location"];
        for key in ["file", "line", "column", "end_line", "end_column"] {
            assert!(loc.get(key).is_some(), "no `location.{key}` in {item:#}");
        }
    }
    let retry = items
        .iter()
        .find(|i| i["message"].as_str().unwrap().contains("max_retry"))
        .expect("the max_retry error");
    assert_eq!(retry["severity"], "error");
    assert_eq!(retry["location"]["file"], "nodes.yml");
    assert_eq!(retry["location"]["line"], 7);
    assert_eq!(retry["location"]["column"], 16);
    assert_eq!(retry["help"], "write e.g. `max_retry: 3`");
    let predicate = items
        .iter()
        .find(|i| i["message"].as_str().unwrap().contains("fieldLenLes"))
        .expect("the predicate error");
    assert_eq!(predicate["location"]["file"], "flows/main.yml");
    assert_eq!(predicate["location"]["line"], 10);

    // A clean config: no diagnostics and exit 0.
    let mut args = EXAMPLE_ARGS.to_vec();
    args.extend(["--format", "json"]);
    let out = selinon(&example_dir(), &args);
    assert_exit(&out, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json, serde_json::json!({"ok": true, "diagnostics": []}));
}

/// With `--format json` the queue listings are part of the one JSON document on stdout.
#[test]
fn json_format_holds_the_queue_listings() {
    let mut args = EXAMPLE_ARGS.to_vec();
    args.extend([
        "--format",
        "json",
        "--list-task-queues",
        "--list-dispatcher-queues",
    ]);
    let out = selinon(&example_dir(), &args);
    assert_exit(&out, 0);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");
    assert_eq!(json["ok"], true);
    assert_eq!(json["task_queues"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        json["task_queues"][5],
        serde_json::json!({"task": "Report", "queue": "reports"})
    );
    assert_eq!(
        json["dispatcher_queues"],
        serde_json::json!([
            {"flow": "ingest", "queue": "ingest_flow"},
            {"flow": "analyse", "queue": "celery"},
        ])
    );
    // With errors: still one JSON document, with no listing in it.
    let out = selinon(
        &broken(),
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "flows",
            "--format",
            "json",
            "--list-task-queues",
        ],
    );
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(json["ok"], false);
    assert_eq!(json["task_queues"], serde_json::json!([]));
}

/// `--format` takes `human|json` on every command (`text` is the old spelling of `human`).
#[test]
fn format_values_are_the_same_everywhere() {
    for format in ["human", "text"] {
        let mut args = EXAMPLE_ARGS.to_vec();
        args.extend(["--format", format]);
        let out = selinon(&example_dir(), &args);
        assert_exit(&out, 0);
        assert!(stderr(&out).contains("configuration OK"), "{format}");
    }
    for command in ["check", "status"] {
        let out = selinon(&example_dir(), &[command, "--help"]);
        assert_exit(&out, 0);
        let help = stdout(&out);
        assert!(
            help.contains("- human:") && help.contains("- json:"),
            "{command}:\n{help}"
        );
        assert!(
            !help.contains("text"),
            "{command}: the alias is hidden:\n{help}"
        );
    }
    let out = selinon(&example_dir(), &["status", "some-id", "--format", "xml"]);
    assert_exit(&out, 2);
}

/// Colour: `--color always|never|auto`; `auto` colours only a terminal and honours `NO_COLOR`.
#[test]
fn color_follows_the_flag_and_no_color() {
    let run = |extra: &[&str], no_color: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_selinon"));
        cmd.args(["check", "--nodes", "nodes.yml", "--flows", "flows"])
            .args(extra)
            .current_dir(broken())
            .env_remove("SELINON_NODES")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        assert_exit(&out, 1);
        stderr(&out).contains('\x1b')
    };
    assert!(run(&["--color", "always"], None));
    assert!(
        run(&["--color=always"], Some("1")),
        "the flag wins over NO_COLOR"
    );
    assert!(!run(&["--color", "never"], None));
    assert!(!run(&["--no-color"], None));
    // Not a terminal (the output is piped here): no colour.
    assert!(!run(&[], None));
    assert!(!run(&["--color", "auto"], None));
    // On a terminal (`script` from util-linux gives the command one): colour, unless
    // `NO_COLOR` is set (to anything but the empty string).
    let on_tty = |no_color: Option<&str>| {
        let command = format!(
            "{} check --nodes nodes.yml --flows flows",
            env!("CARGO_BIN_EXE_selinon")
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &command, "/dev/null"])
            .current_dir(broken())
            .env_remove("SELINON_NODES")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("`script` (util-linux) runs");
        assert_exit(&out, 1);
        let text = stdout(&out);
        assert!(text.contains("max_retry"), "{text}");
        text.contains('\x1b')
    };
    assert!(on_tty(None));
    assert!(on_tty(Some("")));
    assert!(!on_tty(Some("1")));
    // A usage error follows `--color` too.
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["--color", "always", "check", "--bogus"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains('\x1b'), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["--color", "rainbow", "check"])
        .output()
        .unwrap();
    assert_exit(&out, 2);
}

/// Every output, on stdout and stderr, ends with a newline.
#[test]
fn every_output_ends_with_a_newline() {
    let dir = example_dir();
    let runs: Vec<Vec<&str>> = vec![
        EXAMPLE_ARGS.to_vec(),
        [EXAMPLE_ARGS, &["--format", "json"]].concat(),
        [EXAMPLE_ARGS, &["--list-task-queues"]].concat(),
        [
            EXAMPLE_ARGS,
            &["--format", "json", "--list-dispatcher-queues"],
        ]
        .concat(),
        vec!["check", "--nodes", "nope.yml", "--flows", "nope.yml"],
        vec![
            "check", "--nodes", "nope.yml", "--flows", "nope.yml", "--format", "json",
        ],
        vec!["--version"],
        vec!["check", "--bogus"],
    ];
    for args in &runs {
        let out = selinon(&dir, args);
        for (what, text) in [("stdout", stdout(&out)), ("stderr", stderr(&out))] {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{args:?}: {what} does not end with a newline: {text:?}"
            );
        }
    }
    let broken = broken();
    for format in ["human", "json"] {
        let out = selinon(
            &broken,
            &[
                "check",
                "--nodes",
                "nodes.yml",
                "--flows",
                "flows",
                "--format",
                format,
            ],
        );
        assert_exit(&out, 1);
        for text in [stdout(&out), stderr(&out)] {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{format}: {text:?}"
            );
        }
    }
}

#[test]
fn warnings_alone_exit_0() {
    let nodes =
        "tasks:\n  - name: A\n    import: app\n  - name: Unused\n    import: app\nflows: [f]\n";
    let flows = "flow-definitions:\n  - name: f\n    edges:\n      - from:\n        to: A\n";
    let dir = scratch("warnings", &[("nodes.yml", nodes), ("flows.yml", flows)]);
    let out = selinon(
        &dir,
        &["check", "--nodes", "nodes.yml", "--flows", "flows.yml"],
    );
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("warning: "), "{err}");
    assert!(err.contains(" --> nodes.yml:4:11"), "{err}");
    assert!(err.contains("0 errors, 1 warning"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = example_dir();
    for args in [
        &[][..],
        &["check"][..],
        &["check", "--nodes", "nodes.yml"][..],
        &["check", "--flows", "ingest.yml"][..],
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "ingest.yml",
            "--format",
            "xml",
        ][..],
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "ingest.yml",
            "--bogus",
        ][..],
        &["frobnicate"][..],
    ] {
        let out = selinon(&dir, args);
        assert_exit(&out, 2);
        assert!(!stderr(&out).is_empty(), "{args:?}: a usage message");
    }
    let out = selinon(&dir, &["check", "--help"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("--list-task-queues"));
}

#[test]
fn missing_and_unreadable_inputs_exit_1() {
    let dir = scratch(
        "inputs",
        &[
            ("nodes.yml", "tasks: [\n"),
            ("empty/readme.txt", "no yaml here\n"),
        ],
    );
    std::fs::write(dir.join("latin1.yml"), b"flow-definitions: caf\xe9\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--nodes", "nope.yml", "--flows", "also-nope.yml"],
            "nope.yml does not exist",
        ),
        (
            &["--nodes", "nodes.yml", "--flows", "empty"],
            "holds no `*.yml` or `*.yaml`",
        ),
        (
            &["--nodes", "nodes.yml", "--flows", "nodes.yml"],
            "malformed YAML",
        ),
        (
            &["--nodes", "nodes.yml", "--flows", "latin1.yml"],
            "--> latin1.yml:1:22",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["check"];
        full.extend_from_slice(args);
        let out = selinon(&dir, &full);
        assert_exit(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn queue_listings() {
    let mut args = EXAMPLE_ARGS.to_vec();
    args.push("--list-task-queues");
    let out = selinon(&example_dir(), &args);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "FetchRelease:celery",
            "ExtractMetadata:celery",
            "CheckLicense:celery",
            "ScanCode:celery",
            "FetchFromMirror:celery",
            "Report:reports",
        ]
    );

    let mut args = EXAMPLE_ARGS.to_vec();
    args.push("--list-dispatcher-queues");
    let out = selinon(&example_dir(), &args);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["ingest:ingest_flow", "analyse:celery"]
    );

    // `{VAR}` placeholders are listed as written: they are expanded when a worker starts.
    let nodes = NODES.replace("    max_retry: -1\n", "");
    let flows = FLOWS.replace("fieldLenLes", "argsFieldExist");
    let dir = scratch("queues", &[("nodes.yml", &nodes), ("flows.yml", &flows)]);
    let out = selinon(
        &dir,
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "flows.yml",
            "--list-task-queues",
            "--list-dispatcher-queues",
        ],
    );
    assert_exit(&out, 0);
    let listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        listed,
        ["Fetch:{PREFIX}_fetch", "Parse:celery", "main:main_v0"]
    );
    for line in &listed {
        let (name, queue) = line.split_once(':').expect("name:queue");
        assert!(!name.is_empty() && !queue.is_empty(), "{line}");
    }
}

#[test]
fn listings_are_not_printed_when_there_are_errors() {
    let out = selinon(
        &broken(),
        &[
            "check",
            "--nodes",
            "nodes.yml",
            "--flows",
            "flows",
            "--list-task-queues",
        ],
    );
    assert_exit(&out, 1);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn readme_main_command_works() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let prefix = "cargo run -p selinon-cli --bin selinon -- ";
    let line = readme
        .lines()
        .find(|l| l.starts_with(prefix))
        .expect("README.md shows the `selinon check` command");
    let args: Vec<&str> = line[prefix.len()..].split_whitespace().collect();
    let out = selinon(&root, &args);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("configuration OK"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn generate_check_fails_with_a_diff_when_the_committed_file_is_stale() {
    let dir = scratch(
        "generate",
        &[("system.yml", "tasks:\n  - {name: A, import: app.tasks}\nflows: [f]\nflow-definitions:\n  - name: f\n    edges:\n      - {from: , to: A}\n")],
    );
    let gen = |extra: &[&str]| {
        let mut args = vec!["generate", "--nodes", "system.yml", "--flows", "system.yml"];
        args.extend_from_slice(extra);
        selinon(&dir, &args)
    };
    let out = gen(&["-o", "flows.rs"]);
    assert_exit(&out, 0);
    let code = std::fs::read_to_string(dir.join("flows.rs")).unwrap();
    assert!(
        code.starts_with("// @generated by selinon-codegen"),
        "{code}"
    );
    assert_exit(&gen(&["--check", "flows.rs"]), 0);

    std::fs::write(
        dir.join("flows.rs"),
        code.replace("pub static SYSTEM", "pub static SYSTEM_OLD"),
    )
    .unwrap();
    let stale = gen(&["--check", "flows.rs"]);
    assert_exit(&stale, 1);
    assert!(
        stdout(&stale).contains("-pub static SYSTEM_OLD"),
        "{}",
        stdout(&stale)
    );
    assert!(
        stdout(&stale).contains("+pub static SYSTEM"),
        "{}",
        stdout(&stale)
    );
    assert!(
        stderr(&stale).contains("flows.rs is stale"),
        "{}",
        stderr(&stale)
    );
}

/// `global.migration_dir` is resolved beside the nodes file and its chain is embedded.
#[test]
fn generate_embeds_the_migration_chain() {
    let migration = r#"{"migration": {"f": {"translation": {"1": null}, "tainted_edges": {}, "tainting_nodes": {}}}, "tainted_flow_strategy": "FAIL"}"#;
    let dir = scratch(
        "migrations",
        &[
            ("config/system.yml", "tasks:\n  - {name: A, import: app.tasks}\nflows: [f]\nglobal:\n  migration_dir: migrations\nflow-definitions:\n  - name: f\n    edges:\n      - {from: , to: A}\n"),
            ("config/migrations/1.json", migration),
        ],
    );
    let out = selinon(
        &dir,
        &[
            "generate",
            "--nodes",
            "config/system.yml",
            "--flows",
            "config/system.yml",
        ],
    );
    assert_exit(&out, 0);
    let code = stdout(&out);
    assert!(
        code.contains(&format!("{migration:?}")),
        "1.json is not embedded:\n{code}"
    );
}

/// `plot`: DOT needs nothing; `--expand` draws the sub-flow `analyse` inside `ingest`, so only
/// `ingest` gets a file; SVG without Graphviz names the package to install.
#[test]
fn plot_expands_subflows_and_says_how_to_get_svg() {
    let out_dir = scratch("plot", &[]);
    let plot = |extra: &[&str], path: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_selinon"));
        cmd.args(["plot", "--nodes", "nodes.yml", "--flows", "ingest.yml"])
            .args(["--flows", "analyse.yml", "-o"])
            .arg(&out_dir)
            .args(extra)
            .current_dir(example_dir())
            .env_remove("SELINON_NODES");
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        cmd.output().unwrap()
    };
    let out = plot(&["--format", "dot"], None);
    assert_exit(&out, 0);
    for flow in ["ingest", "analyse"] {
        let dot = std::fs::read_to_string(out_dir.join(format!("{flow}.dot"))).unwrap();
        assert!(dot.contains("subgraph \"cluster_:legend\""), "{dot}");
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
    let out = plot(&["--format", "dot", "--expand"], None);
    assert_exit(&out, 0);
    let dot = std::fs::read_to_string(out_dir.join("ingest.dot")).unwrap();
    assert!(dot.contains("subgraph \"cluster_analyse\""), "{dot}");
    assert!(!out_dir.join("analyse.dot").exists());
    // Without Graphviz, the default format falls back to DOT and says so.
    std::fs::remove_file(out_dir.join("ingest.dot")).unwrap();
    let out = plot(&[], Some(""));
    assert_exit(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("install the `graphviz` package for SVG"),
        "{err}"
    );
    assert!(out_dir.join("ingest.dot").exists());
    let out = plot(&["--format", "svg"], Some(""));
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("the `graphviz` package"), "{err}");
    assert!(err.contains("--format dot"), "{err}");
}
