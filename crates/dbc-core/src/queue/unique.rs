//! Uniqueness windows (`uniqueFor`, docs/API.md "Uniqueness"): an idempotency key keeps a
//! second task out for as long as its insert's scope says, not only until the first task
//! is purged.
//!
//! The key stays in the one unique column every provider already enforces; nothing is
//! done when a task ends. Instead an insert whose key is held frees it lazily, in its own
//! transaction: when the task holding the key no longer counts as a duplicate under the
//! new insert's scope (`active`: the holder ended; a period: the holder was inserted at
//! least that long ago), the holder's key moves to `released_key` by a conditional update
//! and the task is inserted again. Two inserts racing for one key: the update of one
//! waits for the other's (row lock; SQLite: one writer), finds the key gone and changes
//! nothing, and that insert then finds the new holder, so it is deduplicated against it.
//! So no ending path (completion, failure, cancellation, lease expiry, batch settle)
//! needs to know about keys.

use chrono::{DateTime, Utc};

use crate::db::{Conn, Trace};
use crate::store::Store;
use crate::task::input::NewTask;
use crate::task::unique::UniqueFor;
use crate::task::{Task, TaskStatus};
use crate::Result;

/// Rounds of free-and-insert for one call: each round frees keys whose holder another
/// insert did not take first; a key can only be raced for a bounded number of times in
/// one transaction before the new holder is one this scope keeps.
const ROUNDS: usize = 3;

/// Inserts `tasks` (the store's insert: a duplicate key inserts nothing), then frees the
/// keys that the scoped tasks among them may take over and inserts those again. Returns
/// how many rows were inserted.
pub async fn insert_tasks(
    conn: &mut Conn,
    store: &Store,
    tasks: &[NewTask],
    ts: DateTime<Utc>,
    mut trace: Option<&mut Trace>,
) -> Result<u64> {
    let mut inserted = store
        .insert_tasks(conn, tasks, ts, trace.as_deref_mut())
        .await?;
    let mut scoped: Vec<&NewTask> = tasks
        .iter()
        .filter(|t| t.unique_for.is_some() && t.idempotency_key.is_some())
        .collect();
    for _ in 0..ROUNDS {
        if scoped.is_empty() {
            break;
        }
        let keys: Vec<String> = scoped
            .iter()
            .filter_map(|t| t.idempotency_key.clone())
            .collect();
        let holders = store
            .find_duplicates(conn, &keys, trace.as_deref_mut())
            .await?;
        let mut again: Vec<NewTask> = Vec::new();
        for t in &scoped {
            let (Some(key), Some(scope)) = (&t.idempotency_key, t.unique_for) else {
                continue;
            };
            let holder = holders
                .iter()
                .find(|h| h.idempotency_key.as_ref() == Some(key));
            let freed = match holder {
                // inserted, or deduplicated against a task this scope keeps
                Some(h) if h.id == t.id || !may_take_over(h, scope, ts) => continue,
                Some(h) => release(conn, store, h, key, scope, ts, trace.as_deref_mut()).await?,
                // freed by another insert since ours: the key is free to take
                None => true,
            };
            if freed {
                again.push((*t).clone());
            }
        }
        if again.is_empty() {
            break;
        }
        inserted += store
            .insert_tasks(conn, &again, ts, trace.as_deref_mut())
            .await?;
        let ids: Vec<&str> = again.iter().map(|t| t.id.as_str()).collect();
        scoped.retain(|t| ids.contains(&t.id.as_str()));
    }
    Ok(inserted)
}

/// Whether a task holding the key is no duplicate of an insert with `scope` at `ts`.
fn may_take_over(holder: &Task, scope: UniqueFor, ts: DateTime<Utc>) -> bool {
    match scope {
        UniqueFor::Active => !matches!(holder.status, TaskStatus::Pending | TaskStatus::Running),
        UniqueFor::Period(ms) => {
            created_at(holder).is_some_and(|c| c <= ts - chrono::Duration::milliseconds(ms))
        }
    }
}

fn created_at(t: &Task) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&t.created_at)
        .ok()
        .map(|c| c.with_timezone(&Utc))
}

/// Moves the key off `holder`, on the same condition checked again in the statement.
async fn release(
    conn: &mut Conn,
    store: &Store,
    holder: &Task,
    key: &str,
    scope: UniqueFor,
    ts: DateTime<Utc>,
    trace: Option<&mut Trace>,
) -> Result<bool> {
    match scope {
        UniqueFor::Active => store.release_ended_key(conn, &holder.id, key, trace).await,
        UniqueFor::Period(ms) => {
            let cutoff = ts - chrono::Duration::milliseconds(ms);
            store
                .release_old_key(conn, &holder.id, key, cutoff, trace)
                .await
        }
    }
}
