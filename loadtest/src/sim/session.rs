//! Sessions, replay buffers and dispatch emission (PROTOCOL.md §1.4).
//!
//! All mutable gateway state lives in one [`State`] behind a std `Mutex`:
//! sessions (with their replay buffers), per-shard pointers to the current
//! session, and per-connection protocol state. Connections are represented
//! here only by the two channels into their writer task, so everything in
//! this file is synchronous and never waits: emitting to a connection whose
//! bounded queue is full drops that connection (the event stays in the replay
//! buffer), as Discord does with clients that read too slowly.
//!
//! A session is *resumable* while it is not invalidated and either has a
//! connection or lost it less than `session_timeout` ago. It is invalidated
//! by a client close with 1000/1001, an op 9 `d: false`, a close code that
//! ends sessions, a failed resume that can never succeed, or the timeout.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::events::{Built, Target, envelope};
use super::fault::Fault;
use super::gateway::End;
use super::record::{
    CloseRecord, GatewayPort, Records, SentDispatch, ShardStatus, UNKNOWN_SHARD, Violation,
};
use super::{Inner, SimConfig};

/// An item in a connection's bounded outbound queue, written in order.
#[derive(Debug)]
pub(crate) enum Out {
    /// One dispatch (uncompressed payload).
    Dispatch(Bytes),
    /// A resume's replay, in seq order.
    Batch(Vec<Bytes>),
    /// A fault applied in order with the dispatches around it.
    Fault(Fault),
    /// A control instruction applied in order (a fault that waited for this
    /// connection must come after READY or RESUMED).
    Ctl(Ctl),
}

/// An immediate instruction to a connection's writer (unbounded, handled
/// before queued dispatches).
#[derive(Debug)]
pub(crate) enum Ctl {
    /// Send this uncompressed payload (Hello, ACK, op 1/7/9).
    Send(Bytes),
    /// Send a close frame with this code and reason, then end.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Drop the TCP connection after this long unless it ends first.
    DropAfter(Duration),
}

/// One gateway session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) shard_id: u32,
    pub(crate) num_shards: u32,
    /// Last seq assigned.
    pub(crate) seq: u64,
    /// `(seq, payload)` of the last `replay_capacity` dispatches.
    pub(crate) buffer: VecDeque<(u64, Bytes)>,
    /// Attached connection.
    pub(crate) conn: Option<u64>,
    /// READY or RESUMED sent on the attached connection.
    pub(crate) ready: bool,
    /// When the last connection went away (None while attached).
    pub(crate) disconnected_at: Option<Instant>,
    pub(crate) invalidated: bool,
}

impl Session {
    /// Whether a resume (with a good seq) would be accepted at `now`.
    pub(crate) fn resumable(&self, now: Instant, timeout: Duration) -> bool {
        !self.invalidated
            && (self.conn.is_some()
                || self
                    .disconnected_at
                    .is_some_and(|at| now.saturating_duration_since(at) <= timeout))
    }

    /// Whether every dispatch after `seq` is still in the buffer.
    pub(crate) fn can_replay_from(&self, seq: u64) -> bool {
        seq <= self.seq
            && (seq == self.seq
                || self
                    .buffer
                    .front()
                    .is_some_and(|(first, _)| *first <= seq + 1))
    }

    fn invalidate(&mut self) {
        self.invalidated = true;
        self.buffer = VecDeque::new();
    }
}

/// Per-shard bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct ShardState {
    /// The session `emit` targets (the latest identified or resumed).
    pub(crate) current: Option<String>,
    /// Faults waiting for the shard's next connection.
    pub(crate) pending: Vec<Fault>,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) port: GatewayPort,
    pub(crate) opened_at: Instant,
    pub(crate) data_tx: mpsc::Sender<Out>,
    pub(crate) ctl_tx: mpsc::UnboundedSender<Ctl>,
    pub(crate) hello_at: Option<Instant>,
    pub(crate) last_heartbeat: Option<Instant>,
    /// The current heartbeat gap was already reported by the watchdog.
    pub(crate) gap_reported: bool,
    /// An op 1 is waiting for its heartbeat.
    pub(crate) requested_at: Option<Instant>,
    /// Arrival times of client payloads in the last 60 s.
    pub(crate) sends: VecDeque<Instant>,
    /// Authenticated session.
    pub(crate) session: Option<String>,
    /// Shard, once known.
    pub(crate) shard_id: u32,
    pub(crate) stop_acking: bool,
    /// The server decided to end the connection; ignore further input.
    pub(crate) closing: bool,
}

