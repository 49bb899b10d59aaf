//! Route templating, one test per documented special case.

use super::*;

/// A Unix time in ms well after every id used below.
const NOW: u64 = 1_800_000_000_000;

/// A snowflake created `age_ms` before [`NOW`].
fn snowflake_aged(age_ms: u64) -> u64 {
    (NOW - age_ms - DISCORD_EPOCH_MS) << 22
}

fn route(method: &str, path: &str) -> Route {
    Route::parse(method, path, NOW).unwrap()
}

#[test]
fn ids_are_replaced_and_the_channel_is_major() {
    let r = route("POST", "/channels/123456789012345678/messages");
    assert_eq!(r.key, "POST /channels/:id/messages");
    assert_eq!(r.major, "c:123456789012345678");
    assert_eq!(r.kind, RouteKind::Bot);
    assert!(r.kind.bot_auth() && r.kind.counts_globally());
    // Another channel: same route, another resource.
    let other = route("POST", "/channels/9/messages");
    assert_eq!(other.key, r.key);
    assert_ne!(other.major, r.major);
}

#[test]
fn guild_and_webhook_majors() {
    let g = route("PATCH", "/guilds/42/members/77");
    assert_eq!(g.key, "PATCH /guilds/:id/members/:id");
    assert_eq!(g.major, "g:42");
    let w = route("GET", "/webhooks/5");
    assert_eq!(w.key, "GET /webhooks/:id");
    assert_eq!(w.major, "w:5");
    assert_eq!(w.kind, RouteKind::Bot);
    // Routes without a top-level resource have an empty major.
    let me = route("GET", "/users/@me");
    assert_eq!((me.key.as_str(), me.major.as_str()), ("GET /users/@me", ""));
    let user = route("GET", "/users/80351110224678912");
    assert_eq!(user.key, "GET /users/:id");
    assert_eq!(user.major, "");
}

#[test]
fn webhook_tokens_are_hashed_into_the_major_and_never_kept() {
    let token = "aBcD-secret_token.value";
    let r = route("POST", &format!("/webhooks/5/{token}"));
    assert_eq!(r.key, "POST /webhooks/:id/:token");
    assert_eq!(r.kind, RouteKind::WebhookToken);
    assert!(!r.kind.bot_auth() && !r.kind.counts_globally());
    assert_eq!(r.major, format!("w:5:{}", token_digest(token)));
    assert!(!format!("{r:?}").contains(token));
    assert_eq!(token_digest(token).len(), 16);
    // Each token is its own resource.
    let other = route("POST", "/webhooks/5/another-token");
    assert_ne!(other.major, r.major);
}

#[test]
fn interaction_followups_are_webhook_token_routes() {
    for (method, path, key) in [
        (
            "PATCH",
            "/webhooks/11/tok/messages/@original",
            "PATCH /webhooks/:id/:token/messages/@original",
        ),
        ("POST", "/webhooks/11/tok", "POST /webhooks/:id/:token"),
        (
            "DELETE",
            "/webhooks/11/tok/messages/99",
            "DELETE /webhooks/:id/:token/messages/:id",
        ),
        (
            "GET",
            "/webhooks/11/tok/messages/99",
            "GET /webhooks/:id/:token/messages/:id",
        ),
    ] {
        let r = route(method, path);
        assert_eq!(r.key, key);
        assert_eq!(r.kind, RouteKind::WebhookToken, "{path}");
        assert_eq!(r.major, format!("w:11:{}", token_digest("tok")));
    }
}

#[test]
fn interaction_callbacks_are_per_interaction_and_exempt() {
    let r = route("POST", "/interactions/1234/aW50ZXJhY3Rpb246tok/callback");
    assert_eq!(r.key, "POST /interactions/:id/:token/callback");
    assert_eq!(r.major, "i:1234");
    assert_eq!(r.kind, RouteKind::InteractionCallback);
    assert!(!r.kind.bot_auth() && !r.kind.counts_globally());
    assert!(!r.key.contains("aW50"));
}

#[test]
fn reactions_put_and_delete_share_one_route() {
    let put = route("PUT", "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me");
    let del_own = route(
        "DELETE",
        "/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
    );
    let del_user = route("DELETE", "/channels/1/messages/2/reactions/name:123/456");
    assert_eq!(
        put.key,
        "MOD /channels/:id/messages/:id/reactions/:emoji/:user"
    );
    assert_eq!(del_own.key, put.key);
    assert_eq!(del_user.key, put.key);
    assert_eq!(put.major, "c:1");
    // Listing and clearing are other routes; the emoji never stays.
    let list = route("GET", "/channels/1/messages/2/reactions/%F0%9F%91%8D");
    assert_eq!(list.key, "GET /channels/:id/messages/:id/reactions/:emoji");
    let clear = route("DELETE", "/channels/1/messages/2/reactions");
    assert_eq!(clear.key, "DELETE /channels/:id/messages/:id/reactions");
}

