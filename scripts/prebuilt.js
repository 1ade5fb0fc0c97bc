#!/usr/bin/env node
/**
 * `npm run prebuilt [-- --targets a,b] [--out DIR] [--local]`: the prebuilt Linux
 * platform packages, cross-built on this machine, and the main package, packed.
 *
 * For each Linux target of package.json `napi.targets` (or those named by --targets,
 * as napi platform names like linux-arm64-gnu or as Rust triples):
 * 1. scripts/cross-setup.js makes sure the toolchain is there (Rust >= rust-version with
 *    rust-src, zig and cargo-zigbuild);
 * 2. `cargo zigbuild --release --locked -p dbc-node --target <triple>[.2.28]` into
 *    target/cross/<triple> (kept, so a second run is incremental): gnu targets are linked
 *    against glibc 2.28's symbols, musl ones with `-C target-feature=-crt-static` (a
 *    cdylib needs musl's libc.so); a target whose std the toolchain lacks gets
 *    `-Zbuild-std=std,panic_unwind` (the release profile's panic = "unwind" is kept);
 * 3. the binary is checked (ELF machine; gnu: highest GLIBC_ symbol <= 2.28; musl: no
 *    GLIBC_ symbol and only musl's libc NEEDED) and packed as dbc.<platform>.node in a
 *    temporary copy of npm/<platform>/ (the checkout keeps no binary).
 * A failing target does not stop the others; its error (the last compiler lines) is
 * recorded and the exit status is 1 at the end. With --local nothing is cross-built:
 * the host's own native/dbc.<platform>.node (built by scripts/install.js when missing)
 * is packed instead — the quick path tests/integration/package.test.js uses.
 *
 * Tarballs go to DIR (default dist/), with DIR/result.json rewritten after each target so
 * a consumer (scripts/test-platforms.js) can start early. The last stdout line is the
 * same JSON: {"main": tgz, "platforms": {platform: tgz}, "builds": {platform:
 * {"seconds", "bytes", "needed", "glibc"} or {"error"}}}.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));

/** Oldest glibc the gnu binaries may need: Debian 10, Ubuntu 20.04, RHEL 8. */
const GLIBC_BASELINE = '2.28';
const ELF_MACHINE = { x86_64: 'X86-64', aarch64: 'AArch64', armv7: 'ARM' };

const say = (m) => process.stderr.write(`[prebuilt] ${m}\n`);

/** napi's platform name of a Rust target triple, as in npm/<platform> and native/index.js. */
function napiPlatform(triple) {
  const [arch, , os, abi] = triple.split('-');
  const cpu = { x86_64: 'x64', aarch64: 'arm64', armv7: 'arm' }[arch] || arch;
  if (os === 'darwin') return `darwin-${cpu}`;
  if (os === 'windows') return `win32-${cpu}-${abi}`;
  return `${os}-${cpu}-${abi}`;
}

/** napi's platform name of the running machine (Linux only), as native/index.js picks it. */
function hostPlatform() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const report = process.report && process.report.getReport ? process.report.getReport() : null;
  const musl = !(report && report.header && report.header.glibcVersionRuntime);
  if (process.arch === 'arm') return `linux-arm-${musl ? 'musleabihf' : 'gnueabihf'}`;
  return `linux-${process.arch}-${musl ? 'musl' : 'gnu'}`;
}

/** The Linux targets of napi.targets: [{ platform, triple }]. */
function linuxTargets() {
  return pkg.napi.targets.filter((t) => t.includes('-linux-')).map((triple) => ({ platform: napiPlatform(triple), triple }));
}

