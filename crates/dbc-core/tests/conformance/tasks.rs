//! Tasks: insert (single and array), idempotency, the status lifecycle and its history,
//! invalid transitions, fail and retry, a lost lease, validation that writes nothing.

use super::*;

pub(crate) async fn tasks_insert_single_and_array(p: Provider) {
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

pub(crate) async fn tasks_idempotency(p: Provider) {
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

pub(crate) async fn tasks_idempotency_concurrent(p: Provider) {
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

pub(crate) async fn tasks_lifecycle_history(p: Provider) {
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

pub(crate) async fn tasks_invalid_transition_and_not_found(p: Provider) {
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

pub(crate) async fn tasks_fail_and_retry(p: Provider) {
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

pub(crate) async fn tasks_lease_lost(p: Provider) {
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
        // an expired lease is lost too: once the lease reaper (every 500 ms) has put the
        // task back to pending, the worker's report changes nothing
        let t = db.insert_task(json!({"name": "expires"})).await;
        let id = s(&t, "id").to_string();
        db.set_status(json!({"id": id, "status": "running", "workerId": "a", "leaseMs": 100}))
            .await;
        let before = wait_for_status(
            &db,
            &id,
            "pending",
            Instant::now() + Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            before["history"][0]["status"],
            json!("lease_expired"),
            "{before}"
        );
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

/// A worker reporting after its lease ran out but before the reaper put the task back:
/// the report is refused and changes nothing. The lease is moved into the past inside a
/// transaction that the report then runs in, so the connector's reaper (which only sees
/// committed rows, or waits for SQLite's write lock) cannot step in between.
pub(crate) async fn tasks_lease_expired_not_yet_reaped(p: Provider) {
    use dbc_core::queue::service;
    use dbc_core::store::Store;
    use dbc_core::task::input::StatusChange;
    use dbc_core::task::{Backoff, TaskStatus};
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"name": "expired"})).await;
        let id = s(&t, "id").to_string();
        db.set_status(json!({"id": id, "status": "running", "workerId": "a", "leaseMs": 600000}))
            .await;
        let before = db.get_task(&id).await;
        let cfg = config_of(&db.cfg);
        let pool = dbc_core::db::Pool::lazy(&cfg.primary, &cfg.pool).unwrap();
        let store = Store::new(p, &db.prefix).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        conn.begin().await.unwrap();
        let past = match p {
            Provider::Postgres => "'2000-01-01T00:00:00Z'",
            Provider::Mariadb => "'2000-01-01 00:00:00'",
            Provider::Sqlite => "946684800000",
        };
        let expire = format!(
            "UPDATE {} SET lease_expires_at = {past} WHERE id = {}",
            db.t("tasks"),
            db.ph(1)
        );
        conn.exec("expire", &expire, &[Param::Text(id.clone())], None)
            .await
            .unwrap();
        let change = StatusChange {
            id: id.clone(),
            status: TaskStatus::Completed,
            result: None,
            error: None,
            worker_id: Some("a".into()),
            lease_ms: 30000,
        };
        let backoff = Backoff {
            base_ms: 1000,
            max_ms: 60000,
        };
        let r = service::update_task_status(&mut conn, &store, &change, backoff, None).await;
        conn.rollback().await.unwrap();
        drop(conn);
        pool.close().await;
        match r {
            Err(e) => {
                assert_eq!(e.code(), "DBC_LEASE_LOST", "{e}");
                assert!(e.to_string().contains("the lease expired"), "{e}");
            }
            Ok(t) => panic!("an expired lease completed the task: {t:?}"),
        }
        assert_eq!(
            db.get_task(&id).await,
            before,
            "the refused report changed nothing"
        );
    })
    .await
}

/// The node's queue is the default for exactly the operations `Op::uses_default_queue`
/// names (the editor shows its Queue field for those): inserts, claims, a workflow's
/// tasks, a transaction's steps; `listTasks` lists every queue whatever the node's is.
pub(crate) async fn tasks_node_queue_default(p: Provider) {
    with_db(p, |db| async move {
        let mail = OpOptions {
            debug: false,
            queue: Some("mail".into()),
        };
        let listed: Vec<&str> = dbc_core::Op::ALL
            .iter()
            .filter(|o| o.uses_default_queue())
            .map(|o| o.as_str())
            .collect();
        assert_eq!(
            listed,
            [
                "insertTask",
                "claimTasks",
                "createWorkflow",
                "executeTransaction",
                "pauseQueue",
                "resumeQueue",
                "configureQueue"
            ]
        );
        let other = db.insert_task(json!({"name": "elsewhere"})).await;
        assert_eq!(s(&other, "queue"), "default");
        let t = db.op_with("insertTask", json!({"name": "m"}), &mail).await;
        assert_eq!(s(&t, "queue"), "mail");
        let claimed = db.op_with("claimTasks", json!({"limit": 10}), &mail).await;
        let claimed: Vec<&str> = claimed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| s(c, "id"))
            .collect();
        assert_eq!(claimed, [s(&t, "id")], "claims from the node's queue only");
        let wf = db
            .op_with(
                "createWorkflow",
                json!({"name": "w", "tasks": [{"key": "a"}]}),
                &mail,
            )
            .await;
        assert_eq!(wf["tasks"][0]["queue"], json!("mail"), "{wf}");
        let tx = db
            .op_with(
                "executeTransaction",
                json!([{"operation": "insertTask", "payload": {"name": "in-tx"}}]),
                &mail,
            )
            .await;
        assert_eq!(tx[0]["queue"], json!("mail"), "{tx}");
        let all = db.op_with("listTasks", json!({}), &mail).await;
        let queues: std::collections::BTreeSet<&str> = all["tasks"]
            .as_array()
            .expect("listTasks answers {tasks, next}")
            .iter()
            .map(|t| s(t, "queue"))
            .collect();
        assert!(
            queues.contains("default") && queues.contains("mail"),
            "{all}"
        );
    })
    .await
}

pub(crate) async fn tasks_validation_writes_nothing(p: Provider) {
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
