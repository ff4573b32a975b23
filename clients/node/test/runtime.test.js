'use strict';
// The worker runtime and the http-style API against an in-process fake
// gateway: handshake, PING, frames of an exchange, credit in both
// directions, CANCEL, DRAIN, shutdown (RETIRE), protocol errors.
const test = require('node:test');
const assert = require('node:assert/strict');
const P = require('../lib/protocol');
const { serve } = require('../lib');
const { FakeGateway } = require('../test-support/fake-gateway');

const F = P.FRAME;
const names = (fs) => fs.map((f) => P.FRAME_NAMES[f.type]);

const live = new Set();
test.afterEach(async () => {
  for (const ctx of live) {
    ctx.worker.close();
    await ctx.gw.close();
  }
  live.clear();
});

async function setup(handler, opts = {}, gwSettings = {}) {
  const gw = new FakeGateway();
  await gw.listen();
  const worker = serve(handler, { socket: gw.path, exitOnClose: false, signals: false, ...opts });
  const hello = await gw.handshake(gwSettings);
  await new Promise((r) => (worker.gateway ? r() : worker.once('ready', r)));
  const ctx = { gw, worker, hello };
  live.add(ctx);
  worker.on('close', () => {}); // tests look at close themselves
  return ctx;
}

async function teardown(ctx) {
  live.delete(ctx);
  ctx.worker.close();
  await ctx.gw.close();
}

test('handshake: the worker HELLO carries pid, lib, max_streams, window', async () => {
  const ctx = await setup(() => {}, { maxStreams: 7, window: 1000 });
  const s = ctx.hello.settings;
  assert.equal(ctx.hello.version, 1);
  assert.equal(s.pid, process.pid);
  assert.equal(s.lib, 'sluice-node/0.1.0');
  assert.equal(s.max_streams, 7);
  assert.equal(s.window, 1000);
  assert.equal(ctx.worker.gateway.pool, 'test');
  await teardown(ctx);
});

test('PING is answered with PONG carrying the same value', async () => {
  const ctx = await setup(() => {});
  ctx.gw.send({ type: F.PING, stream: 0, opaque: 2 ** 40 + 5 });
  const f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.PONG, stream: 0, opaque: 2 ** 40 + 5 });
  await teardown(ctx);
});

test('a GET exchange: RESPONSE with Content-Length, BODY, END in one write', async () => {
  let seen;
  const ctx = await setup((req, res) => {
    seen = { method: req.method, url: req.url, headers: req.headers, v: req.httpVersion, addr: req.socket.remoteAddress };
    res.setHeader('Content-Type', 'text/plain');
    res.end('hi there');
  });
  ctx.gw.request(1, { target: '/x?y=1', headers: ['x-a', '1', 'x-a', '2'] });
  const chunks0 = ctx.gw.chunks;
  const fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  assert.equal(ctx.gw.chunks - chunks0, 1, 'one socket write for the three frames');
  assert.equal(fs[0].status, 200);
  assert.deepEqual(fs[0].headers, ['Content-Type', 'text/plain', 'Content-Length', '8']);
  assert.equal(fs[0].body, 1);
  assert.equal(fs[1].data.toString(), 'hi there');
  assert.deepEqual(seen, { method: 'GET', url: '/x?y=1', headers: { host: 'test', 'x-a': '1, 2' }, v: '1.1', addr: '127.0.0.1' });
  await teardown(ctx);
});

test('HTTP/2 requests (version 20): httpVersion 2.0 as in node:http2, served like HTTP/1.x', async () => {
  const seen = [];
  const ctx = await setup((req, res) => {
    seen.push([req.httpVersion, req.httpVersionMajor, req.httpVersionMinor]);
    res.end('ok');
  });
  ctx.gw.request(1, { version: 20 });
  let fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  ctx.gw.request(3, { version: 10 });
  fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  ctx.gw.request(5, { version: 11 });
  await ctx.gw.until(F.END);
  assert.deepEqual(seen, [['2.0', 2, 0], ['1.0', 1, 0], ['1.1', 1, 1]]);
  await teardown(ctx);
});

