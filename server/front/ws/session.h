/* A WebSocket session: one accepted WebSocket's RFC 6455 side, whatever
 * carries its bytes (an HTTP/1.1 connection's transport after the 101, or
 * an HTTP/2 stream after extended CONNECT, RFC 8441). Private to the front
 * ends: front/ws/conn.c (HTTP/1.1) and front/h2 use it.
 *
 * The session owns the stream after the worker's 101 (s->ops, s->owner)
 * and talks to its carrier through ws_carrier: frames out, "feed me again",
 * "finish". The carrier feeds it client bytes (ws_session_input, which
 * takes only what the worker's credit and the output bound allow: the
 * carrier keeps the rest and stops reading) and reports bytes the client
 * took (ws_session_written), which are credited back to the worker. */
#ifndef SLUICE_FRONT_WS_SESSION_H
#define SLUICE_FRONT_WS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gateway.h"
#include "exchange/stream.h"

typedef struct ws_session ws_session;

typedef struct ws_carrier {
    /* Queue n bytes of frames for the client, in order. */
    void (*out)(void *cx, const uint8_t *p, size_t n);
    /* Input held back may be fed again (the worker granted credit, or the
     * output drained). */
    void (*resume)(void *cx);
    /* The session is over. clean: after its queued output (HTTP/1.1: close
     * the connection; HTTP/2: END_STREAM); else at once (close, RST_STREAM).
     * Called once; the carrier then calls ws_session_release. */
    void (*finish)(void *cx, bool clean);
    /* Has the client gone (NULL: cannot tell)? Asked while its input waits
     * for the worker, when it cannot be read. */
    bool (*gone)(void *cx);
} ws_carrier;

/* Check the worker's 101 (each field valid, at most one subprotocol and one
 * the client offered) and call emit(name, value) for each field to pass on
 * (not hop-by-hop, framing, or the handshake's own fields). Returns 0 or
 * -EINVAL (the client gets 502). */
int ws_response_fields(const stream *s, const sluice_response *r,
                       int (*emit)(void *ctx, sluice_bytes name, sluice_bytes value), void *ctx);

/* The worker accepted stream s (RESPONSE 101): the session takes it over.
 * `remote` is the client's address (for logs), `target` its request
 * target (copied). NULL when out of memory. Output produced before
 * ws_session_start waits in the session. */
ws_session *ws_session_accept(gateway *gw, stream *s, const char *remote);
/* The carrier is ready: queued output goes to it, keepalive starts. */
void ws_session_start(ws_session *w, const ws_carrier *carrier, void *cx);
/* Client bytes (unmasked in place); returns how many were taken. */
size_t ws_session_input(ws_session *w, uint8_t *data, size_t len);
/* The client took n bytes of the session's output. */
void ws_session_written(ws_session *w, uint64_t n);
/* The client's side ended (FIN, reset, END_STREAM) with no close frame. */
void ws_session_eof(ws_session *w);
/* The gateway stops: close 1001 to the client and the worker, finish. */
void ws_session_going_away(ws_session *w);
/* The carrier is gone (or done): a stream still open gets CLOSE `code`
 * (1006: the connection was lost; 1001: shutdown); the session is freed. */
void ws_session_release(ws_session *w, unsigned code);

#endif
