//! Harness for the REST proxy tests: `arrakis proxy` as a child process, a
//! private `redis-server` a test may kill, key clean-up on the shared
//! Redis, and a small HTTP client.
//!
//! Tests share the machine's Redis on 127.0.0.1:6379 under a unique key
//! prefix each ([`super::RedisPrefix`] deletes its keys on drop). Outage tests
//! never stop that Redis: they start their own with
//! [`super::private::RedisServer`].

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use arrakis_loadtest::sim::{RestSimConfig, SimConfig, Simulator};
use tokio::time::Instant;

use super::{RedisPrefix, free_port, unique};

/// One `arrakis proxy` process.
pub struct ProxyProcess {
    child: tokio::process::Child,
    /// `http://127.0.0.1:P` of the proxy listener.
    pub base: String,
    /// `127.0.0.1:P` of the health listener.
    pub http: String,
    log: std::path::PathBuf,
}

impl ProxyProcess {
    /// Starts `arrakis proxy` against `api_base` and `redis_url` under
    /// `prefix`, plus `extra` variables; waits until it serves `/healthz`.
    pub async fn start(
        api_base: &str,
        redis_url: &str,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let base = format!("http://127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("arrakis-proxy")));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis"));
        cmd.arg("proxy")
            .env_clear()
            .env("DISCORD_TOKEN", "sim-token")
            .env("DISCORD_API_BASE", api_base)
            .env("REDIS_URL", redis_url)
            .env("ARRAKIS_REDIS_PREFIX", prefix)
            .env("ARRAKIS_PROXY_LISTEN", base.trim_start_matches("http://"))
            .env("ARRAKIS_HTTP_LISTEN", &http)
            .env("RUST_LOG", "info,arrakis=debug")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn arrakis proxy");
        let proxy = Self {
            child,
            base,
            http,
            log,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while proxy.health("/healthz").await.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy never served /healthz; log:\n{}",
                proxy.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy
    }

    /// Waits (bounded) until `/readyz` answers `status`.
    pub async fn wait_ready(&self, status: u16, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self
                .health("/readyz")
                .await
                .is_some_and(|(s, _)| s == status)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {status} within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the health listener: (status, body).
    pub async fn health(&self, path: &str) -> Option<(u16, String)> {
        super::http_get(&self.http, path).await
    }

    /// SIGKILL: the process dies holding whatever it held.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        super::sigterm(&self.child);
    }

    /// Waits (bounded) for the exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        super::wait_exit(&mut self.child, limit).await
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "---- arrakis proxy log ({}) ----\n{}",
                self.base,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A response as the tests see it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A plain HTTP/1.1 client with a pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(64)
                .build_http(),
        }
    }

    /// Sends one request; `None` when the connection fails (the server
    /// died), panics after 30 s (a hang is a failure).
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<Answer> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s from {url}"))
            .ok()?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        Some(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// Sends one request; panics after 30 s (a hang is a failure).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        if !body.is_empty() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s from {url}"))
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .expect("body within 30 s")
            .expect("body")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        }
    }
}

/// The p-th percentile (0–100) of `values`, or zero when empty.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort();
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Replicas, a simulator and a client.
pub struct Rig {
    pub sim: Simulator,
    pub proxies: Vec<ProxyProcess>,
    pub http: Http,
    _prefix: RedisPrefix,
}

impl Rig {
    pub async fn start(
        rest: RestSimConfig,
        replicas: usize,
        redis: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let sim = Simulator::start(SimConfig {
            rest,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let prefix = RedisPrefix::on(redis);
        let mut proxies = Vec::new();
        for _ in 0..replicas {
            proxies.push(ProxyProcess::start(&sim.api_base(), redis, &prefix.prefix, extra).await);
        }
        for p in &proxies {
            p.wait_ready(200, Duration::from_secs(10)).await;
        }
        Self {
            sim,
            proxies,
            http: Http::new(),
            _prefix: prefix,
        }
    }

    pub fn url(&self, replica: usize, path: &str) -> String {
        format!(
            "{}/api/v10{path}",
            self.proxies[replica % self.proxies.len()].base
        )
    }

    pub async fn call(
        &self,
        replica: usize,
        method: Method,
        path: &str,
        deadline_ms: u64,
        body: &str,
    ) -> Answer {
        let deadline = deadline_ms.to_string();
        self.http
            .send(
                method,
                &self.url(replica, path),
                &[("x-arrakis-deadline-ms", &deadline)],
                body,
            )
            .await
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Stop the replicas before the prefix's keys are deleted, so no
        // late write recreates one.
        for p in &mut self.proxies {
            let _ = p.child.start_kill();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// 2xx, or the proxy's 503 with `{"error": "...", "retry_after": s}`.
pub fn assert_answered(a: &Answer, what: &str) {
    if a.status.is_success() {
        return;
    }
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {a:?}");
    let body = a.json();
    assert!(body["error"].is_string(), "{what}: {body}");
    assert!(
        body["retry_after"].as_f64().is_some_and(|s| s > 0.0),
        "{what}: {body}"
    );
}

/// The most arrivals in any 1 s window among `times`.
pub fn max_in_any_second(times: &[Instant]) -> usize {
    let mut t = times.to_vec();
    t.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..t.len() {
        while t[end].duration_since(t[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

pub fn scope_429s(sim: &Simulator, scope: &str) -> u64 {
    sim.rest_stats()
        .rate_limited
        .get(scope)
        .copied()
        .unwrap_or(0)
}
