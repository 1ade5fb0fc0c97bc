//! Schedules: named recurring tasks with a cron pattern and a time zone, kept in the
//! database (`createSchedule`, `listSchedules`, `pauseSchedule`, `resumeSchedule`,
//! `deleteSchedule`, `previewSchedule`), and their firing ([`fire_due`], run by every
//! runtime's upkeep), written against [`Store`].
//!
//! **Once per tick across runtimes.** Any number of runtimes on one database look for
//! due schedules. Each tick is enqueued in one transaction that first moves the
//! schedule's `next_run_at` on with a compare-and-set on its old value (only one runtime
//! can see the old value and win) and then inserts the task with the idempotency key
//! `schedule:<name>:<tick>` (a second guard: a tick that was enqueued already is
//! deduplicated, never inserted twice).
//!
//! **Missed ticks.** A tick found due within [`MISFIRE_GRACE`] of its time is enqueued
//! (late), and so is each further one in that window. A tick older than that (the
//! runtimes were down, or the database was unreachable) is a missed tick: of all the
//! missed ticks only the latest is enqueued, once, and the schedule continues with its
//! first tick after now — never a burst of catch-up tasks. Ticks during a pause are not
//! made up: `resumeSchedule` continues with the first tick after now.
//!
//! Patterns are parsed by `croner` (5 fields, or 6 with seconds first; `L`, `W`, `#`,
//! names of months and weekdays, `@daily`-style nicknames), in an IANA time zone of
//! `chrono-tz` (`UTC` unless one is given); its English description is the preview's.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde_json::{json, Map, Value as Json};

use crate::db::{Conn, Trace};
use crate::store::schedules::{ScheduleRow, ScheduleWrite};
use crate::store::{in_tx, Store};
use crate::task::input::{check_keys, check_no_nul, input_object, opt_int, opt_str, MAX_PRIORITY};
use crate::task::{now, Limits, NewTask};
use crate::value::{parse_any_time, Param};
use crate::{DbcError, Result};

/// Longest schedule name: `schedule:<name>:<tick>` must fit the tasks' 191-character
/// idempotency key.
pub const MAX_NAME: usize = 128;

/// How late a tick may be found and still be enqueued as itself; an older tick is a
/// missed one (see the module header).
pub const MISFIRE_GRACE: chrono::Duration = chrono::Duration::seconds(10);

/// Schedules fired per upkeep round (the rest are due at the next round).
const PER_ROUND: usize = 100;

/// Ticks of one schedule enqueued per round at most (within [`MISFIRE_GRACE`] there are
/// at most 11 for a schedule every second).
const TICKS_PER_ROUND: usize = 20;

/// A parsed cron pattern in its time zone.
pub struct Pattern {
    cron: Cron,
    tz: Tz,
}

