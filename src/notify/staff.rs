//! Staff mails: what fails and why, since when, the timeline, the escalation ahead and when
//! customers will be told. Text and HTML parts; everything from outside (reasons, names)
//! is escaped in the HTML.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::config::fmt_dur;
use crate::incident::{Action, Context, StaffMailKind, Status};
use crate::oncall::addresses;
use crate::store::IncidentRecord;

use std::sync::Arc;

use super::dispatch::{Backoff, Notifier, Outcome};
use super::mail::{MailError, Mailer, Outgoing};
use crate::clock::Clock;
use crate::config::LiveConfig;
use crate::links::{Link, LinkAction, Signer, expiry};
use crate::metrics::Metrics;
use crate::store::{Channel, Delivery, OutboxItem, SharedStore, StoreError};
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

/// When customers are next owed an update: the ETA promised them while it is ahead,
/// else the next-update time.
fn due_at(incident: &IncidentRecord, now: SystemTime) -> Option<SystemTime> {
    incident
        .promised_eta
        .filter(|e| *e > now)
        .or(incident.next_update)
}

fn age(from: SystemTime, to: SystemTime) -> String {
    let d = to.duration_since(from).unwrap_or(Duration::ZERO);
    fmt_dur(Duration::from_secs(d.as_secs()))
}

/// Signed links to acknowledge and to set an ETA.
pub struct ActionLinks {
    pub ack: String,
    pub eta: String,
    /// Post an update for customers.
    pub update: String,
}

/// Renders the mail for `incident`, with what its decision's `context` says is ahead.
pub fn render(
    context: &Context,
    incident: &IncidentRecord,
    notice: &StaffNotice,
    to: Vec<String>,
    links: Option<&ActionLinks>,
    now: SystemTime,
) -> Outgoing {
    let name = context.service_name.as_str();
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
        StaffNotice::Level {
            kind: StaffMailKind::Reminder,
            ..
        } => format!(
            "[tocsin] Reminder: {name} is still DOWN, unacknowledged for {}",
            age(incident.started, now)
        ),
        StaffNotice::Level {
            kind: StaffMailKind::DueSoon,
            ..
        } => format!(
            "[tocsin] {name}: customers get an update at {}; set a new ETA or post an update",
            due_at(incident, now).map(at).unwrap_or_default()
        ),
        // A monitor-down notice never belongs to an incident (see render_notice).
        StaffNotice::Level {
            kind:
                StaffMailKind::Flapping
                | StaffMailKind::MonitorDown
                | StaffMailKind::MonitorFault
                | StaffMailKind::TaskRestarted
                | StaffMailKind::Locations,
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
            kind:
                StaffMailKind::Flapping
                | StaffMailKind::MonitorDown
                | StaffMailKind::MonitorFault
                | StaffMailKind::TaskRestarted
                | StaffMailKind::Locations,
            ..
        } => {
            let _ = writeln!(
                t,
                "{name} ({}) changes state too often; tocsin holds it in its current state and",
                incident.service
            );
            let _ = writeln!(
                t,
                "sends no further mail about it until it settles. Check it by hand."
            );
        }
        StaffNotice::Level { level, kind } => {
            if *kind == StaffMailKind::DueSoon {
                if let Some(due) = due_at(incident, now) {
                    let what = if incident.promised_eta.is_some_and(|e| e > now) {
                        "they were promised recovery by then"
                    } else {
                        "they were promised an update by then"
                    };
                    let _ = writeln!(
                        t,
                        "Customers will get an update at {} ({what}) saying it takes longer, unless {name} is back first.",
                        at(due)
                    );
                    let _ = writeln!(
                        t,
                        "Set a new ETA, or post an update in your own words, before then (links below)."
                    );
                    let _ = writeln!(t);
                }
            }
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
            let affected = incident.also_affected();
            if !affected.is_empty() {
                let _ = writeln!(t);
                let _ = writeln!(
                    t,
                    "Also affected (they depend on {}; no incident of their own opens):",
                    incident.service
                );
                for (_, line) in &affected {
                    let _ = writeln!(t, "  {line}");
                }
            }
            let _ = writeln!(t);
            if !context.oncall.is_empty() {
                let _ = writeln!(t, "On call, paged now:");
                for line in &context.oncall {
                    let _ = writeln!(t, "  {line}");
                }
                let _ = writeln!(t);
            }
            if let Some(by) = &incident.acked_by {
                let _ = writeln!(t, "Acknowledged by {by}.");
            } else if let Some(next) = context.levels.get(level + 1) {
                let _ = writeln!(
                    t,
                    "Escalation: level {level} of {}. Unless acknowledged, level {} ({}) is mailed at {}.",
                    context.levels.len() - 1,
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
                    at(incident.started + context.customer_threshold),
                    fmt_dur(context.customer_threshold)
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
        let _ = writeln!(t, "Post an update for customers: {}", l.update);
    }
    // What customers read besides the generated words: staff's own updates so far.
    let updates: Vec<(SystemTime, &crate::incident::PublicUpdate, bool)> = incident
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            crate::incident::TimelineEvent::Update { update, notified } => {
                Some((e.at, update, *notified))
            }
            _ => None,
        })
        .collect();
    if !updates.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Public updates so far (on the status page):");
        for (when, u, notified) in updates {
            let _ = writeln!(
                t,
                "  {}  {} by {}{}:",
                at(when),
                u.state.as_str(),
                u.by,
                if notified {
                    ", mailed to customers"
                } else {
                    ""
                }
            );
            for line in u.text.lines() {
                let _ = writeln!(t, "    {line}");
            }
        }
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
            "<p>\n{}\n<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333;margin-right:1em\">Set an ETA</a>\n<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333\">Post an update</a>\n</p>",
            if incident.acked_by.is_none() {
                format!(
                    "<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333;margin-right:1em\">Acknowledge</a>",
                    escape(&l.ack)
                )
            } else {
                String::new()
            },
            escape(&l.eta),
            escape(&l.update)
        ),
        None => String::new(),
    };
    let html = html(&subject, &buttons, &t);
    Outgoing {
        to,
        subject,
        text: t,
        html,
        ..Outgoing::default()
    }
}

