//! One writer at a time per SQLite file, queued in Rust.
//!
//! SQLite lets one connection write at a time. Left to itself, every other writer sleeps
//! and retries inside SQLite's busy handler (1, 2, 5 … 100 ms naps up to the busy
//! timeout), so under load writers spend most of their time asleep while the lock is
//! free, and an unlucky one waits seconds. Here the writers of this process queue on one
//! fair async mutex per database file instead: a transaction (`BEGIN IMMEDIATE` /
//! `BEGIN EXCLUSIVE`) and any statement outside a transaction that may write hold it, and
//! the next writer starts the moment the previous one commits. Readers (a `SELECT`
//! outside a transaction) take no lock: in WAL mode they read beside the writer.
//!
//! The mutex is shared by every pool of this process that opens the same file (found by
//! its canonical path), so two connectors on one file do not fight through SQLite either.
//! Other processes on the same file still meet SQLite's own busy handler, as before.
//! `:memory:` needs none: its pool has exactly one connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{DbcError, Result};

/// The write lock of one SQLite file, with the longest wait for it.
#[derive(Debug, Clone)]
pub struct WriteLock {
    mutex: Arc<Mutex<()>>,
    /// the acquire timeout, which is also the connection's SQLite busy timeout
    wait: Duration,
}

/// A held write lock; released when dropped.
pub type WriteGuard = OwnedMutexGuard<()>;

fn registry() -> &'static StdMutex<HashMap<PathBuf, Weak<Mutex<()>>>> {
    static REG: std::sync::OnceLock<StdMutex<HashMap<PathBuf, Weak<Mutex<()>>>>> =
        std::sync::OnceLock::new();
    REG.get_or_init(Default::default)
}

/// The file's key: its canonical path when it exists, else the absolute path as given
/// (a file not created yet; the pool creates it on first connect).
fn key(file: &str) -> PathBuf {
    let p = Path::new(file);
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

impl WriteLock {
    /// The write lock of `file`, shared with every other pool of this process on it.
    pub fn for_file(file: &str, wait: Duration) -> WriteLock {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        let k = key(file);
        let mutex = match reg.get(&k).and_then(Weak::upgrade) {
            Some(m) => m,
            None => {
                let m = Arc::new(Mutex::new(()));
                reg.insert(k, Arc::downgrade(&m));
                m
            }
        };
        WriteLock { mutex, wait }
    }

    /// Waits for the lock, at most the busy timeout; past it the same error as SQLite's
    /// own `database is locked` after its busy timeout (`DBC_QUERY_TIMEOUT`).
    pub async fn acquire(&self) -> Result<WriteGuard> {
        match tokio::time::timeout(self.wait, self.mutex.clone().lock_owned()).await {
            Ok(g) => Ok(g),
            Err(_) => Err(DbcError::QueryTimeout(format!(
                "database is locked: another write on this SQLite file held the write lock \
                 for more than {} ms",
                self.wait.as_millis()
            ))),
        }
    }
}

/// True when a statement outside a transaction may write and so must hold the lock:
/// anything but a plain `SELECT` / `VALUES` / `EXPLAIN` (after leading comments).
pub fn may_write(sql: &str) -> bool {
    let rest = super::sqlite::skip_comments(sql);
    let head: String = rest
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    !(head.starts_with("select") || head.starts_with("values") || head.starts_with("explain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_take_no_lock() {
        assert!(!may_write("SELECT 1"));
        assert!(!may_write("  -- c\n select * from t"));
        assert!(may_write("INSERT INTO t VALUES (1)"));
        assert!(may_write("WITH x AS (SELECT 1) UPDATE t SET a = 1"));
        assert!(may_write("PRAGMA journal_mode = WAL"));
    }

    #[test]
    fn one_lock_per_file() {
        let dir = std::env::temp_dir().join(format!("dbc-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.db");
        std::fs::write(&f, b"").unwrap();
        let a = WriteLock::for_file(f.to_str().unwrap(), Duration::from_secs(1));
        let b = WriteLock::for_file(
            dir.join(".").join("a.db").to_str().unwrap(),
            Duration::from_secs(1),
        );
        let c = WriteLock::for_file(dir.join("b.db").to_str().unwrap(), Duration::from_secs(1));
        assert!(Arc::ptr_eq(&a.mutex, &b.mutex));
        assert!(!Arc::ptr_eq(&a.mutex, &c.mutex));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
