/**
 * TLS against a private PostgreSQL started by the test with a throwaway CA: the config
 * node's TLS fields as the editor saves them (CA / client cert / key as file paths in
 * the node's properties, or as PEM text in its credentials) reach the addon; the
 * session is really encrypted (pg_stat_ssl); an untrusted CA, a host name the
 * certificate does not name, or a missing client cert fail with DBC_CONNECTION and a
 * message that names the certificate problem, and Node-RED keeps running.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const helper = require('node-red-node-test-helper');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const { root } = require('../support');
const { startPrivatePostgres } = require('../support/private-pg');
const { makeCerts } = require('../support/tls-certs');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [root] }));

helper.init(require.resolve('node-red', { paths: [root] }));

const crashes = [];
const onCrash = (err) => crashes.push(String(err && err.stack ? err.stack : err));
let certs;
let pg;

test.before(async () => {
  process.on('unhandledRejection', onCrash);
  process.on('uncaughtException', onCrash);
  certs = makeCerts();
  pg = await startPrivatePostgres({ ssl: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } });
  await new Promise((resolve) => helper.startServer(resolve));
});
test.after(async () => {
  await helper.unload();
  await new Promise((resolve) => helper.stopServer(resolve));
  if (pg) await pg.stop();
  process.off('unhandledRejection', onCrash);
  process.off('uncaughtException', onCrash);
});

const SSL_SQL = 'SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()';

/** Deploys a config node (props + credentials as the editor saves them) and runs SSL_SQL once. */
async function runWith(props, credentials = {}) {
  const flow = [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'database-connector-config', provider: 'postgres', host: 'localhost', port: String(pg.port), database: 'test', tablePrefix: 'tls_', autoMigrate: true, acquireTimeoutMs: '3000', ...props },
    { id: 'op', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'query', sql: SSL_SQL, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, catchNode], flow, { cfg: { user: 'postgres', ...credentials } });
  try {
    const got = new Promise((resolve) => {
      helper.getNode('out').on('input', (msg) => resolve({ ok: msg }));
      helper.getNode('caught').on('input', (msg) => resolve({ caught: msg }));
    });
    helper.getNode('op').receive({ payload: null });
    return await got;
  } finally {
    await helper.unload();
  }
}

function assertSsl(r, label) {
  assert.ok(r.ok, `${label}: ${JSON.stringify(r.caught && r.caught.error)}`);
  assert.equal(r.ok.payload[0].ssl, true, `${label}: the session is encrypted`);
  assert.match(r.ok.payload[0].version, /^TLSv1\.[23]$/);
}

function assertCertFailure(r, label, pattern = /certificate/i) {
  assert.ok(r.caught, `${label}: expected a failure, got ${JSON.stringify(r.ok && r.ok.payload)}`);
  const e = r.caught.error;
  assert.equal(e.code, 'DBC_CONNECTION', `${label}: ${e.message}`);
  assert.match(e.message, pattern, label);
  assert.equal(e.cause.retryable, false, `${label}: retrying cannot fix a certificate (${e.message})`);
}

test('verify-full with the CA as a file path (property) and as PEM text (credential)', async () => {
  assertSsl(await runWith({ ssl: 'verify-full', sslCa: certs.caFile }), 'CA file, host localhost');
  assertSsl(await runWith({ ssl: 'verify-full', host: '127.0.0.1' }, { sslCaPem: certs.caPem }), 'CA PEM credential, host 127.0.0.1 (IP SAN)');
  process.env.DBC_TLS_TEST_CA = certs.caFile;
  assertSsl(await runWith({ ssl: 'verify-full', sslCa: '${DBC_TLS_TEST_CA}' }), 'CA path from ${ENV}');
  // a URL credential with sslmode/sslrootcert works too
  assertSsl(await runWith({ host: '', port: '', database: '' }, { url: `postgres://postgres@localhost:${pg.port}/test?sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}` }), 'URL with sslrootcert');
});

