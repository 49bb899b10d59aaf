//! Periodic jobs on whichever worker gets there first.
//!
//! Every worker runs a [`Scheduler`] with the same jobs. Each poll (about a
//! second, jittered), for each job, a worker tries the job's lease; the
//! holder then consumes the job's "due" marker (a key with the period as
//! TTL, or a pending [`trigger`]) and, if it was due, runs the job while
//! renewing the lease. So a job runs at most once per period across all
//! workers and never twice at once; a holder that crashes mid-run holds
//! the lease for at most its TTL, and the job runs again at its next due
//! time on whoever is alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::time::Instant;

use super::{Lease, State, StateError, ms};

/// A periodic job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its name (also its lock's).
    pub name: String,
    /// How often it runs, across all workers.
    pub every: Duration,
}

type Run =
    Arc<dyn Fn(Lease) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Runs periodic jobs under Redis leases.
pub struct Scheduler {
    state: State,
    owner: String,
    jobs: Vec<(Job, Run)>,
    lease_ttl: Duration,
    poll: Duration,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field(
                "jobs",
                &self.jobs.iter().map(|(j, _)| j).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

static TAKE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
  return 1
end
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
return 0
",
    )
});

/// How long a trigger waits to be picked up.
const TRIGGER_TTL: Duration = Duration::from_secs(3600);

fn due_keys(state: &State, name: &str) -> (String, String) {
    let tag = format!("j:{name}");
    (state.key(&tag, ":due"), state.key(&tag, ":trigger"))
}

/// Asks for job `job_name` to run as soon as a worker polls.
///
/// # Errors
///
/// [`StateError`] when Redis is unavailable.
pub async fn trigger(state: &State, job_name: &str) -> Result<(), StateError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(due_keys(state, job_name).1)
        .arg(1)
        .arg("PX")
        .arg(ms(TRIGGER_TTL));
    let _: () = state.run(cmd).await?;
    Ok(())
}

impl Scheduler {
    /// A scheduler acting as `owner` (the worker's id).
    pub fn new(state: State, owner: impl Into<String>) -> Self {
        Self {
            state,
            owner: owner.into(),
            jobs: Vec::new(),
            lease_ttl: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }

    /// Sets the lease TTL (30 s): how long a crashed holder blocks the job.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets the poll interval (1 s, jittered by up to a fifth).
    #[must_use]
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Adds `job`, run by `run` with the lease it holds.
    #[must_use]
    pub fn add<F, Fut>(mut self, job: Job, run: F) -> Self
    where
        F: Fn(Lease) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.jobs
            .push((job, Arc::new(move |lease| Box::pin(run(lease)))));
        self
    }

    /// Polls until `shutdown` resolves; a job running then is allowed to
    /// finish (it is not started anew), and its lease released.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let jitter = self.poll.mul_f64(rand::random::<f64>() / 5.0);
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.poll + jitter) => {}
            }
            for (job, run) in &self.jobs {
                // A job in progress finishes even if shutdown comes meanwhile.
                if let Err(err) = self.poll_job(job, run).await {
                    tracing::warn!(job = %job.name, "scheduler cannot reach Redis: {err}");
                }
            }
        }
    }

    async fn poll_job(&self, job: &Job, run: &Run) -> Result<(), StateError> {
        let Some(lease) = self
            .state
            .try_lock(&job.name, &self.owner, self.lease_ttl)
            .await?
        else {
            return Ok(());
        };
        let (due, trigger) = due_keys(&self.state, &job.name);
        let is_due: i64 = self
            .state
            .script(TAKE_DUE.key(due).key(trigger).arg(ms(job.every)))
            .await
            .unwrap_or(0);
        if is_due == 1 {
            let started = Instant::now();
            let mut work = run(lease.clone());
            let mut renew = tokio::time::interval(self.lease_ttl / 3);
            renew.tick().await;
            let outcome = loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = renew.tick() => {
                        if !matches!(self.state.renew(&lease, self.lease_ttl).await, Ok(true)) {
                            tracing::warn!(job = %job.name, fence = lease.fence, "job lease lost while running; its effects should check the fence");
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(job = %job.name, fence = lease.fence, took = ?started.elapsed(), "job ran")
                }
                Err(err) => {
                    tracing::warn!(job = %job.name, "job failed: {err}; it runs again next period")
                }
            }
        }
        let _ = self.state.unlock(&lease).await;
        Ok(())
    }
}
