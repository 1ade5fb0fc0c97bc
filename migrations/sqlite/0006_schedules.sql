-- Schedules: named recurring tasks, kept in the database so that every runtime sharing
-- it sees the same. A runtime's upkeep enqueues a due schedule's task and moves
-- next_run_at on in one transaction, conditionally on next_run_at's old value, so one
-- runtime wins each tick; the task's idempotency key schedule:<name>:<tick> guards it
-- once more. paused_at set: the schedule fires nowhere.
CREATE TABLE {{prefix}}schedules (
  name          TEXT PRIMARY KEY NOT NULL,
  cron          TEXT NOT NULL,
  time_zone     TEXT NOT NULL,
  queue         TEXT NOT NULL,
  task_name     TEXT NOT NULL,
  payload       TEXT,
  priority      INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL DEFAULT 5,
  paused_at     INTEGER,
  next_run_at   INTEGER NOT NULL,
  last_run_at   INTEGER,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);

-- the upkeep's round: due schedules that are not paused
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (next_run_at) WHERE paused_at IS NULL;
