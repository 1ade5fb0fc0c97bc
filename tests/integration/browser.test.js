/**
 * The editor in a real browser (Debian's Chromium, driven by playwright-core) against a
 * real Node-RED runtime: drag the node from the palette, create SQLite and PostgreSQL
 * connections and test them, deploy, apply migrations from the Advanced section, run an
 * insertTask flow and read its result and msg._debug in the debug sidebar, and watch
 * the performance panel count it. The steps run in order on one page; each saves a
 * screenshot to tests/.tmp/screenshots/, and with DBC_SCREENSHOTS set
 * (`npm run docs:screenshots`) the docs' pictures of the operation dialog, the debug
 * sidebar and the performance panel.
 *
 * Needs /usr/bin/chromium (`apt-get install -y chromium`) and PostgreSQL
 * (DBC_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test): a missing one
 * fails the run, nothing is skipped.
 */
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, configFor, spawnNodeRed, uniquePrefix } = require('../support');
const { VIEWPORT, launchBrowser, screenshotter, docImage, nodeSel, dragFromPalette, openSidebarTab, wire, deploy, dismissNotifications } = require('../support/browser');

const PG_FROM_ENV = Boolean(process.env.DBC_TEST_PG_URL);
const PG = new URL(PG_URL);
const PG_FIELDS = { host: PG.hostname || '127.0.0.1', port: PG.port || '5432', database: PG.pathname.slice(1) || 'test', user: decodeURIComponent(PG.username) || 'postgres' };
const PG_TABLES = ['schedules', 'queues', 'error_logs', 'task_executions', 'task_dependencies', 'tasks', 'workflows', 'migrations'];

