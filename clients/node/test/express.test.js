'use strict';
// Express 5 running unchanged behind sluice: routing, express.json(),
// res.json, res.sendFile, streaming, error middleware.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { startGateway, request } = require('../test-support/helpers');

const APP = path.join(__dirname, '../test-support/apps/express-app.js');

let gw;
let tmp;
let blob;
test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-express-'));
  blob = crypto.randomBytes(5 * 1024 * 1024 + 123);
  fs.writeFileSync(path.join(tmp, 'blob.bin'), blob);
  gw = await startGateway(APP, { workers: 2, env: { DOWNLOAD_FILE: path.join(tmp, 'blob.bin') } });
});
test.after(async () => {
  if (gw) assert.equal((await gw.stop()).code, 0);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('routing and res.send', async () => {
  const r = await request(gw.url('/'));
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'hello from express');
  assert.equal(r.headers['x-powered-by'], 'Express');
  assert.match(r.headers['content-type'], /text\/html/);
  assert.ok(r.headers.etag);
});

test('route params, query, req.ip, req.protocol, res.json', async () => {
  const r = await request(gw.url('/users/42?x=1&y=two'));
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /application\/json/);
  assert.deepEqual(JSON.parse(r.body), { id: '42', q: { x: '1', y: 'two' }, ip: '127.0.0.1', protocol: 'http', host: '127.0.0.1' });
});

test('express.json() body parsing and res.status().json()', async () => {
  const payload = { a: [1, 2, 3], s: 'é', nested: { t: true } };
  const r = await request(gw.url('/echo-json'), {
    method: 'POST', body: JSON.stringify(payload), headers: { 'Content-Type': 'application/json' },
  });
  assert.equal(r.status, 201);
  assert.deepEqual(JSON.parse(r.body), { got: payload, type: 'application/json' });
});

test('res.sendFile, conditional GET and HEAD', async () => {
  const r = await request(gw.url('/file'));
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'static file contents\n');
  assert.match(r.headers['content-type'], /text\/plain/);
  const again = await request(gw.url('/file'), { headers: { 'If-None-Match': r.headers.etag } });
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  const head = await request(gw.url('/file'), { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '21');
  assert.equal(head.body.length, 0);
});

test('a file piped into res (5 MiB)', async () => {
  const r = await request(gw.url('/download'));
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(blob.length));
  assert.ok(r.body.equals(blob));
});

test('streaming with res.write over time (chunked)', async () => {
  const r = await request(gw.url('/stream'));
  assert.equal(r.status, 200);
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  assert.equal(r.body.toString(), 'chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
});

test('error middleware catches sync and async errors', async () => {
  let r = await request(gw.url('/boom'));
  assert.equal(r.status, 500);
  assert.deepEqual(JSON.parse(r.body), { error: 'kaboom' });
  r = await request(gw.url('/async-boom'));
  assert.equal(r.status, 500);
  assert.deepEqual(JSON.parse(r.body), { error: 'async kaboom' });
});

test('404 from the final handler, redirects, cookies', async () => {
  let r = await request(gw.url('/missing'));
  assert.equal(r.status, 404);
  assert.match(r.body.toString(), /Cannot GET \/missing/);
  r = await request(gw.url('/redirect'));
  assert.equal(r.status, 302);
  assert.equal(r.headers.location, '/users/7');
  r = await request(gw.url('/cookie'));
  assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
});

test('keep-alive connection carries many requests', async () => {
  const http = require('node:http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 20; i++) {
    const r = await request(gw.url(`/users/${i}`), { agent });
    assert.equal(JSON.parse(r.body).id, String(i));
  }
  agent.destroy();
});

test('bin/sluice-worker.js serves an app module that only exports an Express app', async () => {
  const cli = path.join(__dirname, '../bin/sluice-worker.js');
  const app = path.join(__dirname, '../test-support/apps/exported-app.js');
  const g2 = await startGateway(cli, { workerArgs: [app, '--max-streams', '32'] });
  try {
    const r = await request(g2.url('/where'));
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).served, 'by bin/sluice-worker.js');
    assert.match(g2.log(), /ready, 32 streams/);
  } finally {
    assert.equal((await g2.stop()).code, 0);
  }
});
