//! Shared fixture of the integration suites (`conformance/`, `queue.rs`): the test
//! databases and their environment variables, a connector under a unique table prefix
//! per test (tables dropped at the end), result helpers, and the macros that instantiate
//! one `async fn(Provider)` body per provider.
//!
//! Databases: PostgreSQL from `DBC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), MariaDB from `DBC_TEST_MARIADB_URL`
//! (default `mysql://root@127.0.0.1:3306/test`), SQLite in a temporary file per test.
//! An unreachable database fails the test with a message naming the variable to set;
//! nothing is skipped.
// each test crate uses its own subset of these helpers
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbc_core::config::redact_url;
use dbc_core::connector::{Failure, OpOptions, OpValue, Outcome};
use dbc_core::db::QueryOutput;
use dbc_core::value::{Param, Params, Value};
use dbc_core::{Connector, ConnectorConfig, DbcError, Provider};
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------

pub const PG_ENV: &str = "DBC_TEST_PG_URL";
pub const MARIADB_ENV: &str = "DBC_TEST_MARIADB_URL";
pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MARIADB_DEFAULT: &str = "mysql://root@127.0.0.1:3306/test";

/// The connection URL of a server provider (None for SQLite).
pub fn server_url(p: Provider) -> Option<String> {
    let (var, default) = match p {
        Provider::Postgres => (PG_ENV, PG_DEFAULT),
        Provider::Mariadb => (MARIADB_ENV, MARIADB_DEFAULT),
        Provider::Sqlite => return None,
    };
    Some(
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| default.to_string()),
    )
}

pub fn env_var_of(p: Provider) -> &'static str {
    match p {
        Provider::Postgres => PG_ENV,
        Provider::Mariadb => MARIADB_ENV,
        Provider::Sqlite => "(none: sqlite uses a temporary file)",
    }
}

/// Replaces the `user[:password]@` part of a URL.
pub fn with_userinfo(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with ://");
    let host_part = match rest.split('/').next().and_then(|auth| auth.rfind('@')) {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    format!("{scheme}://{userinfo}@{host_part}")
}

/// Replaces the `host[:port]` part of a URL.
pub fn with_hostport(url: &str, hostport: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with ://");
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let userinfo = auth.rfind('@').map(|at| &auth[..=at]).unwrap_or("");
    format!("{scheme}://{userinfo}{hostport}{path}")
}

/// A table prefix no other test (in this or another process) uses: `t` + 10 hex + `_`.
pub fn unique_prefix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let prefix = format!("t{:010x}_", h.finish() & 0xff_ffff_ffff);
    assert!(dbc_core::config::valid_prefix(&prefix), "{prefix}");
    prefix
}

pub fn sqlite_path(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("dbc-conformance");
    std::fs::create_dir_all(&dir).expect("create the sqlite temp dir");
    dir.join(format!("{prefix}db.sqlite"))
}

/// The config node's JSON (camelCase names of flows.json) for one provider.
pub fn config_json(p: Provider, prefix: &str, sqlite_file: &std::path::Path) -> Json {
    let primary = match p {
        Provider::Postgres => json!({"provider": "postgres", "url": server_url(p)}),
        Provider::Mariadb => json!({"provider": "mariadb", "url": server_url(p)}),
        Provider::Sqlite => {
            json!({"provider": "sqlite", "sqliteFile": sqlite_file.to_string_lossy()})
        }
    };
    json!({
        "primary": primary,
        "tablePrefix": prefix,
        "autoMigrate": true,
        "pool": {"poolMax": 10, "acquireTimeoutMs": 5000, "statementTimeoutMs": 30000},
    })
}

/// Parses a config without validating it (validation is `Connector::open`'s job).
pub fn config_of(v: &Json) -> ConnectorConfig {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("config does not parse: {e}: {v}"))
}

