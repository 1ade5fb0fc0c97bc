//! The queue's storage: one store per database, each with its statements as SQL files
//! (`sql/<dialect>/*.sql`) and its differences in one Rust file ([`postgres`],
//! [`mariadb`], [`sqlite`]). [`Store`] is the interface the queue is written against
//! (`crate::queue::service`): one method per statement group, with typed parameters and
//! typed results; it dispatches over the three stores with a `match` (static dispatch,
//! nothing boxed per call).
//!
//! The statement groups that run the same way on every database — the same parameters,
//! each in its dialect's text — are written once in [`common`] (the background rounds' in
//! [`maintenance`]); the ones whose shape differs (insert, claim, batch completion) are
//! here and in the dialect files. "What SQL completes a task on MariaDB?" is `complete_task` in
//! `sql/mariadb/status.sql`.

pub mod common;
mod complete;
pub mod dead_letter;
pub mod lease;
pub mod maintenance;
pub mod mariadb;
pub mod postgres;
pub mod queues;
pub mod schedules;
pub mod sqlite;
mod statements;
pub mod transfer;
pub mod unique;
pub mod workflows;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::task::input::{Claim, NewTask};
use crate::task::{read_text, Task};
use crate::value::Param;
use crate::{Provider, Result};

pub(crate) use complete::CompleteStatements;

pub use mariadb::MariadbStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use statements::{Sections, Statements};

/// The store of one database (provider and table prefix), its statements rendered once.
pub enum Store {
    /// PostgreSQL
    Postgres(PostgresStore),
    /// MariaDB
    Mariadb(MariadbStore),
    /// SQLite
    Sqlite(SqliteStore),
}

/// One completion of a batch ([`Store::complete_many`]).
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// the task
    pub id: &'a str,
    /// the worker reporting; the task must be leased to it
    pub worker_id: &'a str,
    /// the result to store
    pub result: Option<&'a Json>,
}

/// Rows per multi-row INSERT on MariaDB and SQLite (13 parameters each).
const INSERT_CHUNK: usize = 500;

impl Store {
    /// The store for `provider` with tables named `<prefix><table>`.
    pub fn new(provider: Provider, prefix: &str) -> Result<Store> {
        Ok(match provider {
            Provider::Postgres => Store::Postgres(PostgresStore::new(prefix)?),
            Provider::Mariadb => Store::Mariadb(MariadbStore::new(prefix)?),
            Provider::Sqlite => Store::Sqlite(SqliteStore::new(prefix)?),
        })
    }

    /// Which database this store speaks to.
    pub fn provider(&self) -> Provider {
        match self {
            Store::Postgres(_) => Provider::Postgres,
            Store::Mariadb(_) => Provider::Mariadb,
            Store::Sqlite(_) => Provider::Sqlite,
        }
    }

    pub(crate) fn sql(&self) -> &Statements {
        match self {
            Store::Postgres(s) => &s.sql,
            Store::Mariadb(s) => &s.sql,
            Store::Sqlite(s) => &s.sql,
        }
    }

    /// A time as this database stores it.
    pub(crate) fn time(&self, t: DateTime<Utc>) -> Param {
        match self {
            Store::Postgres(_) => postgres::time(t),
            Store::Mariadb(_) => mariadb::time(t),
            Store::Sqlite(_) => sqlite::time(t),
        }
    }

    /// JSON as this database stores it.
    pub(crate) fn json(&self, v: Option<&Json>) -> Param {
        match self {
            Store::Postgres(_) => postgres::json(v),
            Store::Mariadb(_) => mariadb::json(v),
            Store::Sqlite(_) => sqlite::json(v),
        }
    }

    /// `count` placeholders numbered from `from` (1-based), comma-separated.
    pub(crate) fn placeholders(&self, from: usize, count: usize) -> String {
        let one = |n: usize| match self {
            Store::Postgres(_) => postgres::placeholder(n),
            _ => "?".to_string(),
        };
        (from..from + count).map(one).collect::<Vec<_>>().join(", ")
    }

