#!/usr/bin/env node
/**
 * `npm test`: every test, against the real databases.
 *  1. the addon is rebuilt if any Rust source or migration changed since it was built;
 *  2. Rust lints: rustfmt and clippy (warnings are errors);
 *  3. the Rust core's unit tests and its conformance suites (PostgreSQL, MariaDB, SQLite);
 *  4. the JS suites (node:test): the addon contract, the nodes in Node-RED, whole runtimes.
 * Database URLs: DBC_TEST_PG_URL, DBC_TEST_MARIADB_URL (defaults: this machine's servers).
 * An unreachable database fails the run; nothing is skipped.
 */
'use strict';

const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const steps = [
  ['addon up to date', process.execPath, ['scripts/install.js']],
  ['Rust format', 'cargo', ['fmt', '--all', '--check']],
  ['Rust lints', 'cargo', ['clippy', '--all-targets', '--locked', '--', '-D', 'warnings']],
  ['Rust core: unit tests + conformance suites', 'cargo', ['test', '-p', 'dbc-core', '--locked']],
  ['JS: addon contract, nodes in Node-RED, runtimes', process.execPath, ['--test', '--test-reporter=spec', 'tests/']],
];

const failed = [];
for (const [name, cmd, args] of steps) {
  process.stdout.write(`\n=== ${name}: ${[path.basename(cmd), ...args].join(' ')}\n`);
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`=== ${name}: ${r.status === 0 ? 'passed' : `FAILED (exit ${r.status})`} in ${secs} s\n`);
  if (r.status !== 0) failed.push(name);
}
process.stdout.write(`\n${steps.length - failed.length} passed, ${failed.length} failed\n`);
process.exit(failed.length ? 1 : 0);
