/**
 * Failover to MariaDB and failback, in a real Node-RED runtime (node-red-node-test-helper):
 * - the kill drill: a private PostgreSQL (initdb, own port) is the primary, this
 *   machine's MariaDB the fallback; a flow inserts tasks without pause while the test
 *   SIGKILLs PostgreSQL, restarts it, and waits for the automatic failback;
 * - the partition drill: the same through a TCP proxy that refuses, black-holes or slows
 *   the link;
 * - manual failback through the admin API, and a deploy while the primary is down.
 * After each drill every acknowledged task is in PostgreSQL exactly once, with its latest
 * state, and nothing is left in the fallback.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const helper = require('node-red-node-test-helper');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, MARIADB_URL, root, requireDatabases, uniquePrefix, pollUntil } = require('../support');
const { startPrivatePostgres } = require('../support/private-pg');
const { startProxy, viaProxy } = require('../support/tcp-proxy');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [root] }));
helper.init(require.resolve('node-red', { paths: [root] }));

const HEALTH_MS = 250;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  await requireDatabases(service);
  await new Promise((resolve) => helper.startServer(resolve));
});
test.after(async () => {
  await helper.unload();
  await new Promise((resolve) => helper.stopServer(resolve));
});
test.afterEach(() => helper.unload());

/** Loads a flow: `ins` (insertTask, debug on) and `any` (operation from msg) → outputs; Catch → caught. */
async function load({ primaryUrl, prefix, fallback = true, failback = 'auto', extra = {} }) {
  const cfg = {
    id: 'cfg', type: 'database-connector-config', name: 'drill', provider: 'postgres', tablePrefix: prefix, autoMigrate: true,
    poolMax: '8', acquireTimeoutMs: '1000', statementTimeoutMs: '2000', healthIntervalMs: String(HEALTH_MS), failoverThreshold: '2',
    failback, fallbackEnabled: fallback, fallbackProvider: 'mariadb', ...extra,
  };
  const flow = [
    { id: 'tab', type: 'tab' },
    cfg,
    { id: 'ins', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'insertTask', queue: 'drill', debug: true, wires: [['out']] },
    // debug off: concurrent single inserts share statements (group commit)
    { id: 'ins2', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'insertTask', queue: 'drill', debug: false, wires: [['out']] },
    { id: 'any', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'msg', queue: 'drill', wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, catchNode], flow, { cfg: { url: primaryUrl, ...(fallback ? { fallbackUrl: MARIADB_URL } : {}) } });
  const nodes = { cfg: helper.getNode('cfg'), ins: helper.getNode('ins'), ins2: helper.getNode('ins2'), any: helper.getNode('any'), out: helper.getNode('out'), caught: helper.getNode('caught') };
  // msg id → resolver; outputs and errors settle the matching request
  const pending = new Map();
  nodes.out.on('input', (m) => { const p = pending.get(m._req); if (p) { pending.delete(m._req); p({ ok: m }); } });
  nodes.caught.on('input', (m) => { const p = pending.get(m._req); if (p) { pending.delete(m._req); p({ err: m.error }); } });
  let seq = 0;
  nodes.send = (node, msg) => new Promise((resolve) => {
    const req = `r${++seq}`;
    pending.set(req, resolve);
    nodes[node].receive({ ...msg, _req: req });
  });
  return nodes;
}

/**
 * Resolves once `n` health checks (`SELECT 1`) went through `link` to PostgreSQL and were
 * answered, as pg_stat_activity shows them: an answered check leaves its session idle
 * with that query and a query_start of its own. What a connection did between checks
 * (an insert) hides nothing: the next check shows again.
 */
async function healthChecksThrough(link, n, ms = 20000) {
  const pg = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  const seen = new Set();
  try {
    await pollUntil(`${n} answered health checks through the link`, async () => {
      const ports = link.upstreamPorts();
      if (ports.length) {
        const r = await pg.query(`SELECT pid, query_start::text AS at FROM pg_stat_activity WHERE client_port IN (${ports.join(', ')}) AND query = 'SELECT 1' AND state = 'idle'`);
        for (const row of r.rows) seen.add(`${row.pid}@${row.at}`);
      }
      return seen.size;
    }, (k) => k >= n, { ms });
  } finally {
    await pg.close();
  }
}

async function waitState(cfgNode, want, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cfgNode.state === want) return Date.now();
    await sleep(20);
  }
  throw new Error(`state is ${cfgNode.state}, not ${want}, after ${ms} ms`);
}

