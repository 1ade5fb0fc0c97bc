/**
 * This package measured two ways: the addon called directly (database-service.js, as a
 * JS library would), and the database-connector node in a real Node-RED runtime
 * (embedded with node-red's own init/start: msg in → msg out, bench nodes count what comes out).
 */
'use strict';

const os = require('os');
const fs = require('fs');
const path = require('path');
const { PG_URL, MY_URL, now, inFlight, paced, until, sleep } = require('./common');

const root = path.resolve(__dirname, '..', '..');
const service = require(path.join(root, 'nodes/database-connector/database-service'));

let sqliteDir = null;
function sqliteFile(tag) {
  if (!sqliteDir) sqliteDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-bench-'));
  return path.join(sqliteDir, `${tag}.db`);
}

/**
 * The peers (node-postgres underneath pg-boss and graphile-worker) talk plain TCP unless
 * told otherwise; the connector's default is `sslmode=prefer`, which takes TLS when the
 * server offers it (Debian's PostgreSQL does). Every system runs on the same transport
 * here; docs/PERFORMANCE.md shows what TLS costs on loopback.
 * @param {string} url
 * @returns {string}
 */
function plaintext(url) {
  return /[?&]sslmode=/.test(url) ? url : `${url}${url.includes('?') ? '&' : '?'}sslmode=disable`;
}

/** Connector config for a provider and table prefix (`url`: another PostgreSQL URL). */
function connectorConfig(provider, prefix, poolMax = 10, url = undefined) {
  const primary = provider === 'postgres' ? { provider, url: url || plaintext(PG_URL) }
    : provider === 'mariadb' ? { provider, url: MY_URL }
      : { provider: 'sqlite', sqliteFile: sqliteFile(prefix) };
  return { primary, tablePrefix: prefix, pool: { poolMax }, retentionDays: 0 };
}

/**
 * Empties the connector's tables (between runs, never timed) and counts tasks by status
 * through the addon's own `query` (every provider the same way).
 */
class Tables {
  constructor(db, prefix) {
    this.db = db;
    this.p = prefix;
  }

  async clear() {
    const p = this.p;
    if (this.db.provider === 'postgres') {
      await this.db.query(`TRUNCATE ${p}task_dependencies, ${p}task_executions, ${p}error_logs, ${p}tasks, ${p}workflows`);
      await this.db.query(`VACUUM ANALYZE ${p}tasks`).catch(() => {});
    } else {
      for (const t of ['task_dependencies', 'task_executions', 'error_logs', 'tasks', 'workflows']) await this.db.query(`DELETE FROM ${p}${t}`);
    }
  }

  /** @returns {Promise<Record<string, number>>} tasks by status */
  async byStatus(queue) {
    const r = await this.db.query(`SELECT status, count(*) AS n FROM ${this.p}tasks WHERE queue = :q GROUP BY status`, { q: queue });
    const out = {};
    for (const row of r.rows) out[row.status] = Number(row.n);
    return out;
  }

  async executions(status) {
    const r = await this.db.query(`SELECT count(*) AS n FROM ${this.p}task_executions WHERE status = :s`, { s: status });
    return Number(r.rows[0].n);
  }
}

/** The addon called directly. */
class Addon {
  constructor(provider, opts = {}) {
    this.provider = provider;
    this.name = `addon (${provider})`;
    this.prefix = opts.prefix || `bad_${provider.slice(0, 2)}_`;
    this.poolMax = opts.poolMax || 10;
    this.url = opts.url;
  }

  async open() {
    this.db = await service.open(connectorConfig(this.provider, this.prefix, this.poolMax, this.url));
    this.tables = new Tables(this.db, this.prefix);
  }

  async close() {
    if (this.db) await this.db.close();
  }

  clear() { return this.tables.clear(); }

