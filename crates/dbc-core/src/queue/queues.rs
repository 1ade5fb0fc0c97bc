//! Queues as a whole: pausing and resuming one (`pauseQueue`, `resumeQueue`) and their
//! statistics (`getQueueStats`), written against [`Store`]. The paused state is a row of
//! the `queues` table, read by the claim statements themselves, so a paused queue is
//! claimed by no runtime sharing the database; claiming from it returns no task.

use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::db::{Conn, Trace};
use crate::store::{in_tx, Store};
use crate::task::input::{check_keys, input_object, opt_str};
use crate::task::{now, TaskStatus};
use crate::{DbcError, Result};

/// Longest queue name (the tasks' `queue` column on MariaDB).
const MAX_QUEUE: usize = 191;

/// One queue's statistics (`getQueueStats`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub queue: String,
    pub paused: bool,
    /// when it was paused (first time, while it stays paused)
    pub paused_at: Option<String>,
    /// where its tasks that fail their last attempt are copied (`configureQueue`)
    pub dead_letter_queue: Option<String>,
    pub counts: Counts,
    /// pending tasks whose `runAt` is still in the future (included in `counts.pending`)
    pub scheduled: i64,
    /// how long the pending task that has been due the longest has waited: now − its
    /// `runAt`; `null` when no pending task is due
    pub oldest_pending_age_ms: Option<i64>,
    /// tasks of the queue that completed in the last 60 seconds
    pub completed_last_minute: i64,
}

/// Tasks of a queue by status.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

/// The queue a `pauseQueue`/`resumeQueue` input names, else the node's (`default`);
/// `DBC_VALIDATION` (field `queue`) when there is neither.
fn queue_of(op: &str, v: &Json, default: Option<&str>) -> Result<String> {
    let obj = input_object(v, &format!("{op} takes an object {{queue}}"))?;
    check_keys(obj, "", &["queue"])?;
    opt_str(obj, "", "queue", MAX_QUEUE)?
        .or_else(|| default.filter(|q| !q.is_empty()).map(str::to_string))
        .ok_or_else(|| {
            DbcError::validation(
                "queue",
                format!("{op} needs a queue: payload.queue, or the node's Queue"),
            )
        })
}

/// `pauseQueue`: no runtime claims from the queue until it is resumed. Pausing a paused
/// queue keeps its first `pausedAt`; a queue with no task yet may be paused.
pub async fn pause(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    default: Option<&str>,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    let queue = queue_of("pauseQueue", v, default)?;
    in_tx(conn, async |conn: &mut Conn| {
        store
            .pause_queue(conn, &queue, now(), trace.as_deref_mut())
            .await?;
        let at = store.queue_paused_at(conn, &queue, trace).await?;
        Ok(json!({ "queue": queue, "paused": true, "pausedAt": at }))
    })
    .await
}

/// `resumeQueue`: the queue's tasks are claimed again (resuming a queue that is not
/// paused changes nothing).
pub async fn resume(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    default: Option<&str>,
    trace: Option<&mut Trace>,
) -> Result<Json> {
    let queue = queue_of("resumeQueue", v, default)?;
    store.resume_queue(conn, &queue, now(), trace).await?;
    Ok(json!({ "queue": queue, "paused": false }))
}

/// `getQueueStats`: every queue that has tasks or is paused (or only the queue the input
/// names, even when it has neither), sorted by name.
pub async fn stats(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    let obj = input_object(v, "getQueueStats takes an object {queue?}")?;
    check_keys(obj, "", &["queue"])?;
    let only = opt_str(obj, "", "queue", MAX_QUEUE)?;
    let ts = now();
    let minute_ago = ts - chrono::Duration::seconds(60);
    let counts = store
        .count_queue_tasks(conn, only.as_deref(), ts, minute_ago, trace.as_deref_mut())
        .await?;
    let paused: Vec<(String, String)> = match &only {
        Some(q) => store
            .queue_paused_at(conn, q, trace.as_deref_mut())
            .await?
            .map(|at| vec![(q.clone(), at)])
            .unwrap_or_default(),
        None => store.paused_queues(conn, trace.as_deref_mut()).await?,
    };
    let mut dead_letter = store.dead_letter_queues(conn, trace).await?;
    if let Some(q) = &only {
        dead_letter.retain(|(name, _)| name == q);
    }
    let mut names: Vec<&str> = counts.iter().map(|c| c.queue.as_str()).collect();
    names.extend(paused.iter().map(|(q, _)| q.as_str()));
    names.extend(dead_letter.iter().map(|(q, _)| q.as_str()));
    names.extend(only.as_deref());
    names.sort_unstable();
    names.dedup();
    let queues: Vec<QueueStats> = names
        .into_iter()
        .map(|name| {
            let paused_at = paused
                .iter()
                .find(|(q, _)| q == name)
                .map(|(_, at)| at.clone());
            let mut s = QueueStats {
                queue: name.to_string(),
                paused: paused_at.is_some(),
                paused_at,
                dead_letter_queue: dead_letter
                    .iter()
                    .find(|(q, _)| q == name)
                    .map(|(_, d)| d.clone()),
                counts: Counts::default(),
                scheduled: 0,
                oldest_pending_age_ms: None,
                completed_last_minute: 0,
            };
            for c in counts.iter().filter(|c| c.queue == name) {
                match c.status {
                    Some(TaskStatus::Pending) => {
                        s.counts.pending = c.count;
                        s.scheduled = c.later;
                        s.oldest_pending_age_ms = c
                            .earliest_due
                            .as_deref()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| (ts - t.with_timezone(&chrono::Utc)).num_milliseconds());
                    }
                    Some(TaskStatus::Running) => s.counts.running = c.count,
                    Some(TaskStatus::Completed) => {
                        s.counts.completed = c.count;
                        s.completed_last_minute = c.finished_since;
                    }
                    Some(TaskStatus::Failed) => s.counts.failed = c.count,
                    Some(TaskStatus::Cancelled) => s.counts.cancelled = c.count,
                    None => {}
                }
            }
            s
        })
        .collect();
    serde_json::to_value(json!({ "queues": queues })).map_err(|e| DbcError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_the_inputs_or_the_nodes_and_required() {
        let q = |v: Json, d: Option<&str>| queue_of("pauseQueue", &v, d);
        assert_eq!(
            q(json!({"queue": "mail"}), Some("node")).ok().as_deref(),
            Some("mail")
        );
        assert_eq!(q(json!({}), Some("node")).ok().as_deref(), Some("node"));
        assert_eq!(q(Json::Null, Some("node")).ok().as_deref(), Some("node"));
        for (input, default, field) in [
            (json!({}), None, "queue"),
            (json!({}), Some(""), "queue"),
            (json!({"queue": ""}), Some("node"), "queue"),
            (json!({"queue": 5}), None, "queue"),
            (json!({"queue": "x".repeat(192)}), None, "queue"),
            (json!({"name": "x"}), None, "name"),
            (json!("mail"), None, "payload"),
        ] {
            match q(input.clone(), default) {
                Err(DbcError::Validation { field: f, .. }) => assert_eq!(f, field, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
