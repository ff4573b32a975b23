'use strict';
/*
 * The worker runtime: one link to the gateway over a `net` socket. It does
 * the handshake, multiplexes streams, applies credit in both directions,
 * answers PING, and handles DRAIN, RETIRE and shutdown. The http-style API
 * (http.js) sits on top of the per-stream `Stream` objects defined here.
 *
 * Output is batched: frames are encoded into a slab (protocol.Writer) and
 * the socket is written once per tick (process.nextTick), with large body
 * buffers passed by reference (one writev).
 */
const net = require('node:net');
const tls = require('node:tls');
const fs = require('node:fs');
const { EventEmitter } = require('node:events');
const P = require('./protocol');

const LIB = 'sluice-node/0.1.0';
const COPY_MAX = 16384; // body chunks up to this size are copied into the slab
const EMPTY = Buffer.alloc(0);
const ALPN = 'sluice/1';
const DEFAULT_HANDSHAKE_TIMEOUT = 10000; // ms

/* Defaults. An async worker must not cap concurrency below what peers allow
 * (node:http has no cap; the gateway's --max-connections defaults to
 * 10000): 4096 streams, with request-body memory bounded by the initial
 * windows plus a link-wide budget rather than by streams x window. */
const DEFAULT_MAX_STREAMS = 4096;
const DEFAULT_WINDOW = 256 * 1024;
const DEFAULT_INITIAL_WINDOW = 16 * 1024;
const DEFAULT_BODY_BUDGET = 16 * 1024 * 1024;

/** The request's Content-Length as a number, or -1 (flat latin1 header list). */
function declaredLength(headers) {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === 'content-length') {
      const v = headers[i + 1];
      return /^[0-9]{1,15}$/.test(v) ? Number(v) : -1;
    }
  }
  return -1;
}

const NO_DELEGATE = {
  body() {}, end() {}, drain() {}, close() {}, message() {},
};

/* MESSAGE payload bytes in front of the data at most: fixarray, type, uint64
 * id, flags, bin32 (one more than BODY's). */
const MESSAGE_EXTRA = 1;

/**
 * Parse one SLUICE_SOCKET address: PATH, unix:PATH -> {path};
 * tcp:HOST:PORT, tcp:[V6]:PORT -> {host, port}; tls:... -> {host, port, tls: true}.
 */
function parseAddress(s) {
  if (typeof s !== 'string' || s === '') throw new Error('no socket: set SLUICE_SOCKET or pass options.socket');
  if (s.startsWith('unix:')) return { path: s.slice(5) };
  const secure = s.startsWith('tls:');
  if (secure || s.startsWith('tcp:')) {
    const rest = s.slice(4);
    let host;
    let port;
    if (rest.startsWith('[')) {
      const end = rest.indexOf(']');
      host = end > 0 && rest[end + 1] === ':' ? rest.slice(1, end) : '';
      port = rest.slice(end + 2);
    } else {
      const i = rest.lastIndexOf(':');
      host = rest.slice(0, i);
      port = rest.slice(i + 1);
    }
    const n = /^[0-9]{1,5}$/.test(port) ? Number(port) : 0;
    if (!host || !(n > 0 && n < 65536)) throw new Error(`bad ${secure ? 'tls' : 'tcp'} address: ${s}`);
    return secure ? { host, port: n, tls: true } : { host, port: n };
  }
  return { path: s };
}

/**
 * Parse a SLUICE_SOCKET list: addresses separated by commas (an array is
 * taken as is), each trimmed, empty ones ignored. Returns [] when none.
 */
function parseAddressList(v) {
  if (v === undefined || v === null) return [];
  const items = Array.isArray(v) ? v : String(v).split(',');
  const out = [];
  for (const item of items) {
    const t = String(item).trim();
    if (t !== '') out.push(Object.assign(parseAddress(t), { entry: t }));
  }
  return out;
}

/* Read a PEM option: a Buffer/string of PEM as is, otherwise a file name. */
function readPem(v) {
  if (v === undefined || v === null || v === '') return undefined;
  if (Buffer.isBuffer(v) || (typeof v === 'string' && v.includes('-----BEGIN'))) return v;
  return fs.readFileSync(v);
}

/**
 * TLS settings for tls: links, from the options (tlsCa, tlsCert, tlsKey,
 * tlsServerName) or else SLUICE_TLS_CA, SLUICE_TLS_CERT, SLUICE_TLS_KEY,
 * SLUICE_TLS_SERVER_NAME. A certificate without its key (or the reverse) is
 * a configuration error; files are read only when `read` is true.
 */
function tlsSettings(o = {}, read = true) {
  const env = process.env;
  const pick = (v, name) => (v !== undefined && v !== null && v !== '' ? v : (env[name] || undefined));
  const ca = pick(o.tlsCa, 'SLUICE_TLS_CA');
  const cert = pick(o.tlsCert, 'SLUICE_TLS_CERT');
  const key = pick(o.tlsKey, 'SLUICE_TLS_KEY');
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error('a TLS client certificate needs its key: set both SLUICE_TLS_CERT and SLUICE_TLS_KEY (tlsCert, tlsKey) or neither');
  }
  const serverName = pick(o.tlsServerName, 'SLUICE_TLS_SERVER_NAME');
  if (!read) return { serverName };
  return { ca: readPem(ca), cert: readPem(cert), key: readPem(key), serverName };
}

/**
 * tls.connect() options for a tls: address. `addr.name` is the HOST written
 * in the entry when `addr.host` is one of its resolved addresses: the
 * certificate is checked against it (or the configured server name), and it
 * goes as SNI when it is a name rather than an IP address.
 */
function tlsConnectOptions(addr, t) {
  const name = t.serverName || addr.name || addr.host;
  const opts = {
    host: addr.host,
    port: addr.port,
    ALPNProtocols: [ALPN],
    minVersion: 'TLSv1.2',
    checkServerIdentity: (_, cert) => tls.checkServerIdentity(name, cert),
  };
  if (t.ca !== undefined) opts.ca = t.ca; // otherwise Node's default trust store
  if (t.cert !== undefined) { opts.cert = t.cert; opts.key = t.key; }
  if (!net.isIP(name)) opts.servername = name;
  return opts;
}

