//! Conformance suite: the same test bodies run against PostgreSQL, MariaDB and SQLite.
//!
//! Every test body below is an `async fn(Provider)`; the `conformance!` macro at the end
//! instantiates each of them once per provider (`postgres::*`, `mariadb::*`, `sqlite::*`).
//!
//! Databases: PostgreSQL from `DBC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), MariaDB from `DBC_TEST_MARIADB_URL`
//! (default `mysql://root@127.0.0.1:3306/test`), SQLite in a temporary file per test.
//! An unreachable database fails the test with a message naming the variable to set;
//! nothing is skipped.
//!
//! Every test works under its own random table prefix (`t<hex>_`), so the tests run in
//! parallel, and drops its tables at the end (best effort, also when the body panics).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use dbc_core::connector::{test_connection, DebugInfo, OpOptions};
use dbc_core::value::{Param, Params, Value};

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("a valid time")
        .with_timezone(&chrono::Utc)
}
use dbc_core::{Connector, ConnectorConfig, Provider};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------
// 1. Types
// ---------------------------------------------------------------------------------------

const TWO_53: i64 = 1 << 53;

/// `(column type, bound parameter, value read back)` per provider. Where a provider lacks
/// the type, the case records what it does instead (documented behaviour).
fn type_cases(p: Provider) -> Vec<(&'static str, Param, Value)> {
    use Param as P;
    use Value as V;
    let obj = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 1.5}});
    let unicode = "héllo ✓ 'single' \"double\" back\\slash 😀".to_string();
    let uuid = "0190d6e0-5b2c-7a3e-8f00-00000000abcd".to_string();
    let bytes = vec![0u8, 1, 2, 127, 128, 254, 255];
    let mut cases: Vec<(&str, Param, Value)> = match p {
        Provider::Postgres => vec![
            ("integer", P::Null, V::Null),
            ("text", P::Null, V::Null),
            ("boolean", P::Bool(true), V::Bool(true)),
            ("boolean", P::Bool(false), V::Bool(false)),
            ("smallint", P::Int(-32768), V::Int(-32768)),
            ("integer", P::Int(i32::MAX as i64), V::Int(i32::MAX as i64)),
            ("bigint", P::Int(TWO_53 - 1), V::Int(TWO_53 - 1)),
            ("bigint", P::Int(-(TWO_53 - 1)), V::Int(-(TWO_53 - 1))),
            (
                "bigint",
                P::Int(TWO_53 + 1),
                V::Text("9007199254740993".into()),
            ),
            (
                "bigint",
                P::Int(i64::MAX),
                V::Text("9223372036854775807".into()),
            ),
            (
                "bigint",
                P::Int(i64::MIN),
                V::Text("-9223372036854775808".into()),
            ),
            ("double precision", P::Float(1.5), V::Float(1.5)),
            ("double precision", P::Float(-0.1), V::Float(-0.1)),
            ("real", P::Float(0.25), V::Float(0.25)),
            (
                "numeric(20,4)",
                P::Text("12345.6789".into()),
                V::Text("12345.6789".into()),
            ),
            (
                "numeric(20,4)",
                P::Text("-0.0001".into()),
                V::Text("-0.0001".into()),
            ),
            (
                "numeric(30,0)",
                P::Text("123456789012345678901234567890".into()),
                V::Text("123456789012345678901234567890".into()),
            ),
            ("text", P::Text(unicode.clone()), V::Text(unicode.clone())),
            (
                "varchar(100)",
                P::Text(unicode.clone()),
                V::Text(unicode.clone()),
            ),
            ("jsonb", P::Json(obj.clone()), V::Json(obj.clone())),
            ("json", P::Json(obj.clone()), V::Json(obj.clone())),
            (
                "jsonb",
                P::Json(json!([1, 2, 3])),
                V::Json(json!([1, 2, 3])),
            ),
            // a string bound to a json column is JSON text (as node-postgres does)
            (
                "jsonb",
                P::Text(r#"{"k":"v"}"#.into()),
                V::Json(json!({"k": "v"})),
            ),
            ("uuid", P::Text(uuid.to_uppercase()), V::Text(uuid.clone())),
            // timestamptz: any ISO-8601 offset in, UTC with `Z` and milliseconds out
            (
                "timestamptz",
                P::Text("2024-05-01T10:20:30.123+02:00".into()),
                V::Text("2024-05-01T08:20:30.123Z".into()),
            ),
            (
                "timestamptz",
                P::Text("2024-05-01T08:20:30.123Z".into()),
                V::Text("2024-05-01T08:20:30.123Z".into()),
            ),
            (
                "timestamptz",
                P::Int(1_714_551_630_123),
                V::Text("2024-05-01T08:20:30.123Z".into()),
            ),
            // timestamp without time zone: the UTC wall time, without `Z`
            (
                "timestamp(3)",
                P::Text("2024-05-01T08:20:30.123Z".into()),
                V::Text("2024-05-01T08:20:30.123".into()),
            ),
            (
                "date",
                P::Text("2024-05-01".into()),
                V::Text("2024-05-01".into()),
            ),
            ("bytea", P::Bytes(bytes.clone()), V::Bytes(bytes.clone())),
        ],
        Provider::Mariadb => vec![
            ("INT", P::Null, V::Null),
            ("TEXT", P::Null, V::Null),
            ("BOOLEAN", P::Bool(true), V::Bool(true)),
            ("TINYINT(1)", P::Bool(false), V::Bool(false)),
            ("SMALLINT", P::Int(-32768), V::Int(-32768)),
            ("INT", P::Int(i32::MAX as i64), V::Int(i32::MAX as i64)),
            ("BIGINT", P::Int(TWO_53 - 1), V::Int(TWO_53 - 1)),
            ("BIGINT", P::Int(-(TWO_53 - 1)), V::Int(-(TWO_53 - 1))),
            (
                "BIGINT",
                P::Int(TWO_53 + 1),
                V::Text("9007199254740993".into()),
            ),
            (
                "BIGINT",
                P::Int(i64::MAX),
                V::Text("9223372036854775807".into()),
            ),
            (
                "BIGINT",
                P::Int(i64::MIN),
                V::Text("-9223372036854775808".into()),
            ),
            (
                "BIGINT UNSIGNED",
                P::Text("18446744073709551615".into()),
                V::Text("18446744073709551615".into()),
            ),
            ("DOUBLE", P::Float(1.5), V::Float(1.5)),
            ("DOUBLE", P::Float(-0.1), V::Float(-0.1)),
            ("FLOAT", P::Float(0.25), V::Float(0.25)),
            (
                "DECIMAL(20,4)",
                P::Text("12345.6789".into()),
                V::Text("12345.6789".into()),
            ),
            (
                "DECIMAL(20,4)",
                P::Text("-0.0001".into()),
                V::Text("-0.0001".into()),
            ),
            (
                "DECIMAL(30,0)",
                P::Text("123456789012345678901234567890".into()),
                V::Text("123456789012345678901234567890".into()),
            ),
            ("TEXT", P::Text(unicode.clone()), V::Text(unicode.clone())),
            (
                "VARCHAR(100)",
                P::Text(unicode.clone()),
                V::Text(unicode.clone()),
            ),
            // MariaDB's JSON is LONGTEXT utf8mb4_bin + CHECK(JSON_VALID): read back as JSON
            ("JSON", P::Json(obj.clone()), V::Json(obj.clone())),
            ("JSON", P::Json(json!([1, 2, 3])), V::Json(json!([1, 2, 3]))),
            (
                "JSON",
                P::Text(r#"{"k":"v"}"#.into()),
                V::Json(json!({"k": "v"})),
            ),
            ("CHAR(36)", P::Text(uuid.clone()), V::Text(uuid.clone())),
            // DATETIME has no zone: a JS Date (Param::Time) is stored as UTC (the session
            // time zone is +00:00) and read back without `Z`. MariaDB itself refuses ISO
            // text with `Z` or an offset; the connector does not rewrite strings.
            (
                "DATETIME(3)",
                P::Time(utc("2024-05-01T08:20:30.123Z")),
                V::Text("2024-05-01T08:20:30.123".into()),
            ),
            (
                "DATETIME(3)",
                P::Text("2024-05-01 08:20:30.123".into()),
                V::Text("2024-05-01T08:20:30.123".into()),
            ),
            // TIMESTAMP is a UTC instant: read back with `Z`
            (
                "TIMESTAMP(3) NULL",
                P::Time(utc("2024-05-01T08:20:30.123Z")),
                V::Text("2024-05-01T08:20:30.123Z".into()),
            ),
            (
                "DATE",
                P::Text("2024-05-01".into()),
                V::Text("2024-05-01".into()),
            ),
            ("BLOB", P::Bytes(bytes.clone()), V::Bytes(bytes.clone())),
            ("LONGBLOB", P::Bytes(bytes.clone()), V::Bytes(bytes.clone())),
            (
                "VARBINARY(16)",
                P::Bytes(bytes.clone()),
                V::Bytes(bytes.clone()),
            ),
        ],
        Provider::Sqlite => vec![
            ("INTEGER", P::Null, V::Null),
            ("TEXT", P::Null, V::Null),
            ("BOOLEAN", P::Bool(true), V::Bool(true)),
            ("BOOLEAN", P::Bool(false), V::Bool(false)),
            ("INTEGER", P::Int(-32768), V::Int(-32768)),
            ("INTEGER", P::Int(i32::MAX as i64), V::Int(i32::MAX as i64)),
            ("BIGINT", P::Int(TWO_53 - 1), V::Int(TWO_53 - 1)),
            ("BIGINT", P::Int(-(TWO_53 - 1)), V::Int(-(TWO_53 - 1))),
            (
                "BIGINT",
                P::Int(TWO_53 + 1),
                V::Text("9007199254740993".into()),
            ),
            (
                "BIGINT",
                P::Int(i64::MAX),
                V::Text("9223372036854775807".into()),
            ),
            (
                "BIGINT",
                P::Int(i64::MIN),
                V::Text("-9223372036854775808".into()),
            ),
            ("REAL", P::Float(1.5), V::Float(1.5)),
            ("REAL", P::Float(-0.1), V::Float(-0.1)),
            ("DOUBLE", P::Float(0.25), V::Float(0.25)),
            // SQLite has no decimal type: NUMERIC affinity turns '12345.6789' into a REAL
            // (so it comes back as a float); a TEXT column keeps the exact decimal text
            (
                "NUMERIC(20,4)",
                P::Text("12345.6789".into()),
                V::Float(12345.6789),
            ),
            ("NUMERIC(20,4)", P::Text("42".into()), V::Int(42)),
            (
                "TEXT",
                P::Text("12345.6789".into()),
                V::Text("12345.6789".into()),
            ),
            (
                "TEXT",
                P::Text("123456789012345678901234567890".into()),
                V::Text("123456789012345678901234567890".into()),
            ),
            ("TEXT", P::Text(unicode.clone()), V::Text(unicode.clone())),
            (
                "VARCHAR(100)",
                P::Text(unicode.clone()),
                V::Text(unicode.clone()),
            ),
            // SQLite has no JSON type: JSON is stored as text and comes back as Value::Text
            ("TEXT", P::Json(obj.clone()), V::Text(obj.to_string())),
            ("JSON", P::Json(json!([1, 2, 3])), V::Text("[1,2,3]".into())),
            ("CHAR(36)", P::Text(uuid.clone()), V::Text(uuid.clone())),
            // no time types either: the ISO-8601 text is kept as given
            (
                "TEXT",
                P::Text("2024-05-01T08:20:30.123Z".into()),
                V::Text("2024-05-01T08:20:30.123Z".into()),
            ),
            (
                "DATETIME",
                P::Text("2024-05-01T10:20:30.123+02:00".into()),
                V::Text("2024-05-01T10:20:30.123+02:00".into()),
            ),
            (
                "DATE",
                P::Text("2024-05-01".into()),
                V::Text("2024-05-01".into()),
            ),
            ("BLOB", P::Bytes(bytes.clone()), V::Bytes(bytes.clone())),
        ],
    };
    // on every provider: an integer parameter into a text column becomes its decimal text
    let text = if p == Provider::Mariadb {
        "TEXT"
    } else {
        "text"
    };
    cases.push((text, P::Int(42), V::Text("42".into())));
    cases.push((
        text,
        P::Int(-(TWO_53 + 1)),
        V::Text("-9007199254740993".into()),
    ));
    cases
}

async fn types_round_trip(p: Provider) {
    with_db(p, |db| async move {
        let mut failures = Vec::new();
        for (n, (ty, param, expected)) in type_cases(db.p).into_iter().enumerate() {
            let table = db.user_table(&format!("rt{n}"), &format!("v {ty}")).await;
            let label = format!("#{n} {ty} <- {param:?}");
            let insert = format!("INSERT INTO {table} (v) VALUES ({})", db.ph(1));
            match db.try_sql(&insert, vec![param]).await {
                Ok(o) => assert_eq!(rows_of(o).rows_affected, 1, "{label}"),
                Err(f) => {
                    failures.push(format!(
                        "{label}: insert failed: {} {}",
                        f.error.code(),
                        f.error
                    ));
                    continue;
                }
            }
            match db.try_sql(&format!("SELECT v FROM {table}"), vec![]).await {
                Ok(o) => {
                    let out = rows_of(o);
                    assert_eq!(out.columns, vec!["v".to_string()], "{label}");
                    let got = out.rows.first().and_then(|r| r.first()).cloned();
                    if got.as_ref() != Some(&expected) {
                        failures.push(format!("{label}: expected {expected:?}, got {got:?}"));
                    }
                }
                Err(f) => failures.push(format!(
                    "{label}: select failed: {} {}",
                    f.error.code(),
                    f.error
                )),
            }
            db.drop_table(&table).await;
        }
        assert!(
            failures.is_empty(),
            "[{}] type round trip:\n  {}",
            db.p,
            failures.join("\n  ")
        );
    })
    .await
}

/// Null into an INT column and an integer into a TEXT column, both through named and
/// positional parameters, in one row.
async fn types_null_into_int_and_int_into_text(p: Provider) {
    with_db(p, |db| async move {
        let table = db
            .user_table("mixed", &format!("{}, n INTEGER, t TEXT", db.serial_id()))
            .await;
        let out = db
            .sql(
                &format!(
                    "INSERT INTO {table} (n, t) VALUES ({}, {})",
                    db.ph(1),
                    db.ph(2)
                ),
                vec![Param::Null, Param::Int(7)],
            )
            .await;
        assert_eq!(out.rows_affected, 1);
        let named = Params::Named(vec![
            ("n".into(), Param::Null),
            ("t".into(), Param::Int(-8)),
        ]);
        let out = rows_of(
            db.conn
                .query(
                    &format!("INSERT INTO {table} (n, t) VALUES (:n, :t)"),
                    named,
                    &OpOptions::default(),
                )
                .await
                .unwrap_or_else(|f| panic!("{}", f.error)),
        );
        assert_eq!(out.rows_affected, 1);
        let out = db
            .sql(&format!("SELECT n, t FROM {table} ORDER BY id"), vec![])
            .await;
        assert_eq!(out.columns, vec!["n", "t"]);
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Null, Value::Text("7".into())],
                vec![Value::Null, Value::Text("-8".into())]
            ]
        );
        // and a null compares as SQL NULL
        let n = db.count(&table, "WHERE n IS NULL", vec![]).await;
        assert_eq!(n, 2);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 2. Coded errors
// ---------------------------------------------------------------------------------------

async fn errors_connection_refused(p: Provider) {
    with_db(p, |db| async move {
        let started = Instant::now();
        let r = db
            .open_another(|cfg| {
                cfg["pool"]["acquireTimeoutMs"] = json!(2000);
                match db.p {
                    Provider::Sqlite => {
                        // SQLite's "refused": a file in a directory that does not exist
                        cfg["primary"]["sqliteFile"] = json!("/nonexistent-dbc-dir/sub/x.db");
                    }
                    p => {
                        cfg["primary"]["url"] =
                            json!(with_hostport(&server_url(p).unwrap(), "127.0.0.1:1"))
                    }
                }
            })
            .await;
        let elapsed = started.elapsed();
        let err = match (db.p, r) {
            // SQLite: a file that cannot be opened fails the start
            (Provider::Sqlite, r) => r.err().expect("opening an unreachable file must fail"),
            // a server that is down: the connector starts `reconnecting` (the health loop
            // brings it in later) and operations fail at once, saying why
            (_, Ok(other)) => {
                assert_eq!(other.connection_state(), "reconnecting");
                let t0 = Instant::now();
                let f = other
                    .execute(
                        "getTask",
                        json!({"id": "0190d6e0-0000-7000-8000-000000000000"}),
                        &Default::default(),
                    )
                    .await
                    .expect_err("no database: the operation fails");
                assert!(t0.elapsed() < Duration::from_millis(200), "fails fast");
                assert!(f.error.to_string().contains("refused"), "{}", f.error);
                other.close().await;
                f.error
            }
            (_, Err(e)) => panic!("a server that is down is not an open error: {e}"),
        };
        assert_eq!(err.code(), "DBC_CONNECTION", "{err}");
        assert!(err.is_retryable());
        assert!(!err.outcome_unknown());
        assert!(
            elapsed < Duration::from_secs(3),
            "took {elapsed:?}, acquire timeout is 2 s"
        );
        // the editor's "Test connection" reports the same
        let mut cfg = db.cfg.clone();
        match db.p {
            Provider::Sqlite => {
                cfg["primary"]["sqliteFile"] = json!("/nonexistent-dbc-dir/sub/x.db")
            }
            p => {
                cfg["primary"]["url"] = json!(with_hostport(&server_url(p).unwrap(), "127.0.0.1:1"))
            }
        }
        let cfg = config_of(&cfg);
        let err = test_connection(&cfg.primary, &cfg.pool)
            .await
            .expect_err("test_connection must fail");
        assert_eq!(err.code(), "DBC_CONNECTION", "{err}");
    })
    .await
}

async fn errors_bad_credentials(p: Provider) {
    with_db(p, |db| async move {
        let attempts: Vec<(String, Json)> = match db.p {
            Provider::Sqlite => {
                // no credentials in SQLite; the nearest case is a file that is not a database
                let bad = db.sqlite_file.with_extension("notadb");
                std::fs::write(&bad, b"this is not a sqlite database, it is just text ............................................................").unwrap();
                let v = json!({"provider": "sqlite", "sqliteFile": bad.to_string_lossy()});
                vec![("a file that is not a database".into(), v)]
            }
            p => {
                let url = server_url(p).unwrap();
                let provider = p.as_str();
                let mut v = vec![(
                    "unknown user".to_string(),
                    json!({"provider": provider, "url": with_userinfo(&url, "dbc_no_such_user_x:secret-pw")}),
                )];
                // PostgreSQL here trusts local users, so a wrong password is only testable on MariaDB
                if p == Provider::Mariadb {
                    let auth = url.split_once("://").unwrap().1.split('/').next().unwrap_or("");
                    let user = match auth.rfind('@') {
                        Some(at) => auth[..at].split(':').next().unwrap_or("root").to_string(),
                        None => "root".to_string(),
                    };
                    v.push(("wrong password".into(), json!({"provider": provider, "url": with_userinfo(&url, &format!("{user}:definitely-wrong-pw"))})));
                }
                v
            }
        };
        for (what, primary) in attempts {
            let r = db.open_another(|cfg| cfg["primary"] = primary.clone()).await;
            let err = r.err().unwrap_or_else(|| panic!("[{}] {what}: open must fail", db.p));
            assert_eq!(err.code(), "DBC_CONNECTION", "[{}] {what}: {err}", db.p);
            let text = err.to_string();
            assert!(!text.contains("secret-pw") && !text.contains("definitely-wrong-pw"), "password leaked: {text}");
        }
        if db.p == Provider::Sqlite {
            let _ = std::fs::remove_file(db.sqlite_file.with_extension("notadb"));
        }
    })
    .await
}

async fn errors_syntax(p: Provider) {
    with_db(p, |db| async move {
        let f = db.sql_err("SELEC 1", vec![]).await;
        assert_code(&f, "DBC_QUERY");
        assert!(!f.error.is_retryable());
        let expected = match db.p {
            Provider::Postgres => Some("42601"),
            Provider::Mariadb => Some("42000"),
            // SQLite has no SQLSTATE; the connector reports its result code (1 = SQLITE_ERROR)
            Provider::Sqlite => Some("1"),
        };
        assert_eq!(f.error.sql_state(), expected, "{}", f.error);
        // an unknown table is a query error too
        let f = db
            .sql_err(
                &format!("SELECT * FROM {}", db.t("u_no_such_table")),
                vec![],
            )
            .await;
        assert_code(&f, "DBC_QUERY");
        assert!(f.error.sql_state().is_some());
        // empty SQL never reaches the database
        let f = db.sql_err("   ", vec![]).await;
        assert_validation(&f, "sql");
    })
    .await
}

async fn errors_unique_violation(p: Provider) {
    with_db(p, |db| async move {
        let table = db.user_table("uniq", "k VARCHAR(50) NOT NULL UNIQUE").await;
        let insert = format!("INSERT INTO {table} (k) VALUES ({})", db.ph(1));
        db.sql(&insert, vec![Param::Text("x".into())]).await;
        let f = db.sql_err(&insert, vec![Param::Text("x".into())]).await;
        assert_code(&f, "DBC_CONFLICT");
        assert!(!f.error.is_retryable());
        let expected = match db.p {
            Provider::Postgres => "23505",
            Provider::Mariadb => "23000",
            Provider::Sqlite => "2067", // SQLITE_CONSTRAINT_UNIQUE
        };
        assert_eq!(f.error.sql_state(), Some(expected), "{}", f.error);
        assert_eq!(db.count(&table, "", vec![]).await, 1);
    })
    .await
}

async fn errors_param_count(p: Provider) {
    with_db(p, |db| async move {
        let one = if db.p == Provider::Postgres {
            "SELECT $1::int AS a"
        } else {
            "SELECT ? AS a"
        };
        let two = if db.p == Provider::Postgres {
            "SELECT $1::int AS a, $2::int AS b"
        } else {
            "SELECT ? AS a, ? AS b"
        };
        let f = db.sql_err(one, vec![Param::Int(1), Param::Int(2)]).await;
        assert_validation(&f, "params");
        let f = db.sql_err(two, vec![Param::Int(1)]).await;
        assert_validation(&f, "params");
        let f = db.sql_err(one, vec![]).await;
        assert_validation(&f, "params");
        // a missing named parameter names itself
        let f = db
            .conn
            .query(
                "SELECT :a AS a, :zz AS b",
                Params::Named(vec![("a".into(), Param::Int(1))]),
                &OpOptions::default(),
            )
            .await
            .expect_err("missing :zz");
        assert_validation(&f, "params.zz");
        // and the right count works
        let out = db.sql(one, vec![Param::Int(5)]).await;
        assert_eq!(out.rows, vec![vec![Value::Int(5)]]);
    })
    .await
}

/// Invalid JSON text into a JSON column: PostgreSQL refuses it before sending
/// (`DBC_VALIDATION`); MariaDB's JSON_VALID check refuses it (`DBC_CONFLICT`); SQLite has
/// no JSON type, so only an explicit `CHECK (json_valid(...))` refuses it.
async fn errors_invalid_json_param(p: Provider) {
    with_db(p, |db| async move {
        let bad = Param::Text("{not json".into());
        match db.p {
            Provider::Postgres => {
                let table = db.user_table("js", "j jsonb").await;
                let f = db
                    .sql_err(
                        &format!("INSERT INTO {table} (j) VALUES ($1)"),
                        vec![bad.clone()],
                    )
                    .await;
                assert_validation(&f, "params[0]");
                let f = db
                    .sql_err("SELECT $1::json AS j", vec![Param::Int(1), bad.clone()])
                    .await;
                assert_validation(&f, "params");
                let f = db
                    .sql_err(
                        "SELECT $1::int AS i, $2::jsonb AS j",
                        vec![Param::Int(1), bad],
                    )
                    .await;
                assert_validation(&f, "params[1]");
                assert_eq!(db.count(&table, "", vec![]).await, 0);
            }
            Provider::Mariadb => {
                let table = db.user_table("js", "j JSON").await;
                let f = db
                    .sql_err(&format!("INSERT INTO {table} (j) VALUES (?)"), vec![bad])
                    .await;
                assert_code(&f, "DBC_CONFLICT");
                assert_eq!(db.count(&table, "", vec![]).await, 0);
            }
            Provider::Sqlite => {
                let plain = db.user_table("js", "j TEXT").await;
                db.sql(
                    &format!("INSERT INTO {plain} (j) VALUES (?)"),
                    vec![bad.clone()],
                )
                .await;
                let out = db.sql(&format!("SELECT j FROM {plain}"), vec![]).await;
                assert_eq!(out.rows, vec![vec![Value::Text("{not json".into())]]);
                let checked = db.user_table("jsc", "j TEXT CHECK (json_valid(j))").await;
                let f = db
                    .sql_err(&format!("INSERT INTO {checked} (j) VALUES (?)"), vec![bad])
                    .await;
                assert_code(&f, "DBC_CONFLICT");
            }
        }
    })
    .await
}

async fn errors_unknown_operation(p: Provider) {
    with_db(p, |db| async move {
        let f = db.op_err("dropEverything", json!({})).await;
        assert_validation(&f, "operation");
        assert!(
            f.error.to_string().contains("insertTask"),
            "the message lists the known operations: {}",
            f.error
        );
        // payload shape errors of known operations
        let f = db.op_err("getTask", json!({"id": "nope"})).await;
        assert_validation(&f, "id");
        let f = db.op_err("getTask", json!({})).await;
        assert_validation(&f, "id");
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": uuid::Uuid::now_v7().to_string(), "status": "done"}),
            )
            .await;
        assert_validation(&f, "status");
        let f = db.op_err("updateTaskStatus", json!([1])).await;
        assert_validation(&f, "payload");
        let f = db.op_err("insertTask", json!([])).await;
        assert_validation(&f, "payload");
        let f = db.op_err("insertTask", json!("a string")).await;
        assert_code(&f, "DBC_VALIDATION");
    })
    .await
}

