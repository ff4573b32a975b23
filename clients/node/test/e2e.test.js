'use strict';
// End to end through the real gateway (build/server/sluice, or
// $SLUICE_BUILD_DIR/server/sluice) with a node:http-style worker.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const http = require('node:http');
const { Readable } = require('node:stream');
const { startGateway, request, raw, waitFor, sleep } = require('../test-support/helpers');

const APP = path.join(__dirname, '../test-support/apps/basic.js');
const MiB = 1 << 20;

let gw;
let tmp;
test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-e2e-'));
  gw = await startGateway(APP, { workers: 1 });
});
test.after(async () => {
  if (gw) {
    const r = await gw.stop();
    assert.equal(r.code, 0, `gateway exit: ${JSON.stringify(r)}\n${gw.log()}`);
    assert.match(gw.log(), /exited with status 0/, 'the worker exited cleanly on shutdown');
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

const events = async (id) => JSON.parse((await request(gw.url(`/events?id=${id}`))).body);

test('hello: 200, body, Content-Length from res.end(body)', async () => {
  const r = await request(gw.url('/hello'));
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'Hello, world!\n');
  assert.equal(r.headers['content-length'], '14');
  assert.match(r.headers.server, /^sluice/);
});

test('request head: method, url, headers, address, version', async () => {
  const r = await request(gw.url('/info?a=b'), { headers: { 'X-Test': 'yes', 'X-Dup': ['1', '2'] } });
  const info = JSON.parse(r.body);
  assert.equal(info.method, 'GET');
  assert.equal(info.url, '/info?a=b');
  assert.equal(info.httpVersion, '1.1');
  assert.equal(info.headers['x-test'], 'yes');
  assert.equal(info.headers['x-dup'], '1, 2');
  assert.equal(info.remoteAddress, '127.0.0.1');
  assert.equal(info.localPort, gw.port);
  assert.ok(info.remotePort > 0);
  assert.equal(info.complete, true);
});

test('HTTP/1.0 request', async () => {
  const out = await raw(gw.port, 'GET /info HTTP/1.0\r\nHost: x\r\n\r\n');
  assert.match(out, /^HTTP\/1\.1 200/);
  assert.match(out, /"httpVersion":"1.0"/);
});

test('POST echo of 3 MiB (req.pipe(res))', async () => {
  const body = crypto.randomBytes(3 * MiB);
  const r = await request(gw.url('/echo'), { method: 'POST', body });
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(body));
});

test('chunked upload through pipeline(req, transform, res)', async () => {
  const src = Readable.from((function* gen() { for (let i = 0; i < 100; i++) yield Buffer.from(`line ${i} abc\n`); }()));
  const r = await request(gw.url('/upper'), { method: 'POST', body: src, headers: { 'Transfer-Encoding': 'chunked' } });
  assert.equal(r.status, 200);
  const text = r.body.toString();
  assert.ok(text.startsWith('LINE 0 ABC\n') && text.endsWith('LINE 99 ABC\n'));
});

test('HEAD, 204, 404, 599 and a body on 201', async () => {
  let r = await request(gw.url('/hello'), { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 0);
  r = await request(gw.url('/status?code=204&body=ignored'));
  assert.equal(r.status, 204);
  assert.equal(r.body.length, 0);
  r = await request(gw.url('/nope'));
  assert.equal(r.status, 404);
  r = await request(gw.url('/status?code=599'));
  assert.equal(r.status, 599);
  r = await request(gw.url('/status?code=201&body=made'));
  assert.equal(r.status, 201);
  assert.equal(r.body.toString(), 'made');
});

test('headers: repeated Set-Cookie, appendHeader, writeHead merges, array form', async () => {
  let r = await request(gw.url('/headers'));
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.headers['x-multi'], 'one, two');
  assert.equal(r.headers['x-number'], '42');
  assert.equal(r.headers['x-late'], 'yes');
  r = await request(gw.url('/writehead-array'));
  assert.equal(r.status, 203);
  assert.equal(r.headers['x-a'], '1, 2');
});

test('response API state: headersSent, flushHeaders, errors, finish/close order', async () => {
  const r = await request(gw.url('/api-state'));
  const s = JSON.parse(r.body);
  assert.deepEqual(s.before, { headersSent: false, writableEnded: false, finished: false });
  assert.deepEqual(s.has, { removed: false, type: 'application/json', names: ['content-type'] });
  assert.deepEqual(s.after, { headersSent: true });
  assert.equal(s.threw, 'ERR_HTTP_HEADERS_SENT');
  await waitFor(async () => (await events('api-state')).length === 3, 2000);
  assert.deepEqual(await events('api-state'), ['finish', 'end-cb', 'close']);
});

test('response trailers (chunked)', async () => {
  const r = await request(gw.url('/trailers'), { method: 'POST', body: 'abcdef', headers: { TE: 'trailers' } });
  assert.equal(r.status, 200);
  assert.match(r.body.toString(), /^got 6 bytes/);
  assert.equal(r.trailers['x-count'], '6');
});

test('pipelined requests on one connection, request trailers reach req.trailers', async () => {
  const out = await raw(gw.port, 'POST /trailers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n' +
    '5\r\nhello\r\n0\r\nX-Client-Trailer: yes\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  const first = out.indexOf('HTTP/1.1 200');
  const second = out.indexOf('HTTP/1.1 200', first + 1);
  assert.ok(first === 0 && second > 0, out);
  assert.match(out.slice(0, second), /got 5 bytes; trailers \{"x-client-trailer":"yes"\}/);
  assert.match(out.slice(0, second), /X-Count: 5/);
  assert.match(out.slice(second), /Hello, world!/);
});

test('streamed response honours write() === false and drain (8 MiB, window 256 KiB)', async () => {
  const r = await request(gw.url('/stream?n=128&size=65536&id=st1'));
  assert.equal(r.status, 200);
  assert.equal(r.body.length, 128 * 65536);
  const ev = await waitFor(async () => { const e = await events('st1'); return e.length ? e : null; }, 2000);
  const m = /close falses=(\d+) drains=(\d+) finished=true/.exec(ev[0]);
  assert.ok(m, ev[0]);
  assert.ok(Number(m[1]) > 0, 'write() returned false at least once');
  assert.equal(m[1], m[2], 'one drain per false');
});

test('download piped from a file (64 MiB), read slowly by the client', async () => {
  const file = path.join(tmp, 'blob.bin');
  const data = crypto.randomBytes(64 * MiB);
  fs.writeFileSync(file, data);
  const want = crypto.createHash('sha256').update(data).digest('hex');
  const got = await new Promise((resolve, reject) => {
    http.get(gw.url(`/download?id=dl1&file=${encodeURIComponent(file)}`), (res) => {
      const h = crypto.createHash('sha256');
      let n = 0;
      let paused = false;
      res.on('data', (c) => {
        h.update(c);
        n += c.length;
        if (!paused && n > 8 * MiB) { // stall for a while: backpressure reaches the worker
          paused = true;
          res.pause();
          setTimeout(() => res.resume(), 300);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, len: res.headers['content-length'], n, sha: h.digest('hex') }));
      res.on('error', reject);
    }).on('error', reject);
  });
  assert.deepEqual(got, { status: 200, len: String(64 * MiB), n: 64 * MiB, sha: want });
  assert.deepEqual(await waitFor(async () => { const e = await events('dl1'); return e.length ? e : null; }, 2000), ['done']);
});

test('upload of 200 MiB piped to a slow sink, with LIMIT raised: worker RSS stays bounded', async () => {
  const total = 200 * MiB;
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
  const h = crypto.createHash('sha256');
  for (let i = 0; i < 200; i++) h.update(chunk);
  const src = Readable.from((function* gen() { for (let i = 0; i < 200; i++) yield chunk; }()), { objectMode: false });
  const r = await request(gw.url(`/upload?limit=${300 * MiB}`), {
    method: 'POST', body: src, headers: { 'Content-Length': String(total) }, timeout: 60000,
  });
  assert.equal(r.status, 200, r.body.toString());
  const out = JSON.parse(r.body);
  assert.equal(out.bytes, total);
  assert.equal(out.sha256, h.digest('hex'));
  const growth = out.maxRss - out.rss0;
  assert.ok(growth < 64 * MiB, `worker RSS grew by ${(growth / MiB).toFixed(1)} MiB (from ${(out.rss0 / MiB).toFixed(1)} to ${(out.maxRss / MiB).toFixed(1)} MiB)`);
  test.diagnostic ? null : null;
  console.log(`# upload: worker RSS ${(out.rss0 / MiB).toFixed(1)} -> max ${(out.maxRss / MiB).toFixed(1)} MiB`);
});

test('declared body above the limit without LIMIT: 413', async () => {
  const out = await raw(gw.port, `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${150 * MiB}\r\n\r\nabc`);
  assert.match(out, /^HTTP\/1\.1 413/);
});

test('Expect: 100-continue and a handler that answers without reading: 401, body never sent', async () => {
  const r = await new Promise((resolve, reject) => {
    const req = http.request(gw.url('/refuse-upload'), {
      method: 'PUT', agent: false, headers: { Expect: '100-continue', 'Content-Length': String(50 * MiB) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, continued }));
    });
    let continued = false;
    req.on('continue', () => { continued = true; req.destroy(); });
    req.on('error', reject);
    req.flushHeaders();
  });
  assert.deepEqual(r, { status: 401, continued: false });
});

