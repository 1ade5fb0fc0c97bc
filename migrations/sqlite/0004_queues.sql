-- A queue's own state, kept in the database so that every runtime sharing it sees the
-- same: a paused queue (paused_at set) is claimed by none of them. A row exists for a
-- queue that was ever paused or resumed; a queue with tasks needs none.
CREATE TABLE {{prefix}}queues (
  queue       TEXT PRIMARY KEY NOT NULL,
  paused_at   INTEGER,
  updated_at  INTEGER NOT NULL
);
