/* server/tls: the sans-I/O TLS layer against OpenSSL clients (and its own
 * client role), both sides pumped in memory: no sockets. Certificates are
 * made per test by tls_certs.h in a temporary directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "tls_certs.h"

static char dir[64];
static char ca_pem[128], a_pem[128], a_key[128], b_pem[128], b_key[128], c_pem[128], c_key[128];
static char cl_pem[128], cl_key[128], enc_key[128], junk_pem[128], live_pem[128], live_key[128];
static const char *const files[] = {ca_pem, a_pem, a_key, b_pem, b_key, c_pem, c_key,
                                    cl_pem, cl_key, enc_key, junk_pem, live_pem, live_key};

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", dir, name);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/sluice-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    path(ca_pem, "ca.pem");
    path(a_pem, "a.pem");
    path(a_key, "a.key");
    path(b_pem, "b.pem");
    path(b_key, "b.key");
    path(c_pem, "c.pem");
    path(c_key, "c.key");
    path(cl_pem, "client.pem");
    path(cl_key, "client.key");
    path(enc_key, "enc.key");
    path(junk_pem, "junk.pem");
    path(live_pem, "live.pem"); /* for the reload test */
    path(live_key, "live.key");
    tc_pair ca = tc_make("sluice test CA", NULL, NULL);
    tc_pair a = tc_make("a.example", "DNS:a.example,DNS:*.wild.example", &ca);
    tc_pair b = tc_make("b.example", "DNS:b.example,DNS:www.wild.example", &ca);
    tc_pair c = tc_make("c.example", "DNS:c.example,DNS:a.example", &ca);
    tc_pair cl = tc_make("worker", "DNS:worker.example", &ca);
    FILE *f = fopen(ca_pem, "w");
    cr_assert(f && PEM_write_X509(f, ca.cert) && fclose(f) == 0);
    tc_write(&a, &ca, a_pem, a_key);
    tc_write(&b, &ca, b_pem, b_key);
    tc_write(&c, &ca, c_pem, c_key);
    tc_write(&cl, &ca, cl_pem, cl_key);
    f = fopen(enc_key, "w");
    cr_assert(f && PEM_write_PrivateKey(f, a.key, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)"secret") &&
              fclose(f) == 0);
    f = fopen(junk_pem, "w");
    cr_assert(f && fputs("not a certificate\n", f) >= 0 && fclose(f) == 0);
    tc_free(&ca);
    tc_free(&a);
    tc_free(&b);
    tc_free(&c);
    tc_free(&cl);
}

