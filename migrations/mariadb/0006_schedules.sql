-- Schedules: named recurring tasks, kept in the database so that every runtime sharing
-- it sees the same. A runtime's upkeep enqueues a due schedule's task and moves
-- next_run_at on in one transaction, conditionally on next_run_at's old value, so one
-- runtime wins each tick; the task's idempotency key schedule:<name>:<tick> guards it
-- once more. paused_at set: the schedule fires nowhere.
CREATE TABLE IF NOT EXISTS {{prefix}}schedules (
  name          VARCHAR(191) NOT NULL PRIMARY KEY,
  cron          VARCHAR(255) NOT NULL,
  time_zone     VARCHAR(64) NOT NULL,
  queue         VARCHAR(191) NOT NULL,
  task_name     VARCHAR(255) NOT NULL,
  payload       JSON NULL,
  priority      INT NOT NULL DEFAULT 0,
  max_attempts  INT NOT NULL DEFAULT 5,
  paused_at     DATETIME(3) NULL,
  next_run_at   DATETIME(3) NOT NULL,
  last_run_at   DATETIME(3) NULL,
  created_at    DATETIME(3) NOT NULL,
  updated_at    DATETIME(3) NOT NULL,
  -- the upkeep's round: due schedules (no partial indexes here)
  KEY {{prefix}}schedules_due (next_run_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
