'use strict';
// hello: the smallest sluice worker in Node.js.
//   build/server/sluice --listen 127.0.0.1:8080 --workers 2 -- node examples/node/hello.js
const { serve } = require('../../clients/node');

const body = 'Hello, world!\n';

serve((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
