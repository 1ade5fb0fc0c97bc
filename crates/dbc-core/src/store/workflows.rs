//! The workflow statements every store runs the same way (each dialect's text is in
//! `sql/<dialect>/workflows.sql`); the workflow rules are in `crate::queue::workflows`.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::task::{read_int, read_json, read_text, read_time, TaskStatus};
use crate::Result;

/// A workflow's tasks with one status ([`Store::count_workflow_tasks`]).
#[derive(Debug, Clone)]
pub struct StatusCount {
    /// the status (`None` for a word the queue does not know)
    pub status: Option<TaskStatus>,
    /// how many tasks have it
    pub count: i64,
    /// the earliest start among them
    pub first_started_at: Option<String>,
    /// the latest finish among them
    pub last_finished_at: Option<String>,
}

impl Store {
    /// The workflow row.
    pub async fn insert_workflow(
        &self,
        conn: &mut Conn,
        id: &str,
        name: &str,
        metadata: Option<&Json>,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            text(id),
            text(name),
            self.json(metadata),
            self.time(at),
            self.time(at),
        ];
        let sql = &self.sql().insert_workflow;
        conn.exec("insert workflow", sql, &params, trace).await?;
        Ok(())
    }

    /// The workflow's name and metadata, if it exists.
    pub async fn fetch_workflow(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Option<(String, Json)>> {
        let sql = &self.sql().select_workflow;
        let out = conn
            .exec("select workflow", sql, &[text(id)], trace)
            .await?;
        Ok(out
            .rows
            .first()
            .map(|r| (read_text(&r[0]).unwrap_or_default(), read_json(&r[1]))))
    }

    /// The workflow's tasks counted by status.
    pub async fn count_workflow_tasks(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<StatusCount>> {
        let sql = &self.sql().count_workflow_tasks;
        let out = conn.exec("count tasks", sql, &[text(id)], trace).await?;
        Ok(out
            .rows
            .iter()
            .map(|r| StatusCount {
                status: read_text(&r[0]).as_deref().and_then(TaskStatus::parse),
                count: read_int(&r[1]),
                first_started_at: read_time(&r[2]),
                last_finished_at: read_time(&r[3]),
            })
            .collect())
    }
}
