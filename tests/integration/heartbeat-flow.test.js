/**
 * Heartbeats and cancel signals in a real Node-RED runtime (node-red-node-test-helper with
 * the core function and catch nodes), on every provider:
 * - a flow task that takes 5× its lease runs exactly once when its `consume` node
 *   heartbeats the tasks in flight, and runs again after the lease when it does not;
 * - a running task cancelled from outside this runtime: the consumer's next heartbeat
 *   learns it and sends a cancel signal on the second output (within one heartbeat
 *   interval), the flow's later settle gets DBC_INVALID_TRANSITION with
 *   `reason: "cancelled"` in msg.error.cause, and nothing is overwritten;
 * - a flow reports progress with a heartbeat node fed from msg.task + msg.heartbeat.
 * The samples of docs/API.md#heartbeat and docs/API.md#consume (cancel signals) mirror
 * these flows.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { configFor, nodeConfigFor, pollUntil, RED_DIR, useNodeRedHelper } = require('../support');

const functionNode = require(require.resolve('@node-red/nodes/core/function/10-function.js', { paths: [RED_DIR] }));
const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [RED_DIR] }));
const helper = useNodeRedHelper(service, { unloadEach: false });

const LEASE = 600;

/**
 * consume (queue, heartbeat on or off, cancel output) → a function that reports progress
 * at once through a heartbeat node (unless `report` is false: a heartbeat of its own),
 * works `workMs` and then completes the task.
 */
function flow(cfg, { queue, heartbeat, workMs, report = true }) {
  return [
    { id: 'tab', type: 'tab' },
    cfg.props,
    { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', queue, concurrency: '1', leaseMs: String(LEASE), heartbeat, cancelOutput: true, outputs: 2, wires: [['work', 'seen'], ['cancels']] },
    {
      id: 'work', type: 'function', z: 'tab', outputs: 2,
      func: `${report ? "node.send([null, { task: msg.task, heartbeat: { progress: 10, note: { step: 'started' }, leaseMs: " + LEASE + ' } }]);' : ''}
setTimeout(() => { msg.payload = { status: 'completed', result: { ok: true } }; node.send([msg, null]); node.done(); }, ${workMs});
return null;`,
      wires: [['settle'], ['beat']],
    },
    { id: 'beat', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'heartbeat', wires: [['beats']] },
    { id: 'settle', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'updateTaskStatus', wires: [['settled']] },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'seen', type: 'helper', z: 'tab' },
    { id: 'beats', type: 'helper', z: 'tab' },
    { id: 'settled', type: 'helper', z: 'tab' },
    { id: 'cancels', type: 'helper', z: 'tab' },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
}

/** Loads the flow and collects what each helper node receives. */
async function load(cfg, opts) {
  await new Promise((resolve) => helper.load([dbNode, functionNode, catchNode], flow(cfg, opts), { cfg: cfg.credentials }, resolve));
  const got = { seen: [], beats: [], settled: [], cancels: [], caught: [] };
  for (const k of Object.keys(got)) helper.getNode(k).on('input', (msg) => got[k].push({ ...msg, at: Date.now() }));
  return got;
}

function openDirect(provider, cfg) {
  const primary = provider === 'sqlite' ? { provider, sqliteFile: cfg.props.sqliteFile } : configFor(provider).primary;
  return service.open({ ...configFor(provider), primary, tablePrefix: cfg.prefix });
}

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: a task that takes 5× its lease runs once with heartbeats, again without`, { timeout: 60000 }, async () => {
    const cfg = nodeConfigFor(provider);
    const db = await openDirect(provider, cfg);
    try {
      const got = await load(cfg, { queue: 'long', heartbeat: true, workMs: 5 * LEASE });
      const t = (await db.execute('insertTask', { queue: 'long', payload: { n: 1 } })).value;
      await pollUntil('the long task completed', async () => got.settled.length, (n) => n === 1, { ms: 30000, every: 50 });
      const done = (await db.execute('getTask', { id: t.id })).value;
      assert.equal(done.status, 'completed');
      assert.equal(done.attempts, 1);
      assert.deepEqual(done.history.map((h) => h.status), ['completed'], 'it ran exactly once');
      assert.deepEqual(done.errors, [], 'no lease expired');
      assert.deepEqual(done.result, { ok: true });
      assert.equal(got.seen.length, 1, 'the consumer emitted it once');
      // the flow's own heartbeat (msg.task + msg.heartbeat) stored its progress
      assert.equal(got.beats.length, 1);
      assert.deepEqual([done.progress.percent, done.progress.note], [10, { step: 'started' }]);
      await helper.unload();

      // the same flow without heartbeats: the lease runs out while it works, and the task
      // is emitted again (its first settle is refused)
      const again = await load(cfg, { queue: 'short', heartbeat: false, workMs: 5 * LEASE, report: false });
      const u = (await db.execute('insertTask', { queue: 'short', maxAttempts: 3 })).value;
      await pollUntil('the task emitted a second time', async () => again.seen.length, (n) => n >= 2, { ms: 30000, every: 50 });
      assert.deepEqual(again.seen.map((m) => [m.task.id, m.task.attempts]).slice(0, 2), [[u.id, 1], [u.id, 2]]);
      const hist = (await db.execute('getTask', { id: u.id })).value.history;
      assert.equal(hist[0].status, 'lease_expired');
    } finally {
      await helper.unload();
      await db.close();
    }
  });

  test(`${provider}: a running task cancelled elsewhere: cancel signal within one heartbeat, coded settle, nothing overwritten`, { timeout: 60000 }, async () => {
    const cfg = nodeConfigFor(provider);
    const db = await openDirect(provider, cfg);
    try {
      const got = await load(cfg, { queue: 'stop', heartbeat: true, workMs: 8 * LEASE });
      const t = (await db.execute('insertTask', { queue: 'stop', payload: { big: true } })).value;
      await pollUntil('the task emitted', async () => got.seen.length, (n) => n === 1, { ms: 20000, every: 20 });
      await pollUntil('the flow reported progress', async () => got.beats.length, (n) => n === 1, { ms: 20000, every: 20 });
      // an operator cancels it through another connection (not this runtime's registry)
      const cancelledAt = Date.now();
      const c = (await db.execute('updateTaskStatus', { id: t.id, status: 'cancelled' })).value;
      assert.equal(c.status, 'cancelled');
      const sig = await pollUntil('the cancel signal', async () => got.cancels[0], Boolean, { ms: 10000, every: 10 });
      assert.ok(sig.at - cancelledAt <= LEASE / 3 + 1000, `told ${sig.at - cancelledAt} ms after the cancel`);
      assert.equal(sig.topic, 'cancelled');
      assert.deepEqual(sig.payload, { id: t.id, reason: 'cancelled' });
      assert.equal(sig.task.id, t.id);
      // the work ends anyway and tries to complete it: refused, coded
      const caught = await pollUntil('the refused settle', async () => got.caught[0], Boolean, { ms: 20000, every: 20 });
      assert.equal(caught.error.code, 'DBC_INVALID_TRANSITION');
      assert.equal(caught.error.cause.reason, 'cancelled');
      assert.equal(got.settled.length, 0);
      const after = (await db.execute('getTask', { id: t.id })).value;
      assert.equal(after.status, 'cancelled');
      assert.equal(after.result, null, 'nothing overwritten');
      assert.deepEqual(after.history.map((h) => h.status), ['cancelled']);
      assert.equal(got.cancels.length, 1, 'one signal');
    } finally {
      await helper.unload();
      await db.close();
    }
  });
}
