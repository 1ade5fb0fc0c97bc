//! The task queue: insert, claim, status changes, history — written once for all three
//! providers on top of [`Conn::exec`], with the dialect differences kept in [`Dialect`].
//!
//! Times come from the connector's clock (milliseconds, UTC) and are stored as
//! `timestamptz` / `DATETIME(3)` / epoch-ms integers; ids are UUIDv7 made here.
//!
//! Long (over the project's 600-line guide) because the whole queue — insert, claim,
//! settle, retry, history, workflows' task side — is written once here for all three
//! dialects; issue 15 splits it into one store per database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::db::{Conn, Trace};
use crate::value::{iso_utc, parse_time, Param, Value};
use crate::{DbcError, Provider, Result};

/// The statuses of SPEC.md's task life.
pub const STATUSES: [&str; 5] = ["pending", "running", "completed", "failed", "cancelled"];
/// Highest accepted priority (lowest is 0).
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Most tasks accepted by one `insertTask` call.
pub const MAX_BATCH: usize = 10_000;
/// Rows per multi-row INSERT on MariaDB and SQLite (13 parameters each); PostgreSQL
/// sends any number of rows as one JSON parameter, so one statement takes them all.
const CHUNK: usize = 500;

fn chunk_size(d: &Dialect) -> usize {
    match d.provider {
        Provider::Postgres => MAX_BATCH,
        _ => CHUNK,
    }
}

/// Dialect details of one provider plus the table prefix.
#[derive(Debug, Clone)]
pub struct Dialect {
    /// the provider
    pub provider: Provider,
    /// the validated table prefix
    pub prefix: String,
}

impl Dialect {
    /// The n-th placeholder (1-based).
    pub fn ph(&self, n: usize) -> String {
        match self.provider {
            Provider::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// `count` placeholders starting at `from`, comma-separated.
    pub fn phs(&self, from: usize, count: usize) -> String {
        (from..from + count)
            .map(|n| self.ph(n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A table name with the prefix.
    pub fn t(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// A time as the provider stores it.
    pub fn time(&self, t: DateTime<Utc>) -> Param {
        match self.provider {
            Provider::Postgres => Param::Text(iso_utc(t)),
            Provider::Mariadb => Param::Text(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
            Provider::Sqlite => Param::Int(t.timestamp_millis()),
        }
    }

    /// The n-th placeholder holding a time where the statement gives it no type (the
    /// select list of `INSERT … SELECT`): PostgreSQL needs the cast there.
    fn time_ph(&self, n: usize) -> String {
        match self.provider {
            Provider::Postgres => format!("${n}::timestamptz"),
            _ => "?".into(),
        }
    }

    /// SQL for `end − start` in whole milliseconds (`end` and `start` are SQL times).
    pub(crate) fn duration_ms(&self, end: &str, start: &str) -> String {
        match self.provider {
            Provider::Sqlite => format!("{end} - {start}"),
            Provider::Postgres => {
                format!("CAST(EXTRACT(EPOCH FROM ({end} - {start})) * 1000 AS bigint)")
            }
            Provider::Mariadb => format!("TIMESTAMPDIFF(MICROSECOND, {start}, {end}) DIV 1000"),
        }
    }

    /// JSON as the provider stores it.
    pub fn json(&self, v: Option<&Json>) -> Param {
        match v {
            None => Param::Null,
            Some(j) => match self.provider {
                Provider::Postgres => Param::Json(j.clone()),
                _ => Param::Text(j.to_string()),
            },
        }
    }
}

/// Reads a stored time back into ISO-8601 UTC.
pub(crate) fn read_time(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Int(ms) => DateTime::<Utc>::from_timestamp_millis(*ms).map(iso_utc),
        Value::Text(s) if s.ends_with('Z') => Some(s.clone()),
        Value::Text(s) => Some(format!("{s}Z")),
        _ => None,
    }
}

pub(crate) fn read_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Json(j) => j.clone(),
        Value::Text(s) => serde_json::from_str(s).unwrap_or_else(|_| Json::String(s.clone())),
        Value::Bytes(b) => serde_json::from_slice(b).unwrap_or(Json::Null),
        other => other.clone().into_json(),
    }
}

pub(crate) fn read_text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.clone().into_json().to_string()),
    }
}

pub(crate) fn read_int(v: &Value) -> i64 {
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
    pub status: String,
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
    /// true when an insert found an existing task with the same idempotency key
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
}

pub(crate) const TASK_COLS: &str =
    "id, queue, name, payload, status, priority, run_at, attempts, max_attempts, \
     workflow_id, idempotency_key, worker_id, lease_expires_at, result, last_error, created_at, \
     updated_at, started_at, finished_at";

pub(crate) fn task_from_row(r: &[Value]) -> Task {
    Task {
        id: read_text(&r[0]).unwrap_or_default(),
        queue: read_text(&r[1]).unwrap_or_default(),
        name: read_text(&r[2]),
        payload: read_json(&r[3]),
        status: read_text(&r[4]).unwrap_or_default(),
        priority: read_int(&r[5]),
        run_at: read_time(&r[6]).unwrap_or_default(),
        attempts: read_int(&r[7]),
        max_attempts: read_int(&r[8]),
        workflow_id: read_text(&r[9]),
        idempotency_key: read_text(&r[10]),
        worker_id: read_text(&r[11]),
        lease_expires_at: read_time(&r[12]),
        result: read_json(&r[13]),
        last_error: read_text(&r[14]),
        created_at: read_time(&r[15]).unwrap_or_default(),
        updated_at: read_time(&r[16]).unwrap_or_default(),
        started_at: read_time(&r[17]),
        finished_at: read_time(&r[18]),
        deduplicated: false,
    }
}

/// The connector's clock, truncated to what every provider stores (milliseconds).
pub fn now() -> DateTime<Utc> {
    let ms = Utc::now().timestamp_millis();
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

/// A new UUIDv7, as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A validated task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    id: String,
    queue: String,
    name: Option<String>,
    payload: Option<Json>,
    priority: i64,
    run_at: DateTime<Utc>,
    max_attempts: i64,
    workflow_id: Option<String>,
    idempotency_key: Option<String>,
    depends_on: Vec<String>,
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
        Ok(NewTask {
            id: new_id(),
            queue: opt_str(obj, at, "queue", 191)?.unwrap_or_else(|| default_queue.to_string()),
            name: opt_str(obj, at, "name", 255)?,
            payload,
            priority: opt_int(obj, at, "priority", 0, MAX_PRIORITY)?.unwrap_or(0),
            run_at,
            max_attempts: opt_int(obj, at, "maxAttempts", 1, 1000)?.unwrap_or(5),
            workflow_id,
            idempotency_key: opt_str(obj, at, "idempotencyKey", 191)?,
            depends_on,
        })
    }
}

