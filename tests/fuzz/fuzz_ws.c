/* libFuzzer target: arbitrary bytes into the RFC 6455 parser (server/ws/).
 *
 * Input: a control byte (bit 0: server mode, bits 1-2: max_message, the
 * rest seed the piece sizes), a byte seeding the credit (max_data) of each
 * call, then the stream. The stream is parsed twice: in one call per event
 * with unlimited credit, and in pieces (each in a buffer of its own, so
 * ASan sees reads past it) with varying credit, 0 included. Both must tell
 * the same story: the same messages, control frames and error (before an
 * error the piecewise run may have handed out more valid text: the one-shot
 * run checks a whole frame's bytes before it hands any out). Every event is
 * checked against the API's promises, and every text message against a
 * reference UTF-8 decoder written differently from ws_utf8_step. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

/* ---- reference UTF-8: decode code points, then judge them ---------------- */

static bool ref_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t k;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            cp = b & 0x1f, k = 1;
        } else if ((b & 0xf0) == 0xe0) {
            cp = b & 0x0f, k = 2;
        } else if ((b & 0xf8) == 0xf0) {
            cp = b & 0x07, k = 3;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* ---- the event log --------------------------------------------------------- */

/* Pairs of bytes: (0, b) a payload byte, (1, text) a message's end, (2, 0)
 * ping, (3, 0) pong, (4, hi) (5, lo) close, (6, code - 1000) an error. */
typedef struct {
    uint8_t *b;
    size_t len, cap;
    /* message tracking */
    bool in_msg, text;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    bool closed;
} log_t;

static void put(log_t *l, uint8_t tag, uint8_t v)
{
    if (l->len + 2 > l->cap)
        abort();
    l->b[l->len++] = tag;
    l->b[l->len++] = v;
}

static void put_bytes(log_t *l, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(l, 0, d[i]);
}

/* Check one event and log it. */
static void event(log_t *l, ws_parser *p, const ws_event *ev, const uint8_t *in, size_t used, size_t max_data)
{
    if (l->closed)
        abort(); /* nothing after a close */
    switch (ev->type) {
    case WS_EV_DATA:
        if (ev->len > max_data || ev->data < in || ev->data + ev->len > in + used)
            abort();
        if (ev->first != !l->in_msg)
            abort();
        if (ev->first)
            l->text = ev->text;
        if (ev->text != l->text || (ev->len == 0 && !ev->fin))
            abort();
        if (l->msg_len + ev->len > l->msg_cap)
            abort();
        memcpy(l->msg + l->msg_len, ev->data, ev->len);
        l->msg_len += ev->len;
        put_bytes(l, ev->data, ev->len);
        l->in_msg = !ev->fin;
        if (ws_parser_in_message(p) != l->in_msg)
            abort();
        if (ev->fin) {
            if (ev->text && !ref_utf8(l->msg, l->msg_len))
                abort(); /* a text message that is not UTF-8 got through */
            put(l, 1, ev->text);
            l->msg_len = 0;
        }
        break;
    case WS_EV_PING:
    case WS_EV_PONG:
        if (ev->len > WS_CONTROL_MAX || (ev->len && !ev->data))
            abort();
        put_bytes(l, ev->data, ev->len);
        put(l, ev->type == WS_EV_PING ? 2 : 3, 0);
        break;
    case WS_EV_CLOSE:
        if (ev->len > WS_REASON_MAX || (ev->len && !ev->data))
            abort();
        if (ev->code == WS_CLOSE_NO_STATUS ? ev->len != 0 : !ws_close_code_sendable(ev->code))
            abort();
        if (!ref_utf8(ev->data, ev->len))
            abort();
        put_bytes(l, ev->data, ev->len);
        put(l, 4, (uint8_t)(ev->code >> 8));
        put(l, 5, (uint8_t)ev->code);
        l->closed = true;
        break;
    default:
        abort();
    }
}

static bool is_ws_error(int rc)
{
    return rc == WS_E_PROTOCOL || rc == WS_E_UTF8 || rc == WS_E_TOO_BIG;
}

static void log_init(log_t *l, size_t size)
{
    memset(l, 0, sizeof *l);
    l->cap = 6 * size + 64;
    l->b = malloc(l->cap);
    l->msg_cap = size + 1;
    l->msg = malloc(l->msg_cap);
    if (!l->b || !l->msg)
        abort();
}

static void log_free(log_t *l)
{
    free(l->b);
    free(l->msg);
}

static uint32_t rng(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t ctl = data[0], credit = data[1];
    data += 2;
    size -= 2;
    bool server = ctl & 1;
    static const uint64_t limits[] = {0, 16, 300, 70000};
    uint64_t max_message = limits[(ctl >> 1) & 3];

    /* the UTF-8 step function against the reference, whole and split */
    {
        bool want = ref_utf8(data, size);
        if ((ws_utf8_step(0, data, size) == 0) != want)
            abort();
        size_t k = size ? (ctl ^ credit) % (size + 1) : 0;
        int s = ws_utf8_step(0, data, k);
        if (s >= 0)
            s = ws_utf8_step(s, data + k, size - k);
        if ((s == 0) != want)
            abort();
    }

    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();

    /* one-shot: the whole input in one buffer, unlimited credit */
    log_t a;
    log_init(&a, size);
    int a_rc = 0;
    {
        memcpy(copy, data, size);
        ws_parser *p;
        if (ws_parser_new(&p, server, max_message) != 0)
            abort();
        size_t pos = 0;
        while (pos < size) {
            ws_event ev;
            size_t used = SIZE_MAX;
            int rc = ws_parser_feed(p, copy + pos, size - pos, SIZE_MAX, &used, &ev);
            if (used > size - pos)
                abort();
            if (rc < 0) {
                if (!is_ws_error(rc))
                    abort();
                a_rc = rc;
                /* failed stays failed */
                if (ws_parser_feed(p, copy, size, SIZE_MAX, &used, &ev) != rc || used != 0)
                    abort();
                break;
            }
            if (rc == 1)
                event(&a, p, &ev, copy + pos, used, SIZE_MAX);
            else if (rc != 0 || pos + used != size)
                abort(); /* 0 with unlimited credit means all consumed */
            pos += used;
        }
        ws_parser_free(p);
    }

    /* piecewise, with varying credit */
    log_t b;
    log_init(&b, size);
    int b_rc = 0;
    {
        uint32_t seed = 0x9e3779b9u ^ (uint32_t)ctl << 8 ^ credit;
        static const size_t credits[] = {0, 1, 2, 3, 5, 8, 13, 125, 126, 4096, SIZE_MAX};
        ws_parser *p;
        if (ws_parser_new(&p, server, max_message) != 0)
            abort();
        size_t off = 0; /* bytes of `data` handed to the parser */
        while (off < size && b_rc == 0) {
            size_t n = 1 + rng(&seed) % ((ctl >> 3) + 1);
            if (n > size - off)
                n = size - off;
            uint8_t *piece = malloc(n);
            if (!piece)
                abort();
            memcpy(piece, data + off, n);
            size_t pos = 0;
            bool stalled = false;
            while (pos < n) {
                size_t md = stalled ? 1 + rng(&seed) % 7 : credits[rng(&seed) % (sizeof credits / sizeof credits[0])];
                ws_event ev;
                size_t used = SIZE_MAX;
                int rc = ws_parser_feed(p, piece + pos, n - pos, md, &used, &ev);
                if (used > n - pos)
                    abort();
                if (rc < 0) {
                    if (!is_ws_error(rc))
                        abort();
                    b_rc = rc;
                    break;
                }
                if (rc == 1) {
                    event(&b, p, &ev, piece + pos, used, md);
                } else if (rc == 0) {
                    if (md > 0 && pos + used != n)
                        abort(); /* with credit, 0 means all consumed */
                }
                stalled = rc == 0 && md == 0 && used == 0;
                pos += used;
            }
            free(piece);
            off += n;
        }
        ws_parser_free(p);
    }

    /* the same story */
    if (a_rc != b_rc)
        abort();
    if (a_rc == 0) {
        if (a.len != b.len || memcmp(a.b, b.b, a.len) != 0)
            abort();
    } else {
        /* the one-shot log is a prefix of the piecewise one, which may have
         * more payload bytes only */
        if (a.len > b.len || memcmp(a.b, b.b, a.len) != 0)
            abort();
        for (size_t i = a.len; i < b.len; i += 2)
            if (b.b[i] != 0)
                abort();
    }
    log_free(&a);
    log_free(&b);
    free(copy);

    /* the encoders: a close frame built from the input parses back */
    if (size >= 2) {
        uint8_t out[2 + 2 + WS_REASON_MAX];
        uint16_t code = (uint16_t)(data[0] << 8 | data[1]);
        const uint8_t *reason = data + 2;
        size_t rl = size - 2;
        if (!ref_utf8(reason, rl))
            rl = 0;
        size_t n = ws_close_frame(out, code, reason, rl);
        if (n < 2 || n > sizeof out)
            abort();
        ws_parser *p;
        if (ws_parser_new(&p, false, 0) != 0)
            abort();
        ws_event ev;
        size_t used;
        if (ws_parser_feed(p, out, n, 0, &used, &ev) != 1 || used != n || ev.type != WS_EV_CLOSE)
            abort();
        if (code == WS_CLOSE_NO_STATUS ? ev.code != code
                                       : ev.code != (ws_close_code_sendable(code) ? code : WS_CLOSE_INTERNAL))
            abort();
        if (ev.len > rl || memcmp(ev.data, reason, ev.len) != 0)
            abort();
        /* whole when it fits, else cut by at most a character's first 3 bytes */
        size_t want = code == WS_CLOSE_NO_STATUS ? 0 : rl <= WS_REASON_MAX ? rl : WS_REASON_MAX - 3;
        if (ev.len < want)
            abort();
        ws_parser_free(p);
    }
    return 0;
}