  async single(total, width, opts = {}) {
    const ms = await inFlight(total, width, (i) => this.db.execute('insertTask', { queue: 'single', payload: { n: i } }, opts));
    const c = await this.tables.byStatus('single');
    return { ms, verified: c.pending === total, detail: c };
  }

  async bulk(total, per) {
    const batches = Math.ceil(total / per);
    const ms = await inFlight(batches, 1, (b) => {
      const n = Math.min(per, total - b * per);
      return this.db.execute('insertTask', Array.from({ length: n }, (_, i) => ({ queue: 'bulk', payload: { n: b * per + i } })));
    });
    const c = await this.tables.byStatus('bulk');
    return { ms, verified: c.pending === total, detail: c };
  }

  /** Queues `total` tasks for drain() (not timed). */
  async fill(queue, total) {
    for (let b = 0; b < total; b += 1000) {
      const n = Math.min(1000, total - b);
      await this.db.execute('insertTask', Array.from({ length: n }, (_, i) => ({ queue, payload: { n: b + i } })));
    }
  }

  /** Claim + complete: two claimers taking 500 at a time, each completion its own call. */
  async drain(total) {
    await this.fill('drain', total);
    let done = 0;
    let first = 0;
    const worker = async () => {
      for (;;) {
        const r = await this.db.execute('claimTasks', { queue: 'drain', limit: 500, leaseMs: 60000 });
        if (!first && r.value.length) first = now();
        if (!r.value.length) {
          if (done >= total) return;
          await sleep(1);
          continue;
        }
        await Promise.all(r.value.map((t) => this.db.execute('updateTaskStatus', { id: t.id, status: 'completed', workerId: t.workerId })));
        done += r.value.length;
      }
    };
    await Promise.all([worker(), worker()]);
    const ms = now() - first;
    const c = await this.tables.byStatus('drain');
    return { ms, verified: c.completed === total, detail: c };
  }

  /** Enqueue→start: inserts at `rate`/s while a claim loop (woken by the insert) takes them. */
  async latency(total, rate) {
    const sent = new Map();
    const samples = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const r = await this.db.execute('claimTasks', { queue: 'lat', limit: 16, leaseMs: 60000 });
        const t = now();
        for (const task of r.value) {
          samples.push(t - sent.get(task.payload.i));
          this.db.execute('updateTaskStatus', { id: task.id, status: 'completed', workerId: task.workerId });
        }
        if (!r.value.length) await this.db.waitForTasks('lat', 200);
      }
    })();
    await paced(total, rate, (i) => {
      sent.set(i, now());
      return this.db.execute('insertTask', { queue: 'lat', payload: { i } });
    });
    await until(() => samples.length >= total, 30000, 'latency tasks to start');
    stop = true;
    await loop;
    await until(async () => ((await this.tables.byStatus('lat')).completed || 0) === total, 30000, 'latency tasks to complete');
    return { samples, verified: samples.length === total };
  }
}

let runtime = null;

/**
 * One embedded Node-RED runtime per process (node-red's own `init`/`start`, no editor
 * server listening): this package and the bench helper nodes are installed into a
 * temporary user dir as symlinks, the way a user would install them.
 */
async function nodeRed() {
  if (runtime) return runtime;
  const RED = require(require.resolve('node-red', { paths: [root] }));
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-bench-red-'));
  fs.mkdirSync(path.join(userDir, 'node_modules'));
  fs.symlinkSync(root, path.join(userDir, 'node_modules', 'node-red-contrib-database-connector'), 'dir');
  fs.symlinkSync(path.join(__dirname, '..', 'nodered'), path.join(userDir, 'node_modules', 'database-connector-bench-nodes'), 'dir');
  fs.writeFileSync(path.join(userDir, 'package.json'), '{"name":"bench","private":true}');
  RED.init(require('http').createServer(), {
    userDir, flowFile: 'flows.json', credentialSecret: false, uiHost: '127.0.0.1',
    logging: { console: { level: process.env.DBC_BENCH_RED_LOG || 'error' } },
  });
  await RED.start();
  runtime = RED;
  return RED;
}

