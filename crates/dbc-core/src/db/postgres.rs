//! PostgreSQL: connect options (TLS, statement timeout, application name), running a
//! statement (prepared and cached per connection, so the server says which type each
//! parameter has), binding each parameter to that type, and decoding each column into a
//! [`Value`] (docs/TYPES.md).

use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgSslMode, Postgres};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Either, Executor, Row, SqlSafeStr, Statement, TypeInfo,
    ValueRef,
};

use super::conn::check_count;
use super::pool::{pem_or_path, APP_NAME};
use super::stream::{Chunk, ChunkSink};
use super::{decode_err, QueryOutput};
use crate::config::{ConnectionConfig, PoolConfig};
use crate::value::{iso_date, iso_naive, iso_time, iso_utc, parse_any_time, Param, Value};
use crate::{DbcError, Result};

pub(super) fn pg_options(cfg: &ConnectionConfig, pool: &PoolConfig) -> Result<PgConnectOptions> {
    let mut o = match &cfg.url {
        Some(url) if !url.is_empty() => url.parse::<PgConnectOptions>().map_err(|e| {
            DbcError::Config(format!(
                "invalid postgres URL: {}",
                crate::config::redact_url(&e.to_string())
            ))
        })?,
        _ => {
            let mut o = PgConnectOptions::new_without_pgpass()
                .host(
                    cfg.host
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .unwrap_or("127.0.0.1"),
                )
                .port(cfg.port.unwrap_or(5432) as u16);
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
            "disable" => PgSslMode::Disable,
            "require" => PgSslMode::Require,
            "verify-full" => PgSslMode::VerifyFull,
            _ => PgSslMode::Prefer,
        });
    }
    if let Some(ca) = cfg.ssl_ca.as_deref().filter(|s| !s.is_empty()) {
        o = match pem_or_path(ca) {
            Either::Left(pem) => o.ssl_root_cert_from_pem(pem),
            Either::Right(path) => o.ssl_root_cert(path),
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
    let timeout = pool.statement_timeout_ms.to_string();
    Ok(o.application_name(APP_NAME)
        .options([("statement_timeout", timeout.as_str())])
        .disable_statement_logging())
}

#[allow(deprecated)] // fetch_many: the one call that yields both rows and rows_affected
pub(super) async fn exec_pg(
    c: &mut PoolConnection<Postgres>,
    sql: &str,
    params: &[Param],
) -> Result<QueryOutput> {
    let stmt = (&mut **c)
        .prepare(AssertSqlSafe(sql.to_string()).into_sql_str())
        .await
        .map_err(|e| DbcError::from_sqlx(e, true))?;
    let q = bind_pg_all(&stmt, params)?;
    Ok(collect_rows!(q.fetch_many(&mut **c), decode_pg))
}

/// Checks the placeholder count and binds every parameter to the type PostgreSQL
/// expects for it.
pub(super) fn bind_pg_all<'q>(
    stmt: &'q sqlx::postgres::PgStatement,
    params: &'q [Param],
) -> Result<PgQuery<'q>> {
    check_count(stmt.parameters(), params.len())?;
    let types: Vec<String> = match stmt.parameters() {
        Some(Either::Left(t)) => t.iter().map(|t| t.name().to_string()).collect(),
        _ => Vec::new(),
    };
    let mut q = stmt.query();
    for (i, (p, ty)) in params.iter().zip(types.iter()).enumerate() {
        q = bind_pg(q, p, ty, i + 1)?;
    }
    Ok(q)
}

#[allow(deprecated)]
pub(super) async fn stream_pg<T: From<Chunk>>(
    c: &mut PoolConnection<Postgres>,
    sql: &str,
    params: &[Param],
    sink: &mut ChunkSink<'_, T>,
) -> Result<bool> {
    let prepare = (&mut **c).prepare(AssertSqlSafe(sql.to_string()).into_sql_str());
    let stmt = sink.wait(prepare).await?;
    let q = bind_pg_all(&stmt, params)?;
    Ok(stream_rows!(q.fetch_many(&mut **c), decode_pg, sink))
}

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

pub(super) fn bad_param(n: usize, p: &Param, ty: &str, why: &str) -> DbcError {
    DbcError::validation(
        format!("params[{}]", n - 1),
        format!("parameter ${n} ({}) cannot be used as {ty}{why}", p.kind()),
    )
}

pub(super) fn int_of(n: usize, p: &Param, ty: &str) -> Result<Option<i64>> {
    Ok(match p {
        Param::Null => None,
        Param::Int(i) => Some(*i),
        Param::Bool(b) => Some(*b as i64),
        Param::Float(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 => {
            Some(*f as i64)
        }
        Param::Text(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| bad_param(n, p, ty, ": not an integer"))?,
        ),
        _ => return Err(bad_param(n, p, ty, "")),
    })
}

