//! The SQLite store: one file in `data_dir`, WAL journal, schema versions in
//! `user_version`, and an exclusive lock held for the process's life, so two tocsins
//! pointed at the same `data_dir` cannot both send.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::db::Db;
use super::db::OptionalExt;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use super::rows::{incident_id, timeline};
use super::{
    Context, IncidentRecord, IncidentStore, States, StoreError, TimelineEntry, from_secs, secs,
};
use crate::incident::{Action, ServiceState, TimelineEvent};

/// Schema migrations, applied in order; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: states, incidents with their timeline, and the outbox.
    "CREATE TABLE services (
        service    TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE incidents (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        service        TEXT NOT NULL,
        seq            INTEGER NOT NULL,
        started_at     REAL NOT NULL,
        ended_at       REAL,
        acked_by       TEXT,
        acked_at       REAL,
        eta            REAL,
        customer_phase INTEGER NOT NULL DEFAULT 0,
        UNIQUE (service, seq)
    );
    CREATE TABLE incident_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        at          REAL NOT NULL,
        kind        TEXT NOT NULL,
        detail      TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        service         TEXT NOT NULL,
        incident_id     INTEGER REFERENCES incidents (id),
        action          TEXT NOT NULL,
        created_at      REAL NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        done_at         REAL
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);",
    // 2: process-wide secrets and settings (the key that signs links in mails).
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );",
    // 3: customer campaigns, one row per recipient, and opt-outs; the promise made to
    // customers (ETA or next-update time) kept on the incident.
    "ALTER TABLE incidents ADD COLUMN promised_eta REAL;
    ALTER TABLE incidents ADD COLUMN next_update REAL;
    CREATE TABLE campaigns (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        service     TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('outage', 'update', 'recovery')),
        audience    TEXT NOT NULL,
        outbox_id   INTEGER NOT NULL UNIQUE,
        created_at  REAL NOT NULL,
        opted_out   INTEGER NOT NULL DEFAULT 0,
        invalid     INTEGER NOT NULL DEFAULT 0,
        note        TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE recipients (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        campaign_id     INTEGER NOT NULL REFERENCES campaigns (id),
        email           TEXT NOT NULL,
        name            TEXT NOT NULL,
        language        TEXT NOT NULL,
        timezone        TEXT NOT NULL,
        vars            TEXT NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        sent_at         REAL,
        UNIQUE (campaign_id, email)
    );
    CREATE INDEX recipients_due ON recipients (status, next_attempt_at);
    CREATE TABLE optouts (
        email TEXT PRIMARY KEY,
        at    REAL NOT NULL
    );",
    // 4: autoresponders installed over ManageSieve: per mailbox, the script that was
    // active before tocsin's (recorded before tocsin's is activated) and what was installed.
    "CREATE TABLE autoresponders (
        mailbox     TEXT PRIMARY KEY,
        previous    TEXT,
        script_hash TEXT,
        updated_at  REAL NOT NULL
    );",
    // 5: incident webhooks: one delivery per transition and receiver, written in the
    // transaction that decided the transition, sent and retried by the webhook sender.
    "CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        url             TEXT NOT NULL,
        event           TEXT NOT NULL,
        incident_id     INTEGER REFERENCES incidents (id),
        body            TEXT NOT NULL,
        created_at      REAL NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        done_at         REAL
    );
    CREATE INDEX webhook_due ON webhook_deliveries (status, next_attempt_at);",
    // 6: compensation codes: a pool per codes file, each code given to one recipient.
    "CREATE TABLE compensation_codes (
        code         TEXT PRIMARY KEY,
        pool         TEXT NOT NULL,
        recipient_id INTEGER UNIQUE,
        assigned_at  REAL
    );
    CREATE INDEX compensation_free ON compensation_codes (pool, recipient_id);
    ALTER TABLE recipients ADD COLUMN compensation_code TEXT;",
    // 7: planned maintenance: windows added through the API (those in probes.yaml stay
    // there), the notices sent for each window, and campaigns that belong to a window
    // rather than an incident (the table is rebuilt to widen its kinds; see migrate).
    "CREATE TABLE campaigns_v7 (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id  INTEGER REFERENCES incidents (id),
        service      TEXT NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('outage', 'update', 'recovery', 'maintenance', 'maintenance_done')),
        audience     TEXT NOT NULL,
        outbox_id    INTEGER UNIQUE,
        created_at   REAL NOT NULL,
        opted_out    INTEGER NOT NULL DEFAULT 0,
        invalid      INTEGER NOT NULL DEFAULT 0,
        note         TEXT NOT NULL DEFAULT '',
        window_key   TEXT,
        window_start REAL,
        window_end   REAL
    );
    INSERT INTO campaigns_v7 (id, incident_id, service, kind, audience, outbox_id, created_at, opted_out, invalid, note)
        SELECT id, incident_id, service, kind, audience, outbox_id, created_at, opted_out, invalid, note FROM campaigns;
    DROP TABLE campaigns;
    ALTER TABLE campaigns_v7 RENAME TO campaigns;
    CREATE TABLE maintenance_windows (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        service         TEXT NOT NULL,
        start_at        REAL NOT NULL,
        end_at          REAL NOT NULL,
        announce_before TEXT NOT NULL,
        note            TEXT NOT NULL DEFAULT '',
        created_by      TEXT NOT NULL,
        created_at      REAL NOT NULL,
        cancelled_at    REAL
    );
    CREATE TABLE maintenance_notices (
        window_key  TEXT NOT NULL,
        notice      TEXT NOT NULL,
        campaign_id INTEGER,
        at          REAL NOT NULL,
        PRIMARY KEY (window_key, notice)
    );",
    // 8: the timeline is typed: each entry's data as JSON beside the text staff read.
    // Entries written before have none and are read as they were written.
    "ALTER TABLE incident_events ADD COLUMN data TEXT;",
    // 9: the outbox in two steps. A decision is written with the context its notifiers
    // need (older ones have none and are carried out with the running config); the
    // dispatcher fans it out into deliveries, one per channel and target. Webhook
    // deliveries queued before keep their ids, bodies and state.
    "ALTER TABLE outbox ADD COLUMN context TEXT;
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        outbox_id       INTEGER REFERENCES outbox (id),
        channel         TEXT NOT NULL CHECK (channel IN ('staff_mail', 'campaign', 'webhook')),
        target          TEXT NOT NULL DEFAULT '',
        incident_id     INTEGER REFERENCES incidents (id),
        queued_event    TEXT,
        queued_body     TEXT,
        created_at      REAL NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        done_at         REAL,
        UNIQUE (outbox_id, channel, target)
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    INSERT INTO deliveries (id, channel, target, incident_id, queued_event, queued_body, created_at,
                            status, attempts, next_attempt_at, last_error, done_at)
        SELECT id, 'webhook', url, incident_id, event, body, created_at,
               status, attempts, next_attempt_at, last_error, done_at
        FROM webhook_deliveries ORDER BY id;
    DROP TABLE webhook_deliveries;",
    // 10: heartbeats (push monitors): the secret token each is pinged at, and its pings.
    "CREATE TABLE heartbeats (
        service     TEXT NOT NULL,
        probe       TEXT NOT NULL,
        token       TEXT NOT NULL UNIQUE,
        created_at  REAL NOT NULL,
        last_ok_at  REAL,
        last_at     REAL,
        last_signal TEXT,
        last_body   TEXT,
        started_at  REAL,
        PRIMARY KEY (service, probe)
    );",
    // 11: a customer's mails go out in the order they were decided: finding an older
    // pending row for the same address must not scan the campaign.
    "CREATE INDEX recipients_by_address ON recipients (email, status, id);",
    // 12: a maintenance notice says what is done: the window's note, kept with it.
    "ALTER TABLE campaigns ADD COLUMN window_note TEXT;",
    // 13: the code pool a recovery campaign drew from, so those it left without a code
    // can be listed.
    "ALTER TABLE campaigns ADD COLUMN code_pool TEXT;",
    // 14: an outage campaign is expanded from its audience a batch at a time; until the
    // last batch, where reading stopped (NULL once expanded), and nothing of it is sent.
    "ALTER TABLE campaigns ADD COLUMN expansion TEXT;",
    // 15: chat and paging channels get deliveries of their own (the channel CHECK is
    // widened, which SQLite does by rebuilding the table, ids kept); and on-call
    // overrides set through the API: someone else takes a rotation's turns for a while.
    "CREATE TABLE deliveries_new (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        outbox_id       INTEGER REFERENCES outbox (id),
        channel         TEXT NOT NULL CHECK (channel IN ('staff_mail', 'campaign', 'webhook', 'chat')),
        target          TEXT NOT NULL DEFAULT '',
        incident_id     INTEGER REFERENCES incidents (id),
        queued_event    TEXT,
        queued_body     TEXT,
        created_at      REAL NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        done_at         REAL,
        UNIQUE (outbox_id, channel, target)
    );
    INSERT INTO deliveries_new SELECT id, outbox_id, channel, target, incident_id, queued_event,
        queued_body, created_at, status, attempts, next_attempt_at, last_error, done_at
        FROM deliveries ORDER BY id;
    DELETE FROM sqlite_sequence WHERE name = 'deliveries_new';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'deliveries_new', seq FROM sqlite_sequence WHERE name = 'deliveries';
    DROP TABLE deliveries;
    ALTER TABLE deliveries_new RENAME TO deliveries;
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE TABLE oncall_overrides (
        id          INTEGER PRIMARY KEY,
        rotation    TEXT NOT NULL,
        who         TEXT NOT NULL,
        start_at    REAL NOT NULL,
        end_at      REAL NOT NULL,
        created_by  TEXT NOT NULL,
        created_at  REAL NOT NULL,
        cancelled_at REAL
    );
    CREATE INDEX oncall_overrides_end ON oncall_overrides (end_at);",
    // 16: what probes found, an hour per row and service: uptime history and response
    // times for the status page, and when tocsin began to watch each service.
    "CREATE TABLE probe_hours (
        service  TEXT NOT NULL,
        hour     INTEGER NOT NULL,
        runs     INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        total_ms REAL NOT NULL,
        max_ms   REAL NOT NULL,
        PRIMARY KEY (service, hour)
    ) WITHOUT ROWID;
    CREATE INDEX probe_hours_by_hour ON probe_hours (hour);",
    // 17: customers who subscribed on the status page (double opt-in), the requests
    // counted for rate limits, and addresses that stopped the notices of one service.
    "CREATE TABLE subscribers (
        email        TEXT PRIMARY KEY,
        address      TEXT NOT NULL,
        language     TEXT NOT NULL,
        timezone     TEXT NOT NULL,
        services     TEXT NOT NULL,
        confirmed_at REAL,
        pending      TEXT,
        requested_at REAL NOT NULL
    );
    CREATE TABLE subscribe_requests (
        key TEXT NOT NULL,
        at  REAL NOT NULL
    );
    CREATE INDEX subscribe_requests_by_key ON subscribe_requests (key, at);
    CREATE TABLE service_optouts (
        email   TEXT NOT NULL,
        service TEXT NOT NULL,
        at      REAL NOT NULL,
        PRIMARY KEY (email, service)
    ) WITHOUT ROWID;",
    // 18: a customer of an outage campaign told within another's message instead, when
    // services they follow went down together (`campaigns.merge_window`).
    "CREATE TABLE campaign_merges (
        campaign_id    INTEGER NOT NULL REFERENCES campaigns (id),
        email          TEXT NOT NULL,
        into_recipient INTEGER NOT NULL REFERENCES recipients (id),
        PRIMARY KEY (campaign_id, email)
    );
    CREATE INDEX campaign_merges_into ON campaign_merges (into_recipient);",
];

