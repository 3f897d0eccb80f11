//! What travels on the queues: JSON bodies with a version field.
//!
//! ```json
//! {"v":1,"kind":"task","task_name":"Hello","flow_name":"flow1","task_id":"…","dispatcher_id":"…",
//!  "parent":null,"node_args":{},"retried_count":0,"report":true}
//! ```
//!
//! Every message names its kind: `task` (run a task), `start` (start a flow instance, its
//! first dispatcher pass), `event` (a node of a flow ended: a sub-flow, or a pass to repeat)
//! and `kick` (a restarted flow's first pass). Anything else — not JSON, another version, an
//! unknown kind, task or flow — is a poison message: it goes to the dead-letter queue with
//! the reason in a header.

use serde::{Deserialize, Serialize};

use crate::engine::{DispatcherMessage, NodeEvent, TaskMessage};
use crate::system::System;

/// The version of the message format this runtime reads and writes.
pub const WIRE_VERSION: u32 = 1;

/// The flow a node reports its end to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent flow's name.
    pub flow_name: String,
    /// The parent flow instance's id.
    pub flow_id: String,
}

/// One message body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Run a task; `report` is false for `nowait` tasks, whose end no flow waits for.
    Task {
        /// The task to run.
        #[serde(flatten)]
        message: TaskMessage,
        /// Whether the task's end is reported to its flow.
        report: bool,
    },
    /// Start a flow instance: its first dispatcher pass.
    Start {
        /// The first dispatcher message of the flow.
        message: Box<DispatcherMessage>,
        /// The parent flow waiting for this one (not for roots and `nowait` sub-flows).
        #[serde(default)]
        report_to: Option<ParentRef>,
    },
    /// Nodes of a flow ended (a sub-flow), or a pass to repeat (`id` names the trigger).
    Event {
        /// The flow's name.
        flow_name: String,
        /// The flow instance's id.
        flow_id: String,
        /// What caused this message; a redelivery has the same id.
        id: String,
        /// The node instances that ended.
        events: Vec<NodeEvent>,
    },
    /// Run the first pass of a restarted flow (flow `max_retry`), after its countdown.
    Kick {
        /// The flow's name.
        flow_name: String,
        /// The flow instance's id.
        flow_id: String,
        /// The retry count of the restarted flow.
        retried_count: u32,
    },
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    body: &'a Body,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: Option<serde_json::Value>,
}

impl Body {
    /// The message as JSON bytes, with the wire format version.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Versioned {
            v: WIRE_VERSION,
            body: self,
        })
        .expect("message bodies serialise")
    }

    /// Reads a body and checks it against the system: the reason it is poison otherwise.
    pub fn decode(bytes: &[u8], system: &System) -> Result<Body, String> {
        let version: VersionOnly = serde_json::from_slice(bytes)
            .map_err(|e| format!("the message is not a JSON object: {e}"))?;
        match version.v {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(WIRE_VERSION.into()) => {}
            Some(other) => {
                return Err(format!(
                    "message format version {other} is not supported by this worker (it reads \
                     version {WIRE_VERSION})"
                ))
            }
            None => return Err("the message has no version field `v`".into()),
        }
        let body: Body = serde_json::from_slice(bytes)
            .map_err(|e| format!("the message is not a valid selinon message: {e}"))?;
        let known_flow = |name: &str| -> Result<(), String> {
            system
                .flow(name)
                .map(|_| ())
                .ok_or_else(|| format!("unknown flow `{name}`"))
        };
        match &body {
            Body::Task { message, .. } => {
                if system.task(&message.task_name).is_none() {
                    return Err(format!("unknown task `{}`", message.task_name));
                }
                known_flow(&message.flow_name)?;
            }
            Body::Start { message, report_to } => {
                known_flow(&message.flow_name)?;
                if let Some(parent) = report_to {
                    known_flow(&parent.flow_name)?;
                }
            }
            Body::Event { flow_name, .. } | Body::Kick { flow_name, .. } => known_flow(flow_name)?,
        }
        Ok(body)
    }

    /// A short name for logs.
    pub fn describe(&self) -> String {
        match self {
            Body::Task { message, .. } => {
                format!("task {} ({})", message.task_name, message.task_id)
            }
            Body::Start { message, .. } => {
                format!("start of flow {} ({})", message.flow_name, message.flow_id)
            }
            Body::Event {
                flow_name, flow_id, ..
            } => {
                format!("event for flow {flow_name} ({flow_id})")
            }
            Body::Kick {
                flow_name, flow_id, ..
            } => {
                format!("restart of flow {flow_name} ({flow_id})")
            }
        }
    }
}
