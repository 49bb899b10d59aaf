//! Discord REST routes with rate limits: a small but real-shaped slice of
//! the API for exercising REST clients and proxies (PROTOCOL.md Part 2).
//!
//! | route | bucket (hash) | limit |
//! |---|---|---|
//! | `POST /channels/{c}/messages` | `msg-create` | `message_limit` (5 per 5 s) |
//! | `GET /channels/{c}/messages` | `msg-list` | 10 per 1 s, sliding |
//! | `GET /channels/{c}` | `channel-get` | 10 per 2 s |
//! | `PATCH /channels/{c}` | `channel-edit` | 10 per 10 s; name/topic: hidden sublimit |
//! | `DELETE /channels/{c}/messages/{m}` | by age: `del-young` 5/1 s, `del-old` 30/4 s, else `del-normal` 3/1 s whose header alternates with `del-normal-b` (hash cycling, api-docs #1295) |
//! | `PUT`/`DELETE …/reactions/{e}/@me`, `DELETE …/reactions/{e}/{u}` | `reactions` | 1 per 250 ms |
//! | `GET /channels/{c}/pins` | none: no rate-limit headers | — |
//! | `GET /guilds/{g}` | `guild-get` | 5 per 1 s |
//! | `GET /users/@me` | `user-me` | 5 per 5 s |
//! | `POST /interactions/{id}/{token}/callback` | `interaction-cb` per interaction | 5 per 5 s, global-exempt |
//! | `POST /webhooks/{id}/{token}`, `GET`/`PATCH`/`DELETE /webhooks/{id}/{token}/messages/{m}` | `webhook` per id + token | 5 per 2 s, global-exempt |
//! | `PUT`/`DELETE /guilds/{g}/members/{u}/roles/{r}` | `member-roles` per guild | `role_limit` (50 per 1 s) |
//! | `GET /guilds/{g}/members/{u}` | `member-get` per guild | 10 per 1 s |
//! | `POST /users/@me/channels` | `dm-open` | `dm_limit` (10 per 1 s) |
//! | `GET /applications/@me` | `app-me` | 5 per 5 s |
//! | `GET`/`PUT /applications/{app}/commands` | `app-commands` per application | 10 per 10 s |
//!
//! Bot routes need `Authorization: Bot <token>` (401 otherwise); the global
//! limit counts them, and any interaction or webhook request that carries
//! the bot's `Authorization` anyway (twilight #752). Interactions follow
//! Discord's lifecycle: [`Simulator::create_interaction`] stands for an
//! `INTERACTION_CREATE` sent now; its callback must come within 3 s (else
//! 404, code 10062) and only once (else 400, code 40060); its token then
//! works on the webhook routes for 15 minutes (else 401, code 50027).
//!
//! Guild members exist only when a test adds them
//! ([`Simulator::add_member`]); role changes on them are recorded
//! ([`RoleChange`]), and so is every message created ([`SentMessage`]),
//! with its recipient when the channel is a DM opened here. A bulk
//! overwrite of global commands is validated as Discord does (names,
//! lengths, option nesting and order, choices) and answered 400, code
//! 50035, naming the first problem.
//!
//! [`Simulator::add_member`]: super::Simulator::add_member
//!
//! [`Simulator::create_interaction`]: super::Simulator::create_interaction

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::interactions::{
    InteractionResponse, MAX_RECORDED, ResponseKind, ResponseLog, callback_problem,
    flags_and_content, message_problem,
};
use super::ratelimit::{
    BucketDef, Limits, Request, RestArrival, RestFault, RestStats, Verdict, WindowKind, body_429,
    retry_after_header,
};
use super::rest::{RestRequest, RestResponse, Router, json};

/// Discord's epoch in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// How the simulated REST API limits clients.
#[derive(Debug, Clone)]
pub struct RestSimConfig {
    /// Global requests per second per bot token.
    pub global_limit: u32,
    /// Delay before every answer of the rate-limited routes.
    pub latency: Duration,
    /// Extra random delay, up to this much.
    pub latency_jitter: Duration,
    /// `POST /channels/{c}/messages`: limit and window.
    pub message_limit: (u32, Duration),
    /// Window model of the buckets (except `msg-list`, always sliding).
    pub window_kind: WindowKind,
    /// Hidden sublimit of channel name/topic edits: count and window.
    pub rename_sublimit: (u32, Duration),
    /// Arrivals this soon after a pause began are not violations (they
    /// were in flight).
    pub violation_grace: Duration,
    /// How long after an interaction its callback is accepted.
    pub callback_window: Duration,
    /// How long an interaction token works on the webhook routes.
    pub token_lifetime: Duration,
    /// The application id in interactions and their webhook routes, and
    /// the only one whose commands may be overwritten.
    pub application_id: u64,
    /// `PUT`/`DELETE /guilds/{g}/members/{u}/roles/{r}`: limit and window
    /// (per guild).
    pub role_limit: (u32, Duration),
    /// `POST /users/@me/channels`: limit and window.
    pub dm_limit: (u32, Duration),
}

impl Default for RestSimConfig {
    fn default() -> Self {
        Self {
            global_limit: 50,
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            message_limit: (5, Duration::from_secs(5)),
            window_kind: WindowKind::Fixed,
            rename_sublimit: (2, Duration::from_secs(600)),
            violation_grace: Duration::from_millis(50),
            callback_window: Duration::from_secs(3),
            token_lifetime: Duration::from_secs(15 * 60),
            application_id: 1_100_000_000_000_000_001,
            role_limit: (50, Duration::from_secs(1)),
            dm_limit: (10, Duration::from_secs(1)),
        }
    }
}

