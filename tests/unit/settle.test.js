/**
 * Batch settle in a real Node-RED runtime (node-red-node-test-helper), on every
 * provider: one message with an array of 1,000 status changes into an
 * `updateTaskStatus` node; one bad id fails alone, a bad shape refuses the message; 1,000
 * completions with `workerId` run a constant number of statements (set-based).
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const helper = require('node-red-node-test-helper');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { nodeConfigFor, requireDatabases, RED_DIR } = require('../support');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [RED_DIR] }));

helper.init(require.resolve('node-red', { paths: [RED_DIR] }));

test.before(async () => {
  await requireDatabases(service);
  await new Promise((resolve) => helper.startServer(resolve));
});
test.after(async () => {
  await helper.unload();
  await new Promise((resolve) => helper.stopServer(resolve));
});
test.afterEach(() => helper.unload());

/** A flow with one node per operation used, each wired to its own helper, and a Catch. */
async function load(provider) {
  const cfg = nodeConfigFor(provider);
  const ops = ['insertTask', 'claimTasks', 'updateTaskStatus', 'query'];
  const flow = [{ id: 'tab', type: 'tab' }, { ...cfg.props, z: undefined },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' }];
  // node ids unlike any property value: Node-RED takes a property equal to a node id for a
  // reference to that node
  for (const op of ops) {
    flow.push({ id: `n-${op}`, type: 'database-connector', z: 'tab', connection: 'cfg', queue: 'bulk', operation: op, wires: [[`${op}-out`]] });
    flow.push({ id: `${op}-out`, type: 'helper', z: 'tab' });
  }
  // an updateTaskStatus node with debug on (msg._debug lists the statements it ran)
  flow.push({ id: 'n-settleDebug', type: 'database-connector', z: 'tab', connection: 'cfg', queue: 'bulk', operation: 'updateTaskStatus', debug: true, wires: [['settleDebug-out']] });
  flow.push({ id: 'settleDebug-out', type: 'helper', z: 'tab' });
  await helper.load([dbNode, catchNode], flow, { cfg: cfg.credentials });
  const caught = helper.getNode('caught');
  /** Sends msg to node `op`; resolves with its output msg, or the caught error. */
  const send = (op, msg) => new Promise((resolve) => {
    const out = helper.getNode(`${op}-out`);
    const done = (r) => {
      out.removeListener('input', onOut);
      caught.removeListener('input', onCaught);
      resolve(r);
    };
    const onOut = (m) => done({ ok: m });
    const onCaught = (m) => done({ caught: m });
    out.on('input', onOut);
    caught.on('input', onCaught);
    helper.getNode(`n-${op}`).receive(msg);
  });
  return { send, prefix: cfg.prefix, ph: provider === 'postgres' ? '$1' : '?' };
}

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: one message settles 1,000 claimed tasks; a bad id fails alone, a bad shape refuses all`, async () => {
    const n = await load(provider);
    const inserted = await n.send('insertTask', { payload: Array.from({ length: 1000 }, (_, i) => ({ name: `t${i}`, maxAttempts: 1 })) });
    assert.ok(inserted.ok, JSON.stringify(inserted.caught && inserted.caught.error));
    const claimed = await n.send('claimTasks', { payload: { limit: 1000, workerId: 'w1', leaseMs: 600000 } });
    const ids = claimed.ok.payload.map((t) => t.id);
    assert.equal(ids.length, 1000);

    // a wrong shape anywhere: DBC_VALIDATION naming the item, and nothing changes
    const bad = ids.map((id) => ({ id, status: 'completed', workerId: 'w1' }));
    bad[500] = { id: ids[500], status: 'done' };
    const refused = await n.send('updateTaskStatus', { payload: bad });
    assert.ok(refused.caught, 'a bad item must refuse the message');
    assert.equal(refused.caught.error.code, 'DBC_VALIDATION');
    assert.equal(refused.caught.error.cause.field, 'payload[500].status');
    const count = async (status) => {
      const q = await n.send('query', { topic: `SELECT count(*) AS n FROM ${n.prefix}tasks WHERE status = ${n.ph}`, params: [status] });
      return Number(q.ok.payload[0].n);
    };
    assert.equal(await count('running'), 1000);

    // 999 settled (even: completed, odd: failed) and one unknown id
    const unknown = '0192f5a4-7c1e-7a3b-9c2d-3e4f5a6b7c8d';
    const items = ids.slice(0, 999).map((id, i) => (i % 2 === 0
      ? { id, status: 'completed', workerId: 'w1', result: { i } }
      : { id, status: 'failed', workerId: 'w1', error: { code: 'E_BULK', message: `item ${i}` } }));
    items.push({ id: unknown, status: 'completed', workerId: 'w1' });
    const r = await n.send('updateTaskStatus', { payload: items, keep: 'me' });
    assert.ok(r.ok, JSON.stringify(r.caught && r.caught.error));
    assert.equal(r.ok.keep, 'me');
    const out = r.ok.payload;
    assert.equal(out.length, 1000);
    out.slice(0, 999).forEach((t, i) => {
      assert.equal(t.id, ids[i], `answer ${i} out of order`);
      assert.equal(t.status, i % 2 === 0 ? 'completed' : 'failed');
      if (i % 2 === 0) assert.deepEqual(t.result, { i });
      else assert.equal(t.lastError, `item ${i}`);
    });
    assert.equal(out[999].id, unknown);
    assert.equal(out[999].error.code, 'DBC_NOT_FOUND');
    assert.equal(typeof out[999].error.message, 'string');
    assert.equal(await count('completed'), 500);
    assert.equal(await count('failed'), 499);
    assert.equal(await count('running'), 1);
    const errors = await n.send('query', { topic: `SELECT count(*) AS n FROM ${n.prefix}error_logs WHERE code = ${n.ph}`, params: ['E_BULK'] });
    assert.equal(Number(errors.ok.payload[0].n), 499);
    const history = await n.send('query', { topic: `SELECT count(*) AS n FROM ${n.prefix}task_executions` });
    assert.equal(Number(history.ok.payload[0].n), 999);
  });
}

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: 1,000 completions in one message are set-based: a constant number of statements`, async () => {
    const n = await load(provider);
    const inserted = await n.send('insertTask', { payload: Array.from({ length: 1000 }, (_, i) => ({ name: `c${i}` })) });
    assert.ok(inserted.ok, JSON.stringify(inserted.caught && inserted.caught.error));
    const claimed = await n.send('claimTasks', { payload: { limit: 1000, workerId: 'w1', leaseMs: 600000 } });
    const ids = claimed.ok.payload.map((t) => t.id);
    assert.equal(ids.length, 1000);
    const items = ids.map((id, i) => ({ id, status: 'completed', workerId: 'w1', result: { i } }));
    const r = await n.send('settleDebug', { payload: items });
    assert.ok(r.ok, JSON.stringify(r.caught && r.caught.error));
    assert.equal(r.ok.payload.length, 1000);
    r.ok.payload.forEach((t, i) => {
      assert.equal(t.id, ids[i], `answer ${i} out of order`);
      assert.equal(t.status, 'completed');
      assert.deepEqual(t.result, { i });
    });
    // PostgreSQL: one statement; MariaDB and SQLite: pick, history, complete, release, read
    const names = r.ok._debug.statements.map((st) => st.name);
    assert.equal(names.length, provider === 'postgres' ? 1 : 5, names.join(', '));
    const history = await n.send('query', { topic: `SELECT count(*) AS n FROM ${n.prefix}task_executions WHERE status = ${n.ph}`, params: ['completed'] });
    assert.equal(Number(history.ok.payload[0].n), 1000);
  });
}
