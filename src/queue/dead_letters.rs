//! The dead-letter queue `arrakis.dlq` seen by an operator: browse it,
//! inspect one entry, replay it to the routing key it was first published
//! with, or discard it. AMQP only; the HTTP side is
//! [`crate::worker::dashboard`].
//!
//! AMQP 0-9-1 has no "peek", so browsing is `basic.get` without auto-ack
//! on a fresh channel, followed by closing that channel: the broker then
//! returns every message it handed out to the queue. Nothing is ever lost
//! by looking. Acting on one entry is the same scan until its key is
//! found; that one is acked (after a confirmed republish, for a replay),
//! and the channel's close returns the rest.
//!
//! Each browse counts as a delivery on a quorum queue and bumps the
//! entry's `x-delivery-count`. `arrakis.dlq` is declared without
//! `x-delivery-limit` and without a dead-letter exchange
//! ([`super::topology::declare`]), so on RabbitMQ 3.x this is harmless.
//! RabbitMQ 4.0 and later give quorum queues a default delivery limit of
//! 20 and *drop* a message past it when the queue has no dead-letter
//! exchange: on those brokers set a policy with `delivery-limit: -1` on
//! `arrakis.dlq` (each entry's count is shown as `delivery_count`). A
//! replay strips the header, or the worker would take the stale count for
//! a crash loop ([`super::consumer::MAX_REDELIVERIES`]).
//!
//! One [`DeadLetters`] has its own lazily (re)connected connection and
//! serializes its operations with a mutex, so one process never races
//! itself. Two processes may: while one scans, the entries it holds are
//! invisible to the other, which then answers "not found" — the operator
//! refreshes. A replay whose ack is lost after the confirmed republish
//! leaves a copy in the DLQ and one in the work queue; the message id is
//! the dedupe key, so the effect happens once.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::consumer::{
    ATTEMPTS_HEADER, FAILED_AT_HEADER, QUEUE_HEADER, REASON_HEADER, ROUTING_KEY_HEADER, amqp_i64,
};
use super::topology::{self, DEAD_LETTER_QUEUE, GATEWAY_EXCHANGE, QueueType, RETRY_DELAY_HEADER};
use crate::config::redact_url;

/// Most entries one browse returns.
pub const MAX_BROWSE: usize = 500;
/// Most entries scanned to find one key.
pub const MAX_SCAN: usize = 10_000;
/// Largest part of a body [`DeadLetters::inspect`] returns.
pub const MAX_SHOWN_BODY: usize = 64 * 1024;
/// Header: how often an entry was replayed from the DLQ.
pub const REPLAYS_HEADER: &str = "x-arrakis-replays";
/// Bound on one whole operation (connect included).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// One entry of the DLQ, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Stable id of the entry ([`entry_key`]).
    pub key: String,
    /// The event name (AMQP `type`).
    pub event: Option<String>,
    /// The routing key a replay publishes to.
    pub routing_key: Option<String>,
    /// The work queue it failed in.
    pub queue: Option<String>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// Failed attempts.
    pub attempts: Option<i64>,
    /// The guild (the community) it belongs to.
    pub guild_id: Option<String>,
    /// When it was dead-lettered, ms since the Unix epoch.
    pub failed_at_ms: Option<i64>,
    /// The gateway message id (the dedupe key).
    pub message_id: Option<String>,
    /// Size of the body in bytes.
    pub body_bytes: usize,
    /// Replays so far.
    pub replays: i64,
    /// Deliveries counted by a quorum DLQ (each browse is one).
    pub delivery_count: Option<i64>,
}

/// A page of the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listing {
    /// Messages ready in `arrakis.dlq` when the browse began.
    pub total: u32,
    /// The first entries, in queue order.
    pub entries: Vec<Summary>,
}

/// One entry in full.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detail {
    /// Its summary.
    pub summary: Summary,
    /// The body as lossy UTF-8, at most [`MAX_SHOWN_BODY`] bytes of it.
    pub body: String,
    /// Whether `body` was cut.
    pub truncated: bool,
    /// `content_type`, if set.
    pub content_type: Option<String>,
    /// The `timestamp` property (s since the Unix epoch), if set.
    pub timestamp: Option<u64>,
    /// Every header, rendered as JSON.
    pub headers: Value,
}

/// What replaying or discarding did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Done {
    /// The entry acted on (as it was in the DLQ).
    pub summary: Summary,
}

