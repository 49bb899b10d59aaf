//! The ingest path per event: inflate + scan + building the publish, next
//! to bare inflate of the same bytes, on a zlib-stream recorded from the
//! simulator (a realistic mix: GUILD_CREATEs of 100 members, then messages,
//! presences, member joins, typing and interactions); the same path for
//! single large GUILD_CREATE frames (about 1 MB and 4 MB); and, side by
//! side on the same payloads, what the envelope costs with the decoders
//! users would pick instead: serde_json into a struct with a borrowed
//! `RawValue` for `d`, simd-json's borrowed value, and twilight-gateway's
//! `parse` (dev-dependencies, used only here).
//!
//! Run: `cargo bench --bench ingest`. `scripts/slo-gate` runs it in a short
//! mode and checks the SLO. Figures go in docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::Duration;

use arrakis::gateway::inflate::Inflater;
use arrakis::gateway::scan::scan;
use arrakis::gateway::shard::ShardId;
use arrakis::queue::message::{Dispatch, Routing};
use arrakis_loadtest::sim::{EventKind, SimConfig, Simulator};
use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const EVENTS: usize = 2_000;
const GUILD_CREATES: usize = 5;

/// Records the compressed frames of one session: Hello, READY, then the
/// dispatches `kinds` (emitted once the shard is ready), exactly as the
/// simulator put them on the wire.
fn record(kinds: &[EventKind]) -> Vec<Bytes> {
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
        let mut emitted = false;
        // Hello + READY + dispatches.
        let want = 2 + kinds.len();
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
                for kind in kinds {
                    sim.emit(0, kind.clone());
                }
            }
        }
        frames
    })
}

/// Sample count and measurement time of a group: short with
/// `ARRAKIS_BENCH_QUICK=1` (the SLO gate in CI), else `(samples, secs)`.
fn timing(samples: usize, secs: u64) -> (usize, Duration, Duration) {
    if std::env::var_os("ARRAKIS_BENCH_QUICK").is_some() {
        (10, Duration::from_secs(1), Duration::from_millis(500))
    } else {
        (samples, Duration::from_secs(secs), Duration::from_secs(3))
    }
}

/// The realistic mix: GUILD_CREATEs, then ordinary events.
fn mix() -> Vec<EventKind> {
    let kinds = [
        EventKind::MessageCreate,
        EventKind::PresenceUpdate,
        EventKind::PresenceUpdate,
        EventKind::GuildMemberAdd,
        EventKind::TypingStart,
        EventKind::InteractionCreate,
    ];
    let mut all = vec![EventKind::GuildCreate { members: 100 }; GUILD_CREATES];
    all.extend((0..EVENTS).map(|i| kinds[i % kinds.len()].clone()));
    all
}

/// What the ingestor does with one inflated payload: scan it and build the
/// publish (routing key, properties, headers).
fn scan_and_build(payload: Bytes, routing: &Routing, session: &Arc<str>) -> usize {
    let env = scan(&payload).expect("scan");
    if env.op != 0 {
        return 0;
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
    key.len() + usize::from(props.headers().is_some())
}

fn ingest(c: &mut Criterion) {
    let frames = record(&mix());
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
    let (samples, measure, warm_up) = timing(20, 5);
    group.sample_size(samples);
    group.measurement_time(measure);
    group.warm_up_time(warm_up);
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
                    if let Some(payload) = inflater.push(frame).expect("inflate") {
                        built += scan_and_build(payload, &routing, &session);
                    }
                }
                built
            });
        },
    );
    group.finish();

    decoders(c, &payloads);
}

/// One large GUILD_CREATE of `members` members: the frames of its session
/// before it (Hello, READY) and its own frames.
fn record_large(members: usize) -> (Vec<Bytes>, Vec<Bytes>) {
    let frames = record(&[EventKind::GuildCreate { members }]);
    let mut inflater = Inflater::new(64 << 20);
    let mut seen = 0;
    let split = frames
        .iter()
        .position(|f| {
            if inflater.push(f).expect("inflate").is_some() {
                seen += 1;
            }
            seen == 2
        })
        .expect("Hello and READY")
        + 1;
    let (before, own) = frames.split_at(split);
    (before.to_vec(), own.to_vec())
}

