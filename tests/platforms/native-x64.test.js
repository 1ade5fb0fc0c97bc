/**
 * linux-x64-gnu as a user installs it, natively with this machine's Node: the packed
 * main package plus the prebuilt platform package into a fresh Node-RED user dir with
 * no Rust on PATH, then Node-RED inserts a task on SQLite and reads it back.
 */
'use strict';

const test = require('node:test');
const { only, installAndRunFirstTask } = require('./support');

const TARGET = 'linux-x64-gnu';

test(`${TARGET}: prebuilt install without Rust, then a task inserted and read back on SQLite through Node-RED (native)`, only(TARGET), (t) => installAndRunFirstTask(t, TARGET));
