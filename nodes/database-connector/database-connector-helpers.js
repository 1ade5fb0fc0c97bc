/**
 * database-connector-helpers.js — the method registry and the msg ↔ request mapping.
 *
 * Business rules live in the Rust core; this file maps Node-RED config and messages to
 * addon calls, assembles `msg._debug`, and shapes errors so a Catch node sees them.
 * Only database-service.js touches the addon.
 * @module database-connector-helpers
 */
'use strict';

const path = require('path');
const { EventEmitter } = require('events');
const service = require('./database-service');

const { DatabaseError } = service;

/** Operations a node can run (`msg` means: read `msg.operation`). */
const OPERATIONS = [
  'insertTask', 'claimTasks', 'updateTaskStatus', 'requeueFailedTask', 'getTask', 'listTasks',
  'deleteTask', 'createWorkflow', 'getWorkflowProgress', 'executeTransaction', 'query', 'consume',
];

/**
 * Replaces every `${NAME}` with the environment variable NAME (empty when unset).
 * @param {unknown} value
 * @returns {unknown} the value, with strings substituted
 */
function resolveEnv(value) {
  if (typeof value !== 'string') return value;
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name) => process.env[name] ?? '');
}

function configError(message) {
  return new DatabaseError(message, { code: 'DBC_CONFIG', operation: 'connect', retryable: false });
}

/**
 * Reads a numeric config property (the editor saves numbers as strings; `${VAR}` allowed).
 * @private
 * @param {object} n node config
 * @param {string} key property name
 * @param {number} fallback default when empty
 * @returns {number}
 */
