-- Inserting and reading tasks on SQLite.
-- {{prefix}} is the table prefix and {{task_columns}} the columns a Task is read from,
-- both put in once when the store is built; {{rows}} and {{ids}} are filled per call
-- with one placeholder group per row or id.

-- name: insert_tasks
-- {{rows}}: one group of 13 placeholders per task, in the column order
INSERT INTO {{prefix}}tasks (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget,
  workflow_id, idempotency_key, created_at, updated_at) VALUES {{rows}}

-- name: insert_keyed_tasks
-- a task whose idempotency key exists is not inserted (the existing one is looked up after)
INSERT INTO {{prefix}}tasks (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget,
  workflow_id, idempotency_key, created_at, updated_at) VALUES {{rows}}
ON CONFLICT (idempotency_key) DO NOTHING

-- name: insert_dependencies
INSERT INTO {{prefix}}task_dependencies (task_id, depends_on) VALUES {{rows}}

-- name: check_dependencies
-- a dependency must belong to the same workflow
SELECT count(*) FROM {{prefix}}task_dependencies x JOIN {{prefix}}tasks a ON a.id = x.task_id
  JOIN {{prefix}}tasks b ON b.id = x.depends_on
WHERE x.task_id IN ({{ids}}) AND (b.workflow_id IS NULL OR b.workflow_id <> a.workflow_id)

-- name: count_dependencies
UPDATE {{prefix}}tasks SET deps_pending = (SELECT count(*) FROM {{prefix}}task_dependencies x
  JOIN {{prefix}}tasks b ON b.id = x.depends_on WHERE x.task_id = {{prefix}}tasks.id AND b.status <> 'completed')
WHERE id IN ({{ids}})

-- name: find_duplicates
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE idempotency_key IN ({{ids}})

-- name: select_task
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id = ?

-- name: select_task_for_update
-- BEGIN IMMEDIATE already excludes other writers: no row lock
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id = ?

-- name: select_task_with_attempt
SELECT {{task_columns}}, attempt_started_at FROM {{prefix}}tasks WHERE id = ?

-- name: select_dependencies
SELECT depends_on FROM {{prefix}}task_dependencies WHERE task_id = ? ORDER BY depends_on

-- name: select_history
SELECT attempt, worker_id, status, started_at, finished_at, duration_ms FROM {{prefix}}task_executions
WHERE task_id = ? ORDER BY attempt

-- name: select_errors
SELECT attempt, operation, code, message, created_at FROM {{prefix}}error_logs
WHERE task_id = ? ORDER BY created_at, id

-- name: list_tasks
-- {{where}} holds the filters given , {{limit}} the placeholder after them
SELECT {{task_columns}} FROM {{prefix}}tasks {{where}} ORDER BY id LIMIT {{limit}}

-- name: delete_task
-- history, error log and dependency rows go with it (ON DELETE CASCADE)
DELETE FROM {{prefix}}tasks WHERE id = ?
