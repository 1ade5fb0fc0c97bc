//! Workflows: a named set of tasks created atomically, with dependencies between them,
//! and their progress derived from the tasks' statuses (written against [`Store`]).

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::db::{Conn, Trace};
use crate::queue::service;
use crate::store::lease::RunningTask;
use crate::store::{in_tx, Store};
use crate::task::input::MAX_WORKFLOW_TASKS;
use crate::task::input::{check_keys, check_no_nul, opt_str, uuid_of, Limits, NewTask};
use crate::task::status::TaskStatus;
use crate::task::Task;
use crate::task::{new_id, now};
use crate::value::iso_utc;
use crate::{DbcError, Result};

/// A created workflow (`createWorkflow`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub metadata: Json,
    pub created_at: String,
    /// the tasks, in input order; `key` is echoed where the input gave one
    pub tasks: Vec<WorkflowTask>,
}

/// A task of a created workflow.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowTask {
    /// the caller's local name for the task, if given
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(flatten)]
    pub task: Task,
}

/// `createWorkflow {name, tasks, metadata?}`: the workflow row and all its tasks in one
/// transaction. A task's `dependsOn` may name earlier tasks of the same call by their
/// `key` or index, or existing tasks of this workflow by id; only earlier tasks can be
/// named, so a workflow can never contain a dependency cycle.
pub async fn create_workflow(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    queue: &str,
    limits: Limits,
    mut trace: Option<&mut Trace>,
) -> Result<Workflow> {
    let obj = v.as_object().ok_or_else(|| {
        DbcError::validation(
            "payload",
            "createWorkflow takes an object {name, tasks, metadata?}",
        )
    })?;
    check_keys(obj, "", &["name", "tasks", "metadata"])?;
    let name = opt_str(obj, "", "name", 255)?
        .ok_or_else(|| DbcError::validation("name", "a workflow needs a name"))?;
    let items = match obj.get("tasks") {
        Some(Json::Array(a)) if !a.is_empty() && a.len() <= MAX_WORKFLOW_TASKS => a,
        _ => {
            return Err(DbcError::validation(
                "tasks",
                format!("tasks must be an array of 1 to {MAX_WORKFLOW_TASKS} tasks"),
            ))
        }
    };
    let metadata = obj.get("metadata").cloned().filter(|m| !m.is_null());
    if let Some(m) = &metadata {
        let size = serde_json::to_vec(m).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > limits.max_payload_bytes {
            return Err(DbcError::validation(
                "metadata",
                format!(
                    "metadata is {size} bytes of JSON, over the limit of {}",
                    limits.max_payload_bytes
                ),
            ));
        }
        check_no_nul("metadata", m)?;
    }
    let workflow_id = new_id();
    let ids: Vec<String> = items.iter().map(|_| new_id()).collect();
    let mut keys: Vec<Option<String>> = Vec::with_capacity(items.len());
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("tasks[{i}]");
        let mut t: Map<String, Json> = item
            .as_object()
            .cloned()
            .ok_or_else(|| DbcError::validation(at.clone(), "a task must be an object"))?;
        let key = match t.remove("key") {
            None | Some(Json::Null) => None,
            Some(Json::String(k)) if !k.is_empty() && k.len() <= 191 => Some(k),
            Some(_) => {
                return Err(DbcError::validation(
                    format!("{at}.key"),
                    "key must be a short non-empty string",
                ))
            }
        };
        if let Some(deps) = t.get("dependsOn").and_then(Json::as_array) {
            let mut resolved = Vec::with_capacity(deps.len());
            for (j, dep) in deps.iter().enumerate() {
                let field = format!("{at}.dependsOn[{j}]");
                let target = match dep {
                    Json::Number(n) => n
                        .as_u64()
                        .map(|n| n as usize)
                        .filter(|n| *n < i)
                        .map(|n| ids[n].clone()),
                    Json::String(s) => {
                        match keys.iter().position(|k| k.as_deref() == Some(s.as_str())) {
                            Some(pos) => Some(ids[pos].clone()),
                            None => uuid::Uuid::parse_str(s).ok().map(|u| u.to_string()),
                        }
                    }
                    _ => None,
                };
                match target {
                    Some(id) => resolved.push(Json::String(id)),
                    None => {
                        return Err(DbcError::validation(
                            field,
                            "dependsOn must name an earlier task of this workflow (by key or index) or a task id",
                        ))
                    }
                }
            }
            t.insert("dependsOn".into(), Json::Array(resolved));
        }
        t.insert("workflowId".into(), Json::String(workflow_id.clone()));
        let mut task = NewTask::parse(&Json::Object(t), &at, queue, limits)?;
        task.set_id(ids[i].clone());
        parsed.push(task);
        keys.push(key);
    }
    let ts = now();
    let stored = in_tx(conn, async |conn: &mut Conn| {
        store
            .insert_workflow(
                conn,
                &workflow_id,
                &name,
                metadata.as_ref(),
                ts,
                trace.as_deref_mut(),
            )
            .await?;
        service::insert_tasks(conn, store, &parsed, trace).await
    })
    .await?;
    Ok(Workflow {
        id: workflow_id,
        name,
        metadata: metadata.unwrap_or(Json::Null),
        created_at: iso_utc(ts),
        tasks: stored
            .into_iter()
            .zip(keys)
            .map(|(task, key)| WorkflowTask { key, task })
            .collect(),
    })
}

