//! Attempt history: the running attempt lives on the task row, and each attempt gets its
//! one history row when it ends (also across the upgrade that introduced this).

use super::*;

/// A time as the `query` operation returns it (any provider's form), in epoch ms.
pub(crate) fn stored_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Null => None,
        Value::Int(ms) => Some(*ms),
        Value::Text(t) if t.ends_with('Z') => Some(utc(t).timestamp_millis()),
        Value::Text(t) => Some(
            chrono::NaiveDateTime::parse_from_str(&t.replace(' ', "T"), "%Y-%m-%dT%H:%M:%S%.f")
                .unwrap_or_else(|e| panic!("{t}: {e}"))
                .and_utc()
                .timestamp_millis(),
        ),
        other => panic!("not a time: {other:?}"),
    }
}

/// A time as this provider stores it (a bound parameter).
pub(crate) fn time_param(p: Provider, t: chrono::DateTime<chrono::Utc>) -> Param {
    match p {
        Provider::Postgres => Param::Text(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        Provider::Mariadb => Param::Text(t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()),
        Provider::Sqlite => Param::Int(t.timestamp_millis()),
    }
}

/// One stored history row: attempt, worker, status, started, finished, duration (ms).
#[derive(Debug, PartialEq)]
pub(crate) struct Row {
    attempt: i64,
    worker: Option<String>,
    status: String,
    started: i64,
    finished: Option<i64>,
    duration: Option<i64>,
}

/// The task's rows of `task_executions`, by attempt.
pub(crate) async fn executions(db: &Db, id: &str) -> Vec<Row> {
    let out = db
        .sql(
            &format!(
                "SELECT attempt, worker_id, status, started_at, finished_at, duration_ms FROM {} WHERE task_id = {} ORDER BY attempt",
                db.t("task_executions"),
                db.ph(1)
            ),
            vec![Param::Text(id.to_string())],
        )
        .await;
    out.rows
        .iter()
        .map(|r| Row {
            attempt: match &r[0] {
                Value::Int(n) => *n,
                other => panic!("attempt {other:?}"),
            },
            worker: match &r[1] {
                Value::Text(w) => Some(w.clone()),
                _ => None,
            },
            status: match &r[2] {
                Value::Text(st) => st.clone(),
                other => panic!("status {other:?}"),
            },
            started: stored_ms(&r[3]).expect("started_at is never null"),
            finished: stored_ms(&r[4]),
            duration: match &r[5] {
                Value::Int(n) => Some(*n),
                Value::Null => None,
                Value::Text(t) => Some(t.parse().unwrap()),
                other => panic!("duration_ms {other:?}"),
            },
        })
        .collect()
}

/// `tasks.attempt_started_at` of a task, in epoch ms.
pub(crate) async fn attempt_started(db: &Db, id: &str) -> Option<i64> {
    let out = db
        .sql(
            &format!(
                "SELECT attempt_started_at FROM {} WHERE id = {}",
                db.t("tasks"),
                db.ph(1)
            ),
            vec![Param::Text(id.to_string())],
        )
        .await;
    stored_ms(&out.rows[0][0])
}

/// Claims one task of `queue` for `worker`, polling until one is due (retry backoff).
pub(crate) async fn claim_one(db: &Db, queue: &str, worker: &str, lease_ms: i64) -> Json {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = db
            .op(
                "claimTasks",
                json!({"queue": queue, "limit": 1, "workerId": worker, "leaseMs": lease_ms}),
            )
            .await;
        if let Some(t) = c.as_array().and_then(|a| a.first()) {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "[{}] nothing to claim in {queue}",
            db.p
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn ms(v: &Json, key: &str) -> i64 {
    time_of(v, key).timestamp_millis()
}

/// A finished row: its duration is its span, and it lasted at least `min_ms`.
#[track_caller]
pub(crate) fn assert_span(r: &Row, min_ms: i64) {
    let finished = r.finished.expect("a finished attempt has finished_at");
    assert_eq!(r.duration, Some(finished - r.started), "{r:?}");
    assert!(
        finished - r.started >= min_ms,
        "lasted at least {min_ms} ms: {r:?}"
    );
}

pub(crate) async fn tasks_attempt_history_written_once(p: Provider) {
    with_db_cfg(
        p,
        |cfg| cfg["retryBackoffMs"] = json!(10),
        |db| async move {
            let t = db.insert_task(json!({"queue": "h", "name": "a", "maxAttempts": 3})).await;
            let id = s(&t, "id").to_string();
            // a claim writes no history row; getTask shows the running attempt all the same
            let c = claim_one(&db, "h", "w1", 60_000).await;
            assert_eq!(c["id"], t["id"]);
            assert_eq!(executions(&db, &id).await, vec![], "no row for a running attempt");
            let start1 = ms(&c, "startedAt");
            assert_eq!(attempt_started(&db, &id).await, Some(start1));
            let g = db.get_task(&id).await;
            assert_eq!(
                g["history"],
                json!([{"attempt": 1, "workerId": "w1", "status": "running", "startedAt": c["startedAt"],
                        "finishedAt": null, "durationMs": null}])
            );
            // a failure with attempts left: one row, the task pending without an attempt
            tokio::time::sleep(Duration::from_millis(25)).await;
            let r = db.set_status(json!({"id": id, "status": "failed", "workerId": "w1", "error": "x"})).await;
            assert_eq!(s(&r, "status"), "pending");
            let rows = executions(&db, &id).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].attempt, rows[0].worker.as_deref(), rows[0].status.as_str()), (1, Some("w1"), "failed"));
            assert_eq!(rows[0].started, start1);
            assert_span(&rows[0], 20);
            // the start stays on the task row; a pending task shows no running attempt
            assert_eq!(attempt_started(&db, &id).await, Some(start1));
            assert_eq!(db.get_task(&id).await["history"].as_array().map(Vec::len), Some(1));
            // attempt 2 runs: the finished one from the table, the running one from the task
            let c = claim_one(&db, "h", "w2", 60_000).await;
            assert_eq!(i(&c, "attempts"), 2);
            assert_eq!(executions(&db, &id).await.len(), 1);
            let start2 = attempt_started(&db, &id).await.expect("attempt 2 started");
            assert!(start2 >= rows[0].finished.unwrap());
            assert_eq!(ms(&c, "startedAt"), start1, "the task's startedAt stays its first start");
            let g = db.get_task(&id).await;
            let h = g["history"].as_array().unwrap();
            assert_eq!(h.len(), 2, "{g}");
            assert_eq!((i(&h[0], "attempt"), s(&h[0], "status")), (1, "failed"));
            assert_eq!(i(&h[0], "durationMs"), rows[0].duration.unwrap());
            assert_eq!((i(&h[1], "attempt"), s(&h[1], "status"), s(&h[1], "workerId")), (2, "running", "w2"));
            assert_eq!(ms(&h[1], "startedAt"), start2);
            assert_eq!(h[1]["finishedAt"], Json::Null);
            assert_eq!(h[1]["durationMs"], Json::Null);
            // the task's startedAt stays the first start
            assert_eq!(ms(&g, "startedAt"), start1);
            // given back: recorded as cancelled
            db.set_status(json!({"id": id, "status": "pending", "workerId": "w2"})).await;
            let rows = executions(&db, &id).await;
            assert_eq!(rows.len(), 2, "{rows:?}");
            assert_eq!((rows[1].attempt, rows[1].worker.as_deref(), rows[1].status.as_str()), (2, Some("w2"), "cancelled"));
            assert_eq!(rows[1].started, start2);
            assert_span(&rows[1], 0);
            // completed without naming the worker: the row keeps the attempt's worker
            let c = claim_one(&db, "h", "w3", 60_000).await;
            let start3 = attempt_started(&db, &id).await.expect("attempt 3 started");
            assert_eq!(i(&c, "attempts"), 3);
            tokio::time::sleep(Duration::from_millis(25)).await;
            let done = db.set_status(json!({"id": id, "status": "completed", "result": 1})).await;
            assert_eq!(s(&done, "status"), "completed");
            assert_eq!(done["workerId"], Json::Null);
            let rows = executions(&db, &id).await;
            assert_eq!(
                rows.iter().map(|r| (r.attempt, r.worker.clone().unwrap_or_default(), r.status.clone())).collect::<Vec<_>>(),
                vec![(1, "w1".into(), "failed".into()), (2, "w2".into(), "cancelled".into()), (3, "w3".into(), "completed".into())]
            );
            assert_eq!(rows[2].started, start3);
            assert_eq!(rows[2].finished, Some(ms(&done, "finishedAt")));
            assert_span(&rows[2], 20);
            assert_eq!(attempt_started(&db, &id).await, Some(start3));
            let g = db.get_task(&id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 3, "{g}");
            assert_eq!(g["history"][2]["status"], json!("completed"));
            assert_eq!(ms(&g["history"][2], "startedAt"), start3);

            // running → cancelled: one cancelled row
            let t2 = db.insert_task(json!({"queue": "h2", "name": "b"})).await;
            let id2 = s(&t2, "id").to_string();
            let c = claim_one(&db, "h2", "w1", 60_000).await;
            db.set_status(json!({"id": id2, "status": "cancelled"})).await;
            let rows = executions(&db, &id2).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("w1"), "cancelled"));
            assert_eq!(rows[0].started, ms(&c, "startedAt"));
            assert_span(&rows[0], 0);
            // the last attempt failing: one failed row, the task failed
            let t3 = db.insert_task(json!({"queue": "h3", "name": "c", "maxAttempts": 1})).await;
            let id3 = s(&t3, "id").to_string();
            let c = claim_one(&db, "h3", "w9", 60_000).await;
            let f = db.set_status(json!({"id": id3, "status": "failed", "workerId": "w9"})).await;
            assert_eq!(s(&f, "status"), "failed");
            let rows = executions(&db, &id3).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("w9"), "failed"));
            assert_eq!(rows[0].started, ms(&c, "startedAt"));
            assert_span(&rows[0], 0);
            // pending → completed directly: one row that starts and ends at once
            let t4 = db.insert_task(json!({"queue": "h4", "name": "d"})).await;
            let d4 = db.set_status(json!({"id": t4["id"], "status": "completed"})).await;
            let rows = executions(&db, s(&t4, "id")).await;
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!((rows[0].attempt, rows[0].worker.as_deref(), rows[0].status.as_str()), (1, None, "completed"));
            assert_eq!(rows[0].started, ms(&d4, "finishedAt"));
            assert_eq!(rows[0].finished, Some(rows[0].started));
            assert_eq!(rows[0].duration, Some(0));
            // a manual start (pending → running) keeps its attempt on the task row too
            let t5 = db.insert_task(json!({"queue": "h5", "name": "e"})).await;
            let r5 = db.set_status(json!({"id": t5["id"], "status": "running", "workerId": "m"})).await;
            assert_eq!(executions(&db, s(&t5, "id")).await, vec![]);
            assert_eq!(attempt_started(&db, s(&t5, "id")).await, Some(ms(&r5, "startedAt")));
            db.set_status(json!({"id": t5["id"], "status": "completed", "workerId": "m"})).await;
            let rows = executions(&db, s(&t5, "id")).await;
            assert_eq!((rows.len(), rows[0].worker.as_deref(), rows[0].status.as_str()), (1, Some("m"), "completed"));
            assert_eq!(db.count(&db.t("task_executions"), "WHERE status = 'running'", vec![]).await, 0);
        },
    )
    .await
}

