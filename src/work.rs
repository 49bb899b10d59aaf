//! The `arrakis work` role: RabbitMQ work queues → handlers with Redis,
//! Postgres, the chain and the REST proxy.
//!
//! `run` is a short script of phases on the shared [`Runner`]: bind the
//! health listener, connect Redis and Postgres (retrying with back-off,
//! not ready meanwhile; a tenant role that could bypass row-level security
//! stops start-up), start two consumers — interactions on a connection of
//! their own, events and bulk on another, so no backlog of events is ever
//! in front of an interaction — and the scheduler, then wait for SIGTERM:
//! stop consuming, let messages in flight finish within
//! `ARRAKIS_DRAIN_SECS`, exit. Whatever was not acked goes back to its
//! queue for another worker.
//!
//! Task ownership: the runner owns the health task; this function owns the
//! two consumer tasks, the scheduler task and the readiness probe task.
//! Replicas coordinate only through RabbitMQ, Redis and Postgres.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::{Secret, redact_url};
use crate::health::RouteAnswer;
use crate::proxy::{parse_api_base, parse_duration};
use crate::queue::consumer::{Consumer, ConsumerConfig, ConsumerMetrics, Lane};
use crate::queue::depth::{self, DepthMetrics};
use crate::queue::topology::{DEAD_LETTER_QUEUE, QueueType};
use crate::runner::Runner;
use crate::worker::chain::{ChainClient, ChainConfig};
use crate::worker::dashboard::{self, Dashboard};
use crate::worker::db::{Db, DbConfig, DbError};
use crate::worker::dispatch::{INTERACTIONS_QUEUE, WorkerHandler};
use crate::worker::respond::{InteractionMetrics, RespondConfig, Responder};
use crate::worker::rest::ProxyClient;
use crate::worker::services::{EffectMetrics, Services};
use crate::worker::sietch::{activity, sync, verify};
use crate::worker::state::{CommandLimits, Job, RedisMetrics, Scheduler, State};

