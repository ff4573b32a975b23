'use strict';
// The protocol core's WebSocket parts (PROTOCOL.md 3.1 websocket, 3.2 body 3,
// 3.3 RESPONSE 101, 3.14 MESSAGE, 3.15 CLOSE, 5.2): codec and link states,
// until the shared vectors cover them.
const test = require('node:test');
const assert = require('node:assert/strict');
const { pack } = require('msgpackr');
const P = require('../lib/protocol');

const F = P.FRAME;

function decodeAll(buf) {
  const out = [];
  const d = new P.FrameDecoder();
  d.feed(buf, (f) => out.push(f));
  d.finish();
  return out;
}

function decodeError(payload) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  try {
    decodeAll(Buffer.concat([len, payload]));
  } catch (e) {
    if (e instanceof P.ProtocolError) return e.errorName;
    throw e;
  }
  return null;
}

const withLen = (payload) => {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]).toString('hex');
};

test('MESSAGE and CLOSE: canonical bytes (msgpackr as oracle) and round trip', () => {
  const cases = [
    [{ type: F.MESSAGE, stream: 1, flags: 1, data: Buffer.from('hi') }, [15, 1, 1, Buffer.from('hi')]],
    [{ type: F.MESSAGE, stream: 2 ** 40, flags: 2, data: Buffer.alloc(300, 7) }, null],
    [{ type: F.MESSAGE, stream: 3, flags: 0, data: Buffer.alloc(0) }, [15, 3, 0, Buffer.alloc(0)]],
    [{ type: F.MESSAGE, stream: 3, flags: 4, data: Buffer.from('p') }, [15, 3, 4, Buffer.from('p')]],
    [{ type: F.MESSAGE, stream: 3, flags: 8, data: Buffer.from('p') }, [15, 3, 8, Buffer.from('p')]],
    [{ type: F.CLOSE, stream: 1, code: 1000 }, [16, 1, 1000]],
    [{ type: F.CLOSE, stream: 1, code: 4999, reason: 'bye' }, [16, 1, 4999, 'bye']],
  ];
  assert.equal(P.encodeFrame(cases[0][0]).toString('hex'), '00000008940f0101c4026869');
  assert.equal(P.encodeFrame(cases[5][0]).toString('hex'), '00000006931001cd03e8');
  for (const [f, oracle] of cases) {
    const enc = P.encodeFrame(f);
    if (oracle) assert.equal(enc.toString('hex'), withLen(pack(oracle)), `${JSON.stringify(oracle)}`);
    const [g] = decodeAll(enc);
    assert.deepEqual({ ...g, data: g.data && Buffer.from(g.data) }, { ...f, data: f.data && Buffer.from(f.data) });
  }
  // an empty reason is omitted, as CANCEL's message is
  assert.equal(P.encodeFrame({ type: F.CLOSE, stream: 1, code: 1000, reason: '' }).toString('hex'), '00000006931001cd03e8');
  // a reason sent as str 8 (non-canonical for a short one) decodes the same
  assert.deepEqual(decodeAll(Buffer.from(withLen(Buffer.from('941001cd03e8d90162', 'hex')), 'hex'))[0],
    { type: F.CLOSE, stream: 1, code: 1000, reason: 'b' });
});

