//! Planned maintenance in the store: windows added through the API (those in
//! probes.yaml live there), and the notices sent for every window, each campaign
//! created in the transaction that records its notice, so a notice is sent once.

use std::time::{Duration, SystemTime};

use super::db::OptionalExt;
use rusqlite::params;

use super::campaigns::{CampaignKind, NewRecipient, insert_recipients};
use super::{MaintenanceStore, SqlStore, StoreError, from_secs, secs};
use crate::config::Maintenance;

/// A notice about a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Sent `Duration` before the start (one of `announce_before`).
    Before(Duration),
    /// The window ended with the service working.
    Completed,
}

impl Notice {
    fn key(&self) -> String {
        match self {
            Notice::Before(d) => format!("before:{}", d.as_secs()),
            Notice::Completed => "completed".into(),
        }
    }
}

impl MaintenanceStore for SqlStore {
    fn add_window(
        &mut self,
        m: &Maintenance,
        by: &str,
        now: SystemTime,
    ) -> Result<i64, StoreError> {
        let before: Vec<u64> = m.announce_before.iter().map(|d| d.as_secs()).collect();
        self.conn.insert(
            "INSERT INTO maintenance_windows (service, start_at, end_at, announce_before, note, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.service,
                secs(m.start),
                secs(m.end()),
                serde_json::to_string(&before).unwrap_or_else(|_| "[]".into()),
                m.note,
                by,
                secs(now)
            ],
        )
    }

    fn cancel_window(&mut self, id: i64, now: SystemTime) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE maintenance_windows SET cancelled_at = ?2 WHERE id = ?1 AND cancelled_at IS NULL",
            params![id, secs(now)],
        )? > 0)
    }

    fn windows(&self, now: SystemTime) -> Result<Vec<Maintenance>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, service, start_at, end_at, announce_before, note FROM maintenance_windows
             WHERE cancelled_at IS NULL AND end_at > ?1 ORDER BY start_at, id",
        )?;
        let rows = stmt.query_map([secs(now) - 86_400.0], |r| {
            let start = from_secs(r.get(2)?);
            let end = from_secs(r.get(3)?);
            let before: String = r.get(4)?;
            let before: Vec<u64> = serde_json::from_str(&before).unwrap_or_default();
            Ok(Maintenance {
                id: Some(r.get(0)?),
                service: r.get(1)?,
                start,
                duration: end.duration_since(start).unwrap_or_default(),
                announce_before: before.into_iter().map(Duration::from_secs).collect(),
                note: r.get(5)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
    }

    fn notices(&self, key: &str) -> Result<Vec<(String, Option<i64>)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT notice, campaign_id FROM maintenance_notices WHERE window_key = ?1 ORDER BY at",
        )?;
        let rows = stmt.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()
    }

    #[allow(clippy::too_many_arguments)]
    fn maintenance_campaign(
        &mut self,
        m: &Maintenance,
        notice: &Notice,
        skipped: &[Notice],
        audience: &str,
        recipients: &[NewRecipient],
        invalid: u64,
        now: SystemTime,
    ) -> Result<Option<i64>, StoreError> {
        let key = m.key();
        let tx = self.conn.transaction()?;
        let done: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM maintenance_notices WHERE window_key = ?1 AND notice = ?2",
                params![key, notice.key()],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            return Ok(None);
        }
        for s in skipped {
            tx.execute(
                "INSERT OR IGNORE INTO maintenance_notices (window_key, notice, campaign_id, at) VALUES (?1, ?2, NULL, ?3)",
                params![key, s.key(), secs(now)],
            )?;
        }
        let kind = match notice {
            Notice::Before(_) => CampaignKind::Maintenance,
            Notice::Completed => CampaignKind::MaintenanceDone,
        };
        let id = tx.insert(
            "INSERT INTO campaigns (incident_id, service, kind, audience, outbox_id, created_at, invalid, window_key, window_start, window_end, window_note)
             VALUES (NULL, ?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                m.service,
                kind.as_str(),
                audience,
                secs(now),
                invalid as i64,
                key,
                secs(m.start),
                secs(m.end()),
                m.note
            ],
        )?;
        let inserted = match notice {
            Notice::Completed => tx.execute(
                "INSERT OR IGNORE INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at)
                 SELECT ?1, email, name, language, timezone, vars, ?3 FROM recipients r
                 WHERE status = 'sent' AND campaign_id IN (SELECT id FROM campaigns WHERE window_key = ?2 AND kind = 'maintenance')
                   AND NOT EXISTS (SELECT 1 FROM optouts o WHERE o.email = lower(trim(r.email)))",
                params![id, key, secs(now)],
            )?,
            Notice::Before(_) => {
                let (n, _) = insert_recipients(&tx, id, recipients, now, None)?;
                tx.execute(
                    "UPDATE campaigns SET opted_out = ?2 WHERE id = ?1",
                    params![id, (recipients.len() - n) as i64],
                )?;
                n
            }
        };
        let campaign = (inserted > 0).then_some(id);
        if inserted == 0 {
            tx.execute("DELETE FROM campaigns WHERE id = ?1", [id])?;
        }
        tx.execute(
            "INSERT INTO maintenance_notices (window_key, notice, campaign_id, at) VALUES (?1, ?2, ?3, ?4)",
            params![key, notice.key(), campaign, secs(now)],
        )?;
        tx.commit()?;
        Ok(campaign)
    }

    fn maintenance_not_sent(
        &mut self,
        m: &Maintenance,
        notices: &[Notice],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for n in notices {
            tx.execute(
                "INSERT OR IGNORE INTO maintenance_notices (window_key, notice, campaign_id, at) VALUES (?1, ?2, NULL, ?3)",
                params![m.key(), n.key(), secs(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn maintenance_superseded(
        &mut self,
        m: &Maintenance,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO maintenance_notices (window_key, notice, campaign_id, at) VALUES (?1, 'completed', NULL, ?2)",
            params![m.key(), secs(now)],
        )?;
        Ok(())
    }
}
