/* The stream interface: where a front end ends and the worker side begins.
 *
 * A stream is one request/response exchange. A front end (HTTP/1.1 today)
 * creates it from a request head, owns it, and reaches the worker side only
 * through the stream_* functions of stream.c (route, submit, send body,
 * grant credit, cancel...). The worker side (pool, worker link) queues the
 * stream, carries it over a link, and reports the worker's frames back
 * through the stream's operations table, `ops`, which the front end
 * implements: the worker side never includes or calls a front end's file.
 * The inline stream_on_* helpers below are that dispatch, one indirect call
 * each. */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gateway.h"

/* What the worker side tells the front end about a stream. When a frame
 * closes the protocol stream (response END, RESPONSE without body, RESET),
 * s->link is already NULL when the operation is called. An operation may
 * put the stream back (stream_put): the caller does not touch it after. */
typedef struct stream_ops {
    /* The stream was opened on a worker link (REQUEST queued to it). */
    void (*dispatched)(stream *s);
    /* RESPONSE: status and headers. */
    void (*response)(stream *s, const sluice_response *r);
    /* A BODY frame of the response. */
    void (*body)(stream *s, const uint8_t *data, size_t len);
    /* END of the response, with its trailers (maybe none). */
    void (*end)(stream *s, const sluice_headers *trailers);
    /* The worker granted request-body credit (stream_send_window grew). */
    void (*credit)(stream *s);
    /* LIMIT: the worker set the request-body limit of this stream. */
    void (*limit)(stream *s, uint64_t max_body);
    /* RESET: the worker aborted the stream with `code`. */
    void (*reset)(stream *s, uint64_t code);
    /* The link died or broke the protocol (s->link is NULL). */
    void (*lost)(stream *s);
    /* The pool could not place the stream: 503 (queue full, pool down or
     * stopping), 504 (queue timeout), 431 (head too large for the worker),
     * 502 (could not open it). */
    void (*unavailable)(stream *s, int status);
    /* WebSocket streams after RESPONSE 101 (PROTOCOL.md 5.2); front ends
     * without WebSockets leave them NULL. MESSAGE: a piece of a message
     * (SLUICE_MSG_* flags) or a PING; CLOSE: the worker closed it (s->link
     * is NULL). */
    void (*message)(stream *s, uint32_t flags, const uint8_t *data, size_t len);
    void (*close)(stream *s, uint16_t code, const uint8_t *reason, size_t reason_len);
} stream_ops;

struct stream {
    gateway *gw;
    const stream_ops *ops; /* the front end's half of the exchange */
    void *owner;           /* the front end's object (HTTP/1.1: its connection) */

    /* worker side */
    pool *pool;           /* chosen by the router */
    wlink *link;          /* set while the protocol stream is open on a link */
    uint64_t sid;
    int64_t worker_id;    /* -1 until dispatched */
    stream *qnext, *qprev;
    bool queued;
    uint64_t queued_at;
    uint8_t refusals;     /* RESET refused/overloaded taken, each retried elsewhere */
    const wlink *refused_by; /* the link of the last RESET: a retry prefers another
                              * (compared, never followed: it may be gone) */

    /* request, as sent in REQUEST (views into the front end's head buffer) */
    sluice_request req;
    uint32_t body_mode;
    uint64_t content_length; /* valid when has_length (any uint64, 2^64-1 too) */
    bool has_length;         /* Content-Length framed (not chunked, not none) */
    uint64_t body_limit;
    uint64_t body_received;  /* client body bytes read so far */
    uint64_t body_sent;      /* forwarded to the worker */
    bool req_complete;       /* the whole request was read from the client */
    bool end_sent;           /* END (or body none) sent to the worker */
    bool expect_continue;
    bool continue_sent;
    bool credit_seen;        /* the worker granted request-body credit at least once */
    bool ws_offer;           /* a checked WebSocket handshake (PROTOCOL.md 5.2) */
    bool ws;                 /* ...that went to a worker taking WebSockets (REQUEST body 3) */
    sluice_bytes ws_key;     /* Sec-WebSocket-Key (HTTP/1.1), a view into the head */
    uint64_t ws_max_message; /* the pool's, or the worker's LIMIT */

    /* response */
    bool resp_started;       /* RESPONSE received and the head queued to the client */
    bool resp_done;          /* the response is complete on the client side */
    bool resp_no_body;       /* HEAD, 204, 304 */
    int status;
    uint64_t resp_cl;        /* UINT64_MAX: none */
    uint64_t resp_bytes;     /* response body bytes queued to the client */
    uint64_t start_ms;

    /* scratch for REQUEST headers and trailers; hdr_cap entries */
    uint32_t hdr_cap;
    sluice_header hdrs[];
};

/* ---- worker side -> front end: dispatch through s->ops ---------------- */

