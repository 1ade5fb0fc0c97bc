/**
 * The config dialog in a real browser (Debian's Chromium, playwright-core) against a real
 * Node-RED runtime with an encrypted credentials file: a first SQLite connection shows
 * three fields; PostgreSQL and MariaDB are filled in fields mode and in URL mode, each with
 * Test connection, PostgreSQL with a MariaDB fallback tested beside it (also a fallback on
 * a wrong port: its code and hint); bad values get inline hints; deploy; the saved
 * flows.json holds the SPEC property names and no secret, flows_cred.json holds the
 * secrets, encrypted; reopened, each connection shows the mode it was saved in.
 *
 * Needs /usr/bin/chromium, PostgreSQL (DBC_TEST_PG_URL) and MariaDB (DBC_TEST_MARIADB_URL):
 * a missing one fails the run, nothing is skipped. With DBC_SCREENSHOTS set
 * (`npm run docs:screenshots`) it also writes the dialog's pictures for the docs.
 */
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const service = require('../../nodes/database-connector/database-service');
const { PG_URL, MARIADB_URL, requireDatabases, spawnNodeRed, uniquePrefix } = require('../support');
const { launchBrowser, screenshotter, docImage, nodeSel, dragFromPalette, openSidebarTab, deploy, dismissNotifications } = require('../support/browser');

const CATALOGUE = require('../../nodes/database-connector/locales/en-US/database-connector.json')['database-connector'];
const CREDENTIAL_SECRET = 'config-dialog-test-secret';
// a taller page than the other browser tests: the whole dialog fits in the docs' pictures
const VIEWPORT = { width: 1280, height: 1000 };

// SPEC.md "Property names in flows.json": every config node saved by the dialog has them all
const SPEC_PROPERTIES = ['name', 'provider', 'host', 'port', 'database', 'ssl', 'poolMax', 'poolMin', 'acquireTimeoutMs',
  'idleTimeoutMs', 'statementTimeoutMs', 'fallbackEnabled', 'fallbackProvider', 'fallbackHost', 'fallbackPort',
  'fallbackDatabase', 'fallbackSsl', 'healthIntervalMs', 'failoverThreshold', 'failback', 'tablePrefix', 'autoMigrate', 'sqliteFile'];
const SPEC_CREDENTIALS = ['user', 'password', 'url', 'fallbackUser', 'fallbackPassword', 'fallbackUrl'];

