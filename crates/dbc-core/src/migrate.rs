//! The connector's own migrations: versioned SQL per provider, embedded at build time,
//! applied under a lock so that runtimes starting together do not race.
//!
//! Each file's `{{prefix}}` becomes the configured table prefix. The applied versions
//! are recorded in `<prefix>migrations`, never in a host application's
//! `_sqlx_migrations`. Locks: PostgreSQL `pg_advisory_xact_lock` (the whole set runs in
//! one transaction: DDL is transactional there), MariaDB `GET_LOCK` (DDL commits
//! implicitly, so each version is recorded right after it ran), SQLite `BEGIN EXCLUSIVE`.
//!
//! Long (over 600 lines) because the schema description ([`TABLES`]: every table's
//! columns) stays beside the migrations it describes, with the test that checks the two
//! against each other.

use crate::db::{Conn, Pool};
use crate::value::{Param, Value};
use crate::{DbcError, Provider, Result};

/// One migration, with its SQL for every provider (same version everywhere).
pub struct Migration {
    /// version number, the NNNN of the file name
    pub version: i64,
    /// the file name's rest
    pub name: &'static str,
    postgres: &'static str,
    mariadb: &'static str,
    sqlite: &'static str,
}

macro_rules! migration {
    ($version:expr, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            postgres: include_str!(concat!("../../../migrations/postgres/", $file, ".sql")),
            mariadb: include_str!(concat!("../../../migrations/mariadb/", $file, ".sql")),
            sqlite: include_str!(concat!("../../../migrations/sqlite/", $file, ".sql")),
        }
    };
}

/// Every migration, in order.
pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_init"),
    migration!(2, "0002_partial_indexes"),
    migration!(3, "0003_attempt_on_task"),
    migration!(4, "0004_queues"),
    migration!(5, "0005_task_progress"),
    migration!(6, "0006_schedules"),
    migration!(7, "0007_unique_and_dead_letter"),
];

// The schema the migrations build, described once for the failback's move between
// providers; `tables_match_the_migrations` keeps it equal to what the migrations create.

/// How a column's values are carried between providers (the failback's move).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Json,
    Time,
}

use Kind::{Int as I, Json as J, Text as T, Time as D};

/// One table of the connector's schema as the migrations leave it.
pub struct Table {
    /// its name without the prefix
    pub name: &'static str,
    /// every column, in order, with how its values are carried
    pub cols: &'static [(&'static str, Kind)],
    /// the primary key's columns
    pub key: &'static [&'static str],
}

pub const WORKFLOWS: Table = Table {
    name: "workflows",
    cols: &[
        ("id", T),
        ("name", T),
        ("metadata", J),
        ("created_at", D),
        ("updated_at", D),
    ],
    key: &["id"],
};

pub const TASKS: Table = Table {
    name: "tasks",
    cols: &[
        ("id", T),
        ("queue", T),
        ("name", T),
        ("payload", J),
        ("status", T),
        ("priority", I),
        ("run_at", D),
        ("attempts", I),
        ("max_attempts", I),
        ("attempt_budget", I),
        ("workflow_id", T),
        ("idempotency_key", T),
        ("deps_pending", I),
        ("worker_id", T),
        ("lease_expires_at", D),
        ("result", J),
        ("last_error", T),
        ("created_at", D),
        ("updated_at", D),
        ("started_at", D),
        ("finished_at", D),
        // start of the latest attempt (the one in progress while running), its progress
        ("attempt_started_at", D),
        ("progress", J),
        ("released_key", T),
        ("dead_letter_of", T),
    ],
    key: &["id"],
};

pub const EXECUTIONS: Table = Table {
    name: "task_executions",
    cols: &[
        ("task_id", T),
        ("attempt", I),
        ("worker_id", T),
        ("status", T),
        ("started_at", D),
        ("finished_at", D),
        ("duration_ms", I),
    ],
    key: &["task_id", "attempt"],
};

pub const ERRORS: Table = Table {
    name: "error_logs",
    cols: &[
        ("id", T),
        ("task_id", T),
        ("attempt", I),
        ("operation", T),
        ("code", T),
        ("message", T),
        ("sql_state", T),
        ("provider", T),
        ("created_at", D),
    ],
    key: &["id"],
};

