'use strict';
/*
 * The http-style API: every stream becomes a real `http.IncomingMessage`
 * (`req`) and `http.ServerResponse` (`res`), so handlers written for
 * node:http — and frameworks such as Express, which swap the prototypes of
 * req and res for their own — run unchanged.
 *
 * How it is wired:
 * - `req` is Node's own IncomingMessage on a small per-stream socket object
 *   (StreamSocket). Request BODY frames are push()ed into it; Node's
 *   IncomingMessage._read() calls socket.resume() whenever the consumer
 *   wants more, and that is where request-body credit is granted: credit
 *   follows consumption, so pipe()/pipeline() out of req is backpressured
 *   end to end.
 * - `res` is Node's own ServerResponse (header storage, validation, getters)
 *   whose output methods (writeHead, write, end, flushHeaders, addTrailers,
 *   ...) are replaced by *own properties* that speak the protocol. Own
 *   properties survive Object.setPrototypeOf(res, app.response) (Express).
 *   write() returns false when the bytes exceed the gateway's window (they
 *   are held, not copied) and 'drain' follows when credit has let them out.
 */
const http = require('node:http');
const { EventEmitter } = require('node:events');
const P = require('./protocol');
const { Worker, parseAddressList } = require('./worker');
const { RemoteWorker, isRemote } = require('./remote');

const { IncomingMessage, ServerResponse, STATUS_CODES, validateHeaderName, validateHeaderValue } = http;

/* Node's internal symbols on OutgoingMessage, found by description. */
const probe = new ServerResponse(Object.assign(Object.create(IncomingMessage.prototype), { method: 'GET', httpVersionMajor: 1, httpVersionMinor: 1 }));
probe.setHeader('x', '1');
const symbols = Object.getOwnPropertySymbols(probe);
const kOutHeaders = symbols.find((s) => s.description === 'kOutHeaders');
const kNeedDrain = symbols.find((s) => s.description === 'kNeedDrain');
const kBytesWritten = symbols.find((s) => s.description === 'kBytesWritten');

const HEAD_STR = 'HTTP/1.1 (sent by sluice)\r\n';
const nop = () => {};

function codeError(Cls, code, message) {
  const e = new Cls(message);
  e.code = code;
  return e;
}

/* ---- the per-stream socket stand-in ------------------------------------ */

/**
 * What `req.socket` / `res.socket` is: the HTTP connection's addresses and
 * the hooks Node's IncomingMessage uses (resume/pause). One per stream: its
 * 'close' is the stream's end, as a keep-alive socket's would be for one
 * request. destroy() resets the stream.
 */
class StreamSocket extends EventEmitter {
  constructor(stream, f) {
    super();
    this._sl = stream;
    this._req = null;
    const c = f.client;
    const s = f.server;
    this.remoteAddress = c[0] === '' ? undefined : c[0];
    this.remotePort = c[0] === '' ? undefined : c[1];
    this.remoteFamily = c[0] === '' ? undefined : (c[0].includes(':') ? 'IPv6' : 'IPv4');
    this.localAddress = s[0] === '' ? undefined : s[0];
    this.localPort = s[0] === '' ? undefined : s[1];
    this.encrypted = f.scheme === 'https' ? true : undefined;
    this.readable = f.body !== 0;
    this.writable = true;
    this.destroyed = false;
    this._paused = false;
    this.readableHighWaterMark = 65536;
    this.writableHighWaterMark = 65536;
    this._httpMessage = null;
    this._timeout = null;
    this.timeout = 0;
  }

  get writableLength() { return this._sl.queued; }
  get writableCorked() { return 0; }
  get pending() { return false; }
  get connecting() { return false; }
  get readyState() { return this.destroyed ? 'closed' : 'open'; }

  /* Called by IncomingMessage._read(): the consumer wants more body. Credit
   * is granted for what has left req's buffer. `reading` is cleared so that
   * the next read() asks again (Readable would otherwise wait for a push
   * that only new credit can bring). */
  resume() {
    const s = this._sl;
    const req = this._req;
    if (!s.closed && !s.reqEnded && req !== null) {
      s.consumed(s.received - req.readableLength);
      req._readableState.reading = false;
    }
    return this;
  }

