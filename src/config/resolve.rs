//! Stage two: raw structs → [`Config`]. Defaults are applied here, every cross-field rule
//! is checked here, and every error is collected rather than returned early.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};

use super::locate::Path;
use super::raw::*;
use super::{
    Audience, Autoresponder, Campaigns, Company, Compensation, Config, Diag, Dkim, Hotline,
    IncidentWebhook, Level, Mail, Maintenance, Module, Probe, Service, Webhook, nearest,
};
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

    // Defaults.
    let dp = root.key("defaults");
    let d = raw.defaults.as_ref();
    let def_interval = d
        .and_then(|d| d.interval.as_deref())
        .and_then(|s| cx.positive_duration(&dp.key("interval"), s))
        .unwrap_or(DEFAULT_INTERVAL);
    let def_timeout = d
        .and_then(|d| d.timeout.as_deref())
        .and_then(|s| cx.positive_duration(&dp.key("timeout"), s))
        .unwrap_or(DEFAULT_TIMEOUT);
    let def_failure = threshold(
        &mut cx,
        &dp.key("failure_threshold"),
        d.and_then(|d| d.failure_threshold),
        3,
    );
    let def_success = threshold(
        &mut cx,
        &dp.key("success_threshold"),
        d.and_then(|d| d.success_threshold),
        2,
    );

    // Named things that services refer to.
    let escalation = resolve_escalation(&mut cx, &raw.escalation);
    let audiences = resolve_audiences(&mut cx, &raw.audiences);
    let escalation_names: Vec<String> = raw.escalation.keys().cloned().collect();
    let audience_names: Vec<String> = raw.audiences.keys().cloned().collect();

    // After a shape error (a misspelt or mistyped `services`) this would only be noise.
    if raw.services.is_empty() && cx.diag.is_empty() {
        cx.err(
            &root,
            "no services: add at least one under `services`, each with its `probes`",
        );
    }
    let mut services = Vec::new();
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let mut seen_probes: HashMap<String, String> = HashMap::new();
    for (i, rs) in raw.services.iter().enumerate() {
        let sp = root.key("services").index(i);
        if !valid_id(&rs.id) {
            cx.err(&sp.key("id"), format!("service id `{}` may hold only lowercase letters, digits, `-` and `_` (it names files and URLs)", rs.id));
        }
        if let Some(first) = seen_ids.insert(rs.id.clone(), i) {
            cx.err(
                &sp.key("id"),
                format!("duplicate service id `{}` (also services[{first}])", rs.id),
            );
        }
        let customer_threshold = rs
            .customer_threshold
            .as_deref()
            .and_then(|s| cx.positive_duration(&sp.key("customer_threshold"), s))
            .unwrap_or(DEFAULT_CUSTOMER_THRESHOLD);
        if let Some(e) = &rs.escalation {
            if !raw.escalation.contains_key(e) {
                cx.err(
                    &sp.key("escalation"),
                    undefined("escalation policy", e, "escalation", &escalation_names),
                );
            }
        }
        if let Some(a) = &rs.audience {
            if !raw.audiences.contains_key(a) {
                cx.err(
                    &sp.key("audience"),
                    undefined("audience", a, "audiences", &audience_names),
                );
            }
        }
        let failure_threshold = threshold(
            &mut cx,
            &sp.key("failure_threshold"),
            rs.failure_threshold,
            def_failure,
        );
        let success_threshold = threshold(
            &mut cx,
            &sp.key("success_threshold"),
            rs.success_threshold,
            def_success,
        );
        if rs.probes.is_empty() {
            cx.err(
                &sp.key("id"),
                format!(
                    "service `{}` has no probes: add at least one under `probes`",
                    rs.id
                ),
            );
        }
        let mut probes = Vec::new();
        for (j, rp) in rs.probes.iter().enumerate() {
            let pp = sp.key("probes").index(j);
            if rp.name.trim().is_empty() || rp.name.contains('/') {
                cx.err(
                    &pp.key("name"),
                    "probe name must not be empty nor contain `/`",
                );
            }
            if let Some(other) = seen_probes.insert(rp.name.clone(), rs.id.clone()) {
                cx.err(&pp.key("name"), format!("duplicate probe name `{}` (also in service `{other}`); probe names are unique across services", rp.name));
            }
            let interval_path = if rp.interval.is_some() {
                pp.key("interval")
            } else {
                dp.key("interval")
            };
            let interval = rp
                .interval
                .as_deref()
                .and_then(|s| cx.positive_duration(&pp.key("interval"), s))
                .unwrap_or(def_interval);
            let timeout = rp
                .timeout
                .as_deref()
                .and_then(|s| cx.positive_duration(&pp.key("timeout"), s))
                .unwrap_or(def_timeout);
            if interval < MIN_INTERVAL {
                cx.err(
                    &interval_path,
                    format!(
                        "interval {} is too short: the minimum is 100ms",
                        fmt_dur(interval)
                    ),
                );
            }
            if timeout >= interval {
                let tp = if rp.timeout.is_some() {
                    pp.key("timeout")
                } else if rp.interval.is_some() {
                    pp.key("interval")
                } else if d.and_then(|d| d.timeout.as_ref()).is_some() {
                    dp.key("timeout")
                } else {
                    dp.key("interval")
                };
                cx.err(
                    &tp,
                    format!(
                        "probe `{}`: timeout {} must be shorter than its interval {}",
                        rp.name,
                        fmt_dur(timeout),
                        fmt_dur(interval)
                    ),
                );
            }
            let check = check_of(
                &mut cx,
                &pp,
                rp.http.as_ref(),
                rp.dns.as_ref(),
                rp.tcp.as_ref(),
                true,
            );
            if let Some(check) = check {
                probes.push(Arc::new(Probe {
                    service: rs.id.clone(),
                    name: rp.name.clone(),
                    interval,
                    timeout,
                    canary: rp.canary,
                    check,
                }));
            }
        }
        let compensation = rs.compensation.as_ref().and_then(|c| {
            let cp = sp.key("compensation");
            let after = cx.positive_duration(&cp.key("after"), &c.after);
            let path = cx.file(&c.codes_csv);
            // Its rows are checked with the audiences (`tocsin check`), by line.
            if !path.is_file() {
                cx.err(
                    &cp.key("codes_csv"),
                    format!("codes file `{}` does not exist", path.display()),
                );
            }
            Some(Compensation {
                after: after?,
                codes_csv: path,
            })
        });
        services.push(Service {
            id: rs.id.clone(),
            name: rs.name.clone().unwrap_or_else(|| rs.id.clone()),
            customer_threshold,
            escalation: rs.escalation.clone(),
            audience: rs.audience.clone(),
            failure_threshold,
            success_threshold,
            compensation,
            probes,
        });
    }

    let modules = resolve_modules(&mut cx, &raw.modules, def_timeout);
    let mail = resolve_mail(&mut cx, raw.mail.as_ref());
    let placeholder_dir = raw
        .pages
        .as_ref()
        .and_then(|p| p.placeholder_dir.as_deref())
        .map(|s| cx.file(s))
        .unwrap_or_else(|| data_dir.join("www"));
    let pp = root.key("pages");
    let page_language = raw
        .pages
        .as_ref()
        .and_then(|p| p.language.clone())
        .unwrap_or_else(|| "en".into());
    if !valid_language(&page_language) {
        cx.err(
            &pp.key("language"),
            format!("`language` is a language code such as en, pl or sv, not `{page_language}`"),
        );
    }
    let page_timezone = raw
        .pages
        .as_ref()
        .and_then(|p| p.timezone.clone())
        .unwrap_or_else(|| "UTC".into());
    if page_timezone.parse::<chrono_tz::Tz>().is_err() {
        cx.err(&pp.key("timezone"), format!("`timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{page_timezone}`"));
    }
    let webhook = raw
        .pages
        .as_ref()
        .and_then(|p| p.webhook.as_ref())
        .and_then(|w| resolve_webhook(&mut cx, &pp.key("webhook"), w));
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

