/**
 * The peers' newest majors, which need Node 22 (pg-boss 12: >= 22.12, graphile-worker
 * 0.18: >= 22.18), doing the same work as their Node 20 versions in benches/lib/peers.js
 * with the same fastest documented settings, in schemas of their own (pgboss12,
 * graphile_worker_18) so they never touch the Node 20 versions' tables.
 *
 * Runs under the Node 22 of benches/newest/node_modules/node, as a child process of
 * benches/run.js (Node 20): benches/lib/newest.js forks this file once per system
 * (`peers.js pg-boss` or `peers.js graphile-worker`) and sends `{id, method, args}`; the
 * answer is `{id, result}` or `{id, error}`. Times, row counts and latency samples are
 * taken here by the classes of benches/lib/peers.js, which these subclass.
 * Both packages are ESM only now; Node 22.12+ require()s them.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { PG_URL } = require('../lib/common');
const { PgBoss, Graphile } = require('../lib/peers');

const QUEUES = ['single', 'bulk', 'drain', 'lat'];

/**
 * pg-boss 12: benches/lib/peers.js's PgBoss with the calls whose form changed since 10.
 * `PgBoss` is a named export of an ES module; `insert(name, jobs)` takes the queue apart
 * from the jobs; `offWork(name, {id, wait})`; `stop()` has no `wait` (it always waits).
 * New, and used because it is its documented fast path for latency: LISTEN/NOTIFY
 * wake-ups (`useListenNotify` + a queue created with `notify: true`), so a worker no
 * longer waits out its 0.5 s poll. OpenTelemetry (new, on by default, a no-op without an
 * SDK) is turned off: pg-boss 10 had none.
 */
class PgBossNewest extends PgBoss {
  constructor(schema = 'pgboss12') {
    super(schema);
    this.warned = new Set();
  }

  async open() {
    const { PgBoss: Boss } = require('pg-boss');
    this.boss = new Boss({
      connectionString: PG_URL, schema: this.schema, max: 16, supervise: false, schedule: false, migrate: true,
      useListenNotify: true, openTelemetry: { enabled: false },
    });
    this.boss.on('error', (e) => { this.failure = e; });
    // e.g. "LISTEN/NOTIFY unavailable, polling only": said once, it explains a latency figure
    this.boss.on('warning', (w) => {
      const key = (w && w.data && w.data.type) || (w && w.message);
      if (this.warned.has(key)) return;
      this.warned.add(key);
      console.error(`# pg-boss ${versions().pgBoss} warning: ${w && w.message}`);
    });
    await this.boss.start();
    for (const q of QUEUES) await this.boss.createQueue(q, q === 'lat' ? { notify: true } : {});
    // createQueue leaves an existing queue as it is
    await this.boss.updateQueue('lat', { notify: true });
  }

  async close() {
    await this.boss.stop({ graceful: false, timeout: 1000 });
  }

  insertJobs(name, jobs) {
    return this.boss.insert(name, jobs);
  }

  /** Woken by NOTIFY, with the shortest polling intervals (0.5 s) as the backstop. */
  workOptions() {
    return { pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5, batchSize: 1000 };
  }

  stopWorker(id) {
    return this.boss.offWork('lat', { id, wait: true });
  }
}

/**
 * graphile-worker 0.18: the same API as 0.17 for all this (it is ESM only now and needs
 * Node 22.18), so benches/lib/peers.js's Graphile with this directory's module, in
 * schema graphile_worker_18.
 */
class GraphileNewest extends Graphile {
  constructor(schema = 'graphile_worker_18') {
    super({ lib: () => require('graphile-worker'), schema });
  }
}

const SYSTEMS = { 'pg-boss': PgBossNewest, 'graphile-worker': GraphileNewest };

/** What this child runs: its Node and the packages it loads (from their package.json). */
function versions() {
  const v = (pkg) => JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  return { node: process.version, pgBoss: v('pg-boss'), graphileWorker: v('graphile-worker'), pg: v('pg') };
}

function serve(key) {
  const System = SYSTEMS[key];
  if (!System) throw new Error(`unknown system '${key}' (one of: ${Object.keys(SYSTEMS).join(', ')})`);
  const system = new System();
  const methods = new Set(['open', 'close', 'clear', 'single', 'bulk', 'drain', 'latency']);
  process.on('message', async ({ id, method, args }) => {
    try {
      if (!methods.has(method)) throw new Error(`no method '${method}'`);
      process.send({ id, result: await system[method](...(args || [])) });
    } catch (err) {
      process.send({ id, error: { message: err.message, stack: err.stack } });
    }
  });
  // the parent is gone (or done with us): nothing is left to answer
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: versions() });
}

if (require.main === module) serve(process.argv[2]);

module.exports = { PgBossNewest, GraphileNewest, versions };
