'use strict';
// Unit tests of the protocol core beyond the shared vectors, and of the
// runtime's own encoders (checked against the canonical encoder).
const test = require('node:test');
const assert = require('node:assert/strict');
const P = require('../lib/protocol');
const { Worker, parseAddress } = require('../lib/worker');
const { handleStream } = require('../lib/http');

const F = P.FRAME;

function frames(buf) {
  const out = [];
  const d = new P.FrameDecoder();
  d.feed(buf, (f) => out.push(f));
  d.finish();
  return out;
}

function splitRaw(buf) {
  const out = [];
  for (let p = 0; p < buf.length;) {
    const len = buf.readUInt32BE(p);
    out.push(buf.subarray(p, p + 4 + len));
    p += 4 + len;
  }
  return out;
}

/** A Worker on a sink socket, past the handshake; returns {worker, feed(frame), output()}. */
function sinkWorker(handler, gwSettings = {}, opts = {}) {
  const chunks = [];
  const sink = { destroyed: false, write(b) { chunks.push(Buffer.from(b)); return true; }, cork() {}, uncork() {}, end() {}, destroy() {}, writableLength: 0 };
  const worker = new Worker({ socket: 'unused', onRequest: (s) => handleStream(s, handler, opts), ...opts });
  worker.sock = sink;
  const hello = { type: F.HELLO, stream: 0, version: 1, settings: { pid: 1, lib: 'x', max_streams: 128, window: worker.window } };
  worker.link.send(hello);
  worker._onData(P.encodeFrame({ type: F.HELLO, stream: 0, version: 1, settings: { window: 262144, ...gwSettings } }));
  return {
    worker,
    feed: (f) => worker._onData(P.encodeFrame(f)),
    output: async () => {
      await new Promise(setImmediate);
      const b = Buffer.concat(chunks);
      chunks.length = 0;
      return b;
    },
  };
}

const REQ = (sid, extra = {}) => ({
  type: F.REQUEST, stream: sid, method: 'GET', target: '/', version: 11, headers: ['host', 'h'],
  client: ['127.0.0.1', 1], server: ['127.0.0.1', 2], scheme: 'http', body: 0, ...extra,
});

test('the runtime writes canonical frames (RESPONSE, BODY string/buffer/large, END, CREDIT, LIMIT, RESET, PONG)', async () => {
  const big = Buffer.alloc(40000, 9);
  const w = sinkWorker((req, res) => {
    if (req.url === '/str') { res.setHeader('X-A', ['1', '2']); res.end('héllo'); }
    if (req.url === '/buf') { res.write(Buffer.from([1, 2, 3])); res.write(big); res.end(); }
    if (req.url === '/upload') { req.resume(); req.on('end', () => res.end()); }
    if (req.url === '/reset') res.destroy();
  }, {}, { maxBody: 2 ** 40, window: 1024 });
  w.feed(REQ(1, { target: '/str' }));
  w.feed(REQ(2, { target: '/buf' }));
  w.feed(REQ(2 ** 40, { target: '/upload', method: 'POST', body: 1 }));
  w.feed({ type: F.BODY, stream: 2 ** 40, data: Buffer.alloc(1024, 1) });
  w.feed({ type: F.PING, stream: 0, opaque: 2 ** 35 });
  w.feed(REQ(2 ** 40 + 1, { target: '/reset' }));
  await new Promise(setImmediate);
  w.feed({ type: F.END, stream: 2 ** 40 });
  const out = await w.output();
  const raws = splitRaw(out);
  const decoded = raws.map((r) => frames(r)[0]);
  for (let i = 0; i < raws.length; i++) {
    assert.equal(P.encodeFrame(decoded[i]).toString('hex'), raws[i].toString('hex'), `frame ${i} (${P.FRAME_NAMES[decoded[i].type]}) is canonical`);
  }
  const types = decoded.map((f) => `${P.FRAME_NAMES[f.type]}:${f.stream}`);
  assert.ok(types.includes(`LIMIT:${2 ** 40}`));
  assert.ok(types.includes(`CREDIT:${2 ** 40}`));
  assert.ok(types.includes('PONG:0'));
  assert.ok(types.includes(`RESET:${2 ** 40 + 1}`));
  const s1 = decoded.filter((f) => f.stream === 1);
  assert.deepEqual(s1[0].headers, ['X-A', '1', 'X-A', '2', 'Content-Length', '6']);
  assert.equal(s1[1].data.toString(), 'héllo');
  const body2 = Buffer.concat(decoded.filter((f) => f.stream === 2 && f.type === F.BODY).map((f) => f.data));
  assert.ok(body2.equals(Buffer.concat([Buffer.from([1, 2, 3]), big])));
});

test('decoder: BODY data is copied out of a transient buffer, a view otherwise', () => {
  const bytes = P.encodeFrame({ type: F.BODY, stream: 1, data: Buffer.from('abc') });
  const got = [];
  new P.FrameDecoder().feed(bytes, (f) => got.push(f), true);
  new P.FrameDecoder().feed(bytes, (f) => got.push(f), false);
  bytes.fill(0);
  assert.equal(got[0].data.toString(), 'abc');
  assert.equal(got[1].data.toString(), '\0\0\0');
});

