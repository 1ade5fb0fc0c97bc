//! [`Connector`]: one config node's pools and the operations a flow can run on them.
//!
//! Operations arrive by name with a JSON payload ([`Connector::execute`]) or as SQL
//! with parameters ([`Connector::query`]); each runs on one pooled connection and, with
//! debug on, returns a [`DebugInfo`] measured here (statement timings, pool state).
//! [`Connector::query_stream`] runs a query whose rows arrive in chunks ([`RowStream`]).
//!
//! Long (over the project's 600-line guide) because every operation's argument parsing and
//! result shaping sits here beside the pools and debug timing; issue 15 moves the
//! operations into an `Op` enum and per-dialect stores, which splits this file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::{ConnectionConfig, ConnectorConfig};
use crate::db::{Chunk, ChunkSink, Conn};
use crate::db::{Pool, PoolState, QueryOutput, StatementTiming, Trace};
use crate::failover::{Backend, MoveReport, Router, RouterConfig};
use crate::migrate::{self, Pending, SchemaStatus};
use crate::queue::{service, workflows};
use crate::sqltext::bind_named;
use crate::task::{self, Backoff, Claim, Limits, NewTask, StatusChange};
use crate::value::{Param, Params};
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

/// One chunk of a streamed query ([`RowStream::next`]).
#[derive(Debug)]
pub struct StreamChunk {
    /// the rows and counts
    pub chunk: Chunk,
    /// on the last chunk, when debug was on
    pub debug: Option<DebugInfo>,
}

impl From<Chunk> for std::result::Result<StreamChunk, Failure> {
    fn from(chunk: Chunk) -> Self {
        Ok(StreamChunk { chunk, debug: None })
    }
}

type ChunkReply = std::result::Result<StreamChunk, Failure>;

/// What a stream needs to start on its first `next`.
struct StreamStart {
    connector: std::sync::Arc<Connector>,
    sql: String,
    params: Params,
    chunk_rows: usize,
    opts: OpOptions,
}

