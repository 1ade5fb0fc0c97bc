/**
 * linux-arm64-gnu (Raspberry Pi OS 64-bit, ARM servers) and linux-arm-gnueabihf
 * (Raspberry Pi OS 32-bit) as users install them, under qemu-user: the npm registry's
 * Node for that architecture runs npm (so npm picks the matching platform package) and
 * this checkout's Node-RED, with Debian's libc of that architecture as the sysroot
 * (tests/platforms/support.js). The install must use the prebuilt package with no Rust
 * on PATH, and Node-RED must insert a task on SQLite and read it back.
 */
'use strict';

const test = require('node:test');
const { only, installAndRunFirstTask } = require('./support');

for (const target of ['linux-arm64-gnu', 'linux-arm-gnueabihf']) {
  test(`${target}: prebuilt install without Rust, then a task inserted and read back on SQLite through Node-RED (qemu-user)`, only(target), (t) => installAndRunFirstTask(t, target));
}
