/* libFuzzer target: arbitrary bytes into a TLS server session (server/tls),
 * in memory. The first byte picks how:
 *   mode 0: the rest is what a client sends from the start (ClientHellos,
 *           plain HTTP, garbage), fed in pieces;
 *   mode 1: a real handshake first (the layer's own client role), then the
 *           rest as raw bytes on the established connection;
 *   mode 2: a real handshake, then the rest as plaintext the client sends,
 *           echoed back by the server (buffers trimmed on the way), then
 *           close_notify or a bare EOF.
 * Bits 2..7 of that byte set the feed piece size (0: all at once).
 * Invariants: no sanitizer report; results within the documented set;
 * buffered output bounded; after mode 2, the echo equals the input. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls.h"
#include "tls_certs.h"

static tls_ctx *server, *client;
static uint8_t wire[1 << 17], plain[1 << 17];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char dir[] = "/tmp/sluice-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char ca_pem[64], a_pem[64], a_key[64];
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
    snprintf(a_pem, sizeof a_pem, "%s/a.pem", dir);
    snprintf(a_key, sizeof a_key, "%s/a.key", dir);
    tc_pair ca = tc_make("fuzz CA", NULL, NULL);
    tc_pair a = tc_make("a.example", "DNS:a.example", &ca);
    FILE *f = fopen(ca_pem, "w");
    if (!f || !PEM_write_X509(f, ca.cert) || fclose(f))
        abort();
    tc_write(&a, &ca, a_pem, a_key);
    tls_cert_files certs[] = {{a_pem, a_key}};
    tls_server_config scfg = {.certs = certs, .n_certs = 1, .alpn = "h2,http/1.1"};
    tls_client_config ccfg = {.ca_file = ca_pem, .alpn = "h2"};
    char err[256];
    if (tls_ctx_new_server(&server, &scfg, err, sizeof err) < 0 ||
        tls_ctx_new_client(&client, &ccfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_tls: %s\n", err);
        abort();
    }
    /* the contexts hold everything now */
    unlink(ca_pem);
    unlink(a_pem);
    unlink(a_key);
    rmdir(dir);
    tc_free(&ca);
    tc_free(&a);
    return 0;
}

static void check(int rc)
{
    if (rc != 0 && rc != -EPROTO && rc != -ENOBUFS) {
        fprintf(stderr, "fuzz_tls: unexpected result %d\n", rc);
        abort();
    }
}

/* Drain a session's plaintext (discarded or appended to out). */
static size_t drain(tls_session *s, uint8_t *out, size_t cap)
{
    size_t have = 0;
    for (;;) {
        uint8_t scratch[4096];
        ssize_t r = have < cap ? tls_session_read(s, out + have, cap - have)
                               : tls_session_read(s, scratch, sizeof scratch);
        if (r <= 0) {
            if (r != 0 && r != -EAGAIN && r != -EPROTO)
                abort();
            return have;
        }
        if (have < cap)
            have += (size_t)r;
    }
}

/* Everything `from` has to send, into `to`, in pieces of `piece`. */
static void move(tls_session *from, tls_session *to, size_t piece)
{
    size_t n;
    if (tls_session_pending_out(from) > TLS_OUT_MAX + 65536)
        abort(); /* output is bounded by what was pushed */
    while ((n = tls_session_pull(from, wire, piece ? piece : sizeof wire)) > 0) {
        int rc = tls_session_feed(to, wire, n);
        check(rc);
        if (rc < 0)
            return;
    }
}

/* The input, as raw ciphertext, into the server in pieces; its answers go
 * to the client `c`, or nowhere. */
static void feed_server(tls_session *s, tls_session *c, const uint8_t *data, size_t size, size_t piece)
{
    for (size_t off = 0; off < size;) {
        size_t n = piece && piece < size - off ? piece : size - off;
        int rc = tls_session_feed(s, data + off, n);
        check(rc);
        off += n;
        drain(s, NULL, 0);
        if (c)
            move(s, c, 0);
        else
            while (tls_session_pull(s, wire, sizeof wire) > 0)
                ;
        if (rc == -EPROTO)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    unsigned mode = data[0] % 3;
    size_t piece = data[0] >> 2; /* 0: all at once */
    data++;
    size--;
    tls_session *s = NULL, *c = NULL;
    if (tls_session_new(&s, server) < 0)
        abort();

    if (mode == 0) {
        feed_server(s, NULL, data, size, piece);
        tls_session_eof(s);
        tls_session_free(s);
        return 0;
    }

    if (tls_session_new_client(&c, client, "a.example") < 0)
        abort();
    for (int i = 0; i < 20 && !(tls_session_handshake_done(s) && tls_session_handshake_done(c)); i++) {
        move(c, s, piece);
        move(s, c, 0);
    }
    if (!tls_session_handshake_done(s) || !tls_session_handshake_done(c) ||
        strcmp(tls_session_alpn(s), "h2") != 0) {
        fprintf(stderr, "fuzz_tls: in-memory handshake failed\n");
        abort();
    }
    drain(c, NULL, 0); /* tickets */

    if (mode == 1) {
        feed_server(s, c, data, size, piece);
    } else {
        /* client -> server (in pieces) -> echoed -> client */
        static uint8_t back[65536];
        size_t sent = 0, nback = 0;
        for (int i = 0; i < 1000 && nback < size; i++) {
            if (sent < size) {
                ssize_t w = tls_session_write(c, data + sent, size - sent);
                if (w > 0)
                    sent += (size_t)w;
                else if (w != -EAGAIN)
                    abort();
            }
            move(c, s, piece);
            size_t got = drain(s, plain, sizeof plain);
            for (size_t off = 0; off < got;) {
                ssize_t w = tls_session_write(s, plain + off, got - off);
                if (w <= 0)
                    abort(); /* far below TLS_OUT_MAX: all taken */
                off += (size_t)w;
            }
            move(s, c, 0);
            nback += drain(c, back + nback, sizeof back - nback);
            if (i & 1) { /* swapping buffers mid-stream loses nothing */
                tls_session_trim(s);
                tls_session_trim(c);
            }
        }
        if (nback != size || memcmp(back, data, size) != 0) {
            fprintf(stderr, "fuzz_tls: echoed %zu of %zu bytes, or not the same\n", nback, size);
            abort();
        }
        if (size & 1) {
            tls_session_close(c);
            move(c, s, piece);
            if (drain(s, NULL, 0) != 0 || tls_session_eof(s) != 0)
                abort();
        } else if (tls_session_eof(s) != -EPROTO || tls_session_error(s, NULL) != TLS_ERR_TRUNCATED) {
            abort();
        }
    }
    tls_session_free(c);
    tls_session_free(s);
    return 0;
}