/// Why an operation on the DLQ failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// No entry with that key (among the first [`MAX_SCAN`]).
    #[error("not in the DLQ; another operator may have handled it")]
    NotFound,
    /// A replay needs the routing key the message was first published with.
    #[error(
        "the entry has no {ROUTING_KEY_HEADER} header, so its routing key is unknown: it cannot be replayed (discard it, or republish it by hand)"
    )]
    NoRoutingKey,
    /// The broker returned the replay: nothing is bound to its routing key.
    #[error(
        "no queue is bound to {GATEWAY_EXCHANGE} for routing key `{0}`; the entry stays in the DLQ"
    )]
    Unroutable(String),
    /// The broker refused the replay.
    #[error("the broker nacked the replay; the entry stays in the DLQ")]
    Nacked,
    /// The broker could not be reached or failed mid-operation.
    #[error("RabbitMQ: {0}")]
    Broker(String),
}

impl From<lapin::Error> for DlqError {
    fn from(err: lapin::Error) -> Self {
        Self::Broker(err.to_string())
    }
}

/// How a [`DeadLetters`] reaches the broker.
#[derive(Debug, Clone)]
pub struct DeadLettersConfig {
    /// RabbitMQ URL (may hold a password: shown redacted).
    pub amqp_url: String,
    /// Queue type used when declaring the topology.
    pub queue_type: QueueType,
    /// Connection name shown in the management UI.
    pub connection_name: String,
}

/// The DLQ handle; see the module docs.
#[derive(Debug)]
pub struct DeadLetters {
    config: DeadLettersConfig,
    connection: Mutex<Option<Connection>>,
}

enum Action {
    Inspect,
    Replay,
    Discard,
}

enum Found {
    Inspected(Detail),
    Acted(Summary),
}

impl DeadLetters {
    /// A handle that connects on first use.
    #[must_use]
    pub fn new(config: DeadLettersConfig) -> Self {
        Self {
            config,
            connection: Mutex::new(None),
        }
    }

