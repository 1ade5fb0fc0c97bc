/**
 * Live metrics over the admin API of a real runtime: counts match a known workload, and
 * the Prometheus output parses with a real exposition-format parser.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const parsePrometheus = require('parse-prometheus-text-format');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const { nodeConfigFor, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(undefined, { unloadEach: false });


test('1,000 inserts and 5 bad ones show in /metrics as JSON and as Prometheus text', async () => {
  const cfg = nodeConfigFor('sqlite');
  const flow = [
    { id: 'tab', type: 'tab' },
    cfg.props,
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'insertTask', queue: 'm', wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
  ];
  await helper.load(dbNode, flow, { cfg: cfg.credentials });
  const op = helper.getNode('op');
  let got = 0;
  const all = new Promise((resolve) => helper.getNode('out').on('input', () => { got += 1; if (got === 1000) resolve(); }));
  for (let i = 0; i < 1000; i++) op.receive({ payload: { payload: { i } } });
  await all;
  const errors = [];
  op.on('call:error', (call) => errors.push(call));
  for (let i = 0; i < 5; i++) op.receive({ payload: { priority: -1 } });
  const until = Date.now() + 5000;
  while (errors.length < 5 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal(errors.length, 5);

  const json = await helper.request().get('/database-connector/cfg/metrics').expect(200);
  const m = json.body;
  assert.equal(m.provider, 'sqlite');
  assert.equal(m.state, 'connected');
  assert.equal(m.operations.insertTask.count, 1005);
  assert.equal(m.operations.insertTask.errors, 5);
  assert.ok(Math.abs(m.operations.insertTask.errorRate - 5 / 1005) < 1e-9);
  assert.ok(m.operations.insertTask.p50Ms > 0 && m.operations.insertTask.p50Ms <= m.operations.insertTask.p95Ms);
  assert.ok(m.operations.insertTask.p95Ms <= m.operations.insertTask.p99Ms);
  assert.deepEqual(m.queues, [{ queue: 'm', status: 'pending', count: 1000 }]);
  assert.equal(m.stateLog[0].state, 'connected');
  assert.ok(m.pool.max >= 1 && typeof m.pool.acquireMs.p99 === 'number');

  const text = await helper.request().get('/database-connector/cfg/metrics?format=prometheus').expect(200);
  assert.match(text.headers['content-type'], /text\/plain/);
  const families = Object.fromEntries(parsePrometheus(text.text).map((f) => [f.name, f]));
  const total = families.dbc_operations_total.metrics.find((x) => x.labels.operation === 'insertTask');
  assert.equal(Number(total.value), 1005);
  const errs = families.dbc_operation_errors_total.metrics.find((x) => x.labels.operation === 'insertTask');
  assert.equal(Number(errs.value), 5);
  // this parser folds a labelled histogram into its buckets (only insertTask ran here)
  const hist = families.dbc_operation_duration_seconds;
  assert.equal(hist.type, 'HISTOGRAM');
  assert.equal(Number(hist.metrics[0].buckets['+Inf']), 1005);
  const les = Object.keys(hist.metrics[0].buckets).filter((le) => le !== '+Inf').map(Number);
  assert.ok(les.every((le, i) => i === 0 || le > les[i - 1]), 'bucket bounds ascend');
  const depth = families.dbc_queue_tasks.metrics.find((x) => x.labels.queue === 'm' && x.labels.status === 'pending');
  assert.equal(Number(depth.value), 1000);
  assert.equal(Number(families.dbc_up.metrics[0].value), 1);

  await helper.request().get('/database-connector/nope/metrics').expect(404);
});
