/**
 * Every fenced code block in README.md and docs/*.md is run here, or checked against
 * what it claims. A block's info string is `<language> <role>`; GitHub shows only the
 * language. A block without a role fails this test, so a new doc's samples cannot go
 * unchecked. The roles (docs/CONTRIBUTING.md has the same list, with examples):
 *
 *   json flow            a flow (array of nodes): deployed into a real Node-RED; every
 *                        node type must be known and the flow must start. A `connection`
 *                        id the sample does not define gets a SQLite config node. The
 *                        runtime has PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD set to
 *                        the test's PostgreSQL database. With `inject=ID expect=STATUS`,
 *                        the test clicks inject node ID and waits for more tasks in STATUS
 *                        in that connection's database.
 *   json input=OP        an operation's `msg.payload`: run by operation OP through the
 *                        method registry on SQLite and PostgreSQL; it must succeed. Ids in
 *                        it (`id`, `workflowId`, `after`: a UUID or "…") are replaced by
 *                        tasks/workflows the test makes first (FIXTURES).
 *   jsonata input=OP     a JSONata expression (inject / change node): its value is run as
 *                        OP's input, as above.
 *   json output=OP       OP's result: every key the sample shows exists in the real result
 *                        (recursively, first array element); without a "…" key, the real
 *                        result has no other keys. Several JSON values, one per line, are
 *                        matched to the real results in order.
 *   js function          a function node's body: run with `msg = {}` (as Node-RED does, in
 *                        a vm), then the msg it leaves is sent through the registry
 *                        (`msg.operation`, else `query` with `msg.topic`/`msg.params`).
 *                        `providers=a,b` limits it (placeholder syntax differs).
 *   js worker            a function node between `consume` and `updateTaskStatus`: run
 *                        with the msg a consume node sends for a real claimed task; the msg
 *                        it returns goes through an updateTaskStatus node's mapping and
 *                        must settle the task as it says.
 *   js catch             a function node after a Catch node: run with `msg.error` shaped
 *                        by Node-RED from real failures (validation, not found, lease
 *                        lost, transaction); must not throw and returns msg only when the
 *                        error is retryable.
 *   js run               JS run as an async function body on PostgreSQL with `db` and
 *                        `registry` (a registry), `id` (a running task another worker holds),
 *                        `retryLater`, `require` (the package name resolves to this
 *                        checkout) and `process.env.DATABASE_URL`.
 *   js output=OP         a JS object literal (comments allowed) checked like json output.
 *   js config            connectToDatabase's config: every default shown equals
 *                        buildConnectorConfig's, and every key exists there.
 *   mermaid states       a stateDiagram of the connection: every state is one the addon
 *                        reports and the node shows (helpers.statusFor), and every state
 *                        the node shows is in it.
 *   mermaid layers       a flowchart of the code's layers (docs/ARCHITECTURE.md): every file
 *                        path it names exists (from the repository root, or under
 *                        crates/dbc-core/src/), and every `Type::fn` / `Type.fn` it names
 *                        appears in the file of its box.
 *   mermaid schema       an erDiagram: every entity (as `<prefix>name`) and every column
 *                        exists in a freshly migrated PostgreSQL database.
 *   sh run               a shell session: run by bash (-e) with HOME and the working dir
 *                        in a fresh temp dir; it must succeed (and a CA made by it must
 *                        verify the certificates made with it).
 *   LANG mirrors=PATH    checked by another file: PATH exists and names this doc (e.g. a
 *                        shell session that tests/integration/package.test.js performs).
 *   text, LANG text      not code (a log line, a field's content, a directory tree); not run.
 *
 * The generated part of docs/API.md (scripts/api-docs.js) must be current.
 *
 * Databases: a temporary SQLite file and a PostgreSQL database created for this test
 * (table prefix `dbc_`, the default the docs use), dropped at the end.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const vm = require('vm');
const helpers = require('../../nodes/database-connector/database-connector-helpers');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, RED_DIR, root, requireDatabases, spawnNodeRed } = require('../support');

const { util: redUtil } = require(require.resolve('@node-red/util', { paths: [RED_DIR] }));

/** Evaluates JSONata as an inject or change node does (Node-RED's own evaluator). */
function evaluateJsonata(text) {
  const expr = redUtil.prepareJSONataExpression(text, null);
  return new Promise((resolve, reject) => {
    redUtil.evaluateJSONataExpression(expr, { payload: {} }, (err, value) => (err ? reject(err) : resolve(value)));
  });
}

