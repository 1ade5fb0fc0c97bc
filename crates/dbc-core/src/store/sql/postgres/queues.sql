-- A queue's own state on PostgreSQL (paused or not), and its statistics.

-- name: pause_queue
-- a queue paused already keeps the time it was first paused
INSERT INTO {{prefix}}queues (queue, paused_at, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (queue) DO UPDATE SET paused_at = COALESCE({{prefix}}queues.paused_at, excluded.paused_at),
  updated_at = excluded.updated_at

-- name: resume_queue
-- a row also for a queue never paused here: a resume on the fallback overrides a pause on
-- the primary at failback
INSERT INTO {{prefix}}queues (queue, paused_at, updated_at) VALUES ($1, NULL, $2)
ON CONFLICT (queue) DO UPDATE SET paused_at = NULL, updated_at = excluded.updated_at

-- name: select_queue
SELECT paused_at FROM {{prefix}}queues WHERE queue = $1

-- name: select_paused_queues
SELECT queue, paused_at FROM {{prefix}}queues WHERE paused_at IS NOT NULL ORDER BY queue

-- name: count_queue_tasks
-- per queue and status at time $1 (= $2): the count, how many are due later, the earliest
-- run_at of those due, how many finished since $3; {{where}}: one queue ($4) or none
SELECT queue, status, count(*), count(CASE WHEN run_at > $1 THEN 1 END),
  min(CASE WHEN run_at <= $2 THEN run_at END), count(CASE WHEN finished_at >= $3 THEN 1 END)
FROM {{prefix}}tasks {{where}} GROUP BY queue, status ORDER BY queue, status
