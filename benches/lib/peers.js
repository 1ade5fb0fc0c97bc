/**
 * The systems we compare with, each doing the same work as ours with its own fastest
 * documented settings: pg-boss 10 (send / insert / fetch+complete in batches / work),
 * graphile-worker 0.17 (addJob / addJobs / runner with a local queue and batched
 * completions), node-postgres (prepared INSERT and the equivalent claim SQL on a copy
 * of our tasks table), and mysql2 as the raw reference on MariaDB.
 */
'use strict';

const crypto = require('crypto');
const { PG_URL, MY_URL, now, inFlight, paced, until, sleep } = require('./common');

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
 * pg-boss 10. The Node 22 child (benches/newest/peers.js) runs pg-boss 12 as a subclass:
 * its schema, and the calls whose form changed (`open`, `close`, `insertJobs`,
 * `workOptions`, `stopWorker`), are the only parts that differ.
 */
class PgBoss {
  constructor(schema = 'pgboss') {
    this.name = 'pg-boss';
    this.schema = schema;
  }

  async open() {
    const Boss = require('pg-boss');
    this.boss = new Boss({ connectionString: PG_URL, max: 16, supervise: false, schedule: false, migrate: true });
    this.boss.on('error', (e) => { this.failure = e; });
    await this.boss.start();
    for (const q of ['single', 'bulk', 'drain', 'lat']) await this.boss.createQueue(q);
  }

  async close() {
    await this.boss.stop({ graceful: false, wait: true, timeout: 1000 });
  }

  /** Queues `jobs` (`{data}` each) on queue `name` in one statement. */
  insertJobs(name, jobs) {
    return this.boss.insert(jobs.map((j) => ({ name, ...j })));
  }

  /** work()'s options for the latency run: its shortest polling interval, a batch larger than the rate. */
  workOptions() {
    return { pollingIntervalSeconds: 0.5, batchSize: 1000 };
  }

  /**
   * Stops the latency worker by its id: pg-boss 10's `offWork('<string>')` takes a queue
   * *name*, so `offWork(id)` stopped nothing, and the worker of one repetition went on
   * taking (about half of) the next one's jobs into its own samples.
   */
  stopWorker(id) {
    return this.boss.offWork({ id });
  }

