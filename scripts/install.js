#!/usr/bin/env node
/**
 * npm "install" step: makes sure the addon loads, in this order (docs/RELEASING.md):
 *
 * 1. native/dbc.<platform>.node exists, is newer than every Rust source and migration,
 *    and loads: done (a checkout that was built before).
 * 2. The per-platform package (`node-red-contrib-database-connector-<platform>`, an
 *    optionalDependency that npm installs only on its platform) is present, has this
 *    package's version, and loads: done — no Rust toolchain needed.
 * 3. The Rust sources are here: `cargo build --release --locked` (about 2 minutes the
 *    first time) and copy the library next to the committed loader (native/index.js).
 * 4. Otherwise: fail, saying what is missing.
 * Set DBC_SKIP_BUILD=1 to skip all of it.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const say = (m) => process.stdout.write(`[database-connector] ${m}\n`);

/** napi's platform name: linux-x64-gnu, linux-arm64-musl, darwin-arm64, win32-x64-msvc, … */
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

/** Whether `target` (a file or package path) loads in a fresh Node and answers version(). */
function loads(target) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(target)}).version()`], { stdio: 'pipe' });
  return r.status === 0;
}

/** The per-platform package's directory when it is installed with our version, else null. */
function platformPackage() {
  const name = `${pkg.name}-${triple()}`;
  try {
    const manifest = require.resolve(`${name}/package.json`, { paths: [root] });
    const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'));
    if (version !== pkg.version) {
      say(`${name} is ${version}, not ${pkg.version}: not using it`);
      return null;
    }
    return path.dirname(manifest);
  } catch {
    return null;
  }
}

function main() {
  if (process.env.DBC_SKIP_BUILD) return say('DBC_SKIP_BUILD is set: not building the addon');
  const binary = path.join(root, 'native', `dbc.${triple()}.node`);
  const hasSources = fs.existsSync(path.join(root, 'crates'));
  if (fs.existsSync(binary) && (!hasSources || fs.statSync(binary).mtimeMs >= newestSource()) && loads(binary)) {
    return say(`native addon ${path.basename(binary)} is up to date`);
  }
  const prebuilt = fs.existsSync(binary) ? null : platformPackage();
  if (prebuilt && loads(path.join(root, 'native'))) {
    return say(`using the prebuilt addon from ${path.basename(prebuilt)}`);
  }
  if (!hasSources) {
    throw new Error(`no prebuilt addon for ${triple()} and no Rust sources to build one`);
  }
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'pipe' });
  if (cargo.error || cargo.status !== 0) {
    throw new Error(`no prebuilt addon for ${triple()}; building one needs Rust (cargo): install it from https://rustup.rs and run npm install again`);
  }
  say('compiling the Rust addon (release profile); the first build takes about 2 minutes…');
  const started = Date.now();
  const build = spawnSync('cargo', ['build', '--release', '--locked', '-p', 'dbc-node'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error(`cargo build failed (exit ${build.status})`);
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
  const lib = { darwin: 'libdbc_node.dylib', win32: 'dbc_node.dll' }[process.platform] || 'libdbc_node.so';
  fs.mkdirSync(path.dirname(binary), { recursive: true });
  fs.copyFileSync(path.join(targetDir, 'release', lib), binary);
  if (!loads(binary)) throw new Error(`built ${binary} but it does not load`);
  say(`built ${path.basename(binary)} in ${Math.round((Date.now() - started) / 1000)} s`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    say(`install failed: ${err.message}`);
    process.exit(1);
  }
}

module.exports = { triple };