async fn errors_bad_config(p: Provider) {
    with_db(p, |db| async move {
        let mut bad: Vec<(&str, Json)> = Vec::new();
        let mut c = db.cfg.clone();
        c["primary"]["provider"] = json!("oracle");
        bad.push(("unknown provider", c));
        for prefix in [
            "Bad-Prefix",
            "1abc",
            "",
            "x; drop table",
            "a234567890123456789012345678901_",
        ] {
            let mut c = db.cfg.clone();
            c["tablePrefix"] = json!(prefix);
            bad.push(("bad prefix", c));
        }
        let mut c = db.cfg.clone();
        c["primary"]["port"] = json!(70000);
        bad.push(("port 70000", c));
        let mut c = db.cfg.clone();
        c["primary"]["port"] = json!(0);
        bad.push(("port 0", c));
        let mut c = db.cfg.clone();
        c["pool"]["poolMax"] = json!(0);
        bad.push(("poolMax 0", c));
        let mut c = db.cfg.clone();
        c["pool"]["poolMin"] = json!(20);
        bad.push(("poolMin > poolMax", c));
        let mut c = db.cfg.clone();
        c["primary"]["ssl"] = json!("maybe");
        bad.push(("ssl mode", c));
        let mut c = db.cfg.clone();
        c["failback"] = json!("sometimes");
        bad.push(("failback", c));
        if db.p == Provider::Sqlite {
            let mut c = db.cfg.clone();
            c["primary"]["sqliteFile"] = json!("");
            bad.push(("missing sqlite file", c));
        }
        for (what, cfg) in bad {
            let started = Instant::now();
            let err = Connector::open(config_of(&cfg))
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: open must fail"));
            assert_eq!(err.code(), "DBC_CONFIG", "{what}: {err}");
            assert!(!err.is_retryable(), "{what}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{what}: a config error needs no connection"
            );
            let err = ConnectorConfig::from_json(&cfg.to_string())
                .err()
                .unwrap_or_else(|| panic!("{what}: from_json"));
            assert_eq!(err.code(), "DBC_CONFIG", "{what}: {err}");
        }
        // a URL with a password never shows up in a config error
        if let Some(url) = server_url(db.p) {
            let mut c = db.cfg.clone();
            c["primary"]["url"] = json!(with_userinfo(&url, "someone:hunter2-secret"));
            c["primary"]["port"] = json!(70000);
            let err = Connector::open(config_of(&c))
                .await
                .err()
                .expect("port 70000");
            assert!(!err.to_string().contains("hunter2-secret"), "{err}");
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 3. Parameters, rows_affected, last_insert_id
// ---------------------------------------------------------------------------------------

async fn params_positional(p: Provider) {
    with_db(p, |db| async move {
        let table = db
            .user_table(
                "items",
                &format!(
                    "{}, name VARCHAR(100) NOT NULL, qty INTEGER NOT NULL",
                    db.serial_id()
                ),
            )
            .await;
        let insert = format!(
            "INSERT INTO {table} (name, qty) VALUES ({}, {})",
            db.ph(1),
            db.ph(2)
        );
        let out = db
            .sql(&insert, vec![Param::Text("apple".into()), Param::Int(3)])
            .await;
        assert_eq!(out.rows_affected, 1);
        assert!(out.rows.is_empty());
        match db.p {
            // PostgreSQL has no last-insert id; RETURNING is the way
            Provider::Postgres => assert_eq!(out.last_insert_id, None),
            Provider::Mariadb | Provider::Sqlite => {
                assert_eq!(out.last_insert_id, Some(Value::Int(1)))
            }
        }
        // one multi-row insert
        let multi = format!(
            "INSERT INTO {table} (name, qty) VALUES ({}, {}), ({}, {}), ({}, {})",
            db.ph(1),
            db.ph(2),
            db.ph(3),
            db.ph(4),
            db.ph(5),
            db.ph(6)
        );
        let out = db
            .sql(
                &multi,
                vec![
                    Param::Text("pear".into()),
                    Param::Int(5),
                    Param::Text("plum".into()),
                    Param::Int(7),
                    Param::Text("fig".into()),
                    Param::Int(9),
                ],
            )
            .await;
        assert_eq!(out.rows_affected, 3);
        match db.p {
            Provider::Postgres => assert_eq!(out.last_insert_id, None),
            // MariaDB reports the first id of a multi-row insert, SQLite the last rowid
            Provider::Mariadb => assert_eq!(out.last_insert_id, Some(Value::Int(2))),
            Provider::Sqlite => assert_eq!(out.last_insert_id, Some(Value::Int(4))),
        }
        if db.p == Provider::Postgres {
            let out = db
                .sql(
                    &format!("INSERT INTO {table} (name, qty) VALUES ($1, $2) RETURNING id"),
                    vec![Param::Text("kiwi".into()), Param::Int(1)],
                )
                .await;
            assert_eq!(out.rows, vec![vec![Value::Int(5)]]);
            assert_eq!(out.rows_affected, 1);
        } else {
            db.sql(&insert, vec![Param::Text("kiwi".into()), Param::Int(1)])
                .await;
        }
        let update = format!(
            "UPDATE {table} SET qty = qty + {} WHERE qty >= {}",
            db.ph(1),
            db.ph(2)
        );
        let out = db.sql(&update, vec![Param::Int(10), Param::Int(5)]).await;
        assert_eq!(out.rows_affected, 3);
        assert_eq!(out.last_insert_id, None, "an UPDATE reports no insert id");
        let select = format!(
            "SELECT id, name, qty FROM {table} WHERE qty > {} ORDER BY id",
            db.ph(1)
        );
        let out = db.sql(&select, vec![Param::Int(10)]).await;
        assert_eq!(out.columns, vec!["id", "name", "qty"]);
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Int(2), Value::Text("pear".into()), Value::Int(15)],
                vec![Value::Int(3), Value::Text("plum".into()), Value::Int(17)],
                vec![Value::Int(4), Value::Text("fig".into()), Value::Int(19)],
            ]
        );
        let out = db
            .sql(
                &format!("DELETE FROM {table} WHERE name = {}", db.ph(1)),
                vec![Param::Text("nothing".into())],
            )
            .await;
        assert_eq!(out.rows_affected, 0);
        let out = db
            .sql(
                &format!("DELETE FROM {table} WHERE qty < {}", db.ph(1)),
                vec![Param::Int(10)],
            )
            .await;
        assert_eq!(out.rows_affected, 2);
        assert_eq!(out.last_insert_id, None, "a DELETE reports no insert id");
        // leading comments do not hide an INSERT
        let commented = format!(
            "/* note */ -- why\n INSERT INTO {table} (name, qty) VALUES ({}, {})",
            db.ph(1),
            db.ph(2)
        );
        let out = db
            .sql(&commented, vec![Param::Text("lime".into()), Param::Int(2)])
            .await;
        assert_eq!(out.rows_affected, 1);
        let expected = if db.p == Provider::Postgres {
            None
        } else {
            Some(Value::Int(6))
        };
        assert_eq!(out.last_insert_id, expected);
        // a SELECT reports none either
        let out = db
            .sql(
                &format!("SELECT name FROM {table} WHERE id = {}", db.ph(1)),
                vec![Param::Int(6)],
            )
            .await;
        assert_eq!(out.rows, vec![vec![Value::Text("lime".into())]]);
        assert_eq!(out.last_insert_id, None, "a SELECT reports no insert id");
    })
    .await
}

async fn params_named(p: Provider) {
    with_db(p, |db| async move {
        let table = db.user_table("named", &format!("{}, name VARCHAR(100) NOT NULL, qty INTEGER NOT NULL", db.serial_id())).await;
        let q = |sql: String, params: Vec<(&str, Param)>| {
            let db = db.clone();
            let params = Params::Named(params.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            async move {
                match db.conn.query(&sql, params, &OpOptions::default()).await {
                    Ok(o) => rows_of(o),
                    Err(f) => panic!("[{}] {sql}: {}", db.p, f.error),
                }
            }
        };
        let out = q(
            format!("INSERT INTO {table} (name, qty) VALUES (:name, :qty)"),
            vec![("qty", Param::Int(4)), ("name", Param::Text("a:b".into()))],
        )
        .await;
        assert_eq!(out.rows_affected, 1);
        if db.p != Provider::Postgres {
            assert_eq!(out.last_insert_id, Some(Value::Int(1)));
        }
        q(
            format!("INSERT INTO {table} (name, qty) VALUES (:n1, :q1), (:n2, :q2)"),
            vec![
                ("n1", Param::Text("b".into())),
                ("q1", Param::Int(6)),
                ("n2", Param::Text("c".into())),
                ("q2", Param::Int(8)),
            ],
        )
        .await;
        // one name used twice, a ':colon' inside a string literal, and a `--` comment
        let sql = format!(
            "SELECT name, qty, ':notaparam' AS lit FROM {table} WHERE qty >= :min AND (qty <= :max OR qty = :min) -- :ignored\n ORDER BY qty"
        );
        let out = q(sql, vec![("min", Param::Int(5)), ("max", Param::Int(8)), ("unused", Param::Int(0))]).await;
        assert_eq!(out.columns, vec!["name", "qty", "lit"]);
        assert_eq!(
            out.rows,
            vec![
                vec![Value::Text("b".into()), Value::Int(6), Value::Text(":notaparam".into())],
                vec![Value::Text("c".into()), Value::Int(8), Value::Text(":notaparam".into())],
            ]
        );
        let out = q(format!("UPDATE {table} SET qty = :qty WHERE name = :name"), vec![("qty", Param::Int(1)), ("name", Param::Text("a:b".into()))]).await;
        assert_eq!(out.rows_affected, 1);
        let out = q(format!("SELECT qty FROM {table} WHERE name = :name"), vec![("name", Param::Text("a:b".into()))]).await;
        assert_eq!(out.rows, vec![vec![Value::Int(1)]]);
        if db.p == Provider::Postgres {
            // `::` casts are not parameters
            let out = q("SELECT :v::int + 1 AS x".into(), vec![("v", Param::Text("41".into()))]).await;
            assert_eq!(out.rows, vec![vec![Value::Int(42)]]);
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 4. Migrations
// ---------------------------------------------------------------------------------------

/// Every migration version the connector knows, in order.
fn all_versions() -> Vec<i64> {
    dbc_core::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect()
}

async fn migrations_auto_and_status(p: Provider) {
    with_db(p, |db| async move {
        for t in OWN_TABLES {
            db.count(&db.t(t), "", vec![]).await; // exists (count works)
        }
        let out = db
            .sql(
                &format!(
                    "SELECT version FROM {} ORDER BY version",
                    db.t("migrations")
                ),
                vec![],
            )
            .await;
        assert_eq!(
            out.rows,
            all_versions()
                .into_iter()
                .map(|v| vec![Value::Int(v)])
                .collect::<Vec<_>>()
        );
        let st = db
            .conn
            .schema_status()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st.provider, db.p);
        assert_eq!(
            st.applied.iter().map(|a| a.version).collect::<Vec<_>>(),
            all_versions()
        );
        assert_eq!(st.applied[0].name, "0001_init");
        assert_eq!(st.applied[1].name, "0002_partial_indexes");
        if db.p == Provider::Postgres {
            // 0002: tasks without a workflow or a key cost no index entry
            let defs = db
                .sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 AND indexname IN ($2, $3) ORDER BY indexname",
                    vec![
                        Param::Text(db.t("tasks")),
                        Param::Text(db.t("tasks_idempotency_key")),
                        Param::Text(db.t("tasks_workflow")),
                    ],
                )
                .await;
            assert_eq!(defs.rows.len(), 2, "{:?}", defs.rows);
            let text = format!("{:?}", defs.rows);
            assert!(text.contains("UNIQUE INDEX"), "{text}");
            assert!(text.contains("WHERE (idempotency_key IS NOT NULL)"), "{text}");
            assert!(text.contains("WHERE (workflow_id IS NOT NULL)"), "{text}");
        }
        // 0003: the attempt in progress lives on the task row
        assert_eq!(
            st.applied.last().map(|m| m.name.as_str()),
            Some("0003_attempt_on_task")
        );
        db.sql(
            &format!(
                "SELECT attempt_started_at FROM {} WHERE 1 = 0",
                db.t("tasks")
            ),
            vec![],
        )
        .await;
        assert!(!st.applied[0].applied_at.is_empty());
        assert!(st.pending.is_empty(), "{:?}", st.pending);
        let again = db.conn.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            again.is_empty(),
            "a second migrate applies nothing: {again:?}"
        );
        assert_eq!(
            db.count(&db.t("migrations"), "", vec![]).await,
            all_versions().len() as i64
        );
        // reopening with autoMigrate on an up-to-date schema changes nothing either
        let other = db
            .open_another(|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        other.close().await;
        assert_eq!(
            db.count(&db.t("migrations"), "", vec![]).await,
            all_versions().len() as i64
        );
        // the JSON the admin API serves
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["applied"][0]["version"], json!(1));
        assert!(v["applied"][0]["appliedAt"].is_string(), "{v}");
        assert_eq!(v["pending"], json!([]));
    })
    .await
}

async fn migrations_manual(p: Provider) {
    with_db_cfg(
        p,
        |cfg| cfg["autoMigrate"] = json!(false),
        |db| async move {
            let st = db
                .conn
                .schema_status()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(st.applied.is_empty());
            assert_eq!(
                st.pending.iter().map(|m| m.version).collect::<Vec<_>>(),
                all_versions()
            );
            // without the schema, queue operations fail (and say so)
            let f = db.op_err("insertTask", json!({"name": "x"})).await;
            assert!(
                matches!(f.error.code(), "DBC_QUERY" | "DBC_SCHEMA"),
                "{}",
                f.error
            );
            let done = db.conn.migrate().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                done.iter().map(|m| m.version).collect::<Vec<_>>(),
                all_versions()
            );
            let st = db
                .conn
                .schema_status()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                st.applied.iter().map(|a| a.version).collect::<Vec<_>>(),
                all_versions()
            );
            assert!(st.pending.is_empty());
            assert!(db.conn.migrate().await.unwrap().is_empty());
            db.insert_task(json!({"name": "after migrate"})).await;
        },
    )
    .await
}

async fn migrations_race(p: Provider) {
    // the fixture's connector does not migrate, so the prefix is still fresh
    with_db_cfg(
        p,
        |cfg| cfg["autoMigrate"] = json!(false),
        |db| async move {
            let mut cfg = db.cfg.clone();
            cfg["autoMigrate"] = json!(true);
            cfg["pool"]["acquireTimeoutMs"] = json!(20000);
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let cfg = config_of(&cfg);
                    tokio::spawn(async move { Connector::open(cfg).await })
                })
                .collect();
            let mut opened = Vec::new();
            for (n, h) in handles.into_iter().enumerate() {
                match h.await.expect("open task panicked") {
                    Ok(c) => opened.push(c),
                    Err(e) => panic!(
                        "[{}] connector {n} of 4 failed to open: {} {e}",
                        db.p,
                        e.code()
                    ),
                }
            }
            for c in &opened {
                c.close().await;
            }
            assert_eq!(
                db.count(&db.t("migrations"), "", vec![]).await,
                all_versions().len() as i64
            );
            let st = db
                .conn
                .schema_status()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                st.applied.iter().map(|a| a.version).collect::<Vec<_>>(),
                all_versions()
            );
            assert!(st.pending.is_empty());
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// 5. Tasks
// ---------------------------------------------------------------------------------------

async fn tasks_insert_single_and_array(p: Provider) {
    with_db(p, |db| async move {
        let t = db
            .insert_task(json!({
                "name": "send-mail",
                "payload": {"to": "a@example.com", "n": [1, 2.5, null], "nested": {"ok": true}},
                "priority": 7,
                "runAt": "2030-01-02T03:04:05.678Z",
                "maxAttempts": 3,
            }))
            .await;
        assert_uuid_v7(s(&t, "id"));
        assert_eq!(s(&t, "queue"), "default");
        assert_eq!(s(&t, "name"), "send-mail");
        assert_eq!(
            t["payload"],
            json!({"to": "a@example.com", "n": [1, 2.5, null], "nested": {"ok": true}})
        );
        assert_eq!(s(&t, "status"), "pending");
        assert_eq!(i(&t, "priority"), 7);
        assert_eq!(s(&t, "runAt"), "2030-01-02T03:04:05.678Z");
        assert_eq!(i(&t, "attempts"), 0);
        assert_eq!(i(&t, "maxAttempts"), 3);
        assert!(t.get("deduplicated").is_none(), "{t}");
        time_of(&t, "createdAt");
        // what getTask reads back is what insertTask returned, on every provider
        let got = db.get_task(s(&t, "id")).await;
        for key in [
            "id",
            "queue",
            "name",
            "payload",
            "status",
            "priority",
            "runAt",
            "attempts",
            "maxAttempts",
            "workflowId",
            "idempotencyKey",
            "workerId",
            "leaseExpiresAt",
            "result",
            "lastError",
            "createdAt",
            "updatedAt",
            "startedAt",
            "finishedAt",
        ] {
            assert_eq!(got[key], t[key], "{key}: getTask {got} vs insertTask {t}");
        }
        assert_eq!(got["history"], json!([]));
        assert_eq!(got["errors"], json!([]));
        assert_eq!(got["dependsOn"], json!([]));
        // defaults, and the node's queue
        let opts = OpOptions {
            debug: false,
            queue: Some("mail".into()),
        };
        let d = db.op_with("insertTask", json!({}), &opts).await;
        assert_eq!(s(&d, "queue"), "mail");
        assert_eq!(i(&d, "priority"), 0);
        assert_eq!(i(&d, "maxAttempts"), 5);
        assert_eq!(d["payload"], Json::Null);
        let runs = time_of(&d, "runAt");
        assert!(
            (chrono::Utc::now() - runs).num_seconds().abs() < 60,
            "runAt defaults to now"
        );
        // epoch milliseconds are accepted for runAt
        let e = db.insert_task(json!({"runAt": 1_893_456_000_000i64})).await;
        assert_eq!(s(&e, "runAt"), "2030-01-01T00:00:00.000Z");
        // an array: one result per task, in order
        let before = db.count(&db.t("tasks"), "", vec![]).await;
        let arr = db
            .insert_task(json!([
                {"name": "a", "payload": 1},
                {"name": "b", "payload": "two", "queue": "other"},
                {"name": "c", "payload": [3]},
            ]))
            .await;
        let arr = arr.as_array().expect("an array in, an array out");
        assert_eq!(arr.len(), 3);
        assert_eq!(
            arr.iter().map(|t| s(t, "name")).collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(arr[1]["queue"], json!("other"));
        assert_eq!(
            arr.iter().map(|t| t["payload"].clone()).collect::<Vec<_>>(),
            vec![json!(1), json!("two"), json!([3])]
        );
        let ids: Vec<&str> = arr.iter().map(|t| s(t, "id")).collect();
        for id in &ids {
            assert_uuid_v7(id);
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3);
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, before + 3);
        for t in arr {
            let got = db.get_task(s(t, "id")).await;
            assert_eq!(got["name"], t["name"]);
            assert_eq!(got["payload"], t["payload"]);
        }
    })
    .await
}

async fn tasks_idempotency(p: Provider) {
    with_db(p, |db| async move {
        let first = db
            .insert_task(json!({"name": "once", "idempotencyKey": "order-42", "payload": {"v": 1}}))
            .await;
        assert!(first.get("deduplicated").is_none(), "{first}");
        let second = db
            .insert_task(
                json!({"name": "twice", "idempotencyKey": "order-42", "payload": {"v": 2}}),
            )
            .await;
        assert_eq!(second["deduplicated"], json!(true), "{second}");
        assert_eq!(second["id"], first["id"]);
        assert_eq!(second["name"], json!("once"), "the first task is returned");
        assert_eq!(second["payload"], json!({"v": 1}));
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 1);
        // inside an array, a duplicate is resolved per element
        let arr = db
            .insert_task(json!([
                {"name": "new", "idempotencyKey": "order-43"},
                {"name": "dup", "idempotencyKey": "order-42"},
            ]))
            .await;
        assert!(arr[0].get("deduplicated").is_none());
        assert_eq!(arr[1]["deduplicated"], json!(true));
        assert_eq!(arr[1]["id"], first["id"]);
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 2);
        // the same new key twice in one array: one row, the second element deduplicated
        let arr = db
            .insert_task(json!([
                {"name": "x1", "idempotencyKey": "order-44"},
                {"name": "x2", "idempotencyKey": "order-44"},
            ]))
            .await;
        assert!(arr[0].get("deduplicated").is_none(), "{arr}");
        assert_eq!(arr[1]["deduplicated"], json!(true), "{arr}");
        assert_eq!(arr[1]["id"], arr[0]["id"]);
        assert_eq!(arr[1]["name"], json!("x1"));
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 3);
        // every result id exists
        for t in arr.as_array().unwrap() {
            db.get_task(s(t, "id")).await;
        }
    })
    .await
}

