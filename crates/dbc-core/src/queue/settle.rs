//! Batch settle: `updateTaskStatus` with an array of status changes (docs/API.md,
//! "Settle many tasks in one message"). The changes are validated as a whole by
//! [`StatusChange::parse_many`]; the completions go as one set-based batch
//! ([`complete_set`]), the rest run each as a single call does.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::queue::service;
use crate::store::{in_tx, Completion, Store};
use crate::task::input::StatusChange;
use crate::task::now;
use crate::task::status::{Backoff, TaskStatus};
use crate::task::Task;
use crate::{DbcError, Result};

/// `updateTaskStatus` with an array (a batch settle). First the completions that name
/// their worker (each id once in the array) go as one set-based batch in one transaction
/// ([`complete_set`]: PostgreSQL one statement, MariaDB and SQLite five per 1,000); every
/// other change, and a completion the batch did not take (not running, lease lost, another
/// worker, unknown id), then runs as a single call runs ([`service::update_task_status`]:
/// the same state machine and the same rules for every ending), in input order, each in
/// its own transaction, so a change that fails undoes none of the others and gets the
/// error a single call would give. Inside a caller's transaction (`executeTransaction`)
/// every change runs one by one. The answer has one outcome per change, in input order:
/// the updated task, or `{id, error: {code, message}}`. Once the connection or time
/// itself fails, the changes not yet run get that error without running.
pub async fn settle_many(
    conn: &mut Conn,
    store: &Store,
    changes: &[StatusChange],
    backoff: Backoff,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Json>> {
    let mut broken: Option<DbcError> = None;
    let mut done: Vec<Option<Task>> = (0..changes.len()).map(|_| None).collect();
    let set = if conn.in_tx() {
        Vec::new()
    } else {
        set_based(changes)
    };
    if !set.is_empty() {
        match complete_set(conn, store, changes, &set, trace.as_deref_mut()).await {
            Ok(d) => done = d,
            Err(e) if breaks_all(&e) => broken = Some(e),
            // the statement refused the batch and nothing was applied: one by one
            Err(_) => {}
        }
    }
    let mut out = Vec::with_capacity(changes.len());
    for (change, taken) in changes.iter().zip(done) {
        let r = match (taken, &broken) {
            (Some(task), _) => Ok(task),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => {
                service::update_task_status(conn, store, change, backoff, trace.as_deref_mut())
                    .await
            }
        };
        out.push(match r {
            Ok(task) => {
                serde_json::to_value(task).map_err(|e| DbcError::Internal(e.to_string()))?
            }
            Err(e) => {
                if breaks_all(&e) {
                    broken.get_or_insert(e.clone());
                }
                let mut error = serde_json::json!({"code": e.code(), "message": e.to_string()});
                if let Some(reason) = e.reason() {
                    error["reason"] = reason.into();
                }
                serde_json::json!({ "id": change.id, "error": error })
            }
        });
    }
    Ok(out)
}

/// The changes of an array that may go in the set-based batch: completions that name
/// their worker, of a task named only once in the array (so input order cannot matter).
fn set_based(changes: &[StatusChange]) -> Vec<usize> {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for c in changes {
        *times.entry(c.id.as_str()).or_default() += 1;
    }
    (0..changes.len())
        .filter(|i| {
            let c = &changes[*i];
            c.status == TaskStatus::Completed && c.worker_id.is_some() && times[c.id.as_str()] == 1
        })
        .collect()
}

/// Completes the changes at `which` (completions naming their worker, each task once) as
/// one set-based batch in one transaction ([`Store::complete_many`]): each task running
/// under a live lease held by the reporting worker is completed, with its history row
/// and its dependents released, under the rules of a single completion. Returns, per
/// change of `changes`, the task when the batch took it; the others are untouched and
/// left to the one-by-one path (which gives them their exact error). An error means
/// nothing was applied (or, for a connection that broke at COMMIT, that it is unknown).
pub(crate) async fn complete_set(
    conn: &mut Conn,
    store: &Store,
    changes: &[StatusChange],
    which: &[usize],
    trace: Option<&mut Trace>,
) -> Result<Vec<Option<Task>>> {
    let mut out: Vec<Option<Task>> = (0..changes.len()).map(|_| None).collect();
    if which.is_empty() {
        return Ok(out);
    }
    let items: Vec<Completion> = which
        .iter()
        .map(|i| Completion {
            id: &changes[*i].id,
            worker_id: changes[*i].worker_id.as_deref().unwrap_or_default(),
            result: changes[*i].result.as_ref(),
        })
        .collect();
    // in a transaction like the one-by-one path: a connection that breaks before COMMIT
    // was sent leaves nothing applied
    let taken = in_tx(conn, async |conn: &mut Conn| {
        store.complete_many(conn, &items, now(), trace).await
    })
    .await?;
    let at: HashMap<&str, usize> = which
        .iter()
        .map(|i| (changes[*i].id.as_str(), *i))
        .collect();
    for t in taken {
        if let Some(i) = at.get(t.id.as_str()) {
            out[*i] = Some(t);
        }
    }
    Ok(out)
}

/// A failure of the connection or of time: every change not yet run would fail the same
/// way (or, after a dropped connection, run twice what may have been applied).
pub(crate) fn breaks_all(e: &DbcError) -> bool {
    matches!(
        e,
        DbcError::Connection { .. } | DbcError::PoolTimeout(_) | DbcError::QueryTimeout(_)
    )
}
