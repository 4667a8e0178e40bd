//! Stage two: raw structs → [`Config`], one pass per concern. Each pass's file holds the
//! resolved types of its section next to the rules that make them: [`services`] (services,
//! probes, escalation, maintenance, `/probe` modules), [`http`], [`dns`], [`tcp`] (the
//! checks), [`mail`] (SMTP, DKIM, the company), [`audiences`] (audiences, campaign
//! templates), [`autoresponder`], [`pages`] (placeholder, page webhook, hotline) and
//! [`webhooks`]. Defaults are applied there; every error is collected with its position
//! rather than returned early, and secrets are read once, through [`Ctx`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

pub(super) mod audiences;
pub(super) mod autoresponder;
pub(super) mod dns;
mod http;
pub(super) mod mail;
pub(super) mod pages;
pub(super) mod services;
pub(super) mod tcp;
pub(super) mod webhooks;

use audiences::*;
use autoresponder::*;
use dns::*;
use http::*;
use mail::*;
use pages::*;
use services::*;
use tcp::*;
use webhooks::*;

use super::locate::Path;
use super::raw::*;
use super::{Config, Diag, nearest};
use crate::incident::WebhookEvent;
use crate::probe::dns::RECORD_TYPES;
use crate::probe::http::{DEFAULT_MAX_BODY, DEFAULT_MAX_REDIRECTS};
use crate::probe::{
    Check, DnsCheck, DnsProtocol, HttpCheck, Pattern, Rcode, StatusSet, TcpCheck, TlsOptions,
};
use crate::secret::{Env, Secret};
pub use crate::text::email::valid_email;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9778";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CUSTOMER_THRESHOLD: Duration = Duration::from_secs(3 * 3600);
const DEFAULT_MAX_CONCURRENCY: usize = 256;
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_REDIRECTS_LIMIT: u32 = 100;
const DEFAULT_MAIL_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CAMPAIGN: u64 = 50_000;
const DEFAULT_CONNECTIONS: usize = 4;
const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(30 * 60);
const DEFAULT_NEXT_UPDATE: Duration = Duration::from_secs(60 * 60);

struct Ctx<'d, 'l, 'e> {
    diag: &'d mut Diag<'l>,
    base: PathBuf,
    /// Where secrets are read from: each once, here.
    env: Env<'e>,
}

impl Ctx<'_, '_, '_> {
    /// The secret in the variable `name`; None when unset or empty (whoever needs it says
    /// so when it starts, as they always have: `tocsin check` does not need secrets).
    fn secret(&self, name: &str) -> Option<Secret> {
        Secret::from_env(self.env, name)
    }

    fn err(&mut self, path: &Path, msg: impl Into<String>) {
        self.diag.at(path, msg);
    }

    fn duration(&mut self, path: &Path, s: &str) -> Option<Duration> {
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(m) => {
                self.err(path, m);
                None
            }
        }
    }

    fn positive_duration(&mut self, path: &Path, s: &str) -> Option<Duration> {
        let d = self.duration(path, s)?;
        if d.is_zero() {
            self.err(
                path,
                format!("`{}` must be longer than zero", last_key(path)),
            );
            return None;
        }
        Some(d)
    }

    fn file(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p.strip_prefix("./").unwrap_or(&p))
        }
    }

    fn regex(&mut self, path: &Path, s: &str) -> Option<Pattern> {
        match regex::Regex::new(s) {
            Ok(r) => Some(Pattern(r)),
            Err(e) => {
                // regex's message spans several lines with a caret diagram; its last
                // line says what is wrong.
                let text = e.to_string();
                let last = text.lines().last().unwrap_or_default().trim();
                let first = last.strip_prefix("error: ").unwrap_or(last);
                self.err(
                    path,
                    format!("invalid regex in `{}`: {first}", last_key(path)),
                );
                None
            }
        }
    }
}

/// A `/probe` module that names its own target (`key`): the target comes with each
/// request.
fn target_in_module(cx: &mut Ctx, p: &Path, key: &str, what: &str) {
    cx.err(
        &p.key(key),
        format!("a module's {what} comes from the `/probe?target=` request: remove `{key}`"),
    );
}

fn last_key(path: &Path) -> String {
    match path.0.last() {
        Some(super::locate::Seg::Key(k)) => k.clone(),
        _ => path.to_string(),
    }
}

/// Durations such as `500ms`, `30s`, `15m`, `3h`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid duration `{s}`: add a unit, e.g. `30s`, `15m`, `3h`, `500ms`"
        ));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration `{s}`: use a number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `3h`, `500ms`"))
}

/// Sizes: a number of bytes, or `512KiB`, `1MiB`, `10MB`, `100kB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size `{s}`: use e.g. `1MiB`, `512KiB` or a number of bytes")
    })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size `{s}`: unknown unit `{other}`; use B, kB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

