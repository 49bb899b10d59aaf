//! The ingest path per event: inflate + scan + building the publish, next
//! to bare inflate of the same bytes, on a zlib-stream recorded from the
//! simulator (a realistic mix: GUILD_CREATEs of 100 members, then messages,
//! presences, member joins, typing and interactions).
//!
//! Run: `cargo bench --bench ingest`. Figures go in docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::Duration;

use arrakis::gateway::inflate::Inflater;
use arrakis::gateway::scan::scan;
use arrakis::gateway::shard::ShardId;
use arrakis::queue::message::{Dispatch, Routing};
use arrakis_loadtest::sim::{EventKind, SimConfig, Simulator};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const EVENTS: usize = 2_000;
const GUILD_CREATES: usize = 5;

/// Records the compressed frames of one session: Hello, READY, then the
/// dispatches, exactly as the simulator put them on the wire.
fn record() -> Vec<Bytes> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let sim = Simulator::start(SimConfig {
            heartbeat_interval: Duration::from_secs(600),
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let url = format!(
            "{}/?v=10&encoding=json&compress=zlib-stream",
            sim.gateway_url()
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
        let identify = format!(
            r#"{{"op":2,"d":{{"token":"{}","intents":513,"properties":{{"os":"linux","browser":"bench","device":"bench"}},"shard":[0,1]}}}}"#,
            sim.config().token
        );
        ws.send(Message::text(identify)).await.expect("identify");
        let mut frames = Vec::new();
        let mut inflater = Inflater::new(64 << 20);
        let mut messages = 0;
        let kinds = [
            EventKind::MessageCreate,
            EventKind::PresenceUpdate,
            EventKind::PresenceUpdate,
            EventKind::GuildMemberAdd,
            EventKind::TypingStart,
            EventKind::InteractionCreate,
        ];
        let mut emitted = false;
        // Hello + READY + dispatches.
        let want = 2 + GUILD_CREATES + EVENTS;
        while messages < want {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("frame in time")
                .expect("open")
                .expect("frame");
            let Message::Binary(frame) = frame else { continue };
            if inflater.push(&frame).expect("inflate").is_some() {
                messages += 1;
            }
            frames.push(frame);
            if !emitted && sim.shard_status(0).is_some_and(|s| s.ready) {
                emitted = true;
                for _ in 0..GUILD_CREATES {
                    sim.emit(0, EventKind::GuildCreate { members: 100 });
                }
                for i in 0..EVENTS {
                    sim.emit(0, kinds[i % kinds.len()].clone());
                }
            }
        }
        frames
    })
}

fn ingest(c: &mut Criterion) {
    let frames = record();
    let compressed: usize = frames.iter().map(Bytes::len).sum();
    let payloads: Vec<Bytes> = {
        let mut inflater = Inflater::new(64 << 20);
        frames
            .iter()
            .filter_map(|f| inflater.push(f).expect("inflate"))
            .collect()
    };
    let inflated: usize = payloads.iter().map(Bytes::len).sum();
    println!(
        "recorded stream: {} frames, {} messages, {compressed} bytes compressed, {inflated} inflated",
        frames.len(),
        payloads.len()
    );
    let routing = Routing::default();
    let session: Arc<str> = Arc::from("0123456789abcdef0123456789abcdef");

    let mut group = c.benchmark_group("ingest");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(payloads.len() as u64));

    group.bench_function(BenchmarkId::new("inflate_only", payloads.len()), |b| {
        b.iter(|| {
            let mut inflater = Inflater::new(64 << 20);
            let mut n = 0;
            for frame in &frames {
                if let Some(p) = inflater.push(frame).expect("inflate") {
                    n += p.len();
                }
            }
            n
        });
    });

    group.bench_function(BenchmarkId::new("scan_only", payloads.len()), |b| {
        b.iter(|| {
            payloads
                .iter()
                .map(|p| scan(p).expect("scan").op as usize)
                .sum::<usize>()
        });
    });

    group.bench_function(
        BenchmarkId::new("inflate_scan_publish", payloads.len()),
        |b| {
            b.iter(|| {
                let mut inflater = Inflater::new(64 << 20);
                let mut built = 0;
                for frame in &frames {
                    let Some(payload) = inflater.push(frame).expect("inflate") else {
                        continue;
                    };
                    let env = scan(&payload).expect("scan");
                    if env.op != 0 {
                        continue;
                    }
                    let dispatch = Dispatch {
                        shard: ShardId {
                            number: 0,
                            total: 1,
                        },
                        seq: env.seq.unwrap_or(0),
                        session_id: session.clone(),
                        guild_id: env.guild_id_range(&payload),
                        event: env.event_name.clone().unwrap_or(0..0),
                        body: payload,
                        received_at_us: 1_700_000_000_000_000,
                        guild_create: None,
                    };
                    let key = routing.routing_key(dispatch.event_name());
                    let props = dispatch.properties();
                    built += key.len() + usize::from(props.headers().is_some());
                }
                built
            });
        },
    );
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
