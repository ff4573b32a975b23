'use strict';
/*
 * sluice protocol v1, sans-I/O: frame decoder, canonical encoder and the link
 * state machine (PROTOCOL.md). No sockets, no timers: bytes in, frames out;
 * frames in, bytes out.
 *
 * Frame objects
 * -------------
 * A frame is a plain object `{type, stream, ...fields}` with `type` the
 * numeric code (FRAME.REQUEST === 2, ...) and the fields named as in
 * PROTOCOL.md section 3. Byte strings (`bytes` and `text` on the wire) are
 * JavaScript strings holding one byte per character (latin1, lossless, the
 * same convention as node:http header values and the test vectors), except
 * BODY and MESSAGE `data`, which are Buffers. Header lists are *flat* arrays
 * `[name0, value0, name1, value1, ...]`, like `IncomingMessage.rawHeaders`.
 * Absent optional fields (END trailers, CANCEL/RESET message, RETIRE reason,
 * CLOSE reason) are absent properties. HELLO `websocket` is a boolean.
 *
 * Why not msgpackr for the frames: the spec needs `str` fields as raw bytes
 * (msgpackr decodes them as UTF-8, lossy), rejects 0xc1 and nesting deeper
 * than 8 (msgpackr accepts both), names the first failing check in a fixed
 * precedence, and needs the canonical encoding (msgpackr emits float64 or
 * int64 for integers of 2^32 and more). So the wire codec is a small,
 * schema-directed cursor; msgpackr serves as the independent oracle in the
 * tests (see test/vectors.test.js) and renders bad payloads in link error
 * reports (describePayload).
 */

const VERSION = 1;
const MIN_FRAME = 16384;
const MAX_FRAME = 16777215;
const DEFAULT_FRAME = 1048576;
const HELLO_MAX = 16384;
const MAX_WINDOW = 0x7fffffff;
const MAX_STREAMS = 65535;
const MAX_ID = 9007199254740991; // 2^53 - 1
const MAX_HEADERS = 1024;
const MAX_DEPTH = 8;
/* Payload bytes in front of BODY data at most: fixarray, type, uint64 id, bin32. */
const BODY_OVERHEAD = 16;

const FRAME = Object.freeze({
  HELLO: 1, REQUEST: 2, RESPONSE: 3, BODY: 4, END: 5, CREDIT: 6, CANCEL: 7,
  RESET: 8, LIMIT: 9, PING: 10, PONG: 11, DRAIN: 12, RETIRE: 13, ERROR: 14,
  MESSAGE: 15, CLOSE: 16,
});
const FRAME_NAMES = [null, 'HELLO', 'REQUEST', 'RESPONSE', 'BODY', 'END', 'CREDIT',
  'CANCEL', 'RESET', 'LIMIT', 'PING', 'PONG', 'DRAIN', 'RETIRE', 'ERROR', 'MESSAGE', 'CLOSE'];

const ERRORS = [null, 'malformed', 'frame_size', 'unknown_type', 'field_type',
  'field_value', 'too_many_headers', 'unexpected_frame', 'stream_state',
  'flow_control', 'too_many_streams', 'version', 'auth', 'truncated', 'internal', 'timeout'];
const E = Object.freeze({
  MALFORMED: 1, FRAME_SIZE: 2, UNKNOWN_TYPE: 3, FIELD_TYPE: 4, FIELD_VALUE: 5,
  TOO_MANY_HEADERS: 6, UNEXPECTED_FRAME: 7, STREAM_STATE: 8, FLOW_CONTROL: 9,
  TOO_MANY_STREAMS: 10, VERSION: 11, AUTH: 12, TRUNCATED: 13, INTERNAL: 14, TIMEOUT: 15,
});

const CANCEL_REASONS = [null, 'client_closed', 'timeout', 'shutdown', 'body_too_large',
  'bad_body', 'body_timeout', 'invalid_response', 'internal'];
const RESET_CODES = [null, 'internal', 'refused', 'overloaded'];
const RESET = Object.freeze({ INTERNAL: 1, REFUSED: 2, OVERLOADED: 3 });
const CANCEL = Object.freeze({
  CLIENT_CLOSED: 1, TIMEOUT: 2, SHUTDOWN: 3, BODY_TOO_LARGE: 4, BAD_BODY: 5,
  BODY_TIMEOUT: 6, INVALID_RESPONSE: 7, INTERNAL: 8,
});
const BODY_NONE = 0;
const BODY_FOLLOWS = 1;
const BODY_ON_CREDIT = 2;
const BODY_WEBSOCKET = 3; // REQUEST body: a WebSocket opening handshake (PROTOCOL.md 5.2)

/* MESSAGE flags (PROTOCOL.md 3.14): bit 0 text, bit 1 more; 4 PING, 8 PONG. */
const MSG = Object.freeze({ BINARY: 0, TEXT: 1, MORE: 2, PING: 4, PONG: 8 });
const MSG_FLAGS = [true, true, true, true, true, false, false, false, true];
const PING_MAX = 125;
const CLOSE_MIN = 1000;
const CLOSE_MAX = 4999;

function errorName(code) {
  return (code >= 1 && code < ERRORS.length) ? ERRORS[code] : 'internal';
}
function cancelReasonName(reason) {
  return (reason >= 1 && reason < CANCEL_REASONS.length) ? CANCEL_REASONS[reason] : 'internal';
}
function resetCodeName(code) {
  return (code >= 1 && code < RESET_CODES.length) ? RESET_CODES[code] : 'internal';
}

/** A link error (PROTOCOL.md 8): `name` as in the spec, `code` its wire code. */
class ProtocolError extends Error {
  constructor(code, message) {
    const name = errorName(code);
    super(message ? `${name}: ${message}` : name);
    this.code = code;
    this.errorName = name;
    this.detail = message || '';
    this.name = 'ProtocolError';
  }
}

/** The local API refused to send a frame (a caller mistake); the link is unchanged. */
class RejectedError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RejectedError';
    this.code = 'ERR_SLUICE_REJECTED';
  }
}

/* ======================================================================
 * Decoding: a strict cursor over one payload. Module state (B, P, END) keeps
 * the hot path free of allocation; decoding is synchronous and not reentrant.
 * Failures are thrown as small integers (wire error codes) and turned into a
 * ProtocolError at the payload boundary.
 * ==================================================================== */

let B = null; // Buffer being decoded
let P = 0; // cursor
let END = 0; // end of the payload
let RS = 0; // start of the last raw (str/bin) value read
let RL = 0; // its length
let LEFT = 0; // frame array elements not yet read
let MAXH = MAX_HEADERS;
let COPY = false; // BODY data must not stay a view of B (B is reused)

const TWO32 = 4294967296;