/// An interaction the simulator stands ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInteraction {
    /// Interaction id.
    pub id: String,
    /// Interaction token (callback and webhook routes).
    pub token: String,
    /// Application id (webhook routes).
    pub application_id: String,
}

#[derive(Debug)]
struct InteractionState {
    token: String,
    created: Instant,
    acknowledged: bool,
    /// Discord's interaction type (2 command, 3 component, …).
    kind: u8,
}

/// One successful role change on a guild member, as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    /// The guild.
    pub guild_id: u64,
    /// The member.
    pub user_id: u64,
    /// The role.
    pub role_id: u64,
    /// `true` for `PUT` (added), `false` for `DELETE` (removed).
    pub added: bool,
    /// The `X-Audit-Log-Reason` header, percent-decoded.
    pub reason: Option<String>,
}

/// One message created with `POST /channels/{c}/messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The channel it went to.
    pub channel_id: u64,
    /// The recipient when the channel is a DM opened with
    /// `POST /users/@me/channels`.
    pub recipient_id: Option<u64>,
    /// Its `content` (empty when absent).
    pub content: String,
    /// The whole body (`null` when it was not JSON).
    pub body: serde_json::Value,
}

/// What the simulator keeps of a registered command: its id, version and
/// the body it was registered with (to keep the version when unchanged).
#[derive(Debug, Clone)]
struct CommandSlot {
    id: String,
    version: String,
    body: serde_json::Value,
}

#[derive(Debug, Default)]
struct State {
    limits: Limits,
    interactions: HashMap<String, InteractionState>,
    responses: ResponseLog,
    /// Roles of each member, by (guild, user).
    members: HashMap<(u64, u64), BTreeSet<u64>>,
    role_changes: VecDeque<RoleChange>,
    /// DM channel by recipient, and recipient by DM channel.
    dm_by_recipient: HashMap<u64, u64>,
    dm_recipient: HashMap<u64, u64>,
    messages: VecDeque<SentMessage>,
    /// The global commands as last overwritten (answer bodies).
    commands: Vec<serde_json::Value>,
    /// Ids and versions by (type, name), kept across overwrites.
    command_slots: HashMap<(u64, String), CommandSlot>,
    overwrites: u64,
}

/// Push onto a log bounded at [`MAX_RECORDED`].
fn push_bounded<T>(log: &mut VecDeque<T>, item: T) {
    if log.len() == MAX_RECORDED {
        log.pop_front();
    }
    log.push_back(item);
}

/// The REST side's shared state.
#[derive(Debug, Default)]
pub(crate) struct RestSim {
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl RestSim {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snowflake for now, unique in this simulator.
    pub(crate) fn snowflake(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        (now.saturating_sub(DISCORD_EPOCH_MS) << 22) | (n & 0x3f_ffff)
    }

    pub(crate) fn stats(&self) -> RestStats {
        self.state().limits.stats.clone()
    }

    pub(crate) fn arrivals(&self) -> Vec<RestArrival> {
        self.state().limits.arrivals.clone()
    }

    pub(crate) fn responses(&self) -> Vec<InteractionResponse> {
        self.state().responses.all()
    }

    pub(crate) fn responses_since(&self, after: Instant) -> Vec<InteractionResponse> {
        self.state().responses.since(after)
    }

    pub(crate) fn inject(&self, fault: RestFault) {
        self.state().limits.inject(fault);
    }

    pub(crate) fn add_member(&self, guild_id: u64, user_id: u64, roles: &[u64]) {
        self.state()
            .members
            .insert((guild_id, user_id), roles.iter().copied().collect());
    }

    pub(crate) fn remove_member(&self, guild_id: u64, user_id: u64) {
        self.state().members.remove(&(guild_id, user_id));
    }

    pub(crate) fn member_roles(&self, guild_id: u64, user_id: u64) -> Option<Vec<u64>> {
        self.state()
            .members
            .get(&(guild_id, user_id))
            .map(|r| r.iter().copied().collect())
    }

    pub(crate) fn role_changes(&self) -> Vec<RoleChange> {
        self.state().role_changes.iter().cloned().collect()
    }

    pub(crate) fn messages_sent(&self) -> Vec<SentMessage> {
        self.state().messages.iter().cloned().collect()
    }

    pub(crate) fn registered_commands(&self) -> Vec<serde_json::Value> {
        self.state().commands.clone()
    }

    pub(crate) fn command_overwrites(&self) -> u64 {
        self.state().overwrites
    }

    pub(crate) fn create_interaction(&self, cfg: &RestSimConfig) -> SimInteraction {
        self.register_interaction(cfg, 2)
    }

    /// Registers an interaction of Discord type `kind` created now.
    pub(crate) fn register_interaction(&self, cfg: &RestSimConfig, kind: u8) -> SimInteraction {
        let id = self.snowflake().to_string();
        let token = format!(
            "aW50ZXJhY3Rpb246{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        self.state().interactions.insert(
            id.clone(),
            InteractionState {
                token: token.clone(),
                created: Instant::now(),
                acknowledged: false,
                kind,
            },
        );
        SimInteraction {
            id,
            token,
            application_id: cfg.application_id.to_string(),
        }
    }
}

/// What a route is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bot,
    Callback,
    Webhook,
}

/// One route of the table: template (with `{}` for each param), kind and
/// which param is the top-level resource.
#[derive(Debug, Clone, Copy)]
struct Spec {
    template: &'static str,
    kind: Kind,
    answer: Answer,
}

