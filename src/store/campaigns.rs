//! Customer campaigns in the store: one row per recipient, each moving `pending` → `sent`
//! | `failed` | `cancelled` exactly once. Creation is keyed by the outbox item that decided
//! it, so a decision carried out twice (a crash before it was marked done) makes one
//! campaign. An outage campaign is expanded from its audience in batches, each committed
//! with where reading stopped (`expansion`), so a crash in the middle of a million rows
//! goes on from the last batch; nothing of a campaign is sent before its last batch.
//! Follow-ups are made from the outage campaign's sent rows in one statement.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::db::Db;
use super::db::OptionalExt;
use rusqlite::params;

use serde::{Deserialize, Serialize};

use super::{CampaignStore, SqlStore, StoreError, from_secs, secs};
use crate::incident::{PublicUpdate, TimelineEvent};
pub use crate::text::email::address_key;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignKind {
    /// "We are down", with the ETA or a next-update time.
    Outage,
    /// The ETA changed, or the promised time came while still down.
    Update,
    /// "We are back", to exactly those who got the outage mail.
    Recovery,
    /// Planned maintenance announced in advance (no incident).
    Maintenance,
    /// The maintenance is over, to those who were told of it.
    MaintenanceDone,
}

impl CampaignKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignKind::Outage => "outage",
            CampaignKind::Update => "update",
            CampaignKind::Recovery => "recovery",
            CampaignKind::Maintenance => "maintenance",
            CampaignKind::MaintenanceDone => "maintenance_done",
        }
    }

    /// The templates its messages are rendered from (`<lang>/<name>.{subject,txt,html}`).
    pub fn template(self) -> &'static str {
        match self {
            CampaignKind::Maintenance | CampaignKind::MaintenanceDone => "maintenance",
            k => k.as_str(),
        }
    }

    fn parse(s: &str) -> CampaignKind {
        match s {
            "update" => CampaignKind::Update,
            "recovery" => CampaignKind::Recovery,
            "maintenance" => CampaignKind::Maintenance,
            "maintenance_done" => CampaignKind::MaintenanceDone,
            _ => CampaignKind::Outage,
        }
    }
}

/// One recipient as a campaign is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    pub email: String,
    pub name: String,
    pub language: String,
    pub timezone: String,
    /// Extra columns of the audience, as template variables.
    pub vars: BTreeMap<String, String>,
}

/// An outage campaign as opened for expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub id: i64,
    /// Where reading its audience stopped; `None` once it is expanded. Empty for a
    /// campaign just made.
    pub expansion: Option<String>,
    /// Recipients it has so far, and audience rows left out so far.
    pub recipients: u64,
    pub opted_out: u64,
    pub invalid: u64,
}

/// One batch of an expansion.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub recipients: &'a [NewRecipient],
    /// Audience rows left out in this batch, and the first of their reasons to keep in
    /// the campaign's note (up to five in all).
    pub invalid: u64,
    pub notes: &'a [String],
    /// Where reading stopped; `None`: this is the last batch.
    pub expansion: Option<&'a str>,
    /// For an outage campaign: merge customers into another outage's message.
    pub merge: Option<&'a Merge<'a>>,
}

/// One customer, one message: a customer who is in another outage campaign, opened at
/// most `within` earlier and not sent yet, is told in that message instead (the services
/// named in its [`GROUP`] variable), and remembered as told by it. With `hold` (another
/// outage is about to reach its customers) this campaign's rows wait `within` before
/// they are sent, so that customers of both can be told once.
#[derive(Debug, Clone)]
pub struct Merge<'a> {
    pub within: std::time::Duration,
    pub hold: bool,
    /// Every service's name, by id.
    pub names: &'a BTreeMap<String, String>,
}

/// The recipient variable listing the services one merged message is about, as a JSON
/// array of `[id, name]`; not a template variable of its own.
pub const GROUP: &str = "_group";

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expanded {
    Added {
        inserted: u64,
        opted_out: u64,
    },
    /// The incident recovered before the campaign was complete: it is cancelled.
    Stopped,
}

