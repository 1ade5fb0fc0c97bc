//! Schedules' rows (the `schedules` table) and the compare-and-set of a tick; each
//! dialect's text is in `sql/<dialect>/schedules.sql`. What the operations answer, and
//! when a schedule fires, is `crate::queue::schedules`'s.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::task::{read_int, read_json, read_text, read_time};
use crate::value::{Param, Value};
use crate::Result;

/// One schedule as stored (times as ISO-8601 strings, as read back).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub queue: String,
    pub task_name: String,
    pub payload: Option<Json>,
    pub priority: i64,
    pub max_attempts: i64,
    pub paused_at: Option<String>,
    pub next_run_at: String,
    pub last_run_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl ScheduleRow {
    /// A row of the `select_*` statements (their column order).
    fn from_row(r: &[Value]) -> ScheduleRow {
        ScheduleRow {
            name: read_text(&r[0]).unwrap_or_default(),
            cron: read_text(&r[1]).unwrap_or_default(),
            time_zone: read_text(&r[2]).unwrap_or_default(),
            queue: read_text(&r[3]).unwrap_or_default(),
            task_name: read_text(&r[4]).unwrap_or_default(),
            payload: Some(read_json(&r[5])).filter(|j| !j.is_null()),
            priority: read_int(&r[6]),
            max_attempts: read_int(&r[7]),
            paused_at: read_time(&r[8]),
            next_run_at: read_time(&r[9]).unwrap_or_default(),
            last_run_at: read_time(&r[10]),
            created_at: read_time(&r[11]).unwrap_or_default(),
            updated_at: read_time(&r[12]).unwrap_or_default(),
        }
    }
}

/// What `createSchedule` writes: a schedule by name, its first tick already computed.
#[derive(Debug, Clone)]
pub struct ScheduleWrite<'a> {
    pub name: &'a str,
    pub cron: &'a str,
    pub time_zone: &'a str,
    pub queue: &'a str,
    pub task_name: &'a str,
    pub payload: Option<&'a Json>,
    pub priority: i64,
    pub max_attempts: i64,
    pub paused_at: Option<DateTime<Utc>>,
    pub next_run_at: DateTime<Utc>,
}

impl Store {
    /// Creates the schedule, or replaces the one of that name (keeping its `created_at`
    /// and `last_run_at`).
    pub async fn upsert_schedule(
        &self,
        conn: &mut Conn,
        s: &ScheduleWrite<'_>,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            text(s.name),
            text(s.cron),
            text(s.time_zone),
            text(s.queue),
            text(s.task_name),
            self.json(s.payload),
            Param::Int(s.priority),
            Param::Int(s.max_attempts),
            s.paused_at.map_or(Param::Null, |t| self.time(t)),
            self.time(s.next_run_at),
            self.time(at),
            self.time(at),
        ];
        let sql = &self.sql().upsert_schedule;
        conn.exec("upsert schedule", sql, &params, trace).await?;
        Ok(())
    }

    /// The schedule called `name`, if there is one.
    pub async fn schedule(
        &self,
        conn: &mut Conn,
        name: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Option<ScheduleRow>> {
        let sql = &self.sql().select_schedule;
        let out = conn
            .exec("select schedule", sql, &[text(name)], trace)
            .await?;
        Ok(out.rows.first().map(|r| ScheduleRow::from_row(r)))
    }

    /// Every schedule, by name.
    pub async fn schedules(
        &self,
        conn: &mut Conn,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<ScheduleRow>> {
        let sql = &self.sql().list_schedules;
        let out = conn.exec("list schedules", sql, &[], trace).await?;
        Ok(out.rows.iter().map(|r| ScheduleRow::from_row(r)).collect())
    }

    /// Pauses the schedule (a paused one keeps its first `paused_at`); how many rows
    /// matched (0: no such schedule).
    pub async fn pause_schedule(
        &self,
        conn: &mut Conn,
        name: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<u64> {
        let params = [self.time(at), self.time(at), text(name)];
        let sql = &self.sql().pause_schedule;
        Ok(conn
            .exec("pause schedule", sql, &params, trace)
            .await?
            .rows_affected)
    }

    /// Resumes the schedule: a paused one continues at `next`, one not paused keeps its
    /// next tick; how many rows matched (0: no such schedule).
    pub async fn resume_schedule(
        &self,
        conn: &mut Conn,
        name: &str,
        next: DateTime<Utc>,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<u64> {
        let params = [self.time(next), self.time(at), text(name)];
        let sql = &self.sql().resume_schedule;
        Ok(conn
            .exec("resume schedule", sql, &params, trace)
            .await?
            .rows_affected)
    }

    /// Deletes the schedule; how many rows went (0: no such schedule).
    pub async fn delete_schedule(
        &self,
        conn: &mut Conn,
        name: &str,
        trace: Option<&mut Trace>,
    ) -> Result<u64> {
        let sql = &self.sql().delete_schedule;
        Ok(conn
            .exec("delete schedule", sql, &[text(name)], trace)
            .await?
            .rows_affected)
    }

    /// Up to `limit` schedules not paused whose next tick is at or before `at`, the
    /// longest due first.
    pub async fn due_schedules(
        &self,
        conn: &mut Conn,
        at: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduleRow>> {
        let sql = self
            .sql()
            .select_due_schedules
            .replace("{{limit}}", &limit.to_string());
        let out = conn
            .exec("due schedules", &sql, &[self.time(at)], None)
            .await?;
        Ok(out.rows.iter().map(|r| ScheduleRow::from_row(r)).collect())
    }

    /// The compare-and-set of one tick: moves the schedule's next tick from `old_next`
    /// to `new_next` and records `tick` as its last run, only if its next tick is still
    /// `old_next` and it is not paused. True for the one caller that moved it.
    pub async fn advance_schedule(
        &self,
        conn: &mut Conn,
        name: &str,
        old_next: DateTime<Utc>,
        new_next: DateTime<Utc>,
        tick: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let params = [
            self.time(new_next),
            self.time(tick),
            self.time(at),
            text(name),
            self.time(old_next),
        ];
        let sql = &self.sql().advance_schedule;
        let out = conn.exec("advance schedule", sql, &params, None).await?;
        Ok(out.rows_affected == 1)
    }
}
