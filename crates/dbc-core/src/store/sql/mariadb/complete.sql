-- Completing many tasks at once on MariaDB (a batch settle, the completion lane): one
-- statement per step for the whole batch, in one transaction (no RETURNING on UPDATE, no
-- data-modifying CTE). Each {{ids}} list holds the batch's ids (at most 1,000).

-- name: pick_completions
-- the tasks of the batch that are running under a live lease, locked until the
-- transaction ends (the reaper or another worker waits), with the worker holding each:
-- the caller keeps the ones held by the reporting worker
SELECT id, worker_id FROM {{prefix}}tasks
WHERE status = 'running' AND attempts > 0 AND (lease_expires_at IS NULL OR lease_expires_at >= ?)
  AND id IN ({{ids}}) FOR UPDATE

-- name: record_completions
-- each attempt's history row, its worker and start from the task row (as
-- record_running_attempt does for one task); NOT EXISTS: a row an older connector wrote
-- for the attempt gets no second one
INSERT INTO {{prefix}}task_executions (task_id, attempt, worker_id, status, started_at, finished_at, duration_ms)
SELECT k.id, k.attempts, k.worker_id, 'completed', k.attempt_started_at, ?,
  TIMESTAMPDIFF(MICROSECOND, k.attempt_started_at, ?) DIV 1000
FROM {{prefix}}tasks k
WHERE k.attempt_started_at IS NOT NULL AND k.id IN ({{ids}})
  AND NOT EXISTS (SELECT 1 FROM {{prefix}}task_executions x WHERE x.task_id = k.id AND x.attempt = k.attempts)

-- name: complete_picked
-- running → completed, each with its own result ({{results}}: `WHEN ? THEN ?` per task)
UPDATE {{prefix}}tasks SET status = 'completed', result = CASE id {{results}} ELSE NULL END, worker_id = NULL,
  lease_expires_at = NULL, started_at = COALESCE(started_at, ?), finished_at = ?, updated_at = ?
WHERE id IN ({{ids}})

-- name: release_completed
-- the tasks waiting for them wait for as many dependencies less as completed here (the
-- join form looks them up by index: see release_dependents)
UPDATE {{prefix}}tasks k JOIN (SELECT x.task_id, count(*) AS n FROM {{prefix}}task_dependencies x
    WHERE x.depends_on IN ({{ids}}) GROUP BY x.task_id) c ON c.task_id = k.id
SET k.deps_pending = GREATEST(k.deps_pending - c.n, 0) WHERE k.deps_pending > 0

-- name: read_completed
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id IN ({{ids}})
