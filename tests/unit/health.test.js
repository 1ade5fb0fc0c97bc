/**
 * The addon's own health check, through a TCP proxy the test controls: cutting the link
 * turns the state `reconnecting` after `failoverThreshold` failed checks, restoring it
 * turns it `connected` again, and both changes are in the metrics' state log.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('net');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, requireDatabases } = require('../support');

test.before(() => requireDatabases(service));

/** A loopback proxy to `target` that can be cut and restored on the same port. */
async function proxy(target) {
  const sockets = new Set();
  let server = null;
  let port = 0;
  const listen = () => new Promise((resolve) => {
    server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(port, '127.0.0.1', () => {
      port = server.address().port;
      resolve();
    });
  });
  await listen();
  return {
    get port() { return port; },
    cut() {
      return new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
    },
    restore: listen,
    close() { return this.cut(); },
  };
}

async function waitFor(read, want, ms) {
  const until = Date.now() + ms;
  let got = read();
  while (got !== want && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    got = read();
  }
  return got;
}

test('a cut link turns the state reconnecting within the threshold, and back to connected', async () => {
  const pg = new URL(PG_URL);
  const link = await proxy({ host: pg.hostname, port: Number(pg.port || 5432) });
  const url = new URL(PG_URL);
  url.port = String(link.port);
  const db = await service.open({
    primary: { provider: 'postgres', url: url.toString() },
    tablePrefix: 'dbc_health_',
    autoMigrate: false,
    healthIntervalMs: 200,
    failoverThreshold: 2,
    pool: { acquireTimeoutMs: 500, poolMax: 2 },
  });
  try {
    assert.equal(db.state, 'connected');
    const cutAt = Date.now();
    await link.cut();
    assert.equal(await waitFor(() => db.state, 'reconnecting', 5000), 'reconnecting');
    const took = Date.now() - cutAt;
    assert.ok(took < 3 * 200 + 2 * 500 + 500, `reconnecting after ${took} ms`);
    await assert.rejects(db.query('SELECT 1'), (err) => err.code === 'DBC_CONNECTION' && err.retryable === true);
    await link.restore();
    assert.equal(await waitFor(() => db.state, 'connected', 5000), 'connected');
    assert.equal((await db.query('SELECT 1 AS one')).rows[0].one, 1);
    const log = (await db.metrics()).stateLog.map((c) => c.state);
    assert.deepEqual(log, ['connected', 'reconnecting', 'connected']);
  } finally {
    await db.close();
    await link.close();
  }
});
