//! The chain client: JSON-RPC over hyper to the endpoints of
//! `ARRAKIS_CHAIN_RPC_URLS`, rotated, each behind a circuit breaker.
//!
//! A call starts at the next endpoint in round-robin order and moves on to
//! the next when one fails (transport error, timeout, HTTP 5xx) or is rate
//! limited (HTTP 429 or a provider's rate-limit error), trying each
//! endpoint at most once, each attempt bounded by `call_timeout`. Endpoints
//! whose breaker is open, or which are sitting out a rate limit, are not
//! tried at all, so when every endpoint is down callers get
//! [`ChainError::Unavailable`] at once instead of after a string of
//! timeouts. A JSON-RPC error that is the caller's (a revert, a bad
//! parameter) is returned as [`ChainError::Rpc`] without trying elsewhere.
//!
//! Batching: `balanceOf` goes through Multicall3's `aggregate3`, 100 holders
//! per call; `Transfer` logs are read in windows of at most 10,000 blocks
//! (halved while a provider refuses the range).
//!
//! URLs often carry an API key, so logs and errors name endpoints by
//! `scheme://host:port` only.

pub mod abi;
mod endpoint;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::time::Instant;

pub use endpoint::{BreakerState, EndpointState};
use endpoint::{Endpoint, Policy};

/// Multicall3, deployed at the same address on every major EVM chain.
pub const MULTICALL3: Address = Address([
    0xca, 0x11, 0xbd, 0xe0, 0x59, 0x77, 0xb3, 0x63, 0x11, 0x67, 0x02, 0x88, 0x62, 0xbe, 0x2a, 0x17,
    0x39, 0x76, 0xca, 0x11,
]);
/// Holders per `aggregate3` call.
pub const MULTICALL_BATCH: usize = 100;
/// Widest `eth_getLogs` block range (inclusive) asked for.
pub const LOG_WINDOW: u64 = 10_000;
/// Largest JSON-RPC response read.
const MAX_RESPONSE: usize = 64 << 20;

/// A 20-byte EVM address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The zero address (the `from` of a mint, the `to` of a burn).
    pub const ZERO: Self = Self([0; 20]);
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&abi::to_hex(&self.0))
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .trim()
            .strip_prefix("0x")
            .or_else(|| s.trim().strip_prefix("0X"))
            .ok_or_else(|| format!("`{s}` does not start with 0x"))?;
        if hex.len() != 40 {
            return Err(format!("`{s}` is not 40 hex digits"));
        }
        let bytes = abi::from_hex(hex).map_err(|_| format!("`{s}` is not hex"))?;
        let mut out = [0u8; 20];
        out.copy_from_slice(&bytes);
        Ok(Self(out))
    }
}

/// One ERC-20 `Transfer` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLog {
    /// Its block.
    pub block: u64,
    /// Its index in the block.
    pub log_index: u32,
    /// Sender (zero for a mint).
    pub from: Address,
    /// Recipient (zero for a burn).
    pub to: Address,
    /// Amount, in the token's smallest unit.
    pub value: u128,
}

/// How the client reaches the chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Endpoints, in rotation order.
    pub urls: Vec<String>,
    /// Longest wait for one endpoint's answer.
    pub call_timeout: Duration,
    /// How long a rate-limited endpoint sits out without `Retry-After`.
    pub skip_for: Duration,
    /// Failures in a row that open an endpoint's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before one trial.
    pub breaker_open_for: Duration,
}

impl ChainConfig {
    /// Defaults for a comma-separated list of `http(s)://` URLs.
    ///
    /// # Errors
    ///
    /// A message naming the bad entry (by position and host only).
    pub fn from_urls(list: &str) -> Result<Self, String> {
        let mut urls = Vec::new();
        for (i, raw) in list.split(',').map(str::trim).enumerate() {
            if raw.is_empty() {
                return Err(format!("entry {} is empty", i + 1));
            }
            let ok = (raw.starts_with("http://") || raw.starts_with("https://"))
                && raw.parse::<hyper::Uri>().is_ok_and(|u| u.host().is_some());
            if !ok {
                return Err(format!(
                    "entry {} ({}) is not an http:// or https:// URL",
                    i + 1,
                    endpoint::label(raw)
                ));
            }
            urls.push(raw.to_owned());
        }
        Ok(Self {
            urls,
            call_timeout: Duration::from_secs(5),
            skip_for: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(30),
        })
    }
}

