#!/usr/bin/env node
/**
 * `node scripts/smoke.js [PACKAGE_DIR]`: the addon through the node's own service, on an
 * in-memory SQLite database — open, insert a task, read it back, close. No database
 * server, no Node-RED, no network: the release workflow (.github/workflows/release.yml)
 * runs it on the macOS and Windows runners against the package a user would get
 * (PACKAGE_DIR: an installed node-red-contrib-database-connector; default: this checkout),
 * since those platforms cannot be built or tested on the project's own machine
 * (docs/RELEASING.md). Prints which addon file was loaded; exits non-zero on any mismatch.
 */
'use strict';

const assert = require('assert/strict');
const path = require('path');

async function main() {
  const dir = path.resolve(process.argv[2] || path.join(__dirname, '..'));
  const helpers = require(path.join(dir, 'nodes', 'database-connector', 'database-connector-helpers.js'));
  const loaded = Object.keys(require.cache).find((f) => f.endsWith('.node'));
  process.stdout.write(`[smoke] ${process.platform}-${process.arch}, Node ${process.version}, addon ${loaded || '(none loaded)'}\n`);
  const db = await helpers.connectToDatabase('sqlite', { primary: { sqliteFile: ':memory:' }, tablePrefix: 'dbc_' });
  try {
    const payload = { platform: `${process.platform}-${process.arch}`, n: 42, nested: { ok: true } };
    const inserted = await db.insertTask({ queue: 'smoke', name: 'smoke-test', payload, priority: 3 });
    const got = await db.getTask(inserted.id);
    assert.equal(got.id, inserted.id);
    assert.equal(got.queue, 'smoke');
    assert.equal(got.name, 'smoke-test');
    assert.equal(got.status, 'pending');
    assert.deepEqual(got.payload, payload);
    process.stdout.write(`[smoke] task ${got.id} inserted and read back on SQLite (:memory:)\n`);
  } finally {
    await db.close();
  }
}

main().catch((err) => {
  process.stderr.write(`[smoke] FAILED: ${err.stack || err}\n`);
  process.exit(1);
});
