//! Retention (docs/USER-GUIDE.md "Retention"): once a minute the connector deletes tasks
//! that are `completed` or `cancelled` and finished more than `retentionDays` ago, with
//! their history and error rows. Failed tasks, pending and running ones, finished ones
//! inside the retention, and workflows' own rows stay.

use super::*;

/// Runs a task to `end` (`completed`, `cancelled` or `failed` for good), after one failed
/// attempt for a completed one (so it has an error row and two history rows).
async fn finish(db: &Db, name: &str, end: &str) -> String {
    let t = db
        .insert_task(json!({"name": name, "queue": "r", "maxAttempts": 2}))
        .await;
    let id = s(&t, "id").to_string();
    match end {
        "cancelled" => {
            db.set_status(json!({"id": id, "status": "cancelled"}))
                .await;
        }
        "completed" => {
            db.set_status(json!({"id": id, "status": "running", "workerId": "w"}))
                .await;
            db.set_status(json!({"id": id, "status": "failed", "workerId": "w", "error": "once"}))
                .await;
            db.set_status(json!({"id": id, "status": "running", "workerId": "w"}))
                .await;
            db.set_status(json!({"id": id, "status": "completed", "workerId": "w"}))
                .await;
        }
        _ => {
            for _ in 0..2 {
                db.set_status(json!({"id": id, "status": "running", "workerId": "w"}))
                    .await;
                db.set_status(
                    json!({"id": id, "status": "failed", "workerId": "w", "error": "down"}),
                )
                .await;
            }
        }
    }
    assert_eq!(s(&db.get_task(&id).await, "status"), end);
    id
}

/// Moves a task's `finished_at` (and `updated_at`) `days` into the past.
async fn finished_days_ago(db: &Db, p: Provider, id: &str, days: i64) {
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    let sql = format!(
        "UPDATE {} SET finished_at = {}, updated_at = {} WHERE id = {}",
        db.t("tasks"),
        db.ph(1),
        db.ph(2),
        db.ph(3)
    );
    let out = db
        .sql(
            &sql,
            vec![
                time_param(p, at),
                time_param(p, at),
                Param::Text(id.to_string()),
            ],
        )
        .await;
    assert_eq!(out.rows_affected, 1);
}

async fn rows_of_task(db: &Db, table: &str, id: &str) -> i64 {
    db.count(
        &db.t(table),
        &format!("WHERE task_id = {}", db.ph(1)),
        vec![Param::Text(id.to_string())],
    )
    .await
}

pub(crate) async fn retention_purges_old_finished_tasks(p: Provider) {
    with_db_cfg(
        p,
        |c| c["retentionDays"] = json!(7),
        |db| async move {
            let old_done = finish(&db, "old completed", "completed").await;
            let old_cancelled = finish(&db, "old cancelled", "cancelled").await;
            let old_failed = finish(&db, "old failed", "failed").await;
            let recent_done = finish(&db, "recent completed", "completed").await;
            let pending = s(
                &db.insert_task(json!({"name": "waiting", "queue": "r"}))
                    .await,
                "id",
            )
            .to_string();
            let wf = db
                .op(
                    "createWorkflow",
                    json!({"name": "kept", "tasks": [{"key": "a", "queue": "rw"}]}),
                )
                .await;
            let listed = db.op("listTasks", json!({"queue": "rw"})).await;
            let wf_task = s(&listed["tasks"][0], "id").to_string();
            db.set_status(json!({"id": wf_task, "status": "completed"}))
                .await;
            for id in [&old_done, &old_cancelled, &old_failed, &wf_task] {
                finished_days_ago(&db, p, id, 8).await;
            }
            finished_days_ago(&db, p, &recent_done, 6).await;
            assert_eq!(rows_of_task(&db, "task_executions", &old_done).await, 2);
            assert_eq!(rows_of_task(&db, "error_logs", &old_done).await, 1);

            // the first purge runs a minute after the connector opened
            let until = Instant::now() + Duration::from_secs(150);
            let tasks = db.t("tasks");
            loop {
                let left = db
                    .count(
                        &tasks,
                        &format!("WHERE id IN ({}, {}, {})", db.ph(1), db.ph(2), db.ph(3)),
                        vec![
                            Param::Text(old_done.clone()),
                            Param::Text(old_cancelled.clone()),
                            Param::Text(wf_task.clone()),
                        ],
                    )
                    .await;
                if left == 0 {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "{left} finished tasks past their retention still there after 150 s"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            for (table, id) in [("task_executions", &old_done), ("error_logs", &old_done)] {
                assert_eq!(
                    rows_of_task(&db, table, id).await,
                    0,
                    "{table} of a purged task"
                );
            }
            // kept: failed for good, inside the retention, not finished, the workflow row
            for (id, status) in [
                (&old_failed, "failed"),
                (&recent_done, "completed"),
                (&pending, "pending"),
            ] {
                assert_eq!(s(&db.get_task(id).await, "status"), status);
            }
            assert_eq!(rows_of_task(&db, "task_executions", &old_failed).await, 2);
            assert_eq!(rows_of_task(&db, "task_executions", &recent_done).await, 2);
            let progress = db
                .op("getWorkflowProgress", json!({"workflowId": wf["id"]}))
                .await;
            assert_eq!(s(&progress, "name"), "kept");
        },
    )
    .await
}
