'use strict';
// The WebSocket echo of scripts/bench (section ws): one app written for the
// `ws` package's API, run two ways:
//   behind sluice:  sluice ... -- node ws-echo.js   (WebSocketServer from sluice-worker, serve(server))
//   on its own:     node ws-echo.js PORT            (WebSocketServer from ws, server.listen(PORT))
// Each message comes back with its type; a plain GET gets the hello world.
const http = require('node:http');

const port = process.argv[2];
const lib = port ? require('ws') : require('..');

const body = 'Hello, world!\n';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
});
const wss = new lib.WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
if (port) server.listen(Number(port), '127.0.0.1');
else lib.serve(server);
