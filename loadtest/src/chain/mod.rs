//! A chain simulator: one ERC-20 token's balances and `Transfer` logs
//! behind N JSON-RPC endpoints, each of which a test can make slow, down,
//! failing, rate-limited or erroring.
//!
//! It answers what a holder-ranking bot asks: `eth_chainId`,
//! `eth_blockNumber`, `eth_call` of `balanceOf` on the token or of
//! Multicall3's `aggregate3` over such calls, and `eth_getLogs` with a
//! provider's block-range limit (default 10,000, error -32005 beyond it).
//! Single and batch requests.
//!
//! Task ownership: `start` spawns one accept loop per endpoint, each owning
//! its connection tasks; `shutdown` aborts them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Multicall3's address.
pub const MULTICALL3: [u8; 20] = [
    0xca, 0x11, 0xbd, 0xe0, 0x59, 0x77, 0xb3, 0x63, 0x11, 0x67, 0x02, 0x88, 0x62, 0xbe, 0x2a, 0x17,
    0x39, 0x76, 0xca, 0x11,
];
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952b3a7f163c4f5f2ed15c6ac4e9cce3";
const BALANCE_OF: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];
const AGGREGATE3: [u8; 4] = [0x82, 0xad, 0x56, 0xcb];

/// How the simulated chain behaves.
#[derive(Debug, Clone)]
pub struct ChainSimConfig {
    /// Number of RPC endpoints (each its own port, same chain behind).
    pub endpoints: usize,
    /// `eth_chainId`.
    pub chain_id: u64,
    /// The token contract.
    pub token: [u8; 20],
    /// Delay before every answer.
    pub latency: Duration,
    /// Widest `eth_getLogs` range accepted (inclusive block count).
    pub max_log_range: u64,
    /// The head block at start.
    pub head_block: u64,
}

impl Default for ChainSimConfig {
    fn default() -> Self {
        Self {
            endpoints: 3,
            chain_id: 80_094,
            token: [0x11; 20],
            latency: Duration::ZERO,
            max_log_range: 10_000,
            head_block: 1_000_000,
        }
    }
}

