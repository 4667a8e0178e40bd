//! HTTP endpoints: `/metrics`, `/healthz`, `/api/v1/probes`, and a blackbox-compatible
//! `/probe`. Reads shared state; decides nothing. Errors shown to callers never carry
//! internal detail beyond what the caller's own input caused.

pub mod act;
pub mod api;
pub mod campaigns;
pub mod feeds;
pub mod maintenance;
pub mod oncall;
pub mod ping;
pub mod public;
pub mod serve;
pub mod subscribe;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::clock::Clock;
use crate::config::LiveConfig;
use crate::metrics::{Metrics, render_single};
use crate::probe::{self, Check};
use crate::scheduler::Latest;

#[derive(Clone)]
pub struct AppState {
    pub config: LiveConfig,
    pub metrics: Arc<Metrics>,
    pub latest: Arc<Latest>,
    pub clock: Arc<dyn Clock>,
    /// The incident routes, when an engine runs.
    pub incidents: Option<api::IncidentApi>,
    /// The campaign routes.
    pub campaigns: Option<campaigns::CampaignApi>,
    /// The status page and unsubscribe links.
    pub public: Option<public::Public>,
    /// Planned maintenance windows.
    pub maintenance: Option<maintenance::MaintenanceApi>,
    /// Heartbeat pings and the heartbeat list.
    pub heartbeats: Option<Arc<crate::heartbeat::Heartbeats>>,
    /// In a cluster that votes: the locations' votes, shown with each probe.
    pub votes: Option<Arc<crate::votes::Board>>,
}

/// Where a router is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `listen` when `internal_listen` is set: the status page and what customers and
    /// staff reach from mails (unsubscribe, signed links), heartbeat pings, health.
    Public,
    /// `internal_listen`: `/metrics`, `/probe`, the JSON APIs, health.
    Internal,
    /// `listen` alone serves everything; `/probe` and `/api/v1/probes` then need the API
    /// token (`/metrics` stays open, as every exporter's does: its labels hold only
    /// configured names).
    Both,
}

/// At most this many `/probe` requests run at once; more wait for a slot (within their
/// scrape's timeout) and are refused (503) if none comes.
const PROBE_SLOTS: usize = 32;

/// Everything on one listener (see [`Side::Both`]).
pub fn app(state: AppState) -> Router {
    router(state, Side::Both)
}

/// The routes of one side.
pub fn router(state: AppState, side: Side) -> Router {
    let public = side != Side::Internal;
    let internal = side != Side::Public;
    let incidents = state.incidents.clone();
    let campaign_routes = state.campaigns.clone();
    let public_routes = state.public.clone();
    let maintenance_routes = state.maintenance.clone();
    let pings = state.heartbeats.clone().map(|heartbeats| ping::PingApi {
        heartbeats,
        metrics: state.metrics.clone(),
        config: state.config.clone(),
        api: state.incidents.clone(),
    });
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if internal {
        let slots = Arc::new(tokio::sync::Semaphore::new(PROBE_SLOTS));
        let mut probing = Router::new().route("/api/v1/probes", get(probes)).route(
            "/probe",
            get(move |st, q, h| probe_endpoint(st, q, h, slots.clone())),
        );
        if side == Side::Both {
            let guard = state.incidents.clone();
            probing = probing.route_layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let guard = guard.clone();
                    async move { token_guard(guard, req, next).await }
                },
            ));
        }
        router = router.route("/metrics", get(metrics)).merge(probing);
    }
    let mut router = router.with_state(state);
    if let Some(api) = incidents {
        if internal {
            router = router
                .merge(api::routes(api.clone()))
                .merge(oncall::routes(api.clone()));
        }
        if public {
            router = router.merge(act::routes(api));
        }
    }
    if let Some(c) = campaign_routes.filter(|_| internal) {
        router = router.merge(campaigns::routes(c));
    }
    if let Some(p) = public_routes.filter(|_| public) {
        router = router
            .merge(feeds::routes(p.clone()))
            .merge(subscribe::routes(p.clone()))
            .merge(public::routes(p));
    }
    if let Some(m) = maintenance_routes.filter(|_| internal) {
        router = router.merge(maintenance::routes(m));
    }
    if let Some(p) = pings {
        if public {
            router = router.merge(ping::routes(p.clone()));
        }
        if internal {
            router = router.merge(ping::api_routes(p));
        }
    }
    router
}

