//! The gateway WebSocket servers (PROTOCOL.md §1.1, §1.6): accept loops for
//! the main and resume ports, and the per-connection task.
//!
//! Each connection runs as one task owned by its accept loop's `JoinSet`.
//! Inside it a reader and a writer run concurrently (`select!` over two
//! futures sharing the split socket), so heartbeats are read and answered
//! while dispatches flow. The reader hands client payloads to `protocol.rs`;
//! the writer owns the connection's zlib context and drains two channels:
//! control messages first (ACK, op 7/9, close, drop), then the bounded queue
//! of dispatches. The protocol state itself is in `session.rs`; this file
//! only moves bytes and timers.
//!
//! Known limit: a resume's replay is one queue item, written in one go, so
//! heartbeat ACKs wait behind a very large replay (about a second per
//! 100,000 events); Discord's replays behave much the same.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::Instrument;

use super::Inner;
use super::compress::{ZLIB_SUFFIX, ZlibStream};
use super::fault::Fault;
use super::record::{ConnectionRecord, GatewayPort};
use super::session::{ConnState, Ctl, Out};

type Ws = WebSocketStream<TcpStream>;

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client sent a close frame.
    ClientClose(Option<u16>),
    /// The server sent a close frame.
    ServerClose,
    /// The server dropped the socket (fault, slow client, takeover).
    Dropped,
    /// The client went away without a close frame.
    Eof,
    /// Reading or writing failed.
    Error(String),
}

/// Accept gateway connections on `listener` until shutdown; owns the
/// connection tasks.
pub(crate) async fn accept_loop(
    inner: Arc<Inner>,
    listener: TcpListener,
    port: GatewayPort,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let id = inner.next_connection_id();
                    let span = tracing::info_span!("sim_conn", id, ?port, %peer);
                    conns.spawn(run_connection(inner.clone(), tcp, port, id).instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// The query parameters that matter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Query {
    pub(crate) zlib: bool,
    /// Close code and reason when the query is not acceptable.
    pub(crate) reject: Option<(u16, &'static str)>,
}

impl Query {
    /// Parse `/?v=10&encoding=json&compress=zlib-stream`.
    pub(crate) fn parse(path_and_query: &str) -> Self {
        let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
        let (mut v, mut encoding, mut compress) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "v" => v = Some(val),
                "encoding" => encoding = Some(val),
                "compress" => compress = Some(val),
                _ => {}
            }
        }
        let zlib = compress == Some("zlib-stream");
        let reject = if v != Some("10") {
            Some((4012, "Invalid API version."))
        } else if !matches!(encoding, None | Some("json")) {
            Some((4002, "The simulator supports encoding=json only."))
        } else if !matches!(compress, None | Some("zlib-stream")) {
            Some((4000, "The simulator supports compress=zlib-stream only."))
        } else {
            None
        };
        Self { zlib, reject }
    }
}

async fn run_connection(inner: Arc<Inner>, tcp: TcpStream, port: GatewayPort, id: u64) {
    let mut path = String::from("/");
    #[allow(
        clippy::result_large_err,
        reason = "the signature tungstenite's handshake callback requires"
    )]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if let Some(pq) = req.uri().path_and_query() {
            path = pq.as_str().to_owned();
        }
        Ok(resp)
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(1 << 20);
    config.max_frame_size = Some(1 << 20);
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config));
    let ws = match timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return tracing::debug!(error = %e, "websocket handshake failed"),
        Err(_) => return tracing::debug!("websocket handshake timed out"),
    };
    let query = Query::parse(&path);
    let now = Instant::now();
    let (data_tx, data_rx) = mpsc::channel(inner.cfg.outbound_queue.max(1));
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    {
        let mut st = inner.state();
        st.conns
            .insert(id, ConnState::new(port, now, data_tx, ctl_tx));
        let mut rec = inner.rec();
        rec.connections.push(ConnectionRecord {
            connection_id: id,
            port,
            path_and_query: path.clone(),
            zlib_stream: query.zlib,
            at: now,
        });
        if let Some((code, reason)) = query.reject {
            inner.close_conn(&mut st, &mut rec, id, code, reason, now);
        }
    }
    tracing::debug!(%path, "gateway connection");

    let (mut sink, mut stream) = ws.split();
    let end = tokio::select! {
        end = writer(&inner, id, &mut sink, data_rx, ctl_rx, query.zlib) => end,
        end = reader(&inner, id, &mut stream) => end,
    };
    match &end {
        End::Error(e) => tracing::debug!(error = %e, "gateway connection failed"),
        end => tracing::debug!(?end, "gateway connection ended"),
    }
    let closing_ourselves = matches!(end, End::ServerClose);
    let client_closed = matches!(end, End::ClientClose(_));
    inner.connection_ended(id, end, Instant::now());
    if closing_ourselves {
        // Let the close frame arrive before the socket goes: wait briefly
        // for the client's close (or EOF) instead of resetting the socket.
        let _ = timeout(Duration::from_secs(1), async {
            while let Some(Ok(msg)) = stream.next().await {
                if msg.is_close() {
                    break;
                }
            }
        })
        .await;
    } else if client_closed {
        // Send tungstenite's queued close reply.
        let _ = timeout(Duration::from_secs(1), sink.flush()).await;
    }
}

