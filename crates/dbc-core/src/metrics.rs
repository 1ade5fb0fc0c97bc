//! Live metrics of one connector: per-operation counts, errors and latency percentiles,
//! pool acquire times, and the connection state change log.
//!
//! Recording is lock-free (atomic counters in fixed log-scale histograms), so it costs
//! two clock reads and a few atomic adds per operation whether anyone looks or not.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

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
    pub state: String,
    /// why
    pub reason: String,
}

/// Everything a connector measures.
pub struct Metrics {
    ops: Vec<(&'static str, OpStats)>,
    /// time to get a pooled connection
    pub acquire: Histogram,
    log: Mutex<VecDeque<StateChange>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            // every operation the connector runs: `query` and the queue operations
            ops: std::iter::once("query")
                .chain(crate::connector::OPERATIONS.iter().copied())
                .map(|o| (o, OpStats::default()))
                .collect(),
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
    /// Records one finished operation (unknown names are not counted).
    pub fn record(&self, operation: &str, took: Duration, ok: bool) {
        if let Some((_, s)) = self.ops.iter().find(|(n, _)| *n == operation) {
            s.latency.record(took);
            if !ok {
                s.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Appends a state change (the last 50 are kept).
    pub fn state_change(&self, state: &str, reason: &str) {
        if let Ok(mut log) = self.log.lock() {
            if log.len() == 50 {
                log.pop_front();
            }
            log.push_back(StateChange {
                at: crate::value::iso_utc(chrono::Utc::now()),
                state: state.to_string(),
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
        self.ops
            .iter()
            .filter(|(_, s)| s.latency.count() > 0)
            .map(|(n, s)| {
                let count = s.latency.count();
                let errors = s.errors.load(Ordering::Relaxed);
                (
                    *n,
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

    /// Raw histograms of operations that ran, for the Prometheus exposition.
    pub fn histograms(&self) -> impl Iterator<Item = (&'static str, &OpStats)> {
        self.ops
            .iter()
            .filter(|(_, s)| s.latency.count() > 0)
            .map(|(n, s)| (*n, s))
    }
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
            m.record("insertTask", Duration::from_micros(500), i % 5 != 0);
        }
        m.record("nope", Duration::from_micros(1), true);
        let ops = m.operations();
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].1.count, 10);
        assert_eq!(ops[0].1.errors, 2);
        assert!((ops[0].1.error_rate - 0.2).abs() < 1e-9);
        for i in 0..60 {
            m.state_change("connected", &format!("r{i}"));
        }
        let log = m.state_log();
        assert_eq!(log.len(), 50);
        assert_eq!(log[0].reason, "r10");
    }
}
