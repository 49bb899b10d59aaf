//! One consumed message decoded: the §3.3 headers and the gateway payload's
//! envelope (`op`, `t`, `s`, `d` left raw for the handler).
//!
//! Decoding is pure (headers and body in, [`Envelope`] or [`Poison`] out)
//! so the fuzzer can drive it without a broker. A [`Poison`] is a message
//! no retry can fix; its `Display` is the dead-letter reason.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::queue::consumer::Delivered;

/// Longest message id accepted (`<session_id>:<seq>` is about 50 bytes).
const MAX_MESSAGE_ID: usize = 256;

/// The message metadata decoding looks at, taken from the AMQP
/// properties and headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta<'a> {
    /// Property `message_id`.
    pub message_id: Option<&'a str>,
    /// Property `type` (the event name).
    pub kind: Option<&'a str>,
    /// Header `guild_id`.
    pub guild_id: Option<&'a str>,
    /// Header `received_at_us`.
    pub received_at_us: Option<i64>,
    /// Header `shard_id`.
    pub shard_id: Option<i64>,
}

impl<'a> Meta<'a> {
    /// The metadata of a consumed message.
    #[must_use]
    pub fn of(delivered: &'a Delivered) -> Self {
        Self {
            message_id: delivered
                .properties
                .message_id()
                .as_ref()
                .map(lapin::types::ShortString::as_str),
            kind: delivered
                .properties
                .kind()
                .as_ref()
                .map(lapin::types::ShortString::as_str),
            guild_id: delivered.header_str("guild_id"),
            received_at_us: delivered.header_i64("received_at_us"),
            shard_id: delivered.header_i64("shard_id"),
        }
    }
}

/// A decoded dispatch.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The dedupe key, `<session_id>:<seq>`.
    pub message_id: &'a str,
    /// The event name (`t`).
    pub event: Cow<'a, str>,
    /// The sequence number (`s`).
    pub seq: Option<u64>,
    /// The guild the event belongs to (header `guild_id`).
    pub guild_id: Option<u64>,
    /// When the ingestor read the frame, µs since the Unix epoch.
    pub received_at_us: Option<u64>,
    /// The event's `d`, still JSON.
    pub data: &'a RawValue,
}

/// Why a message can never be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    /// No usable `message_id` property.
    #[error("no message_id property (the dedupe key)")]
    NoMessageId,
    /// The body is not a gateway payload.
    #[error("body is not a gateway payload: {0}")]
    NotJson(String),
    /// `op` is not 0.
    #[error("op {0} is not a dispatch (op 0)")]
    NotDispatch(u64),
    /// No `t`.
    #[error("dispatch has no event name (t)")]
    NoEventName,
    /// The `type` property and `t` disagree.
    #[error("type property `{kind}` does not match t `{event}`")]
    TypeMismatch {
        /// The property.
        kind: String,
        /// The payload's `t`.
        event: String,
    },
    /// A header is malformed.
    #[error("header {0} is malformed")]
    BadHeader(&'static str),
    /// `d` does not have the shape this event needs.
    #[error("{event} payload has an unknown shape: {detail}")]
    Shape {
        /// The event name.
        event: String,
        /// What was wrong.
        detail: String,
    },
}

#[derive(Deserialize)]
struct Frame<'a> {
    op: u64,
    #[serde(borrow, default)]
    t: Option<Cow<'a, str>>,
    #[serde(default)]
    s: Option<u64>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Decodes `body` with its metadata.
    ///
    /// # Errors
    ///
    /// The [`Poison`] that makes the message unprocessable.
    pub fn decode(meta: Meta<'a>, body: &'a [u8]) -> Result<Self, Poison> {
        let message_id = meta
            .message_id
            .filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID)
            .ok_or(Poison::NoMessageId)?;
        let frame: Frame<'a> =
            serde_json::from_slice(body).map_err(|e| Poison::NotJson(e.to_string()))?;
        if frame.op != 0 {
            return Err(Poison::NotDispatch(frame.op));
        }
        let event = frame
            .t
            .filter(|t| !t.is_empty())
            .ok_or(Poison::NoEventName)?;
        if let Some(kind) = meta.kind
            && kind != event
        {
            return Err(Poison::TypeMismatch {
                kind: kind.to_owned(),
                event: event.into_owned(),
            });
        }
        let guild_id = meta
            .guild_id
            .map(|g| g.parse::<u64>().map_err(|_| Poison::BadHeader("guild_id")))
            .transpose()?;
        let received_at_us = meta
            .received_at_us
            .map(|us| u64::try_from(us).map_err(|_| Poison::BadHeader("received_at_us")))
            .transpose()?;
        let data = frame.d.ok_or_else(|| Poison::Shape {
            event: event.to_string(),
            detail: "no d".to_owned(),
        })?;
        Ok(Self {
            message_id,
            event,
            seq: frame.s,
            guild_id,
            received_at_us,
            data,
        })
    }

    /// Parses `d` as `T`.
    ///
    /// # Errors
    ///
    /// [`Poison::Shape`] naming what did not fit.
    pub fn data<T: Deserialize<'a>>(&self) -> Result<T, Poison> {
        serde_json::from_str(self.data.get()).map_err(|e| Poison::Shape {
            event: self.event.to_string(),
            detail: e.to_string(),
        })
    }
}

