#!/usr/bin/env node
/**
 * Layout lint for the Rust core (docs/ARCHITECTURE.md): the rules that keep each dialect
 * readable in one place. Run by `npm test`'s lint step; exits 1 and names every breach.
 *
 *  1. Provider branches (`Provider::Postgres|Mariadb|Sqlite`, `provider ==`/`!=`) and SQL
 *     text (`SELECT … FROM`, `INSERT INTO`, `UPDATE … SET`, `DELETE FROM`, `CREATE TABLE`)
 *     appear only under crates/dbc-core/src/store/, src/db/ and src/migrate.rs, except in
 *     the places EXCEPTIONS names with the reason.
 *  2. No import cycle between the core's top-level modules (`use crate::a` in b and
 *     `use crate::b` in a, directly or round a longer loop).
 *  3. A source file over 600 lines says why in its `//!` header (a line with "Long").
 *  4. No JS file under nodes/ holds its own list of operation names (an array literal of
 *     three or more of them): the list comes from the addon (`operations()`).
 *
 * Usage: node scripts/lint-layout.js [--verbose]
 */
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const src = path.join(root, 'crates', 'dbc-core', 'src');
const verbose = process.argv.includes('--verbose');

/** Where dialect code may live (paths relative to crates/dbc-core/src). */
const DIALECT_HOMES = [/^store\//, /^db\//, /^migrate\.rs$/];
/**
 * Known exceptions: file → what may match there and why. Each is the boundary where a
 * provider's *name* is parsed or shown, not dialect behaviour.
 */
const EXCEPTIONS = {
  'error.rs': { pattern: /Provider::(Postgres|Mariadb|Sqlite)\s*=>\s*"/, why: 'Provider::as_str/parse: the enum and its names live with the error type that carries them' },
  'config.rs': { pattern: /Provider::(Postgres|Mariadb|Sqlite)\s*=>\s*"|"\w+"(\s*\|\s*"\w+")*\s*=>\s*(Ok\()?Provider::/, why: 'parsing the provider named in the user\'s config' },
};

const PROVIDER_BRANCH = /Provider::(Postgres|Mariadb|Sqlite)\b|\bprovider\s*[!=]=/;
const SQL_TEXT = /"[^"\n]*\b(SELECT\b[^"\n]*\bFROM|INSERT\s+INTO|UPDATE\s+\{?[\w{}]+\}?\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b/;

function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** Lines of a Rust file outside `#[cfg(test)]` modules and comments. */
function codeLines(text) {
  const lines = text.split('\n');
  const out = [];
  let testDepth = null;
  let depth = 0;
  let pendingTest = false;
  lines.forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '');
    if (/#\[cfg\(test\)\]/.test(line)) pendingTest = true;
    const opens = (code.match(/\{/g) || []).length;
    const closes = (code.match(/\}/g) || []).length;
    if (pendingTest && opens > 0 && testDepth === null) {
      testDepth = depth;
      pendingTest = false;
    }
    if (testDepth === null) out.push([i + 1, code]);
    depth += opens - closes;
    if (testDepth !== null && depth <= testDepth) testDepth = null;
  });
  return out;
}

const problems = [];
const rsFiles = walk(src).filter((f) => f.endsWith('.rs'));

// 1. dialect code only in its homes
for (const file of rsFiles) {
  const rel = path.relative(src, file).split(path.sep).join('/');
  if (DIALECT_HOMES.some((re) => re.test(rel))) continue;
  const ex = EXCEPTIONS[rel];
  for (const [n, code] of codeLines(fs.readFileSync(file, 'utf8'))) {
    const hit = PROVIDER_BRANCH.test(code) ? 'provider branch' : SQL_TEXT.test(code) ? 'SQL text' : null;
    if (!hit) continue;
    if (ex && ex.pattern.test(code)) {
      if (verbose) console.log(`allowed ${rel}:${n} (${ex.why}): ${code.trim()}`);
      continue;
    }
    problems.push(`${hit} outside store/ and db/: crates/dbc-core/src/${rel}:${n}: ${code.trim()}`);
  }
}

// 2. import cycles between top-level modules
const topOf = (file) => path.relative(src, file).split(path.sep)[0].replace(/\.rs$/, '');
const graph = new Map();
for (const file of rsFiles) {
  const from = topOf(file);
  if (from === 'lib') continue;
  const deps = graph.get(from) || new Set();
  for (const [, code] of codeLines(fs.readFileSync(file, 'utf8'))) {
    for (const m of code.matchAll(/\bcrate::(\w+)/g)) if (m[1] !== from) deps.add(m[1]);
    const group = code.match(/\buse\s+crate::\{([^}]*)/);
    if (group) for (const m of group[1].matchAll(/(?:^|,)\s*(\w+)/g)) if (m[1] !== from) deps.add(m[1]);
  }
  graph.set(from, deps);
}
// the crate root re-exports (`crate::Provider`, `crate::Result`) name items, not modules
for (const deps of graph.values()) for (const d of [...deps]) if (!graph.has(d)) deps.delete(d);
const seen = new Set();
function cycleFrom(start) {
  const stack = [[start, [start]]];
  while (stack.length) {
    const [node, trail] = stack.pop();
    for (const next of graph.get(node) || []) {
      if (next === start) return [...trail, start];
      if (!trail.includes(next)) stack.push([next, [...trail, next]]);
    }
  }
  return null;
}
for (const m of graph.keys()) {
  const c = cycleFrom(m);
  if (c) {
    const key = [...c.slice(0, -1)].sort().join(',');
    if (!seen.has(key)) {
      seen.add(key);
      problems.push(`import cycle: ${c.join(' → ')}`);
    }
  }
}
if (verbose) for (const [m, deps] of [...graph].sort()) console.log(`${m} → ${[...deps].sort().join(', ')}`);

// 3. long files say why
for (const file of walk(path.join(root, 'crates')).filter((f) => f.endsWith('.rs') && f.includes(`${path.sep}src${path.sep}`))) {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n').length;
  if (lines <= 600) continue;
  const header = text.split('\n').filter((l) => l.startsWith('//!')).join('\n');
  if (!/\bLong\b/.test(header)) problems.push(`${path.relative(root, file)} has ${lines} lines and its //! header does not say why (a line with "Long")`);
}

// 4. no hand-kept operation lists in the nodes
const OPS = ['insertTask', 'claimTasks', 'updateTaskStatus', 'requeueFailedTask', 'getTask', 'listTasks', 'deleteTask',
  'createWorkflow', 'getWorkflowProgress', 'executeTransaction', 'query'];
for (const file of walk(path.join(root, 'nodes')).filter((f) => f.endsWith('.js'))) {
  const text = fs.readFileSync(file, 'utf8');
  for (const m of text.matchAll(/\[([^\]]*)\]/gs)) {
    const names = [...m[1].matchAll(/['"](\w+)['"]/g)].map((x) => x[1]).filter((x) => OPS.includes(x));
    if (names.length >= 3) {
      const line = text.slice(0, m.index).split('\n').length;
      problems.push(`${path.relative(root, file)}:${line}: a hand-kept list of operation names (${names.join(', ')}); read operations() from the addon`);
    }
  }
}

if (problems.length) {
  console.error(`layout lint: ${problems.length} problem(s)\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`layout lint: ${rsFiles.length} core files, ${graph.size} modules, no dialect code outside store/ db/ migrate.rs, no import cycle`);
