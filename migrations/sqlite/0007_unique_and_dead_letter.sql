-- Uniqueness windows and dead-letter queues (docs/API.md, "Uniqueness" and
-- "configureQueue").
-- released_key: an idempotency key a later insert took over (uniqueFor 'active' once this
-- task ended, or a period that is over); moved out of the unique idempotency_key so the
-- new task can hold it, kept here for inspection.
-- dead_letter_of: on a task made by dead-lettering, the id of the task that died (no
-- foreign key: the dead task may be deleted or purged first); such a task is never
-- dead-lettered again, so no chain of dead-letter queues can loop.
ALTER TABLE {{prefix}}tasks ADD COLUMN released_key TEXT;
ALTER TABLE {{prefix}}tasks ADD COLUMN dead_letter_of TEXT;

-- a queue's dead-letter queue: where its tasks that fail their last attempt are copied
ALTER TABLE {{prefix}}queues ADD COLUMN dead_letter_queue TEXT;
