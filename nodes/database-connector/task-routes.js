/**
 * task-routes.js — the admin routes of the editor's task browser (docs/API.md "Admin HTTP
 * API", docs/USER-GUIDE.md "The task browser"): a page of tasks, one task with its
 * history and errors, requeue / cancel / delete, a workflow with its tasks and their
 * dependencies, and the browser's own client files. Reading needs
 * `database-connector.read`, changing `database-connector.write`; Node-RED's auth checks
 * both before a handler runs.
 *
 * Each route runs operations the registry already has (listTasks, getTask,
 * requeueFailedTask, updateTaskStatus, deleteTask, getWorkflowProgress). Payloads,
 * results and error texts are cut before they leave the runtime, so the editor never
 * receives a large payload whole.
 * @module task-routes
 */
'use strict';

const path = require('path');
const service = require('./database-service');

/** Bytes of a payload, result or error text shown in a list (its JSON text, cut). */
const LIST_PREVIEW_BYTES = 2048;
/** Bytes of a payload, result or error text shown in a task's detail. */
const DETAIL_PREVIEW_BYTES = 65536;
/** Default and largest page of the list (the core takes up to 1000; a page is for reading). */
const PAGE_DEFAULT = 50;
const PAGE_MAX = 200;
/** Tasks of a workflow drawn in its graph; a larger workflow shows its first ones. */
const GRAPH_MAX = 200;
/** getTask calls in flight at once while the dependencies of a graph are read. */
const GRAPH_READS = 4;
/** The client files the editor loads (`GET /database-connector/editor/:file`). */
const CLIENT_FILES = {
  'task-browser.js': 'application/javascript',
  'task-browser.css': 'text/css',
};

/** HTTP status for a `DBC_*` code; anything else is 500. */
const HTTP_STATUS = {
  DBC_VALIDATION: 400,
  DBC_CONFIG: 400,
  DBC_NOT_FOUND: 404,
  DBC_INVALID_TRANSITION: 409,
  DBC_LEASE_LOST: 409,
  DBC_CONFLICT: 409,
};

/**
 * Answers a route with what `promise` resolves to, or with its error as
 * `{ok: false, code, message, field?}` and the code's HTTP status (HTTP_STATUS; else 500).
 * @param {object} res the Express response
 * @param {Promise<object>} promise
 * @returns {Promise<void>}
 */
const answer = (res, promise) =>
  promise.then(
    (body) => res.json(body),
    (error) => {
      const err = service.toDatabaseError(error);
      const body = { ok: false, code: err.code, message: err.message };
      if (err.field !== undefined) body.field = err.field;
      res.status(HTTP_STATUS[err.code] || 500).json(body);
    },
  );

/**
 * A value as the editor may show it: unchanged when its JSON text (a string: the string
 * itself) is at most `max` bytes, else the first `max` bytes of that text.
 * @param {*} value a payload, result or error text
 * @param {number} max bytes
 * @returns {{value: *, bytes: (number|undefined)}} `bytes`: the whole text's size, only when cut
 */
function preview(value, max) {
  if (value === null || value === undefined) return { value };
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const bytes = Buffer.byteLength(text);
  if (bytes <= max) return { value };
  // a cut inside a multi-byte character leaves a replacement character: drop it
  const cut = Buffer.from(text).subarray(0, max).toString().replace(/\uFFFD+$/, '');
  return { value: cut, bytes };
}

/**
 * A task with its large fields cut for display (see {@link preview}). A cut field holds
 * the start of its JSON text, and `truncated` names it with its whole size in bytes,
 * e.g. `truncated: {payload: 1048576}`; without a cut there is no `truncated`.
 * @param {object} task a task (or getTask's task with history and errors)
 * @param {number} max bytes per field
 * @returns {object} a copy
 */
function forDisplay(task, max) {
  const out = { ...task };
  const truncated = {};
  for (const field of ['payload', 'result', 'lastError']) {
    const p = preview(task[field], max);
    out[field] = p.value;
    if (p.bytes !== undefined) truncated[field] = p.bytes;
  }
  if (Array.isArray(task.errors)) {
    out.errors = task.errors.map((e, i) => {
      const p = preview(e.message, max);
      if (p.bytes !== undefined) truncated[`errors[${i}].message`] = p.bytes;
      return { ...e, message: p.value };
    });
  }
  if (Object.keys(truncated).length) out.truncated = truncated;
  return out;
}

/**
 * A `DBC_VALIDATION` error of this API's own parameters.
 * @param {string} field
 * @param {string} message
 * @returns {service.DatabaseError}
 * @private
 */
function invalid(field, message) {
  return new service.DatabaseError(message, { code: 'DBC_VALIDATION', field, operation: 'taskBrowser' });
}

/**
 * listTasks's input from the list route's query string.
 * @param {object} query `queue, status, workflowId, name, cursor, limit`
 * @returns {object} the input of listTasks
 * @private
 */
function listInput(query) {
  const input = {};
  for (const key of ['queue', 'status', 'workflowId', 'name']) {
    const value = query[key] === undefined ? '' : String(query[key]).trim();
    if (value !== '') input[key] = value;
  }
  if (query.cursor !== undefined && query.cursor !== '') input.after = String(query.cursor);
  let limit = PAGE_DEFAULT;
  if (query.limit !== undefined && query.limit !== '') {
    limit = /^\d{1,4}$/.test(String(query.limit)) ? Number(query.limit) : 0;
    if (limit < 1 || limit > PAGE_MAX) throw invalid('limit', `limit must be an integer from 1 to ${PAGE_MAX}`);
  }
  input.limit = limit;
  return input;
}

