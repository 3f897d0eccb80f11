//! The connection to RabbitMQ: connecting with backoff, declaring queues, publishing with
//! confirms.
//!
//! Queues are durable and messages persistent. Publishes go out on a channel in confirm mode
//! with `mandatory` set: a batch is sent without waiting, then all its confirms are awaited
//! together (many handlers do this at once, so a window of confirms is in flight), and a
//! message the broker could not route or store is an error, never a silent loss.
//!
//! Delays (task `retry_countdown`, throttling, flow retries) are delay queues: a message for
//! queue `Q` due in `N` ms goes to `selinon.delay.Q.Nms.rRms.E`, a quorum queue with a TTL of
//! `N` ms whose dead-letter route (at-least-once) is `Q`. No worker slot waits.
//!
//! Delay queues must never disappear while they hold a message. RabbitMQ deletes a queue
//! with `x-expires` once it is unused for that long, and it does not count publishing as use
//! (nor, for quorum queues, a declaration), so an expiry counted from a queue's last use
//! cannot be relied on. Instead delay queues *rotate* ([`DelayQueues::rotation`], 1 h by
//! default): `E` is the number of the current rotation period (wall-clock time divided by
//! `R`), a publisher uses a queue only during its period, and the queue expires
//! `2 R + N` after it was created. Every message in it is due by `R + N` after its creation
//! (plus clock skew between workers, which must stay below `R`), so none is ever dropped,
//! and queues of past periods go away by themselves: at most two per delay and queue exist.
//!
//! Delays take few queues: `N` is a bucket (1, 2 or 5 × 10^k ms, at most `max_delay`) no
//! longer than the delay asked for; the rest travels in the header
//! [`REMAINING_DELAY_HEADER`] and the worker that receives the message after its first hop
//! sends it to the next one ([`Broker::delay_rest`]). A message never arrives early.
//!
//! A publish the broker returns as unroutable (a queue deleted by hand, a delay queue gone)
//! declares its queue again and is retried at once, for every kind of queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// The broker's URL that workers and clients use unless told otherwise: env `AMQP_URL`, else
/// [`DEFAULT_AMQP_URL`].
pub fn amqp_url_from_env() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_AMQP_URL.to_string())
}

/// Whether a delivery may repeat a task that already ran: the broker redelivers it, or it
/// was published again from an outbox ([`REPUBLISHED_HEADER`]).
pub(crate) fn is_republished(delivery: &lapin::message::Delivery) -> bool {
    delivery.redelivered
        || delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(REPUBLISHED_HEADER))
            .is_some_and(|v| matches!(v, AMQPValue::Boolean(true)))
}

/// A broker failure.
#[derive(Debug, thiserror::Error)]
#[error("AMQP broker at {url}: {message}")]
pub struct BrokerError {
    /// The broker's URL.
    pub url: String,
    /// What failed.
    pub message: String,
}

/// One live connection with its publishing channel.
pub(crate) struct Link {
    pub connection: Connection,
    publisher: Channel,
    declared: Declared,
}

impl Link {
    pub fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// The queues (and exchanges) declared on one connection. Names unused for `forget_after`
/// (delay queues of past rotation periods) are forgotten, so that the set stays small on a
/// worker that runs for weeks; forgetting a name that is still used only costs a declaration.
pub(crate) struct Declared {
    names: Mutex<HashMap<String, Instant>>,
    forget_after: Duration,
    /// The size at which forgotten names are dropped next.
    prune_at: Mutex<usize>,
}

impl Declared {
    const MIN_PRUNE_AT: usize = 256;

    pub fn new(forget_after: Duration) -> Self {
        Declared {
            names: Mutex::new(HashMap::new()),
            forget_after,
            prune_at: Mutex::new(Self::MIN_PRUNE_AT),
        }
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, name: &str) -> bool {
        match self.names().get_mut(name) {
            Some(used) => {
                *used = Instant::now();
                true
            }
            None => false,
        }
    }

    pub fn insert(&self, name: &str) {
        let mut names = self.names();
        names.insert(name.to_string(), Instant::now());
        let mut prune_at = self.prune_at.lock().unwrap_or_else(|e| e.into_inner());
        if names.len() >= *prune_at {
            names.retain(|_, used| used.elapsed() < self.forget_after);
            *prune_at = (names.len() * 2).max(Self::MIN_PRUNE_AT);
        }
    }