static void teardown(void)
{
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(files[i]);
    rmdir(dir);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* ---- harness --------------------------------------------------------- */

static tls_ctx *server_ctx(const char *alpn)
{
    tls_cert_files certs[] = {{a_pem, a_key}, {b_pem, b_key}};
    tls_server_config cfg = {.certs = certs, .n_certs = 2, .alpn = alpn};
    tls_ctx *ctx = NULL;
    char err[256] = "";
    cr_assert_eq(tls_ctx_new_server(&ctx, &cfg, err, sizeof err), 0, "%s", err);
    return ctx;
}

static SSL_CTX *client_ctx(int minv, int maxv)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    cr_assert_not_null(c);
    SSL_CTX_set_min_proto_version(c, minv);
    SSL_CTX_set_max_proto_version(c, maxv);
    if (minv && minv < TLS1_2_VERSION) {
        /* let this client really offer the old versions (and their ciphers) */
        SSL_CTX_set_security_level(c, 0);
        SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    return c;
}

static SSL *client_new(SSL_CTX *cc, const char *sni)
{
    SSL *c = SSL_new(cc);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    cr_assert(c && in && out);
    BIO_set_mem_eof_return(in, -1);
    BIO_set_mem_eof_return(out, -1);
    SSL_set_bio(c, in, out);
    SSL_set_connect_state(c);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    return c;
}

static tls_session *session(tls_ctx *ctx)
{
    tls_session *s = NULL;
    cr_assert_eq(tls_session_new(&s, ctx), 0);
    return s;
}

/* Server output to the client; true if anything moved. */
static bool to_client(tls_session *s, SSL *c)
{
    static unsigned char buf[65536];
    bool moved = false;
    size_t m;
    while ((m = tls_session_pull(s, buf, sizeof buf)) > 0) {
        cr_assert_eq(BIO_write(SSL_get_rbio(c), buf, (int)m), (int)m);
        moved = true;
    }
    return moved;
}

/* Move bytes both ways, client to server in pieces of at most `chunk`
 * bytes, until nothing moves. Returns the server's first failure (its alert
 * delivered to the client) or 0. */
static int pump(SSL *c, tls_session *s, size_t chunk)
{
    static unsigned char buf[65536];
    size_t max = chunk && chunk < sizeof buf ? chunk : sizeof buf;
    for (int round = 0; round < 1000; round++) {
        bool moved = false;
        int rc = 0;
        if (!SSL_is_init_finished(c))
            SSL_do_handshake(c);
        int n;
        while (rc == 0 && (n = BIO_read(SSL_get_wbio(c), buf, (int)max)) > 0) {
            moved = true;
            rc = tls_session_feed(s, buf, (size_t)n);
        }
        moved |= to_client(s, c);
        if (rc < 0) {
            if (!SSL_is_init_finished(c))
                SSL_do_handshake(c); /* the client reads the alert */
            ERR_clear_error();
            return rc;
        }
        if (!moved)
            break;
    }
    ERR_clear_error();
    return 0;
}

static void handshake(SSL *c, tls_session *s, size_t chunk)
{
    int rc = pump(c, s, chunk);
    const char *why = NULL;
    tls_session_error(s, &why);
    cr_assert_eq(rc, 0, "server: %s", why ? why : "?");
    cr_assert(tls_session_handshake_done(s));
    cr_assert(SSL_is_init_finished(c));
}

/* Let the client process what arrived after the handshake (tickets). */
static void client_settle(SSL *c)
{
    unsigned char b[1];
    cr_assert_leq(SSL_read(c, b, 1), 0);
    cr_assert_eq(SSL_get_error(c, -1), SSL_ERROR_WANT_READ);
    ERR_clear_error();
}

static size_t server_read_all(tls_session *s, unsigned char *dst, size_t cap)
{
    size_t have = 0;
    for (;;) {
        unsigned char scratch[1];
        ssize_t r = tls_session_read(s, have < cap ? dst + have : scratch, have < cap ? cap - have : 1);
        if (r == -EAGAIN)
            return have;
        cr_assert_gt(r, 0, "tls_session_read: %zd", r);
        cr_assert_leq(have + (size_t)r, cap, "more plaintext than sent");
        have += (size_t)r;
    }
}

static size_t client_read_all(SSL *c, unsigned char *dst, size_t cap)
{
    size_t have = 0;
    while (have < cap) {
        int r = SSL_read(c, dst + have, (int)(cap - have > 65536 ? 65536 : cap - have));
        if (r <= 0) {
            cr_assert_eq(SSL_get_error(c, r), SSL_ERROR_WANT_READ);
            break;
        }
        have += (size_t)r;
    }
    ERR_clear_error();
    return have;
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* client -> server, n bytes, fed in pieces of `chunk`, read as they come */
static void client_to_server(SSL *c, tls_session *s, size_t n, size_t chunk)
{
    unsigned char *data = pattern(n, (unsigned)n), *got = malloc(n ? n : 1);
    static unsigned char buf[65536];
    size_t have = 0, max = chunk && chunk < sizeof buf ? chunk : sizeof buf;
    for (size_t off = 0; off < n;) {
        size_t piece = n - off < 65536 ? n - off : 65536;
        cr_assert_eq(SSL_write(c, data + off, (int)piece), (int)piece);
        off += piece;
        int k;
        while ((k = BIO_read(SSL_get_wbio(c), buf, (int)max)) > 0) {
            cr_assert_eq(tls_session_feed(s, buf, (size_t)k), 0);
            have += server_read_all(s, got + have, n - have);
        }
    }
    cr_assert_eq(have, n);
    cr_assert_eq(memcmp(got, data, n), 0);
    free(data);
    free(got);
}

/* server -> client, n bytes through tls_session_write's bound */
static void server_to_client(tls_session *s, SSL *c, size_t n)
{
    unsigned char *data = pattern(n, (unsigned)n + 7), *got = malloc(n ? n : 1);
    size_t off = 0, have = 0;
    while (off < n || have < n) {
        if (off < n) {
            ssize_t w = tls_session_write(s, data + off, n - off);
            if (w != -EAGAIN) {
                cr_assert_gt(w, 0, "tls_session_write: %zd", w);
                off += (size_t)w;
            }
            cr_assert_leq(tls_session_pending_out(s), TLS_OUT_MAX + 4096);
        }
        to_client(s, c);
        size_t before = have;
        have += client_read_all(c, got + have, n - have);
        cr_assert(off < n || have > before || have == n, "stalled at %zu/%zu", have, n);
    }
    cr_assert_eq(memcmp(got, data, n), 0);
    free(data);
    free(got);
}

static const char *peer_cn(SSL *c)
{
    static char cn[128];
    X509 *x = SSL_get0_peer_certificate(c);
    cr_assert_not_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    return cn;
}

/* A client with ALPN `wire` (length-prefixed names; NULL: none). */
static int try_alpn(const char *server_alpn, const char *wire, size_t wire_len, char *alpn_out, char *why_out)
{
    tls_ctx *ctx = server_ctx(server_alpn);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, 0);
    if (wire)
        cr_assert_eq(SSL_CTX_set_alpn_protos(cc, (const unsigned char *)wire, (unsigned)wire_len), 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    int rc = pump(c, s, 0);
    const char *why = NULL;
    tls_session_error(s, &why);
    snprintf(why_out, 256, "%s", why ? why : "");
    const char *a = tls_session_alpn(s);
    snprintf(alpn_out, 64, "%s", a ? a : "(null)");
    if (rc == 0) {
        const unsigned char *p;
        unsigned n;
        SSL_get0_alpn_selected(c, &p, &n);
        /* what the client saw is what the server reports, except "no ALPN" */
        if (n)
            cr_assert(strlen(alpn_out) == n && memcmp(alpn_out, p, n) == 0);
    }
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
    return rc;
}

/* ---- handshakes -------------------------------------------------------- */

Test(tls, handshake_tls13)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    cr_assert_not(tls_session_handshake_done(s));
    cr_assert_null(tls_session_alpn(s));
    cr_assert_null(tls_session_version(s));
    cr_assert_eq(tls_session_cert_index(s), -1);
    handshake(c, s, 0);
    cr_assert_str_eq(tls_session_version(s), "TLSv1.3");
    cr_assert_str_eq(tls_session_cipher(s), SSL_get_cipher_name(c));
    cr_assert_str_eq(tls_session_alpn(s), "http/1.1");
    cr_assert_null(tls_session_sni(s));
    cr_assert_eq(tls_session_cert_index(s), 0);
    cr_assert_not(tls_session_resumed(s));
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NONE);
    cr_assert_str_eq(peer_cn(c), "a.example");
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, handshake_tls12)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    cr_assert_str_eq(tls_session_version(s), "TLSv1.2");
    const char *cipher = tls_session_cipher(s);
    cr_assert(strncmp(cipher, "ECDHE-ECDSA-", 12) == 0 && (strstr(cipher, "GCM") || strstr(cipher, "CHACHA20")),
              "%s", cipher);
    client_to_server(c, s, 1000, 0);
    server_to_client(s, c, 1000);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, renegotiation_refused)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    cr_assert_eq(SSL_renegotiate(c), 1);
    SSL_do_handshake(c);
    unsigned char b[4096];
    int n = BIO_read(SSL_get_wbio(c), b, sizeof b);
    cr_assert_gt(n, 0); /* the client's new ClientHello */
    cr_assert_eq(tls_session_feed(s, b, (size_t)n), 0);
    ssize_t r = tls_session_read(s, b, sizeof b);
    /* refused with a no_renegotiation warning; the connection goes on */
    cr_assert_eq(r, -EAGAIN);
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NONE);
    cr_assert_gt(tls_session_pending_out(s), 0);
    to_client(s, c);
    SSL_do_handshake(c);
    SSL_read(c, b, sizeof b);
    cr_assert(SSL_renegotiate_pending(c));
    ERR_clear_error();
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

