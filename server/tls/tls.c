/* tls: sans-I/O TLS over OpenSSL 3 memory BIOs. See tls.h for the model.
 *
 * One SSL_CTX per tls_ctx. SNI picks a certificate per connection in the
 * servername callback (SSL_use_cert_and_key on the SSL), so every setting
 * lives on one SSL_CTX and nothing needs copying between contexts, as
 * SSL_set_SSL_CTX would. Tickets are sealed with our own small key ring
 * (current + previous key, rotated every session lifetime) so that keys are
 * not kept for the process's life and survive a certificate reload. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* TLS 1.2: forward secrecy and AEAD only (TLS 1.3 suites are all AEAD). */
#define TLS12_CIPHERS                                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* No finite-field groups: slow, and pointless next to these. */
#define TLS_GROUPS "X25519:P-256:X448:P-384:P-521"
#define TLS_ALPN_MAX 256 /* wire-format ALPN list we keep (ours, not the peer's) */
#define DEFAULT_LIFETIME_S 3600u
#define DEFAULT_CACHE_SIZE 4096u
#define TLS_TRIM_KEEP 4096u /* a buffer this small is not worth replacing */

typedef struct {
    X509 *leaf;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
} tls_cert;

typedef struct {
    unsigned char name[16], aes[32], hmac[32];
} ticket_key;

/* Shared by a context and the contexts that reloads derive from it. */
typedef struct {
    atomic_uint refs;
    ticket_key keys[2]; /* [0] seals new tickets, [1] still opens */
    bool have_prev;
    unsigned period_s;
    time_t rotated_at; /* CLOCK_MONOTONIC seconds */
} ticket_ring;

struct tls_ctx {
    atomic_uint refs;
    bool server;
    SSL_CTX *ssl;
    tls_cert *certs;
    size_t n_certs;
    unsigned char alpn[TLS_ALPN_MAX]; /* wire format */
    size_t alpn_len;
    ticket_ring *ring; /* server only */
};

struct tls_session {
    tls_ctx *ctx;
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
    bool server, done, fed, closed, peer_closed;
    int cert_index;
    tls_error err;
    char reason[TLS_ERR_LEN];
    char alpn[256]; /* negotiated, NUL-terminated ("" if none) */
};

/* ---- errors --------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The oldest error queued (the root cause), as text; clears the queue. */
static const char *ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, len, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "unknown error");
    ERR_clear_error();
    return buf;
}

const char *tls_error_name(tls_error e)
{
    switch (e) {
    case TLS_ERR_NONE: return "none";
    case TLS_ERR_NOT_TLS: return "not-tls";
    case TLS_ERR_HANDSHAKE: return "handshake";
    case TLS_ERR_PROTOCOL: return "protocol";
    case TLS_ERR_TRUNCATED: return "truncated";
    case TLS_ERR_INTERNAL: return "internal";
    }
    return "?";
}

/* Record the session's first failure (later ones only clear the queue). */
static int fail(tls_session *s, tls_error kind, const char *what)
{
    if (s->err == TLS_ERR_NONE) {
        char r[160];
        unsigned long e = ERR_peek_error();
        if (!e) {
            snprintf(s->reason, sizeof s->reason, "%s", what);
        } else {
            bool verify = ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED;
            ossl_reason(r, sizeof r);
            long v = SSL_get_verify_result(s->ssl);
            if (verify && v != X509_V_OK)
                snprintf(s->reason, sizeof s->reason, "%s: %s (%s)", what, r,
                         X509_verify_cert_error_string(v));
            else
                snprintf(s->reason, sizeof s->reason, "%s: %s", what, r);
        }
        s->err = kind;
    }
    ERR_clear_error();
    return -EPROTO;
}

tls_error tls_session_error(const tls_session *s, const char **reason)
{
    if (reason)
        *reason = s->err ? s->reason : NULL;
    return s->err;
}

/* ---- ticket keys ------------------------------------------------------ */

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static int key_fill(ticket_key *k)
{
    return RAND_bytes(k->name, sizeof k->name) == 1 && RAND_bytes(k->aes, sizeof k->aes) == 1 &&
                   RAND_bytes(k->hmac, sizeof k->hmac) == 1
               ? 0
               : -EIO;
}

