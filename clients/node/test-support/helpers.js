'use strict';
// Test helpers: start the real gateway with a Node worker app, plain HTTP
// requests, and bounded waits. Every process started here is stopped by PID.
const { spawn } = require('node:child_process');
const net = require('node:net');
const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');

const ROOT = path.resolve(__dirname, '../../..');
const BUILD = path.resolve(ROOT, process.env.SLUICE_BUILD_DIR || 'build');
const GATEWAY = path.join(BUILD, 'server', 'sluice');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` (async, truthy = done) every `every` ms, at most `ms` ms. */
async function waitFor(fn, ms = 10000, every = 50, what = 'condition') {
  const until = Date.now() + ms;
  for (let i = 0; Date.now() < until && i < 10000; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(every);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Start the gateway serving `app` (a path to a worker script) and wait until
 * `workers` workers are ready. Returns {port, pid, url(p), log(), stop()}.
 */
async function startGateway(app, { workers = 1, args = [], env = {}, workerArgs = [] } = {}) {
  if (!fs.existsSync(GATEWAY)) throw new Error(`no gateway at ${GATEWAY}: build it (ninja -C build)`);
  const port = await freePort();
  const argv = ['--listen', `127.0.0.1:${port}`, '--workers', String(workers), '--access-log', 'off', ...args,
    '--', process.execPath, app, ...workerArgs];
  const proc = spawn(GATEWAY, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  let exited = null;
  const exit = new Promise((resolve) => proc.on('exit', (code, sig) => { exited = { code, sig }; resolve(exited); }));
  const g = {
    port,
    pid: proc.pid,
    proc,
    exit,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    log: () => log,
    get exited() { return exited; },
    async stop(ms = 15000) {
      if (exited) return exited;
      process.kill(proc.pid, 'SIGTERM');
      const t = setTimeout(() => { if (!exited) process.kill(proc.pid, 'SIGKILL'); }, ms);
      const r = await exit;
      clearTimeout(t);
      return r;
    },
  };
  try {
    await waitFor(() => {
      if (exited) throw new Error(`gateway exited early (${JSON.stringify(exited)}):\n${log}`);
      return (log.match(/\) ready, \d+ streams/g) || []).length >= workers;
    }, 15000, 25, 'workers to be ready');
  } catch (e) {
    await g.stop();
    throw e;
  }
  return g;
}

/** One HTTP request; resolves {status, headers, rawHeaders, body (Buffer), trailers}. */
function request(url, { method = 'GET', headers = {}, body = null, timeout = 20000, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders,
        body: Buffer.concat(chunks), trailers: res.trailers, httpVersion: res.httpVersion,
      }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    if (body !== null && typeof body.pipe === 'function') body.pipe(req);
    else req.end(body);
  });
}

/** Raw TCP exchange: send `data`, collect until the server closes or `ms` pass. */
function raw(port, data, ms = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    const t = setTimeout(() => sock.destroy(), ms);
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => { clearTimeout(t); resolve(Buffer.concat(chunks).toString('latin1')); });
    sock.write(data);
  });
}

module.exports = { ROOT, BUILD, GATEWAY, freePort, sleep, waitFor, startGateway, request, raw };
