//! The generated code: pinned by snapshots, deterministic, and compiling without warnings for
//! every configuration of the corpus that upstream accepts.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

#[test]
fn features_snapshot() {
    let code = features().generate_string().unwrap();
    insta::assert_snapshot!("features", code);
}

#[test]
fn dinner_snapshot() {
    let c = accepted_configs()
        .into_iter()
        .find(|c| c.name == "selinon__selinon__example_dinner")
        .unwrap();
    let code = builder(&c, &c.flows).generate_string().unwrap();
    insta::assert_snapshot!("dinner", code);
}

#[test]
fn output_is_byte_identical_across_runs_and_file_orders() {
    for c in accepted_configs() {
        let first = builder(&c, &c.flows)
            .generate_string()
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let again = builder(&c, &c.flows).generate_string().unwrap();
        assert_eq!(first, again, "{}: two runs differ", c.name);
        let mut reversed = c.flows.clone();
        reversed.reverse();
        let shuffled = builder(&c, &reversed).generate_string().unwrap();
        assert_eq!(
            first, shuffled,
            "{}: the order of flow files changes the output",
            c.name
        );
    }
}

/// Writes one crate holding the generated code of every accepted corpus config (and the
/// feature config) next to scaffolded stubs, and runs clippy on it with warnings denied.
#[test]
fn generated_code_compiles_without_warnings() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generated-corpus");
    let src = root.join("src");
    write(
        &root.join("Cargo.toml"),
        &generated_cargo_toml("generated-corpus", ""),
    );
    let mut lib = String::from(
        "//! Generated code of the corpus, compiled by the codegen tests.\n#![deny(warnings)]\n",
    );
    for (i, (name, b)) in all_configs().into_iter().enumerate() {
        let module = format!("config_{i}");
        let generated = b
            .map_module("", format!("crate::{module}::app"))
            .load()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        write(&src.join(format!("{module}_flows.rs")), &generated.code());
        write(
            &src.join(format!("{module}_app.rs")),
            &selinon_codegen::scaffold::stubs(&generated.system),
        );
        lib.push_str(&config_module(i, &name));
    }
    write(&src.join("lib.rs"), &lib);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "clippy",
            "--quiet",
            "--all-targets",
            "--",
            "-D",
            "warnings",
            "-W",
            "clippy::all",
        ])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo clippy");
    assert!(
        out.status.success(),
        "the generated code does not compile cleanly:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
