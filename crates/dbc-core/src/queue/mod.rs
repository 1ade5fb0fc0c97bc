//! The task queue: its inputs ([`input`]), statuses and transitions ([`status`]), what it
//! returns ([`task`]), its rules ([`service`]), workflows ([`workflows`]), the group
//! commit of concurrent single calls ([`batch`]) and the wake-ups of idle consumers
//! ([`wake`]). Everything that touches a database goes through [`crate::store::Store`].

pub mod batch;
pub mod input;
pub mod service;
pub mod status;
pub mod task;
pub mod wake;
pub mod workflows;

use chrono::{DateTime, Utc};

pub use input::{Claim, Limits, NewTask, StatusChange, TaskFilter};
pub use status::{Backoff, TaskStatus};
pub use task::{ErrorLog, Execution, Task, TaskDetail, TaskPage};

/// The connector's clock, truncated to what every provider stores (milliseconds).
pub fn now() -> DateTime<Utc> {
    let ms = Utc::now().timestamp_millis();
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}

/// A new UUIDv7, as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
