/**
 * database-service.js — the one JS layer over the Rust addon; nothing else loads it.
 *
 * It loads the native binding and wraps its `Connector` (a config node's pools) in a JS
 * {@link Connector} of the same name. Every addon call goes through here, and this is
 * the one place where a failure becomes a {@link DatabaseError}: the addon's `code`,
 * `retryable`, `provider`, `operation` (and `field`, `index`, `sqlState`, `outcome`
 * where they apply), a JS stack that points at the caller (the addon's own error object
 * has no JS frames), and `cause` holding the same details for a Catch node. The layers
 * above pass these errors through unchanged.
 *
 * The names of the operations, and which of them may be gathered into one crossing,
 * come from the addon (`operations()`, `batchOperations()`): the Rust core keeps the
 * one list.
 * @module database-service
 */
'use strict';

const { EventEmitter } = require('events');

let addon = null;
let loadError = null;
try {
  addon = require('../../native');
} catch (err) {
  loadError = err;
}

const DETAIL_FIELDS = ['code', 'retryable', 'provider', 'operation', 'field', 'index', 'sqlState', 'outcome', 'reason'];

/**
 * An operation failure with a stable `DBC_*` code (docs/ERRORS.md). Node-RED copies only
 * an error's own `message`, `code`, `stack` and `cause` into a Catch node's `msg.error`,
 * so `cause` repeats the details: `{code, retryable, provider, operation, field?, index?,
 * sqlState?, outcome?, reason?}`.
 */
class DatabaseError extends Error {
  /**
   * @param {string} message plain-words description, never containing a secret
   * @param {object} details `code`, `retryable`, `provider`, `operation` and optional extras
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'DatabaseError';
    const cause = {};
    for (const k of DETAIL_FIELDS) {
      if (details[k] !== undefined) this[k] = details[k];
    }
    if (this.code === undefined) this.code = 'DBC_INTERNAL';
    if (this.retryable === undefined) this.retryable = false;
    for (const k of DETAIL_FIELDS) {
      if (this[k] !== undefined) cause[k] = this[k];
    }
    this.cause = cause;
  }

  /**
   * Names the provider, when the error was made before one was known to it.
   * @param {string} [provider]
   * @returns {DatabaseError} this
   */
  withProvider(provider) {
    if (this.provider === undefined && provider) {
      this.provider = provider;
      this.cause.provider = provider;
    }
    return this;
  }

  /** "DBC_CODE: message" — what Node-RED shows as msg.error.message and in the log. */
  toString() {
    return `${this.code}: ${this.message}`;
  }
}

/**
 * Turns anything the addon rejects with (or JS throws while preparing a call) into a
 * DatabaseError; a DatabaseError is returned as it is (given the provider when it names
 * none). An error with a `DBC_*` code keeps its details; anything else becomes
 * `DBC_INTERNAL`.
 * @param {unknown} err
 * @param {string} [operation] the operation, when the error does not name one
 * @param {string} [provider] the provider, when the error does not name one
 * @returns {DatabaseError}
 */
function toDatabaseError(err, operation, provider) {
  if (err instanceof DatabaseError) return err.withProvider(provider);
  const e = err && typeof err === 'object' ? err : { message: String(err) };
  const coded = typeof e.code === 'string' && e.code.startsWith('DBC_');
  const details = coded ? { ...pick(e) } : { code: 'DBC_INTERNAL' };
  if (details.operation === undefined) details.operation = operation;
  if (details.provider === undefined) details.provider = provider;
  return new DatabaseError(e.message || String(err), details);
}

/**
 * the detail fields of an error-like object
 * @private
 * @returns {object}
 */
function pick(e) {
  const out = {};
  for (const k of DETAIL_FIELDS) out[k] = e[k];
  return out;
}

function requireAddon() {
  if (!addon) {
    throw new DatabaseError(
      `the native addon is not built or does not load here (${loadError && loadError.message}); run "npm install" (it compiles the Rust addon) or "npm run build"`,
      { code: 'DBC_INTERNAL', operation: 'load' },
    );
  }
  return addon;
}

let known = null;

/**
 * The operations the addon runs by name (`Connector#execute`), in the core's order.
 * `query` has its own method, {@link Connector#query}.
 * @returns {string[]}
 */
