//! Incident webhook deliveries: queued in the transaction that decides a transition, so
//! a receiver hears of every transition once decided, even across a crash; sent, retried
//! and closed by the webhook sender.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::json;

use super::rows::{incident_id, timeline};
use super::{SqliteStore, StoreError, WebhookStore, from_secs, secs};
use crate::incident::{Action, TimelineEvent, WebhookEvent};

/// One receiver and the events it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTarget {
    pub url: String,
    pub events: Vec<WebhookEvent>,
}

/// What a commit needs to queue deliveries.
#[derive(Debug, Default)]
pub struct Hooks<'a> {
    /// The service's display name, for the body.
    pub service_name: &'a str,
    pub targets: &'a [HookTarget],
}

/// A delivery due to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub url: String,
    pub event: String,
    pub incident: Option<i64>,
    pub body: String,
    pub attempts: u32,
    pub created: SystemTime,
}

fn seq(action: &Action) -> Option<u64> {
    match action {
        Action::Open { id, .. }
        | Action::Acknowledged { id, .. }
        | Action::EtaSet { id, .. }
        | Action::CustomerPhase { id, .. }
        | Action::CustomerUpdate { id, .. }
        | Action::Resolve { id, .. } => Some(*id),
        Action::MailStaff { id, .. } => *id,
    }
}

/// Queues `action`'s deliveries inside the deciding transaction.
pub(super) fn queue(
    tx: &Transaction,
    service: &str,
    action: &Action,
    now: SystemTime,
    hooks: &Hooks,
) -> Result<(), rusqlite::Error> {
    let Some(event) = action.event() else {
        return Ok(());
    };
    let targets: Vec<&HookTarget> = hooks
        .targets
        .iter()
        .filter(|t| t.events.contains(&event))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let incident = match seq(action) {
        Some(s) => incident_id(tx, service, s)?,
        None => None,
    };
    let body = json!({
        "event": event.as_str(),
        "service": (!service.is_empty()).then_some(service),
        "service_name": (!service.is_empty()).then_some(hooks.service_name),
        "incident": incident,
        "at": humantime::format_rfc3339_seconds(now).to_string(),
        "action": action,
    })
    .to_string();
    for t in targets {
        tx.execute(
            "INSERT INTO webhook_deliveries (url, event, incident_id, body, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![t.url, event.as_str(), incident, body, secs(now)],
        )?;
    }
    Ok(())
}

impl WebhookStore for SqliteStore {
    fn due_webhooks(&self, now: SystemTime, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, event, incident_id, body, attempts, created_at FROM webhook_deliveries
             WHERE id IN (SELECT MIN(id) FROM webhook_deliveries WHERE status = 'pending' GROUP BY url)
               AND next_attempt_at <= ?1
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![secs(now), limit as i64], |r| {
            Ok(Delivery {
                id: r.get(0)?,
                url: r.get(1)?,
                event: r.get(2)?,
                incident: r.get(3)?,
                body: r.get(4)?,
                attempts: r.get(5)?,
                created: from_secs(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn webhook_pending(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    fn webhook_done(&mut self, id: i64, now: SystemTime) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE webhook_deliveries SET status = 'done', attempts = attempts + 1, done_at = ?2 WHERE id = ?1",
            params![id, secs(now)],
        )?;
        Ok(())
    }

    fn webhook_retry(&mut self, id: i64, error: &str, at: SystemTime) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, secs(at)],
        )?;
        Ok(())
    }

    fn webhook_failed(&mut self, id: i64, error: &str, now: SystemTime) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2, done_at = ?3 WHERE id = ?1",
            params![id, error, secs(now)],
        )?;
        let row: Option<(Option<i64>, String)> = tx
            .query_row(
                "SELECT incident_id, url FROM webhook_deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((Some(incident), url)) = row {
            let event = TimelineEvent::WebhookFailed {
                url,
                error: error.to_string(),
            };
            timeline(&tx, incident, now, &event)?;
        }
        tx.commit()?;
        Ok(())
    }
}
