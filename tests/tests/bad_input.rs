//! Bad input: malformed YAML, wrong types, empty files and directories, bytes that are not UTF-8,
//! missing files, odd top levels, deep nesting, tabs. Each gives an error that names the file and,
//! where there is one, the line — and nothing panics, neither loading nor rendering.

use std::path::{Path, PathBuf};

use selinon_codegen::{check_files, check_strs, Checked};

/// Checks a single file holding both the nodes and the flow definitions.
fn check_single(yaml: &str) -> Checked {
    let checked = check_strs(("system.yml", yaml), &[("system.yml", yaml)]);
    render_all(&checked);
    checked
}

/// Renders the diagnostics both ways: rendering must not panic on any input either.
fn render_all(checked: &Checked) -> String {
    let _ = checked.diagnostics.to_json(&checked.sources);
    checked.diagnostics.render(&checked.sources, false)
}

/// Asserts an error containing `needle` in the file shown as `file` (suffix) at `line`.
#[track_caller]
fn assert_error_at(checked: &Checked, file: &str, line: u32, needle: &str) {
    let found = checked.diagnostics.errors().any(|d| {
        d.message.contains(needle)
            && d.span.is_some_and(|s| {
                s.line == line && checked.sources.get(s.file).display.ends_with(file)
            })
    });
    assert!(
        found,
        "expected an error containing {needle:?} at {file}:{line}; got:\n{}",
        render_all(checked)
    );
    assert!(checked.system.is_none(), "a config with errors has no IR");
}

/// Asserts an error without a place whose message contains every needle.
#[track_caller]
fn assert_error_without_place(checked: &Checked, needles: &[&str]) {
    let found = checked
        .diagnostics
        .errors()
        .any(|d| needles.iter().all(|n| d.message.contains(n)));
    assert!(
        found,
        "expected an error containing {needles:?}; got:\n{}",
        render_all(checked)
    );
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bad_input")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

const NODES: &str = "tasks:\n  - name: A\n    import: app.tasks\nflows: [f]\n";
const FLOWS: &str = "flow-definitions:\n  - name: f\n    edges:\n      - from:\n        to: A\n";

#[test]
fn the_good_config_used_below_is_clean() {
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", FLOWS)]);
    assert!(checked.diagnostics.is_empty(), "{}", render_all(&checked));
    assert!(checked.system.is_some());
}

// ---- malformed YAML --------------------------------------------------------------------------

#[test]
fn unclosed_flow_sequence() {
    let checked = check_single("tasks:\n  - name: A\n    import: [x, y}\nflows: [f]\n");
    assert_error_at(&checked, "system.yml", 3, "malformed YAML");
    // Unclosed: the parser finds out on the next line.
    let checked = check_single("tasks:\n  - name: A\n    import: [x\nflows: [f]\n");
    assert_error_at(&checked, "system.yml", 4, "malformed YAML");
}

#[test]
fn bad_indentation() {
    let yaml = "tasks:\n  - name: A\n    import: app\n   bad: indent\nflows: [f]\n";
    let checked = check_single(yaml);
    assert_error_at(&checked, "system.yml", 4, "malformed YAML");
}

#[test]
fn unterminated_quote() {
    let yaml = "tasks:\n  - name: \"A\n    import: app\nflows: [f]\n";
    let checked = check_single(yaml);
    assert_error_at(&checked, "system.yml", 2, "malformed YAML");
}

#[test]
fn malformed_flow_file_is_reported_in_that_file() {
    let flows = "flow-definitions:\n  - name: f\n    edges:\n      - from: [A\n        to: A\n";
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", flows)]);
    render_all(&checked);
    let err = checked
        .diagnostics
        .errors()
        .find(|d| d.message.contains("malformed YAML"))
        .expect("a YAML error");
    let span = err.span.expect("with a place");
    assert_eq!(checked.sources.get(span.file).display, "flows.yml");
    assert!((4..=5).contains(&span.line), "line {}", span.line);
}

#[test]
fn tabs_in_indentation() {
    let checked = check_single("tasks:\n\t- name: A\n");
    assert_error_at(&checked, "system.yml", 2, "tabs");
    let flows = "flow-definitions:\n  - name: f\n    edges:\n\t  - from:\n";
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", flows)]);
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 4, "tabs");
}

