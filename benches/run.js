#!/usr/bin/env node
/**
 * `npm run bench`: this package (through Node-RED, and the addon directly) beside
 * pg-boss, graphile-worker, node-postgres and mysql2, against the same databases in one
 * run, then scale and memory (benches/scale.js in child processes). The peers' newest
 * majors (pg-boss 12, graphile-worker 0.18), which need Node 22, run beside them in Node 22
 * child processes (benches/newest, benches/lib/newest.js); `--no-newest` leaves them out.
 *
 * Workloads: single enqueue (16 in flight), bulk enqueue (1,000 per call), claim +
 * complete of queued no-op tasks, enqueue→start latency at a fixed rate. Before a time
 * counts, the system's rows are counted: a run that did not do all the work fails the
 * bench. System order rotates between repetitions; medians and min–max are reported.
 *
 * Usage: node benches/run.js [--quick] [--reps N] [--only a,b] [--workloads single,bulk,drain,latency]
 *        [--no-newest] [--no-scale] [--scale-only] [--out DIR]
 * Writes benches/results/<date>.json, .md and .svg (and docs/images/benchmarks.svg for
 * a full run).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { execSync, execFileSync } = require('child_process');

const here = __dirname;
const root = path.resolve(here, '..');

function ensureDependencies() {
  if (fs.existsSync(path.join(here, 'node_modules', 'graphile-worker'))) return;
  console.log('# installing the peers into benches/node_modules (npm --prefix benches ci)');
  execSync('npm --prefix benches ci --no-audit --no-fund', { cwd: root, stdio: 'inherit' });
}

/** benches/newest (a Node 22 and the peers' newest majors), when the run includes them. */
function ensureNewestDependencies() {
  if (require('./lib/newest').installed()) return;
  console.log('# installing Node 22 and the newest peers into benches/newest/node_modules (npm --prefix benches/newest ci)');
  execSync('npm --prefix benches/newest ci --no-audit --no-fund', { cwd: root, stdio: 'inherit' });
}

function args() {
  const a = process.argv.slice(2);
  const get = (k) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const quick = a.includes('--quick');
  return {
    quick,
    reps: Number(get('--reps')) || 3,
    only: get('--only') ? get('--only').split(',') : null,
    workloads: get('--workloads') ? get('--workloads').split(',') : ['single', 'bulk', 'drain', 'latency'],
    newest: !a.includes('--no-newest'),
    scale: !a.includes('--no-scale'),
    scaleOnly: a.includes('--scale-only'),
    out: get('--out') || path.join(here, 'results'),
  };
}

