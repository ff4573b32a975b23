/* The stream interface, front-end half: what a front end calls to reach the
 * worker side. Stream objects are recycled per loop. */
#include "exchange/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker/pool.h"
#include "worker/router.h"
#include "worker/link.h"

/* Streams come from a free list: no malloc per request once warm. */
#define STREAM_FREE_MAX 1024

stream *stream_get(gateway *gw, uint32_t n_headers)
{
    uint32_t cap = n_headers;
    stream *s = gw->free_streams;
    if (s) {
        gw->free_streams = s->qnext;
        gw->n_free_streams--;
        if (s->hdr_cap < cap) { /* a reload raised max_headers */
            free(s);
            s = NULL;
        }
    }
    if (!s) {
        s = malloc(sizeof *s + cap * sizeof(sluice_header));
        if (!s)
            return NULL;
    }
    memset(s, 0, sizeof *s);
    s->gw = gw;
    s->hdr_cap = cap;
    s->worker_id = -1;
    s->resp_cl = UINT64_MAX;
    return s;
}

void stream_free_all(gateway *gw)
{
    while (gw->free_streams) {
        stream *s = gw->free_streams;
        gw->free_streams = s->qnext;
        free(s);
    }
    gw->n_free_streams = 0;
}

void stream_put(gateway *gw, stream *s)
{
    if (gw->n_free_streams < STREAM_FREE_MAX) {
        s->qnext = gw->free_streams;
        gw->free_streams = s;
        gw->n_free_streams++;
        return;
    }
    free(s);
}

void stream_route(stream *s, const uint8_t *host, size_t host_len)
{
    s->pool = router_pick(s->gw->router, host, host_len, s->req.target.ptr, s->req.target.len);
    s->body_limit = pool_config(s->pool)->max_body;
    s->ws_max_message = pool_config(s->pool)->ws_max_message;
}

const sluice_pool_config *stream_config(const stream *s) { return pool_config(s->pool); }

int stream_submit(stream *s) { return pool_submit(s->pool, s); }

int stream_submit_status(int rc) { return rc == -EBUSY ? 503 : rc == -EMSGSIZE ? 431 : 502; }

void stream_withdraw(stream *s)
{
    if (s->queued)
        pool_withdraw(s->pool, s);
}

uint32_t stream_send_window(const stream *s) { return wlink_send_window(s->link, s); }

int stream_send_body(stream *s, const uint8_t *data, size_t len) { return wlink_send_body(s->link, s, data, len); }

int stream_send_end(stream *s, const sluice_header *trailers, size_t n)
{
    return wlink_send_end(s->link, s, trailers, n);
}

int stream_grant(stream *s, uint32_t n) { return wlink_send_credit(s->link, s, n); }

void stream_credit_written(stream *s, uint64_t *unacked, uint64_t n)
{
    if (!n || !s || !s->link)
        return;
    *unacked += n;
    uint32_t half = pool_config(s->pool)->window / 2;
    if (*unacked >= half || *unacked >= 1u << 30) {
        uint32_t k = (uint32_t)*unacked;
        *unacked = 0;
        stream_grant(s, k);
    }
}

int stream_send_message(stream *s, uint32_t flags, const uint8_t *data, size_t len)
{
    return wlink_send_message(s->link, s, flags, data, len);
}

void stream_send_close(stream *s, uint16_t code, const uint8_t *reason, size_t reason_len)
{
    if (s->link)
        wlink_send_close(s->link, s, code, reason, reason_len);
}

void stream_cancel(stream *s, uint32_t reason)
{
    if (s->link)
        wlink_cancel(s->link, s, reason);
}

/* Refusals taken per stream, each placed again, before 503. */
#define MAX_REFUSALS 3

static bool refusal(uint64_t code)
{
    return code == SLUICE_RESET_REFUSED || code == SLUICE_RESET_OVERLOADED;
}

int stream_retry(stream *s, uint64_t code)
{
    if (!refusal(code) || s->resp_started || s->body_sent != 0 || s->refusals >= MAX_REFUSALS)
        return -1;
    s->refusals++;
    s->end_sent = false; /* the next worker gets its own END */
    s->worker_id = -1;
    int rc = stream_submit(s);
    return rc == 0 || rc == 1 ? rc : -1;
}

void stream_ws_count(const stream *s, int open_delta, uint64_t msgs_in, uint64_t msgs_out, uint64_t bytes_in,
                     uint64_t bytes_out)
{
    if (s->pool)
        pool_ws_count(s->pool, open_delta, msgs_in, msgs_out, bytes_in, bytes_out);
}

bool stream_limit(stream *s, uint64_t max)
{
    uint64_t ceiling = pool_config(s->pool)->max_body_ceiling;
    uint64_t v = max < ceiling ? max : ceiling;
    if (s->ws) {
        s->ws_max_message = v;
        return true;
    }
    s->body_limit = v;
    return false;
}

int stream_reset_status(uint64_t code) { return refusal(code) ? 503 : 502; }

void stream_record(const stream *s, double seconds)
{
    if (s->pool)
        pool_record(s->pool, s->status, seconds, s->body_received, s->resp_bytes);
}