pub const DEPENDENCIES: Table = Table {
    name: "task_dependencies",
    cols: &[("task_id", T), ("depends_on", T)],
    key: &["task_id", "depends_on"],
};

/// A queue's own state: paused or not, its dead-letter queue (a row once set).
pub const QUEUES: Table = Table {
    name: "queues",
    cols: &[
        ("queue", T),
        ("paused_at", D),
        ("updated_at", D),
        ("dead_letter_queue", T),
    ],
    key: &["queue"],
};

/// Schedules: named recurring tasks (`crate::queue::schedules`).
#[rustfmt::skip]
pub const SCHEDULES: Table = Table {
    name: "schedules",
    cols: &[("name", T), ("cron", T), ("time_zone", T), ("queue", T), ("task_name", T),
        ("payload", J), ("priority", I), ("max_attempts", I), ("paused_at", D),
        ("next_run_at", D), ("last_run_at", D), ("created_at", D), ("updated_at", D)],
    key: &["name"],
};

/// Every table of the connector's data (not its migrations record), parents first.
pub const TABLES: &[&Table] = &[
    &WORKFLOWS,
    &TASKS,
    &EXECUTIONS,
    &ERRORS,
    &DEPENDENCIES,
    &QUEUES,
    &SCHEDULES,
];

impl Migration {
    fn sql(&self, provider: Provider, prefix: &str) -> String {
        let text = match provider {
            Provider::Postgres => self.postgres,
            Provider::Mariadb => self.mariadb,
            Provider::Sqlite => self.sqlite,
        };
        text.replace("{{prefix}}", prefix)
    }

    fn checksum(&self, provider: Provider) -> String {
        let text = match provider {
            Provider::Postgres => self.postgres,
            Provider::Mariadb => self.mariadb,
            Provider::Sqlite => self.sqlite,
        };
        // FNV-1a: enough to notice an edited migration file
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// An applied migration.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// version number
    pub version: i64,
    /// name
    pub name: String,
    /// when it was applied (ISO-8601)
    pub applied_at: String,
}

/// A migration not applied yet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pending {
    /// version number
    pub version: i64,
    /// name
    pub name: String,
}

/// Applied and pending migrations of one database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaStatus {
    /// the provider
    pub provider: Provider,
    /// applied, oldest first
    pub applied: Vec<Applied>,
    /// pending, oldest first
    pub pending: Vec<Pending>,
}

fn ph(provider: Provider, n: usize) -> String {
    match provider {
        Provider::Postgres => format!("${n}"),
        _ => "?".to_string(),
    }
}

fn table_ddl(provider: Provider, prefix: &str) -> String {
    match provider {
        Provider::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {prefix}migrations (version bigint PRIMARY KEY, name text NOT NULL, \
             checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ),
        Provider::Mariadb => format!(
            "CREATE TABLE IF NOT EXISTS {prefix}migrations (version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, \
             checksum VARCHAR(32) NOT NULL, applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE = InnoDB"
        ),
        Provider::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {prefix}migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        ),
    }
}

async fn read_applied(conn: &mut Conn, prefix: &str) -> Result<Vec<Applied>> {
    let out = conn
        .exec(
            "migrations",
            &format!("SELECT version, name, applied_at FROM {prefix}migrations ORDER BY version"),
            &[],
            None,
        )
        .await?;
    Ok(out
        .rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let version = match it.next() {
                Some(Value::Int(v)) => v,
                Some(Value::Text(t)) => t.parse().unwrap_or(0),
                _ => 0,
            };
            let text = |v: Option<Value>| match v {
                Some(Value::Text(t)) => t,
                _ => String::new(),
            };
            let name = text(it.next());
            let applied_at = it
                .next()
                .as_ref()
                .and_then(crate::task::read_time)
                .unwrap_or_default();
            Applied {
                version,
                name,
                applied_at,
            }
        })
        .collect())
}

fn schema_err(e: DbcError, what: &str) -> DbcError {
    match e {
        DbcError::Schema(_) | DbcError::Connection { .. } | DbcError::PoolTimeout(_) => e,
        other => DbcError::Schema(format!("{what}: {other}")),
    }
}

