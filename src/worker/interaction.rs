//! Interactions: the `INTERACTION_CREATE` payload, the replies a handler
//! gives, and the callback bodies Discord expects for them.
//!
//! Discord's rules (PROTOCOL.md, interactions): the first response — the
//! callback — must arrive within 3 s of the interaction's creation and only
//! once; the token then works for 15 minutes on the webhook routes (edit
//! `@original`, followups). Callback types: 4 message, 5 deferred message
//! (the "thinking…" state; its ephemeral flag is fixed then), 6 deferred
//! update and 7 update (components only), 8 autocomplete choices (cannot be
//! deferred), 9 modal.

use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::Snowflake;

/// `type` of an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InteractionKind {
    /// 1: only sent to HTTP endpoints.
    Ping,
    /// 2: a slash command.
    Command,
    /// 3: a button or select menu.
    Component,
    /// 4: autocomplete of a command option.
    Autocomplete,
    /// 5: a modal was submitted.
    ModalSubmit,
}

impl InteractionKind {
    fn from_type(t: u8) -> Option<Self> {
        Some(match t {
            1 => Self::Ping,
            2 => Self::Command,
            3 => Self::Component,
            4 => Self::Autocomplete,
            5 => Self::ModalSubmit,
            _ => return None,
        })
    }

    /// A short name for metrics and logs.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Command => "command",
            Self::Component => "component",
            Self::Autocomplete => "autocomplete",
            Self::ModalSubmit => "modal_submit",
        }
    }
}

/// An interaction token: a credential for this interaction's webhook
/// routes. Never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct InteractionToken(String);

impl InteractionToken {
    /// The token, for building a route path only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for InteractionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<interaction token>")
    }
}

/// A command option (possibly a subcommand with options of its own).
#[derive(Debug, Clone, Deserialize)]
pub struct CommandOption {
    /// Option name.
    pub name: String,
    /// Option type (1 subcommand, 2 group, 3 string, 4 integer, …).
    #[serde(rename = "type")]
    pub kind: u8,
    /// The value, for non-subcommand options.
    #[serde(default)]
    pub value: Option<Value>,
    /// Set on the option being typed, in autocomplete.
    #[serde(default)]
    pub focused: bool,
    /// Nested options of a subcommand or group.
    #[serde(default)]
    pub options: Vec<CommandOption>,
}

/// `data` of an interaction.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InteractionData {
    /// Command name (commands, autocomplete).
    #[serde(default)]
    pub name: Option<String>,
    /// Options given (commands, autocomplete).
    #[serde(default)]
    pub options: Vec<CommandOption>,
    /// Component or modal custom id.
    #[serde(default)]
    pub custom_id: Option<String>,
    /// Component type (2 button, 3 string select, …).
    #[serde(default)]
    pub component_type: Option<u8>,
    /// Selected values of a select menu.
    #[serde(default)]
    pub values: Vec<String>,
    /// Modal rows as sent.
    #[serde(default)]
    pub components: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct UserObject {
    id: Snowflake,
}

#[derive(Debug, Clone, Deserialize)]
struct MemberObject {
    user: UserObject,
    #[serde(default)]
    permissions: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    id: Snowflake,
    application_id: Snowflake,
    #[serde(rename = "type")]
    kind: u8,
    token: InteractionToken,
    #[serde(default)]
    guild_id: Option<Snowflake>,
    #[serde(default)]
    channel_id: Option<Snowflake>,
    #[serde(default)]
    member: Option<MemberObject>,
    #[serde(default)]
    user: Option<UserObject>,
    #[serde(default)]
    data: Option<InteractionData>,
    #[serde(default)]
    locale: Option<String>,
}

/// An interaction as handlers see it.
#[derive(Debug, Clone)]
pub struct Interaction {
    /// Interaction id.
    pub id: u64,
    /// The bot's application id (webhook routes).
    pub application_id: u64,
    /// What kind of interaction.
    pub kind: InteractionKind,
    /// Credential for the callback and webhook routes.
    pub token: InteractionToken,
    /// The guild, absent in DMs.
    pub guild_id: Option<u64>,
    /// The channel.
    pub channel_id: Option<u64>,
    /// Who triggered it.
    pub user_id: u64,
    /// The member's permissions in the channel (bitfield), in guilds.
    pub permissions: u64,
    /// `data`.
    pub data: InteractionData,
    /// The user's locale.
    pub locale: Option<String>,
}

