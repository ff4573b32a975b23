/* server/front/http1/strict.c: request-line, CRLF, chunk-size line and
 * Host checks, whole and split at every byte (they run incrementally over
 * reads). */
#include <criterion/criterion.h>
#include <string.h>

#include "front/http1/strict.h"

/* Scan `s` split at `cut`; returns the status (0: fine) and the offset of
 * the stop (end of section, or the offending byte) in *stop. */
static int scan_split(const char *s, bool request, size_t cut, size_t *stop)
{
    head_scan h;
    head_scan_start(&h, request);
    size_t n = strlen(s);
    int status = 0;
    size_t a = head_scan_run(&h, (const uint8_t *)s, cut, &status);
    if (status || a < cut) {
        *stop = a;
        return status;
    }
    size_t b = head_scan_run(&h, (const uint8_t *)s + cut, n - cut, &status);
    *stop = cut + b;
    return status;
}

static int scan(const char *s, bool request)
{
    size_t stop0;
    int st0 = scan_split(s, request, strlen(s), &stop0);
    for (size_t cut = 0; cut <= strlen(s); cut++) {
        size_t stop;
        int st = scan_split(s, request, cut, &stop);
        cr_assert_eq(st, st0, "%s split at %zu: %d vs %d", s, cut, st, st0);
        cr_assert_eq(stop, stop0, "%s split at %zu", s, cut);
    }
    return st0;
}

Test(strict, request_lines)
{
    cr_assert_eq(scan("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true), 0);
    cr_assert_eq(scan("\r\n\r\nGET / HTTP/1.0\r\n\r\n", true), 0);
    cr_assert_eq(scan("OPTIONS * HTTP/1.1\r\n\r\n", true), 0);
    cr_assert_eq(scan("GET / HTTP/1.2\r\n\r\n", true), 0);
    cr_assert_eq(scan("GET  / HTTP/1.1\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET /\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET /HTTP/1.1\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET / HTTP/0.9\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET / HTTP/2.0\r\n\r\n", true), 505);
    cr_assert_eq(scan("GET / HTTP/1.10\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET * HTTP/1.1\r\n\r\n", true), 400);
    cr_assert_eq(scan("CONNECT a:1 HTTP/1.1\r\n\r\n", true), 501);
    cr_assert_eq(scan("G@T / HTTP/1.1\r\n\r\n", true), 400);
    cr_assert_eq(scan("\nGET / HTTP/1.1\r\n\r\n", true), 400);
}

Test(strict, line_endings)
{
    cr_assert_eq(scan("GET / HTTP/1.1\nHost: x\r\n\r\n", true), 400);
    cr_assert_eq(scan("GET / HTTP/1.1\r\nHost: x\n\r\n", true), 400);
    cr_assert_eq(scan("GET / HTTP/1.1\r\nHost: x\r\n\n", true), 400);
    cr_assert_eq(scan("GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", true), 400);
    cr_assert_eq(scan("X: y\r\n\r\n", false), 0);
    cr_assert_eq(scan("\r\n", false), 0);
    cr_assert_eq(scan("\n", false), 400);
    cr_assert_eq(scan("X: y\n\r\n", false), 400);
}

Test(strict, stops_at_end_of_section)
{
    const char *s = "GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY\n";
    head_scan h;
    head_scan_start(&h, true);
    int status = 0;
    size_t n = head_scan_run(&h, (const uint8_t *)s, strlen(s), &status);
    cr_assert_eq(status, 0);
    cr_assert_eq(n, strlen(s) - 5);
    cr_assert(!head_scan_active(&h));
}

static int chunk(const char *s, uint64_t *size)
{
    /* byte by byte, as the worst split */
    chunk_scan c;
    chunk_scan_start(&c);
    int status = 0;
    bool done = false;
    for (size_t i = 0; s[i]; i++) {
        size_t n = chunk_scan_run(&c, (const uint8_t *)s + i, 1, &done, &status);
        if (status)
            return status;
        cr_assert_eq(n, 1);
        if (done) {
            cr_assert_eq(s[i + 1], 0, "%s: line ended early", s);
            *size = c.size;
            return 0;
        }
    }
    return -1; /* incomplete */
}

Test(strict, chunk_lines)
{
    uint64_t sz = 0;
    cr_assert_eq(chunk("5\r\n", &sz), 0);
    cr_assert_eq(sz, 5);
    cr_assert_eq(chunk("00000A\r\n", &sz), 0);
    cr_assert_eq(sz, 10);
    cr_assert_eq(chunk("ffffffffffffffff\r\n", &sz), 0);
    cr_assert_eq(sz, UINT64_MAX);
    cr_assert_eq(chunk("5;a=b;c=d\r\n", &sz), 0);
    cr_assert_eq(chunk("5 ; a = b\r\n", &sz), 0);
    cr_assert_eq(chunk("5;a=\"b \\\" c\";d\r\n", &sz), 0);
    cr_assert_eq(chunk("0;z=1\r\n", &sz), 0);
    cr_assert_eq(sz, 0);
    cr_assert_eq(chunk("10000000000000000\r\n", &sz), 400);
    cr_assert_eq(chunk(" 5\r\n", &sz), 400);
    cr_assert_eq(chunk("5 \r\n", &sz), 400);
    cr_assert_eq(chunk("5;\r\n", &sz), 400);
    cr_assert_eq(chunk("5;a b\r\n", &sz), 400);
    cr_assert_eq(chunk("5;a=\"b\r\n", &sz), 400);
    cr_assert_eq(chunk("5\n", &sz), 400);
    cr_assert_eq(chunk("5\rx", &sz), 400);
    cr_assert_eq(chunk("0x5\r\n", &sz), 400);
    char big[CHUNK_LINE_MAX + 16] = "5;a=";
    memset(big + 4, 'b', CHUNK_LINE_MAX);
    strcpy(big + 4 + CHUNK_LINE_MAX, "\r\n");
    cr_assert_eq(chunk(big, &sz), 400);
}

static bool host(const char *s) { return host_valid((const uint8_t *)s, strlen(s)); }

Test(strict, hosts)
{
    cr_assert(host(""));
    cr_assert(host("example.com"));
    cr_assert(host("Example.COM:8080"));
    cr_assert(host("[::1]:8080"));
    cr_assert(host("127.0.0.1"));
    cr_assert(host("a%2Db.example"));
    cr_assert(!host("exa mple.com"));
    cr_assert(!host("example.com/admin"));
    cr_assert(!host("user@example.com"));
    cr_assert(!host("example.com:8x"));
    cr_assert(!host("example.com:65536"));
    cr_assert(!host("a.example,b.example"));
    cr_assert(!host("[::1"));
    cr_assert(!host("[]"));
}

Test(strict, absolute_form)
{
    const uint8_t *a;
    size_t n;
#define T(s) ((const uint8_t *)(s)), strlen(s)
    cr_assert_eq(target_authority(T("/p"), &a, &n), 0);
    cr_assert_eq(target_authority(T("*"), &a, &n), 0);
    cr_assert_eq(target_authority(T("http://a.example:80/p?q"), &a, &n), 1);
    cr_assert(n == 12 && !memcmp(a, "a.example:80", 12));
    cr_assert_eq(target_authority(T("HTTPS://b.example"), &a, &n), 1);
    cr_assert(n == 9 && !memcmp(a, "b.example", 9));
    cr_assert_eq(target_authority(T("http:///p"), &a, &n), -1);
    cr_assert_eq(target_authority(T("http://u@a/"), &a, &n), -1);
    cr_assert_eq(target_authority(T("ftp://a/"), &a, &n), -1);
#undef T
}
