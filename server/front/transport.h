/* A client connection's transport: what a front end reads from and writes
 * to, under it. Two implementations behind one small operations table:
 *
 *   plain TCP  the uv_tcp_t itself: reads land in the front end's buffers,
 *              writes go from its buffers (no copy, one indirect call);
 *   TLS        a tls_session (tls/tls.h) over the socket: ciphertext read is
 *              fed, plaintext is handed to the front end as if read; the
 *              front end's output is encrypted in slices and the ciphertext
 *              written. A write completes (cb->written) only once all of its
 *              ciphertext went to the socket, so the front end sees its write
 *              pending exactly as long as with plain TCP, and response credit
 *              still follows what the client took.
 *
 * The front end calls the operations; the transport reports through the
 * front end's callbacks (transport_cb), never directly. TLS failures (not
 * TLS, handshake, truncated, protocol, handshake timeout) are logged once
 * at info level with the peer address and reported as a read error. */
#ifndef SLUICE_TRANSPORT_H
#define SLUICE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "core/gateway.h"

typedef struct transport transport;
typedef struct tls_ctx tls_ctx;
typedef struct tls_link tls_link;

/* The front end's side: how the transport reports. */
typedef struct transport_cb {
    /* A buffer for the next read (plaintext). */
    void (*alloc)(transport *t, uv_buf_t *buf);
    /* nread bytes arrived in buf (> 0), or the stream ended (< 0: UV_EOF,
     * a socket error, or a TLS failure, already logged). */
    void (*read)(transport *t, ssize_t nread, const uv_buf_t *buf);
    /* The write started by ops->write completed (status < 0: failed). */
    void (*written)(transport *t, int status);
    /* ops->close finished: every handle of the transport is closed. */
    void (*closed)(transport *t);
} transport_cb;

typedef struct transport_ops {
    int (*read_start)(transport *t);
    void (*read_stop)(transport *t);
    /* Write now what the socket takes without waiting: the count (maybe
     * short), UV_EAGAIN for none, or an error. TLS: always UV_EAGAIN. */
    int (*try_write)(transport *t, const char *p, size_t n);
    /* Write all n bytes; p stays valid and untouched until cb->written.
     * One write at a time. */
    int (*write)(transport *t, const char *p, size_t n);
    /* A TLS handshake is in progress (its own timeout applies). */
    bool (*handshaking)(const transport *t);
    /* The connection goes idle (keep-alive wait): give back buffers. */
    void (*idle)(transport *t);
    /* Close (TLS: close_notify first, best effort); cb->closed follows. */
    void (*close)(transport *t);
} transport_ops;

struct transport {
    const transport_ops *ops;
    const transport_cb *cb;
    gateway *gw;
    uv_tcp_t tcp; /* the client socket (accepted into by the listener) */
    uv_write_t wreq;
    tls_link *tls; /* TLS state; NULL for plain TCP */
    const char *peer; /* for log lines: "ADDR:PORT" (owned by the front end) */
};

/* Init the socket handle on gw->loop. ctx: the listener's TLS context, or
 * NULL for plain TCP. */
/* Returns 0, or -ENOMEM (nothing initialized). */
int transport_init(transport *t, gateway *gw, tls_ctx *ctx, const transport_cb *cb);
/* The socket was accepted: set up what the transport needs (TLS: the
 * session and the handshake timer). Returns 0 or a negative errno (then
 * close it). */
int transport_start(transport *t, const char *peer);

#endif
