//! One test per system check: a small broken configuration, the message, and the exact line.
//!
//! Each configuration is a single file holding both the nodes and the flow definitions, so the
//! asserted line numbers count from the first line of the inline YAML.

use selinon_codegen::{check_strs, Checked, Severity};

fn check(yaml: &str) -> Checked {
    check_strs(("system.yml", yaml), &[("system.yml", yaml)])
}

/// Asserts that a diagnostic of `severity` containing `needle` was reported at `line`.
#[track_caller]
fn assert_reports(checked: &Checked, severity: Severity, line: u32, needle: &str) {
    let found = checked.diagnostics.iter().any(|d| {
        d.severity == severity && d.message.contains(needle) && d.span.map(|s| s.line) == Some(line)
    });
    if !found {
        panic!(
            "expected {severity} at line {line} containing {needle:?}; got:\n{}",
            checked.diagnostics.render(&checked.sources, false)
        );
    }
}

#[track_caller]
fn assert_clean(checked: &Checked) {
    assert!(
        checked.diagnostics.is_empty(),
        "expected no diagnostics, got:\n{}",
        checked.diagnostics.render(&checked.sources, false)
    );
}

#[track_caller]
fn help_of(checked: &Checked, needle: &str) -> String {
    checked
        .diagnostics
        .iter()
        .find(|d| d.message.contains(needle))
        .and_then(|d| d.help.clone())
        .unwrap_or_default()
}

const VALID: &str = "\
tasks:
  - name: Fetch
    import: app.tasks
    storage: Db
  - name: Parse
    import: app.tasks
    storage: Db
storages:
  - name: Db
    import: app.storages
    configuration: {url: 'x'}
flows: [main, sub]
flow-definitions:
  - name: main
    edges:
      - from:
        to: Fetch
      - from: Fetch
        to: sub
        condition:
          name: fieldEqual
          args: {key: status, value: ok}
  - name: sub
    edges:
      - from:
        to: Parse
";

#[test]
fn a_valid_config_has_no_diagnostics() {
    let checked = check(VALID);
    assert_clean(&checked);
    assert!(checked.system.is_some());
}

#[test]
fn duplicate_task_name_is_an_error() {
    let yaml = VALID.replace("  - name: Parse\n", "  - name: Fetch\n");
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        5,
        "task `Fetch` is defined twice",
    );
}

#[test]
fn task_and_flow_sharing_a_name_is_an_error() {
    let yaml = VALID.replace("flows: [main, sub]", "flows: [main, sub, Fetch]");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        12,
        "`Fetch` is both a task and a flow",
    );
}

#[test]
fn flow_listed_twice_is_an_error() {
    let yaml = VALID.replace("flows: [main, sub]", "flows: [main, sub, main]");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        12,
        "flow `main` is listed twice",
    );
}

#[test]
fn invalid_task_name_is_an_error() {
    let yaml = VALID
        .replace("- name: Parse", "- name: Parse-It")
        .replace("to: Parse\n", "to: Parse-It\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        5,
        "invalid task name `Parse-It`",
    );
}

#[test]
fn unknown_storage_is_an_error_with_a_suggestion() {
    let yaml = VALID.replacen("storage: Db", "storage: Dbb", 1);
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        4,
        "uses storage `Dbb`, which is not defined",
    );
    assert_eq!(help_of(&checked, "storage `Dbb`"), "did you mean `Db`?");
}

#[test]
fn storage_task_name_without_storage_is_an_error() {
    let yaml = VALID.replacen("    storage: Db\n", "    storage_task_name: Other\n", 1);
    assert_reports(
        &check(&yaml),
        Severity::Error,
        4,
        "sets `storage_task_name` but has no `storage`",
    );
}

#[test]
fn retry_countdown_without_retries_is_a_warning() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    retry_countdown: 5\n",
        1,
    );
    assert_reports(
        &check(&yaml),
        Severity::Warning,
        5,
        "sets `retry_countdown` but is never retried",
    );
}

#[test]
fn unknown_task_key_is_an_error_with_a_suggestion() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    max_retries: 2\n",
        1,
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        5,
        "unknown key `max_retries` in task `Fetch`",
    );
    assert_eq!(
        help_of(&checked, "max_retries"),
        "did you mean `max_retry`?"
    );
}