  pause() { return this; }
  cork() {}
  uncork() {}
  ref() { return this; }
  unref() { return this; }
  setNoDelay() { return this; }
  setKeepAlive() { return this; }
  address() {
    return this.localAddress === undefined ? {} : {
      address: this.localAddress, port: this.localPort, family: this.localAddress.includes(':') ? 'IPv6' : 'IPv4',
    };
  }

  setTimeout(ms, cb) {
    if (cb) this.once('timeout', cb);
    if (this._timeout) { clearTimeout(this._timeout); this._timeout = null; }
    this.timeout = ms;
    if (ms > 0 && !this.destroyed) {
      this._timeout = setTimeout(() => {
        this._timeout = null;
        this.emit('timeout');
        const res = this._httpMessage;
        const req = this._req;
        if (req) req.emit('timeout');
        if (res) res.emit('timeout');
      }, ms);
      this._timeout.unref();
    }
    return this;
  }

  /** Abort the exchange: RESET (502 for the client if no response has started). */
  destroy(err) {
    if (this.destroyed) return this;
    if (!this._sl.closed) this._sl.reset(P.RESET.INTERNAL, err && err.message ? err.message : undefined);
    return this;
  }

  end() { return this.destroy(); }
  destroySoon() { return this.destroy(); }
  write() {
    throw codeError(Error, 'ERR_SLUICE_NO_RAW_SOCKET', 'a sluice stream has no raw socket to write to; use res.write()');
  }

  _closeNow(hadError) {
    if (this.destroyed) return;
    this.destroyed = true;
    this.readable = false;
    this.writable = false;
    if (this._timeout) { clearTimeout(this._timeout); this._timeout = null; }
    this.emit('close', hadError);
  }
}

/* ---- WebSocket upgrades -------------------------------------------------- */

const RAW_MAX = 65536; // bytes of a hand-written refusal kept (socket.write before destroy)

/**
 * The `socket` of an 'upgrade' event: a StreamSocket for a WebSocket stream
 * (REQUEST body 3). A WebSocketServer accepts through it; the application
 * may also refuse by hand, as with node:http:
 *   socket.write('HTTP/1.1 401 Unauthorized\r\n\r\n'); socket.destroy();
 * What was written is parsed as an HTTP/1.1 response and sent as one
 * (RESPONSE, BODY, END); destroy() without a response RESETs the stream
 * (the client gets 502). After the WebSocket was accepted, destroy()
 * terminates it.
 */
class UpgradeSocket extends StreamSocket {
  constructor(stream, f) {
    super(stream, f);
    this.readable = true;
    this._raw = null;
    this._ws = null;
  }

