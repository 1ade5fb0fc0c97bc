//! The queue's inputs, validated once at the boundary: a task to insert ([`NewTask`]), a
//! status change ([`StatusChange`]), a claim ([`Claim`]) and a listing filter
//! ([`TaskFilter`]), with the limits they obey and the small field checkers the
//! workflow input reuses.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use crate::task::new_id;
use crate::task::now;
use crate::task::status::TaskStatus;
use crate::task::unique::UniqueFor;
use crate::value::{parse_time, Param};
use crate::{DbcError, Result};

/// Highest accepted priority (lowest is 0).
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Most tasks accepted by one `insertTask` call.
pub const MAX_BATCH: usize = 10_000;
/// Most status changes in one `updateTaskStatus` message (a batch settle).
pub const MAX_SETTLE: usize = 1000;
/// Most tasks in one workflow.
pub const MAX_WORKFLOW_TASKS: usize = 10_000;

/// A validated task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub(crate) id: String,
    pub(crate) queue: String,
    pub(crate) name: Option<String>,
    pub(crate) payload: Option<Json>,
    pub(crate) priority: i64,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) max_attempts: i64,
    pub(crate) workflow_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    /// how long the key keeps duplicates out (`uniqueFor`; `None`: until purged)
    pub(crate) unique_for: Option<UniqueFor>,
    pub(crate) depends_on: Vec<String>,
}

/// Limits that input validation applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// largest payload, as JSON bytes
    pub max_payload_bytes: usize,
}

fn field_path(prefix: &str, f: &str) -> String {
    if prefix.is_empty() {
        f.to_string()
    } else {
        format!("{prefix}.{f}")
    }
}

pub(crate) fn opt_str(
    obj: &Map<String, Json>,
    at: &str,
    f: &str,
    max: usize,
) -> Result<Option<String>> {
    match obj.get(f) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.contains('\0') => Err(DbcError::validation(
            field_path(at, f),
            format!("{f} must not contain a NUL character (\\u0000)"),
        )),
        Some(Json::String(s)) if !s.is_empty() && s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Json::String(_)) => Err(DbcError::validation(
            field_path(at, f),
            format!("{f} must be a non-empty string of at most {max} characters"),
        )),
        Some(_) => Err(DbcError::validation(
            field_path(at, f),
            format!("{f} must be a string"),
        )),
    }
}

pub(crate) fn opt_int(
    obj: &Map<String, Json>,
    at: &str,
    f: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<i64>> {
    match obj.get(f) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) if (lo..=hi).contains(&i) => Ok(Some(i)),
            _ => Err(DbcError::validation(
                field_path(at, f),
                format!("{f} must be an integer from {lo} to {hi}"),
            )),
        },
        Some(_) => Err(DbcError::validation(
            field_path(at, f),
            format!("{f} must be an integer from {lo} to {hi}"),
        )),
    }
}

/// Rejects JSON holding a NUL character (`\u0000`) in any string or key: PostgreSQL can
/// store it neither in text nor in jsonb, and a task must be storable on every provider
/// (failover moves tasks between them).
pub(crate) fn check_no_nul(field: &str, v: &Json) -> Result<()> {
    fn has_nul(v: &Json) -> bool {
        match v {
            Json::String(s) => s.contains('\0'),
            Json::Array(a) => a.iter().any(has_nul),
            Json::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(v) {
        return Err(DbcError::validation(
            field,
            format!(
                "{field} must not contain a NUL character (\\u0000): PostgreSQL cannot store it"
            ),
        ));
    }
    Ok(())
}

/// Checks that a string is a UUID and returns it in canonical form.
pub fn uuid_of(field: &str, v: &Json) -> Result<String> {
    match v {
        Json::String(s) => uuid::Uuid::parse_str(s)
            .map(|u| u.to_string())
            .map_err(|_| DbcError::validation(field, format!("{field} must be a UUID, got {s:?}"))),
        _ => Err(DbcError::validation(
            field,
            format!("{field} must be a UUID string"),
        )),
    }
}

/// An operation's input object: `v` itself, or an empty object for `null` (no input);
/// anything else is `DBC_VALIDATION` on `payload` with `usage` as the message.
pub(crate) fn input_object<'a>(v: &'a Json, usage: &str) -> Result<&'a Map<String, Json>> {
    static EMPTY: std::sync::LazyLock<Map<String, Json>> = std::sync::LazyLock::new(Map::new);
    match v {
        Json::Null => Ok(&EMPTY),
        Json::Object(o) => Ok(o),
        _ => Err(DbcError::validation("payload", usage)),
    }
}