function versionOf(pkg, from = here) {
  try {
    return JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`, { paths: [from] }), 'utf8')).version;
  } catch {
    return null;
  }
}

async function serverVersions() {
  const { PG_URL, MY_URL } = require('./lib/common');
  const { Client } = require('pg');
  const c = new Client({ connectionString: PG_URL });
  await c.connect();
  const pg = (await c.query('SHOW server_version')).rows[0].server_version;
  const settings = (await c.query("SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections', 'autovacuum')")).rows;
  await c.end();
  const mysql = require('mysql2/promise');
  const m = await mysql.createConnection({ uri: MY_URL });
  const [[row]] = await m.query('SELECT VERSION() AS v');
  await m.end();
  return { postgres: pg, postgresSettings: Object.fromEntries(settings.map((s) => [s.name, s.setting])), mariadb: row.v };
}

/** Every system, in the order of the first repetition. */
function systemsFor(opts) {
  const { Addon, NodeRed } = require('./lib/ours');
  const { PgBoss, Graphile, NodePostgres, Mysql2 } = require('./lib/peers');
  const { PgBossNewest, GraphileNewest } = require('./lib/newest');
  const { BetterSqlite3 } = require('./lib/raw-sqlite');
  const all = [
    new NodeRed('postgres'), new Addon('postgres'), new PgBoss(), new Graphile(),
    ...(opts.newest ? [new PgBossNewest(), new GraphileNewest()] : []),
    new NodePostgres(),
    new NodeRed('mariadb'), new Addon('mariadb'), new Mysql2(),
    new NodeRed('sqlite'), new Addon('sqlite'), new BetterSqlite3(),
  ];
  return opts.only ? all.filter((s) => opts.only.some((o) => s.name.includes(o))) : all;
}

/** Task counts per workload (smaller on MariaDB/SQLite, whose per-task claims are slower). */
function counts(quick) {
  return quick
    ? { single: 2000, bulk: 10000, drain: { postgres: 5000, other: 2000 }, latency: 200, rate: 200 }
    : { single: 20000, bulk: 100000, drain: { postgres: 100000, other: 20000 }, latency: 2000, rate: 200 };
}

const providerOf = (s) => (s.name.includes('mariadb') ? 'mariadb' : s.name.includes('sqlite') ? 'sqlite' : 'postgres');

async function checkpoint() {
  const { PG_URL } = require('./lib/common');
  const { Client } = require('pg');
  const c = new Client({ connectionString: PG_URL });
  await c.connect();
  await c.query('CHECKPOINT');
  await c.end();
}

async function throughputSuite(opts, results) {
  const { service, connectorConfig } = require('./lib/ours');
  const { summary, latencyStats, machine } = require('./lib/common');
  const n = counts(opts.quick);
  results.config = { ...results.config, counts: n, latencyRate: n.rate };
  const makeSchema = async (provider, prefix) => {
    const db = await service.open(connectorConfig(provider, prefix));
    await db.close();
  };
  const systems = systemsFor(opts);
  if (systems.some((s) => s.newest)) ensureNewestDependencies();
  for (const s of systems) await s.open(makeSchema);
  const newest = systems.find((s) => s.newest);
  if (newest) {
    // what the Node 22 children run, as they report it
    results.versions.newest = newest.versions;
    console.log(`# ${systems.filter((s) => s.newest).map((s) => s.name).join(', ')}: Node ${newest.versions.node}, pg-boss ${newest.versions.pgBoss}, graphile-worker ${newest.versions.graphileWorker}, pg ${newest.versions.pg}`);
  }
  const raw = { single: {}, bulk: {}, drain: {}, latency: {} };
  try {
    for (let rep = 0; rep < opts.reps; rep++) {
      console.log(`# repetition ${rep + 1}/${opts.reps} — ${machine().uptime}`);
      for (const w of opts.workloads) {
        const order = systems.filter((s) => typeof s[w] === 'function');
        const rotated = order.slice(rep % order.length).concat(order.slice(0, rep % order.length));
        for (const s of rotated) {
          await s.clear();
          await checkpoint();
          let r;
          let tasks;
          try {
            if (w === 'single') r = await s.single((tasks = providerOf(s) === 'postgres' ? n.single : n.single / 2), 16);
            else if (w === 'bulk') r = await s.bulk((tasks = n.bulk), 1000);
            else if (w === 'drain') r = await s.drain((tasks = providerOf(s) === 'postgres' ? n.drain.postgres : n.drain.other));
            else r = await s.latency((tasks = n.latency), n.rate);
            if (!r.verified) throw new Error(`the work was not all done (${JSON.stringify(r.detail || {})})`);
          } catch (err) {
            // a run that fails or does not do all the work does not count; the others go on
            (results.failures = results.failures || []).push({ rep, workload: w, system: s.name, error: err.message });
            console.log(`${w}\t${s.name}\tFAILED: ${err.message}`);
            continue;
          }
          (raw[w][s.name] = raw[w][s.name] || []).push(w === 'latency' ? latencyStats(r.samples) : { tasks, perSec: tasks / (r.ms / 1000) });
          const shown = w === 'latency' ? `p50 ${latencyStats(r.samples).p50.toFixed(2)} ms, p99 ${latencyStats(r.samples).p99.toFixed(2)} ms` : `${Math.round(tasks / (r.ms / 1000))} tasks/s`;
          console.log(`${w}\t${s.name}\t${shown}`);
        }
      }
    }
  } finally {
    for (const s of systems) await s.close().catch((e) => console.error(`closing ${s.name}: ${e.message}`));
  }
  results.throughput = {};
  for (const w of ['single', 'bulk', 'drain']) {
    results.throughput[w] = {};
    for (const [name, xs] of Object.entries(raw[w])) results.throughput[w][name] = { ...summary(xs.map((x) => x.perSec)), tasks: xs[0].tasks };
  }
  results.latency = {};
  for (const [name, xs] of Object.entries(raw.latency)) {
    results.latency[name] = { p50: summary(xs.map((x) => x.p50)), p99: summary(xs.map((x) => x.p99)), max: summary(xs.map((x) => x.max)), n: xs[0].n };
  }
}