async fn reader(inner: &Inner, id: u64, stream: &mut SplitStream<Ws>) -> End {
    let mut deadline = inner.watchdog(id, Instant::now());
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                deadline = inner.watchdog(id, Instant::now());
                continue;
            }
        };
        let now = Instant::now();
        match msg {
            None => return End::Eof,
            Some(Err(e)) => return End::Error(e.to_string()),
            Some(Ok(Message::Text(t))) => inner.on_client_frame(id, now, t.as_bytes()),
            Some(Ok(Message::Binary(b))) => inner.on_client_frame(id, now, &b),
            Some(Ok(Message::Close(frame))) => {
                return End::ClientClose(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
        }
        deadline = inner.watchdog(id, now);
    }
}

/// Writes one connection's frames: compression and the writer-side faults.
struct FrameWriter<'a> {
    sink: &'a mut SplitSink<Ws, Message>,
    zlib: Option<ZlibStream>,
    split_next: Option<usize>,
    truncate_next: bool,
    /// When to drop the socket (after op 7).
    drop_at: Option<Instant>,
}

/// Whether the writer should go on after a frame.
enum Next {
    Continue,
    Stop(End),
}

impl FrameWriter<'_> {
    /// Encode a whole payload as one message (compressed when zlib-stream).
    fn encode(&mut self, payload: &[u8]) -> Message {
        match &mut self.zlib {
            Some(z) => Message::Binary(z.compress(payload)),
            None => Message::Text(text(payload)),
        }
    }

    async fn feed(&mut self, msg: Message) -> Next {
        match self.sink.feed(msg).await {
            Ok(()) => Next::Continue,
            Err(e) => Next::Stop(End::Error(e.to_string())),
        }
    }

    /// A non-dispatch payload (Hello, ACK, op 1/7/9).
    async fn control(&mut self, payload: &[u8]) -> Next {
        let msg = self.encode(payload);
        self.feed(msg).await
    }

    /// A dispatch, honouring `SplitNext` and `Truncated`.
    async fn dispatch(&mut self, payload: &[u8]) -> Next {
        if self.truncate_next {
            self.truncate_next = false;
            let msg = match &mut self.zlib {
                Some(z) => {
                    let all = z.compress(payload);
                    Message::Binary(all.slice(..all.len() / 2))
                }
                None => {
                    let mut cut = payload.len() / 2;
                    while std::str::from_utf8(&payload[..cut]).is_err() {
                        cut -= 1;
                    }
                    Message::Text(text(&payload[..cut]))
                }
            };
            if let Next::Stop(e) = self.feed(msg).await {
                return Next::Stop(e);
            }
            let _ = self.sink.flush().await;
            return Next::Stop(End::Dropped);
        }
        match (self.split_next.take(), &mut self.zlib) {
            (Some(parts), Some(z)) => {
                let all = z.compress(payload);
                for part in split(&all, parts) {
                    if let Next::Stop(e) = self.feed(Message::Binary(part)).await {
                        return Next::Stop(e);
                    }
                }
                Next::Continue
            }
            _ => {
                let msg = self.encode(payload);
                self.feed(msg).await
            }
        }
    }

    /// A control instruction.
    async fn ctl(&mut self, ctl: Ctl) -> Next {
        match ctl {
            Ctl::Send(b) => self.control(&b).await,
            Ctl::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = timeout(
                    Duration::from_secs(1),
                    self.sink.send(Message::Close(Some(frame))),
                )
                .await;
                Next::Stop(End::ServerClose)
            }
            Ctl::Drop => Next::Stop(End::Dropped),
            Ctl::DropAfter(after) => {
                let at = Instant::now() + after;
                self.drop_at = Some(self.drop_at.map_or(at, |d| d.min(at)));
                Next::Continue
            }
        }
    }

    /// A fault applied in order with the dispatches.
    async fn fault(&mut self, fault: Fault) -> Next {
        match fault {
            Fault::SplitNext { parts } => self.split_next = Some(parts.max(1)),
            Fault::Truncated => self.truncate_next = true,
            Fault::CorruptZlib => {
                let mut garbage: Vec<u8> = (0..61u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
                garbage.extend_from_slice(&ZLIB_SUFFIX);
                return self.feed(Message::Binary(Bytes::from(garbage))).await;
            }
            Fault::InvalidJson => {
                return self
                    .control(b"{\"op\":0,\"t\":\"MESSAGE_CREATE\",\"s\":,\"d\":{\"content\":\"unterminated")
                    .await;
            }
            Fault::Oversized { bytes } => return self.control(&oversized(bytes)).await,
            other => tracing::warn!(fault = %other, "not a writer fault"),
        }
        Next::Continue
    }
}

