//! Conversions between JS values and core types, all on the JS thread: parameters in
//! ([`JsParams`]), rows, chunks and operation results out ([`Rows`], [`ChunkJs`],
//! [`OutcomeJs`]).

use std::ptr;

use dbc_core::connector::{DebugInfo, OpValue, Outcome, StreamChunk};
use dbc_core::db::QueryOutput;
use dbc_core::value::{Param, Params, Value};
use dbc_core::DbcError;
use napi::bindgen_prelude::*;
use napi::sys;

pub(crate) unsafe fn js_string(env: sys::napi_env, s: &str) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    check!(sys::napi_create_string_utf8(
        env,
        s.as_ptr().cast(),
        s.len() as isize,
        &mut v
    ));
    Ok(v)
}

pub(crate) unsafe fn set(
    env: sys::napi_env,
    obj: sys::napi_value,
    key: &str,
    v: sys::napi_value,
) -> Result<()> {
    let k = js_string(env, key)?;
    check!(sys::napi_set_property(env, obj, k, v));
    Ok(())
}

pub(crate) unsafe fn js_bool(env: sys::napi_env, b: bool) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    check!(sys::napi_get_boolean(env, b, &mut v));
    Ok(v)
}

pub(crate) unsafe fn js_number(env: sys::napi_env, n: f64) -> Result<sys::napi_value> {
    let mut v = ptr::null_mut();
    check!(sys::napi_create_double(env, n, &mut v));
    Ok(v)
}

unsafe fn value_to_js(env: sys::napi_env, v: Value) -> Result<sys::napi_value> {
    match v {
        Value::Null => {
            let mut n = ptr::null_mut();
            check!(sys::napi_get_null(env, &mut n));
            Ok(n)
        }
        Value::Bool(b) => js_bool(env, b),
        Value::Int(i) => js_number(env, i as f64),
        Value::Float(f) => js_number(env, f),
        Value::Text(s) => js_string(env, &s),
        Value::Json(j) => serde_json::Value::to_napi_value(env, j),
        Value::Bytes(b) => {
            let mut data = ptr::null_mut();
            let mut buf = ptr::null_mut();
            check!(sys::napi_create_buffer_copy(
                env,
                b.len(),
                b.as_ptr().cast(),
                &mut data,
                &mut buf
            ));
            Ok(buf)
        }
    }
}

unsafe fn rows_to_js(env: sys::napi_env, out: QueryOutput) -> Result<sys::napi_value> {
    row_objects(env, &out.columns, out.rows)
}

unsafe fn row_objects(
    env: sys::napi_env,
    columns: &[String],
    rows: Vec<Vec<Value>>,
) -> Result<sys::napi_value> {
    let mut arr = ptr::null_mut();
    check!(sys::napi_create_array_with_length(
        env,
        rows.len(),
        &mut arr
    ));
    // column names are made into JS strings once, not once per row
    let mut keys = Vec::with_capacity(columns.len());
    for c in columns {
        keys.push(js_string(env, c)?);
    }
    for (i, row) in rows.into_iter().enumerate() {
        let mut obj = ptr::null_mut();
        check!(sys::napi_create_object(env, &mut obj));
        for (k, v) in keys.iter().zip(row) {
            check!(sys::napi_set_property(env, obj, *k, value_to_js(env, v)?));
        }
        check!(sys::napi_set_element(env, arr, i as u32, obj));
    }
    Ok(arr)
}

unsafe fn debug_to_js(
    env: sys::napi_env,
    obj: sys::napi_value,
    debug: Option<DebugInfo>,
) -> Result<()> {
    if let Some(d) = debug {
        let v = serde_json::to_value(d).map_err(|e| Error::from_reason(e.to_string()))?;
        set(env, obj, "debug", serde_json::Value::to_napi_value(env, v)?)?;
    }
    Ok(())
}

/// The answer of `query`: `{provider, rows, rowCount, lastInsertId?, debug?}`.
pub struct Rows(pub Outcome);

impl ToNapiValue for Rows {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let Outcome {
            provider,
            value,
            debug,
        } = val.0;
        let mut obj = ptr::null_mut();
        check!(sys::napi_create_object(env, &mut obj));
        set(env, obj, "provider", js_string(env, provider.as_str())?)?;
        if let OpValue::Rows(out) = value {
            let count = if out.rows.is_empty() {
                out.rows_affected
            } else {
                out.rows.len() as u64
            };
            set(env, obj, "rowCount", js_number(env, count as f64)?)?;
            if let Some(id) = out.last_insert_id.clone() {
                set(env, obj, "lastInsertId", value_to_js(env, id)?)?;
            }
            set(env, obj, "rows", rows_to_js(env, out)?)?;
        }
        debug_to_js(env, obj, debug)?;
        Ok(obj)
    }
}