static void ring_rotate(ticket_ring *r)
{
    ticket_key k;
    if (key_fill(&k) < 0)
        return; /* keep sealing with the current key rather than fail */
    r->keys[1] = r->keys[0];
    r->keys[0] = k;
    r->have_prev = true;
    r->rotated_at = mono_s();
    OPENSSL_cleanse(&k, sizeof k);
}

static ticket_ring *ring_new(unsigned period_s)
{
    ticket_ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (key_fill(&r->keys[0]) < 0) {
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->period_s = period_s;
    r->rotated_at = mono_s();
    return r;
}

static void ring_unref(ticket_ring *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        OPENSSL_cleanse(r, sizeof *r);
        free(r);
    }
}

static int ticket_mac_init(EVP_MAC_CTX *hctx, const ticket_key *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket hook: 1 sealed/opened, 2 opened with the previous key
 * (reissue), 0 unknown key (full handshake), -1 error. */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    ticket_ring *r = c->ring;
    if (mono_s() - r->rotated_at >= (time_t)r->period_s)
        ring_rotate(r);
    if (enc) {
        const ticket_key *k = &r->keys[0];
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            return -1;
        memcpy(name, k->name, sizeof k->name);
        if (EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
            ticket_mac_init(hctx, k) < 0)
            return -1;
        return 1;
    }
    for (int i = 0; i < (r->have_prev ? 2 : 1); i++) {
        const ticket_key *k = &r->keys[i];
        if (memcmp(name, k->name, sizeof k->name) != 0)
            continue;
        if (ticket_mac_init(hctx, k) < 0 || EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

void tls_ctx_rotate_tickets(tls_ctx *ctx)
{
    if (ctx && ctx->ring)
        ring_rotate(ctx->ring);
}

/* ---- certificates ----------------------------------------------------- */

static void cert_clear(tls_cert *c)
{
    X509_free(c->leaf);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof *c);
}

/* Never prompt for a passphrase on a terminal: encrypted keys just fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int cert_load(tls_cert *c, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    char r[160];
    memset(c, 0, sizeof *c);
    if (!cert_file || !*cert_file || !key_file || !*key_file) {
        set_err(err, errlen, "a certificate and a key file are both needed");
        return -EINVAL;
    }
    ERR_clear_error();
    BIO *b = BIO_new_file(cert_file, "r");
    if (!b) {
        int e = errno ? errno : EIO;
        ERR_clear_error();
        set_err(err, errlen, "certificate %s: %s", cert_file, strerror(e));
        return -e;
    }
    c->leaf = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (!c->leaf) {
        BIO_free(b);
        set_err(err, errlen, "certificate %s: no PEM certificate (%s)", cert_file, ossl_reason(r, sizeof r));
        return -EINVAL;
    }
    c->chain = sk_X509_new_null();
    if (!c->chain) {
        BIO_free(b);
        cert_clear(c);
        return -ENOMEM;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
        if (!x)
            break;
        if (!sk_X509_push(c->chain, x)) {
            X509_free(x);
            BIO_free(b);
            cert_clear(c);
            return -ENOMEM;
        }
    }
    BIO_free(b);
    /* the loop ends on "no start line" at EOF; anything else is a bad PEM */
    unsigned long e = ERR_peek_last_error();
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        set_err(err, errlen, "certificate %s: bad certificate in the chain (%s)", cert_file,
                ossl_reason(r, sizeof r));
        cert_clear(c);
        return -EINVAL;
    }
    ERR_clear_error();

    b = BIO_new_file(key_file, "r");
    if (!b) {
        int en = errno ? errno : EIO;
        ERR_clear_error();
        set_err(err, errlen, "key %s: %s", key_file, strerror(en));
        cert_clear(c);
        return -en;
    }
    c->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    if (!c->key) {
        set_err(err, errlen, "key %s: no usable private key (unencrypted PEM expected: %s)", key_file,
                ossl_reason(r, sizeof r));
        cert_clear(c);
        return -EINVAL;
    }
    if (X509_check_private_key(c->leaf, c->key) != 1) {
        ERR_clear_error();
        set_err(err, errlen, "key %s does not match certificate %s", key_file, cert_file);
        cert_clear(c);
        return -EINVAL;
    }
    return 0;
}

/* The certificate for an SNI name: exact names first (so www.example.com
 * beats *.example.com whatever the order), then wildcards; else the
 * default. Names come from DNS subjectAltNames (the CN only if a
 * certificate has none, as X509_check_host does). */
