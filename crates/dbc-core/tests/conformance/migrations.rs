//! Migrations: automatic and manual runs, their status, and concurrent migrators.

use super::*;

/// Every migration version the connector knows, in order.
pub(crate) fn all_versions() -> Vec<i64> {
    dbc_core::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect()
}

pub(crate) async fn migrations_auto_and_status(p: Provider) {
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
        assert_eq!(st.applied[2].name, "0003_attempt_on_task");
        // 0004: a queue's paused state; 0005: a running task's progress; 0006: schedules; 0007: uniqueness windows and dead-letter queues
        let names: Vec<&str> = st.applied.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"0004_queues"), "{names:?}");
        assert_eq!(names.last(), Some(&"0007_unique_and_dead_letter"), "{names:?}");
        db.sql(
            &format!(
                "SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, \
                 paused_at, next_run_at, last_run_at, created_at, updated_at FROM {} WHERE 1 = 0",
                db.t("schedules")
            ),
            vec![],
        )
        .await;
        db.sql(
            &format!("SELECT progress FROM {} WHERE 1 = 0", db.t("tasks")),
            vec![],
        )
        .await;
        db.sql(
            &format!(
                "SELECT released_key, dead_letter_of FROM {} WHERE 1 = 0",
                db.t("tasks")
            ),
            vec![],
        )
        .await;
        db.sql(
            &format!("SELECT dead_letter_queue FROM {} WHERE 1 = 0", db.t("queues")),
            vec![],
        )
        .await;
        db.sql(
            &format!("SELECT queue, paused_at, updated_at FROM {} WHERE 1 = 0", db.t("queues")),
            vec![],
        )
        .await;
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

pub(crate) async fn migrations_manual(p: Provider) {
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
            // without the schema, queue operations fail as SQL on a missing table:
            // DBC_QUERY (docs/ERRORS.md), on every provider
            let f = db.op_err("insertTask", json!({"name": "x"})).await;
            assert_code(&f, "DBC_QUERY");
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

pub(crate) async fn migrations_race(p: Provider) {
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
