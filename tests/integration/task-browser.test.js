/**
 * The task browser in a real browser (Debian's Chromium, playwright-core) against a real
 * Node-RED runtime on SQLite (docs/USER-GUIDE.md "The task browser"): open the tab, pick
 * the connection, filter to failed tasks, open one, see its attempts and its error,
 * requeue it and see it `pending`; cancel a running task; open a workflow's graph and see
 * a state change arrive by polling; polling stops when the tab is hidden; pause and
 * resume a queue. Then the same runtime with a read-only `adminAuth` user: the browser
 * shows the tasks, every action is disabled, and the server refuses each one.
 *
 * The tasks are made by the test through the registry on the same SQLite file, and every
 * change made in the browser is checked in the database.
 *
 * The pause/resume step needs the queue routes (GET /database-connector/:configId/queues,
 * POST …/queues/:queue/pause and /resume) and the getQueueStats operation, which come
 * from the queue-control work; it is the last step of the first runtime so that the steps
 * before it do not depend on them.
 */
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const helpers = require('../../nodes/database-connector/database-connector-helpers');
const { spawnNodeRed } = require('../support');
const { VIEWPORT, launchBrowser, screenshotter, docImage, openSidebarTab, dismissNotifications } = require('../support/browser');

const TAB = 'database-connector-tasks';
const CFG = 'tbcfg00000000001';

/** The tasks the steps look at, made through the registry. */
async function seed(db) {
  const s = {};
  const welcome = await db.insertTask({ queue: 'mail', name: 'send-welcome', payload: { to: 'ada@example.com' }, maxAttempts: 1 });
  const [claimed] = (await db.run('claimTasks', { queue: 'mail', workerId: 'mailer-1' })).value;
  assert.equal(claimed.id, welcome.id);
  await db.updateTaskStatus(welcome.id, 'failed', { workerId: 'mailer-1', error: { code: 'SMTP_DOWN', message: 'smtp.example.com refused the connection' } });
  await db.insertTask([{ queue: 'mail', name: 'send-digest' }, { queue: 'mail', name: 'send-reminder' }]);
  s.failedId = welcome.id;
  const report = await db.insertTask({ queue: 'reports', name: 'nightly-report' });
  await db.run('claimTasks', { queue: 'reports', workerId: 'reporter-1', leaseMs: 3600000 });
  s.runningId = report.id;
  const wf = (await db.run('createWorkflow', {
    name: 'nightly-etl',
    tasks: [
      { key: 'extract', name: 'extract', queue: 'etl' },
      { key: 'transform', name: 'transform', queue: 'etl', dependsOn: ['extract'] },
      { key: 'report', name: 'report', queue: 'etl', dependsOn: ['extract'] },
      { key: 'load', name: 'load', queue: 'etl', dependsOn: ['transform', 'report'] },
    ],
  })).value;
  s.workflowId = wf.id;
  s.wf = Object.fromEntries(wf.tasks.map((t) => [t.key, t.id]));
  await db.run('claimTasks', { queue: 'etl', workerId: 'etl-1' });
  await db.updateTaskStatus(s.wf.extract, 'completed', { workerId: 'etl-1', result: { rows: 120 } });
  await db.run('claimTasks', { queue: 'etl', workerId: 'etl-1', leaseMs: 3600000 }); // transform (oldest of the two ready)
  return s;
}

