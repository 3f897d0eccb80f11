//! The engine: one dispatcher pass over a flow instance (spec §3.2–3.12).
//!
//! A pass is a function of the flow's message (its state in upstream's JSON shape), the node
//! completions learned since the last pass and an environment that reads stored results:
//! [`dispatch`] returns the new message, the [`Action`]s to carry out (tasks and sub-flows to
//! start) and how the flow stands ([`PassOutcome`]). It starts nothing itself and keeps no
//! state between passes, so any transport can drive it: the in-process runtime
//! ([`crate::Runtime`]) runs one pass per batch of completions of a flow, with one state writer
//! per flow; a distributed transport saves the returned message before publishing the actions.
//!
//! There is no polling: a pass runs when a node's completion is known. Upstream's sampling
//! strategies only decide when to poll again, so a flow here ends exactly when upstream's
//! built-in strategies end it: after a pass that leaves no active node.

mod migration;
mod pass;
mod selective;
mod state;
mod throttle;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value as Json;

pub use pass::{dispatch, dispatch_owned, PassChanges};

pub(crate) use pass::panic_message;
pub use selective::{RunSubsequent, SelectiveError, SelectiveMap};
pub use state::{
    Action, DispatcherMessage, FailureReason, FlowFailure, FlowResult, FlowState, NodeEvent,
    NodeIds, NodeRef, NodeStatus, PassOutcome, PassOutput, TaskMessage,
};
pub use throttle::Throttler;

use crate::storage::{StorageError, StoragePool};
use crate::trace::Tracer;

/// What a pass may ask of the world: stored results, results of ended sub-flows, fresh ids,
/// throttling and tracing. Reads only: a pass changes nothing outside its output.
#[async_trait]
pub trait EngineEnv: Send + Sync {
    /// The stored result of a task instance (edge conditions, `node_args_from_first`).
    async fn retrieve(
        &self,
        flow_name: &str,
        task_name: &str,
        task_id: &str,
    ) -> Result<Json, StorageError>;

    /// The result of an ended sub-flow instance (`propagate_finished`), `None` if unknown.
    async fn flow_result(&self, flow_name: &str, flow_id: &str) -> Option<FlowResult>;

    /// The worker's storages, lent to `foreach` and selective run functions
    /// ([`crate::userfn::StorageView`]); `None` where there are none (their storage access
    /// then fails).
    fn storage_pool(&self) -> Option<&StoragePool> {
        None
    }

    /// A new, unique node id (a random UUID, [`random_id`]).
    fn new_id(&self) -> String {
        random_id()
    }

    /// The countdown before a throttled node may start now (§3.14).
    fn throttle(&self, node: &str, is_flow: bool, interval: Duration) -> Duration;

    /// Where trace events go.
    fn tracer(&self) -> &Tracer;

    /// The most nodes one flow instance may start ([`DEFAULT_MAX_NODES`]): a pass that would
    /// go beyond fails the flow with an error naming the edge, instead of exhausting memory.
    fn max_nodes(&self) -> usize {
        DEFAULT_MAX_NODES
    }
}

/// A random (version 4) UUID, hyphenated, as `uuid::Uuid::new_v4` makes it, from random bytes
/// the OS gives in blocks: one `getrandom` call per 64 ids, not one per id.
///
/// The block is the calling thread's: a process forked without `exec` must not make ids from
/// the thread that forked it before that thread makes 64 new ones (no runtime here forks).
pub fn random_id() -> String {
    use std::cell::RefCell;
    const BLOCK: usize = 64 * 16;
    thread_local! {
        /// Random bytes, and how many of them were used.
        static POOL: RefCell<([u8; BLOCK], usize)> = const { RefCell::new(([0; BLOCK], BLOCK)) };
    }
    let bytes = POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used == BLOCK {
            getrandom::fill(bytes).ok()?;
            *used = 0;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[*used..*used + 16]);
        *used += 16;
        Some(id)
    });
    let id = match bytes {
        Some(bytes) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        None => uuid::Uuid::new_v4(),
    };
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_string()
}

/// The default of [`EngineEnv::max_nodes`]: far beyond any real flow, well below what a join
/// on a cycle reaches when its instances multiply.
pub const DEFAULT_MAX_NODES: usize = 100_000;

/// Shortest wait before repeating a pass that could not read a storage, so that a flow whose
/// `retry_countdown` is 0 does not spin.
pub const MIN_PASS_RETRY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_are_distinct_v4_uuids() {
        let ids: Vec<String> = (0..200).map(|_| super::random_id()).collect();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.hyphenated().to_string(), *id);
        }
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