test('decoder: frame_size is reported from the prefix alone, before any payload', () => {
  const d = new P.FrameDecoder(16384);
  const got = [];
  assert.throws(() => d.feed(Buffer.from([0, 0, 0x40, 0x01]), (f) => got.push(f)), (e) => e.errorName === 'frame_size');
  assert.throws(() => d.feed(Buffer.from([1]), () => {}), (e) => e.errorName === 'frame_size', 'sticky');
});

test('decoder: interned short strings are exact whatever collides', () => {
  const names = [];
  for (let i = 0; i < 5000; i++) names.push(`h${i.toString(36)}`);
  for (let round = 0; round < 2; round++) {
    const headers = [];
    for (const n of names) headers.push(n, `${n}-v`);
    const f = frames(P.encodeFrame(REQ(1, { headers: headers.slice(0, 2000) })))[0];
    assert.deepEqual(f.headers, headers.slice(0, 2000));
  }
  const hi = frames(P.encodeFrame(REQ(1, { headers: ['x', '\u00ff\u0080\u0000'] })))[0];
  assert.deepEqual(hi.headers, ['x', '\u00ff\u0080\u0000']);
});

test('decoder: REQUEST version is 10, 11 or 20 (HTTP/2); anything else is field_value', () => {
  for (const version of [10, 11, 20]) {
    const [f] = frames(P.encodeFrame(REQ(1, { version })));
    assert.equal(f.version, version);
  }
  for (const version of [0, 9, 12, 19, 21, 30]) {
    assert.throws(() => frames(P.encodeFrame(REQ(1, { version }))),
      (e) => e instanceof P.ProtocolError && e.errorName === 'field_value', `version ${version}`);
  }
});

test('StreamTable: set/get/delete/values with colliding ids', () => {
  const t = new P.StreamTable(16);
  const ids = [1, 17, 33, 2 ** 40 + 1, 2 ** 53 - 1, 5];
  for (const id of ids) t.set(id, new P.StreamState(id));
  assert.equal(t.size, 6);
  for (const id of ids) assert.equal(t.get(id).id, id);
  assert.equal(t.get(49), undefined);
  assert.equal(t.delete(17), true);
  assert.equal(t.delete(17), false);
  assert.equal(t.get(33).id, 33);
  assert.deepEqual(t.values().map((s) => s.id), [1, 5, 33, 2 ** 40 + 1, 2 ** 53 - 1]);
  t.clear();
  assert.equal(t.size, 0);
});

test('request credit: batches of half a window, never more than a window outstanding', async () => {
  let req;
  const w = sinkWorker((r) => { req = r; }, {}, { window: 1000 });
  w.feed(REQ(1, { method: 'POST', body: 1 }));
  const credits = async () => frames(await w.output()).filter((f) => f.type === F.CREDIT).map((f) => f.increment);
  w.feed({ type: F.BODY, stream: 1, data: Buffer.alloc(400) });
  assert.deepEqual(await credits(), []);
  req.read(400);
  req.read(0);
  assert.deepEqual(await credits(), [], '400 < half a window');
  w.feed({ type: F.BODY, stream: 1, data: Buffer.alloc(600) });
  assert.deepEqual(await credits(), [400], 'window exhausted: what was consumed so far');
  req.read(300);
  req.read(0);
  assert.deepEqual(await credits(), [], '300 more consumed, 400 outstanding: not yet');
  req.read(300);
  req.read(0);
  assert.deepEqual(await credits(), [600], 'half a window reached: consumed + window - granted');
  assert.equal(w.worker.link.stream(1).recvWin, 1000, 'a full window outstanding, nothing buffered');
});

test('parseAddress', () => {
  assert.deepEqual(parseAddress('/tmp/x.sock'), { path: '/tmp/x.sock' });
  assert.deepEqual(parseAddress('unix:/tmp/x.sock'), { path: '/tmp/x.sock' });
  assert.deepEqual(parseAddress('tcp:127.0.0.1:9000'), { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(parseAddress('tcp:[::1]:9000'), { host: '::1', port: 9000 });
  assert.throws(() => parseAddress(''));
  assert.throws(() => parseAddress('tcp:host:0'));
});

test('Link: rejected sends leave the state unchanged', () => {
  const l = new P.Link('worker', { maxStreams: 2 });
  assert.throws(() => l.send({ type: F.PING, stream: 0, opaque: 1 }), P.RejectedError);
  l.send({ type: F.HELLO, stream: 0, version: 1, settings: { max_streams: 2, window: 10 } });
  l.recv({ type: F.HELLO, stream: 0, version: 1, settings: { window: 5 } });
  l.recv(REQ(3));
  assert.throws(() => l.send({ type: F.BODY, stream: 3, data: Buffer.alloc(1) }), P.RejectedError); // before RESPONSE
  l.send({ type: F.RESPONSE, stream: 3, status: 200, headers: [], body: 1 });
  assert.throws(() => l.send({ type: F.BODY, stream: 3, data: Buffer.alloc(6) }), /beyond the window/);
  l.send({ type: F.BODY, stream: 3, data: Buffer.alloc(5) });
  assert.equal(l.stream(3).sendWin, 0);
  assert.throws(() => l.send(REQ(4)), P.RejectedError); // a worker never sends REQUEST
  assert.throws(() => l.recv(REQ(2)), (e) => e.errorName === 'stream_state');
  assert.equal(l.failed, true);
});