/**
 * Inserts tasks with `inFlight` messages outstanding until stop() is called; keeps
 * every acknowledged task (id, provider it ran on) and every error.
 */
function writer(nodes, inFlight = 8) {
  const acked = [];
  const errors = [];
  let running = true;
  let n = 0;
  // half the lanes with debug on (one statement per insert, provider known), half
  // with debug off (inserts coalesced into shared statements)
  const lane = async (k) => {
    const node = k % 2 ? 'ins2' : 'ins';
    while (running) {
      const i = n++;
      const r = await nodes.send(node, { payload: { name: `drill-${i}`, payload: { i } } });
      if (r.ok) acked.push({ id: r.ok.payload.id, provider: r.ok._debug ? r.ok._debug.provider : null, failover: r.ok._debug ? r.ok._debug.failover : null });
      else { errors.push(r.err); await sleep(20); }
    }
  };
  const lanes = Array.from({ length: inFlight }, (_, k) => lane(k));
  return {
    acked,
    errors,
    async until(count, ms = 60000) {
      const deadline = Date.now() + ms;
      while (acked.length < count && Date.now() < deadline) await sleep(20);
      assert.ok(acked.length >= count, `only ${acked.length} of ${count} acknowledged in ${ms} ms; errors: ${JSON.stringify(errors.slice(-3))}`);
    },
    async stop() {
      running = false;
      await Promise.all(lanes);
    },
  };
}

/** Claims up to `limit` tasks and completes them (on whichever database is in use). */
async function completeSome(nodes, limit) {
  const claimed = await nodes.send('any', { operation: 'claimTasks', payload: { queue: 'drill', limit } });
  assert.ok(claimed.ok, JSON.stringify(claimed.err));
  const done = [];
  for (const t of claimed.ok.payload) {
    const r = await nodes.send('any', { operation: 'updateTaskStatus', payload: { id: t.id, status: 'completed', result: { by: 'drill' } } });
    assert.ok(r.ok, JSON.stringify(r.err));
    done.push(t.id);
  }
  return done;
}

async function tableRows(url, provider, prefix) {
  const db = await service.open({ primary: { provider, url }, autoMigrate: false, tablePrefix: prefix });
  try {
    const r = await db.query(`SELECT id, status FROM ${prefix}tasks`);
    return r.rows;
  } finally {
    await db.close();
  }
}

async function dropTables(url, provider, prefix) {
  const db = await service.open({ primary: { provider, url }, autoMigrate: false });
  try {
    for (const t of ['schedules', 'queues', 'error_logs', 'task_executions', 'task_dependencies', 'tasks', 'workflows', 'migrations']) {
      await db.query(`DROP TABLE IF EXISTS ${prefix}${t}`);
    }
  } finally {
    await db.close();
  }
}

/**
 * The drill: insert without pause, break the primary, keep inserting and complete some
 * tasks on the fallback, heal, wait for failback, insert some more, then check.
 */
async function drill({ primaryUrl, directUrl, breakIt, heal, switchWithinMs }) {
  const prefix = uniquePrefix('fo');
  const nodes = await load({ primaryUrl, prefix });
  try {
    await waitState(nodes.cfg, 'connected', 10000);
    const w = writer(nodes);
    await w.until(200);
    const brokenAt = Date.now();
    await breakIt();
    const switchedAt = await waitState(nodes.cfg, 'failover', 20000);
    const before = w.acked.length;
    await w.until(before + 200);
    const completed = await completeSome(nodes, 50);
    assert.ok(completed.length > 0, 'tasks were claimed and completed on the fallback');
    await heal();
    const backAt = await waitState(nodes.cfg, 'connected', 40000);
    const afterBack = w.acked.length;
    await w.until(afterBack + 100);
    await w.stop();

    const onFallback = w.acked.filter((a) => a.provider === 'mariadb');
    assert.ok(onFallback.length >= 100, `${onFallback.length} tasks acknowledged by the fallback (debug on)`);
    assert.ok(onFallback.every((a) => a.failover === true), '_debug.failover is true on the fallback');
    const pgRows = await tableRows(directUrl, 'postgres', prefix);
    const byId = new Map();
    for (const r of pgRows) byId.set(r.id, (byId.get(r.id) || 0) + (r.status ? 1 : 0));
    const missing = w.acked.filter((a) => byId.get(a.id) !== 1);
    assert.equal(missing.length, 0, `acknowledged tasks not in PostgreSQL exactly once: ${JSON.stringify(missing.slice(0, 5))}`);
    const status = new Map(pgRows.map((r) => [r.id, r.status]));
    for (const id of completed) assert.equal(status.get(id), 'completed', `task ${id} keeps the state it reached on the fallback`);
    const left = await tableRows(MARIADB_URL, 'mariadb', prefix);
    assert.equal(left.length, 0, 'nothing is left in the fallback');
    for (const e of w.errors) assert.equal(e.code, 'DBC_CONNECTION', `errors during the drill are connection errors: ${JSON.stringify(e)}`);
    if (switchWithinMs) assert.ok(switchedAt - brokenAt <= switchWithinMs, `failover took ${switchedAt - brokenAt} ms`);
    const metrics = await nodes.cfg.getRegistry().then((r) => r.metrics());
    const states = metrics.stateLog.map((c) => c.state);
    assert.deepEqual(states.slice(-3), ['connected', 'failover', 'connected']);
    assert.ok(metrics.lastFailback && metrics.lastFailback.tasks >= onFallback.length + 100, JSON.stringify(metrics.lastFailback));
    return {
      acked: w.acked.length, onFallback: onFallback.length, errors: w.errors.length,
      failoverMs: switchedAt - brokenAt, failbackMs: backAt - switchedAt, moved: metrics.lastFailback,
    };
  } finally {
    await helper.unload();
    await dropTables(MARIADB_URL, 'mariadb', prefix).catch(() => {});
    await dropTables(directUrl, 'postgres', prefix).catch(() => {});
  }
}

