//! The IR as a runtime [`SystemSpec`], without compiling anything: what `selinon simulate`
//! runs on the same engine as generated code.
//!
//! Conditions become closures that evaluate the condition tree with the runtime's built-in
//! predicates; tasks, custom predicates and `foreach` functions are mocked from a
//! [`Scenario`], selective run functions always run the task; the tasks that have a storage
//! store into one in-memory storage, so conditions read the mocked results (the others keep no
//! result, as in generated code). The spec is leaked (`'static`), as generated statics are: one
//! simulation per process. Retry countdowns and throttling are dropped: a simulation shows what
//! runs, not when. `tests/differential.rs` checks that a simulation runs as generated code does,
//! event for event.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use selinon_runtime::spec::{
    BoxFuture, Db, EdgeSpec, FailureSpec, FlowSpec, ForeachSpec, OutputSchema, PropagateSpec,
    RunTaskFn, SelectiveRunFn, SelectiveSpec, StorageSpec, SystemSpec, TaskSpec,
};
use selinon_runtime::{Json, StorageView, TaskError, TaskResult};

use selinon_codegen::config::yaml::{self, Node, Value};
use selinon_codegen::diagnostics::{Diagnostics, SourceMap, Span};
use selinon_codegen::ir::{self, Condition, FallbackTarget, System};
use selinon_runtime::predicates::{self, Reads};

/// What a mocked task does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskBehaviour {
    /// Returned by every run (after `fail_times` failures); `{}` when not given.
    pub result: Option<Json>,
    /// One result per run of the task (counted over all its instances); the last repeats.
    pub results: Vec<Json>,
    /// Every run fails (so the task fails after its retries).
    pub fail: bool,
    /// The first N runs of each instance fail, then it returns its result.
    pub fail_times: u32,
    /// Each run takes this long (of the simulation's own clock) before its outcome.
    pub sleep: Option<Duration>,
}

/// Mocked behaviour for a simulation: per task, per `foreach` function, per custom predicate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scenario {
    pub tasks: BTreeMap<String, TaskBehaviour>,
    /// Items returned by `foreach` functions, by function name; none when not given.
    pub foreach: BTreeMap<String, Vec<Json>>,
    /// Values of custom predicates, by name; true when not given.
    pub predicates: BTreeMap<String, bool>,
}

impl Scenario {
    /// Parses a scenario file. Top-level keys are task names, plus `foreach:` and
    /// `predicates:` (a `tasks:` mapping may hold the tasks instead).
    pub fn parse(
        path: &str,
        text: &str,
        sources: &mut SourceMap,
        diags: &mut Diagnostics,
    ) -> Option<Scenario> {
        let file = sources.add(path.into(), text.to_string());
        let node = yaml::parse(file, text, diags).ok()?;
        let mut scenario = Scenario::default();
        let Some(node) = node else {
            return Some(scenario);
        };
        let Value::Map(entries) = &node.value else {
            diags.error(
                node.span,
                "a scenario is a mapping of task names to what they do",
                "write e.g. `ChargeCard: {fail: true}`",
            );
            return None;
        };
        for (key, value) in entries {
            match key.as_str() {
                Some("foreach") => {
                    for (name, items) in map_entries(value, diags, "`foreach`") {
                        match items.to_json() {
                            Json::Array(list) => {
                                scenario.foreach.insert(name, list);
                            }
                            _ => diags.error(
                                items.span,
                                format!("`foreach` of `{name}` must be a list"),
                                "write `name: [item, item]`",
                            ),
                        }
                    }
                }
                Some("predicates") => {
                    for (name, v) in map_entries(value, diags, "`predicates`") {
                        match v.value {
                            Value::Bool(b) => {
                                scenario.predicates.insert(name, b);
                            }
                            _ => diags.error(
                                v.span,
                                format!("predicate `{name}` must be true or false"),
                                "",
                            ),
                        }
                    }
                }
                Some("tasks") => {
                    for (name, v) in map_entries(value, diags, "`tasks`") {
                        if let Some(b) = behaviour(&name, v, diags) {
                            scenario.tasks.insert(name, b);
                        }
                    }
                }
                Some(name) => {
                    if let Some(b) = behaviour(name, value, diags) {
                        scenario.tasks.insert(name.to_string(), b);
                    }
                }
                None => diags.error(key.span, "scenario keys are task names", ""),
            }
        }
        (!diags.has_errors()).then_some(scenario)
    }

    /// Checks that the scenario names only tasks of the system.
    pub fn check(&self, system: &System, span: Span, diags: &mut Diagnostics) {
        for name in self.tasks.keys() {
            if system.task(name).is_none() {
                let hint = selinon_codegen::diagnostics::did_you_mean(
                    name,
                    system.tasks.iter().map(|t| t.name.as_str()),
                );
                diags.error(
                    span,
                    format!("the scenario names `{name}`, which is not a task"),
                    hint,
                );
            }
        }
    }
}

