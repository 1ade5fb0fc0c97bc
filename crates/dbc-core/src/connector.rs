//! [`Connector`]: one config node's pools and the operations a flow can run on them.
//!
//! Operations arrive by name with a JSON payload ([`Connector::execute`]) or as SQL
//! with parameters ([`Connector::query`]); each runs on one pooled connection and, with
//! debug on, returns a [`DebugInfo`] measured here (statement timings, pool state).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::{ConnectionConfig, ConnectorConfig};
use crate::db::{Pool, PoolState, QueryOutput, StatementTiming, Trace};
use crate::migrate::{self, Pending, SchemaStatus};
use crate::sqltext::bind_named;
use crate::tasks::{self, Backoff, Dialect, Limits, NewTask, StatusChange};
use crate::value::Params;
use crate::{DbcError, Provider, Result};

/// Per-call options from the node.
#[derive(Debug, Clone, Default)]
pub struct OpOptions {
    /// collect `_debug` data
    pub debug: bool,
    /// the node's default queue
    pub queue: Option<String>,
}

/// What the database side of `msg._debug` holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebugInfo {
    pub provider: Provider,
    pub failover: bool,
    pub connection_state: &'static str,
    pub db_ms: f64,
    pub statements: Vec<StatementTiming>,
    pub pool: PoolDebug,
    pub retries: u32,
}

/// `_debug.pool`.
#[derive(Debug, Clone, Serialize)]
pub struct PoolDebug {
    #[serde(flatten)]
    pub state: PoolState,
    /// operations waiting for a connection
    pub waiting: u32,
}

/// The value an operation produced.
#[derive(Debug)]
pub enum OpValue {
    /// a JSON result (tasks, workflows...)
    Json(Json),
    /// rows of a `query`
    Rows(QueryOutput),
}

/// A successful operation.
#[derive(Debug)]
pub struct Outcome {
    /// where it ran
    pub provider: Provider,
    /// the result
    pub value: OpValue,
    /// present when debug was on
    pub debug: Option<DebugInfo>,
}

/// A failed operation, with where and what it was.
#[derive(Debug)]
pub struct Failure {
    /// the error
    pub error: DbcError,
    /// the provider it ran on (or was meant for)
    pub provider: Provider,
    /// the operation name
    pub operation: String,
}

/// The answer of a connection test.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub provider: Provider,
    pub server_version: String,
    pub latency_ms: f64,
}

struct Backend {
    pool: Pool,
    dialect: Dialect,
}

/// One config node's databases.
pub struct Connector {
    cfg: ConnectorConfig,
    primary: Backend,
    waiting: std::sync::atomic::AtomicU32,
    closed: AtomicBool,
}

/// The operations `execute` knows (the `query` operation has its own entry point).
pub const OPERATIONS: &[&str] = &["insertTask", "getTask", "updateTaskStatus"];

impl Connector {
    /// Probes and opens the primary pool, then applies migrations when configured to.
    pub async fn open(cfg: ConnectorConfig) -> Result<Connector> {
        cfg.validate()?;
        let pool = Pool::connect(&cfg.primary, &cfg.pool).await?;
        let dialect = Dialect {
            provider: pool.provider(),
            prefix: cfg.table_prefix.clone(),
        };
        if cfg.auto_migrate {
            if let Err(e) = migrate::migrate(&pool, &cfg.table_prefix).await {
                pool.close().await;
                return Err(e);
            }
        }
        tracing::info!(target = %cfg.primary.describe(), "connected");
        Ok(Connector {
            cfg,
            primary: Backend { pool, dialect },
            waiting: Default::default(),
            closed: AtomicBool::new(false),
        })
    }

    /// The provider in use.
    pub fn provider(&self) -> Provider {
        self.primary.pool.provider()
    }

