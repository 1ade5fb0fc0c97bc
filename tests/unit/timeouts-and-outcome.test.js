/**
 * What the clock and the network make of an operation, as docs/ERRORS.md describes it:
 * - `DBC_QUERY_TIMEOUT` (retryable) for a statement that runs past `statementTimeoutMs`
 *   on PostgreSQL and MariaDB, and the connection stays usable;
 * - `DBC_CONNECTION` with `outcome: "unknown"` when the link breaks after the statement
 *   was sent (it may have been applied), and `outcome: "not-applied"` when it never
 *   reached the database.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, MARIADB_URL, requireDatabases, pollUntil, uniquePrefix } = require('../support');
const { startProxy, viaProxy } = require('../support/tcp-proxy');

test.before(() => requireDatabases(service));

const LONG = { postgres: 'SELECT pg_sleep(5) AS s', mariadb: 'SELECT SLEEP(5) AS s' };

for (const [provider, url] of [['postgres', PG_URL], ['mariadb', MARIADB_URL]]) {
  test(`${provider}: a statement past statementTimeoutMs is DBC_QUERY_TIMEOUT, retryable; the pool stays usable`, async () => {
    const db = await service.open({ primary: { provider, url }, tablePrefix: uniquePrefix('to'), autoMigrate: false, pool: { poolMax: 1, statementTimeoutMs: 300 } });
    try {
      const started = Date.now();
      await assert.rejects(db.query(LONG[provider]), (err) => {
        assert.equal(err.code, 'DBC_QUERY_TIMEOUT', `${err.code}: ${err.message}`);
        assert.equal(err.retryable, true);
        assert.equal(err.provider, provider);
        return true;
      });
      const took = Date.now() - started;
      assert.ok(took < 4000, `cancelled after ${took} ms, not at the end of the 5 s statement`);
      // the one pooled connection serves the next statement
      assert.equal(Number((await db.query('SELECT 1 AS one')).rows[0].one), 1);
    } finally {
      await db.close();
    }
  });
}

test('postgres: the link breaks while a statement runs: DBC_CONNECTION, outcome "unknown"; refused before sending: "not-applied"', async () => {
  const target = new URL(PG_URL);
  const link = await startProxy({ host: target.hostname, port: Number(target.port || 5432) });
  const admin = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  // no fallback: the error reaches the caller
  const db = await service.open({ primary: { provider: 'postgres', url: viaProxy(PG_URL, link) }, autoMigrate: false, healthIntervalMs: 60000, pool: { poolMax: 1, acquireTimeoutMs: 1000 } });
  try {
    const marker = `outcome_${process.pid}_${Date.now()}`;
    const sql = `SELECT pg_sleep(10), '${marker}' AS m`;
    const running = db.query(sql);
    running.catch(() => {});
    // the statement is on the server: then the link goes
    await pollUntil('the statement running on the server', async () => Number((await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = \'active\' AND query = $1', [sql])).rows[0].n), (n) => n === 1);
    await link.cut();
    await assert.rejects(running, (err) => {
      assert.equal(err.code, 'DBC_CONNECTION', `${err.code}: ${err.message}`);
      assert.equal(err.outcome, 'unknown', 'sent, so it may have been applied');
      assert.equal(err.retryable, true);
      return true;
    });
    // the link refuses: nothing reached the database
    await assert.rejects(db.query('SELECT 1'), (err) => {
      assert.equal(err.code, 'DBC_CONNECTION', `${err.code}: ${err.message}`);
      assert.equal(err.outcome, 'not-applied');
      return true;
    });
  } finally {
    await db.close();
    await admin.close();
    await link.close();
  }
});
