//! HTTP control routes for the standalone simulator, served on the REST port
//! under `/_sim/` (outside Discord's `/api/` tree, so they never shadow a
//! Discord route).
//!
//! - `POST /_sim/inject?shard=N&fault=NAME` — inject a fault (names as in
//!   [`Fault`]'s `FromStr`: `drop`, `close-4000`, `split-3`, ...).
//! - `POST /_sim/emit?shard=N&event=KIND` — emit one event (`message-create`,
//!   `presence-update`, `typing-start`, `guild-member-add`,
//!   `interaction-create`, `guild-create-<members>`).
//! - `POST /_sim/load?rate=N` — replace the background load (0 stops it).
//! - `GET /_sim/stats` — counters as JSON.

use std::collections::BTreeMap;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::events::EventKind;
use super::fault::Fault;
use super::load::LoadHandle;
use super::rest::{RestRequest, RestResponse, Router, json};

/// Add the control routes to `router`.
pub(crate) fn routes(router: &mut Router) {
    router.route(Method::POST, "/_sim/inject", inject);
    router.route(Method::POST, "/_sim/emit", emit);
    router.route(Method::POST, "/_sim/load", load);
    router.route(Method::GET, "/_sim/stats", stats);
}

fn bad_request(message: impl std::fmt::Display) -> RestResponse {
    json(
        StatusCode::BAD_REQUEST,
        json!({ "error": message.to_string() }).to_string(),
    )
}

fn shard_param(req: &RestRequest) -> Option<u32> {
    req.query.get("shard").and_then(|s| s.parse().ok())
}

async fn inject(req: RestRequest) -> RestResponse {
    let Some(shard) = shard_param(&req) else {
        return bad_request("shard=<number> is required");
    };
    let fault: Fault = match req.query.get("fault").map(|f| f.parse()) {
        Some(Ok(f)) => f,
        Some(Err(e)) => return bad_request(e),
        None => return bad_request("fault=<name> is required"),
    };
    req.sim.inject(shard, fault.clone());
    json(
        StatusCode::OK,
        json!({ "ok": true, "shard": shard, "fault": fault.to_string() }).to_string(),
    )
}

/// Parse an event name of the emit route.
fn event_kind(name: &str) -> Option<EventKind> {
    Some(match name {
        "message-create" => EventKind::MessageCreate,
        "presence-update" => EventKind::PresenceUpdate,
        "typing-start" => EventKind::TypingStart,
        "guild-member-add" => EventKind::GuildMemberAdd,
        "interaction-create" => EventKind::InteractionCreate,
        other => EventKind::GuildCreate {
            members: other.strip_prefix("guild-create-")?.parse().ok()?,
        },
    })
}

async fn emit(req: RestRequest) -> RestResponse {
    let Some(shard) = shard_param(&req) else {
        return bad_request("shard=<number> is required");
    };
    let Some(kind) = req.query.get("event").and_then(|e| event_kind(e)) else {
        return bad_request(
            "event=message-create|presence-update|typing-start|guild-member-add|\
             interaction-create|guild-create-<members> is required",
        );
    };
    match req.sim.emit(shard, &kind) {
        Some(seq) => json(
            StatusCode::OK,
            json!({ "ok": true, "seq": seq }).to_string(),
        ),
        None => json(
            StatusCode::CONFLICT,
            json!({ "error": format!("shard {shard} has no session") }).to_string(),
        ),
    }
}

async fn load(req: RestRequest) -> RestResponse {
    let Some(rate) = req.query.get("rate").and_then(|r| r.parse::<u32>().ok()) else {
        return bad_request("rate=<events per second> is required");
    };
    let previous = req.sim.set_control_load(rate).await;
    json(
        StatusCode::OK,
        json!({ "ok": true, "rate": rate, "previous_load_emitted": previous }).to_string(),
    )
}

async fn stats(req: RestRequest) -> RestResponse {
    let sim = &req.sim;
    let load_emitted = sim
        .control_load
        .lock()
        .await
        .as_ref()
        .map_or(0, LoadHandle::emitted);
    let (dispatched, remaining, shards) = {
        let mut st = sim.state();
        let now = tokio::time::Instant::now();
        let mut ids: Vec<u32> = st.shards.keys().copied().collect();
        ids.sort_unstable();
        let shards: Vec<_> = ids
            .into_iter()
            .filter_map(|id| {
                st.status(id, now, &sim.cfg).map(|s| {
                    json!({
                        "shard": id,
                        "session_id": s.session_id,
                        "connected": s.connected,
                        "ready": s.ready,
                        "last_seq": s.last_seq,
                        "resumable": s.resumable,
                    })
                })
            })
            .collect();
        (st.dispatched, st.remaining, shards)
    };
    let rec = sim.rec();
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for v in &rec.violations {
        let name = format!("{v:?}");
        let name = name.split([' ', '{']).next().unwrap_or("").to_owned();
        *by_kind.entry(name).or_default() += 1;
    }
    let body = json!({
        "connections": sim.connections(),
        "identifies": rec.identifies.len(),
        "resumes": rec.resumes.len(),
        "resumes_accepted": rec.resumes.iter().filter(|r| r.accepted).count(),
        "violations": rec.violations.len(),
        "violations_by_kind": by_kind,
        "emitted": dispatched,
        "load_emitted": load_emitted,
        "session_start_remaining": remaining,
        "shards": shards,
    });
    drop(rec);
    json(StatusCode::OK, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert_eq!(event_kind("typing-start"), Some(EventKind::TypingStart));
        assert_eq!(
            event_kind("guild-create-500"),
            Some(EventKind::GuildCreate { members: 500 })
        );
        assert_eq!(event_kind("guild-create-x"), None);
        assert_eq!(event_kind("ready"), None);
    }
}
