/* Frame encoder: canonical MessagePack (PROTOCOL.md 2.1) into a bounded
 * sluice_buf. Each frame's exact size is computed first, so the buffer is
 * reserved once and the payload is written without further checks; nothing
 * is appended unless the whole frame fits. Hand-written rather than
 * msgpack-c's packer: the packer calls back per value (dozens of tiny
 * memcpy calls per REQUEST), which halved the frame rate; msgpack-c stays
 * the independent oracle in the round-trip tests. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "sluice_proto.h"

/* ---- sizes ------------------------------------------------------------ */

static inline size_t sz_uint(uint64_t v)
{
    return v < 128 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}
static inline size_t sz_bin(size_t n) { return (n <= 0xff ? 2 : n <= 0xffff ? 3 : 5) + n; }
static inline size_t sz_str(size_t n) { return (n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5) + n; }
static inline size_t sz_arr(size_t n) { return n < 16 ? 1 : n <= 0xffff ? 3 : 5; }

static size_t sz_headers(const sluice_header *h, size_t n)
{
    size_t s = sz_arr(n);
    for (size_t i = 0; i < n; i++)
        s += 1 + sz_bin(h[i].name.len) + sz_bin(h[i].value.len);
    return s;
}

static size_t sz_addr(const sluice_addr *a) { return 1 + sz_str(a->host.len) + sz_uint(a->port); }

/* ---- writers (the caller reserved the space) -------------------------- */

static inline uint8_t *w_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        p[i] = (uint8_t)v, v >>= 8;
    return p + n;
}

static inline uint8_t *w_uint(uint8_t *p, uint64_t v)
{
    if (v < 128) {
        *p++ = (uint8_t)v;
    } else if (v <= 0xff) {
        *p++ = 0xcc;
        *p++ = (uint8_t)v;
    } else if (v <= 0xffff) {
        *p++ = 0xcd;
        p = w_be(p, v, 2);
    } else if (v <= 0xffffffffu) {
        *p++ = 0xce;
        p = w_be(p, v, 4);
    } else {
        *p++ = 0xcf;
        p = w_be(p, v, 8);
    }
    return p;
}

static inline uint8_t *w_raw(uint8_t *p, const uint8_t *d, size_t n)
{
    if (n)
        memcpy(p, d, n);
    return p + n;
}

static inline uint8_t *w_bin(uint8_t *p, const uint8_t *d, size_t n)
{
    if (n <= 0xff) {
        *p++ = 0xc4;
        *p++ = (uint8_t)n;
    } else if (n <= 0xffff) {
        *p++ = 0xc5;
        p = w_be(p, n, 2);
    } else {
        *p++ = 0xc6;
        p = w_be(p, n, 4);
    }
    return w_raw(p, d, n);
}

static inline uint8_t *w_str(uint8_t *p, const uint8_t *d, size_t n)
{
    if (n < 32) {
        *p++ = (uint8_t)(0xa0 | n);
    } else if (n <= 0xff) {
        *p++ = 0xd9;
        *p++ = (uint8_t)n;
    } else if (n <= 0xffff) {
        *p++ = 0xda;
        p = w_be(p, n, 2);
    } else {
        *p++ = 0xdb;
        p = w_be(p, n, 4);
    }
    return w_raw(p, d, n);
}

static inline uint8_t *w_arr(uint8_t *p, size_t n)
{
    if (n < 16) {
        *p++ = (uint8_t)(0x90 | n);
    } else if (n <= 0xffff) {
        *p++ = 0xdc;
        p = w_be(p, n, 2);
    } else {
        *p++ = 0xdd;
        p = w_be(p, n, 4);
    }
    return p;
}

static inline uint8_t *w_map(uint8_t *p, size_t n) { return n < 16 ? (*p++ = (uint8_t)(0x80 | n), p) : (*p++ = 0xde, w_be(p, n, 2)); }

