//! SQL helpers that more than one part of the SQLite backend uses inside its
//! transactions.

use std::time::SystemTime;

use super::db::Db;
use super::db::OptionalExt;
use rusqlite::params;

use super::{StoreError, secs};
use crate::incident::TimelineEvent;

/// The store id of a service's incident `seq`.
pub(super) fn incident_id(tx: &Db, service: &str, seq: u64) -> Result<Option<i64>, StoreError> {
    tx.query_row(
        "SELECT id FROM incidents WHERE service = ?1 AND seq = ?2",
        params![service, seq as i64],
        |r| r.get(0),
    )
    .optional()
}

/// Adds `event` to incident `incident`'s timeline: the typed data, and beside it the
/// name and the line staff read (for anyone reading the database by hand).
pub(super) fn timeline(
    conn: &Db,
    incident: i64,
    now: SystemTime,
    event: &TimelineEvent,
) -> Result<usize, StoreError> {
    let data = serde_json::to_string(event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.execute(
        "INSERT INTO incident_events (incident_id, at, kind, detail, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![incident, secs(now), event.kind(), event.detail(), data],
    )
}
