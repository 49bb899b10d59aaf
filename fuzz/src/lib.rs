//! Fuzz target bodies for arrakis' byte-parsing surfaces.
//!
//! Each `pub fn` here is one libFuzzer target (`fuzz_targets/<name>.rs` only
//! calls it) and is also what `tests/fuzz_corpus.rs` runs over the saved
//! corpus on stable, by including this very file with `#[path]`: the replay
//! checks exactly the code that was fuzzed. So this file compiles both as a
//! crate root and as a module of the main crate's test: it uses no `crate::`
//! paths and only dependencies the main crate has too.
//!
//! Every target asserts more than "no panic" where the code under test makes
//! a promise: an oracle (serde_json, a second zlib decoder) or an invariant
//! its docs state. The input formats are small and mostly textual so that
//! seed files can be written by hand; each target's doc gives its format.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use arrakis::gateway::inflate::{InflateError, Inflater, SYNC_FLUSH_SUFFIX};
use arrakis::gateway::scan::ScanError;
use arrakis::gateway::shard::{IdentifyProps, MAX_BACKOFF, MAX_OUTGOING, ShardCore, ShardId, Step};
use arrakis::rest::headers::{RateLimitHeaders, Scope, parse_seconds};
use arrakis::rest::route::{Route, RouteKind};
use arrakis::worker::envelope::{Envelope, Meta, Poison, Snowflake};
use arrakis::worker::interaction::{
    Choice, Interaction, MAX_CHOICES, MAX_CONTENT, Message, Reply, defer_body,
};
use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

// ---------------------------------------------------------------------------
// zlib-stream decoder
// ---------------------------------------------------------------------------

/// zlib-stream decoder.
///
/// Input: one byte choosing the message limit, then WebSocket frames, each
/// a little-endian `u16` length and that many bytes (the last one takes
/// whatever is left), so the fuzzer controls every chunk boundary,
/// including ones inside the `00 00 FF FF` suffix.
///
/// Oracle: a second, independently written decoder (plain flate2 with a
/// fixed 4 KiB output window, the message boundary taken from the last four
/// bytes of the whole stream) fed the same frames must produce the same
/// messages and fail the same way; no message exceeds the limit. After an
/// error both sides reset, as the driver does on its next connection.
pub fn inflate(data: &[u8]) {
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    // Tiny limits (0 to 1 KiB) probe the reservation arithmetic; larger
    // ones (4 KiB to 512 KiB) let real messages through.
    let max_message = if limit < 128 {
        usize::from(limit) * 8
    } else {
        usize::from(limit - 127) << 12
    };
    let mut ours = Inflater::new(max_message);
    let mut oracle = ReferenceInflater::new(max_message);
    while !rest.is_empty() {
        let (frame, tail) = next_frame(rest);
        rest = tail;
        let got = ours.push(frame);
        let want = oracle.push(frame);
        match (&got, &want) {
            (Ok(Some(message)), Ok(Some(expected))) => {
                assert!(message.len() <= max_message, "message over the limit");
                assert!(message[..] == expected[..], "inflated bytes differ");
            }
            (Ok(None), Ok(None)) => {
                assert!(ours.pending_len() <= max_message, "pending over the limit");
            }
            (Err(InflateError::Corrupt(_)), Err(RefError::Corrupt))
            | (Err(InflateError::StreamEnded), Err(RefError::Ended))
            | (Err(InflateError::Oversized { .. }), Err(RefError::Oversized)) => {}
            _ => panic!(
                "inflater and reference disagree: {:?} vs {:?}",
                got.as_ref().map(|m| m.as_ref().map(Bytes::len)),
                want.as_ref().map(|m| m.as_ref().map(Vec::len)),
            ),
        }
        if got.is_err() {
            ours.reset();
            oracle = ReferenceInflater::new(max_message);
        }
    }
}

/// Splits the next length-prefixed frame off `data`.
fn next_frame(data: &[u8]) -> (&[u8], &[u8]) {
    let (len, body) = match data {
        [lo, hi, body @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), body),
        [lo] => (usize::from(*lo), &[][..]),
        [] => (0, data),
    };
    body.split_at(len.min(body.len()))
}

