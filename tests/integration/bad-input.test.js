/**
 * Hard input, table-driven, through the real Node-RED runtime (node-red-node-test-helper)
 * on PostgreSQL, MariaDB and SQLite: every bad message reaches a Catch node with its
 * `DBC_*` code (and `field` for validation errors), writes nothing (row counts and the
 * task rows of the prefix's tables unchanged), and the runtime keeps answering with no
 * unhandled rejection or uncaught exception. SQL text in string fields is stored and
 * returned verbatim, never executed. Wrong configurations are `DBC_CONFIG`.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const helper = require('node-red-node-test-helper');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { buildConnectorConfig } = require('../../nodes/database-connector/database-connector-helpers');
const { nodeConfigFor, requireDatabases, root } = require('../support');

const catchNode = require(require.resolve('@node-red/nodes/core/common/25-catch.js', { paths: [root] }));

helper.init(require.resolve('node-red', { paths: [root] }));

const MAX_PAYLOAD = 65536;
const crashes = [];
const onCrash = (kind) => (err) => crashes.push(`${kind}: ${err && err.stack ? err.stack : err}`);
const onRejection = onCrash('unhandledRejection');
const onException = onCrash('uncaughtException');

test.before(async () => {
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  await requireDatabases(service);
  await new Promise((resolve) => helper.startServer(resolve));
});
test.after(async () => {
  await helper.unload();
  await new Promise((resolve) => helper.stopServer(resolve));
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
});

/** Collects what reaches `out` and `caught`, in order. */
function watch(nodes) {
  const queue = [];
  let waiting = null;
  const push = (item) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      w(item);
    } else queue.push(item);
  };
  nodes.out.on('input', (m) => push({ ok: m }));
  nodes.caught.on('input', (m) => push({ caught: m }));
  nodes.next = (ms = 30000) => {
    if (queue.length) return Promise.resolve(queue.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { waiting = null; reject(new Error(`no output and no Catch within ${ms} ms`)); }, ms);
      waiting = (item) => { clearTimeout(timer); resolve(item); };
    });
  };
  nodes.send = (msg) => { nodes.op.receive(msg); return nodes.next(); };
  return nodes;
}

async function loadFlow(cfgProps, credentials) {
  const flow = [
    { id: 'tab', type: 'tab' },
    cfgProps,
    { id: 'op', type: 'database-connector', z: 'tab', connection: cfgProps.id, operation: 'msg', queue: 'q1', debug: false, wires: [['out']] },
    { id: 'out', type: 'helper', z: 'tab' },
    { id: 'c1', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'tab' },
  ];
  await helper.load([dbNode, catchNode], flow, { [cfgProps.id]: credentials });
  return watch({ op: helper.getNode('op'), out: helper.getNode('out'), caught: helper.getNode('caught') });
}

const circular = () => {
  const o = { a: 1 };
  o.self = o;
  return o;
};
const NIL_V7 = '01890a5d-ac96-774b-bcce-b302099a8057'; // a well-formed UUIDv7 no task has
const SQL_TEXTS = [
  "x'); DROP TABLE {p}tasks; --",
  "' OR '1'='1",
  "\\'; DELETE FROM {p}tasks; -- ",
  '"; UPDATE {p}tasks SET status = \'completed\'; --',
  '$1 :name ? %s \\u0000 \\x00; SELECT pg_sleep(5); --',
];

/**
 * The table. Each row: [label, msg (or a function of the seeded ids), code, field?].
 * `field` is asserted for DBC_VALIDATION (docs/ERRORS.md); null means "any non-empty".
 */