/// Inserts tasks in one transaction, one multi-row statement per chunk. A task whose
/// idempotency key exists already is not inserted; the existing one is returned with
/// `deduplicated: true`.
pub async fn insert_tasks(
    conn: &mut Conn,
    d: &Dialect,
    tasks: &[NewTask],
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    if tasks.is_empty() {
        return Err(DbcError::validation(
            "payload",
            "insertTask needs at least one task",
        ));
    }
    if tasks.len() > MAX_BATCH {
        return Err(DbcError::validation(
            "payload",
            format!("insertTask takes at most {MAX_BATCH} tasks per message; split the array"),
        ));
    }
    let ts = now();
    // always in a transaction, also for one statement: a connection that breaks before
    // COMMIT was sent leaves nothing applied, so the router may run the insert again (on
    // a fresh connection or the fallback); a lone INSERT that breaks would be "outcome
    // unknown" instead
    in_tx(conn, async |conn: &mut Conn| {
        let mut inserted = 0u64;
        for chunk in tasks.chunks(chunk_size(d)) {
            inserted += insert_chunk(conn, d, chunk, ts, trace.as_deref_mut()).await?;
        }
        let with_deps: Vec<&NewTask> = tasks.iter().filter(|t| !t.depends_on.is_empty()).collect();
        if !with_deps.is_empty() {
            insert_dependencies(conn, d, &with_deps, trace.as_deref_mut()).await?;
        }
        let mut out: Vec<Task> = tasks.iter().map(|t| task_from_new(t, ts)).collect();
        // MariaDB counts a duplicate "updated" to itself as affected (sqlx sets
        // CLIENT_FOUND_ROWS), so there the count cannot reveal duplicates: look them up.
        let keyed = tasks.iter().any(|t| t.idempotency_key.is_some());
        if inserted < tasks.len() as u64 || (keyed && d.provider == Provider::Mariadb) {
            resolve_duplicates(conn, d, tasks, &mut out, trace.as_deref_mut()).await?;
        }
        Ok(out)
    })
    .await
}

/// Runs `body` inside a transaction: its own one, committed on success and rolled back on
/// error, or the caller's when one is already open (`executeTransaction`), which the
/// caller then finishes.
pub async fn in_tx<T>(
    conn: &mut Conn,
    body: impl AsyncFnOnce(&mut Conn) -> Result<T>,
) -> Result<T> {
    let own_tx = !conn.in_tx();
    if own_tx {
        conn.begin().await?;
    }
    let r = body(conn).await;
    finish_tx(conn, own_tx, r).await
}

/// Commits (or rolls back on error) a transaction this function opened.
async fn finish_tx<T>(conn: &mut Conn, own_tx: bool, r: Result<T>) -> Result<T> {
    if !own_tx {
        return r;
    }
    match r {
        Ok(v) => {
            conn.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.rollback().await;
            Err(e)
        }
    }
}

fn task_from_new(t: &NewTask, ts: DateTime<Utc>) -> Task {
    Task {
        id: t.id.clone(),
        queue: t.queue.clone(),
        name: t.name.clone(),
        payload: t.payload.clone().unwrap_or(Json::Null),
        status: "pending".into(),
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
        deduplicated: false,
    }
}

/// What a chunk's INSERT does with an idempotency key that exists: nothing (the existing
/// task is looked up after). Without keys nothing can conflict, and the clause would cost
/// a speculative insertion per row.
fn conflict_clause(d: &Dialect, chunk: &[NewTask]) -> &'static str {
    if !chunk.iter().any(|t| t.idempotency_key.is_some()) {
        return "";
    }
    match d.provider {
        Provider::Mariadb => " ON DUPLICATE KEY UPDATE id = id",
        // the unique index is partial (migration 0002): the target names its predicate
        Provider::Postgres => {
            " ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
        }
        Provider::Sqlite => " ON CONFLICT (idempotency_key) DO NOTHING",
    }
}

async fn insert_chunk(
    conn: &mut Conn,
    d: &Dialect,
    chunk: &[NewTask],
    ts: DateTime<Utc>,
    trace: Option<&mut Trace>,
) -> Result<u64> {
    if d.provider == Provider::Postgres {
        return insert_chunk_pg(conn, d, chunk, ts, trace).await;
    }
    const COLS: usize = 13;
    let mut sql = format!(
        "INSERT INTO {} (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget, workflow_id, \
         idempotency_key, created_at, updated_at) VALUES ",
        d.t("tasks")
    );
    let mut params = Vec::with_capacity(chunk.len() * COLS);
    for (i, t) in chunk.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&d.phs(i * COLS + 1, COLS));
        sql.push(')');
        params.extend([
            Param::Text(t.id.clone()),
            Param::Text(t.queue.clone()),
            t.name.clone().map(Param::Text).unwrap_or(Param::Null),
            d.json(t.payload.as_ref()),
            Param::Text("pending".into()),
            Param::Int(t.priority),
            d.time(t.run_at),
            Param::Int(t.max_attempts),
            Param::Int(t.max_attempts),
            t.workflow_id
                .clone()
                .map(Param::Text)
                .unwrap_or(Param::Null),
            t.idempotency_key
                .clone()
                .map(Param::Text)
                .unwrap_or(Param::Null),
            d.time(ts),
            d.time(ts),
        ]);
    }
    sql.push_str(conflict_clause(d, chunk));
    let out = conn.exec("insert tasks", &sql, &params, trace).await?;
    Ok(out.rows_affected)
}

