//! The rate-limited REST routes over HTTP: headers, auth, and the
//! interaction lifecycle (with short windows).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::super::{InteractionSpec, RoleChange, SimConfig, Simulator};
use super::RestSimConfig;

/// A valid callback body: deferred, ephemeral.
const DEFER: &str = r#"{"type":5,"data":{"flags":64}}"#;

async fn call(
    sim: &Simulator,
    method: Method,
    path: &str,
    bot: bool,
) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
    call_with(sim, method, path, bot, "{}").await
}

async fn call_with(
    sim: &Simulator,
    method: Method,
    path: &str,
    bot: bool,
    body: &str,
) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
    let auth: &[(&str, &str)] = if bot {
        &[("authorization", "Bot sim-token")]
    } else {
        &[]
    };
    call_headers(sim, method, path, auth, body).await
}

async fn call_headers(
    sim: &Simulator,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.api_base()));
    for &(name, value) in headers {
        req = req.header(name, value);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

async fn start(rest: RestSimConfig) -> Simulator {
    Simulator::start(SimConfig {
        rest,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn bot_routes_carry_rate_limit_headers_and_need_the_token() {
    let sim = start(RestSimConfig::default()).await;
    let (status, headers, body) = call(&sim, Method::GET, "/channels/7", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], "7");
    assert_eq!(headers["x-ratelimit-bucket"], "channel-get");
    assert_eq!(headers["x-ratelimit-limit"], "10");
    assert_eq!(headers["x-ratelimit-remaining"], "9");
    assert!(headers.contains_key("x-ratelimit-reset"));
    assert!(headers.contains_key("x-ratelimit-reset-after"));
    let (status, headers, _) = call(&sim, Method::GET, "/channels/7/pins", true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key("x-ratelimit-bucket"));
    let (status, _, _) = call(&sim, Method::GET, "/channels/7", false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stats = sim.rest_stats();
    assert_eq!((stats.unauthorized, stats.invalid), (1, 1));
    assert_eq!(sim.rest_arrivals().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_interaction_lifecycle() {
    let sim = start(RestSimConfig {
        callback_window: Duration::from_millis(200),
        token_lifetime: Duration::from_millis(600),
        ..RestSimConfig::default()
    })
    .await;
    // Too late: the token was invalidated after the callback window.
    let late = sim.create_interaction();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let path = format!("/interactions/{}/{}/callback", late.id, late.token);
    let (status, _, body) = call_with(&sim, Method::POST, &path, false, DEFER).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(10_062))
    );
    assert_eq!(sim.rest_stats().late_callbacks, 1);

    let i = sim.create_interaction();
    let followup = format!("/webhooks/{}/{}", i.application_id, i.token);
    // No follow-up before the callback.
    let (status, _, _) = call(&sim, Method::POST, &followup, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = format!("/interactions/{}/{}/callback", i.id, i.token);
    let (status, headers, _) = call_with(&sim, Method::POST, &path, false, DEFER).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["x-ratelimit-bucket"], "interaction-cb");
    let (status, _, body) = call_with(&sim, Method::POST, &path, false, DEFER).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(40_060))
    );
    assert_eq!(sim.rest_stats().duplicate_callbacks, 1);
    let (status, _, _) = call(&sim, Method::POST, &followup, false).await;
    assert_eq!(status, StatusCode::OK);
    let original = format!("{followup}/messages/@original");
    let (status, _, _) = call(&sim, Method::PATCH, &original, false).await;
    assert_eq!(status, StatusCode::OK);
    // After the token's lifetime: invalid webhook token.
    tokio::time::sleep(Duration::from_millis(650)).await;
    let (status, _, body) = call(&sim, Method::POST, &followup, false).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::UNAUTHORIZED, Some(50_027))
    );
    // None of it counted toward the global limit (no bot Authorization).
    assert!(sim.rest_arrivals().iter().all(|a| !a.counted));
    sim.shutdown().await;
}