function toText(s) {
  /* User-facing text (messages, reasons) goes on the wire as UTF-8. */
  return Buffer.from(String(s), 'utf8');
}

/**
 * One request/response exchange: the protocol's per-stream state (windows,
 * sides) plus what the runtime needs. Created by the Worker for every
 * REQUEST and passed to `onRequest(stream)`. The owner sets
 * `stream.delegate`, an object (usually shared by all streams) with:
 *   body(stream, buf)         request body bytes (report use with consumed())
 *   end(stream, trailers)     the request side ended (trailers: flat array or null)
 *   drain(stream)             response bytes held for credit have all been framed
 *   close(stream, cancel)     the stream is closed; cancel = {reason, name, message}
 *                             when the gateway cancelled it, it was reset, or the
 *                             link went away; null after the response ended (or
 *                             after this side sent CLOSE or RESET); on a
 *                             WebSocket {reason: 0, name: 'close', code, message}
 *                             when the gateway sent CLOSE
 *   message(stream, flags, data)  a MESSAGE on an accepted WebSocket (a data
 *                             piece, flags 0..3, or a PONG, flags 8); report
 *                             data bytes used with consumed()
 * and may keep its own state in `stream.owner`.
 *
 * A WebSocket stream (request.body === 3) is answered with accept(headers)
 * (RESPONSE 101) or refused with respond(); once accepted it carries
 * message(), ping() and close() instead of write() and end().
 */
class Stream extends P.StreamState {
  constructor(worker, id) {
    super(id);
    this.worker = worker;
    this.udata = this;
    this.request = null;
    this.closed = false;
    this.responded = false;
    this.ended = false; // END queued or sent
    // request side
    this.reqEnded = false;
    this.received = 0;
    this.granted = 0; // total credit given (the initial window included)
    this.consumedTotal = 0;
    this.extra = 0; // our share of the worker's bodyBudget (credit above the initial window, not consumed)
    this.declared = -1; // Content-Length, or -1
    this.limitSent = false;
    this.gated = false; // counted in the worker's shared stream budget (remote mode)
    this.headGen = -1; // the flush generation whose output holds this stream's RESPONSE slot
    this.headSlot = -1; // index in worker.out of that slot
    // response side
    this.queue = null; // [Buffer, ...] waiting for credit
    this.queued = 0;
    this.queuedTotal = 0; // bytes ever queued (for write callbacks)
    this.endPending = false;
    this.endTrailers = null;
    this.needDrain = false;
    this.callbacks = null; // write callbacks waiting for their bytes to be framed: [queuedTotal, cb]
    this.delegate = NO_DELEGATE;
    this.owner = null; // free for the API layer
    // WebSocket output (after accept)
    this.wsQueue = null; // [[data, text, fin, cb], ...] waiting for credit, in order
    this.wsQueued = 0; // their bytes
    this.wsText = -1; // text bit of a message the application sends in fragments (fin false)
    this.wsClose = null; // [code, reason] of a CLOSE waiting behind queued messages
  }

  _init(frame) {
    this.request = frame;
    this.reqEnded = frame.body === 0;
    /* a WebSocket's gateway -> worker window starts at the HELLO window, as a body's */
    this.granted = frame.body === 1 || frame.body === P.BODY_WEBSOCKET ? this.worker.initialWindow : 0;
    if (frame.body === P.BODY_WEBSOCKET) this.reqEnded = false;
    if (frame.body === 1 || frame.body === 2) this.declared = declaredLength(frame.headers);
  }

  get isWebSocket() { return this.bodyMode === P.BODY_WEBSOCKET; }

  /** Response bytes accepted but waiting for credit. */
  get pending() { return this.queued; }

  /**
   * Send the response head. headers: flat [name, value, ...]; hasBody false
   * ends the stream. A head larger than the gateway's max_frame cannot be
   * sent: the stream is RESET instead (the client gets 502) and false is
   * returned.
   */
  respond(status, headers, hasBody) {
    if (this.closed) return false;
    if (this.resp !== P.RESP_WAITING) throw new P.RejectedError('RESPONSE already sent');
    if (!(status >= 200 && status <= 599 && Number.isInteger(status))) throw new RangeError(`status ${status}: a response is 200..599`);
    if (headers) {
      if (headers.length & 1) throw new TypeError('headers: a flat [name, value, ...] array');
      for (let i = 0; i < headers.length; i += 2) {
        if (!headers[i] || headers[i].length === 0) throw new TypeError('headers: empty name');
      }
    }
    const w = this.worker;
    /* A body the gateway holds until our first CREDIT (Expect: 100-continue):
     * if the handler starts reading it before this output is flushed, that
     * CREDIT must reach the gateway before the RESPONSE, or it can no longer
     * answer 100 Continue. Leave a slot for it in front of the head. */
    if (hasBody && this.granted === 0 && !this.reqEnded && this.bodyMode !== P.BODY_WEBSOCKET) w._headSlot(this);
    if (!w._response(this.id, status, headers, hasBody ? 1 : 0)) {
      this.reset(P.RESET.INTERNAL, 'response head larger than the gateway accepts');
      return false;
    }
    w.link.sendResponse(this, hasBody ? 1 : 0);
    this.responded = true;
    if (!hasBody) { this.ended = true; this._closed(null); }
    return true;
  }

  /**
   * Accept a WebSocket stream: RESPONSE 101 with `headers` (flat; e.g.
   * sec-websocket-protocol). False if the stream is closed, or its head is
   * larger than the gateway accepts (the stream is RESET instead).
   */
  accept(headers) {
    if (this.closed) return false;
    if (this.bodyMode !== P.BODY_WEBSOCKET || this.resp !== P.RESP_WAITING) throw new P.RejectedError('accept(): not a WebSocket waiting for its answer');
    const w = this.worker;
    if (!w._response(this.id, 101, headers || [], 0)) {
      this.reset(P.RESET.INTERNAL, 'response head larger than the gateway accepts');
      return false;
    }
    w.link.sendResponse(this, 0, 101);
    this.responded = true;
    return true;
  }