/**
 * Runs `fn` over `items`, at most `width` at a time, in order.
 * @param {Array} items
 * @param {number} width
 * @param {function(*): Promise<*>} fn
 * @returns {Promise<Array>} the results, in the items' order
 * @private
 */
async function inBatches(items, width, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += width) {
    out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  }
  return out;
}

/**
 * A workflow for its graph: its progress, its first {@link GRAPH_MAX} tasks (no payloads)
 * and, unless `withDependencies` is false, each task's `dependsOn` (one getTask per task:
 * listTasks does not return dependencies).
 * @param {object} registry an open registry
 * @param {string} workflowId
 * @param {boolean} withDependencies
 * @returns {Promise<{workflow: object, tasks: object[], more: boolean}>}
 * @private
 */
async function workflowGraph(registry, workflowId, withDependencies) {
  const workflow = await registry.getWorkflowProgress(workflowId);
  const page = (await registry.run('listTasks', { workflowId, limit: GRAPH_MAX })).value;
  const tasks = page.tasks.map((t) => ({
    id: t.id,
    name: t.name,
    queue: t.queue,
    status: t.status,
    attempts: t.attempts,
    maxAttempts: t.maxAttempts,
    lastError: preview(t.lastError, 200).value,
  }));
  if (withDependencies) {
    const deps = await inBatches(tasks, GRAPH_READS, (t) =>
      registry.getTask(t.id).then((d) => d.dependsOn, (err) => {
        if (err.code === 'DBC_NOT_FOUND') return []; // deleted since the list was read
        throw err;
      }));
    tasks.forEach((t, i) => { t.dependsOn = deps[i]; });
  }
  return { workflow, tasks, more: page.next !== null };
}

/**
 * Registers the task browser's routes (called by registerAdminRoutes).
 * @param {object} RED the Node-RED runtime API
 * @param {object} ctx what admin-routes.js shares
 * @param {function} ctx.read `RED.auth.needsPermission('database-connector.read')`
 * @param {function} ctx.write `RED.auth.needsPermission('database-connector.write')`
 * @param {function(object, object): (object|null)} ctx.configNode the deployed config node of `req.params.configId`, or null after answering 404
 */
function registerTaskRoutes(RED, { read, write, configNode }) {
  /** Runs `fn(registry)` for the route's connection; opens its pool if it is not open. */
  const withRegistry = (req, res, fn) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then(fn));
  };

  RED.httpAdmin.get('/database-connector/editor/:file', read, (req, res) => {
    const type = Object.prototype.hasOwnProperty.call(CLIENT_FILES, req.params.file) && CLIENT_FILES[req.params.file];
    if (!type) {
      res.status(404).json({ ok: false, code: 'DBC_NOT_FOUND', message: 'no such editor file' });
      return;
    }
    res.type(type).sendFile(path.join(__dirname, 'editor', req.params.file));
  });

  RED.httpAdmin.get('/database-connector/:configId/tasks', read, (req, res) => {
    const node = configNode(req, res);
    if (!node) return;
    let input;
    try {
      input = listInput(req.query || {});
    } catch (err) {
      answer(res, Promise.reject(err)); // before the pool opens for it
      return;
    }
    answer(res, node.getRegistry().then(async (registry) => {
      const page = (await registry.run('listTasks', input)).value;
      return { tasks: page.tasks.map((t) => forDisplay(t, LIST_PREVIEW_BYTES)), next: page.next };
    }));
  });

  RED.httpAdmin.get('/database-connector/:configId/tasks/:id', read, (req, res) => {
    withRegistry(req, res, async (registry) => forDisplay(await registry.getTask(req.params.id), DETAIL_PREVIEW_BYTES));
  });

  RED.httpAdmin.post('/database-connector/:configId/tasks/:id/requeue', write, (req, res) => {
    withRegistry(req, res, async (registry) => ({ ok: true, task: forDisplay(await registry.requeueFailedTask(req.params.id), LIST_PREVIEW_BYTES) }));
  });

  RED.httpAdmin.post('/database-connector/:configId/tasks/:id/cancel', write, (req, res) => {
    withRegistry(req, res, async (registry) => ({ ok: true, task: forDisplay(await registry.updateTaskStatus(req.params.id, 'cancelled'), LIST_PREVIEW_BYTES) }));
  });

  RED.httpAdmin.delete('/database-connector/:configId/tasks/:id', write, (req, res) => {
    withRegistry(req, res, async (registry) => ({ ok: true, ...(await registry.run('deleteTask', { id: req.params.id })).value }));
  });

  RED.httpAdmin.get('/database-connector/:configId/workflows/:workflowId', read, (req, res) => {
    withRegistry(req, res, (registry) => workflowGraph(registry, req.params.workflowId, req.query.deps !== '0'));
  });
}

module.exports = { registerTaskRoutes, answer, forDisplay, preview, LIST_PREVIEW_BYTES, DETAIL_PREVIEW_BYTES, PAGE_MAX, GRAPH_MAX };
