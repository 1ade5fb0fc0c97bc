/**
 * The private PostgreSQL helper (used by the kill drill and the TLS tests): it starts
 * with TLS from the test CA, survives SIGKILL + start with committed data intact, and
 * removes everything on stop().
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const net = require('net');
const { execFile } = require('child_process');
const { promisify } = require('util');
const { startPrivatePostgres, isAlive, PG_BIN } = require('../support/private-pg');
const { makeCerts } = require('../support/tls-certs');

const run = promisify(execFile);

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

test('private PostgreSQL: TLS, SIGKILL + restart keeps committed rows, stop removes the dir', { timeout: 120000 }, async () => {
  const certs = makeCerts();
  const t0 = Date.now();
  const pg = await startPrivatePostgres({ ssl: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } });
  const startMs = Date.now() - t0;
  try {
    assert.match(pg.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/test$/);
    assert.equal(await pg.psql("SELECT current_database() || ' ' || current_setting('fsync') || ' ' || current_setting('ssl')"), 'test on on');

    // A client verifying the server against the test CA gets an encrypted session.
    const conn = `host=localhost hostaddr=127.0.0.1 port=${pg.port} user=postgres dbname=test sslmode=verify-full sslrootcert=${certs.caFile}`;
    const { stdout } = await run(path.join(PG_BIN, 'psql'), [conn, '-XAtqc', 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()']);
    assert.equal(stdout.trim(), 't');
    // ...and against an unrelated CA it is refused.
    const wrong = `host=localhost hostaddr=127.0.0.1 port=${pg.port} user=postgres dbname=test sslmode=verify-full sslrootcert=${certs.wrongCaFile}`;
    await assert.rejects(run(path.join(PG_BIN, 'psql'), [wrong, '-XAtqc', 'SELECT 1']), /certificate verify failed/);

    await pg.psql('CREATE TABLE k (id int PRIMARY KEY); INSERT INTO k SELECT generate_series(1, 100)');
    const before = pg.pid();
    const t1 = Date.now();
    await pg.kill();
    const killMs = Date.now() - t1;
    assert.equal(await refused(pg.port), true, 'the port refuses connections after kill()');
    assert.equal(isAlive(before), false, 'the postmaster is gone');

    const t2 = Date.now();
    await pg.start();
    const restartMs = Date.now() - t2;
    assert.notEqual(pg.pid(), before);
    assert.equal(await pg.psql('SELECT count(*) FROM k'), '100');
    assert.match(pg.log(), /database system was interrupted|not properly shut down/);
    console.log(`private pg: start ${startMs} ms, kill ${killMs} ms, restart (crash recovery) ${restartMs} ms`);
  } finally {
    await pg.stop();
  }
  assert.equal(fs.existsSync(pg.dir), false, 'stop() removes the temp dir');
  assert.equal(await refused(pg.port), true);
});