fn resolve_incident_webhooks(cx: &mut Ctx, raw: &[RawIncidentWebhook]) -> Vec<IncidentWebhook> {
    let wp = Path::root().key("webhooks");
    let known: Vec<String> = WebhookEvent::ALL
        .iter()
        .map(|e| e.as_str().to_string())
        .collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, w) in raw.iter().enumerate() {
        let p = wp.index(i);
        let url = match url::Url::parse(&w.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            _ => {
                cx.err(&p.key("url"), format!("`url` must be an http(s) URL such as https://chat.example.com/hooks/tocsin, not `{}`", w.url));
                None
            }
        };
        if !seen.insert(w.url.clone()) {
            cx.err(&p.key("url"), format!("webhook {} is listed twice", w.url));
        }
        if !valid_env_name(&w.secret_env) {
            cx.err(&p.key("secret_env"), format!("`secret_env` names an environment variable holding the signing key (such as WEBHOOK_SECRET), not `{}`", w.secret_env));
        }
        let events = match &w.events {
            None => WebhookEvent::ALL.to_vec(),
            Some(list) => {
                if list.is_empty() {
                    cx.err(
                        &p.key("events"),
                        "`events` is empty: leave it out to send every event",
                    );
                }
                let mut events = Vec::new();
                for (j, e) in list.iter().enumerate() {
                    match WebhookEvent::parse(e) {
                        Some(ev) => events.push(ev),
                        None => {
                            let hint = nearest(e, &known)
                                .map(|n| format!(", did you mean `{n}`?"))
                                .unwrap_or_else(|| format!(" (events: {})", known.join(", ")));
                            cx.err(
                                &p.key("events").index(j),
                                format!("unknown event `{e}`{hint}"),
                            );
                        }
                    }
                }
                events
            }
        };
        if let Some(url) = url {
            out.push(IncidentWebhook {
                url,
                secret_env: w.secret_env.clone(),
                secret: cx.secret(&w.secret_env),
                events,
            });
        }
    }
    out
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

