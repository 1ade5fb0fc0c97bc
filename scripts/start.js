#!/usr/bin/env node
/**
 * `npm start`: runs Node-RED (this checkout's devDependency) on 127.0.0.1:1880 (PORT overrides) with a user dir
 * inside the project (.node-red/, gitignored), this package installed by a link, and the
 * example flow deployed on the SQLite default — no database server needed.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..');
const userDir = process.env.DBC_USER_DIR || path.join(root, '.node-red');
const port = process.env.PORT || '1880';

fs.mkdirSync(path.join(userDir, 'node_modules'), { recursive: true });
const link = path.join(userDir, 'node_modules', 'node-red-contrib-database-connector');
if (!fs.existsSync(link)) fs.symlinkSync(root, link, 'dir');
fs.writeFileSync(
  path.join(userDir, 'package.json'),
  JSON.stringify({ name: 'node-red-project', private: true, dependencies: { 'node-red-contrib-database-connector': `file:${root}` } }, null, 2),
);
const settings = path.join(userDir, 'settings.js');
if (!fs.existsSync(settings)) {
  fs.writeFileSync(
    settings,
    `module.exports = {\n  uiHost: '127.0.0.1',\n  flowFile: 'flows.json',\n  credentialSecret: process.env.NODE_RED_CREDENTIAL_SECRET || 'database-connector-demo',\n  logging: { console: { level: 'info' } },\n};\n`,
  );
}
const flows = path.join(userDir, 'flows.json');
if (!fs.existsSync(flows)) fs.copyFileSync(path.join(root, 'examples', 'task-queue-basics.json'), flows);

// DBC_NODE_RED_DIR: another Node-RED install (`npm run test:nr5` runs this on Node-RED 5)
const red = require.resolve('node-red/red.js', { paths: [process.env.DBC_NODE_RED_DIR || root] });
const child = spawn(process.execPath, [red, '-u', userDir, '-s', settings, '-p', port], { stdio: 'inherit' });
const stop = (sig) => child.kill(sig);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
child.on('exit', (code) => process.exit(code === null ? 0 : code));
