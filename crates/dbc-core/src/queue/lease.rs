//! A running task's lease, written once against [`Store`]: who holds it
//! ([`check_holder`], the rule `updateTaskStatus` applies too), `heartbeat` (push the lease
//! forward, store the worker's progress) and `snoozeTask` (give the task back to run
//! later without spending the attempt: an ending of the attempt, under the rules of every
//! ending, `service::Ending::Snoozed`).
//!
//! Only the lease holder may heartbeat or snooze: a task whose lease expired, that another
//! worker holds or that is no longer running answers `DBC_LEASE_LOST`; one that was
//! cancelled while its worker held it answers `DBC_LEASE_LOST` with `reason: "cancelled"`
//! ([`DbcError::Cancelled`]), so the worker can stop the work. Nothing is written then.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value as Json};

use crate::db::{Conn, Trace};
use crate::queue::service::{follow_ending, Ending};
use crate::store::common::Attempt;
use crate::store::{in_tx, Store};
use crate::task::input::{check_keys, check_no_nul, opt_int, opt_str, uuid_of};
use crate::task::{now, Task, TaskStatus};
use crate::value::{iso_utc, parse_time, Param};
use crate::{DbcError, Result};

/// Largest `note` of a heartbeat, as JSON text.
pub const MAX_NOTE_BYTES: usize = 4096;

/// Longest snooze (`delayMs`): one year.
const MAX_DELAY_MS: i64 = 365 * 86_400_000;

/// Refuses a change by a worker that no longer holds the lease on a running `task`: the
/// lease expired at `ts`, or `worker` (when given) is not its holder. `DBC_LEASE_LOST`.
pub(crate) fn check_holder(task: &Task, worker: Option<&str>, ts: DateTime<Utc>) -> Result<()> {
    let expired = task
        .lease_expires_at
        .as_deref()
        .and_then(|l| DateTime::parse_from_rfc3339(l).ok())
        .is_some_and(|l| l.with_timezone(&Utc) < ts);
    let other = worker.is_some() && worker != task.worker_id.as_deref();
    if expired || other {
        return Err(DbcError::LeaseLost(format!(
            "task {} is no longer leased to {}: {}",
            task.id,
            worker.unwrap_or("this worker"),
            if expired {
                "the lease expired"
            } else {
                "another worker holds it"
            }
        )));
    }
    Ok(())
}

/// The answer to a settle of a cancelled task: `DBC_INVALID_TRANSITION` with
/// `reason: "cancelled"`, its message `message`.
pub(crate) fn cancelled_settle(message: String) -> DbcError {
    DbcError::Cancelled {
        message,
        settle: true,
    }
}

/// Refuses a heartbeat or snooze of a task that is not running, or not by its holder.
fn check_running(task: &Task, worker: Option<&str>, op: &str, ts: DateTime<Utc>) -> Result<()> {
    match task.status {
        TaskStatus::Running => check_holder(task, worker, ts),
        TaskStatus::Cancelled => Err(DbcError::Cancelled {
            message: format!(
                "task {} was cancelled; stop its work ({op} refused)",
                task.id
            ),
            settle: false,
        }),
        other => Err(DbcError::LeaseLost(format!(
            "task {} is {other}, not running: {} holds no lease on it",
            task.id,
            worker.unwrap_or("this worker")
        ))),
    }
}

/// Input of `heartbeat`.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    pub id: String,
    pub worker_id: Option<String>,
    /// the new lease, from now
    pub lease_ms: i64,
    /// 0–100, replaces the stored one
    pub percent: Option<f64>,
    /// any small JSON, replaces the stored one
    pub note: Option<Json>,
}

