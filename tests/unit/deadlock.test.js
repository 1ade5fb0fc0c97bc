/**
 * Deadlock retries (docs/API.md "executeTransaction"): two transactions that lock two
 * rows in opposite orders deadlock; the database picks one as the victim, and the addon
 * runs that whole transaction again, so both succeed, each applied once, and `_debug`
 * counts the retry. On PostgreSQL (40P01) and MariaDB (1213, SQLSTATE 40001).
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { configFor, requireDatabases } = require('../support');

test.before(() => requireDatabases(service));

const PAUSE = { postgres: 'SELECT pg_sleep(1) AS s', mariadb: 'SELECT SLEEP(1) AS s' };

for (const provider of ['postgres', 'mariadb']) {
  test(`${provider}: two transactions locking two rows in opposite order: the victim runs again; both applied once`, async () => {
    const cfg = configFor(provider);
    const db = await service.open({ ...cfg, pool: { poolMax: 4 } });
    const table = `${cfg.tablePrefix}locks`;
    try {
      await db.query(`CREATE TABLE ${table} (id INT PRIMARY KEY, v INT NOT NULL)`);
      await db.query(`INSERT INTO ${table} (id, v) VALUES (1, 0), (2, 0)`);
      const add = (id, n) => ({ operation: 'query', payload: { sql: `UPDATE ${table} SET v = v + ${n} WHERE id = ${id}` } });
      const pause = { operation: 'query', payload: { sql: PAUSE[provider] } };
      // each holds its first row while it waits (1 s: both hold one before either asks for
      // its second, also on a busy machine), then asks for the other one's
      const [a, b] = await Promise.all([
        db.execute('executeTransaction', [add(1, 1), pause, add(2, 1)], { debug: true }),
        db.execute('executeTransaction', [add(2, 10), pause, add(1, 10)], { debug: true }),
      ]);
      const retries = [a.debug.retries, b.debug.retries].sort();
      assert.deepEqual(retries, [0, 1], 'one transaction was the victim and ran once more');
      const rows = (await db.query(`SELECT id, v FROM ${table} ORDER BY id`)).rows.map((r) => [Number(r.id), Number(r.v)]);
      assert.deepEqual(rows, [[1, 11], [2, 11]], 'each transaction applied exactly once');
    } finally {
      await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await db.close();
    }
  });
}
