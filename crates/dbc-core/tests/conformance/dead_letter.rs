//! Dead-letter queues (`configureQueue {queue, deadLetterQueue}`): a task that fails its
//! last attempt — reported, or its lease expired — stays `failed` with its history and
//! error log (its dependents cancelled, its workflow failed, as for every dead task), and
//! a copy goes to the queue's dead-letter queue: pending, with the dead task's id, error
//! and payload in its payload. A copy is never dead-lettered again (no loop). Bad input
//! changes nothing.

use super::*;

/// The tasks of `queue`, oldest first.
async fn tasks_of(db: &Db, queue: &str) -> Vec<Json> {
    let page = db.op("listTasks", json!({"queue": queue})).await;
    page["tasks"].as_array().cloned().unwrap_or_default()
}

/// A workflow on `queue`: A (one attempt, payload `{"n": 7}`) and B waiting for A.
async fn a_then_b(db: &Db, queue: &str) -> (String, String, String) {
    let wf = db
        .op(
            "createWorkflow",
            json!({"name": queue, "tasks": [
                {"key": "a", "queue": queue, "name": "A", "maxAttempts": 1, "priority": 3, "payload": {"n": 7}},
                {"key": "b", "queue": queue, "name": "B", "dependsOn": ["a"]}
            ]}),
        )
        .await;
    (
        s(&wf, "id").to_string(),
        s(&wf["tasks"][0], "id").to_string(),
        s(&wf["tasks"][1], "id").to_string(),
    )
}

/// What must hold after A died: A failed with its history and error kept, B cancelled,
/// the workflow failed, and one copy of A in `dlq` carrying `error`.
async fn check_dead_lettered(db: &Db, dlq: &str, wf: &str, a: &str, b: &str, error: &str) {
    let p = db.p;
    let ga = db.get_task(a).await;
    assert_eq!(s(&ga, "status"), "failed", "[{p}] {ga}");
    assert_eq!(
        ga["history"].as_array().map(Vec::len),
        Some(1),
        "[{p}] {ga}"
    );
    assert_eq!(ga["errors"].as_array().map(Vec::len), Some(1), "[{p}] {ga}");
    assert_eq!(s(&db.get_task(b).await, "status"), "cancelled");
    let progress = db
        .op("getWorkflowProgress", json!({"workflowId": wf}))
        .await;
    assert_eq!(s(&progress, "status"), "failed", "[{p}] {progress}");
    let copies = tasks_of(db, dlq).await;
    assert_eq!(copies.len(), 1, "[{p}] {copies:?}");
    let c = &copies[0];
    assert_eq!(
        (
            s(c, "status"),
            s(c, "name"),
            i(c, "priority"),
            i(c, "maxAttempts"),
            i(c, "attempts")
        ),
        ("pending", "A", 3, 5, 0)
    );
    assert_ne!(s(c, "id"), a);
    assert_eq!(c["workflowId"], Json::Null);
    let dl = &c["payload"]["deadLetter"];
    assert_eq!(
        (
            s(dl, "taskId"),
            s(dl, "name"),
            i(dl, "attempts"),
            s(dl, "error")
        ),
        (a, "A", 1, error),
        "[{p}] {c}"
    );
    assert!(dl["queue"].is_string() && dl["failedAt"].is_string(), "{c}");
    assert_eq!(c["payload"]["payload"], json!({"n": 7}));
    let marked = db
        .count(
            &db.t("tasks"),
            &format!("WHERE dead_letter_of = {}", db.ph(1)),
            vec![Param::Text(a.into())],
        )
        .await;
    assert_eq!(marked, 1);
}

pub(crate) async fn dead_letter_on_reported_failure(p: Provider) {
    with_db(p, |db| async move {
        let set = db
            .op("configureQueue", json!({"queue": "work", "deadLetterQueue": "work.dead"}))
            .await;
        assert_eq!(set, json!({"queue": "work", "deadLetterQueue": "work.dead"}));
        let st = db.op("getQueueStats", json!({"queue": "work"})).await;
        assert_eq!(st["queues"][0]["deadLetterQueue"], json!("work.dead"), "{st}");
        // a failure with attempts left is no death: nothing is dead-lettered
        let retried = db.insert_task(json!({"queue": "work", "maxAttempts": 2})).await;
        let c = claim_one(&db, "work", "w1", 30_000).await;
        assert_eq!(c["id"], retried["id"]);
        db.set_status(json!({"id": s(&c, "id"), "status": "failed", "error": "once", "workerId": "w1"}))
            .await;
        assert_eq!(tasks_of(&db, "work.dead").await, Vec::<Json>::new());
        db.op("deleteTask", json!({"id": s(&retried, "id")})).await;

        let (wf, a, b) = a_then_b(&db, "work").await;
        let c = claim_one(&db, "work", "w1", 30_000).await;
        assert_eq!(s(&c, "id"), a);
        let r = db
            .set_status(json!({"id": a, "status": "failed", "error": {"code": "E_BOOM", "message": "boom"}, "workerId": "w1"}))
            .await;
        assert_eq!(s(&r, "status"), "failed");
        check_dead_lettered(&db, "work.dead", &wf, &a, &b, "boom").await;
        // a queue without a dead-letter queue: its dead tasks stay where they are
        let other = db.insert_task(json!({"queue": "plain", "maxAttempts": 1})).await;
        db.set_status(json!({"id": s(&other, "id"), "status": "failed", "error": "x"}))
            .await;
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 4);
        // cleared: no more copies
        let cleared = db
            .op("configureQueue", json!({"queue": "work", "deadLetterQueue": null}))
            .await;
        assert_eq!(cleared, json!({"queue": "work", "deadLetterQueue": null}));
        let late = db.insert_task(json!({"queue": "work", "maxAttempts": 1})).await;
        db.set_status(json!({"id": s(&late, "id"), "status": "failed", "error": "x"}))
            .await;
        assert_eq!(tasks_of(&db, "work.dead").await.len(), 1);
        let st = db.op("getQueueStats", json!({"queue": "work"})).await;
        assert_eq!(st["queues"][0]["deadLetterQueue"], Json::Null, "{st}");
    })
    .await
}