impl Beat {
    /// Validates `{id, workerId?, leaseMs?, progress?, note?}`.
    pub fn parse(v: &Json) -> Result<Beat> {
        let obj = object(
            v,
            "heartbeat takes an object {id, workerId?, leaseMs?, progress?, note?}",
        )?;
        check_keys(obj, "", &["id", "workerId", "leaseMs", "progress", "note"])?;
        let percent = match obj.get("progress") {
            None | Some(Json::Null) => None,
            Some(Json::Number(n)) if n.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)) => {
                n.as_f64()
            }
            Some(_) => {
                return Err(DbcError::validation(
                    "progress",
                    "progress must be a number from 0 to 100",
                ))
            }
        };
        let note = obj.get("note").filter(|n| !n.is_null()).cloned();
        if let Some(n) = &note {
            check_no_nul("note", n)?;
            let size = n.to_string().len();
            if size > MAX_NOTE_BYTES {
                return Err(DbcError::validation(
                    "note",
                    format!("note is {size} bytes of JSON, over the limit of {MAX_NOTE_BYTES}"),
                ));
            }
        }
        Ok(Beat {
            id: uuid_of("id", obj.get("id").unwrap_or(&Json::Null))?,
            worker_id: opt_str(obj, "", "workerId", 191)?,
            lease_ms: opt_int(obj, "", "leaseMs", 100, 86_400_000)?.unwrap_or(30_000),
            percent,
            note,
        })
    }
}

/// Input of `snoozeTask`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snooze {
    pub id: String,
    pub worker_id: Option<String>,
    /// when it may run again
    pub run_at: DateTime<Utc>,
}

impl Snooze {
    /// Validates `{id, workerId?, delayMs? | runAt?}` (neither: it may run again at once).
    pub fn parse(v: &Json, ts: DateTime<Utc>) -> Result<Snooze> {
        let obj = object(
            v,
            "snoozeTask takes an object {id, workerId?, delayMs? or runAt?}",
        )?;
        check_keys(obj, "", &["id", "workerId", "delayMs", "runAt"])?;
        let delay = opt_int(obj, "", "delayMs", 0, MAX_DELAY_MS)?;
        let run_at = match (delay, obj.get("runAt").filter(|r| !r.is_null())) {
            (Some(_), Some(_)) => {
                return Err(DbcError::validation(
                    "runAt",
                    "give delayMs or runAt, not both",
                ))
            }
            (Some(ms), None) => ts + chrono::Duration::milliseconds(ms),
            (None, Some(r)) => parse_time("runAt", &Param::from_json(r.clone()))?,
            (None, None) => ts,
        };
        Ok(Snooze {
            id: uuid_of("id", obj.get("id").unwrap_or(&Json::Null))?,
            worker_id: opt_str(obj, "", "workerId", 191)?,
            run_at,
        })
    }
}

fn object<'a>(v: &'a Json, usage: &str) -> Result<&'a Map<String, Json>> {
    v.as_object()
        .ok_or_else(|| DbcError::validation("payload", usage))
}

/// The stored progress after a heartbeat: the given parts replace the stored ones; none
/// given keeps it as it is.
fn merged_progress(stored: &Json, beat: &Beat, ts: DateTime<Utc>) -> Json {
    if beat.percent.is_none() && beat.note.is_none() {
        return stored.clone();
    }
    let mut p = stored.as_object().cloned().unwrap_or_default();
    if let Some(percent) = beat.percent {
        p.insert("percent".into(), json!(percent));
    }
    if let Some(note) = &beat.note {
        p.insert("note".into(), note.clone());
    }
    p.insert("updatedAt".into(), json!(iso_utc(ts)));
    Json::Object(p)
}

/// `heartbeat`: the lease holder's task stays its own for `leaseMs` more from now, with
/// its progress stored; returns the task as it is now.
pub async fn heartbeat(
    conn: &mut Conn,
    store: &Store,
    beat: &Beat,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    in_tx(conn, async |conn: &mut Conn| {
        let mut task = store
            .fetch_task(conn, &beat.id, true, trace.as_deref_mut())
            .await?;
        let ts = now();
        check_running(&task, beat.worker_id.as_deref(), "heartbeat", ts)?;
        let lease = ts + chrono::Duration::milliseconds(beat.lease_ms);
        let progress = merged_progress(&task.progress, beat, ts);
        store
            .heartbeat_task(conn, &task.id, lease, &progress, ts, trace)
            .await?;
        task.lease_expires_at = Some(iso_utc(lease));
        task.progress = progress;
        task.updated_at = iso_utc(ts);
        Ok(task)
    })
    .await
}

