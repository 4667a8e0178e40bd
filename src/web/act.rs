//! Pages behind the signed links in staff mails. GET shows what the link would do and a
//! button; only the POST from that page acts (mail scanners that fetch links do nothing).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, RawForm, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::api::{IncidentApi, parse_eta};
use crate::incident::Event;
use crate::links::{Link, LinkAction, LinkQuery};
use crate::notify::staff::escape;

pub fn routes(api: IncidentApi) -> Router {
    Router::new()
        .route("/act", get(confirm).post(act))
        .with_state(api)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em}}\
         button,input{{font-size:1.1em;padding:.4em .8em}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            // The signed link is in this page's URL: no Referer may carry it away, and no
            // other site may frame the confirmation button.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, super::public::CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

/// The link's query, re-encoded for the form's action.
fn action_url(q: &LinkQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("i", &q.i.to_string())
        .append_pair("a", &q.a)
        .append_pair("e", &q.e.to_string())
        .append_pair("r", &q.r)
        .append_pair("s", &q.s);
    format!("/act?{}", s.finish())
}

/// The link, or the page that refuses it.
fn verified(api: &IncidentApi, q: &LinkQuery) -> Result<Link, Box<Response>> {
    api.signer.verify(q, api.clock.now()).map_err(|e| {
        Box::new(page(
            StatusCode::FORBIDDEN,
            "Link refused",
            &format!("<p>{}</p>", escape(&e.to_string())),
        ))
    })
}

async fn confirm(State(api): State<IncidentApi>, Query(q): Query<LinkQuery>) -> Response {
    let link = match verified(&api, &q) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    let (title, what, fields) = match link.action {
        LinkAction::Ack => (
            format!("Acknowledge incident {}?", link.incident),
            "Escalation to further levels stops.",
            "<button type=\"submit\">Acknowledge</button>",
        ),
        LinkAction::Eta => (
            format!("Expected recovery for incident {}", link.incident),
            "A duration from now (4h, 90m) or a time (2026-12-01T18:00:00Z). An ETA beyond the customer threshold tells customers at once.",
            "<label>ETA <input name=\"eta\" required placeholder=\"4h\"></label> <button type=\"submit\">Set ETA</button>",
        ),
    };
    page(
        StatusCode::OK,
        &title,
        &format!(
            "<p>As {}. {what}</p><form method=\"post\" action=\"{}\">{fields}</form>",
            escape(&link.recipient),
            escape(&action_url(&q))
        ),
    )
}

async fn act(
    State(api): State<IncidentApi>,
    Query(q): Query<LinkQuery>,
    RawForm(form): RawForm,
) -> Response {
    let now = api.clock.now();
    let link = match verified(&api, &q) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    let by = format!("{} (mail link)", link.recipient);
    let event = match link.action {
        LinkAction::Ack => Event::Ack { by },
        LinkAction::Eta => {
            match parse_eta(
                &api.config.get(),
                fields.get("eta").map(String::as_str).unwrap_or(""),
                now,
            ) {
                Ok(eta) => Event::Eta { eta, by },
                Err(m) => {
                    return page(
                        StatusCode::BAD_REQUEST,
                        "ETA not set",
                        &format!(
                            "<p>{}</p><p><a href=\"{}\">Try again</a></p>",
                            escape(&m),
                            escape(&action_url(&q))
                        ),
                    );
                }
            }
        }
    };
    let service = match api.store.lock().incident(link.incident) {
        Ok(found) => found,
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>The incident store is unavailable.</p>",
            );
        }
    };
    let Some(inc) = service else {
        return page(
            StatusCode::NOT_FOUND,
            "No such incident",
            "<p>This incident does not exist.</p>",
        );
    };
    if inc.ended.is_some() {
        return page(
            StatusCode::CONFLICT,
            "Already resolved",
            &format!("<p>Incident {} is over; nothing to do.</p>", inc.id),
        );
    }
    let result = api.engine.command(&inc.service, event).await;
    match result {
        Ok(_) => match link.action {
            LinkAction::Ack => page(
                StatusCode::OK,
                "Acknowledged",
                &format!(
                    "<p>Incident {} is acknowledged; no further level is mailed.</p>",
                    inc.id
                ),
            ),
            LinkAction::Eta => page(
                StatusCode::OK,
                "ETA set",
                &format!("<p>The ETA of incident {} is recorded.</p>", inc.id),
            ),
        },
        Err(e) => page(
            StatusCode::CONFLICT,
            "Not done",
            &format!("<p>{}</p>", escape(&e.to_string())),
        ),
    }
}
