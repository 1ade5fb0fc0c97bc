//! Batch settle: `updateTaskStatus` with an array settles many tasks in one message, each
//! under the rules of a single call, and one bad id undoes none of the others.

use super::*;

/// The ids of the tasks one `claimTasks` call (with `input`) takes, in claim order.
async fn claim_ids(db: &Db, input: Json) -> Vec<String> {
    db.op("claimTasks", input)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| s(t, "id").to_string())
        .collect()
}

/// 1,000 claimed tasks settled in one message: 997 completed or failed, three refused
/// (another worker's lease, an unknown id, a task settled earlier in the same array).
/// Checks every outcome, the final statuses, the history and error-log rows, and what
/// followed for the dependents of a completed and of a dead task.
pub(crate) async fn settle_batch_of_1000(p: Provider) {
    with_db(p, |db| async move {
        // a completes (releases b), c fails on its last attempt (cancels d); both claimed first
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "settle", "tasks": [
                    {"key": "a", "queue": "bulk", "name": "a", "priority": 1, "maxAttempts": 1},
                    {"key": "b", "queue": "bulk-after", "name": "b", "dependsOn": ["a"]},
                    {"key": "c", "queue": "bulk", "name": "c", "priority": 1, "maxAttempts": 1},
                    {"key": "d", "queue": "bulk-after", "name": "d", "dependsOn": ["c"]}
                ]}),
            )
            .await;
        let id_of = |key: usize| s(&wf["tasks"][key], "id").to_string();
        let (a, b, c, d) = (id_of(0), id_of(1), id_of(2), id_of(3));
        let others: Vec<Json> = (0..998)
            .map(|n| json!({"queue": "bulk", "name": format!("t{n}"), "maxAttempts": 1}))
            .collect();
        db.insert_task(Json::Array(others)).await;
        let claimed = claim_ids(&db, json!({"queue": "bulk", "limit": 1000, "workerId": "w1", "leaseMs": 600000})).await;
        assert_eq!(claimed.len(), 1000, "[{p}]");
        assert!(claimed[..2].contains(&a) && claimed[..2].contains(&c), "[{p}]");
        // the first 997: completed (even, and a) or failed (odd, and c)
        let completes = |n: usize| claimed[n] == a || (claimed[n] != c && n.is_multiple_of(2));
        let mut items: Vec<Json> = (0..997)
            .map(|n| {
                if completes(n) {
                    json!({"id": claimed[n], "status": "completed", "workerId": "w1", "result": {"n": n}})
                } else {
                    json!({"id": claimed[n], "status": "failed", "workerId": "w1",
                           "error": {"code": "E_BULK", "message": format!("item {n} failed")}})
                }
            })
            .collect();
        let unknown = "0192f5a4-7c1e-7a3b-9c2d-3e4f5a6b7c8d";
        items.push(json!({"id": claimed[997], "status": "completed", "workerId": "w2"}));
        items.push(json!({"id": unknown, "status": "completed", "workerId": "w1"}));
        items.push(json!({"id": claimed[0], "status": "completed", "workerId": "w1"}));
        let out = db.set_status(Json::Array(items)).await;
        let out = out.as_array().expect("an array answer");
        assert_eq!(out.len(), 1000, "[{p}]");
        let completed = (0..997).filter(|n| completes(*n)).count();
        let failed = 997 - completed;
        for (n, o) in out[..997].iter().enumerate() {
            assert_eq!(s(o, "id"), claimed[n], "[{p}] answer {n} out of order");
            let want = if completes(n) { "completed" } else { "failed" };
            assert_eq!(s(o, "status"), want, "[{p}] {o}");
            if completes(n) {
                assert_eq!(o["result"], json!({"n": n}), "[{p}] {o}");
            } else {
                assert_eq!(s(o, "lastError"), format!("item {n} failed"), "[{p}] {o}");
            }
        }
        let refused = [
            (claimed[997].as_str(), "DBC_LEASE_LOST"),
            (unknown, "DBC_NOT_FOUND"),
            (claimed[0].as_str(), "DBC_INVALID_TRANSITION"),
        ];
        for (o, (id, code)) in out[997..].iter().zip(refused) {
            assert_eq!(s(o, "id"), id, "[{p}] {o}");
            assert_eq!(s(&o["error"], "code"), code, "[{p}] {o}");
            assert!(!s(&o["error"], "message").is_empty(), "[{p}] {o}");
        }
        // final statuses, counted in the tables
        let tasks = db.t("tasks");
        let count_status = |st: &'static str| {
            let (db, tasks) = (&db, &tasks);
            async move {
                db.count(
                    tasks,
                    &format!("WHERE status = {}", db.ph(1)),
                    vec![Param::Text(st.into())],
                )
                .await
            }
        };
        assert_eq!(count_status("completed").await, completed as i64, "[{p}]");
        // the failed ones, each on its last attempt
        assert_eq!(count_status("failed").await, failed as i64, "[{p}]");
        // claimed[997] (another worker's report was refused), 998, 999
        assert_eq!(count_status("running").await, 3, "[{p}]");
        // b released, d cancelled with c
        assert_eq!(count_status("pending").await, 1, "[{p}]");
        assert_eq!(count_status("cancelled").await, 1, "[{p}]");
        assert_eq!(s(&db.get_task(&d).await, "status"), "cancelled", "[{p}]");
        let next = db
            .op(
                "claimTasks",
                json!({"queue": "bulk-after", "limit": 10, "workerId": "w1"}),
            )
            .await;
        let next = next.as_array().unwrap();
        assert_eq!(next.len(), 1, "[{p}] {next:?}");
        assert_eq!(s(&next[0], "id"), b, "[{p}]");
        // one history row per attempt that ended, one error-log row per failure
        assert_eq!(
            db.count(&db.t("task_executions"), "", vec![]).await,
            997,
            "[{p}]"
        );
        let errors = db.t("error_logs");
        assert_eq!(db.count(&errors, "", vec![]).await, failed as i64, "[{p}]");
        assert_eq!(
            db.count(
                &errors,
                &format!("WHERE code = {}", db.ph(1)),
                vec![Param::Text("E_BULK".into())]
            )
            .await,
            failed as i64,
            "[{p}]"
        );
    })
    .await;
}

