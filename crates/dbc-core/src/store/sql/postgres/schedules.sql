-- Schedules on PostgreSQL (see crate::queue::schedules): named recurring tasks, and the
-- compare-and-set that lets one runtime win each tick.

-- name: upsert_schedule
-- by name: a schedule that exists keeps its created_at and takes everything else
INSERT INTO {{prefix}}schedules (name, cron, time_zone, queue, task_name, payload, priority,
  max_attempts, paused_at, next_run_at, last_run_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12)
ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, time_zone = excluded.time_zone,
  queue = excluded.queue, task_name = excluded.task_name, payload = excluded.payload,
  priority = excluded.priority, max_attempts = excluded.max_attempts,
  paused_at = excluded.paused_at, next_run_at = excluded.next_run_at,
  updated_at = excluded.updated_at

-- name: select_schedule
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules WHERE name = $1

-- name: list_schedules
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules ORDER BY name

-- name: pause_schedule
-- a paused schedule keeps the time it was first paused
UPDATE {{prefix}}schedules SET paused_at = COALESCE(paused_at, $1), updated_at = $2
WHERE name = $3

-- name: resume_schedule
-- the ticks of the pause are not made up: a paused schedule continues from its next tick
-- after now ($1); next_run_at is set first because MariaDB reads the columns a SET
-- changed before it
UPDATE {{prefix}}schedules SET next_run_at = CASE WHEN paused_at IS NULL THEN next_run_at ELSE $1 END,
  paused_at = NULL, updated_at = $2
WHERE name = $3

-- name: delete_schedule
DELETE FROM {{prefix}}schedules WHERE name = $1

-- name: select_due_schedules
-- due at $1 and not paused, the longest due first; {{limit}} per round
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules WHERE paused_at IS NULL AND next_run_at <= $1
ORDER BY next_run_at, name LIMIT {{limit}}

-- name: advance_schedule
-- the compare-and-set of a tick: only the runtime that still sees next_run_at = $5
-- moves it on (to $1); a runtime that lost the race updates no row
UPDATE {{prefix}}schedules SET next_run_at = $1, last_run_at = $2, updated_at = $3
WHERE name = $4 AND next_run_at = $5 AND paused_at IS NULL