  write(data, encoding, cb) {
    if (typeof encoding === 'function') { cb = encoding; encoding = undefined; }
    if (this.destroyed || this._ws !== null) {
      if (typeof cb === 'function') process.nextTick(cb, codeError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed'));
      return false;
    }
    const b = typeof data === 'string' ? Buffer.from(data, encoding || 'utf8') : Buffer.from(data);
    this._raw = this._raw === null ? b : Buffer.concat([this._raw, b]);
    if (this._raw.length > RAW_MAX) this._raw = this._raw.subarray(0, RAW_MAX);
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  }

  end(data, encoding, cb) {
    if (typeof data === 'function') { cb = data; data = undefined; }
    if (data !== undefined && data !== null) this.write(data, encoding);
    this.destroy();
    if (typeof cb === 'function') process.nextTick(cb);
    return this;
  }

  destroy(err) {
    if (this.destroyed) return this;
    if (this._ws !== null) {
      this._ws.terminate();
      return this;
    }
    const s = this._sl;
    if (!s.closed && !s.responded) {
      const r = this._raw !== null ? parseRawResponse(this._raw) : null;
      if (r !== null) {
        this._respond(r.status, r.headers, r.body);
        return this;
      }
      s.reset(P.RESET.INTERNAL, err && err.message ? err.message : 'upgrade socket destroyed without a response');
    }
    return this;
  }

  /* A refusal from a WebSocketServer (abortHandshake). */
  _refuse(code, message, headers) {
    const body = Buffer.from(String(message), 'utf8');
    const h = ['Content-Type', 'text/html'];
    if (headers) for (const k of Object.keys(headers)) h.push(k, String(headers[k]));
    this._respond(code, h, body);
  }

  _respond(status, headers, body) {
    const s = this._sl;
    if (s.closed || s.responded) return;
    const h = headers.slice();
    h.push('Content-Length', String(body.length));
    if (!s.respond(status, h, body.length > 0)) return;
    if (body.length > 0) {
      s.write(body);
      s.end(null);
    }
  }

  _accepted(ws) { this._ws = ws; }

  _closeNow(hadError) {
    if (this.destroyed) return;
    super._closeNow(hadError);
    /* like a net.Socket: 'end' precedes 'close' for a peer that went away */
  }
}

/** A hand-written HTTP/1.x response (status 200..599), or null. */
function parseRawResponse(raw) {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const head = end >= 0 ? text.slice(0, end) : text.replace(/\r\n$/, '');
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] ([0-9]{3})(?: .*)?$/.exec(lines[0]);
  if (!m) return null;
  const status = Number(m[1]);
  if (status < 200 || status > 599) return null;
  const headers = [];
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i].indexOf(':');
    if (c <= 0) continue;
    const name = lines[i].slice(0, c).trim();
    const lc = name.toLowerCase();
    if (lc === 'content-length' || lc === 'connection' || lc === 'transfer-encoding') continue; // the gateway frames it
    headers.push(name, lines[i].slice(c + 1).trim());
  }
  return { status, headers, body: end >= 0 ? raw.subarray(end + 4) : Buffer.alloc(0) };
}

/* Until a WebSocket is accepted, its stream only reports closing. */
const UPGRADE_DELEGATE = {
  body() {}, end() {}, drain() {}, message() {},
  close(stream, cancel) {
    process.nextTick(() => stream.owner._closeNow(cancel !== null));
  },
};

/**
 * A WebSocket stream with an 'upgrade' listener on `target` (the http.Server
 * given to serve(), or the Worker): emit 'upgrade' (req, socket, head) as
 * node:http does. req has the handshake's headers, with `upgrade:
 * websocket` and `connection: Upgrade` put back (the gateway removes them),
 * and req.upgrade === true.
 */
function handleUpgrade(stream, target) {
  const f = stream.request;
  const sock = new UpgradeSocket(stream, f);
  const req = new IncomingMessage(sock);
  sock._req = req;
  req.method = f.method;
  req.url = f.target;
  setVersion(req, f.version);
  const h = f.headers.slice();
  h.push('upgrade', 'websocket', 'connection', 'Upgrade');
  req._addHeaderLines(h, h.length);
  req.upgrade = true;
  req.sluice = stream;
  req.complete = true;
  req.push(null);
  stream.owner = sock;
  stream.delegate = UPGRADE_DELEGATE;
  target.emit('upgrade', req, sock, Buffer.alloc(0));
}

/* ---- response output: own properties on every ServerResponse ------------ */

