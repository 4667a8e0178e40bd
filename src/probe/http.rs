//! HTTP(S) probe on reqwest and rustls.
//!
//! A client is built for every run with no idle pool, so each run (and each redirect hop)
//! opens its own connection. reqwest exposes three hooks that give the phases: the DNS
//! resolver (`resolve`), a layer around the connector (`connect` until the TLS session
//! store is first asked while building the ClientHello, then `tls`), and the response
//! future (`processing` until the head arrives, then `transfer` for the body).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::Policy;
use reqwest::{Method, Url};

use super::{Pattern, Phase, Reason, Recorder, Secret, TlsOptions, io_reason, tls::tls_reason};

/// Default cap on the body read: the probe stops reading there.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// Default number of redirects followed.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    /// Headers whose values came from the environment; never printed.
    pub secret_headers: Vec<(String, Secret)>,
    pub body: Option<String>,
    pub expect_status: StatusSet,
    pub body_contains: Option<String>,
    pub body_not_contains: Option<String>,
    pub body_regex: Option<Pattern>,
    /// JSONPath rules the body must meet.
    pub body_json: Vec<super::json::JsonRule>,
    /// The HTTP version the response must come in (`reqwest::Version`), when required.
    pub http_version: Option<reqwest::Version>,
    /// Response headers that must be present and match (as blackbox's
    /// `fail_if_header_not_matches`).
    pub header_matches: Vec<(String, Pattern)>,
    /// Response headers none of whose values may match (as blackbox's
    /// `fail_if_header_matches`); an absent header passes.
    pub header_not_matches: Vec<(String, Pattern)>,
    pub max_latency: Option<Duration>,
    pub cert_min_days: Option<u32>,
    /// 0: redirects are not followed (a 3xx is then judged by `expect_status`).
    pub max_redirects: u32,
    pub max_body: u64,
    pub tls: TlsOptions,
    pub ip: super::ip::IpProtocol,
    /// Every request goes through this proxy (HTTPS by CONNECT).
    pub proxy: Option<HttpProxy>,
    /// The addresses a host name must resolve to for this run (`/probe` pins those it
    /// checked against a module's `allow`).
    pub pin: Option<(String, Vec<SocketAddr>)>,
}

/// An HTTP(S) proxy and its login.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProxy {
    pub url: Url,
    pub login: Option<(String, Secret)>,
}

impl HttpCheck {
    /// A GET of `url` with every default.
    pub fn get(url: Url) -> Self {
        HttpCheck {
            url,
            method: Method::GET,
            headers: Vec::new(),
            secret_headers: Vec::new(),
            body: None,
            expect_status: StatusSet::default(),
            body_contains: None,
            body_not_contains: None,
            body_regex: None,
            body_json: Vec::new(),
            header_matches: Vec::new(),
            header_not_matches: Vec::new(),
            http_version: None,
            max_latency: None,
            cert_min_days: None,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_body: DEFAULT_MAX_BODY,
            tls: TlsOptions::system(),
            ip: super::ip::IpProtocol::default(),
            proxy: None,
            pin: None,
        }
    }
}

/// How an HTTP version is written in configs and reasons.
pub fn version_name(v: reqwest::Version) -> &'static str {
    match v {
        reqwest::Version::HTTP_09 => "0.9",
        reqwest::Version::HTTP_10 => "1.0",
        reqwest::Version::HTTP_11 => "1.1",
        reqwest::Version::HTTP_2 => "2",
        reqwest::Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// The `header_matches` and `header_not_matches` rules, in order.
fn check_headers(headers: &reqwest::header::HeaderMap, c: &HttpCheck) -> Result<(), Reason> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    for (name, re) in &c.header_matches {
        let got = values(name);
        if got.is_empty() {
            return Err(Reason::HeaderMissing {
                header: name.clone(),
            });
        }
        if let Some(v) = got.iter().find(|v| !re.0.is_match(v)) {
            return Err(Reason::HeaderMismatch {
                header: name.clone(),
                pattern: re.0.as_str().to_string(),
                got: v.clone(),
            });
        }
    }
    for (name, re) in &c.header_not_matches {
        if let Some(v) = values(name).into_iter().find(|v| re.0.is_match(v)) {
            return Err(Reason::HeaderForbidden {
                header: name.clone(),
                pattern: re.0.as_str().to_string(),
                got: v,
            });
        }
    }
    Ok(())
}

/// Accepted status codes as inclusive ranges; the default is 200-399.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl StatusSet {
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

