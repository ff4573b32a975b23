'use strict';
// Remote mode (PROTOCOL.md 10.6) against in-process fake gateways: several
// gateways, one stream budget, reconnecting with backoff, re-resolution,
// the ordered stop, ERROR auth, and tls: links (certificates made with the
// openssl command line; those tests are skipped without it).
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const net = require('node:net');
const { spawn } = require('node:child_process');
const P = require('../lib/protocol');
const { serve, Worker, RemoteWorker, isRemote, parseAddressList } = require('../lib');
const { FakeGateway } = require('../test-support/fake-gateway');
const { makeCerts } = require('../test-support/certs');

const F = P.FRAME;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const gateways = new Set();
const workers = new Set();
test.afterEach(async () => {
  for (const w of workers) w.close();
  workers.clear();
  for (const g of gateways) await g.close();
  gateways.clear();
});

async function gateway(opts) {
  const gw = new FakeGateway(opts);
  gateways.add(gw);
  await gw.listen();
  return gw;
}

/* A RemoteWorker whose streams are answered 200 at once unless `hold` keeps them. */
function remote(socket, opts = {}) {
  const lines = [];
  const held = [];
  const w = new RemoteWorker({
    socket,
    log: (l) => lines.push(l),
    onRequest: (s) => {
      if (opts.hold) held.push(s);
      else s.respond(200, ['x-from', 'worker'], false);
    },
    ...opts,
  });
  w.lines = lines;
  w.held = held;
  workers.add(w);
  w.connect().catch(() => {});
  return w;
}

async function served(gw, sid) {
  gw.request(sid);
  let f = await gw.next();
  while (f && f.type === F.PING) f = await gw.next(); // remote-mode liveness
  assert.equal(f.type, F.RESPONSE, `RESPONSE for stream ${sid}, got ${f && P.FRAME_NAMES[f.type]}`);
  assert.equal(f.status, 200);
  return f;
}

function waitClose(w, ms = 3000) {
  return new Promise((resolve, reject) => {
    if (w.closed) { resolve(w.error); return; }
    const t = setTimeout(() => reject(new Error('the worker did not stop')), ms);
    w.once('close', (err) => { clearTimeout(t); resolve(err); });
  });
}

test('address lists: trimmed, empty entries ignored, tcp/tls/unix forms; remote mode', () => {
  const l = parseAddressList(' /a.sock , ,unix:/b.sock,tcp:gw:9000, tls:[::1]:443,');
  assert.deepEqual(l.map((a) => a.entry), ['/a.sock', 'unix:/b.sock', 'tcp:gw:9000', 'tls:[::1]:443']);
  assert.deepEqual(l[3], { host: '::1', port: 443, tls: true, entry: 'tls:[::1]:443' });
  assert.deepEqual(parseAddressList(['tcp:1.2.3.4:1']).map((a) => a.host), ['1.2.3.4']);
  assert.deepEqual(parseAddressList(undefined), []);
  assert.equal(isRemote(parseAddressList('/a.sock')), false);
  assert.equal(isRemote(parseAddressList('unix:/a.sock')), false);
  assert.equal(isRemote(parseAddressList('/a.sock,/b.sock')), true);
  assert.equal(isRemote(parseAddressList('tcp:127.0.0.1:9')), true);
  assert.equal(isRemote(parseAddressList('tls:gw:9')), true);
  assert.throws(() => parseAddressList('tls:gw:0'));
  assert.throws(() => parseAddressList('tcp:[::1:9'));
});

test('a TLS certificate without its key is a configuration error at start', () => {
  assert.throws(() => new RemoteWorker({ socket: 'tls:127.0.0.1:9', tlsCert: '/nonexistent.pem' }), /SLUICE_TLS_KEY/);
  assert.throws(() => new RemoteWorker({ socket: 'tcp:127.0.0.1:9', tlsKey: '/nonexistent.key' }), /SLUICE_TLS_CERT/);
  assert.throws(() => new RemoteWorker({ socket: 'tcp:127.0.0.1:9', resolveInterval: 'x' }), /resolveInterval/);
});

