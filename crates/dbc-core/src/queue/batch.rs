//! Group commit: concurrent single-task operations share one statement.
//!
//! Sixteen flows each inserting one task would cost sixteen transactions (BEGIN,
//! INSERT, COMMIT, and a WAL flush each). A [`Lane`] gathers the calls that arrive while
//! earlier ones are on their way to the database and runs them as one batch: the first
//! call starts a flusher at once (an idle system adds no delay), and every call that
//! comes in while up to `flushers` batches are in flight waits for the next batch. This
//! is the group commit of databases, done one level up.
//!
//! Semantics stay per caller: each gets its own result or its own error. A batch that
//! fails as a whole is run again one call at a time, so one bad task (an unknown
//! workflow, a payload the server refuses) fails only its own caller. Ids are made
//! before a call enters a lane, so they are the same as without it, and idempotency keys
//! resolve as they would one by one (the batch runs `ON CONFLICT DO NOTHING` and then
//! looks the duplicates up).
//!
//! Two lanes exist, on every store: single `insertTask` calls, and single
//! `updateTaskStatus` calls to `completed`, which complete as one set-based batch
//! ([`Store::complete_many`]: PostgreSQL one statement, MariaDB and SQLite one statement
//! per step) with the attempts' history rows and the released dependents; a task the
//! batch does not take (not running, lease lost, another worker) goes the one-by-one way,
//! which yields the same error as before, and so does a completion that names no worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tokio::sync::oneshot;

use crate::db::Conn;
use crate::metrics::Metrics;
use crate::queue::{service, settle};
use crate::route::{Backend, Router};
use crate::store::Store;
use crate::task::input::{Limits, NewTask, StatusChange};
use crate::task::status::{Backoff, TaskStatus};
use crate::task::{Answer, Task};
use crate::{DbcError, Result};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A connection from one database's current pool (the router renews pools after an
/// outage), under the connector's statement limit.
type Acquire = Arc<dyn Fn() -> BoxFuture<Result<Conn>> + Send + Sync>;
type Runner<I, O> = Arc<dyn Fn(Vec<I>) -> BoxFuture<Vec<Result<O>>> + Send + Sync>;

struct Waiting<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O>>,
}

struct State<I, O> {
    queue: Vec<Waiting<I, O>>,
    flushers: usize,
}

/// Gathers concurrent calls into batches for a runner (see the module header).
pub struct Lane<I, O> {
    state: Mutex<State<I, O>>,
    max_batch: usize,
    max_flushers: usize,
    run: Runner<I, O>,
}

impl<I: Send + 'static, O: Send + 'static> Lane<I, O> {
    /// A lane whose batches hold at most `max_batch` calls, with at most `max_flushers`
    /// batches in flight; `run` must return one result per item, in order.
    pub fn new<F, Fut>(max_batch: usize, max_flushers: usize, run: F) -> Arc<Self>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<O>>> + Send + 'static,
    {
        Arc::new(Lane {
            state: Mutex::new(State {
                queue: Vec::new(),
                flushers: 0,
            }),
            max_batch: max_batch.max(1),
            max_flushers: max_flushers.max(1),
            run: Arc::new(move |items| Box::pin(run(items))),
        })
    }

    /// Runs `item` in the next batch and returns its own result.
    pub async fn submit(self: &Arc<Self>, item: I) -> Result<O> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self
                .state
                .lock()
                .map_err(|_| DbcError::Internal("coalescing lane poisoned".into()))?;
            s.queue.push(Waiting { item, reply: tx });
            let start = s.flushers < self.max_flushers;
            if start {
                s.flushers += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().flush());
        }
        rx.await.unwrap_or_else(|_| {
            Err(DbcError::Internal(
                "a coalesced batch ended without an answer".into(),
            ))
        })
    }

    async fn flush(self: Arc<Self>) {
        loop {
            let batch: Vec<Waiting<I, O>> = {
                let Ok(mut s) = self.state.lock() else { return };
                if s.queue.is_empty() {
                    s.flushers -= 1;
                    return;
                }
                let n = s.queue.len().min(self.max_batch);
                s.queue.drain(..n).collect()
            };
            let (items, replies): (Vec<I>, Vec<_>) =
                batch.into_iter().map(|w| (w.item, w.reply)).unzip();
            let n = items.len();
            // the runner runs in its own task so a panic there reaches every caller as an
            // error instead of leaving them waiting
            let results = match tokio::spawn((self.run)(items)).await {
                Ok(r) if r.len() == n => r,
                Ok(_) | Err(_) => (0..n)
                    .map(|_| {
                        Err(DbcError::Internal(
                            "a coalesced batch failed inside the addon; please report this".into(),
                        ))
                    })
                    .collect(),
            };
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
    }
}

