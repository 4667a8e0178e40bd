//! An incident's timeline as data: what happened, typed, stored as it is (serde) and
//! turned into words only at the edges (staff mail, pages, API, CLI). `detail` is the
//! one line staff read; pages and feeds take the fields they need.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::machine::{Action, StaffMailKind};
use super::update::PublicUpdate;
use crate::probe::{Problem, Reason};
use crate::text::time::rfc3339;

/// One thing that happened to an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// The incident opened, with each failing probe's reason.
    Opened {
        #[serde(deserialize_with = "super::stored::reason_map")]
        reasons: BTreeMap<String, Reason>,
    },
    /// Staff were mailed (`level` of the escalation, or a notice of another `mail` kind).
    StaffMail {
        mail: StaffMailKind,
        level: usize,
        to: Vec<String>,
    },
    Acknowledged {
        by: String,
    },
    Eta {
        eta: SystemTime,
        by: String,
    },
    /// Customers are told: by the threshold, or at once for an ETA beyond it.
    CustomerPhase {
        because_of_eta: bool,
        eta: Option<SystemTime>,
        next_update: Option<SystemTime>,
    },
    /// Customers get an update with a new promise.
    CustomerUpdate {
        eta: Option<SystemTime>,
        next_update: Option<SystemTime>,
    },
    /// Staff posted an update for customers (`notified`: it was mailed to them).
    Update {
        #[serde(flatten)]
        update: PublicUpdate,
        notified: bool,
    },
    /// Over: by staff (`by`), or recovered by itself.
    Resolved {
        by: Option<String>,
    },
    /// A decided action could not be carried out and was given up.
    DeliveryFailed {
        error: String,
    },
    /// An incident webhook receiver refused a delivery for good.
    WebhookFailed {
        url: String,
        error: String,
    },
    /// Recovery mails went out without a compensation code: the pool ran out.
    CompensationShort {
        campaign: i64,
        missing: u64,
        pool: String,
    },
    /// The hotline hook failed for `event`.
    HotlineFailed {
        event: String,
        error: String,
    },
    /// The outage autoresponder could not be switched on or removed on `mailbox`.
    AutoresponderFailed {
        mailbox: String,
        error: String,
    },
    /// A heartbeat of the service was pinged during the incident (with the body the job
    /// sent: its output, often the reason it failed).
    HeartbeatPing {
        probe: String,
        signal: String,
        body: Option<String>,
    },
    /// A service that depends on this one fails too (`affected`), or recovered.
    AlsoAffected {
        service: String,
        affected: bool,
        #[serde(default, deserialize_with = "super::stored::reason_map")]
        reasons: BTreeMap<String, Reason>,
    },
    /// An entry written by an earlier tocsin, before the timeline was typed, as it was.
    Recorded {
        name: String,
        detail: String,
    },
}

impl TimelineEvent {
    /// The entry a decision writes into its incident's timeline, if any.
    pub fn of(action: &Action) -> Option<TimelineEvent> {
        Some(match action {
            Action::Open { reasons, .. } => TimelineEvent::Opened {
                reasons: reasons.clone(),
            },
            Action::MailStaff {
                kind, level, to, ..
            } => TimelineEvent::StaffMail {
                mail: *kind,
                level: *level,
                to: to.clone(),
            },
            Action::Acknowledged { by, .. } => TimelineEvent::Acknowledged { by: by.clone() },
            Action::EtaSet { eta, by, .. } => TimelineEvent::Eta {
                eta: *eta,
                by: by.clone(),
            },
            Action::CustomerPhase {
                eta,
                next_update,
                because_of_eta,
                ..
            } => TimelineEvent::CustomerPhase {
                because_of_eta: *because_of_eta,
                eta: *eta,
                next_update: *next_update,
            },
            Action::CustomerUpdate {
                eta, next_update, ..
            } => TimelineEvent::CustomerUpdate {
                eta: *eta,
                next_update: *next_update,
            },
            Action::Resolve { by, .. } => TimelineEvent::Resolved { by: by.clone() },
            Action::Posted {
                update, customers, ..
            } => TimelineEvent::Update {
                update: update.clone(),
                notified: *customers,
            },
            // Written by the store with the service it is about (see `also_affected`).
            Action::AlsoAffected { .. } => return None,
        })
    }

    /// The entry's name (`opened`, `staff_mail`, ...), as the API and the CLI show it.
    pub fn kind(&self) -> &str {
        match self {
            TimelineEvent::Opened { .. } => "opened",
            TimelineEvent::StaffMail { .. } => "staff_mail",
            TimelineEvent::Acknowledged { .. } => "acknowledged",
            TimelineEvent::Eta { .. } => "eta",
            TimelineEvent::CustomerPhase { .. } => "customer_phase",
            TimelineEvent::CustomerUpdate { .. } => "customer_update",
            TimelineEvent::Resolved { .. } => "resolved",
            TimelineEvent::Update { .. } => "update",
            TimelineEvent::DeliveryFailed { .. } => "delivery_failed",
            TimelineEvent::WebhookFailed { .. } => "webhook_failed",
            TimelineEvent::CompensationShort { .. } => "compensation_short",
            TimelineEvent::HotlineFailed { .. } => "hotline_failed",
            TimelineEvent::AutoresponderFailed { .. } => "autoresponder_failed",
            TimelineEvent::HeartbeatPing { .. } => "heartbeat_ping",
            TimelineEvent::AlsoAffected { affected: true, .. } => "also_affected",
            TimelineEvent::AlsoAffected { .. } => "no_longer_affected",
            TimelineEvent::Recorded { name, .. } => name,
        }
    }

