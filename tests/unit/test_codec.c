/* Encoder and decoder units: exact bytes, every frame type, splits, limits,
 * malformed input, buffer bounds. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "sluice_proto.h"

#define B(s) ((sluice_bytes){(const uint8_t *)(s), sizeof(s) - 1})

static bool bytes_eq(sluice_bytes b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

/* Decode exactly one frame from a complete buffer. */
static int decode_one(const uint8_t *p, size_t n, sluice_frame *f, sluice_proto_decoder **dp)
{
    cr_assert_eq(sluice_proto_decoder_new(dp, SLUICE_PROTO_DEFAULT_FRAME, 64), 0);
    size_t used = 0;
    int rc = sluice_proto_decoder_feed(*dp, p, n, &used, f);
    if (rc == 1)
        cr_assert_eq(used, n, "decoder consumed %zu of %zu bytes", used, n);
    return rc;
}

Test(encode, credit_exact_bytes)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_credit(&b, 1, 5), 0);
    const uint8_t want[] = {0, 0, 0, 4, 0x93, 0x06, 0x01, 0x05};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    sluice_buf_close(&b);
}

Test(encode, canonical_integer_widths)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    /* stream id 300 -> uint16, increment 70000 -> uint32 */
    cr_assert_eq(sluice_proto_encode_credit(&b, 300, 70000), 0);
    const uint8_t want[] = {0, 0, 0, 10, 0x93, 0x06, 0xcd, 0x01, 0x2c, 0xce, 0x00, 0x01, 0x11, 0x70};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    sluice_buf_reset(&b);
    /* largest stream id -> uint64 */
    cr_assert_eq(sluice_proto_encode_end(&b, SLUICE_PROTO_MAX_ID, NULL, 0), 0);
    const uint8_t want2[] = {0, 0, 0, 11, 0x92, 0x05, 0xcf, 0, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(b.len, sizeof want2);
    cr_assert_arr_eq(b.data, want2, sizeof want2);
    sluice_buf_close(&b);
}

Test(encode, rejects_invalid_values)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_credit(&b, 0, 5), -EINVAL);
    cr_assert_eq(sluice_proto_encode_credit(&b, 1, 0), -EINVAL);
    cr_assert_eq(sluice_proto_encode_credit(&b, 1, (uint64_t)SLUICE_PROTO_MAX_WINDOW + 1), -EINVAL);
    cr_assert_eq(sluice_proto_encode_body(&b, SLUICE_PROTO_MAX_ID + 1, "x", 1), -EINVAL);
    sluice_response r = {.status = 199};
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), -EINVAL);
    r.status = 600;
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), -EINVAL);
    sluice_header empty_name = {B(""), B("v")};
    r = (sluice_response){.status = 200, .headers = {&empty_name, 1}};
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), -EINVAL);
    sluice_request q = {.method = B("GET"), .target = B(""), .version = 11, .scheme = B("http")};
    cr_assert_eq(sluice_proto_encode_request(&b, 1, &q, 0), -EINVAL);
    q.target = B("/");
    /* HTTP/2 is 20: the values between and around are no HTTP version */
    const uint32_t bad_versions[] = {0, 9, 12, 19, 21, 30};
    for (size_t i = 0; i < sizeof bad_versions / sizeof bad_versions[0]; i++) {
        q.version = bad_versions[i];
        cr_assert_eq(sluice_proto_encode_request(&b, 1, &q, 0), -EINVAL, "version %u", q.version);
    }
    sluice_hello h = {.version = 1, .has = SLUICE_HELLO_HAS_MAX_FRAME, .max_frame = 1000};
    cr_assert_eq(sluice_proto_encode_hello(&b, &h), -EINVAL);
    cr_assert_eq(b.len, 0, "a rejected frame must not leave bytes behind");
    sluice_buf_close(&b);
}

Test(encode, bounded_buffer_rolls_back)
{
    sluice_buf b;
    sluice_buf_init(&b, 64);
    cr_assert_eq(sluice_proto_encode_credit(&b, 1, 5), 0);
    size_t before = b.len;
    char big[100] = {0};
    cr_assert_eq(sluice_proto_encode_body(&b, 1, big, sizeof big), -ENOBUFS);
    cr_assert_eq(b.len, before);
    cr_assert_eq(sluice_proto_encode_cancel(&b, 1, 1, "a message long enough to overflow the sixty-four byte bound of this buffer"),
                 -ENOBUFS);
    cr_assert_eq(b.len, before);
    sluice_buf_close(&b);
}