async fn tasks_idempotency_concurrent(p: Provider) {
    with_db(p, |db| async move {
        let handles: Vec<_> = (0..16)
            .map(|n| {
                let conn = db.conn.clone();
                tokio::spawn(async move {
                    conn.execute(
                        "insertTask",
                        json!({"name": format!("racer-{n}"), "idempotencyKey": "same-key"}),
                        &OpOptions::default(),
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            match h.await.expect("insert task panicked") {
                Ok(o) => results.push(json_of(o)),
                Err(f) => panic!(
                    "[{}] a concurrent insert failed: {} {}",
                    db.p,
                    f.error.code(),
                    f.error
                ),
            }
        }
        let fresh: Vec<&Json> = results
            .iter()
            .filter(|r| r.get("deduplicated").is_none())
            .collect();
        assert_eq!(
            fresh.len(),
            1,
            "exactly one insert is not deduplicated: {results:?}"
        );
        let id = &fresh[0]["id"];
        assert!(
            results.iter().all(|r| &r["id"] == id),
            "all get the same id: {results:?}"
        );
        assert_eq!(
            db.count(
                &db.t("tasks"),
                &format!("WHERE idempotency_key = {}", db.ph(1)),
                vec![Param::Text("same-key".into())]
            )
            .await,
            1
        );
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 1);
    })
    .await
}

async fn tasks_lifecycle_history(p: Provider) {
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"name": "job", "payload": {"x": 1}})).await;
        let id = s(&t, "id").to_string();
        let running = db.set_status(json!({"id": id, "status": "running", "workerId": "w1", "leaseMs": 60000})).await;
        assert_eq!(s(&running, "status"), "running");
        assert_eq!(i(&running, "attempts"), 1);
        assert_eq!(s(&running, "workerId"), "w1");
        let lease = time_of(&running, "leaseExpiresAt");
        let started = time_of(&running, "startedAt");
        assert!(lease > started);
        let mid = db.get_task(&id).await;
        assert_eq!(mid["history"].as_array().unwrap().len(), 1);
        assert_eq!(mid["history"][0]["status"], json!("running"));
        assert_eq!(mid["history"][0]["durationMs"], Json::Null);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = db.set_status(json!({"id": id, "status": "completed", "workerId": "w1", "result": {"sent": true, "n": 3}})).await;
        assert_eq!(s(&done, "status"), "completed");
        assert_eq!(done["result"], json!({"sent": true, "n": 3}));
        assert_eq!(done["workerId"], Json::Null);
        assert_eq!(done["leaseExpiresAt"], Json::Null);
        assert_eq!(i(&done, "attempts"), 1);
        assert!(time_of(&done, "finishedAt") >= started);
        let got = db.get_task(&id).await;
        let history = got["history"].as_array().expect("history");
        assert_eq!(history.len(), 1, "{got}");
        let h = &history[0];
        assert_eq!(i(h, "attempt"), 1);
        assert_eq!(s(h, "status"), "completed");
        assert_eq!(s(h, "workerId"), "w1");
        let ms = i(h, "durationMs");
        assert!(ms >= 0, "durationMs {ms}");
        assert!(ms >= 15, "the attempt lasted at least the 20 ms sleep, got {ms}");
        assert!(time_of(h, "finishedAt") >= time_of(h, "startedAt"));
        assert_eq!(got["errors"], json!([]));
        assert_eq!(db.count(&db.t("task_executions"), "", vec![]).await, 1);
        // pending → completed directly also records one attempt
        let t2 = db.insert_task(json!({"name": "quick"})).await;
        let d2 = db.set_status(json!({"id": t2["id"], "status": "completed"})).await;
        assert_eq!(i(&d2, "attempts"), 1);
        let g2 = db.get_task(s(&t2, "id")).await;
        assert_eq!(g2["history"][0]["status"], json!("completed"));
        assert!(i(&g2["history"][0], "durationMs") >= 0);
        // pending → cancelled records none
        let t3 = db.insert_task(json!({"name": "never"})).await;
        let c3 = db.set_status(json!({"id": t3["id"], "status": "cancelled"})).await;
        assert_eq!(s(&c3, "status"), "cancelled");
        assert_eq!(db.get_task(s(&t3, "id")).await["history"], json!([]));
    })
    .await
}

