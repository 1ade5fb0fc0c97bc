//! The `Connector` class: one config node's pools — `open` and `testConnection` make or
//! try one; its methods run operations, SQL and streams, and read state, schema and
//! metrics.

use std::sync::Arc;

use dbc_core::connector::{Failure, OpOptions, OpValue, Outcome};
use dbc_core::{ConnectorConfig, DbcError, Op, Provider};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::{self, JsParams, Rows};
use crate::error::{failure, failure_json, guarded, Reply};
use crate::query_stream::QueryStream;

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
            value: OpValue::Answer(v),
            ..
        }) => match v.to_text() {
            Ok(text) => {
                out.push_str(r#"{"provider":""#);
                out.push_str(provider.as_str());
                out.push_str(r#"","value":"#);
                out.push_str(&text);
                out.push('}');
                return;
            }
            Err(e) => failure(e, provider, operation),
        },
        Ok(_) => failure(
            DbcError::Internal("a call of a batch answered with rows".into()),
            provider,
            operation,
        ),
        Err(f) => f,
    };
    out.push_str(r#"{"error":"#);
    out.push_str(&serde_json::Value::Object(failure_json(&f)).to_string());
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
    crate::install_panic_hook();
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

    /// Runs several single-task operations (`insertTask` of one task, `updateTaskStatus`)
    /// as concurrent calls, crossing from JS into Rust and back once for all of them:
    /// database-service.js gathers the calls of one event-loop turn here. Resolves JSON
    /// text, an array in call order of `{"provider", "value"}` or `{"error": {...}}` (the
    /// fields a rejected `execute` carries). Debug calls never come here.
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
                        let Some(parsed) = Op::parse(op).ok().filter(|o| o.joins_batch(opts.debug))
                        else {
                            return Err(failure(
                                DbcError::validation(
                                    "operation",
                                    format!("{op} does not run in a batch of calls"),
                                ),
                                provider,
                                op,
                            ));
                        };
                        let payload = parse_payload(text, provider, op)?;
                        inner.run(parsed, payload, opts).await
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
        let stream = params.0.map(|p| {
            self.inner
                .query_stream(sql, p, chunk_rows.max(1) as usize, op_options(options))
        });
        QueryStream::new(self.inner.provider(), stream)
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
