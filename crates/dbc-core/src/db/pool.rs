//! [`Pool`]: one typed sqlx pool per provider — opening it (after probing one
//! connection, so a refused connection or a wrong password is reported within the acquire
//! timeout with its cause, where sqlx's own connect would retry for 30 s and say only
//! "pool timed out"), sizing it, its gauges, and handing out [`Conn`]s. sqlx's
//! ping-before-acquire is off; health is the router's own loop.

use std::time::{Duration, Instant};

use serde::Serialize;

use sqlx::mysql::{MySql, MySqlPool};
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, ConnectOptions, Either, Executor, SqlSafeStr};

use super::conn::{Conn, ConnInner};
use super::mariadb::my_options;
use super::postgres::pg_options;
use super::sqlite::sqlite_options;
use super::write_lock::WriteLock;
use crate::config::{ConnectionConfig, PoolConfig};
use crate::value::Value;
use crate::{DbcError, Provider, Result};

/// A pool of one provider.
#[derive(Clone, Debug)]
pub enum Pool {
    /// PostgreSQL
    Pg(PgPool),
    /// MariaDB / MySQL
    My(MySqlPool),
    /// SQLite, with its file's write lock (`None` for `:memory:`, whose one connection
    /// already serializes everything)
    Lite(SqlitePool, Option<WriteLock>),
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

pub(super) const APP_NAME: &str = "node-red-database-connector";

pub(super) fn pem_or_path(v: &str) -> Either<Vec<u8>, &str> {
    if v.contains("-----BEGIN") {
        Either::Left(v.as_bytes().to_vec())
    } else {
        Either::Right(v)
    }
}

pub(super) fn connect_error(
    provider: Provider,
    cfg: &ConnectionConfig,
    e: sqlx::Error,
) -> DbcError {
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
pub(super) fn is_certificate_problem(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("certificate") || m.contains("unknownissuer") || m.contains("notvalidforname")
}

pub(super) async fn within<T>(
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
                let lock = (!memory).then(|| {
                    WriteLock::for_file(
                        cfg.sqlite_file.as_deref().unwrap_or_default(),
                        pool.acquire_timeout(),
                    )
                });
                Ok(Pool::Lite(p.connect_lazy_with(o), lock))
            }
        }
    }

    /// The provider of this pool.
    pub fn provider(&self) -> Provider {
        match self {
            Pool::Pg(_) => Provider::Postgres,
            Pool::My(_) => Provider::Mariadb,
            Pool::Lite(..) => Provider::Sqlite,
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
            Pool::Lite(p, _) => ConnInner::Lite(
                p.acquire()
                    .await
                    .map_err(|e| DbcError::from_sqlx(e, false))?,
            ),
        };
        let write_lock = match self {
            Pool::Lite(_, lock) => lock.clone(),
            _ => None,
        };
        Ok(Conn {
            inner,
            in_tx: false,
            broken: false,
            limit: None,
            write_lock,
            write_guard: None,
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
            Pool::Lite(p, _) => (
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
            Pool::Lite(p, _) => p.close().await,
        }
    }

    /// The PostgreSQL pool, whose LISTEN/NOTIFY wakes consumers in other runtimes;
    /// `None` on the providers without it.
    pub fn notify_pool(&self) -> Option<PgPool> {
        match self {
            Pool::Pg(p) => Some(p.clone()),
            Pool::My(_) | Pool::Lite(..) => None,
        }
    }

    /// True for an embedded database (SQLite): a file that cannot be opened now will not
    /// come back by itself, unlike a server that is down.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Pool::Lite(..))
    }

    /// True once `close` has been called.
    pub fn is_closed(&self) -> bool {
        match self {
            Pool::Pg(p) => p.is_closed(),
            Pool::My(p) => p.is_closed(),
            Pool::Lite(p, _) => p.is_closed(),
        }
    }
}

/// The answer of a connection test.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub provider: Provider,
    pub server_version: String,
    pub latency_ms: f64,
}

/// Connects once with the given settings and reports the server version and latency
/// (the editor's "Test connection"); opens no pool that outlives the call.
pub async fn test_connection(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<TestResult> {
    let started = Instant::now();
    let p = Pool::connect(
        cfg,
        &PoolConfig {
            pool_max: 1,
            pool_min: 0,
            ..pool.clone()
        },
    )
    .await?;
    let sql = match p.provider() {
        Provider::Postgres => "SELECT current_setting('server_version')",
        Provider::Mariadb => "SELECT VERSION()",
        Provider::Sqlite => "SELECT sqlite_version()",
    };
    let r = async {
        let mut c = p.acquire().await?;
        c.exec("version", sql, &[], None).await
    }
    .await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    p.close().await;
    let out = r?;
    let server_version = match out.rows.first().and_then(|r| r.first()) {
        Some(Value::Text(v)) => v.clone(),
        _ => String::new(),
    };
    Ok(TestResult {
        provider: p.provider(),
        server_version,
        latency_ms,
    })
}