/// On a single listener, `/probe` and `/api/v1/probes` answer only with the API token:
/// they reach internal addresses and show internal URLs.
async fn token_guard(
    api: Option<api::IncidentApi>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(api) = api else {
        return (
            StatusCode::UNAUTHORIZED,
            "/probe and /api/v1/probes need the API token, or an `internal_listen` of their own\n",
        )
            .into_response();
    };
    match api::authorize(&api, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Streams the exposition: pieces are written on a blocking thread and sent as the
/// client takes them, so a scrape of 100,000 probes never holds its whole body.
async fn metrics(State(s): State<AppState>) -> Response {
    let per_probe = s.config.get().metrics_per_probe;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::task::spawn_blocking(move || {
        s.metrics
            .render_chunks(per_probe, 256 * 1024, &mut |piece| {
                tx.blocking_send(piece).is_ok()
            });
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|piece| (Ok::<_, std::convert::Infallible>(piece), rx))
    });
    (
        [(header::CONTENT_TYPE, PROM_TEXT)],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// Ready for traffic: this App runs, so this instance leads (a cluster's standby answers
/// 503 here).
async fn readyz() -> Response {
    Json(serde_json::json!({ "status": "ready", "role": "leader" })).into_response()
}

/// Rows of `/api/v1/probes` in one page unless `limit` says otherwise.
const PROBES_PAGE: usize = 1000;
const PROBES_PAGE_MAX: usize = 10_000;

/// `/api/v1/probes[?service=ID][&failing=true][&limit=N][&after=SERVICE/PROBE]`: a JSON
/// array of rows in config order. When more rows follow, a `Link: <...>; rel="next"`
/// header gives the next page's address (as GitHub's API does), so the body stays the
/// plain array it always was.
async fn probes(State(s): State<AppState>, Query(query): Query<Vec<(String, String)>>) -> Response {
    let config = s.config.get();
    let mut filter = crate::scheduler::RowFilter::default();
    let mut limit = PROBES_PAGE;
    for (k, v) in &query {
        match k.as_str() {
            "service" if config.services.iter().any(|s| s.id == *v) => {
                filter.service = Some(v.clone())
            }
            "service" => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no service `{v}` is configured\n"),
                )
                    .into_response();
            }
            "failing" => match v.as_str() {
                "true" | "1" => filter.failing = true,
                "false" | "0" => filter.failing = false,
                _ => return bad_request(format!("`failing` is true or false, not `{v}`\n")),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=PROBES_PAGE_MAX).contains(&n) => limit = n,
                _ => {
                    return bad_request(format!(
                        "`limit` is a number of rows from 1 to {PROBES_PAGE_MAX}, not `{v}`\n"
                    ));
                }
            },
            "after" => match v.split_once('/') {
                Some((service, probe)) if !service.is_empty() && !probe.is_empty() => {
                    filter.after = Some((service.to_string(), probe.to_string()))
                }
                _ => {
                    return bad_request(format!(
                        "`after` is SERVICE/PROBE, as the previous page's Link header gives it, not `{v}`\n"
                    ));
                }
            },
            _ => {
                return bad_request(format!(
                    "unknown parameter `{k}`: /api/v1/probes takes service, failing, limit and after\n"
                ));
            }
        }
    }
    let (rows, more) = s.latest.page(&config, &filter, limit);
    let next = match rows.last() {
        Some(last) if more => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(service) = &filter.service {
                q.append_pair("service", service);
            }
            if filter.failing {
                q.append_pair("failing", "true");
            }
            q.append_pair("limit", &limit.to_string());
            q.append_pair("after", &format!("{}/{}", last.service, last.probe));
            Some(format!("</api/v1/probes?{}>; rel=\"next\"", q.finish()))
        }
        _ => None,
    };
    let mut r = match &s.votes {
        None => Json(rows).into_response(),
        // Each row with what every location last saw of it, and the tally.
        Some(board) => {
            let rows: Vec<serde_json::Value> = rows
                .into_iter()
                .map(|row| {
                    let votes = board.probe(&row.probe);
                    let mut v = serde_json::to_value(&row).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert(
                            "votes".into(),
                            serde_json::to_value(votes).unwrap_or_default(),
                        );
                    }
                    v
                })
                .collect();
            Json(rows).into_response()
        }
    };
    if let Some(v) = next.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
        r.headers_mut().insert(header::LINK, v);
    }
    r
}

