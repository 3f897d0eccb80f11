//! Transports: how task and dispatcher messages travel. [`local`] runs everything in this
//! process on tokio (the default); `amqp` (feature `amqp`) spreads work over worker processes
//! through RabbitMQ.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod local;
