#!/usr/bin/env node
/**
 * Developer tools that `npm test` needs and a fresh machine lacks; installed once, when
 * missing. It is run by scripts/test.js (so by `npm test` and .ci/run), never by the
 * package's own `npm install`, which users of the node run.
 *
 * - Rust coverage: the `llvm-tools-preview` rustup component and `cargo-llvm-cov`
 *   (`cargo install cargo-llvm-cov --locked`, about 2 minutes once).
 *   If cargo-llvm-cov cannot be installed, `cargo-tarpaulin` is tried instead; the
 *   chosen tool is printed, and scripts/test.js uses whichever is present.
 * - Chromium for the browser tests (tests/support/browser.js drives /usr/bin/chromium):
 *   when it is missing and this is a Debian-like machine where we are root, Debian's
 *   `chromium` package is installed with apt-get (`apt-get update` first; its failure is
 *   reported but not fatal — one foreign-architecture index can fail while the amd64
 *   packages still install). Otherwise it stops with the command to run.
 * Exits non-zero when no coverage tool or no Chromium can be had: the run must not pass
 * unmeasured, and the browser tests must not fail later for a reason known now.
 */
'use strict';

const fs = require('fs');
const { spawnSync } = require('child_process');

const CHROMIUM = '/usr/bin/chromium';

const say = (m) => process.stdout.write(`[dev-setup] ${m}\n`);
const ok = (cmd, args) => spawnSync(cmd, args, { stdio: 'pipe' }).status === 0;
const run = (cmd, args, opts = {}) => {
  say(`${cmd} ${args.join(' ')}`);
  return spawnSync(cmd, args, { stdio: 'inherit', ...opts });
};

/** Which Rust coverage tool is usable now: 'llvm-cov', 'tarpaulin' or null. */
function rustCoverageTool() {
  const llvmTools = spawnSync('rustup', ['component', 'list', '--installed'], { encoding: 'utf8' });
  if (ok('cargo', ['llvm-cov', '--version']) && /llvm-tools/.test(llvmTools.stdout || '')) return 'llvm-cov';
  if (ok('cargo', ['tarpaulin', '--version'])) return 'tarpaulin';
  return null;
}

function setup() {
  let tool = rustCoverageTool();
  if (tool) return tool;
  const installed = spawnSync('rustup', ['component', 'list', '--installed'], { encoding: 'utf8' });
  if (!/llvm-tools/.test(installed.stdout || '')) run('rustup', ['component', 'add', 'llvm-tools-preview']);
  if (!ok('cargo', ['llvm-cov', '--version'])) run('cargo', ['install', 'cargo-llvm-cov', '--locked']);
  tool = rustCoverageTool();
  if (tool) return tool;
  say('cargo-llvm-cov is not usable; trying cargo-tarpaulin');
  run('cargo', ['install', 'cargo-tarpaulin', '--locked']);
  return rustCoverageTool();
}

/**
 * Makes sure the browser tests' Chromium exists, installing Debian's package when the
 * machine can. Returns null when `executable` is there (now), else the hint to print.
 */
function ensureChromium(executable = CHROMIUM) {
  if (fs.existsSync(executable)) return null;
  const hint = `the browser tests need Chromium at ${executable}: install Debian's package (\`sudo apt-get install -y chromium\`) and run again`;
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (process.platform !== 'linux' || !ok('apt-get', ['--version'])) {
    return `the browser tests need Chromium at ${executable}; this machine has no apt-get: install Chromium so that ${executable} is its executable`;
  }
  if (!root) return hint;
  say(`${executable} is missing: installing Debian's chromium for the browser tests (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const updated = run('apt-get', ['update', '-qq'], { env });
  if (updated.status !== 0) say(`apt-get update exited ${updated.status}; trying the install with the indexes it did fetch`);
  const installed = run('apt-get', ['install', '-y', '-qq', 'chromium'], { env });
  if (installed.status === 0 && fs.existsSync(executable)) {
    say(`installed ${executable}`);
    return null;
  }
  if (installed.status === 0) return `apt-get installed chromium but ${executable} is still missing; ${hint}`;
  return `apt-get install chromium failed (exit ${installed.status}); ${hint}`;
}

if (require.main === module) {
  let failed = false;
  const tool = setup();
  if (tool) say(`Rust coverage: cargo ${tool}`);
  else {
    say('no Rust coverage tool: install cargo-llvm-cov (with `rustup component add llvm-tools-preview`) or cargo-tarpaulin');
    failed = true;
  }
  const chromium = ensureChromium();
  if (chromium) {
    say(chromium);
    failed = true;
  } else say(`browser tests: ${CHROMIUM}`);
  process.exit(failed ? 1 : 0);
}

module.exports = { CHROMIUM, ensureChromium, rustCoverageTool, setup };
