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
    if (strncasecmp(s, "http://", 7) != 0) {
        *err = strncasecmp(s, "https://", 8) == 0 ? "https is not supported (plain HTTP/1.1 only)"
                                                   : "the URL must start with http://";
        return -EINVAL;
    }
    const char *a = s + 7;
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
    u->host = dupn(host, hlen);
    u->port = port ? dupn(port, plen) : dupn("80", 2);
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
