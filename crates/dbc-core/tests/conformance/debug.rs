//! Debug information, `test_connection`, and a closed connector.

use super::*;

pub(crate) async fn debug_info(p: Provider) {
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

pub(crate) async fn test_connection_and_close(p: Provider) {
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
