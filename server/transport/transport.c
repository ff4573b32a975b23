/* Transports (transport.h): plain sockets, and TLS over TCP. */
#include "transport/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

/* Ciphertext read from the socket per read (fed at once). */
#define CIN_SIZE (64u * 1024u)
/* Encrypt the front end's output up to this much ciphertext ahead of the
 * socket (besides the slice being written). */
#define COUT_AHEAD (128u * 1024u)
/* A keep-alive connection gives its TLS buffers back after this long
 * idle, not after every response (they would be made again at once). */
#define TLS_IDLE_TRIM_MS 2000

/* ---- plain TCP -------------------------------------------------------- */

static void plain_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    transport *t = h->data;
    t->cb->alloc(t, buf);
}

static void plain_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    transport *t = h->data;
    t->cb->read(t, nread, buf);
}

static void plain_written(uv_write_t *req, int status)
{
    transport *t = req->data;
    t->cb->written(t, status);
}

static void plain_closed(uv_handle_t *h)
{
    transport *t = h->data;
    t->cb->closed(t);
    free(t);
}

static int plain_read_start(transport *t)
{
    return uv_read_start(&t->stream, plain_alloc, plain_read);
}

static void plain_read_stop(transport *t)
{
    uv_read_stop(&t->stream);
}

static int plain_try_write(transport *t, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    return uv_try_write(&t->stream, &b, 1);
}

static int plain_write(transport *t, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    t->wreq.data = t;
    return uv_write(&t->wreq, &t->stream, &b, 1, plain_written);
}

static bool plain_handshaking(const transport *t)
{
    (void)t;
    return false;
}

static void plain_idle(transport *t)
{
    (void)t;
}

static void plain_close(transport *t)
{
    uv_close((uv_handle_t *)&t->stream, plain_closed);
}

static const char *plain_alpn(const transport *t)
{
    (void)t;
    return NULL;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* best effort: the close that follows reports nothing either */
}

static int plain_shutdown(transport *t)
{
    return uv_shutdown(&t->sreq, &t->stream, on_shutdown);
}

static const transport_ops plain_ops = {
    .read_start = plain_read_start,
    .read_stop = plain_read_stop,
    .try_write = plain_try_write,
    .write = plain_write,
    .handshaking = plain_handshaking,
    .idle = plain_idle,
    .close = plain_close,
    .alpn = plain_alpn,
    .shutdown = plain_shutdown,
};

/* ---- TLS -------------------------------------------------------------- */

struct tls_link {
    tls_ctx *ctx; /* a reference until the session takes its own */
    tls_session *s;
    uv_timer_t timer; /* handshake timeout */
    uv_idle_t resume; /* deliver buffered plaintext once reading resumes */
    int handles;
    bool want_read;    /* the front end reads */
    bool sock_reading; /* the socket is read */
    bool eof;          /* socket EOF or error seen */
    bool failed;       /* reported to the front end */
    bool closing;
    bool got_bytes;    /* the client sent something */
    /* ciphertext: encrypted, waiting (cout) and being written (cw) */
    char *cout, *cw;
    size_t cout_len, cout_cap, cw_len, cw_cap;
    bool cwriting;
    /* the front end's write in progress */
    const char *pt;
    size_t pt_len, pt_off;
    bool pt_active;
};

static void tls_deliver(transport *t);
static void tls_out(transport *t);

static void tls_log_fail(transport *t, const char *fallback)
{
    const char *reason = NULL;
    tls_error e = tls_session_error(t->tls->s, &reason);
    if (e == TLS_ERR_NONE || !reason)
        reason = fallback;
    slog(t->gw->log, LOG_INFO, "tls: %s: %s", t->peer, reason);
}

/* The connection cannot go on: tell the front end once (a pending write
 * fails, then the read side ends). */
