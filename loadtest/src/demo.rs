//! `loadtest demo`: the whole pipeline with live figures.
//!
//! Starts the Discord simulator and the chain simulator in this process,
//! and runs the real binaries against them: `arrakis ingest`, `arrakis
//! proxy` and two `arrakis work` (RabbitMQ vhost `arrakis-demo`, database
//! `arrakis_demo` through PgBouncer, Redis prefix `arrakis-demo`). It drives
//! a steady event load plus `/check-eligibility` interactions for a fixed
//! time. Every second it prints events/s sent, confirmed by the broker and
//! processed by the workers, the ingestor's gateway→confirm latency (p50/p99
//! over the last second, from its `/metrics` histogram), interaction
//! emit→callback p50/p99 as the simulator saw them, the work queues' depth
//! and the ingestor's and workers' resident memory. At the end it checks
//! that every dispatch the simulator sent was processed.
//!
//! With `--workers 0` the demo consumes the queues itself instead (the
//! ingest path alone, with gateway→consumer latency measured exactly), and
//! with `--no-consume` nobody consumes (publishing alone).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::time::Instant;

use arrakis_loadtest::sim::{LoadHandle, SimConfig, Simulator};

use crate::ops::{clear_redis_keys, ensure_vhost, free_addr, metric, rss_kib, scrape};
use crate::pipeline::{self, Pipeline, Settings};

const QUEUES: [&str; 3] = ["arrakis.interactions", "arrakis.events", "arrakis.bulk"];
const VHOST: &str = "arrakis-demo";
/// Redis key prefix of the demo's ingestor. Its keys describe an earlier
/// run's simulator (checkpoints, the shared session-start count), so they
/// are cleared before each run.
const REDIS_PREFIX: &str = "arrakis-demo";

/// Options of `loadtest demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Events per second the simulator emits, across all shards. The
    /// default is what a 2-core machine sustains with the broker, the
    /// simulator and the consumers all on it (docs/PERFORMANCE.md).
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Shards (all run by one ingestor process).
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// How long the load runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The `arrakis` binary.
    #[arg(long, default_value = "target/release/arrakis")]
    arrakis: PathBuf,
    /// RabbitMQ host:port (the demo uses its own vhost there).
    #[arg(long, default_value = "127.0.0.1:5672")]
    rabbitmq: String,
    /// Extra environment for the ingestor, as KEY=VALUE (repeatable).
    #[arg(long = "ingest-env")]
    ingest_env: Vec<String>,
    /// Do not consume while the load runs: measures what one ingestor can
    /// push into RabbitMQ with confirms when the broker serves no
    /// consumers. Messages are counted (queue depth) and purged at the end.
    #[arg(long)]
    no_consume: bool,
    /// `arrakis work` processes consuming the queues (0: the demo consumes
    /// them itself).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `/check-eligibility` interactions per second (with workers).
    #[arg(long, default_value_t = 20)]
    interactions: u32,
    /// Latency of every chain RPC answer, ms.
    #[arg(long, default_value_t = 200)]
    chain_latency_ms: u64,
    /// Database the workers use (through PgBouncer).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:6432/arrakis_demo"
    )]
    database_url: String,
    /// The same database, direct, for `arrakis migrate`.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/arrakis_demo"
    )]
    migrate_url: String,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// Setting something up failed.
    #[error("{0}")]
    Setup(String),
    /// Dispatches were lost.
    #[error("{0} dispatches sent by the simulator never reached RabbitMQ consumers")]
    Lost(usize),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DemoError + '_ {
    move |e| DemoError::Setup(format!("{what}: {e}"))
}

#[derive(Default)]
struct Consumed {
    ids: HashSet<String>,
    total: u64,
    latencies_us: Vec<u64>,
}

