//! The incident engine: feeds probe reports, staff commands and the passing of time to
//! each service's state machine, and saves every step (state and decided actions) in one
//! store transaction before anything is carried out.
//!
//! The engine is a task that owns the machines' states ([`Engine::run`]). Nothing else
//! holds it or locks it: the rest of the process talks to it through a [`Handle`]
//! (staff commands with a reply, a reloaded config) and follows it through a
//! [`Snapshot`] published on a `watch` channel after every decision (service statuses,
//! the canary guard, a decision counter). The dispatcher, the campaign sender, the pages,
//! the autoresponder, the hotline and the maintenance planner wake on that snapshot; the
//! work itself they read from the store's outbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::incident::{Action, Event, Policy, ServiceState, Status, Upstream, step};
use crate::metrics::Metrics;
use crate::probe::Reason;
use crate::scheduler::Report;
use crate::store::{Context, SharedStore, StoreError};

/// While probes keep failing for want of the monitor's own resources, staff hear of it
/// at most this often.
const FAULT_NOTICE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A staff command that did not apply.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No service with that id in the config.
    #[error("no service `{0}`")]
    UnknownService(String),
    /// The service has no open incident to act on.
    #[error("service `{0}` has no open incident")]
    NoIncident(String),
    /// The ETA is not in the future.
    #[error("the ETA must be in the future")]
    EtaInPast,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine task has stopped (the process is shutting down).
    #[error("the incident engine has stopped; tocsin is shutting down")]
    Stopped,
}

/// What the rest of the process may know of the engine, published after every decision
/// and every tick that changes a status. Cheap to clone (behind an `Arc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Decisions taken since start; a follower that saw a lower number has work to look at.
    pub decisions: u64,
    /// Every configured service's status.
    pub statuses: BTreeMap<String, Status>,
    /// Every canary probe fails: the monitor cannot see, and customers are told nothing.
    pub canary_down: bool,
}

impl Snapshot {
    /// The status of `service`: `Up` for one the engine does not know (yet).
    pub fn status(&self, service: &str) -> Status {
        self.statuses.get(service).copied().unwrap_or(Status::Up)
    }
}

/// What a [`Handle`] asks of the engine task.
enum Command {
    Staff {
        service: String,
        event: Event,
        reply: oneshot::Sender<Result<Vec<Action>, EngineError>>,
    },
    Reconfigure(Arc<Config>),
}

/// The engine's ends of its channels. The App keeps it, so that an engine task started
/// again after a panic answers the same handles and publishes to the same followers.
#[derive(Clone)]
pub struct Link {
    commands: mpsc::Sender<Command>,
    inbox: Arc<tokio::sync::Mutex<mpsc::Receiver<Command>>>,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
}

impl Link {
    pub fn new() -> Link {
        let (commands, inbox) = mpsc::channel(64);
        Link {
            commands,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            snapshot: Arc::new(watch::Sender::new(Arc::default())),
        }
    }

    /// A handle to the engine behind this link.
    pub fn handle(&self) -> Handle {
        Handle {
            commands: self.commands.clone(),
            snapshot: self.snapshot.subscribe(),
        }
    }
}

impl Default for Link {
    fn default() -> Link {
        Link::new()
    }
}

