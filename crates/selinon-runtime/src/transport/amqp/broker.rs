//! The connection to RabbitMQ: connecting with backoff, declaring queues, publishing with
//! confirms.
//!
//! Queues are durable and messages persistent. Publishes go out on a channel in confirm mode
//! with `mandatory` set: a batch is sent without waiting, then all its confirms are awaited
//! together (many handlers do this at once, so a window of confirms is in flight), and a
//! message the broker could not route or store is an error, never a silent loss.
//!
//! Delays (task `retry_countdown`, throttling, flow retries) are delay queues: a message for
//! queue `Q` due in `N` ms goes to `selinon.delay.Q.Nms`, a quorum queue with a TTL of `N` ms
//! whose dead-letter route (at-least-once) is `Q`. No worker slot waits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::RwLock;

use crate::backend::Outgoing;

/// The queue poison messages go to, with the reason in the header `x-selinon-reason`.
pub const DEAD_LETTER_QUEUE: &str = "selinon.dead-letter";
/// The fanout exchange that hears of every root flow's end (for clients waiting on flows).
pub const FLOW_ENDED_EXCHANGE: &str = "selinon.flow-ended";
/// The default AMQP URL.
pub const DEFAULT_AMQP_URL: &str = "amqp://127.0.0.1:5672/%2f";

/// A broker failure.
#[derive(Debug, thiserror::Error)]
#[error("AMQP broker at {url}: {message}")]
pub struct BrokerError {
    pub url: String,
    pub message: String,
}

/// One live connection with its publishing channel.
pub(crate) struct Link {
    pub connection: Connection,
    publisher: Channel,
    declared: Mutex<HashSet<String>>,
}

impl Link {
    pub fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// A connection to the broker that comes back after it drops.
pub struct Broker {
    url: String,
    name: String,
    link: RwLock<Option<Arc<Link>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("url", &self.url).finish()
    }
}

/// Connection properties for lapin on tokio: the executor and reactor, a name shown in the management UI.
pub fn connection_properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name(LongString::from(name.to_string()))
}

pub(crate) fn field_table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

impl Broker {
    /// A broker handle; nothing is connected until first use.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Broker {
            url: url.into(),
            name: name.into(),
            link: RwLock::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn error(&self, message: impl std::fmt::Display) -> BrokerError {
        BrokerError {
            url: self.url.clone(),
            message: message.to_string(),
        }
    }

    /// Opens a new connection (no retries).
    pub(crate) async fn open(&self) -> Result<Connection, BrokerError> {
        Connection::connect(&self.url, connection_properties(&self.name))
            .await
            .map_err(|e| {
                self.error(format!(
                    "cannot connect: {e} (is RabbitMQ running? start it with \
                     `rabbitmq-server -detached`)"
                ))
            })
    }

