-- Schedules on MariaDB (see crate::queue::schedules): named recurring tasks, and the
-- compare-and-set that lets one runtime win each tick.

-- name: upsert_schedule
-- by name: a schedule that exists keeps its created_at and takes everything else
INSERT INTO {{prefix}}schedules (name, cron, time_zone, queue, task_name, payload, priority,
  max_attempts, paused_at, next_run_at, last_run_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
ON DUPLICATE KEY UPDATE cron = VALUES(cron), time_zone = VALUES(time_zone), queue = VALUES(queue),
  task_name = VALUES(task_name), payload = VALUES(payload), priority = VALUES(priority),
  max_attempts = VALUES(max_attempts), paused_at = VALUES(paused_at),
  next_run_at = VALUES(next_run_at), updated_at = VALUES(updated_at)

-- name: select_schedule
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules WHERE name = ?

-- name: list_schedules
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules ORDER BY name

-- name: pause_schedule
-- a paused schedule keeps the time it was first paused
UPDATE {{prefix}}schedules SET paused_at = COALESCE(paused_at, ?), updated_at = ?
WHERE name = ?

-- name: resume_schedule
-- the ticks of the pause are not made up: a paused schedule continues from its next tick
-- after now (?); next_run_at is set first because MariaDB reads the columns a SET
-- changed before it
UPDATE {{prefix}}schedules SET next_run_at = CASE WHEN paused_at IS NULL THEN next_run_at ELSE ? END,
  paused_at = NULL, updated_at = ?
WHERE name = ?

-- name: delete_schedule
DELETE FROM {{prefix}}schedules WHERE name = ?

-- name: select_due_schedules
-- due at ? and not paused, the longest due first; {{limit}} per round
SELECT name, cron, time_zone, queue, task_name, payload, priority, max_attempts, paused_at,
  next_run_at, last_run_at, created_at, updated_at
FROM {{prefix}}schedules WHERE paused_at IS NULL AND next_run_at <= ?
ORDER BY next_run_at, name LIMIT {{limit}}

-- name: advance_schedule
-- the compare-and-set of a tick: only the runtime that still sees next_run_at = ?
-- moves it on (to ?); a runtime that lost the race updates no row
UPDATE {{prefix}}schedules SET next_run_at = ?, last_run_at = ?, updated_at = ?
WHERE name = ? AND next_run_at = ? AND paused_at IS NULL
