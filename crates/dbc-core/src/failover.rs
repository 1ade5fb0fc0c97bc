//! Routing between the primary and the fallback database: health, failover, failback.
//!
//! A [`Router`] owns both [`Backend`]s and decides where each operation runs:
//! - while the primary is healthy, on the primary. An operation that fails there with a
//!   connection-class error makes the router probe the primary on a fresh connection;
//!   if the probe fails too, the primary is marked down, new operations go to the
//!   fallback (state `failover`), and the operation itself is run again on the fallback
//!   when nothing of it was applied (otherwise it fails with `outcome: "unknown"`);
//! - the health loop checks the primary every `healthIntervalMs` (`SELECT 1`); after
//!   `failoverThreshold` failures in a row it fails over the same way. While the
//!   primary is down the checks back off (×2 per failure, at most 8 intervals), and only
//!   state changes are logged;
//! - after `failoverThreshold` passed checks in a row, failback `auto` moves everything
//!   written to the fallback to the primary ([`reconcile`]) and routes new operations
//!   back; `manual` waits for [`Router::failback`]. The move holds the router's gate:
//!   operations wait for it instead of running against half-moved data.
//!
//! Without a fallback, a primary that is down turns the state `reconnecting` and
//! operations fail fast with `DBC_CONNECTION` until a health check passes.
//!
//! Long (over the project's 600-line guide) because routing, health probing, failback
//! and the reconciliation that copies acknowledged tasks back to the primary share one
//! state machine that is easier to check in one place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::config::{ConnectionConfig, PoolConfig};
use crate::db::Pool;
use crate::metrics::Metrics;
use crate::store::Dialect;
use crate::task::{read_int, read_json, read_text, read_time};
use crate::value::{parse_any_time, Param, Value};
use crate::{migrate, DbcError, Provider, Result};

/// One database: its pool (replaced by a fresh one after an outage, so no connection
/// that died with the server is handed out again), its SQL dialect, and whether its
/// schema is known to be current.
pub struct Backend {
    pool: RwLock<Pool>,
    /// table names and placeholders for this provider
    pub dialect: Dialect,
    /// the queue's statements for this database
    pub store: std::sync::Arc<crate::store::Store>,
    cfg: ConnectionConfig,
    migrated: AtomicBool,
}

impl Backend {
    fn new(cfg: &ConnectionConfig, pool: &PoolConfig, prefix: &str) -> Result<Backend> {
        let p = Pool::lazy(cfg, pool)?;
        Ok(Backend {
            dialect: Dialect {
                provider: p.provider(),
                prefix: prefix.to_string(),
            },
            store: std::sync::Arc::new(crate::store::Store::new(p.provider(), prefix)?),
            pool: RwLock::new(p),
            cfg: cfg.clone(),
            migrated: AtomicBool::new(false),
        })
    }

    /// The current pool (a cheap handle).
    pub fn pool(&self) -> Pool {
        match self.pool.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The provider of this database.
    pub fn provider(&self) -> Provider {
        self.dialect.provider
    }

    /// Where it is, without secrets.
    pub fn describe(&self) -> String {
        self.cfg.describe()
    }

    /// Swaps in a fresh pool and closes the old one in the background.
    fn renew_pool(&self, pool_cfg: &PoolConfig) {
        let Ok(fresh) = Pool::lazy(&self.cfg, pool_cfg) else {
            return;
        };
        let old = match self.pool.write() {
            Ok(mut g) => std::mem::replace(&mut *g, fresh),
            Err(_) => return,
        };
        tokio::spawn(async move { old.close().await });
    }
}

/// What a failback moved from the fallback to the primary.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveReport {
    pub workflows: u64,
    pub tasks: u64,
    pub executions: u64,
    pub errors: u64,
    pub dependencies: u64,
    /// fallback tasks whose idempotency key already had a task in the primary: the
    /// primary's task stands, the fallback's is dropped
    pub merged_by_key: u64,
    pub ms: f64,
}

/// Longest wait in `close` for operations in flight (Node-RED allows 15 s per node).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Settings the router needs from the connector config.
pub struct RouterConfig {
    pub pool: PoolConfig,
    pub prefix: String,
    pub auto_migrate: bool,
    pub failback_auto: bool,
    pub every: Duration,
    pub threshold: u32,
}

