-- The attempt in progress lives on its task row: claiming a task no longer writes a
-- history row. task_executions holds one row per finished attempt, written once, when
-- the attempt ends (completed, failed, cancelled or given back, lease expired).
-- Each statement commits on its own here. (No ADD COLUMN IF NOT EXISTS: MySQL lacks it.)
ALTER TABLE {{prefix}}tasks ADD COLUMN attempt_started_at DATETIME(3) NULL;

-- Attempts running while the database is upgraded move onto their task row, so they
-- finish like any other: their history row is written when they end.
UPDATE {{prefix}}tasks t JOIN {{prefix}}task_executions e ON e.task_id = t.id AND e.attempt = t.attempts
  SET t.attempt_started_at = e.started_at
  WHERE e.status = 'running' AND t.status = 'running';

DELETE e FROM {{prefix}}task_executions e JOIN {{prefix}}tasks t ON t.id = e.task_id AND t.attempts = e.attempt
  WHERE e.status = 'running' AND t.status = 'running' AND t.attempt_started_at = e.started_at;