/// One chunk of `QueryStream.next()`: `{rows, done, rowCount, lastInsertId?, debug?}`;
/// `None` (the stream is over) is `{rows: [], done: true}`.
pub struct ChunkJs(pub Option<StreamChunk>);

impl ToNapiValue for ChunkJs {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let mut obj = ptr::null_mut();
        check!(sys::napi_create_object(env, &mut obj));
        let Some(StreamChunk { chunk, debug }) = val.0 else {
            set(env, obj, "rows", row_objects(env, &[], Vec::new())?)?;
            set(env, obj, "done", js_bool(env, true)?)?;
            return Ok(obj);
        };
        set(
            env,
            obj,
            "rows",
            row_objects(env, &chunk.columns, chunk.rows)?,
        )?;
        set(env, obj, "done", js_bool(env, chunk.done)?)?;
        set(
            env,
            obj,
            "rowCount",
            js_number(env, chunk.row_count as f64)?,
        )?;
        if let Some(id) = chunk.last_insert_id {
            set(env, obj, "lastInsertId", value_to_js(env, id)?)?;
        }
        debug_to_js(env, obj, debug)?;
        Ok(obj)
    }
}

/// The answer of `execute`: `{provider, valueJson, debug?}` (`value` for rows).
pub struct OutcomeJs(pub Outcome);

impl ToNapiValue for OutcomeJs {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let Outcome {
            provider,
            value,
            debug,
        } = val.0;
        let mut obj = ptr::null_mut();
        check!(sys::napi_create_object(env, &mut obj));
        set(env, obj, "provider", js_string(env, provider.as_str())?)?;
        match value {
            // JSON text, parsed by V8's JSON.parse in database-service.js: a thousand tasks
            // as one string cost a fraction of building them property by property through
            // napi (docs/PERFORMANCE.md)
            OpValue::Answer(a) => {
                let text = a.to_text().map_err(|e| Error::from_reason(e.to_string()))?;
                set(env, obj, "valueJson", js_string(env, &text)?)?;
            }
            OpValue::Rows(r) => set(env, obj, "value", rows_to_js(env, r)?)?,
        }
        debug_to_js(env, obj, debug)?;
        Ok(obj)
    }
}

/// `msg.params` converted on the JS thread; a bad value is kept as the validation error
/// it causes, so the call rejects with `DBC_VALIDATION` instead of a napi type error.
pub struct JsParams(pub std::result::Result<Params, DbcError>);

impl TypeName for JsParams {
    fn type_name() -> &'static str {
        "params"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for JsParams {}

unsafe fn type_of(env: sys::napi_env, v: sys::napi_value) -> Result<sys::napi_valuetype> {
    let mut t = 0;
    check!(sys::napi_typeof(env, v, &mut t));
    Ok(t)
}

unsafe fn is(
    env: sys::napi_env,
    v: sys::napi_value,
    f: unsafe extern "C" fn(sys::napi_env, sys::napi_value, *mut bool) -> sys::napi_status,
) -> bool {
    let mut r = false;
    f(env, v, &mut r) == sys::Status::napi_ok && r
}

unsafe fn param_from_js(
    env: sys::napi_env,
    v: sys::napi_value,
    field: &str,
) -> Result<std::result::Result<Param, DbcError>> {
    let t = type_of(env, v)?;
    Ok(Ok(match t {
        sys::ValueType::napi_undefined | sys::ValueType::napi_null => Param::Null,
        sys::ValueType::napi_boolean => Param::Bool(bool::from_napi_value(env, v)?),
        sys::ValueType::napi_number => {
            let n = f64::from_napi_value(env, v)?;
            if !n.is_finite() {
                return Ok(Err(DbcError::validation(
                    field,
                    format!("{field} is {n}, which no database column can hold"),
                )));
            }
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                Param::Int(n as i64)
            } else {
                Param::Float(n)
            }
        }
        sys::ValueType::napi_string => Param::Text(String::from_napi_value(env, v)?),
        sys::ValueType::napi_bigint => {
            let mut i = 0i64;
            let mut lossless = false;
            check!(sys::napi_get_value_bigint_int64(
                env,
                v,
                &mut i,
                &mut lossless
            ));
            if lossless {
                Param::Int(i)
            } else {
                return Ok(Err(DbcError::validation(
                    field,
                    format!("{field} is a BigInt outside the 64-bit range"),
                )));
            }
        }
        sys::ValueType::napi_object => {
            if is(env, v, sys::napi_is_buffer) {
                let mut data = ptr::null_mut();
                let mut len = 0usize;
                check!(sys::napi_get_buffer_info(env, v, &mut data, &mut len));
                let bytes = if len == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(data as *const u8, len).to_vec()
                };
                Param::Bytes(bytes)
            } else if is(env, v, sys::napi_is_date) {
                let mut ms = 0f64;
                check!(sys::napi_get_date_value(env, v, &mut ms));
                match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64) {
                    Some(t) if ms.is_finite() => Param::Time(t),
                    _ => {
                        return Ok(Err(DbcError::validation(
                            field,
                            format!("{field} is an invalid Date"),
                        )))
                    }
                }
            } else {
                // plain objects and arrays are JSON; JSON.stringify catches cycles and BigInts
                match json_of(env, v) {
                    Ok(j) => Param::Json(j),
                    Err(why) => {
                        return Ok(Err(DbcError::validation(
                            field,
                            format!("{field} cannot be sent as JSON: {why}"),
                        )))
                    }
                }
            }
        }
        _ => {
            return Ok(Err(DbcError::validation(
                field,
                format!("{field} is a function or symbol, which cannot be a parameter"),
            )))
        }
    }))
}

