//! A running task's lease: `heartbeat` by its holder keeps the task (a task that runs 5×
//! its lease runs once), by anyone else or after expiry it is refused and changes
//! nothing; progress shown by getTask, listTasks and getWorkflowProgress; `snoozeTask`
//! gives the task back without spending the attempt; a cancelled running task's
//! heartbeat and settle get a coded answer (`reason: "cancelled"`) and overwrite nothing.

use super::*;
use dbc_core::connector::Failure;

async fn claim_one(db: &Db, queue: &str, worker: &str, lease_ms: i64) -> Json {
    let v = db
        .op(
            "claimTasks",
            json!({"queue": queue, "limit": 1, "leaseMs": lease_ms, "workerId": worker}),
        )
        .await;
    v.as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_else(|| panic!("claimTasks gave {v}"))
}

fn assert_reason(f: &Failure, code: &str, reason: Option<&str>) {
    assert_code(f, code);
    assert_eq!(f.error.reason(), reason, "{}", f.error);
}

pub(crate) async fn lease_heartbeat_keeps_a_long_task(p: Provider) {
    with_db(p, |db| async move {
        let lease = 600;
        let kept = db
            .insert_task(json!({"queue": "long", "name": "kept"}))
            .await;
        let id = s(&kept, "id").to_string();
        let t = claim_one(&db, "long", "w1", lease).await;
        assert_eq!(s(&t, "id"), id);
        // work for 5× the lease, a heartbeat every third of it
        let end = Instant::now() + Duration::from_millis(5 * lease as u64);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(lease as u64 / 3)).await;
            let b = db
                .op(
                    "heartbeat",
                    json!({"id": id, "workerId": "w1", "leaseMs": lease}),
                )
                .await;
            assert_eq!(s(&b, "status"), "running", "{b}");
            assert!(time_of(&b, "leaseExpiresAt") > chrono::Utc::now(), "{b}");
        }
        let done = db
            .set_status(json!({"id": id, "status": "completed", "workerId": "w1"}))
            .await;
        assert_eq!((s(&done, "status"), i(&done, "attempts")), ("completed", 1));
        let detail = db.get_task(&id).await;
        let history = detail["history"].as_array().cloned().unwrap_or_default();
        assert_eq!(history.len(), 1, "it ran exactly once: {detail}");
        assert_eq!(history[0]["status"], json!("completed"));
        assert_eq!(detail["errors"], json!([]), "no lease expired: {detail}");

        // without heartbeats the same work loses its task: it runs again after the lease
        let lost = db
            .insert_task(json!({"queue": "long", "name": "lost"}))
            .await;
        let lost_id = s(&lost, "id").to_string();
        claim_one(&db, "long", "w1", lease).await;
        let back = wait_for_status(
            &db,
            &lost_id,
            "pending",
            Instant::now() + Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            back["history"][0]["status"],
            json!("lease_expired"),
            "{back}"
        );
        let again = claim_one(&db, "long", "w2", lease).await;
        assert_eq!(
            (s(&again, "id"), i(&again, "attempts")),
            (lost_id.as_str(), 2)
        );
        let f = db
            .op_err("heartbeat", json!({"id": lost_id, "workerId": "w1"}))
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
    })
    .await
}

pub(crate) async fn lease_heartbeat_only_by_the_holder(p: Provider) {
    with_db(p, |db| async move {
        let t = db.insert_task(json!({"queue": "hb"})).await;
        let id = s(&t, "id").to_string();
        // not running yet: no one holds a lease
        let f = db.op_err("heartbeat", json!({"id": id})).await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
        claim_one(&db, "hb", "a", 60_000).await;
        let before = db.get_task(&id).await;
        let f = db
            .op_err(
                "heartbeat",
                json!({"id": id, "workerId": "b", "progress": 10}),
            )
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
        let f = db
            .op_err("snoozeTask", json!({"id": id, "workerId": "b"}))
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
        assert_eq!(
            db.get_task(&id).await,
            before,
            "a refused heartbeat changes nothing"
        );
        // bad input: DBC_VALIDATION naming the field, nothing written
        for (input, field) in [
            (json!({"id": id, "progress": 150}), "progress"),
            (json!({"id": id, "leaseMs": 1}), "leaseMs"),
            (json!({"id": id, "colour": 1}), "colour"),
            (json!({"workerId": "a"}), "id"),
            (json!("nope"), "payload"),
        ] {
            let f = db.op_err("heartbeat", input).await;
            assert_validation(&f, field);
        }
        let f = db
            .op_err(
                "heartbeat",
                json!({"id": "0190a0b0-0000-7000-8000-00000000beef"}),
            )
            .await;
        assert_code(&f, "DBC_NOT_FOUND");
        assert_eq!(db.get_task(&id).await, before);
        // the holder (or a flow that names no worker) may
        let b = db
            .op(
                "heartbeat",
                json!({"id": id, "workerId": "a", "leaseMs": 120_000}),
            )
            .await;
        assert!(time_of(&b, "leaseExpiresAt") > time_of(&before, "leaseExpiresAt"));
        db.op("heartbeat", json!({"id": id})).await;
        // after expiry (reaped back to pending) it is refused
        let t = db.insert_task(json!({"queue": "hb2"})).await;
        let id = s(&t, "id").to_string();
        claim_one(&db, "hb2", "a", 100).await;
        let back = wait_for_status(
            &db,
            &id,
            "pending",
            Instant::now() + Duration::from_secs(10),
        )
        .await;
        let f = db
            .op_err("heartbeat", json!({"id": id, "workerId": "a"}))
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
        assert_eq!(db.get_task(&id).await, back);
    })
    .await
}

