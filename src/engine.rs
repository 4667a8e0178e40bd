//! The incident engine: feeds probe reports, staff commands and the passing of time to
//! each service's state machine, and saves every step (state and decided actions) in one
//! store transaction before anything is carried out. It owns the machines' states; the
//! dispatcher reads the outbox the engine fills.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::incident::{Action, Event, Policy, ServiceState, Status, step};
use crate::scheduler::Report;
use crate::store::{SqliteStore, StoreError};

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
}

pub struct Engine {
    policies: BTreeMap<String, Policy>,
    states: BTreeMap<String, ServiceState>,
    /// Latest result of each configured canary probe (service, probe); None before its
    /// first run.
    canaries: BTreeMap<(String, String), Option<bool>>,
    canary_down: bool,
    store: Arc<Mutex<SqliteStore>>,
    clock: Arc<dyn Clock>,
    /// Woken whenever new actions are in the outbox.
    pub outbox_ready: Arc<Notify>,
    /// Woken after every decision (the pages follow incidents as they change).
    pub decided: Arc<Notify>,
    /// Counts decisions, for every other follower of incidents (autoresponder, hotline):
    /// each watches it with its own receiver.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Shared with the campaign sender, which starts nothing while it is true.
    pub canary_guard: Arc<std::sync::atomic::AtomicBool>,
    /// Incident webhooks, queued with each decision.
    webhooks: Vec<crate::store::HookTarget>,
    names: BTreeMap<String, String>,
    /// Woken when webhook deliveries are queued.
    pub webhooks_ready: Arc<Notify>,
}

impl Engine {
    /// Resumes from the store: open incidents keep their start and escalation progress.
    pub fn new(
        config: &Config,
        store: Arc<Mutex<SqliteStore>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine, StoreError> {
        let mut states = lock(&store).load()?;
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
            store,
            clock,
            outbox_ready: Arc::new(Notify::new()),
            decided: Arc::new(Notify::new()),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            canary_guard: Arc::default(),
            webhooks: Vec::new(),
            names: BTreeMap::new(),
            webhooks_ready: Arc::new(Notify::new()),
        };
        engine.reconfigure(config);
        Ok(engine)
    }

    /// Takes a reloaded config: new services start fresh, removed ones are kept in the
    /// store but no longer stepped.
    pub fn reconfigure(&mut self, config: &Config) {
        self.policies = config
            .services
            .iter()
            .map(|s| (s.id.clone(), Policy::of(config, s)))
            .collect();
        for id in self.policies.keys() {
            self.states.entry(id.clone()).or_default();
        }
        self.webhooks = config
            .webhooks
            .iter()
            .map(|w| crate::store::HookTarget {
                url: w.url.to_string(),
                events: w.events.clone(),
            })
            .collect();
        self.names = config
            .services
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        let configured: Vec<(String, String)> = config
            .probes()
            .filter(|p| p.canary)
            .map(|p| (p.service.clone(), p.name.clone()))
            .collect();
        self.canaries.retain(|k, _| configured.contains(k));
        for k in configured {
            self.canaries.entry(k).or_insert(None);
        }
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

    pub fn policy(&self, service: &str) -> Option<&Policy> {
        self.policies.get(service)
    }

    /// Steps one service and saves the result; the in-memory state changes only once the
    /// transaction has committed.
    fn apply(
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
        let (next, actions) = step(&state, policy, event, now);
        // Streak counters change on every report; only what an incident depends on is
        // worth a transaction (a restart recounts the streaks from fresh results).
        let durable = !actions.is_empty()
            || next.incident != state.incident
            || next.next_id != state.next_id
            || next.flapping != state.flapping
            || next.canary_down != state.canary_down
            || next.last_window_end != state.last_window_end;
        if durable {
            let hooks = crate::store::Hooks {
                service_name: self
                    .names
                    .get(service)
                    .map(String::as_str)
                    .unwrap_or(service),
                targets: &self.webhooks,
            };
            lock(&self.store).commit_hooked(service, &next, &actions, now, &hooks)?;
        }
        self.states.insert(service.to_string(), next);
        if !actions.is_empty() {
            for a in &actions {
                tracing::info!(service, action = ?a, "incident decision");
            }
            self.outbox_ready.notify_one();
            self.decided.notify_one();
            self.webhooks_ready.notify_one();
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(actions)
    }

    /// A probe run finished.
    pub fn report(&mut self, r: &Report) -> Result<(), EngineError> {
        let now = self.clock.now();
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
                self.canary_guard
                    .store(down, std::sync::atomic::Ordering::Relaxed);
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
                reason: r.outcome.reason.as_ref().map(|x| x.to_string()),
            },
            now,
        )?;
        Ok(())
    }

    /// One mail to every first-level recipient: the monitor cannot see, so silence from it
    /// means nothing until its canaries pass again.
    fn tell_monitor_down(&mut self, now: SystemTime) -> Result<(), EngineError> {
        let mut to: Vec<String> = Vec::new();
        for addr in self
            .policies
            .values()
            .filter_map(|p| p.levels.first())
            .flat_map(|l| l.to.iter())
        {
            if !to.contains(addr) {
                to.push(addr.clone());
            }
        }
        if to.is_empty() {
            return Ok(());
        }
        let action = Action::MailStaff {
            id: None,
            kind: crate::incident::StaffMailKind::MonitorDown,
            level: 0,
            to,
        };
        let hooks = crate::store::Hooks {
            service_name: "",
            targets: &self.webhooks,
        };
        lock(&self.store).enqueue_hooked(&action, now, &hooks)?;
        self.outbox_ready.notify_one();
        self.webhooks_ready.notify_one();
        Ok(())
    }

    /// Time passed: escalation levels and the customer threshold fall due.
    pub fn tick(&mut self) -> Result<(), EngineError> {
        let now = self.clock.now();
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

pub(crate) fn lock(store: &Mutex<SqliteStore>) -> std::sync::MutexGuard<'_, SqliteStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}
