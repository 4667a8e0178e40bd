//! Pages and the hotline: where the placeholder and the announcements are written,
//! their language and time zone, and who is told.

use super::cx::*;

/// The hotline announcement.
#[derive(Debug, Clone)]
pub struct Hotline {
    pub dir: PathBuf,
    /// Languages written; empty means every language with templates.
    pub languages: Vec<String>,
    pub timezone: String,
    pub hook: Option<Vec<String>>,
    pub hook_timeout: Duration,
    /// Variables of tocsin's environment passed on to the hook (it gets no others but
    /// PATH, LANG, LC_ALL, TZ and HOME).
    pub hook_env: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: url::Url,
    pub token_env: Option<String>,
    /// Its value at load.
    pub token: Option<Secret>,
}

/// `pages:`: where placeholders go, their language and time zone, and who is told.
pub(super) struct Pages {
    pub(super) placeholder_dir: PathBuf,
    pub(super) language: String,
    pub(super) timezone: String,
    pub(super) webhook: Option<Webhook>,
}

pub(super) fn resolve_pages(cx: &mut Ctx, raw: Option<&RawPages>, data_dir: &FsPath) -> Pages {
    let placeholder_dir = raw
        .and_then(|p| p.placeholder_dir.as_deref())
        .map(|s| cx.file(s))
        .unwrap_or_else(|| data_dir.join("www"));
    let pp = Path::root().key("pages");
    let page_language = raw
        .and_then(|p| p.language.clone())
        .unwrap_or_else(|| "en".into());
    if !valid_language(&page_language) {
        cx.err(
            &pp.key("language"),
            format!("`language` is a language code such as en, pl or sv, not `{page_language}`"),
        );
    }
    let page_timezone = raw
        .and_then(|p| p.timezone.clone())
        .unwrap_or_else(|| "UTC".into());
    if page_timezone.parse::<chrono_tz::Tz>().is_err() {
        cx.err(&pp.key("timezone"), format!("`timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{page_timezone}`"));
    }
    let webhook = raw
        .and_then(|p| p.webhook.as_ref())
        .and_then(|w| resolve_webhook(cx, &pp.key("webhook"), w));
    Pages {
        placeholder_dir,
        language: page_language,
        timezone: page_timezone,
        webhook,
    }
}

pub(super) fn resolve_webhook(cx: &mut Ctx, p: &Path, w: &RawWebhook) -> Option<Webhook> {
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

pub(super) fn resolve_hotline(
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
        hook_env: Vec::new(),
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
    for (i, name) in raw.hook_env.iter().enumerate() {
        if !valid_env_name(name) {
            cx.err(
                &hp.key("hook_env").index(i),
                format!("`{name}` is not an environment variable name (such as ANNOUNCE_LINE)"),
            );
        }
    }
    h.hook_env = raw.hook_env.clone();
    if let Some(t) = &raw.hook_timeout {
        if let Some(d) = cx.positive_duration(&hp.key("hook_timeout"), t) {
            h.hook_timeout = d;
        }
    }
    h
}
