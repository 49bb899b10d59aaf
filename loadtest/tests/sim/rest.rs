//! REST: `/gateway/bot` and `/gateway` answer like Discord.

use crate::client::http_get;
use crate::{config, start};

#[tokio::test]
async fn gateway_bot_answers_with_url_shards_and_limits() {
    let sim = start(arrakis_loadtest::SimConfig {
        shards: 4,
        max_concurrency: 2,
        ..config()
    })
    .await;
    let (status, body) = http_get(
        &sim.api_base(),
        "/api/v10/gateway/bot",
        Some("Bot test-token"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["url"], sim.gateway_url());
    assert_eq!(body["shards"], 4);
    let limit = &body["session_start_limit"];
    assert_eq!(limit["total"], 1000);
    assert_eq!(limit["remaining"], 1000);
    assert_eq!(limit["max_concurrency"], 2);
    assert!(limit["reset_after"].as_u64().unwrap() > 0);

    let (status, body) = http_get(&sim.api_base(), "/api/v10/gateway", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["url"], sim.gateway_url());
    sim.shutdown().await;
}

#[tokio::test]
async fn gateway_bot_rejects_a_wrong_or_missing_token() {
    let sim = start(config()).await;
    for auth in [Some("Bot wrong"), Some("test-token"), None] {
        let (status, body) = http_get(&sim.api_base(), "/api/v10/gateway/bot", auth).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            body,
            serde_json::json!({"message": "401: Unauthorized", "code": 0})
        );
    }
    let (status, body) = http_get(&sim.api_base(), "/api/v10/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], 0);
    let recorded = sim.rest_requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[3].status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn remaining_counts_identifies() {
    let sim = start(config()).await;
    let mut c = crate::client::Client::connect(&sim.gateway_url(), true).await;
    c.login("test-token", 0, 1).await;
    let (_, body) = http_get(
        &sim.api_base(),
        "/api/v10/gateway/bot",
        Some("Bot test-token"),
    )
    .await;
    assert_eq!(body["session_start_limit"]["remaining"], 999);
    assert_eq!(sim.session_start_remaining(), 999);
    sim.shutdown().await;
}
