/**
 * database-service.js — the only file that talks to the Rust addon.
 *
 * It loads the native binding, and wraps each addon call so that a rejection becomes a
 * {@link DatabaseError} with the addon's `code`, `retryable`, `provider`, `operation`
 * (and `field`, `index`, `sqlState`, `outcome` where they apply) plus a JS stack that
 * points at the caller — the addon's own error object has no JS frames.
 * @module database-service
 */
'use strict';

let addon = null;
let loadError = null;
try {
  addon = require('../../native');
} catch (err) {
  loadError = err;
}

const DETAIL_FIELDS = ['code', 'retryable', 'provider', 'operation', 'field', 'index', 'sqlState', 'outcome'];

/** An operation failure with a stable `DBC_*` code (docs/ERRORS.md). */
class DatabaseError extends Error {
  /**
   * @param {string} message plain-words description, never containing a secret
   * @param {object} details `code`, `retryable`, `provider`, `operation` and optional extras
   */
  constructor(message, details = {}) {
    super(message);
    this.name = 'DatabaseError';
    for (const k of DETAIL_FIELDS) {
      if (details[k] !== undefined) this[k] = details[k];
    }
    if (this.code === undefined) this.code = 'DBC_INTERNAL';
    if (this.retryable === undefined) this.retryable = false;
  }

  /** "DBC_CODE: message" — what Node-RED shows as msg.error.message and in the log. */
  toString() {
    return `${this.code}: ${this.message}`;
  }
}

/**
 * Turns anything thrown by the addon (or by JS while preparing a call) into a DatabaseError.
 * @param {unknown} err
 * @param {string} operation
 * @param {string} [provider]
 * @returns {DatabaseError}
 */
