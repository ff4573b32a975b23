'use strict';
// WebSockets (PROTOCOL.md 5.2) through the ws-compatible API, against the
// in-process fake gateway over a real Unix socket: HELLO, accept, refusals,
// subprotocols, messages both ways (text, binary, fragments), credit in both
// directions, bufferedAmount, close both ways, ping/pong, terminate.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const P = require('../lib/protocol');
const { serve, WebSocketServer, WebSocket } = require('../lib');
const { FakeGateway } = require('../test-support/fake-gateway');

const F = P.FRAME;
const names = (fs) => fs.map((f) => P.FRAME_NAMES[f.type]);
const tick = (ms = 10) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
test.afterEach(async () => {
  for (const ctx of live) {
    ctx.worker.close();
    await ctx.gw.close();
  }
  live.clear();
});

/**
 * A worker serving an http.Server; `attach(server, worker)` sets up
 * WebSockets before the HELLO. Returns {gw, worker, server, wss, hello}.
 */
async function setup(attach, opts = {}, gwSettings = {}) {
  const gw = new FakeGateway();
  await gw.listen();
  const server = http.createServer((req, res) => res.end('plain'));
  const ctx = { gw, server };
  const worker = serve(server, { socket: gw.path, exitOnClose: false, signals: false, ...opts });
  ctx.worker = worker;
  ctx.wss = attach ? attach(server, worker) : null;
  ctx.hello = await gw.handshake({ websocket: true, ...gwSettings });
  await new Promise((r) => (worker.gateway ? r() : worker.once('ready', r)));
  live.add(ctx);
  worker.on('close', () => {});
  return ctx;
}

async function teardown(ctx) {
  live.delete(ctx);
  ctx.worker.close();
  await ctx.gw.close();
}

const KEY = ['sec-websocket-version', '13', 'sec-websocket-key', 'dGhlIHNhbXBsZSBub25jZQ=='];
function upgrade(gw, sid, { target = '/', headers = [] } = {}) {
  gw.request(sid, { target, body: 3, headers: [...KEY, ...headers] });
}
const msg = (sid, flags, data) => ({ type: F.MESSAGE, stream: sid, flags, data: Buffer.from(data) });

/** A server with one accepted WebSocket on stream 1: {ctx, ws, req}. */
async function connected(wssOptions = {}, opts = {}, gwSettings = {}, upgradeOpts = {}) {
  let resolveConn;
  const conn = new Promise((r) => { resolveConn = r; });
  const ctx = await setup((server) => {
    const wss = new WebSocketServer({ server, ...wssOptions });
    wss.on('connection', (ws, req) => resolveConn({ ws, req }));
    return wss;
  }, opts, gwSettings);
  upgrade(ctx.gw, 1, upgradeOpts);
  const { ws, req } = await conn;
  const frames = await ctx.gw.until(F.RESPONSE);
  return { ctx, ws, req, frames };
}

test('HELLO announces websocket only when something takes upgrades', async () => {
  let ctx = await setup(null);
  assert.equal(ctx.hello.settings.websocket, undefined, 'a plain http server: nothing changes');
  await teardown(ctx);
  ctx = await setup((server) => new WebSocketServer({ server }));
  assert.equal(ctx.hello.settings.websocket, true, '{ server }');
  await teardown(ctx);
  ctx = await setup((server, worker) => new WebSocketServer({ server: worker }));
  assert.equal(ctx.hello.settings.websocket, true, '{ server: worker }');
  await teardown(ctx);
  ctx = await setup((server) => {
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
    return wss;
  });
  assert.equal(ctx.hello.settings.websocket, true, 'noServer with an upgrade listener');
  await teardown(ctx);
  ctx = await setup((server) => new WebSocketServer({ server }), { websocket: false });
  assert.equal(ctx.hello.settings.websocket, undefined, 'websocket: false wins');
  await teardown(ctx);
  assert.throws(() => new WebSocketServer({ port: 8080 }), /not available behind sluice/);
  assert.throws(() => new WebSocketServer({}), /One and only one/);
});

