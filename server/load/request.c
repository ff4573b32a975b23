/* URL parsing and request building: see request.h. */
#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "version.h"

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void sload_url_free(sload_url *u)
{
    free(u->host);
    free(u->port);
    free(u->authority);
    free(u->target);
    memset(u, 0, sizeof *u);
}

int sload_url_parse(const char *s, sload_url *u, const char **err)
{
    memset(u, 0, sizeof *u);
    *err = NULL;
    bool tls = strncasecmp(s, "https://", 8) == 0;
    if (!tls && strncasecmp(s, "http://", 7) != 0) {
        *err = "the URL must start with http:// or https://";
        return -EINVAL;
    }
    const char *a = s + (tls ? 8 : 7);
    size_t alen = strcspn(a, "/?#");
    const char *rest = a + alen;
    if (alen == 0) {
        *err = "the URL has no host";
        return -EINVAL;
    }
    if (memchr(a, '@', alen)) {
        *err = "user information in the URL is not supported";
        return -EINVAL;
    }
    const char *host, *port = NULL;
    size_t hlen, plen = 0;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close) {
            *err = "unterminated [IPv6] address";
            return -EINVAL;
        }
        host = a + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < a + alen) {
            if (close[1] != ':') {
                *err = "unexpected characters after ]";
                return -EINVAL;
            }
            port = close + 2;
            plen = (size_t)(a + alen - port);
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        host = a;
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon) {
            port = colon + 1;
            plen = (size_t)(a + alen - port);
        }
    }
    if (hlen == 0) {
        *err = "the URL has no host";
        return -EINVAL;
    }
    if (port) {
        if (plen == 0 || plen > 5 || strspn(port, "0123456789") < plen || atoi(port) > 65535 ||
            atoi(port) == 0) {
            *err = "invalid port";
            return -EINVAL;
        }
    }
    size_t tlen = strcspn(rest, "#");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)rest[i];
        if (ch <= ' ' || ch == 0x7f) {
            *err = "the URL path contains spaces or control characters";
            return -EINVAL;
        }
    }
    u->tls = tls;
    u->host = dupn(host, hlen);
    u->port = port ? dupn(port, plen) : dupn(tls ? "443" : "80", tls ? 3 : 2);
    u->authority = dupn(a, alen);
    if (tlen == 0 || rest[0] == '?') {
        u->target = malloc(tlen + 2);
        if (u->target) {
            u->target[0] = '/';
            memcpy(u->target + 1, rest, tlen);
            u->target[tlen + 1] = '\0';
        }
    } else {
        u->target = dupn(rest, tlen);
    }
    if (!u->host || !u->port || !u->authority || !u->target) {
        sload_url_free(u);
        return -ENOMEM;
    }
    return 0;
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool sload_header_valid(const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return false;
    for (const char *p = line; p < colon; p++)
        if (!is_tchar((unsigned char)*p))
            return false;
    for (const char *p = colon + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\r' || c == '\n' || c == 0x7f || (c < ' ' && c != '\t'))
            return false;
    }
    return true;
}

static bool has_header(const sload_request_spec *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->nheaders; i++)
        if (strncasecmp(s->headers[i], name, n) == 0 && s->headers[i][n] == ':')
            return true;
    return false;
}

int sload_request_build(const sload_request_spec *s, char **out, size_t *out_len)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -ENOMEM;
    fprintf(f, "%s %s HTTP/1.1\r\n", s->method, s->url->target);
    if (!has_header(s, "Host"))
        fprintf(f, "Host: %s\r\n", s->url->authority);
    if (!has_header(s, "User-Agent"))
        fprintf(f, "User-Agent: sluice-load/%s\r\n", SLOAD_VERSION);
    for (size_t i = 0; i < s->nheaders; i++) {
        /* "Name:value" and "Name:  value" are normalised to "Name: value". */
        const char *colon = strchr(s->headers[i], ':');
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        fprintf(f, "%.*s: %s\r\n", (int)(colon - s->headers[i]), s->headers[i], v);
    }
    if ((s->body_len > 0 || s->body_always_length) && !has_header(s, "Content-Length") &&
        !has_header(s, "Transfer-Encoding"))
        fprintf(f, "Content-Length: %zu\r\n", s->body_len);
    if (!s->keepalive && !has_header(s, "Connection"))
        fputs("Connection: close\r\n", f);
    fputs("\r\n", f);
    if (fclose(f) != 0) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* ---- HTTP/2 ------------------------------------------------------------- */

