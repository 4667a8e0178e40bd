//! Microsoft Teams through a Workflows webhook ("Post to a channel when a webhook request
//! is received"): a message holding one Adaptive Card (version 1.4), with links as
//! `Action.OpenUrl`. The whole message must stay under 28 KB.

use serde_json::{Value, json};

use super::{Notice, Severity, cut};

/// The text kept on the card; well inside the message's 28 KB.
pub const TEXT: usize = 10_000;

pub fn body(n: &Notice) -> Value {
    let color = match n.severity {
        Severity::Critical => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Accent",
        Severity::Resolved => "Good",
    };
    let actions: Vec<Value> = n
        .links()
        .into_iter()
        .map(|(label, url)| json!({"type": "Action.OpenUrl", "title": label, "url": url}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": cut(&n.title, 200), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
            {"type": "TextBlock", "text": cut(&n.text(), TEXT), "wrap": true},
        ],
    });
    if !actions.is_empty() {
        card["actions"] = json!(actions);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}