function rdUint() {
  if (P >= END) throw 1;
  const b = B[P];
  if (b <= 0x7f) { P++; return b; }
  if (b >= 0xe0) { P++; throw 5; } // negative fixint
  let n;
  let signed = false;
  switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1; signed = true; break;
    case 0xd1: n = 2; signed = true; break;
    case 0xd2: n = 4; signed = true; break;
    case 0xd3: n = 8; signed = true; break;
    case 0xc1: throw 1;
    default: throw 4;
  }
  if (END - P < n + 1) throw 1;
  const q = P + 1;
  P += n + 1;
  let x;
  switch (n) {
    case 1:
      x = B[q];
      if (signed && x >= 0x80) throw 5;
      return x;
    case 2:
      x = (B[q] << 8) | B[q + 1];
      if (signed && x >= 0x8000) throw 5;
      return x;
    case 4:
      x = B[q] * 0x1000000 + ((B[q + 1] << 16) | (B[q + 2] << 8) | B[q + 3]);
      if (signed && x >= 0x80000000) throw 5;
      return x;
    default: {
      const hi = B[q] * 0x1000000 + ((B[q + 1] << 16) | (B[q + 2] << 8) | B[q + 3]);
      const lo = B[q + 4] * 0x1000000 + ((B[q + 5] << 16) | (B[q + 6] << 8) | B[q + 7]);
      if (hi > 0x1fffff) throw 5; // negative (signed) or above 2^53-1
      return hi * TWO32 + lo;
    }
  }
}

function rdBool() {
  if (P >= END) throw 1;
  const b = B[P];
  if (b === 0xc2 || b === 0xc3) { P++; return b === 0xc3; }
  throw (b === 0xc1 ? 1 : 4);
}

function rdUintRange(lo, hi) {
  const v = rdUint();
  if (v < lo || v > hi) throw 5;
  return v;
}

/* A str (and, when allowBin, bin) value: sets RS/RL. */
function rdRaw(allowBin) {
  if (P >= END) throw 1;
  const b = B[P];
  let len;
  let hl;
  if ((b & 0xe0) === 0xa0) {
    len = b & 0x1f;
    hl = 1;
  } else {
    let n;
    switch (b) {
      case 0xd9: n = 1; break;
      case 0xda: n = 2; break;
      case 0xdb: n = 4; break;
      case 0xc4: n = allowBin ? 1 : -1; break;
      case 0xc5: n = allowBin ? 2 : -1; break;
      case 0xc6: n = allowBin ? 4 : -1; break;
      case 0xc1: throw 1;
      default: n = -1;
    }
    if (n < 0) throw 4;
    if (END - P < n + 1) throw 1;
    if (n === 1) len = B[P + 1];
    else if (n === 2) len = (B[P + 1] << 8) | B[P + 2];
    else len = B[P + 1] * 0x1000000 + ((B[P + 2] << 16) | (B[P + 3] << 8) | B[P + 4]);
    hl = n + 1;
  }
  if (END - P - hl < len) throw 1;
  RS = P + hl;
  RL = len;
  P = RS + len;
}

/*
 * Byte string [RS, RS+RL) as a latin1 JS string. Short strings go through a
 * small direct-mapped cache: method, scheme, addresses, header names and
 * many values repeat from request to request, and a hit costs a byte loop
 * instead of a native call and a fresh string.
 */
const INTERN = new Array(1024).fill('');
function str() {
  const n = RL;
  if (n === 0) return '';
  if (n > 32) return B.latin1Slice(RS, RS + n);
  const b = B;
  const s0 = RS;
  let h = n;
  for (let i = 0; i < n; i++) h = (Math.imul(h, 31) + b[s0 + i]) | 0;
  h = (h ^ (h >>> 15)) & 1023;
  const c = INTERN[h];
  if (c.length === n) {
    let i = 0;
    while (i < n && c.charCodeAt(i) === b[s0 + i]) i++;
    if (i === n) return c;
  }
  const v = b.latin1Slice(s0, s0 + n);
  INTERN[h] = v;
  return v;
}

function rdString(allowBin) {
  rdRaw(allowBin);
  return str();
}

function rdContainer(map) {
  if (P >= END) throw 1;
  const b = B[P];
  const fix = map ? 0x80 : 0x90;
  if (b >= fix && b <= fix + 0x0f) { P++; return b & 0x0f; }
  const n = b === (map ? 0xde : 0xdc) ? 2 : b === (map ? 0xdf : 0xdd) ? 4 : 0;
  if (!n) throw (b === 0xc1 ? 1 : 4);
  if (END - P < n + 1) throw 1;
  let c;
  if (n === 2) c = (B[P + 1] << 8) | B[P + 2];
  else c = B[P + 1] * 0x1000000 + ((B[P + 2] << 16) | (B[P + 3] << 8) | B[P + 4]);
  P += n + 1;
  return c;
}

/* Skip one well-formed value at nesting `depth` (the frame array is 1). */
function skip(depth) {
  if (P >= END) throw 1;
  const b = B[P];
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) { P++; return; }
  let len = 0;
  if (b >= 0xa0 && b <= 0xbf) {
    len = b & 0x1f;
    P++;
  } else if ((b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf)) {
    const map = (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
    if (depth > MAX_DEPTH) throw 1;
    const cnt = rdContainer(map);
    const items = map ? cnt * 2 : cnt;
    for (let i = 0; i < items; i++) skip(depth + 1);
    return;
  } else {
    let n = 0;
    let lf = 0;
    switch (b) {
      case 0xcc: case 0xd0: n = 1; break;
      case 0xcd: case 0xd1: n = 2; break;
      case 0xce: case 0xd2: case 0xca: n = 4; break;
      case 0xcf: case 0xd3: case 0xcb: n = 8; break;
      case 0xd4: n = 2; break; // fixext: type byte + data
      case 0xd5: n = 3; break;
      case 0xd6: n = 5; break;
      case 0xd7: n = 9; break;
      case 0xd8: n = 17; break;
      case 0xc4: case 0xd9: case 0xc7: lf = 1; break;
      case 0xc5: case 0xda: case 0xc8: lf = 2; break;
      case 0xc6: case 0xdb: case 0xc9: lf = 4; break;
      default: throw 1; // 0xc1
    }
    if (n) {
      if (END - P < n + 1) throw 1;
      P += n + 1;
      return;
    }
    if (END - P < lf + 1) throw 1;
    if (lf === 1) len = B[P + 1];
    else if (lf === 2) len = (B[P + 1] << 8) | B[P + 2];
    else len = B[P + 1] * 0x1000000 + ((B[P + 2] << 16) | (B[P + 3] << 8) | B[P + 4]);
    if (b === 0xc7 || b === 0xc8 || b === 0xc9) len += 1; // ext type byte
    P += lf + 1;
  }
  if (END - P < len) throw 1;
  P += len;
}

function wellformed(buf, start, end) {
  B = buf; P = start; END = end;
  if (P >= END) return false;
  const b = B[P];
  if (!((b >= 0x90 && b <= 0x9f) || b === 0xdc || b === 0xdd)) return false;
  try {
    skip(1);
  } catch (e) {
    if (typeof e !== 'number') throw e;
    return false;
  }
  return P === END;
}

function needField() {
  if (LEFT === 0) throw 4;
  LEFT--;
}

