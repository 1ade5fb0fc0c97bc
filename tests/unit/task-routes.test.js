/**
 * The task browser's admin routes (task-routes.js, docs/API.md "Admin HTTP API") in
 * node-red-node-test-helper's admin app, on SQLite and PostgreSQL: paging with the keyset
 * cursor and the filters, payloads cut for display (2 KB in a list, 64 KB in a task's
 * detail), a task's history and errors, requeue / cancel / delete and their refusals
 * (400, 404, 409, nothing changed), a workflow's tasks with their dependencies, and the
 * editor's client files.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const dbNode = require('../../nodes/database-connector/database-connector.js');
const service = require('../../nodes/database-connector/database-service');
const { LIST_PREVIEW_BYTES, DETAIL_PREVIEW_BYTES, PAGE_MAX } = require('../../nodes/database-connector/task-routes');
const { nodeConfigFor, useNodeRedHelper } = require('../support');

const helper = useNodeRedHelper(service);


const get = (url) => helper.request().get(url);
const post = (url) => helper.request().post(url);
const del = (url) => helper.request().delete(url);

/** A deployed connection of `provider` that no flow uses, and the test's own registry on the same database. */
async function deployed(provider) {
  const cfg = nodeConfigFor(provider);
  await helper.load(dbNode, [cfg.props], { cfg: cfg.credentials });
  return helper.getNode('cfg');
}

/** A task that failed for good: one attempt, one error. */
async function failedTask(registry, fields) {
  const t = await registry.insertTask({ maxAttempts: 1, ...fields });
  const [claimed] = (await registry.run('claimTasks', { queue: t.queue, workerId: 'w1' })).value;
  assert.equal(claimed.id, t.id);
  return registry.updateTaskStatus(t.id, 'failed', { workerId: 'w1', error: { code: 'BOOM', message: 'the disk is on fire' } });
}

