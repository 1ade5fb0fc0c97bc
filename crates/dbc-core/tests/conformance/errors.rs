//! Coded errors: connection refused, bad credentials, syntax, unique violation, parameter count, invalid JSON, unknown operation, bad config.

use super::*;

pub(crate) async fn errors_connection_refused(p: Provider) {
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

pub(crate) async fn errors_bad_credentials(p: Provider) {
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

pub(crate) async fn errors_syntax(p: Provider) {
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

pub(crate) async fn errors_unique_violation(p: Provider) {
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

pub(crate) async fn errors_param_count(p: Provider) {
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
pub(crate) async fn errors_invalid_json_param(p: Provider) {
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

pub(crate) async fn errors_unknown_operation(p: Provider) {
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
        // an array is a batch settle: the item that is not an object is named
        let f = db.op_err("updateTaskStatus", json!([1])).await;
        assert_validation(&f, "payload[0]");
        let f = db.op_err("insertTask", json!([])).await;
        assert_validation(&f, "payload");
        let f = db.op_err("insertTask", json!("a string")).await;
        assert_code(&f, "DBC_VALIDATION");
    })
    .await
}

pub(crate) async fn errors_bad_config(p: Provider) {
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