test('end() without a body sends RESPONSE body=0; HEAD and 204 never send BODY', async () => {
  const ctx = await setup((req, res) => {
    if (req.url === '/204') { res.statusCode = 204; res.end('ignored'); return; }
    res.setHeader('Content-Length', '5');
    res.end(req.method === 'HEAD' ? 'hello' : undefined);
  });
  ctx.gw.request(1, { method: 'HEAD' });
  let f = await ctx.gw.next();
  assert.equal(f.type, F.RESPONSE);
  assert.equal(f.body, 0);
  assert.deepEqual(f.headers, ['Content-Length', '5']);
  ctx.gw.request(2, { target: '/204' });
  f = await ctx.gw.next();
  assert.equal(f.status, 204);
  assert.equal(f.body, 0);
  ctx.gw.request(3);
  f = await ctx.gw.next();
  assert.equal(f.body, 0);
  assert.ok(await ctx.gw.quiet(50));
  await teardown(ctx);
});

test('response backpressure: write() returns false beyond the window, drain follows CREDIT', async () => {
  const log = [];
  const ctx = await setup((req, res) => {
    res.on('drain', () => log.push('drain'));
    res.on('finish', () => log.push('finish'));
    log.push(`w1=${res.write('0123456789')}`); // exactly the window
    log.push(`w2=${res.write('abcdefghijklmno')}`); // held
    res.end('XYZ', () => log.push('end-cb'));
  }, {}, { window: 10 });
  ctx.gw.request(1);
  let fs = await ctx.gw.until(F.BODY);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY']);
  assert.equal(fs[1].data.toString(), '0123456789');
  assert.ok(await ctx.gw.quiet(50), 'nothing beyond the window');
  assert.deepEqual(log, ['w1=true', 'w2=false']);
  ctx.gw.send({ type: F.CREDIT, stream: 1, increment: 12 });
  fs = await ctx.gw.until(F.BODY);
  assert.equal(fs[0].data.toString(), 'abcdefghijkl');
  assert.ok(await ctx.gw.quiet(50));
  ctx.gw.send({ type: F.CREDIT, stream: 1, increment: 100 });
  fs = await ctx.gw.until(F.END);
  assert.deepEqual(fs.map((f) => (f.data ? f.data.toString() : P.FRAME_NAMES[f.type])), ['mno', 'XYZ', 'END']);
  await new Promise((r) => setTimeout(r, 20));
  // like node:http, no 'drain' once end() has been called
  assert.deepEqual(log, ['w1=true', 'w2=false', 'finish', 'end-cb']);
  await teardown(ctx);
});

test('large writes are split to fit the gateway max_frame', async () => {
  const big = Buffer.alloc(50000, 7);
  const ctx = await setup((req, res) => res.end(big), {}, { max_frame: 16384 });
  ctx.gw.request(1);
  const fs = await ctx.gw.until(F.END);
  const bodies = fs.filter((f) => f.type === F.BODY);
  assert.ok(bodies.length >= 4);
  for (const b of bodies) assert.ok(b.data.length <= 16384 - 16);
  assert.equal(Buffer.concat(bodies.map((b) => b.data)).length, 50000);
  await teardown(ctx);
});

test('request credit follows consumption (body=1)', async () => {
  let req1;
  const ctx = await setup((req, res) => { req1 = req; req.on('end', () => res.end('done')); }, { window: 1000 });
  ctx.gw.request(1, { method: 'POST', body: 1 });
  ctx.gw.send({ type: F.BODY, stream: 1, data: Buffer.alloc(1000, 1) });
  assert.ok(await ctx.gw.quiet(80), 'no credit while nothing is read');
  req1.resume(); // consume
  const f = await ctx.gw.next();
  assert.equal(f.type, F.CREDIT);
  assert.ok(f.increment >= 500 && f.increment <= 1000, `increment ${f.increment}`);
  ctx.gw.send({ type: F.BODY, stream: 1, data: Buffer.alloc(f.increment, 2) });
  ctx.gw.send({ type: F.END, stream: 1 });
  const fs = await ctx.gw.until(F.END);
  assert.equal(fs.filter((x) => x.type === F.BODY)[0].data.toString(), 'done');
  await teardown(ctx);
});

