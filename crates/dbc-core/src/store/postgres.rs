//! The PostgreSQL store: its statements (`sql/postgres/*.sql`) and what it does
//! differently — `$n` placeholders, times as ISO-8601 text cast to `timestamptz`, JSON as
//! `jsonb` parameters, inserts and batch completions that carry all their rows in one
//! JSON parameter (`jsonb_to_recordset`), and a claim that is one statement
//! (`FOR UPDATE SKIP LOCKED` + `UPDATE … RETURNING`).

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::statements::{Sections, Statements};
use crate::store::Completion;
use crate::task::input::{Claim, NewTask};
use crate::task::Task;
use crate::value::{iso_utc, Param};
use crate::Result;

/// The PostgreSQL statements for one table prefix.
pub struct PostgresStore {
    pub(crate) sql: Statements,
    claim_tasks: String,
    complete_tasks: String,
}

/// The n-th placeholder (1-based).
pub(crate) fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// A time as a parameter: ISO-8601 UTC text (the statements cast it where needed).
pub(crate) fn time(t: DateTime<Utc>) -> Param {
    Param::Text(iso_utc(t))
}

/// JSON as a parameter: bound as `jsonb`.
pub(crate) fn json(v: Option<&Json>) -> Param {
    v.map_or(Param::Null, |j| Param::Json(j.clone()))
}

impl PostgresStore {
    /// Loads the statements for `prefix`.
    pub fn new(prefix: &str) -> Result<PostgresStore> {
        let mut s = Sections::parse(
            "postgres",
            &[
                include_str!("sql/postgres/tasks.sql"),
                include_str!("sql/postgres/status.sql"),
                include_str!("sql/postgres/claim.sql"),
                include_str!("sql/postgres/maintenance.sql"),
                include_str!("sql/postgres/workflows.sql"),
                include_str!("sql/postgres/queues.sql"),
                include_str!("sql/postgres/schedules.sql"),
                include_str!("sql/postgres/lease.sql"),
                include_str!("sql/postgres/transfer.sql"),
                include_str!("sql/postgres/unique.sql"),
                include_str!("sql/postgres/dead_letter.sql"),
            ],
            prefix,
        );
        Ok(PostgresStore {
            sql: Statements::take(&mut s)?,
            claim_tasks: s.take("claim_tasks")?,
            complete_tasks: s.take("complete_tasks")?,
        })
    }

    /// Inserts all `tasks` with one statement; returns how many were inserted.
    pub(crate) async fn insert_tasks(
        &self,
        conn: &mut Conn,
        tasks: &[NewTask],
        ts: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<u64> {
        let rows: Vec<Json> = tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id, "queue": t.queue, "name": t.name, "payload": t.payload,
                    "priority": t.priority, "run_at": iso_utc(t.run_at), "max_attempts": t.max_attempts,
                    "workflow_id": t.workflow_id, "idempotency_key": t.idempotency_key,
                })
            })
            .collect();
        let sql = if tasks.iter().any(|t| t.idempotency_key.is_some()) {
            &self.sql.insert_keyed_tasks
        } else {
            &self.sql.insert_tasks
        };
        let params = [Param::Json(Json::Array(rows)), time(ts)];
        Ok(conn
            .exec("insert tasks", sql, &params, trace)
            .await?
            .rows_affected)
    }

    /// Claims with one statement.
    pub(crate) async fn claim(
        &self,
        conn: &mut Conn,
        c: &Claim,
        ts: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        let params = [
            Param::Text(c.queue.clone()),
            time(ts),
            Param::Int(c.limit),
            Param::Text(c.worker_id.clone()),
            time(lease_until),
        ];
        let out = conn
            .exec("claim tasks", &self.claim_tasks, &params, trace)
            .await?;
        Task::from_rows(out.rows)
    }

    /// Completes many running tasks with one statement; returns the tasks it took.
    pub(crate) async fn complete_many(
        &self,
        conn: &mut Conn,
        items: &[Completion<'_>],
        ts: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        let rows: Vec<Json> = items
            .iter()
            .map(|c| serde_json::json!({ "id": c.id, "worker": c.worker_id, "result": c.result }))
            .collect();
        let params = [Param::Json(Json::Array(rows)), time(ts)];
        let out = conn
            .exec("complete tasks", &self.complete_tasks, &params, trace)
            .await?;
        Task::from_rows(out.rows)
    }
}
