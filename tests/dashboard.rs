//! The dead-letter dashboard (`/dlq` on the worker's HTTP listener)
//! through the real `arrakis work` process and a real RabbitMQ: off
//! without `ARRAKIS_ADMIN_SECRET`; the secret, the CSRF header; list,
//! inspect, replay and discard, with browsing leaving the queue as it
//! was; and, in headless Chromium, a real failure replayed after its fix.
//! The browser test needs `bash scripts/browser-deps.sh` once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use arrakis::queue::topology::{self, QueueType};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};

use support::sietch::{ADMIN, NAIB_ROLE, Sietch, address, settings, sub, tokens, wallet};
use support::worker::WorkerProcess;
use support::{HttpAnswer, RedisPrefix, SHARED_REDIS, Vhost, http_request};

const SECRET: &str = "dlq-test-secret-1";
/// `ops:dlq-test-secret-1` in base64.
const BASIC: &str = "Basic b3BzOmRscS10ZXN0LXNlY3JldC0x";
/// `ops:wrong` in base64.
const WRONG_BASIC: &str = "Basic b3BzOndyb25n";
const BEARER: &str = "Bearer dlq-test-secret-1";
const CSRF: (&str, &str) = ("X-Arrakis-Dashboard", "1");

/// The test's side of the broker: publishes dead letters as a worker
/// does, counts queues, reads a queue bound where replays go.
struct Broker {
    _conn: Connection,
    channel: Channel,
}

impl Broker {
    async fn open(url: &str) -> Self {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("AMQP");
        let channel = conn.create_channel().await.expect("channel");
        topology::declare(&channel, QueueType::Quorum)
            .await
            .expect("topology");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        Self {
            _conn: conn,
            channel,
        }
    }