function rdHeaders() {
  const n = rdContainer(false);
  if (n > MAXH) throw 6;
  const out = new Array(n * 2);
  for (let i = 0, j = 0; i < n; i++, j += 2) {
    if (rdContainer(false) !== 2) throw 4;
    rdRaw(true);
    if (RL === 0) throw 5;
    out[j] = str();
    rdRaw(true);
    out[j + 1] = str();
  }
  return out;
}

function rdAddr() {
  needField();
  if (rdContainer(false) !== 2) throw 4;
  const host = rdString(false);
  const port = rdUintRange(0, 65535);
  return [host, port];
}

function parseHello(f) {
  needField();
  f.version = rdUintRange(0, MAX_ID);
  needField();
  const n = rdContainer(true);
  const s = {};
  for (let i = 0; i < n; i++) {
    const save = P;
    let key;
    try {
      key = rdString(false);
    } catch (e) {
      if (e !== 4) throw e;
      P = save; // not a text key: unknown, skip it and its value
      skip(3);
      skip(3);
      continue;
    }
    switch (key) {
      case 'pid': s.pid = rdUint(); break;
      case 'lib': s.lib = rdString(false); break;
      case 'max_streams': s.max_streams = rdUintRange(1, MAX_STREAMS); break;
      case 'window': s.window = rdUintRange(0, MAX_WINDOW); break;
      case 'max_frame': s.max_frame = rdUintRange(MIN_FRAME, MAX_FRAME); break;
      case 'token': s.token = rdString(false); break;
      case 'worker_id': s.worker_id = rdUint(); break;
      case 'pool': s.pool = rdString(false); break;
      case 'server': s.server = rdString(false); break;
      case 'websocket': s.websocket = rdBool(); break;
      default: skip(3);
    }
  }
  f.settings = s;
}

const LINK_FRAME = [false, true, false, false, false, false, false, false, false, false,
  true, true, true, true, true, false, false];

function parse(start) {
  P = start;
  const n = rdContainer(false);
  if (n < 2) throw 1;
  LEFT = n - 2;
  let type;
  try {
    type = rdUint();
  } catch (e) {
    if (e === 1) throw 1;
    throw 3;
  }
  if (type < 1 || type > 16) throw 3;
  const sid = rdUint();
  if (LINK_FRAME[type] ? sid !== 0 : sid === 0) throw 5;
  let f;
  switch (type) {
    case 2: { // REQUEST
      needField(); rdRaw(true); if (RL === 0) throw 5;
      const method = str();
      needField(); rdRaw(true); if (RL === 0) throw 5;
      const target = str();
      needField(); const version = rdUintRange(10, 20);
      if (version > 11 && version !== 20) throw 5; // HTTP/1.0, 1.1 or 2
      needField(); const headers = rdHeaders();
      const client = rdAddr();
      const server = rdAddr();
      needField(); const scheme = rdString(false);
      needField(); const body = rdUintRange(0, 3);
      f = { type, stream: sid, method, target, version, headers, client, server, scheme, body };
      break;
    }
    case 4: { // BODY
      needField(); rdRaw(true);
      let data;
      if (COPY && RL) {
        data = Buffer.allocUnsafe(RL); // pooled when small
        B.copy(data, 0, RS, RS + RL);
      } else {
        data = B.subarray(RS, RS + RL);
      }
      f = { type, stream: sid, data };
      break;
    }
    case 5: // END
      f = { type, stream: sid };
      if (LEFT) {
        LEFT--;
        const t = rdHeaders();
        if (t.length) f.trailers = t;
      }
      break;
    case 6: // CREDIT
      needField();
      f = { type, stream: sid, increment: rdUintRange(1, MAX_WINDOW) };
      break;
    case 3: { // RESPONSE
      needField(); const status = rdUintRange(101, 599);
      if (status < 200 && status !== 101) throw 5; // 101 accepts a WebSocket
      needField(); const headers = rdHeaders();
      needField(); const body = rdUintRange(0, 1);
      f = { type, stream: sid, status, headers, body };
      break;
    }
    case 7: case 8: { // CANCEL, RESET
      needField();
      const code = rdUintRange(0, MAX_ID);
      f = type === 7 ? { type, stream: sid, reason: code } : { type, stream: sid, code };
      if (LEFT) { LEFT--; f.message = rdString(false); }
      break;
    }
    case 14: { // ERROR
      needField(); const code = rdUintRange(0, MAX_ID);
      needField(); const message = rdString(false);
      f = { type, stream: 0, code, message };
      break;
    }
    case 15: { // MESSAGE
      needField(); const flags = rdUint();
      if (!(flags < MSG_FLAGS.length && MSG_FLAGS[flags])) throw 5;
      needField(); rdRaw(true);
      let data;
      if (COPY && RL) {
        data = Buffer.allocUnsafe(RL);
        B.copy(data, 0, RS, RS + RL);
      } else {
        data = B.subarray(RS, RS + RL);
      }
      f = { type, stream: sid, flags, data };
      break;
    }
    case 16: // CLOSE
      needField();
      f = { type, stream: sid, code: rdUintRange(CLOSE_MIN, CLOSE_MAX) };
      if (LEFT) { LEFT--; f.reason = rdString(false); }
      break;
    case 9: needField(); f = { type, stream: sid, max_body: rdUintRange(0, MAX_ID) }; break;
    case 10: case 11: needField(); f = { type, stream: 0, opaque: rdUintRange(0, MAX_ID) }; break;
    case 12: needField(); f = { type, stream: 0, timeout_ms: rdUintRange(0, MAX_ID) }; break;
    case 13:
      f = { type, stream: 0 };
      if (LEFT) { LEFT--; f.reason = rdString(false); }
      break;
    case 1:
      f = { type, stream: 0, version: 0, settings: null };
      parseHello(f);
      break;
    default:
      throw 3;
  }
  /* Forward compatibility: later elements are skipped, but must be well-formed. */
  while (LEFT) { LEFT--; skip(2); }
  if (P !== END) throw 1;
  return f;
}

/**
 * Decode one payload (without its length prefix): buf[start, end).
 * Returns the frame; throws ProtocolError. BODY data is a view into `buf`,
 * or a copy when `copy` is true.
 */
function decodePayload(buf, start = 0, end = buf.length, maxHeaders = MAX_HEADERS, copy = false) {
  B = buf; END = end; MAXH = maxHeaders; COPY = copy;
  try {
    return parse(start);
  } catch (e) {
    if (typeof e !== 'number') throw e;
    let code = e;
    /* A malformed payload is reported as such even if a field error came first. */
    if (code !== 1 && !wellformed(buf, start, end)) code = 1;
    throw new ProtocolError(code, 'in a frame payload');
  } finally {
    B = null;
  }
}

/**
 * Incremental decoder: feed() byte chunks of any size; each complete frame
 * is passed to `onFrame`. The length prefix is checked against `maxFrame`
 * as soon as its 4 bytes are known, before any payload is buffered. An
 * error is thrown as ProtocolError after the frames before it were
 * delivered, and is sticky.
 */
