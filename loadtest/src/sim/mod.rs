//! The Discord gateway + REST simulator: configuration and the [`Simulator`]
//! handle.
//!
//! A [`Simulator`] binds three loopback listeners (REST, gateway, resume
//! gateway), follows Discord's rules from PROTOCOL.md Part 1 rather than the
//! habits of any client, lets tests emit dispatches and inject faults, and
//! records what the client did ([`Violation`]s, identifies, resumes,
//! heartbeats, closes) for assertions.
//!
//! Task ownership: `start` spawns three server tasks (REST, two gateway
//! accept loops), each owning its connection tasks in a `JoinSet`; all of
//! them end on `shutdown`. A [`LoadHandle`] owns its load task. Shared state
//! is behind std mutexes held for short, non-blocking sections (lock order:
//! gateway state, then records).

mod compress;
mod control;
mod discord_rest;
mod events;
mod fault;
mod gateway;
mod interactions;
mod load;
mod protocol;
mod ratelimit;
mod record;
mod rest;
mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

pub use compress::ZLIB_SUFFIX;
pub use discord_rest::{RestSimConfig, RoleChange, SentMessage, SimInteraction};
pub use events::EventKind;
pub use fault::{Fault, UnknownFault};
pub use interactions::{
    EmittedInteraction, InteractionKind, InteractionResponse, InteractionSpec, ResponseKind,
};
pub use load::LoadHandle;
pub use ratelimit::{RestArrival, RestFault, RestStats, WindowKind};
pub use record::{
    CloseRecord, ConnectionRecord, GatewayPort, HeartbeatRecord, IdentifyRecord, RestRecord,
    ResumeRecord, SentDispatch, ServerCloseRecord, ShardStatus, UNKNOWN_SHARD, Violation,
};

use events::{EventGen, Target};
use record::Records;
use session::State;

/// How the simulator behaves. Start from `SimConfig::default()` and change
/// what the test needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Expected bot token (REST `Authorization: Bot <token>`; Identify and
    /// Resume `d.token`).
    pub token: String,
    /// `shards` returned by `/gateway/bot`. With more than 1, an Identify
    /// without `shard` is closed with 4011.
    pub shards: u32,
    /// `session_start_limit.max_concurrency`; identify buckets are
    /// `shard_id % max_concurrency`.
    pub max_concurrency: u32,
    /// `session_start_limit.total`.
    pub session_start_total: u32,
    /// Initial `session_start_limit.remaining`, decremented per accepted
    /// identify.
    pub session_start_remaining: u32,
    /// Hello's `heartbeat_interval`.
    pub heartbeat_interval: Duration,
    /// A heartbeat later than `heartbeat_interval + heartbeat_grace` is a
    /// violation.
    pub heartbeat_grace: Duration,
    /// How long a disconnected session stays resumable.
    pub session_timeout: Duration,
    /// Dispatches kept per session for resume; a resume needing older ones is
    /// refused with op 9.
    pub replay_capacity: usize,
    /// Minimum spacing of identifies per bucket; closer ones get op 9 and a
    /// [`Violation::IdentifySpacing`].
    pub identify_spacing: Duration,
    /// Intent bits the bot may use; a privileged bit (1<<1, 1<<8, 1<<15)
    /// outside it is closed with 4014.
    pub allowed_intents: u64,
    /// Delay before Hello.
    pub hello_delay: Duration,
    /// Guilds per shard (listed unavailable in READY; events use them).
    pub guilds_per_shard: u32,
    /// Keep every dispatch in [`Simulator::sent`]. That record grows with the
    /// run; turn it off for long load runs.
    pub record_sent: bool,
    /// Keep dispatch bodies in [`Simulator::sent`] (else only shard, session,
    /// seq, event and guild).
    pub record_bodies: bool,
    /// Capacity (in messages) of each connection's outbound queue. A client
    /// that lets it fill up is disconnected ([`Violation::SlowClient`]).
    pub outbound_queue: usize,
    /// Where the REST server listens (`127.0.0.1:0`: any free port).
    pub rest_listen: SocketAddr,
    /// Where the main gateway listens.
    pub gateway_listen: SocketAddr,
    /// Where the resume gateway listens (must differ from the main one).
    pub resume_gateway_listen: SocketAddr,
    /// REST rate limits, latency and the interaction lifecycle.
    pub rest: RestSimConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Self {
            token: "sim-token".to_owned(),
            shards: 1,
            max_concurrency: 1,
            session_start_total: 1000,
            session_start_remaining: 1000,
            heartbeat_interval: Duration::from_millis(41_250),
            heartbeat_grace: Duration::from_secs(5),
            session_timeout: Duration::from_secs(120),
            replay_capacity: 100_000,
            identify_spacing: Duration::from_secs(5),
            allowed_intents: u64::MAX,
            hello_delay: Duration::ZERO,
            guilds_per_shard: 3,
            record_sent: true,
            record_bodies: true,
            outbound_queue: 16_384,
            rest_listen: any,
            gateway_listen: any,
            resume_gateway_listen: any,
            rest: RestSimConfig::default(),
        }
    }
}

