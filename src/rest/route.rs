//! Request → rate-limit route: the method and path template with ids
//! replaced, the top-level ("major") resource, and what kind of
//! authentication and global accounting the request gets.
//!
//! Discord docs, "Rate Limits" → per-route limits: limits are per route and
//! per top-level resource (`channel_id`, `guild_id`, `webhook_id` or
//! `webhook_id + webhook_token`); similar routes may share a bucket, named
//! by `X-RateLimit-Bucket`, which excludes the top-level ids. The learned
//! hash is combined with [`Route::major`] by the limiter; this module only
//! decides which requests are "the same route", so it has to get the
//! special cases right (PROTOCOL.md Part 0, research/rest.md §3.8):
//!
//! - **Ids** (all-digit segments) become `:id`; invite and template codes
//!   `:code`; emojis after `reactions` become `:emoji`; webhook and
//!   interaction tokens `:token`. Nothing that identifies a resource stays
//!   in the template, so the route map in Redis stays small.
//! - **Majors**: `/channels/{id}`, `/guilds/{id}`, `/webhooks/{id}` and
//!   `/webhooks/{id}/{token}` (the token is hashed with SHA-256 and only the
//!   first 64 bits of the digest are kept; the token itself is never stored
//!   or logged). Interaction callbacks are keyed per interaction id.
//! - **Reactions**: adding one's own reaction (`PUT …/reactions/{e}/@me`)
//!   and removing one's own or another user's (`DELETE …/reactions/{e}/@me`,
//!   `DELETE …/reactions/{e}/{user}`) share one bucket in Discord (api-docs
//!   #981), so they map to one route, `MOD …/reactions/:emoji/:user`.
//! - **Message delete** has three buckets by message age (api-docs #1295,
//!   #8330): under 10 s, over 14 days, and the rest. The age comes from the
//!   message id's snowflake timestamp compared with the caller's `now`
//!   (a classification, not a limit: a few seconds of skew only moves a
//!   message across a boundary, and the limiter learns from the headers).
//! - **Interaction callbacks** (`POST /interactions/{id}/{token}/callback`)
//!   and **webhook-token routes** (`/webhooks/{id}/{token}…`, which includes
//!   interaction follow-ups) carry their token in the path: they are sent
//!   without the bot's `Authorization` (twilight #752: with it they count
//!   against the global limit) and are exempt from the global limit (docs,
//!   "Interactions" → receiving and responding).
//!
//! Everything here is pure and allocation-light; `benches/rest.rs` measures
//! it (target: ≤ 1 µs per request).

use std::fmt::Write as _;

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds; snowflake
/// timestamps count from it.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Messages younger than this are deleted through the "young" bucket.
pub const YOUNG_MESSAGE_MS: u64 = 10_000;

/// Messages older than this (14 days) are deleted through the "old" bucket.
pub const OLD_MESSAGE_MS: u64 = 14 * 24 * 3_600_000;

/// Longest path segment kept literally in a template; longer (or oddly
/// shaped) segments are replaced so that a caller cannot mint unbounded
/// route keys.
const MAX_LITERAL: usize = 40;

/// How a request authenticates and whether it counts toward the global
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A normal bot route: `Authorization: Bot <token>`, counted globally.
    Bot,
    /// `POST /interactions/{id}/{token}/callback`: no bot auth, exempt from
    /// the global limit, must never be re-sent blindly (40060).
    InteractionCallback,
    /// `/webhooks/{id}/{token}…` (webhook executes and interaction
    /// follow-ups): no bot auth, exempt from the global limit.
    WebhookToken,
}

impl RouteKind {
    /// Whether the proxy adds `Authorization: Bot <token>`.
    #[must_use]
    pub fn bot_auth(self) -> bool {
        self == RouteKind::Bot
    }

    /// Whether the request counts toward the global limit.
    #[must_use]
    pub fn counts_globally(self) -> bool {
        self == RouteKind::Bot
    }

    /// A short label for metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Bot => "bot",
            RouteKind::InteractionCallback => "interaction_callback",
            RouteKind::WebhookToken => "webhook_token",
        }
    }
}

/// A request's rate-limit identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Method and template, e.g. `POST /channels/:id/messages`; with the
    /// discriminators above (`DELETE /channels/:id/messages/:id young`,
    /// `MOD /channels/:id/messages/:id/reactions/:emoji/:user`). Safe to
    /// log and to use as a metric label: it holds no id and no token.
    pub key: String,
    /// The top-level resource: `c:<channel>`, `g:<guild>`, `w:<webhook>`,
    /// `w:<webhook>:<token digest>`, `i:<interaction>`, or empty.
    pub major: String,
    /// Authentication and global accounting.
    pub kind: RouteKind,
}