impl ConnState {
    /// Give the writer `ctl`: at once, or after what is already queued.
    pub(crate) fn control(&self, ctl: Ctl, ordered: bool) {
        let ctl = if ordered {
            match self.data_tx.try_send(Out::Ctl(ctl)) {
                Ok(()) => return,
                Err(e) => match e.into_inner() {
                    Out::Ctl(ctl) => ctl,
                    _ => return,
                },
            }
        } else {
            ctl
        };
        let _ = self.ctl_tx.send(ctl);
    }

    pub(crate) fn new(
        port: GatewayPort,
        now: Instant,
        data_tx: mpsc::Sender<Out>,
        ctl_tx: mpsc::UnboundedSender<Ctl>,
    ) -> Self {
        Self {
            port,
            opened_at: now,
            data_tx,
            ctl_tx,
            hello_at: None,
            last_heartbeat: None,
            gap_reported: false,
            requested_at: None,
            sends: VecDeque::new(),
            session: None,
            shard_id: UNKNOWN_SHARD,
            stop_acking: false,
            closing: false,
        }
    }
}

/// All gateway state.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) shards: HashMap<u32, ShardState>,
    pub(crate) conns: HashMap<u64, ConnState>,
    /// Last accepted identify per `shard_id % max_concurrency`.
    pub(crate) bucket_last: HashMap<u32, Instant>,
    /// `session_start_limit.remaining`.
    pub(crate) remaining: u32,
    /// Dispatches assigned a seq so far.
    pub(crate) dispatched: u64,
}

impl State {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        Self {
            sessions: HashMap::new(),
            shards: HashMap::new(),
            conns: HashMap::new(),
            bucket_last: HashMap::new(),
            remaining: cfg.session_start_remaining,
            dispatched: 0,
        }
    }

    /// The shard's current session if it can still receive events (attached,
    /// or detached but resumable); invalidates it when it timed out.
    pub(crate) fn live_session(
        &mut self,
        shard_id: u32,
        now: Instant,
        cfg: &SimConfig,
    ) -> Option<&mut Session> {
        let id = self.shards.get(&shard_id)?.current.as_ref()?;
        let s = self.sessions.get_mut(id)?;
        if s.resumable(now, cfg.session_timeout) {
            Some(s)
        } else {
            if !s.invalidated {
                s.invalidate();
            }
            None
        }
    }

    /// Detach `session_id` from its connection (if any). The connection is
    /// not told; callers close or drop it.
    pub(crate) fn detach(&mut self, session_id: &str, now: Instant, invalidate: bool) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            if let Some(c) = s.conn.take() {
                if let Some(conn) = self.conns.get_mut(&c) {
                    conn.session = None;
                }
                s.disconnected_at = Some(now);
            }
            s.ready = false;
            if invalidate {
                s.invalidate();
            }
        }
    }

    /// Drop connection `conn_id` at once (no close frame); its session stays
    /// resumable.
    pub(crate) fn drop_conn(&mut self, conn_id: u64, now: Instant) {
        self.drop_conn_ordered(conn_id, now, false);
    }

    /// Drop connection `conn_id` (no close frame) at once or after what is
    /// queued; its session stays resumable.
    pub(crate) fn drop_conn_ordered(&mut self, conn_id: u64, now: Instant, ordered: bool) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.control(Ctl::Drop, ordered);
            conn.closing = true;
            if let Some(sid) = conn.session.clone() {
                self.detach(&sid, now, false);
            }
        }
    }

    /// Queue `out` on the session's connection; drop the connection if its
    /// queue is full (recording [`Violation::SlowClient`]) or gone.
    pub(crate) fn send_out(
        &mut self,
        conn_id: u64,
        out: Out,
        now: Instant,
        cfg: &SimConfig,
        rec: &mut Records,
    ) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if conn.closing {
            return;
        }
        match conn.data_tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                rec.violation(Violation::SlowClient {
                    shard_id: conn.shard_id,
                    connection_id: conn_id,
                    queued: cfg.outbound_queue,
                });
                self.drop_conn(conn_id, now);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.drop_conn(conn_id, now),
        }
    }

    /// Assign the next seq of `session_id` to a dispatch, keep it for replay,
    /// record it, and queue it on the attached connection.
    pub(crate) fn dispatch(
        &mut self,
        session_id: &str,
        built: &Built,
        now: Instant,
        cfg: &SimConfig,
        rec: &mut Records,
    ) -> Option<u64> {
        let s = self.sessions.get_mut(session_id)?;
        s.seq += 1;
        let seq = s.seq;
        self.dispatched += 1;
        let body = envelope(&built.name, seq, &built.d);
        if cfg.replay_capacity > 0 {
            if s.buffer.len() >= cfg.replay_capacity {
                s.buffer.pop_front();
            }
            s.buffer.push_back((seq, body.clone()));
        }
        if cfg.record_sent {
            rec.sent.push(SentDispatch {
                shard_id: s.shard_id,
                session_id: s.id.clone(),
                seq,
                event: built.name.to_string(),
                guild_id: built.guild_id.clone(),
                body: if cfg.record_bodies {
                    body.clone()
                } else {
                    Bytes::new()
                },
            });
        }
        if let Some(c) = s.conn {
            self.send_out(c, Out::Dispatch(body), now, cfg, rec);
        }
        Some(seq)
    }

    /// The target (shard and shard count) of the shard's live session.
    pub(crate) fn target(
        &mut self,
        shard_id: u32,
        now: Instant,
        cfg: &SimConfig,
    ) -> Option<Target> {
        let s = self.live_session(shard_id, now, cfg)?;
        Some(Target {
            shard_id: s.shard_id,
            num_shards: s.num_shards,
            guilds: cfg.guilds_per_shard,
        })
    }

    /// Status of the shard's current session.
    pub(crate) fn status(
        &mut self,
        shard_id: u32,
        now: Instant,
        cfg: &SimConfig,
    ) -> Option<ShardStatus> {
        let _ = self.live_session(shard_id, now, cfg);
        let id = self.shards.get(&shard_id)?.current.as_ref()?;
        let s = self.sessions.get(id)?;
        Some(ShardStatus {
            session_id: s.id.clone(),
            num_shards: s.num_shards,
            connected: s.conn.is_some(),
            ready: s.ready,
            last_seq: s.seq,
            resumable: s.resumable(now, cfg.session_timeout),
        })
    }

    /// Forget sessions that can never be resumed again and are no shard's
    /// current session, so a long standalone run stays bounded.
    pub(crate) fn prune(&mut self, now: Instant, cfg: &SimConfig) {
        let current: Vec<String> = self
            .shards
            .values()
            .filter_map(|s| s.current.clone())
            .collect();
        self.sessions
            .retain(|id, s| current.contains(id) || s.resumable(now, cfg.session_timeout));
    }
}

