//! The phases every role shares: serve health and metrics, wait for the
//! shutdown signal, drain within a bound.
//!
//! A role's `run` is a short script: [`Runner::start`] binds
//! `ARRAKIS_HTTP_LISTEN` (a taken address fails start-up before anything
//! else is contacted) and spawns the health task; the role starts its own
//! tasks and selects on [`Runner::signalled`] beside them; then it gives
//! each of its tasks a bounded [`Runner::drain`] and calls
//! [`Runner::finish`].
//!
//! Task ownership: the runner owns the health task only. Everything else
//! stays visible in the role's `run`, which is where a reader looks for it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::health::{self, RoleStatus};

/// A role's health listener and its shutdown signal.
pub struct Runner {
    health: JoinHandle<()>,
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
    signalled: bool,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("signalled", &self.signalled)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Binds the health listener on `listen`, starts serving `status` on it
    /// and starts listening for SIGTERM and Ctrl-C.
    ///
    /// # Errors
    ///
    /// The bind error, naming `ARRAKIS_HTTP_LISTEN` and the address.
    pub async fn start<S: RoleStatus>(listen: SocketAddr, status: Arc<S>) -> std::io::Result<Self> {
        let listener = health::bind(listen).await?;
        Ok(Self {
            health: tokio::spawn(health::serve(listener, status)),
            signal: Box::pin(crate::signal::shutdown()),
            signalled: false,
        })
    }

    /// Resolves once SIGTERM or Ctrl-C has arrived, and at once on every
    /// later call. Cancel-safe: a `select!` that drops it keeps the signal.
    pub async fn signalled(&mut self) {
        if !self.signalled {
            self.signal.as_mut().await;
            self.signalled = true;
        }
    }

    /// Whether the signal has been seen by [`Runner::signalled`].
    pub fn was_signalled(&self) -> bool {
        self.signalled
    }

    /// Awaits `task` for at most `bound`; `None` (logged, naming `what`)
    /// when it did not finish in time. The caller decides what to abort.
    pub async fn drain<F: Future>(what: &str, bound: Duration, task: F) -> Option<F::Output> {
        match tokio::time::timeout(bound, task).await {
            Ok(output) => Some(output),
            Err(_) => {
                tracing::warn!("{what} did not finish within {bound:?} of shutdown");
                None
            }
        }
    }

    /// Stops the health listener: the last step of a role.
    pub fn finish(self) {
        self.health.abort();
    }
}
