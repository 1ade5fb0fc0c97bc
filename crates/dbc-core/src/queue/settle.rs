//! Batch settle: `updateTaskStatus` with an array of status changes (docs/API.md,
//! "Settle many tasks in one message"). The changes are validated as a whole by
//! [`StatusChange::parse_many`]; here each runs as a single call does.

use serde_json::Value as Json;

use crate::db::{Conn, Trace};
use crate::queue::service;
use crate::store::Store;
use crate::task::input::StatusChange;
use crate::task::status::Backoff;
use crate::{DbcError, Result};

/// `updateTaskStatus` with an array (a batch settle): each change runs as a single call
/// runs ([`service::update_task_status`]: the same state machine and the same rules for every
/// ending), in input order, each in its own transaction, so a change that fails (an
/// unknown task, a transition the state machine refuses, a lost lease) undoes none of the
/// others. The answer has one outcome per change, in input order: the updated task, or
/// `{id, error: {code, message}}`. Once the connection or time itself fails, the changes
/// not yet run get that error without running.
pub async fn settle_many(
    conn: &mut Conn,
    store: &Store,
    changes: &[StatusChange],
    backoff: Backoff,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Json>> {
    let mut out = Vec::with_capacity(changes.len());
    let mut broken: Option<DbcError> = None;
    for change in changes {
        let r = match &broken {
            Some(e) => Err(e.clone()),
            None => {
                service::update_task_status(conn, store, change, backoff, trace.as_deref_mut())
                    .await
            }
        };
        out.push(match r {
            Ok(task) => {
                serde_json::to_value(task).map_err(|e| DbcError::Internal(e.to_string()))?
            }
            Err(e) => {
                if matches!(
                    e,
                    DbcError::Connection { .. }
                        | DbcError::PoolTimeout(_)
                        | DbcError::QueryTimeout(_)
                ) {
                    broken.get_or_insert(e.clone());
                }
                let mut error = serde_json::json!({"code": e.code(), "message": e.to_string()});
                if let Some(reason) = e.reason() {
                    error["reason"] = reason.into();
                }
                serde_json::json!({ "id": change.id, "error": error })
            }
        });
    }
    Ok(out)
}