pub(crate) async fn probe(c: &HttpCheck, rec: &Recorder, now: SystemTime) -> Result<(), Reason> {
    // No phase yet: building the client is tocsin's own work, counted only in the total.
    // The connector hook below opens `connect`.
    let tls = c.tls.client_config(rec, &[b"h2", b"http/1.1"])?;
    let builder = match &c.proxy {
        None => reqwest::Client::builder().no_proxy(),
        Some(p) => {
            let mut proxy = reqwest::Proxy::all(p.url.clone()).map_err(|e| Reason::Io {
                detail: format!("cannot use proxy {}: {e}", p.url),
            })?;
            if let Some((user, pass)) = &p.login {
                proxy = proxy.basic_auth(user, pass.expose());
            }
            reqwest::Client::builder().proxy(proxy)
        }
    };
    let client = builder
        .use_preconfigured_tls(tls)
        .dns_resolver(Arc::new(TimedResolver(rec.clone(), c.ip, c.pin.clone())))
        .connector_layer(PhaseLayer(rec.clone()))
        .pool_max_idle_per_host(0)
        // Redirects are followed below, by hand: a secret header must not reach another
        // origin, and reqwest's policy can stop a redirect but not change its headers.
        .redirect(Policy::none())
        .referer(false)
        .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Reason::Io {
            detail: format!("cannot build HTTP client: {e}"),
        })?;
    // An address in the URL is connected to without the resolver.
    match c.url.host() {
        Some(url::Host::Ipv4(a)) => super::ip::note(rec, &a.into()),
        Some(url::Host::Ipv6(a)) => super::ip::note(rec, &a.into()),
        _ => {}
    }
    let mut resp = send_following(&client, c, rec).await?;
    rec.enter(Phase::Transfer);
    let status = resp.status().as_u16();
    rec.details(|d| {
        d.http_status = Some(status);
        d.http_version = Some(format!("{:?}", resp.version()));
        d.http_tls = Some(resp.url().scheme() == "https");
        d.http_content_length = Some(resp.content_length());
    });

    let headers = resp.headers().clone();
    let version = resp.version();
    let mut body: Vec<u8> = Vec::new();
    while (body.len() as u64) < c.max_body {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = (c.max_body - body.len() as u64) as usize;
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => return Err(classify(&e)),
        }
    }
    // Dropping the response closes the connection; the rest of an oversized body is
    // never read.
    drop(resp);
    rec.details(|d| d.body_bytes = Some(body.len() as u64));

    if !c.expect_status.contains(status) {
        return Err(Reason::Status {
            got: status,
            want: c.expect_status.to_string(),
        });
    }
    let text = String::from_utf8_lossy(&body);
    if let Some(needle) = &c.body_contains {
        if !text.contains(needle.as_str()) {
            return Err(Reason::BodyLacks {
                needle: needle.clone(),
            });
        }
    }
    if let Some(needle) = &c.body_not_contains {
        if text.contains(needle.as_str()) {
            return Err(Reason::BodyContains {
                needle: needle.clone(),
            });
        }
    }
    if let Some(re) = &c.body_regex {
        if !re.0.is_match(&text) {
            return Err(Reason::BodyRegex {
                pattern: re.0.as_str().to_string(),
            });
        }
    }
    if let Some(want) = c.http_version.filter(|w| *w != version) {
        return Err(Reason::HttpVersion {
            got: version_name(version).to_string(),
            want: version_name(want).to_string(),
        });
    }
    check_headers(&headers, c)?;
    super::json::check(&body, &c.body_json)?;
    if let Some(min_days) = c.cert_min_days {
        if c.url.scheme() == "https" {
            super::tls::check_cert_days(rec, min_days, now)?;
        }
    }
    if let Some(max) = c.max_latency {
        let took = rec.elapsed_total();
        if took > max {
            return Err(Reason::TooSlow {
                took_ms: took.as_millis() as u64,
                max_ms: max.as_millis() as u64,
            });
        }
    }
    Ok(())
}

/// Sends the request and follows redirects (up to `max_redirects`) the way browsers do:
/// 301 and 302 turn a POST into a GET, 303 turns anything but HEAD into a GET, 307 and
/// 308 keep the method and body. The secret headers (`headers_env`, `basic_auth`,
/// `bearer_token_env`) go only to the origin of the configured URL, and no Referer is
/// ever sent. Each hop opens its own connection; the phases add up over the hops.
async fn send_following(
    client: &reqwest::Client,
    c: &HttpCheck,
    rec: &Recorder,
) -> Result<reqwest::Response, Reason> {
    let origin = c.url.origin();
    let (mut url, mut method, mut body) = (c.url.clone(), c.method.clone(), c.body.clone());
    let mut hops = 0u32;
    loop {
        let mut req = client.request(method.clone(), url.clone());
        for (k, v) in &c.headers {
            req = req.header(k, v);
        }
        if url.origin() == origin {
            for (k, v) in &c.secret_headers {
                let mut value =
                    reqwest::header::HeaderValue::from_str(v.expose()).map_err(|_| Reason::Io {
                        detail: format!("the value of header `{k}` is not a valid header value"),
                    })?;
                value.set_sensitive(true);
                req = req.header(k, value);
            }
        }
        if let Some(b) = &body {
            req = req.body(b.clone());
        }
        let resp = req.send().await.map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let next = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .filter(|n| matches!(n.scheme(), "http" | "https"));
        let Some(next) =
            next.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308) && c.max_redirects > 0)
        else {
            return Ok(resp);
        };
        hops += 1;
        rec.details(|d| d.redirects = Some(hops));
        if hops > c.max_redirects {
            return Err(Reason::TooManyRedirects {
                limit: c.max_redirects,
            });
        }
        let to_get = match status {
            303 => method != Method::HEAD,
            301 | 302 => method == Method::POST,
            _ => false,
        };
        if to_get {
            method = Method::GET;
            body = None;
        }
        // Dropping the response closes its connection; the next hop opens a fresh one.
        drop(resp);
        url = next;
    }
}

