//! What the simulator does with each payload a client sends (PROTOCOL.md
//! §1.2-§1.5, §1.7, §1.9): heartbeats, Identify, Resume, the send limit,
//! payload size and opcode checks, and the heartbeat watchdog.
//!
//! Synchronous: the connection's reader task hands over the frame's bytes and
//! the time it arrived; answers go out through the connection's channels
//! (see `session.rs`). Rules are Discord's, with one deliberate leniency
//! documented on each: the simulator records a [`Violation`] and carries on
//! where Discord would punish harder (reset the token, disconnect), so a
//! test sees every mistake rather than only the first.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use super::Inner;
use super::events::{Built, Target, resumed_d};
use super::record::{
    GatewayPort, HeartbeatRecord, IdentifyRecord, Records, ResumeRecord, Violation,
};
use super::session::{Ctl, OP9_FALSE, OP11, Out, Session, State};

/// Largest payload a client may send.
pub(crate) const MAX_CLIENT_PAYLOAD: usize = 4096;
/// Client payloads allowed per [`SEND_WINDOW`] per connection.
pub(crate) const SEND_LIMIT: usize = 120;
/// The send limit's window.
pub(crate) const SEND_WINDOW: Duration = Duration::from_secs(60);
/// How long a client may take to answer an op 1.
pub(crate) const REQUESTED_HEARTBEAT_LIMIT: Duration = Duration::from_secs(1);
/// Longest the heartbeat watchdog sleeps between checks.
const WATCHDOG_MAX_SLEEP: Duration = Duration::from_millis(100);
/// Intent bits Discord knows (bits above this → 4013).
const KNOWN_INTENTS: u64 = (1 << 26) - 1;
/// GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
pub(crate) const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);

impl Inner {
    /// Handle one client payload that arrived at `now`.
    pub(crate) fn on_client_frame(&self, conn_id: u64, now: Instant, data: &[u8]) {
        let mut st = self.state();
        let mut rec = self.rec();
        let st = &mut *st;
        let rec = &mut *rec;
        let Some(conn) = st.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.closing {
            return;
        }
        let shard_id = conn.shard_id;
        while conn
            .sends
            .front()
            .is_some_and(|t| now.duration_since(*t) >= SEND_WINDOW)
        {
            conn.sends.pop_front();
        }
        conn.sends.push_back(now);
        if conn.sends.len() > SEND_LIMIT {
            let count = conn.sends.len();
            rec.violation(Violation::SendRateExceeded {
                shard_id,
                connection_id: conn_id,
                count,
            });
            return self.close_conn(st, rec, conn_id, 4008, "Rate limited.", now);
        }
        if data.len() > MAX_CLIENT_PAYLOAD {
            rec.violation(Violation::PayloadTooLarge {
                shard_id,
                connection_id: conn_id,
                bytes: data.len(),
            });
            return self.close_conn(st, rec, conn_id, 4002, "Error while decoding payload.", now);
        }
        let payload: Value = match serde_json::from_slice(data) {
            Ok(v) => v,
            Err(e) => return self.decode_error(st, rec, conn_id, e.to_string(), now),
        };
        let Some(op) = payload.get("op").and_then(Value::as_u64) else {
            return self.decode_error(st, rec, conn_id, "no numeric op".into(), now);
        };
        let d = payload.get("d").unwrap_or(&Value::Null);
        let authenticated = conn.session.is_some();
        match op {
            1 => self.heartbeat(st, rec, conn_id, d, now),
            2 | 6 if authenticated => {
                rec.violation(Violation::AlreadyAuthenticated {
                    shard_id,
                    connection_id: conn_id,
                    op,
                });
                self.close_conn(st, rec, conn_id, 4005, "Already authenticated.", now);
            }
            2 => self.identify(st, rec, conn_id, d, now),
            6 => self.resume(st, rec, conn_id, d, now),
            3 | 4 | 8 | 31 | 43 if !authenticated => {
                rec.violation(Violation::NotAuthenticated {
                    shard_id,
                    connection_id: conn_id,
                    op,
                });
                self.close_conn(st, rec, conn_id, 4003, "Not authenticated.", now);
            }
            // Presence, voice state, member and soundboard requests, channel
            // info: accepted and ignored (no GUILD_MEMBERS_CHUNK is sent).
            3 | 4 | 8 | 31 | 43 => {}
            _ => {
                rec.violation(Violation::UnknownOpcode {
                    shard_id,
                    connection_id: conn_id,
                    op,
                });
                self.close_conn(st, rec, conn_id, 4001, "Unknown opcode.", now);
            }
        }
    }

