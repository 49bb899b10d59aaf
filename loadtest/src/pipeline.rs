//! The demo's back half: the REST proxy, N `arrakis work` processes, the
//! chain simulator and the demo database, plus the interactions a user
//! would send and what the workers did with everything.
//!
//! Task ownership: [`Pipeline`] owns the proxy and worker child processes
//! (killed on drop) and the chain simulator.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use arrakis_loadtest::chain::{ChainSim, ChainSimConfig};
use arrakis_loadtest::sim::{InteractionSpec, ResponseKind, Simulator};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::ops::{free_addr, metric, rss_kib, scrape};

/// The guild the demo's interactions come from (its community is set up
/// with the chain simulator's token).
const DEMO_GUILD: u64 = 900_000_000_000_000_777;
/// Holders minted on the chain simulator; interactions ask about them.
const HOLDERS: u32 = 500;
const QUEUES: [&str; 3] = ["arrakis.interactions", "arrakis.events", "arrakis.bulk"];

/// What the back half needs to know.
pub(crate) struct Settings<'a> {
    pub(crate) arrakis: &'a Path,
    pub(crate) workers: usize,
    pub(crate) amqp_url: &'a str,
    pub(crate) redis_prefix: &'a str,
    pub(crate) database_url: &'a str,
    pub(crate) migrate_url: &'a str,
    pub(crate) chain_latency: Duration,
}

/// A child `arrakis` process and its health listener.
pub(crate) struct Role {
    child: Child,
    http: String,
}

/// The proxy, the workers and the chain simulator, running.
pub(crate) struct Pipeline {
    proxy: Role,
    workers: Vec<Role>,
    chain: ChainSim,
}

fn holder(i: u32) -> [u8; 20] {
    let mut a = [0x42u8; 20];
    a[16..].copy_from_slice(&i.to_be_bytes());
    a
}

/// Starts `arrakis <role>` with `env`, its health listener on a free port.
pub(crate) fn spawn(arrakis: &Path, role: &str, env: &[(&str, String)]) -> Result<Role, String> {
    let http = free_addr();
    let mut cmd = Command::new(arrakis);
    cmd.arg(role)
        .env("ARRAKIS_HTTP_LISTEN", &http)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting {} {role}: {e}", arrakis.display()))?;
    Ok(Role { child, http })
}

/// Waits (60 s at most) until `role` answers 200 on `/readyz`.
pub(crate) async fn ready(role: &Role, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = health(&role.http).await
            && status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{what} not ready within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health(addr: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.get(9..12)?.parse().ok()
}

impl Pipeline {
    /// Migrates the demo database, sets up the demo community, starts the
    /// chain simulator, the proxy (against `sim`) and the workers, and waits
    /// until all are ready.
    pub(crate) async fn start(sim: &Simulator, s: &Settings<'_>) -> Result<Self, String> {
        let status = Command::new(s.arrakis)
            .arg("migrate")
            .env("DATABASE_URL", s.migrate_url)
            .stdout(Stdio::null())
            .status()
            .await
            .map_err(|e| format!("arrakis migrate: {e}"))?;
        if !status.success() {
            return Err(format!("arrakis migrate failed ({status})"));
        }
        let chain = ChainSim::start(ChainSimConfig {
            latency: s.chain_latency,
            ..ChainSimConfig::default()
        })
        .await
        .map_err(|e| format!("chain simulator: {e}"))?;
        for i in 0..HOLDERS {
            chain.mint(holder(i), u128::from(i + 1) * 1_000_000_000_000_000_000);
        }
        let token = arrakis_loadtest::chain::hex(&ChainSimConfig::default().token);
        let sql = format!(
            "INSERT INTO communities (guild_id, settings) VALUES ({DEMO_GUILD}, '{{\"token\":\"{token}\",\"decimals\":18}}') \
             ON CONFLICT (guild_id) DO UPDATE SET settings = EXCLUDED.settings"
        );
        let psql = Command::new("psql")
            .args([s.migrate_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", &sql])
            .stdout(Stdio::null())
            .status()
            .await
            .map_err(|e| format!("psql: {e}"))?;
        if !psql.success() {
            return Err("psql could not set up the demo community".to_owned());
        }

        let proxy_listen = free_addr();
        let proxy = spawn(
            s.arrakis,
            "proxy",
            &[
                ("DISCORD_TOKEN", sim.config().token.clone()),
                ("DISCORD_API_BASE", sim.api_base()),
                ("ARRAKIS_PROXY_LISTEN", proxy_listen.clone()),
                ("ARRAKIS_REDIS_PREFIX", s.redis_prefix.to_owned()),
            ],
        )?;
        ready(&proxy, "the proxy").await?;
        let mut workers = Vec::new();
        for _ in 0..s.workers {
            workers.push(spawn(
                s.arrakis,
                "work",
                &[
                    ("AMQP_URL", s.amqp_url.to_owned()),
                    ("DATABASE_URL", s.database_url.to_owned()),
                    ("ARRAKIS_REDIS_PREFIX", s.redis_prefix.to_owned()),
                    ("ARRAKIS_REST_URL", format!("http://{proxy_listen}/api/v10")),
                    ("ARRAKIS_CHAIN_RPC_URLS", chain.urls().join(",")),
                    // The demo's few users send many commands.
                    ("ARRAKIS_USER_COMMANDS_PER_SEC", "1000".to_owned()),
                    ("ARRAKIS_GUILD_COMMANDS_PER_SEC", "100000".to_owned()),
                ],
            )?);
        }
        for (i, w) in workers.iter().enumerate() {
            ready(w, &format!("worker {i}")).await?;
        }
        Ok(Self {
            proxy,
            workers,
            chain,
        })
    }

    /// Messages the workers acked (or dead-lettered), all queues.
    pub(crate) async fn processed(&self) -> (f64, f64) {
        let mut acked = 0.0;
        let mut dead = 0.0;
        for w in &self.workers {
            let m = scrape(&w.http).await.unwrap_or_default();
            for q in QUEUES {
                acked += metric(
                    &m,
                    &format!("arrakis_worker_messages_total{{queue=\"{q}\",outcome=\"ack\"}}"),
                );
                dead += metric(
                    &m,
                    &format!(
                        "arrakis_worker_messages_total{{queue=\"{q}\",outcome=\"dead_letter\"}}"
                    ),
                );
            }
        }
        (acked, dead)
    }

    /// Interactions the workers found expired on arrival, all workers.
    pub(crate) async fn expired(&self) -> f64 {
        let mut n = 0.0;
        for w in &self.workers {
            let m = scrape(&w.http).await.unwrap_or_default();
            n += metric(
                &m,
                "arrakis_interactions_total{kind=\"command\",outcome=\"expired\"}",
            );
        }
        n
    }

    /// Resident memory of each worker, KiB.
    pub(crate) fn worker_rss(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.child.id().map_or(0, rss_kib))
            .collect()
    }

    /// Stops the workers and the proxy with SIGTERM; their exit codes.
    pub(crate) async fn stop(mut self) -> Vec<Option<i32>> {
        let mut codes = Vec::new();
        for role in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.proxy))
        {
            if let Some(pid) = role.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            codes.push(
                tokio::time::timeout(Duration::from_secs(20), role.child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|s| s.code()),
            );
        }
        self.chain.shutdown().await;
        codes
    }
}