/** Flat [name, value, ...] list of what is to be sent, like Node's _storeHeader. */
function collectHeaders(res, obj) {
  const out = [];
  let hasCL = false;
  let hasTE = false;
  const stored = kOutHeaders ? res[kOutHeaders] : null;
  if (stored) {
    for (const key in stored) {
      const e = stored[key];
      const name = e[0];
      const value = e[1];
      if (key === 'content-length') hasCL = true;
      else if (key === 'transfer-encoding') hasTE = true;
      if (Array.isArray(value)) { for (let i = 0; i < value.length; i++) out.push(name, String(value[i])); } else out.push(name, typeof value === 'string' ? value : String(value));
    }
  } else if (!kOutHeaders && res.getHeaderNames().length) {
    for (const name of res.getRawHeaderNames()) {
      const value = res.getHeader(name);
      const lc = name.toLowerCase();
      if (lc === 'content-length') hasCL = true;
      else if (lc === 'transfer-encoding') hasTE = true;
      if (Array.isArray(value)) { for (const v of value) out.push(name, String(v)); } else out.push(name, String(value));
    }
  } else if (obj) {
    const add = (name, value) => {
      validateHeaderName(name);
      const lc = name.length === 14 || name.length === 17 ? name.toLowerCase() : '';
      if (lc === 'content-length') hasCL = true;
      else if (lc === 'transfer-encoding') hasTE = true;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) { validateHeaderValue(name, value[i]); out.push(name, String(value[i])); }
      } else {
        validateHeaderValue(name, value);
        out.push(name, typeof value === 'string' ? value : String(value));
      }
    };
    if (Array.isArray(obj)) {
      if (obj.length && Array.isArray(obj[0])) { for (const e of obj) add(e[0], e[1]); } else { for (let i = 0; i < obj.length; i += 2) add(obj[i], obj[i + 1]); }
    } else {
      for (const k in obj) add(k, obj[k]);
    }
  }
  if (!hasCL && !hasTE && res._hasBody && typeof res._contentLength === 'number' && !res._removedContLen) {
    out.push('Content-Length', String(res._contentLength));
  }
  return out;
}

function resWriteHead(statusCode, reason, obj) {
  if (this._header) throw codeError(Error, 'ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
  const original = statusCode;
  statusCode |= 0;
  if (statusCode < 200 || statusCode > 599) {
    throw codeError(RangeError, 'ERR_HTTP_INVALID_STATUS_CODE',
      `Invalid status code: ${original} (a sluice worker answers with 200..599)`);
  }
  if (typeof reason === 'string') {
    this.statusMessage = reason;
  } else {
    if (!this.statusMessage) this.statusMessage = STATUS_CODES[statusCode] || 'unknown';
    if (obj === undefined || obj === null) obj = reason;
  }
  this.statusCode = statusCode;
  if (kOutHeaders && this[kOutHeaders] && obj) {
    if (Array.isArray(obj)) {
      if (obj.length % 2 !== 0) throw codeError(TypeError, 'ERR_INVALID_ARG_VALUE', 'headers must be [name, value, ...]');
      for (let n = 0; n < obj.length; n += 2) { if (obj[n]) this.setHeader(obj[n], obj[n + 1]); }
    } else {
      for (const k of Object.keys(obj)) { if (k) this.setHeader(k, obj[k]); }
    }
    obj = null;
  }
  if (statusCode === 204 || statusCode === 304) this._hasBody = false;
  this._slHead = collectHeaders(this, obj);
  this._header = HEAD_STR;
  return this;
}

/* Send the RESPONSE frame now if it has not gone out yet. */
function sendHead(res, hasBody) {
  if (res._headerSent) return;
  res._headerSent = true;
  const s = res._sl;
  if (s.closed) return;
  s.respond(res.statusCode, res._slHead, hasBody);
  res._slHead = null;
}

function onError(res, err, callback) {
  if (res.destroyed) return;
  process.nextTick(() => {
    callback(err);
    if (!res.destroyed) res.emit('error', err);
  });
}

function write_(res, chunk, encoding, callback, fromEnd) {
  if (typeof callback !== 'function') callback = nop;
  if (chunk === null) throw codeError(TypeError, 'ERR_STREAM_NULL_VALUES', 'May not write null values to stream');
  const isStr = typeof chunk === 'string';
  if (!isStr && !(chunk instanceof Uint8Array)) {
    throw codeError(TypeError, 'ERR_INVALID_ARG_TYPE', 'The "chunk" argument must be of type string or an instance of Buffer or Uint8Array');
  }
  let err;
  if (res.finished) err = codeError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'write after end');
  else if (res.destroyed) err = codeError(Error, 'ERR_STREAM_DESTROYED', 'Cannot call write after a stream was destroyed');
  if (err) {
    if (!res.destroyed) onError(res, err, callback); else process.nextTick(callback, err);
    return false;
  }
  const enc = isStr ? (encoding || 'utf8') : null;
  const len = isStr ? Buffer.byteLength(chunk, enc) : chunk.length;
  if (!res._header) {
    if (fromEnd) res._contentLength = len;
    res._implicitHeader();
  }
  if (!res._hasBody) {
    process.nextTick(callback);
    return true;
  }
  sendHead(res, true);
  if (kBytesWritten) res[kBytesWritten] += len;
  const s = res._sl;
  if (s.closed) {
    process.nextTick(callback);
    return false;
  }
  if (len === 0) {
    process.nextTick(callback);
    return true;
  }
  const cb = callback === nop ? null : callback;
  if (isStr) return s.writeString(chunk, enc, len, cb);
  const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return s.write(data, cb);
}

