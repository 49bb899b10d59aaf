//! Gateway event handlers (SIETCH.md, gateway events). Each event with an
//! effect names it here; every other event is acked as soon as it has been
//! decoded.
//!
//! A Postgres effect runs in one tenant transaction that also records the
//! message id, so it happens once even if the message is delivered again.
//! REST effects (roles, DMs) are idempotent or follow a committed change.
//!
//! Joins: after READY (and only then) Discord sends a GUILD_CREATE for
//! every guild the session starts with; a GUILD_CREATE for a guild that
//! READY did not list is the bot joining it. READY's guild list is kept in
//! Redis per session; when it is not there (READY still in flight on
//! another worker, or expired), the guild's `joined_at` decides: a join is
//! one the bot made in the last ten minutes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;

use super::db::{self, DbError};
use super::envelope::{Envelope, Poison, Snowflake};
use super::services::Services;
use super::sietch::{activity, roles, settings::Settings, store, sync};
use super::state::StateError;

/// How long a session's READY guild list is kept.
const READY_TTL: Duration = Duration::from_secs(86_400);
/// A GUILD_CREATE whose `joined_at` is this recent is a join when the
/// session's READY is unknown.
const RECENT_JOIN: Duration = Duration::from_secs(600);

/// Why an event's effect did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A dependency is away; retrying later may succeed.
    #[error("{0}")]
    Transient(String),
    /// The payload does not have the shape the handler needs.
    #[error("{0}")]
    Poison(#[from] Poison),
    /// It failed in a way a retry would repeat.
    #[error("{0}")]
    Permanent(String),
}

impl From<DbError> for EventError {
    fn from(err: DbError) -> Self {
        if err.is_transient() {
            Self::Transient(format!("Postgres: {err}"))
        } else {
            Self::Permanent(format!("Postgres: {err}"))
        }
    }
}

impl From<StateError> for EventError {
    fn from(err: StateError) -> Self {
        Self::Transient(format!("Redis: {err}"))
    }
}

/// Whether `event` has a handler with an effect.
#[must_use]
pub fn has_effect(event: &str) -> bool {
    matches!(
        event,
        "READY"
            | "GUILD_CREATE"
            | "GUILD_DELETE"
            | "GUILD_MEMBER_ADD"
            | "GUILD_MEMBER_REMOVE"
            | "MESSAGE_CREATE"
            | "MESSAGE_REACTION_ADD"
            | "MESSAGE_REACTION_REMOVE"
    )
}

#[derive(Deserialize)]
struct UserRef {
    id: Snowflake,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
struct MemberEvent {
    guild_id: Snowflake,
    user: UserRef,
}

#[derive(Deserialize)]
struct GuildRef {
    id: Snowflake,
    #[serde(default)]
    unavailable: bool,
    #[serde(default)]
    joined_at: Option<String>,
}

#[derive(Deserialize)]
struct Ready {
    session_id: String,
    #[serde(default)]
    guilds: Vec<GuildRef>,
}

#[derive(Deserialize)]
struct MessageCreate {
    #[serde(default)]
    guild_id: Option<Snowflake>,
    author: UserRef,
    #[serde(default)]
    webhook_id: Option<Snowflake>,
}

#[derive(Deserialize)]
struct Reaction {
    #[serde(default)]
    guild_id: Option<Snowflake>,
    user_id: Snowflake,
    #[serde(default)]
    message_author_id: Option<Snowflake>,
    #[serde(default)]
    member: Option<ReactionMember>,
}

#[derive(Deserialize)]
struct ReactionMember {
    #[serde(default)]
    user: Option<UserRef>,
}

/// Runs the effect of `envelope`'s event.
///
/// # Errors
///
/// [`EventError`], telling the consumer whether to retry.
pub async fn handle(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    match &*envelope.event {
        "READY" => ready(services, envelope).await,
        "GUILD_CREATE" => guild_create(services, envelope).await,
        "GUILD_DELETE" => guild_delete(services, envelope).await,
        "GUILD_MEMBER_ADD" => member_add(services, envelope).await,
        "GUILD_MEMBER_REMOVE" => member_remove(services, envelope).await,
        "MESSAGE_CREATE" | "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => {
            activity(services, envelope).await
        }
        _ => Ok(()),
    }
}

fn ready_key(session: &str) -> String {
    format!("ready:{session}")
}

/// The session part of a `<session_id>:<seq>` message id.
fn session_of(message_id: &str) -> &str {
    message_id.rsplit_once(':').map_or(message_id, |(s, _)| s)
}

async fn ready(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let ready: Ready = envelope.data()?;
    let guilds: Vec<String> = ready.guilds.iter().map(|g| g.id.0.to_string()).collect();
    services
        .state
        .session_put(
            &ready_key(&ready.session_id),
            &serde_json::to_string(&guilds).unwrap_or_default(),
            READY_TTL,
        )
        .await?;
    Ok(())
}

