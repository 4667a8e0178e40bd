//! The per-service incident state machine: `step(state, policy, event, now)` returns the
//! next state and the actions decided. Pure: no I/O, no clock, no randomness, so a
//! three-hour outage is replayed in microseconds and a restart that reloads the state
//! decides exactly what the running process would have.
//!
//! Rounds are counted per probe: an incident opens when any probe of the service has
//! failed `failure_threshold` runs in a row, and the service recovers when every probe
//! that has reported has passed `success_threshold` runs in a row. (Counting "service
//! rounds" over probes on different schedules would make a service with three probes
//! reach its threshold three times faster.)

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::policy::Policy;
use super::update::{PublicUpdate, UpdateState};
use crate::probe::Reason;

/// What the service looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every probe passes.
    Up,
    /// A probe fails, fewer than `failure_threshold` times in a row so far.
    Suspect,
    /// An incident is open and a probe still fails.
    Down,
    /// An incident is open and every probe passes, not yet `success_threshold` times.
    Recovering,
    /// Inside a planned maintenance window with no incident open.
    Maintenance,
    /// Failing while a service it depends on has an incident open: attached to that
    /// incident as "also affected" instead of opening its own.
    Affected,
}

/// A probe's current run of results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    pub fails: u32,
    pub oks: u32,
    /// When the current run of failures began.
    pub failing_since: Option<SystemTime>,
    /// The last failure's reason while failing.
    #[serde(default, deserialize_with = "super::stored::reason_opt")]
    pub reason: Option<Reason>,
    /// No failure of the current run was confirmed by a quorum of locations (a cluster
    /// whose live locations are too few to confirm it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unconfirmed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Per service, increasing from 1.
    pub id: u64,
    /// When the outage began: the first failure of the run that opened it, but never
    /// before the end of a maintenance window that covered it.
    pub started: SystemTime,
    /// Escalation levels mailed so far (level `i` is mailed once, in order).
    pub levels_sent: usize,
    pub acked: Option<(String, SystemTime)>,
    pub eta: Option<SystemTime>,
    pub customer_phase: bool,
    /// Every staff address mailed about this incident, in order; all get "resolved".
    pub mailed: Vec<String>,
    /// Failing probes and their last reason.
    #[serde(deserialize_with = "super::stored::reason_map")]
    pub reasons: BTreeMap<String, Reason>,
    /// The next-update time customers were promised while no future ETA stands.
    #[serde(default)]
    pub next_update: Option<SystemTime>,
    /// When customers were last told something (the customer phase, or an update).
    #[serde(default)]
    pub last_update: Option<SystemTime>,
    /// Customers are owed an update (the ETA changed, or a promise came due), sent as soon
    /// as `update_every` has passed since the last one.
    #[serde(default)]
    pub update_due: bool,
    /// Reminders sent at the last level (its `repeat_every`).
    #[serde(default)]
    pub reminders: u32,
    /// The time customers are owed an update that staff were last reminded of.
    #[serde(default)]
    pub due_reminded: Option<SystemTime>,
    /// A quorum of locations has seen it failing (always, outside a cluster that votes).
    /// Customers are told of confirmed incidents only.
    #[serde(default = "yes")]
    pub confirmed: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub streaks: BTreeMap<String, Streak>,
    pub incident: Option<Incident>,
    /// The id the next incident gets.
    pub next_id: u64,
    /// Recent service-level results (true: every probe passing), newest last.
    pub history: VecDeque<bool>,
    pub flapping: bool,
    /// Every canary probe of the monitor fails: its own network is down.
    pub canary_down: bool,
    /// End of the last maintenance window seen in force.
    pub last_window_end: Option<SystemTime>,
    /// What the services it depends on look like (the engine tells it).
    #[serde(default)]
    pub upstream: Upstream,
    /// The service whose incident this one is attached to, as "also affected".
    #[serde(default)]
    pub attached: Option<String>,
}

/// The services a service depends on (directly or through a chain), as the engine sees
/// them: what decides whether a failure of its own opens an incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "service")]
pub enum Upstream {
    /// None of them fails.
    #[default]
    Clear,
    /// One of them fails, not yet long enough to open an incident: an incident of this
    /// service waits, since it is likely the same outage seen sooner.
    Failing(String),
    /// This one (the root) has an incident open: a failure here is attached to it.
    Down(String),
}