/// Options of `arrakis work`; each is also an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkArgs {
    /// RabbitMQ URL (`amqps://` for TLS).
    #[arg(
        long,
        env = "AMQP_URL",
        value_name = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Redis for dedupe keys, limits, sessions and job locks.
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Postgres (may be PgBouncer in transaction mode).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/arrakis",
        hide_env_values = true
    )]
    pub database_url: String,
    /// REST base the worker calls: the REST proxy.
    #[arg(long, env = "ARRAKIS_REST_URL", value_name = "ARRAKIS_REST_URL", default_value = "http://127.0.0.1:8090/api/v10", value_parser = parse_api_base)]
    pub rest_url: String,
    /// Secret presented to the REST proxy.
    #[arg(
        long,
        env = "ARRAKIS_PROXY_SECRET",
        value_name = "ARRAKIS_PROXY_SECRET",
        hide_env_values = true
    )]
    pub proxy_secret: Option<Secret>,
    /// Comma-separated JSON-RPC endpoints, rotated (chain features are off
    /// without it).
    #[arg(
        long,
        env = "ARRAKIS_CHAIN_RPC_URLS",
        value_name = "ARRAKIS_CHAIN_RPC_URLS",
        hide_env_values = true
    )]
    pub chain_rpc_urls: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "ARRAKIS_HTTP_LISTEN",
        value_name = "ARRAKIS_HTTP_LISTEN",
        default_value = "127.0.0.1:9102"
    )]
    pub http_listen: SocketAddr,
    /// Queue type used when declaring the topology: `quorum` or `classic`.
    #[arg(
        long,
        env = "ARRAKIS_QUEUE_TYPE",
        value_name = "ARRAKIS_QUEUE_TYPE",
        default_value = "quorum"
    )]
    pub queue_type: QueueType,
    /// Interactions handled at once (prefetch of `arrakis.interactions`).
    #[arg(long, env = "ARRAKIS_INTERACTION_PREFETCH", value_name = "ARRAKIS_INTERACTION_PREFETCH", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub interaction_prefetch: u16,
    /// Events handled at once (prefetch of `arrakis.events`).
    #[arg(long, env = "ARRAKIS_EVENT_PREFETCH", value_name = "ARRAKIS_EVENT_PREFETCH", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..))]
    pub event_prefetch: u16,
    /// Bulk events handled at once (prefetch of `arrakis.bulk`).
    #[arg(long, env = "ARRAKIS_BULK_PREFETCH", value_name = "ARRAKIS_BULK_PREFETCH", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub bulk_prefetch: u16,
    /// Attempts before a failing message is dead-lettered.
    #[arg(long, env = "ARRAKIS_MAX_ATTEMPTS", value_name = "ARRAKIS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
    /// How long a dedupe claim holds a message for the worker handling it;
    /// a worker that dies mid-effect delays that message's redelivery by
    /// at most this.
    #[arg(long, env = "ARRAKIS_DEDUPE_LEASE", value_name = "ARRAKIS_DEDUPE_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub dedupe_lease: Duration,
    /// How long a processed message id is remembered in Redis.
    #[arg(long, env = "ARRAKIS_DEDUPE_KEEP", value_name = "ARRAKIS_DEDUPE_KEEP", default_value = "86400s", value_parser = parse_duration)]
    pub dedupe_keep: Duration,
    /// An interaction handler still running after this long is deferred.
    #[arg(long, env = "ARRAKIS_DEFER_AFTER", value_name = "ARRAKIS_DEFER_AFTER", default_value = "1s", value_parser = parse_duration)]
    pub defer_after: Duration,
    /// Commands per user per second (all workers together).
    #[arg(long, env = "ARRAKIS_USER_COMMANDS_PER_SEC", value_name = "ARRAKIS_USER_COMMANDS_PER_SEC", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub user_commands_per_sec: u32,
    /// Commands per guild per second (all workers together).
    #[arg(long, env = "ARRAKIS_GUILD_COMMANDS_PER_SEC", value_name = "ARRAKIS_GUILD_COMMANDS_PER_SEC", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub guild_commands_per_sec: u32,
    /// Postgres connections in this worker's pool.
    #[arg(long, env = "ARRAKIS_DB_POOL", value_name = "ARRAKIS_DB_POOL", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: u32,
    /// The role tenant queries run as (created by `arrakis migrate`).
    #[arg(
        long,
        env = "ARRAKIS_DB_TENANT_ROLE",
        value_name = "ARRAKIS_DB_TENANT_ROLE",
        default_value = "arrakis_tenant"
    )]
    pub db_tenant_role: String,
    /// Prefix of the Redis keys; replicas of one deployment share it.
    #[arg(long, env = "ARRAKIS_REDIS_PREFIX", value_name = "ARRAKIS_REDIS_PREFIX", default_value = "arrakis", value_parser = crate::proxy::parse_prefix)]
    pub redis_prefix: String,
    /// Public base URL of this worker's verification endpoint, linked by
    /// `/verify start` (a load balancer in front of the workers'
    /// `ARRAKIS_HTTP_LISTEN`); `http://<ARRAKIS_HTTP_LISTEN>/verify` if unset.
    #[arg(long, env = "ARRAKIS_VERIFY_URL", value_name = "ARRAKIS_VERIFY_URL")]
    pub verify_url: Option<String>,
    /// Secret guarding the dead-letter dashboard (`/dlq` on
    /// `ARRAKIS_HTTP_LISTEN`); the dashboard is off without it.
    #[arg(
        long,
        env = "ARRAKIS_ADMIN_SECRET",
        value_name = "ARRAKIS_ADMIN_SECRET",
        hide_env_values = true
    )]
    pub admin_secret: Option<Secret>,
    /// Seconds allowed on shutdown for messages in flight.
    #[arg(
        long,
        env = "ARRAKIS_DRAIN_SECS",
        value_name = "ARRAKIS_DRAIN_SECS",
        default_value_t = 10
    )]
    pub drain_secs: u64,
}

/// Why the role could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The health listener could not bind.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The database is set up so that tenant isolation cannot be trusted.
    #[error("refusing to run tenant queries: {0}")]
    Unsafe(String),
}

/// Readiness and metrics of the role.
#[derive(Debug)]
struct WorkStatus {
    registry: Registry,
    consumers: Arc<ConsumerMetrics>,
    redis_up: AtomicBool,
    db_up: AtomicBool,
    /// Set once the clients are up; the verification endpoint needs them.
    services: OnceLock<Arc<Services>>,
    /// The dead-letter dashboard, when `ARRAKIS_ADMIN_SECRET` is set.
    dashboard: Option<Dashboard>,
}

