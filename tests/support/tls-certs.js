/**
 * Throwaway TLS material for tests, made with the `openssl` CLI into a temp dir:
 * a private CA, a server certificate signed by it (CN `localhost`, SAN DNS:localhost
 * and IP:127.0.0.1 unless `serverNames` says otherwise), a client certificate (CN
 * `postgres`), and an unrelated second CA ("wrong CA") for negative tests. Files are
 * readable by the `postgres` user; private keys are mode 0600 and owned by postgres
 * (PostgreSQL refuses a key others can read). Removed on process exit.
 *
 *   const certs = makeCerts();
 *   certs.caFile, certs.caPem, certs.certFile, certs.keyFile,
 *   certs.clientCertFile, certs.clientKeyFile, certs.wrongCaFile, certs.serverCert(['DNS:other.example'])
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const dirs = new Set();

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

function ownByPostgres(file, mode) {
  fs.chmodSync(file, mode);
  execFileSync('chown', ['postgres:postgres', file]);
}

/**
 * @param {{serverNames?: string[], days?: number}} [opts] serverNames: subjectAltName entries
 */
function makeCerts(opts = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbc-tls-'));
  dirs.add(dir);
  fs.chmodSync(dir, 0o755);
  const days = String(opts.days || 30);

  const makeCa = (name, cn) => {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', days, '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout', `${name}.key`, '-out', `${name}.crt`], dir);
    ownByPostgres(path.join(dir, `${name}.key`), 0o600);
    ownByPostgres(path.join(dir, `${name}.crt`), 0o644);
  };

  let serial = 1;
  /** Makes a leaf cert signed by the test CA; resolves {certFile, keyFile}. */
  const leaf = (name, cn, sans, usage) => {
    const ext = path.join(dir, `${name}.ext`);
    fs.writeFileSync(ext, [
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      `extendedKeyUsage=${usage}`,
      ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
    ].join('\n') + '\n');
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(serial++),
      '-days', days, '-extfile', ext, '-out', `${name}.crt`], dir);
    ownByPostgres(path.join(dir, `${name}.key`), 0o600);
    ownByPostgres(path.join(dir, `${name}.crt`), 0o644);
    return { certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) };
  };

  makeCa('ca', 'dbc test CA');
  makeCa('wrong-ca', 'dbc unrelated CA');
  const server = leaf('server', (opts.serverNames && opts.serverNames[0] || 'DNS:localhost').replace(/^\w+:/, ''),
    opts.serverNames || ['DNS:localhost', 'IP:127.0.0.1'], 'serverAuth');
  const client = leaf('client', 'postgres', [], 'clientAuth');
  let extra = 0;

  const read = (f) => fs.readFileSync(f, 'utf8');
  return {
    dir,
    caFile: path.join(dir, 'ca.crt'),
    caPem: read(path.join(dir, 'ca.crt')),
    wrongCaFile: path.join(dir, 'wrong-ca.crt'),
    wrongCaPem: read(path.join(dir, 'wrong-ca.crt')),
    certFile: server.certFile,
    keyFile: server.keyFile,
    clientCertFile: client.certFile,
    clientKeyFile: client.keyFile,
    clientCertPem: read(client.certFile),
    clientKeyPem: read(client.keyFile),
    /** Another server cert from the same CA, for other names (e.g. a hostname-mismatch test). */
    serverCert(sans) {
      extra += 1;
      return leaf(`server${extra}`, sans[0].replace(/^\w+:/, ''), sans, 'serverAuth');
    },
  };
}

process.on('exit', () => {
  for (const dir of dirs) try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
});

module.exports = { makeCerts };
