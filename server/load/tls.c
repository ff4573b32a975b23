/* TLS context and connection BIO: see tls.h. */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static int accept_any_chain(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

int sload_tls_ctx_new(SSL_CTX **out, const sload_tls_options *o, char *err, size_t errlen)
{
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context");
        return -ENOMEM;
    }
    int lo = TLS1_2_VERSION, hi = TLS1_3_VERSION;
    if (o->version == 12)
        hi = TLS1_2_VERSION;
    else if (o->version == 13)
        lo = TLS1_3_VERSION;
    SSL_CTX_set_min_proto_version(ctx, lo);
    SSL_CTX_set_max_proto_version(ctx, hi);
    /* Ciphertext comes from memory: let OpenSSL take all of it at once. */
    SSL_CTX_set_read_ahead(ctx, 1);
    static const unsigned char alpn_h2[] = "\x02h2";
    static const unsigned char alpn_h1[] = "\x08http/1.1";
    if (o->h2)
        SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2 - 1);
    else
        SSL_CTX_set_alpn_protos(ctx, alpn_h1, sizeof alpn_h1 - 1);
    if (o->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        errno = 0;
        int ok = o->cafile ? SSL_CTX_load_verify_locations(ctx, o->cafile, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            unsigned long e = ERR_peek_last_error();
            const char *why = e ? ERR_reason_error_string(e) : NULL;
            if (o->cafile && errno)
                why = strerror(errno);
            snprintf(err, errlen, "cannot load %s: %s", o->cafile ? o->cafile : "the system's CA certificates",
                     why ? why : "unknown error");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return -EINVAL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        /* Not even the chain is built (OpenSSL would, and only record the
         * result): part of the client's cost of each full handshake. */
        SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, NULL);
    }
    if (o->on_session) {
        /* Sessions are kept by the client code (one per thread), not in
         * OpenSSL's cache. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, o->on_session);
    } else {
        /* Every connection a full handshake (TLS 1.2: no ticket asked for;
         * TLS 1.3 tickets the server sends anyway are dropped). */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    *out = ctx;
    return 0;
}

/* ---- the BIO ---------------------------------------------------------- */

static int bio_write(BIO *b, const char *data, int len)
{
    sload_tls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    return io->out(io->arg, data, (size_t)len) ? len : -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sload_tls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (io->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = io->in_len < (size_t)len ? io->in_len : (size_t)len;
    memcpy(buf, io->in, n);
    io->in += n;
    io->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    sload_tls_io *io = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return io ? (long)(io->in_len > LONG_MAX ? LONG_MAX : io->in_len) : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice-load");
    if (!m)
        return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    bio_method = m;
}

BIO *sload_tls_bio_new(sload_tls_io *io)
{
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method)
        return NULL;
    BIO *b = BIO_new(bio_method);
    if (b)
        BIO_set_data(b, io);
    return b;
}

void sload_tls_error(SSL *ssl, int ret, char *buf, size_t len)
{
    int e = ssl ? SSL_get_error(ssl, ret) : SSL_ERROR_SSL;
    unsigned long code = ERR_peek_last_error();
    if (e == SSL_ERROR_SSL && code) {
        const char *reason = ERR_reason_error_string(code);
        long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (vr != X509_V_OK)
            snprintf(buf, len, "%s: %s", reason ? reason : "error", X509_verify_cert_error_string(vr));
        else
            snprintf(buf, len, "%s", reason ? reason : "TLS error");
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, len, "closed by the server");
    } else {
        snprintf(buf, len, "TLS error %d", e);
    }
    ERR_clear_error();
}