#[tokio::test]
async fn interaction_responses_are_validated_and_recorded() {
    use crate::sim::ResponseKind;
    let sim = start(RestSimConfig::default()).await;
    let i = sim.create_interaction();
    let callback = format!("/interactions/{}/{}/callback", i.id, i.token);
    let original = format!(
        "/webhooks/{}/{}/messages/@original",
        i.application_id, i.token
    );
    // Nothing to edit before the callback.
    let (status, _, body) =
        call_with(&sim, Method::PATCH, &original, false, r#"{"content":"x"}"#).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(10_008))
    );
    // A command cannot be answered with a component update, nor autocomplete.
    for bad in [
        r#"{"type":6}"#,
        r#"{"type":8,"data":{"choices":[]}}"#,
        r#"{"data":{}}"#,
    ] {
        let (status, _, body) = call_with(&sim, Method::POST, &callback, false, bad).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(50_035)),
            "{bad}"
        );
    }
    let (status, _, _) = call_with(&sim, Method::POST, &callback, false, DEFER).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a refused body does not use up the callback"
    );
    let (status, _, _) = call_with(
        &sim,
        Method::PATCH,
        &original,
        false,
        r#"{"content":"final"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let too_long = format!(r#"{{"content":"{}"}}"#, "x".repeat(2001));
    let (status, _, body) = call_with(&sim, Method::PATCH, &original, false, &too_long).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(50_035))
    );

    let rs = sim.interaction_responses();
    let accepted: Vec<_> = rs.iter().filter(|r| r.status < 300).collect();
    assert_eq!(accepted.len(), 2, "{rs:?}");
    assert_eq!(accepted[0].kind, ResponseKind::Callback { type_: 5 });
    assert_eq!(accepted[0].flags, Some(64));
    assert!(accepted[0].since_emit < Duration::from_secs(3));
    assert_eq!(accepted[1].kind, ResponseKind::EditOriginal);
    assert_eq!(accepted[1].content.as_deref(), Some("final"));
    assert!(rs.iter().all(|r| r.interaction_id == i.id));
    sim.shutdown().await;
}

/// The bot's auth plus an audit log reason.
const AUDIT: &[(&str, &str)] = &[
    ("authorization", "Bot sim-token"),
    ("x-audit-log-reason", "verified%20holder%3A%20%E2%9C%93"),
];