/// The lanes of one backend, and which calls may take them.
pub struct Coalescer {
    inserts: Arc<InsertLane>,
    completions: Arc<CompleteLane>,
}

impl Coalescer {
    /// Lanes of one database.
    fn new(acquire: Acquire, store: &Arc<Store>, backoff: Backoff) -> Coalescer {
        Coalescer {
            inserts: insert_lane(acquire.clone(), store.clone()),
            completions: complete_lane(acquire, store.clone(), backoff),
        }
    }

    /// Runs the call through a lane when it can take one — a single `insertTask` without
    /// `dependsOn`, or a single `updateTaskStatus` to `completed` — and returns `None` for every
    /// other call, which then runs as before. Input errors are the caller's own, as
    /// before: the payload is validated here, before it joins a batch.
    pub async fn run(
        &self,
        operation: &str,
        payload: &Json,
        queue: &str,
        limits: Limits,
    ) -> Option<Result<Answer>> {
        let answer = |t: Result<Task>| t.map(|t| Answer::Task(Box::new(t)));
        match operation {
            "insertTask" if payload.is_object() => {
                let task = match NewTask::parse(payload, "", queue, limits) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                };
                if task.has_dependencies() {
                    return None;
                }
                Some(answer(self.inserts.submit(task).await))
            }
            "updateTaskStatus" if payload.is_object() => {
                let lane = &self.completions;
                let change = match StatusChange::parse(payload)
                    .and_then(|c| c.check_size(limits).map(|()| c))
                {
                    Ok(c) => c,
                    Err(e) => return Some(Err(e)),
                };
                if change.status != TaskStatus::Completed {
                    return None;
                }
                Some(answer(lane.submit(change).await))
            }
            _ => None,
        }
    }
}

/// The lanes of a connector: one set per database, so a call coalesces with the calls
/// that run where it runs (the router picks the database, and reroutes a call whose
/// batch failed for want of a connection, as it would any other call).
pub struct Lanes {
    primary: Coalescer,
    fallback: Option<Coalescer>,
}

impl Lanes {
    /// Lanes for the router's primary and fallback; `limit` is the client-side statement
    /// limit every connection of the connector gets.
    pub fn new(
        router: &Arc<Router>,
        backoff: Backoff,
        limit: std::time::Duration,
        metrics: Arc<Metrics>,
    ) -> Lanes {
        let acquire = |fallback: bool| -> Acquire {
            let (router, metrics) = (router.clone(), metrics.clone());
            Arc::new(move || {
                let (router, metrics) = (router.clone(), metrics.clone());
                Box::pin(async move {
                    let database = if fallback {
                        router.fallback.as_ref()
                    } else {
                        Some(&router.primary)
                    };
                    let database = database
                        .ok_or_else(|| DbcError::Internal("no fallback database".into()))?;
                    let started = std::time::Instant::now();
                    let conn = database.pool().acquire().await;
                    metrics.acquire.record(started.elapsed());
                    let mut conn = conn?;
                    conn.set_limit(limit);
                    Ok(conn)
                })
            })
        };
        Lanes {
            primary: Coalescer::new(acquire(false), &router.primary.store, backoff),
            fallback: router
                .fallback
                .as_ref()
                .map(|f| Coalescer::new(acquire(true), &f.store, backoff)),
        }
    }