/// Recipients by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending + self.sent + self.failed + self.cancelled
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRecord {
    pub id: i64,
    pub incident: i64,
    pub service: String,
    pub kind: CampaignKind,
    pub audience: String,
    #[serde(serialize_with = "super::serialize_rfc3339")]
    pub created: SystemTime,
    /// Audience rows left out: opted out, or invalid (see `note`).
    pub opted_out: u64,
    pub invalid: u64,
    pub note: String,
    pub counts: Counts,
    #[serde(serialize_with = "super::serialize_rfc3339_opt")]
    pub first_sent: Option<SystemTime>,
    #[serde(serialize_with = "super::serialize_rfc3339_opt")]
    pub last_sent: Option<SystemTime>,
    /// Messages accepted in the last minute.
    pub sent_last_minute: u64,
    /// Still being expanded from its audience: nothing is sent yet.
    pub expanding: bool,
}

/// What rendering a campaign's messages needs, read fresh: pending outage mails carry
/// the latest promise.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignInfo {
    pub id: i64,
    pub kind: CampaignKind,
    pub service: String,
    pub incident: i64,
    pub started: SystemTime,
    pub ended: Option<SystemTime>,
    pub eta: Option<SystemTime>,
    pub next_update: Option<SystemTime>,
    /// A maintenance window's note: what is done.
    pub window_note: Option<String>,
    /// Staff's latest update for customers when the campaign was made.
    pub update: Option<PublicUpdate>,
}

/// A recipient due to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientJob {
    pub id: i64,
    pub campaign: i64,
    pub email: String,
    pub name: String,
    pub language: String,
    pub timezone: String,
    pub vars: BTreeMap<String, String>,
    pub attempts: u32,
    /// The compensation code given to this recipient (recovery mails after a long outage).
    pub compensation: Option<String>,
}

/// A new follow-up campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followup {
    pub id: i64,
    /// Recipients who should have had a compensation code and got none: the pool ran out.
    pub short_of_codes: u64,
}

/// How one send went.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    Sent {
        id: i64,
        at: SystemTime,
    },
    Retry {
        id: i64,
        error: String,
        at: SystemTime,
    },
    Failed {
        id: i64,
        error: String,
        at: SystemTime,
    },
}

impl CampaignStore for SqlStore {
    #[allow(clippy::too_many_arguments)]
    fn open_campaign(
        &mut self,
        outbox_id: i64,
        incident: i64,
        service: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<Opened, StoreError> {
        let tx = self.conn.transaction()?;
        if existing(&tx, outbox_id)?.is_none() {
            tx.execute(
                "INSERT INTO campaigns (incident_id, service, kind, audience, outbox_id, created_at, expansion)
                 VALUES (?1, ?2, 'outage', ?3, ?4, ?5, '')",
                params![incident, service, audience, outbox_id, secs(now)],
            )?;
        }
        let opened = tx.query_row(
            "SELECT id, expansion, (SELECT count(*) FROM recipients WHERE campaign_id = c.id), opted_out, invalid
             FROM campaigns c WHERE outbox_id = ?1",
            [outbox_id],
            |r| {
                Ok(Opened {
                    id: r.get(0)?,
                    expansion: r.get(1)?,
                    recipients: r.get::<_, i64>(2)? as u64,
                    opted_out: r.get::<_, i64>(3)? as u64,
                    invalid: r.get::<_, i64>(4)? as u64,
                })
            },
        )?;
        tx.commit()?;
        Ok(opened)
    }

    fn outage_campaigns(&self, incident: i64) -> Result<Vec<(i64, bool, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, expansion IS NULL, service FROM campaigns WHERE incident_id = ?1 AND kind = 'outage' ORDER BY id",
        )?;
        let rows = stmt
            .query_map([incident], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    fn outage_refused(&self, incident: i64) -> Result<bool, StoreError> {
        self.conn.query_row(
            self.conn.pick(
                "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
                   WHERE o.incident_id = ?1 AND d.channel = 'campaign' AND d.status = 'failed'
                     AND json_extract(o.action, '$.action') = 'customer_phase')",
                "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN outbox o ON o.id = d.outbox_id
                   WHERE o.incident_id = ?1 AND d.channel = 'campaign' AND d.status = 'failed'
                     AND (o.action::jsonb ->> 'action') = 'customer_phase')",
            ),
            [incident],
            |r| r.get(0),
        )
    }

    fn campaign_addresses(
        &self,
        campaign: i64,
        each: &mut dyn FnMut(&str),
    ) -> Result<(), StoreError> {
        self.conn.for_each(
            "SELECT email FROM recipients WHERE campaign_id = ?1 ORDER BY id",
            [campaign],
            |r| {
                each(&r.get::<_, String>(0)?);
                Ok(())
            },
        )
    }

