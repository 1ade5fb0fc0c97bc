#!/usr/bin/env node
/**
 * `npm run test:nr5`: the tests that load or spawn Node-RED, on Node-RED 5 and Node 22.
 *
 * Node-RED 5 needs Node >= 22.9. Both come from the npm registry into a throwaway
 * directory (not this package's devDependencies, so `npm install` stays light):
 * `npm install node@22 node-red@5` gives node_modules/node/bin/node (a Node 22 binary)
 * and Node-RED 5. The same built addon (napi8) is loaded unchanged by Node 22.
 * The tests then run with that Node, and DBC_NODE_RED_DIR makes tests/support/ (and
 * scripts/start.js) resolve `node-red` from there.
 *
 * Options (environment): DBC_NR5_DIR — the throwaway dir (default: <tmp>/dbc-nr5; kept,
 * so a second run does not download again; delete it to start over).
 * `.ci/run` calls this after `npm test`.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const dir = process.env.DBC_NR5_DIR || path.join(os.tmpdir(), 'dbc-nr5');
const WANT = { node: '22', 'node-red': '5' };
/** The tests that load Node-RED (helper or whole processes), plus the addon contract on Node 22. */
const TESTS = [
  ...['addon', 'registry', 'nodes', 'consume', 'admin', 'debug', 'metrics'].map((n) => `tests/unit/${n}.test.js`),
  ...['queue-flow', 'runtime', 'failover', 'docs'].map((n) => `tests/integration/${n}.test.js`),
];

const say = (m) => process.stdout.write(`[test:nr5] ${m}\n`);
const installedMajor = (name) => {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version.split('.')[0];
  } catch {
    return null;
  }
};

fs.mkdirSync(dir, { recursive: true });
if (!fs.existsSync(path.join(dir, 'package.json'))) {
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'dbc-nr5', private: true }));
}
if (Object.entries(WANT).some(([name, major]) => installedMajor(name) !== major)) {
  say(`installing node@${WANT.node} and node-red@${WANT['node-red']} into ${dir}`);
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', `node@${WANT.node}`, `node-red@${WANT['node-red']}`], { cwd: dir, stdio: 'inherit' });
  if (npm.status !== 0) process.exit(npm.status || 1);
}
const node = path.join(dir, 'node_modules', 'node', 'bin', 'node');
const version = spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
const redVersion = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', 'node-red', 'package.json'), 'utf8')).version;
say(`Node ${version}, Node-RED ${redVersion}`);
if (!version.startsWith(`v${WANT.node}.`) || !redVersion.startsWith(`${WANT['node-red']}.`)) {
  say('wrong versions installed; delete the directory and run again');
  process.exit(1);
}
const started = Date.now();
const r = spawnSync(node, ['--test', '--test-reporter=spec', ...TESTS], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, DBC_NODE_RED_DIR: dir, DBC_EXPECT_NODE_RED: redVersion },
});
say(`${r.status === 0 ? 'passed' : `FAILED (exit ${r.status})`} on Node ${version} / Node-RED ${redVersion} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(r.status === 0 ? 0 : 1);