Test(encode, frame_above_max_frame_is_emsgsize)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    static char val[20000];
    memset(val, 'a', sizeof val);
    sluice_header h = {B("x-big"), {(const uint8_t *)val, sizeof val}};
    sluice_response r = {.status = 200, .headers = {&h, 1}};
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, SLUICE_PROTO_MIN_FRAME), -EMSGSIZE);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), 0);
    sluice_buf_close(&b);
}

Test(codec, request_roundtrip)
{
    sluice_header hs[] = {{B("host"), B("example.com")}, {B("x-dup"), B("1")}, {B("x-dup"), B("")}};
    sluice_request q = {
        .method = B("POST"), .target = B("/up?x=1"), .version = 11, .headers = {hs, 3},
        .client = {B("::1"), 40000}, .server = {B("127.0.0.1"), 8080}, .scheme = B("https"),
        .body = SLUICE_BODY_ON_CREDIT,
    };
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_request(&b, 42, &q, 0), 0);
    sluice_frame f;
    sluice_proto_decoder *d;
    cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
    cr_assert_eq(f.type, SLUICE_FRAME_REQUEST);
    cr_assert_eq(f.stream_id, 42);
    sluice_request *r = &f.u.request;
    cr_assert(bytes_eq(r->method, "POST"));
    cr_assert(bytes_eq(r->target, "/up?x=1"));
    cr_assert_eq(r->version, 11);
    cr_assert_eq(r->headers.count, 3);
    cr_assert(bytes_eq(r->headers.items[0].name, "host"));
    cr_assert(bytes_eq(r->headers.items[2].name, "x-dup"));
    cr_assert(bytes_eq(r->headers.items[2].value, ""));
    cr_assert(bytes_eq(r->client.host, "::1"));
    cr_assert_eq(r->client.port, 40000);
    cr_assert_eq(r->server.port, 8080);
    cr_assert(bytes_eq(r->scheme, "https"));
    cr_assert_eq(r->body, SLUICE_BODY_ON_CREDIT);
    /* zero-copy: the views point into the input buffer */
    cr_assert(r->method.ptr >= b.data && r->method.ptr < b.data + b.len);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

Test(codec, request_http_versions)
{
    /* 10, 11 and 20 (HTTP/2) encode and decode unchanged */
    const uint32_t versions[] = {SLUICE_HTTP_10, SLUICE_HTTP_11, SLUICE_HTTP_2};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        sluice_request q = {.method = B("GET"), .target = B("/"), .version = versions[i], .scheme = B("https")};
        sluice_buf b;
        sluice_buf_init(&b, 0);
        cr_assert_eq(sluice_proto_encode_request(&b, 1, &q, 0), 0, "version %u", versions[i]);
        sluice_frame f;
        sluice_proto_decoder *d;
        cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
        cr_assert_eq(f.type, SLUICE_FRAME_REQUEST);
        cr_assert_eq(f.u.request.version, versions[i]);
        sluice_proto_decoder_free(d);
        sluice_buf_close(&b);
    }
    cr_assert(!sluice_http_version_ok(12) && !sluice_http_version_ok(21) && !sluice_http_version_ok(0));
}

Test(codec, hello_both_directions)
{
    sluice_hello w = {.version = 1,
                      .has = SLUICE_HELLO_HAS_PID | SLUICE_HELLO_HAS_LIB | SLUICE_HELLO_HAS_MAX_STREAMS |
                             SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_TOKEN,
                      .pid = 4242, .lib = B("sluice-c/0.1.0"), .max_streams = 8, .window = 65536,
                      .token = B("s3cret")};
    sluice_hello g = {.version = 1,
                      .has = SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_MAX_FRAME |
                             SLUICE_HELLO_HAS_WORKER_ID | SLUICE_HELLO_HAS_POOL | SLUICE_HELLO_HAS_SERVER,
                      .window = 262144, .max_frame = 65536, .worker_id = 3, .pool = B("default"),
                      .server = B("sluice/0.1.0")};
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_hello(&b, &w), 0);
    cr_assert_eq(sluice_proto_encode_hello(&b, &g), 0);
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    sluice_frame f;
    size_t used, off = 0;
    cr_assert_eq(sluice_proto_decoder_feed(d, b.data, b.len, &used, &f), 1);
    off += used;
    cr_assert_eq(f.type, SLUICE_FRAME_HELLO);
    cr_assert_eq(f.u.hello.has, w.has);
    cr_assert_eq(f.u.hello.pid, 4242);
    cr_assert(bytes_eq(f.u.hello.lib, "sluice-c/0.1.0"));
    cr_assert_eq(f.u.hello.max_streams, 8);
    cr_assert_eq(f.u.hello.window, 65536);
    cr_assert_eq(f.u.hello.max_frame, SLUICE_PROTO_DEFAULT_FRAME, "absent max_frame defaults");
    cr_assert(bytes_eq(f.u.hello.token, "s3cret"));
    cr_assert_eq(sluice_proto_decoder_feed(d, b.data + off, b.len - off, &used, &f), 1);
    cr_assert_eq(f.u.hello.has, g.has);
    cr_assert_eq(f.u.hello.max_frame, 65536);
    cr_assert_eq(f.u.hello.worker_id, 3);
    cr_assert(bytes_eq(f.u.hello.pool, "default"));
    cr_assert(bytes_eq(f.u.hello.server, "sluice/0.1.0"));
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

