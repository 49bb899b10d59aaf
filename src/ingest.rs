//! The `arrakis ingest` role: Discord gateway → RabbitMQ.
//!
//! `run` is a short script of phases (linkerd2-proxy style) on the shared
//! [`Runner`]: bind the health listener, start the publisher (which connects to the broker and declares
//! the topology), ask Discord for the gateway URL and shard count, spawn one
//! task per shard, then wait for a signal or for every shard to stop, and
//! drain: shards close their sockets with a resumable code, the publisher
//! gets a bounded time to have everything confirmed.
//!
//! Task ownership: the runner owns the health task; this function the publisher task
//! and the `JoinSet` of shard tasks; shards own their sockets and hold
//! clones of the publish buffer, so the publisher ends by itself once the
//! last shard is gone and its backlog is confirmed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{EventList, Secret, ShardSpec, parse_bytes};
use crate::gateway::checkpoint::{self, CheckpointStore, CheckpointWriter};
use crate::gateway::connection::{ShardExit, ShardTask};
use crate::gateway::discovery::{self, DiscoveryError};
use crate::gateway::guilds::GuildCreates;
use crate::gateway::identify::IdentifyQueue;
use crate::gateway::progress::{Checkpoint, ShardProgress};
use crate::gateway::shard::{IdentifyProps, ShardCore, ShardId};
use crate::metrics::{EventCounters, IngestMetrics};
use crate::queue::message::Routing;
use crate::queue::publisher::{ProgressBook, PublishBuffer, Publisher, PublisherConfig};
use crate::queue::topology::QueueType;
use crate::runner::Runner;

/// GUILDS | GUILD_MEMBERS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS: what
/// Sietch needs (joins, activity). GUILD_MEMBERS is privileged: enable it
/// in the developer portal or Discord closes with 4014.
pub const DEFAULT_INTENTS: u64 = 1 | (1 << 1) | (1 << 9) | (1 << 10);

/// Options of `arrakis ingest`; each is also an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Bot token (never logged).
    #[arg(
        long,
        env = "DISCORD_TOKEN",
        value_name = "DISCORD_TOKEN",
        hide_env_values = true
    )]
    pub discord_token: Secret,
    /// Discord REST base; the gateway URL comes from `{base}/gateway/bot`.
    #[arg(
        long,
        env = "DISCORD_API_BASE",
        value_name = "DISCORD_API_BASE",
        default_value = "https://discord.com/api/v10"
    )]
    pub discord_api_base: String,
    /// RabbitMQ URL (`amqps://` for TLS).
    #[arg(
        long,
        env = "AMQP_URL",
        value_name = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// `auto`, or `FIRST-LAST/TOTAL` (inclusive) for this process's share.
    #[arg(
        long,
        env = "ARRAKIS_SHARDS",
        value_name = "ARRAKIS_SHARDS",
        default_value = "auto"
    )]
    pub shards: ShardSpec,
    /// Gateway intents bitmask.
    #[arg(long, env = "ARRAKIS_INTENTS", value_name = "ARRAKIS_INTENTS", default_value_t = DEFAULT_INTENTS)]
    pub intents: u64,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "ARRAKIS_HTTP_LISTEN",
        value_name = "ARRAKIS_HTTP_LISTEN",
        default_value = "127.0.0.1:9100"
    )]
    pub http_listen: SocketAddr,
    /// Events routed as `bulk.*` besides PRESENCE_UPDATE and TYPING_START (comma-separated).
    #[arg(
        long,
        env = "ARRAKIS_BULK_EVENTS",
        value_name = "ARRAKIS_BULK_EVENTS",
        default_value = ""
    )]
    pub bulk_events: EventList,
    /// Events not published at all (comma-separated).
    #[arg(
        long,
        env = "ARRAKIS_DROP_EVENTS",
        value_name = "ARRAKIS_DROP_EVENTS",
        default_value = ""
    )]
    pub drop_events: EventList,
    /// Queue type of the declared queues: `quorum` or `classic`.
    #[arg(
        long,
        env = "ARRAKIS_QUEUE_TYPE",
        value_name = "ARRAKIS_QUEUE_TYPE",
        default_value = "quorum"
    )]
    pub queue_type: QueueType,
    /// Bytes of dispatches held between the socket and the broker's
    /// confirm; when full, shards pause reading (never drop).
    #[arg(long, env = "ARRAKIS_PUBLISH_BUFFER", value_name = "ARRAKIS_PUBLISH_BUFFER", default_value = "256MiB", value_parser = parse_bytes)]
    pub publish_buffer: usize,
    /// Dispatches published and awaiting a confirm at once.
    #[arg(long, env = "ARRAKIS_MAX_IN_FLIGHT", value_name = "ARRAKIS_MAX_IN_FLIGHT", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,
    /// Largest inflated gateway payload accepted; larger ones end in a resume.
    #[arg(long, env = "ARRAKIS_MAX_PAYLOAD", value_name = "ARRAKIS_MAX_PAYLOAD", default_value = "32MiB", value_parser = parse_bytes)]
    pub max_payload: usize,
    /// Identify `large_threshold` (50–250).
    #[arg(long, env = "ARRAKIS_LARGE_THRESHOLD", value_name = "ARRAKIS_LARGE_THRESHOLD", default_value_t = 50, value_parser = clap::value_parser!(u8).range(50..=250))]
    pub large_threshold: u8,
    /// Seconds allowed on shutdown for outstanding confirms.
    #[arg(
        long,
        env = "ARRAKIS_DRAIN_SECS",
        value_name = "ARRAKIS_DRAIN_SECS",
        default_value_t = 10
    )]
    pub drain_secs: u64,
    /// Redis, for session checkpoints and the cross-process identify queue
    /// (`rediss://` for TLS).
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Prefix of every Redis key this deployment uses (one per bot).
    #[arg(
        long,
        env = "ARRAKIS_REDIS_PREFIX",
        value_name = "ARRAKIS_REDIS_PREFIX",
        default_value = "arrakis"
    )]
    pub redis_prefix: String,
    /// Milliseconds between checkpoint saves: the most checkpoint progress
    /// a crash can lose (it is replayed, never lost).
    #[arg(long, env = "ARRAKIS_CHECKPOINT_MS", value_name = "ARRAKIS_CHECKPOINT_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub checkpoint_ms: u64,
    /// Seconds to keep trying Redis at start-up for checkpoints before
    /// starting without them (identifying instead of resuming).
    #[arg(
        long,
        env = "ARRAKIS_CHECKPOINT_WAIT_SECS",
        value_name = "ARRAKIS_CHECKPOINT_WAIT_SECS",
        default_value_t = 30
    )]
    pub checkpoint_wait_secs: u64,
}

