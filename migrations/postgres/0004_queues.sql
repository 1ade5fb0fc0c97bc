-- A queue's own state, kept in the database so that every runtime sharing it sees the
-- same: a paused queue (paused_at set) is claimed by none of them. A row exists for a
-- queue that was ever paused or resumed; a queue with tasks needs none.
CREATE TABLE {{prefix}}queues (
  queue       text PRIMARY KEY,
  paused_at   timestamptz,
  updated_at  timestamptz NOT NULL
);
