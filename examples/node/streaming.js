'use strict';
// Streaming both ways with backpressure, on the node:http API.
//   build/server/sluice --listen 127.0.0.1:8080 --workers 2 --max-body 10g -- node examples/node/streaming.js
//
//   curl -T bigfile localhost:8080/upload      sha256 of the upload, read as fast as the hash goes
//   curl localhost:8080/download?mb=1024 >/dev/null   1 GiB generated on the fly, paced by the client
//   curl -T file localhost:8080/upper         the body upper-cased, streamed back
//   curl -N localhost:8080/events             server-sent events, one a second, until you disconnect
//
// Request-body credit is granted only as `req` is consumed, and res.write()
// returns false once the gateway's window is used up: pipe()/pipeline()
// therefore keep memory flat however large the bodies and however slow
// the peers.
const crypto = require('node:crypto');
const { pipeline, Readable, Transform, Writable } = require('node:stream');
const { serve, setBodyLimit } = require('../../clients/node');

function upload(req, res) {
  setBodyLimit(req, 16 * 1024 ** 3); // raise the gateway's --max-body for this request
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  const sink = new Writable({
    write(chunk, enc, cb) {
      bytes += chunk.length;
      hash.update(chunk);
      cb();
    },
  });
  pipeline(req, sink, (err) => {
    if (err) return; // client went away: req emitted 'aborted'
    res.setHeader('Content-Type', 'text/plain');
    res.end(`${bytes} bytes, sha256 ${hash.digest('hex')}\n`);
  });
}

function download(req, res, q) {
  const total = Number(q.get('mb') || 100) * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 'sluice ');
  let sent = 0;
  const source = new Readable({
    read() {
      if (sent >= total) { this.push(null); return; }
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total });
  pipeline(source, res, () => {});
}

function upper(req, res) {
  const up = new Transform({
    transform(c, enc, cb) { cb(null, Buffer.from(c.toString('latin1').toUpperCase(), 'latin1')); },
  });
  res.setHeader('Content-Type', req.headers['content-type'] || 'application/octet-stream');
  pipeline(req, up, res, () => {});
}

function events(req, res) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  let n = 0;
  const timer = setInterval(() => res.write(`data: tick ${++n} from worker ${process.env.SLUICE_WORKER_ID}\n\n`), 1000);
  res.on('close', () => clearInterval(timer)); // the client disconnected (or the gateway is stopping)
}

serve((req, res) => {
  const u = new URL(req.url, 'http://localhost');
  switch (u.pathname) {
    case '/upload': return upload(req, res);
    case '/download': return download(req, res, u.searchParams);
    case '/upper': return upper(req, res);
    case '/events': return events(req, res);
    default:
      res.statusCode = 404;
      return res.end('try /upload, /download?mb=N, /upper, /events\n');
  }
});
