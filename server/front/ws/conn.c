/* The WebSocket exchange: one accepted WebSocket, its transport and its
 * stream. Client frames are parsed (ws/ws.h) within the worker's credit and
 * forwarded as MESSAGE pieces; worker MESSAGE pieces become frames, credited
 * back once the client socket took them; pings, the close handshake,
 * keepalive and every RFC 6455 violation are handled here, never by the
 * worker (PROTOCOL.md 5.2). */
#include "front/ws/websocket.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/http1/fields.h"
#include "front/listener.h"
#include "ws/ws.h"

/* Client bytes kept between reads (a frame head cut by the read, or data
 * waiting for the worker's credit); beyond it the socket is not read. */
#define WS_IN_SIZE (16 * 1024)
/* Output bound: worker data is bounded by its window; control frames
 * (pongs) stop the reads beyond WS_OUT_HIGH. */
#define WS_OUT_MAX (64u << 20)
#define WS_OUT_HIGH (256 * 1024)
/* How long a close frame we sent waits for the client's. */
#define WS_CLOSE_WAIT_MS 5000
#define WS_TARGET_MAX 512

enum { WS_OPEN, WS_CLOSING, WS_DONE };

struct wsconn {
    front_conn base; /* first: the listener's view */
    gateway *gw;
    transport *tr; /* NULL until ws_start */
    stream *s;     /* NULL once the stream ended */
    ws_parser *parser;
    uv_timer_t timer; /* keepalive ping, or the close wait */
    int handles;
    bool listed, closed, reading, eof, started;
    int state;
    flush_node flush;

    /* input: the gateway's shared buffer during a read, or own_in */
    uint8_t *own_in;
    size_t own_cap;
    uint8_t *ibase;
    size_t istart, iend;

    sluice_buf out, wbuf;
    bool writing;
    uint64_t out_credit, wbuf_credit, unacked; /* worker bytes in out, in wbuf, written */
    bool out_in_msg; /* a worker message is in progress: continuation frames */
    int out_utf8;    /* UTF-8 state of the worker's text message */

    uint32_t worker_pings; /* pings the worker asked for, pongs owed to it */
    uint64_t last_in_ms;   /* loop time of the last client bytes */
    uint64_t ping_at_ms;   /* our keepalive ping is out since (0: none) */
    uint64_t close_due_ms;

    /* for the log and metrics */
    uint64_t start_us;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    unsigned close_code;
    int version;
    int64_t worker_id;
    char remote[48];
    char target[WS_TARGET_MAX];
    size_t target_len;
};

static const stream_ops ws_stream_ops;
static const transport_cb ws_transport_cb;
static const front_conn_ops ws_conn_ops;

static void ws_flush(flush_node *n);
static void process_input(wsconn *w);
static void update_reading(wsconn *w);
static void arm_timer(wsconn *w);

static uint64_t now_ms(const wsconn *w) { return uv_now(w->gw->loop); }

/* ---- handshake (HTTP/1.1) --------------------------------------------- */

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

/* Is `proto` among the subprotocols the client offered (one or more
 * Sec-WebSocket-Protocol fields, each a comma-separated list)? */
static bool offered(const stream *s, sluice_bytes proto)
{
    const sluice_headers *hs = &s->req.headers;
    for (size_t i = 0; i < hs->count; i++) {
        if (!name_is(hs->items[i].name, "sec-websocket-protocol"))
            continue;
        size_t pos = 0;
        sluice_bytes t;
        while (list_next(hs->items[i].value, &pos, &t))
            if (t.len == proto.len && !memcmp(t.ptr, proto.ptr, t.len))
                return true;
    }
    return false;
}

static int head_out(sluice_buf *b, const void *p, size_t n) { return sluice_buf_append(b, p, n); }
static int head_str(sluice_buf *b, const char *p) { return sluice_buf_append(b, p, strlen(p)); }

/* The 101 head: ours first, then the worker's fields but those that are
 * the gateway's business (framing, hop-by-hop, the handshake's own). */