  async clear() {
    await this.boss.getDb().executeSql(`DELETE FROM ${this.schema}.job WHERE name IN ('single', 'bulk', 'drain', 'lat')`);
    // the dead rows go too (the CI server runs with autovacuum off): a bloated job table
    // slows every fetch, and our tables are truncated and vacuumed the same way
    await this.boss.getDb().executeSql(`VACUUM ANALYZE ${this.schema}.job`);
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
      this.insertJobs('bulk', Array.from({ length: Math.min(per, total - b * per) }, (_, i) => ({ data: { n: b * per + i } }))));
    const n = await this.count('bulk', 'created');
    return { ms, verified: n === total, detail: { created: n } };
  }

  /** fetch 1000 + complete those 1000 (pg-boss's fastest documented way), two loops. */
  async drain(total) {
    for (let b = 0; b < total; b += 1000) {
      await this.insertJobs('drain', Array.from({ length: Math.min(1000, total - b) }, (_, i) => ({ data: { n: b + i } })));
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
   * send at `rate`/s; work() with `workOptions()` (a full batch fetches again at once, a
   * short one waits the interval). The worker is stopped by its id whatever happens.
   */
  async latency(total, rate) {
    const sent = new Map();
    const samples = [];
    this.failure = null;
    const id = await this.boss.work('lat', this.workOptions(), async (jobs) => {
      const t = now();
      for (const j of jobs) samples.push(t - sent.get(j.data.i));
    });
    let warm = 0;
    try {
      // warm-up, as for the others: the worker has fetched and completed before timing
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
      await this.stopWorker(id);
    }
    await until(async () => (await this.count('lat', 'completed')) === total + warm, 30000, 'pg-boss latency jobs to complete');
    // a sample of another run's job would have no send time here (NaN)
    return { samples, verified: samples.length === total && warm === 5 && samples.every(Number.isFinite) };
  }
}

/**
 * graphile-worker 0.17. The Node 22 child runs 0.18 with this class: the same API for all
 * of this, given its own module (`lib`) and schema.
 */
class Graphile {
  /**
   * @param {object} [opts]
   * @param {function(): object} [opts.lib] loads the graphile-worker module to use
   * @param {string} [opts.schema] its schema, default `graphile_worker`
   */
  constructor({ lib = () => require('graphile-worker'), schema = 'graphile_worker' } = {}) {
    this.name = 'graphile-worker';
    this.lib = lib;
    this.schema = schema;
  }

  async open() {
    const { makeWorkerUtils, Logger } = this.lib();
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
    // as for pg-boss: without this, the dead rows of earlier runs (autovacuum is off on
    // the CI server) made its get_job scan hundreds of MB and its latency seconds
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
  runner(taskList, extra = {}) {
    const { run } = this.lib();
    return run({
      connectionString: PG_URL,
      schema: this.schema,
      concurrency: 24,
      maxPoolSize: 10,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: this.logger,
      taskList,
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0, ...extra } },
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
    const { run } = this.lib();
    const runner = await run({
      connectionString: PG_URL, schema: this.schema, concurrency: 16, noHandleSignals: true, pollInterval: 1000, logger: this.logger,
      taskList: { lat: async (p) => { samples.push(now() - sent.get(p.i)); } },
    });
    // warm-up: the runner's LISTEN is up and its connections are open before timing
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

/**
 * node-postgres doing the equivalent SQL on a copy of our PostgreSQL tasks table (made
 * by our migrations under its own prefix): a prepared single-row INSERT, an INSERT of
 * 1,000 rows from arrays, and claim (the same CTE with SKIP LOCKED, 100 at a time) +
 * complete (one UPDATE per claimed batch) without history rows.
 */
class NodePostgres {
  constructor(prefix = 'bpg_') {
    this.name = 'node-postgres';
    this.p = prefix;
  }

  async open(makeSchema) {
    await makeSchema('postgres', this.p);
    const { Pool } = require('pg');
    this.pool = new Pool({ connectionString: PG_URL, max: 16 });
  }

  close() { return this.pool.end(); }

  async clear() {
    await this.pool.query(`TRUNCATE ${this.p}task_dependencies, ${this.p}task_executions, ${this.p}error_logs, ${this.p}tasks, ${this.p}workflows`);
  }

  count(queue, status) {
    return pgCount(`SELECT count(*) AS n FROM ${this.p}tasks WHERE queue = $1 AND status = $2`, [queue, status]);
  }

  async single(total, width) {
    const text = `INSERT INTO ${this.p}tasks (id, queue, payload, status, priority, run_at, max_attempts, attempt_budget, created_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, 5, 5, $4, $4)`;
    const ms = await inFlight(total, width, (i) => this.pool.query({ name: 'bench-insert', text, values: [crypto.randomUUID(), 'single', { n: i }, new Date()] }));
    const n = await this.count('single', 'pending');
    return { ms, verified: n === total, detail: { pending: n } };
  }

  insertMany(queue, from, n) {
    const ids = [];
    const payloads = [];
    for (let i = 0; i < n; i++) {
      ids.push(crypto.randomUUID());
      payloads.push(JSON.stringify({ n: from + i }));
    }
    return this.pool.query({
      name: 'bench-insert-many',
      text: `INSERT INTO ${this.p}tasks (id, queue, payload, status, priority, run_at, max_attempts, attempt_budget, created_at, updated_at) SELECT u.id, $1, u.p, 'pending', 0, $4, 5, 5, $4, $4 FROM unnest($2::uuid[], $3::jsonb[]) AS u(id, p)`,
      values: [queue, ids, payloads, new Date()],
    });
  }

  async bulk(total, per) {
    const ms = await inFlight(Math.ceil(total / per), 1, (b) => this.insertMany('bulk', b * per, Math.min(per, total - b * per)));
    const n = await this.count('bulk', 'pending');
    return { ms, verified: n === total, detail: { pending: n } };
  }

  async drain(total) {
    for (let b = 0; b < total; b += 1000) await this.insertMany('drain', b, Math.min(1000, total - b));
    const claim = `WITH c AS (SELECT id FROM ${this.p}tasks WHERE queue = $1 AND status = 'pending' AND deps_pending = 0 AND run_at <= now() ORDER BY priority DESC, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED) UPDATE ${this.p}tasks t SET status = 'running', attempts = t.attempts + 1, worker_id = 'w', lease_expires_at = now() + interval '60 seconds', started_at = now(), updated_at = now() FROM c WHERE t.id = c.id RETURNING t.id`;
    const complete = `UPDATE ${this.p}tasks SET status = 'completed', worker_id = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now() WHERE id = ANY($1::uuid[]) AND status = 'running'`;
    let first = 0;
    let done = 0;
    const worker = async () => {
      for (;;) {
        const r = await this.pool.query({ name: 'bench-claim', text: claim, values: ['drain'] });
        if (!r.rows.length) {
          if (done >= total) return;
          await sleep(1);
          continue;
        }
        if (!first) first = now();
        await this.pool.query({ name: 'bench-complete', text: complete, values: [r.rows.map((x) => x.id)] });
        done += r.rows.length;
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const ms = now() - first;
    const n = await this.count('drain', 'completed');
    return { ms, verified: n === total, detail: { completed: n } };
  }
}

/** mysql2 on MariaDB: the same three kinds of SQL on a copy of our MariaDB tasks table. */
class Mysql2 {
  constructor(prefix = 'bmy_') {
    this.name = 'mysql2 (mariadb)';
    this.p = prefix;
  }

  async open(makeSchema) {
    await makeSchema('mariadb', this.p);
    const mysql = require('mysql2/promise');
    this.pool = mysql.createPool({ uri: MY_URL, connectionLimit: 16, timezone: 'Z' });
  }

  close() { return this.pool.end(); }

  async clear() {
    const c = await this.pool.getConnection();
    try {
      await c.query('SET FOREIGN_KEY_CHECKS = 0');
      for (const t of ['task_dependencies', 'task_executions', 'error_logs', 'tasks', 'workflows']) await c.query(`TRUNCATE ${this.p}${t}`);
      await c.query('SET FOREIGN_KEY_CHECKS = 1');
    } finally {
      c.release();
    }
  }

  async count(queue, status) {
    const [rows] = await this.pool.query(`SELECT count(*) AS n FROM ${this.p}tasks WHERE queue = ? AND status = ?`, [queue, status]);
    return Number(rows[0].n);
  }

  async single(total, width) {
    const sql = `INSERT INTO ${this.p}tasks (id, queue, payload, status, priority, run_at, max_attempts, attempt_budget, created_at, updated_at) VALUES (?, ?, ?, 'pending', 0, NOW(3), 5, 5, NOW(3), NOW(3))`;
    const ms = await inFlight(total, width, (i) => this.pool.execute(sql, [crypto.randomUUID(), 'single', JSON.stringify({ n: i })]));
    const n = await this.count('single', 'pending');
    return { ms, verified: n === total, detail: { pending: n } };
  }

  async insertRows(queue, from, n) {
    const rows = [];
    const ts = new Date();
    for (let i = 0; i < n; i++) rows.push([crypto.randomUUID(), queue, JSON.stringify({ n: from + i }), 'pending', 0, ts, 5, 5, ts, ts]);
    await this.pool.query(`INSERT INTO ${this.p}tasks (id, queue, payload, status, priority, run_at, max_attempts, attempt_budget, created_at, updated_at) VALUES ?`, [rows]);
  }

  async bulk(total, per) {
    const ms = await inFlight(Math.ceil(total / per), 1, (b) => this.insertRows('bulk', b * per, Math.min(per, total - b * per)));
    const n = await this.count('bulk', 'pending');
    return { ms, verified: n === total, detail: { pending: n } };
  }

  /** Claim 100 under READ COMMITTED with SKIP LOCKED, then one UPDATE to complete them; 4 workers. */
  async drain(total) {
    for (let b = 0; b < total; b += 1000) await this.insertRows('drain', b, Math.min(1000, total - b));
    let first = 0;
    let done = 0;
    const worker = async () => {
      const c = await this.pool.getConnection();
      try {
        await c.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
        for (;;) {
          await c.query('START TRANSACTION');
          const [rows] = await c.query(`SELECT id FROM ${this.p}tasks WHERE queue = 'drain' AND status = 'pending' AND deps_pending = 0 AND run_at <= NOW(3) ORDER BY neg_priority, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED`);
          if (!rows.length) {
            await c.query('COMMIT');
            if (done >= total) return;
            await sleep(1);
            continue;
          }
          if (!first) first = now();
          const ids = rows.map((r) => r.id);
          await c.query(`UPDATE ${this.p}tasks SET status = 'running', attempts = attempts + 1, worker_id = 'w', lease_expires_at = NOW(3) + INTERVAL 60 SECOND, started_at = NOW(3), updated_at = NOW(3) WHERE id IN (?)`, [ids]);
          await c.query('COMMIT');
          await c.query(`UPDATE ${this.p}tasks SET status = 'completed', worker_id = NULL, lease_expires_at = NULL, finished_at = NOW(3), updated_at = NOW(3) WHERE id IN (?) AND status = 'running'`, [ids]);
          done += ids.length;
        }
      } finally {
        c.release();
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const ms = now() - first;
    const n = await this.count('drain', 'completed');
    return { ms, verified: n === total, detail: { completed: n } };
  }
}

module.exports = { PgBoss, Graphile, NodePostgres, Mysql2 };