static void refused(int minv, int maxv, const char *ciphers, const char *expect)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(minv, maxv);
    if (ciphers)
        cr_assert_eq(SSL_CTX_set_cipher_list(cc, ciphers), 1);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    cr_assert_eq(pump(c, s, 0), -EPROTO);
    const char *why;
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strstr(why, "handshake failed: ") == why && strstr(why, expect), "%s", why);
    cr_assert_not(SSL_is_init_finished(c));
    cr_assert_not(tls_session_handshake_done(s));
    /* dead for good, and the reason stays the first one */
    cr_assert_eq(tls_session_feed(s, "\x16", 1), -EPROTO);
    cr_assert_eq(tls_session_read(s, (char[8]){0}, 8), -EPROTO);
    cr_assert_eq(tls_session_write(s, "x", 1), -EPROTO);
    const char *again;
    tls_session_error(s, &again);
    cr_assert_str_eq(again, why);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, old_versions_refused)
{
    refused(TLS1_1_VERSION, TLS1_1_VERSION, NULL, "unsupported protocol");
    refused(TLS1_VERSION, TLS1_VERSION, NULL, "unsupported protocol");
}

Test(tls, tls12_weak_ciphers_refused)
{
    /* CBC with ECDHE; GCM without forward secrecy */
    refused(TLS1_2_VERSION, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA", "no shared cipher");
    refused(TLS1_2_VERSION, TLS1_2_VERSION, "AES128-GCM-SHA256:AES256-GCM-SHA384", "no shared cipher");
}

/* ---- ALPN --------------------------------------------------------------- */

Test(tls, alpn)
{
    char alpn[64], why[256];
    /* the server's order wins over the client's */
    cr_assert_eq(try_alpn("h2,http/1.1", "\x08http/1.1\x02h2", 12, alpn, why), 0, "%s", why);
    cr_assert_str_eq(alpn, "h2");
    cr_assert_eq(try_alpn("h2,http/1.1", "\x02h2\x08http/1.1", 12, alpn, why), 0, "%s", why);
    cr_assert_str_eq(alpn, "h2");
    cr_assert_eq(try_alpn("h2, http/1.1", "\x08http/1.1", 9, alpn, why), 0, "%s", why);
    cr_assert_str_eq(alpn, "http/1.1");
    /* no ALPN from the client: HTTP/1.1 */
    cr_assert_eq(try_alpn("h2,http/1.1", NULL, 0, alpn, why), 0, "%s", why);
    cr_assert_str_eq(alpn, "http/1.1");
    /* only unknown protocols: no_application_protocol (RFC 7301 3.2) */
    cr_assert_eq(try_alpn("h2,http/1.1", "\x06spdy/3\x03" "foo", 11, alpn, why), -EPROTO);
    cr_assert(strstr(why, "no application protocol"), "%s", why);
    cr_assert_str_eq(alpn, "(null)");
    cr_assert_eq(try_alpn(NULL, "\x02h2", 3, alpn, why), -EPROTO); /* default: http/1.1 only */
}

/* ---- SNI ---------------------------------------------------------------- */

static void sni_case(const char *name, int index, const char *cn)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, name);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    cr_assert_eq(tls_session_cert_index(s), index, "%s", name ? name : "(no SNI)");
    cr_assert_str_eq(peer_cn(c), cn, "%s", name ? name : "(no SNI)");
    if (name)
        cr_assert_str_eq(tls_session_sni(s), name);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, sni)
{
    sni_case(NULL, 0, "a.example");
    sni_case("a.example", 0, "a.example");
    sni_case("b.example", 1, "b.example");
    sni_case("B.Example.", 1, "b.example");
    sni_case("unknown.example", 0, "a.example");
    sni_case("x.wild.example", 0, "a.example");
    /* an exact name beats an earlier wildcard */
    sni_case("www.wild.example", 1, "b.example");
    /* a wildcard covers one label only */
    sni_case("x.y.wild.example", 0, "a.example");
}

