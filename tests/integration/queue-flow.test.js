/**
 * The queue as flows use it: a `consume` node feeding a function that fails every third
 * task, into `updateTaskStatus` — in a real runtime on every provider — and two Node-RED
 * processes sharing one PostgreSQL queue while one of them is killed with SIGKILL.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, configFor, nodeConfigFor, spawnNodeRed, uniquePrefix, RED_DIR, pollUntil, tcpPortsOf, useNodeRedHelper } = require('../support');

const functionNode = require(require.resolve('@node-red/nodes/core/function/10-function.js', { paths: [RED_DIR] }));
const helper = useNodeRedHelper(service, { unloadEach: false });


const TASKS = 5000;
const CONCURRENCY = 8;

for (const provider of ['postgres', 'mariadb', 'sqlite']) {
  test(`${provider}: consume → fail every 3rd → updateTaskStatus completes ${TASKS} tasks, never over its concurrency`, async () => {
    const cfg = nodeConfigFor(provider);
    Object.assign(cfg.props, { retryBackoffMs: '5', retryBackoffMaxMs: '20', poolMax: '10' });
    const flow = [
      { id: 'tab', type: 'tab' },
      cfg.props,
      { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'consume', queue: 'work', concurrency: String(CONCURRENCY), leaseMs: '30000', wires: [['fn', 'emitted']] },
      {
        id: 'fn', type: 'function', z: 'tab', outputs: 1,
        func: "const n = (context.get('n') || 0) + 1; context.set('n', n);\nmsg.payload = n % 3 === 0 ? { status: 'failed', error: { code: 'E_DEMO', message: 'every third fails' } } : { status: 'completed', result: { n } };\nreturn msg;",
        wires: [['upd']],
      },
      { id: 'upd', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'updateTaskStatus', wires: [['settled']] },
      { id: 'emitted', type: 'helper', z: 'tab' },
      { id: 'settled', type: 'helper', z: 'tab' },
    ];
    // fill the queue before the consumer starts: bulk inserts through the addon
    const db = await service.open({ ...configFor(provider), tablePrefix: cfg.prefix, primary: provider === 'sqlite' ? { provider, sqliteFile: cfg.props.sqliteFile } : configFor(provider).primary });
    try {
      for (let i = 0; i < TASKS; i += 1000) {
        const batch = Array.from({ length: Math.min(1000, TASKS - i) }, (_, k) => ({ queue: 'work', payload: { i: i + k }, maxAttempts: 20 }));
        await db.execute('insertTask', batch);
      }
      let inFlight = 0;
      let maxInFlight = 0;
      let completed = 0;
      let failedAttempts = 0;
      const badShape = [];
      const done = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${completed} of ${TASKS} completed in time`)), 240000);
        const ready = () => {
          helper.getNode('emitted').on('input', (msg) => {
            // the consume message of docs/API.md#consume: the payload, and the running task
            const t = msg.task;
            if (!t || t.status !== 'running' || !/^node-red:src:\d+$/.test(t.workerId) || !t.leaseExpiresAt || msg.payload.i !== t.payload.i) badShape.push(msg);
            inFlight += 1;
            maxInFlight = Math.max(maxInFlight, inFlight);
          });
          helper.getNode('settled').on('input', (msg) => {
            inFlight -= 1;
            if (msg.payload.status === 'completed') completed += 1;
            else failedAttempts += 1;
            if (completed === TASKS) {
              clearTimeout(timer);
              resolve();
            }
          });
        };
        helper.load([dbNode, functionNode], flow, { cfg: cfg.credentials }, ready);
      });
      await done;
      assert.deepEqual(badShape.slice(0, 1), [], 'each consume msg is shaped as docs/API.md says');
      assert.ok(maxInFlight <= CONCURRENCY, `max in flight ${maxInFlight}`);
      assert.ok(maxInFlight > 1, 'the consumer ran tasks concurrently');
      assert.ok(failedAttempts >= TASKS / 3, `${failedAttempts} failed attempts`);
      const counts = await db.query(`SELECT status, count(*) AS n FROM ${cfg.prefix}tasks GROUP BY status`);
      assert.deepEqual(counts.rows.map((r) => [r.status, Number(r.n)]), [['completed', TASKS]]);
      const history = await db.query(`SELECT status, count(*) AS n FROM ${cfg.prefix}task_executions GROUP BY status ORDER BY status`);
      const byStatus = Object.fromEntries(history.rows.map((r) => [r.status, Number(r.n)]));
      assert.equal(byStatus.completed, TASKS);
      assert.equal(byStatus.failed, failedAttempts);
      assert.equal(byStatus.running, undefined);
    } finally {
      await helper.unload();
      await db.close();
    }
  });
}

test('two runtimes share one PostgreSQL queue of 20,000 tasks; one is killed with SIGKILL; every task completes exactly once', async () => {
  const prefix = uniquePrefix('kq');
  const db = await service.open({ primary: { provider: 'postgres', url: PG_URL }, tablePrefix: prefix, pool: { poolMax: 2 } });
  const TOTAL = 20000;
  for (let i = 0; i < TOTAL; i += 1000) {
    await db.execute('insertTask', Array.from({ length: 1000 }, (_, k) => ({ queue: 'shared', payload: { i: i + k } })));
  }
  const flows = [
    { id: 'tab', type: 'tab' },
    { id: 'cfgpg', type: 'database-connector-config', provider: 'postgres', tablePrefix: prefix, poolMax: '6' },
    { id: 'src', type: 'database-connector', z: 'tab', connection: 'cfgpg', operation: 'consume', queue: 'shared', concurrency: '16', leaseMs: '3000', wires: [['upd']] },
    { id: 'upd', type: 'database-connector', z: 'tab', connection: 'cfgpg', operation: 'updateTaskStatus', wires: [[]] },
  ];
  // the function-less flow works 1–40 ms on each task (a random delay node, so tasks end
  // at different times, as real work does), then completes it by setting the status on
  // the way; the work keeps tasks in flight when the runtime dies
  flows[2].wires = [['dly']];
  flows.push({ id: 'dly', type: 'delay', z: 'tab', pauseType: 'random', randomFirst: '1', randomLast: '40', randomUnits: 'milliseconds', wires: [['chg']] });
  flows.push({ id: 'chg', type: 'change', z: 'tab', rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"status":"completed"}', tot: 'json' }], wires: [['upd']] });
  const credentials = { cfgpg: { url: PG_URL } };
  const [a, b] = await Promise.all([spawnNodeRed({ flows, credentials }), spawnNodeRed({ flows, credentials })]);
  const count = async (sql) => Number((await db.query(sql)).rows[0].n);
  try {
    const until = Date.now() + 120000;
    while ((await count(`SELECT count(*) AS n FROM ${prefix}tasks WHERE status = 'completed'`)) < TOTAL / 4) {
      assert.ok(Date.now() < until, 'progress');
      await new Promise((r) => setTimeout(r, 100));
    }
    // kill `a` while it holds tasks: the completions of a busy consumer arrive in batches,
    // so there are moments with none in flight (a claim on its way)
    const heldBy = `node-red:src:${a.child.pid}`;
    const held = async () => count(`SELECT count(*) AS n FROM ${prefix}tasks WHERE status = 'running' AND worker_id = '${heldBy}'`);
    while ((await held()) === 0) {
      assert.ok(Date.now() < until, 'the first runtime holds tasks');
    }
    // its server sessions, by their client ports (read while it lives)
    const ports = tcpPortsOf(a.child.pid, Number(new URL(PG_URL).port || 5432));
    assert.ok(ports.length > 0, 'the first runtime has sessions on PostgreSQL');
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    // its server sessions end with it: a commit already sent still lands, the rest rolls back
    await pollUntil('the killed runtime\'s sessions end', async () => count(`SELECT count(*) AS n FROM pg_stat_activity WHERE client_port IN (${ports.join(', ')})`), (n) => n === 0, { ms: 30000 });
    // what it held at its death: only the lease can give these back
    const orphaned = await held();
    while ((await count(`SELECT count(*) AS n FROM ${prefix}tasks WHERE status = 'completed'`)) < TOTAL) {
      assert.ok(Date.now() < until, `completed ${await count(`SELECT count(*) AS n FROM ${prefix}tasks WHERE status = 'completed'`)} of ${TOTAL} in time`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await count(`SELECT count(*) AS n FROM ${prefix}task_executions WHERE status = 'completed'`), TOTAL);
    assert.equal(await count(`SELECT count(DISTINCT task_id) AS n FROM ${prefix}task_executions WHERE status = 'completed'`), TOTAL);
    const rerun = await count(`SELECT count(*) AS n FROM ${prefix}task_executions WHERE status = 'lease_expired'`);
    assert.ok(orphaned > 0, 'the killed runtime had tasks in flight');
    assert.equal(rerun, orphaned, 'each task the killed runtime held ran again after its lease, once');
    assert.equal(await count(`SELECT count(*) AS n FROM ${prefix}error_logs WHERE code = 'LEASE_EXPIRED'`), orphaned, 'each expired lease is a row of the error log');
    assert.equal(await count(`SELECT count(*) AS n FROM ${prefix}tasks WHERE status <> 'completed'`), 0);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    await db.query(`DROP TABLE IF EXISTS ${prefix}schedules, ${prefix}queues, ${prefix}error_logs, ${prefix}task_executions, ${prefix}task_dependencies, ${prefix}tasks, ${prefix}workflows, ${prefix}migrations`);
    await db.close();
  }
});
