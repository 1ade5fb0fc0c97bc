-- Inserting and reading tasks on PostgreSQL.
-- {{prefix}} is the table prefix and {{task_columns}} the columns a Task is read from,
-- both put in once when the store is built; {{rows}} and {{ids}} are filled per call
-- with one placeholder group per row or id.

-- name: insert_tasks
-- the rows travel as one JSON array bound to one parameter: the statement text is the
-- same for any number of rows (one prepared statement per connection), and one value is
-- bound instead of 13 per row (docs/PERFORMANCE.md, "Group commit")
INSERT INTO {{prefix}}tasks (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget,
  workflow_id, idempotency_key, created_at, updated_at)
SELECT x.id, x.queue, x.name, x.payload, 'pending', x.priority, x.run_at, x.max_attempts, x.max_attempts,
  x.workflow_id, x.idempotency_key, $2::timestamptz, $2::timestamptz
FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, queue text, name text, payload jsonb, priority integer,
  run_at timestamptz, max_attempts integer, workflow_id uuid, idempotency_key text)

-- name: insert_keyed_tasks
-- a task whose idempotency key exists is not inserted (the existing one is looked up
-- after); the unique index is partial (migration 0002), so the target names its predicate
INSERT INTO {{prefix}}tasks (id, queue, name, payload, status, priority, run_at, max_attempts, attempt_budget,
  workflow_id, idempotency_key, created_at, updated_at)
SELECT x.id, x.queue, x.name, x.payload, 'pending', x.priority, x.run_at, x.max_attempts, x.max_attempts,
  x.workflow_id, x.idempotency_key, $2::timestamptz, $2::timestamptz
FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, queue text, name text, payload jsonb, priority integer,
  run_at timestamptz, max_attempts integer, workflow_id uuid, idempotency_key text)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING

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
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id = $1

-- name: select_task_for_update
SELECT {{task_columns}} FROM {{prefix}}tasks WHERE id = $1 FOR UPDATE

-- name: select_task_with_attempt
SELECT {{task_columns}}, attempt_started_at FROM {{prefix}}tasks WHERE id = $1

-- name: select_dependencies
SELECT depends_on FROM {{prefix}}task_dependencies WHERE task_id = $1 ORDER BY depends_on

-- name: select_history
SELECT attempt, worker_id, status, started_at, finished_at, duration_ms FROM {{prefix}}task_executions
WHERE task_id = $1 ORDER BY attempt

-- name: select_errors
SELECT attempt, operation, code, message, created_at FROM {{prefix}}error_logs
WHERE task_id = $1 ORDER BY created_at, id

-- name: list_tasks
-- {{where}} holds the filters given (numbered from $1), {{limit}} the placeholder after them
SELECT {{task_columns}} FROM {{prefix}}tasks {{where}} ORDER BY id LIMIT {{limit}}

-- name: delete_task
-- history, error log and dependency rows go with it (ON DELETE CASCADE)
DELETE FROM {{prefix}}tasks WHERE id = $1
