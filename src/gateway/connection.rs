//! The shard task: the thin async driver around [`ShardCore`].
//!
//! It owns one shard's WebSocket, its zlib context and its timers, moves
//! bytes between them and the core, and carries out the core's [`Step`]s.
//! It never waits on the broker: dispatches go into the [`PublishBuffer`];
//! when that is full the task stops reading the socket (TCP pushes back on
//! Discord) but keeps its timers, so heartbeats stay on time. It ends only
//! on a fatal close code or on shutdown; everything else is a reconnect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;

use super::checkpoint::unix_ms;
use super::close::Fatal;
use super::guilds::GuildCreates;
use super::identify::{IdentifyPermit, IdentifyQueue};
use super::inflate::Inflater;
use super::progress::{Checkpoint, ShardProgress};
use super::scan;
use super::shard::{Became, Reconnect, Session, ShardCore, Step, Target};
use crate::metrics::{EventCounters, Metrics, ShardState};
use crate::queue::message::{Dispatch, Routing};
use crate::queue::publisher::{Full, PublishBuffer};

/// How long opening a WebSocket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// tungstenite's read buffer. Its default (128 KiB) would be most of an
/// idle shard's memory; frames larger than this are still read whole.
const READ_BUFFER: usize = 4 * 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Waiting<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// Everything a shard task needs; moved into the task.
#[derive(Debug)]
pub struct ShardTask {
    /// The protocol core.
    pub core: ShardCore,
    /// The cached gateway URL from `/gateway/bot`.
    pub gateway_url: Arc<str>,
    /// Shared identify queue.
    pub identify: IdentifyQueue,
    /// Where dispatches go.
    pub buffer: PublishBuffer,
    /// Which events are dropped.
    pub routing: Arc<Routing>,
    /// Metrics and readiness.
    pub metrics: Metrics,
    /// Largest inflated payload accepted.
    pub max_payload: usize,
    /// Becomes `true` on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// This shard's confirm watermark, shared with the publisher and the
    /// checkpoint writer.
    pub progress: Arc<ShardProgress>,
    /// A checkpoint to resume from, loaded at start-up.
    pub restore: Option<Checkpoint>,
    /// Startup-versus-join tracking for GUILD_CREATE.
    pub guilds: GuildCreates,
    /// This shard's handles on the per-event counters.
    pub event_counters: EventCounters,
}

/// Why a shard task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardExit {
    /// A fatal close code.
    Fatal(Fatal),
    /// The process is shutting down.
    Shutdown,
}

enum ConnectionEnd {
    Reconnect(Reconnect),
    Fatal(Fatal),
    Shutdown,
}

