/* Strict HTTP/1.1 syntax checks that llhttp 8.1 does not make (RFC 9112,
 * RFC 9110). Sans-I/O scanners over raw request bytes, fed incrementally as
 * bytes arrive, so the HTTP/1.1 front end can refuse a request before
 * llhttp acts on it:
 *
 * - head_scan: the request line (method SP target SP HTTP/D.D CRLF, single
 *   spaces, no HTTP/0.9) and the CRLF discipline of the field lines and of
 *   the trailer section: a bare LF or a bare CR anywhere is an error (llhttp
 *   8.1 accepts a bare LF ending the request line, the head and the trailer
 *   section, and has no lenient flag to refuse it).
 * - chunk_scan: one chunk-size line with its extensions (RFC 9112 7.1.1:
 *   several, BWS, quoted strings), bounded in length. llhttp 8.1 refuses
 *   valid extensions (a second one after a token value, BWS), so the
 *   gateway parses these lines itself and hands llhttp a plain "SIZE\r\n".
 * - host_valid / target_authority: RFC 9110 7.2 Host and the authority of
 *   an absolute-form target. */
#ifndef SLUICE_HTTP_STRICT_H
#define SLUICE_HTTP_STRICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest chunk-size line (size, extensions, CRLF) accepted. */
#define CHUNK_LINE_MAX 4096

extern const uint8_t http_tchar[256]; /* RFC 9110 5.6.2 tchar */

typedef struct {
    uint8_t state;
    uint8_t vpos;       /* bytes of "HTTP/D.D" seen */
    uint8_t major;
    uint8_t method_len; /* saturates at 255 */
    char method[8];     /* the first bytes of the method */
    uint32_t target_len;
    bool target_star;
} head_scan;

/* Start scanning a request head (request line first) or, with
 * request = false, a trailer section. */
void head_scan_start(head_scan *h, bool request);
/* True while a section is being scanned (not yet ended). */
bool head_scan_active(const head_scan *h);
/* Scan up to n bytes; stops right after the section's last byte (the
 * scanner then goes inactive). Returns the bytes scanned. On a violation
 * returns the offending byte's offset and sets *status to 400, 501 (CONNECT)
 * or 505 (a major version other than 1); *status is untouched otherwise. */
size_t head_scan_run(head_scan *h, const uint8_t *p, size_t n, int *status);

typedef struct {
    uint8_t state;
    uint8_t digits; /* significant hex digits */
    uint64_t size;
    uint32_t len;   /* line bytes so far */
} chunk_scan;

void chunk_scan_start(chunk_scan *c);
/* Consume up to n bytes of a chunk-size line. Returns the bytes consumed;
 * *done is set once the line's LF was consumed (c->size is then the chunk
 * size). On a violation returns (size_t)-1 and sets *status to 400. */
size_t chunk_scan_run(chunk_scan *c, const uint8_t *p, size_t n, bool *done, int *status);

/* Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2); empty is
 * valid. Refuses userinfo, paths, whitespace and comma lists. */
bool host_valid(const uint8_t *p, size_t n);
/* For an absolute-form target ("http://authority/path"): 1 and the
 * authority in *auth / *auth_len; 0 for any other form; -1 for an absolute
 * form that is not http(s) or whose authority is empty or invalid. */
int target_authority(const uint8_t *t, size_t n, const uint8_t **auth, size_t *auth_len);

#endif
