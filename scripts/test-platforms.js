#!/usr/bin/env node
/**
 * `npm run test:platforms [-- --targets a,b] [--from result.json]`: the prebuilt
 * packages tested as users install them (tests/platforms/).
 *
 * 1. Without --from: `node scripts/prebuilt.js --targets … --out <temp dir>` builds and
 *    packs the main package and one platform package per target; its last stdout line
 *    is JSON {main, platforms: {target: tgz}, builds: {target: {seconds, bytes} |
 *    {error}}}. With --from, that JSON is read from a file (e.g. a build kept earlier).
 * 2. `node --test` over tests/platforms/*.test.js, one file at a time (the emulated
 *    installs are timed, and the machine is small), with DBC_PLATFORMS_RESULT (the JSON's
 *    path), DBC_PLATFORMS_TARGETS and DBC_PLATFORMS_METRICS (where the tests write their
 *    numbers) in the environment. A target that was not requested is not run.
 * 3. A table per target: build seconds and bytes, install seconds, Node-RED start and
 *    first task seconds, whether the task came back, highest GLIBC_ version. Exits
 *    non-zero when a requested target did not build or a test failed (and then keeps its
 *    temp dir, saying where).
 * Targets (default: all): linux-x64-gnu, linux-arm64-gnu, linux-arm-gnueabihf,
 * linux-x64-musl, linux-arm64-musl, and `source`: the packed package built from source
 * in a fresh user dir (tests/platforms/source-build.test.js, a full compile of ~5 min;
 * .ci/run leaves it out to stay within its time).
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..');
const PLATFORMS = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-arm-gnueabihf', 'linux-x64-musl', 'linux-arm64-musl'];
const SOURCE = 'source';
const SOURCE_TEST = 'source-build.test.js';
const ALL = [...PLATFORMS, SOURCE];
const say = (m) => process.stdout.write(`[test:platforms] ${m}\n`);

/** --targets and --from from argv (`--name value` or `--name=value`). */
function parseArgs(argv) {
  const opts = { targets: ALL, from: null };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '--targets') opts.targets = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--from') opts.from = path.resolve(value());
    else throw new Error(`unknown argument ${argv[i]}; usage: npm run test:platforms [-- --targets ${ALL.join(',')}] [--from result.json]`);
  }
  const unknown = opts.targets.filter((t) => !ALL.includes(t));
  if (unknown.length || !opts.targets.length) throw new Error(`unknown target(s) ${unknown.join(',') || '(none given)'}; known: ${ALL.join(', ')}`);
  return opts;
}

/** Runs a command with stderr (and optionally stdout) shown; resolves {status, stdout}. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], ...opts });
    let stdout = '';
    if (child.stdout) {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (opts.echo) process.stdout.write(d);
      });
    }
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ status: code === null ? `signal ${signal}` : code, stdout }));
  });
}

/** prebuilt.js's JSON: from --from, or from building the targets into `dir`. */
async function prebuilt(opts, dir) {
  if (opts.from) {
    say(`tarballs from ${opts.from} (not building)`);
    return JSON.parse(fs.readFileSync(opts.from, 'utf8'));
  }
  const targets = opts.targets.filter((t) => t !== SOURCE);
  if (!targets.length) return { platforms: {}, builds: {} };
  say(`building ${targets.join(', ')} with scripts/prebuilt.js into ${dir}`);
  const r = await run(process.execPath, ['scripts/prebuilt.js', '--targets', targets.join(','), '--out', dir], { echo: true });
  const last = r.stdout.trim().split('\n').pop();
  let result;
  try {
    result = JSON.parse(last);
  } catch {
    throw new Error(`scripts/prebuilt.js exited ${r.status} without its JSON line (last line: ${last})`);
  }
  if (r.status !== 0) say(`scripts/prebuilt.js exited ${r.status}; testing what it built`);
  return result;
}

const num = (v, digits = 1) => (typeof v === 'number' ? v.toFixed(digits) : '-');

/** The summary table, one row per requested target. */
function table(targets, result, metricsDir) {
  const rows = [['target', 'build s', 'bytes', 'install s', 'Node-RED start s', 'first task s', 'task round trip', 'GLIBC max', 'Node']];
  for (const t of targets.filter((x) => x !== SOURCE)) {
    const b = (result.builds && result.builds[t]) || {};
    const file = path.join(metricsDir, `${t}.json`);
    const m = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
    rows.push([
      t, b.error ? 'FAILED' : num(b.seconds), b.error ? '-' : String(b.bytes ?? '-'), num(m.installSeconds),
      num(m.startSeconds), num(m.firstTaskSeconds), m.roundTrip ? 'ok' : 'FAILED', m.glibcMax || '-', m.node || '-',
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-platforms-'));
  const result = await prebuilt(opts, path.join(tmp, 'dist'));
  const resultFile = path.join(tmp, 'result.json');
  fs.writeFileSync(resultFile, JSON.stringify(result, null, 2));
  const metrics = path.join(tmp, 'metrics');
  fs.mkdirSync(metrics);
  const failedBuilds = opts.targets.filter((t) => t !== SOURCE).filter((t) => !result.platforms || !result.platforms[t] || (result.builds && result.builds[t] && result.builds[t].error));
  for (const t of failedBuilds) say(`${t}: no package built (${(result.builds && result.builds[t] && result.builds[t].error) || 'not in the JSON'})`);

  const dir = path.join(root, 'tests', 'platforms');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.test.js') && (f !== SOURCE_TEST || opts.targets.includes(SOURCE)))
    .sort().map((f) => path.join('tests', 'platforms', f));
  say(`targets: ${opts.targets.join(', ')}; not run: ${ALL.filter((t) => !opts.targets.includes(t)).join(', ') || 'none'}`);
  const tests = await run(process.execPath, ['--test', '--test-concurrency=1', ...files], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DBC_PLATFORMS_RESULT: resultFile, DBC_PLATFORMS_TARGETS: opts.targets.filter((t) => t !== SOURCE).join(','), DBC_PLATFORMS_METRICS: metrics },
  });

  process.stdout.write(`\n${table(opts.targets, result, metrics)}\n\n`);
  if (failedBuilds.length) say(`FAILED: did not build: ${failedBuilds.join(', ')}`);
  if (tests.status !== 0) say(`FAILED: tests exited ${tests.status}`);
  const failed = failedBuilds.length > 0 || tests.status !== 0;
  // kept to look into after a failure; tarballs built here are a few MB per target
  if (failed) say(`JSON, tarballs and numbers kept in ${tmp}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`[test:platforms] ${err.message}\n`);
  process.exitCode = 1;
});
