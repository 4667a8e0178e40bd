//! Incident webhooks: receivers, their signing keys and the events they want.

use super::cx::*;

/// Where incident transitions are POSTed, signed with the key in `secret_env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentWebhook {
    pub url: url::Url,
    pub secret_env: String,
    /// Its value at load.
    pub secret: Option<Secret>,
    /// Events sent; every one of [`WebhookEvent::ALL`] by default.
    pub events: Vec<WebhookEvent>,
}

pub(super) fn resolve_incident_webhooks(
    cx: &mut Ctx,
    raw: &[RawIncidentWebhook],
) -> Vec<IncidentWebhook> {
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
