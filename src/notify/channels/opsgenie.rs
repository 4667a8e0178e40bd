//! Opsgenie Alert API v2: create an alert with the incident's key as its `alias`, then
//! acknowledge and close it by that alias (`identifierType=alias`). Authorised by
//! `Authorization: GenieKey KEY`. `message` is at most 130 characters, `description`
//! at most 15,000, `alias` at most 512.

use serde_json::json;

use super::{Notice, PagerAction, Request, Severity, cut};
use crate::secret::Secret;

pub const MESSAGE: usize = 130;
pub const DESCRIPTION: usize = 15_000;

/// The request for `n`; None when Opsgenie takes no part in it.
pub fn request(api: &url::Url, key: &Secret, n: &Notice) -> Option<Request> {
    let action = n.pager.as_ref()?;
    let base = api.as_str().trim_end_matches('/');
    let alias = cut(&n.key, 512);
    let escaped: String = url::form_urlencoded::byte_serialize(alias.as_bytes()).collect();
    let by = n.by.clone().unwrap_or_else(|| "tocsin".into());
    let (url, body) = match action {
        PagerAction::Trigger => (
            format!("{base}/v2/alerts"),
            json!({
                "message": cut(&n.title, MESSAGE),
                "alias": alias,
                "description": cut(&n.text(), DESCRIPTION),
                "priority": match n.severity { Severity::Critical => "P1", Severity::Warning => "P3", _ => "P5" },
                "source": "tocsin",
                "entity": n.service,
                "tags": ["tocsin", n.event],
                "details": {"service": n.service_name, "event": n.event},
            }),
        ),
        PagerAction::Acknowledge => (
            format!("{base}/v2/alerts/{escaped}/acknowledge?identifierType=alias"),
            json!({"source": "tocsin", "user": by, "note": n.title}),
        ),
        PagerAction::Resolve => (
            format!("{base}/v2/alerts/{escaped}/close?identifierType=alias"),
            json!({"source": "tocsin", "user": by, "note": n.title}),
        ),
    };
    let mut r = Request::post_json(url, &body);
    r.headers
        .push(("Authorization", format!("GenieKey {}", key.expose())));
    Some(r)
}