function numberProp(n, key, fallback) {
  const raw = resolveEnv(n[key]);
  if (raw === undefined || raw === null || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || !Number.isInteger(v) || v < 0) {
    throw configError(`${key} must be a whole number, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function connection(n, creds, pre, userDir) {
  const key = (k) => (pre ? pre + k[0].toUpperCase() + k.slice(1) : k);
  const provider = resolveEnv(n[key('provider')]) || (pre ? 'mariadb' : 'sqlite');
  const out = {
    provider,
    host: resolveEnv(n[key('host')]) || undefined,
    port: n[key('port')] === '' || n[key('port')] === undefined ? undefined : numberProp(n, key('port'), undefined),
    database: resolveEnv(n[key('database')]) || undefined,
    ssl: resolveEnv(n[key('ssl')]) || undefined,
    user: resolveEnv(creds[key('user')]) || undefined,
    password: resolveEnv(creds[key('password')]) || undefined,
    url: resolveEnv(creds[key('url')]) || undefined,
  };
  // CA, client cert and key: a file path in the node's properties (sslCa, ...), or PEM
  // text in its credentials (sslCaPem, ...; the key never belongs in flows.json).
  for (const f of ['sslCa', 'sslCert', 'sslKey']) {
    out[f] = resolveEnv(n[key(f)]) || resolveEnv(creds[`${key(f)}Pem`]) || resolveEnv(creds[key(f)]) || undefined;
  }
  if (provider === 'sqlite') {
    const file = resolveEnv(n.sqliteFile) || 'database-connector.db';
    out.sqliteFile = file === ':memory:' || path.isAbsolute(file) ? file : path.join(userDir || process.cwd(), file);
  }
  return out;
}

/**
 * Builds the addon's connector config from a config node's properties and credentials.
 * @param {object} n the config node's properties (SPEC.md names)
 * @param {object} [credentials] `user`, `password`, `url`, `fallbackUser`, ...
 * @param {string} [userDir] Node-RED user dir, for a relative SQLite file
 * @returns {object} the config JSON the addon takes
 */
function buildConnectorConfig(n, credentials, userDir) {
  const creds = credentials || {};
  return {
    primary: connection(n, creds, '', userDir),
    fallback: n.fallbackEnabled === true || n.fallbackEnabled === 'true' ? connection(n, creds, 'fallback', userDir) : undefined,
    pool: {
      poolMax: numberProp(n, 'poolMax', 10),
      poolMin: numberProp(n, 'poolMin', 0),
      acquireTimeoutMs: numberProp(n, 'acquireTimeoutMs', 5000),
      idleTimeoutMs: numberProp(n, 'idleTimeoutMs', 60000),
      statementTimeoutMs: numberProp(n, 'statementTimeoutMs', 30000),
    },
    healthIntervalMs: numberProp(n, 'healthIntervalMs', 2000),
    failoverThreshold: numberProp(n, 'failoverThreshold', 3),
    failback: resolveEnv(n.failback) || 'auto',
    tablePrefix: resolveEnv(n.tablePrefix) || 'dbc_',
    autoMigrate: n.autoMigrate !== false && n.autoMigrate !== 'false',
    maxPayloadBytes: numberProp(n, 'maxPayloadBytes', 1024 * 1024),
    retryBackoffMs: numberProp(n, 'retryBackoffMs', 1000),
    retryBackoffMaxMs: numberProp(n, 'retryBackoffMaxMs', 3600000),
    retentionDays: numberProp(n, 'retentionDays', 7),
  };
}

/**
 * The method registry bound to one open connection. Every method resolves with the
 * operation's result or rejects with a {@link DatabaseError}.
 */
class Registry extends EventEmitter {
  /** @param {object} db an open DatabaseService */
  constructor(db) {
    super();
    this.setMaxListeners(0);
    this.db = db;
  }

  /** @returns {string} the provider in use */
  get provider() {
    return this.db.provider;
  }

  /** @returns {string} `connected`, `failover`, `reconnecting` or `disconnected` (from the addon's health check) */
  get state() {
    return this.db.state;
  }

  /** @returns {string} why the connection state last changed, e.g. the error that caused a failover */
  get stateReason() {
    return this.db.stateReason;
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
  async run(operation, payload, options) {
    const r = await this.db.execute(operation, payload, options);
    // consumers free a slot when one of their tasks is settled by any node
    if (operation === 'updateTaskStatus' && r.value && r.value.status !== 'running') this.emit('settled', r.value.id, r.value);
    return r;
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
   * Moves a task to a new status (SPEC.md's task life).
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
   * Runs SQL with parameters.
   * @param {string} sql `$1`/`?` placeholders for an array, `:name` for an object
   * @param {Array|object} [params]
   * @param {object} [options]
   * @param {boolean} [options.debug] also return the debug figures
   * @returns {Promise<{provider: string, rows: Array<object>, rowCount: number, lastInsertId: (number|string|undefined), debug: (object|undefined)}>}
   */
  query(sql, params, options) {
    return this.db.query(sql, params, options);
  }

  /**
   * Runs SQL with parameters, its rows handed over in chunks as they arrive.
   * @param {string} sql `$1`/`?` placeholders for an array, `:name` for an object
   * @param {Array|object} [params]
   * @param {number} chunkRows rows per chunk
   * @param {object} [options]
   * @param {boolean} [options.debug] the last chunk carries the debug figures
   * @returns {{next: function(): Promise<{rows: Array<object>, done: boolean, rowCount: (number|undefined), lastInsertId: (number|string|undefined), debug: (object|undefined)}>, close: function(): void}}
   * @example const stream = registry.queryStream('SELECT g AS n FROM generate_series(1, 2500) AS g', [], 1000);
   * let rows = 0;
   * for (;;) {
   *   const chunk = await stream.next(); // 1000, 1000, then 500 rows with done: true
   *   rows += chunk.rows.length;
   *   if (chunk.done) break;
   * }
   * if (rows !== 2500) throw new Error(`${rows} rows`);
   */
  queryStream(sql, params, chunkRows, options) {
    return this.db.queryStream(sql, params, chunkRows, options);
  }

  /**
   * Normalises any failure into a DatabaseError with its context, ready for `done(err)`:
   * the Catch node's `msg.error.code` is the `DBC_*` code and `msg.error.cause` holds
   * `{code, retryable, provider, operation, field?, index?, sqlState?, outcome?}`.
   * @param {unknown} error
   * @param {object} [context]
   * @param {string} [context.operation]
   * @param {string} [context.provider]
   * @returns {DatabaseError}
   */
  handleDatabaseError(error, context = {}) {
    return handleDatabaseError(error, { provider: this.provider, ...context });
  }

  /**
   * Applied and pending migrations.
   * @returns {Promise<{provider: string, applied: object[], pending: object[]}>}
   */
  schema() {
    return this.db.schema();
  }

  /**
   * Applies pending migrations.
   * @returns {Promise<object[]>} the migrations applied
   */
  migrate() {
    return this.db.migrate();
  }

  /**
   * Failback by hand (failback `manual`): moves what was written to the fallback during
   * the outage to the primary, then routes new operations there.
   * @returns {Promise<{workflows: number, tasks: number, executions: number, errors: number, dependencies: number, mergedByKey: number, ms: number}>}
   */
  failback() {
    return this.db.failback();
  }

  /**
   * Waits until new work may be in `queue` (see database-service), or `timeoutMs` passes.
   * @param {string} queue
   * @param {number} timeoutMs
   * @returns {Promise<boolean>}
   */
  waitForTasks(queue, timeoutMs) {
    return this.db.waitForTasks(queue, timeoutMs);
  }

  /**
   * Metrics as JSON.
   * @returns {Promise<object>}
   */
  metrics() {
    return this.db.metrics();
  }

  /**
   * Metrics as Prometheus text.
   * @param {string} connection
   * @returns {Promise<string>}
   */
  metricsPrometheus(connection) {
    return this.db.metricsPrometheus(connection);
  }

  /**
   * Tasks by queue and status.
   * @returns {Promise<Array<{queue: string, status: string, count: number}>>}
   */
  queueDepth() {
    return this.db.queueDepth();
  }

  /**
   * Pool gauges.
   * @returns {{size: number, idle: number, inUse: number, max: number, waiting: number}}
   */
  pool() {
    return this.db.pool();
  }

  /**
   * Closes the pools.
   * @returns {Promise<void>}
   */
  close() {
    return this.db.close();
  }
}

/**
 * Normalises any failure into a {@link DatabaseError} (see Registry#handleDatabaseError).
 * @param {unknown} error
 * @param {object} [context]
 * @param {string} [context.operation]
 * @param {string} [context.provider]
 * @returns {DatabaseError}
 */
function handleDatabaseError(error, context = {}) {
  const err = service.toDatabaseError(error, context.operation || 'unknown');
  if (err.operation === undefined && context.operation) err.operation = context.operation;
  if (err.provider === undefined && context.provider) err.provider = context.provider;
  const details = {};
  for (const k of ['code', 'retryable', 'provider', 'operation', 'field', 'index', 'sqlState', 'outcome']) {
    if (err[k] !== undefined) details[k] = err[k];
  }
  // Node-RED copies only message, code, stack and cause into a Catch node's msg.error.
  err.cause = details;
  return err;
}

/**
 * Opens a connection and returns the method registry bound to it.
 * @param {string} provider `postgres`, `mariadb` or `sqlite`
 * @param {object} config connector config (buildConnectorConfig's shape); `provider` overrides `config.primary.provider`
 * @returns {Promise<Registry>}
 */
async function connectToDatabase(provider, config) {
  const cfg = { ...config, primary: { ...(config && config.primary), provider: provider || config.primary.provider } };
  return new Registry(await service.open(cfg));
}

function validation(field, message, operation) {
  return new DatabaseError(message, { code: 'DBC_VALIDATION', field, operation, retryable: false });
}

/**
 * Which operation a message asks for.
 * @param {object} node the operation node's config
 * @param {object} msg
 * @returns {string}
 */
function operationOf(node, msg) {
  const op = node.operation === 'msg' || !node.operation ? msg.operation : node.operation;
  if (typeof op !== 'string' || !OPERATIONS.includes(op)) {
    throw validation('operation', `unknown operation ${JSON.stringify(op)}; use one of ${OPERATIONS.join(', ')}`, String(op));
  }
  return op;
}

/**
 * Builds `msg._debug` (SPEC.md) from the addon's debug data and the JS wall time.
 * @param {string} operation
 * @param {number} startedAt epoch ms
 * @param {number} t0 performance.now() at the start
 * @param {object} debug the addon's `debug` object
 * @returns {object}
 */
function buildDebug(operation, startedAt, t0, debug) {
  return {
    operation,
    provider: debug.provider,
    failover: debug.failover,
    connectionState: debug.connectionState,
    startedAt: new Date(startedAt).toISOString(),
    durationMs: performance.now() - t0,
    dbMs: debug.dbMs,
    statements: debug.statements,
    pool: debug.pool,
    retries: debug.retries,
  };
}

/**
 * Runs a query whose rows leave in parts of `size` rows as they arrive, so a large result
 * is never in memory whole. Each part is a shallow copy of `msg` with `payload` = its rows,
 * `result.rowCount` = the rows sent so far (the total on the last part, which also has
 * `lastInsertId` and `_debug`), and `parts = {id, index, type: 'array', len: size}` plus
 * `count` on the last part only — the total is known only at the end, as with the split
 * node's streaming mode; the join node's automatic mode completes on that part. At least
 * one part is sent (`[]` with count 1 when there are no rows). Once `signal` aborts (the
 * node closes), the query stops and nothing more is sent.
 * @param {Registry} registry
 * @param {string} sql
 * @param {object} msg the incoming message
 * @param {number} size rows per part
 * @param {object} ctx
 * @param {function(object): void} ctx.emit sends one part
 * @param {AbortSignal} [ctx.signal] aborts when the node closes
 * @param {object} ctx.options the addon call's options (`debug`)
 * @param {function(object): object} ctx.debug builds `msg._debug` from the addon's debug data
 * @returns {Promise<void>} resolves after the last part; rejects with the query's error
 */
async function streamRows(registry, sql, msg, size, ctx) {
  const stream = registry.queryStream(sql, msg.params, size, ctx.options);
  const { signal } = ctx;
  const stop = () => stream.close();
  if (signal) signal.addEventListener('abort', stop, { once: true });
  const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  try {
    for (let index = 0; ; index++) {
      if (signal && signal.aborted) return;
      const c = await stream.next();
      if (signal && signal.aborted) return;
      const part = { ...msg, payload: c.rows, result: { rowCount: c.rowCount } };
      part.parts = { id, index, type: 'array', len: size };
      if (msg.parts) part.parts.parts = msg.parts; // the join node restores the outer sequence
      if (c.done) {
        part.parts.count = index + 1;
        if (c.lastInsertId !== undefined) part.result.lastInsertId = c.lastInsertId;
        if (c.debug) part._debug = ctx.debug(c.debug);
      }
      ctx.emit(part);
      if (c.done) return;
    }
  } finally {
    stream.close();
    if (signal) signal.removeEventListener('abort', stop);
  }
}

/**
 * Runs the operation a message asks for and returns the message(s) to send.
 * @param {Registry} registry
 * @param {object} node the operation node's config (`operation`, `queue`, `debug`, `sql`, `rowsPerMsg`)
 * @param {object} msg the incoming message (kept, with `payload` replaced)
 * @param {object} [stream] how a query with `rowsPerMsg` sends its parts as they arrive
 * @param {function(object): void} [stream.emit] sends one part (without it, the parts are collected and returned)
 * @param {AbortSignal} [stream.signal] aborts when the node closes: the query stops, no more parts go out
 * @returns {Promise<object|object[]|null>} one msg; an array of msgs for `rowsPerMsg` without `emit`; null when `emit` sent them
 */
async function runOperation(registry, node, msg, stream) {
  try {
    return await mapOperation(registry, node, msg, stream || {});
  } catch (err) {
    throw registry.handleDatabaseError(err, { operation: err && err.operation });
  }
}

async function mapOperation(registry, node, msg, stream) {
  const operation = operationOf(node, msg);
  const debug = node.debug === true || node.debug === 'true';
  const options = { debug, queue: node.queue || undefined };
  const startedAt = Date.now();
  const t0 = debug ? performance.now() : 0;
  if (operation === 'query') {
    const sql = node.sql || msg.topic;
    if (typeof sql !== 'string' || !sql.trim()) throw validation('sql', 'no SQL: set it in the node or in msg.topic', operation);
    const size = Math.floor(Number(node.rowsPerMsg));
    if (size > 0) {
      const collected = [];
      const emit = stream.emit || ((part) => collected.push(part));
      const toDebug = (d) => buildDebug(operation, startedAt, t0, d);
      await streamRows(registry, sql, msg, size, { emit, signal: stream.signal, options, debug: toDebug });
      return stream.emit ? null : collected;
    }
    const r = await registry.query(sql, msg.params, options);
    msg.payload = r.rows;
    msg.result = r.lastInsertId === undefined ? { rowCount: r.rowCount } : { rowCount: r.rowCount, lastInsertId: r.lastInsertId };
    if (debug) msg._debug = buildDebug(operation, startedAt, t0, r.debug);
    return msg;
  }
  let payload = msg.payload;
  if (operation === 'updateTaskStatus' && msg.task && payload && typeof payload === 'object' && !Array.isArray(payload)) {
    // a task emitted by `consume` carries its id and worker in msg.task
    payload = { ...payload };
    if (payload.id === undefined) payload.id = msg.task.id;
    if (payload.workerId === undefined && msg.task.workerId) payload.workerId = msg.task.workerId;
  }
  const r = await registry.run(operation, payload, options);
  msg.payload = r.value;
  if (debug) msg._debug = buildDebug(operation, startedAt, t0, r.debug);
  return msg;
}

/**
 * Status dot for a connection state (SPEC.md).
 * @param {string} state
 * @param {string} [provider]
 * @returns {{fill: string, shape: string, text: string}}
 */
function statusFor(state, provider) {
  switch (state) {
    case 'connected': return { fill: 'green', shape: 'dot', text: provider || 'connected' };
    case 'failover': return { fill: 'yellow', shape: 'dot', text: `${provider || 'mariadb'} (failover)` };
    case 'connecting': return { fill: 'grey', shape: 'ring', text: 'database-connector.status.connecting' };
    case 'reconnecting': return { fill: 'yellow', shape: 'ring', text: 'database-connector.status.reconnecting' };
    default: return { fill: 'red', shape: 'ring', text: 'database-connector.status.disconnected' };
  }
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

/**
 * Answers the editor's "Test connection": fills stored credentials for fields the
 * dialog left as the `__PWRD__` placeholder, connects once, never throws.
 * @param {object} body
 * @param {object} body.config the config dialog's fields
 * @param {object} [body.credentials] its credentials
 * @param {object} [stored] the node's saved credentials
 * @param {string} [userDir]
 * @returns {Promise<object>} `{ok: true, provider, serverVersion, latencyMs}` or `{ok: false, code, message}`
 */
async function testConnection(body, stored, userDir) {
  try {
    const creds = { ...((body && body.credentials) || {}) };
    for (const k of Object.keys(creds)) {
      if (creds[k] === '__PWRD__') creds[k] = stored ? stored[k] : undefined;
    }
    const r = await service.testConnection(buildConnectorConfig((body && body.config) || {}, creds, userDir));
    return { ok: true, ...r };
  } catch (err) {
    const e = handleDatabaseError(err, { operation: 'test' });
    return { ok: false, code: e.code, message: e.message };
  }
}

/** @private @returns {string} the consumer's key of one attempt at a task */
const attemptKey = (task) => `${task.id}#${task.attempts}`;

/**
 * The `consume` source: claims tasks in batches and emits one msg per task
 * (`msg.payload` = the task's payload, `msg.task` = the task), never more than
 * `concurrency` in flight. A slot frees when any node settles the task with
 * updateTaskStatus, or when its lease runs out. While the queue is empty it waits for a
 * wake-up (an insert in this runtime, or PostgreSQL NOTIFY from another), polling at
 * least once a second. On stop, tasks in flight are left to their lease.
 */
class Consumer {
  /**
   * @param {object} node the Node-RED node (send, status, error)
   * @param {function(): Promise<Registry>} getRegistry the config node's registry
   * @param {object} opts
   * @param {string} [opts.queue] default `default`
   * @param {(number|string)} [opts.concurrency] most tasks in flight, 1–1000, default 4
   * @param {(number|string)} [opts.leaseMs] lease of each claimed task, default 30000
   * @param {boolean} [opts.debug] add `msg._debug`
   * @param {string} opts.workerId the lease holder's id
   * @param {function(number): string} opts.statusText the status text for n in flight
   */
  constructor(node, getRegistry, opts) {
    this.node = node;
    this.getRegistry = getRegistry;
    this.queue = opts.queue || 'default';
    this.concurrency = Math.max(1, Math.min(1000, Number(opts.concurrency) || 4));
    this.leaseMs = Math.max(1000, Number(opts.leaseMs) || 30000);
    this.debug = opts.debug === true || opts.debug === 'true';
    this.workerId = opts.workerId;
    this.statusText = opts.statusText;
    this.inFlight = new Map();
    this.idleMs = 0;
    this.timer = null;
    this.stopped = false;
    // claims on their way to the database, and the slots they may fill
    this.claiming = 0;
    this.reserved = 0;
    this.empty = false;
    // one entry per attempt (`id#attempts`): a task that failed, came back after its
    // backoff and was claimed again before its first settle reached us holds two slots
    // until both are settled, never one
    this.onSettled = (id, task) => this.settle(attemptKey(task));
  }

  /** Starts polling. */
  start() {
    this.schedule(0);
  }

  schedule(ms) {
    if (this.stopped || this.timer) return;
    const run = () => {
      this.timer = null;
      this.poll();
    };
    // setTimeout(0) waits at least 1 ms; a wake-up or a freed slot polls on the next turn
    if (ms > 0) {
      const t = setTimeout(run, ms);
      this.timer = { cancel: () => clearTimeout(t) };
    } else {
      const t = setImmediate(run);
      this.timer = { cancel: () => clearImmediate(t) };
    }
  }

  settle(key) {
    const lease = this.inFlight.get(key);
    if (lease === undefined) return;
    clearTimeout(lease);
    this.inFlight.delete(key);
    this.showStatus();
    this.schedule(0);
  }

  showStatus() {
    // a busy consumer settles thousands of tasks a second: the status (and its translated
    // text) follows at most every 250 ms, and always ends on the current count
    if (this.statusTimer) {
      this.statusDirty = true;
      return;
    }
    this.node.status({ fill: 'blue', shape: this.inFlight.size ? 'dot' : 'ring', text: this.statusText(this.inFlight.size) });
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      if (this.statusDirty && !this.stopped) {
        this.statusDirty = false;
        this.showStatus();
      }
    }, 250);
  }

  async poll() {
    // A busy consumer works as a pipeline: a claim takes at most a quarter of its slots
    // (at least 25, or all when fewer), and up to two claims are on their way at once,
    // so the database claims the next tasks while the flow runs the last ones, instead
    // of the two taking turns. When the last claim found nothing, one claimer waits for
    // work alone.
    if (this.stopped || this.claiming >= 2 || (this.claiming > 0 && this.empty)) return;
    const free = this.concurrency - this.inFlight.size - this.reserved;
    if (free <= 0) return; // a settle or an expired lease schedules the next poll
    this.claiming += 1;
    let held = Math.min(free, Math.max(Math.ceil(this.concurrency / 4), Math.min(this.concurrency, 25)));
    this.reserved += held;
    try {
      const registry = await this.getRegistry();
      if (this.registry !== registry) {
        if (this.registry) this.registry.off('settled', this.onSettled);
        this.registry = registry;
        registry.on('settled', this.onSettled);
      }
      const startedAt = Date.now();
      const t0 = this.debug ? performance.now() : 0;
      const r = await registry.run('claimTasks', { queue: this.queue, limit: held, leaseMs: this.leaseMs, workerId: this.workerId }, { debug: this.debug });
      this.reserved -= held;
      held = 0;
      this.empty = r.value.length === 0;
      if (this.stopped) return;
      for (const task of r.value) {
        const key = attemptKey(task);
        this.inFlight.set(key, setTimeout(() => this.settle(key), this.leaseMs));
        const msg = { payload: task.payload, task };
        if (this.debug) msg._debug = buildDebug('consume', startedAt, t0, r.debug);
        this.node.send(msg);
      }
      this.showStatus();
      if (r.value.length === 0 && !this.stopped) {
        // idle: sleep until woken by new work (same runtime, or NOTIFY on PostgreSQL);
        // the timeout is the polling safety net
        await registry.waitForTasks(this.queue, 1000);
      }
      this.idleMs = 0;
    } catch (err) {
      this.idleMs = Math.min(5000, Math.max(500, this.idleMs * 2));
      this.node.error(handleDatabaseError(err, { operation: 'consume' }));
    } finally {
      this.reserved -= held;
      this.claiming -= 1;
    }
    this.schedule(this.idleMs);
  }

  /** Stops polling; tasks in flight stay leased until settled or expired. */
  stop() {
    this.stopped = true;
    if (this.timer) this.timer.cancel();
    clearTimeout(this.statusTimer);
    for (const lease of this.inFlight.values()) clearTimeout(lease);
    this.inFlight.clear();
    if (this.registry) this.registry.off('settled', this.onSettled);
  }
}

/**
 * Registers the admin HTTP API of SPEC.md under Node-RED's admin root, behind its auth:
 * connection test, schema status and migration, metrics.
 * @param {object} RED the Node-RED runtime API
 */
function registerAdminRoutes(RED) {
  // Admin API (SPEC.md): behind Node-RED's admin auth and these permissions.
  const read = RED.auth.needsPermission('database-connector.read');
  const write = RED.auth.needsPermission('database-connector.write');
  const configNode = (req, res) => {
    const node = RED.nodes.getNode(req.params.configId);
    if (!node || typeof node.getRegistry !== 'function') {
      res.status(404).json({ ok: false, code: 'DBC_NOT_FOUND', message: 'no deployed connection with this id' });
      return null;
    }
    return node;
  };
  const answer = (res, promise) =>
    promise.then(
      (body) => res.json(body),
      (error) => {
        const err = handleDatabaseError(error);
        res.status(err.code === 'DBC_VALIDATION' || err.code === 'DBC_CONFIG' ? 400 : 500).json({ ok: false, code: err.code, message: err.message });
      },
    );

  RED.httpAdmin.post('/database-connector/test', write, (req, res) => {
    const body = req.body || {};
    const stored = body.id ? RED.nodes.getCredentials(body.id) : undefined;
    testConnection(body, stored, RED.settings.userDir).then((r) => res.json(r));
  });

  RED.httpAdmin.get('/database-connector/:configId/schema', read, (req, res) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then((r) => r.schema()));
  });

  RED.httpAdmin.post('/database-connector/:configId/schema/migrate', write, (req, res) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then((r) => r.migrate()).then((applied) => ({ ok: true, applied })));
  });

  RED.httpAdmin.post('/database-connector/:configId/failback', write, (req, res) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then((r) => r.failback()).then((moved) => ({ ok: true, state: node.state, moved })));
  });

  RED.httpAdmin.get('/database-connector/:configId/metrics', read, (req, res) => {
    const node = configNode(req, res);
    if (!node) return;
    if (req.query.format === 'prometheus') {
      node.getRegistry().then((r) => r.metricsPrometheus(node.name || node.id)).then(
        (text) => res.type('text/plain; version=0.0.4').send(text),
        (error) => res.status(503).type('text/plain').send(`# ${handleDatabaseError(error).code}\n`),
      );
    } else answer(res, node.getRegistry().then((r) => r.metrics()));
  });
}

module.exports = {
  registerAdminRoutes,
  Consumer,
  OPERATIONS,
  Registry,
  DatabaseError,
  resolveEnv,
  buildConnectorConfig,
  connectToDatabase,
  handleDatabaseError,
  operationOf,
  runOperation,
  buildDebug,
  statusFor,
  closeWithin,
  testConnection,
};