/// Something that happened to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One probe run finished (in a cluster that votes: the locations' votes on it).
    /// `confirmed`: a failure seen by a quorum of locations (always true outside such a
    /// cluster); an unconfirmed one may open an incident for staff, never tell customers.
    Probe {
        probe: String,
        ok: bool,
        reason: Option<Reason>,
        confirmed: bool,
    },
    /// Time passed (escalation and the customer threshold are due by time alone).
    Tick,
    Ack {
        by: String,
    },
    /// Staff expect recovery at `eta`.
    Eta {
        eta: SystemTime,
        by: String,
    },
    /// Staff declare the incident over.
    Resolve {
        by: String,
    },
    /// The monitor's canaries all failing (`down`) or not.
    Canary {
        down: bool,
    },
    /// The services it depends on changed.
    Upstream(Upstream),
    /// Staff post an update for customers; `notify`: mail it to those told, when they
    /// have been told.
    Update {
        update: PublicUpdate,
        notify: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StaffMailKind {
    /// Level 0, when the incident opens.
    Opened,
    /// A later level, still unacknowledged.
    Escalated,
    /// The last level again, still unacknowledged after its `repeat_every`.
    Reminder,
    /// The service changes state too often; it is held and staff are told once.
    Flapping,
    /// Every canary fails: the monitor's own network is down (not tied to a service).
    MonitorDown,
    /// Probes fail for want of the monitor's own resources (descriptors, memory, disk).
    MonitorFault,
    /// One of tocsin's tasks panicked and was started again.
    TaskRestarted,
    /// In a cluster that votes: locations went absent or abstain, or came back.
    Locations,
    /// Customers are owed an update soon (the ETA, or the promised next update, is
    /// `remind_before` away): staff may set a new ETA or post one themselves.
    #[serde(rename = "due_soon")]
    DueSoon,
}

impl StaffMailKind {
    /// In words, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffMailKind::Opened => "opened",
            StaffMailKind::Escalated => "escalated",
            StaffMailKind::Reminder => "reminder",
            StaffMailKind::Flapping => "flapping",
            StaffMailKind::MonitorDown => "monitor down",
            StaffMailKind::MonitorFault => "monitor fault",
            StaffMailKind::TaskRestarted => "task restarted",
            StaffMailKind::Locations => "locations",
            StaffMailKind::DueSoon => "customer update due soon",
        }
    }
}

/// A decision, to be stored with the state and carried out once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Open {
        id: u64,
        started: SystemTime,
        #[serde(deserialize_with = "super::stored::reason_map")]
        reasons: BTreeMap<String, Reason>,
    },
    MailStaff {
        id: Option<u64>,
        kind: StaffMailKind,
        level: usize,
        to: Vec<String>,
    },
    Acknowledged {
        id: u64,
        by: String,
        /// Everyone told of the incident so far (chat and paging channels among them hear
        /// of the acknowledgement).
        #[serde(default)]
        staff: Vec<String>,
    },
    EtaSet {
        id: u64,
        eta: SystemTime,
        by: String,
        #[serde(default)]
        staff: Vec<String>,
    },
    /// Start telling customers: placeholder, campaign, autoresponder, hotline.
    /// Every message to customers commits to the ETA or, without a future one, to
    /// `next_update`.
    CustomerPhase {
        id: u64,
        eta: Option<SystemTime>,
        #[serde(default)]
        next_update: Option<SystemTime>,
        because_of_eta: bool,
    },
    /// Customers were told; the ETA changed, or the promised time came while still down.
    CustomerUpdate {
        id: u64,
        eta: Option<SystemTime>,
        #[serde(default)]
        next_update: Option<SystemTime>,
    },
    /// Staff posted an update. `customers`: it goes to the customers told of the outage,
    /// with the promise it makes (the ETA while ahead, or the next update's time).
    Posted {
        id: u64,
        update: PublicUpdate,
        customers: bool,
        #[serde(default)]
        eta: Option<SystemTime>,
        #[serde(default)]
        next_update: Option<SystemTime>,
    },
    /// This service fails while `root` (a service it depends on) has an incident open:
    /// attached to that incident (`affected`), or recovered while it is still open.
    AlsoAffected {
        root: String,
        affected: bool,
        #[serde(default, deserialize_with = "super::stored::reason_map")]
        reasons: BTreeMap<String, Reason>,
    },
    Resolve {
        id: u64,
        started: SystemTime,
        ended: SystemTime,
        /// Staff who resolved it by hand, if any.
        by: Option<String>,
        /// Everyone mailed about it, who now gets "resolved".
        staff: Vec<String>,
        /// Customers were told, so they are told of the recovery too.
        customers: bool,
    },
}