test('body=2: LIMIT then the first CREDIT only when the handler reads', async () => {
  let req1;
  const ctx = await setup((req) => { req1 = req; }, { window: 4096, maxBody: 123456789 });
  ctx.gw.request(1, { method: 'PUT', body: 2 });
  let f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.LIMIT, stream: 1, max_body: 123456789 });
  assert.ok(await ctx.gw.quiet(80), 'no credit before reading');
  req1.on('data', () => {});
  f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CREDIT, stream: 1, increment: 4096 });
  await teardown(ctx);
});

test('a handler that answers without reading never grants credit (body=2)', async () => {
  const ctx = await setup((req, res) => { res.statusCode = 401; res.end(); });
  ctx.gw.request(1, { method: 'POST', body: 2 });
  const f = await ctx.gw.next();
  assert.equal(f.type, F.RESPONSE);
  assert.equal(f.status, 401);
  assert.ok(await ctx.gw.quiet(50));
  await teardown(ctx);
});

test('defaults: HELLO announces 4096 streams and a 16 KiB initial window', async () => {
  const ctx = await setup(() => {});
  assert.equal(ctx.hello.settings.max_streams, 4096);
  assert.equal(ctx.hello.settings.window, 16384);
  await teardown(ctx);
});

test('a reading stream opens its window from the initial one to `window`', async () => {
  const ctx = await setup((req, res) => { req.on('data', () => {}); req.on('end', () => res.end()); },
    { window: 8192, initialWindow: 1024 });
  assert.equal(ctx.hello.settings.window, 1024);
  ctx.gw.request(1, { method: 'POST', body: 1 });
  const f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CREDIT, stream: 1, increment: 8192 - 1024 });
  await teardown(ctx);
});

test('credit is not granted beyond a declared Content-Length', async () => {
  const ctx = await setup((req, res) => { req.on('data', () => {}); req.on('end', () => res.end()); },
    { window: 8192, initialWindow: 1024 });
  ctx.gw.request(1, { method: 'POST', body: 1, headers: ['content-length', '3000'] });
  const f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CREDIT, stream: 1, increment: 3000 - 1024 });
  await teardown(ctx);
});

test('bodyBudget bounds the credit beyond the initial windows across streams; the initial window stays available', async () => {
  const reqs = [];
  const done = [];
  const ctx = await setup((req, res) => {
    reqs.push(req);
    let n = 0;
    req.on('data', (c) => { n += c.length; });
    req.once('data', () => req.pause()); // read the first chunk, then stop
    req.on('end', () => { done.push(n); res.end(String(n)); });
  }, { window: 8192, initialWindow: 1024, bodyBudget: 4096 });
  const granted = [0, 1024, 1024, 1024];
  const sent = [0, 0, 0, 0];
  for (let sid = 1; sid <= 3; sid++) ctx.gw.request(sid, { method: 'POST', body: 1 });
  /* Send whatever credit allows; the handlers hold everything after their first chunk. */
  const fill = () => {
    for (let sid = 1; sid <= 3; sid++) {
      if (granted[sid] > sent[sid]) {
        ctx.gw.send({ type: F.BODY, stream: sid, data: Buffer.alloc(granted[sid] - sent[sid], sid) });
        sent[sid] = granted[sid];
      }
    }
  };
  fill();
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    if (!ctx.gw.frames.length) break;
    while (ctx.gw.frames.length) {
      const f = ctx.gw.frames.shift();
      assert.equal(f.type, F.CREDIT);
      granted[f.stream] += f.increment;
    }
    fill();
  }
  const total = granted[1] + granted[2] + granted[3];
  /* consumed: each handler's first chunk (1024); the rest is buffered */
  assert.ok(total - 3 * 1024 <= 3 * 1024 + 4096, `granted ${granted.slice(1)}: more than the initial windows plus the budget buffered`);
  assert.equal(ctx.worker.extra, 4096, 'the budget is used up');
  /* a paused stream that reads again gets its initial window back, budget or not */
  reqs[1].resume();
  const f = await ctx.gw.next();
  assert.deepEqual(f, { type: F.CREDIT, stream: 2, increment: 1024 });
  /* everyone reads again: the bodies complete */
  for (const r of reqs) r.resume();
  for (let sid = 1; sid <= 3; sid++) ctx.gw.send({ type: F.END, stream: sid });
  for (let i = 0; i < 3; i++) await ctx.gw.until(F.END);
  assert.deepEqual(done.sort((x, y) => x - y), sent.slice(1).sort((x, y) => x - y));
  assert.equal(ctx.worker.extra, 0, 'the budget is released when the streams close');
  await teardown(ctx);
});

