//! [`Op`]: the operations a flow can run — the one list of their names in the project.
//!
//! A name is parsed once, where it enters ([`Op::parse`]: the binding, `Connector::execute`,
//! a transaction's steps); past that point the code matches on the enum. The facts that
//! several layers need about an operation are methods here, so each is one rule:
//! whether a single call of it may join a batch of calls ([`Op::joins_batch`], the rule
//! of `executeMany` and of the group-commit lanes), whether the node's queue applies to
//! it ([`Op::uses_default_queue`]) and whether it may be a step of `executeTransaction`
//! ([`Op::in_transaction`]). The binding exports
//! [`Op::ALL`]'s names as `operations()`, which is where the JS side reads the list.

use crate::{DbcError, Result};

/// One operation of the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// SQL with parameters (its own entry point, or a step of `executeTransaction`)
    Query,
    InsertTask,
    ClaimTasks,
    UpdateTaskStatus,
    RequeueFailedTask,
    GetTask,
    ListTasks,
    DeleteTask,
    CreateWorkflow,
    GetWorkflowProgress,
    ExecuteTransaction,
    PauseQueue,
    ResumeQueue,
    GetQueueStats,
    /// a worker's "still alive": pushes its task's lease forward, stores its progress
    Heartbeat,
    /// a worker gives its task back to run later without spending the attempt
    SnoozeTask,
    ConfigureQueue,
    CreateSchedule,
    ListSchedules,
    PauseSchedule,
    ResumeSchedule,
    DeleteSchedule,
    /// a cron pattern's description and next ticks (no database)
    PreviewSchedule,
}

impl Op {
    /// Every operation, `query` first; `Op::ALL[op.index()] == op`.
    pub const ALL: [Op; 23] = [
        Op::Query,
        Op::InsertTask,
        Op::ClaimTasks,
        Op::UpdateTaskStatus,
        Op::RequeueFailedTask,
        Op::GetTask,
        Op::ListTasks,
        Op::DeleteTask,
        Op::CreateWorkflow,
        Op::GetWorkflowProgress,
        Op::ExecuteTransaction,
        Op::PauseQueue,
        Op::ResumeQueue,
        Op::GetQueueStats,
        Op::Heartbeat,
        Op::SnoozeTask,
        Op::ConfigureQueue,
        Op::CreateSchedule,
        Op::ListSchedules,
        Op::PauseSchedule,
        Op::ResumeSchedule,
        Op::DeleteSchedule,
        Op::PreviewSchedule,
    ];

    /// The name flows use (`msg.operation`, metrics labels, error fields).
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Query => "query",
            Op::InsertTask => "insertTask",
            Op::ClaimTasks => "claimTasks",
            Op::UpdateTaskStatus => "updateTaskStatus",
            Op::RequeueFailedTask => "requeueFailedTask",
            Op::GetTask => "getTask",
            Op::ListTasks => "listTasks",
            Op::DeleteTask => "deleteTask",
            Op::CreateWorkflow => "createWorkflow",
            Op::GetWorkflowProgress => "getWorkflowProgress",
            Op::ExecuteTransaction => "executeTransaction",
            Op::PauseQueue => "pauseQueue",
            Op::ResumeQueue => "resumeQueue",
            Op::GetQueueStats => "getQueueStats",
            Op::Heartbeat => "heartbeat",
            Op::SnoozeTask => "snoozeTask",
            Op::ConfigureQueue => "configureQueue",
            Op::CreateSchedule => "createSchedule",
            Op::ListSchedules => "listSchedules",
            Op::PauseSchedule => "pauseSchedule",
            Op::ResumeSchedule => "resumeSchedule",
            Op::DeleteSchedule => "deleteSchedule",
            Op::PreviewSchedule => "previewSchedule",
        }
    }

    /// The operation of a name; `DBC_VALIDATION` (field `operation`, the message lists
    /// the known names) for any other name.
    pub fn parse(name: &str) -> Result<Op> {
        Op::ALL
            .iter()
            .copied()
            .find(|o| o.as_str() == name)
            .ok_or_else(|| {
                DbcError::validation(
                    "operation",
                    format!(
                        "unknown operation {name:?}; known: {}",
                        Op::ALL.map(Op::as_str).join(", ")
                    ),
                )
            })
    }

    /// Its position in [`Op::ALL`] (for per-operation counters).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// True when a single call of it may be run together with concurrent calls of the
    /// same kind (`executeMany`, and the group-commit lanes behind it): a single
    /// `insertTask` or `updateTaskStatus`, never with debug on (debug timings are per
    /// call). Which payloads then share a statement is the lanes' own decision.
    pub const fn joins_batch(self, debug: bool) -> bool {
        !debug && matches!(self, Op::InsertTask | Op::UpdateTaskStatus)
    }

    /// True when the node's queue (`OpOptions::queue`) is the default for input that
    /// names no queue: the tasks it inserts or claims, a workflow's tasks, a
    /// transaction's steps, the queue to pause or resume (which, unlike the others, has
    /// no `default` fallback: with neither, the input is refused). `getQueueStats`
    /// answers for every queue unless its input names one; `createSchedule`'s tasks go to
    /// the node's queue unless its input names one. The editor shows the node's Queue
    /// field for these only.
    pub const fn uses_default_queue(self) -> bool {
        matches!(
            self,
            Op::InsertTask
                | Op::ClaimTasks
                | Op::CreateWorkflow
                | Op::ExecuteTransaction
                | Op::PauseQueue
                | Op::ResumeQueue
                | Op::ConfigureQueue
                | Op::CreateSchedule
        )
    }

    /// True when it may be a step of `executeTransaction` (every operation but itself).
    pub const fn in_transaction(self) -> bool {
        !matches!(self, Op::ExecuteTransaction)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_is_position() {
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(Op::parse(op.as_str()).ok(), Some(*op));
            assert_eq!(op.index(), i);
        }
    }

    #[test]
    fn unknown_names_are_validation_errors_listing_the_known_ones() {
        let e = Op::parse("dropEverything")
            .err()
            .map(|e| (e.code(), e.to_string()));
        let (code, message) = e.unwrap_or_default();
        assert_eq!(code, "DBC_VALIDATION");
        assert!(message.contains("query, insertTask"), "{message}");
        assert!(Op::parse("InsertTask").is_err(), "names are case-sensitive");
    }

    #[test]
    fn one_batching_rule() {
        assert!(Op::InsertTask.joins_batch(false));
        assert!(Op::UpdateTaskStatus.joins_batch(false));
        assert!(!Op::InsertTask.joins_batch(true));
        assert!(!Op::ClaimTasks.joins_batch(false));
        assert!(!Op::ExecuteTransaction.in_transaction());
        assert!(Op::Query.in_transaction());
    }

    #[test]
    fn pause_and_resume_take_the_nodes_queue_stats_answer_for_all() {
        assert!(Op::PauseQueue.uses_default_queue());
        assert!(Op::ResumeQueue.uses_default_queue());
        assert!(!Op::GetQueueStats.uses_default_queue());
        assert!(!Op::PauseQueue.joins_batch(false));
        assert!(Op::ConfigureQueue.uses_default_queue());
    }
}
