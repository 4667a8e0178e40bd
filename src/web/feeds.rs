//! Machine-readable status for customers' tools: Atom (`/feed.atom`) and RSS 2.0
//! (`/feed.rss`) of incidents and planned maintenance, for every service or one
//! (`?service=ID`), and `/api/v2/summary.json` in the shape status-page readers know
//! (page, status indicator, components, incidents, scheduled maintenances). Public,
//! like the status page: they show what it shows (a service with `public_from:
//! customer` keeps incidents its customers were never told of off them too), and each
//! answer carries an `ETag` and `Last-Modified` (304 to a client that has it).

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::public::Public;
use crate::config::{Config, PublicFrom};
use crate::incident::Status;
use crate::store::{IncidentRecord, Said};
use crate::text::time::rfc3339;

/// Incidents a feed lists, newest first.
const ENTRIES: usize = 50;

pub fn routes(p: Public) -> Router {
    Router::new()
        .route("/feed.atom", get(atom))
        .route("/feed.rss", get(rss))
        .route("/api/v2/summary.json", get(summary))
        .with_state(p)
}

#[derive(Deserialize)]
struct FeedQuery {
    service: Option<String>,
}

/// One entry of a feed: an incident or a maintenance window.
struct Item {
    id: String,
    title: String,
    text: String,
    link: String,
    published: SystemTime,
    updated: SystemTime,
}

/// Whether `inc` is on the public side (see `public_from`).
fn public(config: &Config, inc: &IncidentRecord) -> bool {
    config.shown_publicly(&inc.service, inc.customer_phase)
}

