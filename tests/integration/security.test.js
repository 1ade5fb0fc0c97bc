/**
 * Secrets stay secret, in a real Node-RED process: config nodes deployed through the
 * admin API with credentials (as the editor sends them) keep passwords and URLs out of
 * flows.json; failing operations (wrong password, unreachable host, bad SQL, bad URL,
 * a password from `${ENV}`) never show a secret in msg.error, the Catch node's msg,
 * `_debug`, the runtime's stdout/stderr, the admin API (flows, credentials, test
 * connection, schema), metrics JSON or Prometheus text.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { MARIADB_URL, requireDatabases, spawnNodeRed, uniquePrefix } = require('../support');

test.before(() => requireDatabases(service));

// Distinct, greppable secrets (alphanumerics, so they survive any URL encoding as-is).
const S = {
  pgUrl: 'PgUrlSecretA1b2c3',
  myUrl: 'MyUrlSecretD4e5f6',
  pgPassword: 'PgPassSecretG7h8i9',
  myPassword: 'MyPassSecretJ0k1l2',
  unreachable: 'UnreachSecretM3n4o5',
  badUrl: 'BadUrlSecretP6q7r8',
  env: 'EnvSecretS9t0u1',
  fallback: 'FallbackSecretV2w3x4',
  test: 'TestRouteSecretY5z6',
};
const ALL = Object.values(S);

function findSecrets(text, where) {
  const found = ALL.filter((s) => text.includes(s));
  return found.map((s) => `${where}: ${s}`);
}

/** Runs `fn` with a short-lived MariaDB root connection (no connector tables needed). */
async function asMariadbRoot(fn) {
  const admin = await service.open({ primary: { provider: 'mariadb', url: MARIADB_URL }, tablePrefix: uniquePrefix('secadm'), autoMigrate: false });
  try {
    await fn(admin);
  } finally {
    await admin.close();
  }
}

/** A config node and an operation node behind `POST /sec/<name>`; Catch answers the request. */
function caseFlow(name, cfgProps, opProps = {}) {
  return [
    { id: `cfg_${name}`, type: 'database-connector-config', name: `sec-${name}`, tablePrefix: uniquePrefix('sec'), autoMigrate: true, acquireTimeoutMs: '2000', healthIntervalMs: '200', failoverThreshold: '1', ...cfgProps },
    { id: `in_${name}`, type: 'http in', z: 'tab', url: `/sec/${name}`, method: 'post', wires: [[`fn_${name}`]] },
    { id: `fn_${name}`, type: 'function', z: 'tab', func: 'msg.operation = msg.payload.operation; msg.topic = msg.payload.topic; msg.payload = msg.payload.payload; return msg;', wires: [[`op_${name}`]] },
    { id: `op_${name}`, type: 'database-connector', z: 'tab', connection: `cfg_${name}`, operation: 'msg', debug: true, ...opProps, wires: [['okfn']] },
  ];
}