/// Shared simulator state.
pub(crate) struct Inner {
    pub(crate) cfg: SimConfig,
    pub(crate) api_base: String,
    pub(crate) gateway_url: String,
    pub(crate) resume_gateway_url: String,
    /// The Hello payload (same for every connection).
    pub(crate) hello: Bytes,
    state: Mutex<State>,
    rec: Mutex<Records>,
    pub(crate) events: EventGen,
    next_connection: AtomicU64,
    pub(crate) started: Instant,
    /// Load started through the control endpoint.
    pub(crate) control_load: tokio::sync::Mutex<Option<LoadHandle>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// REST rate-limit state, counters and interactions.
    pub(crate) rest: discord_rest::RestSim,
}

impl Inner {
    /// State for a simulator reachable at these URLs (nothing bound yet).
    pub(crate) fn new(
        cfg: SimConfig,
        api_base: String,
        gateway_url: String,
        resume_gateway_url: String,
    ) -> Self {
        let hello = format!(
            "{{\"t\":null,\"s\":null,\"op\":10,\"d\":{{\"heartbeat_interval\":{},\"_trace\":[\"[\\\"gateway-prd-us-east1-b-sim\\\",{{\\\"micros\\\":0.0}}]\"]}}}}",
            cfg.heartbeat_interval.as_millis()
        );
        Self {
            api_base,
            gateway_url,
            resume_gateway_url,
            hello: Bytes::from(hello),
            state: Mutex::new(State::new(&cfg)),
            rec: Mutex::new(Records::default()),
            events: EventGen::new(),
            next_connection: AtomicU64::new(0),
            started: Instant::now(),
            control_load: tokio::sync::Mutex::new(None),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            rest: discord_rest::RestSim::default(),
            cfg,
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn rec(&self) -> MutexGuard<'_, Records> {
        self.rec.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn connections(&self) -> u64 {
        self.next_connection.load(Ordering::Relaxed)
    }

    /// Generate and emit one event on `shard_id`'s session.
    pub(crate) fn emit(&self, shard_id: u32, kind: &EventKind) -> Option<u64> {
        let target = self.state().target(shard_id, Instant::now(), &self.cfg)?;
        let built = self.events.build(kind, target);
        self.emit_built(&[(shard_id, built)])[0]
    }

    /// Replace the simulator-owned load (0 stops it); returns what the
    /// previous one emitted.
    pub(crate) async fn set_control_load(self: &Arc<Self>, rate: u32) -> u64 {
        let mut slot = self.control_load.lock().await;
        let previous = match slot.take() {
            Some(old) => old.stop().await,
            None => 0,
        };
        if rate > 0 {
            *slot = Some(LoadHandle::start(self.clone(), rate));
        }
        previous
    }

    /// Targets of every shard with a live session, by shard id.
    pub(crate) fn live_targets(&self) -> Vec<Target> {
        let now = Instant::now();
        let mut st = self.state();
        let mut shards: Vec<u32> = st.shards.keys().copied().collect();
        shards.sort_unstable();
        shards
            .into_iter()
            .filter_map(|s| st.target(s, now, &self.cfg))
            .collect()
    }
}

/// A running simulator. Cheap to clone; every clone drives the same servers.
///
/// Dropping the handles does not stop the servers (their tasks hold the
/// state); call [`Simulator::shutdown`], or let the test's runtime end.
/// Works with real time: under `start_paused` tokio would advance the clock
/// whenever the simulator's timers are the only thing pending, so use short
/// real intervals (e.g. a 500 ms heartbeat) instead.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("api_base", &self.inner.api_base)
            .field("gateway_url", &self.inner.gateway_url)
            .field("resume_gateway_url", &self.inner.resume_gateway_url)
            .finish_non_exhaustive()
    }
}

