//! Realistic dispatch payloads (PROTOCOL.md §1.9): what the simulator sends
//! as `d` for each event kind, and the `{op,t,s,d}` envelope around it.
//!
//! Content follows Discord's documented shapes (snowflakes as strings, guild
//! ids that map to the receiving shard by `(id >> 22) % num_shards`, member
//! objects in MESSAGE_CREATE, ...) and varies key order both in the envelope
//! and inside `d`, because Discord does not promise an order and clients
//! must not rely on one. Generation only copies pre-built bytes (see
//! `pools`), so one core can produce well over 50,000 events/s.

mod guild;
mod json;
mod pools;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub(crate) use json::{Obj, escaped, mix, push_u64};
use json::{push_iso8601, snowflake};
use pools::{COMMANDS, Pools, User};

/// A dispatch a test asks the simulator to send with `Simulator::emit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `GUILD_CREATE` for one of the shard's guilds, with `members` member
    /// and presence entries (about 1 KB each).
    GuildCreate {
        /// Number of members (and presences) included.
        members: usize,
    },
    /// `GUILD_MEMBER_ADD`.
    GuildMemberAdd,
    /// `MESSAGE_CREATE` with author, member and tricky unicode content.
    MessageCreate,
    /// `PRESENCE_UPDATE` with a partial user and activities.
    PresenceUpdate,
    /// `TYPING_START`.
    TypingStart,
    /// `INTERACTION_CREATE` for an application command (type 2).
    InteractionCreate,
    /// Any event: `t` = `name`, `d` = the raw JSON text `d` (sent as is, not
    /// validated).
    Raw {
        /// The event name (`t`).
        name: String,
        /// Raw JSON text for `d`.
        d: String,
    },
}

/// The shard (and its session's shard count) an event is generated for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) shard_id: u32,
    pub(crate) num_shards: u32,
    pub(crate) guilds: u32,
}

impl Target {
    /// Id of the shard's `index`-th guild. `(id >> 22) % num_shards ==
    /// shard_id` holds for every index.
    pub(crate) fn guild_id(&self, index: u32) -> u64 {
        let n = u64::from(self.num_shards.max(1));
        // Guilds created from mid-2021 on; align the timestamp so that its
        // remainder modulo n is the shard id.
        let base = 1_622_505_600_000 - json::DISCORD_EPOCH_MS;
        let t = base - base % n + u64::from(index) * n + u64::from(self.shard_id);
        (t << 22) | ((u64::from(index) * 4099) & 0x3F_FFFF)
    }
}

/// A generated `d`, before it gets a sequence number.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) name: Cow<'static, str>,
    pub(crate) d: Vec<u8>,
    pub(crate) guild_id: Option<String>,
}

/// The event generator (one per simulator; `&self` methods, lock-free).
pub(crate) struct EventGen {
    counter: AtomicU64,
    pools: Pools,
    pub(crate) application_id: u64,
}

impl EventGen {
    /// A generator with its pools built.
    pub(crate) fn new() -> Self {
        Self {
            counter: AtomicU64::new(1),
            pools: Pools::new(),
            application_id: 1_100_000_000_000_000_001,
        }
    }