#[test]
fn unknown_alias() {
    let checked = check_single("tasks: *nothing\n");
    assert_error_at(&checked, "system.yml", 1, "unknown anchor");
}

// ---- wrong types -----------------------------------------------------------------------------

#[test]
fn tasks_is_a_number() {
    let checked = check_single("tasks: 5\nflows: [f]\n");
    assert_error_at(&checked, "system.yml", 1, "`tasks` must be a list");
}

#[test]
fn negative_max_retry() {
    let yaml = "tasks:\n  - name: A\n    import: app\n    max_retry: -1\nflows: [f]\n\
                flow-definitions:\n  - name: f\n    edges:\n      - from:\n        to: A\n";
    let checked = check_single(yaml);
    assert_error_at(&checked, "system.yml", 4, "`max_retry` of task `A`");
}

#[test]
fn edges_is_a_mapping() {
    let yaml = "tasks:\n  - name: A\n    import: app\nflows: [f]\n\
                flow-definitions:\n  - name: f\n    edges: {}\n";
    let checked = check_single(yaml);
    assert_error_at(
        &checked,
        "system.yml",
        7,
        "`edges` of flow `f` must be a list",
    );
}

#[test]
fn more_wrong_types_each_at_its_line() {
    let yaml = "\
tasks:
  - name: [A]
    import: app
  - name: B
    import: app
    retry_countdown: soon
    storage_readonly: perhaps
flows: [f]
flow-definitions:
  - name: f
    edges:
      - from:
        to: B
      - from: B
        to: {B: C}
    nowait: 5
    max_retry: x
";
    let checked = check_single(yaml);
    assert_error_at(&checked, "system.yml", 2, "name");
    assert_error_at(&checked, "system.yml", 6, "retry_countdown");
    assert_error_at(&checked, "system.yml", 7, "storage_readonly");
    assert_error_at(&checked, "system.yml", 15, "`to`");
    assert_error_at(&checked, "system.yml", 16, "`nowait`");
    assert_error_at(&checked, "system.yml", 17, "`max_retry` of flow `f`");
}

#[test]
fn flow_definitions_is_a_string() {
    let checked = check_strs(
        ("nodes.yml", NODES),
        &[("flows.yml", "flow-definitions: f\n")],
    );
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 1, "`flow-definitions`");
}

// ---- odd files -------------------------------------------------------------------------------

#[test]
fn empty_files() {
    let checked = check_strs(("nodes.yml", ""), &[("flows.yml", FLOWS)]);
    render_all(&checked);
    assert_error_at(&checked, "nodes.yml", 1, "empty");
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", "")]);
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 1, "empty");
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", "# only a comment\n")]);
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 1, "empty");
}

#[test]
fn a_document_marker_alone() {
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", "---\n")]);
    render_all(&checked);
    // The null document sits after the marker, at the end of the file's one line.
    assert_error_at(
        &checked,
        "flows.yml",
        1,
        "a flow file must be a mapping, found null",
    );
}

#[test]
fn top_level_list() {
    let checked = check_strs(("nodes.yml", "- a\n- b\n"), &[("flows.yml", FLOWS)]);
    render_all(&checked);
    assert_error_at(&checked, "nodes.yml", 1, "must be a mapping, found a list");
    let checked = check_strs(("nodes.yml", NODES), &[("flows.yml", "- a\n")]);
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 1, "must be a mapping, found a list");
}

#[test]
fn top_level_scalar() {
    let checked = check_strs(("nodes.yml", "just text\n"), &[("flows.yml", FLOWS)]);
    render_all(&checked);
    assert_error_at(&checked, "nodes.yml", 1, "must be a mapping");
}

