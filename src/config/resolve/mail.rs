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

#[derive(Debug, Clone)]
pub struct Dkim {
    pub domain: String,
    pub selector: String,
    pub key_pem: String,
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
    pub dkim: Option<Dkim>,
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
