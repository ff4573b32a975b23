/* One connection to a worker: decoder, protocol state machine, batched
 * output. Streams are multiplexed on it. The link calls nothing of its
 * owner (the pool) directly: it reports through wlink_owner_ops, and it
 * reports stream events through each stream's operations (stream.h). */
#ifndef SLUICE_WORKER_LINK_H
#define SLUICE_WORKER_LINK_H

#include "core/gateway.h"

typedef struct worker_proc worker_proc;

/* What a link tells its owner (the pool that accepted it), and asks it. */
typedef struct wlink_owner_ops {
    /* A valid HELLO arrived (token checked), before the gateway answers:
     * the owner records the worker (wlink_set_proc). */
    void (*hello)(void *owner, wlink *l, const sluice_hello *h, int peer_pid);
    /* The handshake is done: the link can open streams. */
    void (*ready)(void *owner, wlink *l);
    /* A stream closed: the link may take another. */
    void (*capacity)(void *owner, wlink *l);
    /* The worker sent RETIRE: it opens no more streams. */
    void (*retire)(void *owner, wlink *l);
    /* The link closed (its open streams got stream_on_lost first). */
    void (*closed)(void *owner, wlink *l);
    /* The owner's settings now (a reload replaces them): max_frame and
     * startup_timeout_ms at accept; token, window, max_frame, max_streams
     * at HELLO. */
    const sluice_pool_config *(*config)(const void *owner);
} wlink_owner_ops;

typedef struct tls_ctx tls_ctx;

/* Accept a connection on a pool's socket. `name` (the pool's, for logs and
 * the gateway's HELLO) must outlive the link. `tls`: the listener's TLS
 * context (TCP listeners only), or NULL for plain. */
int wlink_accept(gateway *gw, uv_stream_t *server, tls_ctx *tls, const char *name, const wlink_owner_ops *ops,
                 void *owner);

/* Open stream `s` on the link: sends REQUEST. -EMSGSIZE if the head does not
 * fit the worker's max_frame. */
int wlink_open(wlink *l, stream *s);
bool wlink_can_open(const wlink *l);
/* The worker sent RETIRE: the link opens no more streams. */
bool wlink_retiring(const wlink *l);
uint32_t wlink_open_streams(const wlink *l);
bool wlink_ready(const wlink *l);
/* Ready and taking new streams: not draining, not retiring, not closing
 * (whether or not a stream is free now). */
bool wlink_serving(const wlink *l);
/* Streams the link may have open at once (the lower of the worker's and
 * the gateway's max_streams). */
uint32_t wlink_max_streams(const wlink *l);
int64_t wlink_worker_id(const wlink *l);
int wlink_pid(const wlink *l);
uint64_t wlink_requests(const wlink *l);
uint64_t wlink_connected_ms(const wlink *l); /* loop time of accept */
const char *wlink_peer(const wlink *l);     /* TCP peer address, "" for Unix */

/* Request-body credit the worker has granted on the stream. */
uint32_t wlink_send_window(const wlink *l, const stream *s);
/* Body bytes go out as BODY frames within the window. */
int wlink_send_body(wlink *l, stream *s, const uint8_t *data, size_t len);
int wlink_send_end(wlink *l, stream *s, const sluice_header *trailers, size_t n);
/* WebSocket streams: MESSAGE data within the window (split to the worker's
 * max_frame), or a PING/PONG; CLOSE (closes the stream: s->link becomes
 * NULL). */
int wlink_send_message(wlink *l, stream *s, uint32_t flags, const uint8_t *data, size_t len);
void wlink_send_close(wlink *l, stream *s, uint16_t code, const uint8_t *reason, size_t reason_len);
/* Response-body credit back to the worker. */
int wlink_send_credit(wlink *l, stream *s, uint32_t n);
/* Abandon the stream (closes it: s->link becomes NULL). */
void wlink_cancel(wlink *l, stream *s, uint32_t reason);
/* Stop opening streams; the worker finishes and closes. */
void wlink_drain(wlink *l, uint64_t timeout_ms);
/* Close now (streams get stream_on_lost). */
void wlink_close(wlink *l, int err, const char *why);

void wlink_set_proc(wlink *l, worker_proc *p, int64_t worker_id);
worker_proc *wlink_proc(const wlink *l);

#endif
