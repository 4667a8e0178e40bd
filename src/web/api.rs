//! The incident API: list and show incidents, acknowledge, set an ETA, resolve. Every route
//! needs `Authorization: Bearer <token>` with the token from the environment variable the
//! config names (`TOCSIN_API_TOKEN` by default). An incident is named by its id or by its
//! service's id (the service's open incident).

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::engine::{EngineError, Handle};
use crate::incident::{Event, PublicUpdate, UpdateState};
use crate::probe::Secret;
use crate::store::{IncidentRecord, SharedStore};
use crate::text::time::{serialize_rfc3339, serialize_rfc3339_opt};

/// What the incident routes need.
#[derive(Clone)]
pub struct IncidentApi {
    pub engine: Handle,
    pub store: SharedStore,
    /// None: the variable is unset, and every request is refused.
    pub token: Option<Secret>,
    /// The variable's name, for the refusal message.
    pub token_env: String,
    pub clock: Arc<dyn Clock>,
    /// Verifies the signed links in staff mails.
    pub signer: Arc<crate::links::Signer>,
    /// The running config (the staff time zone of ETAs, service names for pages).
    pub config: crate::config::LiveConfig,
    /// The languages customer templates exist in (an update's texts are in these).
    pub languages: Arc<Vec<String>>,
}

impl IncidentApi {
    /// An update as staff wrote it, checked: texts in the templates' languages, the
    /// default one (the status page's) as `text`.
    pub fn update(
        &self,
        state: &str,
        text: &str,
        texts: std::collections::BTreeMap<String, String>,
        by: &str,
    ) -> Result<PublicUpdate, String> {
        let state = UpdateState::parse(state)?;
        let default = self.config.get().page_language.clone();
        let langs: Vec<&str> = self
            .languages
            .iter()
            .map(String::as_str)
            .filter(|l| *l != default)
            .collect();
        PublicUpdate::new(state, text, texts, by, &langs)
    }
}

pub fn routes(api: IncidentApi) -> Router {
    Router::new()
        .route("/api/v1/incidents", get(list))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/eta", post(eta))
        .route("/api/v1/incidents/{id}/resolve", post(resolve))
        .route("/api/v1/incidents/{id}/updates", post(post_update))
        .with_state(api)
}

/// An error the caller can act on, as `{"error": "..."}`.
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownService(_) | EngineError::NoIncident(_) => {
                ApiError(StatusCode::NOT_FOUND, e.to_string())
            }
            EngineError::EtaInPast => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            EngineError::Stopped => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            EngineError::Store(s) => {
                tracing::error!(error = %s, "API: store failure");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the incident store is unavailable; try again".into(),
                )
            }
        }
    }
}

/// Compares without an early exit, so the time taken says nothing about the token.
/// Compares a given token with the real one in time that depends on neither: both are
/// hashed first, so not even the length shows in the timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (x, y) = (
        ring::digest::digest(&ring::digest::SHA256, a),
        ring::digest::digest(&ring::digest::SHA256, b),
    );
    x.as_ref()
        .iter()
        .zip(y.as_ref())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

