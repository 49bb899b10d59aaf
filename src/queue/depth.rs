//! Queue depth and consumer counts, as the broker reports them.
//!
//! The worker role polls every queue it serves, and `arrakis.dlq`, with a
//! passive `queue.declare` (it changes nothing) and exposes the answers as
//! `arrakis_queue_messages{queue}` and `arrakis_queue_consumers{queue}`:
//! the backlog and DLQ alerts and the worker autoscaling read them, so
//! operators need no access to RabbitMQ's management API. Every replica
//! reports the same figures; alert on `max by (queue)`.
//!
//! The message count is of messages *ready* for delivery: those a consumer
//! holds unacked (at most the prefetch per consumer) are not in it.
//!
//! The poller owns one connection of its own, so a slow or failed poll
//! never touches a consumer's channel.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// How often the broker is asked.
pub const POLL_EVERY: Duration = Duration::from_secs(15);

/// Longest one poll of every queue may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: &'static str,
}

/// The gauges, registered into the role's registry.
#[derive(Debug, Default)]
pub struct DepthMetrics {
    messages: Family<QueueLabel, Gauge>,
    consumers: Family<QueueLabel, Gauge>,
    poll_failures: prometheus_client::metrics::counter::Counter,
}

impl DepthMetrics {
    /// Creates the gauges and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self::default();
        registry.register(
            "queue_messages",
            "Messages ready in the queue, as the broker last reported (polled every 15 s)",
            m.messages.clone(),
        );
        registry.register(
            "queue_consumers",
            "Consumers of the queue, as the broker last reported",
            m.consumers.clone(),
        );
        registry.register(
            "queue_poll_failures",
            "Queue depth polls that failed (the gauges keep their last values)",
            m.poll_failures.clone(),
        );
        Arc::new(m)
    }

    /// Records one queue's figures.
    pub fn record(&self, queue: &'static str, messages: u32, consumers: u32) {
        let label = QueueLabel { queue };
        self.messages.get_or_create(&label).set(i64::from(messages));
        self.consumers
            .get_or_create(&label)
            .set(i64::from(consumers));
    }

    /// The last recorded depth of `queue`, if any.
    #[must_use]
    pub fn messages(&self, queue: &'static str) -> Option<i64> {
        self.messages.get(&QueueLabel { queue }).map(|g| g.get())
    }
}

/// Polls `queues` on the broker at `amqp_url` every `every` until `stop`
/// turns true. A queue that does not exist yet (the consumers declare the
/// topology) or a broker outage counts a failure and is tried again on the
/// next round with a fresh connection.
pub async fn poll(
    amqp_url: String,
    connection_name: String,
    queues: Vec<&'static str>,
    every: Duration,
    metrics: Arc<DepthMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut open: Option<(Connection, Channel)> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if open.as_ref().is_none_or(|(conn, channel)| {
            !conn.status().connected() || !channel.status().connected()
        }) {
            open = connect(&amqp_url, &connection_name).await;
        }
        let Some((_, channel)) = &open else {
            metrics.poll_failures.inc();
            continue;
        };
        let round = tokio::time::timeout(POLL_TIMEOUT, poll_once(channel, &queues, &metrics)).await;
        match round {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(%err, "queue depth poll failed; next round opens a new channel");
                metrics.poll_failures.inc();
                open = None;
            }
            Err(_) => {
                tracing::debug!("queue depth poll timed out");
                metrics.poll_failures.inc();
                open = None;
            }
        }
    }
    if let Some((conn, _)) = open {
        let _ = conn.close(200, "worker shutting down".into()).await;
    }
}

async fn connect(amqp_url: &str, name: &str) -> Option<(Connection, Channel)> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let conn = Connection::connect(amqp_url, properties).await.ok()?;
    let channel = conn.create_channel().await.ok()?;
    Some((conn, channel))
}

async fn poll_once(
    channel: &Channel,
    queues: &[&'static str],
    metrics: &DepthMetrics,
) -> Result<(), lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    for &queue in queues {
        // A passive declare of a missing queue closes the channel with
        // NOT_FOUND; the caller opens a new one next round.
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await?;
        metrics.record(queue, declared.message_count(), declared.consumer_count());
    }
    Ok(())
}
