//! What customers reach: the status page (`/status` and `/`) and one-click unsubscribe
//! (`/unsubscribe`, RFC 8058: GET shows a confirmation, only POST unsubscribes, so link
//! scanners unsubscribe nobody). No JavaScript; every page forbids scripts outright.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
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
    /// Sends subscription confirmations (the campaign mailer).
    pub mailer: Option<Arc<crate::notify::mail::Mailer>>,
}

pub fn routes(p: Public) -> Router {
    Router::new()
        .route("/", get(status))
        .route("/status", get(status))
        .route("/incidents/{id}", get(incident))
        .route("/history", get(history))
        .route("/badge/{service}/{kind}", get(badge))
        .route("/unsubscribe", get(confirm).post(unsubscribe))
        .with_state(p)
}

#[derive(Deserialize, Default)]
struct LangQuery {
    lang: Option<String>,
    month: Option<String>,
}

/// The language a reader gets: `?lang=` when templates exist for it, else the first of
/// `Accept-Language` (by weight) they exist for, else the page's. With the parameter to
/// keep in the page's links (`lang=pl`, only when chosen by `?lang=`). Written by hand:
/// a header of a few tags, and the crates for it bring more than this needs.
pub(super) fn language(
    p: &Public,
    q: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> (String, String) {
    let available = p.pages.templates.languages();
    let pick = |tag: &str| -> Option<String> {
        let tag = tag.trim().to_ascii_lowercase();
        if available.contains(&tag) {
            return Some(tag);
        }
        let base = tag.split('-').next()?;
        available.contains(base).then(|| base.to_string())
    };
    if let Some(l) = q.and_then(pick) {
        return (l.clone(), format!("lang={l}"));
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut tags: Vec<(f32, usize, &str)> = accept
        .split(',')
        .take(20)
        .enumerate()
        .filter_map(|(i, part)| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|x| x.trim().strip_prefix("q="))
                .map_or(Some(1.0), |v| v.trim().parse::<f32>().ok())?;
            (q > 0.0 && !tag.is_empty() && tag != "*").then_some((q, i, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let chosen = tags
        .iter()
        .find_map(|(_, _, t)| pick(t))
        .unwrap_or_else(|| p.pages.config.get().page_language.clone());
    (chosen, String::new())
}

/// A page in `lang`: it says its language, and caches know it depends on the reader's.
pub(super) fn localized(mut r: Response, lang: &str) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(lang) {
        r.headers_mut().insert(header::CONTENT_LANGUAGE, v);
    }
    r.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Language"),
    );
    r
}

/// `/incidents/{id}`: one incident's public page (a permalink the status page, the feeds
/// and the mails link to). 404 for one that is not public.
async fn incident(
    State(p): State<Public>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (lang, param) = language(&p, q.lang.as_deref(), &headers);
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&lang);
    };
    let pages = p.pages.clone();
    let l = lang.clone();
    let made = tokio::task::spawn_blocking(move || pages.incident_page(id, &l, &param))
        .await
        .unwrap_or_else(|e| Err(format!("the incident page's rendering failed: {e}")));
    match made {
        Ok(Some(body)) => localized(html(StatusCode::OK, body), &lang),
        Ok(None) => not_found(&lang),
        Err(e) => unavailable(&e),
    }
}

/// `/history?month=2026-11`: past incidents, three months a page, newest first.
async fn history(
    State(p): State<Public>,
    Query(q): Query<LangQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (lang, param) = language(&p, q.lang.as_deref(), &headers);
    let month = match q.month.as_deref() {
        None | Some("") => None,
        Some(m) => match crate::notify::public::Month::parse(m) {
            Some(m) => Some(m),
            None => {
                return html(
                    StatusCode::BAD_REQUEST,
                    page(
                        "No such month",
                        &format!(
                            "<p>`{}` is not a month: give it as <code>?month=2026-11</code>.</p>",
                            escape(m)
                        ),
                    ),
                );
            }
        },
    };
    let pages = p.pages.clone();
    let l = lang.clone();
    let made = tokio::task::spawn_blocking(move || pages.history_page(month, &l, &param))
        .await
        .unwrap_or_else(|e| Err(format!("the history page's rendering failed: {e}")));
    match made {
        Ok(body) => localized(html(StatusCode::OK, body), &lang),
        Err(e) => unavailable(&e),
    }
}