pub(crate) async fn lease_progress_is_shown(p: Provider) {
    with_db(p, |db| async move {
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "report", "tasks": [
                    {"key": "a", "queue": "prog", "name": "a"},
                    {"key": "b", "queue": "prog", "name": "b", "dependsOn": ["a"]},
                ]}),
            )
            .await;
        let wf_id = s(&wf, "id").to_string();
        let t = claim_one(&db, "prog", "w", 60_000).await;
        let id = s(&t, "id").to_string();
        assert!(
            t.get("progress").is_none(),
            "no progress before a heartbeat: {t}"
        );
        let b = db
            .op(
                "heartbeat",
                json!({"id": id, "workerId": "w", "progress": 40, "note": {"rows": 400}}),
            )
            .await;
        assert_eq!(b["progress"]["percent"], json!(40.0));
        assert_eq!(b["progress"]["note"], json!({"rows": 400}));
        time_of(&b["progress"], "updatedAt");
        // a heartbeat with only a percent keeps the note; one with neither keeps both
        db.op(
            "heartbeat",
            json!({"id": id, "workerId": "w", "progress": 55.5}),
        )
        .await;
        db.op("heartbeat", json!({"id": id, "workerId": "w"})).await;
        let got = db.get_task(&id).await;
        assert_eq!(got["progress"]["percent"], json!(55.5), "{got}");
        assert_eq!(got["progress"]["note"], json!({"rows": 400}), "{got}");
        let page = db.op("listTasks", json!({"queue": "prog"})).await;
        let listed: Vec<&Json> = page["tasks"]
            .as_array()
            .map(|a| a.iter().filter(|t| t["id"] == json!(id)).collect())
            .unwrap_or_default();
        assert_eq!(listed.len(), 1, "{page}");
        assert_eq!(listed[0]["progress"], got["progress"]);
        let wp = db
            .op("getWorkflowProgress", json!({"workflowId": wf_id}))
            .await;
        assert_eq!(i(&wp, "running"), 1, "{wp}");
        let running = wp["inProgress"].as_array().cloned().unwrap_or_default();
        assert_eq!(running.len(), 1, "{wp}");
        assert_eq!(
            (s(&running[0], "id"), s(&running[0], "name")),
            (id.as_str(), "a")
        );
        assert_eq!(s(&running[0], "workerId"), "w");
        assert_eq!(running[0]["progress"], got["progress"]);
        // the progress stays on the task when it ends; the workflow lists no running task
        db.set_status(json!({"id": id, "status": "completed", "workerId": "w"}))
            .await;
        assert_eq!(db.get_task(&id).await["progress"], got["progress"]);
        let wp = db
            .op("getWorkflowProgress", json!({"workflowId": wf_id}))
            .await;
        assert_eq!(wp["inProgress"], json!([]), "{wp}");
    })
    .await
}

