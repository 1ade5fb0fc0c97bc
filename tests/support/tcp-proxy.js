/**
 * A loopback TCP proxy the test controls, for partition drills:
 *   pass       forward both ways (the start)
 *   cut()      reset every connection and stop listening (connects are refused)
 *   blackhole()keep every connection open but forward nothing; new connects are
 *              accepted and then hang (what a dropped route or a firewall looks like)
 *   slow(ms)   forward each chunk after `ms` milliseconds
 *   restore()  forward again (listening on the same port)
 * upstreamPorts() gives the local ports of its connections to the target: with
 * pg_stat_activity's client_port they name the sessions that go through the proxy.
 */
'use strict';

const net = require('net');

async function startProxy(target) {
  const sockets = new Set();
  const upstreams = new Set();
  let server = null;
  let port = 0;
  let mode = 'pass';
  let delay = 0;

  const forward = (from, to) => {
    from.on('data', (chunk) => {
      if (mode === 'blackhole') return;
      if (delay > 0) setTimeout(() => { if (!to.destroyed) to.write(chunk); }, delay);
      else if (!to.destroyed) to.write(chunk);
    });
    from.on('end', () => to.end());
  };

  const listen = () => new Promise((resolve, reject) => {
    server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      upstreams.add(upstream);
      upstream.on('close', () => upstreams.delete(upstream));
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => {});
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      forward(client, upstream);
      forward(upstream, client);
    });
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      port = server.address().port;
      resolve();
    });
  });
  await listen();

  return {
    get port() { return port; },
    get mode() { return mode; },
    /** Local ports of the open connections to the target. */
    upstreamPorts() { return [...upstreams].map((s) => s.localPort).filter(Boolean); },
    /** Refuse: reset every connection and close the listener. */
    cut() {
      mode = 'cut';
      return new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        if (server.listening) server.close(() => resolve());
        else resolve();
      });
    },
    /** Silence: connections stay open, nothing passes. */
    async blackhole() {
      mode = 'blackhole';
    },
    /** Latency on every chunk. */
    async slow(ms) {
      mode = 'pass';
      delay = ms;
    },
    /** Forward again. */
    async restore() {
      const wasCut = mode === 'cut';
      mode = 'pass';
      delay = 0;
      if (wasCut) await listen();
      else {
        // connections that lived through a black hole have lost bytes: reset them
        for (const s of sockets) s.destroy();
      }
    },
    close() {
      mode = 'cut';
      return new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        if (server.listening) server.close(() => resolve());
        else resolve();
      });
    },
  };
}

/** `url` with its port pointed at the proxy. */
function viaProxy(url, proxy) {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return u.toString();
}

module.exports = { startProxy, viaProxy };
