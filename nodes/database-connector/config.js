/**
 * config.js — the addon's connector config from a config node's properties and
 * credentials (their names are saved in users' flows: never rename one): `${ENV_VAR}`
 * substitution, defaults, number checks, the SQLite file under the Node-RED user dir.
 * @module config
 */
'use strict';

const path = require('path');
const { DatabaseError } = require('./database-service');

/**
 * Replaces every `${NAME}` with the environment variable NAME (empty when unset).
 * @param {unknown} value
 * @returns {unknown} the value, with strings substituted
 */
function resolveEnv(value) {
  if (typeof value !== 'string') return value;
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (m, name) => process.env[name] ?? '');
}

/**
 * a DBC_CONFIG error of connecting
 * @private
 * @returns {DatabaseError}
 */
function configError(message) {
  return new DatabaseError(message, { code: 'DBC_CONFIG', operation: 'connect', retryable: false });
}

/**
 * Reads a numeric config property (the editor saves numbers as strings; `${VAR}` allowed).
 * @private
 * @param {object} n node config
 * @param {string} key property name
 * @param {number} fallback default when empty
 * @returns {number}
 */
function numberProp(n, key, fallback) {
  const raw = resolveEnv(n[key]);
  if (raw === undefined || raw === null || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || !Number.isInteger(v) || v < 0) {
    throw configError(`${key} must be a whole number, got ${JSON.stringify(raw)}`);
  }
  return v;
}

/**
 * One connection's settings (primary: no prefix; fallback: `fallback` + the name).
 * @private
 * @param {object} n node config
 * @param {object} creds its credentials
 * @param {string} pre property prefix, `''` or `fallback`
 * @param {string} [userDir] Node-RED user dir, for a relative SQLite file
 * @returns {object}
 */
function connection(n, creds, pre, userDir) {
  const key = (k) => (pre ? pre + k[0].toUpperCase() + k.slice(1) : k);
  const provider = resolveEnv(n[key('provider')]) || (pre ? 'mariadb' : 'sqlite');
  const out = {
    provider,
    host: resolveEnv(n[key('host')]) || undefined,
    port: n[key('port')] === '' || n[key('port')] === undefined ? undefined : numberProp(n, key('port'), undefined),
    database: resolveEnv(n[key('database')]) || undefined,
    ssl: resolveEnv(n[key('ssl')]) || undefined,
    user: resolveEnv(creds[key('user')]) || undefined,
    password: resolveEnv(creds[key('password')]) || undefined,
    url: resolveEnv(creds[key('url')]) || undefined,
  };
  // CA, client cert and key: a file path in the node's properties (sslCa, ...), or PEM
  // text in its credentials (sslCaPem, ...; the key never belongs in flows.json).
  for (const f of ['sslCa', 'sslCert', 'sslKey']) {
    out[f] = resolveEnv(n[key(f)]) || resolveEnv(creds[`${key(f)}Pem`]) || resolveEnv(creds[key(f)]) || undefined;
  }
  if (provider === 'sqlite') {
    const file = resolveEnv(n.sqliteFile) || 'database-connector.db';
    out.sqliteFile = file === ':memory:' || path.isAbsolute(file) ? file : path.join(userDir || process.cwd(), file);
  }
  return out;
}

/**
 * Builds the addon's connector config from a config node's properties and credentials.
 * @param {object} n the config node's properties (see docs/API.md)
 * @param {object} [credentials] `user`, `password`, `url`, `fallbackUser`, ...
 * @param {string} [userDir] Node-RED user dir, for a relative SQLite file
 * @returns {object} the config JSON the addon takes
 */
function buildConnectorConfig(n, credentials, userDir) {
  const creds = credentials || {};
  return {
    primary: connection(n, creds, '', userDir),
    fallback: n.fallbackEnabled === true || n.fallbackEnabled === 'true' ? connection(n, creds, 'fallback', userDir) : undefined,
    pool: {
      poolMax: numberProp(n, 'poolMax', 10),
      poolMin: numberProp(n, 'poolMin', 0),
      acquireTimeoutMs: numberProp(n, 'acquireTimeoutMs', 5000),
      idleTimeoutMs: numberProp(n, 'idleTimeoutMs', 60000),
      statementTimeoutMs: numberProp(n, 'statementTimeoutMs', 30000),
    },
    healthIntervalMs: numberProp(n, 'healthIntervalMs', 2000),
    failoverThreshold: numberProp(n, 'failoverThreshold', 3),
    failback: resolveEnv(n.failback) || 'auto',
    tablePrefix: resolveEnv(n.tablePrefix) || 'dbc_',
    autoMigrate: n.autoMigrate !== false && n.autoMigrate !== 'false',
    maxPayloadBytes: numberProp(n, 'maxPayloadBytes', 1024 * 1024),
    retryBackoffMs: numberProp(n, 'retryBackoffMs', 1000),
    retryBackoffMaxMs: numberProp(n, 'retryBackoffMaxMs', 3600000),
    retentionDays: numberProp(n, 'retentionDays', 7),
  };
}

module.exports = { resolveEnv, buildConnectorConfig };
