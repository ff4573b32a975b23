/* A WebSocket session (session.h): client frames parsed (ws/ws.h) within
 * the worker's credit and forwarded as MESSAGE pieces; worker MESSAGE
 * pieces framed, and credited back once the client took them; pings,
 * keepalive, the close handshake and every RFC 6455 violation handled
 * here, never by the worker (PROTOCOL.md 5.2). Whatever carries the bytes
 * (HTTP/1.1 transport, HTTP/2 stream) is behind ws_carrier. */
#include "front/ws/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/http1/fields.h"
#include "ws/ws.h"

/* Output not yet taken by the client beyond which client input is not
 * taken either (pongs for a ping flood wait behind it). Worker data is
 * bounded by its window anyway. */
#define WS_OUT_HIGH (256 * 1024)
/* Output queued before the carrier is there (the 101 being written):
 * the worker's window bounds it; this is the backstop. */
#define WS_PRE_MAX (64u << 20)
/* How long a close frame we sent waits for the client's. */
#define WS_CLOSE_WAIT_MS 5000
#define WS_TARGET_MAX 512
/* Frame boundaries remembered to credit worker bytes once written;
 * beyond, the last entries merge (credit then comes a little later). */
#define WS_RING 32

enum { WS_OPEN, WS_CLOSING, WS_DONE };

struct ws_session {
    gateway *gw;
    stream *s; /* NULL once the stream ended */
    ws_parser *parser;
    uv_timer_t timer; /* keepalive ping, or the close wait */
    const ws_carrier *carrier;
    void *cx;
    sluice_buf pre; /* output before the carrier came */
    int state;
    bool finished; /* carrier->finish called */
    bool stalled;  /* input was left untaken: the carrier waits for resume */
    bool in_input; /* inside ws_session_input: no resume from within */
    unsigned close_code;

    /* output accounting: framed bytes queued and taken, worker payload per frame */
    uint64_t out_total, written_total;
    struct {
        uint64_t end, payload;
    } ring[WS_RING];
    unsigned rhead, rcount;
    uint64_t unacked; /* payload written, not yet credited */

    bool out_in_msg; /* a worker message is in progress: continuation frames */
    int out_utf8;    /* UTF-8 state of the worker's text message */
    uint32_t worker_pings;
    uint64_t last_in_ms, ping_at_ms, close_due_ms;

    /* for the log and metrics */
    uint64_t start_us;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    int version;
    int64_t worker_id;
    char remote[48];
    char target[WS_TARGET_MAX];
    size_t target_len;
};

static const stream_ops ws_stream_ops;
static void arm_timer(ws_session *w);

static uint64_t now_ms(const ws_session *w) { return uv_now(w->gw->loop); }

/* ---- the 101 ----------------------------------------------------------- */

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

int ws_response_fields(const stream *s, const sluice_response *r,
                       int (*emit)(void *ctx, sluice_bytes name, sluice_bytes value), void *ctx)
{
    int protos = 0;
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (!valid_name(h->name) || !valid_value(h->value))
            return -EINVAL;
        if (name_is(h->name, "sec-websocket-protocol") && (++protos > 1 || !offered(s, h->value)))
            return -EINVAL; /* the client would fail the connection */
    }
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (hop_by_hop(h->name) || name_is(h->name, "content-length") ||
            name_is(h->name, "sec-websocket-accept") || name_is(h->name, "sec-websocket-extensions"))
            continue;
        if (emit(ctx, h->name, h->value) < 0)
            return -ENOMEM;
    }
    return 0;
}