test('MESSAGE and CLOSE: field errors (flags, code range, types)', () => {
  for (const flags of [5, 6, 7, 9, 16, 255]) assert.equal(decodeError(pack([15, 1, flags, Buffer.from('x')])), 'field_value', `flags ${flags}`);
  for (const flags of [0, 1, 2, 3, 4, 8]) assert.equal(decodeError(pack([15, 1, flags, Buffer.from('x')])), null, `flags ${flags}`);
  assert.equal(decodeError(pack([15, 1, 1])), 'field_type', 'data missing');
  assert.equal(decodeError(pack([15, 1, true, Buffer.from('x')])), 'field_type', 'flags a bool');
  assert.equal(decodeError(pack([15, 1, 1, 5])), 'field_type', 'data an integer');
  assert.equal(decodeError(pack([15, 0, 1, Buffer.from('x')])), 'field_value', 'stream 0');
  assert.equal(decodeError(pack([16, 1, 999])), 'field_value');
  assert.equal(decodeError(pack([16, 1, 5000])), 'field_value');
  assert.equal(decodeError(pack([16, 1])), 'field_type');
  assert.equal(decodeError(pack([16, 1, 1000, Buffer.from('bin')])), 'field_type', 'reason is text, not bin');
  assert.equal(decodeError(pack([17, 1, 1000])), 'unknown_type');
});

test('HELLO websocket, REQUEST body 3, RESPONSE 101', () => {
  const hello = { type: F.HELLO, stream: 0, version: 1, settings: { max_streams: 1, window: 0, server: 's', websocket: true } };
  const enc = P.encodeFrame(hello);
  // fixmap of 4 (msgpackr would write map 16), keys in canonical order, websocket last as true
  assert.equal(enc.toString('hex'), '0000002e9401000184ab6d61785f73747265616d7301a677696e646f7700a6736572766572a173a9776562736f636b6574c3');
  assert.deepEqual(decodeAll(enc)[0].settings, hello.settings);
  // false is the default, and not sent
  assert.equal(P.encodeFrame({ ...hello, settings: { max_streams: 1, window: 0, websocket: false } }).toString('hex'),
    P.encodeFrame({ ...hello, settings: { max_streams: 1, window: 0 } }).toString('hex'));
  assert.equal(decodeAll(Buffer.from(withLen(pack([1, 0, 1, { window: 1, websocket: false }])), 'hex'))[0].settings.websocket, false);
  assert.equal(decodeError(pack([1, 0, 1, { window: 1, websocket: 1 }])), 'field_type');
  assert.equal(decodeError(pack([1, 0, 1, { window: 1, websocket: 'yes' }])), 'field_type');

  const req = [2, 1, 'GET', '/', 11, [], ['', 0], ['', 0], 'http', 3];
  assert.equal(decodeAll(Buffer.from(withLen(pack(req)), 'hex'))[0].body, 3);
  assert.equal(decodeError(pack([...req.slice(0, 9), 4])), 'field_value');
  assert.equal(decodeAll(Buffer.from(withLen(pack([3, 1, 101, [], 0])), 'hex'))[0].status, 101);
  for (const st of [100, 102, 199, 600]) assert.equal(decodeError(pack([3, 1, st, [], 0])), 'field_value', `status ${st}`);
});

/* A worker-side and a gateway-side link, past the handshake. */
function links({ workerWs = true, gatewayWs = true, window = 10 } = {}) {
  const w = new P.Link('worker', { maxStreams: 8 });
  const g = new P.Link('gateway');
  const wh = { type: F.HELLO, stream: 0, version: 1, settings: { max_streams: 8, window, websocket: workerWs } };
  const gh = { type: F.HELLO, stream: 0, version: 1, settings: { window, websocket: gatewayWs } };
  w.send(wh); g.recv(wh);
  if (gatewayWs && !workerWs) {
    // a gateway may not offer WebSockets to a worker that did not ask; a
    // worker that gets the key anyway ignores it
    assert.equal(errName(() => g.send(gh)), 'rejected');
    gh.settings.websocket = false;
    g.send(gh);
    w.recv({ ...gh, settings: { window, websocket: true } });
  } else {
    g.send(gh); w.recv(gh);
  }
  return { w, g };
}

const REQ = (sid, body = 3) => ({
  type: F.REQUEST, stream: sid, method: 'GET', target: '/', version: 11, headers: [],
  client: ['', 0], server: ['', 0], scheme: 'http', body,
});
const MSG = (sid, flags, n) => ({ type: F.MESSAGE, stream: sid, flags, data: Buffer.alloc(n, 0x61) });