fn not_found(lang: &str) -> Response {
    let (title, text) = match lang {
        "pl" => (
            "Nie ma takiego zdarzenia",
            "Tej strony nie ma. Aktualny stan usług jest na stronie statusu.",
        ),
        "sv" => (
            "Ingen sådan händelse",
            "Sidan finns inte. Tjänsternas aktuella status finns på statussidan.",
        ),
        _ => (
            "No such incident",
            "This page does not exist. The current state of every service is on the status page.",
        ),
    };
    localized(
        html(
            StatusCode::NOT_FOUND,
            page(
                title,
                &format!("<p>{text}</p><p><a href=\"/status\">/status</a></p>"),
            ),
        ),
        lang,
    )
}

pub(super) fn unavailable(e: &str) -> Response {
    tracing::error!(error = %e, "a public page cannot be rendered");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Status unavailable",
            "<p>This page cannot be shown right now. Please try again in a minute.</p>",
        ),
    )
}

/// `/badge/{service}/status.svg` and `/badge/{service}/uptime.svg` (the last 30 days):
/// for READMEs and intranet pages. Cached for a minute; `ETag` and `Last-Modified` let a
/// client ask again for nothing.
async fn badge(
    State(p): State<Public>,
    Path((service, kind)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let config = p.pages.config.get();
    let Some(s) = config.services.iter().find(|s| s.id == service).cloned() else {
        return (StatusCode::NOT_FOUND, "no such service\n").into_response();
    };
    let now = p.clock.now();
    let svg = match kind.as_str() {
        "status.svg" => {
            let status = p
                .pages
                .engine
                .snapshot()
                .statuses
                .get(&s.id)
                .copied()
                .unwrap_or(crate::incident::Status::Up);
            // A staff-only blip of a `public_from: customer` service shows as working.
            let shown = match status {
                crate::incident::Status::Down | crate::incident::Status::Recovering => {
                    let told = p
                        .store
                        .lock()
                        .open_incident_of(&s.id)
                        .ok()
                        .flatten()
                        .is_some_and(|i| i.customer_phase);
                    if config.shown_publicly(&s.id, told) {
                        status
                    } else {
                        crate::incident::Status::Up
                    }
                }
                other => other,
            };
            let (text, color) = match shown {
                crate::incident::Status::Up | crate::incident::Status::Suspect => {
                    ("working", "#2f7d32")
                }
                crate::incident::Status::Maintenance => ("maintenance", "#1f5fa8"),
                crate::incident::Status::Recovering => ("recovering", "#b26a00"),
                _ => ("unavailable", "#b3261e"),
            };
            crate::text::svg::badge(&s.name, text, color)
        }
        "uptime.svg" => {
            let (store, cfg) = (p.store.clone(), config.clone());
            let up = tokio::task::spawn_blocking(move || {
                crate::notify::public::uptime30(&cfg, &store, &s, now).map(|u| (s, u))
            })
            .await;
            match up {
                Ok(Ok((s, u))) => {
                    let (text, color) = match u {
                        None => ("no data".to_string(), "#777"),
                        Some(u) if u >= 99.9 => (format!("{u:.2}%"), "#2f7d32"),
                        Some(u) if u >= 99.0 => (format!("{u:.2}%"), "#b26a00"),
                        Some(u) => (format!("{u:.2}%"), "#b3261e"),
                    };
                    crate::text::svg::badge(&format!("{} uptime 30d", s.name), &text, color)
                }
                Ok(Err(e)) => return unavailable(&e.to_string()),
                Err(e) => return unavailable(&e.to_string()),
            }
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "no such badge: use status.svg or uptime.svg\n",
            )
                .into_response();
        }
    };
    cached_answer(&headers, svg.into_bytes(), "image/svg+xml", now)
}

