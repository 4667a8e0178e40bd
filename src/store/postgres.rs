//! The store on PostgreSQL (`store: postgres://...`): the same tables and statements as
//! the SQLite file (see `db.rs`), on a server ops already run highly available. Opening
//! it connects, takes the lock that keeps one tocsin per database, and creates the schema
//! in an empty database; `tocsin store migrate` copies an SQLite database into an empty
//! PostgreSQL one.

use std::str::FromStr;
use std::time::Duration;

use rusqlite::types::Value;

use super::db::{Db, PgConn};
use super::{SqlStore, StoreError};

/// The schema `postgres.sql` creates: the SQLite store's version it matches. A later
/// migration of the SQLite store comes with its PostgreSQL form and raises both.
pub const SCHEMA_VERSION: i64 = 18;

const SCHEMA: &str = include_str!("postgres.sql");

/// The session-level advisory lock a tocsin holds on its database ("tocsin" in ASCII).
const LOCK: i64 = 0x746f_6373_696e;

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
        let place = opts.place();
        let conn = PgConn::connect(opts.config()?, place.clone(), opts.timeout, LOCK).map_err(
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
        let has_schema: bool =
            db.query_row("SELECT to_regclass('tocsin_schema') IS NOT NULL", (), |r| {
                r.get(0)
            })?;
        if has_schema {
            let found: i64 = db.query_row("SELECT version FROM tocsin_schema", (), |r| r.get(0))?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: place,
                    found,
                    known: SCHEMA_VERSION,
                });
            }
        } else {
            let foreign: i64 = db.query_row(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                (),
                |r| r.get(0),
            )?;
            if foreign > 0 {
                return Err(StoreError::NotADatabase {
                    path: place,
                    detail: format!(
                        "its schema holds {foreign} tables that are not tocsin's; give tocsin a database of its own"
                    ),
                });
            }
            let tx = db.transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch("CREATE TABLE tocsin_schema (version BIGINT NOT NULL)")?;
            tx.execute(
                "INSERT INTO tocsin_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
            tx.commit()?;
        }
        Ok(SqlStore::new(db, place))
    }
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
