'use strict';
// An ordinary Express 5 app served by sluice, unchanged but for the last
// line (serve(app) instead of app.listen(port)).
//   (cd clients/node && npm install)       # express is a dev dependency there
//   build/server/sluice --listen 127.0.0.1:8080 --workers 4 -- node examples/node/express-app.js
//   curl localhost:8080/todos ; curl -X POST -H 'content-type: application/json' -d '{"title":"x"}' localhost:8080/todos
const path = require('node:path');
const { serve } = require('../../clients/node');

// In your own project this is just require('express'); here it comes from
// clients/node's dev dependencies.
const express = require(require.resolve('express', { paths: [__dirname, path.join(__dirname, '../../clients/node')] }));

const app = express();
app.use(express.json());

const todos = [{ id: 1, title: 'try sluice', done: false }];

app.get('/todos', (req, res) => res.json(todos));

app.post('/todos', (req, res) => {
  if (!req.body || typeof req.body.title !== 'string') {
    res.status(400).json({ error: 'title required' });
    return;
  }
  const todo = { id: todos.length + 1, title: req.body.title, done: false };
  todos.push(todo); // per worker process: each worker has its own list
  res.status(201).json(todo);
});

app.get('/todos/:id', (req, res, next) => {
  const todo = todos.find((t) => t.id === Number(req.params.id));
  if (!todo) return next(Object.assign(new Error('no such todo'), { status: 404 }));
  return res.json(todo);
});

app.get('/whoami', (req, res) => {
  res.json({ ip: req.ip, protocol: req.protocol, host: req.hostname, worker: process.env.SLUICE_WORKER_ID, pid: process.pid });
});

app.get('/source', (req, res) => res.sendFile(__filename));

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  res.status(err.status || 500).json({ error: err.message });
});

serve(app);
