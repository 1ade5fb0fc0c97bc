//! Batch settle: `updateTaskStatus` with an array settles many tasks in one message, each
//! under the rules of a single call, and one bad id undoes none of the others.

use super::*;

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
        let claimed = db
            .op(
                "claimTasks",
                json!({"queue": "bulk", "limit": 1000, "workerId": "w1", "leaseMs": 600000}),
            )
            .await;
        let claimed: Vec<String> = claimed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| s(t, "id").to_string())
            .collect();
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