static int build_101(gateway *gw, const stream *s, const sluice_response *r, sluice_buf *b)
{
    char accept[29];
    ws_accept_value((const char *)s->ws_key.ptr, s->ws_key.len, accept);
    bool has_server = false, has_date = false;
    int protos = 0;
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (!valid_name(h->name) || !valid_value(h->value))
            return -EINVAL;
        if (name_is(h->name, "sec-websocket-protocol")) {
            if (++protos > 1 || !offered(s, h->value))
                return -EINVAL; /* the client would fail the connection */
        }
        has_server |= name_is(h->name, "server");
        has_date |= name_is(h->name, "date");
    }
    int rc = head_str(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: ");
    rc |= head_out(b, accept, 28);
    rc |= head_str(b, "\r\n");
    if (!has_server)
        rc |= head_str(b, "Server: " SLUICE_SERVER_NAME "\r\n");
    if (!has_date) {
        size_t dlen;
        const char *d = gw_date_line(gw, &dlen);
        rc |= head_out(b, d, dlen);
    }
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (hop_by_hop(h->name) || name_is(h->name, "content-length") ||
            name_is(h->name, "sec-websocket-accept") || name_is(h->name, "sec-websocket-extensions"))
            continue;
        rc |= head_out(b, h->name.ptr, h->name.len);
        rc |= head_str(b, ": ");
        rc |= head_out(b, h->value.ptr, h->value.len);
        rc |= head_str(b, "\r\n");
    }
    rc |= head_str(b, "\r\n");
    return rc ? -ENOMEM : 0;
}

static void on_timer_closed(uv_handle_t *h);

wsconn *ws_accept_h1(gateway *gw, stream *s, const sluice_response *r, const char *remote, sluice_buf *head)
{
    if (!s->ws || r->body != SLUICE_BODY_NONE)
        return NULL;
    size_t mark = head->len;
    if (build_101(gw, s, r, head) < 0) {
        head->len = mark;
        return NULL;
    }
    wsconn *w = calloc(1, sizeof *w);
    if (!w || ws_parser_new(&w->parser, true, s->ws_max_message) < 0) {
        free(w);
        head->len = mark;
        return NULL;
    }
    w->gw = gw;
    w->s = s;
    w->base.ops = &ws_conn_ops;
    w->flush.fn = ws_flush;
    sluice_buf_init(&w->out, WS_OUT_MAX);
    sluice_buf_init(&w->wbuf, WS_OUT_MAX);
    uv_timer_init(gw->loop, &w->timer);
    w->timer.data = w;
    w->handles = 1;
    w->start_us = s->start_ms; /* stream start, microseconds */
    w->version = (int)s->req.version;
    w->worker_id = s->worker_id;
    w->last_in_ms = now_ms(w);
    snprintf(w->remote, sizeof w->remote, "%s", remote);
    w->target_len = s->req.target.len < WS_TARGET_MAX ? s->req.target.len : WS_TARGET_MAX;
    memcpy(w->target, s->req.target.ptr, w->target_len);
    /* the request's views point into the HTTP/1.1 head, which goes away */
    s->req.headers = (sluice_headers){NULL, 0};
    s->req.target = (sluice_bytes){(const uint8_t *)w->target, w->target_len};
    s->ws_key = (sluice_bytes){NULL, 0};
    s->status = 101;
    s->resp_started = true;
    s->ops = &ws_stream_ops;
    s->owner = w;
    stream_ws_count(s, 1, 0, 0, 0, 0);
    return w;
}

/* ---- ending ------------------------------------------------------------ */

/* The stream is over (its link already closed, or closed by the caller):
 * metrics, the access-log line, and the stream object back. */
