/**
 * The peers' newest majors (pg-boss 12, graphile-worker 0.18), which do not run on this
 * Node 20: each runs in a child process under the Node 22 that benches/newest installs
 * from the npm registry (benches/newest/node_modules/node). A proxy here forks
 * benches/newest/peers.js once, at open(), and forwards every method over IPC
 * (`{id, method, args}` → `{id, result}` or `{id, error}`); the figures (ms, verified,
 * detail, latency samples) are measured inside the child, as peers.js measures them.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');

const dir = path.resolve(__dirname, '..', 'newest');
const NODE = path.join(dir, 'node_modules', 'node', 'bin', 'node');
const SCRIPT = path.join(dir, 'peers.js');

/** Whether benches/newest has been installed (its Node and both peers). */
function installed() {
  return [NODE, ...['pg-boss', 'graphile-worker', 'pg'].map((p) => path.join(dir, 'node_modules', p, 'package.json'))].every((f) => fs.existsSync(f));
}

/**
 * A package's installed version under benches/newest, or before the install the exact
 * version its package.json pins (the same: the versions are pinned), so names are known
 * before anything is installed.
 */
function versionOf(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).dependencies[pkg];
  }
}

/** "12" for 12.38.0, "0.18" for 0.18.0 (a 0.x minor is its major). */
const major = (v) => (v.startsWith('0.') ? v.split('.').slice(0, 2).join('.') : v.split('.')[0]);

class NewestPeer {
  /**
   * @param {string} key the system's key in benches/newest/peers.js
   * @param {string} pkg its npm package
   */
  constructor(key, pkg) {
    this.key = key;
    this.name = `${pkg} ${major(versionOf(pkg))} (Node ${major(versionOf('node'))})`;
    this.newest = true;
    this.child = null;
    this.versions = null;
    this.pending = new Map();
    this.next = 0;
  }

  /** Forks the child under Node 22 and waits for it to say it is ready (with its versions). */
  async open() {
    if (!installed()) throw new Error('benches/newest is not installed (npm --prefix benches/newest ci)');
    // JSON messages (fork's default), not 'advanced': V8's serialization format is not
    // promised to match between Node 20 and Node 22; no flags of this process either
    const child = fork(SCRIPT, [this.key], { execPath: NODE, execArgv: [] });
    this.child = child;
    child.on('message', (m) => {
      if (m.ready) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(Object.assign(new Error(m.error.message), { childStack: m.error.stack }));
      else p.resolve(m.result);
    });
    child.on('exit', (code, signal) => {
      this.child = null;
      const err = new Error(`${this.name}: its Node 22 process exited (${signal || `code ${code}`})`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
    this.versions = await new Promise((resolve, reject) => {
      const onMessage = (m) => {
        if (!m.ready) return;
        child.off('exit', onExit);
        resolve(m.ready);
      };
      const onExit = (code) => reject(new Error(`${this.name}: its Node 22 process exited before it was ready (code ${code})`));
      child.once('exit', onExit);
      child.once('message', onMessage);
    });
    await this.call('open');
  }

  call(method, ...args) {
    if (!this.child) return Promise.reject(new Error(`${this.name}: not open`));
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, method, args });
    });
  }

  clear() { return this.call('clear'); }

  single(total, width) { return this.call('single', total, width); }

  bulk(total, per) { return this.call('bulk', total, per); }

  drain(total) { return this.call('drain', total); }

  latency(total, rate) { return this.call('latency', total, rate); }

  /** Closes the system in the child, then lets the child go (it exits on disconnect). */
  async close() {
    const child = this.child;
    if (!child) return;
    try {
      await this.call('close');
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        if (child.connected) child.disconnect();
        const timer = setTimeout(() => child.kill(), 5000);
        await exited;
        clearTimeout(timer);
      }
    }
  }
}

/** pg-boss's newest major, in its own schema (pgboss12). */
class PgBossNewest extends NewestPeer {
  constructor() {
    super('pg-boss', 'pg-boss');
  }
}

/** graphile-worker's newest major, in its own schema (graphile_worker_18). */
class GraphileNewest extends NewestPeer {
  constructor() {
    super('graphile-worker', 'graphile-worker');
  }
}

module.exports = { PgBossNewest, GraphileNewest, installed, dir };
