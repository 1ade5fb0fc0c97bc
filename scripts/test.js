#!/usr/bin/env node
/**
 * `npm test`: every test, against the real databases, with coverage and lints.
 * (README.md "Test" and docs/CONTRIBUTING.md "Running the checks" describe it for people.)
 *  1. developer tools a fresh machine lacks (scripts/dev-setup.js: llvm-tools-preview,
 *     cargo-llvm-cov, else cargo-tarpaulin; Debian's chromium for the browser tests) —
 *     installed once, when missing;
 *  2. the addon is rebuilt if any Rust source or migration changed since it was built;
 *  3. lints: rustfmt, clippy (warnings are errors), ESLint (eslint.config.js), the layout
 *     lint (scripts/lint-layout.js: dialect code only in store/ and db/, no import cycle);
 *  4. the Rust core's unit tests and conformance suites (PostgreSQL, MariaDB, SQLite),
 *     run once, under cargo llvm-cov: lines of crates/dbc-core/src must reach 85 %;
 *  5. the JS unit suite under c8: lines of nodes/ must reach 90 %;
 *  6. the JS integration suite under c8: lines of nodes/ must reach 85 %.
 *
 * The two JS suites are two directories (docs/CONTRIBUTING.md says why):
 *  - tests/unit/: one module or node at a time, in this process — the addon contract,
 *    the helpers, each node in node-red-node-test-helper, debug, metrics, health;
 *  - tests/integration/: whole Node-RED processes, the browser editor, the docs'
 *    samples, the packed package. Spawned Node-RED processes inherit NODE_V8_COVERAGE,
 *    so c8 counts the code they run.
 * A new test goes in by its directory: tests/<suite>/*.test.js. tests/support/ holds
 * what the tests share; tests/platforms/ is `npm run test:platforms`, not run here.
 * Coverage reports: coverage/{unit,integration}/ (HTML-free: text + JSON summary), coverage/rust.json.
 * Database URLs: DBC_TEST_PG_URL, DBC_TEST_MARIADB_URL (defaults: this machine's servers).
 * An unreachable database fails the run; nothing is skipped.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { rustCoverageTool } = require('./dev-setup');

const root = path.resolve(__dirname, '..');
const coverageDir = path.join(root, 'coverage');

const THRESHOLDS = { rust: 85, unit: 90, integration: 85 };
/** The test files of one suite: tests/<suite>/*.test.js, sorted. */
const suiteFiles = (suite) => fs.readdirSync(path.join(root, 'tests', suite)).filter((f) => f.endsWith('.test.js')).sort().map((f) => `tests/${suite}/${f}`);
const UNIT_SUITE = suiteFiles('unit');
const INTEGRATION_SUITE = suiteFiles('integration');

const figures = {};
const failed = [];
const timings = [];

function step(name, cmd, args, opts = {}) {
  process.stdout.write(`\n=== ${name}: ${[path.basename(cmd), ...args].join(' ')}\n`);
  const started = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
  const secs = (Date.now() - started) / 1000;
  const passed = r.status === 0;
  process.stdout.write(`=== ${name}: ${passed ? 'passed' : `FAILED (exit ${r.status})`} in ${secs.toFixed(1)} s\n`);
  timings.push([name, secs, passed]);
  if (!passed) failed.push(name);
  return passed;
}

const cargo = (name, args) => step(name, 'cargo', args);

/** The Rust core's tests under the coverage tool; records figures.rust. */
function rustCoverage() {
  const tool = rustCoverageTool();
  const ignore = 'crates/dbc-core/tests/';
  if (tool === 'llvm-cov') {
    // profiles of an earlier run would add up with this one's
    spawnSync('cargo', ['llvm-cov', 'clean', '--profraw-only', '-p', 'dbc-core'], { cwd: root, stdio: 'inherit' });
    const ran = cargo('Rust core: unit tests + conformance suites (cargo llvm-cov)', ['llvm-cov', '--no-report', '-p', 'dbc-core', '--locked']);
    const out = path.join(coverageDir, 'rust.json');
    const report = spawnSync('cargo', ['llvm-cov', 'report', '-p', 'dbc-core', '--json', '--summary-only', '--ignore-filename-regex', ignore, '--output-path', out], { cwd: root, stdio: 'inherit' });
    if (report.status === 0) {
      spawnSync('cargo', ['llvm-cov', 'report', '-p', 'dbc-core', '--summary-only', '--ignore-filename-regex', ignore], { cwd: root, stdio: 'inherit' });
      figures.rust = JSON.parse(fs.readFileSync(out, 'utf8')).data[0].totals.lines.percent;
    }
    return ran;
  }
  if (tool === 'tarpaulin') {
    const ran = cargo('Rust core: unit tests + conformance suites (cargo tarpaulin)', [
      'tarpaulin', '-p', 'dbc-core', '--locked', '--out', 'Json', '--output-dir', coverageDir, '--exclude-files', `${ignore}*`,
    ]);
    const file = path.join(coverageDir, 'tarpaulin-report.json');
    if (fs.existsSync(file)) {
      const { files } = JSON.parse(fs.readFileSync(file, 'utf8'));
      const covered = files.reduce((s, f) => s + f.covered, 0);
      const coverable = files.reduce((s, f) => s + f.coverable, 0);
      figures.rust = coverable ? (100 * covered) / coverable : 0;
    }
    return ran;
  }
  failed.push('Rust coverage tool missing (scripts/dev-setup.js could not install one)');
  return false;
}