async fn tasks_invalid_transition_and_not_found(p: Provider) {
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"name": "job"})).await;
        let id = s(&t, "id").to_string();
        db.set_status(json!({"id": id, "status": "running", "workerId": "w"}))
            .await;
        db.set_status(json!({"id": id, "status": "completed", "workerId": "w", "result": 1}))
            .await;
        let before = db.get_task(&id).await;
        for status in ["running", "pending", "failed", "completed", "cancelled"] {
            let f = db
                .op_err(
                    "updateTaskStatus",
                    json!({"id": id, "status": status, "workerId": "w"}),
                )
                .await;
            assert_code(&f, "DBC_INVALID_TRANSITION");
            assert!(!f.error.is_retryable());
        }
        let after = db.get_task(&id).await;
        assert_eq!(after, before, "an illegal change changes nothing");
        // a failed task cannot go back to pending by updateTaskStatus
        let t2 = db
            .insert_task(json!({"name": "fails", "maxAttempts": 1}))
            .await;
        db.set_status(json!({"id": t2["id"], "status": "running"}))
            .await;
        db.set_status(json!({"id": t2["id"], "status": "failed", "error": "x"}))
            .await;
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": t2["id"], "status": "pending"}),
            )
            .await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        // unknown ids
        let unknown = uuid::Uuid::now_v7().to_string();
        let f = db.op_err("getTask", json!({"id": unknown})).await;
        assert_code(&f, "DBC_NOT_FOUND");
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": unknown, "status": "completed"}),
            )
            .await;
        assert_code(&f, "DBC_NOT_FOUND");
        assert_eq!(
            db.count(
                &db.t("task_executions"),
                &format!("WHERE task_id = {}", db.ph(1)),
                vec![Param::Text(unknown)]
            )
            .await,
            0
        );
    })
    .await
}

