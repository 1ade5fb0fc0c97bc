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
use crate::db::Conn;
use crate::db::{Pool, PoolState, QueryOutput, StatementTiming, Trace};
use crate::migrate::{self, Pending, SchemaStatus};
use crate::sqltext::bind_named;
use crate::tasks::{self, Backoff, Claim, Dialect, Limits, NewTask, StatusChange};
use crate::value::{Param, Params};
use crate::workflows;
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
    worker_id: String,
    reaper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The operations `execute` knows (plus `query` inside `executeTransaction`; a plain
/// `query` has its own entry point).
pub const OPERATIONS: &[&str] = &[
    "insertTask",
    "claimTasks",
    "updateTaskStatus",
    "requeueFailedTask",
    "getTask",
    "listTasks",
    "deleteTask",
    "createWorkflow",
    "getWorkflowProgress",
    "executeTransaction",
];

/// Most retries of an operation that failed with a deadlock or serialization failure.
const MAX_RETRIES: u32 = 3;

/// How often expired leases are looked for.
const REAP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

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
        let reaper = spawn_reaper(pool.clone(), dialect.clone());
        let worker_id = format!("dbc-{}", &tasks::new_id()[24..]);
        Ok(Connector {
            cfg,
            primary: Backend { pool, dialect },
            waiting: Default::default(),
            closed: AtomicBool::new(false),
            worker_id,
            reaper: std::sync::Mutex::new(Some(reaper)),
        })
    }

    /// The worker id used for claims that name none.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
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

    /// Runs a queue operation by name with its JSON payload. A deadlock or serialization
    /// failure (the whole operation was rolled back) is retried up to 3 times with backoff.
    pub async fn execute(
        &self,
        operation: &str,
        payload: Json,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        self.check_open(operation)?;
        let mut trace = opts.debug.then(Trace::default);
        let mut attempt = 0;
        let r = loop {
            let r = self
                .dispatch(operation, &payload, opts, trace.as_mut())
                .await;
            match &r {
                Err(e) if attempt < MAX_RETRIES && is_safe_retry(e) => {
                    attempt += 1;
                    if let Some(t) = trace.as_mut() {
                        t.retries += 1;
                    }
                    tracing::debug!(operation, attempt, "retrying after {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10u64 << (2 * attempt)))
                        .await;
                }
                _ => break r,
            }
        };
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
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Json> {
        if !OPERATIONS.contains(&operation) {
            return Err(DbcError::validation(
                "operation",
                format!(
                    "unknown operation {operation:?}; known: query, {}",
                    OPERATIONS.join(", ")
                ),
            ));
        }
        let mut conn = self.acquire().await?;
        if operation == "executeTransaction" {
            return self.transaction(&mut conn, payload, opts, trace).await;
        }
        self.run_on(&mut conn, operation, payload, opts, trace)
            .await
    }

    async fn transaction(
        &self,
        conn: &mut Conn,
        payload: &Json,
        opts: &OpOptions,
        mut trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let steps = match payload {
            Json::Array(s) if !s.is_empty() && s.len() <= 1000 => s,
            _ => {
                return Err(DbcError::validation(
                    "payload",
                    "executeTransaction takes an array of 1 to 1000 steps {operation, payload}",
                ))
            }
        };
        // validate the shape of every step before anything runs
        let mut plan = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let op = step.get("operation").and_then(Json::as_str).unwrap_or("");
            if !(op == "query" || OPERATIONS.contains(&op)) || op == "executeTransaction" {
                return Err(DbcError::Transaction {
                    index: i,
                    source: Box::new(DbcError::validation(
                        format!("payload[{i}].operation"),
                        format!("step {i}: operation {op:?} cannot run in a transaction"),
                    )),
                });
            }
            plan.push((op, step.get("payload").cloned().unwrap_or(Json::Null)));
        }
        conn.begin().await?;
        let mut results = Vec::with_capacity(plan.len());
        for (i, (op, p)) in plan.iter().enumerate() {
            let r = if *op == "query" {
                self.query_step(conn, p, trace.as_deref_mut()).await
            } else {
                self.run_on(conn, op, p, opts, trace.as_deref_mut()).await
            };
            match r {
                Ok(v) => results.push(v),
                Err(e) => {
                    if conn.rollback().await.is_err() {
                        tracing::warn!("rollback failed; the connection is closed instead");
                    }
                    return Err(DbcError::Transaction {
                        index: i,
                        source: Box::new(e),
                    });
                }
            }
        }
        conn.commit().await?;
        Ok(Json::Array(results))
    }

    async fn query_step(
        &self,
        conn: &mut Conn,
        p: &Json,
        trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let sql = p
            .get("sql")
            .and_then(Json::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| DbcError::validation("sql", "a query step needs {sql, params?}"))?;
        let params = match p.get("params") {
            None | Some(Json::Null) => Params::None,
            Some(Json::Array(a)) => {
                Params::Positional(a.iter().cloned().map(Param::from_json).collect())
            }
            Some(Json::Object(o)) => Params::Named(
                o.iter()
                    .map(|(k, v)| (k.clone(), Param::from_json(v.clone())))
                    .collect(),
            ),
            Some(_) => {
                return Err(DbcError::validation(
                    "params",
                    "params must be an array or an object",
                ))
            }
        };
        let (sql, params) = bind_named(self.provider(), sql, params)?;
        let out = conn.exec("query", &sql, &params, trace).await?;
        let count = if out.rows.is_empty() {
            out.rows_affected
        } else {
            out.rows.len() as u64
        };
        let rows: Vec<Json> = out
            .rows
            .into_iter()
            .map(|r| {
                Json::Object(
                    out.columns
                        .iter()
                        .cloned()
                        .zip(r.into_iter().map(|v| v.into_json()))
                        .collect(),
                )
            })
            .collect();
        let mut res = serde_json::json!({ "rows": rows, "rowCount": count });
        if let Some(id) = out.last_insert_id {
            res["lastInsertId"] = id.into_json();
        }
        Ok(res)
    }

    async fn run_on(
        &self,
        conn: &mut Conn,
        operation: &str,
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let d = &self.primary.dialect;
        let queue = opts
            .queue
            .as_deref()
            .filter(|q| !q.is_empty())
            .unwrap_or("default");
        let id_of = |p: &Json| tasks::uuid_of("id", p.get("id").unwrap_or(&Json::Null));
        let json = |v: std::result::Result<Json, serde_json::Error>| {
            v.map_err(|e| DbcError::Internal(e.to_string()))
        };
        match operation {
            "insertTask" => {
                let (list, single) = match payload {
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
                let mut out = tasks::insert_tasks(conn, d, list, trace).await?;
                if single {
                    json(serde_json::to_value(out.remove(0)))
                } else {
                    json(serde_json::to_value(out))
                }
            }
            "claimTasks" => {
                let claim = Claim::parse(payload, queue, &self.worker_id)?;
                json(serde_json::to_value(
                    tasks::claim_tasks(conn, d, &claim, trace).await?,
                ))
            }
            "updateTaskStatus" => {
                let change = StatusChange::parse(payload)?;
                json(serde_json::to_value(
                    tasks::update_task_status(conn, d, &change, self.backoff(), trace).await?,
                ))
            }
            "requeueFailedTask" => json(serde_json::to_value(
                tasks::requeue_failed(conn, d, &id_of(payload)?, trace).await?,
            )),
            "getTask" => json(serde_json::to_value(
                tasks::get_task(conn, d, &id_of(payload)?, trace).await?,
            )),
            "listTasks" => json(serde_json::to_value(
                tasks::list_tasks(conn, d, payload, trace).await?,
            )),
            "deleteTask" => tasks::delete_task(conn, d, &id_of(payload)?, trace).await,
            "createWorkflow" => json(serde_json::to_value(
                workflows::create_workflow(conn, d, payload, queue, self.limits(), trace).await?,
            )),
            "getWorkflowProgress" => json(serde_json::to_value(
                workflows::progress(conn, d, payload, trace).await?,
            )),
            other => Err(DbcError::validation(
                "operation",
                format!("operation {other:?} cannot run here"),
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
        if let Some(h) = self.reaper.lock().ok().and_then(|mut g| g.take()) {
            h.abort();
        }
        self.primary.pool.close().await;
    }
}

/// A rolled-back deadlock or serialization failure can simply run again.
fn is_safe_retry(e: &DbcError) -> bool {
    matches!(e.sql_state(), Some(s) if crate::error::is_retryable_state(s)) && !e.outcome_unknown()
}

/// Expired leases are returned to `pending` by this loop, every `REAP_EVERY`.
fn spawn_reaper(pool: Pool, d: Dialect) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        let mut last_error = String::new();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                break;
            }
            let r = async {
                let mut conn = pool.acquire().await?;
                tasks::reap_expired(&mut conn, &d).await
            }
            .await;
            match r {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(tasks = n, "expired leases returned to pending");
                    }
                    last_error.clear();
                }
                // once per distinct error, so an outage does not flood the log
                Err(e) if e.to_string() != last_error => {
                    last_error = e.to_string();
                    tracing::warn!("lease reaper: {last_error}");
                }
                Err(_) => {}
            }
        }
    })
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
