/**
 * The Flow Library can read the packed package (issue 14 item 5): `node-red-dev
 * validate` (the Node-RED project's scorecard tool, a devDependency) runs on what
 * `npm pack` produces and no check fails; its node-definition parser (the one the
 * library uses: it reads registerType calls from the .html without running them, so
 * type names and `defaults` must be literals) finds both node types with their
 * defaults, and the icon it names is in the package.
 *
 * The validator fetches https://catalogue.nodered.org/catalogue.json (unreachable from
 * here) and https://registry.npmjs.org/node-red. A local HTTP proxy (https_proxy, which
 * its axios honours) answers both: a catalogue holding this package and one other, and
 * Node-RED's real dist-tags and engines, looked up with the npm client. Any other
 * request fails the test.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const Module = require('module');
const { spawn, spawnSync } = require('child_process');
const { root } = require('../support');
// node-red-dev's own semver, the one its P06/P07 checks use
const semver = require(require.resolve('semver', { paths: [path.dirname(require.resolve('node-red-dev/package.json', { paths: [root] }))] }));

const pkg = require('../../package.json');
const TYPES = ['database-connector', 'database-connector-config'];

/** node-red-dev's own getNodeDefinitions (src/libs/checknodes.js does not export it). */
function nodeRedDevParser() {
  const file = require.resolve('node-red-dev/src/libs/checknodes.js', { paths: [root] });
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(`${fs.readFileSync(file, 'utf8')}\nmodule.exports.getNodeDefinitions = getNodeDefinitions;\n`, file);
  return m.exports.getNodeDefinitions;
}

/** `npm view <spec> <field> --json`, parsed. */
function npmView(spec, field) {
  const r = spawnSync('npm', ['view', spec, field, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `npm view ${spec} ${field}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-flowlib-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The packed package, extracted: what the Flow Library downloads. */
const packed = (() => {
  const r = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [info] = JSON.parse(r.stdout);
  const x = spawnSync('tar', ['xzf', path.join(tmp, info.filename), '-C', tmp], { encoding: 'utf8' });
  assert.equal(x.status, 0, x.stderr);
  return path.join(tmp, 'package');
})();

test('node-red.version covers the Node-RED versions the tests run on', () => {
  const range = pkg['node-red'].version;
  const installed = require(require.resolve('node-red/package.json', { paths: [root] })).version;
  assert.ok(semver.satisfies(installed, range), `Node-RED ${installed} (devDependency) is outside ${range}`);
  const nr5 = fs.readFileSync(path.join(root, 'scripts', 'test-nr5.js'), 'utf8').match(/'node-red':\s*'?(\d+)/);
  assert.ok(nr5, 'scripts/test-nr5.js names the Node-RED major it tests');
  assert.ok(semver.satisfies(`${nr5[1]}.0.0`, range), `Node-RED ${nr5[1]} (npm run test:nr5) is outside ${range}`);
});

test('the library\'s parser finds both node types, inline defaults and credentials, and the icon is packed', () => {
  const getNodeDefinitions = nodeRedDevParser();
  const html = path.join(packed, pkg['node-red'].nodes['database-connector'].replace(/\.js$/, '.html'));
  const defs = getNodeDefinitions(html);
  assert.deepEqual(Object.keys(defs).sort(), TYPES);
  const node = defs['database-connector'];
  assert.equal(node.category, 'storage');
  assert.equal(node.inputs, 1);
  assert.equal(node.outputs, 1);
  assert.match(node.color, /^#[0-9A-Fa-f]{6}$/);
  assert.ok(['name', 'connection', 'operation', 'queue', 'sql'].every((k) => k in node.defaults), Object.keys(node.defaults).join());
  assert.equal(node.icon, 'database-connector.svg');
  assert.ok(fs.existsSync(path.join(path.dirname(html), 'icons', node.icon)), `icons/${node.icon} is not in the package`);
  const config = defs['database-connector-config'];
  assert.equal(config.category, 'config');
  assert.ok(['provider', 'host', 'sqliteFile', 'tablePrefix'].every((k) => k in config.defaults), Object.keys(config.defaults).join());
  assert.ok(config.credentials.includes('password') && config.credentials.includes('url'), `${config.credentials}`);
});

test('node-red-dev validate passes on the packed package', async (t) => {
  const distTags = npmView('node-red', 'dist-tags');
  const versions = {};
  for (const v of Object.values(distTags)) versions[v] = { engines: npmView(`node-red@${v}`, 'engines') };
  const answers = {
    'https://catalogue.nodered.org/catalogue.json': {
      modules: [{ id: pkg.name, types: TYPES }, { id: 'node-red-node-sqlite', types: ['sqlitedb', 'sqlite'] }],
    },
    'https://registry.npmjs.org/node-red': { name: 'node-red', 'dist-tags': distTags, versions },
  };
  const asked = [];
  const proxy = http.createServer((req, res) => {
    asked.push(req.url);
    const body = answers[req.url];
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body || { error: `not stubbed: ${req.url}` }));
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
  const scorecardFile = path.join(tmp, 'scorecard.json');
  const bin = require.resolve('node-red-dev/bin/run', { paths: [root] });
  try {
    const r = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [bin, 'validate', '-p', packed, '-o', scorecardFile], {
        cwd: tmp,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, https_proxy: proxyUrl, HTTPS_PROXY: proxyUrl, http_proxy: proxyUrl, HTTP_PROXY: proxyUrl, no_proxy: '', NO_PROXY: '' },
      });
      let output = '';
      child.stdout.on('data', (d) => { output += d; });
      child.stderr.on('data', (d) => { output += d; });
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, output }));
    });
    t.diagnostic(r.output);
    assert.equal(r.code, 0, r.output);
    assert.doesNotMatch(r.output, /Unable to parse|Error|NOT Compatible/, r.output);
    assert.deepEqual([...new Set(asked)].sort(), Object.keys(answers).sort(), `requests: ${asked}`);
    const scorecard = JSON.parse(fs.readFileSync(scorecardFile, 'utf8'));
    assert.deepEqual(scorecard.package, { name: pkg.name, version: pkg.version });
    const checks = Object.keys(scorecard).filter((k) => /^[PND]\d\d$/.test(k)).sort();
    // package (license, repository, name, similar names, keyword, Node-RED and Node versions), nodes, dependencies
    assert.deepEqual(checks, ['D01', 'D02', 'D03', 'N01', 'N02', 'P01', 'P03', 'P04', 'P05', 'P06', 'P07', 'P08']);
    const failed = checks.filter((k) => scorecard[k].test !== true);
    assert.deepEqual(failed, [], JSON.stringify(scorecard, null, 1));
    // N02 (an example for every non-config node) passes vacuously when no node parsed
    assert.deepEqual(scorecard.N02.nodes, ['database-connector']);
    const supported = Object.entries(distTags).filter(([tag]) => /maintenance|^latest$/.test(tag)).map(([, v]) => v);
    assert.deepEqual(scorecard.P06.versions, supported.filter((v) => semver.satisfies(v, pkg['node-red'].version)));
  } finally {
    await new Promise((resolve) => proxy.close(resolve));
  }
});
