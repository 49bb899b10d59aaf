//! Interactions end to end: an `INTERACTION_CREATE` emitted over the
//! gateway whose callback and webhook routes the REST side then accepts,
//! validates as Discord does, and records.
//!
//! Discord's rules checked here (developer docs, "Receiving and Responding"):
//! the callback types an interaction type accepts (command: 4, 5, 9;
//! component: 4–7, 9; autocomplete: 8 only; modal submit: 4–7), at most 25
//! autocomplete choices, message content of at most 2,000 characters and
//! at most 10 embeds. The 3 s window, the single callback and the 15-minute
//! token are enforced by the REST routes (`discord_rest`).

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

/// Most responses kept; older ones are dropped so a flood cannot grow the
/// record without bound.
pub(crate) const MAX_RECORDED: usize = 100_000;

/// What kind of interaction to emit.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractionKind {
    /// A slash command (type 2) with its options array.
    Command {
        /// Command name.
        name: String,
        /// Discord's `options` array.
        options: Value,
    },
    /// A button or select menu (type 3).
    Component {
        /// The component's custom id.
        custom_id: String,
        /// 2 button, 3 string select, …
        component_type: u8,
        /// The values chosen in a select menu (`data.values`; empty for a
        /// button, and then not sent).
        values: Vec<String>,
    },
    /// Autocomplete of a command option (type 4): one option is `focused`.
    Autocomplete {
        /// Command name.
        name: String,
        /// Discord's `options` array.
        options: Value,
    },
    /// A modal submitted (type 5).
    ModalSubmit {
        /// The modal's custom id.
        custom_id: String,
        /// Its action rows with the values typed.
        components: Value,
    },
}

impl InteractionKind {
    /// Discord's interaction `type`.
    #[must_use]
    pub fn type_number(&self) -> u8 {
        match self {
            Self::Command { .. } => 2,
            Self::Component { .. } => 3,
            Self::Autocomplete { .. } => 4,
            Self::ModalSubmit { .. } => 5,
        }
    }
}

/// An interaction to emit with [`Simulator::emit_interaction`].
///
/// [`Simulator::emit_interaction`]: super::Simulator::emit_interaction
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionSpec {
    /// What it is.
    pub kind: InteractionKind,
    /// Its guild (`None`: the receiving shard's first guild).
    pub guild_id: Option<u64>,
    /// Who triggered it.
    pub user_id: u64,
    /// The channel.
    pub channel_id: u64,
    /// The member's permissions bitfield (`8` is ADMINISTRATOR).
    pub permissions: u64,
    /// The user's locale.
    pub locale: String,
}

impl InteractionSpec {
    fn new(kind: InteractionKind) -> Self {
        Self {
            kind,
            guild_id: None,
            user_id: 300_000_000_000_000_001,
            channel_id: 81_384_788_765_712_385,
            permissions: 0,
            locale: "en-US".to_owned(),
        }
    }

    /// `/name` with Discord's `options` array.
    #[must_use]
    pub fn command(name: &str, options: Value) -> Self {
        Self::new(InteractionKind::Command {
            name: name.to_owned(),
            options,
        })
    }

    /// A click on the button `custom_id`.
    #[must_use]
    pub fn button(custom_id: &str) -> Self {
        Self::new(InteractionKind::Component {
            custom_id: custom_id.to_owned(),
            component_type: 2,
            values: Vec::new(),
        })
    }

    /// A choice of `values` in the string select `custom_id`.
    #[must_use]
    pub fn select(custom_id: &str, values: &[&str]) -> Self {
        Self::new(InteractionKind::Component {
            custom_id: custom_id.to_owned(),
            component_type: 3,
            values: values.iter().map(|&v| v.to_owned()).collect(),
        })
    }

    /// Autocomplete of `/name`, `options` holding one `focused` option.
    #[must_use]
    pub fn autocomplete(name: &str, options: Value) -> Self {
        Self::new(InteractionKind::Autocomplete {
            name: name.to_owned(),
            options,
        })
    }

    /// Submission of the modal `custom_id` with its rows.
    #[must_use]
    pub fn modal_submit(custom_id: &str, components: Value) -> Self {
        Self::new(InteractionKind::ModalSubmit {
            custom_id: custom_id.to_owned(),
            components,
        })
    }

    /// In `guild`.
    #[must_use]
    pub fn guild(mut self, guild: u64) -> Self {
        self.guild_id = Some(guild);
        self
    }

    /// By `user`.
    #[must_use]
    pub fn user(mut self, user: u64) -> Self {
        self.user_id = user;
        self
    }