fn resolve_autoresponder(
    cx: &mut Ctx,
    a: &RawAutoresponder,
    language: &str,
    timezone: &str,
) -> Option<Autoresponder> {
    let ap = Path::root().key("autoresponder");
    let url = match url::Url::parse(&a.managesieve) {
        Ok(u) if u.scheme() == "sieve" && u.host_str().is_some_and(|h| !h.is_empty()) => {
            if !u.username().is_empty() || u.password().is_some() {
                cx.err(&ap.key("managesieve"), "credentials do not belong in the file: remove them from the URL and set `user_env` and `password_env`");
            }
            Some(u)
        }
        _ => {
            cx.err(
                &ap.key("managesieve"),
                format!(
                    "`managesieve` must be a URL such as sieve://mail.example.com:4190, not `{}`",
                    a.managesieve
                ),
            );
            None
        }
    };
    for (key, v) in [("user_env", &a.user_env), ("password_env", &a.password_env)] {
        if !valid_env_name(v) {
            cx.err(
                &ap.key(key),
                format!(
                    "`{key}` names an environment variable (such as SIEVE_PASSWORD), not `{v}`"
                ),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (i, m) in a.mailboxes.iter().enumerate() {
        if m.trim().is_empty() || m.contains(['\r', '\n', '\0', '"']) {
            cx.err(
                &ap.key("mailboxes").index(i),
                format!("`{m}` is not a mailbox name"),
            );
        } else if !seen.insert(m.to_lowercase()) {
            cx.err(
                &ap.key("mailboxes").index(i),
                format!("mailbox `{m}` is listed twice"),
            );
        }
    }
    if a.allow_plain
        && !url
            .as_ref()
            .and_then(|u| u.host())
            .is_some_and(loopback_host)
    {
        cx.err(&ap.key("allow_plain"), "`allow_plain` is only for a ManageSieve server on loopback (127.0.0.1, ::1, localhost): any other host must offer STARTTLS");
    }
    let ca = a
        .ca_file
        .as_deref()
        .and_then(|f| ca_pem(cx, &ap.key("ca_file"), f));
    let timeout = a
        .timeout
        .as_deref()
        .and_then(|t| cx.positive_duration(&ap.key("timeout"), t))
        .unwrap_or(Duration::from_secs(30));
    let script = a.script.clone().unwrap_or_else(|| "tocsin-outage".into());
    if script.is_empty()
        || script.len() > 100
        || !script
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        cx.err(&ap.key("script"), format!("`script` is the name of tocsin's script on the server: letters, digits, `-`, `_`, `.`; not `{script}`"));
    }
    let language = a.language.clone().unwrap_or_else(|| language.to_string());
    if !valid_language(&language) {
        cx.err(
            &ap.key("language"),
            format!("`language` is a language code such as en, pl or sv, not `{language}`"),
        );
    }
    let timezone = a.timezone.clone().unwrap_or_else(|| timezone.to_string());
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        cx.err(&ap.key("timezone"), format!("`timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{timezone}`"));
    }
    let days = a.days.unwrap_or(1);
    if days == 0 || days > 30 {
        cx.err(
            &ap.key("days"),
            "`days` (at most one reply per sender in this many days) must be between 1 and 30",
        );
    }
    let url = url?;
    Some(Autoresponder {
        host: url
            .host_str()
            .unwrap_or_default()
            .trim_matches(|c| c == '[' || c == ']')
            .to_string(),
        port: url.port().unwrap_or(4190),
        user_env: a.user_env.clone(),
        password_env: a.password_env.clone(),
        user: cx.secret(&a.user_env),
        password: cx.secret(&a.password_env),
        mailboxes: if a.mailboxes.is_empty() {
            vec![String::new()]
        } else {
            a.mailboxes.clone()
        },
        allow_plain: a.allow_plain,
        ca_pem: ca,
        timeout,
        script,
        language,
        timezone,
        days,
    })
}

fn resolve_hotline(
    cx: &mut Ctx,
    raw: Option<&RawHotline>,
    data_dir: &FsPath,
    timezone: &str,
) -> Hotline {
    let hp = Path::root().key("hotline");
    let mut h = Hotline {
        dir: data_dir.join("hotline"),
        languages: Vec::new(),
        timezone: timezone.to_string(),
        hook: None,
        hook_timeout: Duration::from_secs(30),
    };
    let Some(raw) = raw else {
        return h;
    };
    if let Some(d) = &raw.dir {
        h.dir = cx.file(d);
    }
    for (i, l) in raw.languages.iter().flatten().enumerate() {
        if !valid_language(l) {
            cx.err(
                &hp.key("languages").index(i),
                format!("`{l}` is not a language code such as en, pl or sv"),
            );
        }
    }
    h.languages = raw.languages.clone().unwrap_or_default();
    if let Some(tz) = &raw.timezone {
        if tz.parse::<chrono_tz::Tz>().is_err() {
            cx.err(
                &hp.key("timezone"),
                format!(
                    "`timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{tz}`"
                ),
            );
        }
        h.timezone = tz.clone();
    }
    if let Some(cmd) = &raw.hook {
        match cmd.first() {
            None => cx.err(&hp.key("hook"), "`hook` is a command and its arguments, such as [/usr/local/bin/announce, --line, main]"),
            Some(prog) => {
                let path = cx.file(prog);
                let runnable = std::fs::metadata(&path).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                });
                if !runnable {
                    cx.err(&hp.key("hook").index(0), format!("hook program {} does not exist or is not executable", path.display()));
                }
                let mut c = cmd.clone();
                c[0] = path.display().to_string();
                h.hook = Some(c);
            }
        }
    }
    if let Some(t) = &raw.hook_timeout {
        if let Some(d) = cx.positive_duration(&hp.key("hook_timeout"), t) {
            h.hook_timeout = d;
        }
    }
    h
}

/// A language code as templates are filed under: `en`, `pl`, `pt-BR`.
pub fn valid_language(s: &str) -> bool {
    let mut parts = s.split('-');
    parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn resolve_webhook(cx: &mut Ctx, p: &Path, w: &RawWebhook) -> Option<Webhook> {
    let url = match url::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        _ => {
            cx.err(&p.key("url"), format!("`url` must be an http(s) URL such as https://cdn.example.com/hooks/tocsin, not `{}`", w.url));
            None
        }
    };
    if let Some(v) = &w.token_env {
        if !valid_env_name(v) {
            cx.err(
                &p.key("token_env"),
                format!(
                    "`token_env` names an environment variable (such as WEBHOOK_TOKEN), not `{v}`"
                ),
            );
        }
    }
    Some(Webhook {
        url: url?,
        token_env: w.token_env.clone(),
        token: w.token_env.as_deref().and_then(|v| cx.secret(v)),
    })
}

