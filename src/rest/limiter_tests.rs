//! The Lua scripts against the real Redis on 127.0.0.1:6379 (as in CI),
//! each test under its own key prefix, deleted at the end. Short real
//! windows stand in for a fake clock: the scripts read Redis `TIME`.

use super::*;
use hyper::header::HeaderValue;

const REDIS: &str = "redis://127.0.0.1:6379/";

struct Fixture {
    limiter: Arc<Limiter>,
    prefix: String,
}

impl Fixture {
    async fn new(global_limit: u32) -> Self {
        let prefix = format!("arrakis-unit-{:016x}", rand::random::<u64>());
        let limiter = Arc::new(
            Limiter::new(
                REDIS,
                "unit-token",
                LimiterConfig {
                    prefix: prefix.clone(),
                    global_limit,
                    margin: Duration::from_millis(20),
                    local_fraction: 0.5,
                    invalid_limit: 40,
                    redis_timeout: Duration::from_secs(2),
                },
                Arc::new(ProxyMetrics::new()),
            )
            .unwrap(),
        );
        limiter.try_recover().await;
        assert!(
            !limiter.degraded(),
            "Redis must run on 127.0.0.1:6379 for these tests (bash scripts/services.sh)"
        );
        Self { limiter, prefix }
    }

    async fn cleanup(self) {
        let client = redis::Client::open(REDIS).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}:*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn route(method: &str, path: &str) -> Route {
    Route::parse(method, path, 0).unwrap()
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn headers(pairs: &[(&'static str, &str)]) -> RateLimitHeaders {
    let mut map = hyper::HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    RateLimitHeaders::parse(&map)
}

fn ok(bucket: &str, limit: u32, remaining: u32, reset_after: &str) -> Outcome {
    Outcome {
        status: 200,
        headers: headers(&[
            ("x-ratelimit-bucket", bucket),
            ("x-ratelimit-limit", &limit.to_string()),
            ("x-ratelimit-remaining", &remaining.to_string()),
            ("x-ratelimit-reset-after", reset_after),
        ]),
        limited: None,
    }
}

#[tokio::test]
async fn discovery_allows_one_request_then_learns_the_bucket() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("POST", "/channels/1/messages");
    let first = l.acquire(&r, Class::Normal, 1, soon(1_000)).await.unwrap();
    assert_eq!(first.bucket, BucketId::Discovery);
    // A second request on the same route and channel waits for the probe.
    let denied = l
        .acquire(&r, Class::Normal, 2, soon(200))
        .await
        .unwrap_err();
    assert_eq!(denied.reason, "discovery");
    // Another channel is another resource: its own probe.
    let other = route("POST", "/channels/2/messages");
    assert!(l.acquire(&other, Class::Normal, 3, soon(200)).await.is_ok());
    l.release(&r, &first, &ok("abc", 3, 2, "1")).await;
    // Learned: 3 per second, one used.
    let mut granted = 0;
    for ticket in 10..15 {
        if l.acquire(&r, Class::Normal, ticket, soon(100))
            .await
            .is_ok()
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 2);
    f.cleanup().await;
}

#[tokio::test]
async fn a_dead_holders_discovery_lease_expires() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("GET", "/guilds/7/members");
    // Held with a 300 ms budget: the lease lasts 1.3 s; never released.
    let _lost = l.acquire(&r, Class::Normal, 1, soon(300)).await.unwrap();
    let started = Instant::now();
    let next = l.acquire(&r, Class::Normal, 2, soon(3_000)).await;
    assert!(next.is_ok(), "{next:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(2_500),
        "{waited:?}"
    );
    f.cleanup().await;
}

#[tokio::test]
async fn the_global_window_bounds_every_replica_together() {
    let f = Fixture::new(4).await;
    // A second replica on the same prefix and token.
    let g = Fixture {
        limiter: Arc::new(
            Limiter::new(
                REDIS,
                "unit-token",
                f.limiter.cfg.clone(),
                Arc::new(ProxyMetrics::new()),
            )
            .unwrap(),
        ),
        prefix: f.prefix.clone(),
    };
    g.limiter.try_recover().await;
    let mut granted = Vec::new();
    for i in 0..10u64 {
        let l = if i % 2 == 0 { &f.limiter } else { &g.limiter };
        // Distinct channels: only the global limit applies (discovery each).
        let r = route("GET", &format!("/channels/{i}"));
        if let Ok(p) = l.acquire(&r, Class::Normal, i, soon(50)).await {
            granted.push((r, p));
        }
    }
    assert_eq!(granted.len(), 4);
    // Answered permits count for one window after their answer; until
    // then (in flight) they keep counting.
    for (r, p) in &granted {
        f.limiter
            .release(
                r,
                p,
                &Outcome {
                    status: 200,
                    ..Outcome::default()
                },
            )
            .await;
    }
    // Exempt routes are not counted.
    let cb = route("POST", "/interactions/9/tok/callback");
    assert!(
        f.limiter
            .acquire(&cb, Class::Interaction, 99, soon(50))
            .await
            .is_ok()
    );
    // The window slides: a second later there is room again.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let r = route("GET", "/channels/100");
    assert!(
        g.limiter
            .acquire(&r, Class::Normal, 100, soon(50))
            .await
            .is_ok()
    );
    f.cleanup().await;
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order_across_replicas() {
    let f = Fixture::new(50).await;
    let l = f.limiter.clone();
    let r = route("GET", "/channels/5/pins");
    let probe = l.acquire(&r, Class::Normal, 1, soon(1_000)).await.unwrap();
    l.release(&r, &probe, &ok("fifo", 1, 0, "0.3")).await;
    // Bucket: 1 per 300 ms, used. Four waiters arrive in order.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for ticket in 2..6u64 {
        let (l, r, order) = (l.clone(), r.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let permit = l
                .acquire(&r, Class::Normal, ticket, soon(5_000))
                .await
                .unwrap();
            lock(&order).push(ticket);
            l.release(&r, &permit, &ok("fifo", 1, 0, "0.3")).await;
        }));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*lock(&order), vec![2, 3, 4, 5]);
    f.cleanup().await;
}

