//! Incident webhooks: every transition (opened, escalated, acknowledged, ETA, customer
//! phase, update, resolved, flapping, monitor down) POSTed as JSON to each receiver that
//! wants it, signed with HMAC-SHA256 so the receiver can tell it came from tocsin.
//!
//! Deliveries are queued in the store by the transaction that decided the transition;
//! this sender only carries them out: 2xx closes a delivery, 408, 429, 5xx and network
//! errors are retried with backoff (5 s doubling to 150 s), any other answer is final (logged, counted, and
//! written into the incident's timeline). A receiver sees the same body and delivery id
//! on every retry, so it can drop repeats.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::dispatch::backoff;
use crate::clock::Clock;
use crate::config::{Config, LiveConfig};
use crate::engine::Snapshot;
use crate::metrics::Metrics;
use crate::store::{Delivery, SharedStore};

const BATCH: usize = 50;
const IDLE: Duration = Duration::from_secs(1);
const DEADLINE: Duration = Duration::from_secs(10);

/// `sha256=<hex>` of the body under `key`: what `X-Tocsin-Signature` carries.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Every configured receiver's key must be in the environment: checked at start-up.
pub fn check_secrets(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    for w in &config.webhooks {
        if env(&w.secret_env).is_none_or(|v| v.is_empty()) {
            return Err(format!(
                "webhook {}: set the environment variable {} (its signing key, named by secret_env)",
                w.url, w.secret_env
            ));
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct WebhookSender {
    pub store: SharedStore,
    pub config: LiveConfig,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The engine's snapshot: a new decision may have queued deliveries.
    pub engine: watch::Receiver<Arc<Snapshot>>,
    pub http: reqwest::Client,
}

enum Outcome {
    Sent,
    Retry(String),
    Failed(String),
}

impl WebhookSender {
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.drain().await {
                tracing::error!(error = %e, "webhooks: cannot read the store");
            }
            if !super::pause(&cancel, &mut self.engine, None, IDLE).await {
                return;
            }
        }
    }

    pub async fn drain(&self) -> Result<(), crate::store::StoreError> {
        loop {
            let due = self.store.lock().due_webhooks(self.clock.now(), BATCH)?;
            if due.is_empty() {
                break;
            }
            for d in due {
                self.deliver(d).await?;
            }
        }
        self.metrics
            .webhook_pending(self.store.lock().webhook_pending()?);
        Ok(())
    }

    async fn deliver(&self, d: Delivery) -> Result<(), crate::store::StoreError> {
        let config = self.config.get();
        let outcome = match config.webhooks.iter().find(|w| w.url.as_str() == d.url) {
            None => Outcome::Failed("the receiver is no longer configured".into()),
            Some(w) => match std::env::var(&w.secret_env) {
                Err(_) => Outcome::Retry(format!(
                    "the signing key {} is not in the environment",
                    w.secret_env
                )),
                Ok(key) => self.post(&d, key.as_bytes()).await,
            },
        };
        let now = self.clock.now();
        let mut st = self.store.lock();
        match outcome {
            Outcome::Sent => {
                self.metrics.webhook_delivery("sent");
                tracing::info!(url = %d.url, event = %d.event, delivery = d.id, "webhook delivered");
                st.webhook_done(d.id, now)
            }
            Outcome::Retry(e) => {
                self.metrics.webhook_delivery("retried");
                // Receivers are usually chat or paging tools that recover quickly: retried
                // sooner than mail (5 s, doubling to 150 s).
                let wait = (backoff(d.attempts) / 6).max(Duration::from_secs(5));
                tracing::warn!(url = %d.url, event = %d.event, delivery = d.id, error = %e, retry_in = ?wait, "webhook not delivered; will retry");
                st.webhook_retry(d.id, &e, now + wait)
            }
            Outcome::Failed(e) => {
                self.metrics.webhook_delivery("failed");
                tracing::error!(url = %d.url, event = %d.event, delivery = d.id, error = %e, "webhook refused; not retried");
                st.webhook_failed(d.id, &e, now)
            }
        }
    }

    async fn post(&self, d: &Delivery, key: &[u8]) -> Outcome {
        let req = self
            .http
            .post(&d.url)
            .timeout(DEADLINE)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Tocsin-Event", &d.event)
            .header("X-Tocsin-Delivery", d.id.to_string())
            .header("X-Tocsin-Signature", signature(key, d.body.as_bytes()))
            .body(d.body.clone());
        match req.send().await {
            Err(e) => Outcome::Retry(format!("no answer: {}", root(&e))),
            Ok(r) => {
                let status = r.status();
                if status.is_success() {
                    return Outcome::Sent;
                }
                let said: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let msg = format!("answered {}: {}", status.as_u16(), said.trim());
                if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                    Outcome::Retry(msg)
                } else {
                    Outcome::Failed(msg)
                }
            }
        }
    }
}

fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
