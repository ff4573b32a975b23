/* HTTP field helpers shared by the HTTP/1.1 front end's request and response
 * sides: validation, case-insensitive names, hop-by-hop fields, list
 * elements, reason phrases. Pure functions. */
#ifndef SLUICE_HTTP1_FIELDS_H
#define SLUICE_HTTP1_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "front/http1/strict.h"
#include "sluice_proto.h"

static inline const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
        return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
               : status < 500 ? "Client Error" : "Server Error";
    }
}

static inline bool valid_name(sluice_bytes b)
{
    if (b.len == 0)
        return false;
    for (size_t i = 0; i < b.len; i++)
        if (!http_tchar[b.ptr[i]])
            return false;
    return true;
}

/* Field values from workers: no CR, LF, NUL or other controls but HTAB. */
static inline bool valid_value(sluice_bytes b)
{
    for (size_t i = 0; i < b.len; i++) {
        uint8_t ch = b.ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static inline bool name_is(sluice_bytes b, const char *lower)
{
    size_t n = strlen(lower);
    if (b.len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = b.ptr[i];
        if (ch >= 'A' && ch <= 'Z')
            ch += 32;
        if (ch != (uint8_t)lower[i])
            return false;
    }
    return true;
}

/* A Content-Length value: 1 to 19 digits. */
static inline bool parse_content_length(sluice_bytes v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.len == 0 || v.len > 19)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v.ptr[i] - '0');
    }
    *out = n;
    return true;
}

/* What a worker's response head says, once checked. */
typedef struct {
    uint64_t cl;        /* Content-Length; UINT64_MAX: none */
    bool has_date, has_server;
    size_t name_bytes;  /* sum of the field names' lengths */
} response_head;

/* Check a worker's response head before anything of it is sent: every
 * name a token, every value free of controls, Content-Length 1 to 19
 * digits and equal when repeated. False: the client gets 502. */
static inline bool response_head_check(const sluice_response *r, response_head *h)
{
    *h = (response_head){.cl = UINT64_MAX};
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *f = &r->headers.items[i];
        if (!valid_name(f->name) || !valid_value(f->value))
            return false;
        h->name_bytes += f->name.len;
        if (name_is(f->name, "content-length")) {
            uint64_t v;
            if (!parse_content_length(f->value, &v) || (h->cl != UINT64_MAX && h->cl != v))
                return false;
            h->cl = v;
        } else if (name_is(f->name, "date")) {
            h->has_date = true;
        } else if (name_is(f->name, "server")) {
            h->has_server = true;
        }
    }
    return true;
}

/* RFC 9110 7.6.1: the fixed hop-by-hop fields. TE is handled by the
 * caller (only "trailers" passes). */
static inline bool hop_by_hop(sluice_bytes n)
{
    return name_is(n, "connection") || name_is(n, "keep-alive") || name_is(n, "proxy-connection") ||
           name_is(n, "transfer-encoding") || name_is(n, "upgrade") || name_is(n, "te");
}

static inline bool ows(uint8_t ch) { return ch == ' ' || ch == '\t'; }

/* The next element of a comma-separated list (RFC 9110 5.6.1) from *pos,
 * whitespace trimmed; false at the end. */
static inline bool list_next(sluice_bytes list, size_t *pos, sluice_bytes *elem)
{
    size_t i = *pos;
    while (i < list.len && (ows(list.ptr[i]) || list.ptr[i] == ','))
        i++;
    if (i == list.len) {
        *pos = i;
        return false;
    }
    size_t start = i;
    while (i < list.len && list.ptr[i] != ',')
        i++;
    size_t end = i;
    while (end > start && ows(list.ptr[end - 1]))
        end--;
    *pos = i;
    *elem = (sluice_bytes){list.ptr + start, end - start};
    return true;
}

static inline bool bytes_caseeq(sluice_bytes a, sluice_bytes b)
{
    return a.len == b.len && !strncasecmp((const char *)a.ptr, (const char *)b.ptr, a.len);
}

/* TE is hop-by-hop; "trailers" alone tells the worker the client accepts
 * trailers (gRPC relies on it), so that one value is passed on. */
static inline bool te_trailers_only(sluice_bytes v)
{
    return v.len == 8 && !strncasecmp((const char *)v.ptr, "trailers", 8);
}

#endif
