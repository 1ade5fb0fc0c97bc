/**
 * messages.js — what a message asks for and what goes back out: the msg → operation
 * mapping, `msg._debug`, a query's rows as a `msg.parts` sequence, the node's status dot.
 * Errors from the database layer pass through unchanged; the ones made here (bad input
 * seen before any database call) are DatabaseErrors from the start.
 * @module messages
 */
'use strict';

const { DatabaseError, operations, queueOperations } = require('./database-service');

let nodeOperations = null;

/**
 * The operations a node can run: the addon's, `query`, and `consume` (a source). A node
 * set to `msg` reads one of these from `msg.operation`.
 * @returns {string[]}
 */
function nodeOperationNames() {
  if (!nodeOperations) nodeOperations = [...new Set([...operations(), 'query', 'consume'])];
  return nodeOperations;
}

/**
 * What the operation node's dialog needs to know about the operations, from the addon
 * (exported to the editor as the node setting `databaseConnectorOperations`): every name
 * a node can run, and those that take the node's Queue field (`consume` too). Null when
 * the addon does not load here; the dialog then shows every field.
 * @returns {{names: string[], queue: string[]}|null}
 */
function editorOperations() {
  try {
    return { names: nodeOperationNames(), queue: [...queueOperations(), 'consume'] };
  } catch {
    return null;
  }
}

/**
 * a DBC_VALIDATION error naming the bad field
 * @private
 * @returns {DatabaseError}
 */
function validation(field, message, operation, provider) {
  return new DatabaseError(message, { code: 'DBC_VALIDATION', field, operation, provider, retryable: false });
}

/**
 * Which operation a message asks for.
 * @param {object} node the operation node's config
 * @param {object} msg
 * @param {string} [provider] named in the error
 * @returns {string}
 * @throws {DatabaseError} `DBC_VALIDATION` (field `operation`) for an unknown one
 */
function operationOf(node, msg, provider) {
  const op = node.operation === 'msg' || !node.operation ? msg.operation : node.operation;
  const known = nodeOperationNames();
  if (typeof op !== 'string' || !known.includes(op)) {
    throw validation('operation', `unknown operation ${JSON.stringify(op)}; use one of ${known.join(', ')}`, String(op), provider);
  }
  return op;
}

/**
 * Builds `msg._debug` (docs/API.md) from the addon's debug data and the JS wall time.
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
 * @param {Connector} registry the open connection
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
 * @param {Registry} registry the open connection
 * @param {object} node the operation node's config (`operation`, `queue`, `debug`, `sql`, `rowsPerMsg`)
 * @param {object} msg the incoming message (kept, with `payload` replaced)
 * @param {object} [stream] how a query with `rowsPerMsg` sends its parts as they arrive
 * @param {function(object): void} [stream.emit] sends one part (without it, the parts are collected and returned)
 * @param {AbortSignal} [stream.signal] aborts when the node closes: the query stops, no more parts go out
 * @returns {Promise<object|object[]|null>} one msg; an array of msgs for `rowsPerMsg` without `emit`; null when `emit` sent them
 * @throws {DatabaseError} as the database layer made it, or `DBC_VALIDATION` for bad input
 */
async function runOperation(registry, node, msg, stream = {}) {
  let operation;
  try {
    operation = operationOf(node, msg);
  } catch (err) {
    throw err.withProvider(registry.provider); // read on the error path only: a read crosses into the addon
  }
  const debug = node.debug === true || node.debug === 'true';
  const options = { debug, queue: node.queue || undefined };
  const startedAt = Date.now();
  const t0 = debug ? performance.now() : 0;
  if (operation === 'query') {
    const sql = node.sql || msg.topic;
    if (typeof sql !== 'string' || !sql.trim()) {
      throw validation('sql', 'no SQL: set it in the node or in msg.topic', operation, registry.provider);
    }
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
  if ((operation === 'heartbeat' || operation === 'snoozeTask') && msg.task && !(payload && typeof payload === 'object' && payload.id)) {
    // after a consume node, msg.payload is the task's own payload: the task comes from
    // msg.task, the other fields from msg.heartbeat / msg.snooze
    const extra = operation === 'heartbeat' ? msg.heartbeat : msg.snooze;
    payload = { ...(extra && typeof extra === 'object' ? extra : {}), id: msg.task.id };
    if (payload.workerId === undefined && msg.task.workerId) payload.workerId = msg.task.workerId;
  }
  const r = await registry.run(operation, payload, options);
  msg.payload = r.value;
  if (debug) msg._debug = buildDebug(operation, startedAt, t0, r.debug);
  return msg;
}

/**
 * Status dot for a connection state (docs/USER-GUIDE.md). A `database-connector.*` text
 * is a message catalogue key for the caller to translate.
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

module.exports = { nodeOperationNames, editorOperations, operationOf, buildDebug, streamRows, runOperation, statusFor };