function errName(fn) {
  try {
    fn();
  } catch (e) {
    if (e instanceof P.ProtocolError) return e.errorName;
    if (e instanceof P.RejectedError) return 'rejected';
    throw e;
  }
  return 'ok';
}

test('link: WebSocket frames on a link without websocket are unexpected_frame', () => {
  for (const [wWs, gWs] of [[false, false], [true, false], [false, true]]) {
    const mk = () => links({ workerWs: wWs, gatewayWs: gWs });
    let { w, g } = mk();
    assert.equal(w.websocket, false);
    assert.equal(errName(() => g.send(REQ(1))), 'rejected');
    assert.equal(errName(() => w.recv(REQ(1))), 'unexpected_frame');
    ({ w, g } = mk());
    w.recv(REQ(1, 0));
    assert.equal(errName(() => w.recv(MSG(1, 1, 1))), 'unexpected_frame', 'MESSAGE');
    ({ w, g } = mk());
    w.recv(REQ(1, 1));
    assert.equal(errName(() => w.recv({ type: F.CLOSE, stream: 1, code: 1000 })), 'unexpected_frame', 'CLOSE');
    ({ w, g } = mk());
    g.send(REQ(1, 0));
    assert.equal(errName(() => g.recv({ type: F.RESPONSE, stream: 1, status: 101, headers: [], body: 0 })), 'unexpected_frame', 'RESPONSE 101');
  }
});

test('link: a WebSocket stream before and after RESPONSE 101 (worker and gateway views)', () => {
  const { w, g } = links();
  assert.equal(w.websocket, true);
  assert.equal(g.websocket, true);
  g.send(REQ(1)); w.recv(REQ(1));
  const sw = w.stream(1);
  assert.equal(sw.req, P.REQ_OPEN);
  assert.equal(sw.recvWin, 10);
  // before 101: MESSAGE and CLOSE are stream_state both ways; CREDIT and LIMIT are fine
  assert.equal(errName(() => w.send(MSG(1, 1, 1))), 'rejected');
  const { g: g2 } = links();
  g2.send(REQ(1));
  assert.equal(errName(() => g2.recv(MSG(1, 1, 1))), 'stream_state');
  const { w: w2 } = links();
  w2.recv(REQ(1));
  assert.equal(errName(() => w2.recv(MSG(1, 1, 1))), 'stream_state');
  const { w: w3 } = links();
  w3.recv(REQ(1));
  assert.equal(errName(() => w3.recv({ type: F.BODY, stream: 1, data: Buffer.alloc(0) })), 'stream_state', 'no request body');
  const { w: w4 } = links();
  w4.recv(REQ(1));
  assert.equal(errName(() => w4.recv({ type: F.END, stream: 1 })), 'stream_state', 'no request END');
  for (const f of [{ type: F.CREDIT, stream: 1, increment: 5 }, { type: F.LIMIT, stream: 1, max_body: 9 }]) {
    w.send(f); g.recv(f);
  }
  // 101 with a body is refused; 101 on an ordinary stream too
  assert.equal(errName(() => w.send({ type: F.RESPONSE, stream: 1, status: 101, headers: [], body: 1 })), 'rejected');
  const { g: g3 } = links();
  g3.send(REQ(1));
  assert.equal(errName(() => g3.recv({ type: F.RESPONSE, stream: 1, status: 101, headers: [], body: 1 })), 'stream_state');
  const acc = { type: F.RESPONSE, stream: 1, status: 101, headers: [], body: 0 };
  w.send(acc); g.recv(acc);
  assert.equal(w.open, 1, 'still open after 101');
  assert.equal(g.open, 1);
  // data within the windows, pings, pongs
  const ok = [
    ['w', MSG(1, 3, 4)], ['w', MSG(1, 1, 6)],
    ['w', MSG(1, 4, 125)], ['g', MSG(1, 8, 3)], ['g', MSG(1, 0, 15)], ['w', MSG(1, 0, 0)], // 15 = 10 + 5 granted
  ];
  for (const [who, f] of ok) {
    if (who === 'w') { w.send(f); g.recv(f); } else { g.send(f); w.recv(f); }
  }
  assert.equal(sw.sendWin, 0);
  assert.equal(sw.recvWin, 0, 'the worker granted 5 more than its window');
  assert.equal(errName(() => w.send(MSG(1, 0, 1))), 'rejected', 'beyond the window');
  assert.equal(errName(() => g.recv(MSG(1, 0, 1))), 'flow_control');
  assert.equal(errName(() => w.recv(MSG(1, 0, 1))), 'flow_control');
});

