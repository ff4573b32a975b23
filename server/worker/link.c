/* Worker link: one connection to a worker process (Unix socket, TCP, or
 * TLS over TCP, through a transport).
 *
 * Input: bytes -> incremental decoder -> protocol state machine -> the
 * stream the frame belongs to. Output: frames are appended to `out` and the
 * link is queued for the end-of-iteration flush, so everything produced for
 * this worker in one loop turn leaves in one write. */
#include "worker/link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/loop.h"
#include "transport/transport.h"
#include "exchange/stream.h"

#define READ_BUF (64 * 1024)
/* Bound on queued output: heads plus request bodies, which credits bound to
 * max_streams x window; beyond this the worker stopped reading. */
#define OUT_MAX (256u << 20)

/* Past DRAIN's timeout, how long the link may still take to close. */
#define DRAIN_GRACE_MS 2000

struct wlink {
    gateway *gw;
    const char *name; /* the owner pool's */
    const wlink_owner_ops *ops;
    void *owner;
    transport *t; /* Unix socket, or TCP (maybe TLS) for remote workers */
    bool tcp, tls;
    uv_timer_t hello_timer; /* the HELLO deadline, then DRAIN's */
    uv_timer_t ping_timer;  /* liveness (TCP/TLS links, from HELLO on) */
    uint64_t last_rx_ms;    /* loop time of the last bytes read */
    uint64_t ping_seq;
    int handles; /* open uv handles; freed when 0 after close */
    sluice_proto_link *proto;
    sluice_proto_decoder *dec;
    uint8_t *rbuf;
    sluice_buf out, wbuf;
    bool writing;
    flush_node flush;
    bool closing;
    bool ready;
    bool drained; /* DRAIN sent: the worker is expected to leave */
    bool drain_expired; /* DRAIN's timeout ran out: WebSockets were closed */
    int peer_pid;
    char peer[64]; /* TCP peer address */
    int64_t worker_id;
    uint64_t requests;     /* streams opened */
    uint64_t connected_ms;
    size_t body_chunk; /* largest BODY payload the worker accepts */
    worker_proc *proc;
};

static void link_flush(flush_node *n);
static void link_fail(wlink *l, int err, const char *why);

/* ---- lifetime --------------------------------------------------------- */

static void link_free(wlink *l)
{
    sluice_proto_link_free(l->proto);
    sluice_proto_decoder_free(l->dec);
    sluice_buf_close(&l->out);
    sluice_buf_close(&l->wbuf);
    free(l->rbuf);
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    wlink *l = h->data;
    if (--l->handles == 0)
        link_free(l);
}

static void on_hello_timeout(uv_timer_t *t)
{
    wlink *l = t->data;
    slog(l->gw->log, LOG_WARN, "pool %s: worker connection (pid %d) sent no HELLO in time; closing",
         l->name, l->peer_pid);
    link_fail(l, SLUICE_PROTO_E_TIMEOUT, "no HELLO in time");
}

/* DRAIN's timeout (plus a little grace for the close to arrive) passed
 * with the link still open: the worker is stuck or ignores DRAIN. Its
 * streams are lost either way; closing the link lets a reload go on and
 * the gateway exit (the pool stops the process if it lingers). */
static void on_drain_timeout(uv_timer_t *t)
{
    wlink *l = t->data;
    if (!l->drain_expired) {
        /* A WebSocket lives as long as its client wants: on a draining
         * link it gets until DRAIN's timeout, then close 1001 (going
         * away) on both sides, and the worker a little grace to leave. */
        l->drain_expired = true;
        sluice_proto_stream *ps = sluice_proto_link_next_stream(l->proto, NULL);
        while (ps && !l->closing) {
            sluice_proto_stream *next = sluice_proto_link_next_stream(l->proto, ps);
            stream *s = sluice_proto_stream_udata(ps);
            if (s && sluice_proto_stream_websocket(ps) == 2) {
                wlink_send_close(l, s, 1001, NULL, 0);
                stream_on_close(s, 1001, NULL, 0);
            }
            ps = next;
        }
        if (!l->closing)
            uv_timer_start(&l->hello_timer, on_drain_timeout, DRAIN_GRACE_MS, 0);
        return;
    }
    slog(l->gw->log, LOG_WARN, "pool %s: worker %lld (pid %d) still open %u streams after DRAIN's timeout; closing",
         l->name, (long long)l->worker_id, l->peer_pid, sluice_proto_link_open_streams(l->proto));
    wlink_close(l, 0, "DRAIN timeout");
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf);
static void on_written(transport *t, int status);
static int send_frame(wlink *l, const sluice_frame *f, sluice_link_event *ev);

