'use strict';

/**
 * Where the CPU of one workload goes: this process (Node-RED or the addon, with the
 * addon's threads) against the rest of the machine (the database servers; SQLite runs
 * inside this process). docs/PERFORMANCE.md uses it to say what limits a run: a system
 * whose database is busy at 100% of a core gains nothing from a faster client.
 *
 * Usage: node benches/profile.js <node|addon|raw> <postgres|mariadb|sqlite> [tasks] [--bulk]
 *   node: the node in a real Node-RED runtime; addon: the addon called directly; raw: the
 *   raw driver reference of that database (node-postgres, mysql2, better-sqlite3).
 *   Default workload: claim + complete (the queue is filled first, not measured); --bulk:
 *   bulk enqueue in calls of 1,000. The file /tmp/dbc-profile-ready gets this process's
 *   pid once the measured part starts, for `perf record -p` (docs/PERFORMANCE.md).
 * Prints one JSON line: tasks/s, wall seconds, this process's CPU seconds (user, system),
 * the machine's busy CPU seconds and the part of it outside this process.
 */

const fs = require('fs');
const { Addon, NodeRed, service, connectorConfig } = require('./lib/ours');
const { NodePostgres, Mysql2 } = require('./lib/peers');
const { BetterSqlite3 } = require('./lib/raw-sqlite');
const { PG_URL } = require('./lib/common');

/** Busy CPU seconds of the whole machine since boot (/proc/stat: all but idle and iowait). */
function machineBusy() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100;
}

function systemOf(kind, provider) {
  if (kind === 'node') return new NodeRed(provider);
  if (kind === 'addon') return new Addon(provider);
  if (kind === 'raw') return { postgres: () => new NodePostgres(), mariadb: () => new Mysql2(), sqlite: () => new BetterSqlite3() }[provider]();
  throw new Error(`unknown system ${kind}: node, addon or raw`);
}

async function main() {
  const args = process.argv.slice(2);
  const [kind, provider] = args;
  const total = Number(args[2]) > 0 ? Number(args[2]) : 100000;
  const bulk = args.includes('--bulk');
  if (!['postgres', 'mariadb', 'sqlite'].includes(provider)) throw new Error('provider: postgres, mariadb or sqlite');
  const sys = systemOf(kind, provider);
  await sys.open(async (p, prefix) => (await service.open(connectorConfig(p, prefix))).close());
  await sys.clear();
  if (provider === 'postgres') {
    const { Client } = require('pg');
    const c = new Client({ connectionString: PG_URL });
    await c.connect();
    await c.query('CHECKPOINT');
    await c.end();
  }
  if (!bulk) {
    // ours: fill the queue before the measured part (the raw references fill inside drain)
    const filler = sys.direct || (sys instanceof Addon ? sys : null);
    if (filler) {
      await filler.fill('drain', total);
      filler.fill = async () => {};
    }
  }
  fs.writeFileSync('/tmp/dbc-profile-ready', String(process.pid));
  const cpu0 = process.cpuUsage();
  const busy0 = machineBusy();
  const r = bulk ? await sys.bulk(total, 1000) : await sys.drain(total);
  const cpu = process.cpuUsage(cpu0);
  const busy = machineBusy() - busy0;
  const own = (cpu.user + cpu.system) / 1e6;
  console.log(JSON.stringify({
    system: sys.name, workload: bulk ? 'bulk' : 'claim + complete', tasks: total, verified: r.verified,
    perSecond: Math.round(total / (r.ms / 1000)),
    processUser: +(cpu.user / 1e6).toFixed(2), processSystem: +(cpu.system / 1e6).toFixed(2),
    machineBusy: +busy.toFixed(2), outsideProcess: +(busy - own).toFixed(2),
  }));
  await sys.close();
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
