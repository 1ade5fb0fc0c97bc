//! Schedules: create (upsert by name), list, pause, resume, delete and their validation;
//! three connectors on one database ("runtimes") firing the same schedule enqueue each
//! tick exactly once; the missed-tick policy (only the latest missed tick, once); a paused
//! schedule fires nowhere.

use super::*;

/// The tasks a schedule enqueued: `(run_at, idempotency key)` by run time.
async fn fired(db: &Db, name: &str) -> Vec<(String, String)> {
    let out = db
        .sql(
            &format!(
                "SELECT run_at, idempotency_key FROM {} WHERE name = {} ORDER BY run_at",
                db.t("tasks"),
                db.ph(1)
            ),
            vec![Param::Text(name.into())],
        )
        .await;
    out.rows
        .iter()
        .map(|r| {
            let t = match &r[0] {
                Value::Int(ms) => chrono::DateTime::from_timestamp_millis(*ms)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default(),
                Value::Text(s) => utc(&if s.ends_with('Z') {
                    s.clone()
                } else {
                    format!("{s}Z")
                })
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                other => panic!("run_at {other:?}"),
            };
            let k = match &r[1] {
                Value::Text(s) => s.clone(),
                other => panic!("idempotency_key {other:?}"),
            };
            (t, k)
        })
        .collect()
}