test('link: MESSAGE rules (direction of PING/PONG, 125 bytes, text bit, flow control) and CLOSE', () => {
  const open = () => {
    const l = links({ window: 100 });
    l.g.send(REQ(1)); l.w.recv(REQ(1));
    const acc = { type: F.RESPONSE, stream: 1, status: 101, headers: [], body: 0 };
    l.w.send(acc); l.g.recv(acc);
    return l;
  };
  let l = open();
  assert.equal(errName(() => l.w.recv(MSG(1, 4, 1))), 'field_value', 'PING from the gateway');
  l = open();
  assert.equal(errName(() => l.g.recv(MSG(1, 8, 1))), 'field_value', 'PONG from the worker');
  l = open();
  assert.equal(errName(() => l.g.recv(MSG(1, 4, 126))), 'field_value', 'PING of 126 bytes');
  assert.equal(errName(() => open().w.send(MSG(1, 8, 1))), 'rejected');
  assert.equal(errName(() => open().w.send(MSG(1, 4, 126))), 'rejected');
  assert.equal(errName(() => open().g.send(MSG(1, 4, 1))), 'rejected');
  l = open();
  l.w.recv(MSG(1, 3, 1));
  l.w.recv(MSG(1, 8, 1)); // a PONG between pieces does not end the message
  assert.equal(errName(() => l.w.recv(MSG(1, 0, 1))), 'stream_state', 'binary piece of a text message');
  l = open();
  l.w.recv(MSG(1, 2, 1)); l.w.recv(MSG(1, 0, 1)); l.w.recv(MSG(1, 1, 1)); // binary message, then a text one
  l.w.send(MSG(1, 2, 1));
  assert.equal(errName(() => l.w.send(MSG(1, 1, 1))), 'rejected');
  l.w.send(MSG(1, 4, 0)); l.w.send(MSG(1, 0, 0));
  l = open();
  assert.equal(errName(() => l.w.recv(MSG(1, 0, 101))), 'flow_control');
  // CLOSE closes the stream on both sides; later frames for it are ignored
  l = open();
  const close = { type: F.CLOSE, stream: 1, code: 1000, reason: 'bye' };
  l.w.send(close); l.g.recv(close);
  assert.equal(l.w.open, 0);
  assert.equal(l.g.open, 0);
  assert.ok(l.w.recv(MSG(1, 1, 1)).ignored);
  assert.ok(l.w.recv({ type: F.CLOSE, stream: 1, code: 1001 }).ignored);
  assert.ok(l.g.recv(MSG(1, 1, 1)).ignored);
  assert.equal(errName(() => l.w.send(MSG(1, 1, 1))), 'rejected');
  // CLOSE before 101 is stream_state; BODY/END/RESPONSE after it too
  l = links();
  l.w.recv(REQ(1));
  assert.equal(errName(() => l.w.recv({ type: F.CLOSE, stream: 1, code: 1000 })), 'stream_state');
  l = open();
  assert.equal(errName(() => l.g.recv({ type: F.BODY, stream: 1, data: Buffer.alloc(0) })), 'stream_state');
  l = open();
  assert.equal(errName(() => l.g.recv({ type: F.RESPONSE, stream: 1, status: 200, headers: [], body: 0 })), 'stream_state');
  l = open();
  assert.equal(errName(() => l.g.recv({ type: F.END, stream: 1 })), 'stream_state');
  // a CLOSE for an unused stream is stream_state
  assert.equal(errName(() => open().w.recv({ type: F.CLOSE, stream: 9, code: 1000 })), 'stream_state');
});

