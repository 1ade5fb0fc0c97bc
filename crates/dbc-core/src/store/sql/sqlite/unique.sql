-- Uniqueness windows (docs/API.md, "Uniqueness"): an insert whose key is held by a task
-- that no longer counts as a duplicate moves that task's key out of the unique column
-- (into released_key), then inserts again. Each is conditional, so of two inserts racing
-- for one key only one frees it: the other then finds the new holder.

-- name: release_ended_key
-- uniqueFor 'active': the holder ended
UPDATE {{prefix}}tasks SET released_key = idempotency_key, idempotency_key = NULL
WHERE id = ? AND idempotency_key = ? AND status IN ('completed', 'failed', 'cancelled')

-- name: release_old_key
-- uniqueFor a period: the holder was inserted at or before the window's start
UPDATE {{prefix}}tasks SET released_key = idempotency_key, idempotency_key = NULL
WHERE id = ? AND idempotency_key = ? AND created_at <= ?
