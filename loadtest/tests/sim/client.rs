//! A minimal gateway and REST client for the simulator's tests: connects with
//! or without `compress=zlib-stream`, inflates with its own context, and
//! fails the test (instead of hanging) when nothing arrives within
//! [`WAIT`].

use std::time::Duration;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any single wait in a test may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// What the server sent.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A payload: parsed and as the exact inflated bytes.
    Payload(Value, Bytes),
    /// A close frame (code), or the socket ending without one (`None`).
    Closed(Option<u16>),
}

/// A gateway connection.
pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    inflate: Option<Decompress>,
    pending: Vec<u8>,
    /// WebSocket data messages received so far.
    pub(crate) messages: usize,
}

impl Client {
    /// Connect to `base` (a `ws://host:port` URL) with the standard query.
    pub(crate) async fn connect(base: &str, zlib: bool) -> Self {
        let query = if zlib {
            "/?v=10&encoding=json&compress=zlib-stream"
        } else {
            "/?v=10&encoding=json"
        };
        Self::connect_raw(&format!("{base}{query}"), zlib).await
    }

    /// Connect to an exact URL.
    pub(crate) async fn connect_raw(url: &str, zlib: bool) -> Self {
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self {
            ws,
            inflate: zlib.then(|| Decompress::new(true)),
            pending: Vec::new(),
            messages: 0,
        }
    }

    /// The next payload or close, failing the test after [`WAIT`].
    pub(crate) async fn next(&mut self) -> Frame {
        timeout(WAIT, self.next_inner())
            .await
            .expect("nothing received in time")
    }