    /// A dead letter as `Republish::dead` makes it; `routing_key` `None`
    /// leaves out `x-arrakis-routing-key`.
    async fn dead_letter(&self, message_id: &str, routing_key: Option<&str>, body: &str) {
        let mut h = FieldTable::default();
        h.insert("shard_id".into(), AMQPValue::LongInt(0));
        h.insert("seq".into(), AMQPValue::LongLongInt(7));
        h.insert("guild_id".into(), AMQPValue::LongString("4242".into()));
        h.insert(
            "x-arrakis-reason".into(),
            AMQPValue::LongString("gave up after 5 attempts: Postgres: away".into()),
        );
        h.insert("x-arrakis-attempts".into(), AMQPValue::LongInt(5));
        h.insert(
            "x-arrakis-queue".into(),
            AMQPValue::LongString("arrakis.events".into()),
        );
        h.insert(
            "x-arrakis-failed-at-ms".into(),
            AMQPValue::LongLongInt(1_700_000_000_000),
        );
        h.insert(
            "arrakis-retry-delay".into(),
            AMQPValue::LongString("60s".into()),
        );
        if let Some(key) = routing_key {
            h.insert(
                "x-arrakis-routing-key".into(),
                AMQPValue::LongString(key.into()),
            );
        }
        let confirm = self
            .channel
            .basic_publish(
                "arrakis.dead".into(),
                routing_key.unwrap_or("arrakis.events").into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_message_id(message_id.into())
                    .with_type("GUILD_MEMBER_ADD".into())
                    .with_content_type("application/json".into())
                    .with_timestamp(1_700_000_000)
                    .with_delivery_mode(2)
                    .with_headers(h),
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }

    /// Messages ready in `queue`.
    async fn count(&self, queue: &str) -> u32 {
        support::ready_count(&self.channel, queue)
            .await
            .expect("queue exists")
    }

    /// Waits (bounded) until `queue` holds `n` ready messages.
    async fn wait_count(&self, queue: &str, n: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.count(queue).await;
            if got == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} holds {got}, want {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A classic queue bound to `arrakis.gateway` with `binding`.
    async fn bind(&self, queue: &str, binding: &str) {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                queue.into(),
                "arrakis.gateway".into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    /// Takes one message from `queue`, waiting (bounded) for it.
    async fn take(&self, queue: &str) -> lapin::message::Delivery {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(got) = self
                .channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                return got.delivery;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing arrived in {queue}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A worker serving the dashboard only: Postgres is unreachable, so it
/// never consumes (and whatever lands in `arrakis.events` stays there).
async fn dashboard_worker(
    vhost: &Vhost,
    redis: &RedisPrefix,
    secret: Option<&str>,
) -> WorkerProcess {
    let url = vhost.url();
    let mut env = vec![
        ("AMQP_URL", url.as_str()),
        ("REDIS_URL", SHARED_REDIS),
        ("ARRAKIS_REDIS_PREFIX", redis.prefix.as_str()),
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
    ];
    if let Some(secret) = secret {
        env.push(("ARRAKIS_ADMIN_SECRET", secret));
    }
    WorkerProcess::start(&env).await
}

async fn call(w: &WorkerProcess, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    http_request(&w.http, method, path, headers)
        .await
        .unwrap_or_else(|| panic!("{method} {path}: no answer; log:\n{}", w.log()))
}

async fn list(w: &WorkerProcess) -> Value {
    let a = call(w, "GET", "/dlq/api/messages", &[("Authorization", BEARER)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

/// The key of the listed entry with `message_id`.
fn key_of(listing: &Value, message_id: &str) -> String {
    listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message_id"] == message_id)
        .unwrap_or_else(|| panic!("{message_id} not listed: {listing}"))["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// POSTs `action` on the entry `key` with the CSRF header.
async fn act(w: &WorkerProcess, key: &str, action: &str, auth: &str) -> HttpAnswer {
    let path = format!("/dlq/api/messages/{key}/{action}");
    call(w, "POST", &path, &[("Authorization", auth), CSRF]).await
}

/// Asserts the status of `a` and that its error says `text`.
fn expect(a: HttpAnswer, status: u16, text: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    if status != 200 {
        let error = a.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(text), "{error} does not say {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_secret_the_dashboard_is_off() {
    let vhost = Vhost::create();
    let redis = RedisPrefix::new();
    let w = dashboard_worker(&vhost, &redis, None).await;
    for path in ["/dlq", "/dlq/api/messages"] {
        let a = call(&w, "GET", path, &[("Authorization", BEARER)]).await;
        assert_eq!(a.status, 404, "{path}: {}", a.body);
    }
    let a = call(&w, "GET", "/healthz", &[]).await;
    assert_eq!(a.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_inspect_replay_and_discard_against_a_real_broker() {
    let vhost = Vhost::create();
    let redis = RedisPrefix::new();
    let broker = Broker::open(&vhost.url()).await;
    let w = dashboard_worker(&vhost, &redis, Some(SECRET)).await;

    // The secret, in either form; a POST also needs the CSRF header.
    for auth in [
        None,
        Some("Bearer nope"),
        Some(WRONG_BASIC),
        Some("Basic !!"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        for path in ["/dlq", "/dlq/api/messages"] {
            let a = call(&w, "GET", path, &headers).await;
            assert_eq!(a.status, 401, "{auth:?} {path}: {}", a.body);
            assert_eq!(
                a.header("www-authenticate"),
                Some(r#"Basic realm="arrakis dead letters", charset="UTF-8""#)
            );
            assert_eq!(a.header("cache-control"), Some("no-store"));
        }
    }
    let page = call(&w, "GET", "/dlq", &[("Authorization", BASIC)]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.body.contains(r#"id="entries""#));

    let empty = list(&w).await;
    assert_eq!(
        (empty["total"].clone(), empty["shown"].clone()),
        (json!(0), json!(0))
    );

    // Four dead letters: one to replay, one to discard, one whose routing
    // key nothing is bound to, one without a routing key at all.
    broker.bind("test.replayed", "*.GUILD_MEMBER_ADD").await;
    let body = r#"{"op":0,"t":"GUILD_MEMBER_ADD","s":7,"d":{"guild_id":"4242"}}"#;
    broker
        .dead_letter("s:1", Some("event.GUILD_MEMBER_ADD"), body)
        .await;
    broker
        .dead_letter("s:2", Some("event.GUILD_MEMBER_ADD"), "{}")
        .await;
    broker.dead_letter("s:3", Some("nowhere.THING"), "{}").await;
    broker.dead_letter("s:4", None, "{}").await;
    broker.wait_count("arrakis.dlq", 4).await;

    // Browsing twice lists the same entries with the same keys and leaves
    // every one of them in the queue.
    let first = list(&w).await;
    assert_eq!(
        (first["total"].clone(), first["shown"].clone()),
        (json!(4), json!(4))
    );
    broker.wait_count("arrakis.dlq", 4).await;
    let second = list(&w).await;
    let keys = |l: &Value| -> BTreeMap<String, String> {
        l["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["message_id"].as_str().unwrap().to_owned(),
                    e["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(keys(&first), keys(&second));
    broker.wait_count("arrakis.dlq", 4).await;
    let e = first["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message_id"] == "s:1")
        .unwrap();
    assert_eq!(e["event"], "GUILD_MEMBER_ADD");
    assert_eq!(e["routing_key"], "event.GUILD_MEMBER_ADD");
    assert_eq!(e["queue"], "arrakis.events");
    assert_eq!(e["reason"], "gave up after 5 attempts: Postgres: away");
    assert_eq!(e["attempts"], 5);
    assert_eq!(e["guild_id"], "4242");
    assert_eq!(e["failed_at_ms"], 1_700_000_000_000_i64);
    assert_eq!(e["body_bytes"], body.len());
    assert_eq!(e["replays"], 0);

    // Inspect shows the body and every header; the entry stays.
    let k1 = key_of(&second, "s:1");
    let d = call(
        &w,
        "GET",
        &format!("/dlq/api/messages/{k1}"),
        &[("Authorization", BASIC)],
    )
    .await;
    assert_eq!(d.status, 200, "{}", d.body);
    let d = d.json();
    assert_eq!(d["body"], body);
    assert_eq!(d["truncated"], false);
    assert_eq!(d["headers"]["seq"], 7);
    assert_eq!(
        d["headers"]["x-arrakis-routing-key"],
        "event.GUILD_MEMBER_ADD"
    );
    broker.wait_count("arrakis.dlq", 4).await;

    // An action without the CSRF header is refused and changes nothing.
    let replay1 = format!("/dlq/api/messages/{k1}/replay");
    let a = call(&w, "POST", &replay1, &[("Authorization", BEARER)]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(
        &w,
        "POST",
        &replay1,
        &[("Authorization", WRONG_BASIC), CSRF],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.body);
    broker.wait_count("arrakis.dlq", 4).await;

    // Replay: the copy goes to the original routing key without the
    // dead-letter bookkeeping, and the entry leaves the DLQ.
    let a = act(&w, &k1, "replay", BEARER).await;
    expect(a.clone(), 200, "");
    assert_eq!(a.json()["entry"]["message_id"], "s:1");
    let got = broker.take("test.replayed").await;
    assert_eq!(got.data, body.as_bytes());
    assert_eq!(got.routing_key.as_str(), "event.GUILD_MEMBER_ADD");
    let p = &got.properties;
    assert_eq!(p.message_id().as_ref().map(|m| m.as_str()), Some("s:1"));
    assert_eq!(
        p.kind().as_ref().map(|m| m.as_str()),
        Some("GUILD_MEMBER_ADD")
    );
    assert_eq!(*p.timestamp(), Some(1_700_000_000));
    assert_eq!(*p.delivery_mode(), Some(2));
    let h = p.headers().as_ref().unwrap().inner();
    assert_eq!(h.get("x-arrakis-replays"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(h.get("seq"), Some(&AMQPValue::LongLongInt(7)));
    for gone in [
        "x-arrakis-reason",
        "x-arrakis-attempts",
        "x-arrakis-failed-at-ms",
        "x-arrakis-queue",
        "arrakis-retry-delay",
        "x-delivery-count",
    ] {
        assert!(!h.contains_key(gone), "{gone} carried over: {h:?}");
    }
    // The origin work queue got it too (nothing consumes it here).
    broker.wait_count("arrakis.events", 1).await;
    broker.wait_count("arrakis.dlq", 3).await;
    expect(
        act(&w, &k1, "replay", BEARER).await,
        404,
        "another operator",
    );

    // Discard removes it; a second discard finds nothing.
    let k2 = key_of(&second, "s:2");
    expect(act(&w, &k2, "discard", BASIC).await, 200, "");
    broker.wait_count("arrakis.dlq", 2).await;
    expect(act(&w, &k2, "discard", BASIC).await, 404, "not in the DLQ");

    // Unroutable: returned by the broker, so the entry stays.
    let k3 = key_of(&second, "s:3");
    expect(
        act(&w, &k3, "replay", BEARER).await,
        409,
        "no queue is bound",
    );
    broker.wait_count("arrakis.dlq", 2).await;

    // No routing key: a replay is refused, a discard is not.
    let k4 = key_of(&second, "s:4");
    expect(
        act(&w, &k4, "replay", BEARER).await,
        409,
        "x-arrakis-routing-key",
    );
    broker.wait_count("arrakis.dlq", 2).await;
    expect(act(&w, &k4, "discard", BEARER).await, 200, "");
    broker.wait_count("arrakis.dlq", 1).await;
    let last = list(&w).await;
    assert_eq!(last["total"], 1);
    assert_eq!(last["entries"][0]["message_id"], "s:3");

    // Unknown and malformed keys, wrong methods.
    let a = call(
        &w,
        "GET",
        &format!("/dlq/api/messages/{}", "0".repeat(32)),
        &[("Authorization", BEARER)],
    )
    .await;
    assert_eq!(a.status, 404);
    let a = call(
        &w,
        "GET",
        "/dlq/api/messages/zz",
        &[("Authorization", BEARER)],
    )
    .await;
    assert_eq!(a.status, 404);
    let replay3 = format!("/dlq/api/messages/{k3}/replay");
    let a = call(&w, "GET", &replay3, &[("Authorization", BEARER)]).await;
    assert_eq!(a.status, 405);

    // Counted, audited, and the secret is nowhere.
    for (series, want) in [
        (
            r#"arrakis_dlq_actions_total{action="replay",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"arrakis_dlq_actions_total{action="replay",outcome="not_found"}"#,
            1.0,
        ),
        (
            r#"arrakis_dlq_actions_total{action="replay",outcome="failed"}"#,
            2.0,
        ),
        (
            r#"arrakis_dlq_actions_total{action="discard",outcome="ok"}"#,
            2.0,
        ),
        (
            r#"arrakis_dlq_actions_total{action="discard",outcome="not_found"}"#,
            1.0,
        ),
    ] {
        assert_eq!(w.metric(series).await, want, "{series}");
    }
    let log = w.log();
    assert!(
        log.contains("dlq_replay") && log.contains("dlq_discard"),
        "{log}"
    );
    assert!(log.contains("arrakis::audit"), "{log}");
    assert!(!log.contains(SECRET), "the secret is in the log");
    let (_, metrics) = w.health("/metrics").await.unwrap();
    assert!(!metrics.contains(SECRET));
}

// ---- The browser test: a real failure, its fix, and a replay in Chromium.

const GUILD: u64 = 910_000_000_000_000_077;
const MEMBER: u64 = 400_000_000_000_000_040;

/// What the browser script needs, or the command that installs it.
fn browser_ready() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists()
            && dir.join("node_modules/playwright-core").exists(),
        "the browser test needs Debian's chromium and tests/browser/node_modules: run `bash scripts/browser-deps.sh`"
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_real_failure_is_replayed_after_its_fix() {
    let dir = browser_ready();
    let t = Sietch::start(&[
        ("ARRAKIS_ADMIN_SECRET", SECRET),
        ("ARRAKIS_MAX_ATTEMPTS", "1"),
    ])
    .await;
    let broker = Broker::open(&t.vhost.url()).await;

    // A verified holder whose roles the sync granted.
    let community = t.community(GUILD, settings()).await;
    t.chain.mint(address(&wallet(2)), tokens(1000));
    t.sql(&format!(
        "INSERT INTO profiles (community_id, user_id, onboarded_at) VALUES ({community}, {MEMBER}, now()); \
         INSERT INTO wallets (community_id, address, user_id) VALUES ({community}, '{}', {MEMBER})",
        wallet(2)
    ))
    .await;
    t.sim.add_member(GUILD, MEMBER, &[]);
    let sync = t
        .interact(
            arrakis_loadtest::sim::InteractionSpec::command(
                "admin-eligibility",
                sub("sync", json!([])),
            )
            .guild(GUILD)
            .permissions(ADMIN),
        )
        .await;
    assert!(
        sync.content().starts_with("Synced at block"),
        "{}",
        sync.content()
    );
    assert_eq!(t.sim.member_roles(GUILD, MEMBER), Some(vec![NAIB_ROLE]));

    // The member leaves and comes back (Discord dropped their roles) while
    // Postgres refuses the worker's audit record: the join fails for good
    // (permission denied is not transient) and is dead-lettered.
    t.sim.add_member(GUILD, MEMBER, &[]);
    t.sql("REVOKE INSERT ON audit_log FROM arrakis_tenant")
        .await;
    let before = t.sim.role_changes().len();
    let message_id = t
        .publish(
            "GUILD_MEMBER_ADD",
            json!({ "guild_id": GUILD.to_string(), "user": { "id": MEMBER.to_string(), "username": "m" },
                    "roles": [], "joined_at": "2025-01-01T00:00:00.000000+00:00" }),
            Some(GUILD),
        )
        .await;
    broker.wait_count("arrakis.dlq", 1).await;
    assert_eq!(t.sim.role_changes().len(), before, "no role went out");

    // The fix; then an operator replays it from the page.
    t.sql("GRANT INSERT ON audit_log TO arrakis_tenant").await;
    let script = tokio::process::Command::new("node")
        .arg(dir.join("dlq.mjs"))
        .env("DLQ_URL", format!("http://{}/dlq", t.worker.http))
        .env("DLQ_SECRET", SECRET)
        .env("DLQ_MESSAGE_ID", &message_id)
        .env("DLQ_EVENT", "GUILD_MEMBER_ADD")
        .env("DLQ_REASON", "Postgres")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), script)
        .await
        .expect("the browser script finished within 120 s")
        .expect("node runs (bash scripts/browser-deps.sh installs what the test needs)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed ({}):\n{stdout}\n{stderr}\nworker log:\n{}",
        out.status,
        t.worker.log()
    );
    let seen: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("the browser saw: {seen}");
    assert_eq!(seen["unauthenticated_status"], 401, "{seen}");
    assert_eq!(seen["row"]["event"], "GUILD_MEMBER_ADD", "{seen}");
    assert!(
        seen["row"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Postgres"),
        "{seen}"
    );
    assert_eq!(seen["row"]["community"], GUILD.to_string(), "{seen}");
    assert_eq!(seen["inspected"]["t"], "GUILD_MEMBER_ADD", "{seen}");
    assert!(
        seen["after"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("0 in the queue"),
        "{seen}"
    );

    // The DLQ is empty and the replayed join had its effect.
    broker.wait_count("arrakis.dlq", 0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !t
        .sim
        .role_changes()
        .iter()
        .skip(before)
        .any(|c| c.user_id == MEMBER && c.role_id == NAIB_ROLE && c.added)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no role grant after the replay; log:\n{}",
            t.worker.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t.sim.member_roles(GUILD, MEMBER), Some(vec![NAIB_ROLE]));
    assert!(t.worker.log().contains("dlq_replay"));
    assert_eq!(
        t.worker
            .metric(r#"arrakis_dlq_actions_total{action="replay",outcome="ok"}"#)
            .await,
        1.0
    );
    t.finish().await;
}
