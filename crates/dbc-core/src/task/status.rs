//! A task's status, the transitions `updateTaskStatus` allows between statuses, and the
//! backoff before a failed attempt runs again (docs/API.md, updateTaskStatus; docs/USER-GUIDE.md, "Retries and backoff").

use serde::{Serialize, Serializer};

use crate::{DbcError, Result};

/// Where a task is in its life. Stored and serialized as the lowercase word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// waiting to be claimed (due at `runAt`, once its dependencies completed)
    Pending,
    /// claimed by a worker under a lease
    Running,
    /// done, with a result
    Completed,
    /// out of attempts (kept for inspection)
    Failed,
    /// cancelled by hand, or because a task it depends on will never complete
    Cancelled,
}

impl TaskStatus {
    /// Every status, in the order of a task's life.
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or given word.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Parses the `field` of an input, or says which words are allowed.
    pub fn parse_field(field: &str, s: &str) -> Result<TaskStatus> {
        TaskStatus::parse(s).ok_or_else(|| TaskStatus::invalid(field))
    }

    /// The validation error of a `field` that is not a status.
    pub fn invalid(field: &str) -> DbcError {
        let words: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
        DbcError::validation(field, format!("status must be one of {}", words.join(", ")))
    }

    /// Whether `updateTaskStatus` may move a task from `self` to `to`.
    pub fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Pending, Running | Completed | Failed | Cancelled)
                | (Running, Pending | Completed | Failed | Cancelled)
                | (Failed, Cancelled)
        )
    }

    /// True for the statuses a task never leaves by itself.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Backoff settings for failed attempts.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// delay after the first failure
    pub base_ms: u64,
    /// the cap
    pub max_ms: u64,
}

impl Backoff {
    /// Delay before attempt `attempts + 1`: `min(max, base · 2^(attempts−1))`, then
    /// "equal jitter" — half of it fixed, half random — so retries of a burst spread out.
    pub fn delay_ms(&self, attempts: i64) -> u64 {
        let exp = (attempts.max(1) - 1).min(40) as u32;
        let full = self
            .base_ms
            .saturating_mul(1u64 << exp.min(40))
            .min(self.max_ms);
        let half = full / 2;
        half + jitter(half + 1)
    }
}

fn jitter(below: u64) -> u64 {
    // the random bits of a UUIDv7 are a good enough source here
    let r = uuid::Uuid::now_v7().as_u128() as u64;
    r % below.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 10_000,
        };
        for _ in 0..50 {
            let d1 = b.delay_ms(1);
            assert!((500..=1000).contains(&d1), "{d1}");
            let d10 = b.delay_ms(10);
            assert!((5000..=10_000).contains(&d10), "{d10}");
        }
    }

    #[test]
    fn statuses_round_trip_and_transitions_follow_the_spec() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(TaskStatus::parse("done"), None);
        assert!(TaskStatus::Running.can_become(TaskStatus::Pending));
        assert!(!TaskStatus::Failed.can_become(TaskStatus::Pending));
        assert!(!TaskStatus::Completed.can_become(TaskStatus::Cancelled));
    }
}
