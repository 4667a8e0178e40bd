//! Discord webhooks: `content` (at most 2,000 characters) with one embed (title up to
//! 256, description up to 4,096; 6,000 in all), and no mentions parsed, so a reason
//! holding `@everyone` pings nobody.

use serde_json::{Value, json};

use super::{Notice, Severity, cut};

pub const CONTENT: usize = 2000;
pub const TITLE: usize = 256;
pub const DESCRIPTION: usize = 4096;

pub fn body(n: &Notice) -> Value {
    let color = match n.severity {
        Severity::Critical => 0xd0_2020,
        Severity::Warning => 0xe0_a000,
        Severity::Info => 0x20_60d0,
        Severity::Resolved => 0x20_a040,
    };
    let mut description = n.text();
    for (label, url) in n.links() {
        description.push_str(&format!("\n[{label}]({url})"));
    }
    json!({
        "content": cut(&n.title, CONTENT),
        "embeds": [{
            "title": cut(&n.title, TITLE),
            "description": cut(&description, DESCRIPTION),
            "color": color,
            "timestamp": crate::text::time::rfc3339(n.at),
        }],
        "allowed_mentions": {"parse": []},
    })
}
