//! Counterpart of upstream `test/migrations/test_create.py`: migrations computed from the old
//! and new configurations in the corpus (`selinon__selinon__test_migrations_{old,new}_*`),
//! compared with upstream's reference outputs (`test/data/migrations/output/*.json`, quoted
//! below) the way upstream compares them: translations equal, the same tainted edges and the
//! same tainting node sets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use selinon_codegen::migrate::{self, MigrateError, MigrationFile, TaintedFlowStrategy};
use serde_json::{json, Value as Json};

mod support;

use support::corpus_dir;

fn case_dir(which: &str, case: &str) -> PathBuf {
    let dir = corpus_dir().join(format!("selinon__selinon__test_migrations_{which}_{case}"));
    if !dir.is_dir() && which == "new" && case == "no_change" {
        // Upstream's no_change case has one configuration for both versions.
        return case_dir("old", case);
    }
    dir
}

fn system(which: &str, case: &str) -> selinon_codegen::ir::System {
    let dir = case_dir(which, case);
    assert!(dir.is_dir(), "the corpus is missing {}", dir.display());
    let checked = selinon_codegen::check_files(dir.join("nodes.yaml"), &[dir.join("flows")]);
    checked.system.unwrap_or_else(|| {
        panic!(
            "{case}/{which}: {}",
            checked.diagnostics.render(&checked.sources, false)
        )
    })
}

fn compute(case: &str, strategy: TaintedFlowStrategy) -> Result<MigrationFile, MigrateError> {
    migrate::compute(&system("old", case), &system("new", case), strategy)
}

/// Upstream's comparison: per flow, translation equal, tainted edge keys equal, tainting
/// node sets equal; and the strategy.
fn assert_matches(ours: &MigrationFile, reference: Json) {
    let ours = serde_json::to_value(ours).unwrap();
    assert_eq!(
        ours["tainted_flow_strategy"],
        reference["tainted_flow_strategy"]
    );
    let flows = |m: &Json| -> BTreeSet<String> {
        m["migration"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(flows(&ours), flows(&reference));
    for flow in flows(&reference) {
        let (o, r) = (&ours["migration"][&flow], &reference["migration"][&flow]);
        assert_eq!(o["translation"], r["translation"], "translation of {flow}");
        let keys =
            |v: &Json| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(
            keys(&o["tainted_edges"]),
            keys(&r["tainted_edges"]),
            "tainted edges of {flow}"
        );
        let sets = |v: &Json| -> BTreeMap<String, BTreeSet<String>> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let set = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap().to_string())
                        .collect();
                    (k.clone(), set)
                })
                .collect()
        };
        assert_eq!(
            sets(&o["tainting_nodes"]),
            sets(&r["tainting_nodes"]),
            "tainting nodes of {flow}"
        );
        for (idx, edge) in o["tainted_edges"].as_object().unwrap() {
            let reference_edge = &r["tainted_edges"][idx];
            for key in ["from", "to"] {
                let set = |v: &Json| -> BTreeSet<String> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.to_string())
                        .collect()
                };
                assert_eq!(
                    set(&edge[key]),
                    set(&reference_edge[key]),
                    "{flow} edge {idx} {key}"
                );
            }
            assert_eq!(edge["condition_str"], reference_edge["condition_str"]);
        }
    }
}

fn always() -> Json {
    json!({"name": "alwaysTrue"})
}

// test_no_change, test_add_to, test_remove_to, test_add_flow (upstream's add_to/remove_to
// inputs do not change the edges)
#[test]
fn unchanged_edges_need_no_migration() {
    for case in ["no_change", "add_to", "remove_to", "add_flow"] {
        let err = compute(case, TaintedFlowStrategy::Ignore).unwrap_err();
        assert!(matches!(err, MigrateError::NotNeeded), "{case}: {err}");
    }
}

// test_add_from
#[test]
fn add_from() {
    let ours = compute("add_from", TaintedFlowStrategy::Ignore).unwrap();
    assert_matches(
        &ours,
        json!({"migration": {"flow1": {
            "tainted_edges": {"1": {"condition_str": always(), "from": ["Task2"], "to": ["Task3"]}},
            "tainting_nodes": {"1": ["Task2", "Task1"]},
            "translation": {"1": null}}},
         "tainted_flow_strategy": "IGNORE"}),
    );
}

// test_remove_from
#[test]
fn remove_from() {
    let ours = compute("remove_from", TaintedFlowStrategy::Ignore).unwrap();
    assert_matches(
        &ours,
        json!({"migration": {"flow1": {
            "tainted_edges": {"1": {"condition_str": always(), "from": ["Task2", "Task1"], "to": ["Task2"]}},
            "tainting_nodes": {"1": ["Task1"]},
            "translation": {"1": null}}},
         "tainted_flow_strategy": "IGNORE"}),
    );
}

