/* tls: a sans-I/O TLS layer over OpenSSL 3 memory BIOs.
 *
 * Bytes in, bytes out: the caller reads ciphertext from its socket and feeds
 * it in, pulls decrypted plaintext out, pushes plaintext in and pulls the
 * ciphertext to write. Nothing here touches a socket or an event loop, and
 * nothing blocks; the only clock read is CLOCK_MONOTONIC, to rotate ticket
 * keys. The handshake timeout is the caller's timer
 * (tls_session_handshake_done() tells when to stop it).
 *
 * Contexts (tls_ctx) hold the configuration: for a server, one or more
 * certificate/key pairs (the first is the default, the others are chosen by
 * SNI against their certificates' DNS names), the accepted ALPN protocols,
 * session resumption; for a client, the trust anchors, an optional client
 * certificate and the ALPN protocols offered. Policy, both roles: TLS 1.2
 * and 1.3 only; TLS 1.2 ciphers are ECDHE with AES-GCM or CHACHA20-POLY1305;
 * no compression, no renegotiation.
 *
 * Ownership: a tls_ctx is reference counted. tls_ctx_new_* returns one
 * reference, owned by the caller; every tls_session takes its own reference
 * for its lifetime. tls_ctx_free drops the caller's reference, so a context
 * replaced by a reload stays alive exactly as long as the sessions created
 * from it. tls_ctx_reload does the swap: it builds a new context, and only on
 * success drops the old reference and stores the new one (a failed reload
 * keeps the old context, and the error says why). Session tickets survive a
 * reload (the new context shares the old one's ticket keys); the server-side
 * session cache does not (TLS 1.2 clients without tickets do one full
 * handshake after a reload).
 *
 * Resumption: stateless tickets (TLS 1.2 and 1.3) sealed with a key ring
 * rotated every session lifetime (a ticket opens under the current or the
 * previous key), plus a bounded server-side cache for TLS 1.2 clients that
 * do not take tickets.
 *
 * Threads: a context, the contexts reloaded from it (they share the ticket
 * keys) and their sessions are used from one thread (one loop); the
 * reference count is atomic, so a context may be freed from another.
 *
 * Using a session, for a libuv stream:
 *   - after every call (new, feed, read, write, close), write out what
 *     tls_session_pending_out() reports, pulled with tls_session_pull();
 *     a failed session may still have an alert to send (best effort);
 *   - on each socket read: tls_session_feed(), then tls_session_read() until
 *     it returns -EAGAIN (or while the consumer has room; stop reading the
 *     socket while it has none: fed ciphertext stays buffered, up to
 *     TLS_IN_MAX);
 *   - on socket EOF: read the remaining plaintext, then tls_session_eof();
 *   - to send: tls_session_write() takes plaintext while the ciphertext
 *     waiting to be pulled is below TLS_OUT_MAX (a short count, or -EAGAIN
 *     before the handshake is done or while that much is waiting);
 *   - when the connection goes idle (keep-alive wait): tls_session_trim();
 *   - to close: tls_session_close() queues close_notify; write it out, then
 *     close the socket (there is no need to wait for the peer's).
 * Errors are negative errno values: -EPROTO for a TLS failure (the session
 * is then dead; tls_session_error() gives its kind and a reason to log
 * once), -EAGAIN for "not now", -ENOBUFS past a bound, -EPIPE after a close,
 * -ENOMEM, -EINVAL. */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Ciphertext fed and not yet decrypted; feeding beyond is -ENOBUFS. After
 * reading to -EAGAIN, less than one record (17 KiB) stays, so a caller that
 * feeds at most 64 KiB per read never meets this bound unless it stopped
 * reading plaintext. */
#define TLS_IN_MAX (128u * 1024u)
/* tls_session_write takes plaintext only while less ciphertext than this is
 * waiting to be pulled (it may exceed it by one record's overhead);
 * handshake flights and alerts (a few KiB, the size of the certificate
 * chain) may add to it. */
#define TLS_OUT_MAX (64u * 1024u)
/* Length of the error reason strings (including the NUL). */
#define TLS_ERR_LEN 256u
/* Largest number of certificates in one server context. */
#define TLS_MAX_CERTS 64u

typedef struct tls_ctx tls_ctx;
typedef struct tls_session tls_session;

typedef struct {
    const char *cert_file; /* PEM: the certificate, then its chain */
    const char *key_file;  /* PEM: its private key, unencrypted */
} tls_cert_files;

typedef struct {
    const tls_cert_files *certs; /* certs[0]: the default (no SNI, or no match) */
    size_t n_certs;              /* 1 .. TLS_MAX_CERTS */
    /* Protocols accepted, comma-separated, in the server's preference order,
     * e.g. "h2,http/1.1". NULL or "": "http/1.1". A client offering only
     * protocols not listed fails the handshake with a no_application_protocol
     * alert (RFC 7301 3.2); a client offering none gets no ALPN, and the
     * session reports "http/1.1" (HTTP over TLS without ALPN). */
    const char *alpn;
    /* PEM CA bundle: require and verify client certificates. NULL: none asked. */
    const char *client_ca_file;
    unsigned session_lifetime_s; /* resumable this long; 0: 3600 */
    unsigned session_cache_size; /* server-side cache (TLS 1.2 session ids); 0: 4096 */
} tls_server_config;

typedef struct {
    /* PEM CA bundle the server must chain to. NULL: the system's default
     * trust store. The server's name (tls_session_new_client) is checked
     * against its certificate. */
    const char *ca_file;
    const char *cert_file, *key_file; /* optional client certificate (PEM) */
    const char *alpn;                 /* offered, comma-separated; NULL: none */
} tls_client_config;

