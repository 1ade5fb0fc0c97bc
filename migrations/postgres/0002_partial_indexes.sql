-- Most tasks belong to no workflow and carry no idempotency key. Indexing their NULLs
-- cost every insert two index entries that no lookup ever uses (about a fifth of the
-- server's time for a bulk insert); only the rows with a value are indexed now.
-- Both indexes are rebuilt under a lock that blocks writes to the tasks table for the
-- duration (seconds per million tasks).
DROP INDEX {{prefix}}tasks_workflow;
CREATE INDEX {{prefix}}tasks_workflow ON {{prefix}}tasks (workflow_id, status)
  WHERE workflow_id IS NOT NULL;

-- the UNIQUE column constraint of 0001 becomes a partial unique index; inserts name
-- its predicate in ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL
ALTER TABLE {{prefix}}tasks DROP CONSTRAINT {{prefix}}tasks_idempotency_key_key;
CREATE UNIQUE INDEX {{prefix}}tasks_idempotency_key ON {{prefix}}tasks (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