pub(crate) async fn lease_snooze_keeps_the_attempt(p: Provider) {
    with_db(p, |db| async move {
        let t = db
            .insert_task(json!({"queue": "nap", "maxAttempts": 1}))
            .await;
        let id = s(&t, "id").to_string();
        claim_one(&db, "nap", "w", 60_000).await;
        let snoozed = db
            .op(
                "snoozeTask",
                json!({"id": id, "workerId": "w", "delayMs": 700}),
            )
            .await;
        assert_eq!(s(&snoozed, "status"), "pending");
        assert_eq!(
            (i(&snoozed, "attempts"), i(&snoozed, "maxAttempts")),
            (1, 2)
        );
        assert!(snoozed["workerId"].is_null() && snoozed["leaseExpiresAt"].is_null());
        assert!(
            time_of(&snoozed, "runAt") > chrono::Utc::now() + chrono::Duration::milliseconds(300)
        );
        let detail = db.get_task(&id).await;
        assert_eq!(
            detail["history"].as_array().map(Vec::len),
            Some(1),
            "{detail}"
        );
        assert_eq!(detail["history"][0]["status"], json!("cancelled"));
        assert_eq!(detail["errors"], json!([]));
        // not before its time
        let none = db
            .op("claimTasks", json!({"queue": "nap", "limit": 1}))
            .await;
        assert_eq!(none, json!([]));
        // then it runs again, and its one real attempt can still fail for good
        let deadline = Instant::now() + Duration::from_secs(10);
        let again = loop {
            let v = db
                .op(
                    "claimTasks",
                    json!({"queue": "nap", "limit": 1, "workerId": "w2"}),
                )
                .await;
            if let Some(t) = v.as_array().and_then(|a| a.first()) {
                break t.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the snoozed task never came back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!((s(&again, "id"), i(&again, "attempts")), (id.as_str(), 2));
        let failed = db
            .set_status(json!({"id": id, "status": "failed", "workerId": "w2", "error": "boom"}))
            .await;
        assert_eq!(
            s(&failed, "status"),
            "failed",
            "the snooze spent no attempt of the budget"
        );
        // only a running task's holder may snooze
        let f = db.op_err("snoozeTask", json!({"id": id})).await;
        assert_reason(&f, "DBC_LEASE_LOST", None);
        let f = db
            .op_err("snoozeTask", json!({"id": id, "delayMs": 1, "runAt": 1}))
            .await;
        assert_validation(&f, "runAt");
    })
    .await
}

pub(crate) async fn lease_cancelled_running_task_is_told(p: Provider) {
    with_db(p, |db| async move {
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "stop", "tasks": [
                    {"key": "a", "queue": "stop"},
                    {"key": "b", "queue": "stop", "dependsOn": ["a"]},
                ]}),
            )
            .await;
        let dependent = s(&wf["tasks"][1], "id").to_string();
        let t = claim_one(&db, "stop", "w", 60_000).await;
        let id = s(&t, "id").to_string();
        db.op(
            "heartbeat",
            json!({"id": id, "workerId": "w", "progress": 30}),
        )
        .await;
        // an operator cancels it while it runs: cancelled at once, dependents too
        let c = db
            .set_status(json!({"id": id, "status": "cancelled"}))
            .await;
        assert_eq!(s(&c, "status"), "cancelled");
        assert_eq!(s(&db.get_task(&dependent).await, "status"), "cancelled");
        let before = db.get_task(&id).await;
        assert_eq!(
            before["history"][0]["status"],
            json!("cancelled"),
            "{before}"
        );
        // the worker's next heartbeat learns it, coded
        let f = db
            .op_err(
                "heartbeat",
                json!({"id": id, "workerId": "w", "progress": 60}),
            )
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", Some("cancelled"));
        let f = db
            .op_err("snoozeTask", json!({"id": id, "workerId": "w"}))
            .await;
        assert_reason(&f, "DBC_LEASE_LOST", Some("cancelled"));
        // its settle too, and nothing is overwritten
        for status in ["completed", "failed", "pending", "running"] {
            let f = db
                .op_err(
                    "updateTaskStatus",
                    json!({"id": id, "status": status, "workerId": "w", "result": {"x": 1}}),
                )
                .await;
            assert_reason(&f, "DBC_INVALID_TRANSITION", Some("cancelled"));
        }
        // a batch settle's item says so too
        let many = db
            .op(
                "updateTaskStatus",
                json!([{"id": id, "status": "completed", "workerId": "w"}]),
            )
            .await;
        assert_eq!(
            many[0]["error"]["code"],
            json!("DBC_INVALID_TRANSITION"),
            "{many}"
        );
        assert_eq!(many[0]["error"]["reason"], json!("cancelled"), "{many}");
        let after = db.get_task(&id).await;
        assert_eq!(after, before, "nothing overwritten");
        assert!(after["result"].is_null());
        assert_eq!(after["progress"]["percent"], json!(30.0));
        // other refusals carry no reason
        let done = db.insert_task(json!({"queue": "other"})).await;
        let done_id = s(&done, "id").to_string();
        db.set_status(json!({"id": done_id, "status": "completed"}))
            .await;
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": done_id, "status": "running"}),
            )
            .await;
        assert_reason(&f, "DBC_INVALID_TRANSITION", None);
    })
    .await
}
