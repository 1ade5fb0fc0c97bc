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
 * Exits non-zero when no coverage tool can be had: the run must not pass unmeasured.
 */
'use strict';

const { spawnSync } = require('child_process');

const say = (m) => process.stdout.write(`[dev-setup] ${m}\n`);
const ok = (cmd, args) => spawnSync(cmd, args, { stdio: 'pipe' }).status === 0;
const run = (cmd, args) => {
  say(`${cmd} ${args.join(' ')}`);
  return spawnSync(cmd, args, { stdio: 'inherit' }).status === 0;
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

if (require.main === module) {
  const tool = setup();
  if (!tool) {
    say('no Rust coverage tool: install cargo-llvm-cov (with `rustup component add llvm-tools-preview`) or cargo-tarpaulin');
    process.exit(1);
  }
  say(`Rust coverage: cargo ${tool}`);
}

module.exports = { rustCoverageTool, setup };