#[tokio::test]
async fn member_roles_change_on_known_members_only() {
    let sim = start(RestSimConfig::default()).await;
    sim.add_member(10, 20, &[3]);
    let path = "/guilds/10/members/20/roles/5";
    let (status, headers, _) = call_headers(&sim, Method::PUT, path, AUDIT, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["x-ratelimit-bucket"], "member-roles");
    assert_eq!(headers["x-ratelimit-limit"], "50");
    // Holding it already: still 204, still recorded.
    let (status, _, _) = call(&sim, Method::PUT, path, true).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.member_roles(10, 20), Some(vec![3, 5]));
    let (status, _, _) = call(&sim, Method::DELETE, "/guilds/10/members/20/roles/3", true).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(sim.member_roles(10, 20), Some(vec![5]));
    let (status, _, body) = call(&sim, Method::GET, "/guilds/10/members/20", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["id"], "20");
    assert_eq!(body["roles"], serde_json::json!(["5"]));
    assert!(body["nick"].is_null());

    // Unknown members: 404, code 10007, nothing recorded.
    for (method, path) in [
        (Method::PUT, "/guilds/10/members/21/roles/5"),
        (Method::DELETE, "/guilds/10/members/21/roles/5"),
        (Method::PUT, "/guilds/11/members/20/roles/5"),
        (Method::GET, "/guilds/10/members/21"),
    ] {
        let (status, _, body) = call(&sim, method.clone(), path, true).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (StatusCode::NOT_FOUND, Some(10_007)),
            "{method} {path}"
        );
    }
    let (status, _, _) = call(&sim, Method::PUT, path, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sim.remove_member(10, 20);
    let (status, _, _) = call(&sim, Method::DELETE, path, true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(sim.member_roles(10, 20), None);

    let change = |role_id, added, reason: Option<&str>| RoleChange {
        guild_id: 10,
        user_id: 20,
        role_id,
        added,
        reason: reason.map(str::to_owned),
    };
    assert_eq!(
        sim.role_changes(),
        vec![
            change(5, true, Some("verified holder: ✓")),
            change(5, true, None),
            change(3, false, None),
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn dm_channels_are_stable_and_messages_name_their_recipient() {
    let sim = start(RestSimConfig::default()).await;
    let open = |recipient: &'static str| {
        let sim = sim.clone();
        async move {
            call_with(
                &sim,
                Method::POST,
                "/users/@me/channels",
                true,
                &format!(r#"{{"recipient_id":"{recipient}"}}"#),
            )
            .await
        }
    };
    let (status, headers, a) = open("42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-ratelimit-bucket"], "dm-open");
    assert_eq!(a["type"], 1);
    assert_eq!(a["recipients"][0]["id"], "42");
    let (_, _, again) = open("42").await;
    assert_eq!(again["id"], a["id"]);
    let (_, _, other) = open("43").await;
    assert_ne!(other["id"], a["id"]);
    for bad in ["{}", r#"{"recipient_id":"abc"}"#, "not json"] {
        let (status, _, body) =
            call_with(&sim, Method::POST, "/users/@me/channels", true, bad).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(50_035)),
            "{bad}"
        );
        assert!(body["errors"]["recipient_id"].is_object(), "{body}");
    }

    let channel = a["id"].as_str().unwrap().to_owned();
    let (status, _, _) = call_with(
        &sim,
        Method::POST,
        &format!("/channels/{channel}/messages"),
        true,
        r#"{"content":"welcome"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call_with(
        &sim,
        Method::POST,
        "/channels/77/messages",
        true,
        r#"{"content":"hi"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = sim.messages_sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].channel_id, channel.parse::<u64>().unwrap());
    assert_eq!(sent[0].recipient_id, Some(42));
    assert_eq!(sent[0].content, "welcome");
    assert_eq!(sent[0].body["content"], "welcome");
    assert_eq!((sent[1].channel_id, sent[1].recipient_id), (77, None));
    sim.shutdown().await;
}

fn commands_path(sim: &Simulator) -> String {
    format!(
        "/applications/{}/commands",
        sim.config().rest.application_id
    )
}

#[tokio::test]
async fn bulk_overwrite_keeps_ids_per_name() {
    let sim = start(RestSimConfig::default()).await;
    let body = r#"[
        {"name":"verify","description":"Check your holdings","options":[
            {"type":3,"name":"wallet","description":"Address","required":true},
            {"type":4,"name":"chain","description":"Chain","choices":[{"name":"eth","value":1}]}
        ]},
        {"name":"admin","description":"Admin","default_member_permissions":"8","options":[
            {"type":2,"name":"roles","description":"Roles","options":[
                {"type":1,"name":"sync","description":"Sync roles","options":[
                    {"type":6,"name":"user","description":"Who"}
                ]}
            ]},
            {"type":1,"name":"status","description":"Status"}
        ]},
        {"type":2,"name":"Check Holdings"}
    ]"#;
    let path = commands_path(&sim);
    let (status, headers, first) = call_with(&sim, Method::PUT, &path, true, body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(headers["x-ratelimit-bucket"], "app-commands");
    let first = first.as_array().unwrap().clone();
    assert_eq!(first.len(), 3);
    let app = sim.config().rest.application_id.to_string();
    for c in &first {
        assert!(c["id"].is_string());
        assert!(c["version"].is_string());
        assert_eq!(c["application_id"], app.as_str());
    }
    assert_eq!(first[0]["type"], 1);
    let (status, _, second) = call_with(&sim, Method::PUT, &path, true, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second.as_array().unwrap(), &first, "same ids and versions");
    let (status, _, listed) = call(&sim, Method::GET, &path, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap(), &first);
    assert_eq!(sim.registered_commands(), first);
    assert_eq!(sim.command_overwrites(), 2);

    // Dropping one keeps the others' ids.
    let (status, _, third) = call_with(
        &sim,
        Method::PUT,
        &path,
        true,
        r#"[{"name":"verify","description":"Check again"}]"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(third[0]["id"], first[0]["id"]);
    assert_ne!(third[0]["version"], first[0]["version"]);
    assert_eq!(sim.registered_commands().len(), 1);

    let (status, headers, me) = call(&sim, Method::GET, "/applications/@me", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-ratelimit-bucket"], "app-me");
    assert_eq!(me["id"], app.as_str());
    assert_eq!(me["name"], "arrakis-sim");
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_overwrite_is_validated() {
    let sim = start(RestSimConfig::default()).await;
    let path = commands_path(&sim);
    let long = "x".repeat(101);
    let cases = [
        (
            r#"[{"name":"Verify","description":"d"}]"#.to_owned(),
            vec!["0", "name"],
        ),
        (
            format!(r#"[{{"name":"verify","description":"{long}"}}]"#),
            vec!["0", "description"],
        ),
        (
            r#"[{"name":"verify","description":"d","options":[
                {"type":3,"name":"a","description":"a"},
                {"type":3,"name":"b","description":"b","required":true}]}]"#
                .to_owned(),
            vec!["0", "options", "1", "required"],
        ),
        (
            r#"[{"name":"a","description":"d"},{"name":"a","description":"d"}]"#.to_owned(),
            vec!["1", "name"],
        ),
        (
            r#"[{"name":"a","description":"d","options":[
                {"type":1,"name":"s","description":"s"},
                {"type":3,"name":"x","description":"x"}]}]"#
                .to_owned(),
            vec!["0", "options", "1", "type"],
        ),
        (
            r#"[{"name":"a","description":"d","options":[
                {"type":3,"name":"x","description":"x","autocomplete":true,
                 "choices":[{"name":"c","value":"c"}]}]}]"#
                .to_owned(),
            vec!["0", "options", "0", "autocomplete"],
        ),
        (
            r#"[{"name":"a","description":"d","default_member_permissions":8}]"#.to_owned(),
            vec!["0", "default_member_permissions"],
        ),
    ];
    for (body, at) in &cases {
        let (status, _, answer) = call_with(&sim, Method::PUT, &path, true, body).await;
        assert_eq!(
            (status, answer["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(50_035)),
            "{body}"
        );
        assert_eq!(answer["message"], "Invalid Form Body");
        let leaf = at.iter().fold(&answer["errors"], |v, k| &v[*k]);
        assert!(leaf["_errors"][0]["code"].is_string(), "{body}: {answer}");
    }
    let too_many: Vec<_> = (0..101)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "description": "d"}))
        .collect();
    let (status, _, _) = call_with(
        &sim,
        Method::PUT,
        &path,
        true,
        &serde_json::Value::Array(too_many).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Another application's commands: 403, code 50001.
    let (status, _, answer) = call_with(
        &sim,
        Method::PUT,
        "/applications/1/commands",
        true,
        r#"[{"name":"a","description":"d"}]"#,
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_u64()),
        (StatusCode::FORBIDDEN, Some(50_001))
    );
    assert_eq!(sim.rest_stats().invalid, 1, "a 403 is an invalid request");
    assert_eq!(sim.command_overwrites(), 0);
    assert!(sim.registered_commands().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn prepared_interactions_take_their_callback_within_the_window() {
    let sim = start(RestSimConfig::default()).await;
    let (i, d) = sim.prepare_interaction(InteractionSpec::select("pick", &["gold"]).guild(5));
    assert_eq!((i.seq, i.guild_id), (0, 5));
    assert_eq!(d["id"], i.id.as_str());
    assert_eq!(d["token"], i.token.as_str());
    assert_eq!(d["type"], 3);
    assert_eq!(d["data"]["values"], serde_json::json!(["gold"]));
    assert!(sim.sent().is_empty(), "nothing went out on the gateway");
    let path = format!("/interactions/{}/{}/callback", i.id, i.token);
    let (status, _, _) = call_with(&sim, Method::POST, &path, false, r#"{"type":6}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rs = sim.interaction_responses();
    assert_eq!(rs.len(), 1);
    assert!(rs[0].since_emit < Duration::from_secs(3));
    let (default_guild, _) = sim.prepare_interaction(InteractionSpec::button("b"));
    assert_ne!(default_guild.guild_id, 0);
    sim.shutdown().await;
}
