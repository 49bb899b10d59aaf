//! The consuming side of the broker: lanes of work queues with manual
//! acks, bounded in-flight work, back-off retries and dead-lettering.
//!
//! A [`Consumer`] owns one AMQP connection. Each [`Lane`] is a queue with
//! its own channel and prefetch, so the broker never has more than
//! `prefetch` unacked messages of that queue out at this worker, and a
//! backlog in one lane cannot hold a message of another behind it on the
//! channel. The work role runs interactions on a consumer (and connection)
//! of their own for the same reason at the socket level.
//!
//! What happens to a message is the [`Handler`]'s [`Disposition`]:
//!
//! - `Ack`: the effect is done (or was already done): ack.
//! - `Retry`: a failure that may pass (Redis, Postgres or the chain away).
//!   The message is republished to the retry exchange with its attempt
//!   count, waits in a delay queue (1 s, 10 s, then 60 s) and comes back to
//!   its origin queue; after `max_attempts` it goes to the DLQ instead.
//! - `Later`: another worker holds the message's dedupe lease; it comes
//!   back after the shortest delay, without counting an attempt.
//! - `DeadLetter`: it can never be processed (unparseable, unknown shape):
//!   to `arrakis.dlq` now.
//!
//! A republish (retry or dead letter) is confirmed by the broker before the
//! original is acked, so a crash between the two duplicates a message (the
//! dedupe key absorbs it) and never loses one. A handler that panics dead-
//! letters its message; a message the broker has redelivered
//! [`MAX_REDELIVERIES`] times (a worker died on it each time) too.
//!
//! Task ownership: [`Consumer::run`] owns the connection, a dispatcher loop
//! per connection and the `JoinSet` of message tasks; each message task
//! owns its delivery until it is acked. On stop it cancels the consumers,
//! gives the message tasks a bounded drain, then closes the connection
//! (whatever is still unacked goes back to the queue).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use futures_util::stream::{SelectAll, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::topology::{
    self, DEAD_EXCHANGE, QueueType, RETRY_DELAY_HEADER, RETRY_EXCHANGE, RETRY_TIERS,
};
use crate::config::redact_url;

/// Header: why a message was dead-lettered or last retried.
pub const REASON_HEADER: &str = "x-arrakis-reason";
/// Header: failed attempts so far.
pub const ATTEMPTS_HEADER: &str = "x-arrakis-attempts";
/// Header: the work queue the message was consumed from.
pub const QUEUE_HEADER: &str = "x-arrakis-queue";
/// Header: the routing key the message was first published with (a replay
/// from the DLQ publishes it there again).
pub const ROUTING_KEY_HEADER: &str = "x-arrakis-routing-key";
/// Header: when it was dead-lettered, ms since the Unix epoch.
pub const FAILED_AT_HEADER: &str = "x-arrakis-failed-at-ms";
/// A message redelivered this often by the broker (quorum queues count in
/// `x-delivery-count`) killed a worker every time: dead-letter it.
pub const MAX_REDELIVERIES: i64 = 20;
/// Longest reason kept in a header.
const MAX_REASON: usize = 512;

/// One work queue consumed on its own channel.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The queue name.
    pub queue: &'static str,
    /// Unacked messages the broker may send this worker at once; also the
    /// number of messages handled concurrently.
    pub prefetch: u16,
}

/// How a [`Consumer`] connects and what it consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// RabbitMQ URL (may hold a password: shown redacted).
    pub amqp_url: String,
    /// Queue type used when declaring the topology.
    pub queue_type: QueueType,
    /// Connection name shown in the management UI.
    pub connection_name: String,
    /// The queues consumed on this connection.
    pub lanes: Vec<Lane>,
    /// Attempts (first delivery included) before a `Retry` becomes a dead
    /// letter.
    pub max_attempts: u32,
}