/// A Discord snowflake, sent as a JSON string (numbers are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(pub u64);

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<'a> {
            Text(#[serde(borrow)] Cow<'a, str>),
            Number(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Number(n) => Ok(Self(n)),
            Repr::Text(s) => s
                .parse()
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a snowflake"))),
        }
    }
}

impl std::fmt::Display for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta<'static> {
        Meta {
            message_id: Some("abc:7"),
            kind: Some("GUILD_MEMBER_ADD"),
            guild_id: Some("81384788765712384"),
            received_at_us: Some(1_700_000_000_000_000),
            shard_id: Some(0),
        }
    }

    const BODY: &[u8] =
        br#"{"t":"GUILD_MEMBER_ADD","s":7,"op":0,"d":{"guild_id":"81384788765712384","user":{"id":"1"}}}"#;

    #[test]
    fn a_dispatch_decodes_with_its_headers() {
        let e = Envelope::decode(meta(), BODY).unwrap();
        assert_eq!(e.message_id, "abc:7");
        assert_eq!(e.event, "GUILD_MEMBER_ADD");
        assert_eq!(e.seq, Some(7));
        assert_eq!(e.guild_id, Some(81_384_788_765_712_384));
        assert!(e.data.get().starts_with("{\"guild_id\""));
    }

    #[test]
    fn poison_is_named() {
        let cases: [(Meta<'static>, &[u8], Poison); 5] = [
            (
                Meta {
                    message_id: None,
                    ..meta()
                },
                BODY,
                Poison::NoMessageId,
            ),
            (meta(), b"not json", Poison::NotJson(String::new())),
            (meta(), br#"{"op":11}"#, Poison::NotDispatch(11)),
            (meta(), br#"{"op":0,"d":{}}"#, Poison::NoEventName),
            (
                Meta {
                    kind: Some("MESSAGE_CREATE"),
                    ..meta()
                },
                BODY,
                Poison::TypeMismatch {
                    kind: "MESSAGE_CREATE".into(),
                    event: "GUILD_MEMBER_ADD".into(),
                },
            ),
        ];
        for (meta, body, want) in cases {
            let got = Envelope::decode(meta, body).unwrap_err();
            match (&got, &want) {
                (Poison::NotJson(_), Poison::NotJson(_)) => {}
                _ => assert_eq!(got, want),
            }
            assert!(!got.to_string().is_empty());
        }
        let bad_guild = Meta {
            guild_id: Some("x"),
            ..meta()
        };
        assert_eq!(
            Envelope::decode(bad_guild, BODY).unwrap_err(),
            Poison::BadHeader("guild_id")
        );
    }

    #[test]
    fn shape_errors_name_the_event() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Needs {
            nope: u64,
        }
        let e = Envelope::decode(meta(), BODY).unwrap();
        let err = e.data::<Needs>().unwrap_err();
        assert!(
            err.to_string().starts_with("GUILD_MEMBER_ADD payload"),
            "{err}"
        );
    }

    #[test]
    fn snowflakes_from_strings_or_numbers() {
        let s: Vec<Snowflake> = serde_json::from_str(r#"["42", 43]"#).unwrap();
        assert_eq!(s, vec![Snowflake(42), Snowflake(43)]);
        assert!(serde_json::from_str::<Snowflake>(r#""4x""#).is_err());
    }
}
