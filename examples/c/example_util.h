/* Small helpers shared by the example workers: query parameters, decimal
 * parsing, and the common main() (environment checks, then
 * sluice_worker_main). Header-only so each example stays one file to build. */
#ifndef SLUICE_EXAMPLE_UTIL_H
#define SLUICE_EXAMPLE_UTIL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_worker.h"

/* Finds `name` in the query string of `target`: true and *val set (a view,
 * possibly empty) for the first `name=...` or bare `name` parameter. */
static inline bool query_param(sluice_bytes target, const char *name, sluice_bytes *val)
{
    const uint8_t *q = memchr(target.ptr, '?', target.len);
    if (!q)
        return false;
    const uint8_t *end = target.ptr + target.len;
    size_t nlen = strlen(name);
    for (const uint8_t *p = q + 1; p < end;) {
        const uint8_t *amp = memchr(p, '&', (size_t)(end - p));
        const uint8_t *pe = amp ? amp : end;
        if ((size_t)(pe - p) >= nlen && memcmp(p, name, nlen) == 0 &&
            (p + nlen == pe || p[nlen] == '=')) {
            const uint8_t *v = p + nlen == pe ? pe : p + nlen + 1;
            val->ptr = v;
            val->len = (size_t)(pe - v);
            return true;
        }
        p = pe + 1;
    }
    return false;
}

/* Decimal digits only, no sign, no overflow. */
static inline bool parse_u64(sluice_bytes b, uint64_t *out)
{
    if (b.len == 0 || b.len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < b.len; i++) {
        if (b.ptr[i] < '0' || b.ptr[i] > '9')
            return false;
        unsigned d = (unsigned)(b.ptr[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* SLUICE_WS_MAX_MESSAGE (bytes): -1 if set but invalid, 0 if unset. The
 * library reassembles at most this much per message (default 1 MiB, the
 * gateway's default); a worker cannot learn the pool's --ws-max-message, so
 * a pool that raises it must raise this too. */
static inline long long env_ws_max_message(void)
{
    const char *e = getenv("SLUICE_WS_MAX_MESSAGE");
    if (!e || !*e)
        return 0;
    uint64_t v;
    if (!parse_u64((sluice_bytes){(const uint8_t *)e, strlen(e)}, &v) || v < 1 ||
        v > ((uint64_t)1 << 30))
        return -1;
    return (long long)v;
}

/* Checks SLUICE_SOCKET and SLUICE_WS_MAX_MESSAGE (the library reads
 * SLUICE_MAX_STREAMS), then runs the worker until it is told to stop.
 * Returns the process exit code. */
static inline int example_main(const char *name, const sluice_worker_callbacks *cb)
{
    const char *sock = getenv("SLUICE_SOCKET");
    if (!sock || !*sock) {
        fprintf(stderr, "%s: SLUICE_SOCKET is not set (run it under the sluice gateway)\n", name);
        return 1;
    }
    sluice_worker_config cfg = {0};
    long long wm = env_ws_max_message();
    if (wm < 0) {
        fprintf(stderr, "%s: invalid SLUICE_WS_MAX_MESSAGE (want 1..1073741824 bytes)\n", name);
        return 1;
    }
    cfg.ws_max_message = (size_t)wm;
    return sluice_worker_main(&cfg, cb, NULL);
}

#endif