test('one Unix path: serve() keeps the single link, which ends the worker when it closes', async () => {
  const gw = await gateway();
  const w = serve(() => {}, { socket: ` ${gw.path} `, exitOnClose: false, signals: false });
  assert.ok(w instanceof Worker);
  await gw.handshake();
  const closed = new Promise((r) => w.once('close', r));
  gw.sock.destroy();
  const err = await closed;
  assert.ok(err instanceof Error);
  await sleep(300);
  assert.equal(gw.connections, 1, 'no reconnection');
});

test('two gateways: a link to each, the same max_streams, both served', async () => {
  const g1 = await gateway();
  const g2 = await gateway({ tcp: true });
  const w = remote(`${g1.address},${g2.address}`, { maxStreams: 9, token: 't0k' });
  const h1 = await g1.handshake();
  const h2 = await g2.handshake({ worker_id: 1001 });
  assert.equal(h1.settings.max_streams, 9);
  assert.equal(h2.settings.max_streams, 9);
  assert.equal(Buffer.from(h2.settings.token, 'latin1').toString(), 't0k');
  await served(g1, 1);
  await served(g2, 1);
  await served(g2, 3);
  assert.equal(w.links.length, 2);
  assert.equal(w.openStreams, 0);
});

test('one budget across links: max_streams 1, a REQUEST on the other gateway gets RESET overloaded', async () => {
  const g1 = await gateway();
  const g2 = await gateway();
  const w = remote([g1.address, g2.address], { maxStreams: 1, hold: true });
  await g1.handshake();
  await g2.handshake();
  g1.request(1);
  while (w.held.length < 1) await sleep(10);
  g2.request(1);
  const f = await g2.next();
  assert.equal(f.type, F.RESET);
  assert.equal(f.code, P.RESET.OVERLOADED);
  assert.equal(w.held.length, 1, 'no handler ran for it');
  assert.equal(w.openStreams, 1);
  w.held[0].respond(200, [], false);
  assert.equal((await g1.next()).type, F.RESPONSE);
  assert.equal(w.openStreams, 0);
  g2.request(3);
  while (w.held.length < 2) await sleep(10);
  assert.equal(w.openStreams, 1);
});

test('a link that closes without DRAIN, or after DRAIN, is opened again', async () => {
  const g1 = await gateway();
  const g2 = await gateway();
  const w = remote([g1.address, g2.address]);
  await g1.handshake();
  await g2.handshake();
  g1.sock.destroy(); // gone without DRAIN
  await g1.waitConnections(2, 2000);
  await g1.handshake();
  await served(g1, 1);
  g2.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  await g2.waitClosed();
  await g2.waitConnections(2, 2000);
  await g2.handshake();
  await served(g2, 1);
  assert.ok(!w.closed, 'losing links does not stop the worker');
  assert.ok(w.lines.some((l) => /lost/.test(l)), w.lines.join('\n'));
});

test('reconnect delays: 100 ms doubling to 2 s, each drawn in [delay/2, delay]; one log line', async () => {
  const g1 = await gateway();
  const g2 = await gateway();
  g2.onConnection = (sock) => { sock.destroy(); return false; }; // fails every handshake
  // random() = 0: the shortest waits, 50 100 200 400 800 1000 1000 ms
  const w = remote([g1.address, g2.address], { random: () => 0 });
  await g1.handshake();
  await g2.waitConnections(8, 6000);
  const t = g2.connectTimes;
  const want = [50, 100, 200, 400, 800, 1000, 1000];
  for (let i = 0; i < want.length; i++) {
    const gap = t[i + 1] - t[i];
    assert.ok(gap >= want[i] - 5 && gap < want[i] + 300, `wait ${i}: ${gap} ms, expected about ${want[i]}`);
  }
  const lines = w.lines.filter((l) => l.includes(g2.path));
  assert.equal(lines.length, 1, lines.join('\n'));
  // and then it attaches: the delay starts over
  g2.onConnection = null;
  await g2.waitConnections(9, 2000);
  await g2.handshake();
  await served(g2, 1);
  assert.equal(w.slots.get(g2.address).delay, 100);
  assert.ok(w.lines.filter((l) => l.includes(g2.path)).length === 2);
});

