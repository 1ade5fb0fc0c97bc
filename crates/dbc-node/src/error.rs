//! The one place a core error becomes a JS error.
//!
//! napi async functions can only reject with a status-based error, which would lose
//! `code`. A [`Reply::Err`] instead builds the JS `Error` itself when the promise settles
//! (on the JS thread) — `code`, `retryable`, `provider`, `operation`, and `field` /
//! `index` / `sqlState` / `outcome` where they apply — and rejects with that object.
//! [`guarded`] runs each operation in its own tokio task, so a panic becomes a
//! `DBC_INTERNAL` rejection instead of unwinding into Node.

use std::future::Future;
use std::ptr;

use dbc_core::connector::Failure;
use dbc_core::{DbcError, Provider};
use napi::bindgen_prelude::*;
use napi::sys;

use crate::convert::{js_bool, js_number, js_string, set};

/// A failure of `operation` on `provider`.
pub fn failure(error: DbcError, provider: Provider, operation: &str) -> Failure {
    Failure {
        error,
        provider,
        operation: operation.to_string(),
    }
}

/// Builds the JS `Error` a user sees for a failed operation (see docs/ERRORS.md): the
/// message and code, then every other field of [`failure_json`] as a property.
unsafe fn error_object(env: sys::napi_env, f: &Failure) -> Result<sys::napi_value> {
    let code = js_string(env, f.error.code())?;
    let msg = js_string(env, &f.error.to_string())?;
    let mut err = ptr::null_mut();
    check!(sys::napi_create_error(env, code, msg, &mut err));
    for (k, v) in failure_json(f) {
        let v = match v {
            serde_json::Value::Bool(b) => js_bool(env, b)?,
            serde_json::Value::Number(n) => js_number(env, n.as_f64().unwrap_or_default())?,
            serde_json::Value::String(s) if k != "code" && k != "message" => js_string(env, &s)?,
            _ => continue,
        };
        set(env, err, &k, v)?;
    }
    Ok(err)
}

/// The fields of a failed operation's error (code, message, retryable, provider,
/// operation and, where they apply, field, index, sqlState, outcome, reason): the properties of
/// the JS `Error` ([`error_object`]), and the `error` of an `executeMany` answer, from
/// which database-service.js makes the same `DatabaseError`.
pub fn failure_json(f: &Failure) -> serde_json::Map<String, serde_json::Value> {
    let e = &f.error;
    let mut o = serde_json::Map::new();
    o.insert("code".into(), e.code().into());
    o.insert("message".into(), e.to_string().into());
    o.insert("retryable".into(), e.is_retryable().into());
    o.insert("provider".into(), f.provider.as_str().into());
    o.insert("operation".into(), f.operation.clone().into());
    match e {
        DbcError::Validation { field, .. } => {
            o.insert("field".into(), field.clone().into());
        }
        DbcError::Transaction { index, .. } => {
            o.insert("index".into(), (*index as u64).into());
        }
        _ => {}
    }
    if let Some(reason) = e.reason() {
        o.insert("reason".into(), reason.into());
    }
    if let Some(state) = e.sql_state() {
        o.insert("sqlState".into(), state.into());
    }
    if e.is_connection_class() || matches!(e, DbcError::Transaction { .. }) && e.outcome_unknown() {
        let outcome = if e.outcome_unknown() {
            "unknown"
        } else {
            "not-applied"
        };
        o.insert("outcome".into(), outcome.into());
    }
    o
}

/// An operation's answer: resolves with `T`, or rejects with a coded JS `Error`.
pub enum Reply<T> {
    /// success
    Ok(T),
    /// failure, turned into a JS `Error` on the JS thread
    Err(Failure),
}

impl<T: ToNapiValue> ToNapiValue for Reply<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        match val {
            Reply::Ok(v) => T::to_napi_value(env, v),
            Reply::Err(f) => {
                let err = error_object(env, &f)?;
                // An Error made from a JS value keeps a reference to it, and napi rejects
                // the promise with that very object.
                Err(Error::from(Unknown::from_raw_unchecked(env, err)))
            }
        }
    }
}

impl<T> TypeName for Reply<T> {
    fn type_name() -> &'static str {
        "Reply"
    }
    fn value_type() -> ValueType {
        ValueType::Object
    }
}

/// Runs `fut` in its own task so a panic is caught and reported as `DBC_INTERNAL`.
pub async fn guarded<T: Send + 'static>(
    provider: Provider,
    operation: &'static str,
    fut: impl Future<Output = std::result::Result<T, Failure>> + Send + 'static,
) -> Reply<T> {
    match tokio::spawn(fut).await {
        Ok(Ok(v)) => Reply::Ok(v),
        Ok(Err(f)) => Reply::Err(f),
        Err(join) => {
            let why = if join.is_panic() {
                "a panic in the addon"
            } else {
                "the task was cancelled"
            };
            Reply::Err(failure(
                DbcError::Internal(format!("{operation} failed with {why}; please report this")),
                provider,
                operation,
            ))
        }
    }
}