/// Where operations run, and the state machine behind it.
pub struct Router {
    /// the primary database
    pub primary: Backend,
    /// the fallback database, when configured
    pub fallback: Option<Backend>,
    cfg: RouterConfig,
    /// true while new operations go to the fallback
    on_fallback: AtomicBool,
    /// false while the primary is known to be down
    primary_ok: AtomicBool,
    closed: AtomicBool,
    /// operations hold it shared; a failback holds it exclusively while it moves data
    gate: tokio::sync::RwLock<()>,
    /// one primary probe / failover decision at a time
    trip: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    last_error: std::sync::Mutex<String>,
    last_move: std::sync::Mutex<Option<MoveReport>>,
}

/// A shared guard that keeps a failback from starting while an operation runs.
pub type Ticket<'a> = tokio::sync::RwLockReadGuard<'a, ()>;

impl Router {
    /// Opens the router: probes the primary (applying migrations when configured). A
    /// primary that cannot be reached is not an error when the cause is the network or
    /// the server being down: the router starts on the fallback (or `reconnecting`)
    /// and the health loop brings the primary in when it answers. Wrong credentials and
    /// invalid settings still fail here.
    pub async fn open(
        primary: &ConnectionConfig,
        fallback: Option<&ConnectionConfig>,
        cfg: RouterConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Router> {
        let primary_b = Backend::new(primary, &cfg.pool, &cfg.prefix)?;
        let fallback_b = match fallback {
            Some(f) => Some(Backend::new(f, &cfg.pool, &cfg.prefix)?),
            None => None,
        };
        let router = Router {
            primary: primary_b,
            fallback: fallback_b,
            cfg,
            on_fallback: AtomicBool::new(false),
            primary_ok: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            trip: tokio::sync::Mutex::new(()),
            metrics,
            last_error: Default::default(),
            last_move: Default::default(),
        };
        match router.prepare(&router.primary).await {
            Ok(()) if router.fallback_has_rows().await => {
                // an earlier run failed over and was stopped before its failback: carry
                // on from there, so nothing written to the fallback is left behind
                let reason = "rows from an earlier failover are still in the fallback; failback moves them to the primary";
                tracing::warn!("{reason}");
                router.primary_ok.store(false, Ordering::Release);
                router.on_fallback.store(true, Ordering::Release);
                router.metrics.state_change("failover", reason);
            }
            Ok(()) => {
                router.metrics.state_change(
                    "connected",
                    &format!("pool opened to {}", router.primary.describe()),
                );
                tracing::info!(target = %router.primary.describe(), "connected");
            }
            // a server that is down or out of reach may come back; a SQLite file that
            // cannot be opened, wrong credentials or a missing database will not
            Err(e)
                if e.is_connection_class()
                    && !matches!(e, DbcError::AccessDenied(_))
                    && router.primary.provider() != Provider::Sqlite =>
            {
                tracing::warn!("the primary database cannot be reached at start-up: {e}");
                router.note_error(&e);
                router
                    .mark_primary_down(&format!("{}: {e}", e.code()))
                    .await;
            }
            Err(e) => {
                router.primary.pool().close().await;
                return Err(e);
            }
        }
        Ok(router)
    }

    fn note_error(&self, e: &DbcError) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = format!("{}: {e}", e.code());
        }
    }

    /// Probes a backend on a fresh connection and applies pending migrations if it has
    /// not been prepared yet.
    async fn prepare(&self, b: &Backend) -> Result<()> {
        Pool::probe(&b.cfg, &self.cfg.pool).await?;
        if b.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.cfg.auto_migrate {
            migrate::migrate(&b.pool(), &self.cfg.prefix).await?;
        }
        b.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// True when the fallback can be reached and still holds tasks or workflows.
    async fn fallback_has_rows(&self) -> bool {
        let Some(fb) = &self.fallback else {
            return false;
        };
        if self.prepare(fb).await.is_err() {
            return false;
        }
        let d = &fb.dialect;
        let sql = format!(
            "SELECT 1 FROM {} UNION ALL SELECT 1 FROM {} LIMIT 1",
            d.t("tasks"),
            d.t("workflows")
        );
        let r = async {
            let mut c = fb.pool().acquire().await?;
            c.exec("leftovers", &sql, &[], None).await
        }
        .await;
        matches!(r, Ok(out) if !out.rows.is_empty())
    }

    /// True while new operations go to the fallback.
    pub fn on_fallback(&self) -> bool {
        self.on_fallback.load(Ordering::Acquire)
    }

    /// The backend new operations go to.
    pub fn active(&self) -> &Backend {
        match &self.fallback {
            Some(fb) if self.on_fallback() => fb,
            _ => &self.primary,
        }
    }

    /// `connected | failover | reconnecting | disconnected`.
    pub fn state(&self) -> &'static str {
        if self.closed.load(Ordering::Acquire) {
            "disconnected"
        } else if self.on_fallback() {
            "failover"
        } else if self.primary_ok.load(Ordering::Acquire) {
            "connected"
        } else {
            "reconnecting"
        }
    }

    /// The last failback's report.
    pub fn last_move(&self) -> Option<MoveReport> {
        self.last_move.lock().ok().and_then(|g| g.clone())
    }

    /// Waits until no failback is moving data, then holds it off while the caller runs.
    pub async fn ticket(&self) -> Ticket<'_> {
        self.gate.read().await
    }

    /// A pool timeout says only "no connection became free"; when the server is down the
    /// real cause is what connecting says, so a probe replaces it then.
    pub async fn explain(&self, b: &Backend, e: DbcError) -> DbcError {
        if !matches!(e, DbcError::PoolTimeout(_)) {
            return e;
        }
        match Pool::probe(&b.cfg, &self.cfg.pool).await {
            Ok(()) => e,
            Err(cause) => cause,
        }
    }

    /// The backend a new operation goes to (see the module header); fails fast while
    /// the primary is down and there is no fallback to use.
    pub fn pick(&self) -> Result<&Backend> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if let Some(fb) = self.fallback.as_ref().filter(|_| self.on_fallback()) {
            return Ok(fb);
        }
        if !self.primary_ok.load(Ordering::Acquire) {
            let last = self
                .last_error
                .lock()
                .map(|g| g.clone())
                .unwrap_or_default();
            return Err(DbcError::Connection {
                message: format!(
                    "the database {} is not reachable; reconnecting (last error: {last})",
                    self.primary.describe()
                ),
                outcome_unknown: false,
            });
        }
        Ok(&self.primary)
    }

    /// After an operation failed on `ran_on`: where to run it again, if anywhere. Only a
    /// first attempt on the primary that met a connection-class error is run again: on
    /// the primary when a probe shows the server answers (one connection broke), on the
    /// fallback when the primary is down — and in both cases only when nothing of it
    /// can have been applied (`outcome: "unknown"` is returned as it is).
    pub async fn reroute(&self, ran_on: &Backend, e: &DbcError, attempt: u32) -> Option<&Backend> {
        if attempt > 0 || !is_outage(e) || !std::ptr::eq(ran_on, &self.primary) {
            return None;
        }
        let applied_maybe = e.outcome_unknown();
        if !self.confirm_down(e).await {
            return (!applied_maybe).then_some(&self.primary);
        }
        match self.fallback.as_ref().filter(|_| self.on_fallback()) {
            Some(fb) if !applied_maybe => {
                tracing::info!("operation moved to the fallback after: {e}");
                Some(fb)
            }
            _ => None,
        }
    }

    /// After an operation met a connection-class error: probes the primary on a fresh
    /// connection, and marks it down when the probe fails. True when it is down.
    async fn confirm_down(&self, cause: &DbcError) -> bool {
        let _one = self.trip.lock().await;
        if self.on_fallback() || !self.primary_ok.load(Ordering::Acquire) {
            return true;
        }
        match Pool::probe(&self.primary.cfg, &self.cfg.pool).await {
            Ok(()) => false,
            Err(e) => {
                self.note_error(&e);
                self.mark_primary_down(&format!("{}: {cause}", cause.code()))
                    .await;
                true
            }
        }
    }

    /// The primary is down: route to the fallback if it is usable, else `reconnecting`.
    async fn mark_primary_down(&self, reason: &str) {
        self.primary_ok.store(false, Ordering::Release);
        self.primary.renew_pool(&self.cfg.pool);
        if let Some(fb) = &self.fallback {
            match self.prepare(fb).await {
                Ok(()) => {
                    self.on_fallback.store(true, Ordering::Release);
                    tracing::warn!(
                        "failover to {} ({}): {reason}",
                        fb.provider(),
                        fb.describe()
                    );
                    self.metrics.state_change("failover", reason);
                    return;
                }
                Err(e) => tracing::warn!("the fallback cannot be used either: {e}"),
            }
        }
        tracing::warn!("the database is not reachable, reconnecting: {reason}");
        self.metrics.state_change("reconnecting", reason);
    }

    /// One health check of the primary: `SELECT 1` on a pooled connection within
    /// max(interval, 1 s); a primary never prepared is probed and migrated first.
    async fn check_primary(&self) -> Result<()> {
        let limit = self.cfg.every.max(Duration::from_secs(1));
        let b = &self.primary;
        let r = tokio::time::timeout(limit, async {
            if !b.migrated.load(Ordering::Acquire) {
                self.prepare(b).await?;
            }
            let mut conn = match b.pool().acquire().await {
                Ok(c) => c,
                Err(e) => return Err(self.explain(b, e).await),
            };
            conn.exec("health", "SELECT 1", &[], None).await
        })
        .await;
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DbcError::Connection {
                message: format!("health check: no answer within {} ms", limit.as_millis()),
                outcome_unknown: false,
            }),
        }
    }

    /// The health loop; ends when the router closes.
    pub async fn health_loop(self: Arc<Self>) {
        let mut failures = 0u32;
        let mut passes = 0u32;
        loop {
            let wait = if self.primary_ok.load(Ordering::Acquire) {
                self.cfg.every
            } else {
                self.cfg.every * (1u32 << failures.min(3))
            };
            tokio::time::sleep(wait).await;
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            match self.check_primary().await {
                Ok(()) => {
                    failures = 0;
                    passes = passes.saturating_add(1);
                    if self.on_fallback() {
                        if self.cfg.failback_auto && passes >= self.cfg.threshold {
                            if let Err(e) = self.failback("auto").await {
                                tracing::warn!("failback failed, staying on the fallback: {e}");
                            }
                        }
                    } else if !self.primary_ok.swap(true, Ordering::AcqRel) {
                        tracing::warn!("the database answers again: connected");
                        self.metrics
                            .state_change("connected", "health check passed");
                    }
                }
                Err(e) => {
                    passes = 0;
                    failures = failures.saturating_add(1);
                    self.note_error(&e);
                    if failures >= self.cfg.threshold && self.primary_ok.load(Ordering::Acquire) {
                        let _one = self.trip.lock().await;
                        if self.primary_ok.load(Ordering::Acquire) && !self.on_fallback() {
                            let reason =
                                format!("{failures} health checks failed: {}: {e}", e.code());
                            self.mark_primary_down(&reason).await;
                        }
                    }
                }
            }
        }
    }

    /// Moves what was written to the fallback during the outage to the primary and
    /// routes new operations back to it. Fails (staying on the fallback) when the
    /// primary does not answer or the move fails; a move interrupted half-way is
    /// completed by the next failback (rows are upserted by id, then deleted).
    pub async fn failback(&self, why: &str) -> Result<MoveReport> {
        let Some(fb) = &self.fallback else {
            return Err(DbcError::Config(
                "no fallback database is configured".into(),
            ));
        };
        if !self.on_fallback() {
            return Ok(MoveReport::default());
        }
        self.check_primary().await?;
        let _all = self.gate.write().await;
        if !self.on_fallback() {
            return Ok(MoveReport::default());
        }
        let started = std::time::Instant::now();
        let mut report = reconcile(
            &fb.pool(),
            &fb.dialect,
            &self.primary.pool(),
            &self.primary.dialect,
        )
        .await?;
        report.ms = started.elapsed().as_secs_f64() * 1000.0;
        self.primary_ok.store(true, Ordering::Release);
        self.on_fallback.store(false, Ordering::Release);
        let reason = format!(
            "failback ({why}): moved {} tasks, {} workflows, {} executions, {} error rows in {:.0} ms",
            report.tasks, report.workflows, report.executions, report.errors, report.ms
        );
        tracing::warn!("{reason}");
        self.metrics.state_change("connected", &reason);
        fb.renew_pool(&self.cfg.pool);
        if let Ok(mut g) = self.last_move.lock() {
            *g = Some(report.clone());
        }
        Ok(report)
    }

    /// Closes both pools; operations after this fail with `DBC_CONNECTION`. Waits at
    /// most `CLOSE_WAIT` for operations in flight (a dead server may never answer them);
    /// their connections close as soon as they end or hit their statement limit.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let p = self.primary.pool();
        let f = self.fallback.as_ref().map(Backend::pool);
        // both at once, in a task of its own: sqlx closes a pool's idle connections only
        // after its busy ones came back, so a close cut short here goes on in the
        // background and ends when the last operation in flight does
        let both = tokio::spawn(async move {
            let fallback = async {
                if let Some(f) = f {
                    f.close().await;
                }
            };
            tokio::join!(p.close(), fallback);
        });
        if tokio::time::timeout(CLOSE_WAIT, both).await.is_err() {
            tracing::warn!(
                "closed with operations still waiting for the database; their connections close when they end"
            );
        }
    }
}

