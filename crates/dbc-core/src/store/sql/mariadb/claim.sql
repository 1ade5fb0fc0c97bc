-- Claiming tasks on MariaDB: in one transaction, pick the candidates (skipping rows
-- other claimers hold), start them, read them back (no RETURNING on UPDATE).

-- name: pick_tasks
-- up to ? tasks of queue ? due at ? with their dependencies done, highest priority first;
-- none while the queue is paused (a primary-key probe of the queues table)
-- (neg_priority: an ascending index serves the order)
SELECT id FROM {{prefix}}tasks t WHERE queue = ? AND status = 'pending' AND deps_pending = 0 AND run_at <= ?
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}queues q WHERE q.queue = t.queue AND q.paused_at IS NOT NULL)
ORDER BY neg_priority, run_at, id LIMIT ? FOR UPDATE SKIP LOCKED

-- name: start_tasks
-- {{ids}}: the picked ids, after the five fixed parameters
UPDATE {{prefix}}tasks SET status = 'running', attempts = attempts + 1, worker_id = ?, lease_expires_at = ?,
  started_at = COALESCE(started_at, ?), attempt_started_at = ?, updated_at = ? WHERE id IN ({{ids}})

-- name: read_tasks
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id IN ({{ids}}) ORDER BY neg_priority, run_at, id
