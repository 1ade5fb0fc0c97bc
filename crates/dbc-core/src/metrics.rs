//! Live metrics of one connector: per-operation counts, errors and latency percentiles,
//! pool acquire times, the connection state change log, and their two renderings (JSON
//! for the admin API, the Prometheus text format).
//!
//! Recording is lock-free (atomic counters in fixed log-scale histograms, one per
//! [`Op`], indexed by it), so it costs two clock reads and a few atomic adds per
//! operation whether anyone looks or not.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value as Json;

use crate::db::PoolState;
use crate::op::Op;
use crate::state::ConnState;
use crate::{DbcError, Provider};

/// Histogram buckets: upper bounds growing by 2^(1/4) from 10 µs to ~10 min.
const BUCKETS: usize = 104;

fn bound_us(i: usize) -> f64 {
    10.0 * 2f64.powf(i as f64 / 4.0)
}

/// A latency histogram with atomic buckets.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let i = if us <= 10.0 {
            0
        } else {
            ((us / 10.0).log2() * 4.0).ceil() as usize
        };
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us as u64, Ordering::Relaxed);
    }

    /// The q-quantile in milliseconds (upper bound of its bucket; within 19 %), 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return (bound_us(i) / 1000.0 * 1000.0).round() / 1000.0;
            }
        }
        bound_us(BUCKETS - 1) / 1000.0
    }

    /// Number of recorded durations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of recorded durations in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Cumulative counts at each bucket's upper bound (seconds), for Prometheus.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                acc += b.load(Ordering::Relaxed);
                (bound_us(i) / 1e6, acc)
            })
            .collect()
    }
}

/// Counters of one operation.
#[derive(Default)]
pub struct OpStats {
    /// latency of every call (successful or not)
    pub latency: Histogram,
    /// calls that failed
    pub errors: AtomicU64,
}

/// One connection state change.
#[derive(Debug, Clone, Serialize)]
pub struct StateChange {
    /// when (ISO-8601)
    pub at: String,
    /// the new state
    pub state: ConnState,
    /// why
    pub reason: String,
}

/// Everything a connector measures.
pub struct Metrics {
    /// one per operation, at [`Op::index`]
    ops: [OpStats; Op::ALL.len()],
    /// time to get a pooled connection
    pub acquire: Histogram,
    log: Mutex<VecDeque<StateChange>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ops: std::array::from_fn(|_| OpStats::default()),
            acquire: Histogram::default(),
            log: Mutex::new(VecDeque::new()),
        }
    }
}