/// `data_dir`: tocsin's alone, except that others may pass through it to what it
/// publishes (nginx reads `www/` by path; nobody else may list the directory or read
/// the database). Any group or other read or write bit is taken away.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    let wanted = (mode & 0o711) | 0o700;
    if mode != wanted {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}

/// `create`: makes `path` empty with mode 0600 (it did not exist); else makes the
/// existing file 0600.
fn private_file(path: &Path, create: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(|_| ())
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
}

/// The store on one database: the SQLite file in `data_dir`, or PostgreSQL (see
/// `postgres.rs` for how that one is opened). Every part of the store is written once,
/// against [`Db`].
pub struct SqlStore {
    pub(super) conn: Db,
    /// The file, or the server's address (`postgres://host:port/db`), for messages.
    place: String,
}

impl SqlStore {
    /// Opens (creating if needed) the database at `path`, checks that it is tocsin's,
    /// takes the exclusive lock and applies pending migrations. A file that is not a
    /// database, or one in use, is reported and left untouched.
    pub fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                detail: e.to_string(),
            })?;
            private_dir(dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                detail: e.to_string(),
            })?;
        }
        // The database holds the key that signs ack and unsubscribe links: readable by
        // tocsin alone, whatever the umask. SQLite gives its WAL and shared-memory files
        // the database's mode.
        let private = |created: bool| {
            private_file(path, created).map_err(|e| StoreError::Open {
                path: name.clone(),
                detail: e.to_string(),
            })
        };
        if !path.exists() {
            private(true)?;
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(|e| StoreError::Open {
            path: name.clone(),
            detail: e.to_string(),
        })?;
        let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
                path: name.clone(),
                detail: e.to_string(),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Locked { path: name.clone() }
            }
            _ => StoreError::Sqlite(e),
        };
        // The lock is exclusive for the process's life: waiting for it would only delay
        // the error.
        conn.busy_timeout(Duration::ZERO).map_err(classify)?;
        // Reading the schema version is the first access: a foreign file fails here,
        // before anything is written.
        let version: i64 = conn
            .query_row("PRAGMA user_version", (), |r| r.get(0))
            .map_err(classify)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::NewerSchema {
                path: name,
                found: version,
                known,
            });
        }
        // Known to be tocsin's now: a database left readable is made private.
        private(false)?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(classify)?;
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", (), |r| r.get(0))
            .map_err(classify)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(classify)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(classify)?;
        // A write takes the exclusive lock now, not at the first decision.
        migrate(&mut conn, version).map_err(classify)?;
        Ok(SqlStore {
            conn: Db::Sqlite(conn),
            place: name,
        })
    }

    pub(super) fn new(conn: Db, place: String) -> SqlStore {
        SqlStore { conn, place }
    }

    /// Where the data is: the SQLite file, or the PostgreSQL server and database.
    pub fn place(&self) -> &str {
        &self.place
    }
}

