//! The publisher: from the shards' buffer to confirmed messages in RabbitMQ.
//!
//! Shards never talk to the broker. They push dispatches into a
//! [`PublishBuffer`] bounded by a byte budget and go back to reading; when
//! the budget is spent, [`PublishBuffer::try_push`] hands the dispatch back
//! and the shard pauses reading until [`PublishBuffer::push`] finds room —
//! nothing is dropped, and heartbeats keep going meanwhile.
//!
//! One [`Publisher`] task owns the broker connection. It publishes
//! persistent, mandatory messages with publisher confirms, keeps each
//! dispatch until the broker confirms it, and puts it back in line on a
//! nack, a return (unroutable) or a lost channel, after which it reconnects
//! with back-off and publishes again. A dispatch's budget is released only
//! on its confirm, so the budget bounds everything held in memory between
//! the socket and the broker. The task ends when every buffer handle is
//! dropped and everything pushed has been confirmed.
//!
//! Interactions go first: when the broker confirms more slowly than the
//! gateway delivers, the backlog grows, and an INTERACTION_CREATE behind it
//! would reach a worker after Discord's 3 s deadline. Everything else can
//! wait. Confirms may arrive in any order anyway (the shard's watermark
//! handles that), so reordering costs the checkpoint nothing.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;

use super::message::{Dispatch, EventClass, Routing};
use super::topology::{self, GATEWAY_EXCHANGE, QueueType};
use crate::gateway::progress::ShardProgress;
use crate::metrics::Metrics;

/// Budget unit: one permit per KiB of body (at least one per dispatch).
const UNIT: usize = 1024;
/// How long the publisher holds back retries after a nack or a return, so
/// a broker refusing messages is not hammered.
const RETRY_HOLD: Duration = Duration::from_millis(500);
/// Longest reconnect back-off. Kept short: while the broker is away the
/// buffer fills and shards stop reading, so every second spent waiting
/// after the broker is back is a second more of gateway backlog, and a
/// refused TCP connect costs the broker next to nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A dispatch in the buffer, holding its share of the budget.
#[derive(Debug)]
pub struct Queued {
    dispatch: Dispatch,
    _budget: OwnedSemaphorePermit,
    metrics: Metrics,
}

impl Queued {
    fn new(dispatch: Dispatch, budget: OwnedSemaphorePermit, metrics: Metrics) -> Self {
        metrics.buffer_depth.inc();
        metrics
            .buffer_bytes
            .inc_by(i64::try_from(dispatch.body.len()).unwrap_or(i64::MAX));
        Self {
            dispatch,
            _budget: budget,
            metrics,
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.metrics.buffer_depth.dec();
        self.metrics
            .buffer_bytes
            .dec_by(i64::try_from(self.dispatch.body.len()).unwrap_or(i64::MAX));
    }
}

/// The shards' side of the buffer. Cloned into every shard task.
#[derive(Debug, Clone)]
pub struct PublishBuffer {
    tx: mpsc::UnboundedSender<Queued>,
    budget: Arc<Semaphore>,
    budget_units: u32,
    metrics: Metrics,
}

/// The buffer was full; here is the dispatch back (boxed: this is the
/// rare path, and it keeps `Result` small on the common one).
#[derive(Debug)]
pub struct Full(pub Box<Dispatch>);

impl PublishBuffer {
    /// A buffer holding at most `budget_bytes` of dispatches between the
    /// socket and the broker's confirm, and its receiving end.
    #[must_use]
    pub fn new(budget_bytes: usize, metrics: Metrics) -> (Self, mpsc::UnboundedReceiver<Queued>) {
        // The channel itself is unbounded; the semaphore is the bound.
        let (tx, rx) = mpsc::unbounded_channel();
        let units = u32::try_from((budget_bytes / UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        let buffer = Self {
            tx,
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            metrics,
        };
        (buffer, rx)
    }

    fn cost(&self, dispatch: &Dispatch) -> u32 {
        let units = u32::try_from(dispatch.body.len().div_ceil(UNIT)).unwrap_or(u32::MAX);
        // A dispatch larger than the whole budget still goes, alone.
        units.clamp(1, self.budget_units)
    }

    /// Pushes without waiting.
    ///
    /// # Errors
    ///
    /// [`Full`] with the dispatch when the budget is spent.
    pub fn try_push(&self, dispatch: Dispatch) -> Result<(), Full> {
        match self
            .budget
            .clone()
            .try_acquire_many_owned(self.cost(&dispatch))
        {
            Ok(permit) => {
                self.send(dispatch, permit);
                Ok(())
            }
            Err(_) => Err(Full(Box::new(dispatch))),
        }
    }

    /// Pushes, waiting for room.
    pub fn push(&self, dispatch: Dispatch) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let cost = this.cost(&dispatch);
            // The semaphore is never closed.
            if let Ok(permit) = this.budget.clone().acquire_many_owned(cost).await {
                this.send(dispatch, permit);
            }
        })
    }

