//! `output_schema` (spec §3.13, upstream `SelinonTaskEnvelope.validate_result`): a task's
//! result is validated against its JSON schema (embedded by the generator) before it is
//! stored; a result that does not conform fails the attempt like any other error, so
//! `max_retry` and fallbacks apply.

mod common;

use common::*;
use selinon_runtime::{json, Json, Runtime, TraceEvent, TraceRecorder};

mod config {
    // `output_schema` is relative to this file's folder (the nodes file of inline YAML).
    selinon_macros::flows!(
        r#"
        tasks:
          - name: Analyse
            import: common
            classname: Scripted
            storage: Memory
            output_schema: schemas/package.json
          - name: Flaky
            import: common
            classname: Scripted
            storage: Memory
            output_schema: schemas/package.json
            max_retry: 2
          - {name: Report, import: common, classname: Scripted, storage: Memory}
          - {name: Recover, import: common, classname: Scripted}
        storages:
          - name: Memory
            import: selinon.storages.memory
            classname: InMemoryStorage
            configuration: {echo: false}
        flows: [analyse, flaky]
        flow-definitions:
          - name: analyse
            edges:
              - {from: , to: Analyse}
              - {from: Analyse, to: Report}
            failures:
              - {nodes: Analyse, fallback: Recover}
          - name: flaky
            edges:
              - {from: , to: Flaky}
        "#
    );
}
use config::SYSTEM;

fn runtime(script: &std::sync::Arc<Script>, recorder: &TraceRecorder) -> Runtime {
    Runtime::builder(&SYSTEM)
        .resource_arc(script.clone())
        .trace_sink(recorder.clone())
        .build()
}

#[test]
fn the_schema_is_embedded_with_its_path() {
    let task = SYSTEM.tasks.iter().find(|t| t.name == "Analyse").unwrap();
    let schema = task.output_schema.expect("Analyse has an output schema");
    assert_eq!(schema.path, "schemas/package.json");
    let embedded: Json = serde_json::from_str(schema.json).unwrap();
    assert_eq!(embedded["required"], json!(["name", "version"]));
    let report = SYSTEM.tasks.iter().find(|t| t.name == "Report").unwrap();
    assert!(report.output_schema.is_none());
}

#[tokio::test]
async fn a_conforming_result_is_stored_and_the_flow_goes_on() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    let result = json!({"name": "selinon", "version": "1.4.0", "files": ["setup.py"]});
    script.set("Analyse", Behaviour::Result(result.clone()));
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::analyse::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(script.count("Report"), 1);
    assert_eq!(script.count("Recover"), 0);
    let id = &script.runs_of("Analyse")[0].task_id;
    assert_eq!(
        rt.task_result("analyse", "Analyse", id).await.unwrap(),
        result
    );
}

#[tokio::test]
async fn a_violating_result_fails_the_task_and_its_fallback_runs() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set(
        "Analyse",
        Behaviour::Result(json!({"name": "selinon", "version": 14, "files": ["a", 2]})),
    );
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::analyse::FLOW, Json::Null).await.unwrap();
    // The fallback handled the failure: the flow finishes, Report never runs.
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(script.count("Recover"), 1);
    assert_eq!(script.count("Report"), 0);
    // The fallback reads why Analyse failed, as for any failure.
    let recover = &script.runs_of("Recover")[0];
    let [(node, Some(reason))] = recover.parent_exceptions.as_slice() else {
        panic!("Recover handles Analyse: {:?}", recover.parent_exceptions);
    };
    assert_eq!(node, "Analyse");
    assert!(
        reason.starts_with(
            "task `Analyse`: the result does not match output schema `schemas/package.json`: "
        ),
        "{reason}"
    );
    assert!(
        reason.contains("at /version: 14 is not of type \"string\""),
        "{reason}"
    );
    assert!(reason.contains("at /files/1: "), "{reason}");
    // Nothing was stored: the result never reached the storage.
    let id = &script.runs_of("Analyse")[0].task_id;
    assert!(rt.task_result("analyse", "Analyse", id).await.is_err());
    assert_eq!(rec.count(TraceEvent::TaskFailure), 1);
    assert_eq!(rec.count(TraceEvent::TaskEnd), 1, "only Recover ended");
}

#[tokio::test]
async fn a_violation_is_retried_up_to_max_retry() {
    let (script, rec) = (Script::new(), TraceRecorder::new());
    let good = json!({"name": "selinon", "version": "1.0"});
    // Two violating results (a missing key, then the wrong version), then a conforming one.
    script.set(
        "Flaky",
        Behaviour::Results(vec![
            json!({"name": "selinon"}),
            json!({"name": "selinon", "version": "x"}),
            good.clone(),
        ]),
    );
    let rt = runtime(&script, &rec);
    let outcome = rt.run(&config::flaky::FLOW, Json::Null).await.unwrap();
    assert!(outcome.is_finished(), "{outcome:?}");
    assert_eq!(script.count("Flaky"), 3);
    assert_eq!(rec.count(TraceEvent::TaskRetry), 2);
    let retries = rec.of(TraceEvent::TaskRetry);
    let what = retries[0]["what"].as_str().unwrap_or_default().to_string();
    assert!(
        what.contains("at the root: \"version\" is a required property"),
        "{what}"
    );
    let id = &script.runs_of("Flaky")[0].task_id;
    assert_eq!(rt.task_result("flaky", "Flaky", id).await.unwrap(), good);

    // Retries exhausted: the task fails with the last violation.
    let (script, rec) = (Script::new(), TraceRecorder::new());
    script.set("Flaky", Behaviour::Result(json!([])));
    let outcome = runtime(&script, &rec)
        .run(&config::flaky::FLOW, Json::Null)
        .await
        .unwrap();
    assert!(outcome.is_failed());
    assert_eq!(script.count("Flaky"), 3, "max_retry 2: three attempts");
    let reason = outcome.failure_reason("Flaky").unwrap().to_string();
    assert!(
        reason.ends_with("at the root: [] is not of type \"object\" (schema /type)"),
        "{reason}"
    );
    let failures = outcome.failures().to_string();
    assert!(failures.contains("Flaky: task `Flaky`: the result does not match output schema `schemas/package.json`: at the root: [] is not of type \"object\""), "{failures}");
}
