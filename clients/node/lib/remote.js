'use strict';
/*
 * Remote mode (PROTOCOL.md 10.6): a worker attached to several gateways, or
 * to any over TCP or TLS. Every address of every entry of the list gets its
 * own link (a Worker from worker.js); host names are resolved again every
 * resolveInterval; links that fail or close are opened again with jittered
 * backoff; one stream budget (maxStreams) covers all links; a stop retires
 * every link that is up and ends when each has drained.
 */
const net = require('node:net');
const dns = require('node:dns');
const { EventEmitter } = require('node:events');
const P = require('./protocol');
const { Worker, parseAddressList, tlsSettings, DEFAULT_HANDSHAKE_TIMEOUT } = require('./worker');

const DELAY_MIN = 100; // ms before the first reconnect of an address
const DELAY_MAX = 2000;
const DEFAULT_RESOLVE_INTERVAL = 10; // seconds
const DEFAULT_PING_INTERVAL = 5; // seconds

/** Whether a parsed address list means remote mode: several addresses, or any tcp:/tls:. */
function isRemote(list) {
  return list.length > 1 || list.some((a) => a.host !== undefined);
}

function defaultLookup(host) {
  return dns.promises.lookup(host, { all: true });
}

function isAuth(err) {
  return err instanceof P.ProtocolError && err.code === P.E.AUTH;
}

/**
 * The links of a remote worker. Takes the Worker options (passed to every
 * link; maxStreams is the budget of the whole worker) and:
 *   socket           a comma-separated list or an array of addresses
 *                    (default $SLUICE_SOCKET)
 *   tlsCa, tlsCert, tlsKey, tlsServerName
 *                    PEM file names (or PEM text/Buffers) and the name to
 *                    verify, for tls: addresses (default $SLUICE_TLS_*)
 *   resolveInterval  seconds between resolutions of host names
 *                    (default $SLUICE_RESOLVE_INTERVAL, else 10; at least 1)
 *   pingInterval     seconds between PINGs on every link that is up; a link
 *                    silent for three intervals is closed and reopened, and
 *                    an attempt (connect, TLS, HELLO) gets three intervals
 *                    or handshakeTimeout, the shorter
 *                    (default $SLUICE_PING_INTERVAL, at least 1, else 5; the
 *                    option may be a fraction of a second, for tests)
 *   lookup(host)     resolver: a promise of [{address, family}] or of
 *                    address strings (default dns.promises.lookup, all: true)
 *   log(line)        diagnostics (default: a line on stderr)
 *   random()         in [0, 1): jitter of the reconnect delays (default Math.random)
 *
 * events: 'ready' (gateway settings, link) each time a link attaches,
 *         'drain' (timeout_ms, link), 'close' (error or null) once, when the
 *         worker has stopped: the error is the gateway's ERROR auth.
 */
class RemoteWorker extends EventEmitter {
  constructor(options = {}) {
    super();
    const o = options;
    const raw = o.socket !== undefined ? o.socket : process.env.SLUICE_SOCKET;
    this.entries = parseAddressList(raw);
    if (!this.entries.length) throw new Error('no socket: set SLUICE_SOCKET or pass options.socket');
    /* configuration errors show at start, not at the first connection */
    this.tls = tlsSettings(o, this.entries.some((a) => a.tls));
    let ri = o.resolveInterval !== undefined ? o.resolveInterval : process.env.SLUICE_RESOLVE_INTERVAL;
    ri = ri === undefined || ri === '' ? DEFAULT_RESOLVE_INTERVAL : Number(ri);
    if (!(ri > 0)) throw new RangeError(`resolveInterval: ${ri} is not a number of seconds`);
    this.resolveInterval = Math.max(1, ri) * 1000;
    const pe = process.env.SLUICE_PING_INTERVAL;
    let pi = o.pingInterval !== undefined ? o.pingInterval : (pe === undefined || pe === '' ? DEFAULT_PING_INTERVAL : pe);
    if (typeof pi === 'string') pi = Math.max(1, Number(pi)); // the variable: at least 1
    if (!(pi > 0)) throw new RangeError(`pingInterval: ${pi} is not a number of seconds`);
    this.pingInterval = pi * 1000;
    this.lookup = o.lookup || defaultLookup;
    this.log = o.log || ((line) => console.error(`sluice-worker: ${line}`));
    this.random = o.random || Math.random;
    this.onRequest = o.onRequest || null;
    this.linkOptions = Object.assign({}, o, {
      onRequest: (s) => this._dispatch(s),
      tlsSettled: this.tls,
      pingMs: this.pingInterval,
      handshakeTimeout: Math.min(3 * this.pingInterval, o.handshakeTimeout || DEFAULT_HANDSHAKE_TIMEOUT),
    });
    /* validates the link options now, and settles maxStreams */
    const probe = new Worker(Object.assign({}, this.linkOptions, { socket: null }));
    this.maxStreams = probe.maxStreams;
    this.shutdownTimeout = probe.shutdownTimeout;
    this.gate = { open: 0, max: this.maxStreams };
    this.linkOptions.gate = this.gate;
    this.slots = new Map(); // address key -> slot (one link at most)
    this.answers = this.entries.map((e) => (e.path !== undefined || net.isIP(e.host) ? [e.host || e.path] : []));
    this.resolveFailed = this.entries.map(() => false);
    this.gateway = null; // the settings of the gateway attached last
    this.started = false;
    this.stopping = false;
    this.closed = false;
    this.error = null; // ERROR auth, once received
    this._resolveTimer = null;
    this._resolving = false;
    this._graceTimer = null;
    this._shutdownPromise = null;
  }

