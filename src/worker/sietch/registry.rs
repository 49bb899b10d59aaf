//! The Sietch command set, defined once (SIETCH.md, slash commands).
//!
//! [`Command`] is the single list: [`Command::definition`] is what
//! `arrakis register-commands` sends to Discord, [`Command::spec`] is how
//! the worker answers it, and the worker routes by matching on the same
//! enum. Every one of those is an exhaustive `match`, so a command cannot
//! be registered without a handler, nor handled without being registered.

use std::time::Duration;

use serde_json::{Value, json};

/// Who sees a command's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Only the caller.
    Ephemeral,
    /// The whole channel.
    Public,
    /// Only the caller when it is about themselves (no `nym` given),
    /// public when it looks at someone else.
    OwnEphemeral,
}

/// How a command is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Its name as registered.
    pub name: &'static str,
    /// It reads the chain (or is otherwise slow): defer at once.
    pub slow: bool,
    /// Who sees the reply.
    pub visibility: Visibility,
    /// Per-user cooldown, enforced across workers.
    pub cooldown: Option<Duration>,
    /// Registered with default member permission Administrator and checked
    /// again in the handler.
    pub admin: bool,
}

/// Every slash command of Sietch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `/check-eligibility [wallet]`.
    CheckEligibility,
    /// `/position`.
    Position,
    /// `/threshold`.
    Threshold,
    /// `/leaderboard badges|tiers`.
    Leaderboard,
    /// `/naib overview|current|former`.
    Naib,
    /// `/profile view [nym]|edit`.
    Profile,
    /// `/badges [nym]`.
    Badges,
    /// `/stats`.
    Stats,
    /// `/directory`.
    Directory,
    /// `/alerts`.
    Alerts,
    /// `/register-waitlist register|status|unregister`.
    RegisterWaitlist,
    /// `/water-share share|status`.
    WaterShare,
    /// `/verify start|status|reset`.
    Verify,
    /// `/admin-badge award|revoke`.
    AdminBadge,
    /// `/admin-water-share list|revoke|lineage`.
    AdminWaterShare,
    /// `/admin-stats`.
    AdminStats,
    /// `/admin-eligibility override add|remove|list, sync`.
    AdminEligibility,
    /// `/setup`.
    Setup,
}

/// The ADMINISTRATOR permission, as `default_member_permissions` wants it.
const ADMINISTRATOR: &str = "8";

// Discord application command option types.
const SUB_COMMAND: u8 = 1;
const SUB_COMMAND_GROUP: u8 = 2;
const STRING: u8 = 3;
const INTEGER: u8 = 4;
const USER: u8 = 6;
const ROLE: u8 = 8;

fn opt(kind: u8, name: &str, description: &str, required: bool) -> Value {
    json!({ "type": kind, "name": name, "description": description, "required": required })
}

fn autocompleted(name: &str, description: &str, required: bool) -> Value {
    let mut o = opt(STRING, name, description, required);
    o["autocomplete"] = json!(true);
    o
}

fn sub(name: &str, description: &str, options: Vec<Value>) -> Value {
    json!({ "type": SUB_COMMAND, "name": name, "description": description, "options": options })
}

/// The tier role options of `/setup`, in tier order.
pub const TIER_ROLE_OPTIONS: [(&str, &str); 9] = [
    ("naib_role", "naib"),
    ("fedaykin_role", "fedaykin"),
    ("usul_role", "usul"),
    ("sayyadina_role", "sayyadina"),
    ("mushtamal_role", "mushtamal"),
    ("sihaya_role", "sihaya"),
    ("qanat_role", "qanat"),
    ("ichwan_role", "ichwan"),
    ("hajra_role", "hajra"),
];

impl Command {
    /// Every command, in registration order.
    pub const ALL: [Self; 18] = [
        Self::CheckEligibility,
        Self::Position,
        Self::Threshold,
        Self::Leaderboard,
        Self::Naib,
        Self::Profile,
        Self::Badges,
        Self::Stats,
        Self::Directory,
        Self::Alerts,
        Self::RegisterWaitlist,
        Self::WaterShare,
        Self::Verify,
        Self::AdminBadge,
        Self::AdminWaterShare,
        Self::AdminStats,
        Self::AdminEligibility,
        Self::Setup,
    ];