/// Why a chain call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No endpoint could answer: all failed, are rate limited, or have
    /// their breaker open.
    #[error("chain unavailable: none of {endpoints} RPC endpoints answered ({last})")]
    Unavailable {
        /// How many endpoints there are.
        endpoints: usize,
        /// The last failure seen.
        last: String,
    },
    /// The node refused the call itself.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("cannot decode the RPC answer: {0}")]
    Decode(String),
}

impl ChainError {
    /// Whether the chain as a whole is unreachable right now (callers then
    /// keep what they have: grace, not revocation).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

type Http = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Inner {
    config: ChainConfig,
    policy: Policy,
    endpoints: Vec<Endpoint>,
    cursor: AtomicUsize,
    next_id: AtomicU64,
    http: Http,
}

/// The chain client; cheap to clone.
#[derive(Clone)]
pub struct ChainClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field(
                "endpoints",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|e| &e.label)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What one attempt at one endpoint came to.
enum Attempt {
    Answer(Value),
    Refused(ChainError),
    RateLimited(Option<Duration>, String),
    Failed(String),
}

impl ChainClient {
    /// A client of `config.urls`.
    ///
    /// # Errors
    ///
    /// [`ChainError::Unavailable`] when there is no endpoint.
    pub fn new(config: ChainConfig) -> Result<Self, ChainError> {
        if config.urls.is_empty() {
            return Err(ChainError::Unavailable {
                endpoints: 0,
                last: "no endpoint configured".to_owned(),
            });
        }
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.call_timeout.min(Duration::from_secs(3))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                policy: Policy {
                    failures: config.breaker_failures.max(1),
                    open_for: config.breaker_open_for,
                },
                endpoints: config.urls.iter().cloned().map(Endpoint::new).collect(),
                config,
                cursor: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                http,
            }),
        })
    }

    /// Each endpoint's breaker and skip state.
    #[must_use]
    pub fn endpoint_states(&self) -> Vec<EndpointState> {
        let now = Instant::now();
        self.inner
            .endpoints
            .iter()
            .map(|e| e.state(now, self.inner.policy))
            .collect()
    }

    /// One JSON-RPC call, rotated over the endpoints.
    ///
    /// # Errors
    ///
    /// [`ChainError`]; `Unavailable` when no endpoint answered.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let inner = &self.inner;
        let n = inner.endpoints.len();
        let start = inner.cursor.fetch_add(1, Ordering::Relaxed) % n;
        let mut last = "every endpoint is rate limited or has its breaker open".to_owned();
        for k in 0..n {
            let endpoint = &inner.endpoints[(start + k) % n];
            if !endpoint.admit(Instant::now(), inner.policy) {
                continue;
            }
            match self.attempt(endpoint, method, &params).await {
                Attempt::Answer(value) => {
                    endpoint.succeeded();
                    return Ok(value);
                }
                Attempt::Refused(err) => {
                    endpoint.succeeded();
                    return Err(err);
                }
                Attempt::RateLimited(wait, why) => {
                    endpoint.rate_limited(Instant::now(), wait.unwrap_or(inner.config.skip_for));
                    tracing::debug!(endpoint = %endpoint.label, "rate limited: {why}");
                    last = format!("{}: {why}", endpoint.label);
                }
                Attempt::Failed(why) => {
                    endpoint.failed(Instant::now(), inner.policy);
                    tracing::debug!(endpoint = %endpoint.label, "RPC call failed: {why}");
                    last = format!("{}: {why}", endpoint.label);
                }
            }
        }
        Err(ChainError::Unavailable { endpoints: n, last })
    }

    async fn attempt(&self, endpoint: &Endpoint, method: &str, params: &Value) -> Attempt {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let Ok(req) = Request::post(endpoint.url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, crate::USER_AGENT)
            .body(Full::new(Bytes::from(body.to_string())))
        else {
            return Attempt::Failed("bad URL".to_owned());
        };
        let timeout = self.inner.config.call_timeout;
        let exchange = async {
            let resp = self.inner.http.request(req).await.map_err(|e| {
                use std::error::Error as _;
                let mut why = if e.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                if let Some(source) = e.source() {
                    why.push_str(&format!(": {source}"));
                }
                why
            })?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return Attempt::Failed(format!("no answer within {timeout:?}")),
            Ok(Err(why)) => return Attempt::Failed(why),
            Ok(Ok(answer)) => answer,
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::RateLimited(retry_after, "HTTP 429".to_owned());
        }
        if status.is_server_error() {
            return Attempt::Failed(format!("HTTP {}", status.as_u16()));
        }
        let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
            return Attempt::Failed(format!("HTTP {}: not JSON-RPC", status.as_u16()));
        };
        if let Some(err) = answer.get("error") {
            let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if is_rate_limit(code, &message) {
                return Attempt::RateLimited(retry_after, format!("{code}: {message}"));
            }
            return Attempt::Refused(ChainError::Rpc { code, message });
        }
        match answer.get("result") {
            Some(result) => Attempt::Answer(result.clone()),
            None => Attempt::Failed(format!("HTTP {}: no result", status.as_u16())),
        }
    }

    /// The latest block number.
    ///
    /// # Errors
    ///
    /// [`ChainError`].
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        let v = self.call("eth_blockNumber", json!([])).await?;
        abi::quantity(
            v.as_str()
                .ok_or_else(|| ChainError::Decode("block number is not a string".into()))?,
        )
    }

    /// `token.balanceOf(holder)` at the latest block.
    ///
    /// # Errors
    ///
    /// [`ChainError`].
    pub async fn balance_of(&self, token: Address, holder: Address) -> Result<u128, ChainError> {
        let data = abi::to_hex(&abi::balance_of(&holder));
        let v = self
            .call(
                "eth_call",
                json!([{ "to": token.to_string(), "data": data }, "latest"]),
            )
            .await?;
        abi::uint(&abi::from_hex(v.as_str().unwrap_or(""))?)
    }

    /// `token.balanceOf` of every holder, in order, through Multicall3 in
    /// batches of [`MULTICALL_BATCH`].
    ///
    /// # Errors
    ///
    /// [`ChainError`]; a sub-call that failed is a `Decode` error naming
    /// the holder.
    pub async fn balances_of(
        &self,
        token: Address,
        holders: &[Address],
    ) -> Result<Vec<u128>, ChainError> {
        let mut out = Vec::with_capacity(holders.len());
        for batch in holders.chunks(MULTICALL_BATCH) {
            let calls: Vec<(Address, Vec<u8>)> =
                batch.iter().map(|h| (token, abi::balance_of(h))).collect();
            let data = abi::to_hex(&abi::aggregate3(&calls));
            let v = self
                .call(
                    "eth_call",
                    json!([{ "to": MULTICALL3.to_string(), "data": data }, "latest"]),
                )
                .await?;
            let results = abi::aggregate3_results(&abi::from_hex(v.as_str().unwrap_or(""))?)?;
            if results.len() != batch.len() {
                return Err(ChainError::Decode(format!(
                    "multicall answered {} results for {} calls",
                    results.len(),
                    batch.len()
                )));
            }
            for (holder, (ok, ret)) in batch.iter().zip(results) {
                if !ok {
                    return Err(ChainError::Decode(format!("balanceOf({holder}) failed")));
                }
                out.push(abi::uint(&ret)?);
            }
        }
        Ok(out)
    }

    /// Every `Transfer` log of `token` in `from_block..=to_block`, in
    /// chain order, read in windows of at most [`LOG_WINDOW`] blocks.
    ///
    /// # Errors
    ///
    /// [`ChainError`].
    pub async fn transfer_logs(
        &self,
        token: Address,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<TransferLog>, ChainError> {
        let mut out = Vec::new();
        let mut window = LOG_WINDOW;
        let mut start = from_block;
        let mut shrinks = 0;
        while start <= to_block {
            let end = start.saturating_add(window - 1).min(to_block);
            let filter = json!([{
                "address": token.to_string(),
                "fromBlock": format!("0x{start:x}"),
                "toBlock": format!("0x{end:x}"),
                "topics": [abi::TRANSFER_TOPIC],
            }]);
            match self.call("eth_getLogs", filter).await {
                Ok(logs) => {
                    for log in logs.as_array().map(Vec::as_slice).unwrap_or_default() {
                        out.push(parse_log(log)?);
                    }
                    start = end + 1;
                }
                Err(ChainError::Rpc { code, message })
                    if is_range_refusal(code, &message) && window > 1 && shrinks < 16 =>
                {
                    window = (window / 2).max(1);
                    shrinks += 1;
                }
                Err(err) => return Err(err),
            }
        }
        out.sort_by_key(|l| (l.block, l.log_index));
        Ok(out)
    }
}