/// A message as the handler sees it.
#[derive(Debug)]
pub struct Delivered {
    /// The queue it came from.
    pub queue: &'static str,
    /// The routing key it was delivered with.
    pub routing_key: String,
    /// AMQP properties and headers.
    pub properties: BasicProperties,
    /// The body.
    pub body: Vec<u8>,
    /// Failed attempts before this one (from [`ATTEMPTS_HEADER`]).
    pub attempts: u32,
    /// Whether the broker flagged it as redelivered.
    pub redelivered: bool,
}

impl Delivered {
    /// A header's value.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
    }

    /// An integer header as `i64`, whatever integer width it was sent in.
    #[must_use]
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        self.header(name).and_then(amqp_i64)
    }

    /// A string header.
    #[must_use]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        match self.header(name)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            AMQPValue::ShortString(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

/// An AMQP integer of any width as `i64`.
#[must_use]
pub fn amqp_i64(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(v) => i64::from(*v),
        AMQPValue::ShortShortUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok()?,
        _ => return None,
    })
}

/// What to do with a handled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done, or already done: ack.
    Ack,
    /// Failed in a way that may pass: retry after a back-off, or dead-letter
    /// once the attempts run out.
    Retry {
        /// What failed (no secrets: it goes into a header).
        reason: String,
    },
    /// Someone else is on it: bring it back after the shortest delay
    /// without counting an attempt.
    Later,
    /// Can never be processed: dead-letter now.
    DeadLetter {
        /// Why (no secrets: it goes into a header).
        reason: String,
    },
}

/// The worker's message handling.
pub trait Handler: Send + Sync + 'static {
    /// Handles one message. Called concurrently, up to the lane's prefetch.
    fn handle(&self, delivered: &Delivered) -> impl Future<Output = Disposition> + Send;
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    queue: &'static str,
    outcome: &'static str,
}

/// Metrics of the consumers, registered into the role's registry.
#[derive(Debug)]
pub struct ConsumerMetrics {
    outcomes: Family<OutcomeLabel, Counter>,
    handle_seconds: Family<QueueLabel, Histogram>,
    in_flight: Family<QueueLabel, Gauge>,
    /// Consumers whose connection is up (the role is ready when all are).
    pub connections_up: Gauge,
    connections_expected: Gauge,
}

impl ConsumerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            outcomes: Family::default(),
            handle_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
            }),
            in_flight: Family::default(),
            connections_up: Gauge::default(),
            connections_expected: Gauge::default(),
        };
        registry.register(
            "worker_messages",
            "Messages handled, by queue and outcome (ack, retry, later, dead_letter)",
            m.outcomes.clone(),
        );
        registry.register(
            "worker_handle_seconds",
            "Time from delivery to the message's disposition, by queue",
            m.handle_seconds.clone(),
        );
        registry.register(
            "worker_in_flight",
            "Messages being handled, by queue",
            m.in_flight.clone(),
        );
        registry.register(
            "worker_broker_connections_up",
            "Consumer connections to RabbitMQ that are open",
            m.connections_up.clone(),
        );
        Arc::new(m)
    }

    /// Why the consumers are not ready, if they are not.
    #[must_use]
    pub fn not_ready_reason(&self) -> Option<String> {
        let up = self.connections_up.get();
        let expected = self.connections_expected.get();
        (expected == 0 || up < expected)
            .then(|| format!("{up} of {expected} RabbitMQ consumer connections open"))
    }

    /// Messages handled with `outcome` on `queue` so far.
    #[must_use]
    pub fn outcome_count(&self, queue: &'static str, outcome: &'static str) -> u64 {
        self.outcomes
            .get_or_create(&OutcomeLabel { queue, outcome })
            .get()
    }
}

/// One connection's consumers and their message tasks.
pub struct Consumer<H> {
    config: ConsumerConfig,
    handler: Arc<H>,
    metrics: Arc<ConsumerMetrics>,
}

impl<H> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("connection", &self.config.connection_name)
            .field("lanes", &self.config.lanes)
            .finish_non_exhaustive()
    }
}