test('the largest wait is drawn in [1 s, 2 s]', async () => {
  const g1 = await gateway();
  g1.onConnection = (sock) => { sock.destroy(); return false; };
  const g2 = await gateway();
  remote([g1.address, g2.address], { random: () => 0.999 });
  await g2.handshake();
  await g1.waitConnections(6, 6000); // waits of about 100 200 400 800 1600
  const t = g1.connectTimes;
  assert.ok(t[5] - t[4] >= 1590 && t[5] - t[4] < 1900, `${t[5] - t[4]}`);
});

test('shutdown: RETIRE on every link, links in their handshake dropped, done after each DRAIN', async () => {
  const g1 = await gateway();
  const g2 = await gateway();
  const g3 = await gateway(); // never answers HELLO
  const w = remote([g1.address, g2.address, g3.address], { hold: true });
  await g1.handshake();
  await g2.handshake();
  assert.equal((await g3.next()).type, F.HELLO);
  g1.request(1);
  while (w.held.length < 1) await sleep(10);
  let done = false;
  const p = w.shutdown().then(() => { done = true; });
  await g3.waitClosed();
  assert.equal((await g1.next()).type, F.RETIRE);
  assert.equal((await g2.next()).type, F.RETIRE);
  g2.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  await g2.waitClosed();
  g1.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  await sleep(100);
  assert.ok(!g1.closed && !done, 'g1 keeps its link while its stream is open');
  w.held[0].respond(200, [], false);
  assert.equal((await g1.next()).type, F.RESPONSE);
  await g1.waitClosed();
  await p;
  assert.equal(w.error, null);
  await sleep(300);
  assert.deepEqual([g1.connections, g2.connections, g3.connections], [1, 1, 1], 'nothing reconnects');
});

test('ERROR auth on one link: logged, the others retire and drain, the worker stops with the error', async () => {
  const g1 = await gateway();
  const g2 = await gateway({ tcp: true });
  const w = remote([g1.address, g2.address]);
  await g1.handshake();
  assert.equal((await g2.next()).type, F.HELLO);
  g2.send({ type: F.ERROR, stream: 0, code: P.E.AUTH, message: 'wrong token' });
  g2.sock.end();
  assert.equal((await g1.next()).type, F.RETIRE);
  g1.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  const err = await waitClose(w);
  assert.equal(err.code, P.E.AUTH);
  assert.match(err.message, /auth/);
  assert.ok(w.lines.some((l) => /refused the token/.test(l)), w.lines.join('\n'));
  await sleep(300);
  assert.equal(g2.connections, 1, 'not retried');
});

test('a host name: a link per resolved address (deduplicated), re-resolved, vanished addresses not reconnected', async () => {
  const g1 = await gateway({ tcp: '127.0.0.1' });
  const g2 = await gateway({ tcp: '127.0.0.2', port: g1.port });
  let answer = [{ address: '127.0.0.1', family: 4 }, { address: '127.0.0.1', family: 4 }];
  const asked = [];
  const lookup = async (host) => {
    asked.push(host);
    if (answer === null) throw new Error('SERVFAIL');
    return answer;
  };
  const w = remote(`tcp:gw.test:${g1.port}`, { lookup, resolveInterval: 1 });
  await g1.handshake();
  assert.deepEqual(asked, ['gw.test']);
  assert.equal(w.slots.size, 1);
  answer = [{ address: '127.0.0.1', family: 4 }, { address: '127.0.0.2', family: 4 }];
  await g2.waitConnections(1, 2500); // the next resolution finds it
  await g2.handshake();
  await served(g1, 1);
  await served(g2, 1);
  answer = null; // a failed resolution keeps what there is
  const n = asked.length;
  while (asked.length === n) await sleep(50);
  await sleep(50);
  assert.ok(w.lines.some((l) => /resolving gw.test failed/.test(l)), w.lines.join('\n'));
  assert.equal(w.links.length, 2);
  answer = [{ address: '127.0.0.2', family: 4 }]; // 127.0.0.1 is gone: its link stays up ...
  const m = asked.length;
  while (asked.length === m) await sleep(50);
  await sleep(50);
  await served(g1, 3);
  g1.sock.destroy(); // ... until it closes, and is not opened again
  await sleep(700);
  assert.equal(g1.connections, 1);
  assert.equal(w.links.length, 1);
  await served(g2, 3);
});

