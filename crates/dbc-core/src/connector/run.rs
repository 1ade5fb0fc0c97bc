//! How one operation runs, stage by stage:
//!
//! 1. [`Connector::run`]: the whole call — retries a rolled-back deadlock or
//!    serialization failure (up to [`MAX_RETRIES`] times with backoff), records the
//!    metrics, and wakes consumers of queues that got claimable work;
//! 2. `with_failover`: one attempt where the router says, once more elsewhere when the
//!    router moves it after an outage;
//! 3. `on_backend`: on one database — through its group-commit lane when the call
//!    qualifies ([`Op::joins_batch`]), else on a pooled connection (in a transaction for
//!    `executeTransaction`);
//! 4. `on_conn`: the operation's input parsed and its statements run on one connection.

use std::time::Instant;

use serde_json::Value as Json;

use super::{Answer, Connector, Failure, OpOptions, OpValue, Outcome};
use crate::db::{Conn, Trace};
use crate::op::Op;
use crate::queue::lease;
use crate::queue::queues;
use crate::queue::schedules::{self, Change};
use crate::queue::service;
use crate::queue::workflows;
use crate::route::Backend;
use crate::sqltext::bind_named;
use crate::task::{self, Claim, NewTask, StatusChange, Task, TaskStatus};
use crate::value::{Param, Params};
use crate::{DbcError, Provider, Result};

/// Most retries of an operation that failed with a deadlock or serialization failure.
pub const MAX_RETRIES: u32 = 3;

