//! Injected faults: what the client sees, and what happens to the session.

use std::time::Duration;

use arrakis_loadtest::{EventKind, Fault, SimConfig, Violation, ZLIB_SUFFIX};

use crate::client::{Client, Frame};
use crate::{config, start};

#[tokio::test]
async fn truncated_dispatch_is_replayed_on_resume() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    let ready = c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::Truncated);
    let seq = sim.emit(0, EventKind::MessageCreate).unwrap();
    let half = c.raw_message().await;
    assert!(!half.ends_with(&ZLIB_SUFFIX));
    assert!(matches!(c.next().await, Frame::Closed(None)));
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", ready["session_id"].as_str().unwrap(), 1)
        .await;
    let (v, raw) = c.payload().await;
    assert_eq!(v["s"], seq);
    assert_eq!(raw, sim.sent()[1].body);
    assert_eq!(c.payload().await.0["t"], "RESUMED");
    sim.shutdown().await;
}

#[tokio::test]
async fn corrupt_invalid_and_oversized_messages_are_outside_the_sequence() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;

    sim.inject(0, Fault::CorruptZlib);
    let garbage = c.raw_message().await;
    assert!(garbage.ends_with(&ZLIB_SUFFIX));
    assert!(
        flate2::Decompress::new(true)
            .decompress_vec(
                &garbage,
                &mut Vec::with_capacity(4096),
                flate2::FlushDecompress::Sync
            )
            .is_err()
    );

    sim.inject(0, Fault::InvalidJson);
    let bad = c.inflated().await;
    assert!(serde_json::from_slice::<serde_json::Value>(&bad).is_err());

    sim.inject(0, Fault::Oversized { bytes: 2_000_000 });
    let big = c.inflated().await;
    assert_eq!(big.len(), 2_000_000);
    let v: serde_json::Value = serde_json::from_slice(&big).unwrap();
    assert!(v["s"].is_null());

    // The sequence is untouched: the next dispatch is seq 2.
    assert_eq!(sim.emit(0, EventKind::MessageCreate), Some(2));
    assert_eq!(c.payload().await.0["s"], 2);
    assert_eq!(sim.sent().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn reconnect_sends_op_7_then_closes_and_the_session_resumes() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    let ready = c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::Reconnect);
    assert_eq!(c.payload().await.0["op"], 7);
    let started = std::time::Instant::now();
    assert!(matches!(c.next().await, Frame::Closed(None)));
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(sim.shard_status(0).unwrap().resumable);
    let mut c = Client::connect(&sim.resume_gateway_url(), true).await;
    c.hello().await;
    c.resume("test-token", ready["session_id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(c.payload().await.0["t"], "RESUMED");
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_close_codes_decide_resumability() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::Close(4000));
    assert_eq!(c.closed().await, Some(4000));
    assert!(sim.shard_status(0).unwrap().resumable);

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::Close(4009));
    assert_eq!(c.closed().await, Some(4009));
    assert!(!sim.shard_status(0).unwrap().resumable);
    assert_eq!(sim.emit(0, EventKind::MessageCreate), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_can_resume() {
    let sim = start(SimConfig {
        outbound_queue: 4,
        ..config()
    })
    .await;
    let mut c = Client::connect(&sim.gateway_url(), false).await;
    let ready = c.login("test-token", 0, 1).await;
    let mut last = 0;
    for _ in 0..200 {
        last = sim
            .emit(0, EventKind::GuildCreate { members: 300 })
            .unwrap();
        if sim
            .violations()
            .iter()
            .any(|v| matches!(v, Violation::SlowClient { .. }))
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        matches!(
            sim.violations()[..],
            [Violation::SlowClient {
                shard_id: 0,
                queued: 4,
                ..
            }]
        ),
        "{:?}",
        sim.violations()
    );
    assert!(!sim.shard_status(0).unwrap().connected);
    drop(c);
    let mut c = Client::connect(&sim.resume_gateway_url(), false).await;
    c.hello().await;
    c.resume(
        "test-token",
        ready["session_id"].as_str().unwrap(),
        last - 1,
    )
    .await;
    assert_eq!(c.payload().await.0["s"], last);
    assert_eq!(c.payload().await.0["t"], "RESUMED");
    sim.shutdown().await;
}