pub(crate) async fn tasks_lease_expiry_history(p: Provider) {
    with_db(p, |db| async move {
        let t = db
            .insert_task(json!({"queue": "x", "name": "slow", "maxAttempts": 2}))
            .await;
        let id = s(&t, "id").to_string();
        let c = claim_one(&db, "x", "w1", 100).await;
        let start1 = ms(&c, "startedAt");
        let lease1 = ms(&c, "leaseExpiresAt");
        // the reaper puts it back: one lease_expired row, no duration (as always)
        let g = wait_for_status(&db, &id, "pending", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (
                rows[0].attempt,
                rows[0].worker.as_deref(),
                rows[0].status.as_str()
            ),
            (1, Some("w1"), "lease_expired")
        );
        assert_eq!(rows[0].started, start1);
        assert!(rows[0].finished.unwrap() > lease1, "{rows:?}");
        assert_eq!(rows[0].duration, None);
        assert_eq!(attempt_started(&db, &id).await, Some(start1));
        assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        assert_eq!(g["history"][0]["status"], json!("lease_expired"));
        assert_eq!(ms(&g["history"][0], "startedAt"), start1);
        assert_eq!(g["history"][0]["durationMs"], Json::Null);
        // the last attempt expiring: a second row, the task failed
        let c = claim_one(&db, "x", "w2", 100).await;
        assert_eq!(i(&c, "attempts"), 2);
        let start2 = attempt_started(&db, &id).await.expect("attempt 2 started");
        let g = wait_for_status(&db, &id, "failed", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &id).await;
        assert_eq!(
            rows.iter()
                .map(|r| (r.attempt, r.worker.clone(), r.status.clone()))
                .collect::<Vec<_>>(),
            vec![
                (1, Some("w1".into()), "lease_expired".into()),
                (2, Some("w2".into()), "lease_expired".into())
            ]
        );
        assert_eq!(rows[1].started, start2);
        assert_eq!(rows[1].duration, None);
        assert_eq!(s(&g, "lastError"), "lease expired");
        assert_eq!(attempt_started(&db, &id).await, Some(start2));
        // a late report changes nothing
        let f = db
            .op_err(
                "updateTaskStatus",
                json!({"id": id, "status": "completed", "workerId": "w2"}),
            )
            .await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        assert_eq!(executions(&db, &id).await.len(), 2);
    })
    .await
}

