//! Self-service subscriptions with double opt-in (`campaigns.subscriptions`):
//!
//! - `GET /subscribe`: the form (address, all services or chosen ones, language and time
//!   zone, defaulting from `Accept-Language` and the page's zone);
//! - `POST /subscribe`: checks it, counts it against the limits per client address and
//!   per mail address, keeps the request and mails a confirmation link valid 48 hours.
//!   The answer is the same whether the address was known or not;
//! - `GET /subscribe/confirm`: says what confirming does; only its `POST` confirms, so
//!   mail scanners that fetch links subscribe nobody. Until then the address gets
//!   nothing but that one mail;
//! - `GET|POST /subscription`: "manage my subscription", from a signed link in every
//!   customer mail: services, language, time zone, or stop everything.
//!
//! The client address is the connection's; behind a proxy on the same host (the nginx of
//! deploy/) it is the first of `X-Forwarded-For`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::public::{Public, html, language, localized, unavailable};
use crate::notify::mail::Outgoing;
use crate::store::Subscription;

/// How long a confirmation link is valid.
pub const CONFIRM_VALID: Duration = Duration::from_secs(48 * 3600);

pub fn routes(p: Public) -> Router {
    Router::new()
        .route("/subscribe", get(form).post(request))
        .route("/subscribe/confirm", get(confirm_page).post(confirm))
        .route("/subscription", get(manage_page).post(manage))
        .with_state(p)
}

#[derive(Deserialize, Default)]
struct LangQuery {
    lang: Option<String>,
}

/// A form's fields, repeated names kept (`service=shop&service=api`).
fn fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> &'a str {
    f.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The answer of one request: a page in the reader's language.
struct Reply<'a> {
    p: &'a Public,
    lang: String,
    /// `lang=pl` when chosen by `?lang=`, for the page's links.
    param: String,
    /// `subscribe` or `subscription`.
    template: &'static str,
}

impl<'a> Reply<'a> {
    fn new(
        p: &'a Public,
        asked: Option<&str>,
        headers: &HeaderMap,
        template: &'static str,
    ) -> Self {
        let (lang, param) = language(p, asked, headers);
        Reply {
            p,
            lang,
            param,
            template,
        }
    }

    /// The page at `step` with `extra` variables.
    fn show(&self, code: StatusCode, step: &str, extra: minijinja::Value) -> Response {
        render(
            self.p,
            code,
            &self.lang,
            &self.param,
            self.template,
            step,
            extra,
        )
    }
}

/// Renders `subscribe.html` or `subscription.html` at `step`.
fn render(
    p: &Public,
    code: StatusCode,
    lang: &str,
    param: &str,
    template: &str,
    step: &str,
    extra: minijinja::Value,
) -> Response {
    let config = p.pages.config.get();
    let services: Vec<minijinja::Value> = config
        .services
        .iter()
        .map(|s| minijinja::context! { id => &s.id, name => &s.name, group => &s.group })
        .collect();
    let languages: Vec<String> = p.pages.templates.languages().iter().cloned().collect();
    let ctx = minijinja::context! {
        language => lang,
        company => crate::notify::templates::val(&config.company),
        step => step,
        services => services,
        languages => languages,
        page_timezone => config.page_timezone.clone(),
        status_link => if param.is_empty() { "/status".to_string() } else { format!("/status?{param}") },
        ..extra
    };
    match p.pages.templates.page(template, lang, &ctx) {
        Ok(body) => localized(html(code, body), lang),
        Err(e) => unavailable(&e),
    }
}

fn enabled(p: &Public) -> bool {
    p.pages.config.get().campaigns.subscriptions.enabled
}

async fn form(State(p): State<Public>, Query(q): Query<LangQuery>, headers: HeaderMap) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscribe");
    if !enabled(&p) {
        return r.show(StatusCode::NOT_FOUND, "off", minijinja::context! {});
    }
    r.show(
        StatusCode::OK,
        "form",
        minijinja::context! {
            chosen_language => &r.lang,
            timezone => p.pages.config.get().page_timezone.clone(),
            all => true,
        },
    )
}