  /**
   * Send a WebSocket message (or, with fin false, a fragment of one that the
   * next calls continue): `data` a Buffer, `text` its type. Pieces go out as
   * the gateway's window allows; the rest waits, in order, for CREDIT.
   * Returns true when all of it was framed now. `cb(err)` runs once the last
   * byte was handed to the socket.
   */
  message(data, text, fin, cb) {
    if (this.closed || this.ws !== P.WS_OPEN || this.wsClose !== null) return false;
    /* fragments of one message all carry its first fragment's type */
    if (this.wsText >= 0) text = this.wsText === 1;
    this.wsText = fin ? -1 : (text ? 1 : 0);
    if (this.wsQueued === 0 && (this.wsQueue === null || this.wsQueue.length === 0)) {
      const win = this.sendWin;
      const n = data.length;
      if (n <= win) {
        this.worker._messageFrames(this, data, 0, n, text, fin);
        if (cb) this.worker._afterFlush(cb);
        return true;
      }
      if (win > 0) {
        this.worker._messageFrames(this, data, 0, win, text, false);
        data = data.subarray(win);
      }
    }
    if (this.wsQueue === null) this.wsQueue = [];
    this.wsQueue.push([data, text, fin, cb || null]);
    this.wsQueued += data.length;
    this.needDrain = true;
    return false;
  }

  /** WebSocket ping (MESSAGE flags 4): no credit needed, goes out at once. */
  ping(data, cb) {
    if (this.closed || this.ws !== P.WS_OPEN) return false;
    if (data.length > P.PING_MAX) throw new RangeError(`ping data of ${data.length} bytes (at most ${P.PING_MAX})`);
    this.worker.link.sendMessage(this, P.MSG.PING, data.length);
    this.worker._frame({ type: P.FRAME.MESSAGE, stream: this.id, flags: P.MSG.PING, data });
    if (cb) this.worker._afterFlush(cb);
    return true;
  }

  /**
   * Close the WebSocket (CLOSE, code 1000..4999, reason a Buffer of UTF-8),
   * after the messages still waiting for credit. False if nothing was done
   * (closed already, or a CLOSE is waiting already).
   */
  close(code, reason) {
    if (this.closed || this.ws !== P.WS_OPEN || this.wsClose !== null) return false;
    if (this.wsQueue !== null && this.wsQueue.length) {
      this.wsClose = [code, reason];
      return true;
    }
    this._sendClose(code, reason);
    return true;
  }

  _sendClose(code, reason) {
    const w = this.worker;
    w.link.sendClose(this);
    const f = { type: P.FRAME.CLOSE, stream: this.id, code };
    if (reason && reason.length) f.reason = reason;
    w._frame(f);
    this._closed(null);
  }

  /* Queued messages out as far as the window allows. */
  _wsPump() {
    const w = this.worker;
    const q = this.wsQueue;
    while (q.length) {
      const e = q[0];
      const d = e[0];
      const n = Math.min(d.length, this.sendWin);
      if (n < d.length) {
        if (n > 0) {
          w._messageFrames(this, d, 0, n, e[1], false);
          e[0] = d.subarray(n);
          this.wsQueued -= n;
        }
        break;
      }
      w._messageFrames(this, d, 0, n, e[1], e[2]);
      this.wsQueued -= n;
      q.shift();
      if (e[3]) w._afterFlush(e[3]);
    }
    if (q.length === 0) {
      if (this.wsClose !== null) {
        const c = this.wsClose;
        this._sendClose(c[0], c[1]);
        return;
      }
      if (this.needDrain) {
        this.needDrain = false;
        w._afterFlush(() => this.delegate.drain(this));
      }
    }
  }

  /**
   * Queue response body bytes (a Buffer/Uint8Array). Returns true when all of
   * them went out within the gateway's window, false when some wait for
   * credit (then delegate.drain() follows once they are all framed). `cb` is called
   * once these bytes are handed to the socket.
   */
  write(data, cb) {
    if (this.closed || this.ended) return false;
    const n = data.length;
    if (this.queued === 0) {
      const win = this.sendWin;
      if (n <= win) {
        if (n) this.worker._bodyFrames(this, data, 0, n);
        if (cb) this.worker._afterFlush(cb);
        return true;
      }
      if (win > 0) {
        this.worker._bodyFrames(this, data, 0, win);
        data = data.subarray(win);
      }
    }
    if (this.queue === null) this.queue = [];
    this.queue.push(data);
    this.queued += data.length;
    this.queuedTotal += data.length;
    if (cb) {
      if (this.callbacks === null) this.callbacks = [];
      this.callbacks.push([this.queuedTotal, cb]);
    }
    this.needDrain = true;
    return false;
  }

  /** write() for a string: small ones are encoded straight into the output slab. */
  writeString(str, encoding, len, cb) {
    if (this.closed || this.ended) return false;
    const w = this.worker;
    if (this.queued === 0 && len <= this.sendWin && len <= COPY_MAX && len <= w.bodyMax) {
      w._bodyString(this, str, encoding, len);
      if (cb) w._afterFlush(cb);
      return true;
    }
    return this.write(Buffer.from(str, encoding), cb);
  }

  /** End the response (after queued bytes). trailers: flat array or null. */
  end(trailers) {
    if (this.closed || this.ended) return false;
    this.ended = true;
    if (this.queued > 0) {
      this.endPending = true;
      this.endTrailers = trailers || null;
      return true;
    }
    this._sendEnd(trailers);
    return true;
  }

  _sendEnd(trailers) {
    const w = this.worker;
    w.link.sendEnd(this);
    w._end(this.id, trailers);
    this._closed(null);
  }

  /** Abandon the stream: RESET with code (1 internal, 2 refused, 3 overloaded). */
  reset(code = P.RESET.INTERNAL, message) {
    if (this.closed) return false;
    const w = this.worker;
    w.link.sendReset(this);
    w._frame({ type: P.FRAME.RESET, stream: this.id, code, message: message ? toText(message) : undefined });
    this._closed(null);
    return true;
  }

  /** LIMIT: the largest request body the gateway accepts for this stream. */
  setLimit(bytes) {
    if (this.closed || this.reqEnded) return false;
    if (!(Number.isInteger(bytes) && bytes >= 0 && bytes <= P.MAX_ID)) throw new RangeError('limit out of range');
    this.limit = bytes;
    const f = { type: P.FRAME.LIMIT, stream: this.id, max_body: bytes };
    /* LIMIT goes before the first CREDIT, so also before a waiting head */
    if (this.headGen === this.worker.gen) this.worker._intoSlot(this, P.encodeFrame(f));
    else this.worker._frame(f);
    this.limitSent = true;
    return true;
  }