Test(tls, sni_tls12)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    SSL *c = client_new(cc, "b.example");
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    cr_assert_eq(tls_session_cert_index(s), 1);
    cr_assert_str_eq(peer_cn(c), "b.example");
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- data ----------------------------------------------------------------- */

Test(tls, data_large_both_ways)
{
    tls_ctx *ctx = server_ctx("h2,http/1.1");
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    client_settle(c);
    client_to_server(c, s, 1u << 20, 0);
    client_to_server(c, s, 1u << 20, 1000);
    server_to_client(s, c, 1u << 20);
    /* grown buffers go back once idle, and the connection goes on */
    cr_assert_gt(tls_session_buffer_size(s), TLS_OUT_MAX);
    tls_session_trim(s);
    cr_assert_lt(tls_session_buffer_size(s), 8192);
    client_to_server(c, s, 100000, 0);
    server_to_client(s, c, 100000);
    tls_session_trim(s);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, byte_by_byte)
{
    tls_ctx *ctx = server_ctx(NULL);
    for (int v = 0; v < 2; v++) {
        SSL_CTX *cc = client_ctx(0, v ? TLS1_2_VERSION : 0);
        SSL *c = client_new(cc, "b.example");
        tls_session *s = session(ctx);
        handshake(c, s, 1);
        cr_assert_eq(tls_session_cert_index(s), 1);
        client_to_server(c, s, 40000, 1);
        server_to_client(s, c, 40000);
        tls_session_free(s);
        SSL_free(c);
        SSL_CTX_free(cc);
    }
    tls_ctx_free(ctx);
}

Test(tls, application_data_with_finished)
{
    /* a client's Finished and its first request often share a segment */
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    unsigned char buf[65536];
    SSL_do_handshake(c);
    int n = BIO_read(SSL_get_wbio(c), buf, sizeof buf);
    cr_assert_eq(tls_session_feed(s, buf, (size_t)n), 0);
    to_client(s, c);
    cr_assert_eq(SSL_do_handshake(c), 1);
    cr_assert_eq(SSL_write(c, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    n = BIO_read(SSL_get_wbio(c), buf, sizeof buf);
    cr_assert_not(tls_session_handshake_done(s));
    cr_assert_eq(tls_session_feed(s, buf, (size_t)n), 0);
    cr_assert(tls_session_handshake_done(s));
    unsigned char got[64];
    cr_assert_eq(server_read_all(s, got, sizeof got), 18);
    cr_assert_eq(memcmp(got, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, input_bound)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    /* a caller that feeds without reading is stopped at TLS_IN_MAX */
    size_t n = TLS_IN_MAX + 44 * 1024, first = TLS_IN_MAX - 16 * 1024;
    unsigned char *data = pattern(n, 3), *wire = malloc(2 * n);
    cr_assert_eq(SSL_write(c, data, (int)n), (int)n);
    int k = BIO_read(SSL_get_wbio(c), wire, (int)(2 * n));
    cr_assert_gt(k, (int)TLS_IN_MAX);
    cr_assert_eq(tls_session_feed(s, wire, (size_t)k), -ENOBUFS);
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NONE);
    cr_assert_eq(tls_session_feed(s, wire, first), 0);
    cr_assert_eq(tls_session_feed(s, wire + first, 32 * 1024), -ENOBUFS);
    /* reading makes room again */
    unsigned char *got = malloc(n);
    size_t have = server_read_all(s, got, n);
    cr_assert_gt(have, first - 20 * 1024);
    cr_assert_eq(tls_session_feed(s, wire + first, (size_t)k - first), 0);
    have += server_read_all(s, got + have, n - have);
    cr_assert_eq(have, n);
    cr_assert_eq(memcmp(got, data, n), 0);
    free(data);
    free(wire);
    free(got);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- not TLS, garbage, truncation ------------------------------------------ */

Test(tls, plain_http)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    tls_ctx *ctx = server_ctx(NULL);
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        tls_session *s = session(ctx);
        cr_assert_eq(tls_session_feed(s, req, bytewise ? 1 : sizeof req - 1), -EPROTO);
        const char *why;
        cr_assert_eq(tls_session_error(s, &why), TLS_ERR_NOT_TLS);
        cr_assert_str_eq(why, "not TLS (plain HTTP?)");
        cr_assert_str_eq(tls_error_name(TLS_ERR_NOT_TLS), "not-tls");
        cr_assert_eq(tls_session_feed(s, req + 1, 5), -EPROTO);
        cr_assert_eq(tls_session_pending_out(s), 0);
        cr_assert_eq(tls_session_eof(s), -EPROTO);
        cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NOT_TLS);
        tls_session_free(s);
    }
    /* the HTTP/2 preface too */
    tls_session *s = session(ctx);
    cr_assert_eq(tls_session_feed(s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24), -EPROTO);
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NOT_TLS);
    tls_session_free(s);
    tls_ctx_free(ctx);
}