impl Pattern {
    /// Parses `cron` (5 fields, or 6 with seconds) and the IANA time zone `tz`:
    /// `DBC_VALIDATION` on field `cron` or `timeZone`, also for a pattern that never
    /// matches.
    pub fn parse(cron: &str, tz: &str) -> Result<Pattern> {
        let tz: Tz = tz.parse().map_err(|_| {
            DbcError::validation(
                "timeZone",
                format!("unknown time zone {tz:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""),
            )
        })?;
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| {
                DbcError::validation("cron", format!("invalid cron pattern {cron:?}: {e}"))
            })?;
        let p = Pattern { cron: parsed, tz };
        p.next_after(now()).ok_or_else(|| {
            DbcError::validation("cron", format!("cron pattern {cron:?} never matches"))
        })?;
        Ok(p)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn latest_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The pattern in English words (e.g. "At every second").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

/// A time as the operations answer it: ISO-8601 UTC with milliseconds.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_stored(t: &str) -> Option<DateTime<Utc>> {
    parse_any_time("time", &Param::Text(t.to_string())).ok()
}

/// A schedule as the operations answer it.
fn to_json(s: &ScheduleRow) -> Json {
    let description = Pattern::parse(&s.cron, &s.time_zone)
        .map(|p| p.describe())
        .ok();
    json!({
        "name": s.name,
        "cron": s.cron,
        "timeZone": s.time_zone,
        "queue": s.queue,
        "taskName": s.task_name,
        "payload": s.payload,
        "priority": s.priority,
        "maxAttempts": s.max_attempts,
        "paused": s.paused_at.is_some(),
        "pausedAt": s.paused_at,
        "nextRunAt": s.next_run_at,
        "lastRunAt": s.last_run_at,
        "createdAt": s.created_at,
        "updatedAt": s.updated_at,
        "description": description,
    })
}

/// The schedule name of an input object (required).
fn name_of(obj: &Map<String, Json>) -> Result<String> {
    opt_str(obj, "", "name", MAX_NAME)?
        .ok_or_else(|| DbcError::validation("name", "a schedule needs a name"))
}

/// `createSchedule`: creates the schedule, or replaces the one of that name (upsert):
/// its first tick is the first after now. A replaced schedule keeps its pause unless the
/// input says `paused`, and its next tick when its pattern and time zone stay the same
/// and it was and stays running (so a flow may create it on every start-up, in every
/// runtime).
pub async fn create(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    default_queue: &str,
    limits: Limits,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    let obj = input_object(
        v,
        "createSchedule takes an object {name, cron, timeZone?, queue?, taskName?, payload?, priority?, maxAttempts?, paused?}",
    )?;
    check_keys(
        obj,
        "",
        &[
            "name",
            "cron",
            "timeZone",
            "queue",
            "taskName",
            "payload",
            "priority",
            "maxAttempts",
            "paused",
        ],
    )?;
    let name = name_of(obj)?;
    let cron = opt_str(obj, "", "cron", 255)?
        .ok_or_else(|| DbcError::validation("cron", "a schedule needs a cron pattern"))?;
    let tz = opt_str(obj, "", "timeZone", 64)?.unwrap_or_else(|| "UTC".to_string());
    let pattern = Pattern::parse(&cron, &tz)?;
    let queue = opt_str(obj, "", "queue", 191)?.unwrap_or_else(|| default_queue.to_string());
    let task_name = opt_str(obj, "", "taskName", 255)?.unwrap_or_else(|| name.clone());
    let payload = obj.get("payload").filter(|p| !p.is_null());
    if let Some(p) = payload {
        let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > limits.max_payload_bytes {
            return Err(DbcError::validation(
                "payload",
                format!(
                    "payload is {size} bytes of JSON, over the limit of {}",
                    limits.max_payload_bytes
                ),
            ));
        }
        check_no_nul("payload", p)?;
    }
    let priority = opt_int(obj, "", "priority", 0, MAX_PRIORITY)?.unwrap_or(0);
    let max_attempts = opt_int(obj, "", "maxAttempts", 1, 1000)?.unwrap_or(5);
    let paused = match obj.get("paused") {
        None | Some(Json::Null) => None,
        Some(Json::Bool(b)) => Some(*b),
        Some(_) => return Err(DbcError::validation("paused", "paused must be a boolean")),
    };
    let ts = now();
    let next_run_at = pattern.next_after(ts).ok_or_else(|| {
        DbcError::validation("cron", format!("cron pattern {cron:?} never matches"))
    })?;
    in_tx(conn, async |conn: &mut Conn| {
        let old = store.schedule(conn, &name, trace.as_deref_mut()).await?;
        let paused_at = match (paused, old.as_ref().and_then(|o| o.paused_at.as_deref())) {
            (Some(false), _) | (None, None) => None,
            (Some(true), Some(at)) | (None, Some(at)) => parse_stored(at),
            (Some(true), None) => Some(ts),
        };
        // the same pattern and time zone, not paused before or after: the next tick stays
        // (replacing a schedule, e.g. from every runtime's start-up flow, loses no tick)
        let next_run_at = match &old {
            Some(o)
                if o.cron == cron
                    && o.time_zone == tz
                    && o.paused_at.is_none()
                    && paused_at.is_none() =>
            {
                parse_stored(&o.next_run_at).unwrap_or(next_run_at)
            }
            _ => next_run_at,
        };
        let write = ScheduleWrite {
            name: &name,
            cron: &cron,
            time_zone: &tz,
            queue: &queue,
            task_name: &task_name,
            payload,
            priority,
            max_attempts,
            paused_at,
            next_run_at,
        };
        store
            .upsert_schedule(conn, &write, ts, trace.as_deref_mut())
            .await?;
        let row = store
            .schedule(conn, &name, trace)
            .await?
            .ok_or_else(|| DbcError::Internal("a schedule just written is not there".into()))?;
        Ok(to_json(&row))
    })
    .await
}

/// `listSchedules`: every schedule, by name.
pub async fn list(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    trace: Option<&mut Trace>,
) -> Result<Json> {
    let obj = input_object(v, "listSchedules takes no input (or an empty object)")?;
    check_keys(obj, "", &[])?;
    let rows = store.schedules(conn, trace).await?;
    Ok(json!({ "schedules": rows.iter().map(to_json).collect::<Vec<_>>() }))
}

/// What [`change`] does to one schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Delete,
}