function toDatabaseError(err, operation, provider) {
  let out = err;
  if (!(err instanceof DatabaseError)) {
    const e = err && typeof err === 'object' ? err : { message: String(err) };
    const coded = typeof e.code === 'string' && e.code.startsWith('DBC_');
    out = new DatabaseError(e.message || String(err), coded ? e : { code: 'DBC_INTERNAL', operation });
  }
  if (out.operation === undefined && operation) out.operation = operation;
  if (out.provider === undefined && provider) out.provider = provider;
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

/**
 * Serializes a payload for the addon. JSON.stringify rejects cycles and BigInt; the
 * replacer also rejects NaN and Infinity, which JSON would silently turn into null.
 * @param {unknown} payload
 * @param {string} operation
 * @returns {string}
 */
function payloadJson(payload, operation) {
  try {
    const text = JSON.stringify(payload === undefined ? null : payload, (key, value) => {
      if (typeof value === 'number' && !Number.isFinite(value)) {
        throw new TypeError(`${key || 'payload'} is ${value}, which cannot be stored`);
      }
      return value;
    });
    return text === undefined ? 'null' : text;
  } catch (err) {
    throw new DatabaseError(`msg.payload cannot be sent to the database: ${err.message}`, {
      code: 'DBC_VALIDATION', field: 'payload', operation, retryable: false,
    });
  }
}

/** Single-task operations whose calls of one event-loop turn cross into the addon together. */
const GATHERED = new Set(['insertTask', 'updateTaskStatus']);

/**
 * The addon answers an operation with JSON text: one JSON.parse beats building a large
 * answer (a thousand tasks) property by property through napi.
 * @param {{valueJson?: string}} r the addon's answer
 * @returns {{provider: string, value: *, debug?: object}}
 */
function parsed(r) {
  if (r.valueJson !== undefined) {
    r.value = JSON.parse(r.valueJson);
    delete r.valueJson;
  }
  return r;
}

/** One open connector (a config node's pools). */
class DatabaseService {
  /** @param {object} handle the addon's Connector */
  constructor(handle) {
    this.handle = handle;
  }

  /** @returns {string} `postgres`, `mariadb` or `sqlite` */
  get provider() {
    return this.handle.provider;
  }

  /** @returns {string} `connected`, `failover`, `reconnecting` or `disconnected` */
  get state() {
    return this.handle.state;
  }

  /** @returns {string} why the connection state last changed (no secrets) */
  get stateReason() {
    return this.handle.stateReason;
  }

  /** @returns {{size:number, idle:number, inUse:number, max:number, waiting:number}} */
  pool() {
    return this.handle.pool();
  }

  /**
   * Runs a queue operation.
   * @param {string} operation e.g. `insertTask`
   * @param {unknown} payload the operation's input (msg.payload)
   * @param {{debug?: boolean, queue?: string}} [options]
   * @returns {Promise<{provider: string, value: any, debug?: object}>}
   */
  async execute(operation, payload, options) {
    try {
      if (GATHERED.has(operation) && !Array.isArray(payload) && !(options && options.debug)) {
        const r = await this.gather(operation, payloadJson(payload, operation), options && options.queue);
        if (r.error) throw r.error;
        return r;
      }
      return parsed(await this.handle.execute(operation, payloadJson(payload, operation), options));
    } catch (err) {
      throw toDatabaseError(err, operation, this.provider);
    }
  }

  /**
   * Queues one single-task call for the end of this event-loop turn, when every call of
   * the turn (per default queue) crosses into the addon at once (`executeMany`): one
   * napi call, one task on the addon's runtime and one answer for all of them, instead
   * of one each. The addon's group commit then sees them together.
   * @param {string} operation `insertTask` or `updateTaskStatus`
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

  /** Sends the calls gathered in this turn (see gather). */
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
   * @param {string} sql
   * @param {Array|object|null} [params] array: positional; object: `:name`
   * @param {{debug?: boolean}} [options]
   * @returns {Promise<{provider: string, rows: object[], rowCount: number, lastInsertId?: number|string, debug?: object}>}
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
   * @param {string} sql
   * @param {Array|object|null} [params] array: positional; object: `:name`
   * @param {number} chunkRows rows per chunk (at least 1)
   * @param {{debug?: boolean}} [options]
   * @returns {{next: function(): Promise<{rows: object[], done: boolean, rowCount?: number, lastInsertId?: number|string, debug?: object}>, close: function(): void}}
   *   `next()` rejects with a DatabaseError; after the last chunk (`done`), an error or
   *   `close()` it resolves `{rows: [], done: true}`
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
   * Waits until new work may be in `queue`, or `timeoutMs` passes.
   * @param {string} queue
   * @param {number} timeoutMs
   * @returns {Promise<boolean>} true when woken by new work
   */
  waitForTasks(queue, timeoutMs) {
    return this.handle.waitForTasks(queue, timeoutMs);
  }

  /** @returns {Promise<Array<{queue: string, status: string, count: number}>>} tasks by queue and status */
  async queueDepth() {
    try {
      return await this.handle.queueDepth();
    } catch (err) {
      throw toDatabaseError(err, 'queueDepth', this.provider);
    }
  }

  /** @returns {Promise<object>} metrics as JSON (see docs/API.md) */
  metrics() {
    return this.handle.metrics();
  }

  /**
   * @param {string} connection label for every series (the config node's name or id)
   * @returns {Promise<string>} metrics in the Prometheus text format
   */
  metricsPrometheus(connection) {
    return this.handle.metricsPrometheus(connection);
  }

  /** @returns {Promise<{provider: string, applied: object[], pending: object[]}>} */
  async schema() {
    try {
      return await this.handle.schema();
    } catch (err) {
      throw toDatabaseError(err, 'schema', this.provider);
    }
  }

  /** @returns {Promise<object[]>} the migrations applied */
  async migrate() {
    try {
      return await this.handle.migrate();
    } catch (err) {
      throw toDatabaseError(err, 'migrate', this.provider);
    }
  }

  /** @returns {boolean} true while operations go to the fallback database */
  get failover() {
    return this.handle.failover;
  }

  /** Moves the fallback's writes back to the primary and routes there again. @returns {Promise<object>} what moved */
  async failback() {
    try {
      return await this.handle.failback();
    } catch (err) {
      throw toDatabaseError(err, 'failback', this.provider);
    }
  }

  /** Closes the pools; waits for operations in flight. @returns {Promise<void>} */
  async close() {
    await this.handle.close();
  }
}

/**
 * Opens a connector: probes the database, opens the pool, applies migrations.
 * @param {object} config connector config (see docs/API.md)
 * @returns {Promise<DatabaseService>}
 */
async function open(config) {
  try {
    return new DatabaseService(await requireAddon().open(JSON.stringify(config)));
  } catch (err) {
    throw toDatabaseError(err, 'connect');
  }
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

module.exports = { open, testConnection, DatabaseError, toDatabaseError };
