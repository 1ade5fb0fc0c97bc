/**
 * The package as users get it: what `npm pack` puts in it, the package.json checks of
 * Node-RED's flows-library scorecard, and the install a user does (README.md "Install
 * into Node-RED", docs/USER-GUIDE.md "1. Install", docs/RELEASING.md): the packed
 * package plus the prebuilt linux-x64-gnu package installed into a fresh Node-RED user
 * dir with no Rust toolchain on PATH — the install must use the prebuilt addon, and
 * Node-RED 4.1 must load both node types and run a query with them.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { root, spawnNodeRed } = require('../support');
const { napiPlatform, hostPlatform, linuxTargets, inspect, checkBinary } = require('../../scripts/prebuilt');

const pkg = require('../../package.json');

/** Paths in `npm pack --dry-run` of this checkout. */
function packedFiles() {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [info] = JSON.parse(r.stdout);
  return { files: info.files.map((f) => f.path), size: info.size };
}

test('npm pack holds what an install needs and nothing else', () => {
  const { files, size } = packedFiles();
  const needed = [
    'package.json', 'README.md', 'CHANGELOG.md', 'LICENSE',
    'nodes/database-connector/database-connector.js', 'nodes/database-connector/database-connector.html',
    'nodes/database-connector/database-connector-helpers.js', 'nodes/database-connector/database-service.js',
    'nodes/database-connector/locales/en-US/database-connector.json',
    'native/index.js', 'native/index.d.ts', 'scripts/install.js',
    'Cargo.toml', 'Cargo.lock', 'crates/dbc-core/Cargo.toml', 'crates/dbc-core/src/lib.rs',
    'crates/dbc-node/Cargo.toml', 'crates/dbc-node/build.rs', 'crates/dbc-node/src/lib.rs',
    'docs/USER-GUIDE.md', 'docs/API.md',
    ...fs.readdirSync(path.join(root, 'examples')).map((f) => `examples/${f}`),
    ...['postgres', 'mariadb', 'sqlite'].flatMap((p) => fs.readdirSync(path.join(root, 'migrations', p)).map((f) => `migrations/${p}/${f}`)),
  ];
  for (const f of needed) assert.ok(files.includes(f), `${f} is missing from the package`);
  const allowed = /^(package\.json|README\.md|CHANGELOG\.md|LICENSE|Cargo\.(toml|lock)|scripts\/install\.js|native\/index\.(js|d\.ts)|nodes\/database-connector\/.+|crates\/dbc-(core|node)\/(Cargo\.toml|build\.rs|src\/.+\.rs)|migrations\/(postgres|mariadb|sqlite)\/\d{4}_\w+\.sql|examples\/[\w-]+\.json|docs\/[\w-]+\.md|docs\/images\/[\w-]+\.(png|svg))$/;
  const unexpected = files.filter((f) => !allowed.test(f));
  assert.deepEqual(unexpected, [], 'files an install does not need (tests, target/, *.db, built binaries, dev scripts)');
  for (const f of files) assert.doesNotMatch(f, /(^|\/)(target|tests|coverage|node_modules|npm)\/|\.(db|node|tgz)$/, f);
  assert.ok(size < 2_000_000, `packed size ${size} bytes`);
});