/// `pauseSchedule`, `resumeSchedule`, `deleteSchedule` `{name}`: `DBC_NOT_FOUND` for a
/// name with no schedule. Pause and resume answer the schedule, delete
/// `{name, deleted: true}`.
pub async fn change(
    conn: &mut Conn,
    store: &Store,
    what: Change,
    v: &Json,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    let obj = input_object(v, "takes an object {name}")?;
    check_keys(obj, "", &["name"])?;
    let name = name_of(obj)?;
    let ts = now();
    in_tx(conn, async |conn: &mut Conn| {
        let Some(old) = store.schedule(conn, &name, trace.as_deref_mut()).await? else {
            return Err(DbcError::NotFound(format!("no schedule named {name:?}")));
        };
        match what {
            Change::Delete => {
                store.delete_schedule(conn, &name, trace).await?;
                return Ok(json!({ "name": name, "deleted": true }));
            }
            Change::Pause => {
                store
                    .pause_schedule(conn, &name, ts, trace.as_deref_mut())
                    .await?;
            }
            Change::Resume => {
                // a stored pattern that no longer parses (a time zone gone from the
                // database) keeps its next tick; it shows without a description
                let next = Pattern::parse(&old.cron, &old.time_zone)
                    .ok()
                    .and_then(|p| p.next_after(ts))
                    .or_else(|| parse_stored(&old.next_run_at))
                    .unwrap_or(ts);
                store
                    .resume_schedule(conn, &name, next, ts, trace.as_deref_mut())
                    .await?;
            }
        }
        let row = store
            .schedule(conn, &name, trace)
            .await?
            .ok_or_else(|| DbcError::NotFound(format!("no schedule named {name:?}")))?;
        Ok(to_json(&row))
    })
    .await
}

/// `previewSchedule` `{cron, timeZone?, count? (1..50, default 5)}`: the pattern's
/// English description and its next ticks from now, without touching a database (the
/// editor's preview of a cron field).
pub fn preview(v: &Json) -> Result<Json> {
    let obj = input_object(
        v,
        "previewSchedule takes an object {cron, timeZone?, count?}",
    )?;
    check_keys(obj, "", &["cron", "timeZone", "count"])?;
    let cron = opt_str(obj, "", "cron", 255)?
        .ok_or_else(|| DbcError::validation("cron", "previewSchedule needs a cron pattern"))?;
    let tz = opt_str(obj, "", "timeZone", 64)?.unwrap_or_else(|| "UTC".to_string());
    let count = opt_int(obj, "", "count", 1, 50)?.unwrap_or(5) as usize;
    let p = Pattern::parse(&cron, &tz)?;
    let mut next = Vec::with_capacity(count);
    let mut t = now();
    while next.len() < count {
        match p.next_after(t) {
            Some(n) => {
                next.push(iso(n));
                t = n;
            }
            None => break,
        }
    }
    Ok(json!({ "cron": cron, "timeZone": tz, "description": p.describe(), "nextRuns": next }))
}

/// The tick of `s` to enqueue next, as of `at`, and the tick after it: its due tick, or
/// the latest tick at or before `at` when the due one is older than [`MISFIRE_GRACE`].
/// `None` when nothing is due.
pub fn next_fire(
    p: &Pattern,
    due: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if due > at {
        return None;
    }
    if due < at - MISFIRE_GRACE {
        // missed: the latest tick once, then on after now, never the ticks between
        let tick = p.latest_until(at).filter(|t| *t >= due).unwrap_or(due);
        return Some((tick, p.next_after(at)?));
    }
    let tick = due;
    let following = p.next_after(due)?;
    Some((tick, following))
}

/// The upkeep's round: enqueues every due tick of every due schedule (see the module
/// header); returns the queues that got a task, once each.
pub async fn fire_due(conn: &mut Conn, store: &Store) -> Result<Vec<String>> {
    let at = now();
    let due = store.due_schedules(conn, at, PER_ROUND).await?;
    let mut queues: Vec<String> = Vec::new();
    for s in due {
        let Ok(p) = Pattern::parse(&s.cron, &s.time_zone) else {
            tracing::warn!(
                schedule = s.name,
                "schedule skipped: its pattern or time zone no longer parses"
            );
            continue;
        };
        let Some(mut due_at) = parse_stored(&s.next_run_at) else {
            continue;
        };
        for _ in 0..TICKS_PER_ROUND {
            let Some((tick, following)) = next_fire(&p, due_at, at) else {
                break;
            };
            match fire_one(conn, store, &s, due_at, tick, following, at).await {
                Ok(true) => {}
                Ok(false) => break, // another runtime has this tick
                // a connection that broke ends the round; any other error is this
                // schedule's (rolled back, tried again next round) and must not keep the
                // schedules after it from firing
                Err(e) if e.is_connection_class() => return Err(e),
                Err(e) => {
                    tracing::warn!(schedule = s.name, "schedule tick not enqueued: {e}");
                    break;
                }
            }
            if tick > due_at {
                tracing::info!(schedule = s.name, missed_since = %iso(due_at), tick = %iso(tick), "missed ticks of a schedule: the latest enqueued once");
            }
            if !queues.contains(&s.queue) {
                queues.push(s.queue.clone());
            }
            due_at = following;
        }
    }
    Ok(queues)
}