function resWrite(chunk, encoding, callback) {
  if (typeof encoding === 'function') {
    callback = encoding;
    encoding = null;
  }
  const ret = write_(this, chunk, encoding, callback, false);
  if (!ret && kNeedDrain) this[kNeedDrain] = true;
  return ret;
}

function resEnd(chunk, encoding, callback) {
  if (typeof chunk === 'function') {
    callback = chunk;
    chunk = null;
    encoding = null;
  } else if (typeof encoding === 'function') {
    callback = encoding;
    encoding = null;
  }
  if (chunk) {
    if (this.finished) {
      onError(this, codeError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'write after end'), typeof callback !== 'function' ? nop : callback);
      return this;
    }
    write_(this, chunk, encoding, null, true);
  } else if (this.finished) {
    if (typeof callback === 'function') {
      if (!this.writableFinished) this.once('finish', callback);
      else callback(codeError(Error, 'ERR_STREAM_ALREADY_FINISHED', 'Cannot call end after a stream was finished'));
    }
    return this;
  } else if (!this._header) {
    this._contentLength = 0;
    this._implicitHeader();
  }
  if (typeof callback === 'function') this.once('finish', callback);
  this.finished = true;
  const s = this._sl;
  if (!this._headerSent) {
    sendHead(this, false); // no body: RESPONSE body=0 ends the stream
  } else if (!s.closed) {
    s.end(this._slTrailers);
  }
  return this;
}

function resFlushHeaders() {
  if (!this._header) this._implicitHeader();
  sendHead(this, true);
}

function resImplicitHeader() {
  this.writeHead(this.statusCode);
}

function resAddTrailers(headers) {
  const out = [];
  const isArray = Array.isArray(headers);
  for (const key of Object.keys(headers)) {
    const field = isArray ? headers[key][0] : key;
    let value = isArray ? headers[key][1] : headers[key];
    validateHeaderName(field, 'Trailer name');
    if (Array.isArray(value) && value.length > 1) {
      for (const v of value) { validateHeaderValue(field, v); out.push(field, String(v)); }
    } else {
      if (Array.isArray(value)) value = value.join('; ');
      validateHeaderValue(field, value);
      out.push(field, String(value));
    }
  }
  this._slTrailers = out;
  this._trailer = out.length ? 'trailers' : '';
}

function resInformational(a, b) {
  /* v1 has no informational responses: the gateway answers Expect:
   * 100-continue itself when the first credit is granted. */
  const cb = typeof a === 'function' ? a : typeof b === 'function' ? b : null;
  if (cb) process.nextTick(cb);
}

/* ---- wiring one stream -------------------------------------------------- */

function abortError() {
  const e = new Error('aborted');
  e.code = 'ECONNRESET';
  return e;
}

function emitClose(res) {
  if (!res._closed) {
    res.destroyed = true;
    res._closed = true;
    res.emit('close');
  }
}

