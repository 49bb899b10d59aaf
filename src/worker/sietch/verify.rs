//! `/verify`: linking a wallet by an EIP-191 `personal_sign` signature.
//!
//! `/verify start` opens a session (15 minutes, 3 attempts) in Postgres
//! and links to the worker's HTTP endpoint, where the wallet signs the
//! session's message: `GET /verify/{session}` returns the message, `POST
//! /verify/{session}` with `{"signature": "0x…", "address": "0x…"}` checks
//! it. The session id carries its community (`<community>.<random>`), so
//! the endpoint opens the right RLS-confined transaction without trusting
//! anything else the client sends.

use std::fmt::Write as _;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::signature::{self, SignatureError};
use super::store;
use super::{Ctx, id64, user};
use crate::worker::db::DbError;
use crate::worker::interaction::{Message, Reply};
use crate::worker::respond::HandlerError;
use crate::worker::services::Services;

/// How long a session accepts a signature.
pub const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// Signatures a session accepts before it fails.
pub const MAX_ATTEMPTS: i32 = 3;

fn random_hex(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(s, "{:02x}", rand::random::<u8>());
    }
    s
}

/// The exact text the wallet signs for a session.
#[must_use]
pub fn message_to_sign(guild_id: i64, user_id: i64, nonce: &str, expires_at: i64) -> String {
    format!(
        "Arrakis Sietch wallet verification\n\n\
         Sign this message to link your wallet to Discord user {user_id} in server {guild_id}.\n\
         It costs nothing and grants no spending permission.\n\n\
         Nonce: {nonce}\nExpires: {expires_at}"
    )
}

/// `/verify start|status|reset`.
pub async fn command(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    match ctx.interaction.subcommands().first().copied() {
        Some("status") => status(ctx).await,
        Some("reset") => reset(ctx).await,
        _ => start(ctx).await,
    }
}

async fn start(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let session = format!("{}.{}", ctx.community, random_hex(16));
    let nonce = random_hex(16);
    let ttl = SESSION_TTL.as_secs_f64();
    let tx = ctx.tx().await?;
    store::ensure_profile(&tx, ctx.user).await?;
    // One open session per member: a new start replaces the old one.
    tx.execute(
        "UPDATE verification_sessions SET status = 'expired' \
         WHERE community_id = $1 AND user_id = $2 AND status = 'pending'",
        &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
    )
    .await?;
    tx.execute(
        "INSERT INTO verification_sessions (community_id, session_id, user_id, nonce, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        &[
            (&ctx.community, Type::INT8),
            (&session, Type::TEXT),
            (&ctx.user, Type::INT8),
            (&nonce, Type::TEXT),
            (&ttl, Type::FLOAT8),
        ],
    )
    .await?;
    tx.commit().await?;
    let link = format!(
        "{}/{session}",
        ctx.services.verify_url.trim_end_matches('/')
    );
    Ok(Reply::Message(Message::ephemeral(format!(
        "**Link a wallet**\nOpen {link} and sign the message with your wallet \
         (`personal_sign`). The link works for 15 minutes and accepts 3 attempts.\n\
         Session: `{session}`"
    ))))
}