impl Connector {
    /// Runs operation `op` with its JSON payload (see the module header).
    pub async fn run(
        &self,
        op: Op,
        payload: Json,
        opts: &OpOptions,
    ) -> std::result::Result<Outcome, Failure> {
        self.check_open(op.as_str())?;
        let started = Instant::now();
        let mut trace = opts.debug.then(Trace::default);
        let mut attempt = 0;
        let (r, provider) = loop {
            // boxed: the operations' futures are large, and every caller above would
            // otherwise copy them on each move (measured as memmove in every call)
            let (r, provider) =
                Box::pin(self.with_failover(op, &payload, opts, trace.as_mut())).await;
            match &r {
                Err(e) if attempt < MAX_RETRIES && is_safe_retry(e) => {
                    attempt += 1;
                    if let Some(t) = trace.as_mut() {
                        t.retries += 1;
                    }
                    tracing::debug!(operation = op.as_str(), attempt, "retrying after {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10u64 << (2 * attempt)))
                        .await;
                }
                _ => break (r, provider),
            }
        };
        self.metrics.record(op, started.elapsed(), r.is_ok());
        if let Ok(v) = &r {
            // new claimable work: wake consumers here at once, elsewhere via NOTIFY
            let mut queues = Vec::new();
            pending_queues(v, &mut queues);
            // a resumed queue's tasks are claimable again
            if let (Op::ResumeQueue, Answer::Json(v)) = (op, v) {
                if let Some(q) = v.get("queue").and_then(Json::as_str) {
                    queues.push(q.to_string());
                }
            }
            for q in queues {
                self.waker.poke(&q);
            }
        }
        match r {
            Ok(v) => Ok(Outcome {
                provider,
                value: OpValue::Answer(v),
                debug: self.debug_info(provider, trace),
            }),
            Err(e) => Err(self.fail_on(provider, op.as_str(), e)),
        }
    }

    /// Runs an operation where the router says, once more elsewhere if it says so.
    async fn with_failover(
        &self,
        op: Op,
        payload: &Json,
        opts: &OpOptions,
        mut trace: Option<&mut Trace>,
    ) -> (Result<Answer>, Provider) {
        let _ticket = self.router.ticket().await;
        let mut b = match self.router.pick() {
            Ok(b) => b,
            Err(e) => return (Err(e), self.provider()),
        };
        let mut attempt = 0;
        loop {
            let r = self
                .on_backend(b, op, payload, opts, trace.as_deref_mut())
                .await;
            let Err(e) = &r else {
                return (r, b.provider());
            };
            match self.router.reroute(b, e, attempt).await {
                Some(next) => {
                    b = next;
                    attempt += 1;
                }
                None => return (r, b.provider()),
            }
        }
    }

    /// Runs an operation on database `b`: through its lane when the call may join a
    /// batch, else on a connection of its own.
    async fn on_backend(
        &self,
        b: &Backend,
        op: Op,
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Answer> {
        if op.joins_batch(trace.is_some()) {
            let lanes = self.lanes.of(&self.router, b);
            if let Some(r) = lanes
                .run(op.as_str(), payload, default_queue(op, opts), self.limits())
                .await
            {
                return r;
            }
        }
        if op == Op::PreviewSchedule {
            return schedules::preview(payload).map(Answer::Json); // no database
        }
        let mut conn = self.acquire(b).await?;
        if op == Op::ExecuteTransaction {
            return self
                .transaction(b, &mut conn, payload, opts, trace)
                .await
                .map(Answer::Json);
        }
        self.on_conn(b, &mut conn, op, payload, opts, trace).await
    }

    /// `executeTransaction`: checks every step's shape first, then runs the steps in one
    /// transaction; the first failing step rolls back all (`DBC_TRANSACTION`, its index).
    async fn transaction(
        &self,
        b: &Backend,
        conn: &mut Conn,
        payload: &Json,
        opts: &OpOptions,
        mut trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let steps = match payload {
            Json::Array(s) if !s.is_empty() && s.len() <= 1000 => s,
            _ => {
                return Err(DbcError::validation(
                    "payload",
                    "executeTransaction takes an array of 1 to 1000 steps {operation, payload}",
                ))
            }
        };
        // validate the shape of every step before anything runs
        let mut plan = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let name = step.get("operation").and_then(Json::as_str).unwrap_or("");
            let Some(op) = Op::parse(name).ok().filter(|o| o.in_transaction()) else {
                return Err(DbcError::Transaction {
                    index: i,
                    source: Box::new(DbcError::validation(
                        format!("payload[{i}].operation"),
                        format!("step {i}: operation {name:?} cannot run in a transaction"),
                    )),
                });
            };
            plan.push((op, step.get("payload").cloned().unwrap_or(Json::Null)));
        }
        conn.begin().await?;
        let mut results = Vec::with_capacity(plan.len());
        for (i, (op, p)) in plan.iter().enumerate() {
            let r = if *op == Op::Query {
                self.query_step(b, conn, p, trace.as_deref_mut()).await
            } else {
                self.on_conn(b, conn, *op, p, opts, trace.as_deref_mut())
                    .await
                    .and_then(Answer::into_json)
            };
            match r {
                Ok(v) => results.push(v),
                Err(e) => {
                    if conn.rollback().await.is_err() {
                        tracing::warn!("rollback failed; the connection is closed instead");
                    }
                    return Err(DbcError::Transaction {
                        index: i,
                        source: Box::new(e),
                    });
                }
            }
        }
        conn.commit().await?;
        Ok(Json::Array(results))
    }

    /// A `query` step of a transaction: `{sql, params?}` in, `{rows, rowCount,
    /// lastInsertId?}` out.
    async fn query_step(
        &self,
        b: &Backend,
        conn: &mut Conn,
        p: &Json,
        trace: Option<&mut Trace>,
    ) -> Result<Json> {
        let sql = p
            .get("sql")
            .and_then(Json::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| DbcError::validation("sql", "a query step needs {sql, params?}"))?;
        let params = match p.get("params") {
            None | Some(Json::Null) => Params::None,
            Some(Json::Array(a)) => {
                Params::Positional(a.iter().cloned().map(Param::from_json).collect())
            }
            Some(Json::Object(o)) => Params::Named(
                o.iter()
                    .map(|(k, v)| (k.clone(), Param::from_json(v.clone())))
                    .collect(),
            ),
            Some(_) => {
                return Err(DbcError::validation(
                    "params",
                    "params must be an array or an object",
                ))
            }
        };
        let (sql, params) = bind_named(b.provider(), sql, params)?;
        let out = conn.exec("query", &sql, &params, trace).await?;
        let count = if out.rows.is_empty() {
            out.rows_affected
        } else {
            out.rows.len() as u64
        };
        let rows: Vec<Json> = out
            .rows
            .into_iter()
            .map(|r| {
                Json::Object(
                    out.columns
                        .iter()
                        .cloned()
                        .zip(r.into_iter().map(|v| v.into_json()))
                        .collect(),
                )
            })
            .collect();
        let mut res = serde_json::json!({ "rows": rows, "rowCount": count });
        if let Some(id) = out.last_insert_id {
            res["lastInsertId"] = id.into_json();
        }
        Ok(res)
    }

    /// One queue operation on one connection: its input parsed, its statements run, its
    /// result as JSON.
    async fn on_conn(
        &self,
        b: &Backend,
        conn: &mut Conn,
        op: Op,
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Answer> {
        let store = &b.store;
        let queue = default_queue(op, opts);
        let id_of = |p: &Json| task::input::uuid_of("id", p.get("id").unwrap_or(&Json::Null));
        let json = |v: std::result::Result<Json, serde_json::Error>| {
            v.map(Answer::Json)
                .map_err(|e| DbcError::Internal(e.to_string()))
        };
        let one = |t: Task| Answer::Task(Box::new(t));
        match op {
            Op::InsertTask => {
                let (list, single) = match payload {
                    Json::Array(items) => (
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, t)| {
                                NewTask::parse(t, &format!("payload[{i}]"), queue, self.limits())
                            })
                            .collect::<Result<Vec<_>>>()?,
                        false,
                    ),
                    other => (vec![NewTask::parse(other, "", queue, self.limits())?], true),
                };
                let mut out = service::insert_tasks(conn, store, &list, trace).await?;
                Ok(if single {
                    one(out.remove(0))
                } else {
                    Answer::Tasks(out)
                })
            }
            Op::ClaimTasks => {
                let claim = Claim::parse(payload, queue, &self.worker_id)?;
                Ok(Answer::Tasks(
                    service::claim_tasks(conn, store, &claim, trace).await?,
                ))
            }
            Op::UpdateTaskStatus if payload.is_array() => {
                let changes = StatusChange::parse_many(payload, self.limits())?;
                Ok(Answer::Json(Json::Array(
                    crate::queue::settle::settle_many(conn, store, &changes, self.backoff(), trace)
                        .await?,
                )))
            }
            Op::UpdateTaskStatus => {
                let change = StatusChange::parse(payload)?;
                change.check_size(self.limits())?;
                service::update_task_status(conn, store, &change, self.backoff(), trace)
                    .await
                    .map(one)
            }
            Op::RequeueFailedTask => service::requeue_failed(conn, store, &id_of(payload)?, trace)
                .await
                .map(one),
            Op::GetTask => json(serde_json::to_value(
                service::get_task(conn, store, &id_of(payload)?, trace).await?,
            )),
            Op::ListTasks => json(serde_json::to_value(
                service::list_tasks(conn, store, payload, trace).await?,
            )),
            Op::DeleteTask => service::delete_task(conn, store, &id_of(payload)?, trace)
                .await
                .map(Answer::Json),
            Op::CreateWorkflow => json(serde_json::to_value(
                workflows::create_workflow(conn, store, payload, queue, self.limits(), trace)
                    .await?,
            )),
            Op::GetWorkflowProgress => json(serde_json::to_value(
                workflows::progress(conn, store, payload, trace).await?,
            )),
            Op::Heartbeat => lease::heartbeat(conn, store, &lease::Beat::parse(payload)?, trace)
                .await
                .map(one),
            Op::SnoozeTask => {
                let snooze = lease::Snooze::parse(payload, crate::task::now())?;
                lease::snooze(conn, store, &snooze, trace).await.map(one)
            }
            _ => {
                self.on_conn_admin(conn, store, op, payload, opts, trace)
                    .await
            }
        }
    }

