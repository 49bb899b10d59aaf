//! The rate-limited REST routes over HTTP: headers, auth, and the
//! interaction lifecycle (with short windows).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::super::{SimConfig, Simulator};
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
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.api_base()));
    if bot {
        req = req.header("authorization", "Bot sim-token");
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
