//! `selinon migrate`: numbered migration files written from the corpus' old and new
//! configurations (upstream's `test_migrations_{old,new}_*`); what a migration holds is tested
//! in `selinon-codegen` (`tests/migrate.rs`).

#[path = "../../selinon-codegen/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

use selinon_codegen::migrate::{MigrationFile, TaintedFlowStrategy};

fn case_dir(which: &str, case: &str) -> PathBuf {
    let dir =
        support::corpus_dir().join(format!("selinon__selinon__test_migrations_{which}_{case}"));
    if !dir.is_dir() && which == "new" && case == "no_change" {
        // Upstream's no_change case has one configuration for both versions.
        return case_dir("old", case);
    }
    dir
}

#[test]
fn cli_writes_numbered_files() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |case: &str| {
        let (old, new) = (case_dir("old", case), case_dir("new", case));
        Command::new(env!("CARGO_BIN_EXE_selinon"))
            .arg("migrate")
            .arg("--old-nodes")
            .arg(old.join("nodes.yaml"))
            .arg("--old-flows")
            .arg(old.join("flows"))
            .arg("--new-nodes")
            .arg(new.join("nodes.yaml"))
            .arg("--new-flows")
            .arg(new.join("flows"))
            .arg("-o")
            .arg(&dir)
            .args(["--tainted-flow-strategy", "fail"])
            .output()
            .unwrap()
    };
    let first = run("add_from");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout)
        .trim()
        .ends_with("1.json"));
    let second = run("remove_edge");
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout)
        .trim()
        .ends_with("2.json"));
    let file: MigrationFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("2.json")).unwrap()).unwrap();
    assert_eq!(file.tainted_flow_strategy, TaintedFlowStrategy::Fail);
    assert!(file.meta.is_some(), "_meta is written");
    let none = run("no_change");
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no change"));
    assert!(!dir.join("3.json").exists());
}
