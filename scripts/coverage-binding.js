#!/usr/bin/env node
/**
 * `npm run coverage:binding`: line coverage of the napi binding (crates/dbc-node), which
 * only JavaScript exercises, so `npm test`'s cargo llvm-cov run (crates/dbc-core's own
 * tests) cannot see it. Not part of `npm test`: it builds the addon a second time,
 * instrumented (a debug build, several minutes), and runs the JS unit suite on it.
 *
 *  1. `cargo llvm-cov show-env` gives the instrumentation flags and the profile path;
 *  2. the addon is built with them (`napi build`, debug) into native/ — the addon that was
 *     there is kept aside (target/addon-kept/) and put back at the end;
 *  3. the JS unit suite (tests/unit/) runs on it, writing .profraw files;
 *  4. llvm-profdata merges them and llvm-cov reads them against the addon (llvm-tools'
 *     own tools: `cargo llvm-cov report` only looks for test binaries): crates/dbc-node/src
 *     (and, as a by-product, the lines of crates/dbc-core/src the JS unit suite reaches).
 *     Written to coverage/binding.json and printed.
 * Needs cargo-llvm-cov and llvm-tools-preview (scripts/dev-setup.js installs them).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const say = (m) => process.stdout.write(`[coverage:binding] ${m}\n`);
const run = (cmd, args, env) => {
  say(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status})`);
};

/** The variables of `cargo llvm-cov show-env --sh` (lines `export K="v"`). */
function llvmCovEnv() {
  const r = spawnSync('cargo', ['llvm-cov', 'show-env', '--sh'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cargo llvm-cov show-env failed: ${r.stderr} (run scripts/dev-setup.js)`);
  const env = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^export ([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2];
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
    env[m[1]] = v;
  }
  return env;
}

// the addon(s) in native/, kept aside in target/ (git-ignored) while the instrumented one runs
const addons = fs.readdirSync(path.join(root, 'native')).filter((f) => f.endsWith('.node'));
const keptDir = path.join(root, 'target', 'addon-kept');
const out = path.join(root, 'coverage', 'binding.json');
fs.mkdirSync(path.dirname(out), { recursive: true });

const env = llvmCovEnv();
// `-- --report-only`: read the profiles of the last run again (no build, no tests)
if (!process.argv.includes('--report-only')) {
  run('cargo', ['llvm-cov', 'clean', '--workspace'], env);
  fs.mkdirSync(keptDir, { recursive: true });
  for (const f of addons) fs.renameSync(path.join(root, 'native', f), path.join(keptDir, f));
  try {
    run(path.join(root, 'node_modules', '.bin', 'napi'), ['build', '--platform', '--manifest-path', 'crates/dbc-node/Cargo.toml', '--output-dir', 'native', '--js', 'index.js', '--dts', 'index.d.ts'], env);
    const unit = fs.readdirSync(path.join(root, 'tests', 'unit')).filter((f) => f.endsWith('.test.js')).sort().map((f) => `tests/unit/${f}`);
    run(process.execPath, ['--test', ...unit], env);
  } finally {
    for (const f of addons) fs.renameSync(path.join(keptDir, f), path.join(root, 'native', f));
  }
}
// `cargo llvm-cov report` looks for test binaries, not for the addon napi built: the
// profiles are merged and read against the addon with llvm-tools' own llvm-profdata and
// llvm-cov (from llvm-tools-preview)
const sysroot = spawnSync('rustc', ['--print', 'sysroot'], { encoding: 'utf8' }).stdout.trim();
const host = /host: (\S+)/.exec(spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout)[1];
const bin = (tool) => path.join(sysroot, 'lib', 'rustlib', host, 'bin', tool);
const find = (dir, name) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
  const p = path.join(dir, e.name);
  if (e.isDirectory()) return e.name === 'deps' || e.name === 'build' || e.name === 'incremental' ? [] : find(p, name);
  return e.name === name ? [p] : [];
});
const so = find(path.join(root, 'target'), 'libdbc_node.so').sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
const profileDir = path.dirname(env.LLVM_PROFILE_FILE);
const profraw = fs.readdirSync(profileDir).filter((f) => f.endsWith('.profraw')).map((f) => path.join(profileDir, f));
const profdata = path.join(profileDir, 'binding.profdata');
run(bin('llvm-profdata'), ['merge', '-sparse', ...profraw, '-o', profdata]);
const ignore = ['--ignore-filename-regex', '(\\.cargo/registry|/rustc/)'];
run(bin('llvm-cov'), ['report', '--instr-profile', profdata, so, ...ignore]);
const exported = spawnSync(bin('llvm-cov'), ['export', '-summary-only', '--instr-profile', profdata, so, ...ignore], { encoding: 'utf8', maxBuffer: 1 << 28 });
if (exported.status !== 0) throw new Error(`llvm-cov export failed: ${exported.stderr}`);
fs.writeFileSync(out, exported.stdout);
const files = JSON.parse(exported.stdout).data[0].files;
const lines = (re) => files.filter((f) => re.test(f.filename)).reduce((a, f) => [a[0] + f.summary.lines.covered, a[1] + f.summary.lines.count], [0, 0]);
for (const [label, re] of [['crates/dbc-node/src', /crates\/dbc-node\/src\//], ['crates/dbc-core/src (reached from JS)', /crates\/dbc-core\/src\//]]) {
  const [covered, count] = lines(re);
  say(`${label}: ${covered} of ${count} lines, ${count ? ((100 * covered) / count).toFixed(2) : '0'} %`);
}
