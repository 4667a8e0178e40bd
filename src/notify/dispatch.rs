//! The dispatcher: takes due actions from the outbox, carries them out, and marks each
//! done, to be retried (transient failure, with backoff) or failed (permanent). A crash
//! between sending and marking can repeat one message; nothing is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::campaign::{self, PlanError, Planned};
use crate::clock::Clock;
use crate::config::{Config, LiveConfig};
use crate::engine::Snapshot;
use crate::incident::{Action, StaffMailKind, TimelineEvent};
use crate::metrics::Metrics;
use crate::store::{OutboxItem, SharedStore};

use super::mail::{MailError, Mailer};
use super::staff::{ActionLinks, StaffNotice, render, render_notice};
use crate::links::{Link, LinkAction, Signer, expiry};

const BATCH: usize = 50;
const IDLE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Dispatcher {
    pub store: SharedStore,
    pub mailer: Arc<Mailer>,
    pub config: LiveConfig,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The engine's snapshot: a new decision may have queued work.
    pub engine: watch::Receiver<Arc<Snapshot>>,
    /// Signs the ack and ETA links in staff mails.
    pub signer: Arc<Signer>,
    /// Woken when a campaign is created.
    pub campaign_ready: Arc<Notify>,
    /// Woken when a placeholder may have to change.
    pub pages_ready: Arc<Notify>,
}

/// Backoff after `attempts` transient failures: 30 s, 1 min, 2 min, ... up to 15 min.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(30u64.saturating_mul(1u64 << attempts.min(5))).min(Duration::from_secs(900))
}

