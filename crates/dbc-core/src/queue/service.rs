//! The queue's rules, written once against [`Store`]: inserting with idempotency keys and
//! dependencies, the state machine for status changes (docs/API.md, updateTaskStatus), claims under leases,
//! expired leases, retention, requeue, reading, listing and deleting. No SQL here and no
//! per-database branch: what differs between databases is the store's.
//!
//! Times come from the connector's clock (milliseconds, UTC); ids are UUIDv7 made here.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::common::Attempt;
use crate::store::{finish_tx, in_tx, Store};
use crate::task::input::MAX_WORKFLOW_TASKS;
use crate::task::input::{error_parts, Claim, NewTask, StatusChange, TaskFilter, MAX_BATCH};
use crate::task::now;
use crate::task::status::{Backoff, TaskStatus};
use crate::task::{Execution, Task, TaskDetail, TaskPage};
use crate::{DbcError, Result};

/// Inserts tasks in one transaction. A task whose idempotency key exists already is not
/// inserted; the existing one is returned with `deduplicated: true`.
pub async fn insert_tasks(
    conn: &mut Conn,
    store: &Store,
    tasks: &[NewTask],
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    if tasks.is_empty() {
        return Err(DbcError::validation(
            "payload",
            "insertTask needs at least one task",
        ));
    }
    if tasks.len() > MAX_BATCH {
        return Err(DbcError::validation(
            "payload",
            format!("insertTask takes at most {MAX_BATCH} tasks per message; split the array"),
        ));
    }
    let ts = now();
    // always in a transaction, also for one statement: a connection that breaks before
    // COMMIT was sent leaves nothing applied, so the router may run the insert again (on
    // a fresh connection or the fallback); a lone INSERT that breaks would be "outcome
    // unknown" instead
    in_tx(conn, async |conn: &mut Conn| {
        let inserted = store
            .insert_tasks(conn, tasks, ts, trace.as_deref_mut())
            .await?;
        let with_deps: Vec<&NewTask> = tasks.iter().filter(|t| t.has_dependencies()).collect();
        if !with_deps.is_empty() {
            insert_dependencies(conn, store, &with_deps, trace.as_deref_mut()).await?;
        }
        let mut out: Vec<Task> = tasks.iter().map(|t| Task::inserted(t, ts)).collect();
        let keyed = tasks.iter().any(|t| t.idempotency_key.is_some());
        if inserted < tasks.len() as u64 || (keyed && store.counts_duplicates_as_inserted()) {
            resolve_duplicates(conn, store, tasks, &mut out, trace.as_deref_mut()).await?;
        }
        Ok(out)
    })
    .await
}

async fn insert_dependencies(
    conn: &mut Conn,
    store: &Store,
    tasks: &[&NewTask],
    mut trace: Option<&mut Trace>,
) -> Result<()> {
    store
        .insert_dependencies(conn, tasks, trace.as_deref_mut())
        .await
        .map_err(|e| match e {
            DbcError::Conflict { .. } => {
                DbcError::validation("dependsOn", "dependsOn names a task that does not exist")
            }
            other => other,
        })?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    if store
        .count_foreign_dependencies(conn, &ids, trace.as_deref_mut())
        .await?
        > 0
    {
        return Err(DbcError::validation(
            "dependsOn",
            "dependsOn names a task of another workflow",
        ));
    }
    store.count_dependencies(conn, &ids, trace).await
}

