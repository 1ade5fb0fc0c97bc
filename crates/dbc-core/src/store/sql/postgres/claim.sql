-- Claiming and completing many tasks at once on PostgreSQL: one statement each.

-- name: claim_tasks
-- lock the candidates (skipping rows other claimers hold) and start them: up to $3 tasks
-- of queue $1 that are due at $2 with their dependencies done, highest priority first;
-- none while the queue is paused (a primary-key probe of the queues table)
WITH c AS (SELECT id FROM {{prefix}}tasks WHERE queue = $1 AND status = 'pending' AND deps_pending = 0 AND run_at <= $2
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}queues q WHERE q.queue = $1 AND q.paused_at IS NOT NULL)
  ORDER BY priority DESC, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
u AS (UPDATE {{prefix}}tasks t SET status = 'running', attempts = t.attempts + 1, worker_id = $4, lease_expires_at = $5,
  started_at = COALESCE(t.started_at, $2), attempt_started_at = $2, updated_at = $2 FROM c WHERE t.id = c.id RETURNING t.*)
SELECT {{task_columns}} FROM u ORDER BY priority DESC, run_at, id

-- name: complete_tasks
-- running → completed for each {id, worker, result} of $1 that is running under a live
-- lease held by that worker; writes the attempt's history row (its worker the reporting
-- one, its start the task row's attempt_started_at, which the completion keeps) and
-- releases the dependents; returns the tasks it took
WITH i AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS i(id uuid, worker text, result jsonb)),
u AS (UPDATE {{prefix}}tasks t SET status = 'completed', result = i.result, worker_id = NULL, lease_expires_at = NULL,
    started_at = COALESCE(t.started_at, $2::timestamptz), finished_at = $2::timestamptz, updated_at = $2::timestamptz FROM i
  WHERE t.id = i.id AND t.status = 'running' AND t.attempts > 0
    AND (t.lease_expires_at IS NULL OR t.lease_expires_at >= $2::timestamptz)
    AND t.worker_id = i.worker RETURNING t.*, i.worker AS attempt_worker),
e AS (INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
  SELECT u.id, u.attempts, u.attempt_worker, 'completed', u.attempt_started_at, $2::timestamptz,
    CAST(EXTRACT(EPOCH FROM ($2::timestamptz - u.attempt_started_at)) * 1000 AS bigint)
  FROM u WHERE u.attempt_started_at IS NOT NULL),
r AS (UPDATE {{prefix}}tasks k SET deps_pending = GREATEST(k.deps_pending - c.n, 0)
  FROM (SELECT dep.task_id, count(*) AS n FROM {{prefix}}task_dependencies dep JOIN u ON dep.depends_on = u.id
        GROUP BY dep.task_id) c WHERE k.id = c.task_id AND k.deps_pending > 0)
SELECT {{task_columns}} FROM u