/// An answer with an `ETag` (a digest of the body) and `Last-Modified`; 304 when the
/// client has it already.
fn cached_answer(
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
    content_type: &'static str,
    now: std::time::SystemTime,
) -> Response {
    let digest = ring::digest::digest(&ring::digest::SHA256, &body);
    let etag: String = format!(
        "\"{}\"",
        digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::CONTENT_TYPE, content_type.to_string()),
        (header::CACHE_CONTROL, "public, max-age=60".to_string()),
        (header::ETAG, etag),
        (header::LAST_MODIFIED, httpdate::fmt_http_date(now)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'".to_string(),
        ),
    ];
    if unchanged {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (StatusCode::OK, common, body).into_response()
    }
}

pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub(super) fn html(code: StatusCode, body: impl Into<axum::body::Body>) -> Response {
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
async fn status(
    State(p): State<Public>,
    Query(q): Query<LangQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let (lang, param) = language(&p, q.lang.as_deref(), &headers);
    let pages = p.pages.clone();
    let l = lang.clone();
    let made = tokio::task::spawn_blocking(move || pages.status_page(&l, &param))
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
            localized(r, &lang)
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
    /// A service: the link stops that service's notices only.
    svc: Option<String>,
    lang: Option<String>,
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{t}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#1f2933}}button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// The unsubscribe page at `step` (`confirm`, `done`, `incomplete`, `invalid`, `error`)
/// in the reader's language.
fn unsub_page(
    p: &Public,
    code: StatusCode,
    q: &UnsubQuery,
    headers: &axum::http::HeaderMap,
    step: &str,
    email: &str,
) -> Response {
    let (lang, param) = language(p, q.lang.as_deref(), headers);
    let action = format!(
        "/unsubscribe?e={}{}&s={}{}",
        url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
        q.svc
            .as_deref()
            .map(|v| format!(
                "&svc={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            ))
            .unwrap_or_default(),
        url::form_urlencoded::byte_serialize(q.s.as_deref().unwrap_or_default().as_bytes())
            .collect::<String>(),
        if param.is_empty() {
            String::new()
        } else {
            format!("&{param}")
        }
    );
    let service = q
        .svc
        .as_deref()
        .map(|v| p.pages.config.get().service_name(v));
    let ctx = minijinja::context! {
        language => &lang,
        step => step,
        email => email,
        service => service,
        action => action,
        status_link => if param.is_empty() { "/status".to_string() } else { format!("/status?{param}") },
    };
    match p.pages.templates.page("unsubscribe", &lang, &ctx) {
        Ok(body) => localized(html(code, body), &lang),
        Err(e) => unavailable(&e),
    }
}

fn check(p: &Public, q: &UnsubQuery) -> Result<String, &'static str> {
    let (Some(e), Some(s)) = (&q.e, &q.s) else {
        return Err("incomplete");
    };
    match &q.svc {
        Some(svc) => p.signer.verify_stop(e, svc, s),
        None => p.signer.verify_unsubscribe(e, s),
    }
    .map_err(|_| "invalid")
}

async fn confirm(
    State(p): State<Public>,
    Query(q): Query<UnsubQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    match check(&p, &q) {
        Ok(email) => unsub_page(&p, StatusCode::OK, &q, &headers, "confirm", &email),
        Err(step) => unsub_page(&p, StatusCode::BAD_REQUEST, &q, &headers, step, ""),
    }
}

async fn unsubscribe(
    State(p): State<Public>,
    Query(q): Query<UnsubQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    let email = match check(&p, &q) {
        Ok(e) => e,
        Err(step) => return unsub_page(&p, StatusCode::BAD_REQUEST, &q, &headers, step, ""),
    };
    let now = p.clock.now();
    let done = match &q.svc {
        Some(svc) => p.store.lock().stop_service(&email, svc, now),
        // Everything: a subscription from the status page goes too.
        None => {
            let mut s = p.store.lock();
            s.remove_subscription(&email)
                .and_then(|_| s.opt_out(&email, now))
        }
    };
    match done {
        Ok(_) => {
            // The address is the customer's: logged only at debug level.
            tracing::info!(service = ?q.svc, "a customer unsubscribed from campaigns");
            tracing::debug!(email = %email, "unsubscribed from campaigns");
            unsub_page(&p, StatusCode::OK, &q, &headers, "done", &email)
        }
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe could not be stored");
            unsub_page(
                &p,
                StatusCode::SERVICE_UNAVAILABLE,
                &q,
                &headers,
                "error",
                &email,
            )
        }
    }
}
