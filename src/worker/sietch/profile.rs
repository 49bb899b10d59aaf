//! Member-facing views with components: `/profile` (buttons and modals),
//! `/badges`, `/directory` (paging buttons and select menus, browsing
//! state in Redis for 5 minutes) and `/alerts`; and the nym autocomplete.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::ranking::Tier;
use super::store;
use super::{Ctx, mention, user};
use crate::worker::db::DbError;
use crate::worker::interaction::{Choice, Message, Reply};
use crate::worker::respond::HandlerError;

/// How long a directory view keeps its page and filters.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(300);
const PAGE: i64 = 10;

/// The alert kinds a member can turn off; all are on by default.
pub const ALERT_KINDS: [(&str, &str); 4] = [
    ("position", "Promotions and demotions"),
    ("at_risk", "At-risk warnings (ranks 63–69)"),
    ("naib", "Naib seat changes"),
    ("waitlist", "Waitlist: you became eligible"),
];

fn button(custom_id: &str, label: &str, disabled: bool) -> Value {
    json!({ "type": 2, "style": 2, "custom_id": custom_id, "label": label, "disabled": disabled })
}

fn row(components: Vec<Value>) -> Value {
    json!({ "type": 1, "components": components })
}

fn text_input(custom_id: &str, label: &str, max: u32, paragraph: bool) -> Value {
    row(vec![json!({
        "type": 4, "custom_id": custom_id, "label": label,
        "style": if paragraph { 2 } else { 1 }, "min_length": 1, "max_length": max, "required": true,
    })])
}

/// The value of text input `custom_id` in a submitted modal.
fn modal_value<'a>(ctx: &'a Ctx<'_>, custom_id: &str) -> Option<&'a str> {
    ctx.interaction.data.components.iter().find_map(|row| {
        row.get("components")?
            .as_array()?
            .iter()
            .find(|c| c.get("custom_id").and_then(Value::as_str) == Some(custom_id))?
            .get("value")?
            .as_str()
    })
}

/// Whose profile a `nym` option designates (the caller without one).
async fn subject(ctx: &Ctx<'_>) -> Result<(i64, bool), HandlerError> {
    match ctx.interaction.option_str("nym") {
        None => Ok((ctx.user, true)),
        Some(nym) => {
            let tx = ctx.tx().await?;
            let found = store::profile_by_nym(&tx, nym).await?;
            tx.commit().await?;
            let p = found.ok_or_else(|| user(format!("No member goes by the nym “{nym}”.")))?;
            Ok((p.user_id, p.user_id == ctx.user))
        }
    }
}

/// `/profile view [nym]|edit`.
pub async fn profile(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    if ctx.interaction.subcommands().first().copied() == Some("edit") {
        let mut m = Message::ephemeral("Edit your profile:");
        m.components = vec![row(vec![
            button("profile:edit-nym", "Edit nym", false),
            button("profile:edit-bio", "Edit bio", false),
        ])];
        return Ok(Reply::Message(m));
    }
    let (who, own) = subject(ctx).await?;
    let tx = ctx.tx().await?;
    let profile = store::profile_of(&tx, who).await?;
    let badges = store::badges_of(&tx, who).await?;
    let state = store::member_state(&tx, who).await?;
    let wallets = store::wallets_of(&tx, who).await?;
    tx.commit().await?;
    let Some(profile) = profile.filter(|p| !p.left || own) else {
        return Err(user("That member has no profile here."));
    };
    let mut out = format!(
        "**{}**",
        profile.nym.clone().unwrap_or_else(|| mention(who))
    );
    if let Some(bio) = &profile.bio {
        let _ = write!(out, "\n{bio}");
    }
    let _ = write!(
        out,
        "\nTier: {}\nBadges: {}\nVerified: {}",
        state.tier.as_deref().unwrap_or("none"),
        badges.len(),
        if wallets.is_empty() { "no" } else { "yes" }
    );
    if profile.former_naib {
        out.push_str("\nFormer Naib");
    }
    if own {
        let mut m = Message::ephemeral(out);
        m.components = vec![row(vec![
            button("profile:edit-nym", "Edit nym", false),
            button("profile:edit-bio", "Edit bio", false),
        ])];
        Ok(Reply::Message(m))
    } else {
        Ok(Reply::Message(Message::public(out)))
    }
}