impl Inner {
    /// Emit already generated events; one lock for the whole batch.
    pub(crate) fn emit_built(&self, items: &[(u32, Built)]) -> Vec<Option<u64>> {
        let now = Instant::now();
        let mut st = self.state();
        let mut rec = self.rec();
        items
            .iter()
            .map(|(shard, built)| {
                let sid = st.live_session(*shard, now, &self.cfg)?.id.clone();
                st.dispatch(&sid, built, now, &self.cfg, &mut rec)
            })
            .collect()
    }

    /// Apply `fault` to the shard's live connection, or keep it for the next.
    pub(crate) fn inject(&self, shard_id: u32, fault: Fault) {
        let now = Instant::now();
        let mut st = self.state();
        let conn = st
            .live_session(shard_id, now, &self.cfg)
            .and_then(|s| s.conn)
            .filter(|c| st.conns.get(c).is_some_and(|c| !c.closing));
        match conn {
            Some(c) => {
                let mut rec = self.rec();
                self.apply_fault(&mut st, &mut rec, c, fault, now, false);
            }
            None => st.shards.entry(shard_id).or_default().pending.push(fault),
        }
    }

    /// A connection task ended: record a client close, and detach the
    /// session (a client close with 1000 or 1001 invalidates it, anything
    /// else leaves it resumable).
    pub(crate) fn connection_ended(&self, conn_id: u64, end: End, now: Instant) {
        let mut st = self.state();
        let Some(conn) = st.conns.remove(&conn_id) else {
            return;
        };
        let mut invalidate = false;
        if let End::ClientClose(code) = end
            && !conn.closing
        {
            invalidate = matches!(code, Some(1000 | 1001));
            self.rec().client_closes.push(CloseRecord {
                shard_id: conn.shard_id,
                connection_id: conn_id,
                code,
                at: now,
            });
        }
        if let Some(sid) = conn.session
            && st
                .sessions
                .get(&sid)
                .is_some_and(|s| s.conn == Some(conn_id))
        {
            st.detach(&sid, now, invalidate);
        }
    }

