/**
 * scripts/install.js as a user's `npm install` runs it where no prebuilt addon fits and
 * no usable Rust toolchain is present (docs/RELEASING.md, issue 14 "no surprise
 * compiles"): it must fail within seconds with exit 1, name the platform, the platforms
 * that have prebuilt packages and what to install — or, when the platform's prebuilt
 * package exists but npm left it out, say to install again with optional dependencies —
 * and must build and write nothing.
 *
 * The package is laid out as npm installs it (node_modules/<name>/ holding the packed
 * files the script reads; no .git, no native binary, no platform package), PATH has no
 * Rust (a fake `cargo` where a case needs one), and TMPDIR is an empty dir of the test,
 * so a temporary target dir or anything else written would show.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { root } = require('../support');
const { triple } = require('../../scripts/install');

const pkg = require('../../package.json');
const rustVersion = fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8').match(/^rust-version\s*=\s*"([\d.]+)"/m)[1];
const prebuilt = Object.keys(pkg.optionalDependencies).map((n) => n.slice(pkg.name.length + 1));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-install-'));
const pkgDir = path.join(tmp, 'user', 'node_modules', pkg.name);
const tmpDir = path.join(tmp, 'tmpdir');
const fakeBin = path.join(tmp, 'bin');
const cargoLog = path.join(tmp, 'cargo-calls.log');
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// the packed files scripts/install.js reads (tests/integration/package.test.js checks they are packed)
for (const f of ['package.json', 'Cargo.toml', 'Cargo.lock', 'scripts/install.js', 'native/index.js', 'native/index.d.ts',
  'crates/dbc-core/Cargo.toml', 'crates/dbc-node/Cargo.toml', 'crates/dbc-node/build.rs']) {
  fs.mkdirSync(path.dirname(path.join(pkgDir, f)), { recursive: true });
  fs.copyFileSync(path.join(root, f), path.join(pkgDir, f));
}
fs.mkdirSync(tmpDir);
fs.mkdirSync(fakeBin);

/** PATH without any directory that holds cargo, rustc or rustup. */
const pathWithoutRust = process.env.PATH.split(path.delimiter)
  .filter((d) => !['cargo', 'rustc', 'rustup'].some((b) => fs.existsSync(path.join(d, b))))
  .join(path.delimiter);

/** Puts a `cargo` on fakeBin that logs its arguments and says it is `version`. */
function fakeCargo(version) {
  fs.writeFileSync(path.join(fakeBin, 'cargo'), `#!/bin/sh\necho "$@" >> '${cargoLog}'\necho 'cargo ${version} (0000000 2024-01-01)'\n`, { mode: 0o755 });
}

/** Every file under `dir` with its size and mtime, to show that nothing was written. */
function snapshot(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = fs.statSync(p);
        out[path.relative(tmp, p)] = `${st.size} ${st.mtimeMs}`;
      }
    }
  };
  walk(dir);
  return out;
}

/** Runs the install script as npm would (cwd = the package); returns its output, exit code and seconds. */
function install(env) {
  fs.rmSync(cargoLog, { force: true });
  const before = { pkg: snapshot(pkgDir), tmp: snapshot(tmpDir) };
  const started = Date.now();
  const r = spawnSync(process.execPath, ['scripts/install.js'], {
    cwd: pkgDir,
    encoding: 'utf8',
    timeout: 60000,
    env: { ...process.env, TMPDIR: tmpDir, CARGO_HOME: path.join(tmp, 'no-cargo-home'), CARGO_TARGET_DIR: '', DBC_SKIP_BUILD: '', DBC_BUILD_FROM_SOURCE: '', ...env },
  });
  const secs = (Date.now() - started) / 1000;
  assert.deepEqual(snapshot(pkgDir), before.pkg, 'the install wrote into the package');
  assert.deepEqual(snapshot(tmpDir), before.tmp, 'the install left something in TMPDIR');
  assert.ok(!fs.existsSync(path.join(pkgDir, 'target')), 'no target/ in the package');
  const calls = fs.existsSync(cargoLog) ? fs.readFileSync(cargoLog, 'utf8').trim().split('\n') : [];
  assert.ok(calls.every((c) => c === '--version'), `cargo was asked for more than its version: ${calls}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}`, secs, error: r.error };
}

test('the package.json lists prebuilt platforms, and this test runs without Rust on PATH', () => {
  assert.ok(prebuilt.length >= 1 && prebuilt.every((p) => /^[a-z0-9]+-[a-z0-9]+(-[a-z]+)?$/.test(p)), `${prebuilt}`);
  assert.notEqual(spawnSync('cargo', ['--version'], { env: { ...process.env, PATH: pathWithoutRust } }).status, 0, 'cargo must not be reachable');
});

