/**
 * The `consume` node's lease options and its paused status:
 * - the Consumer against a scripted registry: with `heartbeat` on, each task in flight
 *   gets a heartbeat every third of the lease with this worker's id, and its slot is kept
 *   past the lease; a heartbeat answering `reason: "cancelled"` (the registry's
 *   `cancelled` event) frees the slot and, with `cancelOutput`, sends one cancel signal
 *   on the second output; a lease lost otherwise frees the slot without a signal; with
 *   the options absent (a saved flow from before them) no heartbeat is sent; a cancel by
 *   a flow of this runtime (a `settled` event with status `cancelled`) signals too;
 * - a consume node in node-red-node-test-helper on SQLite shows "queue paused" while its
 *   queue is paused and the in-flight count again after resume.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { EventEmitter } = require('node:events');
const { Consumer } = require('../../nodes/database-connector/consumer');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { configFor, nodeConfigFor, pollUntil, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(service);

/** A registry that hands out `tasks` once and answers heartbeats with `beat(id)`. */
class ScriptedRegistry extends EventEmitter {
  constructor(tasks, beat) {
    super();
    this.tasks = tasks;
    this.beat = beat;
    this.calls = [];
  }

  async run(operation, payload) {
    this.calls.push([operation, payload]);
    if (operation === 'claimTasks') {
      const value = this.tasks;
      this.tasks = [];
      return { value };
    }
    if (operation === 'getQueueStats') return { value: { queues: [] } };
    if (operation === 'heartbeat') {
      const err = this.beat(payload.id);
      if (err) {
        if (err.reason === 'cancelled') this.emit('cancelled', payload.id);
        throw err;
      }
      const task = { id: payload.id, attempts: 1, status: 'running' };
      this.emit('heartbeat', payload.id, task);
      return { value: task };
    }
    throw new Error(`unexpected ${operation}`);
  }

