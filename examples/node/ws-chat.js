'use strict';
// ws-chat: a broadcast chat written for the `ws` package, with its heartbeat
// pattern (ws.isAlive, ws.ping(), 'pong'), served behind sluice. The only
// lines that differ from the plain ws version are the two marked "sluice".
//   build/server/sluice --listen 127.0.0.1:8080 --workers 1 -- node examples/node/ws-chat.js
// then open http://127.0.0.1:8080/ in two browser tabs.
// (One worker: the chat room lives in the worker's memory.)
const http = require('node:http');
// const { WebSocketServer, WebSocket } = require('ws');                      // plain ws
const { WebSocketServer, WebSocket, serve } = require('../../clients/node'); // sluice

const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS) || 30000;

const PAGE = `<!doctype html>
<meta charset="utf-8"><title>chat</title>
<ul id="log"></ul>
<form id="f"><input id="m" autocomplete="off"><button>send</button></form>
<script>
  const name = prompt('name') || 'anon';
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/chat?name=' + encodeURIComponent(name), 'chat');
  ws.onmessage = (e) => { const li = document.createElement('li'); li.textContent = e.data; log.append(li); };
  f.onsubmit = (e) => { e.preventDefault(); ws.send(m.value); m.value = ''; };
</script>
`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(PAGE);
});

const wss = new WebSocketServer({
  server,
  path: '/chat',
  handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
});

function heartbeat() {
  this.isAlive = true;
}

function broadcast(text) {
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(text);
  }
}

wss.on('connection', (ws, req) => {
  const name = new URL(req.url, 'http://localhost').searchParams.get('name') || 'anon';
  ws.isAlive = true;
  ws.on('pong', heartbeat);
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return; // a text chat
    broadcast(`${name}: ${data}`);
  });
  ws.on('close', () => broadcast(`${name} left`));
  broadcast(`${name} joined`);
});

const interval = setInterval(() => {
  for (const ws of wss.clients) {
    if (ws.isAlive === false) {
      ws.terminate();
      continue;
    }
    ws.isAlive = false;
    ws.ping();
  }
}, HEARTBEAT_MS);

wss.on('close', () => clearInterval(interval));

// server.listen(Number(process.env.PORT) || 8080);                          // plain ws
serve(server); // sluice
