//! `loadtest worker-bench`: events/s one `arrakis work` process sustains.
//!
//! Fills a work queue of a vhost of its own (`arrakis-bench`) with
//! realistic dispatches published straight to RabbitMQ (no gateway in the
//! way), starts one worker against it, Redis and Postgres, and times the
//! drain from the worker's own `/metrics`: messages acked per second, peak
//! resident memory, and what was left or dead-lettered. `--kind noop`
//! measures the consumer path alone (PRESENCE_UPDATE, which has no
//! handler: decode, ack); `--kind postgres` the full effect path
//! (GUILD_MEMBER_ADD: dedupe claim in Redis, a tenant transaction through
//! PgBouncer with the idempotency record, finish).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::time::Instant;

const VHOST: &str = "arrakis-bench";
const REDIS_PREFIX: &str = "arrakis-bench";

/// What the worker is given to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// PRESENCE_UPDATE on `arrakis.bulk`: no handler, decode and ack.
    Noop,
    /// GUILD_MEMBER_ADD on `arrakis.events`: Redis claim + Postgres write.
    Postgres,
}

/// Options of `loadtest worker-bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Which handler path to measure.
    #[arg(long, value_enum, default_value = "noop")]
    kind: Kind,
    /// Messages queued before the worker starts.
    #[arg(long, default_value_t = 50_000)]
    messages: u32,
    /// The `arrakis` binary.
    #[arg(long, default_value = "target/release/arrakis")]
    arrakis: PathBuf,
    /// RabbitMQ host:port (the bench uses its own vhost there).
    #[arg(long, default_value = "127.0.0.1:5672")]
    rabbitmq: String,
    /// Postgres database the worker writes (through PgBouncer); migrated
    /// first with `arrakis migrate` on the direct URL.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:6432/arrakis_bench"
    )]
    database_url: String,
    /// Direct URL of the same database, for `arrakis migrate`.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/arrakis_bench"
    )]
    migrate_url: String,
    /// Extra environment for the worker, as KEY=VALUE (repeatable).
    #[arg(long = "worker-env")]
    worker_env: Vec<String>,
}

/// Why the bench failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BenchError {
    /// Setting something up failed.
    #[error("{0}")]
    Setup(String),
    /// The worker did not process everything.
    #[error("{0} of the queued messages were not acked by the worker")]
    Unprocessed(u64),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

/// Runs the bench.
pub(crate) async fn run(args: Args) -> Result<(), BenchError> {
    crate::ops::ensure_vhost(VHOST);
    crate::ops::clear_redis_keys(REDIS_PREFIX);
    let status = tokio::process::Command::new(&args.arrakis)
        .arg("migrate")
        .env("DATABASE_URL", &args.migrate_url)
        .stdout(Stdio::null())
        .status()
        .await
        .map_err(setup("running arrakis migrate"))?;
    if !status.success() {
        return Err(BenchError::Setup(format!(
            "arrakis migrate failed: {status}"
        )));
    }
    let amqp_url = format!("amqp://guest:guest@{}/{VHOST}", args.rabbitmq);
    let connection = Connection::connect(&amqp_url, ConnectionProperties::default())
        .await
        .map_err(setup("connecting to RabbitMQ"))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(setup("opening a channel"))?;
    declare(&channel).await?;
    let (queue, routing_key, event) = match args.kind {
        Kind::Noop => ("arrakis.bulk", "bulk.PRESENCE_UPDATE", "PRESENCE_UPDATE"),
        Kind::Postgres => (
            "arrakis.events",
            "event.GUILD_MEMBER_ADD",
            "GUILD_MEMBER_ADD",
        ),
    };
    let _ = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await;
    let session = format!("bench{:08x}", rand::random::<u32>());
    let published = Instant::now();
    publish(&channel, args.messages, &session, routing_key, event).await?;
    println!(
        "queued {} {event} on {queue} in {:.1} s",
        args.messages,
        published.elapsed().as_secs_f64()
    );

    let http = crate::ops::free_addr();
    let mut worker = tokio::process::Command::new(&args.arrakis);
    worker
        .arg("work")
        .env("AMQP_URL", &amqp_url)
        .env("DATABASE_URL", &args.database_url)
        .env("ARRAKIS_REDIS_PREFIX", REDIS_PREFIX)
        .env("ARRAKIS_HTTP_LISTEN", &http)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for kv in &args.worker_env {
        if let Some((k, v)) = kv.split_once('=') {
            worker.env(k, v);
        }
    }
    let mut worker = worker
        .spawn()
        .map_err(setup(&format!("starting {}", args.arrakis.display())))?;
    let pid = worker.id().unwrap_or(0);
    let series = format!("arrakis_worker_messages_total{{queue=\"{queue}\",outcome=\"ack\"}}");
    let target = f64::from(args.messages);
    let mut first: Option<(Instant, f64)> = None;
    let mut peak_rss = 0;
    let mut last = 0.0;
    let mut last_progress = Instant::now();
    println!(
        "{:>6} {:>10} {:>10} {:>9}",
        "t", "acked", "acked/s", "rss MiB"
    );
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let metrics = crate::ops::scrape(&http).await.unwrap_or_default();
        let acked = crate::ops::metric(&metrics, &series);
        peak_rss = peak_rss.max(crate::ops::rss_kib(pid));
        if acked > last {
            last_progress = Instant::now();
            if first.is_none() {
                first = Some((Instant::now(), acked));
            }
        }
        println!(
            "{:>6.1} {:>10.0} {:>10.0} {:>9.1}",
            started.elapsed().as_secs_f64(),
            acked,
            (acked - last) * 2.0,
            crate::ops::rss_kib(pid) as f64 / 1024.0
        );
        last = acked;
        if acked >= target || last_progress.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let done = Instant::now();
    let metrics = crate::ops::scrape(&http).await.unwrap_or_default();
    let dead = crate::ops::metric(
        &metrics,
        &format!("arrakis_worker_messages_total{{queue=\"{queue}\",outcome=\"dead_letter\"}}"),
    );
    if let Some(pid) = worker.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), worker.wait()).await;
    let _ = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await;

    let (t0, at_first) = first.unwrap_or((done, 0.0));
    let span = done.duration_since(t0).as_secs_f64().max(0.001);
    println!("---- summary ({:?}) ----", args.kind);
    println!("acked:          {last:.0} of {}", args.messages);
    println!("dead-lettered:  {dead:.0}");
    println!(
        "throughput:     {:.0} messages/s (from the first ack to the last)",
        (last - at_first) / span
    );
    println!("worker RSS:     {:.1} MiB peak", peak_rss as f64 / 1024.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let missing = (target - last).max(0.0) as u64;
    if missing > 0 {
        return Err(BenchError::Unprocessed(missing));
    }
    Ok(())
}