/// Polls until `name` has at least `n` tasks (deadline 15 s).
async fn wait_fired(db: &Db, name: &str, n: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let f = fired(db, name).await;
        if f.len() >= n || Instant::now() > deadline {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn schedules_create_list_pause_delete(p: Provider) {
    with_db(p, |db| async move {
        let made = db
            .op_with(
                "createSchedule",
                json!({"name": "nightly", "cron": "0 30 2 * * *", "timeZone": "Europe/Berlin",
                       "payload": {"report": "sales"}, "priority": 3}),
                &OpOptions {
                    debug: false,
                    queue: Some("reports".into()),
                },
            )
            .await;
        assert_eq!(s(&made, "name"), "nightly");
        assert_eq!(s(&made, "queue"), "reports", "the node's queue");
        assert_eq!(s(&made, "taskName"), "nightly", "the name by default");
        assert_eq!(s(&made, "timeZone"), "Europe/Berlin");
        assert_eq!(made["payload"], json!({"report": "sales"}));
        assert_eq!(i(&made, "priority"), 3);
        assert_eq!(i(&made, "maxAttempts"), 5);
        assert_eq!(made["paused"], json!(false));
        assert!(!s(&made, "description").is_empty(), "{made}");
        // 02:30 in Berlin is 00:30 or 01:30 UTC, within the next day
        let next = time_of(&made, "nextRunAt");
        let ahead = next - chrono::Utc::now();
        assert!(
            ahead > chrono::Duration::zero() && ahead <= chrono::Duration::hours(24),
            "{made}"
        );
        assert!(
            matches!(
                next.format("%H:%M:%S").to_string().as_str(),
                "00:30:00" | "01:30:00"
            ),
            "{made}"
        );

        // upsert by name: a new pattern, the same created time
        let again = db
            .op(
                "createSchedule",
                json!({"name": "nightly", "cron": "*/5 * * * *", "taskName": "report"}),
            )
            .await;
        assert_eq!(s(&again, "cron"), "*/5 * * * *");
        assert_eq!(s(&again, "timeZone"), "UTC");
        assert_eq!(s(&again, "queue"), "default");
        assert_eq!(s(&again, "taskName"), "report");
        assert_eq!(again["createdAt"], made["createdAt"]);
        assert_eq!(time_of(&again, "nextRunAt").timestamp() % 300, 0, "{again}");
        db.op(
            "createSchedule",
            json!({"name": "alpha", "cron": "@hourly"}),
        )
        .await;
        let list = db.op("listSchedules", Json::Null).await;
        let names: Vec<&str> = list["schedules"]
            .as_array()
            .map(|a| a.iter().map(|x| s(x, "name")).collect())
            .unwrap_or_default();
        assert_eq!(names, ["alpha", "nightly"], "{list}");

        // pause: kept by a later upsert that does not say otherwise; resume continues
        let paused = db.op("pauseSchedule", json!({"name": "nightly"})).await;
        assert_eq!(paused["paused"], json!(true));
        let at = time_of(&paused, "pausedAt");
        let kept = db
            .op(
                "createSchedule",
                json!({"name": "nightly", "cron": "*/5 * * * *"}),
            )
            .await;
        assert_eq!(kept["paused"], json!(true), "{kept}");
        assert_eq!(time_of(&kept, "pausedAt"), at);
        let resumed = db.op("resumeSchedule", json!({"name": "nightly"})).await;
        assert_eq!(resumed["paused"], json!(false));
        assert_eq!(resumed["pausedAt"], Json::Null);
        assert!(time_of(&resumed, "nextRunAt") > chrono::Utc::now());

        // replaced with the same pattern and zone, a running schedule keeps its next tick
        // (every runtime may create it at start-up without losing or repeating one)
        let on = match db.p {
            Provider::Postgres => "next_run_at + interval '7 days'",
            Provider::Mariadb => "next_run_at + INTERVAL 7 DAY",
            Provider::Sqlite => "next_run_at + 604800000",
        };
        db.sql(
            &format!(
                "UPDATE {} SET next_run_at = {on} WHERE name = {}",
                db.t("schedules"),
                db.ph(1)
            ),
            vec![Param::Text("alpha".into())],
        )
        .await;
        let moved = db.op("listSchedules", json!({})).await["schedules"][0].clone();
        let same = db
            .op(
                "createSchedule",
                json!({"name": "alpha", "cron": "@hourly", "payload": 2}),
            )
            .await;
        assert_eq!(time_of(&same, "nextRunAt"), time_of(&moved, "nextRunAt"));
        assert_eq!(same["payload"], json!(2));
        let other = db
            .op("createSchedule", json!({"name": "alpha", "cron": "@daily"}))
            .await;
        assert!(
            time_of(&other, "nextRunAt") < time_of(&moved, "nextRunAt"),
            "{other}"
        );

        let gone = db.op("deleteSchedule", json!({"name": "nightly"})).await;
        assert_eq!(gone, json!({"name": "nightly", "deleted": true}));
        for op in ["pauseSchedule", "resumeSchedule", "deleteSchedule"] {
            assert_code(
                &db.op_err(op, json!({"name": "nightly"})).await,
                "DBC_NOT_FOUND",
            );
        }
        let left = db.op("listSchedules", json!({})).await;
        assert_eq!(
            left["schedules"].as_array().map(Vec::len),
            Some(1),
            "{left}"
        );
    })
    .await
}

pub(crate) async fn schedules_validation_changes_nothing(p: Provider) {
    with_db(p, |db| async move {
        for (input, field) in [
            (json!({"cron": "* * * * *"}), "name"),
            (json!({"name": "x"}), "cron"),
            (json!({"name": "x", "cron": "61 * * * *"}), "cron"),
            (json!({"name": "x", "cron": "every minute"}), "cron"),
            (json!({"name": "x", "cron": "0 0 30 2 *"}), "cron"),
            (
                json!({"name": "x", "cron": "* * * * *", "timeZone": "Mars/Olympus"}),
                "timeZone",
            ),
            (
                json!({"name": "x", "cron": "* * * * *", "priority": -1}),
                "priority",
            ),
            (
                json!({"name": "x", "cron": "* * * * *", "maxAttempts": 0}),
                "maxAttempts",
            ),
            (
                json!({"name": "x", "cron": "* * * * *", "paused": "yes"}),
                "paused",
            ),
            (
                json!({"name": "x", "cron": "* * * * *", "every": 5}),
                "every",
            ),
            (
                json!({"name": "x".repeat(129), "cron": "* * * * *"}),
                "name",
            ),
            (json!("x"), "payload"),
        ] {
            assert_validation(&db.op_err("createSchedule", input.clone()).await, field);
        }
        assert_validation(&db.op_err("pauseSchedule", json!({})).await, "name");
        assert_validation(&db.op_err("listSchedules", json!({"x": 1})).await, "x");
        assert_validation(
            &db.op_err("previewSchedule", json!({"cron": "* * *"})).await,
            "cron",
        );
        let list = db.op("listSchedules", json!({})).await;
        assert_eq!(list, json!({"schedules": []}));

        // the preview: words and the next ticks, in the time zone
        let v = db
            .op(
                "previewSchedule",
                json!({"cron": "0 9 * * 1-5", "timeZone": "America/New_York", "count": 3}),
            )
            .await;
        assert!(!s(&v, "description").is_empty(), "{v}");
        let runs = v["nextRuns"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), 3, "{v}");
        for r in &runs {
            let t = utc(r.as_str().unwrap_or_default());
            assert!(
                matches!(t.format("%H:%M").to_string().as_str(), "13:00" | "14:00"),
                "{v}"
            );
        }
    })
    .await
}

pub(crate) async fn schedules_fire_once_per_tick_across_runtimes(p: Provider) {
    with_db(p, |db| async move {
        let b = db
            .open_another(|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let c = db
            .open_another(|_| {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.op(
            "createSchedule",
            json!({"name": "tick", "cron": "* * * * * *", "queue": "ticks", "payload": {"n": 1}}),
        )
        .await;
        // three upkeep loops race for every tick for about 4 s
        let first = wait_fired(&db, "tick", 1).await;
        assert!(!first.is_empty(), "no tick fired");
        tokio::time::sleep(Duration::from_millis(4000)).await;
        db.op("pauseSchedule", json!({"name": "tick"})).await;
        b.close().await;
        c.close().await;
        let all = fired(&db, "tick").await;
        assert!(all.len() >= 3, "{all:?}");
        // one task per tick: consecutive seconds, none twice, none left out
        for (n, (t, key)) in all.iter().enumerate() {
            assert_eq!(key, &format!("schedule:tick:{t}"));
            let at = utc(t);
            assert_eq!(at.timestamp_subsec_millis(), 0, "{t}");
            if n > 0 {
                let before = utc(&all[n - 1].0);
                assert_eq!((at - before).num_seconds(), 1, "{all:?}");
            }
        }
        let task = db
            .op("listTasks", json!({"queue": "ticks", "limit": 1}))
            .await;
        let t0 = &task["tasks"][0];
        assert_eq!(s(t0, "name"), "tick");
        assert_eq!(t0["payload"], json!({"n": 1}));
        let list = db.op("listSchedules", json!({})).await;
        assert_eq!(
            list["schedules"][0]["lastRunAt"],
            json!(all[all.len() - 1].0),
            "{list}"
        );
    })
    .await
}

pub(crate) async fn schedules_missed_ticks_fire_the_latest_once(p: Provider) {
    with_db(p, |db| async move {
        // a paused schedule fires nowhere
        db.op(
            "createSchedule",
            json!({"name": "held", "cron": "* * * * * *", "paused": true}),
        )
        .await;
        // every minute, its next tick moved three hours back: the runtimes were "down"
        db.op(
            "createSchedule",
            json!({"name": "late", "cron": "0 * * * * *"}),
        )
        .await;
        let back = match db.p {
            Provider::Postgres => "next_run_at - interval '3 hours'",
            Provider::Mariadb => "next_run_at - INTERVAL 3 HOUR",
            Provider::Sqlite => "next_run_at - 10800000",
        };
        let set_at = chrono::Utc::now();
        db.sql(
            &format!(
                "UPDATE {} SET next_run_at = {back} WHERE name = {}",
                db.t("schedules"),
                db.ph(1)
            ),
            vec![Param::Text("late".into())],
        )
        .await;
        let got = wait_fired(&db, "late", 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got2 = fired(&db, "late").await;
        assert!(!got.is_empty(), "the latest missed tick fired");
        // one task for ~180 missed ticks: the latest, of this minute (or, across a minute
        // boundary during the test, also the next one)
        assert!(got2.len() <= 2, "{got2:?}");
        let latest = utc(&got2[0].0);
        assert!(latest > set_at - chrono::Duration::seconds(61), "{got2:?}");
        assert_eq!(latest.timestamp() % 60, 0);
        let sched = db.op("listSchedules", json!({})).await;
        let late = sched["schedules"]
            .as_array()
            .and_then(|a| a.iter().find(|x| s(x, "name") == "late"))
            .cloned()
            .unwrap_or_default();
        assert!(time_of(&late, "nextRunAt") > set_at, "{late}");
        assert_eq!(fired(&db, "held").await, vec![]);
    })
    .await
}