pub fn unreachable_message(p: Provider, e: &DbcError) -> String {
    match p {
        Provider::Sqlite => format!("cannot open the sqlite test database: {} [{e}]", e.code()),
        _ => format!(
            "cannot open the {p} test database at {}: {} [{e}] — start the server or set {} to a reachable database \
             (default {})",
            redact_url(&server_url(p).unwrap_or_default()),
            e.code(),
            env_var_of(p),
            if p == Provider::Postgres { PG_DEFAULT } else { MARIADB_DEFAULT },
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// The connector's own tables, in an order that respects the foreign keys when dropping.
pub const OWN_TABLES: [&str; 8] = [
    "schedules",
    "queues",
    "task_dependencies",
    "task_executions",
    "error_logs",
    "tasks",
    "workflows",
    "migrations",
];

/// One test's database: a connector under a fresh prefix, plus what to drop at the end.
pub struct Db {
    pub p: Provider,
    pub prefix: String,
    pub cfg: Json,
    pub sqlite_file: PathBuf,
    pub conn: Arc<Connector>,
    pub user_tables: Mutex<Vec<String>>,
}

impl Db {
    pub async fn open_with(p: Provider, edit: impl FnOnce(&mut Json)) -> Db {
        let prefix = unique_prefix();
        let sqlite_file = sqlite_path(&prefix);
        let mut cfg = config_json(p, &prefix, &sqlite_file);
        edit(&mut cfg);
        let text = cfg.to_string();
        let parsed = ConnectorConfig::from_json(&text)
            .unwrap_or_else(|e| panic!("test config rejected: {e}"));
        let conn = Connector::open(parsed)
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable_message(p, &e)));
        assert_eq!(conn.provider(), p);
        Db {
            p,
            prefix,
            cfg,
            sqlite_file,
            conn: Arc::new(conn),
            user_tables: Mutex::new(Vec::new()),
        }
    }

    /// Opens another connector on the same database and prefix.
    pub async fn open_another(
        &self,
        edit: impl FnOnce(&mut Json),
    ) -> std::result::Result<Connector, DbcError> {
        let mut cfg = self.cfg.clone();
        edit(&mut cfg);
        Connector::open(config_of(&cfg)).await
    }

    /// The n-th positional placeholder of this provider.
    pub fn ph(&self, n: usize) -> String {
        match self.p {
            Provider::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// A connector table name (prefix + name).
    pub fn t(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// Table options every user table gets.
    pub fn table_suffix(&self) -> &'static str {
        match self.p {
            Provider::Mariadb => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            _ => "",
        }
    }

    /// An auto-increment primary key column.
    pub fn serial_id(&self) -> &'static str {
        match self.p {
            Provider::Postgres => "id BIGSERIAL PRIMARY KEY",
            Provider::Mariadb => "id BIGINT AUTO_INCREMENT PRIMARY KEY",
            Provider::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
        }
    }

    /// Creates a user table `<prefix>u_<name>` (dropped at the end) and returns its name.
    pub async fn user_table(&self, name: &str, columns: &str) -> String {
        let table = format!("{}u_{name}", self.prefix);
        self.user_tables.lock().unwrap().push(table.clone());
        self.sql(
            &format!("CREATE TABLE {table} ({columns}){}", self.table_suffix()),
            vec![],
        )
        .await;
        table
    }

    pub async fn drop_table(&self, table: &str) {
        let cascade = if self.p == Provider::Postgres {
            " CASCADE"
        } else {
            ""
        };
        let _ = self
            .conn
            .query(
                &format!("DROP TABLE IF EXISTS {table}{cascade}"),
                Params::None,
                &OpOptions::default(),
            )
            .await;
    }

    pub async fn try_sql(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> std::result::Result<Outcome, Failure> {
        let params = if params.is_empty() {
            Params::None
        } else {
            Params::Positional(params)
        };
        self.conn.query(sql, params, &OpOptions::default()).await
    }

    /// Runs SQL that must succeed.
    pub async fn sql(&self, sql: &str, params: Vec<Param>) -> QueryOutput {
        match self.try_sql(sql, params).await {
            Ok(o) => rows_of(o),
            Err(f) => panic!("[{}] {sql}: {} {}", self.p, f.error.code(), f.error),
        }
    }

    /// Runs SQL that must fail.
    pub async fn sql_err(&self, sql: &str, params: Vec<Param>) -> Failure {
        match self.try_sql(sql, params).await {
            Ok(o) => panic!("[{}] {sql}: expected an error, got {:?}", self.p, o.value),
            Err(f) => {
                assert_eq!(f.operation, "query");
                assert_eq!(f.provider, self.p);
                f
            }
        }
    }

    /// Runs an operation that must succeed and returns its JSON result.
    pub async fn op(&self, operation: &str, payload: Json) -> Json {
        self.op_with(operation, payload, &OpOptions::default())
            .await
    }

    pub async fn op_with(&self, operation: &str, payload: Json, opts: &OpOptions) -> Json {
        match self.conn.execute(operation, payload.clone(), opts).await {
            Ok(o) => json_of(o),
            Err(f) => panic!(
                "[{}] {operation} {payload}: {} {}",
                self.p,
                f.error.code(),
                f.error
            ),
        }
    }

    /// Runs an operation that must fail.
    pub async fn op_err(&self, operation: &str, payload: Json) -> Failure {
        match self
            .conn
            .execute(operation, payload.clone(), &OpOptions::default())
            .await
        {
            Ok(o) => panic!(
                "[{}] {operation} {payload}: expected an error, got {:?}",
                self.p, o.value
            ),
            Err(f) => {
                assert_eq!(f.operation, operation);
                assert_eq!(f.provider, self.p);
                f
            }
        }
    }

    /// `SELECT count(*)` of a table (with an optional WHERE clause).
    pub async fn count(&self, table: &str, filter: &str, params: Vec<Param>) -> i64 {
        let out = self
            .sql(&format!("SELECT count(*) FROM {table} {filter}"), params)
            .await;
        match out.rows.first().and_then(|r| r.first()) {
            Some(Value::Int(n)) => *n,
            other => panic!("count(*) of {table} gave {other:?}"),
        }
    }

    pub async fn insert_task(&self, task: Json) -> Json {
        self.op("insertTask", task).await
    }

    pub async fn set_status(&self, change: Json) -> Json {
        self.op("updateTaskStatus", change).await
    }

    pub async fn get_task(&self, id: &str) -> Json {
        self.op("getTask", json!({"id": id})).await
    }

    /// Drops everything the test created (best effort) and closes the connector.
    pub async fn cleanup(&self) {
        let users: Vec<String> = self.user_tables.lock().unwrap().clone();
        for t in users.iter().rev() {
            self.drop_table(t).await;
        }
        for t in OWN_TABLES {
            self.drop_table(&self.t(t)).await;
        }
        self.conn.close().await;
        if self.p == Provider::Sqlite {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut f = self.sqlite_file.clone().into_os_string();
                f.push(suffix);
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

pub fn rows_of(o: Outcome) -> QueryOutput {
    match o.value {
        OpValue::Rows(r) => r,
        OpValue::Answer(a) => panic!("expected rows, got {a:?}"),
    }
}

pub fn json_of(o: Outcome) -> Json {
    match o.value {
        OpValue::Answer(a) => a.into_json().expect("the answer as JSON"),
        OpValue::Rows(r) => panic!("expected JSON, got rows {r:?}"),
    }
}

pub fn field_of(e: &DbcError) -> Option<&str> {
    match e {
        DbcError::Validation { field, .. } => Some(field.as_str()),
        _ => None,
    }
}

#[track_caller]
pub fn assert_code(f: &Failure, code: &str) {
    assert_eq!(
        f.error.code(),
        code,
        "[{}] {}: {}",
        f.provider,
        f.operation,
        f.error
    );
}

#[track_caller]
pub fn assert_validation(f: &Failure, field: &str) {
    assert_code(f, "DBC_VALIDATION");
    assert_eq!(field_of(&f.error), Some(field), "{}", f.error);
    assert!(!f.error.is_retryable());
}

/// Opens a database for the test, runs the body (in a task, so a panic still cleans up),
/// drops the test's tables, then re-raises any panic.
pub async fn with_db<F, Fut>(p: Provider, body: F)
where
    F: FnOnce(Arc<Db>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_db_cfg(p, |_| {}, body).await
}

pub async fn with_db_cfg<F, Fut>(p: Provider, edit: impl FnOnce(&mut Json), body: F)
where
    F: FnOnce(Arc<Db>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Arc::new(Db::open_with(p, edit).await);
    let r = tokio::spawn(body(db.clone())).await;
    db.cleanup().await;
    if let Err(e) = r {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test body did not finish: {e}"),
        }
    }
}

/// Polls `getTask` every 100 ms until the task has `status`; panics at `deadline`.
pub async fn wait_for_status(db: &Db, id: &str, status: &str, deadline: Instant) -> Json {
    loop {
        let g = db.get_task(id).await;
        if s(&g, "status") == status {
            return g;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] task {id} is still {} at the deadline, expected {status}: {g}",
            db.p,
            s(&g, "status")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn s<'a>(v: &'a Json, key: &str) -> &'a str {
    v.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

pub fn i(v: &Json, key: &str) -> i64 {
    v.get(key)
        .and_then(Json::as_i64)
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

pub fn time_of(v: &Json, key: &str) -> chrono::DateTime<chrono::Utc> {
    let text = s(v, key);
    assert!(text.ends_with('Z'), "{key} = {text} is not ISO-8601 UTC");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{key} = {text}: {e}"))
        .with_timezone(&chrono::Utc)
}

#[track_caller]
pub fn assert_uuid_v7(id: &str) {
    let u = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id} is not a UUID: {e}"));
    assert_eq!(u.get_version_num(), 7, "{id} is not a UUIDv7");
    assert_eq!(u.to_string(), id, "ids are lowercase hyphenated");
}

// ---------------------------------------------------------------------------------------
// One module per provider
// ---------------------------------------------------------------------------------------

/// One module of `#[tokio::test]`s for one provider, each calling `super::<name>(provider)`.
macro_rules! suite {
    ($module:ident, $provider:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Provider::$provider).await;
                }
            )*
        }
    };
}

/// Instantiates every named `async fn(Provider)` for `postgres`, `mariadb` and `sqlite`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        suite!(postgres, Postgres; $($name),*);
        suite!(mariadb, Mariadb; $($name),*);
        suite!(sqlite, Sqlite; $($name),*);
    };
}
