//! The failback reconciliation across providers: everything a flow can write (workflows
//! with dependencies, retried tasks with execution history and error rows, idempotency
//! keys, future run times) moves from one database to another with the same ids and the
//! same observable state, the source ends empty, and a second run moves nothing.

#[macro_use]
#[allow(unused_macros)]
mod common;

use common::*;
use dbc_core::Provider;
use serde_json::{json, Value as Json};

/// Times compare as instants (providers render fractions differently).
fn normalized(v: &Json) -> Json {
    match v {
        Json::String(s) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => json!(t.timestamp_millis()),
            Err(_) => v.clone(),
        },
        Json::Array(a) => Json::Array(a.iter().map(normalized).collect()),
        Json::Object(o) => {
            Json::Object(o.iter().map(|(k, v)| (k.clone(), normalized(v))).collect())
        }
        other => other.clone(),
    }
}

async fn moves(src_p: Provider, dst_p: Provider) {
    let src = Db::open_with(src_p, |_| {}).await;
    let dst = Db::open_with(dst_p, |_| {}).await;
    // the destination already has a task with idempotency key k1
    let theirs = dst
        .op(
            "insertTask",
            json!({"name": "theirs", "idempotencyKey": "k1"}),
        )
        .await;

    let wf = src
        .op(
            "createWorkflow",
            json!({"name": "wf", "metadata": {"m": [1, 2]}, "tasks": [
                {"key": "a", "name": "a", "payload": {"x": 1}},
                {"key": "b", "name": "b", "dependsOn": ["a"]},
                {"key": "c", "name": "c", "dependsOn": ["b"], "priority": 3}
            ]}),
        )
        .await;
    let ours = src
        .op(
            "insertTask",
            json!({"name": "ours", "idempotencyKey": "k1"}),
        )
        .await;
    let later = src
        .op("insertTask", json!({"name": "later", "priority": 5, "runAt": "2999-01-01T00:00:00.000Z", "payload": {"deep": {"n": 1.5, "s": "é"}}}))
        .await;
    let retried = src
        .op(
            "insertTask",
            json!({"name": "retried", "queue": "r", "maxAttempts": 3}),
        )
        .await;
    let claimed = src
        .op(
            "claimTasks",
            json!({"queue": "r", "limit": 1, "workerId": "w1"}),
        )
        .await;
    assert_eq!(claimed[0]["id"], retried["id"]);
    src.op("updateTaskStatus", json!({"id": retried["id"], "status": "failed", "error": {"code": "E1", "message": "boom"}}))
        .await;
    let first = src
        .op("claimTasks", json!({"limit": 1, "workerId": "w2"}))
        .await;
    assert_eq!(first[0]["name"], "a");
    src.op(
        "updateTaskStatus",
        json!({"id": first[0]["id"], "status": "completed", "result": {"ok": true}}),
    )
    .await;

    // a task in the middle of an attempt: the attempt lives on its task row
    let busy = src
        .op("insertTask", json!({"name": "busy", "queue": "r2"}))
        .await;
    src.op(
        "claimTasks",
        json!({"queue": "r2", "limit": 1, "workerId": "w4", "leaseMs": 600000}),
    )
    .await;
    // with the progress its worker reported (migration 0005): it moves with the task
    src.op(
        "heartbeat",
        json!({"id": busy["id"], "workerId": "w4", "leaseMs": 600000,
               "progress": 25, "note": {"step": "é"}}),
    )
    .await;

    let mut ids: Vec<Json> = wf["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    ids.extend([
        later["id"].clone(),
        retried["id"].clone(),
        busy["id"].clone(),
    ]);
    let mut before = Vec::new();
    for id in &ids {
        before.push(src.op("getTask", json!({"id": id})).await);
    }
    let progress = src
        .op("getWorkflowProgress", json!({"workflowId": wf["id"]}))
        .await;

    // queue states: the primary paused `held` and `reopened`; during the outage the
    // fallback paused `outage` and resumed `reopened`
    let held = dst.op("pauseQueue", json!({"queue": "held"})).await;
    dst.op("pauseQueue", json!({"queue": "reopened"})).await;
    let outage = src.op("pauseQueue", json!({"queue": "outage"})).await;
    src.op("resumeQueue", json!({"queue": "reopened"})).await;

    // a dead-letter queue set during the outage, a task dead-lettered there, and a key
    // taken over by a uniqueFor insert (migration 0007's columns move too)
    src.op(
        "configureQueue",
        json!({"queue": "dl", "deadLetterQueue": "dl.dead"}),
    )
    .await;
    let dead = src
        .op("insertTask", json!({"queue": "dl", "maxAttempts": 1}))
        .await;
    src.op(
        "updateTaskStatus",
        json!({"id": dead["id"], "status": "failed", "error": "x"}),
    )
    .await;
    let k2 = json!({"queue": "u", "idempotencyKey": "k2", "uniqueFor": "active"});
    let old_k2 = src.op("insertTask", k2.clone()).await;
    src.op(
        "updateTaskStatus",
        json!({"id": old_k2["id"], "status": "cancelled"}),
    )
    .await;
    let new_k2 = src.op("insertTask", k2).await;
    assert_ne!(new_k2["id"], old_k2["id"]);

    // schedules: the primary has `both`; during the outage the fallback made its own
    // `both` (paused, another pattern) and `outage`
    dst.op("createSchedule", json!({"name": "both", "cron": "@yearly"}))
        .await;
    src.op("createSchedule", json!({"name": "both", "cron": "0 0 1 1 *", "timeZone": "Europe/Berlin", "paused": true, "payload": {"p": 1}}))
        .await;
    src.op(
        "createSchedule",
        json!({"name": "outage", "cron": "@monthly", "queue": "q"}),
    )
    .await;
    let src_schedules = src.op("listSchedules", json!({})).await;

    let report = src.conn.move_all_to(&dst.conn).await.expect("move");
    assert_eq!(report.queues, 3, "{report:?}");
    assert_eq!(report.schedules, 2, "{report:?}");
    let st = dst.op("getQueueStats", json!({"queue": "dl"})).await;
    assert_eq!(st["queues"][0]["deadLetterQueue"], json!("dl.dead"), "{st}");
    let by = |col: &str| format!("WHERE {col} = {}", dst.ph(1));
    let text = |v: &Json| {
        vec![dbc_core::value::Param::Text(
            v.as_str().unwrap_or("").into(),
        )]
    };
    assert_eq!(
        dst.count(&dst.t("tasks"), &by("dead_letter_of"), text(&dead["id"]))
            .await,
        1
    );
    assert_eq!(
        dst.count(&dst.t("tasks"), &by("released_key"), text(&json!("k2")))
            .await,
        1
    );
    assert_eq!(
        dst.count(&dst.t("tasks"), &by("idempotency_key"), text(&json!("k2")))
            .await,
        1
    );
    // the fallback's schedules replace the primary's of the same name, as they were
    let moved = dst.op("listSchedules", json!({})).await;
    assert_eq!(normalized(&moved), normalized(&src_schedules));
    assert_eq!(
        src.op("listSchedules", json!({})).await,
        json!({"schedules": []})
    );
    let paused = |v: &Json| -> Vec<(String, bool, Json)> {
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| ["held", "outage", "reopened"].contains(&q["queue"].as_str().unwrap_or("")))
            .map(|q| {
                (
                    q["queue"].as_str().unwrap_or("").to_string(),
                    q["paused"] == json!(true),
                    normalized(&q["pausedAt"]),
                )
            })
            .collect()
    };
    let mut want = Vec::new();
    for (q, at) in [
        ("held", &held),
        ("outage", &outage),
        ("reopened", &Json::Null),
    ] {
        let st = dst.op("getQueueStats", json!({"queue": q})).await;
        want.push((q.to_string(), !at.is_null(), normalized(&at["pausedAt"])));
        assert_eq!(
            paused(&st),
            want[want.len() - 1..].to_vec(),
            "[{src_p} → {dst_p}] {st}"
        );
    }
    assert_eq!(
        paused(&src.op("getQueueStats", json!({})).await),
        vec![],
        "the source's queue states moved"
    );
    assert_eq!(report.tasks, 10, "{report:?}");
    assert_eq!(report.merged_by_key, 1, "{report:?}");
    assert_eq!(report.workflows, 1);
    assert!(report.executions >= 2 && report.errors >= 1, "{report:?}");

    for (id, was) in ids.iter().zip(&before) {
        let now = dst.op("getTask", json!({"id": id})).await;
        assert_eq!(
            normalized(&now),
            normalized(was),
            "[{src_p} → {dst_p}] task {id}"
        );
    }
    let now = dst
        .op("getWorkflowProgress", json!({"workflowId": wf["id"]}))
        .await;
    assert_eq!(normalized(&now), normalized(&progress));
    // the key's task in the destination stands; ours was merged into it
    let kept = dst.op("getTask", json!({"id": theirs["id"]})).await;
    assert_eq!(kept["name"], "theirs");
    let gone = dst.op_err("getTask", json!({"id": ours["id"]})).await;
    assert_eq!(gone.error.code(), "DBC_NOT_FOUND");
    // b's dependency on a survived: completing b releases c on the destination
    let next = dst
        .op("claimTasks", json!({"limit": 10, "workerId": "w3"}))
        .await;
    let names: Vec<&str> = next
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"b") && !names.contains(&"c"), "{names:?}");

    // the attempt moved with its task: it ends with its start time and worker
    let busy_before = &before[before.len() - 1];
    assert_eq!(
        busy_before["progress"]["percent"],
        json!(25.0),
        "{busy_before}"
    );
    assert_eq!(
        busy_before["history"][0]["status"], "running",
        "{busy_before}"
    );
    let done = dst
        .op(
            "updateTaskStatus",
            json!({"id": busy["id"], "status": "completed", "workerId": "w4"}),
        )
        .await;
    assert_eq!(done["status"], "completed");
    let h = &dst.op("getTask", json!({"id": busy["id"]})).await["history"];
    assert_eq!(h.as_array().map(Vec::len), Some(1), "{h}");
    assert_eq!(h[0]["status"], "completed");
    assert_eq!(h[0]["workerId"], "w4");
    assert_eq!(
        normalized(&h[0]["startedAt"]),
        normalized(&busy_before["history"][0]["startedAt"])
    );

    let left = src.op("listTasks", json!({})).await;
    assert_eq!(
        left["tasks"].as_array().unwrap().len(),
        0,
        "the source is empty"
    );
    let again = src.conn.move_all_to(&dst.conn).await.expect("second move");
    assert_eq!(
        (again.tasks, again.workflows, again.queues, again.schedules),
        (0, 0, 0, 0)
    );
}

async fn mariadb_to_postgres(_: Provider) {
    moves(Provider::Mariadb, Provider::Postgres).await;
}
async fn sqlite_to_postgres(_: Provider) {
    moves(Provider::Sqlite, Provider::Postgres).await;
}
async fn postgres_to_mariadb(_: Provider) {
    moves(Provider::Postgres, Provider::Mariadb).await;
}
async fn postgres_to_sqlite(_: Provider) {
    moves(Provider::Postgres, Provider::Sqlite).await;
}

suite!(pairs, Postgres; mariadb_to_postgres, sqlite_to_postgres, postgres_to_mariadb, postgres_to_sqlite);