impl crate::health::RoleStatus for WorkStatus {
    fn not_ready_reason(&self) -> Option<String> {
        let mut why = Vec::new();
        if !self.redis_up.load(Ordering::Relaxed) {
            why.push("Redis unreachable".to_owned());
        }
        if !self.db_up.load(Ordering::Relaxed) {
            why.push("Postgres unreachable".to_owned());
        }
        if let Some(reason) = self.consumers.not_ready_reason() {
            why.push(reason);
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn serves(&self, path: &str) -> bool {
        path.starts_with("/verify/")
            || (self.dashboard.is_some() && dashboard::is_dashboard_path(path))
    }

    fn route(&self, request: crate::health::RouteRequest) -> crate::health::RouteFuture {
        if let Some(dashboard) = &self.dashboard
            && dashboard::is_dashboard_path(&request.path)
        {
            return dashboard.route(request);
        }
        let services = self.services.get().cloned();
        Box::pin(async move {
            let Some(services) = services else {
                return RouteAnswer::new(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"ok":false,"error":"starting up"}"#,
                );
            };
            let session = request.path.trim_start_matches("/verify/");
            let (status, body) = match request.method {
                hyper::Method::GET => verify::describe(&services, session).await,
                hyper::Method::POST => verify::submit(&services, session, &request.body).await,
                _ => (
                    hyper::StatusCode::METHOD_NOT_ALLOWED,
                    serde_json::json!({ "ok": false, "error": "GET or POST" }),
                ),
            };
            RouteAnswer::new(status, "application/json", body.to_string())
        })
    }
}

/// Runs the worker until a signal.
///
/// # Errors
///
/// Start-up failures that retrying cannot fix: the listen address is taken,
/// a setting is malformed, or the tenant role could bypass row-level
/// security.
pub async fn run(args: WorkArgs) -> Result<ExitCode, WorkError> {
    let mut registry = Registry::with_prefix("arrakis");
    let consumer_metrics = ConsumerMetrics::register(&mut registry);
    let interaction_metrics = InteractionMetrics::register(&mut registry);
    let effect_metrics = EffectMetrics::register(&mut registry);
    let depth_metrics = DepthMetrics::register(&mut registry);
    let redis_metrics = RedisMetrics::register(&mut registry);
    let worker_id = format!(
        "{}-{}-{:06x}",
        hostname(),
        std::process::id(),
        rand::random::<u32>() & 0xFF_FFFF
    );
    let dashboard = args.admin_secret.as_ref().map(|secret| {
        let config = crate::queue::dead_letters::DeadLettersConfig {
            amqp_url: args.amqp_url.clone(),
            queue_type: args.queue_type,
            connection_name: format!("arrakis-work-dlq {worker_id}"),
        };
        Dashboard::new(secret, config, &mut registry)
    });
    let status = Arc::new(WorkStatus {
        dashboard,
        registry,
        consumers: consumer_metrics.clone(),
        redis_up: AtomicBool::new(false),
        db_up: AtomicBool::new(false),
        services: OnceLock::new(),
    });
    let mut runner = Runner::start(args.http_listen, status.clone()).await?;

    let chain = args
        .chain_rpc_urls
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|urls| {
            let config = ChainConfig::from_urls(urls)
                .map_err(|e| WorkError::Config(format!("ARRAKIS_CHAIN_RPC_URLS: {e}")))?;
            ChainClient::new(config)
                .map_err(|e| WorkError::Config(format!("ARRAKIS_CHAIN_RPC_URLS: {e}")))
        })
        .transpose()?;
    if chain.is_none() {
        tracing::warn!("ARRAKIS_CHAIN_RPC_URLS is not set: chain commands will say so");
    }

    let state_prefix = format!("{}:worker:", args.redis_prefix);
    let Some(state) = connect_state(&args.redis_url, &state_prefix, &mut runner).await else {
        runner.finish();
        return Ok(ExitCode::SUCCESS);
    };
    let state = state.with_metrics(redis_metrics);
    status.redis_up.store(true, Ordering::Relaxed);
    let db_config = DbConfig {
        url: args.database_url.clone(),
        max_connections: args.db_pool as usize,
        acquire_timeout: Duration::from_secs(2),
        tenant_role: args.db_tenant_role.clone(),
    };
    let Some(db) = connect_db(db_config, &args.database_url, &mut runner).await? else {
        runner.finish();
        return Ok(ExitCode::SUCCESS);
    };
    status.db_up.store(true, Ordering::Relaxed);

