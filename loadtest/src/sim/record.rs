//! What the simulator saw and did, kept for tests to assert on.
//!
//! Every record type here is plain data (`Debug + Clone`) so a failed
//! `assert!` prints something a reader can act on. The records live in one
//! [`Records`] value behind a std `Mutex` in the simulator; critical sections
//! are short pushes and clones. Records are the one part of the simulator that
//! grows without bound (tests need all of them); long runs turn off
//! `SimConfig::record_sent` / `record_bodies`, which are by far the largest.
//!
//! [`Violation`] lists the ways a client can break Discord's gateway rules
//! (PROTOCOL.md §1.2, §1.3, §1.4, §1.7). Close codes the simulator sent for
//! configuration problems (bad token, disallowed intents, ...) are not
//! violations; they are in [`ServerCloseRecord`].

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Shard id used in a record made before the connection identified or
/// resumed. Records of a connection are back-filled with the real shard id
/// once it identifies or resumes, so this only remains for connections that
/// never did.
pub const UNKNOWN_SHARD: u32 = u32::MAX;

/// One dispatch (op 0) that was assigned a sequence number.
#[derive(Debug, Clone)]
pub struct SentDispatch {
    /// Shard of the session it belongs to.
    pub shard_id: u32,
    /// Session it belongs to.
    pub session_id: String,
    /// Its `s`.
    pub seq: u64,
    /// Its `t`, e.g. `MESSAGE_CREATE`.
    pub event: String,
    /// `d.guild_id`, or `d.id` for `GUILD_CREATE`; `None` when there is none.
    pub guild_id: Option<String>,
    /// The exact uncompressed payload bytes (empty when
    /// `SimConfig::record_bodies` is off).
    pub body: Bytes,
}

/// A client broke one of Discord's gateway rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A heartbeat came later than `interval + grace` after the previous one.
    LateHeartbeat {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// Time since the previous heartbeat.
        since_previous: Duration,
        /// `heartbeat_interval + heartbeat_grace`.
        limit: Duration,
    },
    /// The first heartbeat came later than `interval + grace` after Hello.
    FirstHeartbeatLate {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// Time since Hello was sent.
        after_hello: Duration,
        /// `heartbeat_interval + heartbeat_grace`.
        limit: Duration,
    },
    /// No heartbeat at all for `interval + grace` on an open connection
    /// (recorded by a watchdog as soon as the deadline passes, once per gap).
    NoHeartbeat {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection that went quiet.
        connection_id: u64,
        /// How long it had been quiet when this was recorded.
        waited: Duration,
    },
    /// The server sent op 1 and no heartbeat followed within a second.
    RequestedHeartbeatUnanswered {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection the op 1 went to.
        connection_id: u64,
        /// How long the server had waited.
        waited: Duration,
    },
    /// A heartbeat's `d` was larger than the last seq the session sent.
    HeartbeatSeqAhead {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The heartbeat's `d`.
        d: u64,
        /// Last seq the server assigned on the session.
        last_sent: u64,
    },
    /// Two identifies of one `shard_id % max_concurrency` bucket closer than
    /// `identify_spacing`; answered with op 9.
    IdentifySpacing {
        /// Shard that identified.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// `shard_id % max_concurrency`.
        bucket: u32,
        /// Time since the bucket's previous accepted identify.
        gap: Duration,
        /// `identify_spacing`.
        required: Duration,
    },
    /// An identify when `session_start_limit.remaining` was already 0.
    IdentifyOverLimit {
        /// Shard that identified.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// `session_start_limit.total`.
        total: u32,
    },
    /// An identify while a resumable session existed for the shard.
    IdentifyWhenResumable {
        /// Shard that identified.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The session that could have been resumed.
        session_id: String,
    },
    /// More than 120 payloads in 60 s on one connection; closed with 4008.
    SendRateExceeded {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection that sent too fast.
        connection_id: u64,
        /// Payloads counted in the window, including this one.
        count: usize,
    },
    /// A payload over 4096 bytes; closed with 4002.
    PayloadTooLarge {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// Its size.
        bytes: usize,
    },
    /// A payload that is not JSON with a numeric `op`; closed with 4002.
    DecodeError {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// What was wrong.
        detail: String,
    },
    /// An opcode clients may not send; closed with 4001.
    UnknownOpcode {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The opcode.
        op: u64,
    },
    /// A known opcode whose `d` is malformed; closed with 4001.
    BadPayload {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The opcode.
        op: u64,
        /// What was wrong.
        detail: String,
    },
    /// A command other than heartbeat, identify or resume before
    /// identifying; closed with 4003.
    NotAuthenticated {
        /// Always [`UNKNOWN_SHARD`] unless the connection was authenticated
        /// before an op 9.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The opcode.
        op: u64,
    },
    /// Identify or resume on a connection that already has a session; closed
    /// with 4005.
    AlreadyAuthenticated {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// The opcode (2 or 6).
        op: u64,
    },
    /// A resume sent to the main gateway URL instead of `resume_gateway_url`.
    ResumeNotOnResumeUrl {
        /// Shard of the session.
        shard_id: u32,
        /// Connection it came on.
        connection_id: u64,
        /// Session being resumed.
        session_id: String,
    },
    /// The client read too slowly: its outbound queue filled up, so the
    /// connection was dropped (the session stays resumable).
    SlowClient {
        /// Shard of the connection.
        shard_id: u32,
        /// Connection that was dropped.
        connection_id: u64,
        /// Capacity of the queue that filled.
        queued: usize,
    },
}