class FrameDecoder {
  constructor(maxFrame = DEFAULT_FRAME, maxHeaders = MAX_HEADERS) {
    if (!(maxFrame >= MIN_FRAME && maxFrame <= MAX_FRAME)) throw new RangeError('maxFrame out of range');
    this.maxFrame = maxFrame;
    this.maxHeaders = maxHeaders;
    this.failed = null;
    this._hdr = Buffer.alloc(4);
    this._hdrHave = 0;
    this._partial = null; // payload being collected
    this._have = 0;
  }

  /** True when between frames (no partial prefix or payload held). */
  get idle() { return this._hdrHave === 0 && this._partial === null; }

  _fail(code, msg) {
    this.failed = new ProtocolError(code, msg);
    throw this.failed;
  }

  _decode(buf, start, end, copy) {
    try {
      return decodePayload(buf, start, end, this.maxHeaders, copy);
    } catch (e) {
      if (e instanceof ProtocolError) {
        e.payload = Buffer.from(buf.subarray(start, Math.min(end, start + 4096)));
        this.failed = e;
      }
      throw e;
    }
  }

  /**
   * `transient`: the caller reuses chunk's memory after feed() returns (a
   * socket reading into one buffer), so BODY data is copied out of it.
   */
  feed(chunk, onFrame, transient = false) {
    if (this.failed) throw this.failed;
    const n = chunk.length;
    let pos = 0;
    const max = this.maxFrame;
    while (pos < n) {
      if (this._partial !== null) {
        const p = this._partial;
        const take = Math.min(p.length - this._have, n - pos);
        chunk.copy(p, this._have, pos, pos + take);
        this._have += take;
        pos += take;
        if (this._have < p.length) return;
        this._partial = null;
        this._hdrHave = 0;
        onFrame(this._decode(p, 0, p.length, false));
        continue;
      }
      let len;
      if (this._hdrHave === 0 && n - pos >= 4) {
        len = chunk[pos] * 0x1000000 + ((chunk[pos + 1] << 16) | (chunk[pos + 2] << 8) | chunk[pos + 3]);
        pos += 4;
      } else {
        const h = this._hdr;
        while (this._hdrHave < 4 && pos < n) h[this._hdrHave++] = chunk[pos++];
        if (this._hdrHave < 4) return;
        len = h[0] * 0x1000000 + ((h[1] << 16) | (h[2] << 8) | h[3]);
        this._hdrHave = 0;
      }
      if (len === 0 || len > max) {
        this._hdrHave = 4; // inside a frame, for finish()
        this._fail(2, `frame length ${len} (max ${max})`);
      }
      if (n - pos >= len) {
        const f = this._decode(chunk, pos, pos + len, transient);
        pos += len;
        onFrame(f);
      } else {
        this._partial = Buffer.allocUnsafe(len);
        this._have = 0;
        this._hdrHave = 4;
      }
    }
  }

  /** At the end of the byte stream: throws `truncated` if inside a frame. */
  finish() {
    if (this.failed) throw this.failed;
    if (!this.idle) this._fail(13, 'the input ended inside a frame');
  }
}

/* ======================================================================
 * Encoding (canonical, PROTOCOL.md 2.1) into a growable slab. The same
 * Writer serves the runtime's hot path (one slab per socket write) and the
 * generic encodeFrame().
 * ==================================================================== */

/* A latin1 string into buf at p: a JS loop beats the native call for short ones. */
function putLatin1(buf, v, p, n) {
  if (n <= 48) {
    for (let i = 0; i < n; i++) buf[p + i] = v.charCodeAt(i);
  } else {
    buf.latin1Write(v, p, n);
  }
}

class Writer {
  constructor(size = 65536) {
    this.size = size;
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
    this.start = 0; // first byte not yet taken
  }

  /** Make room for n more bytes (the untaken bytes move to a new slab if needed). */
  ensure(n) {
    if (this.buf.length - this.pos >= n) return;
    const pending = this.pos - this.start;
    const nb = Buffer.allocUnsafe(Math.max(this.size, pending + n));
    this.buf.copy(nb, 0, this.start, this.pos);
    this.buf = nb;
    this.start = 0;
    this.pos = pending;
  }

  get pending() { return this.pos - this.start; }

  /** The bytes written since the last take(), as a view (never reused). */
  take() {
    const out = this.buf.subarray(this.start, this.pos);
    if (this.buf.length - this.pos < 1024) {
      this.buf = Buffer.allocUnsafe(this.size);
      this.pos = 0;
    }
    this.start = this.pos;
    return out;
  }

  /** Reuse the slab from its start: only when no view taken from it is still in use. */
  rewind() {
    this.pos = 0;
    this.start = 0;
  }

  u8(b) { this.buf[this.pos++] = b; }

  /* Call only after ensure(): these do not check room. */
  uint(v) {
    const b = this.buf;
    let p = this.pos;
    if (v < 0x80) {
      b[p++] = v;
    } else if (v < 0x100) {
      b[p++] = 0xcc; b[p++] = v;
    } else if (v < 0x10000) {
      b[p++] = 0xcd; b[p++] = v >>> 8; b[p++] = v & 0xff;
    } else if (v < TWO32) {
      b[p++] = 0xce; b.writeUInt32BE(v, p); p += 4;
    } else {
      b[p++] = 0xcf;
      b.writeUInt32BE(Math.floor(v / TWO32), p);
      b.writeUInt32BE(v >>> 0, p + 4);
      p += 8;
    }
    this.pos = p;
  }

  binHead(n) {
    const b = this.buf;
    let p = this.pos;
    if (n < 0x100) {
      b[p++] = 0xc4; b[p++] = n;
    } else if (n < 0x10000) {
      b[p++] = 0xc5; b[p++] = n >>> 8; b[p++] = n & 0xff;
    } else {
      b[p++] = 0xc6; b.writeUInt32BE(n, p); p += 4;
    }
    this.pos = p;
  }

  strHead(n) {
    const b = this.buf;
    let p = this.pos;
    if (n < 32) {
      b[p++] = 0xa0 | n;
    } else if (n < 0x100) {
      b[p++] = 0xd9; b[p++] = n;
    } else if (n < 0x10000) {
      b[p++] = 0xda; b[p++] = n >>> 8; b[p++] = n & 0xff;
    } else {
      b[p++] = 0xdb; b.writeUInt32BE(n, p); p += 4;
    }
    this.pos = p;
  }

  arrHead(n) {
    if (n < 16) this.buf[this.pos++] = 0x90 | n;
    else if (n < 0x10000) { this.buf[this.pos++] = 0xdc; this.buf.writeUInt16BE(n, this.pos); this.pos += 2; }
    else { this.buf[this.pos++] = 0xdd; this.buf.writeUInt32BE(n, this.pos); this.pos += 4; }
  }

  mapHead(n) {
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else if (n < 0x10000) { this.buf[this.pos++] = 0xde; this.buf.writeUInt16BE(n, this.pos); this.pos += 2; }
    else { this.buf[this.pos++] = 0xdf; this.buf.writeUInt32BE(n, this.pos); this.pos += 4; }
  }

