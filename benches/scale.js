#!/usr/bin/env node
/**
 * Scale and memory, each part in its own process so its RSS is its own:
 * - callers: single inserts through the addon with 16, 64 and 256 concurrent callers,
 *   pool 10 and 50 (PostgreSQL);
 * - tasks1m: 1M tasks queued and processed by a `consume` flow in Node-RED, RSS sampled
 *   every second (growth from 10% processed to the end);
 * - query1m: a 1M-row `query` with rows per message 1,000 through Node-RED (peak RSS);
 * - transport: TLS (the default `sslmode=prefer`) against plain TCP, addon on PostgreSQL;
 * - debug: debug off vs on, single inserts on every provider (what
 *   benches/debug-overhead.js measured, folded in).
 *
 * Usage: node benches/scale.js [--quick] [--part callers|tasks1m|query1m|debug|transport]
 * Prints progress on stderr and one JSON line on stdout.
 */
'use strict';

const { execFileSync } = require('child_process');
const { now, summary, rssSampler, until, machine } = require('./lib/common');

const quick = process.argv.includes('--quick');
const partArg = process.argv.indexOf('--part');
const log = (...a) => console.error(...a);

async function callers() {
  const { Addon } = require('./lib/ours');
  const total = quick ? 2000 : 10000;
  const out = [];
  for (const pool of [10, 50]) {
    const a = new Addon('postgres', { prefix: 'bsc_', poolMax: pool });
    await a.open();
    try {
      for (const width of [16, 64, 256]) {
        const xs = [];
        for (let rep = 0; rep < 3; rep++) {
          await a.clear();
          const r = await a.single(total, width);
          if (!r.verified) throw new Error(`callers ${width}/pool ${pool}: ${JSON.stringify(r.detail)}`);
          xs.push(total / (r.ms / 1000));
        }
        const s = summary(xs);
        log(`callers ${width}\tpool ${pool}\t${Math.round(s.median)} inserts/s`);
        out.push({ callers: width, pool, ...s });
      }
    } finally {
      await a.close();
    }
  }
  return { tasks: total, results: out };
}

async function tasks1m() {
  const { NodeRed } = require('./lib/ours');
  const total = quick ? 20000 : 1000000;
  const sampler = rssSampler(1000);
  const nr = new NodeRed('postgres', { prefix: 'bsm_', concurrency: 1000 });
  await nr.open();
  await nr.clear();
  const t0 = now();
  const marks = [];
  let done = 0;
  // the flow runs while the tasks are queued in waves of 100,000 (the table never holds
  // more than the queue depth a busy system would have)
  const get = await nr.load([
    { id: 'cons', type: 'database-connector', connection: 'cfg', operation: 'consume', queue: 'drain', concurrency: 1000, leaseMs: 60000, wires: [['work']] },
    { id: 'work', type: 'bench-relay', wires: [['upd']] },
    { id: 'upd', type: 'database-connector', connection: 'cfg', operation: 'updateTaskStatus', wires: [['done']] },
    { id: 'done', type: 'bench-sink' },
  ]);
  get('done').hook = () => {
    done += 1;
    if (done % Math.max(1, total / 10) === 0) {
      const mb = process.memoryUsage.rss() / 1048576;
      marks.push({ done, mb, s: (now() - t0) / 1000 });
      log(`tasks1m ${done}\t${mb.toFixed(0)} MB RSS\t${((now() - t0) / 1000).toFixed(0)} s`);
    }
  };
  const wave = Math.min(100000, total);
  for (let queued = 0; queued < total; queued += wave) {
    await until(() => done >= queued - wave / 2 || nr.failure, 600000, 'the consumer to catch up', 50);
    await nr.direct.fill('drain', Math.min(wave, total - queued));
  }
  await until(() => done >= total || nr.failure, 1800000, 'every task to complete', 50);
  if (nr.failure) throw nr.failure;
  const secs = (now() - t0) / 1000;
  const counts = await nr.tables.byStatus('drain');
  await nr.close();
  const mem = sampler.stop();
  if (counts.completed !== total) throw new Error(`tasks1m: ${JSON.stringify(counts)}`);
  const at10 = marks[0] ? marks[0].mb : mem.samples[0].mb;
  const atEnd = marks[marks.length - 1].mb;
  return { tasks: total, seconds: secs, perSec: total / secs, rssAt10PctMb: at10, rssAtEndMb: atEnd, growthMb: atEnd - at10, peakMb: mem.peakMb, marks };
}