/** The targets, as ratios of medians measured in this run. */
function targets(results) {
  const t = results.throughput;
  const out = [];
  const ratio = (w, a, b, need, label) => {
    const x = t[w] && t[w][a];
    const y = t[w] && t[w][b];
    if (!x || !y) return;
    const r = x.median / y.median;
    out.push({ target: label, measured: `${r.toFixed(2)}× (${Math.round(x.median)} vs ${Math.round(y.median)}/s)`, ratio: r, met: r >= need });
  };
  ratio('single', 'node-red (postgres)', 'pg-boss', 3, 'single enqueue through the node ≥ 3× pg-boss send');
  ratio('single', 'node-red (postgres)', 'node-postgres', 1, 'single enqueue through the node ≥ 1.0× node-postgres prepared INSERT');
  ratio('bulk', 'node-red (postgres)', 'graphile-worker', 1.5, 'bulk enqueue through the node ≥ 1.5× graphile-worker addJobs');
  ratio('drain', 'node-red (postgres)', 'graphile-worker', 1, 'claim + complete via consume ≥ 1.0× graphile-worker (local queue)');
  const l = results.latency || {};
  const ours = l['node-red (postgres)'];
  const gw = l['graphile-worker'];
  if (ours && gw) out.push({ target: 'enqueue→start p50 ≤ graphile-worker', measured: `${ours.p50.median.toFixed(2)} ms vs ${gw.p50.median.toFixed(2)} ms`, met: ours.p50.median <= gw.p50.median });
  if (ours) out.push({ target: 'enqueue→start p99 ≤ 5 ms', measured: `${ours.p99.median.toFixed(2)} ms`, met: ours.p99.median <= 5 });
  return out;
}

function runScale(opts) {
  const out = execFileSync(process.execPath, [path.join(here, 'scale.js'), ...(opts.quick ? ['--quick'] : [])], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  const line = out.trim().split('\n').pop();
  return JSON.parse(line);
}

async function main() {
  ensureDependencies();
  const opts = args();
  const { machine } = require('./lib/common');
  const { markdown, svg } = require('./lib/report');
  const started = new Date();
  const results = {
    title: `database-connector benchmarks — ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    command: `node benches/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: started.toISOString(),
    machine: machine(),
    versions: {
      ...(await serverVersions()),
      nodeRed: versionOf('node-red', root),
      pgBoss: versionOf('pg-boss'),
      graphileWorker: versionOf('graphile-worker'),
      pg: versionOf('pg'),
      mysql2: versionOf('mysql2'),
      connector: JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version,
      commit: (() => { try { return execSync('git rev-parse --short HEAD', { cwd: root, encoding: 'utf8' }).trim(); } catch { return null; } })(),
    },
    config: { quick: opts.quick, reps: opts.reps },
  };
  console.log(`# ${results.title}\n# ${results.machine.cpus} cores (${results.machine.cpuModel}), Node ${results.machine.node}, PostgreSQL ${results.versions.postgres}, MariaDB ${results.versions.mariadb}\n# load: ${results.machine.uptime}`);
  if (!opts.scaleOnly) {
    await throughputSuite(opts, results);
    results.targets = targets(results);
  }
  if (opts.scale) {
    console.log('# scale and memory (benches/scale.js)');
    results.scale = runScale(opts);
  }
  results.finishedAt = new Date().toISOString();
  results.machine.uptimeAtEnd = machine().uptime;
  const node22 = results.versions.newest ? ` (the "Node 22" rows: ${results.versions.newest.node})` : '';
  results.caption = `${results.machine.cpus} cores, Node ${results.machine.node}${node22}, PostgreSQL ${results.versions.postgres}, MariaDB ${results.versions.mariadb}; load at start: ${results.machine.uptime.replace(/.*load average: /, '')}; ${opts.reps} reps, median with min–max`;
  fs.mkdirSync(opts.out, { recursive: true });
  const stamp = started.toISOString().slice(0, 19).replace(/:/g, '-') + (opts.quick ? '-quick' : '');
  const base = path.join(opts.out, stamp);
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  let md = '';
  if (results.throughput) {
    md = markdown(results);
    fs.writeFileSync(`${base}.svg`, svg(results));
    if (!opts.quick && !opts.only) fs.writeFileSync(path.join(root, 'docs', 'images', 'benchmarks.svg'), svg(results));
  }
  if (results.scale) md += `\n\n${require('./scale').markdown(results.scale)}`;
  fs.writeFileSync(`${base}.md`, `# ${results.title}\n\n\`${results.command}\` — load at start: \`${results.machine.uptime}\`, at end: \`${results.machine.uptimeAtEnd}\`\n\n${md}\n`);
  console.log(`\n${md}\n\n# wrote ${base}.{json,md${results.throughput ? ',svg' : ''}}`);
  // the Node-RED test helper keeps a server open
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
