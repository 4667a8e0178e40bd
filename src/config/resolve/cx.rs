//! What every pass of the resolution shares: the context that gathers errors and reads
//! secrets ([`Ctx`]), the defaults, and the small parsers and checks several sections use.

pub(super) use std::collections::{BTreeMap, BTreeSet, HashMap};
pub(super) use std::net::{IpAddr, SocketAddr};
pub(super) use std::path::{Path as FsPath, PathBuf};
pub(super) use std::sync::Arc;
pub(super) use std::time::{Duration, SystemTime};

pub(super) use reqwest::Method;
pub(super) use reqwest::header::{HeaderName, HeaderValue};

pub(super) use crate::config::diag::{Diag, nearest};
pub(super) use crate::config::locate::Path;
pub(super) use crate::config::raw::*;
pub(super) use crate::incident::WebhookEvent;
pub(super) use crate::probe::dns::{RECORD_TYPES, RrRules};
pub(super) use crate::probe::grpc::GrpcCheck;
pub(super) use crate::probe::http::HttpProxy;
pub(super) use crate::probe::http::{DEFAULT_MAX_BODY, DEFAULT_MAX_REDIRECTS};
pub(super) use crate::probe::icmp::IcmpCheck;
pub(super) use crate::probe::ip::{Family, IpProtocol};
pub(super) use crate::probe::json::{JsonExpect, JsonRule};
pub(super) use crate::probe::tls::{ClientCert, MinVersion};
pub(super) use crate::probe::udp::UdpCheck;
pub(super) use crate::probe::{
    Check, DnsCheck, DnsProtocol, HttpCheck, Pattern, Rcode, StartTls, StatusSet, TcpCheck,
    TlsOptions,
};
pub(super) use crate::secret::{Env, Secret};
pub use crate::text::email::valid_email;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9778";
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_CUSTOMER_THRESHOLD: Duration = Duration::from_secs(3 * 3600);
pub(super) const DEFAULT_MAX_CONCURRENCY: usize = 256;
pub(super) const MIN_INTERVAL: Duration = Duration::from_millis(100);
pub(super) const MAX_REDIRECTS_LIMIT: u32 = 100;
pub(super) const DEFAULT_MAIL_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_MAX_CAMPAIGN: u64 = 50_000;
pub(super) const DEFAULT_CONNECTIONS: usize = 4;
pub(super) const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(30 * 60);
pub(super) const DEFAULT_NEXT_UPDATE: Duration = Duration::from_secs(60 * 60);
pub(super) const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);

pub(super) struct Ctx<'d, 'l, 'e> {
    pub(super) diag: &'d mut Diag<'l>,
    pub(super) base: PathBuf,
    /// Where secrets are read from: each once, here.
    pub(super) env: Env<'e>,
}

impl Ctx<'_, '_, '_> {
    /// The secret in the variable `name`; None when unset or empty (whoever needs it says
    /// so when it starts, as they always have: `tocsin check` does not need secrets).
    pub(super) fn secret(&self, name: &str) -> Option<Secret> {
        Secret::from_env(self.env, name)
    }

    pub(super) fn err(&mut self, path: &Path, msg: impl Into<String>) {
        self.diag.at(path, msg);
    }

    /// Accepted, with a remark that `tocsin check` prints.
    pub(super) fn warn(&mut self, path: &Path, msg: impl Into<String>) {
        self.diag.warn_at(path, msg);
    }

    /// A duration, or an error naming where it was written (`defaults.interval`).
    pub(super) fn duration(&mut self, path: &Path, s: &str) -> Option<Duration> {
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(m) => {
                self.err(path, format!("`{path}`: {m}"));
                None
            }
        }
    }

    pub(super) fn positive_duration(&mut self, path: &Path, s: &str) -> Option<Duration> {
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

    pub(super) fn file(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p.strip_prefix("./").unwrap_or(&p))
        }
    }

    pub(super) fn regex(&mut self, path: &Path, s: &str) -> Option<Pattern> {
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
/// `ip_protocol: ip4 | ip6` and `ip_protocol_fallback` of a check, at `p`.
pub(super) fn ip_protocol(
    cx: &mut Ctx,
    p: &Path,
    prefer: Option<&str>,
    fallback: Option<bool>,
) -> Option<IpProtocol> {
    let prefer = match prefer {
        None => None,
        Some("ip4") => Some(Family::Ip4),
        Some("ip6") => Some(Family::Ip6),
        Some(other) => {
            cx.err(
                &p.key("ip_protocol"),
                format!("`ip_protocol` must be `ip4` or `ip6`, not `{other}`"),
            );
            return None;
        }
    };
    if prefer.is_none() && fallback.is_some() {
        cx.err(
            &p.key("ip_protocol_fallback"),
            "`ip_protocol_fallback` needs `ip_protocol` (the family to prefer)",
        );
        return None;
    }
    Some(IpProtocol {
        prefer,
        fallback: fallback.unwrap_or(true),
    })
}

pub(super) fn target_in_module(cx: &mut Ctx, p: &Path, key: &str, what: &str) {
    cx.err(
        &p.key(key),
        format!("a module's {what} comes from the `/probe?target=` request: remove `{key}`"),
    );
}

/// The last key of a path (`fail_if_matches` for `...validate_answer.fail_if_matches[0]`).
pub(super) fn last_key(path: &Path) -> String {
    path.0
        .iter()
        .rev()
        .find_map(|s| match s {
            crate::config::locate::Seg::Key(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap_or_else(|| path.to_string())
}

/// Durations such as `500ms`, `30s`, `15m`, `3h`, `1h30m`, at most ten years.
pub use crate::text::time::parse_duration;

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

/// Whether a URL host (as the `url` crate keeps it for any scheme) is loopback.
pub(super) fn loopback_host(h: url::Host<&str>) -> bool {
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

pub(super) fn ca_pem(cx: &mut Ctx, p: &Path, file: &str) -> Option<Vec<u8>> {
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

pub(super) fn threshold(cx: &mut Ctx, path: &Path, v: Option<u32>, default: u32) -> u32 {
    match v {
        Some(0) => {
            cx.err(path, format!("`{}` must be at least 1", last_key(path)));
            default
        }
        Some(n) => n,
        None => default,
    }
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(super) fn undefined(what: &str, name: &str, section: &str, known: &[String]) -> String {
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
