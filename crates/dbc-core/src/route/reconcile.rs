//! The failback's data move: every workflow, task, execution, error row, dependency and
//! queue state (paused or resumed) and schedule written to one database carried to another ([`reconcile`]): in which order, in which
//! transactions, what an idempotency key already in the destination means, and what is
//! deleted from the source afterwards. Its statements are the stores'
//! ([`crate::store::transfer`]); which tables and columns it moves, and how each column
//! is carried, is the schema description of [`crate::migrate::TABLES`].

use serde::Serialize;

use crate::db::Pool;
use crate::migrate::{DEPENDENCIES, ERRORS, EXECUTIONS, QUEUES, SCHEDULES, TASKS, WORKFLOWS};
use crate::store::transfer::{Moved, Rows};
use crate::store::Store;
use crate::task::read_text;
use crate::value::{Param, Value};
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
    /// queues paused or resumed on the fallback: that state replaces the primary's
    pub queues: u64,
    /// schedules created or changed on the fallback: each replaces the primary's of its name
    pub schedules: u64,
    /// fallback tasks whose idempotency key already had a task in the primary: the
    /// primary's task stands, the fallback's is dropped
    pub merged_by_key: u64,
    pub ms: f64,
}

/// Moves every workflow, task, execution, error row, dependency, queue state and schedule from
/// `src` to `dst` and then deletes what it moved from `src`. A queue paused or resumed on
/// `src` (during the outage) is so in `dst` afterwards. Rows are upserted by their ids, so running
/// it again after an interruption gives the same end state. A fallback task whose
/// idempotency key already names a different task in the primary is dropped in favour
/// of that one (its dependents point to the primary's task instead).
pub async fn reconcile(
    src: &Pool,
    src_store: &Store,
    dst: &Pool,
    dst_store: &Store,
) -> Result<MoveReport> {
    let mut report = MoveReport::default();
    let mut from = src.acquire().await?;
    let mut to = dst.acquire().await?;

    // workflows first: tasks reference them
    let workflows = src_store
        .read_rows(&mut from, &WORKFLOWS, Rows::All)
        .await?;
    if !workflows.is_empty() {
        to.begin().await?;
        report.workflows = dst_store
            .write_rows(&mut to, &WORKFLOWS, &workflows, true)
            .await?;
        to.commit().await?;
    }

    // tasks in id order, each chunk with its executions and error rows, in one transaction
    let mut replaced: Vec<(String, String)> = Vec::new();
    let mut moved: Vec<Param> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut rows = src_store.tasks_after(&mut from, after.as_deref()).await?;
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
            let keys: Vec<String> = keyed.iter().map(|(_, k)| k.clone()).collect();
            for (pid, key) in dst_store.tasks_with_keys(&mut to, &keys).await? {
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
        let execs = src_store
            .read_rows(&mut from, &EXECUTIONS, Rows::OfTasks(&ids))
            .await?;
        let errs = src_store
            .read_rows(&mut from, &ERRORS, Rows::OfTasks(&ids))
            .await?;
        to.begin().await?;
        dst_store.write_rows(&mut to, &TASKS, &rows, true).await?;
        report.tasks += rows.len() as u64;
        report.executions += dst_store
            .write_rows(&mut to, &EXECUTIONS, &execs, true)
            .await?;
        report.errors += dst_store.write_rows(&mut to, &ERRORS, &errs, false).await?;
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
    let mut deps = src_store
        .read_rows(&mut from, &DEPENDENCIES, Rows::All)
        .await?;
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
        report.dependencies = dst_store
            .write_rows(&mut to, &DEPENDENCIES, &deps, false)
            .await?;
        to.commit().await?;
    }
    let loose = src_store.read_rows(&mut from, &ERRORS, Rows::Loose).await?;
    report.errors += dst_store
        .write_rows(&mut to, &ERRORS, &loose, false)
        .await?;
    // a pause or resume during the outage is the latest word on its queue
    let queues = src_store.read_rows(&mut from, &QUEUES, Rows::All).await?;
    report.queues = dst_store
        .write_rows(&mut to, &QUEUES, &queues, true)
        .await?;
    // likewise a schedule written on the fallback (created, paused, or moved on by a tick)
    let schedules = src_store
        .read_rows(&mut from, &SCHEDULES, Rows::All)
        .await?;
    report.schedules = dst_store
        .write_rows(&mut to, &SCHEDULES, &schedules, true)
        .await?;
    drop(to);

    // everything read is in the primary: delete exactly that from the fallback (a task's
    // dependencies, executions and error rows go with it)
    let ids_of = |rows: &[Vec<Value>]| -> Vec<Param> {
        rows.iter()
            .filter_map(|r| read_text(&r[0]).map(Param::Text))
            .collect()
    };
    from.begin().await?;
    src_store
        .delete_moved(&mut from, Moved::Tasks, &moved)
        .await?;
    src_store
        .delete_moved(&mut from, Moved::Errors, &ids_of(&loose))
        .await?;
    src_store
        .delete_moved(&mut from, Moved::Workflows, &ids_of(&workflows))
        .await?;
    src_store
        .delete_moved(&mut from, Moved::Queues, &ids_of(&queues))
        .await?;
    src_store
        .delete_moved(&mut from, Moved::Schedules, &ids_of(&schedules))
        .await?;
    from.commit().await?;
    Ok(report)
}