    /// The command called `name`, if it is one of ours.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.spec().name == name)
    }

    /// How it is answered.
    #[must_use]
    pub fn spec(self) -> CommandSpec {
        use Visibility::{Ephemeral, OwnEphemeral, Public};
        let (name, slow, visibility, cooldown_s, admin) = match self {
            Self::CheckEligibility => ("check-eligibility", true, Ephemeral, 5, false),
            Self::Position => ("position", false, Ephemeral, 0, false),
            Self::Threshold => ("threshold", false, Public, 0, false),
            Self::Leaderboard => ("leaderboard", false, Public, 5, false),
            Self::Naib => ("naib", false, Public, 0, false),
            Self::Profile => ("profile", false, OwnEphemeral, 0, false),
            Self::Badges => ("badges", false, OwnEphemeral, 0, false),
            Self::Stats => ("stats", false, Ephemeral, 0, false),
            Self::Directory => ("directory", false, Ephemeral, 0, false),
            Self::Alerts => ("alerts", false, Ephemeral, 0, false),
            Self::RegisterWaitlist => ("register-waitlist", false, Ephemeral, 0, false),
            Self::WaterShare => ("water-share", false, Ephemeral, 0, false),
            Self::Verify => ("verify", false, Ephemeral, 0, false),
            Self::AdminBadge => ("admin-badge", false, Ephemeral, 0, true),
            Self::AdminWaterShare => ("admin-water-share", false, Ephemeral, 0, true),
            Self::AdminStats => ("admin-stats", false, Ephemeral, 0, true),
            Self::AdminEligibility => ("admin-eligibility", false, Ephemeral, 0, true),
            Self::Setup => ("setup", false, Ephemeral, 0, true),
        };
        CommandSpec {
            name,
            slow,
            visibility,
            cooldown: (cooldown_s > 0).then(|| Duration::from_secs(cooldown_s)),
            admin,
        }
    }

    /// Its description in Discord's command list.
    fn description(self) -> &'static str {
        match self {
            Self::CheckEligibility => {
                "Check a wallet's live balance, would-be rank and tier against the current snapshot"
            }
            Self::Position => "Your rank, holdings and distance to the ranks around you",
            Self::Threshold => "The entry requirement, eligible count and the waitlist",
            Self::Leaderboard => "Rankings by badges or by closeness to the next tier",
            Self::Naib => "The seven Naib seats and their holders",
            Self::Profile => "View or edit a member profile",
            Self::Badges => "Badges a member has earned",
            Self::Stats => "Your activity statistics",
            Self::Directory => "Browse the community's members",
            Self::Alerts => "Your notification settings",
            Self::RegisterWaitlist => "The waitlist for ranks 70 to 100",
            Self::WaterShare => "Pass your Water Sharer badge to one member",
            Self::Verify => "Link a wallet by signing a message",
            Self::AdminBadge => "Award or revoke a badge",
            Self::AdminWaterShare => "Manage Water Sharer grants",
            Self::AdminStats => "Community statistics",
            Self::AdminEligibility => "Eligibility overrides and the sync",
            Self::Setup => "Configure the community: chain, token, thresholds, roles",
        }
    }

    fn options(self) -> Vec<Value> {
        let member = |d: &str| opt(USER, "member", d, true);
        match self {
            Self::CheckEligibility => vec![opt(
                STRING,
                "wallet",
                "Wallet address (0x…); your verified wallets if omitted",
                false,
            )],
            Self::Position
            | Self::Threshold
            | Self::Stats
            | Self::Directory
            | Self::Alerts
            | Self::AdminStats => Vec::new(),
            Self::Leaderboard => vec![
                sub("badges", "Members with the most badges", vec![]),
                sub("tiers", "Members closest to their next tier", vec![]),
            ],
            Self::Naib => vec![
                sub("overview", "The seven seats", vec![]),
                sub("current", "Current Naib", vec![]),
                sub("former", "Former Naib", vec![]),
            ],
            Self::Profile => vec![
                sub(
                    "view",
                    "View a profile (yours if no nym)",
                    vec![autocompleted("nym", "The member's nym", false)],
                ),
                sub("edit", "Edit your nym and bio", vec![]),
            ],
            Self::Badges => vec![autocompleted(
                "nym",
                "The member's nym (yours if omitted)",
                false,
            )],
            Self::RegisterWaitlist => vec![
                sub(
                    "register",
                    "Register a wallet ranked 70 to 100",
                    vec![opt(STRING, "wallet", "Wallet address (0x…)", true)],
                ),
                sub("status", "Your waitlist registration", vec![]),
                sub("unregister", "Leave the waitlist", vec![]),
            ],
            Self::WaterShare => vec![
                sub(
                    "share",
                    "Give your Water Sharer badge to one member",
                    vec![member("Who receives it")],
                ),
                sub(
                    "status",
                    "Whom you shared with and who shared with you",
                    vec![],
                ),
            ],
            Self::Verify => vec![
                sub("start", "Start linking a wallet", vec![]),
                sub("status", "Your linked wallets and pending session", vec![]),
                sub(
                    "reset",
                    "Admin: unlink a member's wallets",
                    vec![opt(USER, "user", "The member", true)],
                ),
            ],
            Self::AdminBadge => {
                let args = || {
                    vec![
                        member("The member"),
                        autocompleted("badge", "The badge", true),
                    ]
                };
                vec![
                    sub("award", "Award a badge", args()),
                    sub("revoke", "Revoke a badge", args()),
                ]
            }
            Self::AdminWaterShare => vec![
                sub("list", "Every grant", vec![]),
                sub(
                    "revoke",
                    "Revoke a member's grant and every grant derived from it",
                    vec![member("The grantee")],
                ),
                sub(
                    "lineage",
                    "Who shared with whom, up to the first grant",
                    vec![member("The grantee")],
                ),
            ],
            Self::AdminEligibility => {
                let mut action = opt(STRING, "action", "Include or exclude the wallet", true);
                action["choices"] = json!([
                    { "name": "include", "value": "include" },
                    { "name": "exclude", "value": "exclude" },
                ]);
                vec![
                    json!({
                        "type": SUB_COMMAND_GROUP,
                        "name": "override",
                        "description": "Include or exclude a wallet regardless of the chain",
                        "options": [
                            sub("add", "Add an override", vec![
                                opt(STRING, "wallet", "Wallet address (0x…)", true),
                                action,
                                opt(INTEGER, "days", "Expires after this many days", false),
                                opt(STRING, "reason", "Why (kept in the audit log)", false),
                            ]),
                            sub("remove", "Remove a wallet's overrides", vec![
                                opt(STRING, "wallet", "Wallet address (0x…)", true),
                            ]),
                            sub("list", "Active overrides", vec![]),
                        ],
                    }),
                    sub("sync", "Run the eligibility sync now", vec![]),
                ]
            }
            Self::Setup => {
                let mut options = vec![
                    opt(STRING, "token", "Token contract address (0x…)", false),
                    opt(INTEGER, "chain_id", "EVM chain id", false),
                    opt(INTEGER, "start_block", "First block to scan", false),
                    opt(INTEGER, "decimals", "Token decimals (18)", false),
                    opt(
                        STRING,
                        "thresholds",
                        "Tier minimums, e.g. hajra=6.9,ichwan=69",
                        false,
                    ),
                    opt(
                        STRING,
                        "rpc_urls",
                        "This community's JSON-RPC endpoints, comma-separated",
                        false,
                    ),
                ];
                for (option, tier) in TIER_ROLE_OPTIONS {
                    options.push(opt(ROLE, option, &format!("Role for {tier}"), false));
                }
                options.push(opt(ROLE, "former_naib_role", "Role for Former Naib", false));
                options.push(opt(ROLE, "taqwa_role", "Role for the waitlist", false));
                options
            }
        }
    }

    /// The application command object sent to Discord.
    #[must_use]
    pub fn definition(self) -> Value {
        let spec = self.spec();
        let mut d = json!({
            "type": 1,
            "name": spec.name,
            "description": self.description(),
            "options": self.options(),
            "contexts": [0],
        });
        if spec.admin {
            d["default_member_permissions"] = json!(ADMINISTRATOR);
        }
        d
    }
}