impl Violation {
    /// Shard the violation is about ([`UNKNOWN_SHARD`] if not known).
    #[must_use]
    pub fn shard_id(&self) -> u32 {
        match self {
            Self::LateHeartbeat { shard_id, .. }
            | Self::FirstHeartbeatLate { shard_id, .. }
            | Self::NoHeartbeat { shard_id, .. }
            | Self::RequestedHeartbeatUnanswered { shard_id, .. }
            | Self::HeartbeatSeqAhead { shard_id, .. }
            | Self::IdentifySpacing { shard_id, .. }
            | Self::IdentifyOverLimit { shard_id, .. }
            | Self::IdentifyWhenResumable { shard_id, .. }
            | Self::SendRateExceeded { shard_id, .. }
            | Self::PayloadTooLarge { shard_id, .. }
            | Self::DecodeError { shard_id, .. }
            | Self::UnknownOpcode { shard_id, .. }
            | Self::BadPayload { shard_id, .. }
            | Self::NotAuthenticated { shard_id, .. }
            | Self::AlreadyAuthenticated { shard_id, .. }
            | Self::ResumeNotOnResumeUrl { shard_id, .. }
            | Self::SlowClient { shard_id, .. } => *shard_id,
        }
    }

    /// Connection the violation happened on.
    #[must_use]
    pub fn connection_id(&self) -> u64 {
        match self {
            Self::LateHeartbeat { connection_id, .. }
            | Self::FirstHeartbeatLate { connection_id, .. }
            | Self::NoHeartbeat { connection_id, .. }
            | Self::RequestedHeartbeatUnanswered { connection_id, .. }
            | Self::HeartbeatSeqAhead { connection_id, .. }
            | Self::IdentifySpacing { connection_id, .. }
            | Self::IdentifyOverLimit { connection_id, .. }
            | Self::IdentifyWhenResumable { connection_id, .. }
            | Self::SendRateExceeded { connection_id, .. }
            | Self::PayloadTooLarge { connection_id, .. }
            | Self::DecodeError { connection_id, .. }
            | Self::UnknownOpcode { connection_id, .. }
            | Self::BadPayload { connection_id, .. }
            | Self::NotAuthenticated { connection_id, .. }
            | Self::AlreadyAuthenticated { connection_id, .. }
            | Self::ResumeNotOnResumeUrl { connection_id, .. }
            | Self::SlowClient { connection_id, .. } => *connection_id,
        }
    }

    fn shard_id_mut(&mut self) -> &mut u32 {
        match self {
            Self::LateHeartbeat { shard_id, .. }
            | Self::FirstHeartbeatLate { shard_id, .. }
            | Self::NoHeartbeat { shard_id, .. }
            | Self::RequestedHeartbeatUnanswered { shard_id, .. }
            | Self::HeartbeatSeqAhead { shard_id, .. }
            | Self::IdentifySpacing { shard_id, .. }
            | Self::IdentifyOverLimit { shard_id, .. }
            | Self::IdentifyWhenResumable { shard_id, .. }
            | Self::SendRateExceeded { shard_id, .. }
            | Self::PayloadTooLarge { shard_id, .. }
            | Self::DecodeError { shard_id, .. }
            | Self::UnknownOpcode { shard_id, .. }
            | Self::BadPayload { shard_id, .. }
            | Self::NotAuthenticated { shard_id, .. }
            | Self::AlreadyAuthenticated { shard_id, .. }
            | Self::ResumeNotOnResumeUrl { shard_id, .. }
            | Self::SlowClient { shard_id, .. } => shard_id,
        }
    }
}

/// An Identify (op 2) that passed validation (token, shard, intents).
#[derive(Debug, Clone)]
pub struct IdentifyRecord {
    /// `shard[0]` (0 when the client sent no `shard`).
    pub shard_id: u32,
    /// `shard[1]` (1 when the client sent no `shard`).
    pub num_shards: u32,
    /// When it arrived.
    pub at: Instant,
    /// `intents`.
    pub intents: u64,
    /// Connection it came on.
    pub connection_id: u64,
    /// False when it was answered with op 9 (identify spacing).
    pub accepted: bool,
    /// The new session, when accepted.
    pub session_id: Option<String>,
}