Test(tls, garbage)
{
    tls_ctx *ctx = server_ctx(NULL);
    const char *why;
    /* binary that is no record at all */
    tls_session *s = session(ctx);
    cr_assert_eq(tls_session_feed(s, "\x00\x01\x02\x03\x04\x05", 6), -EPROTO);
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_NOT_TLS);
    cr_assert_str_eq(why, "not TLS (first byte 0x00)");
    tls_session_free(s);
    /* a handshake record holding nonsense */
    unsigned char rec[5 + 64] = {0x16, 0x03, 0x01, 0x00, 64};
    unsigned char *junk = pattern(64, 9);
    memcpy(rec + 5, junk, 64);
    s = session(ctx);
    cr_assert_eq(tls_session_feed(s, rec, sizeof rec), -EPROTO);
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strncmp(why, "handshake failed: ", 18) == 0, "%s", why);
    tls_session_free(s);
    free(junk);
    /* a record header out of bounds */
    s = session(ctx);
    cr_assert_eq(tls_session_feed(s, "\x16\x03\x01\xff\xff", 5), -EPROTO);
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_HANDSHAKE);
    tls_session_free(s);
    /* random bytes: an error or still waiting, never a handshake; bounded */
    for (unsigned seed = 0; seed < 200; seed++) {
        unsigned char *p = pattern(4096, seed + 100);
        if (seed % 2)
            p[0] = 0x16;
        s = session(ctx);
        int rc = tls_session_feed(s, p, 4096);
        cr_assert(rc == 0 || rc == -EPROTO);
        cr_assert_not(tls_session_handshake_done(s));
        cr_assert_leq(tls_session_pending_out(s), 64);
        cr_assert_eq(tls_session_read(s, p, 4096), rc == 0 ? -EAGAIN : -EPROTO);
        cr_assert_eq(tls_session_eof(s), -EPROTO);
        cr_assert_neq(tls_session_error(s, NULL), TLS_ERR_NONE);
        tls_session_free(s);
        free(p);
    }
    tls_ctx_free(ctx);
}

Test(tls, truncated_handshake)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, "b.example");
    unsigned char hello[4096];
    SSL_do_handshake(c);
    int n = BIO_read(SSL_get_wbio(c), hello, sizeof hello);
    cr_assert_gt(n, 100);
    tls_session *s = session(ctx);
    cr_assert_eq(tls_session_feed(s, hello, (size_t)n / 2), 0);
    cr_assert_not(tls_session_handshake_done(s));
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NONE);
    cr_assert_eq(tls_session_pending_out(s), 0);
    cr_assert_eq(tls_session_read(s, hello, sizeof hello), -EAGAIN);
    cr_assert_eq(tls_session_write(s, "x", 1), -EAGAIN);
    cr_assert_eq(tls_session_close(s), 0);
    const char *why;
    cr_assert_eq(tls_session_eof(s), -EPROTO);
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_TRUNCATED);
    cr_assert_str_eq(why, "truncated handshake");
    tls_session_free(s);
    /* connected and said nothing */
    s = session(ctx);
    cr_assert_eq(tls_session_eof(s), -EPROTO);
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_TRUNCATED);
    cr_assert_str_eq(why, "closed before sending anything");
    tls_session_free(s);
    /* a record announced at the largest size, never completed: the
     * session waits, holding only what was fed */
    s = session(ctx);
    cr_assert_eq(tls_session_feed(s, "\x16\x03\x01\x40\x00", 5), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(tls_session_feed(s, hello, 100), 0);
    cr_assert_not(tls_session_handshake_done(s));
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- closing ----------------------------------------------------------------- */

Test(tls, close_notify_server_first)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    server_to_client(s, c, 100);
    cr_assert_eq(tls_session_close(s), 0);
    cr_assert_eq(tls_session_close(s), 0); /* once */
    cr_assert_eq(tls_session_write(s, "x", 1), -EPIPE);
    to_client(s, c);
    unsigned char b[256];
    cr_assert_eq(SSL_read(c, b, sizeof b), 0);
    cr_assert_eq(SSL_get_error(c, 0), SSL_ERROR_ZERO_RETURN);
    /* the client answers; the server sees a clean end */
    cr_assert_eq(SSL_shutdown(c), 1);
    int n = BIO_read(SSL_get_wbio(c), b, sizeof b);
    cr_assert_gt(n, 0);
    cr_assert_eq(tls_session_feed(s, b, (size_t)n), 0);
    cr_assert_eq(tls_session_read(s, b, sizeof b), 0);
    cr_assert_eq(tls_session_eof(s), 0);
    cr_assert_eq(tls_session_error(s, NULL), TLS_ERR_NONE);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, close_notify_client_first)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    client_settle(c);
    cr_assert_eq(SSL_write(c, "bye", 3), 3);
    cr_assert_eq(SSL_shutdown(c), 0);
    unsigned char b[256];
    int n = BIO_read(SSL_get_wbio(c), b, sizeof b);
    cr_assert_eq(tls_session_feed(s, b, (size_t)n), 0);
    cr_assert_eq(tls_session_read(s, b, sizeof b), 3);
    cr_assert_eq(tls_session_read(s, b, sizeof b), 0);
    cr_assert_eq(tls_session_read(s, b, sizeof b), 0);
    /* a half-closed peer may still be answered */
    cr_assert_eq(tls_session_write(s, "ok", 2), 2);
    cr_assert_eq(tls_session_close(s), 0);
    to_client(s, c);
    cr_assert_eq(SSL_read(c, b, sizeof b), 2);
    cr_assert_eq(SSL_shutdown(c), 1);
    cr_assert_eq(tls_session_eof(s), 0);
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, eof_without_close_notify)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    client_to_server(c, s, 10, 0);
    const char *why;
    cr_assert_eq(tls_session_eof(s), -EPROTO);
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_TRUNCATED);
    cr_assert_str_eq(why, "truncated (EOF without close_notify)");
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, corrupted_record)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c = client_new(cc, NULL);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    unsigned char b[256];
    cr_assert_eq(SSL_write(c, "hello", 5), 5);
    int n = BIO_read(SSL_get_wbio(c), b, sizeof b);
    b[n - 1] ^= 1;
    cr_assert_eq(tls_session_feed(s, b, (size_t)n), 0);
    cr_assert_eq(tls_session_read(s, b, sizeof b), -EPROTO);
    const char *why;
    cr_assert_eq(tls_session_error(s, &why), TLS_ERR_PROTOCOL);
    cr_assert(strstr(why, "TLS error: ") == why, "%s", why);
    cr_assert_gt(tls_session_pending_out(s), 0); /* the alert, to send if we can */
    tls_session_free(s);
    SSL_free(c);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- resumption ---------------------------------------------------------------- */