fn url_host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    }
}

impl Simulator {
    /// Bind the REST, gateway and resume-gateway listeners and start serving.
    ///
    /// # Errors
    ///
    /// When a listener cannot be bound.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let rest = TcpListener::bind(config.rest_listen).await?;
        let gateway = TcpListener::bind(config.gateway_listen).await?;
        let resume = TcpListener::bind(config.resume_gateway_listen).await?;
        let inner = Arc::new(Inner::new(
            config,
            format!("http://{}/api/v10", url_host(rest.local_addr()?)),
            format!("ws://{}", url_host(gateway.local_addr()?)),
            format!("ws://{}", url_host(resume.local_addr()?)),
        ));
        let tasks = vec![
            tokio::spawn(rest::serve(inner.clone(), rest, inner.shutdown.subscribe())),
            tokio::spawn(gateway::accept_loop(
                inner.clone(),
                gateway,
                GatewayPort::Main,
                inner.shutdown.subscribe(),
            )),
            tokio::spawn(gateway::accept_loop(
                inner.clone(),
                resume,
                GatewayPort::Resume,
                inner.shutdown.subscribe(),
            )),
        ];
        *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        tracing::info!(
            api_base = %inner.api_base,
            gateway = %inner.gateway_url,
            resume_gateway = %inner.resume_gateway_url,
            "simulator started"
        );
        Ok(Simulator { inner })
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// REST base, e.g. `http://127.0.0.1:P/api/v10`.
    #[must_use]
    pub fn api_base(&self) -> String {
        self.inner.api_base.clone()
    }

    /// Main gateway URL, e.g. `ws://127.0.0.1:G` (the `url` of
    /// `/gateway/bot`).
    #[must_use]
    pub fn gateway_url(&self) -> String {
        self.inner.gateway_url.clone()
    }

    /// Resume gateway URL on a different port (READY's
    /// `resume_gateway_url`).
    #[must_use]
    pub fn resume_gateway_url(&self) -> String {
        self.inner.resume_gateway_url.clone()
    }

    /// Send `kind` on the shard's current session and return its seq; `None`
    /// when the shard has no session that can receive events. A session that
    /// is disconnected but resumable keeps the event for its resume.
    pub fn emit(&self, shard_id: u32, kind: EventKind) -> Option<u64> {
        self.inner.emit(shard_id, &kind)
    }

    /// Emit a realistic mix at `events_per_sec` across all shards with a
    /// session, until the handle is stopped or dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    #[must_use = "dropping the handle stops the load"]
    pub fn start_load(&self, events_per_sec: u32) -> LoadHandle {
        LoadHandle::start(self.inner.clone(), events_per_sec)
    }

    /// Inject `fault` into the shard's live connection, or into its next one
    /// (the next that identifies or resumes as that shard).
    pub fn inject(&self, shard_id: u32, fault: Fault) {
        self.inner.inject(shard_id, fault);
    }

    /// Every dispatch ever assigned a seq (READY and RESUMED included), all
    /// shards and sessions, in order of emission. Grows with the run (see
    /// [`SimConfig::record_sent`]).
    #[must_use]
    pub fn sent(&self) -> Vec<SentDispatch> {
        self.inner.rec().sent.clone()
    }

