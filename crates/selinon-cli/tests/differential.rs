//! Differential tests: generated code and the simulator agree, for every flow of every accepted
//! corpus configuration (and `tests/configs/features.yml`) under a default scenario and seeded
//! random ones, on the final status, the number of runs of each task (TASK_START events), the
//! number of starts of each sub-flow (FLOW_START events), and event for event on the trace.
//!
//! Side (a): one crate of generated code for all configurations, with the stubs of
//! `scaffold::harness_stubs` behaving as the scenario says (`support/differential_harness.rs`),
//! built once and run as one process that takes the runs on stdin. Side (b): the simulator
//! (`sim::system_spec`) in this process. Both run each flow with the same harness function (one
//! tokio thread, storages in memory, `flow_timeout`), so that the two sides differ only in what
//! is under test: emitted code and stubs, or the simulator's reading of the IR and its mocks.
//! The scenarios fail tasks (`fail`, `fail_times`), return results built from the conditions'
//! predicates (so that conditions go both ways), list `foreach` items, set custom predicates and
//! the flow arguments.
//!
//! What is compared, and why:
//! - Countdowns are left out on both sides (the simulator drops task and flow `retry_countdown`
//!   and `throttling`; the runner zeroes them in the generated system): a simulation shows what
//!   runs, not when.
//! - Trace events are compared in order, without ids (fresh on every run), storage names and the
//!   events of storage access (`STORAGE_*`, result caches): the simulator keeps results in one
//!   in-memory storage of its own, with no cache.
//! - A run counts everything that ran, also after the flow's end: `nowait` nodes and nodes
//!   abandoned by an eager failure run on, so both sides wait until their runtime is idle before
//!   counting. Counted that way, `nowait` nodes are deterministic too.
//! - Which pass sees which completion can depend on timing (e.g. an eager failure and a sibling's
//!   completion, or a `nowait` task and the flow's end). One runtime thread on each side makes
//!   both run the same interleaving, so the comparison stays exact for such flows; with several
//!   threads it could not be.
//! - A flow that does not end within the timeout (a cycle the scenario never leaves), or starts
//!   more than `harness::MAX_TASK_STARTS` tasks (a cycle through a join, whose runs grow
//!   exponentially), is endless, and must be so on both sides; how many times the cycle went
//!   round depends on speed, so then only the *set* of tasks run and sub-flows started is
//!   compared. The same holds when work started by a flow (a `nowait` sub-flow) still ran a
//!   timeout after the flow ended.

#[path = "../../selinon-codegen/tests/support/mod.rs"]
mod support;

#[path = "support/differential_harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use selinon_cli::sim::{self, RunCounts, Scenario, TaskBehaviour};
use selinon_codegen::ir::{Condition, Predicate, System};
use selinon_runtime::predicates::Reads;
use serde_json::{json, Value as Json};
use support::*;

/// How long a flow may run on either side before it counts as endless.
const TIMEOUT: Duration = Duration::from_secs(1);

/// Seeded random scenarios per configuration, besides the default one.
const SEEDED_SCENARIOS: u64 = 6;

/// The runner of side (a): takes `{"config", "flow", "args", "scenario", "timeout_ms"}` lines on
/// stdin and answers each with the summary of `harness::run`.
const RUNNER: &str = r#"//! Runs flows of the generated code for the differential tests: one JSON request per line on
//! stdin, one JSON summary per line on stdout.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use generated_differential::{harness, SYSTEMS};
use selinon_runtime::spec::{FlowSpec, MigrationDir, PropagateSpec, SystemSpec, TaskSpec};
use selinon_runtime::Json;

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// The system without countdowns (task and flow retries, throttling), as the simulator runs
/// it: what runs, not when.
fn timeless(system: &'static SystemSpec) -> &'static SystemSpec {
    let tasks: Vec<TaskSpec> = system
        .tasks
        .iter()
        .map(|t| TaskSpec {
            retry_countdown: Duration::ZERO,
            throttling: None,
            ..*t
        })
        .collect();
    let flows: Vec<&'static FlowSpec> = system
        .flows
        .iter()
        .map(|f| {
            let p = &f.propagate;
            leak(FlowSpec {
                retry_countdown: Duration::ZERO,
                throttling: None,
                propagate: PropagateSpec {
                    node_args: p.node_args,
                    parent: p.parent,
                    finished: p.finished,
                    compound_finished: p.compound_finished,
                    failures: p.failures,
                    compound_failures: p.compound_failures,
                },
                ..**f
            })
        })
        .collect();
    leak(SystemSpec {
        tasks: Box::leak(tasks.into_boxed_slice()),
        flows: Box::leak(flows.into_boxed_slice()),
        migration_dir: system.migration_dir.as_ref().map(|m| MigrationDir {
            path: m.path,
            files: m.files,
        }),
        ..*system
    })
}

fn main() {
    let mut systems: HashMap<String, &'static SystemSpec> = HashMap::new();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let request: Json = serde_json::from_str(&line).expect("a JSON request");
        let config = request["config"].as_str().expect("config");
        let system = *systems.entry(config.to_string()).or_insert_with(|| {
            let (_, system) = SYSTEMS
                .iter()
                .find(|(name, _)| *name == config)
                .expect("a known configuration");
            timeless(system)
        });
        harness::set_scenario(request["scenario"].clone());
        let summary = harness::run(
            system,
            request["flow"].as_str().expect("flow"),
            request["args"].clone(),
            Duration::from_millis(request["timeout_ms"].as_u64().expect("timeout_ms")),
        );
        let mut out = stdout.lock();
        writeln!(out, "{summary}").expect("stdout");
        out.flush().expect("stdout");
    }
}
"#;