/// The client's address: the connection's, or behind a proxy on this host the first of
/// `X-Forwarded-For`.
fn client(peer: SocketAddr, headers: &HeaderMap) -> String {
    if peer.ip().is_loopback() {
        if let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        {
            return first.to_string();
        }
    }
    peer.ip().to_string()
}

/// What a subscription form asks for, checked: the address, the services (none: all),
/// the language and the zone.
fn wanted(p: &Public, f: &[(String, String)]) -> Result<Subscription, &'static str> {
    let config = p.pages.config.get();
    let address = field(f, "email").trim().to_string();
    if address.len() > 254
        || address.parse::<lettre::Address>().is_err()
        || address.contains(char::is_whitespace)
    {
        return Err("bad_email");
    }
    let services: Vec<String> = if field(f, "all") == "1" {
        Vec::new()
    } else {
        let chosen: Vec<String> = f
            .iter()
            .filter(|(k, _)| k == "service")
            .map(|(_, v)| v.clone())
            .collect();
        if chosen.is_empty() {
            return Err("no_service");
        }
        if chosen
            .iter()
            .any(|c| !config.services.iter().any(|s| &s.id == c))
        {
            return Err("bad_service");
        }
        let mut chosen = chosen;
        chosen.sort();
        chosen.dedup();
        chosen
    };
    let language = field(f, "language");
    if !p.pages.templates.languages().contains(language) {
        return Err("bad_language");
    }
    let timezone = field(f, "timezone").trim();
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err("bad_timezone");
    }
    Ok(Subscription {
        address,
        language: language.to_string(),
        timezone: timezone.to_string(),
        services,
    })
}

async fn request(
    State(p): State<Public>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscribe");
    if !enabled(&p) {
        return r.show(StatusCode::NOT_FOUND, "off", minijinja::context! {});
    }
    let f = fields(&body);
    let again = |code, step: &str| {
        r.show(code, step,
            minijinja::context! {
                chosen_language => field(&f, "language"),
                timezone => field(&f, "timezone"),
                email => field(&f, "email"),
                all => field(&f, "all") == "1",
                chosen => f.iter().filter(|(k, _)| k == "service").map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            },
        )
    };
    let wants = match wanted(&p, &f) {
        Ok(w) => w,
        Err(step) => return again(StatusCode::BAD_REQUEST, step),
    };
    let config = p.pages.config.get();
    let limits = &config.campaigns.subscriptions;
    let now = p.clock.now();
    let key = crate::store::address_key(&wants.address);
    let counted = {
        let mut s = p.store.lock();
        s.count_request(
            &format!("ip:{}", client(peer, &headers)),
            Duration::from_secs(3600),
            now,
        )
        .and_then(|by_ip| {
            if by_ip > u64::from(limits.per_ip_per_hour) {
                return Ok((by_ip, 0));
            }
            s.count_request(&format!("address:{key}"), Duration::from_secs(86_400), now)
                .map(|by_address| (by_ip, by_address))
        })
    };
    match counted {
        Ok((by_ip, _)) if by_ip > u64::from(limits.per_ip_per_hour) => {
            tracing::warn!("subscription requests over the limit per client address");
            let mut r = again(StatusCode::TOO_MANY_REQUESTS, "limited");
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("3600"),
            );
            return r;
        }
        Ok((_, by_address)) if by_address > u64::from(limits.per_address_per_day) => {
            // Nothing more is mailed to this address today; the answer does not say so,
            // so that nobody learns whether an address was asked for.
            tracing::warn!("subscription requests over the limit per mail address");
            return r.show(
                StatusCode::OK,
                "sent",
                minijinja::context! { email => &wants.address },
            );
        }
        Ok(_) => {}
        Err(e) => return unavailable(&e.to_string()),
    }
    let nonce = {
        let mut b = [0u8; 12];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
            return unavailable("no randomness for the confirmation link");
        }
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    if let Err(e) = p.store.lock().request_subscription(&wants, &nonce, now) {
        return unavailable(&e.to_string());
    }
    let expires = crate::links::expiry_after(now, CONFIRM_VALID);
    let url = p
        .signer
        .confirm_url(&config.public_url, &wants.address, &nonce, expires);
    let url = format!("{url}&lang={}", wants.language);
    let Some(mailer) = &p.mailer else {
        return unavailable("no mailer");
    };
    let mail = match confirmation(&p, &wants, &url, now) {
        Ok(m) => m,
        Err(e) => return unavailable(&e),
    };
    match mailer.send(&mail).await {
        Ok(()) => {
            tracing::info!("subscription requested; confirmation mailed");
            r.show(
                StatusCode::OK,
                "sent",
                minijinja::context! { email => &wants.address },
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the subscription's confirmation could not be mailed");
            again(StatusCode::SERVICE_UNAVAILABLE, "mail_failed")
        }
    }
}