#[test]
fn documented_storage_read_only_spelling_is_rejected() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    storage_read_only: true\n",
        1,
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        5,
        "unknown key `storage_read_only`",
    );
    assert_eq!(
        help_of(&checked, "storage_read_only"),
        "did you mean `storage_readonly`?"
    );
}

#[test]
fn negative_max_retry_is_an_error() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    max_retry: -1\n",
        1,
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        5,
        "`max_retry` of task `Fetch` must be a non-negative integer",
    );
}

#[test]
fn task_without_import_is_an_error() {
    let yaml = VALID.replacen("    import: app.tasks\n", "", 1);
    assert_reports(
        &check(&yaml),
        Severity::Error,
        2,
        "task `Fetch` has no `import`",
    );
}

#[test]
fn import_that_is_not_a_module_path_is_an_error() {
    let yaml = VALID.replacen("import: app.tasks", "import: app/tasks", 1);
    assert_reports(&check(&yaml), Severity::Error, 3, "is not a module path");
}

#[test]
fn bad_queue_placeholder_is_an_error() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    queue: '{PREFIX_queue'\n",
        1,
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        5,
        "bad placeholder in `queue` of task `Fetch`",
    );
}

#[test]
fn queue_placeholders_need_no_environment_at_check_time() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    queue: '{SURELY_UNSET_VARIABLE_42}_q'\n",
        1,
    );
    assert_clean(&check(&yaml));
}

#[test]
fn duplicate_storage_is_an_error() {
    let yaml = VALID.replace(
        "    configuration: {url: 'x'}\n",
        "    configuration: {url: 'x'}\n  - name: Db\n    import: app.storages\n    configuration: {url: 'y'}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        12,
        "storage `Db` is defined twice",
    );
}

#[test]
fn storage_without_configuration_is_an_error() {
    let yaml = VALID.replace("    configuration: {url: 'x'}\n", "");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "storage `Db` has no `configuration`",
    );
}

#[test]
fn unused_storage_and_task_are_warnings() {
    let yaml = VALID.replace(
        "    configuration: {url: 'x'}\n",
        "    configuration: {url: 'x'}\n  - name: Spare\n    import: app.storages\n    configuration: 1\n",
    );
    let yaml = yaml.replace(
        "storages:\n",
        "  - name: Lonely\n    import: app.tasks\nstorages:\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Warning,
        8,
        "task `Lonely` is not used in any flow",
    );
    assert_reports(
        &checked,
        Severity::Warning,
        14,
        "storage `Spare` is not used by any task",
    );
    assert!(!checked.diagnostics.has_errors());
}

#[test]
fn unknown_cache_is_an_error_with_a_suggestion() {
    let yaml = VALID.replace(
        "    configuration: {url: 'x'}\n",
        "    configuration: {url: 'x'}\n    cache: {name: LRUU, configuration: {max_cache_size: 3}}\n",
    );
    let checked = check(&yaml);
    assert_reports(&checked, Severity::Error, 12, "unknown cache `LRUU`");
    assert_eq!(help_of(&checked, "LRUU"), "did you mean `LRU`?");
}

#[test]
fn flow_listed_without_definition_is_an_empty_flow() {
    let yaml = VALID.replace("flows: [main, sub]", "flows: [main, sub, extra]");
    assert_reports(&check(&yaml), Severity::Error, 12, "empty flow `extra`");
}

#[test]
fn flow_defined_twice_is_an_error() {
    let yaml = format!("{VALID}  - name: sub\n    edges:\n      - from:\n        to: Parse\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        27,
        "flow `sub` has multiple definitions",
    );
}

#[test]
fn flow_defined_but_not_listed_is_an_error() {
    let yaml = format!("{VALID}  - name: other\n    edges:\n      - from:\n        to: Parse\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        27,
        "flow `other` is defined but not listed",
    );
}

#[test]
fn unknown_node_in_an_edge_is_an_error_with_a_suggestion() {
    let yaml = VALID.replace("        to: Fetch\n", "        to: Fetchh\n");
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        17,
        "unknown node `Fetchh` in edge #0 of flow `main`",
    );
    assert_eq!(help_of(&checked, "Fetchh"), "did you mean `Fetch`?");
}

#[test]
fn source_listed_twice_is_an_error() {
    let yaml = VALID.replace(
        "      - from: Fetch\n        to: sub\n",
        "      - from: [Fetch, Fetch]\n        to: sub\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        18,
        "`Fetch` appears twice in `from`",
    );
}

