//! ntfy: a JSON publish to the server's root (`topic`, `title`, `message` up to 4,096
//! bytes, `priority` 1 to 5, `tags`, up to three `view` actions), with a bearer token
//! for a protected topic.

use serde_json::{Value, json};

use super::{Notice, Request, Severity, cut_bytes};
use crate::secret::Secret;

pub const MESSAGE: usize = 4096;

pub fn request(server: &url::Url, topic: &str, token: Option<&Secret>, n: &Notice) -> Request {
    let (priority, tag) = match n.severity {
        Severity::Critical => (5, "rotating_light"),
        Severity::Warning => (4, "warning"),
        Severity::Info => (3, "information_source"),
        Severity::Resolved => (3, "white_check_mark"),
    };
    let actions: Vec<Value> = n
        .links()
        .into_iter()
        .take(3)
        .map(|(label, url)| json!({"action": "view", "label": label, "url": url, "clear": true}))
        .collect();
    let mut body = json!({
        "topic": topic,
        "title": n.title,
        "message": cut_bytes(&n.text(), MESSAGE),
        "priority": priority,
        "tags": [tag],
    });
    if !actions.is_empty() {
        body["actions"] = json!(actions);
    }
    let mut r = Request::post_json(server.as_str().to_string(), &body);
    if let Some(t) = token {
        r.headers
            .push(("Authorization", format!("Bearer {}", t.expose())));
    }
    r
}