/// The body a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Message,
    List,
    Channel,
    Guild,
    User,
    NoContent,
    /// `PUT`/`DELETE` of a member's role.
    MemberRole,
    /// A guild member object.
    Member,
    /// A DM channel opened.
    DmChannel,
    /// The application (`/applications/@me`).
    Application,
    /// The global commands (`GET` lists, `PUT` overwrites).
    Commands,
}

fn fixed(hash: &'static str, limit: u32, window_ms: u64, kind: WindowKind) -> BucketDef {
    BucketDef {
        hash,
        limit,
        window: Duration::from_millis(window_ms),
        kind,
        alternate: None,
    }
}

fn message_age_ms(message_id: &str) -> Option<u64> {
    let id: u64 = message_id.parse().ok()?;
    let created = (id >> 22) + DISCORD_EPOCH_MS;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())?;
    Some(now.saturating_sub(created))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The bucket of a route, given its params and body.
fn bucket(spec: &Spec, req: &RestRequest, method: &Method) -> Option<BucketDef> {
    let cfg = &req.sim.cfg.rest;
    let k = cfg.window_kind;
    let (limit, window) = cfg.message_limit;
    let ms = millis(window);
    Some(match (method.as_str(), spec.template) {
        ("POST", "/channels/{}/messages") => fixed("msg-create", limit, ms, k),
        ("GET", "/channels/{}/messages") => fixed("msg-list", 10, 1_000, WindowKind::Sliding),
        ("GET", "/channels/{}") => fixed("channel-get", 10, 2_000, k),
        ("PATCH", "/channels/{}") => fixed("channel-edit", 10, 10_000, k),
        ("DELETE", "/channels/{}/messages/{}") => {
            let age = req
                .params
                .get(1)
                .and_then(|m| message_age_ms(m))
                .unwrap_or(0);
            if age < 10_000 {
                fixed("del-young", 5, 1_000, k)
            } else if age > 14 * 86_400_000 {
                fixed("del-old", 30, 4_000, k)
            } else {
                BucketDef {
                    alternate: Some("del-normal-b"),
                    ..fixed("del-normal", 3, 1_000, k)
                }
            }
        }
        (_, t) if t.contains("/reactions/") => fixed("reactions", 1, 250, k),
        ("GET", "/channels/{}/pins") => return None,
        ("GET", "/guilds/{}") => fixed("guild-get", 5, 1_000, k),
        ("GET", "/users/@me") => fixed("user-me", 5, 5_000, k),
        (_, "/interactions/{}/{}/callback") => fixed("interaction-cb", 5, 5_000, k),
        (_, t) if t.starts_with("/webhooks/") => fixed("webhook", 5, 2_000, k),
        (_, "/guilds/{}/members/{}/roles/{}") => {
            let (limit, window) = cfg.role_limit;
            fixed("member-roles", limit, millis(window), k)
        }
        ("GET", "/guilds/{}/members/{}") => fixed("member-get", 10, 1_000, k),
        ("POST", "/users/@me/channels") => {
            let (limit, window) = cfg.dm_limit;
            fixed("dm-open", limit, millis(window), k)
        }
        ("GET", "/applications/@me") => fixed("app-me", 5, 5_000, k),
        (_, "/applications/{}/commands") => fixed("app-commands", 10, 10_000, k),
        _ => return None,
    })
}

/// The path with params filled in (under `/api/v10`).
fn fill(template: &str, params: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 40);
    let mut params = params.iter();
    let mut rest = template;
    while let Some(i) = rest.find("{}") {
        out.push_str(&rest[..i]);
        out.push_str(params.next().map_or("", String::as_str));
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

/// Discord's 50035 "Invalid Form Body", naming the field.
fn invalid_form(problem: &str) -> RestResponse {
    json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "code": 50_035,
            "message": "Invalid Form Body",
            "errors": { "_errors": [{ "code": "BASE_TYPE_INVALID", "message": problem }] },
        })
        .to_string(),
    )
}

fn discord_error(status: StatusCode, code: u32, message: &str) -> RestResponse {
    json(
        status,
        serde_json::json!({ "message": message, "code": code }).to_string(),
    )
}

async fn serve(req: RestRequest, method: Method, spec: Spec) -> RestResponse {
    let now = Instant::now();
    let sim = req.sim.clone();
    let cfg = &sim.cfg.rest;
    let expected = format!("Bot {}", sim.cfg.token);
    let bot_auth = req
        .headers
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let path = fill(spec.template, &req.params);
    let major = match spec.kind {
        Kind::Webhook => format!(
            "{}:{}",
            req.params[0],
            req.params.get(1).map_or("", String::as_str)
        ),
        _ if spec.template == "/users/@me" => String::new(),
        _ => req.params.first().cloned().unwrap_or_default(),
    };
    let counted = spec.kind == Kind::Bot || bot_auth;
    let sublimit = (method == Method::PATCH && spec.template == "/channels/{}")
        .then(|| serde_json::from_slice::<serde_json::Value>(&req.body).ok())
        .flatten()
        .filter(|v| v.get("name").is_some() || v.get("topic").is_some())
        .map(|_| {
            (
                format!("rename {major}"),
                cfg.rename_sublimit.0,
                cfg.rename_sublimit.1,
            )
        });
    let route = spec.template;
    let mut arrival = None;
    let mut response = if spec.kind == Kind::Bot && !bot_auth {
        let mut st = sim.rest.state();
        st.limits.stats.requests += 1;
        st.limits.stats.unauthorized += 1;
        st.limits.stats.invalid += 1;
        discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    } else {
        let (verdict, index) = sim.rest.state().limits.check(
            &Request {
                route,
                path: &path,
                major: &major,
                bucket: bucket(&spec, &req, &method),
                counted,
                bot_auth,
                sublimit,
            },
            now,
            cfg.global_limit,
            cfg.violation_grace,
        );
        arrival = Some(index);
        match verdict {
            Verdict::Status(status) => discord_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                0,
                "injected",
            ),
            Verdict::Limited {
                scope,
                retry_after,
                headers,
                global,
            } => {
                let mut resp = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    body_429(scope, retry_after, global),
                );
                set_headers(&mut resp, &headers);
                if let Ok(v) = HeaderValue::from_str(&retry_after_header(retry_after)) {
                    resp.headers_mut().insert(RETRY_AFTER, v);
                }
                resp
            }
            Verdict::Pass(headers) => {
                let mut resp = answer(&sim.rest, &req, &method, spec, cfg, now);
                if resp.status().is_success() {
                    set_headers(&mut resp, &headers);
                }
                resp
            }
        }
    };
    let status = response.status().as_u16();
    {
        let mut st = sim.rest.state();
        // A bot route's 401 for a missing token was counted above.
        if status == 403 || (status == 401 && spec.kind != Kind::Bot) {
            st.limits.stats.invalid += 1;
        }
        if let Some(arrival) = arrival.and_then(|i| st.limits.arrivals.get_mut(i)) {
            arrival.status = status;
        }
    }
    let delay = cfg.latency + cfg.latency_jitter.mul_f64(rand::random::<f64>());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
        .headers_mut()
        .insert("via", HeaderValue::from_static("1.1 google"));
    response
}

