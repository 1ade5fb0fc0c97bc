//! [`Conn`]: a pooled connection and the single statement runner every operation goes
//! through — statements with parameters ([`Conn::exec`], timed into a [`Trace`] when
//! debug is on), streamed statements ([`Conn::exec_chunked`]), transactions, and the
//! client-side limit that turns a silent server into a connection error.

use std::time::{Duration, Instant};

use sqlx::mysql::MySql;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use sqlx::sqlite::Sqlite;
use sqlx::{AssertSqlSafe, Either};

use super::stream::{Chunk, ChunkSink};
use super::write_lock::{may_write, WriteGuard, WriteLock};
use super::{mariadb, postgres, sqlite, QueryOutput, StatementTiming, Trace};
use crate::value::Param;
use crate::{DbcError, Provider, Result};

pub(super) enum ConnInner {
    Pg(PoolConnection<Postgres>),
    My(PoolConnection<MySql>),
    Lite(PoolConnection<Sqlite>),
}

/// A pooled connection. If it is dropped inside a transaction (an error path or a
/// cancelled future), or after its network connection broke, it is closed instead of
/// going back to the pool.
///
/// A broken connection's error says whether the work may have been applied: inside a
/// transaction nothing is, until `COMMIT` has been sent (`outcome: "unknown"` only then);
/// outside one, any statement already sent may have been.
pub struct Conn {
    pub(super) inner: ConnInner,
    pub(super) in_tx: bool,
    pub(super) broken: bool,
    /// longest wait for any answer from the server (a black-holed link never errors)
    pub(super) limit: Option<Duration>,
    /// SQLite on a file: the file's write lock ([`super::write_lock`])
    pub(super) write_lock: Option<WriteLock>,
    /// held from `begin` to `commit`/`rollback`, or for one writing statement outside a
    /// transaction; dropping the connection releases it
    pub(super) write_guard: Option<WriteGuard>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.in_tx || self.broken {
            match &mut self.inner {
                ConnInner::Pg(c) => c.close_on_drop(),
                ConnInner::My(c) => c.close_on_drop(),
                ConnInner::Lite(c) => c.close_on_drop(),
            }
        }
    }
}

impl Conn {
    /// The provider of this connection.
    pub fn provider(&self) -> Provider {
        match self.inner {
            ConnInner::Pg(_) => Provider::Postgres,
            ConnInner::My(_) => Provider::Mariadb,
            ConnInner::Lite(_) => Provider::Sqlite,
        }
    }

    /// Sets the longest wait for an answer to any one statement; past it the
    /// connection counts as broken (the server-side statement timeout plus slack, so a
    /// link that silently drops packets cannot hang an operation).
    pub fn set_limit(&mut self, limit: Duration) {
        self.limit = Some(limit);
    }

    async fn bounded<T>(
        limit: Option<Duration>,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match limit {
            None => f.await,
            Some(l) => match tokio::time::timeout(l, f).await {
                Ok(r) => r,
                Err(_) => Err(DbcError::Connection {
                    message: format!("no answer from the database within {} ms", l.as_millis()),
                    outcome_unknown: true,
                }),
            },
        }
    }