    /// Rules the client broke, in order.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.inner.rec().violations.clone()
    }

    /// Identifies that passed validation (accepted or answered with op 9).
    #[must_use]
    pub fn identifies(&self) -> Vec<IdentifyRecord> {
        self.inner.rec().identifies.clone()
    }

    /// Resume attempts.
    #[must_use]
    pub fn resumes(&self) -> Vec<ResumeRecord> {
        self.inner.rec().resumes.clone()
    }

    /// Heartbeats received.
    #[must_use]
    pub fn heartbeats(&self) -> Vec<HeartbeatRecord> {
        self.inner.rec().heartbeats.clone()
    }

    /// Close frames the client sent.
    #[must_use]
    pub fn client_closes(&self) -> Vec<CloseRecord> {
        self.inner.rec().client_closes.clone()
    }

    /// Close frames the simulator sent (rule breaks, bad configuration,
    /// injected closes).
    #[must_use]
    pub fn server_closes(&self) -> Vec<ServerCloseRecord> {
        self.inner.rec().server_closes.clone()
    }

    /// Every accepted gateway connection: port, query, compression.
    #[must_use]
    pub fn connection_records(&self) -> Vec<ConnectionRecord> {
        self.inner.rec().connections.clone()
    }

    /// Every REST request served.
    #[must_use]
    pub fn rest_requests(&self) -> Vec<RestRecord> {
        self.inner.rec().rest.clone()
    }

    /// The shard's current session, if it ever had one.
    #[must_use]
    pub fn shard_status(&self, shard_id: u32) -> Option<ShardStatus> {
        self.inner
            .state()
            .status(shard_id, Instant::now(), &self.inner.cfg)
    }

    /// Gateway connections accepted so far (TCP accepts on either port).
    #[must_use]
    pub fn connections(&self) -> u64 {
        self.inner.connections()
    }

    /// Current `session_start_limit.remaining`.
    #[must_use]
    pub fn session_start_remaining(&self) -> u32 {
        self.inner.state().remaining
    }

    /// Dispatches assigned a seq so far (READY and RESUMED included);
    /// counted even when [`SimConfig::record_sent`] is off.
    #[must_use]
    pub fn dispatch_count(&self) -> u64 {
        self.inner.state().dispatched
    }

    /// Replace the simulator-owned background load, the one the control
    /// endpoint `POST /_sim/load?rate=N` drives (0 stops it). Returns what
    /// the previous one emitted. Stopped by [`Simulator::shutdown`].
    pub async fn set_load(&self, events_per_sec: u32) -> u64 {
        self.inner.set_control_load(events_per_sec).await
    }

    /// What the REST side counted: 429s by scope, the most global
    /// requests in any 1 s window, bucket overage, invalid requests, ….
    #[must_use]
    pub fn rest_stats(&self) -> RestStats {
        self.inner.rest.stats()
    }

    /// Every request to the rate-limited REST routes, in arrival order.
    #[must_use]
    pub fn rest_arrivals(&self) -> Vec<RestArrival> {
        self.inner.rest.arrivals()
    }

    /// Answer the next matching REST request with `fault` (a global or
    /// shared 429, or a status).
    pub fn inject_rest(&self, fault: RestFault) {
        self.inner.rest.inject(fault);
    }

    /// An interaction as if `INTERACTION_CREATE` went out now: its callback
    /// is accepted for `RestSimConfig::callback_window`, once, and its token
    /// on the webhook routes for `RestSimConfig::token_lifetime`.
    #[must_use]
    pub fn create_interaction(&self) -> SimInteraction {
        self.inner.rest.create_interaction(&self.inner.cfg.rest)
    }

    /// Emits `spec` as an `INTERACTION_CREATE` on the shard's session and
    /// registers it with the REST side: its 3 s window starts now. `None`
    /// when the shard has no session that can receive events.
    pub fn emit_interaction(
        &self,
        shard_id: u32,
        spec: InteractionSpec,
    ) -> Option<EmittedInteraction> {
        let (mut emitted, d) = self.register_spec(shard_id, &spec);
        emitted.seq = self.inner.emit(
            shard_id,
            &EventKind::Raw {
                name: "INTERACTION_CREATE".to_owned(),
                d: d.to_string(),
            },
        )?;
        Some(emitted)
    }

    /// Registers `spec` with the REST side exactly as
    /// [`Simulator::emit_interaction`] does (its 3 s window starts now) but
    /// sends nothing on the gateway. Returns the interaction (seq 0; guild
    /// `spec.guild_id` or shard 0's first guild) and the `d` its
    /// `INTERACTION_CREATE` would carry, for a test to deliver itself.
    #[must_use]
    pub fn prepare_interaction(
        &self,
        spec: InteractionSpec,
    ) -> (EmittedInteraction, serde_json::Value) {
        self.register_spec(0, &spec)
    }

    /// Registers `spec` as if sent on `shard_id` now: the interaction (seq
    /// 0) and its `INTERACTION_CREATE` payload.
    fn register_spec(
        &self,
        shard_id: u32,
        spec: &InteractionSpec,
    ) -> (EmittedInteraction, serde_json::Value) {
        let cfg = &self.inner.cfg;
        let guild = spec.guild_id.unwrap_or_else(|| {
            events::Target {
                shard_id,
                num_shards: cfg.shards.max(1),
                guilds: cfg.guilds_per_shard,
            }
            .guild_id(0)
        });
        let registered = self
            .inner
            .rest
            .register_interaction(&cfg.rest, spec.kind.type_number());
        let d = spec.payload(
            &registered.id,
            &registered.token,
            &registered.application_id,
            guild,
        );
        let emitted = EmittedInteraction {
            id: registered.id,
            token: registered.token,
            application_id: registered.application_id,
            seq: 0,
            guild_id: guild,
        };
        (emitted, d)
    }

    /// Make `user_id` a member of `guild_id` holding `roles` (replacing
    /// any earlier membership), for the member and role routes.
    pub fn add_member(&self, guild_id: u64, user_id: u64, roles: &[u64]) {
        self.inner.rest.add_member(guild_id, user_id, roles);
    }

    /// Remove `user_id` from `guild_id`: the member routes answer 404,
    /// code 10007, for them afterwards.
    pub fn remove_member(&self, guild_id: u64, user_id: u64) {
        self.inner.rest.remove_member(guild_id, user_id);
    }

    /// The member's current roles, sorted; `None` when not a member.
    #[must_use]
    pub fn member_roles(&self, guild_id: u64, user_id: u64) -> Option<Vec<u64>> {
        self.inner.rest.member_roles(guild_id, user_id)
    }

    /// Every successful role `PUT`/`DELETE`, in order; the last 100,000
    /// are kept.
    #[must_use]
    pub fn role_changes(&self) -> Vec<RoleChange> {
        self.inner.rest.role_changes()
    }

    /// Every message created with `POST /channels/{c}/messages`, in
    /// order; the last 100,000 are kept.
    #[must_use]
    pub fn messages_sent(&self) -> Vec<SentMessage> {
        self.inner.rest.messages_sent()
    }

    /// The global commands as the last successful bulk overwrite left them
    /// (with their `id`, `application_id` and `version`).
    #[must_use]
    pub fn registered_commands(&self) -> Vec<serde_json::Value> {
        self.inner.rest.registered_commands()
    }

    /// How many bulk overwrites of the global commands succeeded.
    #[must_use]
    pub fn command_overwrites(&self) -> u64 {
        self.inner.rest.command_overwrites()
    }

    /// Every response the bot sent for interactions (callbacks and webhook
    /// calls), oldest first; the last 100,000 are kept.
    #[must_use]
    pub fn interaction_responses(&self) -> Vec<InteractionResponse> {
        self.inner.rest.responses()
    }

    /// Responses that arrived after `after`.
    #[must_use]
    pub fn interaction_responses_since(&self, after: Instant) -> Vec<InteractionResponse> {
        self.inner.rest.responses_since(after)
    }

    /// Stop every server and connection task and wait (up to 5 s) for them.
    pub async fn shutdown(self) {
        if let Some(load) = self.inner.control_load.lock().await.take() {
            load.stop().await;
        }
        let _ = self.inner.shutdown.send(true);
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!("simulator stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_records_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Simulator>();
        send_sync::<LoadHandle>();
        send_sync::<SimConfig>();
        send_sync::<SentDispatch>();
        send_sync::<Violation>();
        send_sync::<RestStats>();
    }

    #[test]
    fn urls_never_name_an_unspecified_address() {
        let any: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        assert_eq!(url_host(any), "127.0.0.1:7878");
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(url_host(v6), "[::1]:9");
    }
}
