//! The queue's rules, written once against [`Store`]: inserting with idempotency keys and
//! dependencies, the state machine for status changes (docs/API.md, updateTaskStatus), claims under leases,
//! expired leases, retention, requeue, reading, listing and deleting. No SQL here and no
//! per-database branch: what differs between databases is the store's.
//!
//! Times come from the connector's clock (milliseconds, UTC); ids are UUIDv7 made here.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::{dead_letter, unique};
use crate::db::{Conn, Trace};
use crate::queue::lease;
use crate::store::common::{Attempt, ErrorRow};
use crate::store::maintenance::Expired;
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
        // the store's insert, and the keys a uniqueness window lets this insert take over
        let inserted = unique::insert_tasks(conn, store, tasks, ts, trace.as_deref_mut()).await?;
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

/// How an attempt ends. Every ending follows the same rules, whether a worker reported
/// it (`updateTaskStatus`) or the lease reaper found it (docs/ARCHITECTURE.md, "How a
/// task ends"):
///
/// | ending | the task | history row | error-log row | its dependents |
/// |---|---|---|---|---|
/// | completed | `completed` | `completed` | — | released: wait for one task less |
/// | failed, attempts left | `pending` after a backoff | `failed` | the reported error | untouched |
/// | failed, last attempt | `failed` (dead) | `failed` | the reported error | cancelled, theirs too |
/// | cancelled | `cancelled` | `cancelled` (if it ran) | — | cancelled, theirs too |
/// | given back | `pending` | `cancelled` | — | untouched |
/// | snoozed (`snoozeTask`) | `pending` at its new `runAt`, attempt not spent | `cancelled` | — | untouched |
/// | lease expired, attempts left | `pending` | `lease_expired` | `LEASE_EXPIRED` | untouched |
/// | lease expired, last attempt | `failed` (dead) | `lease_expired` | `LEASE_EXPIRED` | cancelled, theirs too |
///
/// A workflow's status is derived from its tasks' (`workflows::progress`), so it follows
/// without a write of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Completed,
    /// failed with attempts left, or given back: it will run again
    RunsAgain,
    /// failed on its last attempt (reported, or its lease expired)
    Dead,
    Cancelled,
    /// given back to run later without spending the attempt (`queue::lease::snooze`)
    Snoozed,
}

impl Ending {
    /// The history row's status of an attempt that ended so, where it is one word.
    pub(crate) fn history(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Dead | Ending::RunsAgain => "failed",
            Ending::Cancelled | Ending::Snoozed => "cancelled",
        }
    }

    /// A failed attempt (reported or expired): the task runs again while it has attempts.
    fn of_failure(attempt: i64, max_attempts: i64) -> Ending {
        if attempt < max_attempts {
            Ending::RunsAgain
        } else {
            Ending::Dead
        }
    }
}

/// The error-log row of a lease expiry: its code, and who logs it.
pub const LEASE_EXPIRED: &str = "LEASE_EXPIRED";
const LEASE_REAPER: &str = "leaseReaper";

