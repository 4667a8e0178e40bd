//! The store on PostgreSQL (`store: postgres://...`): the same tables and statements as
//! the SQLite file (see `db.rs`), on a server ops already run highly available. Opening
//! it connects, takes the lock that keeps one tocsin per database, and creates the schema
//! in an empty database; `tocsin store migrate` copies an SQLite database into an empty
//! PostgreSQL one.

use std::str::FromStr;
use std::time::Duration;

use rusqlite::params;
use rusqlite::types::Value;

use super::db::OptionalExt;

use super::db::{Db, Fence, Lock, PgConn};
use super::{SqlStore, StoreError};

/// The schema version `postgres.sql` creates: that of the SQLite store it matches. A
/// later change of the SQLite store comes with its PostgreSQL form here.
const BASE_VERSION: i64 = 18;

const SCHEMA: &str = include_str!("postgres.sql");

/// Changes made after the base schema, in order; the version is the base plus how many
/// are applied.
const MIGRATIONS: &[&str] = &[
    // 19: several instances (`cluster:`). The leader's lease, whose token grows at every
    // change of leader (only the current token's writes are accepted), and each running
    // instance by location, so that a second one with the same name is refused.
    //
    // The token and the lease's end are rows of their own: the leader's writes hold the
    // token row shared (so a takeover waits for those in flight), while its renewals
    // touch only the end, and never wait for its own writes.
    "CREATE TABLE tocsin_leader (
        id     BIGINT PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        token  BIGINT NOT NULL
    );
    CREATE TABLE tocsin_lease (
        id         BIGINT PRIMARY KEY CHECK (id = 1) REFERENCES tocsin_leader (id),
        expires_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE tocsin_instances (
        location TEXT PRIMARY KEY,
        instance TEXT NOT NULL,
        host     TEXT NOT NULL,
        seen_at  TIMESTAMPTZ NOT NULL
    );",
    // 20: the locations' votes (`cluster.locations`): each location's latest result of
    // each probe, and of each location whether its canaries pass. `xid` is the writing
    // transaction, so that the leader reads what changed since its last read, and
    // nothing a slower writer committed late is missed.
    "CREATE TABLE tocsin_votes (
        probe    TEXT NOT NULL,
        location TEXT NOT NULL,
        ok       BOOLEAN NOT NULL,
        reason   TEXT,
        ms       BIGINT NOT NULL,
        at       TIMESTAMPTZ NOT NULL,
        xid      XID8 NOT NULL,
        PRIMARY KEY (probe, location)
    );
    CREATE INDEX tocsin_votes_xid ON tocsin_votes (xid);
    CREATE TABLE tocsin_locations (
        location    TEXT PRIMARY KEY,
        canaries_ok BOOLEAN NOT NULL,
        failing     TEXT NOT NULL,
        at          TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE tocsin_location_notices (
        location TEXT PRIMARY KEY,
        told     TEXT NOT NULL
    );",
];

/// The schema this tocsin writes.
pub const SCHEMA_VERSION: i64 = BASE_VERSION + MIGRATIONS.len() as i64;

/// The session-level advisory lock a tocsin holds on its database ("tocsin" in ASCII):
/// exclusive for one alone, shared by the instances of a cluster.
const LOCK: i64 = 0x746f_6373_696e;

/// Whether the writer still leads: its token is the current one and its lease has not
/// run out (by the database's clock). `FOR SHARE` makes a takeover wait for the
/// transactions that passed this check, so none of them commits after it.
const FENCE: &str = "SELECT 1 FROM tocsin_leader l JOIN tocsin_lease e ON e.id = l.id
    WHERE l.id = 1 AND l.holder = ?1 AND l.token = ?2 AND e.expires_at > clock_timestamp()
    FOR SHARE OF l";

/// How a store on PostgreSQL shares the database.
#[derive(Debug, Clone)]
pub enum Sharing {
    /// The only tocsin on the database (no `cluster:`).
    Alone,
    /// One of a cluster's instances: its writes are accepted only while `token` (0: none)
    /// holds the lease for `holder`.
    Fenced {
        holder: String,
        token: std::sync::Arc<std::sync::atomic::AtomicI64>,
        /// The lease: a transaction left open longer (its process paused) is ended by
        /// the server, so that it cannot hold up the next leader.
        lease: std::time::Duration,
    },
    /// One of a cluster's instances, for the lease itself (never fenced).
    Member,
}

/// Where PostgreSQL is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `postgres://user@host:port/database?sslmode=...`, without a password.
    pub url: String,
    /// From the environment (`store_password_env`, or `PGPASSWORD`), never from the file.
    pub password: Option<String>,
    /// The variable it was read from, for the hint when the server refuses it.
    pub password_env: String,
    /// How long connecting, or one statement, may take.
    pub timeout: Duration,
}

