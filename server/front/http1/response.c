/* HTTP/1.1 front end: the stream operations (exchange/stream.h) -- what the
 * worker side reports, written to the client: the response head, the body
 * (chunked, by length, or to the close), trailers; errors and retries. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/loop.h"
#include "front/http1/conn.h"
#include "front/http1/fields.h"
#include "front/ws/websocket.h"

static void on_stream_unavailable(stream *s, int status)
{
    if (s->owner)
        h1_exchange_fail(s->owner, status, 0);
}

static void on_stream_lost(stream *s)
{
    conn *c = s->owner;
    if (c)
        h1_exchange_fail(c, 502, 0);
}

static void on_stream_reset(stream *s, uint64_t code)
{
    conn *c = s->owner;
    if (!c)
        return;
    int rc = stream_retry(s, code);
    if (rc == 1)
        h1_set_timer(c, T_QUEUE);
    if (rc >= 0)
        return;
    h1_exchange_fail(c, stream_reset_status(code), 0);
}

static void on_stream_dispatched(stream *s)
{
    conn *c = s->owner;
    if (s->body_mode == SLUICE_BODY_NONE)
        s->end_sent = true;
    if (!c)
        return;
    if (!s->resp_started)
        h1_set_timer(c, T_RESPONSE);
    h1_forward_pending(c);
    h1_parse(c);
}

static void on_stream_credit(stream *s)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (!s->credit_seen) {
        s->credit_seen = true;
        if (s->body_mode == SLUICE_BODY_ON_CREDIT && s->has_length &&
            s->content_length > s->body_limit) {
            h1_exchange_fail(c, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
            return;
        }
        if (s->expect_continue && !s->continue_sent && !s->resp_started) {
            s->continue_sent = true;
            h1_out_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
        }
    }
    h1_forward_pending(c);
    h1_parse(c);
}

static void on_stream_limit(stream *s, uint64_t max_body)
{
    if (stream_limit(s, max_body)) /* before the 101: the WebSocket's message limit */
        return;
    if (s->owner && !s->req_complete &&
        (s->body_received > s->body_limit ||
         (s->has_length && s->content_length > s->body_limit)))
        h1_exchange_fail(s->owner, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
}

/* Build and queue the response head. Returns false when the worker's head
 * is unacceptable. */
static bool write_head(conn *c, stream *s, const sluice_response *r)
{
    /* validate first: nothing is written for a bad head */
    response_head rh;
    if (!response_head_check(r, &rh))
        return false;
    bool has_date = rh.has_date, has_server = rh.has_server;
    uint64_t cl = rh.cl;
    int st = (int)r->status;
    s->status = st;
    bool head_req = s->req.method.len == 4 && !memcmp(s->req.method.ptr, "HEAD", 4);
    bool no_body_status = st == 204 || st == 304;
    s->resp_no_body = head_req || no_body_status;
    s->resp_cl = cl;

    char line[128];
    int n = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", st, reason_phrase(st));
    h1_out(c, line, (size_t)n);
    if (!has_server)
        h1_out_str(c, "Server: " SLUICE_SERVER_NAME "\r\n");
    if (!has_date) {
        size_t dlen;
        const char *d = gw_date_line(c->gw, &dlen);
        h1_out(c, d, dlen);
    }
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (hop_by_hop(h->name))
            continue;
        if (st == 204 && name_is(h->name, "content-length"))
            continue;
        h1_out(c, h->name.ptr, h->name.len);
        h1_out(c, ": ", 2);
        h1_out(c, h->value.ptr, h->value.len);
        h1_out(c, "\r\n", 2);
    }
    if (!s->resp_no_body && cl == UINT64_MAX) {
        if (r->body == SLUICE_BODY_NONE) {
            h1_out_str(c, "Content-Length: 0\r\n");
            s->resp_cl = 0;
        } else if (s->req.version >= 11) {
            h1_out_str(c, "Transfer-Encoding: chunked\r\n");
            c->chunked_out = true;
        } else {
            c->close_delimited = true; /* HTTP/1.0: the close ends the body */
            c->keepalive = false;
        }
    }
    /* An upload the worker will never read forces a close. */
    if (!s->req_complete && s->body_mode == SLUICE_BODY_ON_CREDIT && !s->credit_seen)
        c->keepalive = false;
    if (!c->keepalive)
        h1_out_str(c, "Connection: close\r\n");
    else if (s->req.version == 10)
        h1_out_str(c, "Connection: keep-alive\r\n");
    h1_out(c, "\r\n", 2);
    return true;
}