#[test]
fn flow_without_starting_edge_is_an_error() {
    let yaml = VALID.replace(
        "  - name: sub\n    edges:\n      - from:\n        to: Parse\n",
        "  - name: sub\n    edges:\n      - from: Parse\n        to: Parse\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        23,
        "flow `sub` has no starting edge",
    );
}

#[test]
fn flow_without_edges_is_an_error() {
    let yaml = VALID.replace(
        "  - name: sub\n    edges:\n      - from:\n        to: Parse\n",
        "  - name: sub\n    edges: []\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        24,
        "`edges` of flow `sub` is empty",
    );
}

#[test]
fn edge_without_to_is_an_error() {
    let yaml = VALID.replace("      - from:\n        to: Fetch\n", "      - from:\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        16,
        "edge #0 of flow `main` has no `to`",
    );
}

#[test]
fn unknown_predicate_is_an_error_with_a_suggestion() {
    let yaml = VALID.replace("name: fieldEqual", "name: fieldEqaul");
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        21,
        "unknown predicate `fieldEqaul`",
    );
    assert_eq!(
        help_of(&checked, "fieldEqaul"),
        "did you mean `fieldEqual`?"
    );
}

#[test]
fn near_miss_length_predicate_is_suggested() {
    let yaml = VALID
        .replace("name: fieldEqual", "name: fieldLenLes")
        .replace(
            "args: {key: status, value: ok}",
            "args: {key: items, length: 2}",
        );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        21,
        "unknown predicate `fieldLenLes`",
    );
    assert_eq!(
        help_of(&checked, "fieldLenLes"),
        "did you mean `fieldLenLess`?"
    );
}

#[test]
fn both_length_predicates_are_accepted() {
    for name in ["fieldLenLessEqual", "fieldLenGreaterEqual"] {
        let yaml = VALID
            .replace("name: fieldEqual", &format!("name: {name}"))
            .replace(
                "args: {key: status, value: ok}",
                "args: {key: items, length: 2}",
            );
        assert_clean(&check(&yaml));
    }
}

#[test]
fn missing_predicate_argument_is_an_error() {
    let yaml = VALID.replace("args: {key: status, value: ok}", "args: {key: status}");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        21,
        "predicate `fieldEqual` needs argument `value`",
    );
}

#[test]
fn extra_predicate_argument_is_an_error() {
    let yaml = VALID.replace(
        "args: {key: status, value: ok}",
        "args: {key: status, value: ok, valeu: 2}",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        22,
        "predicate `fieldEqual` takes no argument `valeu`",
    );
    assert_eq!(help_of(&checked, "valeu"), "did you mean `value`?");
}

#[test]
fn predicate_reading_a_result_on_a_starting_edge_is_an_error() {
    let yaml = VALID.replace(
        "      - from:\n        to: Fetch\n",
        "      - from:\n        to: Fetch\n        condition: {name: fieldExist, args: {key: a}}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        18,
        "reads a task result, but edge #0 of flow `main` is a starting edge",
    );
}

#[test]
fn predicate_node_must_be_a_source() {
    let yaml = VALID.replace(
        "          name: fieldEqual\n",
        "          name: fieldEqual\n          node: Parse\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        22,
        "reads node `Parse`, which is not a source",
    );
}

#[test]
fn predicate_with_several_sources_needs_a_node() {
    let yaml = VALID
        .replace("        to: Fetch\n", "        to: [Fetch, Parse]\n")
        .replace(
            "      - from: Fetch\n        to: sub\n",
            "      - from: [Fetch, Parse]\n        to: sub\n",
        );
    assert_reports(&check(&yaml), Severity::Error, 21, "has several sources");
}

#[test]
fn predicate_reading_a_task_without_storage_is_an_error() {
    let yaml = VALID.replacen("    storage: Db\n", "", 1);
    assert_reports(
        &check(&yaml),
        Severity::Error,
        20,
        "reads the result of task `Fetch`, which has no storage",
    );
}

#[test]
fn predicate_reading_a_readonly_task_is_an_error() {
    let yaml = VALID.replacen(
        "    storage: Db\n",
        "    storage: Db\n    storage_readonly: true\n",
        1,
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        22,
        "whose storage is read-only",
    );
}

