#!/usr/bin/env node
/**
 * npm "install" step: makes sure the addon loads, in this order (docs/RELEASING.md):
 *
 * 1. native/dbc.<platform>.node exists, is newer than every Rust source and migration,
 *    and loads: done (a checkout that was built before).
 * 2. The per-platform package (`node-red-contrib-database-connector-<platform>`, an
 *    optionalDependency that npm installs only on its platform) is present, has this
 *    package's version, and loads: done — no Rust toolchain needed.
 * 3. No prebuilt addon: a source build needs cargo at least as new as Cargo.toml's
 *    rust-version and a C compiler (the bundled SQLite and ring have C inside). If
 *    either is missing, fail at once saying what to install — never start a build that
 *    cannot finish.
 * 4. Build from source (automatic when the toolchain is there; DBC_BUILD_FROM_SOURCE=1
 *    forces it even when 1 or 2 would do):
 *    - in a git checkout, `cargo build --release --locked` into ./target (kept, so the
 *      next build is incremental), as the README's `npm install` does;
 *    - in an installed package, the lighter `source-install` profile (Cargo.toml) into
 *      a temporary target dir that is removed afterwards, also on failure, so a
 *      Node-RED user dir does not keep a gigabyte of build output. A CARGO_TARGET_DIR
 *      set by the user is used instead, and kept.
 *    The library is copied next to the committed loader (native/index.js).
 *
 * Platform names are napi's, resolved as native/index.js (napi's generated loader)
 * resolves them, musl detection included. npm's --os/--cpu/--libc choose which
 * optional packages are downloaded; the addon still has to load on this machine, so
 * they are not consulted.
 *
 * Environment: DBC_SKIP_BUILD=1 skips all of it; DBC_BUILD_FROM_SOURCE=1 forces step 4;
 * DBC_INSTALL_PLATFORM=<napi platform> pretends to run on another platform (for
 * tests/integration/install.test.js only: nothing built for that name would load here).
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const say = (m) => process.stdout.write(`[database-connector] ${m}\n`);

/** Whether this Linux runs on musl, decided as napi's loader decides it. */
function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    // no /usr/bin/ldd: ask the process report, as the loader does next
  }
  const report = process.report && typeof process.report.getReport === 'function' ? process.report.getReport() : null;
  if (!report) {
    const ldd = spawnSync('ldd', ['--version'], { encoding: 'utf8' });
    return `${ldd.stdout}${ldd.stderr}`.includes('musl');
  }
  if (report.header && report.header.glibcVersionRuntime) return false;
  return Array.isArray(report.sharedObjects) && report.sharedObjects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'));
}

/**
 * napi's platform name for this machine, the `<platform>` in native/dbc.<platform>.node
 * and in the package name node-red-contrib-database-connector-<platform>: linux-x64-gnu,
 * linux-arm64-musl, linux-arm-gnueabihf, darwin-arm64, win32-x64-msvc, …
 * @returns {string}
 */