function operations() {
  if (!known) {
    const a = requireAddon();
    known = { operations: a.operations(), gathered: new Set(a.batchOperations()), queue: a.queueOperations() };
  }
  return known.operations.slice();
}

/**
 * The operations for which a node's queue is the default queue of their input (the
 * editor shows the Queue field for these): the core's rule, read from the addon.
 * @returns {string[]}
 */
function queueOperations() {
  operations();
  return known.queue.slice();
}

/**
 * the operations whose single-task calls may be gathered
 * @private
 * @returns {Set<string>}
 */
function gathered() {
  operations();
  return known.gathered;
}

/**
 * Serializes a payload for the addon. JSON.stringify rejects cycles and BigInt; the
 * replacer also rejects NaN and Infinity, which JSON would silently turn into null.
 * @private
 * @param {unknown} payload
 * @param {string} operation
 * @returns {string}
 */
function payloadJson(payload, operation) {
  try {
    const value = payload === undefined ? null : payload;
    // JSON.stringify writes NaN and Infinity as null: text without any null had none, and
    // skips the replacer below (which turns off V8's fast path; measured, PERFORMANCE.md)
    const fast = JSON.stringify(value);
    if (fast === undefined) return 'null';
    if (!fast.includes('null')) return fast;
    const text = JSON.stringify(value, (key, v) => {
      if (typeof v === 'number' && !Number.isFinite(v)) {
        throw new TypeError(`${key || 'payload'} is ${v}, which cannot be stored`);
      }
      return v;
    });
    return text === undefined ? 'null' : text;
  } catch (err) {
    throw new DatabaseError(`msg.payload cannot be sent to the database: ${err.message}`, {
      code: 'DBC_VALIDATION', field: 'payload', operation, retryable: false,
    });
  }
}

/**
 * The addon answers an operation with JSON text: one JSON.parse beats building a large
 * answer (a thousand tasks) property by property through napi.
 * @private
 * @param {{valueJson: (string|undefined)}} r the addon's answer
 * @returns {{provider: string, value: *, debug: (object|undefined)}}
 */
function parsed(r) {
  if (r.valueJson !== undefined) {
    r.value = JSON.parse(r.valueJson);
    delete r.valueJson;
  }
  return r;
}

/**
 * One open connector: a config node's pools, the addon's `Connector` (`handle`) seen
 * from JS. Every method resolves with the addon's answer or rejects with a
 * {@link DatabaseError}.
 *
 * Event `settled` `(id, task)`: an `updateTaskStatus` (or `snoozeTask`) through this
 * connector left the task not `running` (`task` as stored; once per such task of a
 * batch settle); the consume nodes of this runtime free its slot. Event `heartbeat`
 * `(id, task)`: a heartbeat pushed a task's lease forward (its slot is kept). Event
 * `cancelled` `(id)`: a heartbeat, snooze or settle of a task answered
 * `reason: "cancelled"` (the consume nodes send their cancel signal).
 */
class Connector extends EventEmitter {
  /** @param {object} handle the addon's Connector */
  constructor(handle) {
    super();
    this.setMaxListeners(0);
    this.handle = handle;
  }

  /** @returns {string} `postgres`, `mariadb` or `sqlite` */
  get provider() {
    return this.handle.provider;
  }

  /** @returns {string} `connected`, `failover`, `reconnecting` or `disconnected` (from the addon's health check) */
  get state() {
    return this.handle.state;
  }

  /** @returns {string} why the connection state last changed, e.g. the error that caused a failover (no secrets) */
  get stateReason() {
    return this.handle.stateReason;
  }

  /** @returns {boolean} true while operations go to the fallback database */
  get failover() {
    return this.handle.failover;
  }

  /**
   * Pool gauges.
   * @returns {{size: number, idle: number, inUse: number, max: number, waiting: number}}
   */
  pool() {
    return this.handle.pool();
  }

