#!/usr/bin/env node
/**
 * npm "install" step: makes sure native/ holds a loadable addon built from these sources.
 *
 * - A prebuilt binary that is newer than every Rust source and migration, and loads: done.
 * - Otherwise: `cargo build --release --locked` (about 2 minutes the first time) and copy
 *   the library next to the committed loader (native/index.js).
 * Set DBC_SKIP_BUILD=1 to skip (e.g. when a per-platform package provides the binary).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const say = (m) => process.stdout.write(`[database-connector] ${m}\n`);

function triple() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const glibc = process.report && process.report.getReport().header.glibcVersionRuntime;
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

function newestSource() {
  let newest = 0;
  const walk = (p) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) {
      for (const f of fs.readdirSync(p)) if (f !== 'target') walk(path.join(p, f));
    } else newest = Math.max(newest, st.mtimeMs);
  };
  for (const p of ['crates', 'migrations', 'Cargo.toml', 'Cargo.lock']) {
    if (fs.existsSync(path.join(root, p))) walk(path.join(root, p));
  }
  return newest;
}

function loads() {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(root, 'native'))}).version()`], { stdio: 'pipe' });
  return r.status === 0;
}

function main() {
  if (process.env.DBC_SKIP_BUILD) return say('DBC_SKIP_BUILD is set: not building the addon');
  const binary = path.join(root, 'native', `dbc.${triple()}.node`);
  const hasSources = fs.existsSync(path.join(root, 'crates'));
  if (fs.existsSync(binary) && (!hasSources || fs.statSync(binary).mtimeMs >= newestSource()) && loads()) {
    return say(`native addon ${path.basename(binary)} is up to date`);
  }
  if (!hasSources) {
    if (loads()) return say('using the prebuilt native addon');
    throw new Error('no prebuilt addon for this platform and no Rust sources to build one');
  }
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'pipe' });
  if (cargo.status !== 0) {
    throw new Error('building the addon needs Rust (cargo); install it from https://rustup.rs and run npm install again');
  }
  say('compiling the Rust addon (release profile); the first build takes about 2 minutes…');
  const started = Date.now();
  const build = spawnSync('cargo', ['build', '--release', '--locked', '-p', 'dbc-node'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status})`);
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  const lib = { darwin: 'libdbc_node.dylib', win32: 'dbc_node.dll' }[process.platform] || 'libdbc_node.so';
  fs.mkdirSync(path.dirname(binary), { recursive: true });
  fs.copyFileSync(path.join(targetDir, 'release', lib), binary);
  if (!loads()) throw new Error(`built ${binary} but it does not load`);
  say(`built ${path.basename(binary)} in ${Math.round((Date.now() - started) / 1000)} s`);
}

try {
  main();
} catch (err) {
  say(`install failed: ${err.message}`);
  process.exit(1);
}
