//! One connection, two databases: the embedded SQLite file or a PostgreSQL server. The
//! store's statements are written once, in the SQL both understand, with SQLite's
//! numbered parameters (`?1`); this room runs them on either, so that every part of the
//! store (incidents, outbox, campaigns, ...) is one piece of code whatever the backend.
//!
//! For PostgreSQL it translates what differs in spelling only (`?1` is `$1`, `INSERT OR
//! IGNORE` is `ON CONFLICT DO NOTHING`, a new row's id comes back through `RETURNING`),
//! and moves values between SQLite's five storage classes and PostgreSQL's types. A
//! statement that needs another function on PostgreSQL says so where it is written
//! ([`Db::pick`]). It knows nothing of what the tables mean.
//!
//! The store's API is synchronous (callers hold it for one transaction, never across an
//! `.await`). The PostgreSQL client is tokio-postgres; its connection is driven on a
//! thread of its own with its own runtime, and each call waits for its answer with
//! `futures::executor::block_on`, which (unlike a tokio runtime's `block_on`) may be
//! called from inside the caller's runtime, exactly as the SQLite calls block today.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use rusqlite::ToSql;
use rusqlite::types::{FromSql, Value, ValueRef};

use super::StoreError;

/// The parameters of one statement: `params![a, b]`, `[a]`, or `()` for none.
pub(crate) trait Params {
    fn values(&self) -> Vec<&dyn ToSql>;
}

impl Params for () {
    fn values(&self) -> Vec<&dyn ToSql> {
        Vec::new()
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<&dyn ToSql> {
        self.to_vec()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<&dyn ToSql> {
        self.iter().map(|v| v as &dyn ToSql).collect()
    }
}

impl<T: ToSql, const N: usize> Params for &[T; N] {
    fn values(&self) -> Vec<&dyn ToSql> {
        self.iter().map(|v| v as &dyn ToSql).collect()
    }
}

impl<T: ToSql> Params for Vec<T> {
    fn values(&self) -> Vec<&dyn ToSql> {
        self.iter().map(|v| v as &dyn ToSql).collect()
    }
}

/// A column index (`r.get(0)`).
pub(crate) trait Idx {
    fn idx(&self) -> usize;
}

impl Idx for usize {
    fn idx(&self) -> usize {
        *self
    }
}

/// One row of a result, from either database.
pub(crate) enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `idx`, converted as SQLite converts it (an integer column read as a float,
    /// a 0/1 column read as a bool, ...), whichever database it came from.
    pub fn get<I: Idx, T: FromSql>(&self, idx: I) -> rusqlite::Result<T> {
        let i = idx.idx();
        match self {
            Row::Sqlite(r) => r.get(i),
            Row::Pg(r) => {
                let v: PgValue = r.try_get(i).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        i,
                        rusqlite::types::Type::Null,
                        Box::new(e),
                    )
                })?;
                T::column_result(ValueRef::from(&v.0)).map_err(|e| match e {
                    rusqlite::types::FromSqlError::InvalidType => {
                        rusqlite::Error::InvalidColumnType(
                            i,
                            r.columns()[i].name().to_string(),
                            v.0.data_type(),
                        )
                    }
                    other => rusqlite::Error::FromSqlConversionFailure(
                        i,
                        v.0.data_type(),
                        Box::new(other),
                    ),
                })
            }
        }
    }
}

/// `Ok(None)` for a query that found no row.
pub(crate) trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>, StoreError>;
}

impl<T> OptionalExt<T> for Result<T, StoreError> {
    fn optional(self) -> Result<Option<T>, StoreError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The connection the store runs its statements on.
pub(crate) enum Db {
    Sqlite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NoRows,
        e => StoreError::Sqlite(e),
    }
}

impl Db {
    /// Whether this is PostgreSQL.
    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// The statement for this database: `sqlite` as written, or `pg` on PostgreSQL
    /// (for what the two spell differently: JSON functions, `max(a, b)`, `rowid`, and
    /// SQLite's `+column` that keeps its planner off an index).
    pub fn pick<'s>(&self, sqlite: &'s str, pg: &'s str) -> &'s str {
        if self.is_pg() { pg } else { sqlite }
    }