/* One of every other frame type, then decoded from a single buffer. */
Test(codec, every_small_frame_type)
{
    sluice_header tr[] = {{B("x-checksum"), B("abc")}};
    sluice_header rh[] = {{B("content-type"), B("text/plain")}};
    sluice_response resp = {.status = 404, .headers = {rh, 1}, .body = 1};
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_response(&b, 9, &resp, 0), 0);
    cr_assert_eq(sluice_proto_encode_body(&b, 9, "hello", 5), 0);
    cr_assert_eq(sluice_proto_encode_body(&b, 9, "", 0), 0);
    cr_assert_eq(sluice_proto_encode_end(&b, 9, tr, 1), 0);
    cr_assert_eq(sluice_proto_encode_end(&b, 9, NULL, 0), 0);
    cr_assert_eq(sluice_proto_encode_cancel(&b, 9, SLUICE_CANCEL_TIMEOUT, "too slow"), 0);
    cr_assert_eq(sluice_proto_encode_cancel(&b, 9, SLUICE_CANCEL_CLIENT_CLOSED, NULL), 0);
    cr_assert_eq(sluice_proto_encode_reset(&b, 9, SLUICE_RESET_REFUSED, NULL), 0);
    cr_assert_eq(sluice_proto_encode_limit(&b, 9, 1u << 30), 0);
    cr_assert_eq(sluice_proto_encode_ping(&b, 77), 0);
    cr_assert_eq(sluice_proto_encode_pong(&b, 77), 0);
    cr_assert_eq(sluice_proto_encode_drain(&b, 30000), 0);
    cr_assert_eq(sluice_proto_encode_retire(&b, "max_requests"), 0);
    cr_assert_eq(sluice_proto_encode_retire(&b, NULL), 0);
    cr_assert_eq(sluice_proto_encode_error(&b, SLUICE_PROTO_E_FLOW_CONTROL, NULL), 0);

    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    size_t off = 0, used;
    sluice_frame f;
#define NEXT(t)                                                                                    \
    do {                                                                                           \
        cr_assert_eq(sluice_proto_decoder_feed(d, b.data + off, b.len - off, &used, &f), 1);        \
        off += used;                                                                               \
        cr_assert_eq(f.type, (t), "got %s", sluice_frame_type_name(f.type));                       \
    } while (0)
    NEXT(SLUICE_FRAME_RESPONSE);
    cr_assert_eq(f.u.response.status, 404);
    cr_assert(bytes_eq(f.u.response.headers.items[0].value, "text/plain"));
    cr_assert_eq(f.u.response.body, 1);
    NEXT(SLUICE_FRAME_BODY);
    cr_assert(bytes_eq(f.u.body, "hello"));
    NEXT(SLUICE_FRAME_BODY);
    cr_assert_eq(f.u.body.len, 0);
    NEXT(SLUICE_FRAME_END);
    cr_assert_eq(f.u.trailers.count, 1);
    cr_assert(bytes_eq(f.u.trailers.items[0].name, "x-checksum"));
    NEXT(SLUICE_FRAME_END);
    cr_assert_eq(f.u.trailers.count, 0);
    NEXT(SLUICE_FRAME_CANCEL);
    cr_assert_eq(f.u.code.code, SLUICE_CANCEL_TIMEOUT);
    cr_assert(f.u.code.has_message);
    cr_assert(bytes_eq(f.u.code.message, "too slow"));
    NEXT(SLUICE_FRAME_CANCEL);
    cr_assert_not(f.u.code.has_message);
    NEXT(SLUICE_FRAME_RESET);
    cr_assert_eq(f.u.code.code, SLUICE_RESET_REFUSED);
    NEXT(SLUICE_FRAME_LIMIT);
    cr_assert_eq(f.u.max_body, 1u << 30);
    NEXT(SLUICE_FRAME_PING);
    cr_assert_eq(f.u.opaque, 77);
    NEXT(SLUICE_FRAME_PONG);
    NEXT(SLUICE_FRAME_DRAIN);
    cr_assert_eq(f.u.timeout_ms, 30000);
    NEXT(SLUICE_FRAME_RETIRE);
    cr_assert(f.u.retire.has_reason);
    cr_assert(bytes_eq(f.u.retire.reason, "max_requests"));
    NEXT(SLUICE_FRAME_RETIRE);
    cr_assert_not(f.u.retire.has_reason);
    NEXT(SLUICE_FRAME_ERROR);
    cr_assert_eq(f.u.code.code, 9);
    cr_assert(bytes_eq(f.u.code.message, "flow_control"));
    cr_assert_eq(off, b.len);
    cr_assert_eq(sluice_proto_decoder_finish(d), 0);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