fn set_headers(resp: &mut RestResponse, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
}

fn answer(
    rest: &RestSim,
    req: &RestRequest,
    method: &Method,
    spec: Spec,
    cfg: &RestSimConfig,
    now: Instant,
) -> RestResponse {
    match spec.kind {
        Kind::Callback => {
            let (id, token) = (&req.params[0], &req.params[1]);
            let body: serde_json::Value =
                serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
            let mut st = rest.state();
            let Some(i) = st.interactions.get(id).filter(|i| &i.token == token) else {
                return discord_error(StatusCode::NOT_FOUND, 10_062, "Unknown interaction");
            };
            let since_emit = now.duration_since(i.created);
            let (late, acknowledged, kind) =
                (since_emit > cfg.callback_window, i.acknowledged, i.kind);
            let problem = callback_problem(kind, &body);
            let resp = if late {
                st.limits.stats.late_callbacks += 1;
                discord_error(StatusCode::NOT_FOUND, 10_062, "Unknown interaction")
            } else if acknowledged {
                st.limits.stats.duplicate_callbacks += 1;
                discord_error(
                    StatusCode::BAD_REQUEST,
                    40_060,
                    "Interaction has already been acknowledged.",
                )
            } else if let Some(problem) = problem {
                invalid_form(&problem)
            } else {
                if let Some(i) = st.interactions.get_mut(id) {
                    i.acknowledged = true;
                }
                json(StatusCode::NO_CONTENT, "")
            };
            let (flags, content) = flags_and_content(body.get("data"));
            let type_ = body
                .get("type")
                .and_then(serde_json::Value::as_u64)
                .and_then(|t| u8::try_from(t).ok())
                .unwrap_or(0);
            st.responses.push(InteractionResponse {
                interaction_id: id.clone(),
                kind: ResponseKind::Callback { type_ },
                status: resp.status().as_u16(),
                flags,
                content,
                body,
                since_emit,
                at: now,
            });
            return resp;
        }
        Kind::Webhook => {
            let token = &req.params[1];
            let body: serde_json::Value =
                serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
            let mut st = rest.state();
            let interaction = st
                .interactions
                .iter()
                .find(|(_, i)| &i.token == token)
                .map(|(id, i)| (id.clone(), i.created, i.acknowledged));
            if let Some((id, created, acknowledged)) = interaction {
                let original = req.params.get(2).is_some_and(|m| m == "@original");
                let kind = match (method.as_str(), original) {
                    ("PATCH", true) => Some(ResponseKind::EditOriginal),
                    ("DELETE", true) => Some(ResponseKind::DeleteOriginal),
                    ("GET", true) => Some(ResponseKind::GetOriginal),
                    ("POST", _) => Some(ResponseKind::Followup),
                    _ => None,
                };
                let resp = if now.duration_since(created) > cfg.token_lifetime {
                    Some(discord_error(
                        StatusCode::UNAUTHORIZED,
                        50_027,
                        "Invalid Webhook Token",
                    ))
                } else if !acknowledged {
                    // Before any callback there is no original message.
                    Some(if original {
                        discord_error(StatusCode::NOT_FOUND, 10_008, "Unknown Message")
                    } else {
                        discord_error(StatusCode::NOT_FOUND, 10_015, "Unknown Webhook")
                    })
                } else {
                    message_problem(&body).map(|p| invalid_form(&p))
                };
                if let Some(kind) = kind {
                    let (flags, content) = flags_and_content(Some(&body));
                    st.responses.push(InteractionResponse {
                        interaction_id: id,
                        kind,
                        status: resp
                            .as_ref()
                            .map_or(if method == Method::DELETE { 204 } else { 200 }, |r| {
                                r.status().as_u16()
                            }),
                        flags,
                        content,
                        body,
                        since_emit: now.duration_since(created),
                        at: now,
                    });
                }
                if let Some(resp) = resp {
                    return resp;
                }
            }
        }
        Kind::Bot => {
            if let Some(resp) = answer_bot(rest, req, method, spec, cfg) {
                return resp;
            }
        }
    }
    let channel = req.params.first().cloned().unwrap_or_default();
    match (spec.answer, method) {
        (
            Answer::NoContent
            | Answer::MemberRole
            | Answer::Member
            | Answer::DmChannel
            | Answer::Application
            | Answer::Commands,
            _,
        )
        | (_, &Method::DELETE) => json(StatusCode::NO_CONTENT, ""),
        (Answer::List, _) => json(StatusCode::OK, "[]"),
        (Answer::Message, _) => {
            let body = serde_json::from_slice::<serde_json::Value>(&req.body)
                .unwrap_or(serde_json::Value::Null);
            let content = body
                .get("content")
                .cloned()
                .unwrap_or(serde_json::Value::String(String::new()));
            if spec.kind == Kind::Bot && method == Method::POST {
                let channel_id = channel.parse().unwrap_or(0);
                let mut st = rest.state();
                let recipient_id = st.dm_recipient.get(&channel_id).copied();
                push_bounded(
                    &mut st.messages,
                    SentMessage {
                        channel_id,
                        recipient_id,
                        content: content.as_str().unwrap_or_default().to_owned(),
                        body,
                    },
                );
            }
            json(
                StatusCode::OK,
                serde_json::json!({
                    "id": rest.snowflake().to_string(),
                    "channel_id": channel,
                    "content": content,
                    "type": 0,
                })
                .to_string(),
            )
        }
        (Answer::Channel, _) => json(
            StatusCode::OK,
            serde_json::json!({ "id": channel, "type": 0, "name": "general" }).to_string(),
        ),
        (Answer::Guild, _) => json(
            StatusCode::OK,
            serde_json::json!({ "id": channel, "name": "Sim Guild" }).to_string(),
        ),
        (Answer::User, _) => json(
            StatusCode::OK,
            serde_json::json!({ "id": cfg.application_id.to_string(), "username": "arrakis-sim", "bot": true })
                .to_string(),
        ),
    }
}

