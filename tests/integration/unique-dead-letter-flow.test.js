/**
 * Uniqueness windows and dead-letter queues in a real Node-RED runtime, on every provider:
 * the example flow examples/unique-and-dead-letter.json (its config node pointed at the
 * provider) inserts through its HTTP endpoints with `uniqueFor: 'active'` and
 * `uniqueFor: 2000`, sets `work`'s dead-letter queue at deploy (`configureQueue`, seen in
 * GET …/queues), and its workers fail a job for good and handle the dead letter. A test
 * consumer that never settles adds a death by lease expiry.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { root, configFor, nodeConfigFor, requireDatabases, spawnNodeRed, pollUntil } = require('../support');

test.before(() => requireDatabases(service));

const EXAMPLE = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'unique-and-dead-letter.json'), 'utf8'));

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: uniqueFor active and a period, dead letters by failure and by lease expiry, through the example flow`, { timeout: 180000 }, async () => {
    const cfg = nodeConfigFor(provider, 'dbc_cfg');
    const flows = EXAMPLE.map((n) => (n.type === 'database-connector-config' ? cfg.props : n));
    // a consumer that takes tasks of `hang` and never reports: its lease runs out
    flows.push({ id: 'udl_test_hang', type: 'database-connector', z: 'udl_tab', connection: 'dbc_cfg', operation: 'consume', queue: 'hang', concurrency: '1', leaseMs: '300', wires: [[]] });
    const db = await service.open({ ...configFor(provider), tablePrefix: cfg.prefix, ...(provider === 'sqlite' ? { primary: { provider, sqliteFile: cfg.props.sqliteFile } } : {}) });
    const red = await spawnNodeRed({ flows, credentials: { dbc_cfg: cfg.credentials } });
    try {
      // the inject at deploy set work's dead-letter queue; the admin route shows it
      const queues = await pollUntil(
        'work\'s dead-letter queue in GET …/queues',
        async () => (await red.request('GET', '/database-connector/dbc_cfg/queues')).body,
        (b) => b && Array.isArray(b.queues) && b.queues.some((q) => q.queue === 'work' && q.deadLetterQueue === 'work.dead'),
        { ms: 30000, every: 100 },
      );
      assert.ok(queues.queues.length >= 1);

      // uniqueFor 'active': a duplicate while pending; a new task once the first ended
      const post = async (url, body) => {
        const r = await red.request('POST', url, body);
        assert.equal(r.status, 200, r.text);
        return r.body;
      };
      const first = await post('/demo/sync', { customer: 42 });
      assert.equal(first.status, 'pending');
      assert.equal(first.idempotencyKey, 'sync-42');
      assert.equal(first.deduplicated, undefined);
      const dup = await post('/demo/sync', { customer: 42 });
      assert.deepEqual([dup.id, dup.deduplicated], [first.id, true]);
      const other = await post('/demo/sync', { customer: 7 });
      assert.notEqual(other.id, first.id);
      await db.execute('updateTaskStatus', { id: first.id, status: 'completed' });
      const second = await post('/demo/sync', { customer: 42 });
      assert.notEqual(second.id, first.id);
      assert.equal(second.deduplicated, undefined);
      assert.equal((await db.execute('getTask', { id: first.id })).value.status, 'completed');

      // uniqueFor 2000 ms: a duplicate within the window of the first insert, a new task after
      const r1 = await post('/demo/report', { customer: 42 });
      const r2 = await post('/demo/report', { customer: 42 });
      assert.deepEqual([r2.id, r2.deduplicated], [r1.id, true]);
      const windowEnd = Date.parse(r1.createdAt) + 2001;
      await pollUntil('the end of the 2 s window', () => Date.now(), (t) => t >= windowEnd, { ms: 5000, every: 50 });
      const r3 = await post('/demo/report', { customer: 42 });
      assert.notEqual(r3.id, r1.id);
      assert.equal(r3.deduplicated, undefined);

      // a job that fails its only attempt: failed where it is, its copy handled in work.dead
      const job = await post('/demo/work', { job: 1 });
      const handled = await pollUntil(
        'the dead letter completed by the example\'s consumer',
        async () => (await db.execute('listTasks', { queue: 'work.dead', status: 'completed' })).value.tasks,
        (t) => t.length === 1,
        { ms: 30000, every: 100 },
      );
      assert.equal(handled[0].result.alerted, job.id);
      assert.equal(handled[0].payload.deadLetter.taskId, job.id);
      assert.deepEqual(handled[0].payload.payload, { job: 1 });
      assert.match(handled[0].result.error, /job \{"job":1\} cannot be done/);
      const dead = (await db.execute('getTask', { id: job.id })).value;
      assert.equal(dead.status, 'failed');
      assert.deepEqual(dead.history.map((h) => h.status), ['failed']);
      assert.deepEqual(dead.errors.map((e) => e.code), ['E_DEMO']);

      // a death by lease expiry is dead-lettered too
      await db.execute('configureQueue', { queue: 'hang', deadLetterQueue: 'work.dead' });
      const hung = (await db.execute('insertTask', { queue: 'hang', maxAttempts: 1, payload: { slow: true } })).value;
      const copies = await pollUntil(
        'the expired task\'s dead letter',
        async () => (await db.execute('listTasks', { queue: 'work.dead', status: 'completed' })).value.tasks,
        (t) => t.some((x) => x.payload.deadLetter.taskId === hung.id),
        { ms: 30000, every: 100 },
      );
      const copy = copies.find((x) => x.payload.deadLetter.taskId === hung.id);
      assert.equal(copy.payload.deadLetter.error, 'lease expired');
      assert.equal(copy.result.alerted, hung.id);
      const expired = (await db.execute('getTask', { id: hung.id })).value;
      assert.equal(expired.status, 'failed');
      assert.deepEqual(expired.errors.map((e) => e.code), ['LEASE_EXPIRED']);
      assert.doesNotMatch(red.log(), /\[error\]/);
    } finally {
      await red.stop();
      await db.close();
    }
  });
}
