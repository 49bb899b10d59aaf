//! One dispatch as it goes to RabbitMQ (ARCHITECTURE.md §3.3).
//!
//! The body is the inflated gateway payload, byte for byte, held as
//! `Bytes` from the inflater to the AMQP frame; the event name and guild id
//! are byte ranges into it, found by the scanner. Nothing is re-serialised.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::config::EventList;
use crate::gateway::shard::ShardId;

/// A dispatch on its way to the broker.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The shard that received it.
    pub shard: ShardId,
    /// Its sequence number in the session.
    pub seq: u64,
    /// The session it belongs to.
    pub session_id: Arc<str>,
    /// The payload exactly as Discord sent it, after decompression.
    pub body: Bytes,
    /// Range of the event name in `body`.
    pub event: Range<usize>,
    /// Range of the guild id in `body`, if the event has one.
    pub guild_id: Option<Range<usize>>,
    /// When the frame was read off the socket, µs since the Unix epoch.
    pub received_at_us: u64,
    /// For GUILD_CREATE: `startup` or `join` (header `guild_create`).
    pub guild_create: Option<&'static str>,
}

impl Dispatch {
    /// The event name (validated by the shard before a `Dispatch` is made).
    #[must_use]
    pub fn event_name(&self) -> &str {
        std::str::from_utf8(&self.body[self.event.clone()]).unwrap_or("UNKNOWN")
    }

    /// The guild id, if any.
    #[must_use]
    pub fn guild_id(&self) -> Option<&str> {
        self.guild_id
            .clone()
            .and_then(|r| std::str::from_utf8(&self.body[r]).ok())
    }

    /// `<session_id>:<seq>`: stable across redelivery and resume replays,
    /// so consumers use it as the dedupe key.
    #[must_use]
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.session_id, self.seq)
    }

    /// The AMQP properties and headers of §3.3.
    #[must_use]
    pub fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            "shard_id".into(),
            AMQPValue::LongInt(saturating_i32(self.shard.number)),
        );
        headers.insert(
            "shard_count".into(),
            AMQPValue::LongInt(saturating_i32(self.shard.total)),
        );
        headers.insert(
            "seq".into(),
            AMQPValue::LongLongInt(i64::try_from(self.seq).unwrap_or(i64::MAX)),
        );
        if let Some(guild_id) = self.guild_id() {
            headers.insert("guild_id".into(), AMQPValue::LongString(guild_id.into()));
        }
        if let Some(kind) = self.guild_create {
            headers.insert("guild_create".into(), AMQPValue::LongString(kind.into()));
        }
        headers.insert(
            "received_at_us".into(),
            AMQPValue::LongLongInt(i64::try_from(self.received_at_us).unwrap_or(i64::MAX)),
        );
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_type(ShortString::from(self.event_name()))
            .with_message_id(ShortString::from(self.message_id()))
            .with_timestamp(self.received_at_us / 1_000_000)
            .with_headers(headers)
    }
}

fn saturating_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The class part of a routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// INTERACTION_CREATE: answered within 3 s, so it gets its own queue.
    Interaction,
    /// High-volume, low-value events (presences, typing, operator's list).
    Bulk,
    /// Everything else.
    Event,
}

impl EventClass {
    /// The routing-key prefix.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            EventClass::Interaction => "interaction",
            EventClass::Bulk => "bulk",
            EventClass::Event => "event",
        }
    }
}

/// Events in the bulk class whatever the operator lists.
pub const DEFAULT_BULK: [&str; 2] = ["PRESENCE_UPDATE", "TYPING_START"];

/// How dispatches are classified and filtered.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Extra bulk events (`ARRAKIS_BULK_EVENTS`).
    pub bulk: EventList,
    /// Events not published at all (`ARRAKIS_DROP_EVENTS`).
    pub drop: EventList,
}

