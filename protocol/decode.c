/* Frame decoder.
 *
 * The payload reader is a strict, schema-directed MessagePack cursor rather
 * than msgpack-c's generic unpacker: it allocates nothing (msgpack-c sizes an
 * array's object table from the untrusted element count before reading the
 * elements), returns views into the input, and checks every field's type and
 * range as it goes. Every read is bounds-checked against the payload end. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

#define E_MALFORMED SLUICE_PROTO_E_MALFORMED
#define E_TYPE SLUICE_PROTO_E_FIELD_TYPE
#define E_VALUE SLUICE_PROTO_E_FIELD_VALUE

typedef struct {
    const uint8_t *p, *end;
} cur;

static inline size_t avail(const cur *c) { return (size_t)(c->end - c->p); }

static inline uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Bytes of the big-endian length that follows a type byte, by family. */
static int rd_uint(cur *c, uint64_t *v)
{
    if (!avail(c))
        return E_MALFORMED;
    uint8_t b = *c->p;
    int n;
    bool is_signed = false;
    if (b <= 0x7f) {
        *v = b;
        c->p++;
        return 0;
    }
    if (b >= 0xe0) { /* negative fixint */
        c->p++;
        return E_VALUE;
    }
    switch (b) {
    case 0xcc: n = 1; break;
    case 0xcd: n = 2; break;
    case 0xce: n = 4; break;
    case 0xcf: n = 8; break;
    case 0xd0: n = 1; is_signed = true; break;
    case 0xd1: n = 2; is_signed = true; break;
    case 0xd2: n = 4; is_signed = true; break;
    case 0xd3: n = 8; is_signed = true; break;
    case 0xc1: return E_MALFORMED;
    default: return E_TYPE;
    }
    if (avail(c) < (size_t)n + 1)
        return E_MALFORMED;
    uint64_t x = be(c->p + 1, n);
    c->p += n + 1;
    if (is_signed && (x >> (n * 8 - 1)) & 1)
        return E_VALUE;
    if (x > SLUICE_PROTO_MAX_ID)
        return E_VALUE;
    *v = x;
    return 0;
}

static int rd_uint_range(cur *c, uint64_t lo, uint64_t hi, uint64_t *v)
{
    int rc = rd_uint(c, v);
    if (rc == 0 && (*v < lo || *v > hi))
        rc = E_VALUE;
    return rc;
}

static int rd_raw_slow(cur *c, bool allow_bin, sluice_bytes *out);

/* str (and, for `bytes`, bin) with its length. The short forms that carry
 * nearly every header name and value are decoded inline. */
static inline int rd_raw(cur *c, bool allow_bin, sluice_bytes *out)
{
    size_t av = avail(c), len, hl;
    if (av < 2)
        return rd_raw_slow(c, allow_bin, out);
    uint8_t b = c->p[0];
    if ((b & 0xe0) == 0xa0) {
        len = b & 0x1f;
        hl = 1;
    } else if ((b == 0xc4 && allow_bin) || b == 0xd9) {
        len = c->p[1];
        hl = 2;
    } else {
        return rd_raw_slow(c, allow_bin, out);
    }
    if (av - hl < len)
        return E_MALFORMED;
    out->ptr = c->p + hl;
    out->len = len;
    c->p += hl + len;
    return 0;
}

static int rd_raw_slow(cur *c, bool allow_bin, sluice_bytes *out)
{
    if (!avail(c))
        return E_MALFORMED;
    uint8_t b = *c->p;
    int n;
    size_t len;
    if (b >= 0xa0 && b <= 0xbf) {
        len = b & 0x1f;
        n = 0;
    } else {
        switch (b) {
        case 0xd9: n = 1; break;
        case 0xda: n = 2; break;
        case 0xdb: n = 4; break;
        case 0xc4: n = allow_bin ? 1 : -1; break;
        case 0xc5: n = allow_bin ? 2 : -1; break;
        case 0xc6: n = allow_bin ? 4 : -1; break;
        case 0xc1: return E_MALFORMED;
        default: n = -1;
        }
        if (n < 0)
            return E_TYPE;
        if (avail(c) < (size_t)n + 1)
            return E_MALFORMED;
        len = (size_t)be(c->p + 1, n);
    }
    c->p += n + 1;
    if (avail(c) < len)
        return E_MALFORMED;
    out->ptr = c->p;
    out->len = len;
    c->p += len;
    return 0;
}