pub(super) fn resolve(
    raw: RawConfig,
    file: &FsPath,
    base: &FsPath,
    env: Env,
    diag: &mut Diag,
) -> Option<Config> {
    let mut cx = Ctx {
        diag,
        base: base.to_path_buf(),
        env,
    };
    let root = Path::root();

    let listen_s = raw
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = match listen_s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(&root.key("listen"), format!("`listen` must be an IP address and port such as {DEFAULT_LISTEN}, not `{listen_s}`"));
            None
        }
    };
    let public_url = match raw.public_url.as_deref() {
        None => None,
        Some(u) => match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Some(u.trim_end_matches('/').to_string())
            }
            _ => {
                cx.err(&root.key("public_url"), format!("`public_url` must be an http(s) URL such as https://status.example.com, not `{u}`"));
                None
            }
        },
    };
    let data_dir = cx.file(raw.data_dir.as_deref().unwrap_or("./var"));
    let max_concurrency = raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 {
        cx.err(
            &root.key("max_concurrency"),
            "`max_concurrency` must be at least 1",
        );
    }

    let defaults = resolve_defaults(&mut cx, raw.defaults.as_ref());

    // Named things that services refer to.
    let escalation = resolve_escalation(&mut cx, &raw.escalation);
    let audiences = resolve_audiences(&mut cx, &raw.audiences);

    // After a shape error (a misspelt or mistyped `services`) this would only be noise.
    if raw.services.is_empty() && cx.diag.is_empty() {
        cx.err(
            &root,
            "no services: add at least one under `services`, each with its `probes`",
        );
    }
    let services = resolve_services(&mut cx, &raw, &defaults);

    let modules = resolve_modules(&mut cx, &raw.modules, defaults.timeout);
    let mail = resolve_mail(&mut cx, raw.mail.as_ref());
    let Pages {
        placeholder_dir,
        language: page_language,
        timezone: page_timezone,
        webhook,
    } = resolve_pages(&mut cx, raw.pages.as_ref(), &data_dir);
    let campaigns = resolve_campaigns(&mut cx, raw.campaigns.as_ref());
    let company = resolve_company(&mut cx, raw.company.as_ref(), &mail);
    let service_ids: Vec<String> = raw.services.iter().map(|s| s.id.clone()).collect();
    let maintenance = resolve_maintenance(&mut cx, &raw.maintenance, &service_ids);

    let autoresponder = raw
        .autoresponder
        .as_ref()
        .and_then(|a| resolve_autoresponder(&mut cx, a, &page_language, &page_timezone));
    let hotline = resolve_hotline(&mut cx, raw.hotline.as_ref(), &data_dir, &page_timezone);
    let webhooks = resolve_incident_webhooks(&mut cx, &raw.webhooks);
    let api_token_env = raw
        .api
        .as_ref()
        .and_then(|a| a.token_env.clone())
        .unwrap_or_else(|| "TOCSIN_API_TOKEN".to_string());
    if !valid_env_name(&api_token_env) {
        cx.err(&root.key("api").key("token_env"), format!("`token_env` names an environment variable (such as TOCSIN_API_TOKEN), not `{api_token_env}`"));
    }
    let api_token = cx.secret(&api_token_env);
    if !cx.diag.is_empty() {
        return None;
    }
    let listen = listen?;
    Some(Config {
        source: file.to_path_buf(),
        listen,
        public_url: public_url.unwrap_or_else(|| format!("http://{listen}")),
        data_dir,
        max_concurrency,
        api_token_env,
        api_token,
        services,
        modules,
        escalation,
        mail,
        audiences,
        placeholder_dir,
        page_language,
        page_timezone,
        webhook,
        campaigns,
        company,
        maintenance,
        autoresponder,
        hotline,
        webhooks,
    })
}

/// Whether a URL host (as the `url` crate keeps it for any scheme) is loopback.
fn loopback_host(h: url::Host<&str>) -> bool {
    match h {
        // Hosts of non-special schemes such as smtp:// stay opaque strings.
        url::Host::Domain(d) => {
            d == "localhost"
                || d.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn ca_pem(cx: &mut Ctx, p: &Path, file: &str) -> Option<Vec<u8>> {
    let path = cx.file(file);
    match std::fs::read(&path) {
        Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(pem),
        Ok(_) => {
            cx.err(
                p,
                format!("ca_file {} holds no PEM certificate", path.display()),
            );
            None
        }
        Err(e) => {
            cx.err(p, format!("cannot read ca_file {}: {e}", path.display()));
            None
        }
    }
}

/// A language code as templates are filed under: `en`, `pl`, `pt-BR`.
pub fn valid_language(s: &str) -> bool {
    let mut parts = s.split('-');
    parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn threshold(cx: &mut Ctx, path: &Path, v: Option<u32>, default: u32) -> u32 {
    match v {
        Some(0) => {
            cx.err(path, format!("`{}` must be at least 1", last_key(path)));
            default
        }
        Some(n) => n,
        None => default,
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn undefined(what: &str, name: &str, section: &str, known: &[String]) -> String {
    match nearest(name, known) {
        Some(best) => format!("unknown {what} `{name}`, did you mean `{best}`?"),
        None if known.is_empty() => format!("unknown {what} `{name}`: define it under `{section}`"),
        None => format!(
            "unknown {what} `{name}`: define it under `{section}` (defined: {})",
            known.join(", ")
        ),
    }
}

pub fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

pub fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