fn resolve_campaigns(cx: &mut Ctx, raw: Option<&RawCampaigns>) -> Campaigns {
    let cp = Path::root().key("campaigns");
    let mut c = Campaigns {
        templates: None,
        update_every: DEFAULT_UPDATE_EVERY,
        next_update: DEFAULT_NEXT_UPDATE,
    };
    let Some(r) = raw else { return c };
    if let Some(t) = &r.templates {
        let dir = cx.file(t);
        if dir.is_dir() {
            c.templates = Some(dir);
        } else {
            cx.err(
                &cp.key("templates"),
                format!("template directory `{}` does not exist", dir.display()),
            );
        }
    }
    if let Some(d) = r
        .update_every
        .as_deref()
        .and_then(|s| cx.positive_duration(&cp.key("update_every"), s))
    {
        c.update_every = d;
    }
    if let Some(d) = r
        .next_update
        .as_deref()
        .and_then(|s| cx.positive_duration(&cp.key("next_update"), s))
    {
        c.next_update = d;
    }
    if c.next_update < c.update_every {
        let at = if r.next_update.is_some() {
            "next_update"
        } else {
            "update_every"
        };
        cx.err(&cp.key(at), format!("`next_update` ({}) is shorter than `update_every` ({}): the promised update could not be sent in time", fmt_dur(c.next_update), fmt_dur(c.update_every)));
    }
    c
}

fn resolve_company(cx: &mut Ctx, raw: Option<&RawCompany>, mail: &Mail) -> Company {
    let cp = Path::root().key("company");
    // Without a name, the display name of `mail.from` speaks for the company.
    let from_name = mail
        .from
        .as_deref()
        .and_then(|f| f.split_once('<'))
        .map(|(n, _)| n.trim().trim_matches('"').to_string())
        .filter(|n| !n.is_empty());
    let Some(r) = raw else {
        return Company {
            name: from_name.unwrap_or_else(|| "Our team".into()),
            ..Company::default()
        };
    };
    for (key, v) in [
        ("name", &r.name),
        ("phone", &r.phone),
        ("email", &r.email),
        ("website", &r.website),
    ] {
        if v.as_deref()
            .is_some_and(|v| v.chars().any(char::is_control))
        {
            cx.err(&cp.key(key), format!("`{key}` must be one line of text"));
        }
    }
    if let Some(e) = &r.email {
        if !valid_email(e) {
            cx.err(
                &cp.key("email"),
                format!("`email` must be an address such as help@example.com, not `{e}`"),
            );
        }
    }
    if let Some(w) = &r.website {
        if !url::Url::parse(w).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            cx.err(
                &cp.key("website"),
                format!("`website` must be an http(s) URL, not `{w}`"),
            );
        }
    }
    Company {
        name: r
            .name
            .clone()
            .or(from_name)
            .unwrap_or_else(|| "Our team".into()),
        phone: r.phone.clone(),
        email: r.email.clone(),
        website: r.website.clone(),
    }
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

/// Builds the check of a probe (`need_target`) or a module (target from the request).
fn check_of(
    cx: &mut Ctx,
    p: &Path,
    http: Option<&RawHttp>,
    dns: Option<&RawDns>,
    tcp: Option<&RawTcp>,
    need_target: bool,
) -> Option<Check> {
    let given: Vec<&str> = [
        ("http", http.is_some()),
        ("dns", dns.is_some()),
        ("tcp", tcp.is_some()),
    ]
    .iter()
    .filter(|(_, s)| *s)
    .map(|(n, _)| *n)
    .collect();
    match given.as_slice() {
        [] => {
            cx.err(
                p,
                "needs one of `http`, `dns` or `tcp` to say what to check",
            );
            None
        }
        [_] => {
            if let Some(h) = http {
                http_check(cx, &p.key("http"), h, need_target).map(Check::Http)
            } else if let Some(d) = dns {
                dns_check(cx, &p.key("dns"), d, need_target).map(Check::Dns)
            } else {
                tcp.and_then(|t| tcp_check(cx, &p.key("tcp"), t, need_target))
                    .map(Check::Tcp)
            }
        }
        many => {
            cx.err(
                &p.key(many[1]),
                format!(
                    "has both `{}` and `{}`: one probe checks one thing; split it into two probes",
                    many[0], many[1]
                ),
            );
            None
        }
    }
}

