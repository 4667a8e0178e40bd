//! Heartbeat pings (`/ping/TOKEN`, `/start`, `/fail`, `/EXIT_CODE`; GET, HEAD or POST,
//! with an optional body of the job's output), and the list of heartbeats for staff
//! (`/api/v1/heartbeats`, behind the API token: it shows the tokens).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::api::{ApiError, IncidentApi, authorize};
use crate::config::LiveConfig;
use crate::heartbeat::{Heartbeats, PingError};
use crate::metrics::Metrics;
use crate::probe::heartbeat::Signal;

/// A body above this is refused whole (413); below it, the first 10 KiB are kept.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct PingApi {
    pub heartbeats: Arc<Heartbeats>,
    pub metrics: Arc<Metrics>,
    pub config: LiveConfig,
    pub api: Option<IncidentApi>,
}

/// The pings: on the public side, where jobs on other hosts reach them.
pub fn routes(p: PingApi) -> Router {
    Router::new()
        .route("/ping/{token}", any(success))
        .route("/ping/{token}/{signal}", any(signal))
        .with_state(p)
}

/// The heartbeat list (it shows the tokens): on the internal side.
pub fn api_routes(p: PingApi) -> Router {
    Router::new()
        .route("/api/v1/heartbeats", get(list))
        .with_state(p)
}

async fn success(State(p): State<PingApi>, Path(token): Path<String>, body: Body) -> Response {
    record(&p, &token, Signal::Success, body).await
}

async fn signal(
    State(p): State<PingApi>,
    Path((token, what)): Path<(String, String)>,
    body: Body,
) -> Response {
    let signal = match what.as_str() {
        "start" => Signal::Start,
        "fail" => Signal::Fail { exit: None },
        code => match code.parse::<u8>() {
            Ok(0) => Signal::Success,
            Ok(n) => Signal::Fail { exit: Some(n) },
            Err(_) => {
                p.metrics.heartbeat_ping("bad_request");
                return (
                    StatusCode::BAD_REQUEST,
                    format!("`{what}` is not start, fail or an exit code from 0 to 255\n"),
                )
                    .into_response();
            }
        },
    };
    record(&p, &token, signal, body).await
}

async fn record(p: &PingApi, token: &str, signal: Signal, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        p.metrics.heartbeat_ping("too_large");
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {MAX_BODY} bytes; a ping keeps at most {} of it\n",
                crate::heartbeat::KEPT_BODY
            ),
        )
            .into_response();
    };
    match p.heartbeats.ping(token, signal, &bytes) {
        Ok(()) => {
            p.metrics.heartbeat_ping("accepted");
            (StatusCode::OK, "OK\n").into_response()
        }
        Err(e) => {
            let (code, result) = match &e {
                PingError::Unknown => (StatusCode::NOT_FOUND, "unknown_token"),
                PingError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                PingError::Store(err) => {
                    tracing::error!(error = %err, "a heartbeat ping could not be recorded");
                    (StatusCode::SERVICE_UNAVAILABLE, "failed")
                }
            };
            p.metrics.heartbeat_ping(result);
            (code, format!("{e}\n")).into_response()
        }
    }
}

async fn list(State(p): State<PingApi>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(api) = &p.api else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "the API is not served here".into(),
        ));
    };
    authorize(api, &headers)?;
    let config = p.config.get();
    let rows = p
        .heartbeats
        .list(&config, api.clock.now())
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(axum::Json(rows).into_response())
}