/// Emits the `n`-th demo interaction: `/check-eligibility` for one of the
/// minted holders, from one of 1,000 users, on shard `n % shards`.
pub(crate) fn emit_interaction(sim: &Simulator, n: u64, shards: u32) -> bool {
    let wallet =
        arrakis_loadtest::chain::hex(&holder(u32::try_from(n % u64::from(HOLDERS)).unwrap_or(0)));
    let spec = InteractionSpec::command(
        "check-eligibility",
        serde_json::json!([{ "name": "wallet", "type": 3, "value": wallet }]),
    )
    .guild(DEMO_GUILD)
    .user(300_000_000_000_000_000 + n % 1000);
    let shard = u32::try_from(n % u64::from(shards.max(1))).unwrap_or(0);
    sim.emit_interaction(shard, spec).is_some()
}

/// Emit → first accepted callback of the interactions answered since
/// `after`, µs, and how many of those callbacks were deferrals.
pub(crate) fn interaction_latencies(sim: &Simulator, after: Instant) -> (Vec<u64>, usize) {
    let mut out = Vec::new();
    let mut deferred = 0;
    for r in sim.interaction_responses_since(after) {
        if let ResponseKind::Callback { type_ } = r.kind
            && r.status < 300
        {
            out.push(u64::try_from(r.since_emit.as_micros()).unwrap_or(u64::MAX));
            if type_ == 5 {
                deferred += 1;
            }
        }
    }
    (out, deferred)
}

/// Final answers (`PATCH @original`) since `after`: emit → edit, µs.
pub(crate) fn completions(sim: &Simulator, after: Instant) -> Vec<u64> {
    sim.interaction_responses_since(after)
        .into_iter()
        .filter(|r| r.kind == ResponseKind::EditOriginal && r.status < 300)
        .map(|r| u64::try_from(r.since_emit.as_micros()).unwrap_or(u64::MAX))
        .collect()
}

/// Messages in each work queue.
pub(crate) async fn depths(connection: &lapin::Connection) -> [u32; 3] {
    let mut out = [0; 3];
    for (i, q) in QUEUES.iter().enumerate() {
        if let Ok(ch) = connection.create_channel().await {
            let passive = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            if let Ok(d) = ch
                .queue_declare((*q).into(), passive, lapin::types::FieldTable::default())
                .await
            {
                out[i] = d.message_count();
            }
            let _ = ch.close(200, "".into()).await;
        }
    }
    out
}
