/**
 * The admin routes behind Node-RED's admin authentication (docs/API.md "Admin HTTP API"):
 * with `adminAuth` on, a request without a token, or with a token whose user lacks the
 * route's permission (`database-connector.read` for schema and metrics,
 * `database-connector.write` for test, migrate and failback), is refused; Node-RED
 * answers 401 for both. A `read` scope grants the read routes, a `write` scope the write
 * ones, `*` all of them.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { requireDatabases, spawnNodeRed } = require('../support');

test.before(() => requireDatabases(service));

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
  } finally {
    await red.stop();
  }
});