/// Why a path cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path does not start with `/`.
    #[error("the path must start with `/`")]
    NotAbsolute,
    /// `.` or `..` segments (they would escape the API base).
    #[error("the path must not contain `.` or `..` segments")]
    DotSegment,
    /// Nothing after the API base.
    #[error("the path names no API route")]
    Empty,
}

/// Whether a segment is a snowflake (or another all-digit id).
fn is_id(seg: &str) -> bool {
    !seg.is_empty() && seg.len() <= 20 && seg.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a segment may stay literal in a template.
fn is_literal(seg: &str) -> bool {
    seg.len() <= MAX_LITERAL
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'@' | b'.'))
}

/// The age class of a message id for the delete buckets, given `now` in
/// Unix milliseconds: `" young"`, `" old"` or `""`.
#[must_use]
pub fn message_age_class(message_id: u64, now_ms: u64) -> &'static str {
    let created = (message_id >> 22).saturating_add(DISCORD_EPOCH_MS);
    let age = now_ms.saturating_sub(created);
    if age < YOUNG_MESSAGE_MS {
        " young"
    } else if age > OLD_MESSAGE_MS {
        " old"
    } else {
        ""
    }
}

/// First 16 hex digits of SHA-256(`token`): enough to keep two webhook
/// tokens apart, useless for recovering either.
#[must_use]
pub fn token_digest(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = String::with_capacity(16);
    for b in &digest.as_ref()[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Route {
    /// Routes `method` + `path` (relative to the API base, without query:
    /// `/channels/1/messages`), with `now_ms` the caller's Unix time in
    /// milliseconds (used only for the message-delete age classes).
    ///
    /// # Errors
    ///
    /// [`RouteError`] for paths that are not absolute, contain dot
    /// segments, or are empty.
    pub fn parse(method: &str, path: &str, now_ms: u64) -> Result<Route, RouteError> {
        // A trailing slash adds an empty segment; Discord treats `/x/` like
        // `/x`, and so do we. Trimmed before splitting, so that a path
        // right at the segment limit is not truncated by its slash.
        let rest = path
            .strip_prefix('/')
            .ok_or(RouteError::NotAbsolute)?
            .trim_end_matches('/');
        let mut segs: [&str; 12] = [""; 12];
        let mut n = 0;
        for seg in rest.split('/') {
            if seg == "." || seg == ".." {
                return Err(RouteError::DotSegment);
            }
            if n < segs.len() {
                segs[n] = seg;
            }
            n += 1;
        }
        if rest.is_empty() {
            return Err(RouteError::Empty);
        }
        let truncated = n > segs.len();
        let segs = &segs[..n.min(segs.len())];
        let top = segs[0];

        let kind = match (top, segs.len()) {
            ("interactions", 4) if segs[3] == "callback" => RouteKind::InteractionCallback,
            ("webhooks", len) if len >= 3 => RouteKind::WebhookToken,
            _ => RouteKind::Bot,
        };

        let mut major = String::new();
        if segs.len() >= 2 && is_id(segs[1]) {
            match top {
                "channels" => major = format!("c:{}", segs[1]),
                "guilds" => major = format!("g:{}", segs[1]),
                "webhooks" if kind == RouteKind::WebhookToken => {
                    major = format!("w:{}:{}", segs[1], token_digest(segs[2]));
                }
                "webhooks" => major = format!("w:{}", segs[1]),
                "interactions" if kind == RouteKind::InteractionCallback => {
                    major = format!("i:{}", segs[1]);
                }
                _ => {}
            }
        }

        // Reactions: `channels/:id/messages/:id/reactions/:emoji/(@me|:id)`.
        let own_or_user_reaction =
            segs.len() == 7 && top == "channels" && segs[2] == "messages" && segs[4] == "reactions";
        let verb = if own_or_user_reaction
            && (method == "PUT" || method == "DELETE")
            && (segs[6] == "@me" || is_id(segs[6]))
        {
            "MOD"
        } else {
            method
        };

        let mut key = String::with_capacity(verb.len() + path.len() + 8);
        key.push_str(verb);
        key.push(' ');
        let mut prev = "";
        for (i, seg) in segs.iter().enumerate() {
            key.push('/');
            let token_position = i == 2 && matches!(top, "webhooks" | "interactions");
            let piece = if token_position {
                ":token"
            } else if prev == "reactions" {
                ":emoji"
            } else if verb == "MOD" && i == 6 {
                ":user"
            } else if is_id(seg) {
                ":id"
            } else if matches!(prev, "invites" | "templates") {
                ":code"
            } else if is_literal(seg) {
                seg
            } else {
                ":x"
            };
            key.push_str(piece);
            prev = seg;
        }
        if truncated {
            key.push_str("/…");
        }
        if method == "DELETE"
            && segs.len() == 4
            && top == "channels"
            && segs[2] == "messages"
            && let Ok(id) = segs[3].parse::<u64>()
        {
            key.push_str(message_age_class(id, now_ms));
        }
        Ok(Route { key, major, kind })
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
