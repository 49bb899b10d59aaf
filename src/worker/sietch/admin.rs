//! Admin commands: `/admin-badge`, `/admin-water-share`, `/admin-stats`,
//! `/admin-eligibility`, `/setup`. Each is registered with default member
//! permission Administrator and [`Ctx::require_admin`] checks it again
//! before any of these runs (see [`super::command`]).

use std::fmt::Write as _;

use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::ranking::{Thresholds, Tier};
use super::registry::TIER_ROLE_OPTIONS;
use super::settings::Settings;
use super::sync::{self, SyncOutcome};
use super::waitlist::WATER_SHARER;
use super::{Ctx, id64, mention, roles, store, user};
use crate::worker::interaction::{Choice, Message, Reply};
use crate::worker::respond::HandlerError;

/// Badges every community knows; admins may award others by name.
pub const BADGES: [&str; 6] = [
    "og",
    "veteran",
    "engaged",
    WATER_SHARER,
    "contributor",
    "naib-emeritus",
];

fn option_i64(ctx: &Ctx<'_>, name: &str) -> Option<i64> {
    ctx.interaction
        .leaf_options()
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.value.as_ref())
        .and_then(Value::as_i64)
}

fn member_option(ctx: &Ctx<'_>) -> Result<i64, HandlerError> {
    ctx.interaction
        .option_str("member")
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or_else(|| user("Choose a member (member: @someone)."))
        .and_then(id64)
}

fn valid_badge(b: &str) -> bool {
    (2..=32).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// `/admin-badge award|revoke member badge`.
pub async fn badge(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let member = member_option(ctx)?;
    let badge = ctx
        .interaction
        .option_str("badge")
        .map(|b| b.trim().to_lowercase())
        .filter(|b| valid_badge(b))
        .ok_or_else(|| user("A badge name has 2–32 lowercase letters, digits or dashes."))?;
    let award = ctx.interaction.subcommands().first().copied() != Some("revoke");
    let tx = ctx.tx().await?;
    let changed = if award {
        store::ensure_profile(&tx, member).await?;
        tx.execute(
            "INSERT INTO badges (community_id, user_id, badge, awarded_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[
                (&ctx.community, Type::INT8),
                (&member, Type::INT8),
                (&badge, Type::TEXT),
                (&ctx.user, Type::INT8),
            ],
        )
        .await?
    } else {
        tx.execute(
            "DELETE FROM badges WHERE community_id = $1 AND user_id = $2 AND badge = $3",
            &[
                (&ctx.community, Type::INT8),
                (&member, Type::INT8),
                (&badge, Type::TEXT),
            ],
        )
        .await?
    };
    if changed > 0 {
        store::audit(
            &tx,
            if award { "badge_award" } else { "badge_revoke" },
            Some(ctx.user),
            Some(member),
            &json!({ "badge": badge }),
        )
        .await?;
    }
    tx.commit().await?;
    if changed == 0 {
        return Err(user(if award {
            format!("{} already holds “{badge}”.", mention(member))
        } else {
            format!("{} does not hold “{badge}”.", mention(member))
        }));
    }
    let text = if award {
        format!("You were awarded the **{badge}** badge in the Sietch.")
    } else {
        format!("Your **{badge}** badge in the Sietch was revoked.")
    };
    let dm = match u64::try_from(member) {
        Ok(m) => roles::direct_message(ctx.services.responder.rest(), m, &text)
            .await
            .unwrap_or(false),
        Err(_) => false,
    };
    Ok(Reply::Message(Message::ephemeral(format!(
        "{} “{badge}” {} {}{}",
        if award { "Awarded" } else { "Revoked" },
        if award { "to" } else { "from" },
        mention(member),
        if dm {
            " (they got a DM)."
        } else {
            " (their DMs are closed)."
        }
    ))))
}

