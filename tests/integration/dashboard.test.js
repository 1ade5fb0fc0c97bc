/**
 * examples/dashboard-2.json in a real Node-RED with @flowfuse/node-red-dashboard (a dev
 * dependency) and its page in Debian's Chromium: the example is deployed through the
 * admin API, its demo injects make tasks, a failed task and a workflow; the page shows
 * the chart with a line per status, the failed task in the table and the workflow's
 * progress; the row's Requeue button makes the task pending in the database and takes
 * it out of the table, and Delete removes another one.
 *
 * Needs /usr/bin/chromium: a missing one fails the run, nothing is skipped.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { root, spawnNodeRed, pollUntil } = require('../support');
const { VIEWPORT, launchBrowser, docImage } = require('../support/browser');

const EXAMPLE = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'dashboard-2.json'), 'utf8'));

test('the Dashboard 2.0 example: chart, failed-task table with Requeue and Delete, workflow progress', { timeout: 120000 }, async () => {
  const red = await spawnNodeRed({ flows: [], env: { NODE_RED_DISABLE_TELEMETRY: '1' } });
  let browser;
  let db;
  const pageErrors = [];
  try {
    // Node-RED finds the dashboard beside itself, in this checkout's node_modules
    const nodes = await red.request('GET', '/nodes', undefined, { accept: 'application/json' });
    assert.ok(nodes.body.some((set) => set.module === '@flowfuse/node-red-dashboard' && set.enabled && !set.err), 'Dashboard 2.0 is loaded: run npm install (it is a dev dependency)');
    await red.deploy(EXAMPLE);
    await red.waitFor(/sqlite: connected/);
    // the example's SQLite file, as the config node names it (relative: the user dir)
    db = await service.open({ primary: { provider: 'sqlite', sqliteFile: path.join(red.userDir, 'database-connector.db') }, tablePrefix: 'dbc_', autoMigrate: false });
    const failed = async () => (await db.execute('listTasks', { status: 'failed' })).value.tasks;

    // demo data, through the example's own inject nodes
    for (const id of ['dash_inj_tasks', 'dash_inj_fail', 'dash_inj_wf']) {
      const r = await red.request('POST', `/inject/${id}`);
      assert.equal(r.status, 200, `${id}: ${r.text}`);
    }
    const [broken] = await pollUntil('the demo task that fails', failed, (tasks) => tasks.length === 1);
    assert.equal(broken.name, 'broken-report');
    const etl = async (status) => (await db.execute('listTasks', { queue: 'etl', status })).value.tasks;
    await pollUntil('the demo workflow', () => etl('pending'), (tasks) => tasks.length === 3);
    assert.equal((await red.request('POST', '/inject/dash_inj_step')).status, 200);
    const [step] = await pollUntil('its first step completed', () => etl('completed'), (tasks) => tasks.length === 1);
    assert.equal(step.name, 'extract');

    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: VIEWPORT });
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
    // Dashboard 2.0's chart widget puts itself in window.uiCharts when window.Cypress is
    // set (the hook of its own browser tests): that is how this test reads what the chart
    // draws, since ECharts paints on a canvas.
    await page.addInitScript(() => { window.Cypress = true; });
    await page.goto(`http://127.0.0.1:${red.port}/dashboard/queues`);

    // the chart: a canvas, one line per status, the failed line at 1
    const chart = page.locator('#nrdb-ui-widget-dash_chart canvas').first();
    await chart.waitFor({ state: 'visible' });
    const box = await chart.boundingBox();
    assert.ok(box.width > 100 && box.height > 100, `chart size ${JSON.stringify(box)}`);
    const series = await page.waitForFunction(() => {
      const c = window.uiCharts && window.uiCharts.dash_chart;
      const s = c && c.chart && c.chart.getOption().series;
      return s && s.length === 5 && s.every((x) => x.data.length > 0) && s.map((x) => ({ name: x.name, last: x.data[x.data.length - 1][1] }));
    }).then((h) => h.jsonValue());
    const last = Object.fromEntries(series.map((s) => [s.name, s.last]));
    assert.deepEqual(Object.keys(last), ['pending', 'running', 'completed', 'failed', 'cancelled']);
    assert.equal(last.failed, 1, JSON.stringify(last));
    assert.equal(last.completed, 1, JSON.stringify(last)); // the workflow's first step
    assert.equal(last.running, 0, JSON.stringify(last));
    assert.equal(last.pending, 7, JSON.stringify(last)); // 5 report tasks and 2 workflow steps

    // the workflow's progress bar: one step of three done
    await page.locator('#nrdb-ui-widget-dash_bar').getByText('nightly-etl: 1 of 3 done, running: 34%').waitFor();

    // the failed task's row; Requeue
    const table = page.locator('#nrdb-ui-widget-dash_table');
    const row = table.locator('tbody tr', { hasText: 'broken-report' });
    await row.waitFor();
    assert.equal(await row.count(), 1);
    assert.match(await row.innerText(), /reports\s+1 of 1\s+missing\.csv does not exist/);
    // the docs' picture: the chart, the progress bar and this row on the page
    await docImage(page, 'dashboard-2');
    await row.getByRole('button', { name: 'Requeue' }).click();
    const requeued = await pollUntil('the requeued task pending', () => db.execute('getTask', { id: broken.id }), (r) => r.value.status === 'pending');
    assert.equal(requeued.value.maxAttempts, 2, 'a fresh attempt budget');
    await row.waitFor({ state: 'detached' });
    await page.getByText('Requeued broken-report: pending again, 1 attempts left').waitFor();

    // a second failed task; Delete
    assert.equal((await red.request('POST', '/inject/dash_inj_fail')).status, 200);
    const [again] = await pollUntil('a second failed task', failed, (tasks) => tasks.length === 1);
    assert.notEqual(again.id, broken.id);
    await row.waitFor();
    await row.getByRole('button', { name: 'Delete' }).click();
    await pollUntil('the deleted task gone', () => db.execute('getTask', { id: again.id }).then(() => null, (err) => err.code), (code) => code === 'DBC_NOT_FOUND');
    await row.waitFor({ state: 'detached' });
    assert.deepEqual(await failed(), []);
    assert.equal((await db.execute('getTask', { id: broken.id })).value.status, 'pending', 'Delete touched only its row');

    // the chart follows: no failed task any more
    await page.waitForFunction(() => {
      const s = window.uiCharts.dash_chart.chart.getOption().series.find((x) => x.name === 'failed');
      return s.data[s.data.length - 1][1] === 0;
    });
    assert.deepEqual(pageErrors, []);
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (db) await db.close();
    await red.stop();
    fs.rmSync(red.userDir, { recursive: true, force: true });
  }
});