/// A transition told to incident webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookEvent {
    Opened,
    Escalated,
    Acknowledged,
    Eta,
    CustomerPhase,
    CustomerUpdate,
    Resolved,
    Flapping,
    MonitorDown,
    /// Staff posted an update for customers.
    Update,
}

impl WebhookEvent {
    /// Every event, in the order they happen.
    pub const ALL: [WebhookEvent; 10] = [
        WebhookEvent::Opened,
        WebhookEvent::Escalated,
        WebhookEvent::Acknowledged,
        WebhookEvent::Eta,
        WebhookEvent::CustomerPhase,
        WebhookEvent::CustomerUpdate,
        WebhookEvent::Resolved,
        WebhookEvent::Flapping,
        WebhookEvent::MonitorDown,
        WebhookEvent::Update,
    ];

    /// The event's name in `probes.yaml` and in the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Opened => "opened",
            WebhookEvent::Escalated => "escalated",
            WebhookEvent::Acknowledged => "acknowledged",
            WebhookEvent::Eta => "eta",
            WebhookEvent::CustomerPhase => "customer_phase",
            WebhookEvent::CustomerUpdate => "customer_update",
            WebhookEvent::Resolved => "resolved",
            WebhookEvent::Flapping => "flapping",
            WebhookEvent::MonitorDown => "monitor_down",
            WebhookEvent::Update => "update",
        }
    }

    /// The event named `name`, if there is one.
    pub fn parse(name: &str) -> Option<WebhookEvent> {
        WebhookEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line for the log and the drill: what was decided, with times in RFC 3339.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::text::time::rfc3339 as at;
        let long = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        match self {
            Action::Open {
                id,
                started,
                reasons,
            } => {
                write!(f, "incident {id} opened, failing since {}", at(*started))?;
                for (probe, reason) in reasons {
                    write!(f, "; {probe}: {reason}")?;
                }
                Ok(())
            }
            Action::MailStaff {
                id,
                kind,
                level,
                to,
            } => {
                write!(f, "staff mail ({}", kind.as_str())?;
                if *level > 0 {
                    write!(f, ", level {level}")?;
                }
                if let Some(id) = id {
                    write!(f, ", incident {id}")?;
                }
                write!(f, ") to {}", to.join(", "))
            }
            Action::Acknowledged { id, by, .. } => {
                write!(f, "incident {id} acknowledged by {by}")
            }
            Action::EtaSet { id, eta, by, .. } => {
                write!(
                    f,
                    "incident {id}: recovery expected by {} (set by {by})",
                    at(*eta)
                )
            }
            Action::CustomerPhase {
                id,
                eta,
                next_update,
                because_of_eta,
            } => {
                write!(f, "incident {id}: customers are told")?;
                if *because_of_eta {
                    write!(f, " (the ETA is past the threshold)")?;
                }
                match (eta, next_update) {
                    (Some(e), _) => write!(f, ", recovery expected by {}", at(*e)),
                    (None, Some(n)) => write!(f, ", next update by {}", at(*n)),
                    (None, None) => Ok(()),
                }
            }
            Action::AlsoAffected {
                root,
                affected: true,
                reasons,
            } => {
                write!(f, "also affected by the incident of {root}")?;
                for (probe, reason) in reasons {
                    write!(f, "; {probe}: {reason}")?;
                }
                Ok(())
            }
            Action::AlsoAffected { root, .. } => {
                write!(f, "no longer affected by the incident of {root}")
            }
            Action::Posted {
                id,
                update,
                customers,
                ..
            } => {
                write!(
                    f,
                    "incident {id}: update ({}) by {}",
                    update.state.as_str(),
                    update.by
                )?;
                if *customers {
                    write!(f, "; mailed to customers")?;
                }
                Ok(())
            }
            Action::CustomerUpdate {
                id,
                eta,
                next_update,
            } => {
                write!(f, "incident {id}: customers get an update")?;
                match (eta, next_update) {
                    (Some(e), _) => write!(f, ", recovery expected by {}", at(*e)),
                    (None, Some(n)) => write!(f, ", next update by {}", at(*n)),
                    (None, None) => Ok(()),
                }
            }
            Action::Resolve {
                id,
                started,
                ended,
                by,
                staff,
                customers,
            } => {
                write!(
                    f,
                    "incident {id} resolved at {} after {}",
                    at(*ended),
                    long(ended.duration_since(*started).unwrap_or_default())
                )?;
                if let Some(by) = by {
                    write!(f, " by {by}")?;
                }
                if !staff.is_empty() {
                    write!(f, "; staff told: {}", staff.join(", "))?;
                }
                if *customers {
                    write!(f, "; customers told")?;
                }
                Ok(())
            }
        }
    }
}

