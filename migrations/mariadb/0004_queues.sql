-- A queue's own state, kept in the database so that every runtime sharing it sees the
-- same: a paused queue (paused_at set) is claimed by none of them. A row exists for a
-- queue that was ever paused or resumed; a queue with tasks needs none.
CREATE TABLE IF NOT EXISTS {{prefix}}queues (
  queue       VARCHAR(191) NOT NULL PRIMARY KEY,
  paused_at   DATETIME(3) NULL,
  updated_at  DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
