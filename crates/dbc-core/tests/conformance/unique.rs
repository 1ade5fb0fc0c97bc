//! Uniqueness windows (`uniqueFor`): with `"active"` a key keeps duplicates out while the
//! task holding it is pending or running, and is free once it ended (completed, failed,
//! cancelled); with a period, for that many milliseconds after the holder's insert. The
//! default (no `uniqueFor`) is unchanged: any task holding the key, until it is purged.
//! Concurrent inserts racing for a freed key: exactly one wins.

use super::*;

/// Inserts a task with key `key` and `unique_for`; the answer.
async fn keyed(db: &Db, key: &str, unique_for: Json) -> Json {
    db.insert_task(json!({"queue": "u", "idempotencyKey": key, "uniqueFor": unique_for}))
        .await
}

fn fresh(v: &Json) -> bool {
    v.get("deduplicated").is_none()
}

async fn holders(db: &Db, key: &str) -> (i64, i64) {
    let k = || vec![Param::Text(key.into())];
    (
        db.count(
            &db.t("tasks"),
            &format!("WHERE idempotency_key = {}", db.ph(1)),
            k(),
        )
        .await,
        db.count(
            &db.t("tasks"),
            &format!("WHERE released_key = {}", db.ph(1)),
            k(),
        )
        .await,
    )
}

pub(crate) async fn unique_while_active(p: Provider) {
    with_db(p, |db| async move {
        let a = keyed(&db, "sync-1", json!("active")).await;
        assert!(fresh(&a), "[{p}] {a}");
        // pending: a duplicate
        let dup = keyed(&db, "sync-1", json!("active")).await;
        assert_eq!((dup["deduplicated"].clone(), &dup["id"]), (json!(true), &a["id"]));
        // running: still a duplicate
        let c = claim_one(&db, "u", "w1", 30_000).await;
        assert_eq!(c["id"], a["id"]);
        let dup = keyed(&db, "sync-1", json!("active")).await;
        assert_eq!(dup["id"], a["id"], "[{p}] {dup}");
        // completed: the key is free, a new task takes it
        db.set_status(json!({"id": s(&a, "id"), "status": "completed", "workerId": "w1"}))
            .await;
        let b = keyed(&db, "sync-1", json!("active")).await;
        assert!(fresh(&b), "[{p}] {b}");
        assert_ne!(b["id"], a["id"]);
        assert_eq!(s(&b, "idempotencyKey"), "sync-1");
        let ga = db.get_task(s(&a, "id")).await;
        assert_eq!(s(&ga, "status"), "completed", "the ended task is kept");
        assert_eq!(ga["idempotencyKey"], Json::Null, "[{p}] its key moved: {ga}");
        assert_eq!(holders(&db, "sync-1").await, (1, 1));
        // the default scope still deduplicates against any holder, ended or not
        let d = db
            .insert_task(json!({"queue": "u", "idempotencyKey": "sync-1"}))
            .await;
        assert_eq!(d["id"], b["id"]);
        // failed (dead): free
        db.set_status(json!({"id": s(&b, "id"), "status": "cancelled"}))
            .await;
        let c = keyed(&db, "sync-1", json!("active")).await;
        assert!(fresh(&c), "[{p}] after a cancellation: {c}");
        let failing = db
            .insert_task(json!({"queue": "v", "idempotencyKey": "sync-2", "uniqueFor": "active", "maxAttempts": 1}))
            .await;
        db.set_status(json!({"id": s(&failing, "id"), "status": "failed", "error": "boom"}))
            .await;
        let again = db
            .insert_task(json!({"queue": "v", "idempotencyKey": "sync-2", "uniqueFor": "active"}))
            .await;
        assert!(fresh(&again), "[{p}] after a dead task: {again}");
        // a failure with attempts left runs again: still active, still a duplicate
        let retried = db
            .insert_task(json!({"queue": "w", "idempotencyKey": "sync-3", "uniqueFor": "active", "maxAttempts": 3}))
            .await;
        let r = db
            .set_status(json!({"id": s(&retried, "id"), "status": "failed", "error": "again"}))
            .await;
        assert_eq!(s(&r, "status"), "pending");
        let dup = db
            .insert_task(json!({"queue": "w", "idempotencyKey": "sync-3", "uniqueFor": "active"}))
            .await;
        assert_eq!(dup["id"], retried["id"], "[{p}] {dup}");
        assert_eq!(holders(&db, "sync-1").await, (1, 2));
    })
    .await
}