#[test]
fn predicate_reading_a_subflow_is_an_error() {
    let yaml = VALID.replace(
            "      - from: Fetch\n        to: sub\n        condition:\n          name: fieldEqual\n          args: {key: status, value: ok}\n",
            "      - from: Fetch\n        to: sub\n      - from: sub\n        to: Parse\n        condition: {name: fieldExist, args: {key: a}}\n",
        );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        22,
        "reads the result of `sub`, which is a flow",
    );
}

#[test]
fn custom_predicates_module_accepts_unknown_predicates() {
    let yaml = VALID.replace("name: fieldEqual", "name: isGhRepo").replace(
        "flows: [main, sub]",
        "flows: [main, sub]\nglobal:\n  predicates_module: myapp.predicates",
    );
    let checked = check(&yaml);
    assert_clean(&checked);
    let system = checked.system.unwrap();
    assert_eq!(
        system.custom_predicates_module.as_deref(),
        Some("myapp.predicates")
    );
}

#[test]
fn and_with_or_in_one_mapping_is_an_error() {
    let yaml = VALID.replace(
        "        condition:\n          name: fieldEqual\n          args: {key: status, value: ok}\n",
        "        condition:\n          or: [{name: alwaysTrue}]\n          and: [{name: alwaysFalse}]\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        22,
        "`or` and `and` in one condition mapping",
    );
}

#[test]
fn condition_without_a_known_key_is_an_unknown_predicate() {
    let yaml = VALID.replace(
        "        condition:\n          name: fieldEqual\n          args: {key: status, value: ok}\n",
        "        condition:\n          nmae: fieldEqual\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        21,
        "unknown predicate in the condition",
    );
    assert_eq!(
        help_of(&checked, "unknown predicate in"),
        "did you mean `name`?"
    );
}

#[test]
fn null_condition_is_an_error() {
    let yaml = VALID.replace(
        "        condition:\n          name: fieldEqual\n          args: {key: status, value: ok}\n",
        "        condition:\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        20,
        "the condition of edge #1 of flow `main` is empty",
    );
}

#[test]
fn propagate_result_to_a_task_is_an_error() {
    let yaml = VALID.replace(
        "        to: sub\n",
        "        to: [sub, Parse]\n        foreach: {function: items, import: app.foreach, propagate_result: true}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        19,
        "sets `propagate_result`, but `Parse` is a task",
    );
}

#[test]
fn propagate_result_with_propagate_node_args_is_an_error() {
    let yaml = VALID
        .replace("        to: sub\n", "        to: sub\n        foreach: {function: items, import: app.foreach, propagate_result: true}\n")
        .replace("  - name: main\n", "  - name: main\n    propagate_node_args: true\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        20,
        "gets its arguments both from `foreach`",
    );
}

#[test]
fn selective_needs_one_flow_destination() {
    let yaml = VALID.replace(
        "        to: sub\n",
        "        to: [sub, Parse]\n        selective: {tasks: [Parse]}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        20,
        "needs exactly one `to` node, a flow",
    );
}

#[test]
fn selective_names_must_be_tasks() {
    let yaml = VALID.replace(
        "        to: sub\n",
        "        to: sub\n        selective: {tasks: [Parsee]}\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        20,
        "names `Parsee`, which is not a task",
    );
    assert_eq!(help_of(&checked, "Parsee"), "did you mean `Parse`?");
}

const WITH_FAILURES: &str = "\
tasks:
  - name: A
    import: app.tasks
  - name: B
    import: app.tasks
  - name: C
    import: app.tasks
flows: [f]
flow-definitions:
  - name: f
    edges:
      - from:
        to: [A, B]
    failures:
      - nodes: A
        fallback: C
";

#[test]
fn failures_config_is_valid() {
    let checked = check(WITH_FAILURES);
    assert_clean(&checked);
    let flow = &checked.system.unwrap().flows[0];
    assert_eq!(flow.failures.len(), 1);
}

#[test]
fn cyclic_fallback_is_an_error() {
    let yaml = WITH_FAILURES.replace("fallback: C", "fallback: A");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        16,
        "cyclic fallback: `A` falls back to itself",
    );
}

#[test]
fn unknown_fallback_node_is_an_error() {
    let yaml = WITH_FAILURES.replace("fallback: C", "fallback: [C, D]");
    assert_reports(&check(&yaml), Severity::Error, 16, "unknown node `D`");
}

