-- The connector's schema: workflows, tasks, their dependencies, one row per attempt,
-- and the error log. {{prefix}} is the config node's table prefix (validated).
-- Ids are UUIDv7 text, times INTEGER epoch milliseconds (UTC), JSON is TEXT.
CREATE TABLE {{prefix}}workflows (
  id          TEXT PRIMARY KEY NOT NULL,
  name        TEXT NOT NULL,
  metadata    TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);

CREATE TABLE {{prefix}}tasks (
  id               TEXT PRIMARY KEY NOT NULL,
  queue            TEXT NOT NULL,
  name             TEXT,
  payload          TEXT,
  status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  priority         INTEGER NOT NULL DEFAULT 0,
  run_at           INTEGER NOT NULL,
  attempts         INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL DEFAULT 5,
  attempt_budget   INTEGER NOT NULL DEFAULT 5,
  workflow_id      TEXT REFERENCES {{prefix}}workflows (id) ON DELETE CASCADE,
  idempotency_key  TEXT UNIQUE,
  deps_pending     INTEGER NOT NULL DEFAULT 0,
  worker_id        TEXT,
  lease_expires_at INTEGER,
  result           TEXT,
  last_error       TEXT,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER
);
CREATE INDEX {{prefix}}tasks_claim ON {{prefix}}tasks (queue, priority DESC, run_at, id)
  WHERE status = 'pending' AND deps_pending = 0;
CREATE INDEX {{prefix}}tasks_lease ON {{prefix}}tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX {{prefix}}tasks_queue_status ON {{prefix}}tasks (queue, status, id);
CREATE INDEX {{prefix}}tasks_workflow ON {{prefix}}tasks (workflow_id, status);

CREATE TABLE {{prefix}}task_dependencies (
  task_id    TEXT NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  depends_on TEXT NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX {{prefix}}task_dependencies_on ON {{prefix}}task_dependencies (depends_on);

CREATE TABLE {{prefix}}task_executions (
  task_id     TEXT NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  worker_id   TEXT,
  status      TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'lease_expired')),
  started_at  INTEGER NOT NULL,
  finished_at INTEGER,
  duration_ms INTEGER,
  PRIMARY KEY (task_id, attempt)
);

CREATE TABLE {{prefix}}error_logs (
  id           TEXT PRIMARY KEY NOT NULL,
  task_id      TEXT REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  attempt      INTEGER,
  operation    TEXT NOT NULL,
  code         TEXT NOT NULL,
  message      TEXT NOT NULL,
  sql_state    TEXT,
  provider     TEXT,
  created_at   INTEGER NOT NULL
);
CREATE INDEX {{prefix}}error_logs_task ON {{prefix}}error_logs (task_id);
CREATE INDEX {{prefix}}error_logs_created ON {{prefix}}error_logs (created_at);