async fn tasks_fail_and_retry(p: Provider) {
    with_db(p, |db| async move {
        // attempts left: back to pending, later runAt, an error-log row
        let t = db.insert_task(json!({"name": "flaky", "maxAttempts": 2})).await;
        let id = s(&t, "id").to_string();
        let run_at0 = time_of(&t, "runAt");
        db.set_status(json!({"id": id, "status": "running", "workerId": "w"})).await;
        let failed_at = chrono::Utc::now();
        let r = db
            .set_status(json!({"id": id, "status": "failed", "workerId": "w", "error": {"message": "smtp down", "code": "E_SMTP"}}))
            .await;
        assert_eq!(s(&r, "status"), "pending", "{r}");
        assert_eq!(i(&r, "attempts"), 1);
        assert_eq!(s(&r, "lastError"), "smtp down");
        let run_at1 = time_of(&r, "runAt");
        assert!(run_at1 > run_at0, "runAt moves later: {run_at0} -> {run_at1}");
        assert!(run_at1 > failed_at, "runAt is after the failure: {run_at1} vs {failed_at}");
        assert!(run_at1 < failed_at + chrono::Duration::seconds(10), "the first backoff is about 1 s: {run_at1}");
        assert_eq!(r["workerId"], Json::Null);
        let g = db.get_task(&id).await;
        assert_eq!(g["history"].as_array().unwrap().len(), 1);
        assert_eq!(g["history"][0]["status"], json!("failed"));
        let errors = g["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{g}");
        assert_eq!(i(&errors[0], "attempt"), 1);
        assert_eq!(s(&errors[0], "code"), "E_SMTP");
        assert_eq!(s(&errors[0], "message"), "smtp down");
        assert_eq!(s(&errors[0], "operation"), "updateTaskStatus");
        time_of(&errors[0], "createdAt");
        // no attempts left: stays failed
        db.set_status(json!({"id": id, "status": "running", "workerId": "w"})).await;
        let f = db.set_status(json!({"id": id, "status": "failed", "workerId": "w", "error": "still down"})).await;
        assert_eq!(s(&f, "status"), "failed");
        assert_eq!(i(&f, "attempts"), 2);
        assert_eq!(s(&f, "lastError"), "still down");
        time_of(&f, "finishedAt");
        let g = db.get_task(&id).await;
        let history = g["history"].as_array().unwrap();
        assert_eq!(history.iter().map(|h| (i(h, "attempt"), s(h, "status").to_string())).collect::<Vec<_>>(), vec![(1, "failed".into()), (2, "failed".into())]);
        let errors = g["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(s(&errors[1], "code"), "TASK_FAILED");
        assert_eq!(i(&errors[1], "attempt"), 2);
        assert_eq!(db.count(&db.t("error_logs"), "", vec![]).await, 2);
        // maxAttempts 1: the first failure is final
        let once = db.insert_task(json!({"name": "once", "maxAttempts": 1})).await;
        db.set_status(json!({"id": once["id"], "status": "running"})).await;
        let f = db.set_status(json!({"id": once["id"], "status": "failed"})).await;
        assert_eq!(s(&f, "status"), "failed");
        assert_eq!(i(&f, "attempts"), 1);
    })
    .await
}

async fn tasks_lease_lost(p: Provider) {
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"name": "leased"})).await;
        let id = s(&t, "id").to_string();
        db.set_status(json!({"id": id, "status": "running", "workerId": "a", "leaseMs": 60000}))
            .await;
        let before = db.get_task(&id).await;
        for status in ["completed", "failed", "pending", "cancelled"] {
            let f = db
                .op_err(
                    "updateTaskStatus",
                    json!({"id": id, "status": status, "workerId": "b"}),
                )
                .await;
            assert_code(&f, "DBC_LEASE_LOST");
        }
        assert_eq!(
            db.get_task(&id).await,
            before,
            "a lost lease changes nothing"
        );
        let done = db
            .set_status(json!({"id": id, "status": "completed", "workerId": "a"}))
            .await;
        assert_eq!(s(&done, "status"), "completed");
        // an expired lease is lost too
        let t = db.insert_task(json!({"name": "expires"})).await;
        let id = s(&t, "id").to_string();
        db.set_status(json!({"id": id, "status": "running", "workerId": "a", "leaseMs": 100}))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = db.get_task(&id).await;
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": id, "status": "completed", "workerId": "a"}),
            )
            .await;
        assert_code(&f, "DBC_LEASE_LOST");
        assert_eq!(db.get_task(&id).await, before);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 5b. Attempt history: the running attempt lives on the task row, and each attempt gets
//     its one history row when it ends
// ---------------------------------------------------------------------------------------

/// A time as the `query` operation returns it (any provider's form), in epoch ms.
fn stored_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Null => None,
        Value::Int(ms) => Some(*ms),
        Value::Text(t) if t.ends_with('Z') => Some(utc(t).timestamp_millis()),
        Value::Text(t) => Some(
            chrono::NaiveDateTime::parse_from_str(&t.replace(' ', "T"), "%Y-%m-%dT%H:%M:%S%.f")
                .unwrap_or_else(|e| panic!("{t}: {e}"))
                .and_utc()
                .timestamp_millis(),
        ),
        other => panic!("not a time: {other:?}"),
    }
}

