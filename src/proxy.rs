//! The `arrakis proxy` role: the token-holding Discord REST proxy
//! (ARCHITECTURE.md §3.4).
//!
//! `run` is a short script of phases on the shared [`Runner`]: bind the
//! health and proxy listeners (a taken address fails start-up, naming the
//! variable), build the limiter (Redis is connected lazily: an unreachable
//! Redis is logged with its address, the replica serves on conservative
//! local limits and `/readyz` says not-ready until it answers), spawn the
//! limiter's heartbeat task and the server, wait for SIGTERM or Ctrl-C,
//! stop accepting, and give in-flight requests `ARRAKIS_DRAIN_SECS` to
//! finish.
//!
//! Task ownership: the runner owns the health task; this function the limiter's
//! maintenance task and the server task; the server owns its connection
//! tasks in a `JoinSet` and ends when they have drained.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Secret, parse_bytes, redact_url};
use crate::rest::forward::RestClient;
use crate::rest::limiter::{Limiter, LimiterConfig, LimiterError};
use crate::rest::metrics::ProxyMetrics;
use crate::rest::server::{ProxyServer, ServerConfig};
use crate::runner::Runner;

/// Options of `arrakis proxy`; each is also an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Bot token (never logged).
    #[arg(
        long,
        env = "DISCORD_TOKEN",
        value_name = "DISCORD_TOKEN",
        hide_env_values = true
    )]
    pub discord_token: Secret,
    /// Discord REST base; `/api/v10/X` on the proxy goes to `{base}/X`.
    #[arg(long, env = "DISCORD_API_BASE", value_name = "DISCORD_API_BASE", default_value = "https://discord.com/api/v10", value_parser = parse_api_base)]
    pub discord_api_base: String,
    /// Redis holding the shared rate limits (`rediss://` for TLS).
    #[arg(
        long,
        env = "REDIS_URL",
        value_name = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
    /// Where the proxy listens.
    #[arg(
        long,
        env = "ARRAKIS_PROXY_LISTEN",
        value_name = "ARRAKIS_PROXY_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub proxy_listen: SocketAddr,
    /// Secret callers must send (`X-Arrakis-Proxy-Secret: <secret>` or
    /// `Authorization: Bearer <secret>`); without it only loopback callers
    /// are served.
    #[arg(
        long,
        env = "ARRAKIS_PROXY_SECRET",
        value_name = "ARRAKIS_PROXY_SECRET",
        hide_env_values = true
    )]
    pub proxy_secret: Option<Secret>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(
        long,
        env = "ARRAKIS_HTTP_LISTEN",
        value_name = "ARRAKIS_HTTP_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    pub http_listen: SocketAddr,
    /// Global requests per second, all replicas together (50 unless
    /// Discord granted the bot more).
    #[arg(long, env = "ARRAKIS_GLOBAL_LIMIT", value_name = "ARRAKIS_GLOBAL_LIMIT", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub global_limit: u32,
    /// Prefix of the Redis keys (inside their hash tag); replicas of one
    /// deployment share it.
    #[arg(long, env = "ARRAKIS_REDIS_PREFIX", value_name = "ARRAKIS_REDIS_PREFIX", default_value = "arrakis", value_parser = parse_prefix)]
    pub redis_prefix: String,
    /// Deadline of requests without `X-Arrakis-Deadline-Ms`.
    #[arg(long, env = "ARRAKIS_REQUEST_DEADLINE", value_name = "ARRAKIS_REQUEST_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub request_deadline: Duration,
    /// Deadline of interaction callbacks without `X-Arrakis-Deadline-Ms`.
    #[arg(long, env = "ARRAKIS_INTERACTION_DEADLINE", value_name = "ARRAKIS_INTERACTION_DEADLINE", default_value = "2500ms", value_parser = parse_duration)]
    pub interaction_deadline: Duration,
    /// Safety margin added to every window and wait learned from Discord,
    /// and to the global 1 s window.
    #[arg(long, env = "ARRAKIS_RATE_MARGIN", value_name = "ARRAKIS_RATE_MARGIN", default_value = "100ms", value_parser = parse_duration)]
    pub rate_margin: Duration,
    /// Share of the global limit all replicas together may use while cut
    /// off from Redis (each gets its part).
    #[arg(long, env = "ARRAKIS_LOCAL_FRACTION", value_name = "ARRAKIS_LOCAL_FRACTION", default_value_t = 0.5, value_parser = parse_fraction)]
    pub local_fraction: f64,
    /// Invalid requests (401/403/429) per 10 minutes Discord tolerates per
    /// IP; the breaker sheds traffic from a quarter of it.
    #[arg(long, env = "ARRAKIS_INVALID_LIMIT", value_name = "ARRAKIS_INVALID_LIMIT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(4..=1_000_000))]
    pub invalid_limit: u32,
    /// Longest wait for Redis before using local limits.
    #[arg(long, env = "ARRAKIS_REDIS_TIMEOUT", value_name = "ARRAKIS_REDIS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,
    /// Largest request body accepted.
    #[arg(long, env = "ARRAKIS_MAX_BODY", value_name = "ARRAKIS_MAX_BODY", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_body: usize,
    /// Seconds allowed on shutdown for requests in flight.
    #[arg(
        long,
        env = "ARRAKIS_DRAIN_SECS",
        value_name = "ARRAKIS_DRAIN_SECS",
        default_value_t = 10
    )]
    pub drain_secs: u64,
}

