/**
 * msg._debug for every operation, exactly the shape of docs/API.md, and no secret in it,
 * in the metrics or in the runtime's log — with a password in the connection URL.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, uniquePrefix, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(service);

const SECRET = 'pw-s3cr3t-Zq9';
const DEBUG_KEYS = ['connectionState', 'dbMs', 'durationMs', 'failover', 'operation', 'pool', 'provider', 'retries', 'startedAt', 'statements'];


function checkDebug(d, operation) {
  assert.deepEqual(Object.keys(d).sort(), DEBUG_KEYS, operation);
  assert.equal(d.operation, operation);
  assert.equal(d.provider, 'postgres');
  assert.equal(d.failover, false);
  assert.equal(d.connectionState, 'connected');
  assert.ok(!Number.isNaN(Date.parse(d.startedAt)), operation);
  assert.ok(d.durationMs >= d.dbMs && d.dbMs >= 0, `${operation}: ${d.durationMs} >= ${d.dbMs}`);
  assert.ok(Array.isArray(d.statements) && d.statements.length > 0, operation);
  for (const s of d.statements) {
    assert.deepEqual(Object.keys(s).sort(), ['ms', 'name', 'rows']);
    assert.ok(typeof s.name === 'string' && s.ms >= 0 && Number.isInteger(s.rows));
  }
  const sum = d.statements.reduce((a, s) => a + s.ms, 0);
  assert.ok(Math.abs(sum - d.dbMs) < 1e-6, 'dbMs is the sum of the statements');
  assert.deepEqual(Object.keys(d.pool).sort(), ['idle', 'inUse', 'max', 'size', 'waiting']);
  assert.equal(d.pool.max, 4);
  assert.equal(d.retries, 0);
  assert.doesNotMatch(JSON.stringify(d), new RegExp(SECRET));
}

test('every operation carries msg._debug of the documented shape, without secrets', async () => {
  const url = new URL(PG_URL);
  url.password = SECRET; // trust auth ignores it; it must still never show
  const prefix = uniquePrefix('dbg');
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', provider: 'postgres', tablePrefix: prefix, poolMax: '4', retryBackoffMs: '1' },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'msg', queue: 'dq', debug: true, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
  ];
  await helper.load(dbNode, flow, { cfg: { url: url.toString() } });
  const op = helper.getNode('op');
  const out = helper.getNode('out');
  const logged = [];
  for (const level of ['log', 'warn', 'error', 'debug', 'trace']) op.on(`call:${level}`, (c) => logged.push(JSON.stringify(c.args)));
  const run = (operation, payload, extra = {}) =>
    new Promise((resolve, reject) => {
      const onOut = (msg) => { resolve(msg); };
      out.once('input', onOut);
      op.once('call:error', (c) => reject(new Error(`${operation}: ${c.args[0]}`)));
      op.receive({ operation, payload, ...extra });
    });

  const seen = {};
  const t1 = await run('insertTask', { name: 'one', maxAttempts: 1 });
  seen.insertTask = t1._debug;
  const claimed = await run('claimTasks', { limit: 1, workerId: 'w' });
  seen.claimTasks = claimed._debug;
  const failed = await run('updateTaskStatus', { id: t1.payload.id, status: 'failed', workerId: 'w', error: 'x' });
  seen.updateTaskStatus = failed._debug;
  assert.equal(failed.payload.status, 'failed');
  seen.requeueFailedTask = (await run('requeueFailedTask', { id: t1.payload.id }))._debug;
  seen.getTask = (await run('getTask', { id: t1.payload.id }))._debug;
  seen.listTasks = (await run('listTasks', { queue: 'dq' }))._debug;
  seen.deleteTask = (await run('deleteTask', { id: t1.payload.id }))._debug;
  const wf = await run('createWorkflow', { name: 'w', tasks: [{ key: 'a' }, { key: 'b', dependsOn: ['a'] }] });
  seen.createWorkflow = wf._debug;
  seen.getWorkflowProgress = (await run('getWorkflowProgress', { workflowId: wf.payload.id }))._debug;
  seen.pauseQueue = (await run('pauseQueue', { queue: 'dq' }))._debug;
  seen.resumeQueue = (await run('resumeQueue', { queue: 'dq' }))._debug;
  seen.getQueueStats = (await run('getQueueStats', {}))._debug;
  const t2 = await run('insertTask', { name: 'two', queue: 'dq2' });
  await run('claimTasks', { queue: 'dq2', limit: 1, workerId: 'w' });
  seen.heartbeat = (await run('heartbeat', { id: t2.payload.id, workerId: 'w', progress: 5 }))._debug;
  seen.snoozeTask = (await run('snoozeTask', { id: t2.payload.id, workerId: 'w', delayMs: 1000 }))._debug;
  seen.configureQueue = (await run('configureQueue', { queue: 'dq', deadLetterQueue: 'dq.dead' }))._debug;
  seen.createSchedule = (await run('createSchedule', { name: 'dbg', cron: '@yearly' }))._debug;
  seen.listSchedules = (await run('listSchedules', {}))._debug;
  seen.pauseSchedule = (await run('pauseSchedule', { name: 'dbg' }))._debug;
  seen.resumeSchedule = (await run('resumeSchedule', { name: 'dbg' }))._debug;
  seen.deleteSchedule = (await run('deleteSchedule', { name: 'dbg' }))._debug;
  seen.executeTransaction = (await run('executeTransaction', [{ operation: 'insertTask', payload: { name: 'tx' } }, { operation: 'query', payload: { sql: 'SELECT 1 AS one' } }]))._debug;
  seen.query = (await run('query', null, { topic: 'SELECT $1::int AS n', params: [7] }))._debug;
  for (const [operation, d] of Object.entries(seen)) checkDebug(d, operation);
  // every operation but previewSchedule, which runs no statement (it reads no database)
  assert.equal(Object.keys(seen).length, 22);

  const metrics = await helper.request().get('/database-connector/cfg/metrics').expect(200);
  const prom = await helper.request().get('/database-connector/cfg/metrics?format=prometheus').expect(200);
  for (const text of [JSON.stringify(metrics.body), prom.text, logged.join('\n')]) {
    assert.doesNotMatch(text, new RegExp(SECRET));
    assert.doesNotMatch(text, /postgres:\/\/[^/@\s]*:[^/@\s]*@/);
  }
  assert.equal(metrics.body.operations.insertTask.count, 2);
  await service
    .open({ primary: { provider: 'postgres', url: PG_URL }, tablePrefix: prefix, autoMigrate: false })
    .then(async (db) => {
      await db.query(`DROP TABLE IF EXISTS ${prefix}schedules, ${prefix}queues, ${prefix}error_logs, ${prefix}task_executions, ${prefix}task_dependencies, ${prefix}tasks, ${prefix}workflows, ${prefix}migrations`);
      await db.close();
    });
});

test('with debug off there is no msg._debug', async () => {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', provider: 'sqlite', sqliteFile: ':memory:' },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'query', sql: 'SELECT 1 AS one', debug: false, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
  ];
  await helper.load(dbNode, flow, {});
  const msg = await new Promise((resolve) => {
    helper.getNode('out').once('input', resolve);
    helper.getNode('op').receive({ payload: null });
  });
  assert.deepEqual(msg.payload, [{ one: 1 }]);
  assert.equal('_debug' in msg, false);
});