/// What one endpoint does with requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointMode {
    /// Answers.
    Healthy,
    /// Closes every connection at once (a dead node).
    Down,
    /// HTTP 500.
    Http500,
    /// HTTP 429 with `Retry-After`.
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// A JSON-RPC error on every call.
    RpcError {
        /// Its code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// Answers after this extra delay.
    Slow(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Log {
    block: u64,
    index: u32,
    from: [u8; 20],
    to: [u8; 20],
    value: u128,
}

#[derive(Debug)]
struct Ledger {
    balances: HashMap<[u8; 20], u128>,
    logs: Vec<Log>,
    head: u64,
    latency: Duration,
    modes: Vec<EndpointMode>,
}

struct Shared {
    config: ChainSimConfig,
    ledger: Mutex<Ledger>,
    requests: Vec<AtomicU64>,
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running chain simulator.
pub struct ChainSim {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for ChainSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSim")
            .field("endpoints", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl ChainSim {
    /// Binds `config.endpoints` loopback ports and serves them.
    ///
    /// # Errors
    ///
    /// A bind error.
    pub async fn start(config: ChainSimConfig) -> std::io::Result<Self> {
        let n = config.endpoints.max(1);
        let shared = Arc::new(Shared {
            ledger: Mutex::new(Ledger {
                balances: HashMap::new(),
                logs: Vec::new(),
                head: config.head_block,
                latency: config.latency,
                modes: vec![EndpointMode::Healthy; n],
            }),
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            config,
        });
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for endpoint in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            tasks.push(tokio::spawn(serve(listener, shared.clone(), endpoint)));
        }
        Ok(Self {
            shared,
            addrs,
            tasks,
        })
    }

    /// `http://127.0.0.1:port` of each endpoint.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("http://{a}")).collect()
    }

    /// Sets what `endpoint` does.
    pub fn set_mode(&self, endpoint: usize, mode: EndpointMode) {
        if let Some(m) = self.shared.ledger().modes.get_mut(endpoint) {
            *m = mode;
        }
    }

    /// Delay before every answer, on every endpoint.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.ledger().latency = latency;
    }

    /// Mints `amount` to `to` at the head block (a `Transfer` from zero),
    /// then moves the head on by one block.
    pub fn mint(&self, to: [u8; 20], amount: u128) {
        self.record([0; 20], to, amount);
    }

    /// Moves `amount` from `from` to `to`.
    ///
    /// # Panics
    ///
    /// When `from` holds less than `amount` (a test mistake).
    pub fn transfer(&self, from: [u8; 20], to: [u8; 20], amount: u128) {
        self.record(from, to, amount);
    }

    /// Burns `amount` of `from`'s tokens (a `Transfer` to the zero address).
    ///
    /// # Panics
    ///
    /// When `from` holds less than `amount`.
    pub fn burn(&self, from: [u8; 20], amount: u128) {
        self.record(from, [0; 20], amount);
    }

    fn record(&self, from: [u8; 20], to: [u8; 20], value: u128) {
        let mut l = self.shared.ledger();
        if from != [0; 20] {
            let held = l.balances.entry(from).or_default();
            assert!(
                *held >= value,
                "{} holds {held}, cannot send {value}",
                hex(&from)
            );
            *held -= value;
        }
        if to != [0; 20] {
            *l.balances.entry(to).or_default() += value;
        }
        let block = l.head;
        let index =
            u32::try_from(l.logs.iter().filter(|g| g.block == block).count()).unwrap_or(u32::MAX);
        l.logs.push(Log {
            block,
            index,
            from,
            to,
            value,
        });
        l.head += 1;
    }

    /// Sets the head block (later logs go there).
    pub fn set_head(&self, block: u64) {
        self.shared.ledger().head = block;
    }

    /// The head block.
    #[must_use]
    pub fn head(&self) -> u64 {
        self.shared.ledger().head
    }

    /// `holder`'s balance.
    #[must_use]
    pub fn balance(&self, holder: [u8; 20]) -> u128 {
        self.shared
            .ledger()
            .balances
            .get(&holder)
            .copied()
            .unwrap_or(0)
    }

    /// HTTP requests `endpoint` has received (a batch counts once).
    #[must_use]
    pub fn requests(&self, endpoint: usize) -> u64 {
        self.shared
            .requests
            .get(endpoint)
            .map_or(0, |r| r.load(Ordering::Relaxed))
    }

    /// Stops every endpoint.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, endpoint: usize) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        if shared.ledger().modes[endpoint] == EndpointMode::Down {
            drop(stream);
            continue;
        }
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| answer(shared.clone(), endpoint, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    endpoint: usize,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    shared.requests[endpoint].fetch_add(1, Ordering::Relaxed);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (mode, latency) = {
        let l = shared.ledger();
        (l.modes[endpoint].clone(), l.latency)
    };
    let delay = latency
        + if let EndpointMode::Slow(d) = mode {
            d
        } else {
            Duration::ZERO
        };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    };
    Ok(match mode {
        EndpointMode::Down => reply(StatusCode::SERVICE_UNAVAILABLE, String::new()),
        EndpointMode::Http500 => reply(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
        EndpointMode::RateLimited { retry_after_secs } => {
            let mut r = reply(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":429,"message":"Too Many Requests"}}"#
                    .into(),
            );
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(retry_after_secs),
            );
            r
        }
        EndpointMode::RpcError { code, message } => reply(
            StatusCode::OK,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":code,"message":message}}).to_string(),
        ),
        EndpointMode::Healthy | EndpointMode::Slow(_) => match serde_json::from_slice::<Value>(
            &body,
        ) {
            Ok(Value::Array(calls)) => {
                let out: Vec<Value> = calls.iter().map(|c| rpc(&shared, c)).collect();
                reply(StatusCode::OK, Value::Array(out).to_string())
            }
            Ok(call) => reply(StatusCode::OK, rpc(&shared, &call).to_string()),
            Err(_) => reply(
                StatusCode::OK,
                json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}})
                    .to_string(),
            ),
        },
    })
}

