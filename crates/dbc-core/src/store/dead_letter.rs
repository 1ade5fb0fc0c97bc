//! Dead-letter queues' statements (`sql/<dialect>/dead_letter.sql`): a queue's target,
//! which dead tasks go there, and the mark on the tasks dead-lettering makes. What
//! dead-lettering does is `crate::queue::dead_letter`'s.

use chrono::{DateTime, Utc};

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::task::read_text;
use crate::value::Param;
use crate::Result;

impl Store {
    /// Sets (or with `None` clears) `queue`'s dead-letter queue.
    pub async fn configure_queue(
        &self,
        conn: &mut Conn,
        queue: &str,
        dead_letter_queue: Option<&str>,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            text(queue),
            self.time(at),
            dead_letter_queue.map_or(Param::Null, text),
        ];
        let sql = &self.sql().configure_queue;
        conn.exec("configure queue", sql, &params, trace).await?;
        Ok(())
    }

    /// Every queue that has a dead-letter queue, with it, by name.
    pub async fn dead_letter_queues(
        &self,
        conn: &mut Conn,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<(String, String)>> {
        let sql = &self.sql().select_dead_letter_queues;
        let out = conn.exec("dead-letter queues", sql, &[], trace).await?;
        Ok(out
            .rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_text(&r[1])?)))
            .collect())
    }

    /// `(task, dead-letter queue)` for the tasks among `ids` (at most 1,000) whose queue
    /// has a dead-letter queue and that were not made by dead-lettering themselves.
    pub async fn dead_letter_targets(
        &self,
        conn: &mut Conn,
        ids: &[String],
        trace: Option<&mut Trace>,
    ) -> Result<Vec<(String, String)>> {
        let sql = self
            .sql()
            .dead_letter_targets
            .replace("{{ids}}", &self.placeholders(1, ids.len()));
        let params: Vec<Param> = ids.iter().map(|i| text(i)).collect();
        let out = conn
            .exec("dead-letter targets", &sql, &params, trace)
            .await?;
        Ok(out
            .rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_text(&r[1])?)))
            .collect())
    }

    /// Marks task `id` as the dead-letter copy of task `of`.
    pub async fn mark_dead_letter(
        &self,
        conn: &mut Conn,
        id: &str,
        of: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let sql = &self.sql().mark_dead_letter;
        conn.exec("mark dead letter", sql, &[text(of), text(id)], trace)
            .await?;
        Ok(())
    }
}