test('body=2: a head flushed before req.pipe(res) is preceded by the first CREDIT, in the same write', async () => {
  const ctx = await setup((req, res) => {
    res.writeHead(200);
    res.flushHeaders();
    req.pipe(res);
  }, { window: 4096, initialWindow: 4096 });
  ctx.gw.request(1, { method: 'PUT', body: 2 });
  const chunks0 = ctx.gw.chunks;
  const fs = [await ctx.gw.next(), await ctx.gw.next()];
  assert.deepEqual(names(fs), ['CREDIT', 'RESPONSE']);
  assert.equal(fs[0].increment, 4096);
  assert.equal(ctx.gw.chunks - chunks0, 1, 'one socket write');
  ctx.gw.send({ type: F.BODY, stream: 1, data: Buffer.from('abc') });
  ctx.gw.send({ type: F.END, stream: 1 });
  const rest = await ctx.gw.until(F.END);
  assert.equal(rest.find((x) => x.type === F.BODY).data.toString(), 'abc');
  await teardown(ctx);
});

test('body=2: res.write(), a LIMIT, then req.pipe(res): LIMITs, CREDIT, RESPONSE, BODY in that order', async () => {
  const { setBodyLimit } = require('../lib');
  const ctx = await setup((req, res) => {
    res.write('x');
    setBodyLimit(req, 5000);
    req.pipe(res);
  }, { window: 4096, initialWindow: 4096, maxBody: 999 });
  ctx.gw.request(1, { method: 'PUT', body: 2 });
  const fs = [];
  for (let i = 0; i < 5; i++) fs.push(await ctx.gw.next());
  assert.deepEqual(names(fs), ['LIMIT', 'LIMIT', 'CREDIT', 'RESPONSE', 'BODY']);
  assert.deepEqual([fs[0].max_body, fs[1].max_body], [999, 5000]);
  await teardown(ctx);
});

test('body=2: a handler that sends a 401 head and body but ends later, without reading, grants no credit', async () => {
  const ctx = await setup((req, res) => {
    res.writeHead(401, { 'Content-Length': '3' });
    res.write('no\n');
    setTimeout(() => res.end(), 50);
  });
  ctx.gw.request(1, { method: 'PUT', body: 2 });
  const fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  await teardown(ctx);
});

test('pipe with a slow consumer: credit is bounded by the window', async () => {
  const { Writable } = require('node:stream');
  let total = 0;
  const ctx = await setup((req, res) => {
    const slow = new Writable({ highWaterMark: 1024, write(c, e, cb) { total += c.length; setTimeout(cb, 5); } });
    req.pipe(slow).on('finish', () => res.end(String(total)));
  }, { window: 8192 });
  ctx.gw.request(1, { method: 'POST', body: 1 });
  let granted = 8192;
  let sent = 0;
  const N = 100000;
  while (sent < N) {
    const can = Math.min(granted - sent, N - sent, 3000);
    if (can > 0) {
      ctx.gw.send({ type: F.BODY, stream: 1, data: Buffer.alloc(can, 3) });
      sent += can;
      assert.ok(sent - total <= 8192 + 3000, 'never more than a window in flight and buffered');
      continue;
    }
    const f = await ctx.gw.next(5000);
    assert.equal(f.type, F.CREDIT);
    granted += f.increment;
    assert.ok(granted - total <= 8192 * 2, `granted ${granted} consumed ${total}`);
  }
  ctx.gw.send({ type: F.END, stream: 1 });
  const fs = await ctx.gw.until(F.END, 5000);
  const body = fs.find((x) => x.type === F.BODY);
  assert.equal(body.data.toString(), String(N));
  await teardown(ctx);
});

