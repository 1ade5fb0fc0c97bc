//! Types: each column type round-trips through bound parameters, per provider.

use super::*;

pub(crate) const TWO_53: i64 = 1 << 53;

/// `(column type, bound parameter, value read back)` per provider. Where a provider lacks
/// the type, the case records what it does instead (documented behaviour).
pub(crate) fn type_cases(p: Provider) -> Vec<(&'static str, Param, Value)> {
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

pub(crate) async fn types_round_trip(p: Provider) {
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
pub(crate) async fn types_null_into_int_and_int_into_text(p: Provider) {
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