fn migrate(conn: &mut Connection, from: i64) -> Result<(), rusqlite::Error> {
    // Rebuilding a table others refer to needs foreign keys off for the while (the
    // procedure SQLite documents for ALTER TABLE); they are checked before commit
    // and back on after it. The pragma has no effect inside a transaction.
    let rebuild = (from as usize) < MIGRATIONS.len();
    if rebuild {
        conn.pragma_update(None, "foreign_keys", "OFF")?;
    }
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    if rebuild {
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", (), |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                Some(format!("migration left a broken reference in {table}")),
            ));
        }
    }
    // An up-to-date file is still written to once, so the lock is taken here.
    tx.execute_batch("CREATE TABLE IF NOT EXISTS lock_probe (x INTEGER); DROP TABLE lock_probe;")?;
    tx.commit()?;
    if rebuild {
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(())
}

impl IncidentStore for SqlStore {
    fn link_key(&mut self) -> Result<Vec<u8>, StoreError> {
        let existing: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'link_key'", (), |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(k) = existing {
            return Ok(k);
        }
        let mut key = vec![0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut key[..]);
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('link_key', ?1)",
            params![key],
        )?;
        Ok(key)
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value.as_bytes()],
        )?;
        Ok(())
    }

    fn load(&self) -> Result<States, StoreError> {
        let mut stmt = self.conn.prepare("SELECT service, state FROM services")?;
        let rows = stmt.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = States::new();
        for row in rows {
            let (service, json) = row?;
            let state: ServiceState =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                    what: format!("state of `{service}`"),
                    detail: e.to_string(),
                })?;
            out.insert(service, state);
        }
        Ok(out)
    }

    fn commit(
        &mut self,
        service: &str,
        state: &ServiceState,
        actions: &[Action],
        context: &Context,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Corrupt {
            what: "state".into(),
            detail: e.to_string(),
        })?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO services (service, state, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (service) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            params![service, json, secs(now)],
        )?;
        for action in actions {
            let incident = record(&tx, service, action, now)?;
            super::outbox::decide(&tx, service, incident, action, context, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn enqueue(
        &mut self,
        action: &Action,
        context: &Context,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        super::outbox::decide(&tx, "", None, action, context, now)?;
        tx.commit()?;
        Ok(())
    }

    fn incidents(&self, open_only: bool) -> Result<Vec<IncidentRecord>, StoreError> {
        let filter = if open_only {
            "WHERE ended_at IS NULL"
        } else {
            ""
        };
        self.select(filter, ())
    }

    fn recent_incidents(&self, limit: usize) -> Result<Vec<IncidentRecord>, StoreError> {
        self.select(
            "WHERE id IN (SELECT id FROM incidents ORDER BY id DESC LIMIT ?1)",
            [limit as i64],
        )
    }

    fn incident(&self, id: i64) -> Result<Option<IncidentRecord>, StoreError> {
        Ok(self.select("WHERE id = ?1", [id])?.into_iter().next())
    }

    fn open_incident_of(&self, service: &str) -> Result<Option<IncidentRecord>, StoreError> {
        Ok(self
            .select("WHERE service = ?1 AND ended_at IS NULL", [service])?
            .into_iter()
            .next())
    }
}

impl SqlStore {
    pub(super) fn select<P: super::db::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<IncidentRecord>, StoreError> {
        let sql = format!(
            "SELECT id, service, started_at, ended_at, acked_by, eta, customer_phase, promised_eta, next_update FROM incidents {filter} ORDER BY id DESC"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params, |r| {
            Ok(IncidentRecord {
                id: r.get(0)?,
                service: r.get(1)?,
                started: from_secs(r.get(2)?),
                ended: r.get::<_, Option<f64>>(3)?.map(from_secs),
                acked_by: r.get(4)?,
                eta: r.get::<_, Option<f64>>(5)?.map(from_secs),
                customer_phase: r.get::<_, i64>(6)? != 0,
                promised_eta: r.get::<_, Option<f64>>(7)?.map(from_secs),
                next_update: r.get::<_, Option<f64>>(8)?.map(from_secs),
                timeline: Vec::new(),
            })
        })?;
        let mut out: Vec<IncidentRecord> = rows.collect::<Result<_, _>>()?;
        let mut events = self.conn.prepare(
            "SELECT at, kind, detail, data FROM incident_events WHERE incident_id = ?1 ORDER BY id",
        )?;
        for inc in &mut out {
            inc.timeline = events
                .query_map([inc.id], |r| {
                    Ok(TimelineEntry {
                        at: from_secs(r.get(0)?),
                        event: timeline_event(r.get(1)?, r.get(2)?, r.get(3)?),
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(out)
    }
}

/// A stored timeline entry: typed from its data, or as an earlier tocsin wrote it.
fn timeline_event(kind: String, detail: String, data: Option<String>) -> TimelineEvent {
    match data.map(|d| serde_json::from_str::<TimelineEvent>(&d)) {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            tracing::warn!(kind, error = %e, "a timeline entry's data is unreadable; shown as written");
            TimelineEvent::Recorded { name: kind, detail }
        }
        None => TimelineEvent::Recorded { name: kind, detail },
    }
}

/// Writes what `action` changes about its incident, and its timeline entry; the
/// incident's store id.
fn record(
    tx: &Db,
    service: &str,
    action: &Action,
    now: SystemTime,
) -> Result<Option<i64>, StoreError> {
    let store_id = match action {
        Action::Open { id, started, .. } => {
            tx.execute(
                "INSERT INTO incidents (service, seq, started_at) VALUES (?1, ?2, ?3)",
                params![service, *id as i64, secs(*started)],
            )?;
            incident_id(tx, service, *id)?
        }
        Action::MailStaff { id, .. } => match id {
            Some(seq) => incident_id(tx, service, *seq)?,
            None => None,
        },
        Action::Acknowledged { id, by, .. } => {
            let store_id = incident_id(tx, service, *id)?;
            tx.execute(
                "UPDATE incidents SET acked_by = ?2, acked_at = ?3 WHERE id = ?1",
                params![store_id, by, secs(now)],
            )?;
            store_id
        }
        Action::EtaSet { id, eta, .. } => {
            let store_id = incident_id(tx, service, *id)?;
            tx.execute(
                "UPDATE incidents SET eta = ?2 WHERE id = ?1",
                params![store_id, secs(*eta)],
            )?;
            store_id
        }
        Action::CustomerPhase {
            id,
            eta,
            next_update,
            ..
        } => {
            let store_id = incident_id(tx, service, *id)?;
            tx.execute(
                "UPDATE incidents SET customer_phase = 1, promised_eta = ?2, next_update = ?3 WHERE id = ?1",
                params![store_id, eta.map(secs), next_update.map(secs)],
            )?;
            store_id
        }
        Action::CustomerUpdate {
            id,
            eta,
            next_update,
        } => {
            let store_id = incident_id(tx, service, *id)?;
            tx.execute(
                "UPDATE incidents SET promised_eta = ?2, next_update = ?3 WHERE id = ?1",
                params![store_id, eta.map(secs), next_update.map(secs)],
            )?;
            store_id
        }
        Action::Posted {
            id,
            customers,
            eta,
            next_update,
            ..
        } => {
            let store_id = incident_id(tx, service, *id)?;
            if *customers {
                tx.execute(
                    "UPDATE incidents SET promised_eta = ?2, next_update = ?3 WHERE id = ?1",
                    params![store_id, eta.map(secs), next_update.map(secs)],
                )?;
            }
            store_id
        }
        Action::Resolve { id, ended, .. } => {
            let store_id = incident_id(tx, service, *id)?;
            tx.execute(
                "UPDATE incidents SET ended_at = ?2 WHERE id = ?1",
                params![store_id, secs(*ended)],
            )?;
            store_id
        }
        // About the root's open incident: its timeline names this service.
        Action::AlsoAffected {
            root,
            affected,
            reasons,
        } => {
            let store_id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM incidents WHERE service = ?1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
                    [root],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(incident) = store_id {
                let event = TimelineEvent::AlsoAffected {
                    service: service.to_string(),
                    affected: *affected,
                    reasons: reasons.clone(),
                };
                timeline(tx, incident, now, &event)?;
            }
            return Ok(store_id);
        }
    };
    if let (Some(incident), Some(event)) = (store_id, TimelineEvent::of(action)) {
        timeline(tx, incident, now, &event)?;
    }
    Ok(store_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CampaignKind, CampaignStore, SendResult};

    /// A database written by an earlier tocsin (schema 6, before the campaigns table was
    /// rebuilt for maintenance) keeps its campaigns and recipients, and its foreign keys.
    #[test]
    fn the_campaigns_rebuild_keeps_existing_rows_and_references() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..6] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "INSERT INTO incidents (id, service, seq, started_at, customer_phase) VALUES (7, 'shop', 1, 1000.0, 1);
                 INSERT INTO campaigns (id, incident_id, service, kind, audience, outbox_id, created_at) VALUES (3, 7, 'shop', 'outage', 'customers', 11, 1001.0);
                 INSERT INTO recipients (id, campaign_id, email, name, language, timezone, vars, status, next_attempt_at) VALUES (5, 3, 'ana@example.com', 'Ana', 'en', 'UTC', '{}', 'sent', 1001.0);
                 PRAGMA user_version = 6;",
            )
            .unwrap();
        }
        let store = SqlStore::open_sqlite(&path).unwrap();
        let info = store
            .campaign_info(3)
            .unwrap()
            .expect("the campaign survives");
        assert_eq!((info.incident, info.service.as_str()), (7, "shop"));
        assert_eq!(info.started, from_secs(1000.0));
        let n: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM recipients WHERE campaign_id = 3",
                (),
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        // Foreign keys are enforced again after the migration.
        let orphan = store.conn.execute(
            "INSERT INTO recipients (campaign_id, email, name, language, timezone, vars, next_attempt_at) VALUES (99, 'x@example.com', '', 'en', 'UTC', '{}', 0)",
            (),
        );
        assert!(orphan.is_err(), "a recipient of no campaign is refused");
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", (), |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    /// A customer's mails go out in the order they were decided: an update whose first
    /// try comes due while the outage mail to the same address waits for its retry waits
    /// too; other addresses are not held up.
    /// Regression: with `recovery: last`, two services of one merged message that are
    /// back at the same moment made two recovery campaigns that each kept the customer
    /// (neither saw the other still down), so x was told twice. A customer told of two
    /// outages in two messages of their own still hears of each recovery.
    #[test]
    fn services_back_together_tell_a_merged_customer_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap();
        store
            .conn
            .execute_batch(
                r#"INSERT INTO incidents (id, service, seq, started_at, ended_at, customer_phase) VALUES
                    (1, 'a', 1, 1000.0, 5000.0, 1), (2, 'b', 1, 1000.0, 5000.0, 1);
                 INSERT INTO campaigns (id, incident_id, service, kind, audience, outbox_id, created_at) VALUES
                    (1, 1, 'a', 'outage', 'c', 11, 1001.0), (2, 2, 'b', 'outage', 'c', 12, 1001.0);
                 INSERT INTO recipients (id, campaign_id, email, name, language, timezone, vars, next_attempt_at, status, sent_at) VALUES
                    (1, 1, 'x@example.com', '', 'en', 'UTC', '{"_group":"[[\"a\",\"A\"],[\"b\",\"B\"]]"}', 1001.0, 'sent', 1002.0),
                    (2, 1, 'y@example.com', '', 'en', 'UTC', '{}', 1001.0, 'sent', 1002.0),
                    (3, 2, 'y@example.com', '', 'en', 'UTC', '{}', 1001.0, 'sent', 1002.0);
                 INSERT INTO campaign_merges (campaign_id, email, into_recipient) VALUES (2, 'x@example.com', 1);"#,
            )
            .unwrap();
        let now = from_secs(5001.0);
        store
            .create_followup(21, 1, CampaignKind::Recovery, None, true, now)
            .unwrap();
        store
            .create_followup(22, 2, CampaignKind::Recovery, None, true, now)
            .unwrap();
        let told = |email: &str| -> i64 {
            store
                .conn
                .query_row(
                    "SELECT count(*) FROM recipients r JOIN campaigns c ON c.id = r.campaign_id
                     WHERE c.kind = 'recovery' AND r.email = ?1",
                    [email],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(
            told("x@example.com"),
            1,
            "one recovery for one merged message"
        );
        assert_eq!(told("y@example.com"), 2, "two messages, two recoveries");
    }

    #[test]
    fn a_customers_later_mail_waits_for_their_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO incidents (id, service, seq, started_at, customer_phase) VALUES (7, 'shop', 1, 1000.0, 1);
                 INSERT INTO campaigns (id, incident_id, service, kind, audience, outbox_id, created_at) VALUES (1, 7, 'shop', 'outage', 'c', 11, 1001.0);
                 INSERT INTO campaigns (id, incident_id, service, kind, audience, outbox_id, created_at) VALUES (2, 7, 'shop', 'update', 'c', 12, 1002.0);
                 INSERT INTO recipients (id, campaign_id, email, name, language, timezone, vars, next_attempt_at) VALUES
                    (1, 1, 'ana@example.com', '', 'en', 'UTC', '{}', 1001.0),
                    (2, 1, 'bo@example.com', '', 'en', 'UTC', '{}', 1001.0),
                    (3, 2, 'ana@example.com', '', 'en', 'UTC', '{}', 1002.0),
                    (4, 2, 'bo@example.com', '', 'en', 'UTC', '{}', 1002.0);",
            )
            .unwrap();
        let due = |store: &SqlStore, at: f64| -> Vec<i64> {
            store
                .due_recipients(from_secs(at), 0, 100)
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect()
        };
        assert_eq!(
            due(&store, 1010.0),
            [1, 2],
            "each address's first mail only"
        );
        // Ana's outage mail is deferred until 2000; Bo's is sent.
        store
            .record_sends(&[
                SendResult::Retry {
                    id: 1,
                    error: "421 try later".into(),
                    at: from_secs(2000.0),
                },
                SendResult::Sent {
                    id: 2,
                    at: from_secs(1010.0),
                },
            ])
            .unwrap();
        assert_eq!(
            due(&store, 1020.0),
            [4],
            "Ana's update waits for her outage mail"
        );
        assert_eq!(due(&store, 2000.0), [1, 4]);
    }

    /// A database of schema 7 (the timeline and the reasons in the state as text) is
    /// read after the migration as it was written: an open incident keeps its reasons,
    /// its timeline shows the same lines, and the ETA on the status page is still found.
    #[test]
    fn a_database_with_a_text_timeline_and_text_reasons_reads_as_it_was_written() {
        use crate::probe::{Problem, Reason};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..7] {
                conn.execute_batch(sql).unwrap();
            }
            let state = r#"{"streaks":{"home":{"fails":3,"oks":0,"failing_since":{"secs_since_epoch":1000,"nanos_since_epoch":0},"reason":"status 503, expected 200"}},"incident":{"id":1,"started":{"secs_since_epoch":1000,"nanos_since_epoch":0},"levels_sent":1,"acked":null,"eta":null,"customer_phase":false,"mailed":["oncall@example.com"],"reasons":{"home":"status 503, expected 200"}},"next_id":2,"history":[],"flapping":false,"canary_down":false,"last_window_end":null}"#;
            conn.execute(
                "INSERT INTO services (service, state, updated_at) VALUES ('shop', ?1, 1000.0)",
                [state],
            )
            .unwrap();
            conn.execute_batch(
                "INSERT INTO incidents (id, service, seq, started_at) VALUES (1, 'shop', 1, 1000.0);
                 INSERT INTO incident_events (incident_id, at, kind, detail) VALUES (1, 1000.0, 'opened', 'home: status 503, expected 200');
                 INSERT INTO incident_events (incident_id, at, kind, detail) VALUES (1, 1100.0, 'eta', '2026-12-01T10:00:00Z by anna');
                 PRAGMA user_version = 7;",
            )
            .unwrap();
        }
        let store = SqlStore::open_sqlite(&path).unwrap();
        let states = store.load().unwrap();
        let inc = states["shop"].incident.as_ref().unwrap();
        let reason = &inc.reasons["home"];
        assert_eq!(reason.to_string(), "status 503, expected 200");
        assert_eq!(reason.problem(), Problem::Errors);
        assert!(matches!(reason, Reason::Text { .. }));
        let timeline = &store.incident(1).unwrap().unwrap().timeline;
        let lines: Vec<(&str, String)> = timeline.iter().map(|e| (e.kind(), e.detail())).collect();
        assert_eq!(
            lines,
            [
                ("opened", "home: status 503, expected 200".to_string()),
                ("eta", "2026-12-01T10:00:00Z by anna".to_string()),
            ]
        );
        assert_eq!(
            timeline[1].event.eta(),
            Some(humantime::parse_rfc3339("2026-12-01T10:00:00Z").unwrap())
        );
        assert_eq!(timeline[0].event.problem(), Some(Problem::Errors));
    }

    /// A database of schema 8: a staff mail decided but not yet sent, and two webhook
    /// deliveries queued with their bodies (one pending, one done). After the migration
    /// the decision is fanned out like a new one, but gets no second webhook delivery;
    /// the pending delivery keeps its id, body and attempts; the done one stays done.
    #[test]
    fn decisions_and_webhook_deliveries_of_schema_8_are_carried_out_once() {
        use crate::store::{Channel, OutboxStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..8] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                r#"INSERT INTO incidents (id, service, seq, started_at) VALUES (1, 'shop', 1, 1000.0);
                 INSERT INTO outbox (id, service, incident_id, action, created_at, next_attempt_at)
                     VALUES (4, 'shop', 1, '{"action":"mail_staff","id":1,"kind":"opened","level":0,"to":["oncall@example.com"]}', 1000.0, 1000.0);
                 INSERT INTO webhook_deliveries (id, url, event, incident_id, body, created_at, status, attempts, next_attempt_at)
                     VALUES (6, 'https://a.test/', 'opened', 1, '{"event":"opened"}', 1000.0, 'done', 1, 1000.0);
                 INSERT INTO webhook_deliveries (id, url, event, incident_id, body, created_at, attempts, next_attempt_at)
                     VALUES (7, 'https://a.test/', 'escalated', 1, '{"event":"escalated"}', 1000.0, 2, 1010.0);
                 PRAGMA user_version = 8;"#,
            )
            .unwrap();
        }
        let mut store = SqlStore::open_sqlite(&path).unwrap();
        let due = store.due(10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].context, None, "decided before contexts were stored");
        let now = from_secs(2000.0);
        let pending = store.due_deliveries(now, None, 10).unwrap();
        assert_eq!(pending.len(), 1);
        let d = &pending[0];
        assert_eq!((d.id, d.channel, d.attempts), (7, Channel::Webhook, 2));
        assert_eq!(d.target, "https://a.test/");
        assert_eq!(d.incident, Some(1));
        assert_eq!(d.decision, None);
        let q = d.queued.as_ref().unwrap();
        assert_eq!(
            (q.event.as_str(), q.body.as_str()),
            ("escalated", r#"{"event":"escalated"}"#)
        );
        // New deliveries continue after the migrated ids.
        let fanned = [crate::store::NewDelivery {
            channel: Channel::StaffMail,
            target: String::new(),
            after: std::time::Duration::ZERO,
        }];
        store.fan_out(4, &fanned, now).unwrap();
        let ids: Vec<i64> = store
            .due_deliveries(now, None, 10)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, [7, 8]);
    }

    /// A decision written by a newer tocsin (or damaged) is closed as failed, with the
    /// reason, and the others are carried out: one bad row stops nothing.
    #[test]
    fn an_unreadable_decision_is_closed_and_the_others_go_on() {
        use crate::store::OutboxStore;
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqlStore::open_sqlite(&dir.path().join("t.db")).unwrap();
        store
            .conn
            .execute_batch(
                r#"INSERT INTO outbox (id, service, action, context, created_at, next_attempt_at)
                     VALUES (1, 'shop', '{"action":"page_the_moon"}', '{}', 1000.0, 1000.0);
                   INSERT INTO outbox (id, service, action, context, created_at, next_attempt_at)
                     VALUES (2, '', '{"action":"mail_staff","id":null,"kind":"monitordown","level":0,"to":["a@example.com"]}', '{}', 1001.0, 1001.0);"#,
            )
            .unwrap();
        let due = store.due(10).unwrap();
        assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [2]);
        let (status, error): (String, String) = store
            .conn
            .query_row(
                "SELECT status, last_error FROM outbox WHERE id = 1",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(status, "failed");
        assert!(error.contains("outbox item 1"), "{error}");
        assert_eq!(due[0].context, Some(crate::incident::Context::default()));
    }
}