    /// Runs one statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, StoreError> {
        match self {
            Db::Sqlite(c) => c
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(params.values())))
                .map_err(sqlite_err),
            Db::Pg(c) if c.lone_write_fenced() => {
                let tx = self.transaction()?;
                let n = c.execute(sql, &params.values())?;
                tx.commit()?;
                Ok(n as usize)
            }
            Db::Pg(c) => c.execute(sql, &params.values()).map(|n| n as usize),
        }
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_err),
            Db::Pg(c) => c.batch(sql),
        }
    }

    /// Runs an `INSERT` of one row into a table with an `id` key; the new row's id.
    pub fn insert(&self, sql: &str, params: impl Params) -> Result<i64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                c.prepare_cached(sql)
                    .and_then(|mut s| s.execute(rusqlite::params_from_iter(params.values())))
                    .map_err(sqlite_err)?;
                Ok(c.last_insert_rowid())
            }
            Db::Pg(c) => {
                let tx = if c.lone_write_fenced() {
                    Some(self.transaction()?)
                } else {
                    None
                };
                let sql = format!("{sql} RETURNING id");
                let rows = c.query(&sql, &params.values())?;
                let row = rows.first().ok_or(StoreError::NoRows)?;
                let id = Row::Pg(row).get(0)?;
                if let Some(tx) = tx {
                    tx.commit()?;
                }
                Ok(id)
            }
        }
    }

    /// The first row `f` makes of the result; [`StoreError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(sqlite_err)?;
                stmt.query_row(rusqlite::params_from_iter(params.values()), |r| {
                    f(&Row::Sqlite(r))
                })
                .map_err(sqlite_err)
            }
            Db::Pg(c) => {
                let rows = c.query(sql, &params.values())?;
                let row = rows.first().ok_or(StoreError::NoRows)?;
                Ok(f(&Row::Pg(row))?)
            }
        }
    }

    /// Every row of the result, each made by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(sqlite_err)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(params.values()), |r| {
                        f(&Row::Sqlite(r))
                    })
                    .map_err(sqlite_err)?;
                rows.collect::<Result<Vec<T>, _>>().map_err(sqlite_err)
            }
            Db::Pg(c) => {
                let rows = c.query(sql, &params.values())?;
                rows.iter()
                    .map(|r| f(&Row::Pg(r)).map_err(sqlite_err))
                    .collect()
            }
        }
    }

    /// Calls `f` with each row of the result in turn, without collecting them.
    pub fn for_each(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql).map_err(sqlite_err)?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params.values()))
                    .map_err(sqlite_err)?;
                while let Some(r) = rows.next().map_err(sqlite_err)? {
                    f(&Row::Sqlite(r)).map_err(sqlite_err)?;
                }
                Ok(())
            }
            Db::Pg(c) => {
                for r in c.query(sql, &params.values())? {
                    f(&Row::Pg(&r)).map_err(sqlite_err)?;
                }
                Ok(())
            }
        }
    }

    /// A statement to run, maybe many times. Every statement is kept prepared, on
    /// SQLite (its statement cache) as on PostgreSQL, so there is no separate cached form.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>, StoreError> {
        Ok(Stmt {
            db: self,
            sql: sql.to_string(),
        })
    }

    /// Begins a transaction: committed by [`Tx::commit`], rolled back when dropped
    /// without it (an error half-way writes nothing).
    pub fn transaction(&self) -> Result<Tx<'_>, StoreError> {
        self.execute_batch("BEGIN")?;
        Ok(Tx {
            db: self,
            done: false,
        })
    }
}

/// A statement and the connection it runs on.
pub(crate) struct Stmt<'a> {
    db: &'a Db,
    sql: String,
}

impl Stmt<'_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize, StoreError> {
        self.db.execute(&self.sql, params)
    }

    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.db.query_row(&self.sql, params, f)
    }

    /// Every row of the result, each made by `f`.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row) -> rusqlite::Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T, StoreError>>, StoreError> {
        let rows = self.db.query_map(&self.sql, params, f)?;
        Ok(rows.into_iter().map(Ok).collect::<Vec<_>>().into_iter())
    }
}

/// An open transaction; statements run on it through `Deref` to the connection.
pub(crate) struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<(), StoreError> {
        self.db.execute_batch("COMMIT")?;
        self.done = true;
        Ok(())
    }
}

impl Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A failed ROLLBACK leaves nothing to do: PostgreSQL rolls back a transaction
            // whose connection is gone, and SQLite one whose COMMIT failed.
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

