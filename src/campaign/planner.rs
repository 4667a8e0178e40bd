//! The campaign notifier: turns a customer-side decision (customer phase, update,
//! recovery) into a campaign the sender then works through, and tells staff when the
//! recovery campaign ran out of compensation codes.

use std::sync::Arc;

use tokio::sync::Notify;

use super::{PlanError, Planned, plan};
use crate::clock::Clock;
use crate::config::LiveConfig;
use crate::incident::{Action, TimelineEvent};
use crate::metrics::Metrics;
use crate::notify::dispatch::{Backoff, Notifier, Outcome};
use crate::notify::mail::Mailer;
use crate::store::{Channel, Delivery, OutboxItem, SharedStore, StoreError};

pub struct Campaigns {
    pub store: SharedStore,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Staff mail: the notice that compensation codes ran out.
    pub staff_mail: Arc<Mailer>,
    /// Woken when a campaign is ready to send.
    pub campaign_ready: Arc<Notify>,
    /// Woken when a placeholder may have to change.
    pub pages_ready: Arc<Notify>,
}

#[async_trait::async_trait]
impl Notifier for Campaigns {
    fn channel(&self) -> Channel {
        Channel::Campaign
    }

    fn wants(&self, decision: &OutboxItem) -> bool {
        matches!(
            decision.action,
            Action::CustomerPhase { .. }
                | Action::CustomerUpdate { .. }
                | Action::Posted {
                    customers: true,
                    ..
                }
                | Action::Resolve {
                    customers: true,
                    ..
                }
                | Action::AlsoAffected { affected: true, .. }
        )
    }

    fn backoff(&self) -> Backoff {
        Backoff::MAIL
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        let Some(item) = &d.decision else {
            return Outcome::Failed("the delivery has no decision".into());
        };
        self.pages_ready.notify_one();
        let config = self.config.get();
        let now = self.clock.now();
        // A campaign of a million rows takes seconds to expand: off the runtime's threads.
        let (store, owned) = (self.store.clone(), item.clone());
        let planned =
            match tokio::task::spawn_blocking(move || plan(&store, &config, &owned, now)).await {
                Ok(planned) => planned,
                Err(e) => return Outcome::Retry(format!("planning the campaign stopped: {e}")),
            };
        match planned {
            Ok(Planned::Campaign(id)) => {
                tracing::info!(service = %item.service, campaign = id, "customer campaign ready");
                self.campaign_ready.notify_one();
                Outcome::Done
            }
            Ok(Planned::ShortOfCodes { id, missing, pool }) => {
                self.campaign_ready.notify_one();
                if let Err(e) = self.codes_ran_out(item, id, missing, &pool).await {
                    return Outcome::Retry(format!("cannot note the missing codes: {e}"));
                }
                Outcome::Done
            }
            Ok(Planned::Nothing) => Outcome::Done,
            Ok(Planned::Later(wait)) => {
                Outcome::RetryAfter("the incident's customers are not told yet".into(), wait)
            }
            Err(PlanError::Store(e)) => {
                tracing::error!(service = %item.service, error = %e, "customer campaign: cannot write to the store; will retry");
                Outcome::Retry(format!("store: {e}"))
            }
            Err(PlanError::Transient(e)) => {
                let retry_in = self.backoff().after(d.attempts);
                tracing::error!(service = %item.service, error = %e, ?retry_in, "customer campaign cannot be planned yet");
                Outcome::Retry(e)
            }
            Err(PlanError::Refused(e)) => {
                self.metrics.campaign_refused();
                tracing::error!(service = %item.service, error = %e, "customer campaign refused");
                // A refused recovery campaign leaves nothing to take back: the outage
                // mail it would follow was refused too.
                if matches!(item.action, Action::Resolve { .. }) {
                    Outcome::Done
                } else {
                    Outcome::Failed(e)
                }
            }
        }
    }
}

impl Campaigns {
    /// The recovery campaign could not give every recipient a compensation code: counted,
    /// written into the timeline, and told to staff once per incident. The mails go out
    /// without a code (the templates show the code only when there is one).
    async fn codes_ran_out(
        &self,
        item: &OutboxItem,
        campaign: i64,
        missing: u64,
        pool: &std::path::Path,
    ) -> Result<(), StoreError> {
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
        let config = self.config.get();
        let context = item.context.clone().unwrap_or_else(|| {
            config.context(config.services.iter().find(|s| s.id == item.service))
        });
        let name = if context.service_name.is_empty() {
            item.service.as_str()
        } else {
            context.service_name.as_str()
        };
        let mut to = match &item.action {
            Action::Resolve { staff, .. } => staff.clone(),
            _ => Vec::new(),
        };
        if to.is_empty() {
            to = context
                .levels
                .first()
                .map(|l| l.to.clone())
                .unwrap_or_default();
        }
        if to.is_empty() {
            return Ok(());
        }
        let mail = crate::notify::staff::compensation_short(name, &detail, campaign, to);
        match self.staff_mail.send(&mail).await {
            Ok(()) => self.metrics.mail_sent("staff_compensation"),
            Err(e) => {
                self.metrics.mail_failed("staff_compensation");
                tracing::error!(error = %e, "cannot tell staff that compensation codes ran out");
            }
        }
        Ok(())
    }
}
