'use strict';
// An Express 5 app and a `ws` WebSocketServer sharing one http.Server, as
// they are usually written: a JSON API under /todos and a live feed on
// /live that pushes every new todo to the connected clients (and takes
// {"op": "add", "title": ...} over the WebSocket too). Served by sluice,
// the only lines that differ from the plain version are the two marked
// "sluice".
//   (cd clients/node && npm install)       # express and ws are dev dependencies there
//   build/server/sluice --listen 127.0.0.1:8080 --workers 1 -- node examples/node/express-ws.js
//   curl localhost:8080/todos ; websocat ws://127.0.0.1:8080/live
// (One worker: the todo list and the clients live in the worker's memory.)
const http = require('node:http');
const path = require('node:path');
// In your own project these are just require('express') and require('ws');
// here express comes from clients/node's dev dependencies.
const express = require(require.resolve('express', { paths: [__dirname, path.join(__dirname, '../../clients/node')] }));
// const { WebSocketServer, WebSocket } = require('ws');                      // plain ws
const { WebSocketServer, WebSocket, serve } = require('../../clients/node'); // sluice

const app = express();
app.use(express.json());

const todos = [{ id: 1, title: 'try sluice', done: false }];

function addTodo(title) {
  const todo = { id: todos.length + 1, title, done: false };
  todos.push(todo);
  broadcast({ added: todo });
  return todo;
}

app.get('/todos', (req, res) => res.json(todos));

app.post('/todos', (req, res) => {
  if (!req.body || typeof req.body.title !== 'string') {
    res.status(400).json({ error: 'title required' });
    return;
  }
  res.status(201).json(addTodo(req.body.title));
});

app.get('/', (req, res) => res.type('text').send('todos: GET/POST /todos, live feed: ws /live\n'));

const server = http.createServer(app);
const wss = new WebSocketServer({ server, path: '/live' });

function broadcast(obj) {
  const text = JSON.stringify(obj);
  for (const client of wss.clients) {
    if (client.readyState === WebSocket.OPEN) client.send(text);
  }
}

wss.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://localhost').searchParams.get('room') || 'main';
  ws.on('error', console.error);
  ws.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      ws.close(1003, 'JSON only');
      return;
    }
    if (!isBinary && msg.op === 'add' && typeof msg.title === 'string') addTodo(msg.title);
    else ws.send(JSON.stringify({ error: 'unknown op' }));
  });
  ws.send(JSON.stringify({ hello: room, todos: todos.length }));
});

// server.listen(Number(process.env.PORT) || 8080);                          // plain ws
serve(server); // sluice
