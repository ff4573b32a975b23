/* A connection's transport: what a front end (or a worker link) reads from
 * and writes to, under it. Two implementations behind one small operations
 * table:
 *
 *   plain      the socket itself (TCP, or a Unix socket for worker links):
 *              reads land in the owner's buffers, writes go from its
 *              buffers (no copy, one indirect call);
 *   TLS        a tls_session (tls/tls.h) over the socket: ciphertext read is
 *              fed, plaintext is handed to the front end as if read; the
 *              front end's output is encrypted in slices and the ciphertext
 *              written. A write completes (cb->written) only once all of its
 *              ciphertext went to the socket, so the front end sees its write
 *              pending exactly as long as with plain TCP, and response credit
 *              still follows what the client took. try_write encrypts at once
 *              and hands the socket what it takes (the rest follows).
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
     * short), UV_EAGAIN for none, or an error. TLS: the count of plaintext
     * taken (encrypted; ciphertext the socket did not take yet leaves
     * before anything written later). */
    int (*try_write)(transport *t, const char *p, size_t n);
    /* Write all n bytes; p stays valid and untouched until cb->written.
     * One write at a time. */
    int (*write)(transport *t, const char *p, size_t n);
    /* A TLS handshake is in progress (its own timeout applies). */
    bool (*handshaking)(const transport *t);
    /* The connection goes idle (keep-alive wait): give back buffers. */
    void (*idle)(transport *t);
    /* Close (TLS: close_notify first, best effort); cb->closed follows,
     * after which the transport frees itself. */
    void (*close)(transport *t);
    /* Half-close: no more output (TLS: close_notify), the socket's write
     * side shut down once what was written has left; reading goes on.
     * Returns 0 or a negative errno. */
    int (*shutdown)(transport *t);
    /* The ALPN protocol the TLS handshake chose ("h2", "http/1.1"), or
     * NULL (plain TCP, or the handshake is not done). */
    const char *(*alpn)(const transport *t);
} transport_ops;

/* A transport is allocated on its own, not inside a front end's object, so
 * that a connection can change hands: the HTTP/1.1 front end hands it to
 * HTTP/2 when the client opens with the h2 preface (or TLS chose "h2"). */
struct transport {
    const transport_ops *ops;
    const transport_cb *cb;
    void *owner; /* the front end's connection */
    gateway *gw;
    union { /* the socket (accepted into by the listener) */
        uv_tcp_t tcp;
        uv_pipe_t pipe; /* worker links on a Unix socket (plain only) */
        uv_stream_t stream;
    };
    bool is_pipe;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    tls_link *tls; /* TLS state; NULL for plain TCP */
    /* the two ends, set by transport_start */
    char remote[48], local[48];
    uint16_t remote_port, local_port;
    char peer[64]; /* "remote:port", for log lines */
};

/* A transport with its socket handle initialized on gw->loop, reporting to
 * cb with t->owner = owner. ctx: the listener's TLS context, or NULL for
 * plain TCP. NULL when out of memory. */
transport *transport_new(gateway *gw, tls_ctx *ctx, const transport_cb *cb, void *owner);
/* The same on a Unix socket (no TLS): for worker links. */
transport *transport_new_pipe(gateway *gw, const transport_cb *cb, void *owner);
/* The socket was accepted: note the addresses, set up what the transport
 * needs (TLS: the session and the handshake timer). Returns 0 or a
 * negative errno (then close it). */
int transport_start(transport *t);
/* Start or stop reading to match `want`; *reading is the front end's
 * record of whether it reads (updated). */
void transport_set_reading(transport *t, bool *reading, bool want);
/* Another front end takes the connection over: from now on the transport
 * reports to cb with t->owner = owner. Reading and writing state carry
 * over (call it from the old owner's read callback, with no write
 * pending). */
void transport_adopt(transport *t, const transport_cb *cb, void *owner);

#endif