    pub fn remove(&self, name: &str) {
        self.names().remove(name);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.names().len()
    }
}

/// How delayed messages travel (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayQueues {
    /// The longest delay one queue holds; a longer delay takes several hops (default 1 h).
    pub max_delay: Duration,
    /// How long publishers use one delay queue before moving to the next one (default 1 h);
    /// a delay queue expires `2 × rotation + delay` after its creation.
    pub rotation: Duration,
}

impl Default for DelayQueues {
    fn default() -> Self {
        DelayQueues {
            max_delay: Duration::from_secs(3600),
            rotation: Duration::from_secs(3600),
        }
    }
}

impl DelayQueues {
    /// Default settings, but delay queues rotate every `rotation` (tests shorten it).
    pub fn with_rotation(rotation: Duration) -> Self {
        DelayQueues {
            rotation: rotation.max(Duration::from_millis(1)),
            ..DelayQueues::default()
        }
    }

    fn rotation_ms(&self) -> u64 {
        (self.rotation.as_millis() as u64).max(1)
    }

    /// The delay queue hop for `delay_ms` and what is left after it. The delay is first
    /// rounded up to a multiple of a bucket of at most 2 % of it (so that it takes few hops),
    /// then the hop is the longest bucket ([`DELAY_BUCKETS_MS`], or `max_delay`) that does not
    /// exceed that. A message never arrives early; the rest is delayed again when the hop ends.
    pub fn hop(&self, delay_ms: u64) -> (u64, u64) {
        let max = (self.max_delay.as_millis() as u64).max(1);
        if delay_ms >= max {
            return (max, delay_ms - max);
        }
        let bucket_at_most = |ms: u64| {
            DELAY_BUCKETS_MS
                .iter()
                .copied()
                .filter(|b| *b < max)
                .take_while(|b| *b <= ms)
                .last()
                .unwrap_or(1)
        };
        let grain = bucket_at_most((delay_ms / 50).max(1));
        let rounded = delay_ms.max(1).div_ceil(grain) * grain;
        if rounded >= max {
            return (max, rounded - max);
        }
        let bucket = bucket_at_most(rounded);
        (bucket, rounded - bucket)
    }

    /// The name of the delay queue for `queue` and a hop of `bucket_ms` at `now_ms` (since the
    /// Unix epoch). It names the rotation too, so that workers with other settings never
    /// declare one queue with other arguments.
    pub fn queue_name(&self, queue: &str, bucket_ms: u64, now_ms: u64) -> String {
        let rotation = self.rotation_ms();
        format!(
            "selinon.delay.{queue}.{bucket_ms}ms.r{rotation}ms.{}",
            now_ms / rotation
        )
    }

    /// The expiry of a delay queue holding `bucket_ms` hops: messages go in for one rotation
    /// period and are due `bucket_ms` later; a second period covers clock skew.
    pub fn expiry_ms(&self, bucket_ms: u64) -> u64 {
        2 * self.rotation_ms() + bucket_ms
    }

    fn arguments(&self, queue: &str, bucket_ms: u64) -> FieldTable {
        // A quorum queue with at-least-once dead-lettering: a message due while the broker
        // stops is still moved to its queue (a classic queue may drop it then).
        field_table(&[
            ("x-queue-type", long_string("quorum")),
            ("x-dead-letter-strategy", long_string("at-least-once")),
            ("x-overflow", long_string("reject-publish")),
            ("x-message-ttl", AMQPValue::LongLongInt(bucket_ms as i64)),
            ("x-dead-letter-exchange", long_string("")),
            ("x-dead-letter-routing-key", long_string(queue)),
            (
                "x-expires",
                AMQPValue::LongLongInt(self.expiry_ms(bucket_ms) as i64),
            ),
        ])
    }
}

/// The delays a delay queue can have (and `max_delay`): round values in milliseconds,
/// seconds and minutes, so that the countdowns people write take one queue and any other
/// delay a few hops.
pub const DELAY_BUCKETS_MS: &[u64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, // ms
    1_000, 2_000, 3_000, 5_000, 10_000, 15_000, 20_000, 30_000, // s
    60_000, 120_000, 180_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000, // min
    3_600_000, // 1 h
];

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The header of a delayed message that still has this many milliseconds to wait when its
/// current hop ends.
pub const REMAINING_DELAY_HEADER: &str = "x-selinon-delay-remaining-ms";
/// Set on messages published again from an outbox (after a worker died between a pass's
/// commit and its publish): the task they start may have run already, so the worker
/// checks the task's mark before running it, as it does for a redelivered message.
pub const REPUBLISHED_HEADER: &str = "x-selinon-republished";

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_string()))
}