/// Writes the crate of side (a) and builds its runner; returns the runner's path.
fn build_runner(systems: &[(String, selinon_codegen::Generated)]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("generated-differential");
    let src = root.join("src");
    write(
        &root.join("Cargo.toml"),
        &generated_cargo_toml(
            "generated-differential",
            "tokio = { version = \"1\", features = [\"rt\", \"time\"] }\n",
        ),
    );
    let mut lib = String::from(
        "//! Generated code of the corpus with scripted stubs, run by the differential tests.\n\
         #![deny(warnings)]\n\n/// The stubs' behaviour.\npub mod harness;\n\n",
    );
    let mut table = String::from(
        "/// Every system, by configuration name.\npub static SYSTEMS: &[(&str, &selinon_runtime::SystemSpec)] = &[\n",
    );
    for (i, (name, generated)) in systems.iter().enumerate() {
        let module = format!("config_{i}");
        write(&src.join(format!("{module}_flows.rs")), &generated.code());
        write(
            &src.join(format!("{module}_app.rs")),
            &selinon_codegen::scaffold::harness_stubs(&generated.system, "crate::harness"),
        );
        lib.push_str(&config_module(i, name));
        table.push_str(&format!("    ({name:?}, &{module}::flows::SYSTEM),\n"));
    }
    table.push_str("];\n");
    lib.push_str(&table);
    write(&src.join("lib.rs"), &lib);
    write(
        &src.join("harness.rs"),
        include_str!("support/differential_harness.rs"),
    );
    write(&src.join("main.rs"), RUNNER);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "the generated crate does not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("target/debug/generated-differential")
}

/// A small seeded generator (splitmix64): the scenarios are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every condition of the system (edges and fallbacks).
fn conditions(system: &System) -> Vec<&Condition> {
    let mut out = Vec::new();
    for flow in &system.flows {
        out.extend(flow.edges.iter().map(|e| &e.condition));
        for set in &flow.failures {
            out.extend(set.alternatives.iter().map(|a| &a.condition));
        }
    }
    out
}

/// A value making the predicate true, most of the time (the rest is left to chance: other
/// leaves of the condition, or other predicates on the same field).
fn satisfying(p: &Predicate) -> Json {
    let arg = |name: &str| {
        p.args
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(value) = arg("value") {
        return value;
    }
    if let Some(length) = arg("length").and_then(|l| l.as_u64()) {
        return Json::Array(vec![json!(1); usize::try_from(length).unwrap_or(0)]);
    }
    let bare = p
        .name
        .trim_start_matches("args")
        .trim_start_matches("field");
    match bare {
        "Bool" => json!(true),
        "Int" => json!(1),
        "Float" => json!(1.5),
        "Str" => json!("x"),
        "List" => json!([]),
        "Dict" => json!({}),
        "None" => Json::Null,
        "UrlScheme" | "UrlNetloc" | "UrlPath" => json!("https://example.com/path"),
        _ => json!(true),
    }
}

/// Sets `value` at the path a predicate's `key` names (a string or a list of strings).
fn set_path(target: &mut Json, key: &Json, value: Json) {
    let path: Vec<String> = match key {
        Json::String(s) => vec![s.clone()],
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect(),
        _ => return,
    };
    let mut at = target;
    for (i, seg) in path.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let map = at.as_object_mut().expect("an object");
        if i + 1 == path.len() {
            map.insert(seg.clone(), value);
            return;
        }
        at = map.entry(seg.clone()).or_insert_with(|| json!({}));
    }
}

/// A random object over the fields the given predicates read.
fn random_object(rng: &mut Rng, predicates: &[&Predicate]) -> Json {
    let mut value = json!({});
    for p in predicates {
        if let Some((_, key)) = p.args.iter().find(|(k, _)| k == "key") {
            if rng.chance(60) {
                set_path(&mut value, key, satisfying(p));
            }
        }
    }
    value
}

