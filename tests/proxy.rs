//! The REST proxy end to end: `arrakis proxy` replicas (the real binary)
//! between concurrent clients and the Discord simulator, sharing limits
//! through a real Redis (a unique key prefix per test, deleted at the end;
//! outage tests run a private `redis-server` they can kill).
//!
//! Each test is an operator's story: start Discord, start the replicas,
//! send what workers send, break something, then check what Discord saw —
//! no 429 of scope user or global, the global window never exceeded,
//! pauses honoured — and that every caller got an answer.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrakis_loadtest::sim::{RestFault, RestSimConfig};
use hyper::{Method, StatusCode};
use support::SHARED_REDIS;
use support::rest::{Rig, assert_answered, max_in_any_second, percentile, scope_429s};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_400_across_two_replicas_stays_within_every_limit() {
    let rig = Arc::new(
        Rig::start(
            RestSimConfig {
                latency: Duration::from_millis(10),
                ..RestSimConfig::default()
            },
            2,
            SHARED_REDIS,
            &[],
        )
        .await,
    );
    // 200 at one 5-per-5 s bucket on 4 channels, 200 on other routes.
    let mut work = Vec::new();
    for i in 0..400u64 {
        let item = match i % 10 {
            0..=4 => (
                Method::POST,
                format!("/channels/{}/messages", 100 + i % 4),
                r#"{"content":"hi"}"#,
            ),
            5 | 6 => (Method::GET, format!("/channels/{}", 200 + i % 4), ""),
            7 => (Method::GET, format!("/guilds/{}", 300 + i % 2), ""),
            _ => (Method::GET, format!("/channels/{}/pins", 400 + i % 8), ""),
        };
        work.push(item);
    }
    let work = Arc::new(work);
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut clients = Vec::new();
    // 20 clients, each firing its 20 requests at once (deadline 8 s).
    for client in 0..20usize {
        let (rig, work, results) = (rig.clone(), work.clone(), results.clone());
        clients.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (client..work.len()).step_by(20) {
                let (rig, work, results) = (rig.clone(), work.clone(), results.clone());
                mine.push(tokio::spawn(async move {
                    let (method, path, body) = &work[i];
                    let answer = rig.call(i, method.clone(), path, 8_000, body).await;
                    results
                        .lock()
                        .unwrap()
                        .push((path.clone(), answer, Instant::now()));
                }));
            }
            for m in mine {
                m.await.unwrap();
            }
        }));
    }
    for c in clients {
        tokio::time::timeout(Duration::from_secs(90), c)
            .await
            .expect("every client finishes: no hang")
            .unwrap();
    }
    let results = results.lock().unwrap().clone();
    assert_eq!(results.len(), 400);
    for (path, answer, _) in &results {
        assert_answered(answer, path);
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(scope_429s(&rig.sim, "user"), 0, "{stats:?}");
    assert_eq!(scope_429s(&rig.sim, "global"), 0, "{stats:?}");
    assert!(stats.bucket_overage.is_empty(), "{stats:?}");
    assert!(stats.max_global_window <= 50, "{stats:?}");

    // Figures: utilisation of the 5-per-5 s buckets, waits.
    let arrivals = rig.sim.rest_arrivals();
    let mut sent = 0u64;
    let mut allowed = 0u64;
    for channel in 100..104u64 {
        let major = channel.to_string();
        let times: Vec<Instant> = arrivals
            .iter()
            .filter(|a| a.route == "/channels/{}/messages" && a.major == major && a.status == 200)
            .map(|a| a.at)
            .collect();
        let first = *times.iter().min().unwrap();
        let end = results
            .iter()
            .filter(|(p, _, _)| *p == format!("/channels/{channel}/messages"))
            .map(|(_, _, at)| *at)
            .max()
            .unwrap();
        let windows = (end.duration_since(first).as_secs_f64() / 5.0)
            .ceil()
            .max(1.0) as u64;
        sent += times.len() as u64;
        allowed += 5 * windows;
    }
    let ok_waits: Vec<Duration> = results
        .iter()
        .filter(|(_, a, _)| a.status.is_success())
        .map(|(_, a, _)| a.elapsed)
        .collect();
    let rejected: Vec<Duration> = results
        .iter()
        .filter(|(_, a, _)| !a.status.is_success())
        .map(|(_, a, _)| a.elapsed)
        .collect();
    eprintln!(
        "burst: {} answered in {:.1} s; 2xx {} (p50 {:?}, p99 {:?}); 503 {} (p99 {:?}); \
         429s user {} global {}; max global window {}/50; 5-per-5 s buckets: sent {sent} of {allowed} allowed ({:.0} %)",
        results.len(),
        started.elapsed().as_secs_f64(),
        ok_waits.len(),
        percentile(&ok_waits, 50.0),
        percentile(&ok_waits, 99.0),
        rejected.len(),
        percentile(&rejected, 99.0),
        scope_429s(&rig.sim, "user"),
        scope_429s(&rig.sim, "global"),
        stats.max_global_window,
        100.0 * sent as f64 / allowed as f64,
    );
    assert!(sent <= allowed);
    assert!(
        sent * 10 >= allowed * 8,
        "utilisation under 80 %: {sent}/{allowed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_and_shared_429s_pause_every_replica() {
    let rig = Arc::new(Rig::start(RestSimConfig::default(), 2, SHARED_REDIS, &[]).await);
    // Traffic on many channels from both replicas; Discord answers one
    // request with a global 429 of 1 s.
    rig.sim.inject_rest(RestFault::Global429 {
        retry_after: Duration::from_secs(1),
    });
    let mut tasks = Vec::new();
    for client in 0..8u64 {
        let rig = rig.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..6u64 {
                let path = format!("/channels/{}", 1_000 + client * 10 + i);
                answers.push(
                    rig.call((client + i) as usize, Method::GET, &path, 5_000, "")
                        .await,
                );
            }
            answers
        }));
    }
    for t in tasks {
        for a in t.await.unwrap() {
            assert_eq!(a.status, StatusCode::OK, "retried after the 429: {a:?}");
        }
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(stats.global_block_violations, 0, "{stats:?}");
    assert!(scope_429s(&rig.sim, "global") >= 1);
    // Everything counted during the pause came from requests already in
    // flight when the 429 went out (at most one per client).
    assert!(scope_429s(&rig.sim, "global") <= 8, "{stats:?}");

    // A shared 429 on channel 777: that channel pauses on both replicas.
    rig.sim.inject_rest(RestFault::Shared429 {
        path: "/channels/777".into(),
        retry_after: Duration::from_millis(1_500),
    });
    let first = rig.call(0, Method::GET, "/channels/777", 5_000, "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.elapsed >= Duration::from_millis(1_400),
        "{:?}",
        first.elapsed
    );
    let before = rig.sim.rest_stats().shared_block_violations;
    let mut tasks = Vec::new();
    rig.sim.inject_rest(RestFault::Shared429 {
        path: "/channels/778".into(),
        retry_after: Duration::from_millis(1_500),
    });
    for i in 0..6usize {
        let rig = rig.clone();
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/channels/778"
            } else {
                "/channels/778/messages"
            };
            rig.call(i, Method::GET, path, 5_000, "").await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, StatusCode::OK);
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(stats.shared_block_violations, before, "{stats:?}");
    assert_eq!(stats.shared_block_violations, 0, "{stats:?}");
    // Shared 429s are not invalid requests.
    assert_eq!(stats.invalid, scope_429s(&rig.sim, "global"), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_callbacks_do_not_wait_behind_a_saturated_global_limit() {
    let rig = Arc::new(
        Rig::start(
            RestSimConfig {
                global_limit: 10,
                ..RestSimConfig::default()
            },
            2,
            SHARED_REDIS,
            &[("ARRAKIS_GLOBAL_LIMIT", "10")],
        )
        .await,
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut background = Vec::new();
    for client in 0..12u64 {
        let (rig, stop) = (rig.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/channels/{}", 5_000 + client * 1_000 + i);
                let a = rig.call(i as usize, Method::GET, &path, 10_000, "").await;
                assert_answered(&a, &path);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut waits = Vec::new();
    let mut interactions = Vec::new();
    for i in 0..10usize {
        let interaction = rig.sim.create_interaction();
        let path = format!(
            "/interactions/{}/{}/callback",
            interaction.id, interaction.token
        );
        let a = rig
            .http
            .send(Method::POST, &rig.url(i, &path), &[], r#"{"type":5}"#)
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
        waits.push(a.elapsed);
        interactions.push(interaction);
    }
    // A follow-up on the token, still during the saturation.
    let first = &interactions[0];
    let followup = rig
        .call(
            1,
            Method::POST,
            &format!("/webhooks/{}/{}", first.application_id, first.token),
            3_000,
            r#"{"content":"done"}"#,
        )
        .await;
    assert_eq!(followup.status, StatusCode::OK, "{followup:?}");
    waits.push(followup.elapsed);
    // A second callback is Discord's 40060, passed back as is, sent once.
    let again = rig
        .http
        .send(
            Method::POST,
            &rig.url(
                0,
                &format!("/interactions/{}/{}/callback", first.id, first.token),
            ),
            &[],
            r#"{"type":5}"#,
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.json()["code"], 40_060);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in background {
        tokio::time::timeout(Duration::from_secs(30), b)
            .await
            .unwrap()
            .unwrap();
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(stats.duplicate_callbacks, 1, "{stats:?}");
    assert!(stats.max_global_window <= 10, "{stats:?}");
    assert_eq!(scope_429s(&rig.sim, "global"), 0, "{stats:?}");
    let callbacks: Vec<_> = rig
        .sim
        .rest_arrivals()
        .into_iter()
        .filter(|a| a.route.starts_with("/interactions/") || a.route.starts_with("/webhooks/"))
        .collect();
    assert_eq!(callbacks.len(), 12);
    assert!(
        callbacks.iter().all(|a| !a.bot_auth && !a.counted),
        "{callbacks:?}"
    );
    let p99 = percentile(&waits, 99.0);
    eprintln!(
        "interactions under a saturated global limit: p50 {:?}, p99 {p99:?}",
        percentile(&waits, 50.0)
    );
    assert!(p99 < Duration::from_millis(300), "{waits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_a_permit_does_not_stick_the_bucket() {
    let mut rig = Rig::start(
        RestSimConfig {
            latency: Duration::from_millis(1_500),
            ..RestSimConfig::default()
        },
        2,
        SHARED_REDIS,
        &[],
    )
    .await;
    // Replica 0 takes the discovery permit of a cold bucket and dies with
    // the request in flight (deadline 2 s: its lease lasts 3 s).
    let url = rig.url(0, "/channels/9/messages");
    let http = rig.http.clone();
    let doomed = tokio::spawn(async move {
        http.try_send(
            Method::POST,
            &url,
            &[("x-arrakis-deadline-ms", "2000")],
            r#"{"content":"a"}"#,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.proxies[0].kill().await;
    assert!(!rig.proxies[0].running());
    let _ = doomed.await;
    let started = Instant::now();
    let next = rig
        .call(
            1,
            Method::POST,
            "/channels/9/messages",
            10_000,
            r#"{"content":"b"}"#,
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{next:?}");
    let took = started.elapsed();
    eprintln!("after a replica died holding the permit, the next request went in {took:?}");
    assert!(took < Duration::from_secs(6), "bucket stuck for {took:?}");
    assert_eq!(scope_429s(&rig.sim, "user"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_to_local_limits_and_recovers() {
    let mut redis = support::private::RedisServer::start().await;
    let rig = Arc::new(Rig::start(RestSimConfig::default(), 2, &redis.url(), &[]).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for client in 0..10u64 {
        let (rig, stop, answers) = (rig.clone(), stop.clone(), answers.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/channels/{}", 9_000 + (client * 7 + i) % 60);
                let a = rig
                    .call((client + i) as usize, Method::GET, &path, 2_000, "")
                    .await;
                answers.lock().unwrap().push((Instant::now(), a));
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cut = Instant::now();
    redis.stop();
    for p in &rig.proxies {
        p.wait_ready(503, Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let back = Instant::now();
    redis.restart().await;
    for p in &rig.proxies {
        p.wait_ready(200, Duration::from_secs(15)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        tokio::time::timeout(Duration::from_secs(30), l)
            .await
            .unwrap()
            .unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    for (_, a) in &answers {
        assert_answered(a, "outage load");
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(scope_429s(&rig.sim, "user"), 0, "{stats:?}");
    assert_eq!(scope_429s(&rig.sim, "global"), 0, "{stats:?}");
    assert!(stats.max_global_window <= 50, "{stats:?}");
    // On local limits each replica sends at most ⌊50 × 0.5 ÷ 2⌋ = 12/s.
    let during: Vec<Instant> = rig
        .sim
        .rest_arrivals()
        .iter()
        .filter(|a| a.counted && a.at > cut + Duration::from_millis(500) && a.at < back)
        .map(|a| a.at)
        .collect();
    let outage_peak = max_in_any_second(&during);
    let served_during = during.len();
    let after_ok = answers
        .iter()
        .filter(|(at, a)| *at > back && a.status.is_success())
        .count();
    eprintln!(
        "redis outage: {served_during} requests sent on local limits (peak {outage_peak} in 1 s, cap 24); \
         {after_ok} answered 2xx after recovery; max global window {}/50",
        stats.max_global_window
    );
    assert!(outage_peak <= 24, "{outage_peak}");
    assert!(served_during > 0, "local limits must not stop everything");
    assert!(after_ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_pass_through_and_the_secret_is_required() {
    let rig = Rig::start(
        RestSimConfig::default(),
        1,
        SHARED_REDIS,
        &[("ARRAKIS_PROXY_SECRET", "s3cret-value")],
    )
    .await;
    let url = rig.url(0, "/channels/5");
    let none = rig.http.send(Method::GET, &url, &[], "").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.json()["error"].is_string());
    let wrong = rig
        .http
        .send(Method::GET, &url, &[("x-arrakis-proxy-secret", "nope")], "")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = rig
        .http
        .send(
            Method::GET,
            &url,
            &[
                ("x-arrakis-proxy-secret", "s3cret-value"),
                ("authorization", "Bot stolen"),
            ],
            "",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let direct = rig
        .http
        .send(
            Method::GET,
            &format!("{}/channels/5", rig.sim.api_base()),
            &[("authorization", "Bot sim-token")],
            "",
        )
        .await;
    assert_eq!(ok.body, direct.body);
    assert_eq!(ok.headers["x-ratelimit-bucket"], "channel-get");
    assert_eq!(ok.headers["x-ratelimit-limit"], "10");
    assert_eq!(ok.headers["via"], "1.1 google");
    let bearer = rig
        .http
        .send(
            Method::GET,
            &url,
            &[("authorization", "Bearer s3cret-value")],
            "",
        )
        .await;
    assert_eq!(bearer.status, StatusCode::OK);
    // The proxy sent the bot token (not the caller's, not the secret).
    let arrivals = rig.sim.rest_arrivals();
    assert!(arrivals.iter().all(|a| a.bot_auth), "{arrivals:?}");
    assert_eq!(rig.sim.rest_stats().unauthorized, 0);
    // Discord's errors come back as they are.
    let missing = rig
        .http
        .send(
            Method::GET,
            &rig.url(0, "/nope"),
            &[("x-arrakis-proxy-secret", "s3cret-value")],
            "",
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json(),
        serde_json::json!({"message": "404: Not Found", "code": 0})
    );
    let outside = rig
        .http
        .send(
            Method::GET,
            &format!("{}/other", rig.proxies[0].base),
            &[("x-arrakis-proxy-secret", "s3cret-value")],
            "",
        )
        .await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert!(outside.json()["error"].is_string());
    // Neither the token nor the secret is ever logged.
    let log = rig.proxies[0].log();
    assert!(
        !log.contains("sim-token") && !log.contains("s3cret-value"),
        "{log}"
    );
    let metrics = rig.proxies[0].health("/metrics").await.unwrap().1;
    assert!(
        metrics.contains("arrakis_proxy_requests_total"),
        "{metrics}"
    );
    assert!(!metrics.contains("sim-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_go_in_time_get_503_at_once() {
    let rig = Rig::start(RestSimConfig::default(), 1, SHARED_REDIS, &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let a = rig
            .call(
                0,
                Method::POST,
                "/channels/60/messages",
                1_000,
                r#"{"content":"x"}"#,
            )
            .await;
        assert_answered(&a, "post");
        statuses.push(a);
    }
    assert!(statuses[..5].iter().all(|a| a.status == StatusCode::OK));
    let last = &statuses[5];
    assert_eq!(last.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        last.json()["retry_after"].as_f64().unwrap() > 3.0,
        "{:?}",
        last.json()
    );
    assert!(last.headers.contains_key("retry-after"));
    assert!(
        last.elapsed < Duration::from_millis(500),
        "{:?}",
        last.elapsed
    );
    assert_eq!(scope_429s(&rig.sim, "user"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_after_a_5xx() {
    let rig = Rig::start(RestSimConfig::default(), 1, SHARED_REDIS, &[]).await;
    rig.sim.inject_rest(RestFault::Status {
        path: "/channels/55".into(),
        status: 503,
        count: 1,
    });
    let get = rig.call(0, Method::GET, "/channels/55", 5_000, "").await;
    assert_eq!(get.status, StatusCode::OK, "GET retried: {get:?}");
    rig.sim.inject_rest(RestFault::Status {
        path: "/channels/56/messages".into(),
        status: 502,
        count: 1,
    });
    let post = rig
        .call(
            0,
            Method::POST,
            "/channels/56/messages",
            5_000,
            r#"{"content":"once"}"#,
        )
        .await;
    assert_eq!(
        post.status,
        StatusCode::BAD_GATEWAY,
        "POST passed back: {post:?}"
    );
    let posts = rig
        .sim
        .rest_arrivals()
        .iter()
        .filter(|a| a.route == "/channels/{}/messages" && a.major == "56")
        .count();
    assert_eq!(posts, 1, "a POST is never re-sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_delete_buckets_cause_no_429() {
    let rig = Arc::new(Rig::start(RestSimConfig::default(), 2, SHARED_REDIS, &[]).await);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Messages a minute old: the "normal" delete bucket, 3 per second,
    // whose X-RateLimit-Bucket alternates between two hashes.
    let mut tasks = Vec::new();
    for i in 0..15u64 {
        let rig = rig.clone();
        let id = ((now_ms - 60_000 - 1_420_070_400_000) << 22) + i;
        tasks.push(tokio::spawn(async move {
            rig.call(
                i as usize,
                Method::DELETE,
                &format!("/channels/70/messages/{id}"),
                10_000,
                "",
            )
            .await
        }));
    }
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_answered(&a, "delete");
        *codes.entry(a.status.as_u16()).or_default() += 1;
    }
    let stats = rig.sim.rest_stats();
    assert_eq!(scope_429s(&rig.sim, "user"), 0, "{stats:?} {codes:?}");
    // 3 per second, and one window of caution when the cycling is found.
    assert!(codes.get(&204).copied().unwrap_or(0) >= 12, "{codes:?}");
    eprintln!("cycling delete bucket: {codes:?}; limiter_hash_cycles reported by the proxies");
}

#[tokio::test]
async fn bad_configuration_names_the_variable() {
    for (var, value) in [
        ("ARRAKIS_PROXY_LISTEN", "not-an-address"),
        ("ARRAKIS_GLOBAL_LIMIT", "0"),
        ("DISCORD_API_BASE", "discord.com"),
        ("ARRAKIS_REQUEST_DEADLINE", "10"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis"))
            .arg("proxy")
            .env_clear()
            .env("DISCORD_TOKEN", "sim-token")
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("sim-token"), "{stderr}");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis"))
        .arg("proxy")
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DISCORD_TOKEN"));
}
