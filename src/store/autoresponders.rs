//! What tocsin did to each mailbox's Sieve scripts, so that recovery restores exactly
//! what was there, whatever crashed in between.

use std::time::SystemTime;

use super::db::OptionalExt;
use rusqlite::params;

use super::rows::timeline;
use super::{AutoresponderStore, SqlStore, StoreError, secs};
use crate::incident::TimelineEvent;

/// One mailbox tocsin has touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoresponderRecord {
    pub mailbox: String,
    /// The script that was active before tocsin's; `None`: none was.
    pub previous: Option<String>,
    /// Hash of the script tocsin installed and activated; `None`: recorded the previous
    /// script, activation not yet confirmed.
    pub script_hash: Option<String>,
}

impl AutoresponderStore for SqlStore {
    fn autoresponders(&self) -> Result<Vec<AutoresponderRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT mailbox, previous, script_hash FROM autoresponders ORDER BY mailbox",
        )?;
        let rows = stmt.query_map((), |r| {
            Ok(AutoresponderRecord {
                mailbox: r.get(0)?,
                previous: r.get(1)?,
                script_hash: r.get(2)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
    }

    fn autoresponder(&self, mailbox: &str) -> Result<Option<AutoresponderRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT mailbox, previous, script_hash FROM autoresponders WHERE mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(AutoresponderRecord {
                        mailbox: r.get(0)?,
                        previous: r.get(1)?,
                        script_hash: r.get(2)?,
                    })
                },
            )
            .optional()
    }

    fn autoresponder_previous(
        &mut self,
        mailbox: &str,
        previous: Option<&str>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO autoresponders (mailbox, previous, script_hash, updated_at) VALUES (?1, ?2, NULL, ?3)
             ON CONFLICT (mailbox) DO NOTHING",
            params![mailbox, previous, secs(now)],
        )?;
        Ok(())
    }

    fn autoresponder_installed(
        &mut self,
        mailbox: &str,
        hash: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE autoresponders SET script_hash = ?2, updated_at = ?3 WHERE mailbox = ?1",
            params![mailbox, hash, secs(now)],
        )?;
        Ok(())
    }

    fn autoresponder_removed(&mut self, mailbox: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM autoresponders WHERE mailbox = ?1", [mailbox])?;
        Ok(())
    }

    fn note_once(
        &mut self,
        incident: i64,
        event: &TimelineEvent,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let there: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM incident_events WHERE incident_id = ?1 AND kind = ?2)",
            params![incident, event.kind()],
            |r| r.get(0),
        )?;
        if there {
            return Ok(false);
        }
        timeline(&tx, incident, now, event)?;
        tx.commit()?;
        Ok(true)
    }

    fn note_customer_phase(
        &mut self,
        event: &TimelineEvent,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let open: Vec<i64> = tx
            .prepare("SELECT id FROM incidents WHERE ended_at IS NULL AND customer_phase = 1")?
            .query_map((), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for incident in open {
            timeline(&tx, incident, now, event)?;
        }
        tx.commit()?;
        Ok(())
    }
}
