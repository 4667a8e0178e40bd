//! The locations' votes in a cluster (PostgreSQL only): each location writes its latest
//! result of each probe it runs, and whether its own canaries pass; the leader reads what
//! changed since its last read and tallies.

use std::time::Duration;

use rusqlite::params;

use super::{SqlStore, StoreError};

/// One result, as a location writes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VoteIn {
    pub probe: String,
    pub ok: bool,
    /// Why it failed, as JSON (`probe::Reason`).
    pub reason: Option<String>,
    /// How long the run took, in milliseconds.
    pub ms: u64,
}

/// One location's latest result of a probe, as the leader reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteOut {
    pub probe: String,
    pub location: String,
    pub ok: bool,
    pub reason: Option<String>,
    pub ms: u64,
    /// How long ago it was written, by the database's clock.
    pub age: Duration,
}

/// A location's own state: when it last wrote results, and its canaries.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationOut {
    pub location: String,
    /// False when every canary of the location fails: its results do not count.
    pub canaries_ok: bool,
    /// The canaries failing there, in words.
    pub failing: String,
    pub age: Duration,
}

/// Where a reader of votes is: the oldest transaction that could still commit a vote it
/// has not seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteCursor(String);

fn age(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl SqlStore {
    fn votes_need_pg(&self) -> Result<(), StoreError> {
        if self.conn.is_pg() {
            Ok(())
        } else {
            Err(StoreError::Postgres {
                detail:
                    "the locations' votes are kept on PostgreSQL only (`store: postgres://...`)"
                        .into(),
            })
        }
    }

    /// Writes `location`'s latest results (at most one per probe) and its canaries, in
    /// one transaction: one statement whatever their number.
    pub fn write_votes(
        &self,
        location: &str,
        votes: &[VoteIn],
        canaries: (bool, &str),
    ) -> Result<(), StoreError> {
        self.votes_need_pg()?;
        let tx = self.conn.transaction()?;
        if !votes.is_empty() {
            let json = serde_json::to_string(votes).map_err(|e| StoreError::Postgres {
                detail: format!("cannot encode votes: {e}"),
            })?;
            tx.execute(
                "INSERT INTO tocsin_votes (probe, location, ok, reason, ms, at, xid)
                 SELECT v.probe, ?1, v.ok, v.reason, v.ms, clock_timestamp(), pg_current_xact_id()
                 FROM jsonb_to_recordset(?2::text::jsonb) AS v(probe text, ok boolean, reason text, ms bigint)
                 ON CONFLICT (probe, location) DO UPDATE SET
                    ok = excluded.ok, reason = excluded.reason, ms = excluded.ms,
                    at = excluded.at, xid = excluded.xid",
                params![location, json],
            )?;
        }
        tx.execute(
            "INSERT INTO tocsin_locations (location, canaries_ok, failing, at)
             VALUES (?1, ?2, ?3, clock_timestamp())
             ON CONFLICT (location) DO UPDATE SET
                canaries_ok = excluded.canaries_ok, failing = excluded.failing, at = excluded.at",
            params![location, canaries.0, canaries.1],
        )?;
        tx.commit()
    }

    /// The votes written since `cursor` (all of them from the default cursor), and the
    /// cursor for the next read. A vote may come twice; none is missed.
    pub fn read_votes(
        &self,
        cursor: &VoteCursor,
    ) -> Result<(Vec<VoteOut>, VoteCursor), StoreError> {
        self.votes_need_pg()?;
        // Taken first: a transaction older than this has committed before the read below
        // and is seen by it; a younger one is read again next time.
        let next: String = self.conn.query_row(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text",
            (),
            |r| r.get(0),
        )?;
        let from = if cursor.0.is_empty() { "0" } else { &cursor.0 };
        let votes = self.conn.query_map(
            "SELECT probe, location, ok, reason, ms,
                    (extract(epoch FROM clock_timestamp() - at) * 1000)::bigint
             FROM tocsin_votes WHERE xid >= ?1::text::xid8",
            [from],
            |r| {
                Ok(VoteOut {
                    probe: r.get(0)?,
                    location: r.get(1)?,
                    ok: r.get(2)?,
                    reason: r.get(3)?,
                    ms: r.get::<_, i64>(4)?.max(0) as u64,
                    age: age(r.get(5)?),
                })
            },
        )?;
        Ok((votes, VoteCursor(next)))
    }

    /// Every location that ever wrote results.
    pub fn read_locations(&self) -> Result<Vec<LocationOut>, StoreError> {
        self.votes_need_pg()?;
        self.conn.query_map(
            "SELECT location, canaries_ok, failing,
                    (extract(epoch FROM clock_timestamp() - at) * 1000)::bigint
             FROM tocsin_locations ORDER BY location",
            (),
            |r| {
                Ok(LocationOut {
                    location: r.get(0)?,
                    canaries_ok: r.get(1)?,
                    failing: r.get(2)?,
                    age: age(r.get(3)?),
                })
            },
        )
    }

    /// What staff were last told of each location (`live`, `absent`, `abstains`).
    pub fn location_notices(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.votes_need_pg()?;
        self.conn.query_map(
            "SELECT location, told FROM tocsin_location_notices",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// Records what staff were told of `location`.
    pub fn set_location_notice(&self, location: &str, told: &str) -> Result<(), StoreError> {
        self.votes_need_pg()?;
        self.conn.execute(
            "INSERT INTO tocsin_location_notices (location, told) VALUES (?1, ?2)
             ON CONFLICT (location) DO UPDATE SET told = excluded.told",
            params![location, told],
        )?;
        Ok(())
    }
}
