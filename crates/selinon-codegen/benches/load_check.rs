//! Load + check (+ lowering to the IR) of the largest corpus configuration:
//! fabric8-analytics-worker at f9d0b3c (`nodes.yml` and its `flows/` directory).
//!
//! The corpus is `$SELINON_CORPUS_DIR`, else `shared/corpus` beside the checkout.
//! Run: `cargo bench -p selinon-codegen --bench load_check`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

const CONFIG: &str = "fabric8-analytics__fabric8-analytics-worker__2018-04-16_f9d0b3c";

/// The corpus (`selinon_testkit::corpus_dir`).
fn corpus() -> PathBuf {
    selinon_testkit::corpus_dir().expect("the benchmark needs the corpus")
}

fn load_check(c: &mut Criterion) {
    let dir = corpus().join(CONFIG);
    assert!(dir.is_dir(), "{} is missing from the corpus", dir.display());
    let nodes = dir.join("nodes.yml");
    let flows = vec![dir.join("flows")];

    let checked = selinon_codegen::check_files(&nodes, &flows);
    assert!(
        !checked.diagnostics.has_errors(),
        "{}",
        checked.diagnostics.render(&checked.sources, false)
    );
    let system = checked
        .system
        .as_ref()
        .expect("the config lowers to the IR");
    let lines: usize = checked
        .sources
        .files()
        .map(|(_, f)| f.text.lines().count())
        .sum();
    println!(
        "{CONFIG}: {} files, {lines} lines of YAML, {} tasks, {} flows, {} storages, {} edges, {} warnings",
        checked.sources.files().count(),
        system.tasks.len(),
        system.flows.len(),
        system.storages.len(),
        system.flows.iter().map(|f| f.edges.len()).sum::<usize>(),
        checked.diagnostics.warning_count(),
    );

    c.bench_function("load+check f9d0b3c (from files)", |b| {
        b.iter(|| selinon_codegen::check_files(&nodes, &flows))
    });

    // The same without the file system: parsing, model, checks and lowering only.
    let texts: Vec<(String, String)> = checked
        .sources
        .files()
        .map(|(_, f)| (f.path.display().to_string(), f.text.clone()))
        .collect();
    let (nodes_text, flow_texts) = texts.split_first().expect("the nodes file comes first");
    let flow_refs: Vec<(&str, &str)> = flow_texts
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    c.bench_function("load+check f9d0b3c (in memory)", |b| {
        b.iter(|| {
            let checked = selinon_codegen::check_strs(
                (nodes_text.0.as_str(), nodes_text.1.as_str()),
                &flow_refs,
            );
            assert!(checked.system.is_some());
            checked
        })
    });
}

criterion_group!(benches, load_check);
criterion_main!(benches);
