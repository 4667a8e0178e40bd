//! PagerDuty Events API v2: `trigger`, `acknowledge` and `resolve`, one `dedup_key` per
//! incident, so the PagerDuty incident opens, is acknowledged and resolves with
//! tocsin's. A trigger carries `payload.summary` (at most 1,024 characters),
//! `payload.source`, `payload.severity` (critical, error, warning or info) and links;
//! acknowledge and resolve need only the routing key, the action and the key.

use serde_json::{Value, json};

use super::{Notice, PagerAction, Severity, cut};
use crate::secret::Secret;

pub const SUMMARY: usize = 1024;

/// The event for `n`; None when PagerDuty takes no part in it.
pub fn body(routing_key: &Secret, n: &Notice) -> Option<Value> {
    let action = n.pager.as_ref()?;
    let key = cut(&n.key, 255);
    Some(match action {
        PagerAction::Trigger => {
            let severity = match n.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
                Severity::Info | Severity::Resolved => "info",
            };
            let links: Vec<Value> = n
                .links()
                .into_iter()
                .map(|(label, url)| json!({"href": url, "text": label}))
                .collect();
            json!({
                "routing_key": routing_key.expose(),
                "event_action": "trigger",
                "dedup_key": key,
                "payload": {
                    "summary": cut(&n.title, SUMMARY),
                    "source": if n.service.is_empty() { "tocsin".to_string() } else { format!("tocsin: {}", n.service) },
                    "severity": severity,
                    "timestamp": crate::text::time::rfc3339(n.at),
                    "component": n.service,
                    "class": n.event,
                    "custom_details": {
                        "service": n.service_name,
                        "details": n.text(),
                        "failing": n.reasons,
                    },
                },
                "links": links,
                "client": "tocsin",
            })
        }
        PagerAction::Acknowledge => json!({
            "routing_key": routing_key.expose(),
            "event_action": "acknowledge",
            "dedup_key": key,
        }),
        PagerAction::Resolve => json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": key,
        }),
    })
}