    /// The first `limit` entries (at most [`MAX_BROWSE`]) and the queue's
    /// count; every entry stays in the queue.
    ///
    /// # Errors
    ///
    /// [`DlqError::Broker`] when RabbitMQ is away or fails.
    pub async fn browse(&self, limit: usize) -> Result<Listing, DlqError> {
        let limit = limit.min(MAX_BROWSE);
        self.with_channel(|channel| async move {
            let queue = channel
                .queue_declare(
                    DEAD_LETTER_QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let mut entries = Vec::new();
            while entries.len() < limit {
                let Some(got) = get(&channel).await? else {
                    break;
                };
                let d = got.delivery;
                entries.push(summarise(&d.properties, d.routing_key.as_str(), &d.data));
            }
            Ok(Listing {
                total: queue.message_count(),
                entries,
            })
        })
        .await
    }

    /// The entry with `key`, body and headers included; it stays in the
    /// queue.
    ///
    /// # Errors
    ///
    /// [`DlqError::NotFound`], or [`DlqError::Broker`].
    pub async fn inspect(&self, key: &str) -> Result<Detail, DlqError> {
        match self.find(key, Action::Inspect).await? {
            Found::Inspected(detail) => Ok(detail),
            Found::Acted(_) => Err(DlqError::Broker("internal: inspect acted".to_owned())),
        }
    }

    /// Publishes a copy of the entry with `key` to [`GATEWAY_EXCHANGE`] with
    /// its first routing key (persistent, mandatory, confirmed; the retry
    /// and dead-letter bookkeeping headers removed, [`REPLAYS_HEADER`]
    /// counted up), then removes the entry from the DLQ.
    ///
    /// # Errors
    ///
    /// [`DlqError::NotFound`], [`DlqError::NoRoutingKey`],
    /// [`DlqError::Unroutable`], [`DlqError::Nacked`] (the entry stays in
    /// each case), or [`DlqError::Broker`].
    pub async fn replay(&self, key: &str) -> Result<Done, DlqError> {
        self.act(key, Action::Replay).await
    }

    /// Removes the entry with `key` from the DLQ.
    ///
    /// # Errors
    ///
    /// [`DlqError::NotFound`], or [`DlqError::Broker`].
    pub async fn discard(&self, key: &str) -> Result<Done, DlqError> {
        self.act(key, Action::Discard).await
    }

    async fn act(&self, key: &str, action: Action) -> Result<Done, DlqError> {
        match self.find(key, action).await? {
            Found::Acted(summary) => Ok(Done { summary }),
            Found::Inspected(_) => Err(DlqError::Broker("internal: act inspected".to_owned())),
        }
    }

    /// Scans for `key` and carries out `action` on it.
    async fn find(&self, key: &str, action: Action) -> Result<Found, DlqError> {
        let key = key.to_owned();
        self.with_channel(|channel| async move {
            for _ in 0..MAX_SCAN {
                let Some(got) = get(&channel).await? else {
                    break;
                };
                let d = got.delivery;
                if entry_key(&d.properties, &d.data) != key {
                    continue;
                }
                let summary = summarise(&d.properties, d.routing_key.as_str(), &d.data);
                return match action {
                    Action::Inspect => {
                        Ok(Found::Inspected(detail(summary, &d.properties, &d.data)))
                    }
                    Action::Discard => {
                        d.acker.ack(BasicAckOptions::default()).await?;
                        Ok(Found::Acted(summary))
                    }
                    Action::Replay => {
                        let routing_key = header_str(&d.properties, ROUTING_KEY_HEADER)
                            .ok_or(DlqError::NoRoutingKey)?;
                        republish(&channel, &routing_key, &d.properties, &d.data).await?;
                        d.acker.ack(BasicAckOptions::default()).await?;
                        Ok(Found::Acted(summary))
                    }
                };
            }
            Err(DlqError::NotFound)
        })
        .await
    }

    /// Runs `op` on a fresh confirm channel of the (re)connected
    /// connection, then closes the channel so the broker requeues whatever
    /// `op` got and did not ack. Operations are serialized.
    async fn with_channel<T, F, Fut>(&self, op: F) -> Result<T, DlqError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, DlqError>>,
    {
        let mut slot = self.connection.lock().await;
        let run = async {
            let channel = self.channel(&mut slot).await?;
            let result = op(channel.clone()).await;
            let _ = channel.close(200, "browsed".into()).await;
            result
        };
        match tokio::time::timeout(OPERATION_TIMEOUT, run).await {
            Ok(result) => {
                if let Err(DlqError::Broker(_)) = &result
                    && slot.as_ref().is_some_and(|c| !c.status().connected())
                {
                    *slot = None;
                }
                result
            }
            Err(_) => {
                // Closing the connection returns whatever the channel held.
                if let Some(conn) = slot.take() {
                    let _ = conn.close(200, "operation timed out".into()).await;
                }
                Err(DlqError::Broker(format!(
                    "no answer within {OPERATION_TIMEOUT:?}"
                )))
            }
        }
    }

    async fn channel(&self, slot: &mut Option<Connection>) -> Result<Channel, DlqError> {
        if let Some(conn) = slot.as_ref()
            && conn.status().connected()
            && let Ok(channel) = conn.create_channel().await
        {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            return Ok(channel);
        }
        *slot = None;
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.clone().into());
        let conn = Connection::connect(&self.config.amqp_url, properties)
            .await
            .map_err(|e| {
                DlqError::Broker(format!(
                    "cannot reach RabbitMQ at {}: {e}",
                    redact_url(&self.config.amqp_url)
                ))
            })?;
        let channel = conn.create_channel().await?;
        topology::declare(&channel, self.config.queue_type).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *slot = Some(conn);
        Ok(channel)
    }
}

async fn get(channel: &Channel) -> Result<Option<lapin::message::BasicGetMessage>, DlqError> {
    Ok(channel
        .basic_get(DEAD_LETTER_QUEUE.into(), BasicGetOptions { no_ack: false })
        .await?)
}

async fn republish(
    channel: &Channel,
    routing_key: &str,
    properties: &BasicProperties,
    body: &[u8],
) -> Result<(), DlqError> {
    let properties = properties
        .clone()
        .with_delivery_mode(2)
        .with_headers(replay_headers(properties).into());
    let confirm = channel
        .basic_publish(
            GATEWAY_EXCHANGE.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            properties,
        )
        .await?;
    match confirm.await? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(DlqError::Unroutable(routing_key.to_owned())),
        Confirmation::Nack(_) => Err(DlqError::Nacked),
        Confirmation::NotRequested => Err(DlqError::Broker(
            "internal: the replay channel is not in confirm mode".to_owned(),
        )),
    }
}

/// The headers a replay carries: the original ones without the retry and
/// dead-letter bookkeeping (so the worker starts counting attempts afresh
/// and does not take the DLQ's delivery count for a crash loop), with
/// [`REPLAYS_HEADER`] counted up.
#[must_use]
pub fn replay_headers(properties: &BasicProperties) -> BTreeMap<ShortString, AMQPValue> {
    let mut headers = properties
        .headers()
        .as_ref()
        .map(|h| h.inner().clone())
        .unwrap_or_default();
    let replays = headers.get(REPLAYS_HEADER).and_then(amqp_i64).unwrap_or(0);
    headers.retain(|name, _| !is_bookkeeping(name.as_str()));
    headers.insert(
        REPLAYS_HEADER.into(),
        AMQPValue::LongLongInt(replays.saturating_add(1)),
    );
    headers
}