static uint8_t *w_headers(uint8_t *p, const sluice_header *h, size_t n)
{
    p = w_arr(p, n);
    for (size_t i = 0; i < n; i++) {
        *p++ = 0x92;
        p = w_bin(p, h[i].name.ptr, h[i].name.len);
        p = w_bin(p, h[i].value.ptr, h[i].value.len);
    }
    return p;
}

static uint8_t *w_addr(uint8_t *p, const sluice_addr *a)
{
    *p++ = 0x92;
    p = w_str(p, a->host.ptr, a->host.len);
    return w_uint(p, a->port);
}

/* Reserve a frame of `size` payload bytes; returns where the payload goes. */
static int frame_begin(sluice_buf *out, size_t size, uint32_t max_frame, uint8_t **p)
{
    /* (the size is also checked against the written bytes in frame_end) */
    if (size > (max_frame ? max_frame : SLUICE_PROTO_MAX_FRAME))
        return -EMSGSIZE;
    int rc = sluice_buf_reserve(out, 4 + size);
    if (rc < 0)
        return rc;
    uint8_t *q = out->data + out->len;
    w_be(q, size, 4);
    *p = q + 4;
    return 0;
}

/* Commit the frame: `end` must be exactly payload + size. */
static int frame_end(sluice_buf *out, uint8_t *end)
{
    const uint8_t *q = out->data + out->len;
    size_t size = ((size_t)q[0] << 24) | ((size_t)q[1] << 16) | ((size_t)q[2] << 8) | q[3];
    assert((size_t)(end - q) == 4 + size);
    (void)size;
    out->len = (size_t)(end - out->data);
    return 0;
}

static inline size_t sz_head(uint32_t type, uint64_t sid, size_t n)
{
    return sz_arr(n) + sz_uint(type) + sz_uint(sid);
}

static inline uint8_t *w_head(uint8_t *p, size_t n, uint32_t type, uint64_t sid)
{
    p = w_arr(p, n);
    p = w_uint(p, type);
    return w_uint(p, sid);
}

static bool bytes_ok(const sluice_bytes *b) { return b->len <= UINT32_MAX && (b->len == 0 || b->ptr); }

static int check_headers(const sluice_header *h, size_t n)
{
    if (n > SLUICE_PROTO_MAX_HEADERS || (n && !h))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len == 0 || !bytes_ok(&h[i].name) || !bytes_ok(&h[i].value))
            return -EINVAL;
    return 0;
}

static bool stream_id_ok(uint64_t sid) { return sid >= 1 && sid <= SLUICE_PROTO_MAX_ID; }

#define KEY(k) ((const uint8_t *)(k)), (sizeof(k) - 1)