fn rpc(shared: &Shared, call: &Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let params = call.get("params").cloned().unwrap_or(Value::Null);
    let result = match call.get("method").and_then(Value::as_str) {
        Some("eth_chainId") => Ok(json!(format!("0x{:x}", shared.config.chain_id))),
        Some("eth_blockNumber") => Ok(json!(format!("0x{:x}", shared.ledger().head))),
        Some("eth_call") => eth_call(shared, &params),
        Some("eth_getLogs") => get_logs(shared, &params),
        _ => Err((
            -32601,
            "the method does not exist/is not available".to_owned(),
        )),
    };
    match result {
        Ok(r) => json!({"jsonrpc":"2.0","id":id,"result":r}),
        Err((code, message)) => {
            json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}})
        }
    }
}

type RpcResult = Result<Value, (i64, String)>;

fn eth_call(shared: &Shared, params: &Value) -> RpcResult {
    let tx = params.get(0).ok_or((-32602, "missing call".to_owned()))?;
    let to = tx
        .get("to")
        .and_then(Value::as_str)
        .and_then(address)
        .ok_or((-32602, "bad to".to_owned()))?;
    let data = tx
        .get("data")
        .or_else(|| tx.get("input"))
        .and_then(Value::as_str)
        .and_then(unhex)
        .ok_or((-32602, "bad data".to_owned()))?;
    let ledger = shared.ledger();
    if to == shared.config.token {
        let balance = balance_call(&ledger, &data).ok_or((3, "execution reverted".to_owned()))?;
        return Ok(json!(hex(&uint_word(balance))));
    }
    if to == MULTICALL3 && data.get(..4) == Some(&AGGREGATE3[..]) {
        let calls = decode_aggregate3(&data[4..])
            .ok_or((3, "execution reverted: bad aggregate3".to_owned()))?;
        let results: Vec<(bool, Vec<u8>)> = calls
            .iter()
            .map(|(target, call)| {
                match (target == &shared.config.token)
                    .then(|| balance_call(&ledger, call))
                    .flatten()
                {
                    Some(b) => (true, uint_word(b).to_vec()),
                    None => (false, Vec::new()),
                }
            })
            .collect();
        return Ok(json!(hex(&encode_results(&results))));
    }
    // An address without code answers empty.
    Ok(json!("0x"))
}

fn balance_call(ledger: &Ledger, data: &[u8]) -> Option<u128> {
    if data.len() != 36 || data[..4] != BALANCE_OF {
        return None;
    }
    let mut holder = [0u8; 20];
    holder.copy_from_slice(&data[16..36]);
    Some(ledger.balances.get(&holder).copied().unwrap_or(0))
}

fn get_logs(shared: &Shared, params: &Value) -> RpcResult {
    let filter = params.get(0).ok_or((-32602, "missing filter".to_owned()))?;
    let ledger = shared.ledger();
    let block = |name: &str, default: u64| -> Result<u64, (i64, String)> {
        match filter.get(name).and_then(Value::as_str) {
            None | Some("latest") => Ok(default),
            Some("earliest") => Ok(0),
            Some(q) => u64::from_str_radix(q.trim_start_matches("0x"), 16)
                .map_err(|_| (-32602, format!("bad {name}"))),
        }
    };
    let from = block("fromBlock", ledger.head)?;
    let to = block("toBlock", ledger.head)?;
    if to < from {
        return Ok(json!([]));
    }
    let max = shared.config.max_log_range;
    if to - from + 1 > max {
        return Err((-32005, format!("query exceeds max block range {max}")));
    }
    if let Some(a) = filter.get("address").and_then(Value::as_str)
        && address(a) != Some(shared.config.token)
    {
        return Ok(json!([]));
    }
    if let Some(t0) = filter
        .get("topics")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        && !t0.eq_ignore_ascii_case(TRANSFER_TOPIC)
    {
        return Ok(json!([]));
    }
    let token = hex(&shared.config.token);
    let logs: Vec<Value> = ledger
        .logs
        .iter()
        .filter(|l| (from..=to).contains(&l.block))
        .map(|l| {
            json!({
                "address": token,
                "topics": [TRANSFER_TOPIC, hex(&pad(&l.from)), hex(&pad(&l.to))],
                "data": hex(&uint_word(l.value)),
                "blockNumber": format!("0x{:x}", l.block),
                "logIndex": format!("0x{:x}", l.index),
                "transactionHash": format!("0x{:064x}", u128::from(l.index) << 64 | u128::from(l.block)),
                "removed": false,
            })
        })
        .collect();
    Ok(Value::Array(logs))
}