    /// The lanes of `database` (one of the router's).
    pub fn of(&self, router: &Router, database: &Backend) -> &Coalescer {
        match &self.fallback {
            Some(f) if !std::ptr::eq(database, &router.primary) => f,
            _ => &self.primary,
        }
    }
}

/// Most calls in one batch.
const MAX_BATCH: usize = 500;

/// Batches in flight per lane. Two lets one batch form while the other commits; more
/// only split the same calls into smaller batches.
fn flushers() -> usize {
    std::env::var("DBC_COALESCE_FLUSHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n: &usize| (1..=64).contains(n))
        .unwrap_or(2)
}

/// The lane of single `insertTask` calls.
pub type InsertLane = Lane<NewTask, Task>;
/// The lane of `updateTaskStatus` calls to `completed`.
pub type CompleteLane = Lane<StatusChange, Task>;

/// Single inserts: one `insert_tasks` call for the batch; if it fails, each task alone.
fn insert_lane(acquire: Acquire, store: Arc<Store>) -> Arc<InsertLane> {
    Lane::new(MAX_BATCH, flushers(), move |items: Vec<NewTask>| {
        let (acquire, store) = (acquire.clone(), store.clone());
        async move {
            let n = items.len();
            let mut conn = match acquire().await {
                Ok(c) => c,
                Err(e) => return fail_all(n, &e),
            };
            if n > 1 {
                match service::insert_tasks(&mut conn, &store, &items, None).await {
                    Ok(out) => return out.into_iter().map(Ok).collect(),
                    Err(e) if reaches_all(&e) => return fail_all(n, &e),
                    Err(_) => {}
                }
            }
            let mut out = Vec::with_capacity(n);
            for t in items.chunks(1) {
                out.push(
                    service::insert_tasks(&mut conn, &store, t, None)
                        .await
                        .map(|mut v| v.remove(0)),
                );
            }
            out
        }
    })
}

/// Completions: one set-based batch ([`settle::complete_set`]: PostgreSQL one
/// statement, MariaDB and SQLite five) completes every task of the batch that is running
/// under a live lease held by the reporting worker; the rest run one by one through
/// `update_task_status`.
fn complete_lane(acquire: Acquire, store: Arc<Store>, backoff: Backoff) -> Arc<CompleteLane> {
    Lane::new(MAX_BATCH, flushers(), move |items: Vec<StatusChange>| {
        let (acquire, store) = (acquire.clone(), store.clone());
        async move {
            let n = items.len();
            let mut conn = match acquire().await {
                Ok(c) => c,
                Err(e) => return fail_all(n, &e),
            };
            // the same task twice in one batch: the later ones go one by one, after; so
            // does a completion that names no worker (its history row would need the
            // worker the task row holds)
            let mut seen = std::collections::HashSet::new();
            let firsts: Vec<usize> = (0..n)
                .filter(|i| items[*i].worker_id.is_some() && seen.insert(&items[*i].id))
                .collect();
            let mut out: Vec<Option<Result<Task>>> =
                match settle::complete_set(&mut conn, &store, &items, &firsts, None).await {
                    Ok(done) => done.into_iter().map(|t| t.map(Ok)).collect(),
                    Err(e) if reaches_all(&e) => return fail_all(n, &e),
                    Err(_) => (0..n).map(|_| None).collect(),
                };
            for (i, slot) in out.iter_mut().enumerate() {
                if slot.is_none() {
                    *slot = Some(
                        service::update_task_status(&mut conn, &store, &items[i], backoff, None)
                            .await,
                    );
                }
            }
            out.into_iter().flatten().collect()
        }
    })
}

/// The same error for each of a batch's `n` callers.
fn fail_all<O>(n: usize, e: &DbcError) -> Vec<Result<O>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

/// A failure of the connection or of time is every caller's: running the calls one by
/// one would only fail again (or, after a dropped connection, run twice what may have
/// been applied). Anything else was the statement's refusal and nothing was applied.
fn reaches_all(e: &DbcError) -> bool {
    settle::breaks_all(e)
}