/// Why the role could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The health listener could not bind.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// Discord refused the token.
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// `REDIS_URL` is malformed.
    #[error("REDIS_URL: {0}")]
    RedisUrl(redis::RedisError),
}

/// Runs the ingestor until a signal, or until every shard has stopped.
///
/// # Errors
///
/// Start-up failures that retrying cannot fix: the listen address is taken,
/// or Discord refuses the token.
pub async fn run(args: IngestArgs) -> Result<ExitCode, IngestError> {
    let metrics = Arc::new(IngestMetrics::new());
    let mut runner = Runner::start(args.http_listen, metrics.clone()).await?;

    let redis = checkpoint::connect_redis(&args.redis_url).map_err(IngestError::RedisUrl)?;
    let routing = Arc::new(Routing {
        bulk: args.bulk_events.clone(),
        drop: args.drop_events.clone(),
    });

    let client = discovery::https_client();
    let mut attempt: u32 = 0;
    let info = loop {
        match discovery::fetch(&client, &args.discord_api_base, &args.discord_token).await {
            Ok(info) => break info,
            Err(err @ DiscoveryError::Unauthorized { .. }) => return Err(err.into()),
            Err(err) => {
                attempt = attempt.saturating_add(1);
                let delay = Duration::from_millis(500 * (1 << attempt.min(6)));
                tracing::error!("{err}; retrying in {delay:?}");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = runner.signalled() => {
                        runner.finish();
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
        }
    };
    let (ids, total) = args.shards.resolve(info.shards);
    let shard_ids: Vec<ShardId> = ids.map(|number| ShardId { number, total }).collect();
    tracing::info!(
        gateway = %info.url,
        recommended_shards = info.shards,
        shards = shard_ids.len(),
        first = shard_ids.first().map(|s| s.number),
        total,
        max_concurrency = info.limit.max_concurrency,
        session_starts_remaining = info.limit.remaining,
        "starting shards"
    );

    let new_session = Arc::new(tokio::sync::Notify::new());
    let progress: ProgressBook = Arc::new(
        shard_ids
            .iter()
            .map(|s| {
                (
                    s.number,
                    Arc::new(ShardProgress::notifying(new_session.clone())),
                )
            })
            .collect(),
    );
    let (buffer, rx) = PublishBuffer::new(args.publish_buffer, metrics.clone());
    let publisher = tokio::spawn(
        Publisher::new(
            PublisherConfig {
                amqp_url: args.amqp_url.clone(),
                queue_type: args.queue_type,
                routing: (*routing).clone(),
                max_in_flight: args.max_in_flight as usize,
            },
            rx,
            metrics.clone(),
            progress.clone(),
        )
        .run(),
    );

    let store = CheckpointStore::new(redis.clone(), &args.redis_prefix);
    let mut restored = load_checkpoints(&store, &shard_ids, &args).await;
    let (drained_tx, drained_rx) = watch::channel(false);
    let writer = tokio::spawn(
        CheckpointWriter::new(
            store,
            shard_ids
                .iter()
                .map(|s| (*s, progress[&s.number].clone()))
                .collect(),
            metrics.clone(),
        )
        .run(
            Duration::from_millis(args.checkpoint_ms),
            new_session,
            drained_rx,
        ),
    );

    let identify = IdentifyQueue::new(info.limit, Instant::now()).with_redis(
        redis,
        &args.redis_prefix,
        info.limit,
    );
    let gateway_url: Arc<str> = info.url.into();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut shards = JoinSet::new();
    for (i, &id) in shard_ids.iter().enumerate() {
        let core = ShardCore::new(
            id,
            IdentifyProps {
                token: args.discord_token.clone(),
                intents: args.intents,
                large_threshold: args.large_threshold,
            },
            rand::random(),
        );
        let task = ShardTask {
            core,
            gateway_url: gateway_url.clone(),
            identify: identify.clone(),
            buffer: buffer.clone(),
            routing: routing.clone(),
            metrics: metrics.clone(),
            max_payload: args.max_payload,
            shutdown: shutdown_rx.clone(),
            progress: progress[&id.number].clone(),
            restore: restored[i].take(),
            guilds: GuildCreates::default(),
            event_counters: EventCounters::default(),
        };
        shards.spawn(task.run());
    }
    drop(buffer);

    let mut fatal = Vec::new();
    loop {
        tokio::select! {
            () = runner.signalled() => {
                tracing::info!("shutting down: closing gateway connections (resumable), draining confirms");
                let _ = shutdown_tx.send(true);
                break;
            }
            joined = shards.join_next() => match joined {
                None => break,
                Some(Ok(ShardExit::Fatal(reason))) => fatal.push(reason),
                Some(Ok(ShardExit::Shutdown)) => {}
                Some(Err(err)) => tracing::error!(%err, "shard task failed"),
            },
        }
    }
    let closing = async { while shards.join_next().await.is_some() {} };
    if Runner::drain("closing the shards", Duration::from_secs(5), closing)
        .await
        .is_none()
    {
        shards.abort_all();
    }
    let drain = Duration::from_secs(args.drain_secs);
    if Runner::drain("the publisher", drain, publisher)
        .await
        .is_none()
    {
        tracing::warn!(
            unconfirmed = metrics.buffer_depth.get(),
            "unconfirmed dispatches will be replayed by the next resume"
        );
    }
    // Everything confirmed is now in the watermarks: one last save.
    let _ = drained_tx.send(true);
    let _ = Runner::drain("the final checkpoint save", Duration::from_secs(5), writer).await;
    let signalled = runner.was_signalled();
    runner.finish();
    if !signalled && !fatal.is_empty() {
        tracing::error!(
            "no shard left running ({} stopped by fatal close codes); exiting",
            fatal.len()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads every shard's checkpoint, retrying Redis for a bounded time: a
/// missing checkpoint means identifying, which loses what Discord would
/// have replayed, so it is worth a wait.
async fn load_checkpoints(
    store: &CheckpointStore,
    shards: &[ShardId],
    args: &IngestArgs,
) -> Vec<Option<Checkpoint>> {
    let deadline = Instant::now() + Duration::from_secs(args.checkpoint_wait_secs);
    let mut attempt: u32 = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), store.load(shards)).await {
            Ok(Ok(found)) => {
                let n = found.iter().filter(|c| c.is_some()).count();
                tracing::info!(found = n, of = shards.len(), "session checkpoints loaded");
                return found;
            }
            Ok(Err(err)) if Instant::now() < deadline => {
                tracing::error!(
                    "cannot reach Redis at {} for checkpoints: {err}; retrying",
                    crate::config::redact_url(&args.redis_url)
                );
            }
            Err(_) if Instant::now() < deadline => {
                tracing::error!(
                    "cannot reach Redis at {} for checkpoints: no answer; retrying",
                    crate::config::redact_url(&args.redis_url)
                );
            }
            _ => {
                tracing::error!(
                    "starting without checkpoints: Redis at {} unreachable for {} s; shards identify, and events since the last run are not replayed",
                    crate::config::redact_url(&args.redis_url),
                    args.checkpoint_wait_secs
                );
                return vec![None; shards.len()];
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt.min(8)))).await;
    }
}
