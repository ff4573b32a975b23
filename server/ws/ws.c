/* ws: RFC 6455 framing, sans-I/O. See ws.h for the model.
 *
 * Our own code rather than libwslay: the gateway needs a streaming parser
 * that hands data out piece by piece, unmasked in place in the caller's
 * buffer and capped by the receiver's credit (max_data), with memory bounded
 * by the parser struct alone (no message or frame buffering), and small
 * enough to be fuzzed whole by our libFuzzer harness (tests/fuzz/fuzz_ws.c).
 *
 * The frame head is taken one byte at a time and checked as each byte
 * arrives, so a violation is found at the same byte however the input is
 * split (byte-by-byte feeding gives what one-shot feeding gives). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws_parser {
    bool server;        /* parses a client's (masked) frames */
    bool closed;        /* a close frame was handed out: ignore the rest */
    int error;          /* sticky WS_E_* once failed */
    uint64_t max_message;

    /* the frame head being gathered */
    uint8_t head[WS_HEAD_MAX];
    uint8_t head_len, head_need;
    uint8_t len7;

    /* the frame whose payload is being read (in_frame) */
    bool in_frame;
    bool fin;
    uint8_t opcode;
    uint8_t mask[4];
    size_t mask_off;
    uint64_t remaining;

    /* the data message in progress */
    bool msg_active;    /* a text/binary frame began it, its fin frame has not ended */
    bool msg_given;     /* its first piece was handed out */
    bool msg_text;
    int utf8;           /* ws_utf8_step state across pieces and frames */
    uint64_t msg_len;   /* declared payload so far, saturating */

    /* a control frame's payload, gathered across feeds */
    uint8_t ctl[WS_CONTROL_MAX];
    uint8_t ctl_len;
};

static bool is_control(unsigned op)
{
    return (op & 0x8) != 0;
}

int ws_parser_new(ws_parser **out, bool server, uint64_t max_message)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    ws_parser *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->server = server;
    p->max_message = max_message;
    *out = p;
    return 0;
}

void ws_parser_free(ws_parser *p)
{
    free(p);
}

void ws_parser_set_max_message(ws_parser *p, uint64_t max_message)
{
    if (p)
        p->max_message = max_message;
}

bool ws_parser_in_message(const ws_parser *p)
{
    return p && p->msg_given;
}

static int fail(ws_parser *p, int code)
{
    p->error = code;
    return code;
}

/* Would `more` declared bytes take the message past its limit? */
static bool too_big(const ws_parser *p, uint64_t more)
{
    return p->max_message && (p->msg_len > p->max_message || more > p->max_message - p->msg_len);
}

/* Take one head byte; check what it lets us check. Returns <0 on a
 * violation, 1 when the head is complete, else 0. */
static int head_byte(ws_parser *p, uint8_t b)
{
    p->head[p->head_len++] = b;
    if (p->head_len == 1) {
        unsigned op = b & 0x0f;
        if (b & 0x70)
            return fail(p, WS_E_PROTOCOL); /* RSV bits: no extension negotiated */
        if ((op >= 0x3 && op <= 0x7) || op >= 0xB)
            return fail(p, WS_E_PROTOCOL);
        if (is_control(op)) {
            if (!(b & 0x80))
                return fail(p, WS_E_PROTOCOL); /* control frames are never fragmented */
        } else if (op == WS_OP_CONT) {
            if (!p->msg_active)
                return fail(p, WS_E_PROTOCOL);
        } else {
            if (p->msg_active)
                return fail(p, WS_E_PROTOCOL); /* a new message inside one */
            p->msg_active = true;
            p->msg_given = false;
            p->msg_text = op == WS_OP_TEXT;
            p->utf8 = 0;
            p->msg_len = 0;
        }
        p->opcode = (uint8_t)op;
        p->fin = (b & 0x80) != 0;
        return 0;
    }
    if (p->head_len == 2) {
        bool masked = (b & 0x80) != 0;
        if (masked != p->server)
            return fail(p, WS_E_PROTOCOL);
        p->len7 = b & 0x7f;
        p->head_need = (uint8_t)(2 + (p->len7 == 126 ? 2 : p->len7 == 127 ? 8 : 0) + (masked ? 4 : 0));
    }
    unsigned ext = p->len7 == 126 ? 2 : p->len7 == 127 ? 8 : 0;
    if (p->head_len == 2 + ext) {
        uint64_t n = p->len7;
        if (ext) {
            n = 0;
            for (unsigned i = 0; i < ext; i++)
                n = n << 8 | p->head[2 + i];
        }
        if (n >> 63)
            return fail(p, WS_E_PROTOCOL);
        if (is_control(p->opcode)) {
            if (n > WS_CONTROL_MAX)
                return fail(p, WS_E_PROTOCOL);
        } else {
            if (too_big(p, n))
                return fail(p, WS_E_TOO_BIG);
            p->msg_len += n; /* n < 2^63 and, with a limit, msg_len + n <= limit */
            if (p->msg_len < n)
                p->msg_len = UINT64_MAX;
        }
        p->remaining = n;
    }
    if (p->head_len < p->head_need)
        return 0;
    if (p->server)
        memcpy(p->mask, p->head + p->head_need - 4, 4);
    p->mask_off = 0;
    p->head_len = 0;
    p->ctl_len = 0;
    p->in_frame = true;
    return 1;
}