    /// The operations on queues and schedules: their answers are JSON values.
    async fn on_conn_admin(
        &self,
        conn: &mut Conn,
        store: &crate::store::Store,
        op: Op,
        payload: &Json,
        opts: &OpOptions,
        trace: Option<&mut Trace>,
    ) -> Result<Answer> {
        let queue = default_queue(op, opts);
        let r = match op {
            Op::PauseQueue => queues::pause(conn, store, payload, node_queue(opts), trace).await,
            Op::ResumeQueue => queues::resume(conn, store, payload, node_queue(opts), trace).await,
            Op::GetQueueStats => queues::stats(conn, store, payload, trace).await,
            Op::ConfigureQueue => {
                crate::queue::dead_letter::configure(conn, store, payload, node_queue(opts), trace)
                    .await
            }
            Op::CreateSchedule => {
                schedules::create(conn, store, payload, queue, self.limits(), trace).await
            }
            Op::ListSchedules => schedules::list(conn, store, payload, trace).await,
            Op::PauseSchedule => {
                schedules::change(conn, store, Change::Pause, payload, trace).await
            }
            Op::ResumeSchedule => {
                schedules::change(conn, store, Change::Resume, payload, trace).await
            }
            Op::DeleteSchedule => {
                schedules::change(conn, store, Change::Delete, payload, trace).await
            }
            Op::PreviewSchedule => schedules::preview(payload),
            Op::Query | Op::ExecuteTransaction => Err(DbcError::validation(
                "operation",
                format!("operation {:?} cannot run here", op.as_str()),
            )),
            _ => Err(DbcError::Internal(format!(
                "operation {:?} has no handler",
                op.as_str()
            ))),
        };
        r.map(Answer::Json)
    }
}

