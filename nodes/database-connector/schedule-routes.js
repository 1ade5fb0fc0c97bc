/**
 * schedule-routes.js — the admin routes of the task browser's Schedules section
 * (docs/API.md "Admin HTTP API", docs/USER-GUIDE.md "Recurring tasks: schedules"): list,
 * create or replace, pause, resume and delete schedules, and the preview of a cron
 * pattern (its words and next runs, computed by the runtime). Reading and the preview
 * need `database-connector.read`, changing `database-connector.write`.
 *
 * Each route runs one operation of the registry (listSchedules, createSchedule,
 * pauseSchedule, resumeSchedule, deleteSchedule, previewSchedule).
 * @module schedule-routes
 */
'use strict';

const { answer } = require('./task-routes');

/** Next runs a preview shows. */
const PREVIEW_RUNS = 3;

/**
 * Registers the schedule routes (called by registerAdminRoutes).
 * @param {object} RED the Node-RED runtime API
 * @param {object} ctx what admin-routes.js shares
 * @param {function} ctx.read `RED.auth.needsPermission('database-connector.read')`
 * @param {function} ctx.write `RED.auth.needsPermission('database-connector.write')`
 * @param {function(object, object): (object|null)} ctx.configNode the deployed config node of `req.params.configId`, or null after answering 404
 */
function registerScheduleRoutes(RED, { read, write, configNode }) {
  // an error as `{ok: false, code, message, field?}`: 400 for bad input (a cron pattern
  // the preview refuses), 404 for an unknown schedule (task-routes.js `answer`)
  const withRegistry = (req, res, fn) => {
    const node = configNode(req, res);
    if (node) answer(res, node.getRegistry().then(fn));
  };
  const base = '/database-connector/:configId/schedules';

  RED.httpAdmin.get(base, read, (req, res) => {
    withRegistry(req, res, (registry) => registry.listSchedules());
  });

  RED.httpAdmin.post(base, write, (req, res) => {
    withRegistry(req, res, (registry) => registry.createSchedule(req.body || {}));
  });

  RED.httpAdmin.post(`${base}-preview`, read, (req, res) => {
    const body = req.body || {};
    withRegistry(req, res, (registry) => registry.previewSchedule(body.cron, body.timeZone || undefined, PREVIEW_RUNS));
  });

  for (const action of ['pause', 'resume']) {
    RED.httpAdmin.post(`${base}/:name/${action}`, write, (req, res) => {
      withRegistry(req, res, (registry) => registry.changeSchedule(`${action}Schedule`, req.params.name));
    });
  }

  RED.httpAdmin.delete(`${base}/:name`, write, (req, res) => {
    withRegistry(req, res, (registry) => registry.changeSchedule('deleteSchedule', req.params.name));
  });
}

module.exports = { registerScheduleRoutes, PREVIEW_RUNS };