static bool close_code_valid(uint32_t code)
{
    return ws_close_code_sendable(code);
}

/* The control frame in p->ctl is complete: make its event. */
static int control_event(ws_parser *p, ws_event *ev)
{
    p->in_frame = false;
    memset(ev, 0, sizeof *ev);
    ev->data = p->ctl;
    ev->len = p->ctl_len;
    if (p->opcode == WS_OP_PING) {
        ev->type = WS_EV_PING;
        return 1;
    }
    if (p->opcode == WS_OP_PONG) {
        ev->type = WS_EV_PONG;
        return 1;
    }
    ev->type = WS_EV_CLOSE;
    if (p->ctl_len == 0) {
        ev->code = WS_CLOSE_NO_STATUS;
    } else {
        if (p->ctl_len == 1)
            return fail(p, WS_E_PROTOCOL);
        uint16_t code = (uint16_t)(p->ctl[0] << 8 | p->ctl[1]);
        if (!close_code_valid(code))
            return fail(p, WS_E_PROTOCOL);
        if (ws_utf8_step(0, p->ctl + 2, p->ctl_len - 2u) != 0)
            return fail(p, WS_E_UTF8);
        ev->code = code;
        ev->data = p->ctl + 2;
        ev->len = p->ctl_len - 2u;
    }
    p->closed = true;
    return 1;
}

/* A data frame's payload has been read: end the frame (and the message). */
static void end_data_frame(ws_parser *p)
{
    p->in_frame = false;
    if (p->fin) {
        p->msg_active = false;
        p->msg_given = false;
        p->msg_len = 0;
    }
}

int ws_parser_feed(ws_parser *p, uint8_t *data, size_t len, size_t max_data,
                   size_t *consumed, ws_event *ev)
{
    if (consumed)
        *consumed = 0;
    if (!p || !consumed || !ev || (!data && len))
        return -EINVAL;
    if (p->error)
        return p->error;
    if (p->closed) {
        *consumed = len; /* nothing may follow a close frame: discard it */
        return 0;
    }
    /* a limit lowered by ws_parser_set_max_message */
    if (p->msg_active && p->max_message && p->msg_len > p->max_message)
        return fail(p, WS_E_TOO_BIG);

    size_t pos = 0;
    for (;;) {
        if (!p->in_frame) {
            if (pos == len)
                break;
            int rc = head_byte(p, data[pos++]);
            if (rc < 0) {
                *consumed = pos;
                return rc;
            }
            if (rc == 0 || p->remaining > 0)
                continue;
            /* an empty frame: its event (if any) now */
            if (is_control(p->opcode)) {
                *consumed = pos;
                return control_event(p, ev);
            }
            bool first = !p->msg_given;
            bool fin = p->fin;
            bool text = p->msg_text;
            if (fin && text && p->utf8 != 0) {
                *consumed = pos;
                return fail(p, WS_E_UTF8); /* the message ends inside a character */
            }
            end_data_frame(p);
            if (!fin)
                continue; /* an empty non-final frame says nothing */
            memset(ev, 0, sizeof *ev);
            ev->type = WS_EV_DATA;
            ev->text = text;
            ev->first = first;
            ev->fin = true;
            ev->data = data + pos;
            ev->len = 0;
            *consumed = pos;
            return 1;
        }
        if (pos == len)
            break;
        size_t avail = len - pos;
        if (is_control(p->opcode)) {
            size_t take = avail < p->remaining ? avail : (size_t)p->remaining;
            memcpy(p->ctl + p->ctl_len, data + pos, take);
            p->mask_off = ws_mask(p->ctl + p->ctl_len, take, p->mask, p->mask_off);
            p->ctl_len = (uint8_t)(p->ctl_len + take);
            p->remaining -= take;
            pos += take;
            if (p->remaining == 0) {
                *consumed = pos;
                return control_event(p, ev);
            }
            break;
        }
        if (max_data == 0)
            break; /* no credit: stop in front of the payload */
        size_t take = avail;
        if (take > p->remaining)
            take = (size_t)p->remaining;
        if (take > max_data)
            take = max_data;
        uint8_t *piece = data + pos;
        if (p->server)
            p->mask_off = ws_mask(piece, take, p->mask, p->mask_off);
        pos += take;
        p->remaining -= take;
        bool fin = p->fin && p->remaining == 0;
        if (p->msg_text) {
            p->utf8 = ws_utf8_step(p->utf8, piece, take);
            if (p->utf8 < 0 || (fin && p->utf8 != 0)) {
                *consumed = pos;
                return fail(p, WS_E_UTF8);
            }
        }
        memset(ev, 0, sizeof *ev);
        ev->type = WS_EV_DATA;
        ev->text = p->msg_text;
        ev->first = !p->msg_given;
        ev->fin = fin;
        ev->data = piece;
        ev->len = take;
        p->msg_given = true;
        if (p->remaining == 0)
            end_data_frame(p);
        *consumed = pos;
        return 1;
    }
    *consumed = pos;
    return 0;
}