async fn declare(channel: &lapin::Channel) -> Result<(), BenchError> {
    // The worker declares the full topology itself; the bench only needs the
    // queue it fills to exist with the same arguments before publishing.
    let conn_worker_args = |dlx: bool| {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        if dlx {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("arrakis.dead".into()),
            );
        }
        args
    };
    let durable = lapin::options::ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            "arrakis.gateway".into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(setup("declaring arrakis.gateway"))?;
    channel
        .exchange_declare(
            "arrakis.dead".into(),
            lapin::ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(setup("declaring arrakis.dead"))?;
    for (queue, binding) in [("arrakis.events", "event.#"), ("arrakis.bulk", "bulk.#")] {
        channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                conn_worker_args(true),
            )
            .await
            .map_err(setup(&format!("declaring {queue}")))?;
        channel
            .queue_bind(
                queue.into(),
                "arrakis.gateway".into(),
                binding.into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
            .map_err(setup(&format!("binding {queue}")))?;
    }
    Ok(())
}

async fn publish(
    channel: &lapin::Channel,
    n: u32,
    session: &str,
    routing_key: &str,
    event: &str,
) -> Result<(), BenchError> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(setup("enabling confirms"))?;
    let mut pending = std::collections::VecDeque::new();
    for seq in 1..=n {
        let guild = 81_384_788_765_712_384u64 + u64::from(seq % 50);
        let body = match event {
            "GUILD_MEMBER_ADD" => format!(
                r#"{{"t":"GUILD_MEMBER_ADD","s":{seq},"op":0,"d":{{"guild_id":"{guild}","joined_at":"2026-12-03T10:00:00.000000+00:00","roles":[],"deaf":false,"mute":false,"flags":0,"user":{{"id":"{}","username":"bench{seq}","global_name":"Bench {seq}","avatar":null,"discriminator":"0"}}}}}}"#,
                300_000_000_000_000_000u64 + u64::from(seq)
            ),
            _ => format!(
                r#"{{"t":"PRESENCE_UPDATE","s":{seq},"op":0,"d":{{"guild_id":"{guild}","status":"online","client_status":{{"desktop":"online"}},"user":{{"id":"{}"}},"activities":[{{"type":0,"name":"Arrakis","created_at":1764756000000,"timestamps":{{"start":1764755000000}}}}]}}}}"#,
                300_000_000_000_000_000u64 + u64::from(seq)
            ),
        };
        let mut headers = FieldTable::default();
        headers.insert("shard_id".into(), AMQPValue::LongInt(0));
        headers.insert("shard_count".into(), AMQPValue::LongInt(1));
        headers.insert("seq".into(), AMQPValue::LongLongInt(i64::from(seq)));
        headers.insert(
            "guild_id".into(),
            AMQPValue::LongString(guild.to_string().into()),
        );
        headers.insert("received_at_us".into(), AMQPValue::LongLongInt(now_us()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_type(event.into())
            .with_message_id(format!("{session}:{seq}").into())
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                "arrakis.gateway".into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .map_err(setup("publishing"))?;
        pending.push_back(confirm);
        if pending.len() >= 2_000
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await.map_err(setup("confirm"))?;
        }
    }
    for confirm in pending {
        confirm.await.map_err(setup("confirm"))?;
    }
    Ok(())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