static int cert_pick(const tls_ctx *c, const char *name)
{
    char host[256];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof host)
        return 0;
    memcpy(host, name, n + 1);
    if (host[n - 1] == '.') /* the absolute form names the same host */
        host[--n] = '\0';
    static const unsigned flags[2] = {X509_CHECK_FLAG_NO_WILDCARDS, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS};
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->n_certs; i++)
            if (X509_check_host(c->certs[i].leaf, host, n, flags[pass], NULL) == 1)
                return (int)i;
    ERR_clear_error();
    return 0;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    tls_ctx *c = arg;
    tls_session *s = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    int i = name ? cert_pick(c, name) : 0;
    s->cert_index = i;
    if (i == 0)
        return SSL_TLSEXT_ERR_OK; /* the SSL_CTX's own certificate */
    /* replace, not add: a default of another key type must not stay eligible */
    SSL_certs_clear(ssl);
    if (SSL_use_cert_and_key(ssl, c->certs[i].leaf, c->certs[i].key, c->certs[i].chain, 1) != 1) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- ALPN --------------------------------------------------------------- */

/* "h2, http/1.1" -> wire format (length-prefixed names). */
static int alpn_parse(const char *list, unsigned char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        size_t l = (size_t)(p - start);
        if (l == 0)
            continue;
        if (l > 255 || n + 1 + l > cap) {
            set_err(err, errlen, "ALPN list \"%s\" is too long", list);
            return -EINVAL;
        }
        out[n++] = (unsigned char)l;
        memcpy(out + n, start, l);
        n += l;
    }
    *len = n;
    return 0;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg)
{
    (void)ssl;
    tls_ctx *c = arg;
    unsigned char *sel;
    /* walks the server's list first: our preference order wins */
    if (SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned)c->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol, RFC 7301 3.2 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts ----------------------------------------------------------- */

static int ctx_common(tls_ctx *c, const SSL_METHOD *method, char *err, size_t errlen)
{
    char r[160];
    atomic_init(&c->refs, 1);
    c->ssl = SSL_CTX_new(method);
    if (!c->ssl) {
        set_err(err, errlen, "SSL_CTX_new: %s", ossl_reason(r, sizeof r));
        return -ENOMEM;
    }
    SSL_CTX_set_app_data(c->ssl, c);
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* buffers go back to the heap while a connection is idle */
    SSL_CTX_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(c->ssl, TLS12_CIPHERS) != 1 || SSL_CTX_set1_groups_list(c->ssl, TLS_GROUPS) != 1) {
        set_err(err, errlen, "TLS policy: %s", ossl_reason(r, sizeof r));
        return -EINVAL;
    }
    return 0;
}

static void ctx_destroy(tls_ctx *c)
{
    SSL_CTX_free(c->ssl);
    for (size_t i = 0; i < c->n_certs; i++)
        cert_clear(&c->certs[i]);
    free(c->certs);
    ring_unref(c->ring);
    free(c);
}