/// Serializes with the JS engine's own `JSON.stringify`, which rejects cycles and BigInt
/// with a TypeError instead of recursing forever.
unsafe fn json_of(
    env: sys::napi_env,
    v: sys::napi_value,
) -> std::result::Result<serde_json::Value, String> {
    let mut global = ptr::null_mut();
    if sys::napi_get_global(env, &mut global) != sys::Status::napi_ok {
        return Err("no global object".into());
    }
    let get = |obj: sys::napi_value, name: &str| -> std::result::Result<sys::napi_value, String> {
        let mut out = ptr::null_mut();
        let key = js_string(env, name).map_err(|e| e.to_string())?;
        if sys::napi_get_property(env, obj, key, &mut out) != sys::Status::napi_ok {
            return Err(format!("no {name}"));
        }
        Ok(out)
    };
    let json = get(global, "JSON")?;
    let stringify = get(json, "stringify")?;
    let mut text = ptr::null_mut();
    let status = sys::napi_call_function(env, json, stringify, 1, [v].as_ptr(), &mut text);
    if status != sys::Status::napi_ok {
        // clear the pending TypeError and report it as a validation error
        let mut exc = ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut exc);
        let msg = String::from_napi_value(env, exc).ok().or_else(|| {
            let m = get(exc, "message").ok()?;
            String::from_napi_value(env, m).ok()
        });
        return Err(msg.unwrap_or_else(|| "not serializable".into()));
    }
    let s = String::from_napi_value(env, text).map_err(|e| e.to_string())?;
    serde_json::from_str(&s).map_err(|e| e.to_string())
}

impl FromNapiValue for JsParams {
    unsafe fn from_napi_value(env: sys::napi_env, v: sys::napi_value) -> Result<Self> {
        let t = type_of(env, v)?;
        if t == sys::ValueType::napi_undefined || t == sys::ValueType::napi_null {
            return Ok(JsParams(Ok(Params::None)));
        }
        if t != sys::ValueType::napi_object || is(env, v, sys::napi_is_buffer) {
            return Ok(JsParams(Err(DbcError::validation(
                "params",
                "msg.params must be an array (positional) or an object (named)",
            ))));
        }
        let mut is_array = false;
        check!(sys::napi_is_array(env, v, &mut is_array));
        if is_array {
            let mut len = 0u32;
            check!(sys::napi_get_array_length(env, v, &mut len));
            let mut out = Vec::with_capacity(len as usize);
            for i in 0..len {
                let mut item = ptr::null_mut();
                check!(sys::napi_get_element(env, v, i, &mut item));
                match param_from_js(env, item, &format!("params[{i}]"))? {
                    Ok(p) => out.push(p),
                    Err(e) => return Ok(JsParams(Err(e))),
                }
            }
            return Ok(JsParams(Ok(Params::Positional(out))));
        }
        let mut names = ptr::null_mut();
        check!(sys::napi_get_property_names(env, v, &mut names));
        let mut len = 0u32;
        check!(sys::napi_get_array_length(env, names, &mut len));
        let mut out = Vec::with_capacity(len as usize);
        for i in 0..len {
            let mut key = ptr::null_mut();
            check!(sys::napi_get_element(env, names, i, &mut key));
            let name = String::from_napi_value(env, key)?;
            let mut item = ptr::null_mut();
            check!(sys::napi_get_property(env, v, key, &mut item));
            match param_from_js(env, item, &format!("params.{name}"))? {
                Ok(p) => out.push((name, p)),
                Err(e) => return Ok(JsParams(Err(e))),
            }
        }
        Ok(JsParams(Ok(Params::Named(out))))
    }
}