impl Action {
    /// The transition this action is, for webhooks; `None` for the staff mail that
    /// accompanies an opening (the opening itself is the event).
    pub fn event(&self) -> Option<WebhookEvent> {
        Some(match self {
            Action::Open { .. } => WebhookEvent::Opened,
            Action::MailStaff { kind, .. } => match kind {
                StaffMailKind::Opened => return None,
                StaffMailKind::Escalated | StaffMailKind::Reminder => WebhookEvent::Escalated,
                StaffMailKind::DueSoon => return None,
                StaffMailKind::Flapping => WebhookEvent::Flapping,
                StaffMailKind::MonitorDown
                | StaffMailKind::MonitorFault
                | StaffMailKind::TaskRestarted
                | StaffMailKind::Locations => WebhookEvent::MonitorDown,
            },
            Action::Acknowledged { .. } => WebhookEvent::Acknowledged,
            Action::EtaSet { .. } => WebhookEvent::Eta,
            Action::CustomerPhase { .. } => WebhookEvent::CustomerPhase,
            Action::CustomerUpdate { .. } => WebhookEvent::CustomerUpdate,
            Action::Resolve { .. } => WebhookEvent::Resolved,
            Action::Posted { .. } => WebhookEvent::Update,
            Action::AlsoAffected { .. } => return None,
        })
    }
}

impl Default for ServiceState {
    fn default() -> Self {
        ServiceState {
            streaks: BTreeMap::new(),
            incident: None,
            next_id: 1,
            history: VecDeque::new(),
            flapping: false,
            canary_down: false,
            last_window_end: None,
            upstream: Upstream::Clear,
            attached: None,
        }
    }
}

impl ServiceState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The service's status at `now`.
    pub fn status(&self, policy: &Policy, now: SystemTime) -> Status {
        let failing = self.streaks.values().any(|s| s.fails > 0);
        match (&self.incident, failing) {
            (None, true) if self.attached.is_some() => Status::Affected,
            (Some(_), true) => Status::Down,
            (Some(_), false) => Status::Recovering,
            (None, _) if policy.window_at(now).is_some() => Status::Maintenance,
            (None, true) => Status::Suspect,
            (None, false) => Status::Up,
        }
    }

    /// When the customer phase starts if nothing changes (None: not open, or started).
    pub fn customer_phase_due(&self, policy: &Policy) -> Option<SystemTime> {
        let inc = self.incident.as_ref().filter(|i| !i.customer_phase)?;
        Some(inc.started + policy.customer_threshold)
    }
}