/**
 * The database-connector node in a real Node-RED runtime. Each measurement deploys its
 * own flow: the operation node(s), bench helper nodes that count and relay messages,
 * and a Catch node whose every message fails the run.
 */
class NodeRed {
  constructor(provider, opts = {}) {
    this.provider = provider;
    this.name = `node-red (${provider})`;
    this.prefix = opts.prefix || `bnr_${provider.slice(0, 2)}_`;
    this.poolMax = opts.poolMax || 10;
    this.concurrency = opts.concurrency || 1000;
  }

  async open() {
    this.RED = await nodeRed();
    // a direct handle on the same tables: clearing, filling and counting (never timed)
    this.direct = new Addon(this.provider, { prefix: this.prefix });
    await this.direct.open();
    this.tables = this.direct.tables;
  }

  async close() {
    await this.deploy([]);
    await this.direct.close();
  }

  clear() { return this.tables.clear(); }

  async deploy(flow) {
    const before = this.RED.nodes.getNode('cfg');
    await this.RED.runtime.flows.setFlows({ flows: { flows: flow }, deploymentType: 'full' });
    // the old flow is stopped (its pools closed) before the next one starts
    if (before) await until(() => this.RED.nodes.getNode('cfg') !== before, 30000, 'the old flow to stop');
  }

  async load(nodes) {
    const cfg = this.configNode();
    const flow = [
      { id: 'tab', type: 'tab', label: 'bench' },
      { ...cfg.props, credentials: cfg.credentials },
      ...nodes.map((n) => ({ z: 'tab', wires: [], ...n })),
      { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'bench-sink', z: 'tab', wires: [] },
    ];
    await this.deploy(flow);
    // the runtime starts the new flows after setFlows resolves
    await until(() => flow.every((n) => n.type === 'tab' || this.RED.nodes.getNode(n.id)), 30000, 'the flow to start');
    this.failure = null;
    const get = (id) => {
      const n = this.RED.nodes.getNode(id);
      if (!n) throw new Error(`node ${id} is not deployed`);
      return n;
    };
    get('caught').hook = (msg) => {
      this.failure = new Error(`the flow reported ${msg.error && msg.error.message}`);
    };
    return get;
  }

