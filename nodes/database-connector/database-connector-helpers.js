/**
 * database-connector-helpers.js — the method registry of the nodes, and the one entry
 * point to the smaller modules beside it:
 * - config.js: the connector config from a config node's properties and credentials;
 * - messages.js: msg → operation mapping, `msg._debug`, streamed parts, status dots;
 * - consumer.js: the `consume` node's loop;
 * - admin-routes.js: the admin HTTP API;
 * - database-service.js: the one layer over the Rust addon, where errors become
 *   DatabaseErrors.
 *
 * Business rules live in the Rust core. The {@link Registry} is the addon's `Connector`
 * as database-service.js wraps it, plus one method per seed operation; errors pass
 * through it unchanged.
 * @module database-connector-helpers
 */
'use strict';

const service = require('./database-service');
const { resolveEnv, buildConnectorConfig } = require('./config');
const { nodeOperationNames, editorOperations, operationOf, runOperation, buildDebug, statusFor } = require('./messages');
const { Consumer } = require('./consumer');
const { registerAdminRoutes, testConnection } = require('./admin-routes');

const { Connector, DatabaseError } = service;

/**
 * The method registry bound to one open connection: a {@link Connector} (the addon's
 * pools, its `query`, `queryStream`, `schema`, `migrate`, `failback`, `metrics`, `pool`,
 * `close`, ... and the `settled` event) with one method per operation of the seed. Every
 * method resolves with the operation's result or rejects with a {@link DatabaseError}.
 * @extends Connector
 */
class Registry extends Connector {
  /**
   * The open connection under the registry's methods, which is the registry itself
   * (a Registry is a Connector).
   * @returns {Registry}
   */
  get db() {
    return this;
  }

  /**
   * Runs any operation by name and returns the addon's answer (with `debug` when asked).
   * @param {string} operation any operation but `query` and `consume`
   * @param {unknown} payload its input (`msg.payload` of the node)
   * @param {object} [options]
   * @param {boolean} [options.debug] also return the debug figures
   * @param {string} [options.queue] default queue of the operation
   * @returns {Promise<{provider: string, value: *, debug: (object|undefined)}>} `value` is the result
   */
  run(operation, payload, options) {
    return this.execute(operation, payload, options);
  }

  /**
   * Inserts one task, or an array of tasks in one statement.
   * @param {object|object[]} task `{queue?, name?, payload?, priority?, runAt?, maxAttempts?, workflowId?, idempotencyKey?, dependsOn?}`
   * @returns {Promise<object|object[]>} the stored task(s); `deduplicated: true` when the key existed
   * @example await registry.insertTask({ queue: 'mail', payload: { to: 'a@b.c' }, priority: 5 })
   */
  async insertTask(task) {
    return (await this.run('insertTask', task)).value;
  }

  /**
   * Moves a task to a new status (the changes allowed: docs/API.md, updateTaskStatus).
   * @param {string} id task id
   * @param {string} status `pending|running|completed|failed|cancelled`
   * @param {object} [extra]
   * @param {*} [extra.result] stored with `completed`
   * @param {(string|{code: string, message: string})} [extra.error] with `failed`
   * @param {string} [extra.workerId] who reports; must hold the lease
   * @param {number} [extra.leaseMs] lease for `pending → running`
   * @returns {Promise<object>} the updated task
   */
  async updateTaskStatus(id, status, extra = {}) {
    return (await this.run('updateTaskStatus', { ...extra, id, status })).value;
  }

  /**
   * A worker's "still alive": pushes the lease of its running task `leaseMs` forward from
   * now and stores its progress. Only the lease holder may: otherwise `DBC_LEASE_LOST`,
   * with `err.reason === 'cancelled'` when the task was cancelled (stop the work).
   * @param {string} id task id
   * @param {object} [extra]
   * @param {string} [extra.workerId] who reports; must hold the lease
   * @param {number} [extra.leaseMs] the new lease from now, default 30000
   * @param {number} [extra.progress] 0–100
   * @param {*} [extra.note] any JSON up to 4096 bytes
   * @returns {Promise<object>} the task, with `leaseExpiresAt` and `progress: {percent, note, updatedAt}`
   * @example await registry.heartbeat(id, { progress: 40, note: { rows: 4000 } })
   */
  async heartbeat(id, extra = {}) {
    return (await this.run('heartbeat', { ...extra, id })).value;
  }