static void tls_fail(transport *t, const char *fallback, bool log)
{
    tls_link *l = t->tls;
    if (l->failed || l->closing)
        return;
    l->failed = true;
    if (log)
        tls_log_fail(t, fallback);
    uv_timer_stop(&l->timer);
    if (l->pt_active) {
        l->pt_active = false;
        t->cb->written(t, UV_EPROTO);
    }
    if (!l->closing)
        t->cb->read(t, UV_EPROTO, NULL);
}

static void sock_reading(transport *t, bool on);

static int buf_reserve(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16384;
    while (nc < need)
        nc *= 2;
    char *q = realloc(*p, nc);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* Pull the session's ciphertext into cout. */
static int tls_pull(transport *t)
{
    tls_link *l = t->tls;
    size_t n = tls_session_pending_out(l->s);
    if (n == 0)
        return 0;
    if (buf_reserve(&l->cout, &l->cout_cap, l->cout_len + n) < 0)
        return -ENOMEM;
    l->cout_len += tls_session_pull(l->s, l->cout + l->cout_len, n);
    return 0;
}

/* Encrypt what the front end's write still holds, COUT_AHEAD at most. */
static void tls_encrypt(transport *t)
{
    tls_link *l = t->tls;
    while (l->pt_active && !l->failed && l->pt_off < l->pt_len && l->cout_len < COUT_AHEAD) {
        ssize_t w = tls_session_write(l->s, l->pt + l->pt_off, l->pt_len - l->pt_off);
        if (w == -EAGAIN && tls_session_pending_out(l->s) == 0)
            break; /* handshake not done */
        if (w < 0 && w != -EAGAIN) {
            tls_fail(t, "write failed", true);
            return;
        }
        if (w > 0)
            l->pt_off += (size_t)w;
        if (tls_pull(t) < 0) {
            tls_fail(t, "out of memory", true);
            return;
        }
    }
}

static void on_cwritten(uv_write_t *req, int status)
{
    transport *t = req->data;
    tls_link *l = t->tls;
    l->cwriting = false;
    l->cw_len = 0;
    if (l->closing || l->failed)
        return;
    if (status < 0) {
        if (l->pt_active) {
            l->pt_active = false;
            t->cb->written(t, status);
        }
        return;
    }
    tls_out(t);
}

/* Encrypt, pull, write; complete the front end's write once all of it left. */
static void tls_out(transport *t)
{
    tls_link *l = t->tls;
    if (l->closing || l->failed)
        return;
    tls_encrypt(t);
    if (l->failed)
        return;
    if (tls_pull(t) < 0) {
        tls_fail(t, "out of memory", true);
        return;
    }
    if (!l->cwriting && l->cout_len) {
        char *p = l->cw;
        size_t cap = l->cw_cap;
        l->cw = l->cout;
        l->cw_cap = l->cout_cap;
        l->cw_len = l->cout_len;
        l->cout = p;
        l->cout_cap = cap;
        l->cout_len = 0;
        uv_buf_t b = uv_buf_init(l->cw, (unsigned)l->cw_len);
        t->wreq.data = t;
        int rc = uv_write(&t->wreq, &t->stream, &b, 1, on_cwritten);
        if (rc < 0) {
            l->cw_len = 0;
            tls_fail(t, "socket write failed", false);
            return;
        }
        l->cwriting = true;
        tls_encrypt(t); /* the next slice, while this one is written */
        if (!l->failed && tls_pull(t) < 0)
            tls_fail(t, "out of memory", true);
        return;
    }
    if (l->pt_active && l->pt_off == l->pt_len && !l->cwriting && l->cout_len == 0) {
        l->pt_active = false;
        t->cb->written(t, 0);
    }
}

static void tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    transport *t = h->data;
    gateway *gw = t->gw;
    if (!gw->tls_in)
        gw->tls_in = malloc(CIN_SIZE);
    buf->base = (char *)gw->tls_in;
    buf->len = gw->tls_in ? CIN_SIZE : 0;
}