test('CANCEL: req aborted and closed, res closed without finish; later writes are dropped', async () => {
  const log = [];
  let res1;
  const ctx = await setup((req, res) => {
    res1 = res;
    req.on('aborted', () => log.push('req-aborted'));
    req.on('close', () => log.push('req-close'));
    res.on('close', () => log.push('res-close'));
    res.on('finish', () => log.push('res-finish'));
    res.write('partial');
  });
  ctx.gw.request(1, { method: 'POST', body: 1 });
  await ctx.gw.until(F.BODY);
  ctx.gw.send({ type: F.CANCEL, stream: 1, reason: 1 });
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(log.sort(), ['req-aborted', 'req-close', 'res-close']);
  assert.equal(res1.destroyed, true);
  let cbErr;
  assert.equal(res1.write('more', (e) => { cbErr = e; }), false);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(cbErr.code, 'ERR_STREAM_DESTROYED');
  assert.ok(await ctx.gw.quiet(30));
  await teardown(ctx);
});

test('res.destroy() resets the stream', async () => {
  const ctx = await setup((req, res) => { res.write('x'); res.destroy(); });
  ctx.gw.request(1);
  const fs = await ctx.gw.until(F.RESET);
  assert.equal(fs[fs.length - 1].code, P.RESET.INTERNAL);
  await teardown(ctx);
});

test('a handler that throws gets a 500', async () => {
  const orig = console.error;
  console.error = () => {};
  try {
    const ctx = await setup(() => { throw new Error('x'); });
    ctx.gw.request(1);
    const f = await ctx.gw.next();
    assert.equal(f.status, 500);
    await teardown(ctx);
  } finally {
    console.error = orig;
  }
});

test('DRAIN: open streams finish, then the worker closes the link', async () => {
  let res1;
  const ctx = await setup((req, res) => { res1 = res; });
  let closed = false;
  ctx.worker.on('close', (err) => { closed = err === null ? 'clean' : err.message; });
  ctx.gw.request(1);
  await new Promise((r) => setTimeout(r, 20));
  ctx.gw.send({ type: F.DRAIN, stream: 0, timeout_ms: 5000 });
  assert.ok(await ctx.gw.quiet(50));
  assert.equal(ctx.gw.closed, false, 'still open while a stream is');
  res1.end('bye');
  await ctx.gw.until(F.END);
  await ctx.gw.waitClosed();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(closed, 'clean');
  await ctx.gw.close();
});

test('shutdown(): RETIRE, new requests refused, close after DRAIN', async () => {
  let res1;
  const ctx = await setup((req, res) => { res1 = res; });
  ctx.gw.request(1);
  await new Promise((r) => setTimeout(r, 20));
  const done = ctx.worker.shutdown();
  let f = await ctx.gw.next();
  assert.equal(f.type, F.RETIRE);
  // a REQUEST that crossed the RETIRE on the wire
  ctx.gw.sendRaw(P.encodeFrame({ type: F.REQUEST, stream: 2, method: 'GET', target: '/', version: 11, headers: [], client: ['', 0], server: ['', 0], scheme: 'http', body: 0 }));
  ctx.gw.link._open(2, 0); // (its own link would have refused to send it)
  f = await ctx.gw.next();
  assert.deepEqual([f.type, f.stream, f.code], [F.RESET, 2, P.RESET.REFUSED]);
  res1.end('ok');
  await ctx.gw.until(F.END);
  assert.ok(await ctx.gw.quiet(50), 'waits for DRAIN');
  assert.equal(ctx.gw.closed, false);
  ctx.gw.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  await ctx.gw.waitClosed();
  await done;
  await ctx.gw.close();
});