int sluice_proto_encode_hello(sluice_buf *out, const sluice_hello *h)
{
    uint32_t has = h->has;
    if ((has & SLUICE_HELLO_HAS_MAX_STREAMS) &&
        (h->max_streams < 1 || h->max_streams > SLUICE_PROTO_MAX_STREAMS))
        return -EINVAL;
    if ((has & SLUICE_HELLO_HAS_WINDOW) && h->window > SLUICE_PROTO_MAX_WINDOW)
        return -EINVAL;
    if ((has & SLUICE_HELLO_HAS_MAX_FRAME) &&
        (h->max_frame < SLUICE_PROTO_MIN_FRAME || h->max_frame > SLUICE_PROTO_MAX_FRAME))
        return -EINVAL;
    if (h->version > SLUICE_PROTO_MAX_ID || h->pid > SLUICE_PROTO_MAX_ID ||
        h->worker_id > SLUICE_PROTO_MAX_ID || !bytes_ok(&h->lib) || !bytes_ok(&h->token) ||
        !bytes_ok(&h->pool) || !bytes_ok(&h->server))
        return -EINVAL;
    size_t n = 0, size = sz_head(SLUICE_FRAME_HELLO, 0, 4) + sz_uint(h->version);
    /* Keys in canonical order (PROTOCOL.md 3.1). */
#define SZ(flag, key, vsize)                                                                       \
    if (has & (flag)) {                                                                            \
        n++;                                                                                       \
        size += sz_str(sizeof(key) - 1) + (vsize);                                                 \
    }
    SZ(SLUICE_HELLO_HAS_PID, "pid", sz_uint(h->pid))
    SZ(SLUICE_HELLO_HAS_LIB, "lib", sz_str(h->lib.len))
    SZ(SLUICE_HELLO_HAS_MAX_STREAMS, "max_streams", sz_uint(h->max_streams))
    SZ(SLUICE_HELLO_HAS_WINDOW, "window", sz_uint(h->window))
    SZ(SLUICE_HELLO_HAS_MAX_FRAME, "max_frame", sz_uint(h->max_frame))
    SZ(SLUICE_HELLO_HAS_TOKEN, "token", sz_str(h->token.len))
    SZ(SLUICE_HELLO_HAS_WORKER_ID, "worker_id", sz_uint(h->worker_id))
    SZ(SLUICE_HELLO_HAS_POOL, "pool", sz_str(h->pool.len))
    SZ(SLUICE_HELLO_HAS_SERVER, "server", sz_str(h->server.len))
    /* websocket: only when true (canonical form, PROTOCOL.md 3.1) */
    bool ws = (has & SLUICE_HELLO_HAS_WEBSOCKET) && h->websocket;
    SZ(ws ? SLUICE_HELLO_HAS_WEBSOCKET : 0, "websocket", 1)
#undef SZ
    size += n < 16 ? 1 : 3;
    uint8_t *p;
    int rc = frame_begin(out, size, SLUICE_PROTO_HELLO_MAX, &p);
    if (rc < 0)
        return rc;
    p = w_head(p, 4, SLUICE_FRAME_HELLO, 0);
    p = w_uint(p, h->version);
    p = w_map(p, n);
    if (has & SLUICE_HELLO_HAS_PID)
        p = w_uint(w_str(p, KEY("pid")), h->pid);
    if (has & SLUICE_HELLO_HAS_LIB)
        p = w_str(w_str(p, KEY("lib")), h->lib.ptr, h->lib.len);
    if (has & SLUICE_HELLO_HAS_MAX_STREAMS)
        p = w_uint(w_str(p, KEY("max_streams")), h->max_streams);
    if (has & SLUICE_HELLO_HAS_WINDOW)
        p = w_uint(w_str(p, KEY("window")), h->window);
    if (has & SLUICE_HELLO_HAS_MAX_FRAME)
        p = w_uint(w_str(p, KEY("max_frame")), h->max_frame);
    if (has & SLUICE_HELLO_HAS_TOKEN)
        p = w_str(w_str(p, KEY("token")), h->token.ptr, h->token.len);
    if (has & SLUICE_HELLO_HAS_WORKER_ID)
        p = w_uint(w_str(p, KEY("worker_id")), h->worker_id);
    if (has & SLUICE_HELLO_HAS_POOL)
        p = w_str(w_str(p, KEY("pool")), h->pool.ptr, h->pool.len);
    if (has & SLUICE_HELLO_HAS_SERVER)
        p = w_str(w_str(p, KEY("server")), h->server.ptr, h->server.len);
    if (ws) {
        p = w_str(p, KEY("websocket"));
        *p++ = 0xc3; /* true */
    }
    return frame_end(out, p);
}