void sload_h2_headers_free(sload_h2_header *h, size_t n)
{
    if (!h)
        return;
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static int h2_add(sload_h2_header *h, size_t *n, const char *name, size_t nlen, const char *value, size_t vlen)
{
    sload_h2_header *e = &h[*n];
    e->name = dupn(name, nlen);
    e->value = dupn(value, vlen);
    if (!e->name || !e->value) {
        free(e->name);
        free(e->value);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nlen; i++)
        if (e->name[i] >= 'A' && e->name[i] <= 'Z')
            e->name[i] = (char)(e->name[i] | 0x20);
    e->name_len = nlen;
    e->value_len = vlen;
    (*n)++;
    return 0;
}

static bool h2_forbidden(const char *name, size_t nlen, const char *value)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                      "upgrade", "host"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (strlen(hop[i]) == nlen && strncasecmp(name, hop[i], nlen) == 0)
            return true;
    if (nlen == 2 && strncasecmp(name, "te", 2) == 0 && strcasecmp(value, "trailers") != 0)
        return true;
    return false;
}

int sload_h2_headers_build(const sload_request_spec *s, sload_h2_header **out, size_t *out_n)
{
    *out = NULL;
    *out_n = 0;
    sload_h2_header *h = calloc(s->nheaders + 8, sizeof *h);
    if (!h)
        return -ENOMEM;
    size_t n = 0;
    const char *authority = s->url->authority;
    size_t alen = strlen(authority);
    for (size_t i = 0; i < s->nheaders; i++) {
        const char *colon = strchr(s->headers[i], ':');
        if ((size_t)(colon - s->headers[i]) == 4 && strncasecmp(s->headers[i], "host", 4) == 0) {
            authority = colon + 1;
            while (*authority == ' ' || *authority == '\t')
                authority++;
            alen = strlen(authority);
        }
    }
    char ua[64];
    int ualen = snprintf(ua, sizeof ua, "sluice-load/%s", SLOAD_VERSION);
    char cl[32];
    int cllen = snprintf(cl, sizeof cl, "%zu", s->body_len);
    const char *scheme = s->url->tls ? "https" : "http";
    if (h2_add(h, &n, ":method", 7, s->method, strlen(s->method)) < 0 ||
        h2_add(h, &n, ":scheme", 7, scheme, strlen(scheme)) < 0 ||
        h2_add(h, &n, ":path", 5, s->url->target, strlen(s->url->target)) < 0 ||
        h2_add(h, &n, ":authority", 10, authority, alen) < 0)
        goto fail;
    if (!has_header(s, "User-Agent") && h2_add(h, &n, "user-agent", 10, ua, (size_t)ualen) < 0)
        goto fail;
    if ((s->body_len > 0 || s->body_always_length) && !has_header(s, "Content-Length") &&
        h2_add(h, &n, "content-length", 14, cl, (size_t)cllen) < 0)
        goto fail;
    for (size_t i = 0; i < s->nheaders; i++) {
        const char *line = s->headers[i];
        const char *colon = strchr(line, ':');
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (h2_forbidden(line, nlen, v))
            continue;
        if (h2_add(h, &n, line, nlen, v, strlen(v)) < 0)
            goto fail;
    }
    *out = h;
    *out_n = n;
    return 0;
fail:
    sload_h2_headers_free(h, n);
    return -ENOMEM;
}
