-- A running task's lease and progress (heartbeat), and snooze, on MariaDB. The rules
-- (who may, what follows) are crate::queue::lease's; the row is locked before.

-- name: heartbeat_task
UPDATE {{prefix}}tasks SET lease_expires_at = ?, progress = ?, updated_at = ? WHERE id = ?

-- name: snooze_task
-- back to pending until the new run_at, without spending the attempt: the budget grows by one, so the
-- attempt numbers in the history stay unique
UPDATE {{prefix}}tasks SET status = 'pending', run_at = ?, max_attempts = max_attempts + 1, worker_id = NULL,
  lease_expires_at = NULL, updated_at = ? WHERE id = ?

-- name: running_of_workflow
SELECT id, name, worker_id, lease_expires_at, progress FROM {{prefix}}tasks
WHERE workflow_id = ? AND status = 'running' ORDER BY id