/// The ADMINISTRATOR permission bit.
pub const ADMINISTRATOR: u64 = 1 << 3;

impl Interaction {
    /// Parses an `INTERACTION_CREATE` `d`.
    ///
    /// # Errors
    ///
    /// What is missing or malformed (never the token).
    pub fn parse(d: &str) -> Result<Self, String> {
        let wire: Wire = serde_json::from_str(d).map_err(|e| e.to_string())?;
        let kind = InteractionKind::from_type(wire.kind)
            .ok_or_else(|| format!("unknown interaction type {}", wire.kind))?;
        // The token becomes a path segment of the callback route: one with
        // a `/`, `?` or `%` would name another route. Discord's tokens are
        // URL-safe base64 text.
        let token = wire.token.expose();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("token is not URL-safe text".to_owned());
        }
        let (user_id, permissions) = match (&wire.member, &wire.user) {
            (Some(m), _) => (
                m.user.id.0,
                m.permissions
                    .as_deref()
                    .map(|p| {
                        p.parse::<u64>()
                            .map_err(|_| "member.permissions is not a bitfield".to_owned())
                    })
                    .transpose()?
                    .unwrap_or(0),
            ),
            (None, Some(u)) => (u.id.0, 0),
            (None, None) if kind == InteractionKind::Ping => (0, 0),
            (None, None) => return Err("neither member nor user".to_owned()),
        };
        Ok(Self {
            id: wire.id.0,
            application_id: wire.application_id.0,
            kind,
            token: wire.token,
            guild_id: wire.guild_id.map(|g| g.0),
            channel_id: wire.channel_id.map(|c| c.0),
            user_id,
            permissions,
            data: wire.data.unwrap_or_default(),
            locale: wire.locale,
        })
    }

    /// Whether the member has ADMINISTRATOR.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.permissions & ADMINISTRATOR != 0
    }

    /// The command name, for commands and autocomplete.
    #[must_use]
    pub fn command_name(&self) -> Option<&str> {
        self.data.name.as_deref()
    }

    /// The innermost options: below the subcommand (and group), if any.
    #[must_use]
    pub fn leaf_options(&self) -> &[CommandOption] {
        let mut options = &self.data.options[..];
        while let [only] = options
            && matches!(only.kind, 1 | 2)
        {
            options = &only.options;
        }
        options
    }

    /// The subcommand path, e.g. `["override", "add"]`.
    #[must_use]
    pub fn subcommands(&self) -> Vec<&str> {
        let mut path = Vec::new();
        let mut options = &self.data.options[..];
        while let [only] = options
            && matches!(only.kind, 1 | 2)
        {
            path.push(only.name.as_str());
            options = &only.options;
        }
        path
    }

    /// A string option's value.
    #[must_use]
    pub fn option_str(&self, name: &str) -> Option<&str> {
        self.leaf_options()
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.value.as_ref())
            .and_then(Value::as_str)
    }

    /// The option being typed, in autocomplete: name and partial value.
    #[must_use]
    pub fn focused(&self) -> Option<(&str, &str)> {
        self.leaf_options().iter().find(|o| o.focused).map(|o| {
            (
                o.name.as_str(),
                o.value.as_ref().and_then(Value::as_str).unwrap_or(""),
            )
        })
    }

    /// `POST /interactions/{id}/{token}/callback`.
    #[must_use]
    pub fn callback_path(&self) -> String {
        format!("/interactions/{}/{}/callback", self.id, self.token.expose())
    }

    /// `/webhooks/{application}/{token}/messages/@original`.
    #[must_use]
    pub fn original_path(&self) -> String {
        format!(
            "/webhooks/{}/{}/messages/@original",
            self.application_id,
            self.token.expose()
        )
    }

    /// `/webhooks/{application}/{token}` (followups).
    #[must_use]
    pub fn followup_path(&self) -> String {
        format!("/webhooks/{}/{}", self.application_id, self.token.expose())
    }
}

/// Message flag: only the invoking user sees it.
pub const EPHEMERAL: u64 = 1 << 6;
/// Longest message content Discord accepts.
pub const MAX_CONTENT: usize = 2000;
/// Most autocomplete choices Discord accepts.
pub const MAX_CHOICES: usize = 25;

