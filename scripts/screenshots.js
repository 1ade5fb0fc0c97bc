#!/usr/bin/env node
/**
 * `npm run docs:screenshots`: regenerates the editor screenshots in docs/images/ by
 * running the browser tests with DBC_SCREENSHOTS=docs/images; each test calls
 * `docImage(page, name)` (tests/support/browser.js) where its picture belongs. Needs
 * what those tests need: Chromium, PostgreSQL and MariaDB. Extra arguments name other
 * test files that call docImage (default: every tests/integration/*.test.js that does).
 * Afterwards it lists the images no page of the docs references.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const images = path.join(root, 'docs', 'images');
const testDir = path.join(root, 'tests', 'integration');

const files = process.argv.slice(2).length > 0
  ? process.argv.slice(2)
  : fs.readdirSync(testDir).filter((f) => f.endsWith('.test.js') && fs.readFileSync(path.join(testDir, f), 'utf8').includes('docImage(')).map((f) => path.join('tests', 'integration', f));

console.log(`screenshots into docs/images/ from: ${files.join(', ')}`);
const run = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, DBC_SCREENSHOTS: images },
});
if (run.status !== 0) {
  console.error('a browser test failed: the images it did not reach are unchanged');
  process.exit(run.status || 1);
}

// every picture should be shown somewhere
const docs = [path.join(root, 'README.md'), ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join(root, 'docs', f))];
const text = docs.map((f) => fs.readFileSync(f, 'utf8')).join('\n');
const unused = fs.readdirSync(images).filter((f) => !text.includes(`images/${f}`));
if (unused.length > 0) console.log(`not referenced by README.md or docs/*.md: ${unused.join(', ')}`);