fn http_check(cx: &mut Ctx, p: &Path, h: &RawHttp, need_target: bool) -> Option<HttpCheck> {
    let url = match (&h.url, need_target) {
        (Some(u), true) => match url::Url::parse(u) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                cx.err(
                    &p.key("url"),
                    format!(
                        "URL scheme `{}` is not supported: use http or https",
                        url.scheme()
                    ),
                );
                None
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                cx.err(&p.key("url"), format!("URL `{u}` has no host"));
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                cx.err(&p.key("url"), format!("invalid URL `{u}`: {e}"));
                None
            }
        },
        (None, true) => {
            cx.err(p, "missing key `url`");
            None
        }
        (Some(_), false) => {
            cx.err(
                &p.key("url"),
                "a module's target comes from the `/probe?target=` request: remove `url`",
            );
            None
        }
        (None, false) => url::Url::parse("http://module.invalid/").ok(),
    };
    let method = match &h.method {
        None => Some(Method::GET),
        Some(m) => {
            let known: Vec<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if known.contains(m) {
                Method::from_bytes(m.as_bytes()).ok()
            } else {
                cx.err(
                    &p.key("method"),
                    match nearest(&m.to_ascii_uppercase(), &known) {
                        Some(best) => format!("unknown HTTP method `{m}`, did you mean `{best}`?"),
                        None => {
                            format!("unknown HTTP method `{m}`: use one of {}", known.join(", "))
                        }
                    },
                );
                None
            }
        }
    };
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        let hp = p.key("headers").key(k);
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.diag
                .at_key(&hp, format!("invalid HTTP header name `{k}`"));
        } else if HeaderValue::from_str(v).is_err() {
            cx.err(
                &hp,
                format!(
                    "invalid value for HTTP header `{k}`: it must be visible ASCII on one line"
                ),
            );
        } else {
            headers.push((k.clone(), v.clone()));
        }
    }
    let mut secret_headers = Vec::new();
    for (k, var) in &h.headers_env {
        let hp = p.key("headers_env").key(k);
        if HeaderName::from_bytes(k.as_bytes()).is_err() {
            cx.diag
                .at_key(&hp, format!("invalid HTTP header name `{k}`"));
        } else if !valid_env_name(var) {
            cx.err(
                &hp,
                format!("`{var}` is not an environment variable name (such as API_TOKEN)"),
            );
        } else {
            match (cx.env)(var) {
                Some(v) if HeaderValue::from_str(&v).is_ok() && !v.is_empty() => secret_headers.push((k.clone(), Secret::new(v))),
                Some(_) => cx.err(&hp, format!("environment variable `{var}` (for header `{k}`) is empty or not a valid header value")),
                None => cx.err(&hp, format!("environment variable `{var}` (for header `{k}`) is not set")),
            }
        }
    }
    let expect_status = match &h.expect_status {
        None => Some(StatusSet::default()),
        Some(RawStatusList::One(s)) => {
            status_range(cx, &p.key("expect_status"), s).map(|r| StatusSet(vec![r]))
        }
        Some(RawStatusList::Many(list)) => {
            if list.is_empty() {
                cx.err(
                    &p.key("expect_status"),
                    "`expect_status` is empty: list at least one status or range",
                );
            }
            let ranges: Vec<_> = list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| status_range(cx, &p.key("expect_status").index(i), s))
                .collect();
            (ranges.len() == list.len() && !list.is_empty()).then_some(StatusSet(ranges))
        }
    };
    let body_regex = match &h.body_regex {
        Some(r) => cx.regex(&p.key("body_regex"), r).map(Some),
        None => Some(None),
    };
    let max_latency = match &h.max_latency {
        Some(s) => Some(cx.positive_duration(&p.key("max_latency"), s)),
        None => Some(None),
    };
    let max_redirects = match h.follow_redirects {
        None | Some(RawRedirects::Flag(true)) => DEFAULT_MAX_REDIRECTS,
        Some(RawRedirects::Flag(false)) => 0,
        Some(RawRedirects::Count(n)) if n > MAX_REDIRECTS_LIMIT => {
            cx.err(
                &p.key("follow_redirects"),
                format!("`follow_redirects` allows at most {MAX_REDIRECTS_LIMIT} redirects"),
            );
            0
        }
        Some(RawRedirects::Count(n)) => n,
    };
    let max_body = match &h.max_body {
        None => Some(DEFAULT_MAX_BODY),
        Some(RawSize::Bytes(n)) => Some(*n),
        Some(RawSize::Text(s)) => match parse_size(s) {
            Ok(n) => Some(n),
            Err(m) => {
                cx.err(&p.key("max_body"), m);
                None
            }
        },
    };
    if max_body == Some(0) {
        cx.err(&p.key("max_body"), "`max_body` must be at least 1 byte");
    }
    let is_http_url = url.as_ref().is_some_and(|u| u.scheme() == "http") && need_target;
    if is_http_url && h.cert_min_days.is_some() {
        cx.err(
            &p.key("cert_min_days"),
            "`cert_min_days` needs an https URL",
        );
    }
    if is_http_url && h.tls.is_some() {
        cx.err(&p.key("tls"), "`tls` applies only to https URLs");
    }
    let tls = tls_options(cx, &p.key("tls"), h.tls.as_ref());
    Some(HttpCheck {
        url: url?,
        method: method?,
        headers,
        secret_headers,
        body: h.body.clone(),
        expect_status: expect_status?,
        body_contains: h.body_contains.clone(),
        body_not_contains: h.body_not_contains.clone(),
        body_regex: body_regex?,
        max_latency: max_latency?,
        cert_min_days: h.cert_min_days,
        max_redirects,
        max_body: max_body?,
        tls: tls?,
    })
}

fn status_range(cx: &mut Ctx, p: &Path, s: &RawStatus) -> Option<(u16, u16)> {
    let bad = |cx: &mut Ctx, what: String| {
        cx.err(
            p,
            format!(
                "invalid status `{what}`: use a code from 100 to 599 or a range such as \"200-299\""
            ),
        );
        None
    };
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    match s {
        RawStatus::Code(c) => match u16::try_from(*c).ok().filter(|c| (100..=599).contains(c)) {
            Some(c) => Some((c, c)),
            None => bad(cx, c.to_string()),
        },
        RawStatus::Range(r) => {
            let parsed = match r.split_once('-') {
                Some((a, b)) => code(a).zip(code(b)).filter(|(a, b)| a <= b),
                None => code(r).map(|c| (c, c)),
            };
            match parsed {
                Some(range) => Some(range),
                None => bad(cx, r.clone()),
            }
        }
    }
}

fn tls_options(cx: &mut Ctx, p: &Path, t: Option<&RawTls>) -> Option<TlsOptions> {
    let Some(t) = t else {
        return Some(TlsOptions::system());
    };
    let ca = t.ca_file.as_deref().map(|f| cx.file(f));
    match TlsOptions::new(ca, t.insecure_skip_verify, t.server_name.clone()) {
        Ok(o) => Some(o),
        Err(e) => {
            cx.err(&p.key("ca_file"), e.to_string());
            None
        }
    }
}