/// Unix seconds of a Discord ISO 8601 timestamp (`2025-01-01T00:00:00.000000+00:00`;
/// Discord always sends UTC).
fn unix_seconds(iso: &str) -> Option<i64> {
    let b = iso.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| iso.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from the civil date (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Whether a GUILD_CREATE is the bot joining the guild.
async fn is_join(
    services: &Services,
    envelope: &Envelope<'_>,
    guild: &GuildRef,
) -> Result<bool, EventError> {
    let session = session_of(envelope.message_id);
    if let Some(list) = services.state.session_get(&ready_key(session)).await? {
        let ids: Vec<String> = serde_json::from_str(&list).unwrap_or_default();
        return Ok(!ids.iter().any(|id| *id == guild.id.0.to_string()));
    }
    let now = envelope.received_at_us.map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        },
        |us| us / 1_000_000,
    );
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    Ok(guild
        .joined_at
        .as_deref()
        .and_then(unix_seconds)
        .is_some_and(|t| now - t <= i64::try_from(RECENT_JOIN.as_secs()).unwrap_or(600)))
}

async fn guild_create(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let guild: GuildRef = envelope.data()?;
    if guild.unavailable {
        return Ok(());
    }
    let join = is_join(services, envelope, &guild).await?;
    let community = services.db.community_for_guild(guild.id.0).await?;
    let reactivated = services.db.set_guild_active(guild.id.0, true).await?;
    if join {
        let tx = services.db.tenant(community).await?;
        if tx.mark_processed(envelope.message_id).await? {
            store::audit(
                &tx,
                "guild_join",
                None,
                None,
                &json!({ "guild_id": guild.id.0.to_string(), "reactivated": reactivated }),
            )
            .await?;
            tx.commit().await?;
            services.metrics.guild_joins.inc();
            tracing::info!(
                audit = "guild_join",
                community,
                guild = guild.id.0,
                "bot joined a guild: community ready for /setup"
            );
        } else {
            tx.commit().await?;
            services.metrics.duplicates.inc();
        }
    }
    Ok(())
}

async fn guild_delete(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let guild: GuildRef = envelope.data()?;
    // `unavailable: true` is an outage, not a removal.
    if guild.unavailable {
        return Ok(());
    }
    if services.db.set_guild_active(guild.id.0, false).await? {
        tracing::info!(
            audit = "guild_leave",
            guild = guild.id.0,
            "bot removed from a guild: community inactive"
        );
    }
    Ok(())
}

async fn member_add(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let add: MemberEvent = envelope.data()?;
    let community = services.db.community_for_guild(add.guild_id.0).await?;
    let tx = services.db.tenant(community).await?;
    let first = db::record_member_join(&tx, add.user.id.0, envelope.message_id).await?;
    let user = i64::try_from(add.user.id.0).unwrap_or(0);
    let wallets = store::wallets_of(&tx, user).await?;
    tx.commit().await?;
    if first {
        services.metrics.member_joins.inc();
        tracing::info!(
            audit = "member_join",
            community,
            user = add.user.id.0,
            message_id = envelope.message_id,
            "member joined"
        );
    } else {
        // Redelivered after the join was recorded: the roles below may
        // not have gone out, so they are sent again (idempotent); only
        // the DM is not repeated.
        services.metrics.duplicates.inc();
    }
    // Bots hold no wallets; the check saves a query.
    if wallets.is_empty() || add.user.bot {
        return Ok(());
    }
    // A returning verified member: Discord dropped their roles when they
    // left, so every managed role they should hold is sent again.
    let row = services.db.community(community).await?;
    let Ok(settings) = Settings::parse(&row.settings) else {
        return Ok(());
    };
    sync::refresh_member(
        services,
        community,
        add.guild_id.0,
        add.user.id.0,
        &settings,
        true,
    )
    .await?;
    let tx = services.db.tenant(community).await?;
    let state = store::member_state(&tx, user).await?;
    tx.commit().await?;
    if let Some(tier) = state.tier {
        let text = format!(
            "Welcome to the Sietch. Your verified wallet holds the **{tier}** tier here; \
             your roles are assigned. /position shows where you stand."
        );
        if let Err(e) = roles::direct_message(services.responder.rest(), add.user.id.0, &text).await
        {
            tracing::warn!(community, "onboarding DM not sent: {e}");
        }
    }
    Ok(())
}