/// One tick in one transaction: the compare-and-set, then the task; false when another
/// runtime moved the schedule on first.
async fn fire_one(
    conn: &mut Conn,
    store: &Store,
    s: &ScheduleRow,
    due_at: DateTime<Utc>,
    tick: DateTime<Utc>,
    following: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<bool> {
    let task = NewTask::parse(
        &json!({
            "queue": s.queue,
            "name": s.task_name,
            "payload": s.payload,
            "priority": s.priority,
            "maxAttempts": s.max_attempts,
            "runAt": iso(tick),
            "idempotencyKey": format!("schedule:{}:{}", s.name, iso(tick)),
        }),
        "",
        &s.queue,
        Limits {
            max_payload_bytes: usize::MAX,
        },
    )?;
    in_tx(conn, async |conn: &mut Conn| {
        if !store
            .advance_schedule(conn, &s.name, due_at, following, tick, at)
            .await?
        {
            return Ok(false);
        }
        super::service::insert_tasks(conn, store, std::slice::from_ref(&task), None).await?;
        Ok(true)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn patterns_with_and_without_seconds_in_a_time_zone() {
        let p = Pattern::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            p.next_after(t("2026-01-01T00:00:00.400Z")),
            Some(t("2026-01-01T00:00:01Z"))
        );
        let p = Pattern::parse("0 9 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            p.next_after(t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T08:00:00Z"))
        );
        assert_eq!(
            p.next_after(t("2026-07-01T00:00:00Z")),
            Some(t("2026-07-01T07:00:00Z"))
        );
        assert!(!p.describe().is_empty());
    }

    #[test]
    fn summer_time_a_skipped_tick_runs_at_the_jump_a_repeated_one_once() {
        let p = Pattern::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let ticks = |from: &str| {
            let mut at = t(from);
            (0..3)
                .map(|_| {
                    at = p.next_after(at).unwrap();
                    at
                })
                .collect::<Vec<_>>()
        };
        // 2026-03-29 has no 02:30 in Berlin: that day's tick is at 03:00 local (01:00 UTC)
        assert_eq!(
            ticks("2026-03-27T12:00:00Z"),
            [
                t("2026-03-28T01:30:00Z"),
                t("2026-03-29T01:00:00Z"),
                t("2026-03-30T00:30:00Z")
            ]
        );
        // 2026-10-25 has 02:30 twice: one tick, the first
        assert_eq!(
            ticks("2026-10-23T12:00:00Z"),
            [
                t("2026-10-24T00:30:00Z"),
                t("2026-10-25T00:30:00Z"),
                t("2026-10-26T01:30:00Z")
            ]
        );
    }

    #[test]
    fn bad_patterns_and_zones_name_their_field() {
        for (cron, tz, field) in [
            ("61 * * * *", "UTC", "cron"),
            ("every minute", "UTC", "cron"),
            ("0 0 30 2 *", "UTC", "cron"),
            ("* * * * *", "Mars/Olympus", "timeZone"),
        ] {
            match Pattern::parse(cron, tz) {
                Err(DbcError::Validation { field: f, .. }) => assert_eq!(f, field, "{cron} {tz}"),
                Err(e) => panic!("{cron}: {e:?}"),
                Ok(_) => panic!("{cron} {tz} accepted"),
            }
        }
    }

    #[test]
    fn a_late_tick_fires_itself_a_missed_one_only_the_latest_once() {
        let p = Pattern::parse("* * * * * *", "UTC").unwrap();
        let due = t("2026-01-01T00:00:05Z");
        assert_eq!(next_fire(&p, due, t("2026-01-01T00:00:04.900Z")), None);
        // found 3 s late: the tick itself, then the next one
        assert_eq!(
            next_fire(&p, due, t("2026-01-01T00:00:08.200Z")),
            Some((due, t("2026-01-01T00:00:06Z")))
        );
        // found an hour late: the latest tick before now, then the first after now
        assert_eq!(
            next_fire(&p, due, t("2026-01-01T01:00:05.500Z")),
            Some((t("2026-01-01T01:00:05Z"), t("2026-01-01T01:00:06Z")))
        );
    }
}
