//! Background load: every shard with a session gets a realistic mix, in
//! sequence order, at about the requested rate.

use std::collections::HashMap;
use std::time::Duration;

use arrakis_loadtest::{SimConfig, Simulator};

use crate::client::{Client, Frame};
use crate::{config, start};

/// Read dispatches until `stop` says so and nothing arrives for 300 ms;
/// check seqs are contiguous; return (count, events by name).
async fn drain(
    mut c: Client,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, HashMap<String, u64>) {
    let mut next = 2;
    let mut kinds = HashMap::new();
    let mut count = 0;
    loop {
        let wait = if *stop.borrow() {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(5)
        };
        let frame = tokio::select! {
            f = c.next_within(wait) => f,
            _ = stop.changed() => continue,
        };
        match frame {
            None => return (count, kinds),
            Some(Frame::Closed(code)) => panic!("closed during load: {code:?}"),
            Some(Frame::Payload(v, _)) => {
                if v["op"] != 0 {
                    continue;
                }
                assert_eq!(v["s"], next, "gap in the sequence");
                next += 1;
                count += 1;
                *kinds
                    .entry(v["t"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
}

async fn run_load(sim: &Simulator, shards: u32, rate: u32, secs: f64, zlib: bool) -> (u64, u64) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::new();
    for shard in 0..shards {
        let mut c = Client::connect(&sim.gateway_url(), zlib).await;
        c.login("test-token", shard, shards).await;
        readers.push(tokio::spawn(drain(c, stop_rx.clone())));
    }
    let load = sim.start_load(rate);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let emitted = load.stop().await;
    stop_tx.send(true).unwrap();
    let mut received = 0;
    let mut kinds: HashMap<String, u64> = HashMap::new();
    for r in readers {
        let (n, k) = r.await.unwrap();
        received += n;
        for (name, c) in k {
            *kinds.entry(name).or_default() += c;
        }
    }
    if emitted > 1000 {
        for name in ["PRESENCE_UPDATE", "MESSAGE_CREATE", "TYPING_START"] {
            assert!(kinds.get(name).copied().unwrap_or(0) > 0, "{kinds:?}");
        }
    }
    (emitted, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_reaches_every_shard_in_order() {
    let sim = start(SimConfig {
        shards: 2,
        ..config()
    })
    .await;
    let (emitted, received) = run_load(&sim, 2, 2000, 1.0, true).await;
    assert_eq!(emitted, received);
    assert!(
        (1000..=3000).contains(&emitted),
        "emitted {emitted} at 2000/s for 1 s"
    );
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    sim.shutdown().await;
}

/// Measures the highest rate the simulator sustains against one client that
/// inflates and counts. Run with:
/// `cargo test -p arrakis-loadtest --release --test sim -- --ignored --nocapture max_load_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test; run explicitly in release mode"]
async fn max_load_rate() {
    for rate in [25_000u32, 50_000, 75_000, 100_000, 150_000, 200_000] {
        let sim = start(SimConfig {
            record_sent: false,
            ..config()
        })
        .await;
        let mut c = Client::connect(&sim.gateway_url(), true).await;
        c.login("test-token", 0, 1).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let reader =
            tokio::spawn(async move { c.count(Duration::from_millis(300), stop_rx).await });
        let secs = 3.0;
        let load = sim.start_load(rate);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let emitted = load.stop().await;
        let _ = stop_tx.send(true);
        let (received, bytes, ended) = reader.await.unwrap();
        println!(
            "target {rate}/s: emitted {emitted} ({:.0}/s), received {received} ({:.1} MB/s inflated), dropped: {ended}, violations: {:?}",
            emitted as f64 / secs,
            bytes as f64 / secs / 1e6,
            sim.violations()
        );
        sim.shutdown().await;
        if ended || (emitted as f64) < f64::from(rate) * secs * 0.9 {
            break;
        }
    }
}