/// A seeded scenario over the tasks, `foreach` functions and custom predicates of the
/// system, with flow arguments; results are built to make conditions true or false.
fn random_scenario(system: &System, seed: u64) -> (Scenario, Json) {
    let mut rng = Rng(seed);
    let conds = conditions(system);
    let predicates: Vec<&Predicate> = conds.iter().flat_map(|c| c.predicates()).collect();
    let mut scenario = Scenario::default();
    for task in &system.tasks {
        let reading: Vec<&Predicate> = predicates
            .iter()
            .copied()
            .filter(|p| {
                p.builtin && p.reads == Reads::Result && p.node.as_ref() == Some(&task.name)
            })
            .collect();
        let mut b = TaskBehaviour::default();
        match rng.below(100) {
            0..=9 => b.fail = true,
            10..=19 => b.fail_times = 1 + u32::try_from(rng.below(2)).unwrap_or(0),
            _ => {}
        }
        if rng.chance(25) {
            // A few runs, then the last one repeating: cycles over the task come to an end
            // when the last result turns their conditions false.
            b.results = (0..1 + rng.below(3))
                .map(|_| random_object(&mut rng, &reading))
                .chain(std::iter::once(json!({})))
                .collect();
        } else if !reading.is_empty() || rng.chance(30) {
            b.result = Some(random_object(&mut rng, &reading));
        }
        if b != TaskBehaviour::default() {
            scenario.tasks.insert(task.name.clone(), b);
        }
    }
    for flow in &system.flows {
        for edge in &flow.edges {
            if let Some(fe) = &edge.foreach {
                let items = (0..rng.below(4)).map(|i| json!({ "item": i })).collect();
                scenario.foreach.insert(fe.function.name.clone(), items);
            }
        }
    }
    for p in predicates.iter().filter(|p| !p.builtin) {
        let value = rng.chance(50);
        scenario.predicates.insert(p.name.clone(), value);
    }
    let on_args: Vec<&Predicate> = predicates
        .iter()
        .copied()
        .filter(|p| p.builtin && p.reads == Reads::NodeArgs)
        .collect();
    let args = random_object(&mut rng, &on_args);
    (scenario, args)
}

/// The scenario as the harness reads it.
fn scenario_json(s: &Scenario) -> Json {
    let tasks: serde_json::Map<String, Json> = s
        .tasks
        .iter()
        .map(|(name, b)| {
            let mut m = serde_json::Map::new();
            if let Some(r) = &b.result {
                m.insert("result".into(), r.clone());
            }
            if !b.results.is_empty() {
                m.insert("results".into(), Json::Array(b.results.clone()));
            }
            m.insert("fail".into(), Json::Bool(b.fail));
            m.insert("fail_times".into(), json!(b.fail_times));
            (name.clone(), Json::Object(m))
        })
        .collect();
    json!({"tasks": tasks, "foreach": s.foreach, "predicates": s.predicates})
}

/// Whether two summaries agree, by the rules of the module documentation.
fn agree(generated: &Json, simulated: &Json) -> bool {
    if generated["status"] != simulated["status"] {
        return false;
    }
    let exact = generated["status"] != "endless"
        && generated["settled"] == true
        && simulated["settled"] == true;
    if exact {
        return generated["runs"] == simulated["runs"]
            && generated["flows"] == simulated["flows"]
            && generated["events"] == simulated["events"];
    }
    let keys = |v: &Json| -> BTreeSet<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    keys(&generated["runs"]) == keys(&simulated["runs"])
        && keys(&generated["flows"]) == keys(&simulated["flows"])
}

fn without_events(summary: &Json) -> Json {
    let mut summary = summary.clone();
    if let Some(map) = summary.as_object_mut() {
        map.remove("events");
    }
    summary
}

/// Where two event sequences part, with the events before.
fn first_difference(generated: &Json, simulated: &Json) -> String {
    let empty = Vec::new();
    let g = generated.as_array().unwrap_or(&empty);
    let s = simulated.as_array().unwrap_or(&empty);
    let Some(i) = (0..g.len().max(s.len())).find(|&i| g.get(i) != s.get(i)) else {
        return String::new();
    };
    let show = |v: Option<&Json>| v.map_or_else(|| "(none)".to_string(), Json::to_string);
    let before: Vec<String> = g[i.saturating_sub(3)..i]
        .iter()
        .map(Json::to_string)
        .collect();
    format!(
        "\n  events part at #{i}, after {}\n    generated: {}\n    simulated: {}",
        before.join(", "),
        show(g.get(i)),
        show(s.get(i))
    )
}

struct Case {
    config: usize,
    scenario: usize,
    flow: String,
    args: Json,
}