test('serve() in remote mode: SIGTERM retires every link, exit 0 after the DRAINs; ERROR auth exits 1', async (t) => {
  const g1 = await gateway();
  const g2 = await gateway();
  const run = (sock) => {
    const env = { ...process.env, SLUICE_SOCKET: sock };
    const child = spawn(process.execPath, [path.join(__dirname, '../test-support/apps/basic.js')], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const exit = new Promise((r) => child.on('exit', (code) => r(code)));
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    return { child, exit, stderr: () => err };
  };
  const a = run(`${g1.address}, ${g2.address}`);
  await g1.handshake({}, 5000);
  await g2.handshake({}, 5000);
  a.child.kill('SIGTERM');
  assert.equal((await g1.next()).type, F.RETIRE);
  assert.equal((await g2.next()).type, F.RETIRE);
  g1.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  g2.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  assert.equal(await a.exit, 0, a.stderr());

  const b = run(`${g1.address},${g2.address}`);
  await g1.waitConnections(2, 5000);
  await g2.waitConnections(2, 5000);
  await g1.handshake({}, 5000);
  assert.equal((await g2.next(5000)).type, F.HELLO);
  g2.send({ type: F.ERROR, stream: 0, code: P.E.AUTH, message: 'wrong token' });
  assert.equal((await g1.next()).type, F.RETIRE);
  g1.send({ type: F.DRAIN, stream: 0, timeout_ms: 1000 });
  assert.equal(await b.exit, 1);
  assert.match(b.stderr(), /auth/);
});

/* ---- liveness (10.6 item 8) ---- */

/* Frames of `type` the worker sends within ms (others are dropped), with their arrival times. */
async function collect(gw, type, ms, onFrame) {
  const out = [];
  const end = Date.now() + ms;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return out;
    let f;
    try { f = await gw.next(left); } catch (_) { return out; }
    if (f === null) return out;
    if (onFrame) onFrame(f);
    if (f.type === type) out.push({ f, at: Date.now() });
  }
}

test('ping interval: option in seconds (fractions allowed), SLUICE_PING_INTERVAL at least 1, default 5; handshakes get three, or handshakeTimeout when shorter', () => {
  const saved = process.env.SLUICE_PING_INTERVAL;
  try {
    delete process.env.SLUICE_PING_INTERVAL;
    const d = new RemoteWorker({ socket: 'tcp:127.0.0.1:9' });
    assert.equal(d.pingInterval, 5000);
    assert.equal(d.linkOptions.handshakeTimeout, 10000, 'the default handshake timeout is shorter than 15 s');
    const q = new RemoteWorker({ socket: 'tcp:127.0.0.1:9', pingInterval: 0.25 });
    assert.equal(q.pingInterval, 250);
    assert.equal(q.linkOptions.handshakeTimeout, 750);
    assert.equal(new RemoteWorker({ socket: 'tcp:127.0.0.1:9', handshakeTimeout: 700 }).linkOptions.handshakeTimeout, 700);
    assert.equal(new RemoteWorker({ socket: 'tcp:127.0.0.1:9', pingInterval: 1, handshakeTimeout: 7000 }).linkOptions.handshakeTimeout, 3000);
    process.env.SLUICE_PING_INTERVAL = '0.2';
    assert.equal(new RemoteWorker({ socket: 'tcp:127.0.0.1:9' }).pingInterval, 1000);
    process.env.SLUICE_PING_INTERVAL = '2.5';
    assert.equal(new RemoteWorker({ socket: 'tcp:127.0.0.1:9' }).pingInterval, 2500);
    assert.equal(new RemoteWorker({ socket: 'tcp:127.0.0.1:9', pingInterval: 0.5 }).pingInterval, 500, 'the option wins');
    process.env.SLUICE_PING_INTERVAL = 'soon';
    assert.throws(() => new RemoteWorker({ socket: 'tcp:127.0.0.1:9' }), /pingInterval/);
    assert.throws(() => new RemoteWorker({ socket: 'tcp:127.0.0.1:9', pingInterval: 0 }), /pingInterval/);
  } finally {
    if (saved === undefined) delete process.env.SLUICE_PING_INTERVAL; else process.env.SLUICE_PING_INTERVAL = saved;
  }
});

