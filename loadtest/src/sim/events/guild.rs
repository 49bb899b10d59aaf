//! GUILD_CREATE: the largest dispatch a bot receives (PROTOCOL.md §1.9).
//!
//! Carries `id` (no `guild_id`), roles, emojis, channels, and one member and
//! one presence entry per requested member, about 1 KB per member, so a
//! 500-member guild is about half a megabyte: big enough to exercise a
//! client's inflate buffers and payload limits.

use super::json::{push_iso8601, push_u64, snowflake};
use super::{EventGen, Obj, mix};

/// `d` of GUILD_CREATE for `guild` with `members` members.
pub(super) fn guild_create(g: &EventGen, guild: u64, members: usize, r: u64) -> Vec<u8> {
    let now = EventGen::now_ms();
    let mut joined = Vec::with_capacity(36);
    push_iso8601(&mut joined, now - 86_400_000 * 30);

    let mut d = Obj::with_capacity(4096 + members * 1100);
    d.id("id", guild)
        .raw("name", "\"Sietch Tabr — シーチ 🏜️\"")
        .raw("icon", "\"a_1269e74af4df7417b13759eae50c83dc\"")
        .null("description")
        .null("splash")
        .null("discovery_splash")
        .raw(
            "features",
            "[\"COMMUNITY\",\"NEWS\",\"ANIMATED_ICON\",\"INVITE_SPLASH\",\"ROLE_ICONS\"]",
        )
        .raw_bytes("emojis", &emojis(guild))
        .null("banner")
        .id("owner_id", g.user(r).id)
        .null("application_id")
        .null("afk_channel_id")
        .num("afk_timeout", 300)
        .id("system_channel_id", guild + 101)
        .bool("widget_enabled", false)
        .num("verification_level", 1)
        .raw_bytes("roles", &roles(guild, r))
        .num("default_message_notifications", 1)
        .num("mfa_level", 0)
        .num("explicit_content_filter", 2)
        .null("max_presences")
        .num("max_members", 500_000)
        .null("vanity_url_code")
        .num("premium_tier", 1)
        .num("premium_subscription_count", 3)
        .raw("preferred_locale", "\"en-US\"")
        .id("rules_channel_id", guild + 102)
        .id("public_updates_channel_id", guild + 102)
        .null("safety_alerts_channel_id")
        .num("nsfw_level", 0)
        .bool("premium_progress_bar_enabled", false)
        .raw("stickers", "[]")
        .raw_bytes("joined_at", &joined)
        .bool("large", members > 50)
        .bool("unavailable", false)
        .num("member_count", members as u64 + (r >> 40) % 10_000)
        .raw("voice_states", "[]")
        .raw_bytes("channels", &channels(guild, now))
        .raw("threads", "[]")
        .raw("stage_instances", "[]")
        .raw("guild_scheduled_events", "[]")
        .raw("soundboard_sounds", "[]")
        .bool("lazy", true)
        .null("hub_type")
        .null("incidents_data")
        .raw("embedded_activities", "[]")
        .raw("application_command_counts", "{\"1\":12,\"2\":0,\"3\":0}");

    let mut member_list = Vec::with_capacity(members * 600 + 2);
    let mut presence_list = Vec::with_capacity(members * 450 + 2);
    member_list.push(b'[');
    presence_list.push(b'[');
    for i in 0..members {
        let ri = mix(r ^ (i as u64).wrapping_mul(0x9E37));
        if i > 0 {
            member_list.push(b',');
            presence_list.push(b',');
        }
        let user = g.user(ri);
        let mut m = EventGen::member_obj(guild, ri >> 3, now - 86_400_000 * (ri % 1500));
        m.obj("user", &EventGen::user_obj(user), ri >> 6)
            .null("unusual_dm_activity_until")
            .null("avatar_decoration_data")
            .null("collectibles");
        m.write(ri >> 4, &mut member_list);
        let mut p = g.presence(user.id, ri);
        p.null("broadcast");
        p.write(ri >> 5, &mut presence_list);
    }
    member_list.push(b']');
    presence_list.push(b']');
    d.raw_bytes("members", &member_list)
        .raw_bytes("presences", &presence_list);
    d.finish(r >> 2)
}

