//! The task envelope (§3.13): runs one attempt of a task and says what comes next.
//!
//! An attempt runs the user's code through the task's generated `run`, catches a panic (the
//! task is then reported failed like any other error and the worker goes on), validates the
//! result against the task's `output_schema` ([`crate::schema`]; a result that does not
//! conform is a failure like any other), stores the result in the task's storage unless it is
//! `storage_readonly`, and decides between success,
//! a retry (after a countdown; the transport waits, not a worker slot) and a final failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{json, Value as Json};
use tracing::Instrument;

use crate::engine::TaskMessage;
use crate::storage::StorageError;
use crate::storage::StoragePool;
use crate::system::System;
use crate::task::{TaskContext, TaskEnv, TaskError};
use crate::trace::{TraceEvent, Tracer};

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// The task succeeded; its result is stored (if it has a writable storage).
    Succeeded,
    /// Run the task again after `countdown`, with `message.retried_count = retried_count`.
    Retry {
        /// Delay before the next attempt.
        countdown: Duration,
        /// The retry count of the next attempt.
        retried_count: u32,
        /// Asked by the task (`TaskError::Retry`), not counted against `max_retry`.
        user_retry: bool,
    },
    /// The task failed for good.
    Failed {
        /// The task's error, as text.
        error: String,
    },
}

/// Runs one attempt of the task of `message`, in a `task` span (target `selinon`, level info)
/// with fields `flow_name`, `dispatcher_id`, `task_name` and `task_id`: the task's own log
/// lines and the runtime's about it carry them.
pub async fn run_attempt(
    system: &System,
    pool: &StoragePool,
    tracer: &Tracer,
    message: &TaskMessage,
    env: Arc<dyn TaskEnv>,
) -> AttemptOutcome {
    let span = tracing::info_span!(
        target: "selinon",
        "task",
        flow_name = %message.flow_name,
        dispatcher_id = %message.dispatcher_id,
        task_name = %message.task_name,
        task_id = %message.task_id,
    );
    run_attempt_in_span(system, pool, tracer, message, env)
        .instrument(span)
        .await
}

async fn run_attempt_in_span(
    system: &System,
    pool: &StoragePool,
    tracer: &Tracer,
    message: &TaskMessage,
    env: Arc<dyn TaskEnv>,
) -> AttemptOutcome {
    let name = message.task_name.as_str();
    let Some(task_id) = system.task_id(name) else {
        let error = format!("unknown task `{name}`");
        trace_failure(tracer, message, &error, "");
        return AttemptOutcome::Failed { error };
    };
    let task = system.task_by_id(task_id);
    let base = || {
        json!({
            "flow_name": message.flow_name,
            "task_name": message.task_name,
            "task_id": message.task_id,
            "parent": message.parent,
            "node_args": message.node_args,
            "dispatcher_id": message.dispatcher_id,
            "queue": task.queue,
        })
    };
    tracer.emit_with(TraceEvent::TaskStart, base);

    let mut ctx = TaskContext::new(
        message.flow_name.clone(),
        message.task_name.clone(),
        message.task_id.clone(),
        message.dispatcher_id.clone(),
        message.parent.clone(),
        message.retried_count,
        env,
    );
    ctx.fallback_for = message.fallback_for.clone();
    let node_args = message.node_args.clone();
    let outcome: Result<Json, TaskError> = async {
        let started = std::panic::catch_unwind(AssertUnwindSafe(|| (task.run)(ctx, node_args)));
        let future = match started {
            Ok(future) => future,
            Err(panic) => return Err(panicked(&*panic)),
        };
        let result = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(r) => r?,
            Err(panic) => return Err(panicked(&*panic)),
        };
        system.check_output(task_id, &result)?;
        if task.storage.is_some() && !task.storage_readonly {
            pool.store(
                &message.node_args,
                &message.flow_name,
                name,
                &message.task_id,
                &result,
            )
            .await
            .map_err(|e| TaskError::failed(format!("storing the result: {e}")))?;
        } else if !result.is_null() {
            tracer.emit_with(TraceEvent::TaskDiscardResult, || {
                with(base(), json!({"result": result}))
            });
        }
        Ok(result)
    }
    .await;

    match outcome {
        Ok(_) => {
            tracer.emit_with(TraceEvent::TaskEnd, || {
                with(base(), json!({"storage": task.storage}))
            });
            AttemptOutcome::Succeeded
        }
        Err(TaskError::Retry { countdown }) => {
            trace_retry(tracer, base(), message, countdown, task.max_retry, true);
            AttemptOutcome::Retry {
                countdown,
                retried_count: message.retried_count,
                user_retry: true,
            }
        }
        Err(err) => {
            let fatal = matches!(err, TaskError::Fatal(_));
            if !fatal && message.retried_count < task.max_retry {
                let retried_count = message.retried_count + 1;
                let mut next = message.clone();
                next.retried_count = retried_count;
                let detail = with(base(), json!({"what": err.to_string()}));
                trace_retry(
                    tracer,
                    detail,
                    &next,
                    task.retry_countdown,
                    task.max_retry,
                    false,
                );
                return AttemptOutcome::Retry {
                    countdown: task.retry_countdown,
                    retried_count,
                    user_retry: false,
                };
            }
            let error = err.to_string();
            trace_failure(tracer, message, &error, task.queue);
            if task.storage.is_some() && !task.storage_readonly {
                match pool
                    .store_error(
                        &message.node_args,
                        &message.flow_name,
                        name,
                        &message.task_id,
                        &error,
                    )
                    .await
                {
                    Ok(()) => tracer.emit_with(TraceEvent::StorageStoreError, || {
                        with(base(), json!({"error": error}))
                    }),
                    Err(StorageError::NotSupported(_)) => tracer
                        .emit_with(TraceEvent::StorageOmitStoreError, || {
                            with(base(), json!({"error": error}))
                        }),
                    Err(e) => tracer.emit_with(TraceEvent::StorageIssue, || {
                        with(base(), json!({"what": e.to_string()}))
                    }),
                }
            }
            AttemptOutcome::Failed { error }
        }
    }
}

fn panicked(panic: &(dyn std::any::Any + Send)) -> TaskError {
    TaskError::failed(format!(
        "task panicked: {}",
        crate::engine::panic_message(panic)
    ))
}

fn with(mut base: Json, extra: Json) -> Json {
    if let (Some(map), Json::Object(extra)) = (base.as_object_mut(), extra) {
        map.extend(extra);
    }
    base
}

fn trace_retry(
    tracer: &Tracer,
    base: Json,
    message: &TaskMessage,
    countdown: Duration,
    max_retry: u32,
    user_retry: bool,
) {
    tracer.emit_with(TraceEvent::TaskRetry, || {
        with(
            base,
            json!({
                "retry_countdown": countdown.as_secs_f64(),
                "retried_count": message.retried_count,
                "user_retry": user_retry,
                "max_retry": max_retry,
            }),
        )
    });
}

fn trace_failure(tracer: &Tracer, message: &TaskMessage, error: &str, queue: &str) {
    tracer.emit_with(TraceEvent::TaskFailure, || {
        json!({
            "flow_name": message.flow_name,
            "task_name": message.task_name,
            "task_id": message.task_id,
            "parent": message.parent,
            "node_args": message.node_args,
            "dispatcher_id": message.dispatcher_id,
            "queue": queue,
            "what": error,
            "retried_count": message.retried_count,
        })
    });
}