/// A staff mail's HTML part: a whole document (language, title), the subject as heading,
/// the action buttons, then the text as written, one element per line.
pub fn html(subject: &str, buttons: &str, text: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{subject}</title>\n</head>\n<body>\n<h1 style=\"font-size:1.2em\">{subject}</h1>\n{buttons}{}<pre style=\"font-family:monospace;white-space:pre-wrap\">{}</pre>\n</body>\n</html>\n",
        if buttons.is_empty() { "" } else { "\n" },
        escape(text),
        subject = escape(subject),
    )
}

/// Tells staff that a recovery campaign `campaign` for `name` is short of compensation
/// codes (`detail` says how many and from which pool).
pub fn compensation_short(name: &str, detail: &str, campaign: i64, to: Vec<String>) -> Outgoing {
    let text = format!(
        "The recovery mail for {name} is going out now.\n\n{detail}.\n\nThe outage lasted long enough to earn compensation, so every customer told of it should get a code. Those without one can be sent a code by hand: `tocsin campaign status {campaign}` lists them.\n"
    );
    let subject = format!("[tocsin] {name}: compensation codes ran out");
    Outgoing {
        to,
        html: html(&subject, "", &text),
        subject,
        text,
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
        StaffMailKind::MonitorFault => (
            "[tocsin] tocsin's own host is in trouble: outages may go unseen".to_string(),
            format!(
                "A probe failed because of tocsin's own host, not its target ({}).\n\
                 Such failures say nothing of the targets: they open no incident and customers\n\
                 are told nothing, so an outage could go unseen while this lasts.\n\
                 Check the host: open files (ulimit -n), memory, local ports, disk space, and\n\
                 its DNS resolver (/etc/resolv.conf).\n\n\
                 Since {}. tocsin repeats this at most once an hour while it lasts.\n",
                failing.join(", "),
                at(now)
            ),
        ),
        StaffMailKind::Locations => (
            format!("[tocsin] locations: {}", failing.join("; ")),
            format!(
                "The locations that vote on every probe changed ({}).\n\n\
                 An absent location has written no results lately (its instance stopped, or it\n\
                 cannot reach the database); one that abstains sees its own canaries fail (its\n\
                 network is down). Neither counts toward a quorum: while too few locations count,\n\
                 a failure they see may open an incident for staff, marked unconfirmed, but\n\
                 customers are told nothing on it.\n\n\
                 Since {}. tocsin tells once when a location leaves and once when it is back.\n",
                failing.join("; "),
                at(now)
            ),
        ),
        StaffMailKind::TaskRestarted => (
            "[tocsin] a task of tocsin failed and was restarted".to_string(),
            format!(
                "A task of tocsin panicked and was started again ({}).\n\
                 What it was doing at that moment may need a look (a page, an announcement,\n\
                 a mailbox). tocsin_task_restarts_total counts restarts; this is a bug to report.\n\n\
                 Since {}. Each task is reported once per run.\n",
                failing.join(", "),
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
    let html = html(&subject, "", &text);
    Outgoing {
        to,
        subject,
        text,
        html,
        ..Outgoing::default()
    }
}

/// Mails staff: incident mails (opened, escalated, resolved) with their ack and ETA
/// links, and the notices that belong to no incident (flapping, monitor down).
pub struct StaffMail {
    pub store: SharedStore,
    pub mailer: Arc<Mailer>,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Signs the ack and ETA links.
    pub signer: Arc<Signer>,
    /// The engine's snapshot: whether other services of the same policy are in trouble
    /// (then a mail waits for them to share it). None: every mail goes at once.
    pub engine: Option<tokio::sync::watch::Receiver<Arc<crate::engine::Snapshot>>>,
}

/// What makes staff mails one: the kind (opened, escalated to level N, reminder,
/// resolved), the service's escalation policy, and the recipients.
type GroupKey = (String, Option<String>, Vec<String>);

#[async_trait::async_trait]
impl Notifier for StaffMail {
    fn channel(&self) -> Channel {
        Channel::StaffMail
    }

    /// Decisions that mail someone: a level or a notice with an address among its `to`
    /// (the channels there are the chat notifier's), and "resolved" to those mailed.
    fn wants(&self, decision: &OutboxItem) -> bool {
        match &decision.action {
            Action::MailStaff { to, .. } => !addresses(to).is_empty(),
            Action::Resolve { staff, .. } => !addresses(staff).is_empty(),
            _ => false,
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::MAIL
    }

    /// An incident's mail waits `escalation.group_wait` (an opening) or `group_interval`
    /// (a later level, a reminder, "resolved") when another service of the same policy
    /// is in trouble at that moment, so that their mails go out as one. A lone outage's
    /// mail goes at once.
    fn delay(&self, decision: &OutboxItem) -> Duration {
        let config = self.config.get();
        let (Some(engine), Some((class, policy, _))) =
            (&self.engine, self.group_key(&config, decision))
        else {
            return Duration::ZERO;
        };
        let wait = if class == "opened" {
            config.group_wait
        } else {
            config.group_interval
        };
        let statuses = engine.borrow().statuses.clone();
        let others = config
            .services
            .iter()
            .filter(|s| s.id != decision.service && s.escalation == policy)
            .any(|s| match statuses.get(&s.id) {
                Some(Status::Down | Status::Recovering) => true,
                // About to open, possibly: worth waiting for only for an opening.
                Some(Status::Suspect) => class == "opened",
                _ => false,
            });
        if others { wait } else { Duration::ZERO }
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        let Some(decision) = &d.decision else {
            return Outcome::Failed("the delivery has no decision".into());
        };
        // Sent already inside another incident's grouped mail.
        if matches!(self.store.lock().delivery_pending(d.id), Ok(false)) {
            return Outcome::Done;
        }
        let mail = match self.compose(decision) {
            Ok(Some(m)) => m,
            // The incident is gone from the store: nothing left to tell.
            Ok(None) => return Outcome::Done,
            Err(e) => return Outcome::Retry(format!("cannot read the incident: {e}")),
        };
        // The mails of other incidents that share this one's group and wait: one mail.
        let companions = self.companions(d, decision);
        let (kind, outgoing) = if companions.is_empty() {
            mail
        } else {
            let mut parts = vec![(decision.clone(), mail.1)];
            for c in &companions {
                if let Some(x) = &c.decision {
                    match self.compose(x) {
                        Ok(Some((_, m))) => parts.push((x.clone(), m)),
                        Ok(None) => {}
                        Err(e) => return Outcome::Retry(format!("cannot read the incident: {e}")),
                    }
                }
            }
            (mail.0, self.grouped(decision, parts))
        };
        match self.mailer.send(&outgoing).await {
            Ok(()) => {
                self.metrics.mail_sent(kind);
                tracing::info!(service = %decision.service, kind, to = %outgoing.to.join(", "), incidents = companions.len() + 1, "staff mail sent");
                let now = self.clock.now();
                for c in &companions {
                    if let Err(e) = self.store.lock().delivered(c.id, now) {
                        // Sent, not marked: it may be sent again on its own, never lost.
                        tracing::error!(delivery = c.id, error = %e, "a grouped staff mail could not be marked sent");
                    }
                }
                Outcome::Done
            }
            Err(MailError::Transient(e)) | Err(MailError::Config(e)) => {
                self.metrics.mail_failed(kind);
                let retry_in = self.backoff().after(d.attempts);
                tracing::warn!(service = %decision.service, kind, error = %e, ?retry_in, "staff mail failed; will retry");
                Outcome::Retry(e)
            }
            Err(MailError::Permanent(e)) => {
                self.metrics.mail_failed(kind);
                tracing::error!(service = %decision.service, kind, error = %e, "staff mail failed permanently");
                Outcome::Failed(e)
            }
        }
    }
}

impl StaffMail {
    /// The group `decision`'s mail belongs to; None for a mail never grouped (a notice of
    /// no incident, flapping).
    fn group_key(&self, config: &crate::config::Config, decision: &OutboxItem) -> Option<GroupKey> {
        decision.incident?;
        let (class, to) = match &decision.action {
            Action::MailStaff {
                kind: StaffMailKind::Opened,
                to,
                ..
            } => ("opened".to_string(), to),
            Action::MailStaff {
                kind: StaffMailKind::Escalated,
                level,
                to,
                ..
            } => (format!("escalated {level}"), to),
            Action::MailStaff {
                kind: StaffMailKind::Reminder,
                to,
                ..
            } => ("reminder".to_string(), to),
            Action::Resolve { staff, .. } => ("resolved".to_string(), staff),
            _ => return None,
        };
        let policy = config
            .services
            .iter()
            .find(|s| s.id == decision.service)
            .and_then(|s| s.escalation.clone());
        let mut to = addresses(to);
        to.sort();
        Some((class, policy, to))
    }

    /// The waiting staff mails of other incidents in `d`'s group, decided by now: each the
    /// oldest waiting mail of its incident, so that an incident's mails keep their order.
    fn companions(&self, d: &Delivery, decision: &OutboxItem) -> Vec<Delivery> {
        let config = self.config.get();
        let Some(key) = self.group_key(&config, decision) else {
            return Vec::new();
        };
        let now = self.clock.now();
        let waiting = match self.store.lock().due_deliveries(
            crate::text::time::latest(),
            Some(Channel::StaffMail),
            500,
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the waiting staff mails; this one goes alone");
                return Vec::new();
            }
        };
        waiting
            .into_iter()
            .filter(|w| w.id != d.id && w.incident.is_some() && w.incident != d.incident)
            .filter(|w| {
                w.decision.as_ref().is_some_and(|x| {
                    x.decided <= now && self.group_key(&config, x).as_ref() == Some(&key)
                })
            })
            .collect()
    }

    /// One mail of several incidents' mails (`parts`, the first `decision`'s): a subject
    /// naming them all, a link that acknowledges them all, then each incident's mail.
    fn grouped(&self, decision: &OutboxItem, parts: Vec<(OutboxItem, Outgoing)>) -> Outgoing {
        let config = self.config.get();
        let n = parts.len();
        // Each service by the name its decision was taken with.
        let names: Vec<String> = parts
            .iter()
            .map(|(x, _)| match &x.context {
                Some(c) if !c.service_name.is_empty() => c.service_name.clone(),
                _ => config.service_name(&x.service),
            })
            .collect();
        let listed = if n > 6 {
            format!("{} and {} more", names[..5].join(", "), n - 5)
        } else {
            names.join(", ")
        };
        let to = parts[0].1.to.clone();
        let (subject, open) = match &decision.action {
            Action::Resolve { .. } => (
                format!("[tocsin] {n} services are UP again: {listed}"),
                false,
            ),
            Action::MailStaff {
                kind: StaffMailKind::Escalated,
                level,
                ..
            } => (
                format!(
                    "[tocsin] {n} services are DOWN, unacknowledged (escalation level {level}): {listed}"
                ),
                true,
            ),
            Action::MailStaff {
                kind: StaffMailKind::Reminder,
                ..
            } => (
                format!("[tocsin] Reminder: {n} services are still DOWN, unacknowledged: {listed}"),
                true,
            ),
            _ => (format!("[tocsin] {n} services are DOWN: {listed}"), true),
        };
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{n} incidents of the same escalation policy, within {} of each other, in one mail:",
            fmt_dur(
                if matches!(
                    decision.action,
                    Action::MailStaff {
                        kind: StaffMailKind::Opened,
                        ..
                    }
                ) {
                    config.group_wait
                } else {
                    config.group_interval
                }
            )
        );
        for name in &names {
            let _ = writeln!(t, "  {name}");
        }
        let mut buttons = String::new();
        if open {
            let ids: Vec<i64> = parts.iter().filter_map(|(x, _)| x.incident).collect();
            let all = self.signer.url(
                &config.public_url,
                &Link {
                    incident: ids[0],
                    action: LinkAction::AckAll,
                    expires: expiry(self.clock.now()),
                    recipient: to.join(", "),
                    group: ids,
                },
            );
            let _ = writeln!(t);
            let _ = writeln!(t, "Acknowledge all {n} (stops their escalation): {all}");
            buttons = format!(
                "<p>\n<a href=\"{}\" style=\"padding:.5em 1em;border:1px solid #333\">Acknowledge all {n}</a>\n</p>",
                escape(&all)
            );
        }
        for (name, (_, m)) in names.iter().zip(&parts) {
            let _ = writeln!(t);
            let _ = writeln!(t, "──── {name} ────");
            t.push_str(&m.text);
        }
        Outgoing {
            to,
            html: html(&subject, &buttons, &t),
            subject,
            text: t,
            ..Outgoing::default()
        }
    }

    /// The mail `decision` asks for, with its kind (the metrics label).
    fn compose(
        &self,
        decision: &OutboxItem,
    ) -> Result<Option<(&'static str, Outgoing)>, StoreError> {
        let config = self.config.get();
        // Decided before contexts were stored: the running config says the same.
        let context = decision.context.clone().unwrap_or_else(|| {
            config.context(config.services.iter().find(|s| s.id == decision.service))
        });
        let Some(incident) = decision.incident else {
            let Action::MailStaff { kind, to, .. } = &decision.action else {
                return Ok(None);
            };
            let k = match kind {
                StaffMailKind::MonitorDown => "staff_monitor_down",
                StaffMailKind::MonitorFault => "staff_monitor_fault",
                StaffMailKind::TaskRestarted => "staff_task_restarted",
                StaffMailKind::Locations => "staff_locations",
                _ => "staff_flapping",
            };
            let name = (!context.service_name.is_empty()).then_some(context.service_name.as_str());
            let mail = render_notice(
                *kind,
                name,
                &context.canaries,
                addresses(to),
                decision.decided,
            );
            return Ok(Some((k, mail)));
        };
        let Some(incident) = self.store.lock().incident(incident)? else {
            return Ok(None);
        };
        let now = self.clock.now();
        Ok(match &decision.action {
            Action::MailStaff {
                kind, level, to, ..
            } => {
                let link = |action| {
                    let l = Link {
                        incident: incident.id,
                        action,
                        expires: expiry(now),
                        recipient: to.join(", "),
                        group: Vec::new(),
                    };
                    self.signer.url(&config.public_url, &l)
                };
                let links = ActionLinks {
                    ack: link(LinkAction::Ack),
                    eta: link(LinkAction::Eta),
                    update: link(LinkAction::Update),
                };
                let k = match kind {
                    StaffMailKind::Opened => "staff_opened",
                    StaffMailKind::Escalated => "staff_escalated",
                    StaffMailKind::Reminder => "staff_reminder",
                    StaffMailKind::Flapping => "staff_flapping",
                    StaffMailKind::MonitorDown => "staff_monitor_down",
                    StaffMailKind::MonitorFault => "staff_monitor_fault",
                    StaffMailKind::TaskRestarted => "staff_task_restarted",
                    StaffMailKind::Locations => "staff_locations",
                    StaffMailKind::DueSoon => "staff_due_soon",
                };
                let notice = StaffNotice::Level {
                    kind: *kind,
                    level: *level,
                };
                let mail = render(
                    &context,
                    &incident,
                    &notice,
                    addresses(to),
                    Some(&links),
                    now,
                );
                Some((k, mail))
            }
            Action::Resolve {
                staff, ended, by, ..
            } if !staff.is_empty() => {
                let notice = StaffNotice::Resolved {
                    ended: *ended,
                    by: by.as_deref(),
                };
                let mail = render(&context, &incident, &notice, addresses(staff), None, now);
                Some(("staff_resolved", mail))
            }
            _ => None,
        })
    }
}