    /// Takes the SQLite write lock for a statement outside a transaction that may write;
    /// `None` when it is not needed (another provider, `:memory:`, a read, or the lock is
    /// already held for the open transaction).
    async fn write_guard_for(&self, sql: &str) -> Result<Option<WriteGuard>> {
        match &self.write_lock {
            Some(l) if self.write_guard.is_none() && !self.in_tx && may_write(sql) => {
                l.acquire().await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Takes the SQLite write lock for a transaction about to begin (a no-op elsewhere).
    async fn lock_for_tx(&mut self) -> Result<()> {
        if let (Some(l), None) = (&self.write_lock, &self.write_guard) {
            self.write_guard = Some(l.acquire().await?);
        }
        Ok(())
    }

    /// Runs SQL that takes no parameters and returns nothing (may hold several statements).
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        let _guard = self.write_guard_for(sql).await?;
        let committing = sql == "COMMIT";
        let s = sqlx::raw_sql(AssertSqlSafe(sql.to_string()));
        let limit = self.limit;
        let r = Self::bounded(limit, async {
            match &mut self.inner {
                ConnInner::Pg(c) => s.execute(&mut **c).await.map(|_| ()),
                ConnInner::My(c) => s.execute(&mut **c).await.map(|_| ()),
                ConnInner::Lite(c) => s.execute(&mut **c).await.map(|_| ()),
            }
            .map_err(|e| DbcError::from_sqlx(e, true))
        })
        .await;
        r.map_err(|e| self.settle(e, committing))
    }

    /// Marks the connection broken on a network error and narrows `outcome_unknown`:
    /// a transaction that never reached `COMMIT` was not applied.
    fn settle(&mut self, e: DbcError, committing: bool) -> DbcError {
        match e {
            DbcError::Connection {
                message,
                outcome_unknown,
            } => {
                self.broken = true;
                DbcError::Connection {
                    message,
                    outcome_unknown: outcome_unknown && (committing || !self.in_tx),
                }
            }
            other => other,
        }
    }

    /// True while a transaction is open on this connection.
    pub fn in_tx(&self) -> bool {
        self.in_tx
    }

    /// Starts the strongest transaction the provider has for schema changes
    /// (`BEGIN EXCLUSIVE` on SQLite, a plain `BEGIN` elsewhere).
    pub async fn in_tx_exclusive(&mut self) -> Result<()> {
        let sql = if self.provider() == Provider::Sqlite {
            "BEGIN EXCLUSIVE"
        } else {
            "BEGIN"
        };
        self.start_tx(sql).await
    }

    async fn start_tx(&mut self, sql: &str) -> Result<()> {
        self.lock_for_tx().await?;
        self.in_tx = true;
        let r = self.batch(sql).await;
        if r.is_err() {
            self.write_guard = None;
        }
        r
    }

    /// Starts a transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue up front
    /// instead of failing to upgrade their lock later).
    pub async fn begin(&mut self) -> Result<()> {
        let sql = if self.provider() == Provider::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        self.start_tx(sql).await
    }

    /// Commits the open transaction.
    pub async fn commit(&mut self) -> Result<()> {
        self.batch("COMMIT").await?;
        self.in_tx = false;
        self.write_guard = None;
        Ok(())
    }

    /// Rolls the open transaction back; a failure leaves the connection to be closed.
    pub async fn rollback(&mut self) -> Result<()> {
        let r = self.batch("ROLLBACK").await;
        self.write_guard = None;
        r?;
        self.in_tx = false;
        Ok(())
    }

    /// Runs one statement with parameters, timing it into `trace` when given.
    pub async fn exec(
        &mut self,
        name: &str,
        sql: &str,
        params: &[Param],
        trace: Option<&mut Trace>,
    ) -> Result<QueryOutput> {
        let _guard = self.write_guard_for(sql).await?;
        let started = trace.as_ref().map(|_| Instant::now());
        let limit = self.limit;
        let out = Self::bounded(limit, async {
            match &mut self.inner {
                ConnInner::Pg(c) => postgres::exec_pg(c, sql, params).await,
                ConnInner::My(c) => mariadb::exec_my(c, sql, params).await,
                ConnInner::Lite(c) => sqlite::exec_lite(c, sql, params).await,
            }
        })
        .await
        .map_err(|e| self.settle(e, false))?;
        if let (Some(t), Some(s)) = (trace, started) {
            t.statements.push(StatementTiming {
                name: name.to_string(),
                ms: s.elapsed().as_secs_f64() * 1000.0,
                rows: if out.rows.is_empty() {
                    out.rows_affected
                } else {
                    out.rows.len() as u64
                },
            });
        }
        Ok(out)
    }

    /// Runs one statement like [`Conn::exec`] but hands its rows over `chunk_rows` at a
    /// time through `sink` instead of collecting them all (see [`ChunkSink`]). Returns the
    /// last chunk (possibly empty) with `rows_affected` / `last_insert_id`, for the caller
    /// to finish and hand over; `Ok(None)` when the consumer went away first.
    ///
    /// The connection's limit applies to filling one chunk, not to the whole statement:
    /// the time a chunk waits for a slow consumer does not count.
    pub async fn exec_chunked<T: From<Chunk>>(
        &mut self,
        sql: &str,
        params: &[Param],
        sink: &mut ChunkSink<'_, T>,
    ) -> Result<Option<Chunk>> {
        let _guard = self.write_guard_for(sql).await?;
        sink.limit = self.limit;
        sink.restart_clock();
        // If the consumer leaves mid-statement (this future is dropped, or a send fails),
        // a PostgreSQL/MariaDB connection is closed rather than returned: going back to
        // the pool would first drain every row the server still sends, which for a large
        // result takes long and holds the connection; a closed socket makes the server
        // stop the statement. SQLite stops stepping by itself, so its connection returns.
        let was_broken = self.broken;
        self.broken = true;
        let r = match &mut self.inner {
            ConnInner::Pg(c) => postgres::stream_pg(c, sql, params, sink).await,
            ConnInner::My(c) => mariadb::stream_my(c, sql, params, sink).await,
            ConnInner::Lite(c) => {
                self.broken = was_broken;
                sqlite::stream_lite(c, sql, params, sink).await
            }
        };
        if !matches!(r, Ok(false)) {
            self.broken = was_broken;
        }
        match r {
            Ok(true) => Ok(Some(sink.last())),
            Ok(false) => Ok(None),
            Err(e) => Err(self.settle(e, false)),
        }
    }
}

pub(super) fn count_mismatch(expected: usize, got: usize) -> DbcError {
    DbcError::validation(
        "params",
        format!("the SQL has {expected} parameter placeholder(s) but {got} value(s) were given"),
    )
}

pub(super) fn check_count<T>(params: Option<Either<&[T], usize>>, got: usize) -> Result<()> {
    let expected = match params {
        Some(Either::Left(types)) => types.len(),
        Some(Either::Right(n)) => n,
        None => return Ok(()),
    };
    if expected != got {
        return Err(count_mismatch(expected, got));
    }
    Ok(())
}
