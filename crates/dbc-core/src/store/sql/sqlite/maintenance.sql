-- The connector's background rounds on SQLite: expired leases, retention.

-- name: find_expired
-- the common case, nothing expired, costs one indexed read and no write lock
SELECT id FROM {{prefix}}tasks WHERE status = 'running' AND lease_expires_at < ? LIMIT 1

-- name: select_expired
-- the tasks whose lease expired, with what decides their ending (BEGIN IMMEDIATE already
-- excludes other writers: no row lock)
SELECT id, attempts, max_attempts, worker_id FROM {{prefix}}tasks WHERE status = 'running' AND lease_expires_at < ?

-- name: record_expired_attempts
-- each expired attempt's history row; NOT EXISTS: a row an older connector wrote for the
-- attempt must not make every later round fail on the primary key
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at)
SELECT k.id, k.attempts, k.worker_id, 'lease_expired', k.attempt_started_at, ? FROM {{prefix}}tasks k
WHERE k.status = 'running' AND k.lease_expires_at < ? AND k.attempt_started_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}task_executions x WHERE x.task_id = k.id AND x.attempt = k.attempts)

-- name: fail_expired
-- the last attempt ran out: the task is dead
UPDATE {{prefix}}tasks SET status = 'failed', finished_at = ?, last_error = 'lease expired', worker_id = NULL,
  lease_expires_at = NULL, updated_at = ?
WHERE status = 'running' AND lease_expires_at < ? AND attempts >= max_attempts

-- name: requeue_expired
-- otherwise it runs again
UPDATE {{prefix}}tasks SET status = 'pending', last_error = 'lease expired', worker_id = NULL, lease_expires_at = NULL,
  updated_at = ? WHERE status = 'running' AND lease_expires_at < ?

-- name: purge_finished
-- 500 at a time, so no single statement holds locks for long
DELETE FROM {{prefix}}tasks WHERE id IN (SELECT id FROM {{prefix}}tasks
  WHERE status IN ('completed', 'cancelled') AND finished_at < ? LIMIT 500)

-- name: count_by_queue_and_status
-- queue depth (metrics, admin API)
SELECT queue, status, count(*) FROM {{prefix}}tasks GROUP BY queue, status ORDER BY queue, status