Test(codec, body_sizes_bin8_bin16_bin32_and_zero_copy_head)
{
    static uint8_t data[70000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31);
    size_t sizes[] = {0, 1, 255, 256, 65535, 65536, 70000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        sluice_buf b, h;
        sluice_buf_init(&b, 0);
        sluice_buf_init(&h, 0);
        cr_assert_eq(sluice_proto_encode_body(&b, 1000, data, sizes[k]), 0);
        /* the zero-copy head is exactly the copied frame's prefix */
        cr_assert_eq(sluice_proto_encode_body_head(&h, 1000, sizes[k]), 0);
        cr_assert_leq(h.len, SLUICE_PROTO_BODY_HEAD_MAX);
        cr_assert_eq(h.len + sizes[k], b.len);
        cr_assert_arr_eq(h.data, b.data, h.len);
        sluice_frame f;
        sluice_proto_decoder *d;
        cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
        cr_assert_eq(f.u.body.len, sizes[k]);
        if (sizes[k])
            cr_assert_arr_eq(f.u.body.ptr, data, sizes[k]);
        sluice_proto_decoder_free(d);
        sluice_buf_close(&b);
        sluice_buf_close(&h);
    }
}

Test(decoder, byte_by_byte_matches_whole)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    sluice_header hs[] = {{B("a"), B("1")}, {B("b"), B("2")}};
    sluice_response r = {.status = 200, .headers = {hs, 2}, .body = 1};
    cr_assert_eq(sluice_proto_encode_response(&b, 5, &r, 0), 0);
    cr_assert_eq(sluice_proto_encode_body(&b, 5, "0123456789", 10), 0);
    cr_assert_eq(sluice_proto_encode_end(&b, 5, hs, 2), 0);
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    int frames = 0;
    for (size_t i = 0; i < b.len; i++) {
        sluice_frame f;
        size_t used;
        int rc = sluice_proto_decoder_feed(d, b.data + i, 1, &used, &f);
        cr_assert_geq(rc, 0);
        cr_assert_eq(used, 1);
        if (rc == 1) {
            frames++;
            if (frames == 1) {
                cr_assert_eq(f.u.response.headers.count, 2);
                cr_assert(bytes_eq(f.u.response.headers.items[1].value, "2"));
            } else if (frames == 2) {
                cr_assert(bytes_eq(f.u.body, "0123456789"));
            } else {
                cr_assert_eq(f.type, SLUICE_FRAME_END);
                cr_assert_eq(f.u.trailers.count, 2);
            }
        } else if (i + 1 < b.len) {
            cr_assert_neq(sluice_proto_decoder_finish(d), 0, "mid-frame must be truncated");
        }
    }
    cr_assert_eq(frames, 3);
    cr_assert_eq(sluice_proto_decoder_finish(d), 0);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

static int feed_all(const uint8_t *p, size_t n, uint32_t max_frame, int *frames)
{
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, max_frame, 8), 0);
    size_t off = 0;
    int rc = 0;
    *frames = 0;
    while (off < n) {
        sluice_frame f;
        size_t used;
        rc = sluice_proto_decoder_feed(d, p + off, n - off, &used, &f);
        off += used;
        if (rc < 0)
            break;
        if (rc == 1)
            (*frames)++;
        rc = 0;
    }
    if (rc == 0)
        rc = sluice_proto_decoder_finish(d);
    sluice_proto_decoder_free(d);
    return rc;
}

