-- The connector's background rounds on PostgreSQL: expired leases, retention.

-- name: find_expired
-- the common case, nothing expired, costs one indexed read and no write lock
SELECT id FROM {{prefix}}tasks WHERE status = 'running' AND lease_expires_at < $1 LIMIT 1

-- name: select_expired
-- a worker finishing one of them now, or another runtime's reaper, waits or is waited
-- for, and the rows read below are the ones changed below; each with what decides its ending
SELECT id, attempts, max_attempts, worker_id FROM {{prefix}}tasks WHERE status = 'running' AND lease_expires_at < $1 FOR UPDATE

-- name: record_expired_attempts
-- each expired attempt's history row; NOT EXISTS: a row an older connector wrote for the
-- attempt must not make every later round fail on the primary key
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at)
SELECT k.id, k.attempts, k.worker_id, 'lease_expired', k.attempt_started_at, $1::timestamptz FROM {{prefix}}tasks k
WHERE k.status = 'running' AND k.lease_expires_at < $2 AND k.attempt_started_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}task_executions x WHERE x.task_id = k.id AND x.attempt = k.attempts)

-- name: fail_expired
-- the last attempt ran out: the task is dead
UPDATE {{prefix}}tasks SET status = 'failed', finished_at = $1, last_error = 'lease expired', worker_id = NULL,
  lease_expires_at = NULL, updated_at = $2
WHERE status = 'running' AND lease_expires_at < $3 AND attempts >= max_attempts

-- name: requeue_expired
-- otherwise it runs again
UPDATE {{prefix}}tasks SET status = 'pending', last_error = 'lease expired', worker_id = NULL, lease_expires_at = NULL,
  updated_at = $1 WHERE status = 'running' AND lease_expires_at < $2

-- name: purge_finished
-- 500 at a time, so no single statement holds locks for long
DELETE FROM {{prefix}}tasks WHERE id IN (SELECT id FROM {{prefix}}tasks
  WHERE status IN ('completed', 'cancelled') AND finished_at < $1 LIMIT 500)

-- name: count_by_queue_and_status
-- queue depth (metrics, admin API)
SELECT queue, status, count(*) FROM {{prefix}}tasks GROUP BY queue, status ORDER BY queue, status
