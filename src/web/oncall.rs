//! The on-call API: who is on call in each rotation now and next, and overrides (someone
//! else takes a rotation's turns for a while). Bearer token as for incidents. An
//! override is in the store at once and in the engine's hands within its next tick (a
//! second): a level that names the rotation pages whoever it says.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{ApiError, IncidentApi, authorize};
use crate::oncall::{Override, Rotation, Shift, Why};
use crate::text::time::rfc3339 as rfc;

/// The longest override taken: a longer absence is a change of the rotation itself.
const LONGEST: Duration = Duration::from_secs(90 * 86_400);

pub fn routes(api: IncidentApi) -> Router {
    Router::new()
        .route("/api/v1/oncall", get(who))
        .route("/api/v1/oncall/overrides", post(add))
        .route("/api/v1/oncall/overrides/{id}/cancel", post(cancel))
        .with_state(api)
}

#[derive(Serialize)]
pub struct ShiftView {
    pub who: String,
    pub from: String,
    pub until: String,
    /// `turn` or `override`.
    pub why: &'static str,
    /// For a turn: the member's place (1-based) of how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<(usize, usize)>,
    /// For an override: its id and who set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

fn shift_view(s: &Shift) -> ShiftView {
    let (why, turn, override_id, by) = match &s.why {
        Why::Turn { index, of } => ("turn", Some((index + 1, *of)), None, None),
        Why::Override { id, by } => ("override", None, Some(*id), Some(by.clone())),
    };
    ShiftView {
        who: s.who.clone(),
        from: rfc(s.from),
        until: rfc(s.until),
        why,
        turn,
        override_id,
        by,
    }
}

#[derive(Serialize)]
pub struct RotationView {
    pub rotation: String,
    pub members: Vec<String>,
    pub every: String,
    pub timezone: String,
    pub now: ShiftView,
    pub next: ShiftView,
    pub overrides: Vec<Override>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn who(State(api): State<IncidentApi>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    let now = api.clock.now();
    let overrides = api.store.lock().overrides(now).map_err(unavailable)?;
    let config = api.config.get();
    let out: Vec<RotationView> = config
        .rotations
        .values()
        .map(|r| RotationView {
            rotation: r.name.clone(),
            members: r.members.clone(),
            every: crate::config::fmt_dur(r.every),
            timezone: r.timezone.name().to_string(),
            now: shift_view(&r.on_call(&overrides, now)),
            next: shift_view(&r.next(&overrides, now)),
            overrides: overrides
                .iter()
                .filter(|o| o.rotation == r.name)
                .cloned()
                .collect(),
        })
        .collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    pub rotation: String,
    /// A member's address, the part of it before `@` when that names one member, or
    /// another address (a stand-in from outside the rotation).
    pub who: String,
    /// RFC 3339; now when left out.
    pub from: Option<String>,
    /// RFC 3339, or a duration from `from` (`8h`, `3d`).
    pub until: String,
    pub by: Option<String>,
}

/// The address `who` names in `r`.
pub fn member(r: &Rotation, who: &str) -> Result<String, String> {
    let who = who.trim();
    if who.contains('@') {
        return if crate::config::valid_email(who) {
            Ok(who.to_string())
        } else {
            Err(format!("`who`: `{who}` is not an email address"))
        };
    }
    let found: Vec<&String> = r
        .members
        .iter()
        .filter(|m| {
            m.split('@')
                .next()
                .is_some_and(|local| local.eq_ignore_ascii_case(who))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "`who`: `{who}` is no member of rotation {} (members: {}); give a member or a full address",
            r.name,
            r.members.join(", ")
        )),
        many => Err(format!(
            "`who`: `{who}` names {} members ({}); give the full address",
            many.len(),
            many.iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A time as the API takes it: RFC 3339 with `Z` or an offset.
fn time(s: &str, key: &str) -> Result<SystemTime, ApiError> {
    crate::text::time::parse_time(s).map_err(|e| bad(format!("`{key}`: {e}")))
}

async fn add(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    body: Result<Json<NewOverride>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    let Json(o) = body.map_err(|e| bad(format!("bad request body: {}", e.body_text())))?;
    let config = api.config.get();
    let Some(rotation) = config.rotations.get(&o.rotation) else {
        let names: Vec<&str> = config.rotations.keys().map(|k| k.as_str()).collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no rotation `{}` ({})",
                o.rotation,
                if names.is_empty() {
                    "none is configured: add one under `rotations:`".to_string()
                } else {
                    format!("rotations: {}", names.join(", "))
                }
            ),
        ));
    };
    let who = member(rotation, &o.who).map_err(bad)?;
    let now = api.clock.now();
    let from = match o.from.as_deref() {
        None | Some("now") => now,
        Some(s) => time(s, "from")?,
    };
    let until = match crate::text::time::parse_duration(&o.until) {
        Ok(d) if !d.is_zero() => from + d,
        _ => time(&o.until, "until")?,
    };
    if until <= from {
        return Err(bad("`until` must come after `from`"));
    }
    if until <= now {
        return Err(bad("the override is over already: `until` is in the past"));
    }
    if until.duration_since(from).unwrap_or_default() > LONGEST {
        return Err(bad(
            "an override is at most 90 days: for longer, change the rotation's members in probes.yaml",
        ));
    }
    let by = o.by.unwrap_or_else(|| "api".into());
    if by.chars().count() > 100 || by.contains(['\r', '\n']) {
        return Err(bad("`by` is one line of at most 100 characters"));
    }
    let mut stored = Override {
        id: 0,
        rotation: rotation.name.clone(),
        who,
        from,
        until,
        by,
    };
    stored.id = api
        .store
        .lock()
        .add_override(&stored, now)
        .map_err(unavailable)?;
    tracing::info!(id = stored.id, rotation = %stored.rotation, who = %stored.who, from = %rfc(from), until = %rfc(until), by = %stored.by, "on-call override added");
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

async fn cancel(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&api, &headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| bad(format!("`{id}` is not an override id (a number)")))?;
    let now = api.clock.now();
    let done = api
        .store
        .lock()
        .cancel_override(id, now)
        .map_err(unavailable)?;
    if !done {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no override {id} to cancel (it may be cancelled already)"),
        ));
    }
    tracing::info!(id, "on-call override cancelled");
    Ok(Json(serde_json::json!({ "cancelled": id })).into_response())
}
