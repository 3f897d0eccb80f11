//! What `cargo build` shows for a crate whose `build.rs` calls `Builder::generate()`: a broken
//! configuration fails the build with one `error:` line naming the first error's file:line:col
//! and the rustc-style report once (under `--- stderr`); YAML warnings are cargo warnings.
//!
//! The throwaway crate builds in the target directory the `selinon new` test uses, so the
//! generator's dependencies are compiled once for both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BROKEN: &str = "\
tasks:
  - name: Fetch
    import: app.tasks
  - name: Unused
    import: app.tasks
flows: [ingest]
flow-definitions:
  - name: ingest
    edges:
      - from:
        to: Fetch
      - from: Fetch
        to: Fecth
";

fn cargo_build(dir: &Path) -> Output {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("new-project-target");
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--color", "never"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_TERM_COLOR")
        .output()
        .unwrap()
}

#[test]
fn cargo_shows_the_report_once_and_one_error_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("build-script-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"myflows\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [build-dependencies]\nselinon-codegen = {{ path = {:?} }}\n\n[workspace]\n",
            root.join("crates/selinon-codegen").to_string_lossy()
        ),
    )
    .unwrap();
    // The crate itself does not use the code: the test is about the build script.
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        dir.join("build.rs"),
        "fn main() {\n    let generated = selinon_codegen::Builder::new()\n        \
         .nodes(\"config/nodes.yml\")\n        .flows(\"config/nodes.yml\")\n        .generate();\n    \
         if generated.is_err() {\n        std::process::exit(1);\n    }\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("config/nodes.yml"), BROKEN).unwrap();

    let out = cargo_build(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: myflows@0.1.0: "))
        .collect();
    assert_eq!(
        errors,
        [
            "error: myflows@0.1.0: the Selinon configuration has 1 error \
             (config/nodes.yml:13:13: unknown node `Fecth` in edge #1 of flow `ingest`); \
             the full report is below, under `--- stderr`"
        ],
        "{stderr}"
    );
    // The report, once, after cargo's `--- stderr` (cargo indents the script's output).
    let (_, report) = stderr
        .split_once("--- stderr")
        .unwrap_or_else(|| panic!("no `--- stderr` section: {stderr}"));
    assert!(
        report.contains("error: unknown node `Fecth` in edge #1 of flow `ingest`"),
        "{stderr}"
    );
    assert!(report.contains("help: did you mean `Fetch`?"), "{stderr}");
    assert!(report.contains("1 error, 1 warning"), "{stderr}");
    assert_eq!(
        stderr.matches("--> config/nodes.yml:13:13").count(),
        1,
        "{stderr}"
    );
    // Neither errors nor warnings are repeated as cargo warnings: the report has them all.
    assert!(
        !stderr.contains("warning: myflows@0.1.0"),
        "no cargo warnings when the report is shown: {stderr}"
    );
    // `--- stdout` holds the one error instruction (no rerun-if-changed noise: a failed build
    // script runs again anyway).
    let stdout_section = stderr
        .split_once("--- stdout")
        .map(|(_, s)| s.split("--- stderr").next().unwrap_or(""))
        .unwrap_or("");
    assert!(!stdout_section.contains("rerun-if-changed"), "{stderr}");

    // Fixed, with the warning left: the build passes and the warning is one cargo warning line.
    std::fs::write(
        dir.join("config/nodes.yml"),
        BROKEN.replace("      - from: Fetch\n        to: Fecth\n", ""),
    )
    .unwrap();
    let out = cargo_build(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: myflows@0.1.0: "))
        .collect();
    assert_eq!(
        warnings,
        ["warning: myflows@0.1.0: config/nodes.yml:4:11: task `Unused` is not used in any flow"],
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
