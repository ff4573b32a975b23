'use strict';
// A worker with serve()'s DEFAULT settings (no options); used by
// test/defaults.test.js: concurrency of an async handler, and
// Expect: 100-continue against handlers that answer before they read.
const { serve } = require('../../lib');

let inside = 0; // requests currently inside /sleep
let maxInside = 0;
const received = {}; // id -> request-body bytes that reached the worker

serve((req, res) => {
  const u = new URL(req.url, 'http://x');
  const id = u.searchParams.get('id');
  switch (u.pathname) {
    case '/sleep': // an async handler taking 50 ms
      inside++;
      if (inside > maxInside) maxInside = inside;
      setTimeout(() => {
        inside--;
        res.end('slept\n');
      }, 50);
      return;
    case '/stats':
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ maxInside, inside }));
      if (u.searchParams.get('reset')) maxInside = 0;
      return;
    case '/echo-flush': // the head goes out first, then the body is piped back
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': req.headers['content-length'] });
      res.flushHeaders();
      req.pipe(res);
      return;
    case '/echo-prefix': // a first body write, then the pipe
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.write('echo:');
      req.pipe(res);
      return;
    case '/refuse': // 401 without reading: head and body now, end a bit later
      res.writeHead(401, { 'Content-Type': 'text/plain', 'Content-Length': '3' });
      res.write('no\n');
      setTimeout(() => {
        received[id] = req.sluice.received;
        res.end();
      }, 100);
      return;
    case '/received':
      res.end(JSON.stringify(received[id] === undefined ? null : received[id]));
      return;
    case '/hello':
      res.end('Hello, world!\n');
      return;
    default:
      res.statusCode = 404;
      res.end('not found\n');
  }
});