  /* Raw bytes: a latin1 string or a Buffer/Uint8Array. Checks room itself. */
  raw(v, asText) {
    const n = v.length;
    this.ensure(n + 5);
    if (asText) this.strHead(n); else this.binHead(n);
    if (n) {
      if (typeof v === 'string') putLatin1(this.buf, v, this.pos, n);
      else this.buf.set(v, this.pos);
      this.pos += n;
    }
  }

  /** Flat [name, value, ...] header list. Checks room itself. */
  headers(h) {
    const n = h ? h.length >>> 1 : 0;
    this.ensure(5);
    this.arrHead(n);
    for (let i = 0; i < 2 * n; i += 2) {
      const name = h[i];
      const value = h[i + 1];
      const a = name.length;
      const c = value.length;
      this.ensure(a + c + 11);
      const b = this.buf;
      let p = this.pos;
      b[p++] = 0x92;
      if (a < 0x100) { b[p++] = 0xc4; b[p++] = a; } else { this.pos = p; this.binHead(a); p = this.pos; }
      if (typeof name === 'string') putLatin1(b, name, p, a); else b.set(name, p);
      p += a;
      if (c < 0x100) { b[p++] = 0xc4; b[p++] = c; } else { this.pos = p; this.binHead(c); p = this.pos; }
      if (c) { if (typeof value === 'string') putLatin1(b, value, p, c); else b.set(value, p); }
      this.pos = p + c;
    }
  }

  /** Reserve the 4-byte length prefix; returns its offset for finish(). */
  begin(room = 64) {
    this.ensure(room + 4);
    const at = this.pos;
    this.pos += 4;
    return at;
  }

  /** Patch the length prefix written by begin(). Returns the payload length. */
  finish(at) {
    const len = this.pos - at - 4;
    this.buf.writeUInt32BE(len, at);
    return len;
  }
}

const HELLO_KEYS = ['pid', 'lib', 'max_streams', 'window', 'max_frame', 'token', 'worker_id', 'pool', 'server', 'websocket'];
const HELLO_TEXT = { lib: true, token: true, pool: true, server: true };

function textOf(v) {
  return typeof v === 'string' || Buffer.isBuffer(v) || v instanceof Uint8Array;
}

/** Append one frame (object form, see the top of this file) to a Writer. */
function writeFrame(w, f) {
  const t = f.type;
  const sid = f.stream;
  /* Lengths of variable parts can change `at` (ensure() may move the slab),
   * so the prefix offset is re-read relative to the slab start. */
  const at = w.begin(40) - w.start;
  const patch = () => w.finish(w.start + at);
  switch (t) {
    case 1: { // HELLO
      const s = f.settings || {};
      /* websocket only when true (its default is false) */
      const keys = HELLO_KEYS.filter((k) => s[k] !== undefined && s[k] !== null && (k !== 'websocket' || s[k] === true));
      w.u8(0x94); w.uint(1); w.uint(0); w.uint(f.version === undefined ? VERSION : f.version);
      w.ensure(5); w.mapHead(keys.length);
      for (const k of keys) {
        w.raw(k, true);
        if (HELLO_TEXT[k]) w.raw(s[k], true);
        else if (k === 'websocket') { w.ensure(1); w.u8(0xc3); }
        else { w.ensure(9); w.uint(s[k]); }
      }
      break;
    }
    case 2: // REQUEST
      w.u8(0x9a); w.uint(2); w.uint(sid);
      w.raw(f.method, false); w.raw(f.target, false);
      w.ensure(9); w.uint(f.version);
      w.headers(f.headers);
      for (const a of [f.client, f.server]) {
        w.ensure(1); w.arrHead(2);
        w.raw(a[0], true);
        w.ensure(9); w.uint(a[1]);
      }
      w.raw(f.scheme, true);
      w.ensure(9); w.uint(f.body);
      break;
    case 3: // RESPONSE
      w.u8(0x95); w.uint(3); w.uint(sid); w.uint(f.status);
      w.headers(f.headers);
      w.ensure(9); w.uint(f.body);
      break;
    case 4: // BODY
      w.u8(0x93); w.uint(4); w.uint(sid);
      w.raw(f.data, false);
      break;
    case 5: // END
      if (f.trailers && f.trailers.length) {
        w.u8(0x93); w.uint(5); w.uint(sid); w.headers(f.trailers);
      } else {
        w.u8(0x92); w.uint(5); w.uint(sid);
      }
      break;
    case 6: w.u8(0x93); w.uint(6); w.uint(sid); w.uint(f.increment); break;
    case 7: case 8: {
      const code = t === 7 ? f.reason : f.code;
      const msg = f.message;
      const has = msg !== undefined && msg !== null && msg.length > 0;
      w.u8(has ? 0x94 : 0x93); w.uint(t); w.uint(sid); w.uint(code);
      if (has) w.raw(msg, true);
      break;
    }
    case 9: w.u8(0x93); w.uint(9); w.uint(sid); w.uint(f.max_body); break;
    case 15: // MESSAGE
      w.u8(0x94); w.uint(15); w.uint(sid); w.uint(f.flags);
      w.raw(f.data, false);
      break;
    case 16: { // CLOSE
      const has = f.reason !== undefined && f.reason !== null && f.reason.length > 0;
      w.u8(has ? 0x94 : 0x93); w.uint(16); w.uint(sid); w.uint(f.code);
      if (has) w.raw(f.reason, true);
      break;
    }
    case 10: case 11: w.u8(0x93); w.uint(t); w.uint(0); w.uint(f.opaque); break;
    case 12: w.u8(0x93); w.uint(12); w.uint(0); w.uint(f.timeout_ms); break;
    case 13: {
      const has = f.reason !== undefined && f.reason !== null && f.reason.length > 0;
      w.u8(has ? 0x93 : 0x92); w.uint(13); w.uint(0);
      if (has) w.raw(f.reason, true);
      break;
    }
    case 14:
      w.u8(0x94); w.uint(14); w.uint(0); w.uint(f.code);
      w.raw(f.message || '', true);
      break;
    default:
      throw new RangeError(`unknown frame type ${t}`);
  }
  return patch();
}

/**
 * A readable rendering of a payload for diagnostics (a frame that failed to
 * decode), using msgpackr as a generic MessagePack reader.
 */
function describePayload(payload) {
  const { inspect } = require('node:util');
  const head = payload.length > 256 ? payload.subarray(0, 256) : payload;
  try {
    const { Unpackr } = require('msgpackr');
    const v = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'number' }).unpack(payload);
    return inspect(v, { depth: 4, maxArrayLength: 16, maxStringLength: 64, breakLength: Infinity });
  } catch (e) {
    return `${payload.length} bytes ${head.toString('hex')}${head === payload ? '' : '...'} (${e.message})`;
  }
}

/** Canonical bytes of one frame, with its length prefix. */
function encodeFrame(f) {
  const w = new Writer(256);
  writeFrame(w, f);
  return Buffer.from(w.take());
}