  /**
   * The consumer has used `total` request-body bytes so far (cumulative).
   * Grants credit so that at most `window` bytes are buffered or in flight
   * for this stream, in batches of half a window (or whatever is free when
   * the gateway's view of the window is empty). Credit beyond the initial
   * window comes out of the worker's link-wide `bodyBudget`, so the initial
   * windows plus the budget bound the request-body bytes a link buffers
   * however many streams are open; the initial window is always available,
   * so a reading stream never starves.
   */
  consumed(total) {
    if (this.closed || this.reqEnded) return;
    this.consumedTotal = total;
    const w = this.worker;
    const W = w.window;
    const out = this.granted - total; // buffered or in flight
    let extra = out - w.initialWindow;
    if (extra < 0) extra = 0;
    w.extra += extra - this.extra;
    this.extra = extra;
    let want = W - out;
    let last = false; // the grant that covers the rest of a declared body: no point holding it back
    if (this.declared >= 0 && this.granted + want >= this.declared) {
      want = this.declared - this.granted;
      last = true;
    }
    if (want <= 0) return;
    /* new extra = max(0, out + want - initial) may grow by at most what is free */
    const free = w.bodyBudget - w.extra;
    const cap = w.initialWindow + extra + (free > 0 ? free : 0) - out;
    if (want > cap) {
      want = cap;
      last = false;
    }
    if (want <= 0) return;
    if (want >= (W >>> 1) || this.granted === this.received || last) {
      this.granted += want;
      let e = out + want - w.initialWindow;
      if (e < 0) e = 0;
      w.extra += e - this.extra;
      this.extra = e;
      w.link.sendCredit(this, want);
      if (this.headGen === w.gen) w._intoSlot(this, P.encodeFrame({ type: P.FRAME.CREDIT, stream: this.id, increment: want }));
      else w._credit(this.id, want);
    }
  }

  /**
   * WebSocket input: the application has taken `total` message bytes so far
   * (delivered, or held in a message being reassembled). Keeps the gateway's
   * window at most the worker's `wsWindow`, granted in batches of half of it
   * (or at once when the window is used up). No link-wide budget is involved:
   * a WebSocket never has more than wsWindow in flight to it.
   */
  wsConsumed(total) {
    if (this.closed) return;
    const W = this.worker.wsWindow;
    const want = W - (this.granted - total);
    if (want <= 0) return;
    if (want >= (W >>> 1) || this.granted === this.received) {
      this.granted += want;
      this.worker.link.sendCredit(this, want);
      this.worker._credit(this.id, want);
    }
  }

  /* The request side ended: credit not yet used never will be; what is still
   * buffered stays on the budget until the stream closes. */
  _reqEnd() {
    this.reqEnded = true;
    if (this.extra > 0) {
      let e = this.received - this.consumedTotal - this.worker.initialWindow;
      if (e < 0) e = 0;
      if (e < this.extra) {
        this.worker.extra -= this.extra - e;
        this.extra = e;
      }
    }
  }

  /* ---- from the worker ---- */

  _credit() {
    if (this.wsQueue !== null) { this._wsPump(); return; }
    if (this.queued === 0) return;
    const w = this.worker;
    let win = this.sendWin;
    const q = this.queue;
    while (q.length && win > 0) {
      const d = q[0];
      const n = Math.min(d.length, win);
      w._bodyFrames(this, d, 0, n);
      win -= n;
      this.queued -= n;
      if (n === d.length) q.shift(); else q[0] = d.subarray(n);
    }
    if (this.callbacks !== null) {
      const cbs = this.callbacks;
      const framed = this.queuedTotal - this.queued;
      let k = 0;
      while (k < cbs.length && cbs[k][0] <= framed) { w._afterFlush(cbs[k][1]); k++; }
      if (k === cbs.length) this.callbacks = null;
      else if (k) cbs.splice(0, k);
    }
    if (this.queued === 0) {
      if (this.endPending) {
        this.endPending = false;
        this._sendEnd(this.endTrailers);
        return;
      }
      if (this.needDrain) {
        this.needDrain = false;
        w._afterFlush(() => this.delegate.drain(this));
      }
    }
  }

  _closed(cancel) {
    if (this.closed) return;
    this.closed = true;
    if (this.extra > 0) {
      this.worker.extra -= this.extra;
      this.extra = 0;
    }
    this.queue = null;
    this.queued = 0;
    let cbs = this.callbacks;
    this.callbacks = null;
    if (this.wsQueue !== null) {
      for (const e of this.wsQueue) if (e[3]) (cbs || (cbs = [])).push([0, e[3]]);
      this.wsQueue = null;
      this.wsQueued = 0;
    }
    this.worker._streamClosed(this);
    if (cbs) {
      const err = new Error('the stream was closed before these bytes were sent');
      err.code = 'ERR_STREAM_DESTROYED';
      for (const e of cbs) process.nextTick(e[1], err);
    }
    this.delegate.close(this, cancel);
  }
}

/**
 * A link to the gateway.
 *
 * options:
 *   socket            one address (default $SLUICE_SOCKET), or a parsed one
 *                     ({path} or {host, port, tls, name}); several
 *                     addresses are remote.js's business (RemoteWorker)
 *   tlsCa, tlsCert, tlsKey, tlsServerName
 *                     for a tls: address (default $SLUICE_TLS_*)
 *   maxStreams        concurrent streams announced (default $SLUICE_MAX_STREAMS,
 *                     else 4096)
 *   window            most request-body bytes buffered or in flight per
 *                     stream while its handler reads (default 256 KiB)
 *   initialWindow     request-body bytes per stream the gateway may send
 *                     before the handler reads, announced in HELLO (default
 *                     the smaller of window and 16 KiB)
 *   bodyBudget        link-wide bound on credit beyond the initial windows
 *                     (default 16 MiB): request-body memory of the link is at
 *                     most maxStreams x initialWindow + bodyBudget
 *   maxFrame          largest frame accepted (default 1 MiB)
 *   token             for TCP workers (default $SLUICE_TOKEN)
 *   handshakeTimeout  ms for connect + TLS + HELLO (default 10000; in
 *                     remote mode at most three ping intervals)
 *   pingMs            ms between PINGs once the link is up, and a link
 *                     silent for three of them is closed (set by RemoteWorker
 *                     in remote mode; default none)
 *   shutdownTimeout   ms of grace for shutdown() (default 30000)
 *   onRequest(stream) called for every new stream
 *
 * events: 'ready' (gateway settings), 'drain' (DRAIN received),
 *         'close' (error or null), 'error' (link errors, also passed to 'close')
 */
