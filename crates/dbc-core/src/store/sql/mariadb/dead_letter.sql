-- Dead-letter queues (docs/API.md, "configureQueue"): a queue's target for its tasks that
-- fail their last attempt, and what dead-lettering reads and marks.

-- name: configure_queue
-- the queue, the time, its dead-letter queue (NULL: none); a paused queue stays paused
INSERT INTO {{prefix}}queues (queue, paused_at, updated_at, dead_letter_queue) VALUES (?, NULL, ?, ?)
ON DUPLICATE KEY UPDATE dead_letter_queue = VALUES(dead_letter_queue), updated_at = VALUES(updated_at)

-- name: select_dead_letter_queues
SELECT queue, dead_letter_queue FROM {{prefix}}queues WHERE dead_letter_queue IS NOT NULL ORDER BY queue

-- name: dead_letter_targets
-- the dead tasks among {{ids}} whose queue has a dead-letter queue, except tasks that were
-- themselves made by dead-lettering (no loop)
SELECT t.id, q.dead_letter_queue FROM {{prefix}}tasks t JOIN {{prefix}}queues q ON q.queue = t.queue
WHERE t.id IN ({{ids}}) AND q.dead_letter_queue IS NOT NULL AND t.dead_letter_of IS NULL ORDER BY t.id

-- name: mark_dead_letter
UPDATE {{prefix}}tasks SET dead_letter_of = ? WHERE id = ?