/// SQLite's spelling, as the store writes it, in PostgreSQL's: `?N` is `$N`, and
/// `INSERT OR IGNORE` is `INSERT ... ON CONFLICT DO NOTHING`.
pub(crate) fn to_pg(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 24);
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    if let Some(at) = out.find("INSERT OR IGNORE INTO") {
        out.replace_range(at..at + "INSERT OR IGNORE INTO".len(), "INSERT INTO");
        let end = out.find(" RETURNING ").unwrap_or(out.len());
        out.insert_str(end, " ON CONFLICT DO NOTHING");
    }
    out
}

/// What a statement gave back.
enum Ran {
    Rows(Vec<tokio_postgres::Row>),
    Count(u64),
}

/// A live connection to PostgreSQL, with the statements it prepared.
struct Live {
    client: tokio_postgres::Client,
    /// Prepared statements by the store's SQL (as written, before translation).
    prepared: RefCell<HashMap<String, tokio_postgres::Statement>>,
    /// The runtime that drives the connection (and the call timers), on its own thread.
    rt: tokio::runtime::Handle,
}

/// PostgreSQL, connected again when the connection is lost (the server restarted, a
/// network blip): the store keeps its place in the process while the database comes and
/// goes, and every call in between fails with the reason, so nothing is decided that
/// could not be recorded.
pub(crate) struct PgConn {
    config: tokio_postgres::Config,
    /// The server and database, for messages (`postgres://db:5432/tocsin`).
    place: String,
    /// How long one call, or connecting, may take before the server is given up as
    /// unreachable for this call.
    timeout: Duration,
    /// The session-level advisory lock this process holds while connected (exclusive:
    /// one tocsin per database; shared: one of several that take turns by a lease).
    /// Taken again on every new connection.
    lock: Lock,
    /// Every write is refused unless this holds (the writer still leads).
    fence: Option<Fence>,
    /// Settings for each new session (`SET ...`).
    session: Option<String>,
    live: RefCell<Option<Live>>,
    /// Inside BEGIN ... COMMIT: a lost connection must not be replaced mid-way, or the
    /// rest of the transaction would be written without its beginning.
    in_tx: std::cell::Cell<bool>,
}

/// The advisory lock a connection takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Alone on the database.
    Exclusive(i64),
    /// Beside others that take it shared too (and never beside one alone).
    Shared(i64),
}

/// A condition for writing: a statement that must find a row at the start of each write
/// transaction, or the transaction is refused ([`StoreError::Fenced`]).
#[derive(Clone)]
pub(crate) struct Fence {
    pub check: &'static str,
    pub holder: String,
    pub token: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// A PostgreSQL error in the operator's terms: the server's message and its hint when it
/// gave one, or what went wrong with the connection.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(hint) = db.hint() {
                s.push_str("; ");
                s.push_str(hint);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// Waits for `fut` on the caller's thread, at most `timeout` (timed on `rt`).
fn wait<T>(
    rt: &tokio::runtime::Handle,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let timer = rt.spawn(async move {
        tokio::time::sleep(timeout).await;
        let _ = tx.send(());
    });
    let fut = std::pin::pin!(fut);
    let out = futures::executor::block_on(futures::future::select(fut, rx));
    timer.abort();
    match out {
        futures::future::Either::Left((r, _)) => r.map_err(|e| StoreError::Postgres {
            detail: pg_error(&e),
        }),
        futures::future::Either::Right(_) => Err(StoreError::Postgres {
            detail: format!(
                "no answer within {}s: the server is unreachable, stopped or overloaded",
                timeout.as_secs()
            ),
        }),
    }
}

impl PgConn {
    /// Connects (within `timeout`) and takes the lock `lock`.
    pub fn connect(
        config: tokio_postgres::Config,
        place: String,
        timeout: Duration,
        lock: Lock,
        session: Option<String>,
    ) -> Result<PgConn, StoreError> {
        let conn = PgConn {
            config,
            place,
            timeout,
            lock,
            fence: None,
            session,
            live: RefCell::new(None),
            in_tx: std::cell::Cell::new(false),
        };
        conn.live()?;
        Ok(conn)
    }

