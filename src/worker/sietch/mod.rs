//! Sietch, the community logic (SIETCH.md), on the worker runtime.
//!
//! - [`registry`]: the command set, defined once.
//! - [`members`], [`profile`], [`waitlist`], [`verify`], [`admin`]: the
//!   handlers of commands, their components and autocomplete.
//! - [`ranking`]: ranks, tiers, Naib seats and role diffs (pure).
//! - [`sync`]: the eligibility sync per community; [`roles`] applies its
//!   role changes and DMs through the REST proxy.
//! - [`activity`]: activity points, decay and badges.
//! - [`signature`]: EIP-191 `personal_sign` recovery for `/verify`.
//!
//! Every handler works inside one community: [`Ctx`] resolves it from the
//! interaction's guild and opens its RLS-confined transactions.

pub mod activity;
pub mod admin;
pub mod members;
pub mod profile;
pub mod ranking;
pub mod registry;
pub mod roles;
pub mod settings;
pub mod signature;
pub mod store;
pub mod sync;
pub mod verify;
pub mod waitlist;

use super::chain::Address;
use super::db::TenantTx;
use super::interaction::{Interaction, InteractionKind, Reply};
use super::respond::HandlerError;
use super::services::Services;
use registry::Command;
use settings::Settings;

/// One interaction's community and caller.
pub struct Ctx<'a> {
    /// The worker's clients.
    pub services: &'a Services,
    /// The interaction being answered.
    pub interaction: &'a Interaction,
    /// Its guild.
    pub guild_id: u64,
    /// The guild's community.
    pub community: i64,
    /// The caller as stored (`bigint`).
    pub user: i64,
    /// The community's settings.
    pub settings: Settings,
    /// The last sync could not read the chain.
    pub in_grace: bool,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("guild_id", &self.guild_id)
            .field("community", &self.community)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A user error: what the caller reads.
pub(crate) fn user(message: impl Into<String>) -> HandlerError {
    HandlerError::User(message.into())
}

/// `id` as stored: snowflakes fit in `bigint`.
pub(crate) fn id64(id: u64) -> Result<i64, HandlerError> {
    i64::try_from(id).map_err(|_| HandlerError::Internal(format!("id {id} exceeds i64")))
}

/// A mention that never pings (replies are sent with no allowed mentions).
#[must_use]
pub fn mention(user: i64) -> String {
    format!("<@{user}>")
}

impl<'a> Ctx<'a> {
    /// Resolves the community of the interaction's guild.
    ///
    /// # Errors
    ///
    /// User errors outside a server or for an inactive community;
    /// Postgres errors.
    pub async fn load(
        services: &'a Services,
        interaction: &'a Interaction,
    ) -> Result<Self, HandlerError> {
        let guild_id = interaction
            .guild_id
            .ok_or_else(|| user("Sietch commands work inside a server, not in DMs."))?;
        let community = services.db.community_for_guild(guild_id).await?;
        let row = services.db.community(community).await?;
        if !row.active {
            return Err(user(
                "This server is not an active Sietch community (unknown community).",
            ));
        }
        let settings = Settings::parse(&row.settings).map_err(|e| {
            user(format!(
                "This community's settings are invalid ({e}); an admin can fix them with /setup."
            ))
        })?;
        Ok(Self {
            services,
            interaction,
            guild_id,
            community,
            user: id64(interaction.user_id)?,
            settings,
            in_grace: row.in_grace,
        })
    }

    /// A transaction confined to this community.
    ///
    /// # Errors
    ///
    /// Pool or Postgres errors.
    pub async fn tx(&self) -> Result<TenantTx, HandlerError> {
        Ok(self.services.db.tenant(self.community).await?)
    }

    /// Refuses callers without ADMINISTRATOR (the registration's default
    /// permission can be changed by a server owner, so it is checked here
    /// too).
    ///
    /// # Errors
    ///
    /// The polite refusal.
    pub fn require_admin(&self) -> Result<(), HandlerError> {
        if self.interaction.is_admin() {
            Ok(())
        } else {
            Err(user(
                "You don't have permission to do that: it needs the Administrator permission.",
            ))
        }
    }

    /// The community's token, or the "not set up" reply.
    ///
    /// # Errors
    ///
    /// The user error when `/setup` has not set a token.
    pub fn token(&self) -> Result<Address, HandlerError> {
        self.settings.token.ok_or_else(|| {
            user("This community is not set up yet: an admin runs /setup to choose its token.")
        })
    }
}

/// Runs `command`'s handler for a slash command.
///
/// # Errors
///
/// [`HandlerError`]: what the user is told.
pub async fn command(
    services: &Services,
    interaction: &Interaction,
    command: Command,
) -> Result<Reply, HandlerError> {
    let ctx = Ctx::load(services, interaction).await?;
    if command.spec().admin {
        ctx.require_admin()?;
    }
    match command {
        Command::CheckEligibility => members::check_eligibility(&ctx).await,
        Command::Position => members::position(&ctx).await,
        Command::Threshold => members::threshold(&ctx).await,
        Command::Leaderboard => members::leaderboard(&ctx).await,
        Command::Naib => members::naib(&ctx).await,
        Command::Stats => members::stats(&ctx).await,
        Command::Profile => profile::profile(&ctx).await,
        Command::Badges => profile::badges(&ctx).await,
        Command::Directory => profile::directory(&ctx).await,
        Command::Alerts => profile::alerts(&ctx).await,
        Command::RegisterWaitlist => waitlist::register_waitlist(&ctx).await,
        Command::WaterShare => waitlist::water_share(&ctx).await,
        Command::Verify => verify::command(&ctx).await,
        Command::AdminBadge => admin::badge(&ctx).await,
        Command::AdminWaterShare => admin::water_share(&ctx).await,
        Command::AdminStats => admin::stats(&ctx).await,
        Command::AdminEligibility => admin::eligibility(&ctx).await,
        Command::Setup => admin::setup(&ctx).await,
    }
}

/// The command a component or modal belongs to: its `custom_id` starts
/// with the command's name and a colon.
#[must_use]
pub fn component_owner(interaction: &Interaction) -> Option<Command> {
    let id = interaction.data.custom_id.as_deref()?;
    Command::from_name(id.split(':').next()?)
}

/// Runs the handler of a button, select menu, modal or autocomplete.
///
/// # Errors
///
/// [`HandlerError`]: what the user is told.
pub async fn control(
    services: &Services,
    interaction: &Interaction,
) -> Result<Reply, HandlerError> {
    let ctx = Ctx::load(services, interaction).await?;
    if interaction.kind == InteractionKind::Autocomplete {
        return match interaction.command_name().and_then(Command::from_name) {
            Some(Command::Profile | Command::Badges) => profile::autocomplete_nym(&ctx).await,
            Some(Command::AdminBadge) => admin::autocomplete_badge(&ctx).await,
            _ => Ok(Reply::Choices(Vec::new())),
        };
    }
    let custom_id = interaction.data.custom_id.as_deref().unwrap_or("");
    match component_owner(interaction) {
        Some(Command::Profile) => profile::profile_control(&ctx, custom_id).await,
        Some(Command::Directory) => profile::directory_control(&ctx, custom_id).await,
        Some(Command::Alerts) => profile::alerts_control(&ctx, custom_id).await,
        _ => Err(user(
            "This control is no longer active. Run the command again.",
        )),
    }
}
