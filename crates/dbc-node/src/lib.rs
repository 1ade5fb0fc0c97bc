//! # dbc-node — the napi-rs binding of dbc-core
//!
//! Thin by design: it converts JS values to core types on the JS thread, runs the core's
//! async operations on napi's tokio runtime, and converts results back. Two things live
//! only here:
//! - **Errors** ([`Reply`]): napi async functions can only reject with a status-based
//!   error, which would lose `code`. A `Reply::Err` instead builds the JS `Error` itself
//!   when the promise settles (on the JS thread) — `code`, `retryable`, `provider`,
//!   `operation`, and `field` / `index` / `sqlState` / `outcome` where they apply — and
//!   rejects with that object. This is the one place a core error becomes a JS error.
//! - **Panics**: every operation runs in its own tokio task; a panic there becomes a
//!   `DBC_INTERNAL` rejection instead of unwinding into Node.
//!
//! [`QueryStream`] (from `Connector.queryStream`) hands a query's rows over in chunks:
//! each `next()` converts one chunk to JS objects, so a large result never sits in
//! memory whole, neither in Rust nor in JS.
#![deny(clippy::all)]

mod convert;

use std::future::Future;
use std::sync::Arc;

use dbc_core::connector::{Failure, OpOptions, OpValue, Outcome};
use dbc_core::{ConnectorConfig, DbcError, Provider};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use convert::{ChunkJs, JsParams, Reply, Rows};

/// Per-call options.
#[napi(object)]
pub struct CallOptions {
    /// collect `_debug` timings and pool state
    pub debug: Option<bool>,
    /// default queue for tasks without one
    pub queue: Option<String>,
}

fn op_options(o: Option<CallOptions>) -> OpOptions {
    {
        match o {
            Some(o) => OpOptions {
                debug: o.debug.unwrap_or(false),
                queue: o.queue,
            },
            None => OpOptions::default(),
        }
    }
}

fn failure(error: DbcError, provider: Provider, operation: &str) -> Failure {
    Failure {
        error,
        provider,
        operation: operation.to_string(),
    }
}

/// A panic is reported as one line on stderr (then as `DBC_INTERNAL` to the caller)
/// instead of the default multi-page backtrace in the Node-RED log.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // warnings and errors of the core (reaper, migrations) go to stderr, which Node-RED
        // shows in its log; DBC_LOG=info|debug shows more
        let level = match std::env::var("DBC_LOG").as_deref() {
            Ok("debug") => tracing::Level::DEBUG,
            Ok("info") => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("[database-connector] internal error (panic){at}: {what}");
        }));
    });
}

/// Runs `fut` in its own task so a panic is caught and reported as `DBC_INTERNAL`.
async fn guarded<T: Send + 'static>(
    provider: Provider,
    operation: &'static str,
    fut: impl Future<Output = std::result::Result<T, Failure>> + Send + 'static,
) -> Reply<T> {
    match tokio::spawn(fut).await {
        Ok(Ok(v)) => Reply::Ok(v),
        Ok(Err(f)) => Reply::Err(f),
        Err(join) => {
            let why = if join.is_panic() {
                "a panic in the addon"
            } else {
                "the task was cancelled"
            };
            Reply::Err(failure(
                DbcError::Internal(format!("{operation} failed with {why}; please report this")),
                provider,
                operation,
            ))
        }
    }
}

/// `msg.payload` as the JSON text database-service.js sends.
fn parse_payload(
    text: &str,
    provider: Provider,
    operation: &str,
) -> std::result::Result<serde_json::Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        failure(
            DbcError::validation("payload", format!("invalid JSON: {e}")),
            provider,
            operation,
        )
    })
}