Test(decoder, frame_size_checked_before_payload)
{
    int frames;
    const uint8_t zero[] = {0, 0, 0, 0};
    cr_assert_eq(feed_all(zero, sizeof zero, SLUICE_PROTO_MIN_FRAME, &frames), SLUICE_PROTO_E_FRAME_SIZE);
    /* 16385 declared with a 16384 limit: rejected with only the 4 length bytes seen */
    const uint8_t big[] = {0, 0, 0x40, 0x01};
    cr_assert_eq(feed_all(big, sizeof big, SLUICE_PROTO_MIN_FRAME, &frames), SLUICE_PROTO_E_FRAME_SIZE);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x93};
    cr_assert_eq(feed_all(huge, sizeof huge, SLUICE_PROTO_MAX_FRAME, &frames), SLUICE_PROTO_E_FRAME_SIZE);
}

Test(decoder, malformed_payloads)
{
    int frames;
    struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
        int err;
    } cases[] = {
        {"0xc1 byte", {0, 0, 0, 4, 0x93, 0x06, 0x01, 0xc1}, 8, SLUICE_PROTO_E_MALFORMED},
        {"trailing byte", {0, 0, 0, 5, 0x93, 0x06, 0x01, 0x05, 0x00}, 9, SLUICE_PROTO_E_MALFORMED},
        {"not an array", {0, 0, 0, 1, 0x06}, 5, SLUICE_PROTO_E_MALFORMED},
        {"one element", {0, 0, 0, 2, 0x91, 0x06}, 6, SLUICE_PROTO_E_MALFORMED},
        {"cut short", {0, 0, 0, 3, 0x93, 0x06, 0x01}, 7, SLUICE_PROTO_E_MALFORMED},
        {"bin length past end", {0, 0, 0, 5, 0x93, 0x04, 0x01, 0xc4, 0x09}, 9, SLUICE_PROTO_E_MALFORMED},
        {"unknown type 17", {0, 0, 0, 4, 0x93, 0x11, 0x01, 0x05}, 8, SLUICE_PROTO_E_UNKNOWN_TYPE},
        {"type 0", {0, 0, 0, 4, 0x93, 0x00, 0x01, 0x05}, 8, SLUICE_PROTO_E_UNKNOWN_TYPE},
        {"type as str", {0, 0, 0, 5, 0x93, 0xa1, 'C', 0x01, 0x05}, 9, SLUICE_PROTO_E_UNKNOWN_TYPE},
        {"stream 0 on CREDIT", {0, 0, 0, 4, 0x93, 0x06, 0x00, 0x05}, 8, SLUICE_PROTO_E_FIELD_VALUE},
        {"stream 1 on PING", {0, 0, 0, 4, 0x93, 0x0a, 0x01, 0x05}, 8, SLUICE_PROTO_E_FIELD_VALUE},
        {"CREDIT 0", {0, 0, 0, 4, 0x93, 0x06, 0x01, 0x00}, 8, SLUICE_PROTO_E_FIELD_VALUE},
        {"CREDIT nil", {0, 0, 0, 4, 0x93, 0x06, 0x01, 0xc0}, 8, SLUICE_PROTO_E_FIELD_TYPE},
        {"CREDIT negative", {0, 0, 0, 4, 0x93, 0x06, 0x01, 0xff}, 8, SLUICE_PROTO_E_FIELD_VALUE},
        {"CREDIT missing", {0, 0, 0, 3, 0x92, 0x06, 0x01}, 7, SLUICE_PROTO_E_FIELD_TYPE},
        {"truncated length", {0, 0, 0}, 3, SLUICE_PROTO_E_TRUNCATED},
        {"truncated payload", {0, 0, 0, 4, 0x93, 0x06}, 6, SLUICE_PROTO_E_TRUNCATED},
        /* field error first, but the payload is malformed later: malformed wins */
        {"precedence", {0, 0, 0, 5, 0x94, 0x06, 0x01, 0xc0, 0xc1}, 9, SLUICE_PROTO_E_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = feed_all(cases[i].bytes, cases[i].len, SLUICE_PROTO_DEFAULT_FRAME, &frames);
        cr_expect_eq(rc, cases[i].err, "%s: got %s, want %s", cases[i].what, sluice_proto_strerror(rc),
                     sluice_proto_strerror(cases[i].err));
        cr_expect_eq(frames, 0, "%s", cases[i].what);
    }
}