/** Every fenced block of README.md and docs/*.md: {file, line, lang, role, attrs, code}. */
function extractSamples() {
  const files = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
  const out = [];
  for (const file of files) {
    const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]);
      if (!open) continue;
      const fence = open[2];
      const [lang = '', ...words] = open[3].trim().split(/\s+/).filter(Boolean);
      const attrs = {};
      let role = '';
      for (const w of words) {
        const eq = w.indexOf('=');
        if (eq > 0) attrs[w.slice(0, eq)] = w.slice(eq + 1);
        else role = w;
      }
      const body = [];
      let j = i + 1;
      while (j < lines.length && !lines[j].trim().startsWith(fence)) body.push(lines[j++]);
      out.push({ file, line: i + 1, lang, role, attrs, code: body.join('\n') });
      i = j;
    }
  }
  return out;
}

const SAMPLES = extractSamples();
const where = (s) => `${s.file}:${s.line} (\`\`\`${s.lang} ${s.role} ${Object.entries(s.attrs).map(([k, v]) => `${k}=${v}`).join(' ')})`;
const kind = (s) => {
  if (s.attrs.mirrors) return 'mirrors';
  if (s.lang === 'text' || s.role === 'text') return 'text';
  if (s.attrs.input) return 'input';
  if (s.attrs.output) return 'output';
  return `${s.lang} ${s.role}`;
};
const KINDS = ['mirrors', 'text', 'input', 'output', 'json flow', 'js function', 'js worker', 'js catch', 'js run', 'js config', 'mermaid layers', 'mermaid schema', 'mermaid states', 'sh run'];

/** Parses JSON, or several JSON values one per line. */
function parseJsonValues(code) {
  try {
    return [JSON.parse(code)];
  } catch {
    return code.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  }
}

/** A JS object literal with comments and bare names (`{ provider, url }`) → value. */
function evalLiteral(code, names = {}) {
  return vm.runInNewContext(`(${code})`, { ...names });
}

