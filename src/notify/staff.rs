//! Staff mails: what fails and why, since when, the timeline, the escalation ahead and when
//! customers will be told. Text and HTML parts; everything from outside (reasons, names)
//! is escaped in the HTML.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::config::fmt_dur;
use crate::incident::{Policy, StaffMailKind};
use crate::store::IncidentRecord;

use super::mail::Outgoing;
pub use crate::text::html::escape;
use crate::text::time::rfc3339 as at;

/// What a staff mail is about.
pub enum StaffNotice<'a> {
    Level {
        kind: StaffMailKind,
        level: usize,
    },
    Resolved {
        ended: SystemTime,
        by: Option<&'a str>,
    },
}

fn age(from: SystemTime, to: SystemTime) -> String {
    let d = to.duration_since(from).unwrap_or(Duration::ZERO);
    fmt_dur(Duration::from_secs(d.as_secs()))
}

/// Signed links to acknowledge and to set an ETA.
pub struct ActionLinks {
    pub ack: String,
    pub eta: String,
}

/// Renders the mail for `incident` of the service called `name`.
pub fn render(
    name: &str,
    policy: &Policy,
    incident: &IncidentRecord,
    notice: &StaffNotice,
    to: Vec<String>,
    links: Option<&ActionLinks>,
    now: SystemTime,
) -> Outgoing {
    let mut t = String::new();
    let subject = match notice {
        StaffNotice::Level {
            kind: StaffMailKind::Opened,
            ..
        } => format!("[tocsin] {name} is DOWN"),
        StaffNotice::Level {
            kind: StaffMailKind::Escalated,
            level,
        } => format!("[tocsin] {name} is DOWN, unacknowledged (escalation level {level})"),
        // A monitor-down notice never belongs to an incident (see render_notice).
        StaffNotice::Level {
            kind: StaffMailKind::Flapping | StaffMailKind::MonitorDown,
            ..
        } => format!("[tocsin] {name} is flapping"),
        StaffNotice::Resolved { ended, .. } => format!(
            "[tocsin] {name} is UP again after {}",
            age(incident.started, *ended)
        ),
    };
    match notice {
        StaffNotice::Resolved { ended, by } => {
            let how = by
                .map(|b| format!("resolved by {b}"))
                .unwrap_or_else(|| "recovered".into());
            let _ = writeln!(
                t,
                "{name} ({}) is up again: {how} at {}.",
                incident.service,
                at(*ended)
            );
            let _ = writeln!(
                t,
                "The outage lasted {}, from {}.",
                age(incident.started, *ended),
                at(incident.started)
            );
            if incident.customer_phase {
                let _ = writeln!(
                    t,
                    "Customers were told of the outage and are told of the recovery."
                );
            }
        }
        // A monitor-down notice never belongs to an incident (see render_notice).
        StaffNotice::Level {
            kind: StaffMailKind::Flapping | StaffMailKind::MonitorDown,
            ..
        } => {
            let _ = writeln!(
                t,
                "{name} ({}) changes state too often; tocsin holds it in its current state and",
                policy.service
            );
            let _ = writeln!(
                t,
                "sends no further mail about it until it settles. Check it by hand."
            );
        }
        StaffNotice::Level { level, .. } => {
            let _ = writeln!(
                t,
                "{name} ({}) is down since {} ({} ago).",
                incident.service,
                at(incident.started),
                age(incident.started, now)
            );
            let _ = writeln!(t);
            let _ = writeln!(t, "What fails:");
            if let Some(first) = incident.timeline.iter().find(|e| e.kind() == "opened") {
                for reason in first.event.failing() {
                    let _ = writeln!(t, "  {reason}");
                }
            }
            let _ = writeln!(t);
            if let Some(by) = &incident.acked_by {
                let _ = writeln!(t, "Acknowledged by {by}.");
            } else if let Some(next) = policy.levels.get(level + 1) {
                let _ = writeln!(
                    t,
                    "Escalation: level {level} of {}. Unless acknowledged, level {} ({}) is mailed at {}.",
                    policy.levels.len() - 1,
                    level + 1,
                    next.to.join(", "),
                    at(incident.started + next.after)
                );
            } else {
                let _ = writeln!(t, "Escalation: level {level}, the last level.");
            }
            if incident.customer_phase {
                let _ = writeln!(
                    t,
                    "Customers are being told (placeholder page, mail campaign, autoresponder, hotline)."
                );
            } else {
                let _ = writeln!(
                    t,
                    "Customers will be told at {} ({} after the start) unless it recovers first; an ETA set beyond that tells them at once.",
                    at(incident.started + policy.customer_threshold),
                    fmt_dur(policy.customer_threshold)
                );
            }
            if let Some(eta) = incident.eta {
                let _ = writeln!(t, "Expected recovery (ETA): {}.", at(eta));
            }
        }
    }
    let open = incident.ended.is_none() && !matches!(notice, StaffNotice::Resolved { .. });
    if let Some(l) = links.filter(|_| open) {
        let _ = writeln!(t);
        if incident.acked_by.is_none() {
            let _ = writeln!(t, "Acknowledge (stops escalation): {}", l.ack);
        }
        let _ = writeln!(t, "Set the expected recovery time (ETA): {}", l.eta);
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Timeline (incident {}):", incident.id);
    for e in &incident.timeline {
        let _ = writeln!(
            t,
            "  {}  {}: {}",
            at(e.at),
            e.kind().replace('_', " "),
            e.detail()
        );
    }
    let buttons = match links.filter(|_| open) {
        Some(l) => format!(
            "<p>{}<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333\">Set an ETA</a></p>",
            if incident.acked_by.is_none() {
                format!(
                    "<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333;margin-right:1em\">Acknowledge</a>",
                    escape(&l.ack)
                )
            } else {
                String::new()
            },
            escape(&l.eta)
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html><html><body><h1 style=\"font-size:1.2em\">{}</h1>{buttons}<pre style=\"font-family:monospace;white-space:pre-wrap\">{}</pre></body></html>",
        escape(&subject),
        escape(&t)
    );
    Outgoing {
        to,
        subject,
        text: t,
        html,
        ..Outgoing::default()
    }
}

/// A notice that belongs to no incident: a service flapping while none is open, or the
/// monitor's own network down (`failing` lists the canaries).
pub fn render_notice(
    kind: StaffMailKind,
    service_name: Option<&str>,
    failing: &[String],
    to: Vec<String>,
    now: SystemTime,
) -> Outgoing {
    let (subject, text) = match kind {
        StaffMailKind::MonitorDown => (
            "[tocsin] tocsin's own network is down: outages cannot be seen".to_string(),
            format!(
                "Every canary probe fails ({}), so tocsin cannot tell a real outage from its own blindness.\n\
                 Until a canary passes again, no incident opens and customers are told nothing.\n\
                 Check the network of the host tocsin runs on.\n\nSince {}.\n",
                if failing.is_empty() {
                    "none listed".to_string()
                } else {
                    failing.join(", ")
                },
                at(now)
            ),
        ),
        _ => {
            let name = service_name.unwrap_or("A service");
            (
                format!("[tocsin] {name} is flapping"),
                format!(
                    "{name} changes state too often; tocsin holds it in its current state and sends no\nfurther mail about it until it settles. Check it by hand.\n\nSince {}.\n",
                    at(now)
                ),
            )
        }
    };
    let html = format!(
        "<!doctype html><html><body><h1 style=\"font-size:1.2em\">{}</h1><pre style=\"font-family:monospace;white-space:pre-wrap\">{}</pre></body></html>",
        escape(&subject),
        escape(&text)
    );
    Outgoing {
        to,
        subject,
        text,
        html,
        ..Outgoing::default()
    }
}
