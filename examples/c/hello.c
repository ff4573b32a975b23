/* hello: the smallest useful sluice worker.
 *
 * Every request is answered with 200 "Hello, world!\n" (text/plain, with a
 * Content-Length), from inside on_request. It is the reference worker for
 * measuring the gateway's own overhead, so the common path does no work of
 * its own: static headers and body, no allocation beyond the library's, no
 * logging, and the request body is never read (no credit is ever granted
 * for it; the gateway drops it once the response has ended).
 *
 * `?delay=MS` anywhere in the query string answers after MS milliseconds,
 * from a uv timer: other streams carry on meanwhile. If the gateway cancels
 * the stream first (client gone, response timeout, shutdown), the timer is
 * stopped and closed with the stream.
 *
 * Environment: SLUICE_SOCKET (set by the gateway), SLUICE_MAX_STREAMS
 * (streams served at once; default 64).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice_worker.h"

#define BYTES(lit) {(const uint8_t *)(lit), sizeof(lit) - 1}

static const char hello_body[] = "Hello, world!\n";

static const sluice_header hello_headers[] = {
    {BYTES("Content-Type"), BYTES("text/plain")},
    {BYTES("Content-Length"), BYTES("14")},
};

/* Per-stream state, only for delayed responses. Owned by the stream: the
 * timer is closed (and this freed) from on_stream_closed. */
typedef struct {
    uv_timer_t timer;
    sluice_stream *s;
} delayed;

/* Finds `name` in the query string of `target`: true and *val set (a view,
 * possibly empty) for the first `name=...` or bare `name` parameter. */
static bool query_param(sluice_bytes target, const char *name, sluice_bytes *val)
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
static bool parse_u64(sluice_bytes b, uint64_t *out)
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

static void respond_hello(sluice_stream *s)
{
    if (sluice_stream_respond(s, 200, hello_headers, 2, true) < 0 ||
        sluice_stream_write(s, hello_body, sizeof hello_body - 1, NULL, NULL) < 0 ||
        sluice_stream_end(s, NULL, 0) < 0)
        sluice_stream_reset(s, SLUICE_RESET_INTERNAL); /* -EPIPE if already gone */
}

static void on_delay(uv_timer_t *t)
{
    delayed *d = t->data;
    if (d->s && sluice_stream_is_open(d->s))
        respond_hello(d->s);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_request(sluice_stream *s, const sluice_req *req, void *ud)
{
    (void)ud;
    /* Never read the body: no credit, not even the initial window of a
     * body_mode 2 request (the client then never sends it). */
    if (req->body_mode != SLUICE_BODY_NONE)
        sluice_stream_pause_reading(s);

    sluice_bytes v;
    uint64_t ms;
    if (req->target.len > 1 && query_param(req->target, "delay", &v) && parse_u64(v, &ms) &&
        ms > 0) {
        delayed *d = malloc(sizeof *d);
        if (!d) {
            sluice_stream_reset(s, SLUICE_RESET_OVERLOADED);
            return;
        }
        d->s = s;
        uv_timer_init(sluice_worker_loop(sluice_stream_worker(s)), &d->timer);
        d->timer.data = d;
        uv_timer_start(&d->timer, on_delay, ms, 0);
        sluice_stream_set_udata(s, d);
        return;
    }
    respond_hello(s);
}

static void on_cancel(sluice_stream *s, uint64_t reason, void *ud)
{
    (void)reason;
    (void)ud;
    delayed *d = sluice_stream_udata(s);
    if (d)
        uv_timer_stop(&d->timer);
}

static void on_stream_closed(sluice_stream *s, void *ud)
{
    (void)ud;
    delayed *d = sluice_stream_udata(s);
    if (d) {
        d->s = NULL;
        uv_close((uv_handle_t *)&d->timer, on_timer_closed); /* also stops it */
    }
}

/* SLUICE_MAX_STREAMS: -1 if set but invalid, 0 if unset. */
static long env_max_streams(void)
{
    const char *e = getenv("SLUICE_MAX_STREAMS");
    if (!e || !*e)
        return 0;
    char *endp;
    errno = 0;
    long v = strtol(e, &endp, 10);
    if (errno || *endp || v < 1 || v > 65535)
        return -1;
    return v;
}

int main(void)
{
    const char *sock = getenv("SLUICE_SOCKET");
    if (!sock || !*sock) {
        fprintf(stderr, "hello: SLUICE_SOCKET is not set (run it under the sluice gateway)\n");
        return 1;
    }
    sluice_worker_config cfg = {0};
    long ms = env_max_streams();
    if (ms < 0) {
        fprintf(stderr, "hello: invalid SLUICE_MAX_STREAMS (want 1..65535)\n");
        return 1;
    }
    cfg.max_streams = (uint32_t)ms;
    sluice_worker_callbacks cb = {
        .on_request = on_request,
        .on_cancel = on_cancel,
        .on_stream_closed = on_stream_closed,
    };
    return sluice_worker_main(&cfg, &cb, NULL);
}