function badInputs(seed, provider) {
  const ph = provider === 'postgres' ? '$1' : '?';
  return [
    // --- operation selection
    ['unknown operation', { operation: 'dropEverything', payload: {} }, 'DBC_VALIDATION', 'operation'],
    ['missing operation', { payload: {} }, 'DBC_VALIDATION', 'operation'],
    ['operation is an object', { operation: { $ne: 1 }, payload: {} }, 'DBC_VALIDATION', 'operation'],
    ['operation with SQL text', { operation: "insertTask'; DROP TABLE x; --", payload: {} }, 'DBC_VALIDATION', 'operation'],
    ['consume asked from msg.operation', { operation: 'consume', payload: {} }, 'DBC_VALIDATION', 'operation'],
    // --- insertTask: shape and types
    ['insertTask: payload is a string', { operation: 'insertTask', payload: 'a task' }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: payload is a number', { operation: 'insertTask', payload: 42 }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: payload is null', { operation: 'insertTask', payload: null }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: empty array', { operation: 'insertTask', payload: [] }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: 100k-element array', { operation: 'insertTask', payload: Array.from({ length: 100000 }, () => ({})) }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: one bad task among good ones', { operation: 'insertTask', payload: [{ name: 'a' }, { name: 'b' }, { name: 'c' }, { priority: -1 }] }, 'DBC_VALIDATION', 'payload[3].priority'],
    ['insertTask: unknown field', { operation: 'insertTask', payload: { prio: 1 } }, 'DBC_VALIDATION', 'prio'],
    ['insertTask: negative priority', { operation: 'insertTask', payload: { priority: -1 } }, 'DBC_VALIDATION', 'priority'],
    ['insertTask: huge priority', { operation: 'insertTask', payload: { priority: 1e15 } }, 'DBC_VALIDATION', 'priority'],
    ['insertTask: fractional priority', { operation: 'insertTask', payload: { priority: 1.5 } }, 'DBC_VALIDATION', 'priority'],
    ['insertTask: priority as a string', { operation: 'insertTask', payload: { priority: '5' } }, 'DBC_VALIDATION', 'priority'],
    ['insertTask: NaN priority', { operation: 'insertTask', payload: { priority: NaN } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: Infinity in the payload', { operation: 'insertTask', payload: { payload: { x: Infinity } } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: BigInt in the payload', { operation: 'insertTask', payload: { payload: { n: 10n } } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: circular payload', { operation: 'insertTask', payload: { payload: circular() } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: circular msg.payload itself', { operation: 'insertTask', payload: circular() }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: payload over maxPayloadBytes (100 kB vs 64 kB)', { operation: 'insertTask', payload: { payload: { s: 'x'.repeat(100 * 1024) } } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: 10 MB payload', { operation: 'insertTask', payload: { payload: { s: 'x'.repeat(10 * 1024 * 1024) } } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: uniqueFor without an idempotencyKey', { operation: 'insertTask', payload: { uniqueFor: 'active' } }, 'DBC_VALIDATION', 'uniqueFor'],
    ['insertTask: uniqueFor an unknown scope', { operation: 'insertTask', payload: { idempotencyKey: 'k', uniqueFor: 'forever' } }, 'DBC_VALIDATION', 'uniqueFor'],
    ['insertTask: uniqueFor a negative period', { operation: 'insertTask', payload: { idempotencyKey: 'k', uniqueFor: -1 } }, 'DBC_VALIDATION', 'uniqueFor'],
    ['insertTask: uniqueFor in a bad array item', { operation: 'insertTask', payload: [{ name: 'a' }, { idempotencyKey: 'k', uniqueFor: 1e15 }] }, 'DBC_VALIDATION', 'payload[1].uniqueFor'],
    ['configureQueue: no deadLetterQueue', { operation: 'configureQueue', payload: { queue: 'q' } }, 'DBC_VALIDATION', 'deadLetterQueue'],
    ['configureQueue: a queue as its own dead-letter queue', { operation: 'configureQueue', payload: { queue: 'q', deadLetterQueue: 'q' } }, 'DBC_VALIDATION', 'deadLetterQueue'],
    ['configureQueue: deadLetterQueue a number', { operation: 'configureQueue', payload: { queue: 'q', deadLetterQueue: 7 } }, 'DBC_VALIDATION', 'deadLetterQueue'],
    ['insertTask: runAt in the year 10000', { operation: 'insertTask', payload: { runAt: '10000-01-01T00:00:00Z' } }, 'DBC_VALIDATION', 'runAt'],
    ['insertTask: runAt epoch ms in the year 10000', { operation: 'insertTask', payload: { runAt: 253402300800000 } }, 'DBC_VALIDATION', 'runAt'],
    ['insertTask: runAt not a date', { operation: 'insertTask', payload: { runAt: 'next tuesday' } }, 'DBC_VALIDATION', 'runAt'],
    ['insertTask: runAt as an object', { operation: 'insertTask', payload: { runAt: { year: 2030 } } }, 'DBC_VALIDATION', 'runAt'],
    ['insertTask: maxAttempts 0', { operation: 'insertTask', payload: { maxAttempts: 0 } }, 'DBC_VALIDATION', 'maxAttempts'],
    ['insertTask: maxAttempts 1e9', { operation: 'insertTask', payload: { maxAttempts: 1e9 } }, 'DBC_VALIDATION', 'maxAttempts'],
    ['insertTask: empty queue', { operation: 'insertTask', payload: { queue: '' } }, 'DBC_VALIDATION', 'queue'],
    ['insertTask: queue of 300 characters', { operation: 'insertTask', payload: { queue: 'q'.repeat(300) } }, 'DBC_VALIDATION', 'queue'],
    ['insertTask: queue is a number', { operation: 'insertTask', payload: { queue: 7 } }, 'DBC_VALIDATION', 'queue'],
    ['insertTask: name is an array', { operation: 'insertTask', payload: { name: ['a'] } }, 'DBC_VALIDATION', 'name'],
    ['insertTask: idempotencyKey is a number', { operation: 'insertTask', payload: { idempotencyKey: 5 } }, 'DBC_VALIDATION', 'idempotencyKey'],
    ['insertTask: workflowId not a UUID', { operation: 'insertTask', payload: { workflowId: 'wf-1' } }, 'DBC_VALIDATION', 'workflowId'],
    ['insertTask: workflowId SQL text', { operation: 'insertTask', payload: { workflowId: "1' OR '1'='1" } }, 'DBC_VALIDATION', 'workflowId'],
    ['insertTask: dependsOn not an array', { operation: 'insertTask', payload: { workflowId: seed.workflowId, dependsOn: 'abc' } }, 'DBC_VALIDATION', 'dependsOn'],
    ['insertTask: dependsOn with a bad id', { operation: 'insertTask', payload: { workflowId: seed.workflowId, dependsOn: ['not-a-uuid'] } }, 'DBC_VALIDATION', 'dependsOn[0]'],
    ['insertTask: NUL character in the name', { operation: 'insertTask', payload: { name: 'a\u0000b' } }, 'DBC_VALIDATION', 'name'],
    ['insertTask: NUL character deep in the payload', { operation: 'insertTask', payload: { payload: { list: ['ok', { s: '\u0000' }] } } }, 'DBC_VALIDATION', 'payload'],
    ['insertTask: dependsOn without workflowId', { operation: 'insertTask', payload: { dependsOn: [seed.pending] } }, 'DBC_VALIDATION', 'dependsOn'],
    // --- claimTasks
    ['claimTasks: payload is a string', { operation: 'claimTasks', payload: 'q1' }, 'DBC_VALIDATION', 'payload'],
    ['claimTasks: limit 0', { operation: 'claimTasks', payload: { limit: 0 } }, 'DBC_VALIDATION', 'limit'],
    ['claimTasks: limit 5000', { operation: 'claimTasks', payload: { limit: 5000 } }, 'DBC_VALIDATION', 'limit'],
    ['claimTasks: negative leaseMs', { operation: 'claimTasks', payload: { leaseMs: -1 } }, 'DBC_VALIDATION', 'leaseMs'],
    ['claimTasks: unknown field', { operation: 'claimTasks', payload: { queue: 'q1', max: 3 } }, 'DBC_VALIDATION', 'max'],
    // --- updateTaskStatus
    ['updateTaskStatus: missing id', { operation: 'updateTaskStatus', payload: { status: 'completed' } }, 'DBC_VALIDATION', 'id'],
    ['updateTaskStatus: invalid UUID', { operation: 'updateTaskStatus', payload: { id: 'nope', status: 'completed' } }, 'DBC_VALIDATION', 'id'],
    ['updateTaskStatus: id is SQL text', { operation: 'updateTaskStatus', payload: { id: "' OR 1=1; --", status: 'completed' } }, 'DBC_VALIDATION', 'id'],
    ['updateTaskStatus: unknown status', { operation: 'updateTaskStatus', payload: { id: seed.pending, status: 'done' } }, 'DBC_VALIDATION', 'status'],
    ['updateTaskStatus: missing status', { operation: 'updateTaskStatus', payload: { id: seed.pending } }, 'DBC_VALIDATION', 'status'],
    ['updateTaskStatus: an array item that is not an object', { operation: 'updateTaskStatus', payload: [seed.pending] }, 'DBC_VALIDATION', 'payload[0]'],
    ['updateTaskStatus: one bad item refuses the whole array', { operation: 'updateTaskStatus', payload: [{ id: seed.pending, status: 'cancelled' }, { id: seed.pending, status: 'done' }] }, 'DBC_VALIDATION', 'payload[1].status'],
    ['updateTaskStatus: result over maxPayloadBytes', { operation: 'updateTaskStatus', payload: { id: seed.running, status: 'completed', workerId: 'w1', result: { s: 'r'.repeat(MAX_PAYLOAD) } } }, 'DBC_VALIDATION', 'result'],
    ['updateTaskStatus: error over maxPayloadBytes', { operation: 'updateTaskStatus', payload: { id: seed.running, status: 'failed', workerId: 'w1', error: 'e'.repeat(MAX_PAYLOAD + 1) } }, 'DBC_VALIDATION', 'error'],
    ['updateTaskStatus: NUL character in the error', { operation: 'updateTaskStatus', payload: { id: seed.running, status: 'failed', workerId: 'w1', error: 'boom\u0000' } }, 'DBC_VALIDATION', 'error'],
    ['updateTaskStatus: unknown task', { operation: 'updateTaskStatus', payload: { id: NIL_V7, status: 'completed' } }, 'DBC_NOT_FOUND'],
    ['updateTaskStatus: completed → running', { operation: 'updateTaskStatus', payload: { id: seed.completed, status: 'running' } }, 'DBC_INVALID_TRANSITION'],
    ['updateTaskStatus: by a worker without the lease', { operation: 'updateTaskStatus', payload: { id: seed.running, status: 'completed', workerId: 'someone-else' } }, 'DBC_LEASE_LOST'],
    // --- heartbeat, snoozeTask
    ['heartbeat: progress over 100', { operation: 'heartbeat', payload: { id: seed.running, progress: 101 } }, 'DBC_VALIDATION', 'progress'],
    ['heartbeat: a note over 4 KB', { operation: 'heartbeat', payload: { id: seed.running, note: 'x'.repeat(5000) } }, 'DBC_VALIDATION', 'note'],
    ['heartbeat: payload is a string', { operation: 'heartbeat', payload: 'alive' }, 'DBC_VALIDATION', 'payload'],
    ['heartbeat: by a worker without the lease', { operation: 'heartbeat', payload: { id: seed.running, workerId: 'someone-else' } }, 'DBC_LEASE_LOST'],
    ['heartbeat: a pending task', { operation: 'heartbeat', payload: { id: seed.pending } }, 'DBC_LEASE_LOST'],
    ['snoozeTask: delayMs and runAt', { operation: 'snoozeTask', payload: { id: seed.running, delayMs: 1, runAt: 1 } }, 'DBC_VALIDATION', 'runAt'],
    ['snoozeTask: negative delay', { operation: 'snoozeTask', payload: { id: seed.running, delayMs: -5 } }, 'DBC_VALIDATION', 'delayMs'],
    ['snoozeTask: by a worker without the lease', { operation: 'snoozeTask', payload: { id: seed.running, workerId: 'someone-else' } }, 'DBC_LEASE_LOST'],
    // --- schedules
    ['createSchedule: a pattern that does not parse', { operation: 'createSchedule', payload: { name: 's', cron: 'every day' } }, 'DBC_VALIDATION', 'cron'],
    ['createSchedule: a pattern that never matches (30 February)', { operation: 'createSchedule', payload: { name: 's', cron: '0 0 30 2 *' } }, 'DBC_VALIDATION', 'cron'],
    ['createSchedule: an unknown time zone', { operation: 'createSchedule', payload: { name: 's', cron: '@daily', timeZone: 'Mars/Olympus' } }, 'DBC_VALIDATION', 'timeZone'],
    ['createSchedule: no name', { operation: 'createSchedule', payload: { cron: '@daily' } }, 'DBC_VALIDATION', 'name'],
    ['createSchedule: payload is a string', { operation: 'createSchedule', payload: '* * * * *' }, 'DBC_VALIDATION', 'payload'],
    ['pauseSchedule: an unknown name', { operation: 'pauseSchedule', payload: { name: 'no-such-schedule' } }, 'DBC_NOT_FOUND'],
    ['deleteSchedule: an unknown name', { operation: 'deleteSchedule', payload: { name: 'no-such-schedule' } }, 'DBC_NOT_FOUND'],
    ['previewSchedule: count 0', { operation: 'previewSchedule', payload: { cron: '@daily', count: 0 } }, 'DBC_VALIDATION', 'count'],
    // --- requeue, get, delete, list
    ['requeueFailedTask: id is a number', { operation: 'requeueFailedTask', payload: { id: 123 } }, 'DBC_VALIDATION', 'id'],
    ['requeueFailedTask: a pending task', { operation: 'requeueFailedTask', payload: { id: seed.pending } }, 'DBC_INVALID_TRANSITION'],
    ['getTask: missing id', { operation: 'getTask', payload: {} }, 'DBC_VALIDATION', 'id'],
    ['getTask: malformed UUID', { operation: 'getTask', payload: { id: `${seed.pending}x` } }, 'DBC_VALIDATION', 'id'],
    ['getTask: unknown id', { operation: 'getTask', payload: { id: NIL_V7 } }, 'DBC_NOT_FOUND'],
    ['deleteTask: invalid UUID', { operation: 'deleteTask', payload: { id: 'all' } }, 'DBC_VALIDATION', 'id'],
    ['deleteTask: a running task', { operation: 'deleteTask', payload: { id: seed.running } }, 'DBC_INVALID_TRANSITION'],
    ['deleteTask: unknown id', { operation: 'deleteTask', payload: { id: NIL_V7 } }, 'DBC_NOT_FOUND'],
    ['listTasks: limit 0', { operation: 'listTasks', payload: { limit: 0 } }, 'DBC_VALIDATION', 'limit'],
    ['listTasks: limit 1001', { operation: 'listTasks', payload: { limit: 1001 } }, 'DBC_VALIDATION', 'limit'],
    ['listTasks: unknown status', { operation: 'listTasks', payload: { status: 'stuck' } }, 'DBC_VALIDATION', 'status'],
    ['listTasks: cursor not a UUID', { operation: 'listTasks', payload: { after: "0' UNION SELECT 1 --" } }, 'DBC_VALIDATION', 'after'],
    // --- workflows
    ['createWorkflow: missing name', { operation: 'createWorkflow', payload: { tasks: [{}] } }, 'DBC_VALIDATION', 'name'],
    ['createWorkflow: empty tasks', { operation: 'createWorkflow', payload: { name: 'w', tasks: [] } }, 'DBC_VALIDATION', 'tasks'],
    ['createWorkflow: tasks not an array', { operation: 'createWorkflow', payload: { name: 'w', tasks: 'abc' } }, 'DBC_VALIDATION', 'tasks'],
    ['createWorkflow: 100k tasks', { operation: 'createWorkflow', payload: { name: 'w', tasks: Array.from({ length: 100000 }, () => ({})) } }, 'DBC_VALIDATION', 'tasks'],
    ['createWorkflow: a bad task after good ones (workflow row not written)', { operation: 'createWorkflow', payload: { name: 'w', tasks: [{ key: 'a' }, { priority: -5 }] } }, 'DBC_VALIDATION', 'tasks[1].priority'],
    ['createWorkflow: dependency on a later task', { operation: 'createWorkflow', payload: { name: 'w', tasks: [{ dependsOn: [1] }, {}] } }, 'DBC_VALIDATION', 'tasks[0].dependsOn[0]'],
    ['createWorkflow: metadata over maxPayloadBytes', { operation: 'createWorkflow', payload: { name: 'w', metadata: { s: 'm'.repeat(MAX_PAYLOAD) }, tasks: [{}] } }, 'DBC_VALIDATION', 'metadata'],
    ['createWorkflow: payload over the limit in one task', { operation: 'createWorkflow', payload: { name: 'w', tasks: [{}, { payload: 'y'.repeat(MAX_PAYLOAD + 1) }] } }, 'DBC_VALIDATION', 'tasks[1].payload'],
    ['getWorkflowProgress: missing workflowId', { operation: 'getWorkflowProgress', payload: {} }, 'DBC_VALIDATION', 'workflowId'],
    ['getWorkflowProgress: invalid UUID', { operation: 'getWorkflowProgress', payload: { workflowId: 'abc' } }, 'DBC_VALIDATION', 'workflowId'],
    ['getWorkflowProgress: unknown workflow', { operation: 'getWorkflowProgress', payload: { workflowId: NIL_V7 } }, 'DBC_NOT_FOUND'],
    // --- executeTransaction: all or nothing
    ['executeTransaction: empty array', { operation: 'executeTransaction', payload: [] }, 'DBC_VALIDATION', 'payload'],
    ['executeTransaction: not an array', { operation: 'executeTransaction', payload: { operation: 'insertTask' } }, 'DBC_VALIDATION', 'payload'],
    ['executeTransaction: unknown step operation', { operation: 'executeTransaction', payload: [{ operation: 'nope', payload: {} }] }, 'DBC_TRANSACTION'],
    ['executeTransaction: good steps then a bad one (rolled back)', { operation: 'executeTransaction', payload: [
      { operation: 'insertTask', payload: { name: 'tx1' } },
      { operation: 'updateTaskStatus', payload: { id: seed.pending, status: 'running', workerId: 'w9' } },
      { operation: 'insertTask', payload: { priority: -5 } },
    ] }, 'DBC_TRANSACTION'],
    ['executeTransaction: a step of bad SQL after an insert (rolled back)', { operation: 'executeTransaction', payload: [
      { operation: 'insertTask', payload: { name: 'tx2' } },
      { operation: 'query', payload: { sql: 'INSERT INTO no_such_table_here VALUES (1)' } },
    ] }, 'DBC_TRANSACTION'],
    // --- query
    ['query: no SQL', { operation: 'query', payload: {} }, 'DBC_VALIDATION', 'sql'],
    ['query: SQL is not text', { operation: 'query', topic: { sql: 'SELECT 1' } }, 'DBC_VALIDATION', 'sql'],
    ['query: syntax error', { operation: 'query', topic: 'SELEC 1' }, 'DBC_QUERY'],
    ['query: params is a string', { operation: 'query', topic: `SELECT ${ph} AS v`, params: 'abc' }, 'DBC_VALIDATION', 'params'],
    ['query: too few params', { operation: 'query', topic: `SELECT ${ph} AS v`, params: [] }, 'DBC_VALIDATION', 'params'],
    ['query: named param missing', { operation: 'query', topic: 'SELECT :v AS v', params: { w: 1 } }, 'DBC_VALIDATION', null],
    ['query: circular param', { operation: 'query', topic: `SELECT ${ph} AS v`, params: [circular()] }, 'DBC_VALIDATION', null],
  ];
}

/** Bad configurations: each is a DBC_CONFIG before any connection is attempted. */
const BAD_CONFIGS = [
  ['port is not a number', { port: 'abc' }],
  ['port out of range', { port: '70000' }],
  ['negative port', { port: '-5' }],
  ['unknown provider', { provider: 'oracle' }],
  ['provider with SQL text', { provider: "postgres'; --" }],
  ['table prefix with upper case', { tablePrefix: 'Dbc_' }],
  ['table prefix with SQL text', { tablePrefix: 'x; drop table users; --' }],
  ['table prefix too long', { tablePrefix: `a${'b'.repeat(31)}` }],
  ['poolMax 0', { poolMax: '0' }],
  ['poolMax not a number', { poolMax: 'ten' }],
  ['ssl mode unknown', { ssl: 'maybe' }],
  ['failback unknown', { failback: 'sometimes' }],
  ['maxPayloadBytes negative', { maxPayloadBytes: '-1' }],
  ['healthIntervalMs too small', { healthIntervalMs: '5' }],
];

const PROVIDERS = ['postgres', 'mariadb', 'sqlite'];

for (const provider of PROVIDERS) {
  test(`${provider}: bad input gets its DBC_* code, writes nothing, the runtime stays up`, { timeout: 120000 }, async () => {
    const t0 = Date.now();
    const cfg = nodeConfigFor(provider);
    cfg.props.maxPayloadBytes = String(MAX_PAYLOAD);
    const n = await loadFlow(cfg.props, cfg.credentials);
    const p = cfg.prefix;
    const ok = async (msg) => {
      const r = await n.send(msg);
      assert.ok(r.ok, `${msg.operation}: ${JSON.stringify(r.caught && r.caught.error)}`);
      return r.ok.payload;
    };

    // Seed: a pending, a running (worker w1) and a completed task, and a workflow.
    const pending = (await ok({ operation: 'insertTask', payload: { name: 'pending' } })).id;
    const running = (await ok({ operation: 'insertTask', payload: { name: 'running', queue: 'seed-r' } })).id;
    await ok({ operation: 'claimTasks', payload: { queue: 'seed-r', workerId: 'w1', leaseMs: 600000 } });
    const completed = (await ok({ operation: 'insertTask', payload: { name: 'completed', queue: 'seed-c' } })).id;
    await ok({ operation: 'claimTasks', payload: { queue: 'seed-c', workerId: 'w2' } });
    await ok({ operation: 'updateTaskStatus', payload: { id: completed, status: 'completed', workerId: 'w2' } });
    const workflowId = (await ok({ operation: 'createWorkflow', payload: { name: 'seed', tasks: [{ key: 'a' }] } })).id;
    const seed = { pending, running, completed, workflowId };

    // An independent connection to the same tables counts what is there.
    const watcher = await service.open({ ...buildConnectorConfig({ ...cfg.props, autoMigrate: false }, cfg.credentials), pool: { poolMax: 2 } });
    const snapshot = async () => {
      const counts = await watcher.query(
        `SELECT (SELECT count(*) FROM ${p}tasks) AS tasks, (SELECT count(*) FROM ${p}workflows) AS workflows, ` +
        `(SELECT count(*) FROM ${p}task_executions) AS executions, (SELECT count(*) FROM ${p}error_logs) AS errors, ` +
        `(SELECT count(*) FROM ${p}task_dependencies) AS deps, (SELECT count(*) FROM ${p}schedules) AS schedules, (SELECT count(*) FROM ${p}queues) AS queues`,
      );
      const rows = await watcher.query(`SELECT id, status, attempts, priority, worker_id, updated_at FROM ${p}tasks ORDER BY id`);
      return JSON.stringify({ counts: Object.fromEntries(Object.entries(counts.rows[0]).map(([k, v]) => [k, Number(v)])), rows: rows.rows });
    };

    try {
      const before = await snapshot();
      const rows = badInputs(seed, provider);
      const failures = [];
      for (const [label, msg, code, field] of rows) {
        const marker = Math.random();
        const r = await n.send({ ...msg, marker });
        try {
          assert.ok(r.caught, `expected ${code}, got output ${String(JSON.stringify(r.ok && r.ok.payload)).slice(0, 200)}`);
          const e = r.caught.error;
          assert.equal(r.caught.marker, marker, 'the Catch node gets the original msg');
          assert.equal(e.code, code, e.message);
          assert.equal(e.cause.code, code);
          assert.equal(r.caught.error.cause.retryable, false, 'bad input is never retryable');
          assert.ok(typeof e.message === 'string' && e.message.length > 0 && e.message.length < 2000, `message length ${e.message.length}`);
          if (code === 'DBC_VALIDATION') {
            if (field === null) assert.ok(e.cause.field, 'a field is named');
            else assert.equal(e.cause.field, field, e.message);
          }
          if (code === 'DBC_TRANSACTION') assert.equal(typeof e.cause.index, 'number');
          assert.equal(await snapshot(), before, 'nothing was written');
        } catch (err) {
          failures.push(`${label}: ${err.message.split('\n')[0]}`);
        }
      }
      assert.deepEqual(failures, [], `${failures.length} of ${rows.length} rows failed`);
      assert.ok(rows.length >= 40, `${rows.length} rows`);

      // SQL text in every string field is stored verbatim, never executed.
      const texts = SQL_TEXTS.map((s) => s.replaceAll('{p}', p));
      for (const s of texts) {
        const t = await ok({ operation: 'insertTask', payload: { queue: s, name: s, idempotencyKey: `${s}${provider}`, payload: { s } } });
        const got = await ok({ operation: 'getTask', payload: { id: t.id } });
        assert.deepEqual([got.queue, got.name, got.idempotencyKey, got.payload.s], [s, s, `${s}${provider}`, s]);
        const listed = await ok({ operation: 'listTasks', payload: { queue: s } });
        assert.deepEqual(listed.tasks.map((x) => x.id), [t.id]);
        const [claimed] = await ok({ operation: 'claimTasks', payload: { queue: s, workerId: s } });
        assert.equal(claimed.workerId, s);
        const failed = await ok({ operation: 'updateTaskStatus', payload: { id: t.id, status: 'failed', workerId: s, error: s, result: s } });
        assert.equal(failed.lastError.message === undefined ? failed.lastError : failed.lastError.message, s);
        const wf = await ok({ operation: 'createWorkflow', payload: { name: s, metadata: { s }, tasks: [{ key: s, name: s }, { dependsOn: [s] }] } });
        const progress = await ok({ operation: 'getWorkflowProgress', payload: { workflowId: wf.id } });
        assert.equal(progress.name, s);
        const echo = await ok({ operation: 'query', topic: provider === 'postgres' ? 'SELECT $1::text AS v' : 'SELECT ? AS v', params: [s] });
        assert.equal(echo[0].v, s);
      }
      const after = JSON.parse(await snapshot()).counts;
      const start = JSON.parse(before).counts;
      assert.equal(after.tasks, start.tasks + texts.length * 3, 'exactly the SQL-text tasks were added; the tables are intact');
      assert.equal(after.workflows, start.workflows + texts.length);

      // The runtime still answers, and nothing crashed.
      assert.equal((await ok({ operation: 'getTask', payload: { id: pending } })).status, 'pending');
      // every message above has been answered; Node reports a rejection nobody handled
      // when the microtasks of a turn have run: one more turn of the event loop
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(crashes, []);
      console.log(`${provider}: ${rows.length} bad inputs + ${texts.length} SQL-text round trips in ${Date.now() - t0} ms`);
    } finally {
      await watcher.close();
      await helper.unload();
    }
  });
}

test('wrong configurations are DBC_CONFIG on every provider, before any connection', { timeout: 60000 }, async () => {
  const failures = [];
  let count = 0;
  for (const provider of PROVIDERS) {
    for (const [label, override] of BAD_CONFIGS) {
      count += 1;
      const cfg = nodeConfigFor(provider, 'badcfg');
      const n = await loadFlow({ ...cfg.props, ...override }, cfg.credentials);
      try {
        const r = await n.send({ operation: 'insertTask', payload: { name: 'never' } });
        assert.ok(r.caught, `expected DBC_CONFIG, got output`);
        assert.equal(r.caught.error.code, 'DBC_CONFIG', r.caught.error.message);
        assert.doesNotMatch(r.caught.error.message, /postgres:\/\/|mysql:\/\//);
      } catch (err) {
        failures.push(`${provider} ${label}: ${err.message.split('\n')[0]}`);
      }
      await helper.unload();
    }
  }
  // a URL that is not a URL, for the two network providers
  for (const [provider, url] of [['postgres', 'postgres://u:pw@[::1'], ['mariadb', 'mysql://u:pw@host:notaport/db']]) {
    count += 1;
    const cfg = nodeConfigFor(provider, 'badurl');
    const n = await loadFlow(cfg.props, { url });
    const r = await n.send({ operation: 'getTask', payload: { id: NIL_V7 } });
    if (!r.caught || r.caught.error.code !== 'DBC_CONFIG') failures.push(`${provider} bad URL: ${JSON.stringify(r.caught ? r.caught.error : r.ok.payload)}`);
    else if (/pw@/.test(r.caught.error.message)) failures.push(`${provider} bad URL: the password is in the message`);
    await helper.unload();
  }
  assert.deepEqual(failures, [], `${failures.length} of ${count} configurations`);
  assert.deepEqual(crashes, []);
});
