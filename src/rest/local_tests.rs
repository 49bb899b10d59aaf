//! The local fallback limiter's rules, on a fake clock.

use super::*;

const MARGIN: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn shares_round_down_and_never_reach_zero() {
    assert_eq!(LocalLimiter::share_of(50, 0.5, 2), 12);
    assert_eq!(LocalLimiter::share_of(50, 0.5, 1), 25);
    assert_eq!(LocalLimiter::share_of(50, 0.5, 100), 1);
    assert_eq!(LocalLimiter::share_of(50, 0.5, 0), 25);
    // Two replicas on their shares stay under the limit together.
    assert!(2 * LocalLimiter::share_of(50, 0.5, 2) <= 50);
}

#[test]
fn global_traffic_waits_until_the_others_reserve_our_share() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(12, 2, MARGIN, t0 + ms(3_100));
    assert_eq!(
        l.try_acquire("b1", "c:1", true, None, 1, LEASE, t0),
        LocalDecision::Wait(ms(3_100))
    );
    // Exempt traffic (interaction callbacks) goes at once.
    assert_eq!(
        l.try_acquire("cb", "i:1", false, None, 2, LEASE, t0),
        LocalDecision::Go
    );
    assert_eq!(
        l.try_acquire("b1", "c:1", true, None, 1, LEASE, t0 + ms(3_100)),
        LocalDecision::Go
    );
}

#[test]
fn global_share_per_window() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(3, 1, MARGIN, t0);
    let mut sent = 0;
    for i in 0..10u64 {
        let bucket = format!("b{i}");
        if l.try_acquire(&bucket, "", true, None, i, LEASE, t0) == LocalDecision::Go {
            sent += 1;
        }
    }
    assert_eq!(sent, 3);
    match l.try_acquire("b9", "", true, None, 99, LEASE, t0 + ms(500)) {
        LocalDecision::Wait(w) => assert_eq!(w, ms(600)),
        LocalDecision::Go => panic!("over the share"),
    }
    assert_eq!(
        l.try_acquire("b9", "", true, None, 99, LEASE, t0 + ms(1_100)),
        LocalDecision::Go
    );
}

#[test]
fn one_in_flight_per_bucket_until_released_or_lease_expiry() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(50, 1, MARGIN, t0);
    assert_eq!(
        l.try_acquire("b", "c:1", true, None, 1, LEASE, t0),
        LocalDecision::Go
    );
    assert!(matches!(
        l.try_acquire("b", "c:1", true, None, 2, LEASE, t0),
        LocalDecision::Wait(_)
    ));
    l.release("b", "c:1", 1, None, t0 + ms(10));
    assert_eq!(
        l.try_acquire("b", "c:1", true, None, 2, LEASE, t0 + ms(10)),
        LocalDecision::Go
    );
    // A holder that never comes back: the lease ends it.
    assert!(matches!(
        l.try_acquire("b", "c:1", true, None, 3, LEASE, t0 + ms(20)),
        LocalDecision::Wait(_)
    ));
    assert_eq!(
        l.try_acquire("b", "c:1", true, None, 3, LEASE, t0 + ms(10) + LEASE),
        LocalDecision::Go
    );
}

#[test]
fn remaining_zero_blocks_until_reset_after() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(50, 1, MARGIN, t0);
    assert_eq!(
        l.try_acquire("b", "c:1", true, None, 1, LEASE, t0),
        LocalDecision::Go
    );
    let outcome = LocalOutcome {
        remaining: Some(0),
        reset_after: Some(ms(2_000)),
        limited: None,
    };
    l.release("b", "c:1", 1, Some(&outcome), t0);
    assert_eq!(
        l.try_acquire("b", "c:1", true, None, 2, LEASE, t0),
        LocalDecision::Wait(ms(2_100))
    );
}

#[test]
fn learned_limits_are_split_between_replicas() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(50, 2, MARGIN, t0);
    let limit = Some((5, ms(5_000)));
    let mut at = t0;
    let mut sent = 0;
    for i in 0..10u64 {
        if l.try_acquire("b", "c:1", true, limit, i, LEASE, at) == LocalDecision::Go {
            sent += 1;
            l.release("b", "c:1", i, None, at);
        }
        at += ms(10);
    }
    // 5 ÷ 2 replicas = 2 per 5.1 s window.
    assert_eq!(sent, 2);
}

#[test]
fn blocks_from_429s() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(50, 1, MARGIN, t0);
    let global = LocalOutcome {
        limited: Some((ms(1_000), LocalScope::Global)),
        ..LocalOutcome::default()
    };
    assert_eq!(
        l.try_acquire("a", "c:1", true, None, 1, LEASE, t0),
        LocalDecision::Go
    );
    l.release("a", "c:1", 1, Some(&global), t0);
    assert_eq!(
        l.try_acquire("b", "c:2", true, None, 2, LEASE, t0),
        LocalDecision::Wait(ms(1_100))
    );
    // Exempt routes ignore the global block.
    assert_eq!(
        l.try_acquire("cb", "i:9", false, None, 3, LEASE, t0),
        LocalDecision::Go
    );
    let shared = LocalOutcome {
        limited: Some((ms(500), LocalScope::Shared)),
        ..LocalOutcome::default()
    };
    l.release("cb", "i:9", 3, Some(&shared), t0);
    assert_eq!(
        l.try_acquire("other", "i:9", false, None, 4, LEASE, t0),
        LocalDecision::Wait(ms(600))
    );
    assert!(!l.drained(t0 + ms(1_000)));
    assert!(l.drained(t0 + ms(1_200)));
}

#[test]
fn closing_lets_the_global_log_drain() {
    let t0 = Instant::now();
    let mut l = LocalLimiter::new(5, 1, MARGIN, t0);
    assert_eq!(
        l.try_acquire("a", "", true, None, 1, LEASE, t0),
        LocalDecision::Go
    );
    l.close_global(t0 + ms(5_000));
    assert!(matches!(
        l.try_acquire("b", "", true, None, 2, LEASE, t0 + ms(10)),
        LocalDecision::Wait(_)
    ));
    assert_eq!(
        l.try_acquire("cb", "i:1", false, None, 3, LEASE, t0 + ms(10)),
        LocalDecision::Go
    );
    assert!(l.drained(t0 + ms(1_100)));
}
