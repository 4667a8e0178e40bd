//! Planned maintenance notices: each window (from probes.yaml or the API) is announced to
//! its service's audience at each `announce_before` offset, and once it has ended with
//! the service working, those told get a "completed" notice. If the service is still
//! failing when the window ends, no "completed" notice goes out: the incident, timed
//! from the window's end, takes over.
//!
//! Level-triggered: every pass compares the windows with the notices recorded in the
//! store; a notice and its campaign are created in one transaction, so a restart never
//! sends one twice. Offsets that fall due together (a window added an hour before it
//! starts, with `announce_before: [48h, 1h]`) give one notice, the latest.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audience;
use crate::clock::Clock;
use crate::config::{Config, LiveConfig, Maintenance};
use crate::engine::Handle;
use crate::incident::Status;
use crate::store::{NewRecipient, Notice, SharedStore};

const PERIOD: Duration = Duration::from_secs(10);
/// A window that ended longer ago than this gets no completion notice (tocsin was down
/// at the time; "complete" would be news from yesterday).
const STALE: Duration = Duration::from_secs(6 * 3600);

#[derive(Clone)]
pub struct Planner {
    pub store: SharedStore,
    pub engine: Handle,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    /// Woken by the API when a window is added or cancelled.
    pub ready: Arc<Notify>,
    /// Woken when a campaign was created.
    pub campaign_ready: Arc<Notify>,
}

impl Planner {
    pub async fn run(self, cancel: CancellationToken) {
        let mut engine = self.engine.subscribe();
        loop {
            if let Err(e) = self.pass() {
                tracing::error!(error = %e, "maintenance: cannot plan notices");
            }
            if !super::pause(&cancel, &mut engine, Some(&self.ready), PERIOD).await {
                return;
            }
        }
    }

    /// One pass over every window.
    pub fn pass(&self) -> Result<(), String> {
        let config = self.config.get();
        let now = self.clock.now();
        for m in &config.maintenance {
            if now < m.start {
                self.announce(&config, m, now)?;
            } else if now >= m.end() {
                self.complete(&config, m, now)?;
            }
        }
        Ok(())
    }

    fn announce(&self, config: &Config, m: &Maintenance, now: SystemTime) -> Result<(), String> {
        let mut due: Vec<Duration> = m
            .announce_before
            .iter()
            .copied()
            .filter(|o| now + *o >= m.start)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort();
        let recorded: Vec<String> = self
            .store
            .lock()
            .notices(&m.key())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let pending: Vec<Duration> = due
            .into_iter()
            .filter(|o| !recorded.contains(&format!("before:{}", o.as_secs())))
            .collect();
        let Some(chosen) = pending.first().copied() else {
            return Ok(());
        };
        let skipped: Vec<Notice> = pending[1..].iter().map(|o| Notice::Before(*o)).collect();
        let (name, recipients, invalid) = match self.audience(config, &m.service) {
            Ok(Some(a)) => a,
            // No audience: nothing to announce, and nothing to remember.
            Ok(None) => return Ok(()),
            Err(e) => {
                // Refused (too large) or unreadable: said once, and this notice is
                // recorded as not sent so that it is not retried every pass.
                tracing::error!(service = %m.service, window = %m.key(), error = %e, "maintenance notice not sent");
                let mut all = skipped;
                all.push(Notice::Before(chosen));
                return self
                    .store
                    .lock()
                    .maintenance_not_sent(m, &all, now)
                    .map_err(|e| e.to_string());
            }
        };
        let made = self
            .store
            .lock()
            .maintenance_campaign(
                m,
                &Notice::Before(chosen),
                &skipped,
                &name,
                &recipients,
                invalid,
                now,
            )
            .map_err(|e| e.to_string())?;
        if let Some(id) = made {
            tracing::info!(service = %m.service, window = %m.key(), before = %humantime::format_duration(chosen), campaign = id, "maintenance notice ready");
            self.campaign_ready.notify_one();
        }
        Ok(())
    }

    fn complete(&self, config: &Config, m: &Maintenance, now: SystemTime) -> Result<(), String> {
        if now > m.end() + STALE {
            return Ok(());
        }
        let notices = self
            .store
            .lock()
            .notices(&m.key())
            .map_err(|e| e.to_string())?;
        let announced = notices
            .iter()
            .any(|(n, c)| n.starts_with("before:") && c.is_some());
        if !announced || notices.iter().any(|(n, _)| n == "completed") {
            return Ok(());
        }
        // Give the probes the rounds an incident would need before judging the service.
        let Some(service) = config.services.iter().find(|s| s.id == m.service) else {
            return Ok(());
        };
        if now < m.end() + service.longest_interval() * (service.failure_threshold + 1) {
            return Ok(());
        }
        let status = self.engine.snapshot().status(&m.service);
        if status != Status::Up {
            tracing::warn!(service = %m.service, window = %m.key(), ?status, "maintenance ended with the service failing: no completion notice; the incident takes over");
            return self
                .store
                .lock()
                .maintenance_superseded(m, now)
                .map_err(|e| e.to_string());
        }
        let name = service.audience.clone().unwrap_or_default();
        let made = self
            .store
            .lock()
            .maintenance_campaign(m, &Notice::Completed, &[], &name, &[], 0, now)
            .map_err(|e| e.to_string())?;
        if let Some(id) = made {
            tracing::info!(service = %m.service, window = %m.key(), campaign = id, "maintenance completion notice ready");
            self.campaign_ready.notify_one();
        }
        Ok(())
    }

    /// The service's audience: followers, with how many rows were invalid. `None`
    /// without an audience. A campaign over `max_campaign_size` is refused.
    fn audience(
        &self,
        config: &Config,
        service: &str,
    ) -> Result<Option<(String, Vec<NewRecipient>, u64)>, String> {
        let Some(s) = config.services.iter().find(|s| s.id == service) else {
            return Ok(None);
        };
        let subscribers = self
            .store
            .lock()
            .subscribers_of(service)
            .map_err(|e| e.to_string())?;
        let file = s
            .audience
            .as_ref()
            .and_then(|n| config.audiences.get(n).map(|a| (n.clone(), a)));
        let (name, mut recipients, invalid) = match file {
            Some((name, a)) => {
                let ids: Vec<String> = config.services.iter().map(|s| s.id.clone()).collect();
                let loaded = audience::load(a, &ids)?;
                let invalid = loaded.errors.len() as u64;
                let rows: Vec<NewRecipient> = loaded
                    .recipients
                    .into_iter()
                    .filter(|r| r.follows(service))
                    .map(crate::audience::Recipient::into_row)
                    .collect();
                (name, rows, invalid)
            }
            None if !subscribers.is_empty() => (audience::SUBSCRIBERS.to_string(), Vec::new(), 0),
            None => return Ok(None),
        };
        // Subscribers from the status page join the file's followers, each address once.
        let mut seen: std::collections::HashSet<String> = recipients
            .iter()
            .map(|r| crate::store::address_key(&r.email))
            .collect();
        recipients.extend(
            subscribers
                .into_iter()
                .filter(|r| seen.insert(crate::store::address_key(&r.email))),
        );
        if recipients.len() as u64 > config.mail.max_campaign_size {
            return Err(format!(
                "maintenance notice for {service}: audience `{name}` has {} recipients, more than mail.max_campaign_size ({}); not sent",
                recipients.len(),
                config.mail.max_campaign_size
            ));
        }
        Ok(Some((name, recipients, invalid)))
    }
}
