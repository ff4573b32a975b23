'use strict';
// Test certificates made at test time with the openssl command line: a CA,
// another CA (that the gateway's certificate does not chain to), gateway
// certificates (one for the name gw.test and 127.0.0.1, one for the name
// only) and a client certificate. Returns null when openssl is missing.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20000 });
}

function makeCerts() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore', timeout: 5000 });
  } catch (_) {
    return null;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-certs-'));
  const key = (name) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  const ca = (name) => {
    key(name);
    openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-days', '2',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-out', `${name}.pem`], dir);
  };
  const leaf = (name, cn, ext) => {
    key(name);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
  };
  ca('ca');
  ca('other-ca');
  leaf('server', 'gw.test', 'subjectAltName=DNS:gw.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('named', 'gw.test', 'subjectAltName=DNS:gw.test\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'worker-1', 'extendedKeyUsage=clientAuth\n');
  const f = (n) => path.join(dir, n);
  return {
    dir,
    ca: f('ca.pem'),
    otherCa: f('other-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    namedCert: f('named.pem'),
    namedKey: f('named.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    read: (n) => fs.readFileSync(n),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

module.exports = { makeCerts };