test('kill drill: SIGKILL the primary PostgreSQL mid-stream; acknowledged tasks end in PostgreSQL exactly once', { timeout: 240000 }, async () => {
  const pg = await startPrivatePostgres();
  try {
    const r = await drill({
      primaryUrl: pg.url,
      directUrl: pg.url,
      breakIt: () => pg.kill(),
      heal: () => pg.start(),
      switchWithinMs: 3 * HEALTH_MS,
    });
    console.log(`kill drill: ${JSON.stringify(r)}`);
  } finally {
    await pg.stop();
  }
});

for (const how of ['cut', 'blackhole']) {
  test(`partition drill (${how}): the link to PostgreSQL fails; failover, failback, nothing acknowledged lost`, { timeout: 240000 }, async () => {
    const pgTarget = new URL(PG_URL);
    const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
    try {
      const r = await drill({
        primaryUrl: viaProxy(PG_URL, link),
        directUrl: PG_URL,
        breakIt: () => link[how](),
        heal: () => link.restore(),
        // a refused link is seen at once; a silent one after the 2 s statement limit or
        // two health checks, whichever comes first
        switchWithinMs: how === 'cut' ? 3 * HEALTH_MS : 8000,
      });
      console.log(`partition drill (${how}): ${JSON.stringify(r)}`);
    } finally {
      await link.close();
    }
  });
}

test('a slow link (100 ms per packet) is not an outage: no failover, operations succeed', { timeout: 60000 }, async () => {
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const prefix = uniquePrefix('fs');
  try {
    const nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix });
    await waitState(nodes.cfg, 'connected', 10000);
    await link.slow(100);
    for (let i = 0; i < 10; i++) {
      const r = await nodes.send('ins', { payload: { name: `slow-${i}` } });
      assert.ok(r.ok, JSON.stringify(r.err));
      assert.equal(r.ok._debug.provider, 'postgres');
    }
    // enough answered health checks through the slow link that failing ones (threshold 2)
    // would have switched over
    await healthChecksThrough(link, 3);
    assert.equal(nodes.cfg.state, 'connected');
    const metrics = await nodes.cfg.getRegistry().then((r) => r.metrics());
    assert.deepEqual(metrics.stateLog.map((c) => c.state), ['connected']);
  } finally {
    await helper.unload();
    await link.close();
    await dropTables(PG_URL, 'postgres', prefix).catch(() => {});
    await dropTables(MARIADB_URL, 'mariadb', prefix).catch(() => {});
  }
});