function finishNT(res) {
  res.emit('prefinish');
  res.emit('finish');
  const req = res.req;
  /* Like node:http after a response: unread body is dumped so req ends
   * and closes; a body that never fully arrived is aborted (the gateway
   * drops the rest). */
  if (!req.destroyed) {
    if (!req.complete) req.destroy();
    else if (req._readableState.length || req.listenerCount('end') || req.listenerCount('close') ||
      req.listenerCount('data') || req.listenerCount('readable')) req._dump();
    /* else: nobody can observe the unread end; skip the stream machinery */
  }
  process.nextTick(emitClose, res);
  res.socket._closeNow(false);
}

function cancelNT(res, req, sock, cancel) {
  if (!req.destroyed) req.destroy(abortError());
  emitClose(res);
  sock._closeNow(cancel !== null);
}

/* What the runtime calls for every stream (one object for all: no closures). */
const DELEGATE = {
  body(stream, data) {
    const req = stream.owner.req;
    if (!req.destroyed) req.push(data);
  },
  end(stream, trailers) {
    const res = stream.owner;
    const req = res.req;
    res.socket.readable = false;
    req.complete = true;
    if (trailers) req._addHeaderLines(trailers, trailers.length); // complete: stored as trailers
    if (!req.destroyed) req.push(null);
  },
  drain(stream) {
    const res = stream.owner;
    if (kNeedDrain) res[kNeedDrain] = false;
    res.emit('drain');
  },
  close(stream, cancel) {
    const res = stream.owner;
    if (cancel === null && res.finished) {
      process.nextTick(finishNT, res);
    } else {
      /* cancelled by the gateway, reset, or the link went away */
      const sock = res.socket;
      sock.readable = false;
      sock.writable = false;
      if (!res.finished) res.destroyed = true;
      process.nextTick(cancelNT, res, res.req, sock, cancel);
    }
  },
};

/**
 * Build req and res for a new stream and call the handler.
 * options.maxBody: LIMIT sent for every request with a body.
 */
function setVersion(req, version) {
  if (version === 10) {
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 0;
    req.httpVersion = '1.0';
  } else if (version === 20) {
    // HTTP/2 at the gateway: spelled as node:http2's compatibility API does
    req.httpVersionMajor = 2;
    req.httpVersionMinor = 0;
    req.httpVersion = '2.0';
  } else {
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = '1.1';
  }
}

function handleStream(stream, handler, options) {
  const f = stream.request;
  if (f.body === P.BODY_WEBSOCKET && options.upgradeTarget) {
    const target = options.upgradeTarget();
    if (target !== null) {
      handleUpgrade(stream, target);
      return;
    }
    /* nobody takes upgrades (any more): an ordinary request, as to a worker
     * that never announced WebSockets */
  }
  const sock = new StreamSocket(stream, f);
  const req = new IncomingMessage(sock);
  sock._req = req;
  req.method = f.method;
  req.url = f.target;
  setVersion(req, f.version);
  req._addHeaderLines(f.headers, f.headers.length);
  req.sluice = stream;
  if (f.body === 0 || f.body === P.BODY_WEBSOCKET) {
    req.complete = true;
    req.push(null);
  } else if (options.maxBody !== undefined) {
    stream.setLimit(options.maxBody);
  }

  const res = new ServerResponse(req);
  res.writeHead = resWriteHead;
  res.write = resWrite;
  res.end = resEnd;
  res._implicitHeader = resImplicitHeader;
  res.flushHeaders = resFlushHeaders;
  res.addTrailers = resAddTrailers;
  res.writeContinue = resInformational;
  res.writeProcessing = resInformational;
  res.writeEarlyHints = resInformational;
  res._sl = stream;
  res._slHead = null;
  res._slTrailers = null;
  res.socket = sock;
  sock._httpMessage = res;
  stream.owner = res;
  stream.delegate = DELEGATE;

  try {
    const r = handler(req, res);
    if (r !== undefined && r !== null && typeof r.then === 'function') {
      r.then(null, (err) => handlerFailed(res, err));
    }
  } catch (err) {
    handlerFailed(res, err);
  }
}

