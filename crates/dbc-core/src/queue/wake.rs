//! Wake-ups for idle consumers, so a new task starts in milliseconds instead of at the
//! next poll.
//!
//! Inside one runtime, [`Waker::poke`] wakes the consumers of a queue directly. Across
//! runtimes on PostgreSQL, pokes are coalesced per queue over a few milliseconds and sent
//! as one `pg_notify` from a separate statement — never inside the insert's own
//! transaction, where a NOTIFY per insert would serialize every commit
//! (docs/PERFORMANCE.md, "Group commit"). A `LISTEN` connection is opened only once a consumer waits.
//! Polling stays the safety net: every wait ends after its timeout.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long pokes are gathered before one NOTIFY per queue goes out.
const COALESCE: Duration = Duration::from_millis(5);

/// Most queues remembered (a poke for a queue beyond it still wakes its waiters).
const MAX_QUEUES: usize = 10_000;

/// One queue's wake-up: the waiters, and a flag for a poke nobody was waiting for yet
/// (a consumer between an empty claim and its wait would miss it otherwise).
#[derive(Default)]
struct Slot {
    notify: Notify,
    poked: std::sync::atomic::AtomicBool,
}

/// Per-connector wake-up hub.
pub struct Waker {
    waiters: Mutex<HashMap<String, Arc<Slot>>>,
    pending: Mutex<HashSet<String>>,
    flush: Notify,
    pg: Option<(PgPool, String)>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Waker {
    /// A waker; with a PostgreSQL pool, pokes also reach other runtimes on `channel`.
    pub fn new(pg: Option<(PgPool, String)>) -> Arc<Waker> {
        // NOTIFY goes through its own one-connection pool (checked before each use), so
        // it outlives the operations' pool being replaced after an outage
        let pg = pg.map(|(pool, channel)| {
            let options = (*pool.connect_options()).clone();
            let own = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .idle_timeout(Some(Duration::from_secs(60)))
                .connect_lazy_with(options);
            (own, channel)
        });
        let w = Arc::new(Waker {
            waiters: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            flush: Notify::new(),
            pg,
            tasks: Mutex::new(Vec::new()),
        });
        if w.pg.is_some() {
            let flusher = tokio::spawn(flush_loop(Arc::downgrade(&w)));
            w.push_task(flusher);
        }
        w
    }

    fn push_task(&self, h: JoinHandle<()>) {
        if let Ok(mut t) = self.tasks.lock() {
            t.push(h);
        }
    }

    fn entry(&self, queue: &str) -> Option<Arc<Slot>> {
        let mut map = self.waiters.lock().ok()?;
        if let Some(s) = map.get(queue) {
            return Some(s.clone());
        }
        if map.len() >= MAX_QUEUES {
            return None;
        }
        let s = Arc::new(Slot::default());
        map.insert(queue.to_string(), s.clone());
        Some(s)
    }

    /// Wakes this runtime's consumers of `queue`, and the next one to wait.
    fn wake_local(&self, queue: &str) {
        if let Some(s) = self.entry(queue) {
            s.poked.store(true, std::sync::atomic::Ordering::Release);
            s.notify.notify_waiters();
        }
    }

    /// New work in `queue`: wakes local consumers now, remote ones via NOTIFY shortly.
    pub fn poke(&self, queue: &str) {
        self.wake_local(queue);
        if self.pg.is_some() {
            if let Ok(mut p) = self.pending.lock() {
                p.insert(queue.to_string());
            }
            self.flush.notify_one();
        }
    }

    /// Waits until `queue` is poked or `timeout` passes; true when woken.
    pub async fn wait(self: &Arc<Self>, queue: &str, timeout: Duration) -> bool {
        self.ensure_listener();
        let Some(slot) = self.entry(queue) else {
            tokio::time::sleep(timeout).await;
            return false;
        };
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // a poke since the last wait (while the caller was claiming) counts at once
        if slot.poked.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return true;
        }
        let woken = tokio::time::timeout(timeout, notified).await.is_ok();
        if woken {
            slot.poked
                .store(false, std::sync::atomic::Ordering::Release);
        }
        woken
    }

    fn ensure_listener(self: &Arc<Self>) {
        let Some((pool, channel)) = &self.pg else {
            return;
        };
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        if tasks.len() >= 2 {
            return; // flusher + listener running
        }
        // LISTEN holds its connection for good: give it its own one-connection pool, so
        // the operations' pool keeps every connection it was configured with
        let options = (*pool.connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let (channel, weak) = (channel.clone(), Arc::downgrade(self));
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let r: Result<(), sqlx::Error> = async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(&channel).await?;
                    loop {
                        let n = l.recv().await?;
                        match weak.upgrade() {
                            Some(w) => w.wake_local(n.payload()),
                            None => return Ok(()),
                        }
                    }
                }
                .await;
                if r.is_ok() || weak.strong_count() == 0 {
                    pool.close().await;
                    return;
                }
                tracing::debug!("LISTEN connection lost, retrying: {:?}", r.err());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }));
    }

    /// Stops the background tasks and closes the NOTIFY connection.
    pub async fn stop(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for h in t.drain(..) {
                h.abort();
            }
        }
        if let Some((pool, _)) = &self.pg {
            pool.close().await;
        }
    }
}

async fn flush_loop(weak: std::sync::Weak<Waker>) {
    loop {
        let Some(w) = weak.upgrade() else { return };
        w.flush.notified().await;
        tokio::time::sleep(COALESCE).await;
        let queues: Vec<String> = w
            .pending
            .lock()
            .map(|mut p| p.drain().collect())
            .unwrap_or_default();
        let Some((pool, channel)) = &w.pg else { return };
        for q in queues {
            let r = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel.as_str())
                .bind(q)
                .execute(pool)
                .await;
            if let Err(e) = r {
                tracing::debug!("pg_notify failed: {e}");
            }
        }
    }
}
