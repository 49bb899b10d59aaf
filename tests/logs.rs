//! The logs of a whole run — simulator → `arrakis ingest` → RabbitMQ →
//! `arrakis work` → `arrakis proxy` → simulator — at the most verbose
//! level our code logs at, in JSON: no secret in any line or metric, every
//! line is JSON, and one grep for an event's `message_id` finds it in all
//! three roles, with the worker's audit line for its effect.

mod support;

use std::time::Duration;

use arrakis_loadtest::sim::{InteractionSpec, SimConfig, Simulator};
use serde_json::Value;

use support::db::TestDb;
use support::rest::ProxyProcess;
use support::worker::WorkerProcess;
use support::{Ingestor, RedisPrefix, SHARED_REDIS, Vhost, unique};

/// Our crate at trace, dependencies at info (theirs are not under test,
/// and lapin's frame dumps would only slow the run).
const VERBOSE: &str = "info,arrakis=trace";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_no_secret_and_one_id_follows_an_event_end_to_end() {
    let bot_token = format!("MTA5.{}.bot-token-under-test", unique("tok"));
    let proxy_secret = unique("proxy-secret-under-test");
    let sim = Simulator::start(SimConfig {
        token: bot_token.clone(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let vhost = Vhost::create();
    let redis = RedisPrefix::new();
    let db = TestDb::create().await;
    let json = ("ARRAKIS_LOG_FORMAT", "json");
    let verbose = ("RUST_LOG", VERBOSE);

    let mut proxy = ProxyProcess::start(
        &sim.api_base(),
        SHARED_REDIS,
        &redis.prefix,
        &[
            ("DISCORD_TOKEN", bot_token.as_str()),
            ("ARRAKIS_PROXY_SECRET", proxy_secret.as_str()),
            json,
            verbose,
        ],
    )
    .await;
    let rest_url = format!("{}/api/v10", proxy.base);
    let amqp_url = vhost.url();
    let database_url = db.bouncer_url();
    let mut worker = WorkerProcess::start(&[
        ("AMQP_URL", amqp_url.as_str()),
        ("REDIS_URL", SHARED_REDIS),
        ("ARRAKIS_REDIS_PREFIX", redis.prefix.as_str()),
        ("DATABASE_URL", database_url.as_str()),
        ("ARRAKIS_REST_URL", rest_url.as_str()),
        ("ARRAKIS_PROXY_SECRET", proxy_secret.as_str()),
        json,
        verbose,
    ])
    .await;
    worker.wait_ready(Duration::from_secs(30)).await;
    let mut ingestor = Ingestor::start(
        &sim.api_base(),
        &amqp_url,
        &[
            ("DISCORD_TOKEN", bot_token.as_str()),
            ("ARRAKIS_REDIS_PREFIX", redis.prefix.as_str()),
            json,
            verbose,
        ],
    );

    // An interaction through the gateway, once the shard's session is up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let emitted = loop {
        if let Some(emitted) =
            sim.emit_interaction(0, InteractionSpec::command("stats", serde_json::json!([])))
        {
            break emitted;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shard never got a session; ingest log:\n{}",
            ingestor.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !sim
        .interaction_responses()
        .iter()
        .any(|r| r.interaction_id == emitted.id)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the interaction was never answered; worker log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let message_id = sim
        .sent()
        .into_iter()
        .find(|d| d.event == "INTERACTION_CREATE" && d.seq == emitted.seq)
        .map(|d| format!("{}:{}", d.session_id, d.seq))
        .expect("the simulator recorded the dispatch");

    let metrics = [
        ingestor.get("/metrics").await,
        proxy.health("/metrics").await,
        worker.health("/metrics").await,
    ];
    ingestor.terminate();
    proxy.terminate();
    worker.terminate();
    let _ = ingestor.wait_exit(Duration::from_secs(20)).await;
    worker.wait_exit(Duration::from_secs(20)).await;
    proxy.wait_exit(Duration::from_secs(20)).await;
    let logs = [
        ("ingest", ingestor.log()),
        ("proxy", proxy.log()),
        ("work", worker.log()),
    ];

    let secrets = [
        ("the bot token", bot_token.as_str()),
        ("the proxy secret", proxy_secret.as_str()),
        ("the interaction token", emitted.token.as_str()),
    ];
    for (role, log) in &logs {
        assert!(
            log.lines().count() >= 3,
            "{role} logged almost nothing:\n{log}"
        );
        for (what, secret) in secrets {
            assert!(!log.contains(secret), "{what} is in the {role} log:\n{log}");
        }
        for line in log.lines() {
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(parsed.is_ok(), "a {role} log line is not JSON: {line}");
        }
    }
    for (i, text) in metrics.iter().enumerate() {
        let (_, text) = text.as_ref().expect("every role serves /metrics");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        for (what, secret) in secrets {
            assert!(!text.contains(secret), "{what} is in metrics of role {i}");
        }
    }

    // One grep follows the event through every role.
    for (role, log) in &logs {
        assert!(
            log.contains(&message_id),
            "{message_id} is not in the {role} log:\n{log}"
        );
    }
    let worker_log = &logs[2].1;
    let audit = worker_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| {
            l["target"] == "arrakis::audit" && l["fields"]["effect"] == "interaction_response"
        })
        .unwrap_or_else(|| panic!("no audit line for the callback:\n{worker_log}"));
    assert_eq!(audit["fields"]["message_id"], message_id.as_str());
    assert_eq!(audit["span"]["message_id"], message_id.as_str());
    assert!(
        audit["fields"]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/:token/")),
        "{audit}"
    );
    let proxied = logs[1]
        .1
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message_id"] == message_id.as_str())
        .expect("the proxy logged the call with the id");
    assert_eq!(proxied["fields"]["message"], "proxied");
    assert!(
        proxied["fields"]["route"]
            .as_str()
            .is_some_and(|r| r.starts_with("POST /interactions/")),
        "{proxied}"
    );
    sim.shutdown().await;
}
