/**
 * The addon contract, called through database-service.js (the only JS that loads it):
 * coded errors from every path, JS-safe types on every provider, panics and closed
 * handles as rejections — never a crash.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const service = require('../../nodes/database-connector/database-service');
const { configFor, requireDatabases, pollUntil } = require('../support');

const PROVIDERS = ['postgres', 'mariadb', 'sqlite'];

test.before(() => requireDatabases(service));

async function rejectsWith(promise, code, check) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, 'an Error');
    assert.equal(err.code, code, err.message);
    assert.equal(typeof err.retryable, 'boolean');
    assert.equal(typeof err.operation, 'string');
    if (check) check(err);
    return true;
  });
}

test('a database that is down at start-up: open resolves reconnecting, operations fail fast with DBC_CONNECTION', async () => {
  const started = Date.now();
  const db = await service.open({ primary: { provider: 'postgres', host: '127.0.0.1', port: 1 }, pool: { acquireTimeoutMs: 2000 } });
  try {
    assert.ok(Date.now() - started < 3000, 'open waits at most the acquire timeout');
    assert.equal(db.state, 'reconnecting');
    const t0 = Date.now();
    await rejectsWith(db.execute('insertTask', { name: 'x' }), 'DBC_CONNECTION', (err) => {
      assert.match(err.message, /refused/i);
      assert.equal(err.provider, 'postgres');
      assert.equal(err.retryable, true);
      assert.match(err.stack, /addon\.test\.js/);
    });
    assert.ok(Date.now() - t0 < 500, 'no wait for a connection known to be down');
  } finally {
    await db.close();
  }
  assert.equal(db.state, 'disconnected');
});

test('wrong credentials are DBC_CONNECTION on postgres and mariadb, without the password', async () => {
  await rejectsWith(
    service.open({ primary: { provider: 'postgres', host: '127.0.0.1', user: 'no_such_user_x', password: 'sekret-pw-1', database: 'test' } }),
    'DBC_CONNECTION',
    (err) => assert.doesNotMatch(err.message + err.stack, /sekret-pw-1/),
  );
  await rejectsWith(
    service.open({ primary: { provider: 'mariadb', url: 'mysql://root:sekret-pw-2@127.0.0.1:3306/test' } }),
    'DBC_CONNECTION',
    (err) => assert.doesNotMatch(err.message + err.stack, /sekret-pw-2/),
  );
});

test('bad configuration is DBC_CONFIG', async () => {
  await rejectsWith(service.open({ primary: { provider: 'oracle' } }), 'DBC_CONFIG');
  await rejectsWith(service.open({ primary: { provider: 'sqlite', sqliteFile: ':memory:' }, tablePrefix: 'Bad-Prefix' }), 'DBC_CONFIG');
  await rejectsWith(service.open({ primary: { provider: 'postgres', port: 70000 } }), 'DBC_CONFIG');
});

for (const provider of PROVIDERS) {
  test(`${provider}: coded errors from every query and task path`, async () => {
    const db = await service.open(configFor(provider));
    try {
      await rejectsWith(db.query('SELEC 1'), 'DBC_QUERY', (err) => {
        if (provider !== 'sqlite') assert.match(err.sqlState, /^42/);
        assert.equal(err.provider, provider);
      });
      const table = `u_${Math.random().toString(36).slice(2, 8)}`;
      await db.query(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, name VARCHAR(20))`);
      await db.query(`INSERT INTO ${table} (id, name) VALUES (1, 'a')`);
      await rejectsWith(db.query(`INSERT INTO ${table} (id, name) VALUES (1, 'b')`), 'DBC_CONFLICT', (err) => assert.ok(err.sqlState));
      const ph = provider === 'postgres' ? '$1' : '?';
      await rejectsWith(db.query(`SELECT name FROM ${table} WHERE id = ${ph}`, []), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'params'));
      await rejectsWith(db.query(`SELECT name FROM ${table} WHERE id = :id`, { nope: 1 }), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'params.id'));
      const circular = { a: 1 };
      circular.self = circular;
      await rejectsWith(db.execute('insertTask', { payload: circular }), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'payload'));
      // made in JS before the addon is called, and still naming the provider
      await rejectsWith(db.execute('insertTask', { payload: { n: NaN } }), 'DBC_VALIDATION', (err) => {
        assert.equal(err.provider, provider);
        assert.equal(err.cause.provider, provider);
      });
      await rejectsWith(db.execute('insertTask', { payload: 10n }), 'DBC_VALIDATION');
      await rejectsWith(db.query(`SELECT ${ph}`, [circular]), 'DBC_VALIDATION');
      await rejectsWith(db.execute('getTask', { id: 'not-a-uuid' }), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'id'));
      await rejectsWith(db.execute('getTask', { id: '0190d6e0-0000-7000-8000-000000000000' }), 'DBC_NOT_FOUND');
      await rejectsWith(db.execute('noSuchOperation', {}), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'operation'));
      await db.query(`DROP TABLE ${table}`);
    } finally {
      await db.close();
    }
    await rejectsWith(db.query('SELECT 1'), 'DBC_CONNECTION', (err) => assert.match(err.message, /closed/));
  });

  test(`${provider}: values come back JS-safe and the same on every provider`, async () => {
    const db = await service.open(configFor(provider));
    try {
      const t = `v_${Math.random().toString(36).slice(2, 8)}`;
      const types = {
        postgres: 'b BOOLEAN, i BIGINT, f DOUBLE PRECISION, d NUMERIC(20,4), s TEXT, j JSONB, u UUID, ts TIMESTAMPTZ, dt DATE, by BYTEA',
        mariadb: 'b BOOLEAN, i BIGINT, f DOUBLE, d DECIMAL(20,4), s TEXT, j JSON, u CHAR(36), ts DATETIME(3), dt DATE, `by` LONGBLOB',
        sqlite: 'b BOOLEAN, i INTEGER, f REAL, d TEXT, s TEXT, j TEXT, u TEXT, ts TEXT, dt TEXT, by BLOB',
      }[provider];
      await db.query(`CREATE TABLE ${t} (${types})`);
      const cols = provider === 'mariadb' ? 'b, i, f, d, s, j, u, ts, dt, `by`' : 'b, i, f, d, s, j, u, ts, dt, by';
      const row = {
        b: true, i: '9007199254740993', f: 2.5, d: '12345.6789', s: 'héllo', j: { a: [1, 'x'] },
        u: '0190d6e0-0000-7000-8000-000000000001', ts: '2024-05-01T10:20:30.123Z', dt: '2024-05-01', by: Buffer.from([0, 1, 2, 255]),
      };
      const names = Object.keys(row);
      await db.query(`INSERT INTO ${t} (${cols}) VALUES (${names.map((n) => `:${n}`).join(', ')})`, provider === 'mariadb' ? { ...row, ts: '2024-05-01 10:20:30.123' } : row);
      await db.query(`INSERT INTO ${t} (${cols}) VALUES (${names.map(() => 'NULL').join(', ')})`);
      const { rows } = await db.query(`SELECT ${cols} FROM ${t} ORDER BY i`);
      const [nulls, got] = provider === 'sqlite' ? [rows[0], rows[1]] : [rows.find((r) => r.i === null), rows.find((r) => r.i !== null)];
      assert.deepEqual(Object.values(nulls), names.map(() => null));
      assert.equal(got.b, true);
      assert.equal(got.i, '9007199254740993', 'beyond 2^53 as a string');
      assert.equal(got.f, 2.5);
      assert.equal(got.d, '12345.6789');
      assert.equal(got.s, 'héllo');
      if (provider === 'sqlite') assert.equal(got.j, JSON.stringify(row.j));
      else assert.deepEqual(got.j, row.j);
      assert.equal(got.u, row.u);
      assert.equal(got.ts.replace(' ', 'T').replace(/Z$/, ''), '2024-05-01T10:20:30.123');
      assert.equal(got.dt, '2024-05-01');
      assert.ok(Buffer.isBuffer(got.by));
      assert.deepEqual([...got.by], [0, 1, 2, 255]);
      assert.doesNotThrow(() => JSON.stringify(rows));
      const small = await db.query(provider === 'postgres' ? 'SELECT 42::int8 AS n' : 'SELECT 42 AS n');
      assert.equal(small.rows[0].n, 42);
      await db.query(`DROP TABLE ${t}`);
    } finally {
      await db.close();
    }
  });
}

test('a panic inside the addon becomes a DBC_INTERNAL rejection and the process lives on', async () => {
  const db = await service.open(configFor('sqlite'));
  await rejectsWith(db.handle.panicForTest().catch((e) => { throw service.toDatabaseError(e, 'panicForTest'); }), 'DBC_INTERNAL');
  const r = await db.query('SELECT 1 AS one');
  assert.equal(r.rows[0].one, 1);
  await db.close();
});

test('queryStream: chunks of the asked size, coded errors, close while a next waits, no crash on bad input', async () => {
  const db = await service.open(configFor('sqlite'));
  try {
    const series = (n) => `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) SELECT x FROM c`;
    const s = db.queryStream(series(25), null, 10, { debug: true });
    const got = [];
    for (;;) {
      const c = await s.next();
      got.push(c);
      if (c.done) break;
    }
    assert.deepEqual(got.map((c) => [c.rows.length, c.rowCount, c.done]), [[10, 10, false], [10, 20, false], [5, 25, true]]);
    assert.deepEqual(got[2].rows.at(-1), { x: 25 });
    assert.equal(got[0].debug, undefined);
    assert.equal(got[2].debug.statements[0].rows, 25);
    assert.deepEqual(await s.next(), { rows: [], done: true }, 'after the end');

    // an insert: rowCount is what it changed, with the insert id
    await db.query('CREATE TABLE IF NOT EXISTS qs_t (id INTEGER PRIMARY KEY, v INTEGER)');
    const ins = await db.queryStream('INSERT INTO qs_t (v) VALUES (:a), (:b)', { a: 1, b: 2 }, 10).next();
    assert.deepEqual({ rows: ins.rows, done: ins.done, rowCount: ins.rowCount, id: typeof ins.lastInsertId }, { rows: [], done: true, rowCount: 2, id: 'number' });

    // errors are DatabaseErrors with their codes, with a JS stack
    await rejectsWith(db.queryStream('SELEC 1', null, 10).next(), 'DBC_QUERY', (err) => {
      assert.equal(err.operation, 'query');
      assert.equal(err.provider, 'sqlite');
      assert.match(err.stack, /addon\.test\.js|database-service/);
    });
    await rejectsWith(db.queryStream('SELECT ?', [() => 1], 10).next(), 'DBC_VALIDATION', (err) => assert.equal(err.field, 'params[0]'));
    await rejectsWith(db.queryStream('SELECT 1', null, 'ten').next(), 'DBC_INTERNAL');
    const bad = db.queryStream('SELECT 1', null, 'ten');
    bad.close();

    // close() while a next() waits: the stream ends, the connection is free again
    const big = db.queryStream(series(1000000), null, 100);
    assert.equal((await big.next()).rows.length, 100);
    const pending = big.next();
    big.close();
    const last = await pending;
    // the waiting next() ends the stream, unless the producer had the next chunk ready
    // before close() reached it (both happen: a race with the producer's task): then it
    // is exactly that chunk, rows 101–200
    if (!last.done) assert.deepEqual(last.rows, Array.from({ length: 100 }, (_, i) => ({ x: 101 + i })), 'a chunk after close() is the next one, whole');
    else assert.deepEqual(last.rows, []);
    assert.deepEqual(await big.next(), { rows: [], done: true });
    const one = await db.query('SELECT 1 AS one');
    assert.equal(one.rows[0].one, 1);
    // the stopped producer gives its connection back from its own task: soon, not at once
    await pollUntil('the stopped stream\'s connection back in the pool', () => db.pool().inUse, (n) => n === 0, { ms: 2000 });
  } finally {
    await db.close();
  }
});

for (const provider of PROVIDERS) {
  test(`${provider}: single-task calls of one event-loop turn cross into the addon together, each with its own answer`, async () => {
    const db = await service.open({ ...configFor(provider), tablePrefix: `gt${provider.slice(0, 2)}_` });
    const sizes = [];
    const real = db.handle.executeMany.bind(db.handle);
    db.handle.executeMany = (operations, payloads, options) => {
      sizes.push(operations.length);
      return real(operations, payloads, options);
    };
    try {
      await db.query(`DELETE FROM gt${provider.slice(0, 2)}_tasks`);
      const queue = 'gather';
      const calls = [
        ...Array.from({ length: 20 }, (_, n) => db.execute('insertTask', { queue, payload: { n } })),
        db.execute('insertTask', { queue, priority: 'high' }),
        db.execute('insertTask', { queue, workflowId: '0190d6e0-0000-7000-8000-00000000ffff' }),
        db.execute('updateTaskStatus', { id: '0190d6e0-0000-7000-8000-00000000fffe', status: 'completed' }),
      ];
      const settled = await Promise.allSettled(calls);
      assert.deepEqual(sizes, [calls.length], 'one crossing for the whole turn');
      const inserted = settled.slice(0, 20).map((s) => s.value);
      inserted.forEach((r, n) => {
        assert.equal(r.provider, provider);
        assert.equal(r.value.status, 'pending');
        assert.deepEqual(r.value.payload, { n }, 'answers in call order');
      });
      assert.equal(new Set(inserted.map((r) => r.value.id)).size, 20);
      const [badField, badWorkflow, unknownTask] = settled.slice(20).map((s) => s.reason);
      for (const err of [badField, badWorkflow, unknownTask]) {
        assert.ok(err instanceof service.DatabaseError, String(err));
        assert.equal(err.provider, provider);
        assert.equal(typeof err.retryable, 'boolean');
      }
      assert.equal(badField.code, 'DBC_VALIDATION');
      assert.equal(badField.field, 'priority');
      assert.equal(badField.operation, 'insertTask');
      // an unknown workflow is refused by the foreign key: DBC_CONFLICT on every provider
      // (docs/API.md, insertTask's errors), as without gathering; and it fails alone
      assert.equal(badWorkflow.code, 'DBC_CONFLICT', badWorkflow.message);
      assert.equal(badWorkflow.operation, 'insertTask');
      assert.equal(unknownTask.code, 'DBC_NOT_FOUND');
      assert.equal(unknownTask.operation, 'updateTaskStatus');
      const count = await db.query(`SELECT count(*) AS n FROM gt${provider.slice(0, 2)}_tasks WHERE queue = 'gather'`);
      assert.equal(Number(count.rows[0].n), 20, 'the refused calls stored nothing');

      // completions of one turn: each its own result or error
      const claimed = (await db.execute('claimTasks', { queue, limit: 20, workerId: 'w1' })).value;
      assert.equal(claimed.length, 20);
      sizes.length = 0;
      const done = await Promise.allSettled([
        ...claimed.slice(1).map((t) => db.execute('updateTaskStatus', { id: t.id, status: 'completed', workerId: 'w1', result: { ok: t.id } })),
        db.execute('updateTaskStatus', { id: claimed[0].id, status: 'completed', workerId: 'w2' }),
      ]);
      assert.deepEqual(sizes, [20]);
      done.slice(0, 19).forEach((s, i) => {
        assert.equal(s.status, 'fulfilled', s.reason && s.reason.message);
        assert.equal(s.value.value.status, 'completed');
        assert.deepEqual(s.value.value.result, { ok: claimed[i + 1].id });
      });
      assert.equal(done[19].reason.code, 'DBC_LEASE_LOST');

      // calls with another default queue go in their own crossing; debug calls alone
      sizes.length = 0;
      const [a, b, c] = await Promise.all([
        db.execute('insertTask', { payload: 1 }, { queue: 'qa' }),
        db.execute('insertTask', { payload: 2 }, { queue: 'qb' }),
        db.execute('insertTask', { payload: 3 }, { queue: 'qb', debug: true }),
      ]);
      assert.deepEqual(sizes, [], 'a lone call per queue takes the plain path');
      assert.deepEqual([a.value.queue, b.value.queue, c.value.queue], ['qa', 'qb', 'qb']);
      assert.ok(c.debug, 'the debug call kept its _debug figures');
    } finally {
      await db.close();
    }
    // after close, gathered calls reject like any other
    await rejectsWith(Promise.all([db.execute('insertTask', {}), db.execute('insertTask', {})]), 'DBC_CONNECTION');
  });
}