/* Build a server context. Returns 0, or a negative errno with a message in
 * err (a cert or key that cannot be read, or that do not match, ...). */
int tls_ctx_new_server(tls_ctx **out, const tls_server_config *cfg, char *err, size_t errlen);
/* Build a client context (same return convention). */
int tls_ctx_new_client(tls_ctx **out, const tls_client_config *cfg, char *err, size_t errlen);
/* Rebuild a server context from cfg (typically the same files, reread) and
 * swap it into *cur on success, dropping the caller's old reference; on
 * failure *cur is untouched. The new context shares the old ticket keys. */
int tls_ctx_reload(tls_ctx **cur, const tls_server_config *cfg, char *err, size_t errlen);
/* Drop a reference (NULL: no-op). */
void tls_ctx_free(tls_ctx *ctx);
/* Take another reference (returns ctx). */
tls_ctx *tls_ctx_ref(tls_ctx *ctx);
/* Rotate the session-ticket keys now: new tickets use a fresh key, tickets
 * under the previous key still resume (and are renewed), older ones do not.
 * Keys also rotate by themselves every session lifetime. */
void tls_ctx_rotate_tickets(tls_ctx *ctx);

/* A server session on ctx (accepts a handshake). */
int tls_session_new(tls_session **out, tls_ctx *ctx);
/* A client session on a client ctx: server_name (a DNS name or an IP
 * literal) is sent as SNI (names only) and verified against the server's
 * certificate. The ClientHello is ready to pull when this returns. */
int tls_session_new_client(tls_session **out, tls_ctx *ctx, const char *server_name);
void tls_session_free(tls_session *s);

/* Ciphertext read from the socket: all n bytes are taken (0), or none
 * (-ENOBUFS: more than TLS_IN_MAX would be buffered; -EPROTO: the session
 * failed, now or before). Advances the handshake. */
int tls_session_feed(tls_session *s, const void *data, size_t n);
/* Decrypted bytes into buf (at most cap): the count (> 0); 0 once the peer
 * sent close_notify; -EAGAIN when more ciphertext is needed; -EPROTO. */
ssize_t tls_session_read(tls_session *s, void *buf, size_t cap);
/* Plaintext to encrypt: the count taken (> 0, maybe short of n); -EAGAIN
 * before the handshake is done or while TLS_OUT_MAX ciphertext waits;
 * -EPIPE after tls_session_close (not after the peer's close_notify: a
 * half-closed peer may still be answered); -EPROTO. */
ssize_t tls_session_write(tls_session *s, const void *data, size_t n);
/* Ciphertext waiting to be written to the socket. */
size_t tls_session_pending_out(const tls_session *s);
/* Move up to cap bytes of it into buf; returns the count. */
size_t tls_session_pull(tls_session *s, void *buf, size_t cap);
/* Give back buffer memory grown by earlier traffic (OpenSSL's memory BIOs
 * keep their largest size): call when the connection goes idle, e.g. while
 * it waits for the next request. Cheap; does nothing while data is
 * buffered. */
void tls_session_trim(tls_session *s);
/* Bytes allocated for the ciphertext buffers (for stats and tests; not
 * counting OpenSSL's own per-connection state). */
size_t tls_session_buffer_size(const tls_session *s);
/* Queue close_notify (once; later calls do nothing). Returns 0 or -EPROTO
 * (failed session: nothing to send). */
int tls_session_close(tls_session *s);
/* The transport reached EOF. 0 if the peer had sent close_notify; else
 * -EPROTO with error TLS_ERR_TRUNCATED (common and harmless for HTTP after
 * a complete message; worth logging when the handshake was not done). */
int tls_session_eof(tls_session *s);

typedef enum {
    TLS_ERR_NONE = 0,
    TLS_ERR_NOT_TLS,   /* the first bytes are not a TLS handshake record */
    TLS_ERR_HANDSHAKE, /* versions, ciphers, ALPN, certificates, malformed */
    TLS_ERR_PROTOCOL,  /* after the handshake: bad record, alert, ... */
    TLS_ERR_TRUNCATED, /* transport EOF without close_notify */
    TLS_ERR_INTERNAL,  /* out of memory or an OpenSSL failure of our own */
} tls_error;

/* The first failure of this session and, in *reason (if not NULL), a
 * sentence for the log: "not TLS (plain HTTP?)", "handshake failed:
 * unsupported protocol", "truncated handshake", ... */
tls_error tls_session_error(const tls_session *s, const char **reason);
const char *tls_error_name(tls_error e); /* "not-tls", "handshake", ... */

bool tls_session_handshake_done(const tls_session *s);
/* The negotiated ALPN protocol. A server session whose client sent no ALPN
 * reports "http/1.1"; a client session with none negotiated reports NULL;
 * NULL before the handshake is done. */
const char *tls_session_alpn(const tls_session *s);
/* The SNI name the client sent (server), or the one sent (client); NULL if none. */
const char *tls_session_sni(const tls_session *s);
const char *tls_session_version(const tls_session *s); /* "TLSv1.3"; NULL before the handshake */
const char *tls_session_cipher(const tls_session *s);  /* "TLS_AES_128_GCM_SHA256"; NULL before */
bool tls_session_resumed(const tls_session *s);
/* Server: index in tls_server_config.certs of the certificate served, or -1
 * before the handshake chose one. */
int tls_session_cert_index(const tls_session *s);

#endif