/// Applies `event` at `now`.
pub fn step(
    state: &ServiceState,
    policy: &Policy,
    event: Event,
    now: SystemTime,
) -> (ServiceState, Vec<Action>) {
    let mut s = state.clone();
    let mut out = Vec::new();
    match event {
        Event::Probe {
            probe,
            ok,
            reason,
            confirmed,
        } => observe(
            &mut s,
            policy,
            probe,
            (ok, confirmed),
            reason,
            now,
            &mut out,
        ),
        Event::Tick => {}
        Event::Ack { by } => {
            if let Some(inc) = s.incident.as_mut().filter(|i| i.acked.is_none()) {
                inc.acked = Some((by.clone(), now));
                out.push(Action::Acknowledged {
                    id: inc.id,
                    by,
                    staff: inc.mailed.clone(),
                });
            }
        }
        Event::Eta { eta, by } => {
            // Past ETAs are refused where they are entered; here one is meaningless.
            if let Some(inc) = s
                .incident
                .as_mut()
                .filter(|i| eta > now && i.eta != Some(eta))
            {
                inc.eta = Some(eta);
                out.push(Action::EtaSet {
                    id: inc.id,
                    eta,
                    by,
                    staff: inc.mailed.clone(),
                });
                if inc.customer_phase {
                    inc.update_due = true;
                }
            }
        }
        Event::Resolve { by } => {
            if s.incident.is_some() {
                resolve(&mut s, now, Some(by), &mut out);
                // A service still failing must fail its threshold again to reopen.
                s.streaks.clear();
            }
        }
        Event::Canary { down } => s.canary_down = down,
        Event::Upstream(u) => s.upstream = u,
        Event::Update { update, notify } => {
            if let Some(inc) = s.incident.as_mut() {
                let resolves = update.state == UpdateState::Resolved;
                // A resolving update reaches customers in the recovery mail instead.
                let customers = notify && inc.customer_phase && !resolves && !s.canary_down;
                let (mut eta, mut next_update) = (None, None);
                if customers {
                    // Mailed, it is the update customers were promised: the next one is
                    // owed from now.
                    (eta, next_update) = promise(inc.eta, policy, now);
                    inc.next_update = next_update;
                    inc.last_update = Some(now);
                    inc.update_due = false;
                }
                let by = update.by.clone();
                out.push(Action::Posted {
                    id: inc.id,
                    update,
                    customers,
                    eta,
                    next_update,
                });
                if resolves {
                    resolve(&mut s, now, Some(by), &mut out);
                    s.streaks.clear();
                }
            }
        }
    }
    evaluate(&mut s, policy, now, &mut out);
    (s, out)
}

fn observe(
    s: &mut ServiceState,
    policy: &Policy,
    probe: String,
    (ok, confirmed): (bool, bool),
    reason: Option<Reason>,
    now: SystemTime,
    out: &mut Vec<Action>,
) {
    let st = s.streaks.entry(probe.clone()).or_default();
    if ok {
        st.oks = st.oks.saturating_add(1);
        st.fails = 0;
        st.failing_since = None;
        st.reason = None;
        st.unconfirmed = false;
    } else {
        st.unconfirmed = if st.fails == 0 {
            !confirmed
        } else {
            st.unconfirmed && !confirmed
        };
        st.fails = st.fails.saturating_add(1);
        st.oks = 0;
        st.failing_since.get_or_insert(now);
        st.reason = reason.clone();
    }
    if let Some(inc) = s.incident.as_mut() {
        if !ok && confirmed {
            inc.confirmed = true;
        }
        match (ok, reason) {
            (false, Some(r)) => {
                inc.reasons.insert(probe, r);
            }
            (true, _) => {
                inc.reasons.remove(&probe);
            }
            _ => {}
        }
    }

    let round_ok = s.streaks.values().all(|x| x.fails == 0);
    s.history.push_back(round_ok);
    while s.history.len() > policy.flapping.window {
        s.history.pop_front();
    }
    if let Some(change) = state_change(&s.history, policy.flapping.window) {
        if !s.flapping && change >= policy.flapping.high {
            s.flapping = true;
            if let Some(first) = policy.levels.first() {
                out.push(Action::MailStaff {
                    id: s.incident.as_ref().map(|i| i.id),
                    kind: StaffMailKind::Flapping,
                    level: 0,
                    to: first.to.clone(),
                });
            }
        } else if s.flapping && change < policy.flapping.low {
            s.flapping = false;
        }
    }
}

/// Nagios' weighted percent state change over a full history: each change between two
/// consecutive results weighs from 0.8 (oldest) to 1.2 (newest). None until full.
fn state_change(history: &VecDeque<bool>, window: usize) -> Option<f64> {
    if window < 3 || history.len() < window {
        return None;
    }
    let transitions = window - 1;
    let mut total = 0.0;
    for (i, pair) in history.iter().zip(history.iter().skip(1)).enumerate() {
        if pair.0 != pair.1 {
            total += 0.8 + 0.4 * i as f64 / (transitions - 1) as f64;
        }
    }
    Some(total / transitions as f64)
}