/// Stops a [`RowStream`] from anywhere, also while a `next` is waiting.
#[derive(Clone)]
pub struct StreamStop(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl StreamStop {
    /// Ends the stream: a waiting `next` returns `None`, the producing task stops and its
    /// connection goes back to the pool.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A query whose rows arrive in chunks, made by [`Connector::query_stream`].
///
/// A task produces chunks into a channel of capacity 1, so the database read waits for
/// the consumer: memory holds a few chunks, never the whole result. The task ends when
/// the last chunk or an error is taken, when [`StreamStop::stop`] is called, or when
/// the stream is dropped.
pub struct RowStream {
    start: Option<StreamStart>,
    rx: Option<tokio::sync::mpsc::Receiver<ChunkReply>>,
    provider: Provider,
    stop: tokio::sync::watch::Receiver<bool>,
    stopper: StreamStop,
    finished: bool,
}

impl RowStream {
    /// A handle that stops this stream.
    pub fn stopper(&self) -> StreamStop {
        self.stopper.clone()
    }

    /// Stops the stream (see [`StreamStop::stop`]).
    pub fn close(&mut self) {
        self.stopper.stop();
        self.start = None;
        self.rx = None;
        self.finished = true;
    }

    /// The next chunk; `None` after the last one (marked `done`), after an error, or
    /// once stopped. Must be called inside a tokio runtime (the first call starts the
    /// producing task). Bad input fails here, before any connection is taken.
    pub async fn next(&mut self) -> std::result::Result<Option<StreamChunk>, Failure> {
        if self.finished || *self.stop.borrow() {
            self.close();
            return Ok(None);
        }
        if let Some(start) = self.start.take() {
            match start.begin(self.stop.clone()) {
                Ok(rx) => self.rx = Some(rx),
                Err(f) => {
                    self.close();
                    return Err(f);
                }
            }
        }
        let Some(rx) = self.rx.as_mut() else {
            self.close();
            return Ok(None);
        };
        let mut stop = self.stop.clone();
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = stop.wait_for(|s| *s) => None,
        };
        let stopped = *self.stop.borrow();
        match got {
            Some(Ok(c)) if !c.chunk.done => Ok(Some(c)),
            Some(r) => {
                self.close();
                r.map(Some)
            }
            None if stopped => {
                self.close();
                Ok(None)
            }
            // the producing task ended without its last chunk: it panicked
            None => {
                self.close();
                Err(Failure {
                    error: DbcError::Internal(
                        "the query stream ended without its last chunk; please report this".into(),
                    ),
                    provider: self.provider,
                    operation: "query".into(),
                })
            }
        }
    }
}

impl StreamStart {
    /// Checks the input as `query` does and starts the producing task.
    fn begin(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<ChunkReply>, Failure> {
        let StreamStart {
            connector,
            sql,
            params,
            chunk_rows,
            opts,
        } = self;
        let bound = connector.check_query(&sql, &params)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let gone = tx.clone();
        tokio::spawn(async move {
            // stopping or dropping the consumer drops the producer where it stands: its
            // connection goes back to the pool, which first drains what the server still
            // sends of the abandoned statement
            tokio::select! {
                _ = connector.produce(sql, bound, params, chunk_rows, opts, tx) => {}
                _ = stop.wait_for(|s| *s) => {}
                _ = gone.closed() => {}
            }
        });
        Ok(rx)
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

/// One config node's databases.
pub struct Connector {
    cfg: ConnectorConfig,
    router: std::sync::Arc<Router>,
    waiting: std::sync::atomic::AtomicU32,
    closed: AtomicBool,
    worker_id: String,
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    waker: std::sync::Arc<crate::queue::wake::Waker>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// group commit of concurrent single inserts and completions, per database
    lanes: crate::queue::batch::Lanes,
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
    /// Opens the router (probing the primary and applying migrations when configured
    /// to; see [`Router::open`] for a primary that is down at start-up) and starts the
    /// health loop and the lease reaper.
    pub async fn open(cfg: ConnectorConfig) -> Result<Connector> {
        cfg.validate()?;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let router = std::sync::Arc::new(
            Router::open(
                &cfg.primary,
                cfg.fallback.as_ref(),
                RouterConfig {
                    pool: cfg.pool.clone(),
                    prefix: cfg.table_prefix.clone(),
                    auto_migrate: cfg.auto_migrate,
                    failback_auto: cfg.failback != "manual",
                    every: std::time::Duration::from_millis(cfg.health_interval_ms),
                    threshold: cfg.failover_threshold.max(1),
                },
                metrics.clone(),
            )
            .await?,
        );
        let background = vec![
            tokio::spawn(router.clone().health_loop()),
            spawn_maintenance(router.clone(), cfg.retention_days),
        ];

        let waker = crate::queue::wake::Waker::new(match &router.primary.pool() {
            Pool::Pg(p) => Some((p.clone(), format!("{}wake", cfg.table_prefix))),
            _ => None,
        });
        let worker_id = format!("dbc-{}", &task::new_id()[24..]);
        let lanes = crate::queue::batch::Lanes::new(
            &router,
            backoff_of(&cfg),
            std::time::Duration::from_millis(cfg.pool.statement_timeout_ms + 2_000),
            metrics.clone(),
        );
        Ok(Connector {
            cfg,
            router,
            waiting: Default::default(),
            closed: AtomicBool::new(false),
            worker_id,
            background: std::sync::Mutex::new(background),
            waker,
            metrics,
            lanes,
        })
    }

    /// The worker id used for claims that name none.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The provider new operations go to (the fallback's while failed over).
    pub fn provider(&self) -> Provider {
        self.router.active().provider()
    }

    /// The connection state name of SPEC.md.
    pub fn connection_state(&self) -> &'static str {
        if self.closed.load(Ordering::Relaxed) {
            "disconnected"
        } else {
            self.router.state()
        }
    }

    /// Why the state last changed.
    pub fn state_reason(&self) -> String {
        self.metrics
            .state_log()
            .pop()
            .map(|c| c.reason)
            .unwrap_or_default()
    }

    /// True while operations go to the fallback.
    pub fn failover(&self) -> bool {
        self.router.on_fallback()
    }

    /// Pool gauges of the active provider.
    pub fn pool_state(&self) -> PoolDebug {
        let b = self.router.active();
        PoolDebug {
            state: b.pool().state(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    fn fail(&self, operation: &str, error: DbcError) -> Failure {
        self.fail_on(self.provider(), operation, error)
    }

    fn fail_on(&self, provider: Provider, operation: &str, error: DbcError) -> Failure {
        Failure {
            error,
            provider,
            operation: operation.to_string(),
        }
    }

    /// Moves what was written to the fallback back to the primary and routes new
    /// operations there (the admin API's manual failback; `auto` does it by itself).
    pub async fn failback(&self) -> Result<MoveReport> {
        self.router.failback("manual").await
    }

    /// Moves every workflow, task, execution, error row and dependency of this
    /// connector's database in use to `dst`'s (the reconciliation failback runs; also a
    /// way to carry a SQLite prototype's queue over to PostgreSQL). Both are held still
    /// while it runs.
    pub async fn move_all_to(&self, dst: &Connector) -> Result<MoveReport> {
        let _a = self.router.ticket().await;
        let _b = dst.router.ticket().await;
        let (s, d) = (self.router.active(), dst.router.active());
        crate::failover::reconcile(&s.pool(), &s.dialect, &d.pool(), &d.dialect).await
    }

    /// What the last failback moved.
    pub fn last_failback(&self) -> Option<MoveReport> {
        self.router.last_move()
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

    async fn acquire(&self, b: &Backend) -> Result<crate::db::Conn> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let c = b.pool().acquire().await;
        self.metrics.acquire.record(started.elapsed());
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut c = match c {
            Ok(c) => c,
            Err(e) => return Err(self.router.explain(b, e).await),
        };
        c.set_limit(std::time::Duration::from_millis(
            self.cfg.pool.statement_timeout_ms + 2_000,
        ));
        Ok(c)
    }

    fn debug_info(&self, provider: Provider, trace: Option<Trace>) -> Option<DebugInfo> {
        trace.map(|t| DebugInfo {
            provider,
            failover: provider != self.router.primary.provider() || self.router.on_fallback(),
            connection_state: self.connection_state(),
            db_ms: t.db_ms(),
            statements: t.statements,
            pool: self.pool_state(),
            retries: t.retries,
        })
    }

    /// The input checks of `query` and its streaming form: open, some SQL, placeholders
    /// and values that bind — so bad input never waits for a connection. Returns the
    /// statement bound for the current provider.
    fn check_query(
        &self,
        sql: &str,
        params: &Params,
    ) -> std::result::Result<(String, Vec<Param>), Failure> {
        self.check_open("query")?;
        if sql.trim().is_empty() {
            return Err(self.fail(
                "query",
                DbcError::validation("sql", "no SQL: set it in the node or in msg.topic"),
            ));
        }
        bind_named(self.provider(), sql, params.clone()).map_err(|e| self.fail("query", e))
    }

    /// Runs SQL with parameters (`:name` placeholders for named parameters).
    pub async fn query(
        &self,
        sql: &str,
        params: Params,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        let bound = self.check_query(sql, &params)?;
        let first = self.provider();
        let started = Instant::now();
        let mut trace = opts.debug.then(Trace::default);
        let _ticket = self.router.ticket().await;
        let (r, provider) = match self.router.pick() {
            Err(e) => (Err(e), self.provider()),
            Ok(mut b) => {
                let mut attempt = 0;
                loop {
                    let r = async {
                        let stmt = bound_for(b.provider(), first, &bound, sql, &params)?;
                        if let Some(t) = trace.as_mut() {
                            t.statements.clear();
                        }
                        let mut conn = self.acquire(b).await?;
                        conn.exec("query", &stmt.0, &stmt.1, trace.as_mut()).await
                    }
                    .await;
                    match &r {
                        Err(e) => match self.router.reroute(b, e, attempt).await {
                            Some(next) => {
                                b = next;
                                attempt += 1;
                            }
                            None => break (r, b.provider()),
                        },
                        Ok(_) => break (r, b.provider()),
                    }
                }
            }
        };
        self.metrics.record("query", started.elapsed(), r.is_ok());
        match r {
            Ok(out) => Ok(Outcome {
                provider,
                value: OpValue::Rows(out),
                debug: self.debug_info(provider, trace),
            }),
            Err(e) => Err(self.fail_on(provider, "query", e)),
        }
    }

    /// Runs SQL like [`Connector::query`], its rows handed over `chunk_rows` at a time
    /// ([`RowStream`]); nothing runs until the first [`RowStream::next`].
    pub fn query_stream(
        self: &std::sync::Arc<Self>,
        sql: String,
        params: Params,
        chunk_rows: usize,
        opts: OpOptions,
    ) -> RowStream {
        let (stopper, stop) = tokio::sync::watch::channel(false);
        RowStream {
            start: Some(StreamStart {
                connector: self.clone(),
                sql,
                params,
                chunk_rows,
                opts,
            }),
            rx: None,
            provider: self.provider(),
            stop,
            stopper: StreamStop(std::sync::Arc::new(stopper)),
            finished: false,
        }
    }

    /// The producing side of a [`RowStream`]: runs where `query` would (ticket, pick,
    /// acquire, reroute while nothing was handed over yet) and puts chunks into `tx`,
    /// the last one with the debug data; an error ends the stream.
    async fn produce(
        &self,
        sql: String,
        bound: (String, Vec<Param>),
        params: Params,
        chunk_rows: usize,
        opts: OpOptions,
        tx: tokio::sync::mpsc::Sender<ChunkReply>,
    ) {
        let first = self.provider();
        let started = Instant::now();
        let mut trace = opts.debug.then(Trace::default);
        let ticket = self.router.ticket().await;
        let (r, provider) = match self.router.pick() {
            Err(e) => (Err(e), self.provider()),
            Ok(mut b) => {
                let mut attempt = 0;
                loop {
                    let mut sink = ChunkSink::new(&tx, chunk_rows);
                    let r = async {
                        let stmt = bound_for(b.provider(), first, &bound, &sql, &params)?;
                        let mut conn = self.acquire(b).await?;
                        conn.exec_chunked(&stmt.0, &stmt.1, &mut sink).await
                    }
                    .await;
                    if let (Some(t), Ok(Some(last))) = (trace.as_mut(), &r) {
                        t.statements = vec![StatementTiming {
                            name: "query".into(),
                            ms: sink.db_time.as_secs_f64() * 1000.0,
                            rows: last.row_count,
                        }];
                    }
                    match &r {
                        // once rows went out, running the statement again would repeat them
                        Err(e) if sink.sent == 0 => {
                            match self.router.reroute(b, e, attempt).await {
                                Some(next) => {
                                    b = next;
                                    attempt += 1;
                                }
                                None => break (r, b.provider()),
                            }
                        }
                        _ => break (r, b.provider()),
                    }
                }
            }
        };
        // the connection is back in the pool; a slow consumer of the last chunk must not
        // hold off a failback either
        drop(ticket);
        self.metrics.record("query", started.elapsed(), r.is_ok());
        let reply = match r {
            Ok(Some(chunk)) => Ok(StreamChunk {
                chunk,
                debug: self.debug_info(provider, trace),
            }),
            Ok(None) => return,
            Err(e) => Err(self.fail_on(provider, "query", e)),
        };
        let _ = tx.send(reply).await;
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
        let started = Instant::now();
        let mut trace = opts.debug.then(Trace::default);
        let mut attempt = 0;
        let (r, provider) = loop {
            // boxed: the operations' futures are large, and every caller above would
            // otherwise copy them on each move (measured as memmove in every call)
            let (r, provider) =
                Box::pin(self.routed(operation, &payload, opts, trace.as_mut())).await;
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
                _ => break (r, provider),
            }
        };
        self.metrics.record(operation, started.elapsed(), r.is_ok());
        if let Ok(v) = &r {
            // new claimable work: wake consumers here at once, elsewhere via NOTIFY
            let mut queues = Vec::new();
            pending_queues(v, &mut queues);
            for q in queues {
                self.waker.poke(&q);
            }
        }
        match r {
            Ok(v) => Ok(Outcome {
                provider,
                value: OpValue::Json(v),
                debug: self.debug_info(provider, trace),
            }),
            Err(e) => Err(self.fail_on(provider, operation, e)),
        }
    }

    /// Runs an operation where the router says, once more elsewhere if it says so.
    async fn routed(
        &self,
        operation: &str,
        payload: &Json,
        opts: &OpOptions,
        mut trace: Option<&mut Trace>,
    ) -> (Result<Json>, Provider) {
        let _ticket = self.router.ticket().await;
        let mut b = match self.router.pick() {
            Ok(b) => b,
            Err(e) => return (Err(e), self.provider()),
        };
        let mut attempt = 0;
        loop {
            let r = self
                .dispatch(b, operation, payload, opts, trace.as_deref_mut())
                .await;
            let Err(e) = &r else {
                return (r, b.provider());
            };
            match self.router.reroute(b, e, attempt).await {
                Some(next) => {
                    b = next;
                    attempt += 1;
                }
                None => return (r, b.provider()),
            }
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.cfg.max_payload_bytes,
        }
    }

    async fn dispatch(
        &self,
        b: &Backend,
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
        if trace.is_none() {
            let queue = opts
                .queue
                .as_deref()
                .filter(|q| !q.is_empty())
                .unwrap_or("default");
            let lanes = self.lanes.of(&self.router, b);
            if let Some(r) = lanes.run(operation, payload, queue, self.limits()).await {
                return r;
            }
        }
        let mut conn = self.acquire(b).await?;
        if operation == "executeTransaction" {
            return self.transaction(b, &mut conn, payload, opts, trace).await;
        }
        self.run_on(b, &mut conn, operation, payload, opts, trace)
            .await
    }

    async fn transaction(
        &self,
        b: &Backend,
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
                self.query_step(b, conn, p, trace.as_deref_mut()).await
            } else {
                self.run_on(b, conn, op, p, opts, trace.as_deref_mut())
                    .await
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
        b: &Backend,
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
        let (sql, params) = bind_named(b.provider(), sql, params)?;
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
        b: &Backend,
        conn: &mut Conn,
        operation: &str,
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let store = &b.store;
        let queue = opts
            .queue
            .as_deref()
            .filter(|q| !q.is_empty())
            .unwrap_or("default");
        let id_of = |p: &Json| task::input::uuid_of("id", p.get("id").unwrap_or(&Json::Null));
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
                let mut out = service::insert_tasks(conn, store, &list, trace).await?;
                if single {
                    json(serde_json::to_value(out.remove(0)))
                } else {
                    json(serde_json::to_value(out))
                }
            }
            "claimTasks" => {
                let claim = Claim::parse(payload, queue, &self.worker_id)?;
                json(serde_json::to_value(
                    service::claim_tasks(conn, store, &claim, trace).await?,
                ))
            }
            "updateTaskStatus" => {
                let change = StatusChange::parse(payload)?;
                change.check_size(self.limits())?;
                json(serde_json::to_value(
                    service::update_task_status(conn, store, &change, self.backoff(), trace)
                        .await?,
                ))
            }
            "requeueFailedTask" => json(serde_json::to_value(
                service::requeue_failed(conn, store, &id_of(payload)?, trace).await?,
            )),
            "getTask" => json(serde_json::to_value(
                service::get_task(conn, store, &id_of(payload)?, trace).await?,
            )),
            "listTasks" => json(serde_json::to_value(
                service::list_tasks(conn, store, payload, trace).await?,
            )),
            "deleteTask" => service::delete_task(conn, store, &id_of(payload)?, trace).await,
            "createWorkflow" => json(serde_json::to_value(
                workflows::create_workflow(conn, store, payload, queue, self.limits(), trace)
                    .await?,
            )),
            "getWorkflowProgress" => json(serde_json::to_value(
                workflows::progress(conn, store, payload, trace).await?,
            )),
            other => Err(DbcError::validation(
                "operation",
                format!("operation {other:?} cannot run here"),
            )),
        }
    }

    fn backoff(&self) -> Backoff {
        backoff_of(&self.cfg)
    }

    /// Applied and pending migrations.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let _t = self.router.ticket().await;
        let b = self.router.active();
        match migrate::status(&b.pool(), &self.cfg.table_prefix).await {
            Err(e) => Err(self.router.explain(b, e).await),
            ok => ok,
        }
    }

    /// Applies pending migrations now (on the database in use).
    pub async fn migrate(&self) -> Result<Vec<Pending>> {
        let _t = self.router.ticket().await;
        let b = self.router.active();
        match migrate::migrate(&b.pool(), &self.cfg.table_prefix).await {
            Err(e) => Err(self.router.explain(b, e).await),
            ok => ok,
        }
    }

    /// Waits until new work may be in `queue` (a poke here, or a NOTIFY on PostgreSQL)
    /// or `timeout_ms` passes; true when woken. Consumers call it when a claim came back
    /// empty.
    pub async fn wait_for_tasks(&self, queue: &str, timeout_ms: u64) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        self.waker
            .wait(
                queue,
                std::time::Duration::from_millis(timeout_ms.min(60_000)),
            )
            .await
    }

    /// Number of tasks by queue and status.
    pub async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        let _t = self.router.ticket().await;
        if self.connection_state() == "reconnecting" {
            return Err(DbcError::Connection {
                message: "the database is not reachable; reconnecting".into(),
                outcome_unknown: false,
            });
        }
        let b = self.router.active();
        let mut conn = self.acquire(b).await?;
        let counts = b.store.count_by_queue_and_status(&mut conn).await?;
        Ok(counts
            .into_iter()
            .map(|(queue, status, count)| QueueDepth {
                queue,
                status,
                count,
            })
            .collect())
    }

    /// Metrics as JSON (SPEC.md "Admin HTTP API"): state and its change log, pool gauges
    /// with acquire-time percentiles, per-operation counts, error rates and latency
    /// percentiles, and queue depth by queue and status.
    pub async fn metrics_json(&self) -> Json {
        let pool = self.pool_state();
        let mut ops = serde_json::Map::new();
        for (name, s) in self.metrics.operations() {
            ops.insert(
                name.to_string(),
                serde_json::to_value(s).unwrap_or_default(),
            );
        }
        let mut out = serde_json::json!({
            "provider": self.provider(),
            "state": self.connection_state(),
            "failover": self.failover(),
            "primary": self.router.primary.provider(),
            "fallback": self.router.fallback.as_ref().map(|f| f.provider()),
            "lastFailback": self.last_failback(),
            "stateLog": self.metrics.state_log(),
            "pool": {
                "size": pool.state.size, "idle": pool.state.idle, "inUse": pool.state.in_use,
                "max": pool.state.max, "waiting": pool.waiting,
                "acquireMs": { "p50": self.metrics.acquire.quantile_ms(0.5), "p99": self.metrics.acquire.quantile_ms(0.99) },
            },
            "operations": ops,
        });
        match self.queue_depth().await {
            Ok(q) => out["queues"] = serde_json::to_value(q).unwrap_or_default(),
            Err(e) => out["queuesError"] = Json::String(format!("{}: {e}", e.code())),
        }
        out
    }

    /// Metrics in the Prometheus text exposition format; `connection` labels every series.
    pub async fn metrics_prometheus(&self, connection: &str) -> String {
        use std::fmt::Write;
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let base = format!(
            "connection=\"{}\",provider=\"{}\"",
            esc(connection),
            self.provider()
        );
        let mut o = String::new();
        let pool = self.pool_state();
        let _ = writeln!(
            o,
            "# HELP dbc_up 1 while the connection is usable.\n# TYPE dbc_up gauge"
        );
        let _ = writeln!(
            o,
            "dbc_up{{{base}}} {}",
            u8::from(self.connection_state() == "connected")
        );
        let _ = writeln!(o, "# HELP dbc_pool_connections Pool connections by state.\n# TYPE dbc_pool_connections gauge");
        let _ = writeln!(
            o,
            "dbc_pool_connections{{{base},state=\"idle\"}} {}",
            pool.state.idle
        );
        let _ = writeln!(
            o,
            "dbc_pool_connections{{{base},state=\"in_use\"}} {}",
            pool.state.in_use
        );
        let _ = writeln!(o, "# HELP dbc_pool_max Configured pool maximum.\n# TYPE dbc_pool_max gauge\ndbc_pool_max{{{base}}} {}", pool.state.max);
        let _ = writeln!(o, "# HELP dbc_pool_waiting Operations waiting for a connection.\n# TYPE dbc_pool_waiting gauge\ndbc_pool_waiting{{{base}}} {}", pool.waiting);
        let _ = writeln!(
            o,
            "# HELP dbc_operations_total Operations run.\n# TYPE dbc_operations_total counter"
        );
        for (name, s) in self.metrics.histograms() {
            let _ = writeln!(
                o,
                "dbc_operations_total{{{base},operation=\"{name}\"}} {}",
                s.latency.count()
            );
        }
        let _ = writeln!(o, "# HELP dbc_operation_errors_total Operations that failed.\n# TYPE dbc_operation_errors_total counter");
        for (name, s) in self.metrics.histograms() {
            let _ = writeln!(
                o,
                "dbc_operation_errors_total{{{base},operation=\"{name}\"}} {}",
                s.errors.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP dbc_operation_duration_seconds Wall time of operations.\n# TYPE dbc_operation_duration_seconds histogram");
        for (name, s) in self.metrics.histograms() {
            for (le, n) in s.latency.cumulative().into_iter().step_by(4) {
                let _ = writeln!(o, "dbc_operation_duration_seconds_bucket{{{base},operation=\"{name}\",le=\"{le}\"}} {n}");
            }
            let c = s.latency.count();
            let _ = writeln!(o, "dbc_operation_duration_seconds_bucket{{{base},operation=\"{name}\",le=\"+Inf\"}} {c}");
            let _ = writeln!(
                o,
                "dbc_operation_duration_seconds_sum{{{base},operation=\"{name}\"}} {}",
                s.latency.sum_secs()
            );
            let _ = writeln!(
                o,
                "dbc_operation_duration_seconds_count{{{base},operation=\"{name}\"}} {c}"
            );
        }
        if let Ok(depth) = self.queue_depth().await {
            let _ = writeln!(
                o,
                "# HELP dbc_queue_tasks Tasks by queue and status.\n# TYPE dbc_queue_tasks gauge"
            );
            for q in depth {
                let _ = writeln!(
                    o,
                    "dbc_queue_tasks{{{base},queue=\"{}\",status=\"{}\"}} {}",
                    esc(&q.queue),
                    q.status,
                    q.count
                );
            }
        }
        o
    }

    /// Closes the pools; operations after this fail with `DBC_CONNECTION`.
    pub async fn close(&self) {
        self.metrics
            .state_change("disconnected", "closed by the runtime (redeploy or stop)");
        self.closed.store(true, Ordering::Relaxed);
        if let Ok(mut g) = self.background.lock() {
            for h in g.drain(..) {
                h.abort();
            }
        }
        self.waker.stop().await;
        self.router.close().await;
    }
}

fn backoff_of(cfg: &ConnectorConfig) -> Backoff {
    Backoff {
        base_ms: cfg.retry_backoff_ms,
        max_ms: cfg.retry_backoff_max_ms,
    }
}

/// Tasks by queue and status (metrics).
#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    /// queue name
    pub queue: String,
    /// task status
    pub status: String,
    /// number of tasks
    pub count: i64,
}

/// Collects the queues of every pending task in an operation's result.
fn pending_queues(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| pending_queues(i, out)),
        Json::Object(o) => {
            if o.get("status").and_then(Json::as_str) == Some("pending") {
                if let Some(q) = o.get("queue").and_then(Json::as_str) {
                    if !out.iter().any(|x| x == q) {
                        out.push(q.to_string());
                    }
                }
            }
            if let Some(t) = o.get("tasks") {
                pending_queues(t, out);
            }
        }
        _ => {}
    }
}

