//! One typed sqlx pool per provider, and the single statement runner every operation
//! goes through.
//!
//! `Pool::connect` probes one connection before building the pool, so a refused
//! connection or a wrong password is reported within the acquire timeout with its cause
//! (sqlx's own pool connect would retry for 30 s and then say only "pool timed out").
//! sqlx's ping-before-acquire is off; health is checked by the connector's own loop.
//!
//! `Conn::exec` binds parameters to the types the server expects (PostgreSQL tells them
//! at prepare time; prepared statements are cached per connection) and decodes every
//! column into a [`Value`] with the same rules on every provider (docs/TYPES.md).
//!
//! Long (over the project's 600-line guide) because it holds the type mapping of all
//! three providers (binding parameters, decoding rows); issue 15 moves each dialect's
//! part into its own store.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlSslMode};
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgSslMode, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo,
    ValueRef,
};

use crate::config::{ConnectionConfig, PoolConfig};
use crate::value::{iso_date, iso_naive, iso_time, iso_utc, parse_any_time, Param, Value};
use crate::{DbcError, Provider, Result};

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

/// A pool of one provider.
#[derive(Clone, Debug)]
pub enum Pool {
    /// PostgreSQL
    Pg(PgPool),
    /// MariaDB / MySQL
    My(MySqlPool),
    /// SQLite
    Lite(SqlitePool),
}

/// Pool gauges for metrics and `_debug.pool`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PoolState {
    /// open connections
    pub size: u32,
    /// open and idle
    pub idle: u32,
    /// open and in use
    #[serde(rename = "inUse")]
    pub in_use: u32,
    /// the configured maximum
    pub max: u32,
}

const APP_NAME: &str = "node-red-database-connector";

fn sqlite_options(cfg: &ConnectionConfig, busy: Duration) -> SqliteConnectOptions {
    let file = cfg.sqlite_file.clone().unwrap_or_default();
    if file == ":memory:" {
        SqliteConnectOptions::new().in_memory(true)
    } else {
        SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    }
    .foreign_keys(true)
    .busy_timeout(busy)
}

fn pem_or_path(v: &str) -> Either<Vec<u8>, &str> {
    if v.contains("-----BEGIN") {
        Either::Left(v.as_bytes().to_vec())
    } else {
        Either::Right(v)
    }
}

fn connect_error(provider: Provider, cfg: &ConnectionConfig, e: sqlx::Error) -> DbcError {
    let inner = DbcError::from_sqlx(e, false);
    let certificate = is_certificate_problem(&inner.to_string());
    let message = format!(
        "cannot connect to {} ({}): {inner}",
        provider,
        cfg.describe()
    );
    match inner {
        DbcError::AccessDenied(_) => DbcError::AccessDenied(message),
        // A refused certificate (ours or the server's) fails the same way every time:
        // say so plainly, and do not invite retries.
        _ if certificate => DbcError::AccessDenied(format!(
            "{message} — the TLS certificate was not accepted: check the CA (sslCa), that the \
             server certificate names the host you connect to, and the client cert/key"
        )),
        // e.g. "database does not exist": the connection could not be made
        _ => DbcError::Connection {
            message,
            outcome_unknown: false,
        },
    }
}

/// True when a connection error is about a TLS certificate (untrusted issuer, wrong
/// name, expired, or a client certificate the server refused).
fn is_certificate_problem(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("certificate") || m.contains("unknownissuer") || m.contains("notvalidforname")
}

async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(DbcError::Connection {
            message: format!("{what}: no answer within {} ms", limit.as_millis()),
            outcome_unknown: false,
        }),
    }
}