/// An array with one item of the wrong shape is refused whole, naming the item's field;
/// so is an empty array and one over 1,000 items. Nothing changes.
pub(crate) async fn settle_batch_validation_changes_nothing(p: Provider) {
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"name": "target"})).await;
        let id = s(&t, "id").to_string();
        let ok = json!({"id": id, "status": "cancelled"});
        let too_many = Json::Array(vec![ok.clone(); 1001]);
        for (input, field) in [
            (
                json!([ok, {"id": id, "status": "done"}]),
                "payload[1].status",
            ),
            (
                json!([ok, {"id": "nope", "status": "completed"}]),
                "payload[1].id",
            ),
            (
                json!([ok, ok, {"id": id, "status": "failed", "colour": 1}]),
                "payload[2].colour",
            ),
            (json!([ok, 5]), "payload[1]"),
            (json!([]), "payload"),
            (too_many, "payload"),
        ] {
            let f = db.op_err("updateTaskStatus", input.clone()).await;
            assert_validation(&f, field);
            assert_eq!(
                s(&db.get_task(&id).await, "status"),
                "pending",
                "[{p}] {input}"
            );
        }
    })
    .await;
}

/// 1,000 completions in one array go as one set-based batch: all completed, in input
/// order, each with its own result; 1,000 history rows (worker, `completed`); a task
/// waiting for three of them is released by the one batch; the workflow completes. The
/// debug trace shows a constant number of statements: one on PostgreSQL, five on MariaDB
/// and SQLite (pick, history rows, complete, release, read back), not one set per task.
pub(crate) async fn settle_batch_completions_set_based(p: Provider) {
    with_db(p, |db| async move {
        let mut tasks: Vec<Json> = (0..1000)
            .map(|n| json!({"key": format!("k{n}"), "queue": "bulk", "name": format!("t{n}")}))
            .collect();
        tasks.push(json!({"key": "last", "queue": "bulk-after", "name": "last",
                          "dependsOn": ["k0", "k1", "k2"]}));
        let wf = db
            .op("createWorkflow", json!({"name": "set-based", "tasks": tasks}))
            .await;
        let wf_id = s(&wf, "id").to_string();
        let last = s(&wf["tasks"][1000], "id").to_string();
        let claimed = claim_ids(&db, json!({"queue": "bulk", "limit": 1000, "workerId": "w1", "leaseMs": 600000})).await;
        assert_eq!(claimed.len(), 1000, "[{p}]");
        let items: Vec<Json> = claimed
            .iter()
            .enumerate()
            .map(|(n, id)| json!({"id": id, "status": "completed", "workerId": "w1", "result": {"n": n}}))
            .collect();
        let on = OpOptions {
            debug: true,
            queue: None,
        };
        let mut o = db
            .conn
            .execute("updateTaskStatus", Json::Array(items), &on)
            .await
            .unwrap_or_else(|f| panic!("[{p}] {}", f.error));
        let d = o.debug.take().expect("debug on gives DebugInfo");
        let out = json_of(o);
        let out = out.as_array().expect("an array answer");
        assert_eq!(out.len(), 1000, "[{p}]");
        for (n, o) in out.iter().enumerate() {
            assert_eq!(s(o, "id"), claimed[n], "[{p}] answer {n} out of order");
            assert_eq!(s(o, "status"), "completed", "[{p}] {o}");
            assert_eq!(o["result"], json!({"n": n}), "[{p}] {o}");
            assert_eq!(o["workerId"], Json::Null, "[{p}] {o}");
        }
        let want = if p == Provider::Postgres { 1 } else { 5 };
        assert_eq!(
            d.statements.len(),
            want,
            "[{p}] a constant number of statements for 1,000 completions: {:?}",
            d.statements.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        let tasks_t = db.t("tasks");
        let completed = db
            .count(
                &tasks_t,
                &format!("WHERE status = {}", db.ph(1)),
                vec![Param::Text("completed".into())],
            )
            .await;
        assert_eq!(completed, 1000, "[{p}]");
        let history = db
            .count(
                &db.t("task_executions"),
                &format!(
                    "WHERE status = {} AND worker_id = {} AND attempt = 1 AND finished_at IS NOT NULL",
                    db.ph(1),
                    db.ph(2)
                ),
                vec![Param::Text("completed".into()), Param::Text("w1".into())],
            )
            .await;
        assert_eq!(history, 1000, "[{p}] one history row per attempt");
        assert_eq!(db.count(&db.t("task_executions"), "", vec![]).await, 1000, "[{p}]");
        // the task waiting for k0, k1 and k2 was released by the one batch
        let next = db
            .op(
                "claimTasks",
                json!({"queue": "bulk-after", "limit": 10, "workerId": "w2"}),
            )
            .await;
        let next = next.as_array().unwrap();
        assert_eq!(next.len(), 1, "[{p}] {next:?}");
        assert_eq!(s(&next[0], "id"), last, "[{p}]");
        let progress = db
            .op("getWorkflowProgress", json!({"workflowId": wf_id}))
            .await;
        assert_eq!(s(&progress, "status"), "running", "[{p}] {progress}");
        assert_eq!(i(&progress, "completed"), 1000, "[{p}] {progress}");
        let done = db
            .set_status(json!([{"id": last, "status": "completed", "workerId": "w2"}]))
            .await;
        assert_eq!(s(&done[0], "status"), "completed", "[{p}] {done}");
        let progress = db
            .op("getWorkflowProgress", json!({"workflowId": wf_id}))
            .await;
        assert_eq!(s(&progress, "status"), "completed", "[{p}] {progress}");
        assert_eq!(i(&progress, "completed"), 1001, "[{p}] {progress}");
    })
    .await;
}

/// An array that mixes completions the batch takes with changes it does not: each item's
/// outcome is what a single call gives, in input order — another worker's lease, an
/// unknown id, a finished task, a pending task completed directly, a completion without
/// `workerId`, a failure followed by a late completion of the same task, a cancel.
pub(crate) async fn settle_batch_mixed_outcomes(p: Provider) {
    with_db(p, |db| async move {
        let inserted = db
            .insert_task(Json::Array(
                (0..6)
                    .map(|n| json!({"queue": "mix", "name": format!("m{n}"), "maxAttempts": 3}))
                    .collect(),
            ))
            .await;
        assert_eq!(inserted.as_array().unwrap().len(), 6, "[{p}]");
        let r = claim_ids(&db, json!({"queue": "mix", "limit": 6, "workerId": "w1", "leaseMs": 600000})).await;
        assert_eq!(r.len(), 6, "[{p}]");
        let finished = db.insert_task(json!({"queue": "other", "name": "done"})).await;
        let finished = s(&finished, "id").to_string();
        db.set_status(json!({"id": finished, "status": "completed"})).await;
        let pending = db.insert_task(json!({"queue": "other", "name": "direct"})).await;
        let pending = s(&pending, "id").to_string();
        let unknown = "0192f5a4-7c1e-7a3b-9c2d-3e4f5a6b7c8d";
        let items = json!([
            {"id": r[0], "status": "completed", "workerId": "w1", "result": {"k": 0}},
            {"id": r[1], "status": "completed", "workerId": "w2"},
            {"id": unknown, "status": "completed", "workerId": "w1"},
            {"id": finished, "status": "completed", "workerId": "w1"},
            {"id": pending, "status": "completed", "workerId": "w1", "result": {"k": 4}},
            {"id": r[2], "status": "completed", "result": {"k": 5}},
            {"id": r[3], "status": "failed", "workerId": "w1", "error": {"code": "E_X", "message": "boom"}},
            {"id": r[3], "status": "completed", "workerId": "w1"},
            {"id": r[4], "status": "cancelled"},
            {"id": r[5], "status": "completed", "workerId": "w1", "result": {"k": 9}},
        ]);
        let out = db.set_status(items).await;
        let out = out.as_array().expect("an array answer");
        assert_eq!(out.len(), 10, "[{p}]");
        let ok = |n: usize, id: &str, status: &str| {
            assert_eq!(s(&out[n], "id"), id, "[{p}] item {n}: {}", out[n]);
            assert_eq!(s(&out[n], "status"), status, "[{p}] item {n}: {}", out[n]);
        };
        let refused = |n: usize, id: &str, code: &str, says: &str| {
            assert_eq!(s(&out[n], "id"), id, "[{p}] item {n}: {}", out[n]);
            assert_eq!(s(&out[n]["error"], "code"), code, "[{p}] item {n}: {}", out[n]);
            let message = s(&out[n]["error"], "message");
            assert!(message.contains(says), "[{p}] item {n}: {message}");
        };
        ok(0, &r[0], "completed");
        assert_eq!(out[0]["result"], json!({"k": 0}), "[{p}]");
        refused(1, &r[1], "DBC_LEASE_LOST", "another worker holds it");
        refused(2, unknown, "DBC_NOT_FOUND", unknown);
        refused(3, &finished, "DBC_INVALID_TRANSITION", "is completed");
        ok(4, &pending, "completed");
        assert_eq!(i(&out[4], "attempts"), 1, "[{p}] {}", out[4]);
        assert_eq!(out[4]["result"], json!({"k": 4}), "[{p}]");
        ok(5, &r[2], "completed");
        assert_eq!(out[5]["result"], json!({"k": 5}), "[{p}]");
        // the failure ran first (attempts left: pending again), so the late completion of
        // the same task is refused, as it would be in two messages
        ok(6, &r[3], "pending");
        assert_eq!(s(&out[6], "lastError"), "boom", "[{p}]");
        refused(7, &r[3], "DBC_LEASE_LOST", "pending again after attempt 1");
        ok(8, &r[4], "cancelled");
        ok(9, &r[5], "completed");
        assert_eq!(out[9]["result"], json!({"k": 9}), "[{p}]");
        // the refused ones changed nothing
        assert_eq!(s(&db.get_task(&r[1]).await, "status"), "running", "[{p}]");
        assert_eq!(s(&db.get_task(&r[3]).await, "status"), "pending", "[{p}]");
        // history: r0, r2, r5 completed; r3 failed; r4 cancelled; the direct completion;
        // each with its worker
        let rows = |status: &'static str| {
            let db = &db;
            async move {
                db.count(
                    &db.t("task_executions"),
                    &format!("WHERE status = {}", db.ph(1)),
                    vec![Param::Text(status.into())],
                )
                .await
            }
        };
        assert_eq!(rows("completed").await, 5, "[{p}]"); // r0, r2, r5, pending, finished
        assert_eq!(rows("failed").await, 1, "[{p}]");
        assert_eq!(rows("cancelled").await, 1, "[{p}]");
        let detail = db.get_task(&r[0]).await;
        let h = &detail["history"];
        assert_eq!(h.as_array().map(|a| a.len()), Some(1), "[{p}] {h}");
        assert_eq!(h[0]["workerId"], json!("w1"), "[{p}] {h}");
        assert_eq!(h[0]["status"], json!("completed"), "[{p}] {h}");
    })
    .await;
}