describe('the editor in a real browser', { timeout: 150000 }, () => {
  const shot = screenshotter();
  const pageErrors = [];
  const s = {}; // what the steps share: ids of the nodes they made
  let red;
  let browser;
  let page;
  let pgPrefix = null;
  let userDir = null;

  before(async () => {
    try {
      await service.testConnection(configFor('postgres'));
    } catch (err) {
      throw new Error(`postgres is not reachable (${err.code}: ${err.message}); start it or set DBC_TEST_PG_URL`);
    }
    browser = await launchBrowser();
    // A user who has seen the welcome tour, on a runtime without telemetry: neither the
    // tour nor the telemetry question covers the editor.
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-browser-'));
    fs.writeFileSync(path.join(userDir, '.config.users.json'), JSON.stringify({ _: { editor: { view: { 'view-show-welcome-tours': false } } } }));
    red = await spawnNodeRed({ flows: [], userDir, env: { NODE_RED_DISABLE_TELEMETRY: '1' } });
    page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`http://127.0.0.1:${red.port}/`);
    await page.locator('#red-ui-palette-container .red-ui-palette-node[data-palette-type="database-connector"]').waitFor({ state: 'attached' });
    await page.waitForFunction(() => window.RED && RED.workspaces && RED.workspaces.active());
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (red) await red.stop();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
    if (pgPrefix) {
      // only the tables this run's connection created
      const db = await service.open({ primary: { provider: 'postgres', url: PG_URL }, autoMigrate: false, pool: { poolMax: 1 } });
      try {
        await db.query(`DROP TABLE IF EXISTS ${PG_TABLES.map((t) => pgPrefix + t).join(', ')}`);
      } finally {
        await db.close();
      }
    }
  });

  /**
   * A step of the scenario: it builds on the steps before it, so after a failure the
   * rest fail at once (with a screenshot of the failure) instead of timing out one by one.
   */
  let failedStep = null;
  function step(name, fn) {
    it(name, async () => {
      if (failedStep) throw new Error(`not run: step "${failedStep}" failed`);
      try {
        await fn();
      } catch (err) {
        failedStep = name;
        if (page) await shot(page, `FAILED-${name.slice(0, 3).replace(/\W/g, '')}`).catch(() => {});
        throw err;
      }
    });
  }

  /** Opens the config dialog's Advanced section (pool, failover policy, queue, schema). */
  async function openAdvanced() {
    await page.click('#node-config-dbc-advanced');
    await page.locator('#node-config-input-tablePrefix').waitFor({ state: 'visible' });
  }

  /** Clicks Test connection and resolves the result line once it is final. */
  async function testConnection() {
    await page.click('#node-config-input-test-connection');
    await page.waitForFunction(() => /dbc-(ok|error)/.test(document.querySelector('#node-config-test-result').className));
    return page.locator('#node-config-test-result').textContent();
  }

  /** Opens a deployed config node's dialog from the Configuration nodes sidebar. */
  async function openConfigFromSidebar(name) {
    await openSidebarTab(page, 'config');
    const entry = page.locator('#red-ui-sidebar-content .red-ui-palette-node-config', { hasText: name });
    await entry.dblclick();
    await page.locator('#node-config-input-provider').waitFor({ state: 'visible' });
  }

  step('(a) drags the database connector node from the palette onto the workspace', async () => {
    s.dbNode = await dragFromPalette(page, 'database-connector', 'database', 560, 300);
    const node = await page.evaluate((id) => {
      const n = RED.nodes.node(id);
      return { z: n.z, active: RED.workspaces.active(), operation: n.operation, x: n.x, y: n.y };
    }, s.dbNode);
    assert.equal(node.z, node.active);
    assert.equal(node.operation, 'query'); // the default
    s.dbPos = { x: node.x, y: node.y };
    await shot(page, 'palette-drag');
  });

  step('(b) creates SQLite and PostgreSQL connections in the dialogs and tests them', async () => {
    // the operation node's dialog, opened by a double click
    await page.locator(`${nodeSel(s.dbNode)} .red-ui-flow-node`).dblclick();
    await page.locator('#node-input-operation').waitFor({ state: 'visible' });
    // each operation shows the Queue field only when the node's queue applies to it: the
    // runtime's rule (the addon's queueOperations()), sent to the editor as a node setting
    const sent = await page.evaluate(() => RED.settings.databaseConnectorOperations);
    assert.deepEqual(sent.queue, [...service.queueOperations(), 'consume']);
    const queueShown = {};
    for (const op of sent.names.concat('msg')) {
      await page.selectOption('#node-input-operation', op);
      queueShown[op] = await page.locator('#node-input-queue').isVisible();
    }
    assert.deepEqual(queueShown, {
      query: false, insertTask: true, claimTasks: true, updateTaskStatus: false, requeueFailedTask: false,
      getTask: false, listTasks: false, deleteTask: false, createWorkflow: true, getWorkflowProgress: false,
      executeTransaction: true, pauseQueue: true, resumeQueue: true, getQueueStats: false, configureQueue: true, heartbeat: false, snoozeTask: false,
      createSchedule: true, listSchedules: false, pauseSchedule: false, resumeSchedule: false, deleteSchedule: false, previewSchedule: false,
      consume: true, msg: true,
    });
    await page.selectOption('#node-input-operation', 'insertTask');
    await page.fill('#node-input-queue', 'browser');
    await page.check('#node-input-debug');
    await page.fill('#node-input-name', 'new task');

    // SQLite: the zero-setup default; migrations left to the Advanced section (step c)
    await page.click('#node-input-btn-connection-add');
    await page.locator('#node-config-input-provider').waitFor({ state: 'visible' });
    await page.fill('#node-config-input-name', 'browser sqlite');
    assert.equal(await page.inputValue('#node-config-input-provider'), 'sqlite');
    await openAdvanced();
    await page.uncheck('#node-config-input-autoMigrate');
    const sqliteResult = await testConnection();
    assert.match(sqliteResult, /^Connected: sqlite \d+\.\d+/, sqliteResult);
    await shot(page, 'config-sqlite-test');
    await page.click('#node-config-dialog-ok');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });

    // PostgreSQL on this machine
    await page.click('#node-input-btn-connection-add');
    await page.locator('#node-config-input-provider').waitFor({ state: 'visible' });
    await page.fill('#node-config-input-name', 'browser postgres');
    await page.selectOption('#node-config-input-provider', 'postgres');
    if (PG_FROM_ENV) {
      await page.click('#node-config-dbc-mode-url');
      await page.fill('#node-config-input-url', PG_URL);
    } else {
      await page.fill('#node-config-input-host', PG_FIELDS.host);
      await page.fill('#node-config-input-port', PG_FIELDS.port);
      await page.fill('#node-config-input-database', PG_FIELDS.database);
      await page.fill('#node-config-input-user', PG_FIELDS.user);
    }
    await page.selectOption('#node-config-input-ssl', 'disable');
    pgPrefix = uniquePrefix('br');
    await openAdvanced();
    await page.fill('#node-config-input-tablePrefix', pgPrefix);
    const pgResult = await testConnection();
    assert.match(pgResult, /^Connected: postgres \d+(\.\d+)?/, pgResult);
    assert.equal(await page.getAttribute('#node-config-test-result', 'class'), 'dbc-result dbc-ok');
    await page.locator('#node-config-test-result').scrollIntoViewIfNeeded();
    await shot(page, 'config-postgres-test-ok');

    // a user that does not exist: the coded error, in red
    if (PG_FROM_ENV) {
      const bad = new URL(PG_URL);
      bad.username = 'nobody_here';
      await page.fill('#node-config-input-url', bad.href);
    } else {
      await page.fill('#node-config-input-user', 'nobody_here');
    }
    const badResult = await testConnection();
    assert.match(badResult, /^DBC_CONNECTION: /, badResult);
    assert.match(badResult, /nobody_here/);
    assert.equal(await page.getAttribute('#node-config-test-result', 'class'), 'dbc-result dbc-error');
    await page.locator('#node-config-test-result').scrollIntoViewIfNeeded();
    await shot(page, 'config-postgres-test-error');
    if (PG_FROM_ENV) await page.fill('#node-config-input-url', PG_URL);
    else await page.fill('#node-config-input-user', PG_FIELDS.user);
    await page.click('#node-config-dialog-ok');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });

    // the new connection is selected for the node
    const ids = await page.evaluate(() => {
      const out = {};
      RED.nodes.eachConfig((n) => { if (n.type === 'database-connector-config') out[n.provider] = n.id; });
      return out;
    });
    assert.ok(ids.sqlite && ids.postgres, JSON.stringify(ids));
    s.sqliteId = ids.sqlite;
    s.pgId = ids.postgres;
    assert.equal(await page.inputValue('#node-input-connection'), s.pgId);
    await docImage(page, 'operation-dialog', { target: page.locator('.red-ui-tray', { has: page.locator('#node-input-operation') }) });
    await page.click('#node-dialog-ok');
    await page.locator('#node-input-operation').waitFor({ state: 'detached' });
    const saved = await page.evaluate((id) => {
      const n = RED.nodes.node(id);
      const configErrors = {};
      RED.nodes.eachConfig((c) => { if (c.type === 'database-connector-config') configErrors[c.provider] = c.valid ? [] : c.validationErrors; });
      return { connection: n.connection, operation: n.operation, debug: n.debug, queue: n.queue, errors: n.valid ? [] : n.validationErrors, configErrors };
    }, s.dbNode);
    assert.deepEqual(saved, { connection: s.pgId, operation: 'insertTask', debug: true, queue: 'browser', errors: [], configErrors: { sqlite: [], postgres: [] } });

    // before a deploy the performance panel knows the connections but has no metrics
    await openSidebarTab(page, 'database-connector-metrics');
    for (const id of [s.sqliteId, s.pgId]) {
      await page.locator(`.dbc-metrics-row[data-config-id="${id}"] .dbc-state[data-state="notDeployed"]`).waitFor();
    }
    await shot(page, 'performance-panel-not-deployed');
    await openSidebarTab(page, 'info');
    await page.locator('#dbc-metrics-panel[data-refreshing="false"]').waitFor({ state: 'attached' });
  });

  step('(c) deploys, applies migrations from the Advanced section, sees PostgreSQL migrated on deploy', async () => {
    await deploy(page);
    // the operation node opened the PostgreSQL pool and migrated it (autoMigrate on)
    await red.waitFor(/postgres: connected/);
    await dismissNotifications(page);

    await openConfigFromSidebar('browser sqlite');
    await openAdvanced();
    const list = page.locator('#node-config-schema-list');
    await list.locator('td.dbc-pending').first().waitFor();
    const apply = page.locator('#node-config-input-apply-migrations');
    assert.equal(await apply.isEnabled(), true);
    await apply.click();
    const confirm = page.locator('.red-ui-notification button.primary', { hasText: 'Apply' });
    await confirm.waitFor({ state: 'visible' });
    await shot(page, 'schema-confirm');
    await confirm.click();
    await confirm.waitFor({ state: 'hidden' });
    await page.waitForFunction(() => /Migrations applied: [1-9]/.test(document.querySelector('#node-config-schema-result').textContent));
    await list.getByText('The schema is up to date.').waitFor();
    assert.equal(await list.locator('td.dbc-pending').count(), 0);
    assert.equal(await apply.isDisabled(), true);
    await shot(page, 'schema-applied');
    await page.click('#node-config-dialog-cancel');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });

    await openConfigFromSidebar('browser postgres');
    await openAdvanced();
    await list.getByText('The schema is up to date.').waitFor();
    assert.match(await list.textContent(), /applied \d{4}-/);
    await page.click('#node-config-dialog-cancel');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });
  });

  step('(d) inject → insertTask (debug on) → debug: the result and msg._debug in the debug sidebar', async () => {
    // the inject and debug nodes are imported; the wires are drawn with the mouse
    const { x, y } = s.dbPos;
    const imported = await page.evaluate(({ x, y, z }) => {
      const task = { name: 'browser-test', payload: { from: 'the browser test' }, priority: 1 };
      RED.view.importNodes([
        { id: 'e2einject000001', type: 'inject', z, name: 'task', props: [{ p: 'payload' }], repeat: '', once: false, topic: '', payload: JSON.stringify(task), payloadType: 'json', x: x - 220, y, wires: [[]] },
        { id: 'e2edebug0000001', type: 'debug', z, name: 'result', active: true, tosidebar: true, console: false, tostatus: false, complete: 'true', targetType: 'full', statusVal: '', statusType: 'auto', x: x + 240, y, wires: [] },
      ], { generateIds: false, touchImport: true, notify: false });
      RED.view.select([]);
      return RED.nodes.filterNodes({ z }).map((n) => n.type).sort();
    }, { x, y, z: await page.evaluate(() => RED.workspaces.active()) });
    assert.deepEqual(imported, ['database-connector', 'debug', 'inject']);
    await page.locator(nodeSel('e2einject000001')).waitFor({ state: 'visible' });
    await wire(page, 'e2einject000001', s.dbNode);
    await wire(page, s.dbNode, 'e2edebug0000001');
    await deploy(page);
    await dismissNotifications(page);

    await openSidebarTab(page, 'debug');
    await page.locator(`${nodeSel('e2einject000001')} .red-ui-flow-node-button`).click();
    const msg = page.locator('#red-ui-sidebar-content .red-ui-debug-msg').first();
    await msg.waitFor();
    // expand the msg, then its payload (the stored task) and its _debug
    // (a property row, not the one-line summary a collapsed msg shows; the outermost one:
    // msg.payload, not the task's own payload inside it)
    const key = (name) => msg.locator('.red-ui-debug-msg-object-entry .red-ui-debug-msg-object-key', { hasText: new RegExp(`^${name}$`) }).filter({ visible: true }).first();
    const top = msg.locator('.red-ui-debug-msg-element').first();
    if (await top.evaluate((e) => e.classList.contains('collapsed'))) await top.locator('.red-ui-debug-msg-object-handle').first().click();
    await key('payload').click();
    await key('status').waitFor();
    const result = await msg.textContent();
    for (const want of ['browser-test', 'pending', 'queue', 'browser']) {
      assert.ok(result.includes(want), `"${want}" not in the debug message's payload: ${result}`);
    }
    await key('payload').click(); // folded again, to show all of _debug
    await key('status').waitFor({ state: 'hidden' });
    await key('_debug').click();
    await key('dbMs').waitFor();
    await key('statements').waitFor();
    await dismissNotifications(page);
    const text = await msg.textContent();
    for (const want of ['payload', '_debug', 'insertTask', 'postgres', 'dbMs', 'statements', 'pool']) {
      assert.ok(text.includes(want), `"${want}" not in the debug message: ${text}`);
    }
    await shot(page, 'debug-sidebar');
    await docImage(page, 'debug-sidebar');
  });

  step('(e) the performance panel counts the next insertTask', async () => {
    await openSidebarTab(page, 'database-connector-metrics');
    const row = page.locator(`.dbc-metrics-row[data-config-id="${s.pgId}"]`);
    const count = row.locator('.dbc-op[data-operation="insertTask"] .dbc-op-count');
    await row.locator('.dbc-state[data-state="connected"]').waitFor();
    await count.filter({ hasText: /^1$/ }).waitFor();
    assert.equal(await row.locator('.dbc-provider').textContent(), 'postgres');
    const totalBefore = Number(await row.locator('.dbc-ops-total').textContent());

    const inject = page.locator(`${nodeSel('e2einject000001')} .red-ui-flow-node-button`);
    await inject.click();
    await count.filter({ hasText: /^2$/ }).waitFor();
    assert.equal(Number(await row.locator('.dbc-ops-total').textContent()), totalBefore + 1);
    // two more, one per refresh, for the sparkline
    const spark = row.locator('svg.dbc-sparkline');
    for (const n of [3, 4]) {
      const samples = Number(await spark.getAttribute('data-samples'));
      await page.waitForFunction(({ id, k }) => Number(document.querySelector(`.dbc-metrics-row[data-config-id="${id}"] svg.dbc-sparkline`).getAttribute('data-samples')) > k, { id: s.pgId, k: samples });
      await inject.click();
      await count.filter({ hasText: new RegExp(`^${n}$`) }).waitFor();
    }
    // the throughput sparkline saw the insert (a sample above zero)
    await page.waitForFunction((id) => Number(document.querySelector(`.dbc-metrics-row[data-config-id="${id}"] svg.dbc-sparkline`)?.getAttribute('data-max')) > 0, s.pgId);
    assert.equal(await row.locator('.dbc-queue[data-queue="browser"] .dbc-queue-count[data-status="pending"]').textContent(), '4');
    // a paused queue is marked at the next refresh, and unmarked after a resume
    const queueRow = row.locator('.dbc-queue[data-queue="browser"]');
    assert.equal(await queueRow.getAttribute('data-paused'), 'false');
    const queueAction = (action) => page.evaluate(async ({ id, a }) => (await fetch(`database-connector/${id}/queues/browser/${a}`, { method: 'POST' })).status, { id: s.pgId, a: action });
    assert.equal(await queueAction('pause'), 200);
    await row.locator('.dbc-queue[data-queue="browser"][data-paused="true"]').waitFor();
    assert.equal(await queueRow.locator('.dbc-queue-paused').textContent(), ' (paused)');
    assert.equal(await queueAction('resume'), 200);
    await row.locator('.dbc-queue[data-queue="browser"][data-paused="false"]').waitFor();
    assert.equal(await queueRow.locator('.dbc-queue-paused').count(), 0);
    assert.match(await row.locator('.dbc-pool').textContent(), /^\d+ in use of \d+ open, max 10$/);
    assert.match(await row.locator('.dbc-waiting').textContent(), /^0 · acquire p99 /);
    assert.match(await row.locator('.dbc-p95').textContent(), /ms$/);
    // no flow uses the SQLite connection since the deploy: the panel says so, and asking
    // opened no pool for it
    const unused = page.locator(`.dbc-metrics-row[data-config-id="${s.sqliteId}"]`);
    await unused.locator('.dbc-state[data-state="unused"]').waitFor();
    assert.match(await unused.locator('.dbc-metrics-message').textContent(), /No deployed flow uses this connection/);
    assert.equal(await page.evaluate(async (id) => (await (await fetch(`database-connector/${id}/metrics`)).json()).state, s.sqliteId), 'unused');
    await dismissNotifications(page);
    await shot(page, 'performance-panel');
    await docImage(page, 'performance-panel');

    // hidden: it stops polling
    await openSidebarTab(page, 'debug');
    await page.locator('#dbc-metrics-panel[data-refreshing="false"]').waitFor({ state: 'attached' });
    assert.deepEqual(pageErrors, []);
  });

  step('(f) the performance tab has an action and a shortcut, and comes and goes with the node types', async () => {
    const action = 'database-connector:show-metrics-tab';
    const shortcut = await page.evaluate((a) => RED.keyboard.getShortcut(a), action);
    assert.equal(shortcut && shortcut.key, 'ctrl-g q');
    await page.keyboard.press('Control+g');
    await page.keyboard.press('q');
    await page.locator('#dbc-metrics-panel').waitFor({ state: 'visible' });
    await openSidebarTab(page, 'debug');
    // the node types leave the palette (as when the package is disabled in the Palette
    // Manager): the tab, the action and the shortcut go; back in the palette, they return
    const gone = await page.evaluate((a) => {
      RED.nodes.getType('database-connector').onpaletteremove();
      return { tab: RED.sidebar.containsTab('database-connector-metrics'), panel: !!document.querySelector('#dbc-metrics-panel'), action: RED.actions.list().some((x) => x.id === a), shortcut: !!RED.keyboard.getShortcut(a) };
    }, action);
    assert.deepEqual(gone, { tab: false, panel: false, action: false, shortcut: false });
    const back = await page.evaluate((a) => {
      RED.nodes.getType('database-connector').onpaletteadd();
      RED.actions.invoke(a);
      return { tab: RED.sidebar.containsTab('database-connector-metrics'), action: RED.actions.list().some((x) => x.id === a), shortcut: !!RED.keyboard.getShortcut(a) };
    }, action);
    assert.deepEqual(back, { tab: true, action: true, shortcut: true });
    await page.locator('#dbc-metrics-panel').waitFor({ state: 'visible' });
    assert.deepEqual(pageErrors, []);
  });
});
