//! `loadtest sim`: the simulator as a standalone server for people testing
//! their own bots (and for the demo).
//!
//! Phases: parse flags → bind and print the URLs → start the load → print a
//! status line every 5 s until Ctrl-C → shut down. Control endpoints
//! (`/_sim/inject`, `/_sim/emit`, `/_sim/load`, `/_sim/stats`) are served on
//! the REST port; see `arrakis_loadtest::sim` docs.

use std::net::SocketAddr;
use std::time::Duration;

use arrakis_loadtest::{SimConfig, Simulator};
use tokio::time::{Instant, MissedTickBehavior};

/// Flags of `loadtest sim` (each also an environment variable).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the REST API (and the /_sim control endpoints) listens.
    #[arg(long, env = "SIM_REST_LISTEN", default_value = "127.0.0.1:7878")]
    rest_listen: SocketAddr,
    /// Where the main gateway listens (port 0: any free port).
    #[arg(long, env = "SIM_GATEWAY_LISTEN", default_value = "127.0.0.1:0")]
    gateway_listen: SocketAddr,
    /// Where the resume gateway listens (port 0: any free port).
    #[arg(long, env = "SIM_RESUME_GATEWAY_LISTEN", default_value = "127.0.0.1:0")]
    resume_gateway_listen: SocketAddr,
    /// Bot token the simulator expects.
    #[arg(
        long,
        env = "SIM_TOKEN",
        default_value = "sim-token",
        hide_env_values = true
    )]
    token: String,
    /// `shards` returned by /gateway/bot.
    #[arg(long, env = "SIM_SHARDS", default_value_t = 1)]
    shards: u32,
    /// `session_start_limit.max_concurrency`.
    #[arg(long, env = "SIM_MAX_CONCURRENCY", default_value_t = 1)]
    max_concurrency: u32,
    /// Background load in events per second across all shards (0: none).
    #[arg(long, env = "SIM_RATE", default_value_t = 0)]
    rate: u32,
    /// Hello's heartbeat_interval in milliseconds.
    #[arg(long, env = "SIM_HEARTBEAT_INTERVAL_MS", default_value_t = 41_250)]
    heartbeat_interval_ms: u64,
    /// Lateness allowed before a heartbeat counts as late, in milliseconds.
    #[arg(long, env = "SIM_HEARTBEAT_GRACE_MS", default_value_t = 5_000)]
    heartbeat_grace_ms: u64,
    /// How long a disconnected session stays resumable, in seconds.
    #[arg(long, env = "SIM_SESSION_TIMEOUT_S", default_value_t = 120)]
    session_timeout_s: u64,
    /// Minimum spacing of identifies per concurrency bucket, in milliseconds.
    #[arg(long, env = "SIM_IDENTIFY_SPACING_MS", default_value_t = 5_000)]
    identify_spacing_ms: u64,
    /// Intents the bot may use (privileged bits outside it → 4014).
    #[arg(long, env = "SIM_ALLOWED_INTENTS", default_value_t = u64::MAX)]
    allowed_intents: u64,
    /// `session_start_limit.remaining` at start.
    #[arg(long, env = "SIM_SESSION_START_REMAINING", default_value_t = 1000)]
    session_start_remaining: u32,
    /// Dispatches kept per session for resume.
    #[arg(long, env = "SIM_REPLAY_CAPACITY", default_value_t = 100_000)]
    replay_capacity: usize,
    /// Guilds per shard.
    #[arg(long, env = "SIM_GUILDS_PER_SHARD", default_value_t = 3)]
    guilds_per_shard: u32,
    /// Keep a record of every dispatch in memory (grows with the run).
    #[arg(long, env = "SIM_RECORD_SENT")]
    record_sent: bool,
}

impl Args {
    fn config(&self) -> SimConfig {
        SimConfig {
            token: self.token.clone(),
            shards: self.shards,
            max_concurrency: self.max_concurrency,
            session_start_remaining: self.session_start_remaining,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_grace: Duration::from_millis(self.heartbeat_grace_ms),
            session_timeout: Duration::from_secs(self.session_timeout_s),
            replay_capacity: self.replay_capacity,
            identify_spacing: Duration::from_millis(self.identify_spacing_ms),
            allowed_intents: self.allowed_intents,
            guilds_per_shard: self.guilds_per_shard,
            record_sent: self.record_sent,
            record_bodies: self.record_sent,
            rest_listen: self.rest_listen,
            gateway_listen: self.gateway_listen,
            resume_gateway_listen: self.resume_gateway_listen,
            ..SimConfig::default()
        }
    }
}

/// Why `loadtest sim` stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimCmdError {
    /// A listener could not be bound.
    #[error("cannot bind the simulator's listeners (REST {rest}): {source}")]
    Bind {
        /// The REST address asked for.
        rest: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// Run the simulator until Ctrl-C.
pub(crate) async fn run(args: Args) -> Result<(), SimCmdError> {
    let sim = Simulator::start(args.config())
        .await
        .map_err(|source| SimCmdError::Bind {
            rest: args.rest_listen,
            source,
        })?;
    println!("API base:           {}", sim.api_base());
    println!("gateway:            {}", sim.gateway_url());
    println!("resume gateway:     {}", sim.resume_gateway_url());
    println!(
        "control:            POST {0}/_sim/inject?shard=N&fault=drop | POST {0}/_sim/load?rate=N | GET {0}/_sim/stats",
        sim.api_base().trim_end_matches("/api/v10")
    );
    sim.set_load(args.rate).await;

    let mut status = tokio::time::interval(Duration::from_secs(5));
    status.set_missed_tick_behavior(MissedTickBehavior::Delay);
    status.tick().await;
    let mut last = (Instant::now(), sim.dispatch_count());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = status.tick() => {
                let now = Instant::now();
                let dispatched = sim.dispatch_count();
                let rate = (dispatched - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, dispatched);
                let live = (0..args.shards)
                    .filter(|s| sim.shard_status(*s).is_some_and(|st| st.connected && st.ready))
                    .count();
                let resumes = sim.resumes();
                println!(
                    "shards ready {live}/{} | connections {} | identifies {} | resumes {} ({} accepted) | violations {} | dispatched {dispatched} ({rate:.0}/s)",
                    args.shards,
                    sim.connections(),
                    sim.identifies().len(),
                    resumes.len(),
                    resumes.iter().filter(|r| r.accepted).count(),
                    sim.violations().len(),
                );
            }
        }
    }
    println!("shutting down");
    sim.shutdown().await;
    Ok(())
}
