//! Queues as a whole: pausing and resuming one (claims from a paused queue return no
//! task, for every connector on the database), idempotency, and `getQueueStats` counted
//! exactly against the tasks the test made; input errors that change nothing.

use super::*;

fn node_queue(q: &str) -> OpOptions {
    OpOptions {
        debug: false,
        queue: Some(q.into()),
    }
}

async fn claim(db: &Db, queue: &str, limit: i64) -> Vec<Json> {
    let v = db
        .op("claimTasks", json!({"queue": queue, "limit": limit}))
        .await;
    v.as_array()
        .unwrap_or_else(|| panic!("claimTasks gave {v}"))
        .clone()
}

pub(crate) async fn queues_pause_stops_claims_until_resumed(p: Provider) {
    with_db(p, |db| async move {
        let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
        for n in 0..3 {
            db.insert_task(json!({"queue": "mail", "name": format!("m{n}"), "runAt": past}))
                .await;
        }
        db.insert_task(json!({"queue": "sms", "runAt": past})).await;

        let paused = db.op("pauseQueue", json!({"queue": "mail"})).await;
        assert_eq!(s(&paused, "queue"), "mail");
        assert_eq!(paused["paused"], json!(true));
        let at = time_of(&paused, "pausedAt");
        assert!(
            (chrono::Utc::now() - at).num_seconds().abs() < 60,
            "{paused}"
        );
        assert_eq!(paused.as_object().map(|o| o.len()), Some(3), "{paused}");

        // no task of the paused queue is claimed, here or by another connector on the
        // same database; the other queue is not affected
        assert_eq!(claim(&db, "mail", 10).await, Vec::<Json>::new());
        let other = db
            .open_another(|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let theirs = other
            .execute(
                "claimTasks",
                json!({"queue": "mail", "limit": 10}),
                &OpOptions::default(),
            )
            .await
            .map(json_of)
            .unwrap_or_else(|f| panic!("{}", f.error));
        assert_eq!(theirs, json!([]));
        assert_eq!(claim(&db, "sms", 10).await.len(), 1);
        let pending = db
            .count(&db.t("tasks"), "WHERE status = 'pending'", vec![])
            .await;
        assert_eq!(pending, 3, "the paused queue's tasks are untouched");

        // pausing again keeps the first pausedAt
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = db.op("pauseQueue", json!({"queue": "mail"})).await;
        assert_eq!(again, paused);

        // resume: idempotent, and the tasks are claimed again (by any connector)
        let resumed = db.op("resumeQueue", json!({"queue": "mail"})).await;
        assert_eq!(resumed, json!({"queue": "mail", "paused": false}));
        assert_eq!(
            db.op("resumeQueue", json!({"queue": "mail"})).await,
            resumed
        );
        assert_eq!(claim(&db, "mail", 2).await.len(), 2);
        let last = other
            .execute(
                "claimTasks",
                json!({"queue": "mail", "limit": 10}),
                &OpOptions::default(),
            )
            .await
            .map(json_of)
            .unwrap_or_else(|f| panic!("{}", f.error));
        assert_eq!(last.as_array().map(Vec::len), Some(1), "{last}");
        other.close().await;

        // a queue without tasks may be paused, and a new pause gets a new time
        let empty = db.op("pauseQueue", json!({"queue": "later"})).await;
        assert_eq!(empty["paused"], json!(true));
        db.op("resumeQueue", json!({"queue": "mail"})).await;
        let repaused = db.op("pauseQueue", json!({"queue": "mail"})).await;
        assert!(
            time_of(&repaused, "pausedAt") > at,
            "{repaused} after {paused}"
        );
        // a task inserted into a paused queue waits too
        db.insert_task(json!({"queue": "later"})).await;
        assert_eq!(claim(&db, "later", 1).await, Vec::<Json>::new());
        db.op("resumeQueue", json!({"queue": "later"})).await;
        assert_eq!(claim(&db, "later", 1).await.len(), 1);
    })
    .await
}

pub(crate) async fn queues_node_queue_and_validation(p: Provider) {
    with_db(p, |db| async move {
        // the node's queue is the default for pause and resume
        let v = db
            .op_with("pauseQueue", json!({}), &node_queue("orders"))
            .await;
        assert_eq!(s(&v, "queue"), "orders");
        let v = db
            .op_with("resumeQueue", Json::Null, &node_queue("orders"))
            .await;
        assert_eq!(v, json!({"queue": "orders", "paused": false}));
        let v = db
            .op_with("pauseQueue", json!({"queue": "x"}), &node_queue("orders"))
            .await;
        assert_eq!(s(&v, "queue"), "x");
        db.op("resumeQueue", json!({"queue": "x"})).await;
        let rows = db.count(&db.t("queues"), "", vec![]).await;

        // bad input: a coded error naming the field, and nothing written
        for (op, input, field) in [
            ("pauseQueue", json!({}), "queue"),
            ("pauseQueue", json!({"queue": ""}), "queue"),
            ("pauseQueue", json!({"queue": 5}), "queue"),
            ("pauseQueue", json!({"queue": "x".repeat(192)}), "queue"),
            ("pauseQueue", json!({"queue": "a\u{0}b"}), "queue"),
            ("pauseQueue", json!({"queue": "a", "paused": true}), "paused"),
            ("pauseQueue", json!("mail"), "payload"),
            ("resumeQueue", json!({}), "queue"),
            ("resumeQueue", json!({"queue": ""}), "queue"),
            ("getQueueStats", json!({"queue": ""}), "queue"),
            ("getQueueStats", json!({"queues": ["a"]}), "queues"),
            ("getQueueStats", json!([]), "payload"),
        ] {
            let f = db.op_err(op, input.clone()).await;
            assert_validation(&f, field);
        }
        assert_eq!(db.count(&db.t("queues"), "", vec![]).await, rows);
        let paused = db
            .count(&db.t("queues"), "WHERE paused_at IS NOT NULL", vec![])
            .await;
        assert_eq!(paused, 0);

        // in a transaction that fails, the pause is rolled back with the rest
        let f = db
            .op_err(
                "executeTransaction",
                json!([
                    {"operation": "pauseQueue", "payload": {"queue": "tx"}},
                    {"operation": "getTask", "payload": {"id": "0190d6e0-0000-7000-8000-000000000000"}},
                ]),
            )
            .await;
        assert_code(&f, "DBC_TRANSACTION");
        let st = db.op("getQueueStats", json!({"queue": "tx"})).await;
        assert_eq!(st["queues"][0]["paused"], json!(false), "{st}");
    })
    .await
}

pub(crate) async fn queues_stats_count_exactly(p: Provider) {
    with_db(p, |db| async move {
        let ago = |s: i64| (chrono::Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
        // queue a: one of each status, two pending of which one is scheduled for later
        let done = db
            .insert_task(json!({"queue": "a", "runAt": ago(50), "priority": 9}))
            .await;
        let dead = db
            .insert_task(json!({"queue": "a", "runAt": ago(40), "priority": 8, "maxAttempts": 1}))
            .await;
        let running = db
            .insert_task(json!({"queue": "a", "runAt": ago(30), "priority": 7}))
            .await;
        let due = db
            .insert_task(json!({"queue": "a", "runAt": ago(20)}))
            .await;
        db.insert_task(json!({"queue": "a", "runAt": "2100-01-01T00:00:00Z"}))
            .await;
        let cancelled = db.insert_task(json!({"queue": "a"})).await;
        let claimed = claim(&db, "a", 3).await;
        let ids: Vec<&str> = claimed.iter().map(|t| s(t, "id")).collect();
        assert_eq!(ids, [s(&done, "id"), s(&dead, "id"), s(&running, "id")]);
        db.set_status(json!({"id": s(&done, "id"), "status": "completed"}))
            .await;
        db.set_status(json!({"id": s(&dead, "id"), "status": "failed", "error": "boom"}))
            .await;
        db.set_status(json!({"id": s(&cancelled, "id"), "status": "cancelled"}))
            .await;
        // queue b: two pending, not due yet; queue c: paused, without tasks
        db.insert_task(json!({"queue": "b", "runAt": "2100-01-01T00:00:00Z"}))
            .await;
        db.insert_task(json!({"queue": "b", "runAt": "2100-01-02T00:00:00Z"}))
            .await;
        let c = db.op("pauseQueue", json!({"queue": "c"})).await;

        let before = chrono::Utc::now();
        let all = db.op("getQueueStats", json!({})).await;
        let after = chrono::Utc::now();
        let queues = all["queues"].as_array().cloned().unwrap_or_default();
        assert_eq!(all.as_object().map(|o| o.len()), Some(1), "{all}");
        let names: Vec<&str> = queues.iter().map(|q| s(q, "queue")).collect();
        assert_eq!(names, ["a", "b", "c"]);

        let a = &queues[0];
        // waited since its runAt, 20 s before the call
        let age = i(a, "oldestPendingAgeMs");
        let since = time_of(&due, "runAt");
        assert!(
            age >= (before - since).num_milliseconds() && age <= (after - since).num_milliseconds(),
            "{age} ms for a task due at {since}"
        );
        let mut a = a.clone();
        a["oldestPendingAgeMs"] = json!("age");
        assert_eq!(
            a,
            json!({
                "queue": "a", "paused": false, "pausedAt": null, "deadLetterQueue": null,
                "counts": {"pending": 2, "running": 1, "completed": 1, "failed": 1, "cancelled": 1},
                "scheduled": 1, "oldestPendingAgeMs": "age", "completedLastMinute": 1,
            })
        );
        assert_eq!(
            queues[1],
            json!({
                "queue": "b", "paused": false, "pausedAt": null, "deadLetterQueue": null,
                "counts": {"pending": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
                "scheduled": 2, "oldestPendingAgeMs": null, "completedLastMinute": 0,
            })
        );
        assert_eq!(
            queues[2],
            json!({
                "queue": "c", "paused": true, "pausedAt": c["pausedAt"], "deadLetterQueue": null,
                "counts": {"pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
                "scheduled": 0, "oldestPendingAgeMs": null, "completedLastMinute": 0,
            })
        );

        // one queue: only it, also when it has no task and is not paused
        let b = db.op("getQueueStats", json!({"queue": "b"})).await;
        assert_eq!(b, json!({"queues": [queues[1]]}));
        let none = db.op("getQueueStats", json!({"queue": "nothing"})).await;
        assert_eq!(
            none,
            json!({"queues": [{
                "queue": "nothing", "paused": false, "pausedAt": null, "deadLetterQueue": null,
                "counts": {"pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
                "scheduled": 0, "oldestPendingAgeMs": null, "completedLastMinute": 0,
            }]})
        );
        // a resumed queue without tasks is no longer listed; pausing a queue shows it
        db.op("resumeQueue", json!({"queue": "c"})).await;
        db.op("pauseQueue", json!({"queue": "a"})).await;
        let all = db.op("getQueueStats", Json::Null).await;
        let listed: Vec<(&str, bool)> = all["queues"]
            .as_array()
            .map(|q| {
                q.iter()
                    .map(|q| (s(q, "queue"), q["paused"] == json!(true)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, [("a", true), ("b", false)]);
    })
    .await
}