describe('the task browser in a real browser', { timeout: 180000 }, () => {
  const shot = screenshotter();
  const pageErrors = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-tasks-'));
  const sqliteFile = path.join(dir, 'tasks.db');
  const flows = [
    { id: 'tbtab0000000001', type: 'tab', label: 'tasks' },
    { id: CFG, type: 'database-connector-config', name: 'local tasks', provider: 'sqlite', sqliteFile, tablePrefix: 'dbc_', autoMigrate: true },
  ];
  let s;
  let db;
  let red;
  let browser;
  let page;

  before(async () => {
    db = await helpers.connectToDatabase('sqlite', { primary: { provider: 'sqlite', sqliteFile }, tablePrefix: 'dbc_' });
    s = await seed(db);
    browser = await launchBrowser();
    // a user who has seen the welcome tour, on a runtime without telemetry
    fs.writeFileSync(path.join(dir, '.config.users.json'), JSON.stringify({ _: { editor: { view: { 'view-show-welcome-tours': false } } } }));
    red = await spawnNodeRed({ flows, userDir: dir, env: { NODE_RED_DISABLE_TELEMETRY: '1' } });
    page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`http://127.0.0.1:${red.port}/`);
    await page.waitForFunction(() => window.RED && RED.workspaces && RED.workspaces.active());
    await page.locator(`#red-ui-tab-${TAB}-link-button`).waitFor({ state: 'attached' });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (red) await red.stop();
    if (db) await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  let failedStep = null;
  /** A step of the scenario; after a failure the rest fail at once, with a screenshot. */
  function step(name, fn) {
    it(name, async () => {
      if (failedStep) throw new Error(`not run: step "${failedStep}" failed`);
      try {
        await fn();
      } catch (err) {
        failedStep = name;
        if (page) await shot(page, `FAILED-tasks-${name.slice(0, 3).replace(/\W/g, '')}`).catch(() => {});
        throw err;
      }
    });
  }

  const panel = () => page.locator('#dbc-tasks-panel');
  const row = (id) => page.locator(`#dbc-tasks-panel tr.dbc-tb-task[data-id="${id}"]`);
  const head = (status) => page.locator(`#dbc-tasks-panel .dbc-tb-task-head[data-status="${status}"]`);

  step('(a) opens the task browser: nothing is asked until a connection is picked, then the tasks show', async () => {
    await openSidebarTab(page, TAB);
    await page.locator('#dbc-tasks-panel[data-refreshing="true"]').waitFor({ state: 'attached' });
    await page.locator('#dbc-tasks-panel .dbc-tb-message', { hasText: 'Pick a connection' }).waitFor();
    // no flow uses the connection and the browser asked nothing: its pool is still closed
    assert.deepEqual((await red.request('GET', `/database-connector/${CFG}/metrics`)).body, { state: 'unused', unused: true });
    await page.selectOption('#dbc-tb-connection', CFG);
    await row(s.failedId).waitFor();
    assert.equal(await page.locator('#dbc-tasks-panel tr.dbc-tb-task').count(), 8);
    assert.equal(await row(s.failedId).getAttribute('data-status'), 'failed');
    // the queues seen in the list, each with its pause button
    for (const q of ['mail', 'reports', 'etl']) await page.locator(`#dbc-tasks-panel .dbc-tb-queue[data-queue="${q}"] .dbc-tb-pause`).waitFor();
    assert.equal(await page.locator('#dbc-tb-next').isDisabled(), true, 'one page');
  });

  step('(b) filters to failed tasks, opens one, sees its attempt and its error, requeues it and sees it pending', async () => {
    await page.selectOption('#dbc-tb-filter-status', 'failed');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#dbc-tasks-panel tr.dbc-tb-task')];
      return rows.length === 1 && rows[0].getAttribute('data-status') === 'failed';
    });
    assert.equal(await row(s.failedId).locator('.dbc-tb-task-name').textContent(), 'send-welcome');
    await row(s.failedId).click();
    await head('failed').waitFor();
    const attempt = page.locator('#dbc-tasks-panel .dbc-tb-history tr[data-attempt="1"]');
    assert.equal(await attempt.getAttribute('data-status'), 'failed');
    assert.match(await attempt.textContent(), /mailer-1/);
    const error = page.locator('#dbc-tasks-panel .dbc-tb-errors tr.dbc-tb-error');
    assert.equal(await error.count(), 1);
    assert.equal(await error.locator('.dbc-tb-error-code').textContent(), 'SMTP_DOWN');
    assert.equal(await error.locator('.dbc-tb-error-message').textContent(), 'smtp.example.com refused the connection');
    assert.match(await page.locator('#dbc-tasks-panel .dbc-tb-payload').textContent(), /ada@example\.com/);
    assert.equal(await page.locator('#dbc-tb-cancel').isEnabled(), true);
    await shot(page, 'task-browser-failed-task');
    await docImage(page, 'task-browser-failed-task', { target: '#dbc-tasks-panel' });
    await page.click('#dbc-tb-requeue');
    await head('pending').waitFor();
    await page.locator('#dbc-tasks-panel .dbc-tb-message.dbc-tb-ok', { hasText: 'pending' }).waitFor();
    assert.equal(await page.locator('#dbc-tb-requeue').isDisabled(), true, 'only a failed task can be requeued');
    const stored = await db.getTask(s.failedId);
    assert.deepEqual([stored.status, stored.maxAttempts], ['pending', 2]);
  });

  step('(c) cancels a running task', async () => {
    await page.click('#dbc-tasks-panel .dbc-tb-back');
    await page.selectOption('#dbc-tb-filter-status', 'running');
    await row(s.runningId).waitFor();
    await row(s.runningId).click();
    await head('running').waitFor();
    assert.equal(await page.locator('#dbc-tb-delete').isDisabled(), true, 'a running task cannot be deleted');
    await page.click('#dbc-tb-cancel');
    const confirm = page.locator('.red-ui-notification button.primary', { hasText: 'Cancel task' });
    await confirm.waitFor({ state: 'visible' });
    await confirm.click();
    await head('cancelled').waitFor();
    assert.equal((await db.getTask(s.runningId)).status, 'cancelled');
    await dismissNotifications(page);
  });

  step('(d) opens a workflow graph: its tasks, dependencies, states and progress; a state change arrives by polling', async () => {
    await page.click('#dbc-tasks-panel .dbc-tb-back');
    await page.selectOption('#dbc-tb-filter-status', '');
    await page.fill('#dbc-tb-filter-workflowId', s.workflowId);
    await page.press('#dbc-tb-filter-workflowId', 'Enter');
    await page.waitForFunction(() => document.querySelectorAll('#dbc-tasks-panel tr.dbc-tb-task').length === 4);
    await row(s.wf.report).click();
    await head('pending').waitFor();
    await page.click('#dbc-tasks-panel .dbc-tb-workflow-link');
    const graph = page.locator('#dbc-tasks-panel svg.dbc-tb-graph');
    await graph.waitFor();
    const node = (key) => graph.locator(`g.dbc-tb-node[data-id="${s.wf[key]}"]`);
    const states = {};
    for (const key of Object.keys(s.wf)) states[key] = await node(key).getAttribute('data-status');
    assert.deepEqual(states, { extract: 'completed', transform: 'running', report: 'pending', load: 'pending' });
    const edges = await graph.locator('path.dbc-tb-edge').evaluateAll((ps) => ps.map((p) => `${p.getAttribute('data-from')}>${p.getAttribute('data-to')}`).sort());
    assert.deepEqual(edges, [[s.wf.extract, s.wf.transform], [s.wf.extract, s.wf.report], [s.wf.transform, s.wf.load], [s.wf.report, s.wf.load]].map(([a, b]) => `${a}>${b}`).sort());
    // the layers go down the dependencies
    const y = async (key) => (await node(key).boundingBox()).y;
    assert.ok((await y('extract')) < (await y('transform')) && (await y('transform')) < (await y('load')));
    assert.equal(await y('transform'), await y('report'));
    assert.equal(await page.locator('#dbc-tasks-panel .dbc-tb-progress').getAttribute('data-percent'), '25');
    await shot(page, 'task-browser-workflow');
    await docImage(page, 'task-browser-workflow', { target: '#dbc-tasks-panel' });

    // the worker finishes transform: the next poll shows it, with the progress
    await db.updateTaskStatus(s.wf.transform, 'completed', { workerId: 'etl-1' });
    await node('transform').and(page.locator('[data-status="completed"]')).waitFor({ timeout: 12000 });
    assert.equal(await page.locator('#dbc-tasks-panel .dbc-tb-progress').getAttribute('data-percent'), '50');
    assert.equal(await graph.locator('path.dbc-tb-edge').count(), 4, 'the dependencies stay drawn while polling');
    // a box opens its task
    await node('load').click();
    await head('pending').waitFor();
    assert.match(await page.locator('#dbc-tasks-panel .dbc-tb-kv').textContent(), new RegExp(s.wf.report.slice(-8)));
    await page.click('#dbc-tasks-panel .dbc-tb-back');
    await graph.waitFor();
  });

  step('(e) hidden, it stops polling; the tab comes and goes with the node types; the page had no errors', async () => {
    await openSidebarTab(page, 'info');
    await page.locator('#dbc-tasks-panel[data-refreshing="false"]').waitFor({ state: 'attached' });
    // the tab and its action go with the node types and come back with them
    const action = 'database-connector:show-tasks-tab';
    const gone = await page.evaluate((a) => {
      RED.nodes.getType('database-connector').onpaletteremove();
      return { tab: RED.sidebar.containsTab('database-connector-tasks'), panel: !!document.querySelector('#dbc-tasks-panel'), action: RED.actions.list().some((x) => x.id === a) };
    }, action);
    assert.deepEqual(gone, { tab: false, panel: false, action: false });
    await page.evaluate((a) => {
      RED.nodes.getType('database-connector').onpaletteadd();
      RED.actions.invoke(a);
    }, action);
    await page.locator('#dbc-tasks-panel[data-refreshing="true"]').waitFor({ state: 'attached' });
    await page.selectOption('#dbc-tb-connection', CFG);
    await row(s.failedId).waitFor();
    assert.deepEqual(pageErrors, []);
  });

  // Needs the queue routes and getQueueStats (the queue-control work): see the header.
  step('(f) pauses and resumes a queue', async () => {
    await page.click('#dbc-tb-refresh'); // reads the queue list again
    const mail = page.locator('#dbc-tasks-panel .dbc-tb-queue[data-queue="mail"]');
    await mail.and(page.locator('[data-paused="false"]')).waitFor();
    await mail.locator('.dbc-tb-pause').click();
    await mail.and(page.locator('[data-paused="true"]')).waitFor();
    assert.equal(await mail.locator('.dbc-tb-pause').textContent(), 'Resume');
    const paused = (await db.run('getQueueStats', {})).value.queues.find((q) => q.queue === 'mail');
    assert.equal(paused.paused, true);
    await mail.locator('.dbc-tb-pause').click();
    await mail.and(page.locator('[data-paused="false"]')).waitFor();
    const resumed = (await db.run('getQueueStats', {})).value.queues.find((q) => q.queue === 'mail');
    assert.equal(resumed.paused, false);
    assert.equal(await panel().getAttribute('data-view'), 'list');
  });
});

