/**
 * The raw reference on SQLite: better-sqlite3 (synchronous, in-process, one connection)
 * running our own claim and complete SQL — read from crates/dbc-core/src/store/sql/sqlite/
 * {claim,complete}.sql, so it is the same text the addon runs — on our own tables (the
 * schema made by the addon's migrations), one transaction per batch of 100: pick, start,
 * read back, record the attempts, complete, release dependents. What SQLite itself can
 * do with this SQL on this machine, without a pool, a queue or Node-RED around it.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { now } = require('./common');
const { connectorConfig } = require('./ours');

const sqlDir = path.resolve(__dirname, '..', '..', 'crates', 'dbc-core', 'src', 'store', 'sql', 'sqlite');
// the columns store/statements.rs puts in for {{task_columns}}
const TASK_COLUMNS = 'id, queue, name, payload, status, priority, run_at, attempts, max_attempts, workflow_id, '
  + 'idempotency_key, worker_id, lease_expires_at, result, last_error, created_at, updated_at, started_at, finished_at';

/** The named statements of one of our .sql files, as store/statements.rs reads them. */
function statements(file, prefix) {
  const out = {};
  let name = null;
  let body = [];
  for (const line of [...fs.readFileSync(path.join(sqlDir, file), 'utf8').split('\n'), '-- name: ']) {
    if (line.startsWith('-- name: ')) {
      if (name) out[name] = body.join('\n').trim().replaceAll('{{prefix}}', prefix).replaceAll('{{task_columns}}', TASK_COLUMNS);
      name = line.slice(9).trim() || null;
      body = [];
    } else if (name && !line.trimStart().startsWith('--')) body.push(line.trimEnd());
  }
  return out;
}

class BetterSqlite3 {
  constructor() {
    this.name = 'better-sqlite3 (sqlite)';
    this.p = 'bench_raw_';
  }

  async open(makeSchema) {
    await makeSchema('sqlite', this.p);
    const Database = require('better-sqlite3');
    this.db = new Database(connectorConfig('sqlite', this.p).primary.sqliteFile);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.claim = statements('claim.sql', this.p);
    this.complete = statements('complete.sql', this.p);
  }

  async close() {
    this.db.close();
  }

  async clear() {
    for (const t of ['task_dependencies', 'task_executions', 'error_logs', 'tasks', 'workflows']) this.db.exec(`DELETE FROM ${this.p}${t}`);
  }

  count(queue, status) {
    return this.db.prepare(`SELECT count(*) AS n FROM ${this.p}tasks WHERE queue = ? AND status = ?`).get(queue, status).n;
  }

  fill(queue, total) {
    const ins = this.db.prepare(`INSERT INTO ${this.p}tasks (id, queue, payload, status, priority, run_at, max_attempts, attempt_budget, created_at, updated_at) VALUES (?, ?, ?, 'pending', 0, ?, 5, 5, ?, ?)`);
    const ts = Date.now();
    this.db.transaction(() => {
      for (let i = 0; i < total; i++) ins.run(crypto.randomUUID(), queue, JSON.stringify({ n: i }), ts, ts, ts);
    })();
  }

  /** Claim + complete, 100 tasks per transaction, until the queue is empty. */
  async drain(total) {
    this.fill('drain', total);
    const ids = (n) => Array(n).fill('?').join(', ');
    const pick = this.db.prepare(this.claim.pick_tasks);
    const prepared = new Map();
    const forN = (n) => {
      if (!prepared.has(n)) {
        const c = this.complete;
        prepared.set(n, {
          start: this.db.prepare(this.claim.start_tasks.replace('{{ids}}', ids(n))),
          read: this.db.prepare(this.claim.read_tasks.replace('{{ids}}', ids(n))),
          pickDone: this.db.prepare(c.pick_completions.replace('{{ids}}', ids(n))),
          record: this.db.prepare(c.record_completions.replace('{{ids}}', ids(n))),
          done: this.db.prepare(c.complete_picked.replace('{{results}}', Array(n).fill('WHEN ? THEN ?').join(' ')).replace('{{ids}}', ids(n))),
          release: this.db.prepare(c.release_completed.replace('{{ids}}', ids(n))),
        });
      }
      return prepared.get(n);
    };
    const batch = this.db.transaction(() => {
      const t = Date.now();
      const picked = pick.all('drain', t, 100).map((r) => r.id);
      if (!picked.length) return 0;
      const s = forN(picked.length);
      s.start.run('w', t + 60000, t, t, t, ...picked);
      const tasks = s.read.all(...picked);
      const held = s.pickDone.all(t, ...tasks.map((x) => x.id)).filter((r) => r.worker_id === 'w').map((r) => r.id);
      s.record.run(t, t, ...held);
      s.done.run(...held.flatMap((id) => [id, null]), t, t, t, ...held);
      s.release.run(...held);
      return held.length;
    });
    const first = now();
    while (batch()) { /* next batch */ }
    const ms = now() - first;
    const n = this.count('drain', 'completed');
    return { ms, verified: n === total, detail: { completed: n } };
  }
}

module.exports = { BetterSqlite3 };
