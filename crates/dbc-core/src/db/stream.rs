//! Row streaming: a statement's rows handed over in chunks ([`Chunk`]) through a bounded
//! channel ([`ChunkSink`]), so the database read waits while the consumer is behind.

use std::time::{Duration, Instant};

use crate::value::Value;
use crate::{DbcError, Result};

/// One piece of a streamed result ([`Conn::exec_chunked`]).
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    /// column names, in order (repeated in every chunk: a few strings per chunk)
    pub columns: Vec<String>,
    /// up to `chunk_rows` rows
    pub rows: Vec<Vec<Value>>,
    /// rows handed over so far, this chunk's included; on the last chunk of a statement
    /// that returned no rows, the rows it changed (the meaning `rowCount` has in `query`)
    pub row_count: u64,
    /// true on the last chunk
    pub done: bool,
    /// auto-increment id of an INSERT (MariaDB, SQLite), on the last chunk
    pub last_insert_id: Option<Value>,
}

/// Where [`Conn::exec_chunked`] puts rows: it fills one chunk at a time and hands full
/// ones to a bounded channel, so the database read waits while the consumer is behind.
/// One full chunk is held back until the next row shows there is more, so the last
/// chunk handed over is always the one marked `done`.
pub struct ChunkSink<'a, T> {
    pub(super) tx: &'a tokio::sync::mpsc::Sender<T>,
    pub(super) size: usize,
    pub(super) limit: Option<Duration>,
    pub(super) deadline: Option<tokio::time::Instant>,
    pub(super) columns: Vec<String>,
    pub(super) current: Vec<Vec<Value>>,
    pub(super) held: Option<Vec<Vec<Value>>>,
    pub(super) rows_affected: u64,
    pub(super) last_insert_id: Option<Value>,
    /// rows handed over or waiting to be
    pub(super) rows: u64,
    /// chunks handed over
    pub sent: u64,
    /// time spent in the database, not waiting for the consumer
    pub db_time: Duration,
    pub(super) since: Instant,
}

impl<'a, T: From<Chunk>> ChunkSink<'a, T> {
    /// A sink of chunks of `size` rows (at least 1) into `tx`.
    pub fn new(tx: &'a tokio::sync::mpsc::Sender<T>, size: usize) -> ChunkSink<'a, T> {
        ChunkSink {
            tx,
            size: size.max(1),
            limit: None,
            deadline: None,
            columns: Vec::new(),
            current: Vec::new(),
            held: None,
            rows_affected: 0,
            last_insert_id: None,
            rows: 0,
            sent: 0,
            db_time: Duration::ZERO,
            since: Instant::now(),
        }
    }

    pub(super) fn restart_clock(&mut self) {
        self.since = Instant::now();
        self.deadline = self.limit.map(|l| tokio::time::Instant::now() + l);
    }

    /// Waits for `f` within the current chunk's deadline.
    pub(super) async fn wait<R>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<R, sqlx::Error>>,
    ) -> Result<R> {
        let r = match self.deadline {
            None => Ok(f.await),
            Some(d) => tokio::time::timeout_at(d, f).await,
        };
        match r {
            Ok(r) => r.map_err(|e| DbcError::from_sqlx(e, true)),
            Err(_) => Err(DbcError::Connection {
                message: format!(
                    "no answer from the database within {} ms",
                    self.limit.unwrap_or_default().as_millis()
                ),
                outcome_unknown: true,
            }),
        }
    }

    /// Adds one row; false when the consumer went away.
    pub(super) async fn row(&mut self, values: Vec<Value>) -> bool {
        if let Some(rows) = self.held.take() {
            self.db_time += self.since.elapsed();
            let chunk = Chunk {
                columns: self.columns.clone(),
                row_count: self.rows,
                rows,
                done: false,
                last_insert_id: None,
            };
            if self.tx.send(T::from(chunk)).await.is_err() {
                return false;
            }
            self.sent += 1;
            self.restart_clock();
        }
        self.current.push(values);
        self.rows += 1;
        if self.current.len() >= self.size {
            self.held = Some(std::mem::replace(
                &mut self.current,
                Vec::with_capacity(self.size),
            ));
        }
        true
    }

    pub(super) fn last(&mut self) -> Chunk {
        self.db_time += self.since.elapsed();
        let rows = self
            .held
            .take()
            .unwrap_or_else(|| std::mem::take(&mut self.current));
        Chunk {
            columns: std::mem::take(&mut self.columns),
            row_count: if self.rows == 0 {
                self.rows_affected
            } else {
                self.rows
            },
            rows,
            done: true,
            last_insert_id: self.last_insert_id.take(),
        }
    }
}
