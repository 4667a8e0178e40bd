//! What customers reach: the status page (`/status` and `/`) and one-click unsubscribe
//! (`/unsubscribe`, RFC 8058: GET shows a confirmation, only POST unsubscribes, so link
//! scanners unsubscribe nobody). No JavaScript; every page forbids scripts outright.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::clock::Clock;
use crate::links::Signer;
use crate::notify::pages::PageSource;
use crate::notify::staff::escape;
use crate::store::SharedStore;

#[derive(Clone)]
pub struct Public {
    pub pages: PageSource,
    pub signer: Arc<Signer>,
    pub store: SharedStore,
    pub clock: Arc<dyn Clock>,
}

pub fn routes(p: Public) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/status", get(status))
        .route("/unsubscribe", get(confirm).post(unsubscribe))
        .with_state(p)
}

pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn html(code: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body.into(),
    )
        .into_response()
}

/// The status page, with its `ETag`: a client (or a CDN in front) that sends it back in
/// `If-None-Match` gets 304 and no body while nothing changed.
async fn status(State(p): State<Public>, headers: axum::http::HeaderMap) -> Response {
    let pages = p.pages.clone();
    let made = tokio::task::spawn_blocking(move || pages.status_page())
        .await
        .unwrap_or_else(|e| Err(format!("the status page's rendering failed: {e}")));
    match made {
        Ok(page) => {
            let etag = page.etag.to_string();
            let unchanged = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            let mut r = if unchanged {
                html(StatusCode::NOT_MODIFIED, axum::body::Body::empty())
            } else {
                // The cached page is shared, not copied, into each response.
                html(
                    StatusCode::OK,
                    axum::body::Bytes::from_owner(Shared(page.body)),
                )
            };
            if let Ok(v) = header::HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "status page cannot be rendered");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "Status unavailable",
                    "<p>The status page cannot be shown right now. Please try again in a minute.</p>",
                ),
            )
        }
    }
}

/// A shared page as a response body's bytes.
struct Shared(Arc<str>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[derive(Deserialize)]
struct UnsubQuery {
    e: Option<String>,
    s: Option<String>,
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#1f2933}}button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

fn check(p: &Public, q: &UnsubQuery) -> Result<String, Box<Response>> {
    let bad = |title: &str, text: &str| {
        Box::new(html(
            StatusCode::BAD_REQUEST,
            page(title, &format!("<p>{text}</p>")),
        ))
    };
    let (Some(e), Some(s)) = (&q.e, &q.s) else {
        return Err(bad(
            "Link incomplete",
            "This unsubscribe link is incomplete. Please use the whole link from the message.",
        ));
    };
    p.signer.verify_unsubscribe(e, s).map_err(|_| {
        bad(
            "Link not valid",
            "This unsubscribe link is not valid. Please use the link from the message, unchanged.",
        )
    })
}

async fn confirm(State(p): State<Public>, Query(q): Query<UnsubQuery>) -> Response {
    let email = match check(&p, &q) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let action = format!(
        "/unsubscribe?e={}&s={}",
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        escape(q.s.as_deref().unwrap_or_default())
    );
    html(
        StatusCode::OK,
        page(
            "Stop outage notices?",
            &format!(
                "<p>{} will no longer receive outage notices from us.</p>\
                 <form method=\"post\" action=\"{}\"><button name=\"List-Unsubscribe\" value=\"One-Click\">Unsubscribe</button></form>",
                escape(&email),
                escape(&action)
            ),
        ),
    )
}

async fn unsubscribe(State(p): State<Public>, Query(q): Query<UnsubQuery>) -> Response {
    let email = match check(&p, &q) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let now = p.clock.now();
    let done = p.store.lock().opt_out(&email, now);
    match done {
        Ok(_) => {
            // The address is the customer's: logged only at debug level.
            tracing::info!("a customer unsubscribed from campaigns");
            tracing::debug!(email = %email, "unsubscribed from campaigns");
            html(
                StatusCode::OK,
                page(
                    "Unsubscribed",
                    &format!(
                        "<p>{} will receive no more outage notices.</p>",
                        escape(&email)
                    ),
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe could not be stored");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "Please try again",
                    "<p>Your request could not be saved just now. Please try again in a minute.</p>",
                ),
            )
        }
    }
}