    /// The connection state name of SPEC.md.
    pub fn connection_state(&self) -> &'static str {
        if self.closed.load(Ordering::Relaxed) {
            "disconnected"
        } else {
            "connected"
        }
    }

    /// Pool gauges of the active provider.
    pub fn pool_state(&self) -> PoolDebug {
        PoolDebug {
            state: self.primary.pool.state(self.effective_max()),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    fn effective_max(&self) -> u32 {
        match self.provider() {
            Provider::Sqlite if self.cfg.primary.sqlite_file.as_deref() == Some(":memory:") => 1,
            Provider::Sqlite => self.cfg.pool.pool_max.min(8),
            _ => self.cfg.pool.pool_max,
        }
    }

    fn fail(&self, operation: &str, error: DbcError) -> Failure {
        Failure {
            error,
            provider: self.provider(),
            operation: operation.to_string(),
        }
    }

    fn check_open(&self, operation: &str) -> std::result::Result<(), Failure> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(self.fail(
                operation,
                DbcError::Connection {
                    message: "the connector is closed".into(),
                    outcome_unknown: false,
                },
            ));
        }
        Ok(())
    }

    async fn acquire(&self) -> Result<crate::db::Conn> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let c = self.primary.pool.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        c
    }

    fn debug_info(&self, trace: Option<Trace>) -> Option<DebugInfo> {
        trace.map(|t| DebugInfo {
            provider: self.provider(),
            failover: false,
            connection_state: self.connection_state(),
            db_ms: t.db_ms(),
            statements: t.statements,
            pool: self.pool_state(),
            retries: t.retries,
        })
    }

    /// Runs SQL with parameters (`:name` placeholders for named parameters).
    pub async fn query(
        &self,
        sql: &str,
        params: Params,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        self.check_open("query")?;
        let provider = self.provider();
        if sql.trim().is_empty() {
            return Err(self.fail(
                "query",
                DbcError::validation("sql", "no SQL: set it in the node or in msg.topic"),
            ));
        }
        let (sql, params) = bind_named(provider, sql, params).map_err(|e| self.fail("query", e))?;
        let mut trace = opts.debug.then(Trace::default);
        let r = async {
            let mut conn = self.acquire().await?;
            conn.exec("query", &sql, &params, trace.as_mut()).await
        }
        .await;
        match r {
            Ok(out) => Ok(Outcome {
                provider,
                value: OpValue::Rows(out),
                debug: self.debug_info(trace),
            }),
            Err(e) => Err(self.fail("query", e)),
        }
    }

    /// Runs a queue operation by name with its JSON payload.
    pub async fn execute(
        &self,
        operation: &str,
        payload: Json,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        self.check_open(operation)?;
        let mut trace = opts.debug.then(Trace::default);
        let r = self
            .dispatch(operation, payload, opts, trace.as_mut())
            .await;
        match r {
            Ok(v) => Ok(Outcome {
                provider: self.provider(),
                value: OpValue::Json(v),
                debug: self.debug_info(trace),
            }),
            Err(e) => Err(self.fail(operation, e)),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.cfg.max_payload_bytes,
        }
    }

    async fn dispatch(
        &self,
        operation: &str,
        payload: Json,
        opts: &OpOptions,
        mut trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let d = &self.primary.dialect;
        let queue = opts
            .queue
            .as_deref()
            .filter(|q| !q.is_empty())
            .unwrap_or("default");
        let to_json = |v: std::result::Result<Json, serde_json::Error>| {
            v.map_err(|e| DbcError::Internal(e.to_string()))
        };
        match operation {
            "insertTask" => {
                let (tasks, single) = match &payload {
                    Json::Array(items) => (
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, t)| {
                                NewTask::parse(t, &format!("payload[{i}]"), queue, self.limits())
                            })
                            .collect::<Result<Vec<_>>>()?,
                        false,
                    ),
                    other => (vec![NewTask::parse(other, "", queue, self.limits())?], true),
                };
                let mut conn = self.acquire().await?;
                let mut out =
                    tasks::insert_tasks(&mut conn, d, tasks, trace.as_deref_mut()).await?;
                if single {
                    to_json(serde_json::to_value(out.remove(0)))
                } else {
                    to_json(serde_json::to_value(out))
                }
            }
            "getTask" => {
                let id = tasks::uuid_of("id", payload.get("id").unwrap_or(&Json::Null))?;
                let mut conn = self.acquire().await?;
                to_json(serde_json::to_value(
                    tasks::get_task(&mut conn, d, &id, trace).await?,
                ))
            }
            "updateTaskStatus" => {
                let change = StatusChange::parse(&payload)?;
                let mut conn = self.acquire().await?;
                let t =
                    tasks::update_task_status(&mut conn, d, &change, self.backoff(), trace).await?;
                to_json(serde_json::to_value(t))
            }
            other => Err(DbcError::validation(
                "operation",
                format!(
                    "unknown operation {other:?}; known: query, {}",
                    OPERATIONS.join(", ")
                ),
            )),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            base_ms: self.cfg.retry_backoff_ms,
            max_ms: self.cfg.retry_backoff_max_ms,
        }
    }

    /// Applied and pending migrations.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        migrate::status(&self.primary.pool, &self.cfg.table_prefix).await
    }

    /// Applies pending migrations now.
    pub async fn migrate(&self) -> Result<Vec<Pending>> {
        migrate::migrate(&self.primary.pool, &self.cfg.table_prefix).await
    }

    /// Closes the pools; operations after this fail with `DBC_CONNECTION`.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.primary.pool.close().await;
    }
}

/// Connects once with the given settings and reports the server version and latency
/// (the editor's "Test connection"); opens no pool that outlives the call.
pub async fn test_connection(
    cfg: &ConnectionConfig,
    pool: &crate::PoolConfig,
) -> Result<TestResult> {
    let started = Instant::now();
    let p = Pool::connect(
        cfg,
        &crate::PoolConfig {
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
        Some(crate::value::Value::Text(v)) => v.clone(),
        _ => String::new(),
    };
    Ok(TestResult {
        provider: p.provider(),
        server_version,
        latency_ms,
    })
}