    /// The line staff read (staff mail, API, CLI).
    pub fn detail(&self) -> String {
        match self {
            TimelineEvent::Opened { reasons } => reasons
                .iter()
                .map(|(p, r)| format!("{p}: {r}"))
                .collect::<Vec<_>>()
                .join("; "),
            TimelineEvent::StaffMail { mail, level, to } => {
                format!("{mail:?} level {level} to {}", to.join(", ")).to_lowercase()
            }
            TimelineEvent::Acknowledged { by } => format!("by {by}"),
            TimelineEvent::Eta { eta, by } => format!("{} by {by}", rfc3339(*eta)),
            TimelineEvent::CustomerPhase {
                because_of_eta,
                eta,
                next_update,
            } => {
                let why = if *because_of_eta {
                    "the ETA is past the customer threshold"
                } else {
                    "the outage reached the customer threshold"
                };
                format!("{why}; {}", promise(*eta, *next_update))
            }
            TimelineEvent::CustomerUpdate { eta, next_update } => promise(*eta, *next_update),
            TimelineEvent::Update { update, notified } => {
                let mut line = format!(
                    "{} by {}: {}",
                    update.state.as_str(),
                    update.by,
                    update.text
                );
                for (lang, t) in &update.texts {
                    line.push_str(&format!(" [{lang}: {t}]"));
                }
                if *notified {
                    line.push_str(" (mailed to customers)");
                }
                line
            }
            TimelineEvent::Resolved { by } => by
                .as_ref()
                .map(|b| format!("by {b}"))
                .unwrap_or_else(|| "recovered".into()),
            TimelineEvent::DeliveryFailed { error } => error.clone(),
            TimelineEvent::WebhookFailed { url, error } => format!("{url}: {error}"),
            TimelineEvent::CompensationShort {
                campaign,
                missing,
                pool,
            } => format!(
                "{} of campaign {campaign} go out without a compensation code: the codes in {pool} ran out; add codes to the file",
                crate::text::count(*missing, "recovery mail")
            ),
            TimelineEvent::HotlineFailed { event, error } => {
                format!("hotline hook ({event}): {error}")
            }
            TimelineEvent::AutoresponderFailed { mailbox, error } => {
                format!("autoresponder for {mailbox}: {error}")
            }
            TimelineEvent::HeartbeatPing {
                probe,
                signal,
                body,
            } => match body {
                Some(b) => format!("heartbeat {probe}: {signal}: {b}"),
                None => format!("heartbeat {probe}: {signal}"),
            },
            TimelineEvent::AlsoAffected {
                service,
                affected,
                reasons,
            } => {
                if !affected {
                    return format!("{service} works again");
                }
                let why: Vec<String> = reasons.iter().map(|(p, r)| format!("{p}: {r}")).collect();
                if why.is_empty() {
                    format!("{service} fails too")
                } else {
                    format!("{service} fails too ({})", why.join("; "))
                }
            }
            TimelineEvent::Recorded { detail, .. } => detail.clone(),
        }
    }

    /// The recovery time this entry announces: a staff ETA, or the ETA promised to
    /// customers.
    pub fn eta(&self) -> Option<SystemTime> {
        match self {
            TimelineEvent::Eta { eta, .. } => Some(*eta),
            TimelineEvent::CustomerPhase { eta, .. }
            | TimelineEvent::CustomerUpdate { eta, .. } => *eta,
            // Earlier tocsins wrote the ETA as the entry's first word (RFC 3339), or
            // after "ETA ".
            TimelineEvent::Recorded { name, detail } => detail
                .split_whitespace()
                .find_map(|w| humantime::parse_rfc3339(w.trim_end_matches(';')).ok())
                .filter(|_| name == "eta" || detail.contains("ETA ")),
            _ => None,
        }
    }

    /// A staff update for customers, if this entry is one.
    pub fn update(&self) -> Option<&PublicUpdate> {
        match self {
            TimelineEvent::Update { update, .. } => Some(update),
            _ => None,
        }
    }

    /// For an opening: each failing probe with its reason, one line each.
    pub fn failing(&self) -> Vec<String> {
        match self {
            TimelineEvent::Opened { reasons } => {
                reasons.iter().map(|(p, r)| format!("{p}: {r}")).collect()
            }
            TimelineEvent::Recorded { name, detail } if name == "opened" => {
                detail.split("; ").map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }

    /// For an opening: what customers may be told of it.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            TimelineEvent::Opened { reasons } => Some(Problem::of(reasons.values())),
            TimelineEvent::Recorded { name, detail } if name == "opened" => Some(
                Reason::Text {
                    text: detail.clone(),
                }
                .problem(),
            ),
            _ => None,
        }
    }
}

/// The promise made to customers, for the timeline.
fn promise(eta: Option<SystemTime>, next_update: Option<SystemTime>) -> String {
    match (eta, next_update) {
        (Some(e), _) => format!("ETA {}", rfc3339(e)),
        (None, Some(n)) => format!("next update {}", rfc3339(n)),
        (None, None) => "no promise".into(),
    }
}