#[tokio::test]
async fn waits_past_the_deadline_are_rejected_at_once() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("POST", "/channels/8/messages");
    let probe = l.acquire(&r, Class::Normal, 1, soon(1_000)).await.unwrap();
    l.release(&r, &probe, &ok("slow", 5, 0, "5")).await;
    let started = Instant::now();
    let denied = l
        .acquire(&r, Class::Normal, 2, soon(1_000))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(200));
    assert!(denied.retry_after > Duration::from_secs(4), "{denied:?}");
    assert_eq!(denied.reason, "bucket_block");
    f.cleanup().await;
}

fn limited(scope: Scope, ms: u64) -> Outcome {
    Outcome {
        status: 429,
        headers: RateLimitHeaders::default(),
        limited: Some((scope, Duration::from_millis(ms))),
    }
}

#[tokio::test]
async fn blocks_by_scope() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let a = route("GET", "/channels/1");
    let b = route("GET", "/channels/2/messages");
    let p = l.acquire(&a, Class::Normal, 1, soon(500)).await.unwrap();
    l.release(&a, &p, &limited(Scope::Global, 400)).await;
    // Global: every counted route waits, exempt ones do not.
    let denied = l
        .acquire(&b, Class::Normal, 2, soon(100))
        .await
        .unwrap_err();
    assert_eq!(denied.reason, "global_block");
    let cb = route("POST", "/interactions/3/t/callback");
    assert!(
        l.acquire(&cb, Class::Interaction, 3, soon(100))
            .await
            .is_ok()
    );
    assert!(l.acquire(&b, Class::Normal, 4, soon(1_000)).await.is_ok());
    // Shared: that channel pauses, others do not.
    let c1 = route("GET", "/channels/11/messages");
    let c1b = route("PATCH", "/channels/11");
    let c2 = route("GET", "/channels/12/messages");
    let p = l.acquire(&c1, Class::Normal, 5, soon(500)).await.unwrap();
    l.release(&c1, &p, &limited(Scope::Shared, 500)).await;
    assert_eq!(
        l.acquire(&c1b, Class::Normal, 6, soon(100))
            .await
            .unwrap_err()
            .reason,
        "shared"
    );
    assert!(l.acquire(&c2, Class::Normal, 7, soon(100)).await.is_ok());
    // Shared 429s are not invalid requests; the global one was.
    assert_eq!(l.metrics.invalid_requests.get(), 1);
    f.cleanup().await;
}