test('a protocol violation by the gateway: ERROR with its name, then close', async () => {
  const ctx = await setup(() => {});
  let closeErr;
  ctx.worker.on('close', (e) => { closeErr = e; });
  ctx.gw.sendRaw(P.encodeFrame({ type: F.BODY, stream: 9, data: Buffer.from('x') })); // unused id
  const f = await ctx.gw.next();
  assert.equal(f.type, F.ERROR);
  assert.equal(P.errorName(f.code), 'stream_state');
  await ctx.gw.waitClosed();
  assert.equal(closeErr.errorName, 'stream_state');
  await ctx.gw.close();
});

test('the link going away cancels open streams', async () => {
  const log = [];
  const ctx = await setup((req, res) => {
    res.on('close', () => log.push('res-close'));
    req.on('aborted', () => log.push('req-aborted'));
  });
  ctx.worker.on('close', () => {});
  ctx.gw.request(1);
  await new Promise((r) => setTimeout(r, 20));
  ctx.gw.sock.destroy();
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(log.sort(), ['req-aborted', 'res-close']);
  await ctx.gw.close();
});

test('many concurrent streams are multiplexed', async () => {
  const ctx = await setup((req, res) => setTimeout(() => res.end(req.url), 5 + (Number(req.url.slice(1)) % 7)));
  for (let i = 1; i <= 50; i++) ctx.gw.request(i, { target: `/${i}` });
  const got = new Map();
  while (got.size < 50) {
    const f = await ctx.gw.next();
    if (f.type === F.BODY) got.set(f.stream, f.data.toString());
  }
  for (let i = 1; i <= 50; i++) assert.equal(got.get(i), `/${i}`);
  await teardown(ctx);
});

test('a response head larger than the gateway max_frame: RESET, the link carries on', async () => {
  const log = [];
  const ctx = await setup((req, res) => {
    res.on('close', () => log.push('close'));
    if (req.url === '/big') res.setHeader('X-Big', 'x'.repeat(20000));
    res.end('ok');
  }, {}, { max_frame: 16384 });
  ctx.gw.request(1, { target: '/big' });
  let f = await ctx.gw.next();
  assert.deepEqual([f.type, f.stream, f.code], [F.RESET, 1, P.RESET.INTERNAL]);
  ctx.gw.request(2);
  const fs = await ctx.gw.until(F.END);
  assert.deepEqual(names(fs), ['RESPONSE', 'BODY', 'END']);
  assert.equal(fs[0].stream, 2);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(log, ['close', 'close']);
  await teardown(ctx);
});

test('trailers both ways: req.trailers from END, res.addTrailers into END', async () => {
  let got;
  const ctx = await setup((req, res) => {
    req.resume();
    req.on('end', () => {
      got = { trailers: req.trailers, raw: req.rawTrailers };
      res.write('body');
      res.addTrailers({ 'X-Sum': 'abc' });
      res.end();
    });
  });
  ctx.gw.request(1, { method: 'POST', body: 1 });
  ctx.gw.send({ type: F.BODY, stream: 1, data: Buffer.from('data') });
  ctx.gw.send({ type: F.END, stream: 1, trailers: ['x-check', '42'] });
  const fs = await ctx.gw.until(F.END);
  assert.deepEqual(fs[fs.length - 1].trailers, ['X-Sum', 'abc']);
  assert.deepEqual(got, { trailers: { 'x-check': '42' }, raw: ['x-check', '42'] });
  await teardown(ctx);
});

test('a malformed frame from the gateway is reported with a rendering of it', async () => {
  const ctx = await setup(() => {});
  let closeErr;
  ctx.worker.on('close', (e) => { closeErr = e; });
  const payload = Buffer.from([0x93, 0x04, 0x01, 0x05]); // BODY with an int for data
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  ctx.gw.sendRaw(Buffer.concat([len, payload]));
  const f = await ctx.gw.next();
  assert.equal(P.errorName(f.code), 'field_type');
  await ctx.gw.waitClosed();
  assert.match(closeErr.message, /field_type.*frame: \[ 4, 1, 5 \]/);
  await ctx.gw.close();
});