impl PgOptions {
    /// The URL's parts, refused with the reason when it is not a PostgreSQL URL.
    pub fn config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| StoreError::Connect {
                target: self.url.clone(),
                detail: format!(
                    "not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE"
                ),
            })?;
        if let Some(p) = &self.password {
            config.password(p.as_bytes());
        }
        Ok(config)
    }

    /// The server and database, without user or password, for messages.
    pub fn place(&self) -> String {
        let Ok(config) = tokio_postgres::Config::from_str(&self.url) else {
            return self.url.clone();
        };
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        format!("postgres://{host}:{port}/{db}")
    }
}

impl SqlStore {
    /// Connects to PostgreSQL, takes the database's lock (one tocsin per database: a
    /// second one is refused, as with the SQLite file), and creates the schema in an
    /// empty database. A database written by a newer tocsin is refused untouched.
    pub fn open_postgres(opts: &PgOptions) -> Result<SqlStore, StoreError> {
        SqlStore::open_postgres_as(opts, Sharing::Alone)
    }

    /// [`SqlStore::open_postgres`], for an instance of a cluster (`sharing`).
    pub fn open_postgres_as(opts: &PgOptions, sharing: Sharing) -> Result<SqlStore, StoreError> {
        let place = opts.place();
        let (lock, fence, session) = match sharing {
            Sharing::Alone => (Lock::Exclusive(LOCK), None, None),
            Sharing::Member => (Lock::Shared(LOCK), None, None),
            Sharing::Fenced {
                holder,
                token,
                lease,
            } => (
                Lock::Shared(LOCK),
                Some(Fence {
                    check: FENCE,
                    holder,
                    token,
                }),
                Some(format!(
                    "SET idle_in_transaction_session_timeout = {}",
                    lease.as_millis().max(1000)
                )),
            ),
        };
        let conn = PgConn::connect(opts.config()?, place.clone(), opts.timeout, lock, session).map_err(
            |e| match e {
                StoreError::Connect { target, detail } if detail.contains("password") => {
                    let var = &opts.password_env;
                    let hint = if opts.password.is_some() {
                        format!("check the password in the environment variable {var}")
                    } else {
                        format!("the server asks for a password: put it in the environment variable {var}")
                    };
                    StoreError::Connect {
                        target,
                        detail: format!("{detail}; {hint}"),
                    }
                }
                other => other,
            },
        )?;
        let db = Db::Pg(Box::new(conn));
        let has_schema: bool = db.query_row(HAS_SCHEMA, (), |r| r.get(0))?;
        let newer = |found: i64| {
            (found > SCHEMA_VERSION).then(|| StoreError::NewerSchema {
                path: place.clone(),
                found,
                known: SCHEMA_VERSION,
            })
        };
        let found = if has_schema {
            let found: i64 = db.query_row("SELECT version FROM tocsin_schema", (), |r| r.get(0))?;
            if let Some(e) = newer(found) {
                return Err(e);
            }
            found
        } else {
            0
        };
        if found < SCHEMA_VERSION {
            // Instances of a cluster may start together: one creates or migrates, the
            // others wait for it and find the work done. The lock is the session's and
            // taken before the transaction begins, so that the transaction sees the
            // catalog as the previous holder left it (a transaction begun before the wait
            // may keep a stale cache of names, and take fresh tables for absent ones);
            // the tables are looked at again under it, through pg_tables.
            db.execute_batch("SELECT pg_advisory_lock(7628147, 1)")?;
            let created = create_or_migrate(&db, &place, &newer);
            // On an error the connection is dropped with its lock; here it goes on.
            db.execute_batch("SELECT pg_advisory_unlock(7628147, 1)")?;
            created?;
        }
        let Db::Pg(mut conn) = db else {
            unreachable!("connected to PostgreSQL above")
        };
        conn.set_fence(fence);
        let db = Db::Pg(conn);
        Ok(SqlStore::new(db, place))
    }
}

/// Whether tocsin's schema table is there, read from the catalog's rows (not the name
/// cache, which a session may hold stale).
const HAS_SCHEMA: &str = "SELECT EXISTS (SELECT 1 FROM pg_tables
    WHERE schemaname = current_schema() AND tablename = 'tocsin_schema')";

