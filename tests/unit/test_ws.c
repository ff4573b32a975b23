/* server/ws: the RFC 6455 codec. Every parser rule of RFC 6455 section 5
 * (as ws.h states them), splits of the input at every position and credit
 * caps (byte-by-byte feeding must equal one-shot feeding), the Autobahn
 * section 6 UTF-8 cases split at every position, the encoders and the
 * handshake helpers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 section 5.7 */

/* ---- helpers ------------------------------------------------------------ */

/* One frame into out: masked with KEY when `masked`. Returns its size. */
static size_t frame(uint8_t *out, int op, bool fin, const void *payload, size_t len, bool masked)
{
    size_t n = ws_frame_head(out, op, fin, len, masked ? KEY : NULL);
    if (len)
        memcpy(out + n, payload, len);
    if (masked)
        ws_mask(out + n, len, KEY, 0);
    return n + len;
}

/* Raw frame from a head byte, a length byte (with its mask bit set by
 * `masked`) and extended length bytes, then the payload. */
static size_t raw(uint8_t *out, uint8_t b0, uint8_t len7, const uint8_t *ext, size_t ext_len,
                  const void *payload, size_t len, bool masked)
{
    size_t n = 0;
    out[n++] = b0;
    out[n++] = (uint8_t)(len7 | (masked ? 0x80 : 0));
    if (ext_len)
        memcpy(out + n, ext, ext_len);
    n += ext_len;
    if (masked) {
        memcpy(out + n, KEY, 4);
        n += 4;
    }
    if (len)
        memcpy(out + n, payload, len);
    if (masked)
        ws_mask(out + n, len, KEY, 0);
    return n + len;
}

typedef struct {
    char log[65536];   /* normalised events: independent of how input was split */
    size_t log_len;
    char msg[32768];   /* hex of the message being gathered */
    size_t msg_len;
    uint8_t raw[16384]; /* and its bytes */
    size_t raw_len;
    bool in_msg, text;
    int rc;            /* 0, or the parser's error */
    size_t events, data_events;
    size_t data_bytes; /* payload bytes handed out */
} run_log;

static void logf_(run_log *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(run_log *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->log + r->log_len, sizeof r->log - r->log_len, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof r->log - r->log_len, "log overflow");
    r->log_len += (size_t)n;
}

static void hex(char *out, size_t cap, size_t *at, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert(*at + 3 <= cap, "hex overflow");
        *at += (size_t)snprintf(out + *at, cap - *at, "%02x", d[i]);
    }
}

/* Check one event against what came before, and log it. */
static void record(run_log *r, ws_parser *p, const ws_event *ev, const uint8_t *chunk, size_t chunk_len,
                   size_t max_data)
{
    r->events++;
    if (ev->type == WS_EV_DATA) {
        r->data_events++;
        cr_assert_leq(ev->len, max_data, "a piece above max_data");
        cr_assert(ev->data >= chunk && ev->data + ev->len <= chunk + chunk_len, "piece outside the input");
        cr_assert_eq(ev->first, !r->in_msg, "first=%d but a message %s in progress", ev->first,
                     r->in_msg ? "is" : "is not");
        if (ev->first)
            r->text = ev->text;
        cr_assert_eq(ev->text, r->text, "text flag changed within a message");
        cr_assert(ev->len > 0 || ev->fin, "an empty piece that is not a message's end");
        hex(r->msg, sizeof r->msg, &r->msg_len, ev->data, ev->len);
        cr_assert_leq(ev->len, sizeof r->raw - r->raw_len);
        memcpy(r->raw + r->raw_len, ev->data, ev->len);
        r->raw_len += ev->len;
        r->data_bytes += ev->len;
        r->in_msg = !ev->fin;
        cr_assert_eq(ws_parser_in_message(p), r->in_msg);
        if (ev->fin) {
            if (ev->text)
                cr_assert_eq(ws_utf8_step(0, r->raw, r->raw_len), 0, "a text message that is not UTF-8");
            logf_(r, "%s(%.*s) ", ev->text ? "T" : "B", (int)r->msg_len, r->msg);
            r->msg_len = 0;
            r->raw_len = 0;
        }
        return;
    }
    char h[2 * WS_CONTROL_MAX + 1];
    size_t hl = 0;
    cr_assert_leq(ev->len, WS_CONTROL_MAX);
    hex(h, sizeof h, &hl, ev->data, ev->len);
    if (ev->type == WS_EV_PING)
        logf_(r, "ping(%.*s) ", (int)hl, h);
    else if (ev->type == WS_EV_PONG)
        logf_(r, "pong(%.*s) ", (int)hl, h);
    else if (ev->type == WS_EV_CLOSE)
        logf_(r, "close(%u,%.*s) ", ev->code, (int)hl, h);
    else
        cr_assert_fail("unknown event type %d", ev->type);
}

/* Parse `in` fed in chunks of `split` bytes (0: all at once), each call
 * capped at max_data (>= 1). */
static void run(run_log *r, bool server, uint64_t max_message, const uint8_t *in, size_t len, size_t split,
                size_t max_data)
{
    memset(r, 0, sizeof *r);
    uint8_t *buf = malloc(len ? len : 1);
    cr_assert_not_null(buf);
    memcpy(buf, in, len);
    ws_parser *p;
    cr_assert_eq(ws_parser_new(&p, server, max_message), 0);
    size_t off = 0;
    while (off < len && r->rc == 0) {
        size_t n = split && split < len - off ? split : len - off;
        uint8_t *chunk = buf + off;
        size_t pos = 0;
        for (int guard = 0; pos < n; guard++) {
            cr_assert_lt(guard, 1000000, "no progress");
            ws_event ev;
            size_t used = 99999;
            int rc = ws_parser_feed(p, chunk + pos, n - pos, max_data, &used, &ev);
            cr_assert_leq(used, n - pos);
            pos += used;
            if (rc < 0) {
                r->rc = rc;
                logf_(r, "E%d", -rc);
                break;
            }
            if (rc == 1)
                record(r, p, &ev, chunk, n, max_data);
            else
                cr_assert_eq(pos, n, "returned 0 with input left and max_data %zu", max_data);
        }
        off += n;
    }
    if (r->rc == 0 && r->in_msg)
        logf_(r, "partial %s(%.*s)", r->text ? "T" : "B", (int)r->msg_len, r->msg);
    ws_parser_free(p);
    free(buf);
}

static void expect_log(bool server, const uint8_t *in, size_t len, const char *want)
{
    static run_log r;
    run(&r, server, 0, in, len, 0, SIZE_MAX);
    cr_assert_str_eq(r.log, want);
}

/* The one-shot log equals the log for every chunk size, every single split
 * point, and small credit caps. */