static void tls_sock_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    transport *t = h->data;
    tls_link *l = t->tls;
    if (nread == 0 || l->closing || l->failed)
        return;
    if (nread < 0) {
        l->eof = true;
        sock_reading(t, false);
        if (nread != UV_EOF) { /* reset: no TLS story to tell */
            l->failed = true;
            uv_timer_stop(&l->timer);
            if (l->pt_active) {
                l->pt_active = false;
                t->cb->written(t, (int)nread);
            }
            if (!l->closing)
                t->cb->read(t, nread, NULL);
            return;
        }
        tls_deliver(t);
        return;
    }
    l->got_bytes = true;
    int rc = tls_session_feed(l->s, buf->base, (size_t)nread);
    if (rc < 0) {
        tls_out(t); /* an alert, best effort */
        tls_fail(t, rc == -ENOBUFS ? "input overflow" : "error", true);
        return;
    }
    if (tls_session_handshake_done(l->s))
        uv_timer_stop(&l->timer);
    tls_deliver(t);
    if (!l->failed && !l->closing)
        tls_out(t); /* handshake flights; output held back by the handshake */
}

static void sock_reading(transport *t, bool on)
{
    tls_link *l = t->tls;
    if (on && !l->sock_reading && !l->eof) {
        if (uv_read_start(&t->stream, tls_alloc, tls_sock_read) == 0)
            l->sock_reading = true;
    } else if (!on && l->sock_reading) {
        uv_read_stop(&t->stream);
        l->sock_reading = false;
    }
}

/* Hand decrypted bytes to the front end while it reads. */
static void tls_deliver(transport *t)
{
    tls_link *l = t->tls;
    while (l->want_read && !l->closing && !l->failed) {
        uv_buf_t b;
        t->cb->alloc(t, &b);
        if (b.len == 0)
            break;
        ssize_t n = tls_session_read(l->s, b.base, b.len);
        if (n > 0) {
            t->cb->read(t, n, &b);
            continue;
        }
        if (n == -EAGAIN) {
            if (!l->eof) {
                sock_reading(t, true);
                return;
            }
            int rc = tls_session_eof(l->s);
            if (rc == 0 || tls_session_handshake_done(l->s) || !l->got_bytes) {
                /* a close without close_notify after the handshake is the
                 * usual HTTP client's; the front end judges the exchange */
                uv_timer_stop(&l->timer);
                l->failed = true;
                t->cb->read(t, UV_EOF, NULL);
            } else {
                tls_fail(t, "truncated handshake", true);
            }
            return;
        }
        if (n == 0) { /* close_notify */
            l->failed = true;
            t->cb->read(t, UV_EOF, NULL);
            return;
        }
        tls_out(t); /* the alert */
        tls_fail(t, "error", true);
        return;
    }
    if (!l->want_read)
        sock_reading(t, false);
}

static void on_resume(uv_idle_t *h)
{
    transport *t = h->data;
    uv_idle_stop(h);
    tls_deliver(t);
}

static void on_handshake_timeout(uv_timer_t *h)
{
    transport *t = h->data;
    slog(t->gw->log, LOG_INFO, "tls: %s: handshake timeout", t->peer);
    tls_fail(t, "handshake timeout", false);
}

static int tls_read_start(transport *t)
{
    tls_link *l = t->tls;
    if (l->closing || l->failed)
        return UV_EINVAL;
    if (!l->want_read) {
        l->want_read = true;
        /* plaintext may wait in the session: deliver it outside this call */
        uv_idle_start(&l->resume, on_resume);
    }
    return 0;
}

static void tls_read_stop(transport *t)
{
    tls_link *l = t->tls;
    l->want_read = false;
    uv_idle_stop(&l->resume);
    sock_reading(t, false);
}

/* Encrypt now and write what the socket takes without waiting, as plain
 * TCP does: a response leaves in the loop turn that made it, without a
 * uv_write (and its poll re-registration) per response. Ciphertext the
 * socket did not take goes out by uv_write, before anything written later. */
