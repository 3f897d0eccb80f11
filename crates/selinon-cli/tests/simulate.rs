//! `selinon simulate`: a flow run on the engine with mocked tasks, checked black-box through its
//! last output line.

use std::path::{Path, PathBuf};
use std::process::Command;

const SYSTEM: &str = "\
tasks:
  - {name: Charge, import: shop.tasks, max_retry: 2}
  - {name: Refund, import: shop.tasks}
  - {name: Fetch, import: shop.tasks, storage: S}
  - {name: Item, import: shop.tasks}
storages:
  - {name: S, import: shop.storages, configuration: {a: 1}}
flows: [order, items]
flow-definitions:
  - name: order
    edges:
      - {from: , to: [Fetch, Charge]}
      - from: Fetch
        to: items
        condition: {name: fieldEqual, args: {key: ok, value: true}}
    failures:
      - {nodes: Charge, fallback: Refund}
  - name: items
    edges:
      - from:
        to: Item
        foreach: {function: each_item, import: shop.foreach}
";

fn simulate(name: &str, scenario: Option<&str>) -> (i32, serde_json::Value) {
    simulate_with(name, scenario, &[])
}

fn simulate_with(name: &str, scenario: Option<&str>, extra: &[&str]) -> (i32, serde_json::Value) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("simulate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), SYSTEM).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_selinon"));
    cmd.args([
        "simulate",
        "-n",
        "system.yml",
        "-f",
        "system.yml",
        "--flow",
        "order",
    ])
    .current_dir(&dir);
    if let Some(s) = scenario {
        std::fs::write(dir.join("scenario.yml"), s).unwrap();
        cmd.args(["--scenario", "scenario.yml"]);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
    }
    let _ = Path::new(&dir);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&last)
            .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr))),
    )
}

#[test]
fn tasks_not_named_return_empty_results() {
    let (code, summary) = simulate("default", None);
    assert_eq!(code, 0);
    assert_eq!(summary["status"], "finished");
    assert_eq!(
        summary["runs"],
        serde_json::json!({"Charge": 1, "Fetch": 1})
    );
    assert_eq!(summary["flows"], serde_json::json!({}));
}

#[test]
fn a_failing_task_is_retried_then_its_fallback_runs() {
    let (code, summary) = simulate("fail", Some("Charge: {fail: true}\n"));
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["runs"]["Charge"], 3, "max_retry 2: three runs");
    assert_eq!(summary["runs"]["Refund"], 1);
}

#[test]
fn fail_times_recovers_within_the_retries() {
    let (_, summary) = simulate(
        "fail-times",
        Some("Charge: {fail_times: 2, result: {paid: true}}\n"),
    );
    assert_eq!(summary["runs"]["Charge"], 3);
    assert!(summary["runs"].get("Refund").is_none(), "{summary}");
}

#[test]
fn results_drive_conditions_and_foreach_starts_a_node_per_item() {
    let scenario = "Fetch: {result: {ok: true}}\nforeach:\n  each_item: [1, 2, 3]\n";
    let (code, summary) = simulate("foreach", Some(scenario));
    assert_eq!(code, 0);
    assert_eq!(summary["flows"], serde_json::json!({"items": 1}));
    assert_eq!(summary["runs"]["Item"], 3);
}

#[test]
fn a_failure_without_fallback_fails_the_flow() {
    let scenario = "Fetch: {fail: true}\n";
    let (code, summary) = simulate("failed", Some(scenario));
    assert_eq!(code, 1);
    assert_eq!(summary["status"], "failed");
}

#[test]
fn selective_runs_only_the_path_to_the_named_tasks() {
    // Only Fetch is asked for: Charge (on no path to it) does not run, nor the sub-flow.
    let (code, last) = simulate_with("selective", None, &["--selective", "Fetch"]);
    assert_eq!(code, 0, "{last}");
    assert_eq!(last["runs"], serde_json::json!({"Fetch": 1}), "{last}");
    assert_eq!(last["flows"], serde_json::json!({}), "{last}");
    // With --follow-subflows, Item inside `items` is reachable.
    let (code, last) = simulate_with(
        "selective-subflow",
        Some("Fetch: {result: {ok: true}}\nforeach: {each_item: [1, 2]}\n"),
        &["--selective", "Item", "--follow-subflows"],
    );
    assert_eq!(code, 0, "{last}");
    assert_eq!(
        last["runs"],
        serde_json::json!({"Fetch": 1, "Item": 2}),
        "{last}"
    );
    assert_eq!(last["flows"], serde_json::json!({"items": 1}), "{last}");
}