/// The queue for input of `op` that names none: the node's, where the operation takes
/// it ([`Op::uses_default_queue`]), else `default`.
fn default_queue(op: Op, opts: &OpOptions) -> &str {
    opts.queue
        .as_deref()
        .filter(|q| op.uses_default_queue() && !q.is_empty())
        .unwrap_or("default")
}

/// The node's queue, if it has one (`pauseQueue`/`resumeQueue`: no `default` fallback).
fn node_queue(opts: &OpOptions) -> Option<&str> {
    opts.queue.as_deref().filter(|q| !q.is_empty())
}

/// Collects the queues of every pending task in an operation's result.
fn pending_queues(v: &Answer, out: &mut Vec<String>) {
    let tasks = match v {
        Answer::Task(t) => std::slice::from_ref(&**t),
        Answer::Tasks(ts) => ts.as_slice(),
        Answer::Json(j) => return pending_json(j, out),
    };
    for t in tasks.iter().filter(|t| t.status == TaskStatus::Pending) {
        add_queue(out, &t.queue);
    }
}

fn pending_json(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| pending_json(i, out)),
        Json::Object(o) => {
            if o.get("status").and_then(Json::as_str) == Some("pending") {
                if let Some(q) = o.get("queue").and_then(Json::as_str) {
                    add_queue(out, q);
                }
            }
            if let Some(t) = o.get("tasks") {
                pending_json(t, out);
            }
        }
        _ => {}
    }
}

/// Adds queue `q` to `out` once.
fn add_queue(out: &mut Vec<String>, q: &str) {
    if !out.iter().any(|x| x == q) {
        out.push(q.to_string());
    }
}

/// A rolled-back deadlock or serialization failure can simply run again.
fn is_safe_retry(e: &DbcError) -> bool {
    matches!(e.sql_state(), Some(s) if crate::error::is_retryable_state(s)) && !e.outcome_unknown()
}