#[derive(Deserialize)]
struct ProbeQuery {
    target: Option<String>,
    module: Option<String>,
    /// For DNS modules: the name to look up (required by the built-in `dns` module).
    name: Option<String>,
    /// For DNS modules: the record type, overriding the module's.
    #[serde(rename = "type")]
    record_type: Option<String>,
}

/// Leaves room for the response within Prometheus' scrape timeout, as blackbox does.
const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

async fn probe_endpoint(
    State(s): State<AppState>,
    Query(q): Query<ProbeQuery>,
    headers: HeaderMap,
    slots: Arc<tokio::sync::Semaphore>,
) -> Response {
    let wait = scrape_budget(&headers).unwrap_or(Duration::from_secs(10));
    let Ok(Ok(_slot)) = tokio::time::timeout(wait, slots.acquire()).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("more than {PROBE_SLOTS} /probe requests at once, and no slot came in time\n"),
        )
            .into_response();
    };
    let config = s.config.get();
    let module_name = q.module.as_deref().unwrap_or("http");
    let Some(module) = config.modules.get(module_name) else {
        let known: Vec<&str> = config.modules.keys().map(String::as_str).collect();
        return bad_request(format!(
            "unknown module `{module_name}` (known: {})",
            known.join(", ")
        ));
    };
    let Some(target) = q.target.as_deref().filter(|t| !t.trim().is_empty()) else {
        return bad_request("the `target` parameter is missing".into());
    };
    if module.requires_name && q.name.is_none() {
        return bad_request(format!(
            "module `{module_name}` needs the name to look up: add `&name=`"
        ));
    }
    let mut check = match with_target(
        &module.check,
        target,
        q.name.as_deref(),
        q.record_type.as_deref(),
    ) {
        Ok(c) => c,
        Err(msg) => return bad_request(msg),
    };
    if !module.allow.is_empty() {
        match admitted(module, &check).await {
            Ok(pin) => {
                // The secrets go to the addresses that were checked, not to whatever
                // the name resolves to a moment later.
                if let (Check::Http(h), Some(pin)) = (&mut check, pin) {
                    h.pin = Some(pin);
                }
            }
            Err(msg) => return (StatusCode::FORBIDDEN, msg).into_response(),
        }
    }
    let mut timeout = module.timeout;
    if let Some(budget) = scrape_budget(&headers) {
        timeout = timeout.min(budget);
    }
    let outcome = probe::run(&check, timeout, s.clock.now()).await;
    if let Some(reason) = &outcome.reason {
        tracing::debug!(module = module_name, target, %reason, "probe failed");
    }
    (
        [(header::CONTENT_TYPE, PROM_TEXT)],
        render_single(&check, &outcome),
    )
        .into_response()
}