test('accept: connection (ws, req), RESPONSE 101 without body, subprotocol and headers from the app', async () => {
  const { ctx, ws, req, frames } = await connected({
    handleProtocols: (protocols, r) => {
      assert.ok(r.headers['sec-websocket-protocol']);
      return protocols.has('chat') ? 'chat' : false;
    },
  }, {}, {}, { target: '/room?x=1', headers: ['sec-websocket-protocol', 'superchat, chat', 'origin', 'https://a.example'] });
  ctx.wss.on('headers', () => assert.fail('headers after the fact'));
  assert.deepEqual(names(frames), ['RESPONSE']);
  assert.equal(frames[0].status, 101);
  assert.equal(frames[0].body, 0);
  assert.deepEqual(frames[0].headers, ['sec-websocket-protocol', 'chat']);
  assert.equal(ws.protocol, 'chat');
  assert.equal(ws.readyState, WebSocket.OPEN);
  assert.equal(ws.OPEN, 1);
  assert.equal(ws.bufferedAmount, 0);
  assert.equal(ws.extensions, '');
  assert.equal(req.url, '/room?x=1');
  assert.equal(req.headers.upgrade, 'websocket');
  assert.equal(req.headers.origin, 'https://a.example');
  assert.equal(req.upgrade, true);
  assert.ok(ctx.wss.clients.has(ws));
  assert.ok(await ctx.gw.quiet(30), 'nothing else (no CREDIT yet, no END)');
  await teardown(ctx);
});

test('accept: "headers" event lets the app add fields; maxPayload goes to the gateway as LIMIT first', async () => {
  let resolveConn;
  const conn = new Promise((r) => { resolveConn = r; });
  const ctx = await setup((server) => {
    const wss = new WebSocketServer({ server, maxPayload: 4096 });
    wss.on('headers', (headers) => headers.push('Set-Cookie: a=1'));
    wss.on('connection', (ws) => resolveConn(ws));
    return wss;
  });
  upgrade(ctx.gw, 1);
  await conn;
  const fs = await ctx.gw.until(F.RESPONSE);
  assert.deepEqual(names(fs), ['LIMIT', 'RESPONSE']);
  assert.equal(fs[0].max_body, 4096);
  assert.deepEqual(fs[1].headers, ['set-cookie', 'a=1']);
  await teardown(ctx);
});

test('refusals are ordinary responses: verifyClient (sync, async), path, hand-written, destroy', async () => {
  const seen = [];
  const ctx = await setup((server) => {
    const wss = new WebSocketServer({
      noServer: true,
      path: '/ws',
      verifyClient: (info, cb) => {
        seen.push([info.origin, info.secure, info.req.url]);
        if (info.req.url.includes('deny')) cb(false, 403, 'nope', { 'X-Why': 'test' });
        else cb(true);
      },
    });
    const sync = new WebSocketServer({ noServer: true, verifyClient: () => false });
    server.on('upgrade', (req, socket, head) => {
      if (req.url === '/raw') {
        socket.write('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n');
        socket.destroy();
      } else if (req.url === '/gone') {
        socket.destroy();
      } else if (req.url === '/sync') {
        sync.handleUpgrade(req, socket, head, () => assert.fail('accepted'));
      } else {
        wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      }
    });
    return wss;
  });
  upgrade(ctx.gw, 1, { target: '/ws?deny', headers: ['origin', 'o'] });
  let fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  assert.equal(fs[0].status, 403);
  assert.deepEqual(fs[0].headers, ['Content-Type', 'text/html', 'X-Why', 'test', 'Content-Length', '4']);
  assert.equal(fs[1].data.toString(), 'nope');
  assert.deepEqual(seen, [['o', false, '/ws?deny']]);

  upgrade(ctx.gw, 3, { target: '/elsewhere' });
  fs = await ctx.gw.until(F.END);
  assert.equal(fs[0].status, 400);

  upgrade(ctx.gw, 5, { target: '/raw' });
  fs = await ctx.gw.until(F.RESPONSE);
  assert.equal(fs[0].status, 401);
  assert.equal(fs[0].body, 0);
  assert.deepEqual(fs[0].headers, ['WWW-Authenticate', 'Basic', 'Content-Length', '0']);

  upgrade(ctx.gw, 7, { target: '/gone' });
  fs = await ctx.gw.until(F.RESET);
  assert.equal(fs[0].stream, 7);

  upgrade(ctx.gw, 9, { target: '/sync' });
  fs = await ctx.gw.until(F.END);
  assert.equal(fs[0].status, 401);
  assert.equal(ctx.worker.openStreams, 0);
  await teardown(ctx);
});