    let responder = Responder::new(
        ProxyClient::new(&args.rest_url, args.proxy_secret.clone()),
        RespondConfig {
            defer_after: args.defer_after,
            ..RespondConfig::default()
        },
        interaction_metrics,
    );
    let services = Arc::new(Services {
        worker_id: worker_id.clone(),
        state: state.clone(),
        db: db.clone(),
        chain,
        responder,
        limits: CommandLimits {
            per_user: args.user_commands_per_sec,
            per_guild: args.guild_commands_per_sec,
            window: Duration::from_secs(1),
        },
        dedupe_lease: args.dedupe_lease,
        dedupe_keep: args.dedupe_keep,
        metrics: effect_metrics,
        community_chains: crate::worker::services::ChainCache::default(),
        verify_url: args
            .verify_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/verify", args.http_listen)),
    });
    let _ = status.services.set(services.clone());
    // Events, bulk and scheduled jobs together may hold only part of the
    // pool, so a burst of them never leaves an interaction (3 s deadline)
    // waiting for a connection.
    let background_services = Arc::new(Services {
        db: db.share(background_connections(args.db_pool as usize)),
        ..(*services).clone()
    });
    let interaction_handler = Arc::new(WorkerHandler::new(services.clone()));
    let background_handler = Arc::new(WorkerHandler::new(background_services.clone()));
    let (stop_tx, stop) = watch::channel(false);
    let drain = Duration::from_secs(args.drain_secs);
    let consumer = |name: &str, lanes: Vec<Lane>, handler: Arc<WorkerHandler>| {
        Consumer::new(
            ConsumerConfig {
                amqp_url: args.amqp_url.clone(),
                queue_type: args.queue_type,
                connection_name: format!("arrakis-work-{name} {worker_id}"),
                lanes,
                max_attempts: args.max_attempts,
            },
            handler,
            consumer_metrics.clone(),
        )
    };
    let interactions = tokio::spawn(
        consumer(
            "interactions",
            vec![Lane {
                queue: INTERACTIONS_QUEUE,
                prefetch: args.interaction_prefetch,
            }],
            interaction_handler,
        )
        .run(stop.clone(), drain),
    );
    let background = tokio::spawn(
        consumer(
            "events",
            vec![
                Lane {
                    queue: "arrakis.events",
                    prefetch: args.event_prefetch,
                },
                Lane {
                    queue: "arrakis.bulk",
                    prefetch: args.bulk_prefetch,
                },
            ],
            background_handler,
        )
        .run(stop.clone(), drain),
    );
    let scheduler = {
        let db = background_services.db.clone();
        let prune_db = db.clone();
        let mut stopped = stop.clone();
        tokio::spawn(
            Scheduler::new(state.clone(), worker_id.clone())
                .add(
                    Job {
                        name: "prune-processed".to_owned(),
                        every: Duration::from_secs(3600),
                    },
                    move |_lease| {
                        let db = prune_db.clone();
                        async move {
                            let n = db
                                .prune_processed(Duration::from_secs(7 * 86_400))
                                .await
                                .map_err(|e| e.to_string())?;
                            tracing::info!(pruned = n, "old processed-message records pruned");
                            Ok(())
                        }
                    },
                )
                .add(
                    Job {
                        name: "eligibility-sweep".to_owned(),
                        every: Duration::from_secs(60),
                    },
                    {
                        let services = background_services.clone();
                        move |_lease| {
                            let services = services.clone();
                            async move { sweep(&services).await }
                        }
                    },
                )
                .add(
                    Job {
                        name: "activity-decay".to_owned(),
                        every: Duration::from_secs(6 * 3600),
                    },
                    {
                        let db = db.clone();
                        move |_lease| {
                            let db = db.clone();
                            async move {
                                let n =
                                    activity::decay_all(&db).await.map_err(|e| e.to_string())?;
                                tracing::info!(rows = n, "activity scores decayed by 10 %");
                                Ok(())
                            }
                        }
                    },
                )
                .add(
                    Job {
                        name: "badges".to_owned(),
                        every: Duration::from_secs(86_400),
                    },
                    {
                        let db = db.clone();
                        move |_lease| {
                            let db = db.clone();
                            async move {
                                let n = activity::award_badges_all(&db)
                                    .await
                                    .map_err(|e| e.to_string())?;
                                tracing::info!(awarded = n, "daily badge check");
                                Ok(())
                            }
                        }
                    },
                )
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }),
        )
    };
    let probe = tokio::spawn(probe(state, db, status.clone()));
    let depth = tokio::spawn(depth::poll(
        args.amqp_url.clone(),
        format!("arrakis-work-depth {worker_id}"),
        vec![
            INTERACTIONS_QUEUE,
            "arrakis.events",
            "arrakis.bulk",
            DEAD_LETTER_QUEUE,
        ],
        depth::POLL_EVERY,
        depth_metrics,
        stop.clone(),
    ));
    tracing::info!(
        worker = %worker_id,
        amqp = %redact_url(&args.amqp_url),
        redis = %redact_url(&args.redis_url),
        database = %redact_url(&args.database_url),
        rest = %args.rest_url,
        "worker started"
    );

    runner.signalled().await;
    tracing::info!("shutting down: no new messages; finishing those in flight");
    let _ = stop_tx.send(true);
    let bound = drain + Duration::from_secs(2);
    let consumers = async {
        let _ = interactions.await;
        let _ = background.await;
    };
    let _ = Runner::drain("the consumers", bound, consumers).await;
    let _ = Runner::drain("the scheduler", Duration::from_secs(5), scheduler).await;
    probe.abort();
    let _ = Runner::drain("the queue depth poller", Duration::from_secs(2), depth).await;
    runner.finish();
    Ok(ExitCode::SUCCESS)
}