/// Autocomplete of `/admin-badge badge`: the catalogue and every badge
/// already awarded here.
pub async fn autocomplete_badge(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let typed = ctx
        .interaction
        .focused()
        .map_or(String::new(), |(_, v)| v.to_lowercase());
    let tx = ctx.tx().await?;
    let rows = tx
        .query(
            "SELECT DISTINCT badge FROM badges WHERE community_id = $1 ORDER BY badge LIMIT 100",
            &[(&ctx.community, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let mut names: Vec<String> = BADGES.iter().map(|b| (*b).to_owned()).collect();
    names.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    names.sort();
    names.dedup();
    names.sort_by_key(|n| !n.starts_with(&typed));
    Ok(Reply::Choices(
        names
            .into_iter()
            .filter(|n| n.contains(&typed))
            .take(25)
            .map(|n| Choice {
                name: n.clone(),
                value: Value::String(n),
            })
            .collect(),
    ))
}

/// `/admin-water-share list|revoke member|lineage member`.
pub async fn water_share(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let tx = ctx.tx().await?;
    let out = match ctx.interaction.subcommands().first().copied() {
        Some("revoke") => {
            let member = member_option(ctx)?;
            // The grant and, by ON DELETE CASCADE, every grant derived
            // from it; their badges go with them.
            let grantees = tx
                .query(
                    "WITH RECURSIVE tree AS ( \
                       SELECT id, grantee_id FROM water_shares WHERE community_id = $1 AND grantee_id = $2 \
                       UNION SELECT w.id, w.grantee_id FROM water_shares w JOIN tree t ON w.parent_id = t.id \
                       WHERE w.community_id = $1) SELECT DISTINCT grantee_id FROM tree",
                    &[(&ctx.community, Type::INT8), (&member, Type::INT8)],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>();
            if grantees.is_empty() {
                tx.rollback().await?;
                return Err(user(format!(
                    "{} holds no water-share grant.",
                    mention(member)
                )));
            }
            tx.execute(
                "DELETE FROM water_shares WHERE community_id = $1 AND grantee_id = $2",
                &[(&ctx.community, Type::INT8), (&member, Type::INT8)],
            )
            .await?;
            tx.execute(
                "DELETE FROM badges WHERE community_id = $1 AND badge = $2 AND user_id = ANY($3)",
                &[
                    (&ctx.community, Type::INT8),
                    (&WATER_SHARER, Type::TEXT),
                    (&grantees, Type::INT8_ARRAY),
                ],
            )
            .await?;
            store::audit(
                &tx,
                "water_share_revoke",
                Some(ctx.user),
                Some(member),
                &json!({ "revoked": grantees }),
            )
            .await?;
            format!(
                "Revoked {} grant(s): {}.",
                grantees.len(),
                grantees
                    .iter()
                    .map(|g| mention(*g))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Some("lineage") => {
            let member = member_option(ctx)?;
            let rows = tx
                .query(
                    "WITH RECURSIVE up AS ( \
                       SELECT id, granter_id, grantee_id, parent_id, 0 AS depth FROM water_shares \
                       WHERE community_id = $1 AND grantee_id = $2 \
                       UNION ALL SELECT w.id, w.granter_id, w.grantee_id, w.parent_id, up.depth + 1 \
                       FROM water_shares w JOIN up ON w.id = up.parent_id WHERE w.community_id = $1 \
                       AND up.depth < 100) SELECT granter_id, grantee_id FROM up ORDER BY depth DESC",
                    &[(&ctx.community, Type::INT8), (&member, Type::INT8)],
                )
                .await?;
            if rows.is_empty() {
                format!("{} received no water share.", mention(member))
            } else {
                let mut out = "**Lineage**".to_owned();
                for r in &rows {
                    let _ = write!(out, "\n{} → {}", mention(r.get(0)), mention(r.get(1)));
                }
                out
            }
        }
        _ => {
            let rows = tx
                .query(
                    "SELECT granter_id, grantee_id FROM water_shares WHERE community_id = $1 \
                     ORDER BY id LIMIT 50",
                    &[(&ctx.community, Type::INT8)],
                )
                .await?;
            if rows.is_empty() {
                "No water-share grants yet.".to_owned()
            } else {
                let mut out = "**Water-share grants**".to_owned();
                for r in &rows {
                    let _ = write!(out, "\n{} → {}", mention(r.get(0)), mention(r.get(1)));
                }
                out
            }
        }
    };
    tx.commit().await?;
    Ok(Reply::Message(Message::ephemeral(out)))
}

/// `/admin-stats`.
pub async fn stats(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let c = ctx.community;
    let tx = ctx.tx().await?;
    let one = |rows: Vec<tokio_postgres::Row>| rows.first().map_or(0i64, |r| r.get(0));
    let members = one(tx
        .query(
            "SELECT count(*) FROM profiles WHERE community_id = $1 AND left_at IS NULL",
            &[(&c, Type::INT8)],
        )
        .await?);
    let verified = one(tx
        .query(
            "SELECT count(DISTINCT user_id) FROM wallets WHERE community_id = $1",
            &[(&c, Type::INT8)],
        )
        .await?);
    let holdings: String = tx
        .query(
            "SELECT coalesce(sum(e.balance), 0)::text FROM eligibility e JOIN wallets w \
             ON w.community_id = e.community_id AND w.address = e.address WHERE e.community_id = $1",
            &[(&c, Type::INT8)],
        )
        .await?
        .first()
        .map_or_else(|| "0".to_owned(), |r| r.get(0));
    let weekly = one(tx
        .query(
            "SELECT count(*) FROM activity WHERE community_id = $1 \
             AND last_active_at > now() - interval '7 days'",
            &[(&c, Type::INT8)],
        )
        .await?);
    let promotions = one(tx
        .query(
            "SELECT count(*) FROM audit_log WHERE community_id = $1 AND action = 'promotion' \
             AND created_at > now() - interval '7 days'",
            &[(&c, Type::INT8)],
        )
        .await?);
    let tiers = tx
        .query(
            "SELECT tier, count(*) FROM member_roles WHERE community_id = $1 AND tier IS NOT NULL \
             GROUP BY tier",
            &[(&c, Type::INT8)],
        )
        .await?;
    tx.commit().await?;
    let holdings =
        super::ranking::format_amount(holdings.parse().unwrap_or(0), ctx.settings.decimals);
    let mut out = format!(
        "**Community statistics**\nMembers: {members}\nVerified: {verified}\n\
         Holdings of verified members: {holdings}\nActive this week: {weekly}\n\
         Promotions this week: {promotions}\nTier distribution:"
    );
    for t in Tier::ALL {
        let n = tiers
            .iter()
            .find(|r| r.get::<_, &str>(0) == t.name())
            .map_or(0, |r| r.get::<_, i64>(1));
        let _ = write!(out, "\n  {}: {n}", t.name());
    }
    if ctx.in_grace {
        out.push_str("\n_In grace: the last sync could not read the chain._");
    }
    Ok(Reply::Message(Message::ephemeral(out)))
}

/// `/admin-eligibility override add|remove|list, sync`.
pub async fn eligibility(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let path = ctx.interaction.subcommands();
    match path.as_slice() {
        ["sync"] => sync_now(ctx).await,
        ["override", "list"] => {
            let tx = ctx.tx().await?;
            let rows = tx
                .query(
                    "SELECT address, kind, reason, extract(epoch FROM expires_at)::bigint \
                     FROM overrides WHERE community_id = $1 \
                     AND (expires_at IS NULL OR expires_at > now()) ORDER BY id LIMIT 50",
                    &[(&ctx.community, Type::INT8)],
                )
                .await?;
            tx.commit().await?;
            if rows.is_empty() {
                return Ok(Reply::Message(Message::ephemeral("No active overrides.")));
            }
            let mut out = "**Active overrides**".to_owned();
            for r in &rows {
                let _ = write!(
                    out,
                    "\n`{}` {}",
                    r.get::<_, Option<String>>(0).unwrap_or_default(),
                    r.get::<_, &str>(1)
                );
                if let Some(until) = r.get::<_, Option<i64>>(3) {
                    let _ = write!(out, " until <t:{until}:d>");
                }
                if let Some(reason) = r.get::<_, Option<String>>(2) {
                    let _ = write!(out, " — {reason}");
                }
            }
            Ok(Reply::Message(Message::ephemeral(out)))
        }
        ["override", action @ ("add" | "remove")] => {
            let wallet = ctx
                .interaction
                .option_str("wallet")
                .map(|w| w.trim().to_lowercase())
                .filter(|w| w.parse::<crate::worker::chain::Address>().is_ok())
                .ok_or_else(|| {
                    user("That is not a wallet address (0x followed by 40 hex digits).")
                })?;
            let tx = ctx.tx().await?;
            let reply = if *action == "add" {
                let kind = match ctx.interaction.option_str("action") {
                    Some("exclude") => "exclude",
                    _ => "include",
                };
                let days = option_i64(ctx, "days").filter(|d| *d > 0);
                let seconds = days.map(|d| (d.min(3650) * 86_400) as f64);
                let reason = ctx.interaction.option_str("reason").map(str::to_owned);
                tx.execute(
                    "DELETE FROM overrides WHERE community_id = $1 AND address = $2",
                    &[(&ctx.community, Type::INT8), (&wallet, Type::TEXT)],
                )
                .await?;
                tx.execute(
                    "INSERT INTO overrides (community_id, address, kind, reason, created_by, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))",
                    &[
                        (&ctx.community, Type::INT8),
                        (&wallet, Type::TEXT),
                        (&kind, Type::TEXT),
                        (&reason, Type::TEXT),
                        (&ctx.user, Type::INT8),
                        (&seconds, Type::FLOAT8),
                    ],
                )
                .await?;
                store::audit(
                    &tx,
                    "override_add",
                    Some(ctx.user),
                    None,
                    &json!({ "address": wallet, "kind": kind, "days": days }),
                )
                .await?;
                format!(
                    "Override added: `{wallet}` is {kind}d{}. It applies at the next sync (/admin-eligibility sync runs one now).",
                    days.map_or(String::new(), |d| format!(" for {d} days"))
                )
            } else {
                let n = tx
                    .execute(
                        "DELETE FROM overrides WHERE community_id = $1 AND address = $2",
                        &[(&ctx.community, Type::INT8), (&wallet, Type::TEXT)],
                    )
                    .await?;
                if n == 0 {
                    tx.rollback().await?;
                    return Err(user(format!("`{wallet}` has no override.")));
                }
                store::audit(
                    &tx,
                    "override_remove",
                    Some(ctx.user),
                    None,
                    &json!({ "address": wallet }),
                )
                .await?;
                format!("Override of `{wallet}` removed; it applies at the next sync.")
            };
            tx.commit().await?;
            Ok(Reply::Message(Message::ephemeral(reply)))
        }
        _ => Err(user(
            "Use /admin-eligibility override add|remove|list or /admin-eligibility sync.",
        )),
    }
}

/// Runs the sync now, in this worker, and answers with its report (the
/// response is deferred after a second; the token lasts 15 minutes).
async fn sync_now(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    ctx.token()?;
    let outcome = sync::run(ctx.services, ctx.community)
        .await
        .map_err(|e| user(format!("The sync failed: {e}")))?;
    let text = match outcome {
        SyncOutcome::Busy => "A sync of this community is already running on another worker.".to_owned(),
        SyncOutcome::Grace(_) => "The chain is unavailable right now: nothing was revoked, the community is in grace, and the sync retries in a few minutes.".to_owned(),
        SyncOutcome::Synced(r) => format!(
            "Synced at block {}: {} holders, {} ranked, {} eligible; {} role changes, {} DMs, in {:.1} s.",
            r.block, r.holders, r.ranked, r.eligible, r.role_changes, r.dms, r.elapsed.as_secs_f64()
        ),
    };
    Ok(Reply::Message(Message::ephemeral(text)))
}

/// Parses `hajra=6.9,ichwan=69` into a thresholds object.
fn parse_thresholds(text: &str, decimals: u32) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (tier, amount) = pair
            .split_once('=')
            .ok_or_else(|| format!("“{pair}” is not tier=amount"))?;
        out.insert(
            tier.trim().to_owned(),
            Value::String(amount.trim().to_owned()),
        );
    }
    let value = Value::Object(out);
    Thresholds::from_settings(Some(&value), decimals)?;
    Ok(value)
}

/// `/setup`: shows the configuration, or changes the given parts.
pub async fn setup(ctx: &Ctx<'_>) -> Result<Reply, HandlerError> {
    let mut doc = ctx.services.db.community(ctx.community).await?.settings;
    if !doc.is_object() {
        doc = json!({});
    }
    let mut changed = Vec::new();
    if let Some(token) = ctx.interaction.option_str("token") {
        let t: crate::worker::chain::Address = token
            .parse()
            .map_err(|_| user("token: not a contract address (0x followed by 40 hex digits)."))?;
        doc["token"] = json!(t.to_string());
        changed.push("token");
    }
    for key in ["chain_id", "start_block", "decimals"] {
        if let Some(v) = option_i64(ctx, key) {
            if v < 0 || (key == "decimals" && v > 36) {
                return Err(user(format!("{key}: out of range.")));
            }
            doc[key] = json!(v);
            changed.push(key);
        }
    }
    if let Some(urls) = ctx.interaction.option_str("rpc_urls") {
        crate::worker::chain::ChainConfig::from_urls(urls)
            .map_err(|e| user(format!("rpc_urls: {e}")))?;
        doc["rpc_urls"] = json!(urls.trim());
        changed.push("rpc_urls");
    }
    if let Some(text) = ctx.interaction.option_str("thresholds") {
        let decimals = doc.get("decimals").and_then(Value::as_u64).unwrap_or(18);
        let parsed = parse_thresholds(text, u32::try_from(decimals).unwrap_or(18))
            .map_err(|e| user(format!("thresholds: {e}")))?;
        doc["thresholds"] = parsed;
        changed.push("thresholds");
    }
    let mut role_options: Vec<(&str, &str)> = TIER_ROLE_OPTIONS.to_vec();
    role_options.push(("former_naib_role", "former_naib"));
    role_options.push(("taqwa_role", "taqwa"));
    for (option, key) in role_options {
        if let Some(role) = ctx.interaction.option_str(option) {
            if doc.get("roles").is_none_or(|r| !r.is_object()) {
                doc["roles"] = json!({});
            }
            doc["roles"][key] = json!(role);
            changed.push(option);
        }
    }
    let settings = Settings::parse(&doc).map_err(|e| user(format!("Not saved: {e}")))?;
    if !changed.is_empty() {
        ctx.services
            .db
            .set_community_settings(ctx.community, &doc)
            .await?;
        let tx = ctx.tx().await?;
        store::audit(
            &tx,
            "setup",
            Some(ctx.user),
            None,
            &json!({ "changed": changed }),
        )
        .await?;
        tx.commit().await?;
    }
    let mut out = if changed.is_empty() {
        "**Community configuration**".to_owned()
    } else {
        format!("**Saved** ({}).", changed.join(", "))
    };
    let _ = write!(
        out,
        "\nToken: {}\nChain id: {}\nStart block: {}\nDecimals: {}",
        settings
            .token
            .map_or_else(|| "not set".to_owned(), |t| format!("`{t}`")),
        settings
            .chain_id
            .map_or_else(|| "not set".to_owned(), |c| c.to_string()),
        settings.start_block,
        settings.decimals
    );
    let mut roles: Vec<(String, u64)> = settings
        .roles
        .tiers
        .iter()
        .map(|(t, r)| (t.name().to_owned(), *r))
        .collect();
    roles.sort_by_key(|(name, _)| Tier::from_name(name).map(std::cmp::Reverse));
    if let Some(r) = settings.roles.former_naib {
        roles.push(("former_naib".to_owned(), r));
    }
    if let Some(r) = settings.roles.taqwa {
        roles.push(("taqwa".to_owned(), r));
    }
    if roles.is_empty() {
        out.push_str("\nRoles: none mapped yet.");
    } else {
        for (name, role) in roles {
            let _ = write!(out, "\n{name}: <@&{role}>");
        }
    }
    Ok(Reply::Message(Message::ephemeral(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_text_becomes_settings_or_a_named_error() {
        let v = parse_thresholds("hajra=10, usul=2000", 18).unwrap();
        assert_eq!(v["hajra"], "10");
        assert!(parse_thresholds("hajra", 18).is_err());
        assert!(parse_thresholds("emperor=1", 18).is_err());
    }

    #[test]
    fn badge_names_are_slugs() {
        assert!(valid_badge("water-sharer"));
        assert!(!valid_badge("Water Sharer"));
        assert!(!valid_badge("x"));
    }
}
