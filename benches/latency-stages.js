'use strict';

/**
 * Enqueue→start latency broken into its stages, with the addon called directly (the
 * bench's latency workload: 2,000 single inserts at 200/s, one claim loop woken by the
 * insert): `ack` the insert's answer, `wake` the consumer's wake-up after the insert,
 * `claim` the claim that picks the task up, `total` enqueue→start. docs/PERFORMANCE.md
 * uses it to say where a latency miss comes from.
 *
 * Usage: node benches/latency-stages.js [postgres|mariadb|sqlite]
 */
const { Addon } = require('./lib/ours');
const { now, paced, quantile, sleep } = require('./lib/common');
(async () => {
  const provider = process.argv[2] || 'postgres';
  const a = new Addon(provider); await a.open(); await a.clear();
  const db = a.db;
  const sent = new Map(); const st = { ack: [], wake: [], claim: [], total: [] };
  let stop = false; let wokeAt = 0; let n = 0; const total = 2000;
  const loop = (async () => {
    while (!stop) {
      const c0 = now();
      const r = await db.execute('claimTasks', { queue: 'lat', limit: 16, leaseMs: 60000 });
      const t = now();
      for (const task of r.value) {
        const s = sent.get(task.payload.i);
        st.total.push(t - s); st.claim.push(t - Math.max(c0, s)); if (wokeAt && wokeAt >= s) st.wake.push(wokeAt - s);
        n++; db.execute('updateTaskStatus', { id: task.id, status: 'completed', workerId: task.workerId });
      }
      wokeAt = 0;
      if (!r.value.length) { await db.waitForTasks('lat', 200); wokeAt = now(); }
    }
  })();
  await paced(total, 200, async (i) => { const s = now(); sent.set(i, s); await db.execute('insertTask', { queue: 'lat', payload: { i } }); st.ack.push(now() - s); });
  while (n < total) await sleep(10);
  stop = true; await loop;
  const q = (xs, p) => quantile(xs.slice().sort((x, y) => x - y), p).toFixed(2);
  for (const [k, xs] of Object.entries(st)) console.log(k.padEnd(6), 'n', xs.length, 'p50', q(xs, 0.5), 'p99', q(xs, 0.99));
  await a.close(); process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