/// Syncs every community that is due (6 h since its last sync, or 5 min
/// since a failed attempt), one after another; each sync holds its own
/// community lock, so workers sweeping at once never sync one community
/// twice.
/// Connections background work may hold at once out of a pool of `pool`:
/// a quarter (at least one) stays for interactions, unless the pool is a
/// single connection.
fn background_connections(pool: usize) -> usize {
    pool.saturating_sub((pool / 4).max(1)).max(1)
}

async fn sweep(services: &Services) -> Result<(), String> {
    let due = services
        .db
        .communities_due(sync::SYNC_EVERY, sync::RETRY_AFTER)
        .await
        .map_err(|e| e.to_string())?;
    for community in due {
        // Each outcome is logged and recorded on the community by run().
        let _ = sync::run(services, community).await;
    }
    Ok(())
}

/// Connects Redis, retrying with back-off until it answers; `None` if a
/// signal came first.
async fn connect_state(url: &str, prefix: &str, runner: &mut Runner) -> Option<State> {
    let mut attempt: u32 = 0;
    loop {
        match State::connect(url, prefix).await {
            Ok(state) => match state.ping().await {
                Ok(_) => return Some(state),
                Err(err) => tracing::error!("cannot reach Redis at {}: {err}", redact_url(url)),
            },
            Err(err) => tracing::error!("cannot reach Redis at {}: {err}", redact_url(url)),
        }
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(retry_delay(attempt)) => {}
            () = runner.signalled() => return None,
        }
    }
}

/// Connects Postgres, retrying while it is unreachable; an unsafe tenant
/// role or a missing schema is an error.
async fn connect_db(
    config: DbConfig,
    url: &str,
    runner: &mut Runner,
) -> Result<Option<Db>, WorkError> {
    let mut attempt: u32 = 0;
    loop {
        match Db::connect(config.clone()).await {
            Ok(db) => return Ok(Some(db)),
            Err(err @ DbError::Unsafe(_)) => return Err(WorkError::Unsafe(err.to_string())),
            Err(err) if err.is_transient() => {
                tracing::error!("cannot reach Postgres at {}: {err}", redact_url(url));
            }
            Err(err) => {
                tracing::error!(
                    "Postgres at {} is not ready for the worker: {err} (has `arrakis migrate` run?)",
                    redact_url(url)
                );
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(retry_delay(attempt)) => {}
            () = runner.signalled() => return Ok(None),
        }
    }
}

/// Keeps `/readyz` honest about Redis and Postgres.
async fn probe(state: State, db: Db, status: Arc<WorkStatus>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let redis = tokio::time::timeout(Duration::from_secs(1), state.ping()).await;
        status
            .redis_up
            .store(matches!(redis, Ok(Ok(_))), Ordering::Relaxed);
        let pg = tokio::time::timeout(Duration::from_secs(2), db.ping()).await;
        status
            .db_up
            .store(matches!(pg, Ok(Ok(_))), Ordering::Relaxed);
    }
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(5)).min(5_000))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

#[cfg(test)]
mod tests {
    use super::background_connections;

    #[test]
    fn a_quarter_of_the_pool_stays_for_interactions() {
        assert_eq!(background_connections(16), 12);
        assert_eq!(background_connections(3), 2);
        assert_eq!(background_connections(2), 1);
        assert_eq!(background_connections(1), 1);
    }
}
