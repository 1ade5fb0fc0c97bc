-- Workflows on PostgreSQL.

-- name: insert_workflow
INSERT INTO {{prefix}}workflows (id, name, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)

-- name: select_workflow
SELECT name, metadata FROM {{prefix}}workflows WHERE id = $1

-- name: count_workflow_tasks
SELECT status, count(*), min(started_at), max(finished_at) FROM {{prefix}}tasks WHERE workflow_id = $1 GROUP BY status
