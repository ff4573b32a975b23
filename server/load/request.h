/* The request sluice-load sends: URL parsing and the request bytes, built
 * once and shared (read-only) by every thread and connection. */
#ifndef SLOAD_REQUEST_H
#define SLOAD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    bool tls;         /* https:// */
    char *host;       /* without brackets for IPv6 literals */
    char *port;       /* "80" (https: "443") when absent */
    char *authority;  /* Host header value: host[:port] as written */
    char *target;     /* path and query, "/" when absent */
} sload_url;

/* http[s]://host[:port][/path][?query]. 0, -EINVAL (message in *err) or -ENOMEM. */
int sload_url_parse(const char *s, sload_url *u, const char **err);
void sload_url_free(sload_url *u);

/* True if `line` is a valid "Name: value" header (token name, no CR/LF). */
bool sload_header_valid(const char *line);

typedef struct {
    const char *method;
    const sload_url *url;
    const char *const *headers;   /* "Name: value" lines */
    size_t nheaders;
    size_t body_len;
    bool keepalive;               /* false: Connection: close */
    bool body_always_length;      /* send Content-Length even when 0 */
} sload_request_spec;

/* Request line and headers, ending with the blank line, into a malloc'd
 * buffer. 0 or -ENOMEM. Host, User-Agent and Content-Length are added
 * unless the caller's headers already name them. */
int sload_request_build(const sload_request_spec *spec, char **out, size_t *out_len);

/* One HTTP/2 header field (lower-case name), for nghttp2. */
typedef struct {
    char *name, *value;
    size_t name_len, value_len;
} sload_h2_header;

/* The HTTP/2 header block of the request: :method, :scheme, :path,
 * :authority (the Host header's value if one is given), user-agent and
 * content-length as for HTTP/1.1, then the caller's headers with lower-case
 * names, minus those HTTP/2 forbids (Connection, Keep-Alive,
 * Transfer-Encoding, Upgrade, Proxy-Connection, TE but "trailers").
 * Into a malloc'd array; free with sload_h2_headers_free. 0 or -ENOMEM. */
int sload_h2_headers_build(const sload_request_spec *spec, sload_h2_header **out, size_t *n);
void sload_h2_headers_free(sload_h2_header *h, size_t n);

#endif