/// Applied and pending migrations, without changing anything.
pub async fn status(pool: &Pool, prefix: &str) -> Result<SchemaStatus> {
    let provider = pool.provider();
    let mut conn = pool.acquire().await?;
    let exists = table_exists(&mut conn, prefix).await?;
    let applied = if exists {
        read_applied(&mut conn, prefix).await?
    } else {
        Vec::new()
    };
    Ok(SchemaStatus {
        provider,
        pending: pending_of(&applied),
        applied,
    })
}

fn pending_of(applied: &[Applied]) -> Vec<Pending> {
    MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| Pending {
            version: m.version,
            name: m.name.to_string(),
        })
        .collect()
}

async fn table_exists(conn: &mut Conn, prefix: &str) -> Result<bool> {
    let (sql, p) = match conn.provider() {
        Provider::Postgres => (
            "SELECT count(*)::int FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
            format!("{prefix}migrations"),
        ),
        Provider::Mariadb => (
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?",
            format!("{prefix}migrations"),
        ),
        Provider::Sqlite => (
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            format!("{prefix}migrations"),
        ),
    };
    let out = conn.exec("schema", sql, &[Param::Text(p)], None).await?;
    Ok(matches!(out.rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0))
}

/// Applies every pending migration under the provider's lock; returns what it applied.
pub async fn migrate(pool: &Pool, prefix: &str) -> Result<Vec<Pending>> {
    let provider = pool.provider();
    let mut conn = pool.acquire().await?;
    let result = match provider {
        Provider::Postgres => {
            conn.begin().await?;
            let r = async {
                // one lock id per prefix: different prefixes migrate independently
                let key = lock_key(prefix);
                conn.exec(
                    "lock",
                    "SELECT pg_advisory_xact_lock($1)",
                    &[Param::Int(key)],
                    None,
                )
                .await?;
                apply_pending(&mut conn, prefix, true).await
            }
            .await;
            match r {
                Ok(done) => conn.commit().await.map(|_| done),
                Err(e) => {
                    let _ = conn.rollback().await;
                    Err(e)
                }
            }
        }
        Provider::Mariadb => {
            let name = format!("dbc_migrate_{prefix}");
            let got = conn
                .exec(
                    "lock",
                    "SELECT GET_LOCK(?, 60)",
                    &[Param::Text(name.clone())],
                    None,
                )
                .await?;
            if !matches!(
                got.rows.first().and_then(|r| r.first()),
                Some(Value::Int(1))
            ) {
                return Err(DbcError::Schema(
                    "could not take the migration lock within 60 s".into(),
                ));
            }
            let r = apply_pending(&mut conn, prefix, false).await;
            let _ = conn
                .exec(
                    "unlock",
                    "SELECT RELEASE_LOCK(?)",
                    &[Param::Text(name)],
                    None,
                )
                .await;
            r
        }
        Provider::Sqlite => {
            conn.in_tx_exclusive().await?;
            match apply_pending(&mut conn, prefix, true).await {
                Ok(done) => conn.commit().await.map(|_| done),
                Err(e) => {
                    let _ = conn.rollback().await;
                    Err(e)
                }
            }
        }
    };
    result.map_err(|e| schema_err(e, "migration failed"))
}

fn lock_key(prefix: &str) -> i64 {
    let mut h: i64 = 0x64_6263; // "dbc"
    for b in prefix.bytes() {
        h = h.wrapping_mul(31).wrapping_add(b as i64);
    }
    h
}

async fn apply_pending(conn: &mut Conn, prefix: &str, in_tx: bool) -> Result<Vec<Pending>> {
    let provider = conn.provider();
    conn.batch(&table_ddl(provider, prefix)).await?;
    let applied = read_applied(conn, prefix).await?;
    warn_on_edited(conn, prefix).await;
    if let Some(newest) = applied.iter().map(|a| a.version).max() {
        let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
        if newest > known {
            return Err(DbcError::Schema(format!(
                "the database schema is at version {newest}, newer than this connector knows ({known}); upgrade the connector"
            )));
        }
    }
    let mut done = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
    {
        let sql = m.sql(provider, prefix);
        if in_tx {
            conn.batch(&sql).await?;
        } else {
            // MariaDB commits each DDL statement; run them one by one so a failure names its statement
            for stmt in sql
                .split(";\n")
                .map(str::trim)
                .filter(|s| !s.is_empty() && !is_comment(s))
            {
                conn.batch(stmt).await.map_err(|e| {
                    DbcError::Schema(format!(
                        "migration {} failed at `{}`: {e}",
                        m.name,
                        first_line(stmt)
                    ))
                })?;
            }
        }
        let insert = format!(
            "INSERT INTO {prefix}migrations (version, name, checksum) VALUES ({}, {}, {})",
            ph(provider, 1),
            ph(provider, 2),
            ph(provider, 3)
        );
        conn.exec(
            "record migration",
            &insert,
            &[
                Param::Int(m.version),
                Param::Text(m.name.into()),
                Param::Text(m.checksum(provider)),
            ],
            None,
        )
        .await?;
        tracing::info!(version = m.version, name = m.name, %provider, "applied migration");
        done.push(Pending {
            version: m.version,
            name: m.name.to_string(),
        });
    }
    Ok(done)
}

