'use strict';
// End to end through the real gateway with a worker on serve()'s DEFAULT
// settings: an async handler is not capped below what peers allow, and
// handlers that start their response before reading the body still get
// Expect: 100-continue answered with 100 (their first CREDIT goes ahead of
// the RESPONSE), while a handler that answers 401 without reading never
// receives the upload.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');
const { startGateway, request } = require('../test-support/helpers');

const APP = path.join(__dirname, '../test-support/apps/defaults.js');
const OLD_DEFAULT_MAX_STREAMS = 128;

let gw;
test.before(async () => {
  gw = await startGateway(APP, { workers: 1 });
});
test.after(async () => {
  if (gw) {
    const r = await gw.stop();
    assert.equal(r.code, 0, `gateway exit: ${JSON.stringify(r)}\n${gw.log()}`);
  }
});

test('the default max streams is announced (4096)', () => {
  assert.match(gw.log(), /ready, 4096 streams/);
});

test('256 simultaneous requests to a 50 ms async handler: all 200, more than the old default inside at once', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  try {
    const fire = () => Promise.all(Array.from({ length: 256 }, () => new Promise((resolve, reject) => {
      const req = http.get(gw.url('/sleep'), { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      });
      req.setTimeout(30000, () => req.destroy(new Error('timed out')));
      req.on('error', reject);
    })));
    /* The first round opens the 256 connections; the second sends 256
     * requests on them at once, so connection setup on a loaded machine does
     * not spread them out. */
    for (let round = 0; round < 2; round++) {
      await request(gw.url('/stats?reset=1'));
      const codes = await fire();
      assert.deepEqual([...new Set(codes)], [200]);
    }
    const stats = JSON.parse((await request(gw.url('/stats'))).body);
    assert.ok(stats.maxInside > OLD_DEFAULT_MAX_STREAMS,
      `at most ${stats.maxInside} requests were inside the handler at once (old default ${OLD_DEFAULT_MAX_STREAMS})`);
    console.log(`# 256 simultaneous: ${stats.maxInside} inside the handler at once`);
  } finally {
    agent.destroy();
  }
});

/**
 * A raw HTTP/1.1 connection with a byte buffer and bounded waits.
 */
class RawConn {
  constructor(port) {
    this.sock = net.connect(port, '127.0.0.1');
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.waiters = [];
    this.sock.on('data', (c) => { this.buf = Buffer.concat([this.buf, c]); this._wake(); });
    this.sock.on('close', () => { this.closed = true; this._wake(); });
    this.sock.on('error', () => {});
  }

  _wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }

  /** Waits until pred(buf) returns a value other than undefined, at most ms. */
  until(pred, ms, what) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)), ms);
      const check = () => {
        const v = pred(this.buf);
        if (v !== undefined) { clearTimeout(t); resolve(v); return; }
        if (this.closed) { clearTimeout(t); reject(new Error(`connection closed before ${what}; got ${JSON.stringify(this.buf.toString('latin1'))}`)); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** The next response head: {status, headers (lower-case names), rest}. Consumes it. */
  async head(ms, what = 'response head') {
    const end = await this.until((b) => { const i = b.indexOf('\r\n\r\n'); return i < 0 ? undefined : i; }, ms, what);
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    this.buf = this.buf.subarray(end + 4);
    const headers = {};
    for (const l of lines.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim(); }
    return { status: Number(lines[0].split(' ')[1]), line: lines[0], headers };
  }

  /** A body of n bytes. */
  async body(n, ms) {
    await this.until((b) => (b.length >= n ? true : undefined), ms, `${n} body bytes`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** A chunked body, decoded. */
  async chunked(ms) {
    const parts = [];
    for (;;) {
      const eol = await this.until((b) => { const i = b.indexOf('\r\n'); return i < 0 ? undefined : i; }, ms, 'chunk size');
      const size = parseInt(this.buf.subarray(0, eol).toString('latin1'), 16);
      this.buf = this.buf.subarray(eol + 2);
      if (size === 0) { await this.body(2, ms); return Buffer.concat(parts); }
      parts.push(Buffer.from(await this.body(size, ms)));
      await this.body(2, ms);
    }
  }

  write(d) { this.sock.write(d); }
  close() { this.sock.destroy(); }
}

const CONTINUE_WAIT = 500; // curl waits 1 s before sending the body anyway

async function expectThenEcho(route, readBody) {
  const body = crypto.randomBytes(100000);
  const c = new RawConn(gw.port);
  try {
    c.write(`PUT ${route} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
    const first = await c.head(CONTINUE_WAIT, '100 Continue');
    assert.equal(first.line, 'HTTP/1.1 100 Continue', 'the interim 100 comes before the final head');
    c.write(body);
    const h = await c.head(10000);
    assert.equal(h.status, 200);
    assert.equal(h.headers.connection, undefined, 'no Connection: close');
    const got = await readBody(c, h);
    /* keep-alive: a second request on the same connection */
    c.write('GET /hello HTTP/1.1\r\nHost: x\r\n\r\n');
    const h2 = await c.head(10000, 'second response');
    assert.equal(h2.status, 200);
    assert.equal((await c.body(Number(h2.headers['content-length']), 10000)).toString(), 'Hello, world!\n');
    return { body, got };
  } finally {
    c.close();
  }
}

test('Expect: 100-continue, head flushed then req.pipe(res): 100 first, then the echo, connection kept', async () => {
  const { body, got } = await expectThenEcho('/echo-flush', (c, h) => c.body(Number(h.headers['content-length']), 10000));
  assert.ok(got.equals(body));
});

test('Expect: 100-continue, res.write() then req.pipe(res): 100 first, then the echo, connection kept', async () => {
  const { body, got } = await expectThenEcho('/echo-prefix', (c) => c.chunked(10000));
  assert.ok(got.equals(Buffer.concat([Buffer.from('echo:'), body])));
});

test('Expect: 100-continue and a handler answering 401 without reading: no 100, and the body never reaches the worker', async () => {
  const id = `r${Date.now()}`;
  const c = new RawConn(gw.port);
  try {
    c.write(`PUT /refuse?id=${id} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n`);
    const h = await c.head(10000);
    assert.equal(h.status, 401, 'the final status, not 100');
    /* a client that sends the body anyway (curl does after 1 s) */
    c.write(Buffer.alloc(1000000, 'u'));
    let n;
    for (let i = 0; i < 100; i++) {
      n = JSON.parse((await request(gw.url(`/received?id=${id}`))).body);
      if (n !== null) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(n, 0, 'request-body bytes that reached the worker');
  } finally {
    c.close();
  }
});
