/**
 * The JavaScript method registry (docs/API.md "JavaScript: the method registry") on every
 * provider: a task's whole life through its methods, workflows, transactions, the
 * `settled` event, wake-ups, pool and schema introspection, and use after close.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const helpers = require('../../nodes/database-connector/database-connector-helpers');
const service = require('../../nodes/database-connector/database-service');
const { configFor, requireDatabases } = require('../support');

test.before(() => requireDatabases(service));

const rejectsWith = async (promise, code) => {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `${err.code}: ${err.message}`);
    return true;
  });
};

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: a task's life through the registry's methods`, async () => {
    const cfg = configFor(provider, { pool: { poolMax: 3 } });
    const db = await helpers.connectToDatabase(provider, cfg);
    try {
      assert.equal(db.provider, provider);
      assert.equal(db.state, 'connected');
      const settled = [];
      db.on('settled', (id) => settled.push(id));

      const t = await db.insertTask({ queue: 'mail', payload: { to: 'ada' }, maxAttempts: 1 });
      assert.equal(t.status, 'pending');
      const [claimed] = (await db.run('claimTasks', { queue: 'mail', workerId: 'w1' })).value;
      assert.equal(claimed.id, t.id);
      assert.deepEqual(settled, [], 'claiming settles nothing');

      await rejectsWith(db.updateTaskStatus(t.id, 'completed', { workerId: 'w2' }), 'DBC_LEASE_LOST');
      const failed = await db.updateTaskStatus(t.id, 'failed', { workerId: 'w1', error: { code: 'E_SMTP', message: 'no route' } });
      assert.equal(failed.status, 'failed', 'one attempt only: failed for good');
      assert.deepEqual(settled, [t.id]);

      const requeued = await db.requeueFailedTask(t.id);
      assert.equal(requeued.status, 'pending');
      assert.equal(requeued.maxAttempts, 2, 'a fresh budget: attempts + the old maxAttempts');
      await rejectsWith(db.requeueFailedTask(t.id), 'DBC_INVALID_TRANSITION');

      const full = await db.getTask(t.id);
      assert.equal(full.history.length, 1);
      assert.equal(full.history[0].status, 'failed');
      assert.deepEqual(full.errors.map((e) => [e.code, e.message]), [['E_SMTP', 'no route']]);
      await rejectsWith(db.getTask('0190d6e0-0000-7000-8000-000000000000'), 'DBC_NOT_FOUND');

      const wf = (await db.run('createWorkflow', { name: 'etl', tasks: [{ key: 'a', queue: 'etl' }, { key: 'b', queue: 'etl', dependsOn: ['a'] }] })).value;
      let progress = await db.getWorkflowProgress(wf.id);
      assert.deepEqual([progress.status, progress.total, progress.pending, progress.percent], ['pending', 2, 2, 0]);
      const [first] = (await db.run('claimTasks', { queue: 'etl', limit: 10 })).value.map((x) => x.id);
      assert.equal(first, wf.tasks[0].id, 'b waits for a');
      await db.updateTaskStatus(first, 'completed', { result: { rows: 3 } });
      progress = await db.getWorkflowProgress(wf.id);
      assert.deepEqual([progress.status, progress.completed, progress.percent], ['running', 1, 50]);

      const [inserted, counted] = await db.executeTransaction([
        { operation: 'insertTask', payload: { queue: 'tx' } },
        { operation: 'query', payload: { sql: `SELECT count(*) AS n FROM ${cfg.tablePrefix}tasks WHERE queue = :q`, params: { q: 'tx' } } },
      ]);
      assert.equal(inserted.queue, 'tx');
      assert.equal(Number(counted.rows[0].n), 1, 'a later step sees an earlier one');
      await assert.rejects(
        db.executeTransaction([{ operation: 'insertTask', payload: { queue: 'tx' } }, { operation: 'getTask', payload: { id: 'not-a-uuid' } }]),
        (err) => err.code === 'DBC_TRANSACTION' && err.index === 1,
      );
      const depth = await db.queueDepth();
      assert.deepEqual(depth.filter((d) => d.queue === 'tx'), [{ queue: 'tx', status: 'pending', count: 1 }], 'the failed transaction wrote nothing');

      // one insert wakes the waiter (false would mean its 10 s ran out): a poke that lands
      // before the waiter is registered inside the addon counts too (kept for the next wait)
      const woke = db.waitForTasks('wake', 10000);
      await db.insertTask({ queue: 'wake' });
      assert.equal(await woke, true, 'one insert through this registry wakes a waiter');
      assert.equal(await db.waitForTasks('nothing-here', 50), false);

      const pool = db.pool();
      assert.equal(pool.max, 3);
      assert.equal(pool.inUse, 0);
      const schema = await db.schema();
      assert.equal(schema.provider, provider);
      assert.ok(schema.applied.length >= 1);
      assert.deepEqual(schema.pending, []);
      assert.deepEqual(await db.migrate(), [], 'nothing pending');
      const text = await db.metricsPrometheus('reg');
      assert.match(text, /dbc_operations_total\{connection="reg",provider="\w+",operation="insertTask"\} [1-9]/);
    } finally {
      await db.close();
    }
    for (const call of [() => db.insertTask({}), () => db.schema(), () => db.migrate(), () => db.queueDepth(), () => db.query('SELECT 1')]) {
      await rejectsWith(call(), 'DBC_CONNECTION');
    }
  });
}

test('connectToDatabase: provider overrides the config; a bad config is DBC_CONFIG; a server that is down is waited for', async () => {
  const db = await helpers.connectToDatabase('sqlite', { ...configFor('sqlite'), primary: { ...configFor('sqlite').primary, provider: 'postgres' } });
  assert.equal(db.provider, 'sqlite');
  await db.close();
  await rejectsWith(helpers.connectToDatabase('sqlite', { ...configFor('sqlite'), tablePrefix: 'Bad-Prefix' }), 'DBC_CONFIG');
  const down = await helpers.connectToDatabase('postgres', { primary: { url: 'postgres://nobody@127.0.0.1:1/x' }, pool: { acquireTimeoutMs: 500 } });
  try {
    assert.equal(down.state, 'reconnecting');
    await assert.rejects(down.insertTask({ queue: 'q' }), (err) => err.retryable === true && err.code === 'DBC_CONNECTION');
  } finally {
    await down.close();
  }
});
