//! Slash commands, components and autocomplete: how each is answered
//! (deferred or not, ephemeral or not) and what it does.
//!
//! The Sietch command set (SIETCH.md) grows here; each command names its
//! [`CommandSpec`] once and the worker's routing and deferral follow from
//! it.

use std::time::Duration;

use super::chain::{Address, ChainError};
use super::db::DbError;
use super::interaction::{Interaction, InteractionKind, Message, Reply};
use super::respond::HandlerError;
use super::services::Services;
use super::state::StateError;

/// How a command is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Its name as registered.
    pub name: &'static str,
    /// It reads the chain (or is otherwise slow): defer at once.
    pub slow: bool,
    /// Its replies are ephemeral.
    pub ephemeral: bool,
    /// Per-user cooldown.
    pub cooldown: Option<Duration>,
}

/// Every command the worker handles.
pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "check-eligibility",
    slow: true,
    ephemeral: true,
    cooldown: Some(Duration::from_secs(5)),
}];

/// What is used for interactions that match no command (components,
/// modals, unknown names): answered directly and privately.
const DEFAULT_SPEC: CommandSpec = CommandSpec {
    name: "",
    slow: false,
    ephemeral: true,
    cooldown: None,
};

/// The spec answering `interaction`.
#[must_use]
pub fn plan_for(interaction: &Interaction) -> CommandSpec {
    match interaction.kind {
        InteractionKind::Command => interaction
            .command_name()
            .and_then(|name| COMMANDS.iter().find(|c| c.name == name))
            .copied()
            .unwrap_or(DEFAULT_SPEC),
        _ => DEFAULT_SPEC,
    }
}

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
                "The chain's RPC endpoints are not answering right now. Please try again in a minute."
                    .to_owned(),
            )
        } else {
            Self::Internal(format!("chain: {err}"))
        }
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
            let spec = plan_for(interaction);
            if spec.name.is_empty() {
                return Ok(Reply::Message(Message::ephemeral(
                    "This command isn't available here yet.",
                )));
            }
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
            match spec.name {
                "check-eligibility" => check_eligibility(services, interaction).await,
                _ => unreachable!("every spec in COMMANDS has a handler"),
            }
        }
        InteractionKind::Autocomplete => Ok(Reply::Choices(Vec::new())),
        InteractionKind::Component | InteractionKind::ModalSubmit => Ok(Reply::Message(
            Message::ephemeral("This control is no longer active. Run the command again."),
        )),
        InteractionKind::Ping => Ok(Reply::Acknowledge),
    }
}

/// `/check-eligibility [wallet]`: the wallet's balance read live from the
/// chain (2 s is normal, hence the immediate deferral).
async fn check_eligibility(
    services: &Services,
    interaction: &Interaction,
) -> Result<Reply, HandlerError> {
    let guild = interaction
        .guild_id
        .ok_or_else(|| HandlerError::User("Run this command in a server.".to_owned()))?;
    let wallet: Address = interaction
        .option_str("wallet")
        .ok_or_else(|| HandlerError::User("Give a wallet address (wallet: 0x…).".to_owned()))?
        .parse()
        .map_err(|_| {
            HandlerError::User(
                "That is not a wallet address (0x followed by 40 hex digits).".to_owned(),
            )
        })?;
    let community = services.db.community_for_guild(guild).await?;
    let settings = services.db.community_settings(community).await?;
    let token: Address = settings
        .get("token")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            HandlerError::User("This community is not set up yet: an admin runs /setup.".to_owned())
        })?;
    let decimals = settings
        .get("decimals")
        .and_then(serde_json::Value::as_u64)
        .map_or(18, |d| u32::try_from(d.min(36)).unwrap_or(18));
    let chain = services.chain.as_ref().ok_or_else(|| {
        HandlerError::User("No chain RPC endpoint is configured for this bot.".to_owned())
    })?;
    let balance = chain.balance_of(token, wallet).await?;
    Ok(Reply::Message(Message::ephemeral(format!(
        "Wallet `{wallet}` holds **{}** tokens right now.",
        format_amount(balance, decimals)
    ))))
}

/// `raw` in units of `10^-decimals`, with two decimals.
#[must_use]
pub fn format_amount(raw: u128, decimals: u32) -> String {
    let scale = 10u128.checked_pow(decimals).unwrap_or(u128::MAX);
    let whole = raw / scale;
    let cents = (raw % scale).checked_mul(100).map_or(0, |r| r / scale);
    format!("{whole}.{cents:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_show_two_decimals() {
        assert_eq!(format_amount(1_234_500_000_000_000_000_000, 18), "1234.50");
        assert_eq!(format_amount(69, 0), "69.00");
        assert_eq!(format_amount(5, 2), "0.05");
    }
}