    /// With the member's `permissions`.
    #[must_use]
    pub fn permissions(mut self, permissions: u64) -> Self {
        self.permissions = permissions;
        self
    }

    /// The `d` of its `INTERACTION_CREATE`.
    pub(crate) fn payload(&self, id: &str, token: &str, application_id: &str, guild: u64) -> Value {
        let data = match &self.kind {
            InteractionKind::Command { name, options }
            | InteractionKind::Autocomplete { name, options } => json!({
                "id": "1200000000000000001", "name": name, "type": 1, "options": options,
            }),
            InteractionKind::Component {
                custom_id,
                component_type,
                values,
            } => {
                let mut data = json!({ "custom_id": custom_id, "component_type": component_type });
                if *component_type != 2 || !values.is_empty() {
                    data["values"] = json!(values);
                }
                data
            }
            InteractionKind::ModalSubmit {
                custom_id,
                components,
            } => json!({ "custom_id": custom_id, "components": components }),
        };
        let mut d = json!({
            "version": 1,
            "type": self.kind.type_number(),
            "token": token,
            "id": id,
            "application_id": application_id,
            "guild_id": guild.to_string(),
            "channel_id": self.channel_id.to_string(),
            "guild_locale": "en-US",
            "locale": self.locale,
            "app_permissions": "2248473465835073",
            "entitlements": [],
            "authorizing_integration_owners": { "0": guild.to_string() },
            "context": 0,
            "member": {
                "user": {
                    "id": self.user_id.to_string(),
                    "username": format!("user{}", self.user_id % 100_000),
                    "global_name": null, "avatar": null, "discriminator": "0",
                },
                "roles": [], "permissions": self.permissions.to_string(),
                "joined_at": "2025-01-01T00:00:00.000000+00:00",
                "nick": null, "pending": false, "deaf": false, "mute": false, "flags": 0,
            },
            "data": data,
        });
        if matches!(self.kind, InteractionKind::Component { .. }) {
            d["message"] = json!({
                "id": "1300000000000000001", "channel_id": self.channel_id.to_string(),
                "content": "", "type": 0, "components": [],
            });
        }
        d
    }
}

/// An interaction the simulator emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedInteraction {
    /// Interaction id.
    pub id: String,
    /// Its token.
    pub token: String,
    /// The application id of its webhook routes.
    pub application_id: String,
    /// The dispatch's sequence number.
    pub seq: u64,
    /// Its guild.
    pub guild_id: u64,
}

/// What a response to an interaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `POST /interactions/{id}/{token}/callback` with this `type`.
    Callback {
        /// The callback type (4 message, 5 deferred, 6, 7, 8, 9).
        type_: u8,
    },
    /// `PATCH /webhooks/{app}/{token}/messages/@original`.
    EditOriginal,
    /// `POST /webhooks/{app}/{token}`.
    Followup,
    /// `DELETE /webhooks/{app}/{token}/messages/@original`.
    DeleteOriginal,
    /// `GET /webhooks/{app}/{token}/messages/@original`.
    GetOriginal,
}

/// One response the bot sent for an interaction, as the simulator saw it.
#[derive(Debug, Clone)]
pub struct InteractionResponse {
    /// The interaction's id.
    pub interaction_id: String,
    /// Which route and callback type.
    pub kind: ResponseKind,
    /// The status the simulator answered.
    pub status: u16,
    /// Message flags sent (`data.flags` of a callback, `flags` of a
    /// webhook body).
    pub flags: Option<u64>,
    /// Message content sent.
    pub content: Option<String>,
    /// The whole body.
    pub body: Value,
    /// From the interaction's emission to this request's arrival.
    pub since_emit: Duration,
    /// When it arrived.
    pub at: Instant,
}

/// Why Discord would refuse a callback body for an interaction of
/// `interaction_type`, if it would.
pub(crate) fn callback_problem(interaction_type: u8, body: &Value) -> Option<String> {
    let Some(t) = body.get("type").and_then(Value::as_u64) else {
        return Some("type: required".to_owned());
    };
    let allowed: &[u64] = match interaction_type {
        2 => &[4, 5, 9],
        3 => &[4, 5, 6, 7, 9],
        4 => &[8],
        5 => &[4, 5, 6, 7],
        _ => &[],
    };
    if !allowed.contains(&t) {
        return Some(format!(
            "type: {t} is not valid for interaction type {interaction_type}"
        ));
    }
    let data = body.get("data");
    if t == 8 {
        let choices = data
            .and_then(|d| d.get("choices"))
            .and_then(Value::as_array);
        match choices {
            None => return Some("data.choices: required".to_owned()),
            Some(c) if c.len() > 25 => return Some("data.choices: at most 25".to_owned()),
            Some(_) => {}
        }
    }
    data.and_then(message_problem)
}

