//! The failback's data move: every workflow, task, execution, error row and dependency
//! written to one database carried to another ([`reconcile`]), converting each value to
//! the destination provider's form. Which tables and columns it moves, and how each
//! column is carried, is the schema description of [`crate::migrate::TABLES`].

use serde::Serialize;

use crate::db::sqltext::upsert;
use crate::db::Pool;
use crate::migrate::{Kind, Table, DEPENDENCIES, ERRORS, EXECUTIONS, TASKS, WORKFLOWS};
use crate::tasks::{read_int, read_json, read_text, read_time, Dialect};
use crate::value::{parse_any_time, Param, Value};
use crate::Result;

/// What a failback moved from the fallback to the primary.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveReport {
    pub workflows: u64,
    pub tasks: u64,
    pub executions: u64,
    pub errors: u64,
    pub dependencies: u64,
    /// fallback tasks whose idempotency key already had a task in the primary: the
    /// primary's task stands, the fallback's is dropped
    pub merged_by_key: u64,
    pub ms: f64,
}

/// Rows moved per statement.
const CHUNK: usize = 200;

fn col_list(t: &Table) -> String {
    t.cols
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads rows of `t` (all columns), `where_` using the source dialect's placeholders.
async fn read(
    conn: &mut crate::db::Conn,
    d: &Dialect,
    t: &Table,
    where_: &str,
    params: &[Param],
) -> Result<Vec<Vec<Value>>> {
    let sql = format!(
        "SELECT {} FROM {} {where_} ORDER BY {}",
        col_list(t),
        d.t(t.name),
        t.key.join(", ")
    );
    Ok(conn.exec("failback read", &sql, params, None).await?.rows)
}

/// A value read from one provider as the other one stores it.
fn carry(d: &Dialect, kind: Kind, v: &Value) -> Param {
    if matches!(v, Value::Null) {
        return Param::Null;
    }
    match kind {
        Kind::Text => read_text(v).map(Param::Text).unwrap_or(Param::Null),
        Kind::Int => Param::Int(read_int(v)),
        Kind::Json => d.json(Some(&read_json(v))),
        Kind::Time => match read_time(v)
            .map(Param::Text)
            .and_then(|p| parse_any_time("time", &p).ok())
        {
            Some(t) => d.time(t),
            None => Param::Null,
        },
    }
}

/// Upserts rows into `t` on the destination: the fallback's row is the latest state.
async fn write(
    conn: &mut crate::db::Conn,
    d: &Dialect,
    t: &Table,
    rows: &[Vec<Value>],
    update: bool,
) -> Result<u64> {
    let mut n = 0;
    for chunk in rows.chunks(CHUNK) {
        let width = t.cols.len();
        let mut params = Vec::with_capacity(chunk.len() * width);
        let mut values = Vec::with_capacity(chunk.len());
        for (r, row) in chunk.iter().enumerate() {
            values.push(format!("({})", d.phs(r * width + 1, width)));
            for (i, (_, kind)) in t.cols.iter().enumerate() {
                params.push(carry(d, *kind, &row[i]));
            }
        }
        let sql = upsert(
            d.provider,
            &d.t(t.name),
            t.cols,
            t.key,
            &values.join(", "),
            update,
        );
        n += conn
            .exec("failback write", &sql, &params, None)
            .await?
            .rows_affected
            .min(chunk.len() as u64);
    }
    Ok(n)
}

fn in_list(d: &Dialect, from: usize, n: usize) -> String {
    format!("({})", d.phs(from, n))
}

/// Moves every workflow, task, execution, error row and dependency from `src` to `dst`
/// and then deletes what it moved from `src`. Rows are upserted by their ids, so running
/// it again after an interruption gives the same end state. A fallback task whose
/// idempotency key already names a different task in the primary is dropped in favour
/// of that one (its dependents point to the primary's task instead).
pub async fn reconcile(src: &Pool, sd: &Dialect, dst: &Pool, dd: &Dialect) -> Result<MoveReport> {
    let mut report = MoveReport::default();
    let mut from = src.acquire().await?;
    let mut to = dst.acquire().await?;

    // workflows first: tasks reference them
    let workflows = read(&mut from, sd, &WORKFLOWS, "", &[]).await?;
    if !workflows.is_empty() {
        to.begin().await?;
        report.workflows = write(&mut to, dd, &WORKFLOWS, &workflows, true).await?;
        to.commit().await?;
    }

    // tasks in id order, each chunk with its executions and error rows, in one transaction
    let mut replaced: Vec<(String, String)> = Vec::new();
    let mut moved: Vec<Param> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (cond, params) = match &after {
            None => (String::new(), vec![]),
            Some(a) => (
                format!("WHERE id > {}", sd.ph(1)),
                vec![Param::Text(a.clone())],
            ),
        };
        let sql = format!(
            "SELECT {} FROM {} {cond} ORDER BY id LIMIT {CHUNK}",
            col_list(&TASKS),
            sd.t("tasks"),
        );
        let mut rows = from.exec("failback read", &sql, &params, None).await?.rows;
        let Some(last) = rows.last() else {
            break;
        };
        after = read_text(&last[0]);
        // idempotency keys already taken in the primary by another task
        let keyed: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| Some((read_text(&r[0])?, read_text(&r[11])?)))
            .collect();
        if !keyed.is_empty() {
            let sql = format!(
                "SELECT id, idempotency_key FROM {} WHERE idempotency_key IN {}",
                dd.t("tasks"),
                in_list(dd, 1, keyed.len())
            );
            let keys: Vec<Param> = keyed.iter().map(|(_, k)| Param::Text(k.clone())).collect();
            for t in to.exec("failback keys", &sql, &keys, None).await?.rows {
                let (Some(pid), Some(key)) = (read_text(&t[0]), read_text(&t[1])) else {
                    continue;
                };
                if let Some((fid, _)) = keyed.iter().find(|(fid, k)| *k == key && *fid != pid) {
                    replaced.push((fid.clone(), pid));
                    moved.push(Param::Text(fid.clone()));
                }
            }
        }
        rows.retain(|r| {
            let id = read_text(&r[0]).unwrap_or_default();
            !replaced.iter().any(|(f, _)| *f == id)
        });
        let ids: Vec<Param> = rows
            .iter()
            .filter_map(|r| read_text(&r[0]).map(Param::Text))
            .collect();
        if ids.is_empty() {
            continue;
        }
        let by_task = format!("WHERE task_id IN {}", in_list(sd, 1, ids.len()));
        let execs = read(&mut from, sd, &EXECUTIONS, &by_task, &ids).await?;
        let errs = read(&mut from, sd, &ERRORS, &by_task, &ids).await?;
        to.begin().await?;
        write(&mut to, dd, &TASKS, &rows, true).await?;
        report.tasks += rows.len() as u64;
        report.executions += write(&mut to, dd, &EXECUTIONS, &execs, true).await?;
        report.errors += write(&mut to, dd, &ERRORS, &errs, false).await?;
        to.commit().await?;
        moved.extend(ids);
    }
    report.merged_by_key = replaced.len() as u64;
    if !replaced.is_empty() {
        tracing::warn!(
            tasks = replaced.len(),
            "failback: fallback tasks whose idempotency key already existed in the primary were merged into the primary's task"
        );
    }

    // dependencies (every task is there now), then error rows not tied to a task
    let mut deps = read(&mut from, sd, &DEPENDENCIES, "", &[]).await?;
    for d in deps.iter_mut() {
        for cell in d.iter_mut() {
            if let Some(id) = read_text(cell) {
                if let Some((_, pid)) = replaced.iter().find(|(f, _)| *f == id) {
                    *cell = Value::Text(pid.clone());
                }
            }
        }
    }
    deps.retain(|d| d[0] != d[1]);
    if !deps.is_empty() {
        to.begin().await?;
        report.dependencies = write(&mut to, dd, &DEPENDENCIES, &deps, false).await?;
        to.commit().await?;
    }
    let loose = read(&mut from, sd, &ERRORS, "WHERE task_id IS NULL", &[]).await?;
    report.errors += write(&mut to, dd, &ERRORS, &loose, false).await?;
    drop(to);

    // everything read is in the primary: delete exactly that from the fallback (a task's
    // dependencies, executions and error rows go with it)
    from.begin().await?;
    for ids in moved.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {} WHERE id IN {}",
            sd.t("tasks"),
            in_list(sd, 1, ids.len())
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    let loose_ids: Vec<Param> = loose
        .iter()
        .filter_map(|r| read_text(&r[0]).map(Param::Text))
        .collect();
    for ids in loose_ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {} WHERE id IN {}",
            sd.t("error_logs"),
            in_list(sd, 1, ids.len())
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    let wf_ids: Vec<Param> = workflows
        .iter()
        .filter_map(|r| read_text(&r[0]).map(Param::Text))
        .collect();
    for ids in wf_ids.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {w} WHERE id IN {} AND NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.workflow_id = {w}.id)",
            in_list(sd, 1, ids.len()),
            w = sd.t("workflows"),
            t = sd.t("tasks"),
        );
        from.exec("failback clear", &sql, ids, None).await?;
    }
    from.commit().await?;
    Ok(report)
}
