-- Status changes of one task (updateTaskStatus, requeueFailedTask) on PostgreSQL.

-- name: start_task
-- the attempt lives on the task row until it ends; its history row is written then
UPDATE {{prefix}}tasks SET status = 'running', attempts = $1, worker_id = $2, lease_expires_at = $3,
  started_at = COALESCE(started_at, $4), attempt_started_at = $5, updated_at = $6 WHERE id = $7

-- name: record_attempt
-- an attempt that started and ended at once
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: record_running_attempt
-- the attempt the task row holds ends now: its worker and start come from the row (locked
-- before). An attempt an older connector started has no start here, or already its row:
-- it gets none
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
SELECT k.id, k.attempts, k.worker_id, $1, k.attempt_started_at, $2::timestamptz,
  CAST(EXTRACT(EPOCH FROM ($3::timestamptz - k.attempt_started_at)) * 1000 AS bigint)
FROM {{prefix}}tasks k
WHERE k.id = $4 AND k.attempt_started_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}task_executions x WHERE x.task_id = k.id AND x.attempt = k.attempts)

-- name: complete_task
UPDATE {{prefix}}tasks SET status = 'completed', attempts = $1, result = $2, worker_id = NULL, lease_expires_at = NULL,
  started_at = COALESCE(started_at, $3), finished_at = $4, updated_at = $5 WHERE id = $6

-- name: release_dependents
-- the tasks waiting for task $1 wait for one dependency less
UPDATE {{prefix}}tasks SET deps_pending = deps_pending - 1 WHERE deps_pending > 0 AND id IN
  (SELECT task_id FROM {{prefix}}task_dependencies WHERE depends_on = $1)

-- name: record_error
INSERT INTO {{prefix}}error_logs (id, task_id, attempt, operation, code, message, provider, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)

-- name: record_errors
-- many error-log rows in one statement (the lease reaper's), one `{{rows}}` group of 8 each
INSERT INTO {{prefix}}error_logs (id, task_id, attempt, operation, code, message, provider, created_at)
VALUES {{rows}}

-- name: retry_task
UPDATE {{prefix}}tasks SET status = 'pending', attempts = $1, run_at = $2, last_error = $3, worker_id = NULL,
  lease_expires_at = NULL, updated_at = $4 WHERE id = $5

-- name: fail_task
UPDATE {{prefix}}tasks SET status = 'failed', attempts = $1, last_error = $2, worker_id = NULL, lease_expires_at = NULL,
  finished_at = $3, updated_at = $4 WHERE id = $5

-- name: cancel_task
UPDATE {{prefix}}tasks SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL, finished_at = $1,
  updated_at = $2 WHERE id = $3

-- name: give_back_task
-- running → pending: the worker gives the task back; the attempt counts
UPDATE {{prefix}}tasks SET status = 'pending', worker_id = NULL, lease_expires_at = NULL, updated_at = $1 WHERE id = $2

-- name: find_dependents
SELECT DISTINCT k.id FROM {{prefix}}tasks k JOIN {{prefix}}task_dependencies x ON x.task_id = k.id
WHERE x.depends_on IN ({{ids}}) AND k.status = 'pending'

-- name: cancel_dependents
-- {{ids}} numbered from $3
UPDATE {{prefix}}tasks SET status = 'cancelled', last_error = 'a task it depends on failed or was cancelled',
  finished_at = $1, updated_at = $2 WHERE status = 'pending' AND id IN ({{ids}})

-- name: requeue_task
UPDATE {{prefix}}tasks SET status = 'pending', max_attempts = attempts + attempt_budget, run_at = $1, finished_at = NULL,
  updated_at = $2 WHERE id = $3