static int tls_try_write(transport *t, const char *p, size_t n)
{
    tls_link *l = t->tls;
    if (l->failed || l->closing)
        return UV_EPIPE;
    if (l->pt_active || l->cwriting || l->cout_len || !l->s || !tls_session_handshake_done(l->s))
        return UV_EAGAIN;
    size_t off = 0;
    while (off < n && l->cout_len < COUT_AHEAD) {
        ssize_t w = tls_session_write(l->s, p + off, n - off);
        if (w == -EAGAIN)
            break;
        if (w < 0 || tls_pull(t) < 0) {
            /* no callback from inside the front end's write: it closes */
            tls_log_fail(t, "write failed");
            l->failed = true;
            return UV_EPROTO;
        }
        off += (size_t)w;
    }
    if (off == 0)
        return UV_EAGAIN;
    uv_buf_t b = uv_buf_init(l->cout, (unsigned)l->cout_len);
    int w = uv_try_write(&t->stream, &b, 1);
    if (w > 0) {
        memmove(l->cout, l->cout + w, l->cout_len - (size_t)w);
        l->cout_len -= (size_t)w;
    } else if (w < 0 && w != UV_EAGAIN) {
        l->failed = true;
        return w;
    }
    if (l->cout_len)
        tls_out(t); /* the rest by uv_write; no front-end write is pending */
    return (int)off;
}

static int tls_write(transport *t, const char *p, size_t n)
{
    tls_link *l = t->tls;
    if (l->failed || l->closing || l->pt_active)
        return UV_EPIPE;
    l->pt = p;
    l->pt_len = n;
    l->pt_off = 0;
    l->pt_active = true;
    tls_out(t);
    return 0;
}

static bool tls_handshaking(const transport *t)
{
    const tls_link *l = t->tls;
    return l && l->s && !l->failed && !l->closing && !tls_session_handshake_done(l->s);
}

static void on_idle_trim(uv_timer_t *h)
{
    transport *t = h->data;
    tls_link *l = t->tls;
    if (l->closing || l->failed || l->pt_active)
        return;
    if (l->s)
        tls_session_trim(l->s);
    if (!l->cwriting && l->cout_len == 0) {
        free(l->cout);
        free(l->cw);
        l->cout = l->cw = NULL;
        l->cout_cap = l->cw_cap = 0;
    }
}

/* The front end went idle: trim once it has stayed idle a while (the
 * handshake is done, so the timer is free). */
static void tls_idle(transport *t)
{
    tls_link *l = t->tls;
    if (l->closing || l->failed || !l->s || !tls_session_handshake_done(l->s))
        return;
    uv_timer_start(&l->timer, on_idle_trim, TLS_IDLE_TRIM_MS, 0);
}

static void tls_handle_closed(uv_handle_t *h)
{
    transport *t = h->data;
    tls_link *l = t->tls;
    if (--l->handles > 0)
        return;
    tls_session_free(l->s);
    tls_ctx_free(l->ctx);
    free(l->cout);
    free(l->cw);
    free(l);
    t->tls = NULL;
    t->cb->closed(t);
    free(t);
}

static void tls_close(transport *t)
{
    tls_link *l = t->tls;
    if (l->closing)
        return;
    if (l->s && !l->failed && tls_session_handshake_done(l->s) && tls_session_close(l->s) == 0 &&
        !l->cwriting) {
        /* close_notify, best effort: what the socket takes now */
        char buf[256];
        size_t n = tls_session_pull(l->s, buf, sizeof buf);
        if (n) {
            uv_buf_t b = uv_buf_init(buf, (unsigned)n);
            uv_try_write(&t->stream, &b, 1);
        }
    }
    l->closing = true;
    l->handles = 3;
    uv_close((uv_handle_t *)&t->stream, tls_handle_closed);
    uv_close((uv_handle_t *)&l->timer, tls_handle_closed);
    uv_close((uv_handle_t *)&l->resume, tls_handle_closed);
}