/// The confirmation mail, in the language asked for.
fn confirmation(
    p: &Public,
    wants: &Subscription,
    url: &str,
    now: std::time::SystemTime,
) -> Result<Outgoing, String> {
    let config = p.pages.config.get();
    let t = &p.pages.templates;
    // A language of its own made before subscriptions existed gets the English mail.
    let lang = Some(t.language(&wants.language))
        .filter(|l| t.has(&format!("{l}/confirm.txt")))
        .unwrap_or("en");
    let names: Vec<String> = wants
        .services
        .iter()
        .map(|s| config.service_name(s))
        .collect();
    let ctx = minijinja::context! {
        language => lang,
        company => crate::notify::templates::val(&config.company),
        email => &wants.address,
        services => names,
        confirm_url => url,
        valid_until => crate::notify::templates::local_time(now + CONFIRM_VALID, &wants.timezone, lang),
        status_url => format!("{}/status?lang={lang}", config.public_url),
    };
    let subject = t.notice("confirm.subject", lang, &ctx)?;
    Ok(Outgoing {
        to: vec![wants.address.clone()],
        subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
        text: t.notice("confirm.txt", lang, &ctx)?,
        html: t.notice("confirm.html", lang, &ctx)?,
        ..Outgoing::default()
    })
}

#[derive(Deserialize)]
struct ConfirmQuery {
    e: Option<String>,
    n: Option<String>,
    x: Option<u64>,
    s: Option<String>,
    lang: Option<String>,
}

/// The link's address and nonce, or the step that says why not.
fn checked(p: &Public, q: &ConfirmQuery) -> Result<(String, String), &'static str> {
    let (Some(e), Some(n), Some(x), Some(s)) = (&q.e, &q.n, q.x, &q.s) else {
        return Err("incomplete");
    };
    p.signer
        .verify_confirm(e, n, x, s, p.clock.now())
        .map_err(|err| match err {
            crate::links::LinkError::Expired => "expired",
            _ => "invalid",
        })
}

async fn confirm_page(
    State(p): State<Public>,
    Query(q): Query<ConfirmQuery>,
    headers: HeaderMap,
) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscribe");
    let lang = &r.lang;
    match checked(&p, &q) {
        Ok((email, _)) => r.show(StatusCode::OK, "confirm",
            minijinja::context! {
                email => email,
                action => format!(
                    "/subscribe/confirm?e={}&n={}&x={}&s={}&lang={lang}",
                    url::form_urlencoded::byte_serialize(q.e.as_deref().unwrap_or_default().as_bytes()).collect::<String>(),
                    q.n.as_deref().unwrap_or_default(),
                    q.x.unwrap_or_default(),
                    q.s.as_deref().unwrap_or_default(),
                ),
            },
        ),
        Err(step) => r.show(StatusCode::FORBIDDEN, step,
            minijinja::context! {},
        ),
    }
}

