'use strict';
/*
 * WebSockets with the server-side API of the `ws` package (version 8):
 * `WebSocketServer` ({server}, {noServer} + handleUpgrade, path,
 * verifyClient, handleProtocols, 'connection', 'headers', clients) and
 * `WebSocket` (send, ping, close, terminate, pause/resume, 'message' as
 * (data, isBinary), 'pong', 'close' as (code, reason), readyState,
 * bufferedAmount, addEventListener and on<event>).
 *
 * The gateway owns RFC 6455 (handshake checks, masking, fragmentation,
 * UTF-8 validation, the client's pings, the close handshake); a worker sees
 * a stream of MESSAGE frames (PROTOCOL.md 5.2). Here:
 * - messages are reassembled and delivered whole;
 * - credit for the gateway -> worker direction is granted as messages are
 *   delivered (Stream.wsConsumed), so a paused WebSocket, or one whose
 *   application is slow, holds at most a window plus the message being
 *   reassembled (bounded by maxPayload);
 * - send() writes within the gateway's window and queues the rest, in order;
 *   `bufferedAmount` is what waits, and the callback runs once the bytes were
 *   handed to the link's socket.
 */
const { EventEmitter } = require('node:events');
const { createHash } = require('node:crypto');
const http = require('node:http');
const P = require('./protocol');

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const READY_STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];
const BINARY_TYPES = ['nodebuffer', 'arraybuffer', 'fragments'];
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const CLOSE_TIMEOUT = 30000;
const EMPTY = Buffer.alloc(0);
const kListener = Symbol('kListener');
const kForOnEventAttribute = Symbol('kIsForOnEventAttribute');
const kWebSocket = Symbol('sluice-websocket');

/** Close codes a close frame may carry (as ws checks them). */
function isValidStatusCode(code) {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999);
}

function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data === undefined || data === null) return EMPTY;
  throw new TypeError('The data to send must be a string, a Buffer, an ArrayBuffer or a TypedArray');
}

function notOpen(ws) {
  return new Error(`WebSocket is not open: readyState ${ws._readyState} (${READY_STATES[ws._readyState]})`);
}

/* ---- WebSocket ----------------------------------------------------------- */

/* What the runtime calls for an accepted stream (one object: no closures). */
const WS_DELEGATE = {
  body() {},
  end() {},
  drain(stream) { stream.owner._drained(); },
  message(stream, flags, data) { stream.owner._onMessage(flags, data); },
  close(stream, cancel) { stream.owner._onStreamClose(cancel); },
};

class WebSocket extends EventEmitter {
  /**
   * Server side only: a WebSocketServer makes these. (The `ws` package's
   * client is what to use to connect to a server.)
   */
  constructor(address, protocols, options) {
    super();
    if (address !== null && address !== undefined) {
      throw new TypeError('sluice-worker WebSocket is server-side only: use the ws package as a client');
    }
    const o = options || {};
    this._binaryType = 'nodebuffer';
    this._readyState = CONNECTING;
    this._protocol = '';
    this._stream = null;
    this._closeCode = 1006;
    this._closeReason = EMPTY;
    this._closeFrameSent = false;
    this._closeFrameReceived = false;
    this._closeTimer = null;
    this._closeTimeout = o.closeTimeout || CLOSE_TIMEOUT;
    this._maxPayload = o.maxPayload === undefined ? 100 * 1024 * 1024 : o.maxPayload;
    this._paused = false;
    this._frags = []; // pieces of the message being reassembled
    this._fragLen = 0;
    this._fragHeld = 0; // of those, bytes received while paused (no credit for them yet)
    this._pending = []; // whole messages held while paused: [data, isBinary]
    this._held = 0; // bytes received and not yet released for credit
    this._afterClose = 0; // bytes sent after the WebSocket closed (ws counts them in bufferedAmount)
    this._isServer = true;
  }

  /* Attach an accepted stream. */
  _attach(stream, protocol) {
    this._stream = stream;
    this._protocol = protocol || '';
    this._readyState = OPEN;
    stream.owner = this;
    stream.delegate = WS_DELEGATE;
  }

  get binaryType() { return this._binaryType; }
  set binaryType(type) { if (BINARY_TYPES.includes(type)) this._binaryType = type; }
  /** Bytes accepted by send() and still waiting for the gateway's credit. */
  get bufferedAmount() { return (this._stream ? this._stream.wsQueued : 0) + this._afterClose; }
  get extensions() { return ''; }
  get isPaused() { return this._paused; }
  get protocol() { return this._protocol; }
  get readyState() { return this._readyState; }
  get url() { return undefined; }