/// The body of the bulk overwrite: every command's definition.
#[must_use]
pub fn definitions() -> Value {
    Value::Array(Command::ALL.iter().map(|c| c.definition()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(n: &str) -> bool {
        (1..=32).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }

    fn check_options(options: &[Value], depth: u8) {
        assert!(options.len() <= 25);
        let mut optional_seen = false;
        for o in options {
            let name = o["name"].as_str().unwrap();
            assert!(valid_name(name), "option {name}");
            let d = o["description"].as_str().unwrap();
            assert!((1..=100).contains(&d.chars().count()), "{name}: {d}");
            let kind = o["type"].as_u64().unwrap();
            if kind <= 2 {
                assert!(depth < 2, "{name} nested too deep");
                check_options(o["options"].as_array().unwrap(), depth + 1);
            } else {
                let required = o["required"].as_bool().unwrap_or(false);
                assert!(
                    !(required && optional_seen),
                    "{name}: required after optional"
                );
                optional_seen |= !required;
            }
        }
    }

    #[test]
    fn every_definition_follows_discords_rules() {
        let all = definitions();
        let all = all.as_array().unwrap();
        assert_eq!(all.len(), Command::ALL.len());
        let mut names: Vec<&str> = all.iter().map(|d| d["name"].as_str().unwrap()).collect();
        for d in all {
            let name = d["name"].as_str().unwrap();
            assert!(valid_name(name), "{name}");
            let desc = d["description"].as_str().unwrap();
            assert!((1..=100).contains(&desc.chars().count()), "{name}");
            check_options(d["options"].as_array().unwrap(), 0);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Command::ALL.len(), "names are unique");
    }

    #[test]
    fn admin_commands_default_to_administrator_only() {
        for c in Command::ALL {
            let d = c.definition();
            let admin = d.get("default_member_permissions").and_then(Value::as_str);
            assert_eq!(admin == Some("8"), c.spec().admin, "{:?}", c);
            assert_eq!(
                c.spec().name.starts_with("admin-") || c == Command::Setup,
                c.spec().admin
            );
        }
    }

    #[test]
    fn names_route_back_to_their_command() {
        for c in Command::ALL {
            assert_eq!(Command::from_name(c.spec().name), Some(c));
        }
        assert_eq!(Command::from_name("nope"), None);
    }

    #[test]
    fn only_the_live_chain_check_defers_at_once() {
        let slow: Vec<_> = Command::ALL.iter().filter(|c| c.spec().slow).collect();
        assert_eq!(slow, [&Command::CheckEligibility]);
        assert_eq!(
            Command::CheckEligibility.spec().visibility,
            Visibility::Ephemeral
        );
        assert_eq!(Command::Threshold.spec().visibility, Visibility::Public);
    }
}
