-- A queue's own state on MariaDB (paused or not), and its statistics.

-- name: pause_queue
-- a queue paused already keeps the time it was first paused
INSERT INTO {{prefix}}queues (queue, paused_at, updated_at) VALUES (?, ?, ?)
ON DUPLICATE KEY UPDATE paused_at = COALESCE(paused_at, VALUES(paused_at)), updated_at = VALUES(updated_at)

-- name: resume_queue
-- a row also for a queue never paused here: a resume on the fallback overrides a pause on
-- the primary at failback
INSERT INTO {{prefix}}queues (queue, paused_at, updated_at) VALUES (?, NULL, ?)
ON DUPLICATE KEY UPDATE paused_at = NULL, updated_at = VALUES(updated_at)

-- name: select_queue
SELECT paused_at FROM {{prefix}}queues WHERE queue = ?

-- name: select_paused_queues
SELECT queue, paused_at FROM {{prefix}}queues WHERE paused_at IS NOT NULL ORDER BY queue

-- name: count_queue_tasks
-- per queue and status at the time of the first two parameters: the count, how many are
-- due later, the earliest run_at of those due, how many finished since the third;
-- {{where}}: one queue (the fourth) or none
SELECT queue, status, count(*), count(CASE WHEN run_at > ? THEN 1 END),
  min(CASE WHEN run_at <= ? THEN run_at END), count(CASE WHEN finished_at >= ? THEN 1 END)
FROM {{prefix}}tasks {{where}} GROUP BY queue, status ORDER BY queue, status
