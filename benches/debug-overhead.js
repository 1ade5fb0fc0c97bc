#!/usr/bin/env node
/**
 * Debug mode's cost: the same single-task inserts (16 in flight) with `debug` off and on,
 * through the addon, on each provider. Each run starts from an empty table and is
 * checked to have inserted every task before its time counts; the order of the two
 * variants alternates between repetitions. Prints medians and min–max of the reps.
 *
 * Usage: node benches/debug-overhead.js [tasks=4000] [reps=3]
 */
'use strict';

const os = require('os');
const path = require('path');
const fs = require('fs');
const service = require('../nodes/database-connector/database-service');

const TASKS = Number(process.argv[2]) || 4000;
const REPS = Number(process.argv[3]) || 3;
const IN_FLIGHT = 16;
const PG = process.env.DBC_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const MY = process.env.DBC_TEST_MARIADB_URL || 'mysql://root@127.0.0.1:3306/test';

async function runOnce(db, prefix, debug) {
  await db.query(`DELETE FROM ${prefix}tasks`);
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < TASKS) {
      next += 1;
      await db.execute('insertTask', { queue: 'bench', payload: { n: next } }, { debug });
    }
  }));
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  const { rows } = await db.query(`SELECT count(*) AS n FROM ${prefix}tasks`);
  if (Number(rows[0].n) !== TASKS) throw new Error(`expected ${TASKS} rows, found ${rows[0].n}`);
  return TASKS / secs;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-bench-'));
  const providers = {
    postgres: { provider: 'postgres', url: PG },
    mariadb: { provider: 'mariadb', url: MY },
    sqlite: { provider: 'sqlite', sqliteFile: path.join(dir, 'bench.db') },
  };
  console.log(`# debug overhead: ${TASKS} single inserts, ${IN_FLIGHT} in flight, ${REPS} reps (median, min-max, inserts/s)`);
  console.log(`# ${os.cpus().length} cores, ${os.cpus()[0].model}, Node ${process.version}`);
  const out = [];
  for (const [name, primary] of Object.entries(providers)) {
    const prefix = `bench${process.pid}_`;
    const db = await service.open({ primary, tablePrefix: prefix, pool: { poolMax: 16 } });
    try {
      const results = { off: [], on: [] };
      for (let r = 0; r < REPS; r++) {
        const order = r % 2 === 0 ? ['off', 'on'] : ['on', 'off'];
        for (const v of order) results[v].push(await runOnce(db, prefix, v === 'on'));
      }
      for (const v of ['off', 'on']) {
        const xs = results[v];
        const line = `${name}\tdebug ${v}\t${median(xs).toFixed(0)}\t(${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
        console.log(line);
        out.push(line);
      }
    } finally {
      await db.query(`DROP TABLE IF EXISTS ${prefix}error_logs, ${prefix}task_executions, ${prefix}task_dependencies, ${prefix}tasks, ${prefix}workflows, ${prefix}migrations`).catch(() => {});
      await db.close();
    }
  }
  return out;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