Test(decoder, nesting_depth_limit)
{
    /* [6, 1, 5, <extra element nested n deep>] : depth 8 ok, 9 malformed */
    for (int depth = 7; depth <= 9; depth++) {
        uint8_t buf[64] = {0, 0, 0, 0, 0x94, 0x06, 0x01, 0x05};
        size_t n = 8;
        for (int i = 2; i <= depth; i++) /* element depth 2 .. depth: arrays of one */
            buf[n++] = 0x91;
        buf[n++] = 0x00;
        buf[3] = (uint8_t)(n - 4);
        int frames;
        int rc = feed_all(buf, n, SLUICE_PROTO_DEFAULT_FRAME, &frames);
        if (depth <= SLUICE_PROTO_MAX_DEPTH)
            cr_assert_eq(rc, 0, "depth %d: %s", depth, sluice_proto_strerror(rc));
        else
            cr_assert_eq(rc, SLUICE_PROTO_E_MALFORMED, "depth %d", depth);
    }
}

Test(decoder, too_many_headers)
{
    sluice_header hs[9];
    for (int i = 0; i < 9; i++)
        hs[i] = (sluice_header){B("x"), B("y")};
    sluice_response r = {.status = 200, .headers = {hs, 9}};
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), 0);
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    sluice_frame f;
    size_t used;
    cr_assert_eq(sluice_proto_decoder_feed(d, b.data, b.len, &used, &f), SLUICE_PROTO_E_TOO_MANY_HEADERS);
    /* the failure is sticky */
    cr_assert_eq(sluice_proto_decoder_feed(d, b.data, b.len, &used, &f), SLUICE_PROTO_E_TOO_MANY_HEADERS);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

Test(decoder, tolerant_of_non_canonical_forms)
{
    /* [6, 1(uint32), 5(int8), nil, 1.5, ext] : extra elements skipped */
    const uint8_t in[] = {0, 0, 0, 20, 0x96, 0x06, 0xce, 0, 0, 0, 1, 0xd0, 0x05, 0xc0,
                          0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xd4};
    /* the fixext 1 needs its type and data byte */
    uint8_t buf[32];
    memcpy(buf, in, sizeof in);
    buf[sizeof in] = 0x01;
    buf[sizeof in + 1] = 0x02;
    buf[3] = (uint8_t)(sizeof in + 2 - 4);
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    sluice_frame f;
    size_t used;
    cr_assert_eq(sluice_proto_decoder_feed(d, buf, sizeof in + 2, &used, &f), 1);
    cr_assert_eq(f.type, SLUICE_FRAME_CREDIT);
    cr_assert_eq(f.stream_id, 1);
    cr_assert_eq(f.u.credit, 5);
    sluice_proto_decoder_free(d);
}

Test(decoder, str_accepted_for_bytes_but_not_bin_for_text)
{
    /* BODY data as fixstr: accepted */
    const uint8_t body_str[] = {0, 0, 0, 6, 0x93, 0x04, 0x01, 0xa2, 'h', 'i'};
    int frames;
    cr_assert_eq(feed_all(body_str, sizeof body_str, SLUICE_PROTO_DEFAULT_FRAME, &frames), 0);
    cr_assert_eq(frames, 1);
    /* RETIRE reason (text) as bin: field_type */
    const uint8_t retire_bin[] = {0, 0, 0, 6, 0x93, 0x0d, 0x00, 0xc4, 0x01, 'x'};
    cr_assert_eq(feed_all(retire_bin, sizeof retire_bin, SLUICE_PROTO_DEFAULT_FRAME, &frames),
                 SLUICE_PROTO_E_FIELD_TYPE);
}

Test(decoder, partial_buffer_bounded_and_released)
{
    /* A frame split across feeds is buffered; views then point into the
     * decoder's copy, which must be a faithful copy. */
    static uint8_t data[200000];
    memset(data, 'z', sizeof data);
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_body(&b, 3, data, sizeof data), 0);
    sluice_proto_decoder *d;
    cr_assert_eq(sluice_proto_decoder_new(&d, SLUICE_PROTO_DEFAULT_FRAME, 8), 0);
    size_t off = 0, used;
    sluice_frame f;
    int rc = 0;
    while (off < b.len) {
        size_t chunk = b.len - off < 7919 ? b.len - off : 7919;
        rc = sluice_proto_decoder_feed(d, b.data + off, chunk, &used, &f);
        cr_assert_geq(rc, 0);
        off += used;
    }
    cr_assert_eq(rc, 1);
    cr_assert_eq(f.u.body.len, sizeof data);
    cr_assert(f.u.body.ptr < b.data || f.u.body.ptr >= b.data + b.len);
    cr_assert_arr_eq(f.u.body.ptr, data, sizeof data);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
}