  /** Sends msgs into node `into` keeping `width` in flight; sink `out` resolves each. */
  async pump(get, into, out, total, width, payloadOf) {
    const waiting = new Map();
    get(out).hook = (msg) => {
      const w = waiting.get(msg.benchId);
      if (w) {
        waiting.delete(msg.benchId);
        w();
      }
    };
    const target = get(into);
    const ms = await inFlight(total, width, (i) => new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      waiting.set(i, resolve);
      target.receive({ benchId: i, payload: payloadOf(i) });
      return undefined;
    }));
    if (this.failure) throw this.failure;
    return ms;
  }

  configNode() {
    const c = connectorConfig(this.provider, this.prefix, this.poolMax);
    const props = { id: 'cfg', type: 'database-connector-config', name: 'bench', provider: this.provider, tablePrefix: this.prefix, autoMigrate: true, poolMax: this.poolMax };
    if (this.provider === 'sqlite') props.sqliteFile = c.primary.sqliteFile;
    return { props, credentials: this.provider === 'sqlite' ? {} : { url: c.primary.url } };
  }

  async single(total, width) {
    const get = await this.load([
      { id: 'ins', type: 'database-connector', connection: 'cfg', operation: 'insertTask', queue: 'single', wires: [['out']] },
      { id: 'out', type: 'bench-sink' },
    ]);
    await this.warm(get);
    const ms = await this.pump(get, 'ins', 'out', total, width, (i) => ({ payload: { n: i } }));
    const c = await this.tables.byStatus('single');
    return { ms, verified: c.pending === total, detail: c };
  }

  /** One untimed message so the pool is open and migrations are checked. */
  async warm(get) {
    await this.pump(get, 'ins', 'out', 1, 1, () => ({ queue: 'warm' }));
    await this.direct.db.query(`DELETE FROM ${this.prefix}tasks WHERE queue = 'warm'`);
  }

  async bulk(total, per) {
    const get = await this.load([
      { id: 'ins', type: 'database-connector', connection: 'cfg', operation: 'insertTask', queue: 'bulk', wires: [['out']] },
      { id: 'out', type: 'bench-sink' },
    ]);
    await this.warm(get);
    const ms = await this.pump(get, 'ins', 'out', Math.ceil(total / per), 1, (b) =>
      Array.from({ length: Math.min(per, total - b * per) }, (_, i) => ({ payload: { n: b * per + i } })));
    const c = await this.tables.byStatus('bulk');
    return { ms, verified: c.pending === total, detail: c };
  }

  /**
   * The `consume` flow: consume → work (a bench-relay that marks the msg completed) →
   * updateTaskStatus → done. Timed from the first task started to the last completion.
   */
  async drain(total) {
    await this.direct.fill('drain', total);
    let first = 0;
    let done = 0;
    let last = 0;
    const get = await this.load([
      { id: 'cons', type: 'database-connector', connection: 'cfg', operation: 'consume', queue: 'drain', concurrency: this.concurrency, leaseMs: 60000, wires: [['work']] },
      { id: 'work', type: 'bench-relay', wires: [['upd']] },
      { id: 'upd', type: 'database-connector', connection: 'cfg', operation: 'updateTaskStatus', wires: [['done']] },
      { id: 'done', type: 'bench-sink' },
    ]);
    get('work').hook = () => {
      if (!first) first = now();
    };
    get('done').hook = () => {
      done += 1;
      last = now();
    };
    await until(() => done >= total || this.failure, 600000, 'consume to complete every task', 20);
    if (this.failure) throw this.failure;
    await this.deploy([]);
    const c = await this.tables.byStatus('drain');
    return { ms: last - first, verified: c.completed === total && done === total, detail: c };
  }

  /** Enqueue→start through the runtime: insertTask node at `rate`/s, consume → sink. */
  async latency(total, rate) {
    const sent = new Map();
    const samples = [];
    const get = await this.load([
      { id: 'ins', type: 'database-connector', connection: 'cfg', operation: 'insertTask', queue: 'lat', wires: [['out']] },
      { id: 'out', type: 'bench-sink' },
      { id: 'cons', type: 'database-connector', connection: 'cfg', operation: 'consume', queue: 'lat', concurrency: 16, leaseMs: 60000, wires: [['work']] },
      { id: 'work', type: 'bench-relay', wires: [['upd']] },
      { id: 'upd', type: 'database-connector', connection: 'cfg', operation: 'updateTaskStatus', wires: [['done']] },
      { id: 'done', type: 'bench-sink' },
    ]);
    let warm = 0;
    get('work').hook = (msg) => {
      if (msg.payload && msg.payload.warm) warm += 1;
      else samples.push(now() - sent.get(msg.payload.i));
    };
    for (let i = 0; i < 5; i++) get('ins').receive({ payload: { payload: { warm: true } } });
    await until(() => warm === 5, 30000, 'warm-up tasks');
    await paced(total, rate, (i) => {
      sent.set(i, now());
      get('ins').receive({ payload: { payload: { i } } });
    });
    await until(() => samples.length >= total || this.failure, 30000, 'latency tasks to start');
    if (this.failure) throw this.failure;
    await until(async () => ((await this.tables.byStatus('lat')).completed || 0) === total + 5, 30000, 'latency tasks to complete');
    await this.deploy([]);
    return { samples, verified: samples.length === total };
  }
}

module.exports = { Addon, NodeRed, connectorConfig, service };