test('an upgrade nobody takes is an ordinary request', async () => {
  const ctx = await setup(null, { websocket: true });
  assert.equal(ctx.hello.settings.websocket, true);
  upgrade(ctx.gw, 1);
  const fs = await ctx.gw.until(F.END);
  assert.equal(fs[0].status, 200);
  assert.equal(fs[1].data.toString(), 'plain');
  await teardown(ctx);
});

test('messages in: text and binary, fragments reassembled (split inside UTF-8, a PONG between), empty', async () => {
  const { ctx, ws } = await connected();
  const got = [];
  ws.on('message', (data, isBinary) => got.push([Buffer.isBuffer(data), data.toString(), isBinary]));
  const pongs = [];
  ws.on('pong', (d) => pongs.push(d.toString()));
  const e = Buffer.from('héllo wörld');
  ctx.gw.send(msg(1, 1, 'hello'));
  ctx.gw.send(msg(1, 0, [1, 2, 3]));
  ctx.gw.send(msg(1, 3, e.subarray(0, 2))); // cuts the é
  ctx.gw.send(msg(1, 8, 'pp'));
  ctx.gw.send(msg(1, 3, e.subarray(2, 9)));
  ctx.gw.send(msg(1, 1, e.subarray(9)));
  ctx.gw.send(msg(1, 2, 'ab'));
  ctx.gw.send(msg(1, 0, 'cd'));
  ctx.gw.send(msg(1, 1, ''));
  await tick(50);
  assert.deepEqual(got, [
    [true, 'hello', false],
    [true, '\x01\x02\x03', true],
    [true, 'héllo wörld', false],
    [true, 'abcd', true],
    [true, '', false],
  ]);
  assert.deepEqual(pongs, ['pp']);
  ws.binaryType = 'arraybuffer';
  let ab;
  ws.once('message', (d) => { ab = d; });
  ctx.gw.send(msg(1, 0, [9]));
  await tick(30);
  assert.ok(ab instanceof ArrayBuffer);
  assert.equal(new Uint8Array(ab)[0], 9);
  await teardown(ctx);
});

test('messages out: strings as text, buffers and typed arrays as binary, the binary option, fragments with fin', async () => {
  const { ctx, ws } = await connected();
  ws.send('héllo');
  ws.send(Buffer.from([1, 2]));
  ws.send(new Uint16Array([0x0102]));
  ws.send(new Uint8Array([7, 8]).buffer);
  ws.send('as binary', { binary: true });
  ws.send(Buffer.from('as text'), { binary: false });
  ws.send(42);
  ws.send('', () => {});
  ws.send('frag-', { fin: false });
  ws.send(Buffer.from('ment'), { fin: true }); // continues the text message
  const fs = [];
  while (fs.length < 10) fs.push(await ctx.gw.next());
  assert.ok(fs.every((f) => f.type === F.MESSAGE && f.stream === 1));
  assert.deepEqual(fs.map((f) => [f.flags, f.data.toString('latin1')]), [
    [1, Buffer.from('héllo').toString('latin1')], [0, '\x01\x02'], [0, Buffer.from(new Uint16Array([0x0102]).buffer).toString('latin1')],
    [0, '\x07\x08'], [0, 'as binary'], [1, 'as text'], [1, '42'], [1, ''], [3, 'frag-'], [1, 'ment'],
  ]);
  assert.equal(ctx.gw.linkErrors.length, 0, 'the gateway side found every frame legal');
  await teardown(ctx);
});

