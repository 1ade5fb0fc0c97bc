//! Uniqueness windows' statements (`sql/<dialect>/unique.sql`): freeing an idempotency
//! key held by a task that no longer counts as a duplicate. When a key counts is
//! `crate::queue::unique`'s.

use chrono::{DateTime, Utc};

use crate::db::{Conn, Trace};
use crate::store::common::text;
use crate::store::Store;
use crate::Result;

impl Store {
    /// Moves `key` off task `id` (into `released_key`) if the task has ended; true when it
    /// did (false: another insert freed it first, or the task runs again).
    pub async fn release_ended_key(
        &self,
        conn: &mut Conn,
        id: &str,
        key: &str,
        trace: Option<&mut Trace>,
    ) -> Result<bool> {
        let sql = &self.sql().release_ended_key;
        let out = conn
            .exec("release key", sql, &[text(id), text(key)], trace)
            .await?;
        Ok(out.rows_affected > 0)
    }

    /// Moves `key` off task `id` if the task was inserted at or before `cutoff`; true when
    /// it did.
    pub async fn release_old_key(
        &self,
        conn: &mut Conn,
        id: &str,
        key: &str,
        cutoff: DateTime<Utc>,
        trace: Option<&mut Trace>,
    ) -> Result<bool> {
        let sql = &self.sql().release_old_key;
        let params = [text(id), text(key), self.time(cutoff)];
        let out = conn.exec("release key", sql, &params, trace).await?;
        Ok(out.rows_affected > 0)
    }
}