/// Summary of one operation (JSON metrics).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpSummary {
    pub count: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Metrics {
    /// Records one finished operation.
    pub fn record(&self, op: Op, took: Duration, ok: bool) {
        let s = &self.ops[op.index()];
        s.latency.record(took);
        if !ok {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters of the operations that ran at least once, with their names.
    fn ran(&self) -> impl Iterator<Item = (&'static str, &OpStats)> {
        Op::ALL
            .iter()
            .zip(&self.ops)
            .filter(|(_, s)| s.latency.count() > 0)
            .map(|(op, s)| (op.as_str(), s))
    }

    /// Appends a state change (the last 50 are kept).
    pub fn state_change(&self, state: ConnState, reason: &str) {
        if let Ok(mut log) = self.log.lock() {
            if log.len() == 50 {
                log.pop_front();
            }
            log.push_back(StateChange {
                at: crate::value::iso_utc(chrono::Utc::now()),
                state,
                reason: reason.to_string(),
            });
        }
    }

    /// The state change log, oldest first.
    pub fn state_log(&self) -> Vec<StateChange> {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Per-operation summaries, for operations that ran at least once.
    pub fn operations(&self) -> Vec<(&'static str, OpSummary)> {
        self.ran()
            .map(|(n, s)| {
                let count = s.latency.count();
                let errors = s.errors.load(Ordering::Relaxed);
                (
                    n,
                    OpSummary {
                        count,
                        errors,
                        error_rate: if count == 0 {
                            0.0
                        } else {
                            errors as f64 / count as f64
                        },
                        p50_ms: s.latency.quantile_ms(0.50),
                        p95_ms: s.latency.quantile_ms(0.95),
                        p99_ms: s.latency.quantile_ms(0.99),
                    },
                )
            })
            .collect()
    }

    /// Metrics as JSON (docs/API.md "Admin HTTP API"): state and its change log, pool gauges
    /// with acquire-time percentiles, per-operation counts, error rates and latency
    /// percentiles, and queue depth by queue and status.
    pub fn to_json(&self, s: Snapshot) -> Json {
        let mut ops = serde_json::Map::new();
        for (name, summary) in self.operations() {
            ops.insert(
                name.to_string(),
                serde_json::to_value(summary).unwrap_or_default(),
            );
        }
        let mut out = serde_json::json!({
            "provider": s.provider,
            "state": s.state,
            "failover": s.failover,
            "primary": s.primary,
            "fallback": s.fallback,
            "lastFailback": s.last_failback,
            "stateLog": self.state_log(),
            "pool": {
                "size": s.pool.size, "idle": s.pool.idle, "inUse": s.pool.in_use,
                "max": s.pool.max, "waiting": s.waiting,
                "acquireMs": { "p50": self.acquire.quantile_ms(0.5), "p99": self.acquire.quantile_ms(0.99) },
            },
            "operations": ops,
        });
        match s.queues {
            Ok(q) => {
                out["queues"] = serde_json::to_value(q).unwrap_or_default();
                out["pausedQueues"] = s
                    .paused
                    .iter()
                    .map(|(queue, at)| serde_json::json!({ "queue": queue, "pausedAt": at }))
                    .collect();
            }
            Err(e) => out["queuesError"] = Json::String(format!("{}: {e}", e.code())),
        }
        out
    }

    /// Metrics in the Prometheus text exposition format; `connection` labels every series.
    pub fn to_prometheus(&self, s: Snapshot, connection: &str) -> String {
        use std::fmt::Write;
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let base = format!(
            "connection=\"{}\",provider=\"{}\"",
            esc(connection),
            s.provider
        );
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP dbc_up 1 while the connection is usable.\n# TYPE dbc_up gauge"
        );
        let _ = writeln!(
            o,
            "dbc_up{{{base}}} {}",
            u8::from(s.state == ConnState::Connected)
        );
        let _ = writeln!(o, "# HELP dbc_pool_connections Pool connections by state.\n# TYPE dbc_pool_connections gauge");
        let _ = writeln!(
            o,
            "dbc_pool_connections{{{base},state=\"idle\"}} {}",
            s.pool.idle
        );
        let _ = writeln!(
            o,
            "dbc_pool_connections{{{base},state=\"in_use\"}} {}",
            s.pool.in_use
        );
        let _ = writeln!(o, "# HELP dbc_pool_max Configured pool maximum.\n# TYPE dbc_pool_max gauge\ndbc_pool_max{{{base}}} {}", s.pool.max);
        let _ = writeln!(o, "# HELP dbc_pool_waiting Operations waiting for a connection.\n# TYPE dbc_pool_waiting gauge\ndbc_pool_waiting{{{base}}} {}", s.waiting);
        let _ = writeln!(
            o,
            "# HELP dbc_operations_total Operations run.\n# TYPE dbc_operations_total counter"
        );
        for (name, st) in self.ran() {
            let _ = writeln!(
                o,
                "dbc_operations_total{{{base},operation=\"{name}\"}} {}",
                st.latency.count()
            );
        }
        let _ = writeln!(o, "# HELP dbc_operation_errors_total Operations that failed.\n# TYPE dbc_operation_errors_total counter");
        for (name, st) in self.ran() {
            let _ = writeln!(
                o,
                "dbc_operation_errors_total{{{base},operation=\"{name}\"}} {}",
                st.errors.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP dbc_operation_duration_seconds Wall time of operations.\n# TYPE dbc_operation_duration_seconds histogram");
        for (name, st) in self.ran() {
            for (le, n) in st.latency.cumulative().into_iter().step_by(4) {
                let _ = writeln!(o, "dbc_operation_duration_seconds_bucket{{{base},operation=\"{name}\",le=\"{le}\"}} {n}");
            }
            let c = st.latency.count();
            let _ = writeln!(o, "dbc_operation_duration_seconds_bucket{{{base},operation=\"{name}\",le=\"+Inf\"}} {c}");
            let _ = writeln!(
                o,
                "dbc_operation_duration_seconds_sum{{{base},operation=\"{name}\"}} {}",
                st.latency.sum_secs()
            );
            let _ = writeln!(
                o,
                "dbc_operation_duration_seconds_count{{{base},operation=\"{name}\"}} {c}"
            );
        }
        if let Ok(depth) = s.queues {
            let _ = writeln!(
                o,
                "# HELP dbc_queue_tasks Tasks by queue and status.\n# TYPE dbc_queue_tasks gauge"
            );
            let mut names: Vec<&str> = depth.iter().map(|q| q.queue.as_str()).collect();
            for q in &depth {
                let _ = writeln!(
                    o,
                    "dbc_queue_tasks{{{base},queue=\"{}\",status=\"{}\"}} {}",
                    esc(&q.queue),
                    q.status,
                    q.count
                );
            }
            // 1 for a paused queue, 0 for every other queue that has tasks
            names.extend(s.paused.iter().map(|(queue, _)| queue.as_str()));
            names.sort_unstable();
            names.dedup();
            let _ = writeln!(
                o,
                "# HELP dbc_queue_paused 1 while the queue is paused (no runtime claims from it).\n# TYPE dbc_queue_paused gauge"
            );
            for name in names {
                let paused = s.paused.iter().any(|(queue, _)| queue == name);
                let _ = writeln!(
                    o,
                    "dbc_queue_paused{{{base},queue=\"{}\"}} {}",
                    esc(name),
                    u8::from(paused)
                );
            }
        }
        o
    }
}

/// What the renderings show besides the counters: the connector's state at the moment
/// they are asked for.
pub struct Snapshot {
    /// the provider in use
    pub provider: Provider,
    /// the connection state
    pub state: ConnState,
    /// true while operations go to the fallback
    pub failover: bool,
    /// the primary's provider
    pub primary: Provider,
    /// the fallback's provider, when there is one
    pub fallback: Option<Provider>,
    /// what the last failback moved (JSON), or null
    pub last_failback: Json,
    /// pool gauges of the database in use
    pub pool: PoolState,
    /// operations waiting for a connection
    pub waiting: u32,
    /// tasks by queue and status, or why they could not be counted
    pub queues: std::result::Result<Vec<QueueDepth>, DbcError>,
    /// the paused queues with the time each was paused (empty when `queues` failed)
    pub paused: Vec<(String, String)>,
}

/// Tasks by queue and status (metrics).
#[derive(Debug, Clone, Serialize)]
pub struct QueueDepth {
    /// queue name
    pub queue: String,
    /// task status
    pub status: String,
    /// number of tasks
    pub count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile_ms(0.5);
        assert!((50.0..=50.0 * 1.19 + 0.01).contains(&p50), "{p50}");
        let p99 = h.quantile_ms(0.99);
        assert!((99.0..=99.0 * 1.19 + 0.01).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
        assert_eq!(Histogram::default().quantile_ms(0.5), 0.0);
    }

    #[test]
    fn counts_and_error_rates() {
        let m = Metrics::default();
        for i in 0..10 {
            m.record(Op::InsertTask, Duration::from_micros(500), i % 5 != 0);
        }
        let ops = m.operations();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].1.count, 10);
        assert_eq!(ops[0].1.errors, 2);
        assert!((ops[0].1.error_rate - 0.2).abs() < 1e-9);
        for i in 0..60 {
            m.state_change(ConnState::Connected, &format!("r{i}"));
        }
        let log = m.state_log();
        assert_eq!(log.len(), 50);
        assert_eq!(log[0].reason, "r10");
    }
}