/* ---- encoding ---------------------------------------------------------- */

size_t ws_frame_head(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *mask)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t m = mask ? 0x80 : 0;
    if (len <= 125) {
        out[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

size_t ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    size_t i = 0;
    offset &= 3;
    /* byte by byte up to key offset 0, then 8 bytes at a time */
    while (i < len && offset != 0) {
        data[i++] ^= key[offset];
        offset = (offset + 1) & 3;
    }
    if (len - i >= 8) {
        uint8_t k8[8];
        for (int j = 0; j < 8; j++)
            k8[j] = key[j & 3];
        uint64_t k;
        memcpy(&k, k8, 8);
        for (; len - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, data + i, 8);
            w ^= k;
            memcpy(data + i, &w, 8);
        }
    }
    while (i < len) {
        data[i++] ^= key[offset];
        offset = (offset + 1) & 3;
    }
    return offset;
}

bool ws_close_code_sendable(uint32_t code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

size_t ws_close_frame(uint8_t *out, uint16_t code, const uint8_t *reason, size_t reason_len)
{
    if (code == WS_CLOSE_NO_STATUS) {
        out[0] = 0x80 | WS_OP_CLOSE;
        out[1] = 0;
        return 2;
    }
    if (!ws_close_code_sendable(code))
        code = WS_CLOSE_INTERNAL;
    if (!reason)
        reason_len = 0;
    if (reason_len > WS_REASON_MAX) {
        /* cut in front of the character the limit falls in */
        reason_len = WS_REASON_MAX;
        while (reason_len > 0 && (reason[reason_len] & 0xc0) == 0x80)
            reason_len--;
    }
    out[0] = 0x80 | WS_OP_CLOSE;
    out[1] = (uint8_t)(2 + reason_len);
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    if (reason_len)
        memcpy(out + 4, reason, reason_len);
    return 4 + reason_len;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* A state is need + 4 * range: `need` continuation bytes still to come
 * (1..3), and the range the next one must fall in, which is narrower than
 * 80..BF right after some lead bytes (overlongs, surrogates, > U+10FFFF). */
enum { R_ANY, R_A0_BF, R_80_9F, R_90_BF, R_80_8F };
static const uint8_t range_lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const uint8_t range_hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

int ws_utf8_step(int state, const uint8_t *data, size_t len)
{
    if (state < 0 || state > 3 + 4 * R_80_8F || (state != 0 && (state & 3) == 0))
        return -1;
    int need = state & 3, range = state >> 2;
    size_t i = 0;
    while (i < len) {
        if (need == 0) {
            /* ASCII runs, 8 bytes at a time */
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, data + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == len)
                break;
            uint8_t b = data[i++];
            if (b < 0x80)
                continue;
            if (b >= 0xC2 && b <= 0xDF) {
                need = 1, range = R_ANY;
            } else if (b == 0xE0) {
                need = 2, range = R_A0_BF;
            } else if (b == 0xED) {
                need = 2, range = R_80_9F;
            } else if (b >= 0xE1 && b <= 0xEF) {
                need = 2, range = R_ANY;
            } else if (b == 0xF0) {
                need = 3, range = R_90_BF;
            } else if (b >= 0xF1 && b <= 0xF3) {
                need = 3, range = R_ANY;
            } else if (b == 0xF4) {
                need = 3, range = R_80_8F;
            } else {
                return -1; /* 80..C1, F5..FF */
            }
            continue;
        }
        uint8_t b = data[i++];
        if (b < range_lo[range] || b > range_hi[range])
            return -1;
        need--;
        range = R_ANY;
    }
    return need + 4 * range;
}

/* ---- handshake --------------------------------------------------------- */

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

bool ws_key_valid(const char *key, size_t len)
{
    /* 16 bytes: 22 characters and "==". Like common servers we do not insist
     * that the unused low bits of the last character be zero. */
    if (!key || len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key[i]))
            return false;
    return true;
}

void ws_accept_value(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    out[0] = '\0';
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c)
        return;
    bool ok = EVP_DigestInit_ex(c, EVP_sha1(), NULL) && EVP_DigestUpdate(c, key, len) &&
              EVP_DigestUpdate(c, WS_GUID, sizeof WS_GUID - 1) && EVP_DigestFinal_ex(c, md, &md_len) &&
              md_len == 20;
    EVP_MD_CTX_free(c);
    if (ok)
        EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
}
