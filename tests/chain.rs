//! The chain client against the chain simulator: rotation past a dead and
//! a rate-limited endpoint, the fast typed error when all are down, the
//! breaker opening and half-opening, multicall batches and log windows.

use std::time::{Duration, Instant};

use arrakis::worker::chain::{Address, BreakerState, ChainClient, ChainConfig, ChainError};
use arrakis_loadtest::chain::{ChainSim, ChainSimConfig, EndpointMode};

fn token(sim: &ChainSimConfig) -> Address {
    Address(sim.token)
}

fn holder(i: u32) -> [u8; 20] {
    let mut a = [0x40u8; 20];
    a[16..].copy_from_slice(&i.to_be_bytes());
    a
}

fn client(sim: &ChainSim, tune: impl FnOnce(&mut ChainConfig)) -> ChainClient {
    let mut config = ChainConfig::from_urls(&sim.urls().join(",")).unwrap();
    tune(&mut config);
    ChainClient::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_through_the_third_endpoint_when_one_is_down_and_one_rate_limits() {
    let config = ChainSimConfig::default();
    let sim = ChainSim::start(config.clone()).await.unwrap();
    sim.mint(holder(1), 500);
    sim.set_mode(0, EndpointMode::Down);
    sim.set_mode(
        1,
        EndpointMode::RateLimited {
            retry_after_secs: 60,
        },
    );
    let c = client(&sim, |c| c.breaker_failures = 3);
    for _ in 0..20 {
        assert_eq!(
            c.balance_of(token(&config), Address(holder(1)))
                .await
                .unwrap(),
            500
        );
    }
    assert_eq!(
        sim.requests(1),
        1,
        "a 429 sidelines the endpoint for its Retry-After"
    );
    assert!(sim.requests(2) >= 20);
    let states = c.endpoint_states();
    assert_eq!(states[0].breaker, BreakerState::Open, "{states:?}");
    assert!(states[1].skipped_for.is_some());
    assert_eq!(states[2].breaker, BreakerState::Closed);
    assert!(
        states
            .iter()
            .all(|s| !s.label.contains('/') || s.label.starts_with("http://127.0.0.1"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_is_a_fast_typed_error_and_the_breakers_half_open_then_close() {
    let config = ChainSimConfig::default();
    let sim = ChainSim::start(config.clone()).await.unwrap();
    sim.mint(holder(2), 7);
    for e in 0..3 {
        sim.set_mode(e, EndpointMode::Slow(Duration::from_secs(10)));
    }
    let c = client(&sim, |c| {
        c.call_timeout = Duration::from_millis(300);
        c.breaker_failures = 1;
        c.breaker_open_for = Duration::from_millis(800);
    });
    // First call: every endpoint times out once, and every breaker opens.
    let err = c.block_number().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        c.endpoint_states()
            .iter()
            .all(|s| s.breaker == BreakerState::Open)
    );
    // Now nothing is tried: the error is immediate, not three timeouts.
    let started = Instant::now();
    for _ in 0..10 {
        assert!(matches!(
            c.block_number().await,
            Err(ChainError::Unavailable { endpoints: 3, .. })
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let before = (0..3).map(|e| sim.requests(e)).sum::<u64>();
    assert_eq!(before, 3, "open breakers send nothing");

    for e in 0..3 {
        sim.set_mode(e, EndpointMode::Healthy);
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        c.endpoint_states()
            .iter()
            .all(|s| s.breaker == BreakerState::HalfOpen)
    );
    assert_eq!(
        c.balance_of(token(&config), Address(holder(2)))
            .await
            .unwrap(),
        7
    );
    let states = c.endpoint_states();
    assert_eq!(
        states
            .iter()
            .filter(|s| s.breaker == BreakerState::Closed)
            .count(),
        1,
        "the trial closed one: {states:?}"
    );
    for _ in 0..5 {
        c.block_number().await.unwrap();
    }
    assert!(
        c.endpoint_states()
            .iter()
            .all(|s| s.breaker == BreakerState::Closed)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_is_passed_over_within_the_call_timeout() {
    let sim = ChainSim::start(ChainSimConfig::default()).await.unwrap();
    sim.set_mode(0, EndpointMode::Slow(Duration::from_secs(5)));
    sim.set_mode(1, EndpointMode::Slow(Duration::from_secs(5)));
    let c = client(&sim, |c| c.call_timeout = Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(c.block_number().await.unwrap(), 1_000_000);
    assert!(started.elapsed() < Duration::from_secs(2));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_error_is_not_retried_elsewhere() {
    let sim = ChainSim::start(ChainSimConfig::default()).await.unwrap();
    for e in 0..3 {
        sim.set_mode(
            e,
            EndpointMode::RpcError {
                code: 3,
                message: "execution reverted".into(),
            },
        );
    }
    let c = client(&sim, |_| {});
    let err = c.block_number().await.unwrap_err();
    assert_eq!(
        err,
        ChainError::Rpc {
            code: 3,
            message: "execution reverted".into()
        }
    );
    assert_eq!((0..3).map(|e| sim.requests(e)).sum::<u64>(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_come_in_multicall_batches_of_100_in_order() {
    let config = ChainSimConfig {
        endpoints: 1,
        ..ChainSimConfig::default()
    };
    let sim = ChainSim::start(config.clone()).await.unwrap();
    let holders: Vec<Address> = (0..250).map(|i| Address(holder(i))).collect();
    for (i, h) in holders.iter().enumerate() {
        if i % 7 != 0 {
            sim.mint(h.0, 1_000_000_000_000_000_000 * i as u128);
        }
    }
    let c = client(&sim, |_| {});
    let balances = c.balances_of(token(&config), &holders).await.unwrap();
    let expected: Vec<u128> = holders.iter().map(|h| sim.balance(h.0)).collect();
    assert_eq!(balances, expected);
    assert_eq!(sim.requests(0), 3, "250 holders in three aggregate3 calls");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_logs_come_in_windows_of_at_most_10000_blocks_each_once() {
    let config = ChainSimConfig {
        endpoints: 1,
        head_block: 100,
        ..ChainSimConfig::default()
    };
    let sim = ChainSim::start(config.clone()).await.unwrap();
    // Logs spread over 25,000 blocks: mints, transfers, a burn, two in one
    // block at the window edge.
    let mut expected = 0;
    for i in 0..40u32 {
        sim.set_head(100 + u64::from(i) * 625);
        sim.mint(holder(i), 1_000);
        expected += 1;
    }
    sim.set_head(10_099);
    sim.transfer(holder(1), holder(2), 10);
    sim.set_head(10_099);
    sim.burn(holder(3), 1_000);
    expected += 2;
    let c = client(&sim, |_| {});
    let logs = c.transfer_logs(token(&config), 100, 25_099).await.unwrap();
    assert_eq!(logs.len(), expected);
    assert!(
        logs.windows(2)
            .all(|w| (w[0].block, w[0].log_index) < (w[1].block, w[1].log_index)),
        "in chain order, no duplicates"
    );
    assert_eq!(sim.requests(0), 3, "25,000 blocks in three windows");
    let burn = logs.iter().find(|l| l.to == Address::ZERO).unwrap();
    assert_eq!((burn.from, burn.value), (Address(holder(3)), 1_000));

    // A provider with a narrower limit: the window halves until accepted.
    let narrow = ChainSim::start(ChainSimConfig {
        endpoints: 1,
        max_log_range: 3_000,
        head_block: 100,
        ..ChainSimConfig::default()
    })
    .await
    .unwrap();
    narrow.mint(holder(9), 5);
    let c = client(&narrow, |_| {});
    let logs = c.transfer_logs(token(&config), 0, 12_000).await.unwrap();
    assert_eq!(logs.len(), 1);
    narrow.shutdown().await;
    sim.shutdown().await;
}