static void finish_stream(wsconn *w, unsigned code)
{
    stream *s = w->s;
    if (!s)
        return;
    w->s = NULL;
    w->close_code = code;
    stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* no-op when the link closed it */
    stream_ws_count(s, -1, 0, 0, 0, 0);
    gateway *gw = w->gw;
    gw->requests_total++;
    if (sluice_log_access_enabled(gw->log)) {
        double ms = (double)(uv_hrtime() / 1000 - w->start_us) / 1000.0;
        sluice_access a = {
            .remote = w->remote,
            .method = "GET",
            .method_len = 3,
            .target = w->target,
            .target_len = w->target_len,
            .version = w->version,
            .status = 101,
            .bytes = w->bytes_out,
            .duration_ms = ms,
            .worker_id = w->worker_id,
            .websocket = true,
            .ws_msgs_in = w->msgs_in,
            .ws_msgs_out = w->msgs_out,
            .ws_bytes_in = w->bytes_in,
            .ws_bytes_out = w->bytes_out,
            .ws_close_code = code,
        };
        sluice_log_access(gw->log, &a);
    }
    stream_put(gw, s);
    gw_notify_finished(gw);
}

static void released(wsconn *w)
{
    if (--w->handles > 0)
        return;
    gateway *gw = w->gw;
    if (w->listed)
        listener_remove(gw, &w->base);
    ws_parser_free(w->parser);
    sluice_buf_close(&w->out);
    sluice_buf_close(&w->wbuf);
    free(w->own_in);
    free(w);
    gw_notify_finished(gw);
}

static void on_timer_closed(uv_handle_t *h) { released(h->data); }
static void on_transport_closed(transport *t) { released(t->owner); }

/* Close the connection now (idempotent); the stream, if any, ends with
 * CLOSE `code` to the worker. */
