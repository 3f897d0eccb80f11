//! Code generation time (load, check, lower, emit, format) for the largest corpus config.
//! Also prints the generated file's line count.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use selinon_codegen::Builder;

/// The corpus (`selinon_testkit::corpus_dir`).
fn corpus() -> PathBuf {
    selinon_testkit::corpus_dir().expect("the benchmark needs the corpus")
}

fn generate(c: &mut Criterion) {
    let dir = corpus().join("fabric8-analytics__fabric8-analytics-worker__2018-04-16_f9d0b3c");
    let builder = Builder::new()
        .base_dir(&dir)
        .nodes("nodes.yml")
        .flows("flows");
    let code = builder.generate_string().expect("the config generates");
    println!(
        "generated {} lines for {}",
        code.lines().count(),
        dir.display()
    );
    c.bench_function("generate f9d0b3c (46 tasks, 22 flows)", |b| {
        b.iter(|| builder.generate_string().expect("generates"))
    });
}

criterion_group!(benches, generate);
criterion_main!(benches);