    fn open(&self) -> Result<Live, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut config = self.config.clone();
        config.connect_timeout(self.timeout);
        std::thread::Builder::new()
            .name("tocsin-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let handle = rt.handle().clone();
                rt.block_on(async move {
                    match config.connect(tls()).await {
                        Ok((client, connection)) => {
                            let _ = tx.send(Ok((client, handle)));
                            // Ends when the client is dropped or the server goes away.
                            let _ = connection.await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(pg_error(&e)));
                        }
                    }
                });
            })
            .map_err(|e| StoreError::Connect {
                target: self.place.clone(),
                detail: format!("cannot start the connection's thread: {e}"),
            })?;
        let (client, rt) = rx
            .recv()
            .map_err(|_| StoreError::Connect {
                target: self.place.clone(),
                detail: "the connection's thread stopped".into(),
            })?
            .map_err(|detail| StoreError::Connect {
                target: self.place.clone(),
                detail,
            })?;
        let got: bool = {
            let (sql, key) = match self.lock {
                Lock::Exclusive(k) => ("SELECT pg_try_advisory_lock($1)", k),
                Lock::Shared(k) => ("SELECT pg_try_advisory_lock_shared($1)", k),
            };
            let row = wait(&rt, self.timeout, client.query_one(sql, &[&key]))?;
            row.get(0)
        };
        if !got {
            return Err(StoreError::Locked {
                path: self.place.clone(),
            });
        }
        if let Some(sql) = &self.session {
            wait(&rt, self.timeout, client.batch_execute(sql))?;
        }
        Ok(Live {
            client,
            prepared: RefCell::new(HashMap::new()),
            rt,
        })
    }

    /// The live connection: the one there is, or a new one when it was lost (never in
    /// the middle of a transaction).
    fn live(&self) -> Result<std::cell::Ref<'_, Live>, StoreError> {
        let lost = match &*self.live.borrow() {
            Some(l) => l.client.is_closed(),
            None => true,
        };
        if lost {
            if self.in_tx.get() {
                return Err(StoreError::Postgres {
                    detail:
                        "the connection was lost during a transaction; nothing of it was written"
                            .into(),
                });
            }
            *self.live.borrow_mut() = None;
            let live = self.open()?;
            *self.live.borrow_mut() = Some(live);
        }
        Ok(std::cell::Ref::map(self.live.borrow(), |l| {
            l.as_ref().expect("connected above")
        }))
    }

    /// Runs `f` on the live connection; a call that timed out gives the connection up
    /// (its answer may still come, to a statement nobody waits for).
    fn call<T>(&self, f: impl FnOnce(&Live) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let out = {
            let live = self.live()?;
            f(&live)
        };
        if let Err(StoreError::Postgres { detail }) = &out {
            if detail.starts_with("no answer within") {
                *self.live.borrow_mut() = None;
            }
        }
        out
    }

    /// The statement prepared for `sql`. PostgreSQL infers each parameter's type from
    /// where it stands; where it cannot (`?3 IS NULL OR channel = ?3`), the statement is
    /// prepared again with the types of the values at hand, and kept under those.
    fn statement(
        &self,
        live: &Live,
        sql: &str,
        values: &[PgParam],
    ) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(s) = live.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let typed_key = || {
            let mut k = sql.to_string();
            for v in values {
                k.push_str(match v.0 {
                    Value::Integer(_) => "\0i",
                    Value::Real(_) => "\0r",
                    Value::Blob(_) => "\0b",
                    Value::Text(_) | Value::Null => "\0t",
                });
            }
            k
        };
        let key = typed_key();
        if let Some(s) = live.prepared.borrow().get(&key) {
            return Ok(s.clone());
        }
        let pg = to_pg(sql);
        let (stmt, key) = match wait(&live.rt, self.timeout, live.client.prepare(&pg)) {
            Ok(stmt) => (stmt, sql.to_string()),
            Err(StoreError::Postgres { detail })
                if detail.ends_with("(42P08)") || detail.ends_with("(42725)") =>
            {
                use tokio_postgres::types::Type;
                let types: Vec<Type> = values
                    .iter()
                    .map(|v| match v.0 {
                        Value::Integer(_) => Type::INT8,
                        Value::Real(_) => Type::FLOAT8,
                        Value::Blob(_) => Type::BYTEA,
                        Value::Text(_) | Value::Null => Type::TEXT,
                    })
                    .collect();
                let stmt = wait(
                    &live.rt,
                    self.timeout,
                    live.client.prepare_typed(&pg, &types),
                )?;
                (stmt, key)
            }
            Err(e) => return Err(e),
        };
        live.prepared.borrow_mut().insert(key, stmt.clone());
        Ok(stmt)
    }

    /// Runs `sql` with `params` on the live connection: its rows, or with `count` how
    /// many rows it changed.
    fn run(&self, sql: &str, params: &[&dyn ToSql], count: bool) -> Result<Ran, StoreError> {
        let values = pg_params(params)?;
        self.call(|live| {
            let stmt = self.statement(live, sql, &values)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            if count {
                wait(&live.rt, self.timeout, live.client.execute(&stmt, &refs)).map(Ran::Count)
            } else {
                wait(&live.rt, self.timeout, live.client.query(&stmt, &refs)).map(Ran::Rows)
            }
        })
    }

    pub fn query(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        match self.run(sql, params, false)? {
            Ran::Rows(rows) => Ok(rows),
            Ran::Count(_) => unreachable!("asked for rows"),
        }
    }

    pub fn execute(&self, sql: &str, params: &[&dyn ToSql]) -> Result<u64, StoreError> {
        match self.run(sql, params, true)? {
            Ran::Count(n) => Ok(n),
            Ran::Rows(_) => unreachable!("asked for a count"),
        }
    }

    /// From now on, writes are accepted only while `fence` holds.
    pub fn set_fence(&mut self, fence: Option<Fence>) {
        self.fence = fence;
    }

    /// Whether writes are fenced and no transaction is open: a lone write is then made
    /// a transaction of its own, so that the fence is checked for it too.
    pub fn lone_write_fenced(&self) -> bool {
        self.fence.is_some() && !self.in_tx.get()
    }

    /// After BEGIN: the fence holds, or the transaction is rolled back and refused.
    fn check_fence(&self) -> Result<(), StoreError> {
        let Some(f) = &self.fence else {
            return Ok(());
        };
        let token = f.token.load(std::sync::atomic::Ordering::SeqCst);
        let holds = token > 0
            && !self
                .query(f.check, &[&f.holder as &dyn ToSql, &token])?
                .is_empty();
        if holds {
            return Ok(());
        }
        let _ = self.batch("ROLLBACK");
        Err(StoreError::Fenced { token })
    }

    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        let out = self.call(|live| wait(&live.rt, self.timeout, live.client.batch_execute(sql)));
        match sql {
            "BEGIN" => {
                self.in_tx.set(out.is_ok());
                if out.is_ok() {
                    return self.check_fence();
                }
            }
            // Whatever came of it, the transaction is over: committed, rolled back, or
            // rolled back by the server with the connection it lost.
            "COMMIT" | "ROLLBACK" => self.in_tx.set(false),
            _ => {}
        }
        out
    }
}

