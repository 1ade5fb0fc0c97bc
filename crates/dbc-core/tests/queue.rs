//! Queue suite: docs/API.md's operations and the task's life on PostgreSQL, MariaDB and SQLite
//! — claim order, idempotency under concurrency, many claimers over one queue, leases,
//! dead tasks, transactions, listing, deletion and workflows.
//!
//! Every test body is an `async fn(Provider)`, instantiated once per provider by the
//! `conformance!` macro at the end (`postgres::*`, `mariadb::*`, `sqlite::*`), with the
//! fixture of `common/mod.rs`: a random table prefix per test, tables dropped at the end,
//! `DBC_TEST_PG_URL` / `DBC_TEST_MARIADB_URL` for the servers (an unreachable server
//! fails the test, nothing is skipped).

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use dbc_core::connector::OpOptions;
use dbc_core::db::QueryOutput;
use dbc_core::value::Param;
use dbc_core::{DbcError, Provider};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Short retry backoff (10 ms, capped at 50 ms), so failed attempts come back quickly.
fn fast(cfg: &mut Json) {
    cfg["retryBackoffMs"] = json!(10);
    cfg["retryBackoffMaxMs"] = json!(50);
}

/// `claimTasks` that must succeed; the claimed tasks.
async fn claim(db: &Db, queue: &str, limit: i64, worker: &str, lease_ms: i64) -> Vec<Json> {
    let out = db
        .op(
            "claimTasks",
            json!({"queue": queue, "limit": limit, "workerId": worker, "leaseMs": lease_ms}),
        )
        .await;
    let list = out
        .as_array()
        .unwrap_or_else(|| panic!("claimTasks gives an array, got {out}"))
        .clone();
    for t in &list {
        assert_eq!(s(t, "status"), "running", "{t}");
        assert_eq!(s(t, "workerId"), worker, "{t}");
        assert_eq!(s(t, "queue"), queue, "{t}");
    }
    list
}

/// Polls `claimTasks` (limit 1) until it returns a task, or panics after `within`.
async fn claim_when_due(db: &Db, queue: &str, worker: &str, within: Duration) -> Json {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = claim(db, queue, 1, worker, 60_000).await.pop() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] nothing claimable in {queue} within {within:?}",
            db.p
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ids(list: &[Json]) -> Vec<String> {
    list.iter().map(|t| s(t, "id").to_string()).collect()
}

fn names(list: &[Json]) -> Vec<String> {
    list.iter().map(|t| s(t, "name").to_string()).collect()
}

