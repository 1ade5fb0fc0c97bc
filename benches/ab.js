#!/usr/bin/env node
/**
 * A/B: this checkout against an earlier commit, in one run, interleaved.
 *
 * Two builds of this package cannot share one Node-RED process (both register the same
 * node types), so each repetition runs `benches/run.js --reps 1` once in each checkout,
 * alternating which goes first (A B, B A, A B …) so drift in the machine's load falls on
 * both alike. The baseline is a git worktree of `--baseline` in a temp dir, with this
 * checkout's node_modules hard-linked in and its addon built in release mode there
 * (or copied from `--baseline-addon FILE`, a dbc.<platform>.node built from that commit).
 *
 * Usage: node benches/ab.js --baseline <commit> [--baseline-addon FILE] [--reps 3]
 *        [--only 'node-red (postgres)'] [--workloads single,bulk,drain] [--quick]
 * Writes benches/results/<stamp>-ab.{json,md} and prints the table.
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');

function args() {
  const a = process.argv.slice(2);
  const get = (k) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const baseline = get('--baseline');
  if (!baseline) throw new Error('--baseline <commit> is required');
  return {
    baseline,
    addon: get('--baseline-addon'),
    reps: Number(get('--reps')) || 3,
    only: get('--only') || 'node-red (postgres)',
    workloads: get('--workloads') || 'single,bulk,drain',
    quick: a.includes('--quick'),
  };
}

const git = (...xs) => execFileSync('git', xs, { cwd: root, encoding: 'utf8' }).trim();

/** A worktree of `ref` with node_modules linked and its addon in place; removed at exit. */
function baselineTree(ref, addon) {
  const commit = git('rev-parse', '--short', ref);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dbc-ab-${commit}-`));
  git('worktree', 'add', '--detach', dir, commit);
  process.on('exit', () => {
    try {
      git('worktree', 'remove', '--force', dir);
    } catch (e) {
      console.error(`# could not remove ${dir}: ${e.message}`);
    }
  });
  for (const nm of ['node_modules', 'benches/node_modules']) {
    if (fs.existsSync(path.join(root, nm))) execFileSync('cp', ['-al', path.join(root, nm), path.join(dir, nm)]);
  }
  const binary = fs.readdirSync(path.join(root, 'native')).find((f) => f.endsWith('.node'));
  if (addon) fs.copyFileSync(addon, path.join(dir, 'native', binary));
  else {
    console.log(`# building the addon of ${commit} (release) in ${dir}`);
    execFileSync('npm', ['run', 'build'], { cwd: dir, stdio: 'inherit' });
  }
  return { label: `baseline ${commit}`, dir, commit };
}

function runOnce(tree, opts, rep) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-ab-out-'));
  const argv = [path.join(tree.dir, 'benches', 'run.js'), '--reps', '1', '--only', opts.only, '--workloads', opts.workloads,
    '--no-newest', '--no-scale', '--out', out, ...(opts.quick ? ['--quick'] : [])];
  console.log(`# rep ${rep + 1}/${opts.reps}: ${tree.label}`);
  execFileSync(process.execPath, argv, { cwd: tree.dir, stdio: ['ignore', 'inherit', 'inherit'] });
  const file = fs.readdirSync(out).find((f) => f.endsWith('.json'));
  const r = JSON.parse(fs.readFileSync(path.join(out, file), 'utf8'));
  fs.rmSync(out, { recursive: true, force: true });
  if (r.failures && r.failures.length) throw new Error(`${tree.label}: ${JSON.stringify(r.failures)}`);
  return r;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function main() {
  const opts = args();
  const current = { label: `current ${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? '+' : ''}`, dir: root };
  const base = baselineTree(opts.baseline, opts.addon);
  const trees = [base, current];
  const samples = new Map(trees.map((t) => [t.label, {}]));
  const load = [os.loadavg()[0]];
  for (let rep = 0; rep < opts.reps; rep++) {
    const order = rep % 2 ? [...trees].reverse() : trees;
    for (const t of order) {
      const r = runOnce(t, opts, rep);
      for (const [w, bySystem] of Object.entries(r.throughput || {})) {
        for (const [system, s] of Object.entries(bySystem)) {
          const key = `${w}\t${system}`;
          (samples.get(t.label)[key] = samples.get(t.label)[key] || []).push(s.median);
        }
      }
    }
    load.push(os.loadavg()[0]);
  }
  const rows = Object.keys(samples.get(base.label)).map((key) => {
    const a = samples.get(base.label)[key];
    const b = samples.get(current.label)[key] || [];
    const [workload, system] = key.split('\t');
    return { workload, system, baseline: a, current: b, ratio: b.length ? median(b) / median(a) : null };
  });
  const fmt = (xs) => `${Math.round(median(xs))} (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;
  const md = [
    `A/B, \`node benches/ab.js ${process.argv.slice(2).join(' ')}\`, ${new Date().toISOString().slice(0, 16)} UTC, ${os.cpus().length} cores, 1-min load per rep: ${load.map((x) => x.toFixed(2)).join(', ')}`,
    '',
    `| workload | system | ${base.label} tasks/s, median (min–max) | ${current.label} | ratio |`,
    '|---|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.workload} | ${r.system} | ${fmt(r.baseline)} | ${r.current.length ? fmt(r.current) : '—'} | ${r.ratio ? r.ratio.toFixed(3) : '—'} |`),
  ].join('\n');
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-');
  const outDir = path.join(root, 'benches', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(path.join(outDir, `${stamp}-ab.json`), `${JSON.stringify({ opts, trees: trees.map((t) => t.label), load, rows }, null, 2)}\n`);
  fs.writeFileSync(path.join(outDir, `${stamp}-ab.md`), `${md}\n`);
  console.log(`\n${md}\n\n# wrote benches/results/${stamp}-ab.{json,md}`);
}

main();