/// Adds the gateway query to a URL from `/gateway/bot` or READY.
#[must_use]
pub fn with_query(url: &str) -> String {
    const QUERY: &str = "v=10&encoding=json&compress=zlib-stream";
    if url.contains('?') {
        return format!("{url}&{QUERY}");
    }
    let has_path = url
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path {
        format!("{url}?{QUERY}")
    } else {
        format!("{url}/?{QUERY}")
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl ShardTask {
    /// Runs the shard until a fatal close or shutdown.
    ///
    /// Not an `async fn`, and the inner steps borrow: every shard's task
    /// holds this future for good, and an `async fn` keeps a second copy of
    /// each argument it was given (the task, the socket) in its state.
    pub fn run(mut self) -> impl Future<Output = ShardExit> + Send {
        let span = tracing::info_span!("shard", id = self.core.id().number);
        async move { self.run_inner().await }.instrument(span)
    }

    async fn run_inner(&mut self) -> ShardExit {
        self.metrics.shard_started();
        if let Some(checkpoint) = self.restore.take() {
            tracing::info!(
                session = %checkpoint.session_id,
                seq = checkpoint.seq,
                "resuming the checkpointed session"
            );
            self.core.restore_session(Session {
                id: checkpoint.session_id.clone(),
                resume_url: checkpoint.resume_url.clone(),
                seq: checkpoint.seq,
            });
            self.guilds.on_restored(checkpoint.started_at_ms);
            self.progress.start_session(checkpoint);
        }
        let mut state = ShardState::Connecting;
        let mut inflater = Inflater::new(self.max_payload);
        let mut delay = Duration::ZERO;
        let exit = loop {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.changed() => break ShardExit::Shutdown,
                }
            }
            if *self.shutdown.borrow() {
                break ShardExit::Shutdown;
            }
            let target = self.core.target();
            let url = match &target {
                Target::Gateway => with_query(&self.gateway_url),
                Target::Resume(resume) => with_query(resume),
            };
            // Boxed: the handshake's state machine is ~10 KiB and only
            // needed while connecting; inline it would stay in every
            // shard's task for good.
            let mut socket = match Box::pin(connect(&url)).await {
                Ok(socket) => socket,
                Err(err) => {
                    delay = self.core.on_connect_failed();
                    self.metrics.on_reconnect("connect_failed");
                    tracing::warn!(%url, %err, ?delay, "gateway connection failed");
                    if matches!(target, Target::Resume(_)) {
                        // A resume URL that cannot be reached is as good as
                        // gone; Discord says to fall back to the cached URL.
                        self.core.forget_session();
                    }
                    continue;
                }
            };
            self.metrics
                .shard_transition(state, ShardState::Handshaking);
            state = ShardState::Handshaking;
            inflater.reset();
            self.core.on_connected(Instant::now());
            let end = self.drive(&mut socket, &mut inflater, &mut state).await;
            drop(socket);
            if state == ShardState::Ready || state == ShardState::Handshaking {
                self.metrics.shard_transition(state, ShardState::Connecting);
                state = ShardState::Connecting;
            }
            match end {
                ConnectionEnd::Reconnect(r) => {
                    self.metrics.on_reconnect(r.reason.label());
                    tracing::info!(reason = ?r.reason, delay = ?r.delay, target = ?self.core.target(), "reconnecting");
                    delay = r.delay;
                }
                ConnectionEnd::Fatal(fatal) => break ShardExit::Fatal(fatal),
                ConnectionEnd::Shutdown => break ShardExit::Shutdown,
            }
        };
        self.metrics.shard_transition(state, ShardState::Stopped);
        if let ShardExit::Fatal(fatal) = exit {
            tracing::error!(code = fatal.code(), "shard stopped for good: {fatal}");
        }
        exit
    }

    /// Drives one connection until it ends.
    async fn drive(
        &mut self,
        socket: &mut Socket,
        inflater: &mut Inflater,
        state: &mut ShardState,
    ) -> ConnectionEnd {
        let mut identify_wait: Waiting<IdentifyPermit> = None;
        let mut identify_permit: Option<IdentifyPermit> = None;
        let mut pending_push: Waiting<()> = None;
        loop {
            let deadline = self.core.next_deadline();
            let (step, dispatch) = tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    close(socket, super::shard::RESUMABLE_CLOSE).await;
                    return ConnectionEnd::Shutdown;
                }
                () = sleep_until(deadline) => (self.core.on_timer(Instant::now()), None),
                granted = wait(&mut identify_wait), if identify_wait.is_some() => {
                    identify_wait = None;
                    identify_permit = Some(granted);
                    (self.core.on_identify_permit(Instant::now()), None)
                }
                () = wait(&mut pending_push), if pending_push.is_some() => {
                    pending_push = None;
                    self.core.set_reading_paused(false);
                    (Step::Idle, None)
                }
                message = socket.next(), if pending_push.is_none() => {
                    let received_at_us = now_us();
                    match message {
                        Some(Ok(Message::Binary(frame))) => match inflater.push(&frame) {
                            Ok(Some(payload)) => self.on_payload(payload, received_at_us),
                            Ok(None) => (Step::Idle, None),
                            Err(err) => {
                                tracing::warn!(%err, "bad zlib-stream frame; resuming on a new connection");
                                (self.core.on_malformed(), None)
                            }
                        },
                        Some(Ok(Message::Text(text))) => self.on_payload(Bytes::from(text), received_at_us),
                        Some(Ok(Message::Close(frame))) => {
                            let code = frame.map(|f| u16::from(f.code));
                            tracing::info!(?code, "gateway closed the connection");
                            return self.end_after_close(code);
                        }
                        Some(Ok(_)) => (Step::Idle, None),
                        Some(Err(err)) => {
                            tracing::warn!(%err, "gateway connection error");
                            if is_capacity_error(&err) {
                                (self.core.on_malformed(), None)
                            } else {
                                return self.end_after_close(None);
                            }
                        }
                        None => return self.end_after_close(None),
                    }
                }
            };
            match step {
                Step::Idle => {}
                Step::Send(payload) => {
                    if let Err(err) = socket.send(Message::text(payload)).await {
                        tracing::warn!(%err, "gateway send failed");
                        return self.end_after_close(None);
                    }
                    // The first send after the grant is the identify.
                    if let Some(permit) = &mut identify_permit {
                        permit.mark_sent(Instant::now());
                    }
                }
                Step::RequestIdentify => {
                    let queue = self.identify.clone();
                    let shard = self.core.id().number;
                    identify_wait = Some(Box::pin(async move { queue.acquire(shard).await }));
                }
                Step::Dispatch { became, .. } => {
                    if let Some(became) = became {
                        identify_permit = None;
                        self.metrics.shard_transition(*state, ShardState::Ready);
                        *state = ShardState::Ready;
                        let session = self.core.session().map(|s| s.id.clone());
                        match became {
                            Became::Ready => tracing::info!(?session, "READY"),
                            Became::Resumed => tracing::info!(?session, "RESUMED"),
                        }
                    }
                    if let Some(dispatch) = dispatch
                        && let Err(Full(dispatch)) = self.buffer.try_push(dispatch)
                    {
                        self.metrics.read_pauses.inc();
                        self.core.set_reading_paused(true);
                        pending_push = Some(self.buffer.push(*dispatch));
                    }
                }
                Step::Reconnect(r) => {
                    close(socket, r.close_code).await;
                    return ConnectionEnd::Reconnect(r);
                }
                Step::Fatal(fatal) => {
                    close(socket, 1000).await;
                    return ConnectionEnd::Fatal(fatal);
                }
            }
        }
    }

    fn end_after_close(&mut self, code: Option<u16>) -> ConnectionEnd {
        match self.core.on_disconnect(code) {
            Step::Fatal(fatal) => ConnectionEnd::Fatal(fatal),
            Step::Reconnect(r) => ConnectionEnd::Reconnect(r),
            other => unreachable!("on_disconnect returned {other:?}"),
        }
    }

    /// Scans a complete payload and feeds it to the core; returns the
    /// core's step and, for a dispatch to publish, the dispatch.
    fn on_payload(&mut self, payload: Bytes, received_at_us: u64) -> (Step, Option<Dispatch>) {
        let envelope = match scan::scan(&payload) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!(%err, len = payload.len(), "unparseable gateway payload; resuming on a new connection");
                return (self.core.on_malformed(), None);
            }
        };
        let step = match self.core.on_payload(Instant::now(), &envelope, &payload) {
            Ok(step) if envelope.op == 11 => {
                if let Some(rtt) = self.core.heartbeat_rtt() {
                    self.metrics.heartbeat_rtt.observe(rtt.as_secs_f64());
                }
                step
            }
            Ok(step) => step,
            Err(err) => {
                tracing::warn!(%err, "invalid gateway payload; resuming on a new connection");
                return (self.core.on_malformed(), None);
            }
        };
        let Step::Dispatch { seq, .. } = step else {
            return (step, None);
        };
        // The core validated the name, so the range is there and UTF-8.
        let event = envelope.event_name.clone().unwrap_or(0..0);
        let name = std::str::from_utf8(&payload[event.clone()]).unwrap_or("UNKNOWN");
        self.event_counters.count(&self.metrics, name);
        // Only the id is needed per event; READY reads the rest below.
        let Some(session_id) = self.core.session().map(|s| s.id.clone()) else {
            // Only an invalidated session can be missing here, and Discord
            // sends no dispatch after that; publish rather than drop.
            return (
                step,
                self.dispatch(&envelope, payload, seq, "none".into(), received_at_us),
            );
        };
        if let Step::Dispatch {
            became: Some(Became::Ready),
            ..
        } = step
            && let Some(session) = self.core.session()
        {
            let started_at_ms = unix_ms();
            let data = envelope.data.clone().map_or(&b"{}"[..], |r| &payload[r]);
            self.guilds.on_ready(data, started_at_ms);
            self.progress.start_session(Checkpoint {
                session_id: session_id.clone(),
                resume_url: session.resume_url.clone(),
                seq,
                started_at_ms,
            });
        }
        let published = !self.routing.is_dropped(name);
        self.progress.handed(&session_id, seq, published);
        if !published {
            self.metrics.dropped_by_config.inc();
            return (step, None);
        }
        (
            step,
            self.dispatch(&envelope, payload, seq, session_id, received_at_us),
        )
    }

    fn dispatch(
        &mut self,
        envelope: &scan::Envelope,
        payload: Bytes,
        seq: u64,
        session_id: Arc<str>,
        received_at_us: u64,
    ) -> Option<Dispatch> {
        let event = envelope.event_name.clone().unwrap_or(0..0);
        let guild_id = envelope.guild_id_range(&payload);
        let guild_create = (&payload[event.clone()] == b"GUILD_CREATE").then(|| {
            let text = |r: Option<std::ops::Range<usize>>| {
                r.and_then(|r| std::str::from_utf8(&payload[r]).ok())
            };
            let kind = self
                .guilds
                .classify(
                    text(guild_id.clone()),
                    text(envelope.data_joined_at.clone()),
                )
                .label();
            self.metrics.on_guild_create(kind);
            kind
        });
        Some(Dispatch {
            shard: self.core.id(),
            seq,
            session_id,
            body: payload,
            event,
            guild_id,
            received_at_us,
            guild_create,
        })
    }
}

async fn connect(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20));
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, None),
    )
    .await
    {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(err)) => Err(crate::gateway::discovery::error_chain(&err)),
        Err(_) => Err(format!("no WebSocket handshake within {CONNECT_TIMEOUT:?}")),
    }
}

/// Sends a close frame and waits briefly for the handshake; the socket is
/// dropped either way. Errors are moot: the connection is being abandoned.
async fn close(socket: &mut Socket, code: u16) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

fn is_capacity_error(err: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(err, tokio_tungstenite::tungstenite::Error::Capacity(_))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn wait<T>(slot: &mut Waiting<T>) -> T {
    match slot {
        Some(fut) => fut.as_mut().await,
        None => std::future::pending().await,
    }
}