int sluice_proto_encode_request(sluice_buf *out, uint64_t sid, const sluice_request *r,
                                uint32_t max_frame)
{
    if (!stream_id_ok(sid) || r->method.len == 0 || r->target.len == 0 ||
        !bytes_ok(&r->method) || !bytes_ok(&r->target) || !bytes_ok(&r->scheme) ||
        !bytes_ok(&r->client.host) || !bytes_ok(&r->server.host) ||
        !sluice_http_version_ok(r->version) || r->body > SLUICE_BODY_WEBSOCKET ||
        r->client.port > 65535 || r->server.port > 65535)
        return -EINVAL;
    int rc = check_headers(r->headers.items, r->headers.count);
    if (rc < 0)
        return rc;
    size_t size = sz_head(SLUICE_FRAME_REQUEST, sid, 10) + sz_bin(r->method.len) +
                  sz_bin(r->target.len) + sz_uint(r->version) +
                  sz_headers(r->headers.items, r->headers.count) + sz_addr(&r->client) +
                  sz_addr(&r->server) + sz_str(r->scheme.len) + sz_uint(r->body);
    uint8_t *p;
    if ((rc = frame_begin(out, size, max_frame, &p)) < 0)
        return rc;
    p = w_head(p, 10, SLUICE_FRAME_REQUEST, sid);
    p = w_bin(p, r->method.ptr, r->method.len);
    p = w_bin(p, r->target.ptr, r->target.len);
    p = w_uint(p, r->version);
    p = w_headers(p, r->headers.items, r->headers.count);
    p = w_addr(p, &r->client);
    p = w_addr(p, &r->server);
    p = w_str(p, r->scheme.ptr, r->scheme.len);
    p = w_uint(p, r->body);
    return frame_end(out, p);
}

int sluice_proto_encode_response(sluice_buf *out, uint64_t sid, const sluice_response *r,
                                 uint32_t max_frame)
{
    /* 101 with body=1 is well-formed (a stream_state matter for the link). */
    if (!stream_id_ok(sid) || (r->status != 101 && (r->status < 200 || r->status > 599)) ||
        r->body > SLUICE_BODY_FOLLOWS)
        return -EINVAL;
    int rc = check_headers(r->headers.items, r->headers.count);
    if (rc < 0)
        return rc;
    size_t size = sz_head(SLUICE_FRAME_RESPONSE, sid, 5) + sz_uint(r->status) +
                  sz_headers(r->headers.items, r->headers.count) + sz_uint(r->body);
    uint8_t *p;
    if ((rc = frame_begin(out, size, max_frame, &p)) < 0)
        return rc;
    p = w_head(p, 5, SLUICE_FRAME_RESPONSE, sid);
    p = w_uint(p, r->status);
    p = w_headers(p, r->headers.items, r->headers.count);
    p = w_uint(p, r->body);
    return frame_end(out, p);
}

/* BODY data limit: the largest frame minus the largest head. */
#define BODY_MAX (SLUICE_PROTO_MAX_FRAME - (SLUICE_PROTO_BODY_HEAD_MAX - 4))

/* A bin header for len bytes (the data follows). */
static uint8_t *w_bin_len(uint8_t *p, size_t len)
{
    if (len <= 0xff) {
        *p++ = 0xc4;
        *p++ = (uint8_t)len;
    } else if (len <= 0xffff) {
        *p++ = 0xc5;
        p = w_be(p, len, 2);
    } else {
        *p++ = 0xc6;
        p = w_be(p, len, 4);
    }
    return p;
}

static size_t body_head(uint8_t *q, uint64_t sid, size_t len)
{
    size_t size = sz_head(SLUICE_FRAME_BODY, sid, 3) + sz_bin(len);
    uint8_t *p = w_be(q, size, 4);
    p = w_head(p, 3, SLUICE_FRAME_BODY, sid);
    p = w_bin_len(p, len);
    return (size_t)(p - q);
}

int sluice_proto_encode_body_head(sluice_buf *out, uint64_t sid, size_t len)
{
    if (!stream_id_ok(sid) || len > BODY_MAX)
        return -EINVAL;
    int rc = sluice_buf_reserve(out, SLUICE_PROTO_BODY_HEAD_MAX);
    if (rc < 0)
        return rc;
    out->len += body_head(out->data + out->len, sid, len);
    return 0;
}

int sluice_proto_encode_body(sluice_buf *out, uint64_t sid, const void *data, size_t len)
{
    if (!stream_id_ok(sid) || len > BODY_MAX || (len && !data))
        return -EINVAL;
    int rc = sluice_buf_reserve(out, SLUICE_PROTO_BODY_HEAD_MAX + len);
    if (rc < 0)
        return rc;
    out->len += body_head(out->data + out->len, sid, len);
    if (len)
        memcpy(out->data + out->len, data, len);
    out->len += len;
    return 0;
}

