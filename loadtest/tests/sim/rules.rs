//! Rules the simulator enforces on clients (PROTOCOL.md §1.2, §1.3, §1.5,
//! §1.7): each test provokes one and checks the answer and the record.

use std::time::Duration;

use arrakis_loadtest::{Fault, SimConfig, Violation};
use serde_json::json;

use crate::client::Client;
use crate::{config, start};

#[tokio::test]
async fn identifies_closer_than_the_spacing_get_op_9() {
    let sim = start(SimConfig {
        shards: 2,
        identify_spacing: Duration::from_secs(2),
        ..config()
    })
    .await;
    let mut a = Client::connect(&sim.gateway_url(), true).await;
    a.login("test-token", 0, 2).await;
    let mut b = Client::connect(&sim.gateway_url(), true).await;
    b.hello().await;
    b.identify("test-token", 1, 2, 513).await;
    assert_eq!(b.until(9, None).await.0["d"], false);
    let v = sim.violations();
    assert!(
        matches!(&v[..], [Violation::IdentifySpacing { shard_id: 1, bucket: 0, gap, .. }] if *gap < Duration::from_secs(2)),
        "{v:?}"
    );
    let ids = sim.identifies();
    assert!(ids[0].accepted && !ids[1].accepted);
    assert!(sim.shard_status(1).is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn different_buckets_may_identify_together() {
    let sim = start(SimConfig {
        shards: 2,
        max_concurrency: 2,
        identify_spacing: Duration::from_secs(5),
        ..config()
    })
    .await;
    for shard in 0..2 {
        let mut c = Client::connect(&sim.gateway_url(), true).await;
        c.login("test-token", shard, 2).await;
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

#[tokio::test]
async fn identify_while_resumable_is_recorded() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    let ready = c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::DropSocket);
    c.closed().await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    let ready2 = c.login("test-token", 0, 1).await;
    assert_ne!(ready["session_id"], ready2["session_id"]);
    let v = sim.violations();
    assert!(
        matches!(&v[..], [Violation::IdentifyWhenResumable { shard_id: 0, session_id, .. }] if *session_id == ready["session_id"]),
        "{v:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn late_heartbeats_are_recorded() {
    let sim = start(SimConfig {
        heartbeat_interval: Duration::from_millis(300),
        heartbeat_grace: Duration::from_millis(100),
        ..config()
    })
    .await;
    // On time first, then late.
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    c.heartbeat(Some(1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.heartbeat(Some(1)).await;
    c.until(11, None).await;
    c.until(11, None).await;
    let v = sim.violations();
    assert!(
        v.iter().any(|v| matches!(v, Violation::LateHeartbeat { since_previous, .. } if *since_previous >= Duration::from_millis(600))),
        "{v:?}"
    );
    assert!(
        v.iter().any(|v| matches!(v, Violation::NoHeartbeat { .. })),
        "{v:?}"
    );
    assert!(
        !v.iter()
            .any(|v| matches!(v, Violation::FirstHeartbeatLate { .. })),
        "{v:?}"
    );

    // Late from the start.
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.heartbeat(None).await;
    c.until(11, None).await;
    let v = sim.violations();
    assert!(
        v.iter().any(|v| matches!(
            v,
            Violation::FirstHeartbeatLate {
                connection_id: 2,
                ..
            }
        )),
        "{v:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn heartbeat_ahead_of_the_sequence_is_recorded() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    c.heartbeat(Some(99)).await;
    c.until(11, None).await;
    assert!(matches!(
        sim.violations()[..],
        [Violation::HeartbeatSeqAhead {
            d: 99,
            last_sent: 1,
            ..
        }]
    ));
    sim.shutdown().await;
}

async fn closed_with(
    sim: &arrakis_loadtest::Simulator,
    zlib: bool,
    identify: serde_json::Value,
) -> Option<u16> {
    let mut c = Client::connect(&sim.gateway_url(), zlib).await;
    c.hello().await;
    c.send(identify).await;
    c.closed().await
}

fn identify(token: &str, shard: Option<[u32; 2]>, intents: u64) -> serde_json::Value {
    json!({"op": 2, "d": {"token": token, "intents": intents, "shard": shard,
        "properties": {"os": "linux", "browser": "t", "device": "t"}}})
}

#[tokio::test]
async fn identify_errors_close_with_discords_codes() {
    let sim = start(SimConfig {
        shards: 2,
        allowed_intents: 0,
        ..config()
    })
    .await;
    assert_eq!(
        closed_with(&sim, true, identify("nope", Some([0, 2]), 1)).await,
        Some(4004)
    );
    assert_eq!(
        closed_with(&sim, false, identify("test-token", Some([2, 2]), 1)).await,
        Some(4010)
    );
    assert_eq!(
        closed_with(&sim, true, identify("test-token", None, 1)).await,
        Some(4011)
    );
    assert_eq!(
        closed_with(&sim, true, identify("test-token", Some([0, 2]), 1 << 30)).await,
        Some(4013)
    );
    assert_eq!(
        closed_with(&sim, true, identify("test-token", Some([0, 2]), 1 << 8)).await,
        Some(4014)
    );
    let codes: Vec<u16> = sim.server_closes().iter().map(|c| c.code).collect();
    assert_eq!(codes, [4004, 4010, 4011, 4013, 4014]);
    assert!(sim.identifies().is_empty());
    // Configuration problems are not protocol violations.
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_api_version_closes_4012() {
    let sim = start(config()).await;
    let mut c =
        Client::connect_raw(&format!("{}/?v=9&encoding=json", sim.gateway_url()), false).await;
    assert_eq!(c.closed().await, Some(4012));
    sim.shutdown().await;
}

#[tokio::test]
async fn payload_errors_close_4001_to_4005() {
    let sim = start(config()).await;

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    c.send(json!({"op": 42, "d": null})).await;
    assert_eq!(c.closed().await, Some(4001));

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    c.send(json!({"op": 1, "d": "x".repeat(5000)})).await;
    assert_eq!(c.closed().await, Some(4002));

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    c.send_text("{not json".into()).await;
    assert_eq!(c.closed().await, Some(4002));

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.hello().await;
    c.send(
        json!({"op": 3, "d": {"status": "online", "since": null, "activities": [], "afk": false}}),
    )
    .await;
    assert_eq!(c.closed().await, Some(4003));

    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    c.identify("test-token", 0, 1, 513).await;
    assert_eq!(c.closed().await, Some(4005));

    let v = sim.violations();
    assert!(
        matches!(v[0], Violation::UnknownOpcode { op: 42, .. }),
        "{v:?}"
    );
    assert!(matches!(v[1], Violation::PayloadTooLarge { .. }), "{v:?}");
    assert!(matches!(v[2], Violation::DecodeError { .. }), "{v:?}");
    assert!(
        matches!(v[3], Violation::NotAuthenticated { op: 3, .. }),
        "{v:?}"
    );
    assert!(
        matches!(
            v[4],
            Violation::AlreadyAuthenticated {
                op: 2,
                shard_id: 0,
                ..
            }
        ),
        "{v:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn more_than_120_payloads_a_minute_closes_4008() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), false).await;
    c.login("test-token", 0, 1).await;
    // Identify was payload 1; 119 more are allowed.
    for _ in 0..119 {
        c.send(json!({"op": 3, "d": {"status": "online", "since": null, "activities": [], "afk": false}})).await;
    }
    assert!(c.next_within(Duration::from_millis(200)).await.is_none());
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    c.send(
        json!({"op": 3, "d": {"status": "idle", "since": null, "activities": [], "afk": false}}),
    )
    .await;
    assert_eq!(c.closed().await, Some(4008));
    assert!(matches!(
        sim.violations()[..],
        [Violation::SendRateExceeded {
            count: 121,
            shard_id: 0,
            ..
        }]
    ));
    // 4008 leaves the session resumable.
    assert!(sim.shard_status(0).unwrap().resumable);
    sim.shutdown().await;
}