/// `snoozeTask`: the lease holder gives its task back to run from `runAt` (or after
/// `delayMs`) without spending the attempt: the attempt ends (its history row says
/// `cancelled`, as for a give-back), the task is `pending` with one attempt more in its
/// budget, and its dependents wait on.
pub async fn snooze(
    conn: &mut Conn,
    store: &Store,
    s: &Snooze,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = store
            .fetch_task(conn, &s.id, true, trace.as_deref_mut())
            .await?;
        let ts = now();
        check_running(&task, s.worker_id.as_deref(), "snoozeTask", ts)?;
        let attempt = Attempt {
            id: &task.id,
            attempt: task.attempts,
            at: ts,
        };
        if attempt.attempt > 0 {
            store
                .record_running_attempt(
                    conn,
                    &task.id,
                    Ending::Snoozed.history(),
                    ts,
                    trace.as_deref_mut(),
                )
                .await?;
        }
        store
            .snooze_task(conn, &task.id, s.run_at.max(ts), ts, trace.as_deref_mut())
            .await?;
        follow_ending(
            conn,
            store,
            Ending::Snoozed,
            std::slice::from_ref(&task.id),
            ts,
            trace.as_deref_mut(),
        )
        .await?;
        store.fetch_task(conn, &task.id, false, trace).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190a0b0-0000-7000-8000-000000000001";

    #[test]
    fn beats_validate_and_merge() {
        let b = Beat::parse(&json!({"id": ID, "progress": 40, "note": {"step": 2}})).unwrap();
        assert_eq!((b.lease_ms, b.percent), (30_000, Some(40.0)));
        let ts = now();
        let p = merged_progress(&Json::Null, &b, ts);
        assert_eq!(p["percent"], json!(40.0));
        assert_eq!(p["note"], json!({"step": 2}));
        let only = Beat::parse(&json!({"id": ID, "progress": 50})).unwrap();
        let q = merged_progress(&p, &only, ts);
        assert_eq!(
            (q["percent"].clone(), q["note"].clone()),
            (json!(50.0), json!({"step": 2}))
        );
        let none = Beat::parse(&json!({"id": ID})).unwrap();
        assert_eq!(merged_progress(&q, &none, ts), q);
        for (input, field) in [
            (json!({"id": ID, "progress": 101}), "progress"),
            (json!({"id": ID, "progress": "5"}), "progress"),
            (
                json!({"id": ID, "note": "x".repeat(MAX_NOTE_BYTES)}),
                "note",
            ),
            (json!({"id": ID, "leaseMs": 5}), "leaseMs"),
            (json!({"id": "nope"}), "id"),
            (json!({"id": ID, "status": "x"}), "status"),
            (json!([ID]), "payload"),
        ] {
            match Beat::parse(&input) {
                Err(DbcError::Validation { field: f, .. }) => assert_eq!(f, field, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn snoozes_take_a_delay_or_a_time() {
        let ts = now();
        let s = Snooze::parse(&json!({"id": ID, "delayMs": 5000}), ts).unwrap();
        assert_eq!(s.run_at, ts + chrono::Duration::milliseconds(5000));
        let s = Snooze::parse(&json!({"id": ID}), ts).unwrap();
        assert_eq!(s.run_at, ts);
        let s = Snooze::parse(&json!({"id": ID, "runAt": "2030-01-01T00:00:00Z"}), ts).unwrap();
        assert_eq!(iso_utc(s.run_at), "2030-01-01T00:00:00.000Z");
        for (input, field) in [
            (json!({"id": ID, "delayMs": -1}), "delayMs"),
            (json!({"id": ID, "delayMs": 1, "runAt": 1}), "runAt"),
            (json!({"id": ID, "runAt": "soon"}), "runAt"),
        ] {
            match Snooze::parse(&input, ts) {
                Err(DbcError::Validation { field: f, .. }) => assert_eq!(f, field, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
