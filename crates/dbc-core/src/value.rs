//! Values crossing the connector: parameters coming in from a flow and column values
//! going out to it.
//!
//! The mapping is the same on every provider (docs/TYPES.md): 64-bit integers outside
//! ±2^53 and decimals leave as strings so `JSON.stringify` never throws, times leave as
//! ISO-8601 strings, binary leaves as bytes (a `Buffer` in JS).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};

/// Largest integer a JS number holds exactly.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL
    Null,
    /// boolean
    Bool(bool),
    /// an integer that fits a JS number exactly (larger ones are `Text`)
    Int(i64),
    /// a float
    Float(f64),
    /// text, and everything rendered as text (decimals, UUIDs, times, big integers)
    Text(String),
    /// a JSON document
    Json(serde_json::Value),
    /// binary data
    Bytes(Vec<u8>),
}

impl Value {
    /// An integer as a JS-safe value: a number inside ±2^53, a string outside.
    pub fn from_i64(v: i64) -> Self {
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&v) {
            Value::Int(v)
        } else {
            Value::Text(v.to_string())
        }
    }

    /// An unsigned integer as a JS-safe value.
    pub fn from_u64(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(i) => Value::from_i64(i),
            Err(_) => Value::Text(v.to_string()),
        }
    }

    /// Converts to JSON (bytes become an array of numbers); used where a row is
    /// embedded in a task result.
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => b.into(),
            Value::Int(i) => i.into(),
            Value::Float(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => s.into(),
            Value::Json(j) => j,
            Value::Bytes(b) => b.into(),
        }
    }
}

/// A bound parameter, as it came from the flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// null / undefined
    Null,
    /// boolean
    Bool(bool),
    /// an integral number (or a BigInt that fits 64 bits)
    Int(i64),
    /// a non-integral number
    Float(f64),
    /// a string (Dates arrive here as ISO-8601)
    Text(String),
    /// an object or array
    Json(serde_json::Value),
    /// a Buffer / Uint8Array
    Bytes(Vec<u8>),
    /// a JS `Date`: bound as a timestamp (MariaDB DATETIME takes it as UTC)
    Time(DateTime<Utc>),
}

impl Param {
    /// Maps a JSON value to a parameter (numbers split into Int and Float).
    pub fn from_json(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Param::Null,
            serde_json::Value::Bool(b) => Param::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Param::Int(i),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Param::Int(f as i64),
                    Some(f) => Param::Float(f),
                    None => Param::Text(n.to_string()),
                },
            },
            serde_json::Value::String(s) => Param::Text(s),
            other => Param::Json(other),
        }
    }

    /// The kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Param::Null => "null",
            Param::Bool(_) => "boolean",
            Param::Int(_) => "integer",
            Param::Float(_) => "number",
            Param::Text(_) => "string",
            Param::Json(_) => "object",
            Param::Bytes(_) => "buffer",
            Param::Time(_) => "Date",
        }
    }

    /// The value as text, for text columns (objects are serialized as JSON).
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Param::Null => return None,
            Param::Bool(b) => b.to_string(),
            Param::Int(i) => i.to_string(),
            Param::Float(f) => f.to_string(),
            Param::Text(s) => s.clone(),
            Param::Json(j) => j.to_string(),
            Param::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Param::Time(t) => iso_utc(*t),
        })
    }
}

/// Parameters of one statement: positional, or named (`:name` in the SQL).
#[derive(Debug, Clone, Default)]
pub enum Params {
    /// no parameters
    #[default]
    None,
    /// `$1`/`?` placeholders, in order
    Positional(Vec<Param>),
    /// `:name` placeholders
    Named(Vec<(String, Param)>),
}

/// Formats a UTC time the way JS's `Date.prototype.toISOString` does.
pub fn iso_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats a time without zone (`TIMESTAMP`, `DATETIME`) as ISO-8601 without offset.
pub fn iso_naive(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// Formats a date as `YYYY-MM-DD`.
pub fn iso_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Formats a time of day as `HH:MM:SS[.ffffff]`.
pub fn iso_time(t: NaiveTime) -> String {
    t.format("%H:%M:%S%.f").to_string()
}

/// Parses a time given as ISO-8601 text (with or without offset: without means UTC),
/// a date alone, or epoch milliseconds; task times must lie in the years 1970–9999.
pub fn parse_time(field: &str, p: &Param) -> crate::Result<DateTime<Utc>> {
    let t = parse_any_time(field, p)?;
    let year = chrono::Datelike::year(&t);
    if !(1970..=9999).contains(&year) {
        return Err(crate::DbcError::validation(
            field,
            format!("{field} must lie between the years 1970 and 9999"),
        ));
    }
    Ok(t)
}

/// Like [`parse_time`], for SQL parameters: any year the database can hold.
pub fn parse_any_time(field: &str, p: &Param) -> crate::Result<DateTime<Utc>> {
    let bad = || {
        crate::DbcError::validation(
            field,
            format!("{field} must be an ISO-8601 time or epoch milliseconds"),
        )
    };
    let t = match p {
        Param::Time(t) => *t,
        Param::Int(ms) => DateTime::<Utc>::from_timestamp_millis(*ms).ok_or_else(bad)?,
        Param::Float(ms) if ms.is_finite() => {
            DateTime::<Utc>::from_timestamp_millis(*ms as i64).ok_or_else(bad)?
        }
        Param::Text(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                t.with_timezone(&Utc)
            } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                t.and_utc()
            } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
                t.and_utc()
            } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                d.and_time(NaiveTime::MIN).and_utc()
            } else {
                return Err(bad());
            }
        }
        _ => return Err(bad()),
    };
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_leave_as_strings() {
        assert_eq!(Value::from_i64(42), Value::Int(42));
        assert_eq!(
            Value::from_i64(1 << 60),
            Value::Text((1i64 << 60).to_string())
        );
        assert_eq!(Value::from_u64(u64::MAX), Value::Text(u64::MAX.to_string()));
    }

    #[test]
    fn times_parse_from_iso_and_epoch() {
        let a = parse_time("runAt", &Param::Text("2024-05-01T10:00:00Z".into())).unwrap();
        let b = parse_time("runAt", &Param::Int(a.timestamp_millis())).unwrap();
        assert_eq!(a, b);
        assert_eq!(iso_utc(a), "2024-05-01T10:00:00.000Z");
        assert!(parse_time("runAt", &Param::Text("10000-01-01T00:00:00Z".into())).is_err());
        assert!(parse_time("runAt", &Param::Bool(true)).is_err());
    }

    #[test]
    fn json_numbers_split_into_int_and_float() {
        assert_eq!(Param::from_json(serde_json::json!(3)), Param::Int(3));
        assert_eq!(Param::from_json(serde_json::json!(2.5)), Param::Float(2.5));
        assert_eq!(
            Param::from_json(serde_json::json!({"a":1})).kind(),
            "object"
        );
    }
}