/// Why Discord would refuse a message body, if it would.
pub(crate) fn message_problem(message: &Value) -> Option<String> {
    if let Some(content) = message.get("content").and_then(Value::as_str)
        && content.chars().count() > 2000
    {
        return Some("content: must be 2000 or fewer in length".to_owned());
    }
    if message
        .get("embeds")
        .and_then(Value::as_array)
        .is_some_and(|e| e.len() > 10)
    {
        return Some("embeds: at most 10".to_owned());
    }
    None
}

/// A bounded log of responses.
#[derive(Debug, Default)]
pub(crate) struct ResponseLog {
    entries: VecDeque<InteractionResponse>,
}

impl ResponseLog {
    pub(crate) fn push(&mut self, response: InteractionResponse) {
        if self.entries.len() == MAX_RECORDED {
            self.entries.pop_front();
        }
        self.entries.push_back(response);
    }

    pub(crate) fn all(&self) -> Vec<InteractionResponse> {
        self.entries.iter().cloned().collect()
    }

    pub(crate) fn since(&self, after: Instant) -> Vec<InteractionResponse> {
        self.entries
            .iter()
            .filter(|r| r.at > after)
            .cloned()
            .collect()
    }
}

/// `flags` and `content` of a callback's `data` or a webhook body.
pub(crate) fn flags_and_content(message: Option<&Value>) -> (Option<u64>, Option<String>) {
    let flags = message.and_then(|m| m.get("flags")).and_then(Value::as_u64);
    let content = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (flags, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_types_follow_the_interaction_type() {
        assert_eq!(
            callback_problem(2, &json!({"type": 5, "data": {"flags": 64}})),
            None
        );
        assert!(
            callback_problem(2, &json!({"type": 6})).is_some(),
            "no update for a command"
        );
        assert!(callback_problem(2, &json!({"type": 8, "data": {"choices": []}})).is_some());
        assert_eq!(
            callback_problem(3, &json!({"type": 7, "data": {"content": "x"}})),
            None
        );
        assert_eq!(
            callback_problem(4, &json!({"type": 8, "data": {"choices": []}})),
            None
        );
        assert!(
            callback_problem(4, &json!({"type": 5})).is_some(),
            "autocomplete cannot defer"
        );
        assert!(
            callback_problem(4, &json!({"type": 8})).is_some(),
            "choices required"
        );
        let many: Vec<Value> = (0..26)
            .map(|i| json!({"name": i.to_string(), "value": i}))
            .collect();
        assert!(callback_problem(4, &json!({"type": 8, "data": {"choices": many}})).is_some());
        assert!(
            callback_problem(5, &json!({"type": 9})).is_some(),
            "no modal from a modal"
        );
        assert!(
            callback_problem(2, &json!({"data": {}})).is_some(),
            "type required"
        );
    }

    #[test]
    fn message_limits() {
        assert!(message_problem(&json!({"content": "é".repeat(2001)})).is_some());
        assert_eq!(message_problem(&json!({"content": "é".repeat(2000)})), None);
        let embeds: Vec<Value> = (0..11).map(|_| json!({})).collect();
        assert!(message_problem(&json!({"embeds": embeds})).is_some());
    }

    #[test]
    fn payloads_carry_what_a_bot_reads() {
        let spec = InteractionSpec::button("dir:next").user(42).permissions(8);
        let d = spec.payload("7", "tok", "11", 99);
        assert_eq!(d["type"], 3);
        assert_eq!(d["member"]["user"]["id"], "42");
        assert_eq!(d["member"]["permissions"], "8");
        assert_eq!(d["data"]["custom_id"], "dir:next");
        assert!(d.get("message").is_some());
        assert_eq!(d["guild_id"], "99");
        assert!(d["data"].get("values").is_none());
        let d = InteractionSpec::select("pick", &["a", "b"]).payload("7", "tok", "11", 99);
        assert_eq!(d["data"]["component_type"], 3);
        assert_eq!(d["data"]["values"], json!(["a", "b"]));
    }

    #[test]
    fn the_log_is_bounded() {
        let mut log = ResponseLog::default();
        let r = InteractionResponse {
            interaction_id: "1".into(),
            kind: ResponseKind::Followup,
            status: 200,
            flags: None,
            content: None,
            body: Value::Null,
            since_emit: Duration::ZERO,
            at: Instant::now(),
        };
        for _ in 0..MAX_RECORDED + 5 {
            log.push(r.clone());
        }
        assert_eq!(log.all().len(), MAX_RECORDED);
    }
}
