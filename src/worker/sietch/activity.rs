//! Activity score and badges (SIETCH.md): +1 per message, +0.5 per
//! reaction given, +0.25 per reaction received, −10 % every 6 hours, for
//! members who completed onboarding; tenure and activity badges checked
//! daily. Points are stored in hundredths so every step is an integer.
//!
//! Messages and reactions are the busiest events there are, and most come
//! from members who earn nothing; [`earners`] answers from a Redis roster
//! of onboarded members, so those cost one Redis round trip and no
//! Postgres at all.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::worker::db::{Db, DbError, TenantTx};
use crate::worker::state::{State, StateError};

/// Points (×100) of a message.
pub const MESSAGE_POINTS: i64 = 100;
/// Points (×100) of a reaction given.
pub const REACTION_GIVEN_POINTS: i64 = 50;
/// Points (×100) of a reaction received.
pub const REACTION_RECEIVED_POINTS: i64 = 25;
/// Badge for members who joined at least 90 days ago.
pub const VETERAN_DAYS: i64 = 90;
/// Badge for an activity score of at least 100.
pub const ENGAGED_POINTS: i64 = 100 * 100;

/// How long the onboarded roster is trusted before it is loaded again: the
/// longest a member onboarded behind Redis' back (a restore, a failed
/// roster update) waits before their activity counts.
pub const ROSTER_TTL: Duration = Duration::from_secs(600);

fn roster(community: i64) -> String {
    format!("onboarded:{community}")
}

/// Why [`earners`] could not answer.
#[derive(Debug, thiserror::Error)]
pub enum EarnersError {
    /// Redis is away.
    #[error(transparent)]
    State(#[from] StateError),
    /// Postgres failed while loading the roster.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Which of `users` earn activity points in `community` (completed
/// onboarding), loading the roster from Postgres when Redis lacks it.
///
/// # Errors
///
/// [`EarnersError`] when Redis, or Postgres during a load, fails.
pub async fn earners(
    state: &State,
    db: &Db,
    community: i64,
    users: &[u64],
) -> Result<Vec<bool>, EarnersError> {
    let name = roster(community);
    if let Some(found) = state.roster_contains(&name, users).await? {
        return Ok(found);
    }
    let tx = db.tenant(community).await?;
    let rows = tx
        .query(
            "SELECT user_id FROM profiles WHERE community_id = $1 AND onboarded_at IS NOT NULL",
            &[(&community, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let onboarded: Vec<u64> = rows
        .iter()
        .filter_map(|r| u64::try_from(r.get::<_, i64>(0)).ok())
        .collect();
    state.roster_load(&name, &onboarded, ROSTER_TTL).await?;
    Ok(users.iter().map(|u| onboarded.contains(u)).collect())
}

/// Records in the roster that `user` completed onboarding in `community`
/// (after that commit). A failure is logged, not returned: the roster
/// heals when it expires, and the onboarding itself has happened.
pub async fn onboarded(state: &State, community: i64, user: u64) {
    if let Err(e) = state.roster_add(&roster(community), user, ROSTER_TTL).await {
        tracing::warn!(
            community,
            "activity roster not updated (points count again within {} s): {e}",
            ROSTER_TTL.as_secs()
        );
    }
}

/// Adds `points` (may be negative; the score never drops below 0) to an
/// onboarded member, counting a message if `message`. `false` when the
/// member has not completed onboarding (nothing recorded).
///
/// # Errors
///
/// Postgres errors.
pub async fn add_points(
    tx: &TenantTx,
    user: i64,
    points: i64,
    message: bool,
) -> Result<bool, DbError> {
    let c = tx.community_id();
    let onboarded = !tx
        .query(
            "SELECT 1 FROM profiles WHERE community_id = $1 AND user_id = $2 \
             AND onboarded_at IS NOT NULL",
            &[(&c, Type::INT8), (&user, Type::INT8)],
        )
        .await?
        .is_empty();
    if !onboarded {
        return Ok(false);
    }
    let messages = i64::from(message);
    tx.execute(
        "INSERT INTO activity (community_id, user_id, messages, points, last_active_at) \
         VALUES ($1, $2, $3, greatest($4, 0), now()) \
         ON CONFLICT (community_id, user_id) DO UPDATE SET \
           messages = activity.messages + $3, points = greatest(activity.points + $4, 0), \
           last_active_at = now()",
        &[
            (&c, Type::INT8),
            (&user, Type::INT8),
            (&messages, Type::INT8),
            (&points, Type::INT8),
        ],
    )
    .await?;
    Ok(true)
}

/// The 6-hourly decay of every community's scores; returns rows changed.
///
/// # Errors
///
/// Postgres errors.
pub async fn decay_all(db: &Db) -> Result<u64, DbError> {
    let mut changed = 0;
    for community in db.active_communities().await? {
        let tx = db.tenant(community).await?;
        changed += tx
            .execute(
                "UPDATE activity SET points = points * 9 / 10 WHERE community_id = $1 AND points > 0",
                &[(&community, Type::INT8)],
            )
            .await?;
        tx.commit().await?;
    }
    Ok(changed)
}

/// The daily badge check of every community; returns badges awarded.
///
/// # Errors
///
/// Postgres errors.
pub async fn award_badges_all(db: &Db) -> Result<u64, DbError> {
    let mut awarded = 0;
    for community in db.active_communities().await? {
        let tx = db.tenant(community).await?;
        awarded += tx
            .execute(
                "INSERT INTO badges (community_id, user_id, badge) \
                 SELECT community_id, user_id, 'veteran' FROM profiles \
                 WHERE community_id = $1 AND left_at IS NULL \
                 AND joined_at < now() - make_interval(days => $2::int) \
                 ON CONFLICT DO NOTHING",
                &[
                    (&community, Type::INT8),
                    (&i32::try_from(VETERAN_DAYS).unwrap_or(90), Type::INT4),
                ],
            )
            .await?;
        awarded += tx
            .execute(
                "INSERT INTO badges (community_id, user_id, badge) \
                 SELECT community_id, user_id, 'engaged' FROM activity \
                 WHERE community_id = $1 AND points >= $2 ON CONFLICT DO NOTHING",
                &[(&community, Type::INT8), (&ENGAGED_POINTS, Type::INT8)],
            )
            .await?;
        tx.commit().await?;
    }
    Ok(awarded)
}
