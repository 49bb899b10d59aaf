//! The state every worker replica shares, in Redis: dedupe claims, command
//! limits and cooldowns, interactive sessions, locks with fencing, and the
//! scheduler built on them. No per-process maps: anything two workers must
//! agree on lives here, and every key has a TTL.
//!
//! Keys live under one caller-given prefix (`ARRAKIS_REDIS_PREFIX` +
//! `:worker:`). Keys a script touches together share a hash tag, so the
//! layout is Redis Cluster-safe. Each operation is one round trip (a
//! command or a Lua script), atomic on the server.
//!
//! - [`dedupe`]: one effect per message id across all workers;
//! - [`limits`]: per-user and per-guild command rates, cooldowns;
//! - [`session`]: interactive sessions (browsing state, verify nonces);
//! - [`lock`]: leases with fencing tokens;
//! - [`roster`]: Redis copies of Postgres id sets, for hot-path filters;
//! - [`schedule`]: periodic jobs run by whichever worker holds the lease.

pub mod dedupe;
pub mod limits;
pub mod lock;
pub mod roster;
pub mod schedule;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

pub use dedupe::Claim;
pub use limits::{CommandLimits, LimitVerdict};
pub use lock::Lease;
pub use schedule::{Job, Scheduler, trigger};

/// Longest a state call waits for Redis before failing fast.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a state call failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `REDIS_URL` cannot be used.
    #[error("REDIS_URL: {0}")]
    Url(String),
    /// Redis answered with an error or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A script returned something it never returns.
    #[error("unexpected Redis reply: {0}")]
    Reply(String),
}

impl StateError {
    /// Whether a retry may succeed (every failure but a bad URL or a
    /// broken script).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Url(_) | Self::Reply(_) => false,
            Self::Timeout(_) => true,
            Self::Redis(e) => !matches!(e.kind(), redis::ErrorKind::InvalidClientConfig),
        }
    }
}

/// Round-trip times and failures of the state's Redis calls, exposed as
/// `arrakis_redis_latency_seconds` and `arrakis_redis_errors_total` (the
/// names the REST proxy uses for its limiter calls).
#[derive(Debug)]
pub struct RedisMetrics {
    latency: Histogram,
    errors: Counter,
}

impl RedisMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            errors: Counter::default(),
        };
        registry.register(
            "redis_latency_seconds",
            "Worker state round trips to Redis (command, pipeline or script)",
            m.latency.clone(),
        );
        registry.register(
            "redis_errors",
            "Worker state calls to Redis that failed or timed out",
            m.errors.clone(),
        );
        Arc::new(m)
    }

    fn observe<T>(&self, started: Instant, result: &Result<T, StateError>) {
        self.latency.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.inc();
        }
    }
}

/// A handle on the shared state; cheap to clone.
#[derive(Clone)]
pub struct State {
    conn: ConnectionManager,
    prefix: String,
    metrics: Option<Arc<RedisMetrics>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl State {
    /// A lazily connecting, self-reconnecting handle on the Redis at `url`
    /// (short timeouts: an outage shows up as fast errors, not stalls).
    ///
    /// # Errors
    ///
    /// [`StateError::Url`] for a malformed URL (shown redacted).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StateError> {
        let client = redis::Client::open(url)
            .map_err(|e| StateError::Url(format!("{}: {e}", crate::config::redact_url(url))))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StateError::Url(e.to_string()))?;
        Ok(Self::new(conn, prefix))
    }

    /// A handle on `conn` with keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            metrics: None,
        }
    }

    /// The same handle, timing every call into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<RedisMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Round trip to Redis.
    ///
    /// # Errors
    ///
    /// [`StateError`] when Redis does not answer.
    pub async fn ping(&self) -> Result<Duration, StateError> {
        let started = Instant::now();
        let _: String = self.run(redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }

    /// `{prefix}{tag}rest`: a key whose hash tag is `tag`.
    fn key(&self, tag: &str, rest: &str) -> String {
        format!("{}{{{tag}}}{rest}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StateError> {
        let mut conn = self.conn.clone();
        self.timed(cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline whose replies are all ignored.
    async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        self.timed(pipe.query_async::<()>(&mut conn)).await
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StateError> {
        let mut conn = self.conn.clone();
        self.timed(invocation.invoke_async(&mut conn)).await
    }

    /// Bounds one Redis round trip by [`CALL_TIMEOUT`] and records it.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StateError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(done) => done.map_err(StateError::from),
            Err(_) => Err(StateError::Timeout(CALL_TIMEOUT)),
        };
        if let Some(metrics) = &self.metrics {
            metrics.observe(started, &result);
        }
        result
    }
}

/// Milliseconds for a Redis argument (at least 1).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A PTTL reply as a duration (negative replies mean none).
fn pttl(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}
