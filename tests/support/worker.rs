//! The `arrakis work` process under test.

use std::process::Stdio;
use std::time::Duration;

use super::{free_port, unique};

/// One `arrakis work` process.
pub struct WorkerProcess {
    child: tokio::process::Child,
    /// `127.0.0.1:P` of the health listener.
    pub http: String,
    log: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl WorkerProcess {
    /// Starts `arrakis work` with exactly `env` (the contract's variables)
    /// and waits until it serves `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::spawn(env).await
    }

    async fn spawn(env: Vec<(String, String)>) -> Self {
        let http = format!("127.0.0.1:{}", free_port());
        let log = std::env::temp_dir().join(format!("{}.log", unique("arrakis-work")));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis"));
        cmd.arg("work")
            .env_clear()
            .env("ARRAKIS_HTTP_LISTEN", &http)
            .env("RUST_LOG", "info,arrakis=debug,lapin=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn arrakis work");
        let worker = Self {
            child,
            http,
            log,
            env,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while worker.health("/healthz").await.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker never served /healthz; log:\n{}",
                worker.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker
    }

    /// A second process with the same settings (a restart after a crash).
    pub async fn restart(&mut self) {
        let env = self.env.clone();
        let old = std::mem::replace(self, Self::spawn(env).await);
        drop(old);
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.health("/readyz").await.is_some_and(|(s, _)| s == 200) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worker /readyz never answered 200 within {limit:?}; last: {:?}; log:\n{}",
                self.health("/readyz").await,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of the metric series `series` (name with labels, as
    /// exposed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let Some((_, body)) = self.health("/metrics").await else {
            return 0.0;
        };
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
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
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
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

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        super::end_child(&mut self.child, "work", &self.log);
    }
}