fn closed_error() -> DbcError {
    DbcError::Connection {
        message: "the connector is closed".into(),
        outcome_unknown: false,
    }
}

/// Errors that say the database may be gone (not: wrong password, bad SQL, a busy pool
/// alone — a pool timeout counts only when a probe confirms it).
fn is_outage(e: &DbcError) -> bool {
    match e {
        DbcError::Connection { .. } | DbcError::PoolTimeout(_) => true,
        DbcError::Transaction { source, .. } => is_outage(source),
        _ => false,
    }
}

/// How a column is carried between providers.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Json,
    Time,
}

use Kind::{Int as I, Json as J, Text as T, Time as D};

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Kind)],
    key: &'static [&'static str],
}

const WORKFLOWS: Table = Table {
    name: "workflows",
    cols: &[
        ("id", T),
        ("name", T),
        ("metadata", J),
        ("created_at", D),
        ("updated_at", D),
    ],
    key: &["id"],
};

const TASKS: Table = Table {
    name: "tasks",
    cols: &[
        ("id", T),
        ("queue", T),
        ("name", T),
        ("payload", J),
        ("status", T),
        ("priority", I),
        ("run_at", D),
        ("attempts", I),
        ("max_attempts", I),
        ("attempt_budget", I),
        ("workflow_id", T),
        ("idempotency_key", T),
        ("deps_pending", I),
        ("worker_id", T),
        ("lease_expires_at", D),
        ("result", J),
        ("last_error", T),
        ("created_at", D),
        ("updated_at", D),
        ("started_at", D),
        ("finished_at", D),
        // start of the latest attempt: the one in progress while running (its history
        // row is written when it ends)
        ("attempt_started_at", D),
    ],
    key: &["id"],
};