#[test]
fn failure_entry_for_a_node_never_started_can_never_fire() {
    let yaml = WITH_FAILURES
        .replace("fallback: C", "fallback: B")
        .replace("      - nodes: A\n", "      - nodes: [A, C]\n");
    assert_reports(
        &check(&yaml),
        Severity::Warning,
        15,
        "handles `C`, which this flow never starts",
    );
}

#[test]
fn fallback_true_with_propagate_failure_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "fallback: C",
        "fallback: true\n        propagate_failure: true",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        16,
        "has `fallback: true` and `propagate_failure`",
    );
}

#[test]
fn fallback_true_is_accepted() {
    let yaml = WITH_FAILURES
        .replace("fallback: C", "fallback: true")
        .replace("  - name: C\n    import: app.tasks\n", "");
    let checked = check(&yaml);
    assert!(
        !checked.diagnostics.has_errors(),
        "{:?}",
        checked.diagnostics
    );
}

#[test]
fn failure_condition_reading_a_result_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "fallback: C",
        "fallback: C\n        condition: {name: fieldExist, args: {key: a}}",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        17,
        "failure conditions cannot",
    );
}

#[test]
fn failure_condition_on_node_args_is_accepted() {
    let yaml = WITH_FAILURES.replace(
        "fallback: C",
        "fallback: C\n        condition: {name: argsFieldExist, args: {key: a}}",
    );
    assert_clean(&check(&yaml));
}

#[test]
fn nowait_node_used_as_source_is_an_error() {
    let yaml = WITH_FAILURES.replace("    failures:\n", "    nowait: A\n    failures:\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "`A` is in `nowait` of flow `f` but is a source",
    );
}

#[test]
fn nowait_node_never_started_is_an_error() {
    let yaml = WITH_FAILURES
        .replace("    failures:\n", "    nowait: [C]\n    failures:\n")
        .replace("fallback: C", "fallback: B");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "`C` is in `nowait` of flow `f` but the flow never starts it",
    );
}

#[test]
fn eager_failure_covered_by_a_failure_entry_is_an_error() {
    let yaml = WITH_FAILURES.replace("    failures:\n", "    eager_failures: A\n    failures:\n");
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "a failure entry handles it",
    );
}

#[test]
fn eager_failure_of_a_nowait_node_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "    failures:\n",
        "    nowait: B\n    eager_failures: B\n    failures:\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        15,
        "is in both `eager_failures` and `nowait`",
    );
}

#[test]
fn eager_failure_outside_the_flow_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "    failures:\n",
        "    eager_failures: [Z]\n    failures:\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "`Z` is in `eager_failures` of flow `f` but is not a node",
    );
}

#[test]
fn eager_failures_true_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "    failures:\n",
        "    eager_failures: true\n    failures:\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "`eager_failures` of flow `f` must name nodes",
    );
}

#[test]
fn node_args_from_first_with_two_start_nodes_is_an_error() {
    let yaml = WITH_FAILURES.replace(
        "  - name: f\n",
        "  - name: f\n    node_args_from_first: true\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        10,
        "sets `node_args_from_first` but starts with more than one node",
    );
}

#[test]
fn node_args_from_first_needs_a_stored_first_task() {
    let yaml = WITH_FAILURES
        .replace(
            "  - name: f\n",
            "  - name: f\n    node_args_from_first: true\n",
        )
        .replace(
            "        to: [A, B]\n",
            "        to: A\n      - from: A\n        to: B\n",
        );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "its first task `A` has no storage",
    );
}

#[test]
fn task_used_as_source_but_never_started_is_an_error() {
    let yaml = WITH_FAILURES.replace("fallback: C", "fallback: B").replace(
        "        to: [A, B]\n",
        "        to: A\n      - from: C\n        to: B\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        14,
        "task `C` is a source in flow `f` but the flow never starts it",
    );
}

#[test]
fn edge_in_a_cycle_with_no_entry_never_fires() {
    let yaml = WITH_FAILURES
        .replace("    failures:\n      - nodes: A\n        fallback: C\n", "")
        .replace(
            "        to: [A, B]\n",
            "        to: A\n      - from: [A, C]\n        to: B\n      - from: B\n        to: C\n",
        );
    assert_reports(
        &check(&yaml),
        Severity::Warning,
        14,
        "edge #1 of flow `f` can never fire",
    );
}

