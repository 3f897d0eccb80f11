//! `output_schema`: the generator reads each task's schema, relative to the folder of the
//! nodes file, and embeds it; a schema that is missing, is not JSON or is not a JSON schema is
//! an error at the task's `output_schema` (file:line:col), with how to fix it.

use std::path::{Path, PathBuf};

use selinon_codegen::{check_files, Builder, Checked, GenerateError};

const FLOWS: &str = "flow-definitions:\n  - name: f\n    edges:\n      - from:\n        to: A\n";

fn nodes(schema: &str) -> String {
    format!(
        "tasks:\n  - name: A\n    import: app.tasks\n    output_schema: {schema}\n  - name: B\n    import: app.tasks\nflows: [f]\n"
    )
}

/// A fresh folder holding `config/nodes.yml`, `config/flows.yml` and the given files (paths
/// relative to `config/`).
fn project(name: &str, schema: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("output-schema")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("nodes.yml"), nodes(schema)).unwrap();
    std::fs::write(config.join("flows.yml"), FLOWS).unwrap();
    for (path, text) in files {
        let file = config.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    dir
}

fn check(dir: &Path) -> Checked {
    check_files(
        dir.join("config/nodes.yml"),
        &[dir.join("config/flows.yml")],
    )
}

/// The one error: its place (`nodes.yml:line:col`), message and help.
fn the_error(checked: &Checked) -> (String, String, String) {
    let errors: Vec<_> = checked.diagnostics.errors().collect();
    assert_eq!(
        errors.len(),
        1,
        "{}",
        checked.diagnostics.render(&checked.sources, false)
    );
    assert!(checked.system.is_none(), "no IR when a schema is wrong");
    let d = errors[0];
    let span = d.span.expect("the error has a place");
    let file = &checked.sources.get(span.file).path;
    (
        format!(
            "{}:{}:{}",
            file.file_name().unwrap().to_string_lossy(),
            span.line,
            span.column
        ),
        d.message.clone(),
        d.help.clone().unwrap_or_default(),
    )
}

#[test]
fn a_schema_relative_to_the_nodes_file_is_embedded() {
    let schema = "{\n  \"type\": \"object\",\n  \"required\": [\"id\"]\n}\n";
    let dir = project("ok", "schemas/a.json", &[("schemas/a.json", schema)]);
    let checked = check(&dir);
    assert!(!checked.diagnostics.has_errors());
    let system = checked.system.unwrap();
    let a = system.task("A").unwrap().output_schema.as_ref().unwrap();
    assert_eq!(a.path, "schemas/a.json");
    assert_eq!(
        a.json.as_deref(),
        Some(r#"{"required":["id"],"type":"object"}"#)
    );
    assert!(system.task("B").unwrap().output_schema.is_none());

    // Through the builder (build.rs, the macros, `selinon generate`): embedded, watched and
    // part of the content hash.
    let builder = Builder::new()
        .base_dir(&dir)
        .nodes("config/nodes.yml")
        .flows("config/flows.yml");
    let generated = builder.load().unwrap();
    let code = generated.code();
    assert!(
        code.contains(
            "output_schema: Some(OutputSchema {\n                path: \"schemas/a.json\",\n                json: r#\"{\"required\":[\"id\"],\"type\":\"object\"}\"#,\n            }),"
        ),
        "{code}"
    );
    assert!(code.contains("use selinon_runtime::spec::{"), "{code}");
    assert!(generated.files.contains(&dir.join("config/schemas/a.json")));
    std::fs::write(dir.join("config/schemas/a.json"), r#"{"type": "object"}"#).unwrap();
    let changed = builder.load().unwrap();
    assert_ne!(generated.content_hash, changed.content_hash);
}

#[test]
fn a_missing_schema_file_is_an_error_at_its_key() {
    let dir = project("missing", "schemas/gone.json", &[]);
    let (place, message, help) = the_error(&check(&dir));
    assert_eq!(place, "nodes.yml:4:20");
    assert!(
        message.starts_with("the output schema of task `A` cannot be read: `schemas/gone.json`: "),
        "{message}"
    );
    assert!(
        help.contains("relative to the folder of the nodes file")
            && help.contains("config/schemas/gone.json")
            && help.contains("fix the path or create the file"),
        "{help}"
    );

    // Code generation stops, naming the YAML file, line and column.
    let err = Builder::new()
        .base_dir(&dir)
        .nodes("config/nodes.yml")
        .flows("config/flows.yml")
        .generate_string()
        .unwrap_err();
    let GenerateError::Invalid { rendered, .. } = &err else {
        panic!("{err}");
    };
    assert!(rendered.contains("--> config/nodes.yml:4:20"), "{rendered}");
    assert!(
        rendered.contains("output_schema: schemas/gone.json"),
        "{rendered}"
    );
}

#[test]
fn a_path_written_from_the_current_directory_gets_a_hint() {
    // Upstream workers read the path from their current directory (a test's is its crate's
    // folder): the help says so and how to write it.
    let dir = project("cwd", "tests/configs/schemas/parse.json", &[]);
    let (_, _, help) = the_error(&check(&dir));
    assert!(
        help.contains(
            "`tests/configs/schemas/parse.json` exists relative to the current directory"
        ),
        "{help}"
    );
}

#[test]
fn a_schema_that_is_not_json_is_an_error_naming_both_files() {
    let dir = project(
        "not_json",
        "bad.json",
        &[("bad.json", "{\n  \"type\": \"object\",\n}\n")],
    );
    let (place, message, help) = the_error(&check(&dir));
    assert_eq!(place, "nodes.yml:4:20");
    assert!(
        message.starts_with(
            "the output schema of task `A` (`bad.json`) is not JSON: trailing comma at "
        ),
        "{message}"
    );
    assert!(message.ends_with("config/bad.json:3:1"), "{message}");
    assert!(help.contains("fix the file"), "{help}");
}

#[test]
fn a_json_file_that_is_not_a_schema_is_an_error() {
    let dir = project(
        "not_schema",
        "wrong.json",
        &[(
            "wrong.json",
            r#"{"properties": {"id": {"type": "whole number"}}}"#,
        )],
    );
    let (place, message, _) = the_error(&check(&dir));
    assert_eq!(place, "nodes.yml:4:20");
    assert!(
        message.contains("(`wrong.json`) is not a valid JSON schema: "),
        "{message}"
    );
    assert!(message.contains("/properties/id/type"), "{message}");
}

#[test]
fn a_reference_outside_the_schema_is_an_error() {
    let dir = project(
        "external_ref",
        "ref.json",
        &[(
            "ref.json",
            r#"{"properties": {"id": {"$ref": "other.json#/id"}}}"#,
        )],
    );
    let (_, message, help) = the_error(&check(&dir));
    assert!(
        message.contains("(`ref.json`) is not a valid JSON schema: "),
        "{message}"
    );
    assert!(help.contains("`$ref`"), "{help}");
}

#[test]
fn every_task_naming_a_broken_file_gets_the_error() {
    let dir = project("shared", "gone.json", &[]);
    let text = nodes("gone.json").replace(
        "  - name: B\n    import: app.tasks\n",
        "  - name: B\n    import: app.tasks\n    output_schema: gone.json\n",
    );
    std::fs::write(dir.join("config/nodes.yml"), text).unwrap();
    let checked = check(&dir);
    let lines: Vec<u32> = checked
        .diagnostics
        .errors()
        .map(|d| d.span.unwrap().line)
        .collect();
    assert_eq!(lines, [4, 7]);
}
