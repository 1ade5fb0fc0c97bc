/**
 * Whole Node-RED processes: `npm start` with the example flow exercised over HTTP,
 * redeploys that must not leak PostgreSQL connections, and two runtimes starting
 * together against one empty database. The first test is README.md's "Try it from this
 * checkout" session (`npm start`, then its curl calls) done over HTTP.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, MARIADB_URL, root, requireDatabases, spawnNodeRed, pollUntil } = require('../support');
const { startProxy, viaProxy } = require('../support/tcp-proxy');

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

/** A database of its own on PostgreSQL and on MariaDB, so connection counts are exact. */
async function ownDatabases(tag) {
  const name = `dbc_${tag}_${process.pid}_${Date.now().toString(36)}`;
  const pgAdmin = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  const myAdmin = await service.open({ primary: { provider: 'mariadb', url: MARIADB_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  await pgAdmin.query(`CREATE DATABASE ${name}`);
  await myAdmin.query(`CREATE DATABASE ${name}`);
  const pgUrl = new URL(PG_URL);
  pgUrl.pathname = `/${name}`;
  const myUrl = new URL(MARIADB_URL);
  myUrl.pathname = `/${name}`;
  return {
    pgUrl: pgUrl.toString(),
    myUrl: myUrl.toString(),
    async counts() {
      const pg = await pgAdmin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      const my = await myAdmin.query('SELECT count(*) AS n FROM information_schema.processlist WHERE db = ?', [name]);
      return { pg: pg.rows[0].n, mariadb: Number(my.rows[0].n) };
    },
    /** Statements `sql` running now on the PostgreSQL database. */
    async running(sql) {
      const r = await pgAdmin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query = $2", [name, sql]);
      return r.rows[0].n;
    },
    async drop() {
      await pgAdmin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await myAdmin.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => {});
      await pgAdmin.close();
      await myAdmin.close();
    },
  };
}

/** PostgreSQL primary (through `primaryUrl`), MariaDB fallback, an HTTP endpoint per query. */
function failoverFlow(tag) {
  return [
    { id: 'tab', type: 'tab', label: tag },
    {
      id: 'cfgfo', type: 'database-connector-config', name: 'fo', provider: 'postgres', tablePrefix: 'dbc_', autoMigrate: true, poolMax: '2',
      acquireTimeoutMs: '1000', statementTimeoutMs: '30000', healthIntervalMs: '500', failoverThreshold: '2', failback: 'auto', fallbackEnabled: true, fallbackProvider: 'mariadb',
    },
    { id: 'in', type: 'http in', z: 'tab', url: '/ping', method: 'get', wires: [['q']] },
    { id: 'q', type: 'database-connector', z: 'tab', connection: 'cfgfo', operation: 'query', sql: 'SELECT 1 AS one', wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab', wires: [] },
    { id: 'in2', type: 'http in', z: 'tab', url: '/sleep', method: 'get', wires: [['q2']] },
    { id: 'q2', type: 'database-connector', z: 'tab', connection: 'cfgfo', operation: 'query', sql: 'SELECT pg_sleep(20)', wires: [['res']] },
  ];
}

async function settleTo(read, expected, ms = 10000) {
  const until = Date.now() + ms;
  let got = await read();
  while (JSON.stringify(got) !== JSON.stringify(expected) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    got = await read();
  }
  return got;
}

test('50 redeploys with the databases up and 10 with PostgreSQL down: no leaked connection, no unhandled rejection', { timeout: 300000 }, async () => {
  const dbs = await ownDatabases('rd');
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const flows = failoverFlow('rd');
  const credentials = { cfgfo: { url: viaProxy(dbs.pgUrl, link), fallbackUrl: dbs.myUrl } };
  const red = await spawnNodeRed({ flows, credentials });
  try {
    assert.equal((await red.poll('/ping')).body[0].one, 1);
    const rename = (i) => flows.map((n) => (n.id === 'q' ? { ...n, name: `v${i}` } : n));
    let slowest = 0;
    for (let i = 0; i < 50; i++) {
      const t0 = Date.now();
      await red.deploy(rename(i));
      slowest = Math.max(slowest, Date.now() - t0);
      const ping = await red.poll('/ping');
      assert.equal(ping.status, 200, ping.text);
    }
    // PostgreSQL down: every deploy still comes up, on the fallback
    await link.cut();
    for (let i = 50; i < 60; i++) {
      const t0 = Date.now();
      await red.deploy(rename(i));
      slowest = Math.max(slowest, Date.now() - t0);
      const ping = await red.poll('/ping');
      assert.equal(ping.status, 200, ping.text);
      assert.equal(ping.body[0].one, 1, 'answered by MariaDB');
    }
    assert.ok(slowest < 15000, `slowest deploy ${slowest} ms`);
    await link.restore();
    // stop the flows: every connection of every generation is gone
    await red.deploy([{ id: 'tab', type: 'tab', label: 'empty' }]);
    assert.deepEqual(await settleTo(() => dbs.counts(), { pg: 0, mariadb: 0 }), { pg: 0, mariadb: 0 });
    assert.doesNotMatch(red.log(), /unhandled|UnhandledPromiseRejection|uncaught/i);
    assert.ok(red.child.exitCode === null, 'the runtime is still up');
  } finally {
    await red.stop();
    await link.close();
    await dbs.drop();
  }
});

test('a redeploy with queries in flight on a dead link finishes within Node-RED\'s 15 s', { timeout: 120000 }, async () => {
  const dbs = await ownDatabases('cl');
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const flows = failoverFlow('cl');
  const red = await spawnNodeRed({ flows, credentials: { cfgfo: { url: viaProxy(dbs.pgUrl, link), fallbackUrl: dbs.myUrl } } });
  try {
    assert.equal((await red.poll('/ping')).status, 200);
    const sleepers = [1, 2].map(() => red.request('GET', '/sleep').catch((e) => ({ status: 0, text: String(e) })));
    await pollUntil('both pg_sleep queries running', () => dbs.running('SELECT pg_sleep(20)'), (n) => n === 2);
    await link.blackhole();
    const t0 = Date.now();
    await red.deploy([{ id: 'tab', type: 'tab', label: 'empty' }]);
    const took = Date.now() - t0;
    assert.ok(took < 15000, `the redeploy took ${took} ms`);
    await link.restore();
    await Promise.race([Promise.all(sleepers), new Promise((r) => setTimeout(r, 5000))]);
    assert.equal((await red.request('GET', '/flows')).status, 200, 'the runtime answers');
    assert.doesNotMatch(red.log(), /unhandled|UnhandledPromiseRejection|uncaught/i);
    assert.deepEqual(await settleTo(() => dbs.counts(), { pg: 0, mariadb: 0 }, 40000), { pg: 0, mariadb: 0 });
  } finally {
    await red.stop();
    await link.close();
    await dbs.drop();
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
    assert.deepEqual(applied.rows.map((r) => Number(r.version)), [1, 2, 3, 4, 5, 6, 7]);
    const tables = await db.query("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name LIKE 'dbc\\_%'");
    assert.equal(tables.rows[0].n, 8);
    await db.close();
  } finally {
    await Promise.all(reds.map((r) => r.stop()));
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.close();
  }
});
