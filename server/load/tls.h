/* TLS for sluice-load: the client context and the BIO that ties an SSL
 * object to a connection's buffers.
 *
 * No OpenSSL call here touches a socket. Each connection's SSL reads
 * ciphertext from the bytes libuv has just read (pointer and length set by
 * the caller before SSL_do_handshake / SSL_read) and appends the ciphertext
 * it produces to the connection's output buffer through a callback; the
 * caller writes that buffer with libuv. So TLS never blocks and costs one
 * copy each way, as a socket BIO would. */
#ifndef SLOAD_TLS_H
#define SLOAD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

typedef struct {
    bool h2;              /* ALPN: offer "h2" (else "http/1.1") */
    bool verify;          /* verify the server's certificate and name */
    const char *cafile;   /* trust these CAs (PEM); NULL: the system's */
    int version;          /* 0: TLS 1.2 or 1.3; 12 or 13: only that one */
    /* Non-NULL: session resumption. Called from the thread that owns ssl
     * with each session the server issues; returns 1 if it keeps the
     * reference, 0 if not (OpenSSL's new-session callback). */
    int (*on_session)(SSL *ssl, SSL_SESSION *sess);
} sload_tls_options;

/* The context shared by every thread. 0, or -EINVAL with a message in err. */
int sload_tls_ctx_new(SSL_CTX **out, const sload_tls_options *o, char *err, size_t errlen);

/* What a connection's BIO reads from and writes to. */
typedef struct {
    const char *in;       /* ciphertext read from the socket, not yet consumed */
    size_t in_len;
    /* Appends ciphertext for the socket; false on allocation failure. */
    bool (*out)(void *arg, const char *p, size_t n);
    void *arg;
} sload_tls_io;

/* A BIO over io (which must outlive it). NULL on allocation failure. */
BIO *sload_tls_bio_new(sload_tls_io *io);

/* Describes why the last OpenSSL call on ssl failed (ret: its return value). */
void sload_tls_error(SSL *ssl, int ret, char *buf, size_t len);

#endif
