//! Protocol rules with a fake clock: frames go straight into
//! `Inner::on_client_frame` with chosen arrival times, and the answers are
//! read from the connection's channels. This covers the time boundaries
//! (60 s send window, session timeout, identify spacing, heartbeat
//! deadlines) that real-time tests cannot reach cheaply.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::gateway::End;
use super::super::record::GatewayPort;
use super::super::session::{ConnState, Ctl, Out};
use super::super::{Inner, SimConfig, Violation};
use super::SEND_LIMIT;

struct Conn {
    id: u64,
    data: mpsc::Receiver<Out>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
}

impl Conn {
    /// Payloads sent on the control channel so far, as text.
    fn ctl_texts(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(c) = self.ctl.try_recv() {
            out.push(match c {
                Ctl::Send(b) => String::from_utf8(b.to_vec()).unwrap(),
                Ctl::Close(code, _) => format!("close {code}"),
                Ctl::Drop => "drop".into(),
                Ctl::DropAfter(_) => "drop-after".into(),
            });
        }
        out
    }

    /// Event names queued so far.
    fn dispatches(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(o) = self.data.try_recv() {
            let bodies = match o {
                Out::Dispatch(b) => vec![b],
                Out::Batch(v) => v,
                _ => continue,
            };
            for b in bodies {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                out.push(v["t"].as_str().unwrap().to_owned());
            }
        }
        out
    }
}

fn sim(cfg: SimConfig) -> Inner {
    Inner::new(
        cfg,
        "http://x/api/v10".into(),
        "ws://main".into(),
        "ws://resume".into(),
    )
}

fn config() -> SimConfig {
    SimConfig {
        token: "t".into(),
        identify_spacing: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(40),
        heartbeat_grace: Duration::from_secs(5),
        ..SimConfig::default()
    }
}

fn connect(inner: &Inner, port: GatewayPort, at: Instant) -> Conn {
    let id = inner.next_connection_id();
    let (data_tx, data) = mpsc::channel(1024);
    let (ctl_tx, ctl) = mpsc::unbounded_channel();
    let mut conn = ConnState::new(port, at, data_tx, ctl_tx);
    conn.hello_at = Some(at);
    inner.state().conns.insert(id, conn);
    Conn { id, data, ctl }
}

fn send(inner: &Inner, c: &Conn, at: Instant, v: serde_json::Value) {
    inner.on_client_frame(c.id, at, v.to_string().as_bytes());
}

fn identify(inner: &Inner, c: &Conn, at: Instant, shard: [u32; 2]) {
    send(
        inner,
        c,
        at,
        json!({"op": 2, "d": {"token": "t", "intents": 1, "shard": shard, "properties": {}}}),
    );
}

fn session_of(inner: &Inner, c: &Conn) -> String {
    inner.state().conns[&c.id].session.clone().unwrap()
}

#[test]
fn send_limit_is_a_sliding_60_second_window() {
    let inner = sim(config());
    let t0 = Instant::now();
    let mut c = connect(&inner, GatewayPort::Main, t0);
    for i in 0..SEND_LIMIT as u64 {
        send(
            &inner,
            &c,
            t0 + Duration::from_millis(i),
            json!({"op": 1, "d": null}),
        );
    }
    // 60 s after the first payload it has left the window: one more is fine.
    send(
        &inner,
        &c,
        t0 + Duration::from_secs(60),
        json!({"op": 1, "d": null}),
    );
    assert!(!c.ctl_texts().iter().any(|t| t.starts_with("close")));
    // But the other 119 are still inside it.
    send(
        &inner,
        &c,
        t0 + Duration::from_secs(60),
        json!({"op": 1, "d": null}),
    );
    assert_eq!(c.ctl_texts(), ["close 4008"]);
    // (The heartbeat at 60 s is also late; only the rate matters here.)
    let v = inner.rec().violations.clone();
    let rate: Vec<_> = v
        .iter()
        .filter(|v| matches!(v, Violation::SendRateExceeded { .. }))
        .collect();
    assert!(
        matches!(rate[..], [Violation::SendRateExceeded { count: 121, .. }]),
        "{v:?}"
    );
}

#[test]
fn sessions_stay_resumable_for_exactly_the_timeout() {
    let cfg = SimConfig {
        session_timeout: Duration::from_secs(120),
        ..config()
    };
    for (after, accepted) in [(120_000, true), (120_001, false)] {
        let inner = sim(cfg.clone());
        let t0 = Instant::now();
        let mut a = connect(&inner, GatewayPort::Main, t0);
        identify(&inner, &a, t0, [0, 1]);
        assert_eq!(a.dispatches(), ["READY"]);
        let session = session_of(&inner, &a);
        inner.connection_ended(a.id, End::Eof, t0);
        let t1 = t0 + Duration::from_millis(after);
        let mut b = connect(&inner, GatewayPort::Resume, t1);
        send(
            &inner,
            &b,
            t1,
            json!({"op": 6, "d": {"token": "t", "session_id": session, "seq": 1}}),
        );
        if accepted {
            assert_eq!(b.dispatches(), ["RESUMED"]);
        } else {
            assert!(b.ctl_texts()[0].contains("\"op\":9,\"d\":false"));
        }
        assert_eq!(
            inner.rec().resumes[0].accepted,
            accepted,
            "after {after} ms"
        );
    }
}