    /// A fresh random number.
    pub(crate) fn rand(&self) -> u64 {
        mix(self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Generate `d` for `kind` on `target`.
    pub(crate) fn build(&self, kind: &EventKind, target: Target) -> Built {
        let r = self.rand();
        let guild = target.guild_id((r % u64::from(target.guilds.max(1))) as u32);
        let r = mix(r);
        let (name, d) = match kind {
            EventKind::GuildCreate { members } => (
                "GUILD_CREATE",
                guild::guild_create(self, guild, *members, r),
            ),
            EventKind::GuildMemberAdd => ("GUILD_MEMBER_ADD", self.member_add(guild, r)),
            EventKind::MessageCreate => ("MESSAGE_CREATE", self.message_create(guild, r)),
            EventKind::PresenceUpdate => ("PRESENCE_UPDATE", self.presence_update(guild, r)),
            EventKind::TypingStart => ("TYPING_START", self.typing_start(guild, r)),
            EventKind::InteractionCreate => ("INTERACTION_CREATE", self.interaction(guild, r)),
            EventKind::Raw { name, d } => {
                return Built {
                    name: Cow::Owned(name.clone()),
                    d: d.as_bytes().to_vec(),
                    guild_id: raw_guild_id(name, d),
                };
            }
        };
        Built {
            name: Cow::Borrowed(name),
            d,
            guild_id: Some(guild.to_string()),
        }
    }

    /// A `user` object.
    pub(crate) fn user_obj(u: &User) -> Obj {
        let mut o = Obj::with_capacity(320);
        o.raw("username", &u.username)
            .num("public_flags", if u.bot { 0 } else { u.id % 3 * 64 })
            .id("id", u.id)
            .raw("global_name", &u.global_name)
            .raw("discriminator", "\"0\"")
            .null("clan")
            .null("avatar_decoration_data")
            .raw("avatar", &u.avatar)
            .null("banner")
            .null("accent_color")
            .null("display_name_styles")
            .null("collectibles");
        if u.id & 1 == 0 {
            let mut tag = Obj::with_capacity(160);
            tag.raw("tag", "\"BERA\"")
                .bool("identity_enabled", true)
                .id("identity_guild_id", 1_254_000_000_000_000_000 + u.id % 1000)
                .raw("badge", "\"6f8e1c0b2b0d4e5f9a3c7d2e1f0a9b8c\"");
            o.obj("primary_guild", &tag, u.id >> 3);
        } else {
            o.null("primary_guild");
        }
        if u.bot {
            o.bool("bot", true);
        }
        o
    }

    /// A guild `member` object without `user`.
    pub(crate) fn member_obj(guild: u64, r: u64, joined_ms: u64) -> Obj {
        let mut o = Obj::with_capacity(320);
        let mut roles = Vec::with_capacity(64);
        roles.push(b'[');
        for k in 0..(r % 4) {
            if k > 0 {
                roles.push(b',');
            }
            roles.push(b'"');
            push_u64(&mut roles, guild + 1 + ((r >> 8) + k) % 5);
            roles.push(b'"');
        }
        roles.push(b']');
        let mut joined = Vec::with_capacity(36);
        push_iso8601(&mut joined, joined_ms);
        o.raw_bytes("roles", &roles)
            .null("premium_since")
            .bool("pending", false)
            .raw(
                "nick",
                if r & 16 == 0 {
                    "null"
                } else {
                    "\"🐻 spice trader\""
                },
            )
            .bool("mute", false)
            .raw_bytes("joined_at", &joined)
            .num("flags", 0)
            .bool("deaf", false)
            .null("communication_disabled_until")
            .null("banner")
            .null("avatar");
        o
    }

    fn message_create(&self, guild: u64, r: u64) -> Vec<u8> {
        let now = Self::now_ms();
        let user = self.pools.user(r);
        let content = Pools::pick(&self.pools.contents, r >> 9);
        let mut ts = Vec::with_capacity(36);
        push_iso8601(&mut ts, now);
        let mut d = Obj::with_capacity(1200);
        d.num("type", 0)
            .bool("tts", false)
            .raw_bytes("timestamp", &ts)
            .bool("pinned", false);
        if r & 1 == 0 {
            d.id("nonce", snowflake(now, r >> 40));
        }
        d.raw("mentions", "[]")
            .raw("mention_roles", "[]")
            .bool("mention_everyone", false)
            .obj(
                "member",
                &Self::member_obj(guild, r >> 3, now - 86_400_000 * (r % 900)),
                r >> 5,
            )
            .id("id", snowflake(now, self.rand()))
            .num("flags", 0)
            .raw("embeds", "[]")
            .null("edited_timestamp")
            .raw("content", content)
            .raw("components", "[]")
            .num("channel_type", 0)
            .id("channel_id", guild + 100 + (r >> 12) % 6)
            .obj("author", &Self::user_obj(user), r >> 7)
            .raw("attachments", "[]")
            .id("guild_id", guild);
        d.finish(r >> 2)
    }

    fn presence_update(&self, guild: u64, r: u64) -> Vec<u8> {
        let user = self.pools.user(r);
        let mut d = self.presence(user.id, r);
        d.id("guild_id", guild);
        d.finish(r >> 3)
    }

    /// A presence object (`user`, `status`, `client_status`, `activities`)
    /// without `guild_id`.
    pub(crate) fn presence(&self, user_id: u64, r: u64) -> Obj {
        let status = ["online", "idle", "dnd", "offline"][(r >> 10) as usize % 4];
        let mut d = Obj::with_capacity(600);
        let mut u = Obj::with_capacity(32);
        u.id("id", user_id);
        let quoted = match status {
            "online" => "\"online\"",
            "idle" => "\"idle\"",
            "dnd" => "\"dnd\"",
            _ => "\"offline\"",
        };
        d.obj("user", &u, 0).raw("status", quoted);
        let mut cs = Obj::with_capacity(32);
        if status != "offline" {
            cs.raw(["desktop", "mobile", "web"][(r >> 14) as usize % 3], quoted);
        }
        d.obj("client_status", &cs, 0);
        let mut acts = Vec::with_capacity(400);
        acts.push(b'[');
        if status != "offline" && r & 8 == 0 {
            let started = Self::now_ms() - (r >> 20) % 7_200_000;
            let mut a = Obj::with_capacity(200);
            a.num("type", 0)
                .raw("name", Pools::pick(self.pools.games.as_slice(), r >> 16).as_str())
                .id("id", r >> 24)
                .num("created_at", started)
                .raw("timestamps", &format!("{{\"start\":{started}}}"))
                .raw("details", "\"Exploring the Deep Desert\"")
                .raw("state", "\"Sietch Tabr — 3 of 4\"")
                .raw(
                    "assets",
                    "{\"large_text\":\"Arrakis\",\"large_image\":\"mp:external/Zx9k3Q/https/cdn.example/arrakis.png\"}",
                )
                .id("application_id", 356_869_127_241_072_640 + (r >> 30) % 1000);
            a.write(r >> 18, &mut acts);
        }
        if status != "offline" && r & 32 == 0 {
            if acts.len() > 1 {
                acts.push(b',');
            }
            let mut a = Obj::with_capacity(200);
            a.num("type", 4)
                .raw(
                    "state",
                    Pools::pick(self.pools.states.as_slice(), r >> 22).as_str(),
                )
                .raw("name", "\"Custom Status\"")
                .raw("id", "\"custom\"")
                .raw("emoji", "{\"name\":\"🐻\"}")
                .num("created_at", Self::now_ms());
            a.write(r >> 19, &mut acts);
        }
        acts.push(b']');
        d.raw_bytes("activities", &acts);
        d
    }

    /// The user with random `r` from the pool.
    pub(crate) fn user(&self, r: u64) -> &User {
        self.pools.user(r)
    }

    fn typing_start(&self, guild: u64, r: u64) -> Vec<u8> {
        let user = self.pools.user(r);
        let now = Self::now_ms();
        let mut member = Self::member_obj(guild, r >> 3, now - 86_400_000 * (r % 500));
        member.obj("user", &Self::user_obj(user), r >> 6);
        let mut d = Obj::with_capacity(800);
        d.id("user_id", user.id)
            .num("timestamp", now / 1000)
            .obj("member", &member, r >> 5)
            .id("channel_id", guild + 100 + (r >> 12) % 6)
            .id("guild_id", guild);
        d.finish(r >> 2)
    }

    fn member_add(&self, guild: u64, r: u64) -> Vec<u8> {
        let user = self.pools.user(r);
        let mut d = Self::member_obj(guild, r & !3, Self::now_ms());
        d.obj("user", &Self::user_obj(user), r >> 6)
            .id("guild_id", guild);
        d.finish(r >> 2)
    }

    fn interaction(&self, guild: u64, r: u64) -> Vec<u8> {
        let now = Self::now_ms();
        let user = self.pools.user(r);
        let (cmd, options) = Pools::pick(COMMANDS, r >> 11);
        let options = options.replace("{user}", &self.pools.user(r >> 13).id.to_string());
        let id = snowflake(now, self.rand());
        let mut token = String::with_capacity(200);
        token.push_str("\"aW50ZXJhY3Rpb246");
        for k in 0..10u64 {
            let x = mix(id ^ k);
            token.push_str(&format!("{x:016x}"));
        }
        token.push('"');
        let mut data = Obj::with_capacity(300);
        data.num("type", 1)
            .raw("options", &options)
            .raw("name", &format!("\"{cmd}\""))
            .id("id", 1_200_000_000_000_000_000 + (r >> 40) % 1000);
        let mut member = Self::member_obj(guild, r >> 3, now - 86_400_000 * (r % 700));
        member
            .obj("user", &Self::user_obj(user), r >> 6)
            .id("permissions", 2_248_473_465_835_073);
        let mut g = Obj::with_capacity(100);
        g.raw("locale", "\"en-US\"")
            .id("id", guild)
            .raw("features", "[\"COMMUNITY\",\"NEWS\"]");
        let mut channel = Obj::with_capacity(200);
        channel
            .num("type", 0)
            .id("id", guild + 100)
            .id("guild_id", guild)
            .raw("name", "\"général-💬\"")
            .null("topic")
            .id("permissions", 2_248_473_465_835_073);
        let mut d = Obj::with_capacity(1800);
        d.num("version", 1)
            .num("type", 2)
            .raw("token", &token)
            .obj("member", &member, r >> 5)
            .raw("locale", "\"en-US\"")
            .id("id", id)
            .raw("guild_locale", "\"en-US\"")
            .id("guild_id", guild)
            .obj("guild", &g, r >> 9)
            .raw("entitlements", "[]")
            .raw("entitlement_sku_ids", "[]")
            .obj("data", &data, r >> 8)
            .id("channel_id", guild + 100)
            .obj("channel", &channel, r >> 10)
            .id("application_id", self.application_id)
            .id("app_permissions", 2_248_473_465_835_073)
            .raw(
                "authorizing_integration_owners",
                &format!("{{\"0\":\"{guild}\"}}"),
            )
            .num("context", 0)
            .num("attachment_size_limit", 10_485_760);
        d.finish(r >> 2)
    }

    /// `d` of READY for a new session.
    pub(crate) fn ready(&self, session_id: &str, resume_url: &str, target: Target) -> Vec<u8> {
        let mut guilds = Vec::with_capacity(64 * target.guilds as usize);
        guilds.push(b'[');
        for i in 0..target.guilds {
            if i > 0 {
                guilds.push(b',');
            }
            guilds.extend_from_slice(b"{\"unavailable\":true,\"id\":\"");
            push_u64(&mut guilds, target.guild_id(i));
            guilds.extend_from_slice(b"\"}");
        }
        guilds.push(b']');
        let mut user = Obj::with_capacity(300);
        user.raw("verified", "true")
            .raw("username", "\"arrakis-sim\"")
            .bool("mfa_enabled", false)
            .id("id", self.application_id)
            .null("global_name")
            .num("flags", 0)
            .null("email")
            .raw("discriminator", "\"0\"")
            .raw("bot", "true")
            .null("avatar");
        let mut app = Obj::with_capacity(60);
        app.id("id", self.application_id).num("flags", 8_953_856);
        let mut d = Obj::with_capacity(1000);
        d.num("v", 10)
            .raw("user_settings", "{}")
            .obj("user", &user, 0)
            .raw("session_type", "\"normal\"")
            .raw("session_id", &format!("\"{session_id}\""))
            .raw("resume_gateway_url", &escaped(resume_url))
            .raw("relationships", "[]")
            .raw("private_channels", "[]")
            .raw("presences", "[]")
            .raw_bytes("guilds", &guilds)
            .raw("guild_join_requests", "[]")
            .raw(
                "geo_ordered_rtc_regions",
                "[\"frankfurt\",\"rotterdam\",\"milan\",\"london\",\"madrid\"]",
            )
            .raw("auth", "{}")
            .raw(
                "shard",
                &format!("[{},{}]", target.shard_id, target.num_shards),
            )
            .obj("application", &app, 1)
            .raw(
                "_trace",
                "[\"[\\\"gateway-prd-us-east1-b-sim\\\",{\\\"micros\\\":12345}]\"]",
            );
        d.finish(0)
    }
}

/// `d` of RESUMED.
pub(crate) fn resumed_d() -> Vec<u8> {
    b"{\"_trace\":[\"[\\\"gateway-prd-us-east1-b-sim\\\",{\\\"micros\\\":871}]\"]}".to_vec()
}

/// The top-level guild id of a raw event: `d.guild_id`, or `d.id` for the
/// GUILD_CREATE/UPDATE/DELETE family; `None` when absent or `d` is not JSON.
fn raw_guild_id(name: &str, d: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(d).ok()?;
    let key = if matches!(name, "GUILD_CREATE" | "GUILD_UPDATE" | "GUILD_DELETE") {
        "id"
    } else {
        "guild_id"
    };
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The full dispatch payload. The key order rotates with `seq` among five
/// orders, including `d` first and `s` last.
pub(crate) fn envelope(name: &str, seq: u64, d: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(d.len() + name.len() + 48);
    let t = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"\"t\":\"");
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
    };
    let s = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"\"s\":");
        push_u64(out, seq);
    };
    let op = |out: &mut Vec<u8>| out.extend_from_slice(b"\"op\":0");
    let dd = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"\"d\":");
        out.extend_from_slice(d);
    };
    type Part<'a> = &'a dyn Fn(&mut Vec<u8>);
    let parts: [Part<'_>; 4] = match seq % 5 {
        0 => [&t, &s, &op, &dd],
        1 => [&op, &t, &s, &dd],
        2 => [&dd, &op, &t, &s],
        3 => [&s, &op, &dd, &t],
        _ => [&op, &dd, &s, &t],
    };
    out.push(b'{');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        part(&mut out);
    }
    out.push(b'}');
    Bytes::from(out)
}

/// The load mix: mostly presences, messages and typing, some member adds and
/// interactions, an occasional GUILD_CREATE.
pub(crate) fn load_kind(r: u64) -> EventKind {
    match r % 10_000 {
        0..4_500 => EventKind::PresenceUpdate,
        4_500..7_500 => EventKind::MessageCreate,
        7_500..9_200 => EventKind::TypingStart,
        9_200..9_600 => EventKind::GuildMemberAdd,
        9_600..9_998 => EventKind::InteractionCreate,
        _ => EventKind::GuildCreate {
            members: 20 + (r >> 20) as usize % 200,
        },
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests;