/// The way in to the engine task: staff commands and config changes go in, the snapshot
/// comes out. Cheap to clone; every holder sees the same engine.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl Handle {
    /// A staff command (ack, ETA, resolve) on the open incident of `service`, decided and
    /// stored before this returns.
    pub async fn command(&self, service: &str, event: Event) -> Result<Vec<Action>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Staff {
                service: service.to_string(),
                event,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// A reloaded config (or new maintenance windows); taken before the next report.
    pub async fn reconfigure(&self, config: Arc<Config>) {
        if self
            .commands
            .send(Command::Reconfigure(config))
            .await
            .is_err()
        {
            tracing::warn!("the incident engine has stopped; the new configuration is not applied");
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes when the snapshot changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }
}

pub struct Engine {
    policies: BTreeMap<String, Policy>,
    states: BTreeMap<String, ServiceState>,
    /// Latest result of each configured canary probe (service, probe); None before its
    /// first run.
    canaries: BTreeMap<(String, String), Option<bool>>,
    canary_down: bool,
    /// When staff were last told of a monitor fault.
    fault_told: Option<SystemTime>,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    /// What each service's decisions are written with for their notifiers.
    contexts: BTreeMap<String, Context>,
    /// The context of a decision about the monitor itself (no service).
    monitor: Context,
    decisions: u64,
    link: Link,
    /// On-call rotations, and the overrides staff set (read again every tick).
    rotations: BTreeMap<String, crate::oncall::Rotation>,
    overrides: Vec<crate::oncall::Override>,
    /// The zone the staff mail gives hand-off times in.
    staff_zone: String,
    /// Each service's `depends_on`, and every service that depends on something, in an
    /// order where what is needed comes before what needs it.
    depends_on: BTreeMap<String, Vec<String>>,
    dependents: Vec<String>,
    /// For each of those, everything it needs directly or through a chain, nearest
    /// first: worked out once per reload, read on every report of what they need.
    ancestors: BTreeMap<String, Vec<String>>,
    /// For each service something depends on: when each of its probes last reported,
    /// and its longest interval. A dependent that starts failing waits for every probe of
    /// what it needs to report once more (at most two of those intervals) before it
    /// opens an incident of its own: the faster probe often only saw the same outage
    /// sooner.
    needed: BTreeMap<String, (BTreeMap<String, SystemTime>, std::time::Duration)>,
    /// What probes found this minute, hour by hour, not yet written; when it was last
    /// written (monotonic); and whether a service's hour was seen first since.
    hours: crate::store::Hours,
    hours_written: Option<tokio::time::Instant>,
    hours_new: bool,
}

/// How often the probe hours are written.
const HOURS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// Resumes from the store: open incidents keep their start and escalation progress.
    pub fn new(
        config: &Config,
        store: SharedStore,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, StoreError> {
        Engine::attach(config, store, clock, Link::new())
    }

    /// [`Engine::new`] behind an existing link: the handles made from it reach this engine.
    pub fn attach(
        config: &Config,
        store: SharedStore,
        clock: Arc<dyn Clock>,
        link: Link,
    ) -> Result<Engine, StoreError> {
        let mut states = store.lock().load()?;
        // Streaks are recounted from fresh results: a service that recovered while tocsin
        // was stopped passes its success threshold and its incident is resolved.
        for st in states.values_mut() {
            st.streaks.clear();
            st.history.clear();
        }
        let mut engine = Engine {
            policies: BTreeMap::new(),
            states,
            canaries: BTreeMap::new(),
            canary_down: false,
            fault_told: None,
            store,
            clock,
            contexts: BTreeMap::new(),
            monitor: Context::default(),
            decisions: 0,
            link,
            rotations: BTreeMap::new(),
            overrides: Vec::new(),
            staff_zone: String::new(),
            depends_on: BTreeMap::new(),
            dependents: Vec::new(),
            ancestors: BTreeMap::new(),
            needed: BTreeMap::new(),
            hours: crate::store::Hours::default(),
            hours_written: None,
            hours_new: false,
        };
        // A restarted engine continues the count its followers have seen.
        engine.decisions = engine.link.snapshot.borrow().decisions;
        engine.reconfigure(config);
        Ok(engine)
    }

    /// Takes a reloaded config: new services start fresh, removed ones are kept in the
    /// store but no longer stepped.
    pub fn reconfigure(&mut self, config: &Config) {
        self.rotations = config.rotations.clone();
        self.staff_zone = config.staff_timezone.clone();
        self.reload_overrides();
        self.policies = config
            .services
            .iter()
            .map(|s| (s.id.clone(), config.policy(s)))
            .collect();
        for id in self.policies.keys() {
            self.states.entry(id.clone()).or_default();
        }
        // Once per reload, from the policies just built: the canary list is read once,
        // not once per service.
        let canaries = config.canaries();
        self.contexts = config
            .services
            .iter()
            .map(|s| {
                let context = Context::of(&s.name, &self.policies[&s.id], canaries.clone());
                (s.id.clone(), context)
            })
            .collect();
        self.monitor = Context {
            canaries,
            ..Context::default()
        };
        let configured: Vec<(String, String)> = config
            .probes()
            .filter(|p| p.canary)
            .map(|p| (p.service.clone(), p.name.clone()))
            .collect();
        self.canaries.retain(|k, _| configured.contains(k));
        for k in configured {
            self.canaries.entry(k).or_insert(None);
        }
        self.depends_on = config
            .services
            .iter()
            .filter(|s| !s.depends_on.is_empty())
            .map(|s| (s.id.clone(), s.depends_on.clone()))
            .collect();
        self.dependents = needed_first(&self.depends_on);
        self.ancestors = self
            .depends_on
            .keys()
            .map(|s| (s.clone(), chain(&self.depends_on, s)))
            .collect();
        let mut needed = BTreeMap::new();
        for s in &config.services {
            if self.depends_on.values().any(|d| d.contains(&s.id)) {
                let seen = self
                    .needed
                    .remove(&s.id)
                    .map(|(seen, _)| seen)
                    .unwrap_or_default();
                needed.insert(s.id.clone(), (seen, s.longest_interval()));
            }
        }
        self.needed = needed;
        // A dependency added or removed by the reload counts from now on.
        let now = self.clock.now();
        let all: Vec<String> = self.policies.keys().cloned().collect();
        for s in all {
            if let Err(e) = self.propagate(&s, now) {
                tracing::error!(error = %e, "incident engine: the dependencies' states could not be stored and are taken again at the next change");
            }
        }
        self.publish();
    }

    /// Every service `service` depends on, directly or through a chain, nearest first.
    fn ancestors(&self, service: &str) -> &[String] {
        self.ancestors
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// What the services `service` depends on look like at `now`: the root incident open
    /// among them (the earliest to start), else one failing toward an incident, else
    /// clear.
    fn upstream_of(
        &self,
        service: &str,
        now: SystemTime,
        failing_since: Option<SystemTime>,
    ) -> Upstream {
        let ancestors = self.ancestors(service);
        let root = ancestors
            .iter()
            .filter_map(|a| {
                let inc = self.states.get(a)?.incident.as_ref()?;
                Some((inc.started, a))
            })
            .min();
        if let Some((_, root)) = root {
            return Upstream::Down(root.clone());
        }
        let failing = ancestors.iter().find(|a| {
            let (Some(st), Some(policy)) = (self.states.get(*a), self.policies.get(*a)) else {
                return false;
            };
            // A flapping service, or one in maintenance, opens no incident: nothing to
            // wait for.
            !st.flapping && st.status(policy, now) == Status::Suspect
        });
        if let Some(a) = failing {
            return Upstream::Failing(a.clone());
        }
        // Failing here since `since`: has every probe of what it needs reported since
        // then? If not, and not for too long, wait for them.
        let Some(since) = failing_since else {
            return Upstream::Clear;
        };
        let unheard = ancestors.iter().find(|a| {
            let (Some((seen, interval)), Some(policy)) =
                (self.needed.get(*a), self.policies.get(*a))
            else {
                return false;
            };
            let waited = now.duration_since(since).unwrap_or_default();
            waited < *interval * 2
                && policy
                    .probes
                    .iter()
                    .any(|p| seen.get(p).is_none_or(|t| *t < since))
        });
        match unheard {
            Some(a) => Upstream::Failing(a.clone()),
            None => Upstream::Clear,
        }
    }

    /// Since when `service` fails: its earliest failing probe's first failure, counting a
    /// failed report about to be stepped (`failing_now`) as failing from `now`.
    fn failing_since(
        &self,
        service: &str,
        failing_now: bool,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let held = self
            .states
            .get(service)
            .and_then(|s| s.streaks.values().filter_map(|x| x.failing_since).min());
        match (held, failing_now) {
            (Some(t), _) => Some(t),
            (None, true) => Some(now),
            (None, false) => None,
        }
    }

    /// After `changed` stepped: every service that depends on it is told what its
    /// dependencies now look like, in dependency order, so a chain settles in one pass.
    fn propagate(&mut self, changed: &str, now: SystemTime) -> Result<(), EngineError> {
        if self.dependents.is_empty() {
            return Ok(());
        }
        for i in 0..self.dependents.len() {
            let d = self.dependents[i].clone();
            if d != changed && !self.ancestors(&d).iter().any(|a| a == changed) {
                continue;
            }
            if !self.policies.contains_key(&d) {
                continue;
            }
            let since = self.failing_since(&d, false, now);
            let upstream = self.upstream_of(&d, now, since);
            if self.states.get(&d).map(|s| &s.upstream) != Some(&upstream) {
                self.step_one(&d, Event::Upstream(upstream), now)?;
            }
        }
        Ok(())
    }

    /// A handle to this engine, for the tasks that talk to it once it runs.
    pub fn handle(&self) -> Handle {
        self.link.handle()
    }

    /// The engine task: takes reports, staff commands and a tick every second until the
    /// reports end, or `drain` fires, after which it decides every report still queued
    /// and returns (the App fires it once the scheduler and the recorder have stopped, so
    /// every result in flight is decided before the followers stop). A decision that
    /// cannot be stored is logged and taken again from the next report or tick; nothing
    /// is carried out that was not stored.
    pub async fn run(
        mut self,
        reports: &mut mpsc::Receiver<Report>,
        metrics: Arc<Metrics>,
        drain: CancellationToken,
    ) {
        let inbox = self.link.inbox.clone();
        let mut inbox = inbox.lock().await;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let result = tokio::select! {
                _ = drain.cancelled() => {
                    while let Ok(report) = reports.try_recv() {
                        if let Err(e) = self.report(&report) {
                            tracing::error!(error = %e, "incident engine: a decision could not be stored at shutdown; it is taken again after the restart");
                        }
                    }
                    self.write_hours(self.clock.now());
                    self.publish();
                    return;
                }
                r = reports.recv() => match r {
                    Some(report) => self.report(&report),
                    None => return,
                },
                Some(c) = inbox.recv() => {
                    self.take(c);
                    Ok(())
                }
                // Statuses also move without a decision (a first failed round, a
                // maintenance window starting): the tick publishes those.
                _ = tick.tick() => {
                    self.export(&metrics);
                    let r = self.tick();
                    self.publish();
                    r
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "incident engine: the decision could not be stored and will be taken again");
            }
        }
    }

    /// Writes the probe hours gathered so far; kept for the next try when the store fails
    /// (history is worth less than decisions: logged, never retried at once).
    pub fn write_hours(&mut self, now: SystemTime) {
        self.hours_written = Some(tokio::time::Instant::now());
        self.hours_new = false;
        if self.hours.is_empty() {
            return;
        }
        let rows = self.hours.take();
        let written = self.store.lock().add_probe_hours(&rows, now);
        if let Err(e) = written {
            tracing::warn!(error = %e, "the probe history could not be written; it is tried again in a minute");
            self.hours.put_back(rows);
        }
    }

    fn take(&mut self, c: Command) {
        match c {
            Command::Staff {
                service,
                event,
                reply,
            } => {
                let r = self.command(&service, event);
                // The asker may have gone (a dropped HTTP request); the decision stands.
                let _ = reply.send(r);
            }
            Command::Reconfigure(config) => self.reconfigure(&config),
        }
    }

    /// Publishes the snapshot when it differs from the last one.
    fn publish(&self) {
        let next = Snapshot {
            decisions: self.decisions,
            statuses: self.statuses(self.clock.now()),
            canary_down: self.canary_down,
        };
        self.link.snapshot.send_if_modified(|cur| {
            if **cur == next {
                false
            } else {
                *cur = Arc::new(next);
                true
            }
        });
    }

    /// Each configured service's figures for the metrics.
    pub fn export(&self, metrics: &crate::metrics::Metrics) {
        let now = self.clock.now();
        for (service, policy) in &self.policies {
            let Some(st) = self.states.get(service) else {
                continue;
            };
            let inc = st.incident.as_ref();
            metrics.service(&crate::metrics::ServiceFigures {
                service,
                status: st.status(policy, now),
                open: inc.is_some(),
                customer_phase: inc.is_some_and(|i| i.customer_phase),
                duration: inc
                    .and_then(|i| now.duration_since(i.started).ok())
                    .unwrap_or_default(),
                levels_sent: inc.map(|i| i.levels_sent).unwrap_or(0),
            });
        }
    }

    /// Every configured service's status at `now`.
    pub fn statuses(&self, now: SystemTime) -> std::collections::BTreeMap<String, Status> {
        self.policies
            .iter()
            .map(|(id, policy)| {
                let st = self.states.get(id).cloned().unwrap_or_default();
                (id.clone(), st.status(policy, now))
            })
            .collect()
    }

    pub fn state(&self, service: &str) -> Option<&ServiceState> {
        self.states.get(service)
    }

    /// Steps one service and saves the result, then the services that depend on it.
    fn apply(
        &mut self,
        service: &str,
        event: Event,
        now: SystemTime,
    ) -> Result<Vec<Action>, EngineError> {
        // A service that needs others looks at them first: a failure about to be counted
        // may have to wait for them.
        if self.depends_on.contains_key(service) {
            let failing_now = matches!(event, Event::Probe { ok: false, .. });
            let since = self.failing_since(service, failing_now, now);
            let upstream = self.upstream_of(service, now, since);
            if self.states.get(service).map(|s| &s.upstream) != Some(&upstream) {
                self.step_one(service, Event::Upstream(upstream), now)?;
            }
        }
        let reported = match (&event, self.needed.get_mut(service)) {
            (Event::Probe { probe, .. }, Some((seen, _))) => {
                seen.insert(probe.clone(), now);
                true
            }
            _ => false,
        };
        let before = self.states.get(service).map(Shape::of);
        let actions = self.step_one(service, event, now)?;
        // Something needs this service: a change of its shape, or any report (a
        // dependent may be waiting to hear from it), is passed on.
        if reported || self.states.get(service).map(Shape::of) != before {
            self.propagate(service, now)?;
        }
        Ok(actions)
    }

    /// Steps one service and saves the result; the in-memory state changes only once the
    /// transaction has committed.
    fn step_one(
        &mut self,
        service: &str,
        event: Event,
        now: SystemTime,
    ) -> Result<Vec<Action>, EngineError> {
        let policy = self
            .policies
            .get(service)
            .ok_or_else(|| EngineError::UnknownService(service.to_string()))?;
        let state = self
            .states
            .get(service)
            .cloned()
            .unwrap_or_else(ServiceState::new);
        // Whoever is on call now stands in each rotation's place: the machine sees
        // addresses, and remembers who it mailed.
        let (policy, paged) = on_call(policy, &self.rotations, &self.overrides, now);
        let (next, actions) = step(&state, &policy, event, now);
        // Streak counters change on every report; only what an incident depends on is
        // worth a transaction (a restart recounts the streaks from fresh results).
        let durable = !actions.is_empty()
            || next.incident != state.incident
            || next.next_id != state.next_id
            || next.flapping != state.flapping
            || next.canary_down != state.canary_down
            || next.last_window_end != state.last_window_end
            || next.upstream != state.upstream
            || next.attached != state.attached;
        if durable {
            // A service the running config no longer has is named by its id.
            let gone = Context {
                service_name: service.to_string(),
                ..self.monitor.clone()
            };
            let context = self.contexts.get(service).unwrap_or(&gone);
            // Most steps page nobody through a rotation: the context as it is.
            let context = if paged.is_empty() {
                std::borrow::Cow::Borrowed(context)
            } else {
                std::borrow::Cow::Owned(self.with_paged(context, &paged, &actions))
            };
            self.store
                .lock()
                .commit(service, &next, &actions, &context, now)?;
        }
        self.states.insert(service.to_string(), next);
        if !actions.is_empty() {
            for a in &actions {
                tracing::info!(service, decision = %a, "incident decision");
            }
            self.decisions += 1;
            self.publish();
        }
        Ok(actions)
    }

    /// A probe run finished.
    pub fn report(&mut self, r: &Report) -> Result<(), EngineError> {
        let now = self.clock.now();
        // The monitor's own trouble (no descriptor, buffer, port or disk left) says
        // nothing of the target: it counts toward no incident and no canary, and staff are
        // told once an hour while it lasts.
        if let Some(Reason::MonitorFault { cause, detail }) = &r.outcome.reason {
            let due = self
                .fault_told
                .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= FAULT_NOTICE_EVERY);
            if due {
                self.fault_told = Some(now);
                tracing::error!(
                    cause,
                    detail,
                    "a probe failed for want of the monitor's own resources: no incident opens from it"
                );
                self.tell_monitor_fault(&format!("{cause}: {detail}"), now)?;
            }
            return Ok(());
        }
        if !r.probe.canary {
            self.hours_new |= self.hours.add(
                &r.probe.service,
                r.outcome.at,
                r.outcome.success,
                r.outcome.duration,
            );
        }
        if r.probe.canary {
            self.canaries.insert(
                (r.probe.service.clone(), r.probe.name.clone()),
                Some(r.outcome.success),
            );
            // Down only when every configured canary has run and failed.
            let down =
                !self.canaries.is_empty() && self.canaries.values().all(|ok| *ok == Some(false));
            if down != self.canary_down {
                self.canary_down = down;
                if down {
                    tracing::error!(
                        "every canary probe fails: the monitor's own network is down; no incident opens and customers are told nothing"
                    );
                    self.tell_monitor_down(now)?;
                } else {
                    tracing::info!("canary probes succeed again");
                }
                let services: Vec<String> = self.policies.keys().cloned().collect();
                for s in services {
                    self.apply(&s, Event::Canary { down }, now)?;
                }
            }
        }
        self.apply(
            &r.probe.service,
            Event::Probe {
                probe: r.probe.name.clone(),
                ok: r.outcome.success,
                reason: r.outcome.reason.clone(),
                confirmed: r.confirmed,
            },
            now,
        )?;
        Ok(())
    }

    /// One mail to every first-level recipient: probes fail for want of the monitor's own
    /// resources (`what`), so what it does not see may be down.
    fn tell_monitor_fault(&mut self, what: &str, now: SystemTime) -> Result<(), EngineError> {
        let context = Context {
            canaries: vec![what.to_string()],
            ..self.monitor.clone()
        };
        self.tell_staff(crate::incident::StaffMailKind::MonitorFault, &context, now)
    }

    /// One mail to every first-level recipient: the monitor cannot see, so silence from it
    /// means nothing until its canaries pass again.
    fn tell_monitor_down(&mut self, now: SystemTime) -> Result<(), EngineError> {
        let context = self.monitor.clone();
        self.tell_staff(crate::incident::StaffMailKind::MonitorDown, &context, now)
    }

    /// A notice of `kind` to every first-level recipient of every policy, once each.
    fn tell_staff(
        &mut self,
        kind: crate::incident::StaffMailKind,
        context: &Context,
        now: SystemTime,
    ) -> Result<(), EngineError> {
        let mut to: Vec<String> = Vec::new();
        let mut paged = Vec::new();
        for p in self.policies.values() {
            let (p, mut named) = on_call(p, &self.rotations, &self.overrides, now);
            for addr in p.levels.first().iter().flat_map(|l| l.to.iter()) {
                if !to.contains(addr) {
                    to.push(addr.clone());
                }
            }
            paged.append(&mut named);
        }
        if to.is_empty() {
            return Ok(());
        }
        let action = Action::MailStaff {
            id: None,
            kind,
            level: 0,
            to,
        };
        let context = self.with_paged(context, &paged, std::slice::from_ref(&action));
        self.store.lock().enqueue(&action, &context, now)?;
        self.decisions += 1;
        self.publish();
        Ok(())
    }

    /// The overrides from the store; on failure the last ones read stay (logged).
    fn reload_overrides(&mut self) {
        if self.rotations.is_empty() {
            return;
        }
        match self.store.lock().overrides(self.clock.now()) {
            Ok(o) => self.overrides = o,
            Err(e) => {
                tracing::error!(error = %e, "on-call overrides cannot be read; the last ones read stay in force")
            }
        }
    }

    /// `context` with a line for each rotation that put someone on call in a level that
    /// `actions` mail.
    fn with_paged(
        &self,
        context: &Context,
        paged: &[(usize, crate::oncall::Shift)],
        actions: &[Action],
    ) -> Context {
        let mut context = context.clone();
        for a in actions {
            if let Action::MailStaff { level, kind, .. } = a {
                // A notice that belongs to no incident goes to every policy's first level.
                let first = matches!(
                    kind,
                    crate::incident::StaffMailKind::MonitorDown
                        | crate::incident::StaffMailKind::MonitorFault
                        | crate::incident::StaffMailKind::TaskRestarted
                        | crate::incident::StaffMailKind::Locations
                );
                for (l, shift) in paged {
                    // Hand-offs in the rotation's own zone, where its members live.
                    let zone = self
                        .rotations
                        .get(&shift.rotation)
                        .map(|r| r.timezone.name())
                        .unwrap_or(&self.staff_zone);
                    let line = shift.explain(zone);
                    if (*l == *level || first && *l == 0) && !context.oncall.contains(&line) {
                        context.oncall.push(line);
                    }
                }
            }
        }
        context
    }

    /// Time passed: escalation levels and the customer threshold fall due.
    pub fn tick(&mut self) -> Result<(), EngineError> {
        self.reload_overrides();
        let now = self.clock.now();
        if self.hours_new
            || self
                .hours_written
                .is_none_or(|t| t.elapsed() >= HOURS_EVERY)
        {
            self.write_hours(now);
        }
        let open: Vec<String> = self
            .states
            .iter()
            .filter(|(s, st)| st.incident.is_some() && self.policies.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        for s in open {
            self.apply(&s, Event::Tick, now)?;
        }
        Ok(())
    }

    /// A staff command on the open incident of `service`.
    pub fn command(&mut self, service: &str, event: Event) -> Result<Vec<Action>, EngineError> {
        let now = self.clock.now();
        if !self.policies.contains_key(service) {
            return Err(EngineError::UnknownService(service.to_string()));
        }
        if self
            .states
            .get(service)
            .and_then(|s| s.incident.as_ref())
            .is_none()
        {
            return Err(EngineError::NoIncident(service.to_string()));
        }
        if let Event::Eta { eta, .. } = &event {
            if *eta <= now {
                return Err(EngineError::EtaInPast);
            }
        }
        self.apply(service, event, now)
    }
}

/// `policy` with whoever is on call at `now` in each `rotation:NAME` of its levels (the
/// policy itself when it names no rotation), and each level's shifts that did so.
fn on_call<'p>(
    policy: &'p Policy,
    rotations: &BTreeMap<String, crate::oncall::Rotation>,
    overrides: &[crate::oncall::Override],
    now: SystemTime,
) -> (
    std::borrow::Cow<'p, Policy>,
    Vec<(usize, crate::oncall::Shift)>,
) {
    use crate::oncall::Target;
    let named = |t: &String| matches!(Target::parse(t), Target::Rotation(_));
    if !policy.levels.iter().any(|l| l.to.iter().any(named)) {
        return (std::borrow::Cow::Borrowed(policy), Vec::new());
    }
    let mut resolved = policy.clone();
    let mut paged = Vec::new();
    for (i, level) in resolved.levels.iter_mut().enumerate() {
        let mut to: Vec<String> = Vec::new();
        for t in &level.to {
            let who = match Target::parse(t) {
                Target::Rotation(name) => match rotations.get(name) {
                    Some(r) => {
                        let shift = r.on_call(overrides, now);
                        let who = shift.who.clone();
                        paged.push((i, shift));
                        who
                    }
                    // A rotation the running config no longer has (the decision was
                    // taken under an older one): nobody to put in its place.
                    None => continue,
                },
                _ => t.clone(),
            };
            if !who.is_empty() && !to.contains(&who) {
                to.push(who);
            }
        }
        level.to = to;
    }
    (std::borrow::Cow::Owned(resolved), paged)
}