/// A user object for `id` (the same shape interactions carry).
fn user_object(id: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "username": format!("user{}", id % 100_000),
        "global_name": null,
        "avatar": null,
        "discriminator": "0",
    })
}

/// `%XX` escapes decoded (invalid ones kept as they are), then UTF-8 read
/// leniently.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers of the bot routes that keep state (members, DMs, commands);
/// `None` for the others.
fn answer_bot(
    rest: &RestSim,
    req: &RestRequest,
    method: &Method,
    spec: Spec,
    cfg: &RestSimConfig,
) -> Option<RestResponse> {
    let id = |i: usize| req.params.get(i).and_then(|p| p.parse::<u64>().ok());
    Some(match spec.answer {
        Answer::MemberRole => {
            let (Some(guild_id), Some(user_id)) = (id(0), id(1)) else {
                return Some(unknown_member());
            };
            let Some(role_id) = id(2) else {
                return Some(discord_error(StatusCode::NOT_FOUND, 10_011, "Unknown Role"));
            };
            let added = method == Method::PUT;
            let reason = req
                .headers
                .get("x-audit-log-reason")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode);
            let mut st = rest.state();
            let Some(roles) = st.members.get_mut(&(guild_id, user_id)) else {
                return Some(unknown_member());
            };
            if added {
                roles.insert(role_id);
            } else {
                roles.remove(&role_id);
            }
            push_bounded(
                &mut st.role_changes,
                RoleChange {
                    guild_id,
                    user_id,
                    role_id,
                    added,
                    reason,
                },
            );
            json(StatusCode::NO_CONTENT, "")
        }
        Answer::Member => {
            let (Some(guild_id), Some(user_id)) = (id(0), id(1)) else {
                return Some(unknown_member());
            };
            let Some(roles) = rest.member_roles(guild_id, user_id) else {
                return Some(unknown_member());
            };
            let roles: Vec<String> = roles.iter().map(u64::to_string).collect();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "user": user_object(user_id),
                    "roles": roles,
                    "joined_at": "2025-01-01T00:00:00.000000+00:00",
                    "nick": null,
                    "avatar": null,
                    "premium_since": null,
                    "communication_disabled_until": null,
                    "pending": false,
                    "deaf": false,
                    "mute": false,
                    "flags": 0,
                })
                .to_string(),
            )
        }
        Answer::DmChannel => open_dm(rest, req),
        Answer::Application => json(
            StatusCode::OK,
            serde_json::json!({
                "id": cfg.application_id.to_string(),
                "name": "arrakis-sim",
                "description": "",
                "icon": null,
                "bot_public": false,
                "bot_require_code_grant": false,
                "flags": 0,
                "bot": {
                    "id": cfg.application_id.to_string(),
                    "username": "arrakis-sim",
                    "global_name": null,
                    "avatar": null,
                    "discriminator": "0",
                    "bot": true,
                },
            })
            .to_string(),
        ),
        Answer::Commands => {
            if id(0) != Some(cfg.application_id) {
                return Some(discord_error(
                    StatusCode::FORBIDDEN,
                    50_001,
                    "Missing Access",
                ));
            }
            if method == Method::PUT {
                overwrite_commands(rest, req, cfg)
            } else {
                let commands = rest.registered_commands();
                json(
                    StatusCode::OK,
                    serde_json::Value::Array(commands).to_string(),
                )
            }
        }
        _ => return None,
    })
}

fn unknown_member() -> RestResponse {
    discord_error(StatusCode::NOT_FOUND, 10_007, "Unknown Member")
}