static int server_new(tls_ctx **out, const tls_server_config *cfg, ticket_ring *ring, char *err, size_t errlen)
{
    char r[160];
    if (!cfg || !cfg->certs || cfg->n_certs == 0 || cfg->n_certs > TLS_MAX_CERTS) {
        set_err(err, errlen, "between 1 and %u certificates are needed", TLS_MAX_CERTS);
        return -EINVAL;
    }
    tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->server = true;
    int rc = ctx_common(c, TLS_server_method(), err, errlen);
    if (rc < 0)
        goto fail;
    rc = alpn_parse(cfg->alpn && *cfg->alpn ? cfg->alpn : "http/1.1", c->alpn, sizeof c->alpn, &c->alpn_len,
                    err, errlen);
    if (rc < 0)
        goto fail;
    if (c->alpn_len == 0) {
        set_err(err, errlen, "empty ALPN list \"%s\"", cfg->alpn);
        rc = -EINVAL;
        goto fail;
    }
    c->certs = calloc(cfg->n_certs, sizeof *c->certs);
    if (!c->certs) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_certs; i++) {
        rc = cert_load(&c->certs[i], cfg->certs[i].cert_file, cfg->certs[i].key_file, err, errlen);
        if (rc < 0)
            goto fail;
        c->n_certs++;
    }
    if (SSL_CTX_use_cert_and_key(c->ssl, c->certs[0].leaf, c->certs[0].key, c->certs[0].chain, 1) != 1) {
        set_err(err, errlen, "certificate %s: %s", cfg->certs[0].cert_file, ossl_reason(r, sizeof r));
        rc = -EINVAL;
        goto fail;
    }
    if (cfg->client_ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(c->ssl, cfg->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            set_err(err, errlen, "client CA %s: %s", cfg->client_ca_file, ossl_reason(r, sizeof r));
            rc = -EINVAL;
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c->ssl, names);
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }

    unsigned lifetime = cfg->session_lifetime_s ? cfg->session_lifetime_s : DEFAULT_LIFETIME_S;
    if (ring) {
        atomic_fetch_add(&ring->refs, 1);
        ring->period_s = lifetime;
    } else if (!(ring = ring_new(lifetime))) {
        rc = -ENOMEM;
        goto fail;
    }
    c->ring = ring;
    /* the id context only matters with client certificates, but must be set then */
    SSL_CTX_set_session_id_context(c->ssl, (const unsigned char *)"sluice", 6);
    SSL_CTX_set_session_cache_mode(c->ssl, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(c->ssl, cfg->session_cache_size ? cfg->session_cache_size : DEFAULT_CACHE_SIZE);
    SSL_CTX_set_timeout(c->ssl, lifetime);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c->ssl, ticket_cb);
    SSL_CTX_set_alpn_select_cb(c->ssl, alpn_cb, c);
    SSL_CTX_set_tlsext_servername_callback(c->ssl, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(c->ssl, c);
    ERR_clear_error();
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    ctx_destroy(c);
    return rc;
}

int tls_ctx_new_server(tls_ctx **out, const tls_server_config *cfg, char *err, size_t errlen)
{
    return server_new(out, cfg, NULL, err, errlen);
}

int tls_ctx_reload(tls_ctx **cur, const tls_server_config *cfg, char *err, size_t errlen)
{
    if (!cur || !*cur || !(*cur)->server) {
        set_err(err, errlen, "reload needs a server context");
        return -EINVAL;
    }
    tls_ctx *c;
    int rc = server_new(&c, cfg, (*cur)->ring, err, errlen);
    if (rc < 0)
        return rc;
    tls_ctx_free(*cur);
    *cur = c;
    return 0;
}

int tls_ctx_new_client(tls_ctx **out, const tls_client_config *cfg, char *err, size_t errlen)
{
    char r[160];
    tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    int rc = ctx_common(c, TLS_client_method(), err, errlen);
    if (rc < 0)
        goto fail;
    if (cfg->ca_file ? SSL_CTX_load_verify_locations(c->ssl, cfg->ca_file, NULL) != 1
                     : SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
        set_err(err, errlen, "CA %s: %s", cfg->ca_file ? cfg->ca_file : "(system default)",
                ossl_reason(r, sizeof r));
        rc = -EINVAL;
        goto fail;
    }
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    if (cfg->cert_file || cfg->key_file) {
        c->certs = calloc(1, sizeof *c->certs);
        if (!c->certs) {
            rc = -ENOMEM;
            goto fail;
        }
        rc = cert_load(&c->certs[0], cfg->cert_file, cfg->key_file, err, errlen);
        if (rc < 0)
            goto fail;
        c->n_certs = 1;
        if (SSL_CTX_use_cert_and_key(c->ssl, c->certs[0].leaf, c->certs[0].key, c->certs[0].chain, 1) != 1) {
            set_err(err, errlen, "certificate %s: %s", cfg->cert_file, ossl_reason(r, sizeof r));
            rc = -EINVAL;
            goto fail;
        }
    }
    if (cfg->alpn && *cfg->alpn) {
        rc = alpn_parse(cfg->alpn, c->alpn, sizeof c->alpn, &c->alpn_len, err, errlen);
        if (rc < 0)
            goto fail;
        /* note: 0 is success for this one */
        if (c->alpn_len && SSL_CTX_set_alpn_protos(c->ssl, c->alpn, (unsigned)c->alpn_len) != 0) {
            set_err(err, errlen, "ALPN: %s", ossl_reason(r, sizeof r));
            rc = -EINVAL;
            goto fail;
        }
    }
    ERR_clear_error();
    *out = c;
    return 0;
fail:
    ERR_clear_error();
    ctx_destroy(c);
    return rc;
}

