//! A running task's lease and progress (`heartbeat`), snooze, and the running tasks of a
//! workflow with their progress; each dialect's text is in `sql/<dialect>/lease.sql`. The
//! rules (only the lease holder, what a snooze ends) are `crate::queue::lease`'s.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::task::{read_json, read_text, read_time};
use crate::Result;

/// A running task of a workflow with its progress ([`Store::running_of_workflow`]).
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunningTask {
    pub id: String,
    pub name: Option<String>,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<String>,
    /// the last heartbeat's progress, or null
    pub progress: Json,
}

impl Store {
    /// Pushes the lease of task `id` to `lease` and stores `progress` (locked before).
    pub async fn heartbeat_task(
        &self,
        conn: &mut Conn,
        id: &str,
        lease: DateTime<Utc>,
        progress: &Json,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let progress = (!progress.is_null()).then_some(progress);
        let params = [
            self.time(lease),
            self.json(progress),
            self.time(at),
            text(id),
        ];
        let sql = &self.sql().heartbeat_task;
        conn.exec("heartbeat task", sql, &params, trace).await?;
        Ok(())
    }

    /// Task `id` is pending again from `run_at`, with one attempt more in its budget.
    pub async fn snooze_task(
        &self,
        conn: &mut Conn,
        id: &str,
        run_at: DateTime<Utc>,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [self.time(run_at), self.time(at), text(id)];
        let sql = &self.sql().snooze_task;
        conn.exec("snooze task", sql, &params, trace).await?;
        Ok(())
    }

    /// The running tasks of workflow `id`, by id.
    pub async fn running_of_workflow(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<RunningTask>> {
        let sql = &self.sql().running_of_workflow;
        let out = conn
            .exec("running of workflow", sql, &[text(id)], trace)
            .await?;
        Ok(out
            .rows
            .iter()
            .map(|r| RunningTask {
                id: read_text(&r[0]).unwrap_or_default(),
                name: read_text(&r[1]),
                worker_id: read_text(&r[2]),
                lease_expires_at: read_time(&r[3]),
                progress: read_json(&r[4]),
            })
            .collect())
    }
}
