/* Round-trip property tests over random frames of every type:
 *   - msgpack-c, an independent implementation, parses every encoded payload
 *     as one array of the expected shape (so our output is real MessagePack);
 *   - decode(encode(f)) re-encodes to the same bytes (canonical, lossless);
 *   - a long stream of frames fed in random splits decodes to the same frames. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_proto.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static uint64_t rnd_range(uint64_t lo, uint64_t hi) { return lo + rnd() % (hi - lo + 1); }

/* Integers spread over every encoding width. */
static uint64_t rnd_uint(uint64_t max)
{
    static const uint64_t caps[] = {127, 255, 65535, 0xffffffffull, SLUICE_PROTO_MAX_ID};
    uint64_t cap = caps[rnd() % 5];
    if (cap > max)
        cap = max;
    return rnd() % (cap + 1);
}

static uint8_t pool[1 << 18];

static sluice_bytes rnd_bytes(size_t max, bool nonempty)
{
    size_t sizes[] = {0, 1, 31, 32, 255, 256, 300, 65535, 65536, 70000};
    size_t n = sizes[rnd() % 10];
    if (rnd() % 2)
        n = rnd() % 40;
    if (n > max)
        n = max;
    if (nonempty && n == 0)
        n = 1;
    size_t off = rnd() % (sizeof pool - n);
    return (sluice_bytes){pool + off, n};
}

static sluice_header hbuf[64];

static sluice_headers rnd_headers(void)
{
    size_t n = rnd() % 4 == 0 ? rnd() % 40 : rnd() % 6;
    for (size_t i = 0; i < n; i++) {
        hbuf[i].name = rnd_bytes(40, true);
        hbuf[i].value = rnd_bytes(300, false);
    }
    return (sluice_headers){hbuf, n};
}

static sluice_addr rnd_addr(void)
{
    return (sluice_addr){rnd_bytes(45, false), (uint32_t)rnd_range(0, 65535)};
}

static void rnd_frame(sluice_frame *f)
{
    memset(f, 0, sizeof *f);
    f->type = (uint32_t)rnd_range(1, SLUICE_FRAME_TYPE_MAX);
    f->stream_id = rnd_uint(SLUICE_PROTO_MAX_ID - 1) + 1;
    switch (f->type) {
    case SLUICE_FRAME_HELLO: {
        f->stream_id = 0;
        sluice_hello *h = &f->u.hello;
        h->version = rnd_uint(1000);
        h->has = (uint32_t)(rnd() & 0x3ff);
        h->websocket = rnd() % 2;
        h->pid = rnd_uint(SLUICE_PROTO_MAX_ID);
        h->lib = rnd_bytes(100, false);
        h->max_streams = (uint32_t)rnd_range(1, SLUICE_PROTO_MAX_STREAMS);
        h->window = (uint32_t)rnd_uint(SLUICE_PROTO_MAX_WINDOW);
        h->max_frame = (uint32_t)rnd_range(SLUICE_PROTO_MIN_FRAME, SLUICE_PROTO_MAX_FRAME);
        h->token = rnd_bytes(100, false);
        h->worker_id = rnd_uint(SLUICE_PROTO_MAX_ID);
        h->pool = rnd_bytes(100, false);
        h->server = rnd_bytes(100, false);
        break;
    }
    case SLUICE_FRAME_REQUEST: {
        sluice_request *r = &f->u.request;
        r->method = rnd_bytes(20, true);
        r->target = rnd_bytes(2000, true);
        r->version = (const uint32_t[]){10, 11, 20}[rnd() % 3];
        r->headers = rnd_headers();
        r->client = rnd_addr();
        r->server = rnd_addr();
        r->scheme = rnd_bytes(8, false);
        r->body = (uint32_t)rnd_range(0, 3);
        break;
    }
    case SLUICE_FRAME_RESPONSE:
        f->u.response.status = rnd() % 8 ? (uint32_t)rnd_range(200, 599) : 101;
        f->u.response.headers = rnd_headers();
        f->u.response.body = (uint32_t)rnd_range(0, 1);
        break;
    case SLUICE_FRAME_BODY:
        f->u.body = rnd_bytes(100000, false);
        break;
    case SLUICE_FRAME_END:
        if (rnd() % 2)
            f->u.trailers = rnd_headers();
        break;
    case SLUICE_FRAME_CREDIT:
        f->u.credit = rnd_uint(SLUICE_PROTO_MAX_WINDOW - 1) + 1;
        break;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
    case SLUICE_FRAME_ERROR:
        if (f->type == SLUICE_FRAME_ERROR)
            f->stream_id = 0;
        f->u.code.code = rnd_uint(SLUICE_PROTO_MAX_ID);
        f->u.code.has_message = f->type == SLUICE_FRAME_ERROR || rnd() % 2;
        if (f->u.code.has_message)
            f->u.code.message = rnd_bytes(300, false);
        break;
    case SLUICE_FRAME_LIMIT:
        f->u.max_body = rnd_uint(SLUICE_PROTO_MAX_ID);
        break;
    case SLUICE_FRAME_PING:
    case SLUICE_FRAME_PONG:
        f->stream_id = 0;
        f->u.opaque = rnd_uint(SLUICE_PROTO_MAX_ID);
        break;
    case SLUICE_FRAME_DRAIN:
        f->stream_id = 0;
        f->u.timeout_ms = rnd_uint(SLUICE_PROTO_MAX_ID);
        break;
    case SLUICE_FRAME_RETIRE:
        f->stream_id = 0;
        f->u.retire.has_reason = rnd() % 2;
        if (f->u.retire.has_reason)
            f->u.retire.reason = rnd_bytes(300, false);
        break;
    case SLUICE_FRAME_MESSAGE:
        f->u.message.flags = (const uint32_t[]){0, 1, 2, 3, 4, 8}[rnd() % 6];
        f->u.message.data = rnd_bytes(100000, false);
        break;
    case SLUICE_FRAME_CLOSE:
        f->u.close.code = rnd_range(SLUICE_CLOSE_CODE_MIN, SLUICE_CLOSE_CODE_MAX);
        f->u.close.has_reason = rnd() % 2;
        if (f->u.close.has_reason)
            f->u.close.reason = rnd_bytes(123, false);
        break;
    }
}

