//! The shard's protocol core: every gateway rule, no I/O.
//!
//! `ShardCore` is a state machine in the style of quinn-proto: the driver
//! (`connection.rs`) feeds it what happened — connected, a scanned payload,
//! a timer fired, the socket closed — each with `now`, and gets back a
//! [`Step`] saying what to do: send this, ask the identify queue for a
//! permit, publish this dispatch, close and reconnect after this delay, or
//! stop for good. It never touches a socket or a clock, so every rule of
//! PROTOCOL.md §1 is a unit test with a fake clock (`shard/tests.rs`).
//!
//! The session (id, resume URL, last sequence) outlives connections; the
//! heartbeat, send budget and handshake phase belong to one connection and
//! are rebuilt on every connect.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::time::Instant;

use super::close::{self, CloseAction, Fatal};
use super::heartbeat::{Beat, Heartbeat};
use super::scan::Envelope;
use super::send_limit::{SendKind, SendLimiter};
use crate::config::Secret;

/// How long to wait for Hello after the WebSocket opens.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for READY or RESUMED after sending Identify or Resume.
/// Resumes that replay many events can take a while; this only catches a
/// gateway that went silent.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest payload Discord accepts from a client (close 4002 beyond it).
pub const MAX_OUTGOING: usize = 4096;
/// Longest reconnect back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The close code we use to leave a connection without ending the session.
/// Anything but 1000/1001 keeps the session resumable; 4000 reads as
/// "unknown error" on Discord's side, which is honest for a zombie.
pub const RESUMABLE_CLOSE: u16 = 4000;

/// Shard id and total, as sent in Identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId {
    /// This shard's id.
    pub number: u32,
    /// The bot's shard count.
    pub total: u32,
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.number, self.total)
    }
}

/// What the shard sends in Identify besides its id.
#[derive(Debug, Clone)]
pub struct IdentifyProps {
    /// The bot token.
    pub token: Secret,
    /// Gateway intents bitmask.
    pub intents: u64,
    /// `large_threshold` (50–250).
    pub large_threshold: u8,
}

/// A resumable gateway session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `session_id` from READY.
    pub id: Arc<str>,
    /// `resume_gateway_url` from READY.
    pub resume_url: Arc<str>,
    /// The last sequence number received.
    pub seq: u64,
}

/// Where the next connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The cached gateway URL, to identify.
    Gateway,
    /// The session's resume URL, to resume.
    Resume(Arc<str>),
}

/// Why the shard is reconnecting (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectReason {
    /// No ACK between two heartbeats.
    Zombie,
    /// Discord sent op 7.
    Requested,
    /// op 9 with `d: true`.
    InvalidSessionResumable,
    /// op 9 with `d: false`.
    InvalidSession,
    /// Discord closed the connection with a code.
    Closed(u16),
    /// The socket ended without a close frame, or a transport error.
    Dropped,
    /// A payload could not be decompressed or parsed.
    Malformed,
    /// No Hello, READY or RESUMED in time.
    Timeout,
    /// The connection attempt itself failed.
    ConnectFailed,
}

impl ReconnectReason {
    /// A short label for metrics and logs.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            ReconnectReason::Zombie => "zombie",
            ReconnectReason::Requested => "op7_reconnect",
            ReconnectReason::InvalidSessionResumable => "op9_resumable",
            ReconnectReason::InvalidSession => "op9_invalid",
            ReconnectReason::Closed(_) => "closed",
            ReconnectReason::Dropped => "dropped",
            ReconnectReason::Malformed => "malformed",
            ReconnectReason::Timeout => "timeout",
            ReconnectReason::ConnectFailed => "connect_failed",
        }
    }
}

/// A reconnect the driver must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// Close code to send if the socket is still open.
    pub close_code: u16,
    /// Wait this long before connecting again.
    pub delay: Duration,
    /// Why.
    pub reason: ReconnectReason,
}

/// The session became usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Became {
    /// READY: a new session.
    Ready,
    /// RESUMED: the old session, with missed events replayed before it.
    Resumed,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Idle,
    /// Send this payload (already checked against size and rate limits).
    Send(String),
    /// Get an identify permit, then call [`ShardCore::on_identify_permit`].
    RequestIdentify,
    /// Publish this dispatch.
    Dispatch {
        /// Its sequence number.
        seq: u64,
        /// Set when this dispatch is READY or RESUMED.
        became: Option<Became>,
    },
    /// Close (if open) and reconnect.
    Reconnect(Reconnect),
    /// Stop this shard.
    Fatal(Fatal),
}