async fn status(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let tx = ctx.tx().await?;
    let wallets = store::wallets_of(&tx, ctx.user).await?;
    let pending = tx
        .query(
            "SELECT session_id, attempts, extract(epoch FROM expires_at)::bigint \
             FROM verification_sessions WHERE community_id = $1 AND user_id = $2 \
             AND status = 'pending' AND expires_at > now() ORDER BY created_at DESC LIMIT 1",
            &[(&ctx.community, Type::INT8), (&ctx.user, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let mut out = if wallets.is_empty() {
        "You have not verified a wallet yet.".to_owned()
    } else {
        format!(
            "Verified wallets: {}",
            wallets
                .iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if let Some(p) = pending.first() {
        let attempts: i32 = p.get(1);
        let _ = write!(
            out,
            "\nPending session `{}`: {} attempts left, expires <t:{}:R>.",
            p.get::<_, &str>(0),
            MAX_ATTEMPTS - attempts,
            p.get::<_, i64>(2)
        );
    } else if wallets.is_empty() {
        out.push_str(" Run /verify start.");
    }
    Ok(Reply::Message(Message::ephemeral(out)))
}

async fn reset(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    ctx.require_admin()?;
    let target: u64 = ctx
        .interaction
        .option_str("user")
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| user("Choose the member to reset (user: @member)."))?;
    let target64 = id64(target)?;
    let tx = ctx.tx().await?;
    let removed = tx
        .execute(
            "DELETE FROM wallets WHERE community_id = $1 AND user_id = $2",
            &[(&ctx.community, Type::INT8), (&target64, Type::INT8)],
        )
        .await?;
    tx.execute(
        "UPDATE verification_sessions SET status = 'expired' \
         WHERE community_id = $1 AND user_id = $2 AND status = 'pending'",
        &[(&ctx.community, Type::INT8), (&target64, Type::INT8)],
    )
    .await?;
    // The waitlist registers a verified wallet: it goes with the wallets.
    tx.execute(
        "DELETE FROM waitlist WHERE community_id = $1 AND user_id = $2",
        &[(&ctx.community, Type::INT8), (&target64, Type::INT8)],
    )
    .await?;
    store::audit(
        &tx,
        "verify_reset",
        Some(ctx.user),
        Some(target64),
        &json!({ "wallets": removed }),
    )
    .await?;
    tx.commit().await?;
    super::sync::refresh_member(
        ctx.services,
        ctx.community,
        ctx.guild_id,
        target,
        &ctx.settings,
        false,
    )
    .await?;
    Ok(Reply::Message(Message::ephemeral(format!(
        "Unlinked {removed} wallet(s) of {}; their Sietch roles follow.",
        super::mention(target64)
    ))))
}

fn community_of(session: &str) -> Option<i64> {
    let (community, rest) = session.split_once('.')?;
    (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| community.parse().ok())
        .flatten()
}

fn problem(status: StatusCode, error: &str) -> (StatusCode, Value) {
    (status, json!({ "ok": false, "error": error }))
}

/// `GET /verify/{session}`: the message to sign and the session's state.
pub async fn describe(services: &Services, session: &str) -> (StatusCode, Value) {
    match describe_inner(services, session).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("verify endpoint: {e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, try again",
            )
        }
    }
}

async fn describe_inner(
    services: &Services,
    session: &str,
) -> Result<(StatusCode, Value), DbError> {
    let Some(community) = community_of(session) else {
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let Ok(row) = services.db.community(community).await else {
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let tx = services.db.tenant(community).await?;
    let rows = tx
        .query(
            "SELECT user_id, nonce, status, attempts, extract(epoch FROM expires_at)::bigint, \
             expires_at < now() FROM verification_sessions \
             WHERE community_id = $1 AND session_id = $2",
            &[(&community, Type::INT8), (&session, Type::TEXT)],
        )
        .await?;
    tx.commit().await?;
    let Some(r) = rows.first() else {
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let status: &str = r.get(2);
    let expired = r.get::<_, bool>(5);
    Ok((
        StatusCode::OK,
        json!({
            "ok": true,
            "message": message_to_sign(row.guild_id, r.get(0), r.get(1), r.get(4)),
            "status": if status == "pending" && expired { "expired" } else { status },
            "attempts_left": MAX_ATTEMPTS - r.get::<_, i32>(3),
            "expires_at": r.get::<_, i64>(4),
        }),
    ))
}

/// `POST /verify/{session}`: checks the signature and links the wallet.
///
/// Answers 200 when linked, 400 for a signature that does not match
/// (the attempt is counted), 404 for an unknown session, 409 when the
/// session is no longer pending or the wallet belongs to another member,
/// 410 when it expired, 429 after the third failed attempt.
pub async fn submit(services: &Services, session: &str, body: &[u8]) -> (StatusCode, Value) {
    match submit_inner(services, session, body).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("verify endpoint: {e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, try again",
            )
        }
    }
}

async fn submit_inner(
    services: &Services,
    session: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), DbError> {
    let Some(community) = community_of(session) else {
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let Ok(row) = services.db.community(community).await else {
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"signature\": \"0x…\"}",
        ));
    };
    let Some(sig) = request.get("signature").and_then(Value::as_str) else {
        return Ok(problem(StatusCode::BAD_REQUEST, "missing \"signature\""));
    };
    let claimed = match request.get("address").and_then(Value::as_str) {
        None => None,
        Some(a) => match signature::parse_address(a) {
            Some(a) => Some(a),
            None => {
                return Ok(problem(
                    StatusCode::BAD_REQUEST,
                    "\"address\" is not 0x + 40 hex digits",
                ));
            }
        },
    };
    let tx = services.db.tenant(community).await?;
    let rows = tx
        .query(
            "SELECT user_id, nonce, status, attempts, extract(epoch FROM expires_at)::bigint, \
             expires_at < now() FROM verification_sessions \
             WHERE community_id = $1 AND session_id = $2 FOR UPDATE",
            &[(&community, Type::INT8), (&session, Type::TEXT)],
        )
        .await?;
    let Some(r) = rows.first() else {
        tx.rollback().await?;
        return Ok(problem(StatusCode::NOT_FOUND, "unknown session"));
    };
    let user_id: i64 = r.get(0);
    let status: String = r.get(2);
    let attempts: i32 = r.get(3);
    let expires_at: i64 = r.get(4);
    let expired: bool = r.get(5);
    let message = message_to_sign(row.guild_id, user_id, r.get(1), expires_at);
    if status == "failed" || (status == "pending" && attempts >= MAX_ATTEMPTS) {
        tx.rollback().await?;
        return Ok(problem(
            StatusCode::TOO_MANY_REQUESTS,
            "this session had its 3 attempts: run /verify start again",
        ));
    }
    if status != "pending" {
        tx.rollback().await?;
        return Ok(problem(
            StatusCode::CONFLICT,
            &format!("this session is {status}"),
        ));
    }
    if expired {
        tx.execute(
            "UPDATE verification_sessions SET status = 'expired' \
             WHERE community_id = $1 AND session_id = $2",
            &[(&community, Type::INT8), (&session, Type::TEXT)],
        )
        .await?;
        tx.commit().await?;
        return Ok(problem(
            StatusCode::GONE,
            "this session expired (15 minutes): run /verify start again",
        ));
    }
    let attempts = attempts + 1;
    let recovered = signature::recover_personal_sign(&message, sig);
    let matched = match (&recovered, claimed) {
        (Ok(a), Some(c)) => *a == c,
        (Ok(_), None) => true,
        (Err(_), _) => false,
    };
    if !matched {
        let failed = attempts >= MAX_ATTEMPTS;
        tx.execute(
            "UPDATE verification_sessions SET attempts = $3, \
             status = CASE WHEN $4 THEN 'failed' ELSE status END \
             WHERE community_id = $1 AND session_id = $2",
            &[
                (&community, Type::INT8),
                (&session, Type::TEXT),
                (&attempts, Type::INT4),
                (&failed, Type::BOOL),
            ],
        )
        .await?;
        tx.commit().await?;
        let why = match recovered {
            Err(SignatureError::Malformed(m)) => format!("malformed signature: {m}"),
            Err(e) => e.to_string(),
            Ok(_) => "the signature was not made by that address".to_owned(),
        };
        return Ok((
            if failed {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::BAD_REQUEST
            },
            json!({ "ok": false, "error": why, "attempts_left": MAX_ATTEMPTS - attempts }),
        ));
    }
    let address = signature::to_hex_address(&recovered.unwrap_or_default());
    if let Some(owner) = store::owner_of(&tx, &address).await?
        && owner != user_id
    {
        tx.rollback().await?;
        return Ok(problem(
            StatusCode::CONFLICT,
            "this wallet is already linked to another member",
        ));
    }
    tx.execute(
        "INSERT INTO wallets (community_id, address, user_id) VALUES ($1, $2, $3) \
         ON CONFLICT (community_id, address) DO NOTHING",
        &[
            (&community, Type::INT8),
            (&address, Type::TEXT),
            (&user_id, Type::INT8),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE verification_sessions SET status = 'completed', attempts = $3, address = $4, \
         completed_at = now() WHERE community_id = $1 AND session_id = $2",
        &[
            (&community, Type::INT8),
            (&session, Type::TEXT),
            (&attempts, Type::INT4),
            (&address, Type::TEXT),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE profiles SET onboarded_at = coalesce(onboarded_at, now()), updated_at = now() \
         WHERE community_id = $1 AND user_id = $2",
        &[(&community, Type::INT8), (&user_id, Type::INT8)],
    )
    .await?;
    store::audit(
        &tx,
        "wallet_verified",
        Some(user_id),
        Some(user_id),
        &json!({ "address": address }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        audit = "wallet_verified",
        community,
        user = user_id,
        "wallet linked"
    );
    if let Ok(user) = u64::try_from(user_id) {
        super::activity::onboarded(&services.state, community, user).await;
    }
    if let Ok(settings) = super::settings::Settings::parse(&row.settings)
        && let (Ok(guild), Ok(user)) = (u64::try_from(row.guild_id), u64::try_from(user_id))
    {
        let _ =
            super::sync::refresh_member(services, community, guild, user, &settings, false).await;
    }
    Ok((StatusCode::OK, json!({ "ok": true, "address": address })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_name_their_community() {
        assert_eq!(
            community_of("42.0123456789abcdef0123456789abcdef"),
            Some(42)
        );
        assert_eq!(community_of("42.short"), None);
        assert_eq!(community_of("x.0123456789abcdef0123456789abcdef"), None);
        assert_eq!(community_of("nodot"), None);
    }

    #[test]
    fn the_message_binds_user_guild_nonce_and_expiry() {
        let m = message_to_sign(7, 9, "abc", 1_700_000_000);
        assert!(m.contains("user 9 in server 7"));
        assert!(m.contains("Nonce: abc"));
        assert!(m.contains("Expires: 1700000000"));
    }
}
