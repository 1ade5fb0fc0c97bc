/**
 * The nodes in a real Node-RED runtime (node-red-node-test-helper), against the real
 * databases: operations end to end, msg._debug, and coded errors reaching a Catch node.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { nodeConfigFor, root, RED_DIR, useNodeRedHelper } = require('../support');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [RED_DIR] }));

const helper = useNodeRedHelper(service);


/** Loads a flow: inject-less, one operation node `op` wired to helper `out`, plus a Catch → `caught`. */
async function load(provider, opProps, cfgOverride) {
  const cfg = nodeConfigFor(provider);
  Object.assign(cfg.props, cfgOverride || {});
  const flow = [
    { id: 'tab', type: 'tab' },
    { ...cfg.props, z: undefined },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', queue: 'q1', debug: false, ...opProps, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, catchNode], flow, { cfg: cfg.credentials });
  return watch({ op: helper.getNode('op'), out: helper.getNode('out'), caught: helper.getNode('caught'), prefix: cfg.prefix });
}

/** Collects what reaches `out` and `caught`, in order, so each send takes the next one. */
function watch(nodes) {
  const queue = [];
  let waiting = null;
  const push = (item) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(item);
    } else queue.push(item);
  };
  nodes.out.on('input', (m) => push({ ok: m }));
  nodes.caught.on('input', (m) => push({ caught: m }));
  nodes.next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => { waiting = resolve; }));
  return nodes;
}