pub(crate) async fn unique_for_a_period(p: Provider) {
    with_db(p, |db| async move {
        let a = keyed(&db, "per-1", json!(300)).await;
        assert!(fresh(&a), "[{p}] {a}");
        let dup = keyed(&db, "per-1", json!(300)).await;
        assert_eq!(dup["id"], a["id"], "[{p}] inside the window: {dup}");
        // a longer window of another insert sees the same recent holder
        let dup = keyed(&db, "per-1", json!(60_000)).await;
        assert_eq!(dup["id"], a["id"]);
        // once 300 ms have passed since a's insert, a new task takes the key, though a is
        // still pending
        let window_end = time_of(&a, "createdAt") + chrono::Duration::milliseconds(301);
        while chrono::Utc::now() < window_end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = keyed(&db, "per-1", json!(300)).await;
        assert!(fresh(&b), "[{p}] after the window: {b}");
        assert_eq!(s(&db.get_task(s(&a, "id")).await, "status"), "pending");
        // the window is b's now
        let dup = keyed(&db, "per-1", json!(300)).await;
        assert_eq!(dup["id"], b["id"]);
        assert_eq!(holders(&db, "per-1").await, (1, 1));
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 2);
    })
    .await
}

pub(crate) async fn unique_concurrent_inserts_take_a_freed_key_once(p: Provider) {
    with_db(p, |db| async move {
        let a = keyed(&db, "race", json!("active")).await;
        db.set_status(json!({"id": s(&a, "id"), "status": "cancelled"}))
            .await;
        // two connectors on the database, each insert in its own transaction (debug on:
        // no group commit), so the inserts race for the key across transactions
        let other = std::sync::Arc::new(
            db.open_another(|_| {})
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let own = OpOptions {
            debug: true,
            queue: None,
        };
        let handles: Vec<_> = (0..16)
            .map(|n| {
                let conn = if n % 2 == 0 { db.conn.clone() } else { other.clone() };
                let opts = own.clone();
                tokio::spawn(async move {
                    conn.execute(
                        "insertTask",
                        json!({"queue": "u", "name": format!("r{n}"), "idempotencyKey": "race", "uniqueFor": "active"}),
                        &opts,
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            match h.await.expect("insert panicked") {
                Ok(o) => results.push(json_of(o)),
                Err(f) => panic!("[{p}] a concurrent insert failed: {} {}", f.error.code(), f.error),
            }
        }
        let winners: Vec<&Json> = results.iter().filter(|r| fresh(r)).collect();
        assert_eq!(winners.len(), 1, "[{p}] one insert takes the key: {results:?}");
        assert!(results.iter().all(|r| r["id"] == winners[0]["id"]), "{results:?}");
        assert_eq!(holders(&db, "race").await, (1, 1));
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 2);
        other.close().await;
    })
    .await
}

pub(crate) async fn unique_validation_writes_nothing(p: Provider) {
    with_db(p, |db| async move {
        for (task, field) in [
            (json!({"uniqueFor": "active"}), "uniqueFor"),
            (
                json!({"idempotencyKey": "k", "uniqueFor": "forever"}),
                "uniqueFor",
            ),
            (json!({"idempotencyKey": "k", "uniqueFor": 0}), "uniqueFor"),
            (
                json!({"idempotencyKey": "k", "uniqueFor": 1.5}),
                "uniqueFor",
            ),
            (
                json!([{"idempotencyKey": "k"}, {"uniqueFor": 100}]),
                "payload[1].uniqueFor",
            ),
        ] {
            let f = db.op_err("insertTask", task.clone()).await;
            assert_validation(&f, field);
        }
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 0);
    })
    .await
}
