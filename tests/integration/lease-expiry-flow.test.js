/**
 * One way to end a task, seen from a flow: a `consume` node hands out the first task of a
 * workflow (A → B) and nothing ever reports its outcome, as when the work hangs or
 * Node-RED dies mid-task. When the lease of A's last attempt runs out, A is `failed`, B is
 * `cancelled`, the workflow ends `failed`, and the expiry is a row of A's error log — in a
 * real Node-RED runtime, on every provider.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { configFor, nodeConfigFor, pollUntil, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(service, { unloadEach: false });


for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: a consumed task nobody settles dies when its last lease expires; its workflow ends failed`, async () => {
    const cfg = nodeConfigFor(provider);
    const flow = [
      { id: 'tab', type: 'tab' },
      cfg.props,
      { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', queue: 'hang', concurrency: '1', leaseMs: '200', wires: [['emitted']] },
      { id: 'emitted', type: 'helper', z: 'tab' },
    ];
    const db = await service.open({ ...configFor(provider), tablePrefix: cfg.prefix, primary: provider === 'sqlite' ? { provider, sqliteFile: cfg.props.sqliteFile } : configFor(provider).primary });
    try {
      const emitted = [];
      await new Promise((resolve) => helper.load([dbNode], flow, { cfg: cfg.credentials }, resolve));
      helper.getNode('emitted').on('input', (msg) => emitted.push(msg.task.id));
      const wf = (await db.execute('createWorkflow', {
        name: 'hangs',
        tasks: [{ key: 'a', queue: 'hang', name: 'A', maxAttempts: 1 }, { key: 'b', queue: 'hang', name: 'B', dependsOn: ['a'] }],
      })).value;
      const [a, b] = wf.tasks.map((t) => t.id);
      const progress = await pollUntil(
        'the workflow to end',
        async () => (await db.execute('getWorkflowProgress', { workflowId: wf.id })).value,
        (p) => p.status !== 'pending' && p.status !== 'running',
      );
      assert.equal(progress.status, 'failed');
      assert.deepEqual([progress.failed, progress.cancelled, progress.pending, progress.running], [1, 1, 0, 0]);
      assert.deepEqual(emitted, [a], 'the consumer got A once, and never B');
      const ta = (await db.execute('getTask', { id: a })).value;
      assert.equal(ta.status, 'failed');
      assert.equal(ta.lastError, 'lease expired');
      assert.deepEqual(ta.history.map((h) => h.status), ['lease_expired']);
      assert.deepEqual(ta.errors.map((e) => [e.code, e.operation, e.attempt]), [['LEASE_EXPIRED', 'leaseReaper', 1]]);
      assert.match(ta.errors[0].message, /^lease expired: worker .+ did not report attempt 1 of 1/);
      assert.equal((await db.execute('getTask', { id: b })).value.status, 'cancelled');
    } finally {
      await helper.unload();
      await db.close();
    }
  });
}