test('package.json passes the Node-RED scorecard checks', () => {
  assert.ok(pkg.license && fs.existsSync(path.join(root, 'LICENSE')), 'license, and a LICENSE file');
  assert.match(pkg.repository && pkg.repository.url, /^git\+https:\/\//, 'repository url');
  assert.ok(pkg.keywords.includes('node-red'), 'the node-red keyword');
  assert.match(pkg.name, /^node-red-contrib-/, 'contrib naming');
  assert.ok(pkg.description && pkg.description.length > 20, 'a description');
  assert.match(pkg['node-red'].version, /^>=\d+\.\d+\.\d+$/, 'node-red.version: the supported Node-RED versions');
  assert.match(pkg.engines.node, /^>=\d+/, 'engines.node');
  assert.ok(Object.keys(pkg.dependencies || {}).length <= 6, 'at most 6 runtime dependencies');
  // examples cover every node type but config nodes
  const manager = fs.readFileSync(path.join(root, pkg['node-red'].nodes['database-connector']), 'utf8');
  const types = [...manager.matchAll(/registerType\(\s*'([\w-]+)'/g)].map((m) => m[1]);
  assert.ok(types.includes('database-connector') && types.includes('database-connector-config'), `registered: ${types}`);
  const exampleTypes = new Set();
  for (const f of fs.readdirSync(path.join(root, 'examples'))) {
    for (const n of JSON.parse(fs.readFileSync(path.join(root, 'examples', f), 'utf8'))) exampleTypes.add(n.type);
  }
  for (const t of types.filter((x) => !x.endsWith('-config'))) assert.ok(exampleTypes.has(t), `no example uses ${t}`);
});

test('every napi target has its npm/ package; optionalDependencies are exactly the Linux ones built here, at this version', () => {
  const dirs = fs.readdirSync(path.join(root, 'npm')).sort();
  assert.deepEqual(dirs, pkg.napi.targets.map(napiPlatform).sort(), 'npm/<platform> for each napi target');
  assert.equal(dirs.length, 8, 'linux x64/arm64 gnu+musl, linux arm gnueabihf, darwin x64/arm64, win32 x64');
  const loader = fs.readFileSync(path.join(root, 'native', 'index.js'), 'utf8');
  for (const d of dirs) {
    const sub = JSON.parse(fs.readFileSync(path.join(root, 'npm', d, 'package.json'), 'utf8'));
    assert.equal(sub.name, `${pkg.name}-${d}`);
    assert.equal(sub.version, pkg.version, `${sub.name} version`);
    assert.equal(sub.main, `dbc.${d}.node`);
    assert.deepEqual(sub.files, [sub.main], `${sub.name} ships its binary only`);
    assert.ok(sub.os && sub.cpu, `${sub.name} says its os and cpu`);
    assert.ok(loader.includes(`require('${sub.name}')`), `native/index.js does not load ${sub.name}`);
    if (d.startsWith('linux-')) assert.deepEqual(sub.libc, [d.includes('musl') ? 'musl' : 'glibc'], `${sub.name} libc`);
  }
  // darwin/win32 come from the release workflow only, so they are not promised to npm users
  const linux = linuxTargets().map((t) => `${pkg.name}-${t.platform}`).sort();
  assert.deepEqual(linux, ['linux-arm-gnueabihf', 'linux-arm64-gnu', 'linux-arm64-musl', 'linux-x64-gnu', 'linux-x64-musl'].map((p) => `${pkg.name}-${p}`));
  assert.deepEqual(Object.keys(pkg.optionalDependencies).sort(), linux);
  for (const name of linux) assert.equal(pkg.optionalDependencies[name], pkg.version, `${name} version`);
});

test('the prebuilt check refuses binaries a user machine could not load', { skip: hostPlatform() !== 'linux-x64-gnu' && 'uses the host linux-x64-gnu build' }, () => {
  const facts = inspect(path.join(root, 'native', 'dbc.linux-x64-gnu.node'));
  assert.match(facts.machine, /X86-64/);
  assert.ok(facts.needed.includes('libc.so.6'), facts.needed.join(' '));
  assert.match(facts.glibc, /^2\.\d+$/);
  const newer = { ...facts, glibc: '2.34' };
  assert.match(checkBinary('x86_64-unknown-linux-gnu', newer), /GLIBC_ symbol version is 2\.34, above 2\.28/);
  assert.equal(checkBinary('x86_64-unknown-linux-gnu', { ...facts, glibc: '2.28' }), null);
  assert.equal(checkBinary('x86_64-unknown-linux-gnu', newer, true), null, 'a --local host build links the host glibc');
  assert.match(checkBinary('aarch64-unknown-linux-gnu', { ...facts, glibc: '2.17' }), /not AArch64/);
  assert.match(checkBinary('x86_64-unknown-linux-musl', facts), /musl binary with GLIBC_/);
  assert.match(checkBinary('x86_64-unknown-linux-musl', { ...facts, glibc: null }), /musl binary needing .*libc\.so\.6/);
  assert.equal(checkBinary('x86_64-unknown-linux-musl', { machine: facts.machine, needed: ['libc.so'], glibc: null }), null);
});

const RUST_TOOLS = /^(cargo|rustc|rustup|rustdoc|cargo-.+|rust-.+)$/;

/**
 * PATH with no Rust tool on it: a directory holding one (e.g. ~/.cargo/bin, or /usr/bin
 * with Debian's cargo, where npm and node live too) is replaced by a copy, under `tmp`,
 * of links to everything in it but the Rust tools.
 */
function pathWithoutRust(tmp) {
  return process.env.PATH.split(path.delimiter).map((d, i) => {
    let entries;
    try {
      entries = fs.readdirSync(d);
    } catch {
      return d;
    }
    if (!entries.some((e) => RUST_TOOLS.test(e))) return d;
    const copy = path.join(tmp, 'path', String(i));
    fs.mkdirSync(copy, { recursive: true });
    for (const e of entries) if (!RUST_TOOLS.test(e)) fs.symlinkSync(path.join(d, e), path.join(copy, e));
    return copy;
  }).join(path.delimiter);
}

test('packed package + prebuilt linux-x64-gnu package install with no Rust on PATH, and Node-RED 4.1 loads the nodes', { skip: hostPlatform() !== 'linux-x64-gnu' && 'the prebuilt package here is linux-x64-gnu' }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-pkg-'));
  const built = spawnSync(process.execPath, ['scripts/prebuilt.js', '--local', '--out', path.join(tmp, 'dist')], { cwd: root, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  const tarballs = JSON.parse(built.stdout.trim().split('\n').pop());
  const userDir = path.join(tmp, 'user');
  fs.mkdirSync(userDir);
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', private: true }));
  const PATH = pathWithoutRust(tmp);
  assert.notEqual(spawnSync('cargo', ['--version'], { env: { ...process.env, PATH } }).status, 0, 'cargo must not be reachable');
  const install = spawnSync('npm', ['install', '--foreground-scripts', '--no-audit', '--no-fund', tarballs.main, tarballs.platforms['linux-x64-gnu']], {
    cwd: userDir, encoding: 'utf8', env: { ...process.env, PATH, CARGO_HOME: path.join(tmp, 'no-cargo') },
  });
  const output = install.stdout + install.stderr;
  assert.equal(install.status, 0, output);
  assert.match(output, /using the prebuilt addon from node-red-contrib-database-connector-linux-x64-gnu/, output);
  assert.doesNotMatch(output, /compiling the Rust addon/);
  const installed = path.join(userDir, 'node_modules', pkg.name);
  assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'a real install, not a link to the checkout');
  assert.ok(!fs.existsSync(path.join(installed, 'native', 'dbc.linux-x64-gnu.node')), 'no binary in the main package');

  const red = await spawnNodeRed({
    userDir,
    flows: [
      { id: 'tab', type: 'tab', label: 'package' },
      { id: 'cfg', type: 'database-connector-config', name: 'sqlite', provider: 'sqlite', sqliteFile: 'pkg.db', tablePrefix: 'dbc_', autoMigrate: true },
      { id: 'in', type: 'http in', z: 'tab', url: '/pkg', method: 'get', wires: [['q']] },
      { id: 'q', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'query', sql: "SELECT 'prebuilt' AS addon", wires: [['res']] },
      { id: 'res', type: 'http response', z: 'tab', wires: [] },
    ],
  });
  try {
    const nodes = await red.request('GET', '/nodes', undefined, { accept: 'application/json' });
    const set = nodes.body.find((s) => s.module === pkg.name);
    assert.ok(set, `Node-RED did not load ${pkg.name}: ${JSON.stringify(nodes.body.map((s) => s.module))}`);
    assert.equal(set.err, undefined, set.err);
    assert.equal(set.enabled, true);
    assert.deepEqual([...set.types].sort(), ['database-connector', 'database-connector-config']);
    await red.waitFor(/sqlite: connected/);
    const r = await red.request('GET', '/pkg');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body, [{ addon: 'prebuilt' }]);
  } finally {
    await red.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