/// The public timeline of `inc` as lines (staff's updates in the page's language), and
/// when it last changed.
fn told(config: &Config, inc: &IncidentRecord) -> (Vec<String>, SystemTime) {
    let name = config.service_name(&inc.service);
    let mut lines = Vec::new();
    let mut updated = inc.started;
    for e in inc.public_entries() {
        let line = match e.what {
            Said::Opened => format!("We are investigating a problem with {name}."),
            Said::Update(u) => format!("{}: {}", title_case(u.state.as_str()), u.text),
            Said::Eta(eta) => format!("We now expect it back by {}.", rfc3339(eta)),
            Said::AlsoAffected(s) => format!("{} is affected too.", config.service_name(s)),
            Said::Recovered => format!("{name} works again."),
        };
        lines.push(format!("{}: {line}", rfc3339(e.at)));
        updated = updated.max(e.at);
    }
    (lines, updated)
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The feed's items, newest first, for every service or `only`.
fn items(p: &Public, config: &Config, only: Option<&str>) -> Result<Vec<Item>, String> {
    let incidents = p
        .store
        .lock()
        .recent_incidents(ENTRIES * 4)
        .map_err(|e| e.to_string())?;
    let base = &config.public_url;
    let mut out: Vec<Item> = incidents
        .iter()
        .filter(|i| only.is_none_or(|s| s == i.service) && public(config, i))
        .take(ENTRIES)
        .map(|i| {
            let (lines, updated) = told(config, i);
            let name = config.service_name(&i.service);
            Item {
                // The id entries always had (readers would show them again if it changed).
                id: format!("{base}/status#incident-{}", i.id),
                title: match i.ended {
                    Some(_) => format!("{name}: resolved"),
                    None => format!("{name}: unavailable"),
                },
                text: lines.join("\n"),
                link: format!("{base}/incidents/{}", i.id),
                published: i.started,
                updated,
            }
        })
        .collect();
    let now = p.clock.now();
    for m in config
        .maintenance
        .iter()
        .filter(|m| only.is_none_or(|s| s == m.service))
        .filter(|m| m.start + m.duration + Duration::from_secs(90 * 86_400) > now)
    {
        let name = config.service_name(&m.service);
        let mut text = format!(
            "{name} is unavailable for planned maintenance from {} to {}.",
            rfc3339(m.start),
            rfc3339(m.start + m.duration)
        );
        if !m.note.is_empty() {
            text.push(' ');
            text.push_str(&m.note);
        }
        out.push(Item {
            id: format!("{base}/status#maintenance-{}", m.key()),
            title: format!("Planned maintenance: {name}"),
            text,
            link: format!("{base}/status"),
            published: m.start,
            updated: m.start,
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.updated));
    Ok(out)
}

fn fixed(t: SystemTime) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from(t).fixed_offset()
}

/// `body` with its type, an `ETag` (a digest of the body) and `Last-Modified`; 304 with
/// no body when the client's `If-None-Match` names it.
fn cached(headers: &HeaderMap, kind: &'static str, body: String, modified: SystemTime) -> Response {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    let etag = format!("\"{:016x}\"", h.finish());
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = if unchanged {
        (StatusCode::NOT_MODIFIED, String::new())
    } else {
        (StatusCode::OK, body)
    };
    (
        status,
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::ETAG, etag),
            (header::LAST_MODIFIED, httpdate::fmt_http_date(modified)),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

fn unknown(config: &Config, q: &FeedQuery) -> Option<Response> {
    let s = q.service.as_deref()?;
    if config.services.iter().any(|x| x.id == s) {
        return None;
    }
    Some((StatusCode::NOT_FOUND, format!("no service `{s}`")).into_response())
}

fn failed(e: String) -> Response {
    tracing::error!(error = %e, "a feed cannot be made");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the feed cannot be made right now; try again in a minute",
    )
        .into_response()
}

/// What a feed shows: the running config, its items and when the newest changed; or
/// the answer that refuses (an unknown service, the store unavailable).
fn gather(
    p: &Public,
    q: &FeedQuery,
) -> Result<(std::sync::Arc<Config>, Vec<Item>, SystemTime), Box<Response>> {
    let config = p.pages.config.get();
    if let Some(r) = unknown(&config, q) {
        return Err(Box::new(r));
    }
    let items = items(p, &config, q.service.as_deref()).map_err(|e| Box::new(failed(e)))?;
    let updated = items
        .iter()
        .map(|i| i.updated)
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((config, items, updated))
}

async fn atom(State(p): State<Public>, Query(q): Query<FeedQuery>, headers: HeaderMap) -> Response {
    let (config, items, updated) = match gather(&p, &q) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let self_url = match &q.service {
        Some(s) => format!("{}/feed.atom?service={s}", config.public_url),
        None => format!("{}/feed.atom", config.public_url),
    };
    let title = match &q.service {
        Some(s) => format!("{}: {}", config.company.name, config.service_name(s)),
        None => format!("{} status", config.company.name),
    };
    let link = |href: &str, rel: &str| atom_syndication::Link {
        href: href.to_string(),
        rel: rel.to_string(),
        ..Default::default()
    };
    let feed = atom_syndication::Feed {
        title: atom_syndication::Text::plain(title),
        id: self_url.clone(),
        updated: fixed(updated),
        authors: vec![atom_syndication::Person {
            name: config.company.name.clone(),
            ..Default::default()
        }],
        links: vec![
            link(&self_url, "self"),
            link(&format!("{}/status", config.public_url), "alternate"),
        ],
        entries: items
            .iter()
            .map(|i| atom_syndication::Entry {
                title: atom_syndication::Text::plain(i.title.clone()),
                id: i.id.clone(),
                updated: fixed(i.updated),
                published: Some(fixed(i.published)),
                links: vec![link(&i.link, "alternate")],
                content: Some(atom_syndication::Content {
                    value: Some(i.text.clone()),
                    content_type: Some("text".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    cached(
        &headers,
        "application/atom+xml; charset=utf-8",
        feed.to_string(),
        updated,
    )
}

async fn rss(State(p): State<Public>, Query(q): Query<FeedQuery>, headers: HeaderMap) -> Response {
    let (config, items, updated) = match gather(&p, &q) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let channel = ::rss::Channel {
        title: match &q.service {
            Some(s) => format!("{}: {}", config.company.name, config.service_name(s)),
            None => format!("{} status", config.company.name),
        },
        link: format!("{}/status", config.public_url),
        description: format!(
            "Incidents and planned maintenance of {}",
            config.company.name
        ),
        last_build_date: Some(httpdate::fmt_http_date(updated)),
        items: items
            .iter()
            .map(|i| ::rss::Item {
                title: Some(i.title.clone()),
                link: Some(i.link.clone()),
                description: Some(i.text.clone()),
                guid: Some(::rss::Guid {
                    value: i.id.clone(),
                    permalink: false,
                }),
                pub_date: Some(httpdate::fmt_http_date(i.updated)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    cached(
        &headers,
        "application/rss+xml; charset=utf-8",
        channel.to_string(),
        updated,
    )
}

/// A component's state in the summary's words.
fn component(status: Status) -> &'static str {
    match status {
        Status::Up => "operational",
        Status::Suspect | Status::Recovering => "degraded_performance",
        Status::Down | Status::Affected => "major_outage",
        Status::Maintenance => "under_maintenance",
    }
}

async fn summary(State(p): State<Public>, headers: HeaderMap) -> Response {
    let config = p.pages.config.get();
    let snapshot = p.pages.engine.snapshot();
    let now = p.clock.now();
    let open = match p.store.lock().incidents(true) {
        Ok(o) => o,
        Err(e) => return failed(e.to_string()),
    };
    let open: Vec<&IncidentRecord> = open.iter().filter(|i| public(&config, i)).collect();
    let hidden = |id: &str| {
        config
            .services
            .iter()
            .any(|s| s.id == id && s.public_from == PublicFrom::Customer)
            && !open.iter().any(|i| i.service == id)
    };
    let components: Vec<serde_json::Value> = config
        .services
        .iter()
        .map(|s| {
            let status = snapshot.statuses.get(&s.id).copied().unwrap_or(Status::Up);
            // A failure kept from the public (`public_from: customer`) shows nothing yet.
            let status = if hidden(&s.id)
                && matches!(
                    status,
                    Status::Down | Status::Suspect | Status::Recovering | Status::Affected
                ) {
                Status::Up
            } else {
                status
            };
            json!({"id": s.id, "name": s.name, "group": s.group, "status": component(status)})
        })
        .collect();
    let incidents: Vec<serde_json::Value> = open
        .iter()
        .map(|i| {
            let (lines, updated) = told(&config, i);
            // Staff's own word when they gave one; otherwise what tocsin knows.
            let state = match (i.latest_update(), snapshot.statuses.get(&i.service)) {
                (Some(u), _) => u.state.as_str(),
                (None, Some(Status::Recovering)) => "monitoring",
                _ if i.acked_by.is_some() || i.eta.is_some() => "identified",
                _ => "investigating",
            };
            json!({
                "id": i.id,
                "name": format!("{} unavailable", config.service_name(&i.service)),
                "status": state,
                "component": i.service,
                "affected": i.also_affected().into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
                "started_at": rfc3339(i.started),
                "updated_at": rfc3339(updated),
                "eta": i.promised_eta.or(i.eta).filter(|e| *e > now).map(rfc3339),
                "customers_told": i.customer_phase,
                "updates": lines,
                "shortlink": format!("{}/incidents/{}", config.public_url, i.id),
            })
        })
        .collect();
    let maintenance: Vec<serde_json::Value> = config
        .maintenance
        .iter()
        .filter(|m| m.start + m.duration > now)
        .map(|m| {
            json!({
                "component": m.service,
                "name": format!("Planned maintenance: {}", config.service_name(&m.service)),
                "status": if m.start <= now { "in_progress" } else { "scheduled" },
                "scheduled_for": rfc3339(m.start),
                "scheduled_until": rfc3339(m.start + m.duration),
                "note": m.note,
            })
        })
        .collect();
    let (indicator, description) = if open.iter().any(|i| i.customer_phase) {
        ("major", "Some services are unavailable")
    } else if !open.is_empty() {
        ("minor", "Some services have problems")
    } else if maintenance.iter().any(|m| m["status"] == "in_progress") {
        ("maintenance", "Planned maintenance is in progress")
    } else {
        ("none", "All services are working")
    };
    let updated = open.iter().map(|i| told(&config, i).1).max().unwrap_or(now);
    let body = json!({
        "page": {"name": config.company.name, "url": format!("{}/status", config.public_url), "updated_at": rfc3339(updated)},
        "status": {"indicator": indicator, "description": description},
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": maintenance,
    });
    cached(&headers, "application/json", body.to_string(), updated)
}