/// Why the reference decoder stopped.
#[derive(Debug)]
enum RefError {
    Corrupt,
    Ended,
    Oversized,
}

/// The zlib-stream rules written the plain way, for comparison.
struct ReferenceInflater {
    zlib: Decompress,
    message: Vec<u8>,
    last4: Vec<u8>,
    limit: usize,
}

impl ReferenceInflater {
    fn new(limit: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            message: Vec::new(),
            last4: Vec::new(),
            limit,
        }
    }

    fn push(&mut self, frame: &[u8]) -> Result<Option<Vec<u8>>, RefError> {
        self.last4.extend_from_slice(frame);
        let cut = self.last4.len().saturating_sub(4);
        self.last4.drain(..cut);
        let mut window = [0u8; 4096];
        let mut input = frame;
        loop {
            // Never hold more than limit + 1 bytes: one past the limit is
            // enough to know the message is oversized.
            let room = (self.limit + 1 - self.message.len()).min(window.len());
            if room == 0 {
                return Err(RefError::Oversized);
            }
            let (in_before, out_before) = (self.zlib.total_in(), self.zlib.total_out());
            let status = self
                .zlib
                .decompress(input, &mut window[..room], FlushDecompress::Sync)
                .map_err(|_| RefError::Corrupt)?;
            let consumed = usize::try_from(self.zlib.total_in() - in_before).unwrap_or(usize::MAX);
            let produced =
                usize::try_from(self.zlib.total_out() - out_before).unwrap_or(usize::MAX);
            self.message.extend_from_slice(&window[..produced]);
            input = &input[consumed..];
            if status == Status::StreamEnd {
                return Err(RefError::Ended);
            }
            if produced < room && (input.is_empty() || consumed == 0) {
                break;
            }
        }
        if self.message.len() > self.limit {
            return Err(RefError::Oversized);
        }
        if self.last4 != SYNC_FLUSH_SUFFIX {
            return Ok(None);
        }
        self.last4.clear();
        Ok(Some(std::mem::take(&mut self.message)))
    }
}

// ---------------------------------------------------------------------------
// payload scanner
// ---------------------------------------------------------------------------

/// Payload scanner.
///
/// Input: the payload bytes.
///
/// On any input the scanner's ranges must lie inside the payload. When
/// serde_json parses the input as an object, the scanner must agree with it
/// field by field, reading the object the way `scan.rs` documents: keys are
/// compared as written (an escaped key never matches `op`), the last
/// occurrence of a key wins, every `op` must be a non-negative integer
/// literal and the last one below 256, every `s` `null` or such an integer,
/// `t` and the ids are captured only when they are strings (ids: or start
/// with a digit). Inputs serde_json rejects are only checked for panics:
/// the scanner knowingly accepts some non-JSON (loose numbers and escapes).
pub fn scan(data: &[u8]) {
    let scanned = arrakis::gateway::scan::scan(data);
    if let Ok(env) = &scanned {
        for range in [
            &env.event_name,
            &env.data,
            &env.data_guild_id,
            &env.data_id,
            &env.data_joined_at,
        ]
        .into_iter()
        .flatten()
        {
            assert!(range.start <= range.end && range.end <= data.len());
        }
        let _ = env.event_name(data);
        let _ = env.guild_id(data);
    }
    let Ok(top) = serde_json::from_slice::<Members<'_>>(data) else {
        return;
    };
    // serde_json checks `d` only as a raw value, which lets an invalid
    // escape inside it (a lone surrogate) through; parsing `d` itself finds
    // it. Such input is not JSON, so only panics are checked.
    if let Some(d) = top.last("d").filter(|d| d.starts_with('{'))
        && serde_json::from_str::<Members<'_>>(d).is_err()
    {
        return;
    }
    let too_deep = nesting_depth(data) > SCAN_MAX_NESTING;
    let want = ScanOracle::of(&top).filter(|_| !too_deep);
    match (&scanned, &want) {
        (Ok(env), Some(want)) => {
            let slice = |r: &Option<std::ops::Range<usize>>| r.clone().map(|r| &data[r]);
            assert_eq!(env.op, want.op, "op");
            assert_eq!(env.seq, want.seq, "s");
            same("t", slice(&env.event_name), want.t);
            same("d", slice(&env.data), want.d);
            same("d.guild_id", slice(&env.data_guild_id), want.guild_id);
            same("d.id", slice(&env.data_id), want.id);
            same("d.joined_at", slice(&env.data_joined_at), want.joined_at);
        }
        (Err(ScanError::TooDeep), None) if too_deep => {}
        // A malformed `op` or `s` may be reported as such or, when it is
        // not even a number, as the unexpected byte.
        (Err(_), None) if !too_deep => {}
        _ => panic!(
            "scanner and serde_json disagree: {scanned:?} vs {}",
            if too_deep {
                "too deep"
            } else if want.is_some() {
                "valid"
            } else {
                "bad op or s"
            }
        ),
    }
}

