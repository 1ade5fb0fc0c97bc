-- A running task's progress, as its worker's last heartbeat reported it:
-- {"percent": 0-100, "note": any small JSON, "updatedAt": ISO-8601}, or NULL when none
-- was reported. Written only by heartbeat; kept when the task ends.
ALTER TABLE {{prefix}}tasks ADD COLUMN progress TEXT;