    /// Apply the faults waiting for `shard_id` to `conn_id`.
    pub(crate) fn apply_pending(
        &self,
        st: &mut State,
        rec: &mut Records,
        shard_id: u32,
        conn_id: u64,
        now: Instant,
    ) {
        let pending = st
            .shards
            .get_mut(&shard_id)
            .map(|s| std::mem::take(&mut s.pending))
            .unwrap_or_default();
        for fault in pending {
            self.apply_fault(st, rec, conn_id, fault, now, true);
        }
    }

    /// Apply `fault` to `conn_id`: state changes now; what the client sees
    /// at once, or after what is queued when `ordered`.
    fn apply_fault(
        &self,
        st: &mut State,
        rec: &mut Records,
        conn_id: u64,
        fault: Fault,
        now: Instant,
        ordered: bool,
    ) {
        tracing::info!(connection = conn_id, %fault, "injecting fault");
        let Some(conn) = st.conns.get_mut(&conn_id) else {
            return;
        };
        match fault {
            Fault::DropSocket => st.drop_conn_ordered(conn_id, now, ordered),
            Fault::StopAcking => conn.stop_acking = true,
            Fault::RequestHeartbeat => {
                conn.requested_at.get_or_insert(now);
                conn.control(Ctl::Send(Bytes::from_static(OP1)), ordered);
            }
            Fault::Reconnect => {
                conn.control(Ctl::Send(Bytes::from_static(OP7)), ordered);
                conn.control(Ctl::DropAfter(Duration::from_secs(1)), ordered);
            }
            Fault::InvalidSession { resumable } => {
                let body: &'static [u8] = if resumable { OP9_TRUE } else { OP9_FALSE };
                conn.control(Ctl::Send(Bytes::from_static(body)), ordered);
                if let Some(sid) = conn.session.clone() {
                    st.detach(&sid, now, !resumable);
                }
            }
            Fault::Close(code) => {
                self.close_conn_ordered(st, rec, conn_id, code, "injected close", now, ordered);
            }
            f => st.send_out(conn_id, Out::Fault(f), now, &self.cfg, rec),
        }
    }

    /// Close `conn_id` with `code`: record it, tell the writer, and detach
    /// its session (invalidated when `code` ends sessions).
    pub(crate) fn close_conn(
        &self,
        st: &mut State,
        rec: &mut Records,
        conn_id: u64,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        self.close_conn_ordered(st, rec, conn_id, code, reason, now, false);
    }

    /// [`Inner::close_conn`], optionally after what is already queued.
    #[allow(clippy::too_many_arguments, reason = "internal; mirrors close_conn")]
    fn close_conn_ordered(
        &self,
        st: &mut State,
        rec: &mut Records,
        conn_id: u64,
        code: u16,
        reason: &str,
        now: Instant,
        ordered: bool,
    ) {
        let Some(conn) = st.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        rec.server_closes.push(super::record::ServerCloseRecord {
            shard_id: conn.shard_id,
            connection_id: conn_id,
            code,
            reason: reason.to_owned(),
            at: now,
        });
        tracing::info!(connection = conn_id, code, reason, "closing connection");
        conn.control(Ctl::Close(code, reason.to_owned()), ordered);
        if let Some(sid) = conn.session.clone() {
            st.detach(&sid, now, Fault::close_invalidates(code));
        }
    }
}

/// Server op 1: heartbeat request.
pub(crate) const OP1: &[u8] = b"{\"t\":null,\"s\":null,\"op\":1,\"d\":null}";
/// Server op 7: reconnect.
pub(crate) const OP7: &[u8] = b"{\"t\":null,\"s\":null,\"op\":7,\"d\":null}";
/// Server op 9, resumable.
pub(crate) const OP9_TRUE: &[u8] = b"{\"t\":null,\"s\":null,\"op\":9,\"d\":true}";
/// Server op 9, not resumable.
pub(crate) const OP9_FALSE: &[u8] = b"{\"t\":null,\"s\":null,\"op\":9,\"d\":false}";
/// Server op 11: heartbeat ACK.
pub(crate) const OP11: &[u8] = b"{\"t\":null,\"s\":null,\"op\":11,\"d\":null}";