// test_remove_edge: edges removed, later indices shifted.
#[test]
fn remove_edge() {
    let ours = compute("remove_edge", TaintedFlowStrategy::Retry).unwrap();
    let e = |from: &[&str], to: &[&str]| json!({"condition_str": always(), "from": from, "to": to});
    assert_matches(
        &ours,
        json!({"migration": {
            "flow1": {"tainted_edges": {"0": e(&[], &["Task1"]), "1": e(&["Task1"], &["Task2"])},
                      "tainting_nodes": {}, "translation": {"0": null, "1": null, "2": 1}},
            "flow2": {"tainted_edges": {"1": e(&["Task3"], &["Task4"])},
                      "tainting_nodes": {}, "translation": {"1": null}},
            "flow3": {"tainted_edges": {"0": e(&[], &["Task1"]), "1": e(&["Task1"], &["Task2"])},
                      "tainting_nodes": {}, "translation": {"0": null, "1": null, "2": 1}},
            "flow4": {"tainted_edges": {"0": e(&[], &["Task1"]), "1": e(&["Task1"], &["Task2"]),
                                        "2": e(&["Task2"], &["Task3"]), "3": e(&["Task3"], &["Task4"])},
                      "tainting_nodes": {"1": ["Task3"]},
                      "translation": {"0": null, "1": null, "2": null, "3": null}},
            "flow5": {"tainted_edges": {"1": e(&["Task1"], &["Task2"]), "2": e(&["Task2"], &["Task3"])},
                      "tainting_nodes": {"1": ["Task1"]}, "translation": {"1": null, "2": null, "3": 2}},
            "flow6": {"tainted_edges": {"1": e(&[], &["Task2"]), "2": e(&["Task1", "Task2"], &["Task3"])},
                      "tainting_nodes": {"1": ["Task1"]}, "translation": {"1": null, "2": null}},
            "flow7": {"tainted_edges": {"2": e(&["Task1", "Task2"], &["Task3"])},
                      "tainting_nodes": {}, "translation": {"2": null}}},
         "tainted_flow_strategy": "RETRY"}),
    );
}

/// Existing migration directories keep working: the demo worker's file reads as ours.
#[test]
fn upstream_migration_files_read() {
    let dir = corpus_dir().join("selinon__demo-worker/migration_dir");
    let chain = migrate::read_chain(&dir).unwrap();
    assert_eq!(chain.len(), 1);
    let file: MigrationFile = serde_json::from_str(&chain[0].1).unwrap();
    assert_eq!(file.tainted_flow_strategy, TaintedFlowStrategy::Retry);
    assert_eq!(
        file.migration["travis_build_logs"].tainting_nodes["1"],
        ["TravisLogTxt"]
    );
}

fn inline_system(yaml: &str) -> selinon_codegen::ir::System {
    let checked = selinon_codegen::check_strs(("system.yml", yaml), &[("system.yml", yaml)]);
    checked
        .system
        .unwrap_or_else(|| panic!("{}", checked.diagnostics.render(&checked.sources, false)))
}

/// A tainted edge is written as the YAML has it, as upstream writes it: `to` in the written
/// order (not sorted) and the condition without the `node` the YAML leaves implicit.
#[test]
fn tainted_edge_written_as_the_yaml_has_it() {
    let nodes = "tasks:\n  - name: PlaceOrder\n    import: shop.tasks\n    storage: Orders\n  - name: CheckStock\n    import: shop.tasks\n  - name: AuditLog\n    import: shop.tasks\nstorages:\n  - name: Orders\n    import: selinon.storages.memory\n    classname: InMemoryStorage\n    configuration:\n      echo: false\nflows: [order]\n";
    let old = format!(
        "{nodes}flow-definitions:\n  - name: order\n    edges:\n      - from:\n        to: PlaceOrder\n      - from: PlaceOrder\n        to: [CheckStock, AuditLog]\n        condition:\n          name: fieldExist\n          args:\n            key: items\n"
    );
    let new = format!(
        "{nodes}flow-definitions:\n  - name: order\n    edges:\n      - from:\n        to: PlaceOrder\n      - from: PlaceOrder\n        to: CheckStock\n"
    );
    let file = migrate::compute(
        &inline_system(&old),
        &inline_system(&new),
        TaintedFlowStrategy::Ignore,
    )
    .unwrap();
    let written = serde_json::to_value(&file).unwrap();
    assert_eq!(
        written["migration"]["order"]["tainted_edges"]["1"],
        json!({
            "from": ["PlaceOrder"],
            "to": ["CheckStock", "AuditLog"],
            "condition_str": {"name": "fieldExist", "args": {"key": "items"}},
        })
    );
}
