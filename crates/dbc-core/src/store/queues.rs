//! A queue's own state (paused or not, the `queues` table) and the counts its statistics
//! are made of; each dialect's text is in `sql/<dialect>/queues.sql`. What the
//! operations answer is `crate::queue::queues`'s. The claim statements read the same
//! table, so a paused queue is claimed by no runtime that shares the database.

use chrono::{DateTime, Utc};

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::task::{read_int, read_text, read_time, TaskStatus};
use crate::Result;

/// A queue's tasks with one status at one moment ([`Store::count_queue_tasks`]).
#[derive(Debug, Clone)]
pub struct QueueCount {
    /// the queue
    pub queue: String,
    /// the status (`None` for a word the queue does not know)
    pub status: Option<TaskStatus>,
    /// how many tasks have it
    pub count: i64,
    /// how many of them run later (`run_at` after the moment)
    pub later: i64,
    /// the earliest `run_at` among those that are due
    pub earliest_due: Option<String>,
    /// how many of them finished since the moment asked for
    pub finished_since: i64,
}

impl Store {
    /// Pauses `queue` at `at`; a queue paused already keeps its first time.
    pub async fn pause_queue(
        &self,
        conn: &mut Conn,
        queue: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [text(queue), self.time(at), self.time(at)];
        let sql = &self.sql().pause_queue;
        conn.exec("pause queue", sql, &params, trace).await?;
        Ok(())
    }

    /// Resumes `queue` (a row is written even for a queue never paused here).
    pub async fn resume_queue(
        &self,
        conn: &mut Conn,
        queue: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [text(queue), self.time(at)];
        let sql = &self.sql().resume_queue;
        conn.exec("resume queue", sql, &params, trace).await?;
        Ok(())
    }

    /// When `queue` was paused, if it is.
    pub async fn queue_paused_at(
        &self,
        conn: &mut Conn,
        queue: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Option<String>> {
        let sql = &self.sql().select_queue;
        let out = conn
            .exec("select queue", sql, &[text(queue)], trace)
            .await?;
        Ok(out.rows.first().and_then(|r| read_time(&r[0])))
    }

    /// Every paused queue with the time it was paused, by name.
    pub async fn paused_queues(
        &self,
        conn: &mut Conn,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<(String, String)>> {
        let sql = &self.sql().select_paused_queues;
        let out = conn.exec("paused queues", sql, &[], trace).await?;
        Ok(out
            .rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_time(&r[1])?)))
            .collect())
    }

    /// Tasks by queue and status as of `at` (of one queue, or of all), with how many
    /// finished since `since`; ordered by queue, then status.
    pub async fn count_queue_tasks(
        &self,
        conn: &mut Conn,
        queue: Option<&str>,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<QueueCount>> {
        let mut params = vec![self.time(at), self.time(at), self.time(since)];
        let filter = match queue {
            Some(q) => {
                params.push(text(q));
                format!("WHERE queue = {}", self.placeholders(4, 1))
            }
            None => String::new(),
        };
        let sql = self.sql().count_queue_tasks.replace("{{where}}", &filter);
        let out = conn.exec("count queue tasks", &sql, &params, trace).await?;
        Ok(out
            .rows
            .iter()
            .map(|r| QueueCount {
                queue: read_text(&r[0]).unwrap_or_default(),
                status: read_text(&r[1]).as_deref().and_then(TaskStatus::parse),
                count: read_int(&r[2]),
                later: read_int(&r[3]),
                earliest_due: read_time(&r[4]),
                finished_since: read_int(&r[5]),
            })
            .collect())
    }
}