/// A time as this provider stores it (a bound parameter).
fn time_param(p: Provider, t: chrono::DateTime<chrono::Utc>) -> Param {
    match p {
        Provider::Postgres => Param::Text(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Provider::Mariadb => Param::Text(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
        Provider::Sqlite => Param::Int(t.timestamp_millis()),
    }
}

/// One stored history row: attempt, worker, status, started, finished, duration (ms).
#[derive(Debug, PartialEq)]
struct Row {
    attempt: i64,
    worker: Option<String>,
    status: String,
    started: i64,
    finished: Option<i64>,
    duration: Option<i64>,
}

/// The task's rows of `task_executions`, by attempt.
async fn executions(db: &Db, id: &str) -> Vec<Row> {
    let out = db
        .sql(
            &format!(
                "SELECT attempt, worker_id, status, started_at, finished_at, duration_ms FROM {} WHERE task_id = {} ORDER BY attempt",
                db.t("task_executions"),
                db.ph(1)
            ),
            vec![Param::Text(id.to_string())],
        )
        .await;
    out.rows
        .iter()
        .map(|r| Row {
            attempt: match &r[0] {
                Value::Int(n) => *n,
                other => panic!("attempt {other:?}"),
            },
            worker: match &r[1] {
                Value::Text(w) => Some(w.clone()),
                _ => None,
            },
            status: match &r[2] {
                Value::Text(st) => st.clone(),
                other => panic!("status {other:?}"),
            },
            started: stored_ms(&r[3]).expect("started_at is never null"),
            finished: stored_ms(&r[4]),
            duration: match &r[5] {
                Value::Int(n) => Some(*n),
                Value::Null => None,
                Value::Text(t) => Some(t.parse().unwrap()),
                other => panic!("duration_ms {other:?}"),
            },
        })
        .collect()
}

/// `tasks.attempt_started_at` of a task, in epoch ms.
async fn attempt_started(db: &Db, id: &str) -> Option<i64> {
    let out = db
        .sql(
            &format!(
                "SELECT attempt_started_at FROM {} WHERE id = {}",
                db.t("tasks"),
                db.ph(1)
            ),
            vec![Param::Text(id.to_string())],
        )
        .await;
    stored_ms(&out.rows[0][0])
}

/// Claims one task of `queue` for `worker`, polling until one is due (retry backoff).
async fn claim_one(db: &Db, queue: &str, worker: &str, lease_ms: i64) -> Json {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = db
            .op(
                "claimTasks",
                json!({"queue": queue, "limit": 1, "workerId": worker, "leaseMs": lease_ms}),
            )
            .await;
        if let Some(t) = c.as_array().and_then(|a| a.first()) {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "[{}] nothing to claim in {queue}",
            db.p
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(v: &Json, key: &str) -> i64 {
    time_of(v, key).timestamp_millis()
}

/// A finished row: its duration is its span, and it lasted at least `min_ms`.
#[track_caller]
fn assert_span(r: &Row, min_ms: i64) {
    let finished = r.finished.expect("a finished attempt has finished_at");
    assert_eq!(r.duration, Some(finished - r.started), "{r:?}");
    assert!(
        finished - r.started >= min_ms,
        "lasted at least {min_ms} ms: {r:?}"
    );
}

async fn tasks_attempt_history_written_once(p: Provider) {
    with_db_cfg(
        p,
        |cfg| cfg["retryBackoffMs"] = json!(10),
        |db| async move {
            let t = db.insert_task(json!({"queue": "h", "name": "a", "maxAttempts": 3})).await;
            let id = s(&t, "id").to_string();
            // a claim writes no history row; getTask shows the running attempt all the same
            let c = claim_one(&db, "h", "w1", 60_000).await;
            assert_eq!(c["id"], t["id"]);
            assert_eq!(executions(&db, &id).await, vec![], "no row for a running attempt");
            let start1 = ms(&c, "startedAt");
            assert_eq!(attempt_started(&db, &id).await, Some(start1));
            let g = db.get_task(&id).await;
            assert_eq!(
                g["history"],
                json!([{"attempt": 1, "workerId": "w1", "status": "running", "startedAt": c["startedAt"],
                        "finishedAt": null, "durationMs": null}])
            );
            // a failure with attempts left: one row, the task pending without an attempt
            tokio::time::sleep(Duration::from_millis(25)).await;
            let r = db.set_status(json!({"id": id, "status": "failed", "workerId": "w1", "error": "x"})).await;
            assert_eq!(s(&r, "status"), "pending");
            let rows = executions(&db, &id).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].attempt, rows[0].worker.as_deref(), rows[0].status.as_str()), (1, Some("w1"), "failed"));
            assert_eq!(rows[0].started, start1);
            assert_span(&rows[0], 20);
            // the start stays on the task row; a pending task shows no running attempt
            assert_eq!(attempt_started(&db, &id).await, Some(start1));
            assert_eq!(db.get_task(&id).await["history"].as_array().map(Vec::len), Some(1));
            // attempt 2 runs: the finished one from the table, the running one from the task
            let c = claim_one(&db, "h", "w2", 60_000).await;
            assert_eq!(i(&c, "attempts"), 2);
            assert_eq!(executions(&db, &id).await.len(), 1);
            let start2 = attempt_started(&db, &id).await.expect("attempt 2 started");
            assert!(start2 >= rows[0].finished.unwrap());
            assert_eq!(ms(&c, "startedAt"), start1, "the task's startedAt stays its first start");
            let g = db.get_task(&id).await;
            let h = g["history"].as_array().unwrap();
            assert_eq!(h.len(), 2, "{g}");
            assert_eq!((i(&h[0], "attempt"), s(&h[0], "status")), (1, "failed"));
            assert_eq!(i(&h[0], "durationMs"), rows[0].duration.unwrap());
            assert_eq!((i(&h[1], "attempt"), s(&h[1], "status"), s(&h[1], "workerId")), (2, "running", "w2"));
            assert_eq!(ms(&h[1], "startedAt"), start2);
            assert_eq!(h[1]["finishedAt"], Json::Null);
            assert_eq!(h[1]["durationMs"], Json::Null);
            // the task's startedAt stays the first start
            assert_eq!(ms(&g, "startedAt"), start1);
            // given back: recorded as cancelled
            db.set_status(json!({"id": id, "status": "pending", "workerId": "w2"})).await;
            let rows = executions(&db, &id).await;
            assert_eq!(rows.len(), 2, "{rows:?}");
            assert_eq!((rows[1].attempt, rows[1].worker.as_deref(), rows[1].status.as_str()), (2, Some("w2"), "cancelled"));
            assert_eq!(rows[1].started, start2);
            assert_span(&rows[1], 0);
            // completed without naming the worker: the row keeps the attempt's worker
            let c = claim_one(&db, "h", "w3", 60_000).await;
            let start3 = attempt_started(&db, &id).await.expect("attempt 3 started");
            assert_eq!(i(&c, "attempts"), 3);
            tokio::time::sleep(Duration::from_millis(25)).await;
            let done = db.set_status(json!({"id": id, "status": "completed", "result": 1})).await;
            assert_eq!(s(&done, "status"), "completed");
            assert_eq!(done["workerId"], Json::Null);
            let rows = executions(&db, &id).await;
            assert_eq!(
                rows.iter().map(|r| (r.attempt, r.worker.clone().unwrap_or_default(), r.status.clone())).collect::<Vec<_>>(),
                vec![(1, "w1".into(), "failed".into()), (2, "w2".into(), "cancelled".into()), (3, "w3".into(), "completed".into())]
            );
            assert_eq!(rows[2].started, start3);
            assert_eq!(rows[2].finished, Some(ms(&done, "finishedAt")));
            assert_span(&rows[2], 20);
            assert_eq!(attempt_started(&db, &id).await, Some(start3));
            let g = db.get_task(&id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 3, "{g}");
            assert_eq!(g["history"][2]["status"], json!("completed"));
            assert_eq!(ms(&g["history"][2], "startedAt"), start3);

            // running → cancelled: one cancelled row
            let t2 = db.insert_task(json!({"queue": "h2", "name": "b"})).await;
            let id2 = s(&t2, "id").to_string();
            let c = claim_one(&db, "h2", "w1", 60_000).await;
            db.set_status(json!({"id": id2, "status": "cancelled"})).await;
            let rows = executions(&db, &id2).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("w1"), "cancelled"));
            assert_eq!(rows[0].started, ms(&c, "startedAt"));
            assert_span(&rows[0], 0);
            // the last attempt failing: one failed row, the task failed
            let t3 = db.insert_task(json!({"queue": "h3", "name": "c", "maxAttempts": 1})).await;
            let id3 = s(&t3, "id").to_string();
            let c = claim_one(&db, "h3", "w9", 60_000).await;
            let f = db.set_status(json!({"id": id3, "status": "failed", "workerId": "w9"})).await;
            assert_eq!(s(&f, "status"), "failed");
            let rows = executions(&db, &id3).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("w9"), "failed"));
            assert_eq!(rows[0].started, ms(&c, "startedAt"));
            assert_span(&rows[0], 0);
            // pending → completed directly: one row that starts and ends at once
            let t4 = db.insert_task(json!({"queue": "h4", "name": "d"})).await;
            let d4 = db.set_status(json!({"id": t4["id"], "status": "completed"})).await;
            let rows = executions(&db, s(&t4, "id")).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].attempt, rows[0].worker.as_deref(), rows[0].status.as_str()), (1, None, "completed"));
            assert_eq!(rows[0].started, ms(&d4, "finishedAt"));
            assert_eq!(rows[0].finished, Some(rows[0].started));
            assert_eq!(rows[0].duration, Some(0));
            // a manual start (pending → running) keeps its attempt on the task row too
            let t5 = db.insert_task(json!({"queue": "h5", "name": "e"})).await;
            let r5 = db.set_status(json!({"id": t5["id"], "status": "running", "workerId": "m"})).await;
            assert_eq!(executions(&db, s(&t5, "id")).await, vec![]);
            assert_eq!(attempt_started(&db, s(&t5, "id")).await, Some(ms(&r5, "startedAt")));
            db.set_status(json!({"id": t5["id"], "status": "completed", "workerId": "m"})).await;
            let rows = executions(&db, s(&t5, "id")).await;
            assert_eq!((rows.len(), rows[0].worker.as_deref(), rows[0].status.as_str()), (1, Some("m"), "completed"));
            assert_eq!(db.count(&db.t("task_executions"), "WHERE status = 'running'", vec![]).await, 0);
        },
    )
    .await
}

async fn tasks_lease_expiry_history(p: Provider) {
    with_db(p, |db| async move {
        let t = db
            .insert_task(json!({"queue": "x", "name": "slow", "maxAttempts": 2}))
            .await;
        let id = s(&t, "id").to_string();
        let c = claim_one(&db, "x", "w1", 100).await;
        let start1 = ms(&c, "startedAt");
        let lease1 = ms(&c, "leaseExpiresAt");
        // the reaper puts it back: one lease_expired row, no duration (as always)
        let g = wait_for_status(&db, &id, "pending", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].attempt,
                rows[0].worker.as_deref(),
                rows[0].status.as_str()
            ),
            (1, Some("w1"), "lease_expired")
        );
        assert_eq!(rows[0].started, start1);
        assert!(rows[0].finished.unwrap() > lease1, "{rows:?}");
        assert_eq!(rows[0].duration, None);
        assert_eq!(attempt_started(&db, &id).await, Some(start1));
        assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        assert_eq!(g["history"][0]["status"], json!("lease_expired"));
        assert_eq!(ms(&g["history"][0], "startedAt"), start1);
        assert_eq!(g["history"][0]["durationMs"], Json::Null);
        // the last attempt expiring: a second row, the task failed
        let c = claim_one(&db, "x", "w2", 100).await;
        assert_eq!(i(&c, "attempts"), 2);
        let start2 = attempt_started(&db, &id).await.expect("attempt 2 started");
        let g = wait_for_status(&db, &id, "failed", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &id).await;
        assert_eq!(
            rows.iter()
                .map(|r| (r.attempt, r.worker.clone(), r.status.clone()))
                .collect::<Vec<_>>(),
            vec![
                (1, Some("w1".into()), "lease_expired".into()),
                (2, Some("w2".into()), "lease_expired".into())
            ]
        );
        assert_eq!(rows[1].started, start2);
        assert_eq!(rows[1].duration, None);
        assert_eq!(s(&g, "lastError"), "lease expired");
        assert_eq!(attempt_started(&db, &id).await, Some(start2));
        // a late report changes nothing
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": id, "status": "completed", "workerId": "w2"}),
            )
            .await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        assert_eq!(executions(&db, &id).await.len(), 2);
    })
    .await
}