fn dns_check(cx: &mut Ctx, p: &Path, d: &RawDns, need_target: bool) -> Option<DnsCheck> {
    let name = match &d.name {
        Some(n) => {
            let fq = if n.ends_with('.') {
                n.clone()
            } else {
                format!("{n}.")
            };
            match hickory_resolver::Name::from_ascii(&fq) {
                Ok(name) if !n.trim().is_empty() => Some(name),
                _ => {
                    cx.err(&p.key("name"), format!("invalid DNS name `{n}`"));
                    None
                }
            }
        }
        None => {
            cx.err(p, "missing key `name` (the DNS name to look up)");
            None
        }
    };
    let type_s = d.record_type.as_deref().unwrap_or("A").to_ascii_uppercase();
    let known: Vec<String> = RECORD_TYPES.iter().map(|s| s.to_string()).collect();
    let record_type = if known.contains(&type_s) {
        type_s
            .parse::<hickory_resolver::proto::rr::RecordType>()
            .ok()
    } else {
        cx.err(
            &p.key("type"),
            match nearest(&type_s, &known) {
                Some(best) => format!("unknown record type `{type_s}`, did you mean `{best}`?"),
                None => format!(
                    "unknown record type `{type_s}`: use one of {}",
                    known.join(", ")
                ),
            },
        );
        None
    };
    let server = match (&d.server, need_target) {
        (Some(s), true) => match parse_server(s) {
            Some(a) => Some(Some(a)),
            None => {
                cx.err(&p.key("server"), format!("`server` must be an IP address with an optional port, such as 192.0.2.53:53, not `{s}`"));
                None
            }
        },
        (Some(_), false) => {
            cx.err(
                &p.key("server"),
                "a module's DNS server comes from the `/probe?target=` request: remove `server`",
            );
            None
        }
        (None, _) => Some(None),
    };
    let protocol = match d.protocol.as_deref() {
        None | Some("udp") => Some(DnsProtocol::Udp),
        Some("tcp") => Some(DnsProtocol::Tcp),
        Some(other) => {
            cx.err(
                &p.key("protocol"),
                format!("`protocol` must be `udp` or `tcp`, not `{other}`"),
            );
            None
        }
    };
    let expect_rcode = match d.expect_rcode.as_deref() {
        None => Some(Rcode::NoError),
        Some(s) => match Rcode::parse(s) {
            Some(r) => Some(r),
            None => {
                let names: Vec<String> = Rcode::NAMES.iter().map(|s| s.to_string()).collect();
                cx.err(
                    &p.key("expect_rcode"),
                    match nearest(&s.to_ascii_uppercase(), &names) {
                        Some(best) => {
                            format!("unknown response code `{s}`, did you mean `{best}`?")
                        }
                        None => format!(
                            "unknown response code `{s}`: use one of {}",
                            names.join(", ")
                        ),
                    },
                );
                None
            }
        },
    };
    for (i, v) in d.expect.iter().enumerate() {
        let bad = match type_s.as_str() {
            "A" => v
                .parse::<std::net::Ipv4Addr>()
                .is_err()
                .then_some("an IPv4 address"),
            "AAAA" => v
                .parse::<std::net::Ipv6Addr>()
                .is_err()
                .then_some("an IPv6 address"),
            _ => None,
        };
        if let Some(what) = bad {
            cx.err(
                &p.key("expect").index(i),
                format!("`{v}` is not {what}, so the {type_s} answer can never hold it"),
            );
        }
    }
    Some(DnsCheck {
        name: name?,
        record_type: record_type?,
        server: server?,
        protocol: protocol?,
        expect: d.expect.clone(),
        expect_rcode: expect_rcode?,
    })
}

/// `ip:port`, `[v6]:port`, or a bare IP (port 53).
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

fn tcp_check(cx: &mut Ctx, p: &Path, t: &RawTcp, need_target: bool) -> Option<TcpCheck> {
    let address = match (&t.address, need_target) {
        (Some(a), true) => {
            if valid_host_port(a) {
                Some(a.clone())
            } else {
                cx.err(
                    &p.key("address"),
                    format!("`address` must be host:port, such as db.internal:5432, not `{a}`"),
                );
                None
            }
        }
        (None, true) => {
            cx.err(p, "missing key `address` (host:port to connect to)");
            None
        }
        (Some(_), false) => {
            cx.err(
                &p.key("address"),
                "a module's target comes from the `/probe?target=` request: remove `address`",
            );
            None
        }
        (None, false) => Some(String::new()),
    };
    let tls = match &t.tls {
        None | Some(RawTcpTls::Flag(false)) => Some(None),
        Some(RawTcpTls::Flag(true)) => Some(Some(TlsOptions::system())),
        Some(RawTcpTls::Options(o)) => tls_options(cx, &p.key("tls"), Some(o)).map(Some),
    };
    if t.cert_min_days.is_some() && matches!(t.tls, None | Some(RawTcpTls::Flag(false))) {
        cx.err(&p.key("cert_min_days"), "`cert_min_days` needs `tls: true`");
    }
    let expect = match &t.expect {
        Some(r) => cx.regex(&p.key("expect"), r).map(Some),
        None => Some(None),
    };
    if t.send.as_deref() == Some("") {
        cx.err(
            &p.key("send"),
            "`send` is empty: remove it or give the bytes to send",
        );
    }
    Some(TcpCheck {
        address: address?,
        tls: tls?,
        send: t.send.clone(),
        expect: expect?,
        cert_min_days: t.cert_min_days,
    })
}