    fn decode_error(
        &self,
        st: &mut State,
        rec: &mut Records,
        conn_id: u64,
        detail: String,
        now: Instant,
    ) {
        let shard_id = st.conns.get(&conn_id).map_or(0, |c| c.shard_id);
        rec.violation(Violation::DecodeError {
            shard_id,
            connection_id: conn_id,
            detail,
        });
        self.close_conn(st, rec, conn_id, 4002, "Error while decoding payload.", now);
    }

    fn bad_payload(
        &self,
        st: &mut State,
        rec: &mut Records,
        conn_id: u64,
        op: u64,
        detail: &str,
        now: Instant,
    ) {
        let shard_id = st.conns.get(&conn_id).map_or(0, |c| c.shard_id);
        rec.violation(Violation::BadPayload {
            shard_id,
            connection_id: conn_id,
            op,
            detail: detail.to_owned(),
        });
        self.close_conn(st, rec, conn_id, 4001, "Invalid payload for opcode.", now);
    }

    /// op 1: record, check timing and `d`, ACK unless `StopAcking`.
    fn heartbeat(&self, st: &mut State, rec: &mut Records, conn_id: u64, d: &Value, now: Instant) {
        let d = match d {
            Value::Null => None,
            v => match v.as_u64() {
                Some(n) => Some(n),
                None => {
                    return self.bad_payload(
                        st,
                        rec,
                        conn_id,
                        1,
                        "d must be an integer or null",
                        now,
                    );
                }
            },
        };
        let limit = self.cfg.heartbeat_interval + self.cfg.heartbeat_grace;
        let last_sent = st
            .conns
            .get(&conn_id)
            .and_then(|c| c.session.as_ref())
            .and_then(|sid| st.sessions.get(sid))
            .map(|s| s.seq);
        let Some(conn) = st.conns.get_mut(&conn_id) else {
            return;
        };
        let base = conn
            .last_heartbeat
            .or(conn.hello_at)
            .unwrap_or(conn.opened_at);
        let since_previous = now.saturating_duration_since(base);
        let first = conn.last_heartbeat.is_none();
        let shard_id = conn.shard_id;
        if since_previous > limit {
            rec.violation(if first {
                Violation::FirstHeartbeatLate {
                    shard_id,
                    connection_id: conn_id,
                    after_hello: since_previous,
                    limit,
                }
            } else {
                Violation::LateHeartbeat {
                    shard_id,
                    connection_id: conn_id,
                    since_previous,
                    limit,
                }
            });
        }
        if let (Some(d), Some(last_sent)) = (d, last_sent)
            && d > last_sent
        {
            rec.violation(Violation::HeartbeatSeqAhead {
                shard_id,
                connection_id: conn_id,
                d,
                last_sent,
            });
        }
        rec.heartbeats.push(HeartbeatRecord {
            shard_id,
            connection_id: conn_id,
            at: now,
            since_previous,
            first,
            d,
        });
        conn.last_heartbeat = Some(now);
        conn.gap_reported = false;
        conn.requested_at = None;
        if !conn.stop_acking {
            let _ = conn.ctl_tx.send(Ctl::Send(Bytes::from_static(OP11)));
        }
    }

