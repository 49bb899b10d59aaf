//! Gateway event handlers. Each event with an effect names it here; every
//! other event is acked as soon as it has been decoded.
//!
//! An effect runs in one tenant transaction that also records the message
//! id, so it happens once even if the message is delivered again.

use serde::Deserialize;

use super::db::{self, DbError};
use super::envelope::{Envelope, Poison, Snowflake};
use super::services::Services;

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

/// Whether `event` has a handler with an effect.
#[must_use]
pub fn has_effect(event: &str) -> bool {
    matches!(event, "GUILD_MEMBER_ADD")
}

#[derive(Deserialize)]
struct MemberAdd {
    guild_id: Snowflake,
    user: UserRef,
}

#[derive(Deserialize)]
struct UserRef {
    id: Snowflake,
}

/// Runs the effect of `envelope`'s event.
///
/// # Errors
///
/// [`EventError`], telling the consumer whether to retry.
pub async fn handle(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    match &*envelope.event {
        "GUILD_MEMBER_ADD" => member_add(services, envelope).await,
        _ => Ok(()),
    }
}

async fn member_add(services: &Services, envelope: &Envelope<'_>) -> Result<(), EventError> {
    let add: MemberAdd = envelope.data()?;
    let community = services.db.community_for_guild(add.guild_id.0).await?;
    let tx = services.db.tenant(community).await?;
    let first = db::record_member_join(&tx, add.user.id.0, envelope.message_id).await?;
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
        services.metrics.duplicates.inc();
    }
    Ok(())
}
