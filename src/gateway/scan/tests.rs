use super::*;

fn guild(payload: &str) -> Option<String> {
    let env = scan(payload.as_bytes()).unwrap();
    env.guild_id(payload.as_bytes()).map(str::to_owned)
}

#[test]
fn reads_envelope_in_canonical_order() {
    let p =
        br#"{"op":0,"t":"MESSAGE_CREATE","s":42,"d":{"guild_id":"81384788765712384","id":"1"}}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.op, 0);
    assert_eq!(env.seq, Some(42));
    assert_eq!(env.event_name(p), Some("MESSAGE_CREATE"));
    assert_eq!(env.guild_id(p), Some("81384788765712384"));
    assert_eq!(
        &p[env.data.unwrap()],
        br#"{"guild_id":"81384788765712384","id":"1"}"#
    );
}

#[test]
fn every_key_order_gives_the_same_envelope() {
    let parts = [
        r#""op":0"#,
        r#""t":"GUILD_MEMBER_ADD""#,
        r#""s":7"#,
        r#""d":{"user":{"id":"5"},"guild_id":"99"}"#,
    ];
    let orders = permutations(4);
    assert_eq!(orders.len(), 24);
    for order in orders {
        let body: Vec<&str> = order.iter().map(|&i| parts[i]).collect();
        let payload = format!("{{{}}}", body.join(","));
        let env = scan(payload.as_bytes()).unwrap();
        assert_eq!(env.op, 0, "{payload}");
        assert_eq!(env.seq, Some(7), "{payload}");
        assert_eq!(env.event_name(payload.as_bytes()), Some("GUILD_MEMBER_ADD"));
        assert_eq!(env.guild_id(payload.as_bytes()), Some("99"), "{payload}");
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 1 {
        return vec![vec![0]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..n {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn escaped_strings_that_look_like_keys_are_not_keys() {
    let p = br#"{"d":{"content":"\"op\":1,\"s\":99,\"t\":\"READY\" \\","guild_id":"3"},"s":12,"t":"MESSAGE_CREATE","op":0}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.op, 0);
    assert_eq!(env.seq, Some(12));
    assert_eq!(env.event_name(p), Some("MESSAGE_CREATE"));
    assert_eq!(env.guild_id(p), Some("3"));
}

#[test]
fn nested_guild_id_is_not_the_events_guild() {
    // A DM MESSAGE_CREATE carries no top-level guild_id, but its referenced
    // message may.
    let p = br#"{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"referenced_message":{"guild_id":"77","id":"2"},"channel_id":"8"}}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.guild_id(p), None);
}

#[test]
fn guild_create_uses_d_id() {
    assert_eq!(
        guild(
            r#"{"t":"GUILD_CREATE","s":2,"op":0,"d":{"members":[{"user":{"id":"1"}}],"id":"41771983423143937"}}"#
        ),
        Some("41771983423143937".into())
    );
    assert_eq!(
        guild(r#"{"t":"GUILD_DELETE","s":2,"op":0,"d":{"unavailable":true,"id":"9"}}"#),
        Some("9".into())
    );
    // Other events with a `d.id` but no `d.guild_id` have no guild.
    assert_eq!(
        guild(r#"{"t":"CHANNEL_CREATE","s":2,"op":0,"d":{"id":"9","type":1}}"#),
        None
    );
}

#[test]
fn numeric_snowflakes_are_accepted() {
    assert_eq!(
        guild(r#"{"op":0,"s":3,"t":"TYPING_START","d":{"guild_id":81384788765712384}}"#),
        Some("81384788765712384".into())
    );
}

#[test]
fn large_sequence_numbers() {
    let p = br#"{"op":0,"s":18446744073709551615,"t":"X","d":{}}"#;
    assert_eq!(scan(p).unwrap().seq, Some(u64::MAX));
    let p = br#"{"op":0,"s":18446744073709551616,"t":"X","d":{}}"#;
    assert_eq!(scan(p), Err(ScanError::BadSequence));
    let p = br#"{"op":0,"s":-1,"t":"X","d":{}}"#;
    assert_eq!(scan(p), Err(ScanError::BadSequence));
    let p = br#"{"op":0,"s":1.5,"t":"X","d":{}}"#;
    assert_eq!(scan(p), Err(ScanError::BadSequence));
}

#[test]
fn null_fields_for_non_dispatch_ops() {
    let p = br#"{"t":null,"s":null,"op":11,"d":null}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.op, 11);
    assert_eq!(env.seq, None);
    assert_eq!(env.event_name, None);
    assert_eq!(&p[env.data.unwrap()], b"null");
}

#[test]
fn hello_data_range() {
    let p = br#"{"op":10,"d":{"heartbeat_interval":41250,"_trace":["gateway-prd-1"]}}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.op, 10);
    assert_eq!(
        &p[env.data.unwrap()],
        br#"{"heartbeat_interval":41250,"_trace":["gateway-prd-1"]}"#
    );
}

#[test]
fn whitespace_and_unicode_are_fine() {
    let p = " {\n \"op\" : 0 ,\t\"d\" : { \"content\" : \"héllo 👋 世界 \\u00e9\", \"guild_id\" : \"5\" } , \"s\" : 3, \"t\" : \"MESSAGE_CREATE\" } \n";
    let env = scan(p.as_bytes()).unwrap();
    assert_eq!(env.seq, Some(3));
    assert_eq!(env.guild_id(p.as_bytes()), Some("5"));
}

#[test]
fn malformed_payloads_are_errors() {
    let cases: &[&[u8]] = &[
        b"",
        b"[]",
        b"{",
        br#"{"op":0,"d":{"a":"unterminated}}"#,
        br#"{"op":0,"d":{"a":1}"#,
        br#"{"op":0 "s":1}"#,
        br#"{"op":0}{"op":1}"#,
        br#"{"s":1}"#,
        br#"{"op":"0"}"#,
        br#"{"op":300}"#,
        br#"{"op":0,"d":[1,2,}"#,
        br#"{"op":0,"d":tru}"#,
        br#"{"op":0,"d":"\"#,
        b"\x78\x9c\x00\x00\xff\xff",
    ];
    for case in cases {
        assert!(
            scan(case).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let deep = format!(
        r#"{{"op":0,"d":{}{}}}"#,
        "[".repeat(MAX_DEPTH + 5),
        "]".repeat(MAX_DEPTH + 5)
    );
    assert_eq!(scan(deep.as_bytes()), Err(ScanError::TooDeep));
    let ok = format!(r#"{{"op":0,"d":{}{}}}"#, "[".repeat(20), "]".repeat(20));
    assert!(scan(ok.as_bytes()).is_ok());
}

#[test]
fn duplicate_keys_take_the_last_value() {
    // serde_json and Discord's own decoders keep the last duplicate; so do we,
    // so routing agrees with what a worker would parse.
    let p = br#"{"op":1,"op":0,"s":1,"s":2,"t":"A","d":{}}"#;
    let env = scan(p).unwrap();
    assert_eq!(env.op, 0);
    assert_eq!(env.seq, Some(2));
}

/// Found by the `scan` fuzz target's serde_json oracle on seeds: a second
/// `d` that is not an object, or a second `guild_id` that is `null`, left
/// the first one's guild id in place, so the event was routed to a guild
/// the payload no longer names.
#[test]
fn duplicate_d_and_ids_take_the_last_value() {
    let p = br#"{"op":0,"t":"TYPING_START","s":1,"d":{"guild_id":"1","id":"2"},"d":5}"#;
    let env = scan(p).unwrap();
    assert_eq!(&p[env.data.unwrap()], b"5");
    assert_eq!((env.data_guild_id, env.data_id), (None, None));
    assert_eq!(
        guild(r#"{"op":0,"t":"X","s":3,"d":{"guild_id":"1","guild_id":null}}"#),
        None
    );
    assert_eq!(
        guild(r#"{"op":0,"t":"X","d":{"guild_id":"1"},"d":{"guild_id":"7"}}"#).as_deref(),
        Some("7")
    );
}
