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
 * taken here, the way peers.js takes them, with the helpers of benches/lib/common.js.
 * Both packages are ESM only now; Node 22.12+ require()s them.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { PG_URL, now, inFlight, paced, until, sleep } = require('../lib/common');

const QUEUES = ['single', 'bulk', 'drain', 'lat'];

/** Counts with a throw-away node-postgres client. */
async function pgCount(sql, params) {
  const { Client } = require('pg');
  const c = new Client({ connectionString: PG_URL });
  await c.connect();
  try {
    const r = await c.query(sql, params);
    return Number(r.rows[0].n);
  } finally {
    await c.end();
  }
}

/**
 * pg-boss 12. What changed since 10 and is adapted here: `PgBoss` is a named export of
 * an ES module; `insert(name, jobs)` takes the queue apart from the jobs;
 * `offWork(name, {id, wait})`; `stop()` has no `wait` (it always waits). New, and used
 * because it is its documented fast path for latency: LISTEN/NOTIFY wake-ups
 * (`useListenNotify` + a queue created with `notify: true`), so a worker no longer waits
 * out its 0.5 s poll. OpenTelemetry (new, on by default, a no-op without an SDK) is
 * turned off: pg-boss 10 had none.
 */
class PgBossNewest {
  constructor(schema = 'pgboss12') {
    this.schema = schema;
    this.warned = new Set();
  }

