//! Store + retrieve per storage adapter, on the servers on 127.0.0.1.
//!
//! `cargo run --release --example storage_bench -- [--ops N] [--repeat R]` prints one JSON line
//! per adapter: the median (of R runs) time of one `store` followed by one `retrieve` of a
//! small result, done N times one after another, and the min–max over the runs.

use std::time::Instant;

use selinon_runtime::storage::{Filesystem, InMemoryStorage, PostgreSql, Redis};
use selinon_runtime::{json, DataStorage, Json, StorageFromConfig};

async fn run(adapter: &dyn DataStorage, ops: usize) -> f64 {
    let result = json!({"name": "serde", "version": "1.0.228", "files": 42, "ok": true});
    let args = json!({"name": "serde"});
    let start = Instant::now();
    for i in 0..ops {
        let id = format!("bench-{}-{i}", std::process::id());
        adapter
            .store(&args, "bench", "Task", &id, &result)
            .await
            .expect("store");
        let back: Json = adapter
            .retrieve("bench", "Task", &id)
            .await
            .expect("retrieve");
        assert_eq!(back, result);
    }
    start.elapsed().as_secs_f64() * 1e6 / ops as f64
}

#[tokio::main]
async fn main() {
    let mut ops = 2000usize;
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ops" => ops = args.next().and_then(|v| v.parse().ok()).expect("--ops N"),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat R")
            }
            other => panic!("unknown argument {other}; use --ops N --repeat R"),
        }
    }
    let dir = std::env::temp_dir().join(format!("selinon-storage-bench-{}", std::process::id()));
    let adapters: Vec<(&str, Box<dyn DataStorage>)> = vec![
        (
            "memory",
            Box::new(InMemoryStorage::from_config(&json!({})).unwrap()),
        ),
        (
            "filesystem",
            Box::new(Filesystem::from_config(&json!({"path": dir.to_str().unwrap()})).unwrap()),
        ),
        (
            "redis",
            Box::new(
                Redis::from_config(&json!({"host": "127.0.0.1", "port": 6379, "db": 4})).unwrap(),
            ),
        ),
        (
            "postgresql",
            Box::new(
                PostgreSql::from_config(
                    &json!({"connection_string": "postgresql://postgres@127.0.0.1:5432/test"}),
                )
                .unwrap(),
            ),
        ),
    ];
    for (name, adapter) in adapters {
        adapter
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut runs: Vec<f64> = Vec::new();
        for _ in 0..repeat {
            runs.push(run(adapter.as_ref(), ops).await);
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "{}",
            json!({
                "adapter": name,
                "ops": ops,
                "store_plus_retrieve_us_median": (runs[runs.len() / 2] * 10.0).round() / 10.0,
                "min_max_us": [(runs[0] * 10.0).round() / 10.0, (runs[runs.len() - 1] * 10.0).round() / 10.0],
            })
        );
        let _ = adapter.disconnect().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
