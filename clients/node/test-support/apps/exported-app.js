'use strict';
// An app module that only exports its Express app (no sluice code in it):
// served by bin/sluice-worker.js in test/express.test.js.
const express = require('express');

const app = express();
app.get('/where', (req, res) => res.json({ served: 'by bin/sluice-worker.js', pid: process.pid }));
module.exports = app;
