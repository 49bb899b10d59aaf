//! From an interaction to its handler: which Sietch command (or control)
//! it belongs to, how it is answered (deferred or not, ephemeral or not),
//! the per-command cooldown, then the handler itself.
//!
//! The command set and each command's answering rules live in
//! [`sietch::registry`](super::sietch::registry); nothing here names a
//! command.

use super::chain::ChainError;
use super::db::DbError;
use super::interaction::{Interaction, InteractionKind, Message, Reply};
use super::respond::{HandlerError, Plan};
use super::services::Services;
use super::sietch::{
    self,
    registry::{Command, Visibility},
};
use super::state::StateError;

impl From<DbError> for HandlerError {
    fn from(err: DbError) -> Self {
        Self::Internal(format!("Postgres: {err}"))
    }
}

impl From<StateError> for HandlerError {
    fn from(err: StateError) -> Self {
        Self::Internal(format!("Redis: {err}"))
    }
}

impl From<ChainError> for HandlerError {
    fn from(err: ChainError) -> Self {
        if err.is_unavailable() {
            Self::User(
                "The chain is unavailable right now (its RPC endpoints are not answering). Please try again in a minute."
                    .to_owned(),
            )
        } else {
            Self::Internal(format!("chain: {err}"))
        }
    }
}

/// The command `interaction` belongs to: by name for commands and
/// autocomplete, by `custom_id` prefix for components and modals.
#[must_use]
pub fn command_of(interaction: &Interaction) -> Option<Command> {
    match interaction.kind {
        InteractionKind::Command | InteractionKind::Autocomplete => {
            interaction.command_name().and_then(Command::from_name)
        }
        InteractionKind::Component | InteractionKind::ModalSubmit => {
            sietch::component_owner(interaction)
        }
        InteractionKind::Ping => None,
    }
}

/// How `interaction` is answered: slow commands defer at once, with the
/// ephemeral flag their reply will carry (it cannot change after a
/// deferral).
#[must_use]
pub fn plan_for(interaction: &Interaction) -> Plan {
    let Some(command) = command_of(interaction) else {
        return Plan {
            defer_now: false,
            ephemeral: true,
        };
    };
    let spec = command.spec();
    let ephemeral = match spec.visibility {
        Visibility::Ephemeral => true,
        Visibility::Public => false,
        Visibility::OwnEphemeral => interaction.option_str("nym").is_none(),
    };
    Plan {
        defer_now: spec.slow && interaction.kind == InteractionKind::Command,
        ephemeral: ephemeral || interaction.kind != InteractionKind::Command,
    }
}

/// Runs the handler of `interaction`.
///
/// # Errors
///
/// [`HandlerError`]: what the user is told.
pub async fn run(
    services: &Services,
    interaction: &Interaction,
    message_id: &str,
) -> Result<Reply, HandlerError> {
    match interaction.kind {
        InteractionKind::Command => {
            let Some(command) = command_of(interaction) else {
                return Ok(Reply::Message(Message::ephemeral(
                    "This command isn't available here (it is not one of Sietch's).",
                )));
            };
            let spec = command.spec();
            if let Some(period) = spec.cooldown
                && let Some(left) = services
                    .state
                    .cooldown(
                        interaction.guild_id.unwrap_or(0),
                        spec.name,
                        interaction.user_id,
                        period,
                    )
                    .await?
            {
                return Err(HandlerError::User(format!(
                    "/{} is on cooldown for you: try again in {} s.",
                    spec.name,
                    left.as_millis().div_ceil(1000).max(1)
                )));
            }
            tracing::debug!(message_id, command = spec.name, "running command");
            sietch::command(services, interaction, command).await
        }
        InteractionKind::Autocomplete
        | InteractionKind::Component
        | InteractionKind::ModalSubmit => sietch::control(services, interaction).await,
        InteractionKind::Ping => Ok(Reply::Acknowledge),
    }
}