test('remote mode: PING every interval on every link, increasing opaque; answered, the links stay up', async () => {
  const g1 = await gateway();
  const g2 = await gateway({ tcp: true });
  const w = remote([g1.address, g2.address], { pingInterval: 0.2 });
  await g1.handshake();
  await g2.handshake();
  const t0 = Date.now();
  const pong = (gw) => (f) => { if (f.type === F.PING) gw.send({ type: F.PONG, stream: 0, opaque: f.opaque }); };
  const [p1, p2] = await Promise.all([collect(g1, F.PING, 1100, pong(g1)), collect(g2, F.PING, 1100, pong(g2))]);
  for (const p of [p1, p2]) {
    assert.ok(p.length >= 4 && p.length <= 6, `${p.length} PINGs in 1.1 s`);
    assert.ok(p[0].at - t0 >= 150 && p[0].at - t0 < 350, `first PING after ${p[0].at - t0} ms`);
    for (let i = 1; i < p.length; i++) {
      assert.ok(p[i].f.opaque > p[i - 1].f.opaque, 'opaque increases');
      const gap = p[i].at - p[i - 1].at;
      assert.ok(gap >= 150 && gap < 350, `gap ${gap} ms`);
    }
  }
  assert.deepEqual([g1.connections, g2.connections], [1, 1]);
  assert.equal(w.links.length, 2);
  await served(g2, 1);
});

test('any frame counts as arrival: unanswered PINGs do not close a link that sends other frames', async () => {
  const g1 = await gateway({ tcp: true });
  remote(g1.address, { pingInterval: 0.2 });
  await g1.handshake();
  let sid = 1;
  const t = setInterval(() => { g1.request(sid); sid += 2; }, 150);
  try {
    const pings = await collect(g1, F.PING, 1200);
    assert.ok(pings.length >= 4, `${pings.length} PINGs`);
  } finally {
    clearInterval(t);
  }
  assert.equal(g1.connections, 1);
  assert.ok(!g1.closed);
});

test('a gateway silent for three intervals (socket open, nothing read) is closed, logged and reconnected', async () => {
  const g1 = await gateway({ tcp: true });
  const g2 = await gateway();
  const lines = [];
  const w = remote([g1.address, g2.address], { pingInterval: 0.2, log: (l) => lines.push([Date.now(), l]) });
  g1.autoPong = true;
  g2.autoPong = true;
  await g1.handshake();
  await g2.handshake();
  await served(g1, 1);
  const quietFrom = Date.now(); // g1's last bytes (its RESPONSE came back after them)
  g1.sock.pause(); // reads nothing, answers nothing, stays open
  await g1.waitConnections(2, 2000);
  const silent = lines.filter(([, l]) => /silent/.test(l));
  assert.equal(silent.length, 1, lines.map((x) => x[1]).join('\n'));
  assert.match(silent[0][1], new RegExp(`^gateway ${g1.address} silent for 0\\.[67]s: link closed$`));
  const after = silent[0][0] - quietFrom;
  assert.ok(after >= 580 && after < 900, `closed after ${after} ms`);
  assert.ok(!lines.some(([, l]) => /lost/.test(l)), 'one line for it');
  await g1.handshake();
  await served(g1, 3);
  assert.ok(w.lines.length === 0 && !w.closed);
  assert.equal(g2.connections, 1, 'the answering gateway keeps its link');
  await served(g2, 1);
});

