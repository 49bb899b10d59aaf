//! Unit tests of the event generator: every kind is valid JSON of the right
//! shape, guild ids map to the shard, and the envelope's key order varies.

use serde_json::Value;

use super::*;

fn target(shard_id: u32, num_shards: u32) -> Target {
    Target {
        shard_id,
        num_shards,
        guilds: 3,
    }
}

const KINDS: &[EventKind] = &[
    EventKind::GuildCreate { members: 10 },
    EventKind::GuildMemberAdd,
    EventKind::MessageCreate,
    EventKind::PresenceUpdate,
    EventKind::TypingStart,
    EventKind::InteractionCreate,
];

#[test]
fn guild_ids_map_to_their_shard() {
    for n in [1, 2, 7, 16, 1000] {
        for shard in [0, n / 2, n - 1] {
            let t = target(shard, n);
            for i in 0..5 {
                assert_eq!((t.guild_id(i) >> 22) % u64::from(n), u64::from(shard));
            }
        }
    }
}

#[test]
fn every_kind_is_valid_json_with_its_guild() {
    let g = EventGen::new();
    for _ in 0..200 {
        for kind in KINDS {
            let t = target(3, 8);
            let built = g.build(kind, t);
            let d: Value = serde_json::from_slice(&built.d)
                .unwrap_or_else(|e| panic!("{kind:?}: {e}: {}", String::from_utf8_lossy(&built.d)));
            let guild = built.guild_id.clone().unwrap();
            let id: u64 = guild.parse().unwrap();
            assert_eq!((id >> 22) % 8, 3, "{kind:?}");
            let key = if built.name == "GUILD_CREATE" {
                "id"
            } else {
                "guild_id"
            };
            assert_eq!(d[key].as_str(), Some(guild.as_str()), "{kind:?}");
            if built.name == "GUILD_CREATE" {
                assert!(d.get("guild_id").is_none());
            }
        }
    }
}

#[test]
fn shapes_carry_what_bots_read() {
    let g = EventGen::new();
    let t = target(0, 1);
    let m: Value = serde_json::from_slice(&g.build(&EventKind::MessageCreate, t).d).unwrap();
    assert!(m["author"]["id"].is_string());
    assert!(m["member"]["roles"].is_array());
    assert!(m["content"].is_string());
    let i: Value = serde_json::from_slice(&g.build(&EventKind::InteractionCreate, t).d).unwrap();
    assert_eq!(i["type"], 2);
    assert!(i["data"]["name"].is_string());
    assert!(i["data"]["options"].is_array());
    assert!(i["token"].as_str().unwrap().len() > 100);
    assert!(i["member"]["user"]["id"].is_string());
    let p: Value = serde_json::from_slice(&g.build(&EventKind::PresenceUpdate, t).d).unwrap();
    assert!(p["user"]["id"].is_string());
    assert!(p["activities"].is_array());
    let ty: Value = serde_json::from_slice(&g.build(&EventKind::TypingStart, t).d).unwrap();
    assert!(ty["timestamp"].is_u64());
    let a: Value = serde_json::from_slice(&g.build(&EventKind::GuildMemberAdd, t).d).unwrap();
    assert!(a["user"]["username"].is_string());
}

#[test]
fn guild_create_is_about_a_kilobyte_per_member() {
    let g = EventGen::new();
    let built = g.build(&EventKind::GuildCreate { members: 500 }, target(0, 1));
    let size = built.d.len();
    assert!((400_000..800_000).contains(&size), "{size} bytes");
    let d: Value = serde_json::from_slice(&built.d).unwrap();
    assert_eq!(d["members"].as_array().unwrap().len(), 500);
    assert_eq!(d["presences"].as_array().unwrap().len(), 500);
    assert!(!d["channels"].as_array().unwrap().is_empty());
    assert!(!d["roles"].as_array().unwrap().is_empty());
}

#[test]
fn message_contents_include_scanner_traps() {
    let g = EventGen::new();
    let mut saw_op = false;
    let mut saw_rtl = false;
    for _ in 0..2000 {
        let d = g.build(&EventKind::MessageCreate, target(0, 1)).d;
        let v: Value = serde_json::from_slice(&d).unwrap();
        let c = v["content"].as_str().unwrap();
        saw_op |= c.contains("\"op\":1");
        saw_rtl |= c.contains("مرحبا");
    }
    assert!(saw_op && saw_rtl);
}