  /**
   * Runs an operation by name (any of {@link operations}).
   * @param {string} operation e.g. `insertTask`
   * @param {unknown} payload the operation's input (msg.payload)
   * @param {{debug: (boolean|undefined), queue: (string|undefined)}} [options] `debug`: also return the debug figures; `queue`: the default queue
   * @returns {Promise<{provider: string, value: *, debug: (object|undefined)}>} `value` is the result
   */
  async execute(operation, payload, options) {
    let r;
    try {
      const text = payloadJson(payload, operation); // its error gets the provider below
      // the addon names the operations it gathers; it takes single tasks without debug
      // (a bulk insert is one statement already)
      if (gathered().has(operation) && !Array.isArray(payload) && !(options && options.debug)) {
        r = await this.gather(operation, text, options && options.queue);
        if (r.error) throw r.error;
      } else {
        r = parsed(await this.handle.execute(operation, text, options));
      }
    } catch (err) {
      const e = toDatabaseError(err, operation, this.provider);
      if (e.reason === 'cancelled' && payload && payload.id) this.emit('cancelled', payload.id);
      throw e;
    }
    if (operation === 'heartbeat' && r.value) this.emit('heartbeat', r.value.id, r.value);
    if (operation === 'snoozeTask' && r.value) this.emit('settled', r.value.id, r.value);
    if (operation === 'updateTaskStatus' && r.value) {
      // a batch settle answers an array: each task it left not running, not the refused ids
      for (const t of Array.isArray(r.value) ? r.value : [r.value]) {
        if (t && !t.error && t.status !== 'running') this.emit('settled', t.id, t);
        else if (t && t.error && t.error.reason === 'cancelled') this.emit('cancelled', t.id);
      }
    }
    return r;
  }

  /**
   * Queues one single-task call for the end of this event-loop turn, when every call of
   * the turn (per default queue) crosses into the addon at once (`executeMany`): one
   * napi call, one task on the addon's runtime and one answer for all of them, instead
   * of one each. The addon's group commit then sees them together.
   * @private
   * @param {string} operation one of the addon's `batchOperations()`
   * @param {string} text the payload's JSON
   * @param {string} [queue] the default queue option
   * @returns {Promise<{provider: string, value: *}|{error: object}>} never rejects
   */
  gather(operation, text, queue) {
    if (!this.turn) {
      this.turn = new Map();
      setImmediate(() => this.flushTurn());
    }
    let calls = this.turn.get(queue);
    if (!calls) {
      calls = { operations: [], payloads: [], waiters: [] };
      this.turn.set(queue, calls);
    }
    return new Promise((resolve) => {
      calls.operations.push(operation);
      calls.payloads.push(text);
      calls.waiters.push(resolve);
    });
  }

  /**
   * Sends the calls gathered in this turn (see gather).
   * @private
   */
  flushTurn() {
    const turn = this.turn;
    this.turn = null;
    for (const [queue, calls] of turn) {
      const options = queue === undefined ? undefined : { queue };
      // a lone call takes the plain path; either way the answer is one item per call
      new Promise((resolve) => {
        resolve(calls.waiters.length === 1
          ? this.handle.execute(calls.operations[0], calls.payloads[0], options).then((r) => [parsed(r)])
          : this.handle.executeMany(calls.operations, calls.payloads, options).then(JSON.parse));
      })
        .then((items) => items.forEach((item, i) => calls.waiters[i](item)))
        // a waiter already answered ignores this
        .catch((error) => calls.waiters.forEach((w) => w({ error })));
    }
  }

  /**
   * Runs SQL with parameters.
   * @param {string} sql `$1`/`?` placeholders for an array, `:name` for an object
   * @param {Array|object|null} [params] array: positional; object: `:name`
   * @param {{debug: (boolean|undefined)}} [options] `debug`: also return the debug figures
   * @returns {Promise<{provider: string, rows: object[], rowCount: number, lastInsertId: (number|string|undefined), debug: (object|undefined)}>}
   */
  async query(sql, params, options) {
    try {
      return await this.handle.query(sql, params === undefined ? null : params, options);
    } catch (err) {
      throw toDatabaseError(err, 'query', this.provider);
    }
  }