    fn send(&self, dispatch: Dispatch, permit: OwnedSemaphorePermit) {
        // The receiver lives until every sender is gone, so this cannot fail
        // while a shard runs; if it did, the publisher is gone and so is the
        // process.
        let _ = self
            .tx
            .send(Queued::new(dispatch, permit, self.metrics.clone()));
    }
}

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// `AMQP_URL`.
    pub amqp_url: String,
    /// `ARRAKIS_QUEUE_TYPE`.
    pub queue_type: QueueType,
    /// Event classes.
    pub routing: Routing,
    /// Most dispatches published and not yet confirmed.
    pub max_in_flight: usize,
}

/// Each shard's confirm watermark, by shard id: the publisher reports
/// confirms there, which is what lets checkpoints advance.
pub type ProgressBook = Arc<std::collections::HashMap<u32, Arc<ShardProgress>>>;

/// Dispatches taken from the buffer and not yet published, interactions
/// in a lane of their own that is always served first. Within a lane the
/// order is the gateway's.
#[derive(Debug, Default)]
struct Backlog {
    interactions: VecDeque<Queued>,
    others: VecDeque<Queued>,
}

impl Backlog {
    fn lane(&mut self, routing: &Routing, queued: &Queued) -> &mut VecDeque<Queued> {
        if routing.class(queued.dispatch.event_name()) == EventClass::Interaction {
            &mut self.interactions
        } else {
            &mut self.others
        }
    }

    fn push_back(&mut self, routing: &Routing, queued: Queued) {
        self.lane(routing, &queued).push_back(queued);
    }

    fn push_front(&mut self, routing: &Routing, queued: Queued) {
        self.lane(routing, &queued).push_front(queued);
    }

    fn pop_front(&mut self) -> Option<Queued> {
        self.interactions
            .pop_front()
            .or_else(|| self.others.pop_front())
    }

    fn len(&self) -> usize {
        self.interactions.len() + self.others.len()
    }

    fn is_empty(&self) -> bool {
        self.interactions.is_empty() && self.others.is_empty()
    }
}

/// The task that owns the broker connection.
#[derive(Debug)]
pub struct Publisher {
    config: PublisherConfig,
    progress: ProgressBook,
    rx: mpsc::UnboundedReceiver<Queued>,
    metrics: Metrics,
    backlog: Backlog,
    input_closed: bool,
}

enum PumpEnd {
    Drained,
    ChannelLost(String),
}

type ConfirmFuture =
    Pin<Box<dyn Future<Output = (u64, Result<Confirmation, lapin::Error>)> + Send>>;

impl Publisher {
    /// A publisher draining `rx`.
    #[must_use]
    pub fn new(
        config: PublisherConfig,
        rx: mpsc::UnboundedReceiver<Queued>,
        metrics: Metrics,
        progress: ProgressBook,
    ) -> Self {
        Self {
            config,
            progress,
            rx,
            metrics,
            backlog: Backlog::default(),
            input_closed: false,
        }
    }

    /// Runs until every [`PublishBuffer`] is dropped and everything pushed
    /// is confirmed. Retries the broker forever; the caller bounds the
    /// final drain with a timeout.
    pub async fn run(mut self) {
        let mut failures: u32 = 0;
        loop {
            if self.input_closed && self.backlog.is_empty() {
                return;
            }
            let (connection, channel) = match self.open().await {
                Ok(open) => open,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    tracing::error!(
                        "cannot reach RabbitMQ at {}: {err}; retrying in {delay:?}",
                        crate::config::redact_url(&self.config.amqp_url)
                    );
                    self.wait_for_broker(delay).await;
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!("RabbitMQ channel open again");
            }
            self.metrics.set_broker_up(true);
            let end = self.pump(&channel).await;
            self.metrics.set_broker_up(false);
            match end {
                PumpEnd::Drained => {
                    let _ = connection.close(200, "shutdown".into()).await;
                    return;
                }
                PumpEnd::ChannelLost(why) => {
                    tracing::warn!(
                        backlog = self.backlog.len(),
                        "RabbitMQ channel lost ({why}); unconfirmed dispatches will be published again"
                    );
                    failures = 1;
                    self.wait_for_broker(backoff(failures)).await;
                }
            }
        }
    }