pub(crate) fn check_keys(obj: &Map<String, Json>, at: &str, allowed: &[&str]) -> Result<()> {
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(DbcError::validation(
            field_path(at, k),
            format!("unknown field {k:?}; allowed: {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

impl NewTask {
    /// The id this task will be stored under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True when the task waits for other tasks (`dependsOn`).
    pub fn has_dependencies(&self) -> bool {
        !self.depends_on.is_empty()
    }

    /// Sets the id (createWorkflow assigns ids first so tasks can depend on siblings).
    pub fn set_id(&mut self, id: String) {
        self.id = id;
    }

    /// Validates one task object of `insertTask`.
    pub fn parse(v: &Json, at: &str, default_queue: &str, limits: Limits) -> Result<NewTask> {
        let obj = v.as_object().ok_or_else(|| {
            DbcError::validation(
                if at.is_empty() { "payload" } else { at },
                "a task must be an object",
            )
        })?;
        check_keys(
            obj,
            at,
            &[
                "queue",
                "name",
                "payload",
                "priority",
                "runAt",
                "maxAttempts",
                "workflowId",
                "idempotencyKey",
                "uniqueFor",
                "dependsOn",
            ],
        )?;
        let payload = obj.get("payload").cloned();
        if let Some(p) = &payload {
            let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > limits.max_payload_bytes {
                return Err(DbcError::validation(
                    field_path(at, "payload"),
                    format!(
                        "payload is {size} bytes of JSON, over the limit of {}",
                        limits.max_payload_bytes
                    ),
                ));
            }
            check_no_nul(&field_path(at, "payload"), p)?;
        }
        let run_at = match obj.get("runAt") {
            None | Some(Json::Null) => now(),
            Some(v) => parse_time(&field_path(at, "runAt"), &Param::from_json(v.clone()))?,
        };
        let depends_on = match obj.get("dependsOn") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(a)) if a.len() <= 1000 => a
                .iter()
                .enumerate()
                .map(|(i, d)| uuid_of(&field_path(at, &format!("dependsOn[{i}]")), d))
                .collect::<Result<Vec<_>>>()?,
            Some(_) => {
                return Err(DbcError::validation(
                    field_path(at, "dependsOn"),
                    "dependsOn must be an array of at most 1000 task ids",
                ))
            }
        };
        let workflow_id = match obj.get("workflowId") {
            None | Some(Json::Null) => None,
            Some(v) => Some(uuid_of(&field_path(at, "workflowId"), v)?),
        };
        if !depends_on.is_empty() && workflow_id.is_none() {
            return Err(DbcError::validation(
                field_path(at, "dependsOn"),
                "dependsOn needs a workflowId: dependencies are between tasks of one workflow",
            ));
        }
        let idempotency_key = opt_str(obj, at, "idempotencyKey", 191)?;
        let unique_for = UniqueFor::parse(
            &field_path(at, "uniqueFor"),
            obj.get("uniqueFor"),
            idempotency_key.is_some(),
        )?;
        Ok(NewTask {
            id: new_id(),
            queue: opt_str(obj, at, "queue", 191)?.unwrap_or_else(|| default_queue.to_string()),
            name: opt_str(obj, at, "name", 255)?,
            payload,
            priority: opt_int(obj, at, "priority", 0, MAX_PRIORITY)?.unwrap_or(0),
            run_at,
            max_attempts: opt_int(obj, at, "maxAttempts", 1, 1000)?.unwrap_or(5),
            workflow_id,
            idempotency_key,
            unique_for,
            depends_on,
        })
    }
}

/// Input of `updateTaskStatus`.
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// the task
    pub id: String,
    /// the new status
    pub status: TaskStatus,
    /// stored as the task's result (completed)
    pub result: Option<Json>,
    /// the error of a failed attempt (a message, or an object with `message`/`code`)
    pub error: Option<Json>,
    /// the worker reporting; must hold the lease when given
    pub worker_id: Option<String>,
    /// lease for a manual start (pending → running)
    pub lease_ms: i64,
}

impl StatusChange {
    /// `result` and `error` obey the payload size limit, like a task's payload.
    pub fn check_size(&self, limits: Limits) -> Result<()> {
        self.check_size_at(limits, "")
    }

    fn check_size_at(&self, limits: Limits, at: &str) -> Result<()> {
        for (f, v) in [("result", &self.result), ("error", &self.error)] {
            let Some(v) = v else { continue };
            let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > limits.max_payload_bytes {
                return Err(DbcError::validation(
                    field_path(at, f),
                    format!(
                        "{f} is {size} bytes of JSON, over the limit of {}",
                        limits.max_payload_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates the input of `updateTaskStatus`.
    pub fn parse(v: &Json) -> Result<StatusChange> {
        Self::parse_at(v, "")
    }

    /// Validates the array input of `updateTaskStatus` (a batch settle): 1 to
    /// [`MAX_SETTLE`] changes, each checked as a single one; the first bad item refuses
    /// the whole array, its field named `payload[i].…`.
    pub fn parse_many(v: &Json, limits: Limits) -> Result<Vec<StatusChange>> {
        let items = match v {
            Json::Array(a) if !a.is_empty() && a.len() <= MAX_SETTLE => a,
            _ => {
                return Err(DbcError::validation(
                    "payload",
                    format!(
                        "updateTaskStatus takes an object {{id, status}} or an array of 1 to \
                         {MAX_SETTLE} of them; split a longer array"
                    ),
                ))
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("payload[{i}]");
                let c = Self::parse_at(item, &at)?;
                c.check_size_at(limits, &at)?;
                Ok(c)
            })
            .collect()
    }

    fn parse_at(v: &Json, at: &str) -> Result<StatusChange> {
        let obj = v.as_object().ok_or_else(|| {
            DbcError::validation(
                if at.is_empty() { "payload" } else { at },
                "updateTaskStatus needs an object {id, status}",
            )
        })?;
        check_keys(
            obj,
            at,
            &["id", "status", "result", "error", "workerId", "leaseMs"],
        )?;
        let id = uuid_of(&field_path(at, "id"), obj.get("id").unwrap_or(&Json::Null))?;
        let status = match obj.get("status") {
            Some(Json::String(s)) => TaskStatus::parse_field(&field_path(at, "status"), s)?,
            _ => return Err(TaskStatus::invalid(&field_path(at, "status"))),
        };
        for f in ["result", "error"] {
            if let Some(v) = obj.get(f) {
                check_no_nul(&field_path(at, f), v)?;
            }
        }
        Ok(StatusChange {
            id,
            status,
            result: obj.get("result").cloned(),
            error: obj.get("error").cloned().filter(|e| !e.is_null()),
            worker_id: opt_str(obj, at, "workerId", 191)?,
            lease_ms: opt_int(obj, at, "leaseMs", 100, 86_400_000)?.unwrap_or(30_000),
        })
    }
}

/// The error code and message of a failed attempt's `error` (a message, or an object
/// with `code` and `message`).
pub(crate) fn error_parts(e: Option<&Json>) -> (String, String) {
    match e {
        None => ("TASK_FAILED".into(), "the task failed".into()),
        Some(Json::String(s)) => ("TASK_FAILED".into(), s.clone()),
        Some(Json::Object(o)) => (
            o.get("code")
                .and_then(Json::as_str)
                .unwrap_or("TASK_FAILED")
                .chars()
                .take(64)
                .collect(),
            o.get("message")
                .and_then(Json::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| Json::Object(o.clone()).to_string()),
        ),
        Some(other) => ("TASK_FAILED".into(), other.to_string()),
    }
}

/// Input of `claimTasks`.
#[derive(Debug, Clone)]
pub struct Claim {
    /// queue to claim from
    pub queue: String,
    /// most tasks to claim (1..=1000)
    pub limit: i64,
    /// lease length
    pub lease_ms: i64,
    /// who claims
    pub worker_id: String,
}

impl Claim {
    /// Validates `claimTasks` input; `queue` and `worker` are the defaults.
    pub fn parse(v: &Json, queue: &str, worker: &str) -> Result<Claim> {
        let obj = input_object(
            v,
            "claimTasks takes an object {queue?, limit?, leaseMs?, workerId?}",
        )?;
        check_keys(obj, "", &["queue", "limit", "leaseMs", "workerId"])?;
        Ok(Claim {
            queue: opt_str(obj, "", "queue", 191)?.unwrap_or_else(|| queue.to_string()),
            limit: opt_int(obj, "", "limit", 1, 1000)?.unwrap_or(1),
            lease_ms: opt_int(obj, "", "leaseMs", 100, 86_400_000)?.unwrap_or(30_000),
            worker_id: opt_str(obj, "", "workerId", 191)?.unwrap_or_else(|| worker.to_string()),
        })
    }
}

/// Input of `listTasks`: filters by queue, status and workflow, one page after a cursor.
#[derive(Debug, Clone)]
pub struct TaskFilter {
    /// only this queue
    pub queue: Option<String>,
    /// only this status
    pub status: Option<TaskStatus>,
    /// only this workflow's tasks
    pub workflow_id: Option<String>,
    /// only tasks of exactly this name
    pub name: Option<String>,
    /// only ids after this one (the previous page's `next`)
    pub after: Option<String>,
    /// page size (1..=1000)
    pub limit: i64,
}

impl TaskFilter {
    /// Validates `listTasks` input.
    pub fn parse(v: &Json) -> Result<TaskFilter> {
        let obj = input_object(
            v,
            "listTasks takes an object {queue?, status?, workflowId?, name?, limit?, after?}",
        )?;
        check_keys(
            obj,
            "",
            &["queue", "status", "workflowId", "name", "limit", "after"],
        )?;
        let queue = opt_str(obj, "", "queue", 191)?;
        let status = match opt_str(obj, "", "status", 16)? {
            Some(s) => Some(TaskStatus::parse_field("status", &s)?),
            None => None,
        };
        let workflow_id = match obj.get("workflowId").filter(|w| !w.is_null()) {
            Some(w) => Some(uuid_of("workflowId", w)?),
            None => None,
        };
        let after = match obj.get("after").filter(|a| !a.is_null()) {
            Some(a) => Some(uuid_of("after", a)?),
            None => None,
        };
        Ok(TaskFilter {
            queue,
            status,
            workflow_id,
            name: opt_str(obj, "", "name", 255)?,
            after,
            limit: opt_int(obj, "", "limit", 1, 1000)?.unwrap_or(100),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const L: Limits = Limits {
        max_payload_bytes: 1000,
    };

    #[test]
    fn task_validation_names_the_field() {
        let cases = [
            (json!({"priority": -1}), "priority"),
            (json!({"priority": 1.5}), "priority"),
            (json!({"maxAttempts": 0}), "maxAttempts"),
            (json!({"runAt": "10000-01-01T00:00:00Z"}), "runAt"),
            (json!({"runAt": "soon"}), "runAt"),
            (json!({"queue": ""}), "queue"),
            (json!({"queue": 5}), "queue"),
            (json!({"workflowId": "nope"}), "workflowId"),
            (
                json!({"dependsOn": ["0190d6e0-0000-7000-8000-000000000000"]}),
                "dependsOn",
            ),
            (json!({"payload": "x".repeat(2000)}), "payload"),
            (json!({"run_at": 1}), "run_at"),
        ];
        for (input, field) in cases {
            match NewTask::parse(&input, "", "default", L) {
                Err(DbcError::Validation { field: f, .. }) => assert_eq!(f, field, "{input}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let ok = NewTask::parse(&json!({"payload": {"a": 1}, "priority": 7}), "", "q", L).unwrap();
        assert_eq!(ok.queue, "q");
        assert_eq!(ok.priority, 7);
        assert!(uuid::Uuid::parse_str(&ok.id).unwrap().get_version_num() == 7);
    }

    #[test]
    fn status_change_validation() {
        assert!(StatusChange::parse(&json!({"id": "x", "status": "completed"})).is_err());
        assert!(StatusChange::parse(
            &json!({"id": "0190d6e0-0000-7000-8000-000000000000", "status": "done"})
        )
        .is_err());
        let ok = StatusChange::parse(&json!({"id": "0190d6e0-0000-7000-8000-000000000000", "status": "failed", "error": "boom"})).unwrap();
        assert_eq!(error_parts(ok.error.as_ref()).1, "boom");
    }

    #[test]
    fn nul_characters_are_refused_everywhere_a_string_is_stored() {
        let limits = Limits {
            max_payload_bytes: 1000,
        };
        for (task, field) in [
            (json!({"name": "a\0b"}), "name"),
            (json!({"queue": "\0"}), "queue"),
            (json!({"idempotencyKey": "k\0"}), "idempotencyKey"),
            (json!({"payload": {"deep": ["x", {"y": "\0"}]}}), "payload"),
            (json!({"payload": {"key\0": 1}}), "payload"),
        ] {
            let err = NewTask::parse(&task, "", "q", limits).err().unwrap();
            assert_eq!(err.code(), "DBC_VALIDATION");
            match err {
                DbcError::Validation { field: f, .. } => assert_eq!(f, field),
                other => panic!("{other}"),
            }
        }
        let id = "0190d6e0-0000-7000-8000-000000000000";
        for change in [
            json!({"id": id, "status": "failed", "error": "a\0"}),
            json!({"id": id, "status": "completed", "result": {"r": "\0"}}),
            json!({"id": id, "status": "completed", "workerId": "w\0"}),
        ] {
            assert_eq!(
                StatusChange::parse(&change).err().unwrap().code(),
                "DBC_VALIDATION"
            );
        }
        assert!(NewTask::parse(&json!({"name": "a\\0b"}), "", "q", limits).is_ok());
    }

    #[test]
    fn a_single_task_that_is_not_an_object_names_the_payload() {
        let limits = Limits {
            max_payload_bytes: 1000,
        };
        match NewTask::parse(&json!("text"), "", "q", limits)
            .err()
            .unwrap()
        {
            DbcError::Validation { field, .. } => assert_eq!(field, "payload"),
            other => panic!("{other}"),
        }
    }
}
