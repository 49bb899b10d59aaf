//! The simulator's REST limits on a fake clock.

use super::*;

const GRACE: Duration = Duration::from_millis(50);

fn def(limit: u32, window_ms: u64, kind: WindowKind) -> BucketDef {
    BucketDef {
        hash: "h",
        limit,
        window: Duration::from_millis(window_ms),
        kind,
        alternate: None,
    }
}

fn req<'a>(major: &'a str, bucket: Option<BucketDef>) -> Request<'a> {
    Request {
        route: "GET /x/{}",
        path: "/x/1",
        major,
        bucket,
        counted: true,
        bot_auth: true,
        sublimit: None,
    }
}

fn check(l: &mut Limits, r: &Request<'_>, now: Instant, limit: u32, grace: Duration) -> Verdict {
    l.check(r, now, limit, grace).0
}

fn passed(v: &Verdict) -> bool {
    matches!(v, Verdict::Pass(_))
}

fn header<'a>(v: &'a Verdict, name: &str) -> Option<&'a str> {
    let headers = match v {
        Verdict::Pass(h) | Verdict::Limited { headers: h, .. } => h,
        Verdict::Status(_) => return None,
    };
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn fixed_window_counts_from_the_first_request() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    let b = Some(def(2, 1_000, WindowKind::Fixed));
    let first = check(&mut l, &req("1", b), t0, 50, GRACE);
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-reset-after"), Some("1.000"));
    assert!(passed(&check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(500),
        50,
        GRACE
    )));
    let third = check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(600),
        50,
        GRACE,
    );
    assert!(matches!(third, Verdict::Limited { scope: "user", .. }));
    assert_eq!(header(&third, "x-ratelimit-reset-after"), Some("0.400"));
    // Another resource has its own bucket.
    assert!(passed(&check(
        &mut l,
        &req("2", b),
        t0 + Duration::from_millis(600),
        50,
        GRACE
    )));
    // A new window after the end.
    assert!(passed(&check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(1_000),
        50,
        GRACE
    )));
    assert_eq!(l.stats.bucket_overage["h 1"], 1);
    assert_eq!(l.stats.invalid, 1);
}

#[test]
fn sliding_window_frees_one_slot_at_a_time() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    let b = Some(def(2, 1_000, WindowKind::Sliding));
    assert!(passed(&check(&mut l, &req("1", b), t0, 50, GRACE)));
    assert!(passed(&check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(500),
        50,
        GRACE
    )));
    // At 1.0 s the first slot frees; the second is still taken.
    assert!(passed(&check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(1_000),
        50,
        GRACE
    )));
    assert!(!passed(&check(
        &mut l,
        &req("1", b),
        t0 + Duration::from_millis(1_100),
        50,
        GRACE
    )));
}

#[test]
fn global_limit_by_arrival_in_any_second() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    for i in 0..3 {
        assert!(passed(&check(
            &mut l,
            &req("1", None),
            t0 + Duration::from_millis(i * 100),
            3,
            GRACE
        )));
    }
    let over = check(
        &mut l,
        &req("1", None),
        t0 + Duration::from_millis(900),
        3,
        GRACE,
    );
    assert!(matches!(
        over,
        Verdict::Limited {
            scope: "global",
            global: true,
            ..
        }
    ));
    assert_eq!(l.stats.max_global_window, 4);
    assert_eq!(l.stats.global_overage, 1);
    // Exempt requests are not counted.
    let mut exempt = req("1", None);
    exempt.counted = false;
    assert!(passed(&check(
        &mut l,
        &exempt,
        t0 + Duration::from_millis(900),
        3,
        GRACE
    )));
}

#[test]
fn injected_pauses_count_violations_after_the_grace() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    l.inject(RestFault::Global429 {
        retry_after: Duration::from_secs(1),
    });
    assert!(matches!(
        check(&mut l, &req("1", None), t0, 50, GRACE),
        Verdict::Limited {
            scope: "global",
            ..
        }
    ));
    // In flight when the 429 went out: not a violation.
    let _ = check(
        &mut l,
        &req("1", None),
        t0 + Duration::from_millis(10),
        50,
        GRACE,
    );
    assert_eq!(l.stats.global_block_violations, 0);
    let _ = check(
        &mut l,
        &req("1", None),
        t0 + Duration::from_millis(500),
        50,
        GRACE,
    );
    assert_eq!(l.stats.global_block_violations, 1);
    assert!(passed(&check(
        &mut l,
        &req("1", None),
        t0 + Duration::from_millis(1_000),
        50,
        GRACE
    )));

    l.inject(RestFault::Shared429 {
        path: "/x/1".into(),
        retry_after: Duration::from_secs(1),
    });
    let t1 = t0 + Duration::from_secs(2);
    assert!(matches!(
        check(&mut l, &req("1", None), t1, 50, GRACE),
        Verdict::Limited {
            scope: "shared",
            ..
        }
    ));
    let _ = check(
        &mut l,
        &req("1", None),
        t1 + Duration::from_millis(200),
        50,
        GRACE,
    );
    assert_eq!(l.stats.shared_block_violations, 1);
    // Shared 429s are not invalid requests.
    assert_eq!(l.stats.rate_limited["shared"], 2);
    assert_eq!(l.stats.invalid, 3);
}

#[test]
fn cycling_hashes_share_one_counter() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    let mut d = def(2, 1_000, WindowKind::Fixed);
    d.alternate = Some("h2");
    let a = check(&mut l, &req("1", Some(d)), t0, 50, GRACE);
    let b = check(&mut l, &req("1", Some(d)), t0, 50, GRACE);
    assert_eq!(header(&a, "x-ratelimit-bucket"), Some("h"));
    assert_eq!(header(&b, "x-ratelimit-bucket"), Some("h2"));
    assert!(!passed(&check(&mut l, &req("1", Some(d)), t0, 50, GRACE)));
}

#[test]
fn status_faults_are_consumed_one_by_one() {
    let mut l = Limits::default();
    let t0 = Instant::now();
    l.inject(RestFault::Status {
        path: "/x".into(),
        status: 503,
        count: 2,
    });
    assert!(matches!(
        check(&mut l, &req("1", None), t0, 50, GRACE),
        Verdict::Status(503)
    ));
    assert!(matches!(
        check(&mut l, &req("1", None), t0, 50, GRACE),
        Verdict::Status(503)
    ));
    assert!(passed(&check(&mut l, &req("1", None), t0, 50, GRACE)));
}