impl Pool {
    /// Opens a pool after probing one connection (see the module header).
    pub async fn connect(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<Pool> {
        Pool::probe(cfg, pool).await?;
        Pool::lazy(cfg, pool)
    }

    /// Opens one connection outside any pool and closes it again, within the acquire
    /// timeout: says whether the database can be reached now, and if not, why.
    pub async fn probe(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<()> {
        let provider = cfg.provider()?;
        let limit = pool.acquire_timeout();
        let what = match provider {
            Provider::Postgres => "connecting to postgres",
            Provider::Mariadb => "connecting to mariadb",
            Provider::Sqlite => "opening sqlite",
        };
        within(limit, what, async {
            let r = match provider {
                Provider::Postgres => match pg_options(cfg, pool)?.connect().await {
                    Ok(c) => sqlx::Connection::close(c).await.or(Ok(())),
                    Err(e) => Err(e),
                },
                Provider::Mariadb => match my_options(cfg)?.connect().await {
                    Ok(c) => sqlx::Connection::close(c).await.or(Ok(())),
                    Err(e) => Err(e),
                },
                Provider::Sqlite => match sqlite_options(cfg, limit).connect().await {
                    Ok(c) => sqlx::Connection::close(c).await.or(Ok(())),
                    Err(e) => Err(e),
                },
            };
            r.map_err(|e| connect_error(provider, cfg, e))
        })
        .await
    }

    /// Builds the pool without connecting: connections open on first use.
    pub fn lazy(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<Pool> {
        let provider = cfg.provider()?;
        fn opts<DB: sqlx::Database>(pool: &PoolConfig, max: u32) -> PoolOptions<DB> {
            PoolOptions::new()
                .max_connections(max)
                .min_connections(pool.pool_min.min(max))
                .acquire_timeout(pool.acquire_timeout())
                .idle_timeout(Some(Duration::from_millis(pool.idle_timeout_ms)))
                .test_before_acquire(false)
        }
        match provider {
            Provider::Postgres => Ok(Pool::Pg(
                opts(pool, pool.pool_max).connect_lazy_with(pg_options(cfg, pool)?),
            )),
            Provider::Mariadb => {
                let o = my_options(cfg)?;
                let stmt_secs = pool.statement_timeout_ms as f64 / 1000.0;
                let p = opts::<MySql>(pool, pool.pool_max)
                    .after_connect(move |conn: &mut sqlx::MySqlConnection, _meta| {
                        Box::pin(async move {
                            // READ COMMITTED avoids gap-lock deadlocks between claimers;
                            // max_statement_time is MariaDB's statement timeout.
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                            let set = format!("SET SESSION max_statement_time = {stmt_secs}");
                            if conn
                                .execute(AssertSqlSafe(set).into_sql_str())
                                .await
                                .is_err()
                            {
                                let ms = (stmt_secs * 1000.0) as u64;
                                let set = format!("SET SESSION max_execution_time = {ms}");
                                let _ = conn.execute(AssertSqlSafe(set).into_sql_str()).await;
                            }
                            Ok(())
                        })
                    })
                    .connect_lazy_with(o);
                Ok(Pool::My(p))
            }
            Provider::Sqlite => {
                let memory = cfg.sqlite_file.as_deref() == Some(":memory:");
                let o = sqlite_options(cfg, pool.acquire_timeout());
                // every in-memory connection is its own database: keep exactly one
                let max = if memory { 1 } else { pool.pool_max.min(8) };
                let p = opts(pool, max).min_connections(if memory { 1 } else { 0 });
                let p = if memory {
                    p.idle_timeout(None).max_lifetime(None)
                } else {
                    p
                };
                Ok(Pool::Lite(p.connect_lazy_with(o)))
            }
        }
    }

    /// The provider of this pool.
    pub fn provider(&self) -> Provider {
        match self {
            Pool::Pg(_) => Provider::Postgres,
            Pool::My(_) => Provider::Mariadb,
            Pool::Lite(_) => Provider::Sqlite,
        }
    }

    /// Takes a connection from the pool.
    pub async fn acquire(&self) -> Result<Conn> {
        let inner = match self {
            Pool::Pg(p) => ConnInner::Pg(
                p.acquire()
                    .await
                    .map_err(|e| DbcError::from_sqlx(e, false))?,
            ),
            Pool::My(p) => ConnInner::My(
                p.acquire()
                    .await
                    .map_err(|e| DbcError::from_sqlx(e, false))?,
            ),
            Pool::Lite(p) => ConnInner::Lite(
                p.acquire()
                    .await
                    .map_err(|e| DbcError::from_sqlx(e, false))?,
            ),
        };
        Ok(Conn {
            inner,
            in_tx: false,
            broken: false,
            limit: None,
        })
    }

    /// Current pool gauges (`max` as the pool was built: SQLite caps it, see `lazy`).
    pub fn state(&self) -> PoolState {
        let (size, idle, max) = match self {
            Pool::Pg(p) => (
                p.size(),
                p.num_idle() as u32,
                p.options().get_max_connections(),
            ),
            Pool::My(p) => (
                p.size(),
                p.num_idle() as u32,
                p.options().get_max_connections(),
            ),
            Pool::Lite(p) => (
                p.size(),
                p.num_idle() as u32,
                p.options().get_max_connections(),
            ),
        };
        PoolState {
            size,
            idle,
            in_use: size.saturating_sub(idle),
            max,
        }
    }

    /// Closes every connection; waits for the ones in use to come back.
    pub async fn close(&self) {
        match self {
            Pool::Pg(p) => p.close().await,
            Pool::My(p) => p.close().await,
            Pool::Lite(p) => p.close().await,
        }
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        match self {
            Pool::Pg(p) => p.is_closed(),
            Pool::My(p) => p.is_closed(),
            Pool::Lite(p) => p.is_closed(),
        }
    }
}

fn pg_options(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<PgConnectOptions> {
    let mut o = match &cfg.url {
        Some(url) if !url.is_empty() => url.parse::<PgConnectOptions>().map_err(|e| {
            DbcError::Config(format!(
                "invalid postgres URL: {}",
                crate::config::redact_url(&e.to_string())
            ))
        })?,
        _ => {
            let mut o = PgConnectOptions::new_without_pgpass()
                .host(
                    cfg.host
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .unwrap_or("127.0.0.1"),
                )
                .port(cfg.port.unwrap_or(5432) as u16);
            if let Some(db) = cfg.database.as_deref().filter(|d| !d.is_empty()) {
                o = o.database(db);
            }
            if let Some(u) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
                o = o.username(u);
            }
            if let Some(p) = cfg.password.as_deref().filter(|p| !p.is_empty()) {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = cfg.ssl.as_deref().filter(|s| !s.is_empty()) {
        o = o.ssl_mode(match mode {
            "disable" => PgSslMode::Disable,
            "require" => PgSslMode::Require,
            "verify-full" => PgSslMode::VerifyFull,
            _ => PgSslMode::Prefer,
        });
    }
    if let Some(ca) = cfg.ssl_ca.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(ca) {
            Either::Left(pem) => o.ssl_root_cert_from_pem(pem),
            Either::Right(path) => o.ssl_root_cert(path),
        };
    }
    if let Some(cert) = cfg.ssl_cert.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(cert) {
            Either::Left(pem) => o.ssl_client_cert_from_pem(pem),
            Either::Right(path) => o.ssl_client_cert(path),
        };
    }
    if let Some(key) = cfg.ssl_key.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(key) {
            Either::Left(pem) => o.ssl_client_key_from_pem(pem),
            Either::Right(path) => o.ssl_client_key(path),
        };
    }
    let timeout = pool.statement_timeout_ms.to_string();
    Ok(o.application_name(APP_NAME)
        .options([("statement_timeout", timeout.as_str())])
        .disable_statement_logging())
}

fn my_options(cfg: &ConnectionConfig) -> Result<MySqlConnectOptions> {
    let mut o = match &cfg.url {
        Some(url) if !url.is_empty() => url.parse::<MySqlConnectOptions>().map_err(|e| {
            DbcError::Config(format!(
                "invalid mariadb URL: {}",
                crate::config::redact_url(&e.to_string())
            ))
        })?,
        _ => {
            let mut o = MySqlConnectOptions::new()
                .host(
                    cfg.host
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .unwrap_or("127.0.0.1"),
                )
                .port(cfg.port.unwrap_or(3306) as u16);
            if let Some(db) = cfg.database.as_deref().filter(|d| !d.is_empty()) {
                o = o.database(db);
            }
            if let Some(u) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
                o = o.username(u);
            }
            if let Some(p) = cfg.password.as_deref().filter(|p| !p.is_empty()) {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = cfg.ssl.as_deref().filter(|s| !s.is_empty()) {
        o = o.ssl_mode(match mode {
            "disable" => MySqlSslMode::Disabled,
            "require" => MySqlSslMode::Required,
            "verify-full" => MySqlSslMode::VerifyIdentity,
            _ => MySqlSslMode::Preferred,
        });
    }
    if let Some(ca) = cfg.ssl_ca.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(ca) {
            Either::Left(pem) => o.ssl_ca_from_pem(pem),
            Either::Right(path) => o.ssl_ca(path),
        };
    }
    if let Some(cert) = cfg.ssl_cert.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(cert) {
            Either::Left(pem) => o.ssl_client_cert_from_pem(pem),
            Either::Right(path) => o.ssl_client_cert(path),
        };
    }
    if let Some(key) = cfg.ssl_key.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(key) {
            Either::Left(pem) => o.ssl_client_key_from_pem(pem),
            Either::Right(path) => o.ssl_client_key(path),
        };
    }
    // Times are stored and read as UTC.
    Ok(o.timezone(Some("+00:00".to_string()))
        .charset("utf8mb4")
        .disable_statement_logging())
}

enum ConnInner {
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
    inner: ConnInner,
    in_tx: bool,
    broken: bool,
    /// longest wait for any answer from the server (a black-holed link never errors)
    limit: Option<Duration>,
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

    /// Runs SQL that takes no parameters and returns nothing (may hold several statements).
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
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
        self.in_tx = true;
        self.batch(sql).await
    }

    /// Starts a transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue up front
    /// instead of failing to upgrade their lock later).
    pub async fn begin(&mut self) -> Result<()> {
        let sql = if self.provider() == Provider::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        self.in_tx = true;
        self.batch(sql).await
    }

    /// Commits the open transaction.
    pub async fn commit(&mut self) -> Result<()> {
        self.batch("COMMIT").await?;
        self.in_tx = false;
        Ok(())
    }

    /// Rolls the open transaction back; a failure leaves the connection to be closed.
    pub async fn rollback(&mut self) -> Result<()> {
        self.batch("ROLLBACK").await?;
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
        let started = trace.as_ref().map(|_| Instant::now());
        let limit = self.limit;
        let out = Self::bounded(limit, async {
            match &mut self.inner {
                ConnInner::Pg(c) => exec_pg(c, sql, params).await,
                ConnInner::My(c) => exec_my(c, sql, params).await,
                ConnInner::Lite(c) => exec_lite(c, sql, params).await,
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
            ConnInner::Pg(c) => stream_pg(c, sql, params, sink).await,
            ConnInner::My(c) => stream_my(c, sql, params, sink).await,
            ConnInner::Lite(c) => {
                self.broken = was_broken;
                stream_lite(c, sql, params, sink).await
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

/// One piece of a streamed result ([`Conn::exec_chunked`]).
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    /// column names, in order (repeated in every chunk: a few strings per chunk)
    pub columns: Vec<String>,
    /// up to `chunk_rows` rows
    pub rows: Vec<Vec<Value>>,
    /// rows handed over so far, this chunk's included; on the last chunk of a statement
    /// that returned no rows, the rows it changed (the meaning `rowCount` has in `query`)
    pub row_count: u64,
    /// true on the last chunk
    pub done: bool,
    /// auto-increment id of an INSERT (MariaDB, SQLite), on the last chunk
    pub last_insert_id: Option<Value>,
}

/// Where [`Conn::exec_chunked`] puts rows: it fills one chunk at a time and hands full
/// ones to a bounded channel, so the database read waits while the consumer is behind.
/// One full chunk is held back until the next row shows there is more, so the last
/// chunk handed over is always the one marked `done`.
pub struct ChunkSink<'a, T> {
    tx: &'a tokio::sync::mpsc::Sender<T>,
    size: usize,
    limit: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
    columns: Vec<String>,
    current: Vec<Vec<Value>>,
    held: Option<Vec<Vec<Value>>>,
    rows_affected: u64,
    last_insert_id: Option<Value>,
    /// rows handed over or waiting to be
    rows: u64,
    /// chunks handed over
    pub sent: u64,
    /// time spent in the database, not waiting for the consumer
    pub db_time: Duration,
    since: Instant,
}

impl<'a, T: From<Chunk>> ChunkSink<'a, T> {
    /// A sink of chunks of `size` rows (at least 1) into `tx`.
    pub fn new(tx: &'a tokio::sync::mpsc::Sender<T>, size: usize) -> ChunkSink<'a, T> {
        ChunkSink {
            tx,
            size: size.max(1),
            limit: None,
            deadline: None,
            columns: Vec::new(),
            current: Vec::new(),
            held: None,
            rows_affected: 0,
            last_insert_id: None,
            rows: 0,
            sent: 0,
            db_time: Duration::ZERO,
            since: Instant::now(),
        }
    }

    fn restart_clock(&mut self) {
        self.since = Instant::now();
        self.deadline = self.limit.map(|l| tokio::time::Instant::now() + l);
    }

    /// Waits for `f` within the current chunk's deadline.
    async fn wait<R>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<R, sqlx::Error>>,
    ) -> Result<R> {
        let r = match self.deadline {
            None => Ok(f.await),
            Some(d) => tokio::time::timeout_at(d, f).await,
        };
        match r {
            Ok(r) => r.map_err(|e| DbcError::from_sqlx(e, true)),
            Err(_) => Err(DbcError::Connection {
                message: format!(
                    "no answer from the database within {} ms",
                    self.limit.unwrap_or_default().as_millis()
                ),
                outcome_unknown: true,
            }),
        }
    }

    /// Adds one row; false when the consumer went away.
    async fn row(&mut self, values: Vec<Value>) -> bool {
        if let Some(rows) = self.held.take() {
            self.db_time += self.since.elapsed();
            let chunk = Chunk {
                columns: self.columns.clone(),
                row_count: self.rows,
                rows,
                done: false,
                last_insert_id: None,
            };
            if self.tx.send(T::from(chunk)).await.is_err() {
                return false;
            }
            self.sent += 1;
            self.restart_clock();
        }
        self.current.push(values);
        self.rows += 1;
        if self.current.len() >= self.size {
            self.held = Some(std::mem::replace(
                &mut self.current,
                Vec::with_capacity(self.size),
            ));
        }
        true
    }

    fn last(&mut self) -> Chunk {
        self.db_time += self.since.elapsed();
        let rows = self
            .held
            .take()
            .unwrap_or_else(|| std::mem::take(&mut self.current));
        Chunk {
            columns: std::mem::take(&mut self.columns),
            row_count: if self.rows == 0 {
                self.rows_affected
            } else {
                self.rows
            },
            rows,
            done: true,
            last_insert_id: self.last_insert_id.take(),
        }
    }
}

fn count_mismatch(expected: usize, got: usize) -> DbcError {
    DbcError::validation(
        "params",
        format!("the SQL has {expected} parameter placeholder(s) but {got} value(s) were given"),
    )
}

fn check_count<T>(params: Option<Either<&[T], usize>>, got: usize) -> Result<()> {
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
                    if let Some(id) = done.last_id() {
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

#[allow(deprecated)] // fetch_many: the one call that yields both rows and rows_affected
async fn exec_pg(
    c: &mut PoolConnection<Postgres>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    let q = bind_pg_all(&stmt, params)?;
    Ok(collect_rows!(q.fetch_many(&mut **c), decode_pg))
}

/// Checks the placeholder count and binds every parameter to the type PostgreSQL
/// expects for it.
fn bind_pg_all<'q>(
    stmt: &'q sqlx::postgres::PgStatement,
    params: &'q [Param],
) -> Result<PgQuery<'q>> {
    check_count(stmt.parameters(), params.len())?;
    let types: Vec<String> = match stmt.parameters() {
        Some(Either::Left(t)) => t.iter().map(|t| t.name().to_string()).collect(),
        _ => Vec::new(),
    };
    let mut q = stmt.query();
    for (i, (p, ty)) in params.iter().zip(types.iter()).enumerate() {
        q = bind_pg(q, p, ty, i + 1)?;
    }
    Ok(q)
}

type LiteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_lite<'q>(mut q: LiteQuery<'q>, params: &[Param]) -> LiteQuery<'q> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(b) => q.bind(*b),
            Param::Int(i) => q.bind(*i),
            Param::Float(f) => q.bind(*f),
            Param::Text(s) => q.bind(s.clone()),
            Param::Json(j) => q.bind(j.to_string()),
            Param::Bytes(b) => q.bind(b.clone()),
            Param::Time(t) => q.bind(iso_utc(*t)),
        };
    }
    q
}

// The streaming runners: the same prepare, binding and decoding as exec_*, rows handed to
// a ChunkSink. Each returns false when the consumer went away.

#[allow(deprecated)]
async fn stream_pg<T: From<Chunk>>(
    c: &mut PoolConnection<Postgres>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    let q = bind_pg_all(&stmt, params)?;
    Ok(stream_rows!(q.fetch_many(&mut **c), decode_pg, sink))
}

#[allow(deprecated)]
async fn stream_my<T: From<Chunk>>(
    c: &mut PoolConnection<MySql>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_my(stmt.query(), params);
    Ok(stream_rows!(q.fetch_many(&mut **c), decode_my, sink))
}

#[allow(deprecated)]
async fn stream_lite<T: From<Chunk>>(
    c: &mut PoolConnection<Sqlite>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_lite(stmt.query(), params);
    let more = stream_rows!(q.fetch_many(&mut **c), decode_lite, sink);
    // as in exec_lite: only an INSERT/REPLACE reports the connection's last rowid
    if !is_insert(sql) {
        sink.last_insert_id = None;
    }
    Ok(more)
}

#[allow(deprecated)]
async fn exec_my(
    c: &mut PoolConnection<MySql>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_my(stmt.query(), params);
    Ok(collect_rows!(q.fetch_many(&mut **c), decode_my))
}

type MyQuery<'q> = sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>;

fn bind_my<'q>(mut q: MyQuery<'q>, params: &[Param]) -> MyQuery<'q> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(b) => q.bind(*b),
            Param::Int(i) => q.bind(*i),
            Param::Float(f) => q.bind(*f),
            Param::Text(s) => q.bind(s.clone()),
            Param::Json(j) => q.bind(j.to_string()),
            Param::Bytes(b) => q.bind(b.clone()),
            // sessions run in UTC (see my_options), so a naive UTC time is exact
            Param::Time(t) => q.bind(t.naive_utc()),
        };
    }
    q
}