const WITH_SUBFLOWS: &str = "\
tasks:
  - name: A
    import: app.tasks
  - name: B
    import: app.tasks
flows: [top, s1, s2]
flow-definitions:
  - name: top
    edges:
      - from:
        to: s1
      - from: s1
        to: s2
  - name: s1
    edges:
      - from:
        to: A
  - name: s2
    edges:
      - from:
        to: B
";

#[test]
fn subflow_config_is_valid() {
    assert_clean(&check(WITH_SUBFLOWS));
}

#[test]
fn propagate_flag_naming_a_task_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_parent: [A]\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "`propagate_parent` of flow `top` names `A`, which is not a flow",
    );
}

#[test]
fn propagate_node_args_naming_a_flow_that_is_not_a_subflow_is_a_warning() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_node_args: [s1, top]\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Warning,
        9,
        "names `top`, which is not a sub-flow of it",
    );
    assert!(!checked.diagnostics.has_errors());
}

#[test]
fn propagate_finished_of_a_non_source_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_finished: s2\n    propagate_parent: s2\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "`propagate_finished` of flow `top` names `s2`, which is not a source",
    );
}

#[test]
fn propagate_parent_of_a_non_destination_is_an_error() {
    let yaml = WITH_SUBFLOWS
        .replace(
            "  - name: top\n",
            "  - name: top\n    propagate_parent: s2\n",
        )
        .replace(
            "      - from: s1\n        to: s2\n",
            "      - from: s1\n        to: A\n",
        );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "`propagate_parent` of flow `top` names `s2`, which is not started by an edge",
    );
}

#[test]
fn finished_and_compound_finished_must_be_disjoint() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_finished: true\n    propagate_compound_finished: [s1]\n    propagate_parent: true\n",
    );
    assert_reports(&check(&yaml), Severity::Error, 8, "both select `s1`");
}

#[test]
fn finished_results_without_propagate_parent_is_a_warning() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_finished: true\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Warning,
        14,
        "`propagate_parent` of flow `top` does not include it",
    );
}

#[test]
fn propagate_failures_without_failure_entry_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_failures: [s1]\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "names `s1`, which has no failure entry",
    );
}

#[test]
fn propagate_flag_as_a_single_string_is_accepted() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_node_args: s1\n",
    );
    let checked = check(&yaml);
    assert_clean(&checked);
    let top = checked.system.unwrap().flows.into_iter().next().unwrap();
    assert_eq!(
        top.propagate.node_args.into_iter().collect::<Vec<_>>(),
        ["s1"]
    );
}

#[test]
fn unknown_sampling_strategy_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    sampling: {name: constnat, args: {retry: 2}}\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        9,
        "unknown sampling strategy `constnat`",
    );
    assert_eq!(help_of(&checked, "constnat"), "did you mean `constant`?");
}

#[test]
fn sampling_arguments_must_match_the_strategy() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    sampling:\n      name: constant\n      args: {start_retry: 2}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        10,
        "sampling strategy `constant` takes the arguments `retry`",
    );
}

#[test]
fn sampling_without_args_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    sampling: {name: constant}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "`sampling` of flow `top` has no `args`",
    );
}

#[test]
fn unknown_throttling_unit_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    throttling: {second: 2}\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        9,
        "unknown key `second` in `throttling` of flow `top`",
    );
    assert_eq!(help_of(&checked, "`second`"), "did you mean `seconds`?");
}

#[test]
fn throttling_units_add_up() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    throttling: {seconds: 1, milliseconds: 500}\n",
    );
    let checked = check(&yaml);
    assert_clean(&checked);
    assert_eq!(
        checked.system.unwrap().flows[0].throttling_us,
        Some(1_500_000)
    );
}

#[test]
fn unknown_flow_key_is_an_error_with_a_suggestion() {
    let yaml = WITH_SUBFLOWS.replace(
        "  - name: top\n",
        "  - name: top\n    propagate_nodeargs: true\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        9,
        "unknown key `propagate_nodeargs` in flow `top`",
    );
    assert_eq!(
        help_of(&checked, "propagate_nodeargs"),
        "did you mean `propagate_node_args`?"
    );
}

#[test]
fn unknown_global_key_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "flows: [top, s1, s2]\n",
        "flows: [top, s1, s2]\nglobal:\n  default_task_queu: q\n",
    );
    let checked = check(&yaml);
    assert_reports(
        &checked,
        Severity::Error,
        8,
        "unknown key `default_task_queu` in `global`",
    );
    assert_eq!(
        help_of(&checked, "default_task_queu"),
        "did you mean `default_task_queue`?"
    );
}