pub(crate) async fn dead_letter_on_lease_expiry(p: Provider) {
    with_db(p, |db| async move {
        db.op(
            "configureQueue",
            json!({"queue": "exp", "deadLetterQueue": "exp.dead"}),
        )
        .await;
        let (wf, a, b) = a_then_b(&db, "exp").await;
        let c = claim_one(&db, "exp", "w1", 100).await;
        assert_eq!(s(&c, "id"), a);
        let lease = time_of(&c, "leaseExpiresAt");
        while chrono::Utc::now() < lease + chrono::Duration::milliseconds(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // the reaper's own 0.5 s round may take it first: the end state is the same
        db.conn.reap_expired_leases().await.expect("reaper round");
        check_dead_lettered(&db, "exp.dead", &wf, &a, &b, "lease expired").await;
    })
    .await
}

pub(crate) async fn dead_letter_never_loops(p: Provider) {
    with_db(p, |db| async move {
        // two queues naming each other
        db.op(
            "configureQueue",
            json!({"queue": "ping", "deadLetterQueue": "pong"}),
        )
        .await;
        db.op(
            "configureQueue",
            json!({"queue": "pong", "deadLetterQueue": "ping"}),
        )
        .await;
        let t = db
            .insert_task(json!({"queue": "ping", "maxAttempts": 1}))
            .await;
        db.set_status(json!({"id": s(&t, "id"), "status": "failed", "error": "first"}))
            .await;
        let copies = tasks_of(&db, "pong").await;
        assert_eq!(copies.len(), 1, "[{p}] {copies:?}");
        let copy = s(&copies[0], "id").to_string();
        // the copy fails all its 5 attempts: it stays failed in pong, no copy of it
        for n in 1..=5 {
            let r = db
                .set_status(json!({"id": copy, "status": "failed", "error": format!("again {n}")}))
                .await;
            let want = if n < 5 { "pending" } else { "failed" };
            assert_eq!(s(&r, "status"), want, "[{p}] {r}");
        }
        assert_eq!(
            tasks_of(&db, "ping").await.len(),
            1,
            "[{p}] no copy back in ping"
        );
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 2);
        // requeued and dead again, the original gets a second copy
        db.op("requeueFailedTask", json!({"id": s(&t, "id")})).await;
        db.set_status(json!({"id": s(&t, "id"), "status": "failed", "error": "second"}))
            .await;
        assert_eq!(tasks_of(&db, "pong").await.len(), 2);
    })
    .await
}

pub(crate) async fn dead_letter_configure_validation(p: Provider) {
    with_db(p, |db| async move {
        for (input, field) in [
            (json!({"queue": "q"}), "deadLetterQueue"),
            (
                json!({"queue": "q", "deadLetterQueue": "q"}),
                "deadLetterQueue",
            ),
            (
                json!({"queue": "q", "deadLetterQueue": ""}),
                "deadLetterQueue",
            ),
            (
                json!({"queue": "q", "deadLetterQueue": 5}),
                "deadLetterQueue",
            ),
            (json!({"deadLetterQueue": "d"}), "queue"),
            (
                json!({"queue": "q", "deadLetterQueue": "d", "paused": true}),
                "paused",
            ),
            (json!("q"), "payload"),
        ] {
            let f = db.op_err("configureQueue", input.clone()).await;
            assert_validation(&f, field);
        }
        assert_eq!(db.count(&db.t("queues"), "", vec![]).await, 0);
        // the node's queue is the default
        let opts = OpOptions {
            debug: false,
            queue: Some("nodeq".into()),
        };
        let v = db
            .op_with("configureQueue", json!({"deadLetterQueue": "d"}), &opts)
            .await;
        assert_eq!(v, json!({"queue": "nodeq", "deadLetterQueue": "d"}));
        // a step of a transaction: applied with the others, or not at all
        let f = db
            .op_err(
                "executeTransaction",
                json!([
                    {"operation": "configureQueue", "payload": {"queue": "tx", "deadLetterQueue": "d"}},
                    {"operation": "getTask", "payload": {"id": "0190d6e0-0000-7000-8000-000000000000"}},
                ]),
            )
            .await;
        assert_code(&f, "DBC_TRANSACTION");
        let st = db.op("getQueueStats", json!({"queue": "tx"})).await;
        assert_eq!(st["queues"][0]["deadLetterQueue"], Json::Null, "{st}");
        db.op(
            "executeTransaction",
            json!([{"operation": "configureQueue", "payload": {"queue": "tx", "deadLetterQueue": "d"}}]),
        )
        .await;
        let st = db.op("getQueueStats", json!({"queue": "tx"})).await;
        assert_eq!(st["queues"][0]["deadLetterQueue"], json!("d"), "{st}");
        // a paused queue stays paused when configured
        db.op("pauseQueue", json!({"queue": "nodeq"})).await;
        db.op(
            "configureQueue",
            json!({"queue": "nodeq", "deadLetterQueue": "e"}),
        )
        .await;
        let st = db.op("getQueueStats", json!({"queue": "nodeq"})).await;
        assert_eq!(
            (
                st["queues"][0]["paused"].clone(),
                st["queues"][0]["deadLetterQueue"].clone()
            ),
            (json!(true), json!("e"))
        );
    })
    .await
}
