//! The statement groups every store runs the same way: the same parameters in the same
//! order, each database with its own text from `sql/<dialect>/*.sql`. Each method is one
//! group (usually one statement) with typed parameters; the queue's rules — which of
//! them run, in which order, inside which transaction — are in `crate::queue::service`.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::store::Store;
use crate::task::input::{NewTask, TaskFilter};
use crate::task::TaskStatus;
use crate::task::{read_int, read_text, read_time, ErrorLog, Execution, Task};
use crate::value::Param;
use crate::{DbcError, Result};

/// One attempt of one task at one moment: the subject of most status statements.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// the task
    pub id: &'a str,
    /// the attempt's number (1-based)
    pub attempt: i64,
    /// when the change happens
    pub at: DateTime<Utc>,
}

pub(crate) fn text(s: &str) -> Param {
    Param::Text(s.to_string())
}

/// One error-log row: attempt `attempt` of a task failed, as `operation` saw it.
#[derive(Debug, Clone)]
pub struct ErrorRow<'a> {
    pub attempt: Attempt<'a>,
    /// who logged it: the operation (`updateTaskStatus`) or the connector's own round
    pub operation: &'a str,
    pub code: &'a str,
    pub message: String,
}

/// Error-log rows per statement: 8 parameters each, well under every database's limit.
const ERROR_ROWS_PER_STATEMENT: usize = 500;

fn texts(list: &[String]) -> Vec<Param> {
    list.iter().map(|s| text(s)).collect()
}

fn opt_text(s: Option<&str>) -> Param {
    s.map_or(Param::Null, text)
}

impl Store {
    /// `statement` with `{{ids}}` as `count` placeholders numbered from `from`.
    fn with_ids(&self, statement: &str, from: usize, count: usize) -> String {
        statement.replace("{{ids}}", &self.placeholders(from, count))
    }

    // ---- inserting ------------------------------------------------------------------

    /// One row per dependency of `tasks` (each task's `dependsOn`).
    pub async fn insert_dependencies(
        &self,
        conn: &mut Conn,
        tasks: &[&NewTask],
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let mut rows = Vec::new();
        let mut params = Vec::new();
        for t in tasks {
            for dep in &t.depends_on {
                rows.push(format!("({})", self.placeholders(params.len() + 1, 2)));
                params.push(text(&t.id));
                params.push(text(dep));
            }
        }
        let sql = self
            .sql()
            .insert_dependencies
            .replace("{{rows}}", &rows.join(", "));
        conn.exec("insert dependencies", &sql, &params, trace)
            .await?;
        Ok(())
    }

    /// How many dependencies of the tasks `ids` name a task of another workflow.
    pub async fn count_foreign_dependencies(
        &self,
        conn: &mut Conn,
        ids: &[String],
        trace: Option<&mut Trace>,
    ) -> Result<i64> {
        let sql = self.with_ids(&self.sql().check_dependencies, 1, ids.len());
        let out = conn
            .exec("check dependencies", &sql, &texts(ids), trace)
            .await?;
        Ok(out.rows.first().map(|r| read_int(&r[0])).unwrap_or(0))
    }

    /// Sets each task's count of dependencies that have not completed yet.
    pub async fn count_dependencies(
        &self,
        conn: &mut Conn,
        ids: &[String],
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let sql = self.with_ids(&self.sql().count_dependencies, 1, ids.len());
        conn.exec("count dependencies", &sql, &texts(ids), trace)
            .await?;
        Ok(())
    }

    /// The tasks holding any of the idempotency `keys`.
    pub async fn find_duplicates(
        &self,
        conn: &mut Conn,
        keys: &[String],
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        let sql = self.with_ids(&self.sql().find_duplicates, 1, keys.len());
        let out = conn
            .exec("find duplicates", &sql, &texts(keys), trace)
            .await?;
        Task::from_rows(out.rows)
    }

    // ---- reading --------------------------------------------------------------------

    /// The task `id`, locked until the transaction ends when `lock` (where the database
    /// has row locks).
    pub async fn fetch_task(
        &self,
        conn: &mut Conn,
        id: &str,
        lock: bool,
        trace: Option<&mut Trace>,
    ) -> Result<Task> {
        let sql = if lock {
            &self.sql().select_task_for_update
        } else {
            &self.sql().select_task
        };
        let row = self.one_task_row(conn, sql, id, trace).await?;
        Task::from_row(row)
    }