/// The set-based completion takes only tasks running under a live lease held by the
/// reporting worker (store level, inside one transaction that is rolled back): an
/// expired lease, another worker's task and a pending task are left untouched; and
/// through `updateTaskStatus`, a completion of a task whose lease expired is refused with
/// `DBC_LEASE_LOST` while the others of the array complete.
pub(crate) async fn settle_batch_set_path_checks_lease(p: Provider) {
    use dbc_core::store::{Completion, Store};
    with_db(p, |db| async move {
        let inserted = db
            .insert_task(Json::Array(
                (0..3)
                    .map(|n| json!({"queue": "lease", "name": format!("l{n}")}))
                    .collect(),
            ))
            .await;
        assert_eq!(inserted.as_array().unwrap().len(), 3);
        let r = claim_ids(
            &db,
            json!({"queue": "lease", "limit": 3, "workerId": "a", "leaseMs": 600000}),
        )
        .await;
        assert_eq!(r.len(), 3, "[{p}]");
        let pending = db.insert_task(json!({"queue": "idle", "name": "p"})).await;
        let pending = s(&pending, "id").to_string();
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
        // store level, in one transaction: r0 expired, r1 held by "a" but reported by "b"
        let cfg = config_of(&db.cfg);
        let pool = dbc_core::db::Pool::lazy(&cfg.primary, &cfg.pool).unwrap();
        let store = Store::new(p, &db.prefix).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        conn.begin().await.unwrap();
        conn.exec("expire", &expire, &[Param::Text(r[0].clone())], None)
            .await
            .unwrap();
        let result = json!({"ok": true});
        let items = [
            Completion {
                id: &r[0],
                worker_id: "a",
                result: None,
            },
            Completion {
                id: &r[1],
                worker_id: "b",
                result: None,
            },
            Completion {
                id: &r[2],
                worker_id: "a",
                result: Some(&result),
            },
            Completion {
                id: &pending,
                worker_id: "a",
                result: None,
            },
        ];
        let taken = store
            .complete_many(&mut conn, &items, chrono::Utc::now(), None)
            .await;
        conn.rollback().await.unwrap();
        drop(conn);
        pool.close().await;
        let taken = taken.unwrap_or_else(|e| panic!("[{p}] {e}"));
        let took: Vec<&str> = taken.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            took,
            [r[2].as_str()],
            "[{p}] only the live lease of the reporting worker"
        );
        assert_eq!(taken[0].result, result, "[{p}]");
        // rolled back: all three still running
        for id in &r {
            assert_eq!(s(&db.get_task(id).await, "status"), "running", "[{p}]");
        }
        // through updateTaskStatus: r0's lease expired (the reaper may have put it back
        // to pending meanwhile: refused either way), r1 and r2 complete
        db.sql(&expire, vec![Param::Text(r[0].clone())]).await;
        let out = db
            .set_status(json!([
                {"id": r[0], "status": "completed", "workerId": "a"},
                {"id": r[1], "status": "completed", "workerId": "a"},
                {"id": r[2], "status": "completed", "workerId": "a"},
            ]))
            .await;
        assert_eq!(s(&out[0]["error"], "code"), "DBC_LEASE_LOST", "[{p}] {out}");
        assert_eq!(s(&out[1], "status"), "completed", "[{p}] {out}");
        assert_eq!(s(&out[2], "status"), "completed", "[{p}] {out}");
        assert_ne!(s(&db.get_task(&r[0]).await, "status"), "completed", "[{p}]");
    })
    .await;
}