fn large_frames(c: &mut Criterion) {
    let routing = Routing::default();
    let session: Arc<str> = Arc::from("0123456789abcdef0123456789abcdef");
    let mut group = c.benchmark_group("large_frame");
    let (samples, measure, warm_up) = timing(10, 5);
    group.sample_size(samples);
    group.measurement_time(measure);
    group.warm_up_time(warm_up);
    // About 1,050 bytes a member (member object plus presence).
    for (label, members) in [("1MB", 950), ("4MB", 3_800)] {
        let (before, own) = record_large(members);
        let fresh = || {
            let mut inflater = Inflater::new(64 << 20);
            for f in &before {
                let _ = inflater.push(f).expect("inflate");
            }
            inflater
        };
        let size = {
            let mut inflater = fresh();
            own.iter()
                .filter_map(|f| inflater.push(f).expect("inflate"))
                .map(|p| p.len())
                .sum::<usize>()
        };
        println!(
            "large_frame/{label}: GUILD_CREATE of {members} members, {size} bytes inflated, {} compressed in {} frame(s)",
            own.iter().map(Bytes::len).sum::<usize>(),
            own.len()
        );
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("inflate_only", label), |b| {
            b.iter_batched(
                fresh,
                |mut inflater| {
                    own.iter()
                        .filter_map(|f| inflater.push(f).expect("inflate"))
                        .map(|p| p.len())
                        .sum::<usize>()
                },
                BatchSize::LargeInput,
            );
        });
        group.bench_function(BenchmarkId::new("inflate_scan_publish", label), |b| {
            b.iter_batched(
                fresh,
                |mut inflater| {
                    own.iter()
                        .filter_map(|f| inflater.push(f).expect("inflate"))
                        .map(|p| scan_and_build(p, &routing, &session))
                        .sum::<usize>()
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// The envelope as serde_json users read it: `d` left raw, borrowed.
#[derive(serde::Deserialize)]
struct SerdeEnvelope<'a> {
    op: u8,
    #[serde(borrow)]
    t: Option<std::borrow::Cow<'a, str>>,
    s: Option<u64>,
    #[serde(borrow)]
    d: Option<&'a serde_json::value::RawValue>,
}

/// Ours against the decoders users would pick instead, on the same
/// inflated payloads of the realistic mix. Each finds at least op, t and
/// s; ours and simd-json also the guild id; twilight deserializes the whole
/// event into its model, which is what a twilight bot pays per event.
fn decoders(c: &mut Criterion, payloads: &[Bytes]) {
    let mut group = c.benchmark_group("decode");
    let (samples, measure, warm_up) = timing(20, 5);
    group.sample_size(samples);
    group.measurement_time(measure);
    group.warm_up_time(warm_up);
    group.throughput(Throughput::Elements(payloads.len() as u64));
    let n = payloads.len();
    group.bench_function(BenchmarkId::new("arrakis_scan", n), |b| {
        b.iter(|| {
            payloads
                .iter()
                .map(|p| {
                    let env = scan(p).expect("scan");
                    usize::from(env.op) + env.guild_id_range(p).map_or(0, |r| r.len())
                })
                .sum::<usize>()
        });
    });
    group.bench_function(BenchmarkId::new("serde_json_raw_value", n), |b| {
        b.iter(|| {
            payloads
                .iter()
                .map(|p| {
                    let env: SerdeEnvelope<'_> = serde_json::from_slice(p).expect("serde_json");
                    usize::from(env.op)
                        + env.t.map_or(0, |t| t.len())
                        + usize::from(env.s.is_some())
                        + env.d.map_or(0, |d| d.get().len())
                })
                .sum::<usize>()
        });
    });
    group.bench_function(BenchmarkId::new("simd_json_borrowed", n), |b| {
        use simd_json::prelude::*;
        b.iter(|| {
            payloads
                .iter()
                .map(|p| {
                    // simd-json parses in place; the ingestor's payload is
                    // shared and immutable, so the copy is part of its cost.
                    let mut buf = p.to_vec();
                    let value = simd_json::to_borrowed_value(&mut buf).expect("simd-json");
                    let d = value.get("d");
                    usize::from(value.get_u8("op").unwrap_or(0))
                        + value.get_str("t").map_or(0, str::len)
                        + usize::from(value.get_u64("s").is_some())
                        + d.and_then(|d| d.get_str("guild_id")).map_or(0, str::len)
                })
                .sum::<usize>()
        });
    });
    group.bench_function(BenchmarkId::new("twilight_gateway_parse", n), |b| {
        use twilight_gateway::EventTypeFlags;
        b.iter(|| {
            payloads
                .iter()
                .map(|p| {
                    // twilight-gateway hands `parse` the text frame as a
                    // String it owns.
                    let text = String::from_utf8(p.to_vec()).expect("UTF-8");
                    let event = twilight_gateway::parse(text, EventTypeFlags::all());
                    usize::from(matches!(event, Ok(Some(_))))
                })
                .sum::<usize>()
        });
    });
    group.finish();
}

criterion_group!(benches, ingest, large_frames);
criterion_main!(benches);
