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
 * (streams served at once; default 4096).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_util.h"

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

int main(void)
{
    sluice_worker_callbacks cb = {
        .on_request = on_request,
        .on_cancel = on_cancel,
        .on_stream_closed = on_stream_closed,
    };
    return example_main("hello", &cb);
}
