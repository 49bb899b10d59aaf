//! Nothing is lost: crashes, graceful restarts, broker and Redis outages,
//! and several processes sharing one bot.
//!
//! Each test drives the real binary against the simulator and checks the
//! product promise: every dispatch Discord sent is in RabbitMQ afterwards,
//! the session was resumed (not re-identified) where Discord allows it,
//! and heartbeats stayed on time. Outages use a private RabbitMQ node or
//! a private redis-server, never the machine's shared ones.

mod support;

use std::time::Duration;

use arrakis_loadtest::sim::{EventKind, Fault, SimConfig, Simulator, Violation};
use lapin::types::AMQPValue;
use support::harness::{DELIVERY, Harness, fast_config};
use support::private::{RabbitNode, RedisServer};
use support::{wait_draining, wait_until};

fn report(label: &str, h: &Harness) {
    eprintln!(
        "[durability] {label}: sent {}, received {}, duplicates {}, identifies {}, resumes {}",
        h.sim.sent().len(),
        h.collector.len(),
        h.duplicates(),
        h.identifies(),
        h.sim.resumes().len()
    );
}

/// Waits until the checkpoint of shard 0 covers at least `seq`.
async fn checkpoint_reaches(h: &Harness, total: u32, seq: u64) {
    let key = format!("{}:gateway:checkpoint:{total}:0", h.prefix.prefix);
    wait_until(&format!("checkpoint at {seq}"), DELIVERY, || {
        h.prefix
            .hget(&key, "seq")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v >= seq)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_resumes_with_nothing_missing() {
    let mut h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    let load = h.sim.start_load(2_000);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Dispatches are in flight: some unconfirmed, some not yet checkpointed.
    h.ingestor.kill9().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.restart();
    wait_until("resume after restart", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    load.stop().await;
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(
        h.identifies(),
        1,
        "the restart resumed instead of identifying"
    );
    report("kill -9 under load", &h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_confirm_and_checkpoint_replays_only_duplicates() {
    // A slow checkpoint tick widens the window between confirm and save.
    let mut h = Harness::start(fast_config(1), &[("ARRAKIS_CHECKPOINT_MS", "3000")]).await;
    h.ready(0).await;
    h.emit_mix(0, 50);
    h.assert_all_delivered().await;
    checkpoint_reaches(&h, 1, 51).await;
    // Confirmed, but the next save is up to 3 s away.
    h.emit_mix(0, 100);
    h.assert_all_delivered().await;
    h.ingestor.kill9().await;
    h.emit_mix(0, 20);
    h.restart();
    wait_until("resume after restart", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
    assert!(
        h.duplicates() > 0,
        "the replay should have re-sent confirmed events"
    );
    report("kill -9 between confirm and checkpoint", &h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_resume_then_restart() {
    let mut h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    h.emit_mix(0, 50);
    h.assert_all_delivered().await;
    checkpoint_reaches(&h, 1, 1).await;
    h.sim.inject(0, Fault::DropSocket);
    h.emit_mix(0, 50);
    // Killed while it reconnects and resumes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.ingestor.kill9().await;
    h.emit_mix(0, 20);
    h.restart();
    wait_until("resumed by the new process", DELIVERY, || {
        h.sim.shard_status(0).is_some_and(|s| s.ready) && h.accepted_resumes_on_resume_url() >= 1
    })
    .await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1);
    report("kill -9 during resume", &h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_the_next_process_resumes() {
    let mut h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    let load = h.sim.start_load(1_000);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    h.ingestor.terminate();
    let code = h.ingestor.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "graceful stop exits 0");
    let closes = h.sim.client_closes();
    assert!(
        closes
            .iter()
            .all(|c| c.code.is_some_and(|code| code != 1000 && code != 1001)),
        "a rolling deploy must leave the session resumable: {closes:?}"
    );
    let started = tokio::time::Instant::now();
    h.restart();
    wait_until("resume after SIGTERM", DELIVERY, || {
        h.accepted_resumes_on_resume_url() == 1
    })
    .await;
    eprintln!("[durability] restart to resumed: {:?}", started.elapsed());
    load.stop().await;
    h.assert_all_delivered().await;
    h.assert_no_gaps();
    assert_eq!(h.identifies(), 1, "SIGTERM + restart must not identify");
    report("SIGTERM + restart", &h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_loses_nothing_and_heartbeats_stay_on_time() {
    let node = RabbitNode::start().await;
    let sim = Simulator::start(fast_config(1)).await.unwrap();
    let url = node.url();
    let h = Harness::start_with(sim, &url, &url, None, &[]).await;
    h.ready(0).await;
    let load = h.sim.start_load(5_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.stop_app();
    let mut saw_not_ready = false;
    for _ in 0..50 {
        if let Some((503, _)) = h.ingestor.get("/readyz").await {
            saw_not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_not_ready, "/readyz must report the broker outage");
    // A 30 s outage, as in a broker upgrade: the buffer absorbs it.
    tokio::time::sleep(Duration::from_secs(25)).await;
    node.start_app().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.stop().await;
    // The collector's own connection died with the broker: read again.
    let collector = support::Collector::start(&url).await;
    let expected = h.sim.sent();
    let ids = support::harness::message_ids(&expected);
    // The backlog the outage built (about 150,000 dispatches) drains at
    // whatever rate the broker manages on a loaded machine: wait while it
    // keeps going down.
    let drain = tokio::time::Instant::now();
    wait_draining(
        "every dispatch after the broker restart",
        Duration::from_secs(30),
        Duration::from_secs(300),
        || {
            // Delivered before the outage, or after it to the new consumer.
            let not_before: Vec<String> = h.collector.missing(&ids).into_iter().cloned().collect();
            collector.missing(&not_before).len()
        },
    )
    .await;
    eprintln!(
        "[durability] broker restart: backlog drained {:?} after the broker came back",
        drain.elapsed()
    );
    let late: Vec<Violation> = h
        .sim
        .violations()
        .into_iter()
        .filter(|v| {
            matches!(
                v,
                Violation::LateHeartbeat { .. }
                    | Violation::NoHeartbeat { .. }
                    | Violation::FirstHeartbeatLate { .. }
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "heartbeats late during the outage: {late:#?}"
    );
    let longest = h
        .sim
        .heartbeats()
        .iter()
        .filter(|b| !b.first)
        .map(|b| b.since_previous)
        .max()
        .unwrap_or_default();
    eprintln!(
        "[durability] broker restart: sent {}, longest heartbeat gap {longest:?} (interval 1 s), reconnects {}",
        expected.len(),
        h.sim.connections() - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_checkpoints_but_not_ingestion() {
    let mut redis = RedisServer::start().await;
    let h = Harness::start(fast_config(1), &[("REDIS_URL", &redis.url())]).await;
    h.ready(0).await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    redis.stop();
    h.emit_mix(0, 200);
    h.assert_all_delivered().await;
    let failures = || async {
        let (_, m) = h.ingestor.get("/metrics").await.unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("arrakis_checkpoint_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut failed = 0;
    for _ in 0..50 {
        failed = failures().await;
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failed > 0,
        "checkpoint failures are counted: {:?}",
        h.ingestor.get("/metrics").await
    );
    redis.restart().await;
    h.emit_mix(0, 20);
    h.assert_all_delivered().await;
    let last = h.sim.shard_status(0).unwrap().last_seq;
    // The empty Redis gets the current checkpoint on the next ticks.
    let key = format!("{}:gateway:checkpoint:1:0", h.prefix.prefix);
    let out = || {
        std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "HGET", &key, "seq"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    wait_until(
        "checkpoint caught up after Redis returned",
        DELIVERY,
        || out().is_some_and(|s| s >= last),
    )
    .await;
    h.assert_no_gaps();
    h.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_identify_buckets_through_redis() {
    let config = SimConfig {
        max_concurrency: 2,
        identify_spacing: Duration::from_secs(5),
        ..fast_config(8)
    };
    let mut h = Harness::start(config, &[("ARRAKIS_SHARDS", "0-3/8")]).await;
    // A second process, same Redis prefix, the other half of the shards.
    let second = support::Ingestor::start(
        &h.sim.api_base(),
        &h.collector_url(),
        &[
            ("ARRAKIS_SHARDS", "4-7/8"),
            ("ARRAKIS_REDIS_PREFIX", &h.prefix.prefix),
        ],
    );
    for shard in 0..8 {
        h.ready(shard).await;
    }
    let violations = h.sim.violations();
    assert!(
        !violations
            .iter()
            .any(|v| matches!(v, Violation::IdentifySpacing { .. })),
        "{violations:#?}"
    );
    assert_eq!(h.identifies(), 8);
    let mut identifies = h.sim.identifies();
    identifies.sort_by_key(|i| i.at);
    for bucket in 0..2 {
        let times: Vec<_> = identifies
            .iter()
            .filter(|i| i.shard_id % 2 == bucket)
            .map(|i| i.at)
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_secs(5),
                "bucket {bucket}: {times:?}"
            );
        }
    }
    for shard in 0..8 {
        h.emit_mix(shard, 5);
    }
    h.assert_all_delivered().await;
    drop(second);
    h.ingestor.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guild_create_says_startup_or_join() {
    let h = Harness::start(fast_config(1), &[]).await;
    h.ready(0).await;
    let ready = h
        .sim
        .sent()
        .into_iter()
        .find(|d| d.event == "READY")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    let listed = body["d"]["guilds"][0]["id"].as_str().unwrap().to_owned();
    let startup = format!(
        r#"{{"id":"{listed}","name":"listed","joined_at":"2021-01-01T00:00:00.000000+00:00","members":[],"channels":[]}}"#
    );
    h.sim
        .emit(
            0,
            EventKind::Raw {
                name: "GUILD_CREATE".into(),
                d: startup,
            },
        )
        .unwrap();
    // A guild on this shard (shard 0 of 1) joined just now.
    let joined_at = "2099-01-01T00:00:00.000000+00:00";
    let join = format!(
        r#"{{"name":"new","joined_at":"{joined_at}","id":"1180000000000000000","members":[]}}"#
    );
    h.sim
        .emit(
            0,
            EventKind::Raw {
                name: "GUILD_CREATE".into(),
                d: join,
            },
        )
        .unwrap();
    h.assert_all_delivered().await;
    let kinds: Vec<(Option<String>, String)> = h
        .collector
        .all()
        .into_iter()
        .filter(|r| r.kind == "GUILD_CREATE")
        .map(|r| {
            let kind = match r.headers.get("guild_create") {
                Some(AMQPValue::LongString(s)) => {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                other => panic!("guild_create header is {other:?}"),
            };
            (r.guild_id(), kind)
        })
        .collect();
    assert!(
        kinds.contains(&(Some(listed), "startup".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(Some("1180000000000000000".into()), "join".into())),
        "{kinds:?}"
    );
}
