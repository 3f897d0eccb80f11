//! Benchmark of the in-process runtime: flows/s and tasks/s for N flows started at once, and the
//! time from a task's end to its successor's start (hop), for the shapes of upstream's harness.
//!
//! `cargo run --release --example local_bench -- [--flows N] [--repeat R]` prints one JSON line
//! per shape with the median of R runs (and min–max).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

mod bench {
    pub mod tasks {
        use selinon_runtime::{Task, TaskContext, TaskResult};
        use serde::{Deserialize, Serialize};

        /// What a benchmark flow is started with (upstream's harness passes `{"i": i}`).
        #[derive(Clone, Copy, Debug, Serialize, Deserialize)]
        pub struct Item {
            pub i: u64,
        }

        /// What every task returns (typed, so decoding and encoding are part of the figures).
        #[derive(Debug, Serialize, Deserialize)]
        pub struct Done {
            pub ok: bool,
        }

        /// Does nothing; when timing hops, records when it started and ended.
        #[derive(Default)]
        pub struct Noop;

        impl Task for Noop {
            type Args = Item;
            type Output = Done;

            async fn run(&self, ctx: &TaskContext, _args: Item) -> TaskResult<Done> {
                let start = std::time::Instant::now();
                let result = Done { ok: true };
                if crate::TIMING.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut times = crate::TIMES.lock().unwrap_or_else(|e| e.into_inner());
                    times.insert(
                        (ctx.dispatcher_id.clone(), ctx.task_name.clone()),
                        (start, std::time::Instant::now()),
                    );
                }
                Ok(result)
            }
        }
    }
}

mod flows {
    selinon_macros::include_flows!("bench/bench.yml", "bench/bench.yml");
}

static TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
type Times = HashMap<(String, String), (Instant, Instant)>;
static TIMES: std::sync::LazyLock<Mutex<Times>> = std::sync::LazyLock::new(Default::default);

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Hops of one flow: successor start − predecessor end, along the shape's edges.
fn hops(flow: &str, id: &str, times: &Times, out: &mut Vec<f64>) {
    let t = |n: &str| times.get(&(id.to_string(), n.to_string())).copied();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if flow == "chain10" {
        for i in 1..10 {
            pairs.push((format!("T{i}"), format!("T{}", i + 1)));
        }
    } else {
        for i in 1..=10 {
            pairs.push(("F0".into(), format!("F{i}")));
        }
        // The join starts after its last source ends.
        let last = (1..=10)
            .filter_map(|i| t(&format!("F{i}")))
            .map(|(_, e)| e)
            .max();
        if let (Some(last), Some((start, _))) = (last, t("FJoin")) {
            out.push(start.duration_since(last).as_secs_f64() * 1e3);
        }
    }
    for (a, b) in pairs {
        if let (Some((_, end)), Some((start, _))) = (t(&a), t(&b)) {
            out.push(start.duration_since(end).as_secs_f64() * 1e3);
        }
    }
}

#[tokio::main]
async fn main() {
    let mut n = 2000usize;
    let mut repeat = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--flows" => n = args.next().and_then(|v| v.parse().ok()).expect("--flows N"),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat R")
            }
            other => panic!("unknown argument {other}; use --flows N --repeat R"),
        }
    }
    for (flow, tasks_per_flow) in [
        (flows::chain10::FLOW.untyped(), 10.0),
        (flows::fanout::FLOW.untyped(), 12.0),
    ] {
        let mut rates = Vec::new();
        for _ in 0..repeat {
            let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
            let t0 = Instant::now();
            let handles: Vec<_> = (0..n)
                .map(|i| runtime.run(&flow, bench::tasks::Item { i: i as u64 }))
                .collect();
            for h in handles {
                assert!(h.await.expect("runs").is_finished());
            }
            rates.push(n as f64 / t0.elapsed().as_secs_f64());
        }
        // Hops: one flow at a time, so a hop is the engine's own latency.
        TIMING.store(true, std::sync::atomic::Ordering::Relaxed);
        let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
        let mut hop_ms = Vec::new();
        let mut latency = Vec::new();
        for i in 0..200 {
            let t0 = Instant::now();
            let outcome = runtime
                .run(&flow, bench::tasks::Item { i: i as u64 })
                .await
                .expect("runs");
            latency.push(t0.elapsed().as_secs_f64() * 1e3);
            let times = TIMES.lock().unwrap_or_else(|e| e.into_inner());
            hops(flow.name, &outcome.flow_id, &times, &mut hop_ms);
        }
        TIMING.store(false, std::sync::atomic::Ordering::Relaxed);
        TIMES.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let (flows_per_s, lo, hi) = median(rates);
        println!(
            "{}",
            selinon_runtime::json!({
                "shape": flow.name,
                "flows": n,
                "runs": repeat,
                "flows_per_s": flows_per_s.round(),
                "flows_per_s_min_max": [lo.round(), hi.round()],
                "tasks_per_s": (flows_per_s * tasks_per_flow).round(),
                "single_flow_latency_ms_p50": percentile(latency, 0.5),
                "hop_p50_ms": percentile(hop_ms.clone(), 0.5),
                "hop_p99_ms": percentile(hop_ms, 0.99),
            })
        );
    }
}