fn is_bookkeeping(name: &str) -> bool {
    matches!(
        name,
        REASON_HEADER
            | ATTEMPTS_HEADER
            | FAILED_AT_HEADER
            | QUEUE_HEADER
            | RETRY_DELAY_HEADER
            | "x-death"
            | "x-delivery-count"
    ) || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// The stable id of an entry: hex of the first 16 bytes of SHA-256 over
/// the message id, the dead-lettering time and the body (each
/// length-prefixed, so no two different triples hash alike). None of them
/// changes when the broker requeues the entry, so the key survives
/// browsing.
#[must_use]
pub fn entry_key(properties: &BasicProperties, body: &[u8]) -> String {
    let message_id = properties
        .message_id()
        .as_ref()
        .map_or("", ShortString::as_str);
    let failed_at = header(properties, FAILED_AT_HEADER)
        .and_then(amqp_i64)
        .map(|ms| ms.to_string())
        .unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [message_id.as_bytes(), failed_at.as_bytes(), body] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the listing shows of one message.
#[must_use]
pub fn summarise(properties: &BasicProperties, routing_key: &str, body: &[u8]) -> Summary {
    let int = |name| header(properties, name).and_then(amqp_i64);
    Summary {
        key: entry_key(properties, body),
        event: properties.kind().as_ref().map(|t| t.as_str().to_owned()),
        // Dead letters keep their first routing key in a header; the key
        // they were delivered with is the fallback for display only.
        routing_key: header_str(properties, ROUTING_KEY_HEADER)
            .or_else(|| (!routing_key.is_empty()).then(|| routing_key.to_owned())),
        queue: header_str(properties, QUEUE_HEADER),
        reason: header_str(properties, REASON_HEADER),
        attempts: int(ATTEMPTS_HEADER),
        guild_id: header_str(properties, "guild_id"),
        failed_at_ms: int(FAILED_AT_HEADER),
        message_id: properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned()),
        body_bytes: body.len(),
        replays: int(REPLAYS_HEADER).unwrap_or(0),
        delivery_count: int("x-delivery-count"),
    }
}

fn detail(summary: Summary, properties: &BasicProperties, body: &[u8]) -> Detail {
    let truncated = body.len() > MAX_SHOWN_BODY;
    let shown = &body[..body.len().min(MAX_SHOWN_BODY)];
    let headers = properties.headers().as_ref().map_or_else(
        || json!({}),
        |h| {
            Value::Object(
                h.inner()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                    .collect(),
            )
        },
    );
    Detail {
        summary,
        body: String::from_utf8_lossy(shown).into_owned(),
        truncated,
        content_type: properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned()),
        timestamp: *properties.timestamp(),
        headers,
    }
}