fn parse_log(log: &Value) -> Result<TransferLog, ChainError> {
    let field = |name: &str| {
        log.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ChainError::Decode(format!("log without {name}")))
    };
    let topics = log
        .get("topics")
        .and_then(Value::as_array)
        .filter(|t| t.len() == 3)
        .ok_or_else(|| ChainError::Decode("Transfer log without 3 topics".to_owned()))?;
    let topic_address = |i: usize| -> Result<Address, ChainError> {
        let bytes = abi::from_hex(topics[i].as_str().unwrap_or(""))?;
        if bytes.len() != 32 {
            return Err(ChainError::Decode("topic is not 32 bytes".to_owned()));
        }
        let mut a = [0u8; 20];
        a.copy_from_slice(&bytes[12..]);
        Ok(Address(a))
    };
    Ok(TransferLog {
        block: abi::quantity(field("blockNumber")?)?,
        log_index: u32::try_from(abi::quantity(field("logIndex")?)?)
            .map_err(|_| ChainError::Decode("log index too large".to_owned()))?,
        from: topic_address(1)?,
        to: topic_address(2)?,
        value: abi::uint(&abi::from_hex(field("data")?)?)?,
    })
}

/// Providers' ways of saying "too many requests".
fn is_rate_limit(code: i64, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    matches!(code, -32016 | -32090 | 429)
        || m.contains("rate limit")
        || m.contains("too many requests")
        || (code == -32005 && m.contains("limit") && !m.contains("range") && !m.contains("block"))
}