/// Runs the demo.
pub(crate) async fn run(args: Args) -> Result<(), DemoError> {
    ensure_vhost(VHOST);
    clear_redis_keys(REDIS_PREFIX);
    let amqp_url = format!("amqp://guest:guest@{}/{VHOST}", args.rabbitmq);
    let sim = Simulator::start(SimConfig {
        shards: args.shards,
        max_concurrency: args.shards.max(1),
        record_bodies: false,
        ..SimConfig::default()
    })
    .await
    .map_err(setup("starting the simulator"))?;

    let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .map_err(setup("connecting to RabbitMQ"))?;
    // Whatever an earlier run left behind would skew the counts.
    purge(&connection).await;

    let http = free_addr();
    let mut child = tokio::process::Command::new(&args.arrakis);
    child
        .arg("ingest")
        .env("DISCORD_TOKEN", &sim.config().token)
        .env("DISCORD_API_BASE", sim.api_base())
        .env("AMQP_URL", &amqp_url)
        .env("ARRAKIS_HTTP_LISTEN", &http)
        .env("ARRAKIS_REDIS_PREFIX", REDIS_PREFIX)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for kv in &args.ingest_env {
        if let Some((k, v)) = kv.split_once('=') {
            child.env(k, v);
        }
    }
    let mut child = child
        .spawn()
        .map_err(setup(&format!("starting {}", args.arrakis.display())))?;
    let pid = child.id().unwrap_or(0);

    println!(
        "demo: {} shards, {} events/s for {} s; ingestor pid {pid}, metrics on http://{http}/metrics",
        args.shards, args.rate, args.seconds
    );
    wait_for(Duration::from_secs(60), || {
        (0..args.shards).all(|s| sim.shard_status(s).is_some_and(|st| st.ready))
    })
    .await
    .map_err(|()| DemoError::Setup("shards did not become ready within 60 s".into()))?;
    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let with_workers = args.workers > 0 && !args.no_consume;
    let pipeline = if with_workers {
        let p = Pipeline::start(
            &sim,
            &Settings {
                arrakis: &args.arrakis,
                workers: args.workers,
                amqp_url: &amqp_url,
                redis_prefix: REDIS_PREFIX,
                database_url: &args.database_url,
                migrate_url: &args.migrate_url,
                chain_latency: Duration::from_millis(args.chain_latency_ms),
            },
        )
        .await
        .map_err(DemoError::Setup)?;
        println!(
            "demo: {} workers, REST proxy, chain simulator ({} ms per RPC); {} interactions/s",
            args.workers, args.chain_latency_ms, args.interactions
        );
        Some(p)
    } else {
        if !args.no_consume {
            consume(&connection, &consumed).await?;
        }
        None
    };
    // Let the READY burst settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    // Rate 0 measures an idle ingestor (memory per idle shard).
    let load = (args.rate > 0).then(|| sim.start_load(args.rate));
    println!(
        "{:>4} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8} {:>17} {:>8} {:>14}",
        "t",
        "sent/s",
        "confirm/s",
        if with_workers { "work/s" } else { "consume/s" },
        "conf p50",
        "conf p99",
        if with_workers { "int p50" } else { "e2e p50" },
        if with_workers { "int p99" } else { "e2e p99" },
        "buffer",
        "queued i/e/b",
        "ing MiB",
        "workers MiB"
    );
    let mut last_processed = 0.0;
    let mut interactions_sent: u64 = 0;
    let run_started = Instant::now();
    let mut last_hist = Histogram::default();
    let mut last_confirmed = 0.0;
    let mut last_sent = 0;
    let mut last_consumed = 0;
    let mut peak_rss = idle_rss;
    let mut peak_buffer = 0.0f64;
    let mut peak_worker_rss: Vec<u64> = Vec::new();
    let start_hist = scrape(&http)
        .await
        .map(|m| histogram(&m))
        .unwrap_or_default();
    // Rows are paced on the load's own clock, and each row's rates are per
    // second of the time it really covered: scraping takes time on a busy
    // machine, and a row must not count 1.2 s of load as one second.
    let load_started = Instant::now();
    let mut last_row = load_started;
    for t in 1..=args.seconds {
        let second = Instant::now();
        let row_end = load_started + Duration::from_secs(t);
        if pipeline.is_some() && args.interactions > 0 {
            let gap = Duration::from_secs(1) / args.interactions;
            for i in 1..=args.interactions {
                if pipeline::emit_interaction(&sim, interactions_sent, args.shards) {
                    interactions_sent += 1;
                }
                tokio::time::sleep_until((second + gap * i).min(row_end)).await;
            }
        }
        tokio::time::sleep_until(row_end).await;
        let row_secs = last_row.elapsed().as_secs_f64().max(1e-3);
        last_row = Instant::now();
        let metrics = scrape(&http).await.unwrap_or_default();
        let hist = histogram(&metrics);
        let window = hist.minus(&last_hist);
        let confirmed = metric(&metrics, "arrakis_published_total");
        let buffer = metric(&metrics, "arrakis_publish_buffer_depth");
        let sent = load.as_ref().map_or(0, LoadHandle::emitted);
        let (consumed_now, e2e) = {
            let mut c = lock(&consumed);
            (c.total, std::mem::take(&mut c.latencies_us))
        };
        let rss = rss_kib(pid);
        peak_rss = peak_rss.max(rss);
        peak_buffer = peak_buffer.max(buffer);
        let (per_sec, latencies, queued, workers_rss) = match &pipeline {
            Some(p) => {
                let (acked, dead) = p.processed().await;
                let per_sec = acked + dead - last_processed;
                last_processed = acked + dead;
                let (lat, _) = pipeline::interaction_latencies(&sim, second);
                let rss: Vec<u64> = p.worker_rss();
                for (i, r) in rss.iter().enumerate() {
                    if peak_worker_rss.len() <= i {
                        peak_worker_rss.push(0);
                    }
                    peak_worker_rss[i] = peak_worker_rss[i].max(*r);
                }
                let d = pipeline::depths(&connection).await;
                (
                    per_sec as u64,
                    lat,
                    format!("{}/{}/{}", d[0], d[1], d[2]),
                    rss.iter()
                        .map(|r| format!("{:.0}", *r as f64 / 1024.0))
                        .collect::<Vec<_>>()
                        .join("/"),
                )
            }
            None => (
                consumed_now - last_consumed,
                e2e,
                "-".to_owned(),
                "-".to_owned(),
            ),
        };
        println!(
            "{t:>4} {:>9} {:>9.0} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8.0} {:>17} {:>8.1} {:>14}",
            ((sent - last_sent) as f64 / row_secs).round() as u64,
            (confirmed - last_confirmed) / row_secs,
            (per_sec as f64 / row_secs).round() as u64,
            fmt_secs(window.quantile(0.5)),
            fmt_secs(window.quantile(0.99)),
            fmt_us(percentile(&latencies, 0.5)),
            fmt_us(percentile(&latencies, 0.99)),
            buffer,
            queued,
            rss as f64 / 1024.0,
            workers_rss,
        );
        last_hist = hist;
        last_confirmed = confirmed;
        last_sent = sent;
        last_consumed = consumed_now;
    }
    let emitted = match load {
        Some(load) => load.stop().await,
        None => 0,
    };
    let load_secs = load_started.elapsed().as_secs_f64().max(1e-3);

    // Let the tail drain, then account for every dispatch.
    let expected: Vec<String> = sim
        .sent()
        .iter()
        .map(|d| format!("{}:{}", d.session_id, d.seq))
        .collect();
    let drained = Instant::now();
    let (missing, received, distinct) = if args.no_consume {
        let _ = wait_for_async(Duration::from_secs(60), || async {
            let m = scrape(&http).await.unwrap_or_default();
            metric(&m, "arrakis_publish_buffer_depth") == 0.0
        })
        .await;
        let queued = queue_depth(&connection).await;
        let queued_n = usize::try_from(queued).unwrap_or(usize::MAX);
        (expected.len().saturating_sub(queued_n), queued, queued_n)
    } else if let Some(p) = &pipeline {
        // Interaction answers (and their chain reads) finish a little after.
        let target = expected.len() as f64;
        let _ = wait_for_async(Duration::from_secs(60), || async {
            let (acked, dead) = p.processed().await;
            acked + dead >= target && pipeline::depths(&connection).await == [0, 0, 0]
        })
        .await;
        let (acked, dead) = p.processed().await;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let processed = (acked + dead) as usize;
        (
            expected.len().saturating_sub(processed),
            processed as u64,
            processed,
        )
    } else {
        let _ = wait_for(Duration::from_secs(60), || {
            let c = lock(&consumed);
            expected.iter().all(|id| c.ids.contains(id))
        })
        .await;
        let c = lock(&consumed);
        let missing_ids: Vec<&String> = expected
            .iter()
            .filter(|id| !c.ids.contains(*id))
            .take(5)
            .collect();
        if !missing_ids.is_empty() {
            println!("missing, e.g.:    {missing_ids:?}");
        }
        let missing = expected.iter().filter(|id| !c.ids.contains(*id)).count();
        (missing, c.total, c.ids.len())
    };
    let drain_time = drained.elapsed();
    let metrics = scrape(&http).await.unwrap_or_default();
    let total = histogram(&metrics).minus(&start_hist);
    let confirmed = metric(&metrics, "arrakis_published_total");

    let worker_summary = match pipeline {
        Some(p) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (first, deferred) = pipeline::interaction_latencies(&sim, run_started);
            let done = pipeline::completions(&sim, run_started);
            let expired = p.expired().await;
            let (acked, dead) = p.processed().await;
            let codes = p.stop().await;
            Some((first, deferred, done, expired, acked, dead, codes))
        }
        None => None,
    };
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

    println!("---- summary ----");
    println!(
        "load:              {emitted} events in {load_secs:.1} s ({:.0}/s offered)",
        emitted as f64 / load_secs
    );
    println!(
        "dispatches sent:   {} (load + READY per shard)",
        expected.len()
    );
    println!(
        "confirmed:         {confirmed:.0} ({:.0}/s over the run and the {:.1} s drain)",
        confirmed / (load_secs + drain_time.as_secs_f64()),
        drain_time.as_secs_f64()
    );
    if args.no_consume {
        println!("in the queues:     {received} messages (not consumed during the run)");
    } else if let Some((first, deferred, done, expired, acked, dead, codes)) = &worker_summary {
        println!(
            "workers:           {acked:.0} acked, {dead:.0} dead-lettered (duplicates are acked without a second effect)"
        );
        println!(
            "interactions:      {interactions_sent} sent, {} answered ({deferred} deferred), {} completed; {} answered after 3 s",
            first.len(),
            done.len(),
            first.iter().filter(|us| **us >= 3_000_000).count()
        );
        println!(
            "not answered:      {expired:.0} interactions the workers found expired or unknown \
             (the load mix's INTERACTION_CREATEs are not registered with the simulator's REST side)"
        );
        println!(
            "emit→callback:     p50 {} p99 {} max {} (simulator clock, first response)",
            fmt_us(percentile(first, 0.5)),
            fmt_us(percentile(first, 0.99)),
            fmt_us(first.iter().max().copied())
        );
        println!(
            "emit→final answer: p50 {} p99 {} (after the chain read)",
            fmt_us(percentile(done, 0.5)),
            fmt_us(percentile(done, 0.99))
        );
        println!(
            "worker RSS peak:   {} MiB",
            peak_worker_rss
                .iter()
                .map(|r| format!("{:.1}", *r as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("worker/proxy exit: {codes:?}");
    } else {
        println!(
            "consumed:          {received} messages, {distinct} distinct message_ids, {} duplicates",
            received.saturating_sub(distinct as u64)
        );
    }
    println!("lost:              {missing}");
    println!(
        "gateway→confirm:   p50 {} p99 {} over {} confirms (ingestor histogram, interpolated)",
        fmt_secs(total.quantile(0.5)),
        fmt_secs(total.quantile(0.99)),
        total.count
    );
    println!("peak buffer depth: {peak_buffer:.0} dispatches");
    println!(
        "ingestor RSS:      {:.1} MiB idle after READY, {:.1} MiB peak",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    println!(
        "ingestor exit:     {:?}",
        exit.ok().and_then(Result::ok).and_then(|s| s.code())
    );

    purge(&connection).await;
    sim.shutdown().await;
    if missing > 0 {
        return Err(DemoError::Lost(missing));
    }
    Ok(())
}

fn lock(consumed: &Mutex<Consumed>) -> std::sync::MutexGuard<'_, Consumed> {
    consumed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Empties the work queues (a missing queue is fine: first run).
async fn purge(connection: &Connection) {
    for queue in QUEUES {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_purge(queue.into(), QueuePurgeOptions::default())
                .await;
        }
    }
}

/// Messages sitting in the work queues.
async fn queue_depth(connection: &Connection) -> u64 {
    let mut total = 0;
    for queue in QUEUES {
        if let Ok(channel) = connection.create_channel().await {
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..lapin::options::QueueDeclareOptions::default()
            };
            if let Ok(q) = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await
            {
                total += u64::from(q.message_count());
            }
        }
    }
    total
}

async fn wait_for_async<F, Fut>(limit: Duration, mut cond: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn consume(
    connection: &Connection,
    consumed: &Arc<Mutex<Consumed>>,
) -> Result<(), DemoError> {
    for queue in QUEUES {
        let channel = connection
            .create_channel()
            .await
            .map_err(setup("opening a channel"))?;
        channel
            .basic_qos(2_000, BasicQosOptions::default())
            .await
            .map_err(setup("setting prefetch"))?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                format!("demo-{queue}").into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(setup(&format!("consuming {queue}")))?;
        let consumed = consumed.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let now = now_us();
                let received_at = delivery.properties.headers().as_ref().and_then(|h| {
                    match h.inner().get("received_at_us") {
                        Some(AMQPValue::LongLongInt(us)) => u64::try_from(*us).ok(),
                        _ => None,
                    }
                });
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let mut c = consumed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                c.total += 1;
                c.ids.insert(id);
                if let Some(at) = received_at {
                    c.latencies_us.push(now.saturating_sub(at));
                }
            }
        });
    }
    Ok(())
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The confirm-latency histogram as (upper bound, cumulative count).
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    count: f64,
}