/* Handshake on ctx with an optional session to resume; returns the client's
 * session afterwards (tickets read) and whether the server resumed. */
static SSL_SESSION *connect_once(tls_ctx *ctx, SSL_CTX *cc, SSL_SESSION *resume, bool *resumed, const char *cn)
{
    SSL *c = client_new(cc, NULL);
    if (resume)
        cr_assert_eq(SSL_set_session(c, resume), 1);
    tls_session *s = session(ctx);
    handshake(c, s, 0);
    client_settle(c);
    *resumed = tls_session_resumed(s);
    cr_assert_eq(*resumed, (bool)SSL_session_reused(c));
    if (cn && !*resumed)
        cr_assert_str_eq(peer_cn(c), cn);
    client_to_server(c, s, 100, 0);
    SSL_SESSION *out = SSL_get1_session(c);
    SSL_shutdown(c); /* else OpenSSL marks the session not resumable */
    tls_session_free(s);
    SSL_free(c);
    return out;
}

static void resumption(int version, bool tickets)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(version, version);
    if (!tickets)
        SSL_CTX_set_options(cc, SSL_OP_NO_TICKET);
    bool r;
    SSL_SESSION *sess = connect_once(ctx, cc, NULL, &r, NULL);
    cr_assert_not(r);
    cr_assert(SSL_SESSION_is_resumable(sess));
    SSL_SESSION *sess2 = connect_once(ctx, cc, sess, &r, NULL);
    cr_assert(r, "version %x tickets %d: not resumed", version, tickets);
    SSL_SESSION_free(sess);
    SSL_SESSION_free(sess2);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

Test(tls, resumption)
{
    resumption(TLS1_3_VERSION, true);
    resumption(TLS1_2_VERSION, true);
    resumption(TLS1_2_VERSION, false); /* session id, server-side cache */
}