static void expect_split_invariant(bool server, uint64_t max_message, const uint8_t *in, size_t len)
{
    static run_log a, b;
    run(&a, server, max_message, in, len, 0, SIZE_MAX);
    for (size_t split = 1; split <= len; split++) {
        run(&b, server, max_message, in, len, split, SIZE_MAX);
        cr_assert_str_eq(b.log, a.log, "chunks of %zu", split);
    }
    for (size_t md = 1; md <= 9; md++) {
        run(&b, server, max_message, in, len, 0, md);
        cr_assert_str_eq(b.log, a.log, "max_data %zu", md);
        run(&b, server, max_message, in, len, 1, md);
        cr_assert_str_eq(b.log, a.log, "byte by byte, max_data %zu", md);
    }
    /* two pieces, split at every position */
    uint8_t *buf = malloc(len ? len : 1);
    for (size_t k = 0; k <= len; k++) {
        memcpy(buf, in, len);
        ws_parser *p;
        cr_assert_eq(ws_parser_new(&p, server, max_message), 0);
        run_log *r = &b;
        memset(r, 0, sizeof *r);
        size_t bounds[3] = {0, k, len};
        for (int s = 0; s < 2 && r->rc == 0; s++) {
            size_t pos = bounds[s];
            while (pos < bounds[s + 1]) {
                ws_event ev;
                size_t used;
                int rc = ws_parser_feed(p, buf + pos, bounds[s + 1] - pos, SIZE_MAX, &used, &ev);
                pos += used;
                if (rc < 0) {
                    r->rc = rc;
                    logf_(r, "E%d", -rc);
                    break;
                }
                if (rc == 1)
                    record(r, p, &ev, buf + bounds[s], bounds[s + 1] - bounds[s], SIZE_MAX);
            }
        }
        if (r->rc == 0 && r->in_msg)
            logf_(r, "partial %s(%.*s)", r->text ? "T" : "B", (int)r->msg_len, r->msg);
        cr_assert_str_eq(b.log, a.log, "split at %zu", k);
        ws_parser_free(p);
    }
    free(buf);
}

/* Feed everything in one call; return the first error (0 if none) and the
 * number of bytes consumed up to it. */
static int feed_all(ws_parser *p, uint8_t *in, size_t len, size_t *consumed_total)
{
    size_t pos = 0;
    int rc = 0;
    while (pos < len) {
        ws_event ev;
        size_t used;
        rc = ws_parser_feed(p, in + pos, len - pos, SIZE_MAX, &used, &ev);
        pos += used;
        if (rc < 0)
            break;
        if (rc == 0 && used == 0)
            break;
        rc = 0;
    }
    if (consumed_total)
        *consumed_total = pos;
    return rc;
}

static int parse_error(bool server, uint64_t max_message, const uint8_t *in, size_t len)
{
    static run_log r;
    run(&r, server, max_message, in, len, 0, SIZE_MAX);
    return r.rc;
}

/* ---- RFC 6455 section 5.7 examples ------------------------------------- */

Test(rfc, single_frame_unmasked_text)
{
    const uint8_t in[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    expect_log(false, in, sizeof in, "T(48656c6c6f) ");
    expect_split_invariant(false, 0, in, sizeof in);
    cr_assert_eq(parse_error(true, 0, in, sizeof in), WS_E_PROTOCOL, "unmasked to a server");
}

Test(rfc, single_frame_masked_text)
{
    const uint8_t in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_log(true, in, sizeof in, "T(48656c6c6f) ");
    expect_split_invariant(true, 0, in, sizeof in);
    cr_assert_eq(parse_error(false, 0, in, sizeof in), WS_E_PROTOCOL, "masked to a client");
    uint8_t out[WS_HEAD_MAX];
    cr_assert_eq(ws_frame_head(out, WS_OP_TEXT, true, 5, KEY), 6);
    cr_assert_arr_eq(out, in, 6);
    uint8_t payload[5] = "Hello";
    ws_mask(payload, 5, KEY, 0);
    cr_assert_arr_eq(payload, in + 6, 5);
}

Test(rfc, fragmented_unmasked_text)
{
    const uint8_t in[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    expect_log(false, in, sizeof in, "T(48656c6c6f) ");
    expect_split_invariant(false, 0, in, sizeof in);
}

Test(rfc, ping_and_pong)
{
    const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    expect_log(false, ping, sizeof ping, "ping(48656c6c6f) ");
    const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    expect_log(true, pong, sizeof pong, "pong(48656c6c6f) ");
    expect_split_invariant(true, 0, pong, sizeof pong);
}

Test(rfc, length_encodings)
{
    uint8_t out[WS_HEAD_MAX];
    const uint8_t h256[] = {0x82, 0x7e, 0x01, 0x00};
    cr_assert_eq(ws_frame_head(out, WS_OP_BINARY, true, 256, NULL), 4);
    cr_assert_arr_eq(out, h256, 4);
    const uint8_t h64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    cr_assert_eq(ws_frame_head(out, WS_OP_BINARY, true, 65536, NULL), 10);
    cr_assert_arr_eq(out, h64k, 10);
    cr_assert_eq(ws_frame_head(out, WS_OP_BINARY, true, 125, NULL), 2);
    cr_assert_eq(out[1], 125);
    cr_assert_eq(ws_frame_head(out, WS_OP_BINARY, false, 126, KEY), 8);
    cr_assert_eq(out[0], 0x02);
    cr_assert_eq(out[1], 0x80 | 126);
    cr_assert_eq(ws_frame_head(out, WS_OP_BINARY, true, 65535, NULL), 4);
    cr_assert_eq(ws_frame_head(out, WS_OP_CONT, true, UINT64_C(1) << 62, KEY), WS_HEAD_MAX);
    cr_assert_eq(out[2], 0x40);
}

/* ---- parser rules ------------------------------------------------------ */

Test(rules, rsv_bits_are_protocol_errors)
{
    for (unsigned rsv = 1; rsv < 8; rsv++) {
        uint8_t in[32];
        size_t n = raw(in, (uint8_t)(0x81 | rsv << 4), 1, NULL, 0, "a", 1, true);
        cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL, "rsv %u", rsv);
        /* found at the first byte, before the rest arrives */
        ws_parser *p;
        ws_event ev;
        size_t used;
        cr_assert_eq(ws_parser_new(&p, true, 0), 0);
        cr_assert_eq(ws_parser_feed(p, in, 1, SIZE_MAX, &used, &ev), WS_E_PROTOCOL);
        /* and the parser stays failed */
        cr_assert_eq(ws_parser_feed(p, in + 1, n - 1, SIZE_MAX, &used, &ev), WS_E_PROTOCOL);
        cr_assert_eq(used, 0);
        ws_parser_free(p);
    }
}

Test(rules, unknown_opcodes_are_protocol_errors)
{
    for (unsigned op = 0; op < 16; op++) {
        uint8_t in[32];
        size_t n = raw(in, (uint8_t)(0x80 | op), 0, NULL, 0, "", 0, true);
        int want = (op >= 3 && op <= 7) || op >= 0xb ? WS_E_PROTOCOL : 0;
        if (op == WS_OP_CONT)
            want = WS_E_PROTOCOL; /* nothing to continue */
        cr_assert_eq(parse_error(true, 0, in, n), want, "opcode %x", op);
    }
}

Test(rules, masking_follows_the_role)
{
    uint8_t in[32];
    size_t n = frame(in, WS_OP_BINARY, true, "ab", 2, false);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
    cr_assert_eq(parse_error(false, 0, in, n), 0);
    n = frame(in, WS_OP_BINARY, true, "ab", 2, true);
    cr_assert_eq(parse_error(true, 0, in, n), 0);
    cr_assert_eq(parse_error(false, 0, in, n), WS_E_PROTOCOL);
    /* control frames too */
    n = frame(in, WS_OP_PING, true, "ab", 2, false);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
}

Test(rules, control_frames_are_whole_and_short)
{
    uint8_t in[300], big[126];
    memset(big, 'x', sizeof big);
    for (int op = WS_OP_CLOSE; op <= WS_OP_PONG; op++) {
        size_t n = frame(in, op, false, "", 0, true);
        cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL, "fragmented control %x", op);
        n = frame(in, op, true, big, 126, true);
        cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL, "126-byte control %x", op);
        /* found at the length, before the payload */
        cr_assert_eq(parse_error(true, 0, in, 4), WS_E_PROTOCOL);
    }
    size_t n = frame(in, WS_OP_PING, true, big, 125, true);
    static run_log r;
    run(&r, true, 0, in, n, 0, SIZE_MAX);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(r.events, 1);
    expect_split_invariant(true, 0, in, n);
}