  /** Streams open across all links. */
  get openStreams() { return this.gate.open; }

  /** The links that are up (handshake done, not closed). */
  get links() {
    const out = [];
    for (const slot of this.slots.values()) if (slot.link !== null && slot.link.gateway !== null && !slot.link.closed) out.push(slot.link);
    return out;
  }

  /**
   * Start: resolve, connect every address, keep them connected. Resolves
   * with the first gateway's settings; rejects if the worker stops before
   * any link is up.
   */
  connect() {
    if (!this.started) {
      this.started = true;
      this._firstReady = new Promise((resolve, reject) => {
        const onReady = (h) => { this.removeListener('close', onClose); resolve(h); };
        const onClose = (err) => { this.removeListener('ready', onReady); reject(err || new Error('stopped before attaching')); };
        this.once('ready', onReady);
        this.once('close', onClose);
      });
      if (this.entries.some((e) => e.host !== undefined && !net.isIP(e.host))) {
        this._resolveTimer = setInterval(() => this._resolve(), this.resolveInterval);
      }
      this._resolve();
    }
    return this._firstReady;
  }

  _dispatch(s) {
    if (this.onRequest === null) {
      s.reset(P.RESET.REFUSED, 'no handler');
      return;
    }
    this.onRequest(s);
  }

  /* ---- addresses ---- */

  async _resolve() {
    if (this._resolving || this.stopping) return;
    this._resolving = true;
    try {
      await Promise.all(this.entries.map(async (e, i) => {
        if (e.path !== undefined || net.isIP(e.host)) return;
        let r;
        try {
          r = await this.lookup(e.host);
          if (!Array.isArray(r)) throw new Error('the resolver gave no list');
        } catch (err) {
          /* keep the last answer; one line per run of failures */
          if (!this.resolveFailed[i]) {
            this.log(`resolving ${e.host} failed (${err.message}); keeping ${this.answers[i].length} address(es)`);
            this.resolveFailed[i] = true;
          }
          return;
        }
        this.resolveFailed[i] = false;
        this.answers[i] = [...new Set(r.map((a) => (typeof a === 'string' ? a : a.address)))];
      }));
    } finally {
      this._resolving = false;
    }
    if (!this.stopping) this._reconcile();
  }

  /* Open a link to every address now wanted; forget those no longer wanted
   * once their link has closed. */
  _reconcile() {
    const want = new Map();
    this.entries.forEach((e, i) => {
      for (const a of this.answers[i]) {
        let key;
        let addr;
        if (e.path !== undefined) {
          key = `unix:${a}`;
          addr = { path: a };
        } else {
          const scheme = e.tls ? 'tls' : 'tcp';
          key = net.isIPv6(a) ? `${scheme}:[${a}]:${e.port}` : `${scheme}:${a}:${e.port}`;
          addr = { host: a, port: e.port, tls: e.tls === true, name: e.host };
        }
        if (!want.has(key)) want.set(key, { addr, label: key === e.entry || a === e.path ? e.entry : `${e.entry} (${a})` });
      }
    });
    for (const [key, slot] of this.slots) {
      slot.wanted = want.has(key);
      if (!slot.wanted && slot.link === null) {
        clearTimeout(slot.timer);
        this.slots.delete(key);
      }
    }
    for (const [key, w] of want) {
      if (this.slots.has(key)) continue;
      const slot = { key, addr: w.addr, label: w.label, link: null, timer: null, wanted: true, delay: DELAY_MIN, failLogged: false };
      this.slots.set(key, slot);
      this._open(slot);
    }
  }