/// Deepest nesting the scanner accepts, counting the payload object: its
/// `MAX_DEPTH` (128) levels below the values of the payload's members.
const SCAN_MAX_NESTING: usize = 129;

/// How deeply `{`/`[` nest outside strings. serde_json, asked for raw
/// values, skips them without a depth limit, so depth is judged here.
fn nesting_depth(data: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in data {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => in_string = !in_string,
            (false, _, b'{' | b'[') => {
                depth += 1;
                max = max.max(depth);
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Asserts the scanner captured the same bytes as the oracle, showing only
/// a prefix of each when they differ.
fn same(field: &str, got: Option<&[u8]>, want: Option<&[u8]>) {
    if got != want {
        let show = |b: Option<&[u8]>| {
            b.map(|b| String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned())
        };
        panic!(
            "{field}: scanner {:?}, serde_json {:?}",
            show(got),
            show(want)
        );
    }
}

/// What the scanner must report for a payload serde_json accepted, or
/// `None` when it must reject the payload's `op` or `s`.
#[derive(Debug)]
struct ScanOracle<'a> {
    op: u8,
    seq: Option<u64>,
    t: Option<&'a [u8]>,
    d: Option<&'a [u8]>,
    guild_id: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    joined_at: Option<&'a [u8]>,
}

impl<'a> ScanOracle<'a> {
    fn of(top: &Members<'a>) -> Option<Self> {
        let ops: Vec<_> = top.all("op").collect();
        let mut op = None;
        for raw in &ops {
            op = Some(plain_u64(raw)?);
        }
        let op = u8::try_from(op?).ok()?;
        let mut seq = None;
        for raw in top.all("s") {
            seq = if raw == "null" {
                None
            } else {
                Some(plain_u64(raw)?)
            };
        }
        let t = top.last("t").and_then(string_contents);
        let d = top.last("d");
        let data = d
            .filter(|d| d.starts_with('{'))
            .and_then(|d| serde_json::from_str::<Members<'a>>(d).ok());
        let id_of = |key: &str| {
            let raw = data.as_ref()?.last(key)?;
            match raw.as_bytes()[0] {
                b'"' => string_contents(raw),
                b'0'..=b'9' => Some(raw.as_bytes()),
                _ => None,
            }
        };
        Some(Self {
            op,
            seq,
            t,
            d: d.map(str::as_bytes),
            guild_id: id_of("guild_id"),
            id: id_of("id"),
            joined_at: id_of("joined_at"),
        })
    }
}

/// A digits-only JSON number that fits in 64 bits (`-0`, `1e2` and `1.0`
/// are not, by the scanner's contract).
fn plain_u64(raw: &str) -> Option<u64> {
    raw.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| raw.parse().ok())
        .flatten()
}

/// The bytes between the quotes of a raw JSON string, escapes as written.
fn string_contents(raw: &str) -> Option<&[u8]> {
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .map(str::as_bytes)
}

/// A JSON object's members in order, duplicates kept, values raw.
struct Members<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// Raw values of every member named `name` (written without escapes).
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.0
            .iter()
            .filter(move |(k, _)| k.0 == Some(name))
            .map(|(_, v)| v.get())
    }

    fn last(&self, name: &str) -> Option<&'a str> {
        self.all(name).last()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Key<'a>, &'a RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An object key: its text when written without escapes (serde_json lends
/// those straight from the input), `None` when it had escapes.
struct Key<'a>(Option<&'a str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Some(v)))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Key<'a>, E> {
                Ok(Key(None))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------