impl Drop for PgConn {
    /// Gives the lock back at once: a tocsin restarted on the same database (or another
    /// taking over) need not wait for the server to notice the session ended.
    fn drop(&mut self) {
        if let Some(live) = self.live.get_mut().take() {
            if !live.client.is_closed() {
                let (sql, key) = match self.lock {
                    Lock::Exclusive(k) => ("SELECT pg_advisory_unlock($1)", k),
                    Lock::Shared(k) => ("SELECT pg_advisory_unlock_shared($1)", k),
                };
                let _ = wait(&live.rt, self.timeout, live.client.execute(sql, &[&key]));
            }
        }
    }
}

/// TLS for `sslmode=prefer|require`: the system's roots, then the web's.
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

fn pg_params(params: &[&dyn ToSql]) -> Result<Vec<PgParam>, StoreError> {
    params
        .iter()
        .map(|p| {
            let out = p.to_sql().map_err(StoreError::Sqlite)?;
            Ok(PgParam(match out {
                rusqlite::types::ToSqlOutput::Borrowed(v) => v.into(),
                rusqlite::types::ToSqlOutput::Owned(v) => v,
                other => {
                    return Err(StoreError::Corrupt {
                        what: "a statement's parameter".into(),
                        detail: format!("no PostgreSQL form for {other:?}"),
                    });
                }
            }))
        })
        .collect()
}

/// A value as SQLite holds it, sent as the type PostgreSQL expects at its place.
#[derive(Debug)]
struct PgParam(Value);