/// An AMQP field value as JSON (strings as lossy UTF-8, byte arrays as
/// hex).
#[must_use]
pub fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!({ "scale": d.scale, "value": d.value }),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                .collect(),
        ),
        AMQPValue::ByteArray(b) => json!(
            b.as_slice()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        AMQPValue::Void => Value::Null,
        // Every integer width, and the timestamp.
        other => amqp_i64(other).map_or(Value::Null, |n| json!(n)),
    }
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    match header(properties, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert((*k).into(), v.clone());
        }
        BasicProperties::default()
            .with_message_id("sess:7".into())
            .with_type("GUILD_MEMBER_ADD".into())
            .with_headers(table)
    }

    fn dead(failed_at: i64) -> BasicProperties {
        properties(&[
            (FAILED_AT_HEADER, AMQPValue::LongLongInt(failed_at)),
            (
                REASON_HEADER,
                AMQPValue::LongString("Postgres: denied".into()),
            ),
            (ATTEMPTS_HEADER, AMQPValue::LongInt(1)),
            (QUEUE_HEADER, AMQPValue::LongString("arrakis.events".into())),
            (
                ROUTING_KEY_HEADER,
                AMQPValue::LongString("event.GUILD_MEMBER_ADD".into()),
            ),
            ("guild_id", AMQPValue::LongString("42".into())),
            ("seq", AMQPValue::LongLongInt(7)),
            (RETRY_DELAY_HEADER, AMQPValue::LongString("1s".into())),
            ("x-delivery-count", AMQPValue::LongInt(25)),
            ("x-death", AMQPValue::FieldArray(Vec::new().into())),
            (
                "x-first-death-queue",
                AMQPValue::LongString("arrakis.events".into()),
            ),
            (
                "x-last-death-reason",
                AMQPValue::LongString("rejected".into()),
            ),
        ])
    }

    #[test]
    fn the_key_is_stable_and_tells_entries_apart() {
        let body = br#"{"op":0}"#;
        let key = entry_key(&dead(1000), body);
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        // A requeue bumps the delivery count only: the key holds.
        let mut bumped = dead(1000);
        let mut h = bumped.headers().clone().unwrap();
        h.insert("x-delivery-count".into(), AMQPValue::LongInt(26));
        bumped = bumped.with_headers(h);
        assert_eq!(entry_key(&bumped, body), key);
        // The integer width of the header does not matter.
        let narrow = properties(&[(FAILED_AT_HEADER, AMQPValue::LongInt(1000))]);
        assert_eq!(entry_key(&narrow, body), key);
        assert_ne!(entry_key(&dead(1001), body), key);
        assert_ne!(entry_key(&dead(1000), br#"{"op":1}"#), key);
        // Length prefixes: moving bytes between parts changes the key.
        let a = BasicProperties::default().with_message_id("ab".into());
        let b = BasicProperties::default().with_message_id("a".into());
        assert_ne!(entry_key(&a, b"c"), entry_key(&b, b"bc"));
    }

    #[test]
    fn a_replay_drops_the_bookkeeping_and_counts_itself() {
        let h = replay_headers(&dead(1000));
        let names: Vec<&str> = h.keys().map(ShortString::as_str).collect();
        assert_eq!(
            names,
            ["guild_id", "seq", REPLAYS_HEADER, ROUTING_KEY_HEADER],
            "{h:?}"
        );
        assert_eq!(h.get(REPLAYS_HEADER), Some(&AMQPValue::LongLongInt(1)));
        let again = properties(&[(REPLAYS_HEADER, AMQPValue::LongLongInt(2))]);
        assert_eq!(
            replay_headers(&again).get(REPLAYS_HEADER),
            Some(&AMQPValue::LongLongInt(3))
        );
        assert_eq!(
            replay_headers(&BasicProperties::default()).get(REPLAYS_HEADER),
            Some(&AMQPValue::LongLongInt(1))
        );
    }

    #[test]
    fn the_summary_reads_the_workers_headers() {
        let s = summarise(&dead(1234), "", b"{}");
        assert_eq!(s.event.as_deref(), Some("GUILD_MEMBER_ADD"));
        assert_eq!(s.routing_key.as_deref(), Some("event.GUILD_MEMBER_ADD"));
        assert_eq!(s.queue.as_deref(), Some("arrakis.events"));
        assert_eq!(s.reason.as_deref(), Some("Postgres: denied"));
        assert_eq!(s.attempts, Some(1));
        assert_eq!(s.guild_id.as_deref(), Some("42"));
        assert_eq!(s.failed_at_ms, Some(1234));
        assert_eq!(s.message_id.as_deref(), Some("sess:7"));
        assert_eq!(s.body_bytes, 2);
        assert_eq!(s.replays, 0);
        assert_eq!(s.delivery_count, Some(25));
        let bare = summarise(&BasicProperties::default(), "event.X", b"");
        assert_eq!(bare.routing_key.as_deref(), Some("event.X"));
        assert_eq!(bare.reason, None);
    }

    #[test]
    fn inspect_caps_the_body_and_renders_headers() {
        let body = "é".repeat(MAX_SHOWN_BODY);
        let p = dead(5);
        let d = detail(summarise(&p, "", body.as_bytes()), &p, body.as_bytes());
        assert!(d.truncated);
        assert!(d.body.len() <= MAX_SHOWN_BODY + 3);
        assert_eq!(d.headers["seq"], json!(7));
        assert_eq!(d.headers["guild_id"], json!("42"));
        assert_eq!(d.headers["x-death"], json!([]));
        let small = detail(summarise(&p, "", b"{}"), &p, b"{}");
        assert!(!small.truncated);
        assert_eq!(small.body, "{}");
    }

    #[test]
    fn amqp_values_as_json() {
        assert_eq!(amqp_json(&AMQPValue::ShortUInt(3)), json!(3));
        assert_eq!(amqp_json(&AMQPValue::Boolean(true)), json!(true));
        assert_eq!(
            amqp_json(&AMQPValue::ByteArray(vec![0xab, 1].into())),
            json!("ab01")
        );
        assert_eq!(amqp_json(&AMQPValue::Void), Value::Null);
    }
}
