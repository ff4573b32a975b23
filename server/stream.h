/* A stream: one request/response exchange between an HTTP client connection
 * and a worker. The HTTP side (http_conn.c) creates it from a parsed request
 * head and owns it; the worker side (pool.c, worker_link.c) queues it,
 * carries it over a link and reports the worker's frames back through the
 * stream_on_* functions. */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"

struct stream {
    gateway *gw;
    conn *conn;

    /* worker side */
    pool *pool;           /* chosen by the router */
    wlink *link;          /* set while the protocol stream is open on a link */
    uint64_t sid;
    int64_t worker_id;    /* -1 until dispatched */
    stream *qnext, *qprev;
    bool queued;
    uint64_t queued_at;
    uint8_t refusals;     /* RESET refused/overloaded taken, each retried elsewhere */

    /* request, as sent in REQUEST (views into the connection's head buffer) */
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

    /* response */
    bool resp_started;       /* RESPONSE received and the head queued to the client */
    bool resp_done;          /* the response is complete on the client side */
    bool resp_no_body;       /* HEAD, 204, 304 */
    bool chunked_out;
    bool close_delimited;
    int status;
    uint64_t resp_cl;        /* UINT64_MAX: none */
    uint64_t resp_bytes;     /* response body bytes queued to the client */
    uint64_t start_ms;

    /* scratch for REQUEST headers; sized max_headers */
    uint32_t hdr_cap;
    sluice_header hdrs[];
};

stream *stream_get(gateway *gw, uint32_t max_headers);
void stream_put(gateway *gw, stream *s);

/* Worker side -> HTTP side. When a frame closes the protocol stream
 * (response END, RESPONSE without body, RESET), s->link is already NULL
 * when these are called. */
void stream_dispatched(stream *s);
void stream_on_response(stream *s, const sluice_response *r);
void stream_on_body(stream *s, const uint8_t *data, size_t len);
void stream_on_end(stream *s, const sluice_headers *trailers);
void stream_on_credit(stream *s);
void stream_on_limit(stream *s, uint64_t max_body);
void stream_on_reset(stream *s, uint64_t code);
/* The link died or broke the protocol (s->link is NULL). */
void stream_on_lost(stream *s);
/* The pool could not place the stream: 503 (queue full) or 504 (timeout). */
void stream_on_unavailable(stream *s, int status);

#endif
