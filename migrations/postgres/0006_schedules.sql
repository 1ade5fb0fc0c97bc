-- Schedules: named recurring tasks, kept in the database so that every runtime sharing
-- it sees the same. A runtime's upkeep enqueues a due schedule's task and moves
-- next_run_at on in one transaction, conditionally on next_run_at's old value, so one
-- runtime wins each tick; the task's idempotency key schedule:<name>:<tick> guards it
-- once more. paused_at set: the schedule fires nowhere.
CREATE TABLE {{prefix}}schedules (
  name          text PRIMARY KEY,
  cron          text NOT NULL,
  time_zone     text NOT NULL,
  queue         text NOT NULL,
  task_name     text NOT NULL,
  payload       jsonb,
  priority      integer NOT NULL DEFAULT 0,
  max_attempts  integer NOT NULL DEFAULT 5,
  paused_at     timestamptz,
  next_run_at   timestamptz NOT NULL,
  last_run_at   timestamptz,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL
);

-- the upkeep's round: due schedules that are not paused
CREATE INDEX {{prefix}}schedules_due ON {{prefix}}schedules (next_run_at) WHERE paused_at IS NULL;
