//! Pre-built content for generated dispatches: users, message texts,
//! activities, command names.
//!
//! Built once per simulator so that generating an event only copies bytes.
//! The texts are chosen to trip naive clients: emoji (including ZWJ
//! sequences), CJK, right-to-left scripts, combining marks, escaped quotes,
//! backslashes, control characters, and strings such as `"op":1` or `"s":`
//! that fool a byte scanner looking for the envelope's keys.

use super::json::{escaped, mix, snowflake};

/// Message contents (raw; escaped when the pool is built).
const CONTENTS: &[&str] = &[
    "gm",
    "gm gm ☀️",
    "wen token? 🚀🚀🚀",
    "你好，世界！今日はいい天気ですね。안녕하세요",
    "مرحبا بالجميع، كيف حالكم اليوم؟",
    "שלום עולם — mixed עברית and English",
    "he said \"hello\" and then \"goodbye\"",
    r"C:\Users\naib\sietch\config.json and \\server\share",
    r#"{"op":1,"d":null}"#,
    r#"try "s":42,"t":"READY","op":0 in your parser"#,
    r#"\"op\":0 escaped twice \\"s\\": 7"#,
    "line one\nline two\n\ttabbed line\r\nwindows line",
    "Z̷̢͎a̸͚l̶̠g̵̙o̴̩ text",
    "<@123456789012345678> check <#987654321098765432> <:bear:112233445566778899>",
    "```rust\nfn main() { println!(\"{}\", r#\"\"op\":0\"#); }\n```",
    "🏳️‍🌈 👨‍👩‍👧‍👦 🧑🏽‍💻 flags and families",
    "control chars: \u{1}\u{7}\u{1b}[31m red \u{1b}[0m",
    "",
    "BGT to the moon 🐻⛓️ 0xdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
     incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
     exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure \
     dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.",
    "}]}}\"} closing brackets inside a string {[",
    "ÅÄÖ åäö ß ñ ç — Ωμέγα — Кириллица",
];

const NAME_PARTS: &[&str] = &[
    "naib", "fremen", "spice", "sand", "worm", "muad", "dib", "stil", "gar", "chani", "leto",
    "duncan", "bear", "honey", "block", "chain", "gm", "anon", "wagmi", "degen",
];

const GLOBAL_NAMES: &[&str] = &[
    "Paul Atreides",
    "Chani 🌙",
    "스틸가",
    "ليتو",
    "Duncan \"Swordmaster\" Idaho",
    "bear\\bull",
    "ⓖⓜ",
    "Gurney",
];

const GAMES: &[&str] = &[
    "Elden Ring",
    "Visual Studio Code",
    "Counter-Strike 2",
    "原神",
    "Minecraft",
    "Dune: Awakening",
];

const CUSTOM_STATES: &[&str] = &[
    "building 🏗️ on Berachain",
    "afk \"brb\"",
    "في الاجتماع",
    r#"{"op":9,"d":false}"#,
];

/// Slash commands as `(name, options JSON)`; options mention a user id
/// placeholder `{user}` filled at generation time.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    ("rank", "[]"),
    (
        "verify",
        r#"[{"value":"0x8ba1f109551bd432803012645ac136ddd64dba72","type":3,"name":"wallet"}]"#,
    ),
    ("leaderboard", r#"[{"type":4,"name":"page","value":2}]"#),
    ("profile", r#"[{"name":"user","type":6,"value":"{user}"}]"#),
    (
        "naib",
        r#"[{"type":1,"name":"history","options":[{"name":"days","type":4,"value":30}]}]"#,
    ),
];

/// One generated user.
pub(crate) struct User {
    pub(crate) id: u64,
    /// `"username"` as a JSON literal.
    pub(crate) username: String,
    /// `"global_name"` as a JSON literal or `null`.
    pub(crate) global_name: String,
    /// Avatar hash as a JSON literal or `null`.
    pub(crate) avatar: String,
    pub(crate) bot: bool,
}

/// Everything generation copies from.
pub(crate) struct Pools {
    pub(crate) users: Vec<User>,
    /// Escaped JSON literals.
    pub(crate) contents: Vec<String>,
    /// Escaped JSON literals.
    pub(crate) games: Vec<String>,
    /// Escaped JSON literals.
    pub(crate) states: Vec<String>,
}

impl Pools {
    /// Build the pools (deterministic).
    pub(crate) fn new() -> Self {
        let users = (0..512u64)
            .map(|i| {
                let r = mix(i ^ 0x5EED);
                let a = NAME_PARTS[(r % NAME_PARTS.len() as u64) as usize];
                let b = NAME_PARTS[((r >> 8) % NAME_PARTS.len() as u64) as usize];
                let global_name = if (r >> 16) & 3 == 0 {
                    "null".to_owned()
                } else {
                    escaped(GLOBAL_NAMES[((r >> 20) % GLOBAL_NAMES.len() as u64) as usize])
                };
                let avatar = if (r >> 24) & 7 == 0 {
                    "null".to_owned()
                } else {
                    format!("\"{:032x}\"", u128::from(mix(r)) << 64 | u128::from(r))
                };
                User {
                    // Accounts created 2016-2023.
                    id: snowflake(1_451_606_400_000 + (r >> 30) % 250_000_000_000, i),
                    username: escaped(&format!("{a}_{b}{}", i % 100)),
                    global_name,
                    avatar,
                    bot: i % 97 == 0,
                }
            })
            .collect();
        Self {
            users,
            contents: CONTENTS.iter().map(|c| escaped(c)).collect(),
            games: GAMES.iter().map(|c| escaped(c)).collect(),
            states: CUSTOM_STATES.iter().map(|c| escaped(c)).collect(),
        }
    }

    /// Pick a user by random `r`.
    pub(crate) fn user(&self, r: u64) -> &User {
        &self.users[(r % self.users.len() as u64) as usize]
    }

    /// Pick from a slice by random `r`.
    pub(crate) fn pick<T>(items: &[T], r: u64) -> &T {
        &items[(r % items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_literal_parses() {
        let p = Pools::new();
        for lit in p.contents.iter().chain(&p.games).chain(&p.states) {
            serde_json::from_str::<String>(lit).unwrap();
        }
        for u in &p.users {
            serde_json::from_str::<String>(&u.username).unwrap();
            serde_json::from_str::<Option<String>>(&u.global_name).unwrap();
            serde_json::from_str::<Option<String>>(&u.avatar).unwrap();
        }
        for (_, opts) in COMMANDS {
            let opts = opts.replace("{user}", "1");
            serde_json::from_str::<serde_json::Value>(&opts).unwrap();
        }
    }
}