/// `POST /users/@me/channels`: the recipient's DM channel, the same one
/// every time.
fn open_dm(rest: &RestSim, req: &RestRequest) -> RestResponse {
    let body: serde_json::Value =
        serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    let recipient = match body.get("recipient_id") {
        Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let Some(recipient) = recipient.filter(|&r| r > 0) else {
        let problem = if body.get("recipient_id").is_some() {
            FormError::new(
                &["recipient_id"],
                "NUMBER_TYPE_COERCE",
                "Value is not snowflake.",
            )
        } else {
            FormError::new(
                &["recipient_id"],
                "BASE_TYPE_REQUIRED",
                "This field is required",
            )
        };
        return problem.response();
    };
    let mut st = rest.state();
    let channel = match st.dm_by_recipient.get(&recipient) {
        Some(&c) => c,
        None => {
            let c = rest.snowflake();
            st.dm_by_recipient.insert(recipient, c);
            st.dm_recipient.insert(c, recipient);
            c
        }
    };
    json(
        StatusCode::OK,
        serde_json::json!({
            "id": channel.to_string(),
            "type": 1,
            "last_message_id": null,
            "flags": 0,
            "recipients": [user_object(recipient)],
        })
        .to_string(),
    )
}

/// `PUT /applications/{app}/commands`: validate, then replace the set.
fn overwrite_commands(rest: &RestSim, req: &RestRequest, cfg: &RestSimConfig) -> RestResponse {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50_109,
            "The request body contains invalid JSON.",
        );
    };
    let commands = match validate_commands(&body) {
        Ok(c) => c,
        Err(problem) => return problem.response(),
    };
    let application_id = cfg.application_id.to_string();
    let mut st = rest.state();
    let mut stored = Vec::with_capacity(commands.len());
    for command in commands {
        let mut c = command.as_object().cloned().unwrap_or_default();
        for key in ["id", "application_id", "version"] {
            c.remove(key);
        }
        let type_ = command_type(command);
        c.insert("type".to_owned(), type_.into());
        c.entry("description").or_insert_with(|| "".into());
        c.entry("default_member_permissions")
            .or_insert(serde_json::Value::Null);
        c.entry("nsfw").or_insert(false.into());
        let name = c
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content = serde_json::Value::Object(c.clone());
        let slot = match st.command_slots.get(&(type_, name.clone())) {
            Some(slot) if slot.body == content => slot.clone(),
            Some(slot) => CommandSlot {
                id: slot.id.clone(),
                version: rest.snowflake().to_string(),
                body: content,
            },
            None => CommandSlot {
                id: rest.snowflake().to_string(),
                version: rest.snowflake().to_string(),
                body: content,
            },
        };
        c.insert("id".to_owned(), slot.id.clone().into());
        c.insert("application_id".to_owned(), application_id.clone().into());
        c.insert("version".to_owned(), slot.version.clone().into());
        st.command_slots.insert((type_, name), slot);
        stored.push(serde_json::Value::Object(c));
    }
    st.commands.clone_from(&stored);
    st.overwrites += 1;
    json(StatusCode::OK, serde_json::Value::Array(stored).to_string())
}

/// The first problem Discord would name in a form body: where, its code
/// and message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FormError {
    path: Vec<String>,
    code: &'static str,
    message: String,
}

impl FormError {
    fn new(path: &[&str], code: &'static str, message: &str) -> Self {
        Self {
            path: path.iter().map(|&p| p.to_owned()).collect(),
            code,
            message: message.to_owned(),
        }
    }

    fn at(path: &[String], field: &str, code: &'static str, message: &str) -> Self {
        let mut path = path.to_vec();
        if !field.is_empty() {
            path.push(field.to_owned());
        }
        Self {
            path,
            code,
            message: message.to_owned(),
        }
    }

    /// 400, code 50035, with Discord's nested `errors`.
    fn response(&self) -> RestResponse {
        let leaf = serde_json::json!({
            "_errors": [{ "code": self.code, "message": self.message }],
        });
        let errors = self.path.iter().rev().fold(leaf, |inner, key| {
            let mut m = serde_json::Map::new();
            m.insert(key.clone(), inner);
            serde_json::Value::Object(m)
        });
        json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "code": 50_035,
                "message": "Invalid Form Body",
                "errors": errors,
            })
            .to_string(),
        )
    }
}

/// A command's `type` (1, chat input, when absent).
fn command_type(command: &serde_json::Value) -> u64 {
    command
        .get("type")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1)
}

/// A chat input command or option name: 1–32 of `-`, `_`, lowercase
/// letters (any script) and digits.
fn valid_chat_name(name: &str) -> bool {
    (1..=32).contains(&name.chars().count())
        && name.chars().all(|c| {
            c == '-'
                || c == '_'
                || c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || (!c.is_ascii() && c.is_alphanumeric() && !c.is_uppercase())
        })
}

fn bad_length(path: &[String], field: &str, min: usize, max: usize) -> FormError {
    FormError::at(
        path,
        field,
        "BASE_TYPE_BAD_LENGTH",
        &format!("Must be between {min} and {max} in length."),
    )
}

/// `field` of `value` as a string whose length is in `min..=max`.
fn check_text(
    value: &serde_json::Value,
    path: &[String],
    field: &str,
    min: usize,
    max: usize,
) -> Result<(), FormError> {
    match value.get(field) {
        Some(serde_json::Value::String(s)) if (min..=max).contains(&s.chars().count()) => Ok(()),
        Some(serde_json::Value::String(_)) => Err(bad_length(path, field, min, max)),
        None | Some(serde_json::Value::Null) if min > 0 => Err(FormError::at(
            path,
            field,
            "BASE_TYPE_REQUIRED",
            "This field is required",
        )),
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(_) => Err(FormError::at(
            path,
            field,
            "STRING_TYPE_CONVERT",
            "Could not interpret value as string.",
        )),
    }
}