/// What services that depend on a service look at: whether it has an incident, fails,
/// flaps, or is attached to another's incident.
#[derive(PartialEq)]
struct Shape(bool, bool, bool, bool);

impl Shape {
    fn of(s: &ServiceState) -> Shape {
        Shape(
            s.incident.is_some(),
            s.streaks.values().any(|x| x.fails > 0),
            s.flapping,
            s.attached.is_some(),
        )
    }
}

/// Everything `service` needs in `depends_on`, directly or through a chain, nearest
/// first.
fn chain(depends_on: &BTreeMap<String, Vec<String>>, service: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut queue: std::collections::VecDeque<&str> = std::collections::VecDeque::new();
    queue.push_back(service);
    while let Some(s) = queue.pop_front() {
        for d in depends_on.get(s).into_iter().flatten() {
            if d != service && !out.contains(d) {
                out.push(d.clone());
                queue.push_back(d);
            }
        }
    }
    out
}

/// The services in `depends_on` (those that need something), each after everything it
/// needs (the config refuses cycles; a service left in one is put last).
fn needed_first(depends_on: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut left: Vec<&String> = depends_on.keys().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|s| {
            let ready = depends_on[*s]
                .iter()
                .all(|d| !depends_on.contains_key(d) || out.contains(d));
            if ready {
                out.push((*s).clone());
            }
            !ready
        });
        if left.len() == before {
            out.extend(left.drain(..).cloned());
        }
    }
    out
}