/// Where one message goes and what must exist for it to arrive.
struct Route<'a> {
    exchange: &'a str,
    routing_key: String,
    /// The queue to declare first, with its arguments (none for the flow-end exchange).
    queue: Option<FieldTable>,
    /// The queue a delay queue hands its messages to (declared first, so that it exists).
    delay_target: Option<String>,
    headers: Option<FieldTable>,
    body: &'a [u8],
    durable: bool,
    mandatory: bool,
}

/// A connection to the broker that comes back after it drops.
pub struct Broker {
    url: String,
    name: String,
    delays: DelayQueues,
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
            delays: DelayQueues::default(),
            link: RwLock::new(None),
        }
    }

    /// Uses these delay queue settings (the default suits production).
    pub fn with_delay_queues(mut self, delays: DelayQueues) -> Self {
        self.delays = delays;
        self
    }

    /// The delay queue settings in use.
    pub fn delay_queues(&self) -> &DelayQueues {
        &self.delays
    }

    /// The broker's URL.
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
            declared: Declared::new(self.delays.rotation * 2),
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
        if link.declared.contains(queue) {
            return Ok(());
        }
        link.publisher
            .queue_declare(queue, durable(), arguments)
            .await
            .map_err(|e| self.error(format!("cannot declare queue `{queue}`: {e}")))?;
        link.declared.insert(queue);
        Ok(())
    }

    /// Declares the queues every deployment has: the dead-letter queue and the flow-end
    /// exchange.
    pub(crate) async fn declare_common(&self, link: &Link) -> Result<(), BrokerError> {
        self.declare(link, DEAD_LETTER_QUEUE, FieldTable::default())
            .await?;
        if !link.declared.contains(FLOW_ENDED_EXCHANGE) {
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
            link.declared.insert(FLOW_ENDED_EXCHANGE);
        }
        Ok(())
    }

    /// Where a message for `queue` due in `delay_ms` goes: the queue itself, or the delay
    /// queue of its first hop (with the rest of the delay in a header).
    /// Where a message for `queue` goes (a delay queue when `delay_ms` is not 0), marked
    /// [`REPUBLISHED_HEADER`] if `republished`.
    fn route<'a>(
        &self,
        queue: &str,
        delay_ms: u64,
        body: &'a [u8],
        durable: bool,
        republished: bool,
    ) -> Route<'a> {
        let mark = republished.then_some((REPUBLISHED_HEADER, AMQPValue::Boolean(true)));
        if delay_ms == 0 {
            return Route {
                exchange: "",
                routing_key: queue.to_string(),
                queue: Some(FieldTable::default()),
                delay_target: None,
                headers: mark.map(|m| field_table(&[m])),
                body,
                durable,
                mandatory: true,
            };
        }
        let (bucket, remaining) = self.delays.hop(delay_ms);
        let mut headers: Vec<(&str, AMQPValue)> = mark.into_iter().collect();
        if remaining > 0 {
            headers.push((
                REMAINING_DELAY_HEADER,
                AMQPValue::LongLongInt(remaining as i64),
            ));
        }
        Route {
            exchange: "",
            routing_key: self.delays.queue_name(queue, bucket, now_ms()),
            queue: Some(self.delays.arguments(queue, bucket)),
            delay_target: Some(queue.to_string()),
            headers: (!headers.is_empty()).then(|| field_table(&headers)),
            body,
            durable,
            mandatory: true,
        }
    }

    /// Publishes a batch and waits for all its confirms; an error means some message may not
    /// have been stored, so the caller must not acknowledge what caused the batch.
    pub async fn publish_all(&self, batch: &[Outgoing]) -> Result<(), BrokerError> {
        self.publish_batch(batch, false).await
    }

    /// Publishes an outbox again (see [`REPUBLISHED_HEADER`]).
    pub async fn republish_all(&self, batch: &[Outgoing]) -> Result<(), BrokerError> {
        self.publish_batch(batch, true).await
    }

    async fn publish_batch(
        &self,
        batch: &[Outgoing],
        republished: bool,
    ) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let routes: Vec<Route<'_>> = batch
            .iter()
            .map(|out| {
                if out.exchange.is_empty() {
                    self.route(
                        &out.routing_key,
                        out.delay_ms,
                        out.body.as_bytes(),
                        out.durable,
                        republished,
                    )
                } else {
                    Route {
                        exchange: &out.exchange,
                        routing_key: out.routing_key.clone(),
                        queue: None,
                        delay_target: None,
                        headers: None,
                        body: out.body.as_bytes(),
                        durable: out.durable,
                        mandatory: false,
                    }
                }
            })
            .collect();
        self.send(routes).await
    }

    /// A delivery whose delay is not over yet (a long delay's first hops) goes back to a
    /// delay queue for the rest; `Ok(true)` means it was re-published and is to be
    /// acknowledged without handling it now.
    pub async fn delay_rest(
        &self,
        queue: &str,
        delivery: &lapin::message::Delivery,
    ) -> Result<bool, BrokerError> {
        let remaining = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(REMAINING_DELAY_HEADER))
            .and_then(|v| match v {
                AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
                AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
                AMQPValue::LongUInt(n) => Some(u64::from(*n)),
                _ => None,
            })
            .unwrap_or(0);
        if remaining == 0 {
            return Ok(false);
        }
        let durable = delivery.properties.delivery_mode() != &Some(1);
        self.send(vec![self.route(
            queue,
            remaining,
            &delivery.data,
            durable,
            is_republished(delivery),
        )])
        .await?;
        Ok(true)
    }

    /// Publishes routes with confirms. A message the broker returns as unroutable (its queue
    /// was deleted, or a delay queue expired) has its queue declared again and is published
    /// again at once, a few times, before the batch fails.
    async fn send(&self, routes: Vec<Route<'_>>) -> Result<(), BrokerError> {
        let link = self.link().await?;
        let result = self.send_on(&link, routes).await;
        if result.is_err() && !link.is_alive() {
            self.drop_link(&link).await;
        }
        result
    }

    async fn send_on(&self, link: &Link, mut routes: Vec<Route<'_>>) -> Result<(), BrokerError> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut confirms = Vec::with_capacity(routes.len());
            for (i, route) in routes.iter().enumerate() {
                if let Some(target) = &route.delay_target {
                    self.declare(link, target, FieldTable::default()).await?;
                }
                match &route.queue {
                    Some(arguments) => {
                        self.declare(link, &route.routing_key, arguments.clone())
                            .await?
                    }
                    None => self.declare_common(link).await?,
                }
                let mut props = BasicProperties::default()
                    .with_content_type(ShortString::from("application/json"))
                    .with_delivery_mode(if route.durable { 2 } else { 1 });
                if let Some(headers) = &route.headers {
                    props = props.with_headers(headers.clone());
                }
                let confirm = link
                    .publisher
                    .basic_publish(
                        route.exchange,
                        &route.routing_key,
                        BasicPublishOptions {
                            mandatory: route.mandatory,
                            ..BasicPublishOptions::default()
                        },
                        route.body,
                        props,
                    )
                    .await
                    .map_err(|e| {
                        self.error(format!("publish to `{}` failed: {e}", route.routing_key))
                    })?;
                confirms.push((i, confirm));
            }
            let mut returned = Vec::new();
            for (i, confirm) in confirms {
                let route = &routes[i];
                let confirmation = confirm.await.map_err(|e| {
                    self.error(format!("publish to `{}` failed: {e}", route.routing_key))
                })?;
                match confirmation {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) | Confirmation::NotRequested if !route.durable => {}
                    Confirmation::NotRequested => {
                        return Err(self.error("the publishing channel is not in confirm mode"))
                    }
                    Confirmation::Ack(Some(message)) => {
                        if attempt == ATTEMPTS {
                            return Err(self.error(format!(
                                "the broker could not route a message to `{}`: {} \
                                 (declared again {} times)",
                                route.routing_key,
                                message.reply_text,
                                ATTEMPTS - 1
                            )));
                        }
                        tracing::info!(
                            "the broker could not route a message to `{}` ({}); declaring the \
                             queue again",
                            route.routing_key,
                            message.reply_text
                        );
                        link.declared.remove(&route.routing_key);
                        returned.push(i);
                    }
                    Confirmation::Nack(_) => {
                        return Err(self.error(format!(
                            "the broker refused a message for `{}` (nack)",
                            route.routing_key
                        )))
                    }
                }
            }
            if returned.is_empty() {
                return Ok(());
            }
            let mut kept = Vec::with_capacity(returned.len());
            for (i, route) in routes.into_iter().enumerate() {
                if returned.contains(&i) {
                    kept.push(route);
                }
            }
            routes = kept;
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
            ("x-selinon-reason", long_string(reason)),
            ("x-selinon-queue", long_string(queue)),
        ]);
        self.send(vec![Route {
            exchange: "",
            routing_key: DEAD_LETTER_QUEUE.to_string(),
            queue: Some(FieldTable::default()),
            delay_target: None,
            headers: Some(headers),
            body,
            durable: true,
            mandatory: true,
        }])
        .await
        .map_err(|e| self.error(format!("dead-lettering failed: {}", e.message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hops(delays: &DelayQueues, mut ms: u64) -> Vec<u64> {
        let mut hops = Vec::new();
        while ms > 0 {
            let (bucket, rest) = delays.hop(ms);
            assert!(bucket <= ms + ms / 50, "{bucket} > {ms}");
            hops.push(bucket);
            ms = rest;
        }
        hops
    }

    #[test]
    fn round_delays_take_one_queue() {
        let d = DelayQueues::default();
        for ms in [
            1, 2, 5, 10, 1000, 2000, 3000, 5000, 30_000, 60_000, 300_000, 3_600_000,
        ] {
            assert_eq!(d.hop(ms), (ms, 0), "{ms}");
        }
    }

    #[test]
    fn other_delays_add_up_exactly_from_few_buckets() {
        let d = DelayQueues::default();
        assert_eq!(hops(&d, 1337), vec![1000, 200, 100, 20, 20], "3 ms late");
        assert_eq!(
            hops(&d, 2_366_879),
            vec![1_800_000, 300_000, 180_000, 60_000, 30_000]
        );
        assert_eq!(hops(&d, 59_000), vec![30_000, 20_000, 5_000, 3_000, 1_000]);
        assert_eq!(hops(&d, 1500), vec![1000, 500]);
        assert_eq!(hops(&d, 90_000), vec![60_000, 30_000]);
        let mut buckets = std::collections::BTreeSet::new();
        for ms in (1..4_000_000).step_by(997) {
            let h = hops(&d, ms);
            let total: u64 = h.iter().sum();
            assert!(total >= ms && total - ms <= ms / 25, "{ms}: {h:?}");
            assert!(h.len() <= 12, "{ms}: {h:?}");
            buckets.extend(h);
        }
        assert!(
            buckets.iter().all(|b| DELAY_BUCKETS_MS.contains(b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn delays_beyond_the_maximum_take_several_hops_of_the_maximum() {
        let d = DelayQueues {
            max_delay: Duration::from_millis(3000),
            ..DelayQueues::default()
        };
        assert_eq!(hops(&d, 7500), vec![3000, 3000, 1000, 500]);
        assert_eq!(d.hop(2999), (3000, 0), "1 ms late");
        let d = DelayQueues {
            max_delay: Duration::from_millis(2500),
            ..DelayQueues::default()
        };
        assert_eq!(hops(&d, 6000), vec![2500, 2500, 1000]);
    }

    #[test]
    fn a_delay_queue_outlives_every_message_published_in_its_period() {
        let d = DelayQueues::with_rotation(Duration::from_millis(800));
        let (bucket, _) = d.hop(5000);
        // Created at the start of its period at the earliest, used until its end, each
        // message due `bucket` later; one more period covers clock skew.
        assert!(800 + bucket < d.expiry_ms(bucket));
        let args = d.arguments("q", bucket);
        let expiry = args.inner().get("x-expires").cloned();
        assert_eq!(expiry, Some(AMQPValue::LongLongInt(6600)));
        assert_eq!(
            d.queue_name("q", bucket, 7999),
            "selinon.delay.q.5000ms.r800ms.9"
        );
        assert_eq!(
            d.queue_name("q", bucket, 8000),
            "selinon.delay.q.5000ms.r800ms.10"
        );
    }

    #[test]
    fn names_of_past_periods_are_forgotten() {
        let declared = Declared::new(Duration::from_millis(20));
        declared.insert("tasks");
        // Many rotation periods, each with its own delay queue names.
        for period in 0..30 {
            for bucket in 0..40 {
                declared.insert(&format!("selinon.delay.tasks.{bucket}ms.r10ms.{period}"));
            }
            assert!(declared.contains("tasks"), "a name in use stays");
            assert!(
                declared.len() < 2 * Declared::MIN_PRUNE_AT,
                "{}",
                declared.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(declared.contains("selinon.delay.tasks.0ms.r10ms.29"));
        assert!(!declared.contains("selinon.delay.tasks.0ms.r10ms.0"));
    }
}