enum ServeEnd {
    Stopped,
    Lost(String),
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `config.lanes` handing messages to `handler`.
    pub fn new(config: ConsumerConfig, handler: Arc<H>, metrics: Arc<ConsumerMetrics>) -> Self {
        metrics.connections_expected.inc();
        Self {
            config,
            handler,
            metrics,
        }
    }

    /// Consumes until `stop` turns true, reconnecting with back-off; then
    /// stops consuming and gives messages in flight up to `drain`.
    pub async fn run(self, mut stop: watch::Receiver<bool>, drain: Duration) {
        let mut tasks = JoinSet::new();
        let mut failures: u32 = 0;
        let mut connection = None;
        while !*stop.borrow() {
            match self.open().await {
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    tracing::error!(
                        connection = %self.config.connection_name,
                        "cannot reach RabbitMQ at {}: {err}; retrying in {delay:?}",
                        redact_url(&self.config.amqp_url)
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok((conn, publish, lanes)) => {
                    failures = 0;
                    self.metrics.connections_up.inc();
                    let end = self.serve(&publish, &lanes, &mut tasks, &mut stop).await;
                    self.metrics.connections_up.dec();
                    match end {
                        ServeEnd::Stopped => {
                            // The channels stay open until the drain is
                            // over: message tasks ack on them.
                            connection = Some((conn, publish, lanes));
                            break;
                        }
                        ServeEnd::Lost(why) => {
                            tracing::warn!(connection = %self.config.connection_name, "RabbitMQ connection lost: {why}; reconnecting");
                            // Unacked messages of the lost channel are back in
                            // their queue; their tasks' acks will fail, which is
                            // harmless (the redelivery is deduplicated).
                        }
                    }
                }
            }
        }
        let in_flight = tasks.len();
        let drained =
            tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                connection = %self.config.connection_name,
                left = tasks.len(),
                "messages still in flight after {drain:?}; they go back to their queue"
            );
            tasks.abort_all();
        } else if in_flight > 0 {
            tracing::info!(connection = %self.config.connection_name, in_flight, "in-flight messages finished");
        }
        if let Some((conn, _publish, _lanes)) = connection {
            let _ = conn.close(200, "worker shutting down".into()).await;
        }
    }

    async fn open(&self) -> Result<(Connection, Channel, Vec<(Lane, Channel)>), lapin::Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.clone().into());
        let conn = Connection::connect(&self.config.amqp_url, properties).await?;
        let publish = conn.create_channel().await?;
        topology::declare(&publish, self.config.queue_type).await?;
        topology::declare_retry(&publish, self.config.queue_type).await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut lanes = Vec::with_capacity(self.config.lanes.len());
        for lane in &self.config.lanes {
            let channel = conn.create_channel().await?;
            channel
                .basic_qos(lane.prefetch, BasicQosOptions { global: false })
                .await?;
            lanes.push((lane.clone(), channel));
        }
        Ok((conn, publish, lanes))
    }

    async fn serve(
        &self,
        publish: &Channel,
        lanes: &[(Lane, Channel)],
        tasks: &mut JoinSet<()>,
        stop: &mut watch::Receiver<bool>,
    ) -> ServeEnd {
        let mut streams = SelectAll::new();
        let mut tags = Vec::new();
        for (lane, channel) in lanes {
            let consumer = match channel
                .basic_consume(
                    lane.queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
            {
                Ok(consumer) => consumer,
                Err(err) => return ServeEnd::Lost(format!("consume {}: {err}", lane.queue)),
            };
            tags.push((channel.clone(), consumer.tag()));
            let queue = lane.queue;
            streams.push(consumer.map(move |delivery| (queue, delivery)).boxed());
        }
        tracing::info!(
            connection = %self.config.connection_name,
            queues = ?self.config.lanes.iter().map(|l| (l.queue, l.prefetch)).collect::<Vec<_>>(),
            "consuming"
        );
        let healthy = Arc::new(AtomicBool::new(true));
        let mut health_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                next = streams.next() => match next {
                    Some((queue, Ok(delivery))) => {
                        let job = Job {
                            handler: self.handler.clone(),
                            metrics: self.metrics.clone(),
                            publish: publish.clone(),
                            max_attempts: self.config.max_attempts,
                            healthy: healthy.clone(),
                        };
                        tasks.spawn(job.run(queue, delivery));
                    }
                    Some((queue, Err(err))) => return ServeEnd::Lost(format!("{queue}: {err}")),
                    None => return ServeEnd::Lost("every consumer was cancelled".to_owned()),
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = health_check.tick() => {
                    if !publish.status().connected() || !healthy.load(Ordering::Relaxed) {
                        return ServeEnd::Lost("channel closed".to_owned());
                    }
                }
                _ = stop.changed() => {
                    for (channel, tag) in tags {
                        let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
                    }
                    return ServeEnd::Stopped;
                }
            }
        }
    }
}