/// Logs a warning for every applied migration whose file changed since it ran: the
/// database may not match what the file now says.
async fn warn_on_edited(conn: &mut Conn, prefix: &str) {
    let provider = conn.provider();
    let Ok(out) = conn
        .exec(
            "checksums",
            &format!("SELECT version, checksum FROM {prefix}migrations"),
            &[],
            None,
        )
        .await
    else {
        return;
    };
    for r in &out.rows {
        let version = crate::task::read_int(&r[0]);
        let stored = crate::task::read_text(&r[1]).unwrap_or_default();
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == version) {
            if m.checksum(provider) != stored {
                tracing::warn!(version, name = m.name, %provider, "an applied migration file has changed since it ran");
            }
        }
    }
}

fn is_comment(stmt: &str) -> bool {
    stmt.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
}

fn first_line(stmt: &str) -> &str {
    stmt.lines()
        .find(|l| !l.trim_start().starts_with("--"))
        .unwrap_or(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_every_version_and_prefix_placeholders() {
        for m in MIGRATIONS {
            for p in [Provider::Postgres, Provider::Mariadb, Provider::Sqlite] {
                let sql = m.sql(p, "zz_");
                let body: Vec<&str> = sql
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                    .collect();
                // a version that changes nothing for this provider says so with `SELECT 1;`
                let noop = body == ["SELECT 1;"];
                assert!(noop || sql.contains("zz_"), "{} {p}", m.name);
                assert!(!sql.contains("{{prefix}}"));
                assert_eq!(m.checksum(p).len(), 16);
            }
        }
        assert_ne!(lock_key("dbc_"), lock_key("other_"));
    }

    /// The schema description ([`TABLES`]) names exactly the tables and columns the
    /// migrations create (checked on SQLite; every provider's migrations build the same
    /// tables, which the conformance suite checks on each).
    #[tokio::test]
    async fn tables_match_the_migrations() {
        let cfg = crate::config::ConnectionConfig {
            provider: "sqlite".into(),
            sqlite_file: Some(":memory:".into()),
            ..Default::default()
        };
        let pool = Pool::lazy(&cfg, &crate::config::PoolConfig::default()).expect("pool");
        migrate(&pool, "t_").await.expect("migrations apply");
        let mut conn = pool.acquire().await.expect("connection");
        let names = conn
            .exec(
                "tables",
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 't\\_%' ESCAPE '\\' AND name <> 't_migrations' ORDER BY name",
                &[],
                None,
            )
            .await
            .expect("table list");
        let mut made: Vec<String> = names
            .rows
            .iter()
            .filter_map(|r| match &r[0] {
                Value::Text(t) => Some(t.trim_start_matches("t_").to_string()),
                _ => None,
            })
            .collect();
        let mut described: Vec<String> = TABLES.iter().map(|t| t.name.to_string()).collect();
        made.sort();
        described.sort();
        assert_eq!(made, described, "tables");
        for t in TABLES {
            let out = conn
                .exec(
                    "columns",
                    &format!("PRAGMA table_info(t_{})", t.name),
                    &[],
                    None,
                )
                .await
                .expect("columns");
            let name = out.col("name").expect("name column");
            let cols: Vec<String> = out
                .rows
                .iter()
                .filter_map(|r| match &r[name] {
                    Value::Text(c) => Some(c.clone()),
                    _ => None,
                })
                .collect();
            let want: Vec<String> = t.cols.iter().map(|(c, _)| c.to_string()).collect();
            assert_eq!(cols, want, "columns of {}", t.name);
        }
    }
}