fn roles(guild: u64, r: u64) -> Vec<u8> {
    const NAMES: &[&str] = &[
        "\"@everyone\"",
        "\"Naib 👑\"",
        "\"Fedaykin\"",
        "\"Former Naib\"",
        "\"Taqwa (waitlist)\"",
        "\"بدو\"",
    ];
    let mut out = Vec::with_capacity(NAMES.len() * 330);
    out.push(b'[');
    for (i, name) in NAMES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let color = if i == 0 {
            0
        } else {
            mix(guild + i as u64) % 0xFF_FFFF
        };
        let mut colors = Obj::with_capacity(80);
        colors
            .num("primary_color", color)
            .null("secondary_color")
            .null("tertiary_color");
        let mut o = Obj::with_capacity(320);
        o.raw("version", "1740000000000")
            .raw("unicode_emoji", if i == 1 { "\"👑\"" } else { "null" })
            .raw("tags", "{}")
            .id(
                "permissions",
                if i == 0 {
                    1_071_698_660_929
                } else {
                    2_248_473_465_835_073
                },
            )
            .num("position", i as u64)
            .raw("name", name)
            .bool("mentionable", i > 0)
            .bool("managed", false)
            .id("id", guild + i as u64)
            .null("icon")
            .bool("hoist", i == 1 || i == 2)
            .num("flags", 0)
            .obj("colors", &colors, 0)
            .num("color", color);
        o.write(r >> i, &mut out);
    }
    out.push(b']');
    out
}

fn emojis(guild: u64) -> Vec<u8> {
    const NAMES: &[&str] = &["spice", "sandworm", "bear_hug", "gm"];
    let mut out = Vec::with_capacity(NAMES.len() * 160);
    out.push(b'[');
    for (i, name) in NAMES.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut o = Obj::with_capacity(160);
        o.num("version", 0)
            .raw("roles", "[]")
            .bool("require_colons", true)
            .raw("name", &format!("\"{name}\""))
            .bool("managed", false)
            .id("id", guild + 500 + i as u64)
            .bool("available", true)
            .bool("animated", i == 1);
        o.write(i as u64, &mut out);
    }
    out.push(b']');
    out
}

fn channels(guild: u64, now: u64) -> Vec<u8> {
    // (offset, type, name, parent offset)
    const CHANNELS: &[(u64, u64, &str, Option<u64>)] = &[
        (100, 4, "\"📜 information\"", None),
        (101, 0, "\"général-💬\"", Some(100)),
        (102, 0, "\"rules\"", Some(100)),
        (103, 5, "\"announcements\"", Some(100)),
        (104, 0, "\"العربية\"", Some(100)),
        (105, 2, "\"Voice \\\"Lounge\\\"\"", Some(100)),
    ];
    let mut out = Vec::with_capacity(CHANNELS.len() * 300);
    out.push(b'[');
    for (i, (off, kind, name, parent)) in CHANNELS.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut o = Obj::with_capacity(320);
        o.num("version", 1_740_000_000_000)
            .num("type", *kind)
            .num("position", i as u64)
            .raw("permission_overwrites", &overwrites(guild))
            .raw("name", name)
            .id("id", guild + off)
            .num("flags", 0);
        if let Some(p) = parent {
            o.id("parent_id", guild + p);
        } else {
            o.null("parent_id");
        }
        match kind {
            0 | 5 => {
                o.raw("topic", "\"Read the \\\"rules\\\" first \\\\o/\"")
                    .num("rate_limit_per_user", 0)
                    .bool("nsfw", false)
                    .id("last_message_id", snowflake(now, i as u64));
            }
            2 => {
                o.num("user_limit", 0)
                    .null("rtc_region")
                    .num("bitrate", 64_000)
                    .id("last_message_id", snowflake(now, i as u64));
            }
            _ => {}
        }
        o.write(*off, &mut out);
    }
    out.push(b']');
    out
}

fn overwrites(guild: u64) -> String {
    let mut out = Vec::with_capacity(100);
    out.extend_from_slice(b"[{\"type\":0,\"id\":\"");
    push_u64(&mut out, guild);
    out.extend_from_slice(b"\",\"deny\":\"2048\",\"allow\":\"1024\"}]");
    String::from_utf8(out).expect("ASCII")
}