function handlerFailed(res, err) {
  console.error('sluice-worker: request handler failed:', err);
  if (res._sl.closed) return;
  if (!res.headersSent) {
    try {
      if (kOutHeaders && res[kOutHeaders]) for (const n of res.getHeaderNames()) res.removeHeader(n);
      res.statusCode = 500;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.end('Internal Server Error\n');
      return;
    } catch (_) { /* fall through */ }
  }
  res._sl.reset(P.RESET.INTERNAL, 'handler failed');
}

/**
 * Serve `handler(req, res)` — a function like an http 'request' listener,
 * an Express/Connect app, or an http.Server (its 'request' listeners are
 * called) — over the link named by $SLUICE_SOCKET.
 *
 * options: Worker options (socket, maxStreams, window, maxFrame, token,
 * handshakeTimeout, shutdownTimeout), in remote mode (several addresses, or
 * a tcp:/tls: one) RemoteWorker options (tlsCa, tlsCert, tlsKey,
 * tlsServerName, resolveInterval, pingInterval, lookup), and
 *   maxBody      LIMIT for every request with a body (bytes; default: the
 *                gateway's --max-body)
 *   signals      handle SIGTERM/SIGINT gracefully (default true)
 *   exitOnClose  exit the process when the link closes (default true):
 *                0 after a drain, 1 after an error
 *
 * Returns the Worker, or in remote mode the RemoteWorker (both
 * EventEmitters: 'ready', 'drain', 'close').
 */
function serve(handler, options = {}) {
  let fn = handler;
  let server = null;
  if (handler && typeof handler !== 'function' && typeof handler.emit === 'function') {
    server = handler;
    fn = (req, res) => server.emit('request', req, res);
  }
  if (typeof fn !== 'function') throw new TypeError('serve(handler): handler must be a function or an http.Server');
  const opts = Object.assign({}, options);
  let worker = null;
  /* WebSocket upgrades go to 'upgrade' listeners of the server or of the
   * worker (a WebSocketServer attached to either); with none, WebSockets
   * are not announced to the gateway, and nothing changes. */
  opts.upgradeTarget = () => {
    if (server !== null && server.listenerCount('upgrade') > 0) return server;
    if (worker.listenerCount('upgrade') > 0) return worker;
    return null;
  };
  let list = null;
  try {
    list = parseAddressList(opts.socket !== undefined ? opts.socket : process.env.SLUICE_SOCKET);
  } catch (_) { /* a bad address: the Worker reports it, as always */ }
  const remote = list !== null && isRemote(list);
  const linkOpts = Object.assign({}, opts, {
    onRequest: (stream) => handleStream(stream, fn, opts),
    websocket: opts.websocket !== undefined ? opts.websocket : () => opts.upgradeTarget() !== null,
  });
  /* one Unix path (what the gateway gives a spawned worker): one link, the
   * process ends with it; otherwise links to every gateway, kept up */
  if (remote) worker = new RemoteWorker(linkOpts);
  else {
    if (list !== null && list.length === 1) linkOpts.socket = list[0].entry;
    worker = new Worker(linkOpts);
  }
  const exitOnClose = opts.exitOnClose !== false;
  if (opts.signals !== false) {
    let signalled = false;
    const onSignal = (sig) => {
      if (signalled) {
        process.exit(1);
        return;
      }
      signalled = true;
      worker.shutdown();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    worker.once('close', () => {
      process.removeListener('SIGTERM', onSignal);
      process.removeListener('SIGINT', onSignal);
    });
  }
  worker.on('close', (err) => {
    if (exitOnClose) {
      if (err) console.error(`sluice-worker: ${remote ? 'stopped' : 'link closed'}: ${err.message}`);
      process.exitCode = err ? 1 : 0;
      /* let the last write and log lines out */
      setImmediate(() => process.exit(err ? 1 : 0));
    }
  });
  worker.on('error', () => {}); // reported through 'close'
  worker.connect().catch((err) => {
    if (!remote && !worker.closed) worker._close(err);
  });
  return worker;
}

module.exports = { serve, handleStream, StreamSocket, UpgradeSocket, parseRawResponse };
