//! Routing between the primary and the fallback database: health, failover, failback
//! decisions (the data move of a failback is `reconcile`'s).
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
//!   written to the fallback to the primary ([`reconcile`](super::reconcile::reconcile)) and routes new operations
//!   back; `manual` waits for [`Router::failback`]. The move holds the router's gate:
//!   operations wait for it instead of running against half-moved data.
//!
//! Without a fallback, a primary that is down turns the state `reconnecting` and
//! operations fail fast with `DBC_CONNECTION` until a health check passes.
//!
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::reconcile::{reconcile, MoveReport};
use crate::config::{ConnectionConfig, PoolConfig};
use crate::db::Pool;
use crate::metrics::Metrics;
use crate::state::ConnState;
use crate::{migrate, DbcError, Provider, Result};

/// One database: its pool (replaced by a fresh one after an outage, so no connection
/// that died with the server is handed out again), its store, and whether its schema is
/// known to be current.
pub struct Backend {
    pool: RwLock<Pool>,
    /// the queue's statements for this database
    pub store: std::sync::Arc<crate::store::Store>,
    cfg: ConnectionConfig,
    migrated: AtomicBool,
}

impl Backend {
    fn new(cfg: &ConnectionConfig, pool: &PoolConfig, prefix: &str) -> Result<Backend> {
        let p = Pool::lazy(cfg, pool)?;
        Ok(Backend {
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
        self.store.provider()
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
                router.metrics.state_change(ConnState::Failover, reason);
            }
            Ok(()) => {
                router.metrics.state_change(
                    ConnState::Connected,
                    &format!("pool opened to {}", router.primary.describe()),
                );
                tracing::info!(target = %router.primary.describe(), "connected");
            }
            // a server that is down or out of reach may come back; a SQLite file that
            // cannot be opened, wrong credentials or a missing database will not
            Err(e)
                if e.is_connection_class()
                    && !matches!(e, DbcError::AccessDenied(_))
                    && !router.primary.pool().is_embedded() =>
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

    /// True when the fallback can be reached and still holds tasks, workflows or queue
    /// states.
    async fn fallback_has_rows(&self) -> bool {
        let Some(fb) = &self.fallback else {
            return false;
        };
        if self.prepare(fb).await.is_err() {
            return false;
        }
        let r = async {
            let mut c = fb.pool().acquire().await?;
            fb.store.any_rows_left(&mut c).await
        }
        .await;
        matches!(r, Ok(true))
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

    /// The connection state the routing is in.
    pub fn state(&self) -> ConnState {
        if self.closed.load(Ordering::Acquire) {
            ConnState::Disconnected
        } else if self.on_fallback() {
            ConnState::Failover
        } else if self.primary_ok.load(Ordering::Acquire) {
            ConnState::Connected
        } else {
            ConnState::Reconnecting
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
                    self.metrics.state_change(ConnState::Failover, reason);
                    return;
                }
                Err(e) => tracing::warn!("the fallback cannot be used either: {e}"),
            }
        }
        tracing::warn!("the database is not reachable, reconnecting: {reason}");
        self.metrics.state_change(ConnState::Reconnecting, reason);
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
                            .state_change(ConnState::Connected, "health check passed");
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
            &fb.store,
            &self.primary.pool(),
            &self.primary.store,
        )
        .await?;
        report.ms = started.elapsed().as_secs_f64() * 1000.0;
        // the report first: whoever sees the state turn `connected` finds it there
        if let Ok(mut g) = self.last_move.lock() {
            *g = Some(report.clone());
        }
        self.primary_ok.store(true, Ordering::Release);
        self.on_fallback.store(false, Ordering::Release);
        let reason = format!(
            "failback ({why}): moved {} tasks, {} workflows, {} executions, {} error rows in {:.0} ms",
            report.tasks, report.workflows, report.executions, report.errors, report.ms
        );
        tracing::warn!("{reason}");
        self.metrics.state_change(ConnState::Connected, &reason);
        fb.renew_pool(&self.cfg.pool);
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