/* Over a network a worker can vanish without a close (host or link down):
 * PING every interval; a link silent for three of them is dead. */
static void on_ping_timer(uv_timer_t *h)
{
    wlink *l = h->data;
    uint64_t iv = l->ops->config(l->owner)->ping_interval_ms;
    if (l->closing || !l->ready || !iv)
        return;
    uint64_t silent = uv_now(l->gw->loop) - l->last_rx_ms;
    if (silent >= 3 * iv) {
        slog(l->gw->log, LOG_WARN, "pool %s: worker %lld (%s) silent for %.1fs: link closed", l->name,
             (long long)l->worker_id, l->peer, (double)silent / 1000.0);
        link_fail(l, SLUICE_PROTO_E_TIMEOUT, "no frame for three ping intervals");
        return;
    }
    sluice_frame f = {.type = SLUICE_FRAME_PING};
    f.u.opaque = ++l->ping_seq;
    send_frame(l, &f, NULL);
}

static void alloc_cb(transport *t, uv_buf_t *buf)
{
    wlink *l = t->owner;
    buf->base = (char *)l->rbuf;
    buf->len = READ_BUF;
}

static void on_transport_closed(transport *t)
{
    wlink *l = t->owner;
    l->t = NULL;
    if (--l->handles == 0)
        link_free(l);
}

static const transport_cb link_transport_cb = {
    .alloc = alloc_cb,
    .read = on_read,
    .written = on_written,
    .closed = on_transport_closed,
};

static int peer_pid_of(uv_stream_t *p)
{
    uv_os_fd_t fd;
    if (p->type != UV_NAMED_PIPE || uv_fileno((uv_handle_t *)p, &fd) != 0)
        return 0;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return 0;
    return cred.pid;
}

int wlink_accept(gateway *gw, uv_stream_t *server, tls_ctx *tls, const char *name, const wlink_owner_ops *ops,
                 void *owner)
{
    wlink *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->gw = gw;
    l->name = name;
    l->ops = ops;
    l->owner = owner;
    l->worker_id = -1;
    l->flush.fn = link_flush;
    sluice_buf_init(&l->out, OUT_MAX);
    sluice_buf_init(&l->wbuf, OUT_MAX);
    l->tcp = server->type == UV_TCP;
    l->tls = l->tcp && tls;
    l->t = l->tcp ? transport_new(gw, tls, &link_transport_cb, l) : transport_new_pipe(gw, &link_transport_cb, l);
    if (!l->t) {
        free(l);
        return -ENOMEM;
    }
    l->handles = 1;
    int rc = uv_accept(server, &l->t->stream);
    if (rc == 0)
        rc = transport_start(l->t);
    if (rc == 0) {
        l->rbuf = malloc(READ_BUF);
        rc = l->rbuf ? 0 : -ENOMEM;
    }
    sluice_link_config lc = {.max_streams = SLUICE_PROTO_MAX_STREAMS};
    if (rc == 0)
        rc = sluice_proto_link_new(&l->proto, SLUICE_ROLE_GATEWAY, &lc);
    if (rc == 0)
        rc = sluice_proto_decoder_new(&l->dec, ops->config(owner)->max_frame, SLUICE_PROTO_MAX_HEADERS);
    if (rc == 0) {
        uv_timer_init(gw->loop, &l->hello_timer);
        l->hello_timer.data = l;
        l->handles++;
        uv_timer_init(gw->loop, &l->ping_timer);
        l->ping_timer.data = l;
        l->handles++;
        uv_timer_start(&l->hello_timer, on_hello_timeout, ops->config(owner)->startup_timeout_ms, 0);
        rc = l->t->ops->read_start(l->t);
    }
    if (rc < 0) {
        l->closing = true;
        l->t->ops->close(l->t);
        if (l->handles > 1) {
            uv_close((uv_handle_t *)&l->hello_timer, on_handle_closed);
            uv_close((uv_handle_t *)&l->ping_timer, on_handle_closed);
        }
        return rc;
    }
    l->peer_pid = peer_pid_of(&l->t->stream);
    l->connected_ms = uv_now(gw->loop);
    if (l->tcp) {
        uv_tcp_nodelay(&l->t->tcp, 1);
        snprintf(l->peer, sizeof l->peer, "%s", l->t->remote);
    }
    return 0;
}