test('an unsupported platform without cargo fails within seconds, naming the platform, the prebuilt ones and what to install', (t) => {
  const platform = 'linux-riscv64-gnu';
  assert.ok(!prebuilt.includes(platform), `${platform} now has a prebuilt package: pick another platform for this test`);
  const r = install({ PATH: pathWithoutRust, DBC_INSTALL_PLATFORM: platform });
  t.diagnostic(`unsupported platform, no cargo: exit ${r.status} in ${r.secs.toFixed(2)} s`);
  assert.equal(r.error, undefined);
  assert.equal(r.status, 1, r.output);
  assert.ok(r.secs < 10, `took ${r.secs} s`);
  assert.match(r.output, new RegExp(`no prebuilt addon for ${platform}`));
  assert.match(r.output, /cargo \(Rust\) was not found on PATH/);
  assert.match(r.output, new RegExp(`Prebuilt addons exist for: ${prebuilt.join(', ')}\\.`));
  assert.match(r.output, new RegExp(`Rust >= ${rustVersion.replace('.', '\\.')} \\(https://rustup\\.rs\\) and a C compiler`));
  assert.doesNotMatch(r.output, /compiling the Rust addon/);
});

test('cargo older than the crate\'s rust-version fails just as fast, saying the version', (t) => {
  fakeCargo('1.80.0');
  const r = install({ PATH: [fakeBin, pathWithoutRust].join(path.delimiter), DBC_INSTALL_PLATFORM: 'linux-riscv64-gnu' });
  t.diagnostic(`cargo 1.80.0: exit ${r.status} in ${r.secs.toFixed(2)} s`);
  assert.equal(r.status, 1, r.output);
  assert.ok(r.secs < 10, `took ${r.secs} s`);
  assert.match(r.output, new RegExp(`cargo 1\\.80\\.0 is older than Rust ${rustVersion.replace('.', '\\.')}`));
  assert.match(r.output, /no prebuilt addon for linux-riscv64-gnu/);
  assert.match(r.output, /Prebuilt addons exist for: /);
  assert.doesNotMatch(r.output, /compiling the Rust addon/);
});

test('a cargo that cannot run (rustup without a default toolchain) fails fast with what it said', () => {
  fs.writeFileSync(path.join(fakeBin, 'cargo'), `#!/bin/sh\necho "$@" >> '${cargoLog}'\necho 'error: rustup could not choose a version of cargo to run' >&2\nexit 1\n`, { mode: 0o755 });
  const r = install({ PATH: [fakeBin, pathWithoutRust].join(path.delimiter), DBC_INSTALL_PLATFORM: 'linux-riscv64-gnu' });
  assert.equal(r.status, 1, r.output);
  assert.ok(r.secs < 10, `took ${r.secs} s`);
  assert.match(r.output, /"cargo --version" failed \(exit 1\): error: rustup could not choose a version of cargo to run/);
});

test('a new enough cargo without a C compiler fails, saying so', () => {
  fakeCargo(`${rustVersion}.0`);
  // only the fake cargo on PATH: no cc, gcc or clang
  const r = install({ PATH: fakeBin, CC: '', DBC_INSTALL_PLATFORM: 'linux-riscv64-gnu' });
  assert.equal(r.status, 1, r.output);
  assert.ok(r.secs < 10, `took ${r.secs} s`);
  assert.match(r.output, /no C compiler \(cc, gcc or clang\) on PATH/);
  assert.doesNotMatch(r.output, /cargo .*(not found|older than)/);
});

test('on a platform with a prebuilt package that npm left out, it says to install again with optional dependencies', (t) => {
  const platform = prebuilt.includes(triple()) ? triple() : prebuilt[0];
  const r = install({ PATH: pathWithoutRust, DBC_INSTALL_PLATFORM: platform });
  t.diagnostic(`${platform} without its optional package: exit ${r.status} in ${r.secs.toFixed(2)} s`);
  assert.equal(r.status, 1, r.output);
  assert.ok(r.secs < 10, `took ${r.secs} s`);
  assert.match(r.output, new RegExp(`${pkg.name}-${platform} \\(the prebuilt addon for ${platform}\\) exists, but npm did not install it`));
  assert.match(r.output, /--omit=optional, --no-optional/);
  assert.match(r.output, /Install again without omitting optional dependencies/);
  assert.doesNotMatch(r.output, /Prebuilt addons exist for/);
});

test('in a git checkout without cargo it says that a checkout builds from source, not to reinstall', () => {
  const gitFile = path.join(pkgDir, '.git');
  fs.writeFileSync(gitFile, 'gitdir: /nowhere\n'); // what a worktree's .git holds
  try {
    const r = install({ PATH: pathWithoutRust, DBC_INSTALL_PLATFORM: prebuilt[0] });
    assert.equal(r.status, 1, r.output);
    assert.match(r.output, /This is a git checkout: it builds the addon from its sources/);
    assert.match(r.output, /cargo \(Rust\) was not found on PATH/);
    assert.doesNotMatch(r.output, /npm did not install it/);
  } finally {
    fs.rmSync(gitFile);
  }
});

test('DBC_SKIP_BUILD=1 skips everything', () => {
  const r = install({ PATH: pathWithoutRust, DBC_SKIP_BUILD: '1', DBC_INSTALL_PLATFORM: 'linux-riscv64-gnu' });
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /DBC_SKIP_BUILD is set: not building the addon/);
});
