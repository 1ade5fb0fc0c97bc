//! MariaDB / MySQL: connect options (TLS, UTC sessions), running a statement, binding
//! parameters, and decoding each column into a [`Value`] (docs/TYPES.md).

use futures_util::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlSslMode};
use sqlx::pool::PoolConnection;
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo,
    ValueRef,
};

use super::conn::check_count;
use super::pool::pem_or_path;
use super::stream::{Chunk, ChunkSink};
use super::{decode_err, QueryOutput};
use crate::config::ConnectionConfig;
use crate::value::{iso_date, iso_naive, iso_time, iso_utc, Param, Value};
use crate::{DbcError, Result};

pub(super) fn my_options(cfg: &ConnectionConfig) -> Result<MySqlConnectOptions> {
    let mut o = match &cfg.url {
        Some(url) if !url.is_empty() => url.parse::<MySqlConnectOptions>().map_err(|e| {
            DbcError::Config(format!(
                "invalid mariadb URL: {}",
                crate::config::redact_url(&e.to_string())
            ))
        })?,
        _ => {
            let mut o = MySqlConnectOptions::new()
                .host(
                    cfg.host
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .unwrap_or("127.0.0.1"),
                )
                .port(cfg.port.unwrap_or(3306) as u16);
            if let Some(db) = cfg.database.as_deref().filter(|d| !d.is_empty()) {
                o = o.database(db);
            }
            if let Some(u) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
                o = o.username(u);
            }
            if let Some(p) = cfg.password.as_deref().filter(|p| !p.is_empty()) {
                o = o.password(p);
            }
            o
        }
    };
    if let Some(mode) = cfg.ssl.as_deref().filter(|s| !s.is_empty()) {
        o = o.ssl_mode(match mode {
            "disable" => MySqlSslMode::Disabled,
            "require" => MySqlSslMode::Required,
            "verify-full" => MySqlSslMode::VerifyIdentity,
            _ => MySqlSslMode::Preferred,
        });
    }
    if let Some(ca) = cfg.ssl_ca.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(ca) {
            Either::Left(pem) => o.ssl_ca_from_pem(pem),
            Either::Right(path) => o.ssl_ca(path),
        };
    }
    if let Some(cert) = cfg.ssl_cert.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(cert) {
            Either::Left(pem) => o.ssl_client_cert_from_pem(pem),
            Either::Right(path) => o.ssl_client_cert(path),
        };
    }
    if let Some(key) = cfg.ssl_key.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(key) {
            Either::Left(pem) => o.ssl_client_key_from_pem(pem),
            Either::Right(path) => o.ssl_client_key(path),
        };
    }
    // Times are stored and read as UTC.
    Ok(o.timezone(Some("+00:00".to_string()))
        .charset("utf8mb4")
        .disable_statement_logging())
}

#[allow(deprecated)]
pub(super) async fn stream_my<T: From<Chunk>>(
    c: &mut PoolConnection<MySql>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_my(stmt.query(), params);
    Ok(stream_rows!(q.fetch_many(&mut **c), decode_my, sink))
}

#[allow(deprecated)]
pub(super) async fn exec_my(
    c: &mut PoolConnection<MySql>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    check_count(stmt.parameters(), params.len())?;
    let q = bind_my(stmt.query(), params);
    Ok(collect_rows!(q.fetch_many(&mut **c), decode_my))
}

pub(super) type MyQuery<'q> = sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>;

pub(super) fn bind_my<'q>(mut q: MyQuery<'q>, params: &[Param]) -> MyQuery<'q> {
    for p in params {
        q = match p {
            Param::Null => q.bind(None::<String>),
            Param::Bool(b) => q.bind(*b),
            Param::Int(i) => q.bind(*i),
            Param::Float(f) => q.bind(*f),
            Param::Text(s) => q.bind(s.clone()),
            Param::Json(j) => q.bind(j.to_string()),
            Param::Bytes(b) => q.bind(b.clone()),
            // sessions run in UTC (see my_options), so a naive UTC time is exact
            Param::Time(t) => q.bind(t.naive_utc()),
        };
    }
    q
}

pub(super) fn decode_my(row: &sqlx::mysql::MySqlRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info();
    let ty = info.name();
    Ok(match ty {
        "BOOLEAN" => Value::Bool(get!(row, i, i8, &ty) != 0),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
            Value::from_i64(get!(row, i, i64, &ty))
        }
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
        | "BIGINT UNSIGNED" | "BIT" => Value::from_u64(get!(row, i, u64, &ty)),
        "FLOAT" => Value::Float(get!(row, i, f32, &ty) as f64),
        "DOUBLE" => Value::Float(get!(row, i, f64, &ty)),
        "DECIMAL" => Value::Text(get!(row, i, bigdecimal::BigDecimal, &ty).to_plain_string()),
        "JSON" => Value::Json(get!(row, i, serde_json::Value, &ty)),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Value::Text(get!(row, i, String, &ty))
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let bytes = get!(row, i, Vec<u8>, &ty);
            if is_binary_collation(&info) {
                Value::Bytes(bytes)
            } else {
                // A `_bin` text collation sets the BINARY flag, so text such as MariaDB's
                // JSON columns (LONGTEXT utf8mb4_bin) arrives typed as a blob.
                text_or_json(bytes)
            }
        }
        "DATETIME" => Value::Text(iso_naive(get!(row, i, chrono::NaiveDateTime, &ty))),
        "TIMESTAMP" => Value::Text(iso_utc(get!(row, i, chrono::DateTime<chrono::Utc>, &ty))),
        "DATE" => Value::Text(iso_date(get!(row, i, chrono::NaiveDate, &ty))),
        "TIME" => Value::Text(iso_time(get!(row, i, chrono::NaiveTime, &ty))),
        "NULL" => Value::Null,
        _ => Value::Bytes(get!(row, i, Vec<u8>, &ty)),
    })
}

/// sqlx does not expose a column's collation; its Debug output does. Binary data has
/// collation 63 (`binary`).
pub(super) fn is_binary_collation(info: &sqlx::mysql::MySqlTypeInfo) -> bool {
    let dbg = format!("{info:?}");
    dbg.contains("Collation(63)") || dbg.contains("collation: 63") || !dbg.contains("ollation")
}

pub(super) fn text_or_json(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => {
            let t = s.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                if let Ok(j) = serde_json::from_str::<serde_json::Value>(&s) {
                    return Value::Json(j);
                }
            }
            Value::Text(s)
        }
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}
