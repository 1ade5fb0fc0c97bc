/**
 * Config mapping of the helpers: `${ENV}` in every field and credential, numbers saved as
 * strings by the editor, relative SQLite files under the user dir, bad values as DBC_CONFIG.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const helpers = require('../../nodes/database-connector/database-connector-helpers');

test('${ENV} works in properties and credentials; numbers come from strings', () => {
  process.env.DBC_T_HOST = 'db.internal';
  process.env.DBC_T_PORT = '6543';
  process.env.DBC_T_PW = 'pw-from-env';
  process.env.DBC_T_POOL = '25';
  const cfg = helpers.buildConnectorConfig(
    { provider: 'postgres', host: '${DBC_T_HOST}', port: '${DBC_T_PORT}', database: 'app', poolMax: '${DBC_T_POOL}', acquireTimeoutMs: '2500', tablePrefix: 'q_' },
    { user: 'svc', password: '${DBC_T_PW}' },
  );
  assert.equal(cfg.primary.host, 'db.internal');
  assert.equal(cfg.primary.port, 6543);
  assert.equal(cfg.primary.password, 'pw-from-env');
  assert.equal(cfg.primary.user, 'svc');
  assert.equal(cfg.pool.poolMax, 25);
  assert.equal(cfg.pool.acquireTimeoutMs, 2500);
  assert.equal(cfg.pool.statementTimeoutMs, 30000, 'defaults from docs/USER-GUIDE.md');
  assert.equal(cfg.tablePrefix, 'q_');
  assert.equal(cfg.fallback, undefined);
});

test('a relative SQLite file lives in the Node-RED user dir; the default name is database-connector.db', () => {
  const a = helpers.buildConnectorConfig({ provider: 'sqlite', sqliteFile: 'x/y.db' }, {}, '/home/nr/.node-red');
  assert.equal(a.primary.sqliteFile, path.join('/home/nr/.node-red', 'x/y.db'));
  const b = helpers.buildConnectorConfig({}, {}, '/home/nr/.node-red');
  assert.equal(b.primary.provider, 'sqlite');
  assert.equal(b.primary.sqliteFile, path.join('/home/nr/.node-red', 'database-connector.db'));
  const c = helpers.buildConnectorConfig({ provider: 'sqlite', sqliteFile: '/abs/q.db' }, {}, '/home/nr/.node-red');
  assert.equal(c.primary.sqliteFile, '/abs/q.db');
});

test('fallback settings map to their own connection with fallback credentials', () => {
  const cfg = helpers.buildConnectorConfig(
    { provider: 'postgres', fallbackEnabled: true, fallbackProvider: 'mariadb', fallbackHost: 'm', fallbackPort: '3307', fallbackDatabase: 'fb' },
    { fallbackUser: 'fu', fallbackPassword: 'fp' },
  );
  assert.deepEqual(
    { p: cfg.fallback.provider, h: cfg.fallback.host, port: cfg.fallback.port, d: cfg.fallback.database, u: cfg.fallback.user, pw: cfg.fallback.password },
    { p: 'mariadb', h: 'm', port: 3307, d: 'fb', u: 'fu', pw: 'fp' },
  );
});

test('a non-numeric number is DBC_CONFIG naming the property', () => {
  assert.throws(() => helpers.buildConnectorConfig({ poolMax: 'lots' }, {}), (err) => err.code === 'DBC_CONFIG' && /poolMax/.test(err.message));
  assert.throws(() => helpers.buildConnectorConfig({ port: '-5', provider: 'postgres' }, {}), (err) => err.code === 'DBC_CONFIG');
});

test('statusFor follows docs/USER-GUIDE.md: green provider, yellow failover, red ring disconnected', () => {
  assert.deepEqual(helpers.statusFor('connected', 'postgres'), { fill: 'green', shape: 'dot', text: 'postgres' });
  assert.deepEqual(helpers.statusFor('failover', 'mariadb'), { fill: 'yellow', shape: 'dot', text: 'mariadb (failover)' });
  assert.equal(helpers.statusFor('disconnected').shape, 'ring');
  assert.equal(helpers.statusFor('disconnected').fill, 'red');
});

test('operationOf refuses unknown operations with DBC_VALIDATION', () => {
  assert.equal(helpers.operationOf({ operation: 'msg' }, { operation: 'getTask' }), 'getTask');
  assert.equal(helpers.operationOf({ operation: 'query' }, { operation: 'getTask' }), 'query');
  assert.throws(() => helpers.operationOf({ operation: 'msg' }, { operation: 'dropDatabase' }), (err) => err.code === 'DBC_VALIDATION' && err.field === 'operation');
});

test('TLS material: a path in the properties wins; PEM text comes from the credentials; the fallback has its own', () => {
  process.env.DBC_T_CA = '/etc/ssl/private-ca.crt';
  const cfg = helpers.buildConnectorConfig(
    {
      provider: 'postgres', ssl: 'verify-full', sslCa: '${DBC_T_CA}', sslCert: '', sslKey: '',
      fallbackEnabled: true, fallbackProvider: 'mariadb', fallbackSsl: 'verify-full', fallbackSslCa: '/fb/ca.crt',
    },
    { sslCaPem: 'ignored: the path wins', sslCertPem: '-----BEGIN CERTIFICATE-----\nA\n', sslKeyPem: '-----BEGIN PRIVATE KEY-----\nB\n', fallbackSslKeyPem: '-----BEGIN PRIVATE KEY-----\nC\n' },
  );
  assert.equal(cfg.primary.ssl, 'verify-full');
  assert.equal(cfg.primary.sslCa, '/etc/ssl/private-ca.crt');
  assert.match(cfg.primary.sslCert, /^-----BEGIN CERTIFICATE-----/);
  assert.match(cfg.primary.sslKey, /\nB\n$/);
  assert.equal(cfg.fallback.ssl, 'verify-full');
  assert.equal(cfg.fallback.sslCa, '/fb/ca.crt');
  assert.equal(cfg.fallback.sslCert, undefined);
  assert.match(cfg.fallback.sslKey, /\nC\n$/);
});

test('runOperation without emit collects a streamed query into an array of parts; an incoming sequence nests', async () => {
  const { configFor } = require('../support');
  const registry = await helpers.connectToDatabase('sqlite', configFor('sqlite'));
  try {
    const sql = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) SELECT x FROM c';
    const outer = { id: 'outer', index: 3, count: 9 };
    const out = await helpers.runOperation(registry, { operation: 'query', rowsPerMsg: 2, sql }, { payload: null, parts: outer });
    assert.ok(Array.isArray(out));
    assert.deepEqual(out.map((m) => m.payload.map((r) => r.x)), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(out.map((m) => m.parts.count), [undefined, undefined, 3]);
    assert.ok(out.every((m) => m.parts.parts === outer), 'the join node restores the outer sequence');
    // an unknown operation is refused before any call, naming the connection's provider
    await assert.rejects(helpers.runOperation(registry, { operation: 'msg' }, { operation: 'dropDatabase' }), (err) =>
      err.code === 'DBC_VALIDATION' && err.field === 'operation' && err.provider === 'sqlite' && err.cause.provider === 'sqlite');
    // a signal already aborted: nothing is sent
    const sent = [];
    const r = await helpers.runOperation(registry, { operation: 'query', rowsPerMsg: 2, sql }, { payload: null }, { emit: (m) => sent.push(m), signal: AbortSignal.abort() });
    assert.equal(r, null);
    assert.deepEqual(sent, []);
  } finally {
    await registry.close();
  }
});