  async open() {
    const { PgBoss } = require('pg-boss');
    this.boss = new PgBoss({
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

  async clear() {
    const db = this.boss.getDb();
    await db.executeSql(`DELETE FROM ${this.schema}.job WHERE name IN ('single', 'bulk', 'drain', 'lat')`);
    // as in peers.js: the dead rows go too (the CI server runs with autovacuum off)
    await db.executeSql(`VACUUM ANALYZE ${this.schema}.job`);
  }

  count(queue, state) {
    return pgCount(`SELECT count(*) AS n FROM ${this.schema}.job WHERE name = $1 AND state = $2`, [queue, state]);
  }

  async single(total, width) {
    const ms = await inFlight(total, width, (i) => this.boss.send('single', { n: i }));
    const n = await this.count('single', 'created');
    return { ms, verified: n === total, detail: { created: n } };
  }

  async bulk(total, per) {
    const ms = await inFlight(Math.ceil(total / per), 1, (b) =>
      this.boss.insert('bulk', Array.from({ length: Math.min(per, total - b * per) }, (_, i) => ({ data: { n: b * per + i } }))));
    const n = await this.count('bulk', 'created');
    return { ms, verified: n === total, detail: { created: n } };
  }

  /** fetch 1000 + complete those 1000 (its fastest documented way), two loops, as in peers.js. */
  async drain(total) {
    for (let b = 0; b < total; b += 1000) {
      await this.boss.insert('drain', Array.from({ length: Math.min(1000, total - b) }, (_, i) => ({ data: { n: b + i } })));
    }
    let first = 0;
    let done = 0;
    const loop = async () => {
      for (;;) {
        const jobs = await this.boss.fetch('drain', { batchSize: 1000 });
        if (!jobs || !jobs.length) {
          if (done >= total) return;
          await sleep(1);
          continue;
        }
        if (!first) first = now();
        await this.boss.complete('drain', jobs.map((j) => j.id));
        done += jobs.length;
      }
    };
    await Promise.all([loop(), loop()]);
    const ms = now() - first;
    const n = await this.count('drain', 'completed');
    return { ms, verified: n === total, detail: { completed: n } };
  }

  /**
   * send at `rate`/s; work() woken by NOTIFY, with the shortest polling intervals (0.5 s)
   * as the backstop and a batch large enough for the rate. Stopped by its id.
   */
  async latency(total, rate) {
    const sent = new Map();
    const samples = [];
    this.failure = null;
    const opts = { pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5, batchSize: 1000 };
    const id = await this.boss.work('lat', opts, async (jobs) => {
      const t = now();
      for (const j of jobs) samples.push(t - sent.get(j.data.i));
    });
    let warm = 0;
    try {
      sent.set(-1, now());
      await sleep(500);
      for (let k = 0; k < 5; k++) await this.boss.send('lat', { i: -1 });
      await until(() => samples.length >= 5 || this.failure, 30000, 'pg-boss warm-up jobs');
      if (this.failure) throw this.failure;
      warm = samples.splice(0).length;
      await paced(total, rate, (i) => {
        sent.set(i, now());
        return this.boss.send('lat', { i });
      });
      await until(() => samples.length >= total || this.failure, 60000, 'pg-boss latency jobs');
      if (this.failure) throw this.failure;
    } finally {
      await this.boss.offWork('lat', { id, wait: true });
    }
    await until(async () => (await this.count('lat', 'completed')) === total + warm, 30000, 'pg-boss latency jobs to complete');
    return { samples, verified: samples.length === total && warm === 5 && samples.every(Number.isFinite) };
  }
}

/**
 * graphile-worker 0.18: the same API as 0.17 for all this (it is ESM only now and needs
 * Node 22.18), so the same calls and settings as peers.js, in schema graphile_worker_18.
 */
class GraphileNewest {
  constructor(schema = 'graphile_worker_18') {
    this.schema = schema;
  }

  async open() {
    const { makeWorkerUtils, Logger } = require('graphile-worker');
    this.logger = new Logger(() => () => {});
    this.utils = await makeWorkerUtils({ connectionString: PG_URL, schema: this.schema, logger: this.logger });
    await this.utils.migrate();
  }

  async close() {
    await this.utils.release();
  }

  async clear() {
    const s = this.schema;
    await this.utils.withPgClient((c) => c.query(`DELETE FROM ${s}._private_jobs WHERE task_id IN (SELECT id FROM ${s}._private_tasks WHERE identifier IN ('single', 'bulk', 'drain', 'lat'))`));
    await this.utils.withPgClient((c) => c.query(`VACUUM ANALYZE ${s}._private_jobs, ${s}._private_job_queues`));
  }

  count(task) {
    return pgCount(`SELECT count(*) AS n FROM ${this.schema}.jobs WHERE task_identifier = $1`, [task]);
  }

  async single(total, width) {
    const ms = await inFlight(total, width, (i) => this.utils.addJob('single', { n: i }));
    const n = await this.count('single');
    return { ms, verified: n === total, detail: { queued: n } };
  }

  async bulk(total, per) {
    const ms = await inFlight(Math.ceil(total / per), 1, (b) =>
      this.utils.addJobs(Array.from({ length: Math.min(per, total - b * per) }, (_, i) => ({ identifier: 'bulk', payload: { n: b * per + i } }))));
    const n = await this.count('bulk');
    return { ms, verified: n === total, detail: { queued: n } };
  }

  /** Its documented fast path: local queue of 500, batched completions, 24 concurrent jobs. */
  runner(taskList) {
    const { run } = require('graphile-worker');
    return run({
      connectionString: PG_URL,
      schema: this.schema,
      concurrency: 24,
      maxPoolSize: 10,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: this.logger,
      taskList,
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    });
  }

  async drain(total) {
    for (let b = 0; b < total; b += 1000) {
      await this.utils.addJobs(Array.from({ length: Math.min(1000, total - b) }, (_, i) => ({ identifier: 'drain', payload: { n: b + i } })));
    }
    let first = 0;
    let started = 0;
    const runner = await this.runner({
      drain: async () => {
        if (!first) first = now();
        started += 1;
      },
    });
    await until(() => started >= total, 600000, 'graphile-worker to start every job', 20);
    // done when every job is gone from the table (completed jobs are deleted)
    await until(async () => (await this.count('drain')) === 0, 600000, 'graphile-worker to complete every job', 5);
    const ms = now() - first;
    await runner.stop();
    return { ms, verified: started === total, detail: { started, left: 0 } };
  }

  /** addJob at `rate`/s while the runner (LISTEN/NOTIFY, no local queue) takes them. */
  async latency(total, rate) {
    const sent = new Map();
    const samples = [];
    const { run } = require('graphile-worker');
    const runner = await run({
      connectionString: PG_URL, schema: this.schema, concurrency: 16, noHandleSignals: true, pollInterval: 1000, logger: this.logger,
      taskList: { lat: async (p) => { samples.push(now() - sent.get(p.i)); } },
    });
    let warm = 0;
    try {
      sent.set(-1, now());
      await sleep(500);
      for (let k = 0; k < 5; k++) await this.utils.addJob('lat', { i: -1 });
      await until(() => samples.length >= 5, 30000, 'graphile warm-up jobs');
      warm = samples.splice(0).length;
      await paced(total, rate, (i) => {
        sent.set(i, now());
        return this.utils.addJob('lat', { i });
      });
      await until(() => samples.length >= total, 30000, 'graphile latency jobs');
      await until(async () => (await this.count('lat')) === 0, 30000, 'graphile latency jobs to complete');
    } finally {
      await runner.stop();
    }
    return { samples, verified: samples.length === total && warm === 5 };
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