impl Dispatcher {
    /// Runs until `cancel`; the item in hand is finished first.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.drain().await {
                tracing::error!(error = %e, "outbox: cannot read the store");
            }
            if !super::pause(&cancel, &mut self.engine, None, IDLE).await {
                return;
            }
        }
    }

    /// Carries out every action due now.
    pub async fn drain(&self) -> Result<(), crate::store::StoreError> {
        loop {
            let due = self.store.lock().due(self.clock.now(), BATCH)?;
            if due.is_empty() {
                break;
            }
            for item in due {
                self.carry_out(item).await?;
            }
        }
        self.metrics
            .outbox_pending(self.store.lock().pending_count()?);
        Ok(())
    }

    async fn carry_out(&self, item: OutboxItem) -> Result<(), crate::store::StoreError> {
        let now = self.clock.now();
        let config = self.config.get();
        if matches!(
            item.action,
            Action::CustomerPhase { .. }
                | Action::CustomerUpdate { .. }
                | Action::Resolve {
                    customers: true,
                    ..
                }
        ) {
            self.pages_ready.notify_one();
            let planned = campaign::plan(&mut **self.store.lock(), &config, &item, now);
            match planned {
                Ok(Planned::Campaign(id)) => {
                    tracing::info!(service = %item.service, campaign = id, "customer campaign ready");
                    self.campaign_ready.notify_one();
                }
                Ok(Planned::ShortOfCodes { id, missing, pool }) => {
                    self.campaign_ready.notify_one();
                    self.codes_ran_out(&config, &item, id, missing, &pool)
                        .await?;
                }
                Ok(Planned::Nothing) => {}
                Err(PlanError::Store(e)) => return Err(e),
                Err(PlanError::Transient(e)) => {
                    let retry = backoff(item.attempts);
                    tracing::error!(service = %item.service, error = %e, retry_in = ?retry, "customer campaign cannot be planned yet");
                    return self.store.lock().mark_retry(item.id, &e, now + retry);
                }
                Err(PlanError::Refused(e)) => {
                    self.metrics.campaign_refused();
                    tracing::error!(service = %item.service, error = %e, "customer campaign refused");
                    if !matches!(item.action, Action::Resolve { .. }) {
                        return self.store.lock().mark_failed(item.id, &e, now);
                    }
                }
            }
        }
        let mail = match self.staff_mail(&config, &item) {
            Some(m) => m,
            None => {
                // Nothing for staff (customer-side actions, a resolution nobody was
                // mailed about): recorded, and done as far as this dispatcher goes.
                self.store.lock().mark_done(item.id, now)?;
                return Ok(());
            }
        };
        let (kind, outgoing) = mail;
        match self.mailer.send(&outgoing).await {
            Ok(()) => {
                self.metrics.mail_sent(kind);
                tracing::info!(service = %item.service, kind, to = %outgoing.to.join(", "), "staff mail sent");
                self.store.lock().mark_done(item.id, self.clock.now())
            }
            Err(MailError::Transient(e)) | Err(MailError::Config(e)) => {
                self.metrics.mail_failed(kind);
                let retry = backoff(item.attempts);
                tracing::warn!(service = %item.service, kind, error = %e, retry_in = ?retry, "staff mail failed; will retry");
                self.store
                    .lock()
                    .mark_retry(item.id, &e, self.clock.now() + retry)
            }
            Err(MailError::Permanent(e)) => {
                self.metrics.mail_failed(kind);
                tracing::error!(service = %item.service, kind, error = %e, "staff mail failed permanently");
                self.store.lock().mark_failed(item.id, &e, self.clock.now())
            }
        }
    }

    /// The recovery campaign could not give every recipient a compensation code: counted,
    /// written into the timeline, and told to staff once per incident. The mails go out
    /// without a code (the templates show the code only when there is one).
    async fn codes_ran_out(
        &self,
        config: &Config,
        item: &OutboxItem,
        campaign: i64,
        missing: u64,
        pool: &std::path::Path,
    ) -> Result<(), crate::store::StoreError> {
        let Some(incident) = item.incident else {
            return Ok(());
        };
        let now = self.clock.now();
        let event = TimelineEvent::CompensationShort {
            campaign,
            missing,
            pool: pool.display().to_string(),
        };
        let detail = event.detail();
        if !self.store.lock().note_once(incident, &event, now)? {
            return Ok(());
        }
        self.metrics.compensation_missing(missing);
        tracing::error!(service = %item.service, campaign, missing, pool = %pool.display(), "compensation codes ran out");
        let service = config.services.iter().find(|s| s.id == item.service);
        let name = service.map(|s| s.name.as_str()).unwrap_or(&item.service);
        let mut to = match &item.action {
            Action::Resolve { staff, .. } => staff.clone(),
            _ => Vec::new(),
        };
        if to.is_empty() {
            to = service
                .map(|s| config.policy(s))
                .and_then(|p| p.levels.first().map(|l| l.to.clone()))
                .unwrap_or_default();
        }
        if to.is_empty() {
            return Ok(());
        }
        let text = format!(
            "The recovery mail for {name} is going out now.\n\n{detail}.\n\nThe outage lasted long enough to earn compensation, so every customer told of it should get a code. Those without one can be sent a code by hand: `tocsin campaign status {campaign}` lists the campaign.\n"
        );
        let mail = super::mail::Outgoing {
            to,
            subject: format!("[tocsin] {name}: compensation codes ran out"),
            html: format!("<pre>{}</pre>", crate::text::html::escape(&text)),
            text,
            headers: vec![("Auto-Submitted", "auto-generated".into())],
            message_id: None,
        };
        match self.mailer.send(&mail).await {
            Ok(()) => self.metrics.mail_sent("staff_compensation"),
            Err(e) => {
                self.metrics.mail_failed("staff_compensation");
                tracing::error!(error = %e, "cannot tell staff that compensation codes ran out");
            }
        }
        Ok(())
    }

    fn staff_mail(
        &self,
        config: &Config,
        item: &OutboxItem,
    ) -> Option<(&'static str, super::mail::Outgoing)> {
        if let (None, Action::MailStaff { kind, to, .. }) = (item.incident, &item.action) {
            let name = config
                .services
                .iter()
                .find(|s| s.id == item.service)
                .map(|s| s.name.as_str());
            let canaries: Vec<String> = config
                .probes()
                .filter(|p| p.canary)
                .map(|p| format!("{}/{}", p.service, p.name))
                .collect();
            let k = if *kind == StaffMailKind::MonitorDown {
                "staff_monitor_down"
            } else {
                "staff_flapping"
            };
            return Some((
                k,
                render_notice(*kind, name, &canaries, to.clone(), self.clock.now()),
            ));
        }
        let service = config.services.iter().find(|s| s.id == item.service)?;
        let policy = config.policy(service);
        let incident = self.store.lock().incident(item.incident?).ok()??;
        let now = self.clock.now();
        match &item.action {
            Action::MailStaff {
                kind, level, to, ..
            } => {
                let link = |action| {
                    let l = Link {
                        incident: incident.id,
                        action,
                        expires: expiry(now),
                        recipient: to.join(", "),
                    };
                    self.signer.url(&config.public_url, &l)
                };
                let links = ActionLinks {
                    ack: link(LinkAction::Ack),
                    eta: link(LinkAction::Eta),
                };
                let k = match kind {
                    StaffMailKind::Opened => "staff_opened",
                    StaffMailKind::Escalated => "staff_escalated",
                    StaffMailKind::Flapping => "staff_flapping",
                    StaffMailKind::MonitorDown => "staff_monitor_down",
                };
                Some((
                    k,
                    render(
                        &service.name,
                        &policy,
                        &incident,
                        &StaffNotice::Level {
                            kind: *kind,
                            level: *level,
                        },
                        to.clone(),
                        Some(&links),
                        now,
                    ),
                ))
            }
            Action::Resolve {
                staff, ended, by, ..
            } if !staff.is_empty() => Some((
                "staff_resolved",
                render(
                    &service.name,
                    &policy,
                    &incident,
                    &StaffNotice::Resolved {
                        ended: *ended,
                        by: by.as_deref(),
                    },
                    staff.clone(),
                    None,
                    now,
                ),
            )),
            _ => None,
        }
    }
}