fn evaluate(s: &mut ServiceState, policy: &Policy, now: SystemTime, out: &mut Vec<Action>) {
    let window = policy.window_at(now);
    if let Some(w) = window {
        s.last_window_end = Some(w.end);
    }
    if s.incident.is_none() {
        let tripped = s
            .streaks
            .values()
            .filter(|x| x.fails >= policy.failure_threshold)
            .filter_map(|x| x.failing_since)
            .min();
        let failing_now = s.streaks.values().any(|x| x.fails > 0);
        // Attached to a root incident that is gone, or recovered meanwhile: detached.
        if let Some(root) = s.attached.clone() {
            let still = matches!(&s.upstream, Upstream::Down(r) if *r == root);
            if !failing_now || !still {
                s.attached = None;
                if still {
                    out.push(Action::AlsoAffected {
                        root,
                        affected: false,
                        reasons: BTreeMap::new(),
                    });
                }
            }
        }
        let upstream = s.upstream.clone();
        let held = match &upstream {
            Upstream::Clear => false,
            Upstream::Failing(_) => tripped.is_some(),
            Upstream::Down(root) => {
                if tripped.is_some() && s.attached.as_deref() != Some(root.as_str()) {
                    s.attached = Some(root.clone());
                    out.push(Action::AlsoAffected {
                        root: root.clone(),
                        affected: true,
                        reasons: failing_reasons(s),
                    });
                }
                tripped.is_some()
            }
        };
        if let Some(since) = tripped.filter(|_| !held) {
            if window.is_none() && !s.canary_down && !s.flapping {
                let started = match s.last_window_end {
                    Some(end) if end > since && end <= now => end,
                    _ => since,
                };
                let reasons = failing_reasons(s);
                let confirmed = s.streaks.values().any(|x| x.fails > 0 && !x.unconfirmed);
                let id = s.next_id;
                s.next_id += 1;
                out.push(Action::Open {
                    id,
                    started,
                    reasons: reasons.clone(),
                });
                s.incident = Some(Incident {
                    id,
                    started,
                    levels_sent: 0,
                    acked: None,
                    eta: None,
                    customer_phase: false,
                    mailed: Vec::new(),
                    reasons,
                    next_update: None,
                    last_update: None,
                    update_due: false,
                    reminders: 0,
                    due_reminded: None,
                    confirmed,
                });
            }
        }
    } else if !s.flapping && recovered(s, policy) {
        resolve(s, now, None, out);
        return;
    }

    let canary_down = s.canary_down;
    let Some(inc) = s.incident.as_mut() else {
        return;
    };
    let age = now.duration_since(inc.started).unwrap_or(Duration::ZERO);
    while inc.levels_sent < policy.levels.len() && inc.acked.is_none() {
        let level = &policy.levels[inc.levels_sent];
        if age < level.after {
            break;
        }
        for addr in &level.to {
            if !inc.mailed.contains(addr) {
                inc.mailed.push(addr.clone());
            }
        }
        out.push(Action::MailStaff {
            id: Some(inc.id),
            kind: if inc.levels_sent == 0 {
                StaffMailKind::Opened
            } else {
                StaffMailKind::Escalated
            },
            level: inc.levels_sent,
            to: level.to.clone(),
        });
        inc.levels_sent += 1;
    }
    // The last level again, every `repeat_every` after it was mailed, until acknowledged:
    // a page is not lost over a weekend.
    if let Some(last) = policy
        .levels
        .last()
        .filter(|_| inc.acked.is_none() && inc.levels_sent == policy.levels.len())
    {
        if let Some(every) = last.repeat_every.filter(|d| !d.is_zero()) {
            let due = last.after + every.saturating_mul(inc.reminders + 1);
            if age >= due {
                // After a long stop, one reminder, counted as the latest that fell due.
                let owed = ((age - last.after).as_secs() / every.as_secs().max(1)) as u32;
                inc.reminders = owed.max(inc.reminders + 1);
                out.push(Action::MailStaff {
                    id: Some(inc.id),
                    kind: StaffMailKind::Reminder,
                    level: policy.levels.len() - 1,
                    to: last.to.clone(),
                });
            }
        }
    }
    // Customers hear only of what a quorum of locations saw: an incident opened on the
    // word of too few waits for confirmation (staff were told it is unconfirmed).
    if !inc.customer_phase && !canary_down && inc.confirmed {
        let by_eta = inc.eta.is_some_and(|eta| {
            eta.duration_since(inc.started).unwrap_or(Duration::ZERO) >= policy.customer_threshold
        });
        if age >= policy.customer_threshold || by_eta {
            inc.customer_phase = true;
            let (eta, next_update) = promise(inc.eta, policy, now);
            inc.next_update = next_update;
            inc.last_update = Some(now);
            out.push(Action::CustomerPhase {
                id: inc.id,
                eta,
                next_update,
                because_of_eta: by_eta && age < policy.customer_threshold,
            });
        }
    } else if inc.customer_phase && !canary_down {
        // Before a promise falls due, staff are reminded once: customers will otherwise
        // get the generated "it takes longer" update at that time.
        let due = match (inc.eta.filter(|e| *e > now), inc.next_update) {
            (Some(e), _) => Some(e),
            (None, n) => n.filter(|n| *n > now),
        };
        if let Some(due) = due.filter(|d| {
            !policy.remind_before.is_zero()
                && now + policy.remind_before >= *d
                && inc.due_reminded != Some(*d)
        }) {
            inc.due_reminded = Some(due);
            let to = if inc.mailed.is_empty() {
                policy
                    .levels
                    .first()
                    .map(|l| l.to.clone())
                    .unwrap_or_default()
            } else {
                inc.mailed.clone()
            };
            if !to.is_empty() {
                out.push(Action::MailStaff {
                    id: Some(inc.id),
                    kind: StaffMailKind::DueSoon,
                    level: 0,
                    to,
                });
            }
        }
        // A promise that came due while still down is owed an update, as is a changed ETA.
        let kept_until = match (inc.eta.filter(|e| *e > now), inc.next_update) {
            (Some(_), _) => None,
            (None, Some(n)) => Some(n),
            (None, None) => inc.eta,
        };
        if kept_until.is_some_and(|t| now >= t) {
            inc.update_due = true;
        }
        let quiet_until = inc.last_update.map(|t| t + policy.update_every);
        if inc.update_due && quiet_until.is_none_or(|t| now >= t) {
            let (eta, next_update) = promise(inc.eta, policy, now);
            inc.next_update = next_update;
            inc.last_update = Some(now);
            inc.update_due = false;
            out.push(Action::CustomerUpdate {
                id: inc.id,
                eta,
                next_update,
            });
        }
    }
}

