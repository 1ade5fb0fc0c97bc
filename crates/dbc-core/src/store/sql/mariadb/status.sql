-- Status changes of one task (updateTaskStatus, requeueFailedTask) on MariaDB.

-- name: start_task
-- the attempt lives on the task row until it ends; its history row is written then
UPDATE {{prefix}}tasks SET status = 'running', attempts = ?, worker_id = ?, lease_expires_at = ?,
  started_at = COALESCE(started_at, ?), attempt_started_at = ?, updated_at = ? WHERE id = ?

-- name: record_attempt
-- an attempt that started and ended at once
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: record_running_attempt
-- the attempt the task row holds ends now: its worker and start come from the row (locked
-- before). An attempt an older connector started has no start here, or already its row:
-- it gets none
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
SELECT k.id, k.attempts, k.worker_id, ?, k.attempt_started_at, ?,
  TIMESTAMPDIFF(MICROSECOND, k.attempt_started_at, ?) DIV 1000
FROM {{prefix}}tasks k
WHERE k.id = ? AND k.attempt_started_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}task_executions x WHERE x.task_id = k.id AND x.attempt = k.attempts)

-- name: complete_task
UPDATE {{prefix}}tasks SET status = 'completed', attempts = ?, result = ?, worker_id = NULL, lease_expires_at = NULL,
  started_at = COALESCE(started_at, ?), finished_at = ?, updated_at = ? WHERE id = ?

-- name: release_dependents
-- the tasks waiting for task ? wait for one dependency less. MariaDB runs
-- `UPDATE ... WHERE id IN (SELECT ...)` as a scan of the whole tasks table, and under
-- REPEATABLE READ that locks every row until commit, serializing all workers: the join
-- form looks the dependents up by index
UPDATE {{prefix}}tasks k JOIN {{prefix}}task_dependencies x ON x.task_id = k.id SET k.deps_pending = k.deps_pending - 1
WHERE x.depends_on = ? AND k.deps_pending > 0

-- name: record_error
INSERT INTO {{prefix}}error_logs (id, task_id, attempt, operation, code, message, provider, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: record_errors
-- many error-log rows in one statement (the lease reaper's), one `{{rows}}` group of 8 each
INSERT INTO {{prefix}}error_logs (id, task_id, attempt, operation, code, message, provider, created_at)
VALUES {{rows}}

-- name: retry_task
UPDATE {{prefix}}tasks SET status = 'pending', attempts = ?, run_at = ?, last_error = ?, worker_id = NULL,
  lease_expires_at = NULL, updated_at = ? WHERE id = ?

-- name: fail_task
UPDATE {{prefix}}tasks SET status = 'failed', attempts = ?, last_error = ?, worker_id = NULL, lease_expires_at = NULL,
  finished_at = ?, updated_at = ? WHERE id = ?

-- name: cancel_task
UPDATE {{prefix}}tasks SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL, finished_at = ?,
  updated_at = ? WHERE id = ?

-- name: give_back_task
-- running → pending: the worker gives the task back; the attempt counts
UPDATE {{prefix}}tasks SET status = 'pending', worker_id = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?

-- name: find_dependents
SELECT DISTINCT k.id FROM {{prefix}}tasks k JOIN {{prefix}}task_dependencies x ON x.task_id = k.id
WHERE x.depends_on IN ({{ids}}) AND k.status = 'pending'

-- name: cancel_dependents
UPDATE {{prefix}}tasks SET status = 'cancelled', last_error = 'a task it depends on failed or was cancelled',
  finished_at = ?, updated_at = ? WHERE status = 'pending' AND id IN ({{ids}})

-- name: requeue_task
UPDATE {{prefix}}tasks SET status = 'pending', max_attempts = attempts + attempt_budget, run_at = ?, finished_at = NULL,
  updated_at = ? WHERE id = ?