/// A rolled-back deadlock or serialization failure can simply run again.
fn is_safe_retry(e: &DbcError) -> bool {
    matches!(e.sql_state(), Some(s) if crate::error::is_retryable_state(s)) && !e.outcome_unknown()
}

/// Background upkeep on the database in use: expired leases go back to `pending`
/// (every `REAP_EVERY`), and once a minute finished tasks older than the retention are
/// deleted in small batches. Health and failover are the router's own loop.
fn spawn_maintenance(
    router: std::sync::Arc<Router>,
    retention_days: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        let mut last_error = String::new();
        let mut last_purge = std::time::Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if router.state() == "disconnected" {
                break;
            }
            if router.state() == "reconnecting" {
                continue;
            }
            let purge =
                retention_days > 0 && last_purge.elapsed() >= std::time::Duration::from_secs(60);
            let r = async {
                let _t = router.ticket().await;
                let b = router.active();
                let mut conn = b.pool().acquire().await?;
                let n = service::reap_expired(&mut conn, &b.store).await?;
                if purge {
                    let removed =
                        service::purge_finished(&mut conn, &b.store, retention_days).await?;
                    if removed > 0 {
                        tracing::info!(
                            tasks = removed,
                            "finished tasks past their retention deleted"
                        );
                    }
                }
                Ok::<u64, DbcError>(n)
            }
            .await;
            if purge {
                last_purge = std::time::Instant::now();
            }
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

/// The statement for `provider`: the form bound up front when the operation still runs
/// where it started, else bound again for the provider it moved to.
fn bound_for<'a>(
    provider: Provider,
    first: Provider,
    bound: &'a (String, Vec<Param>),
    sql: &str,
    params: &Params,
) -> Result<std::borrow::Cow<'a, (String, Vec<Param>)>> {
    if provider == first {
        Ok(std::borrow::Cow::Borrowed(bound))
    } else {
        bind_named(provider, sql, params.clone()).map(std::borrow::Cow::Owned)
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