/** host, port, database, user of a database URL, for the dialog's fields. */
function fieldsOf(url) {
  const u = new URL(url);
  return { host: u.hostname, port: u.port, database: u.pathname.slice(1), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
}
const PG = fieldsOf(PG_URL);
const MARIADB = fieldsOf(MARIADB_URL);
// The PostgreSQL here trusts local connections and ignores a password, so a marker stands
// in for one; with a password in DBC_TEST_PG_URL, that password is the secret to look for.
const PG_SECRET = PG.password || `pw-${crypto.randomBytes(6).toString('hex')}`;
const PG_URL_WITH_SECRET = (() => { const u = new URL(PG_URL); u.password = PG_SECRET; return u.href; })();

/** Node-RED's credentials file, decrypted as the runtime does (aes-256-ctr, sha256 of the secret). */
function decryptCredentials(file) {
  const stored = JSON.parse(fs.readFileSync(file, 'utf8'));
  const key = crypto.createHash('sha256').update(CREDENTIAL_SECRET).digest();
  const iv = Buffer.from(stored.$.substring(0, 32), 'hex');
  const decipher = crypto.createDecipheriv('aes-256-ctr', key, iv);
  return JSON.parse(decipher.update(stored.$.substring(32), 'base64', 'utf8') + decipher.final('utf8'));
}

describe('the config dialog in a real browser', { timeout: 240000 }, () => {
  const shot = screenshotter();
  const pageErrors = [];
  const s = {}; // what the steps share: ids of the nodes they made
  const prefixes = { pg: uniquePrefix('cdf'), pgUrl: uniquePrefix('cdu') };
  let red;
  let browser;
  let page;
  let userDir = null;

  before(async () => {
    await requireDatabases(service);
    browser = await launchBrowser();
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-dialog-'));
    fs.writeFileSync(path.join(userDir, '.config.users.json'), JSON.stringify({ _: { editor: { view: { 'view-show-welcome-tours': false } } } }));
    red = await spawnNodeRed({ flows: [], userDir, settings: `credentialSecret: '${CREDENTIAL_SECRET}',`, env: { NODE_RED_DISABLE_TELEMETRY: '1' } });
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
    // only the tables this run's connections created (the deployed one and its fallback)
    for (const [provider, url, list] of [
      ['postgres', PG_URL, "SELECT tablename AS t FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1"],
      ['mariadb', MARIADB_URL, 'SELECT table_name AS t FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?'],
    ]) {
      const db = await service.open({ primary: { provider, url }, autoMigrate: false, pool: { poolMax: 1 } });
      try {
        const rows = await db.query(list, [`${prefixes.pgUrl}%`]);
        const tables = rows.rows.map((r) => r.t);
        if (provider === 'mariadb' && tables.length > 0) await db.query('SET FOREIGN_KEY_CHECKS = 0');
        for (const t of tables) await db.query(`DROP TABLE IF EXISTS ${t}`);
      } finally {
        await db.close();
      }
    }
  });

  /** A step of the scenario: after a failure the rest fail at once, with a screenshot of the failure. */
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

  const dialog = () => page.locator('.red-ui-tray').last();

  /** Opens a new connection's dialog from the operation node's dialog (its + button). */
  async function addConnection(name) {
    await page.click('#node-input-btn-connection-add');
    await page.locator('#node-config-input-provider').waitFor({ state: 'visible' });
    await page.fill('#node-config-input-name', name);
  }

  /** Saves the open connection dialog and resolves its node's id. */
  async function saveConnection(name) {
    await page.click('#node-config-dialog-ok');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });
    return page.evaluate((n) => {
      let id = null;
      RED.nodes.eachConfig((c) => { if (c.type === 'database-connector-config' && c.name === n) id = c.id; });
      return id;
    }, name);
  }

  /** The fields the dialog shows now, without scrolling anything open: inputs and URL | Fields switches. */
  function visibleFields() {
    return page.evaluate(() => {
      const form = document.querySelector('#node-config-input-provider').closest('form');
      const shown = (e) => e.offsetParent !== null;
      const inputs = [...form.querySelectorAll('input, select, textarea')].filter((e) => e.type !== 'hidden' && e.id.startsWith('node-config-input-') && shown(e)).map((e) => e.id.replace('node-config-input-', ''));
      const switches = [...form.querySelectorAll('.dbc-mode')].filter(shown).map((e) => `${e.dataset.prefix || 'primary'}-mode`);
      return inputs.concat(switches).sort();
    });
  }

  /** Clicks the URL | Fields switch of the primary ('') or the fallback connection. */
  async function mode(prefix, which) {
    const id = prefix ? `#node-config-dbc-fallback-mode-${which}` : `#node-config-dbc-mode-${which}`;
    await page.click(id);
    assert.match(await page.getAttribute(id, 'class'), /\bselected\b/);
  }

  /** Clicks Test connection and resolves each shown result: {text, ok, hint}. */
  async function testConnection() {
    await page.click('#node-config-input-test-connection');
    await page.locator('#node-config-input-test-connection:not([disabled])').waitFor();
    return page.evaluate(() => {
      const out = {};
      document.querySelectorAll('.dbc-test-row').forEach((row) => {
        if (row.offsetParent === null) return;
        const result = row.querySelector('.dbc-result');
        out[row.dataset.target] = { text: result.textContent, ok: result.classList.contains('dbc-ok'), hint: row.querySelector('.dbc-test-hint').textContent };
      });
      return out;
    });
  }

  /** The inline hint under a field, and whether the field is marked red. */
  async function fieldState(prop) {
    return {
      hint: await page.locator(`.dbc-field-hint[data-for="${prop}"]`).textContent(),
      red: await page.locator(`#node-config-input-${prop}`).evaluate((e) => e.classList.contains('input-error')),
    };
  }

  step('(a) a first SQLite connection shows three fields and tests the file', async () => {
    s.dbNode = await dragFromPalette(page, 'database-connector', 'database', 560, 300);
    await page.locator(`${nodeSel(s.dbNode)} .red-ui-flow-node`).dblclick();
    await page.locator('#node-input-operation').waitFor({ state: 'visible' });
    await addConnection('dialog sqlite');
    assert.equal(await page.inputValue('#node-config-input-provider'), 'sqlite');
    assert.deepEqual(await visibleFields(), ['name', 'provider', 'sqliteFile']);
    const r = await testConnection();
    assert.deepEqual(Object.keys(r), ['primary'], 'no fallback line for SQLite');
    assert.match(r.primary.text, /^Connected: sqlite \d+\.\d+/, r.primary.text);
    // the rest waits under Advanced, with its defaults
    assert.equal(await page.locator('#node-config-input-poolMax').isVisible(), false);
    await page.click('#node-config-dbc-advanced');
    await page.locator('#node-config-input-poolMax').waitFor({ state: 'visible' });
    assert.equal(await page.inputValue('#node-config-input-poolMax'), '10');
    assert.equal(await page.inputValue('#node-config-input-tablePrefix'), 'dbc_');
    await page.click('#node-config-dbc-advanced');
    await page.locator('#node-config-input-poolMax').waitFor({ state: 'hidden' });
    await docImage(page, 'config-dialog-sqlite', { target: dialog() });
    s.sqlite = await saveConnection('dialog sqlite');
    assert.ok(s.sqlite);
  });

  step('(b) PostgreSQL in fields mode, with a MariaDB fallback: inline hints, TLS fields, both tested', async () => {
    await addConnection('dialog postgres fields');
    await page.selectOption('#node-config-input-provider', 'postgres');
    // a new connection starts in fields mode, TLS prefer, no fallback: no certificate fields
    assert.deepEqual(await visibleFields(), ['database', 'fallbackEnabled', 'host', 'name', 'password', 'port', 'primary-mode', 'provider', 'ssl', 'user']);
    for (const tls of ['require', 'verify-full']) {
      await page.selectOption('#node-config-input-ssl', tls);
      assert.equal(await page.locator('#node-config-input-sslCa').isVisible(), true, tls);
      assert.equal(await page.locator('#node-config-input-sslKeyPem').isVisible(), true, tls);
    }
    await page.selectOption('#node-config-input-ssl', 'disable');
    assert.equal(await page.locator('#node-config-input-sslCa').isVisible(), false);

    // bad values: marked red with the reason under the field
    await page.fill('#node-config-input-port', '70000');
    assert.deepEqual(await fieldState('port'), { hint: CATALOGUE.errors.port, red: true });
    await page.fill('#node-config-input-host', '');
    assert.deepEqual(await fieldState('host'), { hint: CATALOGUE.errors.host, red: true });
    await shot(page, 'inline-hints');
    await page.fill('#node-config-input-host', PG.host);
    await page.fill('#node-config-input-port', PG.port || '5432');
    assert.deepEqual(await fieldState('port'), { hint: '', red: false });
    assert.deepEqual(await fieldState('host'), { hint: '', red: false });
    await page.fill('#node-config-input-database', PG.database);
    await page.fill('#node-config-input-user', PG.user);
    await page.fill('#node-config-input-password', PG_SECRET);

    await page.check('#node-config-input-fallbackEnabled');
    assert.equal(await page.inputValue('#node-config-input-fallbackProvider'), 'mariadb');
    await page.fill('#node-config-input-fallbackHost', MARIADB.host);
    await page.fill('#node-config-input-fallbackPort', '1'); // nothing listens there
    await page.fill('#node-config-input-fallbackDatabase', MARIADB.database);
    await page.fill('#node-config-input-fallbackUser', MARIADB.user);
    if (MARIADB.password) await page.fill('#node-config-input-fallbackPassword', MARIADB.password);
    await page.selectOption('#node-config-input-fallbackSsl', 'disable');
    // one click tests both; the fallback's failure comes with its code and what to do
    const bad = await testConnection();
    assert.equal(bad.primary.ok, true, bad.primary.text);
    assert.match(bad.primary.text, /^Connected: postgres \d+/);
    assert.equal(bad.fallback.ok, false);
    assert.match(bad.fallback.text, /^DBC_CONNECTION: /, bad.fallback.text);
    assert.equal(bad.fallback.hint, CATALOGUE.hint.DBC_CONNECTION);
    await page.locator('#node-config-test-result-fallback').scrollIntoViewIfNeeded();
    await docImage(page, 'config-dialog-test-connection', { target: dialog() });

    await page.fill('#node-config-input-fallbackPort', MARIADB.port || '3306');
    const good = await testConnection();
    assert.equal(good.primary.ok, true, good.primary.text);
    assert.equal(good.fallback.ok, true, good.fallback.text);
    assert.match(good.fallback.text, /^Connected: mariadb \d+\.\d+/);
    assert.equal(good.fallback.hint, '');
    await page.locator('#node-config-input-name').scrollIntoViewIfNeeded();
    await docImage(page, 'config-dialog-postgres', { target: dialog() });

    await page.click('#node-config-dbc-advanced');
    await page.fill('#node-config-input-tablePrefix', 'Bad-Prefix');
    assert.deepEqual(await fieldState('tablePrefix'), { hint: CATALOGUE.errors.tablePrefix, red: true });
    await page.fill('#node-config-input-tablePrefix', prefixes.pg);
    assert.deepEqual(await fieldState('tablePrefix'), { hint: '', red: false });
    s.pgFields = await saveConnection('dialog postgres fields');
  });

  step('(c) PostgreSQL in URL mode, with a MariaDB fallback in URL mode: bad URLs hinted, both tested', async () => {
    await addConnection('dialog postgres url');
    await page.selectOption('#node-config-input-provider', 'postgres');
    await mode('', 'url');
    assert.deepEqual(await visibleFields(), ['fallbackEnabled', 'name', 'primary-mode', 'provider', 'ssl', 'url']);
    await page.fill('#node-config-input-url', 'postgres//no-colon');
    assert.deepEqual(await fieldState('url'), { hint: CATALOGUE.errors.url.replace('__example__', 'postgres://host/db'), red: true });
    await page.fill('#node-config-input-url', MARIADB_URL); // another provider's URL
    assert.equal((await fieldState('url')).red, true);
    await page.fill('#node-config-input-url', '');
    assert.deepEqual(await fieldState('url'), { hint: CATALOGUE.errors.urlMissing, red: true });
    await page.fill('#node-config-input-url', PG_URL_WITH_SECRET);
    assert.deepEqual(await fieldState('url'), { hint: '', red: false });
    await page.selectOption('#node-config-input-ssl', 'disable');

    await page.check('#node-config-input-fallbackEnabled');
    await mode('fallback', 'url');
    await page.fill('#node-config-input-fallbackUrl', MARIADB_URL);
    await page.selectOption('#node-config-input-fallbackSsl', 'disable');
    const r = await testConnection();
    assert.equal(r.primary.ok, true, r.primary.text);
    assert.equal(r.fallback.ok, true, r.fallback.text);
    assert.match(r.fallback.text, /^Connected: mariadb /);
    await page.click('#node-config-dbc-advanced');
    await page.fill('#node-config-input-tablePrefix', prefixes.pgUrl);
    s.pgUrl = await saveConnection('dialog postgres url');
  });

  step('(d) MariaDB in fields mode and in URL mode', async () => {
    await addConnection('dialog mariadb fields');
    await page.selectOption('#node-config-input-provider', 'mariadb');
    assert.equal(await page.getAttribute('#node-config-input-port', 'placeholder'), '3306');
    await page.fill('#node-config-input-host', MARIADB.host);
    await page.fill('#node-config-input-port', MARIADB.port || '3306');
    await page.fill('#node-config-input-database', MARIADB.database);
    await page.fill('#node-config-input-user', MARIADB.user);
    if (MARIADB.password) await page.fill('#node-config-input-password', MARIADB.password);
    await page.selectOption('#node-config-input-ssl', 'disable');
    let r = await testConnection();
    assert.match(r.primary.text, /^Connected: mariadb \d+\.\d+/, r.primary.text);
    // a wrong user: refused, so a different hint
    await page.fill('#node-config-input-user', 'nobody_here');
    r = await testConnection();
    assert.match(r.primary.text, /^DBC_CONNECTION: /, r.primary.text);
    assert.equal(r.primary.hint, CATALOGUE.hint.DBC_CONNECTION_refused);
    await page.fill('#node-config-input-user', MARIADB.user);
    s.mariadbFields = await saveConnection('dialog mariadb fields');

    await addConnection('dialog mariadb url');
    await page.selectOption('#node-config-input-provider', 'mariadb');
    await mode('', 'url');
    await page.fill('#node-config-input-url', MARIADB_URL);
    await page.selectOption('#node-config-input-ssl', 'disable');
    r = await testConnection();
    assert.match(r.primary.text, /^Connected: mariadb \d+\.\d+/, r.primary.text);
    s.mariadbUrl = await saveConnection('dialog mariadb url');
  });

  step('(e) deploys; flows.json has the SPEC property names and no secret, flows_cred.json has them encrypted', async () => {
    // the node uses the URL-mode PostgreSQL connection (and so its MariaDB fallback)
    await page.selectOption('#node-input-connection', s.pgUrl);
    await page.click('#node-dialog-ok');
    await page.locator('#node-input-operation').waitFor({ state: 'detached' });
    const invalid = await page.evaluate(() => {
      const out = [];
      RED.nodes.eachConfig((c) => { if (c.type === 'database-connector-config' && !c.valid) out.push(c.name); });
      return out;
    });
    assert.deepEqual(invalid, []);
    await deploy(page);
    await red.waitFor(/postgres: connected/);
    await dismissNotifications(page);

    const text = fs.readFileSync(path.join(userDir, 'flows.json'), 'utf8');
    const configs = JSON.parse(text).filter((n) => n.type === 'database-connector-config');
    assert.deepEqual(configs.map((c) => c.name).sort(), ['dialog mariadb fields', 'dialog mariadb url', 'dialog postgres fields', 'dialog postgres url', 'dialog sqlite']);
    for (const c of configs) {
      const missing = SPEC_PROPERTIES.filter((p) => !(p in c));
      assert.deepEqual(missing, [], `${c.name} lacks ${missing}`);
      const leaked = SPEC_CREDENTIALS.concat('credentials').filter((p) => p in c);
      assert.deepEqual(leaked, [], `${c.name} has ${leaked} in flows.json`);
    }
    const byName = Object.fromEntries(configs.map((c) => [c.name, c]));
    assert.equal(byName['dialog postgres fields'].port, PG.port || '5432');
    assert.equal(byName['dialog postgres fields'].fallbackEnabled, true);
    assert.equal(byName['dialog postgres url'].tablePrefix, prefixes.pgUrl);
    for (const secret of [PG_SECRET, PG_URL_WITH_SECRET, MARIADB_URL, 'nobody_here']) {
      assert.ok(!text.includes(secret), `flows.json holds "${secret}"`);
    }

    const credFile = path.join(userDir, 'flows_cred.json');
    assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(credFile, 'utf8'))), ['$'], 'encrypted');
    const creds = decryptCredentials(credFile);
    // each connection keeps only what its switch showed
    assert.deepEqual(creds[s.pgFields], { user: PG.user, password: PG_SECRET, fallbackUser: MARIADB.user, ...(MARIADB.password ? { fallbackPassword: MARIADB.password } : {}) });
    assert.deepEqual(creds[s.pgUrl], { url: PG_URL_WITH_SECRET, fallbackUrl: MARIADB_URL });
    assert.deepEqual(creds[s.mariadbUrl], { url: MARIADB_URL });
    assert.equal(creds[s.mariadbFields].user, MARIADB.user);
    assert.equal(creds[s.mariadbFields].url, undefined);
  });

  step('(f) reopened, each connection shows the mode it was saved in, and tests with the stored secrets', async () => {
    /** Opens a deployed connection from the Configuration nodes sidebar. */
    async function open(name) {
      await openSidebarTab(page, 'config');
      await page.locator('#red-ui-sidebar-content .red-ui-palette-node-config', { hasText: name }).dblclick();
      await page.locator('#node-config-input-provider').waitFor({ state: 'visible' });
    }
    await open('dialog postgres url');
    assert.match(await page.getAttribute('#node-config-dbc-mode-url', 'class'), /\bselected\b/);
    assert.match(await page.getAttribute('#node-config-dbc-fallback-mode-url', 'class'), /\bselected\b/);
    assert.equal(await page.locator('#node-config-input-host').isVisible(), false);
    assert.equal(await page.inputValue('#node-config-input-url'), '__PWRD__'); // the editor never gets the URL back
    const r = await testConnection();
    assert.equal(r.primary.ok, true, r.primary.text);
    assert.equal(r.fallback.ok, true, r.fallback.text);
    // the deployed connection's migrations, under Advanced
    await page.click('#node-config-dbc-advanced');
    await page.locator('#node-config-schema-list').getByText('The schema is up to date.').waitFor();
    await page.locator('#node-config-input-apply-migrations').scrollIntoViewIfNeeded();
    await docImage(page, 'schema-migrations', { target: dialog() });
    await page.click('#node-config-dialog-cancel');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });

    await open('dialog postgres fields');
    assert.match(await page.getAttribute('#node-config-dbc-mode-fields', 'class'), /\bselected\b/);
    assert.equal(await page.locator('#node-config-input-url').isVisible(), false);
    assert.equal(await page.inputValue('#node-config-input-host'), PG.host);
    await page.click('#node-config-dialog-cancel');
    await page.locator('#node-config-input-provider').waitFor({ state: 'detached' });
    assert.deepEqual(pageErrors, []);
  });
});