impl Routing {
    /// The class of an event.
    #[must_use]
    pub fn class(&self, event: &str) -> EventClass {
        if event == "INTERACTION_CREATE" {
            EventClass::Interaction
        } else if DEFAULT_BULK.contains(&event) || self.bulk.contains(event) {
            EventClass::Bulk
        } else {
            EventClass::Event
        }
    }

    /// `<class>.<EVENT_NAME>`.
    #[must_use]
    pub fn routing_key(&self, event: &str) -> String {
        format!("{}.{event}", self.class(event).prefix())
    }

    /// Whether the operator dropped this event type.
    #[must_use]
    pub fn is_dropped(&self, event: &str) -> bool {
        self.drop.contains(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(body: &'static str) -> Dispatch {
        let env = crate::gateway::scan::scan(body.as_bytes()).unwrap();
        let bytes = Bytes::from_static(body.as_bytes());
        let guild_id = env.guild_id_range(&bytes);
        Dispatch {
            shard: ShardId {
                number: 2,
                total: 16,
            },
            seq: env.seq.unwrap(),
            session_id: "abc123".into(),
            event: env.event_name.clone().unwrap(),
            guild_id,
            body: bytes,
            received_at_us: 1_700_000_000_123_456,
            guild_create: None,
        }
    }

    #[test]
    fn routing_keys_by_class() {
        let routing = Routing {
            bulk: "GUILD_MEMBER_UPDATE".parse().unwrap(),
            drop: EventList::default(),
        };
        assert_eq!(
            routing.routing_key("INTERACTION_CREATE"),
            "interaction.INTERACTION_CREATE"
        );
        assert_eq!(
            routing.routing_key("PRESENCE_UPDATE"),
            "bulk.PRESENCE_UPDATE"
        );
        assert_eq!(routing.routing_key("TYPING_START"), "bulk.TYPING_START");
        assert_eq!(
            routing.routing_key("GUILD_MEMBER_UPDATE"),
            "bulk.GUILD_MEMBER_UPDATE"
        );
        assert_eq!(
            routing.routing_key("GUILD_MEMBER_ADD"),
            "event.GUILD_MEMBER_ADD"
        );
        assert_eq!(routing.routing_key("READY"), "event.READY");
    }

    #[test]
    fn properties_and_headers_follow_the_contract() {
        let d = dispatch(
            r#"{"t":"MESSAGE_CREATE","s":77,"op":0,"d":{"guild_id":"4242","content":"hi"}}"#,
        );
        let props = d.properties();
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(
            props.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(props.kind().as_ref().unwrap().as_str(), "MESSAGE_CREATE");
        assert_eq!(props.message_id().as_ref().unwrap().as_str(), "abc123:77");
        assert_eq!(props.timestamp(), &Some(1_700_000_000));
        let headers = props.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get("shard_id"), Some(&AMQPValue::LongInt(2)));
        assert_eq!(headers.get("shard_count"), Some(&AMQPValue::LongInt(16)));
        assert_eq!(headers.get("seq"), Some(&AMQPValue::LongLongInt(77)));
        assert_eq!(
            headers.get("guild_id"),
            Some(&AMQPValue::LongString("4242".into()))
        );
        assert_eq!(
            headers.get("received_at_us"),
            Some(&AMQPValue::LongLongInt(1_700_000_000_123_456))
        );
    }

    #[test]
    fn guild_create_guild_id_is_d_id_and_absent_when_none() {
        let d = dispatch(r#"{"op":0,"s":3,"t":"GUILD_CREATE","d":{"id":"99","name":"x"}}"#);
        assert_eq!(d.guild_id(), Some("99"));
        let d = dispatch(r#"{"op":0,"s":4,"t":"MESSAGE_CREATE","d":{"channel_id":"5"}}"#);
        let props = d.properties();
        assert!(
            props
                .headers()
                .as_ref()
                .unwrap()
                .inner()
                .get("guild_id")
                .is_none()
        );
    }
}
