/**
 * A private PostgreSQL server for one test: initdb into a temp dir (run as the
 * `postgres` user, since initdb and postgres refuse to run as root), trust auth on
 * 127.0.0.1 only (no Unix socket), its own port, a database `test`, fsync left on,
 * the server log in `<dir>/postgres.log`. Drills can SIGKILL it and start it again
 * on the same data dir and port. Everything is removed on stop() and on process exit.
 *
 *   const pg = await startPrivatePostgres({ ssl: { certFile, keyFile, caFile } });
 *   pg.url            // postgres://postgres@127.0.0.1:<port>/test
 *   await pg.kill();  // SIGKILL the postmaster (and then its orphaned backends)
 *   await pg.start(); // crash recovery, same data dir and port
 *   await pg.stop();  // fast shutdown, dir removed
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const { execFile, execFileSync } = require('child_process');
const { promisify } = require('util');

const run = promisify(execFile);
const PG_BIN = process.env.DBC_PG_BIN || '/usr/lib/postgresql/15/bin';
const alive = new Set();

function asPostgres(cmd, args, opts = {}) {
  return run('runuser', ['-u', 'postgres', '--', path.join(PG_BIN, cmd), ...args], { maxBuffer: 16 << 20, ...opts });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** Resolves true once a TCP connect to the port is refused (server gone). */
function portClosed(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Pids whose parent is `ppid` (the postmaster's backends and helpers). */
function childrenOf(ppid) {
  const out = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
      const ppidField = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
      if (Number(ppidField) === ppid) out.push(Number(name));
    } catch { /* process went away */ }
  }
  return out;
}

/** True while `pid` runs (a zombie waiting for its parent to reap it counts as dead). */
function isAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function quoteConf(value) {
  return `'${String(value).replace(/'/g, "''")}'`;
}

/**
 * @param {{port?: number, ssl?: {certFile: string, keyFile: string, caFile?: string}, settings?: object}} [opts]
 *   `settings`: extra postgresql.conf entries, e.g. `{ max_connections: 50 }`.
 */
async function startPrivatePostgres(opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-pg-'));
  fs.chmodSync(dir, 0o700);
  execFileSync('chown', ['postgres:postgres', dir]);
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const port = opts.port || (await freePort());
  const state = { dir, stopped: false };
  alive.add(state);

  try {
    await asPostgres('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C']);
    const conf = {
      listen_addresses: '127.0.0.1',
      port,
      unix_socket_directories: '',
      fsync: 'on',
      max_connections: 100,
      logging_collector: 'off',
      ...(opts.ssl ? {
        ssl: 'on',
        ssl_cert_file: opts.ssl.certFile,
        ssl_key_file: opts.ssl.keyFile,
        ...(opts.ssl.caFile ? { ssl_ca_file: opts.ssl.caFile } : {}),
      } : {}),
      ...(opts.settings || {}),
    };
    const lines = Object.entries(conf).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : quoteConf(v)}`);
    fs.appendFileSync(path.join(dataDir, 'postgresql.conf'), `\n# private test server\n${lines.join('\n')}\n`);
    // Only TCP from 127.0.0.1, trusted; `host` admits both plain and TLS sessions.
    fs.writeFileSync(path.join(dataDir, 'pg_hba.conf'), 'host all all 127.0.0.1/32 trust\n');
    execFileSync('chown', ['postgres:postgres', path.join(dataDir, 'pg_hba.conf')]);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    alive.delete(state);
    throw err;
  }

  const pidFile = path.join(dataDir, 'postmaster.pid');
  let orphans = [];

  const server = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/test`,
    dataDir,
    dir,
    logFile,
    /** The postmaster's pid (null while it is not running). */
    pid() {
      try { return Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]) || null; } catch { return null; }
    },
    /** The server log so far. */
    log() {
      try { return fs.readFileSync(logFile, 'utf8'); } catch { return ''; }
    },
    /** Runs SQL with psql; resolves its unaligned, tuples-only output. */
    async psql(sql, database = 'test') {
      const { stdout } = await run(path.join(PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', database, '-v', 'ON_ERROR_STOP=1', '-XAtq', '-c', sql]);
      return stdout.trim();
    },
    /** Starts (again) on the same data dir and port; resolves when it accepts connections. */
    async start() {
      // Backends orphaned by a SIGKILL still hold the shared memory; the new postmaster
      // refuses to start until they are gone (they notice the postmaster's death quickly).
      const until = Date.now() + 10000;
      while (orphans.some(isAlive) && Date.now() < until) await sleep(50);
      for (const pid of orphans) if (isAlive(pid)) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      orphans = [];
      // A SIGKILLed postmaster may linger as a zombie (this machine's init reaps late), and
      // postgres takes any existing pid for a running server: drop the stale lock file.
      const stale = server.pid();
      if (stale && !isAlive(stale)) fs.rmSync(pidFile, { force: true });
      try {
        await asPostgres('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '120', 'start']);
      } catch (err) {
        throw new Error(`${err.message}\n--- server log (tail) ---\n${server.log().split('\n').slice(-15).join('\n')}`);
      }
      await run(path.join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-t', '30']);
    },
    /**
     * SIGKILLs the postmaster, then (unless `postmasterOnly`) its backends too, so the
     * server is gone at once like after an OOM kill. Resolves when the port refuses connections.
     */
    async kill({ postmasterOnly = false } = {}) {
      const pid = server.pid();
      if (!pid || !isAlive(pid)) return;
      const children = childrenOf(pid);
      process.kill(pid, 'SIGKILL');
      if (!postmasterOnly) for (const c of children) try { process.kill(c, 'SIGKILL'); } catch { /* gone */ }
      orphans = children;
      const until = Date.now() + 10000;
      while (!(await portClosed(port)) && Date.now() < until) await sleep(20);
      // the port closes while the process is still being torn down: wait until it is dead
      while (isAlive(pid) && Date.now() < until) await sleep(10);
    },
    /** Fast shutdown and removal of the temp dir. Safe to call twice. */
    async stop() {
      if (state.stopped) return;
      state.stopped = true;
      alive.delete(state);
      const pid = server.pid();
      if (pid && isAlive(pid)) {
        try {
          await asPostgres('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '30', 'stop']);
        } catch {
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  state.server = server;

  try {
    await server.start();
    await server.psql('CREATE DATABASE test', 'postgres');
  } catch (err) {
    const log = server.log();
    await server.stop();
    throw new Error(`private PostgreSQL did not start: ${err.message}\n${log}`);
  }
  return server;
}

// Synchronous clean-up when the test process exits without calling stop().
process.on('exit', () => {
  for (const state of alive) {
    const pid = state.server && state.server.pid();
    if (pid && isAlive(pid)) {
      for (const c of childrenOf(pid)) try { process.kill(c, 'SIGKILL'); } catch { /* gone */ }
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    try { fs.rmSync(state.dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
});

module.exports = { startPrivatePostgres, isAlive, PG_BIN };