/// Providers' ways of saying "ask for fewer blocks".
fn is_range_refusal(code: i64, message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    code == -32005
        || m.contains("range")
        || m.contains("block limit")
        || m.contains("10000")
        || m.contains("too many results")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let a: Address = "0xcA11bde05977b3631167028862bE2a173976CA11"
            .parse()
            .unwrap();
        assert_eq!(a, MULTICALL3);
        assert_eq!(a.to_string(), "0xca11bde05977b3631167028862be2a173976ca11");
        for bad in [
            "ca11bde05977b3631167028862be2a173976ca11",
            "0x123",
            "0xzz11bde05977b3631167028862be2a173976ca11",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn config_names_the_bad_entry_without_its_secret() {
        let c = ChainConfig::from_urls(" http://127.0.0.1:1 , https://rpc.example/KEY").unwrap();
        assert_eq!(c.urls.len(), 2);
        let err =
            ChainConfig::from_urls("https://a.example,ftp://b.example/SECRETKEY").unwrap_err();
        assert!(
            err.contains("entry 2") && !err.contains("SECRETKEY"),
            "{err}"
        );
        assert!(ChainConfig::from_urls("https://a.example,,").is_err());
        assert!(ChainClient::new(ChainConfig { urls: vec![], ..c }).is_err());
    }

    #[test]
    fn rate_limits_and_range_refusals_are_told_apart() {
        assert!(is_rate_limit(-32016, "over rate limit"));
        assert!(is_rate_limit(-32000, "Too Many Requests"));
        assert!(!is_rate_limit(
            -32005,
            "query exceeds max block range 10000"
        ));
        assert!(is_range_refusal(
            -32005,
            "query exceeds max block range 10000"
        ));
        assert!(!is_range_refusal(3, "execution reverted"));
    }

    #[test]
    fn transfer_logs_parse() {
        let log = json!({
            "blockNumber": "0x10", "logIndex": "0x2",
            "topics": [abi::TRANSFER_TOPIC,
                "0x0000000000000000000000000000000000000000000000000000000000000000",
                "0x000000000000000000000000abababababababababababababababababababab"],
            "data": "0x00000000000000000000000000000000000000000000000000000000000003e8",
        });
        let l = parse_log(&log).unwrap();
        assert_eq!((l.block, l.log_index, l.value), (16, 2, 1000));
        assert_eq!(l.from, Address::ZERO);
        assert_eq!(l.to, Address([0xab; 20]));
    }
}
