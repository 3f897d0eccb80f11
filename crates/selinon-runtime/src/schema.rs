//! `output_schema` of a task (spec §3.13): every result the task returns is validated against
//! the task's JSON schema before it is stored; a result that does not conform fails the
//! attempt like any other error (retries and fallbacks apply).
//!
//! The generator embeds the schema's text in the generated code ([`OutputSchema`]), so
//! workers read no file. Each task's validator is compiled once, when the task first returns
//! a result, and kept for the life of the [`System`](crate::system::System) (a worker process
//! has one).

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value as Json;

use crate::spec::OutputSchema;
use crate::task::TaskError;

/// How many violations a failure message lists (a result with many gets "… and N more").
pub const MAX_LISTED_VIOLATIONS: usize = 3;

/// Longest text of one violation in a failure message (the offending value can be large).
const MAX_VIOLATION_CHARS: usize = 200;

/// A task's schema, compiled on first use.
#[derive(Default)]
pub struct SchemaSlot {
    compiled: OnceLock<Result<jsonschema::Validator, String>>,
}

impl fmt::Debug for SchemaSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.compiled.get() {
            None => "not compiled",
            Some(Ok(_)) => "compiled",
            Some(Err(_)) => "invalid",
        };
        f.debug_struct("SchemaSlot").field("state", &state).finish()
    }
}

/// Compiles a schema's text: the error says what is wrong with it.
pub fn compile(json: &str) -> Result<jsonschema::Validator, String> {
    let schema: Json =
        serde_json::from_str(json).map_err(|e| format!("the schema is not JSON: {e}"))?;
    jsonschema::validator_for(&schema).map_err(|e| format!("the schema is not valid: {e}"))
}

impl SchemaSlot {
    /// Validates a result of `task` against `schema` (compiling it first if this is the first
    /// result). A violation is an ordinary failure ([`TaskError::Failed`], retried up to
    /// `max_retry`); a schema that does not compile is fatal (no retry can fix it; the
    /// generator rejects such schemas, so only hand-written tables have them).
    pub fn validate(
        &self,
        task: &str,
        schema: &OutputSchema,
        result: &Json,
    ) -> Result<(), TaskError> {
        let validator = match self.compiled.get_or_init(|| compile(schema.json)) {
            Ok(v) => v,
            Err(e) => {
                return Err(TaskError::fatal(format!(
                    "task `{task}`: output schema `{}` cannot be used: {e}",
                    schema.path
                )))
            }
        };
        let mut errors = validator.iter_errors(result);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let mut listed = vec![violation(&first)];
        let mut more = 0usize;
        for e in errors {
            if listed.len() < MAX_LISTED_VIOLATIONS {
                listed.push(violation(&e));
            } else {
                more += 1;
            }
        }
        let mut message = format!(
            "task `{task}`: the result does not match output schema `{}`: {}",
            schema.path,
            listed.join("; ")
        );
        if more > 0 {
            message.push_str(&format!(" (and {more} more)"));
        }
        Err(TaskError::failed(message))
    }
}

/// `at /items/0: "x" is not of type "integer" (schema /properties/items/items/type)`.
fn violation(e: &jsonschema::ValidationError<'_>) -> String {
    let at = match e.instance_path().as_str() {
        "" => "the root".to_string(),
        p => p.to_string(),
    };
    let mut what = e.to_string();
    if what.chars().count() > MAX_VIOLATION_CHARS {
        what = what.chars().take(MAX_VIOLATION_CHARS).collect::<String>() + "…";
    }
    format!("at {at}: {what} (schema {})", e.schema_path().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: OutputSchema = OutputSchema {
        path: "schemas/t.json",
        json: r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}}}"#,
    };

    #[test]
    fn conforming_result_passes() {
        let slot = SchemaSlot::default();
        assert!(slot.validate("T", &SCHEMA, &json!({"id": 1})).is_ok());
        assert!(format!("{slot:?}").contains("compiled"));
    }

    #[test]
    fn violation_names_task_schema_and_instance_path() {
        let slot = SchemaSlot::default();
        let err = slot
            .validate("T", &SCHEMA, &json!({"id": "x", "tags": ["a", 2]}))
            .unwrap_err();
        let TaskError::Failed(message) = err else {
            panic!("expected an ordinary failure, got {err:?}");
        };
        assert!(
            message.starts_with(
                "task `T`: the result does not match output schema `schemas/t.json`: "
            ),
            "{message}"
        );
        assert!(message.contains("at /id: "), "{message}");
        assert!(message.contains("at /tags/1: "), "{message}");
        assert!(
            message.contains("(schema /properties/id/type)"),
            "{message}"
        );
    }

    #[test]
    fn root_violation_and_long_lists_are_summarised() {
        let slot = SchemaSlot::default();
        let err = slot.validate("T", &SCHEMA, &json!(null)).unwrap_err();
        assert!(err.to_string().contains("at the root: "), "{err}");
        let many = OutputSchema {
            path: "s.json",
            json: r#"{"type":"array","items":{"type":"integer"}}"#,
        };
        let err = slot_validate(&many, json!(["a", "b", "c", "d", "e"]));
        assert!(err.contains("(and 2 more)"), "{err}");
        assert!(!err.contains("at /3"), "{err}");
    }

    fn slot_validate(schema: &OutputSchema, result: Json) -> String {
        SchemaSlot::default()
            .validate("T", schema, &result)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_schema_that_does_not_compile_fails_for_good() {
        let broken = OutputSchema {
            path: "bad.json",
            json: r#"{"type": 12}"#,
        };
        let err = SchemaSlot::default()
            .validate("T", &broken, &json!({}))
            .unwrap_err();
        assert!(matches!(err, TaskError::Fatal(_)), "{err:?}");
        assert!(
            err.to_string().contains("`bad.json` cannot be used"),
            "{err}"
        );
        let not_json = OutputSchema {
            path: "x.json",
            json: "{",
        };
        let err = slot_validate(&not_json, json!({}));
        assert!(err.contains("not JSON"), "{err}");
    }
}