static void close_now(wsconn *w, unsigned code)
{
    if (w->closed)
        return;
    w->closed = true;
    if (w->s) {
        stream_send_close(w->s, (uint16_t)code, NULL, 0);
        finish_stream(w, code);
    }
    if (!w->started)
        return; /* the HTTP/1.1 connection still holds w: ws_start or ws_abort ends it */
    w->tr->ops->close(w->tr);
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

void ws_abort(wsconn *w)
{
    close_now(w, WS_CLOSE_ABNORMAL);
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

/* ---- output ------------------------------------------------------------ */

static void out(wsconn *w, const void *p, size_t n)
{
    if (w->closed)
        return;
    if (sluice_buf_append(&w->out, p, n) < 0) {
        slog(w->gw->log, LOG_ERROR, "%s: WebSocket output overflow; closing", w->remote);
        close_now(w, WS_CLOSE_INTERNAL);
        return;
    }
    gw_defer_flush(w->gw, &w->flush);
}

static void out_frame(wsconn *w, int op, bool fin, const uint8_t *data, size_t len)
{
    uint8_t head[WS_HEAD_MAX];
    size_t hn = ws_frame_head(head, op, fin, len, NULL);
    out(w, head, hn);
    if (len)
        out(w, data, len);
}

/* Send our close frame and wait for the client's (WS_CLOSING), or, when
 * the client's already came, close once it is written (WS_DONE). */
static void send_close(wsconn *w, unsigned code, const uint8_t *reason, size_t len, bool client_closed)
{
    if (w->state != WS_OPEN)
        return;
    uint8_t frame[4 + WS_REASON_MAX];
    if (code != WS_CLOSE_NO_STATUS && !ws_close_code_sendable(code))
        code = WS_CLOSE_INTERNAL;
    size_t n = ws_close_frame(frame, (uint16_t)code, reason, len);
    out(w, frame, n);
    if (client_closed) {
        w->state = WS_DONE;
    } else {
        w->state = WS_CLOSING;
        w->close_due_ms = now_ms(w) + WS_CLOSE_WAIT_MS;
    }
    if (!w->closed && w->started)
        arm_timer(w);
}

/* Credit worker bytes the client socket has taken, in batches. */
static void credit_written(wsconn *w, uint64_t n)
{
    stream *s = w->s;
    if (!n || !s || !s->link)
        return;
    w->unacked += n;
    uint32_t half = stream_config(s)->window / 2;
    if (w->unacked >= half || w->unacked >= 1u << 30) {
        uint32_t k = (uint32_t)w->unacked;
        w->unacked = 0;
        stream_grant(s, k);
    }
}

static void after_output(wsconn *w)
{
    if (w->state == WS_DONE && w->out.len == 0 && !w->writing)
        close_now(w, w->close_code ? w->close_code : WS_CLOSE_NORMAL);
    else if (!w->closed)
        update_reading(w); /* reads stopped for a full output may go on */
}

static void on_written(transport *t, int status)
{
    wsconn *w = t->owner;
    w->writing = false;
    uint64_t credit = w->wbuf_credit;
    w->wbuf_credit = 0;
    sluice_buf_reset(&w->wbuf);
    if (w->wbuf.cap > 64 * 1024)
        sluice_buf_close(&w->wbuf);
    if (w->closed)
        return;
    if (status < 0) {
        close_now(w, WS_CLOSE_ABNORMAL);
        return;
    }
    credit_written(w, credit);
    if (w->out.len)
        ws_flush(&w->flush);
    else
        after_output(w);
}

static void ws_flush(flush_node *n)
{
    wsconn *w = (wsconn *)((char *)n - offsetof(wsconn, flush));
    if (w->closed || w->writing || !w->tr)
        return;
    if (w->out.len == 0) {
        after_output(w);
        return;
    }
    int r = w->tr->ops->try_write(w->tr, (const char *)w->out.data, w->out.len);
    if (r == (int)w->out.len) {
        uint64_t credit = w->out_credit;
        w->out_credit = 0;
        sluice_buf_reset(&w->out);
        if (w->out.cap > 64 * 1024)
            sluice_buf_close(&w->out);
        credit_written(w, credit);
        after_output(w);
        return;
    }
    if (r < 0 && r != UV_EAGAIN) {
        close_now(w, WS_CLOSE_ABNORMAL);
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    sluice_buf tmp = w->wbuf;
    w->wbuf = w->out;
    w->out = tmp;
    sluice_buf_reset(&w->out);
    w->wbuf_credit = w->out_credit;
    w->out_credit = 0;
    w->writing = true;
    if (w->tr->ops->write(w->tr, (const char *)w->wbuf.data + done, w->wbuf.len - done) < 0) {
        w->writing = false;
        close_now(w, WS_CLOSE_ABNORMAL);
        return;
    }
    update_reading(w);
}

/* ---- the worker's side (stream operations) ----------------------------- */

static void on_message(stream *s, uint32_t flags, const uint8_t *data, size_t len)
{
    wsconn *w = s->owner;
    if (flags & SLUICE_MSG_PING) {
        if (w->state == WS_OPEN) {
            w->worker_pings++;
            out_frame(w, WS_OP_PING, true, data, len);
        }
        return;
    }
    if (w->state != WS_OPEN) { /* closing: dropped, but keep the worker going */
        if (w->tr)
            credit_written(w, len);
        else
            w->out_credit += len;
        return;
    }
    bool text = flags & SLUICE_MSG_TEXT, fin = !(flags & SLUICE_MSG_MORE);
    if (text) {
        w->out_utf8 = ws_utf8_step(w->out_utf8, data, len);
        if (w->out_utf8 < 0 || (fin && w->out_utf8 != 0)) {
            slog(w->gw->log, LOG_WARN, "%s: worker %lld sent a text message that is not UTF-8; closing 1011",
                 w->remote, (long long)w->worker_id);
            w->out_utf8 = 0;
            send_close(w, WS_CLOSE_INTERNAL, NULL, 0, false);
            stream_send_close(s, WS_CLOSE_INTERNAL, NULL, 0);
            finish_stream(w, WS_CLOSE_INTERNAL);
            return;
        }
    }
    int op = w->out_in_msg ? WS_OP_CONT : text ? WS_OP_TEXT : WS_OP_BINARY;
    out_frame(w, op, fin, data, len);
    w->out_in_msg = !fin;
    w->out_credit += len;
    w->bytes_out += len;
    if (fin)
        w->msgs_out++;
    stream_ws_count(s, 0, 0, fin, 0, len);
}

static void on_close(stream *s, uint16_t code, const uint8_t *reason, size_t len)
{
    wsconn *w = s->owner;
    send_close(w, code, reason, len, false);
    finish_stream(w, code);
}

/* The worker reset the stream or its link went away: close 1011. */
static void on_gone(wsconn *w)
{
    send_close(w, WS_CLOSE_INTERNAL, NULL, 0, false);
    finish_stream(w, WS_CLOSE_INTERNAL);
}

static void on_reset(stream *s, uint64_t code)
{
    (void)code;
    on_gone(s->owner);
}

static void on_lost(stream *s) { on_gone(s->owner); }

static void on_credit(stream *s)
{
    wsconn *w = s->owner;
    if (w->started && !w->closed)
        process_input(w);
}

static void on_limit(stream *s, uint64_t max)
{
    wsconn *w = s->owner;
    uint64_t ceiling = stream_config(s)->max_body_ceiling;
    ws_parser_set_max_message(w->parser, max < ceiling ? max : ceiling);
}

/* Not after 101: the link rejects RESPONSE, BODY and END on an open
 * WebSocket, and the stream was dispatched long ago. */
static void on_nothing(stream *s) { (void)s; }
static void on_response(stream *s, const sluice_response *r) { (void)s, (void)r; }
static void on_body(stream *s, const uint8_t *d, size_t n) { (void)s, (void)d, (void)n; }
static void on_end(stream *s, const sluice_headers *t) { (void)s, (void)t; }
static void on_unavailable(stream *s, int status) { (void)s, (void)status; }

static const stream_ops ws_stream_ops = {
    .dispatched = on_nothing,
    .response = on_response,
    .body = on_body,
    .end = on_end,
    .credit = on_credit,
    .limit = on_limit,
    .reset = on_reset,
    .lost = on_lost,
    .unavailable = on_unavailable,
    .message = on_message,
    .close = on_close,
};

/* ---- the client's side -------------------------------------------------- */

/* The client broke RFC 6455 (code 1002, 1007, 1009): close frame to it,
 * CLOSE to the worker. */
static void violation(wsconn *w, unsigned code)
{
    slog(w->gw->log, LOG_DEBUG, "%s: WebSocket closed %u (client protocol violation)", w->remote, code);
    if (w->s)
        stream_send_close(w->s, (uint16_t)code, NULL, 0);
    finish_stream(w, code);
    /* fail the connection (RFC 6455 7.1.7): our close frame, then the close */
    if (w->state == WS_OPEN)
        send_close(w, code, NULL, 0, true);
    w->state = WS_DONE;
    w->istart = w->iend; /* nothing after a violation is read */
}

static void on_event(wsconn *w, const ws_event *ev)
{
    stream *s = w->s;
    switch (ev->type) {
    case WS_EV_DATA:
        if (w->state != WS_OPEN || !s || !s->link)
            return;
        if (ev->len || ev->fin) {
            uint32_t flags = (ev->text ? SLUICE_MSG_TEXT : 0) | (ev->fin ? 0 : SLUICE_MSG_MORE);
            if (stream_send_message(s, flags, ev->data, ev->len) < 0) {
                on_gone(w);
                return;
            }
        }
        w->bytes_in += ev->len;
        if (ev->fin)
            w->msgs_in++;
        stream_ws_count(s, 0, ev->fin, 0, ev->len, 0);
        return;
    case WS_EV_PING:
        if (w->state == WS_OPEN)
            out_frame(w, WS_OP_PONG, true, ev->data, ev->len);
        return;
    case WS_EV_PONG:
        w->ping_at_ms = 0;
        if (w->worker_pings && s && s->link && w->state == WS_OPEN) {
            w->worker_pings--;
            stream_send_message(s, SLUICE_MSG_PONG, ev->data, ev->len);
        }
        return;
    case WS_EV_CLOSE:
        if (w->state == WS_OPEN) { /* the client closes: echo its code, tell the worker */
            if (s)
                stream_send_close(s, ev->code, ev->data, ev->len);
            finish_stream(w, ev->code);
            send_close(w, ev->code, NULL, 0, true);
        } else {
            w->state = WS_DONE; /* our close was answered */
        }
        w->istart = w->iend;
        gw_defer_flush(w->gw, &w->flush);
        return;
    }
}

/* Parse what was read, within the worker's credit. */
static void process_input(wsconn *w)
{
    while (!w->closed && w->istart < w->iend && w->state != WS_DONE) {
        size_t max = SIZE_MAX; /* closing: read and drop */
        if (w->state == WS_OPEN && w->s && w->s->link)
            max = stream_send_window(w->s);
        size_t used = 0;
        ws_event ev;
        int rc = ws_parser_feed(w->parser, w->ibase + w->istart, w->iend - w->istart, max, &used, &ev);
        w->istart += used;
        if (rc < 0) {
            violation(w, (unsigned)-rc);
            break;
        }
        if (rc == 0)
            break;
        on_event(w, &ev);
    }
    if (w->closed)
        return;
    /* keep what is left (a cut frame head, or data waiting for credit) */
    size_t left = w->iend - w->istart;
    if (w->state == WS_DONE)
        left = 0;
    if (left == 0) {
        free(w->own_in);
        w->own_in = NULL;
        w->own_cap = 0;
        w->ibase = NULL;
        w->istart = w->iend = 0;
    } else if (w->ibase != w->own_in) {
        w->own_cap = WS_IN_SIZE > left ? WS_IN_SIZE : left;
        w->own_in = malloc(w->own_cap);
        if (!w->own_in) {
            close_now(w, WS_CLOSE_INTERNAL);
            return;
        }
        memcpy(w->own_in, w->ibase + w->istart, left);
        w->ibase = w->own_in;
        w->istart = 0;
        w->iend = left;
    }
    update_reading(w);
    if (w->state == WS_DONE)
        gw_defer_flush(w->gw, &w->flush);
}

static void update_reading(wsconn *w)
{
    if (!w->tr || w->closed)
        return;
    bool want = !w->eof && w->state != WS_DONE && w->out.len + w->wbuf.len < WS_OUT_HIGH &&
                !(w->own_in && w->iend - w->istart >= w->own_cap);
    /* bytes waiting for the worker's credit: the rest stays in the kernel */
    if (w->own_in && w->iend > w->istart && w->state == WS_OPEN && w->s && w->s->link &&
        stream_send_window(w->s) == 0)
        want = false;
    transport_set_reading(w->tr, &w->reading, want);
}

static void alloc_cb(transport *t, uv_buf_t *buf)
{
    wsconn *w = t->owner;
    if (w->own_in) {
        if (w->istart > 0) {
            memmove(w->own_in, w->own_in + w->istart, w->iend - w->istart);
            w->iend -= w->istart;
            w->istart = 0;
        }
        buf->base = (char *)w->own_in + w->iend;
        buf->len = w->own_cap - w->iend;
    } else {
        buf->base = (char *)w->gw->shared_in;
        buf->len = w->gw->shared_in_size;
    }
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf)
{
    wsconn *w = t->owner;
    if (nread == 0 || w->closed)
        return;
    if (nread < 0) { /* the client went away, with or without a close frame */
        w->eof = true;
        close_now(w, w->state == WS_OPEN ? WS_CLOSE_ABNORMAL : w->close_code);
        return;
    }
    w->last_in_ms = now_ms(w);
    if (buf->base == (char *)w->gw->shared_in) {
        w->ibase = (uint8_t *)buf->base;
        w->istart = 0;
        w->iend = (size_t)nread;
    } else {
        w->iend += (size_t)nread;
    }
    process_input(w);
}

static const transport_cb ws_transport_cb = {
    .alloc = alloc_cb,
    .read = on_read,
    .written = on_written,
    .closed = on_transport_closed,
};

/* ---- keepalive and the close wait ---------------------------------------- */

/* The client closed or reset its end (FIN or RST received), whatever unread
 * bytes wait before it. */
static bool peer_gone(const wsconn *w)
{
    uv_os_fd_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (uv_fileno((const uv_handle_t *)&w->tr->tcp, &fd) != 0 ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return false;
    return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE;
}

static void on_timer(uv_timer_t *t)
{
    wsconn *w = t->data;
    if (w->closed)
        return;
    uint64_t now = now_ms(w);
    if (w->state != WS_OPEN) {
        if (now >= w->close_due_ms) /* no close frame back: just close */
            close_now(w, w->close_code);
        else
            arm_timer(w);
        return;
    }
    uint64_t every = w->gw->cfg->ws_ping_interval_ms;
    if (w->own_in && w->iend > w->istart && w->s && w->s->link && stream_send_window(w->s) == 0) {
        /* not reading because the worker takes nothing: the client is
         * waiting on it, not idle, and could not answer a ping we read;
         * whether it is still there, the socket's state tells */
        if (peer_gone(w)) {
            close_now(w, WS_CLOSE_ABNORMAL);
            return;
        }
        w->last_in_ms = now;
        w->ping_at_ms = 0;
        arm_timer(w);
        return;
    }
    if (w->ping_at_ms && w->last_in_ms > w->ping_at_ms)
        w->ping_at_ms = 0; /* anything from the client will do */
    if (w->ping_at_ms && now - w->ping_at_ms >= every) {
        slog(w->gw->log, LOG_INFO, "%s: WebSocket client did not answer a ping in %llu ms; closing", w->remote,
             (unsigned long long)every);
        close_now(w, WS_CLOSE_ABNORMAL);
        return;
    }
    if (!w->ping_at_ms && now - w->last_in_ms >= every) {
        w->ping_at_ms = now;
        out_frame(w, WS_OP_PING, true, NULL, 0);
    }
    arm_timer(w);
}

static void arm_timer(wsconn *w)
{
    uint64_t now = now_ms(w), due;
    if (w->state != WS_OPEN) {
        due = w->close_due_ms;
    } else {
        uint64_t every = w->gw->cfg->ws_ping_interval_ms;
        if (!every) {
            uv_timer_stop(&w->timer);
            return;
        }
        due = w->ping_at_ms ? w->ping_at_ms + every : w->last_in_ms + every;
    }
    uv_timer_start(&w->timer, on_timer, due > now ? due - now : 1, 0);
}

/* ---- taking the connection over ----------------------------------------- */

void ws_start(wsconn *w, transport *t, const uint8_t *data, size_t len)
{
    w->tr = t;
    w->started = true;
    w->base.tcp = &t->tcp;
    w->handles++;
    w->listed = true;
    listener_add(w->gw, &w->base);
    transport_adopt(t, &ws_transport_cb, w);
    w->last_in_ms = now_ms(w);
    if (w->closed) { /* ended before it started */
        w->tr->ops->close(w->tr);
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
        return;
    }
    if (len) {
        w->own_cap = WS_IN_SIZE > len ? WS_IN_SIZE : len;
        w->own_in = malloc(w->own_cap);
        if (!w->own_in) {
            close_now(w, WS_CLOSE_INTERNAL);
            return;
        }
        memcpy(w->own_in, data, len);
        w->ibase = w->own_in;
        w->iend = len;
    }
    arm_timer(w);
    /* the credit for messages written before the transport came */
    gw_defer_flush(w->gw, &w->flush);
    process_input(w);
    if (!w->closed)
        update_reading(w);
}

/* ---- the listener's view ------------------------------------------------- */

static bool conn_active(const front_conn *fc) { return !((const wsconn *)fc)->closed; }

/* A graceful stop lets WebSockets run until its timeout (close then). */
static void conn_close_idle(front_conn *fc) { (void)fc; }

/* Close now: the client gets close 1001 (going away), the worker CLOSE 1001. */
static void conn_close(front_conn *fc, uint32_t reason)
{
    (void)reason;
    wsconn *w = (wsconn *)fc;
    if (w->closed)
        return;
    if (w->s)
        stream_send_close(w->s, WS_CLOSE_GOING_AWAY, NULL, 0);
    finish_stream(w, WS_CLOSE_GOING_AWAY);
    send_close(w, WS_CLOSE_GOING_AWAY, NULL, 0, true);
    ws_flush(&w->flush);
    close_now(w, WS_CLOSE_GOING_AWAY);
}

static const front_conn_ops ws_conn_ops = {
    .active = conn_active,
    .close_idle = conn_close_idle,
    .close = conn_close,
    .reloaded = NULL,
};
