/**
 * The glibc baseline of the gnu binaries: each links no GLIBC_ symbol version above
 * 2.28 (Debian 10, Ubuntu 20.04, Raspberry Pi OS Buster and newer load it), is built
 * for its target's machine, and needs only glibc's own libraries and libgcc_s.
 */
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { TARGETS, only, extractBinary, elf, record } = require('./support');

const BASELINE = '2.28';
const ALLOWED = /^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libgcc_s\.so\.1|ld-linux[\w.-]*\.so\.\d)$/;

for (const target of Object.keys(TARGETS).filter((t) => TARGETS[t].libc === 'gnu')) {
  test(`${target}: highest GLIBC_ symbol version <= ${BASELINE}, right ELF machine, only glibc libraries needed`, only(target), (t) => {
    const file = extractBinary(target);
    try {
      const e = elf(file);
      t.diagnostic(`${target}: ${e.machine}, highest GLIBC_${e.glibcMax}, NEEDED ${e.needed.join(' ')}`);
      record(target, { glibcMax: e.glibcMax });
      assert.equal(e.machine, TARGETS[target].machine);
      assert.equal(e.type, 'DYN', 'a shared object');
      assert.ok(e.glibcMax, 'it links glibc (some GLIBC_ version)');
      assert.ok(e.atMost(e.glibcMax, BASELINE), `needs GLIBC_${e.glibcMax} (> ${BASELINE}); all: ${e.glibc.join(' ')}`);
      assert.deepEqual(e.needed.filter((n) => !ALLOWED.test(n)), [], 'libraries beyond glibc and libgcc_s');
    } finally {
      fs.rmSync(path.dirname(path.dirname(file)), { recursive: true, force: true });
    }
  });
}
