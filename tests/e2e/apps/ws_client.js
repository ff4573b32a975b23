'use strict';
// A client for test_ws_apps.py written with the real `ws` package (from
// clients/node's dev dependencies). It runs one scenario against a gateway
// and prints what it saw as one JSON object on stdout; the test asserts on
// it. Every scenario ends within its own deadline (exit 3 with the partial
// report on timeout).
//   node ws_client.js echo ws://127.0.0.1:PORT          the C echo worker
//   node ws_client.js chat ws://127.0.0.1:PORT          examples/node/ws-chat.js
//   node ws_client.js express ws://127.0.0.1:PORT       examples/node/express-ws.js
const path = require('node:path');
const crypto = require('node:crypto');

const WebSocket = require(require.resolve('ws', { paths: [path.join(__dirname, '../../../clients/node')] }));

const [mode, base] = process.argv.slice(2);
const report = { mode };
const DEADLINE_MS = Number(process.env.WS_CLIENT_DEADLINE_MS) || 20000;
const deadline = setTimeout(() => {
  report.timeout = true;
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(3);
}, DEADLINE_MS);

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function open(url, protocols, options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, options);
    ws.inbox = [];
    ws.waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = ws.waiters.shift();
      if (w) w(m);
      else ws.inbox.push(m);
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: reason.toString() })));
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => reject(new Error(`status ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function next(ws) {
  if (ws.inbox.length) return Promise.resolve(ws.inbox.shift());
  return new Promise((resolve) => ws.waiters.push(resolve));
}

// Messages until one satisfies pred (the chat broadcasts joins and leaves too).
async function until(ws, pred) {
  for (;;) {
    const m = await next(ws);
    if (pred(m.data.toString())) return m.data.toString();
  }
}

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 255;
  return b;
}

async function echo() {
  const ws = await open(`${base}/?protocol=chat`, ['chat', 'other'], { maxPayload: 8 << 20 });
  report.protocol = ws.protocol;
  report.messages = [];
  for (const n of [0, 125, 126, 65536, 1 << 20]) {
    const b = pattern(n);
    ws.send(b);
    const m = await next(ws);
    report.messages.push({ sent: n, len: m.data.length, binary: m.isBinary, same: m.data.equals(b) });
  }
  const text = 'héllo wörld ✓'.repeat(1000);
  ws.send(text);
  const t = await next(ws);
  report.text = { binary: t.isBinary, same: t.data.toString() === text, sha: sha(t.data) };
  // fragments sent by the client arrive as one message
  ws.send('frag-', { fin: false });
  ws.send('ment', { fin: true });
  report.fragmented = (await next(ws)).data.toString();
  report.pong = await new Promise((resolve) => {
    ws.once('pong', (data) => resolve(data.toString()));
    ws.ping('are you there');
  });
  ws.close(4001, 'node done');
  report.close = await ws.closed;
  // no subprotocol offered: none chosen
  const plain = await open(`${base}/?protocol=chat`);
  report.plainProtocol = plain.protocol;
  plain.close();
  await plain.closed;
}

async function chat() {
  const alice = await open(`${base}/chat?name=alice`, ['chat']);
  report.protocol = alice.protocol;
  await until(alice, (s) => s === 'alice joined');
  const bob = await open(`${base}/chat?name=bob`, ['chat']);
  report.aliceSawBob = await until(alice, (s) => s === 'bob joined');
  await until(bob, (s) => s === 'bob joined');
  alice.send('hi bob');
  report.bobGot = await until(bob, (s) => s.startsWith('alice:'));
  report.aliceGot = await until(alice, (s) => s.startsWith('alice:'));
  bob.send(Buffer.from('binary is ignored'));
  bob.send('hello alice');
  report.aliceGot2 = await until(alice, (s) => s.startsWith('bob:'));
  // heartbeat: the server pings, ws answers with a pong on its own
  report.pings = await new Promise((resolve) => {
    let n = 0;
    alice.on('ping', () => { if (++n === 2) resolve(n); });
  });
  // a client that never answers pings is terminated by the heartbeat
  const mute = await open(`${base}/chat?name=mute`, ['chat'], { autoPong: false });
  const t0 = Date.now();
  report.muteClose = await mute.closed;
  report.muteClosedAfterMs = Date.now() - t0;
  report.aliceSawMuteLeave = await until(alice, (s) => s === 'mute left');
  bob.close(1000);
  report.bobClose = await bob.closed;
  report.aliceSawBobLeave = await until(alice, (s) => s === 'bob left');
  alice.close();
  report.aliceClose = await alice.closed;
  // the page is served on the same server
  const res = await fetch(base.replace(/^ws/, 'http') + '/');
  report.page = { status: res.status, type: res.headers.get('content-type'), hasScript: (await res.text()).includes('new WebSocket') };
}

async function express() {
  const ws = await open(`${base}/live?room=r1`);
  report.hello = JSON.parse((await next(ws)).data.toString());
  ws.send(JSON.stringify({ op: 'add', title: 'over ws' }));
  report.added = JSON.parse((await next(ws)).data.toString());
  const res = await fetch(base.replace(/^ws/, 'http') + '/todos');
  report.todos = await res.json();
  ws.close(1000, 'bye');
  report.close = await ws.closed;
  report.refused = await open(`${base}/nowhere`).then(() => 'opened', (e) => e.message);
}

const scenarios = { echo, chat, express };
scenarios[mode]().then(() => {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(0);
}, (err) => {
  report.error = String(err && err.stack || err);
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(1);
});
