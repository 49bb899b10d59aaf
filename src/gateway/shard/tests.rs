use super::*;
use crate::gateway::scan::scan;

const INTERVAL_MS: u64 = 41_250;

fn core() -> ShardCore {
    ShardCore::new(
        ShardId {
            number: 3,
            total: 8,
        },
        IdentifyProps {
            token: Secret::new("tok.en"),
            intents: 1539,
            large_threshold: 50,
        },
        7,
    )
}

fn feed(core: &mut ShardCore, now: Instant, payload: &str) -> Step {
    let env = scan(payload.as_bytes()).expect("test payload scans");
    core.on_payload(now, &env, payload.as_bytes())
        .expect("valid payload")
}

fn hello(core: &mut ShardCore, now: Instant) -> Step {
    feed(
        core,
        now,
        &format!(r#"{{"op":10,"d":{{"heartbeat_interval":{INTERVAL_MS}}}}}"#),
    )
}

fn ready(core: &mut ShardCore, now: Instant, seq: u64) -> Step {
    feed(
        core,
        now,
        &format!(
            r#"{{"t":"READY","s":{seq},"op":0,"d":{{"v":10,"session_id":"sess-1","resume_gateway_url":"wss://resume.example","guilds":[]}}}}"#
        ),
    )
}

/// Connect, Hello, permit, READY: a shard with a live session.
fn ready_shard(now: Instant) -> ShardCore {
    let mut core = core();
    core.on_connected(now);
    assert_eq!(hello(&mut core, now), Step::RequestIdentify);
    assert!(matches!(core.on_identify_permit(now), Step::Send(_)));
    ready(&mut core, now, 1);
    core
}

fn sent(step: Step) -> serde_json::Value {
    match step {
        Step::Send(payload) => {
            assert!(payload.len() <= MAX_OUTGOING);
            serde_json::from_str(&payload).unwrap()
        }
        other => panic!("expected a send, got {other:?}"),
    }
}

fn reconnect(step: Step) -> Reconnect {
    match step {
        Step::Reconnect(r) => r,
        other => panic!("expected a reconnect, got {other:?}"),
    }
}

#[test]
fn hello_then_identify_with_shard_and_intents() {
    let now = Instant::now();
    let mut core = core();
    assert_eq!(core.target(), Target::Gateway);
    core.on_connected(now);
    assert_eq!(hello(&mut core, now), Step::RequestIdentify);
    let identify = sent(core.on_identify_permit(now));
    assert_eq!(identify["op"], 2);
    assert_eq!(identify["d"]["token"], "tok.en");
    assert_eq!(identify["d"]["intents"], 1539);
    assert_eq!(identify["d"]["shard"], serde_json::json!([3, 8]));
    assert_eq!(identify["d"]["properties"]["browser"], "arrakis");
    // A second permit (a stale one) sends nothing.
    assert_eq!(core.on_identify_permit(now), Step::Idle);
}

#[test]
fn ready_keeps_session_and_resume_gateway_url() {
    let now = Instant::now();
    let core = ready_shard(now);
    assert!(core.is_active());
    let session = core.session().unwrap();
    assert_eq!(&*session.id, "sess-1");
    assert_eq!(session.seq, 1);
    assert_eq!(core.target(), Target::Resume("wss://resume.example".into()));
}

#[test]
fn ready_is_a_dispatch_too() {
    let now = Instant::now();
    let mut core = core();
    core.on_connected(now);
    hello(&mut core, now);
    core.on_identify_permit(now);
    assert_eq!(
        ready(&mut core, now, 1),
        Step::Dispatch {
            seq: 1,
            became: Some(Became::Ready)
        }
    );
}

#[test]
fn first_heartbeat_is_jittered_and_carries_last_seq() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    feed(
        &mut core,
        now,
        r#"{"op":0,"s":5,"t":"MESSAGE_CREATE","d":{"guild_id":"1"}}"#,
    );
    let due = core.next_deadline().unwrap();
    assert!(due >= now && due < now + Duration::from_millis(INTERVAL_MS));
    assert_eq!(core.on_timer(due - Duration::from_millis(1)), Step::Idle);
    let beat = sent(core.on_timer(due));
    assert_eq!(beat, serde_json::json!({"op": 1, "d": 5}));
    assert_eq!(
        core.next_deadline(),
        Some(due + Duration::from_millis(INTERVAL_MS))
    );
}