static int encode_code_frame(sluice_buf *out, uint32_t type, uint64_t sid, uint64_t code,
                             const uint8_t *msg, size_t mlen, bool with_msg);

/* MESSAGE head: [15, sid, flags, bin len]; flags is a fixint. */
static size_t message_head(uint8_t *q, uint64_t sid, uint32_t flags, size_t len)
{
    size_t size = sz_head(SLUICE_FRAME_MESSAGE, sid, 4) + 1 + sz_bin(len);
    uint8_t *p = w_be(q, size, 4);
    p = w_head(p, 4, SLUICE_FRAME_MESSAGE, sid);
    *p++ = (uint8_t)flags;
    p = w_bin_len(p, len);
    return (size_t)(p - q);
}

#define MESSAGE_MAX SLUICE_PROTO_MESSAGE_MAX(SLUICE_PROTO_MAX_FRAME)

int sluice_proto_encode_message_head(sluice_buf *out, uint64_t sid, uint32_t flags, size_t len)
{
    if (!stream_id_ok(sid) || !sluice_msg_flags_ok(flags) || len > MESSAGE_MAX)
        return -EINVAL;
    int rc = sluice_buf_reserve(out, SLUICE_PROTO_MESSAGE_HEAD_MAX);
    if (rc < 0)
        return rc;
    out->len += message_head(out->data + out->len, sid, flags, len);
    return 0;
}

int sluice_proto_encode_message(sluice_buf *out, uint64_t sid, uint32_t flags, const void *data,
                                size_t len)
{
    if (!stream_id_ok(sid) || !sluice_msg_flags_ok(flags) || len > MESSAGE_MAX || (len && !data))
        return -EINVAL;
    int rc = sluice_buf_reserve(out, SLUICE_PROTO_MESSAGE_HEAD_MAX + len);
    if (rc < 0)
        return rc;
    out->len += message_head(out->data + out->len, sid, flags, len);
    if (len)
        memcpy(out->data + out->len, data, len);
    out->len += len;
    return 0;
}

static int encode_close_view(sluice_buf *out, uint64_t sid, uint64_t code, const uint8_t *reason,
                             size_t rlen, bool with)
{
    if (!stream_id_ok(sid) || code < SLUICE_CLOSE_CODE_MIN || code > SLUICE_CLOSE_CODE_MAX ||
        rlen > UINT32_MAX || (rlen && !reason))
        return -EINVAL;
    return encode_code_frame(out, SLUICE_FRAME_CLOSE, sid, code, reason, rlen, with);
}

int sluice_proto_encode_close(sluice_buf *out, uint64_t sid, uint64_t code, const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;
    return encode_close_view(out, sid, code, (const uint8_t *)reason, n, n > 0);
}

int sluice_proto_encode_end(sluice_buf *out, uint64_t sid, const sluice_header *trailers,
                            size_t n_trailers)
{
    if (!stream_id_ok(sid))
        return -EINVAL;
    int rc = check_headers(trailers, n_trailers);
    if (rc < 0)
        return rc;
    size_t n = n_trailers ? 3 : 2;
    size_t size = sz_head(SLUICE_FRAME_END, sid, n) + (n_trailers ? sz_headers(trailers, n_trailers) : 0);
    uint8_t *p;
    if ((rc = frame_begin(out, size, 0, &p)) < 0)
        return rc;
    p = w_head(p, n, SLUICE_FRAME_END, sid);
    if (n_trailers)
        p = w_headers(p, trailers, n_trailers);
    return frame_end(out, p);
}