#[test]
fn deeply_nested_flow_collections() {
    for depth in [200, 100_000] {
        let yaml = format!("tasks: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let checked = check_single(&yaml);
        let on_line_1 = checked.diagnostics.errors().any(|d| {
            (d.message.contains("deeper") || d.message.contains("recursion limit"))
                && d.span.is_some_and(|s| s.line == 1)
        });
        assert!(on_line_1, "depth {depth}:\n{}", render_all(&checked));
    }
}

#[test]
fn deeply_nested_block_mappings() {
    let mut yaml = String::from("tasks:\n");
    for depth in 1..=400 {
        yaml.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
    }
    let checked = check_single(&yaml);
    // The limit is reported where it is crossed, well before the end of the file.
    let err = checked
        .diagnostics
        .errors()
        .find(|d| d.message.contains("deep"))
        .unwrap_or_else(|| panic!("no depth error:\n{}", render_all(&checked)));
    let line = err.span.expect("with a place").line;
    assert!((2..=400).contains(&line), "line {line}");
    assert!(checked.system.is_none());
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..30 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        yaml.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let checked = check_single(&yaml);
    assert!(checked.diagnostics.has_errors(), "{}", render_all(&checked));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

// ---- files on disk ---------------------------------------------------------------------------

#[test]
fn non_utf8_bytes_point_at_the_line() {
    let dir = scratch("non_utf8");
    let nodes = write(
        &dir,
        "nodes.yml",
        b"tasks:\n  - name: A\n    import: \"\xff\xfe\"\nflows: [f]\n",
    );
    let flows = write(&dir, "flows.yml", FLOWS);
    let checked = check_files(&nodes, &[flows]);
    render_all(&checked);
    assert_error_at(&checked, "nodes.yml", 3, "UTF-8");
}

#[test]
fn latin1_flow_file() {
    let dir = scratch("latin1");
    let nodes = write(&dir, "nodes.yml", NODES);
    let flows = write(
        &dir,
        "flows.yml",
        b"# caf\xe9\nflow-definitions:\n  - name: f\n    edges:\n      - from:\n        to: A\n",
    );
    let checked = check_files(&nodes, &[flows]);
    render_all(&checked);
    assert_error_at(&checked, "flows.yml", 1, "UTF-8");
}

#[test]
fn missing_files_are_named() {
    let dir = scratch("missing");
    let flows = write(&dir, "flows.yml", FLOWS);
    let checked = check_files(dir.join("nope.yml"), std::slice::from_ref(&flows));
    render_all(&checked);
    assert_error_without_place(&checked, &["nope.yml", "does not exist"]);

    let nodes = write(&dir, "nodes.yml", NODES);
    let checked = check_files(&nodes, &[dir.join("gone.yml")]);
    render_all(&checked);
    assert_error_without_place(&checked, &["gone.yml", "does not exist"]);
}

#[test]
fn directory_without_yaml() {
    let dir = scratch("no_yaml");
    let nodes = write(&dir, "nodes.yml", NODES);
    let empty = dir.join("flows");
    std::fs::create_dir_all(&empty).unwrap();
    write(&empty, "README.txt", "not a flow\n");
    let checked = check_files(&nodes, &[empty]);
    render_all(&checked);
    assert_error_without_place(&checked, &["flows", "no `*.yml` or `*.yaml`"]);
    assert!(checked.system.is_none());
}

#[test]
fn directory_of_flows_is_read() {
    let dir = scratch("flow_dir");
    let nodes = write(&dir, "nodes.yml", NODES);
    let flows = dir.join("flows");
    std::fs::create_dir_all(flows.join("nested")).unwrap();
    write(&flows, "f.yaml", FLOWS);
    write(&flows, "notes.txt", "ignored\n");
    let checked = check_files(&nodes, &[flows]);
    assert!(
        !checked.diagnostics.has_errors(),
        "{}",
        render_all(&checked)
    );
}

#[test]
fn nodes_path_is_a_directory() {
    let dir = scratch("nodes_dir");
    let flows = write(&dir, "flows.yml", FLOWS);
    let checked = check_files(&dir, &[flows]);
    render_all(&checked);
    assert!(checked.diagnostics.has_errors(), "{}", render_all(&checked));
    assert!(checked.system.is_none());
}

#[test]
fn no_flow_files_at_all() {
    let dir = scratch("no_flows");
    let nodes = write(&dir, "nodes.yml", NODES);
    let checked = check_files(&nodes, &[]);
    render_all(&checked);
    assert!(checked.diagnostics.has_errors(), "{}", render_all(&checked));
}
