/**
 * The pool settings of docs/USER-GUIDE.md "Pool and timeouts (the *Pool* tab)": a
 * connection unused for `idleTimeoutMs` is closed, and `poolMin` connections are kept
 * open while idle — the pool shrinks to `poolMin`, not below (the background upkeep
 * keeps using one connection, so without poolMin it would end at one or none). Read
 * from the pool state the addon reports (`pool()`).
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { configFor, requireDatabases, pollUntil } = require('../support');

test.before(() => requireDatabases(service));

const SLEEP = { postgres: 'SELECT pg_sleep(0.3) AS s', mariadb: 'SELECT SLEEP(0.3) AS s' };

for (const provider of ['postgres', 'mariadb']) {
  test(`${provider}: idleTimeoutMs closes unused connections, down to poolMin and not below`, async () => {
    const db = await service.open({ ...configFor(provider), pool: { poolMin: 2, poolMax: 5, idleTimeoutMs: 500 } });
    try {
      assert.equal(db.pool().max, 5);
      // five at once: the pool grows to its max
      await Promise.all(Array.from({ length: 5 }, () => db.query(SLEEP[provider])));
      assert.equal(db.pool().size, 5, JSON.stringify(db.pool()));
      // idle past idleTimeoutMs: closed again, down to poolMin
      const after = await pollUntil('idle connections closed down to poolMin', () => db.pool(), (p) => p.size <= 2, { ms: 15000 });
      assert.equal(after.size, 2, JSON.stringify(after));
    } finally {
      await db.close();
    }
  });
}