/// One message, from delivery to ack.
struct Job<H> {
    handler: Arc<H>,
    metrics: Arc<ConsumerMetrics>,
    publish: Channel,
    max_attempts: u32,
    healthy: Arc<AtomicBool>,
}

impl<H: Handler> Job<H> {
    async fn run(self, queue: &'static str, delivery: lapin::message::Delivery) {
        let started = Instant::now();
        let label = QueueLabel { queue };
        self.metrics.in_flight.get_or_create(&label).inc();
        let attempts = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(ATTEMPTS_HEADER))
            .and_then(amqp_i64)
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
        let delivered = Delivered {
            queue,
            routing_key: delivery.routing_key.to_string(),
            properties: delivery.properties,
            body: delivery.data,
            attempts,
            redelivered: delivery.redelivered,
        };
        let acker = delivery.acker;
        let context = crate::correlation::Context {
            message_id: delivered
                .properties
                .message_id()
                .as_ref()
                .map(|id| Arc::from(id.as_str())),
            guild_id: delivered.header_str("guild_id").map(Arc::from),
        };
        let span = tracing::info_span!(
            "message",
            message_id = context.message_id.as_deref().unwrap_or(""),
            queue,
            event = delivered
                .properties
                .kind()
                .as_ref()
                .map_or("", |kind| kind.as_str()),
        );
        let outcome = crate::correlation::scope(context, self.handle(&delivered, &acker))
            .instrument(span)
            .await;
        self.metrics
            .outcomes
            .get_or_create(&OutcomeLabel { queue, outcome })
            .inc();
        self.metrics
            .handle_seconds
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        self.metrics.in_flight.get_or_create(&label).dec();
    }

    /// Runs the handler (or refuses a message that killed workers) and
    /// settles the delivery; returns the outcome label.
    async fn handle(&self, delivered: &Delivered, acker: &Acker) -> &'static str {
        let disposition = match delivered.header_i64("x-delivery-count") {
            Some(n) if n >= MAX_REDELIVERIES => Disposition::DeadLetter {
                reason: format!(
                    "redelivered {n} times without being acked: a worker died on it each time"
                ),
            },
            _ => AssertUnwindSafe(self.handler.handle(delivered))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Disposition::DeadLetter {
                    reason: "the handler panicked".to_owned(),
                }),
        };
        self.settle(delivered, acker, disposition).await
    }

    /// Carries out the disposition; returns the outcome label.
    async fn settle(
        &self,
        delivered: &Delivered,
        acker: &Acker,
        disposition: Disposition,
    ) -> &'static str {
        let (outcome, republish) = match disposition {
            Disposition::Ack => ("ack", None),
            Disposition::Later => (
                "later",
                Some(Republish::retry(delivered, 0, delivered.attempts, None)),
            ),
            Disposition::Retry { reason } => {
                let failed = delivered.attempts.saturating_add(1);
                if failed >= self.max_attempts {
                    let reason = format!("gave up after {failed} attempts: {reason}");
                    (
                        "dead_letter",
                        Some(Republish::dead(delivered, failed, &reason)),
                    )
                } else {
                    let tier = usize::try_from(failed - 1).unwrap_or(usize::MAX);
                    (
                        "retry",
                        Some(Republish::retry(delivered, tier, failed, Some(&reason))),
                    )
                }
            }
            Disposition::DeadLetter { reason } => {
                tracing::warn!(queue = delivered.queue, message_id = ?delivered.properties.message_id(), %reason, "dead-lettering");
                (
                    "dead_letter",
                    Some(Republish::dead(delivered, delivered.attempts, &reason)),
                )
            }
        };
        if let Some(republish) = republish
            && let Err(err) = republish.send(&self.publish, &delivered.body).await
        {
            tracing::warn!(
                queue = delivered.queue,
                "cannot republish ({outcome}): {err}; returning the message to its queue"
            );
            // Give the broker a moment before the redelivery comes back.
            tokio::time::sleep(Duration::from_millis(200)).await;
            if acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
                .is_err()
            {
                self.healthy.store(false, Ordering::Relaxed);
            }
            return "requeued";
        }
        if acker.ack(BasicAckOptions::default()).await.is_err() {
            // The channel is gone; the broker redelivers the message.
            self.healthy.store(false, Ordering::Relaxed);
        }
        outcome
    }
}

