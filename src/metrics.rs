//! Prometheus metrics of the ingest role, and the readiness it reports.
//!
//! One [`IngestMetrics`] is built in `main` and shared by reference-counted
//! handle; there is no global registry. Label values come from a fixed set
//! (states, reasons) or from event names, which are capped so a misbehaving
//! gateway cannot blow up the series count.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Distinct event names tracked before the rest are counted as `OTHER`.
const MAX_EVENT_LABELS: usize = 256;

/// One shard's handles on the per-event counters. Counting through it
/// costs a map lookup and an atomic add; the shared label set (a lock and
/// an allocation) is consulted once per new event name, not per event.
/// An idle shard's cache is empty and allocates nothing.
#[derive(Debug, Default)]
pub struct EventCounters {
    by_name: HashMap<Box<str>, Counter>,
}

impl EventCounters {
    /// Counts one dispatch named `name`.
    pub fn count(&mut self, metrics: &IngestMetrics, name: &str) {
        if let Some(counter) = self.by_name.get(name) {
            counter.inc();
            return;
        }
        let counter = metrics.event_counter(name);
        counter.inc();
        // Names past the cap still count (as OTHER), just uncached, so a
        // gateway inventing names cannot grow this map without bound.
        if self.by_name.len() < MAX_EVENT_LABELS {
            self.by_name.insert(name.into(), counter);
        }
    }
}

/// Label: a gateway event name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// The dispatch name.
    pub event: String,
}

/// Label: a shard state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state name.
    pub state: &'static str,
}

/// Label: why something happened.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: &'static str,
}

/// A shard's lifecycle state, as shown in `arrakis_shards{state=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Connecting, or waiting to reconnect.
    Connecting,
    /// Connected, handshaking (Hello, identify queue, Identify or Resume).
    Handshaking,
    /// READY or RESUMED received; events flowing.
    Ready,
    /// Stopped by a fatal close code.
    Stopped,
}

impl ShardState {
    fn label(self) -> &'static str {
        match self {
            ShardState::Connecting => "connecting",
            ShardState::Handshaking => "handshaking",
            ShardState::Ready => "ready",
            ShardState::Stopped => "stopped",
        }
    }
}