/* ======================================================================
 * Link state machine (PROTOCOL.md 4-7), for either role.
 * ==================================================================== */

const REQ_OPEN = 0;
const REQ_ENDED = 1;
const RESP_WAITING = 0;
const RESP_SENDING = 1;
const RESP_ENDED = 2;
const RESP_WS = 3; // RESPONSE 101 sent: the stream carries MESSAGE frames until CLOSE

/* WebSocket condition of a stream (StreamState.ws). */
const WS_NONE = 0; // an ordinary stream (or a refused WebSocket)
const WS_WAITING = 1; // REQUEST body=3, no RESPONSE yet
const WS_OPEN = 2; // accepted (RESPONSE 101)

const ROLE_GATEWAY = 'gateway';
const ROLE_WORKER = 'worker';

const GATEWAY_SENDS = [false, true, true, false, true, true, true, true, false, false, true, true, true, false, true, true, true];
const WORKER_SENDS = [false, true, false, true, true, true, true, false, true, true, true, true, false, true, true, true, true];

/** Per-stream protocol state. `udata` is free for the owner. */
class StreamState {
  constructor(id) {
    this.id = id;
    this._next = null; // StreamTable chain
    this.sendWin = 0;
    this.recvWin = 0;
    this.req = REQ_OPEN;
    this.resp = RESP_WAITING;
    this.bodyMode = 0;
    this.limit = -1;
    this.reqBytes = 0;
    this.respBytes = 0;
    this.ws = WS_NONE;
    this.msgIn = -1; // text bit (0/1) of the message being received, -1 between messages
    this.msgOut = -1; // the same for the message being sent
    this.udata = null;
  }
}

/**
 * Open streams by id: a chained hash table through StreamState._next. Ids
 * come and go at request rate; a Map's insert/delete churn costs more than
 * this, and lookups here need no allocation. Map-like API.
 */
class StreamTable {
  constructor(hint) {
    let n = 16;
    while (n < hint && n < 4096) n <<= 1;
    this.mask = n - 1;
    this.buckets = new Array(n).fill(null);
    this.size = 0;
  }

  get(id) {
    let s = this.buckets[(id >>> 0) & this.mask];
    while (s !== null && s.id !== id) s = s._next;
    return s === null ? undefined : s;
  }

  set(id, st) {
    const b = (id >>> 0) & this.mask;
    st._next = this.buckets[b];
    this.buckets[b] = st;
    this.size++;
  }

  delete(id) {
    const b = (id >>> 0) & this.mask;
    let s = this.buckets[b];
    let prev = null;
    while (s !== null && s.id !== id) { prev = s; s = s._next; }
    if (s === null) return false;
    if (prev === null) this.buckets[b] = s._next; else prev._next = s._next;
    s._next = null;
    this.size--;
    return true;
  }

  values() {
    const out = [];
    for (let s of this.buckets) for (; s !== null; s = s._next) out.push(s);
    return out.sort((a, b) => a.id - b.id);
  }

  clear() {
    this.buckets.fill(null);
    this.size = 0;
  }
}

/**
 * The result of Link.recv()/send(): which stream the frame concerned and
 * what happened to it. One object per link, overwritten by every call.
 */
class LinkEvent {
  constructor() { this.reset(); }
  reset() {
    this.stream = null; // the StreamState (null for link frames, ignored frames, or once closed)
    this.udata = null;
    this.opened = false;
    this.closed = false;
    this.ignored = false;
  }
}

class Link {
  /**
   * role: 'worker' | 'gateway'. maxStreams: the local stream table size
   * (a worker: the max_streams of its HELLO; a gateway: 65535).
   */
  constructor(role, { maxStreams = MAX_STREAMS } = {}) {
    if (role !== ROLE_GATEWAY && role !== ROLE_WORKER) throw new TypeError('role must be worker or gateway');
    if (!(maxStreams >= 1 && maxStreams <= MAX_STREAMS)) throw new RangeError('maxStreams out of range');
    this.role = role;
    this.gw = role === ROLE_GATEWAY;
    this.cap = maxStreams;
    this.state = 'new'; // new | ready | draining | failed
    this.localHello = null; // settings, with defaults filled in
    this.peerHello = null;
    this.retiring = false;
    this.drain = false;
    this.highest = 0;
    this.streams = new StreamTable(maxStreams);
    this.ev = new LinkEvent();
    this._maxOpen = maxStreams;
    this.websocket = false; // both HELLOs carried websocket: true (PROTOCOL.md 5.2)
  }

  get open() { return this.streams.size; }
  get ready() { return this.state === 'ready' || this.state === 'draining'; }
  get failed() { return this.state === 'failed'; }
  get peerMaxFrame() { return this.peerHello ? this.peerHello.max_frame : HELLO_MAX; }

  stream(id) { return this.streams.get(id); }

  /** The most streams that may be open: the smaller of the table and both HELLOs. */
  get maxStreams() { return this._maxOpen; }

  _updateMax() {
    let m = this.cap;
    for (const h of [this.localHello, this.peerHello]) {
      if (h && h.max_streams !== undefined && h.max_streams < m) m = h.max_streams;
    }
    this._maxOpen = m;
    this.websocket = !!(this.localHello && this.peerHello &&
      this.localHello.websocket === true && this.peerHello.websocket === true);
  }

  _workerHello() { return this.gw ? this.peerHello : this.localHello; }
  _gatewayHello() { return this.gw ? this.localHello : this.peerHello; }

  /** Creates the per-stream state; a runtime may override it to use a subclass. */
  makeStream(id) { return new StreamState(id); }

  _open(id, bodyMode) {
    const s = this.makeStream(id);
    const reqWin = bodyMode === BODY_ON_CREDIT ? 0 : this._workerHello().window;
    const respWin = this._gatewayHello().window;
    s.bodyMode = bodyMode;
    /* A WebSocket stream has no request body, but its request side counts as
     * open until the stream closes (CREDIT and LIMIT apply to its messages). */
    s.req = bodyMode === BODY_NONE ? REQ_ENDED : REQ_OPEN;
    if (bodyMode === BODY_WEBSOCKET) s.ws = WS_WAITING;
    if (this.gw) { s.sendWin = reqWin; s.recvWin = respWin; } else { s.sendWin = respWin; s.recvWin = reqWin; }
    this.streams.set(id, s);
    if (id > this.highest) this.highest = id;
    const ev = this.ev;
    ev.stream = s;
    ev.opened = true;
    return s;
  }

  _close(s) {
    const ev = this.ev;
    ev.udata = s.udata;
    ev.stream = null;
    ev.closed = true;
    this.streams.delete(s.id);
  }

  _failWith(code, msg) {
    this.state = 'failed';
    throw new ProtocolError(code, msg);
  }

