-- Workflows on MariaDB.

-- name: insert_workflow
INSERT INTO {{prefix}}workflows (id, name, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?)

-- name: select_workflow
SELECT name, metadata FROM {{prefix}}workflows WHERE id = ?

-- name: count_workflow_tasks
SELECT status, count(*), min(started_at), max(finished_at) FROM {{prefix}}tasks WHERE workflow_id = ? GROUP BY status
