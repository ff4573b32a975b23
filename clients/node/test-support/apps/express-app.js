'use strict';
// An ordinary Express 5 app, served through sluice unchanged.
const path = require('node:path');
const fs = require('node:fs');
const express = require('express');
const { serve } = require('../../lib');

const app = express();
app.use(express.json());

app.get('/', (req, res) => res.send('hello from express'));
app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id, q: req.query, ip: req.ip, protocol: req.protocol, host: req.hostname });
});
app.post('/echo-json', (req, res) => res.status(201).json({ got: req.body, type: req.get('content-type') }));
app.get('/file', (req, res) => res.sendFile(path.join(__dirname, 'static.txt')));
app.get('/download', (req, res) => {
  const file = process.env.DOWNLOAD_FILE;
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Length', fs.statSync(file).size);
  fs.createReadStream(file).pipe(res);
});
app.get('/stream', (req, res) => {
  res.type('text/plain');
  let i = 0;
  const t = setInterval(() => {
    res.write(`chunk ${i}\n`);
    if (++i === 5) { clearInterval(t); res.end(); }
  }, 10);
});
app.get('/boom', () => { throw new Error('kaboom'); });
app.get('/async-boom', async () => { throw new Error('async kaboom'); });
app.get('/redirect', (req, res) => res.redirect('/users/7'));
app.get('/cookie', (req, res) => {
  res.cookie('a', '1');
  res.cookie('b', '2');
  res.send('cookies');
});
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  res.status(500).json({ error: err.message });
});

serve(app);
