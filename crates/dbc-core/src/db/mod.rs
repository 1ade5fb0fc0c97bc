//! The database layer: one typed sqlx pool per provider and the single statement runner
//! every operation goes through. This is where provider branches belong (with the stores
//! and the migrations):
//! - [`pool`]: opening, probing, sizing and closing pools ([`Pool`], [`PoolState`]);
//! - [`conn`]: a pooled connection ([`Conn`]): statements, transactions, limits;
//! - [`stream`]: a statement's rows handed over in chunks ([`Chunk`], [`ChunkSink`]);
//! - `postgres`, `mariadb`, `sqlite`: each provider's connect options, statement runner,
//!   parameter binding and value decoding (the same [`Value`] mapping on every provider,
//!   docs/TYPES.md);
//! - [`sqltext`]: `:name` parameters rewritten into each dialect's placeholders;
//! - `driver_error`: driver errors classified into `DbcError`s;
//! - [`write_lock`]: SQLite writers of one file queued in Rust, one at a time.

use crate::value::Value;
use crate::{DbcError, Provider};

macro_rules! collect_rows {
    ($stream:expr, $decode:path) => {{
        let mut out = QueryOutput::default();
        let mut stream = $stream;
        while let Some(item) = stream
            .try_next()
            .await
            .map_err(|e| DbcError::from_sqlx(e, true))?
        {
            match item {
                Either::Left(done) => {
                    out.rows_affected += done.rows_affected();
                    $crate::db::last_id(&mut out, &done);
                }
                Either::Right(row) => {
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    let mut values = Vec::with_capacity(out.columns.len());
                    for i in 0..row.columns().len() {
                        values.push($decode(&row, i)?);
                    }
                    out.rows.push(values);
                }
            }
        }
        out
    }};
}

/// Feeds a `fetch_many` stream into a [`ChunkSink`]; evaluates to false when the
/// consumer went away.
macro_rules! stream_rows {
    ($stream:expr, $decode:path, $sink:expr) => {{
        let sink = &mut *$sink;
        let mut stream = $stream;
        loop {
            match sink.wait(stream.try_next()).await? {
                None => break true,
                Some(Either::Left(done)) => {
                    sink.rows_affected += done.rows_affected();
                    if let Some(id) = $crate::db::LastId::last_id(&done) {
                        sink.last_insert_id = Some(id);
                    }
                }
                Some(Either::Right(row)) => {
                    if sink.columns.is_empty() {
                        sink.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    let mut values = Vec::with_capacity(sink.columns.len());
                    for i in 0..row.columns().len() {
                        values.push($decode(&row, i)?);
                    }
                    if !sink.row(values).await {
                        break false;
                    }
                }
            }
        }
    }};
}

trait LastId {
    fn last_id(&self) -> Option<Value>;
}
impl LastId for sqlx::postgres::PgQueryResult {
    fn last_id(&self) -> Option<Value> {
        None
    }
}
impl LastId for sqlx::mysql::MySqlQueryResult {
    fn last_id(&self) -> Option<Value> {
        Some(self.last_insert_id())
            .filter(|i| *i != 0)
            .map(Value::from_u64)
    }
}
impl LastId for sqlx::sqlite::SqliteQueryResult {
    fn last_id(&self) -> Option<Value> {
        (self.rows_affected() > 0).then(|| Value::from_i64(self.last_insert_rowid()))
    }
}
fn last_id<R: LastId>(out: &mut QueryOutput, r: &R) {
    if let Some(id) = r.last_id() {
        out.last_insert_id = Some(id);
    }
}

fn decode_err(col: usize, ty: &str, e: impl std::fmt::Display) -> DbcError {
    DbcError::Query {
        message: format!("cannot decode column {col} of type {ty}: {e}"),
        sql_state: None,
    }
}

macro_rules! get {
    ($row:expr, $i:expr, $ty:ty, $name:expr) => {
        $row.try_get_unchecked::<$ty, _>($i)
            .map_err(|e| decode_err($i, $name, e))?
    };
}

pub mod conn;
mod driver_error;
mod mariadb;
pub mod pool;
mod postgres;
mod sqlite;
pub mod sqltext;
pub mod stream;
pub mod write_lock;

/// What the rest of the connector may ask about a provider without branching on it.
impl Provider {
    /// True for an embedded database (SQLite: a file in this process, no server).
    pub fn is_embedded(self) -> bool {
        matches!(self, Provider::Sqlite)
    }

    /// The server's default TCP port; `None` for an embedded database.
    pub fn default_port(self) -> Option<u32> {
        match self {
            Provider::Postgres => Some(5432),
            Provider::Mariadb => Some(3306),
            Provider::Sqlite => None,
        }
    }
}

pub use conn::Conn;
pub use pool::{Pool, PoolState};
pub use stream::{Chunk, ChunkSink};

/// What one statement returned.
#[derive(Debug, Default, Clone)]
pub struct QueryOutput {
    /// column names, in order
    pub columns: Vec<String>,
    /// rows, each with one value per column
    pub rows: Vec<Vec<Value>>,
    /// rows changed by INSERT/UPDATE/DELETE
    pub rows_affected: u64,
    /// auto-increment id of an INSERT (MariaDB, SQLite)
    pub last_insert_id: Option<Value>,
}

impl QueryOutput {
    /// Index of a column by name.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Timing of one statement, kept only when debug is on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatementTiming {
    /// a short name of what ran
    pub name: String,
    /// milliseconds in the database (prepare + execute + fetch)
    pub ms: f64,
    /// rows returned or affected
    pub rows: u64,
}

/// Per-operation trace for `msg._debug`; `None` when debug is off, so nothing is measured.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// every statement, in order
    pub statements: Vec<StatementTiming>,
    /// retries done inside the addon
    pub retries: u32,
}

impl Trace {
    /// Total time spent in the database.
    pub fn db_ms(&self) -> f64 {
        self.statements.iter().map(|s| s.ms).sum()
    }
}