test('credit out: send() waits for the gateway window, bufferedAmount counts what waits, callbacks after the bytes left', async () => {
  const { ctx, ws } = await connected({}, {}, { window: 10 });
  const log = [];
  ws.send('0123456789abcdef', (err) => log.push(`cb1 ${err || ''}`));
  ws.send(Buffer.from('XYZ'), (err) => log.push(`cb2 ${err || ''}`));
  ws.ping('hb'); // a ping needs no credit and overtakes waiting data
  let f = await ctx.gw.next();
  assert.deepEqual([f.flags, f.data.toString()], [3, '0123456789']);
  f = await ctx.gw.next();
  assert.deepEqual([f.flags, f.data.toString()], [4, 'hb']);
  assert.equal(ws.bufferedAmount, 9);
  assert.ok(await ctx.gw.quiet(40));
  assert.deepEqual(log, []);
  ctx.gw.send({ type: F.CREDIT, stream: 1, increment: 4 });
  f = await ctx.gw.next();
  assert.deepEqual([f.flags, f.data.toString()], [3, 'abcd']);
  assert.equal(ws.bufferedAmount, 5);
  ctx.gw.send({ type: F.CREDIT, stream: 1, increment: 100 });
  f = await ctx.gw.next();
  assert.deepEqual([f.flags, f.data.toString()], [1, 'ef']);
  f = await ctx.gw.next();
  assert.deepEqual([f.flags, f.data.toString()], [0, 'XYZ']);
  await tick(20);
  assert.equal(ws.bufferedAmount, 0);
  assert.deepEqual(log, ['cb1 ', 'cb2 ']);
  assert.equal(ctx.gw.linkErrors.length, 0);
  await teardown(ctx);
});

test('credit out: a large message is cut to the gateway max_frame', async () => {
  const { ctx, ws } = await connected({}, {}, { max_frame: 16384 });
  const big = Buffer.alloc(40000, 5);
  ws.send(big);
  const fs = [await ctx.gw.next(), await ctx.gw.next(), await ctx.gw.next()];
  assert.deepEqual(fs.map((f) => f.flags), [2, 2, 0]);
  assert.ok(fs.every((f) => P.encodeFrame(f).length - 4 <= 16384));
  assert.deepEqual(Buffer.concat(fs.map((f) => f.data)), big);
  await teardown(ctx);
});

test('credit in: granted as messages are delivered, nothing while paused, a message larger than the window flows', async () => {
  const { ctx, ws } = await connected({}, { initialWindow: 1000, window: 1000, wsWindow: 1000 });
  const got = [];
  ws.on('message', (d) => got.push(d.length));
  ctx.gw.send(msg(1, 0, Buffer.alloc(300)));
  assert.ok(await ctx.gw.quiet(40), 'less than half the window used: no grant yet');
  ctx.gw.send(msg(1, 0, Buffer.alloc(300)));
  let f = await ctx.gw.next();
  assert.deepEqual([f.type, f.increment], [F.CREDIT, 600]);
  // paused: messages wait, and so does the credit
  ws.pause();
  assert.equal(ws.isPaused, true);
  ctx.gw.send(msg(1, 0, Buffer.alloc(700)));
  ctx.gw.send(msg(1, 2, Buffer.alloc(300))); // the window is used up
  assert.ok(await ctx.gw.quiet(50));
  assert.deepEqual(got, [300, 300]);
  ws.resume();
  f = await ctx.gw.next();
  assert.deepEqual([f.type, f.increment], [F.CREDIT, 1000]);
  assert.deepEqual(got, [300, 300, 700]);
  // the rest of a 2300-byte message, more than twice the window
  ctx.gw.send(msg(1, 2, Buffer.alloc(1000)));
  f = await ctx.gw.next();
  assert.deepEqual([f.type, f.increment], [F.CREDIT, 1000]);
  ctx.gw.send(msg(1, 0, Buffer.alloc(1000)));
  f = await ctx.gw.next();
  assert.deepEqual([f.type, f.increment], [F.CREDIT, 1000]);
  assert.deepEqual(got, [300, 300, 700, 2300]);
  assert.equal(ctx.gw.linkErrors.length, 0);
  await teardown(ctx);
});