async fn resolve_duplicates(
    conn: &mut Conn,
    store: &Store,
    tasks: &[NewTask],
    out: &mut [Task],
    trace: Option<&mut Trace>,
) -> Result<()> {
    let keyed: Vec<usize> = (0..tasks.len())
        .filter(|i| tasks[*i].idempotency_key.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = keyed
        .iter()
        .map(|i| tasks[*i].idempotency_key.clone().unwrap_or_default())
        .collect();
    let existing = store.find_duplicates(conn, &keys, trace).await?;
    for i in keyed {
        if let Some(found) = existing
            .iter()
            .find(|e| e.idempotency_key == tasks[i].idempotency_key)
        {
            if found.id != tasks[i].id {
                out[i] = Task {
                    deduplicated: true,
                    ..found.clone()
                };
            }
        }
    }
    Ok(())
}

/// `getTask`: the task, its dependencies, every attempt and its error log.
pub async fn get_task(
    conn: &mut Conn,
    store: &Store,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<TaskDetail> {
    // the task row, and the start of the attempt it is running (if it is)
    let (task, attempt_started) = store
        .fetch_task_with_attempt(conn, id, trace.as_deref_mut())
        .await?;
    let depends_on = store
        .dependencies_of(conn, &task.id, trace.as_deref_mut())
        .await?;
    let mut history = store
        .history_of(conn, &task.id, trace.as_deref_mut())
        .await?;
    let errors = store.errors_of(conn, &task.id, trace).await?;
    // the attempt in progress has no history row yet: it lives on the task row
    if let Some(started) = attempt_started.filter(|_| task.status == TaskStatus::Running) {
        if !history.iter().any(|h| h.attempt == task.attempts) {
            history.push(Execution {
                attempt: task.attempts,
                worker_id: task.worker_id.clone(),
                status: TaskStatus::Running.as_str().into(),
                started_at: Some(started),
                finished_at: None,
                duration_ms: None,
            });
        }
    }
    Ok(TaskDetail {
        task,
        depends_on,
        history,
        errors,
    })
}

/// A task that will never complete (dead or cancelled) cancels the pending tasks that
/// wait for it, and theirs in turn, so a workflow finishes instead of waiting forever.
async fn cancel_dependents(
    conn: &mut Conn,
    store: &Store,
    root: &str,
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<()> {
    let mut frontier = vec![root.to_string()];
    // a workflow's dependencies point only backwards, so the depth is bounded by its size
    for _ in 0..MAX_WORKFLOW_TASKS {
        let ids = store
            .find_dependents(conn, &frontier, trace.as_deref_mut())
            .await?;
        if ids.is_empty() {
            break;
        }
        store
            .cancel_dependents(conn, &ids, ts, trace.as_deref_mut())
            .await?;
        frontier = ids;
    }
    Ok(())
}

/// `updateTaskStatus`: applies the state machine (docs/API.md) in one transaction.
pub async fn update_task_status(
    conn: &mut Conn,
    store: &Store,
    change: &StatusChange,
    backoff: Backoff,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    use TaskStatus::*;
    in_tx(conn, async |conn: &mut Conn| {
        let task = store
            .fetch_task(conn, &change.id, true, trace.as_deref_mut())
            .await?;
        let ts = now();
        let (from, to) = (task.status, change.status);
        if !from.can_become(to) {
            let hint = if from == Failed && to == Pending {
                " (use requeueFailedTask)"
            } else {
                ""
            };
            return Err(DbcError::InvalidTransition(format!(
                "task {} is {from}; it cannot become {to}{hint}",
                task.id
            )));
        }
        if from == Running {
            let expired = task
                .lease_expires_at
                .as_deref()
                .and_then(|l| chrono::DateTime::parse_from_rfc3339(l).ok())
                .is_some_and(|l| l.with_timezone(&Utc) < ts);
            let other = change.worker_id.is_some() && change.worker_id != task.worker_id;
            if expired || other {
                return Err(DbcError::LeaseLost(format!(
                    "task {} is no longer leased to {}: {}",
                    task.id,
                    change.worker_id.as_deref().unwrap_or("this worker"),
                    if expired {
                        "the lease expired"
                    } else {
                        "another worker holds it"
                    }
                )));
            }
        }
        // a worker reporting the outcome of an attempt that is already over (its lease
        // expired and the reaper put the task back to pending): no one holds a lease on a
        // pending task, so the late report must not complete or fail it
        if from == Pending && matches!(to, Completed | Failed) && task.attempts > 0 {
            if let Some(w) = &change.worker_id {
                return Err(DbcError::LeaseLost(format!(
                    "task {} is no longer leased to {w}: it is pending again after attempt {}{}",
                    task.id,
                    task.attempts,
                    task.last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )));
            }
        }
        let worker = change.worker_id.as_deref();
        // an attempt that starts now (manual start, or a direct completion of a pending task)
        let starts = from == Pending && to != Cancelled;
        let attempt = Attempt {
            id: &task.id,
            attempt: if starts {
                task.attempts + 1
            } else {
                task.attempts
            },
            at: ts,
        };
        if starts && to == Running {
            // the attempt lives on the task row until it ends; its history row is written then
            let lease = ts + chrono::Duration::milliseconds(change.lease_ms);
            store
                .start_task(conn, attempt, worker, lease, trace.as_deref_mut())
                .await?;
            return store
                .fetch_task(conn, &task.id, false, trace.as_deref_mut())
                .await;
        }
        // the attempt ends: its one history row ("pending" = given back, recorded as cancelled)
        let outcome = if to == Pending { Cancelled } else { to }.as_str();
        if starts {
            // started and finished at once
            store
                .record_attempt(conn, attempt, worker, outcome, trace.as_deref_mut())
                .await?;
        } else if from == Running && attempt.attempt > 0 {
            // from the task row (locked above): its worker before the change below clears
            // it (the PostgreSQL completion batch falls back to this path on a key
            // conflict)
            store
                .record_running_attempt(conn, &task.id, outcome, ts, trace.as_deref_mut())
                .await?;
        }
        match to {
            Completed => {
                store
                    .complete_task(conn, attempt, change.result.as_ref(), trace.as_deref_mut())
                    .await?;
                // dependents wait for one dependency less
                store
                    .release_dependents(conn, &task.id, trace.as_deref_mut())
                    .await?;
            }
            Failed => {
                let (code, message) = error_parts(change.error.as_ref());
                store
                    .record_error(conn, attempt, &code, &message, trace.as_deref_mut())
                    .await?;
                if attempt.attempt < task.max_attempts {
                    let delay = backoff.delay_ms(attempt.attempt) as i64;
                    let next = ts + chrono::Duration::milliseconds(delay);
                    store
                        .retry_task(conn, attempt, next, &message, trace.as_deref_mut())
                        .await?;
                } else {
                    store
                        .fail_task(conn, attempt, &message, trace.as_deref_mut())
                        .await?;
                    cancel_dependents(conn, store, &task.id, ts, trace.as_deref_mut()).await?;
                }
            }
            Cancelled => {
                store
                    .cancel_task(conn, &task.id, ts, trace.as_deref_mut())
                    .await?;
                cancel_dependents(conn, store, &task.id, ts, trace.as_deref_mut()).await?;
            }
            // running → pending: the worker gives the task back; the attempt counts
            Pending | Running => {
                store
                    .give_back_task(conn, &task.id, ts, trace.as_deref_mut())
                    .await?;
            }
        }
        store
            .fetch_task(conn, &task.id, false, trace.as_deref_mut())
            .await
    })
    .await
}

/// `claimTasks`: takes up to `limit` claimable tasks (pending, due, dependencies done),
/// highest priority first, then oldest `runAt`, then id; two claimers never get the same
/// task. Each claim starts an attempt under a lease; the attempt is kept on the task row
/// (`attempt_started_at`) and gets its history row when it ends.
pub async fn claim_tasks(
    conn: &mut Conn,
    store: &Store,
    c: &Claim,
    trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    let ts = now();
    let lease = ts + chrono::Duration::milliseconds(c.lease_ms);
    store.claim(conn, c, ts, lease, trace).await
}

/// Returns tasks whose lease expired to `pending` (or `failed` when that was their last
/// attempt) and closes their attempt as `lease_expired`. Safe to run from many runtimes at
/// once: every change is conditional on the lease still being expired.
pub async fn reap_expired(conn: &mut Conn, store: &Store) -> Result<u64> {
    let ts = now();
    if !store.any_expired(conn, ts).await? {
        return Ok(0);
    }
    conn.begin().await?;
    let r = async {
        // lock them first: the rows read below are the ones changed below
        store.lock_expired(conn, ts).await?;
        store.record_expired_attempts(conn, ts).await?;
        // the last attempt ran out: the task is dead; otherwise it runs again
        let failed = store.fail_expired(conn, ts).await?;
        let requeued = store.requeue_expired(conn, ts).await?;
        Ok(requeued + failed)
    }
    .await;
    finish_tx(conn, true, r).await
}

/// Deletes completed and cancelled tasks that finished more than `days` ago, 500 at a
/// time (at most 20 batches a round), so no single statement holds locks for long or
/// bloats the tables. Failed tasks are kept for inspection until deleted by hand.
pub async fn purge_finished(conn: &mut Conn, store: &Store, days: u32) -> Result<u64> {
    let cutoff = now() - chrono::Duration::days(days as i64);
    let mut total = 0;
    for _ in 0..20 {
        let n = store.purge_finished(conn, cutoff).await?;
        total += n;
        if n < 500 {
            break;
        }
    }
    Ok(total)
}

/// `requeueFailedTask`: a `failed` task becomes `pending` now, with a fresh budget of
/// attempts: `maxAttempts` becomes `attempts + ` the budget it was inserted with, so
/// attempt numbers in the history stay unique and the budget never compounds.
pub async fn requeue_failed(
    conn: &mut Conn,
    store: &Store,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = store
            .fetch_task(conn, id, true, trace.as_deref_mut())
            .await?;
        if task.status != TaskStatus::Failed {
            return Err(DbcError::InvalidTransition(format!(
                "task {id} is {}; only a failed task can be requeued",
                task.status
            )));
        }
        store
            .requeue_task(conn, &task.id, now(), trace.as_deref_mut())
            .await?;
        store.fetch_task(conn, id, false, trace).await
    })
    .await
}

/// `listTasks`: filters by queue, status and workflow; keyset pagination on the id
/// (UUIDv7, so creation order) — stable and cheap however deep the page.
pub async fn list_tasks(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    trace: Option<&mut Trace>,
) -> Result<TaskPage> {
    let filter = TaskFilter::parse(v)?;
    let limit = filter.limit;
    let mut tasks = store.list_tasks(conn, &filter, limit + 1, trace).await?;
    let next = if tasks.len() as i64 > limit {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(TaskPage { tasks, next })
}

/// `deleteTask`: removes a task that is not running, with its history, error log and
/// dependency links; tasks that waited for it are released.
pub async fn delete_task(
    conn: &mut Conn,
    store: &Store,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = store
            .fetch_task(conn, id, true, trace.as_deref_mut())
            .await?;
        if task.status == TaskStatus::Running {
            return Err(DbcError::InvalidTransition(format!(
                "task {id} is running; cancel it or wait for it before deleting"
            )));
        }
        if task.status != TaskStatus::Completed {
            store
                .release_dependents(conn, &task.id, trace.as_deref_mut())
                .await?;
        }
        store.delete_task(conn, &task.id, trace).await?;
        Ok(serde_json::json!({ "id": task.id, "deleted": true }))
    })
    .await
}
