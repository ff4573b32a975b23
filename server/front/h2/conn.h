/* The HTTP/2 front end's connection and stream objects, shared by the files
 * of front/h2/ (the rest of the gateway sees h2.h only).
 *
 * Flow control end to end, so memory per stream is bounded as for
 * HTTP/1.1:
 *   request body   the client may send up to our stream window (64 KiB),
 *                  which is opened again (WINDOW_UPDATE, through
 *                  nghttp2_session_consume) only for bytes forwarded to the
 *                  worker within its credit; at most a window waits here;
 *   response body  the worker sends within its credit (the pool's window);
 *                  DATA leaves within the client's window, and the bytes are
 *                  credited back to the worker once the socket took them.
 *
 * The files, each calling only those below it:
 *   h2.c        taking a connection over: session, settings, listener ops
 *   request.c   nghttp2 receive callbacks: heads into streams, request
 *               bodies and trailers, stream closes, flood accounting
 *   response.c  stream_ops: the worker's response as HEADERS, DATA and
 *               trailing HEADERS; errors and retries
 *   conn.c      reading, writing (nghttp2 send callbacks), response credit,
 *               request body forwarding, deadlines, finishing streams,
 *               closing */
#ifndef SLUICE_H2_CONN_H
#define SLUICE_H2_CONN_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/gateway.h"
#include "exchange/stream.h"
#include "front/h2/h2.h"
#include "front/listener.h"
#include "transport/transport.h"
#include "front/ws/session.h"

/* Our stream-level receive window (SETTINGS_INITIAL_WINDOW_SIZE) and the
 * connection's: what may wait here of request bodies. */
#define H2_STREAM_WINDOW 65535
#define H2_CONN_WINDOW (1u << 20)
/* Output buffered beyond this: nghttp2 produces no more frames and the
 * connection stops reading until the socket took some. */
#define H2_OUT_HIGH (256u * 1024u)
#define H2_OUT_MAX (64u << 20)
/* Response body bytes buffered per stream: the worker's credit bounds it;
 * this is the backstop for a worker that ignores credit. */
#define H2_RESP_MAX (64u << 20)
/* Room for request trailers beyond max_headers. */
#define H2_MAX_TRAILERS 32
/* Floods: empty DATA frames (no END_STREAM) per connection. */
#define H2_MAX_EMPTY_FRAMES 1000
/* Rapid reset (CVE-2023-44487): RST_STREAM frames a client may send, a
 * token bucket of this burst refilled this many per second (nghttp2's
 * numbers; its own limiter acts only once the GOAWAY has been written,
 * after every stream the reads of this loop iteration opened). */
#define H2_RESET_BURST 1000
#define H2_RESET_RATE 33

/* After a graceful end, how long the connection still reads before it
 * closes (unless the client closes first). */
#define H2_LINGER_MS 1000

/* Streams remembered as reset by us (their client may not know yet). */
#define H2_RESET_RING 128

/* What a stream waits for: its deadline kind. */
enum { D_NONE, D_HEAD, D_QUEUE, D_RESPONSE, D_BODY, D_SEND };

typedef struct h2conn h2conn;

/* One HTTP/2 stream. */
typedef struct h2s {
    h2conn *c;
    int32_t id;
    stream *s;                 /* the exchange (until the HTTP/2 stream closes) */
    struct h2s *prev, *next;   /* c->streams */
    struct h2s *cnext;         /* c->credit list */
    bool in_clist;

    /* request head: header values live in nghttp2's buffers, held here */
    nghttp2_rcbuf **rc;
    uint32_t n_rc, rc_cap;
    uint32_t n_headers, n_trailers;
    uint32_t max_headers;      /* at creation: a reload may change the setting mid-head */
    uint64_t head_bytes;       /* decoded header list size (RFC 9113 6.5.2) */
    int head_error;            /* a status to answer instead (400, 414, 431, 501) */
    bool head_done;            /* the request's header block ended */
    sluice_bytes method, path, authority;
    int host_index;            /* in s->hdrs, -1: none */
    uint32_t n_cookies;
    uint8_t *cookie;           /* the cookie fields joined ("; ") */
    bool in_trailers;
    bool expect_continue;      /* expect: 100-continue */
    sluice_bytes protocol;     /* :protocol (extended CONNECT, RFC 8441) */
    ws_session *ws;            /* a WebSocket (RFC 8441) once the worker accepted it; then s is NULL */

    /* request body */
    uint8_t *pending;          /* received, not yet forwarded (< our window) */
    size_t pending_len, pending_cap;
    bool end_stream;           /* the client ended its side */
    bool discard;              /* the body is not wanted: consume and drop */

    /* response */
    bool head_sent;            /* response HEADERS submitted */
    bool resp_end;             /* nothing more goes into rbuf */
    uint8_t *rbuf;             /* response body waiting for the client's window */
    size_t rlen, roff, rcap;
    uint8_t *tbuf;             /* response trailers, NUL-free name/value pairs */
    nghttp2_nv *tnv;
    size_t n_tnv;
    uint64_t q_out, q_w;       /* response bytes in c->out / in the write in flight */
    uint64_t unacked;          /* written, not yet credited to the worker */

    /* deadlines (uv_now milliseconds) */
    uint64_t mark;             /* start of the current wait */
    uint64_t body_mark;        /* last request body bytes */
    uint64_t send_mark;        /* last response bytes taken by the client */
} h2s;

