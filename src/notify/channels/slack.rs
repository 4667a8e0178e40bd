//! Slack incoming webhooks: a Block Kit message (header, section, buttons, context) with
//! `text` as the notification's fallback.
//!
//! Slack's limits (api.slack.com/reference/block-kit/blocks): a header's text up to 150
//! characters, a section's text up to 3,000, a button's text up to 75 and its URL up to
//! 3,000, at most 50 blocks. `mrkdwn` text escapes `&`, `<` and `>`.

use serde_json::{Value, json};

use super::{Notice, Severity, cut};

/// Section text limit.
pub const SECTION: usize = 3000;
/// Header text limit.
pub const HEADER: usize = 150;

/// `&`, `<` and `>` as Slack's mrkdwn wants them (the only three it escapes).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn body(n: &Notice) -> Value {
    let icon = match n.severity {
        Severity::Critical => ":red_circle:",
        Severity::Warning => ":warning:",
        Severity::Info => ":large_blue_circle:",
        Severity::Resolved => ":large_green_circle:",
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&n.title, HEADER), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("{icon} {}", escape(&n.text())), SECTION)}}),
    ];
    let buttons: Vec<Value> = n
        .links()
        .into_iter()
        .filter(|(_, url)| url.len() <= 3000)
        .map(|(label, url)| {
            let mut b = json!({"type": "button", "text": {"type": "plain_text", "text": label}, "url": url});
            if label == "Acknowledge" {
                b["style"] = json!("danger");
            }
            b
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    let about = match n.incident {
        Some(id) => format!(
            "tocsin · incident {id} · {}",
            crate::text::time::rfc3339(n.at)
        ),
        None => format!("tocsin · {}", crate::text::time::rfc3339(n.at)),
    };
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": about}]}));
    json!({"text": cut(&n.title, SECTION), "blocks": blocks})
}