/// A message to publish again (retry or dead letter) before the original
/// is acked.
struct Republish {
    exchange: &'static str,
    routing_key: String,
    properties: BasicProperties,
}

impl Republish {
    fn retry(delivered: &Delivered, tier: usize, attempts: u32, reason: Option<&str>) -> Self {
        let (tier_name, _, _) = RETRY_TIERS[tier.min(RETRY_TIERS.len() - 1)];
        let mut headers = carried_headers(delivered, attempts, reason);
        headers.insert(
            RETRY_DELAY_HEADER.into(),
            AMQPValue::LongString(tier_name.into()),
        );
        Self {
            exchange: RETRY_EXCHANGE,
            // The delay queue dead-letters with this key through the default
            // exchange: straight back to the origin queue.
            routing_key: delivered.queue.to_owned(),
            properties: delivered.properties.clone().with_headers(headers.into()),
        }
    }

    fn dead(delivered: &Delivered, attempts: u32, reason: &str) -> Self {
        let mut headers = carried_headers(delivered, attempts, Some(reason));
        headers.remove(RETRY_DELAY_HEADER);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        headers.insert(FAILED_AT_HEADER.into(), AMQPValue::LongLongInt(now_ms));
        let routing_key = headers
            .get(ROUTING_KEY_HEADER)
            .and_then(|v| match v {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                _ => None,
            })
            .unwrap_or_else(|| delivered.routing_key.clone());
        Self {
            exchange: DEAD_EXCHANGE,
            routing_key,
            properties: delivered.properties.clone().with_headers(headers.into()),
        }
    }

    async fn send(self, channel: &Channel, body: &[u8]) -> Result<(), String> {
        let confirm = channel
            .basic_publish(
                self.exchange.into(),
                self.routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                self.properties,
            )
            .await
            .map_err(|e| e.to_string())?;
        match confirm.await.map_err(|e| e.to_string())? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err("unroutable (returned by the broker)".to_owned()),
            Confirmation::Nack(_) => Err("nacked by the broker".to_owned()),
            Confirmation::NotRequested => Ok(()),
        }
    }
}

