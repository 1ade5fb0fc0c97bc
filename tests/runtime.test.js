/**
 * Whole Node-RED processes: `npm start` with the example flow exercised over HTTP,
 * redeploys that must not leak PostgreSQL connections, and two runtimes starting
 * together against one empty database.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const service = require('../nodes/database-connector/database-service');
const { PG_URL, root, requireDatabases, spawnNodeRed, uniquePrefix } = require('./support');

test.before(() => requireDatabases(service));

test('npm start runs Node-RED with the example flow on SQLite, usable over HTTP', async () => {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-start-'));
  const red = await spawnNodeRed({ userDir, command: [path.join(root, 'scripts', 'start.js')] });
  try {
    await red.waitFor(/sqlite: connected/);
    const created = await red.request('POST', '/demo/tasks', { name: 'welcome', payload: { to: 'ada' }, priority: 4 });
    assert.equal(created.status, 200, created.text);
    assert.equal(created.body.status, 'pending');
    const id = created.body.id;
    const got = await red.request('GET', `/demo/tasks/${id}`);
    assert.equal(got.body.id, id);
    assert.deepEqual(got.body.payload, { to: 'ada' });
    const started = await red.request('POST', `/demo/tasks/${id}/status`, { status: 'running' });
    assert.equal(started.body.status, 'running');
    const done = await red.request('POST', `/demo/tasks/${id}/status`, { status: 'completed', result: { sent: true } });
    assert.equal(done.body.status, 'completed');
    const again = await red.request('POST', `/demo/tasks/${id}/status`, { status: 'running' });
    assert.equal(again.status, 400);
    assert.equal(again.body.error.code, 'DBC_INVALID_TRANSITION');
    const second = await red.request('POST', '/demo/tasks', { name: 'retry-me', maxAttempts: 1 });
    const claimedNow = await red.request('POST', '/demo/claim', { limit: 5 });
    assert.deepEqual(claimedNow.body.map((t) => t.id), [second.body.id]);
    assert.equal(claimedNow.body[0].workerId, 'http-demo');
    const dead = await red.request('POST', `/demo/tasks/${second.body.id}/status`, { status: 'failed', error: 'boom' });
    assert.equal(dead.body.status, 'failed', 'one attempt only: dead');
    const requeued = await red.request('POST', `/demo/tasks/${second.body.id}/requeue`);
    assert.equal(requeued.body.status, 'pending');
    const deleted = await red.request('DELETE', `/demo/tasks/${second.body.id}`);
    assert.deepEqual(deleted.body, { id: second.body.id, deleted: true });
    const list = await red.request('GET', '/demo/tasks');
    assert.ok(list.body.some((t) => t.id === id && t.status === 'completed'));
    const bad = await red.request('POST', '/demo/tasks', { priority: 'high' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'DBC_VALIDATION');
    assert.equal(bad.body.error.details.field, 'priority');
    const missing = await red.request('GET', '/demo/tasks/0190d6e0-0000-7000-8000-000000000000');
    assert.equal(missing.status, 404);
    assert.ok(fs.existsSync(path.join(userDir, 'database-connector.db')), 'SQLite file in the user dir');
  } finally {
    await red.stop();
  }
});

/** One pool connection at most, so the count is exact whatever runs concurrently. */
function pgFlow(prefix, database) {
  return [
    { id: 'tab', type: 'tab', label: 'pg' },
    { id: 'cfgpg', type: 'database-connector-config', name: 'pg', provider: 'postgres', tablePrefix: prefix, autoMigrate: true, poolMax: '1', database },
    { id: 'in', type: 'http in', z: 'tab', url: '/ping', method: 'get', wires: [['q']] },
    { id: 'q', type: 'database-connector', z: 'tab', connection: 'cfgpg', operation: 'query', sql: 'SELECT 1 AS one', wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab', wires: [] },
  ];
}

function pgCredentials(database) {
  const url = new URL(PG_URL);
  if (database) url.pathname = `/${database}`;
  return { cfgpg: { url: url.toString() } };
}

async function connectionCount(db) {
  const r = await db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'node-red-database-connector'");
  return r.rows[0].n;
}

async function settle(read, expected, ms = 5000) {
  const until = Date.now() + ms;
  let n = await read();
  while (n !== expected && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    n = await read();
  }
  return n;
}

test('20 redeploys leave the PostgreSQL connection count where it started', async () => {
  const prefix = uniquePrefix('rd');
  const flows = pgFlow(prefix);
  const red = await spawnNodeRed({ flows, credentials: pgCredentials() });
  const probe = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  try {
    assert.equal((await red.poll('/ping')).body[0].one, 1);
    const baseline = await connectionCount(probe);
    for (let i = 0; i < 20; i++) {
      // the credentials stay with the deployed config node (they are not in the flow JSON)
      await red.deploy(flows.map((n) => (n.id === 'q' ? { ...n, name: `v${i}` } : n)));
      const ping = await red.poll('/ping');
      assert.equal(ping.status, 200, ping.text);
    }
    assert.equal(await settle(() => connectionCount(probe), baseline), baseline);
    assert.doesNotMatch(red.log(), /unhandled|UnhandledPromiseRejection/i);
  } finally {
    await red.stop();
    await probe.query(`DROP TABLE IF EXISTS ${prefix}error_logs, ${prefix}task_executions, ${prefix}task_dependencies, ${prefix}tasks, ${prefix}workflows, ${prefix}migrations`);
    await probe.close();
  }
});

test('two runtimes starting together on one empty database both come up; migrations ran once', async () => {
  const database = `dbc_race_${process.pid}_${Date.now().toString(36)}`;
  const admin = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  await admin.query(`CREATE DATABASE ${database}`);
  const reds = [];
  try {
    const flows = pgFlow('dbc_', database);
    const started = await Promise.all([0, 1].map(() => spawnNodeRed({ flows, credentials: pgCredentials(database) })));
    reds.push(...started);
    for (const red of reds) {
      const ping = await red.poll('/ping');
      assert.equal(ping.status, 200, ping.text);
    }
    const url = new URL(PG_URL);
    url.pathname = `/${database}`;
    const db = await service.open({ primary: { provider: 'postgres', url: url.toString() }, autoMigrate: false, pool: { poolMax: 1 } });
    const applied = await db.query('SELECT version FROM dbc_migrations ORDER BY version');
    assert.deepEqual(applied.rows.map((r) => Number(r.version)), [1]);
    const tables = await db.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name LIKE 'dbc\\_%'");
    assert.equal(tables.rows[0].n, 6);
    await db.close();
  } finally {
    await Promise.all(reds.map((r) => r.stop()));
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.close();
  }
});