#[tokio::test]
async fn the_breaker_sheds_background_first_and_interactions_last() {
    let f = Fixture::new(1_000).await;
    let l = &f.limiter;
    // invalid_limit is 40: 10 invalid = 25 %, 20 = 50 %, 30 = 75 %.
    let forbidden = Outcome {
        status: 403,
        ..Outcome::default()
    };
    let mut n = 0u64;
    let mut add_invalid = |count: u64| {
        let mut out = Vec::new();
        for _ in 0..count {
            n += 1;
            out.push(n);
        }
        out
    };
    for i in add_invalid(10) {
        let r = route("GET", &format!("/guilds/{i}/bans"));
        let p = l.acquire(&r, Class::Normal, i, soon(500)).await.unwrap();
        l.release(&r, &p, &forbidden).await;
    }
    let probe = |i: u64| route("GET", &format!("/guilds/{}/roles", 1_000 + i));
    assert_eq!(
        l.acquire(&probe(1), Class::Background, 501, soon(100))
            .await
            .unwrap_err()
            .reason,
        "breaker"
    );
    assert!(
        l.acquire(&probe(2), Class::Normal, 502, soon(100))
            .await
            .is_ok()
    );
    for i in add_invalid(10) {
        let r = route("GET", &format!("/guilds/{i}/bans"));
        let p = l.acquire(&r, Class::Normal, i, soon(500)).await.unwrap();
        l.release(&r, &p, &forbidden).await;
    }
    assert_eq!(
        l.acquire(&probe(3), Class::Normal, 503, soon(100))
            .await
            .unwrap_err()
            .reason,
        "breaker"
    );
    let cb = route("POST", "/interactions/5/t/callback");
    assert!(
        l.acquire(&cb, Class::Interaction, 504, soon(100))
            .await
            .is_ok()
    );
    assert_eq!(l.metrics.invalid_requests.get(), 20);
    f.cleanup().await;
}

#[tokio::test]
async fn routes_without_headers_stop_being_serialised() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("GET", "/channels/3/pins");
    let bare = Outcome {
        status: 200,
        ..Outcome::default()
    };
    for ticket in 1..=3 {
        let p = l
            .acquire(&r, Class::Normal, ticket, soon(500))
            .await
            .unwrap();
        assert_eq!(p.bucket, BucketId::Discovery);
        l.release(&r, &p, &bare).await;
    }
    // Now several may be in flight at once.
    let a = l.acquire(&r, Class::Normal, 10, soon(200)).await.unwrap();
    let b = l.acquire(&r, Class::Normal, 11, soon(200)).await.unwrap();
    assert_eq!((a.bucket, b.bucket), (BucketId::NoLimit, BucketId::NoLimit));
    f.cleanup().await;
}

#[tokio::test]
async fn a_cycling_hash_gets_a_conservative_route_bucket() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("DELETE", "/channels/4/messages/1");
    let mut bucket = BucketId::Discovery;
    for (ticket, (hash, limit, reset)) in [("h1", 5, "1"), ("h2", 3, "2"), ("h1", 5, "1")]
        .into_iter()
        .enumerate()
    {
        let p = l
            .acquire(&r, Class::Normal, ticket as u64, soon(3_000))
            .await
            .unwrap();
        bucket = p.bucket.clone();
        l.release(&r, &p, &ok(hash, limit, limit - 1, reset)).await;
    }
    assert_eq!(l.metrics.hash_cycles.get(), 1);
    // The route-scoped bucket starts full for one window (2 s + margin):
    // grants made under the old hashes are not in it.
    let started = Instant::now();
    let p = l.acquire(&r, Class::Normal, 50, soon(4_000)).await.unwrap();
    assert_eq!(p.bucket, BucketId::Cycling, "was {bucket:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    // Smallest limit (3) per the longest window (2 s).
    let mut more = 0;
    for ticket in 51..56 {
        if l.acquire(&r, Class::Normal, ticket, soon(100))
            .await
            .is_ok()
        {
            more += 1;
        }
    }
    assert_eq!(more, 2);
    f.cleanup().await;
}

