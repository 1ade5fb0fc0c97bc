//! The statement groups of the connector's background rounds (`sql/<dialect>/maintenance.sql`):
//! the lease reaper's (run by `crate::queue::service::reap_expired`, under the rules of
//! every ending) and retention's, and the queue depth for metrics. Like [`super::common`],
//! each runs the same way on every database, each in its dialect's text.

use chrono::{DateTime, Utc};

use crate::db::Conn;
use crate::store::Store;
use crate::task::{read_int, read_text};
use crate::Result;

/// A task whose lease expired, as the lease reaper read it (locked until the
/// transaction ends, where the database has row locks).
#[derive(Debug, Clone)]
pub struct Expired {
    pub id: String,
    /// the attempt that expired
    pub attempts: i64,
    pub max_attempts: i64,
    /// the worker that held the lease
    pub worker_id: Option<String>,
}

impl Expired {
    /// Whether the expired attempt was the task's last: the task is dead.
    pub fn was_last(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

impl Store {
    /// Whether any lease expired before `at` (one indexed read, no lock).
    pub async fn any_expired(&self, conn: &mut Conn, at: DateTime<Utc>) -> Result<bool> {
        let sql = &self.sql().find_expired;
        let out = conn
            .exec("find expired", sql, &[self.time(at)], None)
            .await?;
        Ok(!out.rows.is_empty())
    }

    /// The tasks whose lease expired before `at`, locked until the transaction ends
    /// (PostgreSQL, MariaDB: a worker finishing one of them now, or another runtime's
    /// reaper, waits or is waited for; SQLite's write transaction already excludes other
    /// writers).
    pub async fn select_expired(&self, conn: &mut Conn, at: DateTime<Utc>) -> Result<Vec<Expired>> {
        let sql = &self.sql().select_expired;
        let out = conn
            .exec("select expired", sql, &[self.time(at)], None)
            .await?;
        Ok(out
            .rows
            .iter()
            .map(|r| Expired {
                id: read_text(&r[0]).unwrap_or_default(),
                attempts: read_int(&r[1]),
                max_attempts: read_int(&r[2]),
                worker_id: read_text(&r[3]),
            })
            .collect())
    }

    /// The history rows of the attempts whose lease expired before `at`.
    pub async fn record_expired_attempts(&self, conn: &mut Conn, at: DateTime<Utc>) -> Result<()> {
        let sql = &self.sql().record_expired_attempts;
        let params = [self.time(at), self.time(at)];
        conn.exec("expire attempts", sql, &params, None).await?;
        Ok(())
    }

    /// `running → failed` for expired tasks that had no attempt left; how many.
    pub async fn fail_expired(&self, conn: &mut Conn, at: DateTime<Utc>) -> Result<u64> {
        let sql = &self.sql().fail_expired;
        let params = [self.time(at), self.time(at), self.time(at)];
        let out = conn.exec("fail expired", sql, &params, None).await?;
        Ok(out.rows_affected)
    }

    /// `running → pending` for the other expired tasks; how many.
    pub async fn requeue_expired(&self, conn: &mut Conn, at: DateTime<Utc>) -> Result<u64> {
        let sql = &self.sql().requeue_expired;
        let params = [self.time(at), self.time(at)];
        let out = conn.exec("requeue expired", sql, &params, None).await?;
        Ok(out.rows_affected)
    }

    /// Deletes up to 500 completed or cancelled tasks that finished before `cutoff`.
    pub async fn purge_finished(&self, conn: &mut Conn, cutoff: DateTime<Utc>) -> Result<u64> {
        let sql = &self.sql().purge_finished;
        let out = conn
            .exec("purge finished", sql, &[self.time(cutoff)], None)
            .await?;
        Ok(out.rows_affected)
    }

    /// How many tasks each queue holds in each status (queue, status, count), in that
    /// order.
    pub async fn count_by_queue_and_status(
        &self,
        conn: &mut Conn,
    ) -> Result<Vec<(String, String, i64)>> {
        let sql = &self.sql().count_by_queue_and_status;
        let out = conn.exec("queue depth", sql, &[], None).await?;
        Ok(out
            .rows
            .iter()
            .map(|r| {
                let queue = read_text(&r[0]).unwrap_or_default();
                (queue, read_text(&r[1]).unwrap_or_default(), read_int(&r[2]))
            })
            .collect())
    }
}
