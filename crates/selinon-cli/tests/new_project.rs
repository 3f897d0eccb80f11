//! `selinon new` scaffolds a project that builds and runs without edits.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A user with only the `selinon` binary: the project is made outside this repository without
/// `--selinon-path`, and builds offline from the sources the binary was built from.
#[test]
fn scaffolded_project_builds_and_runs_a_flow() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The system's temporary folder: outside the repository (and its target dir).
    let dir = std::env::temp_dir().join(format!("selinon-new-project-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["new"])
        .arg(&dir)
        .args([
            "--nodes",
            "examples/flows/nodes.yml",
            "--flows",
            "examples/flows/",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src/main.rs",
        "src/app.rs",
        "config/nodes.yml",
        "config/flows/ingest.yml",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not created");
    }
    // Path dependencies on these sources, with a comment saying where they come from.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sources = std::fs::canonicalize(&root).unwrap();
    for krate in ["selinon-runtime", "selinon-codegen"] {
        let path = sources.join("crates").join(krate);
        assert!(
            manifest.contains(&format!("{krate} = {{ path = {:?}", path.to_string_lossy())),
            "{manifest}"
        );
    }
    assert!(
        manifest
            .contains("# Selinon for Rust from the sources the `selinon` command was built from"),
        "{manifest}"
    );
    // A second `new` into the same directory refuses to overwrite it.
    let again = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .arg("new")
        .arg(&dir)
        .args([
            "--nodes",
            "examples/flows/nodes.yml",
            "--flows",
            "examples/flows/",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));

    // The workspace's target dir (CARGO_TARGET_TMPDIR is its `tmp`) and its dev profile, so
    // the dependencies the workspace built are not built again; offline: nothing is downloaded.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .to_path_buf();
    let run = |args: &[&str]| {
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["run", "--quiet", "--offline"])
            .args(["--config", "profile.dev.debug=\"line-tables-only\""])
            .args(["--config", "profile.dev.package.\"*\".debug=false"])
            .arg("--")
            .args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap()
    };
    let out = run(&["ingest", r#"{"name": "serde"}"#]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: serde_json::Value =
        serde_json::from_str(&stdout).expect("the final state as JSON");
    assert_eq!(outcome["status"], "finished");
    assert!(
        outcome["finished_nodes"]["FetchRelease"].is_array(),
        "{outcome:#}"
    );

    // A failing task: the run says why.
    let app = dir.join("src/app.rs");
    let stubs = std::fs::read_to_string(&app).unwrap();
    assert!(stubs.contains("Ok(json!({}))"), "{stubs}");
    let failing = stubs.replace(
        "Ok(json!({}))",
        r#"Err(selinon_runtime::TaskError::failed("disk full"))"#,
    );
    std::fs::write(&app, failing).unwrap();
    let out = run(&["ingest", r#"{"name": "serde"}"#]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("flow ingest failed: "), "{stderr}");
    assert!(stderr.contains(": disk full"), "{stderr}");
    // Logged without configuration: the task failure is a warning line in the task's span.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" WARN task{flow_name=ingest ")
                && l.contains(" failed event=\"TASK_FAILURE\" error=disk full")),
        "{stderr}"
    );
    let outcome: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the final state as JSON");
    assert_eq!(outcome["status"], "failed");
    assert!(
        outcome["failure_reasons"]
            .as_object()
            .is_some_and(|reasons| reasons.values().all(|r| r == "disk full")),
        "{outcome:#}"
    );

    let usage = run(&[]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "no flow name is a usage error"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The runtime features a configuration's built-in storages need are enabled in the
/// scaffolded `Cargo.toml` (without them, the generated code does not compile).
#[test]
fn scaffolded_project_enables_the_runtime_features_of_its_storages() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("new-project-storages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let nodes = tmp.join("nodes.yml");
    std::fs::write(
        &nodes,
        "tasks:\n  - {name: A, import: app.tasks, storage: Cache}\n  - {name: B, import: app.tasks, storage: Db}\n\
         storages:\n  - {name: Cache, import: selinon.storages.redis, classname: Redis, configuration: {host: localhost}}\n  \
         - {name: Db, import: selinon.storages.postgresql, classname: PostgreSQL, configuration: {connection_string: 'postgresql://x'}}\n\
         flows: [f]\nflow-definitions:\n  - name: f\n    edges:\n      - {from: , to: A}\n      - {from: A, to: B}\n",
    )
    .unwrap();
    let dir = tmp.join("project");
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .arg("new")
        .arg(&dir)
        .arg("--nodes")
        .arg(&nodes)
        .arg("--flows")
        .arg(&nodes)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let runtime = manifest
        .lines()
        .find(|l| l.starts_with("selinon-runtime"))
        .expect("a selinon-runtime dependency");
    assert!(
        runtime.ends_with(r#"features = ["postgres", "redis"] }"#),
        "{runtime}"
    );
}
