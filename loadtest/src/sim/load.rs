//! Background load: a realistic event mix at a target rate across every shard
//! that has a session.
//!
//! The task wakes every 2 ms, works out how many events are due from the
//! elapsed time (so timer jitter does not change the rate), generates them
//! outside any lock and emits them in one locked batch. It never catches up
//! more than 50 ms of backlog at once: after a stall the rate resumes rather
//! than bursting. The [`LoadHandle`] owns the task; dropping it stops the
//! load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::Inner;
use super::events::{load_kind, mix};

/// Tick of the load task.
const TICK: Duration = Duration::from_millis(2);
/// Most backlog emitted in one tick.
const MAX_CATCH_UP: Duration = Duration::from_millis(50);

/// A running load; see `Simulator::start_load`.
#[derive(Debug)]
pub struct LoadHandle {
    emitted: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LoadHandle {
    pub(crate) fn start(inner: Arc<Inner>, events_per_sec: u32) -> Self {
        let emitted = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("sim_load", events_per_sec);
        let task = tokio::spawn(tracing::Instrument::instrument(
            run(inner, events_per_sec, emitted.clone(), stopped),
            span,
        ));
        Self {
            emitted,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Events emitted so far.
    #[must_use]
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Stop the load, wait for the task, and return the total emitted.
    pub async fn stop(mut self) -> u64 {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.emitted()
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    inner: Arc<Inner>,
    rate: u32,
    emitted: Arc<AtomicU64>,
    mut stopped: oneshot::Receiver<()>,
) {
    let rate = f64::from(rate);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // `owed` is fractional events due but not yet emitted.
    let mut owed = 0.0f64;
    let mut last = Instant::now();
    let mut turn = 0u64;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).min(MAX_CATCH_UP);
        last = now;
        owed += rate * elapsed.as_secs_f64();
        let due = owed.floor();
        if due < 1.0 {
            continue;
        }
        owed -= due;
        let targets = inner.live_targets();
        if targets.is_empty() {
            // Nobody to send to: do not build up a burst for later.
            owed = 0.0;
            continue;
        }
        batch.clear();
        for _ in 0..due as u64 {
            turn += 1;
            let r = inner.events.rand();
            let target = targets[(mix(turn) % targets.len() as u64) as usize];
            batch.push((target.shard_id, inner.events.build(&load_kind(r), target)));
        }
        let n = inner
            .emit_built(&batch)
            .iter()
            .filter(|s| s.is_some())
            .count();
        emitted.fetch_add(n as u64, Ordering::Relaxed);
    }
}
