//! A TCP proxy the test controls: forward, pause (stop moving bytes while
//! keeping the connections open), or cut every connection.
//!
//! Outage tests put it between a role and the broker so they can break the
//! link without stopping the machine's shared RabbitMQ.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: String,
    paused: watch::Sender<bool>,
    severed: watch::Sender<bool>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (paused, paused_rx) = watch::channel(false);
        let cut = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let cut_flag = cut.clone();
        let (severed, severed_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if cut_flag.load(Ordering::Relaxed) || *severed_rx.borrow() {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, paused_rx.clone(), severed_rx.clone()));
                tokio::spawn(pump(sr, cw, paused_rx.clone(), severed_rx.clone()));
            }
        });
        Self {
            addr,
            paused,
            severed,
            cut,
            task,
        }
    }

    /// Stops moving bytes (connections stay open: a stalled broker).
    pub fn pause(&self, paused: bool) {
        let _ = self.paused.send(paused);
    }

    /// Closes every connection and refuses new ones while `severed` (a
    /// service that went away); `false` lets connections through again.
    pub fn sever(&self, severed: bool) {
        let _ = self.severed.send(severed);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
    mut severed: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *severed.borrow() {
            return;
        }
        while *paused.borrow() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = severed.wait_for(|s| *s) => return,
        };
        while *paused.borrow() {
            if paused.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
