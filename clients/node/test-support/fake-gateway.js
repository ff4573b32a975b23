'use strict';
// An in-process stand-in for the gateway, built on the protocol core's
// gateway-role link: it accepts one worker connection on a Unix socket and
// lets a test send frames and await the worker's.
const net = require('node:net');
const os = require('node:os');
const fs = require('node:fs');
const path = require('node:path');
const P = require('../lib/protocol');

let seq = 0;

class FakeGateway {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-test-'));
    this.path = path.join(this.dir, `gw${++seq}.sock`);
    this.frames = []; // received, not yet taken
    this.waiters = [];
    this.link = new P.Link('gateway');
    this.decoder = new P.FrameDecoder();
    this.sock = null;
    this.closed = false;
    this.chunks = 0; // 'data' events received
    this.linkErrors = []; // what this side's link found wrong (for tests sending out of order)
    this.server = net.createServer((sock) => {
      this.sock = sock;
      sock.on('data', (c) => {
        this.chunks++;
        this.decoder.feed(c, (f) => {
          try { this.link.recv(f); } catch (e) { this.linkErrors.push(e.errorName || e.message); }
          this.frames.push(f);
          this._wake();
        });
      });
      sock.on('close', () => { this.closed = true; this._wake(); });
      sock.on('error', () => {});
    });
  }

  listen() {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Next frame from the worker (optionally skipping none), within ms. */
  next(ms = 3000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no frame from the worker in time')), ms);
      const check = () => {
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
  async handshake(settings = {}) {
    const hello = await this.next();
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
    await new Promise((r) => this.server.close(r));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { FakeGateway };