    /// op 2: validate, rate-check, create a session and send READY.
    fn identify(&self, st: &mut State, rec: &mut Records, conn_id: u64, d: &Value, now: Instant) {
        let cfg = &self.cfg;
        let Some(token) = d.get("token").and_then(Value::as_str) else {
            return self.bad_payload(st, rec, conn_id, 2, "token (string) is required", now);
        };
        if token != cfg.token {
            return self.close_conn(st, rec, conn_id, 4004, "Authentication failed.", now);
        }
        let Some(intents) = d.get("intents").and_then(Value::as_u64) else {
            return self.bad_payload(st, rec, conn_id, 2, "intents (integer) is required", now);
        };
        let (shard_id, num_shards) = match d.get("shard") {
            None | Some(Value::Null) if cfg.shards > 1 => {
                return self.close_conn(st, rec, conn_id, 4011, "Sharding required.", now);
            }
            None | Some(Value::Null) => (0, 1),
            Some(v) => match v.as_array().map(Vec::as_slice) {
                Some([a, b]) => match (a.as_u64(), b.as_u64()) {
                    (Some(a), Some(b)) if a < b && b <= u64::from(u32::MAX) => (a as u32, b as u32),
                    _ => return self.close_conn(st, rec, conn_id, 4010, "Invalid shard.", now),
                },
                _ => {
                    return self.bad_payload(st, rec, conn_id, 2, "shard must be [id, count]", now);
                }
            },
        };
        if intents & !KNOWN_INTENTS != 0 {
            return self.close_conn(st, rec, conn_id, 4013, "Invalid intent(s).", now);
        }
        if intents & PRIVILEGED_INTENTS & !cfg.allowed_intents != 0 {
            return self.close_conn(st, rec, conn_id, 4014, "Disallowed intent(s).", now);
        }
        if let Some(conn) = st.conns.get_mut(&conn_id) {
            conn.shard_id = shard_id;
            rec.attribute(conn_id, conn.opened_at, shard_id);
        }
        let mut record = IdentifyRecord {
            shard_id,
            num_shards,
            at: now,
            intents,
            connection_id: conn_id,
            accepted: false,
            session_id: None,
        };

        // Concurrency: one identify per bucket per `identify_spacing`
        // (Discord answers op 9).
        let bucket = shard_id % cfg.max_concurrency.max(1);
        if let Some(last) = st.bucket_last.get(&bucket) {
            let gap = now.saturating_duration_since(*last);
            if gap < cfg.identify_spacing {
                rec.violation(Violation::IdentifySpacing {
                    shard_id,
                    connection_id: conn_id,
                    bucket,
                    gap,
                    required: cfg.identify_spacing,
                });
                rec.identifies.push(record);
                if let Some(conn) = st.conns.get(&conn_id) {
                    let _ = conn.ctl_tx.send(Ctl::Send(Bytes::from_static(OP9_FALSE)));
                }
                return;
            }
        }
        st.bucket_last.insert(bucket, now);

        // Daily limit. Discord would reset the token; we record and accept.
        if st.remaining == 0 {
            rec.violation(Violation::IdentifyOverLimit {
                shard_id,
                connection_id: conn_id,
                total: cfg.session_start_total,
            });
        } else {
            st.remaining -= 1;
        }
        st.prune(now, cfg);
        if let Some(old) = st.sessions.values().find(|s| {
            s.shard_id == shard_id && s.conn.is_none() && s.resumable(now, cfg.session_timeout)
        }) {
            rec.violation(Violation::IdentifyWhenResumable {
                shard_id,
                connection_id: conn_id,
                session_id: old.id.clone(),
            });
        }

        let session_id = format!("{:032x}", rand::random::<u128>());
        st.sessions.insert(
            session_id.clone(),
            Session {
                id: session_id.clone(),
                shard_id,
                num_shards,
                seq: 0,
                buffer: Default::default(),
                conn: Some(conn_id),
                ready: false,
                disconnected_at: None,
                invalidated: false,
            },
        );
        st.shards.entry(shard_id).or_default().current = Some(session_id.clone());
        if let Some(conn) = st.conns.get_mut(&conn_id) {
            conn.session = Some(session_id.clone());
        }
        record.accepted = true;
        record.session_id = Some(session_id.clone());
        rec.identifies.push(record);
        tracing::info!(connection = conn_id, shard_id, num_shards, %session_id, "identified");

        let target = Target {
            shard_id,
            num_shards,
            guilds: cfg.guilds_per_shard,
        };
        let ready = Built {
            name: "READY".into(),
            d: self
                .events
                .ready(&session_id, &self.resume_gateway_url, target),
            guild_id: None,
        };
        st.dispatch(&session_id, &ready, now, cfg, rec);
        if let Some(s) = st.sessions.get_mut(&session_id) {
            s.ready = s.conn == Some(conn_id);
        }
        self.apply_pending(st, rec, shard_id, conn_id, now);
    }

    /// op 6: replay what the client missed and send RESUMED, or op 9 false.
    fn resume(&self, st: &mut State, rec: &mut Records, conn_id: u64, d: &Value, now: Instant) {
        let cfg = &self.cfg;
        let (Some(token), Some(session_id)) = (
            d.get("token").and_then(Value::as_str),
            d.get("session_id").and_then(Value::as_str),
        ) else {
            return self.bad_payload(
                st,
                rec,
                conn_id,
                6,
                "token and session_id are required",
                now,
            );
        };
        let seq = match d.get("seq") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64() {
                Some(n) => n,
                None => {
                    return self.bad_payload(st, rec, conn_id, 6, "seq must be an integer", now);
                }
            },
        };
        let Some(conn) = st.conns.get(&conn_id) else {
            return;
        };
        let on_resume_url = conn.port == GatewayPort::Resume;
        let conn_shard = conn.shard_id;
        let opened_at = conn.opened_at;
        let session = st.sessions.get(session_id);
        let shard_id = session.map_or(conn_shard, |s| s.shard_id);
        if session.is_some() && !on_resume_url {
            rec.violation(Violation::ResumeNotOnResumeUrl {
                shard_id,
                connection_id: conn_id,
                session_id: session_id.to_owned(),
            });
        }
        let accepted = token == cfg.token
            && session
                .is_some_and(|s| s.resumable(now, cfg.session_timeout) && s.can_replay_from(seq));
        rec.resumes.push(ResumeRecord {
            shard_id,
            session_id: session_id.to_owned(),
            seq,
            on_resume_url,
            accepted,
            at: now,
            connection_id: conn_id,
        });
        if !accepted {
            tracing::info!(connection = conn_id, session_id, seq, "resume refused");
            // A session that timed out or lost the events the client needs
            // can never be resumed: end it.
            if token == cfg.token && st.sessions.get(session_id).is_some_and(|s| !s.invalidated) {
                st.detach(session_id, now, true);
            }
            if let Some(conn) = st.conns.get(&conn_id) {
                let _ = conn.ctl_tx.send(Ctl::Send(Bytes::from_static(OP9_FALSE)));
            }
            return;
        }

