//! [`RowStream`]: a query whose rows arrive in chunks, made by [`Connector::query_stream`].
//!
//! A task produces chunks into a channel of capacity 1, so the database read waits for
//! the consumer: memory holds a few chunks, never the whole result. The producer runs
//! where `query` would (ticket, pick, acquire, reroute while nothing was handed over
//! yet) and sends the debug data with the last chunk.

use std::sync::Arc;
use std::time::Instant;

use super::query::bound_for;
use super::{Connector, DebugInfo, Failure, OpOptions};
use crate::db::{Chunk, ChunkSink, StatementTiming, Trace};
use crate::op::Op;
use crate::value::{Param, Params};
use crate::{DbcError, Provider};

/// One chunk of a streamed query ([`RowStream::next`]).
#[derive(Debug)]
pub struct StreamChunk {
    /// the rows and counts
    pub chunk: Chunk,
    /// on the last chunk, when debug was on
    pub debug: Option<DebugInfo>,
}

impl From<Chunk> for std::result::Result<StreamChunk, Failure> {
    fn from(chunk: Chunk) -> Self {
        Ok(StreamChunk { chunk, debug: None })
    }
}

type ChunkReply = std::result::Result<StreamChunk, Failure>;

/// What a stream needs to start on its first `next`.
struct StreamStart {
    connector: Arc<Connector>,
    sql: String,
    params: Params,
    chunk_rows: usize,
    opts: OpOptions,
}

/// Stops a [`RowStream`] from anywhere, also while a `next` is waiting.
#[derive(Clone)]
pub struct StreamStop(Arc<tokio::sync::watch::Sender<bool>>);

impl StreamStop {
    /// Ends the stream: a waiting `next` returns `None`, the producing task stops and its
    /// connection goes back to the pool.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A query whose rows arrive in chunks (see the module header). The producing task ends
/// when the last chunk or an error is taken, when [`StreamStop::stop`] is called, or when
/// the stream is dropped.
pub struct RowStream {
    start: Option<StreamStart>,
    rx: Option<tokio::sync::mpsc::Receiver<ChunkReply>>,
    provider: Provider,
    stop: tokio::sync::watch::Receiver<bool>,
    stopper: StreamStop,
    finished: bool,
}

impl RowStream {
    /// A stream of `sql`'s rows on `connector`; nothing runs until the first `next`.
    pub(super) fn new(
        connector: Arc<Connector>,
        sql: String,
        params: Params,
        chunk_rows: usize,
        opts: OpOptions,
    ) -> RowStream {
        let (stopper, stop) = tokio::sync::watch::channel(false);
        let provider = connector.provider();
        RowStream {
            start: Some(StreamStart {
                connector,
                sql,
                params,
                chunk_rows,
                opts,
            }),
            rx: None,
            provider,
            stop,
            stopper: StreamStop(Arc::new(stopper)),
            finished: false,
        }
    }

    /// A handle that stops this stream.
    pub fn stopper(&self) -> StreamStop {
        self.stopper.clone()
    }

    /// Stops the stream (see [`StreamStop::stop`]).
    pub fn close(&mut self) {
        self.stopper.stop();
        self.start = None;
        self.rx = None;
        self.finished = true;
    }

    /// The next chunk; `None` after the last one (marked `done`), after an error, or
    /// once stopped. Must be called inside a tokio runtime (the first call starts the
    /// producing task). Bad input fails here, before any connection is taken.
    pub async fn next(&mut self) -> std::result::Result<Option<StreamChunk>, Failure> {
        if self.finished || *self.stop.borrow() {
            self.close();
            return Ok(None);
        }
        if let Some(start) = self.start.take() {
            match start.begin(self.stop.clone()) {
                Ok(rx) => self.rx = Some(rx),
                Err(f) => {
                    self.close();
                    return Err(f);
                }
            }
        }
        let Some(rx) = self.rx.as_mut() else {
            self.close();
            return Ok(None);
        };
        let mut stop = self.stop.clone();
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = stop.wait_for(|s| *s) => None,
        };
        let stopped = *self.stop.borrow();
        match got {
            Some(Ok(c)) if !c.chunk.done => Ok(Some(c)),
            Some(r) => {
                self.close();
                r.map(Some)
            }
            None if stopped => {
                self.close();
                Ok(None)
            }
            // the producing task ended without its last chunk: it panicked
            None => {
                self.close();
                Err(Failure {
                    error: DbcError::Internal(
                        "the query stream ended without its last chunk; please report this".into(),
                    ),
                    provider: self.provider,
                    operation: "query".into(),
                })
            }
        }
    }
}

impl StreamStart {
    /// Checks the input as `query` does and starts the producing task.
    fn begin(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<ChunkReply>, Failure> {
        let StreamStart {
            connector,
            sql,
            params,
            chunk_rows,
            opts,
        } = self;
        let bound = connector.check_query(&sql, &params)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let gone = tx.clone();
        tokio::spawn(async move {
            // stopping or dropping the consumer drops the producer where it stands: its
            // connection goes back to the pool, which first drains what the server still
            // sends of the abandoned statement
            tokio::select! {
                _ = produce(&connector, sql, bound, params, chunk_rows, opts, tx) => {}
                _ = stop.wait_for(|s| *s) => {}
                _ = gone.closed() => {}
            }
        });
        Ok(rx)
    }
}

/// The producing side of a [`RowStream`]: runs where `query` would and puts chunks into
/// `tx`, the last one with the debug data; an error ends the stream.
async fn produce(
    c: &Connector,
    sql: String,
    bound: (String, Vec<Param>),
    params: Params,
    chunk_rows: usize,
    opts: OpOptions,
    tx: tokio::sync::mpsc::Sender<ChunkReply>,
) {
    let first = c.provider();
    let started = Instant::now();
    let mut trace = opts.debug.then(Trace::default);
    let ticket = c.router.ticket().await;
    let (r, provider) = match c.router.pick() {
        Err(e) => (Err(e), c.provider()),
        Ok(mut b) => {
            let mut attempt = 0;
            loop {
                let mut sink = ChunkSink::new(&tx, chunk_rows);
                let r = async {
                    let stmt = bound_for(b.provider(), first, &bound, &sql, &params)?;
                    let mut conn = c.acquire(b).await?;
                    conn.exec_chunked(&stmt.0, &stmt.1, &mut sink).await
                }
                .await;
                if let (Some(t), Ok(Some(last))) = (trace.as_mut(), &r) {
                    t.statements = vec![StatementTiming {
                        name: "query".into(),
                        ms: sink.db_time.as_secs_f64() * 1000.0,
                        rows: last.row_count,
                    }];
                }
                match &r {
                    // once rows went out, running the statement again would repeat them
                    Err(e) if sink.sent == 0 => match c.router.reroute(b, e, attempt).await {
                        Some(next) => {
                            b = next;
                            attempt += 1;
                        }
                        None => break (r, b.provider()),
                    },
                    _ => break (r, b.provider()),
                }
            }
        }
    };
    // the connection is back in the pool; a slow consumer of the last chunk must not
    // hold off a failback either
    drop(ticket);
    c.metrics.record(Op::Query, started.elapsed(), r.is_ok());
    let reply = match r {
        Ok(Some(chunk)) => Ok(StreamChunk {
            chunk,
            debug: c.debug_info(provider, trace),
        }),
        Ok(None) => return,
        Err(e) => Err(c.fail_on(provider, "query", e)),
    };
    let _ = tx.send(reply).await;
}
