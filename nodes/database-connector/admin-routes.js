/**
 * admin-routes.js — the admin HTTP API (docs/API.md) under Node-RED's admin root, behind
 * its auth and `RED.auth.needsPermission`: connection test, schema status and
 * migration, failback, metrics, queue statistics, pause and resume, and the task
 * browser's routes (task-routes.js).
 * @module admin-routes
 */
'use strict';

const service = require('./database-service');
const { buildConnectorConfig } = require('./config');
const { registerTaskRoutes } = require('./task-routes');
const { registerScheduleRoutes } = require('./schedule-routes');

/**
 * Answers the editor's "Test connection": fills stored credentials for fields the
 * dialog left as the `__PWRD__` placeholder, connects once to the primary or, with
 * `target: 'fallback'`, to the fallback connection, and never throws.
 * @param {object} body
 * @param {object} body.config the config dialog's fields
 * @param {object} [body.credentials] its credentials
 * @param {string} [body.target] `primary` (the default) or `fallback`
 * @param {object} [stored] the node's saved credentials
 * @param {string} [userDir]
 * @returns {Promise<object>} `{ok: true, target, provider, serverVersion, latencyMs}` or
 *   `{ok: false, target, code, message, retryable}`
 */
async function testConnection(body, stored, userDir) {
  const target = body && body.target === 'fallback' ? 'fallback' : 'primary';
  try {
    const creds = { ...((body && body.credentials) || {}) };
    for (const k of Object.keys(creds)) {
      if (creds[k] === '__PWRD__') creds[k] = stored ? stored[k] : undefined;
    }
    const config = buildConnectorConfig((body && body.config) || {}, creds, userDir);
    if (target === 'fallback') {
      if (!config.fallback) {
        throw new service.DatabaseError('no fallback connection is configured (fallbackEnabled is off, or the primary is SQLite)', { code: 'DBC_CONFIG', operation: 'test', retryable: false });
      }
      // the fallback's settings in the primary's place, with the same pool options
      config.primary = config.fallback;
      config.fallback = undefined;
    }
    const r = await service.testConnection(config);
    return { ok: true, target, ...r };
  } catch (err) {
    const e = service.toDatabaseError(err, 'test');
    return { ok: false, target, code: e.code, message: e.message, retryable: e.retryable === true };
  }
}

/**
 * Registers the admin HTTP API (docs/API.md) under Node-RED's admin root, behind its auth:
 * connection test, schema status and migration, metrics, queue statistics, pause and resume.
 * @param {object} RED the Node-RED runtime API
 */
function registerAdminRoutes(RED) {
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
        const err = service.toDatabaseError(error);
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

  // the editor's task browser: tasks, workflows and its client files (task-routes.js)
  registerTaskRoutes(RED, { read, write, configNode });
  // and its Schedules section (schedule-routes.js)
  registerScheduleRoutes(RED, { read, write, configNode });

  RED.httpAdmin.get('/database-connector/:configId/metrics', read, (req, res) => {
    const node = configNode(req, res);
    if (!node) return;
    if (!node.inUse()) {
      // no deployed flow uses this connection: say so, without opening a pool for it
      if (req.query.format === 'prometheus') res.type('text/plain; version=0.0.4').send('# not used by any deployed flow: no pool is open\n');
      else res.json({ state: 'unused', unused: true });
      return;
    }
    if (req.query.format === 'prometheus') {
      node.getRegistry().then((r) => r.metricsPrometheus(node.name || node.id)).then(
        (text) => res.type('text/plain; version=0.0.4').send(text),
        (error) => res.status(503).type('text/plain').send(`# ${service.toDatabaseError(error).code}\n`),
      );
    } else answer(res, node.getRegistry().then((r) => r.metrics()));
  });

  // queues: statistics, pause and resume (the state is in the database, for every runtime)
  RED.httpAdmin.get('/database-connector/:configId/queues', read, (req, res) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then((r) => r.getQueueStats()));
  });

  for (const action of ['pause', 'resume']) {
    RED.httpAdmin.post(`/database-connector/:configId/queues/:queue/${action}`, write, (req, res) => {
      const node = configNode(req, res);
      if (node) answer(res, node.getRegistry().then((r) => r[`${action}Queue`](req.params.queue)));
    });
  }
}

module.exports = { registerAdminRoutes, testConnection };
