//! The campaign API (bearer token, as the incident API): list campaigns with their
//! progress, show one with its failures, and preview the exact message one recipient
//! would get.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::api::{ApiError, IncidentApi, authorize, json};
use crate::campaign::{Composer, preview as render_preview};
use crate::config::LiveConfig;
use crate::notify::mail::Mailer;
use crate::store::{CampaignInfo, CampaignKind, CampaignRecord};

#[derive(Clone)]
pub struct CampaignApi {
    pub api: IncidentApi,
    pub composer: Arc<Composer>,
    pub mailer: Arc<Mailer>,
    pub config: LiveConfig,
}

pub fn routes(c: CampaignApi) -> Router {
    Router::new()
        .route("/api/v1/campaigns", get(list))
        .route("/api/v1/campaigns/preview", post(preview))
        .route("/api/v1/campaigns/{id}", get(show))
        .with_state(c)
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "API: store failure");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is unavailable; try again".into(),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    incident: Option<i64>,
}

async fn list(
    State(c): State<CampaignApi>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<CampaignRecord>>, ApiError> {
    authorize(&c.api, &headers)?;
    let now = c.api.clock.now();
    let all = c
        .api
        .store
        .lock()
        .campaigns(q.incident, now)
        .map_err(store_error)?;
    Ok(Json(all))
}

#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    campaign: CampaignRecord,
    /// Up to 50 failed recipients with the server's reply.
    failures: Vec<Failure>,
    /// Recipients of a recovery with compensation who got no code (the pool ran out):
    /// staff send them one by hand.
    without_code: Vec<String>,
}

#[derive(Serialize)]
struct Failure {
    email: String,
    error: String,
}

async fn show(
    State(c): State<CampaignApi>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Detail>, ApiError> {
    authorize(&c.api, &headers)?;
    let now = c.api.clock.now();
    let store = c.api.store.lock();
    let campaign = store
        .campaigns(None, now)
        .map_err(store_error)?
        .into_iter()
        .find(|x| x.id == id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no campaign {id}")))?;
    let failures = store
        .failures(id, 50)
        .map_err(store_error)?
        .into_iter()
        .map(|(email, error)| Failure { email, error })
        .collect();
    let without_code = store.without_code(id).map_err(store_error)?;
    Ok(Json(Detail {
        campaign,
        failures,
        without_code,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    to: String,
    service: Option<String>,
    incident: Option<i64>,
    kind: Option<CampaignKind>,
}

async fn preview(
    State(c): State<CampaignApi>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&c.api, &headers)?;
    let req: PreviewRequest = json(
        &body,
        "expected {\"to\": EMAIL, \"service\" or \"incident\", \"kind\"}",
    )?;
    let config = c.config.get();
    let now = c.api.clock.now();
    let kind = req.kind.unwrap_or(CampaignKind::Outage);
    let incident = {
        let store = c.api.store.lock();
        match (req.incident, &req.service) {
            (Some(id), _) => Some(
                store
                    .incident(id)
                    .map_err(store_error)?
                    .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no incident {id}")))?,
            ),
            (None, Some(s)) => store.open_incident_of(s).map_err(store_error)?,
            (None, None) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "name a `service` or an `incident`".into(),
                ));
            }
        }
    };
    let service = incident
        .as_ref()
        .map(|i| i.service.clone())
        .or(req.service.clone())
        .unwrap_or_default();
    if !config.services.iter().any(|s| s.id == service) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no service `{service}` in the config"),
        ));
    }
    // Without an incident, or before its customer phase, the promise is made as the
    // state machine would make it now.
    let promise = |eta: Option<SystemTime>| match eta.filter(|e| *e > now) {
        Some(e) => (Some(e), None),
        None => (None, Some(now + config.campaigns.next_update)),
    };
    let info = match &incident {
        Some(i) => {
            let (eta, next_update) = if i.customer_phase {
                (i.promised_eta, i.next_update)
            } else {
                promise(i.eta)
            };
            CampaignInfo {
                id: 0,
                kind,
                service: service.clone(),
                incident: i.id,
                started: i.started,
                ended: i.ended.or(Some(now)),
                eta,
                next_update,
                window_note: None,
                update: i
                    .timeline
                    .iter()
                    .rev()
                    .find_map(|e| e.event.update().cloned()),
            }
        }
        None => {
            let (eta, next_update) = promise(None);
            CampaignInfo {
                id: 0,
                kind,
                service: service.clone(),
                incident: 0,
                started: now,
                ended: Some(now),
                eta,
                next_update,
                window_note: None,
                update: None,
            }
        }
    };
    let msg = render_preview(&config, &c.composer, &info, &req.to)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let raw = c
        .mailer
        .formatted(&msg)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(Json(serde_json::json!({
        "to": msg.to,
        "subject": msg.subject,
        "text": msg.text,
        "html": msg.html,
        "message": String::from_utf8_lossy(&raw),
    }))
    .into_response())
}