test('failback manual: stays on the fallback until POST /database-connector/:id/failback', { timeout: 90000 }, async () => {
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const prefix = uniquePrefix('fm');
  try {
    const nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix, failback: 'manual' });
    await waitState(nodes.cfg, 'connected', 10000);
    await link.cut();
    const ids = [];
    for (let i = 0; i < 20; i++) {
      const r = await nodes.send('ins', { payload: { name: `manual-${i}` } });
      if (r.ok) ids.push(r.ok.payload.id);
    }
    await waitState(nodes.cfg, 'failover', 2000);
    assert.ok(ids.length >= 19, `${ids.length} acknowledged`);
    await link.restore();
    // the primary answers health checks again: automatic failback would follow the 2nd
    await healthChecksThrough(link, 3);
    assert.equal(nodes.cfg.state, 'failover', 'manual failback waits for the admin call');
    const res = await helper.request().post('/database-connector/cfg/failback').expect(200);
    assert.equal(res.body.ok, true);
    assert.equal(res.body.moved.tasks, ids.length);
    await waitState(nodes.cfg, 'connected', 5000);
    const rows = await tableRows(PG_URL, 'postgres', prefix);
    const have = new Set(rows.map((r) => r.id));
    for (const id of ids) assert.ok(have.has(id), `task ${id} moved to PostgreSQL`);
    assert.equal((await tableRows(MARIADB_URL, 'mariadb', prefix)).length, 0);
    // a second call has nothing to do
    const again = await helper.request().post('/database-connector/cfg/failback').expect(200);
    assert.equal(again.body.moved.tasks, 0);
  } finally {
    await helper.unload();
    await link.close();
    await dropTables(PG_URL, 'postgres', prefix).catch(() => {});
    await dropTables(MARIADB_URL, 'mariadb', prefix).catch(() => {});
  }
});

test('a redeploy during failover resumes it: what the fallback holds moves at the next failback', { timeout: 90000 }, async () => {
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const prefix = uniquePrefix('fl');
  try {
    let nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix });
    await waitState(nodes.cfg, 'connected', 10000);
    await link.cut();
    const r = await nodes.send('ins', { payload: { name: 'written-during-outage' } });
    assert.equal(r.ok._debug.provider, 'mariadb');
    await helper.unload();
    await link.restore();
    nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix });
    await waitState(nodes.cfg, 'failover', 5000);
    await waitState(nodes.cfg, 'connected', 20000);
    const rows = await tableRows(PG_URL, 'postgres', prefix);
    assert.deepEqual(rows.map((x) => x.id), [r.ok.payload.id]);
    assert.equal((await tableRows(MARIADB_URL, 'mariadb', prefix)).length, 0);
  } finally {
    await helper.unload();
    await link.close();
    await dropTables(PG_URL, 'postgres', prefix).catch(() => {});
    await dropTables(MARIADB_URL, 'mariadb', prefix).catch(() => {});
  }
});

test('deploy while PostgreSQL is down: with a fallback the flow runs on MariaDB at once and moves back by itself', { timeout: 90000 }, async () => {
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const prefix = uniquePrefix('fd');
  try {
    await link.cut();
    const started = Date.now();
    const nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix });
    const r = await nodes.send('ins', { payload: { name: 'while-down' } });
    assert.ok(r.ok, JSON.stringify(r.err));
    assert.equal(r.ok._debug.provider, 'mariadb');
    assert.ok(Date.now() - started < 5000, 'the first message does not wait long');
    await waitState(nodes.cfg, 'failover', 2000);
    await link.restore();
    await waitState(nodes.cfg, 'connected', 20000);
    const rows = await tableRows(PG_URL, 'postgres', prefix);
    assert.deepEqual(rows.map((x) => x.id), [r.ok.payload.id]);
  } finally {
    await helper.unload();
    await link.close();
    await dropTables(PG_URL, 'postgres', prefix).catch(() => {});
    await dropTables(MARIADB_URL, 'mariadb', prefix).catch(() => {});
  }
});

test('deploy while PostgreSQL is down, no fallback: status reconnecting, fast DBC_CONNECTION, recovers by itself', { timeout: 60000 }, async () => {
  const pgTarget = new URL(PG_URL);
  const link = await startProxy({ host: pgTarget.hostname, port: Number(pgTarget.port || 5432) });
  const prefix = uniquePrefix('fr');
  try {
    await link.cut();
    const nodes = await load({ primaryUrl: viaProxy(PG_URL, link), prefix, fallback: false });
    const t0 = Date.now();
    const r = await nodes.send('ins', { payload: { name: 'refused' } });
    assert.equal(r.err && r.err.code, 'DBC_CONNECTION');
    assert.ok(Date.now() - t0 < 3000);
    await waitState(nodes.cfg, 'reconnecting', 5000);
    await link.restore();
    await waitState(nodes.cfg, 'connected', 20000);
    const ok = await nodes.send('ins', { payload: { name: 'after' } });
    assert.ok(ok.ok, JSON.stringify(ok.err));
    assert.equal(ok.ok._debug.provider, 'postgres');
  } finally {
    await helper.unload();
    await link.close();
    await dropTables(PG_URL, 'postgres', prefix).catch(() => {});
  }
});