describe('the task browser for a read-only user (adminAuth)', { timeout: 120000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-tasks-ro-'));
  const sqliteFile = path.join(dir, 'tasks.db');
  const users = { admin: '*', reader: 'read' };
  const settings = `adminAuth: {
    type: 'credentials',
    users: (u) => Promise.resolve(${JSON.stringify(users)}[u] ? { username: u, permissions: ${JSON.stringify(users)}[u] } : null),
    authenticate: (u, p) => Promise.resolve(p === 'pw-' + u && ${JSON.stringify(users)}[u] ? { username: u, permissions: ${JSON.stringify(users)}[u] } : null),
  },`;
  let s;
  let db;
  let red;
  let browser;
  let page;
  const pageErrors = [];

  before(async () => {
    db = await helpers.connectToDatabase('sqlite', { primary: { provider: 'sqlite', sqliteFile }, tablePrefix: 'dbc_' });
    s = await seed(db);
    browser = await launchBrowser();
    fs.writeFileSync(path.join(dir, '.config.users.json'), JSON.stringify({ reader: { editor: { view: { 'view-show-welcome-tours': false } } } }));
    red = await spawnNodeRed({
      flows: [{ id: 'tbtab0000000001', type: 'tab' }, { id: CFG, type: 'database-connector-config', name: 'local tasks', provider: 'sqlite', sqliteFile, tablePrefix: 'dbc_' }],
      userDir: dir,
      settings,
      env: { NODE_RED_DISABLE_TELEMETRY: '1' },
    });
    page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`http://127.0.0.1:${red.port}/`);
    // Node-RED's login dialog
    await page.fill('#node-dialog-login-username', 'reader');
    await page.fill('#node-dialog-login-password', 'pw-reader');
    await page.click('#node-dialog-login-submit');
    await page.waitForFunction(() => window.RED && RED.workspaces && RED.workspaces.active() && RED.settings.user);
    await page.locator(`#red-ui-tab-${TAB}-link-button`).waitFor({ state: 'attached' });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (red) await red.stop();
    if (db) await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('browses tasks and a workflow; every action is disabled, and the server refuses each one and changes nothing', async () => {
    assert.equal(await page.evaluate(() => RED.settings.user.username), 'reader');
    await openSidebarTab(page, TAB);
    await page.selectOption('#dbc-tb-connection', CFG);
    const failed = page.locator(`#dbc-tasks-panel tr.dbc-tb-task[data-id="${s.failedId}"]`);
    await failed.waitFor();
    for (const q of ['mail', 'reports', 'etl']) {
      assert.equal(await page.locator(`#dbc-tasks-panel .dbc-tb-queue[data-queue="${q}"] .dbc-tb-pause`).isDisabled(), true, `pause ${q}`);
    }
    await failed.click();
    await page.locator('#dbc-tasks-panel .dbc-tb-task-head[data-status="failed"]').waitFor();
    await page.locator('#dbc-tasks-panel .dbc-tb-errors .dbc-tb-error-code', { hasText: 'SMTP_DOWN' }).waitFor();
    for (const button of ['#dbc-tb-requeue', '#dbc-tb-cancel', '#dbc-tb-delete']) {
      assert.equal(await page.locator(button).isDisabled(), true, button);
      assert.match(await page.locator(button).getAttribute('title'), /database-connector\.write/);
    }
    // the server is the guard: the reader's own token, sent by hand
    const answers = await page.evaluate(async ({ cfg, failedId, runningId }) => {
      const headers = { Authorization: `Bearer ${RED.settings.get('auth-tokens').access_token}` };
      const call = async (method, url) => (await fetch(url, { method, headers })).status;
      return {
        list: await call('GET', `database-connector/${cfg}/tasks`),
        requeue: await call('POST', `database-connector/${cfg}/tasks/${failedId}/requeue`),
        cancel: await call('POST', `database-connector/${cfg}/tasks/${runningId}/cancel`),
        delete: await call('DELETE', `database-connector/${cfg}/tasks/${failedId}`),
      };
    }, { cfg: CFG, failedId: s.failedId, runningId: s.runningId });
    assert.deepEqual(answers, { list: 200, requeue: 401, cancel: 401, delete: 401 });
    const [afterFailed, afterRunning] = [await db.getTask(s.failedId), await db.getTask(s.runningId)];
    assert.deepEqual([afterFailed.status, afterFailed.maxAttempts, afterRunning.status], ['failed', 1, 'running']);
    // a workflow graph is reading too
    await page.click('#dbc-tasks-panel .dbc-tb-back');
    await page.fill('#dbc-tb-filter-workflowId', s.workflowId);
    await page.press('#dbc-tb-filter-workflowId', 'Enter');
    await page.locator(`#dbc-tasks-panel tr.dbc-tb-task[data-id="${s.wf.load}"]`).click();
    await page.click('#dbc-tasks-panel .dbc-tb-workflow-link');
    await page.locator('#dbc-tasks-panel svg.dbc-tb-graph g.dbc-tb-node').nth(3).waitFor();
    assert.equal(await page.locator('#dbc-tasks-panel svg.dbc-tb-graph path.dbc-tb-edge').count(), 4);
    assert.deepEqual(pageErrors, []);
  });
});