/// A bulk overwrite body checked against Discord's rules; the commands, or
/// the first problem.
fn validate_commands(body: &serde_json::Value) -> Result<&[serde_json::Value], FormError> {
    let Some(commands) = body.as_array() else {
        return Err(FormError::new(&[], "BASE_TYPE_ARRAY", "Must be an array."));
    };
    if commands.len() > 100 {
        return Err(FormError::new(
            &[],
            "BASE_TYPE_MAX_LENGTH",
            "Must be 100 or fewer in length.",
        ));
    }
    let mut names = HashSet::new();
    for (i, command) in commands.iter().enumerate() {
        let path = vec![i.to_string()];
        if !command.is_object() {
            return Err(FormError::at(
                &path,
                "",
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            ));
        }
        let type_ = match command.get("type") {
            None | Some(serde_json::Value::Null) => 1,
            Some(t) => match t.as_u64().filter(|t| (1..=4).contains(t)) {
                Some(t) => t,
                None => {
                    return Err(FormError::at(
                        &path,
                        "type",
                        "BASE_TYPE_CHOICES",
                        "Value must be one of {1, 2, 3, 4}.",
                    ));
                }
            },
        };
        check_text(command, &path, "name", 1, 32)?;
        let name = command
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if type_ == 1 && !valid_chat_name(name) {
            return Err(FormError::at(
                &path,
                "name",
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            ));
        }
        if type_ == 1 {
            check_text(command, &path, "description", 1, 100)?;
        } else {
            check_text(command, &path, "description", 0, 0)?;
        }
        match command.get("default_member_permissions") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {}
            Some(_) => {
                return Err(FormError::at(
                    &path,
                    "default_member_permissions",
                    "NUMBER_TYPE_COERCE",
                    "Value is not a decimal permission string.",
                ));
            }
        }
        if !names.insert((type_, name)) {
            return Err(FormError::at(
                &path,
                "name",
                "APPLICATION_COMMAND_ALREADY_EXISTS",
                "Application command names must be unique",
            ));
        }
        if let Some(options) = command.get("options").filter(|o| !o.is_null()) {
            let mut path = path;
            path.push("options".to_owned());
            validate_options(options, &path, Level::Top)?;
        }
    }
    Ok(commands)
}

/// Where an options array sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// A command's own options.
    Top,
    /// A subcommand group's (subcommands only).
    Group,
    /// A subcommand's (no subcommands or groups).
    Subcommand,
}

fn options_problem(path: &[String], field: &str, message: &str) -> FormError {
    FormError::at(path, field, "APPLICATION_COMMAND_OPTIONS_INVALID", message)
}

/// One level of options checked: count, names, descriptions, types,
/// nesting, required-first, choices; then the levels below.
fn validate_options(
    options: &serde_json::Value,
    path: &[String],
    level: Level,
) -> Result<(), FormError> {
    let Some(options) = options.as_array() else {
        return Err(FormError::at(
            path,
            "",
            "BASE_TYPE_ARRAY",
            "Must be an array.",
        ));
    };
    if options.len() > 25 {
        return Err(FormError::at(
            path,
            "",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 25 or fewer in length.",
        ));
    }
    let (mut subcommands, mut plain, mut optional_seen) = (false, false, false);
    let mut names = HashSet::new();
    for (j, option) in options.iter().enumerate() {
        let mut here = path.to_vec();
        here.push(j.to_string());
        if !option.is_object() {
            return Err(FormError::at(
                &here,
                "",
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            ));
        }
        let Some(type_) = option
            .get("type")
            .and_then(serde_json::Value::as_u64)
            .filter(|t| (1..=11).contains(t))
        else {
            return Err(FormError::at(
                &here,
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.",
            ));
        };
        check_text(option, &here, "name", 1, 32)?;
        let name = option
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if !valid_chat_name(name) {
            return Err(FormError::at(
                &here,
                "name",
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            ));
        }
        if !names.insert(name) {
            return Err(FormError::at(
                &here,
                "name",
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            ));
        }
        check_text(option, &here, "description", 1, 100)?;
        let nested = type_ <= 2;
        match (type_, level) {
            (2, Level::Group | Level::Subcommand) => {
                return Err(options_problem(
                    &here,
                    "type",
                    "Subcommand groups may only be top-level options",
                ));
            }
            (1, Level::Subcommand) => {
                return Err(options_problem(
                    &here,
                    "type",
                    "Subcommands may not contain subcommands",
                ));
            }
            (3.., Level::Group) => {
                return Err(options_problem(
                    &here,
                    "type",
                    "Subcommand groups may only contain subcommands",
                ));
            }
            _ => {}
        }
        if (nested && plain) || (!nested && subcommands) {
            return Err(options_problem(
                &here,
                "type",
                "Subcommands and groups may not be mixed with other options",
            ));
        }
        subcommands |= nested;
        plain |= !nested;
        if !nested {
            let required = option
                .get("required")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if required && optional_seen {
                return Err(FormError::at(
                    &here,
                    "required",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                ));
            }
            optional_seen |= !required;
            check_choices(option, &here)?;
        }
        if let Some(inner) = option.get("options").filter(|o| !o.is_null()) {
            let below = match type_ {
                2 => Level::Group,
                1 => Level::Subcommand,
                _ => {
                    return Err(options_problem(
                        &here,
                        "options",
                        "Only subcommands and groups have options",
                    ));
                }
            };
            here.push("options".to_owned());
            validate_options(inner, &here, below)?;
        }
    }
    Ok(())
}