/** Keys whose value is the user's own JSON, not the connector's shape. */
const USER_DATA = ['payload', 'result', 'metadata', 'params', 'rows'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ELIDED = '…';

/**
 * Checks that every key of `sample` exists in `real` (recursively); without a "…" key,
 * `real` may have no other key either.
 */
function assertShape(sample, real, at) {
  if (Array.isArray(sample)) {
    assert.ok(Array.isArray(real), `${at}: the real result is not an array: ${JSON.stringify(real)}`);
    const first = sample.find((v) => v !== ELIDED);
    if (first !== undefined && real.length) assertShape(first, real[0], `${at}[0]`);
    return;
  }
  if (!sample || typeof sample !== 'object' || !real || typeof real !== 'object') return;
  const keys = Object.keys(sample).filter((k) => k !== ELIDED);
  for (const k of keys) {
    assert.ok(k in real, `${at}: the sample shows "${k}", the real result has no such key (it has: ${Object.keys(real).join(', ')})`);
    if (!USER_DATA.includes(k)) assertShape(sample[k], real[k], `${at}.${k}`);
  }
  if (!(ELIDED in sample)) {
    const extra = Object.keys(real).filter((k) => !keys.includes(k));
    assert.deepEqual(extra, [], `${at}: the real result also has ${extra.join(', ')}; show them or add "…": "…"`);
  }
}

/** The fixture's ids put into a sample: per item when the fixture made one per item. */
function fill(value, ids) {
  return Array.isArray(ids) ? value.map((v, i) => substitute(v, ids[i])) : substitute(value, ids);
}

/** Replaces sample ids (a UUID or "…") in `id`, `workflowId`, `after` with the fixture's. */
function substitute(value, ids) {
  if (Array.isArray(value)) return value.map((v) => substitute(v, ids));
  if (!value || typeof value !== 'object') return value;
  const out = {};
  for (const [k, v] of Object.entries(value)) {
    const placeholder = typeof v === 'string' && (UUID.test(v) || v === ELIDED);
    if (placeholder && k in ids) out[k] = ids[k];
    else if (k === ELIDED) continue;
    else out[k] = substitute(v, ids);
  }
  return out;
}

let seq = 0;
/** Makes what an operation's sample input refers to; returns the ids to put into it. */
const FIXTURES = {
  async updateTaskStatus(db, sample) {
    // a batch settle: a task of its own for each item
    if (Array.isArray(sample)) {
      const each = [];
      for (const item of sample) each.push(await FIXTURES.updateTaskStatus(db, item));
      return each;
    }
    const queue = `fx-${++seq}`;
    const t = await db.insertTask({ queue });
    if (sample.workerId) await db.run('claimTasks', { queue, workerId: sample.workerId });
    return { id: t.id };
  },
  async heartbeat(db, sample) {
    return FIXTURES.updateTaskStatus(db, sample); // a task the sample's worker holds
  },
  async snoozeTask(db, sample) {
    return FIXTURES.updateTaskStatus(db, sample);
  },
  async requeueFailedTask(db) {
    const t = await db.insertTask({ queue: `fx-${++seq}`, maxAttempts: 1 });
    await db.updateTaskStatus(t.id, 'failed', { error: 'oops' });
    return { id: t.id };
  },
  async getTask(db) {
    const t = await db.insertTask({ queue: `fx-${++seq}`, maxAttempts: 2 });
    await db.updateTaskStatus(t.id, 'failed', { error: 'oops' });
    return { id: t.id };
  },
  async deleteTask(db) {
    return { id: (await db.insertTask({ queue: `fx-${++seq}` })).id };
  },
  async getWorkflowProgress(db) {
    const wf = (await db.run('createWorkflow', { name: 'nightly-etl', metadata: { owner: 'ops' }, tasks: [{ key: 'a' }, { key: 'b', dependsOn: ['a'] }] })).value;
    return { workflowId: wf.id };
  },
  async listTasks(db) {
    const wf = (await db.run('createWorkflow', { name: 'fx', tasks: [{ key: 'a', queue: 'jobs' }, { key: 'b', queue: 'jobs' }] })).value;
    return { workflowId: wf.id, after: wf.tasks[0].id };
  },
};

/** Default inputs for an output sample with no input sample of its operation before it. */
const DEFAULT_INPUTS = {
  insertTask: { queue: 'jobs', name: 'resize-image', payload: { image: 'cat.jpg' }, priority: 5 },
  getTask: { id: ELIDED },
  createWorkflow: { name: 'nightly-etl', metadata: { owner: 'ops' }, tasks: [{ key: 'extract' }, { key: 'load', dependsOn: ['extract'] }] },
  getWorkflowProgress: { workflowId: ELIDED },
  pauseQueue: { queue: 'mail' },
  resumeQueue: { queue: 'mail' },
  getQueueStats: { queue: 'mail' },
  executeTransaction: [
    { operation: 'insertTask', payload: { queue: 'jobs', name: 'send-invoice' } },
    { operation: 'query', payload: { sql: 'SELECT status, count(*) AS tasks FROM dbc_tasks WHERE queue = :queue GROUP BY status', params: { queue: 'jobs' } } },
  ],
};

/** Runs operation `op` with a sample input on `db`, after its fixture. */
async function runInput(db, op, input) {
  const ids = FIXTURES[op] ? await FIXTURES[op](db, input) : {};
  const payload = fill(input, ids);
  if (op === 'testConnection') return runTestConnection(payload);
  if (op === 'metrics') return db.metrics();
  return (await db.run(op, payload)).value;
}

/** The admin route's body against this machine's PostgreSQL (host and user replaced). */
async function runTestConnection(body) {
  const url = new URL(PG_URL);
  const config = { ...body.config, host: url.hostname, port: url.port || '5432', database: url.pathname.slice(1), ssl: 'prefer' };
  const r = await helpers.testConnection({ config, credentials: { user: decodeURIComponent(url.username), password: '' } });
  assert.equal(r.ok, true, JSON.stringify(r));
  return r;
}

/** Real results for an output sample. */
async function realOutputs(db, op, lastInput, count) {
  if (op === 'testConnection') {
    const good = await runTestConnection({ config: { provider: 'postgres' } });
    const bad = await helpers.testConnection({ config: { provider: 'postgres', host: '127.0.0.1', port: '1', acquireTimeoutMs: '500' } });
    return [good, bad].slice(0, count);
  }
  if (op === 'metrics') return [await db.metrics()];
  if (op === 'debug') {
    const t0 = performance.now();
    const r = await db.run('insertTask', { queue: 'jobs' }, { debug: true });
    return [helpers.buildDebug('insertTask', Date.now(), t0, r.debug)];
  }
  const input = lastInput !== undefined ? lastInput : DEFAULT_INPUTS[op];
  assert.ok(input !== undefined, `no input known for output=${op}: put a \`json input=${op}\` sample before it`);
  return [await runInput(db, op, input)];
}

const EXAMPLE_TABLES = {
  postgres: [
    'CREATE TABLE customers (id serial PRIMARY KEY, name text, country text, active boolean)',
    'CREATE TABLE orders (id serial PRIMARY KEY, customer text, total numeric)',
    'CREATE TABLE stock (sku text PRIMARY KEY, qty integer)',
    "INSERT INTO stock VALUES ('A-1', 10)",
    "INSERT INTO customers (name, country, active) VALUES ('Nora', 'NO', true)",
    "INSERT INTO orders (customer, total) VALUES ('acme', 250)",
  ],
  sqlite: [
    'CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT, active BOOLEAN)',
    'CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total NUMERIC)',
    'CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER)',
    "INSERT INTO stock VALUES ('A-1', 10)",
    "INSERT INTO customers (name, country, active) VALUES ('Nora', 'NO', 1)",
    "INSERT INTO orders (customer, total) VALUES ('acme', 250)",
  ],
};

const dbs = {};
let pgDatabase;
let pgDocsUrl;

test.before(async () => {
  await requireDatabases(service);
  const admin = await helpers.connectToDatabase('postgres', { primary: { url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  pgDatabase = `dbc_docs_${process.pid}`;
  await admin.query(`DROP DATABASE IF EXISTS ${pgDatabase}`);
  await admin.query(`CREATE DATABASE ${pgDatabase}`);
  await admin.close();
  const url = new URL(PG_URL);
  url.pathname = `/${pgDatabase}`;
  pgDocsUrl = url.toString();
  const sqliteFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-docs-')), 'docs.db');
  dbs.postgres = await helpers.connectToDatabase('postgres', { primary: { url: pgDocsUrl }, tablePrefix: 'dbc_', retryBackoffMs: 10 });
  dbs.sqlite = await helpers.connectToDatabase('sqlite', { primary: { sqliteFile }, tablePrefix: 'dbc_', retryBackoffMs: 10 });
  for (const [provider, statements] of Object.entries(EXAMPLE_TABLES)) {
    for (const sql of statements) await dbs[provider].query(sql);
  }
});

test.after(async () => {
  for (const db of Object.values(dbs)) await db.close();
  const admin = await helpers.connectToDatabase('postgres', { primary: { url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
  await admin.query(`DROP DATABASE IF EXISTS ${pgDatabase} WITH (FORCE)`);
  await admin.close();
});

test('every fenced block in README.md and docs/*.md has a role this test knows', () => {
  assert.ok(SAMPLES.length > 20, `found only ${SAMPLES.length} samples`);
  const unknown = SAMPLES.filter((s) => !KINDS.includes(kind(s)));
  assert.deepEqual(unknown.map(where), [], 'give each block a role (see the top of tests/integration/docs.test.js or docs/CONTRIBUTING.md)');
});

test('the generated registry reference in docs/API.md is current (npm run docs:api)', async () => {
  const { generate, splice } = require('../../scripts/api-docs');
  const text = fs.readFileSync(path.join(root, 'docs', 'API.md'), 'utf8');
  assert.equal(splice(text, await generate()), text, 'docs/API.md is stale: run `npm run docs:api`');
});

/** The heading of the section a sample is in (the nearest one above it). */
function sectionOf(s) {
  const lines = fs.readFileSync(path.join(root, s.file), 'utf8').split('\n').slice(0, s.line - 1);
  let inFence = false;
  let heading = '';
  for (const l of lines) {
    if (/^\s*(`{3,}|~{3,})/.test(l)) inFence = !inFence;
    else if (!inFence && /^#{1,6} /.test(l)) heading = l.replace(/^#+ /, '').trim();
  }
  return heading;
}

/**
 * Whether `text` names the section: `<doc> "<heading>"`, `<doc>'s "<heading>"` or
 * `<doc>#<anchor>`, across comment line breaks. A doc's name alone is not enough: files
 * name README.md or docs/API.md for other reasons (a packed-files list).
 */
function namesSection(text, doc, heading) {
  const flat = text.replace(/\s*\n\s*(?:\*(?!\/)|\/\/)?\s*/g, ' ');
  const anchor = heading.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');
  return flat.includes(`${doc} "${heading}"`) || flat.includes(`${doc}'s "${heading}"`) || flat.includes(`${doc}#${anchor}`);
}

test('mirrored samples: the linked file exists and names the doc and the sample\'s section', () => {
  const mirrored = SAMPLES.filter((x) => kind(x) === 'mirrors');
  assert.ok(mirrored.length >= 5, `found only ${mirrored.length} mirrored samples`);
  for (const s of mirrored) {
    const target = path.join(root, s.attrs.mirrors);
    assert.ok(fs.existsSync(target), `${where(s)}: ${s.attrs.mirrors} does not exist`);
    const section = sectionOf(s);
    assert.ok(section, `${where(s)}: no heading above the sample`);
    assert.ok(namesSection(fs.readFileSync(target, 'utf8'), s.file, section), `${where(s)}: ${s.attrs.mirrors} does not name ${s.file} "${section}" (or ${s.file}#anchor)`);
  }
});

for (const provider of ['sqlite', 'postgres']) {
  test(`operation inputs and outputs on ${provider}`, async () => {
    const db = dbs[provider];
    const lastInput = {};
    let ran = 0;
    for (const s of SAMPLES) {
      try {
        if (kind(s) === 'input') {
          const input = s.lang === 'jsonata' ? await evaluateJsonata(s.code) : JSON.parse(s.code);
          await runInput(db, s.attrs.input, input);
          lastInput[s.attrs.input] = input;
          ran++;
        } else if (kind(s) === 'output') {
          const op = s.attrs.output;
          const samples = s.lang === 'js' ? [evalLiteral(s.code)] : parseJsonValues(s.code);
          const real = await realOutputs(db, op, lastInput[op], samples.length);
          samples.forEach((sample, i) => assertShape(sample, real[i], `${where(s)} value ${i + 1}`));
          ran++;
        }
      } catch (err) {
        err.message = `${where(s)}: ${err.message}`;
        throw err;
      }
    }
    assert.ok(ran >= 10, `ran ${ran} input/output samples`);
  });
}

test('function-node samples run, and what they leave in msg runs through the registry', async () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'js function');
  assert.ok(samples.length >= 3);
  for (const s of samples) {
    const providers = s.attrs.providers ? s.attrs.providers.split(',') : ['sqlite', 'postgres'];
    for (const provider of providers) {
      const db = dbs[provider];
      const msg = {};
      vm.runInNewContext(`(function () { ${s.code}\n})()`, { msg, node: { warn() {}, error() {} } });
      try {
        if (msg.operation) {
          const ids = FIXTURES[msg.operation] ? await FIXTURES[msg.operation](db, msg.payload) : {};
          await db.run(msg.operation, fill(msg.payload, ids));
        } else {
          assert.ok(msg.topic, `${where(s)}: leaves neither msg.operation nor msg.topic`);
          const r = await db.query(msg.topic, msg.params);
          assert.ok(r.rows.length > 0, `${where(s)} on ${provider}: no rows from the example tables`);
        }
      } catch (err) {
        err.message = `${where(s)} on ${provider}: ${err.message}`;
        throw err;
      }
    }
  }
});

test('worker samples settle a claimed task through updateTaskStatus', async () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'js worker');
  assert.ok(samples.length >= 1);
  for (const provider of ['sqlite', 'postgres']) {
    const db = dbs[provider];
    for (const s of samples) {
      const queue = `fx-${++seq}`;
      await db.insertTask({ queue, payload: { image: 'cat.jpg' } });
      const [task] = (await db.run('claimTasks', { queue, workerId: 'node-red:consume:1' })).value;
      const msg = { _msgid: 'm1', payload: task.payload, task };
      const out = vm.runInNewContext(`(function () { ${s.code}\n})()`, { msg, node: { warn() {}, error() {} } });
      assert.ok(out && out.task === task, `${where(s)}: returns the msg with msg.task`);
      const { status: reported, error } = out.payload;
      const sent = await helpers.runOperation(db, { operation: 'updateTaskStatus' }, out);
      const expected = reported === 'failed' ? 'pending' : reported; // attempts are left: retried later
      assert.equal(sent.payload.id, task.id, where(s));
      assert.equal(sent.payload.status, expected, `${where(s)} on ${provider}`);
      if (reported === 'failed') assert.equal(sent.payload.lastError, error.message || error);
    }
  }
});

test('Catch-node samples handle real errors as they say', async () => {
  const db = dbs.postgres;
  const errors = [];
  const capture = async (fn) => {
    try {
      await fn();
      assert.fail('expected a failure');
    } catch (err) {
      errors.push(db.handleDatabaseError(err));
    }
  };
  await capture(() => db.insertTask({ priority: 'high' }));
  await capture(() => db.getTask('0190d6e0-0000-7000-8000-000000000000'));
  await capture(() => db.executeTransaction([{ operation: 'insertTask', payload: {} }, { operation: 'query', payload: { sql: 'SELECT nope FROM nowhere' } }]));
  const queue = `fx-${++seq}`;
  const t = await db.insertTask({ queue });
  await db.run('claimTasks', { queue, workerId: 'a' });
  await capture(() => db.updateTaskStatus(t.id, 'completed', { workerId: 'b' }));
  errors.push(handleLike({ code: 'DBC_CONNECTION', message: 'connection refused', retryable: true, operation: 'insertTask' }));
  assert.deepEqual(errors.map((e) => e.code), ['DBC_VALIDATION', 'DBC_NOT_FOUND', 'DBC_TRANSACTION', 'DBC_LEASE_LOST', 'DBC_CONNECTION']);
  const samples = SAMPLES.filter((s) => kind(s) === 'js catch');
  assert.ok(samples.length >= 1);
  for (const s of samples) {
    for (const e of errors) {
      // what Node-RED's Catch node puts into msg.error: message, code, stack, cause
      const msg = { payload: {}, error: { message: String(e), code: e.code, stack: e.stack, cause: e.cause } };
      const warnings = [];
      const node = { warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
      const out = vm.runInNewContext(`(function () { ${s.code}\n})()`, { msg, node });
      assert.equal(out, e.retryable ? msg : null, `${where(s)}: ${e.code} retryable=${e.retryable}`);
      if (e.code === 'DBC_VALIDATION') assert.match(String(warnings[0]), /priority/, `${where(s)}: names the field`);
      if (e.code === 'DBC_TRANSACTION') assert.match(String(warnings[0]), /step 1/, `${where(s)}: names the step`);
    }
  }
  function handleLike(details) {
    return helpers.handleDatabaseError(new helpers.DatabaseError(details.message, details));
  }
});

test('JavaScript samples run against PostgreSQL', async () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'js run');
  assert.ok(samples.length >= 2);
  const pkgRequire = (id) => require(id.startsWith('node-red-contrib-database-connector') ? path.join(root, id.slice('node-red-contrib-database-connector'.length)) : id);
  const saved = process.env.DATABASE_URL;
  process.env.DATABASE_URL = pgDocsUrl;
  try {
    for (const s of samples) {
      const queue = `fx-${++seq}`;
      const t = await dbs.postgres.insertTask({ queue });
      await dbs.postgres.run('claimTasks', { queue, workerId: 'someone-else' });
      let retried = 0;
      const fn = new Function('db', 'registry', 'id', 'retryLater', 'require', 'process', `return (async () => {\n${s.code}\n})();`);
      try {
        await fn(dbs.postgres, dbs.postgres, t.id, () => { retried++; }, pkgRequire, process);
      } catch (err) {
        err.message = `${where(s)}: ${err.message}`;
        throw err;
      }
      assert.equal(retried, 0, `${where(s)}: a lease lost is not retried`);
    }
  } finally {
    if (saved === undefined) delete process.env.DATABASE_URL;
    else process.env.DATABASE_URL = saved;
  }
});

test('config samples show buildConnectorConfig\'s keys and defaults', () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'js config');
  assert.ok(samples.length >= 1);
  const defaults = helpers.buildConnectorConfig({ provider: 'sqlite' }, {}, os.tmpdir());
  const names = ['provider', 'url', 'host', 'port', 'database', 'user', 'password', 'ssl', 'sslCa', 'sslCert', 'sslKey', 'sqliteFile'];
  for (const s of samples) {
    const sample = evalLiteral(s.code, Object.fromEntries(names.map((n) => [n, undefined])));
    const check = (obj, real, at) => {
      for (const [k, v] of Object.entries(obj)) {
        assert.ok(k in real, `${where(s)}: ${at}${k} is not a config key`);
        if (v && typeof v === 'object') check(v, real[k], `${at}${k}.`);
        else if (v !== undefined) assert.deepEqual(v, real[k], `${where(s)}: default of ${at}${k}`);
      }
    };
    check(sample, defaults, '');
  }
});

test('the schema diagram names real tables and columns', async () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'mermaid schema');
  assert.ok(samples.length >= 1);
  const { rows } = await dbs.postgres.query("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'");
  const columns = new Map();
  for (const r of rows) columns.set(r.table_name, [...(columns.get(r.table_name) || []), r.column_name]);
  for (const s of samples) {
    let entity = null;
    let entities = 0;
    for (const raw of s.code.split('\n')) {
      const line = raw.trim();
      const open = /^([A-Za-z_][\w-]*)\s*\{$/.exec(line);
      if (open) {
        entity = open[1].startsWith('dbc_') ? open[1] : `dbc_${open[1]}`;
        entities++;
        assert.ok(columns.has(entity), `${where(s)}: no table ${entity}`);
      } else if (line === '}') entity = null;
      else if (entity && line) {
        const column = line.split(/\s+/)[1];
        assert.ok(columns.get(entity).includes(column), `${where(s)}: ${entity} has no column ${column}`);
      }
    }
    assert.ok(entities >= 5, `${where(s)}: only ${entities} entities`);
  }
});

test('layer diagrams name files and functions that exist', () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'mermaid layers');
  assert.ok(samples.length >= 1);
  const resolve = (p) => [path.join(root, p), path.join(root, 'crates/dbc-core/src', p)].find((f) => fs.existsSync(f));
  for (const s of samples) {
    let boxes = 0;
    for (const m of s.code.matchAll(/\["([^"]*)"\]/g)) {
      const parts = m[1].split('<br/>');
      const paths = parts.flatMap((p) => p.match(/[\w./-]+\.(?:rs|js|sql)\b/g) || []);
      for (const p of paths) assert.ok(resolve(p), `${where(s)}: ${p} does not exist`);
      if (!paths.length) continue;
      boxes++;
      const text = fs.readFileSync(resolve(paths[0]), 'utf8');
      for (const [, type, fn] of m[1].matchAll(/\b([A-Z]\w*)(?:::|\.)([a-z]\w*)\b/g)) {
        assert.ok(text.includes(type) && new RegExp(`\\b${fn}\\b`).test(text), `${where(s)}: ${paths[0]} has no ${type} / ${fn}`);
      }
    }
    assert.ok(boxes >= 5, `${where(s)}: only ${boxes} boxes name a file`);
  }
});

test('connection state diagrams name the states the node shows', () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'mermaid states');
  assert.ok(samples.length >= 1);
  const shown = ['connected', 'failover', 'reconnecting', 'disconnected'];
  for (const s of samples) {
    const states = new Set();
    for (const m of s.code.matchAll(/^\s*(\S+)\s*-->\s*([^:\s]+)/gm)) for (const st of [m[1], m[2]]) if (st !== '[*]') states.add(st);
    for (const st of states) {
      assert.ok(shown.includes(st), `${where(s)}: ${st} is not a connection state`);
      const status = helpers.statusFor(st, 'postgres');
      assert.notEqual(status.text, st === 'disconnected' ? '' : 'database-connector.status.disconnected', `${where(s)}: the node has no status for ${st}`);
    }
    assert.deepEqual([...states].sort(), [...shown].sort(), `${where(s)}: every state the node shows`);
  }
});