async function send(nodes, msg) {
  nodes.op.receive(msg);
  return nodes.next();
}

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: insertTask (one and many), getTask, updateTaskStatus, query — msg kept, no _debug when off`, async () => {
    const n = await load(provider, { operation: 'msg' });
    const one = await send(n, { operation: 'insertTask', payload: { name: 'a', payload: { x: 1 }, priority: 2 }, keep: 'me' });
    assert.ok(one.ok, JSON.stringify(one.caught && one.caught.error));
    const task = one.ok.payload;
    assert.equal(one.ok.keep, 'me');
    assert.equal(one.ok._debug, undefined);
    assert.equal(task.queue, 'q1');
    assert.equal(task.status, 'pending');
    assert.deepEqual(task.payload, { x: 1 });
    assert.match(task.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);

    const many = await send(n, { operation: 'insertTask', payload: [{ name: 'b' }, { name: 'c', queue: 'other' }] });
    assert.deepEqual(many.ok.payload.map((t) => [t.name, t.queue]), [['b', 'q1'], ['c', 'other']]);

    const got = await send(n, { operation: 'getTask', payload: { id: task.id } });
    assert.equal(got.ok.payload.id, task.id);
    assert.deepEqual(got.ok.payload.history, []);

    const running = await send(n, { operation: 'updateTaskStatus', payload: { id: task.id, status: 'running', workerId: 'w1' } });
    assert.equal(running.ok.payload.status, 'running');
    assert.equal(running.ok.payload.attempts, 1);
    const done = await send(n, { operation: 'updateTaskStatus', payload: { status: 'completed', result: { ok: true } }, task: { id: task.id, workerId: 'w1' } });
    assert.equal(done.ok.payload.status, 'completed');
    assert.deepEqual(done.ok.payload.result, { ok: true });

    const ph = provider === 'postgres' ? '$1' : '?';
    const q = await send(n, { operation: 'query', topic: `SELECT id, status FROM ${n.prefix}tasks WHERE id = ${ph}`, params: [task.id] });
    assert.deepEqual(q.ok.payload, [{ id: task.id, status: 'completed' }]);
    assert.equal(q.ok.result.rowCount, 1);
    const named = await send(n, { operation: 'query', topic: `SELECT count(*) AS n FROM ${n.prefix}tasks WHERE queue = :queue`, params: { queue: 'q1' } });
    assert.equal(Number(named.ok.payload[0].n), 2);
  });

  test(`${provider}: debug mode puts timings, pool state and the provider into msg._debug`, async () => {
    const n = await load(provider, { operation: 'insertTask', debug: true });
    const r = await send(n, { payload: { name: 'dbg' } });
    const d = r.ok._debug;
    assert.equal(d.operation, 'insertTask');
    assert.equal(d.provider, provider);
    assert.equal(d.failover, false);
    assert.equal(d.connectionState, 'connected');
    assert.ok(!Number.isNaN(Date.parse(d.startedAt)));
    assert.ok(d.durationMs >= d.dbMs && d.dbMs > 0, JSON.stringify(d));
    assert.ok(d.statements.length >= 1 && d.statements.every((s) => typeof s.name === 'string' && s.ms >= 0 && s.rows >= 0));
    assert.deepEqual(Object.keys(d.pool).sort(), ['idle', 'inUse', 'max', 'size', 'waiting']);
    assert.equal(d.retries, 0);
    assert.doesNotMatch(JSON.stringify(d), /password|postgres:\/\/|mysql:\/\//);
  });

  test(`${provider}: coded errors reach a Catch node with their details; the runtime stays up`, async () => {
    const n = await load(provider, { operation: 'msg' });
    const expect = async (msg, code, check) => {
      const r = await send(n, msg);
      assert.ok(r.caught, `expected ${code}, got output ${JSON.stringify(r.ok && r.ok.payload)}`);
      assert.equal(r.caught.error.code, code, r.caught.error.message);
      assert.equal(r.caught.error.cause.code, code);
      assert.equal(typeof r.caught.error.cause.retryable, 'boolean');
      assert.equal(r.caught.error.cause.provider, provider);
      if (check) check(r.caught.error);
    };
    await expect({ operation: 'query', topic: 'SELEC 1' }, 'DBC_QUERY', (e) => {
      if (provider !== 'sqlite') assert.match(e.cause.sqlState, /^42/);
    });
    const table = `${n.prefix}u`;
    await send(n, { operation: 'query', topic: `CREATE TABLE ${table} (id INTEGER PRIMARY KEY)` });
    await send(n, { operation: 'query', topic: `INSERT INTO ${table} (id) VALUES (1)` });
    await expect({ operation: 'query', topic: `INSERT INTO ${table} (id) VALUES (1)` }, 'DBC_CONFLICT');
    await expect({ operation: 'query', topic: `SELECT id FROM ${table} WHERE id = ${provider === 'postgres' ? '$1' : '?'}`, params: [1, 2] }, 'DBC_VALIDATION', (e) => assert.equal(e.cause.field, 'params'));
    const circular = {};
    circular.me = circular;
    await expect({ operation: 'insertTask', payload: { payload: circular } }, 'DBC_VALIDATION', (e) => assert.equal(e.cause.field, 'payload'));
    await expect({ operation: 'insertTask', payload: { priority: -1 } }, 'DBC_VALIDATION', (e) => assert.equal(e.cause.field, 'priority'));
    await expect({ operation: 'dropEverything' }, 'DBC_VALIDATION', (e) => assert.equal(e.cause.field, 'operation'));
    if (provider === 'postgres') {
      await send(n, { operation: 'query', topic: `CREATE TABLE ${table}j (j jsonb)` });
      await expect({ operation: 'query', topic: `INSERT INTO ${table}j (j) VALUES ($1)`, params: ['{not json'] }, 'DBC_VALIDATION');
    }
    const alive = await send(n, { operation: 'query', topic: 'SELECT 1 AS one' });
    assert.equal(alive.ok.payload[0].one, 1);
  });
}

test('connection refused and a wrong password reach the Catch node as DBC_CONNECTION', async () => {
  for (const [override, creds] of [
    [{ provider: 'postgres', host: '127.0.0.1', port: '1', acquireTimeoutMs: '2000' }, {}],
    [{ provider: 'postgres', host: '127.0.0.1', database: 'test' }, { user: 'nobody_here', password: 'hunter2-secret' }],
  ]) {
    const flow = [
      { id: 'tab', type: 'tab' },
      { id: 'cfg', type: 'database-connector-config', tablePrefix: 'dbc_', ...override },
      { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'query', sql: 'SELECT 1', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'tab' },
      { id: 'c1', type: 'catch', z: 'tab', scope: null, wires: [['caught']] },
      { id: 'caught', type: 'helper', z: 'tab' },
    ];
    await helper.load([dbNode, catchNode], flow, { cfg: creds });
    const n = watch({ op: helper.getNode('op'), out: helper.getNode('out'), caught: helper.getNode('caught') });
    const r = await send(n, { payload: 1 });
    assert.equal(r.caught.error.code, 'DBC_CONNECTION');
    assert.doesNotMatch(JSON.stringify(r.caught.error), /hunter2-secret/);
    await helper.unload();
  }
});

const splitJoin = require(require.resolve('@node-red/nodes/core/sequence/17-split.js', { paths: [RED_DIR] }));

/** `SELECT x` for x = 1..n on every provider. */
const series = (n) => `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) SELECT x FROM c`;

/** Takes what reaches `out`/`caught` until a part with `count` (or an error) arrives. */
async function parts(n) {
  const got = [];
  for (;;) {
    const r = await n.next();
    if (r.caught) return { got, caught: r.caught };
    got.push(r.ok);
    if (r.ok.parts && r.ok.parts.count !== undefined) return { got };
  }
}

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: query with rowsPerMsg streams a msg.parts sequence, count on the last part`, async () => {
    const n = await load(provider, { operation: 'query', rowsPerMsg: '2', debug: true, sql: series(5) });
    n.op.receive({ payload: null, keep: 'me' });
    const { got, caught } = await parts(n);
    assert.equal(caught, undefined, JSON.stringify(caught && caught.error));
    assert.deepEqual(got.map((m) => m.payload.map((r) => Number(r.x))), [[1, 2], [3, 4], [5]]);
    assert.deepEqual(got.map((m) => m.parts.index), [0, 1, 2]);
    assert.deepEqual(got.map((m) => m.parts.count), [undefined, undefined, 3]);
    assert.ok(got.every((m) => m.parts.id === got[0].parts.id && m.parts.type === 'array' && m.parts.len === 2));
    // rowCount counts the rows sent so far: the last part's is the total
    assert.deepEqual(got.map((m) => m.result.rowCount), [2, 4, 5]);
    assert.ok(got.every((m) => m.keep === 'me'));
    // _debug once, on the last part
    assert.deepEqual(got.map((m) => m._debug !== undefined), [false, false, true]);
    assert.equal(got[2]._debug.operation, 'query');
    assert.equal(got[2]._debug.statements[0].rows, 5);

    // no rows: one empty part with count 1
    n.op.receive({ payload: null, topic: 'ignored' });
    await helper.unload();
    const e = await load(provider, { operation: 'query', rowsPerMsg: '10', sql: `SELECT x FROM (${series(3)}) s WHERE x < 0` });
    e.op.receive({ payload: null });
    const empty = await parts(e);
    assert.equal(empty.caught, undefined, JSON.stringify(empty.caught && empty.caught.error));
    assert.equal(empty.got.length, 1);
    assert.deepEqual(empty.got[0].payload, []);
    assert.deepEqual({ index: empty.got[0].parts.index, count: empty.got[0].parts.count }, { index: 0, count: 1 });
    // (SQLite reports the connection's last change count for a SELECT without rows, as query does)
    if (provider !== 'sqlite') assert.equal(empty.got[0].result.rowCount, 0);
    await helper.unload();
  });
}

