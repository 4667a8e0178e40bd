//! Heartbeats: each one's secret token and the pings it received, so that a deadline
//! survives a restart and a token stays the one the job's crontab was given.

use std::time::SystemTime;

use super::db::OptionalExt;
use super::db::Row;
use rusqlite::params;

use super::rows::timeline;
use super::{HeartbeatStore, SqlStore, StoreError, from_secs, secs};
use crate::incident::TimelineEvent;
use crate::probe::heartbeat::{PingState, Signal};

/// One heartbeat as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatRecord {
    pub service: String,
    pub probe: String,
    /// The secret in its ping URL (`/ping/TOKEN`).
    pub token: String,
    pub state: PingState,
}

const COLUMNS: &str =
    "service, probe, token, created_at, last_ok_at, last_at, last_signal, last_body, started_at";

fn record(r: &Row) -> rusqlite::Result<HeartbeatRecord> {
    let last_at: Option<f64> = r.get(5)?;
    let signal: Option<String> = r.get(6)?;
    let last = match (last_at, signal.as_deref().and_then(Signal::parse)) {
        (Some(at), Some(signal)) => Some((from_secs(at), signal, r.get(7)?)),
        _ => None,
    };
    Ok(HeartbeatRecord {
        service: r.get(0)?,
        probe: r.get(1)?,
        token: r.get(2)?,
        state: PingState {
            since: from_secs(r.get(3)?),
            last_ok: r.get::<_, Option<f64>>(4)?.map(from_secs),
            last,
            started: r.get::<_, Option<f64>>(8)?.map(from_secs),
        },
    })
}

impl HeartbeatStore for SqlStore {
    fn heartbeat_sync(
        &mut self,
        wanted: &[(String, String)],
        new_token: &mut dyn FnMut() -> String,
        now: SystemTime,
    ) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let tx = self.conn.transaction()?;
        let kept: Vec<(String, String)> = tx
            .prepare("SELECT service, probe FROM heartbeats")?
            .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for gone in kept.iter().filter(|k| !wanted.contains(k)) {
            tx.execute(
                "DELETE FROM heartbeats WHERE service = ?1 AND probe = ?2",
                params![gone.0, gone.1],
            )?;
        }
        for (service, probe) in wanted.iter().filter(|w| !kept.contains(w)) {
            tx.execute(
                "INSERT INTO heartbeats (service, probe, token, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![service, probe, new_token(), secs(now)],
            )?;
        }
        tx.commit()?;
        self.heartbeats()
    }

    fn heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM heartbeats ORDER BY service, probe"
        ))?;
        let rows = stmt.query_map((), record)?;
        rows.collect::<Result<_, _>>()
    }

    fn heartbeat(&self, service: &str, probe: &str) -> Result<Option<HeartbeatRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM heartbeats WHERE service = ?1 AND probe = ?2"),
                params![service, probe],
                record,
            )
            .optional()
    }

    fn heartbeat_ping(
        &mut self,
        token: &str,
        signal: Signal,
        body: Option<&str>,
        now: SystemTime,
    ) -> Result<Option<HeartbeatRecord>, StoreError> {
        let tx = self.conn.transaction()?;
        let at = secs(now);
        let changed = match signal {
            Signal::Success => tx.execute(
                "UPDATE heartbeats SET last_ok_at = ?2, last_at = ?2, last_signal = ?3, last_body = ?4, started_at = NULL WHERE token = ?1",
                params![token, at, signal.name(), body],
            )?,
            Signal::Start => tx.execute(
                "UPDATE heartbeats SET last_at = ?2, last_signal = ?3, last_body = ?4, started_at = ?2 WHERE token = ?1",
                params![token, at, signal.name(), body],
            )?,
            Signal::Fail { .. } => tx.execute(
                "UPDATE heartbeats SET last_at = ?2, last_signal = ?3, last_body = ?4, started_at = NULL WHERE token = ?1",
                params![token, at, signal.name(), body],
            )?,
        };
        if changed == 0 {
            return Ok(None);
        }
        let rec = tx.query_row(
            &format!("SELECT {COLUMNS} FROM heartbeats WHERE token = ?1"),
            [token],
            record,
        )?;
        let open: Option<i64> = tx
            .query_row(
                "SELECT id FROM incidents WHERE service = ?1 AND ended_at IS NULL",
                [&rec.service],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(incident) = open {
            let event = TimelineEvent::HeartbeatPing {
                probe: rec.probe.clone(),
                signal: signal.name(),
                body: body.map(str::to_string),
            };
            timeline(&tx, incident, now, &event)?;
        }
        tx.commit()?;
        Ok(Some(rec))
    }
}