impl tokio_postgres::types::ToSql for PgParam {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{IsNull, ToSql as P, Type};
        let mismatch = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("{:?} cannot be sent as {ty}", self.0).into()
        };
        match (&self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(i), &Type::INT8) => P::to_sql(i, ty, out),
            (Value::Integer(i), &Type::INT4) => P::to_sql(&i32::try_from(*i)?, ty, out),
            (Value::Integer(i), &Type::INT2) => P::to_sql(&i16::try_from(*i)?, ty, out),
            (Value::Integer(i), &Type::FLOAT8) => P::to_sql(&(*i as f64), ty, out),
            (Value::Integer(i), &Type::FLOAT4) => P::to_sql(&(*i as f32), ty, out),
            (Value::Integer(i), &Type::BOOL) => P::to_sql(&(*i != 0), ty, out),
            (Value::Integer(i), &Type::TEXT | &Type::VARCHAR | &Type::UNKNOWN) => {
                P::to_sql(&i.to_string(), &Type::TEXT, out)
            }
            (Value::Real(f), &Type::FLOAT8) => P::to_sql(f, ty, out),
            (Value::Real(f), &Type::FLOAT4) => P::to_sql(&(*f as f32), ty, out),
            (Value::Real(f), &Type::INT8) if f.fract() == 0.0 => P::to_sql(&(*f as i64), ty, out),
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                P::to_sql(&s.as_str(), ty, out)
            }
            (Value::Text(s), &Type::UNKNOWN) => P::to_sql(&s.as_str(), &Type::TEXT, out),
            (Value::Text(s), &Type::JSON | &Type::JSONB) => {
                serde_json::from_str::<serde_json::Value>(s)?;
                if ty == &Type::JSONB {
                    out.extend_from_slice(&[1]);
                }
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            (Value::Text(s), &Type::BYTEA) => P::to_sql(&s.as_bytes(), ty, out),
            (Value::Blob(b), &Type::BYTEA) => P::to_sql(&b.as_slice(), ty, out),
            _ => Err(mismatch()),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column as SQLite would hold it.
struct PgValue(Value);

impl<'a> tokio_postgres::types::FromSql<'a> for PgValue {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::{FromSql as F, Type};
        Ok(PgValue(match *ty {
            Type::BOOL => Value::Integer(<bool as F>::from_sql(ty, raw)? as i64),
            Type::INT2 => Value::Integer(<i16 as F>::from_sql(ty, raw)? as i64),
            Type::INT4 => Value::Integer(<i32 as F>::from_sql(ty, raw)? as i64),
            Type::INT8 => Value::Integer(<i64 as F>::from_sql(ty, raw)?),
            Type::OID => Value::Integer(<u32 as F>::from_sql(ty, raw)? as i64),
            Type::FLOAT4 => Value::Real(<f32 as F>::from_sql(ty, raw)? as f64),
            Type::FLOAT8 => Value::Real(<f64 as F>::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => Value::Text(String::from_utf8(raw.get(1..).unwrap_or(&[]).to_vec())?),
            _ => Value::Text(String::from_utf8(raw.to_vec())?),
        }))
    }

    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// A NUMERIC in PostgreSQL's binary form (what `sum()` of integers gives): an integer
/// when it has no fraction, a float otherwise. Written here because tokio-postgres
/// decodes NUMERIC only into decimal crates the store has no other use for.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a NUMERIC cut short".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i32;
    let sign = word(2)? as u16;
    if sign == 0xC000 {
        return Ok(Value::Null);
    }
    let mut value = 0f64;
    let mut integral = true;
    for d in 0..ndigits {
        let digit = word(4 + d)? as f64;
        let power = weight - d as i32;
        if power < 0 && digit != 0.0 {
            integral = false;
        }
        value += digit * 10_000f64.powi(power);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Ok(if integral && value.abs() < 9.0e15 {
        Value::Integer(value as i64)
    } else {
        Value::Real(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_spelling_becomes_postgres_spelling() {
        assert_eq!(
            to_pg("SELECT id FROM t WHERE a = ?1 AND b = '?' AND c = ?12"),
            "SELECT id FROM t WHERE a = $1 AND b = '?' AND c = $12"
        );
        assert_eq!(
            to_pg("INSERT OR IGNORE INTO optouts (email, at) VALUES (?1, ?2)"),
            "INSERT INTO optouts (email, at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn numerics_are_read_as_sqlite_would_hold_them() {
        // 12345678 = 1234 * 10000 + 5678: two digits, weight 1.
        let raw = [0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xD2, 0x16, 0x2E];
        assert_eq!(numeric(&raw).unwrap(), Value::Integer(12_345_678));
        // -1.5 = -(1 + 5000/10000): weight 0, negative.
        let raw = [0, 2, 0, 0, 0x40, 0, 0, 1, 0, 1, 0x13, 0x88];
        assert_eq!(numeric(&raw).unwrap(), Value::Real(-1.5));
        // Zero has no digits.
        assert_eq!(
            numeric(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Value::Integer(0)
        );
        assert!(numeric(&[0, 3, 0, 0]).is_err());
    }
}
