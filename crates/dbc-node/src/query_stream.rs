//! The `QueryStream` class: a query's rows in chunks, made by `Connector.queryStream`;
//! each `next()` converts one chunk to JS objects, so a large result never sits in
//! memory whole, neither in Rust nor in JS.

use std::sync::Arc;

use dbc_core::{DbcError, Provider};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::convert::ChunkJs;
use crate::error::{failure, guarded, Reply};

/// A query's rows in chunks, made by `Connector.queryStream`.
#[napi]
pub struct QueryStream {
    provider: Provider,
    stream: Arc<tokio::sync::Mutex<Option<dbc_core::connector::RowStream>>>,
    /// a parameter that could not be converted: the first `next()` rejects with it
    early: std::sync::Mutex<Option<DbcError>>,
    stop: Option<dbc_core::connector::StreamStop>,
}

impl QueryStream {
    /// The JS handle of `stream`; an input error (a parameter that could not be
    /// converted) is kept for the first `next()` to reject with.
    pub(crate) fn new(
        provider: Provider,
        stream: std::result::Result<dbc_core::connector::RowStream, DbcError>,
    ) -> QueryStream {
        let (stream, early) = match stream {
            Ok(s) => (Some(s), None),
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
