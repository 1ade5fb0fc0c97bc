//! The router on its own (no Node-RED): a PostgreSQL primary behind a loopback TCP proxy
//! the test cuts and restores, MariaDB or SQLite as the fallback. Failover on a refused
//! link, the operation re-run on the fallback, automatic and manual failback moving the
//! rows, start-up with the primary down, and the errors of the failback call itself.

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dbc_core::connector::OpOptions;
use dbc_core::{Connector, ConnectorConfig, Provider};
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A loopback proxy to PostgreSQL that can refuse (cut) and forward again (restore).
/// `upstream_ports` are the local ports of its connections to PostgreSQL: with
/// pg_stat_activity's client_port they name the sessions that go through it.
struct Proxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    upstream_ports: Arc<Mutex<Vec<u16>>>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            target,
            tasks: Default::default(),
            upstream_ports: Default::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let ports = self.upstream_ports.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (target, ports) = (target.clone(), ports.clone());
                let conn = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(&target).await {
                        if let Ok(a) = upstream.local_addr() {
                            ports.lock().unwrap().push(a.port());
                        }
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Resets every connection and refuses new ones.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

struct Setup {
    proxy: Proxy,
    prefix: String,
    conn: Connector,
}

fn pg_hostport() -> String {
    let url = server_url(Provider::Postgres).unwrap();
    let rest = url.split_once("://").unwrap().1;
    let auth = rest.split('/').next().unwrap();
    auth.rsplit('@').next().unwrap().to_string()
}

async fn setup(fallback: Option<Provider>, failback: &str, cut_first: bool) -> Setup {
    let proxy = Proxy::start(pg_hostport()).await;
    if cut_first {
        proxy.cut();
    }
    let prefix = unique_prefix();
    let pg = with_hostport(
        &server_url(Provider::Postgres).unwrap(),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let fb = fallback.map(|p| match p {
        Provider::Sqlite => {
            json!({"provider": "sqlite", "sqliteFile": sqlite_path(&prefix).to_string_lossy()})
        }
        p => json!({"provider": p.as_str(), "url": server_url(p).unwrap()}),
    });
    let cfg = json!({
        "primary": {"provider": "postgres", "url": pg},
        "fallback": fb,
        "tablePrefix": prefix,
        "healthIntervalMs": 100,
        "failoverThreshold": 2,
        "failback": failback,
        "pool": {"acquireTimeoutMs": 1000, "poolMax": 4},
    });
    let conn = Connector::open(ConnectorConfig::from_json(&cfg.to_string()).unwrap())
        .await
        .expect("open");
    Setup {
        proxy,
        prefix,
        conn,
    }
}

async fn insert(s: &Setup, name: &str) -> (Json, Provider) {
    let o = s
        .conn
        .execute(
            "insertTask",
            json!({ "name": name }),
            &OpOptions {
                debug: true,
                queue: None,
            },
        )
        .await
        .unwrap_or_else(|f| panic!("insert {name}: {} {}", f.error.code(), f.error));
    let provider = o.debug.as_ref().expect("debug").provider;
    assert_eq!(provider, o.provider);
    (json_of(o), provider)
}

/// The task is found, and found in the primary.
async fn assert_in_primary(s: &Setup, id: &Json) {
    let o = s
        .conn
        .execute("getTask", json!({ "id": id }), &Default::default())
        .await
        .unwrap_or_else(|f| panic!("task {id}: {} {}", f.error.code(), f.error));
    assert_eq!(o.provider, Provider::Postgres);
}

/// Waits until `n` health checks (`SELECT 1`) went through the proxy to PostgreSQL and
/// were answered, as pg_stat_activity shows them: an answered check leaves its session
/// idle with that query and a query_start of its own.
async fn health_checks_through(proxy: &Proxy, n: usize, within: Duration) {
    let cfg = json!({"primary": {"provider": "postgres", "url": server_url(Provider::Postgres).unwrap()}, "autoMigrate": false, "pool": {"poolMax": 1}});
    let pg = Connector::open(ConnectorConfig::from_json(&cfg.to_string()).unwrap())
        .await
        .expect("a direct PostgreSQL connection");
    let until = Instant::now() + within;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        assert!(
            Instant::now() < until,
            "{} of {n} answered health checks through the proxy within {within:?}",
            seen.len()
        );
        let ports = proxy.upstream_ports.lock().unwrap().clone();
        if !ports.is_empty() {
            let list = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT pid, query_start::text FROM pg_stat_activity WHERE client_port IN ({list}) AND query = 'SELECT 1' AND state = 'idle'");
            let o = pg
                .query(&sql, Default::default(), &Default::default())
                .await
                .unwrap_or_else(|f| panic!("pg_stat_activity: {}", f.error));
            for row in rows_of(o).rows {
                seen.insert(format!("{row:?}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.close().await;
}

async fn wait_state(c: &Connector, want: &str, within: Duration) {
    let until = Instant::now() + within;
    while c.connection_state() != want {
        assert!(
            Instant::now() < until,
            "state {} is not {want} after {within:?}",
            c.connection_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cleanup(s: Setup, fallback: Option<Provider>) {
    s.conn.close().await;
    let mut targets = vec![Provider::Postgres];
    targets.extend(fallback.filter(|p| *p != Provider::Sqlite));
    for p in targets {
        let cfg = json!({"primary": {"provider": p.as_str(), "url": server_url(p).unwrap()}, "autoMigrate": false});
        let c = Connector::open(ConnectorConfig::from_json(&cfg.to_string()).unwrap())
            .await
            .unwrap();
        for t in [
            "error_logs",
            "task_executions",
            "task_dependencies",
            "tasks",
            "workflows",
            "migrations",
        ] {
            let _ = c
                .query(
                    &format!("DROP TABLE IF EXISTS {}{t}", s.prefix),
                    Default::default(),
                    &Default::default(),
                )
                .await;
        }
        c.close().await;
    }
    let _ = std::fs::remove_file(sqlite_path(&s.prefix));
}

async fn auto_failback_to(fallback: Provider) {
    let s = setup(Some(fallback), "auto", false).await;
    assert_eq!(s.conn.connection_state(), "connected");
    let (before, p) = insert(&s, "before").await;
    assert_eq!(p, Provider::Postgres);
    s.proxy.cut();
    // the operation meets the refused link, the probe confirms, it runs on the fallback
    let (during, p) = insert(&s, "during").await;
    assert_eq!(p, fallback);
    assert_eq!(s.conn.connection_state(), "failover");
    assert!(s.conn.failover());
    assert_eq!(s.conn.provider(), fallback);
    // the pre-outage task lives in the primary only
    let gone = s
        .conn
        .execute("getTask", json!({"id": before["id"]}), &Default::default())
        .await;
    assert_eq!(gone.err().map(|f| f.error.code()), Some("DBC_NOT_FOUND"));
    s.proxy.restore().await;
    wait_state(&s.conn, "connected", Duration::from_secs(10)).await;
    let moved = s.conn.last_failback().expect("a failback report");
    assert_eq!(moved.tasks, 1);
    for t in [&before, &during] {
        assert_in_primary(&s, &t["id"]).await;
    }
    let metrics = s.conn.metrics_json().await;
    let states: Vec<&str> = metrics["stateLog"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(states, ["connected", "failover", "connected"]);
    assert_eq!(metrics["lastFailback"]["tasks"], 1);
    cleanup(s, Some(fallback)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_mariadb_and_back() {
    auto_failback_to(Provider::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_sqlite_and_back() {
    auto_failback_to(Provider::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failback_waits_for_the_call() {
    let s = setup(Some(Provider::Mariadb), "manual", false).await;
    s.proxy.cut();
    let (t, p) = insert(&s, "during").await;
    assert_eq!(p, Provider::Mariadb);
    // while the primary is down the call fails and nothing moves
    let err = s.conn.failback().await.expect_err("primary down");
    assert_eq!(err.code(), "DBC_CONNECTION");
    s.proxy.restore().await;
    // the primary answers health checks again: automatic failback would follow the 2nd
    health_checks_through(&s.proxy, 3, Duration::from_secs(10)).await;
    assert_eq!(s.conn.connection_state(), "failover", "manual waits");
    let moved = s.conn.failback().await.expect("failback");
    assert_eq!(moved.tasks, 1);
    assert_eq!(s.conn.connection_state(), "connected");
    assert_in_primary(&s, &t["id"]).await;
    assert_eq!(s.conn.failback().await.expect("nothing to do").tasks, 0);
    cleanup(s, Some(Provider::Mariadb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_down_without_fallback_recovers() {
    let s = setup(None, "auto", true).await;
    assert_eq!(s.conn.connection_state(), "reconnecting");
    let f = s
        .conn
        .execute("listTasks", json!({}), &Default::default())
        .await
        .expect_err("down");
    assert_eq!(f.error.code(), "DBC_CONNECTION");
    assert!(f.error.is_retryable());
    let err = s.conn.failback().await.expect_err("no fallback");
    assert_eq!(err.code(), "DBC_CONFIG");
    s.proxy.restore().await;
    wait_state(&s.conn, "connected", Duration::from_secs(10)).await;
    // migrations ran when the primary came: the tables are there
    let (_, p) = insert(&s, "after").await;
    assert_eq!(p, Provider::Postgres);
    cleanup(s, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_down_with_fallback_starts_there() {
    let s = setup(Some(Provider::Mariadb), "auto", true).await;
    assert_eq!(s.conn.connection_state(), "failover");
    let (t, p) = insert(&s, "early").await;
    assert_eq!(p, Provider::Mariadb);
    s.proxy.restore().await;
    wait_state(&s.conn, "connected", Duration::from_secs(10)).await;
    assert_in_primary(&s, &t["id"]).await;
    cleanup(s, Some(Provider::Mariadb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_fail_over_without_traffic() {
    let s = setup(Some(Provider::Mariadb), "auto", false).await;
    let cut_at = Instant::now();
    s.proxy.cut();
    wait_state(&s.conn, "failover", Duration::from_secs(5)).await;
    // two failed checks at 100 ms (each at most 1 s)
    assert!(
        cut_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        cut_at.elapsed()
    );
    s.proxy.restore().await;
    wait_state(&s.conn, "connected", Duration::from_secs(10)).await;
    assert_eq!(s.conn.last_failback().map(|m| m.tasks), Some(0));
    cleanup(s, Some(Provider::Mariadb)).await;
}