    fn expand_campaign(&mut self, campaign: i64, batch: &Batch) -> Result<Expanded, StoreError> {
        let tx = self.conn.transaction()?;
        let recovered: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM campaigns r JOIN campaigns c ON r.incident_id = c.incident_id
                            WHERE c.id = ?1 AND r.kind = 'recovery')",
            [campaign],
            |r| r.get(0),
        )?;
        if recovered {
            tx.execute(
                "UPDATE recipients SET status = 'cancelled', last_error = 'the service recovered first'
                 WHERE campaign_id = ?1 AND status = 'pending'",
                [campaign],
            )?;
            tx.execute(
                "UPDATE campaigns SET expansion = NULL WHERE id = ?1",
                [campaign],
            )?;
            tx.commit()?;
            return Ok(Expanded::Stopped);
        }
        let now = tx.query_row(
            "SELECT created_at FROM campaigns WHERE id = ?1",
            [campaign],
            |r| r.get::<_, f64>(0),
        )?;
        let (inserted, merged) =
            insert_recipients(&tx, campaign, batch.recipients, from_secs(now), batch.merge)?;
        let (inserted, merged) = (inserted as u64, merged as u64);
        let opted_out = batch.recipients.len() as u64 - inserted - merged;
        for line in batch.notes {
            tx.execute(
                "UPDATE campaigns SET note = CASE WHEN note = '' THEN ?2 ELSE note || char(10) || ?2 END WHERE id = ?1",
                params![campaign, line],
            )?;
        }
        tx.execute(
            "UPDATE campaigns SET opted_out = opted_out + ?2, invalid = invalid + ?3, expansion = ?4 WHERE id = ?1",
            params![campaign, opted_out as i64, batch.invalid as i64, batch.expansion],
        )?;
        tx.commit()?;
        Ok(Expanded::Added {
            inserted,
            opted_out,
        })
    }

    fn restart_expansion(&mut self, campaign: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM recipients WHERE campaign_id = ?1", [campaign])?;
        tx.execute(
            "UPDATE campaigns SET opted_out = 0, invalid = 0, note = '', expansion = '' WHERE id = ?1 AND expansion IS NOT NULL",
            [campaign],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn drop_campaign(&mut self, campaign: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let expanding: bool = tx
            .query_row(
                "SELECT expansion IS NOT NULL FROM campaigns WHERE id = ?1",
                [campaign],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false);
        if expanding {
            tx.execute("DELETE FROM recipients WHERE campaign_id = ?1", [campaign])?;
            tx.execute("DELETE FROM campaigns WHERE id = ?1", [campaign])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn create_followup(
        &mut self,
        outbox_id: i64,
        incident: i64,
        kind: CampaignKind,
        codes: Option<&str>,
        recovery_last: bool,
        now: SystemTime,
    ) -> Result<Option<Followup>, StoreError> {
        let tx = self.conn.transaction()?;
        if let Some(id) = existing(&tx, outbox_id)? {
            let short: u64 = match codes {
                Some(_) => tx.query_row(
                    "SELECT COUNT(*) FROM recipients WHERE campaign_id = ?1 AND compensation_code IS NULL",
                    [id],
                    |r| r.get(0),
                )?,
                None => 0,
            };
            return Ok(Some(Followup {
                id,
                short_of_codes: short,
            }));
        }
        let outages: Vec<(i64, String, String)> = {
            let mut stmt = tx.prepare(
                "SELECT id, service, audience FROM campaigns WHERE incident_id = ?1 AND kind = 'outage' ORDER BY id",
            )?;
            stmt.query_map([incident], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        let Some((first, rest)) = outages.split_first() else {
            // Customers were never mailed (no audience, or the campaign was refused).
            return Ok(None);
        };
        if kind == CampaignKind::Recovery {
            // Customers merged into a message of this incident that will now never go
            // out are given back to their own outage campaign, to be told of it there.
            tx.execute(
                "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
                 SELECT m.campaign_id, r.email, r.name, r.language, r.timezone, '{}', ?2
                 FROM campaign_merges m JOIN recipients r ON r.id = m.into_recipient
                 JOIN campaigns c ON c.id = r.campaign_id
                 JOIN campaigns mc ON mc.id = m.campaign_id
                 JOIN incidents mi ON mi.id = mc.incident_id
                 WHERE c.incident_id = ?1 AND r.status = 'pending' AND mi.ended_at IS NULL",
                params![incident, secs(now)],
            )?;
            tx.execute(
                "DELETE FROM campaign_merges WHERE into_recipient IN (
                    SELECT r.id FROM recipients r JOIN campaigns c ON c.id = r.campaign_id
                    WHERE c.incident_id = ?1 AND r.status = 'pending')",
                [incident],
            )?;
            tx.execute(
                "UPDATE recipients SET status = 'cancelled', last_error = 'the service recovered first'
                 WHERE status = 'pending' AND campaign_id IN (SELECT id FROM campaigns WHERE incident_id = ?1)",
                [incident],
            )?;
        }
        let mut made = None;
        let mut short = 0;
        // The incident's own campaign first (it carries the decision), then one for the
        // customers of each service attached to it.
        for (n, (outage, service, audience)) in std::iter::once(first).chain(rest).enumerate() {
            let (id, missing) = followup_of(
                &tx,
                incident,
                kind,
                *outage,
                (service, audience),
                (n == 0).then_some(outbox_id),
                codes,
                recovery_last,
                now,
            )?;
            made.get_or_insert(id);
            short += missing;
        }
        tx.commit()?;
        Ok(made.map(|id| Followup {
            id,
            short_of_codes: short,
        }))
    }

    fn load_codes(&mut self, pool: &str, codes: &[String]) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx
                .prepare("INSERT OR IGNORE INTO compensation_codes (code, pool) VALUES (?1, ?2)")?;
            for c in codes {
                stmt.execute(params![c, pool])?;
            }
        }
        let left = tx.query_row(
            "SELECT COUNT(*) FROM compensation_codes WHERE pool = ?1 AND recipient_id IS NULL",
            [pool],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(left)
    }

    fn due_recipients(
        &self,
        now: SystemTime,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RecipientJob>, StoreError> {
        let mut stmt = self.conn.prepare(
            // A customer reads their mails in the order they were decided (the outage
            // before its update, before the recovery), even when a mail outage made their
            // retries come due in another order: a row waits while an older one to the
            // same address is pending.
            //
            // Rows are walked in id order from `after` (the `+` keeps SQLite off the
            // (status, time) index): through that index, each batch of a million-row
            // campaign scanned and sorted every pending row, 0.4 to 0.6 s a batch
            // against 0.3 to 1.3 ms. A pass from the start over rows already sent costs
            // about 75 ms a million.
            //
            // PostgreSQL has no such `+` on text, and its planner needs no hint.
            self.conn.pick(
                "SELECT id, campaign_id, email, name, language, timezone, vars, attempts, compensation_code
                 FROM recipients r
                 WHERE +status = 'pending' AND +next_attempt_at <= ?1 AND id > ?2
                   AND campaign_id NOT IN (SELECT id FROM campaigns WHERE expansion IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM recipients o
                                   WHERE o.email = r.email AND o.status = 'pending' AND o.id < r.id)
                 ORDER BY id LIMIT ?3",
                "SELECT id, campaign_id, email, name, language, timezone, vars, attempts, compensation_code
                 FROM recipients r
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND id > ?2
                   AND campaign_id NOT IN (SELECT id FROM campaigns WHERE expansion IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM recipients o
                                   WHERE o.email = r.email AND o.status = 'pending' AND o.id < r.id)
                 ORDER BY id LIMIT ?3",
            ),
        )?;
        let rows = stmt.query_map(params![secs(now), after, limit as i64], |r| {
            Ok((
                RecipientJob {
                    id: r.get(0)?,
                    campaign: r.get(1)?,
                    email: r.get(2)?,
                    name: r.get(3)?,
                    language: r.get(4)?,
                    timezone: r.get(5)?,
                    vars: BTreeMap::new(),
                    attempts: r.get(7)?,
                    compensation: r.get(8)?,
                },
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (mut job, vars) = row?;
            job.vars = serde_json::from_str(&vars).map_err(|e| StoreError::Corrupt {
                what: format!("variables of recipient {}", job.id),
                detail: e.to_string(),
            })?;
            out.push(job);
        }
        Ok(out)
    }

    fn next_recipient_due(&self) -> Result<Option<SystemTime>, StoreError> {
        let t: Option<f64> = self.conn.query_row(
            "SELECT min(next_attempt_at) FROM recipients WHERE status = 'pending'
               AND campaign_id NOT IN (SELECT id FROM campaigns WHERE expansion IS NOT NULL)",
            (),
            |r| r.get(0),
        )?;
        Ok(t.map(from_secs))
    }

    fn record_sends(&mut self, results: &[SendResult]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut sent = tx.prepare(
                "UPDATE recipients SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1 AND status IN ('pending', 'cancelled')",
            )?;
            let mut join = tx.prepare(
                "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
                 SELECT rc.id, r.email, r.name, r.language, r.timezone, r.vars, ?2
                 FROM recipients r JOIN campaigns c ON c.id = r.campaign_id
                 JOIN campaigns rc ON rc.incident_id = c.incident_id AND rc.kind = 'recovery'
                 WHERE r.id = ?1 AND c.kind = 'outage'
                   AND NOT EXISTS (SELECT 1 FROM optouts o WHERE o.email = lower(trim(r.email)))",
            )?;
            let mut retry = tx.prepare(
                "UPDATE recipients SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3
                 WHERE id = ?1 AND status = 'pending'",
            )?;
            let mut failed = tx.prepare(
                "UPDATE recipients SET status = 'failed', attempts = attempts + 1, last_error = ?2, sent_at = ?3
                 WHERE id = ?1 AND status = 'pending'",
            )?;
            for r in results {
                match r {
                    SendResult::Sent { id, at } => {
                        if sent.execute(params![id, secs(*at)])? > 0 {
                            join.execute(params![id, secs(*at)])?;
                        }
                    }
                    SendResult::Retry { id, error, at } => {
                        retry.execute(params![id, error, secs(*at)])?;
                    }
                    SendResult::Failed { id, error, at } => {
                        failed.execute(params![id, error, secs(*at)])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn campaign_info(&self, id: i64) -> Result<Option<CampaignInfo>, StoreError> {
        self
            .conn
            .query_row(
                "SELECT c.id, c.kind, c.service, coalesce(c.incident_id, 0),
                        coalesce(i.started_at, c.window_start), coalesce(i.ended_at, c.window_end),
                        i.promised_eta, i.next_update, c.window_note,
                        (SELECT e.data FROM incident_events e
                          WHERE e.incident_id = c.incident_id AND e.kind = 'update' AND e.at <= c.created_at
                          ORDER BY e.id DESC LIMIT 1)
                 FROM campaigns c LEFT JOIN incidents i ON i.id = c.incident_id WHERE c.id = ?1",
                [id],
                |r| {
                    Ok(CampaignInfo {
                        id: r.get(0)?,
                        kind: CampaignKind::parse(&r.get::<_, String>(1)?),
                        service: r.get(2)?,
                        incident: r.get(3)?,
                        started: from_secs(r.get(4)?),
                        ended: r.get::<_, Option<f64>>(5)?.map(from_secs),
                        eta: r.get::<_, Option<f64>>(6)?.map(from_secs),
                        next_update: r.get::<_, Option<f64>>(7)?.map(from_secs),
                        window_note: r.get::<_, Option<String>>(8)?.filter(|n| !n.is_empty()),
                        update: r
                            .get::<_, Option<String>>(9)?
                            .and_then(|d| serde_json::from_str::<TimelineEvent>(&d).ok())
                            .and_then(|e| e.update().cloned()),
                    })
                },
            )
            .optional()
    }

    fn campaigns(
        &self,
        incident: Option<i64>,
        now: SystemTime,
    ) -> Result<Vec<CampaignRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.id, coalesce(c.incident_id, 0), c.service, c.kind, c.audience, c.created_at, c.opted_out, c.invalid, c.note,
                    count(r.id) FILTER (WHERE r.status = 'pending'),
                    count(r.id) FILTER (WHERE r.status = 'sent'),
                    count(r.id) FILTER (WHERE r.status = 'failed'),
                    count(r.id) FILTER (WHERE r.status = 'cancelled'),
                    min(r.sent_at) FILTER (WHERE r.status = 'sent'),
                    max(r.sent_at) FILTER (WHERE r.status = 'sent'),
                    count(r.id) FILTER (WHERE r.status = 'sent' AND r.sent_at > ?2),
                    c.expansion IS NOT NULL
             FROM campaigns c LEFT JOIN recipients r ON r.campaign_id = c.id
             WHERE CAST(?1 AS BIGINT) IS NULL OR c.incident_id = ?1
             GROUP BY c.id ORDER BY c.id DESC",
        )?;
        let minute_ago = secs(now) - 60.0;
        let rows = stmt.query_map(params![incident, minute_ago], |r| {
            Ok(CampaignRecord {
                id: r.get(0)?,
                incident: r.get(1)?,
                service: r.get(2)?,
                kind: CampaignKind::parse(&r.get::<_, String>(3)?),
                audience: r.get(4)?,
                created: from_secs(r.get(5)?),
                opted_out: r.get::<_, i64>(6)? as u64,
                invalid: r.get::<_, i64>(7)? as u64,
                note: r.get(8)?,
                counts: Counts {
                    pending: r.get::<_, i64>(9)? as u64,
                    sent: r.get::<_, i64>(10)? as u64,
                    failed: r.get::<_, i64>(11)? as u64,
                    cancelled: r.get::<_, i64>(12)? as u64,
                },
                first_sent: r.get::<_, Option<f64>>(13)?.map(from_secs),
                last_sent: r.get::<_, Option<f64>>(14)?.map(from_secs),
                sent_last_minute: r.get::<_, i64>(15)? as u64,
                expanding: r.get(16)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
    }

    fn without_code(&self, campaign: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.email FROM recipients r JOIN campaigns c ON c.id = r.campaign_id
             WHERE r.campaign_id = ?1 AND c.code_pool IS NOT NULL AND r.compensation_code IS NULL
               AND r.status != 'cancelled'
             ORDER BY r.id",
        )?;
        let rows = stmt.query_map([campaign], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()
    }

    fn failures(&self, campaign: i64, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT email, coalesce(last_error, '') FROM recipients WHERE campaign_id = ?1 AND status = 'failed' ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![campaign, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect::<Result<_, _>>()
    }

    fn recipient_counts(&self) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare("SELECT status, count(*) FROM recipients GROUP BY status")?;
        let rows = stmt.query_map((), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (status, n) = row?;
            match status.as_str() {
                "pending" => c.pending = n,
                "sent" => c.sent = n,
                "failed" => c.failed = n,
                _ => c.cancelled = n,
            }
        }
        Ok(c)
    }

    fn opt_out(&mut self, email: &str, now: SystemTime) -> Result<bool, StoreError> {
        let key = address_key(email);
        let tx = self.conn.transaction()?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO optouts (email, at) VALUES (?1, ?2)",
            params![key, secs(now)],
        )? > 0;
        tx.execute(
            "UPDATE recipients SET status = 'cancelled', last_error = 'opted out'
             WHERE status = 'pending' AND lower(trim(email)) = ?1",
            [&key],
        )?;
        tx.commit()?;
        Ok(new)
    }

    fn opted_out(&self, email: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM optouts WHERE email = ?1",
                [address_key(email)],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn customer_phase_open(&self) -> Result<Vec<super::IncidentRecord>, StoreError> {
        self.select("WHERE ended_at IS NULL AND customer_phase = 1", ())
    }

    fn incidents_since(&self, since: SystemTime) -> Result<Vec<super::Span>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT service, started_at, ended_at, customer_phase FROM incidents WHERE ended_at IS NULL OR ended_at >= ?1",
        )?;
        let rows = stmt.query_map([secs(since)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                from_secs(r.get(1)?),
                r.get::<_, Option<f64>>(2)?.map(from_secs),
                r.get::<_, i64>(3)? != 0,
            ))
        })?;
        rows.collect::<Result<_, _>>()
    }
}

/// Adds `recipients` to campaign `id`, leaving out those who opted out and repeated
/// addresses; how many were added.
/// Inserts `recipients` into campaign `id` (created at `now`), leaving out opt-outs; with
/// `merge`, merging those an earlier outage message will tell. Returns how many were
/// inserted and how many merged.
pub(super) fn insert_recipients(
    tx: &Db,
    id: i64,
    recipients: &[NewRecipient],
    now: SystemTime,
    merge: Option<&Merge>,
) -> Result<(usize, usize), StoreError> {
    // Two plain statements rather than one `INSERT ... SELECT ... WHERE NOT EXISTS`: an
    // INSERT from a SELECT may touch several rows, so SQLite keeps a statement journal
    // for it, which at a million rows wrote 22 GB (11 writes a row) for 230 MB of data.
    let service: String =
        tx.query_row("SELECT service FROM campaigns WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
    let mut opted_out = tx.prepare(
        "SELECT EXISTS (SELECT 1 FROM optouts WHERE email = ?1)
             OR EXISTS (SELECT 1 FROM service_optouts WHERE email = ?1 AND service = ?2)",
    )?;
    let mut ins = tx.prepare(
        "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    // An outage message with a merge window waits that long before it is sent.
    let send_at = match merge {
        Some(m) if m.hold => now + m.within,
        _ => now,
    };
    let mut earlier = tx.prepare(
        "SELECT r.id, r.vars, c.service FROM recipients r
         JOIN campaigns c ON c.id = r.campaign_id
         JOIN incidents i ON i.id = c.incident_id
         WHERE r.email IN (?1, ?2) AND r.status = 'pending' AND r.attempts = 0
           AND c.kind = 'outage' AND c.id != ?3 AND c.created_at >= ?4
           AND i.ended_at IS NULL AND r.next_attempt_at > ?5
         ORDER BY c.id LIMIT 1",
    )?;
    let mut join = tx.prepare("UPDATE recipients SET vars = ?2 WHERE id = ?1")?;
    let mut remember = tx.prepare(
        "INSERT OR IGNORE INTO campaign_merges (campaign_id, email, into_recipient) VALUES (?1, ?2, ?3)",
    )?;
    let (mut inserted, mut merged) = (0, 0);
    for r in recipients {
        let key = address_key(&r.email);
        if opted_out.query_row(params![key, service], |row| row.get::<_, bool>(0))? {
            continue;
        }
        if let Some(m) = merge.filter(|m| !m.within.is_zero()) {
            // Rows about to be sent (a few seconds left) are not touched: the message
            // may be on its way already.
            let found: Option<(i64, String, String)> = earlier
                .query_row(
                    params![
                        r.email,
                        key,
                        id,
                        secs(now - m.within),
                        secs(now + std::time::Duration::from_secs(5))
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            if let Some((into, vars, theirs)) = found {
                let mut vars: BTreeMap<String, String> =
                    serde_json::from_str(&vars).unwrap_or_default();
                let mut group: Vec<(String, String)> = vars
                    .get(GROUP)
                    .and_then(|g| serde_json::from_str(g).ok())
                    .unwrap_or_else(|| {
                        vec![(
                            theirs.clone(),
                            m.names.get(&theirs).cloned().unwrap_or(theirs.clone()),
                        )]
                    });
                if !group.iter().any(|(s, _)| *s == service) {
                    group.push((
                        service.clone(),
                        m.names.get(&service).cloned().unwrap_or(service.clone()),
                    ));
                }
                vars.insert(
                    GROUP.into(),
                    serde_json::to_string(&group)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                );
                let vars = serde_json::to_string(&vars)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                join.execute(params![into, vars])?;
                merged += remember.execute(params![id, key, into])?;
                continue;
            }
        }
        let vars = serde_json::to_string(&r.vars)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        inserted += ins.execute(params![
            id,
            r.email,
            r.name,
            r.language,
            r.timezone,
            vars,
            secs(send_at)
        ])?;
    }
    Ok((inserted, merged))
}

/// A follow-up of `kind` to those `outage` reached (and who have not opted out since),
/// with a code of `codes` each; its id and how many got no code.
#[allow(clippy::too_many_arguments)]
fn followup_of(
    tx: &Db,
    incident: i64,
    kind: CampaignKind,
    outage: i64,
    (service, audience): (&str, &str),
    outbox_id: Option<i64>,
    codes: Option<&str>,
    recovery_last: bool,
    now: SystemTime,
) -> Result<(i64, u64), StoreError> {
    let id = tx.insert(
        "INSERT INTO campaigns (incident_id, service, kind, audience, outbox_id, created_at, code_pool)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            incident,
            service,
            kind.as_str(),
            audience,
            outbox_id,
            secs(now),
            codes
        ],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
         SELECT ?1, email, name, language, timezone, vars, ?3 FROM recipients r
         WHERE campaign_id = ?2 AND status = 'sent'
           AND NOT EXISTS (SELECT 1 FROM optouts o WHERE o.email = lower(trim(r.email)))
           AND NOT EXISTS (SELECT 1 FROM service_optouts o WHERE o.email = lower(trim(r.email))
                           AND o.service = (SELECT service FROM campaigns WHERE id = ?2))",
        params![id, outage, secs(now)],
    )?;
    // Those told of this outage within another outage's message (merged) follow it too.
    tx.execute(
        "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
         SELECT ?1, r.email, r.name, r.language, r.timezone, r.vars, ?3
         FROM campaign_merges m JOIN recipients r ON r.id = m.into_recipient
         WHERE m.campaign_id = ?2 AND r.status = 'sent'
           AND NOT EXISTS (SELECT 1 FROM optouts o WHERE o.email = lower(trim(r.email)))
           AND NOT EXISTS (SELECT 1 FROM service_optouts o WHERE o.email = lower(trim(r.email))
                           AND o.service = (SELECT service FROM campaigns WHERE id = ?2))",
        params![id, outage, secs(now)],
    )?;
    if kind == CampaignKind::Recovery && recovery_last {
        // One recovery message per customer, when the last of the services their outage
        // message named is back: not yet for those with another still down, and not
        // again for those another service's recovery holds already (services back at
        // the same moment: the first recovery made takes them).
        tx.execute(
            tx.pick(
                "DELETE FROM recipients WHERE campaign_id = ?1 AND json_extract(vars, '$._group') IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM json_each(json_extract(vars, '$._group')) g
                            WHERE json_extract(g.value, '$[0]') != ?2
                              AND EXISTS (SELECT 1 FROM incidents i
                                          WHERE i.service = json_extract(g.value, '$[0]') AND i.ended_at IS NULL))
                    OR EXISTS (SELECT 1 FROM recipients o JOIN campaigns c ON c.id = o.campaign_id
                               WHERE c.kind = 'recovery' AND c.id != ?1
                                 AND o.email = recipients.email AND o.vars = recipients.vars
                                 AND c.created_at >= (SELECT created_at FROM campaigns WHERE id = ?3)))",
                "DELETE FROM recipients WHERE campaign_id = ?1 AND (vars::jsonb ->> '_group') IS NOT NULL AND (
                    EXISTS (SELECT 1 FROM jsonb_array_elements((vars::jsonb ->> '_group')::jsonb) g
                            WHERE (g.value ->> 0) != ?2
                              AND EXISTS (SELECT 1 FROM incidents i
                                          WHERE i.service = (g.value ->> 0) AND i.ended_at IS NULL))
                    OR EXISTS (SELECT 1 FROM recipients o JOIN campaigns c ON c.id = o.campaign_id
                               WHERE c.kind = 'recovery' AND c.id != ?1
                                 AND o.email = recipients.email AND o.vars = recipients.vars
                                 AND c.created_at >= (SELECT created_at FROM campaigns WHERE id = ?3)))",
            ),
            params![id, service, outage],
        )?;
    }
    // Those told of the outage who have unsubscribed since are left out, and counted.
    tx.execute(
        "UPDATE campaigns SET opted_out = (
            SELECT count(*) FROM recipients r WHERE campaign_id = ?2 AND status = 'sent'
              AND (EXISTS (SELECT 1 FROM optouts o WHERE o.email = lower(trim(r.email)))
                OR EXISTS (SELECT 1 FROM service_optouts o WHERE o.email = lower(trim(r.email))
                           AND o.service = (SELECT service FROM campaigns WHERE id = ?2))))
         WHERE id = ?1",
        params![id, outage],
    )?;
    let mut short = 0;
    if let Some(pool) = codes {
        let ids: Vec<i64> = {
            let mut stmt =
                tx.prepare("SELECT id FROM recipients WHERE campaign_id = ?1 ORDER BY id")?;
            stmt.query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for rid in ids {
            let code: Option<String> = tx
                .query_row(
                    tx.pick(
                        "SELECT code FROM compensation_codes WHERE pool = ?1 AND recipient_id IS NULL ORDER BY rowid LIMIT 1",
                        "SELECT code FROM compensation_codes WHERE pool = ?1 AND recipient_id IS NULL ORDER BY seq LIMIT 1",
                    ),
                    [pool],
                    |r| r.get(0),
                )
                .optional()?;
            match code {
                Some(code) => {
                    tx.execute(
                        "UPDATE compensation_codes SET recipient_id = ?2, assigned_at = ?3 WHERE code = ?1",
                        params![code, rid, secs(now)],
                    )?;
                    tx.execute(
                        "UPDATE recipients SET compensation_code = ?2 WHERE id = ?1",
                        params![rid, code],
                    )?;
                }
                None => short += 1,
            }
        }
    }
    Ok((id, short))
}

fn existing(tx: &Db, outbox_id: i64) -> Result<Option<i64>, StoreError> {
    tx.query_row(
        "SELECT id FROM campaigns WHERE outbox_id = ?1",
        [outbox_id],
        |r| r.get(0),
    )
    .optional()
}
