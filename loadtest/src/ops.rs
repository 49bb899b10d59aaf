//! Small tools the scenarios share: a vhost and Redis keys of their own,
//! a free port, and reading a role's `/metrics` and resident memory.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Creates `vhost` (and guest's permissions on it) with rabbitmqctl, which
/// is on the machine wherever `scripts/services.sh` set RabbitMQ up.
pub(crate) fn ensure_vhost(vhost: &str) {
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["-q", "add_vhost", vhost])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "set_permissions",
            "-p",
            vhost,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Deletes an earlier run's Redis keys under `prefix` (redis-cli is there
/// wherever `scripts/services.sh` set Redis up).
pub(crate) fn clear_redis_keys(prefix: &str) {
    let mut keys = Vec::new();
    for pattern in [format!("{prefix}:*"), format!("{{{prefix}:*")] {
        if let Ok(out) = std::process::Command::new("redis-cli")
            .args(["--scan", "--pattern", &pattern])
            .output()
        {
            keys.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    if !keys.is_empty() {
        let _ = std::process::Command::new("redis-cli")
            .arg("DEL")
            .args(&keys)
            .stdout(Stdio::null())
            .status();
    }
}

/// A free loopback address (bound, then released).
pub(crate) fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|_| "127.0.0.1:9199".into(), |a| a.to_string())
}

/// Resident memory of `pid`, KiB (0 when it is gone).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `GET /metrics` on `addr`.
pub(crate) async fn scrape(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// The value of the series `name` (with its labels) in a Prometheus text
/// exposition, 0 when absent.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