    /// The live link, connecting once if there is none.
    pub(crate) async fn link(&self) -> Result<Arc<Link>, BrokerError> {
        if let Some(link) = self.link.read().await.as_ref() {
            if link.is_alive() {
                return Ok(link.clone());
            }
        }
        let mut slot = self.link.write().await;
        if let Some(link) = slot.as_ref() {
            if link.is_alive() {
                return Ok(link.clone());
            }
        }
        let connection = self.open().await?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| self.error(format!("cannot open a channel: {e}")))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.error(format!("cannot enable publisher confirms: {e}")))?;
        let link = Arc::new(Link {
            connection,
            publisher,
            declared: Mutex::new(HashSet::new()),
        });
        *slot = Some(link.clone());
        Ok(link)
    }

    /// The live link, retrying with backoff (100 ms doubling to 5 s) until `patience` ends.
    pub(crate) async fn link_with_retry(
        &self,
        patience: Duration,
    ) -> Result<Arc<Link>, BrokerError> {
        let start = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.link().await {
                Ok(link) => return Ok(link),
                Err(e) if start.elapsed() + wait > patience => return Err(e),
                Err(e) => {
                    tracing::warn!("{e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Forgets a link that failed, so that the next use reconnects.
    pub(crate) async fn drop_link(&self, failed: &Arc<Link>) {
        let mut slot = self.link.write().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, failed)) {
            *slot = None;
            let _ = failed.connection.close(320, "reconnecting").await;
        }
    }

    /// Closes the connection (a clean goodbye to the broker).
    pub async fn close(&self) {
        if let Some(link) = self.link.write().await.take() {
            let _ = link.connection.close(200, "bye").await;
        }
    }

    /// Declares a durable queue once per connection.
    pub(crate) async fn declare(
        &self,
        link: &Link,
        queue: &str,
        arguments: FieldTable,
    ) -> Result<(), BrokerError> {
        if link
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(queue)
        {
            return Ok(());
        }
        link.publisher
            .queue_declare(queue, durable(), arguments)
            .await
            .map_err(|e| self.error(format!("cannot declare queue `{queue}`: {e}")))?;
        link.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_string());
        Ok(())
    }

    /// Declares the queues every deployment has: the dead-letter queue and the flow-end
    /// exchange.
    pub(crate) async fn declare_common(&self, link: &Link) -> Result<(), BrokerError> {
        self.declare(link, DEAD_LETTER_QUEUE, FieldTable::default())
            .await?;
        if !link
            .declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(FLOW_ENDED_EXCHANGE)
        {
            link.publisher
                .exchange_declare(
                    FLOW_ENDED_EXCHANGE,
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.error(format!("cannot declare exchange: {e}")))?;
            link.declared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(FLOW_ENDED_EXCHANGE.to_string());
        }
        Ok(())
    }

    /// The queue a message due in `delay_ms` goes to (declared on first use).
    async fn delay_queue(
        &self,
        link: &Link,
        queue: &str,
        delay_ms: u64,
    ) -> Result<String, BrokerError> {
        let name = format!("selinon.delay.{queue}.{delay_ms}ms");
        // A quorum queue with at-least-once dead-lettering: a message due while the broker
        // stops is still moved to its queue (a classic queue may drop it then).
        let args = field_table(&[
            (
                "x-queue-type",
                AMQPValue::LongString(LongString::from("quorum")),
            ),
            (
                "x-dead-letter-strategy",
                AMQPValue::LongString(LongString::from("at-least-once")),
            ),
            (
                "x-overflow",
                AMQPValue::LongString(LongString::from("reject-publish")),
            ),
            ("x-message-ttl", AMQPValue::LongLongInt(delay_ms as i64)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from("")),
            ),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(LongString::from(queue.to_string())),
            ),
            // An unused delay queue goes away (after its messages are due).
            (
                "x-expires",
                AMQPValue::LongLongInt(delay_ms as i64 + 600_000),
            ),
        ]);
        self.declare(link, &name, args).await?;
        Ok(name)
    }

    /// Publishes a batch and waits for all its confirms; an error means some message may not
    /// have been stored, so the caller must not acknowledge what caused the batch.
    pub async fn publish_all(&self, batch: &[Outgoing]) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let link = self.link().await?;
        let result = self.publish_on(&link, batch).await;
        if result.is_err() && !link.is_alive() {
            self.drop_link(&link).await;
        }
        result
    }

    async fn publish_on(&self, link: &Link, batch: &[Outgoing]) -> Result<(), BrokerError> {
        let mut confirms = Vec::with_capacity(batch.len());
        for out in batch {
            let (exchange, routing_key) = if !out.exchange.is_empty() {
                self.declare_common(link).await?;
                (out.exchange.as_str(), out.routing_key.clone())
            } else if out.delay_ms > 0 {
                self.declare(link, &out.routing_key, FieldTable::default())
                    .await?;
                (
                    "",
                    self.delay_queue(link, &out.routing_key, out.delay_ms)
                        .await?,
                )
            } else {
                self.declare(link, &out.routing_key, FieldTable::default())
                    .await?;
                ("", out.routing_key.clone())
            };
            let props = BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_delivery_mode(if out.durable { 2 } else { 1 });
            let confirm = link
                .publisher
                .basic_publish(
                    exchange,
                    &routing_key,
                    BasicPublishOptions {
                        mandatory: out.exchange.is_empty(),
                        ..BasicPublishOptions::default()
                    },
                    out.body.as_bytes(),
                    props,
                )
                .await
                .map_err(|e| self.error(format!("publish to `{routing_key}` failed: {e}")))?;
            confirms.push((routing_key, out.durable, confirm));
        }
        for (routing_key, durable, confirm) in confirms {
            let confirmation = confirm
                .await
                .map_err(|e| self.error(format!("publish to `{routing_key}` failed: {e}")))?;
            match confirmation {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) | Confirmation::NotRequested if !durable => {}
                Confirmation::NotRequested => {
                    return Err(self.error("the publishing channel is not in confirm mode"))
                }
                Confirmation::Ack(Some(returned)) => {
                    return Err(self.error(format!(
                        "the broker could not route a message to `{routing_key}`: {}",
                        returned.reply_text
                    )))
                }
                Confirmation::Nack(_) => {
                    return Err(self.error(format!(
                        "the broker refused a message for `{routing_key}` (nack)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Sends a message, as it came, to the dead-letter queue with the reason in its headers.
    pub(crate) async fn dead_letter(
        &self,
        body: &[u8],
        queue: &str,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let headers = field_table(&[
            (
                "x-selinon-reason",
                AMQPValue::LongString(LongString::from(reason.to_string())),
            ),
            (
                "x-selinon-queue",
                AMQPValue::LongString(LongString::from(queue.to_string())),
            ),
        ]);
        let link = self.link().await?;
        let sent = async {
            self.declare_common(&link).await?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers);
            let confirm = link
                .publisher
                .basic_publish(
                    "",
                    DEAD_LETTER_QUEUE,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    props,
                )
                .await
                .map_err(|e| self.error(format!("dead-lettering failed: {e}")))?;
            match confirm
                .await
                .map_err(|e| self.error(format!("dead-lettering failed: {e}")))?
            {
                Confirmation::Ack(None) => Ok(()),
                _ => Err(self.error("the broker did not take a dead-lettered message")),
            }
        }
        .await;
        if sent.is_err() && !link.is_alive() {
            self.drop_link(&link).await;
        }
        sent
    }
}