#[test]
fn unknown_top_level_key_is_a_warning() {
    let yaml = format!("{WITH_SUBFLOWS}extra: 1\n");
    assert_reports(
        &check(&yaml),
        Severity::Warning,
        22,
        "unknown key `extra` in the nodes file",
    );
}

#[test]
fn trace_storage_sink_must_name_a_storage() {
    let yaml = WITH_SUBFLOWS.replace(
        "flows: [top, s1, s2]\n",
        "flows: [top, s1, s2]\nglobal:\n  trace:\n    storage: {name: Nope}\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        9,
        "names storage `Nope`, which is not defined",
    );
}

#[test]
fn trace_given_as_import_and_function_is_an_error() {
    let yaml = WITH_SUBFLOWS.replace(
        "flows: [top, s1, s2]\n",
        "flows: [top, s1, s2]\nglobal:\n  trace:\n    import: app.trace\n    function: trace_func\n",
    );
    assert_reports(
        &check(&yaml),
        Severity::Error,
        10,
        "the `function` trace sink must be a mapping",
    );
}

#[test]
fn trace_sinks_of_every_kind_load() {
    let yaml = WITH_SUBFLOWS.replace(
        "flows: [top, s1, s2]\n",
        "flows: [top, s1, s2]\nglobal:\n  trace:\n    - logging: true\n    - json: true\n    - function: {name: f, import: app.trace}\n    - sentry: {dsn: '{SENTRY_DSN}'}\n",
    );
    let checked = check(&yaml);
    assert_clean(&checked);
    assert_eq!(checked.system.unwrap().trace.len(), 4);
}

#[test]
fn every_problem_of_a_run_is_reported() {
    let yaml = VALID
        .replacen("storage: Db", "storage: Nope", 1)
        .replace("name: fieldEqual", "name: fieldEqaul")
        .replace("to: Parse\n", "to: Parsee\n");
    let checked = check(&yaml);
    assert_eq!(
        checked.diagnostics.error_count(),
        3,
        "{:?}",
        checked.diagnostics
    );
}

#[test]
fn repeated_key_is_accepted_with_a_warning() {
    let yaml = VALID.replacen("    storage: Db\n", "    storage: Db\n    storage: Db\n", 1);
    let checked = check(&yaml);
    assert_reports(&checked, Severity::Warning, 5, "key `storage` is repeated");
    assert!(checked.system.is_some());
}

#[test]
fn merge_keys_clone_flow_definitions() {
    let yaml = "\
tasks:
  - name: A
    import: app.tasks
flows: [one, two]
flow-definitions:
  - &one
    name: one
    edges:
      - from:
        to: A
  - <<: *one
    name: two
";
    let checked = check(yaml);
    assert_clean(&checked);
    let system = checked.system.unwrap();
    assert_eq!(system.flows.len(), 2);
    assert_eq!(system.flows[1].name, "two");
    assert_eq!(system.flows[1].edges[0].to, ["A"]);
}

/// Upstream's documented diamond with its loop closed: the join's instances multiply.
const DIAMOND: &str = "\
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

#[test]
fn a_join_on_a_cycle_back_to_its_sources_warns_that_it_multiplies() {
    let checked = check(DIAMOND);
    assert_reports(
        &checked,
        Severity::Warning,
        14,
        "edge #2 of flow `diamond` joins `Task2` and `Task3` and leads back to them",
    );
    assert!(help_of(&checked, "leads back to them").contains("condition"));
    assert!(!checked.diagnostics.has_errors());

    // Without the loop, or with a loop back to one source only, nothing multiplies.
    assert_clean(&check(
        &DIAMOND.replace("      - from: Task4\n        to: Task1\n", ""),
    ));
    let one_source = DIAMOND
        .replace("        to: [Task2, Task3]\n", "        to: Task2\n")
        .replace(
            "      - from:\n        to: Task1\n",
            "      - from:\n        to: [Task1, Task3]\n",
        );
    let checked = check(&one_source);
    assert!(
        !checked
            .diagnostics
            .iter()
            .any(|d| d.message.contains("leads back")),
        "{}",
        checked.diagnostics.render(&checked.sources, false)
    );
}