/* Expected top-level array length for a frame as encoded canonically. */
static uint32_t expected_len(const sluice_frame *f)
{
    switch (f->type) {
    case SLUICE_FRAME_HELLO: return 4;
    case SLUICE_FRAME_REQUEST: return 10;
    case SLUICE_FRAME_RESPONSE: return 5;
    case SLUICE_FRAME_END: return f->u.trailers.count ? 3 : 2;
    case SLUICE_FRAME_CANCEL:
    case SLUICE_FRAME_RESET:
    case SLUICE_FRAME_ERROR:
        return f->type == SLUICE_FRAME_ERROR || (f->u.code.has_message && f->u.code.message.len) ? 4 : 3;
    case SLUICE_FRAME_RETIRE: return f->u.retire.has_reason && f->u.retire.reason.len ? 3 : 2;
    case SLUICE_FRAME_MESSAGE: return 4;
    case SLUICE_FRAME_CLOSE: return f->u.close.has_reason && f->u.close.reason.len ? 4 : 3;
    default: return 3;
    }
}

static void check_with_msgpack_c(const uint8_t *frame, size_t len, const sluice_frame *f)
{
    cr_assert_geq(len, 5);
    size_t plen = ((size_t)frame[0] << 24) | ((size_t)frame[1] << 16) | ((size_t)frame[2] << 8) | frame[3];
    cr_assert_eq(plen + 4, len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)frame + 4, plen, &off);
    cr_assert_eq(r, MSGPACK_UNPACK_SUCCESS, "msgpack-c rejects a %s frame", sluice_frame_type_name(f->type));
    cr_assert_eq(off, plen, "msgpack-c: trailing bytes after the array");
    msgpack_object o = u.data;
    cr_assert_eq(o.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(o.via.array.size, expected_len(f));
    cr_assert_eq(o.via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(o.via.array.ptr[0].via.u64, f->type);
    cr_assert_eq(o.via.array.ptr[1].via.u64, f->stream_id);
    if (f->type == SLUICE_FRAME_BODY) {
        cr_assert_eq(o.via.array.ptr[2].type, MSGPACK_OBJECT_BIN);
        cr_assert_eq(o.via.array.ptr[2].via.bin.size, f->u.body.len);
    }
    if (f->type == SLUICE_FRAME_REQUEST) {
        cr_assert_eq(o.via.array.ptr[2].type, MSGPACK_OBJECT_BIN, "method is bytes");
        cr_assert_eq(o.via.array.ptr[8].type, MSGPACK_OBJECT_STR, "scheme is text");
        cr_assert_eq(o.via.array.ptr[5].via.array.size, f->u.request.headers.count);
    }
    if (f->type == SLUICE_FRAME_MESSAGE) {
        cr_assert_eq(o.via.array.ptr[2].via.u64, f->u.message.flags);
        cr_assert_eq(o.via.array.ptr[3].type, MSGPACK_OBJECT_BIN);
        cr_assert_eq(o.via.array.ptr[3].via.bin.size, f->u.message.data.len);
    }
    if (f->type == SLUICE_FRAME_CLOSE) {
        cr_assert_eq(o.via.array.ptr[2].via.u64, f->u.close.code);
        if (expected_len(f) == 4)
            cr_assert_eq(o.via.array.ptr[3].type, MSGPACK_OBJECT_STR, "reason is text");
    }
    if (f->type == SLUICE_FRAME_HELLO) {
        /* websocket is written only when true (canonical form) */
        uint32_t has = f->u.hello.has;
        if (!f->u.hello.websocket)
            has &= ~(uint32_t)SLUICE_HELLO_HAS_WEBSOCKET;
        cr_assert_eq(o.via.array.ptr[3].type, MSGPACK_OBJECT_MAP);
        cr_assert_eq(o.via.array.ptr[3].via.map.size, (uint32_t)__builtin_popcount(has));
    }
    msgpack_unpacked_destroy(&u);
}

Test(roundtrip, random_frames)
{
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)rnd();
    sluice_buf a, b;
    sluice_buf_init(&a, 0);
    sluice_buf_init(&b, 0);
    sluice_header *scratch = calloc(SLUICE_PROTO_MAX_HEADERS, sizeof *scratch);
    int counts[SLUICE_FRAME_TYPE_MAX + 1] = {0};
    for (int iter = 0; iter < 20000; iter++) {
        sluice_frame f, g;
        rnd_frame(&f);
        sluice_buf_reset(&a);
        int rc = sluice_proto_encode(&a, &f, 0);
        cr_assert_eq(rc, 0, "encode %s: %s", sluice_frame_type_name(f.type), sluice_proto_strerror(rc));
        check_with_msgpack_c(a.data, a.len, &f);
        rc = sluice_proto_decode_payload(a.data + 4, a.len - 4, &g, scratch, SLUICE_PROTO_MAX_HEADERS);
        cr_assert_eq(rc, 0, "decode %s: %s", sluice_frame_type_name(f.type), sluice_proto_strerror(rc));
        cr_assert_eq(g.type, f.type);
        cr_assert_eq(g.stream_id, f.stream_id);
        sluice_buf_reset(&b);
        cr_assert_eq(sluice_proto_encode(&b, &g, 0), 0);
        cr_assert_eq(a.len, b.len, "%s re-encoded to a different length", sluice_frame_type_name(f.type));
        cr_assert_arr_eq(a.data, b.data, a.len);
        counts[f.type]++;
    }
    for (int t = 1; t <= SLUICE_FRAME_TYPE_MAX; t++)
        cr_assert_gt(counts[t], 100, "type %d under-sampled", t);
    free(scratch);
    sluice_buf_close(&a);
    sluice_buf_close(&b);
}