/* ---- output ----------------------------------------------------------- */

static void on_written(transport *t, int status)
{
    wlink *l = t->owner;
    l->writing = false;
    sluice_buf_reset(&l->wbuf);
    if (l->wbuf.cap > (1u << 20)) /* do not keep a burst's memory */
        sluice_buf_close(&l->wbuf);
    if (status < 0) {
        if (!l->closing)
            link_fail(l, status, "write failed");
        return;
    }
    if (l->out.len && !l->closing)
        link_flush(&l->flush);
}

static void link_flush(flush_node *n)
{
    wlink *l = (wlink *)((char *)n - offsetof(wlink, flush));
    if (l->writing || l->out.len == 0 || l->closing)
        return;
    int w = l->t->ops->try_write(l->t, (const char *)l->out.data, l->out.len);
    if (w == (int)l->out.len) {
        sluice_buf_reset(&l->out);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        link_fail(l, w, "write failed");
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    /* the rest goes out asynchronously from wbuf; new frames gather in out */
    sluice_buf tmp = l->wbuf;
    l->wbuf = l->out;
    l->out = tmp;
    sluice_buf_reset(&l->out);
    l->writing = true;
    int rc = l->t->ops->write(l->t, (const char *)l->wbuf.data + done, l->wbuf.len - done);
    if (rc < 0) {
        l->writing = false;
        link_fail(l, rc, "write failed");
    }
}

static void queue_flush(wlink *l) { gw_defer_flush(l->gw, &l->flush); }

/* ---- failure ---------------------------------------------------------- */

static void link_fail(wlink *l, int err, const char *why)
{
    if (l->closing)
        return;
    l->closing = true;
    if (sluice_proto_err_name(err) && err != SLUICE_PROTO_E_TRUNCATED) {
        /* best effort: tell the worker why, without waiting for it */
        sluice_buf eb;
        sluice_buf_init(&eb, 4096);
        if (sluice_proto_encode_error(&eb, err, why) == 0 && !l->writing)
            l->t->ops->try_write(l->t, (const char *)eb.data, eb.len);
        sluice_buf_close(&eb);
    }
    /* A worker told to leave (DRAIN, or the gateway is stopping) may close
     * its end while we still write: that is how it leaves, not a fault. */
    bool leaving = (l->drained || l->gw->stopping) && (err == UV_EPIPE || err == UV_ECONNRESET);
    if (leaving)
        err = UV_EOF;
    if (err != 0 && err != UV_EOF && l->worker_id < 0) /* never said a valid HELLO */
        slog(l->gw->log, LOG_WARN, "pool %s: worker connection (%s%s%d) closed: %s (%s)", l->name,
             l->tcp ? l->peer : "", l->tcp ? ", pid " : "pid ", l->peer_pid, why, sluice_proto_strerror(err));
    else if (err != 0 && err != UV_EOF)
        slog(l->gw->log, LOG_WARN, "pool %s: worker %lld (pid %d) link closed: %s (%s)",
             l->name, (long long)l->worker_id, l->peer_pid, why, sluice_proto_strerror(err));
    else
        slog(l->gw->log, LOG_INFO, "pool %s: worker %lld (pid %d) disconnected", l->name,
             (long long)l->worker_id, l->peer_pid);
    sluice_proto_link_fail(l->proto);
    /* every open stream loses its worker */
    sluice_proto_stream *ps = sluice_proto_link_next_stream(l->proto, NULL);
    while (ps) {
        sluice_proto_stream *next = sluice_proto_link_next_stream(l->proto, ps);
        stream *s = sluice_proto_stream_udata(ps);
        sluice_proto_stream_set_udata(ps, NULL);
        if (s) {
            s->link = NULL;
            stream_on_lost(s);
        }
        ps = next;
    }
    l->t->ops->read_stop(l->t);
    uv_timer_stop(&l->hello_timer);
    uv_timer_stop(&l->ping_timer);
    l->ops->closed(l->owner, l);
    l->t->ops->close(l->t);
    uv_close((uv_handle_t *)&l->hello_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->ping_timer, on_handle_closed);
}

void wlink_close(wlink *l, int err, const char *why) { link_fail(l, err, why); }

/* ---- sending ---------------------------------------------------------- */

/* Run a frame through the state machine, then encode it. */
static int send_frame(wlink *l, const sluice_frame *f, sluice_link_event *ev)
{
    if (l->closing)
        return -EPIPE;
    int rc = sluice_proto_link_send(l->proto, f, ev);
    if (rc < 0)
        return rc;
    rc = sluice_proto_encode(&l->out, f, sluice_proto_link_peer_max_frame(l->proto));
    if (rc == -ENOBUFS) {
        link_fail(l, SLUICE_PROTO_E_INTERNAL, "output buffer overflow");
        return rc;
    }
    if (rc < 0) { /* a frame we cannot encode is our bug, never the worker's */
        slog(l->gw->log, LOG_ERROR, "pool %s: cannot encode %s: %s", l->name,
             sluice_frame_type_name((int)f->type), sluice_proto_strerror(rc));
        return rc;
    }
    queue_flush(l);
    return 0;
}

int wlink_open(wlink *l, stream *s)
{
    if (!wlink_can_open(l))
        return -EAGAIN;
    uint64_t sid = sluice_proto_link_next_stream_id(l->proto);
    sluice_frame f = {.type = SLUICE_FRAME_REQUEST, .stream_id = sid};
    f.u.request = s->req;
    f.u.request.body = s->body_mode;
    /* A checked WebSocket handshake becomes a WebSocket stream only for a
     * worker that takes them; any other worker gets the plain request it
     * always got (PROTOCOL.md 5.2). */
    s->ws = s->ws_offer && sluice_proto_link_websocket(l->proto);
    if (s->ws)
        f.u.request.body = SLUICE_BODY_WEBSOCKET;
    /* The head must fit the worker's max_frame: check before the state
     * machine opens the stream. */
    size_t mark = l->out.len;
    int rc = sluice_proto_encode_request(&l->out, sid, &f.u.request,
                                         sluice_proto_link_peer_max_frame(l->proto));
    if (rc < 0)
        return rc;
    sluice_link_event ev;
    rc = sluice_proto_link_send(l->proto, &f, &ev);
    if (rc < 0) {
        l->out.len = mark;
        return rc;
    }
    sluice_proto_stream_set_udata(ev.stream, s);
    s->link = l;
    s->sid = sid;
    s->worker_id = l->worker_id;
    l->requests++;
    queue_flush(l);
    return 0;
}

bool wlink_can_open(const wlink *l)
{
    return l->ready && !l->closing && sluice_proto_link_can_open(l->proto);
}

bool wlink_retiring(const wlink *l) { return sluice_proto_link_retiring(l->proto); }
uint32_t wlink_open_streams(const wlink *l) { return sluice_proto_link_open_streams(l->proto); }
bool wlink_ready(const wlink *l) { return l->ready && !l->closing; }
bool wlink_serving(const wlink *l)
{
    return l->ready && !l->closing && sluice_proto_link_state(l->proto) == SLUICE_LINK_READY &&
           !sluice_proto_link_retiring(l->proto);
}
uint32_t wlink_max_streams(const wlink *l) { return sluice_proto_link_max_streams(l->proto); }
int64_t wlink_worker_id(const wlink *l) { return l->worker_id; }
int wlink_pid(const wlink *l) { return l->peer_pid; }
uint64_t wlink_requests(const wlink *l) { return l->requests; }
uint64_t wlink_connected_ms(const wlink *l) { return l->connected_ms; }
const char *wlink_peer(const wlink *l) { return l->tcp ? l->peer : ""; }
worker_proc *wlink_proc(const wlink *l) { return l->proc; }

void wlink_set_proc(wlink *l, worker_proc *p, int64_t worker_id)
{
    l->proc = p;
    l->worker_id = worker_id;
}

uint32_t wlink_send_window(const wlink *l, const stream *s)
{
    sluice_proto_stream *ps = sluice_proto_link_stream(l->proto, s->sid);
    return ps ? sluice_proto_stream_send_window(ps) : 0;
}

/* BODY or MESSAGE data in pieces within the worker's max_frame: a MESSAGE
 * (flags) goes out even empty, and all its pieces but the last say MORE. */
static int send_data(wlink *l, stream *s, uint32_t type, uint32_t flags, const uint8_t *data, size_t len)
{
    bool message = type == SLUICE_FRAME_MESSAGE;
    while (len || message) {
        size_t n = len < l->body_chunk ? len : l->body_chunk;
        uint32_t fl = n < len ? (flags | SLUICE_MSG_MORE) : flags;
        sluice_frame f = {.type = type, .stream_id = s->sid};
        if (message) {
            f.u.message.flags = fl;
            f.u.message.data = (sluice_bytes){data, n};
        } else {
            f.u.body = (sluice_bytes){data, n};
        }
        int rc = sluice_proto_link_send(l->proto, &f, NULL);
        if (rc < 0)
            return rc;
        rc = message ? sluice_proto_encode_message(&l->out, s->sid, fl, data, n)
                     : sluice_proto_encode_body(&l->out, s->sid, data, n);
        if (rc < 0) {
            link_fail(l, SLUICE_PROTO_E_INTERNAL, "output buffer overflow");
            return rc;
        }
        data += n;
        len -= n;
        if (!len)
            break;
    }
    queue_flush(l);
    return 0;
}

int wlink_send_body(wlink *l, stream *s, const uint8_t *data, size_t len)
{
    return send_data(l, s, SLUICE_FRAME_BODY, 0, data, len);
}

int wlink_send_message(wlink *l, stream *s, uint32_t flags, const uint8_t *data, size_t len)
{
    if (flags & (SLUICE_MSG_PING | SLUICE_MSG_PONG)) {
        sluice_frame f = {.type = SLUICE_FRAME_MESSAGE, .stream_id = s->sid};
        f.u.message.flags = flags;
        f.u.message.data = (sluice_bytes){data, len};
        return send_frame(l, &f, NULL);
    }
    return send_data(l, s, SLUICE_FRAME_MESSAGE, flags, data, len);
}

void wlink_send_close(wlink *l, stream *s, uint16_t code, const uint8_t *reason, size_t reason_len)
{
    sluice_frame f = {.type = SLUICE_FRAME_CLOSE, .stream_id = s->sid};
    f.u.close.code = code;
    f.u.close.reason = (sluice_bytes){reason, reason_len};
    f.u.close.has_reason = reason_len > 0;
    sluice_link_event ev;
    s->link = NULL;
    if (send_frame(l, &f, &ev) == 0)
        l->ops->capacity(l->owner, l);
}

int wlink_send_end(wlink *l, stream *s, const sluice_header *trailers, size_t n)
{
    sluice_frame f = {.type = SLUICE_FRAME_END, .stream_id = s->sid};
    f.u.trailers = (sluice_headers){trailers, n};
    return send_frame(l, &f, NULL);
}

int wlink_send_credit(wlink *l, stream *s, uint32_t n)
{
    sluice_frame f = {.type = SLUICE_FRAME_CREDIT, .stream_id = s->sid};
    f.u.credit = n;
    return send_frame(l, &f, NULL);
}

void wlink_cancel(wlink *l, stream *s, uint32_t reason)
{
    sluice_frame f = {.type = SLUICE_FRAME_CANCEL, .stream_id = s->sid};
    f.u.code.code = reason;
    sluice_link_event ev;
    s->link = NULL;
    if (send_frame(l, &f, &ev) == 0)
        l->ops->capacity(l->owner, l);
}

void wlink_drain(wlink *l, uint64_t timeout_ms)
{
    if (l->closing || sluice_proto_link_state(l->proto) != SLUICE_LINK_READY)
        return;
    sluice_frame f = {.type = SLUICE_FRAME_DRAIN};
    f.u.timeout_ms = timeout_ms;
    l->drained = true;
    if (send_frame(l, &f, NULL) == 0 && !l->closing)
        uv_timer_start(&l->hello_timer, on_drain_timeout, timeout_ms, 0);
}

/* ---- receiving -------------------------------------------------------- */

/* Compare without leaking where the first difference is. */
static bool token_ok(const char *want, sluice_bytes got)
{
    size_t n = strlen(want);
    unsigned diff = (unsigned)(n ^ got.len);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(uint8_t)want[i] ^ (i < got.len ? got.ptr[i] : 0u);
    return diff == 0;
}

static void on_hello(wlink *l, const sluice_hello *h)
{
    uv_timer_stop(&l->hello_timer);
    /* Clear-text TCP: the token is the only credential. TLS: the token
     * when the pool has one (else the client certificate vouched). */
    const char *token = l->ops->config(l->owner)->token;
    bool need = l->tcp && (!l->tls || token[0]);
    if (need && (!(h->has & SLUICE_HELLO_HAS_TOKEN) || !token[0] || !token_ok(token, h->token))) {
        slog(l->gw->log, LOG_WARN, "pool %s: %s worker from %s refused: missing or wrong token",
             l->name, l->tls ? "TLS" : "TCP", l->peer);
        link_fail(l, SLUICE_PROTO_E_AUTH, "missing or wrong token");
        return;
    }
    if (!l->peer_pid && (h->has & SLUICE_HELLO_HAS_PID) && h->pid <= INT32_MAX)
        l->peer_pid = (int)h->pid; /* TCP: the worker's own word */
    l->ops->hello(l->owner, l, h, l->peer_pid); /* sets worker_id and proc */
    const sluice_pool_config *cfg = l->ops->config(l->owner);
    const char *pname = l->name;
    sluice_frame f = {.type = SLUICE_FRAME_HELLO};
    sluice_hello *g = &f.u.hello;
    g->version = SLUICE_PROTO_VERSION;
    g->has = SLUICE_HELLO_HAS_WINDOW | SLUICE_HELLO_HAS_MAX_FRAME | SLUICE_HELLO_HAS_POOL |
             SLUICE_HELLO_HAS_SERVER;
    g->window = cfg->window;
    g->max_frame = cfg->max_frame;
    g->pool = (sluice_bytes){(const uint8_t *)pname, strlen(pname)};
    g->server = (sluice_bytes){(const uint8_t *)SLUICE_SERVER_NAME, strlen(SLUICE_SERVER_NAME)};
    if (l->worker_id >= 0) {
        g->has |= SLUICE_HELLO_HAS_WORKER_ID;
        g->worker_id = (uint64_t)l->worker_id;
    }
    if ((h->has & SLUICE_HELLO_HAS_WEBSOCKET) && h->websocket) {
        g->has |= SLUICE_HELLO_HAS_WEBSOCKET;
        g->websocket = true;
    }
    if (cfg->max_streams && cfg->max_streams < h->max_streams) {
        g->has |= SLUICE_HELLO_HAS_MAX_STREAMS;
        g->max_streams = cfg->max_streams;
    }
    if (send_frame(l, &f, NULL) < 0)
        return;
    uint32_t mf = sluice_proto_link_peer_max_frame(l->proto);
    l->body_chunk = SLUICE_PROTO_BODY_MAX(mf);
    if (l->body_chunk > 256 * 1024)
        l->body_chunk = 256 * 1024;
    l->ready = true;
    uint64_t iv = cfg->ping_interval_ms;
    if (l->tcp && iv) {
        l->last_rx_ms = uv_now(l->gw->loop);
        uv_timer_start(&l->ping_timer, on_ping_timer, iv, iv);
    }
    slog(l->gw->log, LOG_INFO, "pool %s: worker %lld (pid %d, %.*s) ready, %u streams",
         pname, (long long)l->worker_id, l->peer_pid, (int)h->lib.len, (const char *)h->lib.ptr,
         sluice_proto_link_max_streams(l->proto));
    l->ops->ready(l->owner, l);
}

static void handle_frame(wlink *l, const sluice_frame *f)
{
    sluice_link_event ev;
    int rc = sluice_proto_link_recv(l->proto, f, &ev);
    if (rc < 0) {
        link_fail(l, rc, sluice_frame_type_name((int)f->type));
        return;
    }
    if (ev.ignored)
        return;
    stream *s = ev.udata;
    if (ev.closed && s)
        s->link = NULL;
    switch (f->type) {
    case SLUICE_FRAME_HELLO:
        on_hello(l, &f->u.hello);
        return;
    case SLUICE_FRAME_RESPONSE:
        if (s)
            stream_on_response(s, &f->u.response);
        break;
    case SLUICE_FRAME_BODY:
        if (s)
            stream_on_body(s, f->u.body.ptr, f->u.body.len);
        break;
    case SLUICE_FRAME_END:
        if (s)
            stream_on_end(s, &f->u.trailers);
        break;
    case SLUICE_FRAME_CREDIT:
        if (s)
            stream_on_credit(s);
        break;
    case SLUICE_FRAME_LIMIT:
        if (s)
            stream_on_limit(s, f->u.max_body);
        break;
    case SLUICE_FRAME_RESET:
        if (s) {
            s->refused_by = l;
            stream_on_reset(s, f->u.code.code);
        }
        break;
    case SLUICE_FRAME_MESSAGE:
        if (s)
            stream_on_message(s, f->u.message.flags, f->u.message.data.ptr, f->u.message.data.len);
        break;
    case SLUICE_FRAME_CLOSE:
        if (s)
            stream_on_close(s, (uint16_t)f->u.close.code, f->u.close.reason.ptr, f->u.close.reason.len);
        break;
    case SLUICE_FRAME_PING: {
        sluice_frame p = {.type = SLUICE_FRAME_PONG};
        p.u.opaque = f->u.opaque;
        send_frame(l, &p, NULL);
        return;
    }
    case SLUICE_FRAME_PONG:
        return;
    case SLUICE_FRAME_RETIRE:
        slog(l->gw->log, LOG_INFO, "pool %s: worker %lld (pid %d) retires%s%.*s", l->name,
             (long long)l->worker_id, l->peer_pid, f->u.retire.has_reason ? ": " : "",
             (int)f->u.retire.reason.len, (const char *)f->u.retire.reason.ptr);
        l->ops->retire(l->owner, l);
        return;
    case SLUICE_FRAME_ERROR:
        slog(l->gw->log, LOG_WARN, "pool %s: worker %lld (pid %d) reported error %s: %.*s",
             l->name, (long long)l->worker_id, l->peer_pid,
             sluice_proto_strerror(sluice_proto_err_from_code(f->u.code.code)),
             (int)f->u.code.message.len, (const char *)f->u.code.message.ptr);
        link_fail(l, 0, "worker sent ERROR");
        return;
    default:
        return;
    }
    if (ev.closed && !l->closing)
        l->ops->capacity(l->owner, l);
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf)
{
    wlink *l = t->owner;
    if (nread < 0) {
        int fin = sluice_proto_decoder_finish(l->dec);
        link_fail(l, fin ? fin : (int)nread, nread == UV_EOF ? "connection closed" : "read failed");
        return;
    }
    l->last_rx_ms = uv_now(l->gw->loop);
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t left = (size_t)nread;
    while (left && !l->closing) {
        sluice_frame f;
        size_t used;
        int rc = sluice_proto_decoder_feed(l->dec, p, left, &used, &f);
        p += used;
        left -= used;
        if (rc < 0) {
            link_fail(l, rc, "bad frame");
            return;
        }
        if (rc == 0)
            break;
        handle_frame(l, &f);
    }
}