#[test]
fn jitter_differs_between_seeds() {
    let now = Instant::now();
    let dues: std::collections::HashSet<_> = (0..20)
        .map(|seed| {
            let mut core = ShardCore::new(
                ShardId {
                    number: 0,
                    total: 1,
                },
                core().props.clone(),
                seed,
            );
            core.on_connected(now);
            hello(&mut core, now);
            core.next_deadline().unwrap()
        })
        .collect();
    assert!(dues.len() > 15, "first heartbeats not spread: {dues:?}");
}

#[test]
fn heartbeat_before_ready_has_null_seq() {
    let now = Instant::now();
    let mut core = core();
    core.on_connected(now);
    hello(&mut core, now);
    let due = core.next_deadline().unwrap();
    assert_eq!(
        sent(core.on_timer(due)),
        serde_json::json!({"op": 1, "d": null})
    );
}

#[test]
fn server_heartbeat_request_is_answered_at_once() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let reply = sent(feed(&mut core, now, r#"{"op":1,"d":null}"#));
    assert_eq!(reply, serde_json::json!({"op": 1, "d": 1}));
}

#[test]
fn no_ack_between_heartbeats_is_zombie_and_resumes() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let first = core.next_deadline().unwrap();
    sent(core.on_timer(first));
    let second = core.next_deadline().unwrap();
    let r = reconnect(core.on_timer(second));
    assert_eq!(r.reason, ReconnectReason::Zombie);
    assert_ne!(r.close_code, 1000);
    assert_ne!(r.close_code, 1001);
    assert!(matches!(core.target(), Target::Resume(_)));
}

#[test]
fn acked_heartbeats_keep_the_connection() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    for _ in 0..10 {
        let due = core.next_deadline().unwrap();
        sent(core.on_timer(due));
        feed(&mut core, due + Duration::from_millis(30), r#"{"op":11}"#);
    }
    assert_eq!(core.heartbeat_rtt(), Some(Duration::from_millis(30)));
    assert!(core.is_active());
}

#[test]
fn paused_reading_does_not_look_like_a_zombie() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let first = core.next_deadline().unwrap();
    sent(core.on_timer(first));
    core.set_reading_paused(true);
    let second = core.next_deadline().unwrap();
    sent(core.on_timer(second));
    let third = core.next_deadline().unwrap();
    sent(core.on_timer(third));
}

