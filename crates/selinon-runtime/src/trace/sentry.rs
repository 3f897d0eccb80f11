//! Failures to Sentry (feature `sentry`): `global.trace: [{sentry: {dsn: …}}]` as upstream, or
//! [`SentrySink::new`]. Each failure-class trace event (a task or flow that failed for good,
//! a dispatcher failure, storage and backend issues, migration trouble) becomes one Sentry
//! event with the flow, task and ids as tags and the event's details as context.

use std::sync::Arc;
use std::time::Duration;

use sentry::protocol::{Event, Level};
use sentry::{Client, ClientOptions, Hub, Scope};
use serde_json::Value as Json;

use crate::trace::{TraceEvent, TraceSink};

/// Reports failure-class trace events to one Sentry project.
pub struct SentrySink {
    client: Arc<Client>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for SentrySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentrySink").finish_non_exhaustive()
    }
}

impl SentrySink {
    /// A sink for the project of `dsn` (`https://KEY@HOST/PROJECT`).
    pub fn new(dsn: &str) -> Result<Self, String> {
        let dsn: sentry::types::Dsn = dsn
            .parse()
            .map_err(|e| format!("Sentry DSN `{dsn}`: {e}"))?;
        let mut options = ClientOptions::default();
        options.dsn = Some(dsn);
        let client = Arc::new(Client::from(sentry::apply_defaults(options)));
        let hub = Arc::new(Hub::new(Some(client.clone()), Arc::new(Scope::default())));
        Ok(SentrySink { client, hub })
    }

    /// Sends what is queued; true if all of it went out within `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.client.flush(Some(timeout))
    }

    fn level(event: TraceEvent) -> Option<Level> {
        match event {
            TraceEvent::DispatcherFailure | TraceEvent::MigrationError => Some(Level::Error),
            TraceEvent::TaskFailure
            | TraceEvent::FlowFailure
            | TraceEvent::StorageIssue
            | TraceEvent::ResultBackendIssue
            | TraceEvent::MigrationSkew
            | TraceEvent::MigrationTaintedFlow
            | TraceEvent::EagerFailure => Some(Level::Warning),
            _ => None,
        }
    }
}

impl Drop for SentrySink {
    fn drop(&mut self) {
        self.client.close(Some(Duration::from_secs(2)));
    }
}

impl TraceSink for SentrySink {
    fn trace(&self, event: TraceEvent, details: &Json) {
        let Some(level) = Self::level(event) else {
            return;
        };
        // A flow failure that a retry follows is not a failure yet.
        if event == TraceEvent::FlowFailure && details["will_retry"] == Json::Bool(true) {
            return;
        }
        let text = |k: &str| details[k].as_str().map(str::to_string);
        let what = text("what").unwrap_or_default();
        let subject = match (text("task_name"), text("flow_name")) {
            (Some(task), Some(flow)) => format!("task {task} of flow {flow}"),
            (None, Some(flow)) => format!("flow {flow}"),
            _ => String::new(),
        };
        let mut sentry_event = Event {
            level,
            message: Some(
                format!("{}: {subject} {what}", event.name())
                    .trim()
                    .to_string(),
            ),
            logger: Some("selinon".into()),
            ..Event::default()
        };
        sentry_event
            .tags
            .insert("event".into(), event.name().into());
        for key in [
            "flow_name",
            "task_name",
            "dispatcher_id",
            "task_id",
            "queue",
        ] {
            if let Some(v) = text(key) {
                sentry_event.tags.insert(key.into(), v);
            }
        }
        if let Json::Object(map) = details {
            let context: std::collections::BTreeMap<String, Json> =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            sentry_event.contexts.insert(
                "selinon".into(),
                sentry::protocol::Context::Other(context.into_iter().collect()),
            );
        }
        self.hub.capture_event(sentry_event);
    }
}