tls_ctx *tls_ctx_ref(tls_ctx *ctx)
{
    atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

void tls_ctx_free(tls_ctx *ctx)
{
    if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1)
        ctx_destroy(ctx);
}

/* ---- sessions ----------------------------------------------------------- */

static void on_done(tls_session *s)
{
    s->done = true;
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(s->ssl, &p, &n);
    if (n >= sizeof s->alpn)
        n = 0; /* cannot happen: ALPN names are at most 255 bytes */
    memcpy(s->alpn, p ? p : (const unsigned char *)"", n);
    s->alpn[n] = '\0';
}

static int step(tls_session *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        on_done(s);
        return 0;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    return fail(s, TLS_ERR_HANDSHAKE, "handshake failed");
}

static int session_new(tls_session **out, tls_ctx *ctx, bool server)
{
    tls_session *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->server = server;
    s->cert_index = -1;
    ERR_clear_error();
    s->ssl = SSL_new(ctx->ssl);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->in || !s->out) {
        SSL_free(s->ssl);
        BIO_free(s->in);
        BIO_free(s->out);
        free(s);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* empty means "not yet" (retry), not EOF: EOF is tls_session_eof's call */
    BIO_set_mem_eof_return(s->in, -1);
    BIO_set_mem_eof_return(s->out, -1);
    SSL_set_bio(s->ssl, s->in, s->out);
    SSL_set_app_data(s->ssl, s);
    s->ctx = tls_ctx_ref(ctx);
    *out = s;
    return 0;
}

int tls_session_new(tls_session **out, tls_ctx *ctx)
{
    if (!ctx->server)
        return -EINVAL;
    int rc = session_new(out, ctx, true);
    if (rc == 0)
        SSL_set_accept_state((*out)->ssl);
    return rc;
}

int tls_session_new_client(tls_session **out, tls_ctx *ctx, const char *server_name)
{
    if (ctx->server || !server_name || !*server_name)
        return -EINVAL;
    int rc = session_new(out, ctx, false);
    if (rc < 0)
        return rc;
    tls_session *s = *out;
    SSL_set_connect_state(s->ssl);
    /* an IP literal is checked against IP SANs and not sent as SNI */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), server_name) != 1) {
        ERR_clear_error();
        SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set_tlsext_host_name(s->ssl, server_name) != 1 || SSL_set1_host(s->ssl, server_name) != 1) {
            tls_session_free(s);
            *out = NULL;
            ERR_clear_error();
            return -EINVAL;
        }
    }
    step(s); /* the ClientHello; a failure here stays in the session */
    return 0;
}

void tls_session_free(tls_session *s)
{
    if (!s)
        return;
    /* OpenSSL drops a connection's session from the server cache unless it
     * sent close_notify; most HTTP clients just close, and a clean or merely
     * truncated connection is no reason to forget its session */
    if (s->done && (s->err == TLS_ERR_NONE || s->err == TLS_ERR_TRUNCATED))
        SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(s->ssl);
    tls_ctx_free(s->ctx);
    free(s);
}

int tls_session_feed(tls_session *s, const void *data, size_t n)
{
    if (s->err)
        return -EPROTO;
    if (n == 0)
        return 0;
    if (n > TLS_IN_MAX - BIO_ctrl_pending(s->in))
        return -ENOBUFS;
    const unsigned char *p = data;
    if (s->server && !s->fed) {
        /* a ClientHello record starts 0x16; >= 0x80 could be an SSLv2-style
         * hello, which OpenSSL judges. Anything else cannot be TLS: say so
         * now, rather than after OpenSSL waits for a "record" to complete. */
        if (p[0] != 0x16 && p[0] < 0x80) {
            s->fed = true;
            char why[64];
            if (p[0] >= 'A' && p[0] <= 'Z')
                snprintf(why, sizeof why, "not TLS (plain HTTP?)");
            else
                snprintf(why, sizeof why, "not TLS (first byte 0x%02x)", p[0]);
            ERR_clear_error();
            return fail(s, TLS_ERR_NOT_TLS, why);
        }
    }
    s->fed = true;
    if (BIO_write(s->in, p, (int)n) != (int)n) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return s->done ? 0 : step(s);
}