/// `choices`: at most 25, names 1–100, not with `autocomplete`.
fn check_choices(option: &serde_json::Value, path: &[String]) -> Result<(), FormError> {
    let choices = match option.get("choices") {
        None | Some(serde_json::Value::Null) => return Ok(()),
        Some(serde_json::Value::Array(c)) => c,
        Some(_) => {
            return Err(FormError::at(
                path,
                "choices",
                "BASE_TYPE_ARRAY",
                "Must be an array.",
            ));
        }
    };
    if choices.len() > 25 {
        return Err(FormError::at(
            path,
            "choices",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 25 or fewer in length.",
        ));
    }
    let autocomplete = option
        .get("autocomplete")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if autocomplete && !choices.is_empty() {
        return Err(FormError::at(
            path,
            "autocomplete",
            "APPLICATION_COMMAND_OPTIONS_AUTOCOMPLETE_CHOICES",
            "Autocomplete may not be enabled on an option with choices",
        ));
    }
    for (k, choice) in choices.iter().enumerate() {
        let mut here = path.to_vec();
        here.extend(["choices".to_owned(), k.to_string()]);
        check_text(choice, &here, "name", 1, 100)?;
    }
    Ok(())
}

/// Adds the rate-limited Discord routes to `router`.
pub(crate) fn routes(router: &mut Router) {
    let table: &[(Method, &'static str, &'static str, Kind, Answer)] = &[
        (
            Method::POST,
            "/api/v10/channels/{c}/messages",
            "/channels/{}/messages",
            Kind::Bot,
            Answer::Message,
        ),
        (
            Method::GET,
            "/api/v10/channels/{c}/messages",
            "/channels/{}/messages",
            Kind::Bot,
            Answer::List,
        ),
        (
            Method::GET,
            "/api/v10/channels/{c}",
            "/channels/{}",
            Kind::Bot,
            Answer::Channel,
        ),
        (
            Method::PATCH,
            "/api/v10/channels/{c}",
            "/channels/{}",
            Kind::Bot,
            Answer::Channel,
        ),
        (
            Method::DELETE,
            "/api/v10/channels/{c}/messages/{m}",
            "/channels/{}/messages/{}",
            Kind::Bot,
            Answer::NoContent,
        ),
        (
            Method::PUT,
            "/api/v10/channels/{c}/messages/{m}/reactions/{e}/{u}",
            "/channels/{}/messages/{}/reactions/{}/{}",
            Kind::Bot,
            Answer::NoContent,
        ),
        (
            Method::DELETE,
            "/api/v10/channels/{c}/messages/{m}/reactions/{e}/{u}",
            "/channels/{}/messages/{}/reactions/{}/{}",
            Kind::Bot,
            Answer::NoContent,
        ),
        (
            Method::GET,
            "/api/v10/channels/{c}/pins",
            "/channels/{}/pins",
            Kind::Bot,
            Answer::List,
        ),
        (
            Method::GET,
            "/api/v10/guilds/{g}",
            "/guilds/{}",
            Kind::Bot,
            Answer::Guild,
        ),
        (
            Method::GET,
            "/api/v10/users/@me",
            "/users/@me",
            Kind::Bot,
            Answer::User,
        ),
        (
            Method::POST,
            "/api/v10/interactions/{i}/{t}/callback",
            "/interactions/{}/{}/callback",
            Kind::Callback,
            Answer::NoContent,
        ),
        (
            Method::POST,
            "/api/v10/webhooks/{w}/{t}",
            "/webhooks/{}/{}",
            Kind::Webhook,
            Answer::Message,
        ),
        (
            Method::GET,
            "/api/v10/webhooks/{w}/{t}/messages/{m}",
            "/webhooks/{}/{}/messages/{}",
            Kind::Webhook,
            Answer::Message,
        ),
        (
            Method::PATCH,
            "/api/v10/webhooks/{w}/{t}/messages/{m}",
            "/webhooks/{}/{}/messages/{}",
            Kind::Webhook,
            Answer::Message,
        ),
        (
            Method::DELETE,
            "/api/v10/webhooks/{w}/{t}/messages/{m}",
            "/webhooks/{}/{}/messages/{}",
            Kind::Webhook,
            Answer::NoContent,
        ),
        (
            Method::PUT,
            "/api/v10/guilds/{g}/members/{u}/roles/{r}",
            "/guilds/{}/members/{}/roles/{}",
            Kind::Bot,
            Answer::MemberRole,
        ),
        (
            Method::DELETE,
            "/api/v10/guilds/{g}/members/{u}/roles/{r}",
            "/guilds/{}/members/{}/roles/{}",
            Kind::Bot,
            Answer::MemberRole,
        ),
        (
            Method::GET,
            "/api/v10/guilds/{g}/members/{u}",
            "/guilds/{}/members/{}",
            Kind::Bot,
            Answer::Member,
        ),
        (
            Method::POST,
            "/api/v10/users/@me/channels",
            "/users/@me/channels",
            Kind::Bot,
            Answer::DmChannel,
        ),
        (
            Method::GET,
            "/api/v10/applications/@me",
            "/applications/@me",
            Kind::Bot,
            Answer::Application,
        ),
        (
            Method::GET,
            "/api/v10/applications/{a}/commands",
            "/applications/{}/commands",
            Kind::Bot,
            Answer::Commands,
        ),
        (
            Method::PUT,
            "/api/v10/applications/{a}/commands",
            "/applications/{}/commands",
            Kind::Bot,
            Answer::Commands,
        ),
    ];
    for (method, pattern, template, kind, answer) in table {
        let spec = Spec {
            template,
            kind: *kind,
            answer: *answer,
        };
        let m = method.clone();
        router.route(method.clone(), pattern, move |req| {
            serve(req, m.clone(), spec)
        });
    }
}

#[cfg(test)]
#[path = "discord_rest_tests.rs"]
mod tests;
