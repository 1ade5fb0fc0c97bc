/**
 * Shared test support: database URLs (from the environment, with this machine's
 * defaults), a loud check that every database is reachable, unique table prefixes,
 * and a real Node-RED runtime spawned in its own process.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..', '..');
const PG_URL = process.env.DBC_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const MARIADB_URL = process.env.DBC_TEST_MARIADB_URL || 'mysql://root@127.0.0.1:3306/test';
/**
 * Where `node-red` is resolved from: this checkout's devDependency (Node-RED 4.1), or the
 * throwaway install of `npm run test:nr5` (Node-RED 5), which sets DBC_NODE_RED_DIR.
 */
const RED_DIR = process.env.DBC_NODE_RED_DIR || root;

/** A table prefix no other test uses. */
function uniquePrefix(tag = 't') {
  return `${tag}${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}_`.toLowerCase();
}

/** Connector config for a provider (sqlite: a fresh temp file). */
function configFor(provider, extra = {}) {
  const primary =
    provider === 'postgres' ? { provider, url: PG_URL }
      : provider === 'mariadb' ? { provider, url: MARIADB_URL }
        : { provider: 'sqlite', sqliteFile: path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-')), 'test.db') };
  return { primary, tablePrefix: uniquePrefix(), retryBackoffMs: 10, retryBackoffMaxMs: 50, ...extra };
}

/** Config-node properties + credentials for a provider, as the editor would save them. */
function nodeConfigFor(provider, id = 'cfg') {
  const c = configFor(provider);
  const props = { id, type: 'database-connector-config', name: provider, provider, tablePrefix: c.tablePrefix, autoMigrate: true };
  if (provider === 'sqlite') props.sqliteFile = c.primary.sqliteFile;
  const credentials = provider === 'sqlite' ? {} : { url: c.primary.url };
  return { props, credentials, prefix: c.tablePrefix };
}

/**
 * Fails (never skips) when a database the tests need cannot be reached.
 * @param {object} service database-service module
 */
async function requireDatabases(service) {
  for (const [provider, variable] of [['postgres', 'DBC_TEST_PG_URL'], ['mariadb', 'DBC_TEST_MARIADB_URL']]) {
    try {
      await service.testConnection(configFor(provider));
    } catch (err) {
      throw new Error(`${provider} is not reachable (${err.code}: ${err.message}); start it or set ${variable}`);
    }
  }
}

/** Plain HTTP request; resolves {status, body} with JSON parsed when possible. */
function request(port, method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request(
      { host: '127.0.0.1', port, method, path: url, headers: { 'content-type': 'application/json', ...(data ? { 'content-length': data.length } : {}), ...headers } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* not JSON */ }
          resolve({ status: res.statusCode, body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = require('net').createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * Starts a real Node-RED (this package linked into a temp user dir) with `flows`, and
 * resolves once the flows have started and its HTTP server listens.
 * `settings` is more of settings.js, as source text (e.g. an `adminAuth` with functions).
 * @param {{flows: object[], credentials?: object, userDir?: string, command?: string[], settings?: string, env?: object}} opts
 */
async function spawnNodeRed(opts) {
  const port = await freePort();
  const userDir = opts.userDir || fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-red-'));
  fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
  const link = path.join(userDir, 'node_modules', 'node-red-contrib-database-connector');
  if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'p', private: true }));
  if (opts.flows) fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(opts.flows));
  if (opts.credentials) {
    fs.writeFileSync(path.join(userDir, 'flows_cred.json'), JSON.stringify(opts.credentials));
  }
  fs.writeFileSync(
    path.join(userDir, 'settings.js'),
    `module.exports = { uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: false, logging: { console: { level: 'info' } },${opts.settings ? ` ${opts.settings}` : ''} };\n`,
  );
  const args = opts.command || [require.resolve('node-red/red.js', { paths: [RED_DIR] }), '-u', userDir, '-s', path.join(userDir, 'settings.js'), '-p', String(port)];
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, PORT: String(port), DBC_USER_DIR: userDir, ...(opts.env || {}) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Node-RED did not start in 60 s:\n${log}`)), 60000);
    const check = () => {
      // red.js starts the flows, then listens: the HTTP API is up only after "Server now running"
      if (/Started flows/.test(log) && /Server now running at/.test(log)) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`Node-RED exited (${code}):\n${log}`)); });
  });
  // `npm run test:nr5` asks for Node-RED 5: make sure that is what runs
  const expected = process.env.DBC_EXPECT_NODE_RED;
  if (expected && !log.includes(`Node-RED version: v${expected}`)) {
    child.kill('SIGKILL');
    throw new Error(`expected Node-RED ${expected}:\n${log}`);
  }
  return {
    port,
    userDir,
    child,
    log: () => log,
    /** Resolves when the log matches `re` (the config node logs its state changes). */
    waitFor(re, ms = 15000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${re} in the log within ${ms} ms:\n${log}`)), ms);
        const check = () => {
          if (re.test(log)) {
            clearTimeout(timer);
            child.stdout.off('data', check);
            resolve();
          }
        };
        child.stdout.on('data', check);
        check();
      });
    },
    /** GETs `url` until it answers 200 (routes of a fresh deploy appear a moment later). */
    async poll(url, ms = 10000) {
      const until = Date.now() + ms;
      for (;;) {
        const r = await request(port, 'GET', url);
        if (r.status === 200 || Date.now() > until) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    request: (method, url, body, headers) => request(port, method, url, body, headers),
    async deploy(flows) {
      const r = await request(port, 'POST', '/flows', flows, { 'Node-RED-Deployment-Type': 'full' });
      if (r.status !== 200 && r.status !== 204) throw new Error(`deploy failed: ${r.status} ${r.text}`);
    },
    stop() {
      return new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}

/**
 * Polls `probe` (sync or async) every `every` ms until `done(value)` holds and returns that
 * value; throws, naming `what` and the last value seen, when `ms` pass first. It waits on
 * real state (a row, a pool figure, a session), never for a fixed time.
 * @param {string} what what is awaited, for the failure message
 * @param {() => any} probe reads the state
 * @param {(v: any) => boolean} [done] the condition (default: truthy)
 * @param {{ms?: number, every?: number}} [opts]
 */
async function pollUntil(what, probe, done = Boolean, { ms = 10000, every = 20 } = {}) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms (last seen: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * The local ports of the TCP connections process `pid` holds to `remotePort` (Linux:
 * /proc/<pid>/fd's socket inodes matched in /proc/net/tcp{,6}). With pg_stat_activity's
 * client_port they name that process's server sessions.
 */
function tcpPortsOf(pid, remotePort) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try { target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]);
  }
  const ports = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!fs.existsSync(table)) continue;
    for (const line of fs.readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9])) continue;
      const port = (addr) => parseInt(addr.split(':')[1], 16);
      if (port(f[2]) === remotePort) ports.push(port(f[1]));
    }
  }
  return ports;
}

