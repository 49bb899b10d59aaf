//! The peer of the `shards` memory figure: N twilight-gateway shards,
//! idle, against the simulator, so an idle shard's memory can be compared
//! with the ingestor's on the same gateway, allocator and zlib backend.
//!
//! ```sh
//! cargo run --release -p arrakis-loadtest -- sim --shards 1000 \
//!     --max-concurrency 1000 --identify-spacing-ms 0 \
//!     --token "Bot sim-token" &   # prints its gateway URL
//! cargo run --release -p arrakis-loadtest --example twilight_shards -- \
//!     ws://127.0.0.1:PORT 1000
//! ```
//!
//! It starts shards `0..N` of `N`, waits until every one has seen READY
//! (and, if GUILDS_PER_SHARD is given, that many GUILD_CREATEs each), then
//! prints its VmRSS. Running it with
//! N = 1 gives the process baseline; (RSS(N) − RSS(1)) / (N − 1) is the
//! cost of one more idle shard. twilight-gateway is built with its `zlib`
//! feature (zlib-stream, on zlib-rs like the ingestor) and mimalloc with
//! `no_thp`, as in `arrakis`. A dev-dependency: only this program uses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    Config, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The token; twilight sends it as `Bot sim-token` in Identify, so the
/// simulator runs with `--token "Bot sim-token"`.
const TOKEN: &str = "sim-token";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let gateway = args
        .next()
        .expect("usage: twilight_shards GATEWAY_URL SHARDS [GUILDS_PER_SHARD]");
    let shards: u32 = args.next().and_then(|s| s.parse().ok()).expect("SHARDS");
    let guilds_per_shard: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let baseline = rss_kib();
    // One identify per bucket and no spacing to wait for: the simulator
    // allows `shards` concurrent identifies.
    let queue = InMemoryQueue::new(
        u16::try_from(shards).unwrap_or(u16::MAX),
        shards.max(1000),
        Duration::from_secs(60),
        shards.max(1000),
    );
    let config: Config<InMemoryQueue> = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
        .proxy_url(gateway.trim_end_matches('/').to_owned())
        .queue(queue)
        .build();
    let ready = Arc::new(AtomicUsize::new(0));
    let guilds = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for id in 0..shards {
        let mut shard = Shard::with_config(ShardId::new(id, shards), config.clone());
        let (ready, guilds) = (ready.clone(), guilds.clone());
        tokio::spawn(async move {
            while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
                match item {
                    Ok(Event::Ready(_)) => {
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::GuildCreate(_)) => {
                        guilds.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(err) => eprintln!("shard {id}: {err}"),
                }
            }
        });
    }
    let want_guilds = shards as usize * guilds_per_shard;
    let deadline = started + Duration::from_secs(300);
    while ready.load(Ordering::Relaxed) < shards as usize
        || guilds.load(Ordering::Relaxed) < want_guilds
    {
        assert!(
            Instant::now() < deadline,
            "not all shards ready in 300 s: {} of {shards} READY, {} of {want_guilds} GUILD_CREATEs",
            ready.load(Ordering::Relaxed),
            guilds.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the startup burst's buffers settle, as the ingestor's figure does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib();
    println!(
        "twilight-gateway 0.18: {shards} shards ready in {:.1} s; VmRSS {rss} KiB ({:.1} MiB), {baseline} KiB before the shards",
        started.elapsed().as_secs_f64(),
        rss as f64 / 1024.0
    );
}
