//! A channel of one's own: a webhook whose body is a minijinja template
//! ([`crate::text::template`]: fuel-limited, strict, values written as JSON in a JSON
//! body), optionally signed as the incident webhooks are.

use super::{Notice, Request};
use crate::secret::Secret;

pub fn request(
    url: String,
    template: &str,
    content_type: &str,
    key: Option<&Secret>,
    n: &Notice,
    delivery: i64,
) -> Result<Request, String> {
    let body = crate::text::template::render(template, content_type, &n.values())
        .map_err(|e| format!("the body template failed: {e}"))?;
    let mut headers = vec![
        ("X-Tocsin-Event", n.event.to_string()),
        ("X-Tocsin-Delivery", delivery.to_string()),
    ];
    if let Some(k) = key {
        headers.push((
            "X-Tocsin-Signature",
            crate::notify::http::signature(k.expose().as_bytes(), body.as_bytes()),
        ));
    }
    Ok(Request {
        method: reqwest::Method::POST,
        url,
        headers,
        content_type: if content_type == "text/plain" {
            "text/plain; charset=utf-8"
        } else {
            "application/json"
        },
        body,
    })
}