/* [type, sid, uint] frames: CREDIT, LIMIT, PING, PONG, DRAIN. */
static int encode_uint_frame(sluice_buf *out, uint32_t type, uint64_t sid, uint64_t v)
{
    if (v > SLUICE_PROTO_MAX_ID)
        return -EINVAL;
    uint8_t *p;
    int rc = frame_begin(out, sz_head(type, sid, 3) + sz_uint(v), 0, &p);
    if (rc < 0)
        return rc;
    p = w_head(p, 3, type, sid);
    p = w_uint(p, v);
    return frame_end(out, p);
}

/* [type, sid, uint, text?] frames: CANCEL, RESET, CLOSE, ERROR (text required). */
static int encode_code_frame(sluice_buf *out, uint32_t type, uint64_t sid, uint64_t code,
                             const uint8_t *msg, size_t mlen, bool with_msg)
{
    if (code > SLUICE_PROTO_MAX_ID || mlen > UINT32_MAX)
        return -EINVAL;
    size_t n = with_msg ? 4 : 3;
    size_t size = sz_head(type, sid, n) + sz_uint(code) + (with_msg ? sz_str(mlen) : 0);
    uint8_t *p;
    int rc = frame_begin(out, size, 0, &p);
    if (rc < 0)
        return rc;
    p = w_head(p, n, type, sid);
    p = w_uint(p, code);
    if (with_msg)
        p = w_str(p, msg, mlen);
    return frame_end(out, p);
}

static int encode_retire_view(sluice_buf *out, const uint8_t *reason, size_t rlen, bool with)
{
    if (rlen > UINT32_MAX)
        return -EINVAL;
    size_t n = with ? 3 : 2;
    uint8_t *p;
    int rc = frame_begin(out, sz_head(SLUICE_FRAME_RETIRE, 0, n) + (with ? sz_str(rlen) : 0), 0, &p);
    if (rc < 0)
        return rc;
    p = w_head(p, n, SLUICE_FRAME_RETIRE, 0);
    if (with)
        p = w_str(p, reason, rlen);
    return frame_end(out, p);
}

int sluice_proto_encode_credit(sluice_buf *out, uint64_t sid, uint64_t increment)
{
    if (!stream_id_ok(sid) || increment < 1 || increment > SLUICE_PROTO_MAX_WINDOW)
        return -EINVAL;
    return encode_uint_frame(out, SLUICE_FRAME_CREDIT, sid, increment);
}

static size_t cstrlen(const char *s) { return s ? strlen(s) : 0; }

int sluice_proto_encode_cancel(sluice_buf *out, uint64_t sid, uint64_t reason, const char *message)
{
    if (!stream_id_ok(sid))
        return -EINVAL;
    return encode_code_frame(out, SLUICE_FRAME_CANCEL, sid, reason, (const uint8_t *)message,
                             cstrlen(message), cstrlen(message) > 0);
}

int sluice_proto_encode_reset(sluice_buf *out, uint64_t sid, uint64_t code, const char *message)
{
    if (!stream_id_ok(sid))
        return -EINVAL;
    return encode_code_frame(out, SLUICE_FRAME_RESET, sid, code, (const uint8_t *)message,
                             cstrlen(message), cstrlen(message) > 0);
}

int sluice_proto_encode_limit(sluice_buf *out, uint64_t sid, uint64_t max_body)
{
    if (!stream_id_ok(sid))
        return -EINVAL;
    return encode_uint_frame(out, SLUICE_FRAME_LIMIT, sid, max_body);
}

int sluice_proto_encode_ping(sluice_buf *out, uint64_t opaque)
{
    return encode_uint_frame(out, SLUICE_FRAME_PING, 0, opaque);
}

int sluice_proto_encode_pong(sluice_buf *out, uint64_t opaque)
{
    return encode_uint_frame(out, SLUICE_FRAME_PONG, 0, opaque);
}

int sluice_proto_encode_drain(sluice_buf *out, uint64_t timeout_ms)
{
    return encode_uint_frame(out, SLUICE_FRAME_DRAIN, 0, timeout_ms);
}

