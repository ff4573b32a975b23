/* The HTTP/1.1 front end's connection, shared by the files of front/http1/
 * (not a public header: the rest of the gateway sees http1.h only).
 *
 * A connection runs one exchange at a time: pipelined requests wait in the
 * input buffer (bounded) until the response before them is complete, which
 * keeps responses in order and memory bounded. Request bodies are fed to
 * the parser only as far as the worker's credit allows, so a stalled worker
 * stops the reads from its client (TCP backpressure). Response bodies are
 * credited back to the worker only once the client socket took them.
 *
 * The files, each calling only those below it:
 *   http1.c     accepting: a new connection's setup; listener operations
 *   request.c   llhttp callbacks, head checks, the stream built from the head
 *   response.c  stream_ops: the worker's response written to the client
 *   conn.c      reading, parsing within credit, timers, keep-alive,
 *               pipelining, writing; finishing or failing the exchange
 *   output.c    the response buffer, gateway-made responses, request body
 *               and credit for the worker, access-log lines, closing
 *   fields.h, strict.c  pure helpers and RFC 9112 scanners */
#ifndef SLUICE_HTTP1_CONN_H
#define SLUICE_HTTP1_CONN_H

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/gateway.h"
#include "exchange/stream.h"
#include "front/http1/strict.h"
#include "front/listener.h"
#include "transport/transport.h"

#define IN_SIZE (64 * 1024)
/* Raw bytes fed to the parser beyond the worker's credit: lets chunk
 * framing complete when the credit is exactly used up; at most this many
 * body bytes wait in `pending`. */
#define SLACK 64
#define TRAILER_BYTES 4096
#define MAX_TRAILERS 32
#define OUT_MAX (64u << 20)
/* Unsent response bytes beyond which the next pipelined request is not
 * started (nor, once IN_SIZE is buffered, more bytes read). */
#define PIPELINE_OUT_MAX (64 * 1024)

enum { T_NONE, T_HEADER, T_KEEPALIVE, T_QUEUE, T_RESPONSE, T_LINGER };
enum { P_NONE, P_HEADERS, P_CHUNK, P_MESSAGE };

typedef struct {
    uint32_t name_off, name_len, val_off, val_len;
} hoff;

typedef struct conn {
    front_conn base; /* first: the listener's view */
    gateway *gw;
    transport *tr; /* the client socket, plain or TLS */
    uv_timer_t timer;
    uv_timer_t body_timer; /* client body idle (runs beside `timer`) */
    bool body_timer_on;
    int handles;
    int timer_kind;
    llhttp_t parser;
    flush_node flush;
    char remote[48];
    char local[48];
    const char *scheme; /* the listener's: "http" or "https" */
    uint16_t remote_port, local_port;

    /* input: either the gateway's shared buffer (during a read callback) or
     * this connection's own buffer holding unparsed bytes between reads */
    uint8_t *own_in;
    const uint8_t *ibase;
    size_t istart, iend;
    bool reading, eof;
    bool sniff;     /* the first bytes may still turn out to be HTTP/2 */
    bool unlisted;  /* handed over: no longer in the listener's list */

    /* request head being parsed */
    sluice_buf head;
    hoff *hoffs;
    uint32_t nh, n_req_headers, n_trailers, max_headers;
    int hstate; /* 0: between headers, 1: in a name, 2: in a value */
    uint32_t url_off, url_len;
    bool msg_started, in_trailers;
    bool method_done, line_done; /* parsed so far: for the access log of a refusal */
    int pause;
    int error_status;
    head_scan hscan;  /* request head or trailer section being checked */
    chunk_scan cscan;
    bool chunk_line;  /* the next bytes are a chunk-size line (parsed here) */

    stream *cur;
    struct wsconn *upgrade; /* the worker accepted a WebSocket: hand over once the 101 is written */
    uint32_t requests;
    bool keepalive;
    bool parsing, reparse;
    bool held;      /* a pipelined request waits for unsent responses to drain */
    bool closing; /* close once output is flushed */
    /* The worker answered before the upload was read: the rest is read and
     * dropped (up to discard_until body bytes) to keep the connection. */
    bool discarding, discard_refused;
    uint64_t discard_until;
    /* Closing while the client may still be sending: half-close, then read
     * and drop for a while (lingering close) before the close. */
    bool linger, lingering;
    uint64_t linger_start;
    bool closed;  /* handles are closing */

    const char *feed_base;  /* start of the bytes given to llhttp_execute */
    char prev_tail[8];      /* the last bytes of the previous feed */
    size_t prev_tail_len;

    uint8_t pending[SLACK];
    size_t pending_len;

    sluice_buf out, wbuf;
    bool writing;
    uint64_t out_credit, wbuf_credit; /* response body bytes inside out / wbuf */
    uint64_t unacked;                 /* written to the client, not yet credited */
    bool chunked_out;                 /* the response body goes out chunked */
    bool close_delimited;             /* HTTP/1.0 without a length: the close ends the body */
} conn;

/* request.c: the parser callbacks; response.c: the stream operations */
extern const llhttp_settings_t h1_parser_settings;
extern const stream_ops h1_stream_ops;
/* conn.c: what the transport reports to */
extern const transport_cb h1_transport_cb;

static inline conn *h1_conn_of(transport *t)
{
    return t->owner;
}

/* ---- conn.c ----------------------------------------------------------- */

/* Feed the parser as far as the current exchange allows. Re-entrant calls
 * only mark that another pass is needed. */
void h1_parse(conn *c);
/* Arm the connection timer for `kind` (T_*), or stop it (T_NONE). */
void h1_set_timer(conn *c, int kind);
/* Start or stop reading from the client as buffers and state allow. */
void h1_update_reading(conn *c);
/* The end-of-iteration flush of the connection's output (c->flush.fn). */
void h1_flush(flush_node *n);
/* The exchange cannot complete normally: status 0 sends nothing (a
 * started response is cut), else an error response; the worker gets
 * CANCEL with cancel_reason (0: internal). */
void h1_exchange_fail(conn *c, int status, uint32_t cancel_reason);
/* The stream finished on both sides: next request, or close. */
void h1_exchange_maybe_finish(conn *c);
/* Stop reading an unread upload's rest (too large, too slow): close after
 * the response instead. */
void h1_discard_give_up(conn *c);

/* ---- output.c --------------------------------------------------------- */

/* Queue bytes for the client (flushed at the end of the iteration); an
 * overflow closes the connection. */
void h1_out(conn *c, const void *p, size_t n);
void h1_out_str(conn *c, const char *s);
/* Credit response-body bytes the client socket has taken. */
void h1_credit_written(conn *c, uint64_t n);
/* Queue a complete error response; returns its body length. */
size_t h1_write_error(conn *c, int status, bool close);
/* Access log line for a request refused before it became an exchange. */
void h1_log_refused(conn *c, int status, size_t bytes);
/* Metrics and the access log line of a finished exchange. */
void h1_log_exchange(conn *c, stream *s);
/* Forget the parsed head (between requests). */
void h1_reset_head(conn *c);
/* Forward pending body bytes and END as credit allows. */
void h1_forward_pending(conn *c);
/* Close now (idempotent): the exchange in flight is cancelled, memory is
 * freed once the handles closed. */
void h1_close(conn *c);
/* The connection was handed to another front end (which owns the
 * transport now): forget it without closing the transport. */
void h1_detach(conn *c);
/* The transport's handles are closed (transport_cb.closed). */
void h1_transport_closed(transport *t);

#endif