struct h2conn {
    front_conn base; /* first: the listener's view */
    gateway *gw;
    transport *tr;
    nghttp2_session *ng;
    const char *scheme;
    uv_timer_t timer;
    uint64_t timer_due;        /* 0: not armed */
    flush_node flush;

    h2s *streams;
    uint32_t n_streams;        /* h2s objects alive */
    uint64_t requests;         /* streams opened */
    uint64_t idle_since;       /* no stream since (for keep-alive) */
    h2s *clist;                /* streams with response bytes not yet credited */

    sluice_buf out, wbuf;      /* frames waiting; frames being written (H2_OUT_MAX) */
    bool writing;
    uint64_t write_mark;       /* the write in flight started */

    uint32_t empty_frames;
    uint64_t reset_credit;     /* thousandths of an RST_STREAM the client may send */
    uint64_t reset_mark;       /* credit added up to (uv_now) */
    int32_t last_client_id;    /* highest stream a client HEADERS opened */
    int32_t resets[H2_RESET_RING]; /* streams reset recently: late frames may follow */
    uint32_t n_resets;
    bool reading, eof;
    bool goaway;               /* GOAWAY sent: no new streams */
    bool closing;              /* close once the output is written */
    bool hard_close;           /* ... at once: an error, no lingering */
    uint64_t linger_due;       /* lingering (reading) until then; 0: not */
    bool closed;
    int handles;
    bool got_request;          /* a HEADERS frame arrived */
    char remote[48], local[48];
    uint16_t remote_port, local_port;
    uint8_t *scratch;          /* lower-cased response field names */
    size_t scratch_cap;
};

/* request.c: the receive callbacks; response.c: the stream operations */
void h2_set_recv_callbacks(nghttp2_session_callbacks *cb);
extern const stream_ops h2_stream_ops;
/* conn.c: what the transport reports to */
extern const transport_cb h2_transport_cb;

/* ---- conn.c ----------------------------------------------------------- */

/* Set the send callbacks of the session. */
void h2_set_send_callbacks(nghttp2_session_callbacks *cb);
/* Produce and write frames at the end of this loop iteration. */
void h2_want_flush(h2conn *c);
/* The end-of-iteration flush (c->flush.fn). */
void h2_flush(flush_node *n);
/* Process bytes read from the client (the session may queue frames). */
void h2_input(h2conn *c, const uint8_t *data, size_t len);
/* Start or stop reading as output backlog allows. */
void h2_update_reading(h2conn *c);
/* A new stream object for `id`, in c->streams; NULL when out of memory. */
h2s *h2s_new(h2conn *c, int32_t id);
/* The HTTP/2 stream closed: cancel the exchange if unfinished, log it,
 * free everything. */
void h2s_close(h2s *x, uint32_t error_code);
/* Arm the connection's timer for uv_now + ms at the latest. */
void h2_arm(h2conn *c, uint64_t ms);
/* Forward pending request body and END within the worker's credit,
 * opening the client's window for what went. */
void h2_forward_body(h2s *x);
/* Credit response bytes taken by the client (or discarded). */
void h2_credit_written(h2s *x, uint64_t n);
/* Answer with a gateway-made response (status > 0) or reset the stream
 * (status 0, or the response already started); the worker gets CANCEL
 * with cancel_reason (0: internal) when it still has the stream. */
void h2_fail(h2s *x, int status, uint32_t cancel_reason);
/* Submit the response HEADERS; with_body: a DATA source (rbuf) follows. */
int h2_submit_head(h2s *x, const nghttp2_nv *nv, size_t n, bool with_body);
/* Send RST_STREAM (the stream closes through the close callback). */
void h2_reset(h2s *x, uint32_t h2_error);
/* Append to the stream's response buffer (DATA within the client's
 * window): 0, or -ENOBUFS beyond H2_RESP_MAX. */
int h2_rbuf_append(h2s *x, const uint8_t *data, size_t len);
/* The worker accepted the WebSocket of x (RFC 8441): the session carries
 * on over the stream's DATA frames. */
void h2_ws_start(h2s *x, ws_session *ws);
/* Feed the client bytes x holds to its WebSocket session. */
void h2_ws_feed(h2s *x);
/* Send GOAWAY (NO_ERROR: graceful, the streams in flight finish) and
 * close once no stream is left. */
void h2_goaway(h2conn *c, uint32_t h2_error);
/* Close now: every stream is cancelled with `reason`. */
void h2_close(h2conn *c, uint32_t reason);

#endif