/// A database migrated by the previous connector version while an attempt ran (its
/// history row then said `running`): after the upgrade the attempt shows and ends as
/// any other. The schema is taken back to before `0003_attempt_on_task` by hand, the
/// attempts are started the old way, then the connector migrates again.
pub(crate) async fn migrations_running_attempt_survives_upgrade(p: Provider) {
    with_db(p, |db| async move {
        let (tasks, te) = (db.t("tasks"), db.t("task_executions"));
        db.sql(&format!("ALTER TABLE {tasks} DROP COLUMN attempt_started_at"), vec![]).await;
        db.sql(&format!("DELETE FROM {} WHERE version = 3", db.t("migrations")), vec![]).await;
        let st = db.conn.schema_status().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(st.pending.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["0003_attempt_on_task"]);

        let now = chrono::Utc::now();
        let t0 = now - chrono::Duration::seconds(5);
        // starts attempt `n` of a task the way 0.1 did: the task row, plus a running row
        let old_claim = |id: String, n: i64, worker: &'static str, lease: chrono::DateTime<chrono::Utc>| {
            let db = db.clone();
            let (tasks, te) = (tasks.clone(), te.clone());
            async move {
                db.sql(
                    &format!(
                        "UPDATE {tasks} SET status = 'running', attempts = {}, worker_id = {}, lease_expires_at = {}, \
                         started_at = {}, updated_at = {} WHERE id = {}",
                        db.ph(1), db.ph(2), db.ph(3), db.ph(4), db.ph(5), db.ph(6)
                    ),
                    vec![Param::Int(n), Param::Text(worker.into()), time_param(db.p, lease), time_param(db.p, t0),
                         time_param(db.p, t0), Param::Text(id.clone())],
                )
                .await;
                db.sql(
                    &format!(
                        "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at) VALUES ({}, {}, {}, 'running', {})",
                        db.ph(1), db.ph(2), db.ph(3), db.ph(4)
                    ),
                    vec![Param::Text(id), Param::Int(n), Param::Text(worker.into()), time_param(db.p, t0)],
                )
                .await;
            }
        };
        let a = db.insert_task(json!({"queue": "u", "name": "a"})).await;
        let a_id = s(&a, "id").to_string();
        old_claim(a_id.clone(), 1, "old-a", now + chrono::Duration::seconds(60)).await;
        // b: attempt 1 failed (a finished row), attempt 2 running
        let b = db.insert_task(json!({"queue": "u", "name": "b"})).await;
        let b_id = s(&b, "id").to_string();
        db.sql(
            &format!(
                "INSERT INTO {te} (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms) \
                 VALUES ({}, 1, 'old-b', 'failed', {}, {}, 7)",
                db.ph(1), db.ph(2), db.ph(3)
            ),
            vec![Param::Text(b_id.clone()), time_param(db.p, t0 - chrono::Duration::seconds(1)),
                 time_param(db.p, t0 - chrono::Duration::seconds(1) + chrono::Duration::milliseconds(7))],
        )
        .await;
        old_claim(b_id.clone(), 2, "old-b", now + chrono::Duration::seconds(60)).await;
        // c: running under a lease that ends soon after the upgrade
        let c = db.insert_task(json!({"queue": "u", "name": "c", "maxAttempts": 1})).await;
        let c_id = s(&c, "id").to_string();
        let c_lease = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        old_claim(c_id.clone(), 1, "old-c", c_lease).await;
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 3);

        let done = db.conn.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.iter().map(|m| m.version).collect::<Vec<_>>(), vec![3]);
        let st = db.conn.schema_status().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(st.applied.iter().any(|m| m.name == "0003_attempt_on_task"), "{:?}", st.applied);
        assert!(st.pending.is_empty());
        // the running rows moved onto their tasks
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 0);
        for id in [&a_id, &b_id, &c_id] {
            assert_eq!(attempt_started(&db, id).await, Some(t0.timestamp_millis()), "{id}");
        }
        assert_eq!(executions(&db, &b_id).await.len(), 1, "b's finished attempt stays");
        let g = db.get_task(&b_id).await;
        let h = g["history"].as_array().unwrap();
        assert_eq!(h.len(), 2, "{g}");
        assert_eq!((i(&h[0], "attempt"), s(&h[0], "status"), i(&h[0], "durationMs")), (1, "failed", 7));
        assert_eq!((i(&h[1], "attempt"), s(&h[1], "status"), s(&h[1], "workerId")), (2, "running", "old-b"));
        assert_eq!(ms(&h[1], "startedAt"), t0.timestamp_millis());

        // they end as any attempt does
        let done = db.set_status(json!({"id": a_id, "status": "completed", "workerId": "old-a"})).await;
        let rows = executions(&db, &a_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("old-a"), "completed"));
        assert_eq!(rows[0].started, t0.timestamp_millis());
        assert_eq!(rows[0].finished, Some(ms(&done, "finishedAt")));
        assert_span(&rows[0], 5000);
        db.set_status(json!({"id": b_id, "status": "failed", "workerId": "old-b", "error": "e"})).await;
        let rows = executions(&db, &b_id).await;
        assert_eq!(
            rows.iter().map(|r| (r.attempt, r.status.clone())).collect::<Vec<_>>(),
            vec![(1, "failed".into()), (2, "failed".into())]
        );
        assert_eq!(rows[1].started, t0.timestamp_millis());
        assert_span(&rows[1], 5000);
        let g = wait_for_status(&db, &c_id, "failed", Instant::now() + Duration::from_secs(5)).await;
        let rows = executions(&db, &c_id).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].worker.as_deref(), rows[0].status.as_str()), (Some("old-c"), "lease_expired"));
        assert_eq!(rows[0].started, t0.timestamp_millis());
        assert!(rows[0].finished.unwrap() >= c_lease.timestamp_millis());
        assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        assert_eq!(db.count(&te, "WHERE status = 'running'", vec![]).await, 0);

        // an older connector still running after the upgrade starts attempts the old way:
        // finishing them fails nothing, and history shows each attempt once
        let d = db.insert_task(json!({"queue": "u", "name": "d"})).await;
        let d_id = s(&d, "id").to_string();
        old_claim(d_id.clone(), 1, "old-d", now + chrono::Duration::seconds(60)).await;
        // e: and a start time left over on its task row
        let e = db.insert_task(json!({"queue": "u", "name": "e"})).await;
        let e_id = s(&e, "id").to_string();
        old_claim(e_id.clone(), 1, "old-e", now + chrono::Duration::seconds(60)).await;
        db.sql(
            &format!("UPDATE {tasks} SET attempt_started_at = {} WHERE id = {}", db.ph(1), db.ph(2)),
            vec![time_param(db.p, t0), Param::Text(e_id.clone())],
        )
        .await;
        // (e names its worker: on PostgreSQL it goes the batch way, whose key conflict
        // sends it one by one)
        for (id, worker) in [(&d_id, Json::Null), (&e_id, json!("old-e"))] {
            let g = db.get_task(id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
            assert_eq!(g["history"][0]["status"], json!("running"));
            let done = db
                .set_status(json!({"id": id, "status": "completed", "workerId": worker}))
                .await;
            assert_eq!(s(&done, "status"), "completed");
            let g = db.get_task(id).await;
            assert_eq!(g["history"].as_array().unwrap().len(), 1, "{g}");
        }
    })
    .await
}
