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
//!
//! Bot routes need `Authorization: Bot <token>` (401 otherwise); the global
//! limit counts them, and any interaction or webhook request that carries
//! the bot's `Authorization` anyway (twilight #752). Interactions follow
//! Discord's lifecycle: [`Simulator::create_interaction`] stands for an
//! `INTERACTION_CREATE` sent now; its callback must come within 3 s (else
//! 404, code 10062) and only once (else 400, code 40060); its token then
//! works on the webhook routes for 15 minutes (else 401, code 50027).
//!
//! [`Simulator::create_interaction`]: super::Simulator::create_interaction

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::interactions::{
    InteractionResponse, ResponseKind, ResponseLog, callback_problem, flags_and_content,
    message_problem,
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
    /// The application id in interactions and their webhook routes.
    pub application_id: u64,
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

#[derive(Debug, Default)]
struct State {
    limits: Limits,
    interactions: HashMap<String, InteractionState>,
    responses: ResponseLog,
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

/// The bucket of a route, given its params and body.
fn bucket(spec: &Spec, req: &RestRequest, method: &Method) -> Option<BucketDef> {
    let cfg = &req.sim.cfg.rest;
    let k = cfg.window_kind;
    let (limit, window) = cfg.message_limit;
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
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
        if matches!(status, 401 | 403) && spec.kind != Kind::Bot {
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
        Kind::Bot => {}
    }
    let channel = req.params.first().cloned().unwrap_or_default();
    match (spec.answer, method) {
        (Answer::NoContent, _) | (_, &Method::DELETE) => json(StatusCode::NO_CONTENT, ""),
        (Answer::List, _) => json(StatusCode::OK, "[]"),
        (Answer::Message, _) => {
            let content = serde_json::from_slice::<serde_json::Value>(&req.body)
                .ok()
                .and_then(|v| v.get("content").cloned())
                .unwrap_or(serde_json::Value::String(String::new()));
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