/// A database migrated by the previous connector version while an attempt ran (its
/// history row then said `running`): after the upgrade the attempt shows and ends as
/// any other. The schema is taken back to before `0003_attempt_on_task` by hand, the
/// attempts are started the old way, then the connector migrates again.
async fn migrations_running_attempt_survives_upgrade(p: Provider) {
    with_db(p, |db| async move {
        let (tasks, te) = (db.t("tasks"), db.t("task_executions"));
        db.sql(&format!("ALTER TABLE {tasks} DROP COLUMN attempt_started_at"), vec![]).await;
        db.sql(&format!("DELETE FROM {} WHERE version = 3", db.t("migrations")), vec![]).await;
        let st = db.conn.schema_status().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st.pending.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["0003_attempt_on_task"]);

        let now = chrono::Utc::now();
        let t0 = now - chrono::Duration::seconds(5);
        // starts attempt `n` of a task the way 0.1 did: the task row, plus a running row
        let old_claim = |id: String, n: i64, worker: &'static str, lease: chrono::DateTime<chrono::Utc>| {
            let db = db.clone();
            let (tasks, te) = (tasks.clone(), te.clone());
            async move {
                db.sql(
                    &format!(
                        "UPDATE {tasks} SET status = 'running', attempts = {}, worker_id = {}, lease_expires_at = {}, \
                         started_at = {}, updated_at = {} WHERE id = {}",
                        db.ph(1), db.ph(2), db.ph(3), db.ph(4), db.ph(5), db.ph(6)
                    ),
                    vec![Param::Int(n), Param::Text(worker.into()), time_param(db.p, lease), time_param(db.p, t0),
                         time_param(db.p, t0), Param::Text(id.clone())],
                )
                .await;
                db.sql(
                    &format!(
                        "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at) VALUES ({}, {}, {}, 'running', {})",
                        db.ph(1), db.ph(2), db.ph(3), db.ph(4)
                    ),
                    vec![Param::Text(id), Param::Int(n), Param::Text(worker.into()), time_param(db.p, t0)],
                )
                .await;
            }
        };
        let a = db.insert_task(json!({"queue": "u", "name": "a"})).await;
        let a_id = s(&a, "id").to_string();
        old_claim(a_id.clone(), 1, "old-a", now + chrono::Duration::seconds(60)).await;
        // b: attempt 1 failed (a finished row), attempt 2 running
        let b = db.insert_task(json!({"queue": "u", "name": "b"})).await;
        let b_id = s(&b, "id").to_string();
        db.sql(
            &format!(
                "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms) \
                 VALUES ({}, 1, 'old-b', 'failed', {}, {}, 7)",
                db.ph(1), db.ph(2), db.ph(3)
            ),
            vec![Param::Text(b_id.clone()), time_param(db.p, t0 - chrono::Duration::seconds(1)),
                 time_param(db.p, t0 - chrono::Duration::seconds(1) + chrono::Duration::milliseconds(7))],
        )
        .await;
        old_claim(b_id.clone(), 2, "old-b", now + chrono::Duration::seconds(60)).await;
        // c: running under a lease that ends soon after the upgrade
        let c = db.insert_task(json!({"queue": "u", "name": "c", "maxAttempts": 1})).await;
        let c_id = s(&c, "id").to_string();
        let c_lease = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        old_claim(c_id.clone(), 1, "old-c", c_lease).await;
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 3);

        let done = db.conn.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.iter().map(|m| m.version).collect::<Vec<_>>(), vec![3]);
        let st = db.conn.schema_status().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st.applied.last().map(|m| m.name.as_str()), Some("0003_attempt_on_task"));
        // the running rows moved onto their tasks
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 0);
        for id in [&a_id, &b_id, &c_id] {
            assert_eq!(attempt_started(&db, id).await, Some(t0.timestamp_millis()), "{id}");
        }
        assert_eq!(executions(&db, &b_id).await.len(), 1, "b's finished attempt stays");
        let g = db.get_task(&b_id).await;
        let h = g["history"].as_array().unwrap();
        assert_eq!(h.len(), 2, "{g}");
        assert_eq!((i(&h[0], "attempt"), s(&h[0], "status"), i(&h[0], "durationMs")), (1, "failed", 7));
        assert_eq!((i(&h[1], "attempt"), s(&h[1], "status"), s(&h[1], "workerId")), (2, "running", "old-b"));
        assert_eq!(ms(&h[1], "startedAt"), t0.timestamp_millis());

        // they end as any attempt does
        let done = db.set_status(json!({"id": a_id, "status": "completed", "workerId": "old-a"})).await;
        let rows = executions(&db, &a_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("old-a"), "completed"));
        assert_eq!(rows[0].started, t0.timestamp_millis());
        assert_eq!(rows[0].finished, Some(ms(&done, "finishedAt")));
        assert_span(&rows[0], 5000);
        db.set_status(json!({"id": b_id, "status": "failed", "workerId": "old-b", "error": "e"})).await;
        let rows = executions(&db, &b_id).await;
        assert_eq!(
            rows.iter().map(|r| (r.attempt, r.status.clone())).collect::<Vec<_>>(),
            vec![(1, "failed".into()), (2, "failed".into())]
        );
        assert_eq!(rows[1].started, t0.timestamp_millis());
        assert_span(&rows[1], 5000);
        let g = wait_for_status(&db, &c_id, "failed", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &c_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("old-c"), "lease_expired"));
        assert_eq!(rows[0].started, t0.timestamp_millis());
        assert!(rows[0].finished.unwrap() >= c_lease.timestamp_millis());
        assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 0);

        // an older connector still running after the upgrade starts attempts the old way:
        // finishing them fails nothing, and history shows each attempt once
        let d = db.insert_task(json!({"queue": "u", "name": "d"})).await;
        let d_id = s(&d, "id").to_string();
        old_claim(d_id.clone(), 1, "old-d", now + chrono::Duration::seconds(60)).await;
        // e: and a start time left over on its task row
        let e = db.insert_task(json!({"queue": "u", "name": "e"})).await;
        let e_id = s(&e, "id").to_string();
        old_claim(e_id.clone(), 1, "old-e", now + chrono::Duration::seconds(60)).await;
        db.sql(
            &format!("UPDATE {tasks} SET attempt_started_at = {} WHERE id = {}", db.ph(1), db.ph(2)),
            vec![time_param(db.p, t0), Param::Text(e_id.clone())],
        )
        .await;
        // (e names its worker: on PostgreSQL it goes the batch way, whose key conflict
        // sends it one by one)
        for (id, worker) in [(&d_id, Json::Null), (&e_id, json!("old-e"))] {
            let g = db.get_task(id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
            assert_eq!(g["history"][0]["status"], json!("running"));
            let done = db
                .set_status(json!({"id": id, "status": "completed", "workerId": worker}))
                .await;
            assert_eq!(s(&done, "status"), "completed");
            let g = db.get_task(id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        }
    })
    .await
}