        // Take the session over from a connection that still holds it.
        if let Some(old) = st.sessions.get(session_id).and_then(|s| s.conn) {
            st.drop_conn(old, now);
        }
        let Some(s) = st.sessions.get_mut(session_id) else {
            return;
        };
        s.conn = Some(conn_id);
        s.disconnected_at = None;
        let replay: Vec<Bytes> = s
            .buffer
            .iter()
            .filter(|(n, _)| *n > seq)
            .map(|(_, b)| b.clone())
            .collect();
        let session_id = s.id.clone();
        if let Some(conn) = st.conns.get_mut(&conn_id) {
            conn.session = Some(session_id.clone());
            conn.shard_id = shard_id;
        }
        rec.attribute(conn_id, opened_at, shard_id);
        st.shards.entry(shard_id).or_default().current = Some(session_id.clone());
        tracing::info!(connection = conn_id, %session_id, seq, replay = replay.len(), "resumed");
        if !replay.is_empty() {
            st.send_out(conn_id, Out::Batch(replay), now, cfg, rec);
        }
        let resumed = Built {
            name: "RESUMED".into(),
            d: resumed_d(),
            guild_id: None,
        };
        st.dispatch(&session_id, &resumed, now, cfg, rec);
        if let Some(s) = st.sessions.get_mut(&session_id) {
            s.ready = s.conn == Some(conn_id);
        }
        self.apply_pending(st, rec, shard_id, conn_id, now);
    }

    /// The writer sent Hello at `now`.
    pub(crate) fn hello_sent(&self, conn_id: u64, now: Instant) {
        if let Some(c) = self.state().conns.get_mut(&conn_id) {
            c.hello_at = Some(now);
        }
    }

    /// Check the heartbeat deadlines of `conn_id` at `now`; record what was
    /// missed and return when to check next (`None`: nothing to wait for).
    pub(crate) fn watchdog(&self, conn_id: u64, now: Instant) -> Option<Instant> {
        let mut st = self.state();
        let conn = st.conns.get_mut(&conn_id)?;
        if conn.closing {
            return None;
        }
        let Some(base) = conn.last_heartbeat.or(conn.hello_at) else {
            // Hello not sent yet: look again soon.
            return Some(now + Duration::from_millis(20));
        };
        let limit = self.cfg.heartbeat_interval + self.cfg.heartbeat_grace;
        let mut missed = Vec::new();
        if !conn.gap_reported && now >= base + limit {
            conn.gap_reported = true;
            missed.push(Violation::NoHeartbeat {
                shard_id: conn.shard_id,
                connection_id: conn_id,
                waited: now - base,
            });
        }
        if let Some(at) = conn.requested_at
            && now >= at + REQUESTED_HEARTBEAT_LIMIT
        {
            conn.requested_at = None;
            missed.push(Violation::RequestedHeartbeatUnanswered {
                shard_id: conn.shard_id,
                connection_id: conn_id,
                waited: now - at,
            });
        }
        // Faults (op 1) change the deadlines without waking the reader, so
        // never sleep longer than WATCHDOG_MAX_SLEEP.
        let next = [
            (!conn.gap_reported).then(|| base + limit),
            conn.requested_at.map(|at| at + REQUESTED_HEARTBEAT_LIMIT),
            Some(now + WATCHDOG_MAX_SLEEP),
        ]
        .into_iter()
        .flatten()
        .min();
        drop(st);
        if !missed.is_empty() {
            let mut rec = self.rec();
            missed.into_iter().for_each(|v| rec.violation(v));
        }
        next
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