/// A payload broke the protocol; the connection must be dropped and resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A dispatch without a sequence number.
    #[error("dispatch without a sequence number")]
    DispatchWithoutSeq,
    /// A dispatch whose name is not a plausible event name.
    #[error("dispatch with a missing or invalid event name")]
    BadEventName,
    /// A payload whose `d` has not the documented shape.
    #[error("op {op}: unexpected `d`: {detail}")]
    BadData {
        /// The opcode.
        op: u8,
        /// What was wrong.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    AwaitingPermit,
    Identifying,
    Resuming,
    Active,
}

#[derive(Debug)]
struct Connection {
    phase: Phase,
    opened: Instant,
    handshake_sent: Option<Instant>,
    heartbeat: Option<Heartbeat>,
    sends: SendLimiter,
    paused: bool,
}

/// The sans-IO protocol state of one shard.
#[derive(Debug)]
pub struct ShardCore {
    id: ShardId,
    props: IdentifyProps,
    session: Option<Session>,
    conn: Option<Connection>,
    failures: u32,
    rng: SmallRng,
    last_heartbeat_rtt: Option<Duration>,
}

impl ShardCore {
    /// A shard with no session yet; `seed` drives heartbeat and back-off
    /// jitter (tests fix it, the driver passes a random one).
    #[must_use]
    pub fn new(id: ShardId, props: IdentifyProps, seed: u64) -> Self {
        Self {
            id,
            props,
            session: None,
            conn: None,
            failures: 0,
            rng: SmallRng::seed_from_u64(seed),
            last_heartbeat_rtt: None,
        }
    }

    /// Starts from a saved session, which the shard will try to resume.
    pub fn restore_session(&mut self, session: Session) {
        self.session = Some(session);
    }

    /// Drops the session, so the next connection identifies. Used when the
    /// resume URL cannot be reached at all.
    pub fn forget_session(&mut self) {
        self.session = None;
    }

