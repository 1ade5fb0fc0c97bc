//! Loading a dialect's SQL files (`sql/<dialect>/*.sql`, embedded with `include_str!`):
//! each statement is a `-- name: <name>` section; `--` lines inside a section are
//! comments. `{{prefix}}` and `{{task_columns}}` are put in once, when a store is built,
//! so no statement is formatted again per call; the markers that depend on a row count
//! (`{{rows}}`, `{{ids}}`, `{{where}}`, `{{limit}}`) are left for the call to fill.

use std::collections::HashMap;

use crate::{DbcError, Result};

/// The columns a [`crate::task::Task`] is read from, in the order of `Task::from_row`.
const TASK_COLUMNS: &str = "id, queue, name, payload, status, priority, run_at, attempts, \
     max_attempts, workflow_id, idempotency_key, worker_id, lease_expires_at, result, \
     last_error, created_at, updated_at, started_at, finished_at, progress";

/// The named statements of one dialect's files, rendered for one table prefix.
pub(crate) struct Sections {
    dialect: &'static str,
    by_name: HashMap<String, String>,
}

impl Sections {
    /// Splits `files` into named statements and puts the prefix in.
    pub(crate) fn parse(dialect: &'static str, files: &[&str], prefix: &str) -> Sections {
        let mut by_name = HashMap::new();
        for file in files {
            let mut name: Option<String> = None;
            let mut body = String::new();
            for line in file.lines().chain(std::iter::once("-- name: ")) {
                if let Some(next) = line.strip_prefix("-- name: ") {
                    if let Some(done) = name.take() {
                        let sql = body
                            .trim()
                            .replace("{{prefix}}", prefix)
                            .replace("{{task_columns}}", TASK_COLUMNS);
                        by_name.insert(done, sql);
                    }
                    body.clear();
                    name = Some(next.trim().to_string()).filter(|n| !n.is_empty());
                } else if name.is_some() && !line.trim_start().starts_with("--") {
                    body.push_str(line.trim_end());
                    body.push('\n');
                }
            }
        }
        Sections { dialect, by_name }
    }

    /// The statement `name`; its absence is a defect of the embedded files.
    pub(crate) fn take(&mut self, name: &str) -> Result<String> {
        self.by_name.remove(name).ok_or_else(|| {
            DbcError::Internal(format!(
                "the {} store has no statement {name:?}",
                self.dialect
            ))
        })
    }
}

macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The statements every store has, each in its own dialect's text.
        pub(crate) struct Statements {
            $($(#[$doc])* pub(crate) $name: String,)*
        }

        impl Statements {
            pub(crate) fn take(s: &mut Sections) -> Result<Statements> {
                Ok(Statements { $($name: s.take(stringify!($name))?,)* })
            }
        }
    };
}

statements! {
    /// new tasks, one `{{rows}}` group each (PostgreSQL: one JSON parameter)
    insert_tasks,
    /// the same, skipping a task whose idempotency key exists
    insert_keyed_tasks,
    insert_dependencies,
    check_dependencies,
    count_dependencies,
    find_duplicates,
    select_task,
    select_task_for_update,
    select_task_with_attempt,
    select_dependencies,
    select_history,
    select_errors,
    list_tasks,
    delete_task,
    start_task,
    record_attempt,
    record_running_attempt,
    complete_task,
    release_dependents,
    record_error,
    /// many error-log rows, one `{{rows}}` group of 8 each
    record_errors,
    retry_task,
    fail_task,
    cancel_task,
    give_back_task,
    find_dependents,
    cancel_dependents,
    requeue_task,
    find_expired,
    /// the expired tasks, locked where the database has row locks
    select_expired,
    record_expired_attempts,
    fail_expired,
    requeue_expired,
    purge_finished,
    count_by_queue_and_status,
    insert_workflow,
    select_workflow,
    count_workflow_tasks,
    /// a queue's state and statistics (`queues.sql`, see [`super::queues`])
    pause_queue,
    resume_queue,
    select_queue,
    select_paused_queues,
    /// tasks by queue and status, `{{where}}` one queue or none
    count_queue_tasks,
    /// schedules (`schedules.sql`, see [`super::schedules`]); `{{limit}}` per round
    upsert_schedule,
    select_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
    delete_schedule,
    select_due_schedules,
    advance_schedule,
    /// a running task's lease and progress, snooze (`lease.sql`, see [`super::lease`])
    heartbeat_task,
    snooze_task,
    running_of_workflow,
    any_rows_left,
    /// the failback's move (`transfer.sql`, see [`super::transfer`])
    transfer_read_all,
    transfer_read_by_task,
    transfer_read_loose,
    transfer_first_tasks,
    transfer_tasks_after,
    transfer_find_keys,
    transfer_upsert,
    transfer_set_column,
    transfer_insert_new,
    transfer_delete_tasks,
    transfer_delete_errors,
    transfer_delete_workflows,
    transfer_delete_queues,
    /// uniqueness windows (`unique.sql`, see [`super::unique`])
    release_ended_key,
    release_old_key,
    /// dead-letter queues (`dead_letter.sql`, see [`super::dead_letter`])
    configure_queue,
    select_dead_letter_queues,
    dead_letter_targets,
    mark_dead_letter,
    transfer_delete_schedules,
}