test('a join node in automatic mode reassembles a streamed query exactly', async () => {
  const cfg = nodeConfigFor('postgres');
  const flow = [
    { id: 'tab', type: 'tab' },
    { ...cfg.props, z: undefined },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'query', rowsPerMsg: '1000', sql: 'SELECT g AS x FROM generate_series(1, 4500) AS g ORDER BY g', wires: [['j1', 'out']] },
    { id: 'j1', type: 'join', z: 'tab', mode: 'auto', build: 'object', property: 'payload', propertyType: 'msg', key: 'topic', joiner: '\\n', joinerType: 'str', accumulate: false, timeout: '', count: '', wires: [['joined']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'joined', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, splitJoin], flow, { cfg: cfg.credentials });
  const joined = new Promise((resolve) => helper.getNode('joined').on('input', resolve));
  let seen = 0;
  helper.getNode('out').on('input', () => { seen += 1; });
  helper.getNode('op').receive({ payload: null, topic: 'big' });
  const msg = await joined;
  assert.equal(seen, 5, 'five parts went out');
  assert.equal(msg.payload.length, 4500);
  assert.deepEqual(msg.payload.map((r) => r.x), Array.from({ length: 4500 }, (_, i) => i + 1));
  assert.equal(msg.parts, undefined, 'the sequence is complete');
  assert.equal(msg.topic, 'big');
});

