/**
 * The importable examples (examples/*.json, Import ▸ Examples in the editor): no endpoint
 * or dashboard widget in them runs SQL or picks an operation from a request, they share
 * one config node (so importing several makes one connection, not several on one SQLite
 * file), and all deployed together into a real Node-RED work on that one connection.
 * (The Dashboard 2.0 example's page in a browser: dashboard.test.js.)
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { root, spawnNodeRed, pollUntil } = require('../support');

const EXAMPLES = fs
  .readdirSync(path.join(root, 'examples'))
  .filter((f) => f.endsWith('.json'))
  .map((file) => ({ file, flows: JSON.parse(fs.readFileSync(path.join(root, 'examples', file), 'utf8')) }));

/** Node types that take input from outside the runtime. */
const FROM_OUTSIDE = new Set(['http in', 'websocket in', 'tcp in', 'udp in', 'mqtt in']);
/** Dashboard 2.0 widgets (`ui-*`) send what a browser sends them: outside input too. */
const fromOutside = (n) => FROM_OUTSIDE.has(n.type) || n.type.startsWith('ui-');

/** Every node a message from `starts` can reach along the wires (link nodes included). */
function reachable(flows, starts) {
  const byId = new Map(flows.map((n) => [n.id, n]));
  const seen = new Set();
  const todo = [...starts];
  while (todo.length) {
    const n = todo.pop();
    if (!n || seen.has(n.id)) continue;
    seen.add(n.id);
    const next = [...(n.wires || []).flat(), ...(n.type === 'link out' ? n.links || [] : [])];
    for (const id of next) todo.push(byId.get(id));
  }
  return [...seen].map((id) => byId.get(id));
}

/**
 * What in `flows` lets a request run SQL of its own or choose the operation: a `query`
 * node without SQL of its own (it runs msg.topic) or an operation node set to `msg`,
 * reachable from a node that takes outside input.
 */
function unsafeFromRequests(flows) {
  const starts = flows.filter(fromOutside);
  return reachable(flows, starts)
    .filter((n) => n.type === 'database-connector')
    .filter((n) => n.operation === 'msg' || !n.operation || (n.operation === 'query' && !(typeof n.sql === 'string' && n.sql.trim())))
    .map((n) => `${n.name || n.id} (${n.operation || 'msg'})`);
}

test('no example runs SQL or chooses the operation from a request', () => {
  assert.ok(EXAMPLES.some(({ flows }) => flows.some((n) => FROM_OUTSIDE.has(n.type))), 'an example has endpoints to check');
  assert.ok(EXAMPLES.some(({ flows }) => flows.some((n) => n.type === 'ui-table')), 'an example has dashboard widgets to check');
  for (const { file, flows } of EXAMPLES) assert.deepEqual(unsafeFromRequests(flows), [], file);
  // the check finds what it looks for: an endpoint whose SQL comes from the request body
  const open = [
    { id: 'h', type: 'http in', url: '/sql', method: 'post', wires: [['f']] },
    { id: 'f', type: 'function', func: 'msg.topic = msg.payload.sql; return msg;', wires: [['q']] },
    { id: 'q', type: 'database-connector', name: 'run SQL', operation: 'query', sql: '', wires: [[]] },
  ];
  assert.deepEqual(unsafeFromRequests(open), ['run SQL (query)']);
  // and one whose operation comes from a dashboard widget
  const widget = [
    { id: 'w', type: 'ui-text-input', wires: [['c']] },
    { id: 'c', type: 'change', wires: [['o']] },
    { id: 'o', type: 'database-connector', name: 'any operation', operation: 'msg', wires: [[]] },
  ];
  assert.deepEqual(unsafeFromRequests(widget), ['any operation (msg)']);
});

test('the examples share one config node, so importing several makes one connection', () => {
  const configs = EXAMPLES.map(({ file, flows }) => ({ file, nodes: flows.filter((n) => n.type === 'database-connector-config') }));
  for (const c of configs) assert.equal(c.nodes.length, 1, `${c.file}: one config node`);
  for (const c of configs.slice(1)) assert.deepEqual(c.nodes[0], configs[0].nodes[0], `${c.file} and ${configs[0].file}`);
  const owner = new Map();
  for (const { file, flows } of EXAMPLES) {
    for (const n of flows.filter((x) => x.type !== 'database-connector-config')) {
      assert.ok(!owner.has(n.id), `node id ${n.id} is in ${owner.get(n.id)} and ${file}`);
      owner.set(n.id, file);
    }
  }
});

test('all examples deployed together: one connection, and the jobs of one seen through the others', { timeout: 90000 }, async () => {
  assert.ok(EXAMPLES.length >= 3, 'three examples to import together');
  const flows = [];
  const ids = new Set();
  for (const ex of EXAMPLES) {
    for (const n of ex.flows) {
      if (!ids.has(n.id)) flows.push(n);
      ids.add(n.id);
    }
  }
  const red = await spawnNodeRed({ flows });
  try {
    await red.waitFor(/sqlite: connected/);
    // queue-and-workflow.json: its inject node adds a job to the queue "jobs"
    const injected = await red.request('POST', '/inject/qw_inj_one');
    assert.equal(injected.status, 200, injected.text);
    // task-queue-basics.json lists the same tables: the job is there
    const listed = await pollUntil(
      'the injected job in GET /demo/tasks',
      async () => (await red.request('GET', '/demo/tasks')).body,
      (tasks) => Array.isArray(tasks) && tasks.some((t) => t.queue === 'jobs'),
    );
    assert.ok(listed.length >= 1);
    // the parameterized query takes only a value from the request
    const counts = await red.request('GET', '/demo/counts?queue=jobs');
    assert.equal(counts.status, 200, counts.text);
    assert.ok(Array.isArray(counts.body) && counts.body.reduce((sum, r) => sum + Number(r.n), 0) >= 1, counts.text);
    const none = await red.request('GET', `/demo/counts?queue=${encodeURIComponent("jobs' OR '1'='1")}`);
    assert.deepEqual(none.body, [], 'a quote in the value is a value, not SQL');
    // the endpoint that ran SQL from the request body is gone
    assert.equal((await red.request('POST', '/demo/query', { sql: 'SELECT 1' })).status, 404);
    // dashboard-2.json: its page is served, and the failed task its inject makes is in
    // the tables the other examples read
    assert.equal((await red.poll('/dashboard/queues')).status, 200);
    assert.equal((await red.request('POST', '/inject/dash_inj_fail')).status, 200);
    await pollUntil(
      'the dashboard example\'s failed task in GET /demo/tasks',
      async () => (await red.request('GET', '/demo/tasks')).body,
      (tasks) => Array.isArray(tasks) && tasks.some((t) => t.name === 'broken-report' && t.status === 'failed'),
    );
    // its chart's query and table's listTasks (every 2 s) run without an error
    assert.doesNotMatch(red.log(), /\[error\]/);
    // one config node, one connection
    assert.equal(red.log().match(/sqlite: connected/g).length, 1, red.log());
  } finally {
    await red.stop();
  }
});