/// A Resume (op 6).
#[derive(Debug, Clone)]
pub struct ResumeRecord {
    /// Shard of the session named (the connection's shard if unknown).
    pub shard_id: u32,
    /// `session_id` as sent.
    pub session_id: String,
    /// `seq` as sent (`null` counts as 0).
    pub seq: u64,
    /// Whether it came to the resume gateway port.
    pub on_resume_url: bool,
    /// Whether it was accepted (false: answered with op 9 `d: false`).
    pub accepted: bool,
    /// When it arrived.
    pub at: Instant,
    /// Connection it came on.
    pub connection_id: u64,
}

/// A Heartbeat (op 1) from the client.
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    /// Shard of the connection.
    pub shard_id: u32,
    /// Connection it came on.
    pub connection_id: u64,
    /// When it arrived.
    pub at: Instant,
    /// Time since the previous heartbeat on this connection, or since Hello
    /// for the first.
    pub since_previous: Duration,
    /// Whether it is the connection's first heartbeat.
    pub first: bool,
    /// Its `d`.
    pub d: Option<u64>,
}

/// A close frame the client sent (not the echo of a server close).
#[derive(Debug, Clone)]
pub struct CloseRecord {
    /// Shard of the connection.
    pub shard_id: u32,
    /// Connection it came on.
    pub connection_id: u64,
    /// Close code, `None` for a close frame without one.
    pub code: Option<u16>,
    /// When it arrived.
    pub at: Instant,
}

/// A close frame the simulator sent, whatever the reason.
#[derive(Debug, Clone)]
pub struct ServerCloseRecord {
    /// Shard of the connection.
    pub shard_id: u32,
    /// Connection closed.
    pub connection_id: u64,
    /// Close code.
    pub code: u16,
    /// Why, in words (also sent as the close reason).
    pub reason: String,
    /// When it was decided.
    pub at: Instant,
}

/// Which of the two gateway listeners a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayPort {
    /// The URL returned by `/gateway/bot`.
    Main,
    /// The `resume_gateway_url` sent in READY.
    Resume,
}

/// One accepted gateway WebSocket connection.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// Its id (1, 2, ... in order of acceptance).
    pub connection_id: u64,
    /// Which listener it came to.
    pub port: GatewayPort,
    /// The request's path and query as sent, e.g. `/?v=10&encoding=json`.
    pub path_and_query: String,
    /// Whether it asked for `compress=zlib-stream`.
    pub zlib_stream: bool,
    /// When the WebSocket handshake completed.
    pub at: Instant,
}

/// One REST request served.
#[derive(Debug, Clone)]
pub struct RestRecord {
    /// HTTP method.
    pub method: String,
    /// Path (without query).
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// A shard's current session, as `Simulator::shard_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardStatus {
    /// The session's id.
    pub session_id: String,
    /// `shard[1]` the session identified with.
    pub num_shards: u32,
    /// A connection is attached to the session.
    pub connected: bool,
    /// READY or RESUMED was sent on the attached connection.
    pub ready: bool,
    /// Last seq assigned on the session.
    pub last_seq: u64,
    /// The session can still be resumed (not invalidated, not timed out).
    pub resumable: bool,
}

/// All records, behind one mutex in the simulator.
#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) sent: Vec<SentDispatch>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) identifies: Vec<IdentifyRecord>,
    pub(crate) resumes: Vec<ResumeRecord>,
    pub(crate) heartbeats: Vec<HeartbeatRecord>,
    pub(crate) client_closes: Vec<CloseRecord>,
    pub(crate) server_closes: Vec<ServerCloseRecord>,
    pub(crate) connections: Vec<ConnectionRecord>,
    pub(crate) rest: Vec<RestRecord>,
}

impl Records {
    /// Record a violation and log it (standalone users read the log).
    pub(crate) fn violation(&mut self, v: Violation) {
        tracing::warn!(violation = ?v, "client broke a gateway rule");
        self.violations.push(v);
    }

    /// Give the records of `connection_id` made since `since` with
    /// [`UNKNOWN_SHARD`] the shard it turned out to be.
    pub(crate) fn attribute(&mut self, connection_id: u64, since: Instant, shard_id: u32) {
        for h in self.heartbeats.iter_mut().rev() {
            if h.at < since {
                break;
            }
            if h.connection_id == connection_id && h.shard_id == UNKNOWN_SHARD {
                h.shard_id = shard_id;
            }
        }
        for v in &mut self.violations {
            if v.connection_id() == connection_id && v.shard_id() == UNKNOWN_SHARD {
                *v.shard_id_mut() = shard_id;
            }
        }
    }
}