const EXECUTIONS: Table = Table {
    name: "task_executions",
    cols: &[
        ("task_id", T),
        ("attempt", I),
        ("worker_id", T),
        ("status", T),
        ("started_at", D),
        ("finished_at", D),
        ("duration_ms", I),
    ],
    key: &["task_id", "attempt"],
};

const ERRORS: Table = Table {
    name: "error_logs",
    cols: &[
        ("id", T),
        ("task_id", T),
        ("attempt", I),
        ("operation", T),
        ("code", T),
        ("message", T),
        ("sql_state", T),
        ("provider", T),
        ("created_at", D),
    ],
    key: &["id"],
};

const DEPENDENCIES: Table = Table {
    name: "task_dependencies",
    cols: &[("task_id", T), ("depends_on", T)],
    key: &["task_id", "depends_on"],
};

/// Rows moved per statement.
const CHUNK: usize = 200;

fn col_list(t: &Table) -> String {
    t.cols
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads rows of `t` (all columns), `where_` using the source dialect's placeholders.
async fn read(
    conn: &mut crate::db::Conn,
    d: &Dialect,
    t: &Table,
    where_: &str,
    params: &[Param],
) -> Result<Vec<Vec<Value>>> {
    let sql = format!(
        "SELECT {} FROM {} {where_} ORDER BY {}",
        col_list(t),
        d.t(t.name),
        t.key.join(", ")
    );
    Ok(conn.exec("failback read", &sql, params, None).await?.rows)
}

/// A value read from one provider as the other one stores it.
fn carry(d: &Dialect, kind: Kind, v: &Value) -> Param {
    if matches!(v, Value::Null) {
        return Param::Null;
    }
    match kind {
        Kind::Text => read_text(v).map(Param::Text).unwrap_or(Param::Null),
        Kind::Int => Param::Int(read_int(v)),
        Kind::Json => d.json(Some(&read_json(v))),
        Kind::Time => match read_time(v)
            .map(Param::Text)
            .and_then(|p| parse_any_time("time", &p).ok())
        {
            Some(t) => d.time(t),
            None => Param::Null,
        },
    }
}

/// Upserts rows into `t` on the destination: the fallback's row is the latest state.
async fn write(
    conn: &mut crate::db::Conn,
    d: &Dialect,
    t: &Table,
    rows: &[Vec<Value>],
    update: bool,
) -> Result<u64> {
    let mut n = 0;
    for chunk in rows.chunks(CHUNK) {
        let width = t.cols.len();
        let mut params = Vec::with_capacity(chunk.len() * width);
        let mut values = Vec::with_capacity(chunk.len());
        for (r, row) in chunk.iter().enumerate() {
            values.push(format!("({})", d.phs(r * width + 1, width)));
            for (i, (_, kind)) in t.cols.iter().enumerate() {
                params.push(carry(d, *kind, &row[i]));
            }
        }
        let others: Vec<&str> = t
            .cols
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !t.key.contains(c))
            .collect();
        let sql = match d.provider {
            Provider::Mariadb => {
                let tail = if update && !others.is_empty() {
                    format!(
                        " ON DUPLICATE KEY UPDATE {}",
                        others
                            .iter()
                            .map(|c| format!("{c} = VALUES({c})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    String::new()
                };
                format!(
                    "INSERT {}INTO {} ({}) VALUES {}{tail}",
                    if update { "" } else { "IGNORE " },
                    d.t(t.name),
                    col_list(t),
                    values.join(", ")
                )
            }
            _ => {
                let action = if update && !others.is_empty() {
                    format!(
                        "DO UPDATE SET {}",
                        others
                            .iter()
                            .map(|c| format!("{c} = excluded.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    "DO NOTHING".to_string()
                };
                format!(
                    "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {action}",
                    d.t(t.name),
                    col_list(t),
                    values.join(", "),
                    t.key.join(", ")
                )
            }
        };
        n += conn
            .exec("failback write", &sql, &params, None)
            .await?
            .rows_affected
            .min(chunk.len() as u64);
    }
    Ok(n)
}

fn in_list(d: &Dialect, from: usize, n: usize) -> String {
    format!("({})", d.phs(from, n))
}

/// Moves every workflow, task, execution, error row and dependency from `src` to `dst`
/// and then deletes what it moved from `src`. Rows are upserted by their ids, so running
/// it again after an interruption gives the same end state. A fallback task whose
/// idempotency key already names a different task in the primary is dropped in favour
/// of that one (its dependents point to the primary's task instead).
pub async fn reconcile(src: &Pool, sd: &Dialect, dst: &Pool, dd: &Dialect) -> Result<MoveReport> {
    let mut report = MoveReport::default();
    let mut from = src.acquire().await?;
    let mut to = dst.acquire().await?;

    // workflows first: tasks reference them
    let workflows = read(&mut from, sd, &WORKFLOWS, "", &[]).await?;
    if !workflows.is_empty() {
        to.begin().await?;
        report.workflows = write(&mut to, dd, &WORKFLOWS, &workflows, true).await?;
        to.commit().await?;
    }

    // tasks in id order, each chunk with its executions and error rows, in one transaction
    let mut replaced: Vec<(String, String)> = Vec::new();
    let mut moved: Vec<Param> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (cond, params) = match &after {
            None => (String::new(), vec![]),
            Some(a) => (
                format!("WHERE id > {}", sd.ph(1)),
                vec![Param::Text(a.clone())],
            ),
        };
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY id LIMIT {CHUNK}",
            col_list(&TASKS),
            sd.t("tasks"),
        );
        let mut rows = from.exec("failback read", &sql, &params, None).await?.rows;
        let Some(last) = rows.last() else {
            break;
        };
        after = read_text(&last[0]);
        // idempotency keys already taken in the primary by another task
        let keyed: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_text(&r[11])?)))
            .collect();
        if !keyed.is_empty() {
            let sql = format!(
                "SELECT id, idempotency_key FROM {} WHERE idempotency_key IN {}",
                dd.t("tasks"),
                in_list(dd, 1, keyed.len())
            );
            let keys: Vec<Param> = keyed.iter().map(|(_, k)| Param::Text(k.clone())).collect();
            for t in to.exec("failback keys", &sql, &keys, None).await?.rows {
                let (Some(pid), Some(key)) = (read_text(&t[0]), read_text(&t[1])) else {
                    continue;
                };
                if let Some((fid, _)) = keyed.iter().find(|(fid, k)| *k == key && *fid != pid) {
                    replaced.push((fid.clone(), pid));
                    moved.push(Param::Text(fid.clone()));
                }
            }
        }
        rows.retain(|r| {
            let id = read_text(&r[0]).unwrap_or_default();
            !replaced.iter().any(|(f, _)| *f == id)
        });
        let ids: Vec<Param> = rows
            .iter()
            .filter_map(|r| read_text(&r[0]).map(Param::Text))
            .collect();
        if ids.is_empty() {
            continue;
        }
        let by_task = format!("WHERE task_id IN {}", in_list(sd, 1, ids.len()));
        let execs = read(&mut from, sd, &EXECUTIONS, &by_task, &ids).await?;
        let errs = read(&mut from, sd, &ERRORS, &by_task, &ids).await?;
        to.begin().await?;
        write(&mut to, dd, &TASKS, &rows, true).await?;
        report.tasks += rows.len() as u64;
        report.executions += write(&mut to, dd, &EXECUTIONS, &execs, true).await?;
        report.errors += write(&mut to, dd, &ERRORS, &errs, false).await?;
        to.commit().await?;
        moved.extend(ids);
    }
    report.merged_by_key = replaced.len() as u64;
    if !replaced.is_empty() {
        tracing::warn!(
            tasks = replaced.len(),
            "failback: fallback tasks whose idempotency key already existed in the primary were merged into the primary's task"
        );
    }

    // dependencies (every task is there now), then error rows not tied to a task
    let mut deps = read(&mut from, sd, &DEPENDENCIES, "", &[]).await?;
    for d in deps.iter_mut() {
        for cell in d.iter_mut() {
            if let Some(id) = read_text(cell) {
                if let Some((_, pid)) = replaced.iter().find(|(f, _)| *f == id) {
                    *cell = Value::Text(pid.clone());
                }
            }
        }
    }
    deps.retain(|d| d[0] != d[1]);
    if !deps.is_empty() {
        to.begin().await?;
        report.dependencies = write(&mut to, dd, &DEPENDENCIES, &deps, false).await?;
        to.commit().await?;
    }
    let loose = read(&mut from, sd, &ERRORS, "WHERE task_id IS NULL", &[]).await?;
    report.errors += write(&mut to, dd, &ERRORS, &loose, false).await?;
    drop(to);

    // everything read is in the primary: delete exactly that from the fallback (a task's
    // dependencies, executions and error rows go with it)
    from.begin().await?;
    for ids in moved.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {} WHERE id IN {}",
            sd.t("tasks"),
            in_list(sd, 1, ids.len())
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    let loose_ids: Vec<Param> = loose
        .iter()
        .filter_map(|r| read_text(&r[0]).map(Param::Text))
        .collect();
    for ids in loose_ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {} WHERE id IN {}",
            sd.t("error_logs"),
            in_list(sd, 1, ids.len())
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    let wf_ids: Vec<Param> = workflows
        .iter()
        .filter_map(|r| read_text(&r[0]).map(Param::Text))
        .collect();
    for ids in wf_ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {w} WHERE id IN {} AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.workflow_id = {w}.id)",
            in_list(sd, 1, ids.len()),
            w = sd.t("workflows"),
            t = sd.t("tasks"),
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    from.commit().await?;
    Ok(report)
}
