/**
 * The admin HTTP API (docs/API.md "Admin HTTP API") in node-red-node-test-helper's admin
 * app: connection test (good, refused, stored password placeholder, the fallback), schema, migrate,
 * metrics as JSON and Prometheus text, an unknown config id, and a config that cannot
 * connect or is invalid.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, MARIADB_URL, nodeConfigFor, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(service);


const pg = new URL(PG_URL);

test('POST /database-connector/test answers ok with the server version, or the coded failure', async () => {
  await helper.load(dbNode, []);
  const good = await helper.request().post('/database-connector/test').send({
    config: { provider: 'postgres', host: pg.hostname, port: pg.port || '5432', database: pg.pathname.slice(1) },
    credentials: { user: decodeURIComponent(pg.username) },
  });
  assert.equal(good.status, 200);
  assert.equal(good.body.ok, true, JSON.stringify(good.body));
  assert.equal(good.body.provider, 'postgres');
  assert.match(good.body.serverVersion, /^\d+/);
  assert.equal(typeof good.body.latencyMs, 'number');

  const refused = await helper.request().post('/database-connector/test').send({
    config: { provider: 'postgres', host: '127.0.0.1', port: '1', acquireTimeoutMs: '500' },
    credentials: { user: 'u', password: 'secret-pw' },
  });
  assert.equal(refused.status, 200);
  assert.equal(refused.body.ok, false);
  assert.equal(refused.body.code, 'DBC_CONNECTION');
  assert.doesNotMatch(refused.body.message, /secret-pw/);

  const invalid = await helper.request().post('/database-connector/test').send({ config: { provider: 'sqlite', poolMax: 'ten' } });
  assert.deepEqual([invalid.body.ok, invalid.body.code], [false, 'DBC_CONFIG']);
});

test('the editor\'s __PWRD__ placeholder takes the stored credential of the node', async () => {
  const cfg = nodeConfigFor('postgres');
  await helper.load(dbNode, [cfg.props], { cfg: cfg.credentials });
  const r = await helper.request().post('/database-connector/test').send({ id: 'cfg', config: { provider: 'postgres' }, credentials: { url: '__PWRD__' } });
  assert.equal(r.body.ok, true, JSON.stringify(r.body));
  const none = await helper.request().post('/database-connector/test').send({ config: { provider: 'postgres', host: '127.0.0.1', port: '1', acquireTimeoutMs: '500' }, credentials: { url: '__PWRD__' } });
  assert.equal(none.body.ok, false, 'no stored node: the placeholder is not a URL');
});

test('schema, migrate and metrics of a deployed connection; 404 for an unknown one', async () => {
  const cfg = nodeConfigFor('sqlite');
  cfg.props.name = 'local';
  await helper.load(dbNode, [cfg.props], {});
  const schema = await helper.request().get('/database-connector/cfg/schema');
  assert.equal(schema.status, 200);
  assert.equal(schema.body.provider, 'sqlite');
  assert.deepEqual(schema.body.applied.map((m) => m.version), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(schema.body.pending, []);
  const migrate = await helper.request().post('/database-connector/cfg/schema/migrate');
  assert.deepEqual(migrate.body, { ok: true, applied: [] });

  const registry = await helper.getNode('cfg').getRegistry();
  await registry.insertTask({ queue: 'm' });
  const json = await helper.request().get('/database-connector/cfg/metrics');
  assert.equal(json.body.provider, 'sqlite');
  assert.equal(json.body.operations.insertTask.count, 1);
  assert.deepEqual(json.body.queues, [{ queue: 'm', status: 'pending', count: 1 }]);
  const prom = await helper.request().get('/database-connector/cfg/metrics?format=prometheus');
  assert.match(prom.headers['content-type'], /^text\/plain;.*version=0\.0\.4/);
  assert.match(prom.text, /dbc_queue_tasks\{connection="local",provider="sqlite",queue="m",status="pending"\} 1/);

  for (const [method, url] of [['get', '/database-connector/nope/schema'], ['post', '/database-connector/nope/schema/migrate'], ['get', '/database-connector/nope/metrics']]) {
    const r = await helper.request()[method](url);
    assert.equal(r.status, 404, url);
    assert.equal(r.body.code, 'DBC_NOT_FOUND');
  }
});

test('metrics of a deployed connection no flow uses say so without opening a pool; once a flow uses it they are real', async () => {
  const cfg = nodeConfigFor('postgres', 'idle');
  await helper.load(dbNode, [cfg.props], { idle: cfg.credentials });
  const json = await helper.request().get('/database-connector/idle/metrics');
  assert.equal(json.status, 200);
  assert.deepEqual(json.body, { state: 'unused', unused: true });
  const prom = await helper.request().get('/database-connector/idle/metrics?format=prometheus');
  assert.equal(prom.status, 200);
  assert.match(prom.text, /^# not used by any deployed flow/);
  assert.equal(helper.getNode('idle').inUse(), false, 'the metrics did not open it');
  await helper.unload();
  // the same connection with a node that uses it
  await helper.load(dbNode, [cfg.props, { id: 'op', type: 'database-connector', connection: 'idle', operation: 'getTask', wires: [[]] }], { idle: cfg.credentials });
  assert.equal(helper.getNode('idle').inUse(), true);
  const used = await helper.request().get('/database-connector/idle/metrics');
  assert.equal(used.body.provider, 'postgres', JSON.stringify(used.body));
  assert.ok(used.body.pool, 'pool gauges');
});

test('a server that is down: the connection waits in reconnecting (500 on schema, metrics say so); an invalid one: 400 DBC_CONFIG, Prometheus 503', async () => {
  await helper.load(dbNode, [
    { id: 'down', type: 'database-connector-config', provider: 'postgres', tablePrefix: 'dbc_', acquireTimeoutMs: '500' },
    { id: 'bad', type: 'database-connector-config', provider: 'sqlite', tablePrefix: 'dbc_', poolMax: 'many' },
  ], { down: { url: 'postgres://postgres:pw@127.0.0.1:1/none' } });
  const down = await helper.request().get('/database-connector/down/schema');
  assert.equal(down.status, 500);
  // no connection can be had: the router, reconnecting, fails fast
  assert.equal(down.body.code, 'DBC_CONNECTION', JSON.stringify(down.body));
  assert.doesNotMatch(JSON.stringify(down.body), /:pw@/);
  const metrics = await helper.request().get('/database-connector/down/metrics');
  assert.equal(metrics.body.state, 'reconnecting');
  assert.doesNotMatch(metrics.text, /:pw@/, 'no password in the state log');
  const prom = await helper.request().get('/database-connector/down/metrics?format=prometheus');
  assert.match(prom.text, /^dbc_up\{connection="down",provider="postgres"\} 0$/m);
  const bad = await helper.request().post('/database-connector/bad/schema/migrate');
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'DBC_CONFIG');
  assert.match(bad.body.message, /poolMax/);
  const badProm = await helper.request().get('/database-connector/bad/metrics?format=prometheus');
  assert.equal(badProm.status, 503);
  assert.equal(badProm.text, '# DBC_CONFIG\n');
});

test('POST /database-connector/test with target "fallback" tests the fallback connection alone', async () => {
  await helper.load(dbNode, []);
  const mariadb = new URL(MARIADB_URL);
  const config = {
    provider: 'postgres', host: '127.0.0.1', port: '1', acquireTimeoutMs: '500', // a primary that is down
    fallbackEnabled: true, fallbackProvider: 'mariadb', fallbackHost: mariadb.hostname, fallbackPort: mariadb.port || '3306', fallbackDatabase: mariadb.pathname.slice(1),
  };
  const credentials = { fallbackUser: decodeURIComponent(mariadb.username), fallbackPassword: decodeURIComponent(mariadb.password) };
  const primary = await helper.request().post('/database-connector/test').send({ config, credentials });
  assert.deepEqual([primary.body.ok, primary.body.target, primary.body.code, primary.body.retryable], [false, 'primary', 'DBC_CONNECTION', true]);
  const fallback = await helper.request().post('/database-connector/test').send({ target: 'fallback', config, credentials });
  assert.equal(fallback.body.ok, true, JSON.stringify(fallback.body));
  assert.deepEqual([fallback.body.target, fallback.body.provider], ['fallback', 'mariadb']);
  // refused credentials: not worth retrying
  const refused = await helper.request().post('/database-connector/test').send({ target: 'fallback', config, credentials: { fallbackUser: 'nobody_here' } });
  assert.deepEqual([refused.body.ok, refused.body.code, refused.body.retryable], [false, 'DBC_CONNECTION', false]);
  // no fallback configured
  const none = await helper.request().post('/database-connector/test').send({ target: 'fallback', config: { ...config, fallbackEnabled: false } });
  assert.deepEqual([none.body.ok, none.body.target, none.body.code], [false, 'fallback', 'DBC_CONFIG']);
});
