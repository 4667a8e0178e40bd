//! The mailbox autoresponder: ManageSieve server, login, mailboxes, script.

use super::cx::*;

/// The mailbox autoresponder (Sieve vacation over ManageSieve).
#[derive(Debug, Clone)]
pub struct Autoresponder {
    /// The ManageSieve server (4190 unless the URL says otherwise).
    pub host: String,
    pub port: u16,
    /// The environment variables holding the login.
    pub user_env: String,
    pub password_env: String,
    /// Their values at load.
    pub user: Option<Secret>,
    pub password: Option<Secret>,
    /// Mailboxes acted for; one empty entry means the login's own mailbox.
    pub mailboxes: Vec<String>,
    pub allow_plain: bool,
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub script: String,
    pub language: String,
    pub timezone: String,
    pub days: u32,
}

pub(super) fn resolve_autoresponder(
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