static const char *tls_alpn(const transport *t)
{
    const tls_link *l = t->tls;
    if (!l->s || !tls_session_handshake_done(l->s))
        return NULL;
    return tls_session_alpn(l->s);
}

static int tls_shutdown(transport *t)
{
    tls_link *l = t->tls;
    if (l->closing || l->failed || !l->s || !tls_session_handshake_done(l->s))
        return UV_EPIPE;
    if (tls_session_close(l->s) < 0)
        return UV_EPROTO;
    tls_out(t); /* close_notify, after whatever is still being written */
    if (l->failed)
        return UV_EPROTO;
    /* libuv shuts the write side down once the writes queued so far are done */
    return uv_shutdown(&t->sreq, &t->stream, on_shutdown);
}

static const transport_ops tls_ops = {
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .try_write = tls_try_write,
    .write = tls_write,
    .handshaking = tls_handshaking,
    .idle = tls_idle,
    .close = tls_close,
    .alpn = tls_alpn,
    .shutdown = tls_shutdown,
};

/* ---- setup ------------------------------------------------------------ */

static transport *transport_alloc(gateway *gw, const transport_cb *cb, void *owner)
{
    transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->gw = gw;
    t->cb = cb;
    t->owner = owner;
    t->ops = &plain_ops;
    return t;
}

transport *transport_new(gateway *gw, tls_ctx *ctx, const transport_cb *cb, void *owner)
{
    transport *t = transport_alloc(gw, cb, owner);
    if (!t)
        return NULL;
    if (ctx) {
        tls_link *l = calloc(1, sizeof *l);
        if (!l) {
            free(t);
            return NULL;
        }
        l->ctx = tls_ctx_ref(ctx);
        uv_timer_init(gw->loop, &l->timer);
        l->timer.data = t;
        uv_idle_init(gw->loop, &l->resume);
        l->resume.data = t;
        t->tls = l;
        t->ops = &tls_ops;
    }
    uv_tcp_init(gw->loop, &t->tcp);
    t->tcp.data = t;
    return t;
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t cap, uint16_t *port)
{
    out[0] = 0;
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, out, cap);
        *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, out, cap);
        *port = ntohs(a->sin6_port);
    }
}

transport *transport_new_pipe(gateway *gw, const transport_cb *cb, void *owner)
{
    transport *t = transport_alloc(gw, cb, owner);
    if (!t)
        return NULL;
    t->is_pipe = true;
    uv_pipe_init(gw->loop, &t->pipe, 0);
    t->pipe.data = t;
    return t;
}

int transport_start(transport *t)
{
    if (t->is_pipe)
        return 0;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_text(&ss, t->remote, sizeof t->remote, &t->remote_port);
    len = sizeof ss;
    if (uv_tcp_getsockname(&t->tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_text(&ss, t->local, sizeof t->local, &t->local_port);
    snprintf(t->peer, sizeof t->peer, "%s:%u", t->remote, t->remote_port);
    tls_link *l = t->tls;
    if (!l)
        return 0;
    int rc = tls_session_new(&l->s, l->ctx);
    if (rc < 0)
        return rc;
    uint64_t ms = t->gw->cfg->tls_handshake_timeout_ms;
    uv_timer_start(&l->timer, on_handshake_timeout, ms ? ms : 1, 0);
    return 0;
}

void transport_set_reading(transport *t, bool *reading, bool want)
{
    if (want && !*reading) {
        if (t->ops->read_start(t) == 0)
            *reading = true;
    } else if (!want && *reading) {
        t->ops->read_stop(t);
        *reading = false;
    }
}

void transport_adopt(transport *t, const transport_cb *cb, void *owner)
{
    t->cb = cb;
    t->owner = owner;
}
