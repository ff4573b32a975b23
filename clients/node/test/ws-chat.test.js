'use strict';
// examples/node/ws-chat.js, an app written for the ws package, run twice
// with the same scenario: behind sluice (as a worker process, the gateway
// played by the fake gateway over a Unix socket), and with the ws package
// itself (the same file with its two setup lines switched back, driven by
// ws clients over loopback TCP). Both runs must tell the same story: joins,
// a broadcast, a client that does not answer the heartbeat terminated and
// announced as gone, the page and the path check.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const P = require('../lib/protocol');
const { FakeGateway } = require('../test-support/fake-gateway');
const { freePort, waitFor } = require('../test-support/helpers');

const F = P.FRAME;
const APP = path.resolve(__dirname, '../../../examples/node/ws-chat.js');
const NODE_MODULES = path.resolve(__dirname, '../node_modules');
const HEARTBEAT_MS = 150;

function start(file, env) {
  const child = spawn(process.execPath, [file], {
    env: { ...process.env, HEARTBEAT_MS: String(HEARTBEAT_MS), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  return {
    child, exited, log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

test('the example only differs from a ws app in its two setup lines', () => {
  const src = fs.readFileSync(APP, 'utf8').split('\n');
  const marked = src.filter((l) => /\/\/ (sluice|plain ws)$/.test(l));
  assert.equal(marked.length, 4);
  assert.equal(src.filter((l) => /\/\/ sluice$/.test(l) && !l.startsWith('//')).length, 2);
});

/** The same file, as written for ws: the plain ws lines back, the sluice ones out. */
function plainWsVersion() {
  const src = fs.readFileSync(APP, 'utf8').split('\n').map((l) => {
    if (/\/\/ plain ws$/.test(l)) return l.replace(/^\/\/ /, '');
    if (/\/\/ sluice$/.test(l)) return `// ${l}`;
    return l;
  }).join('\n');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ws-chat-'));
  const file = path.join(dir, 'ws-chat.js');
  fs.writeFileSync(file, src);
  return { dir, file };
}

test('behind sluice: joins, broadcast, heartbeat terminates the silent client, page, path check', async () => {
  const gw = new FakeGateway();
  await gw.listen();
  const app = start(APP, { SLUICE_SOCKET: gw.path });
  try {
    const hello = await gw.handshake({ websocket: true });
    assert.equal(hello.settings.websocket, true);
    const said = { 1: [], 3: [] };
    const resets = [];
    const responses = {};
    let pings = 0;
    // read the worker's frames and act as the clients would: ann (stream 1)
    // answers pings, bob (stream 3) does not
    let stop = false;
    const reader = (async () => {
      while (!stop) {
        let f;
        try { f = await gw.next(200); } catch (_) { continue; }
        if (f === null) return;
        if (f.type === F.RESPONSE) responses[f.stream] = f;
        else if (f.type === F.RESET) resets.push(f.stream);
        else if (f.type === F.MESSAGE && f.flags === 4) {
          pings++;
          if (f.stream === 1) gw.send({ type: F.MESSAGE, stream: 1, flags: 8, data: f.data });
        } else if (f.type === F.MESSAGE) said[f.stream].push(f.data.toString());
        else if (f.type === F.BODY) responses[f.stream].data = Buffer.concat([responses[f.stream].data || Buffer.alloc(0), f.data]);
      }
    })();
    const hs = ['sec-websocket-version', '13', 'sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-protocol', 'chat'];
    gw.request(1, { target: '/chat?name=ann', body: 3, headers: hs });
    await waitFor(() => said[1].length === 1, 3000, 10, 'ann joined');
    gw.request(3, { target: '/chat?name=bob', body: 3, headers: hs });
    await waitFor(() => said[3].length === 1, 3000, 10, 'bob joined');
    gw.send({ type: F.MESSAGE, stream: 1, flags: 1, data: Buffer.from('hi') });
    await waitFor(() => said[1].length === 4, 3000, 10, 'ann sees bob leave');
    gw.request(5, { target: '/other', body: 3, headers: hs });
    gw.request(7, { target: '/' });
    await waitFor(() => responses[5] && responses[7] && responses[7].data, 3000, 10, 'the refusal and the page');
    stop = true;
    await reader;
    assert.equal(responses[1].status, 101);
    assert.deepEqual(responses[1].headers, ['sec-websocket-protocol', 'chat']);
    assert.deepEqual(said[1], ['ann joined', 'bob joined', 'ann: hi', 'bob left']);
    assert.deepEqual(said[3], ['bob joined', 'ann: hi']);
    assert.deepEqual(resets, [3], 'bob, who never answered a ping, was terminated');
    assert.ok(pings >= 3);
    assert.equal(responses[5].status, 400);
    assert.equal(responses[7].status, 200);
    assert.match(responses[7].data.toString(), /new WebSocket/);
    assert.deepEqual(gw.linkErrors, []);
    // the link closes: the worker exits (serve's exitOnClose)
    gw.sock.destroy();
    const r = await Promise.race([app.exited, new Promise((res) => setTimeout(() => res('timeout'), 3000))]);
    assert.notEqual(r, 'timeout', 'the worker exits when its link closes');
  } finally {
    await app.stop();
    await gw.close();
  }
});

test('with the ws package itself: the same story', async () => {
  const { WebSocket } = require('ws');
  const { dir, file } = plainWsVersion();
  const port = await freePort();
  const app = start(file, { PORT: String(port), NODE_PATH: NODE_MODULES });
  const clients = [];
  try {
    await waitFor(() => new Promise((resolve) => {
      const req = http.get(`http://127.0.0.1:${port}/`, (res) => { res.resume(); resolve(res.statusCode === 200); });
      req.on('error', () => resolve(false));
    }), 5000, 50, 'the ws app to listen');
    const connect = (name, opts = {}) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/chat?name=${name}`, 'chat', opts);
      const said = [];
      ws.on('message', (d) => said.push(d.toString()));
      ws.on('open', () => resolve({ ws, said }));
      ws.on('error', reject);
      clients.push(ws);
    });
    const ann = await connect('ann');
    assert.equal(ann.ws.protocol, 'chat');
    await waitFor(() => ann.said.length === 1, 3000, 10, 'ann joined');
    const bob = await connect('bob', { autoPong: false });
    const bobClosed = new Promise((r) => bob.ws.on('close', (code) => r(code)));
    await waitFor(() => bob.said.length === 1, 3000, 10, 'bob joined');
    ann.ws.send('hi');
    await waitFor(() => ann.said.length === 4, 3000, 10, 'ann sees bob leave');
    assert.deepEqual(ann.said, ['ann joined', 'bob joined', 'ann: hi', 'bob left']);
    assert.deepEqual(bob.said, ['bob joined', 'ann: hi']);
    assert.equal(await bobClosed, 1006, 'terminated');
    const refused = await new Promise((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/other`, 'chat');
      ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); ws.terminate(); });
      ws.on('error', () => {});
      clients.push(ws);
    });
    assert.equal(refused, 400);
  } finally {
    for (const ws of clients) ws.terminate();
    await app.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