test('shell samples run', () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'sh run');
  assert.ok(samples.length >= 1);
  for (const s of samples) {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-sh-'));
    try {
      const r = require('child_process').spawnSync('bash', ['-e', '-c', s.code], { cwd: home, env: { ...process.env, HOME: home }, encoding: 'utf8' });
      assert.equal(r.status, 0, `${where(s)}:\n${r.stdout}\n${r.stderr}`);
      // certificates made from a CA in the session must verify against it
      for (const dir of [home, ...fs.readdirSync(home).map((d) => path.join(home, d))]) {
        if (!fs.existsSync(path.join(dir, 'ca.crt'))) continue;
        for (const crt of fs.readdirSync(dir).filter((f) => f.endsWith('.crt') && f !== 'ca.crt')) {
          const v = require('child_process').spawnSync('openssl', ['verify', '-CAfile', 'ca.crt', crt], { cwd: dir, encoding: 'utf8' });
          assert.equal(v.status, 0, `${where(s)}: ${crt} does not verify: ${v.stdout}${v.stderr}`);
        }
      }
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  }
});

test('flow samples deploy into a real Node-RED and start', async () => {
  const samples = SAMPLES.filter((s) => kind(s) === 'json flow');
  assert.ok(samples.length >= 1);
  const pg = new URL(pgDocsUrl);
  const env = { PGHOST: pg.hostname, PGPORT: pg.port || '5432', PGDATABASE: pgDatabase, PGUSER: decodeURIComponent(pg.username), PGPASSWORD: decodeURIComponent(pg.password) };
  const red = await spawnNodeRed({ flows: [], env });
  try {
    for (const s of samples) {
      const flow = JSON.parse(s.code);
      const tab = { id: `docs-tab-${s.line}`, type: 'tab', label: where(s) };
      const defined = new Set(flow.map((n) => n.id));
      const nodes = flow.map((n) => (n.type === 'tab' || n.z ? n : { ...n, z: tab.id }));
      for (const id of new Set(flow.filter((n) => n.connection && !defined.has(n.connection)).map((n) => n.connection))) {
        nodes.push({ id, type: 'database-connector-config', name: 'docs', provider: 'sqlite', sqliteFile: `docs-${s.line}.db`, tablePrefix: 'dbc_', autoMigrate: true });
      }
      const before = red.log().length;
      await red.deploy([tab, ...nodes]);
      const deployed = await red.request('GET', '/flows');
      assert.equal(deployed.status, 200);
      const types = new Set(deployed.body.map((n) => n.type));
      for (const n of flow) assert.ok(types.has(n.type), `${where(s)}: ${n.type} not deployed`);
      const since = () => red.log().slice(before);
      for (const until = Date.now() + 15000; !(/Started flows/.test(since()) && /: connected/.test(since())) && Date.now() < until;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const log = since();
      assert.match(log, /Started flows/, `${where(s)}: the flow did not start:\n${log}`);
      assert.match(log, /: connected/, `${where(s)}: the connection did not open:\n${log}`);
      assert.doesNotMatch(log, /Waiting for missing types|\[error\]/, `${where(s)}:\n${log}`);
      if (s.attrs.inject) {
        // click the inject button, then wait for the outcome the sample promises in the database
        const provider = flow.find((n) => n.type === 'database-connector-config').provider;
        const count = async () => Number((await dbs[provider].query(`SELECT count(*) AS n FROM dbc_tasks WHERE status = '${s.attrs.expect}'`)).rows[0].n);
        const already = await count();
        const clicked = await red.request('POST', `/inject/${s.attrs.inject}`);
        assert.equal(clicked.status, 200, `${where(s)}: inject ${s.attrs.inject}: ${clicked.text}`);
        const until = Date.now() + 15000;
        while ((await count()) <= already && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
        assert.ok((await count()) > already, `${where(s)}: no task became ${s.attrs.expect}:\n${red.log().slice(before)}`);
      }
    }
  } catch (err) {
    throw new Error(`${err.message}\nNode-RED log:\n${red.log()}`, { cause: err });
  } finally {
    await red.stop();
  }
});