/// PostgreSQL: the rows travel as one JSON array bound to one parameter and are
/// unpacked by `jsonb_to_recordset`. The statement text is the same for any number of
/// rows (one prepared statement per connection), and binding one value instead of 13 per
/// row is what made 500-row inserts several times faster here.
async fn insert_chunk_pg(
    conn: &mut Conn,
    d: &Dialect,
    chunk: &[NewTask],
    ts: DateTime<Utc>,
    trace: Option<&mut Trace>,
) -> Result<u64> {
    let rows: Vec<Json> = chunk
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "queue": t.queue, "name": t.name, "payload": t.payload,
                "priority": t.priority, "run_at": iso_utc(t.run_at), "max_attempts": t.max_attempts,
                "workflow_id": t.workflow_id, "idempotency_key": t.idempotency_key,
            })
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget, \
         workflow_id, idempotency_key, created_at, updated_at) \
         SELECT x.id, x.queue, x.name, x.payload, 'pending', x.priority, x.run_at, x.max_attempts, x.max_attempts, \
         x.workflow_id, x.idempotency_key, $2::timestamptz, $2::timestamptz \
         FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, queue text, name text, payload jsonb, priority integer, \
         run_at timestamptz, max_attempts integer, workflow_id uuid, idempotency_key text){}",
        d.t("tasks"),
        conflict_clause(d, chunk)
    );
    let out = conn
        .exec(
            "insert tasks",
            &sql,
            &[Param::Json(Json::Array(rows)), d.time(ts)],
            trace,
        )
        .await?;
    Ok(out.rows_affected)
}

async fn insert_dependencies(
    conn: &mut Conn,
    d: &Dialect,
    tasks: &[&NewTask],
    mut trace: Option<&mut Trace>,
) -> Result<()> {
    let mut sql = format!(
        "INSERT INTO {} (task_id, depends_on) VALUES ",
        d.t("task_dependencies")
    );
    let mut params = Vec::new();
    for t in tasks {
        for dep in &t.depends_on {
            if !params.is_empty() {
                sql.push_str(", ");
            }
            sql.push_str(&format!("({})", d.phs(params.len() + 1, 2)));
            params.push(Param::Text(t.id.clone()));
            params.push(Param::Text(dep.clone()));
        }
    }
    conn.exec("insert dependencies", &sql, &params, trace.as_deref_mut())
        .await
        .map_err(|e| match e {
            DbcError::Conflict { .. } => {
                DbcError::validation("dependsOn", "dependsOn names a task that does not exist")
            }
            other => other,
        })?;
    // a dependency must belong to the same workflow
    let ids: Vec<Param> = tasks.iter().map(|t| Param::Text(t.id.clone())).collect();
    let tt = d.t("tasks");
    let td = d.t("task_dependencies");
    let check = format!(
        "SELECT count(*) FROM {td} x JOIN {tt} a ON a.id = x.task_id JOIN {tt} b ON b.id = x.depends_on \
         WHERE x.task_id IN ({}) AND (b.workflow_id IS NULL OR b.workflow_id <> a.workflow_id)",
        d.phs(1, ids.len())
    );
    let out = conn
        .exec("check dependencies", &check, &ids, trace.as_deref_mut())
        .await?;
    if out.rows.first().map(|r| read_int(&r[0])).unwrap_or(0) > 0 {
        return Err(DbcError::validation(
            "dependsOn",
            "dependsOn names a task of another workflow",
        ));
    }
    let update = format!(
        "UPDATE {tt} SET deps_pending = (SELECT count(*) FROM {td} x JOIN {tt} b ON b.id = x.depends_on \
         WHERE x.task_id = {tt}.id AND b.status <> 'completed') WHERE id IN ({})",
        d.phs(1, ids.len())
    );
    conn.exec("count dependencies", &update, &ids, trace)
        .await?;
    Ok(())
}