function triple() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    if (arch === 'arm') return isMusl() ? 'linux-arm-musleabihf' : 'linux-arm-gnueabihf';
    if (arch === 'ppc64' || arch === 's390x') return `linux-${arch}-gnu`;
    return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`;
  }
  if (platform === 'win32') {
    const v = (process.config && process.config.variables) || {};
    const gnu = arch === 'x64' && (v.shlib_suffix === 'dll.a' || v.node_target_type === 'shared_library');
    return `win32-${arch}-${gnu ? 'gnu' : 'msvc'}`;
  }
  if (platform === 'android') return arch === 'arm' ? 'android-arm-eabi' : `android-${arch}`;
  return `${platform}-${arch}`;
}

/** Platforms that have a prebuilt package: the optionalDependencies, minus the name prefix. */
function prebuiltPlatforms() {
  const prefix = `${pkg.name}-`;
  return Object.keys(pkg.optionalDependencies || {}).filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length));
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

/** The per-platform package: its name, and its directory when installed with our version. */
function platformPackage(platform) {
  const name = `${pkg.name}-${platform}`;
  try {
    const manifest = require.resolve(`${name}/package.json`, { paths: [root] });
    const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'));
    if (version !== pkg.version) {
      say(`${name} is ${version}, not ${pkg.version}: not using it`);
      return { name, dir: null };
    }
    return { name, dir: path.dirname(manifest) };
  } catch {
    return { name, dir: null };
  }
}

/** "1.94" → [1, 94, 0], for comparing versions. */
const versionParts = (v) => [...v.split('.').map(Number), 0, 0, 0].slice(0, 3);
function older(a, b) {
  const [x, y] = [versionParts(a), versionParts(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return false;
}

/** Whether an executable called `name` is on PATH. */
function onPath(name) {
  const exts = process.platform === 'win32' ? (process.env.PATHEXT || '.EXE;.CMD').split(';') : [''];
  return (process.env.PATH || '').split(path.delimiter).filter(Boolean).some((dir) => exts.some((ext) => {
    try {
      fs.accessSync(path.join(dir, name + ext), fs.constants.X_OK);
      return fs.statSync(path.join(dir, name + ext)).isFile();
    } catch {
      return false;
    }
  }));
}

/** What a source build lacks here: a list of sentences, empty when the toolchain will do. */
function missingToolchain() {
  const cargoToml = fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8');
  const need = (cargoToml.match(/^rust-version\s*=\s*"([\d.]+)"/m) || [])[1] || '0';
  const missing = [];
  // rustup's proxy may try to download a toolchain: give it a bound, not a hang
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8', timeout: 30000 });
  const version = cargo.status === 0 && (cargo.stdout.match(/^cargo (\d+\.\d+(?:\.\d+)?)/) || [])[1];
  if (cargo.error && cargo.error.code === 'ENOENT') missing.push('cargo (Rust) was not found on PATH');
  else if (cargo.error || cargo.status !== 0) {
    const said = `${cargo.stderr || ''}`.trim().split('\n')[0];
    missing.push(`"cargo --version" failed (${cargo.error ? cargo.error.code : `exit ${cargo.status}`})${said ? `: ${said}` : ''}`);
  }
  else if (!version) missing.push(`"cargo --version" printed ${JSON.stringify(cargo.stdout.trim())}, not a version`);
  else if (older(version, need)) missing.push(`cargo ${version} is older than Rust ${need}, which this package needs (Cargo.toml rust-version)`);
  // MSVC's compiler is found by the cc crate without PATH, so Windows is not checked
  if (process.platform !== 'win32' && !process.env.CC && !['cc', 'gcc', 'clang'].some(onPath)) {
    missing.push('no C compiler (cc, gcc or clang) on PATH');
  }
  return { need, missing };
}

/** Runs cargo; resolves with its exit code. SIGINT/SIGTERM stop it, and the caller's cleanup still runs. */
function cargoBuild(args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn('cargo', args, { cwd: root, stdio: 'inherit', env });
    const stop = (signal) => child.kill(signal);
    process.on('SIGINT', stop).on('SIGTERM', stop);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      resolve(signal ? `signal ${signal}` : code);
    });
  });
}

/** Builds the addon from source and copies it to `binary`. */
async function buildFromSource(binary, checkout) {
  const lib = { darwin: 'libdbc_node.dylib', win32: 'dbc_node.dll' }[process.platform] || 'libdbc_node.so';
  const profile = checkout ? 'release' : 'source-install';
  const ownTarget = process.env.CARGO_TARGET_DIR;
  const temporary = !checkout && !ownTarget;
  const targetDir = ownTarget || (temporary ? fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-build-')) : path.join(root, 'target'));
  say(`compiling the Rust addon (profile ${profile}, target dir ${targetDir}${temporary ? ', removed afterwards' : ''}); this takes a few minutes…`);
  const started = Date.now();
  try {
    const code = await cargoBuild(['build', '--profile', profile, '--locked', '-p', 'dbc-node'], { ...process.env, CARGO_TARGET_DIR: targetDir });
    if (code !== 0) throw new Error(`cargo build failed (${typeof code === 'number' ? `exit ${code}` : code})`);
    fs.mkdirSync(path.dirname(binary), { recursive: true });
    fs.copyFileSync(path.join(targetDir, profile, lib), binary);
  } finally {
    if (temporary) fs.rmSync(targetDir, { recursive: true, force: true });
  }
  if (!loads(binary)) throw new Error(`built ${binary} but it does not load`);
  say(`built ${path.basename(binary)} in ${Math.round((Date.now() - started) / 1000)} s${temporary ? '; removed the temporary target dir' : ''}`);
}

/** The message of a failed install when no prebuilt addon fits and a build cannot run. */
function cannotBuild(platform, prebuilt, why, need, checkout) {
  const available = prebuiltPlatforms();
  const lines = [`no prebuilt addon for ${platform} is installed, and it cannot be built here:`, ...why.map((w) => `  - ${w}`)];
  if (checkout) {
    lines.push('This is a git checkout: it builds the addon from its sources (README.md "Try it from this checkout").');
  } else if (available.includes(platform)) {
    lines.push(
      `${prebuilt} (the prebuilt addon for ${platform}) exists, but npm did not install it: optional dependencies were left out`,
      '(--omit=optional, --no-optional, or omit=optional in an .npmrc). Install again without omitting optional dependencies',
      `(e.g. npm install --include=optional ${pkg.name}), and no Rust toolchain is needed.`,
    );
  } else {
    lines.push(`Prebuilt addons exist for: ${available.join(', ')}.`);
  }
  lines.push(`Or install Rust >= ${need} (https://rustup.rs) and a C compiler (Debian/Ubuntu/Raspberry Pi OS: apt install build-essential;`,
    'Alpine: apk add build-base; macOS: xcode-select --install), then install again: the addon is then compiled from source.');
  return lines.join('\n');
}

