//! Benchmark of the in-process runtime: flows/s and tasks/s for N flows started at once, and the
//! time from a task's end to its successor's start (hop), for the shapes of upstream's harness.
//!
//! `cargo run --release --example local_bench -- [--flows N] [--repeat R]` prints one JSON line
//! per shape with the median of R runs (and min–max). The `foreach` shape (a sub-flow whose
//! `foreach` edge starts `--width W` instances of a task, default 100, then a join) runs about
//! as many tasks as N chains of ten: it shows how a pass grows with the size of its flow.
//! `--shape chain10,fanout,foreach` picks shapes; `--no-latency` skips the one-at-a-time runs
//! (for instruction counts under callgrind).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

mod bench {
    pub mod tasks {
        use selinon_runtime::{Task, TaskContext, TaskResult};

        include!("bench/types.rs");

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
    let mut width = 100u64;
    let mut shapes: Option<Vec<String>> = None;
    let mut latency_runs = true;
    let mut args = std::env::args().skip(1);
    let usage = "use --flows N --repeat R --width W --shape chain10,fanout,foreach --no-latency";
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().unwrap_or_else(|| panic!("{what}; {usage}"));
        match a.as_str() {
            "--flows" => n = value("--flows N").parse().expect("--flows N"),
            "--repeat" => repeat = value("--repeat R").parse().expect("--repeat R"),
            "--width" => width = value("--width W").parse().expect("--width W"),
            "--shape" => shapes = Some(value("--shape S").split(',').map(str::to_string).collect()),
            "--no-latency" => latency_runs = false,
            other => panic!("unknown argument {other}; {usage}"),
        }
    }
    let all = [
        (flows::chain10::FLOW.untyped(), 10u64),
        (flows::fanout::FLOW.untyped(), 12),
        // foreach_fan: Split + `width` Work; then Join in the parent.
        (flows::foreach::FLOW.untyped(), width + 2),
    ];
    for (flow, tasks_per_flow) in all {
        if shapes
            .as_ref()
            .is_some_and(|s| !s.iter().any(|s| s == flow.name))
        {
            continue;
        }
        let foreach = flow.name == "foreach";
        // The foreach shape runs about as many tasks as `--flows` chains of ten (at least two flows).
        let n = if foreach {
            (n as u64 * 10).div_ceil(tasks_per_flow).max(2) as usize
        } else {
            n
        };
        let item = |i: usize| bench::tasks::Item {
            i: i as u64,
            width: if foreach { width } else { 0 },
        };
        let mut rates = Vec::new();
        for _ in 0..repeat {
            let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
            let t0 = Instant::now();
            let handles: Vec<_> = (0..n).map(|i| runtime.run(&flow, item(i))).collect();
            for h in handles {
                let outcome = h.await.expect("runs");
                assert!(outcome.is_finished());
                if foreach {
                    assert_eq!(outcome.finished("Join").len(), 1);
                }
            }
            rates.push(n as f64 / t0.elapsed().as_secs_f64());
        }
        // Hops: one flow at a time, so a hop is the engine's own latency (none for foreach,
        // whose tasks run in a sub-flow).
        TIMING.store(!foreach, std::sync::atomic::Ordering::Relaxed);
        let runtime = selinon_runtime::Runtime::new(&flows::SYSTEM);
        let mut hop_ms = Vec::new();
        let mut latency = Vec::new();
        let singles = match (latency_runs, foreach) {
            (false, _) => 0,
            (true, false) => 200,
            (true, true) => 5,
        };
        for i in 0..singles {
            let t0 = Instant::now();
            let outcome = runtime.run(&flow, item(i)).await.expect("runs");
            latency.push(t0.elapsed().as_secs_f64() * 1e3);
            let times = TIMES.lock().unwrap_or_else(|e| e.into_inner());
            hops(flow.name, &outcome.flow_id, &times, &mut hop_ms);
        }
        TIMING.store(false, std::sync::atomic::Ordering::Relaxed);
        TIMES.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let (flows_per_s, lo, hi) = median(rates);
        let p = |v: &[f64], q: f64| (!v.is_empty()).then(|| percentile(v.to_vec(), q));
        let mut line = selinon_runtime::json!({
            "shape": flow.name,
            "flows": n,
            "runs": repeat,
            "flows_per_s": flows_per_s.round(),
            "flows_per_s_min_max": [lo.round(), hi.round()],
            "tasks_per_s": (flows_per_s * tasks_per_flow as f64).round(),
            "single_flow_latency_ms_p50": p(&latency, 0.5),
            "hop_p50_ms": p(&hop_ms, 0.5),
            "hop_p99_ms": p(&hop_ms, 0.99),
        });
        if foreach {
            line["width"] = width.into();
        }
        println!("{line}");
    }
}