static int rd_bool(cur *c, bool *v)
{
    if (!avail(c))
        return E_MALFORMED;
    uint8_t b = *c->p;
    if (b != 0xc2 && b != 0xc3)
        return b == 0xc1 ? E_MALFORMED : E_TYPE;
    *v = b == 0xc3;
    c->p++;
    return 0;
}

static int rd_container(cur *c, bool map, uint32_t *count)
{
    if (!avail(c))
        return E_MALFORMED;
    uint8_t b = *c->p;
    uint8_t fix = map ? 0x80 : 0x90, b16 = map ? 0xde : 0xdc, b32 = map ? 0xdf : 0xdd;
    if (b >= fix && b <= fix + 0x0f) {
        *count = b & 0x0f;
        c->p++;
        return 0;
    }
    int n = b == b16 ? 2 : b == b32 ? 4 : 0;
    if (!n)
        return b == 0xc1 ? E_MALFORMED : E_TYPE;
    if (avail(c) < (size_t)n + 1)
        return E_MALFORMED;
    *count = (uint32_t)be(c->p + 1, n);
    c->p += n + 1;
    return 0;
}

/* Skip one well-formed value at nesting `depth` (the frame array is 1). */
static int skip(cur *c, int depth)
{
    if (!avail(c))
        return E_MALFORMED;
    uint8_t b = *c->p;
    size_t n = 0, len = 0;
    uint64_t items = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        c->p++;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        len = b & 0x1f;
    } else if ((b >= 0x80 && b <= 0x9f) || b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
        bool map = (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
        uint32_t cnt;
        if (depth > SLUICE_PROTO_MAX_DEPTH)
            return E_MALFORMED;
        int rc = rd_container(c, map, &cnt);
        if (rc < 0)
            return rc;
        items = map ? (uint64_t)cnt * 2 : cnt;
        for (uint64_t i = 0; i < items; i++) {
            rc = skip(c, depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    } else {
        switch (b) {
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xce: case 0xd2: case 0xca: n = 4; break;
        case 0xcf: case 0xd3: case 0xcb: n = 8; break;
        case 0xd4: n = 2; break; /* fixext: type byte + data */
        case 0xd5: n = 3; break;
        case 0xd6: n = 5; break;
        case 0xd7: n = 9; break;
        case 0xd8: n = 17; break;
        case 0xc4: case 0xd9: case 0xc7: n = 0; len = 1; break;
        case 0xc5: case 0xda: case 0xc8: n = 0; len = 2; break;
        case 0xc6: case 0xdb: case 0xc9: n = 0; len = 4; break;
        default: return E_MALFORMED; /* 0xc1 */
        }
        if (n) {
            if (avail(c) < n + 1)
                return E_MALFORMED;
            c->p += n + 1;
            return 0;
        }
        /* variable length: len holds the size of the length field */
        size_t lf = len;
        bool ext = b == 0xc7 || b == 0xc8 || b == 0xc9;
        if (avail(c) < lf + 1)
            return E_MALFORMED;
        len = (size_t)be(c->p + 1, (int)lf) + (ext ? 1 : 0);
        c->p += lf;
    }
    c->p++;
    if (avail(c) < len)
        return E_MALFORMED;
    c->p += len;
    return 0;
}

static bool wellformed(const uint8_t *p, size_t len)
{
    cur c = {p, p + len};
    if (!avail(&c))
        return false;
    uint8_t b = *c.p;
    bool arr = (b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd;
    if (!arr)
        return false;
    return skip(&c, 1) == 0 && c.p == c.end;
}

typedef struct {
    cur c;
    uint32_t left; /* elements of the frame array not yet read */
    sluice_header *hdrs;
    uint32_t max_headers;
} parser;

/* Each field reader first checks that the element exists. */
#define NEED_FIELD(ps)                                                                             \
    do {                                                                                           \
        if ((ps)->left == 0)                                                                       \
            return E_TYPE;                                                                         \
        (ps)->left--;                                                                              \
    } while (0)

static int f_uint(parser *ps, uint64_t lo, uint64_t hi, uint64_t *v)
{
    NEED_FIELD(ps);
    return rd_uint_range(&ps->c, lo, hi, v);
}

static int f_raw(parser *ps, bool allow_bin, bool nonempty, sluice_bytes *b)
{
    NEED_FIELD(ps);
    int rc = rd_raw(&ps->c, allow_bin, b);
    if (rc == 0 && nonempty && b->len == 0)
        rc = E_VALUE;
    return rc;
}

static int rd_headers(parser *ps, sluice_headers *out)
{
    uint32_t n;
    int rc = rd_container(&ps->c, false, &n);
    if (rc < 0)
        return rc;
    if (n > ps->max_headers)
        return SLUICE_PROTO_E_TOO_MANY_HEADERS;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        rc = rd_container(&ps->c, false, &two);
        if (rc < 0)
            return rc;
        if (two != 2)
            return E_TYPE;
        sluice_header *h = &ps->hdrs[i];
        rc = rd_raw(&ps->c, true, &h->name);
        if (rc == 0 && h->name.len == 0)
            rc = E_VALUE;
        if (rc == 0)
            rc = rd_raw(&ps->c, true, &h->value);
        if (rc < 0)
            return rc;
    }
    out->items = ps->hdrs;
    out->count = n;
    return 0;
}

static int f_headers(parser *ps, sluice_headers *out)
{
    NEED_FIELD(ps);
    return rd_headers(ps, out);
}

static int f_addr(parser *ps, sluice_addr *a)
{
    NEED_FIELD(ps);
    uint32_t two;
    int rc = rd_container(&ps->c, false, &two);
    if (rc < 0)
        return rc;
    if (two != 2)
        return E_TYPE;
    rc = rd_raw(&ps->c, false, &a->host);
    uint64_t port = 0;
    if (rc == 0)
        rc = rd_uint_range(&ps->c, 0, 65535, &port);
    a->port = (uint32_t)port;
    return rc;
}

static bool key_is(const sluice_bytes *k, const char *s)
{
    size_t n = strlen(s);
    return k->len == n && memcmp(k->ptr, s, n) == 0;
}

static int parse_hello(parser *ps, sluice_hello *h)
{
    int rc = f_uint(ps, 0, SLUICE_PROTO_MAX_ID, &h->version);
    if (rc < 0)
        return rc;
    NEED_FIELD(ps);
    uint32_t n;
    rc = rd_container(&ps->c, true, &n);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        sluice_bytes key;
        cur save = ps->c;
        rc = rd_raw(&ps->c, false, &key);
        if (rc == E_TYPE) { /* non-text key: unknown, skip it and its value */
            ps->c = save;
            rc = skip(&ps->c, 3);
            if (rc == 0)
                rc = skip(&ps->c, 3);
            if (rc < 0)
                return rc;
            continue;
        }
        if (rc < 0)
            return rc;
        uint64_t v;
        cur *c = &ps->c;
        if (key_is(&key, "pid")) {
            rc = rd_uint(c, &h->pid);
            h->has |= SLUICE_HELLO_HAS_PID;
        } else if (key_is(&key, "lib")) {
            rc = rd_raw(c, false, &h->lib);
            h->has |= SLUICE_HELLO_HAS_LIB;
        } else if (key_is(&key, "max_streams")) {
            rc = rd_uint_range(c, 1, SLUICE_PROTO_MAX_STREAMS, &v);
            h->max_streams = (uint32_t)v;
            h->has |= SLUICE_HELLO_HAS_MAX_STREAMS;
        } else if (key_is(&key, "window")) {
            rc = rd_uint_range(c, 0, SLUICE_PROTO_MAX_WINDOW, &v);
            h->window = (uint32_t)v;
            h->has |= SLUICE_HELLO_HAS_WINDOW;
        } else if (key_is(&key, "max_frame")) {
            rc = rd_uint_range(c, SLUICE_PROTO_MIN_FRAME, SLUICE_PROTO_MAX_FRAME, &v);
            h->max_frame = (uint32_t)v;
            h->has |= SLUICE_HELLO_HAS_MAX_FRAME;
        } else if (key_is(&key, "token")) {
            rc = rd_raw(c, false, &h->token);
            h->has |= SLUICE_HELLO_HAS_TOKEN;
        } else if (key_is(&key, "worker_id")) {
            rc = rd_uint(c, &h->worker_id);
            h->has |= SLUICE_HELLO_HAS_WORKER_ID;
        } else if (key_is(&key, "pool")) {
            rc = rd_raw(c, false, &h->pool);
            h->has |= SLUICE_HELLO_HAS_POOL;
        } else if (key_is(&key, "server")) {
            rc = rd_raw(c, false, &h->server);
            h->has |= SLUICE_HELLO_HAS_SERVER;
        } else if (key_is(&key, "websocket")) {
            rc = rd_bool(c, &h->websocket);
            h->has |= SLUICE_HELLO_HAS_WEBSOCKET;
        } else {
            rc = skip(c, 3);
        }
        if (rc < 0)
            return rc;
    }
    if (!(h->has & SLUICE_HELLO_HAS_MAX_FRAME))
        h->max_frame = SLUICE_PROTO_DEFAULT_FRAME;
    return 0;
}

static int parse_code(parser *ps, sluice_frame *f, bool msg_required)
{
    int rc = f_uint(ps, 0, SLUICE_PROTO_MAX_ID, &f->u.code.code);
    if (rc < 0)
        return rc;
    if (ps->left || msg_required) {
        rc = f_raw(ps, false, false, &f->u.code.message);
        f->u.code.has_message = rc == 0;
    }
    return rc;
}

static bool is_link_frame(uint32_t t)
{
    return t == SLUICE_FRAME_HELLO || t == SLUICE_FRAME_PING || t == SLUICE_FRAME_PONG ||
           t == SLUICE_FRAME_DRAIN || t == SLUICE_FRAME_RETIRE || t == SLUICE_FRAME_ERROR;
}

static int parse(const uint8_t *payload, size_t len, sluice_frame *f, sluice_header *hdrs,
                 uint32_t max_headers)
{
    parser ps = {{payload, payload + len}, 0, hdrs, max_headers};
    uint32_t n;
    int rc = rd_container(&ps.c, false, &n);
    if (rc < 0 || n < 2)
        return E_MALFORMED;
    ps.left = n;
    memset(f, 0, sizeof *f);
    uint64_t type, sid;
    ps.left--;
    rc = rd_uint(&ps.c, &type);
    if (rc == E_MALFORMED)
        return rc;
    if (rc < 0 || type < 1 || type > SLUICE_FRAME_TYPE_MAX)
        return SLUICE_PROTO_E_UNKNOWN_TYPE;
    f->type = (uint32_t)type;
    ps.left--;
    rc = rd_uint(&ps.c, &sid);
    if (rc < 0)
        return rc;
    if (is_link_frame(f->type) ? sid != 0 : sid == 0)
        return E_VALUE;
    f->stream_id = sid;

    uint64_t v = 0;
    switch (f->type) {
    case SLUICE_FRAME_HELLO:
        rc = parse_hello(&ps, &f->u.hello);
        break;
    case SLUICE_FRAME_REQUEST: {
        sluice_request *r = &f->u.request;
        if ((rc = f_raw(&ps, true, true, &r->method)) || (rc = f_raw(&ps, true, true, &r->target)) ||
            (rc = f_uint(&ps, SLUICE_HTTP_10, SLUICE_HTTP_2, &v)))
            break;
        if (!sluice_http_version_ok(v)) { /* 12..19 are not HTTP versions */
            rc = E_VALUE;
            break;
        }
        r->version = (uint32_t)v;
        if ((rc = f_headers(&ps, &r->headers)) || (rc = f_addr(&ps, &r->client)) ||
            (rc = f_addr(&ps, &r->server)) || (rc = f_raw(&ps, false, false, &r->scheme)) ||
            (rc = f_uint(&ps, 0, SLUICE_BODY_WEBSOCKET, &v)))
            break;
        r->body = (uint32_t)v;
        break;
    }
    case SLUICE_FRAME_RESPONSE: {
        sluice_response *r = &f->u.response;
        if ((rc = f_uint(&ps, 101, 599, &v)))
            break;
        if (v < 200 && v != 101) { /* 101 is the only informational status */
            rc = E_VALUE;
            break;
        }
        r->status = (uint32_t)v;
        if ((rc = f_headers(&ps, &r->headers)) || (rc = f_uint(&ps, 0, SLUICE_BODY_FOLLOWS, &v)))
            break;
        r->body = (uint32_t)v;
        break;
    }
    case SLUICE_FRAME_BODY:
        rc = f_raw(&ps, true, false, &f->u.body);
        break;
    case SLUICE_FRAME_END:
        if (ps.left)
            rc = f_headers(&ps, &f->u.trailers);
        break;
    case SLUICE_FRAME_CREDIT:
        rc = f_uint(&ps, 1, SLUICE_PROTO_MAX_WINDOW, &f->u.credit);
        break;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
        rc = parse_code(&ps, f, false);
        break;
    case SLUICE_FRAME_ERROR:
        rc = parse_code(&ps, f, true);
        break;
    case SLUICE_FRAME_LIMIT:
        rc = f_uint(&ps, 0, SLUICE_PROTO_MAX_ID, &f->u.max_body);
        break;
    case SLUICE_FRAME_PING:
    case SLUICE_FRAME_PONG:
        rc = f_uint(&ps, 0, SLUICE_PROTO_MAX_ID, &f->u.opaque);
        break;
    case SLUICE_FRAME_DRAIN:
        rc = f_uint(&ps, 0, SLUICE_PROTO_MAX_ID, &f->u.timeout_ms);
        break;
    case SLUICE_FRAME_RETIRE:
        if (ps.left) {
            rc = f_raw(&ps, false, false, &f->u.retire.reason);
            f->u.retire.has_reason = rc == 0;
        }
        break;
    case SLUICE_FRAME_MESSAGE:
        if ((rc = f_uint(&ps, 0, SLUICE_PROTO_MAX_ID, &v)))
            break;
        if (!sluice_msg_flags_ok(v)) {
            rc = E_VALUE;
            break;
        }
        f->u.message.flags = (uint32_t)v;
        rc = f_raw(&ps, true, false, &f->u.message.data);
        break;
    case SLUICE_FRAME_CLOSE:
        if ((rc = f_uint(&ps, SLUICE_CLOSE_CODE_MIN, SLUICE_CLOSE_CODE_MAX, &f->u.close.code)))
            break;
        if (ps.left) {
            rc = f_raw(&ps, false, false, &f->u.close.reason);
            f->u.close.has_reason = rc == 0;
        }
        break;
    }
    if (rc < 0)
        return rc;
    /* Forward compatibility: later elements are skipped, but must be well-formed. */
    while (ps.left) {
        ps.left--;
        if ((rc = skip(&ps.c, 2)) < 0)
            return rc;
    }
    return ps.c.p == ps.c.end ? 0 : E_MALFORMED;
}

int sluice_proto_decode_payload(const uint8_t *payload, size_t len, sluice_frame *f,
                                sluice_header *headers, uint32_t max_headers)
{
    int rc = parse(payload, len, f, headers, max_headers);
    /* A malformed payload is reported as such even if a field error came first. */
    if (rc < 0 && rc != E_MALFORMED && !wellformed(payload, len))
        rc = E_MALFORMED;
    return rc;
}

/* ---- incremental decoder --------------------------------------------- */

struct sluice_proto_decoder {
    uint32_t max_frame, max_headers;
    uint8_t hdr[4];
    uint32_t hdr_have;
    uint32_t frame_len;
    uint8_t *buf; /* partial frame; grows up to frame_len <= max_frame */
    size_t buf_cap, buf_have;
    int failed;
    sluice_header *headers;
};

/* Above this, the partial-frame buffer is released after use, so an idle
 * link does not keep a large frame's memory. */
#define KEEP_BUF 65536

int sluice_proto_decoder_new(sluice_proto_decoder **out, uint32_t max_frame, uint32_t max_headers)
{
    if (max_frame < SLUICE_PROTO_MIN_FRAME || max_frame > SLUICE_PROTO_MAX_FRAME ||
        max_headers < 1 || max_headers > SLUICE_PROTO_MAX_HEADERS)
        return -EINVAL;
    sluice_proto_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->headers = calloc(max_headers, sizeof *d->headers);
    if (!d->headers) {
        free(d);
        return -ENOMEM;
    }
    d->max_frame = max_frame;
    d->max_headers = max_headers;
    *out = d;
    return 0;
}

void sluice_proto_decoder_free(sluice_proto_decoder *d)
{
    if (!d)
        return;
    free(d->buf);
    free(d->headers);
    free(d);
}

void sluice_proto_decoder_set_max_frame(sluice_proto_decoder *d, uint32_t max_frame)
{
    if (max_frame >= SLUICE_PROTO_MIN_FRAME && max_frame <= SLUICE_PROTO_MAX_FRAME)
        d->max_frame = max_frame;
}

int sluice_proto_decoder_finish(const sluice_proto_decoder *d)
{
    if (d->failed)
        return d->failed;
    return d->hdr_have == 0 ? 0 : SLUICE_PROTO_E_TRUNCATED;
}

static int fail(sluice_proto_decoder *d, int rc)
{
    d->failed = rc;
    return rc;
}

int sluice_proto_decoder_feed(sluice_proto_decoder *d, const uint8_t *data, size_t len,
                              size_t *consumed, sluice_frame *f)
{
    size_t pos = 0;
    *consumed = 0;
    if (d->failed)
        return d->failed;
    if (d->buf_have == 0 && d->buf && d->buf_cap > KEEP_BUF) {
        free(d->buf);
        d->buf = NULL;
        d->buf_cap = 0;
    }
    if (d->hdr_have < 4) {
        if (d->hdr_have == 0 && len >= 4) {
            memcpy(d->hdr, data, 4);
            d->hdr_have = 4;
            pos = 4;
        } else {
            while (d->hdr_have < 4 && pos < len)
                d->hdr[d->hdr_have++] = data[pos++];
            if (d->hdr_have < 4) {
                *consumed = pos;
                return 0;
            }
        }
        d->frame_len = (uint32_t)be(d->hdr, 4);
        if (d->frame_len == 0 || d->frame_len > d->max_frame) {
            *consumed = pos;
            return fail(d, SLUICE_PROTO_E_FRAME_SIZE);
        }
        d->buf_have = 0;
    }
    const uint8_t *payload;
    size_t rest = len - pos;
    if (d->buf_have == 0 && rest >= d->frame_len) {
        payload = data + pos; /* contiguous: decode in place, zero-copy */
        pos += d->frame_len;
    } else {
        if (d->buf_cap < d->frame_len) {
            uint8_t *nb = realloc(d->buf, d->frame_len);
            if (!nb)
                return -ENOMEM; /* not sticky: the caller may retry */
            d->buf = nb;
            d->buf_cap = d->frame_len;
        }
        size_t take = d->frame_len - d->buf_have;
        if (take > rest)
            take = rest;
        memcpy(d->buf + d->buf_have, data + pos, take);
        d->buf_have += take;
        pos += take;
        *consumed = pos;
        if (d->buf_have < d->frame_len)
            return 0;
        payload = d->buf;
    }
    *consumed = pos;
    uint32_t flen = d->frame_len;
    d->hdr_have = 0;
    d->buf_have = 0;
    int rc = sluice_proto_decode_payload(payload, flen, f, d->headers, d->max_headers);
    if (rc < 0)
        return fail(d, rc);
    return 1;
}