fn pad(a: &[u8; 20]) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a);
    w
}

fn uint_word(v: u128) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[16..].copy_from_slice(&v.to_be_bytes());
    w
}

fn read_usize(data: &[u8], at: usize) -> Option<usize> {
    let w = data.get(at..at + 32)?;
    if w[..24].iter().any(|b| *b != 0) {
        return None;
    }
    usize::try_from(u64::from_be_bytes(w[24..].try_into().ok()?)).ok()
}

/// `(address target, bool allowFailure, bytes callData)[]`.
fn decode_aggregate3(data: &[u8]) -> Option<Vec<([u8; 20], Vec<u8>)>> {
    let array = read_usize(data, 0)?;
    let n = read_usize(data, array)?;
    let base = array + 32;
    (0..n.min(10_000))
        .map(|i| {
            let tuple = base + read_usize(data, base + 32 * i)?;
            let mut target = [0u8; 20];
            target.copy_from_slice(data.get(tuple + 12..tuple + 32)?);
            let bytes = tuple + read_usize(data, tuple + 64)?;
            let len = read_usize(data, bytes)?;
            Some((target, data.get(bytes + 32..bytes + 32 + len)?.to_vec()))
        })
        .collect()
}

/// `(bool success, bytes returnData)[]`.
fn encode_results(results: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let word = |n: usize| {
        let mut w = [0u8; 32];
        w[24..].copy_from_slice(&(n as u64).to_be_bytes());
        w
    };
    let mut out = Vec::new();
    out.extend_from_slice(&word(0x20));
    out.extend_from_slice(&word(results.len()));
    let mut offset = results.len() * 32;
    for (_, data) in results {
        out.extend_from_slice(&word(offset));
        offset += 96 + data.len().div_ceil(32) * 32;
    }
    for (ok, data) in results {
        out.extend_from_slice(&word(usize::from(*ok)));
        out.extend_from_slice(&word(0x40));
        out.extend_from_slice(&word(data.len()));
        out.extend_from_slice(data);
        out.resize(out.len() + (32 - data.len() % 32) % 32, 0);
    }
    out
}

/// `0x`-prefixed lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x")?;
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Parses `0x` + 40 hex digits.
#[must_use]
pub fn address(s: &str) -> Option<[u8; 20]> {
    let bytes = unhex(&s.to_ascii_lowercase())?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate3_round_trips_through_its_encoding() {
        // Build aggregate3 data the way the ABI lays it out, decode it, and
        // check the results encoding is readable back.
        let calls = vec![([1u8; 20], vec![0xaa; 36]), ([2u8; 20], vec![0xbb; 4])];
        let word = |n: usize| {
            let mut w = [0u8; 32];
            w[24..].copy_from_slice(&(n as u64).to_be_bytes());
            w
        };
        let mut d = Vec::new();
        d.extend_from_slice(&word(0x20));
        d.extend_from_slice(&word(2));
        d.extend_from_slice(&word(0x40));
        d.extend_from_slice(&word(0x40 + 0x80 + 64));
        for (t, data) in &calls {
            d.extend_from_slice(&pad(t));
            d.extend_from_slice(&word(1));
            d.extend_from_slice(&word(0x60));
            d.extend_from_slice(&word(data.len()));
            d.extend_from_slice(data);
            d.resize(d.len() + (32 - data.len() % 32) % 32, 0);
        }
        assert_eq!(decode_aggregate3(&d).unwrap(), calls);
        let enc = encode_results(&[(true, uint_word(7).to_vec()), (false, vec![])]);
        assert_eq!(read_usize(&enc, 32), Some(2));
        assert!(decode_aggregate3(&d[..70]).is_none());
    }
}
