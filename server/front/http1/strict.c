#include "front/http1/strict.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 5.6.2 tchar */
const uint8_t http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static int hexval(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_digit(uint8_t ch) { return ch >= '0' && ch <= '9'; }

/* ---- request head / trailer section ------------------------------------ */

enum {
    HS_IDLE,
    HS_LEAD,     /* empty lines before the request line */
    HS_LEAD_CR,
    HS_METHOD,
    HS_TARGET,
    HS_VERSION,
    HS_RL_CR,    /* CR after the version seen */
    HS_LINE_START,
    HS_LINE,
    HS_LINE_CR,
    HS_END_CR,   /* CR of the empty line ending the section */
};

void head_scan_start(head_scan *h, bool request)
{
    memset(h, 0, sizeof *h);
    h->state = request ? HS_LEAD : HS_LINE_START;
}

bool head_scan_active(const head_scan *h) { return h->state != HS_IDLE; }

static bool method_is(const head_scan *h, const char *m)
{
    size_t n = strlen(m);
    return h->method_len == n && !memcmp(h->method, m, n);
}

size_t head_scan_run(head_scan *h, const uint8_t *p, size_t n, int *status)
{
    static const char proto[] = "HTTP/";
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t ch = p[i];
        switch (h->state) {
        case HS_IDLE:
            return i;
        case HS_LEAD: /* RFC 9112 2.2: ignore CRLFs before the request line */
            if (ch == '\r') {
                h->state = HS_LEAD_CR;
                break;
            }
            if (!http_tchar[ch])
                goto bad;
            h->state = HS_METHOD;
            /* fall through */
        case HS_METHOD:
            if (ch == ' ') {
                if (method_is(h, "CONNECT")) { /* not a proxy: no tunnels */
                    *status = 501;
                    return i;
                }
                h->state = HS_TARGET;
                break;
            }
            if (!http_tchar[ch])
                goto bad;
            if (h->method_len < sizeof h->method)
                h->method[h->method_len] = (char)ch;
            if (h->method_len < 255)
                h->method_len++;
            break;
        case HS_TARGET:
            if (ch == ' ') {
                if (h->target_len == 0)
                    goto bad; /* two spaces */
                if (h->target_star && !method_is(h, "OPTIONS"))
                    goto bad; /* RFC 9112 3.2.4 */
                h->state = HS_VERSION;
                h->vpos = 0;
                break;
            }
            /* CR or LF here: no version (HTTP/0.9 or a missing space) */
            if (ch <= 0x20 || ch >= 0x7f)
                goto bad;
            h->target_star = h->target_len == 0 && ch == '*';
            h->target_len++;
            break;
        case HS_VERSION: /* "HTTP/" DIGIT "." DIGIT, then CR */
            if (h->vpos < 5) {
                if (ch != (uint8_t)proto[h->vpos])
                    goto bad;
            } else if (h->vpos == 5 || h->vpos == 7) {
                if (!is_digit(ch))
                    goto bad;
                if (h->vpos == 5)
                    h->major = (uint8_t)(ch - '0');
            } else if (h->vpos == 6) {
                if (ch != '.')
                    goto bad;
            } else {
                if (ch != '\r')
                    goto bad;
                if (h->major != 1) { /* 0.x is not HTTP/1; 2+ is a version we lack */
                    *status = h->major == 0 ? 400 : 505;
                    return i;
                }
                h->state = HS_RL_CR;
                break;
            }
            h->vpos++;
            break;
        case HS_LEAD_CR:
        case HS_RL_CR:
        case HS_LINE_CR:
            if (ch != '\n')
                goto bad; /* bare CR */
            h->state = h->state == HS_LEAD_CR ? HS_LEAD : HS_LINE_START;
            break;
        case HS_LINE_START:
            if (ch == '\r') {
                h->state = HS_END_CR;
                break;
            }
            if (ch == '\n')
                goto bad;
            h->state = HS_LINE;
            break;
        case HS_LINE: {
            /* skip to the next CR or LF; llhttp checks the field syntax */
            const uint8_t *cr = memchr(p + i, '\r', n - i);
            const uint8_t *lf = memchr(p + i, '\n', cr ? (size_t)(cr - (p + i)) : n - i);
            if (lf) {
                i = (size_t)(lf - p);
                goto bad; /* bare LF */
            }
            if (!cr)
                return n;
            i = (size_t)(cr - p);
            h->state = HS_LINE_CR;
            break;
        }
        case HS_END_CR:
            if (ch != '\n')
                goto bad;
            h->state = HS_IDLE;
            return i + 1;
        }
    }
    return n;
bad:
    *status = 400;
    return i;
}

/* ---- chunk-size line ----------------------------------------------------- */

enum {
    CS_SIZE0,      /* the first hex digit */
    CS_SIZE,       /* more digits, BWS, ';' or CR */
    CS_BWS,        /* BWS after the size or a value: ';' or CR next */
    CS_SEMI,       /* after ';': BWS, then a name */
    CS_NAME,
    CS_AFTER_NAME, /* BWS after a name: '=', ';' or CR next */
    CS_EQ,         /* after '=': BWS, then a value */
    CS_VALUE,
    CS_QEND,       /* after a quoted value: ';', CR or BWS */
    CS_QUOTED,
    CS_QPAIR,
    CS_CR,
};