Test(roundtrip, stream_with_random_splits)
{
    sluice_buf all, again;
    sluice_buf_init(&all, 0);
    sluice_buf_init(&again, 0);
    enum { N = 400 };
    size_t ends[N];
    for (int i = 0; i < N; i++) {
        sluice_frame f;
        rnd_frame(&f);
        cr_assert_eq(sluice_proto_encode(&all, &f, 0), 0);
        ends[i] = all.len;
    }
    for (int round = 0; round < 20; round++) {
        sluice_proto_decoder *d;
        cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, SLUICE_PROTO_MAX_HEADERS), 0);
        size_t off = 0, start = 0;
        int got = 0;
        while (off < all.len) {
            /* splits from 1 byte to 64 KiB, biased small */
            size_t chunk = round == 0 ? 1 : (size_t)(rnd() % 4 ? rnd_range(1, 64) : rnd_range(1, 65536));
            if (chunk > all.len - off)
                chunk = all.len - off;
            size_t fed = 0;
            while (fed < chunk) {
                sluice_frame g;
                size_t used;
                int rc = sluice_proto_decoder_feed(d, all.data + off + fed, chunk - fed, &used, &g);
                cr_assert_geq(rc, 0, "frame %d: %s", got, sluice_proto_strerror(rc));
                fed += used;
                if (rc == 1) {
                    sluice_buf_reset(&again);
                    cr_assert_eq(sluice_proto_encode(&again, &g, 0), 0);
                    cr_assert_eq(again.len, ends[got] - start, "frame %d length", got);
                    cr_assert_arr_eq(again.data, all.data + start, again.len, "frame %d bytes", got);
                    start = ends[got++];
                }
            }
            off += chunk;
        }
        cr_assert_eq(got, N);
        cr_assert_eq(sluice_proto_decoder_finish(d), 0);
        sluice_proto_decoder_free(d);
    }
    sluice_buf_close(&all);
    sluice_buf_close(&again);
}

/* Every prefix of a valid frame stream is either decodable so far or, at the
 * end, reported as truncated: never an error or a crash. */
Test(roundtrip, every_truncation_point)
{
    sluice_buf all;
    sluice_buf_init(&all, 0);
    for (int i = 0; i < 30; i++) {
        sluice_frame f;
        do
            rnd_frame(&f);
        while (f.type == SLUICE_FRAME_BODY && f.u.body.len > 1000);
        cr_assert_eq(sluice_proto_encode(&all, &f, 0), 0);
    }
    for (size_t cut = 0; cut <= all.len; cut += 1 + cut / 50) {
        sluice_proto_decoder *d;
        cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, SLUICE_PROTO_MAX_HEADERS), 0);
        size_t off = 0;
        while (off < cut) {
            sluice_frame g;
            size_t used;
            int rc = sluice_proto_decoder_feed(d, all.data + off, cut - off, &used, &g);
            cr_assert_geq(rc, 0);
            off += used;
        }
        int fin = sluice_proto_decoder_finish(d);
        cr_assert(fin == 0 || fin == SLUICE_PROTO_E_TRUNCATED);
        sluice_proto_decoder_free(d);
    }
    sluice_buf_close(&all);
}
