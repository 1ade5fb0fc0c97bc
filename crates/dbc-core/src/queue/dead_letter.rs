//! Dead-letter queues (docs/API.md, "configureQueue" and "Dead-letter queues"): a queue
//! may name another queue that receives a copy of each of its tasks that fails its last
//! attempt, whether the failure was reported or the lease of the last attempt expired.
//!
//! The dead task itself stays `failed` where it is, with its history and error log, so
//! its workflow and dependents follow the rules of every dead task (`service::Ending`).
//! The copy is a new task in the dead-letter queue: pending now, the dead task's name and
//! priority, a fresh budget of the default 5 attempts, no workflow and no key, and as
//! payload `{deadLetter: {taskId, queue, name, attempts, error, failedAt}, payload}`.
//! It is marked (`dead_letter_of`) and is never dead-lettered again, so dead-letter queues
//! that name each other cannot loop.

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::db::{Conn, Trace};
use crate::store::Store;
use crate::task::input::{check_keys, input_object, opt_str, NewTask};
use crate::task::{new_id, now};
use crate::value::iso_utc;
use crate::{DbcError, Result};

/// Longest queue name (the tasks' `queue` column on MariaDB).
const MAX_QUEUE: usize = 191;
/// Ids per `IN (…)` list.
const CHUNK: usize = 1000;
/// Attempts of a dead-letter task (the default of `insertTask`).
const DEAD_LETTER_ATTEMPTS: i64 = 5;

/// Called with the tasks that just died in this transaction (`service::follow_ending`):
/// each whose queue has a dead-letter queue gets its copy there. Returns how many.
pub(crate) async fn send(
    conn: &mut Conn,
    store: &Store,
    dead: &[String],
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<usize> {
    let mut sent = 0;
    for chunk in dead.chunks(CHUNK) {
        let targets = store
            .dead_letter_targets(conn, chunk, trace.as_deref_mut())
            .await?;
        if targets.is_empty() {
            continue;
        }
        let mut copies = Vec::with_capacity(targets.len());
        for (id, queue) in &targets {
            let task = store
                .fetch_task(conn, id, false, trace.as_deref_mut())
                .await?;
            copies.push(NewTask {
                id: new_id(),
                queue: queue.clone(),
                name: task.name.clone(),
                payload: Some(json!({
                    "deadLetter": {
                        "taskId": task.id,
                        "queue": task.queue,
                        "name": task.name,
                        "attempts": task.attempts,
                        "error": task.last_error,
                        "failedAt": iso_utc(ts),
                    },
                    "payload": task.payload,
                })),
                priority: task.priority,
                run_at: ts,
                max_attempts: DEAD_LETTER_ATTEMPTS,
                workflow_id: None,
                idempotency_key: None,
                unique_for: None,
                depends_on: Vec::new(),
            });
        }
        store
            .insert_tasks(conn, &copies, ts, trace.as_deref_mut())
            .await?;
        for (copy, (of, _)) in copies.iter().zip(&targets) {
            store
                .mark_dead_letter(conn, &copy.id, of, trace.as_deref_mut())
                .await?;
        }
        sent += copies.len();
    }
    Ok(sent)
}

/// `configureQueue {queue?, deadLetterQueue}`: sets the queue's dead-letter queue (a
/// name), or clears it (`null`). The queue is the input's, else the node's.
pub async fn configure(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    default: Option<&str>,
    trace: Option<&mut Trace>,
) -> Result<Json> {
    let obj = input_object(
        v,
        "configureQueue takes an object {queue?, deadLetterQueue}",
    )?;
    check_keys(obj, "", &["queue", "deadLetterQueue"])?;
    let queue = opt_str(obj, "", "queue", MAX_QUEUE)?
        .or_else(|| default.filter(|q| !q.is_empty()).map(str::to_string))
        .ok_or_else(|| {
            DbcError::validation(
                "queue",
                "configureQueue needs a queue: payload.queue, or the node's Queue",
            )
        })?;
    if !obj.contains_key("deadLetterQueue") {
        return Err(DbcError::validation(
            "deadLetterQueue",
            "configureQueue needs deadLetterQueue: a queue name, or null for none",
        ));
    }
    let target = opt_str(obj, "", "deadLetterQueue", MAX_QUEUE)?;
    if target.as_deref() == Some(queue.as_str()) {
        return Err(DbcError::validation(
            "deadLetterQueue",
            "a queue cannot be its own dead-letter queue",
        ));
    }
    store
        .configure_queue(conn, &queue, target.as_deref(), now(), trace)
        .await?;
    Ok(json!({ "queue": queue, "deadLetterQueue": target }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_attempts_are_the_insert_default() {
        let t = NewTask::parse(
            &json!({}),
            "",
            "q",
            crate::task::Limits {
                max_payload_bytes: 1 << 20,
            },
        )
        .ok();
        assert_eq!(t.map(|t| t.max_attempts), Some(DEAD_LETTER_ATTEMPTS));
    }
}