  /**
   * Gives a running task back to run later without spending an attempt (the lease
   * holder only, as for {@link Registry#heartbeat}).
   * @param {string} id task id
   * @param {object} [extra]
   * @param {string} [extra.workerId] who gives it back; must hold the lease
   * @param {number} [extra.delayMs] run again after this long; or
   * @param {(string|number)} [extra.runAt] run again from then (neither: at once)
   * @returns {Promise<object>} the task, `pending`
   */
  async snoozeTask(id, extra = {}) {
    return (await this.run('snoozeTask', { ...extra, id })).value;
  }

  /**
   * Makes a failed task pending again with a fresh attempt budget.
   * @param {string} id
   * @returns {Promise<object>} the task
   */
  async requeueFailedTask(id) {
    return (await this.run('requeueFailedTask', { id })).value;
  }

  /**
   * Reads a task with its execution history and error log.
   * @param {string} id
   * @returns {Promise<object>}
   */
  async getTask(id) {
    return (await this.run('getTask', { id })).value;
  }

  /**
   * Counts a workflow's tasks by status.
   * @param {string} workflowId
   * @returns {Promise<object>} `{workflowId, name, status, total, pending, running, completed, failed, cancelled, percent, startedAt, finishedAt}`
   */
  async getWorkflowProgress(workflowId) {
    return (await this.run('getWorkflowProgress', { workflowId })).value;
  }

  /**
   * Pauses a queue: no runtime sharing the database claims its tasks (`claimTasks` and
   * `consume` get none) until it is resumed. The state is in the database; pausing a
   * paused queue keeps its first `pausedAt`; a queue without tasks may be paused.
   * @param {string} queue
   * @returns {Promise<{queue: string, paused: true, pausedAt: string}>}
   * @example await registry.pauseQueue('mail')
   */
  async pauseQueue(queue) {
    return (await this.run('pauseQueue', { queue })).value;
  }

  /**
   * Resumes a paused queue: its tasks are claimed again (resuming one that is not paused
   * changes nothing).
   * @param {string} queue
   * @returns {Promise<{queue: string, paused: false}>}
   * @example await registry.resumeQueue('mail')
   */
  async resumeQueue(queue) {
    return (await this.run('resumeQueue', { queue })).value;
  }

  /**
   * Counts every queue's tasks by status (or one queue's), with its paused state, how
   * long its oldest due pending task has waited and how many tasks completed in the last
   * minute; queues sorted by name, paused ones and ones with a dead-letter queue listed
   * even without tasks.
   * @param {string} [queue] only this queue (listed even when it has no task)
   * @returns {Promise<{queues: Array<{queue: string, paused: boolean, pausedAt: (string|null), deadLetterQueue: (string|null), counts: {pending: number, running: number, completed: number, failed: number, cancelled: number}, scheduled: number, oldestPendingAgeMs: (number|null), completedLastMinute: number}>}>}
   * @example const { queues } = await registry.getQueueStats()
   */
  async getQueueStats(queue) {
    return (await this.run('getQueueStats', queue === undefined ? {} : { queue })).value;
  }

  /**
   * Sets a queue's dead-letter queue, or clears it with `null`: each of the queue's tasks
   * that fails its last attempt (reported, or its lease expired) stays `failed` where it
   * is, and a copy goes to the dead-letter queue, pending, with the payload
   * `{deadLetter: {taskId, queue, name, attempts, error, failedAt}, payload}`. A copy is
   * never dead-lettered again.
   * @param {string} queue
   * @param {string|null} deadLetterQueue another queue's name, or `null` for none
   * @returns {Promise<{queue: string, deadLetterQueue: (string|null)}>}
   * @example await registry.configureQueue('mail', 'mail.dead')
   */
  async configureQueue(queue, deadLetterQueue) {
    return (await this.run('configureQueue', { queue, deadLetterQueue })).value;
  }

  /**
   * Creates a schedule, or replaces the one of that name: a named recurring task that
   * every runtime sharing the database enqueues once per tick in total (see
   * docs/API.md "Schedules"). `cron` has 5 fields, or 6 with seconds first; `timeZone`
   * is an IANA name (default `UTC`).
   * @param {object} schedule `{name, cron, timeZone?, queue?, taskName?, payload?, priority?, maxAttempts?, paused?}`
   * @returns {Promise<object>} the schedule with `nextRunAt` and `description`
   * @example await registry.createSchedule({ name: 'nightly-report', cron: '0 30 2 * * *', timeZone: 'Europe/Berlin', queue: 'reports' })
   */
  async createSchedule(schedule) {
    return (await this.run('createSchedule', schedule)).value;
  }

