-- The attempt in progress lives on its task row: claiming a task no longer writes a
-- history row. task_executions holds one row per finished attempt, written once, when
-- the attempt ends (completed, failed, cancelled or given back, lease expired).
ALTER TABLE {{prefix}}tasks ADD COLUMN attempt_started_at timestamptz;

-- Attempts running while the database is upgraded move onto their task row, so they
-- finish like any other: their history row is written when they end.
UPDATE {{prefix}}tasks t SET attempt_started_at = e.started_at
  FROM {{prefix}}task_executions e
  WHERE e.task_id = t.id AND e.attempt = t.attempts AND e.status = 'running' AND t.status = 'running';

DELETE FROM {{prefix}}task_executions e USING {{prefix}}tasks t
  WHERE e.task_id = t.id AND e.attempt = t.attempts AND e.status = 'running' AND t.status = 'running'
    AND t.attempt_started_at = e.started_at;