Test(tls, ticket_rotation)
{
    tls_ctx *ctx = server_ctx(NULL);
    SSL_CTX *cc = client_ctx(TLS1_3_VERSION, 0);
    bool r;
    SSL_SESSION *s1 = connect_once(ctx, cc, NULL, &r, NULL);
    tls_ctx_rotate_tickets(ctx);
    /* the previous key still opens (and the ticket is renewed) */
    SSL_SESSION *s2 = connect_once(ctx, cc, s1, &r, NULL);
    cr_assert(r);
    tls_ctx_rotate_tickets(ctx);
    tls_ctx_rotate_tickets(ctx);
    /* two rotations later, a full handshake */
    SSL_SESSION *s3 = connect_once(ctx, cc, s1, &r, NULL);
    cr_assert_not(r);
    SSL_SESSION_free(s1);
    SSL_SESSION_free(s2);
    SSL_SESSION_free(s3);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- loading and reloading ---------------------------------------------------- */

static int load(const char *cert, const char *key, const char *alpn, char *err)
{
    tls_cert_files certs[] = {{cert, key}};
    tls_server_config cfg = {.certs = certs, .n_certs = 1, .alpn = alpn};
    tls_ctx *ctx = NULL;
    err[0] = '\0';
    int rc = tls_ctx_new_server(&ctx, &cfg, err, 256);
    cr_assert_eq(rc < 0, ctx == NULL);
    tls_ctx_free(ctx);
    return rc;
}

Test(tls, load_errors)
{
    char err[256], missing[160];
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);
    cr_assert_eq(load(a_pem, a_key, NULL, err), 0, "%s", err);
    cr_assert_eq(load(missing, a_key, NULL, err), -ENOENT);
    cr_assert(strstr(err, missing) && strstr(err, "No such file"), "%s", err);
    cr_assert_eq(load(a_pem, missing, NULL, err), -ENOENT);
    cr_assert(strstr(err, "key ") == err && strstr(err, missing), "%s", err);
    cr_assert_eq(load(junk_pem, a_key, NULL, err), -EINVAL);
    cr_assert(strstr(err, "no PEM certificate"), "%s", err);
    cr_assert_eq(load(a_pem, junk_pem, NULL, err), -EINVAL);
    cr_assert(strstr(err, "no usable private key"), "%s", err);
    cr_assert_eq(load(a_pem, b_key, NULL, err), -EINVAL);
    cr_assert(strstr(err, "does not match"), "%s", err);
    /* an encrypted key fails; it never prompts for a passphrase */
    cr_assert_eq(load(a_pem, enc_key, NULL, err), -EINVAL);
    cr_assert(strstr(err, "unencrypted PEM expected"), "%s", err);
    cr_assert_eq(load(a_pem, a_key, " , ", err), -EINVAL);
    cr_assert(strstr(err, "ALPN"), "%s", err);
    tls_server_config none = {0};
    tls_ctx *ctx = NULL;
    cr_assert_eq(tls_ctx_new_server(&ctx, &none, err, sizeof err), -EINVAL);
}