async fn member_remove(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let remove: MemberEvent = envelope.data()?;
    let community = services.db.community_for_guild(remove.guild_id.0).await?;
    let user = i64::try_from(remove.user.id.0).unwrap_or(0);
    let tx = services.db.tenant(community).await?;
    if tx.mark_processed(envelope.message_id).await? {
        tx.execute(
            "UPDATE profiles SET left_at = now(), updated_at = now() \
             WHERE community_id = $1 AND user_id = $2",
            &[
                (&community, tokio_postgres::types::Type::INT8),
                (&user, tokio_postgres::types::Type::INT8),
            ],
        )
        .await?;
        // Discord drops a leaving member's roles: nothing is applied now.
        tx.execute(
            "UPDATE member_roles SET roles = '{}', updated_at = now() \
             WHERE community_id = $1 AND user_id = $2",
            &[
                (&community, tokio_postgres::types::Type::INT8),
                (&user, tokio_postgres::types::Type::INT8),
            ],
        )
        .await?;
        store::audit(&tx, "member_leave", None, Some(user), &json!({})).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One activity event's points: the guild, and per user the points it
/// moves and whether it counts as a message.
struct Points {
    guild: u64,
    moves: Vec<(u64, i64, bool)>,
}

impl Points {
    fn users(&self) -> Vec<u64> {
        self.moves.iter().map(|m| m.0).collect()
    }
}

/// The points of an activity event, `None` for events that move none
/// (direct messages, bots, webhooks) and for every other event.
fn points_of(envelope: &Envelope<'_>) -> Result<Option<Points>, Poison> {
    let sign = match &*envelope.event {
        "MESSAGE_CREATE" => 0,
        "MESSAGE_REACTION_ADD" => 1,
        "MESSAGE_REACTION_REMOVE" => -1,
        _ => return Ok(None),
    };
    if sign == 0 {
        let m: MessageCreate = envelope.data()?;
        let Some(guild) = m.guild_id.or(envelope.guild_id.map(Snowflake)) else {
            return Ok(None);
        };
        if m.author.bot || m.webhook_id.is_some() {
            return Ok(None);
        }
        return Ok(Some(Points {
            guild: guild.0,
            moves: vec![(m.author.id.0, activity::MESSAGE_POINTS, true)],
        }));
    }
    let r: Reaction = envelope.data()?;
    let Some(guild) = r.guild_id.or(envelope.guild_id.map(Snowflake)) else {
        return Ok(None);
    };
    if r.member.and_then(|m| m.user).is_some_and(|u| u.bot) {
        return Ok(None);
    }
    let mut moves = vec![(r.user_id.0, sign * activity::REACTION_GIVEN_POINTS, false)];
    if let Some(author) = r.message_author_id.filter(|a| a.0 != r.user_id.0) {
        moves.push((author.0, sign * activity::REACTION_RECEIVED_POINTS, false));
    }
    Ok(Some(Points {
        guild: guild.0,
        moves,
    }))
}

fn is_activity(event: &str) -> bool {
    matches!(
        event,
        "MESSAGE_CREATE" | "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE"
    )
}

/// Whether `envelope` may have an effect, decided before the dedupe claim.
/// Messages and reactions are most of the gateway's traffic and most move
/// no points (the members have not onboarded); they are settled here with
/// one Redis round trip, without a claim or a Postgres transaction.
///
/// # Errors
///
/// [`EventError`]: a payload of the wrong shape, Redis or Postgres away.
pub async fn worth_claiming(
    services: &Services,
    envelope: &Envelope<'_>,
) -> Result<bool, EventError> {
    if !is_activity(&envelope.event) {
        return Ok(has_effect(&envelope.event));
    }
    let Some(points) = points_of(envelope)? else {
        return Ok(false);
    };
    let community = services.db.community_for_guild(points.guild).await?;
    let earns = activity::earners(&services.state, &services.db, community, &points.users())
        .await
        .map_err(|e| match e {
            activity::EarnersError::State(e) => EventError::from(e),
            activity::EarnersError::Db(e) => EventError::from(e),
        })?;
    Ok(earns.contains(&true))
}

/// Applies an activity event once per message id. Postgres decides who is
/// onboarded (the roster only filtered).
async fn activity(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let Some(points) = points_of(envelope)? else {
        return Ok(());
    };
    let community = services.db.community_for_guild(points.guild).await?;
    let tx = services.db.tenant(community).await?;
    if tx.mark_processed(envelope.message_id).await? {
        for (user, delta, message) in points.moves {
            let user = i64::try_from(user).unwrap_or(0);
            activity::add_points(&tx, user, delta, message).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_timestamps_read_as_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00.000000+00:00"), Some(0));
        assert_eq!(
            unix_seconds("2025-01-01T00:00:00.000000+00:00"),
            Some(1_735_689_600)
        );
        assert_eq!(
            unix_seconds("2024-02-29T12:30:15+00:00"),
            Some(1_709_209_815)
        );
        assert_eq!(unix_seconds("yesterday"), None);
    }

    #[test]
    fn the_session_is_the_message_id_before_the_last_colon() {
        assert_eq!(session_of("abc123:42"), "abc123");
        assert_eq!(session_of("noseq"), "noseq");
    }
}