#[test]
fn message_delete_has_three_age_classes() {
    let young = snowflake_aged(2_000);
    let normal = snowflake_aged(3_600_000);
    let old = snowflake_aged(15 * 24 * 3_600_000);
    let key = |id: u64| route("DELETE", &format!("/channels/1/messages/{id}")).key;
    assert_eq!(key(young), "DELETE /channels/:id/messages/:id young");
    assert_eq!(key(normal), "DELETE /channels/:id/messages/:id");
    assert_eq!(key(old), "DELETE /channels/:id/messages/:id old");
    // Boundaries: exactly 10 s is no longer young, 14 days is not yet old.
    assert_eq!(message_age_class(snowflake_aged(YOUNG_MESSAGE_MS), NOW), "");
    assert_eq!(message_age_class(snowflake_aged(OLD_MESSAGE_MS), NOW), "");
    // A message "from the future" (clock skew) counts as young.
    assert_eq!(
        message_age_class(snowflake_aged(0) + (5_000 << 22), NOW),
        " young"
    );
    // Only DELETE of a message gets the class.
    assert_eq!(
        route("GET", &format!("/channels/1/messages/{young}")).key,
        "GET /channels/:id/messages/:id"
    );
    assert_eq!(
        route("PATCH", &format!("/channels/1/messages/{young}")).key,
        "PATCH /channels/:id/messages/:id"
    );
}

#[test]
fn codes_and_odd_segments_never_reach_the_key() {
    assert_eq!(
        route("GET", "/invites/discord-api").key,
        "GET /invites/:code"
    );
    assert_eq!(
        route("POST", "/guilds/templates/hgM48av5Q69A").key,
        "POST /guilds/templates/:code"
    );
    assert_eq!(
        route("PUT", "/guilds/1/templates/hgM48av5Q69A").key,
        "PUT /guilds/:id/templates/:code"
    );
    assert_eq!(
        route("GET", "/guilds/1/templates").key,
        "GET /guilds/:id/templates"
    );
    let odd = route("GET", &format!("/guilds/1/{}", "x".repeat(100)));
    assert_eq!(odd.key, "GET /guilds/:id/:x");
    assert_eq!(route("GET", "/guilds/1/a%20b").key, "GET /guilds/:id/:x");
}

#[test]
fn trailing_slashes_and_bad_paths() {
    assert_eq!(route("GET", "/guilds/1/").key, "GET /guilds/:id");
    assert_eq!(
        Route::parse("GET", "guilds/1", NOW),
        Err(RouteError::NotAbsolute)
    );
    assert_eq!(
        Route::parse("GET", "/channels/../gateway", NOW),
        Err(RouteError::DotSegment)
    );
    assert_eq!(Route::parse("GET", "/", NOW), Err(RouteError::Empty));
    // Very deep paths are truncated, not refused.
    let deep = route("GET", &"/a".repeat(20));
    assert!(deep.key.ends_with("/…"), "{}", deep.key);
}

#[test]
fn webhook_without_token_is_a_bot_route() {
    let r = route("PATCH", "/webhooks/77");
    assert_eq!(r.kind, RouteKind::Bot);
    let r = route("DELETE", "/webhooks/77");
    assert_eq!(
        (r.key.as_str(), r.major.as_str()),
        ("DELETE /webhooks/:id", "w:77")
    );
    // `/interactions/...` paths other than the callback are bot routes.
    assert_eq!(route("GET", "/interactions/1/tok").kind, RouteKind::Bot);
}

/// Found by the `route` fuzz target: a path of exactly twelve segments (the
/// template limit) with a trailing slash was keyed as truncated (`/…`), so
/// `/x/` and `/x` fell into different buckets.
#[test]
fn trailing_slash_at_the_segment_limit_changes_nothing() {
    let twelve = "/a/a/a/a/a/a//aa/a/a//a";
    let plain = route("GET", twelve);
    assert!(!plain.key.ends_with('…'), "{}", plain.key);
    assert_eq!(route("GET", &format!("{twelve}/")), plain);
    assert_eq!(route("GET", &format!("{twelve}///")), plain);
    assert!(route("GET", &format!("{twelve}/b")).key.ends_with("/…"));
}