function parseArgs(argv) {
  const value = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const all = linuxTargets();
  let targets = all;
  if (value('--targets')) {
    targets = value('--targets').split(',').map((name) => {
      const t = all.find((x) => x.platform === name || x.triple === name);
      if (!t) throw new Error(`unknown target ${name}: one of ${all.map((x) => x.platform).join(', ')}`);
      return t;
    });
  }
  return { targets, local: argv.includes('--local'), out: path.resolve(value('--out') || path.join(root, 'dist')) };
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})\n${r.stdout || ''}`);
  return r.stdout;
}

/** npm pack of `dir` into `out`; returns the tarball's absolute path. */
function pack(dir, out) {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', out, dir]));
  return path.join(out, info.filename);
}

/**
 * Runs a build, its output passed through to stderr; resolves to { status, tail } with
 * the last lines of its output (the error to record when it fails).
 */
function build(cmd, args, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk) => {
      process.stderr.write(chunk);
      tail = (tail + chunk).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (err) => resolve({ status: -1, tail: err.message }));
    child.on('close', (status) => resolve({ status, tail: tail.trim().split('\n').slice(-25).join('\n') }));
  });
}

/** readelf/objdump facts of a binary: { machine, needed, glibc } (glibc: highest GLIBC_ version or null). */
function inspect(file) {
  const header = run('readelf', ['-h', file]);
  const machine = (/Machine:\s+(.+)/.exec(header) || [null, '?'])[1].trim();
  const needed = [...run('readelf', ['-d', file]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const versions = [...run('objdump', ['-T', file]).matchAll(/GLIBC_([0-9.]+)/g)].map((m) => m[1]);
  const glibc = versions.sort(compareVersions).pop() || null;
  return { machine, needed, glibc };
}

function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) - (pb[i] || 0);
  }
  return 0;
}

/**
 * Why `facts` of a binary built for `triple` are wrong, or null when they are right. A
 * host build (`local`) is not held to the glibc baseline: it links the host's glibc.
 */
function checkBinary(triple, facts, local = false) {
  const machine = ELF_MACHINE[triple.split('-')[0]];
  if (machine && !facts.machine.includes(machine)) return `ELF machine is ${facts.machine}, not ${machine}`;
  if (triple.includes('-musl')) {
    if (facts.glibc) return `a musl binary with GLIBC_${facts.glibc} symbols`;
    const foreign = facts.needed.filter((n) => !/^libc(\.musl-[\w-]+\.so\.1|\.so)$/.test(n));
    if (foreign.length) return `a musl binary needing ${foreign.join(', ')}`;
  } else if (!local && (!facts.glibc || compareVersions(facts.glibc, GLIBC_BASELINE) > 0)) {
    return `highest GLIBC_ symbol version is ${facts.glibc}, above ${GLIBC_BASELINE}`;
  }
  return null;
}

/** True when the toolchain at `sysroot` has a prebuilt std for `triple`. */
function hasStd(sysroot, triple) {
  const dir = path.join(sysroot, 'lib', 'rustlib', triple, 'lib');
  return fs.existsSync(dir) && fs.readdirSync(dir).some((f) => /^libstd-.*\.rlib$/.test(f));
}

/** Cross-builds `target` with the toolchain `tc`; returns the built library's path. */
async function crossBuild({ platform, triple }, tc) {
  const targetDir = path.join(root, 'target', 'cross', triple);
  // `cargo` and `rustc` of the chosen toolchain first on PATH: cargo-zigbuild runs `cargo`
  const shims = path.join(root, 'target', 'cross', 'bin');
  fs.mkdirSync(shims, { recursive: true });
  for (const [name, file] of [['cargo', tc.cargo], ['rustc', tc.rustc]]) {
    fs.rmSync(path.join(shims, name), { force: true });
    fs.symlinkSync(file, path.join(shims, name));
  }
  const env = {
    ...tc.env,
    PATH: [shims, tc.env.PATH].join(path.delimiter),
    RUSTC: tc.rustc,
    CARGO_TARGET_DIR: targetDir,
    // no anyhow backtrace of cargo-zigbuild's own errors in the recorded error tail
    RUST_LIB_BACKTRACE: '0',
  };
  delete env.RUSTFLAGS;
  delete env.CARGO_ENCODED_RUSTFLAGS;
  delete env.CARGO_BUILD_TARGET;
  const args = ['zigbuild', '--release', '--locked', '-p', 'dbc-node', '--target'];
  if (triple.includes('-gnu')) args.push(`${triple}.${GLIBC_BASELINE}`);
  else args.push(triple);
  if (triple.includes('-musl')) env.RUSTFLAGS = '-C target-feature=-crt-static';
  if (!hasStd(tc.sysroot, triple)) {
    args.push('-Zbuild-std=std,panic_unwind');
    env.RUSTC_BOOTSTRAP = '1';
  }
  say(`${platform}: ${env.RUSTFLAGS ? `RUSTFLAGS='${env.RUSTFLAGS}' ` : ''}${env.RUSTC_BOOTSTRAP ? 'RUSTC_BOOTSTRAP=1 ' : ''}CARGO_TARGET_DIR=${path.relative(root, targetDir)} cargo-zigbuild ${args.join(' ')}`);
  const r = await build('cargo-zigbuild', args, env);
  if (r.status !== 0) throw new Error(r.tail || `cargo-zigbuild exited ${r.status}`);
  const lib = path.join(targetDir, triple, 'release', 'libdbc_node.so');
  if (!fs.existsSync(lib)) throw new Error(`the build succeeded but left no ${path.relative(root, lib)}`);
  return lib;
}

/**
 * Checks `lib` and packs npm/<platform>/ with it as dbc.<platform>.node, keeping a copy
 * of the binary in `out`; returns the build record. The package is staged in a temporary copy, so the checkout holds no binary and
 * runs side by side (a cross build, `npm test`'s --local one) cannot mix theirs up.
 */
function packPlatform({ platform, triple }, lib, out, local = false) {
  const dir = path.join(root, 'npm', platform);
  if (!fs.existsSync(path.join(dir, 'package.json'))) throw new Error(`no npm/${platform}/package.json`);
  const facts = inspect(lib);
  const wrong = checkBinary(triple, facts, local);
  if (wrong) throw new Error(`${platform}: ${wrong}`);
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), `dbc-${platform}-`));
  try {
    for (const f of fs.readdirSync(dir)) if (!f.endsWith('.node')) fs.copyFileSync(path.join(dir, f), path.join(stage, f));
    const binary = path.join(stage, `dbc.${platform}.node`);
    fs.copyFileSync(lib, binary);
    // also beside the tarball, as `napi artifacts` expects it (the release workflow uploads it)
    const kept = path.join(out, `dbc.${platform}.node`);
    fs.copyFileSync(lib, kept);
    return { tgz: pack(stage, out), binary: kept, bytes: fs.statSync(binary).size, needed: facts.needed, glibc: facts.glibc };
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(opts.out, { recursive: true });
  const result = { main: pack(root, opts.out), platforms: {}, builds: {} };
  const save = () => fs.writeFileSync(path.join(opts.out, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
  save();

  if (opts.local) {
    const platform = hostPlatform();
    const target = linuxTargets().find((t) => t.platform === platform);
    if (!target) throw new Error(`${platform} is not a Linux target of package.json napi.targets`);
    const lib = path.join(root, 'native', `dbc.${platform}.node`);
    if (!fs.existsSync(lib)) run(process.execPath, ['scripts/install.js'], { stdio: 'inherit' });
    const { tgz, ...record } = packPlatform(target, lib, opts.out, true);
    result.platforms[platform] = tgz;
    result.builds[platform] = { local: true, ...record };
    save();
    return result;
  }

  const tc = require('./cross-setup').setup();
  say(`toolchain: ${tc.version} (${tc.rustc}), ${tc.zigbuild}`);
  for (const target of opts.targets) {
    const started = process.hrtime.bigint();
    try {
      const lib = await crossBuild(target, tc);
      const seconds = Math.round(Number(process.hrtime.bigint() - started) / 1e8) / 10;
      const { tgz, ...record } = packPlatform(target, lib, opts.out);
      result.platforms[target.platform] = tgz;
      result.builds[target.platform] = { seconds, ...record };
      say(`${target.platform}: ${seconds} s, ${record.bytes} bytes, NEEDED ${record.needed.join(' ')}, GLIBC_ ${record.glibc || 'none'}`);
    } catch (err) {
      result.builds[target.platform] = { error: err.message };
      say(`${target.platform} FAILED:\n${err.message}`);
    }
    save();
  }
  return result;
}

if (require.main === module) {
  main().then((result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (Object.values(result.builds).some((b) => b.error)) process.exitCode = 1;
  }, (err) => {
    say(err.message);
    process.exit(1);
  });
}

module.exports = { napiPlatform, hostPlatform, linuxTargets, inspect, checkBinary, GLIBC_BASELINE };