#[allow(deprecated)]
async fn exec_lite(
    c: &mut PoolConnection<Sqlite>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_lite(stmt.query(), params);
    let mut out = collect_rows!(q.fetch_many(&mut **c), decode_lite);
    // sqlite3_last_insert_rowid() belongs to the connection and outlives its INSERT: only
    // an INSERT/REPLACE reports it, not a later UPDATE/DELETE on the same pooled connection.
    if !is_insert(sql) {
        out.last_insert_id = None;
    }
    Ok(out)
}

/// True when the statement (after leading comments) is an INSERT or REPLACE.
fn is_insert(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    let lower = rest.to_ascii_lowercase();
    lower.starts_with("insert")
        || lower.starts_with("replace")
        || (lower.starts_with("with") && lower.contains("insert"))
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bad_param(n: usize, p: &Param, ty: &str, why: &str) -> DbcError {
    DbcError::validation(
        format!("params[{}]", n - 1),
        format!("parameter ${n} ({}) cannot be used as {ty}{why}", p.kind()),
    )
}

fn int_of(n: usize, p: &Param, ty: &str) -> Result<Option<i64>> {
    Ok(match p {
        Param::Null => None,
        Param::Int(i) => Some(*i),
        Param::Bool(b) => Some(*b as i64),
        Param::Float(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 => {
            Some(*f as i64)
        }
        Param::Text(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| bad_param(n, p, ty, ": not an integer"))?,
        ),
        _ => return Err(bad_param(n, p, ty, "")),
    })
}

fn float_of(n: usize, p: &Param, ty: &str) -> Result<Option<f64>> {
    Ok(match p {
        Param::Null => None,
        Param::Int(i) => Some(*i as f64),
        Param::Float(f) => Some(*f),
        Param::Text(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| bad_param(n, p, ty, ": not a number"))?,
        ),
        _ => return Err(bad_param(n, p, ty, "")),
    })
}