/// Each failing probe with its last reason.
fn failing_reasons(s: &ServiceState) -> BTreeMap<String, Reason> {
    s.streaks
        .iter()
        .filter(|(_, x)| x.fails > 0)
        .map(|(p, x)| {
            (
                p.clone(),
                x.reason.clone().unwrap_or_else(|| Reason::Text {
                    text: "failing".into(),
                }),
            )
        })
        .collect()
}

/// What a message sent at `now` commits to: the ETA while it is ahead, otherwise a
/// next-update time (never neither).
fn promise(
    eta: Option<SystemTime>,
    policy: &Policy,
    now: SystemTime,
) -> (Option<SystemTime>, Option<SystemTime>) {
    match eta.filter(|e| *e > now) {
        Some(e) => (Some(e), None),
        None => (None, Some(now + policy.next_update)),
    }
}

/// Every probe that has reported passes, each `success_threshold` times in a row.
fn recovered(s: &ServiceState, policy: &Policy) -> bool {
    !s.streaks.is_empty()
        && s.streaks
            .values()
            .all(|x| x.fails == 0 && x.oks >= policy.success_threshold)
}

fn resolve(s: &mut ServiceState, now: SystemTime, by: Option<String>, out: &mut Vec<Action>) {
    if let Some(inc) = s.incident.take() {
        out.push(Action::Resolve {
            id: inc.id,
            started: inc.started,
            ended: now,
            by,
            staff: inc.mailed,
            customers: inc.customer_phase,
        });
    }
}