  /* ---- links ---- */

  _open(slot) {
    slot.timer = null;
    if (this.stopping || !slot.wanted) return;
    const link = new Worker(Object.assign({}, this.linkOptions, { socket: slot.addr }));
    slot.link = link;
    link.on('error', () => {}); // reported through 'close'
    link.on('ready', (h) => this._ready(slot, link, h));
    link.on('drain', (ms) => this.emit('drain', ms, link));
    link.on('close', (err) => this._closed(slot, link, err));
    link.connect().catch(() => {}); // likewise
  }

  _ready(slot, link, h) {
    slot.delay = DELAY_MIN;
    slot.failLogged = false;
    if (this.stopping) { // cannot happen (stop closes links in their handshake); be safe
      link.close();
      return;
    }
    this.log(`attached to ${slot.label}${h.worker_id !== undefined ? ` as worker ${h.worker_id}` : ''}${h.pool ? ` of pool ${h.pool}` : ''}`);
    this.gateway = link.gateway;
    this.emit('ready', link.gateway, link);
  }

  _closed(slot, link, err) {
    if (slot.link === link) slot.link = null;
    const wasUp = link.gateway !== null;
    if (isAuth(err)) {
      /* a wrong token stays wrong: stop, and report it */
      this.log(`${slot.label} refused the token (${err.message}); stopping`);
      if (this.error === null) this.error = err;
      this._stop();
    }
    if (this.stopping || !slot.wanted) {
      if (!slot.wanted) this.slots.delete(slot.key);
      this._maybeDone();
      return;
    }
    const why = err ? err.message : 'closed after DRAIN';
    if (err && err.silent) {
      this.log(`gateway ${slot.label} ${err.message}: link closed`);
    } else if (wasUp) {
      this.log(`link to ${slot.label} lost (${why}); reconnecting`);
    } else if (!slot.failLogged) {
      /* the first failure only, until it attaches again */
      this.log(`cannot attach to ${slot.label} (${why}); retrying quietly`);
      slot.failLogged = true;
    }
    const d = slot.delay;
    const wait = d / 2 + this.random() * (d / 2);
    slot.delay = Math.min(d * 2, DELAY_MAX);
    slot.timer = setTimeout(() => this._open(slot), wait);
  }

  /* ---- stopping ---- */

  /* Stop connecting and resolving; links not yet up are dropped, the others
   * retire and close once drained. */
  _stop(timeout = this.shutdownTimeout, now = false) {
    if (this.stopping) return;
    this.stopping = true;
    if (this._resolveTimer !== null) { clearInterval(this._resolveTimer); this._resolveTimer = null; }
    for (const slot of this.slots.values()) {
      clearTimeout(slot.timer);
      slot.timer = null;
      const link = slot.link;
      if (link === null) continue;
      if (link.gateway !== null && !now) link.shutdown(timeout);
      else link.close();
    }
    this._graceTimer = setTimeout(() => this.close(), timeout);
    this._graceTimer.unref && this._graceTimer.unref();
    this._maybeDone();
  }

  _maybeDone() {
    if (!this.stopping || this.closed) return;
    for (const slot of this.slots.values()) if (slot.link !== null) return;
    this.closed = true;
    clearTimeout(this._graceTimer);
    this.emit('close', this.error);
  }

  /**
   * Graceful stop (what SIGTERM does): RETIRE on every link that is up,
   * serve until each gets DRAIN, close each once its streams are done.
   * After `timeout` ms whatever is left is closed. Resolves when all links
   * are closed (with nothing; the 'close' event carries an auth error).
   */
  shutdown(timeout = this.shutdownTimeout) {
    if (!this._shutdownPromise) {
      this._shutdownPromise = new Promise((resolve) => {
        if (this.closed) { resolve(); return; }
        this.once('close', () => resolve());
        this._stop(timeout);
      });
    }
    return this._shutdownPromise;
  }

  /** Close every link now: their open streams are cancelled. */
  close() {
    if (this.closed) return;
    this._stop(this.shutdownTimeout, true);
    for (const slot of this.slots.values()) if (slot.link !== null) slot.link.close();
    this._maybeDone();
  }
}

module.exports = { RemoteWorker, isRemote, DELAY_MIN, DELAY_MAX };