Test(errors, names_and_codes)
{
    cr_assert_str_eq(sluice_proto_err_name(SLUICE_PROTO_E_FLOW_CONTROL), "flow_control");
    cr_assert_eq(sluice_proto_err_code(SLUICE_PROTO_E_FLOW_CONTROL), 9);
    cr_assert_eq(sluice_proto_err_from_code(9), SLUICE_PROTO_E_FLOW_CONTROL);
    cr_assert_eq(sluice_proto_err_code(-ENOMEM), 14);
    cr_assert_null(sluice_proto_err_name(-ENOMEM));
    cr_assert_str_eq(sluice_proto_strerror(SLUICE_PROTO_E_TIMEOUT), "timeout");
    cr_assert_str_eq(sluice_cancel_reason_name(4), "body_too_large");
    cr_assert_str_eq(sluice_cancel_reason_name(99), "internal");
    cr_assert_str_eq(sluice_reset_code_name(2), "refused");
    cr_assert_str_eq(sluice_frame_type_name(SLUICE_FRAME_LIMIT), "LIMIT");
    cr_assert_str_eq(sluice_frame_type_name(0), "?");
}

/* ---- WebSocket frames (PROTOCOL.md 3.14, 3.15) ------------------------ */

Test(encode, websocket_frames_exact_bytes)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    cr_assert_eq(sluice_proto_encode_message(&b, 1, SLUICE_MSG_TEXT, "hi", 2), 0);
    const uint8_t want[] = {0, 0, 0, 8, 0x94, 0x0f, 0x01, 0x01, 0xc4, 0x02, 'h', 'i'};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    sluice_buf_reset(&b);
    /* CLOSE: reason NULL and "" are both "no reason" */
    const uint8_t want_close[] = {0, 0, 0, 6, 0x93, 0x10, 0x01, 0xcd, 0x03, 0xe8};
    cr_assert_eq(sluice_proto_encode_close(&b, 1, 1000, NULL), 0);
    cr_assert_eq(sluice_proto_encode_close(&b, 1, 1000, ""), 0);
    cr_assert_eq(b.len, 2 * sizeof want_close);
    cr_assert_arr_eq(b.data, want_close, sizeof want_close);
    cr_assert_arr_eq(b.data + sizeof want_close, want_close, sizeof want_close);
    sluice_buf_reset(&b);
    cr_assert_eq(sluice_proto_encode_close(&b, 2, 4999, "bye"), 0);
    const uint8_t want_reason[] = {0, 0, 0, 10, 0x94, 0x10, 0x02, 0xcd, 0x13, 0x87, 0xa3, 'b', 'y', 'e'};
    cr_assert_eq(b.len, sizeof want_reason);
    cr_assert_arr_eq(b.data, want_reason, sizeof want_reason);
    sluice_buf_close(&b);
}

Test(encode, websocket_argument_errors)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    const uint32_t bad_flags[] = {5, 6, 7, 9, 16, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
        cr_assert_eq(sluice_proto_encode_message(&b, 1, bad_flags[i], "x", 1), -EINVAL, "flags %u",
                     bad_flags[i]);
        cr_assert_eq(sluice_proto_encode_message_head(&b, 1, bad_flags[i], 1), -EINVAL);
    }
    cr_assert_eq(sluice_proto_encode_message(&b, 0, 0, "x", 1), -EINVAL);
    cr_assert_eq(sluice_proto_encode_message(&b, SLUICE_PROTO_MAX_ID + 1, 0, "x", 1), -EINVAL);
    cr_assert_eq(sluice_proto_encode_message(&b, 1, 0, NULL, 1), -EINVAL);
    cr_assert_eq(sluice_proto_encode_message_head(&b, 1, 0, SLUICE_PROTO_MESSAGE_MAX(SLUICE_PROTO_MAX_FRAME) + 1),
                 -EINVAL);
    cr_assert_eq(sluice_proto_encode_close(&b, 1, 999, NULL), -EINVAL);
    cr_assert_eq(sluice_proto_encode_close(&b, 1, 5000, "x"), -EINVAL);
    cr_assert_eq(sluice_proto_encode_close(&b, 0, 1000, NULL), -EINVAL);
    sluice_response r = {.status = 100};
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), -EINVAL);
    r.status = 102;
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), -EINVAL);
    sluice_request q = {.method = B("GET"), .target = B("/"), .version = 11, .scheme = B("http"), .body = 4};
    cr_assert_eq(sluice_proto_encode_request(&b, 1, &q, 0), -EINVAL);
    cr_assert_eq(b.len, 0, "a rejected frame must not leave bytes behind");
    /* the empty data of a null pointer is fine */
    cr_assert_eq(sluice_proto_encode_message(&b, 1, SLUICE_MSG_PING, NULL, 0), 0);
    r.status = 101;
    cr_assert_eq(sluice_proto_encode_response(&b, 1, &r, 0), 0);
    q.body = SLUICE_BODY_WEBSOCKET;
    cr_assert_eq(sluice_proto_encode_request(&b, 1, &q, 0), 0);
    sluice_buf_close(&b);
}