  /**
   * Send a message: strings as text (UTF-8), Buffers, ArrayBuffers and
   * TypedArrays as binary, unless options.binary says otherwise; options.fin
   * false sends a fragment that the next send() continues. `cb(err)` runs
   * once the data was handed to the link's socket.
   */
  send(data, options, cb) {
    if (this._readyState === CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    if (typeof data === 'number') data = data.toString();
    if (this._readyState !== OPEN || this._closeFrameSent) {
      this._sendAfterClose(data, cb);
      return;
    }
    const opts = { binary: typeof data !== 'string', fin: true, ...options };
    const buf = toBuffer(data);
    this._stream.message(buf, !opts.binary, opts.fin !== false, typeof cb === 'function' ? (err) => cb(err) : null);
  }

  /** A WebSocket ping; the client's pong arrives as 'pong'. */
  ping(data, mask, cb) {
    if (this._readyState === CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (typeof data === 'function') {
      cb = data;
      data = mask = undefined;
    } else if (typeof mask === 'function') {
      cb = mask;
    }
    if (typeof data === 'number') data = data.toString();
    if (this._readyState !== OPEN || this._closeFrameSent) {
      this._sendAfterClose(data, cb);
      return;
    }
    const buf = toBuffer(data);
    if (buf.length > P.PING_MAX) throw new RangeError('The data size must not be greater than 125 bytes');
    this._stream.ping(buf, typeof cb === 'function' ? () => cb() : null);
  }

  /**
   * The gateway answers the client's pings itself, and the protocol has no
   * unsolicited pong from a worker: accepted for compatibility, nothing is
   * sent.
   */
  pong(data, mask, cb) {
    if (this._readyState === CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (typeof data === 'function') cb = data;
    else if (typeof mask === 'function') cb = mask;
    if (typeof data === 'number') data = data.toString();
    if (this._readyState !== OPEN) {
      this._sendAfterClose(data, cb);
      return;
    }
    if (typeof cb === 'function') process.nextTick(cb);
  }

  /**
   * Close with `code` (none: the client sees a close frame without one) and
   * `reason` (string or Buffer, at most 123 bytes), after the messages still
   * waiting for credit. 'close' follows with this code and reason once the
   * CLOSE has gone to the gateway (which completes the close handshake with
   * the client); if queued messages keep it waiting longer than closeTimeout
   * (30 s), the WebSocket is terminated.
   */
  close(code, reason) {
    if (this._readyState === CLOSED) return;
    if (this._readyState === CLOSING) return;
    let buf = EMPTY;
    if (code !== undefined) {
      if (typeof code !== 'number' || !isValidStatusCode(code)) throw new TypeError('First argument must be a valid error code number');
      if (reason !== undefined && reason.length) {
        if (typeof reason === 'string') buf = Buffer.from(reason, 'utf8');
        else if (reason instanceof Uint8Array) buf = Buffer.from(reason);
        else throw new TypeError('Second argument must be a string or a Uint8Array');
        if (buf.length > 123) throw new RangeError('The message must not be greater than 123 bytes');
      }
    }
    const wire = code === undefined ? 1005 : code; // PROTOCOL.md 3.15: 1005 is a close frame without a code
    this._readyState = CLOSING;
    this._closeCode = wire;
    this._closeReason = buf;
    this._stream.close(wire, buf);
    if (!this._stream.closed) {
      /* waiting behind queued messages: bounded like ws's closing handshake */
      this._closeTimer = setTimeout(() => this.terminate(), this._closeTimeout);
      this._closeTimer.unref();
    }
  }

  /** Drop the WebSocket now (RESET: the client gets close 1011); 'close' is 1006. */
  terminate() {
    if (this._readyState === CLOSED) return;
    const s = this._stream;
    if (s === null) return;
    this._readyState = CLOSING;
    this._closeCode = 1006;
    this._closeReason = EMPTY;
    if (!s.closed) s.reset(P.RESET.INTERNAL, 'WebSocket terminated');
  }

  /** Stop delivering messages; no credit is granted while paused. */
  pause() {
    if (this._readyState === CONNECTING || this._readyState === CLOSED) return;
    this._paused = true;
  }

  resume() {
    if (this._readyState === CONNECTING || this._readyState === CLOSED) return;
    if (!this._paused) return;
    this._paused = false;
    this._held -= this._fragHeld;
    this._fragHeld = 0;
    while (this._pending.length && !this._paused) {
      const m = this._pending.shift();
      this._held -= m[0].length;
      this._deliver(m[0], m[1]);
      if (this._readyState === CLOSED) return;
    }
    this._release();
  }

  _sendAfterClose(data, cb) {
    if (data) this._afterClose += toBuffer(data).length;
    if (typeof cb === 'function') process.nextTick(cb, notOpen(this));
  }

  /* ---- from the runtime ---- */

  _release() {
    const s = this._stream;
    if (!s.closed) s.wsConsumed(s.received - this._held);
  }

  _onMessage(flags, data) {
    if (this._readyState === CLOSED) return;
    if (flags === P.MSG.PONG) {
      this.emit('pong', Buffer.from(data));
      return;
    }
    const n = data.length;
    if (this._fragLen + n > this._maxPayload) {
      this._tooBig();
      return;
    }
    if (this._paused) {
      this._held += n;
      this._fragHeld += n;
    }
    if (n) this._frags.push(data);
    this._fragLen += n;
    if (flags & P.MSG.MORE) {
      if (!this._paused) this._release(); // pieces being reassembled count as taken
      return;
    }
    const msg = this._frags.length === 1 ? this._frags[0] : Buffer.concat(this._frags, this._fragLen);
    const isBinary = (flags & P.MSG.TEXT) === 0;
    this._frags = [];
    this._fragLen = 0;
    if (this._paused) {
      this._fragHeld = 0; // now part of a whole message held in _pending
      this._pending.push([msg, isBinary]);
      return;
    }
    this._deliver(msg, isBinary);
    if (this._readyState !== CLOSED && !this._paused) this._release();
  }

  _deliver(msg, isBinary) {
    let data = msg;
    if (isBinary) {
      if (this._binaryType === 'arraybuffer') data = msg.buffer.slice(msg.byteOffset, msg.byteOffset + msg.length);
      else if (this._binaryType === 'fragments') data = [msg];
    }
    this.emit('message', data, isBinary);
  }

  _tooBig() {
    const err = new RangeError('Max payload size exceeded');
    err.code = 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    err[Symbol.for('status-code')] = 1009;
    this._frags = [];
    this._fragLen = 0;
    /* ws emits 'error' here; with no listener that would take the whole
     * worker down, so it is emitted only to a listener. */
    if (this.listenerCount('error')) this.emit('error', err);
    if (this._readyState === OPEN) this.close(1009);
  }

  _drained() {
    /* nothing: ws has no 'drain'; bufferedAmount tells */
  }

  _onStreamClose(cancel) {
    if (this._closeTimer) { clearTimeout(this._closeTimer); this._closeTimer = null; }
    if (cancel !== null && cancel.name === 'close') {
      this._closeFrameReceived = true;
      this._closeCode = cancel.code;
      this._closeReason = Buffer.from(cancel.message, 'latin1');
    } else if (cancel === null && this._readyState === CLOSING && this._closeCode !== 1006) {
      this._closeFrameSent = true; // our CLOSE went out
    } else {
      this._closeCode = 1006; // cancelled, reset, or the link went away
      this._closeReason = EMPTY;
    }
    this._readyState = CLOSING;
    this._frags = [];
    this._pending = [];
    process.nextTick(emitClose, this);
  }
}

function emitClose(ws) {
  ws._readyState = CLOSED;
  ws.emit('close', ws._closeCode, ws._closeReason);
}

for (const [name, value] of [['CONNECTING', CONNECTING], ['OPEN', OPEN], ['CLOSING', CLOSING], ['CLOSED', CLOSED]]) {
  Object.defineProperty(WebSocket, name, { enumerable: true, value });
  Object.defineProperty(WebSocket.prototype, name, { enumerable: true, value });
}
for (const property of ['binaryType', 'bufferedAmount', 'extensions', 'isPaused', 'protocol', 'readyState', 'url']) {
  Object.defineProperty(WebSocket.prototype, property, { enumerable: true });
}

/* ---- the EventTarget side (as ws's event-target.js) ---------------------- */

function makeEvent(type, ws, args) {
  const ev = { type, target: ws };
  if (type === 'message') ev.data = args[1] ? args[0] : args[0].toString();
  else if (type === 'close') {
    ev.code = args[0];
    ev.reason = args[1].toString();
    ev.wasClean = ws._closeFrameReceived || ws._closeFrameSent;
  } else if (type === 'error') {
    ev.error = args[0];
    ev.message = args[0] && args[0].message;
  }
  return ev;
}

function callListener(listener, thisArg, event) {
  if (typeof listener === 'object' && listener && typeof listener.handleEvent === 'function') listener.handleEvent.call(listener, event);
  else listener.call(thisArg, event);
}

WebSocket.prototype.addEventListener = function addEventListener(type, handler, options = {}) {
  for (const l of this.listeners(type)) {
    if (!options[kForOnEventAttribute] && l[kListener] === handler && !l[kForOnEventAttribute]) return;
  }
  if (!['message', 'close', 'error', 'open'].includes(type)) return;
  const wrapper = function (...args) { callListener(handler, this, makeEvent(type, this, args)); };
  wrapper[kListener] = handler;
  wrapper[kForOnEventAttribute] = !!options[kForOnEventAttribute];
  if (options.once) this.once(type, wrapper); else this.on(type, wrapper);
};

WebSocket.prototype.removeEventListener = function removeEventListener(type, handler) {
  for (const l of this.listeners(type)) {
    if (l[kListener] === handler && !l[kForOnEventAttribute]) {
      this.removeListener(type, l);
      break;
    }
  }
};

for (const method of ['open', 'error', 'close', 'message']) {
  Object.defineProperty(WebSocket.prototype, `on${method}`, {
    enumerable: true,
    get() {
      for (const l of this.listeners(method)) if (l[kForOnEventAttribute]) return l[kListener];
      return null;
    },
    set(handler) {
      for (const l of this.listeners(method)) {
        if (l[kForOnEventAttribute]) { this.removeListener(method, l); break; }
      }
      if (typeof handler !== 'function') return;
      this.addEventListener(method, handler, { [kForOnEventAttribute]: true });
    },
  });
}

/* ---- WebSocketServer ----------------------------------------------------- */

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Offered subprotocols (one or more comma-separated lists), as ws parses them; throws SyntaxError. */
function parseProtocols(header) {
  const out = new Set();
  for (const raw of header.split(',')) {
    const p = raw.trim();
    if (!TOKEN.test(p) || out.has(p)) throw new SyntaxError(`invalid subprotocol ${JSON.stringify(raw)}`);
    out.add(p);
  }
  return out;
}

/** The sluice stream behind an upgrade socket (see http.js UpgradeSocket), or throws. */
function streamOf(socket) {
  const s = socket && socket._sl;
  if (!s || !s.isWebSocket) throw new TypeError('not a sluice WebSocket upgrade: handleUpgrade() takes the (req, socket, head) of an \'upgrade\' event of a sluice worker');
  return s;
}

function abortHandshake(socket, code, message, headers) {
  socket._refuse(code, message || http.STATUS_CODES[code], headers);
}

class WebSocketServer extends EventEmitter {
  /**
   * options: exactly one of `server` (the http.Server given to serve(), or
   * the Worker serve() returned: their 'upgrade' events are handled) and
   * `noServer: true` (call handleUpgrade() yourself); and path,
   * verifyClient, handleProtocols, clientTracking, maxPayload, closeTimeout,
   * WebSocket, as in ws. `port` is not available: the gateway listens.
   */
  constructor(options, callback) {
    super();
    options = {
      maxPayload: undefined,
      handleProtocols: null,
      clientTracking: true,
      closeTimeout: CLOSE_TIMEOUT,
      verifyClient: null,
      noServer: false,
      server: null,
      path: null,
      port: null,
      WebSocket,
      ...options,
    };
    if (options.port != null) {
      throw new TypeError('the "port" option is not available behind sluice (the gateway listens): ' +
        'pass the http.Server you give to serve() as "server", or use "noServer"');
    }
    if ((!options.server && !options.noServer) || (options.server && options.noServer)) {
      throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
    }
    if (options.server) {
      this._server = options.server;
      const onUpgrade = (req, socket, head) => this.handleUpgrade(req, socket, head, (ws, r) => this.emit('connection', ws, r));
      /* an http.Server's errors are forwarded, as ws does; a Worker reports
       * its own through 'close' */
      const forward = typeof this._server.listen === 'function';
      const onError = (err) => this.emit('error', err);
      this._server.on('upgrade', onUpgrade);
      if (forward) this._server.on('error', onError);
      this._removeListeners = () => {
        this._server.removeListener('upgrade', onUpgrade);
        if (forward) this._server.removeListener('error', onError);
      };
    }
    if (options.clientTracking) {
      this.clients = new Set();
      this._shouldEmitClose = false;
    }
    if (typeof callback === 'function') process.nextTick(callback);
    this.options = options;
    this._state = 0; // running | 1 closing | 2 closed
  }

  address() {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode');
    if (!this._server || typeof this._server.address !== 'function') return null;
    return this._server.address();
  }

  /** Stop accepting WebSockets; 'close' once the tracked clients have closed (ws 8). */
  close(cb) {
    if (this._state === 2) {
      if (cb) this.once('close', () => cb(new Error('The server is not running')));
      process.nextTick(serverClosed, this);
      return;
    }
    if (cb) this.once('close', cb);
    if (this._state === 1) return;
    this._state = 1;
    if (this._server) {
      this._removeListeners();
      this._removeListeners = this._server = null;
    }
    if (this.clients && this.clients.size) this._shouldEmitClose = true;
    else process.nextTick(serverClosed, this);
  }

  shouldHandle(req) {
    if (this.options.path) {
      const i = req.url.indexOf('?');
      const pathname = i !== -1 ? req.url.slice(0, i) : req.url;
      if (pathname !== this.options.path) return false;
    }
    return true;
  }

  /**
   * Handle an upgrade request: the (req, socket, head) of a sluice worker's
   * 'upgrade' event. The gateway has checked the handshake (method, key,
   * version); what is left is the application's: path, verifyClient,
   * subprotocols. `cb(ws, req)` on success.
   */
  handleUpgrade(req, socket, head, cb) {
    streamOf(socket);
    const fail = (code, message, headers) => {
      if (this.listenerCount('wsClientError')) {
        const err = new Error(message);
        this.emit('wsClientError', err, socket, req);
      } else {
        abortHandshake(socket, code, message, headers);
      }
    };
    if (req.method !== 'GET') { fail(405, 'Invalid HTTP method'); return; }
    if (!this.shouldHandle(req)) { abortHandshake(socket, 400); return; }
    let protocols = new Set();
    const offered = req.headers['sec-websocket-protocol'];
    if (offered !== undefined) {
      try {
        protocols = parseProtocols(offered);
      } catch (_) {
        fail(400, 'Invalid Sec-WebSocket-Protocol header');
        return;
      }
    }
    const key = req.headers['sec-websocket-key'];
    if (this.options.verifyClient) {
      const info = { origin: req.headers.origin, secure: !!(req.socket && req.socket.encrypted), req };
      if (this.options.verifyClient.length === 2) {
        this.options.verifyClient(info, (verified, code, message, headers) => {
          if (!verified) { abortHandshake(socket, code || 401, message, headers); return; }
          this.completeUpgrade({}, key, protocols, req, socket, head, cb);
        });
        return;
      }
      if (!this.options.verifyClient(info)) { abortHandshake(socket, 401); return; }
    }
    this.completeUpgrade({}, key, protocols, req, socket, head, cb);
  }

  completeUpgrade(extensions, key, protocols, req, socket, head, cb) {
    const stream = streamOf(socket);
    if (!socket.readable || !socket.writable || stream.closed) { socket.destroy(); return; }
    if (socket[kWebSocket]) {
      throw new Error('server.handleUpgrade() was called more than once with the same socket, possibly due to a misconfiguration');
    }
    if (this._state > 0) { abortHandshake(socket, 503); return; }
    const headers = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'];
    if (key) headers.push(`Sec-WebSocket-Accept: ${createHash('sha1').update(key + GUID).digest('base64')}`);
    const ws = new this.options.WebSocket(null, undefined, this.options);
    let protocol = '';
    if (protocols.size) {
      protocol = this.options.handleProtocols ? this.options.handleProtocols(protocols, req) : protocols.values().next().value;
      if (protocol) headers.push(`Sec-WebSocket-Protocol: ${protocol}`);
      else protocol = '';
    }
    this.emit('headers', headers, req);
    /* The gateway writes the 101 itself (Upgrade, Connection, the accept
     * value): pass on what the application added. */
    const out = [];
    for (let i = 1; i < headers.length; i++) {
      const c = headers[i].indexOf(':');
      if (c <= 0) continue;
      const name = headers[i].slice(0, c).trim();
      const lc = name.toLowerCase();
      if (lc === 'upgrade' || lc === 'connection' || lc === 'sec-websocket-accept') continue;
      out.push(lc, Buffer.from(headers[i].slice(c + 1).trim(), 'utf8').toString('latin1'));
    }
    /* An explicit maxPayload becomes the gateway's limit for this stream (LIMIT) */
    if (this.options.maxPayload !== undefined && this.options.maxPayload !== 0) stream.setLimit(this.options.maxPayload);
    if (!stream.accept(out)) { socket.destroy(); return; }
    socket[kWebSocket] = ws;
    socket._accepted(ws);
    ws._attach(stream, protocol);
    if (this.clients) {
      this.clients.add(ws);
      ws.on('close', () => {
        this.clients.delete(ws);
        if (this._shouldEmitClose && !this.clients.size) process.nextTick(serverClosed, this);
      });
    }
    cb(ws, req);
  }
}

function serverClosed(server) {
  server._state = 2;
  server.emit('close');
}

module.exports = { WebSocket, WebSocketServer, isValidStatusCode, parseProtocols };