fn map_entries<'a>(node: &'a Node, diags: &mut Diagnostics, what: &str) -> Vec<(String, &'a Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().map(|(k, v)| (k.key_text(), v)).collect(),
        Value::Null => Vec::new(),
        _ => {
            diags.error(node.span, format!("{what} must be a mapping"), "");
            Vec::new()
        }
    }
}

fn behaviour(name: &str, node: &Node, diags: &mut Diagnostics) -> Option<TaskBehaviour> {
    let mut b = TaskBehaviour::default();
    for (key, v) in map_entries(node, diags, &format!("task `{name}` of the scenario")) {
        match key.as_str() {
            "result" => b.result = Some(v.to_json()),
            "results" => match v.to_json() {
                Json::Array(list) => b.results = list,
                _ => diags.error(v.span, "`results` must be a list, one result per run", ""),
            },
            "fail" => b.fail = v.value == Value::Bool(true),
            "fail_times" => match v.value {
                Value::Int(n) if n >= 0 => b.fail_times = u32::try_from(n).unwrap_or(u32::MAX),
                _ => diags.error(v.span, "`fail_times` must be a non-negative integer", ""),
            },
            "sleep" => match &v.value {
                Value::Int(n) if *n >= 0 => b.sleep = Some(Duration::from_secs(*n as u64)),
                Value::Float(f) if *f >= 0.0 && f.is_finite() => {
                    b.sleep = Some(Duration::from_secs_f64(*f))
                }
                _ => diags.error(v.span, "`sleep` must be a number of seconds, e.g. 0.5", ""),
            },
            other => {
                let hint = selinon_codegen::diagnostics::did_you_mean(
                    other,
                    ["result", "results", "fail", "fail_times", "sleep"],
                );
                diags.error(
                    v.span,
                    format!("unknown key `{other}` for task `{name}` in the scenario"),
                    hint,
                );
            }
        }
    }
    Some(b)
}

/// Counts of what ran in a simulation.
#[derive(Debug, Default)]
pub struct RunCounts {
    /// Every execution of a task (a retry is another run), by task name.
    pub runs: BTreeMap<String, u64>,
    /// Runs per task instance (for `fail_times`).
    per_id: HashMap<String, u32>,
}

fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_strs<'a>(items: impl IntoIterator<Item = &'a String>) -> &'static [&'static str] {
    Box::leak(
        items
            .into_iter()
            .map(|s| leak_str(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// The name of the in-memory storage every simulated task stores into.
pub const SIMULATION_STORAGE: &str = "simulation";

/// Builds the runtime spec of `system`, mocking with `scenario`; `counts` records the runs.
pub fn system_spec(
    system: &System,
    scenario: Arc<Scenario>,
    counts: Arc<Mutex<RunCounts>>,
) -> &'static SystemSpec {
    let tasks: Vec<TaskSpec> = system
        .tasks
        .iter()
        .map(|t| TaskSpec {
            name: leak_str(&t.name),
            origin: leak_str(&t.origin.to_string()),
            run: run_fn(&t.name, scenario.clone(), counts.clone()),
            queue: leak_str(&t.queue.raw),
            // Tasks with a storage store into the simulation's; the others keep no result, as
            // in generated code (conditions read only tasks with a storage: a system check).
            storage: t.storage.is_some().then_some(SIMULATION_STORAGE),
            storage_readonly: t.storage_readonly,
            storage_task_name: Some(leak_str(&t.storage_task_name)),
            // Mocked results are validated against the task's schema, as real ones are.
            output_schema: t.output_schema.as_ref().and_then(|s| {
                Some(OutputSchema {
                    path: leak_str(&s.path),
                    json: leak_str(s.json.as_deref()?),
                })
            }),
            max_retry: u32::try_from(t.max_retry).unwrap_or(u32::MAX),
            // A simulation shows what runs, not when: no countdowns, no throttling.
            // Mocked as the stubs of `selinon new` are: run the task (no earlier run reused).
            selective_run_function: t
                .selective_run_function
                .as_ref()
                .map(|_| -> SelectiveRunFn { selinon_runtime::selective_run!(always_run, "") }),
            ..TaskSpec::DEFAULT
        })
        .collect();
    let storages = vec![StorageSpec {
        name: SIMULATION_STORAGE,
        origin: "simulation",
        ..StorageSpec::DEFAULT
    }];
    let flows: Vec<&'static FlowSpec> = system
        .flows
        .iter()
        .map(|f| flow_spec(system, f, &scenario))
        .collect();
    leak(SystemSpec {
        files: leak_strs(&system.files),
        content_hash: "simulation",
        tasks: Box::leak(tasks.into_boxed_slice()),
        flows: Box::leak(flows.into_boxed_slice()),
        storages: Box::leak(storages.into_boxed_slice()),
        ..SystemSpec::DEFAULT
    })
}

/// A mocked task: does what the scenario says, counting its runs.
fn run_fn(name: &str, scenario: Arc<Scenario>, counts: Arc<Mutex<RunCounts>>) -> RunTaskFn {
    let name = name.to_string();
    leak(
        move |ctx: selinon_runtime::TaskContext, _args: Json| -> BoxFuture<'static, TaskResult> {
            let behaviour = scenario.tasks.get(&name).cloned().unwrap_or_default();
            let (run_index, instance_runs) = {
                let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                let runs = c.runs.entry(name.clone()).or_default();
                *runs += 1;
                let index = *runs - 1;
                let per = c.per_id.entry(ctx.task_id.clone()).or_default();
                *per += 1;
                (index, *per)
            };
            let outcome: TaskResult = if behaviour.fail {
                Err(TaskError::failed(format!("{name} fails (scenario)")))
            } else if instance_runs <= behaviour.fail_times {
                Err(TaskError::failed(format!(
                    "{name} fails run {instance_runs} of {} (scenario)",
                    behaviour.fail_times
                )))
            } else if !behaviour.results.is_empty() {
                let i = usize::try_from(run_index)
                    .unwrap_or(usize::MAX)
                    .min(behaviour.results.len() - 1);
                Ok(behaviour.results[i].clone())
            } else {
                Ok(behaviour
                    .result
                    .clone()
                    .unwrap_or_else(|| Json::Object(Default::default())))
            };
            let sleep = behaviour.sleep;
            Box::pin(async move {
                if let Some(sleep) = sleep {
                    tokio::time::sleep(sleep).await;
                }
                outcome
            })
        },
    )
}

fn flow_spec(system: &System, f: &ir::Flow, scenario: &Arc<Scenario>) -> &'static FlowSpec {
    let edges: Vec<EdgeSpec> = f
        .edges
        .iter()
        .map(|e| {
            let reads = e.reads(system);
            EdgeSpec {
                origin: leak_str(&e.origin.to_string()),
                from: leak_strs(&e.from),
                to: leak_strs(&e.to),
                reads: leak_strs(&reads),
                condition: condition_fn(&e.condition, scenario),
                condition_str: leak_str(&e.condition.to_source()),
                condition_blocking: e.condition.may_block(),
                foreach: e.foreach.as_ref().map(|fe| {
                    let items = scenario
                        .foreach
                        .get(&fe.function.name)
                        .cloned()
                        .unwrap_or_default();
                    ForeachSpec {
                        function: foreach_fn(move |_: &StorageView<'_>, _: &Json| {
                            let items = items.clone();
                            Box::pin(async move { Ok(items) })
                        }),
                        name: leak_str(&format!("{}.{}", fe.function.module, fe.function.name)),
                        propagate_result: fe.propagate_result,
                    }
                }),
                selective: e.selective.as_ref().map(|s| SelectiveSpec {
                    tasks: leak_strs(&s.tasks),
                    run_subsequent: s.run_subsequent.as_ref().map(|set| leak_strs(set)),
                    follow_subflows: s.follow_subflows,
                }),
            }
        })
        .collect();
    let failures: Vec<FailureSpec> = f
        .failures
        .iter()
        .flat_map(|set| {
            set.alternatives.iter().map(|a| FailureSpec {
                origin: leak_str(&a.origin.to_string()),
                nodes: leak_strs(&set.nodes),
                fallback: match &a.fallback {
                    FallbackTarget::Handled => None,
                    FallbackTarget::Nodes(n) => Some(leak_strs(n)),
                },
                condition: condition_fn(&a.condition, scenario),
                condition_str: leak_str(&a.condition.to_source()),
                condition_blocking: a.condition.may_block(),
                propagate_failure: a.propagate_failure,
            })
        })
        .collect();
    let p = &f.propagate;
    leak(FlowSpec {
        name: leak_str(&f.name),
        origin: leak_str(&f.origin.to_string()),
        queue: leak_str(&f.queue.raw),
        edges: Box::leak(edges.into_boxed_slice()),
        failures: Box::leak(failures.into_boxed_slice()),
        nowait: leak_strs(&f.nowait),
        eager_failures: leak_strs(&f.eager_failures),
        node_args_from_first: f.node_args_from_first,
        propagate: PropagateSpec {
            node_args: leak_strs(&p.node_args),
            parent: leak_strs(&p.parent),
            finished: leak_strs(&p.finished),
            compound_finished: leak_strs(&p.compound_finished),
            failures: leak_strs(&p.failures),
            compound_failures: leak_strs(&p.compound_failures),
        },
        max_retry: u32::try_from(f.max_retry).unwrap_or(u32::MAX),
        ..FlowSpec::DEFAULT
    })
}