Test(codec, message_sizes_and_zero_copy_head)
{
    static uint8_t data[70000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7);
    size_t sizes[] = {0, 1, 255, 256, 65535, 65536, 70000};
    const uint32_t flags[] = {0, 1, 2, 3, 4, 8};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t fl = flags[k % 6];
        sluice_buf b, h;
        sluice_buf_init(&b, 0);
        sluice_buf_init(&h, 0);
        cr_assert_eq(sluice_proto_encode_message(&b, SLUICE_PROTO_MAX_ID, fl, data, sizes[k]), 0);
        cr_assert_eq(sluice_proto_encode_message_head(&h, SLUICE_PROTO_MAX_ID, fl, sizes[k]), 0);
        cr_assert_leq(h.len, SLUICE_PROTO_MESSAGE_HEAD_MAX);
        cr_assert_eq(h.len + sizes[k], b.len);
        cr_assert_arr_eq(h.data, b.data, h.len);
        sluice_frame f;
        sluice_proto_decoder *d;
        cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
        cr_assert_eq(f.type, SLUICE_FRAME_MESSAGE);
        cr_assert_eq(f.stream_id, SLUICE_PROTO_MAX_ID);
        cr_assert_eq(f.u.message.flags, fl);
        cr_assert_eq(f.u.message.data.len, sizes[k]);
        if (sizes[k])
            cr_assert_arr_eq(f.u.message.data.ptr, data, sizes[k]);
        /* and the generic encoder gives the same bytes */
        sluice_buf g;
        sluice_buf_init(&g, 0);
        cr_assert_eq(sluice_proto_encode(&g, &f, 0), 0);
        cr_assert_eq(g.len, b.len);
        cr_assert_arr_eq(g.data, b.data, b.len);
        sluice_buf_close(&g);
        sluice_proto_decoder_free(d);
        sluice_buf_close(&b);
        sluice_buf_close(&h);
    }
}

Test(codec, hello_websocket_only_when_true)
{
    sluice_buf b;
    sluice_buf_init(&b, 0);
    sluice_hello h = {.version = 1, .has = SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_WEBSOCKET, .window = 1};
    cr_assert_eq(sluice_proto_encode_hello(&b, &h), 0);
    size_t without = b.len;
    sluice_frame f;
    sluice_proto_decoder *d;
    cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
    cr_assert_eq(f.u.hello.has & SLUICE_HELLO_HAS_WEBSOCKET, 0u, "websocket: false is not written");
    sluice_proto_decoder_free(d);
    sluice_buf_reset(&b);
    h.websocket = true;
    cr_assert_eq(sluice_proto_encode_hello(&b, &h), 0);
    cr_assert_eq(b.len, without + 11, "\"websocket\" (10 bytes) + true (1 byte)");
    cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
    cr_assert(f.u.hello.has & SLUICE_HELLO_HAS_WEBSOCKET);
    cr_assert(f.u.hello.websocket);
    sluice_proto_decoder_free(d);
    sluice_buf_close(&b);
    cr_assert_str_eq(sluice_frame_type_name(SLUICE_FRAME_MESSAGE), "MESSAGE");
    cr_assert_str_eq(sluice_frame_type_name(SLUICE_FRAME_CLOSE), "CLOSE");
    cr_assert_str_eq(sluice_frame_type_name(17), "?");
}
