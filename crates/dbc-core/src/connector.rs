//! [`Connector`]: one config node's databases, and the facade every caller uses: open
//! and close them, run an operation ([`Connector::execute`] by name, [`Connector::run`]
//! by [`Op`]), run SQL ([`Connector::query`], or streamed: [`Connector::query_stream`]),
//! and read state, schema and metrics.
//!
//! How an operation runs, stage by stage, is in `run.rs`; SQL runs in `query.rs`, and
//! streamed in `stream.rs`; the background upkeep (lease reaper, retention) in `upkeep.rs`; the routing between primary and fallback is
//! `crate::route`'s. With debug on, an operation returns a [`DebugInfo`] measured
//! here (statement timings, pool state).

mod query;
mod run;
mod stream;
mod upkeep;

pub use crate::task::Answer;
pub use run::MAX_RETRIES;
pub use stream::{RowStream, StreamChunk, StreamStop};

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::ConnectorConfig;
pub use crate::db::pool::{test_connection, TestResult};
use crate::db::{PoolState, QueryOutput, StatementTiming, Trace};
pub use crate::metrics::QueueDepth;
use crate::metrics::Snapshot;
use crate::migrate::{self, Pending, SchemaStatus};
use crate::op::Op;
use crate::route::{Backend, MoveReport, Router, RouterConfig};
use crate::state::ConnState;
use crate::task::{self, Backoff, Limits};
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
    pub connection_state: ConnState,
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
    /// a queue operation's result (tasks, workflows...)
    Answer(crate::task::Answer),
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
        let waker = crate::queue::wake::Waker::new(
            router
                .primary
                .pool()
                .notify_pool()
                .map(|p| (p, format!("{}wake", cfg.table_prefix))),
        );
        let background = vec![
            tokio::spawn(router.clone().health_loop()),
            upkeep::spawn(router.clone(), waker.clone(), cfg.retention_days),
        ];
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

    /// The connection state (docs/FAILOVER.md).
    pub fn connection_state(&self) -> ConnState {
        if self.closed.load(Ordering::Relaxed) {
            ConnState::Disconnected
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
        crate::route::reconcile(&s.pool(), &s.store, &d.pool(), &d.store).await
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

    fn debug_info(&self, ran_on: Provider, trace: Option<Trace>) -> Option<DebugInfo> {
        trace.map(|t| DebugInfo {
            provider: ran_on,
            failover: ran_on != self.router.primary.provider() || self.router.on_fallback(),
            connection_state: self.connection_state(),
            db_ms: t.db_ms(),
            statements: t.statements,
            pool: self.pool_state(),
            retries: t.retries,
        })
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
        RowStream::new(self.clone(), sql, params, chunk_rows, opts)
    }

    /// Runs a queue operation by name with its JSON payload: the name is parsed here
    /// (`DBC_VALIDATION` for an unknown one), then it runs as [`Connector::run`] says.
    pub async fn execute(
        &self,
        operation: &str,
        payload: Json,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        self.check_open(operation)?;
        let op = Op::parse(operation).map_err(|e| self.fail(operation, e))?;
        self.run(op, payload, opts).await
    }

    fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.cfg.max_payload_bytes,
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

    /// Runs one round of the lease reaper now, on the database in use: the round the
    /// background upkeep runs every 0.5 s (see [`crate::queue::service::reap_expired`]).
    /// Returns how many tasks it took. For tests and tools that must not wait for a tick.
    pub async fn reap_expired_leases(&self) -> Result<u64> {
        let _t = self.router.ticket().await;
        let b = self.router.active();
        let mut conn = self.acquire(b).await?;
        crate::queue::service::reap_expired(&mut conn, &b.store).await
    }

    /// Number of tasks by queue and status.
    pub async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        self.queue_state().await.map(|(depth, _)| depth)
    }

    /// Tasks by queue and status, and the paused queues with the time each was paused,
    /// read on one connection of the database in use (the metrics' view of the queues).
    async fn queue_state(&self) -> Result<(Vec<QueueDepth>, Vec<(String, String)>)> {
        let _t = self.router.ticket().await;
        if self.connection_state() == ConnState::Reconnecting {
            return Err(DbcError::Connection {
                message: "the database is not reachable; reconnecting".into(),
                outcome_unknown: false,
            });
        }
        let b = self.router.active();
        let mut conn = self.acquire(b).await?;
        let counts = b.store.count_by_queue_and_status(&mut conn).await?;
        let paused = b.store.paused_queues(&mut conn, None).await?;
        let depth = counts
            .into_iter()
            .map(|(queue, status, count)| QueueDepth {
                queue,
                status,
                count,
            })
            .collect();
        Ok((depth, paused))
    }

    /// What the metrics renderings show besides the counters, as of now.
    async fn snapshot(&self) -> Snapshot {
        let pool = self.pool_state();
        let (queues, paused) = match self.queue_state().await {
            Ok((depth, paused)) => (Ok(depth), paused),
            Err(e) => (Err(e), Vec::new()),
        };
        Snapshot {
            provider: self.provider(),
            state: self.connection_state(),
            failover: self.failover(),
            primary: self.router.primary.provider(),
            fallback: self.router.fallback.as_ref().map(|f| f.provider()),
            last_failback: serde_json::to_value(self.last_failback()).unwrap_or_default(),
            pool: pool.state,
            waiting: pool.waiting,
            queues,
            paused,
        }
    }

    /// Metrics as JSON (docs/API.md "Admin HTTP API"; see [`crate::metrics::Metrics::to_json`]).
    pub async fn metrics_json(&self) -> Json {
        let s = self.snapshot().await;
        self.metrics.to_json(s)
    }

    /// Metrics in the Prometheus text exposition format; `connection` labels every series.
    pub async fn metrics_prometheus(&self, connection: &str) -> String {
        let s = self.snapshot().await;
        self.metrics.to_prometheus(s, connection)
    }

    /// Closes the pools; operations after this fail with `DBC_CONNECTION`.
    pub async fn close(&self) {
        self.metrics.state_change(
            ConnState::Disconnected,
            "closed by the runtime (redeploy or stop)",
        );
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