/* SLUICE_MAX_STREAMS (PROTOCOL.md 10.2): the operator sizes a worker without
 * touching its code; 0 when unset. */
function envMaxStreams() {
  const raw = (process.env.SLUICE_MAX_STREAMS || '').trim();
  if (!raw) return 0;
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw) || n < 1 || n > P.MAX_STREAMS) {
    throw new RangeError(`SLUICE_MAX_STREAMS=${raw}: must be a whole number in 1..${P.MAX_STREAMS}`);
  }
  return n;
}

class Worker extends EventEmitter {
  constructor(options = {}) {
    super();
    const o = options;
    this.address = o.socket !== undefined ? o.socket : process.env.SLUICE_SOCKET;
    this.maxStreams = o.maxStreams || envMaxStreams() || DEFAULT_MAX_STREAMS;
    this.window = o.window !== undefined ? o.window : DEFAULT_WINDOW;
    this.initialWindow = o.initialWindow !== undefined ? o.initialWindow : Math.min(this.window, DEFAULT_INITIAL_WINDOW);
    this.bodyBudget = o.bodyBudget !== undefined ? o.bodyBudget : DEFAULT_BODY_BUDGET;
    this.extra = 0; // credit beyond the initial windows, granted and not yet consumed (all streams)
    this.maxFrame = o.maxFrame || P.DEFAULT_FRAME;
    this.token = o.token !== undefined ? o.token : process.env.SLUICE_TOKEN;
    this.handshakeTimeout = o.handshakeTimeout || DEFAULT_HANDSHAKE_TIMEOUT;
    this.pingMs = o.pingMs || 0;
    this.shutdownTimeout = o.shutdownTimeout || 30000;
    this.onRequest = o.onRequest || null;
    this.tlsOptions = o; // where tlsSettings() finds tlsCa etc. for a tls: address
    this.tls = o.tlsSettled || null; // TLS settings read once by RemoteWorker
    /* Remote mode: {open, max} shared by all links, so that at most `max`
     * streams are open across them (PROTOCOL.md 10.6, 4) */
    this.gate = o.gate || null;
    /* Announce `websocket` in HELLO: a boolean, or a function asked when the
     * HELLO is sent (the http layer: "is an upgrade listener attached?"). */
    this.websocket = o.websocket || false;
    /* Message credit in flight to one WebSocket (PROTOCOL.md 5.2) */
    this.wsWindow = o.wsWindow !== undefined ? o.wsWindow : (this.initialWindow || DEFAULT_INITIAL_WINDOW);
    if (!(Number.isInteger(this.wsWindow) && this.wsWindow >= 1 && this.wsWindow <= P.MAX_WINDOW)) throw new RangeError('wsWindow out of range');
    if (!(this.window >= 1 && this.window <= P.MAX_WINDOW)) throw new RangeError('window out of range');
    if (!(Number.isInteger(this.initialWindow) && this.initialWindow >= 0 && this.initialWindow <= this.window)) {
      throw new RangeError('initialWindow out of range (0 .. window)');
    }
    if (!(this.bodyBudget >= 0)) throw new RangeError('bodyBudget out of range');
    if (!(this.maxStreams >= 1 && this.maxStreams <= P.MAX_STREAMS)) throw new RangeError('maxStreams out of range');
    this.link = new P.Link('worker', { maxStreams: this.maxStreams });
    this.link.makeStream = (id) => new Stream(this, id);
    this.decoder = new P.FrameDecoder(this.maxFrame);
    this.w = new P.Writer(64 * 1024);
    this.out = []; // buffers to write, in order, besides the slab's pending bytes
    this.after = []; // callbacks to run once this tick's output is written
    this.scheduled = false;
    this.gen = 0; // flush generation: bumped each time `out` is written
    this.heads = []; // streams whose RESPONSE waits in `out` behind a credit slot
    this.deferred = false; // this output's flush was put off once for them
    this.sock = null;
    this.gateway = null; // the gateway's HELLO settings
    this.bodyMax = P.bodyMax(P.DEFAULT_FRAME);
    this.peerMaxFrame = P.DEFAULT_FRAME; // the gateway's max_frame
    this.draining = false; // DRAIN received
    this.retiring = false; // RETIRE sent
    this.refusing = false; // new REQUESTs are refused (shutdown)
    this.closed = false;
    this.closeError = null;
    this._flushBound = () => this._flush();
    this._onFrameBound = (f) => this._onFrame(f);
    this._timer = null;
    /* liveness (pingMs): PINGs sent, and when bytes last arrived */
    this._pingTimer = null;
    this._silenceTimer = null;
    this._pings = 0;
    this.lastRecv = 0;
  }

  get openStreams() { return this.link.streams.size; }