test('a worker whose own event loop was blocked reads what waits before calling the gateway silent', async () => {
  const g1 = await gateway({ tcp: true });
  g1.autoPong = true;
  const w = remote(g1.address, { pingInterval: 0.2 });
  await g1.handshake();
  await sleep(250);
  g1.request(1); // in the worker's socket, not yet read ...
  const until = Date.now() + 800; // ... while its loop is busy for four intervals
  while (Date.now() < until) { /* block */ }
  const f = await g1.next();
  assert.equal(f.type, F.RESPONSE);
  await sleep(100);
  assert.equal(g1.connections, 1);
  assert.equal(w.links.length, 1);
  assert.deepEqual(w.lines.filter((l) => /silent/.test(l)), []);
});

test('a gateway that accepts but never answers HELLO: the attempt is abandoned after three intervals and retried', async () => {
  const g1 = await gateway({ tcp: true });
  const lines = [];
  remote(g1.address, { pingInterval: 0.2, random: () => 0, log: (l) => lines.push(l) });
  assert.equal((await g1.next()).type, F.HELLO);
  const err = await g1.next(1500);
  assert.equal(err.type, F.ERROR);
  assert.equal(err.code, P.E.TIMEOUT);
  await g1.waitConnections(3, 3000);
  const t = g1.connectTimes;
  // three intervals, then the reconnect wait (50 ms, then 100 ms with random() = 0)
  assert.ok(t[1] - t[0] >= 620 && t[1] - t[0] < 900, `${t[1] - t[0]} ms`);
  assert.ok(t[2] - t[1] >= 670 && t[2] - t[1] < 950, `${t[2] - t[1]} ms`);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0], /cannot attach to .*no HELLO in time/);
  await g1.handshake();
  await served(g1, 1);
});

test('a tls: address whose server never answers the TLS handshake: abandoned after three intervals and retried', async () => {
  // plain TCP that reads the ClientHello and says nothing
  const t = [];
  const socks = [];
  const srv = net.createServer((s) => { t.push(Date.now()); socks.push(s); s.resume(); s.on('error', () => {}); });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const lines = [];
    remote(`tls:127.0.0.1:${srv.address().port}`, { pingInterval: 0.2, random: () => 0, log: (l) => lines.push(l) });
    while (t.length < 2) await sleep(20);
    assert.ok(t[1] - t[0] >= 620 && t[1] - t[0] < 900, `${t[1] - t[0]} ms`);
    assert.match(lines[0], /cannot attach to .*TLS handshake timeout/);
    assert.ok(socks[0].destroyed || await new Promise((r) => { socks[0].once('close', () => r(true)); setTimeout(() => r(false), 300); }), 'the abandoned connection was closed');
  } finally {
    for (const s of socks) s.destroy();
    await new Promise((r) => srv.close(r));
  }
});

test('no PING outside remote mode (one Unix path), even with pingInterval set', async () => {
  const gw = await gateway();
  const w = serve(() => {}, { socket: gw.path, pingInterval: 0.1, exitOnClose: false, signals: false });
  assert.ok(w instanceof Worker);
  await gw.handshake();
  assert.ok(await gw.quiet(600), 'no frame from the worker');
  gw.send({ type: F.PING, stream: 0, opaque: 7 }); // still answered
  assert.deepEqual(await gw.next(), { type: F.PONG, stream: 0, opaque: 7 });
  w.close();
});

/* ---- tls: links ---- */

const certs = makeCerts();
test.after(() => certs && certs.remove());
const tlsTest = certs ? test : test.skip;

function tlsGateway(extra = {}, which = 'server') {
  return gateway({
    tls: {
      cert: certs.read(which === 'server' ? certs.serverCert : certs.namedCert),
      key: certs.read(which === 'server' ? certs.serverKey : certs.namedKey),
      ALPNProtocols: ['sluice/1'],
      minVersion: 'TLSv1.2',
      ...extra,
    },
  });
}

tlsTest('tls: verified against the CA and the IP address; ALPN sluice/1, no SNI for an address', async () => {
  const g1 = await tlsGateway();
  remote(g1.address, { tlsCa: certs.ca, token: 'x' });
  const h = await g1.handshake();
  assert.equal(Buffer.from(h.settings.token, 'latin1').toString(), 'x');
  await served(g1, 1);
  assert.equal(g1.tlsInfo[0].alpn, 'sluice/1');
  assert.equal(g1.tlsInfo[0].servername, false);
});

