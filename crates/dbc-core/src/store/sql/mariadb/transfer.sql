-- The failback's move on MariaDB: rows read from one database and written to another,
-- over every table of the schema description (migrate::TABLES): {{table}} (its name
-- without the prefix), {{columns}} and {{key}} are that table's; {{rows}} and {{ids}}
-- are filled per chunk.

-- name: any_rows_left
SELECT 1 FROM {{prefix}}tasks UNION ALL SELECT 1 FROM {{prefix}}workflows
UNION ALL SELECT 1 FROM {{prefix}}queues UNION ALL SELECT 1 FROM {{prefix}}schedules LIMIT 1

-- name: transfer_read_all
SELECT {{columns}} FROM {{prefix}}{{table}} ORDER BY {{key}}

-- name: transfer_read_by_task
SELECT {{columns}} FROM {{prefix}}{{table}} WHERE task_id IN ({{ids}}) ORDER BY {{key}}

-- name: transfer_read_loose
SELECT {{columns}} FROM {{prefix}}{{table}} WHERE task_id IS NULL ORDER BY {{key}}

-- name: transfer_first_tasks
SELECT {{columns}} FROM {{prefix}}tasks ORDER BY id LIMIT {{limit}}

-- name: transfer_tasks_after
SELECT {{columns}} FROM {{prefix}}tasks WHERE id > ? ORDER BY id LIMIT {{limit}}

-- name: transfer_find_keys
SELECT id, idempotency_key FROM {{prefix}}tasks WHERE idempotency_key IN ({{ids}})

-- a row whose key exists takes the new values (the fallback's row is the latest state)
-- name: transfer_upsert
INSERT INTO {{prefix}}{{table}} ({{columns}}) VALUES {{rows}} ON DUPLICATE KEY UPDATE {{set}}

-- one column of transfer_upsert's {{set}}
-- name: transfer_set_column
{{column}} = VALUES({{column}})

-- a row whose key exists is left as it is
-- name: transfer_insert_new
INSERT IGNORE INTO {{prefix}}{{table}} ({{columns}}) VALUES {{rows}}

-- name: transfer_delete_tasks
DELETE FROM {{prefix}}tasks WHERE id IN ({{ids}})

-- name: transfer_delete_errors
DELETE FROM {{prefix}}error_logs WHERE id IN ({{ids}})

-- a workflow goes once no task of it is left
-- name: transfer_delete_workflows
DELETE FROM {{prefix}}workflows WHERE id IN ({{ids}}) AND NOT EXISTS (SELECT 1 FROM {{prefix}}tasks t WHERE t.workflow_id = {{prefix}}workflows.id)

-- name: transfer_delete_queues
DELETE FROM {{prefix}}queues WHERE queue IN ({{ids}})

-- name: transfer_delete_schedules
DELETE FROM {{prefix}}schedules WHERE name IN ({{ids}})
