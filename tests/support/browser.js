/**
 * Support for the browser tests: Debian's Chromium driven by playwright-core, and a few
 * steps of the Node-RED editor done the way a user does them (mouse and keyboard).
 */
'use strict';

const fs = require('fs');
const path = require('path');

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(__dirname, '..', '.tmp', 'screenshots');
const VIEWPORT = { width: 1280, height: 800 };

/** Launches headless Chromium; fails (never skips) when it is not installed. */
async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Chromium. \`npm test\` installs Debian's package when it runs as root (scripts/dev-setup.js); otherwise run \`sudo apt-get install -y chromium\`.`);
  }
  const { chromium } = require('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

/** Saves numbered screenshots under tests/.tmp/screenshots/ (emptied first). */
function screenshotter() {
  fs.rmSync(SCREENSHOTS, { recursive: true, force: true });
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  let n = 0;
  const saved = [];
  const shot = async (page, name) => {
    n += 1;
    const file = path.join(SCREENSHOTS, `${String(n).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file });
    saved.push(file);
    return file;
  };
  shot.saved = saved;
  return shot;
}

/**
 * The documentation's screenshots, taken by the browser tests at the moment they show
 * something worth a picture, so the pictures match the editor the tests drive.
 * `npm run docs:screenshots` (scripts/screenshots.js) runs those tests with
 * DBC_SCREENSHOTS=docs/images; without that variable this does nothing. Any browser test
 * may call it:
 *
 *     await docImage(page, 'config-dialog', { target: '.red-ui-tray' });
 *
 * @param {import('playwright-core').Page} page
 * @param {string} name file name without `.png`: lower case words and dashes
 * @param {object} [opts]
 * @param {string|import('playwright-core').Locator} [opts.target] only this element
 *   (a selector or a locator), else the whole page
 * @param {number} [opts.padding] pixels around the element (default 8)
 * @returns {Promise<string|null>} the file written, or null when not asked for
 */
async function docImage(page, name, opts = {}) {
  const dir = process.env.DBC_SCREENSHOTS;
  if (!dir) return null;
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name)) throw new Error(`docImage: bad name "${name}" (lower case words and dashes)`);
  const file = path.resolve(dir, `${name}.png`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // the mouse pointer's hover marks and a blinking caret differ from run to run
  await page.mouse.move(0, 0);
  if (!opts.target) {
    await page.screenshot({ path: file, caret: 'hide', animations: 'disabled' });
    return file;
  }
  const target = typeof opts.target === 'string' ? page.locator(opts.target) : opts.target;
  // a tray slides in and out: wait until it stands still
  const handle = await target.first().elementHandle();
  await handle.waitForElementState('stable');
  const box = await handle.boundingBox();
  if (!box) throw new Error(`docImage: "${name}": the element to photograph is not visible`);
  const pad = opts.padding === undefined ? 8 : opts.padding;
  const view = page.viewportSize();
  const x = Math.max(0, box.x - pad);
  const y = Math.max(0, box.y - pad);
  const clip = { x, y, width: Math.min(view.width, box.x + box.width + pad) - x, height: Math.min(view.height, box.y + box.height + pad) - y };
  await page.screenshot({ path: file, clip, caret: 'hide', animations: 'disabled' });
  return file;
}

/** CSS selector of a flow node's SVG group in the workspace (ids may start with a digit). */
const nodeSel = (id) => `#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"]`;

/**
 * Drags a node type from the palette onto the workspace at (x, y) (page coordinates),
 * filtering the palette first so that the node is in view. Resolves the new node's id.
 */
async function dragFromPalette(page, type, search, x, y) {
  const before = await page.evaluate((t) => RED.nodes.filterNodes({ type: t }).map((n) => n.id), type);
  // the palette filters as the user types
  const filter = page.locator('#red-ui-palette-search input');
  await filter.click();
  await filter.pressSequentially(search);
  const item = page.locator(`#red-ui-palette-container .red-ui-palette-node[data-palette-type="${type}"]`);
  // the filter applies after a short pause in typing: wait for the node to come into view
  await page.waitForFunction((sel) => {
    const others = document.querySelectorAll('#red-ui-palette-container .red-ui-palette-node[data-palette-type="inject"]');
    const r = document.querySelector(sel).getBoundingClientRect();
    return [...others].every((e) => e.offsetParent === null) && r.height > 0 && r.bottom < window.innerHeight;
  }, `#red-ui-palette-container .red-ui-palette-node[data-palette-type="${type}"]`);
  const box = await item.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 30, box.y + box.height / 2, { steps: 5 });
  await page.mouse.move(x, y, { steps: 15 });
  await page.mouse.up();
  const handle = await page.waitForFunction(
    ({ t, known }) => {
      const added = RED.nodes.filterNodes({ type: t }).filter((n) => !known.includes(n.id));
      return added.length === 1 && added[0].id;
    },
    { t: type, known: before },
  );
  const id = await handle.jsonValue();
  await page.locator(nodeSel(id)).waitFor({ state: 'visible' });
  await filter.fill('');
  await filter.press('Escape');
  return id;
}

/**
 * Shows a sidebar tab the way a user does: its icon button, or, when the sidebar is too
 * narrow for all icons, the tab menu (the caret at the end of the icons).
 */
async function openSidebarTab(page, id) {
  const button = page.locator(`#red-ui-tab-${id}-link-button`);
  if (await button.isVisible()) {
    await button.click();
  } else {
    await page.click('#red-ui-sidebar .red-ui-tab-link-button-menu');
    await page.click(`#red-ui-tabs-menu-option-${id}`);
  }
  await page.locator(`#red-ui-sidebar-tabs li#red-ui-tab-${id}.active`).waitFor({ state: 'attached' });
}

/** Drags a wire from the output port of `from` to the input port of `to`. */
async function wire(page, from, to) {
  const out = await page.locator(`${nodeSel(from)} .red-ui-flow-port-output`).first().boundingBox();
  const inp = await page.locator(`${nodeSel(to)} .red-ui-flow-port-input`).first().boundingBox();
  await page.mouse.move(out.x + out.width / 2, out.y + out.height / 2);
  await page.mouse.down();
  await page.mouse.move(inp.x + inp.width / 2, inp.y + inp.height / 2, { steps: 10 });
  await page.mouse.up();
  await page.waitForFunction(
    ({ a, b }) => RED.nodes.filterLinks({ source: RED.nodes.node(a), target: RED.nodes.node(b) }).length === 1,
    { a: from, b: to },
  );
}

/** Closes the editor's passing notifications with a click on each, as a user does. */
async function dismissNotifications(page) {
  const open = page.locator('#red-ui-notifications .red-ui-notification:visible');
  for (let i = 0; i < 10 && (await open.count()) > 0; i++) {
    const one = await open.first().elementHandle();
    // beside the text and the buttons: a click there closes a notification that is not fixed
    await one.click({ position: { x: 4, y: 4 } }).catch(() => {}); // it may have closed by itself
    await one.waitForElementState('hidden');
  }
}

/**
 * Clicks Deploy and resolves when the runtime accepted the flows; confirms the editor's
 * warning dialog if one comes up.
 */
async function deploy(page) {
  const accepted = page.waitForResponse((r) => r.request().method() === 'POST' && /\/flows$/.test(new URL(r.url()).pathname));
  await page.click('#red-ui-header-button-deploy');
  const confirm = page.locator('#red-ui-deploy-dialog-confirm-deploy-deploy');
  // No dialog: the race is decided by the answer (a timeout here just waits for it).
  const dialog = confirm.waitFor({ state: 'visible' }).then(() => null, () => accepted);
  const res = await Promise.race([accepted, dialog]);
  if (res === null) {
    await confirm.click();
    return checkDeploy(await accepted);
  }
  return checkDeploy(res);
}

function checkDeploy(res) {
  if (res.status() !== 200) throw new Error(`deploy answered ${res.status()}`);
  return res;
}

module.exports = { CHROMIUM, SCREENSHOTS, VIEWPORT, launchBrowser, screenshotter, docImage, nodeSel, dragFromPalette, openSidebarTab, wire, deploy, dismissNotifications };