ws_session *ws_session_accept(gateway *gw, stream *s, const char *remote)
{
    ws_session *w = calloc(1, sizeof *w);
    if (!w || ws_parser_new(&w->parser, true, s->ws_max_message) < 0) {
        free(w);
        return NULL;
    }
    w->gw = gw;
    w->s = s;
    sluice_buf_init(&w->pre, WS_PRE_MAX);
    uv_timer_init(gw->loop, &w->timer);
    w->timer.data = w;
    w->start_us = s->start_ms; /* stream start, microseconds */
    w->version = (int)s->req.version;
    w->worker_id = s->worker_id;
    w->last_in_ms = now_ms(w);
    snprintf(w->remote, sizeof w->remote, "%s", remote);
    w->target_len = s->req.target.len < WS_TARGET_MAX ? s->req.target.len : WS_TARGET_MAX;
    memcpy(w->target, s->req.target.ptr, w->target_len);
    /* the request's views point into the front end's head, which goes away */
    s->req.headers = (sluice_headers){NULL, 0};
    s->req.target = (sluice_bytes){(const uint8_t *)w->target, w->target_len};
    s->ws_key = (sluice_bytes){NULL, 0};
    s->status = 101;
    s->resp_started = true;
    s->ops = &ws_stream_ops;
    s->owner = w;
    stream_ws_count(s, 1, 0, 0, 0, 0);
    gw->requests_total++; /* the 101: a response, as the pool counts it */
    return w;
}

/* ---- ending ------------------------------------------------------------ */

/* The stream is over (its link already closed, or closed by the caller):
 * metrics, the access-log line, and the stream object back. */