/// One call's item of an `executeMany` answer: `{"provider", "value"}` or `{"error"}`.
fn push_batch_item(
    out: &mut String,
    o: std::result::Result<Outcome, Failure>,
    provider: Provider,
    operation: &str,
) {
    let f = match o {
        Ok(Outcome {
            provider,
            value: OpValue::Json(v),
            ..
        }) => {
            out.push_str(r#"{"provider":""#);
            out.push_str(provider.as_str());
            out.push_str(r#"","value":"#);
            out.push_str(&v.to_string());
            out.push('}');
            return;
        }
        Ok(_) => failure(
            DbcError::Internal("a call of a batch answered with rows".into()),
            provider,
            operation,
        ),
        Err(f) => f,
    };
    out.push_str(r#"{"error":"#);
    out.push_str(&serde_json::Value::Object(convert::failure_json(&f)).to_string());
    out.push('}');
}

fn outcome_reply(o: Outcome) -> convert::OutcomeJs {
    convert::OutcomeJs(o)
}

/// One config node's pools: opened by [`open`], closed by [`Connector::close`].
#[napi]
pub struct Connector {
    inner: Arc<dbc_core::Connector>,
}

/// Opens a connector from its configuration (JSON text, see docs/API.md): probes the
/// database, opens the pool and applies migrations when `autoMigrate` is on.
/// Rejects with `DBC_CONFIG`, `DBC_CONNECTION` or `DBC_SCHEMA`.
#[napi(ts_return_type = "Promise<Connector>")]
pub fn open(env: &Env, config_json: String) -> Result<PromiseRaw<'_, Reply<Connector>>> {
    install_panic_hook();
    env.spawn_future(async move {
        let provider = ConnectorConfig::from_json(&config_json)
            .ok()
            .and_then(|c| c.primary.provider().ok())
            .unwrap_or(Provider::Sqlite);
        Ok(guarded(provider, "connect", async move {
            let cfg = ConnectorConfig::from_json(&config_json)
                .map_err(|e| failure(e, provider, "connect"))?;
            dbc_core::Connector::open(cfg)
                .await
                .map(|c| Connector { inner: Arc::new(c) })
                .map_err(|e| failure(e, provider, "connect"))
        })
        .await)
    })
}

/// Connects once with the given settings (JSON text of a connector config) and reports
/// `{provider, serverVersion, latencyMs}`; keeps no connection open.
#[napi(ts_return_type = "Promise<{provider: string, serverVersion: string, latencyMs: number}>")]
pub fn test_connection(
    env: &Env,
    config_json: String,
) -> Result<PromiseRaw<'_, Reply<serde_json::Value>>> {
    env.spawn_future(async move {
        Ok(guarded(Provider::Sqlite, "test", async move {
            let cfg = ConnectorConfig::from_json(&config_json)
                .map_err(|e| failure(e, Provider::Sqlite, "test"))?;
            let provider = cfg.primary.provider().unwrap_or(Provider::Sqlite);
            let r = dbc_core::connector::test_connection(&cfg.primary, &cfg.pool)
                .await
                .map_err(|e| failure(e, provider, "test"))?;
            serde_json::to_value(r)
                .map_err(|e| failure(DbcError::Internal(e.to_string()), provider, "test"))
        })
        .await)
    })
}

#[napi]
impl Connector {
    /// The provider in use: `postgres`, `mariadb` or `sqlite`.
    #[napi(getter)]
    pub fn provider(&self) -> String {
        self.inner.provider().as_str().to_string()
    }

    /// `connected`, `failover`, `reconnecting` or `disconnected`.
    #[napi(getter)]
    pub fn state(&self) -> String {
        self.inner.connection_state().to_string()
    }

    /// Pool gauges `{size, idle, inUse, max, waiting}`.
    #[napi]
    pub fn pool(&self) -> serde_json::Value {
        serde_json::to_value(self.inner.pool_state()).unwrap_or_default()
    }

    /// Runs a queue operation by name; `payload_json` is the JSON text of `msg.payload`.
    /// Resolves `{provider, valueJson, debug?}`: the result as JSON text, which
    /// database-service.js parses (faster than building objects through napi).
    #[napi(
        ts_return_type = "Promise<{provider: string, valueJson?: string, value?: any, debug?: any}>"
    )]
    pub fn execute<'e>(
        &self,
        env: &'e Env,
        operation: String,
        payload_json: String,
        options: Option<CallOptions>,
    ) -> Result<PromiseRaw<'e, Reply<convert::OutcomeJs>>> {
        let inner = self.inner.clone();
        let opts = op_options(options);
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "execute", async move {
                let payload = parse_payload(&payload_json, provider, &operation)?;
                inner
                    .execute(&operation, payload, &opts)
                    .await
                    .map(outcome_reply)
            })
            .await)
        })
    }

    /// Runs several single-task calls of the operations `gatheredOperations()` names
    /// (`insertTask` of one task, `updateTaskStatus`) as concurrent calls, crossing from
    /// JS into Rust and back once for all of them: database-service.js gathers the calls
    /// of one event-loop turn here. Resolves JSON text, an array in call order of
    /// `{"provider", "value"}` or `{"error": {...}}` (the fields a rejected `execute`
    /// carries). Debug calls never come here.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn execute_many<'e>(
        &self,
        env: &'e Env,
        operations: Vec<String>,
        payloads_json: Vec<String>,
        options: Option<CallOptions>,
    ) -> Result<PromiseRaw<'e, Reply<String>>> {
        let inner = self.inner.clone();
        let opts = op_options(options);
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "execute", async move {
                if operations.len() != payloads_json.len() {
                    return Err(failure(
                        DbcError::validation("payload", "one payload per operation"),
                        provider,
                        "execute",
                    ));
                }
                let calls = operations.iter().zip(&payloads_json).map(|(op, text)| {
                    let (inner, opts) = (&inner, &opts);
                    async move {
                        if !GATHERED.contains(&op.as_str()) || opts.debug {
                            return Err(failure(
                                DbcError::validation(
                                    "operation",
                                    format!("{op} does not run in a batch of calls"),
                                ),
                                provider,
                                op,
                            ));
                        }
                        let payload = parse_payload(text, provider, op)?;
                        inner.execute(op, payload, opts).await
                    }
                });
                let outcomes = futures_util::future::join_all(calls).await;
                let mut out = String::from("[");
                for (i, o) in outcomes.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_batch_item(&mut out, o, provider, &operations[i]);
                }
                out.push(']');
                Ok(out)
            })
            .await)
        })
    }

    /// Runs SQL. `params`: an array (positional `$1` / `?`) or an object (`:name`).
    /// Resolves `{provider, rows, rowCount, lastInsertId?, debug?}`.
    #[napi(
        ts_args_type = "sql: string, params?: any[] | Record<string, any> | null, options?: CallOptions",
        ts_return_type = "Promise<{provider: string, rows: any[], rowCount: number, lastInsertId?: number | string, debug?: any}>"
    )]
    pub fn query<'e>(
        &self,
        env: &'e Env,
        sql: String,
        params: JsParams,
        options: Option<CallOptions>,
    ) -> Result<PromiseRaw<'e, Reply<Rows>>> {
        let inner = self.inner.clone();
        let opts = op_options(options);
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "query", async move {
                let params = params.0.map_err(|e| failure(e, provider, "query"))?;
                inner.query(&sql, params, &opts).await.map(Rows)
            })
            .await)
        })
    }

    /// Runs SQL like `query`, its rows handed over `chunk_rows` at a time by the returned
    /// stream's `next()`. Nothing runs until the first `next()`; input errors reject there.
    #[napi(
        ts_args_type = "sql: string, params: any[] | Record<string, any> | null | undefined, chunkRows: number, options?: CallOptions"
    )]
    pub fn query_stream(
        &self,
        sql: String,
        params: JsParams,
        chunk_rows: u32,
        options: Option<CallOptions>,
    ) -> QueryStream {
        let provider = self.inner.provider();
        let (stream, early) = match params.0 {
            Ok(p) => (
                Some(self.inner.query_stream(
                    sql,
                    p,
                    chunk_rows.max(1) as usize,
                    op_options(options),
                )),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        let stop = stream.as_ref().map(|s| s.stopper());
        QueryStream {
            provider,
            stream: Arc::new(tokio::sync::Mutex::new(stream)),
            early: std::sync::Mutex::new(early),
            stop,
        }
    }

    /// Resolves `true` as soon as new work may be in `queue` (inserted here, or announced
    /// by PostgreSQL NOTIFY from another runtime), `false` after `timeout_ms`.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn wait_for_tasks<'e>(
        &self,
        env: &'e Env,
        queue: String,
        timeout_ms: u32,
    ) -> Result<PromiseRaw<'e, bool>> {
        let inner = self.inner.clone();
        env.spawn_future(async move { Ok(inner.wait_for_tasks(&queue, timeout_ms as u64).await) })
    }

    /// Tasks by queue and status: `[{queue, status, count}]`.
    #[napi(ts_return_type = "Promise<Array<{queue: string, status: string, count: number}>>")]
    pub fn queue_depth<'e>(
        &self,
        env: &'e Env,
    ) -> Result<PromiseRaw<'e, Reply<serde_json::Value>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "queueDepth", async move {
                let d = inner
                    .queue_depth()
                    .await
                    .map_err(|e| failure(e, provider, "queueDepth"))?;
                serde_json::to_value(d)
                    .map_err(|e| failure(DbcError::Internal(e.to_string()), provider, "queueDepth"))
            })
            .await)
        })
    }

    /// Metrics as JSON: state and its change log, pool, per-operation counts, error
    /// rates and latency percentiles, queue depth.
    #[napi(ts_return_type = "Promise<any>")]
    pub fn metrics<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, serde_json::Value>> {
        let inner = self.inner.clone();
        env.spawn_future(async move { Ok(inner.metrics_json().await) })
    }

    /// Metrics in the Prometheus text exposition format, labelled with `connection`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn metrics_prometheus<'e>(
        &self,
        env: &'e Env,
        connection: String,
    ) -> Result<PromiseRaw<'e, String>> {
        let inner = self.inner.clone();
        env.spawn_future(async move { Ok(inner.metrics_prometheus(&connection).await) })
    }

    /// Applied and pending migrations: `{provider, applied, pending}`.
    #[napi(ts_return_type = "Promise<{provider: string, applied: any[], pending: any[]}>")]
    pub fn schema<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Reply<serde_json::Value>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "schema", async move {
                let s = inner
                    .schema_status()
                    .await
                    .map_err(|e| failure(e, provider, "schema"))?;
                serde_json::to_value(s)
                    .map_err(|e| failure(DbcError::Internal(e.to_string()), provider, "schema"))
            })
            .await)
        })
    }

    /// Moves what was written to the fallback during an outage back to the primary and
    /// routes new operations there (failback `manual`); resolves what was moved
    /// `{workflows, tasks, executions, errors, dependencies, mergedByKey, ms}`. Rejects
    /// with `DBC_CONNECTION` while the primary does not answer, `DBC_CONFIG` without a
    /// fallback.
    #[napi(ts_return_type = "Promise<any>")]
    pub fn failback<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Reply<serde_json::Value>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "failback", async move {
                let r = inner
                    .failback()
                    .await
                    .map_err(|e| failure(e, provider, "failback"))?;
                serde_json::to_value(r)
                    .map_err(|e| failure(DbcError::Internal(e.to_string()), provider, "failback"))
            })
            .await)
        })
    }

    /// Why the connection state last changed (the newest state log entry's reason).
    #[napi(getter)]
    pub fn state_reason(&self) -> String {
        self.inner.state_reason()
    }

    /// True while operations go to the fallback database.
    #[napi(getter)]
    pub fn failover(&self) -> bool {
        self.inner.failover()
    }

    /// Applies pending migrations; resolves the list applied.
    #[napi(ts_return_type = "Promise<any[]>")]
    pub fn migrate<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Reply<serde_json::Value>>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            let provider = inner.provider();
            Ok(guarded(provider, "migrate", async move {
                let s = inner
                    .migrate()
                    .await
                    .map_err(|e| failure(e, provider, "migrate"))?;
                serde_json::to_value(s)
                    .map_err(|e| failure(DbcError::Internal(e.to_string()), provider, "migrate"))
            })
            .await)
        })
    }

    /// Closes the pools, waiting for operations in flight. Later calls reject with
    /// `DBC_CONNECTION` ("the connector is closed").
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, ()>> {
        let inner = self.inner.clone();
        env.spawn_future(async move {
            inner.close().await;
            Ok(())
        })
    }

    /// Test hook: panics inside the addon's runtime, to prove a panic becomes a
    /// `DBC_INTERNAL` rejection and never reaches Node.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn panic_for_test<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Reply<()>>> {
        let provider = self.inner.provider();
        env.spawn_future(async move {
            Ok(guarded(provider, "panicForTest", async move {
                if provider.as_str().len() < usize::MAX {
                    panic!("deliberate test panic");
                }
                Ok(())
            })
            .await)
        })
    }
}

