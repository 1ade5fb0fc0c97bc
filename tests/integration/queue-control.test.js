/**
 * Pausing a queue in a real Node-RED runtime (docs/USER-GUIDE.md "Pause a queue during an
 * incident"): two `consume` nodes on two config nodes sharing one PostgreSQL database
 * claim nothing from a paused queue, and both claim again after it is resumed; the admin
 * routes `GET …/queues` and `POST …/queues/:queue/pause|resume` answer, and a user with
 * only `database-connector.read` cannot pause.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { configFor, nodeConfigFor, requireDatabases, spawnNodeRed, pollUntil } = require('../support');

test.before(() => requireDatabases(service));

const USERS = { admin: '*', reader: ['database-connector.read'] };
const adminAuth = `adminAuth: {
    type: 'credentials',
    users: (username) => Promise.resolve(${JSON.stringify(USERS)}[username] ? { username, permissions: ${JSON.stringify(USERS)}[username] } : null),
    authenticate: (username, password) => Promise.resolve(password === 'pw-' + username && ${JSON.stringify(USERS)}[username] ? { username, permissions: ${JSON.stringify(USERS)}[username] } : null),
  },`;

test('postgres: a paused queue is claimed by neither of two consumers; both claim after resume; admin routes', { timeout: 180000 }, async () => {
  const a = nodeConfigFor('postgres', 'cfgA');
  const b = { ...a.props, id: 'cfgB', name: 'second' };
  const consumer = (id, cfg) => ({ id, type: 'database-connector', z: 'tab', connection: cfg, operation: 'consume', queue: 'jobs', concurrency: '4', leaseMs: '30000', wires: [['done-' + id]] });
  // each consumer completes what it gets; the result names who ran it
  const finish = (id) => ({ id: 'done-' + id, type: 'function', z: 'tab', outputs: 1, func: `msg.payload = { status: 'completed', result: { by: '${id}' } };\nreturn msg;`, wires: [['upd']] });
  const flows = [
    { id: 'tab', type: 'tab' },
    a.props,
    b,
    consumer('c1', 'cfgA'),
    consumer('c2', 'cfgB'),
    finish('c1'),
    finish('c2'),
    { id: 'upd', type: 'database-connector', z: 'tab', connection: 'cfgA', operation: 'updateTaskStatus', wires: [] },
  ];
  const db = await service.open({ ...configFor('postgres'), tablePrefix: a.prefix });
  // paused before the runtime starts, so that neither consumer can take a task first
  assert.equal((await db.execute('pauseQueue', { queue: 'jobs' })).value.paused, true);
  const red = await spawnNodeRed({ flows, credentials: { cfgA: a.credentials, cfgB: a.credentials }, settings: adminAuth });
  try {
    const token = async (username) => {
      const scope = Array.isArray(USERS[username]) ? USERS[username].join(' ') : USERS[username];
      const r = await red.request('POST', '/auth/token', { client_id: 'node-red-admin', grant_type: 'password', scope, username, password: `pw-${username}` });
      assert.equal(r.status, 200, r.text);
      return { authorization: `Bearer ${r.body.access_token}` };
    };
    const admin = await token('admin');
    const reader = await token('reader');

    await db.execute('insertTask', Array.from({ length: 20 }, (_, i) => ({ queue: 'jobs', payload: { i } })));
    // both consumers are running and polling (each claims at least once a second while
    // its queue looks empty): wait until both config nodes have made claims on the
    // database, then check that in all that time no task left `pending`
    const claims = async () => (await red.request('GET', '/database-connector/cfgA/metrics', undefined, admin)).body.operations?.claimTasks?.count || 0;
    const claimsB = async () => (await red.request('GET', '/database-connector/cfgB/metrics', undefined, admin)).body.operations?.claimTasks?.count || 0;
    const a0 = await pollUntil('claims by the first consumer', claims, (n) => n >= 1, { ms: 30000, every: 200 });
    const b0 = await pollUntil('claims by the second consumer', claimsB, (n) => n >= 1, { ms: 30000, every: 200 });
    await pollUntil('two more claims by each consumer', async () => [await claims(), await claimsB()], ([x, y]) => x >= a0 + 2 && y >= b0 + 2, { ms: 30000, every: 200 });
    let stats = await red.request('GET', '/database-connector/cfgA/queues', undefined, reader);
    assert.equal(stats.status, 200, stats.text);
    const jobs = stats.body.queues.find((q) => q.queue === 'jobs');
    assert.equal(jobs.paused, true);
    assert.deepEqual(jobs.counts, { pending: 20, running: 0, completed: 0, failed: 0, cancelled: 0 });

    // a read-only user cannot pause or resume; the admin can
    assert.equal((await red.request('POST', '/database-connector/cfgA/queues/jobs/resume', {}, reader)).status, 401);
    assert.equal((await red.request('POST', '/database-connector/cfgA/queues/other/pause', {}, reader)).status, 401);
    const resumed = await red.request('POST', '/database-connector/cfgB/queues/jobs/resume', {}, admin);
    assert.equal(resumed.status, 200, resumed.text);
    assert.deepEqual(resumed.body, { queue: 'jobs', paused: false });

    // both consumers take tasks now, and every task completes once
    const done = await pollUntil('all 20 tasks completed', async () => (await db.execute('getQueueStats', { queue: 'jobs' })).value.queues[0].counts.completed, (n) => n === 20, { ms: 60000, every: 100 });
    assert.equal(done, 20);
    const page = (await db.execute('listTasks', { queue: 'jobs', status: 'completed', limit: 100 })).value.tasks;
    const by = new Set(page.map((t) => t.result.by));
    assert.equal(page.length, 20);
    assert.deepEqual([...by].sort(), ['c1', 'c2'], 'both consumers claimed after the resume');

    // the pause route answers the operation's value; the stats route shows it
    const paused = await red.request('POST', '/database-connector/cfgA/queues/jobs/pause', {}, admin);
    assert.equal(paused.status, 200, paused.text);
    assert.equal(paused.body.paused, true);
    assert.ok(!Number.isNaN(Date.parse(paused.body.pausedAt)), paused.text);
    stats = await red.request('GET', '/database-connector/cfgB/queues', undefined, admin);
    assert.deepEqual(stats.body.queues.map((q) => [q.queue, q.paused, q.pausedAt]), [['jobs', true, paused.body.pausedAt]]);
    assert.equal(stats.body.queues[0].completedLastMinute, 20);
    // a connection that is not deployed: 404
    assert.equal((await red.request('GET', '/database-connector/nope/queues', undefined, admin)).status, 404);
  } finally {
    await red.stop();
    await db.close();
  }
});