#[test]
fn reconnect_opcode_resumes_at_once() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let r = reconnect(feed(&mut core, now, r#"{"op":7,"d":null}"#));
    assert_eq!(r.reason, ReconnectReason::Requested);
    assert_eq!(r.delay, Duration::ZERO);
    assert_eq!(core.target(), Target::Resume("wss://resume.example".into()));
}

#[test]
fn resume_uses_resume_gateway_url_and_last_seq() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    feed(
        &mut core,
        now,
        r#"{"op":0,"s":42,"t":"TYPING_START","d":{}}"#,
    );
    reconnect(core.on_disconnect(None));
    assert_eq!(core.target(), Target::Resume("wss://resume.example".into()));
    core.on_connected(now);
    let resume = sent(hello(&mut core, now));
    assert_eq!(
        resume,
        serde_json::json!({"op": 6, "d": {"token": "tok.en", "session_id": "sess-1", "seq": 42}})
    );
    assert_eq!(
        feed(&mut core, now, r#"{"op":0,"s":43,"t":"RESUMED","d":{}}"#),
        Step::Dispatch {
            seq: 43,
            became: Some(Became::Resumed)
        }
    );
    assert!(core.is_active());
}

#[test]
fn invalid_session_resumable_resumes() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let r = reconnect(feed(&mut core, now, r#"{"op":9,"d":true}"#));
    assert_eq!(r.reason, ReconnectReason::InvalidSessionResumable);
    assert!(matches!(core.target(), Target::Resume(_)));
}

#[test]
fn invalid_session_waits_one_to_five_seconds_then_identifies() {
    let now = Instant::now();
    for _ in 0..20 {
        let mut core = ready_shard(now);
        let r = reconnect(feed(&mut core, now, r#"{"op":9,"d":false}"#));
        assert_eq!(r.reason, ReconnectReason::InvalidSession);
        assert!(
            r.delay >= Duration::from_secs(1) && r.delay <= Duration::from_secs(5),
            "{:?}",
            r.delay
        );
        assert_eq!(core.target(), Target::Gateway);
        assert!(core.session().is_none());
    }
}

#[test]
fn failed_resume_goes_back_to_the_gateway_url() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    reconnect(core.on_disconnect(None));
    core.on_connected(now);
    sent(hello(&mut core, now));
    reconnect(feed(&mut core, now, r#"{"op":9,"d":false}"#));
    assert_eq!(core.target(), Target::Gateway);
    core.on_connected(now);
    assert_eq!(hello(&mut core, now), Step::RequestIdentify);
}

#[test]
fn close_codes_that_need_a_new_session_identify() {
    for code in [4003, 4005, 4007, 4009] {
        let now = Instant::now();
        let mut core = ready_shard(now);
        let r = reconnect(core.on_disconnect(Some(code)));
        assert_eq!(r.reason, ReconnectReason::Closed(code));
        assert_eq!(core.target(), Target::Gateway, "{code}");
    }
}

#[test]
fn resumable_close_codes_resume() {
    for code in [4000, 4001, 4002, 4008, 1000, 1001, 1006] {
        let now = Instant::now();
        let mut core = ready_shard(now);
        reconnect(core.on_disconnect(Some(code)));
        assert!(matches!(core.target(), Target::Resume(_)), "{code}");
    }
}

#[test]
fn fatal_close_codes_stop_the_shard() {
    for code in [4004, 4010, 4011, 4012, 4013, 4014] {
        let now = Instant::now();
        let mut core = ready_shard(now);
        match core.on_disconnect(Some(code)) {
            Step::Fatal(fatal) => assert_eq!(fatal.code(), code),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(core.next_deadline(), None);
    }
}

#[test]
fn missing_hello_times_out() {
    let now = Instant::now();
    let mut core = core();
    core.on_connected(now);
    assert_eq!(core.next_deadline(), Some(now + HELLO_TIMEOUT));
    let r = reconnect(core.on_timer(now + HELLO_TIMEOUT));
    assert_eq!(r.reason, ReconnectReason::Timeout);
}

#[test]
fn silent_gateway_after_identify_times_out() {
    let now = Instant::now();
    let mut core = core();
    core.on_connected(now);
    hello(&mut core, now);
    core.on_identify_permit(now);
    // Heartbeats are acked, but READY never comes.
    let t = loop {
        let due = core.next_deadline().unwrap();
        assert!(due < now + HANDSHAKE_TIMEOUT * 2, "no timeout");
        match core.on_timer(due) {
            Step::Send(_) => {
                feed(&mut core, due, r#"{"op":11}"#);
            }
            Step::Reconnect(r) => {
                assert_eq!(r.reason, ReconnectReason::Timeout);
                break due;
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(t >= now + HANDSHAKE_TIMEOUT);
}

#[test]
fn repeated_failures_back_off_up_to_the_cap() {
    let mut core = core();
    let mut max = Duration::ZERO;
    for _ in 0..50 {
        let d = core.on_connect_failed();
        assert!(d <= MAX_BACKOFF);
        max = max.max(d);
    }
    assert!(
        max > Duration::from_secs(20),
        "back-off never grew: {max:?}"
    );
}

#[test]
fn a_gateway_that_keeps_closing_is_backed_off() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    let mut delays = Vec::new();
    for _ in 0..12 {
        let r = reconnect(core.on_disconnect(Some(4000)));
        delays.push(r.delay);
        core.on_connected(now);
    }
    assert!(
        delays.iter().skip(8).all(|d| *d <= MAX_BACKOFF)
            && delays.iter().skip(6).any(|d| *d > Duration::from_secs(5)),
        "{delays:?}"
    );
}

#[test]
fn dispatch_without_seq_or_name_is_a_protocol_error() {
    let now = Instant::now();
    let mut core = ready_shard(now);
    for payload in [
        r#"{"op":0,"t":"MESSAGE_CREATE","s":null,"d":{}}"#,
        r#"{"op":0,"s":4,"d":{}}"#,
        r#"{"op":0,"s":4,"t":"lower.case","d":{}}"#,
    ] {
        let env = scan(payload.as_bytes()).unwrap();
        assert!(
            core.on_payload(now, &env, payload.as_bytes()).is_err(),
            "{payload}"
        );
    }
}

#[test]
fn malformed_hello_is_a_protocol_error() {
    let now = Instant::now();
    let mut core = core();
    core.on_connected(now);
    let payload = r#"{"op":10,"d":{"heartbeat_interval":"soon"}}"#;
    let env = scan(payload.as_bytes()).unwrap();
    assert!(core.on_payload(now, &env, payload.as_bytes()).is_err());
}

#[test]
fn token_is_not_in_debug_output() {
    let core = ready_shard(Instant::now());
    assert!(!format!("{core:?}").contains("tok.en"));
}