    /// The task `id` and the start of the attempt it is running (if any).
    pub async fn fetch_task_with_attempt(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<(Task, Option<String>)> {
        let sql = &self.sql().select_task_with_attempt;
        let row = self.one_task_row(conn, sql, id, trace).await?;
        let started = row.last().and_then(read_time);
        Ok((Task::from_row(row)?, started))
    }

    async fn one_task_row(
        &self,
        conn: &mut Conn,
        sql: &str,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<crate::value::Value>> {
        let out = conn.exec("select task", sql, &[text(id)], trace).await?;
        out.rows
            .into_iter()
            .next()
            .ok_or_else(|| DbcError::NotFound(format!("task {id} does not exist")))
    }

    /// The ids the task `id` depends on.
    pub async fn dependencies_of(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<String>> {
        let sql = &self.sql().select_dependencies;
        let out = conn
            .exec("select dependencies", sql, &[text(id)], trace)
            .await?;
        Ok(out.rows.iter().filter_map(|r| read_text(&r[0])).collect())
    }

    /// The ended attempts of the task `id`.
    pub async fn history_of(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Execution>> {
        let sql = &self.sql().select_history;
        let out = conn.exec("select history", sql, &[text(id)], trace).await?;
        Ok(out.rows.iter().map(|r| Execution::from_row(r)).collect())
    }

    /// The error log of the task `id`.
    pub async fn errors_of(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<ErrorLog>> {
        let sql = &self.sql().select_errors;
        let out = conn.exec("select errors", sql, &[text(id)], trace).await?;
        Ok(out.rows.iter().map(|r| ErrorLog::from_row(r)).collect())
    }

    /// Up to `limit` tasks matching `filter`, in id order.
    pub async fn list_tasks(
        &self,
        conn: &mut Conn,
        filter: &TaskFilter,
        limit: i64,
        trace: Option<&mut Trace>,
    ) -> Result<Vec<Task>> {
        let mut wheres = Vec::new();
        let mut params = Vec::new();
        let conditions = [
            ("queue", filter.queue.as_deref()),
            ("status", filter.status.map(TaskStatus::as_str)),
            ("workflow_id", filter.workflow_id.as_deref()),
            ("name", filter.name.as_deref()),
        ];
        for (column, value) in conditions {
            if let Some(v) = value {
                params.push(text(v));
                wheres.push(format!("{column} = {}", self.placeholders(params.len(), 1)));
            }
        }
        if let Some(after) = &filter.after {
            params.push(text(after));
            wheres.push(format!("id > {}", self.placeholders(params.len(), 1)));
        }
        params.push(Param::Int(limit));
        let where_ = if wheres.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wheres.join(" AND "))
        };
        let sql = self
            .sql()
            .list_tasks
            .replace("{{where}}", &where_)
            .replace("{{limit}}", &self.placeholders(params.len(), 1));
        let out = conn.exec("list tasks", &sql, &params, trace).await?;
        Task::from_rows(out.rows)
    }

    /// Deletes the task `id` (its history, errors and dependency rows go with it).
    pub async fn delete_task(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let sql = &self.sql().delete_task;
        conn.exec("delete task", sql, &[text(id)], trace).await?;
        Ok(())
    }

    // ---- status changes -------------------------------------------------------------

    /// `pending → running` by hand: attempt `a` starts, leased to `worker` until
    /// `lease_until`.
    pub async fn start_task(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        worker: Option<&str>,
        lease_until: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let ts = self.time(a.at);
        let params = [
            Param::Int(a.attempt),
            opt_text(worker),
            self.time(lease_until),
            ts.clone(),
            ts.clone(),
            ts,
            text(a.id),
        ];
        let sql = &self.sql().start_task;
        conn.exec("start task", sql, &params, trace).await?;
        Ok(())
    }

    /// The history row of attempt `a`, which started and ended at once with `outcome`.
    pub async fn record_attempt(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        worker: Option<&str>,
        outcome: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            text(a.id),
            Param::Int(a.attempt),
            opt_text(worker),
            text(outcome),
            self.time(a.at),
            self.time(a.at),
            Param::Int(0),
        ];
        let sql = &self.sql().record_attempt;
        conn.exec("record attempt", sql, &params, trace).await?;
        Ok(())
    }

    /// The history row of the attempt the task row holds, ending at `at` with `outcome`.
    pub async fn record_running_attempt(
        &self,
        conn: &mut Conn,
        id: &str,
        outcome: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [text(outcome), self.time(at), self.time(at), text(id)];
        let sql = &self.sql().record_running_attempt;
        conn.exec("record attempt", sql, &params, trace).await?;
        Ok(())
    }

    /// `→ completed` with `result`, after attempt `a`.
    pub async fn complete_task(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        result: Option<&Json>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let ts = self.time(a.at);
        let params = [
            Param::Int(a.attempt),
            self.json(result),
            ts.clone(),
            ts.clone(),
            ts,
            text(a.id),
        ];
        let sql = &self.sql().complete_task;
        conn.exec("complete task", sql, &params, trace).await?;
        Ok(())
    }

    /// The tasks waiting for `id` wait for one dependency less.
    pub async fn release_dependents(
        &self,
        conn: &mut Conn,
        id: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let sql = &self.sql().release_dependents;
        conn.exec("release dependents", sql, &[text(id)], trace)
            .await?;
        Ok(())
    }

    /// An error-log row for attempt `a`, reported by `updateTaskStatus`.
    pub async fn record_error(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        code: &str,
        message: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            text(&crate::task::new_id()),
            text(a.id),
            Param::Int(a.attempt),
            text("updateTaskStatus"),
            text(code),
            text(message),
            text(self.provider().as_str()),
            self.time(a.at),
        ];
        let sql = &self.sql().record_error;
        conn.exec("log error", sql, &params, trace).await?;
        Ok(())
    }

    /// Many error-log rows, in one statement per 500.
    pub async fn record_errors(
        &self,
        conn: &mut Conn,
        errors: &[ErrorRow<'_>],
        mut trace: Option<&mut Trace>,
    ) -> Result<()> {
        for chunk in errors.chunks(ERROR_ROWS_PER_STATEMENT) {
            let mut rows = Vec::with_capacity(chunk.len());
            let mut params = Vec::with_capacity(chunk.len() * 8);
            for e in chunk {
                rows.push(format!("({})", self.placeholders(params.len() + 1, 8)));
                params.extend([
                    text(&crate::task::new_id()),
                    text(e.attempt.id),
                    Param::Int(e.attempt.attempt),
                    text(e.operation),
                    text(e.code),
                    text(&e.message),
                    text(self.provider().as_str()),
                    self.time(e.attempt.at),
                ]);
            }
            let sql = self
                .sql()
                .record_errors
                .replace("{{rows}}", &rows.join(", "));
            conn.exec("log errors", &sql, &params, trace.as_deref_mut())
                .await?;
        }
        Ok(())
    }

    /// `→ pending` after failed attempt `a`, to run again at `run_at`.
    pub async fn retry_task(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        run_at: DateTime<Utc>,
        message: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [
            Param::Int(a.attempt),
            self.time(run_at),
            text(message),
            self.time(a.at),
            text(a.id),
        ];
        let sql = &self.sql().retry_task;
        conn.exec("retry task", sql, &params, trace).await?;
        Ok(())
    }

    /// `→ failed` after attempt `a`, its last.
    pub async fn fail_task(
        &self,
        conn: &mut Conn,
        a: Attempt<'_>,
        message: &str,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let ts = self.time(a.at);
        let params = [
            Param::Int(a.attempt),
            text(message),
            ts.clone(),
            ts,
            text(a.id),
        ];
        let sql = &self.sql().fail_task;
        conn.exec("fail task", sql, &params, trace).await?;
        Ok(())
    }

    /// `→ cancelled` at `at`.
    pub async fn cancel_task(
        &self,
        conn: &mut Conn,
        id: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [self.time(at), self.time(at), text(id)];
        let sql = &self.sql().cancel_task;
        conn.exec("cancel task", sql, &params, trace).await?;
        Ok(())
    }

    /// `running → pending`: the worker gives the task back.
    pub async fn give_back_task(
        &self,
        conn: &mut Conn,
        id: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [self.time(at), text(id)];
        let sql = &self.sql().give_back_task;
        conn.exec("release task", sql, &params, trace).await?;
        Ok(())
    }

    /// The pending tasks that depend on any of `ids`.
    pub async fn find_dependents(
        &self,
        conn: &mut Conn,
        ids: &[String],
        trace: Option<&mut Trace>,
    ) -> Result<Vec<String>> {
        let sql = self.with_ids(&self.sql().find_dependents, 1, ids.len());
        let out = conn
            .exec("find dependents", &sql, &texts(ids), trace)
            .await?;
        Ok(out.rows.iter().filter_map(|r| read_text(&r[0])).collect())
    }

    /// `pending → cancelled` for the tasks `ids`, because a task they depend on will
    /// never complete.
    pub async fn cancel_dependents(
        &self,
        conn: &mut Conn,
        ids: &[String],
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let mut params = vec![self.time(at), self.time(at)];
        params.extend(texts(ids));
        let sql = self.with_ids(&self.sql().cancel_dependents, 3, ids.len());
        conn.exec("cancel dependents", &sql, &params, trace).await?;
        Ok(())
    }

    /// `failed → pending` now, with a fresh budget of attempts.
    pub async fn requeue_task(
        &self,
        conn: &mut Conn,
        id: &str,
        at: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<()> {
        let params = [self.time(at), self.time(at), text(id)];
        let sql = &self.sql().requeue_task;
        conn.exec("requeue task", sql, &params, trace).await?;
        Ok(())
    }
}