async fn confirm(
    State(p): State<Public>,
    Query(q): Query<ConfirmQuery>,
    headers: HeaderMap,
) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscribe");
    let (email, nonce) = match checked(&p, &q) {
        Ok(x) => x,
        Err(step) => {
            return r.show(StatusCode::FORBIDDEN, step, minijinja::context! {});
        }
    };
    let now = p.clock.now();
    let done = p.store.lock().confirm_subscription(&email, &nonce, now);
    match done {
        Ok(Some(s)) => {
            tracing::info!("a subscription was confirmed");
            let config = p.pages.config.get();
            r.show(
                StatusCode::OK,
                "confirmed",
                minijinja::context! {
                    email => &s.address,
                    manage => p.signer.manage_url("", &s.address),
                    chosen => s.services.iter().map(|x| config.service_name(x)).collect::<Vec<_>>(),
                },
            )
        }
        // Confirmed already, or replaced by a newer request: this link does nothing.
        Ok(None) => r.show(StatusCode::CONFLICT, "used", minijinja::context! {}),
        Err(e) => unavailable(&e.to_string()),
    }
}

#[derive(Deserialize)]
struct ManageQuery {
    e: Option<String>,
    s: Option<String>,
    lang: Option<String>,
}

/// The address a manage link is for, or the step that says why not.
fn managed(p: &Public, q: &ManageQuery) -> Result<String, &'static str> {
    let (Some(e), Some(s)) = (&q.e, &q.s) else {
        return Err("incomplete");
    };
    p.signer.verify_manage(e, s).map_err(|_| "invalid")
}

async fn manage_page(
    State(p): State<Public>,
    Query(q): Query<ManageQuery>,
    headers: HeaderMap,
) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscription");
    let lang = &r.lang;
    let email = match managed(&p, &q) {
        Ok(e) => e,
        Err(step) => return r.show(StatusCode::FORBIDDEN, step, minijinja::context! {}),
    };
    let found = p.store.lock().subscription(&email);
    match found {
        Ok(sub) => r.show(StatusCode::OK, "manage",
            minijinja::context! {
                email => &email,
                subscribed => sub.is_some(),
                all => sub.as_ref().is_none_or(|s| s.services.is_empty()),
                chosen => sub.as_ref().map(|s| s.services.clone()).unwrap_or_default(),
                chosen_language => sub.as_ref().map(|s| s.language.clone()).unwrap_or_else(|| lang.clone()),
                timezone => sub.as_ref().map(|s| s.timezone.clone()).unwrap_or_else(|| p.pages.config.get().page_timezone.clone()),
                action => format!(
                    "/subscription?e={}&s={}&lang={lang}",
                    url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>(),
                    q.s.as_deref().unwrap_or_default()
                ),
            },
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}

async fn manage(
    State(p): State<Public>,
    Query(q): Query<ManageQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = Reply::new(&p, q.lang.as_deref(), &headers, "subscription");
    let email = match managed(&p, &q) {
        Ok(e) => e,
        Err(step) => return r.show(StatusCode::FORBIDDEN, step, minijinja::context! {}),
    };
    let f = fields(&body);
    let now = p.clock.now();
    if field(&f, "stop") == "1" {
        // Everything: the subscription goes, and the address opts out of every campaign.
        let done = {
            let mut s = p.store.lock();
            s.remove_subscription(&email)
                .and_then(|_| s.opt_out(&email, now))
        };
        return match done {
            Ok(_) => {
                tracing::info!("a customer stopped every notice");
                r.show(
                    StatusCode::OK,
                    "stopped",
                    minijinja::context! { email => &email },
                )
            }
            Err(e) => unavailable(&e.to_string()),
        };
    }
    let mut with_email = f.clone();
    with_email.retain(|(k, _)| k != "email");
    with_email.push(("email".into(), email.clone()));
    let wants = match wanted(&p, &with_email) {
        Ok(w) => w,
        Err(step) => {
            return r.show(
                StatusCode::BAD_REQUEST,
                step,
                minijinja::context! { email => &email },
            );
        }
    };
    let changed = p.store.lock().change_subscription(&wants);
    match changed {
        Ok(true) => r.show(
            StatusCode::OK,
            "saved",
            minijinja::context! { email => &email },
        ),
        // Not a subscriber (a customer from the company's own list): only "stop" applies.
        Ok(false) => r.show(
            StatusCode::CONFLICT,
            "not_subscribed",
            minijinja::context! { email => &email },
        ),
        Err(e) => unavailable(&e.to_string()),
    }
}