void chunk_scan_start(chunk_scan *c) { memset(c, 0, sizeof *c); }

static bool bws(uint8_t ch) { return ch == ' ' || ch == '\t'; }

size_t chunk_scan_run(chunk_scan *c, const uint8_t *p, size_t n, bool *done, int *status)
{
    *done = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (++c->len > CHUNK_LINE_MAX)
            goto bad; /* RFC 9112 7.1.1: extensions are bounded */
        switch (c->state) {
        case CS_SIZE0:
        case CS_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->size || v) {
                    if (++c->digits > 16)
                        goto bad; /* over 64 bits */
                }
                c->size = c->size << 4 | (uint64_t)v;
                c->state = CS_SIZE;
                break;
            }
            if (c->state == CS_SIZE0)
                goto bad;
            if (ch == '\r')
                c->state = CS_CR;
            else if (ch == ';')
                c->state = CS_SEMI;
            else if (bws(ch))
                c->state = CS_BWS;
            else
                goto bad;
            break;
        }
        case CS_BWS:
            if (ch == ';')
                c->state = CS_SEMI;
            else if (!bws(ch))
                goto bad; /* only an extension may follow whitespace */
            break;
        case CS_SEMI:
            if (http_tchar[ch])
                c->state = CS_NAME;
            else if (!bws(ch))
                goto bad;
            break;
        case CS_NAME:
        case CS_AFTER_NAME:
            if (c->state == CS_NAME && http_tchar[ch])
                break;
            if (ch == '=')
                c->state = CS_EQ;
            else if (ch == ';')
                c->state = CS_SEMI;
            else if (ch == '\r' && c->state == CS_NAME)
                c->state = CS_CR; /* BWS is only allowed before '=' or ';' */
            else if (bws(ch))
                c->state = CS_AFTER_NAME;
            else
                goto bad;
            break;
        case CS_EQ:
            if (ch == '"')
                c->state = CS_QUOTED;
            else if (http_tchar[ch])
                c->state = CS_VALUE;
            else if (!bws(ch))
                goto bad;
            break;
        case CS_VALUE:
        case CS_QEND:
            if (c->state == CS_VALUE && http_tchar[ch])
                break;
            if (ch == ';')
                c->state = CS_SEMI;
            else if (ch == '\r')
                c->state = CS_CR;
            else if (bws(ch))
                c->state = CS_BWS;
            else
                goto bad;
            break;
        case CS_QUOTED: /* RFC 9110 5.6.4 qdtext */
            if (ch == '"')
                c->state = CS_QEND;
            else if (ch == '\\')
                c->state = CS_QPAIR;
            else if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
                goto bad;
            break;
        case CS_QPAIR:
            if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
                goto bad;
            c->state = CS_QUOTED;
            break;
        case CS_CR:
            if (ch != '\n')
                goto bad;
            *done = true;
            return i + 1;
        }
    }
    return n;
bad:
    *status = 400;
    return (size_t)-1;
}

/* ---- Host ---------------------------------------------------------------- */

/* RFC 3986 reg-name: unreserved / sub-delims (pct-encoded apart), without
 * ',' -- a comma list is never one host. */
static bool reg_name_char(uint8_t ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch))
        return true;
    switch (ch) {
    case '-': case '.': case '_': case '~':
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+': case ';': case '=':
        return true;
    default:
        return false;
    }
}

bool host_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (n && p[0] == '[') { /* IP-literal: IPv6 (or IPvFuture) in brackets */
        for (i = 1; i < n && p[i] != ']'; i++)
            if (!(hexval(p[i]) >= 0 || p[i] == ':' || p[i] == '.' || p[i] == 'v' || p[i] == 'V'))
                return false;
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        for (; i < n && p[i] != ':'; i++) {
            if (reg_name_char(p[i]))
                continue;
            if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
                i += 2;
                continue;
            }
            return false;
        }
    }
    if (i == n)
        return true;
    if (p[i] != ':' || n - i - 1 > 5)
        return false;
    uint32_t port = 0;
    for (i++; i < n; i++) {
        if (!is_digit(p[i]))
            return false;
        port = port * 10 + (uint32_t)(p[i] - '0');
    }
    return port <= 65535;
}

int target_authority(const uint8_t *t, size_t n, const uint8_t **auth, size_t *auth_len)
{
    if (n == 0 || t[0] == '/' || (n == 1 && t[0] == '*'))
        return 0;
    size_t s;
    if (n >= 7 && !strncasecmp((const char *)t, "http://", 7))
        s = 7;
    else if (n >= 8 && !strncasecmp((const char *)t, "https://", 8))
        s = 8;
    else
        return -1; /* not a scheme this gateway serves, or not absolute form */
    size_t e = s;
    while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#')
        e++;
    /* RFC 9110 4.2.1: an http URI with an empty host is invalid; 4.2.4:
     * userinfo is refused by host_valid ('@') */
    if (e == s || t[s] == ':' || !host_valid(t + s, e - s))
        return -1;
    *auth = t + s;
    *auth_len = e - s;
    return 1;
}