  /** Connect, send HELLO and wait for the gateway's. Resolves with its settings. */
  connect() {
    return new Promise((resolve, reject) => {
      let addr;
      let sock;
      try {
        addr = typeof this.address === 'object' && this.address !== null ? this.address : parseAddress(this.address);
        if (addr.tls) {
          /* TLS from the first byte; HELLO once the handshake is done */
          sock = tls.connect(tlsConnectOptions(addr, this.tls || tlsSettings(this.tlsOptions)));
          sock.on('data', (c) => this._onData(c));
        }
      } catch (e) {
        reject(e);
        return;
      }
      if (!addr.tls) {
        /* Reads land in one reused buffer (no allocation per read); the
         * decoder copies BODY data out of it. */
        this.readBuf = Buffer.allocUnsafe(65536);
        sock = net.connect(Object.assign({
          onread: { buffer: this.readBuf, callback: (n, buf) => { this._onData(buf.subarray(0, n), true); } },
        }, addr.path !== undefined ? { path: addr.path } : { host: addr.host, port: addr.port }));
      }
      this.sock = sock;
      sock.setNoDelay && addr.host && sock.setNoDelay(true);
      let settled = false;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        reject(err);
      };
      this._timer = setTimeout(() => {
        const e = new Error('handshake timeout');
        fail(e);
        if (this.link.localHello) {
          this._fatal(P.E.TIMEOUT, 'no HELLO in time');
          /* once the ERROR is out, not when a silent peer closes its side */
          if (sock.destroySoon) sock.destroySoon();
          return;
        }
        /* still connecting (an unreachable host) or in the TLS handshake:
         * nothing to say, and nothing left to the kernel's own timeout */
        sock.destroy();
        this._close(new Error(`${sock.connecting ? 'connect' : 'TLS handshake'} timeout (${this.handshakeTimeout} ms)`));
      }, this.handshakeTimeout);
      this._timer.unref && this._timer.unref();
      this.once('ready', (h) => { settled = true; resolve(h); });
      this.once('close', (err) => fail(err || new Error('the link closed during the handshake')));
      sock.on(addr.tls ? 'secureConnect' : 'connect', () => {
        if (this.closed) return; // closed while connecting
        const s = { pid: process.pid, lib: LIB, max_streams: this.maxStreams, window: this.initialWindow };
        if (this.maxFrame !== P.DEFAULT_FRAME) s.max_frame = this.maxFrame;
        if (this.token) s.token = toText(this.token);
        if (typeof this.websocket === 'function' ? this.websocket() : this.websocket === true) s.websocket = true;
        const hello = { type: P.FRAME.HELLO, stream: 0, version: P.VERSION, settings: s };
        this.link.send(hello);
        this._frame(hello);
      });
      sock.on('end', () => {
        try {
          this.decoder.finish();
        } catch (e) {
          this._close(e);
          return;
        }
        this._close(this.draining ? null : new Error('the gateway closed the link'));
      });
      sock.on('error', (err) => this._close(err));
      sock.on('close', () => this._close(this.closeError || (this.draining ? null : new Error('the link closed'))));
    });
  }

  /* ---- input ---- */

  _onData(chunk, transient = false) {
    if (this.closed) return;
    if (this.pingMs) this.lastRecv = performance.now();
    try {
      this.decoder.feed(chunk, this._onFrameBound, transient);
    } catch (e) {
      if (e instanceof P.ProtocolError) {
        this._fatal(e.code, e.detail || e.errorName, e.payload ? `frame: ${P.describePayload(e.payload)}` : '');
      }
      else throw e;
    }
  }

  _onFrame(f) {
    if (this.closed) return;
    const ev = this.link.recv(f); // throws ProtocolError: handled in _onData
    switch (f.type) {
      case 2: { // REQUEST
        const s = ev.stream;
        s._init(f);
        if (this.refusing) {
          s.reset(P.RESET.REFUSED, 'the worker is shutting down');
          return;
        }
        const g = this.gate;
        if (g !== null) {
          if (g.open >= g.max) {
            s.reset(P.RESET.OVERLOADED, 'the worker is at its max_streams');
            return;
          }
          g.open++;
          s.gated = true;
        }
        this._dispatch(s);
        return;
      }
      case 4: { // BODY
        const s = ev.udata;
        if (s === null || ev.ignored) return;
        s.received += f.data.length;
        s.delegate.body(s, f.data);
        return;
      }
      case 5: { // END
        const s = ev.udata;
        if (s === null || ev.ignored) return;
        s._reqEnd();
        s.delegate.end(s, f.trailers || null);
        return;
      }
      case 6: { // CREDIT
        const s = ev.udata;
        if (s !== null && !ev.ignored) s._credit();
        return;
      }
      case 15: { // MESSAGE
        const s = ev.udata;
        if (s === null || ev.ignored) return;
        if (f.flags < P.MSG.PING) s.received += f.data.length;
        s.delegate.message(s, f.flags, f.data);
        return;
      }
      case 16: { // CLOSE
        const s = ev.udata;
        if (s === null || ev.ignored) return;
        s._closed({ reason: 0, name: 'close', code: f.code, message: f.reason || '' });
        return;
      }
      case 7: { // CANCEL
        const s = ev.udata;
        if (s === null || ev.ignored) return;
        s._closed({ reason: f.reason, name: P.cancelReasonName(f.reason), message: f.message || '' });
        return;
      }
      case 10: // PING
        this._frame({ type: P.FRAME.PONG, stream: 0, opaque: f.opaque });
        return;
      case 12: // DRAIN
        this.draining = true;
        this.emit('drain', f.timeout_ms);
        this._maybeFinish();
        return;
      case 14: { // ERROR
        const e = new P.ProtocolError(f.code, `from the gateway: ${Buffer.from(f.message, 'latin1').toString()}`);
        this.closeError = e;
        this._close(e);
        return;
      }
      case 1: { // HELLO
        clearTimeout(this._timer);
        this._timer = null;
        const h = f.settings;
        this.gateway = Object.assign({}, h);
        for (const k of ['lib', 'pool', 'server', 'token']) {
          if (typeof this.gateway[k] === 'string') this.gateway[k] = Buffer.from(this.gateway[k], 'latin1').toString();
        }
        const mf = h.max_frame || P.DEFAULT_FRAME;
        this.bodyMax = P.bodyMax(mf);
        this.peerMaxFrame = mf;
        if (this.pingMs) this._startLiveness();
        this.emit('ready', this.gateway);
        return;
      }
      default:
        return; // PONG
    }
  }

  _dispatch(s) {
    if (this.onRequest === null) {
      s.reset(P.RESET.REFUSED, 'no handler');
      return;
    }
    this.onRequest(s);
  }

  /* ---- output ---- */

  _schedule() {
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this._flushBound);
    }
  }

  /** Run cb after this tick's output has been handed to the socket. */
  _afterFlush(cb) {
    this.after.push(cb);
    this._schedule();
  }

  /**
   * A RESPONSE is about to be written for a stream whose body waits for our
   * first CREDIT: start a new output segment with an empty slot in front of
   * it, where that CREDIT (and a LIMIT) go if they come before the flush.
   */
  _headSlot(s) {
    if (this.w.pending) this.out.push(this.w.take());
    s.headGen = this.gen;
    s.headSlot = this.out.length;
    this.out.push(EMPTY);
    this.heads.push(s);
  }

  /** Put an encoded frame of stream s in its head slot (ahead of its RESPONSE). */
  _intoSlot(s, buf) {
    const cur = this.out[s.headSlot];
    this.out[s.headSlot] = cur.length ? Buffer.concat([cur, buf]) : buf;
    this._schedule();
  }

  _flush(now) {
    if (this.heads.length) {
      /* A head waits in front of a body the handler may be about to read
       * (res.flushHeaders() or res.write() and then req.pipe(res): the
       * pipe starts reading on the next tick). Give it until the next turn
       * of the event loop to grant its first credit, which then goes out
       * ahead of the head; a handler that answers without reading (401,
       * 413) grants nothing, and the body is never sent. Once per output. */
      if (!this.deferred && now !== true) {
        const hs = this.heads;
        for (let i = 0; i < hs.length; i++) {
          const s = hs[i];
          if (!s.closed && s.granted === 0 && !s.reqEnded) {
            this.deferred = true;
            this.scheduled = true;
            setImmediate(this._flushBound);
            return;
          }
        }
      }
      this.heads = [];
    }
    this.deferred = false;
    this.gen++;
    this.scheduled = false;
    const w = this.w;
    const sock = this.sock;
    if (w.pending) this.out.push(w.take());
    const out = this.out;
    if (out.length && sock !== null && !sock.destroyed) {
      if (out.length === 1) {
        sock.write(out[0]);
      } else {
        sock.cork();
        for (let i = 0; i < out.length; i++) if (out[i].length) sock.write(out[i]);
        sock.uncork();
      }
      /* Nothing left in the socket's queue: the kernel took the bytes
       * synchronously, so the slab can be written over from the start. */
      if (sock.writableLength === 0 && w.start === w.pos) w.rewind();
    }
    if (out.length) this.out = [];
    if (this.after.length) {
      const after = this.after;
      this.after = [];
      for (let i = 0; i < after.length; i++) after[i]();
    }
  }

  _frame(f) {
    P.writeFrame(this.w, f);
    this._schedule();
  }

  /* RESPONSE into the slab; false (nothing written) if it exceeds the gateway's max_frame. */
  _response(sid, status, headers, body) {
    const w = this.w;
    const at = w.begin(24) - w.start;
    w.u8(0x95); w.u8(3); w.uint(sid); w.uint(status);
    w.headers(headers);
    w.ensure(1);
    w.u8(body);
    if (w.finish(w.start + at) > this.peerMaxFrame) {
      w.pos = w.start + at;
      return false;
    }
    this._schedule();
    return true;
  }

  _end(sid, trailers) {
    if (trailers && trailers.length) {
      const w = this.w;
      const at = w.pos - w.start;
      if (P.writeFrame(w, { type: P.FRAME.END, stream: sid, trailers }) <= this.peerMaxFrame) {
        this._schedule();
        return;
      }
      w.pos = w.start + at; // trailers too large for a frame: end without them
    }
    const w = this.w;
    w.ensure(16);
    const b = w.buf;
    const at = w.pos;
    w.pos += 4;
    w.u8(0x92); w.u8(5); w.uint(sid);
    b.writeUInt32BE(w.pos - at - 4, at);
    this._schedule();
  }

  _credit(sid, n) {
    const w = this.w;
    w.ensure(24);
    const at = w.pos;
    w.pos += 4;
    w.u8(0x93); w.u8(6); w.uint(sid); w.uint(n);
    w.buf.writeUInt32BE(w.pos - at - 4, at);
    this._schedule();
  }

  /** One BODY frame for a string of `len` bytes in `encoding` (fits the window and a frame). */
  _bodyString(s, str, encoding, len) {
    this.link.sendBody(s, len);
    const w = this.w;
    w.ensure(20 + len);
    const b = w.buf;
    const at = w.pos;
    w.pos += 4;
    w.u8(0x93); w.u8(4); w.uint(s.id); w.binHead(len);
    b.writeUInt32BE(w.pos - at - 4 + len, at);
    const p = w.pos;
    if (len === str.length && (encoding === 'utf8' || encoding === 'utf-8' || encoding === 'latin1' || encoding === 'ascii')) {
      /* one byte per character */
      if (len <= 64) { for (let i = 0; i < len; i++) b[p + i] = str.charCodeAt(i); } else b.latin1Write(str, p, len);
    } else {
      b.write(str, p, len, encoding);
    }
    w.pos = p + len;
    this._schedule();
  }

  /**
   * MESSAGE frames for data[off, off+n) (within the window, checked by the
   * link): the *more* bit on every piece but the last of a message (`fin`).
   * An empty message is one empty piece.
   */
  _messageFrames(s, data, off, n, text, fin) {
    const link = this.link;
    const max = this.bodyMax - MESSAGE_EXTRA;
    const w = this.w;
    const sid = s.id;
    const t = text ? P.MSG.TEXT : P.MSG.BINARY;
    do {
      const len = n < max ? n : max;
      const flags = (fin && len === n) ? t : t | P.MSG.MORE;
      link.sendMessage(s, flags, len);
      const copy = len <= COPY_MAX;
      w.ensure(24 + (copy ? len : 0));
      const b = w.buf;
      const at = w.pos;
      w.pos += 4;
      w.u8(0x94); w.u8(15); w.uint(sid); w.u8(flags); w.binHead(len);
      b.writeUInt32BE(w.pos - at - 4 + len, at);
      if (copy) {
        if (len) b.set(off === 0 && len === data.length ? data : data.subarray(off, off + len), w.pos);
        w.pos += len;
      } else {
        this.out.push(w.take());
        this.out.push(off === 0 && len === data.length ? data : data.subarray(off, off + len));
      }
      off += len;
      n -= len;
    } while (n > 0);
    this._schedule();
  }

  /** BODY frames for data[off, off+n), within the window (checked by the link). */
  _bodyFrames(s, data, off, n) {
    const link = this.link;
    const max = this.bodyMax;
    const w = this.w;
    const sid = s.id;
    while (n > 0) {
      const len = n < max ? n : max;
      link.sendBody(s, len);
      const copy = len <= COPY_MAX;
      w.ensure(20 + (copy ? len : 0));
      const b = w.buf;
      const at = w.pos;
      w.pos += 4;
      w.u8(0x93); w.u8(4); w.uint(sid); w.binHead(len);
      const head = w.pos - at - 4;
      b.writeUInt32BE(head + len, at);
      if (copy) {
        if (off === 0 && len === data.length) b.set(data, w.pos);
        else b.set(data.subarray(off, off + len), w.pos);
        w.pos += len;
      } else {
        this.out.push(w.take());
        this.out.push(off === 0 && len === data.length ? data : data.subarray(off, off + len));
      }
      off += len;
      n -= len;
    }
    this._schedule();
  }

  /* ---- liveness (remote mode, PROTOCOL.md 10.6 item 8) ---- */

  /* PING every pingMs; close the link once nothing at all has arrived for
   * three intervals. The silence check is a deadline re-armed lazily, so
   * that arriving bytes cost a clock read, not a timer. */
  _startLiveness() {
    const iv = this.pingMs;
    this.lastRecv = performance.now();
    this._pingTimer = setInterval(() => {
      if (this.closed || !this.link.ready) return;
      const f = { type: P.FRAME.PING, stream: 0, opaque: ++this._pings };
      this.link.send(f);
      this._frame(f);
    }, iv);
    this._pingTimer.unref(); // the socket keeps the process alive, not this
    const check = (polled) => {
      this._silenceTimer = null;
      if (this.closed) return;
      const left = this.lastRecv + 3 * iv - performance.now();
      if (left > 0) {
        this._silenceTimer = setTimeout(check, left);
        this._silenceTimer.unref();
        return;
      }
      if (polled !== true) {
        /* timers run before the poll phase: after our own loop was blocked,
         * read what is waiting before calling the gateway silent */
        setImmediate(check, true);
        return;
      }
      const e = new Error(`silent for ${Number(((3 * iv - left) / 1000).toFixed(1))}s`);
      e.silent = true;
      /* a gone peer reads nothing: do not wait for our output to drain */
      if (this.sock) this.sock.destroy();
      this._close(e);
    };
    this._silenceTimer = setTimeout(check, 3 * iv);
    this._silenceTimer.unref();
  }

  /* ---- lifecycle ---- */

  _streamClosed(s) {
    if (s.gated) {
      s.gated = false;
      this.gate.open--;
    }
    if (this.link.streams.size === 0) this._maybeFinish();
  }

  _maybeFinish() {
    if (this.draining && this.link.streams.size === 0 && !this.closed && !this._ending) {
      this._ending = true;
      /* Close once the last frames are out. */
      this._afterFlush(() => {
        if (this.sock) this.sock.end();
      });
    }
  }

  /**
   * Ask the gateway for a replacement (RETIRE); keep serving until it
   * answers with DRAIN, then close once the open streams have finished.
   */
  retire(reason) {
    if (this.retiring || this.draining || this.closed || !this.link.ready) return;
    this.retiring = true;
    const f = { type: P.FRAME.RETIRE, stream: 0 };
    if (reason) f.reason = toText(reason);
    this.link.send(f);
    this._frame(f);
  }

  /**
   * Graceful shutdown (what SIGTERM does): RETIRE, refuse new requests with
   * RESET refused (the gateway retries them elsewhere), finish the open
   * streams, close once the gateway has answered with DRAIN. After `timeout`
   * ms the link is closed whatever is left. Resolves when closed.
   */
  shutdown(timeout = this.shutdownTimeout) {
    if (!this._shutdownPromise) {
      this._shutdownPromise = new Promise((resolve) => {
        if (this.closed) { resolve(); return; }
        this.once('close', () => resolve());
        this.refusing = true;
        this.retire('shutdown');
        const t = setTimeout(() => this.close(), timeout);
        t.unref && t.unref();
        this._maybeFinish();
      });
    }
    return this._shutdownPromise;
  }

  /** Close the link now: open streams are cancelled. */
  close() {
    if (this.closed) return;
    if (this.sock && this.sock.connecting) this.sock.destroy(); // nothing to say yet
    else if (this.sock && !this.sock.destroyed) {
      this._flush(true);
      this.sock.end();
      this.sock.destroySoon ? this.sock.destroySoon() : this.sock.destroy();
    }
    this._close(this.draining ? null : new Error('closed by the worker'));
  }

  /** A link error found here: send ERROR and close. */
  _fatal(code, message, diagnostic = '') {
    if (this.closed) return;
    const e = new P.ProtocolError(code, diagnostic ? `${message}; ${diagnostic}` : message);
    this.closeError = e;
    try {
      this.link.send({ type: P.FRAME.ERROR, stream: 0, code, message: toText(message) });
      this._frame({ type: P.FRAME.ERROR, stream: 0, code, message: toText(message) });
      this._flush(true);
    } catch (_) { /* nothing more can be sent */ }
    if (this.sock) this.sock.end();
    this._close(e);
  }

  _close(err) {
    if (this.closed) return;
    this.closed = true;
    if (this._timer) { clearTimeout(this._timer); this._timer = null; }
    if (this._pingTimer) { clearInterval(this._pingTimer); this._pingTimer = null; }
    if (this._silenceTimer) { clearTimeout(this._silenceTimer); this._silenceTimer = null; }
    this.link.fail();
    if (this.sock && !this.sock.destroyed && !this.sock.writableEnded) this.sock.destroy();
    const cancel = { reason: 0, name: 'link_closed', message: err ? err.message : 'the link closed' };
    const open = this.link.streams.values();
    this.link.streams.clear();
    for (const s of open) s._closed(cancel);
    if (err && this.listenerCount('error')) this.emit('error', err);
    this.emit('close', err || null);
  }
}

module.exports = {
  Worker, Stream, parseAddress, parseAddressList, tlsSettings, tlsConnectOptions, LIB, DEFAULT_MAX_STREAMS,
  DEFAULT_HANDSHAKE_TIMEOUT,
};
