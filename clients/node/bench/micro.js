'use strict';
// Micro-benchmark of the worker's per-request path without sockets or the
// gateway: batches of pre-encoded REQUEST frames are fed to a Worker whose
// socket is a sink; each is answered by a hello-world handler through the
// http-style API (RESPONSE + BODY + END encoded, the output "written").
//   node clients/node/bench/micro.js [requests] [batch]
const P = require('../lib/protocol');
const { Worker } = require('../lib/worker');
const { handleStream } = require('../lib/http');

const N = Number(process.argv[2] || 300000);
const BATCH = Number(process.argv[3] || 32);
const body = 'Hello, world!\n';
const handler = (req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
  res.end(body);
};

let written = 0;
const sink = {
  destroyed: false, write(b) { written += b.length; return true; }, cork() {}, uncork() {}, end() {}, destroy() {},
};
const worker = new Worker({ socket: 'unused', maxStreams: 65535, onRequest: (s) => handleStream(s, handler, {}) });
worker.sock = sink;
worker.link.send({ type: P.FRAME.HELLO, stream: 0, version: 1, settings: { pid: 1, lib: 'micro', max_streams: 65535, window: 262144 } });
worker._onData(P.encodeFrame({ type: P.FRAME.HELLO, stream: 0, version: 1, settings: { window: 262144 } }));

let sid = 0;
function batch() {
  const frames = [];
  for (let i = 0; i < BATCH; i++) {
    frames.push(P.encodeFrame({
      type: P.FRAME.REQUEST, stream: ++sid, method: 'GET', target: '/', version: 11,
      headers: ['host', '127.0.0.1:8080', 'user-agent', 'wrk', 'accept', '*/*'],
      client: ['127.0.0.1', 40000 + (sid % 20000)], server: ['127.0.0.1', 8080], scheme: 'http', body: 0,
    }));
  }
  return Buffer.concat(frames);
}

async function run(n) {
  const input = [];
  for (let done = 0; done < n; done += BATCH) input.push(batch()); // encoded before timing
  const t0 = process.hrtime.bigint();
  for (const chunk of input) {
    worker._onData(chunk);
    await new Promise(setImmediate); // let nextTicks (flush, finish, close) run, as after a socket read
  }
  return Number(process.hrtime.bigint() - t0) / (input.length * BATCH);
}

(async () => {
  await run(Math.min(N, 50000)); // warm-up (JIT)
  const ns = await run(N);
  if (worker.openStreams !== 0) throw new Error(`${worker.openStreams} streams left open`);
  console.log(`${N} requests in batches of ${BATCH}: ${ns.toFixed(0)} ns/request ` +
    `(${(1e9 / ns).toFixed(0)} req/s on one core); ${(written / 1e6).toFixed(1)} MB written`);
})();