#[test]
fn identify_spacing_is_per_bucket_and_inclusive() {
    let spacing = Duration::from_secs(5);
    let inner = sim(SimConfig {
        identify_spacing: spacing,
        max_concurrency: 2,
        ..config()
    });
    let t0 = Instant::now();
    // Shards 0 and 1 are different buckets: both at t0.
    for shard in 0..2 {
        let mut c = connect(&inner, GatewayPort::Main, t0);
        identify(&inner, &c, t0, [shard, 4]);
        assert_eq!(c.dispatches(), ["READY"]);
    }
    // Shard 2 shares bucket 0: 1 ms too early, then exactly on time.
    let mut c = connect(&inner, GatewayPort::Main, t0);
    identify(&inner, &c, t0 + spacing - Duration::from_millis(1), [2, 4]);
    assert!(c.ctl_texts()[0].contains("\"op\":9"));
    identify(&inner, &c, t0 + spacing, [2, 4]);
    assert_eq!(c.dispatches(), ["READY"]);
    let v = &inner.rec().violations;
    assert!(
        matches!(
            v[..],
            [Violation::IdentifySpacing {
                shard_id: 2,
                bucket: 0,
                ..
            }]
        ),
        "{v:?}"
    );
}

#[test]
fn heartbeat_deadlines_are_interval_plus_grace() {
    let inner = sim(config());
    let t0 = Instant::now();
    let mut c = connect(&inner, GatewayPort::Main, t0);
    let limit = Duration::from_secs(45);
    // The watchdog only reports once the deadline has passed, and once.
    assert!(
        inner
            .watchdog(c.id, t0 + limit - Duration::from_millis(1))
            .is_some()
    );
    assert!(inner.rec().violations.is_empty());
    inner.watchdog(c.id, t0 + limit);
    inner.watchdog(c.id, t0 + limit + Duration::from_secs(3));
    assert!(matches!(
        inner.rec().violations[..],
        [Violation::NoHeartbeat { .. }]
    ));
    // A first heartbeat at exactly the limit is on time; ACKed.
    let mut d = connect(&inner, GatewayPort::Main, t0);
    send(&inner, &d, t0 + limit, json!({"op": 1, "d": null}));
    assert_eq!(d.ctl_texts().len(), 1);
    send(
        &inner,
        &d,
        t0 + limit * 2 + Duration::from_millis(1),
        json!({"op": 1, "d": null}),
    );
    let v = inner.rec().violations.clone();
    assert!(matches!(v[1], Violation::LateHeartbeat { .. }), "{v:?}");
    assert_eq!(v.len(), 2);
    let beats = inner.rec().heartbeats.clone();
    assert_eq!(beats[0].since_previous, limit);
    assert!(beats[0].first && !beats[1].first);
    let _ = c.ctl_texts();
}

#[test]
fn stop_acking_only_silences_acks() {
    let inner = sim(config());
    let t0 = Instant::now();
    let mut c = connect(&inner, GatewayPort::Main, t0);
    identify(&inner, &c, t0, [0, 1]);
    inner.inject(0, crate::sim::Fault::StopAcking);
    send(&inner, &c, t0, json!({"op": 1, "d": 1}));
    assert!(c.ctl_texts().is_empty());
    assert_eq!(inner.rec().heartbeats.len(), 1);
    assert_eq!(c.dispatches(), ["READY"]);
}

#[test]
fn emitting_to_a_dropped_session_buffers_for_resume() {
    let inner = sim(config());
    let t0 = Instant::now();
    let a = connect(&inner, GatewayPort::Main, t0);
    identify(&inner, &a, t0, [0, 1]);
    let session = session_of(&inner, &a);
    inner.inject(0, crate::sim::Fault::DropSocket);
    let seqs: Vec<_> = (0..3)
        .map(|_| inner.emit(0, &crate::sim::EventKind::TypingStart))
        .collect();
    assert_eq!(seqs, [Some(2), Some(3), Some(4)]);
    inner.connection_ended(a.id, End::Dropped, t0);
    let mut b = connect(&inner, GatewayPort::Resume, t0);
    send(
        &inner,
        &b,
        t0,
        json!({"op": 6, "d": {"token": "t", "session_id": session, "seq": 2}}),
    );
    assert_eq!(b.dispatches(), ["TYPING_START", "TYPING_START", "RESUMED"]);
}