test('an error at the start or mid-stream reaches the Catch node as DBC_QUERY; no more parts; the runtime stays up', async () => {
  // at the start (PostgreSQL): no part at all
  let n = await load('postgres', { operation: 'query', rowsPerMsg: '10', sql: 'SELEC 1' });
  n.op.receive({ payload: null });
  let r = await parts(n);
  assert.equal(r.got.length, 0);
  assert.equal(r.caught.error.code, 'DBC_QUERY');
  assert.equal(r.caught.error.cause.operation, 'query');
  await helper.unload();

  // mid-stream (SQLite: json() fails on row 250, after parts of 10 went out)
  n = await load('sqlite', { operation: 'query', rowsPerMsg: '10', sql: `SELECT CASE WHEN x < 250 THEN x ELSE json('{' || x) END AS x FROM (${series(300)})` });
  n.op.receive({ payload: null });
  r = await parts(n);
  assert.ok(r.got.length > 0, 'parts went out before the error');
  assert.ok(r.got.every((m) => m.parts.count === undefined && m.payload.length === 10));
  assert.equal(r.caught.error.code, 'DBC_QUERY');
  // the runtime is up and the node still works: nothing else of the failed query
  // arrives, the next message starts a new sequence (and meets the same error)
  const firstId = r.got[0].parts.id;
  n.op.receive({ payload: null, topic: 'again' });
  r = await parts(n);
  assert.equal(r.got[0].topic, 'again');
  assert.equal(r.got[0].parts.index, 0);
  assert.notEqual(r.got[0].parts.id, firstId);
  assert.equal(r.caught.error.code, 'DBC_QUERY');
});

test('closing the flow mid-stream stops the query and frees its connection', async () => {
  const n = await load('postgres', { operation: 'query', rowsPerMsg: '100', sql: 'SELECT g AS x FROM generate_series(1, 50000000) AS g' });
  n.op.receive({ payload: null });
  const first = await n.next();
  assert.ok(first.ok && first.ok.payload.length === 100);
  const registry = await helper.getNode('cfg').getRegistry();
  // the config node's close waits for the pool (10 s at most): it comes back at once
  // only when the stream was stopped and its connection returned
  const t0 = Date.now();
  await helper.unload();
  assert.ok(Date.now() - t0 < 5000, `unload took ${Date.now() - t0} ms`);
  assert.equal(registry.db.pool().inUse, 0);
});

test('the manager file stays under 200 lines', () => {
  const lines = fs.readFileSync(path.join(root, 'nodes/database-connector/database-connector.js'), 'utf8').split('\n').length;
  assert.ok(lines < 200, `${lines} lines`);
});