test('maxPayload: a larger message closes with 1009', async () => {
  const { ctx, ws } = await connected({ maxPayload: 100 });
  const errors = [];
  ws.on('error', (e) => errors.push(e.code));
  const closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ctx.gw.send(msg(1, 2, Buffer.alloc(60)));
  ctx.gw.send(msg(1, 0, Buffer.alloc(60)));
  const f = await ctx.gw.next();
  assert.deepEqual([f.type, f.code], [F.CLOSE, 1009]);
  assert.equal(await closed, 1009);
  assert.deepEqual(errors, ['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH']);
  await teardown(ctx);
});

test('close from the worker: CLOSE with code and reason, after waiting messages; then close (code, reason)', async () => {
  const { ctx, ws } = await connected({}, {}, { window: 4 });
  assert.throws(() => ws.close(1005), TypeError);
  assert.throws(() => ws.close(1000, 'x'.repeat(124)), RangeError);
  ws.send('abcdef');
  ws.close(4000, 'bÿe');
  assert.equal(ws.readyState, WebSocket.CLOSING);
  const sendErr = new Promise((r) => ws.send('late', r));
  let f = await ctx.gw.next();
  assert.deepEqual([f.type, f.data.toString()], [F.MESSAGE, 'abcd']);
  assert.ok(await ctx.gw.quiet(30), 'CLOSE waits behind the message');
  const closed = new Promise((r) => ws.on('close', (code, reason) => r([code, reason])));
  ctx.gw.send({ type: F.CREDIT, stream: 1, increment: 10 });
  f = await ctx.gw.next();
  assert.deepEqual([f.type, f.data.toString()], [F.MESSAGE, 'ef']);
  f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CLOSE, stream: 1, code: 4000, reason: Buffer.from('bÿe').toString('latin1') });
  const [code, reason] = await closed;
  assert.equal(code, 4000);
  assert.ok(Buffer.isBuffer(reason));
  assert.equal(reason.toString(), 'bÿe');
  assert.equal(ws.readyState, WebSocket.CLOSED);
  assert.match((await sendErr).message, /not open: readyState 2/);
  assert.equal(ws.bufferedAmount, 4, 'sent after close counts, as in ws');
  assert.equal(ctx.wss.clients.size, 0);
  // frames still in flight for the closed stream are ignored
  ctx.gw.sendRaw(P.encodeFrame(msg(1, 1, 'x')));
  assert.ok(await ctx.gw.quiet(30));
  assert.equal(ctx.worker.closed, false);
  await teardown(ctx);
});

test('close without a code is CLOSE 1005 (a close frame without code)', async () => {
  const { ctx, ws } = await connected();
  const closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ws.close();
  const f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CLOSE, stream: 1, code: 1005 });
  assert.equal(await closed, 1005);
  await teardown(ctx);
});

test('close from the gateway: close (code, reason); CANCEL and a lost link are 1006', async () => {
  let { ctx, ws } = await connected();
  const ev = [];
  ws.addEventListener('close', (e) => ev.push([e.type, e.code, e.reason, e.wasClean]));
  let closed = new Promise((r) => ws.on('close', (code, reason) => r([code, reason.toString()])));
  ctx.gw.send({ type: F.CLOSE, stream: 1, code: 1001, reason: 'going away' });
  assert.deepEqual(await closed, [1001, 'going away']);
  assert.deepEqual(ev, [['close', 1001, 'going away', true]]);
  ws.send('late');
  assert.ok(await ctx.gw.quiet(30), 'nothing more is sent for a closed stream');
  await teardown(ctx);

  ({ ctx, ws } = await connected());
  closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ctx.gw.send({ type: F.CANCEL, stream: 1, reason: P.CANCEL.CLIENT_CLOSED });
  assert.equal(await closed, 1006);
  await teardown(ctx);

  ({ ctx, ws } = await connected());
  closed = new Promise((r) => ws.on('close', (code) => r(code)));
  ctx.gw.sock.destroy();
  assert.equal(await closed, 1006);
  await teardown(ctx);
});

