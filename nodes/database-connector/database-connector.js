/**
 * database-connector.js — the manager: registers the two node types and the admin
 * routes, and wires Node-RED events to the helpers. No SQL, no business rules here.
 */
'use strict';

const helpers = require('./database-connector-helpers');

module.exports = function (RED) {
  const status = (state, provider) => {
    const s = helpers.statusFor(state, provider);
    return { ...s, text: s.text.startsWith('database-connector.') ? RED._(s.text) : s.text };
  };

  /** Config node: owns the pools, opened on first use and closed on redeploy. */
  function DatabaseConnectorConfigNode(n) {
    RED.nodes.createNode(this, n);
    const node = this;
    const users = new Set();
    let registry = null;
    let opening = null;
    let closing = false;
    let health = null;
    let asked = false; // whether anything asked for the connection (metrics do not open it)
    node.state = 'connecting';

    const setState = (state, reason) => {
      if (state === node.state) return;
      node.state = state;
      const where = registry ? registry.provider : n.provider;
      node.log(`${where}: ${state}${reason ? ` (${reason})` : ''}`);
      for (const u of users) u.status(status(state, registry && registry.provider));
    };

    /** @returns {Promise<object>} the open registry (opens it on first use) */
    node.getRegistry = () => {
      asked = true;
      if (registry) return Promise.resolve(registry);
      if (!opening) {
        let cfg;
        try {
          cfg = helpers.buildConnectorConfig(n, node.credentials, RED.settings.userDir);
        } catch (err) {
          setState('disconnected', err.message);
          return Promise.reject(err);
        }
        opening = helpers.connectToDatabase(cfg.primary.provider, cfg).then(
          (r) => {
            opening = null;
            if (closing) {
              r.close().catch(() => {});
              throw new helpers.DatabaseError('the connection was closed by a redeploy', { code: 'DBC_INTERNAL', operation: 'connect' });
            }
            registry = r;
            setState(r.state, r.stateReason);
            // the addon checks health every healthIntervalMs; mirror its state on the nodes
            health = setInterval(() => registry && setState(registry.state, registry.stateReason), cfg.healthIntervalMs);
            return r;
          },
          (err) => {
            opening = null;
            setState('disconnected', `${err.code}: ${err.message}`);
            throw err;
          },
        );
      }
      return opening;
    };

    node.register = (user) => {
      users.add(user);
      user.status(status(node.state, registry && registry.provider));
      node.getRegistry().catch(() => {}); // reported through the status; retried on next use
    };
    node.deregister = (user) => users.delete(user);
    /** @returns {boolean} true once a flow or an admin action asked for its connection */
    node.inUse = () => asked;

    node.on('close', (removed, done) => {
      closing = true;
      clearInterval(health);
      const pending = opening;
      const r = registry;
      registry = null;
      const finish = () => helpers.closeWithin(r, 10000).then(() => done(), () => done());
      if (pending) pending.then((late) => helpers.closeWithin(late, 10000), () => {}).then(finish, finish);
      else finish();
    });
  }

  RED.nodes.registerType('database-connector-config', DatabaseConnectorConfigNode, {
    credentials: {
      user: { type: 'text' },
      password: { type: 'password' },
      url: { type: 'password' },
      fallbackUser: { type: 'text' },
      fallbackPassword: { type: 'password' },
      fallbackUrl: { type: 'password' },
      // TLS material as PEM text (file paths are the sslCa/sslCert/sslKey properties)
      sslCaPem: { type: 'text' },
      sslCertPem: { type: 'text' },
      sslKeyPem: { type: 'password' },
      fallbackSslCaPem: { type: 'text' },
      fallbackSslCertPem: { type: 'text' },
      fallbackSslKeyPem: { type: 'password' },
    },
  });

  /** Operation node: maps each message to one operation on its config node's pools. */
  function DatabaseConnectorNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    const conn = RED.nodes.getNode(config.connection);
    if (!conn) {
      node.status({ fill: 'red', shape: 'ring', text: RED._('database-connector.status.disconnected') });
      node.on('input', (msg, send, done) => {
        const err = new helpers.DatabaseError('no database connection is configured for this node', { code: 'DBC_CONFIG', operation: 'input' });
        msg.error = { code: err.code, message: err.message, retryable: err.retryable };
        done(err);
      });
      return;
    }
    conn.register(node);

    if (config.operation === 'consume') {
      const consumer = new helpers.Consumer(node, conn.getRegistry, {
        ...config,
        workerId: `node-red:${node.id}:${process.pid}`,
        statusText: (count) => RED._('database-connector.status.inflight', { count }),
        pausedText: RED._('database-connector.status.queuePaused'),
      });
      consumer.start();
      node.on('close', (done) => {
        consumer.stop();
        conn.deregister(node);
        done();
      });
      return;
    }

    const closed = new AbortController(); // stops queries that stream parts (rowsPerMsg)
    node.on('input', (msg, send, done) => {
      conn
        .getRegistry()
        .then((registry) => helpers.runOperation(registry, config, msg, { emit: send, signal: closed.signal }))
        .then(
          (out) => {
            if (out) send(out); // parts were sent by emit as they arrived
            done();
          },
          (error) => {
            const err = helpers.handleDatabaseError(error, { operation: config.operation }); // as it is, unless it is no DatabaseError
            msg.error = { code: err.code, message: err.message, retryable: err.retryable };
            done(err);
          },
        );
    });

    node.on('close', (done) => {
      closed.abort();
      conn.deregister(node);
      done();
    });
  }

  RED.nodes.registerType('database-connector', DatabaseConnectorNode, {
    // the dialog shows each operation's fields from this (RED.settings in the editor)
    settings: { databaseConnectorOperations: { value: helpers.editorOperations(), exportable: true } },
  });

  helpers.registerAdminRoutes(RED);
};
