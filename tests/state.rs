//! The workers' shared Redis state against the machine's Redis, under a
//! prefix of its own per test: dedupe claims, command limits, cooldowns,
//! sessions, fenced locks and the scheduler.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use arrakis::worker::state::{Claim, CommandLimits, Job, LimitVerdict, Scheduler, State, trigger};

use support::{RedisPrefix, SHARED_REDIS};

async fn state() -> (State, RedisPrefix) {
    let prefix = RedisPrefix::new();
    let state = State::connect(SHARED_REDIS, &format!("{}:", prefix.prefix))
        .await
        .unwrap();
    state.ping().await.expect("Redis answers");
    (state, prefix)
}

#[tokio::test]
async fn a_message_is_claimed_once_until_done_released_or_expired() {
    let (s, _p) = state().await;
    let lease = Duration::from_millis(300);
    assert_eq!(
        s.claim("sess:1", "a", lease).await.unwrap(),
        Claim::Acquired
    );
    assert!(matches!(
        s.claim("sess:1", "b", lease).await.unwrap(),
        Claim::HeldByOther { remaining } if remaining <= lease
    ));
    // The same owner asking again (a retry inside one worker) keeps it.
    assert_eq!(
        s.claim("sess:1", "a", lease).await.unwrap(),
        Claim::Acquired
    );
    s.finish("sess:1", "a", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        s.claim("sess:1", "b", lease).await.unwrap(),
        Claim::AlreadyDone
    );

    assert_eq!(
        s.claim("sess:2", "a", lease).await.unwrap(),
        Claim::Acquired
    );
    assert!(
        !s.release("sess:2", "b").await.unwrap(),
        "only the owner releases"
    );
    assert!(s.release("sess:2", "a").await.unwrap());
    assert_eq!(
        s.claim("sess:2", "b", lease).await.unwrap(),
        Claim::Acquired
    );

    // A worker that died: its lease runs out and someone else takes over.
    assert_eq!(
        s.claim("sess:3", "dead", lease).await.unwrap(),
        Claim::Acquired
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(
        s.claim("sess:3", "alive", lease).await.unwrap(),
        Claim::Acquired
    );
}

#[tokio::test]
async fn command_limits_per_user_and_per_guild_in_a_sliding_window() {
    let (s, _p) = state().await;
    let limits = CommandLimits::default();
    for _ in 0..5 {
        assert_eq!(
            s.command_allowed(1, 10, limits).await.unwrap(),
            LimitVerdict::Allowed
        );
    }
    match s.command_allowed(1, 10, limits).await.unwrap() {
        LimitVerdict::UserLimited { retry_after } => assert!(retry_after <= Duration::from_secs(1)),
        other => panic!("sixth command: {other:?}"),
    }
    // Refusals are not counted: after the window, five again.
    for _ in 0..3 {
        let _ = s.command_allowed(1, 10, limits).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    for _ in 0..5 {
        assert_eq!(
            s.command_allowed(1, 10, limits).await.unwrap(),
            LimitVerdict::Allowed
        );
    }

    // 100 per guild, across users; another guild is unaffected.
    let mut allowed = 0;
    for user in 0..30u64 {
        for _ in 0..4 {
            if s.command_allowed(2, 100 + user, limits).await.unwrap() == LimitVerdict::Allowed {
                allowed += 1;
            }
        }
    }
    assert_eq!(allowed, 100);
    assert!(matches!(
        s.command_allowed(2, 999, limits).await.unwrap(),
        LimitVerdict::GuildLimited { .. }
    ));
    assert_eq!(
        s.command_allowed(3, 999, limits).await.unwrap(),
        LimitVerdict::Allowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_never_exceed_the_user_limit() {
    let (s, _p) = state().await;
    let allowed = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let allowed = allowed.clone();
        tasks.push(tokio::spawn(async move {
            if s.command_allowed(7, 70, CommandLimits::default())
                .await
                .unwrap()
                == LimitVerdict::Allowed
            {
                allowed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn cooldowns_start_once_and_report_what_is_left() {
    let (s, _p) = state().await;
    let period = Duration::from_millis(400);
    assert_eq!(
        s.cooldown(1, "check-eligibility", 5, period).await.unwrap(),
        None
    );
    let left = s
        .cooldown(1, "check-eligibility", 5, period)
        .await
        .unwrap()
        .unwrap();
    assert!(left > Duration::ZERO && left <= period, "{left:?}");
    assert_eq!(
        s.cooldown(1, "position", 5, period).await.unwrap(),
        None,
        "per command"
    );
    assert_eq!(
        s.cooldown(1, "check-eligibility", 6, period).await.unwrap(),
        None,
        "per user"
    );
    tokio::time::sleep(period + Duration::from_millis(50)).await;
    assert_eq!(
        s.cooldown(1, "check-eligibility", 5, period).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn sessions_expire_and_count_attempts() {
    let (s, p) = state().await;
    let ttl = Duration::from_millis(400);
    s.session_put("verify:5", "nonce-abc", ttl).await.unwrap();
    assert_eq!(
        s.session_get("verify:5").await.unwrap().as_deref(),
        Some("nonce-abc")
    );
    assert_eq!(s.session_incr("verify:5").await.unwrap(), Some(1));
    assert_eq!(s.session_incr("verify:5").await.unwrap(), Some(2));
    // Every key has a TTL.
    let mut conn = redis::Client::open(SHARED_REDIS)
        .unwrap()
        .get_connection()
        .unwrap();
    for key in p.keys() {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    // A new session restarts the count.
    s.session_put("verify:5", "nonce-def", ttl).await.unwrap();
    assert_eq!(s.session_incr("verify:5").await.unwrap(), Some(1));
    assert_eq!(
        s.session_take("verify:5").await.unwrap().as_deref(),
        Some("nonce-def")
    );
    assert_eq!(s.session_get("verify:5").await.unwrap(), None);
    assert_eq!(
        s.session_incr("verify:5").await.unwrap(),
        None,
        "gone: no attempts"
    );

    s.session_put("dir:9", "page=2", ttl).await.unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(s.session_get("dir:9").await.unwrap(), None);
    assert_eq!(s.session_incr("dir:9").await.unwrap(), None);
    s.session_put("dir:9", "page=1", ttl).await.unwrap();
    assert!(s.session_delete("dir:9").await.unwrap());
    assert!(!s.session_delete("dir:9").await.unwrap());
}

#[tokio::test]
async fn a_roster_is_unknown_until_loaded_keeps_additions_and_expires() {
    let (s, p) = state().await;
    let ttl = Duration::from_millis(500);
    assert_eq!(s.roster_contains("onboarded:1", &[7]).await.unwrap(), None);
    // An addition before any load does not pass for a loaded roster: the
    // next reader must still load everyone else.
    s.roster_add("onboarded:1", 7, ttl).await.unwrap();
    assert_eq!(s.roster_contains("onboarded:1", &[7]).await.unwrap(), None);
    // A load that read Postgres before 7 was committed still keeps 7.
    s.roster_load("onboarded:1", &[3, 4], ttl).await.unwrap();
    assert_eq!(
        s.roster_contains("onboarded:1", &[3, 7, 9]).await.unwrap(),
        Some(vec![true, true, false])
    );
    // An empty roster is still a loaded one.
    s.roster_load("onboarded:2", &[], ttl).await.unwrap();
    assert_eq!(
        s.roster_contains("onboarded:2", &[3]).await.unwrap(),
        Some(vec![false])
    );
    let mut conn = redis::Client::open(SHARED_REDIS)
        .unwrap()
        .get_connection()
        .unwrap();
    for key in p.keys() {
        let left: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(left > 0, "{key} has no TTL ({left})");
    }
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(s.roster_contains("onboarded:1", &[3]).await.unwrap(), None);
}

#[tokio::test]
async fn locks_are_exclusive_fenced_and_expire() {
    let (s, _p) = state().await;
    let ttl = Duration::from_millis(300);
    let a = s.try_lock("sync:1", "a", ttl).await.unwrap().expect("free");
    assert!(
        s.try_lock("sync:1", "b", ttl).await.unwrap().is_none(),
        "exclusive"
    );
    assert!(s.renew(&a, ttl).await.unwrap());
    assert!(s.fence_valid(&a).await.unwrap());
    assert!(s.unlock(&a).await.unwrap());
    assert!(!s.unlock(&a).await.unwrap(), "already released");

    let b = s
        .try_lock("sync:1", "b", ttl)
        .await
        .unwrap()
        .expect("free again");
    assert!(
        b.fence > a.fence,
        "fences grow: {} then {}",
        a.fence,
        b.fence
    );
    assert!(
        !s.fence_valid(&a).await.unwrap(),
        "a stale lease is recognised"
    );
    assert!(!s.renew(&a, ttl).await.unwrap(), "and cannot renew");

    // b crashes without unlocking: the lease expires.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let c = s
        .try_lock("sync:1", "c", ttl)
        .await
        .unwrap()
        .expect("expired");
    assert!(c.fence > b.fence);
    assert!(!s.fence_valid(&b).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_a_job_once_per_period_and_never_at_once() {
    let (s, _p) = state().await;
    let runs = Arc::new(AtomicU32::new(0));
    let running = Arc::new(AtomicBool::new(false));
    let overlapped = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for owner in ["w1", "w2"] {
        let (runs, running, overlapped) = (runs.clone(), running.clone(), overlapped.clone());
        let mut stopped = stopped.clone();
        let scheduler = Scheduler::new(s.clone(), owner)
            .poll(Duration::from_millis(50))
            .lease_ttl(Duration::from_millis(600))
            .add(
                Job {
                    name: "tick".into(),
                    every: Duration::from_millis(500),
                },
                move |_lease| {
                    let (runs, running, overlapped) =
                        (runs.clone(), running.clone(), overlapped.clone());
                    async move {
                        if running.swap(true, Ordering::SeqCst) {
                            overlapped.store(true, Ordering::SeqCst);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst);
                        running.store(false, Ordering::SeqCst);
                        Ok(())
                    }
                },
            );
        workers.push(tokio::spawn(scheduler.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let _ = stop.send(true);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
    }
    let n = runs.load(Ordering::SeqCst);
    assert!((4..=8).contains(&n), "{n} runs in 3 s of a 500 ms job");
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "two workers ran it at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holder_gives_way_and_a_trigger_runs_a_job_early() {
    let (s, _p) = state().await;
    let job = || Job {
        name: "sync".into(),
        every: Duration::from_secs(3600),
    };
    // w1 takes the job and hangs in it; then it is killed (aborted).
    let hung = Scheduler::new(s.clone(), "w1")
        .poll(Duration::from_millis(50))
        .lease_ttl(Duration::from_millis(400))
        .add(job(), |_lease| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        });
    let w1 = tokio::spawn(hung.run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    w1.abort();

    let ran = Arc::new(AtomicU32::new(0));
    let counted = ran.clone();
    let w2 = Scheduler::new(s.clone(), "w2")
        .poll(Duration::from_millis(50))
        .lease_ttl(Duration::from_millis(400))
        .add(job(), move |lease| {
            let counted = counted.clone();
            async move {
                assert_eq!(lease.owner, "w2");
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
    let w2 = tokio::spawn(w2.run(std::future::pending()));
    // The hourly job is not due again; a trigger makes it run now, once the
    // dead holder's lease has expired.
    trigger(&s, "sync").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ran.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the triggered job never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a trigger runs it once");
    w2.abort();
}

#[tokio::test]
async fn every_state_call_is_timed_and_failures_are_counted() {
    use arrakis::worker::state::RedisMetrics;
    use prometheus_client::registry::Registry;

    fn series(registry: &Registry, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    let mut registry = Registry::default();
    let metrics = RedisMetrics::register(&mut registry);
    let (s, _p) = state().await;
    let s = s.with_metrics(metrics.clone());
    s.ping().await.unwrap();
    s.claim("sess:timed", "a", Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(series(&registry, "redis_latency_seconds_count"), 2.0);
    assert_eq!(series(&registry, "redis_errors_total"), 0.0);

    // Nothing listens on this port: the call fails fast and is counted.
    let port = support::free_port();
    let down = State::connect(&format!("redis://127.0.0.1:{port}/"), "down:")
        .await
        .unwrap()
        .with_metrics(metrics);
    assert!(down.ping().await.is_err());
    assert_eq!(series(&registry, "redis_errors_total"), 1.0);
    assert_eq!(series(&registry, "redis_latency_seconds_count"), 3.0);
}