async function query1m() {
  const { NodeRed } = require('./lib/ours');
  const rows = quick ? 100000 : 1000000;
  const nr = new NodeRed('postgres', { prefix: 'bsq_' });
  await nr.open();
  const get = await nr.load([
    { id: 'q', type: 'database-connector', connection: 'cfg', operation: 'query', rowsPerMsg: 1000, sql: `SELECT g AS id, md5(g::text) AS v FROM generate_series(1, ${rows}) AS g`, wires: [['out']] },
    { id: 'out', type: 'bench-sink' },
  ]);
  let parts = 0;
  let got = 0;
  get('out').hook = (msg) => {
    parts += 1;
    got += msg.payload.length;
  };
  const before = process.memoryUsage.rss() / 1048576;
  const sampler = rssSampler(50);
  const t0 = now();
  get('q').receive({ payload: null });
  await until(() => got >= rows || nr.failure, 600000, 'every row', 20);
  const secs = (now() - t0) / 1000;
  const mem = sampler.stop();
  if (nr.failure) throw nr.failure;
  await nr.close();
  return { rows, parts, seconds: secs, rssBeforeMb: before, peakMb: mem.peakMb };
}

async function debug() {
  const { Addon } = require('./lib/ours');
  const total = quick ? 1000 : 4000;
  const out = [];
  for (const provider of ['postgres', 'mariadb', 'sqlite']) {
    const a = new Addon(provider, { prefix: `bdg_${provider.slice(0, 2)}_`, poolMax: 16 });
    await a.open();
    const xs = { off: [], on: [] };
    try {
      for (let rep = 0; rep < 3; rep++) {
        for (const v of rep % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
          await a.clear();
          const r = await a.single(total, 16, { debug: v === 'on' });
          if (!r.verified) throw new Error(`debug ${provider} ${v}: ${JSON.stringify(r.detail)}`);
          xs[v].push(total / (r.ms / 1000));
        }
      }
    } finally {
      await a.close();
    }
    for (const v of ['off', 'on']) {
      const s = summary(xs[v]);
      log(`debug ${provider}\t${v}\t${Math.round(s.median)} inserts/s`);
      out.push({ provider, debug: v, ...s });
    }
  }
  return { tasks: total, results: out };
}

/**
 * What TLS costs: the addon on PostgreSQL with the connector's default `sslmode=prefer`
 * (TLS, as Debian's server offers it) against plain TCP, single and bulk inserts,
 * alternating, 3 reps each. The throughput suite runs every system on plain TCP.
 */
async function transport() {
  const { Addon } = require('./lib/ours');
  const { PG_URL } = require('./lib/common');
  const n = quick ? { single: 1000, bulk: 5000 } : { single: 5000, bulk: 30000 };
  const urls = { tls: `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}sslmode=prefer`, plain: null };
  const xs = { tls: { single: [], bulk: [] }, plain: { single: [], bulk: [] } };
  const systems = {};
  for (const k of Object.keys(urls)) {
    systems[k] = new Addon('postgres', { prefix: 'btr_', url: urls[k] || undefined });
    await systems[k].open();
  }
  try {
    for (let rep = 0; rep < 3; rep++) {
      for (const k of rep % 2 === 0 ? ['tls', 'plain'] : ['plain', 'tls']) {
        const a = systems[k];
        await a.clear();
        const s = await a.single(n.single, 16);
        if (!s.verified) throw new Error(`transport ${k} single: ${JSON.stringify(s.detail)}`);
        xs[k].single.push(n.single / (s.ms / 1000));
        await a.clear();
        const b = await a.bulk(n.bulk, 1000);
        if (!b.verified) throw new Error(`transport ${k} bulk: ${JSON.stringify(b.detail)}`);
        xs[k].bulk.push(n.bulk / (b.ms / 1000));
      }
    }
  } finally {
    for (const a of Object.values(systems)) await a.close();
  }
  const out = [];
  for (const k of ['tls', 'plain']) {
    for (const w of ['single', 'bulk']) {
      const s = summary(xs[k][w]);
      log(`transport ${k}	${w}	${Math.round(s.median)} tasks/s`);
      out.push({ transport: k, workload: w, ...s });
    }
  }
  return { tasks: n, results: out };
}