/**
 * One JS suite under c8 (nodes/ only, files never loaded count as 0 %); records figures[suite].
 * nodes/database-connector/editor/ is the editor's client code: it runs in the browser
 * (tests/integration/task-browser.test.js drives it), never in Node, so c8 cannot see it.
 */
function jsSuite(suite, files, title) {
  const dir = path.join(coverageDir, suite);
  fs.rmSync(dir, { recursive: true, force: true });
  step(title, process.execPath, [
    require.resolve('c8/bin/c8.js', { paths: [root] }),
    '--all', '--include', 'nodes/**/*.js', '--exclude', 'nodes/**/editor/**', '--reporter', 'text', '--reporter', 'json-summary',
    '--report-dir', dir, '--temp-directory', path.join(dir, '.v8'),
    process.execPath, '--test', '--test-reporter=spec', ...files,
  ]);
  const summary = path.join(dir, 'coverage-summary.json');
  if (fs.existsSync(summary)) figures[suite] = JSON.parse(fs.readFileSync(summary, 'utf8')).total.lines.pct;
}

// `npm test -- --only unit,integration` runs some parts (setup, lint, rust, unit, integration)
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? process.argv[onlyArg + 1].split(',') : null;
const wanted = (part) => !only || only.includes(part);

fs.mkdirSync(coverageDir, { recursive: true });
if (wanted('setup')) {
  step('dev tools', process.execPath, ['scripts/dev-setup.js']);
  step('addon up to date', process.execPath, ['scripts/install.js']);
}
if (wanted('lint')) {
  cargo('Rust format', ['fmt', '--all', '--check']);
  cargo('Rust lints', ['clippy', '--all-targets', '--locked', '--', '-D', 'warnings']);
  step('JS lints', process.execPath, [path.join(path.dirname(require.resolve('eslint/package.json', { paths: [root] })), 'bin', 'eslint.js'), '--max-warnings', '0', '.']);
  step('Layout lint', process.execPath, [path.join(root, 'scripts', 'lint-layout.js')]);
}
if (wanted('rust')) rustCoverage();
if (wanted('unit')) jsSuite('unit', UNIT_SUITE, `JS unit suite: ${UNIT_SUITE.map((f) => path.basename(f, '.test.js')).join(', ')}`);
if (wanted('integration')) jsSuite('integration', INTEGRATION_SUITE, `JS integration suite: ${INTEGRATION_SUITE.map((f) => path.basename(f, '.test.js')).join(', ')}`);

process.stdout.write('\n=== timings\n');
for (const [name, secs, passed] of timings) process.stdout.write(`${passed ? '  ok  ' : ' FAIL '} ${secs.toFixed(1).padStart(7)} s  ${name}\n`);
process.stdout.write('\n=== coverage (lines)\n');
for (const [key, label] of [['rust', 'Rust core (crates/dbc-core/src)'], ['unit', 'JS unit suite (nodes/)'], ['integration', 'JS integration suite (nodes/)']]) {
  if (!wanted(key)) continue;
  const got = figures[key];
  const ok = typeof got === 'number' && got >= THRESHOLDS[key];
  process.stdout.write(`  ${label.padEnd(34)} ${typeof got === 'number' ? `${got.toFixed(2)} %` : 'not measured'}  (threshold ${THRESHOLDS[key]} %) ${ok ? 'ok' : 'BELOW THRESHOLD'}\n`);
  if (!ok) failed.push(`coverage ${key}`);
}
const total = timings.reduce((s, t) => s + t[1], 0);
process.stdout.write(`\n${timings.length} steps in ${(total / 60).toFixed(1)} min; ${failed.length ? `FAILED: ${failed.join('; ')}` : 'all passed'}\n`);
process.exit(failed.length ? 1 : 0);
