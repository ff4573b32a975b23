/* WebSockets over HTTP/1.1 (RFC 6455): the opening handshake's checks and
 * the 101, then the connection itself -- after the 101 the transport
 * carries one WebSocket session (session.h): client bytes are fed to it
 * (what it does not take waits here, and the socket is not read), its
 * frames are written, and what the client took is reported back, which
 * is how the worker gets its credit. */
#include "front/ws/websocket.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/http1/fields.h"
#include "front/listener.h"
#include "front/ws/session.h"
#include "ws/ws.h"

/* Client bytes kept between reads (data the session did not take yet). */
#define WS_IN_SIZE (16 * 1024)
/* Frames waiting for the socket: the session bounds them (the worker's
 * window, and no input taken beyond its output bound). */
#define WS_OUT_MAX (64u << 20)

struct wsconn {
    front_conn base; /* first: the listener's view */
    gateway *gw;
    transport *tr; /* NULL until ws_start */
    ws_session *ws;
    bool listed, closed, reading, eof, ending;
    flush_node flush;

    /* input: the gateway's shared buffer during a read, or own_in */
    uint8_t *own_in;
    size_t own_cap;
    uint8_t *ibase;
    size_t istart, iend;

    sluice_buf out, wbuf;
    bool writing;
};

static const transport_cb ws_transport_cb;
static const front_conn_ops ws_conn_ops;
static const ws_carrier h1_carrier;

static void ws_flush(flush_node *n);
static void update_reading(wsconn *c);

/* ---- handshake ----------------------------------------------------------- */

int ws_h1_check(stream *s, bool upgrade, bool conn_upgrade, bool has_body)
{
    if (!upgrade || !conn_upgrade)
        return -1;
    const sluice_headers *hs = &s->req.headers;
    sluice_bytes key = {NULL, 0}, version = {NULL, 0};
    int keys = 0, versions = 0;
    for (size_t i = 0; i < hs->count; i++) {
        const sluice_header *h = &hs->items[i];
        if (name_is(h->name, "sec-websocket-key")) {
            key = h->value;
            keys++;
        } else if (name_is(h->name, "sec-websocket-version")) {
            version = h->value;
            versions++;
        }
    }
    bool get = s->req.method.len == 3 && !memcmp(s->req.method.ptr, "GET", 3);
    if (!get || s->req.version != 11 || has_body || versions != 1)
        return 400;
    if (!(version.len == 2 && !memcmp(version.ptr, "13", 2)))
        return 426; /* RFC 6455 4.4: with the version we speak */
    if (keys != 1 || !ws_key_valid((const char *)key.ptr, key.len))
        return 400;
    s->ws_offer = true;
    s->ws_key = key;
    return 0;
}

static int head_add(void *ctx, sluice_bytes name, sluice_bytes value)
{
    sluice_buf *b = ctx;
    int rc = sluice_buf_append(b, name.ptr, name.len);
    rc |= sluice_buf_append(b, ": ", 2);
    rc |= sluice_buf_append(b, value.ptr, value.len);
    rc |= sluice_buf_append(b, "\r\n", 2);
    return rc ? -ENOMEM : 0;
}

static int head_str(sluice_buf *b, const char *p) { return sluice_buf_append(b, p, strlen(p)); }

/* The 101 head: ours first, then the worker's fields but those that are
 * the gateway's business. */