// shard protocol core
// ---------------------------------------------------------------------------

/// One thing that happens to a shard, built structurally by `arbitrary`.
#[derive(Debug, Arbitrary)]
enum ShardInput {
    Connect,
    ConnectFailed,
    Disconnect(Option<u16>),
    Permit,
    Pause(bool),
    /// Let this many milliseconds pass.
    Advance(u32),
    /// Jump to the core's next deadline and fire the timer there.
    Timer,
    Hello(u32),
    Ready {
        seq: u64,
        session: u8,
    },
    Resumed(u64),
    Dispatch {
        seq: Option<u64>,
        name: EventName,
    },
    HeartbeatAck,
    HeartbeatRequest,
    Reconnect,
    InvalidSession(bool),
    Garbage(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum EventName {
    MessageCreate,
    GuildCreate,
    Ready,
    Resumed,
    Other(String),
}

impl EventName {
    fn as_str(&self) -> &str {
        match self {
            Self::MessageCreate => "MESSAGE_CREATE",
            Self::GuildCreate => "GUILD_CREATE",
            Self::Ready => "READY",
            Self::Resumed => "RESUMED",
            Self::Other(name) => name,
        }
    }
}

/// What the fuzzer knows independently of the core.
#[derive(Default)]
struct ShardModel {
    connected: bool,
    identify_requested: bool,
    identified: bool,
    seqs: HashSet<u64>,
    session_ids: HashSet<String>,
}

/// Gateway frame handling as a whole: one shard's protocol core driven by a
/// sequence of [`ShardInput`]s decoded from the input with
/// `arbitrary::Unstructured`. Payloads go through the scanner first, and
/// scan or protocol errors end in `on_malformed`, exactly as the driver in
/// `connection.rs` does.
///
/// Invariants: every send fits in 4096 bytes and is one of op 1, 2, 6;
/// nothing is sent without a connection; a heartbeat or resume carries only
/// a sequence number the core was given in a dispatch (and a heartbeat
/// carries the session's current one); a resume names a session id from a
/// READY; Identify follows a permit request on the same connection, once;
/// a dispatch step echoes its frame's sequence number; back-off stays
/// within [`MAX_BACKOFF`].
pub fn shard(data: &[u8]) {
    let Ok(inputs) = Vec::<ShardInput>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let props = IdentifyProps {
        token: arrakis::config::Secret::new("fuzz.token"),
        intents: 513,
        large_threshold: 50,
    };
    let mut core = ShardCore::new(
        ShardId {
            number: 0,
            total: 1,
        },
        props,
        7,
    );
    let mut model = ShardModel::default();
    let mut now = tokio::time::Instant::now();
    for input in inputs {
        let payload = match input {
            ShardInput::Connect => {
                core.on_connected(now);
                model.connected = true;
                model.identify_requested = false;
                model.identified = false;
                None
            }
            ShardInput::ConnectFailed => {
                assert!(core.on_connect_failed() <= MAX_BACKOFF);
                model.connected = false;
                None
            }
            ShardInput::Disconnect(code) => {
                let step = core.on_disconnect(code);
                check_step(&core, &mut model, &step, None);
                None
            }
            ShardInput::Permit => {
                let step = core.on_identify_permit(now);
                check_step(&core, &mut model, &step, None);
                None
            }
            ShardInput::Pause(paused) => {
                core.set_reading_paused(paused);
                None
            }
            ShardInput::Advance(ms) => {
                now += Duration::from_millis(u64::from(ms));
                None
            }
            ShardInput::Timer => {
                if let Some(deadline) = core.next_deadline() {
                    now = now.max(deadline);
                }
                let step = core.on_timer(now);
                check_step(&core, &mut model, &step, None);
                None
            }
            ShardInput::Hello(ms) => {
                Some(format!(r#"{{"op":10,"d":{{"heartbeat_interval":{ms}}}}}"#))
            }
            ShardInput::Ready { seq, session } => {
                // u8::MAX stands for an empty session id, which the core
                // must refuse; any other is one a resume may name.
                let id = if session == u8::MAX {
                    String::new()
                } else {
                    format!("sess-{session}")
                };
                if !id.is_empty() {
                    model.session_ids.insert(id.clone());
                }
                Some(format!(
                    r#"{{"t":"READY","s":{seq},"op":0,"d":{{"v":10,"session_id":"{id}","resume_gateway_url":"wss://resume.example","guilds":[]}}}}"#
                ))
            }
            ShardInput::Resumed(seq) => {
                Some(format!(r#"{{"op":0,"t":"RESUMED","s":{seq},"d":{{}}}}"#))
            }
            ShardInput::Dispatch { seq, name } => {
                let s = seq.map_or_else(|| "null".to_owned(), |s| s.to_string());
                let t = serde_json::to_string(name.as_str()).unwrap_or_default();
                Some(format!(
                    r#"{{"op":0,"s":{s},"t":{t},"d":{{"id":"1","session_id":"x"}}}}"#
                ))
            }
            ShardInput::HeartbeatAck => Some(r#"{"op":11}"#.to_owned()),
            ShardInput::HeartbeatRequest => Some(r#"{"op":1,"d":null}"#.to_owned()),
            ShardInput::Reconnect => Some(r#"{"op":7,"d":null}"#.to_owned()),
            ShardInput::InvalidSession(resumable) => Some(format!(r#"{{"op":9,"d":{resumable}}}"#)),
            ShardInput::Garbage(bytes) => {
                feed_shard(&mut core, &mut model, now, &bytes);
                None
            }
        };
        if let Some(payload) = payload {
            feed_shard(&mut core, &mut model, now, payload.as_bytes());
        }
        if core.is_active() {
            assert!(model.connected, "active without a connection");
        }
    }
}

/// One payload through scan and `on_payload`, as `connection.rs` does it.
fn feed_shard(
    core: &mut ShardCore,
    model: &mut ShardModel,
    now: tokio::time::Instant,
    payload: &[u8],
) {
    let step = match arrakis::gateway::scan::scan(payload) {
        Ok(env) => match core.on_payload(now, &env, payload) {
            Ok(step) => {
                check_step(core, model, &step, env.seq);
                return;
            }
            Err(_) => core.on_malformed(),
        },
        Err(_) => core.on_malformed(),
    };
    check_step(core, model, &step, None);
}

fn check_step(core: &ShardCore, model: &mut ShardModel, step: &Step, frame_seq: Option<u64>) {
    match step {
        Step::Idle => {}
        Step::Send(payload) => {
            assert!(model.connected, "send without a connection: {payload}");
            assert!(payload.len() <= MAX_OUTGOING, "oversized send");
            let v: Value = serde_json::from_str(payload).expect("sends are JSON");
            match v["op"].as_u64() {
                Some(1) => match &v["d"] {
                    Value::Null => assert!(core.session().is_none(), "heartbeat without seq"),
                    d => {
                        let seq = d.as_u64().expect("heartbeat seq is an integer");
                        assert!(
                            model.seqs.contains(&seq),
                            "heartbeat seq {seq} never received"
                        );
                        assert_eq!(core.session().map(|s| s.seq), Some(seq));
                    }
                },
                Some(2) => {
                    assert!(
                        model.identify_requested,
                        "identify without a permit request"
                    );
                    assert!(!model.identified, "second identify on one connection");
                    model.identified = true;
                }
                Some(6) => {
                    let seq = v["d"]["seq"].as_u64().expect("resume seq");
                    let id = v["d"]["session_id"].as_str().expect("resume session id");
                    assert!(model.seqs.contains(&seq), "resume seq {seq} never received");
                    assert!(
                        model.session_ids.contains(id),
                        "resume of unknown session {id}"
                    );
                }
                op => panic!("unexpected send op {op:?}: {payload}"),
            }
        }
        Step::RequestIdentify => {
            assert!(model.connected);
            model.identify_requested = true;
        }
        Step::Dispatch { seq, .. } => {
            assert_eq!(Some(*seq), frame_seq, "dispatch seq is not the frame's");
            model.seqs.insert(*seq);
        }
        Step::Reconnect(r) => {
            assert!(r.delay <= MAX_BACKOFF, "back-off {:?}", r.delay);
            model.connected = false;
        }
        Step::Fatal(_) => model.connected = false,
    }
}

// ---------------------------------------------------------------------------
// REST rate-limit headers
// ---------------------------------------------------------------------------

/// The headers a one-character name stands for, so the fuzzer reaches the
/// interesting ones without guessing their spelling.
const RATE_LIMIT_HEADERS: [&str; 8] = [
    "x-ratelimit-bucket",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset-after",
    "retry-after",
    "x-ratelimit-scope",
    "x-ratelimit-global",
    "x-ratelimit-reset",
];

/// REST rate-limit header parsing and 429 classification.
///
/// Input: header lines `name: value` (a name `0`–`7` stands for one of
/// [`RATE_LIMIT_HEADERS`]), a blank line, then the 429 body. Names and
/// values `hyper` refuses are skipped.
///
/// Invariants: a kept bucket is 1–64 bytes of `[A-Za-z0-9_-]`; every
/// duration (`parse_seconds`, the headers, the 429 wait) is at most a day;
/// a body that does not even start like JSON is classified Cloudflare.
pub fn headers(data: &[u8]) {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let day = Duration::from_secs(86_400);
    let mut map = hyper::HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let name = match name {
            [d @ b'0'..=b'7'] => RATE_LIMIT_HEADERS[usize::from(d - b'0')].as_bytes(),
            _ => name,
        };
        if let Ok(text) = std::str::from_utf8(value) {
            assert!(parse_seconds(text).is_none_or(|d| d <= day));
        }
        let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            hyper::header::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        map.append(name, value);
    }
    let parsed = RateLimitHeaders::parse(&map);
    if let Some(bucket) = &parsed.bucket {
        assert!(!bucket.is_empty() && bucket.len() <= 64);
        assert!(
            bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    assert!(parsed.reset_after.is_none_or(|d| d <= day));
    assert!(parsed.retry_after.is_none_or(|d| d <= day));
    let (scope, wait) = parsed.classify_429(body);
    assert!(wait <= day, "429 wait {wait:?}");
    // Only the body's first byte is judged: serde_json skips unknown members
    // without checking their UTF-8, and serde reads a struct from an array
    // too, so "is it JSON" has no sharper answer than the parser's own.
    if !matches!(body.trim_ascii_start().first(), Some(b'{' | b'[')) {
        assert_eq!(scope, Scope::Cloudflare, "non-JSON 429 body");
    }
}

// ---------------------------------------------------------------------------
// route templating
// ---------------------------------------------------------------------------

/// Placeholders a route key may contain instead of a path segment.
const PLACEHOLDERS: [&str; 7] = [":id", ":code", ":emoji", ":token", ":user", ":x", "…"];

/// Route templating.
///
/// Input (UTF-8): the method on the first line, the path on the second,
/// optionally `now` in Unix milliseconds on the third.
///
/// Invariants (the module's promises): a key is `VERB /seg/...` where the
/// verb is the method or `MOD`, and no segment is an id (≤ 20 digits) or a
/// non-literal: only placeholders and short `[A-Za-z0-9-_@.]` words; keys
/// are bounded in length whatever the path; webhook and interaction tokens
/// never appear; a major is empty or `c:`/`g:`/`w:`/`i:` and digits (plus a
/// 16-hex-digit token digest for webhook tokens); a trailing slash changes
/// nothing.
pub fn route(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let method = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let now_ms = lines
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1_700_000_000_000);
    let Ok(route) = Route::parse(method, path, now_ms) else {
        return;
    };
    assert!(path.starts_with('/'));
    let key = route
        .key
        .strip_suffix(" young")
        .or_else(|| route.key.strip_suffix(" old"))
        .unwrap_or(&route.key);
    // The method is taken as given (it may even contain a space), so the
    // template is what follows it, or `MOD ` for the reaction routes.
    let template = key
        .strip_prefix(method)
        .and_then(|k| k.strip_prefix(' '))
        .or_else(|| {
            key.strip_prefix("MOD ")
                .filter(|_| matches!(method, "PUT" | "DELETE"))
        })
        .unwrap_or_else(|| panic!("key {key} starts with neither {method} nor MOD"));
    assert!(
        template.len() <= 12 * 41 + "/…".len(),
        "unbounded key {key}"
    );
    for seg in template.split('/').skip(1) {
        let is_id = !seg.is_empty() && seg.len() <= 20 && seg.bytes().all(|b| b.is_ascii_digit());
        let literal = seg.len() <= 40
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@' | b'.'));
        assert!(
            PLACEHOLDERS.contains(&seg) || (literal && !is_id),
            "segment {seg:?} of {key}"
        );
    }
    // The token position of webhook and interaction paths never reaches
    // the key (checked by position: the token may equal another segment).
    let segs: Vec<&str> = path[1..].split('/').collect();
    if matches!(segs.first(), Some(&("webhooks" | "interactions")))
        && segs.get(2).is_some_and(|t| !t.is_empty())
    {
        assert_eq!(
            template.split('/').nth(3),
            Some(":token"),
            "token in key {key}"
        );
    }
    if !route.major.is_empty() {
        let (tag, rest) = route.major.split_once(':').expect("major has a tag");
        assert!(
            matches!(tag, "c" | "g" | "w" | "i"),
            "major {}",
            route.major
        );
        let (id, digest) = rest
            .split_once(':')
            .map_or((rest, None), |(i, d)| (i, Some(d)));
        assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
        if let Some(digest) = digest {
            assert_eq!(route.kind, RouteKind::WebhookToken);
            assert!(digest.len() == 16 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let slashed = Route::parse(method, &format!("{path}/"), now_ms);
    assert_eq!(
        slashed.as_ref(),
        Ok(&route),
        "trailing slash changed {path}"
    );
}

// ---------------------------------------------------------------------------
// worker message decoding
// ---------------------------------------------------------------------------

/// A few `d` shapes handlers read, to exercise `Envelope::data`.
#[derive(Deserialize)]
#[allow(dead_code)]
struct IdsShape {
    #[serde(default)]
    id: Option<Snowflake>,
    #[serde(default)]
    guild_id: Option<Snowflake>,
    #[serde(default)]
    user: Option<UserShape>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct UserShape {
    id: Snowflake,
    #[serde(default)]
    username: Option<String>,
}

/// AMQP message decoding in the worker.
///
/// Input: one line of tab-separated metadata (`message_id`, `type`,
/// `guild_id` header, `received_at_us` header, `shard_id` header; an empty
/// field is absent, the two numbers are decimal), then the body.
///
/// Invariants on success: the message id is 1–256 bytes; the event name is
/// non-empty and equals the `type` property when one is set; the headers
/// are the parsed metadata; and, when the body is strict JSON, serde_json
/// reads the same `op` (0), `t`, `s` and `d` from it and `data` parses `d`
/// as a JSON value.
pub fn envelope(data: &[u8]) {
    let newline = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(meta_line) = std::str::from_utf8(&data[..newline]) else {
        return;
    };
    let body = data.get(newline + 1..).unwrap_or_default();
    let mut fields = meta_line
        .split('\t')
        .map(|f| Some(f).filter(|f| !f.is_empty()));
    let mut field = || fields.next().flatten();
    let meta = Meta {
        message_id: field(),
        kind: field(),
        guild_id: field(),
        received_at_us: field().and_then(|n| n.parse().ok()),
        shard_id: field().and_then(|n| n.parse().ok()),
    };
    let env = match Envelope::decode(meta, body) {
        Ok(env) => env,
        Err(Poison::NoMessageId) => {
            assert!(
                meta.message_id
                    .is_none_or(|id| id.is_empty() || id.len() > 256)
            );
            return;
        }
        Err(poison) => {
            let _ = poison.to_string();
            return;
        }
    };
    assert!(!env.message_id.is_empty() && env.message_id.len() <= 256);
    assert!(!env.event.is_empty());
    if let Some(kind) = meta.kind {
        assert_eq!(kind, env.event);
    }
    assert_eq!(
        env.guild_id,
        meta.guild_id
            .map(|g| g.parse().expect("guild_id was accepted"))
    );
    assert_eq!(
        env.received_at_us,
        meta.received_at_us.map(|us| us.unsigned_abs())
    );
    // serde_json skips unknown members without checking their strings'
    // UTF-8, so a body can decode without being strict JSON; the worker
    // never reads those members. The oracle needs strict JSON.
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let _ = env.data::<Value>();
        return;
    };
    assert_eq!(value["op"].as_u64(), Some(0));
    assert_eq!(value["t"].as_str(), Some(&*env.event));
    assert_eq!(value["s"].as_u64(), env.seq);
    let d: Value = env.data().expect("d is JSON");
    assert_eq!(d, value["d"]);
    let _ = env.data::<IdsShape>();
    let _ = env.data::<Vec<UserShape>>();
}

// ---------------------------------------------------------------------------
// interactions
// ---------------------------------------------------------------------------

/// Interaction payload parsing, then every accessor and reply builder.
///
/// Input (UTF-8): an interaction object, as `INTERACTION_CREATE`'s `d`.
///
/// Invariants: replies built from whatever the interaction carries keep
/// Discord's limits (content ≤ 2000 characters, ≤ 25 choices of ≤ 100
/// characters, modal title ≤ 45), an edit never carries `flags`, and the
/// callback path names the interaction.
pub fn interaction(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(it) = Interaction::parse(text) else {
        return;
    };
    let _ = (
        it.is_admin(),
        it.command_name(),
        it.focused(),
        it.kind.label(),
    );
    let subcommands = it.subcommands();
    let mut content = subcommands.join(" ");
    let mut choices = Vec::new();
    for option in it.leaf_options() {
        let _ = it.option_str(&option.name);
        content.push_str(&option.name);
        if let Some(Value::String(s)) = &option.value {
            content.push_str(s);
        }
        // Repeated so that the choice limit is always exercised.
        for _ in 0..4 {
            choices.push(Choice {
                name: format!("{}{}", option.name, content),
                value: option.value.clone().unwrap_or(Value::Null),
            });
        }
    }
    for value in &it.data.values {
        content.push_str(value);
    }
    let custom_id = it.data.custom_id.clone().unwrap_or_default();
    let callback = it.callback_path();
    assert!(callback.starts_with(&format!("/interactions/{}/", it.id)));
    assert!(callback.ends_with("/callback"));
    let _ = (it.original_path(), it.followup_path());
    let mut message = Message::ephemeral(content.repeat(3));
    message.components.clone_from(&it.data.components);
    let replies = [
        Reply::Message(message.clone()),
        Reply::Update(Message::public(content.clone())),
        Reply::Acknowledge,
        Reply::Choices(choices),
        Reply::Modal {
            custom_id: custom_id.clone(),
            title: custom_id.repeat(2),
            components: it.data.components.clone(),
        },
    ];
    for reply in &replies {
        let body = reply.callback_body();
        let data = &body["data"];
        if let Some(content) = data["content"].as_str() {
            assert!(content.chars().count() <= MAX_CONTENT);
        }
        if let Some(choices) = data["choices"].as_array() {
            assert!(choices.len() <= MAX_CHOICES);
            for choice in choices {
                assert!(
                    choice["name"]
                        .as_str()
                        .is_some_and(|n| n.chars().count() <= 100)
                );
            }
        }
        if let Some(title) = data["title"].as_str() {
            assert!(title.chars().count() <= 45);
        }
        if let Some(edit) = reply.edit_body() {
            assert!(edit.get("flags").is_none());
        }
    }
    let _ = (defer_body(it.kind, true), defer_body(it.kind, false));
}
