//! What a task is, shared by the queue's rules (`crate::queue`) and the stores
//! (`crate::store`), which both depend on it and not on each other's types: the inputs,
//! validated once at the boundary ([`input`]), the statuses and their transitions
//! ([`status`]), and what the queue returns — [`Task`], [`TaskDetail`] with its attempts
//! ([`Execution`]) and error log ([`ErrorLog`]), [`TaskPage`] — with the decoding of
//! stored values into them (times, JSON, text and integers as each provider gives them).

mod answer;
pub mod input;
pub mod status;
pub mod unique;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::value::{iso_utc, Value};
use crate::{DbcError, Result};

pub use answer::Answer;
pub use input::{Claim, Limits, NewTask, StatusChange, TaskFilter};
pub use status::{Backoff, TaskStatus};

/// The connector's clock, truncated to what every provider stores (milliseconds).
pub fn now() -> DateTime<Utc> {
    let ms = Utc::now().timestamp_millis();
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

/// A new UUIDv7, as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Reads a stored time back into ISO-8601 UTC.
pub fn read_time(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Int(ms) => DateTime::<Utc>::from_timestamp_millis(*ms).map(iso_utc),
        Value::Text(s) if s.ends_with('Z') => Some(s.clone()),
        Value::Text(s) => Some(format!("{s}Z")),
        _ => None,
    }
}

/// [`read_text`] of a value the caller gives up (no copy).
fn into_text(v: Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s),
        other => read_text(&other),
    }
}

/// [`read_json`] of a value the caller gives up (no copy).
fn into_json(v: Value) -> Json {
    match v {
        Value::Json(j) => j,
        other => read_json(&other),
    }
}

/// [`read_time`] of a value the caller gives up (no copy when it is already UTC text).
fn into_time(v: Value) -> Option<String> {
    match v {
        Value::Text(s) if s.ends_with('Z') => Some(s),
        other => read_time(&other),
    }
}

/// Reads stored JSON (jsonb, or JSON text) back into a value.
pub fn read_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Json(j) => j.clone(),
        Value::Text(s) => serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.clone())),
        Value::Bytes(b) => serde_json::from_slice(b).unwrap_or(Json::Null),
        other => other.clone().into_json(),
    }
}

/// Reads a stored string (other values as their JSON text).
pub fn read_text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.clone().into_json().to_string()),
    }
}

/// Reads a stored integer (0 when it is none).
pub fn read_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Text(s) => s.parse().unwrap_or(0),
        Value::Bool(b) => *b as i64,
        _ => 0,
    }
}

/// A task as operations return it (camelCase in JS).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub queue: String,
    pub name: Option<String>,
    pub payload: Json,
    pub status: TaskStatus,
    pub priority: i64,
    pub run_at: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub workflow_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<String>,
    pub result: Json,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// what its worker's last heartbeat reported, `{percent?, note?, updatedAt}`; absent
    /// when none did
    #[serde(skip_serializing_if = "Json::is_null")]
    pub progress: Json,
    /// true when an insert found an existing task with the same idempotency key
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

impl Task {
    /// A task from a row of the store's task columns (`{{task_columns}}` in its SQL:
    /// id, queue, name, payload, status, priority, run_at, attempts, max_attempts,
    /// workflow_id, idempotency_key, worker_id, lease_expires_at, result, last_error,
    /// created_at, updated_at, started_at, finished_at, progress).
    pub fn from_row(r: Vec<Value>) -> Result<Task> {
        // the row's values are moved into the task, not copied (payloads can be large)
        let mut r = r.into_iter();
        let mut next = || r.next().unwrap_or(Value::Null);
        let (id, queue, name, payload, status) = (next(), next(), next(), next(), next());
        let status = read_text(&status).unwrap_or_default();
        Ok(Task {
            id: into_text(id).unwrap_or_default(),
            queue: into_text(queue).unwrap_or_default(),
            name: into_text(name),
            payload: into_json(payload),
            status: TaskStatus::parse(&status)
                .ok_or_else(|| DbcError::Internal(format!("unknown task status {status:?}")))?,
            priority: read_int(&next()),
            run_at: into_time(next()).unwrap_or_default(),
            attempts: read_int(&next()),
            max_attempts: read_int(&next()),
            workflow_id: into_text(next()),
            idempotency_key: into_text(next()),
            worker_id: into_text(next()),
            lease_expires_at: into_time(next()),
            result: into_json(next()),
            last_error: into_text(next()),
            created_at: into_time(next()).unwrap_or_default(),
            updated_at: into_time(next()).unwrap_or_default(),
            started_at: into_time(next()),
            finished_at: into_time(next()),
            progress: into_json(next()),
            deduplicated: false,
        })
    }

    /// Tasks from rows of the store's task columns.
    pub fn from_rows(rows: Vec<Vec<Value>>) -> Result<Vec<Task>> {
        rows.into_iter().map(Task::from_row).collect()
    }

    /// The task a new one is stored as at `ts` (what an insert returns without reading
    /// the row back).
    pub fn inserted(t: &NewTask, ts: DateTime<Utc>) -> Task {
        Task {
            id: t.id.clone(),
            queue: t.queue.clone(),
            name: t.name.clone(),
            payload: t.payload.clone().unwrap_or(Json::Null),
            status: TaskStatus::Pending,
            priority: t.priority,
            run_at: iso_utc(t.run_at),
            attempts: 0,
            max_attempts: t.max_attempts,
            workflow_id: t.workflow_id.clone(),
            idempotency_key: t.idempotency_key.clone(),
            worker_id: None,
            lease_expires_at: None,
            result: Json::Null,
            last_error: None,
            created_at: iso_utc(ts),
            updated_at: iso_utc(ts),
            started_at: None,
            finished_at: None,
            progress: Json::Null,
            deduplicated: false,
        }
    }
}

/// One attempt of a task.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub attempt: i64,
    pub worker_id: Option<String>,
    pub status: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

/// One error-log row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorLog {
    pub attempt: Option<i64>,
    pub operation: String,
    pub code: String,
    pub message: String,
    pub created_at: Option<String>,
}

/// A task with its history (`getTask`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub depends_on: Vec<String>,
    pub history: Vec<Execution>,
    pub errors: Vec<ErrorLog>,
}

impl Execution {
    /// A history row: attempt, worker_id, status, started_at, finished_at, duration_ms.
    pub fn from_row(r: &[Value]) -> Execution {
        Execution {
            attempt: read_int(&r[0]),
            worker_id: read_text(&r[1]),
            status: read_text(&r[2]).unwrap_or_default(),
            started_at: read_time(&r[3]),
            finished_at: read_time(&r[4]),
            duration_ms: (!matches!(r[5], Value::Null)).then(|| read_int(&r[5])),
        }
    }
}

impl ErrorLog {
    /// An error-log row: attempt, operation, code, message, created_at.
    pub fn from_row(r: &[Value]) -> ErrorLog {
        ErrorLog {
            attempt: (!matches!(r[0], Value::Null)).then(|| read_int(&r[0])),
            operation: read_text(&r[1]).unwrap_or_default(),
            code: read_text(&r[2]).unwrap_or_default(),
            message: read_text(&r[3]).unwrap_or_default(),
            created_at: read_time(&r[4]),
        }
    }
}

/// One page of `listTasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// the tasks, oldest id first
    pub tasks: Vec<Task>,
    /// cursor for the next page (`after`), or null at the end
    pub next: Option<String>,
}
