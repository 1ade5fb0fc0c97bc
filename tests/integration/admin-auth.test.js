/**
 * The admin routes behind Node-RED's admin authentication (docs/API.md "Admin HTTP API"):
 * with `adminAuth` on, a request without a token, or with a token whose user lacks the
 * route's permission (`database-connector.read` for schema, metrics and the task
 * browser's reads, `database-connector.write` for test, migrate, failback, and the task
 * browser's requeue, cancel and delete), is refused; Node-RED answers 401 for both. A `read` scope grants the read routes, a `write` scope the write
 * ones, `*` all of them.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { requireDatabases, spawnNodeRed } = require('../support');

test.before(() => requireDatabases(service));

const NO_TASK = '01a21996-063b-71f3-920a-ee90b2e8efee';

const USERS = {
  admin: '*',
  reader: 'read',
  writer: 'write',
  dbread: ['database-connector.read'],
  flowsonly: ['flows.read'],
};

const adminAuth = `adminAuth: {
    type: 'credentials',
    users: (username) => Promise.resolve(${JSON.stringify(USERS)}[username] ? { username, permissions: ${JSON.stringify(USERS)}[username] } : null),
    authenticate: (username, password) => Promise.resolve(password === 'pw-' + username && ${JSON.stringify(USERS)}[username] ? { username, permissions: ${JSON.stringify(USERS)}[username] } : null),
  },`;

test('admin routes: 401 without a token or without the permission; each scope opens what docs/API.md says', { timeout: 120000 }, async () => {
  const flows = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', name: 'auth', provider: 'sqlite', sqliteFile: ':memory:', tablePrefix: 'dbc_' },
  ];
  const red = await spawnNodeRed({ flows, settings: adminAuth });
  try {
    const token = async (username) => {
      const scope = Array.isArray(USERS[username]) ? USERS[username].join(' ') : USERS[username];
      const r = await red.request('POST', '/auth/token', { client_id: 'node-red-admin', grant_type: 'password', scope, username, password: `pw-${username}` });
      assert.equal(r.status, 200, `token for ${username}: ${r.text}`);
      return r.body.access_token;
    };
    const routes = {
      schema: ['GET', '/database-connector/cfg/schema', 'read'],
      metrics: ['GET', '/database-connector/cfg/metrics', 'read'],
      prometheus: ['GET', '/database-connector/cfg/metrics?format=prometheus', 'read'],
      migrate: ['POST', '/database-connector/cfg/schema/migrate', 'write'],
      failback: ['POST', '/database-connector/cfg/failback', 'write'],
      test: ['POST', '/database-connector/test', 'write'],
      // the task browser (task-routes.js); a task and a workflow that do not exist: past
      // the gate they answer 404, which is not a refusal
      browserScript: ['GET', '/database-connector/editor/task-browser.js', 'read'],
      tasks: ['GET', '/database-connector/cfg/tasks', 'read'],
      task: ['GET', `/database-connector/cfg/tasks/${NO_TASK}`, 'read'],
      workflow: ['GET', `/database-connector/cfg/workflows/${NO_TASK}`, 'read'],
      requeue: ['POST', `/database-connector/cfg/tasks/${NO_TASK}/requeue`, 'write'],
      cancel: ['POST', `/database-connector/cfg/tasks/${NO_TASK}/cancel`, 'write'],
      delete: ['DELETE', `/database-connector/cfg/tasks/${NO_TASK}`, 'write'],
    };
    const bodies = { test: { config: { provider: 'sqlite', sqliteFile: ':memory:' }, credentials: {} } };
    const call = (name, auth) => {
      const [method, url] = routes[name];
      return red.request(method, url, bodies[name], auth ? { authorization: `Bearer ${auth}` } : {});
    };
    // no token, and a token that is not one
    for (const name of Object.keys(routes)) {
      assert.equal((await call(name)).status, 401, `${name} without a token`);
      assert.equal((await call(name, 'not-a-token')).status, 401, `${name} with a made-up token`);
    }
    // each user: refused exactly where the permission is missing
    const grants = {
      admin: ['read', 'write'],
      reader: ['read'],
      writer: ['write'],
      dbread: ['read'],
      flowsonly: [],
    };
    for (const [user, has] of Object.entries(grants)) {
      const t = await token(user);
      for (const [name, [, , needs]] of Object.entries(routes)) {
        const r = await call(name, t);
        if (has.includes(needs)) assert.notEqual(r.status, 401, `${user} may ${name}: ${r.status} ${r.text}`);
        else assert.equal(r.status, 401, `${user} may not ${name}: ${r.status} ${r.text}`);
      }
    }
    // what the permitted calls answer (the routes ran, not just passed the gate)
    const admin = await token('admin');
    assert.equal((await call('schema', admin)).body.provider, 'sqlite');
    assert.equal((await call('metrics', admin)).body.provider, 'sqlite');
    assert.equal((await call('migrate', admin)).body.ok, true);
    assert.equal((await call('test', admin)).body.ok, true);
    const fb = await call('failback', admin);
    assert.deepEqual([fb.status, fb.body.code], [400, 'DBC_CONFIG'], 'no fallback configured');
    assert.deepEqual((await call('tasks', admin)).body, { tasks: [], next: null });
    for (const name of ['task', 'workflow', 'requeue', 'cancel', 'delete']) {
      assert.deepEqual([(await call(name, admin)).status, (await call(name, admin)).body.code], [404, 'DBC_NOT_FOUND'], name);
    }
  } finally {
    await red.stop();
  }
});

// Needs the queue routes of the queue-control work (GET …/queues, POST …/queues/:queue/pause
// and /resume): a read-only user lists the queues but may not pause or resume one.
test('queue routes: a read-only user lists queues; pause and resume are refused and change nothing', { timeout: 120000 }, async () => {
  // a queue with a task in it, on a file both this process and the runtime open
  const sqliteFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-auth-')), 'q.db');
  const db = await service.open({ primary: { provider: 'sqlite', sqliteFile }, tablePrefix: 'dbc_' });
  await db.execute('insertTask', { queue: 'mail' });
  await db.close();
  const flows = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', name: 'auth', provider: 'sqlite', sqliteFile, tablePrefix: 'dbc_' },
  ];
  const red = await spawnNodeRed({ flows, settings: adminAuth });
  try {
    const token = async (username) => {
      const r = await red.request('POST', '/auth/token', { client_id: 'node-red-admin', grant_type: 'password', scope: USERS[username], username, password: `pw-${username}` });
      return { authorization: `Bearer ${r.body.access_token}` };
    };
    const reader = await token('reader');
    const admin = await token('admin');
    const paused = async () => (await red.request('GET', '/database-connector/cfg/queues', undefined, admin)).body.queues.filter((q) => q.paused).map((q) => q.queue);
    assert.equal((await red.request('GET', '/database-connector/cfg/queues', undefined, reader)).status, 200);
    assert.equal((await red.request('POST', '/database-connector/cfg/queues/mail/pause', undefined, reader)).status, 401);
    assert.deepEqual(await paused(), []);
    assert.equal((await red.request('POST', '/database-connector/cfg/queues/mail/pause', undefined, admin)).status, 200);
    assert.equal((await red.request('POST', '/database-connector/cfg/queues/mail/resume', undefined, reader)).status, 401);
    assert.deepEqual(await paused(), ['mail']);
  } finally {
    await red.stop();
  }
});
