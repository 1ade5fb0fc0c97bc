#!/usr/bin/env node
/**
 * `npm run prebuilt`: the per-platform npm package for THIS machine's platform, packed.
 *
 * 1. makes sure native/dbc.<platform>.node is built (scripts/install.js);
 * 2. `napi artifacts` copies it into npm/<platform>/ (the package dirs made by
 *    `napi create-npm-dirs`, committed), with a napi config naming only this platform;
 * 3. `npm pack` of npm/<platform> and of this package into dist/ (or --out DIR).
 * Prints the two tarballs' paths as JSON on the last line. In a release, the same
 * `napi artifacts` step collects the binaries every CI runner built (docs/RELEASING.md).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { triple } = require('./install');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const outArg = process.argv.indexOf('--out');
const out = path.resolve(outArg > 0 ? process.argv[outArg + 1] : path.join(root, 'dist'));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status})\n${r.stdout}`);
  return r.stdout;
}

/** napi's platform name of a Rust target triple, as in npm/<platform>. */
function napiPlatform(triple) {
  const [arch, , os, abi] = triple.split('-');
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[arch] || arch;
  if (os === 'darwin') return `darwin-${cpu}`;
  if (os === 'windows') return `win32-${cpu}-${abi}`;
  return `${os}-${cpu}-${abi}`;
}

/** npm pack of `dir` into `out`; returns the tarball's path. */
function pack(dir) {
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', out, dir]));
  return path.join(out, info.filename);
}

function main() {
  const platform = triple();
  const pkgDir = path.join(root, 'npm', platform);
  if (!fs.existsSync(path.join(pkgDir, 'package.json'))) throw new Error(`no npm/${platform}: not a release target (package.json napi.targets)`);
  run(process.execPath, ['scripts/install.js'], { stdio: 'inherit' });
  // `napi artifacts` wants every configured target; give it a config naming this one only
  const work = path.join(root, 'dist', 'napi');
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(path.join(work, 'artifacts'), { recursive: true });
  const target = pkg.napi.targets.find((t) => napiPlatform(t) === platform);
  fs.writeFileSync(path.join(work, 'napi.json'), JSON.stringify({ binaryName: pkg.napi.binaryName, targets: [target] }));
  fs.copyFileSync(path.join(root, 'native', `dbc.${platform}.node`), path.join(work, 'artifacts', `dbc.${platform}.node`));
  const cli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json', { paths: [root] })), 'dist', 'cli.js');
  run(process.execPath, [cli, 'artifacts', '-c', path.relative(root, path.join(work, 'napi.json')), '--output-dir', path.relative(root, path.join(work, 'artifacts')), '--npm-dir', 'npm'], { stdio: 'inherit' });
  // napi 3.10 also leaves a copy next to package.json (its "root entry"); this package loads from native/
  fs.rmSync(path.join(root, `dbc.${platform}.node`), { force: true });
  const binary = path.join(pkgDir, `dbc.${platform}.node`);
  if (!fs.existsSync(binary)) throw new Error(`napi artifacts did not copy ${path.basename(binary)} into npm/${platform}`);
  fs.mkdirSync(out, { recursive: true });
  const result = { main: pack('.'), platform: pack(`./npm/${platform}`) };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`[prebuilt] ${err.message}\n`);
  process.exit(1);
}
