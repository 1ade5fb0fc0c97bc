/**
 * The `consume` node on its own in node-red-node-test-helper, on SQLite and PostgreSQL:
 * the msg it sends per task, never more than `concurrency` in flight, a slot freed by
 * updateTaskStatus through the same connection, its status, stop on close, and a claim
 * that fails going to the node's error log. Plus an operation node with no connection.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { configFor, nodeConfigFor, RED_DIR, useNodeRedHelper } = require('../support');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [RED_DIR] }));
const helper = useNodeRedHelper(service);


/** Resolves with the first value of `fn()` that is truthy, polling `node`'s events. */
function until(fn, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      const v = fn();
      if (v) return resolve(v);
      if (Date.now() - t0 > ms) return reject(new Error(`not within ${ms} ms`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

/** A second connection to the node's database, outside its registry (it emits no settle). */
function openDirect(provider, cfg) {
  const primary = provider === 'sqlite' ? { provider, sqliteFile: cfg.props.sqliteFile } : configFor(provider).primary;
  return service.open({ ...configFor(provider), primary, tablePrefix: cfg.prefix });
}

/** A consume node on `queue` wired to a helper node `out`. */
function consumeFlow(cfg, consume) {
  return [
    { id: 'tab', type: 'tab' },
    cfg.props,
    { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', leaseMs: '60000', wires: [['out']], ...consume },
    { id: 'out', type: 'helper', z: 'tab' },
  ];
}

for (const provider of ['sqlite', 'postgres']) {
  test(`${provider}: consume sends each task once, at most concurrency in flight; a settle frees a slot`, async () => {
    const cfg = nodeConfigFor(provider);
    const direct = await openDirect(provider, cfg);
    try {
      await direct.execute('insertTask', Array.from({ length: 5 }, (_, i) => ({ queue: 'jobs', payload: { i }, priority: 5 - i })));
      await helper.load(dbNode, consumeFlow(cfg, { queue: 'jobs', concurrency: '2', debug: true }), { cfg: cfg.credentials });
      const src = helper.getNode('src');
      const statuses = [];
      src.on('call:status', (call) => statuses.push(call.args[0]));
      const got = [];
      helper.getNode('out').on('input', (msg) => got.push(msg));

      await until(() => got.length === 2);
      assert.deepEqual(got.map((m) => m.payload.i), [0, 1], 'highest priority first');
      for (const m of got) {
        assert.equal(m.task.status, 'running');
        assert.equal(m.task.workerId, `node-red:src:${process.pid}`);
        assert.ok(Date.parse(m.task.leaseExpiresAt) > Date.now() + 50000, 'lease of leaseMs');
        assert.deepEqual(m.task.payload, m.payload);
        assert.equal(m._debug.operation, 'consume');
        assert.equal(m._debug.provider, provider);
      }
      // status: the connection's state first, then the in-flight count (a blue dot while busy)
      const busy = await until(() => statuses.find((st) => st.fill === 'blue'));
      assert.deepEqual(busy, { fill: 'blue', shape: 'dot', text: 'database-connector.status.inflight' });
      assert.deepEqual(statuses.find((st) => st.fill === 'green'), { fill: 'green', shape: 'dot', text: provider });
      // still two: nothing settled (the consumer polls again only when a slot frees)
      const { value: running } = await direct.execute('listTasks', { queue: 'jobs', status: 'running' });
      assert.equal(running.tasks.length, 2);
      assert.equal(got.length, 2);

      // settle one through the config node's registry: the third task comes
      const registry = await helper.getNode('cfg').getRegistry();
      await registry.updateTaskStatus(got[0].task.id, 'completed', { workerId: got[0].task.workerId, result: { ok: true } });
      await until(() => got.length === 3);
      assert.equal(got[2].payload.i, 2);
      const { value: after } = await direct.execute('listTasks', { queue: 'jobs', status: 'running' });
      assert.equal(after.tasks.length, 2, 'never more than concurrency running');

      await helper.unload();
      const { value: left } = await direct.execute('listTasks', { queue: 'jobs', status: 'running' });
      assert.equal(left.tasks.length, 2, 'on stop, tasks in flight stay leased');
      assert.equal(got.length, 3, 'nothing sent after stop');
    } finally {
      await direct.close();
    }
  });
}

for (const provider of ['sqlite', 'postgres']) {
  test(`${provider}: a task claimed again before the settle of its earlier attempt reached the node holds a slot of its own`, async () => {
    const cfg = nodeConfigFor(provider);
    const direct = await openDirect(provider, cfg);
    try {
      const [x] = (await direct.execute('insertTask', [{ queue: 'again', payload: { n: 'x' } }])).value;
      await helper.load(dbNode, consumeFlow(cfg, { queue: 'again', concurrency: '2' }), { cfg: cfg.credentials });
      const got = [];
      helper.getNode('out').on('input', (msg) => got.push(msg));
      await until(() => got.length === 1);
      assert.equal(got[0].task.id, x.id);
      // attempt 1 ends through another connection, so its settle has not reached this
      // node yet (in a busy flow: the answer is still on its way) and the task is free again
      await direct.execute('updateTaskStatus', { id: x.id, status: 'pending', workerId: got[0].task.workerId });
      await until(() => got.length === 2, 5000);
      assert.deepEqual([got[1].task.id, got[1].task.attempts], [x.id, 2], 'claimed again: attempt 2');
      // both attempts hold a slot: a new task waits (the node polls at least once a second)
      await direct.execute('insertTask', [{ queue: 'again', payload: { n: 'y' } }]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(got.length, 2, 'the second attempt did not take over the first one\'s slot');
      // the settle of attempt 1 arrives (as the registry announces it after updateTaskStatus)
      const registry = await helper.getNode('cfg').getRegistry();
      registry.emit('settled', x.id, { ...got[0].task, status: 'pending', workerId: null });
      await until(() => got.length === 3, 5000);
      assert.equal(got[2].payload.n, 'y');
      // attempt 2 is the one the database holds: it settles for real
      const done = await registry.updateTaskStatus(x.id, 'completed', { workerId: got[1].task.workerId });
      assert.equal(done.attempts, 2);
    } finally {
      await helper.unload();
      await direct.close();
    }
  });
}

test('postgres: a busy consume node keeps a second claim on its way for the slots freed meanwhile, never above concurrency', async () => {
  const cfg = nodeConfigFor('postgres');
  const direct = await openDirect('postgres', cfg);
  try {
    const total = 2000;
    await direct.execute('insertTask', Array.from({ length: total }, (_, i) => ({ queue: 'pipe', payload: { i } })));
    await helper.load(dbNode, consumeFlow(cfg, { queue: 'pipe', concurrency: '200' }), { cfg: cfg.credentials });
    // count the claims on their way (the node's first one may already be)
    const reg = await helper.getNode('cfg').getRegistry();
    let claiming = 0;
    let mostClaiming = 0;
    const run = reg.run.bind(reg);
    reg.run = async (operation, payload, options) => {
      if (operation !== 'claimTasks') return run(operation, payload, options);
      claiming += 1;
      mostClaiming = Math.max(mostClaiming, claiming);
      try {
        return await run(operation, payload, options);
      } finally {
        claiming -= 1;
      }
    };
    const seen = new Set();
    let open = 0;
    let mostOpen = 0;
    let done = 0;
    helper.getNode('out').on('input', (msg) => {
      assert.ok(!seen.has(msg.task.id), 'each task once');
      seen.add(msg.task.id);
      open += 1;
      mostOpen = Math.max(mostOpen, open);
      reg.updateTaskStatus(msg.task.id, 'completed', { workerId: msg.task.workerId }).then(() => {
        open -= 1;
        done += 1;
      });
    });
    await until(() => done === total, 30000);
    assert.ok(mostOpen <= 200, `never above concurrency (${mostOpen})`);
    assert.equal(mostClaiming, 2, 'two claims on their way at once, not more');
    const completed = await direct.query(`SELECT count(*)::int AS n FROM ${cfg.prefix}tasks WHERE queue = 'pipe' AND status = 'completed'`);
    assert.equal(completed.rows[0].n, total);
    await helper.unload();
  } finally {
    await direct.close();
  }
});

test('a consume node whose database is down logs DBC_CONNECTION and keeps trying', async () => {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', provider: 'postgres', tablePrefix: 'dbc_', acquireTimeoutMs: '500' },
    { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', queue: 'jobs', wires: [[]] },
  ];
  await helper.load(dbNode, flow, { cfg: { url: 'postgres://postgres@127.0.0.1:1/none' } });
  const src = helper.getNode('src');
  const errors = [];
  src.on('call:error', (call) => errors.push(call.args[0]));
  await until(() => errors.length >= 2, 15000);
  assert.equal(errors[0].code, 'DBC_CONNECTION');
  assert.equal(errors[0].cause.operation, 'claimTasks');
  assert.equal(errors[0].cause.retryable, true);
  assert.equal(errors[0].cause.outcome, 'not-applied', 'nothing was claimed');
});

test('an operation node without a connection reports DBC_CONFIG to a Catch node', async () => {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'missing', operation: 'insertTask', wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, catchNode], flow);
  const caught = new Promise((resolve) => helper.getNode('caught').on('input', resolve));
  let sent = 0;
  helper.getNode('out').on('input', () => { sent += 1; });
  helper.getNode('op').receive({ payload: { name: 'x' } });
  const msg = await caught;
  assert.equal(msg.error.code, 'DBC_CONFIG');
  assert.equal(msg._error.code, 'DBC_CONFIG');
  assert.equal(msg.error.cause.retryable, false);
  assert.equal(sent, 0);
});
