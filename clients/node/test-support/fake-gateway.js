'use strict';
// An in-process stand-in for the gateway, built on the protocol core's
// gateway-role link: it accepts worker connections on a Unix socket (or on
// TCP, or TLS: options {tcp: 'HOST' or true, port, tls: tls.createServer
// options}) and lets a test send frames and await the worker's. Each new
// connection starts over (fresh link state, no frames): the last one is
// the one a test talks to.
const net = require('node:net');
const tls = require('node:tls');
const os = require('node:os');
const fs = require('node:fs');
const path = require('node:path');
const P = require('../lib/protocol');

let seq = 0;

class FakeGateway {
  constructor(opts = {}) {
    this.opts = opts;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-test-'));
    this.path = path.join(this.dir, `gw${++seq}.sock`);
    this.host = opts.tcp === true ? '127.0.0.1' : (opts.tcp || (opts.tls ? '127.0.0.1' : null));
    this.port = opts.port || 0;
    this.connections = 0;
    this.connectTimes = []; // Date.now() of each connection
    this.tlsInfo = []; // per TLS connection: {alpn, servername, peer}
    this.tlsErrors = []; // handshakes that failed
    this.frames = []; // received, not yet taken
    this.waiters = [];
    this.link = new P.Link('gateway');
    this.decoder = new P.FrameDecoder();
    this.sock = null;
    this.closed = false;
    this.chunks = 0; // 'data' events received
    this.linkErrors = []; // what this side's link found wrong (for tests sending out of order)
    this.autoPong = false; // answer the worker's PINGs here, as a gateway does, instead of queueing them
    const onConn = (sock) => {
      this.connections++;
      this.connectTimes.push(Date.now());
      if (opts.tls) {
        const peer = sock.getPeerCertificate();
        this.tlsInfo.push({ alpn: sock.alpnProtocol, servername: sock.servername, peer: peer && peer.subject ? peer.subject.CN : null });
      }
      if (this.onConnection && this.onConnection(sock) === false) { this._wake(); return; }
      if (this.sock && !this.sock.destroyed) this.sock.destroy();
      this.sock = sock;
      this.frames = [];
      this.link = new P.Link('gateway');
      this.decoder = new P.FrameDecoder();
      this.closed = false;
      this._wake();
      sock.on('data', (c) => {
        if (this.sock !== sock) return;
        this.chunks++;
        this.decoder.feed(c, (f) => {
          try { this.link.recv(f); } catch (e) { this.linkErrors.push(e.errorName || e.message); }
          if (this.autoPong && f.type === P.FRAME.PING) {
            this.send({ type: P.FRAME.PONG, stream: 0, opaque: f.opaque });
            return;
          }
          this.frames.push(f);
          this._wake();
        });
      });
      sock.on('close', () => { if (this.sock === sock) { this.closed = true; this._wake(); } });
      sock.on('error', () => {});
    };
    this.server = opts.tls ? tls.createServer(opts.tls, onConn) : net.createServer(onConn);
    if (opts.tls) this.server.on('tlsClientError', (e) => { this.tlsErrors.push(e); this._wake(); });
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      const done = () => {
        this.server.removeListener('error', reject);
        if (this.host !== null) this.port = this.server.address().port;
        resolve();
      };
      if (this.host !== null) this.server.listen(this.port, this.host, done);
      else this.server.listen(this.path, done);
    });
  }

  /** The SLUICE_SOCKET entry for this gateway. */
  get address() {
    if (this.host === null) return `unix:${this.path}`;
    const h = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `${this.opts.tls ? 'tls' : 'tcp'}:${h}:${this.port}`;
  }

  /** Resolves once `n` connections (in all) have been accepted, within ms. */
  waitConnections(n, ms = 3000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.connections} connection(s), not ${n}, in time`)), ms);
      const check = () => {
        if (this.connections >= n) { clearTimeout(t); resolve(); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Stop listening and drop the connection (the gateway going away). */
  async stop() {
    if (this.sock) this.sock.destroy();
    await new Promise((r) => this.server.close(r));
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Next frame from the worker (optionally skipping none), within ms. */
  next(ms = 3000) {
    return new Promise((resolve, reject) => {
      let late = false; // timed out: a frame arriving later stays for the next call
      const t = setTimeout(() => { late = true; reject(new Error('no frame from the worker in time')); }, ms);
      const check = () => {
        if (late) return;
        if (this.frames.length) { clearTimeout(t); resolve(this.frames.shift()); return; }
        if (this.closed) { clearTimeout(t); resolve(null); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** Frames until (and including) the first of `type`. */
  async until(type, ms = 3000) {
    const out = [];
    for (;;) {
      const f = await this.next(ms);
      if (f === null) throw new Error(`link closed before ${P.FRAME_NAMES[type]}; got ${out.map((x) => P.FRAME_NAMES[x.type])}`);
      out.push(f);
      if (f.type === type) return out;
    }
  }

  /** Resolves when the worker has closed the link. */
  waitClosed(ms = 3000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the worker did not close the link')), ms);
      const check = () => {
        if (this.closed) { clearTimeout(t); resolve(); return; }
        this.waiters.push(check);
      };
      check();
    });
  }

  /** No frame arrives within ms. */
  async quiet(ms = 100) {
    await new Promise((r) => setTimeout(r, ms));
    return this.frames.length === 0;
  }

  send(f) {
    this.link.send(f);
    this.sock.write(P.encodeFrame(f));
  }

  sendRaw(buf) { this.sock.write(buf); }

  /** Accept the worker's HELLO and answer with ours. */
  async handshake(settings = {}, ms = 3000) {
    const hello = await this.next(ms);
    if (!hello || hello.type !== P.FRAME.HELLO) throw new Error('expected HELLO');
    this.workerHello = hello.settings;
    settings = { window: 262144, worker_id: 1, pool: 'test', server: 'fake/1', ...settings };
    // as the gateway does: WebSockets only for a worker that asked for them
    if (settings.websocket && hello.settings.websocket !== true) delete settings.websocket;
    this.send({ type: P.FRAME.HELLO, stream: 0, version: 1, settings });
    return hello;
  }

  request(sid, { method = 'GET', target = '/', headers = [], body = 0, version = 11 } = {}) {
    this.send({
      type: P.FRAME.REQUEST, stream: sid, method, target, version,
      headers: ['host', 'test', ...headers], client: ['127.0.0.1', 40000], server: ['127.0.0.1', 8080], scheme: 'http', body,
    });
  }

  async close() {
    if (this.sock) this.sock.destroy();
    if (this.server.listening) await new Promise((r) => this.server.close(r));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { FakeGateway };