async fn resolve_duplicates(
    conn: &mut Conn,
    d: &Dialect,
    tasks: &[NewTask],
    out: &mut [Task],
    trace: Option<&mut Trace>,
) -> Result<()> {
    let keyed: Vec<usize> = (0..tasks.len())
        .filter(|i| tasks[*i].idempotency_key.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(());
    }
    let keys: Vec<Param> = keyed
        .iter()
        .map(|i| Param::Text(tasks[*i].idempotency_key.clone().unwrap_or_default()))
        .collect();
    let sql = format!(
        "SELECT {TASK_COLS} FROM {} WHERE idempotency_key IN ({})",
        d.t("tasks"),
        d.phs(1, keys.len())
    );
    let rows = conn.exec("find duplicates", &sql, &keys, trace).await?;
    let existing: Vec<Task> = rows.rows.iter().map(|r| task_from_row(r)).collect();
    for i in keyed {
        if let Some(found) = existing
            .iter()
            .find(|e| e.idempotency_key == tasks[i].idempotency_key)
        {
            if found.id != tasks[i].id {
                out[i] = Task {
                    deduplicated: true,
                    ..found.clone()
                };
            }
        }
    }
    Ok(())
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

pub(crate) async fn fetch_task(
    conn: &mut Conn,
    d: &Dialect,
    id: &str,
    lock: bool,
    trace: Option<&mut Trace>,
) -> Result<Task> {
    fetch_task_row(conn, d, id, "", lock, trace)
        .await
        .map(|r| task_from_row(&r))
}

/// The task's row: the columns of [`TASK_COLS`], then `extra` (`", col, …"`).
async fn fetch_task_row(
    conn: &mut Conn,
    d: &Dialect,
    id: &str,
    extra: &str,
    lock: bool,
    trace: Option<&mut Trace>,
) -> Result<Vec<Value>> {
    let lock = if lock && d.provider != Provider::Sqlite {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {TASK_COLS}{extra} FROM {} WHERE id = {}{lock}",
        d.t("tasks"),
        d.ph(1)
    );
    let out = conn
        .exec("select task", &sql, &[Param::Text(id.to_string())], trace)
        .await?;
    out.rows
        .into_iter()
        .next()
        .ok_or_else(|| DbcError::NotFound(format!("task {id} does not exist")))
}

/// `getTask`: the task, its dependencies, every attempt and its error log.
pub async fn get_task(
    conn: &mut Conn,
    d: &Dialect,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<TaskDetail> {
    // the task row, and the start of the attempt it is running (if it is)
    let row = fetch_task_row(
        conn,
        d,
        id,
        ", attempt_started_at",
        false,
        trace.as_deref_mut(),
    )
    .await?;
    let task = task_from_row(&row);
    let attempt_started = row.last().and_then(read_time);
    let p = [Param::Text(task.id.clone())];
    let deps = conn
        .exec(
            "select dependencies",
            &format!(
                "SELECT depends_on FROM {} WHERE task_id = {} ORDER BY depends_on",
                d.t("task_dependencies"),
                d.ph(1)
            ),
            &p,
            trace.as_deref_mut(),
        )
        .await?;
    let hist = conn
        .exec(
            "select history",
            &format!(
                "SELECT attempt, worker_id, status, started_at, finished_at, duration_ms FROM {} WHERE task_id = {} ORDER BY attempt",
                d.t("task_executions"),
                d.ph(1)
            ),
            &p,
            trace.as_deref_mut(),
        )
        .await?;
    let errs = conn
        .exec(
            "select errors",
            &format!(
                "SELECT attempt, operation, code, message, created_at FROM {} WHERE task_id = {} ORDER BY created_at, id",
                d.t("error_logs"),
                d.ph(1)
            ),
            &p,
            trace,
        )
        .await?;
    let mut history: Vec<Execution> = hist
        .rows
        .iter()
        .map(|r| Execution {
            attempt: read_int(&r[0]),
            worker_id: read_text(&r[1]),
            status: read_text(&r[2]).unwrap_or_default(),
            started_at: read_time(&r[3]),
            finished_at: read_time(&r[4]),
            duration_ms: (!matches!(r[5], Value::Null)).then(|| read_int(&r[5])),
        })
        .collect();
    // the attempt in progress has no history row yet: it lives on the task row
    if let Some(started) = attempt_started.filter(|_| task.status == "running") {
        if !history.iter().any(|h| h.attempt == task.attempts) {
            history.push(Execution {
                attempt: task.attempts,
                worker_id: task.worker_id.clone(),
                status: "running".into(),
                started_at: Some(started),
                finished_at: None,
                duration_ms: None,
            });
        }
    }
    Ok(TaskDetail {
        task,
        depends_on: deps.rows.iter().filter_map(|r| read_text(&r[0])).collect(),
        history,
        errors: errs
            .rows
            .iter()
            .map(|r| ErrorLog {
                attempt: (!matches!(r[0], Value::Null)).then(|| read_int(&r[0])),
                operation: read_text(&r[1]).unwrap_or_default(),
                code: read_text(&r[2]).unwrap_or_default(),
                message: read_text(&r[3]).unwrap_or_default(),
                created_at: read_time(&r[4]),
            })
            .collect(),
    })
}

/// Backoff settings for failed attempts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// delay after the first failure
    pub base_ms: u64,
    /// the cap
    pub max_ms: u64,
}

impl Backoff {
    /// Delay before attempt `attempts + 1`: `min(max, base · 2^(attempts−1))`, then
    /// "equal jitter" — half of it fixed, half random — so retries of a burst spread out.
    pub fn delay_ms(&self, attempts: i64) -> u64 {
        let exp = (attempts.max(1) - 1).min(40) as u32;
        let full = self
            .base_ms
            .saturating_mul(1u64 << exp.min(40))
            .min(self.max_ms);
        let half = full / 2;
        half + jitter(half + 1)
    }
}

fn jitter(below: u64) -> u64 {
    // the random bits of a UUIDv7 are a good enough source here
    let r = uuid::Uuid::now_v7().as_u128() as u64;
    r % below.max(1)
}

/// Input of `updateTaskStatus`.
#[derive(Debug, Clone)]
pub struct StatusChange {
    /// the task
    pub id: String,
    /// the new status
    pub status: String,
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
        for (field, v) in [("result", &self.result), ("error", &self.error)] {
            let Some(v) = v else { continue };
            let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > limits.max_payload_bytes {
                return Err(DbcError::validation(
                    field,
                    format!(
                        "{field} is {size} bytes of JSON, over the limit of {}",
                        limits.max_payload_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates the input of `updateTaskStatus`.
    pub fn parse(v: &Json) -> Result<StatusChange> {
        let obj = v.as_object().ok_or_else(|| {
            DbcError::validation("payload", "updateTaskStatus needs an object {id, status}")
        })?;
        check_keys(
            obj,
            "",
            &["id", "status", "result", "error", "workerId", "leaseMs"],
        )?;
        let id = uuid_of("id", obj.get("id").unwrap_or(&Json::Null))?;
        let status = match obj.get("status") {
            Some(Json::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
            _ => {
                return Err(DbcError::validation(
                    "status",
                    format!("status must be one of {}", STATUSES.join(", ")),
                ))
            }
        };
        for f in ["result", "error"] {
            if let Some(v) = obj.get(f) {
                check_no_nul(f, v)?;
            }
        }
        Ok(StatusChange {
            id,
            status,
            result: obj.get("result").cloned(),
            error: obj.get("error").cloned().filter(|e| !e.is_null()),
            worker_id: opt_str(obj, "", "workerId", 191)?,
            lease_ms: opt_int(obj, "", "leaseMs", 100, 86_400_000)?.unwrap_or(30_000),
        })
    }
}

fn error_parts(e: Option<&Json>) -> (String, String) {
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

/// One dependency fewer for every task that waits for the task bound as parameter 1.
/// MariaDB runs `UPDATE ... WHERE id IN (SELECT ...)` as a scan of the whole tasks table,
/// and under REPEATABLE READ that locks every row until commit, serializing all workers:
/// there the join form, which looks the dependents up by index, is used instead.
fn release_dependents_sql(d: &Dialect) -> String {
    let (t, td) = (d.t("tasks"), d.t("task_dependencies"));
    match d.provider {
        Provider::Mariadb => format!(
            "UPDATE {t} k JOIN {td} x ON x.task_id = k.id SET k.deps_pending = k.deps_pending - 1 \
             WHERE x.depends_on = ? AND k.deps_pending > 0"
        ),
        _ => format!(
            "UPDATE {t} SET deps_pending = deps_pending - 1 WHERE deps_pending > 0 AND id IN \
             (SELECT task_id FROM {td} WHERE depends_on = {})",
            d.ph(1)
        ),
    }
}

/// A task that will never complete (dead or cancelled) cancels the pending tasks that
/// wait for it, and theirs in turn, so a workflow finishes instead of waiting forever.
async fn cancel_dependents(
    conn: &mut Conn,
    d: &Dialect,
    root: &str,
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<()> {
    let (t, td) = (d.t("tasks"), d.t("task_dependencies"));
    let mut frontier = vec![Param::Text(root.to_string())];
    // a workflow's dependencies point only backwards, so the depth is bounded by its size
    for _ in 0..workflows_depth_limit() {
        let find = format!(
            "SELECT DISTINCT k.id FROM {t} k JOIN {td} x ON x.task_id = k.id WHERE x.depends_on IN ({}) AND k.status = 'pending'",
            d.phs(1, frontier.len())
        );
        let found = conn
            .exec("find dependents", &find, &frontier, trace.as_deref_mut())
            .await?;
        let ids: Vec<Param> = found
            .rows
            .iter()
            .filter_map(|r| read_text(&r[0]).map(Param::Text))
            .collect();
        if ids.is_empty() {
            break;
        }
        let mut params = vec![d.time(ts), d.time(ts)];
        params.extend(ids.iter().cloned());
        conn.exec(
            "cancel dependents",
            &format!(
                "UPDATE {t} SET status = 'cancelled', last_error = 'a task it depends on failed or was cancelled', \
                 finished_at = {}, updated_at = {} WHERE status = 'pending' AND id IN ({})",
                d.ph(1),
                d.ph(2),
                d.phs(3, ids.len())
            ),
            &params,
            trace.as_deref_mut(),
        )
        .await?;
        frontier = ids;
    }
    Ok(())
}

fn workflows_depth_limit() -> usize {
    crate::workflows::MAX_WORKFLOW_TASKS
}

/// `updateTaskStatus`: applies SPEC.md's state machine in one transaction.
pub async fn update_task_status(
    conn: &mut Conn,
    d: &Dialect,
    change: &StatusChange,
    backoff: Backoff,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = fetch_task(conn, d, &change.id, true, trace.as_deref_mut()).await?;
        let ts = now();
        let from = task.status.as_str();
        let to = change.status.as_str();
        let legal = matches!(
            (from, to),
            ("pending", "running" | "completed" | "failed" | "cancelled")
                | ("running", "pending" | "completed" | "failed" | "cancelled")
                | ("failed", "cancelled")
        );
        if !legal {
            let hint = if from == "failed" && to == "pending" { " (use requeueFailedTask)" } else { "" };
            return Err(DbcError::InvalidTransition(format!(
                "task {} is {from}; it cannot become {to}{hint}",
                task.id
            )));
        }
        if from == "running" {
            let expired = task
                .lease_expires_at
                .as_deref()
                .and_then(|l| chrono::DateTime::parse_from_rfc3339(l).ok())
                .is_some_and(|l| l.with_timezone(&Utc) < ts);
            let other = change.worker_id.is_some() && change.worker_id != task.worker_id;
            if expired || other {
                return Err(DbcError::LeaseLost(format!(
                    "task {} is no longer leased to {}: {}",
                    task.id,
                    change.worker_id.as_deref().unwrap_or("this worker"),
                    if expired { "the lease expired" } else { "another worker holds it" }
                )));
            }
        }
        // a worker reporting the outcome of an attempt that is already over (its lease
        // expired and the reaper put the task back to pending): no one holds a lease on a
        // pending task, so the late report must not complete or fail it
        if from == "pending" && matches!(to, "completed" | "failed") && task.attempts > 0 {
            if let Some(w) = &change.worker_id {
                return Err(DbcError::LeaseLost(format!(
                    "task {} is no longer leased to {w}: it is pending again after attempt {}{}",
                    task.id,
                    task.attempts,
                    task.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
                )));
            }
        }
        let tt = d.t("tasks");
        let id = Param::Text(task.id.clone());
        // an attempt that starts now (manual start, or a direct completion of a pending task)
        let starts = from == "pending" && to != "cancelled";
        let attempt = if starts { task.attempts + 1 } else { task.attempts };
        if starts && to == "running" {
            // the attempt lives on the task row until it ends; its history row is written then
            let lease = ts + chrono::Duration::milliseconds(change.lease_ms);
            conn.exec(
                "start task",
                &format!(
                    "UPDATE {tt} SET status = 'running', attempts = {}, worker_id = {}, lease_expires_at = {}, \
                     started_at = COALESCE(started_at, {}), attempt_started_at = {}, updated_at = {} WHERE id = {}",
                    d.ph(1), d.ph(2), d.ph(3), d.ph(4), d.ph(5), d.ph(6), d.ph(7)
                ),
                &[Param::Int(attempt), change.worker_id.clone().map(Param::Text).unwrap_or(Param::Null), d.time(lease), d.time(ts), d.time(ts), d.time(ts), id.clone()],
                trace.as_deref_mut(),
            )
            .await?;
            return fetch_task(conn, d, &task.id, false, trace.as_deref_mut()).await;
        }
        // the attempt ends: its one history row ("pending" = given back, recorded as cancelled)
        let outcome = if to == "pending" { "cancelled" } else { to };
        if starts {
            // started and finished at once
            conn.exec(
                "record attempt",
                &format!(
                    "INSERT INTO {} (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms) VALUES ({})",
                    d.t("task_executions"),
                    d.phs(1, 7)
                ),
                &[id.clone(), Param::Int(attempt), change.worker_id.clone().map(Param::Text).unwrap_or(Param::Null), Param::Text(outcome.into()), d.time(ts), d.time(ts), Param::Int(0)],
                trace.as_deref_mut(),
            )
            .await?;
        } else if from == "running" && attempt > 0 {
            // from the task row (locked above): worker_id before the change below clears
            // it. An attempt an older connector started (a database shared across an
            // upgrade) has no start here, or already its row: it gets none (the PostgreSQL
            // completion lane's batch falls back to this path on a key conflict)
            let te = d.t("task_executions");
            conn.exec(
                "record attempt",
                &format!(
                    "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms) \
                     SELECT k.id, k.attempts, k.worker_id, {}, k.attempt_started_at, {}, {} FROM {tt} k \
                     WHERE k.id = {} AND k.attempt_started_at IS NOT NULL \
                     AND NOT EXISTS (SELECT 1 FROM {te} x WHERE x.task_id = k.id AND x.attempt = k.attempts)",
                    d.ph(1),
                    d.time_ph(2),
                    d.duration_ms(&d.time_ph(3), "k.attempt_started_at"),
                    d.ph(4)
                ),
                &[Param::Text(outcome.into()), d.time(ts), d.time(ts), id.clone()],
                trace.as_deref_mut(),
            )
            .await?;
        }
        match to {
            "completed" => {
                conn.exec(
                    "complete task",
                    &format!(
                        "UPDATE {tt} SET status = 'completed', attempts = {}, result = {}, worker_id = NULL, lease_expires_at = NULL, \
                         started_at = COALESCE(started_at, {}), finished_at = {}, updated_at = {} WHERE id = {}",
                        d.ph(1), d.ph(2), d.ph(3), d.ph(4), d.ph(5), d.ph(6)
                    ),
                    &[Param::Int(attempt), d.json(change.result.as_ref()), d.time(ts), d.time(ts), d.time(ts), id.clone()],
                    trace.as_deref_mut(),
                )
                .await?;
                // dependents wait for one dependency less
                conn.exec(
                    "release dependents",
                    &release_dependents_sql(d),
                    std::slice::from_ref(&id),
                    trace.as_deref_mut(),
                )
                .await?;
            }
            "failed" => {
                let (code, message) = error_parts(change.error.as_ref());
                conn.exec(
                    "log error",
                    &format!(
                        "INSERT INTO {} (id, task_id, attempt, operation, code, message, provider, created_at) VALUES ({})",
                        d.t("error_logs"),
                        d.phs(1, 8)
                    ),
                    &[Param::Text(new_id()), id.clone(), Param::Int(attempt), Param::Text("updateTaskStatus".into()), Param::Text(code), Param::Text(message.clone()), Param::Text(d.provider.as_str().into()), d.time(ts)],
                    trace.as_deref_mut(),
                )
                .await?;
                if attempt < task.max_attempts {
                    let next = ts + chrono::Duration::milliseconds(backoff.delay_ms(attempt) as i64);
                    conn.exec(
                        "retry task",
                        &format!(
                            "UPDATE {tt} SET status = 'pending', attempts = {}, run_at = {}, last_error = {}, worker_id = NULL, \
                             lease_expires_at = NULL, updated_at = {} WHERE id = {}",
                            d.ph(1), d.ph(2), d.ph(3), d.ph(4), d.ph(5)
                        ),
                        &[Param::Int(attempt), d.time(next), Param::Text(message), d.time(ts), id.clone()],
                        trace.as_deref_mut(),
                    )
                    .await?;
                } else {
                    conn.exec(
                        "fail task",
                        &format!(
                            "UPDATE {tt} SET status = 'failed', attempts = {}, last_error = {}, worker_id = NULL, lease_expires_at = NULL, \
                             finished_at = {}, updated_at = {} WHERE id = {}",
                            d.ph(1), d.ph(2), d.ph(3), d.ph(4), d.ph(5)
                        ),
                        &[Param::Int(attempt), Param::Text(message), d.time(ts), d.time(ts), id.clone()],
                        trace.as_deref_mut(),
                    )
                    .await?;
                    cancel_dependents(conn, d, &task.id, ts, trace.as_deref_mut()).await?;
                }
            }
            "cancelled" => {
                conn.exec(
                    "cancel task",
                    &format!(
                        "UPDATE {tt} SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL, finished_at = {}, updated_at = {} WHERE id = {}",
                        d.ph(1), d.ph(2), d.ph(3)
                    ),
                    &[d.time(ts), d.time(ts), id.clone()],
                    trace.as_deref_mut(),
                )
                .await?;
                cancel_dependents(conn, d, &task.id, ts, trace.as_deref_mut()).await?;
            }
            _ => {
                // running → pending: the worker gives the task back; the attempt counts
                conn.exec(
                    "release task",
                    &format!(
                        "UPDATE {tt} SET status = 'pending', worker_id = NULL, lease_expires_at = NULL, updated_at = {} WHERE id = {}",
                        d.ph(1), d.ph(2)
                    ),
                    &[d.time(ts), id.clone()],
                    trace.as_deref_mut(),
                )
                .await?;
            }
        }
        fetch_task(conn, d, &task.id, false, trace.as_deref_mut()).await
    })
    .await
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
        let empty = Map::new();
        let obj = match v {
            Json::Null => &empty,
            Json::Object(o) => o,
            _ => {
                return Err(DbcError::validation(
                    "payload",
                    "claimTasks takes an object {queue?, limit?, leaseMs?, workerId?}",
                ))
            }
        };
        check_keys(obj, "", &["queue", "limit", "leaseMs", "workerId"])?;
        Ok(Claim {
            queue: opt_str(obj, "", "queue", 191)?.unwrap_or_else(|| queue.to_string()),
            limit: opt_int(obj, "", "limit", 1, 1000)?.unwrap_or(1),
            lease_ms: opt_int(obj, "", "leaseMs", 100, 86_400_000)?.unwrap_or(30_000),
            worker_id: opt_str(obj, "", "workerId", 191)?.unwrap_or_else(|| worker.to_string()),
        })
    }
}

fn ids_in(d: &Dialect, from: usize, n: usize) -> String {
    format!("({})", d.phs(from, n))
}

/// `claimTasks`: takes up to `limit` claimable tasks (pending, due, dependencies done),
/// highest priority first, then oldest `runAt`, then id; two claimers never get the same
/// task. Each claim starts an attempt under a lease; the attempt is kept on the task row
/// (`attempt_started_at`) and gets its history row when it ends.
pub async fn claim_tasks(
    conn: &mut Conn,
    d: &Dialect,
    c: &Claim,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    let ts = now();
    let lease = ts + chrono::Duration::milliseconds(c.lease_ms);
    let t = d.t("tasks");
    if d.provider == Provider::Postgres {
        // one statement: lock the candidates (skipping rows other claimers hold), start them
        let sql = format!(
            "WITH c AS (SELECT id FROM {t} WHERE queue = $1 AND status = 'pending' AND deps_pending = 0 AND run_at <= $2 \
             ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED), \
             u AS (UPDATE {t} t SET status = 'running', attempts = t.attempts + 1, worker_id = $4, lease_expires_at = $5, \
             started_at = COALESCE(t.started_at, $2), attempt_started_at = $2, updated_at = $2 FROM c WHERE t.id = c.id RETURNING t.*) \
             SELECT {TASK_COLS} FROM u ORDER BY priority DESC, run_at, id"
        );
        let out = conn
            .exec(
                "claim tasks",
                &sql,
                &[
                    Param::Text(c.queue.clone()),
                    d.time(ts),
                    Param::Int(c.limit),
                    Param::Text(c.worker_id.clone()),
                    d.time(lease),
                ],
                trace,
            )
            .await?;
        return Ok(out.rows.iter().map(|r| task_from_row(r)).collect());
    }
    in_tx(conn, async |conn: &mut Conn| {
        let (order, lock) = match d.provider {
            Provider::Mariadb => ("neg_priority, run_at, id", " FOR UPDATE SKIP LOCKED"),
            _ => ("priority DESC, run_at, id", ""),
        };
        let pick = format!(
            "SELECT id FROM {t} WHERE queue = ? AND status = 'pending' AND deps_pending = 0 AND run_at <= ? ORDER BY {order} LIMIT ?{lock}"
        );
        let picked = conn
            .exec("pick tasks", &pick, &[Param::Text(c.queue.clone()), d.time(ts), Param::Int(c.limit)], trace.as_deref_mut())
            .await?;
        let ids: Vec<Param> = picked.rows.iter().filter_map(|r| read_text(&r[0]).map(Param::Text)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![Param::Text(c.worker_id.clone()), d.time(lease), d.time(ts), d.time(ts), d.time(ts)];
        params.extend(ids.iter().cloned());
        conn.exec(
            "start tasks",
            &format!(
                "UPDATE {t} SET status = 'running', attempts = attempts + 1, worker_id = ?, lease_expires_at = ?, \
                 started_at = COALESCE(started_at, ?), attempt_started_at = ?, updated_at = ? WHERE id IN {}",
                ids_in(d, 6, ids.len())
            ),
            &params,
            trace.as_deref_mut(),
        )
        .await?;
        let out = conn
            .exec(
                "read tasks",
                &format!("SELECT {TASK_COLS} FROM {t} WHERE id IN {} ORDER BY {order}", ids_in(d, 1, ids.len())),
                &ids,
                trace.as_deref_mut(),
            )
            .await?;
        Ok(out.rows.iter().map(|r| task_from_row(r)).collect())
    })
    .await
}

/// Returns tasks whose lease expired to `pending` (or `failed` when that was their last
/// attempt) and closes their attempt as `lease_expired`. Safe to run from many runtimes at
/// once: every change is conditional on the lease still being expired.
pub async fn reap_expired(conn: &mut Conn, d: &Dialect) -> Result<u64> {
    let ts = now();
    let t = d.t("tasks");
    let te = d.t("task_executions");
    // the common case, nothing expired, costs one indexed read and no write lock
    let any = conn
        .exec(
            "find expired",
            &format!(
                "SELECT id FROM {t} WHERE status = 'running' AND lease_expires_at < {} LIMIT 1",
                d.ph(1)
            ),
            &[d.time(ts)],
            None,
        )
        .await?;
    if any.rows.is_empty() {
        return Ok(0);
    }
    conn.begin().await?;
    let r = async {
        let expired = format!("status = 'running' AND lease_expires_at < {}", d.ph(1));
        if d.provider != Provider::Sqlite {
            // lock them first (SQLite's BEGIN IMMEDIATE already excludes other writers): a
            // worker finishing one of them now, or another runtime's reaper, waits or is
            // waited for, and the rows read below are the ones changed below
            conn.exec(
                "lock expired",
                &format!("SELECT id FROM {t} WHERE {expired} FOR UPDATE"),
                &[d.time(ts)],
                None,
            )
            .await?;
        }
        // each expired attempt's history row; NOT EXISTS: a row an older connector wrote
        // for the attempt must not make every later round fail on the primary key
        let record = format!(
            "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at, finished_at) \
             SELECT k.id, k.attempts, k.worker_id, 'lease_expired', k.attempt_started_at, {} FROM {t} k \
             WHERE k.status = 'running' AND k.lease_expires_at < {} AND k.attempt_started_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM {te} x WHERE x.task_id = k.id AND x.attempt = k.attempts)",
            d.time_ph(1),
            d.ph(2)
        );
        conn.exec("expire attempts", &record, &[d.time(ts), d.time(ts)], None).await?;
        // the last attempt ran out: the task is dead; otherwise it runs again
        let dead = format!(
            "UPDATE {t} SET status = 'failed', finished_at = {}, last_error = 'lease expired', worker_id = NULL, \
             lease_expires_at = NULL, updated_at = {} WHERE status = 'running' AND lease_expires_at < {} AND attempts >= max_attempts",
            d.ph(1),
            d.ph(2),
            d.ph(3)
        );
        let failed = conn.exec("fail expired", &dead, &[d.time(ts), d.time(ts), d.time(ts)], None).await?;
        let again = format!(
            "UPDATE {t} SET status = 'pending', last_error = 'lease expired', worker_id = NULL, lease_expires_at = NULL, \
             updated_at = {} WHERE status = 'running' AND lease_expires_at < {}",
            d.ph(1),
            d.ph(2)
        );
        let requeued = conn.exec("requeue expired", &again, &[d.time(ts), d.time(ts)], None).await?;
        Ok(requeued.rows_affected + failed.rows_affected)
    }
    .await;
    finish_tx(conn, true, r).await
}

/// Deletes completed and cancelled tasks that finished more than `days` ago, 500 at a
/// time (at most 20 batches a round), so no single statement holds locks for long or
/// bloats the tables. Failed tasks are kept for inspection until deleted by hand.
pub async fn purge_finished(conn: &mut Conn, d: &Dialect, days: u32) -> Result<u64> {
    let cutoff = now() - chrono::Duration::days(days as i64);
    let t = d.t("tasks");
    let sql = match d.provider {
        Provider::Mariadb => format!(
            "DELETE FROM {t} WHERE status IN ('completed', 'cancelled') AND finished_at < ? ORDER BY finished_at LIMIT 500"
        ),
        _ => format!(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE status IN ('completed', 'cancelled') AND finished_at < {} LIMIT 500)",
            d.ph(1)
        ),
    };
    let mut total = 0;
    for _ in 0..20 {
        let n = conn
            .exec("purge finished", &sql, &[d.time(cutoff)], None)
            .await?
            .rows_affected;
        total += n;
        if n < 500 {
            break;
        }
    }
    Ok(total)
}

/// `requeueFailedTask`: a `failed` task becomes `pending` now, with a fresh budget of
/// attempts: `maxAttempts` becomes `attempts + ` the budget it was inserted with, so
/// attempt numbers in the history stay unique and the budget never compounds.
pub async fn requeue_failed(
    conn: &mut Conn,
    d: &Dialect,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<Task> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = fetch_task(conn, d, id, true, trace.as_deref_mut()).await?;
        if task.status != "failed" {
            return Err(DbcError::InvalidTransition(format!(
                "task {id} is {}; only a failed task can be requeued",
                task.status
            )));
        }
        let ts = now();
        conn.exec(
            "requeue task",
            &format!(
                "UPDATE {} SET status = 'pending', max_attempts = attempts + attempt_budget, run_at = {}, finished_at = NULL, updated_at = {} WHERE id = {}",
                d.t("tasks"),
                d.ph(1),
                d.ph(2),
                d.ph(3)
            ),
            &[d.time(ts), d.time(ts), Param::Text(task.id.clone())],
            trace.as_deref_mut(),
        )
        .await?;
        fetch_task(conn, d, id, false, trace).await
    })
    .await
}

/// One page of `listTasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// the tasks, oldest id first
    pub tasks: Vec<Task>,
    /// cursor for the next page (`after`), or null at the end
    pub next: Option<String>,
}

/// `listTasks`: filters by queue, status and workflow; keyset pagination on the id
/// (UUIDv7, so creation order) — stable and cheap however deep the page.
pub async fn list_tasks(
    conn: &mut Conn,
    d: &Dialect,
    v: &Json,
    trace: Option<&mut Trace>,
) -> Result<TaskPage> {
    let empty = Map::new();
    let obj = match v {
        Json::Null => &empty,
        Json::Object(o) => o,
        _ => {
            return Err(DbcError::validation(
                "payload",
                "listTasks takes an object {queue?, status?, workflowId?, limit?, after?}",
            ))
        }
    };
    check_keys(
        obj,
        "",
        &["queue", "status", "workflowId", "limit", "after"],
    )?;
    let mut wheres = Vec::new();
    let mut params = Vec::new();
    if let Some(q) = opt_str(obj, "", "queue", 191)? {
        params.push(Param::Text(q));
        wheres.push(format!("queue = {}", d.ph(params.len())));
    }
    if let Some(st) = opt_str(obj, "", "status", 16)? {
        if !STATUSES.contains(&st.as_str()) {
            return Err(DbcError::validation(
                "status",
                format!("status must be one of {}", STATUSES.join(", ")),
            ));
        }
        params.push(Param::Text(st));
        wheres.push(format!("status = {}", d.ph(params.len())));
    }
    if let Some(w) = obj.get("workflowId").filter(|w| !w.is_null()) {
        params.push(Param::Text(uuid_of("workflowId", w)?));
        wheres.push(format!("workflow_id = {}", d.ph(params.len())));
    }
    if let Some(a) = obj.get("after").filter(|a| !a.is_null()) {
        params.push(Param::Text(uuid_of("after", a)?));
        wheres.push(format!("id > {}", d.ph(params.len())));
    }
    let limit = opt_int(obj, "", "limit", 1, 1000)?.unwrap_or(100);
    params.push(Param::Int(limit + 1));
    let sql = format!(
        "SELECT {TASK_COLS} FROM {} {} ORDER BY id LIMIT {}",
        d.t("tasks"),
        if wheres.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", wheres.join(" AND "))
        },
        d.ph(params.len())
    );
    let out = conn.exec("list tasks", &sql, &params, trace).await?;
    let mut tasks: Vec<Task> = out.rows.iter().map(|r| task_from_row(r)).collect();
    let next = if tasks.len() as i64 > limit {
        tasks.truncate(limit as usize);
        tasks.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(TaskPage { tasks, next })
}

/// `deleteTask`: removes a task that is not running, with its history, error log and
/// dependency links; tasks that waited for it are released.
pub async fn delete_task(
    conn: &mut Conn,
    d: &Dialect,
    id: &str,
    mut trace: Option<&mut Trace>,
) -> Result<Json> {
    in_tx(conn, async |conn: &mut Conn| {
        let task = fetch_task(conn, d, id, true, trace.as_deref_mut()).await?;
        if task.status == "running" {
            return Err(DbcError::InvalidTransition(format!(
                "task {id} is running; cancel it or wait for it before deleting"
            )));
        }
        let p = [Param::Text(task.id.clone())];
        if task.status != "completed" {
            conn.exec(
                "release dependents",
                &release_dependents_sql(d),
                &p,
                trace.as_deref_mut(),
            )
            .await?;
        }
        // history, error log and dependency rows go with it (ON DELETE CASCADE)
        conn.exec(
            "delete task",
            &format!("DELETE FROM {} WHERE id = {}", d.t("tasks"), d.ph(1)),
            &p,
            trace,
        )
        .await?;
        Ok(serde_json::json!({ "id": task.id, "deleted": true }))
    })
    .await
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
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 10_000,
        };
        for _ in 0..50 {
            let d1 = b.delay_ms(1);
            assert!((500..=1000).contains(&d1), "{d1}");
            let d10 = b.delay_ms(10);
            assert!((5000..=10_000).contains(&d10), "{d10}");
        }
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
