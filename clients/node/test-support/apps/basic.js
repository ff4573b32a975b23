'use strict';
// A node:http-style worker exercising the API; used by test/e2e.test.js.
const fs = require('node:fs');
const crypto = require('node:crypto');
const { pipeline, Transform, Writable } = require('node:stream');
const { serve, setBodyLimit } = require('../../lib');

const events = {}; // id -> [event names], for the disconnect tests
function record(id, what) {
  (events[id] = events[id] || []).push(what);
}

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const routes = {
  '/hello'(req, res) {
    res.end('Hello, world!\n');
  },

  '/info'(req, res) {
    json(res, 200, {
      method: req.method, url: req.url, httpVersion: req.httpVersion, headers: req.headers,
      rawHeaders: req.rawHeaders, remoteAddress: req.socket.remoteAddress, remotePort: req.socket.remotePort,
      remoteFamily: req.socket.remoteFamily, localPort: req.socket.localPort, encrypted: !!req.socket.encrypted,
      complete: req.complete,
    });
  },

  '/echo'(req, res, q) {
    res.setHeader('Content-Type', req.headers['content-type'] || 'application/octet-stream');
    if (q.get('len')) res.setHeader('Content-Length', req.headers['content-length']);
    req.pipe(res);
  },

  '/upper'(req, res) {
    const up = new Transform({ transform(c, e, cb) { cb(null, Buffer.from(c.toString('latin1').toUpperCase(), 'latin1')); } });
    pipeline(req, up, res, (err) => { if (err) record('pipeline', err.code || err.message); });
  },

  '/trailers'(req, res) {
    let n = 0;
    req.on('data', (c) => { n += c.length; });
    req.on('end', () => {
      res.setHeader('Trailer', 'x-count');
      res.write(`got ${n} bytes; trailers ${JSON.stringify(req.trailers)}`);
      res.addTrailers({ 'X-Count': String(n) });
      res.end();
    });
  },

  '/status'(req, res, q) {
    res.statusCode = Number(q.get('code'));
    if (q.get('body')) res.end(q.get('body')); else res.end();
  },

  '/headers'(req, res) {
    res.setHeader('Set-Cookie', ['a=1', 'b=2']);
    res.setHeader('X-Number', 42);
    res.appendHeader('X-Multi', 'one');
    res.appendHeader('X-Multi', 'two');
    res.writeHead(200, { 'X-Late': 'yes', 'Content-Type': 'text/plain' });
    res.end('headers');
  },

  '/writehead-array'(req, res) {
    res.writeHead(203, ['Content-Type', 'text/plain', 'X-A', '1', 'X-A', '2']);
    res.end('array');
  },

  '/api-state'(req, res) {
    const before = { headersSent: res.headersSent, writableEnded: res.writableEnded, finished: res.finished };
    res.setHeader('X-Remove-Me', '1');
    res.removeHeader('x-remove-me');
    res.setHeader('Content-Type', 'application/json');
    const has = { removed: res.hasHeader('X-Remove-Me'), type: res.getHeader('content-type'), names: res.getHeaderNames() };
    res.flushHeaders();
    const after = { headersSent: res.headersSent };
    let threw = null;
    try { res.setHeader('X-Too-Late', '1'); } catch (e) { threw = e.code; }
    res.on('finish', () => record('api-state', 'finish'));
    res.on('close', () => record('api-state', 'close'));
    res.end(JSON.stringify({ before, has, after, threw }), () => record('api-state', 'end-cb'));
  },

  '/stream'(req, res, q) {
    // writes n chunks of `size` bytes, honouring write() === false / 'drain'
    const n = Number(q.get('n') || 64);
    const size = Number(q.get('size') || 65536);
    const id = q.get('id') || 'stream';
    const chunk = Buffer.alloc(size, 'x');
    let i = 0;
    let falses = 0;
    let drains = 0;
    res.setHeader('Content-Length', n * size);
    res.on('drain', () => { drains++; });
    res.on('close', () => record(id, `close falses=${falses} drains=${drains} finished=${res.writableFinished}`));
    const go = () => {
      while (i < n) {
        i++;
        if (!res.write(chunk)) { falses++; res.once('drain', go); return; }
      }
      res.end();
    };
    go();
  },

  '/download'(req, res, q) {
    const file = q.get('file');
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Length', fs.statSync(file).size);
    const rs = fs.createReadStream(file);
    pipeline(rs, res, (err) => record(q.get('id') || 'download', err ? `error ${err.code}` : 'done'));
  },

  '/infinite'(req, res, q) {
    // writes until the client goes away
    const id = q.get('id');
    const chunk = Buffer.alloc(65536, 'z');
    let stopped = false;
    let writes = 0;
    req.on('aborted', () => record(id, 'req-aborted'));
    req.on('close', () => record(id, 'req-close'));
    res.on('close', () => { stopped = true; record(id, `res-close finished=${res.writableFinished} destroyed=${res.destroyed}`); });
    res.on('error', (e) => record(id, `res-error ${e.code}`));
    const go = () => {
      while (!stopped) {
        writes++;
        if (!res.write(chunk)) { res.once('drain', go); return; }
        if (writes > 100000) break;
      }
    };
    go();
  },

  '/slow'(req, res, q) {
    // never answers: the client disconnects
    const id = q.get('id');
    req.on('aborted', () => record(id, 'req-aborted'));
    req.on('close', () => record(id, 'req-close'));
    res.on('close', () => record(id, `res-close headersSent=${res.headersSent}`));
    res.on('finish', () => record(id, 'res-finish'));
    record(id, 'started');
  },

  '/delay'(req, res, q) {
    setTimeout(() => res.end(`delayed ${q.get('ms')}\n`), Number(q.get('ms')));
  },

  '/events'(req, res, q) {
    json(res, 200, events[q.get('id')] || []);
  },

  '/upload'(req, res, q) {
    // consumes the body slowly (a pause every 4 MiB) and samples RSS
    if (q.get('limit')) setBodyLimit(req, Number(q.get('limit')));
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    let maxRss = process.memoryUsage().rss;
    const rss0 = maxRss;
    let nextPause = 4 << 20;
    const sampler = setInterval(() => { maxRss = Math.max(maxRss, process.memoryUsage().rss); }, 20);
    const sink = new Writable({
      highWaterMark: 65536,
      write(c, e, cb) {
        bytes += c.length;
        hash.update(c);
        maxRss = Math.max(maxRss, process.memoryUsage().rss);
        if (bytes >= nextPause) { nextPause += 4 << 20; setTimeout(cb, 10); } else cb();
      },
    });
    pipeline(req, sink, (err) => {
      clearInterval(sampler);
      if (err) { record('upload', `error ${err.code || err.message}`); return; }
      json(res, 200, { bytes, sha256: hash.digest('hex'), rss0, maxRss });
    });
  },

  '/refuse-upload'(req, res) {
    // answers without reading the body: no credit is ever granted
    res.statusCode = 401;
    res.end('no\n');
  },

  '/throw'() {
    throw new Error('handler threw');
  },

  '/async-throw': async () => {
    await new Promise((r) => setImmediate(r));
    throw new Error('async handler threw');
  },

  '/pid'(req, res) {
    res.end(String(process.pid));
  },
};

serve((req, res) => {
  const u = new URL(req.url, 'http://x');
  const fn = routes[u.pathname];
  if (!fn) {
    res.statusCode = 404;
    res.end('not found\n');
    return undefined;
  }
  return fn(req, res, u.searchParams);
}, { maxStreams: Number(process.env.MAX_STREAMS || 64) });
