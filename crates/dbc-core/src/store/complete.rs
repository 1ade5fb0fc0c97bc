//! Completing many tasks at once where UPDATE cannot return rows (MariaDB, SQLite):
//! `sql/<dialect>/complete.sql`, one statement per step for the whole batch (PostgreSQL
//! does all steps in one statement, `complete_tasks` in `sql/postgres/claim.sql`).
//!
//! The steps, inside the caller's transaction: pick (and on MariaDB lock) the tasks that are
//! running under a live lease and keep those held by the reporting worker; write their
//! attempts' history rows; complete them, each with its own result; release their
//! dependents; read them back. So the rules are those of a single completion
//! (docs/ARCHITECTURE.md, "How a task ends"); a task the batch does not take is left
//! untouched for the one-by-one path, which gives it its exact error.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::db::{Conn, Trace};
use crate::store::statements::Sections;
use crate::store::{Completion, Store};
use crate::task::{read_text, Task};
use crate::value::Param;
use crate::Result;

/// Most completions per set of statements: 1,000 ids (3,000 parameters in the UPDATE),
/// well under MariaDB's and SQLite's parameter limits.
const CHUNK: usize = 1000;

/// The statements of a batch completion in steps (MariaDB, SQLite).
pub(crate) struct CompleteStatements {
    pick_completions: String,
    record_completions: String,
    complete_picked: String,
    release_completed: String,
    read_completed: String,
}

impl CompleteStatements {
    pub(crate) fn take(s: &mut Sections) -> Result<CompleteStatements> {
        Ok(CompleteStatements {
            pick_completions: s.take("pick_completions")?,
            record_completions: s.take("record_completions")?,
            complete_picked: s.take("complete_picked")?,
            release_completed: s.take("release_completed")?,
            read_completed: s.take("read_completed")?,
        })
    }
}

/// Completes the `items` running under a live lease held by their reporting worker, in
/// the caller's transaction: five statements per 1,000 items, however many it takes.
/// Returns the tasks it took (in no particular order).
pub(crate) async fn complete_in_steps(
    store: &Store,
    sql: &CompleteStatements,
    conn: &mut Conn,
    items: &[Completion<'_>],
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    let mut out = Vec::new();
    for chunk in items.chunks(CHUNK) {
        out.extend(complete_chunk(store, sql, conn, chunk, ts, trace.as_deref_mut()).await?);
    }
    Ok(out)
}

async fn complete_chunk(
    store: &Store,
    sql: &CompleteStatements,
    conn: &mut Conn,
    items: &[Completion<'_>],
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Task>> {
    let ids = |from: usize, n: usize| store.placeholders(from, n);
    // pick: running under a live lease, and held by the worker reporting it
    let mut params = vec![store.time(ts)];
    params.extend(items.iter().map(|c| Param::Text(c.id.to_string())));
    let pick = sql
        .pick_completions
        .replace("{{ids}}", &ids(2, items.len()));
    let picked = conn
        .exec("pick completions", &pick, &params, trace.as_deref_mut())
        .await?;
    let holder: HashMap<String, Option<String>> = picked
        .rows
        .iter()
        .filter_map(|r| read_text(&r[0]).map(|id| (id, read_text(&r[1]))))
        .collect();
    let taken: Vec<&Completion> = items
        .iter()
        .filter(|c| {
            holder
                .get(c.id)
                .is_some_and(|w| w.as_deref() == Some(c.worker_id))
        })
        .collect();
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let n = taken.len();
    let id_params = || taken.iter().map(|c| Param::Text(c.id.to_string()));
    // the attempts' history rows, from the task rows before they change
    let mut params = vec![store.time(ts), store.time(ts)];
    params.extend(id_params());
    let record = sql.record_completions.replace("{{ids}}", &ids(3, n));
    conn.exec("record completions", &record, &params, trace.as_deref_mut())
        .await?;
    // completed, each with its own result
    let mut params = Vec::with_capacity(3 * n + 3);
    let mut results = String::with_capacity(12 * n);
    for (k, c) in taken.iter().enumerate() {
        results.push_str(&format!(
            "WHEN {} THEN {} ",
            ph(store, 2 * k + 1),
            ph(store, 2 * k + 2)
        ));
        params.push(Param::Text(c.id.to_string()));
        params.push(store.json(c.result));
    }
    params.extend([store.time(ts), store.time(ts), store.time(ts)]);
    params.extend(id_params());
    let complete = sql
        .complete_picked
        .replace("{{results}}", &results)
        .replace("{{ids}}", &ids(2 * n + 4, n));
    conn.exec("complete tasks", &complete, &params, trace.as_deref_mut())
        .await?;
    // their dependents wait for as many tasks less
    let params: Vec<Param> = id_params().collect();
    let release = sql.release_completed.replace("{{ids}}", &ids(1, n));
    conn.exec(
        "release dependents",
        &release,
        &params,
        trace.as_deref_mut(),
    )
    .await?;
    let read = sql.read_completed.replace("{{ids}}", &ids(1, n));
    let out = conn.exec("read tasks", &read, &params, trace).await?;
    Task::from_rows(out.rows)
}

/// The `n`-th placeholder (1-based) of this store.
fn ph(store: &Store, n: usize) -> String {
    store.placeholders(n, 1)
}