#[tokio::test]
async fn a_hash_change_carries_the_old_hashs_permits_over() {
    // api-docs #1295: a delete route whose X-RateLimit-Bucket alternates
    // is still one Discord bucket. Permits granted under the first hash,
    // answered or still in flight, count in the second hash's window.
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let r = route("DELETE", "/channels/5/messages/1");
    let probe = l.acquire(&r, Class::Normal, 1, soon(3_000)).await.unwrap();
    l.release(&r, &probe, &ok("h1", 4, 3, "2")).await;
    let answered = l.acquire(&r, Class::Normal, 2, soon(3_000)).await.unwrap();
    let _in_flight = l.acquire(&r, Class::Normal, 3, soon(3_000)).await.unwrap();
    assert_eq!(answered.bucket, BucketId::Hash("h1".into()));
    // Discord has seen the probe and `answered`, not yet `_in_flight`.
    l.release(&r, &answered, &ok("h2", 4, 2, "2")).await;
    let mut granted = 0;
    for ticket in 10..16 {
        if l.acquire(&r, Class::Normal, ticket, soon(100))
            .await
            .is_ok()
        {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "4 per window: 3 already sent under h1");
    f.cleanup().await;
}

/// Writes a replica heartbeat `age_ms` old by Redis time, or clears them
/// all (as a Redis restart without persistence would) when `id` is None.
async fn set_replica(f: &Fixture, id: Option<&str>, age_ms: u64) {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = f.limiter.keys().replicas();
    let Some(id) = id else {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        return;
    };
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(key)
        .arg(secs * 1000 + micros / 1000 - age_ms)
        .arg(id)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Global-counted permits granted at once, out of 12 tries.
async fn global_grants(f: &Fixture) -> usize {
    let mut granted = 0;
    for i in 0..12u64 {
        let r = route("GET", &format!("/channels/{i}"));
        if f.limiter
            .acquire(&r, Class::Normal, i, soon(30))
            .await
            .is_ok()
        {
            granted += 1;
        }
    }
    granted
}

#[tokio::test]
async fn a_stale_replica_keeps_its_share_reserved() {
    let f = Fixture::new(10).await;
    // A replica that heartbeated 5 s ago (by Redis time) and went quiet.
    set_replica(&f, Some("gone"), 5_000).await;
    f.limiter.beat(false).await.unwrap();
    // Two replicas known, one stale: its share, ⌊10 × 0.5 ÷ 2⌋ = 2, is kept.
    assert_eq!(global_grants(&f).await, 8);
    f.cleanup().await;
}

#[tokio::test]
async fn peers_lost_by_a_redis_restart_are_restored_as_stale() {
    let f = Fixture::new(10).await;
    // A peer that heartbeated just now: this replica learns of it.
    set_replica(&f, Some("peer"), 0).await;
    f.limiter.beat(false).await.unwrap();
    assert_eq!(f.limiter.replicas.load(Ordering::Relaxed), 2);
    // Redis restarts empty while the peer may be on its local share; this
    // replica's first heartbeat back puts the peer back, stale: its share,
    // ⌊10 × 0.5 ÷ 2⌋ = 2, stays reserved.
    set_replica(&f, None, 0).await;
    f.limiter.beat(true).await.unwrap();
    assert_eq!(f.limiter.replicas.load(Ordering::Relaxed), 2);
    assert_eq!(global_grants(&f).await, 8);
    // An ordinary heartbeat does not resurrect peers Redis has dropped.
    set_replica(&f, None, 0).await;
    f.limiter.beat(false).await.unwrap();
    assert_eq!(f.limiter.replicas.load(Ordering::Relaxed), 1);
    f.cleanup().await;
}

#[test]
fn replies_parse() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        Reply::parse(&s(&["1", "1700000000000"])),
        Ok(Reply::Granted)
    );
    assert_eq!(
        Reply::parse(&s(&["2", "150", "bucket"])),
        Ok(Reply::Wait(Duration::from_millis(150), "bucket".into()))
    );
    assert_eq!(
        Reply::parse(&s(&["4", "h:abc", "5", "5000"])),
        Ok(Reply::Remap(
            BucketId::Hash("abc".into()),
            Some(5),
            Some(Duration::from_secs(5))
        ))
    );
    assert!(Reply::parse(&s(&["9"])).is_err());
}

#[tokio::test]
async fn a_probe_in_flight_counts_once_the_route_is_learned_elsewhere() {
    let f = Fixture::new(50).await;
    let l = &f.limiter;
    let c1 = route("POST", "/channels/1/messages");
    let c2 = route("POST", "/channels/2/messages");
    // Both channels probe; channel 2's answer teaches the hash first.
    let p1 = l.acquire(&c1, Class::Normal, 1, soon(1_000)).await.unwrap();
    let p2 = l.acquire(&c2, Class::Normal, 2, soon(1_000)).await.unwrap();
    l.release(&c2, &p2, &ok("msg", 5, 4, "5")).await;
    // Channel 1: its probe is still in flight, so 4 more, not 5.
    let mut granted = Vec::new();
    for ticket in 10..20 {
        if let Ok(p) = l.acquire(&c1, Class::Normal, ticket, soon(50)).await {
            granted.push(p);
        }
    }
    assert_eq!(granted.len(), 4);
    // The probe's answer (Remaining 4: it arrived first) frees nothing.
    l.release(&c1, &p1, &ok("msg", 5, 4, "5")).await;
    assert!(l.acquire(&c1, Class::Normal, 30, soon(50)).await.is_err());
    f.cleanup().await;
}
