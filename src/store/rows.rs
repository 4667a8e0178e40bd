//! SQL helpers that more than one part of the SQLite backend uses inside its
//! transactions.

use rusqlite::{OptionalExtension, Transaction, params};

/// The store id of a service's incident `seq`.
pub(super) fn incident_id(
    tx: &Transaction,
    service: &str,
    seq: u64,
) -> Result<Option<i64>, rusqlite::Error> {
    tx.query_row(
        "SELECT id FROM incidents WHERE service = ?1 AND seq = ?2",
        params![service, seq as i64],
        |r| r.get(0),
    )
    .optional()
}