  waitForTasks() {
    return new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function fakeNode() {
  return { sent: [], statuses: [], warned: [], send(m) { this.sent.push(m); }, status(s) { this.statuses.push(s); }, errors: [], error(e) { this.errors.push(e); }, warn(e) { this.warned.push(e); } };
}

const lost = (reason) => Object.assign(new Error('lost'), { code: 'DBC_LEASE_LOST', reason });

test('heartbeat keeps tasks in flight; a cancelled one frees its slot and signals on output 2', async () => {
  const tasks = ['a', 'b', 'c'].map((id) => ({ id, attempts: 1, payload: { id } }));
  let cancelled = false;
  const registry = new ScriptedRegistry(tasks, (id) => {
    if (id === 'b' && cancelled) return lost('cancelled');
    if (id === 'c' && cancelled) return lost(undefined);
    return null;
  });
  const node = fakeNode();
  const c = new Consumer(node, async () => registry, { queue: 'q', concurrency: 3, leaseMs: 1000, heartbeat: true, cancelOutput: 'true', workerId: 'w1', statusText: (n) => `${n}` });
  c.start();
  try {
    await pollUntil('three tasks in flight', async () => c.inFlight.size, (n) => n === 3, { ms: 5000, every: 10 });
    // past the lease, every task is still in flight: the heartbeats kept them
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(c.inFlight.size, 3);
    const beats = registry.calls.filter(([op]) => op === 'heartbeat');
    assert.ok(beats.length >= 9, `${beats.length} heartbeats`);
    assert.deepEqual(beats[0][1], { id: 'a', workerId: 'w1', leaseMs: 1000 });
    cancelled = true;
    await pollUntil('b and c freed', async () => c.inFlight.size, (n) => n === 1, { ms: 3000, every: 10 });
    const signals = node.sent.filter((m) => Array.isArray(m));
    assert.deepEqual(signals, [[null, { payload: { id: 'b', reason: 'cancelled' }, task: tasks[1], topic: 'cancelled' }]]);
    assert.deepEqual(node.sent.filter((m) => !Array.isArray(m)).map((m) => m.task.id), ['a', 'b', 'c']);
  } finally {
    c.stop();
  }
});

test('a consumer saved without the new options sends no heartbeat and has no second output', async () => {
  const registry = new ScriptedRegistry([{ id: 'a', attempts: 1 }], () => null);
  const node = fakeNode();
  const c = new Consumer(node, async () => registry, { queue: 'q', concurrency: '1', leaseMs: '1000', workerId: 'w', statusText: String });
  assert.equal(c.heartbeat, false);
  assert.equal(c.cancelOutput, false);
  c.start();
  try {
    await pollUntil('the task in flight', async () => c.inFlight.size, (n) => n === 1, { ms: 5000, every: 10 });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(registry.calls.filter(([op]) => op === 'heartbeat').length, 0);
    registry.emit('cancelled', 'a');
    assert.equal(c.inFlight.size, 0, 'a cancelled task frees its slot');
    assert.equal(node.sent.filter((m) => Array.isArray(m)).length, 0, 'no signal without the cancel output');
  } finally {
    c.stop();
  }
});

test('a cancel by a flow of this runtime (a settled event with status cancelled) signals too', async () => {
  const task = { id: 'a', attempts: 1, payload: {} };
  const registry = new ScriptedRegistry([task], () => null);
  const node = fakeNode();
  const c = new Consumer(node, async () => registry, { queue: 'q', concurrency: 1, leaseMs: 60000, cancelOutput: true, workerId: 'w', statusText: String });
  c.start();
  try {
    await pollUntil('the task in flight', async () => c.inFlight.size, (n) => n === 1, { ms: 5000, every: 10 });
    registry.emit('settled', 'a', { id: 'a', attempts: 1, status: 'cancelled', workerId: null });
    assert.equal(c.inFlight.size, 0);
    assert.deepEqual(node.sent.filter((m) => Array.isArray(m)), [[null, { payload: { id: 'a', reason: 'cancelled' }, task, topic: 'cancelled' }]]);
    // a settle to any other status frees the slot without a signal
    registry.tasks = [{ id: 'b', attempts: 1 }];
    c.schedule(0);
    await pollUntil('the next task in flight', async () => c.inFlight.size, (n) => n === 1, { ms: 5000, every: 10 });
    registry.emit('settled', 'b', { id: 'b', attempts: 1, status: 'completed' });
    assert.equal(c.inFlight.size, 0);
    assert.equal(node.sent.filter((m) => Array.isArray(m)).length, 1);
  } finally {
    c.stop();
  }
});

test('sqlite: the connector emits cancelled when a heartbeat, settle or batch-settle item answers reason cancelled', async () => {
  const cfg = nodeConfigFor('sqlite');
  const db = await service.open({ ...configFor('sqlite'), primary: { provider: 'sqlite', sqliteFile: cfg.props.sqliteFile }, tablePrefix: cfg.prefix });
  try {
    const events = [];
    db.on('cancelled', (id) => events.push(id));
    const t = (await db.execute('insertTask', { queue: 'ev' })).value;
    await db.execute('claimTasks', { queue: 'ev', workerId: 'w' });
    await db.execute('updateTaskStatus', { id: t.id, status: 'cancelled' });
    await assert.rejects(db.execute('heartbeat', { id: t.id, workerId: 'w' }), { code: 'DBC_LEASE_LOST', reason: 'cancelled' });
    await assert.rejects(db.execute('updateTaskStatus', { id: t.id, status: 'completed', workerId: 'w' }), { code: 'DBC_INVALID_TRANSITION', reason: 'cancelled' });
    const many = (await db.execute('updateTaskStatus', [{ id: t.id, status: 'completed', workerId: 'w' }])).value;
    assert.equal(many[0].error.reason, 'cancelled');
    assert.deepEqual(events, [t.id, t.id, t.id]);
  } finally {
    await db.close();
  }
});

test('sqlite: a consume node shows "queue paused" while its queue is paused, and its count after resume', { timeout: 60000 }, async () => {
  const cfg = nodeConfigFor('sqlite');
  const direct = await service.open({ ...configFor('sqlite'), primary: { provider: 'sqlite', sqliteFile: cfg.props.sqliteFile }, tablePrefix: cfg.prefix });
  try {
    await direct.execute('pauseQueue', { queue: 'pq' });
    const flow = [
      { id: 'tab', type: 'tab' },
      cfg.props,
      { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', queue: 'pq', leaseMs: '60000', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'tab' },
    ];
    await helper.load(dbNode, flow, { cfg: cfg.credentials });
    const src = helper.getNode('src');
    const statuses = [];
    src.on('call:status', (call) => statuses.push(call.args[0]));
    const paused = await pollUntil('the paused status', async () => statuses.find((s) => s.fill === 'yellow' && s.text === 'database-connector.status.queuePaused'), Boolean, { ms: 15000, every: 20 });
    assert.deepEqual(paused, { fill: 'yellow', shape: 'ring', text: 'database-connector.status.queuePaused' });
    const n = statuses.length;
    await direct.execute('resumeQueue', { queue: 'pq' });
    const back = await pollUntil('the normal status again', async () => statuses.slice(n).find((s) => s.fill === 'blue'), Boolean, { ms: 15000, every: 20 });
    assert.deepEqual(back, { fill: 'blue', shape: 'ring', text: 'database-connector.status.inflight' });
  } finally {
    await direct.close();
  }
});
