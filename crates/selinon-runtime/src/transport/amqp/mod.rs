//! The distributed runtime: workers on many machines, connected by RabbitMQ (AMQP, through
//! `lapin`), sharing flow state in a backend (Redis).
//!
//! - Queues are those of the configuration: each task's `queue`, each flow's dispatcher
//!   `queue` (`{VAR}` placeholders expanded from the environment), durable, with persistent
//!   messages (see [`wire`] for the bodies).
//! - No central scheduler and no polling: the worker that sees a task end runs that flow's
//!   dispatcher pass at once and publishes what it starts; any worker can do so for any flow.
//! - One state writer at a time per flow: passes commit with optimistic concurrency on the
//!   backend ([`crate::backend`]); a pass that lost a race reads the new state and runs again.
//! - Nothing lost: messages are acknowledged after the work and the messages it caused are
//!   confirmed by the broker (see [`worker`] for the steps and what happens at each crash).
//! - Delays (retries, throttling, flow restarts) are per-delay queues with a TTL and a
//!   dead-letter route back to the target queue: no worker waits.
//! - Poison messages go to `selinon.dead-letter` with the reason in `x-selinon-reason`.
//!
//! ```no_run
//! # mod flows { pub mod flow1 { static SPEC: selinon_runtime::FlowSpec = selinon_runtime::FlowSpec::DEFAULT; pub static FLOW: selinon_runtime::Flow = selinon_runtime::Flow::new(&SPEC); } }
//! # async fn demo(system: &'static selinon_runtime::SystemSpec) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use selinon_runtime::amqp::{Client, RedisBackend, Worker};
//! let backend = Arc::new(RedisBackend::connect("redis://127.0.0.1:6379/").await?);
//! // A worker (usually its own process): every queue of the system, 16 messages at a time.
//! let worker = Worker::builder(system).backend(backend.clone()).concurrency(16).build()?;
//! tokio::spawn(worker.run());
//! // A client: start a flow and wait for its end.
//! let client = Client::connect(system, "amqp://127.0.0.1:5672/%2f", backend).await?;
//! let id = client.submit(&flows::flow1::FLOW, serde_json::json!({"name": "world"})).await?;
//! let outcome = client.wait(&id, std::time::Duration::from_secs(60)).await?;
//! assert!(outcome.is_finished());
//! # Ok(()) }
//! ```

pub mod broker;
mod cli;
mod client;
pub mod wire;
pub mod worker;

pub use crate::backend::{
    redis_url_from_env, FlowBackend, FlowRecord, MemoryBackend, Outgoing, RecordStatus,
    RedisBackend, DEFAULT_REDIS_URL,
};
pub use broker::{
    amqp_url_from_env, Broker, BrokerError, DelayQueues, DEAD_LETTER_QUEUE, DEFAULT_AMQP_URL,
    DELAY_BUCKETS_MS, REMAINING_DELAY_HEADER, REPUBLISHED_HEADER,
};
pub use cli::{worker_main, WORKER_USAGE};
pub use client::{flow_status, Client, ClientError, FlowReport};
pub use worker::{Worker, WorkerBuilder, WorkerError, DEFAULT_FLOW_CACHE};