  /**
   * A frame arrived from the peer. Returns the LinkEvent; throws
   * ProtocolError (the link is then failed) for a link error.
   */
  recv(f) {
    const ev = this.ev;
    ev.reset();
    const t = f.type;
    if (this.state === 'failed') throw new ProtocolError(7, 'the link has failed');
    if (!(this.gw ? WORKER_SENDS : GATEWAY_SENDS)[t]) this._failWith(7, `${FRAME_NAMES[t]} from the ${this.gw ? 'worker' : 'gateway'}`);
    if (t === 14) { this.state = 'failed'; return ev; }
    if (t === 1) { this._recvHello(f); return ev; }
    if (!this.ready) this._failWith(7, `${FRAME_NAMES[t]} before the handshake`);
    switch (t) {
      case 10: case 11: return ev;
      case 12:
        if (this.drain) this._failWith(7, 'a second DRAIN');
        this.drain = true;
        this.state = 'draining';
        return ev;
      case 13:
        this.retiring = true;
        return ev;
      default:
        this._recvStream(f);
        return ev;
    }
  }

  _recvHello(f) {
    if (this.peerHello) this._failWith(7, 'a second HELLO');
    if (!this.gw && !this.localHello) this._failWith(7, 'the gateway spoke first');
    if (f.version !== VERSION) this._failWith(11, `version ${f.version}; this side speaks 1`);
    const s = f.settings;
    if (s.window === undefined || (this.gw && s.max_streams === undefined)) {
      this._failWith(4, 'HELLO lacks a required key');
    }
    this.peerHello = Object.assign({}, s);
    if (this.peerHello.max_frame === undefined) this.peerHello.max_frame = DEFAULT_FRAME;
    this._updateMax();
    if (!this.gw) this.state = 'ready';
  }

  _recvStream(f) {
    const ev = this.ev;
    const id = f.stream;
    const t = f.type;
    if (t >= 15 && !this.websocket) this._failWith(7, `${FRAME_NAMES[t]} on a link without websocket`);
    if (t === 2) { // REQUEST, worker side
      if (f.body === BODY_WEBSOCKET && !this.websocket) this._failWith(7, 'a WebSocket REQUEST on a link without websocket');
      if (this.state === 'draining') this._failWith(7, 'REQUEST after DRAIN');
      if (id <= this.highest) this._failWith(8, `REQUEST for stream ${id}, not above ${this.highest}`);
      if (this.streams.size >= this._maxOpen) this._failWith(10, `more than ${this._maxOpen} open streams`);
      this._open(id, f.body);
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (id <= this.highest) { ev.ignored = true; return; } // closed: crossed on the wire
      this._failWith(8, `${FRAME_NAMES[t]} for unused stream ${id}`);
    }
    ev.stream = s;
    ev.udata = s.udata;
    const gw = this.gw;
    switch (t) {
      case 3: // RESPONSE
        if (f.status === 101) {
          if (!this.websocket) this._failWith(7, 'RESPONSE 101 on a link without websocket');
          if (s.resp !== RESP_WAITING || s.ws !== WS_WAITING || f.body !== BODY_NONE) this._failWith(8, 'RESPONSE 101 on a stream that is not a waiting WebSocket');
          s.resp = RESP_WS;
          s.ws = WS_OPEN;
          return;
        }
        if (s.resp !== RESP_WAITING) this._failWith(8, 'RESPONSE twice');
        s.ws = WS_NONE; // a refused WebSocket is an ordinary response
        if (f.body === BODY_NONE) { s.resp = RESP_ENDED; this._close(s); } else s.resp = RESP_SENDING;
        return;
      case 15: { // MESSAGE
        const fl = f.flags;
        const n = f.data.length;
        if (fl === (gw ? MSG.PONG : MSG.PING)) this._failWith(5, `MESSAGE ${gw ? 'PONG from the worker' : 'PING from the gateway'}`);
        if (fl === MSG.PING && n > PING_MAX) this._failWith(5, `MESSAGE PING of ${n} bytes`);
        if (s.ws !== WS_OPEN) this._failWith(8, `MESSAGE on stream ${id} before RESPONSE 101 or not a WebSocket`);
        if (fl < MSG.PING) {
          if (s.msgIn >= 0 && (fl & 1) !== s.msgIn) this._failWith(8, 'MESSAGE piece with a different text bit');
          if (n > s.recvWin) this._failWith(9, `MESSAGE of ${n} bytes, window ${s.recvWin}`);
          s.recvWin -= n;
          s.msgIn = (fl & MSG.MORE) ? (fl & 1) : -1;
          if (gw) s.respBytes += n; else s.reqBytes += n;
        }
        return;
      }
      case 16: // CLOSE
        if (s.ws !== WS_OPEN) this._failWith(8, `CLOSE on stream ${id} before RESPONSE 101 or not a WebSocket`);
        this._close(s);
        return;
      case 4: { // BODY
        const n = f.data.length;
        if (gw ? s.resp !== RESP_SENDING : (s.req !== REQ_OPEN || s.bodyMode === BODY_WEBSOCKET)) this._failWith(8, `BODY on stream ${id} in the wrong state`);
        if (n > s.recvWin) this._failWith(9, `BODY of ${n} bytes, window ${s.recvWin}`);
        s.recvWin -= n;
        if (gw) s.respBytes += n; else s.reqBytes += n;
        return;
      }
      case 5: // END
        if (gw) {
          if (s.resp !== RESP_SENDING) this._failWith(8, 'END before RESPONSE or after END');
          s.resp = RESP_ENDED;
          this._close(s);
        } else {
          if (s.req !== REQ_OPEN || s.bodyMode === BODY_WEBSOCKET) this._failWith(8, 'END of an ended request or on a WebSocket');
          s.req = REQ_ENDED;
        }
        return;
      case 6: // CREDIT
        if (gw && s.req === REQ_ENDED) { ev.stream = null; ev.udata = null; ev.ignored = true; return; }
        if (f.increment > MAX_WINDOW - s.sendWin) this._failWith(9, 'CREDIT above 2^31-1');
        s.sendWin += f.increment;
        return;
      case 9: // LIMIT
        if (s.req === REQ_ENDED) { ev.stream = null; ev.udata = null; ev.ignored = true; return; }
        s.limit = f.max_body;
        return;
      case 7: case 8: // CANCEL, RESET
        this._close(s);
        return;
      default:
        this._failWith(7, FRAME_NAMES[t]);
    }
  }