    /// Inserts new tasks (any number up to `MAX_BATCH`, chunked as the database needs);
    /// returns how many rows were inserted (a duplicate idempotency key inserts none).
    pub async fn insert_tasks(
        &self,
        conn: &mut Conn,
        tasks: &[NewTask],
        ts: DateTime<Utc>,
        mut trace: Option<&mut Trace>,
    ) -> Result<u64> {
        if let Store::Postgres(s) = self {
            return s.insert_tasks(conn, tasks, ts, trace).await;
        }
        let mut inserted = 0;
        for chunk in tasks.chunks(INSERT_CHUNK) {
            inserted += insert_rows(self, conn, chunk, ts, trace.as_deref_mut()).await?;
        }
        Ok(inserted)
    }

    /// Whether an insert's row count may include duplicates it did not insert, so that
    /// keyed tasks must always be looked up (MariaDB).
    pub fn counts_duplicates_as_inserted(&self) -> bool {
        match self {
            Store::Mariadb(s) => s.counts_duplicates_as_inserted(),
            _ => false,
        }
    }

    /// Starts up to `c.limit` claimable tasks of `c.queue` (pending, due at `ts`,
    /// dependencies done), highest priority first, then oldest `runAt`, then id, leased
    /// to `c.worker_id` until `lease_until`; two claimers never get the same task.
    pub async fn claim(
        &self,
        conn: &mut Conn,
        c: &Claim,
        ts: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        match self {
            Store::Postgres(s) => s.claim(conn, c, ts, lease_until, trace).await,
            Store::Mariadb(s) => {
                claim_in_steps(self, &s.claim, conn, c, ts, lease_until, trace).await
            }
            Store::Sqlite(s) => {
                claim_in_steps(self, &s.claim, conn, c, ts, lease_until, trace).await
            }
        }
    }

