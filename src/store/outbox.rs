//! The outbox, in two steps. A decision is written, with the context its notifiers need,
//! in the transaction that decided it (`commit`). The dispatcher then fans it out into
//! deliveries, one per notifier and target (staff mail, campaign planning, each webhook
//! receiver), in one transaction that also closes the decision; each delivery is carried
//! out, retried and closed on its own. A crash between the steps repeats a step, never
//! loses one: fanning out twice adds nothing (one delivery per decision, channel and
//! target).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::db::Db;
use super::db::OptionalExt;
use rusqlite::params;

use super::rows::timeline;
use super::{
    Channel, Context, Delivery, NewDelivery, OutboxItem, OutboxStore, Pending, QueuedWebhook,
    SqlStore, StoreError, from_secs, secs,
};
use crate::incident::{Action, TimelineEvent};

/// Writes one decision inside the deciding transaction.
pub(super) fn decide(
    tx: &Db,
    service: &str,
    incident: Option<i64>,
    action: &Action,
    context: &Context,
    now: SystemTime,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox (service, incident_id, action, context, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![service, incident, json(action)?, json(context)?, secs(now)],
    )?;
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::from(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
}

fn corrupt(what: String, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// Reads an outbox row from the columns `id, service, incident_id, action, context,
/// attempts, created_at` starting at `at`.
fn decision(r: &super::db::Row, at: usize) -> rusqlite::Result<RawDecision> {
    Ok(RawDecision {
        id: r.get(at)?,
        service: r.get(at + 1)?,
        incident: r.get(at + 2)?,
        action: r.get(at + 3)?,
        context: r.get(at + 4)?,
        attempts: r.get(at + 5)?,
        created: r.get(at + 6)?,
    })
}

struct RawDecision {
    id: i64,
    service: String,
    incident: Option<i64>,
    action: String,
    context: Option<String>,
    attempts: u32,
    created: f64,
}

impl RawDecision {
    fn parse(self) -> Result<OutboxItem, StoreError> {
        let id = self.id;
        let action: Action = serde_json::from_str(&self.action)
            .map_err(|e| corrupt(format!("outbox item {id}"), e))?;
        let context = match self.context {
            Some(c) => Some(
                serde_json::from_str(&c)
                    .map_err(|e| corrupt(format!("context of outbox item {id}"), e))?,
            ),
            None => None,
        };
        Ok(OutboxItem {
            id,
            service: self.service,
            incident: self.incident,
            action,
            context,
            attempts: self.attempts,
            decided: from_secs(self.created),
        })
    }
}

impl OutboxStore for SqlStore {
    fn due(&mut self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let raw: Vec<RawDecision> = {
            let mut stmt = self.conn.prepare(
                "SELECT id, service, incident_id, action, context, attempts, created_at FROM outbox
                 WHERE status = 'pending' ORDER BY id LIMIT ?1",
            )?;
            stmt.query_map(params![limit as i64], |r| decision(r, 0))?
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        for r in raw {
            let id = r.id;
            match r.parse() {
                Ok(d) => out.push(d),
                Err(e) => {
                    tracing::error!(decision = id, error = %e, "outbox: a decision cannot be read back; it is closed as failed");
                    self.conn.execute(
                        "UPDATE outbox SET status = 'failed', last_error = ?2 WHERE id = ?1",
                        params![id, e.to_string()],
                    )?;
                }
            }
        }
        Ok(out)
    }

    fn decisions(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, service, incident_id, action, context, attempts, created_at FROM outbox ORDER BY id",
        )?;
        let rows = stmt.query_map((), |r| decision(r, 0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.parse()?);
        }
        Ok(out)
    }

    fn fan_out(
        &mut self,
        decision: i64,
        deliveries: &[NewDelivery],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let incident: Option<Option<i64>> = tx
            .query_row(
                "SELECT incident_id FROM outbox WHERE id = ?1 AND status = 'pending'",
                [decision],
                |r| r.get(0),
            )
            .optional()?;
        // Fanned out already (a second dispatcher pass): nothing to add.
        let Some(incident) = incident else {
            return Ok(());
        };
        for d in deliveries {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (outbox_id, channel, target, incident_id, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    decision,
                    d.channel.as_str(),
                    d.target,
                    incident,
                    secs(now),
                    secs(now + d.after)
                ],
            )?;
        }
        tx.execute(
            "UPDATE outbox SET status = 'done', done_at = ?2 WHERE id = ?1",
            params![decision, secs(now)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn due_deliveries(
        &mut self,
        now: SystemTime,
        channel: Option<Channel>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        // A webhook receiver or a chat or paging channel hears of transitions in the order
        // they were decided: only its
        // oldest pending delivery is ever due, so one that is down holds up its own queue
        // and nothing else. Staff read an incident's mails in the order they were decided
        // too (DOWN, escalated, UP), even after a mail outage of hours whose retries came
        // due in another order: only each incident's oldest pending staff mail is due.
        // Notices of no incident, and campaigns, are independent of each other.
        let mut stmt = self.conn.prepare(
            "SELECT d.id, d.channel, d.target, d.incident_id, d.attempts, d.queued_event, d.queued_body,
                    o.id, o.service, o.incident_id, o.action, o.context, o.attempts, o.created_at
             FROM deliveries d LEFT JOIN outbox o ON o.id = d.outbox_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
               AND (CAST(?3 AS TEXT) IS NULL OR d.channel = ?3)
               AND (d.channel NOT IN ('webhook', 'chat') OR d.id IN (
                    SELECT MIN(id) FROM deliveries WHERE status = 'pending' AND channel IN ('webhook', 'chat')
                    GROUP BY channel, target))
               AND (d.channel != 'staff_mail' OR d.incident_id IS NULL OR d.id IN (
                    SELECT MIN(id) FROM deliveries WHERE status = 'pending' AND channel = 'staff_mail'
                    AND incident_id IS NOT NULL GROUP BY incident_id, target))
             ORDER BY d.id LIMIT ?2",
        )?;
        let wanted = channel.map(Channel::as_str);
        let rows = stmt.query_map(params![secs(now), limit as i64, wanted], |r| {
            let outbox: Option<i64> = r.get(7)?;
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                match outbox {
                    Some(_) => Some(decision(r, 7)?),
                    None => None,
                },
            ))
        })?;
        let rows: Vec<_> = rows.collect::<Result<_, _>>()?;
        drop(stmt);
        let mut out = Vec::new();
        for (id, channel, target, incident, attempts, event, body, decision) in rows {
            let read = Channel::parse(&channel)
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("delivery {id}"),
                    detail: format!("unknown channel `{channel}`"),
                })
                .and_then(|c| Ok((c, decision.map(RawDecision::parse).transpose()?)));
            let (channel, decision) = match read {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(delivery = id, error = %e, "outbox: a delivery cannot be read back; it is closed as failed");
                    self.delivery_failed(id, &e.to_string(), now)?;
                    continue;
                }
            };
            out.push(Delivery {
                id,
                channel,
                target,
                incident,
                attempts,
                decision,
                queued: match (event, body) {
                    (Some(event), Some(body)) => Some(QueuedWebhook { event, body }),
                    _ => None,
                },
            });
        }
        Ok(out)
    }

    fn pending(&self) -> Result<Pending, StoreError> {
        let decisions: i64 = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE status = 'pending'",
            (),
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare(
            "SELECT channel, count(*) FROM deliveries WHERE status = 'pending' GROUP BY channel",
        )?;
        let mut deliveries = BTreeMap::new();
        for row in stmt.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (channel, n) = row?;
            if let Some(c) = Channel::parse(&channel) {
                deliveries.insert(c, n as u64);
            }
        }
        Ok(Pending {
            decisions: decisions as u64,
            deliveries,
        })
    }

    fn delivered(&mut self, id: i64, now: SystemTime) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE deliveries SET status = 'done', attempts = attempts + 1, done_at = ?2 WHERE id = ?1 AND status = 'pending'",
            params![id, secs(now)],
        )?;
        Ok(())
    }

    fn retry_delivery(&mut self, id: i64, error: &str, at: SystemTime) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1 AND status = 'pending'",
            params![id, error, secs(at)],
        )?;
        Ok(())
    }

    fn delivery_pending(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT status = 'pending' FROM deliveries WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    fn delivery_failed(&mut self, id: i64, error: &str, now: SystemTime) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = ?2, done_at = ?3 WHERE id = ?1 AND status = 'pending'",
            params![id, error, secs(now)],
        )?;
        if changed > 0 {
            let (incident, channel, target): (Option<i64>, String, String) = tx.query_row(
                "SELECT incident_id, channel, target FROM deliveries WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            if let Some(incident) = incident {
                let error = error.to_string();
                let event = if matches!(
                    Channel::parse(&channel),
                    Some(Channel::Webhook | Channel::Chat)
                ) {
                    TimelineEvent::WebhookFailed { url: target, error }
                } else {
                    TimelineEvent::DeliveryFailed { error }
                };
                timeline(&tx, incident, now, &event)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