static inline void stream_dispatched(stream *s) { s->ops->dispatched(s); }
static inline void stream_on_response(stream *s, const sluice_response *r) { s->ops->response(s, r); }
static inline void stream_on_body(stream *s, const uint8_t *data, size_t len) { s->ops->body(s, data, len); }
static inline void stream_on_end(stream *s, const sluice_headers *trailers) { s->ops->end(s, trailers); }
static inline void stream_on_credit(stream *s) { s->ops->credit(s); }
static inline void stream_on_limit(stream *s, uint64_t max_body) { s->ops->limit(s, max_body); }
static inline void stream_on_reset(stream *s, uint64_t code) { s->ops->reset(s, code); }
static inline void stream_on_lost(stream *s) { s->ops->lost(s); }
static inline void stream_on_unavailable(stream *s, int status) { s->ops->unavailable(s, status); }
static inline void stream_on_message(stream *s, uint32_t flags, const uint8_t *data, size_t len)
{
    if (s->ops->message)
        s->ops->message(s, flags, data, len);
}
static inline void stream_on_close(stream *s, uint16_t code, const uint8_t *reason, size_t len)
{
    if (s->ops->close)
        s->ops->close(s, code, reason, len);
}

/* ---- front end -> worker side (stream.c) ------------------------------ */

/* A zeroed stream with room for `n_headers` request headers plus trailers,
 * from the loop's free list (no allocation per request once warm); NULL
 * when out of memory. The caller sets ops and owner. */
stream *stream_get(gateway *gw, uint32_t n_headers);
/* Back to the free list: the stream must be off every link and queue
 * (stream_cancel, stream_withdraw). */
void stream_put(gateway *gw, stream *s);
/* Release the recycled stream objects (at exit). */
void stream_free_all(gateway *gw);

/* Pick the pool for s->req by `host` (the Host value, port allowed) and the
 * target, and take the pool's body limit. */
void stream_route(stream *s, const uint8_t *host, size_t host_len);
/* The routed pool's settings (they change on reload: do not keep them). */
const sluice_pool_config *stream_config(const stream *s);
/* Send the stream to a worker, or queue it. 0: dispatched (ops->dispatched
 * ran), 1: queued, -EBUSY: queue full or pool stopping, -EMSGSIZE: head too
 * large for the worker, another negative errno: could not open it. */
int stream_submit(stream *s);
/* The status a front end answers when stream_submit failed with rc: 503
 * (-EBUSY), 431 (-EMSGSIZE), else 502. */
int stream_submit_status(int rc);
/* Take a queued stream out of its queue (no-op when not queued). */
void stream_withdraw(stream *s);

/* With s->link set: request-body credit the worker holds out. */
uint32_t stream_send_window(const stream *s);
/* With s->link set: request body (within the window) and END. */
int stream_send_body(stream *s, const uint8_t *data, size_t len);
int stream_send_end(stream *s, const sluice_header *trailers, size_t n);
/* With s->link set: response-body credit back to the worker (CREDIT). */
int stream_grant(stream *s, uint32_t n);
/* n more response bytes were taken by the client: add them to *unacked
 * and grant them in batches of half the pool's window (no-op without a
 * link). */
void stream_credit_written(stream *s, uint64_t *unacked, uint64_t n);
/* WebSocket streams, with s->link set: message data within
 * stream_send_window (flags SLUICE_MSG_*), or a PONG; CLOSE ends the
 * stream (s->link is NULL after). */
int stream_send_message(stream *s, uint32_t flags, const uint8_t *data, size_t len);
void stream_send_close(stream *s, uint16_t code, const uint8_t *reason, size_t reason_len);
/* Abandon the stream on its link, telling the worker why (CANCEL); no-op
 * without a link. s->link is NULL after. */
void stream_cancel(stream *s, uint32_t reason);
/* The worker answered RESET `code` (s->link is NULL). A refusal
 * (refused/overloaded) of a stream the worker did nothing with (no
 * response, no request body byte sent) is placed again, on another worker
 * or in the queue, a bounded number of times, so a worker leaving mid-load
 * fails no request. 0: dispatched again, 1: queued again (the front end
 * arms its queue timeout), -1: not retried (answer 503 for a refusal, else
 * 502: see stream_reset_status). */
int stream_retry(stream *s, uint64_t code);
/* The status for a RESET that was not retried: 503 refused, 502 else. */
int stream_reset_status(uint64_t code);
/* LIMIT from the worker, capped at the pool's max_body_ceiling: a
 * WebSocket stream's message limit (returns true; its front end or
 * session applies s->ws_max_message), else the request-body limit
 * (s->body_limit; false: the front end checks it against the body). */
bool stream_limit(stream *s, uint64_t max);
/* Count the finished exchange in its pool's metrics (no-op when unrouted). */
void stream_record(const stream *s, double seconds);
/* WebSocket metrics of the stream's pool (pool_ws_count). */
void stream_ws_count(const stream *s, int open_delta, uint64_t msgs_in, uint64_t msgs_out, uint64_t bytes_in,
                     uint64_t bytes_out);

#endif