/// A nym: 2–32 characters of letters, digits, spaces, `-`, `_`, `.`.
fn valid_nym(nym: &str) -> bool {
    let n = nym.chars().count();
    (2..=32).contains(&n)
        && nym
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        && nym.trim() == nym
}

/// Buttons and modals of `/profile`.
pub async fn profile_control(ctx: &Ctx<'_>, custom_id: &str) -> Result<Reply, HandlerError> {
    match custom_id {
        "profile:edit-nym" => Ok(Reply::Modal {
            custom_id: "profile:nym".to_owned(),
            title: "Your nym".to_owned(),
            components: vec![text_input("nym", "Nym", 32, false)],
        }),
        "profile:edit-bio" => Ok(Reply::Modal {
            custom_id: "profile:bio".to_owned(),
            title: "Your bio".to_owned(),
            components: vec![text_input("bio", "Bio", 190, true)],
        }),
        "profile:nym" => {
            let nym = modal_value(ctx, "nym").unwrap_or("").trim().to_owned();
            if !valid_nym(&nym) {
                return Err(user(
                    "A nym has 2 to 32 letters, digits, spaces, dots, dashes or underscores.",
                ));
            }
            let tx = ctx.tx().await?;
            store::ensure_profile(&tx, ctx.user).await?;
            let updated = tx
                .execute(
                    "UPDATE profiles SET nym = $3, updated_at = now() \
                     WHERE community_id = $1 AND user_id = $2",
                    &[
                        (&ctx.community, Type::INT8),
                        (&ctx.user, Type::INT8),
                        (&nym, Type::TEXT),
                    ],
                )
                .await;
            match updated {
                Err(DbError::Postgres(e))
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    let _ = tx.rollback().await;
                    Err(user(format!("The nym “{nym}” is taken.")))
                }
                Err(e) => Err(e.into()),
                Ok(_) => {
                    tx.commit().await?;
                    Ok(Reply::Message(Message::ephemeral(format!(
                        "Your nym is now **{nym}**."
                    ))))
                }
            }
        }
        "profile:bio" => {
            let bio = modal_value(ctx, "bio").unwrap_or("").trim().to_owned();
            if bio.is_empty() || bio.chars().count() > 190 {
                return Err(user("A bio has 1 to 190 characters."));
            }
            let tx = ctx.tx().await?;
            store::ensure_profile(&tx, ctx.user).await?;
            tx.execute(
                "UPDATE profiles SET bio = $3, updated_at = now() \
                 WHERE community_id = $1 AND user_id = $2",
                &[
                    (&ctx.community, Type::INT8),
                    (&ctx.user, Type::INT8),
                    (&bio, Type::TEXT),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Reply::Message(Message::ephemeral("Your bio is updated.")))
        }
        _ => Err(user(
            "This control is no longer active. Run /profile again.",
        )),
    }
}

/// `/badges [nym]`.
pub async fn badges(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let (who, own) = subject(ctx).await?;
    let tx = ctx.tx().await?;
    let badges = store::badges_of(&tx, who).await?;
    tx.commit().await?;
    let whose = if own {
        "Your badges".to_owned()
    } else {
        format!("Badges of {}", mention(who))
    };
    let out = if badges.is_empty() {
        format!("{whose}: none yet.")
    } else {
        format!("{whose}: {}", badges.join(", "))
    };
    Ok(Reply::Message(if own {
        Message::ephemeral(out)
    } else {
        Message::public(out)
    }))
}

