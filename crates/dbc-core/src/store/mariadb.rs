//! The MariaDB store: its statements (`sql/mariadb/*.sql`) and what it does differently —
//! `?` placeholders, times as `DATETIME(3)` text, JSON as text, multi-row inserts of 500
//! rows (`ON DUPLICATE KEY UPDATE id = id` for idempotency keys), a claim in three steps
//! (`FOR UPDATE SKIP LOCKED`, then UPDATE, then a re-read: no `RETURNING`), and the duplicate count it cannot give (see
//! [`MariadbStore::counts_duplicates_as_inserted`]).

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::store::statements::{Sections, Statements};
use crate::store::{ClaimStatements, CompleteStatements};
use crate::value::Param;
use crate::Result;

/// The MariaDB statements for one table prefix.
pub struct MariadbStore {
    pub(crate) sql: Statements,
    pub(crate) claim: ClaimStatements,
    pub(crate) complete: CompleteStatements,
}

/// A time as a parameter: `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for a `DATETIME(3)` column.
pub(crate) fn time(t: DateTime<Utc>) -> Param {
    Param::Text(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

/// JSON as a parameter: its text.
pub(crate) fn json(v: Option<&Json>) -> Param {
    v.map_or(Param::Null, |j| Param::Text(j.to_string()))
}

impl MariadbStore {
    /// Loads the statements for `prefix`.
    pub fn new(prefix: &str) -> Result<MariadbStore> {
        let mut s = Sections::parse(
            "mariadb",
            &[
                include_str!("sql/mariadb/tasks.sql"),
                include_str!("sql/mariadb/status.sql"),
                include_str!("sql/mariadb/claim.sql"),
                include_str!("sql/mariadb/complete.sql"),
                include_str!("sql/mariadb/maintenance.sql"),
                include_str!("sql/mariadb/workflows.sql"),
                include_str!("sql/mariadb/queues.sql"),
                include_str!("sql/mariadb/schedules.sql"),
                include_str!("sql/mariadb/lease.sql"),
                include_str!("sql/mariadb/transfer.sql"),
                include_str!("sql/mariadb/unique.sql"),
                include_str!("sql/mariadb/dead_letter.sql"),
            ],
            prefix,
        );
        Ok(MariadbStore {
            sql: Statements::take(&mut s)?,
            claim: ClaimStatements::take(&mut s)?,
            complete: CompleteStatements::take(&mut s)?,
        })
    }

    /// MariaDB counts a duplicate "updated" to itself as affected (sqlx sets
    /// CLIENT_FOUND_ROWS), so an insert's count cannot reveal duplicates: they are
    /// looked up whenever a task has an idempotency key.
    pub(crate) fn counts_duplicates_as_inserted(&self) -> bool {
        true
    }
}