    /// The shard's id.
    #[must_use]
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The current session, if any.
    #[must_use]
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether the shard has a live, fully handshaken connection.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.phase == Phase::Active)
    }

    /// Round trip of the last acknowledged heartbeat.
    #[must_use]
    pub fn heartbeat_rtt(&self) -> Option<Duration> {
        self.last_heartbeat_rtt
    }

    /// Where to connect next.
    #[must_use]
    pub fn target(&self) -> Target {
        match &self.session {
            Some(session) => Target::Resume(session.resume_url.clone()),
            None => Target::Gateway,
        }
    }

    /// The WebSocket is open.
    pub fn on_connected(&mut self, now: Instant) {
        self.conn = Some(Connection {
            phase: Phase::AwaitingHello,
            opened: now,
            handshake_sent: None,
            heartbeat: None,
            sends: SendLimiter::default(),
            paused: false,
        });
    }

    /// Opening the WebSocket failed; returns how long to back off.
    pub fn on_connect_failed(&mut self) -> Duration {
        self.conn = None;
        self.failures = self.failures.saturating_add(1);
        self.backoff()
    }

    /// The driver paused or resumed reading because the publish buffer is full.
    pub fn set_reading_paused(&mut self, paused: bool) {
        if let Some(conn) = &mut self.conn {
            conn.paused = paused;
            if paused && let Some(hb) = &mut conn.heartbeat {
                hb.on_paused();
            }
        }
    }

    /// When [`on_timer`](Self::on_timer) must next be called.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        let conn = self.conn.as_ref()?;
        let handshake = match conn.phase {
            Phase::AwaitingHello => Some(conn.opened + HELLO_TIMEOUT),
            Phase::Identifying | Phase::Resuming => {
                conn.handshake_sent.map(|t| t + HANDSHAKE_TIMEOUT)
            }
            Phase::AwaitingPermit | Phase::Active => None,
        };
        let beat = conn.heartbeat.as_ref().map(Heartbeat::due);
        match (handshake, beat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A timer fired.
    pub fn on_timer(&mut self, now: Instant) -> Step {
        let Some(conn) = &mut self.conn else {
            return Step::Idle;
        };
        let handshake_expired = match conn.phase {
            Phase::AwaitingHello => now >= conn.opened + HELLO_TIMEOUT,
            Phase::Identifying | Phase::Resuming => conn
                .handshake_sent
                .is_some_and(|t| now >= t + HANDSHAKE_TIMEOUT),
            Phase::AwaitingPermit | Phase::Active => false,
        };
        if handshake_expired {
            return self.reconnect(ReconnectReason::Timeout);
        }
        let paused = conn.paused;
        let Some(hb) = &mut conn.heartbeat else {
            return Step::Idle;
        };
        if now < hb.due() {
            return Step::Idle;
        }
        match hb.on_due(now, paused) {
            Beat::Zombie => self.reconnect(ReconnectReason::Zombie),
            Beat::Send => self.heartbeat_payload(now),
        }
    }

    /// A complete payload arrived; `env` is its scan.
    ///
    /// # Errors
    ///
    /// [`ProtocolError`] when the payload is well-formed JSON but not a valid
    /// gateway payload; the driver then drops the connection and resumes.
    pub fn on_payload(
        &mut self,
        now: Instant,
        env: &Envelope,
        payload: &[u8],
    ) -> Result<Step, ProtocolError> {
        let data = env.data.clone().map_or(&b"null"[..], |r| &payload[r]);
        Ok(match env.op {
            0 => return self.on_dispatch(env, payload, data),
            1 => {
                if let Some(hb) = self.conn.as_mut().and_then(|c| c.heartbeat.as_mut()) {
                    hb.on_requested(now);
                }
                self.heartbeat_payload(now)
            }
            7 => self.reconnect(ReconnectReason::Requested),
            9 => {
                let resumable: bool = serde_json::from_slice(data).map_err(|e| bad(9, &e))?;
                if resumable && self.session.is_some() {
                    self.reconnect(ReconnectReason::InvalidSessionResumable)
                } else {
                    self.session = None;
                    let mut step = self.reconnect(ReconnectReason::InvalidSession);
                    if let Step::Reconnect(r) = &mut step {
                        // The old docs' random 1–5 s wait before identifying
                        // again; still what Discord's own clients do.
                        r.delay = Duration::from_millis(self.rng.random_range(1_000..=5_000));
                    }
                    step
                }
            }
            10 => self.on_hello(now, data)?,
            11 => {
                if let Some(hb) = self.conn.as_mut().and_then(|c| c.heartbeat.as_mut())
                    && let Some(rtt) = hb.on_ack(now)
                {
                    self.last_heartbeat_rtt = Some(rtt);
                }
                Step::Idle
            }
            // Opcodes a client only sends, or new ones: nothing to do.
            _ => Step::Idle,
        })
    }

    /// The identify queue granted this shard a permit.
    pub fn on_identify_permit(&mut self, now: Instant) -> Step {
        let Some(conn) = &mut self.conn else {
            return Step::Idle;
        };
        if conn.phase != Phase::AwaitingPermit {
            return Step::Idle;
        }
        conn.phase = Phase::Identifying;
        conn.handshake_sent = Some(now);
        let payload = serde_json::json!({
            "op": 2,
            "d": {
                "token": self.props.token.expose(),
                "intents": self.props.intents,
                "properties": {"os": std::env::consts::OS, "browser": "arrakis", "device": "arrakis"},
                "shard": [self.id.number, self.id.total],
                "large_threshold": self.props.large_threshold,
            }
        })
        .to_string();
        self.send(now, payload, SendKind::Command)
    }

    /// The connection ended: Discord closed it with `code`, or it dropped
    /// (`None`), or the driver gave up on it (`reason`).
    pub fn on_disconnect(&mut self, code: Option<u16>) -> Step {
        let reason = match code {
            Some(code) => ReconnectReason::Closed(code),
            None => ReconnectReason::Dropped,
        };
        match close::classify(code) {
            CloseAction::Fatal(fatal) => {
                self.conn = None;
                Step::Fatal(fatal)
            }
            CloseAction::NewSession => {
                self.session = None;
                self.reconnect(reason)
            }
            CloseAction::Resume => self.reconnect(reason),
        }
    }

    /// A frame could not be inflated or scanned: resume on a new connection.
    pub fn on_malformed(&mut self) -> Step {
        self.reconnect(ReconnectReason::Malformed)
    }

    fn on_hello(&mut self, now: Instant, data: &[u8]) -> Result<Step, ProtocolError> {
        #[derive(Deserialize)]
        struct Hello {
            heartbeat_interval: u64,
        }
        let hello: Hello = serde_json::from_slice(data).map_err(|e| bad(10, &e))?;
        if hello.heartbeat_interval == 0 {
            return Err(ProtocolError::BadData {
                op: 10,
                detail: "heartbeat_interval is 0".into(),
            });
        }
        let jitter: f64 = self.rng.random();
        let Some(conn) = &mut self.conn else {
            return Ok(Step::Idle);
        };
        if conn.phase != Phase::AwaitingHello {
            return Ok(Step::Idle);
        }
        conn.heartbeat = Some(Heartbeat::on_hello(
            now,
            Duration::from_millis(hello.heartbeat_interval),
            jitter,
        ));
        let Some(session) = &self.session else {
            conn.phase = Phase::AwaitingPermit;
            return Ok(Step::RequestIdentify);
        };
        conn.phase = Phase::Resuming;
        conn.handshake_sent = Some(now);
        let payload = serde_json::json!({
            "op": 6,
            "d": {
                "token": self.props.token.expose(),
                "session_id": &*session.id,
                "seq": session.seq,
            }
        })
        .to_string();
        Ok(self.send(now, payload, SendKind::Command))
    }

    fn on_dispatch(
        &mut self,
        env: &Envelope,
        payload: &[u8],
        data: &[u8],
    ) -> Result<Step, ProtocolError> {
        let seq = env.seq.ok_or(ProtocolError::DispatchWithoutSeq)?;
        let name = env
            .event_name(payload)
            .filter(|n| crate::config::is_event_name(n))
            .ok_or(ProtocolError::BadEventName)?;
        let mut became = None;
        match name {
            "READY" => {
                #[derive(Deserialize)]
                struct Ready<'a> {
                    #[serde(borrow)]
                    session_id: std::borrow::Cow<'a, str>,
                    #[serde(borrow)]
                    resume_gateway_url: std::borrow::Cow<'a, str>,
                }
                let ready: Ready<'_> = serde_json::from_slice(data).map_err(|e| bad(0, &e))?;
                // The session id ends up in every message_id (an AMQP short
                // string); Discord's are 32 hex digits.
                if ready.session_id.is_empty() || ready.session_id.len() > 128 {
                    return Err(ProtocolError::BadData {
                        op: 0,
                        detail: "READY session_id empty or longer than 128 bytes".into(),
                    });
                }
                if !(ready.resume_gateway_url.starts_with("wss://")
                    || ready.resume_gateway_url.starts_with("ws://"))
                {
                    return Err(ProtocolError::BadData {
                        op: 0,
                        detail: "READY resume_gateway_url is not ws(s)://".into(),
                    });
                }
                self.session = Some(Session {
                    id: ready.session_id.into(),
                    resume_url: ready.resume_gateway_url.into(),
                    seq,
                });
                became = Some(Became::Ready);
            }
            "RESUMED" => became = Some(Became::Resumed),
            _ => {}
        }
        if let Some(session) = &mut self.session {
            session.seq = seq;
        }
        if became.is_some() {
            self.failures = 0;
            if let Some(conn) = &mut self.conn {
                conn.phase = Phase::Active;
            }
        }
        Ok(Step::Dispatch { seq, became })
    }

    fn heartbeat_payload(&mut self, now: Instant) -> Step {
        let payload = match self.session.as_ref().map(|s| s.seq) {
            Some(seq) => format!(r#"{{"op":1,"d":{seq}}}"#),
            None => r#"{"op":1,"d":null}"#.to_owned(),
        };
        self.send(now, payload, SendKind::Heartbeat)
    }

    fn send(&mut self, now: Instant, payload: String, kind: SendKind) -> Step {
        debug_assert!(payload.len() <= MAX_OUTGOING);
        if payload.len() > MAX_OUTGOING {
            // Only a bug of ours can get here; Discord would answer 4002.
            tracing::error!(shard = %self.id, len = payload.len(), "outgoing payload over 4096 bytes not sent");
            return Step::Idle;
        }
        let Some(conn) = &mut self.conn else {
            return Step::Idle;
        };
        match conn.sends.try_send(now, kind) {
            Ok(()) => Step::Send(payload),
            Err(wait) => {
                tracing::warn!(shard = %self.id, ?wait, "gateway send budget spent; payload dropped");
                Step::Idle
            }
        }
    }

    fn reconnect(&mut self, reason: ReconnectReason) -> Step {
        // A connection that never completed its handshake counts as a
        // failure, so a gateway that keeps closing on us is met with a
        // growing back-off instead of a reconnect loop.
        if !self.is_active() {
            self.failures = self.failures.saturating_add(1);
        }
        self.conn = None;
        let delay = match reason {
            ReconnectReason::Requested | ReconnectReason::InvalidSessionResumable
                if self.failures == 0 =>
            {
                Duration::ZERO
            }
            _ => self.backoff(),
        };
        Step::Reconnect(Reconnect {
            close_code: RESUMABLE_CLOSE,
            delay,
            reason,
        })
    }

    /// Exponential back-off with full jitter: a few hundred ms for a first
    /// drop, up to a minute when the gateway keeps failing. Jitter keeps a
    /// thousand shards dropped by one Discord incident from reconnecting in
    /// lockstep (discord-api-docs #1369).
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.min(8);
        let cap = Duration::from_millis(500 * (1u64 << exp)).min(MAX_BACKOFF);
        cap.mul_f64(self.rng.random_range(0.0..1.0))
    }
}

fn bad(op: u8, err: &serde_json::Error) -> ProtocolError {
    ProtocolError::BadData {
        op,
        detail: err.to_string(),
    }
}

#[cfg(test)]
mod tests;