/// Autocomplete of a `nym` option: profiles whose nym starts with (then
/// contains) what was typed, from Postgres.
pub async fn autocomplete_nym(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let typed = ctx.interaction.focused().map_or("", |(_, v)| v);
    let pattern = format!(
        "%{}%",
        typed
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let prefix = typed.to_lowercase();
    let tx = ctx.tx().await?;
    let rows = tx
        .query(
            "SELECT nym FROM profiles WHERE community_id = $1 AND nym IS NOT NULL \
             AND left_at IS NULL AND nym ILIKE $2 \
             ORDER BY NOT starts_with(lower(nym), $3), lower(nym) LIMIT 25",
            &[
                (&ctx.community, Type::INT8),
                (&pattern, Type::TEXT),
                (&prefix, Type::TEXT),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(Reply::Choices(
        rows.iter()
            .map(|r| {
                let nym: String = r.get(0);
                Choice {
                    name: nym.clone(),
                    value: Value::String(nym),
                }
            })
            .collect(),
    ))
}

/// A directory view's state, kept in Redis between clicks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DirectoryView {
    page: i64,
    tier: Option<String>,
    sort: String,
}

fn directory_key(ctx: &Ctx<'_>) -> String {
    format!("dir:{}:{}", ctx.community, ctx.user)
}

/// `/directory`: the member browser.
pub async fn directory(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let view = DirectoryView {
        page: 0,
        tier: None,
        sort: "rank".to_owned(),
    };
    render_directory(ctx, &view).await.map(Reply::Message)
}

async fn render_directory(ctx: &Ctx<'_>, view: &DirectoryView) -> Result<Message, HandlerError> {
    ctx.services
        .state
        .session_put(
            &directory_key(ctx),
            &serde_json::to_string(view).unwrap_or_default(),
            DIRECTORY_TTL,
        )
        .await?;
    let order = match view.sort.as_str() {
        "nym" => "lower(p.nym) NULLS LAST, p.user_id",
        "activity" => "coalesce(a.points, 0) DESC, p.user_id",
        _ => "m.best_rank NULLS LAST, p.user_id",
    };
    let tx = ctx.tx().await?;
    let rows = tx
        .query(
            &format!(
                "SELECT p.user_id, p.nym, m.tier, m.best_rank FROM profiles p \
                 LEFT JOIN member_roles m ON m.community_id = p.community_id AND m.user_id = p.user_id \
                 LEFT JOIN activity a ON a.community_id = p.community_id AND a.user_id = p.user_id \
                 WHERE p.community_id = $1 AND p.left_at IS NULL \
                 AND ($2::text IS NULL OR m.tier = $2) \
                 ORDER BY {order} LIMIT $3 OFFSET $4"
            ),
            &[
                (&ctx.community, Type::INT8),
                (&view.tier, Type::TEXT),
                (&(PAGE + 1), Type::INT8),
                (&(view.page * PAGE), Type::INT8),
            ],
        )
        .await?;
    tx.commit().await?;
    let more = rows.len() > usize::try_from(PAGE).unwrap_or(10);
    let mut out = format!(
        "**Member directory** — page {}, {}, by {}",
        view.page + 1,
        view.tier.as_deref().unwrap_or("all tiers"),
        view.sort
    );
    for r in rows.iter().take(usize::try_from(PAGE).unwrap_or(10)) {
        let name = r
            .get::<_, Option<String>>(1)
            .unwrap_or_else(|| mention(r.get(0)));
        let tier = r
            .get::<_, Option<String>>(2)
            .unwrap_or_else(|| "—".to_owned());
        let _ = write!(out, "\n• {name} ({tier})");
    }
    if rows.is_empty() {
        out.push_str("\nNo members match.");
    }
    let mut tiers =
        vec![json!({ "label": "All tiers", "value": "all", "default": view.tier.is_none() })];
    for t in Tier::ALL {
        tiers.push(json!({ "label": t.name(), "value": t.name(), "default": view.tier.as_deref() == Some(t.name()) }));
    }
    let sorts: Vec<Value> = ["rank", "nym", "activity"]
        .iter()
        .map(|s| json!({ "label": format!("Sort by {s}"), "value": s, "default": view.sort == *s }))
        .collect();
    let mut m = Message::ephemeral(out);
    m.components = vec![
        row(vec![
            button("directory:prev", "Previous", view.page == 0),
            button("directory:next", "Next", !more),
            button("directory:refresh", "Refresh", false),
        ]),
        row(vec![
            json!({ "type": 3, "custom_id": "directory:tier", "options": tiers }),
        ]),
        row(vec![
            json!({ "type": 3, "custom_id": "directory:sort", "options": sorts }),
        ]),
    ];
    Ok(m)
}

/// Buttons and menus of `/directory`.
pub async fn directory_control(ctx: &Ctx<'_>, custom_id: &str) -> Result<Reply, HandlerError> {
    let stored = ctx.services.state.session_get(&directory_key(ctx)).await?;
    let Some(mut view) = stored.and_then(|s| serde_json::from_str::<DirectoryView>(&s).ok()) else {
        return Err(user(
            "This directory view has expired (after 5 minutes). Run /directory again.",
        ));
    };
    let picked = ctx.interaction.data.values.first().map(String::as_str);
    match custom_id {
        "directory:prev" => view.page = (view.page - 1).max(0),
        "directory:next" => view.page += 1,
        "directory:refresh" => {}
        "directory:tier" => {
            view.tier = picked
                .filter(|v| *v != "all")
                .and_then(Tier::from_name)
                .map(|t| t.name().to_owned());
            view.page = 0;
        }
        "directory:sort" => {
            view.sort = match picked {
                Some(s @ ("nym" | "activity")) => s.to_owned(),
                _ => "rank".to_owned(),
            };
            view.page = 0;
        }
        _ => {
            return Err(user(
                "This control is no longer active. Run /directory again.",
            ));
        }
    }
    render_directory(ctx, &view).await.map(Reply::Update)
}

async fn render_alerts(ctx: &Ctx<'_>) -> Result<Message, HandlerError> {
    let tx = ctx.tx().await?;
    let settings = store::notification_settings(&tx, ctx.user).await?;
    tx.commit().await?;
    let mut out = "**Your alerts** (direct messages from the bot)".to_owned();
    for (kind, label) in ALERT_KINDS {
        let _ = write!(
            out,
            "\n{} {label}",
            if alert_enabled(&settings, kind) {
                "🔔"
            } else {
                "🔕"
            }
        );
    }
    let options: Vec<Value> = ALERT_KINDS
        .iter()
        .map(|(kind, label)| {
            json!({ "label": label, "value": kind, "default": alert_enabled(&settings, kind) })
        })
        .collect();
    let mut m = Message::ephemeral(out);
    m.components = vec![
        row(vec![json!({
            "type": 3, "custom_id": "alerts:kinds", "min_values": 0,
            "max_values": ALERT_KINDS.len(), "options": options,
            "placeholder": "Alerts you receive",
        })]),
        row(vec![
            button("alerts:all-on", "All on", false),
            button("alerts:all-off", "All off", false),
        ]),
    ];
    Ok(m)
}

/// `/alerts`.
pub async fn alerts(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    render_alerts(ctx).await.map(Reply::Message)
}

/// The menu and buttons of `/alerts`.
pub async fn alerts_control(ctx: &Ctx<'_>, custom_id: &str) -> Result<Reply, HandlerError> {
    let chosen: Vec<&str> = match custom_id {
        "alerts:all-on" => ALERT_KINDS.iter().map(|(k, _)| *k).collect(),
        "alerts:all-off" => Vec::new(),
        "alerts:kinds" => ctx
            .interaction
            .data
            .values
            .iter()
            .map(String::as_str)
            .collect(),
        _ => return Err(user("This control is no longer active. Run /alerts again.")),
    };
    let mut settings = serde_json::Map::new();
    for (kind, _) in ALERT_KINDS {
        settings.insert(kind.to_owned(), Value::Bool(chosen.contains(&kind)));
    }
    let text = Value::Object(settings).to_string();
    let tx = ctx.tx().await?;
    tx.execute(
        "INSERT INTO notification_settings (community_id, user_id, settings) \
         VALUES ($1, $2, $3::jsonb) ON CONFLICT (community_id, user_id) \
         DO UPDATE SET settings = $3::jsonb, updated_at = now()",
        &[
            (&ctx.community, Type::INT8),
            (&ctx.user, Type::INT8),
            (&text, Type::TEXT),
        ],
    )
    .await?;
    tx.commit().await?;
    render_alerts(ctx).await.map(Reply::Update)
}

/// Whether `settings` (a member's notification settings) allow an alert
/// of `kind`.
#[must_use]
pub fn alert_enabled(settings: &Value, kind: &str) -> bool {
    settings.get(kind).and_then(Value::as_bool).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nyms_are_short_plain_names() {
        assert!(valid_nym("Paul Atreides"));
        assert!(valid_nym("usul_69"));
        assert!(!valid_nym("x"));
        assert!(!valid_nym(" padded"));
        assert!(!valid_nym("<@123>"));
        assert!(!valid_nym(&"a".repeat(33)));
    }

    #[test]
    fn alerts_default_to_on() {
        assert!(alert_enabled(&json!({}), "naib"));
        assert!(!alert_enabled(&json!({ "naib": false }), "naib"));
    }
}