  /**
   * Lists every schedule, by name.
   * @returns {Promise<{schedules: object[]}>}
   * @example const { schedules } = await registry.listSchedules()
   */
  async listSchedules() {
    return (await this.run('listSchedules', {})).value;
  }

  /**
   * Pauses a schedule (no runtime enqueues its ticks), resumes it (from its next tick
   * after now), or deletes it; `DBC_NOT_FOUND` for an unknown name.
   * @param {'pauseSchedule'|'resumeSchedule'|'deleteSchedule'} operation
   * @param {string} name
   * @returns {Promise<object>} the schedule, or `{name, deleted: true}`
   * @example await registry.changeSchedule('pauseSchedule', 'nightly-report')
   */
  async changeSchedule(operation, name) {
    return (await this.run(operation, { name })).value;
  }

  /**
   * A cron pattern in words and its next ticks, computed by the runtime (no database).
   * @param {string} cron
   * @param {string} [timeZone] IANA name, default `UTC`
   * @param {number} [count] ticks, 1..50 (default 5)
   * @returns {Promise<{cron: string, timeZone: string, description: string, nextRuns: string[]}>}
   * @example await registry.previewSchedule('*\/10 * * * * *')
   */
  async previewSchedule(cron, timeZone, count) {
    return (await this.run('previewSchedule', { cron, timeZone, count })).value;
  }

  /**
   * Runs several operations in one database transaction: all applied or none.
   * @param {Array<{operation: string, payload: any}>} operations
   * @returns {Promise<any[]>} one result per step
   * @example await registry.executeTransaction([
   *   { operation: 'insertTask', payload: { queue: 'a' } },
   *   { operation: 'query', payload: { sql: 'UPDATE stock SET qty = qty - 1 WHERE sku = :sku', params: { sku: 'A-1' } } },
   * ])
   */
  async executeTransaction(operations) {
    return (await this.run('executeTransaction', operations)).value;
  }

  /**
   * Returns any failure as a {@link DatabaseError}, ready for `done(err)` (see
   * {@link handleDatabaseError}); a failure of this registry names its provider.
   * @param {unknown} error
   * @param {object} [context]
   * @param {string} [context.operation]
   * @param {string} [context.provider]
   * @returns {DatabaseError}
   */
  handleDatabaseError(error, context = {}) {
    return handleDatabaseError(error, { provider: this.provider, ...context });
  }
}

/**
 * Returns any failure as a {@link DatabaseError}, ready for `done(err)`: the Catch node's
 * `msg.error.code` is the `DBC_*` code and `msg.error.cause` holds `{code, retryable,
 * provider, operation, field?, index?, sqlState?, outcome?, reason?}`. A DatabaseError (every
 * failure of the registry and the service is one) comes back as it is; anything else
 * (a bug, a foreign exception) becomes `DBC_INTERNAL` with the context's operation and
 * provider.
 * @param {unknown} error
 * @param {object} [context]
 * @param {string} [context.operation]
 * @param {string} [context.provider]
 * @returns {DatabaseError}
 */
function handleDatabaseError(error, context = {}) {
  return service.toDatabaseError(error, context.operation || 'unknown', context.provider);
}

/**
 * Opens a connection and returns the method registry bound to it.
 * @param {string} provider `postgres`, `mariadb` or `sqlite`
 * @param {object} config connector config (buildConnectorConfig's shape); `provider` overrides `config.primary.provider`
 * @returns {Promise<Registry>}
 */
function connectToDatabase(provider, config) {
  const cfg = { ...config, primary: { ...(config && config.primary), provider: provider || config.primary.provider } };
  return service.open(cfg, Registry);
}

/**
 * Closes a registry, giving up after `ms` so Node-RED's 15 s close limit is never hit.
 * @param {Registry|null} registry
 * @param {number} ms
 * @returns {Promise<void>}
 */
function closeWithin(registry, ms) {
  if (!registry) return Promise.resolve();
  let timer;
  const limit = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  return Promise.race([registry.close().catch(() => {}), limit]).finally(() => clearTimeout(timer));
}

module.exports = {
  // the method registry
  Registry,
  connectToDatabase,
  handleDatabaseError,
  DatabaseError,
  closeWithin,
  // re-exported from the modules beside this one
  nodeOperationNames,
  editorOperations,
  resolveEnv,
  buildConnectorConfig,
  operationOf,
  runOperation,
  buildDebug,
  statusFor,
  Consumer,
  registerAdminRoutes,
  testConnection,
};