/**
 * node-red-node-test-helper for the calling test file: initialised on this checkout's
 * Node-RED (or DBC_NODE_RED_DIR's), its server started before the file's tests (once
 * the databases answer, when `service` is given: a test run that cannot reach one fails
 * loudly), every flow unloaded after each test (unless `unloadEach` is false) and the
 * server stopped after the last.
 * @param {object} [service] database-service.js, to require the databases first
 * @param {object} [opts]
 * @param {boolean} [opts.unloadEach] unload the flows after each test (default true)
 * @returns {object} the helper
 */
function useNodeRedHelper(service, { unloadEach = true } = {}) {
  const test = require('node:test');
  const helper = require('node-red-node-test-helper');
  helper.init(require.resolve('node-red', { paths: [RED_DIR] }));
  test.before(async () => {
    if (service) await requireDatabases(service);
    await new Promise((resolve) => helper.startServer(resolve));
  });
  test.after(async () => {
    await helper.unload();
    await new Promise((resolve) => helper.stopServer(resolve));
  });
  if (unloadEach) test.afterEach(() => helper.unload());
  return helper;
}

module.exports = { root, RED_DIR, useNodeRedHelper, PG_URL, MARIADB_URL, uniquePrefix, configFor, nodeConfigFor, requireDatabases, request, spawnNodeRed, freePort, pollUntil, tcpPortsOf };