  /**
   * This side is about to send frame `f`. Applies it to the state and returns
   * the LinkEvent; throws RejectedError (state unchanged) if it may not be
   * sent now.
   */
  send(f) {
    const ev = this.ev;
    ev.reset();
    const t = f.type;
    if (t === 14) { this.state = 'failed'; return ev; } // ERROR: allowed in any state
    if (this.state === 'failed') throw new RejectedError('the link has failed');
    if (!(this.gw ? GATEWAY_SENDS : WORKER_SENDS)[t]) throw new RejectedError(`a ${this.role} does not send ${FRAME_NAMES[t]}`);
    if (t === 1) {
      if (this.localHello || (this.gw && !this.peerHello)) throw new RejectedError('HELLO not allowed now');
      const s = f.settings || {};
      if (s.window === undefined || (!this.gw && s.max_streams === undefined)) throw new RejectedError('HELLO lacks a required key');
      // a gateway offers WebSockets only to a worker that asked (PROTOCOL.md 5.2)
      if (this.gw && s.websocket === true && !(this.peerHello && this.peerHello.websocket === true)) {
        throw new RejectedError('HELLO websocket: true to a worker that did not announce it');
      }
      this.localHello = Object.assign({}, s);
      if (this.localHello.max_frame === undefined) this.localHello.max_frame = DEFAULT_FRAME;
      this._updateMax();
      if (this.gw) this.state = 'ready';
      return ev;
    }
    if (!this.ready) throw new RejectedError(`${FRAME_NAMES[t]} before the handshake is complete`);
    switch (t) {
      case 10: case 11: return ev;
      case 12:
        if (this.drain) throw new RejectedError('DRAIN twice');
        this.drain = true;
        this.state = 'draining';
        return ev;
      case 13:
        this.retiring = true;
        return ev;
      default:
        break;
    }
    if (t >= 15 && !this.websocket) throw new RejectedError(`${FRAME_NAMES[t]} on a link without websocket`);
    if (t === 2) {
      const id = f.stream;
      const maxBody = this.websocket ? BODY_WEBSOCKET : BODY_ON_CREDIT;
      if (!this.canOpen || id <= this.highest || id > MAX_ID || !(f.body >= 0 && f.body <= maxBody)) {
        throw new RejectedError('REQUEST not allowed now');
      }
      this._open(id, f.body);
      return ev;
    }
    const s = this.streams.get(f.stream);
    if (s === undefined) throw new RejectedError(`stream ${f.stream} is not open`);
    switch (t) {
      case 3: this.sendResponse(s, f.body, f.status); break;
      case 15: this.sendMessage(s, f.flags, f.data.length); break;
      case 16: this.sendClose(s); break;
      case 4: this.sendBody(s, f.data.length); break;
      case 5: this.sendEnd(s); break;
      case 6: this.sendCredit(s, f.increment); break;
      case 9: s.limit = f.max_body; ev.stream = s; ev.udata = s.udata; break;
      case 7: case 8: this.sendReset(s); break;
      default: throw new RejectedError(FRAME_NAMES[t]);
    }
    return ev;
  }

  /* Fine-grained senders for runtimes that encode frames themselves. Each
   * checks, applies and fills this.ev, or throws RejectedError. */
  sendResponse(s, body, status = 200) {
    if (s.resp !== RESP_WAITING || !(body === 0 || body === 1)) throw new RejectedError('RESPONSE not allowed now');
    if (status === 101) {
      if (!this.websocket || s.ws !== WS_WAITING || body !== BODY_NONE) throw new RejectedError('RESPONSE 101 only accepts a WebSocket stream, without body');
    }
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
    if (status === 101) {
      s.resp = RESP_WS;
      s.ws = WS_OPEN;
      return;
    }
    s.ws = WS_NONE;
    if (body === BODY_NONE) { s.resp = RESP_ENDED; this._close(s); } else s.resp = RESP_SENDING;
  }

  /** MESSAGE with `flags` and `n` bytes of data on an accepted WebSocket. */
  sendMessage(s, flags, n) {
    if (s.ws !== WS_OPEN) throw new RejectedError('MESSAGE on a stream that is not an open WebSocket');
    if (flags < MSG.PING) {
      if (s.msgOut >= 0 && (flags & 1) !== s.msgOut) throw new RejectedError('MESSAGE piece with a different text bit');
      if (n > s.sendWin) throw new RejectedError(`MESSAGE of ${n} bytes beyond the window (${s.sendWin})`);
      s.sendWin -= n;
      s.msgOut = (flags & MSG.MORE) ? (flags & 1) : -1;
      if (this.gw) s.reqBytes += n; else s.respBytes += n;
    } else if (flags !== (this.gw ? MSG.PONG : MSG.PING) || (flags === MSG.PING && n > PING_MAX)) {
      throw new RejectedError(`MESSAGE flags ${flags} (${n} bytes) not sent by a ${this.role}`);
    }
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
  }

  /** CLOSE: closes an accepted WebSocket stream. */
  sendClose(s) {
    if (s.ws !== WS_OPEN) throw new RejectedError('CLOSE on a stream that is not an open WebSocket');
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
    this._close(s);
  }

  sendBody(s, n) {
    if ((this.gw ? (s.req !== REQ_OPEN || s.bodyMode === BODY_WEBSOCKET) : s.resp !== RESP_SENDING) || n > s.sendWin) {
      throw new RejectedError(n > s.sendWin ? `BODY of ${n} bytes beyond the window (${s.sendWin})` : 'BODY not allowed now');
    }
    s.sendWin -= n;
    if (this.gw) s.reqBytes += n; else s.respBytes += n;
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
  }

  sendEnd(s) {
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
    if (this.gw) {
      if (s.req !== REQ_OPEN || s.bodyMode === BODY_WEBSOCKET) throw new RejectedError('END not allowed now');
      s.req = REQ_ENDED;
    } else {
      if (s.resp !== RESP_SENDING) throw new RejectedError('END not allowed now');
      s.resp = RESP_ENDED;
      this._close(s);
    }
  }

  sendCredit(s, k) {
    if (!(k >= 1) || k > MAX_WINDOW - s.recvWin) throw new RejectedError('CREDIT out of range');
    s.recvWin += k;
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
  }

  sendReset(s) {
    const ev = this.ev;
    ev.stream = s; ev.udata = s.udata;
    this._close(s);
  }

  get canOpen() {
    return this.gw && this.state === 'ready' && !this.retiring &&
      this.streams.size < this._maxOpen && this.highest < MAX_ID;
  }

  fail() { this.state = 'failed'; }
}

/* ---- small helpers for runtimes ------------------------------------------ */

/** The most BODY data one frame may carry for a peer accepting `maxFrame`. */
function bodyMax(maxFrame) { return maxFrame - BODY_OVERHEAD; }

module.exports = {
  VERSION, MIN_FRAME, MAX_FRAME, DEFAULT_FRAME, HELLO_MAX, MAX_WINDOW, MAX_STREAMS,
  MAX_ID, MAX_HEADERS, MAX_DEPTH, BODY_OVERHEAD,
  FRAME, FRAME_NAMES, ERRORS, E, CANCEL, RESET, CANCEL_REASONS, RESET_CODES,
  BODY_NONE, BODY_FOLLOWS, BODY_ON_CREDIT, BODY_WEBSOCKET, MSG, PING_MAX, CLOSE_MIN, CLOSE_MAX,
  REQ_OPEN, REQ_ENDED, RESP_WAITING, RESP_SENDING, RESP_ENDED, RESP_WS, WS_NONE, WS_WAITING, WS_OPEN,
  errorName, cancelReasonName, resetCodeName,
  ProtocolError, RejectedError,
  decodePayload, FrameDecoder, Writer, writeFrame, encodeFrame, bodyMax, describePayload,
  Link, StreamState, StreamTable, LinkEvent, textOf,
};
