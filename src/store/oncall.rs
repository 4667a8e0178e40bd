//! On-call overrides: someone else takes a rotation's turns for a while, set by staff
//! through the API or the CLI, kept so that a restart keeps them.

use std::time::SystemTime;

use rusqlite::params;

use super::{OncallStore, SqlStore, StoreError, from_secs, secs};
use crate::oncall::Override;

impl OncallStore for SqlStore {
    fn add_override(&mut self, o: &Override, now: SystemTime) -> Result<i64, StoreError> {
        self.conn.insert(
            "INSERT INTO oncall_overrides (rotation, who, start_at, end_at, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                o.rotation,
                o.who,
                secs(o.from),
                secs(o.until),
                o.by,
                secs(now)
            ],
        )
    }

    fn cancel_override(&mut self, id: i64, now: SystemTime) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE oncall_overrides SET cancelled_at = ?2 WHERE id = ?1 AND cancelled_at IS NULL",
            params![id, secs(now)],
        )?;
        Ok(n == 1)
    }

    fn overrides(&self, now: SystemTime) -> Result<Vec<Override>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, rotation, who, start_at, end_at, created_by FROM oncall_overrides
             WHERE cancelled_at IS NULL AND end_at > ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![secs(now)], |r| {
                Ok(Override {
                    id: r.get(0)?,
                    rotation: r.get(1)?,
                    who: r.get(2)?,
                    from: from_secs(r.get(3)?),
                    until: from_secs(r.get(4)?),
                    by: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