/// host:port with a port from 1 to 65535 and a non-empty host.
pub fn valid_host_port(a: &str) -> bool {
    match crate::probe::tcp::split_host_port(a) {
        (host, Some(port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        _ => false,
    }
}

fn resolve_modules(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawModule>,
    def_timeout: Duration,
) -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    // Built-in modules with every default; config entries of the same name replace them.
    let builtin_http =
        HttpCheck::get(url::Url::parse("http://module.invalid/").expect("static URL"));
    out.insert(
        "http".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Http(builtin_http),
            requires_name: false,
        },
    );
    out.insert(
        "tcp".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Tcp(TcpCheck {
                address: String::new(),
                tls: None,
                send: None,
                expect: None,
                cert_min_days: None,
            }),
            requires_name: false,
        },
    );
    out.insert(
        "dns".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Dns(DnsCheck {
                name: hickory_resolver::Name::root(),
                record_type: hickory_resolver::proto::rr::RecordType::A,
                server: None,
                protocol: DnsProtocol::Udp,
                expect: Vec::new(),
                expect_rcode: Rcode::NoError,
            }),
            requires_name: true,
        },
    );
    for (name, m) in raw {
        let mp = Path::root().key("modules").key(name);
        let timeout = m
            .timeout
            .as_deref()
            .and_then(|s| cx.positive_duration(&mp.key("timeout"), s))
            .unwrap_or(def_timeout);
        if let Some(check) = check_of(
            cx,
            &mp,
            m.http.as_ref(),
            m.dns.as_ref(),
            m.tcp.as_ref(),
            false,
        ) {
            out.insert(
                name.clone(),
                Module {
                    timeout,
                    check,
                    requires_name: false,
                },
            );
        }
    }
    out
}

fn resolve_escalation(
    cx: &mut Ctx,
    raw: &BTreeMap<String, Vec<RawLevel>>,
) -> BTreeMap<String, Vec<Level>> {
    let mut out = BTreeMap::new();
    for (name, levels) in raw {
        let ep = Path::root().key("escalation").key(name);
        if levels.is_empty() {
            cx.err(&ep, format!("escalation policy `{name}` has no levels"));
        }
        let mut resolved = Vec::new();
        let mut prev = Duration::ZERO;
        for (i, l) in levels.iter().enumerate() {
            let lp = ep.index(i);
            let after = cx.duration(&lp.key("after"), &l.after).unwrap_or_default();
            if after < prev {
                cx.err(
                    &lp.key("after"),
                    format!(
                        "levels must be in order: `after: {}` comes before the previous level's {}",
                        l.after,
                        fmt_dur(prev)
                    ),
                );
            }
            prev = prev.max(after);
            if l.to.is_empty() {
                cx.err(&lp.key("to"), "`to` is empty: list at least one address");
            }
            for (j, addr) in l.to.iter().enumerate() {
                if !valid_email(addr) {
                    cx.err(
                        &lp.key("to").index(j),
                        format!("`{addr}` is not an email address"),
                    );
                }
            }
            resolved.push(Level {
                after,
                to: l.to.clone(),
            });
        }
        out.insert(name.clone(), resolved);
    }
    out
}

fn resolve_audiences(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawAudience>,
) -> BTreeMap<String, Audience> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let ap = Path::root().key("audiences").key(name);
        let (key, file, kind): (&str, &str, fn(PathBuf) -> Audience) = match (&a.csv, &a.yaml) {
            (Some(c), None) => ("csv", c, Audience::Csv),
            (None, Some(y)) => ("yaml", y, Audience::Yaml),
            (Some(_), Some(_)) => {
                cx.err(
                    &ap.key("yaml"),
                    format!("audience `{name}` has both `csv` and `yaml`: keep one"),
                );
                continue;
            }
            (None, None) => {
                cx.err(
                    &ap,
                    format!("audience `{name}` needs `csv` or `yaml` (the file of recipients)"),
                );
                continue;
            }
        };
        let path = cx.file(file);
        if !path.is_file() {
            cx.err(
                &ap.key(key),
                format!("audience file `{}` does not exist", path.display()),
            );
            continue;
        }
        out.insert(name.clone(), kind(path));
    }
    out
}

