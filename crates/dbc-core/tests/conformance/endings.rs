//! One way to end a task: a lease that expires follows the rules of every other ending
//! (history row, error-log row, dependents cancelled when the task is dead, the workflow's
//! status follows), and ends in the same state as the same failure reported by a worker.
//! The reaper is run directly (`Connector::reap_expired_leases`) once the lease has
//! passed, instead of waiting for its 0.5 s tick (which may also take the task first: the
//! end state is the same either way).

use super::*;

/// A workflow of two tasks on `queue`, B waiting for A; A has `max_attempts`. Returns
/// (workflow id, A's id, B's id).
async fn a_then_b(db: &Db, queue: &str, max_attempts: i64) -> (String, String, String) {
    let wf = db
        .op(
            "createWorkflow",
            json!({"name": queue, "tasks": [
                {"key": "a", "queue": queue, "name": "A", "maxAttempts": max_attempts},
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

/// Claims A with the shortest lease (100 ms), waits until that lease has passed (a condition on the
/// lease's end, not a fixed sleep), then runs the reaper.
async fn claim_and_let_expire(db: &Db, queue: &str, id: &str) {
    let c = claim_one(db, queue, "w1", 100).await;
    assert_eq!(s(&c, "id"), id, "[{}] B must wait for A", db.p);
    let lease = time_of(&c, "leaseExpiresAt");
    // the connector's clock counts whole milliseconds: the lease has passed for it once
    // a full millisecond after it has begun
    while chrono::Utc::now() < lease + chrono::Duration::milliseconds(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let n = db.conn.reap_expired_leases().await.expect("reaper round");
    assert!(n <= 1, "[{}] the reaper took {n} tasks", db.p);
}

/// What must be equal whatever way a task ended: statuses, attempts, history and error
/// counts of A and B, and the workflow's progress.
async fn end_state(db: &Db, wf: &str, a: &str, b: &str) -> Json {
    let (ga, gb) = (db.get_task(a).await, db.get_task(b).await);
    let p = db
        .op("getWorkflowProgress", json!({"workflowId": wf}))
        .await;
    let statuses: Vec<&Json> = ga["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["status"])
        .collect();
    json!({
        "a": {"status": ga["status"], "attempts": ga["attempts"], "history": ga["history"].as_array().unwrap().len(),
              "historyStatuses": statuses.len(), "errors": ga["errors"].as_array().unwrap().len(),
              "finished": !ga["finishedAt"].is_null()},
        "b": {"status": gb["status"], "history": gb["history"].as_array().unwrap().len(), "finished": !gb["finishedAt"].is_null()},
        "workflow": {"status": p["status"], "pending": p["pending"], "running": p["running"], "completed": p["completed"],
                     "failed": p["failed"], "cancelled": p["cancelled"], "percent": p["percent"], "finished": !p["finishedAt"].is_null()},
    })
}

pub(crate) async fn endings_lease_expiry_on_last_attempt(p: Provider) {
    with_db(p, |db| async move {
        let (wf, a, b) = a_then_b(&db, "exp", 1).await;
        claim_and_let_expire(&db, "exp", &a).await;
        let ga = db.get_task(&a).await;
        assert_eq!(s(&ga, "status"), "failed", "[{p}] {ga}");
        assert_eq!(s(&ga, "lastError"), "lease expired");
        let history = ga["history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "[{p}] {ga}");
        assert_eq!(
            (i(&history[0], "attempt"), s(&history[0], "status")),
            (1, "lease_expired")
        );
        let errors = ga["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "[{p}] one error-log row: {ga}");
        assert_eq!(s(&errors[0], "code"), "LEASE_EXPIRED");
        assert_eq!(s(&errors[0], "operation"), "leaseReaper");
        assert_eq!(i(&errors[0], "attempt"), 1);
        let message = s(&errors[0], "message");
        assert!(message.starts_with("lease expired: worker w1"), "{message}");
        assert!(
            message.contains("attempt 1 of 1") && message.contains("the task failed"),
            "{message}"
        );
        let gb = db.get_task(&b).await;
        assert_eq!(
            s(&gb, "status"),
            "cancelled",
            "[{p}] B waits for a dead task: {gb}"
        );
        let progress = db
            .op("getWorkflowProgress", json!({"workflowId": wf}))
            .await;
        assert_eq!(s(&progress, "status"), "failed", "[{p}] {progress}");
        assert_eq!(
            (
                i(&progress, "failed"),
                i(&progress, "cancelled"),
                i(&progress, "pending")
            ),
            (1, 1, 0)
        );
        assert!(!progress["finishedAt"].is_null(), "{progress}");
        // another round finds nothing and writes nothing
        assert_eq!(
            db.conn.reap_expired_leases().await.expect("reaper round"),
            0
        );
        assert_eq!(db.count(&db.t("error_logs"), "", vec![]).await, 1);
        assert_eq!(db.count(&db.t("task_executions"), "", vec![]).await, 1);

        // the same failure reported by the worker ends in the same state
        let (wf2, a2, b2) = a_then_b(&db, "rep", 1).await;
        claim_one(&db, "rep", "w1", 60_000).await;
        db.set_status(json!({"id": a2, "status": "failed", "workerId": "w1", "error": "gone"}))
            .await;
        assert_eq!(
            end_state(&db, &wf, &a, &b).await,
            end_state(&db, &wf2, &a2, &b2).await,
            "[{p}]"
        );
    })
    .await
}

pub(crate) async fn endings_lease_expiry_with_attempts_left(p: Provider) {
    with_db(p, |db| async move {
        let (wf, a, b) = a_then_b(&db, "exp", 3).await;
        claim_and_let_expire(&db, "exp", &a).await;
        let ga = db.get_task(&a).await;
        assert_eq!(s(&ga, "status"), "pending", "[{p}] {ga}");
        assert_eq!(
            (i(&ga, "attempts"), s(&ga, "lastError")),
            (1, "lease expired")
        );
        let history = ga["history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "[{p}] {ga}");
        assert_eq!(s(&history[0], "status"), "lease_expired");
        let errors = ga["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "[{p}] a lease expiry is an error: {ga}");
        assert_eq!(s(&errors[0], "code"), "LEASE_EXPIRED");
        assert!(
            s(&errors[0], "message")
                .contains("attempt 1 of 3 before its lease ended; the task runs again"),
            "{ga}"
        );
        // the dependent is untouched: still pending, still waiting
        let gb = db.get_task(&b).await;
        assert_eq!(
            (s(&gb, "status"), gb["finishedAt"].is_null()),
            ("pending", true),
            "[{p}] {gb}"
        );
        let progress = db
            .op("getWorkflowProgress", json!({"workflowId": wf}))
            .await;
        assert_eq!(
            (
                i(&progress, "pending"),
                i(&progress, "cancelled"),
                i(&progress, "failed")
            ),
            (2, 0, 0),
            "{progress}"
        );
        // it can run again, and completing it releases B as usual
        let c = claim_one(&db, "exp", "w2", 60_000).await;
        assert_eq!((s(&c, "id"), i(&c, "attempts")), (a.as_str(), 2));
        db.set_status(json!({"id": a, "status": "completed", "workerId": "w2"}))
            .await;
        let c = claim_one(&db, "exp", "w2", 60_000).await;
        assert_eq!(s(&c, "id"), b, "[{p}] B is released once A completes");

        // the same failure reported by the worker (attempts left) ends in the same state
        let (wf2, a2, b2) = a_then_b(&db, "rep", 3).await;
        let (wf3, a3, b3) = a_then_b(&db, "exp3", 3).await;
        claim_one(&db, "rep", "w1", 60_000).await;
        db.set_status(json!({"id": a2, "status": "failed", "workerId": "w1", "error": "gone"}))
            .await;
        claim_and_let_expire(&db, "exp3", &a3).await;
        assert_eq!(
            end_state(&db, &wf3, &a3, &b3).await,
            end_state(&db, &wf2, &a2, &b2).await,
            "[{p}]"
        );
    })
    .await
}