/// What follows for the tasks waiting on `ids`, which all ended the same way in this
/// transaction: a completed task releases them; a task that will never complete (dead or
/// cancelled) cancels the pending ones, and theirs in turn, so a workflow finishes instead
/// of waiting forever.
pub(crate) async fn follow_ending(
    conn: &mut Conn,
    store: &Store,
    ending: Ending,
    ids: &[String],
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<()> {
    match ending {
        Ending::Completed => {
            for id in ids {
                store
                    .release_dependents(conn, id, trace.as_deref_mut())
                    .await?;
            }
        }
        Ending::Dead | Ending::Cancelled => {
            if ending == Ending::Dead {
                dead_letter::send(conn, store, ids, ts, trace.as_deref_mut()).await?;
            }
            let mut frontier = ids.to_vec();
            // a workflow's dependencies point only backwards, so the depth is bounded by
            // its size
            for _ in 0..MAX_WORKFLOW_TASKS {
                let mut next = Vec::new();
                for chunk in frontier.chunks(MAX_IDS_PER_STATEMENT) {
                    let ids = store
                        .find_dependents(conn, chunk, trace.as_deref_mut())
                        .await?;
                    if !ids.is_empty() {
                        store
                            .cancel_dependents(conn, &ids, ts, trace.as_deref_mut())
                            .await?;
                        next.extend(ids);
                    }
                }
                if next.is_empty() {
                    break;
                }
                frontier = next;
            }
        }
        Ending::RunsAgain | Ending::Snoozed => {}
    }
    Ok(())
}

/// Ids per `IN (…)` list: well under every database's parameter limit.
const MAX_IDS_PER_STATEMENT: usize = 1000;

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
            let message = format!("task {} is {from}; it cannot become {to}{hint}", task.id);
            // a cancelled task's worker learns why (reason "cancelled", docs/ERRORS.md)
            return Err(if from == Cancelled && to != Cancelled {
                lease::cancelled_settle(message)
            } else {
                DbcError::InvalidTransition(message)
            });
        }
        if from == Running {
            lease::check_holder(&task, change.worker_id.as_deref(), ts)?;
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
        let ending = match to {
            Completed => {
                store
                    .complete_task(conn, attempt, change.result.as_ref(), trace.as_deref_mut())
                    .await?;
                Ending::Completed
            }
            Failed => {
                let (code, message) = error_parts(change.error.as_ref());
                store
                    .record_error(conn, attempt, &code, &message, trace.as_deref_mut())
                    .await?;
                let ending = Ending::of_failure(attempt.attempt, task.max_attempts);
                if ending == Ending::RunsAgain {
                    let delay = backoff.delay_ms(attempt.attempt) as i64;
                    let next = ts + chrono::Duration::milliseconds(delay);
                    store
                        .retry_task(conn, attempt, next, &message, trace.as_deref_mut())
                        .await?;
                } else {
                    store
                        .fail_task(conn, attempt, &message, trace.as_deref_mut())
                        .await?;
                }
                ending
            }
            Cancelled => {
                store
                    .cancel_task(conn, &task.id, ts, trace.as_deref_mut())
                    .await?;
                Ending::Cancelled
            }
            // running → pending: the worker gives the task back; the attempt counts
            Pending | Running => {
                store
                    .give_back_task(conn, &task.id, ts, trace.as_deref_mut())
                    .await?;
                Ending::RunsAgain
            }
        };
        let ended = [task.id.clone()];
        follow_ending(conn, store, ending, &ended, ts, trace.as_deref_mut()).await?;
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

/// The lease reaper: a task whose lease expired ends its attempt as `lease_expired` under
/// the rules of every ending ([`Ending`]): its history row, an error-log row
/// (`LEASE_EXPIRED`), then `pending` again, or `failed` when that was its last attempt,
/// which cancels its dependents. Set-based: one statement per step for all the expired
/// tasks, and the common case (nothing expired) is one indexed read. Safe to run from many
/// runtimes at once: the expired tasks are locked first, and every change is conditional
/// on the lease still being expired. Returns how many tasks it took.
pub async fn reap_expired(conn: &mut Conn, store: &Store) -> Result<u64> {
    let ts = now();
    if !store.any_expired(conn, ts).await? {
        return Ok(0);
    }
    conn.begin().await?;
    let r = async {
        // lock them first: the rows read here are the ones changed below
        let expired = store.select_expired(conn, ts).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        store.record_expired_attempts(conn, ts).await?;
        let errors: Vec<ErrorRow> = expired
            .iter()
            .map(|e| ErrorRow {
                attempt: Attempt {
                    id: &e.id,
                    attempt: e.attempts,
                    at: ts,
                },
                operation: LEASE_REAPER,
                code: LEASE_EXPIRED,
                message: lease_expired_message(e),
            })
            .collect();
        store.record_errors(conn, &errors, None).await?;
        let failed = store.fail_expired(conn, ts).await?;
        let requeued = store.requeue_expired(conn, ts).await?;
        let dead: Vec<String> = expired
            .iter()
            .filter(|e| Ending::of_failure(e.attempts, e.max_attempts) == Ending::Dead)
            .map(|e| e.id.clone())
            .collect();
        follow_ending(conn, store, Ending::Dead, &dead, ts, None).await?;
        Ok(requeued + failed)
    }
    .await;
    finish_tx(conn, true, r).await
}

/// The error-log message of an expired lease: whose, which attempt, and what follows.
fn lease_expired_message(e: &Expired) -> String {
    format!(
        "lease expired: {} did not report attempt {} of {} before its lease ended; {}",
        e.worker_id
            .as_deref()
            .map(|w| format!("worker {w}"))
            .unwrap_or_else(|| "its worker".into()),
        e.attempts,
        e.max_attempts,
        if Ending::of_failure(e.attempts, e.max_attempts) == Ending::Dead {
            "no attempts left, the task failed"
        } else {
            "the task runs again"
        }
    )
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

/// `listTasks`: filters by queue, status, workflow and name; keyset pagination on the id
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