pub(crate) fn authorize(api: &IncidentApi, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &api.token else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "the API is disabled: set the environment variable {} for tocsin",
                api.token_env
            ),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.trim().as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(StatusCode::UNAUTHORIZED, "wrong token".into())),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`".into(),
        )),
    }
}

/// An incident as the API shows it.
#[derive(Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub service: String,
    #[serde(serialize_with = "serialize_rfc3339")]
    pub started: SystemTime,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_rfc3339_opt"
    )]
    pub ended: Option<SystemTime>,
    /// down, recovering, or resolved.
    pub state: String,
    /// staff, or customer once customers have been told.
    pub phase: &'static str,
    pub acknowledged_by: Option<String>,
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub eta: Option<SystemTime>,
    /// Staff's updates for customers, oldest first.
    pub updates: Vec<UpdateView>,
    pub timeline: Vec<TimelineView>,
}

#[derive(Serialize)]
pub struct UpdateView {
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: SystemTime,
    #[serde(flatten)]
    pub update: PublicUpdate,
    /// Mailed to the customers told of the outage.
    pub notified: bool,
}

#[derive(Serialize)]
pub struct TimelineView {
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: SystemTime,
    pub kind: String,
    pub detail: String,
}

fn view(api: &IncidentApi, i: IncidentRecord) -> IncidentView {
    let state = if i.ended.is_some() {
        "resolved".to_string()
    } else {
        match api.engine.snapshot().statuses.get(&i.service) {
            Some(status) => serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            None => "unknown".into(),
        }
    };
    IncidentView {
        id: i.id,
        service: i.service,
        started: i.started,
        ended: i.ended,
        state,
        phase: if i.customer_phase {
            "customer"
        } else {
            "staff"
        },
        acknowledged_by: i.acked_by,
        eta: i.eta,
        updates: i
            .timeline
            .iter()
            .filter_map(|e| match &e.event {
                crate::incident::TimelineEvent::Update { update, notified } => Some(UpdateView {
                    at: e.at,
                    update: update.clone(),
                    notified: *notified,
                }),
                _ => None,
            })
            .collect(),
        timeline: i
            .timeline
            .into_iter()
            .map(|e| TimelineView {
                at: e.at,
                kind: e.kind().to_string(),
                detail: e.detail(),
            })
            .collect(),
    }
}

fn incidents(api: &IncidentApi, open_only: bool) -> Result<Vec<IncidentRecord>, ApiError> {
    api.store
        .lock()
        .incidents(open_only)
        .map_err(|e| ApiError::from(EngineError::Store(e)))
}

/// The incident named by `id`: a number, or a service id (its open incident).
fn find(api: &IncidentApi, id: &str) -> Result<IncidentRecord, ApiError> {
    let store = api.store.lock();
    let found = match id.parse::<i64>() {
        Ok(n) => store.incident(n),
        Err(_) => store.open_incident_of(id),
    }
    .map_err(|e| ApiError::from(EngineError::Store(e)))?;
    found.ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no incident `{id}` (give an incident id, or a service id with an open incident)"
            ),
        )
    })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    open: bool,
}

async fn list(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<IncidentView>>, ApiError> {
    authorize(&api, &headers)?;
    Ok(Json(
        incidents(&api, q.open)?
            .into_iter()
            .map(|i| view(&api, i))
            .collect(),
    ))
}

async fn show(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(&api, &headers)?;
    let i = find(&api, &id)?;
    Ok(Json(view(&api, i)))
}

#[derive(Deserialize, Default)]
struct By {
    by: Option<String>,
}

#[derive(Deserialize)]
struct EtaBody {
    /// A duration from now (`4h`, `90m`) or an RFC 3339 time.
    eta: String,
    by: Option<String>,
}

fn body<T: serde::de::DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json(raw, "invalid JSON body")
}

/// A JSON request body; a 400 saying `expected` (what the body should look like) and
/// what is wrong with it otherwise.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    raw: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_slice(raw)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{expected}: {e}")))
}

/// Applies a command to the open incident named by `id`.
async fn command(
    api: &IncidentApi,
    id: &str,
    event: Event,
) -> Result<Json<IncidentView>, ApiError> {
    let inc = find(api, id)?;
    if inc.ended.is_some() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("incident {} is already resolved", inc.id),
        ));
    }
    api.engine.command(&inc.service, event).await?;
    let now = find(api, &inc.id.to_string())?;
    Ok(Json(view(api, now)))
}

/// Ack and resolve: a command whose body is at most `{"by": "..."}`.
async fn by_command(
    api: &IncidentApi,
    headers: &HeaderMap,
    id: &str,
    raw: &[u8],
    make: fn(String) -> Event,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(api, headers)?;
    let b: By = body(raw)?;
    command(api, id, make(b.by.unwrap_or_else(|| "api".into()))).await
}

async fn ack(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    by_command(&api, &headers, &id, &raw, |by| Event::Ack { by }).await
}

async fn resolve(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    by_command(&api, &headers, &id, &raw, |by| Event::Resolve { by }).await
}

async fn eta(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(&api, &headers)?;
    let b: EtaBody = json(&raw, "invalid JSON body (expected {\"eta\": \"4h\"})")?;
    let now = api.clock.now();
    let eta = parse_eta(&api.config.get(), &b.eta, now)
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    command(
        &api,
        &id,
        Event::Eta {
            eta,
            by: b.by.unwrap_or_else(|| "api".into()),
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    state: String,
    text: String,
    #[serde(default)]
    texts: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    notify: bool,
    by: Option<String>,
}

/// `POST /api/v1/incidents/{id}/updates`: staff's own words for customers, shown at once
/// on the status page and in the feeds; with `notify` in the customer phase, mailed to
/// everyone told. `state: resolved` resolves the incident.
async fn post_update(
    State(api): State<IncidentApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Json<IncidentView>, ApiError> {
    authorize(&api, &headers)?;
    let b: UpdateBody = json(
        &raw,
        "invalid JSON body (expected {\"state\": \"identified\", \"text\": \"...\", \"texts\": {\"pl\": \"...\"}, \"notify\": true, \"by\": \"anna\"})",
    )?;
    let update = api
        .update(&b.state, &b.text, b.texts, b.by.as_deref().unwrap_or("api"))
        .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    command(
        &api,
        &id,
        Event::Update {
            update,
            notify: b.notify,
        },
    )
    .await
}

/// An ETA as staff type it, wall-clock times in the staff time zone (see
/// [`crate::text::time::parse_eta`]).
pub fn parse_eta(
    config: &crate::config::Config,
    s: &str,
    now: SystemTime,
) -> Result<SystemTime, String> {
    crate::text::time::parse_eta(s, now, &config.staff_timezone)
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_by_content_whatever_their_lengths() {
        assert!(same(b"s3cret-token", b"s3cret-token"));
        assert!(!same(b"s3cret-token", b"s3cret-tokem"));
        assert!(!same(b"s3cret", b"s3cret-token"));
        assert!(!same(b"", b"s3cret-token"));
    }
}
