//! Resuming (PROTOCOL.md §1.4): what is replayed, and when a resume is
//! refused.

use std::time::Duration;

use arrakis_loadtest::{EventKind, Fault, SimConfig, Simulator, Violation};
use serde_json::Value;

use crate::client::{Client, Frame};
use crate::{config, start};

/// Log in on shard 0, receive READY and `n` messages; returns the session id.
async fn logged_in(sim: &Simulator, n: usize) -> (Client, String) {
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    let ready = c.login("test-token", 0, 1).await;
    for _ in 0..n {
        let seq = sim.emit(0, EventKind::MessageCreate).unwrap();
        assert_eq!(c.payload().await.0["s"], seq);
    }
    (c, ready["session_id"].as_str().unwrap().to_owned())
}

async fn wait_disconnected(sim: &Simulator) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while sim.shard_status(0).unwrap().connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("session should lose its connection");
}

#[tokio::test]
async fn resume_after_drop_replays_exactly_the_missed_seqs_then_resumed() {
    let sim = start(config()).await;
    let (mut c, session) = logged_in(&sim, 3).await;
    sim.inject(0, Fault::DropSocket);
    assert!(matches!(c.next().await, Frame::Closed(None)));
    let missed: Vec<u64> = (0..3)
        .map(|_| sim.emit(0, EventKind::PresenceUpdate).unwrap())
        .collect();
    assert_eq!(missed, [5, 6, 7]);
    let status = sim.shard_status(0).unwrap();
    assert!(!status.connected && status.resumable);

    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 4).await;
    let sent = sim.sent();
    for seq in missed {
        let (v, raw) = c.payload().await;
        assert_eq!(v["s"], seq);
        assert_eq!(raw, sent.iter().find(|s| s.seq == seq).unwrap().body);
    }
    let (resumed, _) = c.payload().await;
    assert_eq!(resumed["t"], "RESUMED");
    assert_eq!(resumed["s"], 8);
    let r = &sim.resumes()[0];
    assert!(r.accepted && r.on_resume_url);
    assert_eq!((r.seq, r.session_id.as_str()), (4, session.as_str()));
    let status = sim.shard_status(0).unwrap();
    assert!(status.connected && status.ready);
    // Live again.
    let seq = sim.emit(0, EventKind::TypingStart).unwrap();
    assert_eq!(c.payload().await.0["s"], seq);
    assert_eq!(sim.identifies().len(), 1);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_on_the_main_url_is_a_violation() {
    let sim = start(config()).await;
    let (mut c, session) = logged_in(&sim, 1).await;
    sim.inject(0, Fault::DropSocket);
    c.closed().await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    assert_eq!(c.until(0, Some("RESUMED")).await.0["s"], 3);
    assert!(!sim.resumes()[0].on_resume_url);
    assert!(matches!(
        sim.violations()[..],
        [Violation::ResumeNotOnResumeUrl { shard_id: 0, .. }]
    ));
    sim.shutdown().await;
}

async fn expect_refused(c: &mut Client) {
    let (v, _) = c.until(9, None).await;
    assert_eq!(v["d"], false, "resume should be refused with op 9 d=false");
}

#[tokio::test]
async fn resume_after_invalid_session_false_is_refused() {
    let sim = start(config()).await;
    let (mut c, session) = logged_in(&sim, 1).await;
    sim.inject(0, Fault::InvalidSession { resumable: false });
    let (v, _) = c.until(9, None).await;
    assert_eq!(v["d"], false);
    assert_eq!(sim.emit(0, EventKind::MessageCreate), None);
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    expect_refused(&mut c).await;
    assert!(!sim.resumes()[0].accepted);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_session_true_can_be_resumed() {
    let sim = start(config()).await;
    let (mut c, session) = logged_in(&sim, 1).await;
    sim.inject(0, Fault::InvalidSession { resumable: true });
    assert_eq!(c.until(9, None).await.0["d"], true);
    let seq = sim.emit(0, EventKind::MessageCreate).unwrap();
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    assert_eq!(c.payload().await.0["s"], seq);
    assert_eq!(c.payload().await.0["t"], "RESUMED");
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_resumes_are_refused() {
    let sim = start(config()).await;
    let (_c, session) = logged_in(&sim, 2).await;
    for (token, session, seq) in [
        ("wrong", session.as_str(), 3),
        ("test-token", "0123456789abcdef0123456789abcdef", 3),
        ("test-token", session.as_str(), 99),
    ] {
        let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
        c.hello().await;
        c.resume(token, session, seq).await;
        expect_refused(&mut c).await;
    }
    assert!(sim.resumes().iter().all(|r| !r.accepted));
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_beyond_the_replay_buffer_is_refused() {
    let sim = start(SimConfig {
        replay_capacity: 5,
        ..config()
    })
    .await;
    let (mut c, session) = logged_in(&sim, 1).await;
    sim.inject(0, Fault::DropSocket);
    c.closed().await;
    for _ in 0..10 {
        sim.emit(0, EventKind::MessageCreate).unwrap();
    }
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    expect_refused(&mut c).await;
    assert!(!sim.shard_status(0).unwrap().resumable);
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_after_the_session_timeout_is_refused() {
    let sim = start(SimConfig {
        session_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let (mut c, session) = logged_in(&sim, 0).await;
    sim.inject(0, Fault::DropSocket);
    c.closed().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.emit(0, EventKind::MessageCreate), None);
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 1).await;
    expect_refused(&mut c).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_takes_over_a_connection_that_is_still_open() {
    let sim = start(config()).await;
    let (mut old, session) = logged_in(&sim, 1).await;
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    assert_eq!(c.until(0, Some("RESUMED")).await.0["s"], 3);
    assert!(old.closed().await.is_none());
    let seq = sim.emit(0, EventKind::MessageCreate).unwrap();
    let (v, _): (Value, _) = c.payload().await;
    assert_eq!(v["s"], seq);
    sim.shutdown().await;
}

#[tokio::test]
async fn close_1000_invalidates_the_session_and_4000_does_not() {
    let sim = start(config()).await;
    let (c, session) = logged_in(&sim, 1).await;
    c.close(1000).await;
    wait_disconnected(&sim).await;
    assert!(!sim.shard_status(0).unwrap().resumable);
    assert_eq!(sim.client_closes()[0].code, Some(1000));
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    expect_refused(&mut c).await;

    let (c, session) = logged_in(&sim, 1).await;
    c.close(4000).await;
    wait_disconnected(&sim).await;
    assert!(sim.shard_status(0).unwrap().resumable);
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", &session, 2).await;
    assert_eq!(c.until(0, Some("RESUMED")).await.0["s"], 3);
    sim.shutdown().await;
}