tlsTest('tls: a host name is the SNI and what the certificate is checked against', async () => {
  const g1 = await tlsGateway({}, 'named');
  remote(`tls:gw.test:${g1.port}`, { tlsCa: certs.ca, lookup: async () => ['127.0.0.1'] });
  await g1.handshake();
  await served(g1, 1);
  assert.equal(g1.tlsInfo[0].servername, 'gw.test');
});

tlsTest('tls: a certificate from another CA is not trusted: no HELLO, retried, logged once', async () => {
  const g1 = await tlsGateway();
  const w = remote(g1.address, { tlsCa: certs.otherCa });
  while (g1.tlsErrors.length < 3) await sleep(20); // retried
  assert.equal(g1.connections, 0);
  const lines = w.lines.filter((l) => /cannot attach/.test(l));
  assert.equal(lines.length, 1, w.lines.join('\n'));
  assert.match(lines[0], /certificate/);
  assert.ok(!w.closed);
});

tlsTest('tls: a gateway certificate without the address is refused unless SLUICE_TLS_SERVER_NAME names it', async () => {
  const g1 = await tlsGateway({}, 'named');
  const bad = remote(g1.address, { tlsCa: certs.ca });
  while (!bad.lines.length) await sleep(20);
  assert.match(bad.lines[0], /IP: 127\.0\.0\.1 is not in the cert's list|altnames/);
  bad.close();
  const saved = process.env.SLUICE_TLS_SERVER_NAME;
  process.env.SLUICE_TLS_SERVER_NAME = 'gw.test'; // the variable is the default of tlsServerName
  try {
    remote(g1.address, { tlsCa: certs.ca });
  } finally {
    if (saved === undefined) delete process.env.SLUICE_TLS_SERVER_NAME; else process.env.SLUICE_TLS_SERVER_NAME = saved;
  }
  await g1.handshake();
  await served(g1, 1);
  assert.equal(g1.tlsInfo.at(-1).servername, 'gw.test');
  const wrong = remote(g1.address, { tlsCa: certs.ca, tlsServerName: 'other.test' });
  while (!wrong.lines.length) await sleep(20);
  assert.match(wrong.lines[0], /other\.test/);
});

tlsTest('tls: the client certificate is presented; without one a gateway that requires it is not attached', async () => {
  const g1 = await tlsGateway({ ca: certs.read(certs.ca), requestCert: true, rejectUnauthorized: true });
  const none = remote(g1.address, { tlsCa: certs.ca });
  while (!none.lines.length) await sleep(20);
  assert.equal(g1.connections, 0);
  none.close();
  remote(g1.address, { tlsCa: certs.ca, tlsCert: certs.clientCert, tlsKey: certs.clientKey });
  await g1.handshake();
  await served(g1, 1);
  assert.equal(g1.tlsInfo[0].peer, 'worker-1');
});

test('SLUICE_MAX_STREAMS sizes a worker without code; an explicit maxStreams wins; a bad one throws', () => {
  const saved = process.env.SLUICE_MAX_STREAMS;
  try {
    delete process.env.SLUICE_MAX_STREAMS;
    assert.equal(new Worker({ socket: '/nonexistent' }).maxStreams, 4096);
    process.env.SLUICE_MAX_STREAMS = '64';
    assert.equal(new Worker({ socket: '/nonexistent' }).maxStreams, 64);
    assert.equal(new Worker({ socket: '/nonexistent', maxStreams: 8 }).maxStreams, 8);
    for (const bad of ['0', '65536', 'x', '1.5']) {
      process.env.SLUICE_MAX_STREAMS = bad;
      assert.throws(() => new Worker({ socket: '/nonexistent' }), /SLUICE_MAX_STREAMS/);
    }
  } finally {
    if (saved === undefined) delete process.env.SLUICE_MAX_STREAMS;
    else process.env.SLUICE_MAX_STREAMS = saved;
  }
});