test('ping and pong: ws.ping() is MESSAGE flags 4, the client\'s pong arrives as \'pong\'', async () => {
  const { ctx, ws } = await connected();
  const pinged = new Promise((r) => ws.ping(Buffer.from('beat'), false, r));
  const f = await ctx.gw.next();
  assert.deepEqual([f.type, f.flags, f.data.toString()], [F.MESSAGE, 4, 'beat']);
  await pinged;
  const pong = new Promise((r) => ws.once('pong', r));
  ctx.gw.send(msg(1, 8, 'beat'));
  assert.equal((await pong).toString(), 'beat');
  ws.ping(); // empty
  assert.deepEqual((await ctx.gw.next()).data.length, 0);
  assert.throws(() => ws.ping(Buffer.alloc(126)), RangeError);
  const ponged = new Promise((r) => ws.pong('x', r));
  await ponged; // accepted, nothing sent: the gateway answers the client's pings
  assert.ok(await ctx.gw.quiet(30));
  await teardown(ctx);
});

test('terminate(): RESET, close 1006', async () => {
  const { ctx, ws } = await connected();
  const closed = new Promise((r) => ws.on('close', (code, reason) => r([code, reason.length])));
  ws.terminate();
  const f = await ctx.gw.next();
  assert.equal(f.type, F.RESET);
  assert.deepEqual(await closed, [1006, 0]);
  assert.equal(ws.readyState, WebSocket.CLOSED);
  await teardown(ctx);
});

test('EventTarget basics: onmessage, addEventListener once, removeEventListener, handleEvent objects', async () => {
  const { ctx, ws } = await connected();
  const log = [];
  ws.onmessage = (e) => log.push(['on', e.type, e.data, e.target === ws]);
  assert.equal(typeof ws.onmessage, 'function');
  ws.addEventListener('message', (e) => log.push(['once', e.data]), { once: true });
  const obj = { handleEvent(e) { log.push(['obj', Buffer.isBuffer(e.data)]); } };
  ws.addEventListener('message', obj);
  ws.addEventListener('message', obj); // a second add is ignored
  ctx.gw.send(msg(1, 1, 'a'));
  ctx.gw.send(msg(1, 0, 'b'));
  await tick(40);
  ws.removeEventListener('message', obj);
  ws.onmessage = null;
  ctx.gw.send(msg(1, 1, 'c'));
  await tick(30);
  assert.deepEqual(log, [['on', 'message', 'a', true], ['once', 'a'], ['obj', false], ['on', 'message', Buffer.from('b'), true], ['obj', true]]);
  await teardown(ctx);
});

test('WebSocketServer.close(): no new WebSockets (503), close once the clients are gone', async () => {
  const { ctx, ws } = await connected();
  let closed = false;
  ctx.wss.close(() => { closed = true; });
  upgrade(ctx.gw, 3);
  const fs = await ctx.gw.until(F.END);
  assert.equal(fs[0].status, 200, 'no listener any more: an ordinary request');
  await tick(20);
  assert.equal(closed, false, 'a client is still open');
  ws.close(1000);
  await tick(20);
  assert.equal(closed, true);
  await teardown(ctx);
});

test('many WebSockets on one link, interleaved, each with its own window', async () => {
  const conns = [];
  const ctx = await setup((server) => {
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      conns.push(ws);
      ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary })); // echo
    });
    return wss;
  }, {}, { window: 8 });
  for (let i = 0; i < 5; i++) upgrade(ctx.gw, 2 * i + 1);
  await ctx.gw.until(F.RESPONSE);
  for (let i = 1; i < 5; i++) await ctx.gw.until(F.RESPONSE);
  for (let i = 0; i < 5; i++) ctx.gw.send(msg(2 * i + 1, 1, `msg-${i}-longer`));
  const out = new Map();
  for (let i = 0; i < 5; i++) {
    const f = await ctx.gw.next();
    assert.equal(f.type, F.MESSAGE);
    assert.equal(f.data.length, 8, 'each stream has a window of 8');
    out.set(f.stream, f.data.toString());
    ctx.gw.send({ type: F.CREDIT, stream: f.stream, increment: 100 });
  }
  for (let i = 0; i < 5; i++) {
    const f = await ctx.gw.next();
    out.set(f.stream, out.get(f.stream) + f.data.toString());
  }
  for (let i = 0; i < 5; i++) assert.equal(out.get(2 * i + 1), `msg-${i}-longer`);
  assert.equal(conns.length, 5);
  assert.equal(ctx.gw.linkErrors.length, 0);
  await teardown(ctx);
});
