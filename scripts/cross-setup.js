#!/usr/bin/env node
/**
 * The cross-build toolchain that `npm run prebuilt` (scripts/prebuilt.js) needs, installed
 * when missing and said out loud; never run by the package's own `npm install`.
 *
 * The route: a Rust toolchain at least as new as the crate's `rust-version` whose
 * sysroot holds the standard library's sources (so a target without a prebuilt std is
 * built with `-Zbuild-std`), linked by cargo-zigbuild with zig as the C compiler and
 * linker (zig brings glibc stubs of any version and musl, so no cross gcc is needed).
 * - Rust: the first of `rustc` on PATH (rustup) and Debian's `/usr/bin/rustc` that is new
 *   enough and has `lib/rustlib/src/rust/library`; if none, Debian's `rustc-web
 *   cargo-web rust-web-src` are apt-installed (an `apt-get update` that fails, e.g. a
 *   mirror mid-sync, is reported and the install tried anyway).
 * - zig and cargo-zigbuild: `python3 -m pip install ziglang cargo-zigbuild`.
 * - `cc` (host build scripts) and `readelf`/`objdump` (binary checks): apt `gcc binutils`.
 * Run alone it prints what it found; prebuilt.js uses setup()'s answer.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const say = (m) => process.stderr.write(`[cross-setup] ${m}\n`);
const out = (cmd, args, env) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: 'pipe', env: env || process.env });
  return r.status === 0 ? r.stdout.trim() : null;
};
const run = (cmd, args) => {
  say(`${cmd} ${args.join(' ')}`);
  return spawnSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr] }).status;
};

/** The crate's minimum Rust version from the workspace Cargo.toml, as [major, minor]. */
function rustVersionWanted() {
  const m = /rust-version\s*=\s*"(\d+)\.(\d+)/.exec(fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8'));
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/** A usable Rust toolchain: { rustc, cargo, version, sysroot } or null. */
function findRust() {
  const [wantMajor, wantMinor] = rustVersionWanted();
  const candidates = [['rustc', 'cargo'], ['/usr/bin/rustc', '/usr/bin/cargo']];
  for (const [rustc, cargo] of candidates) {
    const v = out(rustc, ['--version']);
    const m = v && /^rustc (\d+)\.(\d+)\.\d+/.exec(v);
    if (!m || Number(m[1]) < wantMajor || (Number(m[1]) === wantMajor && Number(m[2]) < wantMinor)) continue;
    const sysroot = out(rustc, ['--print', 'sysroot']);
    if (!sysroot || !fs.existsSync(path.join(sysroot, 'lib', 'rustlib', 'src', 'rust', 'library', 'std'))) continue;
    // rustup's `rustc` proxy and its `cargo` live side by side; Debian's are /usr/bin/*
    const cargoPath = cargo.includes('/') ? cargo : out('which', [cargo]);
    if (!cargoPath || !out(cargoPath, ['--version'])) continue;
    return { rustc: rustc.includes('/') ? rustc : out('which', [rustc]), cargo: cargoPath, version: v, sysroot };
  }
  return null;
}

/** apt-get install `pkgs` (amd64), going on past a failing `apt-get update`. */
function aptInstall(pkgs) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const sudo = isRoot ? [] : ['sudo', '-n'];
  if (!isRoot && !out('sudo', ['-n', 'true'])) {
    say(`not root and no password-less sudo: install ${pkgs.join(' ')} yourself`);
    return false;
  }
  const [cmd, ...pre] = [...sudo, 'apt-get'];
  const update = run(cmd, [...pre, 'update']);
  if (update !== 0) say(`apt-get update exited ${update}; trying the install with the indexes there are`);
  return run(cmd, [...pre, 'install', '-y', '--no-install-recommends', ...pkgs]) === 0;
}

/** Directories pip puts console scripts into (pip --user's is often not on PATH). */
function pipBinDirs() {
  return [path.join(os.homedir(), '.local', 'bin')].filter((d) => fs.existsSync(d));
}

function withPath(dirs) {
  return { ...process.env, PATH: [...dirs, process.env.PATH].join(path.delimiter) };
}

/** zig reachable for cargo-zigbuild: `zig` on PATH or the PyPI `ziglang` module. */
function hasZig(env) {
  return Boolean(out('zig', ['version'], env) || out('python3', ['-m', 'ziglang', 'version'], env));
}

/**
 * Makes sure the toolchain is there. Returns { rustc, cargo, version, sysroot, zigbuild,
 * env } where env is process.env with PATH extended as needed; throws when something
 * cannot be had, naming it.
 */
function setup() {
  let rust = findRust();
  if (!rust) {
    say('no Rust toolchain with the standard library sources (rust-src): installing Debian\'s rustc-web, cargo-web, rust-web-src');
    aptInstall(['rustc-web', 'cargo-web', 'rust-web-src']);
    rust = findRust();
    const [maj, min] = rustVersionWanted();
    if (!rust) throw new Error(`need rustc >= ${maj}.${min} with rust-src (rustup component add rust-src, or Debian's rustc-web cargo-web rust-web-src)`);
  }
  if (!out('cc', ['--version']) || !out('readelf', ['--version']) || !out('objdump', ['--version'])) {
    say('cc, readelf or objdump missing: installing gcc binutils');
    aptInstall(['gcc', 'binutils']);
    if (!out('cc', ['--version']) || !out('readelf', ['--version'])) throw new Error('need a host C compiler (cc) and binutils (readelf, objdump)');
  }
  let env = withPath(pipBinDirs());
  if (!hasZig(env) || !out('cargo-zigbuild', ['--version'], env)) {
    say('zig or cargo-zigbuild missing: installing them from PyPI');
    if (run('python3', ['-m', 'pip', 'install', 'ziglang', 'cargo-zigbuild']) !== 0) {
      // Debian 12's own python3 refuses both without this (PEP 668: "externally-managed-environment")
      if (run('python3', ['-m', 'pip', 'install', '--user', 'ziglang', 'cargo-zigbuild']) !== 0) {
        run('python3', ['-m', 'pip', 'install', '--user', '--break-system-packages', 'ziglang', 'cargo-zigbuild']);
      }
    }
    env = withPath(pipBinDirs());
    if (!hasZig(env) || !out('cargo-zigbuild', ['--version'], env)) throw new Error('need zig and cargo-zigbuild (pip install ziglang cargo-zigbuild)');
  }
  return { ...rust, zigbuild: out('cargo-zigbuild', ['--version'], env), env };
}

if (require.main === module) {
  try {
    const t = setup();
    say(`${t.version} (${t.rustc}, sysroot ${t.sysroot}); ${t.zigbuild}`);
  } catch (err) {
    say(err.message);
    process.exit(1);
  }
}

module.exports = { setup, findRust };