/// `(attempt, status, workerId)` of every row of a task's history.
fn history(task: &Json) -> Vec<(i64, String, Option<String>)> {
    task["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {task}"))
        .iter()
        .map(|h| {
            (
                i(h, "attempt"),
                s(h, "status").to_string(),
                h["workerId"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn h(attempt: i64, status: &str, worker: &str) -> (i64, String, Option<String>) {
    (attempt, status.to_string(), Some(worker.to_string()))
}

/// `SELECT count(*) FROM <prefix><table> WHERE <column> = value`.
async fn count_where(db: &Db, table: &str, column: &str, value: &str) -> i64 {
    db.count(
        &db.t(table),
        &format!("WHERE {column} = {}", db.ph(1)),
        vec![Param::Text(value.to_string())],
    )
    .await
}

/// Every row of the connector's tables and of `extra`, each in a fixed order.
async fn dump(db: &Db, extra: &[(&str, &str)]) -> Vec<(String, QueryOutput)> {
    let mut tables: Vec<(String, &str)> = [
        ("workflows", "id"),
        ("tasks", "id"),
        ("task_dependencies", "task_id, depends_on"),
        ("task_executions", "task_id, attempt"),
        ("error_logs", "id"),
    ]
    .iter()
    .map(|(t, order)| (db.t(t), *order))
    .collect();
    tables.extend(extra.iter().map(|(t, order)| (t.to_string(), *order)));
    let mut out = Vec::new();
    for (table, order) in tables {
        let rows = db
            .sql(&format!("SELECT * FROM {table} ORDER BY {order}"), vec![])
            .await;
        out.push((table, rows));
    }
    out
}

#[track_caller]
fn assert_same_dump(before: &[(String, QueryOutput)], after: &[(String, QueryOutput)], what: &str) {
    assert_eq!(before.len(), after.len());
    for ((table, b), (_, a)) in before.iter().zip(after) {
        assert_eq!(b.columns, a.columns, "{what}: columns of {table}");
        assert_eq!(b.rows, a.rows, "{what}: {table} changed");
    }
}

/// The failing step's index and its error, from a `DBC_TRANSACTION` failure.
#[track_caller]
fn transaction_error(e: &DbcError) -> (usize, &DbcError) {
    match e {
        DbcError::Transaction { index, source } => (*index, source),
        other => panic!("expected DBC_TRANSACTION, got {}: {other}", other.code()),
    }
}

// ---------------------------------------------------------------------------------------
// 1. Claim order, due time, dependencies
// ---------------------------------------------------------------------------------------

async fn claim_order(p: Provider) {
    with_db_cfg(p, fast, |db| async move {
        let now = chrono::Utc::now().timestamp_millis();
        let ago = |secs: i64| now - secs * 1000;
        // (name, priority, runAt); "d", "e", "g" tie on priority and runAt: id decides
        let spec = [
            ("a", 5, ago(10)),
            ("g", 1, ago(30)),
            ("b", 5, ago(20)),
            ("c", 10, ago(5)),
            ("e", 1, ago(30)),
            ("f", 0, ago(60)),
            ("d", 1, ago(30)),
        ];
        let mut expected_by_queue = Vec::new();
        for queue in ["one-by-one", "all-at-once"] {
            let input: Vec<Json> = spec
                .iter()
                .map(|(n, pr, at)| json!({"queue": queue, "name": n, "priority": pr, "runAt": at}))
                .collect();
            let stored = db.insert_task(Json::Array(input)).await;
            let mut stored = stored.as_array().unwrap().clone();
            // expected: priority DESC, then runAt, then id
            stored.sort_by(|x, y| {
                i(y, "priority")
                    .cmp(&i(x, "priority"))
                    .then(time_of(x, "runAt").cmp(&time_of(y, "runAt")))
                    .then(s(x, "id").cmp(s(y, "id")))
            });
            let expected = ids(&stored);
            let tie: Vec<String> = names(&stored)[3..6].to_vec();
            let mut sorted_tie = tie.clone();
            sorted_tie.sort();
            assert_eq!(names(&stored)[..3], ["c", "b", "a"]);
            assert_eq!(sorted_tie, ["d", "e", "g"]);
            assert_eq!(names(&stored)[6], "f");
            expected_by_queue.push(expected);
        }
        // a task with the highest priority, due in 2 s
        let due_at = chrono::Utc::now().timestamp_millis() + 2000;
        let future = db
            .insert_task(json!({"queue": "one-by-one", "name": "future", "priority": 1000, "runAt": due_at}))
            .await;

        // one at a time: each claim takes the next in order; the future task waits
        let mut got = Vec::new();
        for _ in 0..7 {
            let c = claim(&db, "one-by-one", 1, "w", 60_000).await;
            assert_eq!(c.len(), 1, "{c:?}");
            assert_eq!(i(&c[0], "attempts"), 1);
            got.extend(ids(&c));
        }
        assert_eq!(got, expected_by_queue[0], "claim order: priority, runAt, id");
        assert!(
            chrono::Utc::now().timestamp_millis() < due_at - 200,
            "the claims took too long to test the due time"
        );
        let c = claim(&db, "one-by-one", 10, "w", 60_000).await;
        assert!(c.is_empty(), "a task is not claimed before its runAt: {c:?}");
        let t = claim_when_due(&db, "one-by-one", "w", Duration::from_secs(5)).await;
        let claimed_at = chrono::Utc::now().timestamp_millis();
        assert_eq!(t["id"], future["id"]);
        assert!(claimed_at >= due_at, "claimed {} ms early", due_at - claimed_at);
        assert!(
            claimed_at < due_at + 1500,
            "claimed {} ms after it was due",
            claimed_at - due_at
        );

        // all at once: the array comes in claim order
        let c = claim(&db, "all-at-once", 100, "w", 60_000).await;
        assert_eq!(ids(&c), expected_by_queue[1]);
        assert!(claim(&db, "all-at-once", 100, "w", 60_000).await.is_empty());

        // a dependency holds its dependent back, however high its priority
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "deps", "tasks": [
                    {"key": "first", "name": "first", "queue": "deps"},
                    {"key": "second", "name": "second", "queue": "deps", "priority": 100, "dependsOn": ["first"]},
                ]}),
            )
            .await;
        let (first, second) = (&wf["tasks"][0], &wf["tasks"][1]);
        let c = claim(&db, "deps", 10, "w", 60_000).await;
        assert_eq!(ids(&c), [s(first, "id")], "only the dependency is claimable");
        assert!(
            claim(&db, "deps", 10, "w", 60_000).await.is_empty(),
            "the dependent waits while its dependency runs"
        );
        // a failed attempt with attempts left does not release it either
        db.set_status(json!({"id": first["id"], "status": "failed", "workerId": "w", "error": "x"}))
            .await;
        let again = claim_when_due(&db, "deps", "w", Duration::from_secs(5)).await;
        assert_eq!(again["id"], first["id"], "the retry comes back, not the dependent");
        assert!(claim(&db, "deps", 10, "w", 60_000).await.is_empty());
        db.set_status(json!({"id": first["id"], "status": "completed", "workerId": "w"}))
            .await;
        let c = claim(&db, "deps", 10, "w", 60_000).await;
        assert_eq!(ids(&c), [s(second, "id")], "completing the dependency releases it");
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 2. Idempotency under concurrency
// ---------------------------------------------------------------------------------------

async fn idempotency_16_concurrent(p: Provider) {
    with_db(p, |db| async move {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|n| {
                let conn = db.conn.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    conn.execute(
                        "insertTask",
                        json!({"queue": "idem", "name": format!("racer-{n}"), "payload": {"n": n}, "idempotencyKey": "k-16"}),
                        &OpOptions::default(),
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            match h.await.expect("an insert panicked") {
                Ok(o) => results.push(json_of(o)),
                Err(f) => panic!("[{}] a concurrent insert failed: {} {}", db.p, f.error.code(), f.error),
            }
        }
        let dedup = results
            .iter()
            .filter(|r| r.get("deduplicated") == Some(&json!(true)))
            .count();
        assert_eq!(dedup, 15, "15 of 16 say deduplicated: {results:?}");
        let first: Vec<&Json> = results.iter().filter(|r| r.get("deduplicated").is_none()).collect();
        assert_eq!(first.len(), 1, "{results:?}");
        let id = s(first[0], "id");
        assert_uuid_v7(id);
        for r in &results {
            assert_eq!(s(r, "id"), id, "every result has the stored id: {results:?}");
            // the stored task is returned: the winner's name and payload
            assert_eq!(r["name"], first[0]["name"]);
            assert_eq!(r["payload"], first[0]["payload"]);
            assert_eq!(s(r, "idempotencyKey"), "k-16");
        }
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 1);
        assert_eq!(count_where(&db, "tasks", "idempotency_key", "k-16").await, 1);
        let stored = db.get_task(id).await;
        assert_eq!(stored["name"], first[0]["name"]);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 3. Many claimers over one queue
// ---------------------------------------------------------------------------------------

const BULK: usize = 10_000;
const CLAIMERS: usize = 8;

async fn concurrent_claimers(p: Provider) {
    with_db(p, |db| async move {
        let t0 = Instant::now();
        let mut inserted = HashSet::new();
        for batch in 0..BULK / 1000 {
            let input: Vec<Json> = (0..1000)
                .map(|k| {
                    let n = batch * 1000 + k;
                    json!({"queue": "bulk", "name": format!("t{n}"), "payload": {"n": n}, "priority": n % 3})
                })
                .collect();
            let out = db.insert_task(Json::Array(input)).await;
            let out = out.as_array().expect("an array in, an array out");
            assert_eq!(out.len(), 1000);
            inserted.extend(ids(out));
        }
        assert_eq!(inserted.len(), BULK);
        let insert_time = t0.elapsed();

        let t1 = Instant::now();
        let handles: Vec<_> = (0..CLAIMERS)
            .map(|w| {
                let conn = db.conn.clone();
                let provider = db.p;
                tokio::spawn(async move {
                    let worker = format!("claimer-{w}");
                    let opts = OpOptions::default();
                    let run = |op: &'static str, payload: Json| {
                        let conn = conn.clone();
                        let opts = opts.clone();
                        async move {
                            match conn.execute(op, payload.clone(), &opts).await {
                                Ok(o) => json_of(o),
                                Err(f) => panic!(
                                    "[{provider}] {op} {payload}: {} {}",
                                    f.error.code(),
                                    f.error
                                ),
                            }
                        }
                    };
                    let mut mine = Vec::new();
                    let mut empty_but_pending = 0u32;
                    loop {
                        let claimed = run(
                            "claimTasks",
                            json!({"queue": "bulk", "limit": 50, "leaseMs": 300000, "workerId": worker}),
                        )
                        .await;
                        let claimed = claimed.as_array().expect("an array").clone();
                        if claimed.is_empty() {
                            // SKIP LOCKED may pass over rows another claim holds: stop only
                            // when nothing is pending any more
                            let left = run(
                                "listTasks",
                                json!({"queue": "bulk", "status": "pending", "limit": 1}),
                            )
                            .await;
                            if left["tasks"].as_array().is_none_or(|t| t.is_empty()) {
                                break;
                            }
                            empty_but_pending += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                        for t in &claimed {
                            assert_eq!(s(t, "status"), "running");
                            assert_eq!(s(t, "workerId"), worker);
                            assert_eq!(i(t, "attempts"), 1, "claimed twice: {t}");
                            let id = s(t, "id").to_string();
                            let done = run(
                                "updateTaskStatus",
                                json!({"id": id, "status": "completed", "workerId": worker, "result": {"by": worker}}),
                            )
                            .await;
                            assert_eq!(s(&done, "status"), "completed");
                            mine.push(id);
                        }
                    }
                    (mine, empty_but_pending)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(BULK);
        let mut per_claimer = Vec::new();
        let mut spurious = 0;
        for h in handles {
            let (mine, empty) = h.await.expect("a claimer panicked");
            per_claimer.push(mine.len());
            spurious += empty;
            all.extend(mine);
        }
        let work_time = t1.elapsed();
        eprintln!(
            "[{}] {BULK} tasks: insert {:.1} s, {CLAIMERS} claimers claimed and completed them in {:.1} s \
             (per claimer {per_claimer:?}; empty claims while tasks were pending: {spurious})",
            db.p,
            insert_time.as_secs_f64(),
            work_time.as_secs_f64()
        );
        assert_eq!(all.len(), BULK, "every task claimed exactly once");
        let unique: HashSet<String> = all.iter().cloned().collect();
        assert_eq!(unique.len(), BULK, "no task claimed twice");
        assert_eq!(unique, inserted, "the claimed tasks are the inserted ones");
        let tasks = db.t("tasks");
        for (status, n) in [("running", 0), ("pending", 0), ("completed", BULK as i64)] {
            assert_eq!(count_where(&db, "tasks", "status", status).await, n, "{status}");
        }
        assert_eq!(db.count(&tasks, "WHERE attempts <> 1", vec![]).await, 0);
        let te = db.t("task_executions");
        assert_eq!(db.count(&te, "", vec![]).await, BULK as i64);
        assert_eq!(count_where(&db, "task_executions", "status", "completed").await, BULK as i64);
        assert_eq!(db.count(&db.t("error_logs"), "", vec![]).await, 0);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 4. Lease expiry
// ---------------------------------------------------------------------------------------

async fn lease_expiry(p: Provider) {
    with_db_cfg(p, fast, |db| async move {
        let t = db.insert_task(json!({"queue": "lease", "name": "slow"})).await;
        let id = s(&t, "id").to_string();
        let last = db
            .insert_task(json!({"queue": "lease-last", "name": "last", "maxAttempts": 1}))
            .await;
        let last_id = s(&last, "id").to_string();
        let before_claim = Instant::now();
        let c = claim(&db, "lease", 1, "w1", 1000).await;
        assert_eq!(ids(&c), [id.as_str()]);
        assert_eq!(i(&c[0], "attempts"), 1);
        let lease = time_of(&c[0], "leaseExpiresAt");
        let started = time_of(&c[0], "startedAt");
        let lease_ms = (lease - started).num_milliseconds();
        assert!((1000..=1100).contains(&lease_ms), "lease of {lease_ms} ms");
        claim(&db, "lease-last", 1, "w1", 1000).await;

        // nobody answers: within lease + 1 s the task is pending again
        let deadline = before_claim + Duration::from_millis(2500);
        let back = wait_for_status(&db, &id, "pending", deadline).await;
        let after = before_claim.elapsed();
        assert!(after >= Duration::from_millis(1000), "back to pending after {after:?}, before the lease ended");
        assert_eq!(i(&back, "attempts"), 1);
        assert_eq!(back["workerId"], Json::Null);
        assert_eq!(back["leaseExpiresAt"], Json::Null);
        assert_eq!(s(&back, "lastError"), "lease expired");
        assert_eq!(history(&back), [h(1, "lease_expired", "w1")]);
        time_of(&back["history"][0], "finishedAt");
        // the last attempt expiring leaves the task failed
        let dead = wait_for_status(&db, &last_id, "failed", deadline).await;
        assert_eq!(i(&dead, "attempts"), 1);
        assert_eq!(s(&dead, "lastError"), "lease expired");
        time_of(&dead, "finishedAt");
        assert_eq!(history(&dead), [h(1, "lease_expired", "w1")]);
        assert!(claim(&db, "lease-last", 1, "w2", 1000).await.is_empty());

        // the old worker reports late, before anyone else claimed the task
        let before = db.get_task(&id).await;
        for status in ["completed", "failed"] {
            let f = db
                .op_err(
                    "updateTaskStatus",
                    json!({"id": id, "status": status, "workerId": "w1", "result": "late", "error": "late"}),
                )
                .await;
            assert_code(&f, "DBC_LEASE_LOST");
            assert!(!f.error.is_retryable());
        }
        assert_eq!(db.get_task(&id).await, before, "a lost lease changes nothing");

        // the next claim is attempt 2
        let c = claim(&db, "lease", 1, "w2", 60_000).await;
        assert_eq!(ids(&c), [id.as_str()]);
        assert_eq!(i(&c[0], "attempts"), 2);
        let g = db.get_task(&id).await;
        assert_eq!(history(&g), [h(1, "lease_expired", "w1"), h(2, "running", "w2")]);

        // the old worker reports late, after w2 claimed it: DBC_LEASE_LOST (docs/ERRORS.md:
        // "whose lease belongs to another worker"), not DBC_INVALID_TRANSITION
        let before = db.get_task(&id).await;
        for status in ["completed", "failed", "pending", "cancelled"] {
            let f = db
                .op_err(
                    "updateTaskStatus",
                    json!({"id": id, "status": status, "workerId": "w1", "result": "late"}),
                )
                .await;
            assert_code(&f, "DBC_LEASE_LOST");
        }
        assert_eq!(db.get_task(&id).await, before, "a lost lease changes nothing");
        let done = db
            .set_status(json!({"id": id, "status": "completed", "workerId": "w2", "result": "ok"}))
            .await;
        assert_eq!(s(&done, "status"), "completed");
        assert_eq!(i(&done, "attempts"), 2);
        let g = db.get_task(&id).await;
        assert_eq!(history(&g), [h(1, "lease_expired", "w1"), h(2, "completed", "w2")]);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 5. Dead tasks and requeue
// ---------------------------------------------------------------------------------------

async fn dead_task_and_requeue(p: Provider) {
    with_db_cfg(p, fast, |db| async move {
        let t = db
            .insert_task(json!({"queue": "dead", "name": "doomed", "maxAttempts": 3}))
            .await;
        let id = s(&t, "id").to_string();
        for attempt in 1..=3 {
            let c = claim_when_due(&db, "dead", "w", Duration::from_secs(5)).await;
            assert_eq!(s(&c, "id"), id);
            assert_eq!(i(&c, "attempts"), attempt);
            let r = db
                .set_status(json!({"id": id, "status": "failed", "workerId": "w",
                    "error": {"message": format!("boom {attempt}"), "code": "E_BOOM"}}))
                .await;
            assert_eq!(i(&r, "attempts"), attempt);
            assert_eq!(s(&r, "lastError"), format!("boom {attempt}"));
            if attempt < 3 {
                assert_eq!(s(&r, "status"), "pending", "attempt {attempt} of 3: {r}");
                assert_eq!(r["finishedAt"], Json::Null);
            } else {
                assert_eq!(s(&r, "status"), "failed", "the last attempt: {r}");
                time_of(&r, "finishedAt");
            }
        }
        // dead: never claimed again, however long one waits past the backoff cap
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(claim(&db, "dead", 10, "w", 60_000).await.is_empty());
        let g = db.get_task(&id).await;
        assert_eq!(s(&g, "status"), "failed");
        assert_eq!(i(&g, "attempts"), 3);
        assert_eq!(
            history(&g),
            [
                h(1, "failed", "w"),
                h(2, "failed", "w"),
                h(3, "failed", "w")
            ]
        );
        let errors = g["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 3, "{g}");
        for (n, e) in errors.iter().enumerate() {
            assert_eq!(i(e, "attempt"), n as i64 + 1);
            assert_eq!(s(e, "code"), "E_BOOM");
            assert_eq!(s(e, "message"), format!("boom {}", n + 1));
        }
        assert_eq!(count_where(&db, "error_logs", "task_id", &id).await, 3);

        // requeue: pending now, with a fresh budget; attempts continue at 4
        let r = db.op("requeueFailedTask", json!({"id": id})).await;
        assert_eq!(s(&r, "status"), "pending", "{r}");
        assert_eq!(i(&r, "attempts"), 3);
        assert_eq!(i(&r, "maxAttempts"), 6, "a fresh budget of 3 more attempts");
        assert_eq!(r["finishedAt"], Json::Null);
        assert!(time_of(&r, "runAt") <= chrono::Utc::now());
        let c = claim(&db, "dead", 10, "w2", 60_000).await;
        assert_eq!(ids(&c), [id.as_str()], "claimable again at once");
        assert_eq!(i(&c[0], "attempts"), 4);
        let g = db.get_task(&id).await;
        assert_eq!(
            history(&g),
            [
                h(1, "failed", "w"),
                h(2, "failed", "w"),
                h(3, "failed", "w"),
                h(4, "running", "w2")
            ]
        );

        // only a failed task can be requeued
        let before = db.get_task(&id).await;
        let f = db.op_err("requeueFailedTask", json!({"id": id})).await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        assert_eq!(db.get_task(&id).await, before, "running: nothing changes");
        db.set_status(json!({"id": id, "status": "completed", "workerId": "w2"}))
            .await;
        let f = db.op_err("requeueFailedTask", json!({"id": id})).await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        assert_eq!(s(&db.get_task(&id).await, "status"), "completed");
        let pending = db
            .insert_task(json!({"queue": "dead", "name": "fresh"}))
            .await;
        let f = db
            .op_err("requeueFailedTask", json!({"id": pending["id"]}))
            .await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        let cancelled = db
            .insert_task(json!({"queue": "dead", "name": "gone"}))
            .await;
        db.set_status(json!({"id": cancelled["id"], "status": "cancelled"}))
            .await;
        let f = db
            .op_err("requeueFailedTask", json!({"id": cancelled["id"]}))
            .await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        let f = db
            .op_err(
                "requeueFailedTask",
                json!({"id": uuid::Uuid::now_v7().to_string()}),
            )
            .await;
        assert_code(&f, "DBC_NOT_FOUND");
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 6. executeTransaction
// ---------------------------------------------------------------------------------------

async fn transaction_all_or_nothing(p: Provider) {
    with_db_cfg(p, fast, |db| async move {
        let ledger = db
            .user_table("ledger", &format!("{}, label VARCHAR(50) NOT NULL, amount INTEGER NOT NULL", db.serial_id()))
            .await;
        let (p1, p2) = (db.ph(1), db.ph(2));
        for (label, amount) in [("opening", 100), ("fee", -5)] {
            db.sql(
                &format!("INSERT INTO {ledger} (label, amount) VALUES ({p1}, {p2})"),
                vec![Param::Text(label.into()), Param::Int(amount)],
            )
            .await;
        }
        // some state in every task table: a workflow with a dependency, a task with a
        // failed attempt (history + error log), a running task
        db.op(
            "createWorkflow",
            json!({"name": "pre", "tasks": [{"key": "a", "queue": "pre"}, {"key": "b", "queue": "pre", "dependsOn": ["a"]}]}),
        )
        .await;
        let flaky = db.insert_task(json!({"queue": "tx", "name": "flaky", "maxAttempts": 5})).await;
        claim(&db, "tx", 1, "w", 60_000).await;
        db.set_status(json!({"id": flaky["id"], "status": "failed", "workerId": "w", "error": "once"})).await;
        let running = db.insert_task(json!({"queue": "tx-run", "name": "running"})).await;
        let rid = s(&running, "id").to_string();
        claim(&db, "tx-run", 1, "w", 60_000).await;
        let extra = [(ledger.as_str(), "id")];
        let before = dump(&db, &extra).await;
        let unknown = uuid::Uuid::now_v7().to_string();

        let failing = [
            (
                "insertTask, INSERT, updateTaskStatus of an unknown id",
                json!([
                    {"operation": "insertTask", "payload": {"queue": "tx", "name": "never", "idempotencyKey": "tx-never"}},
                    {"operation": "query", "payload": {"sql": format!("INSERT INTO {ledger} (label, amount) VALUES ({p1}, {p2})"), "params": ["never", 1]}},
                    {"operation": "updateTaskStatus", "payload": {"id": unknown, "status": "completed"}},
                ]),
                "DBC_NOT_FOUND",
            ),
            (
                "updateTaskStatus, UPDATE, a syntax error",
                json!([
                    {"operation": "updateTaskStatus", "payload": {"id": rid, "status": "completed", "workerId": "w", "result": 1}},
                    {"operation": "query", "payload": {"sql": format!("UPDATE {ledger} SET amount = amount + 1000")}},
                    {"operation": "query", "payload": {"sql": "SELEC nonsense FROM nowhere"}},
                ]),
                "DBC_QUERY",
            ),
            (
                "createWorkflow, claimTasks, deleteTask of a running task",
                json!([
                    {"operation": "createWorkflow", "payload": {"name": "never", "tasks": [{"queue": "tx", "name": "wf-never"}]}},
                    {"operation": "claimTasks", "payload": {"queue": "tx", "limit": 10, "workerId": "tx"}},
                    {"operation": "deleteTask", "payload": {"id": rid}},
                ]),
                "DBC_INVALID_TRANSITION",
            ),
            (
                "two valid steps, then an operation a transaction cannot run",
                json!([
                    {"operation": "insertTask", "payload": {"queue": "tx", "name": "never"}},
                    {"operation": "query", "payload": {"sql": format!("DELETE FROM {ledger}")}},
                    {"operation": "executeTransaction", "payload": []},
                ]),
                "DBC_VALIDATION",
            ),
        ];
        for (what, steps, inner) in failing {
            let f = db.op_err("executeTransaction", steps).await;
            assert_code(&f, "DBC_TRANSACTION");
            let (index, source) = transaction_error(&f.error);
            assert_eq!(index, 2, "{what}: {}", f.error);
            assert_eq!(source.code(), inner, "{what}: {source}");
            let after = dump(&db, &extra).await;
            assert_same_dump(&before, &after, what);
        }

        // a successful transaction: one result per step, all applied
        let out = db
            .op(
                "executeTransaction",
                json!([
                    {"operation": "insertTask", "payload": {"queue": "tx", "name": "made", "idempotencyKey": "tx-made"}},
                    {"operation": "query", "payload": {"sql": format!("INSERT INTO {ledger} (label, amount) VALUES ({p1}, {p2})"), "params": ["made", 7]}},
                    {"operation": "updateTaskStatus", "payload": {"id": rid, "status": "completed", "workerId": "w", "result": {"ok": true}}},
                    {"operation": "getTask", "payload": {"id": rid}},
                ]),
            )
            .await;
        let results = out.as_array().unwrap_or_else(|| panic!("an array of results: {out}"));
        assert_eq!(results.len(), 4, "{out}");
        assert_eq!(s(&results[0], "name"), "made");
        assert_eq!(s(&results[0], "status"), "pending");
        assert_eq!(i(&results[1], "rowCount"), 1, "{}", results[1]);
        assert_eq!(s(&results[2], "status"), "completed");
        assert_eq!(s(&results[3], "status"), "completed", "a later step sees an earlier one");
        assert_eq!(history(&results[3]), [h(1, "completed", "w")]);
        // applied, and visible outside
        let made = db.get_task(s(&results[0], "id")).await;
        assert_eq!(s(&made, "idempotencyKey"), "tx-made");
        let g = db.get_task(&rid).await;
        assert_eq!(s(&g, "status"), "completed");
        assert_eq!(g["result"], json!({"ok": true}));
        let rows = db
            .sql(&format!("SELECT label, amount FROM {ledger} ORDER BY id"), vec![])
            .await;
        assert_eq!(
            rows.rows,
            [
                [dbc_core::value::Value::Text("opening".into()), dbc_core::value::Value::Int(100)],
                [dbc_core::value::Value::Text("fee".into()), dbc_core::value::Value::Int(-5)],
                [dbc_core::value::Value::Text("made".into()), dbc_core::value::Value::Int(7)],
            ]
        );
        assert_eq!(count_where(&db, "tasks", "queue", "tx").await, 2, "flaky and made");
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 7. listTasks
// ---------------------------------------------------------------------------------------

async fn list_tasks_filters_and_pages(p: Provider) {
    with_db(p, |db| async move {
        let la = db
            .insert_task(Json::Array((0..5).map(|n| json!({"queue": "la", "name": format!("la{n}")})).collect()))
            .await;
        let mut la_ids = ids(la.as_array().unwrap());
        la_ids.sort();
        db.insert_task(json!([{"queue": "lb", "name": "lb0"}, {"queue": "lb", "name": "lb1"}]))
            .await;
        let wf = db
            .op("createWorkflow", json!({"name": "lw", "tasks": [{"queue": "lw", "name": "w0"}, {"queue": "la", "name": "w1"}]}))
            .await;
        let wf_id = s(&wf, "id").to_string();
        // one "la" task completed, one failed for good
        db.set_status(json!({"id": la_ids[1], "status": "completed"})).await;
        let dies = db.insert_task(json!({"queue": "la", "name": "dies", "maxAttempts": 1})).await;
        db.set_status(json!({"id": dies["id"], "status": "running", "workerId": "w"})).await;
        let dead = db.set_status(json!({"id": dies["id"], "status": "failed", "workerId": "w"})).await;
        assert_eq!(s(&dead, "status"), "failed");

        let list = |filter: Json| {
            let db = db.clone();
            async move {
                let page = db.op("listTasks", filter).await;
                assert!(page.get("next").is_some(), "next is always there: {page}");
                let tasks = page["tasks"].as_array().unwrap_or_else(|| panic!("{page}")).clone();
                (tasks, page["next"].clone())
            }
        };
        let (all, next) = list(json!({})).await;
        assert_eq!(all.len(), 10);
        assert_eq!(next, Json::Null);
        let all_ids = ids(&all);
        let mut sorted = all_ids.clone();
        sorted.sort();
        assert_eq!(all_ids, sorted, "oldest id first");

        let (t, _) = list(json!({"queue": "la"})).await;
        assert_eq!(t.len(), 7, "5 + the workflow's w1 + dies");
        assert!(t.iter().all(|t| s(t, "queue") == "la"));
        let (t, _) = list(json!({"queue": "la", "status": "pending"})).await;
        assert_eq!(names(&t), ["la0", "la2", "la3", "la4", "w1"]);
        assert!(t.iter().all(|t| s(t, "status") == "pending" && s(t, "queue") == "la"));
        let (t, _) = list(json!({"queue": "la", "status": "completed"})).await;
        assert_eq!(ids(&t), [la_ids[1].clone()]);
        let (t, _) = list(json!({"status": "failed"})).await;
        assert_eq!(names(&t), ["dies"]);
        let (t, _) = list(json!({"status": "running"})).await;
        assert!(t.is_empty());
        let (t, _) = list(json!({"workflowId": wf_id})).await;
        let mut wnames = names(&t);
        wnames.sort();
        assert_eq!(wnames, ["w0", "w1"]);
        assert!(t.iter().all(|t| s(t, "workflowId") == wf_id));
        let (t, _) = list(json!({"workflowId": wf_id, "queue": "la"})).await;
        assert_eq!(names(&t), ["w1"]);
        let (t, _) = list(json!({"queue": "nope"})).await;
        assert!(t.is_empty());
        // name: exactly that name (case and all), with the other filters and the cursor
        let (t, _) = list(json!({"name": "la2"})).await;
        assert_eq!(names(&t), ["la2"]);
        let (t, _) = list(json!({"name": "dies", "status": "failed", "queue": "la"})).await;
        assert_eq!(ids(&t), [s(&dead, "id").to_string()]);
        let (t, _) = list(json!({"name": "dies", "status": "pending"})).await;
        assert!(t.is_empty());
        // case: as the database compares text (MariaDB's default collation ignores it)
        let upper = names(&list(json!({"name": "LA2"})).await.0);
        if p == Provider::Mariadb {
            assert_eq!(upper, ["la2"]);
        } else {
            assert!(upper.is_empty(), "{upper:?}");
        }
        assert!(list(json!({"name": "la"})).await.0.is_empty(), "no prefix match");

        // keyset pagination over the 7 "la" tasks, limit 2
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut after = Json::Null;
        loop {
            let mut filter = json!({"queue": "la", "limit": 2});
            if !after.is_null() {
                filter["after"] = after.clone();
            }
            let (t, next) = list(filter).await;
            sizes.push(t.len());
            seen.extend(ids(&t));
            if next.is_null() {
                break;
            }
            assert_eq!(next, json!(s(t.last().unwrap(), "id")), "next is the last id of the page");
            after = next;
            assert!(sizes.len() < 10, "pagination does not end");
        }
        // 7 tasks in "la": 2, 2, 2, 1
        assert_eq!(sizes, [2, 2, 2, 1]);
        let uniq: HashSet<&String> = seen.iter().collect();
        assert_eq!(uniq.len(), seen.len(), "no duplicates across pages");
        let mut expect: Vec<String> = ids(&list(json!({"queue": "la"})).await.0);
        expect.sort();
        assert_eq!(seen, expect, "the pages together, in id order");

        // exactly 5 over limit 2 (queue "lp"): pages 2, 2, 1, next null at the end
        db.insert_task(Json::Array((0..5).map(|n| json!({"queue": "lp", "name": format!("lp{n}")})).collect()))
            .await;
        let (p1, n1) = list(json!({"queue": "lp", "limit": 2})).await;
        let (p2, n2) = list(json!({"queue": "lp", "limit": 2, "after": n1})).await;
        let (p3, n3) = list(json!({"queue": "lp", "limit": 2, "after": n2})).await;
        assert_eq!((p1.len(), p2.len(), p3.len()), (2, 2, 1));
        assert!(!n1.is_null() && !n2.is_null());
        assert_eq!(n3, Json::Null, "no next after the last page");
        let all_lp: Vec<String> = [ids(&p1), ids(&p2), ids(&p3)].concat();
        assert_eq!(all_lp.iter().collect::<HashSet<_>>().len(), 5);
        assert_eq!(names(&[p1, p2, p3].concat()), ["lp0", "lp1", "lp2", "lp3", "lp4"]);
        // a full last page: limit 5 over 5 → next null
        let (t, next) = list(json!({"queue": "lp", "limit": 5})).await;
        assert_eq!((t.len(), next), (5, Json::Null));

        // bad filters
        assert_validation(&db.op_err("listTasks", json!({"status": "done"})).await, "status");
        assert_validation(&db.op_err("listTasks", json!({"status": "Pending"})).await, "status");
        assert_validation(&db.op_err("listTasks", json!({"limit": 0})).await, "limit");
        assert_validation(&db.op_err("listTasks", json!({"limit": 1001})).await, "limit");
        assert_validation(&db.op_err("listTasks", json!({"after": "x"})).await, "after");
        assert_validation(&db.op_err("listTasks", json!({"workflowId": 5})).await, "workflowId");
        assert_validation(&db.op_err("listTasks", json!({"sort": "id"})).await, "sort");
        assert_validation(&db.op_err("listTasks", json!({"name": 5})).await, "name");
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 8. deleteTask
// ---------------------------------------------------------------------------------------

async fn delete_task(p: Provider) {
    with_db_cfg(p, fast, |db| async move {
        // a running task cannot be deleted
        let r = db
            .insert_task(json!({"queue": "del-run", "name": "busy"}))
            .await;
        claim(&db, "del-run", 1, "w", 60_000).await;
        let before = db.get_task(s(&r, "id")).await;
        let f = db.op_err("deleteTask", json!({"id": r["id"]})).await;
        assert_code(&f, "DBC_INVALID_TRANSITION");
        assert_eq!(
            db.get_task(s(&r, "id")).await,
            before,
            "still there, unchanged"
        );

        // a pending task with history and error rows
        let t = db
            .insert_task(json!({"queue": "del", "name": "victim", "maxAttempts": 3}))
            .await;
        let id = s(&t, "id").to_string();
        claim(&db, "del", 1, "w", 60_000).await;
        let back = db
            .set_status(
                json!({"id": id, "status": "failed", "workerId": "w", "error": "first try"}),
            )
            .await;
        assert_eq!(s(&back, "status"), "pending");
        // a bystander with history and errors of its own
        let other = db
            .insert_task(json!({"queue": "del-other", "name": "bystander"}))
            .await;
        claim(&db, "del-other", 1, "w", 60_000).await;
        db.set_status(
            json!({"id": other["id"], "status": "failed", "workerId": "w", "error": "x"}),
        )
        .await;
        assert_eq!(count_where(&db, "task_executions", "task_id", &id).await, 1);
        assert_eq!(count_where(&db, "error_logs", "task_id", &id).await, 1);

        let out = db.op("deleteTask", json!({"id": id})).await;
        assert_eq!(out, json!({"id": id, "deleted": true}));
        assert_code(
            &db.op_err("getTask", json!({"id": id})).await,
            "DBC_NOT_FOUND",
        );
        assert_eq!(count_where(&db, "tasks", "id", &id).await, 0);
        assert_eq!(
            count_where(&db, "task_executions", "task_id", &id).await,
            0,
            "history goes with it"
        );
        assert_eq!(
            count_where(&db, "error_logs", "task_id", &id).await,
            0,
            "error rows go with it"
        );
        let o = s(&other, "id");
        assert_eq!(
            count_where(&db, "task_executions", "task_id", o).await,
            1,
            "others keep theirs"
        );
        assert_eq!(count_where(&db, "error_logs", "task_id", o).await, 1);
        // deleting again, or an id never seen
        assert_code(
            &db.op_err("deleteTask", json!({"id": id})).await,
            "DBC_NOT_FOUND",
        );
        let f = db
            .op_err(
                "deleteTask",
                json!({"id": uuid::Uuid::now_v7().to_string()}),
            )
            .await;
        assert_code(&f, "DBC_NOT_FOUND");
        assert_validation(&db.op_err("deleteTask", json!({"id": "nope"})).await, "id");

        // finished tasks can be deleted
        let done = db
            .insert_task(json!({"queue": "del", "name": "done"}))
            .await;
        db.set_status(json!({"id": done["id"], "status": "completed"}))
            .await;
        assert_eq!(
            db.op("deleteTask", json!({"id": done["id"]})).await["deleted"],
            json!(true)
        );

        // deleting a dependency releases the tasks that waited for it
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "d", "tasks": [
                    {"key": "dep", "queue": "del-wf", "name": "dep"},
                    {"key": "child", "queue": "del-wf", "name": "child", "dependsOn": ["dep"]},
                ]}),
            )
            .await;
        let dep = s(&wf["tasks"][0], "id").to_string();
        db.op("deleteTask", json!({"id": dep})).await;
        let c = claim(&db, "del-wf", 10, "w", 60_000).await;
        assert_eq!(names(&c), ["child"]);
        assert_eq!(db.count(&db.t("task_dependencies"), "", vec![]).await, 0);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// 9. Workflows
// ---------------------------------------------------------------------------------------

async fn progress(db: &Db, wf: &str) -> Json {
    db.op("getWorkflowProgress", json!({"workflowId": wf}))
        .await
}

#[track_caller]
fn assert_progress(p: &Json, status: &str, counts: [i64; 5], percent: f64) {
    assert_eq!(s(p, "status"), status, "{p}");
    let got = ["pending", "running", "completed", "failed", "cancelled"].map(|k| i(p, k));
    assert_eq!(
        got, counts,
        "pending, running, completed, failed, cancelled: {p}"
    );
    assert_eq!(i(p, "total"), counts.iter().sum::<i64>(), "{p}");
    let pc = p["percent"]
        .as_f64()
        .unwrap_or_else(|| panic!("percent in {p}"));
    assert!(
        (pc - percent).abs() < 0.051,
        "percent {pc}, expected {percent}: {p}"
    );
}

async fn workflows(p: Provider) {
    with_db(p, |db| async move {
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "etl", "metadata": {"owner": "ops"}, "tasks": [
                    {"key": "a", "name": "extract", "queue": "wf"},
                    {"key": "b", "name": "transform", "queue": "wf", "dependsOn": ["a"]},
                    {"key": "c", "name": "report", "queue": "wf", "dependsOn": [0]},
                ]}),
            )
            .await;
        let wf_id = s(&wf, "id").to_string();
        assert_uuid_v7(&wf_id);
        assert_eq!(s(&wf, "name"), "etl");
        assert_eq!(wf["metadata"], json!({"owner": "ops"}));
        let tasks = wf["tasks"].as_array().unwrap().clone();
        assert_eq!(tasks.iter().map(|t| s(t, "key")).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(tasks.iter().all(|t| s(t, "workflowId") == wf_id && s(t, "status") == "pending"));
        let [a, b, c] = [0, 1, 2].map(|n| s(&tasks[n], "id").to_string());
        assert_eq!(db.get_task(&b).await["dependsOn"], json!([a]));
        assert_eq!(db.get_task(&c).await["dependsOn"], json!([a]));
        assert_eq!(db.get_task(&a).await["dependsOn"], json!([]));

        let p0 = progress(&db, &wf_id).await;
        assert_progress(&p0, "pending", [3, 0, 0, 0, 0], 0.0);
        assert_eq!(s(&p0, "workflowId"), wf_id);
        assert_eq!(s(&p0, "name"), "etl");
        assert_eq!(p0["startedAt"], Json::Null);
        assert_eq!(p0["finishedAt"], Json::Null);

        let got = claim(&db, "wf", 10, "w", 60_000).await;
        assert_eq!(ids(&got), [a.as_str()], "b and c wait for a");
        let p1 = progress(&db, &wf_id).await;
        assert_progress(&p1, "running", [2, 1, 0, 0, 0], 0.0);
        time_of(&p1, "startedAt");
        assert_eq!(p1["finishedAt"], Json::Null);

        db.set_status(json!({"id": a, "status": "completed", "workerId": "w"})).await;
        let p2 = progress(&db, &wf_id).await;
        assert_progress(&p2, "running", [2, 0, 1, 0, 0], 33.3);
        assert_eq!(p2["finishedAt"], Json::Null, "not finished while tasks are left");

        let got = claim(&db, "wf", 10, "w", 60_000).await;
        let mut got_ids = ids(&got);
        got_ids.sort();
        let mut bc = vec![b.clone(), c.clone()];
        bc.sort();
        assert_eq!(got_ids, bc, "a done: b and c are claimable");
        assert_progress(&progress(&db, &wf_id).await, "running", [0, 2, 1, 0, 0], 33.3);
        db.set_status(json!({"id": b, "status": "completed", "workerId": "w"})).await;
        assert_progress(&progress(&db, &wf_id).await, "running", [0, 1, 2, 0, 0], 66.7);
        db.set_status(json!({"id": c, "status": "completed", "workerId": "w"})).await;
        let p3 = progress(&db, &wf_id).await;
        assert_progress(&p3, "completed", [0, 0, 3, 0, 0], 100.0);
        assert!(time_of(&p3, "finishedAt") >= time_of(&p3, "startedAt"));

        // unknown workflow, bad id
        let f = db
            .op_err("getWorkflowProgress", json!({"workflowId": uuid::Uuid::now_v7().to_string()}))
            .await;
        assert_code(&f, "DBC_NOT_FOUND");
        assert_validation(&db.op_err("getWorkflowProgress", json!({"workflowId": "x"})).await, "workflowId");

        // atomic: a bad task anywhere in the list leaves no workflow and no task behind
        let counts = |db: std::sync::Arc<Db>| async move {
            (
                db.count(&db.t("workflows"), "", vec![]).await,
                db.count(&db.t("tasks"), "", vec![]).await,
                db.count(&db.t("task_dependencies"), "", vec![]).await,
            )
        };
        let before = counts(db.clone()).await;
        assert_eq!(before, (1, 3, 2));
        let missing = uuid::Uuid::now_v7().to_string();
        let bad = [
            // found while parsing
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "priority": "high"}]), "tasks[1].priority"),
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "bogus": 1}]), "tasks[1].bogus"),
            (json!([{"key": "x", "queue": "bad"}, 5]), "tasks[1]"),
            // found by the database, after the workflow row and the first tasks were written
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "dependsOn": ["x", missing]}]), "dependsOn"),
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "dependsOn": [a]}]), "dependsOn"),
            // dependsOn may only name EARLIER tasks
            (json!([{"key": "x", "queue": "bad", "dependsOn": ["y"]}, {"key": "y", "queue": "bad"}]), "tasks[0].dependsOn[0]"),
            (json!([{"key": "x", "queue": "bad", "dependsOn": [1]}, {"key": "y", "queue": "bad"}]), "tasks[0].dependsOn[0]"),
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "dependsOn": [1]}]), "tasks[1].dependsOn[0]"),
            (json!([{"key": "x", "queue": "bad", "dependsOn": ["x"]}]), "tasks[0].dependsOn[0]"),
            (json!([{"key": "x", "queue": "bad"}, {"key": "y", "queue": "bad", "dependsOn": [-1]}]), "tasks[1].dependsOn[0]"),
            (json!([]), "tasks"),
        ];
        for (list, field) in bad {
            let f = db
                .op_err("createWorkflow", json!({"name": "broken", "tasks": list}))
                .await;
            assert_validation(&f, field);
            assert_eq!(counts(db.clone()).await, before, "nothing written for {list}");
        }
        assert!(claim(&db, "bad", 10, "w", 60_000).await.is_empty());
        assert_validation(&db.op_err("createWorkflow", json!({"tasks": [{"name": "x"}]})).await, "name");
    })
    .await
}

/// A dead dependency cancels everything downstream, so the workflow finishes as failed
/// instead of waiting forever; a cancelled one does the same.
async fn dead_dependency_cancels_dependents(p: Provider) {
    with_db(p, |db| async move {
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "chain", "tasks": [
                    {"key": "a", "queue": "dd", "maxAttempts": 1},
                    {"key": "b", "queue": "dd", "dependsOn": ["a"]},
                    {"key": "c", "queue": "dd", "dependsOn": ["b"]},
                    {"key": "x", "queue": "dd"},
                ]}),
            )
            .await;
        let wf_id = s(&wf, "id").to_string();
        let tasks = wf["tasks"].as_array().unwrap().clone();
        let [a, b, c, x] = [0, 1, 2, 3].map(|n| s(&tasks[n], "id").to_string());
        let got = claim(&db, "dd", 10, "w", 60_000).await;
        assert_eq!(ids(&got).len(), 2, "a and x are claimable, b and c wait");
        db.set_status(json!({"id": a, "status": "failed", "workerId": "w", "error": "boom"})).await;
        for id in [&b, &c] {
            let t = db.get_task(id).await;
            assert_eq!(s(&t, "status"), "cancelled", "{t}");
            assert!(s(&t, "lastError").contains("depends on"), "{t}");
        }
        assert_eq!(s(&db.get_task(&x).await, "status"), "running", "an unrelated task is untouched");
        db.set_status(json!({"id": x, "status": "completed", "workerId": "w"})).await;
        let pr = progress(&db, &wf_id).await;
        assert_progress(&pr, "failed", [0, 0, 1, 1, 2], 100.0);

        // cancelling a pending dependency cancels its dependents too
        let wf2 = db
            .op("createWorkflow", json!({"name": "c2", "tasks": [{"key": "p", "queue": "dd2"}, {"key": "q", "queue": "dd2", "dependsOn": ["p"]}]}))
            .await;
        let t2 = wf2["tasks"].as_array().unwrap().clone();
        let (p_id, q_id) = (s(&t2[0], "id").to_string(), s(&t2[1], "id").to_string());
        db.set_status(json!({"id": p_id, "status": "cancelled"})).await;
        assert_eq!(s(&db.get_task(&q_id).await, "status"), "cancelled");
        assert_progress(&progress(&db, s(&wf2, "id")).await, "cancelled", [0, 0, 0, 0, 2], 100.0);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Coalescing: concurrent single calls share a statement, each caller keeps its own answer
// ---------------------------------------------------------------------------------------

/// Runs `n` calls at once (behind a barrier, so they meet in the same batches).
async fn at_once(db: &Db, calls: Vec<(&'static str, Json)>) -> Vec<Result<Json, (String, String)>> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(calls.len()));
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(op, payload)| {
            let conn = db.conn.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                conn.execute(op, payload, &OpOptions::default()).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(match h.await.expect("a call panicked") {
            Ok(o) => Ok(json_of(o)),
            Err(f) => Err((f.error.code().to_string(), f.error.to_string())),
        });
    }
    out
}

async fn coalesced_calls_keep_their_own_results(p: Provider) {
    with_db(p, |db| async move {
        // 64 inserts at once; one names a workflow that does not exist, two share a key
        let mut calls: Vec<(&'static str, Json)> = (0..64)
            .map(|n| ("insertTask", json!({"queue": "co", "payload": {"n": n}})))
            .collect();
        calls[10] = ("insertTask", json!({"queue": "co", "workflowId": "0190d6e0-5b2c-7a3e-8f00-00000000abcd"}));
        calls[20] = ("insertTask", json!({"queue": "co", "idempotencyKey": "same", "payload": {"n": 20}}));
        calls[30] = ("insertTask", json!({"queue": "co", "idempotencyKey": "same", "payload": {"n": 30}}));
        let res = at_once(&db, calls).await;
        let failed: Vec<usize> = (0..64).filter(|i| res[*i].is_err()).collect();
        assert_eq!(failed, vec![10], "only the bad task fails: {res:?}");
        assert_eq!(res[10].as_ref().unwrap_err().0, "DBC_CONFLICT", "{:?}", res[10]);
        let ok: Vec<&Json> = res.iter().filter_map(|r| r.as_ref().ok()).collect();
        for (i, r) in res.iter().enumerate() {
            if let (Ok(t), false) = (r, [10, 20, 30].contains(&i)) {
                assert_eq!(t["payload"], json!({"n": i}), "each caller gets its own task");
                assert_uuid_v7(s(t, "id"));
            }
        }
        let unique: HashSet<&str> = ok.iter().map(|t| s(t, "id")).collect();
        assert_eq!(unique.len(), 62, "62 distinct tasks (two callers share one key)");
        let dedup = [20, 30].iter().filter(|i| res[**i].as_ref().unwrap().get("deduplicated") == Some(&json!(true))).count();
        assert_eq!(dedup, 1, "one of the two keyed inserts is the duplicate: {:?} {:?}", res[20], res[30]);
        assert_eq!(s(res[20].as_ref().unwrap(), "id"), s(res[30].as_ref().unwrap(), "id"));
        assert_eq!(db.count(&db.t("tasks"), "", vec![]).await, 62);

        // complete them all at once; one reports as another worker, one twice
        let got = claim(&db, "co", 100, "w1", 60_000).await;
        assert_eq!(got.len(), 62);
        let mut calls: Vec<(&'static str, Json)> = got
            .iter()
            .map(|t| ("updateTaskStatus", json!({"id": s(t, "id"), "status": "completed", "workerId": "w1", "result": {"ok": s(t, "id")}})))
            .collect();
        calls[5] = ("updateTaskStatus", json!({"id": s(&got[5], "id"), "status": "completed", "workerId": "w2"}));
        calls.push(("updateTaskStatus", json!({"id": s(&got[7], "id"), "status": "completed", "workerId": "w1"})));
        let res = at_once(&db, calls).await;
        assert_eq!(res[5].as_ref().unwrap_err().0, "DBC_LEASE_LOST", "{:?}", res[5]);
        let twice = [&res[7], &res[62]];
        assert_eq!(twice.iter().filter(|r| r.is_ok()).count(), 1, "the same task completes once: {twice:?}");
        assert_eq!(twice.iter().filter_map(|r| r.as_ref().err()).next().unwrap().0, "DBC_INVALID_TRANSITION");
        for (i, r) in res.iter().enumerate().take(62) {
            if i == 5 || i == 7 {
                continue;
            }
            let t = r.as_ref().unwrap_or_else(|e| panic!("[{}] completion {i} failed: {e:?}", db.p));
            assert_eq!(s(t, "id"), s(&got[i], "id"));
            assert_eq!(s(t, "status"), "completed");
            assert_eq!(t["result"], json!({"ok": s(&got[i], "id")}));
            assert!(t["workerId"].is_null() && t["leaseExpiresAt"].is_null(), "{t}");
            assert!(!t["finishedAt"].is_null(), "{t}");
        }
        let stored = db.get_task(s(&got[0], "id")).await;
        assert_eq!(s(&stored, "status"), "completed");
        assert_eq!(history(&stored), vec![h(1, "completed", "w1")]);
        assert!(stored["history"][0]["durationMs"].as_i64().is_some(), "{stored}");
        assert_eq!(s(&db.get_task(s(&got[5], "id")).await, "status"), "running", "the lease-lost report changed nothing");

        // dependents are released by completions that share a batch
        let wf = db
            .op(
                "createWorkflow",
                json!({"name": "fan-in", "tasks": [
                    {"key": "a", "queue": "fan"}, {"key": "b", "queue": "fan"}, {"key": "c", "queue": "fan"},
                    {"key": "d", "queue": "fan"}, {"key": "e", "queue": "fan"}, {"key": "f", "queue": "fan"},
                    {"key": "z", "queue": "fan", "dependsOn": ["a", "b", "c", "d", "e", "f"]},
                ]}),
            )
            .await;
        let firsts = claim(&db, "fan", 10, "w", 60_000).await;
        assert_eq!(firsts.len(), 6, "z waits");
        let calls = firsts
            .iter()
            .map(|t| ("updateTaskStatus", json!({"id": s(t, "id"), "status": "completed", "workerId": "w"})))
            .collect();
        assert!(at_once(&db, calls).await.iter().all(|r| r.is_ok()));
        let last = claim(&db, "fan", 10, "w", 60_000).await;
        assert_eq!(ids(&last), vec![s(&wf["tasks"][6], "id").to_string()], "z runs once all six are done");
    })
    .await
}

conformance!(
    coalesced_calls_keep_their_own_results,
    dead_dependency_cancels_dependents,
    claim_order,
    idempotency_16_concurrent,
    concurrent_claimers,
    lease_expiry,
    dead_task_and_requeue,
    transaction_all_or_nothing,
    list_tasks_filters_and_pages,
    delete_task,
    workflows,
);