/// Parses a duration with a unit: `250ms`, `10s`, `1.5s`.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a duration like 250ms, 10s or 1.5s");
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(bad());
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!("`{s}` must be between 1ms and 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a fraction in (0, 1].
///
/// # Errors
///
/// A message saying the range.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not a fraction between 0 (excluded) and 1"
        )),
    }
}

/// Parses a Redis key prefix: 1–64 characters, no braces or whitespace
/// (it goes inside the key's hash tag).
///
/// # Errors
///
/// A message saying what is allowed.
pub fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| !c.is_whitespace() && c != '{' && c != '}');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}`: use 1-64 characters without spaces or braces"
        ))
    }
}

/// Parses an API base URL (`http://` or `https://`, no trailing slash).
///
/// # Errors
///
/// A message when the scheme is missing.
pub fn parse_api_base(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` must start with https:// (or http:// for a simulator)"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{s}` names no host"));
    }
    if s.parse::<hyper::Uri>().is_err() {
        return Err(format!("`{s}` is not a URL"));
    }
    Ok(s.to_owned())
}

/// Why the role could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyRoleError {
    /// A listener could not bind.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// The Redis URL is unusable.
    #[error("{0}")]
    Redis(#[from] LimiterError),
}

/// Runs the proxy until a signal.
///
/// # Errors
///
/// Start-up failures that retrying cannot fix: a listen address is taken,
/// or `REDIS_URL` cannot be parsed.
pub async fn run(args: ProxyArgs) -> Result<ExitCode, ProxyRoleError> {
    let metrics = Arc::new(ProxyMetrics::new());
    let mut runner = Runner::start(args.http_listen, metrics.clone()).await?;
    let listener = TcpListener::bind(args.proxy_listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on ARRAKIS_PROXY_LISTEN={}: {e}",
                args.proxy_listen
            ),
        )
    })?;

    let limiter = Arc::new(Limiter::new(
        &args.redis_url,
        args.discord_token.expose(),
        LimiterConfig {
            prefix: args.redis_prefix.clone(),
            global_limit: args.global_limit,
            margin: args.rate_margin,
            local_fraction: args.local_fraction,
            invalid_limit: args.invalid_limit,
            redis_timeout: args.redis_timeout,
        },
        metrics.clone(),
    )?);
    let maintain = tokio::spawn(limiter.clone().maintain());
    let rest = Arc::new(RestClient::new(
        &args.discord_api_base,
        &args.discord_token,
        limiter.clone(),
        metrics.clone(),
    ));
    if args.proxy_secret.is_none() && !args.proxy_listen.ip().is_loopback() {
        tracing::warn!(
            "ARRAKIS_PROXY_LISTEN={} is not loopback and ARRAKIS_PROXY_SECRET is not set: only loopback callers will be served",
            args.proxy_listen
        );
    }
    let server = Arc::new(ProxyServer::new(
        rest,
        ServerConfig {
            secret: args.proxy_secret.clone(),
            default_deadline: args.request_deadline,
            interaction_deadline: args.interaction_deadline,
            max_body: args.max_body,
        },
        metrics.clone(),
    ));
    tracing::info!(
        listen = %args.proxy_listen,
        api_base = %args.discord_api_base,
        redis = %redact_url(&args.redis_url),
        keys = %limiter.keys().tag(),
        global_limit = args.global_limit,
        secret_required = args.proxy_secret.is_some(),
        "proxy started"
    );
    let (stop, stopped) = watch::channel(false);
    let mut serving = tokio::spawn(server.serve(listener, stopped));

    tokio::select! {
        () = runner.signalled() => {}
        _ = &mut serving => tracing::error!("proxy server stopped unexpectedly"),
    }
    tracing::info!("shutting down: no new connections, draining requests in flight");
    let _ = stop.send(true);
    let drain = Duration::from_secs(args.drain_secs);
    if Runner::drain("requests in flight", drain, &mut serving)
        .await
        .is_none()
    {
        tracing::warn!(in_flight = metrics.in_flight.get(), "closing them");
        serving.abort();
    }
    maintain.abort();
    runner.finish();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        for bad in ["10", "0s", "-1s", "abc", "1h", "100000s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractions_prefixes_and_bases() {
        assert_eq!(parse_fraction("0.5"), Ok(0.5));
        assert!(parse_fraction("0").is_err() && parse_fraction("1.5").is_err());
        assert!(parse_prefix("arrakis-test-1").is_ok());
        for bad in ["", "a b", "{x}", &"p".repeat(65)] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_api_base("https://discord.com/api/v10/"),
            Ok("https://discord.com/api/v10".to_owned())
        );
        assert!(parse_api_base("discord.com/api").is_err());
        assert!(parse_api_base("https://").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ProxyArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--discord-token",
            "tok.en.value",
            "--proxy-secret",
            "hunter2",
        ])
        .unwrap();
        let shown = format!("{:?}", cli.args);
        assert!(
            !shown.contains("tok.en.value") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(cli.args.global_limit, 50);
        assert_eq!(cli.args.interaction_deadline, Duration::from_millis(2_500));
    }
}