test('client disconnect before the response: req aborted/close, res close', async () => {
  const id = `d${Date.now()}`;
  await new Promise((resolve) => {
    const req = http.get(gw.url(`/slow?id=${id}`));
    req.on('error', () => resolve());
    setTimeout(() => { req.destroy(); resolve(); }, 200);
  });
  const ev = await waitFor(async () => { const e = await events(id); return e.length >= 4 ? e : null; }, 5000, 50, 'events');
  assert.equal(ev[0], 'started');
  assert.deepEqual(ev.slice(1).sort(), ['req-aborted', 'req-close', 'res-close headersSent=false']);
});

test('client disconnect during a streamed response: res close without finish, writer stops', async () => {
  const id = `i${Date.now()}`;
  await new Promise((resolve, reject) => {
    http.get(gw.url(`/infinite?id=${id}`), (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; if (n > 2 * MiB) res.destroy(); });
      res.on('close', resolve);
    }).on('error', reject);
  });
  const ev = await waitFor(async () => { const e = await events(id); return e.some((x) => x.startsWith('res-close')) ? e : null; }, 5000, 50, 'events');
  assert.ok(ev.includes('res-close finished=false destroyed=true'), JSON.stringify(ev));
  assert.ok(ev.includes('req-close'), JSON.stringify(ev));
});

test('50 concurrent slow requests are multiplexed on one worker', async () => {
  const t0 = Date.now();
  const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => request(gw.url(`/delay?ms=300&i=${i}`))));
  for (const r of rs) assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 < 2500, `took ${Date.now() - t0} ms`);
});

test('a handler that throws (sync or async) gets a 500', async () => {
  assert.equal((await request(gw.url('/throw'))).status, 500);
  assert.equal((await request(gw.url('/async-throw'))).status, 500);
});

test('SIGTERM to the worker: in-flight request finishes, worker exits 0 and is replaced', async () => {
  const pid = Number((await request(gw.url('/pid'))).body);
  const inflight = request(gw.url('/delay?ms=800'));
  await sleep(200);
  process.kill(pid, 'SIGTERM');
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'delayed 800\n');
  await waitFor(() => new RegExp(`\\(pid ${pid}\\) exited with status 0`).test(gw.log()), 10000, 50, 'worker exit');
  const pid2 = Number((await waitFor(async () => {
    const x = await request(gw.url('/pid')).catch(() => null);
    return x && x.status === 200 ? x : null;
  }, 10000, 100, 'replacement')).body);
  assert.notEqual(pid2, pid);
});