#[test]
fn envelope_orders_vary_and_parse() {
    let d = br#"{"x":1}"#;
    let mut firsts = std::collections::HashSet::new();
    for seq in 1..=10 {
        let body = envelope("MESSAGE_CREATE", seq, d);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["op"], 0);
        assert_eq!(v["s"], seq);
        assert_eq!(v["t"], "MESSAGE_CREATE");
        assert_eq!(v["d"]["x"], 1);
        firsts.insert(body[2]);
    }
    // t, o(p), d, s all appear first at some point.
    assert_eq!(firsts.len(), 4, "{firsts:?}");
    assert!(envelope("X", 2, d).starts_with(b"{\"d\":"));
    assert!(envelope("X", 2, d).ends_with(b"\"s\":2}"));
}

#[test]
fn inner_key_order_varies() {
    let g = EventGen::new();
    let firsts: std::collections::HashSet<Vec<u8>> = (0..100)
        .map(|_| {
            let d = g.build(&EventKind::MessageCreate, target(0, 1)).d;
            d[..8].to_vec()
        })
        .collect();
    assert!(firsts.len() >= 3);
}

#[test]
fn raw_events_pass_through() {
    let g = EventGen::new();
    let kind = EventKind::Raw {
        name: "GUILD_UPDATE".into(),
        d: r#"{"id":"42","name":"x"}"#.into(),
    };
    let built = g.build(&kind, target(0, 1));
    assert_eq!(built.name, "GUILD_UPDATE");
    assert_eq!(built.d, br#"{"id":"42","name":"x"}"#);
    assert_eq!(built.guild_id.as_deref(), Some("42"));
    let kind = EventKind::Raw {
        name: "THING".into(),
        d: "not json".into(),
    };
    assert_eq!(g.build(&kind, target(0, 1)).guild_id, None);
}

#[test]
fn ready_lists_the_shards_guilds() {
    let g = EventGen::new();
    let t = target(2, 4);
    let d: Value = serde_json::from_slice(&g.ready("abc", "ws://127.0.0.1:1", t)).unwrap();
    assert_eq!(d["session_id"], "abc");
    assert_eq!(d["resume_gateway_url"], "ws://127.0.0.1:1");
    assert_eq!(d["shard"], serde_json::json!([2, 4]));
    assert_eq!(d["v"], 10);
    for guild in d["guilds"].as_array().unwrap() {
        assert_eq!(guild["unavailable"], true);
        let id: u64 = guild["id"].as_str().unwrap().parse().unwrap();
        assert_eq!((id >> 22) % 4, 2);
    }
    assert!(d["application"]["id"].is_string());
}

/// Writes realistic seeds for the fuzz targets into `fuzz/corpus/`: the
/// simulator's dispatches as payloads (`scan`), as queued messages
/// (`envelope`), zlib-stream compressed and split into frames at awkward
/// places (`inflate`), and its interactions (`interaction`). Run by hand
/// after changing the generator:
/// `cargo test -p arrakis-loadtest dump_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes seed files into fuzz/corpus; run by hand"]
fn dump_fuzz_seeds() {
    use crate::sim::compress::ZlibStream;

    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let events = EventGen::new();
    let t = target(1, 4);
    let kinds = [
        ("guild_create", EventKind::GuildCreate { members: 2 }),
        ("member_add", EventKind::GuildMemberAdd),
        ("message_create", EventKind::MessageCreate),
        ("presence", EventKind::PresenceUpdate),
        ("typing", EventKind::TypingStart),
        ("interaction", EventKind::InteractionCreate),
    ];
    let mut stream = ZlibStream::new();
    let mut frames = vec![0xFF_u8]; // the largest message limit
    for (seq, (label, kind)) in (1_u64..).zip(kinds.iter()) {
        let built = events.build(kind, t);
        let payload = envelope(&built.name, seq, &built.d);
        write("scan", &format!("sim_{label}.json"), &payload);
        let meta = format!(
            "sess-1:{seq}\t{}\t{}\t1700000000000000\t1\n",
            built.name,
            built.guild_id.as_deref().unwrap_or_default()
        );
        write(
            "envelope",
            &format!("sim_{label}"),
            &[meta.as_bytes(), &payload].concat(),
        );
        if matches!(kind, EventKind::InteractionCreate) {
            write("interaction", "sim_command.json", &built.d);
        }
        // Split each compressed message in three: after 1 byte, and two
        // bytes before the end, so the sync-flush suffix straddles frames.
        let compressed = stream.compress(&payload);
        let n = compressed.len();
        for part in [
            &compressed[..1],
            &compressed[1..n - 2],
            &compressed[n - 2..],
        ] {
            frames.extend_from_slice(&u16::try_from(part.len()).unwrap().to_le_bytes());
            frames.extend_from_slice(part);
        }
    }
    write("inflate", "sim_stream_split", &frames);
    let ready = events.ready("sess-1", "wss://resume.example", t);
    write("scan", "sim_ready.json", &envelope("READY", 1, &ready));
}