    /// `running → completed` for many tasks at once: each task running under a live
    /// lease held by the reporting worker is completed, its attempt's history row written
    /// and its dependents released; returns the tasks it took (in no particular order),
    /// and leaves the others untouched. PostgreSQL: one statement; MariaDB and SQLite:
    /// five per 1,000 tasks (`complete.rs`), in the caller's transaction.
    pub async fn complete_many(
        &self,
        conn: &mut Conn,
        items: &[Completion<'_>],
        ts: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        match self {
            Store::Postgres(s) => s.complete_many(conn, items, ts, trace).await,
            Store::Mariadb(s) => {
                complete::complete_in_steps(self, &s.complete, conn, items, ts, trace).await
            }
            Store::Sqlite(s) => {
                complete::complete_in_steps(self, &s.complete, conn, items, ts, trace).await
            }
        }
    }
}

/// The three statements of a claim where UPDATE cannot return rows (MariaDB, SQLite).
pub(crate) struct ClaimStatements {
    pick_tasks: String,
    start_tasks: String,
    read_tasks: String,
}

impl ClaimStatements {
    fn take(s: &mut Sections) -> Result<ClaimStatements> {
        Ok(ClaimStatements {
            pick_tasks: s.take("pick_tasks")?,
            start_tasks: s.take("start_tasks")?,
            read_tasks: s.take("read_tasks")?,
        })
    }
}

/// A claim in one transaction: pick the candidates, start them, read them back.
async fn claim_in_steps(
    store: &Store,
    sql: &ClaimStatements,
    conn: &mut Conn,
    c: &Claim,
    ts: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    in_tx(conn, async |conn: &mut Conn| {
        let pick = [
            Param::Text(c.queue.clone()),
            store.time(ts),
            Param::Int(c.limit),
        ];
        let picked = conn
            .exec("pick tasks", &sql.pick_tasks, &pick, trace.as_deref_mut())
            .await?;
        let ids: Vec<Param> = picked
            .rows
            .iter()
            .filter_map(|r| read_text(&r[0]).map(Param::Text))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![
            Param::Text(c.worker_id.clone()),
            store.time(lease_until),
            store.time(ts),
            store.time(ts),
            store.time(ts),
        ];
        params.extend(ids.iter().cloned());
        let start = sql
            .start_tasks
            .replace("{{ids}}", &store.placeholders(6, ids.len()));
        conn.exec("start tasks", &start, &params, trace.as_deref_mut())
            .await?;
        let read = sql
            .read_tasks
            .replace("{{ids}}", &store.placeholders(1, ids.len()));
        let out = conn
            .exec("read tasks", &read, &ids, trace.as_deref_mut())
            .await?;
        Task::from_rows(out.rows)
    })
    .await
}

/// One multi-row INSERT of `chunk` (MariaDB, SQLite): 13 parameters a row.
async fn insert_rows(
    store: &Store,
    conn: &mut Conn,
    chunk: &[NewTask],
    ts: DateTime<Utc>,
    trace: Option<&mut Trace>,
) -> Result<u64> {
    const COLS: usize = 13;
    let mut rows = Vec::with_capacity(chunk.len());
    let mut params = Vec::with_capacity(chunk.len() * COLS);
    for (i, t) in chunk.iter().enumerate() {
        rows.push(format!("({})", store.placeholders(i * COLS + 1, COLS)));
        params.extend([
            Param::Text(t.id.clone()),
            Param::Text(t.queue.clone()),
            t.name.clone().map(Param::Text).unwrap_or(Param::Null),
            store.json(t.payload.as_ref()),
            Param::Text(crate::task::TaskStatus::Pending.as_str().into()),
            Param::Int(t.priority),
            store.time(t.run_at),
            Param::Int(t.max_attempts),
            Param::Int(t.max_attempts),
            t.workflow_id
                .clone()
                .map(Param::Text)
                .unwrap_or(Param::Null),
            t.idempotency_key
                .clone()
                .map(Param::Text)
                .unwrap_or(Param::Null),
            store.time(ts),
            store.time(ts),
        ]);
    }
    // without keys nothing can conflict, and the clause would cost a speculative
    // insertion per row
    let sql = if chunk.iter().any(|t| t.idempotency_key.is_some()) {
        &store.sql().insert_keyed_tasks
    } else {
        &store.sql().insert_tasks
    };
    let sql = sql.replace("{{rows}}", &rows.join(", "));
    Ok(conn
        .exec("insert tasks", &sql, &params, trace)
        .await?
        .rows_affected)
}

/// Runs `body` inside a transaction: its own one, committed on success and rolled back on
/// error, or the caller's when one is already open (`executeTransaction`), which the
/// caller then finishes.
pub async fn in_tx<T>(
    conn: &mut Conn,
    body: impl AsyncFnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    let own_tx = !conn.in_tx();
    if own_tx {
        conn.begin().await?;
    }
    let r = body(conn).await;
    finish_tx(conn, own_tx, r).await
}

/// Commits (or rolls back on error) a transaction the caller opened itself (`own_tx`).
pub(crate) async fn finish_tx<T>(conn: &mut Conn, own_tx: bool, r: Result<T>) -> Result<T> {
    if !own_tx {
        return r;
    }
    match r {
        Ok(v) => {
            conn.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.rollback().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_has_all_its_statements_with_the_prefix_put_in() {
        for p in [Provider::Postgres, Provider::Mariadb, Provider::Sqlite] {
            let store = Store::new(p, "pre_").unwrap();
            let sql = &store.sql().complete_task;
            assert!(
                sql.starts_with("UPDATE pre_tasks SET status = 'completed'"),
                "{sql}"
            );
            assert!(!store.sql().select_task.contains("{{"), "{p:?}");
            assert!(store
                .sql()
                .select_task
                .contains("finished_at, progress FROM pre_tasks"));
        }
    }
}
