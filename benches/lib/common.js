/**
 * What every bench module shares: database URLs, timing and statistics helpers, a
 * "keep N calls in flight" driver, a paced sender for latency runs, and an RSS sampler.
 */
'use strict';

const os = require('os');
const { execSync } = require('child_process');

const PG_URL = process.env.DBC_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const MY_URL = process.env.DBC_TEST_MARIADB_URL || 'mysql://root@127.0.0.1:3306/test';

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Median of numbers (the lower middle for an even count). */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/** The q-quantile (0..1) of numbers, nearest rank. */
function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** {median, min, max} of repetitions. */
function summary(xs) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), reps: xs };
}

/**
 * Calls `fn(i)` for i in 0..total with at most `inFlight` calls pending.
 * @returns {Promise<number>} elapsed milliseconds
 */
async function inFlight(total, width, fn) {
  let next = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: Math.min(width, total) }, async () => {
    while (next < total) {
      const i = next++;
      await fn(i);
    }
  }));
  return now() - t0;
}

/**
 * Calls `send(i)` at `rate` per second for `total` calls (not waiting for each), and
 * resolves when all have resolved.
 */
async function paced(total, rate, send) {
  const start = now();
  const pending = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    pending.push(send(i));
  }
  await Promise.all(pending);
}

/** Resolves when `check()` is true, polling every `every` ms; rejects after `timeoutMs`. */
async function until(check, timeoutMs, what, every = 5) {
  const t0 = now();
  while (!(await check())) {
    if (now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(every);
  }
}

/** Latency statistics in milliseconds. */
function latencyStats(samples) {
  return {
    n: samples.length,
    p50: quantile(samples, 0.5),
    p99: quantile(samples, 0.99),
    max: Math.max(...samples),
  };
}

/** Samples this process's RSS every `everyMs`; stop() returns {samples, peakMb, ...}. */
function rssSampler(everyMs = 250) {
  const samples = [];
  const t0 = now();
  const take = () => samples.push({ t: Math.round(now() - t0), mb: process.memoryUsage.rss() / 1048576 });
  take();
  const timer = setInterval(take, everyMs);
  return {
    samples,
    stop() {
      clearInterval(timer);
      take();
      return { samples, peakMb: Math.max(...samples.map((s) => s.mb)), lastMb: samples[samples.length - 1].mb };
    },
  };
}

/** The machine and its load right now. */
function machine() {
  const sh = (cmd) => { try { return execSync(cmd, { encoding: 'utf8' }).trim(); } catch { return ''; } };
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0] && os.cpus()[0].model,
    memGb: Math.round(os.totalmem() / 1073741824),
    kernel: os.release(),
    node: process.version,
    uptime: sh('uptime'),
    loadavg: os.loadavg(),
  };
}

module.exports = { PG_URL, MY_URL, now, sleep, median, quantile, summary, inFlight, paced, until, latencyStats, rssSampler, machine };