static void finish_stream(ws_session *w, unsigned code)
{
    stream *s = w->s;
    if (!s)
        return;
    w->s = NULL;
    w->close_code = code;
    stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* no-op when the link closed it */
    stream_ws_count(s, -1, 0, 0, 0, 0);
    gateway *gw = w->gw;
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

static void finish(ws_session *w, bool clean)
{
    if (w->finished)
        return;
    w->finished = true;
    w->state = WS_DONE;
    uv_timer_stop(&w->timer);
    if (w->carrier)
        w->carrier->finish(w->cx, clean);
}

/* End now: the stream, if open, gets CLOSE `code`; the carrier closes. */
static void close_now(ws_session *w, unsigned code)
{
    if (w->s) {
        stream_send_close(w->s, (uint16_t)code, NULL, 0);
        finish_stream(w, code);
    }
    finish(w, false);
}

/* Our close frame, and its handshake, are done once it is written. */
static void maybe_finish(ws_session *w)
{
    if (w->state == WS_DONE && !w->finished && w->carrier && w->out_total == w->written_total)
        finish(w, true);
}

static void on_timer_closed(uv_handle_t *h)
{
    ws_session *w = h->data;
    gateway *gw = w->gw;
    ws_parser_free(w->parser);
    sluice_buf_close(&w->pre);
    free(w);
    gw_notify_finished(gw);
}

void ws_session_release(ws_session *w, unsigned code)
{
    w->carrier = NULL;
    if (w->s) {
        stream_send_close(w->s, (uint16_t)code, NULL, 0);
        finish_stream(w, code);
    }
    w->finished = true;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

/* ---- output ------------------------------------------------------------ */

static void out(ws_session *w, const uint8_t *p, size_t n)
{
    if (w->finished || !n)
        return;
    w->out_total += n;
    if (w->carrier) {
        w->carrier->out(w->cx, p, n);
    } else if (sluice_buf_append(&w->pre, p, n) < 0) {
        slog(w->gw->log, LOG_ERROR, "%s: WebSocket output overflow; closing", w->remote);
        close_now(w, WS_CLOSE_INTERNAL);
    }
}

/* A frame; `payload` of its bytes are worker message bytes, credited back
 * once the whole frame was taken. */
static void out_frame(ws_session *w, int op, bool fin, const uint8_t *data, size_t len, size_t payload)
{
    uint8_t head[WS_HEAD_MAX];
    size_t hn = ws_frame_head(head, op, fin, len, NULL);
    out(w, head, hn);
    out(w, data, len);
    if (!payload || w->finished)
        return;
    if (w->rcount == WS_RING) { /* merge into the last: credited when it is done */
        unsigned last = (w->rhead + WS_RING - 1) % WS_RING;
        w->ring[last].end = w->out_total;
        w->ring[last].payload += payload;
        return;
    }
    unsigned i = (w->rhead + w->rcount) % WS_RING;
    w->ring[i].end = w->out_total;
    w->ring[i].payload = payload;
    w->rcount++;
}

/* Credit worker bytes the client has taken, in batches. */
static void credit_written(ws_session *w, uint64_t n) { stream_credit_written(w->s, &w->unacked, n); }

/* Input held back for the worker's credit: with the stream gone it is
 * read (and dropped) again, so the client's close frame is seen. */
static void unstall(ws_session *w)
{
    if (w->stalled && !w->in_input && w->carrier && !w->finished)
        w->carrier->resume(w->cx);
}

void ws_session_written(ws_session *w, uint64_t n)
{
    bool was_high = w->out_total - w->written_total >= WS_OUT_HIGH;
    w->written_total += n;
    uint64_t credit = 0;
    while (w->rcount && w->ring[w->rhead].end <= w->written_total) {
        credit += w->ring[w->rhead].payload;
        w->rhead = (w->rhead + 1) % WS_RING;
        w->rcount--;
    }
    credit_written(w, credit);
    maybe_finish(w);
    if (was_high && w->out_total - w->written_total < WS_OUT_HIGH)
        unstall(w);
}

/* Send our close frame and wait for the client's (WS_CLOSING), or, when
 * the client's already came, finish once it is written (WS_DONE). */
static void send_close(ws_session *w, unsigned code, const uint8_t *reason, size_t len, bool client_closed)
{
    if (w->state != WS_OPEN)
        return;
    uint8_t frame[4 + WS_REASON_MAX];
    size_t n = ws_close_frame(frame, (uint16_t)code, reason, len);
    out(w, frame, n);
    if (client_closed) {
        w->state = WS_DONE;
        maybe_finish(w);
    } else {
        w->state = WS_CLOSING;
        w->close_due_ms = now_ms(w) + WS_CLOSE_WAIT_MS;
        if (w->carrier && !w->finished)
            arm_timer(w);
    }
}

/* ---- the worker's side (stream operations) ----------------------------- */

static void on_message(stream *s, uint32_t flags, const uint8_t *data, size_t len)
{
    ws_session *w = s->owner;
    if (flags & SLUICE_MSG_PING) {
        if (w->state == WS_OPEN) {
            w->worker_pings++;
            out_frame(w, WS_OP_PING, true, data, len, 0);
        }
        return;
    }
    if (w->state != WS_OPEN) { /* closing: dropped, but keep the worker going */
        credit_written(w, len);
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
    out_frame(w, op, fin, data, len, len);
    w->out_in_msg = !fin;
    w->bytes_out += len;
    if (fin)
        w->msgs_out++;
    stream_ws_count(s, 0, 0, fin, 0, len);
}

static void on_close(stream *s, uint16_t code, const uint8_t *reason, size_t len)
{
    ws_session *w = s->owner;
    send_close(w, code, reason, len, false);
    finish_stream(w, code);
    unstall(w);
}

/* The worker reset the stream or its link went away: close 1011. */
static void on_gone(ws_session *w)
{
    send_close(w, WS_CLOSE_INTERNAL, NULL, 0, false);
    finish_stream(w, WS_CLOSE_INTERNAL);
    unstall(w);
}

static void on_reset(stream *s, uint64_t code)
{
    (void)code;
    on_gone(s->owner);
}

static void on_lost(stream *s) { on_gone(s->owner); }

static void on_credit(stream *s) { unstall(s->owner); }

static void on_limit(stream *s, uint64_t max)
{
    ws_session *w = s->owner;
    stream_limit(s, max);
    ws_parser_set_max_message(w->parser, s->ws_max_message);
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

/* The client broke RFC 6455 (1002, 1007, 1009): fail the connection (RFC
 * 6455 7.1.7): our close frame, then the end; CLOSE to the worker. */
static void violation(ws_session *w, unsigned code)
{
    slog(w->gw->log, LOG_DEBUG, "%s: WebSocket closed %u (client protocol violation)", w->remote, code);
    if (w->s)
        stream_send_close(w->s, (uint16_t)code, NULL, 0);
    finish_stream(w, code);
    if (w->state == WS_OPEN)
        send_close(w, code, NULL, 0, true);
    w->state = WS_DONE;
    maybe_finish(w);
}

static void on_event(ws_session *w, const ws_event *ev)
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
            out_frame(w, WS_OP_PONG, true, ev->data, ev->len, 0);
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
            send_close(w, ev->code, ev->data, ev->len, true); /* echoed, reason too, as most servers do */
        } else {
            w->state = WS_DONE; /* our close was answered */
            maybe_finish(w);
        }
        return;
    }
}

size_t ws_session_input(ws_session *w, uint8_t *data, size_t len)
{
    if (len)
        w->last_in_ms = now_ms(w);
    w->in_input = true;
    size_t off = 0;
    while (off < len && !w->finished && w->state != WS_DONE) {
        if (w->state == WS_OPEN && w->out_total - w->written_total >= WS_OUT_HIGH)
            break; /* the client does not read: nor are its pings answered */
        size_t max = SIZE_MAX; /* closing: read and drop */
        if (w->state == WS_OPEN && w->s && w->s->link)
            max = stream_send_window(w->s);
        size_t used = 0;
        ws_event ev;
        int rc = ws_parser_feed(w->parser, data + off, len - off, max, &used, &ev);
        off += used;
        if (rc < 0) {
            violation(w, (unsigned)-rc);
            break;
        }
        if (rc == 0)
            break;
        on_event(w, &ev);
    }
    if (w->finished || w->state == WS_DONE)
        off = len; /* nothing after the end is read */
    w->stalled = off < len;
    w->in_input = false;
    return off;
}

void ws_session_eof(ws_session *w)
{
    if (w->finished)
        return;
    if (w->state == WS_OPEN) {
        close_now(w, WS_CLOSE_ABNORMAL);
        return;
    }
    /* closing: the client's close frame came, or will not now; ours still
     * goes out, then the end */
    w->state = WS_DONE;
    maybe_finish(w);
}

void ws_session_going_away(ws_session *w)
{
    if (w->s)
        stream_send_close(w->s, WS_CLOSE_GOING_AWAY, NULL, 0);
    finish_stream(w, WS_CLOSE_GOING_AWAY);
    send_close(w, WS_CLOSE_GOING_AWAY, NULL, 0, true);
}

/* ---- keepalive and the close wait ---------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    ws_session *w = t->data;
    if (w->finished)
        return;
    uint64_t now = now_ms(w);
    if (w->state != WS_OPEN) {
        if (now >= w->close_due_ms) /* no close frame back: just end */
            close_now(w, w->close_code);
        else
            arm_timer(w);
        return;
    }
    uint64_t every = w->gw->cfg->ws_ping_interval_ms;
    if (w->stalled && w->s && w->s->link && stream_send_window(w->s) == 0) {
        /* not reading because the worker takes nothing: the client is
         * waiting on it, not idle, and could not answer a ping we read;
         * whether it is still there, the carrier may tell */
        if (w->carrier->gone && w->carrier->gone(w->cx)) {
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
        out_frame(w, WS_OP_PING, true, NULL, 0, 0);
    }
    arm_timer(w);
}

static void arm_timer(ws_session *w)
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

void ws_session_start(ws_session *w, const ws_carrier *carrier, void *cx)
{
    w->carrier = carrier;
    w->cx = cx;
    w->last_in_ms = now_ms(w);
    if (w->finished) { /* ended before it started */
        carrier->finish(cx, false);
        return;
    }
    if (w->pre.len) {
        carrier->out(cx, w->pre.data, w->pre.len);
        sluice_buf_close(&w->pre);
    }
    if (w->state == WS_DONE && !w->finished) {
        maybe_finish(w);
        return;
    }
    if (!w->finished)
        arm_timer(w);
}