const PARTS = { callers, tasks1m, query1m, debug, transport };

/** Markdown for the scale results. */
function markdown(s) {
  const f = (x) => Math.round(x).toLocaleString('en-US');
  const out = [];
  if (s.callers) {
    out.push(`| concurrent callers (single inserts, addon, PostgreSQL, ${s.callers.tasks} per rep) | pool 10 | pool 50 |`, '|---|---:|---:|');
    for (const w of [16, 64, 256]) {
      const cell = (p) => {
        const r = s.callers.results.find((x) => x.callers === w && x.pool === p);
        return r ? `${f(r.median)} (${f(r.min)}–${f(r.max)})` : '';
      };
      out.push(`| ${w} | ${cell(10)} | ${cell(50)} |`);
    }
  }
  if (s.tasks1m) {
    const t = s.tasks1m;
    out.push('', '| memory | value |', '|---|---:|', `| ${f(t.tasks)} tasks through consume → updateTaskStatus | ${t.seconds.toFixed(0)} s (${f(t.perSec)}/s) |`, `| RSS at 10% processed → at the end | ${t.rssAt10PctMb.toFixed(0)} MB → ${t.rssAtEndMb.toFixed(0)} MB (growth ${t.growthMb.toFixed(0)} MB, peak ${t.peakMb.toFixed(0)} MB) |`);
  }
  if (s.query1m) {
    const q = s.query1m;
    out.push(`| ${f(q.rows)}-row query, 1,000 rows per message (${q.parts} msgs, ${q.seconds.toFixed(1)} s) | peak RSS ${q.peakMb.toFixed(0)} MB (${q.rssBeforeMb.toFixed(0)} MB before) |`);
  }
  if (s.debug) {
    out.push('', `| debug (single inserts, 16 in flight, ${s.debug.tasks} per rep) | off | on |`, '|---|---:|---:|');
    for (const p of ['postgres', 'mariadb', 'sqlite']) {
      const cell = (v) => {
        const r = s.debug.results.find((x) => x.provider === p && x.debug === v);
        return r ? `${f(r.median)} (${f(r.min)}–${f(r.max)})` : '';
      };
      out.push(`| ${p} | ${cell('off')} | ${cell('on')} |`);
    }
  }
  if (s.transport) {
    out.push('', `| transport (addon, PostgreSQL on loopback; ${s.transport.tasks.single} single / ${s.transport.tasks.bulk} bulk per rep) | single, 16 in flight | bulk, 1,000 per call |`, '|---|---:|---:|');
    for (const [k, label] of [['tls', 'TLS (`sslmode=prefer`, the default)'], ['plain', 'plain TCP (`sslmode=disable`)']]) {
      const cell = (w) => {
        const r = s.transport.results.find((x) => x.transport === k && x.workload === w);
        return r ? `${f(r.median)} (${f(r.min)}–${f(r.max)})` : '';
      };
      out.push(`| ${label} | ${cell('single')} | ${cell('bulk')} |`);
    }
  }
  return out.join('\n');
}

async function main() {
  if (partArg >= 0) {
    const name = process.argv[partArg + 1];
    const r = await PARTS[name]();
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  }
  const out = { uptimeAtStart: machine().uptime };
  for (const name of Object.keys(PARTS)) {
    log(`# scale: ${name}`);
    const text = execFileSync(process.execPath, [__filename, '--part', name, ...(quick ? ['--quick'] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
    out[name] = JSON.parse(text.trim().split('\n').pop());
  }
  out.uptimeAtEnd = machine().uptime;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

module.exports = { markdown };