/// A resolution failure of our own resolver, found again in reqwest's error chain.
#[derive(Debug)]
struct ResolveFailed {
    host: String,
    detail: String,
}

impl std::fmt::Display for ResolveFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve {}: {}", self.host, self.detail)
    }
}

impl std::error::Error for ResolveFailed {}

/// Sorts a reqwest error into a reason by searching its whole chain (io::Error hides its
/// inner error from `source()`, so that is looked into too): our own resolver error, a
/// rustls error, an io::Error kind, or else hyper's message for protocol violations.
fn classify(e: &reqwest::Error) -> Reason {
    let chain = error_chain(e);
    for err in &chain {
        if let Some(r) = err.downcast_ref::<ResolveFailed>() {
            return Reason::Resolve {
                host: r.host.clone(),
                detail: r.detail.clone(),
            };
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return tls_reason(t);
        }
    }
    let deepest = chain.last().map(|e| e.to_string()).unwrap_or_default();
    for err in &chain {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io_reason(io) {
                Reason::Io { detail } if e.is_connect() => Reason::Connect { detail },
                Reason::Io { .. } => Reason::Protocol { detail: deepest },
                r => r,
            };
        }
    }
    if e.is_connect() {
        Reason::Connect { detail: deepest }
    } else {
        Reason::Protocol { detail: deepest }
    }
}

/// Every error in the chain, outermost first, looking inside io::Errors.
fn error_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        out.push(err);
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// Resolves through the system (getaddrinfo, /etc/hosts included), times it, and orders
/// the addresses by `ip_protocol`. The first address is the one reported: it is the one
/// the connector tries first.
struct TimedResolver(
    Recorder,
    super::ip::IpProtocol,
    Option<(String, Vec<SocketAddr>)>,
);

impl Resolve for TimedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rec = self.0.clone();
        let ip = self.1;
        let pin = self.2.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            rec.enter(Phase::Resolve);
            let looked = match pin.filter(|(h, _)| h.eq_ignore_ascii_case(&host)) {
                // A pinned name resolves to the addresses that were checked; a redirect to
                // another name resolves as usual (and gets no secret header).
                Some((_, addrs)) => Ok(addrs),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map(|a| a.collect::<Vec<SocketAddr>>()),
            };
            rec.enter(Phase::Connect);
            let addrs = match looked {
                Ok(a) => a,
                // The monitor's own trouble travels as the io::Error it is.
                Err(e) if super::monitor_fault(&e).is_some() => return Err(Box::new(e) as _),
                Err(e) => {
                    return Err(Box::new(ResolveFailed {
                        host,
                        detail: e.to_string(),
                    }) as _);
                }
            };
            let addrs = match ip.order(&host, addrs) {
                Ok(a) => a,
                Err(Reason::Resolve { host, detail }) => {
                    return Err(Box::new(ResolveFailed { host, detail }) as _);
                }
                Err(other) => {
                    return Err(Box::new(ResolveFailed {
                        host,
                        detail: other.to_string(),
                    }) as _);
                }
            };
            super::ip::note(&rec, &addrs[0].ip());
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Marks `connect` when the connector starts and `processing` when it hands over an
/// established (and, for https, handshaken) connection.
#[derive(Clone)]
struct PhaseLayer(Recorder);

impl<S> tower::Layer<S> for PhaseLayer {
    type Service = PhaseService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PhaseService {
            inner,
            rec: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct PhaseService<S> {
    inner: S,
    rec: Recorder,
}

impl<S, Req> tower::Service<Req> for PhaseService<S>
where
    S: tower::Service<Req>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.rec.enter(Phase::Connect);
        let fut = self.inner.call(req);
        let rec = self.rec.clone();
        Box::pin(async move {
            let r = fut.await;
            if r.is_ok() {
                rec.enter(Phase::Processing);
            }
            r
        })
    }
}