int sluice_proto_encode_retire(sluice_buf *out, const char *reason)
{
    return encode_retire_view(out, (const uint8_t *)reason, cstrlen(reason), cstrlen(reason) > 0);
}

int sluice_proto_encode_error(sluice_buf *out, int err, const char *message)
{
    if (!message)
        message = sluice_proto_strerror(err);
    return encode_code_frame(out, SLUICE_FRAME_ERROR, 0, sluice_proto_err_code(err),
                             (const uint8_t *)message, strlen(message), true);
}

/* Generic form, used by tests, vectors and tools. Strings in decoded frames
 * are views without a terminating NUL, so they are written from the views. */
int sluice_proto_encode(sluice_buf *out, const sluice_frame *f, uint32_t max_frame)
{
    uint64_t sid = f->stream_id;
    bool link_frame = f->type == SLUICE_FRAME_HELLO || f->type == SLUICE_FRAME_PING ||
                      f->type == SLUICE_FRAME_PONG || f->type == SLUICE_FRAME_DRAIN ||
                      f->type == SLUICE_FRAME_RETIRE || f->type == SLUICE_FRAME_ERROR;
    if (link_frame ? sid != 0 : !stream_id_ok(sid))
        return -EINVAL;
    switch (f->type) {
    case SLUICE_FRAME_HELLO:
        return sluice_proto_encode_hello(out, &f->u.hello);
    case SLUICE_FRAME_REQUEST:
        return sluice_proto_encode_request(out, sid, &f->u.request, max_frame);
    case SLUICE_FRAME_RESPONSE:
        return sluice_proto_encode_response(out, sid, &f->u.response, max_frame);
    case SLUICE_FRAME_BODY:
        if (max_frame && sz_head(SLUICE_FRAME_BODY, sid, 3) + sz_bin(f->u.body.len) > max_frame)
            return -EMSGSIZE;
        return sluice_proto_encode_body(out, sid, f->u.body.ptr, f->u.body.len);
    case SLUICE_FRAME_END:
        return sluice_proto_encode_end(out, sid, f->u.trailers.items, f->u.trailers.count);
    case SLUICE_FRAME_CREDIT:
        return sluice_proto_encode_credit(out, sid, f->u.credit);
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
    case SLUICE_FRAME_ERROR:
        /* An empty message is no message (PROTOCOL.md 2.1); ERROR always has one. */
        return encode_code_frame(out, f->type, sid, f->u.code.code, f->u.code.message.ptr,
                                 f->u.code.message.len,
                                 f->type == SLUICE_FRAME_ERROR ||
                                     (f->u.code.has_message && f->u.code.message.len));
    case SLUICE_FRAME_LIMIT:
        return sluice_proto_encode_limit(out, sid, f->u.max_body);
    case SLUICE_FRAME_PING:
        return sluice_proto_encode_ping(out, f->u.opaque);
    case SLUICE_FRAME_PONG:
        return sluice_proto_encode_pong(out, f->u.opaque);
    case SLUICE_FRAME_DRAIN:
        return sluice_proto_encode_drain(out, f->u.timeout_ms);
    case SLUICE_FRAME_RETIRE:
        return encode_retire_view(out, f->u.retire.reason.ptr, f->u.retire.reason.len,
                                  f->u.retire.has_reason && f->u.retire.reason.len);
    case SLUICE_FRAME_MESSAGE:
        if (max_frame && sz_head(SLUICE_FRAME_MESSAGE, sid, 4) + 1 + sz_bin(f->u.message.data.len) > max_frame)
            return -EMSGSIZE;
        return sluice_proto_encode_message(out, sid, f->u.message.flags, f->u.message.data.ptr,
                                           f->u.message.data.len);
    case SLUICE_FRAME_CLOSE:
        /* An empty reason is no reason, as for CANCEL and RESET. */
        return encode_close_view(out, sid, f->u.close.code, f->u.close.reason.ptr, f->u.close.reason.len,
                                 f->u.close.has_reason && f->u.close.reason.len);
    default:
        return -EINVAL;
    }
}
