//! The worker's per-message costs before any I/O: decoding a consumed
//! message (headers + gateway payload → envelope), parsing an interaction,
//! building its callback body, and one dedupe claim + finish against the
//! local Redis (two round trips).
//!
//! Run: `cargo bench --bench worker` (the last group needs Redis on
//! 127.0.0.1:6379). Figures go in docs/PERFORMANCE.md.

use std::hint::black_box;
use std::time::Duration;

use arrakis::worker::envelope::{Envelope, Meta};
use arrakis::worker::interaction::{Interaction, Message, Reply};
use arrakis::worker::state::State;
use criterion::{Criterion, criterion_group, criterion_main};

const PRESENCE: &[u8] = br#"{"t":"PRESENCE_UPDATE","s":4211,"op":0,"d":{"user":{"id":"300000000000004211"},"status":"online","guild_id":"81384788765712384","client_status":{"desktop":"online","mobile":"idle"},"activities":[{"type":0,"timestamps":{"start":1764755000000},"name":"Arrakis","id":"d6a1b3c0f2e4a5b7","created_at":1764756000000,"application_id":"1100000000000000001","state":"In the deep desert","details":"Riding a sandworm"}],"broadcast":null}}"#;

const INTERACTION: &[u8] = br#"{"t":"INTERACTION_CREATE","s":77,"op":0,"d":{"version":1,"type":2,"token":"aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpzZWNyZXQtdG9rZW4tdmFsdWU","member":{"user":{"id":"300000000000000077","username":"paul","global_name":"Paul Atreides","avatar":null,"discriminator":"0"},"roles":["900000000000000001"],"premium_since":null,"permissions":"2248473465835073","pending":false,"nick":null,"mute":false,"joined_at":"2025-01-01T00:00:00.000000+00:00","flags":0,"deaf":false},"locale":"en-US","id":"1300000000000000077","guild_locale":"en-US","guild_id":"81384788765712384","entitlements":[],"data":{"type":1,"options":[{"value":"0x2222222222222222222222222222222222222222","type":3,"name":"wallet"}],"name":"check-eligibility","id":"1200000000000000001"},"context":0,"channel_id":"81384788765712385","authorizing_integration_owners":{"0":"81384788765712384"},"application_id":"1100000000000000001","app_permissions":"2248473465835073"}}"#;

fn meta(kind: &'static str) -> Meta<'static> {
    Meta {
        message_id: Some("9f1c2b7d3e4a5f60718293a4b5c6d7e8:4211"),
        kind: Some(kind),
        guild_id: Some("81384788765712384"),
        received_at_us: Some(1_764_756_000_000_000),
        shard_id: Some(0),
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_decode");
    g.bench_function("presence_envelope", |b| {
        b.iter(|| Envelope::decode(meta("PRESENCE_UPDATE"), black_box(PRESENCE)).unwrap());
    });
    g.bench_function("interaction_envelope_and_payload", |b| {
        b.iter(|| {
            let e = Envelope::decode(meta("INTERACTION_CREATE"), black_box(INTERACTION)).unwrap();
            Interaction::parse(e.data.get()).unwrap()
        });
    });
    g.bench_function("callback_body", |b| {
        let reply = Reply::Message(Message::ephemeral(
            "Wallet `0x2222…` holds **1234.50** tokens right now.",
        ));
        b.iter(|| serde_json::to_vec(&black_box(&reply).callback_body()).unwrap());
    });
    g.finish();
}

fn dedupe(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = format!("arrakis-bench-{}:", std::process::id());
    let state = rt
        .block_on(State::connect("redis://127.0.0.1:6379/", &prefix))
        .expect("REDIS_URL");
    if rt.block_on(state.ping()).is_err() {
        eprintln!("worker_dedupe skipped: no Redis on 127.0.0.1:6379");
        return;
    }
    let mut n = 0u64;
    c.bench_function("worker_dedupe/claim_and_finish", |b| {
        b.iter(|| {
            n += 1;
            let id = format!("bench:{n}");
            rt.block_on(async {
                state
                    .claim(&id, "bench", Duration::from_secs(30))
                    .await
                    .unwrap();
                state
                    .finish(&id, "bench", Duration::from_secs(5))
                    .await
                    .unwrap();
            });
        });
    });
}

criterion_group!(benches, decode, dedupe);
criterion_main!(benches);