fn int_array(n: usize, p: &Param, ty: &str, lo: i64, hi: i64) -> Result<Option<Vec<i64>>> {
    match p {
        Param::Null => Ok(None),
        Param::Json(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| {
                match v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(x) if (lo..=hi).contains(&x) => Ok(x),
                    _ => Err(bad_param(
                        n,
                        p,
                        ty,
                        ": every element must be an integer in range",
                    )),
                }
            })
            .collect::<Result<Vec<i64>>>()
            .map(Some),
        _ => Err(bad_param(n, p, ty, "")),
    }
}

fn bind_pg<'q>(q: PgQuery<'q>, p: &'q Param, ty: &str, n: usize) -> Result<PgQuery<'q>> {
    let range = |v: Option<i64>, lo: i64, hi: i64| -> Result<Option<i64>> {
        match v {
            Some(x) if x < lo || x > hi => Err(bad_param(n, p, ty, ": out of range")),
            other => Ok(other),
        }
    };
    Ok(match ty {
        "BOOL" => q.bind(match p {
            Param::Null => None,
            Param::Bool(b) => Some(*b),
            Param::Int(i) => Some(*i != 0),
            Param::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
                "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
                _ => return Err(bad_param(n, p, ty, ": not a boolean")),
            },
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "INT2" => q.bind(range(int_of(n, p, ty)?, i16::MIN as i64, i16::MAX as i64)?.map(|v| v as i16)),
        "INT4" => q.bind(range(int_of(n, p, ty)?, i32::MIN as i64, i32::MAX as i64)?.map(|v| v as i32)),
        "INT8" => q.bind(int_of(n, p, ty)?),
        "OID" => q.bind(range(int_of(n, p, ty)?, 0, u32::MAX as i64)?.map(|v| sqlx::postgres::types::Oid(v as u32))),
        "FLOAT4" => q.bind(float_of(n, p, ty)?.map(|v| v as f32)),
        "FLOAT8" => q.bind(float_of(n, p, ty)?),
        "NUMERIC" => q.bind(match p {
            Param::Null => None,
            Param::Int(_) | Param::Float(_) | Param::Text(_) => Some(
                p.to_text()
                    .unwrap_or_default()
                    .trim()
                    .parse::<bigdecimal::BigDecimal>()
                    .map_err(|_| bad_param(n, p, ty, ": not a decimal"))?,
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "JSON" | "JSONB" => q.bind(match p {
            Param::Null => None,
            // a string is taken as JSON text, as node-postgres does
            Param::Text(s) => Some(sqlx::types::Json(std::borrow::Cow::Owned(
                serde_json::from_str::<serde_json::Value>(s)
                    .map_err(|e| bad_param(n, p, ty, &format!(": invalid JSON ({e})")))?,
            ))),
            // borrowed, not cloned: a 1,000-task insert binds its rows as one JSON array,
            // and cloning that tree per statement showed in the profile
            Param::Json(j) => Some(sqlx::types::Json(std::borrow::Cow::Borrowed(j))),
            Param::Bool(b) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::Bool(*b)))),
            Param::Int(i) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::from(*i)))),
            Param::Float(f) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::from(*f)))),
            Param::Time(t) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::String(iso_utc(*t))))),
            Param::Bytes(_) => return Err(bad_param(n, p, ty, "")),
        }),
        "UUID" => q.bind(match p {
            Param::Null => None,
            Param::Text(s) => Some(uuid::Uuid::parse_str(s).map_err(|_| bad_param(n, p, ty, ": not a UUID"))?),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "TIMESTAMPTZ" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?),
        }),
        "TIMESTAMP" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?.naive_utc()),
        }),
        "DATE" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?.date_naive()),
        }),
        "TIME" => q.bind(match p {
            Param::Null => None,
            Param::Text(s) => Some(
                chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M"))
                    .map_err(|_| bad_param(n, p, ty, ": not HH:MM:SS"))?,
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "BYTEA" => q.bind(match p {
            Param::Null => None,
            Param::Bytes(b) => Some(b.clone()),
            Param::Text(s) => Some(s.as_bytes().to_vec()),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => q.bind(p.to_text()),
        "INT2[]" => q.bind(int_array(n, p, ty, i16::MIN as i64, i16::MAX as i64)?.map(|v| v.into_iter().map(|x| x as i16).collect::<Vec<_>>())),
        "INT4[]" => q.bind(int_array(n, p, ty, i32::MIN as i64, i32::MAX as i64)?.map(|v| v.into_iter().map(|x| x as i32).collect::<Vec<_>>())),
        "INT8[]" => q.bind(int_array(n, p, ty, i64::MIN, i64::MAX)?),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" => q.bind(match p {
            Param::Null => None,
            Param::Json(serde_json::Value::Array(a)) => Some(
                a.iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<String>>(),
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        other => {
            return Err(DbcError::validation(
                format!("params[{}]", n - 1),
                format!("parameter ${n} has type {other}, which the connector does not bind; cast it in SQL, e.g. ${n}::text::{}", other.to_lowercase()),
            ))
        }
    })
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

fn decode_pg(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    Ok(match ty.as_str() {
        "BOOL" => Value::Bool(get!(row, i, bool, &ty)),
        "INT2" => Value::Int(get!(row, i, i16, &ty) as i64),
        "INT4" => Value::Int(get!(row, i, i32, &ty) as i64),
        "INT8" => Value::from_i64(get!(row, i, i64, &ty)),
        "OID" => Value::Int(get!(row, i, sqlx::postgres::types::Oid, &ty).0 as i64),
        "FLOAT4" => Value::Float(get!(row, i, f32, &ty) as f64),
        "FLOAT8" => Value::Float(get!(row, i, f64, &ty)),
        "NUMERIC" => Value::Text(get!(row, i, bigdecimal::BigDecimal, &ty).to_plain_string()),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => Value::Text(get!(row, i, String, &ty)),
        "\"CHAR\"" | "CHAR" => Value::Text((get!(row, i, i8, &ty) as u8 as char).to_string()),
        "JSON" | "JSONB" => Value::Json(get!(row, i, serde_json::Value, &ty)),
        "UUID" => Value::Text(get!(row, i, uuid::Uuid, &ty).to_string()),
        "TIMESTAMPTZ" => Value::Text(iso_utc(get!(row, i, chrono::DateTime<chrono::Utc>, &ty))),
        "TIMESTAMP" => Value::Text(iso_naive(get!(row, i, chrono::NaiveDateTime, &ty))),
        "DATE" => Value::Text(iso_date(get!(row, i, chrono::NaiveDate, &ty))),
        "TIME" => Value::Text(iso_time(get!(row, i, chrono::NaiveTime, &ty))),
        "BYTEA" => Value::Bytes(get!(row, i, Vec<u8>, &ty)),
        "VOID" => Value::Null,
        "INT2[]" => Value::Json(get!(row, i, Vec<Option<i16>>, &ty).into()),
        "INT4[]" => Value::Json(get!(row, i, Vec<Option<i32>>, &ty).into()),
        "INT8[]" => Value::Json(
            get!(row, i, Vec<Option<i64>>, &ty)
                .into_iter()
                .map(|x| x.map(|x| Value::from_i64(x).into_json()).unwrap_or(serde_json::Value::Null))
                .collect::<Vec<_>>()
                .into(),
        ),
        "FLOAT8[]" => Value::Json(get!(row, i, Vec<Option<f64>>, &ty).into()),
        "BOOL[]" => Value::Json(get!(row, i, Vec<Option<bool>>, &ty).into()),
        "TEXT[]" | "VARCHAR[]" => Value::Json(get!(row, i, Vec<Option<String>>, &ty).into()),
        "UUID[]" => Value::Json(
            get!(row, i, Vec<Option<uuid::Uuid>>, &ty)
                .into_iter()
                .map(|u| u.map(|u| serde_json::Value::String(u.to_string())).unwrap_or(serde_json::Value::Null))
                .collect::<Vec<_>>()
                .into(),
        ),
        other => {
            return Err(DbcError::Query {
                message: format!(
                    "column {:?} has type {other}, which the connector does not decode; cast it in SQL, e.g. {}::text",
                    row.columns()[i].name(),
                    row.columns()[i].name()
                ),
                sql_state: None,
            })
        }
    })
}

fn decode_my(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info().into_owned();
    let ty = info.name().to_string();
    Ok(match ty.as_str() {
        "BOOLEAN" => Value::Bool(get!(row, i, i8, &ty) != 0),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            Value::from_i64(get!(row, i, i64, &ty))
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "BIT" => Value::from_u64(get!(row, i, u64, &ty)),
        "FLOAT" => Value::Float(get!(row, i, f32, &ty) as f64),
        "DOUBLE" => Value::Float(get!(row, i, f64, &ty)),
        "DECIMAL" => Value::Text(get!(row, i, bigdecimal::BigDecimal, &ty).to_plain_string()),
        "JSON" => Value::Json(get!(row, i, serde_json::Value, &ty)),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Value::Text(get!(row, i, String, &ty))
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let bytes = get!(row, i, Vec<u8>, &ty);
            if is_binary_collation(&info) {
                Value::Bytes(bytes)
            } else {
                // A `_bin` text collation sets the BINARY flag, so text such as MariaDB's
                // JSON columns (LONGTEXT utf8mb4_bin) arrives typed as a blob.
                text_or_json(bytes)
            }
        }
        "DATETIME" => Value::Text(iso_naive(get!(row, i, chrono::NaiveDateTime, &ty))),
        "TIMESTAMP" => Value::Text(iso_utc(get!(row, i, chrono::DateTime<chrono::Utc>, &ty))),
        "DATE" => Value::Text(iso_date(get!(row, i, chrono::NaiveDate, &ty))),
        "TIME" => Value::Text(iso_time(get!(row, i, chrono::NaiveTime, &ty))),
        "NULL" => Value::Null,
        _ => Value::Bytes(get!(row, i, Vec<u8>, &ty)),
    })
}

/// sqlx does not expose a column's collation; its Debug output does. Binary data has
/// collation 63 (`binary`).
fn is_binary_collation(info: &sqlx::mysql::MySqlTypeInfo) -> bool {
    let dbg = format!("{info:?}");
    dbg.contains("Collation(63)") || dbg.contains("collation: 63") || !dbg.contains("ollation")
}

fn text_or_json(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => {
            let t = s.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                if let Ok(j) = serde_json::from_str::<serde_json::Value>(&s) {
                    return Value::Json(j);
                }
            }
            Value::Text(s)
        }
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

fn decode_lite(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let declared = row.columns()[i].type_info().name().to_string();
    let storage = raw.type_info().name().to_string();
    Ok(match storage.as_str() {
        "INTEGER" | "BOOLEAN" if declared == "BOOLEAN" => {
            Value::Bool(get!(row, i, i64, &storage) != 0)
        }
        "INTEGER" | "BOOLEAN" | "NUMERIC" => Value::from_i64(get!(row, i, i64, &storage)),
        "REAL" => Value::Float(get!(row, i, f64, &storage)),
        "BLOB" => Value::Bytes(get!(row, i, Vec<u8>, &storage)),
        _ => Value::Text(get!(row, i, String, &storage)),
    })
}
