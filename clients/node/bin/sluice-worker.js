#!/usr/bin/env node
'use strict';
// Serve an existing app module behind sluice without editing it:
//   sluice --workers 4 -- node clients/node/bin/sluice-worker.js ./app.js
//   ... sluice-worker.js ./app.js:app --max-streams 256 --max-body 1g
// The module's export (module.exports, or the named one, or .default/.app)
// may be a request listener function, an Express/Connect app, or an
// http.Server (its 'request' listeners are used; it need not listen).
const path = require('node:path');
const { serve } = require('../lib');

function usage(msg) {
  if (msg) console.error(`sluice-worker: ${msg}`);
  console.error('usage: sluice-worker.js MODULE[:EXPORT] [--max-streams N] [--window BYTES] [--initial-window BYTES]\n' +
    '                        [--body-budget BYTES] [--max-body BYTES]');
  process.exit(2);
}

function size(v) {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(String(v));
  if (!m) usage(`bad size: ${v}`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
}

const args = process.argv.slice(2);
if (!args.length || args[0] === '-h' || args[0] === '--help') usage();
const opts = {};
let spec = null;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--max-streams') opts.maxStreams = Number(args[++i]);
  else if (a === '--window') opts.window = size(args[++i]);
  else if (a === '--initial-window') opts.initialWindow = size(args[++i]);
  else if (a === '--body-budget') opts.bodyBudget = size(args[++i]);
  else if (a === '--max-body') opts.maxBody = size(args[++i]);
  else if (a.startsWith('-')) usage(`unknown option ${a}`);
  else if (spec === null) spec = a;
  else usage(`unexpected argument ${a}`);
}
if (spec === null) usage('no module');

const colon = spec.lastIndexOf(':');
const file = colon > 1 ? spec.slice(0, colon) : spec;
const name = colon > 1 ? spec.slice(colon + 1) : null;
const mod = require(path.resolve(file));
let app = name ? mod[name] : mod;
if (!name && typeof app !== 'function' && app && typeof app.emit !== 'function') app = app.default || app.app || app.server;
if (!app) usage(`${spec} exports no app`);
serve(app, opts);
