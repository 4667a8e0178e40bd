//! The maintenance API: list the planned windows (from probes.yaml and added here), add
//! one, cancel one added here. Bearer token as for incidents. A change takes effect at
//! once: the engine keeps incidents from opening inside the window, the status page shows
//! it, and its notices are planned.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::api::{ApiError, IncidentApi, authorize};
use crate::config::{Config, LiveConfig, Maintenance};
use crate::text::time::rfc3339 as rfc;

#[derive(Clone)]
pub struct MaintenanceApi {
    pub api: IncidentApi,
    pub config: LiveConfig,
    /// Wakes the notice planner.
    pub ready: Arc<Notify>,
}

pub fn routes(m: MaintenanceApi) -> Router {
    Router::new()
        .route("/api/v1/maintenance", get(list).post(add))
        .route("/api/v1/maintenance/{id}/cancel", post(cancel))
        .with_state(m)
}

#[derive(Serialize)]
pub struct WindowView {
    /// The id to cancel it by; `null` for a window from probes.yaml.
    pub id: Option<i64>,
    pub source: &'static str,
    pub service: String,
    pub start: String,
    pub end: String,
    pub announce_before: Vec<String>,
    pub note: String,
    /// Notices recorded so far (`before:172800`, `completed`).
    pub notices: Vec<String>,
}

fn view(m: &MaintenanceApi, w: &Maintenance) -> WindowView {
    let notices = m
        .api
        .store
        .lock()
        .notices(&w.key())
        .map(|n| n.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default();
    WindowView {
        id: w.id,
        source: if w.id.is_some() { "api" } else { "probes.yaml" },
        service: w.service.clone(),
        start: rfc(w.start),
        end: rfc(w.end()),
        announce_before: w.announce_before.iter().map(|d| short(*d)).collect(),
        note: w.note.clone(),
        notices,
    }
}

/// `48h`, `90m`, `30s`: as an operator writes durations in probes.yaml.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn config(m: &MaintenanceApi) -> Arc<Config> {
    m.config.get()
}

async fn list(State(m): State<MaintenanceApi>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&m.api, &headers)?;
    let now = m.api.clock.now();
    let c = config(&m);
    let mut windows: Vec<&Maintenance> = c
        .maintenance
        .iter()
        .filter(|w| w.end() > now - Duration::from_secs(86_400))
        .collect();
    windows.sort_by_key(|w| w.start);
    let out: Vec<WindowView> = windows.into_iter().map(|w| view(&m, w)).collect();
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    pub service: String,
    /// RFC 3339.
    pub start: String,
    /// `2h`, `90m`.
    pub duration: String,
    #[serde(default)]
    pub announce_before: Vec<String>,
    #[serde(default)]
    pub note: String,
    pub by: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

async fn add(
    State(m): State<MaintenanceApi>,
    headers: HeaderMap,
    body: Result<Json<NewWindow>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&m.api, &headers)?;
    let Json(w) = body.map_err(|e| bad(format!("bad request body: {}", e.body_text())))?;
    let c = config(&m);
    if !c.services.iter().any(|s| s.id == w.service) {
        let ids: Vec<&str> = c.services.iter().map(|s| s.id.as_str()).collect();
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no service `{}` (services: {})", w.service, ids.join(", ")),
        ));
    }
    let start =
        crate::text::time::parse_time(&w.start).map_err(|e| bad(format!("`start`: {e}")))?;
    let duration = crate::text::time::parse_duration(&w.duration)
        .map_err(|e| bad(format!("`duration`: {e}")))
        .and_then(|d| {
            if d.is_zero() {
                Err(bad(
                    "`duration` must be longer than zero, such as 2h or 90m",
                ))
            } else {
                Ok(d)
            }
        })?;
    let now = m.api.clock.now();
    if start + duration <= now {
        return Err(bad(
            "the window is over already: `start` plus `duration` is in the past",
        ));
    }
    let mut before = Vec::new();
    for b in &w.announce_before {
        before.push(
            crate::text::time::parse_duration(b)
                .map_err(|e| bad(format!("`announce_before`: {e}")))?,
        );
    }
    if w.note.len() > 500 || w.note.contains(['\r', '\n']) {
        return Err(bad("`note` is one line of at most 500 characters"));
    }
    let window = Maintenance {
        id: None,
        service: w.service.clone(),
        start,
        duration,
        announce_before: before,
        note: w.note.clone(),
    };
    let by = w.by.unwrap_or_else(|| "api".into());
    let id = m
        .api
        .store
        .lock()
        .add_window(&window, &by, now)
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    apply(&m).await?;
    tracing::info!(id, service = %window.service, start = %rfc(start), duration = %humantime::format_duration(duration), by = %by, "maintenance window added");
    let stored = Maintenance {
        id: Some(id),
        ..window
    };
    Ok((StatusCode::CREATED, Json(view(&m, &stored))).into_response())
}

async fn cancel(
    State(m): State<MaintenanceApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&m.api, &headers)?;
    let Ok(id) = id.parse::<i64>() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "window `{id}` is not one added through the API; windows from probes.yaml are removed there"
            ),
        ));
    };
    let now = m.api.clock.now();
    let cancelled = m
        .api
        .store
        .lock()
        .cancel_window(id, now)
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if !cancelled {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no maintenance window {id} to cancel (it may be cancelled already)"),
        ));
    }
    apply(&m).await?;
    tracing::info!(id, "maintenance window cancelled");
    Ok(Json(serde_json::json!({ "cancelled": id })).into_response())
}

/// Puts the store's windows into the running config and the engine.
async fn apply(m: &MaintenanceApi) -> Result<(), ApiError> {
    let now = m.api.clock.now();
    let windows = m
        .api
        .store
        .lock()
        .windows(now)
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let next = Arc::new((*config(m)).clone().with_api_windows(windows));
    m.api.engine.reconfigure(next.clone()).await;
    m.config.set(next);
    m.ready.notify_one();
    Ok(())
}
