-- The attempt in progress lives on its task row: claiming a task no longer writes a
-- history row. task_executions holds one row per finished attempt, written once, when
-- the attempt ends (completed, failed, cancelled or given back, lease expired).
ALTER TABLE {{prefix}}tasks ADD COLUMN attempt_started_at INTEGER;

-- Attempts running while the database is upgraded move onto their task row, so they
-- finish like any other: their history row is written when they end.
UPDATE {{prefix}}tasks SET attempt_started_at = (
    SELECT e.started_at FROM {{prefix}}task_executions e
    WHERE e.task_id = {{prefix}}tasks.id AND e.attempt = {{prefix}}tasks.attempts AND e.status = 'running')
  WHERE status = 'running';

DELETE FROM {{prefix}}task_executions
  WHERE status = 'running' AND EXISTS (
    SELECT 1 FROM {{prefix}}tasks t
    WHERE t.id = {{prefix}}task_executions.task_id AND t.attempts = {{prefix}}task_executions.attempt
      AND t.status = 'running' AND t.attempt_started_at = {{prefix}}task_executions.started_at);