/// Whether the module may be aimed at this check's target: its host by name, or every
/// address it resolves to, in the module's `allow`. For HTTP, the addresses checked.
async fn admitted(
    module: &crate::config::Module,
    check: &Check,
) -> Result<Option<(String, Vec<std::net::SocketAddr>)>, String> {
    let (host, port) = match check {
        Check::Http(h) => (
            h.url.host_str().unwrap_or_default().to_string(),
            h.url.port_or_known_default().unwrap_or(80),
        ),
        Check::Tcp(t) => host_port(&t.address),
        Check::Udp(u) => host_port(&u.address),
        Check::Grpc(g) => host_port(&g.address),
        Check::Icmp(i) => (i.host.clone(), 0),
        Check::Dns(d) => (d.server.map(|s| s.ip().to_string()).unwrap_or_default(), 53),
        Check::Heartbeat(_) => return Err("not a probe".into()),
    };
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map(|a| a.collect())
        .unwrap_or_default();
    let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    if module.admits(&bare, &ips) {
        Ok(Some((bare, addrs)))
    } else {
        Err(format!(
            "target `{host}` is not in this module's `allow` list: it is not probed\n"
        ))
    }
}

fn host_port(address: &str) -> (String, u16) {
    let (h, p) = crate::probe::ip::split_host_port(address);
    (h.to_string(), p.and_then(|p| p.parse().ok()).unwrap_or(0))
}

/// The time Prometheus gives this scrape, less the margin for the answer.
fn scrape_budget(headers: &HeaderMap) -> Option<Duration> {
    let scrape = headers
        .get("X-Prometheus-Scrape-Timeout-Seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 86_400.0)?;
    let budget = Duration::from_secs_f64(scrape).saturating_sub(SCRAPE_TIMEOUT_OFFSET);
    (!budget.is_zero()).then_some(budget)
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, msg).into_response()
}

/// A module's check aimed at the requested target.
fn with_target(
    check: &Check,
    target: &str,
    name: Option<&str>,
    record_type: Option<&str>,
) -> Result<Check, String> {
    match check {
        Check::Http(h) => {
            let with_scheme = if target.contains("://") {
                target.to_string()
            } else {
                format!("http://{target}")
            };
            let url = url::Url::parse(&with_scheme)
                .map_err(|e| format!("invalid target URL `{target}`: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "target scheme `{}` is not http or https",
                    url.scheme()
                ));
            }
            let mut h = h.clone();
            h.url = url;
            Ok(Check::Http(h))
        }
        Check::Tcp(_) | Check::Udp(_) | Check::Grpc(_) => {
            if !crate::config::valid_host_port(target) {
                return Err(format!("target `{target}` is not host:port"));
            }
            let mut c = check.clone();
            match &mut c {
                Check::Tcp(t) => t.address = target.to_string(),
                Check::Udp(u) => u.address = target.to_string(),
                Check::Grpc(g) => g.address = target.to_string(),
                _ => {}
            }
            Ok(c)
        }
        Check::Heartbeat(_) => {
            Err("a heartbeat is decided by the pings it receives, not probed on demand".into())
        }
        Check::Icmp(i) => {
            if !crate::config::valid_host(target) {
                return Err(format!(
                    "target `{target}` is not a host name or an IP address"
                ));
            }
            let mut i = i.clone();
            i.host = target.to_string();
            Ok(Check::Icmp(i))
        }
        Check::Dns(d) => {
            let server = crate::config::parse_server(target).ok_or_else(|| {
                format!("target `{target}` is not a DNS server address (ip or ip:port)")
            })?;
            let mut d = d.clone();
            d.server = Some(server);
            if let Some(n) = name {
                let fq = if n.ends_with('.') {
                    n.to_string()
                } else {
                    format!("{n}.")
                };
                d.name = hickory_resolver::Name::from_ascii(&fq)
                    .map_err(|_| format!("invalid DNS name `{n}`"))?;
            }
            if let Some(t) = record_type {
                let t = t.to_ascii_uppercase();
                let known = crate::probe::dns::RECORD_TYPES;
                if !known.contains(&t.as_str()) {
                    return Err(format!(
                        "unknown record type `{t}`: use one of {}",
                        known.join(", ")
                    ));
                }
                d.record_type = t
                    .parse()
                    .map_err(|_| format!("unknown record type `{t}`"))?;
            }
            Ok(Check::Dns(d))
        }
    }
}