/// A message a handler answers with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// Text (cut to 2,000 characters when sent).
    pub content: String,
    /// Only the invoking user sees it.
    pub ephemeral: bool,
    /// Embeds, as Discord's JSON.
    pub embeds: Vec<Value>,
    /// Action rows, as Discord's JSON.
    pub components: Vec<Value>,
}

impl Message {
    /// A message only the caller sees.
    #[must_use]
    pub fn ephemeral(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ephemeral: true,
            ..Self::default()
        }
    }

    /// A message everyone in the channel sees.
    #[must_use]
    pub fn public(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }

    /// The message object Discord expects (callback `data`, webhook body).
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut m = json!({
            "content": cut(&self.content, MAX_CONTENT),
            "allowed_mentions": { "parse": [] },
        });
        if self.ephemeral {
            m["flags"] = json!(EPHEMERAL);
        }
        if !self.embeds.is_empty() {
            m["embeds"] = Value::Array(self.embeds.iter().take(10).cloned().collect());
        }
        if !self.components.is_empty() {
            m["components"] = Value::Array(self.components.clone());
        }
        m
    }
}

/// An autocomplete choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// What the user sees (1–100 characters).
    pub name: String,
    /// What is filled in.
    pub value: Value,
}

/// What a handler answers an interaction with.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A new message (callback 4, or the deferred original's content).
    Message(Message),
    /// Update the message the component is on (callback 7).
    Update(Message),
    /// Acknowledge a component without changing anything (callback 6).
    Acknowledge,
    /// Autocomplete choices (callback 8).
    Choices(Vec<Choice>),
    /// Open a modal (callback 9): `custom_id`, `title`, rows.
    Modal {
        /// The modal's custom id.
        custom_id: String,
        /// Its title.
        title: String,
        /// Its action rows (text inputs).
        components: Vec<Value>,
    },
}

/// Callback type numbers.
pub mod callback {
    /// A message.
    pub const MESSAGE: u8 = 4;
    /// Deferred message ("thinking…").
    pub const DEFERRED_MESSAGE: u8 = 5;
    /// Deferred update of the component's message.
    pub const DEFERRED_UPDATE: u8 = 6;
    /// Update of the component's message.
    pub const UPDATE: u8 = 7;
    /// Autocomplete choices.
    pub const AUTOCOMPLETE: u8 = 8;
    /// A modal.
    pub const MODAL: u8 = 9;
}

impl Reply {
    /// The callback body answering with this reply right away.
    #[must_use]
    pub fn callback_body(&self) -> Value {
        match self {
            Self::Message(m) => json!({ "type": callback::MESSAGE, "data": m.to_json() }),
            Self::Update(m) => json!({ "type": callback::UPDATE, "data": m.to_json() }),
            Self::Acknowledge => json!({ "type": callback::DEFERRED_UPDATE }),
            Self::Choices(choices) => json!({
                "type": callback::AUTOCOMPLETE,
                "data": { "choices": choices.iter().take(MAX_CHOICES).map(|c| json!({
                    "name": cut(&c.name, 100),
                    "value": c.value,
                })).collect::<Vec<_>>() },
            }),
            Self::Modal {
                custom_id,
                title,
                components,
            } => json!({
                "type": callback::MODAL,
                "data": { "custom_id": custom_id, "title": cut(title, 45), "components": components },
            }),
        }
    }

    /// The body for `PATCH @original` once the response was deferred, if
    /// this reply can be sent that way (a modal or choices cannot).
    #[must_use]
    pub fn edit_body(&self) -> Option<Value> {
        match self {
            Self::Message(m) | Self::Update(m) => {
                let mut body = m.to_json();
                // The ephemeral flag was fixed by the deferral.
                if let Some(o) = body.as_object_mut() {
                    o.remove("flags");
                }
                Some(body)
            }
            Self::Acknowledge | Self::Choices(_) | Self::Modal { .. } => None,
        }
    }
}