pub(super) fn float_of(n: usize, p: &Param, ty: &str) -> Result<Option<f64>> {
    Ok(match p {
        Param::Null => None,
        Param::Int(i) => Some(*i as f64),
        Param::Float(f) => Some(*f),
        Param::Text(s) => Some(
            s.trim()
                .parse()
                .map_err(|_| bad_param(n, p, ty, ": not a number"))?,
        ),
        _ => return Err(bad_param(n, p, ty, "")),
    })
}

pub(super) fn int_array(
    n: usize,
    p: &Param,
    ty: &str,
    lo: i64,
    hi: i64,
) -> Result<Option<Vec<i64>>> {
    match p {
        Param::Null => Ok(None),
        Param::Json(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| {
                match v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                {
                    Some(x) if (lo..=hi).contains(&x) => Ok(x),
                    _ => Err(bad_param(
                        n,
                        p,
                        ty,
                        ": every element must be an integer in range",
                    )),
                }
            })
            .collect::<Result<Vec<i64>>>()
            .map(Some),
        _ => Err(bad_param(n, p, ty, "")),
    }
}

pub(super) fn bind_pg<'q>(q: PgQuery<'q>, p: &'q Param, ty: &str, n: usize) -> Result<PgQuery<'q>> {
    let range = |v: Option<i64>, lo: i64, hi: i64| -> Result<Option<i64>> {
        match v {
            Some(x) if x < lo || x > hi => Err(bad_param(n, p, ty, ": out of range")),
            other => Ok(other),
        }
    };
    Ok(match ty {
        "BOOL" => q.bind(match p {
            Param::Null => None,
            Param::Bool(b) => Some(*b),
            Param::Int(i) => Some(*i != 0),
            Param::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
                "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
                _ => return Err(bad_param(n, p, ty, ": not a boolean")),
            },
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "INT2" => q.bind(range(int_of(n, p, ty)?, i16::MIN as i64, i16::MAX as i64)?.map(|v| v as i16)),
        "INT4" => q.bind(range(int_of(n, p, ty)?, i32::MIN as i64, i32::MAX as i64)?.map(|v| v as i32)),
        "INT8" => q.bind(int_of(n, p, ty)?),
        "OID" => q.bind(range(int_of(n, p, ty)?, 0, u32::MAX as i64)?.map(|v| sqlx::postgres::types::Oid(v as u32))),
        "FLOAT4" => q.bind(float_of(n, p, ty)?.map(|v| v as f32)),
        "FLOAT8" => q.bind(float_of(n, p, ty)?),
        "NUMERIC" => q.bind(match p {
            Param::Null => None,
            Param::Int(_) | Param::Float(_) | Param::Text(_) => Some(
                p.to_text()
                    .unwrap_or_default()
                    .trim()
                    .parse::<bigdecimal::BigDecimal>()
                    .map_err(|_| bad_param(n, p, ty, ": not a decimal"))?,
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "JSON" | "JSONB" => q.bind(match p {
            Param::Null => None,
            // a string is taken as JSON text, as node-postgres does
            Param::Text(s) => Some(sqlx::types::Json(std::borrow::Cow::Owned(
                serde_json::from_str::<serde_json::Value>(s)
                    .map_err(|e| bad_param(n, p, ty, &format!(": invalid JSON ({e})")))?,
            ))),
            // borrowed, not cloned: a 1,000-task insert binds its rows as one JSON array,
            // and cloning that tree per statement showed in the profile
            Param::Json(j) => Some(sqlx::types::Json(std::borrow::Cow::Borrowed(j))),
            Param::Bool(b) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::Bool(*b)))),
            Param::Int(i) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::from(*i)))),
            Param::Float(f) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::from(*f)))),
            Param::Time(t) => Some(sqlx::types::Json(std::borrow::Cow::Owned(serde_json::Value::String(iso_utc(*t))))),
            Param::Bytes(_) => return Err(bad_param(n, p, ty, "")),
        }),
        "UUID" => q.bind(match p {
            Param::Null => None,
            Param::Text(s) => Some(uuid::Uuid::parse_str(s).map_err(|_| bad_param(n, p, ty, ": not a UUID"))?),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "TIMESTAMPTZ" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?),
        }),
        "TIMESTAMP" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?.naive_utc()),
        }),
        "DATE" => q.bind(match p {
            Param::Null => None,
            _ => Some(parse_any_time(&format!("params[{}]", n - 1), p)?.date_naive()),
        }),
        "TIME" => q.bind(match p {
            Param::Null => None,
            Param::Text(s) => Some(
                chrono::NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M"))
                    .map_err(|_| bad_param(n, p, ty, ": not HH:MM:SS"))?,
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "BYTEA" => q.bind(match p {
            Param::Null => None,
            Param::Bytes(b) => Some(b.clone()),
            Param::Text(s) => Some(s.as_bytes().to_vec()),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => q.bind(p.to_text()),
        "INT2[]" => q.bind(int_array(n, p, ty, i16::MIN as i64, i16::MAX as i64)?.map(|v| v.into_iter().map(|x| x as i16).collect::<Vec<_>>())),
        "INT4[]" => q.bind(int_array(n, p, ty, i32::MIN as i64, i32::MAX as i64)?.map(|v| v.into_iter().map(|x| x as i32).collect::<Vec<_>>())),
        "INT8[]" => q.bind(int_array(n, p, ty, i64::MIN, i64::MAX)?),
        "TEXT[]" | "VARCHAR[]" | "BPCHAR[]" => q.bind(match p {
            Param::Null => None,
            Param::Json(serde_json::Value::Array(a)) => Some(
                a.iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<String>>(),
            ),
            _ => return Err(bad_param(n, p, ty, "")),
        }),
        other => {
            return Err(DbcError::validation(
                format!("params[{}]", n - 1),
                format!("parameter ${n} has type {other}, which the connector does not bind; cast it in SQL, e.g. ${n}::text::{}", other.to_lowercase()),
            ))
        }
    })
}

pub(super) fn decode_pg(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| decode_err(i, "?", e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info();
    let ty = info.name();
    Ok(match ty {
        "BOOL" => Value::Bool(get!(row, i, bool, &ty)),
        "INT2" => Value::Int(get!(row, i, i16, &ty) as i64),
        "INT4" => Value::Int(get!(row, i, i32, &ty) as i64),
        "INT8" => Value::from_i64(get!(row, i, i64, &ty)),
        "OID" => Value::Int(get!(row, i, sqlx::postgres::types::Oid, &ty).0 as i64),
        "FLOAT4" => Value::Float(get!(row, i, f32, &ty) as f64),
        "FLOAT8" => Value::Float(get!(row, i, f64, &ty)),
        "NUMERIC" => Value::Text(get!(row, i, bigdecimal::BigDecimal, &ty).to_plain_string()),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CITEXT" => Value::Text(get!(row, i, String, &ty)),
        "\"CHAR\"" | "CHAR" => Value::Text((get!(row, i, i8, &ty) as u8 as char).to_string()),
        "JSON" | "JSONB" => Value::Json(get!(row, i, serde_json::Value, &ty)),
        "UUID" => Value::Text(get!(row, i, uuid::Uuid, &ty).to_string()),
        "TIMESTAMPTZ" => Value::Text(iso_utc(get!(row, i, chrono::DateTime<chrono::Utc>, &ty))),
        "TIMESTAMP" => Value::Text(iso_naive(get!(row, i, chrono::NaiveDateTime, &ty))),
        "DATE" => Value::Text(iso_date(get!(row, i, chrono::NaiveDate, &ty))),
        "TIME" => Value::Text(iso_time(get!(row, i, chrono::NaiveTime, &ty))),
        "BYTEA" => Value::Bytes(get!(row, i, Vec<u8>, &ty)),
        "VOID" => Value::Null,
        "INT2[]" => Value::Json(get!(row, i, Vec<Option<i16>>, &ty).into()),
        "INT4[]" => Value::Json(get!(row, i, Vec<Option<i32>>, &ty).into()),
        "INT8[]" => Value::Json(
            get!(row, i, Vec<Option<i64>>, &ty)
                .into_iter()
                .map(|x| x.map(|x| Value::from_i64(x).into_json()).unwrap_or(serde_json::Value::Null))
                .collect::<Vec<_>>()
                .into(),
        ),
        "FLOAT8[]" => Value::Json(get!(row, i, Vec<Option<f64>>, &ty).into()),
        "BOOL[]" => Value::Json(get!(row, i, Vec<Option<bool>>, &ty).into()),
        "TEXT[]" | "VARCHAR[]" => Value::Json(get!(row, i, Vec<Option<String>>, &ty).into()),
        "UUID[]" => Value::Json(
            get!(row, i, Vec<Option<uuid::Uuid>>, &ty)
                .into_iter()
                .map(|u| u.map(|u| serde_json::Value::String(u.to_string())).unwrap_or(serde_json::Value::Null))
                .collect::<Vec<_>>()
                .into(),
        ),
        other => {
            return Err(DbcError::Query {
                message: format!(
                    "column {:?} has type {other}, which the connector does not decode; cast it in SQL, e.g. {}::text",
                    row.columns()[i].name(),
                    row.columns()[i].name()
                ),
                sql_state: None,
            })
        }
    })
}