for (const provider of ['sqlite', 'postgres']) {
  test(`${provider}: the list pages with the cursor, filters by queue, status, workflow and name, and cuts large payloads`, async () => {
    const node = await deployed(provider);
    assert.equal(node.inUse(), false);
    const registry = await node.getRegistry();
    const big = { blob: 'é'.repeat(5000) }; // 10 KB of JSON, two bytes a character
    const inserted = await registry.insertTask(Array.from({ length: 5 }, (_, i) => ({ queue: 'pages', name: `job-${i}`, payload: i === 2 ? big : { i } })));
    await failedTask(registry, { queue: 'other', name: 'Broken-Thing' });

    const first = await get('/database-connector/cfg/tasks?queue=pages&limit=2');
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.body.tasks.map((t) => t.name), ['job-0', 'job-1']);
    assert.equal(first.body.next, inserted[1].id);
    const second = await get(`/database-connector/cfg/tasks?queue=pages&limit=2&cursor=${first.body.next}`);
    assert.deepEqual(second.body.tasks.map((t) => t.name), ['job-2', 'job-3']);
    const last = await get(`/database-connector/cfg/tasks?queue=pages&limit=2&cursor=${second.body.next}`);
    assert.deepEqual([last.body.tasks.map((t) => t.name), last.body.next], [['job-4'], null]);

    // the large payload: the start of its JSON text, and its whole size
    const cut = second.body.tasks[0];
    assert.equal(typeof cut.payload, 'string');
    assert.ok(Buffer.byteLength(cut.payload) <= LIST_PREVIEW_BYTES && Buffer.byteLength(cut.payload) > LIST_PREVIEW_BYTES - 2, `${Buffer.byteLength(cut.payload)} bytes`);
    assert.ok(JSON.stringify(big).startsWith(cut.payload));
    assert.deepEqual(cut.truncated, { payload: Buffer.byteLength(JSON.stringify(big)) });
    assert.deepEqual(second.body.tasks[1].payload, { i: 3 });
    assert.equal(second.body.tasks[1].truncated, undefined);
    assert.ok(second.text.length < 2 * LIST_PREVIEW_BYTES + 2000, `the page is ${second.text.length} characters`);

    const failed = await get('/database-connector/cfg/tasks?status=failed');
    assert.deepEqual(failed.body.tasks.map((t) => [t.name, t.status, t.lastError]), [['Broken-Thing', 'failed', 'the disk is on fire']]);
    // name is listTasks's filter: the whole name, one query, full pages
    const named = await get('/database-connector/cfg/tasks?name=Broken-Thing');
    assert.deepEqual(named.body.tasks.map((t) => t.name), ['Broken-Thing']);
    const paged = await get('/database-connector/cfg/tasks?name=job-3&queue=pages&limit=1');
    assert.deepEqual([paged.body.tasks.map((t) => t.name), paged.body.next], [['job-3'], null]);
    const none = await get('/database-connector/cfg/tasks?name=broken');
    assert.deepEqual(none.body.tasks, []);

    const wf = (await registry.run('createWorkflow', { name: 'wf', tasks: [{ key: 'a', name: 'a' }] })).value;
    const inWorkflow = await get(`/database-connector/cfg/tasks?workflowId=${wf.id}`);
    assert.deepEqual(inWorkflow.body.tasks.map((t) => t.id), [wf.tasks[0].id]);

    // bad parameters: 400 with the field, before anything runs
    for (const [query, field] of [['limit=0', 'limit'], [`limit=${PAGE_MAX + 1}`, 'limit'], ['limit=ten', 'limit'], ['status=done', 'status'], ['cursor=nope', 'after'], ['workflowId=nope', 'workflowId']]) {
      const r = await get(`/database-connector/cfg/tasks?${query}`);
      assert.deepEqual([r.status, r.body.ok, r.body.code, r.body.field], [400, false, 'DBC_VALIDATION', field], query);
    }
  });

  test(`${provider}: a task's detail, requeue, cancel and delete; refusals answer 400, 404 or 409 and change nothing`, async () => {
    const node = await deployed(provider);
    const registry = await node.getRegistry();
    const huge = { blob: 'x'.repeat(200000) };
    const failed = await failedTask(registry, { queue: 'd', name: 'huge', payload: huge });

    const detail = await get(`/database-connector/cfg/tasks/${failed.id}`);
    assert.equal(detail.status, 200);
    assert.equal(detail.body.status, 'failed');
    assert.deepEqual(detail.body.history.map((h) => [h.attempt, h.status, h.workerId]), [[1, 'failed', 'w1']]);
    assert.deepEqual(detail.body.errors.map((e) => [e.attempt, e.code, e.message]), [[1, 'BOOM', 'the disk is on fire']]);
    assert.equal(Buffer.byteLength(detail.body.payload), DETAIL_PREVIEW_BYTES);
    assert.deepEqual(detail.body.truncated, { payload: JSON.stringify(huge).length });
    assert.ok(detail.text.length < DETAIL_PREVIEW_BYTES + 4000, `the answer is ${detail.text.length} characters`);

    // requeue: only a failed task
    const requeued = await post(`/database-connector/cfg/tasks/${failed.id}/requeue`);
    assert.deepEqual([requeued.status, requeued.body.ok, requeued.body.task.status], [200, true, 'pending']);
    const again = await post(`/database-connector/cfg/tasks/${failed.id}/requeue`);
    assert.deepEqual([again.status, again.body.code], [409, 'DBC_INVALID_TRANSITION']);
    assert.equal((await registry.getTask(failed.id)).maxAttempts, 2, 'the refused requeue changed nothing');

    // cancel a running task; cancelling it again is refused
    const [running] = (await registry.run('claimTasks', { queue: 'd', workerId: 'w2', leaseMs: 600000 })).value;
    assert.equal(running.id, failed.id);
    const noDelete = await del(`/database-connector/cfg/tasks/${running.id}`);
    assert.deepEqual([noDelete.status, noDelete.body.code], [409, 'DBC_INVALID_TRANSITION']);
    assert.equal((await registry.getTask(running.id)).status, 'running', 'not deleted');
    const cancelled = await post(`/database-connector/cfg/tasks/${running.id}/cancel`);
    assert.deepEqual([cancelled.status, cancelled.body.task.status], [200, 'cancelled']);
    assert.equal((await registry.getTask(running.id)).status, 'cancelled');
    const twice = await post(`/database-connector/cfg/tasks/${running.id}/cancel`);
    assert.deepEqual([twice.status, twice.body.code], [409, 'DBC_INVALID_TRANSITION']);

    // delete: the task and its history go
    const deleted = await del(`/database-connector/cfg/tasks/${running.id}`);
    assert.deepEqual(deleted.body, { ok: true, id: running.id, deleted: true });
    const gone = await get(`/database-connector/cfg/tasks/${running.id}`);
    assert.deepEqual([gone.status, gone.body.code], [404, 'DBC_NOT_FOUND']);
    for (const [method, suffix] of [[post, '/requeue'], [post, '/cancel'], [del, '']]) {
      const r = await method(`/database-connector/cfg/tasks/${running.id}${suffix}`);
      assert.deepEqual([r.status, r.body.code], [404, 'DBC_NOT_FOUND'], suffix);
    }
    const bad = await get('/database-connector/cfg/tasks/not-a-uuid');
    assert.deepEqual([bad.status, bad.body.code, bad.body.field], [400, 'DBC_VALIDATION', 'id']);
    const unknown = await get('/database-connector/nope/tasks');
    assert.deepEqual([unknown.status, unknown.body.code], [404, 'DBC_NOT_FOUND']);
  });

  test(`${provider}: a workflow's progress, tasks and dependencies for its graph`, async () => {
    const node = await deployed(provider);
    const registry = await node.getRegistry();
    const wf = (await registry.run('createWorkflow', {
      name: 'etl',
      tasks: [
        { key: 'extract', name: 'extract', queue: 'etl', payload: { big: 'y'.repeat(10000) } },
        { key: 'transform', name: 'transform', queue: 'etl', dependsOn: ['extract'] },
        { key: 'report', name: 'report', queue: 'etl', dependsOn: ['extract'] },
        { key: 'load', name: 'load', queue: 'etl', dependsOn: ['transform', 'report'] },
      ],
    })).value;
    const ids = Object.fromEntries(wf.tasks.map((t) => [t.key, t.id]));
    const [claimed] = (await registry.run('claimTasks', { queue: 'etl', workerId: 'w' })).value;
    await registry.updateTaskStatus(claimed.id, 'completed', { workerId: 'w', result: { rows: 3 } });

    const graph = await get(`/database-connector/cfg/workflows/${wf.id}`);
    assert.equal(graph.status, 200, graph.text);
    assert.deepEqual(
      [graph.body.workflow.name, graph.body.workflow.total, graph.body.workflow.completed, graph.body.workflow.percent, graph.body.more],
      ['etl', 4, 1, 25, false],
    );
    const byName = Object.fromEntries(graph.body.tasks.map((t) => [t.name, t]));
    assert.deepEqual(byName.extract.dependsOn, []);
    assert.deepEqual(byName.transform.dependsOn, [ids.extract]);
    assert.deepEqual(byName.load.dependsOn.slice().sort(), [ids.transform, ids.report].sort());
    assert.equal(byName.extract.status, 'completed');
    assert.equal(byName.extract.payload, undefined, 'no payloads in a graph');
    // polling: states without the dependencies (one getTask less per task)
    const states = await get(`/database-connector/cfg/workflows/${wf.id}?deps=0`);
    assert.deepEqual(states.body.tasks.map((t) => [t.name, t.status, t.dependsOn]), [
      ['extract', 'completed', undefined], ['transform', 'pending', undefined], ['report', 'pending', undefined], ['load', 'pending', undefined],
    ]);
    const missing = await get('/database-connector/cfg/workflows/01a21996-07b7-7162-b7ed-b958d677e1b7');
    assert.deepEqual([missing.status, missing.body.code], [404, 'DBC_NOT_FOUND']);
  });
}

test('the editor files: the task browser\'s script and style, nothing else', async () => {
  await helper.load(dbNode, []);
  const js = await get('/database-connector/editor/task-browser.js');
  assert.equal(js.status, 200);
  assert.match(js.headers['content-type'], /^application\/javascript/);
  assert.match(js.text, /window\.DatabaseConnectorTaskBrowser = \{/);
  const css = await get('/database-connector/editor/task-browser.css');
  assert.match(css.headers['content-type'], /^text\/css/);
  for (const file of ['task-routes.js', '..%2Fdatabase-service.js', 'constructor']) {
    const r = await get(`/database-connector/editor/${file}`);
    assert.equal(r.status, 404, file);
  }
});

test('browsing a connection that no flow uses opens its pool: its metrics are real afterwards', async () => {
  const node = await deployed('sqlite');
  assert.deepEqual((await get('/database-connector/cfg/metrics')).body, { state: 'unused', unused: true });
  const list = await get('/database-connector/cfg/tasks');
  assert.deepEqual(list.body, { tasks: [], next: null });
  assert.equal(node.inUse(), true);
  assert.equal((await get('/database-connector/cfg/metrics')).body.provider, 'sqlite');
});