fn histogram(text: &str) -> Histogram {
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("arrakis_confirm_latency_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        buckets.push((le, value.trim().parse().unwrap_or(0.0)));
    }
    let count = metric(text, "arrakis_confirm_latency_seconds_count");
    Histogram { buckets, count }
}

impl Histogram {
    fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &(le, c))| (le, c - earlier.buckets.get(i).map_or(0.0, |b| b.1)))
            .collect();
        Histogram {
            buckets,
            count: self.count - earlier.count,
        }
    }

    /// Linear interpolation inside the bucket holding the quantile.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = cum - lower.1;
                let frac = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * frac);
            }
            lower = (le, cum);
        }
        None
    }
}

fn percentile(samples: &[u64], q: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx])
}

fn fmt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |s| format!("{:.2} ms", s * 1000.0))
}

fn fmt_us(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram {
            buckets: vec![
                (0.001, 0.0),
                (0.002, 50.0),
                (0.004, 100.0),
                (f64::INFINITY, 100.0),
            ],
            count: 100.0,
        };
        assert!((h.quantile(0.5).unwrap() - 0.002).abs() < 1e-9);
        assert!((h.quantile(0.25).unwrap() - 0.0015).abs() < 1e-9);
        assert!((h.quantile(0.99).unwrap() - 0.00396).abs() < 1e-9);
    }

    #[test]
    fn metric_lines_are_read() {
        let text = "# HELP x\narrakis_published_total 42\narrakis_publish_buffer_depth 7\n";
        assert!((metric(text, "arrakis_published_total") - 42.0).abs() < f64::EPSILON);
        assert!((metric(text, "arrakis_publish_buffer_depth") - 7.0).abs() < f64::EPSILON);
        assert!(metric(text, "arrakis_missing").abs() < f64::EPSILON);
    }
}
