'use strict';
// The baseline for scripts/bench-node: the same hello world on node:http.
//   node plain-hello.js PORT
const http = require('node:http');

const body = 'Hello, world!\n';
http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
}).listen(Number(process.argv[2] || 8080), '127.0.0.1');