Test(rules, non_minimal_lengths_are_accepted)
{
    uint8_t in[64];
    const uint8_t e16[] = {0, 5}, e64[] = {0, 0, 0, 0, 0, 0, 0, 5};
    size_t n = raw(in, 0x82, 126, e16, 2, "hello", 5, true);
    expect_log(true, in, n, "B(68656c6c6f) ");
    n = raw(in, 0x82, 127, e64, 8, "hello", 5, true);
    expect_log(true, in, n, "B(68656c6c6f) ");
    expect_split_invariant(true, 0, in, n);
    n = raw(in, 0x89, 126, e16, 2, "hello", 5, false);
    expect_log(false, in, n, "ping(68656c6c6f) ");
}

Test(rules, length_with_the_top_bit_is_an_error)
{
    uint8_t in[32];
    const uint8_t top[] = {0x80, 0, 0, 0, 0, 0, 0, 0};
    size_t n = raw(in, 0x82, 127, top, 8, "", 0, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
    cr_assert_eq(parse_error(true, 0, in, 10), WS_E_PROTOCOL, "before the mask key");
    /* 2^63 - 1 is a legal length: the frame just goes on */
    const uint8_t most[] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    n = raw(in, 0x82, 127, most, 8, "abc", 3, true);
    expect_log(true, in, n, "partial B(616263)");
}

Test(rules, continuation_needs_a_message)
{
    uint8_t in[64];
    size_t n = frame(in, WS_OP_CONT, true, "x", 1, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
    /* after a complete message, too */
    n = frame(in, WS_OP_TEXT, true, "a", 1, true);
    n += frame(in + n, WS_OP_CONT, true, "x", 1, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
}

Test(rules, new_message_inside_a_message)
{
    for (int second = WS_OP_TEXT; second <= WS_OP_BINARY; second++) {
        uint8_t in[64];
        size_t n = frame(in, WS_OP_BINARY, false, "a", 1, true);
        n += frame(in + n, second, true, "b", 1, true);
        static run_log r;
        run(&r, true, 0, in, n, 0, SIZE_MAX);
        cr_assert_eq(r.rc, WS_E_PROTOCOL);
        cr_assert_str_eq(r.log, "E1002");
        cr_assert_eq(r.data_bytes, 1);
        /* also after an empty first frame */
        n = frame(in, WS_OP_TEXT, false, "", 0, true);
        n += frame(in + n, second, true, "b", 1, true);
        cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL);
    }
}

Test(rules, control_frames_between_fragments)
{
    uint8_t in[128];
    size_t n = frame(in, WS_OP_TEXT, false, "Hel", 3, true);
    n += frame(in + n, WS_OP_PING, true, "x", 1, true);
    n += frame(in + n, WS_OP_CONT, false, "", 0, true);
    n += frame(in + n, WS_OP_PONG, true, "", 0, true);
    n += frame(in + n, WS_OP_CONT, true, "lo", 2, true);
    n += frame(in + n, WS_OP_BINARY, true, "\x01", 1, true);
    n += frame(in + n, WS_OP_CLOSE, true, "\x03\xe8" "bye", 5, true);
    expect_log(true, in, n, "ping(78) pong() T(48656c6c6f) B(01) close(1000,627965) ");
    expect_split_invariant(true, 0, in, n);
}

Test(rules, empty_frames_and_messages)
{
    uint8_t in[64];
    size_t n = frame(in, WS_OP_TEXT, true, "", 0, true);
    n += frame(in + n, WS_OP_BINARY, false, "", 0, true);
    n += frame(in + n, WS_OP_CONT, false, "", 0, true);
    n += frame(in + n, WS_OP_CONT, true, "", 0, true);
    static run_log r;
    run(&r, true, 0, in, n, 0, SIZE_MAX);
    cr_assert_str_eq(r.log, "T() B() ");
    cr_assert_eq(r.data_events, 2, "one event per empty message");
    expect_split_invariant(true, 0, in, n);

    /* the events themselves: first and fin with len 0 */
    ws_parser *p;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    n = frame(in, WS_OP_TEXT, true, "", 0, true);
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parser_feed(p, in, n, 0, &used, &ev), 1);
    cr_assert_eq(used, n);
    cr_assert(ev.type == WS_EV_DATA && ev.text && ev.first && ev.fin && ev.len == 0);
    ws_parser_free(p);
}

Test(rules, close_payloads)
{
    uint8_t in[200];
    size_t n = frame(in, WS_OP_CLOSE, true, "", 0, true);
    expect_log(true, in, n, "close(1005,) ");
    n = frame(in, WS_OP_CLOSE, true, "\x03", 1, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_PROTOCOL, "a 1-byte close payload");
    n = frame(in, WS_OP_CLOSE, true, "\x03\xe8\xff", 3, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_UTF8, "a reason that is not UTF-8");
    n = frame(in, WS_OP_CLOSE, true, "\x03\xe8\xce", 3, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_UTF8, "a reason ending inside a character");
    n = frame(in, WS_OP_CLOSE, true, "\x0f\xa0" "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 13, false);
    expect_log(false, in, n, "close(4000,cebae1bdb9cf83cebcceb5) ");
    expect_split_invariant(false, 0, in, n);
}

Test(rules, close_codes)
{
    static const struct {
        uint32_t lo, hi;
        bool ok;
    } ranges[] = {
        {0, 999, false},     {1000, 1003, true},  {1004, 1006, false}, {1007, 1014, true},
        {1015, 2999, false}, {3000, 4999, true},  {5000, 65535, false},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        for (uint32_t code = ranges[i].lo; code <= ranges[i].hi; code++) {
            cr_assert_eq(ws_close_code_sendable(code), ranges[i].ok, "code %u", code);
            /* every code at the edges of each range, a sample in between */
            if (code != ranges[i].lo && code != ranges[i].hi && code % 97)
                continue;
            uint8_t pl[2] = {(uint8_t)(code >> 8), (uint8_t)code}, in[16];
            size_t n = frame(in, WS_OP_CLOSE, true, pl, 2, true);
            cr_assert_eq(parse_error(true, 0, in, n), ranges[i].ok ? 0 : WS_E_PROTOCOL, "code %u", code);
        }
    }
    cr_assert_not(ws_close_code_sendable(70000));
}

Test(rules, nothing_after_close)
{
    uint8_t in[64];
    size_t n = frame(in, WS_OP_CLOSE, true, "\x03\xe8", 2, true);
    size_t close_len = n;
    n += frame(in + n, WS_OP_TEXT, true, "late", 4, true);
    n += frame(in + n, WS_OP_PING, true, "", 0, true);
    in[n++] = 0xff; /* not even a valid head */
    ws_parser *p;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parser_feed(p, in, n, SIZE_MAX, &used, &ev), 1);
    cr_assert_eq(ev.type, WS_EV_CLOSE);
    cr_assert_eq(ev.code, 1000);
    cr_assert_eq(used, close_len);
    cr_assert_eq(ws_parser_feed(p, in + used, n - used, SIZE_MAX, &used, &ev), 0);
    cr_assert_eq(used, n - close_len, "the rest is consumed and ignored");
    cr_assert_eq(ws_parser_feed(p, in, n, SIZE_MAX, &used, &ev), 0);
    ws_parser_free(p);
}

Test(rules, utf8_fails_early)
{
    /* a lone 0xff in the first piece of a long text frame: fails with the
     * first bytes, long before the frame is complete */
    uint8_t in[300], payload[200];
    memset(payload, 'a', sizeof payload);
    payload[1] = 0xff;
    size_t n = frame(in, WS_OP_TEXT, false, payload, sizeof payload, true);
    ws_parser *p;
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    cr_assert_eq(ws_parser_feed(p, in, 8 + 2, SIZE_MAX, &used, &ev), WS_E_UTF8);
    ws_parser_free(p);
    /* 0xff at the very start, one byte of credit */
    payload[0] = 0xff;
    n = frame(in, WS_OP_TEXT, true, payload, sizeof payload, true);
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    cr_assert_eq(ws_parser_feed(p, in, n, 1, &used, &ev), WS_E_UTF8);
    ws_parser_free(p);
    /* an incomplete sequence at the message's end, also across frames */
    n = frame(in, WS_OP_TEXT, true, "a\xce", 2, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_UTF8);
    n = frame(in, WS_OP_TEXT, false, "a\xce", 2, true);
    n += frame(in + n, WS_OP_CONT, true, "", 0, true);
    cr_assert_eq(parse_error(true, 0, in, n), WS_E_UTF8);
    n = frame(in, WS_OP_TEXT, false, "a\xce", 2, true);
    n += frame(in + n, WS_OP_PING, true, "", 0, true);
    n += frame(in + n, WS_OP_CONT, true, "\xba", 1, true);
    expect_log(true, in, n, "ping() T(61ceba) ");
    expect_split_invariant(true, 0, in, n);
    /* binary messages are not UTF-8 checked */
    n = frame(in, WS_OP_BINARY, true, "\xff\xce", 2, true);
    expect_log(true, in, n, "B(ffce) ");
}

Test(rules, max_message)
{
    uint8_t in[256], payload[32];
    memset(payload, 'z', sizeof payload);
    /* exactly at the limit, one frame or several */
    size_t n = frame(in, WS_OP_BINARY, true, payload, 10, true);
    cr_assert_eq(parse_error(true, 10, in, n), 0);
    n = frame(in, WS_OP_BINARY, false, payload, 4, true);
    n += frame(in + n, WS_OP_CONT, false, payload, 6, true);
    n += frame(in + n, WS_OP_CONT, true, payload, 0, true);
    cr_assert_eq(parse_error(true, 10, in, n), 0);
    expect_split_invariant(true, 10, in, n);
    /* one byte over: fails at the frame head, before the payload */
    n = frame(in, WS_OP_BINARY, true, payload, 11, true);
    cr_assert_eq(parse_error(true, 10, in, 2), WS_E_TOO_BIG);
    /* over across fragments: the first piece is handed out, the second
     * head fails */
    n = frame(in, WS_OP_TEXT, false, payload, 6, true);
    size_t first = n;
    n += frame(in + n, WS_OP_CONT, true, payload, 5, true);
    static run_log r;
    run(&r, true, 10, in, first + 2, 0, SIZE_MAX);
    cr_assert_eq(r.rc, WS_E_TOO_BIG);
    cr_assert_eq(r.data_bytes, 6);
    /* the limit is per message: two messages of 10 are fine */
    n = frame(in, WS_OP_BINARY, true, payload, 10, true);
    n += frame(in + n, WS_OP_BINARY, true, payload, 10, true);
    cr_assert_eq(parse_error(true, 10, in, n), 0);
    /* control frames do not count */
    n = frame(in, WS_OP_BINARY, false, payload, 10, true);
    n += frame(in + n, WS_OP_PING, true, payload, 20, true);
    n += frame(in + n, WS_OP_CONT, true, "", 0, true);
    cr_assert_eq(parse_error(true, 10, in, n), 0);
    /* a huge declared length against a limit (no overflow) */
    const uint8_t most[] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    n = raw(in, 0x02, 127, most, 8, "", 0, true);
    n += raw(in + n, 0x80, 127, most, 8, "", 0, true);
    cr_assert_eq(parse_error(true, UINT64_MAX, in, 14), 0);
    cr_assert_eq(parse_error(true, UINT64_MAX - 1, in, 14), 0);
}

Test(rules, max_message_changed_mid_message)
{
    uint8_t in[128], payload[32];
    memset(payload, 'q', sizeof payload);
    size_t n = frame(in, WS_OP_BINARY, false, payload, 8, true);
    size_t second = n;
    n += frame(in + n, WS_OP_CONT, true, payload, 8, true);
    ws_parser *p;
    ws_event ev;
    size_t used;
    /* raised: the 16-byte message passes a limit of 10 raised to 16 */
    cr_assert_eq(ws_parser_new(&p, true, 10), 0);
    cr_assert_eq(ws_parser_feed(p, in, second, SIZE_MAX, &used, &ev), 1);
    ws_parser_set_max_message(p, 16);
    cr_assert_eq(feed_all(p, in + second, n - second, NULL), 0);
    ws_parser_free(p);
    /* lowered below what the message already declared: fails at once */
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    cr_assert_eq(ws_parser_feed(p, in, second - 3, SIZE_MAX, &used, &ev), 1);
    ws_parser_set_max_message(p, 6);
    cr_assert_eq(ws_parser_feed(p, in + used, 3, SIZE_MAX, &used, &ev), WS_E_TOO_BIG);
    ws_parser_free(p);
    /* lowered, and the next fragment passes it */
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    cr_assert_eq(ws_parser_feed(p, in, second, SIZE_MAX, &used, &ev), 1);
    ws_parser_set_max_message(p, 12);
    cr_assert_eq(feed_all(p, in + second, n - second, NULL), WS_E_TOO_BIG);
    ws_parser_free(p);
}

/* ---- credit (max_data) ------------------------------------------------- */

Test(credit, zero_stops_in_front_of_the_payload)
{
    uint8_t in[128];
    size_t n = frame(in, WS_OP_PING, true, "p", 1, true);
    size_t head = n;
    n += frame(in + n, WS_OP_BINARY, true, "abcdef", 6, true);
    head += 6;
    ws_parser *p;
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    /* the ping is handled with no credit */
    cr_assert_eq(ws_parser_feed(p, in, n, 0, &used, &ev), 1);
    cr_assert_eq(ev.type, WS_EV_PING);
    size_t pos = used;
    /* then the data head, and a stop in front of its first payload byte */
    cr_assert_eq(ws_parser_feed(p, in + pos, n - pos, 0, &used, &ev), 0);
    pos += used;
    cr_assert_eq(pos, head);
    cr_assert_eq(ws_parser_feed(p, in + pos, n - pos, 0, &used, &ev), 0);
    cr_assert_eq(used, 0, "no credit, no progress");
    /* credit 1: one byte at a time */
    cr_assert_eq(ws_parser_feed(p, in + pos, n - pos, 1, &used, &ev), 1);
    cr_assert(ev.type == WS_EV_DATA && ev.first && !ev.fin && ev.len == 1 && ev.data[0] == 'a');
    cr_assert(ws_parser_in_message(p));
    pos += used;
    /* credit 3, then the rest */
    cr_assert_eq(ws_parser_feed(p, in + pos, n - pos, 3, &used, &ev), 1);
    cr_assert(!ev.first && !ev.fin && ev.len == 3 && memcmp(ev.data, "bcd", 3) == 0);
    pos += used;
    cr_assert_eq(ws_parser_feed(p, in + pos, n - pos, 100, &used, &ev), 1);
    cr_assert(!ev.first && ev.fin && ev.len == 2 && memcmp(ev.data, "ef", 2) == 0);
    pos += used;
    cr_assert_eq(pos, n);
    cr_assert_not(ws_parser_in_message(p));
    ws_parser_free(p);
}

Test(credit, zero_still_reports_a_message_end)
{
    uint8_t in[64];
    size_t n = frame(in, WS_OP_TEXT, false, "ab", 2, true);
    size_t second = n;
    n += frame(in + n, WS_OP_CONT, true, "", 0, true);
    ws_parser *p;
    ws_event ev;
    size_t used;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    cr_assert_eq(ws_parser_feed(p, in, second, 2, &used, &ev), 1);
    cr_assert(ev.first && !ev.fin && ev.len == 2);
    cr_assert_eq(ws_parser_feed(p, in + second, n - second, 0, &used, &ev), 1);
    cr_assert(ev.type == WS_EV_DATA && !ev.first && ev.fin && ev.len == 0 && ev.text);
    cr_assert_eq(used, n - second);
    ws_parser_free(p);
}

Test(credit, caps_every_piece)
{
    uint8_t payload[1000], in[1100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    size_t n = frame(in, WS_OP_BINARY, true, payload, sizeof payload, true);
    size_t caps[] = {1, 2, 3, 64, 999, 1000, 5000};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        static run_log r;
        run(&r, true, 0, in, n, 0, caps[c]);
        cr_assert_eq(r.rc, 0);
        cr_assert_eq(r.data_events, (sizeof payload + caps[c] - 1) / caps[c], "cap %zu", caps[c]);
        cr_assert_eq(r.data_bytes, sizeof payload);
    }
    expect_split_invariant(true, 0, in, n);
}

/* ---- splits ------------------------------------------------------------ */

Test(splits, a_conversation_in_every_split)
{
    for (int server = 0; server < 2; server++) {
        static uint8_t in[1024], big[300];
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (uint8_t)i;
        size_t n = frame(in, WS_OP_TEXT, false, "h\xc3", 2, server);
        n += frame(in + n, WS_OP_PING, true, "are you there", 13, server);
        n += frame(in + n, WS_OP_CONT, true, "\xa9llo", 4, server);
        n += frame(in + n, WS_OP_BINARY, true, big, sizeof big, server);
        n += frame(in + n, WS_OP_TEXT, true, "", 0, server);
        n += frame(in + n, WS_OP_PONG, true, "", 0, server);
        n += frame(in + n, WS_OP_CLOSE, true, "\x03\xe9going", 7, server);
        expect_split_invariant(server, 0, in, n);
        static run_log r;
        run(&r, server, 0, in, n, 1, 1);
        cr_assert_eq(r.rc, 0);
        cr_assert_eq(r.data_bytes, 6 + sizeof big);
    }
}

Test(splits, errors_in_every_split)
{
    uint8_t in[128];
    size_t n = frame(in, WS_OP_TEXT, true, "ok", 2, true);
    n += frame(in + n, WS_OP_PING, false, "", 0, true);
    expect_split_invariant(true, 0, in, n);
    n = frame(in, WS_OP_TEXT, false, "ok\xe2\x82", 4, true);
    n += frame(in + n, WS_OP_CONT, true, "\xac\xff", 2, true);
    expect_split_invariant(true, 0, in, n);
    n = frame(in, WS_OP_BINARY, false, "12345", 5, true);
    n += frame(in + n, WS_OP_CONT, true, "67890", 5, true);
    expect_split_invariant(true, 8, in, n);
}

/* ---- UTF-8: the Autobahn test suite's section 6 ------------------------ */

typedef struct {
    const char *name;
    const char *bytes;
    size_t len;
    size_t fail_at; /* 1-based index of the byte that proves it invalid; 0: valid */
} utf8_case;

/* Autobahn 6.1-6.23 (Markus Kuhn's UTF-8 stress test), validity checked
 * with Python's strict decoder. fail_at is the shortest prefix that no valid
 * text starts with (ED A0 already, a surrogate), or the last byte for a
 * message that ends inside a character. */
static const utf8_case utf8_cases[] = {
    {"6.1 empty", "", 0, 0},
    {"6.2 hello", "\x48\x65\x6c\x6c\x6f\x2d\xc2\xb5\x40\xc3\x9f\xc3\xb6\xc3\xa4\xc3"
      "\xbc\xc3\xa0\xc3\xa1\x2d\x55\x54\x46\x2d\x38\x21\x21", 29, 0},
    {"6.3 kosme surrogate", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64"
      "\x69\x74\x65\x64", 20, 13},
    {"6.4 fail fast (any fragmentation)", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65"
      "\x64\x69\x74\x65\x64", 21, 13},
    {"6.4 fail fast, lone ff", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xff\x65\x64\x69\x74"
      "\x65\x64", 18, 12},
    {"6.5 kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 0},
    {"6.7.1 first possible", "\x00", 1, 0},
    {"6.7.2 first possible", "\xc2\x80", 2, 0},
    {"6.7.3 first possible", "\xe0\xa0\x80", 3, 0},
    {"6.7.4 first possible", "\xf0\x90\x80\x80", 4, 0},
    {"6.8.1 5/6-byte form", "\xf8\x88\x80\x80\x80", 5, 1},
    {"6.8.2 5/6-byte form", "\xfc\x84\x80\x80\x80\x80", 6, 1},
    {"6.9.1 last possible", "\x7f", 1, 0},
    {"6.9.2 last possible", "\xdf\xbf", 2, 0},
    {"6.9.3 last possible", "\xef\xbf\xbf", 3, 0},
    {"6.9.4 last possible", "\xf4\x8f\xbf\xbf", 4, 0},
    {"6.10.1 last impossible", "\xf7\xbf\xbf\xbf", 4, 1},
    {"6.10.2 last impossible", "\xfb\xbf\xbf\xbf\xbf", 5, 1},
    {"6.10.3 last impossible", "\xfd\xbf\xbf\xbf\xbf\xbf", 6, 1},
    {"6.11.1 boundary", "\xed\x9f\xbf", 3, 0},
    {"6.11.2 boundary", "\xee\x80\x80", 3, 0},
    {"6.11.3 boundary", "\xef\xbf\xbd", 3, 0},
    {"6.11.4 boundary", "\xf4\x8f\xbf\xbf", 4, 0},
    {"6.11.5 boundary", "\xf4\x90\x80\x80", 4, 2},
    {"6.12.1 unexpected continuation", "\x80", 1, 1},
    {"6.12.2 unexpected continuation", "\xbf", 1, 1},
    {"6.12.3 unexpected continuation", "\x80\xbf", 2, 1},
    {"6.12.4 unexpected continuation", "\x80\xbf\x80", 3, 1},
    {"6.12.5 unexpected continuation", "\x80\xbf\x80\xbf", 4, 1},
    {"6.12.6 unexpected continuation", "\x80\xbf\x80\xbf\x80", 5, 1},
    {"6.12.7 unexpected continuation", "\x80\xbf\x80\xbf\x80\xbf", 6, 1},
    {"6.12.8 unexpected continuation", "\x80\xbf\x80\xbf\x80\xbf\x80", 7, 1},
    {"6.12.9 all continuation bytes", "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f"
      "\x90\x91\x92\x93\x94\x95\x96\x97\x98\x99\x9a\x9b\x9c\x9d\x9e\x9f"
      "\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf"
      "\xb0\xb1\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xbb\xbc\xbd\xbe\xbf", 64, 1},
    {"6.13.1 lonely 2-byte starts", "\xc0\x20\xc1\x20\xc2\x20\xc3\x20\xc4\x20\xc5\x20\xc6\x20\xc7\x20"
      "\xc8\x20\xc9\x20\xca\x20\xcb\x20\xcc\x20\xcd\x20\xce\x20\xcf\x20"
      "\xd0\x20\xd1\x20\xd2\x20\xd3\x20\xd4\x20\xd5\x20\xd6\x20\xd7\x20"
      "\xd8\x20\xd9\x20\xda\x20\xdb\x20\xdc\x20\xdd\x20\xde\x20\xdf\x20", 64, 1},
    {"6.13.2 lonely 3-byte starts", "\xe0\x20\xe1\x20\xe2\x20\xe3\x20\xe4\x20\xe5\x20\xe6\x20\xe7\x20"
      "\xe8\x20\xe9\x20\xea\x20\xeb\x20\xec\x20\xed\x20\xee\x20\xef\x20", 32, 2},
    {"6.13.3 lonely 4-byte starts", "\xf0\x20\xf1\x20\xf2\x20\xf3\x20\xf4\x20\xf5\x20\xf6\x20\xf7\x20", 16, 2},
    {"6.13.4 lonely 5-byte starts", "\xf8\x20\xf9\x20\xfa\x20\xfb\x20", 8, 1},
    {"6.13.5 lonely 6-byte starts", "\xfc\x20\xfd\x20", 4, 1},
    {"6.14.1 last continuation missing", "\xc0", 1, 1},
    {"6.14.2 last continuation missing", "\xe0\x80", 2, 2},
    {"6.14.3 last continuation missing", "\xf0\x80\x80", 3, 2},
    {"6.14.4 last continuation missing", "\xf8\x80\x80\x80", 4, 1},
    {"6.14.5 last continuation missing", "\xfc\x80\x80\x80\x80", 5, 1},
    {"6.14.6 last continuation missing", "\xdf", 1, 1},
    {"6.14.7 last continuation missing", "\xef\xbf", 2, 2},
    {"6.14.8 last continuation missing", "\xf7\xbf\xbf", 3, 1},
    {"6.14.9 last continuation missing", "\xfb\xbf\xbf\xbf", 4, 1},
    {"6.14.10 last continuation missing", "\xfd\xbf\xbf\xbf\xbf", 5, 1},
    {"6.15.1 concatenated incomplete", "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf"
      "\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf", 30, 1},
    {"6.16.1 impossible bytes", "\xfe", 1, 1},
    {"6.16.2 impossible bytes", "\xff", 1, 1},
    {"6.16.3 impossible bytes", "\xfe\xfe\xff\xff", 4, 1},
    {"6.17.1 overlong /", "\xc0\xaf", 2, 1},
    {"6.17.2 overlong /", "\xe0\x80\xaf", 3, 2},
    {"6.17.3 overlong /", "\xf0\x80\x80\xaf", 4, 2},
    {"6.17.4 overlong /", "\xf8\x80\x80\x80\xaf", 5, 1},
    {"6.17.5 overlong /", "\xfc\x80\x80\x80\x80\xaf", 6, 1},
    {"6.18.1 maximum overlong", "\xc1\xbf", 2, 1},
    {"6.18.2 maximum overlong", "\xe0\x9f\xbf", 3, 2},
    {"6.18.3 maximum overlong", "\xf0\x8f\xbf\xbf", 4, 2},
    {"6.18.4 maximum overlong", "\xf8\x87\xbf\xbf\xbf", 5, 1},
    {"6.18.5 maximum overlong", "\xfc\x83\xbf\xbf\xbf\xbf", 6, 1},
    {"6.19.1 overlong NUL", "\xc0\x80", 2, 1},
    {"6.19.2 overlong NUL", "\xe0\x80\x80", 3, 2},
    {"6.19.3 overlong NUL", "\xf0\x80\x80\x80", 4, 2},
    {"6.19.4 overlong NUL", "\xf8\x80\x80\x80\x80", 5, 1},
    {"6.19.5 overlong NUL", "\xfc\x80\x80\x80\x80\x80", 6, 1},
    {"6.20.1 single surrogate", "\xed\xa0\x80", 3, 2},
    {"6.20.2 single surrogate", "\xed\xad\xbf", 3, 2},
    {"6.20.3 single surrogate", "\xed\xae\x80", 3, 2},
    {"6.20.4 single surrogate", "\xed\xaf\xbf", 3, 2},
    {"6.20.5 single surrogate", "\xed\xb0\x80", 3, 2},
    {"6.20.6 single surrogate", "\xed\xbe\x80", 3, 2},
    {"6.20.7 single surrogate", "\xed\xbf\xbf", 3, 2},
    {"6.21.1 paired surrogates", "\xed\xa0\x80\xed\xb0\x80", 6, 2},
    {"6.21.2 paired surrogates", "\xed\xa0\x80\xed\xbf\xbf", 6, 2},
    {"6.21.3 paired surrogates", "\xed\xad\xbf\xed\xb0\x80", 6, 2},
    {"6.21.4 paired surrogates", "\xed\xad\xbf\xed\xbf\xbf", 6, 2},
    {"6.21.5 paired surrogates", "\xed\xae\x80\xed\xb0\x80", 6, 2},
    {"6.21.6 paired surrogates", "\xed\xae\x80\xed\xbf\xbf", 6, 2},
    {"6.21.7 paired surrogates", "\xed\xaf\xbf\xed\xb0\x80", 6, 2},
    {"6.21.8 paired surrogates", "\xed\xaf\xbf\xed\xbf\xbf", 6, 2},
    {"6.22.1 noncharacter", "\xef\xbf\xbe", 3, 0},
    {"6.22.2 noncharacter", "\xef\xbf\xbf", 3, 0},
    {"6.22.3 noncharacter", "\xf0\x9f\xbf\xbe", 4, 0},
    {"6.22.4 noncharacter", "\xf0\x9f\xbf\xbf", 4, 0},
    {"6.22.5 noncharacter", "\xf0\xaf\xbf\xbe", 4, 0},
    {"6.22.6 noncharacter", "\xf0\xaf\xbf\xbf", 4, 0},
    {"6.22.7 noncharacter", "\xf0\xbf\xbf\xbe", 4, 0},
    {"6.22.8 noncharacter", "\xf0\xbf\xbf\xbf", 4, 0},
    {"6.22.9 noncharacter", "\xf1\x8f\xbf\xbe", 4, 0},
    {"6.22.10 noncharacter", "\xf1\x8f\xbf\xbf", 4, 0},
    {"6.22.11 noncharacter", "\xf1\x9f\xbf\xbe", 4, 0},
    {"6.22.12 noncharacter", "\xf1\x9f\xbf\xbf", 4, 0},
    {"6.22.13 noncharacter", "\xf1\xaf\xbf\xbe", 4, 0},
    {"6.22.14 noncharacter", "\xf1\xaf\xbf\xbf", 4, 0},
    {"6.22.15 noncharacter", "\xf1\xbf\xbf\xbe", 4, 0},
    {"6.22.16 noncharacter", "\xf1\xbf\xbf\xbf", 4, 0},
    {"6.22.17 noncharacter", "\xf2\x8f\xbf\xbe", 4, 0},
    {"6.22.18 noncharacter", "\xf2\x8f\xbf\xbf", 4, 0},
    {"6.22.19 noncharacter", "\xf2\x9f\xbf\xbe", 4, 0},
    {"6.22.20 noncharacter", "\xf2\x9f\xbf\xbf", 4, 0},
    {"6.22.21 noncharacter", "\xf2\xaf\xbf\xbe", 4, 0},
    {"6.22.22 noncharacter", "\xf2\xaf\xbf\xbf", 4, 0},
    {"6.22.23 noncharacter", "\xf2\xbf\xbf\xbe", 4, 0},
    {"6.22.24 noncharacter", "\xf2\xbf\xbf\xbf", 4, 0},
    {"6.22.25 noncharacter", "\xf3\x8f\xbf\xbe", 4, 0},
    {"6.22.26 noncharacter", "\xf3\x8f\xbf\xbf", 4, 0},
    {"6.22.27 noncharacter", "\xf3\x9f\xbf\xbe", 4, 0},
    {"6.22.28 noncharacter", "\xf3\x9f\xbf\xbf", 4, 0},
    {"6.22.29 noncharacter", "\xf3\xaf\xbf\xbe", 4, 0},
    {"6.22.30 noncharacter", "\xf3\xaf\xbf\xbf", 4, 0},
    {"6.22.31 noncharacter", "\xf3\xbf\xbf\xbe", 4, 0},
    {"6.22.32 noncharacter", "\xf3\xbf\xbf\xbf", 4, 0},
    {"6.22.33 noncharacter", "\xf4\x8f\xbf\xbe", 4, 0},
    {"6.22.34 noncharacter", "\xf4\x8f\xbf\xbf", 4, 0},
    {"6.22.35 noncharacters U+FDD0..U+FDEF", "\xef\xb7\x90\xef\xb7\x91\xef\xb7\x92\xef\xb7\x93\xef\xb7\x94\xef"
      "\xb7\x95\xef\xb7\x96\xef\xb7\x97\xef\xb7\x98\xef\xb7\x99\xef\xb7"
      "\x9a\xef\xb7\x9b\xef\xb7\x9c\xef\xb7\x9d\xef\xb7\x9e\xef\xb7\x9f"
      "\xef\xb7\xa0\xef\xb7\xa1\xef\xb7\xa2\xef\xb7\xa3\xef\xb7\xa4\xef"
      "\xb7\xa5\xef\xb7\xa6\xef\xb7\xa7\xef\xb7\xa8\xef\xb7\xa9\xef\xb7"
      "\xaa\xef\xb7\xab\xef\xb7\xac\xef\xb7\xad\xef\xb7\xae\xef\xb7\xaf", 96, 0},
    {"6.23.1 U+FFFD", "\xef\xbf\xbd", 3, 0},
    {"6.23.2 BOM", "\xef\xbb\xbf\x61\x62\x63", 6, 0},
    {"6.23.3 ascii run then bad", "\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41"
      "\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41\x41"
      "\x41\x41\x41\x41\x41\xff\x42\x42\x42\x42\x42\x42\x42\x42\x42", 47, 38},
    {"6.23.4 4-byte after ascii run", "\x30\x31\x32\x33\x34\x35\x36\x37\x38\x39\x61\x62\x63\x64\x65\x66"
      "\xf0\x9f\x98\x80\x78\x79\x7a", 23, 0},
};

#define NCASES (sizeof utf8_cases / sizeof utf8_cases[0])

/* The state after a whole valid input is 0; an invalid one fails exactly
 * at its fail_at byte; any two-piece split gives the same. */
Test(utf8, autobahn_step)
{
    for (size_t c = 0; c < NCASES; c++) {
        const utf8_case *u = &utf8_cases[c];
        const uint8_t *b = (const uint8_t *)u->bytes;
        int whole = ws_utf8_step(0, b, u->len);
        cr_assert_eq(whole == 0, u->fail_at == 0, "%s: state %d", u->name, whole);
        /* byte by byte: the state is -1 from fail_at on (or not 0 at the end) */
        int s = 0;
        for (size_t i = 0; i < u->len; i++) {
            s = ws_utf8_step(s, b + i, 1);
            if (u->fail_at && i + 1 >= u->fail_at && i + 1 < u->len)
                cr_assert_eq(s, -1, "%s: byte %zu", u->name, i + 1);
            if (!u->fail_at || i + 1 < u->fail_at)
                cr_assert_geq(s, 0, "%s: byte %zu failed early", u->name, i + 1);
            if (s < 0)
                break;
        }
        for (size_t k = 0; k <= u->len; k++) {
            int a = ws_utf8_step(0, b, k);
            int t = a < 0 ? -1 : ws_utf8_step(a, b + k, u->len - k);
            cr_assert_eq(t == 0, whole == 0, "%s split at %zu", u->name, k);
        }
    }
    cr_assert_eq(ws_utf8_step(-1, (const uint8_t *)"a", 1), -1);
    cr_assert_eq(ws_utf8_step(4, (const uint8_t *)"a", 1), -1, "not a state");
}

/* As text messages: one frame split at every byte, two frames split at
 * every payload position, and one byte of credit at a time. */
Test(utf8, autobahn_messages)
{
    static uint8_t in[512];
    static run_log r;
    for (size_t c = 0; c < NCASES; c++) {
        const utf8_case *u = &utf8_cases[c];
        cr_assert_lt(u->len, 200);
        size_t n = frame(in, WS_OP_TEXT, true, u->bytes, u->len, true);
        run(&r, true, 0, in, n, 0, SIZE_MAX);
        cr_assert_eq(r.rc, u->fail_at ? WS_E_UTF8 : 0, "%s", u->name);
        expect_split_invariant(true, 0, in, n);
        for (size_t k = 0; k <= u->len; k++) {
            size_t m = frame(in, WS_OP_TEXT, false, u->bytes, k, true);
            m += frame(in + m, WS_OP_CONT, true, u->bytes + k, u->len - k, true);
            run(&r, true, 0, in, m, 0, SIZE_MAX);
            cr_assert_eq(r.rc, u->fail_at ? WS_E_UTF8 : 0, "%s in frames split at %zu", u->name, k);
        }
        /* fail fast: with one byte of credit, the bytes before the proof
         * are handed out and no byte after it */
        n = frame(in, WS_OP_TEXT, true, u->bytes, u->len, true);
        run(&r, true, 0, in, n, 0, 1);
        if (u->fail_at)
            cr_assert_eq(r.data_bytes, u->fail_at - 1, "%s", u->name);
        else
            cr_assert_eq(r.data_bytes, u->len, "%s", u->name);
    }
}

/* ---- encoders ---------------------------------------------------------- */

Test(encode, close_frames)
{
    uint8_t out[2 + 2 + WS_REASON_MAX];
    cr_assert_eq(ws_close_frame(out, 1005, (const uint8_t *)"ignored", 7), 2);
    cr_assert_eq(out[0], 0x88);
    cr_assert_eq(out[1], 0x00);
    cr_assert_eq(ws_close_frame(out, 1000, (const uint8_t *)"bye", 3), 7);
    const uint8_t want[] = {0x88, 5, 0x03, 0xe8, 'b', 'y', 'e'};
    cr_assert_arr_eq(out, want, sizeof want);
    cr_assert_eq(ws_close_frame(out, 1001, NULL, 0), 4);
    cr_assert_eq(out[1], 2);
    /* codes a close frame must not carry become 1011 */
    uint32_t bad[] = {999, 1004, 1006, 1015, 2999, 5000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(ws_close_frame(out, (uint16_t)bad[i], NULL, 0), 4);
        cr_assert_eq(out[2] << 8 | out[3], 1011, "code %u", bad[i]);
    }
    expect_log(false, out, 4, "close(1011,) ");
}

/* The reason is cut to 123 bytes at a character boundary; the frame parses
 * back (as a client) to the same code and the cut reason. */
Test(encode, close_reason_truncation)
{
    static const struct {
        size_t ascii;      /* leading ASCII bytes */
        const char *tail;  /* then this */
        size_t want;       /* reason bytes kept */
    } cases[] = {
        {123, "", 123},        {124, "", 123},        {200, "", 123},
        {122, "\xc3\xa9", 122}, {121, "\xc3\xa9", 123}, {121, "\xe2\x82\xac", 121},
        {120, "\xe2\x82\xac", 123}, {122, "\xf0\x9f\x98\x80", 122}, {119, "\xf0\x9f\x98\x80", 123},
        {0, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 120},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t reason[300], out[2 + 2 + WS_REASON_MAX];
        memset(reason, 'r', cases[i].ascii);
        size_t tl = strlen(cases[i].tail);
        memcpy(reason + cases[i].ascii, cases[i].tail, tl);
        size_t rl = cases[i].ascii + tl;
        /* pad with 4-byte characters so the cut can fall anywhere */
        while (rl + 4 <= sizeof reason && rl < 140) {
            memcpy(reason + rl, "\xf0\x9f\x98\x80", 4);
            rl += 4;
        }
        if (cases[i].ascii >= 123)
            rl = cases[i].ascii;
        size_t n = ws_close_frame(out, 3000, reason, rl);
        cr_assert_eq(n, 4 + cases[i].want, "case %zu: %zu", i, n);
        cr_assert_eq(out[1], 2 + cases[i].want);
        cr_assert_arr_eq(out + 4, reason, cases[i].want);
        cr_assert_eq(ws_utf8_step(0, out + 4, cases[i].want), 0, "case %zu cut inside a character", i);
        static run_log r;
        run(&r, false, 0, out, n, 0, SIZE_MAX);
        cr_assert_eq(r.rc, 0);
        cr_assert_eq(r.events, 1);
    }
}

Test(encode, mask_pieces_equal_whole)
{
    uint8_t a[77], b[77];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i * 13 + 1);
    ws_mask(a, sizeof a, KEY, 0);
    for (size_t i = 0; i < sizeof a; i++)
        cr_assert_eq(a[i], (uint8_t)((i * 13 + 1) ^ KEY[i % 4]));
    /* in pieces of every size, carrying the offset */
    for (size_t piece = 1; piece < 20; piece++) {
        uint8_t c[77];
        memcpy(c, b, sizeof c);
        size_t off = 0;
        for (size_t at = 0; at < sizeof c; at += piece)
            off = ws_mask(c + at, at + piece <= sizeof c ? piece : sizeof c - at, KEY, off);
        cr_assert_arr_eq(c, a, sizeof a, "pieces of %zu", piece);
        cr_assert_eq(off, sizeof c % 4);
    }
    ws_mask(a, sizeof a, KEY, 0);
    cr_assert_arr_eq(a, b, sizeof a, "masking twice gives the input");
}

/* ---- handshake --------------------------------------------------------- */

Test(handshake, rfc_accept_value)
{
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws_accept_value(key, strlen(key), out);
    cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(handshake, key_validation)
{
    const char *good[] = {"dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "+/+/+/+/+/+/+/+/+/+/+w==",
                          "zzzzzzzzzzzzzzzzzzzzzz=="};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert(ws_key_valid(good[i], strlen(good[i])), "%s", good[i]);
    const char *bad[] = {"", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                         "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQAA", "dGhlIHNhbXBsZSBub25jZ===",
                         "dGhlIHNhbXBsZSBub25j*Q==", "dGhlIHNhbXBsZSBub25jZQ=x", "dGhl IHNhbXBsZSBub25jZQ=",
                         "dGhlIHNhbXBsZSBub25jZQ-=", "dGhlIHNhbXBsZSBub25jZSBub25jZQ==" /* 22 bytes */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(ws_key_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
    cr_assert_not(ws_key_valid(NULL, 24));
    /* a NUL inside the counted length */
    cr_assert_not(ws_key_valid("dGhlIHNhbXBsZSBu\0b25jZQ==", 24));
}

/* ---- API edges --------------------------------------------------------- */

Test(api, invalid_arguments)
{
    cr_assert_eq(ws_parser_new(NULL, true, 0), -EINVAL);
    ws_parser *p;
    cr_assert_eq(ws_parser_new(&p, true, 0), 0);
    ws_event ev;
    size_t used = 7;
    uint8_t b[2] = {0x81, 0x80};
    cr_assert_eq(ws_parser_feed(p, NULL, 1, 1, &used, &ev), -EINVAL);
    cr_assert_eq(used, 0);
    cr_assert_eq(ws_parser_feed(p, b, 2, 1, NULL, &ev), -EINVAL);
    cr_assert_eq(ws_parser_feed(p, b, 2, 1, &used, NULL), -EINVAL);
    /* the parser is not failed by caller mistakes */
    cr_assert_eq(ws_parser_feed(p, NULL, 0, 1, &used, &ev), 0);
    cr_assert_eq(ws_parser_feed(p, b, 2, 1, &used, &ev), 0);
    cr_assert_eq(used, 2);
    ws_parser_free(p);
    ws_parser_free(NULL);
    cr_assert_not(ws_parser_in_message(NULL));
}