#[test]
fn selective_with_an_unknown_task_is_a_clear_error() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-selective-unknown");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), SYSTEM).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args([
            "simulate",
            "-n",
            "system.yml",
            "-f",
            "system.yml",
            "--flow",
            "order",
        ])
        .args(["--selective", "Fecth"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`Fecth` is not a task of flow `order`"),
        "{stderr}"
    );
}

#[test]
fn an_edge_selective_block_runs_the_subflow_selectively() {
    let system = "\
tasks:
  - {name: Fetch, import: shop.tasks}
  - {name: Pack, import: shop.tasks}
  - {name: Ship, import: shop.tasks}
  - {name: Bill, import: shop.tasks}
flows: [order, delivery]
flow-definitions:
  - name: order
    edges:
      - {from: , to: Fetch}
      - from: Fetch
        to: delivery
        selective: {tasks: [Ship]}
  - name: delivery
    edges:
      - {from: , to: [Pack, Bill]}
      - {from: Pack, to: Ship}
";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-edge-selective");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), system).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args([
            "simulate",
            "-n",
            "system.yml",
            "-f",
            "system.yml",
            "--flow",
            "order",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    // In `delivery` only the path to Ship runs: Pack and Ship, not Bill.
    assert_eq!(
        last["runs"],
        serde_json::json!({"Fetch": 1, "Pack": 1, "Ship": 1}),
        "{last}"
    );
    assert_eq!(last["status"], "finished");
}

#[test]
fn an_endless_cycle_is_stopped_by_the_timeout() {
    let system = "\
tasks:
  - {name: Ping, import: shop.tasks}
flows: [loop]
flow-definitions:
  - name: loop
    edges:
      - {from: , to: Ping}
      - {from: Ping, to: Ping}
";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-endless");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), system).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args([
            "simulate",
            "-n",
            "system.yml",
            "-f",
            "system.yml",
            "--flow",
            "loop",
        ])
        .args(["--timeout", "0.5"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not end within 500ms"), "{stderr}");
}

/// Work under `nowait` nodes is counted, and the summary is the last line: upstream counts
/// A, N, X, Y once each and the sub-flow once.
#[test]
fn the_summary_waits_for_nowait_work() {
    let system = "\
tasks:
  - {name: A, import: app.tasks}
  - {name: N, import: app.tasks}
  - {name: X, import: app.tasks}
  - {name: Y, import: app.tasks}
flows: [main, sub]
flow-definitions:
  - name: main
    nowait: [N, sub]
    edges:
      - {from: , to: A}
      - {from: A, to: [N, sub]}
  - name: sub
    edges:
      - {from: , to: X}
      - {from: X, to: Y}
";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-nowait");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), system).unwrap();
    // Slow nowait work: it ends well after the flow itself.
    std::fs::write(
        dir.join("scenario.yml"),
        "N: {sleep: 0.3}\nX: {sleep: 0.2}\nY: {sleep: 0.2}\n",
    )
    .unwrap();
    for _ in 0..3 {
        let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
            .args(["simulate", "-n", "system.yml", "-f", "system.yml"])
            .args(["--flow", "main", "--scenario", "scenario.yml"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let last: serde_json::Value =
            serde_json::from_str(stdout.lines().last().unwrap()).expect("a JSON summary");
        assert_eq!(last["status"], "finished", "{stdout}");
        assert_eq!(
            last["runs"],
            serde_json::json!({"A": 1, "N": 1, "X": 1, "Y": 1}),
            "{stdout}"
        );
        assert_eq!(last["flows"], serde_json::json!({"sub": 1}), "{stdout}");
        let y_ended = stdout
            .lines()
            .position(|l| l.contains("TASK_END") && l.contains("\"Y\""))
            .expect("Y's end is traced");
        assert!(y_ended < stdout.lines().count() - 1);
    }
}

/// Upstream's documented diamond with its loop closed multiplies its nodes each round: the
/// simulation stops it at the node limit with an error naming the edge, quickly and in
/// little memory.
#[test]
fn a_join_that_multiplies_fails_at_the_node_limit() {
    let system = "\
tasks:
  - {name: Task1, import: app.tasks}
  - {name: Task2, import: app.tasks}
  - {name: Task3, import: app.tasks}
  - {name: Task4, import: app.tasks}
flows: [diamond]
flow-definitions:
  - name: diamond
    edges:
      - from:
        to: Task1
      - from: Task1
        to: [Task2, Task3]
      - from: [Task2, Task3]
        to: Task4
      - from: Task4
        to: Task1
";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("simulate-diamond");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("system.yml"), system).unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["simulate", "-n", "system.yml", "-f", "system.yml"])
        .args(["--flow", "diamond", "--timeout", "3"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "still running after a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("flow `diamond` would start more than 10000 nodes")
            || stderr.contains("did not end within 3s"),
        "{stderr}"
    );
    assert!(peak_kb < 1024 * 1024, "peak RSS {peak_kb} kB");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    // A low limit fails it at once, naming the edge that would go past it.
    let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
        .args(["simulate", "-n", "system.yml", "-f", "system.yml"])
        .args(["--flow", "diamond", "--max-nodes", "50"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("flow `diamond` would start more than 50 nodes: it has started")
            && [
                "#1 ([Task1] → [Task2, Task3], system.yml:12)",
                "#2 ([Task2, Task3] → [Task4], system.yml:14)",
                "#3 ([Task4] → [Task1], system.yml:16)"
            ]
            .iter()
            .any(|edge| stderr.contains(&format!("edge {edge} would fire"))),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "failed");
}

/// A mocked result is validated against its task's `output_schema` as a worker validates a
/// real one: a result that does not conform fails the task (retries, then the fallback) and
/// the summary says why.
#[test]
fn results_are_validated_against_the_output_schema() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("simulate-schema-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("system.yml"),
        SYSTEM.replace(
            "{name: Charge, import: shop.tasks, max_retry: 2}",
            "{name: Charge, import: shop.tasks, max_retry: 2, output_schema: schemas/charge.json}",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("schemas/charge.json"),
        r#"{"type": "object", "required": ["paid"], "properties": {"paid": {"type": "boolean"}}}"#,
    )
    .unwrap();
    let run = |scenario: &str| {
        std::fs::write(dir.join("scenario.yml"), scenario).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_selinon"))
            .args([
                "simulate",
                "-n",
                "system.yml",
                "-f",
                "system.yml",
                "--flow",
                "order",
            ])
            .args(["--scenario", "scenario.yml"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let last = stdout.lines().last().unwrap_or_default();
        let summary: serde_json::Value = serde_json::from_str(last)
            .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), summary, stdout)
    };

    let (code, summary, _) = run("Charge: {result: {paid: true}}\n");
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["runs"]["Charge"], 1, "{summary}");
    assert!(summary["runs"].get("Refund").is_none(), "{summary}");
    assert_eq!(summary["failures"], serde_json::json!({}));

    let (code, summary, stdout) = run("Charge: {result: {paid: \"yes\"}}\n");
    assert_eq!(code, Some(0), "the fallback handles it: {summary}");
    assert_eq!(summary["runs"]["Charge"], 3, "max_retry 2: three runs");
    assert_eq!(summary["runs"]["Refund"], 1, "{summary}");
    let why = summary["failures"]["Charge"][0]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        why,
        "task `Charge`: the result does not match output schema `schemas/charge.json`: at \
         /paid: \"yes\" is not of type \"boolean\" (schema /properties/paid/type)",
        "{summary}"
    );
    // The trace says it at each retry and at the failure.
    let saying = |event: &str| {
        stdout
            .lines()
            .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .filter(|l| l.contains("is not of type \\\"boolean\\\""))
            .count()
    };
    assert_eq!(
        (saying("TASK_RETRY"), saying("TASK_FAILURE")),
        (2, 1),
        "{stdout}"
    );
}
