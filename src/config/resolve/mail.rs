//! Mail: the SMTP transport, its login and TLS, DKIM, and the company that speaks
//! in mails and pages.

use super::cx::*;

/// Who is speaking, and the other ways to reach them (in pages and mails).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Company {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub website: Option<String>,
}

/// One DKIM signing key: every message carries one signature per key.
#[derive(Debug, Clone)]
pub struct Dkim {
    /// `d=`: the From domain, or a parent of it (aligned for DMARC).
    pub domain: String,
    pub selector: String,
    pub key: std::sync::Arc<crate::dkim::Key>,
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: Option<String>,
    /// `None`: messages are written as `.eml` files under `data_dir/mail/`.
    pub smtp: Option<url::Url>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// Their values at load.
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub max_per_second: u32,
    /// Deadline of one SMTP exchange (connect to the server's final reply).
    pub timeout: Duration,
    /// `smtp://` then uses STARTTLS when offered and plain text otherwise; only allowed
    /// for a loopback server. Without it, `smtp://` requires STARTTLS.
    pub allow_plain: bool,
    /// PEM of the CA that signed the SMTP server's certificate, read at load time.
    pub ca_pem: Option<Vec<u8>>,
    pub max_campaign_size: u64,
    /// SMTP connections, and so messages in flight, of campaigns.
    pub connections: usize,
    pub dkim: Vec<Dkim>,
    /// The name given in EHLO: `helo`, or the From address's domain.
    pub helo: String,
    /// `company.email`, as Reply-To.
    pub reply_to: Option<String>,
    /// The `mailto:` of List-Unsubscribe: `unsubscribe_address`, or `company.email`.
    pub unsubscribe_address: Option<String>,
}

pub(super) fn resolve_mail(cx: &mut Ctx, raw: Option<&RawMail>) -> Mail {
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
            dkim: Vec::new(),
            helo: "localhost".into(),
            reply_to: None,
            unsubscribe_address: None,
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
    let from_domain = m
        .from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim().to_ascii_lowercase())
        .filter(|_| valid_email(&m.from));
    let dkim = resolve_dkim(cx, &mp.key("dkim"), m.dkim.as_ref(), from_domain.as_deref());
    let helo = match &m.helo {
        Some(h) if valid_hostname(h) => h.clone(),
        Some(h) => {
            cx.err(&mp.key("helo"), format!("`helo` is the host name tocsin gives the mail server, such as status.example.com, not `{h}`"));
            String::new()
        }
        None => from_domain.clone().unwrap_or_else(|| "localhost".into()),
    };
    if let Some(u) = &m.unsubscribe_address {
        if !valid_email(u) || u.contains('<') {
            cx.err(&mp.key("unsubscribe_address"), format!("`unsubscribe_address` must be a bare address such as unsubscribe@example.com, not `{u}`"));
        }
    }
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
        helo,
        reply_to: None,
        unsubscribe_address: m.unsubscribe_address.clone(),
    }
}

/// A host name as EHLO wants it: dot-separated labels of letters, digits and hyphens.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// The signing keys: each readable, of the algorithm its selector publishes, under its
/// own selector, for a domain aligned with From.
fn resolve_dkim(
    cx: &mut Ctx,
    dp: &Path,
    raw: Option<&RawDkimKeys>,
    from_domain: Option<&str>,
) -> Vec<Dkim> {
    let entries: Vec<(Path, &RawDkim)> = match raw {
        None => return Vec::new(),
        Some(RawDkimKeys::One(d)) => vec![(dp.clone(), d)],
        Some(RawDkimKeys::Many(list)) => {
            if list.is_empty() {
                cx.err(dp, "`dkim` lists no keys: give at least one `{ selector, key_file }`, or remove it");
            }
            list.iter()
                .enumerate()
                .map(|(i, d)| (dp.index(i), d))
                .collect()
        }
    };
    let mut selectors = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (p, d) in entries {
        if d.selector.is_empty()
            || !d
                .selector
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            cx.err(
                &p.key("selector"),
                format!(
                    "`selector` is a DNS label such as `tocsin2026`, not `{}`",
                    d.selector
                ),
            );
        } else if !selectors.insert(d.selector.to_ascii_lowercase()) {
            cx.err(
                &p.key("selector"),
                format!(
                    "selector `{}` is given twice: each key is published under its own selector",
                    d.selector
                ),
            );
        }
        let path = cx.file(&d.key_file);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => match crate::dkim::Key::from_pem(&text) {
                Ok(k) => Some(k),
                Err(e) => {
                    cx.err(
                        &p.key("key_file"),
                        format!("key_file {} {e}", path.display()),
                    );
                    None
                }
            },
            Err(e) => {
                cx.err(
                    &p.key("key_file"),
                    format!("cannot read key_file {}: {e}", path.display()),
                );
                None
            }
        };
        let want = match d.algorithm.as_deref() {
            None => None,
            Some("rsa") => Some(crate::dkim::Algorithm::Rsa),
            Some("ed25519") => Some(crate::dkim::Algorithm::Ed25519),
            Some(other) => {
                cx.err(&p.key("algorithm"), format!("`algorithm` is `rsa` or `ed25519` (the k= of the selector's DNS record), not `{other}`"));
                None
            }
        };
        if let (Some(k), Some(want)) = (&key, want) {
            if k.algorithm() != want {
                cx.err(&p.key("key_file"), format!("key_file {} holds an {} key, but selector `{}` publishes an {} key (`algorithm: {}`): receivers would find no key that verifies; give the {} key file, or correct `algorithm`", path.display(), k.algorithm().name(), d.selector, want.name(), want.as_str(), want.name()));
            }
        }
        let domain = d
            .domain
            .as_deref()
            .map(|x| x.trim_end_matches('.').to_ascii_lowercase())
            .or_else(|| from_domain.map(str::to_string));
        let Some(domain) = domain else {
            continue;
        };
        if !valid_hostname(&domain) {
            cx.err(
                &p.key("domain"),
                format!("`domain` is the domain that signs, such as example.com, not `{domain}`"),
            );
        } else if let Some(from) = from_domain {
            let aligned = from == domain || from.ends_with(&format!(".{domain}"));
            if !aligned {
                cx.err(&p.key("domain"), format!("DKIM `domain` {domain} is not aligned with the From domain {from}: receivers' DMARC checks pass only when d= is {from} or a parent of it; sign for {from}, or send from an address at {domain}"));
            }
        }
        if let Some(k) = key {
            out.push(Dkim {
                domain,
                selector: d.selector.clone(),
                key: std::sync::Arc::new(k),
            });
        }
    }
    out
}

pub(super) fn resolve_company(cx: &mut Ctx, raw: Option<&RawCompany>, mail: &Mail) -> Company {
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
