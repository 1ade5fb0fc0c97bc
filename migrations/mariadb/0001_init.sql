-- The connector's schema: workflows, tasks, their dependencies, one row per attempt,
-- and the error log. {{prefix}} is the config node's table prefix (validated).
-- Ids are UUIDv7 text (CHAR(36) ascii), times DATETIME(3) in UTC, JSON is LONGTEXT
-- checked by JSON_VALID (MariaDB's JSON type). Every CREATE has IF NOT EXISTS: DDL commits
-- implicitly here, so a migration interrupted half-way must be able to run again.
CREATE TABLE IF NOT EXISTS {{prefix}}workflows (
  id          CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
  name        VARCHAR(255) NOT NULL,
  metadata    JSON NULL,
  created_at  DATETIME(3) NOT NULL,
  updated_at  DATETIME(3) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS {{prefix}}tasks (
  id               CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
  queue            VARCHAR(191) NOT NULL,
  name             VARCHAR(255) NULL,
  payload          JSON NULL,
  status           VARCHAR(16) CHARACTER SET ascii NOT NULL,
  priority         INT NOT NULL DEFAULT 0,
  run_at           DATETIME(3) NOT NULL,
  attempts         INT NOT NULL DEFAULT 0,
  max_attempts     INT NOT NULL DEFAULT 5,
  attempt_budget   INT NOT NULL DEFAULT 5,
  workflow_id      CHAR(36) CHARACTER SET ascii NULL,
  idempotency_key  VARCHAR(191) NULL,
  deps_pending     INT NOT NULL DEFAULT 0,
  worker_id        VARCHAR(191) NULL,
  lease_expires_at DATETIME(3) NULL,
  result           JSON NULL,
  last_error       TEXT NULL,
  created_at       DATETIME(3) NOT NULL,
  updated_at       DATETIME(3) NOT NULL,
  started_at       DATETIME(3) NULL,
  finished_at      DATETIME(3) NULL,
  -- claim order is priority DESC; an ascending key on -priority lets one index serve
  -- it on every MariaDB (descending indexes are only honoured from 10.8).
  neg_priority     INT AS (-priority) STORED,
  CONSTRAINT {{prefix}}tasks_status_ck CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  UNIQUE KEY {{prefix}}tasks_idempotency (idempotency_key),
  -- no partial indexes in MariaDB: status and deps_pending lead the composite claim key
  KEY {{prefix}}tasks_claim (queue, status, deps_pending, neg_priority, run_at, id),
  KEY {{prefix}}tasks_lease (status, lease_expires_at),
  KEY {{prefix}}tasks_queue_status (queue, status, id),
  KEY {{prefix}}tasks_workflow (workflow_id, status),
  CONSTRAINT {{prefix}}tasks_workflow_fk FOREIGN KEY (workflow_id) REFERENCES {{prefix}}workflows (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS {{prefix}}task_dependencies (
  task_id    CHAR(36) CHARACTER SET ascii NOT NULL,
  depends_on CHAR(36) CHARACTER SET ascii NOT NULL,
  PRIMARY KEY (task_id, depends_on),
  KEY {{prefix}}task_dependencies_on (depends_on),
  CONSTRAINT {{prefix}}task_dependencies_task_fk FOREIGN KEY (task_id) REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE,
  CONSTRAINT {{prefix}}task_dependencies_on_fk FOREIGN KEY (depends_on) REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS {{prefix}}task_executions (
  task_id     CHAR(36) CHARACTER SET ascii NOT NULL,
  attempt     INT NOT NULL,
  worker_id   VARCHAR(191) NULL,
  status      VARCHAR(16) CHARACTER SET ascii NOT NULL,
  started_at  DATETIME(3) NOT NULL,
  finished_at DATETIME(3) NULL,
  duration_ms BIGINT NULL,
  PRIMARY KEY (task_id, attempt),
  CONSTRAINT {{prefix}}task_executions_status_ck CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'lease_expired')),
  CONSTRAINT {{prefix}}task_executions_task_fk FOREIGN KEY (task_id) REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS {{prefix}}error_logs (
  id           CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
  task_id      CHAR(36) CHARACTER SET ascii NULL,
  attempt      INT NULL,
  operation    VARCHAR(64) NOT NULL,
  code         VARCHAR(64) NOT NULL,
  message      TEXT NOT NULL,
  sql_state    VARCHAR(8) NULL,
  provider     VARCHAR(16) NULL,
  created_at   DATETIME(3) NOT NULL,
  KEY {{prefix}}error_logs_task (task_id),
  KEY {{prefix}}error_logs_created (created_at),
  CONSTRAINT {{prefix}}error_logs_task_fk FOREIGN KEY (task_id) REFERENCES {{prefix}}tasks (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
