//! The old paths of the queue's items, kept while the modules that import them move
//! (`crate::queue` and `crate::store` hold them now).

pub use crate::queue::service::{
    claim_tasks, delete_task, get_task, insert_tasks, list_tasks, purge_finished, reap_expired,
    requeue_failed, update_task_status,
};
pub use crate::store::{in_tx, Dialect};
pub use crate::task::input::{uuid_of, Claim, Limits, NewTask, StatusChange, MAX_BATCH};
pub use crate::task::status::Backoff;
pub use crate::task::{new_id, now};
pub use crate::task::{read_int, read_json, read_text, read_time, Task};