Test(tls, reload)
{
    /* one file pair, rewritten between loads */
    cr_assert_eq(link(a_pem, live_pem), 0);
    cr_assert_eq(link(a_key, live_key), 0);
    tls_cert_files certs[] = {{live_pem, live_key}};
    tls_server_config cfg = {.certs = certs, .n_certs = 1};
    char err[256];
    tls_ctx *ctx = NULL;
    cr_assert_eq(tls_ctx_new_server(&ctx, &cfg, err, sizeof err), 0, "%s", err);

    SSL_CTX *cc = client_ctx(0, 0);
    SSL *c1 = client_new(cc, NULL);
    tls_session *s1 = session(ctx);
    handshake(c1, s1, 0);
    client_settle(c1);
    cr_assert_str_eq(peer_cn(c1), "a.example");
    SSL_SESSION *ticket = SSL_get1_session(c1);

    /* new files: the new certificate for new sessions */
    cr_assert_eq(rename(c_pem, live_pem), 0);
    cr_assert_eq(rename(c_key, live_key), 0);
    tls_ctx *old = ctx;
    cr_assert_eq(tls_ctx_reload(&ctx, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_neq(ctx, old);
    bool r;
    SSL_SESSION *t2 = connect_once(ctx, cc, NULL, &r, "c.example");
    SSL_SESSION_free(t2);
    /* the old session keeps exchanging data on the old context */
    client_to_server(c1, s1, 200000, 0);
    server_to_client(s1, c1, 200000);
    /* and a ticket from before the reload still resumes */
    t2 = connect_once(ctx, cc, ticket, &r, NULL);
    cr_assert(r);
    SSL_SESSION_free(t2);

    /* a reload that fails keeps the context */
    unlink(live_key);
    cr_assert_eq(link(b_key, live_key), 0);
    tls_ctx *kept = ctx;
    cr_assert_eq(tls_ctx_reload(&ctx, &cfg, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "does not match"), "%s", err);
    cr_assert_eq(ctx, kept);
    t2 = connect_once(ctx, cc, NULL, &r, "c.example");
    SSL_SESSION_free(t2);

    cr_assert_eq(tls_session_close(s1), 0);
    tls_session_free(s1); /* the last user of the old context */
    SSL_free(c1);
    SSL_SESSION_free(ticket);
    SSL_CTX_free(cc);
    tls_ctx_free(ctx);
}

/* ---- the client role ------------------------------------------------------------ */

/* Pump two sessions until nothing moves. */
static void pump2(tls_session *a, tls_session *b)
{
    static unsigned char buf[65536];
    for (int i = 0; i < 100; i++) {
        bool moved = false;
        size_t n;
        while ((n = tls_session_pull(a, buf, sizeof buf)) > 0) {
            moved = true;
            if (tls_session_feed(b, buf, n) < 0)
                break;
        }
        while ((n = tls_session_pull(b, buf, sizeof buf)) > 0) {
            moved = true;
            if (tls_session_feed(a, buf, n) < 0)
                break;
        }
        if (!moved)
            return;
    }
}

static tls_ctx *client_tls(const char *cert, const char *key, const char *alpn)
{
    tls_client_config cfg = {.ca_file = ca_pem, .cert_file = cert, .key_file = key, .alpn = alpn};
    tls_ctx *ctx = NULL;
    char err[256];
    cr_assert_eq(tls_ctx_new_client(&ctx, &cfg, err, sizeof err), 0, "%s", err);
    return ctx;
}

Test(tls, client_role)
{
    tls_ctx *sctx = server_ctx("h2,http/1.1");
    tls_ctx *cctx = client_tls(NULL, NULL, "h2,http/1.1");
    tls_session *cl = NULL, *sv = session(sctx);
    cr_assert_eq(tls_session_new(&cl, cctx), -EINVAL); /* a client ctx makes client sessions */
    cr_assert_eq(tls_session_new_client(&cl, sctx, "b.example"), -EINVAL);
    cr_assert_eq(tls_session_new_client(&cl, cctx, "b.example"), 0);
    cr_assert_gt(tls_session_pending_out(cl), 0); /* the ClientHello */
    pump2(cl, sv);
    cr_assert(tls_session_handshake_done(cl) && tls_session_handshake_done(sv));
    cr_assert_str_eq(tls_session_alpn(cl), "h2");
    cr_assert_str_eq(tls_session_alpn(sv), "h2");
    cr_assert_str_eq(tls_session_sni(cl), "b.example");
    cr_assert_str_eq(tls_session_sni(sv), "b.example");
    cr_assert_eq(tls_session_cert_index(sv), 1);
    cr_assert_eq(tls_session_write(cl, "ping", 4), 4);
    pump2(cl, sv);
    char b[16];
    cr_assert_eq(tls_session_read(sv, b, sizeof b), 4);
    cr_assert_eq(memcmp(b, "ping", 4), 0);
    cr_assert_eq(tls_session_write(sv, "pong", 4), 4);
    pump2(cl, sv);
    cr_assert_eq(tls_session_read(cl, b, sizeof b), 4);
    cr_assert_eq(memcmp(b, "pong", 4), 0);
    cr_assert_eq(tls_session_close(cl), 0);
    pump2(cl, sv);
    cr_assert_eq(tls_session_read(sv, b, sizeof b), 0);
    tls_session_free(cl);
    tls_session_free(sv);

    /* no ALPN offered: the client reports none */
    tls_ctx *plain = client_tls(NULL, NULL, NULL);
    sv = session(sctx);
    cr_assert_eq(tls_session_new_client(&cl, plain, "a.example"), 0);
    pump2(cl, sv);
    cr_assert(tls_session_handshake_done(cl));
    cr_assert_null(tls_session_alpn(cl));
    cr_assert_str_eq(tls_session_alpn(sv), "http/1.1");
    tls_session_free(cl);
    tls_session_free(sv);

    /* the server's certificate must carry the name asked for */
    sv = session(sctx);
    cr_assert_eq(tls_session_new_client(&cl, plain, "other.example"), 0);
    pump2(cl, sv);
    const char *why;
    cr_assert_eq(tls_session_error(cl, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strstr(why, "certificate verify failed") && strstr(why, "hostname mismatch"), "%s", why);
    cr_assert_eq(tls_session_error(sv, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strstr(why, "alert"), "%s", why);
    tls_session_free(cl);
    tls_session_free(sv);

    /* and chain to the configured CA */
    tls_client_config sys = {0};
    tls_ctx *sysctx = NULL;
    char err[256];
    cr_assert_eq(tls_ctx_new_client(&sysctx, &sys, err, sizeof err), 0, "%s", err);
    sv = session(sctx);
    cr_assert_eq(tls_session_new_client(&cl, sysctx, "a.example"), 0);
    pump2(cl, sv);
    cr_assert_eq(tls_session_error(cl, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strstr(why, "certificate verify failed"), "%s", why);
    tls_session_free(cl);
    tls_session_free(sv);

    tls_ctx_free(sysctx);
    tls_ctx_free(plain);
    tls_ctx_free(cctx);
    tls_ctx_free(sctx);
}

Test(tls, client_certificates)
{
    tls_cert_files certs[] = {{a_pem, a_key}};
    tls_server_config cfg = {.certs = certs, .n_certs = 1, .client_ca_file = ca_pem};
    tls_ctx *sctx = NULL;
    char err[256];
    cr_assert_eq(tls_ctx_new_server(&sctx, &cfg, err, sizeof err), 0, "%s", err);
    tls_ctx *with = client_tls(cl_pem, cl_key, NULL), *without = client_tls(NULL, NULL, NULL);
    tls_session *cl, *sv = session(sctx);
    cr_assert_eq(tls_session_new_client(&cl, with, "a.example"), 0);
    pump2(cl, sv);
    cr_assert(tls_session_handshake_done(sv));
    cr_assert_eq(tls_session_write(cl, "hi", 2), 2);
    pump2(cl, sv);
    char b[4];
    cr_assert_eq(tls_session_read(sv, b, sizeof b), 2);
    tls_session_free(cl);
    tls_session_free(sv);

    sv = session(sctx);
    cr_assert_eq(tls_session_new_client(&cl, without, "a.example"), 0);
    pump2(cl, sv);
    /* TLS 1.3: the client finishes first, then hears the refusal */
    tls_session_read(cl, b, sizeof b);
    const char *why;
    cr_assert_eq(tls_session_error(sv, &why), TLS_ERR_HANDSHAKE);
    cr_assert(strstr(why, "certificate"), "%s", why);
    cr_assert_neq(tls_session_error(cl, NULL), TLS_ERR_NONE);
    tls_session_free(cl);
    tls_session_free(sv);
    tls_ctx_free(with);
    tls_ctx_free(without);
    tls_ctx_free(sctx);
}