    /// Like [`Client::next`] but `None` if nothing arrives within `wait`.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        timeout(wait, self.next_inner()).await.ok()
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            let msg = match self.ws.next().await {
                None | Some(Err(_)) => return Frame::Closed(None),
                Some(Ok(m)) => m,
            };
            match msg {
                Message::Text(t) => {
                    self.messages += 1;
                    let raw = Bytes::copy_from_slice(t.as_bytes());
                    return Frame::Payload(serde_json::from_slice(&raw).unwrap(), raw);
                }
                Message::Binary(b) => {
                    self.messages += 1;
                    self.pending.extend_from_slice(&b);
                    if !self.pending.ends_with(&[0, 0, 0xFF, 0xFF]) {
                        continue;
                    }
                    let raw = Bytes::from(self.inflate_pending());
                    let v = serde_json::from_slice(&raw).unwrap_or_else(|e| {
                        panic!("bad JSON {e}: {}", String::from_utf8_lossy(&raw))
                    });
                    return Frame::Payload(v, raw);
                }
                Message::Close(f) => return Frame::Closed(f.map(|f| u16::from(f.code))),
                _ => {}
            }
        }
    }

    /// The next data message's bytes as received (not inflated, not fed to
    /// the inflate context).
    pub(crate) async fn raw_message(&mut self) -> Bytes {
        timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => return b,
                    Some(Ok(Message::Text(t))) => return Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await
        .expect("nothing received in time")
    }

    /// The next complete payload inflated but not parsed.
    pub(crate) async fn inflated(&mut self) -> Bytes {
        timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        self.pending.extend_from_slice(&b);
                        if self.pending.ends_with(&[0, 0, 0xFF, 0xFF]) {
                            return Bytes::from(self.inflate_pending());
                        }
                    }
                    Some(Ok(Message::Text(t))) => return Bytes::copy_from_slice(t.as_bytes()),
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
        })
        .await
        .expect("nothing received in time")
    }

    /// Inflate and count payloads (without parsing them) until the socket
    /// ends or nothing arrives for `quiet` after `stop` is set. Returns
    /// (payloads, inflated bytes, whether the socket ended).
    pub(crate) async fn count(
        &mut self,
        quiet: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> (u64, u64, bool) {
        let (mut payloads, mut bytes) = (0, 0);
        loop {
            let wait = if *stop.borrow() { quiet } else { WAIT };
            let msg = tokio::select! {
                m = timeout(wait, self.ws.next()) => m,
                _ = stop.changed() => continue,
            };
            match msg {
                Err(_) => return (payloads, bytes, false),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    return (payloads, bytes, true);
                }
                Ok(Some(Ok(Message::Binary(b)))) => {
                    self.pending.extend_from_slice(&b);
                    if self.pending.ends_with(&[0, 0, 0xFF, 0xFF]) {
                        bytes += self.inflate_pending().len() as u64;
                        payloads += 1;
                    }
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    bytes += t.len() as u64;
                    payloads += 1;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    fn inflate_pending(&mut self) -> Vec<u8> {
        let ctx = self
            .inflate
            .as_mut()
            .expect("binary message without zlib-stream");
        let input = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity());
            }
            let before = ctx.total_in();
            ctx.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .expect("inflate failed");
            consumed += (ctx.total_in() - before) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// The next payload; fails the test on a close.
    pub(crate) async fn payload(&mut self) -> (Value, Bytes) {
        match self.next().await {
            Frame::Payload(v, raw) => (v, raw),
            Frame::Closed(code) => {
                panic!("connection closed ({code:?}) while waiting for a payload")
            }
        }
    }

    /// The next payload with this `op` (and `t`, for op 0), skipping others.
    pub(crate) async fn until(&mut self, op: u64, t: Option<&str>) -> (Value, Bytes) {
        loop {
            let (v, raw) = self.payload().await;
            if v["op"] == op && t.is_none_or(|t| v["t"] == t) {
                return (v, raw);
            }
        }
    }

    /// The close code, skipping payloads.
    pub(crate) async fn closed(&mut self) -> Option<u16> {
        loop {
            if let Frame::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// Hello's heartbeat interval.
    pub(crate) async fn hello(&mut self) -> u64 {
        let (v, _) = self.payload().await;
        assert_eq!(v["op"], 10, "expected Hello first, got {v}");
        v["d"]["heartbeat_interval"].as_u64().unwrap()
    }

    /// Send a JSON payload as a text frame.
    pub(crate) async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    /// Send raw text.
    pub(crate) async fn send_text(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send failed");
    }

    /// Identify as `[shard, n]`.
    pub(crate) async fn identify(&mut self, token: &str, shard: u32, n: u32, intents: u64) {
        self.send(json!({
            "op": 2,
            "d": {
                "token": token,
                "intents": intents,
                "shard": [shard, n],
                "properties": { "os": "linux", "browser": "test", "device": "test" },
            }
        }))
        .await;
    }

    /// Hello, Identify, READY; returns READY's `d`.
    pub(crate) async fn login(&mut self, token: &str, shard: u32, n: u32) -> Value {
        self.hello().await;
        self.identify(token, shard, n, 513).await;
        let (v, _) = self.until(0, Some("READY")).await;
        v["d"].clone()
    }

    /// Resume a session.
    pub(crate) async fn resume(&mut self, token: &str, session_id: &str, seq: u64) {
        self.send(json!({
            "op": 6,
            "d": { "token": token, "session_id": session_id, "seq": seq }
        }))
        .await;
    }

    /// Send a heartbeat.
    pub(crate) async fn heartbeat(&mut self, d: Option<u64>) {
        self.send(json!({ "op": 1, "d": d })).await;
    }

    /// Send a close frame with `code`, then wait for the socket to end.
    pub(crate) async fn close(mut self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let _ = timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}

/// A plain HTTP/1.1 GET; returns status and JSON body.
pub(crate) async fn http_get(api_base: &str, path: &str, auth: Option<&str>) -> (u16, Value) {
    let host = api_base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut tcp = TcpStream::connect(&host).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut resp))
        .await
        .expect("HTTP timed out")
        .unwrap();
    let resp = String::from_utf8(resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}