/// Every metric of the ingest role, plus the readiness state.
#[derive(Debug)]
pub struct IngestMetrics {
    registry: Registry,
    events: Family<EventLabel, Counter>,
    event_names: Mutex<HashSet<String>>,
    shards: Family<StateLabel, Gauge>,
    shards_ready: AtomicI64,
    shards_total: AtomicI64,
    /// Heartbeat round trip, seconds.
    pub heartbeat_rtt: Histogram,
    reconnects: Family<ReasonLabel, Counter>,
    /// Dispatches accepted by the publisher and not yet confirmed.
    pub buffer_depth: Gauge,
    /// Bytes of those dispatches.
    pub buffer_bytes: Gauge,
    /// From reading the frame off the socket to the broker's confirm, seconds.
    pub confirm_latency: Histogram,
    /// Dispatches confirmed by the broker.
    pub confirmed: Counter,
    publish_retries: Family<ReasonLabel, Counter>,
    /// Dispatches not published because ARRAKIS_DROP_EVENTS lists them.
    pub dropped_by_config: Counter,
    /// Times a shard paused reading because the publish buffer was full.
    pub read_pauses: Counter,
    broker_up: AtomicBool,
    broker_gauge: Gauge,
    /// Checkpoints written to Redis.
    pub checkpoint_writes: Counter,
    /// Checkpoint flushes that failed (Redis unreachable or slow).
    pub checkpoint_failures: Counter,
    /// GUILD_CREATEs by kind (startup or join).
    guild_creates: Family<ReasonLabel, Counter>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestMetrics {
    /// Registers every metric under the `arrakis_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arrakis");
        let m = Self {
            events: Family::default(),
            event_names: Mutex::new(HashSet::new()),
            shards: Family::default(),
            shards_ready: AtomicI64::new(0),
            shards_total: AtomicI64::new(0),
            heartbeat_rtt: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            reconnects: Family::default(),
            buffer_depth: Gauge::default(),
            buffer_bytes: Gauge::default(),
            confirm_latency: Histogram::new(exponential_buckets(0.000_1, 1.25, 52)),
            confirmed: Counter::default(),
            publish_retries: Family::default(),
            dropped_by_config: Counter::default(),
            read_pauses: Counter::default(),
            broker_up: AtomicBool::new(false),
            broker_gauge: Gauge::default(),
            checkpoint_writes: Counter::default(),
            checkpoint_failures: Counter::default(),
            guild_creates: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gateway_events",
            "Dispatches received, by event name",
            m.events.clone(),
        );
        registry.register("shards", "Shards by state", m.shards.clone());
        registry.register(
            "heartbeat_rtt_seconds",
            "Heartbeat to ACK round trip",
            m.heartbeat_rtt.clone(),
        );
        registry.register(
            "gateway_reconnects",
            "Reconnects, by reason",
            m.reconnects.clone(),
        );
        registry.register(
            "publish_buffer_depth",
            "Dispatches waiting for a broker confirm",
            m.buffer_depth.clone(),
        );
        registry.register(
            "publish_buffer_bytes",
            "Bytes of dispatches waiting for a broker confirm",
            m.buffer_bytes.clone(),
        );
        registry.register(
            "confirm_latency_seconds",
            "From frame read off the socket to broker confirm",
            m.confirm_latency.clone(),
        );
        registry.register(
            "published",
            "Dispatches confirmed by the broker",
            m.confirmed.clone(),
        );
        registry.register(
            "publish_retries",
            "Publishes retried, by reason (nack, returned, channel_error)",
            m.publish_retries.clone(),
        );
        registry.register(
            "dropped_by_config",
            "Dispatches dropped because ARRAKIS_DROP_EVENTS lists them",
            m.dropped_by_config.clone(),
        );
        registry.register(
            "read_pauses",
            "Times a shard paused reading because the publish buffer was full",
            m.read_pauses.clone(),
        );
        registry.register(
            "broker_up",
            "1 when the broker channel is open",
            m.broker_gauge.clone(),
        );
        registry.register(
            "checkpoint_writes",
            "Session checkpoints written to Redis",
            m.checkpoint_writes.clone(),
        );
        registry.register(
            "checkpoint_failures",
            "Checkpoint flushes that failed; ingestion continues meanwhile",
            m.checkpoint_failures.clone(),
        );
        registry.register(
            "guild_creates",
            "GUILD_CREATE dispatches, by reason (startup or join)",
            m.guild_creates.clone(),
        );
        Self { registry, ..m }
    }

    /// The counter of dispatches named `name` (or `OTHER` once the label
    /// set is full): a handle on the shared series. Takes the label-set
    /// lock, so a shard's read loop counts through [`EventCounters`].
    #[must_use]
    pub fn event_counter(&self, name: &str) -> Counter {
        let label = {
            let mut names = self
                .event_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if names.contains(name) {
                name
            } else if names.len() < MAX_EVENT_LABELS {
                names.insert(name.to_owned());
                name
            } else {
                "OTHER"
            }
        };
        self.events
            .get_or_create(&EventLabel {
                event: label.to_owned(),
            })
            .clone()
    }

