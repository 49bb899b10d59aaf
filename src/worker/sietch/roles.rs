//! Role changes and direct messages through the REST proxy, for the sync,
//! verification, the waitlist and member joins.
//!
//! Only differences are sent: [`apply`] takes a [`RoleDiff`] and reports
//! which roles the member really has afterwards, so the caller records
//! exactly that and a later run sends nothing when nothing changed. A
//! member who left (Discord's 10007) is skipped, a missing permission
//! (50013) is logged and skipped, and a proxy that cannot deliver stops
//! the run so the next one retries.

use std::collections::BTreeSet;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::ranking::RoleDiff;
use crate::worker::rest::{Priority, ProxyClient};

/// How long one background REST call may wait in the proxy's buckets.
const DEADLINE: Duration = Duration::from_secs(30);

/// Discord: Unknown Member.
const UNKNOWN_MEMBER: u64 = 10_007;
/// Discord: Cannot send messages to this user (DMs closed).
const CANNOT_DM: u64 = 50_007;

/// How applying a diff ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Every change landed (or was refused for good); these roles are now
    /// the member's managed roles.
    Done(BTreeSet<u64>),
    /// The member is not in the guild: nothing to record beyond the
    /// roles that did land.
    MemberGone(BTreeSet<u64>),
}

/// Why a REST step must be retried later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("REST: {0}")]
pub struct RestUnavailable(pub String);

/// Applies `diff` to `user`'s roles in `guild`, starting from `applied`.
///
/// # Errors
///
/// [`RestUnavailable`] when the proxy could not deliver (unreachable,
/// 5xx, deadline): the roles already changed are lost to the caller, who
/// records nothing and retries the whole diff (PUT and DELETE of a role
/// are idempotent).
pub async fn apply(
    rest: &ProxyClient,
    guild: u64,
    user: u64,
    applied: &BTreeSet<u64>,
    diff: &RoleDiff,
    reason: &str,
) -> Result<Applied, RestUnavailable> {
    let mut now = applied.clone();
    let changes = diff
        .add
        .iter()
        .map(|r| (Method::PUT, *r))
        .chain(diff.remove.iter().map(|r| (Method::DELETE, *r)));
    for (method, role) in changes {
        let path = format!("/guilds/{guild}/members/{user}/roles/{role}");
        let adding = method == Method::PUT;
        let resp = rest
            .send(
                method,
                &path,
                None,
                DEADLINE,
                Priority::Background,
                Some(reason),
            )
            .await
            .map_err(|e| RestUnavailable(e.to_string()))?;
        if resp.discord_code() == Some(UNKNOWN_MEMBER) {
            return Ok(Applied::MemberGone(now));
        }
        if resp.status.is_server_error() || resp.status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RestUnavailable(format!("{} on {path}", resp.status)));
        }
        if !resp.status.is_success() {
            // 403 (the bot's role is below this one, or it lacks Manage
            // Roles) or 404 (the role was deleted): retrying would repeat
            // it. Recorded as applied, so it is not retried every sync;
            // /setup fixes the mapping.
            tracing::warn!(
                guild,
                user,
                role,
                status = resp.status.as_u16(),
                code = resp.discord_code(),
                "role change refused by Discord"
            );
        }
        if adding {
            now.insert(role);
        } else {
            now.remove(&role);
        }
    }
    Ok(Applied::Done(now))
}

/// Sends `content` to `user` in a DM; `false` when the user does not
/// accept DMs from the bot (not an error).
///
/// # Errors
///
/// [`RestUnavailable`] when the proxy could not deliver.
pub async fn direct_message(
    rest: &ProxyClient,
    user: u64,
    content: &str,
) -> Result<bool, RestUnavailable> {
    let body = json!({ "recipient_id": user.to_string() });
    let resp = rest
        .send(
            Method::POST,
            "/users/@me/channels",
            Some(&body),
            DEADLINE,
            Priority::Background,
            None,
        )
        .await
        .map_err(|e| RestUnavailable(e.to_string()))?;
    if resp.status.is_server_error() {
        return Err(RestUnavailable(format!("{} opening a DM", resp.status)));
    }
    let Some(channel) = resp
        .json()
        .filter(|_| resp.status.is_success())
        .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)))
    else {
        return Ok(false);
    };
    let message = json!({ "content": content, "allowed_mentions": { "parse": [] } });
    let resp = rest
        .send(
            Method::POST,
            &format!("/channels/{channel}/messages"),
            Some(&message),
            DEADLINE,
            Priority::Background,
            None,
        )
        .await
        .map_err(|e| RestUnavailable(e.to_string()))?;
    if resp.status.is_server_error() {
        return Err(RestUnavailable(format!("{} sending a DM", resp.status)));
    }
    if !resp.status.is_success() && resp.discord_code() != Some(CANNOT_DM) {
        tracing::warn!(
            user,
            status = resp.status.as_u16(),
            "direct message refused"
        );
    }
    Ok(resp.status.is_success())
}