/// The selective run function of the simulation: run the task.
fn always_run(_: &selinon_runtime::spec::SelectiveRunInput<'_>) -> Option<String> {
    None
}

/// A mocked `foreach` function.
fn foreach_fn<F>(f: F) -> selinon_runtime::spec::ForeachFn
where
    F: for<'a> Fn(&'a StorageView<'a>, &'a Json) -> selinon_runtime::userfn::ForeachFuture<'a>
        + Send
        + Sync
        + 'static,
{
    leak(f)
}

fn condition_fn(cond: &Condition, scenario: &Arc<Scenario>) -> selinon_runtime::spec::ConditionFn {
    let cond = cond.clone();
    let scenario = scenario.clone();
    leak(move |db: &Db<'_>, node_args: &Json| eval(&cond, db, node_args, &scenario))
}

/// Evaluates a condition tree the way the generated function would.
pub fn eval(cond: &Condition, db: &Db<'_>, node_args: &Json, scenario: &Scenario) -> bool {
    match cond {
        Condition::Always => true,
        Condition::And(items) => items.iter().all(|c| eval(c, db, node_args, scenario)),
        Condition::Or(items) => items.iter().any(|c| eval(c, db, node_args, scenario)),
        Condition::Not(inner) => !eval(inner, db, node_args, scenario),
        Condition::Predicate(p) => {
            if !p.builtin {
                return scenario.predicates.get(&p.name).copied().unwrap_or(true);
            }
            let message = match p.reads {
                Reads::Result => p.node.as_deref().and_then(|n| db.get(n)),
                _ => None,
            };
            let Some(builtin) = predicates::builtin(&p.name) else {
                return false;
            };
            // The arguments in the function's order; a missing one reads as `null`.
            let args: Vec<&Json> = builtin
                .args
                .iter()
                .map(|a| {
                    p.args
                        .iter()
                        .find(|(k, _)| k == a)
                        .map_or(&Json::Null, |(_, v)| v)
                })
                .collect();
            (builtin.call)(message, node_args, &args)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_predicates_are_called_through_the_catalogue_with_args_by_name() {
        let leaf = |value: i64| {
            Condition::Predicate(ir::Predicate {
                name: "fieldEqual".into(),
                builtin: true,
                module: "selinon.predicates".into(),
                reads: Reads::Result,
                node: Some("Fetch".into()),
                // In the YAML's order, not the function's.
                args: vec![
                    ("value".into(), Json::from(value)),
                    ("key".into(), "a".into()),
                ],
                origin: ir::Origin {
                    file: "flows.yml".into(),
                    line: 1,
                    column: 1,
                },
            })
        };
        let result = serde_json::json!({"a": 1});
        let db = Db::new([("Fetch", &result)]);
        let scenario = Scenario::default();
        assert!(eval(&leaf(1), &db, &Json::Null, &scenario));
        assert!(!eval(&leaf(2), &db, &Json::Null, &scenario));
        assert!(
            !eval(&leaf(1), &Db::empty(), &Json::Null, &scenario),
            "no result read"
        );
    }

    #[test]
    fn scenario_files_parse_with_locations() {
        let mut sources = SourceMap::default();
        let mut diags = Diagnostics::default();
        let text = "ChargeCard: {fail: true}\nFetch:\n  results: [{a: 1}, {a: 2}]\nRetry: {fail_times: 2, result: ok}\nforeach:\n  iter_items: [1, 2]\n";
        let s = Scenario::parse("scenario.yml", text, &mut sources, &mut diags).unwrap();
        assert!(s.tasks["ChargeCard"].fail);
        assert_eq!(s.tasks["Fetch"].results.len(), 2);
        assert_eq!(s.tasks["Retry"].fail_times, 2);
        assert_eq!(s.foreach["iter_items"], vec![Json::from(1), Json::from(2)]);

        let bad = "Fetch: {reslt: 1}\n";
        assert!(Scenario::parse("bad.yml", bad, &mut sources, &mut diags).is_none());
        let d = diags.iter().next().unwrap();
        assert!(d.message.contains("unknown key `reslt`"), "{}", d.message);
        assert_eq!(d.help.as_deref(), Some("did you mean `result`?"));
        assert_eq!(d.span.unwrap().line, 1);
    }
}