    /// Sleeps out a back-off while still noticing that input closed.
    async fn wait_for_broker(&mut self, delay: Duration) {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                item = self.rx.recv(), if !self.input_closed => match item {
                    Some(queued) => self.backlog.push_back(&self.config.routing, queued),
                    None => self.input_closed = true,
                },
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name("arrakis-ingest".into());
        let connection = Connection::connect(&self.config.amqp_url, properties).await?;
        let channel = connection.create_channel().await?;
        topology::declare(&channel, self.config.queue_type).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((connection, channel))
    }

    async fn pump(&mut self, channel: &Channel) -> PumpEnd {
        let mut in_flight: BTreeMap<u64, Queued> = BTreeMap::new();
        let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
        let mut next_id: u64 = 0;
        let mut hold_until: Option<Instant> = None;
        let mut health_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            if self.input_closed && self.backlog.is_empty() && in_flight.is_empty() {
                return PumpEnd::Drained;
            }
            let room = in_flight.len() < self.config.max_in_flight;
            let held = hold_until.is_some_and(|t| Instant::now() < t);
            if room && !held {
                // Everything waiting in the buffer joins the backlog, so an
                // interaction behind it can be published next.
                self.take_waiting();
            }
            if room
                && !held
                && let Some(queued) = self.backlog.pop_front()
            {
                confirms.push(self.publish(channel, next_id, &queued));
                in_flight.insert(next_id, queued);
                next_id += 1;
                continue;
            }
            tokio::select! {
                Some((id, result)) = confirms.next(), if !confirms.is_empty() => {
                    let Some(queued) = in_flight.remove(&id) else { continue };
                    match result {
                        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => self.confirmed(&queued),
                        Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                            tracing::warn!(
                                event = queued.dispatch.event_name(),
                                "broker returned a dispatch as unroutable (is the topology intact?); retrying"
                            );
                            self.metrics.on_publish_retry("returned");
                            self.backlog.push_back(&self.config.routing, queued);
                            hold_until = Some(Instant::now() + RETRY_HOLD);
                        }
                        Ok(Confirmation::Nack(None)) => {
                            tracing::warn!(event = queued.dispatch.event_name(), "broker nacked a dispatch; retrying");
                            self.metrics.on_publish_retry("nack");
                            self.backlog.push_back(&self.config.routing, queued);
                            hold_until = Some(Instant::now() + RETRY_HOLD);
                        }
                        Err(err) => {
                            in_flight.insert(id, queued);
                            self.requeue_in_flight(in_flight);
                            return PumpEnd::ChannelLost(err.to_string());
                        }
                    }
                }
                () = sleep_until_opt(hold_until), if held => hold_until = None,
                item = self.rx.recv(), if room && self.backlog.is_empty() && !self.input_closed => {
                    match item {
                        Some(queued) => {
                            confirms.push(self.publish(channel, next_id, &queued));
                            in_flight.insert(next_id, queued);
                            next_id += 1;
                        }
                        None => self.input_closed = true,
                    }
                }
                _ = health_check.tick() => {
                    if !channel.status().connected() {
                        self.requeue_in_flight(in_flight);
                        return PumpEnd::ChannelLost("channel closed".into());
                    }
                }
            }
        }
    }

    /// Moves every dispatch waiting in the buffer's channel to the backlog.
    fn take_waiting(&mut self) {
        while !self.input_closed {
            match self.rx.try_recv() {
                Ok(queued) => self.backlog.push_back(&self.config.routing, queued),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => self.input_closed = true,
            }
        }
    }

    /// Puts every unconfirmed dispatch back at the front, oldest first.
    fn requeue_in_flight(&mut self, in_flight: BTreeMap<u64, Queued>) {
        let n = in_flight.len();
        for (_, queued) in in_flight.into_iter().rev() {
            self.backlog.push_front(&self.config.routing, queued);
        }
        for _ in 0..n {
            self.metrics.on_publish_retry("channel_error");
        }
    }

    fn publish(&self, channel: &Channel, id: u64, queued: &Queued) -> ConfirmFuture {
        let dispatch = &queued.dispatch;
        let channel = channel.clone();
        let body = dispatch.body.clone();
        let routing_key = self.config.routing.routing_key(dispatch.event_name());
        let properties = dispatch.properties();
        Box::pin(async move {
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let result = match channel
                .basic_publish(
                    GATEWAY_EXCHANGE.into(),
                    routing_key.into(),
                    options,
                    &body,
                    properties,
                )
                .await
            {
                Ok(confirm) => confirm.await,
                Err(err) => Err(err),
            };
            (id, result)
        })
    }

    fn confirmed(&self, queued: &Queued) {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let latency_us = now_us.saturating_sub(queued.dispatch.received_at_us);
        #[allow(clippy::cast_precision_loss)]
        self.metrics
            .confirm_latency
            .observe(latency_us as f64 / 1_000_000.0);
        self.metrics.confirmed.inc();
        let dispatch = &queued.dispatch;
        if let Some(progress) = self.progress.get(&dispatch.shard.number) {
            progress.confirmed(&dispatch.session_id, dispatch.seq);
        }
        // Off by default (thousands per second); `RUST_LOG=arrakis::queue=debug`
        // turns on the ingestor's end of the correlation trail.
        tracing::debug!(
            message_id = %format_args!("{}:{}", dispatch.session_id, dispatch.seq),
            event = dispatch.event_name(),
            shard = dispatch.shard.number,
            latency_us,
            "confirmed"
        );
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    let cap = Duration::from_millis(250 * (1u64 << exp)).min(MAX_BACKOFF);
    cap.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(buffer: &PublishBuffer, event: &str, seq: u64) -> Queued {
        let body = format!(r#"{{"op":0,"t":"{event}","s":{seq},"d":{{}}}}"#);
        let start = body.find(event).unwrap();
        let dispatch = Dispatch {
            shard: crate::gateway::shard::ShardId {
                number: 0,
                total: 1,
            },
            seq,
            session_id: "s".into(),
            event: start..start + event.len(),
            guild_id: None,
            body: bytes::Bytes::from(body),
            received_at_us: 0,
            guild_create: None,
        };
        let permit = buffer.budget.clone().try_acquire_many_owned(1).unwrap();
        Queued::new(dispatch, permit, buffer.metrics.clone())
    }

    #[test]
    fn interactions_are_published_before_the_backlog_in_front_of_them() {
        let (buffer, _rx) = PublishBuffer::new(
            64 * UNIT,
            Metrics::new(crate::metrics::IngestMetrics::new()),
        );
        let routing = Routing::default();
        let mut backlog = Backlog::default();
        for (seq, event) in [
            (1, "PRESENCE_UPDATE"),
            (2, "MESSAGE_CREATE"),
            (3, "INTERACTION_CREATE"),
            (4, "TYPING_START"),
            (5, "INTERACTION_CREATE"),
        ] {
            backlog.push_back(&routing, queued(&buffer, event, seq));
        }
        // An unconfirmed message put back goes to the front of its lane.
        backlog.push_front(&routing, queued(&buffer, "GUILD_MEMBER_ADD", 0));
        assert_eq!(backlog.len(), 6);
        let order: Vec<u64> = std::iter::from_fn(|| backlog.pop_front())
            .map(|q| q.dispatch.seq)
            .collect();
        assert_eq!(order, [3, 5, 0, 1, 2, 4]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn reconnect_backoff_grows_then_stays_under_the_cap() {
        for failures in 1..40 {
            let cap = Duration::from_millis(250 * (1u64 << (failures - 1).min(6))).min(MAX_BACKOFF);
            for _ in 0..50 {
                let delay = backoff(failures);
                assert!(delay <= cap, "{failures} failures: {delay:?} > {cap:?}");
                assert!(
                    delay >= cap / 2,
                    "{failures} failures: {delay:?} < half of {cap:?}"
                );
            }
        }
        assert!(backoff(100) <= MAX_BACKOFF);
    }
}
