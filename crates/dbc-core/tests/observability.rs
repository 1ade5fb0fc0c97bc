//! Observability and connection set-up, on PostgreSQL, MariaDB and SQLite: the metrics
//! (JSON and Prometheus text) count exactly what ran, consumers are woken by new work
//! (locally, and across connectors through PostgreSQL NOTIFY), and a connection given
//! as separate fields (host, port, user, database, TLS mode) works like a URL, while a
//! TLS demand the server cannot meet fails with `DBC_CONNECTION`.
//!
//! Databases as in `conformance.rs` (`DBC_TEST_PG_URL`, `DBC_TEST_MARIADB_URL`).

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use dbc_core::connector::test_connection;
use dbc_core::{ConnectorConfig, Provider};
use serde_json::{json, Value as Json};

/// The label set every Prometheus series of `connection` carries.
fn labels(connection: &str, p: Provider) -> String {
    let esc = connection
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("connection=\"{esc}\",provider=\"{p}\"")
}

async fn metrics_count_what_ran(p: Provider) {
    with_db(p, |db| async move {
        for n in 0..3 {
            db.insert_task(json!({"queue": "m", "payload": {"n": n}})).await;
        }
        for _ in 0..2 {
            assert_validation(&db.op_err("insertTask", json!({"queue": "m", "priority": -1})).await, "priority");
        }
        db.sql("SELECT 1", vec![]).await;

        let m = db.conn.metrics_json().await;
        assert_eq!(m["provider"], json!(p.to_string()));
        assert_eq!(m["state"], "connected");
        assert_eq!(m["failover"], false);
        let log = m["stateLog"].as_array().expect("stateLog");
        assert_eq!(log.last().expect("a state change")["state"], "connected");
        assert_eq!(m["pool"]["max"], json!(if p == Provider::Sqlite { 8 } else { 10 }));
        let ins = &m["operations"]["insertTask"];
        assert_eq!((ins["count"].as_u64(), ins["errors"].as_u64()), (Some(5), Some(2)), "{m}");
        assert!((ins["errorRate"].as_f64().unwrap() - 0.4).abs() < 1e-9, "{ins}");
        let (p50, p99) = (ins["p50Ms"].as_f64().unwrap(), ins["p99Ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p99 >= p50, "{ins}");
        assert_eq!(m["operations"]["query"]["count"], 1);
        assert_eq!(m["queues"], json!([{"queue": "m", "status": "pending", "count": 3}]));
        assert_eq!(m["pausedQueues"], json!([]));

        // a paused queue shows, with its time, also one that has no tasks
        let since = db.op("pauseQueue", json!({"queue": "idle"})).await["pausedAt"].clone();
        let m = db.conn.metrics_json().await;
        assert_eq!(m["pausedQueues"], json!([{"queue": "idle", "pausedAt": since}]));

        let name = "line \"one\"\\\ntwo";
        let text = db.conn.metrics_prometheus(name).await;
        let base = labels(name, p);
        for line in [
            format!("dbc_up{{{base}}} 1"),
            format!("dbc_pool_max{{{base}}} {}", m["pool"]["max"]),
            format!("dbc_operations_total{{{base},operation=\"insertTask\"}} 5"),
            format!("dbc_operation_errors_total{{{base},operation=\"insertTask\"}} 2"),
            format!("dbc_operation_duration_seconds_bucket{{{base},operation=\"insertTask\",le=\"+Inf\"}} 5"),
            format!("dbc_operation_duration_seconds_count{{{base},operation=\"insertTask\"}} 5"),
            format!("dbc_queue_tasks{{{base},queue=\"m\",status=\"pending\"}} 3"),
            format!("dbc_queue_paused{{{base},queue=\"idle\"}} 1"),
            format!("dbc_queue_paused{{{base},queue=\"m\"}} 0"),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        // buckets are cumulative and end at the count
        let buckets: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("dbc_operation_duration_seconds_bucket") && l.contains("operation=\"insertTask\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
        assert_eq!(buckets.last(), Some(&5));
        let sum: f64 = text
            .lines()
            .find(|l| l.starts_with(&format!("dbc_operation_duration_seconds_sum{{{base},operation=\"insertTask\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("a sum");
        assert!(sum > 0.0 && sum < 60.0, "{sum}");

        // after close (a second connector, so the fixture can still drop its tables):
        // disconnected, no queue depth, dbc_up 0
        let other = db.open_another(|_| {}).await.expect("a second connector");
        other.close().await;
        let m = other.metrics_json().await;
        assert_eq!(m["state"], "disconnected");
        assert!(m["queuesError"].as_str().unwrap_or("").starts_with("DBC_CONNECTION"), "{m}");
        assert_eq!(m["stateLog"].as_array().unwrap().last().unwrap()["state"], "disconnected");
        let text = other.metrics_prometheus("c").await;
        assert!(text.contains(&format!("dbc_up{{{}}} 0", labels("c", p))), "{text}");
        assert!(!text.contains("dbc_queue_tasks{"), "{text}");
        assert!(!text.contains("dbc_queue_paused{"), "{text}");
    })
    .await
}

/// Inserts into `queue` through `via` every 50 ms until `waiter` resolves; its answer.
async fn woken_by_inserts(
    db: &Db,
    via: &dbc_core::Connector,
    queue: &str,
    waiter: tokio::task::JoinHandle<bool>,
) -> bool {
    let started = Instant::now();
    while !waiter.is_finished() && started.elapsed() < Duration::from_secs(8) {
        via.execute("insertTask", json!({"queue": queue}), &Default::default())
            .await
            .unwrap_or_else(|f| panic!("[{}] insert: {}", db.p, f.error));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waiter.await.expect("the waiter")
}

async fn wake_on_new_work(p: Provider) {
    with_db(p, |db| async move {
        let conn = db.conn.clone();
        let waiter = tokio::spawn(async move { conn.wait_for_tasks("w", 10_000).await });
        assert!(
            woken_by_inserts(&db, &db.conn, "w", waiter).await,
            "an insert here wakes a waiter"
        );

        // an insert into another queue does not wake it; the timeout does
        let conn = db.conn.clone();
        let started = Instant::now();
        let waiter = tokio::spawn(async move { conn.wait_for_tasks("quiet", 300).await });
        db.insert_task(json!({"queue": "noisy"})).await;
        assert!(!waiter.await.unwrap(), "woken by another queue");
        assert!(started.elapsed() >= Duration::from_millis(290));

        if p == Provider::Postgres {
            // a second connector (another Node-RED) is woken by NOTIFY
            let other =
                std::sync::Arc::new(db.open_another(|_| {}).await.expect("a second connector"));
            let o = other.clone();
            let waiter = tokio::spawn(async move { o.wait_for_tasks("shared", 10_000).await });
            assert!(
                woken_by_inserts(&db, &db.conn, "shared", waiter).await,
                "NOTIFY wakes the other connector"
            );
            other.close().await;
        }

        // closed: no waiting at all
        let closed = db.open_another(|_| {}).await.expect("a second connector");
        closed.close().await;
        let started = Instant::now();
        assert!(!closed.wait_for_tasks("w", 5_000).await);
        assert!(started.elapsed() < Duration::from_millis(1_000));
    })
    .await
}

/// The server URL split into the config node's separate fields.
fn fields_of(p: Provider) -> Json {
    let url = server_url(p).expect("a server provider");
    // scheme://user[:password]@host[:port]/database (the test URLs carry no query)
    let rest = url.split_once("://").expect("a URL").1;
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = auth.rsplit_once('@').unwrap_or(("", auth));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let default_port = if p == Provider::Postgres { 5432 } else { 3306 };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, port)) => (h, port.parse::<u32>().expect("a port")),
        None => (hostport, default_port),
    };
    json!({
        "provider": if p == Provider::Postgres { "postgres" } else { "mariadb" },
        "host": host,
        "port": port,
        "database": path.split('?').next().unwrap_or(""),
        "user": user,
        "password": password,
    })
}

fn connector_config(primary: Json) -> ConnectorConfig {
    ConnectorConfig::from_json(&json!({"primary": primary, "tablePrefix": unique_prefix(), "pool": {"acquireTimeoutMs": 3000}}).to_string())
        .expect("a valid config")
}

async fn fields_instead_of_url(p: Provider) {
    if p == Provider::Sqlite {
        return; // one file, no server fields
    }
    let mut fields = fields_of(p);
    fields["ssl"] = json!("disable");
    let cfg = connector_config(fields.clone());
    let r = test_connection(&cfg.primary, &cfg.pool)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable_message(p, &e)));
    assert_eq!(r.provider, p);
    assert!(
        r.server_version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{}",
        r.server_version
    );

    // a wrong password in the fields: DBC_CONNECTION, and the password is not in the message
    let mut wrong = fields.clone();
    wrong["user"] = json!("dbc_nobody");
    wrong["password"] = json!("s3cret-pw");
    let cfg = connector_config(wrong);
    let e = test_connection(&cfg.primary, &cfg.pool)
        .await
        .expect_err("an unknown user");
    assert_eq!(e.code(), "DBC_CONNECTION", "{e}");
    assert!(!e.to_string().contains("s3cret-pw"), "{e}");

    // TLS the server cannot give: PostgreSQL here has a self-signed certificate (not
    // trusted by verify-full), MariaDB here has no TLS at all (so `require` fails)
    let mut tls = fields.clone();
    tls["ssl"] = json!(if p == Provider::Postgres {
        "verify-full"
    } else {
        "require"
    });
    let cfg = connector_config(tls.clone());
    let e = test_connection(&cfg.primary, &cfg.pool)
        .await
        .expect_err("TLS cannot be met");
    assert_eq!(e.code(), "DBC_CONNECTION", "{e}");

    // a CA that is no certificate at all, as PEM text and as a missing file: refused
    for ca in [
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "/nonexistent/ca.pem",
    ] {
        let mut with_ca = tls.clone();
        with_ca["ssl"] = json!("verify-full");
        with_ca["sslCa"] = json!(ca);
        let cfg = connector_config(with_ca);
        let e = test_connection(&cfg.primary, &cfg.pool)
            .await
            .expect_err("a bad CA");
        assert!(
            matches!(e.code(), "DBC_CONNECTION" | "DBC_CONFIG"),
            "{ca}: {} {e}",
            e.code()
        );
    }
}

conformance!(
    metrics_count_what_ran,
    wake_on_new_work,
    fields_instead_of_url
);