/// The original headers plus attempts, reason, origin queue and first
/// routing key.
fn carried_headers(
    delivered: &Delivered,
    attempts: u32,
    reason: Option<&str>,
) -> BTreeMap<ShortString, AMQPValue> {
    let mut headers = delivered
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    headers.insert(
        ATTEMPTS_HEADER.into(),
        AMQPValue::LongInt(i32::try_from(attempts).unwrap_or(i32::MAX)),
    );
    if let Some(reason) = reason {
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(truncate(reason, MAX_REASON).into()),
        );
    }
    headers.insert(
        QUEUE_HEADER.into(),
        AMQPValue::LongString(delivered.queue.into()),
    );
    headers
        .entry(ROUTING_KEY_HEADER.into())
        .or_insert_with(|| AMQPValue::LongString(delivered.routing_key.as_str().into()));
    headers
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << failures.min(6)).min(10_000);
    let jitter = rand::random::<u64>() % (ms / 4 + 1);
    Duration::from_millis(ms + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(headers: FieldTable) -> Delivered {
        Delivered {
            queue: "arrakis.events",
            routing_key: "event.GUILD_MEMBER_ADD".to_owned(),
            properties: BasicProperties::default()
                .with_message_id("s:1".into())
                .with_headers(headers),
            body: b"{}".to_vec(),
            attempts: 0,
            redelivered: false,
        }
    }

    fn header<'a>(p: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
        p.headers().as_ref().and_then(|h| h.inner().get(name))
    }

    #[test]
    fn a_retry_goes_back_to_its_origin_queue_through_a_delay_tier() {
        let mut h = FieldTable::default();
        h.insert("seq".into(), AMQPValue::LongLongInt(7));
        let r = Republish::retry(&delivered(h), 1, 2, Some("redis away"));
        assert_eq!(r.exchange, RETRY_EXCHANGE);
        assert_eq!(r.routing_key, "arrakis.events");
        let p = &r.properties;
        assert_eq!(
            header(p, RETRY_DELAY_HEADER),
            Some(&AMQPValue::LongString("10s".into()))
        );
        assert_eq!(header(p, ATTEMPTS_HEADER), Some(&AMQPValue::LongInt(2)));
        assert_eq!(header(p, "seq"), Some(&AMQPValue::LongLongInt(7)));
        assert_eq!(
            header(p, ROUTING_KEY_HEADER),
            Some(&AMQPValue::LongString("event.GUILD_MEMBER_ADD".into()))
        );
        assert_eq!(
            p.message_id().as_ref().map(ShortString::as_str),
            Some("s:1")
        );
    }

    #[test]
    fn tiers_past_the_last_stay_on_the_last() {
        let r = Republish::retry(&delivered(FieldTable::default()), 9, 9, None);
        assert_eq!(
            header(&r.properties, RETRY_DELAY_HEADER),
            Some(&AMQPValue::LongString("60s".into()))
        );
        assert!(header(&r.properties, REASON_HEADER).is_none());
    }

    #[test]
    fn a_dead_letter_keeps_the_first_routing_key_and_says_why() {
        let mut h = FieldTable::default();
        h.insert(
            ROUTING_KEY_HEADER.into(),
            AMQPValue::LongString("event.X".into()),
        );
        h.insert(
            RETRY_DELAY_HEADER.into(),
            AMQPValue::LongString("1s".into()),
        );
        let mut d = delivered(h);
        d.routing_key = "arrakis.events".to_owned();
        let long = "é".repeat(400);
        let r = Republish::dead(&d, 3, &long);
        assert_eq!(r.exchange, DEAD_EXCHANGE);
        assert_eq!(r.routing_key, "event.X");
        let p = &r.properties;
        assert!(header(p, RETRY_DELAY_HEADER).is_none());
        assert_eq!(header(p, ATTEMPTS_HEADER), Some(&AMQPValue::LongInt(3)));
        match header(p, REASON_HEADER) {
            Some(AMQPValue::LongString(s)) => assert!(s.as_bytes().len() <= MAX_REASON),
            other => panic!("reason header: {other:?}"),
        }
        assert!(header(p, FAILED_AT_HEADER).is_some());
    }

    #[test]
    fn integer_headers_of_any_width() {
        assert_eq!(amqp_i64(&AMQPValue::LongInt(-3)), Some(-3));
        assert_eq!(amqp_i64(&AMQPValue::LongLongInt(1 << 40)), Some(1 << 40));
        assert_eq!(amqp_i64(&AMQPValue::ShortUInt(9)), Some(9));
        assert_eq!(amqp_i64(&AMQPValue::LongString("1".into())), None);
    }

    #[test]
    fn reconnect_backoff_is_bounded() {
        for n in 0..50 {
            assert!(backoff(n) <= Duration::from_millis(12_500));
        }
    }
}
