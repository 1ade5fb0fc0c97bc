/**
 * A source build as a user gets it (issue 14 item 4; slow: `npm run test:platforms`):
 * the packed main package installed into a fresh Node-RED user dir with cargo and a C
 * compiler on PATH and no platform package (`--omit=optional`, so npm cannot bring the
 * prebuilt one). scripts/install.js must compile the addon with the lighter
 * `source-install` profile in a temporary target dir under TMPDIR, remove that dir
 * afterwards, leave no target/ and nothing big in the user dir, and the addon it built
 * must load through the node's service and run a query and a task on SQLite.
 *
 * Prints the build seconds (from the install script's own "built … in N s" line) and
 * the peak size of the temporary target dir (sampled with `du` every few seconds).
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { root } = require('../support');
const { triple } = require('../../scripts/install');

const pkg = require('../../package.json');
const MAX_USER_DIR_BYTES = 50 * 1024 * 1024;

/** Size in bytes of everything under `dir` (0 when it is gone). */
function duBytes(dir) {
  const r = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split('\t')[0]) * 1024 : 0;
}

/** Every path under `dir` whose name is `name`. */
function findNamed(dir, name, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.name === name) out.push(p);
    if (e.isDirectory() && !e.isSymbolicLink()) findNamed(p, name, out);
  }
  return out;
}

test('the packed package builds from source in a removed temp target dir, and the addon runs a task on SQLite', { timeout: 60 * 60 * 1000 }, async (t) => {
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' });
  assert.equal(cargo.status, 0, 'this test needs cargo on PATH');
  assert.ok(['cc', 'gcc', 'clang'].some((c) => spawnSync(c, ['--version']).status === 0), 'this test needs a C compiler on PATH');

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-srcbuild-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const tmpDir = path.join(tmp, 'tmpdir');
  const userDir = path.join(tmp, 'user');
  fs.mkdirSync(tmpDir);
  fs.mkdirSync(userDir);
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', private: true }));

  const packed = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: root, encoding: 'utf8' });
  assert.equal(packed.status, 0, packed.stderr);
  const tarball = path.join(tmp, JSON.parse(packed.stdout)[0].filename);

  const env = { ...process.env, TMPDIR: tmpDir };
  for (const k of ['CARGO_TARGET_DIR', 'DBC_SKIP_BUILD', 'DBC_BUILD_FROM_SOURCE', 'DBC_INSTALL_PLATFORM']) delete env[k];
  let peak = 0;
  let sawBuildDir = false;
  const started = Date.now();
  const result = await new Promise((resolve, reject) => {
    const child = spawn('npm', ['install', '--foreground-scripts', '--no-audit', '--no-fund', '--omit=optional', tarball], {
      cwd: userDir, env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    // sampling, not waiting: the size of the temp target dir while cargo fills it
    const sampler = setInterval(() => {
      const dirs = fs.readdirSync(tmpDir).filter((f) => f.startsWith('dbc-build-'));
      if (dirs.length) sawBuildDir = true;
      peak = Math.max(peak, ...dirs.map((d) => duBytes(path.join(tmpDir, d))));
    }, 5000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(sampler);
      resolve({ code, output });
    });
  });
  const wall = (Date.now() - started) / 1000;
  assert.equal(result.code, 0, result.output);

  const built = result.output.match(new RegExp(`built dbc\\.${triple()}\\.node in (\\d+) s; removed the temporary target dir`));
  assert.ok(built, result.output);
  assert.match(result.output, /compiling the Rust addon \(profile source-install, target dir .*dbc-build-\w+, removed afterwards\)/);
  assert.match(result.output, new RegExp(`${pkg.name}-${triple()} was not installed \\(optional dependencies omitted\\?\\): building from source instead`));
  assert.ok(sawBuildDir, 'the build did not happen in a dbc-build-* dir under TMPDIR');
  assert.deepEqual(fs.readdirSync(tmpDir).filter((f) => f.startsWith('dbc-build-')), [], 'the temporary target dir was left behind');
  t.diagnostic(`source build: ${built[1]} s (install script), npm install ${wall.toFixed(0)} s wall, temp target dir peak ${(peak / 1048576).toFixed(0)} MB (sampled every 5 s)`);

  const installed = path.join(userDir, 'node_modules', pkg.name);
  assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'a real install, not a link to the checkout');
  assert.deepEqual(findNamed(userDir, 'target'), [], 'a target/ dir in the user dir');
  const binary = path.join(installed, 'native', `dbc.${triple()}.node`);
  assert.ok(fs.existsSync(binary), `${binary} was not built`);
  const size = duBytes(userDir);
  t.diagnostic(`user dir ${(size / 1048576).toFixed(1)} MB, addon ${(fs.statSync(binary).size / 1048576).toFixed(1)} MB`);
  assert.ok(size < MAX_USER_DIR_BYTES, `the user dir holds ${size} bytes`);

  // the node's service, as Node-RED loads it from the user dir, on SQLite
  const script = `
    const service = require(${JSON.stringify(`${pkg.name}/nodes/database-connector/database-service.js`)});
    (async () => {
      const db = await service.open({ primary: { provider: 'sqlite', sqliteFile: 'source-build.db' }, tablePrefix: 'dbc_' });
      const q = await db.query("SELECT 'source' AS addon");
      const task = await db.execute('insertTask', { queue: 'built', payload: { n: 1 } });
      const back = await db.execute('getTask', { id: task.value.id });
      await db.close();
      process.stdout.write(JSON.stringify({ rows: q.rows, queue: back.value.queue, payload: back.value.payload, status: back.value.status }));
    })().catch((err) => { console.error(err); process.exit(1); });`;
  const run = spawnSync(process.execPath, ['-e', script], { cwd: userDir, encoding: 'utf8', env });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), { rows: [{ addon: 'source' }], queue: 'built', payload: { n: 1 }, status: 'pending' });
});