fn resolve_mail(cx: &mut Ctx, raw: Option<&RawMail>) -> Mail {
    let mp = Path::root().key("mail");
    let Some(m) = raw else {
        return Mail {
            from: None,
            smtp: None,
            username_env: None,
            password_env: None,
            username: None,
            password: None,
            max_per_second: 100,
            timeout: DEFAULT_MAIL_TIMEOUT,
            allow_plain: false,
            ca_pem: None,
            max_campaign_size: DEFAULT_MAX_CAMPAIGN,
            connections: DEFAULT_CONNECTIONS,
            dkim: None,
        };
    };
    if !valid_email(&m.from) {
        cx.err(&mp.key("from"), format!("`from` must be an address such as \"Example Status <status@example.com>\", not `{}`", m.from));
    }
    let smtp = m.smtp.as_deref().and_then(|s| match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => {
            if !u.password().unwrap_or_default().is_empty() || !u.username().is_empty() {
                cx.err(&mp.key("smtp"), "credentials do not belong in the file: remove them from the URL and set `username_env` and `password_env`");
            }
            Some(u)
        }
        _ => {
            cx.err(&mp.key("smtp"), format!("`smtp` must be a URL such as smtp://mail.example.com:587 or smtps://mail.example.com:465, not `{s}`"));
            None
        }
    });
    for (key, v) in [
        ("username_env", &m.username_env),
        ("password_env", &m.password_env),
    ] {
        if let Some(v) = v {
            if !valid_env_name(v) {
                cx.err(
                    &mp.key(key),
                    format!(
                        "`{key}` names an environment variable (such as SMTP_PASSWORD), not `{v}`"
                    ),
                );
            }
        }
    }
    if m.max_per_second == Some(0) {
        cx.err(
            &mp.key("max_per_second"),
            "`max_per_second` must be at least 1",
        );
    }
    let timeout = m
        .timeout
        .as_deref()
        .and_then(|t| cx.positive_duration(&mp.key("timeout"), t))
        .unwrap_or(DEFAULT_MAIL_TIMEOUT);
    let ca_pem = m
        .ca_file
        .as_deref()
        .and_then(|f| ca_pem(cx, &mp.key("ca_file"), f));
    if m.allow_plain {
        let loopback = smtp
            .as_ref()
            .and_then(|u| u.host())
            .is_some_and(loopback_host);
        if !loopback {
            cx.err(&mp.key("allow_plain"), "`allow_plain` is only for an SMTP server on loopback (127.0.0.1, ::1, localhost): mail to any other host must use TLS");
        }
    }
    if m.max_campaign_size == Some(0) {
        cx.err(
            &mp.key("max_campaign_size"),
            "`max_campaign_size` must be at least 1",
        );
    }
    if matches!(m.connections, Some(0) | Some(101..)) {
        cx.err(
            &mp.key("connections"),
            "`connections` must be between 1 and 100",
        );
    }
    let dkim = m.dkim.as_ref().and_then(|d| {
        let dp = mp.key("dkim");
        let path = cx.file(&d.key_file);
        let key = match std::fs::read_to_string(&path) {
            Ok(k) => Some(k),
            Err(e) => {
                cx.err(&dp.key("key_file"), format!("cannot read key_file {}: {e}", path.display()));
                None
            }
        };
        let key = key.filter(|k| {
            let ok = dkim_key(k).is_ok();
            if !ok {
                cx.err(&dp.key("key_file"), format!("key_file {} holds no RSA or Ed25519 private key (Ed25519 PKCS#8 PEM `BEGIN PRIVATE KEY`, or RSA PKCS#1 PEM `BEGIN RSA PRIVATE KEY`)", path.display()));
            }
            ok
        })?;
        if !d.selector.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') || d.selector.is_empty() {
            cx.err(&dp.key("selector"), format!("`selector` is a DNS label such as `tocsin2026`, not `{}`", d.selector));
        }
        Some(Dkim {
            domain: d.domain.clone(),
            selector: d.selector.clone(),
            key_pem: key,
        })
    });
    Mail {
        from: Some(m.from.clone()),
        smtp,
        username_env: m.username_env.clone(),
        password_env: m.password_env.clone(),
        username: m.username_env.as_deref().and_then(|v| cx.secret(v)),
        password: m.password_env.as_deref().and_then(|v| cx.secret(v)),
        max_per_second: m.max_per_second.unwrap_or(100).max(1),
        timeout,
        allow_plain: m.allow_plain,
        ca_pem,
        max_campaign_size: m.max_campaign_size.unwrap_or(DEFAULT_MAX_CAMPAIGN),
        connections: m
            .connections
            .map(|c| c as usize)
            .unwrap_or(DEFAULT_CONNECTIONS)
            .clamp(1, 100),
        dkim,
    }
}

/// The DKIM signing key in `pem`: RSA (PKCS#1 PEM, `BEGIN RSA PRIVATE KEY`) or Ed25519
/// (PKCS#8 PEM, `BEGIN PRIVATE KEY`, as `openssl genpkey -algorithm ed25519` writes it, or
/// the bare base64 seed).
pub fn dkim_key(
    pem: &str,
) -> Result<lettre::message::dkim::DkimSigningKey, lettre::message::dkim::DkimSigningKeyError> {
    use base64::Engine;
    use lettre::message::dkim::{DkimSigningAlgorithm, DkimSigningKey};
    if let Ok(k) = DkimSigningKey::new(pem, DkimSigningAlgorithm::Rsa) {
        return Ok(k);
    }
    // lettre takes an Ed25519 key only as its base64 seed. In PKCS#8 (RFC 8410, v1 or v2)
    // the seed is the 32 bytes after the Ed25519 algorithm identifier and the OCTET STRING
    // header, so it is cut out here rather than bringing in an ASN.1 parser for one shape.
    const ED25519_SEED_AFTER: [u8; 9] = [0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    if let Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) =
        rustls_pemfile::private_key(&mut pem.as_bytes())
    {
        let der = der.secret_pkcs8_der();
        let seed = der
            .windows(ED25519_SEED_AFTER.len())
            .position(|w| w == ED25519_SEED_AFTER)
            .map(|i| i + ED25519_SEED_AFTER.len())
            .and_then(|start| der.get(start..start + 32));
        if let Some(seed) = seed {
            let seed = base64::engine::general_purpose::STANDARD.encode(seed);
            return DkimSigningKey::new(&seed, DkimSigningAlgorithm::Ed25519);
        }
    }
    DkimSigningKey::new(pem.trim(), DkimSigningAlgorithm::Ed25519)
}

pub fn valid_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn resolve_maintenance(
    cx: &mut Ctx,
    raw: &[RawMaintenance],
    services: &[String],
) -> Vec<Maintenance> {
    let mut out = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        let mp = Path::root().key("maintenance").index(i);
        if !services.contains(&m.service) {
            cx.err(
                &mp.key("service"),
                undefined("service", &m.service, "services", services),
            );
        }
        let start = match humantime::parse_rfc3339_weak(&m.start) {
            Ok(t) => Some(t),
            Err(_) => {
                cx.err(
                    &mp.key("start"),
                    format!(
                        "`start` must be an RFC 3339 time such as 2026-12-01T22:00:00Z, not `{}`",
                        m.start
                    ),
                );
                None
            }
        };
        let duration = cx.positive_duration(&mp.key("duration"), &m.duration);
        let announce_before: Vec<Duration> = m
            .announce_before
            .iter()
            .enumerate()
            .filter_map(|(j, s)| cx.duration(&mp.key("announce_before").index(j), s))
            .collect();
        if let (Some(start), Some(duration)) = (start, duration) {
            out.push(Maintenance {
                id: None,
                service: m.service.clone(),
                start,
                duration,
                announce_before,
                note: m.note.clone().unwrap_or_default(),
            });
        }
    }
    out
}