/// A query's rows in chunks, made by `Connector.queryStream`.
#[napi]
pub struct QueryStream {
    provider: Provider,
    stream: Arc<tokio::sync::Mutex<Option<dbc_core::connector::RowStream>>>,
    /// a parameter that could not be converted: the first `next()` rejects with it
    early: std::sync::Mutex<Option<DbcError>>,
    stop: Option<dbc_core::connector::StreamStop>,
}

#[napi]
impl QueryStream {
    /// The next chunk: `{rows, done, rowCount, lastInsertId?, debug?}`. `rowCount` counts
    /// the rows handed over so far (on the last chunk of a statement without rows: the
    /// rows it changed); `lastInsertId` and `debug` come with the last chunk (`done`).
    /// After the last chunk, an error or `close()`, resolves `{rows: [], done: true}`.
    #[napi(
        ts_return_type = "Promise<{rows: any[], done: boolean, rowCount?: number, lastInsertId?: number | string, debug?: any}>"
    )]
    pub fn next<'e>(&self, env: &'e Env) -> Result<PromiseRaw<'e, Reply<ChunkJs>>> {
        let provider = self.provider;
        let stream = self.stream.clone();
        let early = self.early.lock().ok().and_then(|mut e| e.take());
        env.spawn_future(async move {
            Ok(guarded(provider, "query", async move {
                if let Some(e) = early {
                    return Err(failure(e, provider, "query"));
                }
                let mut guard = stream.lock().await;
                match guard.as_mut() {
                    Some(s) => s.next().await.map(ChunkJs),
                    None => Ok(ChunkJs(None)),
                }
            })
            .await)
        })
    }

    /// Stops the stream: a pending `next()` resolves `{rows: [], done: true}`, and the
    /// query's connection goes back to the pool.
    #[napi]
    pub fn close(&self) {
        if let Some(s) = &self.stop {
            s.stop();
        }
        if let Ok(mut e) = self.early.lock() {
            e.take();
        }
    }
}

/// The version of the addon (the crate version).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The operations `Connector.execute` runs, in the core's order (`query` has its own
/// entry point). database-service.js reads its list from here, so it is kept in one place.
#[napi]
pub fn operations() -> Vec<String> {
    dbc_core::connector::OPERATIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Single-task operations `Connector.executeMany` accepts: database-service.js gathers
/// the calls of one event-loop turn of these (one task, without debug) into one call.
const GATHERED: &[&str] = &["insertTask", "updateTaskStatus"];

/// The operations whose single-task calls (one task, without debug) may be gathered
/// into one `Connector.executeMany` call.
#[napi]
pub fn gathered_operations() -> Vec<String> {
    GATHERED.iter().map(|s| s.to_string()).collect()
}
