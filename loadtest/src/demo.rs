//! `loadtest demo`: the whole pipeline with live figures.
//!
//! Starts the simulator in this process, runs the real `arrakis ingest`
//! binary against it and a RabbitMQ vhost of its own (`arrakis-demo`),
//! consumes the work queues, and drives a steady load for a fixed time. Every
//! second it prints events/s in (simulator), confirmed and consumed, the
//! ingestor's gateway→confirm latency (p50/p99 over the last second, from
//! its `/metrics` histogram), gateway→consumer latency measured here
//! exactly, publish buffer depth and the ingestor's resident memory. At the
//! end it checks that every dispatch the simulator sent was consumed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use arrakis_loadtest::sim::{LoadHandle, SimConfig, Simulator};

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
    ensure_vhost();
    clear_redis_keys();
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
    if !args.no_consume {
        consume(&connection, &consumed).await?;
    }
    // Let the READY burst settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid);

    // Rate 0 measures an idle ingestor (memory per idle shard).
    let load = (args.rate > 0).then(|| sim.start_load(args.rate));
    println!(
        "{:>4} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11} {:>11} {:>8} {:>9}",
        "t",
        "sent/s",
        "confirm/s",
        "consume/s",
        "conf p50",
        "conf p99",
        "e2e p50",
        "e2e p99",
        "buffer",
        "rss MiB"
    );
    let mut last_hist = Histogram::default();
    let mut last_confirmed = 0.0;
    let mut last_sent = 0;
    let mut last_consumed = 0;
    let mut peak_rss = idle_rss;
    let mut peak_buffer = 0.0f64;
    let start_hist = scrape(&http)
        .await
        .map(|m| histogram(&m))
        .unwrap_or_default();
    for t in 1..=args.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
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
        println!(
            "{t:>4} {:>9} {:>9.0} {:>9} {:>11} {:>11} {:>11} {:>11} {:>8.0} {:>9.1}",
            sent - last_sent,
            confirmed - last_confirmed,
            consumed_now - last_consumed,
            fmt_secs(window.quantile(0.5)),
            fmt_secs(window.quantile(0.99)),
            fmt_us(percentile(&e2e, 0.5)),
            fmt_us(percentile(&e2e, 0.99)),
            buffer,
            rss as f64 / 1024.0,
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

    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;

    let secs = args.seconds.max(1) as f64;
    println!("---- summary ----");
    println!(
        "load:              {emitted} events in {} s ({:.0}/s offered)",
        args.seconds,
        emitted as f64 / secs
    );
    println!(
        "dispatches sent:   {} (load + READY per shard)",
        expected.len()
    );
    println!(
        "confirmed:         {confirmed:.0} ({:.0}/s over the run and the {:.1} s drain)",
        confirmed / (secs + drain_time.as_secs_f64()),
        drain_time.as_secs_f64()
    );
    if args.no_consume {
        println!("in the queues:     {received} messages (not consumed during the run)");
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

/// The demo's vhost; created with rabbitmqctl when it is on this machine,
/// which it is wherever `scripts/services.sh` set RabbitMQ up.
fn ensure_vhost() {
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["-q", "add_vhost", VHOST])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "set_permissions",
            "-p",
            VHOST,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Deletes the demo's Redis keys from an earlier run (redis-cli is there
/// wherever `scripts/services.sh` set Redis up).
fn clear_redis_keys() {
    let mut keys = Vec::new();
    for pattern in [format!("{REDIS_PREFIX}:*"), format!("{{{REDIS_PREFIX}:*")] {
        if let Ok(out) = std::process::Command::new("redis-cli")
            .args(["--scan", "--pattern", &pattern])
            .output()
        {
            keys.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    if !keys.is_empty() {
        let _ = std::process::Command::new("redis-cli")
            .arg("DEL")
            .args(&keys)
            .stdout(Stdio::null())
            .status();
    }
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

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|_| "127.0.0.1:9199".into(), |a| a.to_string())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn scrape(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
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
