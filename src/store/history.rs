//! What probes found, kept an hour at a time per service: the status page's uptime
//! history (a day before tocsin watched a service is "no data", never 100%) and its
//! response-time sparklines. The engine adds up each hour in memory ([`Hours`]) and
//! writes the sums every minute, so 100,000 probes cost one small transaction a minute.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rusqlite::params;

use super::{HistoryStore, IncidentRecord, SqlStore, StoreError, secs};

/// Hours kept: a year and a month, more than any page shows.
pub const KEPT: Duration = Duration::from_secs(400 * 86_400);

/// One service's probe runs in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Hour {
    pub runs: u64,
    pub failures: u64,
    /// Sum and maximum of the runs' durations, in milliseconds.
    pub total_ms: f64,
    pub max_ms: f64,
}

impl Hour {
    fn add(&mut self, o: &Hour) {
        self.runs += o.runs;
        self.failures += o.failures;
        self.total_ms += o.total_ms;
        self.max_ms = self.max_ms.max(o.max_ms);
    }

    /// The mean duration of a run, in milliseconds.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.total_ms / self.runs as f64)
    }
}

/// The hours not written yet, by service and hour (Unix seconds at the hour's start).
/// Keyed by service first so that a report finds its entry without allocating.
#[derive(Debug, Default)]
pub struct Hours(HashMap<String, HashMap<i64, Hour>>);

impl Hours {
    /// One probe run of `service` at `at`; true when it is the first of its service and
    /// hour not written yet (worth writing soon: the page then knows the hour was watched).
    pub fn add(&mut self, service: &str, at: SystemTime, ok: bool, took: Duration) -> bool {
        let hour = hour_of(at);
        let ms = took.as_secs_f64() * 1000.0;
        let run = Hour {
            runs: 1,
            failures: u64::from(!ok),
            total_ms: ms,
            max_ms: ms,
        };
        let hours = match self.0.get_mut(service) {
            Some(h) => h,
            None => self.0.entry(service.to_string()).or_default(),
        };
        match hours.get_mut(&hour) {
            Some(h) => {
                h.add(&run);
                false
            }
            None => {
                hours.insert(hour, run);
                true
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Everything gathered, leaving nothing.
    pub fn take(&mut self) -> Vec<(String, i64, Hour)> {
        self.0
            .drain()
            .flat_map(|(s, hours)| hours.into_iter().map(move |(h, x)| (s.clone(), h, x)))
            .collect()
    }

    /// Gives back what could not be written, to be written with the next.
    pub fn put_back(&mut self, rows: Vec<(String, i64, Hour)>) {
        for (s, h, x) in rows {
            self.0.entry(s).or_default().entry(h).or_default().add(&x);
        }
    }
}

/// The start of `t`'s hour, in Unix seconds.
pub fn hour_of(t: SystemTime) -> i64 {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    s - s.rem_euclid(3600)
}

impl HistoryStore for SqlStore {
    fn add_probe_hours(
        &mut self,
        rows: &[(String, i64, Hour)],
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            // SQLite's max(a, b) is PostgreSQL's greatest(a, b).
            let sql = format!(
                "INSERT INTO probe_hours (service, hour, runs, failures, total_ms, max_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (service, hour) DO UPDATE SET
                    runs = probe_hours.runs + excluded.runs,
                    failures = probe_hours.failures + excluded.failures,
                    total_ms = probe_hours.total_ms + excluded.total_ms,
                    max_ms = {}(probe_hours.max_ms, excluded.max_ms)",
                tx.pick("max", "greatest")
            );
            let mut stmt = tx.prepare(&sql)?;
            for (service, hour, h) in rows {
                stmt.execute(params![
                    service,
                    hour,
                    h.runs as i64,
                    h.failures as i64,
                    h.total_ms,
                    h.max_ms
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM probe_hours WHERE hour < ?1",
            [hour_of(now - KEPT)],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn probe_hours(
        &self,
        service: &str,
        since: SystemTime,
    ) -> Result<BTreeMap<i64, Hour>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT hour, runs, failures, total_ms, max_ms FROM probe_hours WHERE service = ?1 AND hour >= ?2",
        )?;
        let rows = stmt.query_map(params![service, hour_of(since)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Hour {
                    runs: r.get::<_, i64>(1)? as u64,
                    failures: r.get::<_, i64>(2)? as u64,
                    total_ms: r.get(3)?,
                    max_ms: r.get(4)?,
                },
            ))
        })?;
        rows.collect::<Result<_, _>>()
    }

    fn incidents_between(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        self.select(
            "WHERE started_at <= ?2 AND (ended_at IS NULL OR ended_at >= ?1)",
            params![secs(from), secs(to)],
        )
    }
}
