//! Shared harness for the integration tests: a private RabbitMQ vhost per
//! test, the `arrakis` binary as a child process, a consumer that collects
//! what landed in the queues, and a bounded wait.
//!
//! Every test gets its own vhost on the machine's broker, so tests run in
//! parallel, never see each other's messages, and leave nothing behind
//! (the vhost is deleted on drop). Tests that must break the broker link
//! put a [`proxy::TcpProxy`] in front of it rather than stopping the
//! shared broker.

#![allow(dead_code, unreachable_pub)]

pub mod db;
pub mod harness;
pub mod private;
pub mod proxy;
pub mod rest;
pub mod sietch;
pub mod worker;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `remaining()` reaches zero. A large backlog may take long
/// to drain on a loaded machine, so this fails only when `remaining()` has
/// not gone down for `stall`, or after `limit` in all.
pub async fn wait_draining(
    what: &str,
    stall: Duration,
    limit: Duration,
    mut remaining: impl FnMut() -> usize,
) {
    let started = tokio::time::Instant::now();
    let mut best = usize::MAX;
    let mut last_progress = started;
    loop {
        let now_remaining = remaining();
        if now_remaining == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        if now_remaining < best {
            best = now_remaining;
            last_progress = now;
        }
        assert!(
            now.duration_since(last_progress) < stall,
            "{what}: {now_remaining} still missing and none arrived for {stall:?}"
        );
        assert!(
            now.duration_since(started) < limit,
            "{what}: {now_remaining} still missing after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` on a role's health listener at `addr`: (status, body), or
/// `None` if it does not answer within 5 s.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, &[])
        .await
        .map(|r| (r.status, r.body))
}

/// An HTTP answer read whole.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// `method path` with `headers` and an empty body on `addr` (HTTP/1.1,
/// one request per connection), or `None` if it does not answer within 5 s.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<HttpAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// Messages ready in `queue` (a passive declare), `None` if it does not
/// exist.
pub async fn ready_count(channel: &lapin::Channel, queue: &str) -> Option<u32> {
    channel
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..lapin::options::QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .ok()
        .map(|q| q.message_count())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A unique name for this test process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (RabbitMQ is installed; .ci/run ensures it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ vhost that exists for one test.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn create() -> Self {
        let name = unique("arrakis-test");
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    /// The AMQP URL of this vhost through `host:port`.
    pub fn url_via(&self, addr: &str) -> String {
        format!("amqp://guest:guest@{addr}/{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via("127.0.0.1:5672")
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The machine's shared Redis.
pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379/";

/// Redis keys under a prefix that exists for one test; deleted on drop.
/// Covers both key shapes the roles use: `prefix:…` and `{prefix:…}…`.
pub struct RedisPrefix {
    pub prefix: String,
    url: String,
}

impl RedisPrefix {
    /// A fresh prefix on the shared Redis.
    pub fn new() -> Self {
        Self::on(SHARED_REDIS)
    }

    /// A fresh prefix on the Redis at `url`.
    pub fn on(url: &str) -> Self {
        Self {
            prefix: unique("arrakis-test"),
            url: url.to_owned(),
        }
    }

    fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url.as_str())
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()
    }

    /// Keys under this prefix right now.
    pub fn keys(&self) -> Vec<String> {
        let Some(mut conn) = self.connection() else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for pattern in [format!("{}:*", self.prefix), format!("{{{}:*", self.prefix)] {
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query(&mut conn)
                .unwrap_or_default();
            keys.extend(found);
        }
        keys
    }

    /// `HGET key field`.
    pub fn hget(&self, key: &str, field: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query(&mut self.connection()?)
            .ok()?
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty()
            && let Some(mut conn) = self.connection()
        {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Sends SIGTERM to `child` while it runs.
pub fn sigterm(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

/// Waits at most `limit` for `child` to exit; its exit code.
pub async fn wait_exit(child: &mut tokio::process::Child, limit: Duration) -> Option<i32> {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status.code(),
        _ => None,
    }
}

/// The `arrakis ingest` process under test.
pub struct Ingestor {
    child: tokio::process::Child,
    pub http: String,
    log: std::path::PathBuf,
    _own_prefix: Option<RedisPrefix>,
}

impl Ingestor {
    /// Starts `arrakis ingest` with the contract's variables set for
    /// `sim` and `vhost`, plus `extra` (which may override them). Without
    /// an `ARRAKIS_REDIS_PREFIX` in `extra` it gets a private one.
    pub fn start(api_base: &str, amqp_url: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let http = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("{}.log", unique("arrakis-ingest")));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis"));
        cmd.arg("ingest")
            .env_clear()
            .env("DISCORD_TOKEN", "sim-token")
            .env("DISCORD_API_BASE", api_base)
            .env("AMQP_URL", amqp_url)
            .env("ARRAKIS_HTTP_LISTEN", &http)
            .env("RUST_LOG", "info,arrakis=debug,lapin=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let own_prefix =
            (!extra.iter().any(|(k, _)| *k == "ARRAKIS_REDIS_PREFIX")).then(RedisPrefix::new);
        if let Some(p) = &own_prefix {
            cmd.env("ARRAKIS_REDIS_PREFIX", &p.prefix);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn arrakis");
        Self {
            child,
            http,
            log,
            _own_prefix: own_prefix,
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path on the health listener: (status, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path).await
    }

    /// Waits for the process to exit (bounded) and returns its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        wait_exit(&mut self.child, limit).await
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        sigterm(&self.child);
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        end_child(&mut self.child, "ingest", &self.log);
    }
}

/// Takes `n` messages off `arrakis.dlq` of the vhost at `amqp_url`,
/// waiting at most 30 s: each as its delivery (body, routing key,
/// properties).
pub async fn take_dead_letters(amqp_url: &str, n: usize) -> Vec<lapin::message::Delivery> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "arrakis.dlq".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let next = tokio::time::timeout_at(deadline, consumer.next())
            .await
            .expect("dead letters within 30 s")
            .unwrap()
            .unwrap();
        out.push(next);
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Kills a role's process and waits (bounded) until it is gone, so it
/// cannot write Redis keys after the test's prefix has been cleaned up;
/// prints its log if the test is failing, then removes the log.
pub fn end_child(child: &mut tokio::process::Child, role: &str, log: &std::path::Path) {
    let _ = child.start_kill();
    for _ in 0..100 {
        if !matches!(child.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if std::thread::panicking() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        eprintln!("---- arrakis {role} log ----\n{text}");
    }
    let _ = std::fs::remove_file(log);
}

/// One message taken off a work queue.
#[derive(Debug, Clone)]
pub struct Received {
    pub queue: String,
    pub routing_key: String,
    pub message_id: String,
    pub kind: String,
    pub delivery_mode: u8,
    pub content_type: String,
    pub timestamp: Option<u64>,
    pub headers: BTreeMap<String, AMQPValue>,
    pub body: Bytes,
}

impl Received {
    pub fn seq(&self) -> u64 {
        match self.headers.get("seq") {
            Some(AMQPValue::LongLongInt(v)) => u64::try_from(*v).unwrap(),
            other => panic!("seq header is {other:?}"),
        }
    }

    pub fn shard_id(&self) -> u32 {
        match self.headers.get("shard_id") {
            Some(AMQPValue::LongInt(v)) => u32::try_from(*v).unwrap(),
            other => panic!("shard_id header is {other:?}"),
        }
    }

    pub fn guild_id(&self) -> Option<String> {
        match self.headers.get("guild_id") {
            Some(AMQPValue::LongString(s)) => {
                Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
            }
            None => None,
            other => panic!("guild_id header is {other:?}"),
        }
    }
}

/// Waits (bounded) until the ingestor has declared the work queues. Each
/// probe uses a connection of its own: a refused passive declare closes
/// the channel, and lapin may take the connection down with it.
async fn wait_for_queues(amqp_url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = false;
        if let Ok(conn) = Connection::connect(amqp_url, ConnectionProperties::default()).await {
            all = true;
            for queue in ["arrakis.interactions", "arrakis.events", "arrakis.bulk"] {
                let passive = lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..lapin::options::QueueDeclareOptions::default()
                };
                let declared = match conn.create_channel().await {
                    Ok(ch) => ch
                        .queue_declare(queue.into(), passive, FieldTable::default())
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
                if !declared {
                    all = false;
                    break;
                }
            }
            let _ = conn.close(200, "probe done".into()).await;
        }
        if all {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ingestor never declared the work queues at {}",
            arrakis::config::redact_url(amqp_url)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a [`Collector`] has taken off the queues so far.
#[derive(Default)]
struct Collected {
    received: Vec<Received>,
    /// Distinct `message_id`s, kept as messages arrive so that waiting
    /// on a large run never re-scans (or clones) everything received.
    ids: std::collections::HashSet<String>,
}

/// Consumes the three work queues of a vhost into memory.
pub struct Collector {
    collected: Arc<Mutex<Collected>>,
    _connection: Connection,
}

impl Collector {
    /// Connects and consumes; declares the queues passively once the
    /// ingestor has created them (retrying until then).
    pub async fn start(amqp_url: &str) -> Self {
        let collected = Arc::new(Mutex::new(Collected::default()));
        wait_for_queues(amqp_url).await;
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
            .await
            .expect("collector connects");
        for queue in ["arrakis.interactions", "arrakis.events", "arrakis.bulk"] {
            let channel = connection
                .create_channel()
                .await
                .expect("collector channel");
            let mut consumer = channel
                .basic_consume(
                    queue.into(),
                    format!("collector-{queue}").into(),
                    // Manual acks: a delivery lost with the connection (a
                    // broker restart) is redelivered, not silently gone.
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap_or_else(|e| panic!("consume {queue}: {e}"));
            let collected = collected.clone();
            let queue = queue.to_owned();
            tokio::spawn(async move {
                while let Some(Ok(delivery)) = consumer.next().await {
                    let props = &delivery.properties;
                    let headers = props
                        .headers()
                        .as_ref()
                        .map(|h| {
                            h.inner()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let received = Received {
                        queue: queue.clone(),
                        routing_key: delivery.routing_key.to_string(),
                        message_id: props
                            .message_id()
                            .as_ref()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        kind: props
                            .kind()
                            .as_ref()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        delivery_mode: props.delivery_mode().unwrap_or(0),
                        content_type: props
                            .content_type()
                            .as_ref()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        timestamp: *props.timestamp(),
                        headers,
                        body: Bytes::from(delivery.data.clone()),
                    };
                    {
                        let mut collected = collected.lock().unwrap();
                        collected.ids.insert(received.message_id.clone());
                        collected.received.push(received);
                    }
                    let _ = delivery
                        .ack(lapin::options::BasicAckOptions::default())
                        .await;
                }
            });
        }
        Self {
            collected,
            _connection: connection,
        }
    }

    pub fn all(&self) -> Vec<Received> {
        self.collected.lock().unwrap().received.clone()
    }

    /// Messages received, duplicates included.
    pub fn len(&self) -> usize {
        self.collected.lock().unwrap().received.len()
    }

    /// Distinct `message_id`s received.
    pub fn distinct(&self) -> usize {
        self.collected.lock().unwrap().ids.len()
    }

    /// Which of `ids` this collector has not received.
    pub fn missing<'a>(&self, ids: &'a [String]) -> Vec<&'a String> {
        let collected = self.collected.lock().unwrap();
        ids.iter()
            .filter(|id| !collected.ids.contains(*id))
            .collect()
    }
}