  /**
   * Runs SQL with parameters and hands its rows over in chunks: the addon holds a few
   * chunks at a time, never the whole result. Nothing runs until the first `next()`.
   * @param {string} sql `$1`/`?` placeholders for an array, `:name` for an object
   * @param {Array|object|null} [params] array: positional; object: `:name`
   * @param {number} chunkRows rows per chunk (at least 1)
   * @param {{debug: (boolean|undefined)}} [options] `debug`: the last chunk carries the debug figures
   * @returns {{next: function(): Promise<{rows: object[], done: boolean, rowCount: (number|undefined), lastInsertId: (number|string|undefined), debug: (object|undefined)}>, close: function(): void}}
   *   `next()` rejects with a DatabaseError; after the last chunk (`done`), an error or
   *   `close()` it resolves `{rows: [], done: true}`
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
    let stream;
    try {
      stream = this.handle.queryStream(sql, params === undefined ? null : params, chunkRows, options);
    } catch (err) {
      const error = toDatabaseError(err, 'query', this.provider);
      return { next: () => Promise.reject(error), close() {} };
    }
    const provider = this.provider;
    return {
      async next() {
        try {
          return await stream.next();
        } catch (err) {
          throw toDatabaseError(err, 'query', provider);
        }
      },
      close() {
        stream.close();
      },
    };
  }

  /**
   * Waits until new work may be in `queue` (an operation through this connector left a
   * task `pending` there, or PostgreSQL NOTIFY from another runtime), or `timeoutMs` passes.
   * @param {string} queue
   * @param {number} timeoutMs
   * @returns {Promise<boolean>} true when woken by new work
   */
  waitForTasks(queue, timeoutMs) {
    return this.call('waitForTasks', () => this.handle.waitForTasks(queue, timeoutMs));
  }

  /**
   * Tasks by queue and status.
   * @returns {Promise<Array<{queue: string, status: string, count: number}>>}
   */
  queueDepth() {
    return this.call('queueDepth', () => this.handle.queueDepth());
  }

  /**
   * Metrics as JSON (see docs/API.md).
   * @returns {Promise<object>}
   */
  metrics() {
    return this.call('metrics', () => this.handle.metrics());
  }

  /**
   * Metrics in the Prometheus text format.
   * @param {string} connection label for every series (the config node's name or id)
   * @returns {Promise<string>}
   */
  metricsPrometheus(connection) {
    return this.call('metrics', () => this.handle.metricsPrometheus(connection));
  }

  /**
   * Applied and pending migrations.
   * @returns {Promise<{provider: string, applied: object[], pending: object[]}>}
   */
  schema() {
    return this.call('schema', () => this.handle.schema());
  }

  /**
   * Applies pending migrations.
   * @returns {Promise<object[]>} the migrations applied
   */
  migrate() {
    return this.call('migrate', () => this.handle.migrate());
  }

  /**
   * Failback by hand (failback `manual`): moves what was written to the fallback during
   * the outage to the primary, then routes new operations there.
   * @returns {Promise<{workflows: number, tasks: number, executions: number, errors: number, dependencies: number, queues: number, schedules: number, mergedByKey: number, ms: number}>} what moved
   */
  failback() {
    return this.call('failback', () => this.handle.failback());
  }

  /**
   * Closes the pools, waiting for operations in flight; later calls reject with `DBC_CONNECTION`.
   * @returns {Promise<void>}
   */
  close() {
    return this.call('close', () => this.handle.close());
  }

  /**
   * Runs one addon call, its rejection as a DatabaseError.
   * @private
   * @param {string} operation names the call in the error
   * @param {function(): Promise<*>} fn the call
   * @returns {Promise<*>}
   */
  async call(operation, fn) {
    try {
      return await fn();
    } catch (err) {
      throw toDatabaseError(err, operation, this.provider);
    }
  }
}

/**
 * Opens a connector: probes the database, opens the pool, applies migrations.
 * @param {object} config connector config (see docs/API.md)
 * @param {function(new:Connector, object)} [As] the class to wrap the addon's handle in: Connector or a subclass
 * @returns {Promise<Connector>}
 */
async function open(config, As = Connector) {
  let handle;
  try {
    handle = await requireAddon().open(JSON.stringify(config));
  } catch (err) {
    throw toDatabaseError(err, 'connect');
  }
  return new As(handle);
}

/**
 * Connects once and reports the server version and latency; keeps nothing open.
 * @param {object} config connector config
 * @returns {Promise<{provider: string, serverVersion: string, latencyMs: number}>}
 */
async function testConnection(config) {
  try {
    return await requireAddon().testConnection(JSON.stringify(config));
  } catch (err) {
    throw toDatabaseError(err, 'test');
  }
}

module.exports = { open, testConnection, operations, queueOperations, Connector, DatabaseError, toDatabaseError };