    /// Counts one reconnect.
    pub fn on_reconnect(&self, reason: &'static str) {
        self.reconnects.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts one publish retry.
    pub fn on_publish_retry(&self, reason: &'static str) {
        self.publish_retries
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// `n` checkpoints were saved.
    pub fn checkpoint_saved(&self, n: usize) {
        self.checkpoint_writes.inc_by(u64::try_from(n).unwrap_or(0));
    }

    /// A checkpoint flush failed.
    pub fn checkpoint_failed(&self) {
        self.checkpoint_failures.inc();
    }

    /// Counts a GUILD_CREATE by kind.
    pub fn on_guild_create(&self, reason: &'static str) {
        self.guild_creates
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A shard started, in state `Connecting`.
    pub fn shard_started(&self) {
        self.shards_total.fetch_add(1, Ordering::Relaxed);
        self.shards
            .get_or_create(&StateLabel {
                state: ShardState::Connecting.label(),
            })
            .inc();
    }

    /// A shard moved from one state to another.
    pub fn shard_transition(&self, from: ShardState, to: ShardState) {
        if from == to {
            return;
        }
        self.shards
            .get_or_create(&StateLabel {
                state: from.label(),
            })
            .dec();
        self.shards
            .get_or_create(&StateLabel { state: to.label() })
            .inc();
        if from == ShardState::Ready {
            self.shards_ready.fetch_sub(1, Ordering::Relaxed);
        }
        if to == ShardState::Ready {
            self.shards_ready.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The broker channel opened or closed.
    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
        self.broker_gauge.set(i64::from(up));
    }

    /// Why the role is not ready, or `None` when it is: every shard is
    /// connected and the broker channel is open.
    #[must_use]
    pub fn not_ready_reason(&self) -> Option<String> {
        let total = self.shards_total.load(Ordering::Relaxed);
        let ready = self.shards_ready.load(Ordering::Relaxed);
        let broker = self.broker_up.load(Ordering::Relaxed);
        match (total > 0 && ready == total, broker) {
            (true, true) => None,
            (shards_ok, broker_ok) => {
                let mut why = Vec::new();
                if !shards_ok {
                    why.push(format!("{ready} of {total} shards ready"));
                }
                if !broker_ok {
                    why.push("RabbitMQ channel not open".to_owned());
                }
                Some(why.join("; "))
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl crate::health::RoleStatus for IngestMetrics {
    fn not_ready_reason(&self) -> Option<String> {
        IngestMetrics::not_ready_reason(self)
    }

    fn metrics_text(&self) -> String {
        self.encode()
    }
}

/// Shared handle to the metrics.
pub type Metrics = Arc<IngestMetrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_shard_and_the_broker() {
        let m = IngestMetrics::new();
        assert!(m.not_ready_reason().is_some());
        m.shard_started();
        m.shard_started();
        m.set_broker_up(true);
        m.shard_transition(ShardState::Connecting, ShardState::Ready);
        assert_eq!(m.not_ready_reason().unwrap(), "1 of 2 shards ready");
        m.shard_transition(ShardState::Connecting, ShardState::Ready);
        assert_eq!(m.not_ready_reason(), None);
        m.set_broker_up(false);
        assert!(m.not_ready_reason().unwrap().contains("RabbitMQ"));
    }

    fn assert_events(text: &str, event: &str, n: u64) {
        let series = format!("arrakis_gateway_events_total{{event=\"{event}\"}} {n}\n");
        assert!(text.contains(&series), "no `{series}` in:\n{text}");
    }

    #[test]
    fn shard_event_counters_add_to_the_shared_series() {
        let m = IngestMetrics::new();
        let mut a = EventCounters::default();
        let mut b = EventCounters::default();
        for _ in 0..3 {
            a.count(&m, "MESSAGE_CREATE");
        }
        b.count(&m, "MESSAGE_CREATE");
        b.count(&m, "GUILD_CREATE");
        let text = m.encode();
        assert_events(&text, "MESSAGE_CREATE", 4);
        assert_events(&text, "GUILD_CREATE", 1);
    }

    #[test]
    fn shard_event_counters_respect_the_label_cap() {
        let m = IngestMetrics::new();
        let mut counters = EventCounters::default();
        for i in 0..MAX_EVENT_LABELS + 10 {
            counters.count(&m, &format!("EVENT_{i}"));
        }
        counters.count(&m, "EVENT_0");
        assert!(counters.by_name.len() <= MAX_EVENT_LABELS);
        let text = m.encode();
        assert_events(&text, "OTHER", 10);
        assert_events(&text, "EVENT_0", 2);
    }

    #[test]
    fn event_labels_are_capped() {
        let m = IngestMetrics::new();
        for i in 0..MAX_EVENT_LABELS + 10 {
            m.event_counter(&format!("EVENT_{i}")).inc();
        }
        let text = m.encode();
        assert_events(&text, "OTHER", 10);
    }
}