ssize_t tls_session_read(tls_session *s, void *buf, size_t cap)
{
    if (s->err)
        return -EPROTO;
    if (!s->done) {
        if (step(s) < 0)
            return -EPROTO;
        if (!s->done)
            return -EAGAIN;
    }
    if (s->peer_closed)
        return 0;
    if (cap == 0)
        return -EINVAL;
    ERR_clear_error();
    int r = SSL_read(s->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        s->peer_closed = true;
        return 0;
    default:
        return fail(s, TLS_ERR_PROTOCOL, "TLS error");
    }
}

ssize_t tls_session_write(tls_session *s, const void *data, size_t n)
{
    if (s->err)
        return -EPROTO;
    if (s->closed)
        return -EPIPE;
    if (!s->done)
        return -EAGAIN;
    size_t pending = BIO_ctrl_pending(s->out);
    if (pending >= TLS_OUT_MAX)
        return -EAGAIN;
    if (n == 0)
        return 0;
    size_t take = n < TLS_OUT_MAX - pending ? n : TLS_OUT_MAX - pending;
    ERR_clear_error();
    int r = SSL_write(s->ssl, data, (int)take);
    if (r > 0)
        return r;
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return -EAGAIN;
    }
    return fail(s, TLS_ERR_PROTOCOL, "TLS error");
}

size_t tls_session_pending_out(const tls_session *s)
{
    return BIO_ctrl_pending(s->out);
}

size_t tls_session_pull(tls_session *s, void *buf, size_t cap)
{
    if (cap == 0)
        return 0;
    int r = BIO_read(s->out, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    return r > 0 ? (size_t)r : 0;
}

static size_t bio_capacity(BIO *b)
{
    BUF_MEM *m = NULL;
    BIO_get_mem_ptr(b, &m);
    return m ? m->max : 0;
}

/* A fresh, empty memory BIO, or NULL (then the old one simply stays). */
static BIO *bio_fresh(BIO *old)
{
    if (BIO_ctrl_pending(old) != 0 || bio_capacity(old) <= TLS_TRIM_KEEP)
        return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) {
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(b, -1);
    return b;
}

void tls_session_trim(tls_session *s)
{
    BIO *b;
    /* the SSL frees the BIO it held (the pair is distinct, so no aliasing) */
    if ((b = bio_fresh(s->in))) {
        SSL_set0_rbio(s->ssl, b);
        s->in = b;
    }
    if ((b = bio_fresh(s->out))) {
        SSL_set0_wbio(s->ssl, b);
        s->out = b;
    }
}

size_t tls_session_buffer_size(const tls_session *s)
{
    return bio_capacity(s->in) + bio_capacity(s->out);
}

int tls_session_close(tls_session *s)
{
    if (s->err)
        return -EPROTO;
    if (s->closed)
        return 0;
    s->closed = true;
    if (!s->done)
        return 0; /* nothing to protect yet: just drop the connection */
    ERR_clear_error();
    SSL_shutdown(s->ssl); /* queues close_notify; we do not wait for the peer's */
    ERR_clear_error();
    return 0;
}

int tls_session_eof(tls_session *s)
{
    if (s->peer_closed || (SSL_get_shutdown(s->ssl) & SSL_RECEIVED_SHUTDOWN))
        return 0;
    if (s->err)
        return -EPROTO;
    ERR_clear_error();
    return fail(s, TLS_ERR_TRUNCATED,
                s->done ? "truncated (EOF without close_notify)"
                        : s->fed ? "truncated handshake" : "closed before sending anything");
}

bool tls_session_handshake_done(const tls_session *s)
{
    return s->done;
}

const char *tls_session_alpn(const tls_session *s)
{
    if (!s->done)
        return NULL;
    if (s->alpn[0])
        return s->alpn;
    return s->server ? "http/1.1" : NULL;
}

const char *tls_session_sni(const tls_session *s)
{
    return SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *tls_session_version(const tls_session *s)
{
    return s->done ? SSL_get_version(s->ssl) : NULL;
}

const char *tls_session_cipher(const tls_session *s)
{
    return s->done ? SSL_get_cipher_name(s->ssl) : NULL;
}

bool tls_session_resumed(const tls_session *s)
{
    return s->done && SSL_session_reused(s->ssl);
}

int tls_session_cert_index(const tls_session *s)
{
    return s->cert_index;
}