/// `getWorkflowProgress`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub workflow_id: String,
    pub name: String,
    /// derived: `pending`, `running`, `completed`, `failed` or `cancelled`
    pub status: TaskStatus,
    pub total: i64,
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// share of tasks that have finished (completed, failed or cancelled), 0–100
    pub percent: f64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub metadata: Json,
    /// its running tasks with their workers' progress (heartbeat), by id
    pub in_progress: Vec<RunningTask>,
}

/// Counts a workflow's tasks by status and derives the workflow's status:
/// `running` once any task started and some are unfinished; `failed` when all finished
/// and any failed; `cancelled` when all were cancelled; `completed` when all finished
/// otherwise; `pending` while nothing has started.
pub async fn progress(
    conn: &mut Conn,
    store: &Store,
    v: &Json,
    mut trace: Option<&mut Trace>,
) -> Result<Progress> {
    let id = uuid_of("workflowId", v.get("workflowId").unwrap_or(&Json::Null))?;
    let (name, metadata) = store
        .fetch_workflow(conn, &id, trace.as_deref_mut())
        .await?
        .ok_or_else(|| DbcError::NotFound(format!("workflow {id} does not exist")))?;
    let counts = store
        .count_workflow_tasks(conn, &id, trace.as_deref_mut())
        .await?;
    let mut p = Progress {
        workflow_id: id,
        name,
        status: TaskStatus::Pending,
        total: 0,
        pending: 0,
        running: 0,
        completed: 0,
        failed: 0,
        cancelled: 0,
        percent: 0.0,
        started_at: None,
        finished_at: None,
        metadata,
        in_progress: Vec::new(),
    };
    for c in &counts {
        let n = c.count;
        match c.status {
            Some(TaskStatus::Pending) => p.pending = n,
            Some(TaskStatus::Running) => p.running = n,
            Some(TaskStatus::Completed) => p.completed = n,
            Some(TaskStatus::Failed) => p.failed = n,
            Some(TaskStatus::Cancelled) => p.cancelled = n,
            None => {}
        }
        p.total += n;
        if let Some(s) = &c.first_started_at {
            if p.started_at.as_ref().is_none_or(|cur| s < cur) {
                p.started_at = Some(s.clone());
            }
        }
        if let Some(f) = &c.last_finished_at {
            if p.finished_at.as_ref().is_none_or(|cur| f > cur) {
                p.finished_at = Some(f.clone());
            }
        }
    }
    let finished = p.completed + p.failed + p.cancelled;
    p.percent = if p.total == 0 {
        0.0
    } else {
        (finished as f64 * 1000.0 / p.total as f64).round() / 10.0
    };
    let unfinished = p.pending + p.running;
    p.status = if unfinished > 0 {
        if p.running > 0 || finished > 0 || p.started_at.is_some() {
            TaskStatus::Running
        } else {
            TaskStatus::Pending
        }
    } else if p.failed > 0 {
        TaskStatus::Failed
    } else if p.total > 0 && p.cancelled == p.total {
        TaskStatus::Cancelled
    } else {
        TaskStatus::Completed
    };
    if unfinished > 0 {
        p.finished_at = None;
    }
    if p.running > 0 {
        p.in_progress = store
            .running_of_workflow(conn, &p.workflow_id, trace)
            .await?;
    }
    Ok(p)
}
