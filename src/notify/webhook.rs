//! Incident webhooks: every transition (opened, escalated, acknowledged, ETA, customer
//! phase, update, resolved, flapping, monitor down) POSTed as JSON to each receiver that
//! wants it, signed with HMAC-SHA256 so the receiver can tell it came from tocsin.
//!
//! The dispatcher fans each decision out into one delivery per receiver that wants its
//! event; this notifier carries one out: 2xx closes it, 408, 429, 5xx and network errors
//! are retried ([`Backoff::QUICK`]), any other answer is final (logged, counted, and
//! written into the incident's timeline); a 429 with `Retry-After` waits as long as it asks. The body is built from the decision as it was
//! decided, so a receiver sees the same body and delivery id on every retry and can drop
//! repeats.

use std::sync::Arc;

use serde_json::json;

use super::dispatch::{Backoff, Notifier, Outcome};
use super::http::{DEADLINE, answer, signature, transport};
use crate::config::{Config, LiveConfig};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{Channel, Delivery, OutboxItem};

/// Every configured receiver's key must be in the environment: checked at start-up.
pub fn check_secrets(config: &Config) -> Result<(), String> {
    for w in &config.webhooks {
        if w.secret.is_none() {
            return Err(format!(
                "webhook {}: set the environment variable {} (its signing key, named by secret_env)",
                w.url, w.secret_env
            ));
        }
    }
    Ok(())
}

/// The JSON a receiver gets for `decision`: `None` when its action is no webhook event.
pub fn body(decision: &OutboxItem) -> Option<(&'static str, String)> {
    let event = decision.action.event()?.as_str();
    let service = decision.service.as_str();
    let name = decision
        .context
        .as_ref()
        .map(|c| c.service_name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(service);
    let body = json!({
        "event": event,
        "service": (!service.is_empty()).then_some(service),
        "service_name": (!service.is_empty()).then_some(name),
        "incident": decision.incident,
        "at": crate::text::time::rfc3339(decision.decided),
        "action": &decision.action,
    });
    Some((event, body.to_string()))
}

/// POSTs incident webhooks.
pub struct Webhooks {
    pub config: LiveConfig,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
    /// A dry run (a drill): each delivery is built and signed as it would be sent, and
    /// kept here instead of being POSTed.
    pub record: Option<Arc<Posted>>,
}

/// One webhook delivery a dry run kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The decision it carried out.
    pub decision: Option<i64>,
    pub url: String,
    pub event: String,
    pub body: String,
}

/// Webhook deliveries a dry run kept, in order.
#[derive(Debug, Default)]
pub struct Posted(std::sync::Mutex<Vec<Kept>>);

impl Posted {
    pub fn all(&self) -> Vec<Kept> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl Notifier for Webhooks {
    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn targets(&self, decision: &OutboxItem) -> Vec<String> {
        // A decision written before deliveries were fanned out had its webhook deliveries
        // queued with it (the schema 9 migration kept them).
        if decision.context.is_none() {
            return Vec::new();
        }
        let Some(event) = decision.action.event() else {
            return Vec::new();
        };
        self.config
            .get()
            .webhooks
            .iter()
            .filter(|w| w.events.contains(&event))
            .map(|w| w.url.to_string())
            .collect()
    }

    fn backoff(&self) -> Backoff {
        Backoff::QUICK
    }

    async fn deliver(&self, d: &Delivery) -> Outcome {
        let (event, body) = match (&d.queued, &d.decision) {
            (Some(q), _) => (q.event.clone(), q.body.clone()),
            (None, Some(decision)) => match body(decision) {
                Some((e, b)) => (e.to_string(), b),
                None => return Outcome::Done,
            },
            (None, None) => return Outcome::Failed("the delivery has no decision".into()),
        };
        let config = self.config.get();
        let outcome = match config.webhooks.iter().find(|w| w.url.as_str() == d.target) {
            None => Outcome::Failed("the receiver is no longer configured".into()),
            Some(w) => match &w.secret {
                None => Outcome::Retry(format!(
                    "the signing key {} is not in the environment",
                    w.secret_env
                )),
                Some(key) => self.post(d, &event, body, key).await,
            },
        };
        match &outcome {
            Outcome::Done => {
                self.metrics.webhook_delivery("sent");
                tracing::info!(url = %d.target, event, delivery = d.id, "webhook delivered");
            }
            Outcome::Retry(e) | Outcome::RetryAfter(e, _) => {
                self.metrics.webhook_delivery("retried");
                let wait = match &outcome {
                    Outcome::RetryAfter(_, w) => *w,
                    _ => self.backoff().after(d.attempts),
                };
                tracing::warn!(url = %d.target, event, delivery = d.id, error = %e, retry_in = ?wait, "webhook not delivered; will retry");
            }
            Outcome::Failed(e) => {
                self.metrics.webhook_delivery("failed");
                tracing::error!(url = %d.target, event, delivery = d.id, error = %e, "webhook refused; not retried");
            }
        }
        outcome
    }
}

impl Webhooks {
    async fn post(&self, d: &Delivery, event: &str, body: String, key: &Secret) -> Outcome {
        if let Some(kept) = &self.record {
            kept.0.lock().unwrap_or_else(|e| e.into_inner()).push(Kept {
                decision: d.decision.as_ref().map(|x| x.id),
                url: d.target.clone(),
                event: event.to_string(),
                body,
            });
            return Outcome::Done;
        }
        let req = self
            .http
            .post(&d.target)
            .timeout(DEADLINE)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Tocsin-Event", event)
            .header("X-Tocsin-Delivery", d.id.to_string())
            .header(
                "X-Tocsin-Signature",
                signature(key.expose().as_bytes(), body.as_bytes()),
            )
            .body(body);
        match req.send().await {
            Err(e) => Outcome::Retry(format!("no answer: {}", transport(e))),
            Ok(r) => {
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let said = r.text().await.unwrap_or_default();
                answer(status, &headers, &said, std::time::SystemTime::now())
            }
        }
    }
}