/// Under the schema lock: creates the schema in an empty database, or applies the
/// migrations it lacks, in one transaction. Refuses a database holding other tables,
/// or one a newer tocsin wrote (`newer`).
fn create_or_migrate(
    db: &Db,
    place: &str,
    newer: &dyn Fn(i64) -> Option<StoreError>,
) -> Result<(), StoreError> {
    let tx = db.transaction()?;
    let has_schema: bool = tx.query_row(HAS_SCHEMA, (), |r| r.get(0))?;
    let mut version = if has_schema {
        let found = tx.query_row("SELECT version FROM tocsin_schema", (), |r| r.get(0))?;
        if let Some(e) = newer(found) {
            return Err(e);
        }
        found
    } else {
        let foreign: i64 = tx.query_row(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
            (),
            |r| r.get(0),
        )?;
        if foreign > 0 {
            return Err(StoreError::NotADatabase {
                path: place.to_string(),
                detail: format!(
                    "its schema holds {foreign} tables that are not tocsin's; give tocsin a database of its own"
                ),
            });
        }
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch("CREATE TABLE tocsin_schema (version BIGINT NOT NULL)")?;
        tx.execute(
            "INSERT INTO tocsin_schema (version) VALUES (?1)",
            [BASE_VERSION],
        )?;
        BASE_VERSION
    };
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = BASE_VERSION + 1 + i as i64;
        if v > version {
            tx.execute_batch(sql)?;
            version = v;
        }
    }
    tx.execute("UPDATE tocsin_schema SET version = ?1", [version])?;
    tx.commit()
}

/// The tables, in an order that keeps every reference to a row already copied, each
/// with the key whose sequence continues after the copy.
const TABLES: &[(&str, Option<&str>)] = &[
    ("meta", None),
    ("services", None),
    ("incidents", Some("id")),
    ("incident_events", Some("id")),
    ("outbox", Some("id")),
    ("campaigns", Some("id")),
    ("recipients", Some("id")),
    ("campaign_merges", None),
    ("optouts", None),
    ("service_optouts", None),
    ("autoresponders", None),
    ("compensation_codes", Some("seq")),
    ("maintenance_windows", Some("id")),
    ("maintenance_notices", None),
    ("heartbeats", None),
    ("deliveries", Some("id")),
    ("oncall_overrides", Some("id")),
    ("probe_hours", None),
    ("subscribers", None),
    ("subscribe_requests", None),
];

/// What `tocsin store migrate` copied: rows per table.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies the SQLite database at `from` (state, incidents and timelines, outbox and
/// deliveries, campaigns and recipients, opt-outs, codes, maintenance, heartbeats,
/// overrides, history, subscribers, and the key that signs links, so links already
/// mailed keep working) into the PostgreSQL database `to`, in one transaction. A
/// database that holds anything already is refused, untouched; so is an SQLite file in
/// use by a running tocsin.
pub fn migrate_to_postgres(from: &std::path::Path, to: &PgOptions) -> Result<Copied, StoreError> {
    let source = SqlStore::open_sqlite(from)?;
    let Db::Sqlite(src) = &source.conn else {
        unreachable!("open_sqlite opens SQLite")
    };
    let target = SqlStore::open_postgres(to)?;
    let dst = &target.conn;
    let mut full = Vec::new();
    for (table, _) in TABLES {
        let n: i64 = dst.query_row(&format!("SELECT count(*) FROM {table}"), (), |r| r.get(0))?;
        if n > 0 {
            full.push(format!("{table} ({n} rows)"));
        }
    }
    if !full.is_empty() {
        return Err(StoreError::NotEmpty {
            target: target.place().to_string(),
            tables: full.join(", "),
        });
    }
    let tx = dst.transaction()?;
    let mut copied = Vec::new();
    for (table, key) in TABLES {
        // SQLite keeps the codes' order in its rowid; PostgreSQL in `seq`.
        let select = if *table == "compensation_codes" {
            format!("SELECT rowid AS seq, * FROM {table} ORDER BY rowid")
        } else {
            format!("SELECT * FROM {table}")
        };
        let mut stmt = src.prepare(&select)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut rows = stmt.query([])?;
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            let values = (0..columns.len())
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<Vec<Value>, _>>()?;
            tx.execute(&insert, values)?;
            n += 1;
        }
        if let Some(key) = key {
            tx.query_row(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{key}'), coalesce(max({key}), 0) + 1, false) FROM {table}"
                ),
                (),
                |_| Ok(()),
            )?;
        }
        copied.push((*table, n));
    }
    tx.commit()?;
    Ok(copied)
}

/// Who leads a cluster now.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    /// Its location.
    pub holder: String,
    pub token: i64,
    /// Whether its lease still runs.
    pub live: bool,
}