test('link: a refused WebSocket is an ordinary response', () => {
  const { w, g } = links();
  g.send(REQ(1)); w.recv(REQ(1));
  const r = { type: F.RESPONSE, stream: 1, status: 403, headers: [], body: 1 };
  w.send(r); g.recv(r);
  assert.equal(errName(() => w.send(MSG(1, 1, 0))), 'rejected');
  const b = { type: F.BODY, stream: 1, data: Buffer.from('no') };
  w.send(b); g.recv(b);
  w.send({ type: F.END, stream: 1 }); g.recv({ type: F.END, stream: 1 });
  assert.equal(w.open, 0);
  assert.equal(g.open, 0);
});

test('the runtime writes canonical WebSocket frames (RESPONSE 101, MESSAGE pieces, PING, CREDIT, CLOSE)', async () => {
  const { Worker } = require('../lib/worker');
  const chunks = [];
  const sink = { destroyed: false, write(b) { chunks.push(Buffer.from(b)); return true; }, cork() {}, uncork() {}, end() {}, destroy() {}, writableLength: 0 };
  let stream = null;
  const worker = new Worker({ socket: 'unused', websocket: true, initialWindow: 100, wsWindow: 100, onRequest: (s) => { stream = s; } });
  worker.sock = sink;
  const hello = { type: F.HELLO, stream: 0, version: 1, settings: { max_streams: 8, window: 100, websocket: true } };
  worker.link.send(hello);
  worker._onData(P.encodeFrame({ type: F.HELLO, stream: 0, version: 1, settings: { window: 300, max_frame: 16384, websocket: true } }));
  worker._onData(P.encodeFrame({ ...REQ(2 ** 40), headers: ['sec-websocket-protocol', 'a'] }));
  stream.accept(['sec-websocket-protocol', 'a']);
  stream.message(Buffer.alloc(200, 1), true, true, null);
  stream.message(Buffer.alloc(0), false, true, null);
  stream.message(Buffer.alloc(150, 2), false, true, null); // 100 now, 50 after credit
  stream.ping(Buffer.from('p'), null);
  worker._onData(P.encodeFrame(MSG(2 ** 40, 1, 80)));
  stream.wsConsumed(stream.received);
  worker._onData(P.encodeFrame({ type: F.CREDIT, stream: 2 ** 40, increment: 50 }));
  stream.close(4000, Buffer.from('bye'));
  await new Promise(setImmediate);
  const out = Buffer.concat(chunks);
  const raws = [];
  for (let p = 0; p < out.length;) { const len = out.readUInt32BE(p); raws.push(out.subarray(p, p + 4 + len)); p += 4 + len; }
  const frames = raws.map((r) => decodeAll(r)[0]);
  for (let i = 0; i < raws.length; i++) assert.equal(P.encodeFrame(frames[i]).toString('hex'), raws[i].toString('hex'), `frame ${i} canonical`);
  assert.deepEqual(frames.map((f) => [P.FRAME_NAMES[f.type], f.flags !== undefined ? f.flags : f.status || f.increment || f.code, f.data ? f.data.length : null]), [
    ['RESPONSE', 101, null], ['MESSAGE', 1, 200], ['MESSAGE', 0, 0], ['MESSAGE', 2, 100], ['MESSAGE', 4, 1],
    ['CREDIT', 80, null], ['MESSAGE', 0, 50], ['CLOSE', 4000, null],
  ]);
  assert.equal(frames[7].reason, 'bye');
  assert.equal(worker.link.open, 0);
  worker._close(null);
});
