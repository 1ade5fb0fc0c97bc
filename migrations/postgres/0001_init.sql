-- The connector's schema: workflows, tasks, their dependencies, one row per attempt,
-- and the error log. {{prefix}} is the config node's table prefix (validated).
CREATE TABLE {{prefix}}workflows (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  metadata    jsonb,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL
);

CREATE TABLE {{prefix}}tasks (
  id               uuid PRIMARY KEY,
  queue            text NOT NULL,
  name             text,
  payload          jsonb,
  status           text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  priority         integer NOT NULL DEFAULT 0,
  run_at           timestamptz NOT NULL,
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL DEFAULT 5,
  -- the attempts each (re)queue grants; requeueFailedTask adds it to max_attempts
  attempt_budget   integer NOT NULL DEFAULT 5,
  workflow_id      uuid REFERENCES {{prefix}}workflows (id) ON DELETE CASCADE,
  idempotency_key  text UNIQUE,
  deps_pending     integer NOT NULL DEFAULT 0,
  worker_id        text,
  lease_expires_at timestamptz,
  result           jsonb,
  last_error       text,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  started_at       timestamptz,
  finished_at      timestamptz
);

-- Claim order is priority DESC, run_at, id; the partial index holds only claimable rows,
-- so it stays small however many tasks have finished.
CREATE INDEX {{prefix}}tasks_claim ON {{prefix}}tasks (queue, priority DESC, run_at, id)
  WHERE status = 'pending' AND deps_pending = 0;
-- The lease reaper looks only at running tasks.
CREATE INDEX {{prefix}}tasks_lease ON {{prefix}}tasks (lease_expires_at) WHERE status = 'running';
-- listTasks (keyset on id) and queue depth by status.
CREATE INDEX {{prefix}}tasks_queue_status ON {{prefix}}tasks (queue, status, id);
CREATE INDEX {{prefix}}tasks_workflow ON {{prefix}}tasks (workflow_id, status);

CREATE TABLE {{prefix}}task_dependencies (
  task_id    uuid NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  depends_on uuid NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX {{prefix}}task_dependencies_on ON {{prefix}}task_dependencies (depends_on);

CREATE TABLE {{prefix}}task_executions (
  task_id     uuid NOT NULL REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  attempt     integer NOT NULL,
  worker_id   text,
  status      text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'lease_expired')),
  started_at  timestamptz NOT NULL,
  finished_at timestamptz,
  duration_ms bigint,
  PRIMARY KEY (task_id, attempt)
);

CREATE TABLE {{prefix}}error_logs (
  id           uuid PRIMARY KEY,
  task_id      uuid REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  attempt      integer,
  operation    text NOT NULL,
  code         text NOT NULL,
  message      text NOT NULL,
  sql_state    text,
  provider     text,
  created_at   timestamptz NOT NULL
);
CREATE INDEX {{prefix}}error_logs_task ON {{prefix}}error_logs (task_id);
CREATE INDEX {{prefix}}error_logs_created ON {{prefix}}error_logs (created_at);