static int build_101(gateway *gw, const stream *s, const sluice_response *r, sluice_buf *b)
{
    bool has_server = false, has_date = false;
    for (size_t i = 0; i < r->headers.count; i++) {
        has_server |= name_is(r->headers.items[i].name, "server");
        has_date |= name_is(r->headers.items[i].name, "date");
    }
    char accept[29];
    ws_accept_value((const char *)s->ws_key.ptr, s->ws_key.len, accept);
    int rc = head_str(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: ");
    rc |= head_str(b, accept);
    rc |= head_str(b, "\r\n");
    if (!has_server)
        rc |= head_str(b, "Server: " SLUICE_SERVER_NAME "\r\n");
    if (!has_date) {
        size_t dlen;
        const char *d = gw_date_line(gw, &dlen);
        rc |= sluice_buf_append(b, d, dlen);
    }
    if (rc)
        return -ENOMEM;
    if (ws_response_fields(s, r, head_add, b) < 0)
        return -EINVAL;
    return head_str(b, "\r\n") ? -ENOMEM : 0;
}

wsconn *ws_accept_h1(gateway *gw, stream *s, const sluice_response *r, const char *remote, sluice_buf *head)
{
    if (!s->ws || r->body != SLUICE_BODY_NONE)
        return NULL;
    size_t mark = head->len;
    wsconn *c = NULL;
    if (build_101(gw, s, r, head) < 0 || !(c = calloc(1, sizeof *c))) {
        head->len = mark;
        return NULL;
    }
    c->ws = ws_session_accept(gw, s, remote);
    if (!c->ws) {
        free(c);
        head->len = mark;
        return NULL;
    }
    c->gw = gw;
    c->base.ops = &ws_conn_ops;
    c->flush.fn = ws_flush;
    sluice_buf_init(&c->out, WS_OUT_MAX);
    sluice_buf_init(&c->wbuf, WS_OUT_MAX);
    return c;
}

void ws_abort(wsconn *c)
{
    ws_session_release(c->ws, WS_CLOSE_ABNORMAL);
    sluice_buf_close(&c->out);
    sluice_buf_close(&c->wbuf);
    free(c);
}

/* ---- the connection ------------------------------------------------------ */

static void on_transport_closed(transport *t)
{
    wsconn *c = t->owner;
    gateway *gw = c->gw;
    ws_session_release(c->ws, gw->stopping ? WS_CLOSE_GOING_AWAY : WS_CLOSE_ABNORMAL);
    if (c->listed)
        listener_remove(gw, &c->base);
    sluice_buf_close(&c->out);
    sluice_buf_close(&c->wbuf);
    free(c->own_in);
    free(c);
    gw_notify_finished(gw);
}

static void close_now(wsconn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    c->tr->ops->close(c->tr);
}

/* Keep what the session did not take, and read only when it took all. */
static void feed(wsconn *c)
{
    if (c->closed)
        return;
    size_t avail = c->iend - c->istart;
    if (avail)
        c->istart += ws_session_input(c->ws, c->ibase + c->istart, avail);
    if (c->closed)
        return;
    size_t left = c->iend - c->istart;
    if (left == 0) {
        free(c->own_in);
        c->own_in = NULL;
        c->own_cap = 0;
        c->ibase = NULL;
        c->istart = c->iend = 0;
    } else if (c->ibase != c->own_in) {
        c->own_cap = WS_IN_SIZE > left ? WS_IN_SIZE : left;
        c->own_in = malloc(c->own_cap);
        if (!c->own_in) {
            close_now(c);
            return;
        }
        memcpy(c->own_in, c->ibase + c->istart, left);
        c->ibase = c->own_in;
        c->istart = 0;
        c->iend = left;
    }
    update_reading(c);
}

static void update_reading(wsconn *c)
{
    if (!c->tr || c->closed)
        return;
    /* bytes left over wait for the session (credit, output): the rest
     * stays in the kernel, which slows the client */
    bool want = !c->eof && !c->ending && c->iend == c->istart;
    transport_set_reading(c->tr, &c->reading, want);
}

static void alloc_cb(transport *t, uv_buf_t *buf)
{
    wsconn *c = t->owner;
    if (c->own_in) { /* not reading while bytes are left; kept for safety */
        buf->base = (char *)c->own_in + c->iend;
        buf->len = c->own_cap - c->iend;
    } else {
        buf->base = (char *)c->gw->shared_in;
        buf->len = c->gw->shared_in_size;
    }
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf)
{
    wsconn *c = t->owner;
    if (nread == 0 || c->closed)
        return;
    if (nread < 0) { /* the client's end: the session says whether anything is left to write */
        c->eof = true;
        ws_session_eof(c->ws);
        update_reading(c);
        return;
    }
    if (buf->base == (char *)c->gw->shared_in) {
        c->ibase = (uint8_t *)buf->base;
        c->istart = 0;
        c->iend = (size_t)nread;
    } else {
        c->iend += (size_t)nread;
    }
    feed(c);
}

static void after_output(wsconn *c)
{
    if (c->ending && c->out.len == 0 && !c->writing)
        close_now(c);
}

static void on_written(transport *t, int status)
{
    wsconn *c = t->owner;
    c->writing = false;
    size_t n = c->wbuf.len;
    sluice_buf_reset(&c->wbuf);
    if (c->wbuf.cap > 64 * 1024)
        sluice_buf_close(&c->wbuf);
    if (c->closed)
        return;
    if (status < 0) {
        ws_session_eof(c->ws);
        close_now(c);
        return;
    }
    ws_session_written(c->ws, n);
    if (c->out.len)
        ws_flush(&c->flush);
    else
        after_output(c);
}

static void ws_flush(flush_node *fn)
{
    wsconn *c = (wsconn *)((char *)fn - offsetof(wsconn, flush));
    if (c->closed || c->writing || !c->tr)
        return;
    if (c->out.len == 0) {
        after_output(c);
        return;
    }
    int r = c->tr->ops->try_write(c->tr, (const char *)c->out.data, c->out.len);
    if (r < 0 && r != UV_EAGAIN) {
        ws_session_eof(c->ws);
        close_now(c);
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    if (done == c->out.len) {
        sluice_buf_reset(&c->out);
        if (c->out.cap > 64 * 1024)
            sluice_buf_close(&c->out);
        ws_session_written(c->ws, done);
        after_output(c);
        return;
    }
    /* the rest leaves from wbuf; new frames gather in out */
    sluice_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    sluice_buf_reset(&c->out);
    sluice_buf_consume(&c->wbuf, done);
    if (done)
        ws_session_written(c->ws, done);
    c->writing = true;
    if (c->tr->ops->write(c->tr, (const char *)c->wbuf.data, c->wbuf.len) < 0) {
        c->writing = false;
        ws_session_eof(c->ws);
        close_now(c);
    }
}

/* ---- the carrier ---------------------------------------------------------- */

static void carrier_out(void *cx, const uint8_t *p, size_t n)
{
    wsconn *c = cx;
    if (c->closed)
        return;
    if (sluice_buf_append(&c->out, p, n) < 0) {
        slog(c->gw->log, LOG_ERROR, "%s: WebSocket output overflow; closing", c->tr->peer);
        ws_session_eof(c->ws);
        close_now(c);
        return;
    }
    gw_defer_flush(c->gw, &c->flush);
}

static void carrier_resume(void *cx) { feed(cx); }

static void carrier_finish(void *cx, bool clean)
{
    wsconn *c = cx;
    c->ending = true;
    if (!clean) {
        close_now(c);
        return;
    }
    gw_defer_flush(c->gw, &c->flush); /* closes once written */
    update_reading(c);
}

/* The client closed or reset its end (FIN or RST received), whatever unread
 * bytes wait before it. */
static bool carrier_gone(void *cx)
{
    wsconn *c = cx;
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (uv_fileno((const uv_handle_t *)&c->tr->tcp, &fd) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return false;
    return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE;
}

static const ws_carrier h1_carrier = {
    .out = carrier_out,
    .resume = carrier_resume,
    .finish = carrier_finish,
    .gone = carrier_gone,
};

static const transport_cb ws_transport_cb = {
    .alloc = alloc_cb,
    .read = on_read,
    .written = on_written,
    .closed = on_transport_closed,
};

void ws_start(wsconn *c, transport *t, const uint8_t *data, size_t len)
{
    c->tr = t;
    c->base.tcp = &t->tcp;
    c->listed = true;
    listener_add(c->gw, &c->base);
    transport_adopt(t, &ws_transport_cb, c);
    if (len) {
        c->own_cap = WS_IN_SIZE > len ? WS_IN_SIZE : len;
        c->own_in = malloc(c->own_cap);
        if (!c->own_in) {
            close_now(c);
            return;
        }
        memcpy(c->own_in, data, len);
        c->ibase = c->own_in;
        c->iend = len;
    }
    ws_session_start(c->ws, &h1_carrier, c);
    feed(c);
}

/* ---- the listener's view --------------------------------------------------- */

static bool conn_active(const front_conn *fc) { return !((const wsconn *)fc)->closed; }

/* A graceful stop lets WebSockets run until its timeout (close then). */
static void conn_close_idle(front_conn *fc) { (void)fc; }

/* Close now: the client gets close 1001 (going away), the worker CLOSE 1001. */
static void conn_close(front_conn *fc, uint32_t reason)
{
    (void)reason;
    wsconn *c = (wsconn *)fc;
    if (c->closed)
        return;
    ws_session_going_away(c->ws);
    ws_flush(&c->flush); /* the close frame, if the socket takes it */
    close_now(c);
}

static const front_conn_ops ws_conn_ops = {
    .active = conn_active,
    .close_idle = conn_close_idle,
    .close = conn_close,
    .reloaded = NULL,
};
