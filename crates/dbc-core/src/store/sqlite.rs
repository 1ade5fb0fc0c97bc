//! The SQLite store: its statements (`sql/sqlite/*.sql`) and what it does differently —
//! `?` placeholders, times as epoch milliseconds, JSON as text, multi-row inserts of 500
//! rows (`ON CONFLICT DO NOTHING` for idempotency keys), a claim in three steps, and no
//! row locks at all: every write transaction is `BEGIN IMMEDIATE`, which already keeps
//! other writers out.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::store::statements::{Sections, Statements};
use crate::store::{ClaimStatements, CompleteStatements};
use crate::value::Param;
use crate::Result;

/// The SQLite statements for one table prefix.
pub struct SqliteStore {
    pub(crate) sql: Statements,
    pub(crate) claim: ClaimStatements,
    pub(crate) complete: CompleteStatements,
}

/// A time as a parameter: milliseconds since the epoch.
pub(crate) fn time(t: DateTime<Utc>) -> Param {
    Param::Int(t.timestamp_millis())
}

/// JSON as a parameter: its text.
pub(crate) fn json(v: Option<&Json>) -> Param {
    v.map_or(Param::Null, |j| Param::Text(j.to_string()))
}

impl SqliteStore {
    /// Loads the statements for `prefix`.
    pub fn new(prefix: &str) -> Result<SqliteStore> {
        let mut s = Sections::parse(
            "sqlite",
            &[
                include_str!("sql/sqlite/tasks.sql"),
                include_str!("sql/sqlite/status.sql"),
                include_str!("sql/sqlite/claim.sql"),
                include_str!("sql/sqlite/complete.sql"),
                include_str!("sql/sqlite/maintenance.sql"),
                include_str!("sql/sqlite/workflows.sql"),
                include_str!("sql/sqlite/queues.sql"),
                include_str!("sql/sqlite/schedules.sql"),
                include_str!("sql/sqlite/lease.sql"),
                include_str!("sql/sqlite/transfer.sql"),
                include_str!("sql/sqlite/unique.sql"),
                include_str!("sql/sqlite/dead_letter.sql"),
            ],
            prefix,
        );
        Ok(SqliteStore {
            sql: Statements::take(&mut s)?,
            claim: ClaimStatements::take(&mut s)?,
            complete: CompleteStatements::take(&mut s)?,
        })
    }
}