test('no secret in flows.json, errors, logs, _debug, admin answers or metrics', { timeout: 180000 }, async () => {
  const cases = [
    // name, config props, credentials, [operations to send]
    ['pgurl', { provider: 'postgres' }, { url: `postgres://postgres:${S.pgUrl}@127.0.0.1:5432/test` }],
    ['myurl', { provider: 'mariadb' }, { url: `mysql://root:${S.myUrl}@127.0.0.1:3306/test` }],
    ['pgpass', { provider: 'postgres', host: '127.0.0.1', port: '5432', database: 'test' }, { user: 'postgres', password: S.pgPassword }],
    ['mypass', { provider: 'mariadb', host: '127.0.0.1', port: '3306', database: 'test' }, { user: 'root', password: S.myPassword }],
    ['unreach', { provider: 'postgres', host: '127.0.0.1', port: '1', database: 'test' }, { user: 'postgres', password: S.unreachable }],
    ['badurl', { provider: 'postgres' }, { url: `postgres://postgres:${S.badUrl}@127.0.0.1:notaport/test` }],
    ['env', { provider: 'mariadb', host: '127.0.0.1', port: '3306', database: 'test' }, { user: 'root', password: '${DBC_SEC_TEST_PASSWORD}' }],
    // primary down from the start: operations fail over to a MariaDB reached with a password
    ['failover', { provider: 'postgres', host: '127.0.0.1', port: '1', database: 'test', fallbackEnabled: true, fallbackProvider: 'mariadb' },
      { user: 'postgres', password: S.unreachable, fallbackUrl: `mysql://dbc_sec_user:${S.fallback}@127.0.0.1:3306/test` }],
    ['fb', { provider: 'sqlite', sqliteFile: ':memory:', fallbackEnabled: true, fallbackProvider: 'mariadb', fallbackHost: '127.0.0.1', fallbackPort: '3306', fallbackDatabase: 'test' },
      { fallbackUser: 'root', fallbackPassword: S.fallback, fallbackUrl: `mysql://root:${S.fallback}@127.0.0.1:3306/test` }],
  ];
  const flows = [
    { id: 'tab', type: 'tab', label: 'security' },
    { id: 'okfn', type: 'function', z: 'tab', func: 'msg.payload = { ok: true, payload: msg.payload, debug: msg._debug, error: msg.error }; return msg;', wires: [['res']] },
    { id: 'catcher', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['errfn']] },
    { id: 'errfn', type: 'function', z: 'tab', func: 'const e = msg.error; msg.statusCode = 500; msg.payload = { caught: true, error: { message: e.message, code: e.code, stack: e.stack, cause: e.cause, source: e.source } }; return msg;', wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab', wires: [] },
  ];
  for (const [name, props] of cases) flows.push(...caseFlow(name, props));
  // What the editor sends on deploy: each config node with a `credentials` object.
  const deployed = flows.map((n) => {
    const c = cases.find(([name]) => n.id === `cfg_${name}`);
    return c ? { ...n, credentials: c[2] } : n;
  });

  // a MariaDB user with a password, so that a failover really uses a secret
  await asMariadbRoot(async (admin) => {
    await admin.query(`CREATE USER IF NOT EXISTS 'dbc_sec_user'@'%' IDENTIFIED BY '${S.fallback}'`);
    await admin.query("GRANT ALL PRIVILEGES ON test.* TO 'dbc_sec_user'@'%'");
  });
  const red = await spawnNodeRed({ flows: [], env: { DBC_SEC_TEST_PASSWORD: S.env } });
  const leaks = [];
  try {
    await red.deploy(deployed);
    await red.poll('/sec-ready-probe-404', 200); // let the routes settle
    const flowsFile = fs.readFileSync(path.join(red.userDir, 'flows.json'), 'utf8');
    leaks.push(...findSecrets(flowsFile, 'flows.json'));
    assert.match(flowsFile, /cfg_pgurl/, 'the deploy was saved');
    const credFile = fs.readFileSync(path.join(red.userDir, 'flows_cred.json'), 'utf8');
    assert.ok(credFile.includes(S.pgPassword) && credFile.includes(S.pgUrl), 'secrets are in the credentials file (credentialSecret: false here)');

    const answers = [];
    const call = async (name, body) => {
      let timer;
      const r = await Promise.race([
        red.request('POST', `/sec/${name}`, body),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`POST /sec/${name}: no answer in 20 s\n${red.log().slice(-3000)}`)), 20000);
        }),
      ]).finally(() => clearTimeout(timer));
      answers.push({ name, body, status: r.status, text: r.text });
      return r;
    };
    // Working connection (PG trusts any password here): bad SQL, a good insert with _debug.
    const bad = await call('pgurl', { operation: 'query', topic: 'SELEC secret_column FROM nowhere' });
    assert.equal(bad.body.caught, true, bad.text);
    assert.equal(bad.body.error.code, 'DBC_QUERY');
    const good = await call('pgurl', { operation: 'insertTask', payload: { name: 'sec' } });
    assert.equal(good.body.ok, true, good.text);
    assert.equal(good.body.debug.provider, 'postgres');
    await call('pgpass', { operation: 'query', topic: 'SELECT 1 AS one' });
    await call('pgpass', { operation: 'query', topic: 'SELECT * FROM no_such_table_sec' });
    // Wrong passwords (MariaDB root has none), unreachable host, unparsable URL, ${ENV}.
    for (const [name, code] of [['myurl', 'DBC_CONNECTION'], ['mypass', 'DBC_CONNECTION'], ['unreach', 'DBC_CONNECTION'], ['badurl', 'DBC_CONFIG'], ['env', 'DBC_CONNECTION']]) {
      const r = await call(name, { operation: 'insertTask', payload: { name: 'x' } });
      assert.equal(r.body.caught, true, `${name}: ${r.text}`);
      assert.equal(r.body.error.code, code, `${name}: ${r.text}`);
      if (name !== 'unreach') assert.equal(r.body.error.cause.retryable, false, `${name}: the same credentials/URL fail again`);
      await call(name, { operation: 'query', topic: 'SELECT 1' }); // a second attempt re-opens
    }
    await call('fb', { operation: 'query', topic: 'SELEC 1' });
    const moved = await call('failover', { operation: 'insertTask', payload: { name: 'on the fallback' } });
    assert.equal(moved.body.ok, true, `the fallback takes the operation: ${moved.text}`);
    assert.equal(moved.body.debug.provider, 'mariadb');
    assert.equal(moved.body.debug.failover, true);
    await call('failover', { operation: 'query', topic: 'SELEC 1' });

    // Admin API: test connection with secrets in the body, flows and credentials reads.
    for (const creds of [
      { url: `postgres://postgres:${S.test}@127.0.0.1:1/test` },
      { url: `mysql://root:${S.test}@127.0.0.1:3306/test` },
      { url: `postgres://postgres:${S.test}@127.0.0.1:bad/test` },
    ]) {
      const r = await red.request('POST', '/database-connector/test', { config: { provider: creds.url.startsWith('mysql') ? 'mariadb' : 'postgres', acquireTimeoutMs: '2000' }, credentials: creds });
      assert.equal(r.body.ok, false, r.text);
      answers.push({ name: 'test-route', status: r.status, text: r.text });
    }
    const gotFlows = await red.request('GET', '/flows');
    leaks.push(...findSecrets(gotFlows.text, 'GET /flows'));
    for (const [name] of cases) {
      const c = await red.request('GET', `/credentials/database-connector-config/cfg_${name}`);
      // `user` is a text credential and comes back; password and url must not.
      leaks.push(...findSecrets(c.text, `GET /credentials (${name})`));
      for (const route of ['metrics', 'metrics?format=prometheus', 'schema']) {
        const m = await red.request('GET', `/database-connector/cfg_${name}/${route}`);
        answers.push({ name: `${name} ${route}`, status: m.status, text: m.text });
      }
    }
    const metrics = await red.request('GET', '/database-connector/cfg_pgurl/metrics');
    assert.equal(metrics.status, 200, metrics.text);
    const prom = await red.request('GET', '/database-connector/cfg_pgurl/metrics?format=prometheus');
    assert.match(prom.text, /# TYPE/);

    // The state-change lines the failures and the failover wrote (a health check that fails
    // again on a connection already reconnecting writes no line), then grep everything.
    await red.waitFor(/DBC_CONNECTION/);
    await red.waitFor(/failover to mariadb/);
    await red.waitFor(/sec-unreach\] postgres: reconnecting/);
    for (const a of answers) leaks.push(...findSecrets(a.text, `${a.name} answer (${a.status})`));
    leaks.push(...findSecrets(red.log(), 'runtime stdout/stderr'));
    for (const name of ['unreach', 'mypass', 'badurl', 'failover']) {
      const m = await red.request('GET', `/database-connector/cfg_${name}/metrics`);
      leaks.push(...findSecrets(m.text, `${name} metrics`));
    }
    const errorsSeen = answers.filter((a) => a.status === 500).length;
    assert.ok(errorsSeen >= 10, `${errorsSeen} failing answers checked`);
    assert.match(red.log(), /DBC_CONNECTION/, 'failures are logged (and were grepped)');
    assert.match(red.log(), /failover to mariadb/, 'the failover is logged (and was grepped)');
    assert.deepEqual(leaks, []);
    assert.doesNotMatch(red.log(), /unhandled|uncaught/i);
  } finally {
    await red.stop();
    await asMariadbRoot((admin) => admin.query("DROP USER IF EXISTS 'dbc_sec_user'@'%'"));
  }
  // The runtime's final log (shutdown included).
  assert.deepEqual(findSecrets(red.log(), 'runtime log after stop'), []);
});
