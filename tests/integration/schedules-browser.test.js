/**
 * The task browser's Schedules section in a real browser (Debian's Chromium,
 * playwright-core) against a real Node-RED runtime on SQLite (docs/USER-GUIDE.md
 * "Recurring tasks: schedules"): a schedule made through the registry is listed; typing a
 * cron pattern shows it in words and its next runs, as the runtime computes them; a bad
 * pattern shows the runtime's message; the form creates a schedule; pause, resume and
 * delete act on the database.
 */
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const helpers = require('../../nodes/database-connector/database-connector-helpers');
const { spawnNodeRed } = require('../support');
const { VIEWPORT, launchBrowser, screenshotter, openSidebarTab } = require('../support/browser');

const TAB = 'database-connector-tasks';
const CFG = 'schcfg0000000001';

describe('the Schedules section of the task browser', { timeout: 180000 }, () => {
  const shot = screenshotter();
  const pageErrors = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-sched-'));
  const sqliteFile = path.join(dir, 'sched.db');
  const flows = [
    { id: 'schtab000000001', type: 'tab', label: 'schedules' },
    { id: CFG, type: 'database-connector-config', name: 'local', provider: 'sqlite', sqliteFile, tablePrefix: 'dbc_', autoMigrate: true },
  ];
  let db;
  let red;
  let browser;
  let page;

  before(async () => {
    db = await helpers.connectToDatabase('sqlite', { primary: { provider: 'sqlite', sqliteFile }, tablePrefix: 'dbc_' });
    await db.createSchedule({ name: 'nightly-report', cron: '0 30 2 * * *', timeZone: 'Europe/Berlin', queue: 'reports' });
    browser = await launchBrowser();
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

  const row = (name) => page.locator(`#dbc-tasks-panel tr.dbc-tb-schedule[data-name="${name}"]`);

  it('lists, previews, creates, pauses, resumes and deletes schedules', async () => {
    await openSidebarTab(page, TAB);
    await page.selectOption('#dbc-tb-connection', CFG);
    await row('nightly-report').waitFor();
    assert.equal(await row('nightly-report').getAttribute('data-paused'), 'false');
    assert.equal(await row('nightly-report').locator('.dbc-tb-schedule-cron').textContent(), '0 30 2 * * *');

    // the preview: words and three next runs from the runtime, as the user types
    await page.fill('#dbc-tb-schedule-cron', '*/10 * * * * *');
    await page.locator('#dbc-tb-schedule-preview[data-valid="true"]').waitFor();
    const words = await page.locator('#dbc-tb-schedule-preview .dbc-tb-schedule-words').textContent();
    const expected = (await db.previewSchedule('*/10 * * * * *')).description;
    assert.equal(words, expected);
    assert.match(words, /10/);
    assert.equal((await page.locator('#dbc-tb-schedule-preview .dbc-tb-schedule-next').textContent()).split('·').length, 3);
    // a bad pattern: the runtime's message, nothing saved
    await page.fill('#dbc-tb-schedule-cron', '61 * * * *');
    await page.locator('#dbc-tb-schedule-preview[data-valid="false"]').waitFor();
    assert.match(await page.locator('#dbc-tb-schedule-preview').textContent(), /cron/);
    await page.fill('#dbc-tb-schedule-tz', 'Mars/Olympus');
    await page.fill('#dbc-tb-schedule-cron', '0 * * * *');
    await page.locator('#dbc-tb-schedule-preview', { hasText: 'time zone' }).waitFor();
    await shot(page, 'schedules-preview-error');

    // create: the form's schedule is in the database and in the list
    await page.fill('#dbc-tb-schedule-name', 'every-10s');
    await page.fill('#dbc-tb-schedule-cron', '*/10 * * * * *');
    await page.fill('#dbc-tb-schedule-tz', '');
    await page.fill('#dbc-tb-schedule-queue', 'ticks');
    await page.click('#dbc-tb-schedule-save');
    await row('every-10s').waitFor();
    let all = (await db.listSchedules()).schedules;
    assert.deepEqual(all.map((s) => [s.name, s.cron, s.timeZone, s.queue]), [['every-10s', '*/10 * * * * *', 'UTC', 'ticks'], ['nightly-report', '0 30 2 * * *', 'Europe/Berlin', 'reports']]);

    // pause, resume, delete: each shows in the list and in the database
    await row('every-10s').locator('button[data-action="pause"]').click();
    await page.locator('#dbc-tasks-panel tr.dbc-tb-schedule[data-name="every-10s"][data-paused="true"]').waitFor();
    assert.equal((await db.listSchedules()).schedules[0].paused, true);
    await row('every-10s').locator('button[data-action="resume"]').click();
    await page.locator('#dbc-tasks-panel tr.dbc-tb-schedule[data-name="every-10s"][data-paused="false"]').waitFor();
    await shot(page, 'schedules-list');
    page.once('dialog', (d) => d.accept());
    await row('every-10s').locator('button[data-action="delete"]').click();
    await row('every-10s').waitFor({ state: 'detached' });
    all = (await db.listSchedules()).schedules;
    assert.deepEqual(all.map((s) => s.name), ['nightly-report']);
    assert.deepEqual(pageErrors, []);
  });
});