static void finish_response(conn *c, stream *s)
{
    s->resp_done = true;
    if (c->close_delimited)
        c->closing = true;
    h1_exchange_maybe_finish(c);
}

/* The worker accepted the WebSocket: the 101 goes out, then the exchange
 * and the connection are the WebSocket front end's (hand_to_ws). */
static void accept_websocket(conn *c, stream *s, const sluice_response *r)
{
    struct wsconn *w = ws_accept_h1(c->gw, s, r, c->remote, &c->out);
    if (!w) {
        slog(c->gw->log, LOG_WARN, "worker %lld accepted a WebSocket with an invalid response (stream %llu); 502",
             (long long)s->worker_id, (unsigned long long)s->sid);
        h1_exchange_fail(c, 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    h1_set_timer(c, T_NONE);
    c->cur = NULL; /* the stream is the WebSocket's now */
    c->upgrade = w;
    gw_defer_flush(c->gw, &c->flush);
    h1_update_reading(c);
}

static void on_stream_response(stream *s, const sluice_response *r)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (r->status == 101) {
        accept_websocket(c, s, r);
        return;
    }
    if (!write_head(c, s, r)) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent an invalid response head (stream %llu); 502",
             (long long)s->worker_id, (unsigned long long)s->sid);
        h1_exchange_fail(c, 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    s->resp_started = true;
    h1_set_timer(c, T_NONE);
    if (r->body == SLUICE_BODY_NONE)
        finish_response(c, s);
}

static void on_stream_body(stream *s, const uint8_t *data, size_t len)
{
    conn *c = s->owner;
    if (!c || !len)
        return;
    if (s->resp_no_body) { /* HEAD/204/304: discard, but keep the worker going */
        h1_credit_written(c, len);
        return;
    }
    if (s->resp_cl != UINT64_MAX && s->resp_bytes + len > s->resp_cl) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent more than its Content-Length; aborting", (long long)s->worker_id);
        h1_exchange_fail(c, 0, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    if (c->chunked_out) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        h1_out(c, sz, (size_t)n);
        h1_out(c, data, len);
        h1_out(c, "\r\n", 2);
    } else {
        h1_out(c, data, len);
    }
    s->resp_bytes += len;
    c->out_credit += len;
}

static void on_stream_end(stream *s, const sluice_headers *trailers)
{
    conn *c = s->owner;
    if (!c)
        return;
    if (s->resp_cl != UINT64_MAX && !s->resp_no_body && s->resp_bytes != s->resp_cl) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent %llu of %llu body bytes; aborting", (long long)s->worker_id,
             (unsigned long long)s->resp_bytes, (unsigned long long)s->resp_cl);
        h1_exchange_fail(c, 0, 0);
        return;
    }
    if (c->chunked_out) {
        h1_out_str(c, "0\r\n");
        for (size_t i = 0; i < trailers->count; i++) {
            const sluice_header *h = &trailers->items[i];
            if (!valid_name(h->name) || !valid_value(h->value) || hop_by_hop(h->name) ||
                name_is(h->name, "content-length"))
                continue;
            h1_out(c, h->name.ptr, h->name.len);
            h1_out(c, ": ", 2);
            h1_out(c, h->value.ptr, h->value.len);
            h1_out(c, "\r\n", 2);
        }
        h1_out(c, "\r\n", 2);
    }
    finish_response(c, s);
}

const stream_ops h1_stream_ops = {
    .dispatched = on_stream_dispatched,
    .response = on_stream_response,
    .body = on_stream_body,
    .end = on_stream_end,
    .credit = on_stream_credit,
    .limit = on_stream_limit,
    .reset = on_stream_reset,
    .lost = on_stream_lost,
    .unavailable = on_stream_unavailable,
};
