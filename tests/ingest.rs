//! The ingestor end to end: the `arrakis` binary against the Discord
//! simulator and a real RabbitMQ (one private vhost per test).
//!
//! Each test reads as the operator's story: start Discord (the simulator),
//! start `arrakis ingest`, do something to the connection, then check that
//! every dispatch Discord sent is in RabbitMQ byte for byte, with no gap in
//! the sequence, and that the shard resumed or re-identified as Discord's
//! rules say.

mod support;

use std::time::Duration;

use arrakis_loadtest::sim::{EventKind, Fault, SimConfig, Simulator, Violation};
use lapin::types::AMQPValue;
use support::harness::{DELIVERY, Harness, fast_config};
use support::{Ingestor, Vhost, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatch_lands_byte_for_byte_with_contract_headers() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.sim
        .emit(0, EventKind::GuildCreate { members: 200 })
        .unwrap();
    h.emit_mix(0, 200);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    h.assert_no_violations();

    let all = h.collector.all();
    for r in &all {
        assert_eq!(r.delivery_mode, 2, "persistent");
        assert_eq!(r.content_type, "application/json");
        assert!(r.timestamp.is_some());
        assert!(matches!(
            r.headers.get("shard_count"),
            Some(AMQPValue::LongInt(1))
        ));
        assert!(
            matches!(r.headers.get("received_at_us"), Some(AMQPValue::LongLongInt(us)) if *us > 1_600_000_000_000_000)
        );
        let (class, queue) = match r.kind.as_str() {
            "INTERACTION_CREATE" => ("interaction", "arrakis.interactions"),
            "PRESENCE_UPDATE" | "TYPING_START" => ("bulk", "arrakis.bulk"),
            _ => ("event", "arrakis.events"),
        };
        assert_eq!(r.routing_key, format!("{class}.{}", r.kind));
        assert_eq!(r.queue, queue);
    }
    assert!(
        all.iter().any(|r| r.kind == "READY"),
        "READY is published too"
    );
    let guild_create = all.iter().find(|r| r.kind == "GUILD_CREATE").unwrap();
    assert!(guild_create.body.len() > 100_000, "realistic GUILD_CREATE");
    assert!(guild_create.guild_id().is_some());
    assert_eq!(h.identifies(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_drop_resumes_on_resume_url_without_gap() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 50);
    h.sim.inject(0, Fault::DropSocket);
    // Emitted while the shard is away: Discord replays them on resume.
    h.emit_mix(0, 50);
    wait_until("resume", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.emit_mix(0, 50);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1, "resumed, not re-identified");
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_connection_is_closed_resumably_and_resumed() {
    let config = SimConfig {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_grace: Duration::from_millis(400),
        ..fast_config(1)
    };
    let h = Harness::start(config, &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 20);
    h.sim.inject(0, Fault::StopAcking);
    wait_until("resume after zombie", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    let closes = h.sim.client_closes();
    assert!(
        closes
            .iter()
            .any(|c| c.code.is_some_and(|code| code != 1000 && code != 1001)),
        "zombie close must not end the session: {closes:?}"
    );
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_opcode_resumes() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 20);
    h.sim.inject(0, Fault::Reconnect);
    h.emit_mix(0, 20);
    wait_until("resume after op 7", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_session_resumable_resumes() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 20);
    h.sim.inject(0, Fault::InvalidSession { resumable: true });
    wait_until("resume after op 9 true", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_session_waits_then_identifies_a_new_session() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    let first = h.sim.shard_status(0).unwrap().session_id;
    h.sim.inject(0, Fault::InvalidSession { resumable: false });
    wait_until("second identify", DELIVERY, || h.identifies() == 2).await;
    let identifies = h.sim.identifies();
    let gap = identifies[1].at - identifies[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "identified again after only {gap:?}"
    );
    h.ready(0).await;
    assert_ne!(h.sim.shard_status(0).unwrap().session_id, first);
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert!(
        h.sim.resumes().is_empty(),
        "an invalidated session must not be resumed"
    );
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_resume_or_identify_as_documented() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    // 4000: resumable.
    h.sim.inject(0, Fault::Close(4000));
    wait_until("resume after 4000", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.ready(0).await;
    h.emit_mix(0, 10);
    h.assert_all_delivered().await;
    // 4007 (invalid seq) and 4009 (session timed out): new session.
    h.sim.inject(0, Fault::Close(4007));
    wait_until("identify after 4007", DELIVERY, || h.identifies() == 2).await;
    h.ready(0).await;
    h.sim.inject(0, Fault::Close(4009));
    wait_until("identify after 4009", DELIVERY, || h.identifies() == 3).await;
    h.ready(0).await;
    h.emit_mix(0, 10);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.accepted_resumes_on_resume_url(), 1);
    let resumes = h.sim.resumes();
    assert!(
        resumes.iter().all(|r| r.accepted),
        "tried to resume a session Discord had ended: {resumes:#?}"
    );
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_close_code_stops_without_a_reconnect_loop() {
    for code in [4004u16, 4014] {
        let mut h = Harness::start(fast_config(1), &[]).await;
        h.ready(0).await;
        h.sim.inject(0, Fault::Close(code));
        let exit = h.ingestor.wait_exit(Duration::from_secs(15)).await;
        assert!(
            exit.is_some_and(|c| c != 0),
            "with no shard left the process exits non-zero, got {exit:?}"
        );
        assert_eq!(
            h.sim.connections(),
            1,
            "{code}: reconnected after a fatal code"
        );
        assert_eq!(h.identifies(), 1);
        let log = h.ingestor.log();
        assert!(
            log.contains(&code.to_string()),
            "log names the close code: {log}"
        );
    }
}

/// Injects a malformed frame and checks it ends in a resume with nothing
/// lost and no crash.
async fn malformed_frame_resumes(fault: Fault) {
    let h = Harness::start(fast_config(1), &[("ARRAKIS_MAX_PAYLOAD", "1MiB")]).await;
    h.ready(0).await;
    h.emit_mix(0, 10);
    let truncated = matches!(fault, Fault::Truncated);
    h.sim.inject(0, fault);
    if truncated {
        // The truncated dispatch is the next one emitted.
        h.emit_mix(0, 1);
    }
    wait_until("resume after the bad frame", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.ready(0).await;
    h.emit_mix(0, 10);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
    assert!(
        h.ingestor.get("/healthz").await.is_some(),
        "the process is still up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_zlib_ends_in_a_resume() {
    malformed_frame_resumes(Fault::CorruptZlib).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_ends_in_a_resume() {
    malformed_frame_resumes(Fault::InvalidJson).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_ends_in_a_resume() {
    malformed_frame_resumes(Fault::Oversized { bytes: 2 << 20 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_ends_in_a_resume_that_replays_it() {
    malformed_frame_resumes(Fault::Truncated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_split_across_frames_is_reassembled() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.sim.inject(0, Fault::SplitNext { parts: 5 });
    h.sim
        .emit(0, EventKind::GuildCreate { members: 50 })
        .unwrap();
    h.sim.inject(0, Fault::SplitNext { parts: 2 });
    h.emit_mix(0, 10);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.sim.connections(), 1, "no reconnect needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_heartbeat_request_is_answered() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    let before = h.sim.heartbeats().len();
    h.sim.inject(0, Fault::RequestHeartbeat);
    wait_until("heartbeat reply", Duration::from_secs(5), || {
        h.sim.heartbeats().len() > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_jittered_and_on_time() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let beats = h.sim.heartbeats();
    assert!(beats.len() >= 4, "{beats:?}");
    assert!(
        beats.iter().skip(1).all(|b| b.d.is_some()),
        "heartbeats carry the last seq"
    );
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_shards_one_process_respect_identify_buckets() {
    let config = SimConfig {
        max_concurrency: 2,
        identify_spacing: Duration::from_secs(5),
        ..fast_config(4)
    };
    let h = Harness::start(config, &[("ARRAKIS_SHARDS", "0-3/4")]).await;
    for shard in 0..4 {
        h.ready(shard).await;
    }
    for shard in 0..4 {
        h.emit_mix(shard, 10);
    }
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 4);
    let violations = h.sim.violations();
    assert!(
        !violations
            .iter()
            .any(|v| matches!(v, Violation::IdentifySpacing { .. })),
        "{violations:#?}"
    );
    h.assert_no_violations();
    let (status, body) = h.ingestor.get("/readyz").await.unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_broker_pauses_reading_but_not_heartbeats() {
    let vhost = Vhost::create();
    let proxy = support::proxy::TcpProxy::start("127.0.0.1:5672").await;
    let sim = Simulator::start(fast_config(1)).await.unwrap();
    let (via_proxy, direct) = (vhost.url_via(&proxy.addr), vhost.url());
    let h = Harness::start_with(
        sim,
        &via_proxy,
        &direct,
        Some(vhost),
        &[("ARRAKIS_PUBLISH_BUFFER", "64KiB")],
    )
    .await;
    h.ready(0).await;
    h.emit_mix(0, 10);
    h.assert_all_delivered().await;

    proxy.pause(true);
    // Far more than 64 KiB of events while the broker is stalled.
    for _ in 0..20 {
        h.sim
            .emit(0, EventKind::GuildCreate { members: 20 })
            .unwrap();
        h.emit_mix(0, 50);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, metrics) = h.ingestor.get("/metrics").await.unwrap();
    assert!(
        metrics.contains("arrakis_read_pauses_total")
            && !metrics.contains("arrakis_read_pauses_total 0"),
        "the shard paused reading: {metrics}"
    );
    proxy.pause(false);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(
        h.sim.connections(),
        1,
        "the gateway connection survived the stall"
    );
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_readiness_and_metrics() {
    let h = Harness::start(fast_config(1), &[]).await;
    let (status, _) = h.ingestor.get("/healthz").await.unwrap();
    assert_eq!(status, 200);
    h.ready(0).await;
    let mut ready = None;
    for _ in 0..100 {
        ready = h.ingestor.get("/readyz").await;
        if ready.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready.unwrap().0, 200);
    h.emit_mix(0, 25);
    h.assert_all_delivered().await;
    let (status, metrics) = h.ingestor.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    for name in [
        r#"arrakis_gateway_events_total{event="MESSAGE_CREATE"} 5"#,
        r#"arrakis_shards{state="ready"} 1"#,
        "arrakis_heartbeat_rtt_seconds_bucket",
        "arrakis_confirm_latency_seconds_count",
        "arrakis_publish_buffer_depth",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert!(!metrics.contains("sim-token"));
    let mut beats = 0;
    for _ in 0..50 {
        let (_, m) = h.ingestor.get("/metrics").await.unwrap();
        beats = m
            .lines()
            .find_map(|l| l.strip_prefix("arrakis_heartbeat_rtt_seconds_count "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if beats > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(beats > 0, "heartbeat round trips are measured");
    assert!(
        !h.ingestor.log().contains("sim-token"),
        "token leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_named_and_not_ready() {
    let sim = Simulator::start(fast_config(1)).await.unwrap();
    let port = support::free_port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let ingestor = Ingestor::start(&sim.api_base(), &url, &[]);
    let expected = format!("cannot reach RabbitMQ at amqp://127.0.0.1:{port}");
    wait_until("error naming the broker", DELIVERY, || {
        ingestor.log().contains(&expected)
    })
    .await;
    let (status, body) = ingestor.get("/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("RabbitMQ"), "{body}");
    assert!(
        !ingestor.log().contains("guest:guest"),
        "credentials in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_names_the_variable() {
    for (var, value) in [
        ("ARRAKIS_SHARDS", "8-2/4"),
        ("ARRAKIS_INTENTS", "lots"),
        ("ARRAKIS_HTTP_LISTEN", "nowhere"),
        ("ARRAKIS_QUEUE_TYPE", "fast"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_arrakis"))
            .arg("ingest")
            .env_clear()
            .env("DISCORD_TOKEN", "x")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arrakis"))
        .arg("ingest")
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DISCORD_TOKEN"));
}