async fn tasks_validation_writes_nothing(p: Provider) {
    with_db(p, |db| async move {
        db.insert_task(json!({"name": "existing"})).await;
        let tasks = db.t("tasks");
        let before = db.count(&tasks, "", vec![]).await;
        let cases = [
            (json!({"priority": -1}), "priority"),
            (json!({"priority": 1.5}), "priority"),
            (json!({"runAt": "10000-01-01T00:00:00Z"}), "runAt"),
            (json!({"runAt": "tomorrow"}), "runAt"),
            (json!({"maxAttempts": 0}), "maxAttempts"),
            (json!({"workflowId": "not-a-uuid"}), "workflowId"),
            (json!({"colour": "red"}), "colour"),
            (json!({"queue": ""}), "queue"),
            (json!({"idempotencyKey": 5}), "idempotencyKey"),
            (
                json!([{"name": "ok"}, {"priority": -1}]),
                "payload[1].priority",
            ),
            (
                json!([{"name": "ok"}, {"name": "ok2"}, {"bogus": 1}]),
                "payload[2].bogus",
            ),
        ];
        for (input, field) in cases {
            let f = db.op_err("insertTask", input.clone()).await;
            assert_validation(&f, field);
            assert_eq!(
                db.count(&tasks, "", vec![]).await,
                before,
                "{input} wrote a row"
            );
        }
        // status changes validate before touching the row
        let t = db.insert_task(json!({"name": "target"})).await;
        let snapshot = db.get_task(s(&t, "id")).await;
        for (input, field) in [
            (json!({"id": t["id"], "status": "done"}), "status"),
            (
                json!({"id": t["id"], "status": "running", "leaseMs": 5}),
                "leaseMs",
            ),
            (
                json!({"id": t["id"], "status": "running", "extra": 1}),
                "extra",
            ),
            (json!({"id": "123", "status": "running"}), "id"),
        ] {
            let f = db.op_err("updateTaskStatus", input.clone()).await;
            assert_validation(&f, field);
        }
        assert_eq!(db.get_task(s(&t, "id")).await, snapshot);
        assert_eq!(db.count(&db.t("task_executions"), "", vec![]).await, 0);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 6. Debug, test connection, close
// ---------------------------------------------------------------------------------------

async fn debug_info(p: Provider) {
    with_db_cfg(
        p,
        |cfg| cfg["pool"]["poolMax"] = json!(4),
        |db| async move {
            let on = OpOptions {
                debug: true,
                queue: None,
            };
            let check = |d: &DebugInfo, what: &str, statements: usize| {
                assert_eq!(d.provider, db.p, "{what}");
                assert!(!d.failover, "{what}");
                assert_eq!(d.connection_state, "connected", "{what}");
                assert_eq!(d.statements.len(), statements, "{what}: {:?}", d.statements);
                assert!(
                    d.statements
                        .iter()
                        .all(|s| s.ms >= 0.0 && !s.name.is_empty()),
                    "{what}"
                );
                let sum: f64 = d.statements.iter().map(|s| s.ms).sum();
                assert!(
                    (d.db_ms - sum).abs() < 1e-6,
                    "{what}: dbMs {} vs {sum}",
                    d.db_ms
                );
                assert_eq!(
                    d.pool.state.max, 4,
                    "{what}: pool max is the configured poolMax"
                );
                assert!(d.pool.state.in_use <= d.pool.state.size, "{what}");
                assert!(d.pool.state.size <= 4, "{what}");
                assert_eq!(d.retries, 0);
            };
            // a query: one statement, its row count
            let o = db
                .conn
                .query("SELECT 1 AS one UNION ALL SELECT 2", Params::None, &on)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            let d = o.debug.expect("debug on gives DebugInfo");
            check(&d, "query", 1);
            assert_eq!(d.statements[0].name, "query");
            assert_eq!(d.statements[0].rows, 2);
            // insertTask: one bulk statement
            let mut o = db
                .conn
                .execute("insertTask", json!([{"name": "a"}, {"name": "b"}]), &on)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            let d = o.debug.take().expect("debug");
            check(&d, "insertTask", 1);
            assert_eq!(d.statements[0].rows, 2);
            let id = json_of(o)[0]["id"].clone();
            // getTask: task, dependencies, history, errors
            let o = db
                .conn
                .execute("getTask", json!({"id": id}), &on)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            check(o.debug.as_ref().expect("debug"), "getTask", 4);
            // the `_debug` JSON names
            let v = serde_json::to_value(o.debug.as_ref().unwrap()).unwrap();
            for key in [
                "provider",
                "failover",
                "connectionState",
                "dbMs",
                "statements",
                "pool",
                "retries",
            ] {
                assert!(v.get(key).is_some(), "_debug lacks {key}: {v}");
            }
            for key in ["size", "idle", "inUse", "max", "waiting"] {
                assert!(v["pool"].get(key).is_some(), "_debug.pool lacks {key}: {v}");
            }
            assert_eq!(v["pool"]["max"], json!(4));
            assert_eq!(v["provider"], json!(db.p.as_str()));
            // debug off: nothing collected
            let off = OpOptions::default();
            let o = db
                .conn
                .query("SELECT 1 AS one", Params::None, &off)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            assert!(o.debug.is_none(), "debug off gives no DebugInfo");
            let o = db
                .conn
                .execute("getTask", json!({"id": id}), &off)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            assert!(o.debug.is_none());
            let o = db
                .conn
                .execute("insertTask", json!({"name": "c"}), &off)
                .await
                .unwrap_or_else(|f| panic!("{}", f.error));
            assert!(o.debug.is_none());
            assert_eq!(db.conn.pool_state().state.max, 4);
        },
    )
    .await
}

async fn test_connection_and_close(p: Provider) {
    with_db(p, |db| async move {
        let cfg = config_of(&db.cfg);
        let r = test_connection(&cfg.primary, &cfg.pool)
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable_message(db.p, &e)));
        assert_eq!(r.provider, db.p);
        assert!(!r.server_version.is_empty());
        assert!(r.latency_ms >= 0.0);
        let v = serde_json::to_value(&r).unwrap();
        assert!(
            v["serverVersion"].is_string() && v["latencyMs"].is_number(),
            "{v}"
        );
        // a closed connector refuses work with DBC_CONNECTION
        let other = db
            .open_another(|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.connection_state(), "connected");
        other.close().await;
        assert_eq!(other.connection_state(), "disconnected");
        let f = other
            .query("SELECT 1", Params::None, &OpOptions::default())
            .await
            .expect_err("closed");
        assert_eq!(f.error.code(), "DBC_CONNECTION");
        let f = other
            .execute(
                "getTask",
                json!({"id": uuid::Uuid::now_v7().to_string()}),
                &OpOptions::default(),
            )
            .await
            .expect_err("closed");
        assert_eq!(f.error.code(), "DBC_CONNECTION");
        assert_eq!(f.operation, "getTask");
        // the fixture's connector is unaffected
        let out = db.sql("SELECT 1 AS one", vec![]).await;
        assert_eq!(out.rows, vec![vec![Value::Int(1)]]);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Streamed queries
// ---------------------------------------------------------------------------------------

/// `SELECT x` for x = 1..=n, in order (MariaDB stops recursive CTEs at 1000 rows by
/// default: it has its sequence tables instead).
fn series(p: Provider, n: u32) -> String {
    match p {
        Provider::Postgres => format!("SELECT g AS x FROM generate_series(1, {n}) AS g"),
        Provider::Mariadb => format!("SELECT seq AS x FROM seq_1_to_{n}"),
        Provider::Sqlite => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT x FROM c"
        ),
    }
}

/// Every chunk of a stream, or the chunks before its error and the error.
async fn drain(
    s: &mut dbc_core::connector::RowStream,
) -> (
    Vec<dbc_core::connector::StreamChunk>,
    Option<dbc_core::connector::Failure>,
) {
    let mut got = Vec::new();
    loop {
        match s.next().await {
            Ok(Some(c)) => got.push(c),
            Ok(None) => return (got, None),
            Err(f) => return (got, Some(f)),
        }
    }
}

async fn stream_chunks(p: Provider) {
    with_db(p, |db| async move {
        let opts = OpOptions {
            debug: true,
            ..OpOptions::default()
        };
        let mut s = db
            .conn
            .query_stream(series(p, 2500), Params::None, 1000, opts);
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        let sizes: Vec<usize> = got.iter().map(|c| c.chunk.rows.len()).collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        let counts: Vec<u64> = got.iter().map(|c| c.chunk.row_count).collect();
        assert_eq!(counts, vec![1000, 2000, 2500]);
        let done: Vec<bool> = got.iter().map(|c| c.chunk.done).collect();
        assert_eq!(done, vec![false, false, true]);
        assert!(got.iter().all(|c| c.chunk.columns == vec!["x"]));
        let xs: Vec<Value> = got
            .iter()
            .flat_map(|c| c.chunk.rows.iter().map(|r| r[0].clone()))
            .collect();
        assert_eq!(xs, (1..=2500).map(Value::Int).collect::<Vec<_>>());
        // debug comes once, on the last chunk, with the statement's total
        assert!(got[..2].iter().all(|c| c.debug.is_none()));
        let d = got[2].debug.as_ref().expect("debug on the last chunk");
        assert_eq!(d.statements.len(), 1);
        assert_eq!(d.statements[0].rows, 2500);
        // after the end: None, and again None
        assert!(s.next().await.expect("no error after the end").is_none());

        // exactly a multiple of the chunk size: the last full chunk is the one marked done
        let mut s = db
            .conn
            .query_stream(series(p, 20), Params::None, 10, OpOptions::default());
        let (got, _) = drain(&mut s).await;
        assert_eq!(
            got.iter()
                .map(|c| (c.chunk.rows.len(), c.chunk.done))
                .collect::<Vec<_>>(),
            vec![(10, false), (10, true)]
        );

        // no rows: one empty chunk, done
        let sql = format!("SELECT x FROM ({}) AS s WHERE x < 0", series(p, 3));
        let mut s = db
            .conn
            .query_stream(sql, Params::None, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 1);
        assert!(got[0].chunk.done && got[0].chunk.rows.is_empty());
        // (SQLite reports the connection's last change count for a SELECT without rows,
        // as query does)
        if p != Provider::Sqlite {
            assert_eq!(got[0].chunk.row_count, 0);
        }

        // a statement without rows: rowCount is what it changed, with its insert id
        let table = db
            .user_table(
                "streamed",
                &format!("{}, qty INTEGER NOT NULL", db.serial_id()),
            )
            .await;
        let sql = format!("INSERT INTO {table} (qty) VALUES (:a), (:b)");
        let params = Params::Named(vec![
            ("a".into(), Param::Int(1)),
            ("b".into(), Param::Int(2)),
        ]);
        let mut s = db.conn.query_stream(sql, params, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].chunk.row_count, 2);
        assert_eq!(
            got[0].chunk.last_insert_id.is_some(),
            p != Provider::Postgres
        );

        // positional parameters are bound as in query
        let sql = format!(
            "SELECT qty FROM {table} WHERE qty > {} ORDER BY qty",
            db.ph(1)
        );
        let mut s = db.conn.query_stream(
            sql,
            Params::Positional(vec![Param::Int(1)]),
            10,
            OpOptions::default(),
        );
        let (got, _) = drain(&mut s).await;
        assert_eq!(got[0].chunk.rows, vec![vec![Value::Int(2)]]);
    })
    .await;
}

async fn stream_errors(p: Provider) {
    with_db(p, |db| async move {
        // bad SQL fails on the first next, as DBC_QUERY
        let mut s = db
            .conn
            .query_stream("SELEC 1".into(), Params::None, 10, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        assert!(got.is_empty());
        let f = err.expect("an error");
        assert_code(&f, "DBC_QUERY");
        assert_eq!(f.operation, "query");
        assert!(s.next().await.expect("None after the error").is_none());
        // a named parameter without a value and a wrong count: validation, as in query
        let mut s = db.conn.query_stream(
            "SELECT :nope".into(),
            Params::Named(vec![]),
            10,
            OpOptions::default(),
        );
        assert_validation(&drain(&mut s).await.1.expect("an error"), "params.nope");
        let sql = format!("SELECT {} AS a", db.ph(1));
        let mut s = db
            .conn
            .query_stream(sql, Params::Positional(vec![]), 10, OpOptions::default());
        assert_validation(&drain(&mut s).await.1.expect("an error"), "params");
        let mut s = db
            .conn
            .query_stream("  ".into(), Params::None, 10, OpOptions::default());
        assert_validation(&drain(&mut s).await.1.expect("an error"), "sql");

        // an error after rows went out ends the stream with the error
        let fail = match p {
            Provider::Sqlite => "json('{' || x)",
            _ => "(SELECT 1 UNION SELECT 2)",
        };
        let sql = format!(
            "SELECT CASE WHEN x < 2500 THEN x ELSE {fail} END AS x FROM ({}) AS s",
            series(p, 3000)
        );
        let mut s = db
            .conn
            .query_stream(sql, Params::None, 100, OpOptions::default());
        let (got, err) = drain(&mut s).await;
        let f = err.expect("an error mid-way");
        assert_code(&f, "DBC_QUERY");
        assert!(!got.is_empty(), "rows before the error were handed over");
        assert!(got
            .iter()
            .all(|c| !c.chunk.done && c.chunk.rows.len() == 100));
        // the connection went back to the pool usable
        assert_eq!(
            db.sql("SELECT 1 AS one", vec![]).await.rows,
            vec![vec![Value::Int(1)]]
        );

        // a closed connector
        let other = std::sync::Arc::new(db.open_another(|_| {}).await.expect("another connector"));
        other.close().await;
        let mut s = other.query_stream(series(p, 3), Params::None, 10, OpOptions::default());
        assert_code(&drain(&mut s).await.1.expect("an error"), "DBC_CONNECTION");
    })
    .await;
}

/// Waits (at most 10 s) until no connection of the pool is in use.
async fn pool_settles(db: &Db) -> dbc_core::db::PoolState {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let st = db.conn.pool_state().state;
        if st.in_use == 0 || Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_dropped_early_releases_connection(p: Provider) {
    with_db(p, |db| async move {
        db.sql("SELECT 1", vec![]).await;
        let before = pool_settles(&db).await;
        assert_eq!(before.in_use, 0);
        // dropped after the first chunk of a large result
        let mut s =
            db.conn
                .query_stream(series(p, 200_000), Params::None, 100, OpOptions::default());
        let first = s.next().await.expect("a chunk").expect("not the end");
        assert_eq!(first.chunk.rows.len(), 100);
        assert_eq!(
            db.conn.pool_state().state.in_use,
            1,
            "the stream holds its connection"
        );
        drop(s);
        let after = pool_settles(&db).await;
        assert_eq!(after.in_use, 0, "the connection was released: {after:?}");
        // SQLite's goes back to the pool; a network connection is closed instead of
        // drained (see Conn::exec_chunked)
        if p == Provider::Sqlite {
            assert!(after.idle >= 1, "and went back to the pool: {after:?}");
        }

        // stopped from another handle while a next waits
        let mut s =
            db.conn
                .query_stream(series(p, 200_000), Params::None, 100, OpOptions::default());
        s.next().await.expect("a chunk");
        let stop = s.stopper();
        stop.stop();
        assert!(s.next().await.expect("no error").is_none());
        let after = pool_settles(&db).await;
        assert_eq!(after.in_use, 0, "{after:?}");
        assert_eq!(
            db.sql("SELECT 2 AS two", vec![]).await.rows,
            vec![vec![Value::Int(2)]]
        );
    })
    .await;
}

conformance!(
    types_round_trip,
    types_null_into_int_and_int_into_text,
    errors_connection_refused,
    errors_bad_credentials,
    errors_syntax,
    errors_unique_violation,
    errors_param_count,
    errors_invalid_json_param,
    errors_unknown_operation,
    errors_bad_config,
    params_positional,
    params_named,
    migrations_auto_and_status,
    migrations_manual,
    migrations_race,
    tasks_insert_single_and_array,
    tasks_idempotency,
    tasks_idempotency_concurrent,
    tasks_lifecycle_history,
    tasks_invalid_transition_and_not_found,
    tasks_fail_and_retry,
    tasks_lease_lost,
    tasks_attempt_history_written_once,
    tasks_lease_expiry_history,
    migrations_running_attempt_survives_upgrade,
    tasks_validation_writes_nothing,
    debug_info,
    test_connection_and_close,
    stream_chunks,
    stream_errors,
    stream_dropped_early_releases_connection,
);