impl SqlStore {
    /// Renews `holder`'s lease of `token` (its token back, or None when it lapsed or was
    /// taken over), or without a token takes the lease when it is free: a new token, one
    /// more than the last (also for a holder whose own lease lapsed: a new term), or None
    /// while another's lease runs. Times are the database's, so instances whose clocks
    /// disagree still agree on who leads.
    pub fn claim_lease(
        &self,
        holder: &str,
        token: Option<i64>,
        lease: std::time::Duration,
    ) -> Result<Option<i64>, StoreError> {
        let secs = lease.as_secs_f64();
        // Renewing: only the lease's end changes (no wait for this leader's own writes,
        // which hold the token row shared).
        if let Some(token) = token {
            let renewed = self.conn.execute(
                "UPDATE tocsin_lease SET expires_at = clock_timestamp() + make_interval(secs => ?3)
                 WHERE id = 1 AND expires_at > clock_timestamp()
                   AND EXISTS (SELECT 1 FROM tocsin_leader WHERE id = 1 AND holder = ?1 AND token = ?2)",
                params![holder, token, secs],
            )?;
            return Ok((renewed == 1).then_some(token));
        }
        // Taking over a lease that ran out (or the first ever): the lease row is locked
        // so that two candidates take turns, and the new token waits for the old
        // leader's writes in flight.
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO tocsin_leader (id, holder, token) VALUES (1, '', 0) ON CONFLICT (id) DO NOTHING",
            (),
        )?;
        tx.execute(
            "INSERT INTO tocsin_lease (id, expires_at) VALUES (1, '-infinity') ON CONFLICT (id) DO NOTHING",
            (),
        )?;
        let free: bool = tx.query_row(
            "SELECT expires_at <= clock_timestamp() FROM tocsin_lease WHERE id = 1 FOR UPDATE",
            (),
            |r| r.get(0),
        )?;
        if !free {
            return Ok(None);
        }
        let token: i64 = tx.query_row(
            "UPDATE tocsin_leader SET holder = ?1, token = token + 1 WHERE id = 1 RETURNING token",
            [holder],
            |r| r.get(0),
        )?;
        tx.execute(
            "UPDATE tocsin_lease SET expires_at = clock_timestamp() + make_interval(secs => ?1) WHERE id = 1",
            [secs],
        )?;
        tx.commit()?;
        Ok(Some(token))
    }

    /// Ends `holder`'s lease at once (a clean stop): another instance need not wait for
    /// it to run out.
    pub fn release_lease(&self, holder: &str, token: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE tocsin_lease SET expires_at = clock_timestamp()
             WHERE id = 1 AND EXISTS (SELECT 1 FROM tocsin_leader WHERE id = 1 AND holder = ?1 AND token = ?2)",
            params![holder, token],
        )?;
        Ok(())
    }

    /// The leader, if one ever was.
    pub fn leader(&self) -> Result<Option<Leader>, StoreError> {
        self.conn
            .query_row(
                "SELECT l.holder, l.token, e.expires_at > clock_timestamp()
                 FROM tocsin_leader l JOIN tocsin_lease e ON e.id = l.id WHERE l.id = 1 AND l.token > 0",
                (),
                |r| {
                    Ok(Leader {
                        holder: r.get(0)?,
                        token: r.get(1)?,
                        live: r.get(2)?,
                    })
                },
            )
            .optional()
    }

    /// Says that this instance (`instance`, on `host`) runs at `location`, now and every
    /// little while after. Refused while another instance said so for the same location
    /// within `stale`: two instances of one name would both think they lead.
    pub fn register_instance(
        &self,
        location: &str,
        instance: &str,
        host: &str,
        stale: std::time::Duration,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let mine = tx
            .query_row(
                "INSERT INTO tocsin_instances (location, instance, host, seen_at)
                 VALUES (?1, ?2, ?3, clock_timestamp())
                 ON CONFLICT (location) DO UPDATE SET
                    instance = ?2, host = ?3, seen_at = clock_timestamp()
                 WHERE tocsin_instances.instance = ?2
                    OR tocsin_instances.seen_at < clock_timestamp() - make_interval(secs => ?4)
                 RETURNING 1",
                params![location, instance, host, stale.as_secs_f64()],
                |_| Ok(()),
            )
            .optional()?;
        if mine.is_none() {
            let other: String = tx.query_row(
                "SELECT host FROM tocsin_instances WHERE location = ?1",
                [location],
                |r| r.get(0),
            )?;
            return Err(StoreError::LocationTaken {
                location: location.to_string(),
                other,
            });
        }
        tx.commit()?;
        Ok(())
    }

    /// This instance stops: its location is free at once.
    pub fn unregister_instance(&self, location: &str, instance: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM tocsin_instances WHERE location = ?1 AND instance = ?2",
            params![location, instance],
        )?;
        Ok(())
    }
}