/// `bytes` of valid JSON: an op 0 with `s: null` and padding.
fn oversized(bytes: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"op\":0,\"t\":\"SIM_OVERSIZED\",\"s\":null,\"d\":{\"pad\":\"";
    const TAIL: &[u8] = b"\"}}";
    let pad = bytes.saturating_sub(HEAD.len() + TAIL.len());
    let mut out = Vec::with_capacity(HEAD.len() + pad + TAIL.len());
    out.extend_from_slice(HEAD);
    out.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
    out.extend_from_slice(TAIL);
    out
}

/// Split `all` into at most `parts` non-empty pieces, in order.
fn split(all: &Bytes, parts: usize) -> Vec<Bytes> {
    let parts = parts.clamp(1, all.len().max(1));
    let step = all.len().div_ceil(parts);
    (0..parts)
        .map(|i| all.slice((i * step).min(all.len())..((i + 1) * step).min(all.len())))
        .filter(|b| !b.is_empty())
        .collect()
}

fn text(payload: &[u8]) -> Utf8Bytes {
    Utf8Bytes::try_from(Bytes::copy_from_slice(payload))
        .unwrap_or_else(|_| Utf8Bytes::from(String::from_utf8_lossy(payload).into_owned()))
}

async fn writer(
    inner: &Inner,
    id: u64,
    sink: &mut SplitSink<Ws, Message>,
    mut data_rx: mpsc::Receiver<Out>,
    mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    zlib: bool,
) -> End {
    let mut w = FrameWriter {
        sink,
        zlib: zlib.then(ZlibStream::new),
        split_next: None,
        truncate_next: false,
        drop_at: None,
    };
    let hello_at = Instant::now() + inner.cfg.hello_delay;
    let mut hello_sent = false;
    loop {
        let next = tokio::select! {
            biased;
            ctl = ctl_rx.recv() => match ctl {
                None => Next::Stop(End::Dropped),
                Some(ctl) => w.ctl(ctl).await,
            },
            () = sleep_until(hello_at), if !hello_sent => {
                hello_sent = true;
                let next = w.control(&inner.hello).await;
                inner.hello_sent(id, Instant::now());
                next
            }
            () = sleep_until(w.drop_at.unwrap_or_else(Instant::now)), if w.drop_at.is_some() => {
                Next::Stop(End::Dropped)
            }
            out = data_rx.recv(), if hello_sent => match out {
                None => Next::Stop(End::Dropped),
                Some(out) => {
                    let mut next = write_out(&mut w, out).await;
                    // Batch whatever else is queued into one flush.
                    for _ in 0..256 {
                        if !matches!(next, Next::Continue) {
                            break;
                        }
                        match data_rx.try_recv() {
                            Ok(out) => next = write_out(&mut w, out).await,
                            Err(_) => break,
                        }
                    }
                    next
                }
            },
        };
        if let Next::Stop(end) = next {
            return end;
        }
        if let Err(e) = w.sink.flush().await {
            return End::Error(e.to_string());
        }
    }
}

async fn write_out(w: &mut FrameWriter<'_>, out: Out) -> Next {
    match out {
        Out::Dispatch(body) => w.dispatch(&body).await,
        Out::Batch(bodies) => {
            for body in bodies {
                if let Next::Stop(e) = w.dispatch(&body).await {
                    return Next::Stop(e);
                }
            }
            Next::Continue
        }
        Out::Fault(f) => w.fault(f).await,
        Out::Ctl(ctl) => w.ctl(ctl).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_rules() {
        let ok = Query::parse("/?v=10&encoding=json&compress=zlib-stream");
        assert_eq!(
            ok,
            Query {
                zlib: true,
                reject: None
            }
        );
        assert_eq!(Query::parse("/?v=10&encoding=json").reject, None);
        assert_eq!(Query::parse("?encoding=json&v=10").reject, None);
        assert_eq!(Query::parse("/?v=9&encoding=json").reject.unwrap().0, 4012);
        assert_eq!(Query::parse("/").reject.unwrap().0, 4012);
        assert_eq!(Query::parse("/?v=10&encoding=etf").reject.unwrap().0, 4002);
        assert_eq!(
            Query::parse("/?v=10&compress=zstd-stream")
                .reject
                .unwrap()
                .0,
            4000
        );
    }

    #[test]
    fn split_keeps_bytes_and_order() {
        let all = Bytes::from((0..100u8).collect::<Vec<_>>());
        for parts in [1, 2, 3, 7, 100, 1000] {
            let pieces = split(&all, parts);
            assert!(pieces.len() <= parts);
            assert_eq!(pieces.concat(), all.to_vec());
        }
    }

    #[test]
    fn oversized_has_the_exact_size() {
        for n in [60, 4097, 100_000] {
            let b = oversized(n);
            assert_eq!(b.len(), n);
            serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        }
    }
}