#[test]
fn generated_code_and_simulator_agree() {
    let started = Instant::now();
    let configs: Vec<(String, selinon_codegen::Generated)> = all_configs()
        .into_iter()
        .enumerate()
        .map(|(i, (name, b))| {
            let generated = b
                .map_module("", format!("crate::config_{i}::app"))
                .load()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, generated)
        })
        .collect();
    let runner = build_runner(&configs);
    let built = started.elapsed();

    // Per configuration: the default scenario, then seeded ones.
    let scenarios: Vec<Vec<(Scenario, Json)>> = configs
        .iter()
        .enumerate()
        .map(|(i, (_, g))| {
            let mut list = vec![(Scenario::default(), json!({}))];
            list.extend(
                (0..SEEDED_SCENARIOS)
                    .map(|s| random_scenario(&g.system, 1 + s + 1000 * u64::try_from(i).unwrap())),
            );
            list
        })
        .collect();
    let mut cases = Vec::new();
    for (c, (_, g)) in configs.iter().enumerate() {
        for (s, (_, args)) in scenarios[c].iter().enumerate() {
            for flow in &g.system.flows {
                cases.push(Case {
                    config: c,
                    scenario: s,
                    flow: flow.name.clone(),
                    args: args.clone(),
                });
            }
        }
    }

    // Side (a), in its own process, while this one simulates.
    let mut child = Command::new(&runner)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the runner");
    let requests: Vec<String> = cases
        .iter()
        .map(|case| {
            json!({
                "config": configs[case.config].0,
                "flow": case.flow,
                "args": case.args,
                "scenario": scenario_json(&scenarios[case.config][case.scenario].0),
                "timeout_ms": TIMEOUT.as_millis(),
            })
            .to_string()
        })
        .collect();
    // For replaying by hand: `generated-differential < requests.jsonl`.
    write(
        &runner.with_file_name("requests.jsonl"),
        &(requests.join("\n") + "\n"),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        for r in requests {
            writeln!(stdin, "{r}").expect("write a request");
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        stdout
            .lines()
            .map(|l| serde_json::from_str::<Json>(&l.expect("a line")).expect("a JSON summary"))
            .collect::<Vec<Json>>()
    });

    // Side (b): one simulated system per configuration and scenario, fresh counts per flow.
    let mut simulated = Vec::with_capacity(cases.len());
    let mut specs = BTreeMap::new();
    for case in &cases {
        let (spec, counts) = specs
            .entry((case.config, case.scenario))
            .or_insert_with(|| {
                let counts = Arc::new(Mutex::new(RunCounts::default()));
                let scenario = Arc::new(scenarios[case.config][case.scenario].0.clone());
                let spec =
                    sim::system_spec(&configs[case.config].1.system, scenario, counts.clone());
                (spec, counts)
            });
        *counts.lock().unwrap() = RunCounts::default();
        simulated.push(harness::run(spec, &case.flow, case.args.clone(), TIMEOUT));
    }
    feeder.join().expect("the feeder");
    let generated = reader.join().expect("the reader");
    let status = child.wait().expect("the runner ends");
    assert!(status.success(), "the runner failed: {status}");
    assert_eq!(
        generated.len(),
        cases.len(),
        "the runner answered every run"
    );

    let mut disagreements = Vec::new();
    for ((case, g), s) in cases.iter().zip(&generated).zip(&simulated) {
        if !agree(g, s) {
            disagreements.push(format!(
                "config {} flow `{}` scenario #{} {}\n  args {}\n  generated: {}\n  simulated: {}{}",
                configs[case.config].0,
                case.flow,
                case.scenario,
                scenario_json(&scenarios[case.config][case.scenario].0),
                case.args,
                without_events(g),
                without_events(s),
                first_difference(&g["events"], &s["events"]),
            ));
        }
    }
    let mut by_status = BTreeMap::<&str, usize>::new();
    let mut tasks_run = BTreeSet::new();
    // The most task starts of a flow that ended: far below `harness::MAX_TASK_STARTS`.
    let mut largest = 0;
    for (case, g) in cases.iter().zip(&generated) {
        let status = g["status"].as_str().unwrap_or("?");
        *by_status.entry(status).or_default() += 1;
        if let Some(runs) = g["runs"].as_object() {
            tasks_run.extend(runs.keys().map(|task| (case.config, task.clone())));
            if status != "endless" {
                largest = largest.max(runs.values().filter_map(Json::as_u64).sum::<u64>());
            }
        }
    }
    let tasks: usize = configs.iter().map(|(_, g)| g.system.tasks.len()).sum();
    eprintln!(
        "{} runs over {} configurations in {:?} (build {:?}): {by_status:?}; {} of {tasks} tasks \
         ran; at most {largest} task starts in a flow that ended",
        cases.len(),
        configs.len(),
        started.elapsed(),
        built,
        tasks_run.len(),
    );
    assert!(
        disagreements.is_empty(),
        "{} of {} runs disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
}
