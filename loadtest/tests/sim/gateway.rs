//! Connecting, identifying and receiving dispatches.

use std::collections::HashMap;

use arrakis_loadtest::{EventKind, Fault, GatewayPort, SimConfig};

use crate::client::Client;
use crate::{config, start};

#[tokio::test]
async fn identify_gets_ready_with_a_resume_url_on_another_port() {
    let sim = start(SimConfig {
        shards: 2,
        ..config()
    })
    .await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    assert_eq!(c.hello().await, 20_000);
    c.identify("test-token", 1, 2, 513).await;
    let (ready, _) = c.until(0, Some("READY")).await;
    assert_eq!(ready["s"], 1);
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["shard"], serde_json::json!([1, 2]));
    assert_eq!(d["resume_gateway_url"], sim.resume_gateway_url());
    assert_ne!(sim.resume_gateway_url(), sim.gateway_url());
    let session_id = d["session_id"].as_str().unwrap();
    assert_eq!(session_id.len(), 32);
    for g in d["guilds"].as_array().unwrap() {
        let id: u64 = g["id"].as_str().unwrap().parse().unwrap();
        assert_eq!((id >> 22) % 2, 1, "guild {id} is not shard 1's");
        assert_eq!(g["unavailable"], true);
    }

    let ids = sim.identifies();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        (ids[0].shard_id, ids[0].num_shards, ids[0].intents),
        (1, 2, 513)
    );
    let status = sim.shard_status(1).unwrap();
    assert!(status.connected && status.ready && status.resumable);
    assert_eq!(status.session_id, session_id);
    assert_eq!(status.last_seq, 1);
    assert!(sim.shard_status(0).is_none());
    let conns = sim.connection_records();
    assert_eq!(conns[0].port, GatewayPort::Main);
    assert!(conns[0].zlib_stream);
    assert!(conns[0].path_and_query.contains("v=10"));
    let sent = sim.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].event, "READY");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

async fn events_arrive_byte_for_byte(zlib: bool) {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), zlib).await;
    c.login("test-token", 0, 1).await;
    let kinds = [
        EventKind::MessageCreate,
        EventKind::PresenceUpdate,
        EventKind::TypingStart,
        EventKind::GuildMemberAdd,
        EventKind::InteractionCreate,
        EventKind::GuildCreate { members: 500 },
        EventKind::Raw {
            name: "CUSTOM".into(),
            d: r#"{"guild_id":"1","x":"\"op\":1"}"#.into(),
        },
    ];
    let mut seqs = Vec::new();
    for _ in 0..5 {
        for kind in &kinds {
            seqs.push(sim.emit(0, kind.clone()).unwrap());
        }
    }
    let sent: HashMap<u64, _> = sim.sent().into_iter().map(|s| (s.seq, s)).collect();
    for seq in &seqs {
        let (v, raw) = c.payload().await;
        assert_eq!(v["s"], *seq);
        let expected = &sent[seq];
        assert_eq!(
            raw, expected.body,
            "seq {seq} differs from what sent() recorded"
        );
        assert_eq!(v["t"], expected.event.as_str());
        let guild = v["d"]["guild_id"].as_str().or(v["d"]["id"].as_str());
        assert_eq!(guild, expected.guild_id.as_deref());
    }
    assert_eq!(sim.shard_status(0).unwrap().last_seq, *seqs.last().unwrap());
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

#[tokio::test]
async fn events_arrive_byte_for_byte_compressed() {
    events_arrive_byte_for_byte(true).await;
}

#[tokio::test]
async fn events_arrive_byte_for_byte_uncompressed() {
    events_arrive_byte_for_byte(false).await;
}

#[tokio::test]
async fn split_messages_reassemble() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::SplitNext { parts: 3 });
    let seq = sim.emit(0, EventKind::GuildCreate { members: 50 }).unwrap();
    let before = c.messages;
    let (v, raw) = c.payload().await;
    assert_eq!(
        c.messages - before,
        3,
        "the dispatch should come in 3 messages"
    );
    assert_eq!(v["s"], seq);
    assert_eq!(raw, sim.sent().last().unwrap().body);
    // The stream goes on normally afterwards.
    let seq = sim.emit(0, EventKind::MessageCreate).unwrap();
    let before = c.messages;
    assert_eq!(c.payload().await.0["s"], seq);
    assert_eq!(c.messages - before, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn emit_without_a_session_returns_none() {
    let sim = start(config()).await;
    assert_eq!(sim.emit(0, EventKind::MessageCreate), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_acked_until_stop_acking() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    c.heartbeat(Some(1)).await;
    assert_eq!(c.payload().await.0["op"], 11);
    sim.inject(0, Fault::StopAcking);
    c.heartbeat(Some(1)).await;
    assert!(
        c.next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    let beats = sim.heartbeats();
    assert_eq!(beats.len(), 2);
    assert!(beats[0].first && !beats[1].first);
    assert_eq!(beats[1].d, Some(1));
    assert_eq!(beats[1].shard_id, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn requested_heartbeat_must_be_answered() {
    let sim = start(config()).await;
    let mut c = Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    sim.inject(0, Fault::RequestHeartbeat);
    assert_eq!(c.payload().await.0["op"], 1);
    c.heartbeat(Some(1)).await;
    assert_eq!(c.payload().await.0["op"], 11);
    // Unanswered this time.
    sim.inject(0, Fault::RequestHeartbeat);
    assert_eq!(c.payload().await.0["op"], 1);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert!(
        sim.violations().iter().any(|v| matches!(
            v,
            arrakis_loadtest::Violation::RequestedHeartbeatUnanswered { .. }
        )),
        "{:?}",
        sim.violations()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_wait_for_the_next_connection() {
    let sim = start(config()).await;
    sim.inject(0, Fault::RequestHeartbeat);
    let mut c = Client::connect(&sim.gateway_url(), false).await;
    c.login("test-token", 0, 1).await;
    assert_eq!(c.payload().await.0["op"], 1);
    sim.shutdown().await;
}