/// The deferral callback body for `kind`: type 5 (with the flags the
/// final message needs) for commands and modals, type 6 for components.
#[must_use]
pub fn defer_body(kind: InteractionKind, ephemeral: bool) -> Value {
    match kind {
        InteractionKind::Component => json!({ "type": callback::DEFERRED_UPDATE }),
        _ if ephemeral => {
            json!({ "type": callback::DEFERRED_MESSAGE, "data": { "flags": EPHEMERAL } })
        }
        _ => json!({ "type": callback::DEFERRED_MESSAGE }),
    }
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND: &str = r#"{"id":"11","application_id":"22","type":2,"token":"tok-secret",
        "guild_id":"33","channel_id":"44","locale":"en-US",
        "member":{"user":{"id":"55"},"permissions":"8"},
        "data":{"id":"1","name":"admin-eligibility","type":1,"options":[
            {"name":"override","type":2,"options":[{"name":"add","type":1,"options":[
                {"name":"wallet","type":3,"value":"0xabc","focused":true}]}]}]}}"#;

    #[test]
    fn a_command_parses_with_its_subcommand_path() {
        let i = Interaction::parse(COMMAND).unwrap();
        assert_eq!((i.id, i.application_id, i.user_id), (11, 22, 55));
        assert_eq!(i.kind, InteractionKind::Command);
        assert!(i.is_admin());
        assert_eq!(i.command_name(), Some("admin-eligibility"));
        assert_eq!(i.subcommands(), vec!["override", "add"]);
        assert_eq!(i.option_str("wallet"), Some("0xabc"));
        assert_eq!(i.focused(), Some(("wallet", "0xabc")));
        assert_eq!(i.callback_path(), "/interactions/11/tok-secret/callback");
        assert_eq!(
            i.original_path(),
            "/webhooks/22/tok-secret/messages/@original"
        );
    }

    #[test]
    fn the_token_stays_out_of_debug() {
        let i = Interaction::parse(COMMAND).unwrap();
        assert!(!format!("{i:?}").contains("tok-secret"));
    }

    #[test]
    fn a_dm_interaction_has_a_user_and_no_permissions() {
        let i = Interaction::parse(
            r#"{"id":"1","application_id":"2","type":3,"token":"t","user":{"id":"9"},
                "data":{"custom_id":"dir:next","component_type":2}}"#,
        )
        .unwrap();
        assert_eq!((i.user_id, i.permissions, i.guild_id), (9, 0, None));
        assert_eq!(i.data.custom_id.as_deref(), Some("dir:next"));
    }

    #[test]
    fn malformed_interactions_are_refused() {
        for bad in [
            r#"{"id":"1","application_id":"2","type":99,"token":"t","user":{"id":"9"}}"#,
            r#"{"id":"1","application_id":"2","type":2,"token":"t"}"#,
            r#"{"id":"x","application_id":"2","type":2,"token":"t","user":{"id":"9"}}"#,
            r#"{"id":"1","application_id":"2","type":2,"token":"t","member":{"user":{"id":"9"},"permissions":"all"}}"#,
            // A token that would change the callback route.
            r#"{"id":"1","application_id":"2","type":2,"token":"t/../../channels/5/messages","user":{"id":"9"}}"#,
            r#"{"id":"1","application_id":"2","type":2,"token":"t?x=1","user":{"id":"9"}}"#,
            r#"{"id":"1","application_id":"2","type":2,"token":"","user":{"id":"9"}}"#,
        ] {
            assert!(Interaction::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn callback_bodies_follow_discord() {
        let m = Message::ephemeral("x".repeat(2100));
        let body = Reply::Message(m.clone()).callback_body();
        assert_eq!(body["type"], 4);
        assert_eq!(body["data"]["flags"], 64);
        assert_eq!(body["data"]["content"].as_str().unwrap().len(), 2000);
        assert_eq!(Reply::Acknowledge.callback_body()["type"], 6);
        assert_eq!(Reply::Update(m.clone()).callback_body()["type"], 7);
        let choices: Vec<Choice> = (0..30)
            .map(|n| Choice {
                name: format!("c{n}"),
                value: json!(n),
            })
            .collect();
        let body = Reply::Choices(choices).callback_body();
        assert_eq!(body["type"], 8);
        assert_eq!(body["data"]["choices"].as_array().unwrap().len(), 25);
        assert!(
            Reply::Message(m)
                .edit_body()
                .unwrap()
                .get("flags")
                .is_none()
        );
        assert!(Reply::Choices(vec![]).edit_body().is_none());
    }

    #[test]
    fn deferrals_keep_the_ephemeral_flag_and_components_defer_as_updates() {
        assert_eq!(
            defer_body(InteractionKind::Command, true),
            json!({"type":5,"data":{"flags":64}})
        );
        assert_eq!(
            defer_body(InteractionKind::ModalSubmit, false),
            json!({"type":5})
        );
        assert_eq!(
            defer_body(InteractionKind::Component, true),
            json!({"type":6})
        );
    }
}