async function main() {
  if (process.env.DBC_SKIP_BUILD) return say('DBC_SKIP_BUILD is set: not building the addon');
  const platform = process.env.DBC_INSTALL_PLATFORM || triple();
  const force = process.env.DBC_BUILD_FROM_SOURCE === '1';
  const binary = path.join(root, 'native', `dbc.${platform}.node`);
  const hasSources = fs.existsSync(path.join(root, 'crates'));
  const checkout = fs.existsSync(path.join(root, '.git'));
  if (!force && fs.existsSync(binary) && (!hasSources || fs.statSync(binary).mtimeMs >= newestSource()) && loads(binary)) {
    return say(`native addon ${path.basename(binary)} is up to date`);
  }
  const prebuilt = platformPackage(platform);
  if (!force && prebuilt.dir && !fs.existsSync(binary)) {
    if (loads(path.join(root, 'native'))) return say(`using the prebuilt addon from ${prebuilt.name}`);
    say(`${prebuilt.name} is installed but does not load here: building from source instead`);
  }
  if (!hasSources) throw new Error(`no prebuilt addon for ${platform} and no Rust sources to build one`);
  const { need, missing } = missingToolchain();
  if (missing.length) throw new Error(cannotBuild(platform, prebuilt.name, missing, need, checkout));
  if (force) say('DBC_BUILD_FROM_SOURCE=1: building from source');
  else if (!checkout && !prebuilt.dir && prebuiltPlatforms().includes(platform)) {
    say(`${prebuilt.name} was not installed (optional dependencies omitted?): building from source instead`);
  }
  await buildFromSource(binary, checkout);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`[database-connector] install failed: ${err.message}\n`);
    process.exitCode = 1;
  });
}

/** For scripts/prebuilt.js and the tests: this machine's napi platform name. */
module.exports = { triple };