test('a wrong CA fails with DBC_CONNECTION naming the certificate, as file and as PEM', async () => {
  assertCertFailure(await runWith({ ssl: 'verify-full', sslCa: certs.wrongCaFile }), 'wrong CA file');
  assertCertFailure(await runWith({ ssl: 'verify-full' }, { sslCaPem: certs.wrongCaPem }), 'wrong CA PEM');
  // no CA at all: the bundled public roots do not know the private CA
  assertCertFailure(await runWith({ ssl: 'verify-full' }), 'no CA');
  const missing = await runWith({ ssl: 'verify-full', sslCa: path.join(certs.dir, 'no-such-ca.crt') });
  assert.ok(missing.caught, 'a CA file that does not exist fails');
  assert.match(missing.caught.error.code, /^DBC_(CONFIG|CONNECTION)$/);
  assert.match(missing.caught.error.message, /no-such-ca\.crt|No such file|not found/i, missing.caught.error.message);
  assert.deepEqual(crashes, []);
});

test('require without a CA encrypts without verifying; disable does not encrypt', async () => {
  assertSsl(await runWith({ ssl: 'require' }), 'require');
  assertSsl(await runWith({ ssl: 'require', host: '127.0.0.1' }), 'require by IP');
  const plain = await runWith({ ssl: 'disable' });
  assert.ok(plain.ok, JSON.stringify(plain.caught && plain.caught.error));
  assert.equal(plain.ok.payload[0].ssl, false);
});

test('verify-full refuses a server certificate for another host name', async () => {
  const other = certs.serverCert(['DNS:db.example.invalid']);
  await pg.psql(`ALTER SYSTEM SET ssl_cert_file = '${other.certFile}'`);
  await pg.psql(`ALTER SYSTEM SET ssl_key_file = '${other.keyFile}'`);
  await pg.psql('SELECT pg_reload_conf()');
  try {
    // same CA, so only the name check can fail
    assertCertFailure(await runWith({ ssl: 'verify-full', sslCa: certs.caFile }), 'name mismatch', /certificate.*(name|valid for)|not valid for|NotValidForName/i);
    assertSsl(await runWith({ ssl: 'require', sslCa: certs.caFile }), 'require does not check the name');
  } finally {
    await pg.psql('ALTER SYSTEM RESET ssl_cert_file');
    await pg.psql('ALTER SYSTEM RESET ssl_key_file');
    await pg.psql('SELECT pg_reload_conf()');
  }
  assertSsl(await runWith({ ssl: 'verify-full', sslCa: certs.caFile }), 'back to the right certificate');
});

test('client certificate authentication: cert and key as files or as PEM credentials', async () => {
  fs.writeFileSync(path.join(pg.dataDir, 'pg_hba.conf'), 'hostssl all all 127.0.0.1/32 cert\n');
  await pg.psql('SELECT pg_reload_conf()');
  try {
    assertSsl(await runWith({ ssl: 'verify-full', sslCa: certs.caFile, sslCert: certs.clientCertFile, sslKey: certs.clientKeyFile }), 'client cert files');
    assertSsl(await runWith({ ssl: 'verify-full' }, { sslCaPem: certs.caPem, sslCertPem: certs.clientCertPem, sslKeyPem: certs.clientKeyPem }), 'client cert PEM credentials');
    const none = await runWith({ ssl: 'verify-full', sslCa: certs.caFile });
    assert.ok(none.caught, 'no client cert: refused');
    assert.equal(none.caught.error.code, 'DBC_CONNECTION', none.caught.error.message);
    assert.match(none.caught.error.message, /certificate/i);
  } finally {
    // `host`, not `hostssl`: the next tests may connect without TLS
    fs.writeFileSync(path.join(pg.dataDir, 'pg_hba.conf'), 'host all all 127.0.0.1/32 trust\n');
    await pg.psql('SELECT pg_reload_conf()').catch(() => {});
  }
  assert.deepEqual(crashes, []);
});
