//! SQLite: connect options (WAL, busy timeout, foreign keys), running a statement,
//! binding parameters, and decoding each column into a [`Value`] by its storage class and
//! declared type (docs/TYPES.md).

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{
    AssertSqlSafe, Column, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
};

use super::conn::check_count;
use super::stream::{Chunk, ChunkSink};
use super::{decode_err, QueryOutput};
use crate::config::ConnectionConfig;
use crate::value::{iso_utc, Param, Value};
use crate::{DbcError, Result};

pub(super) fn sqlite_options(cfg: &ConnectionConfig, busy: Duration) -> SqliteConnectOptions {
    let file = cfg.sqlite_file.clone().unwrap_or_default();
    if file == ":memory:" {
        SqliteConnectOptions::new().in_memory(true)
    } else {
        SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    }
    .foreign_keys(true)
    .busy_timeout(busy)
}

pub(super) type LiteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

pub(super) fn bind_lite<'q>(mut q: LiteQuery<'q>, params: &[Param]) -> LiteQuery<'q> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(b) => q.bind(*b),
            Param::Int(i) => q.bind(*i),
            Param::Float(f) => q.bind(*f),
            Param::Text(s) => q.bind(s.clone()),
            Param::Json(j) => q.bind(j.to_string()),
            Param::Bytes(b) => q.bind(b.clone()),
            Param::Time(t) => q.bind(iso_utc(*t)),
        };
    }
    q
}

#[allow(deprecated)]
pub(super) async fn stream_lite<T: From<Chunk>>(
    c: &mut PoolConnection<Sqlite>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_lite(stmt.query(), params);
    let more = stream_rows!(q.fetch_many(&mut **c), decode_lite, sink);
    // as in exec_lite: only an INSERT/REPLACE reports the connection's last rowid
    if !is_insert(sql) {
        sink.last_insert_id = None;
    }
    Ok(more)
}

#[allow(deprecated)]
pub(super) async fn exec_lite(
    c: &mut PoolConnection<Sqlite>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_lite(stmt.query(), params);
    let mut out = collect_rows!(q.fetch_many(&mut **c), decode_lite);
    // sqlite3_last_insert_rowid() belongs to the connection and outlives its INSERT: only
    // an INSERT/REPLACE reports it, not a later UPDATE/DELETE on the same pooled connection.
    if !is_insert(sql) {
        out.last_insert_id = None;
    }
    Ok(out)
}

/// The statement without its leading comments and whitespace.
pub(super) fn skip_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            return rest;
        }
    }
}

/// True when the statement (after leading comments) is an INSERT or REPLACE.
pub(super) fn is_insert(sql: &str) -> bool {
    let lower = skip_comments(sql).to_ascii_lowercase();
    lower.starts_with("insert")
        || lower.starts_with("replace")
        || (lower.starts_with("with") && lower.contains("insert"))
}

pub(super) fn decode_lite(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let declared = row.columns()[i].type_info().name();
    let raw_info = raw.type_info();
    let storage = raw_info.name();
    Ok(match storage {
        "INTEGER" | "BOOLEAN" if declared == "BOOLEAN" => {
            Value::Bool(get!(row, i, i64, &storage) != 0)
        }
        "INTEGER" | "BOOLEAN" | "NUMERIC" => Value::from_i64(get!(row, i, i64, &storage)),
        "REAL" => Value::Float(get!(row, i, f64, &storage)),
        "BLOB" => Value::Bytes(get!(row, i, Vec<u8>, &storage)),
        _ => Value::Text(get!(row, i, String, &storage)),
    })
}
