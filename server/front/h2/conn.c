/* HTTP/2 front end: the connection's engine -- reading into the session,
 * writing what it produces (response DATA straight from each stream's
 * buffer), response credit once written, request body forwarded within
 * the worker's credit, deadlines, finishing streams and closing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/h2/conn.h"
#include "front/http1/fields.h"
#include "ws/ws.h"

static uint64_t now_ms(h2conn *c) { return uv_now(c->gw->loop); }

static int grow(uint8_t **p, size_t *cap, size_t need, size_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return -ENOBUFS;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need)
        nc *= 2;
    if (nc > max)
        nc = max;
    uint8_t *q = realloc(*p, nc);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* ---- output ----------------------------------------------------------- */

void h2_want_flush(h2conn *c)
{
    if (!c->closed)
        gw_defer_flush(c->gw, &c->flush);
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng, (void)flags;
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (c->out.len >= H2_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (sluice_buf_append(&c->out, data, len) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static void clist_add(h2conn *c, h2s *x)
{
    if (x->in_clist)
        return;
    x->in_clist = true;
    x->cnext = c->clist;
    c->clist = x;
}

static void clist_remove(h2conn *c, h2s *x)
{
    if (!x->in_clist)
        return;
    for (h2s **pp = &c->clist; *pp; pp = &(*pp)->cnext)
        if (*pp == x) {
            *pp = x->cnext;
            break;
        }
    x->in_clist = false;
}

/* DATA without copying through nghttp2: the frame head, then the bytes
 * straight from the stream's response buffer. */
static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *ud)
{
    (void)ng;
    h2conn *c = ud;
    h2s *x = source->ptr;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (c->out.len >= H2_OUT_HIGH)
        return NGHTTP2_ERR_WOULDBLOCK;
    size_t pad = frame->data.padlen;
    if (sluice_buf_reserve(&c->out, 9 + length + pad) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    sluice_buf_append(&c->out, framehd, 9);
    if (pad) /* never chosen by us; kept correct anyway */
        c->out.data[c->out.len++] = (uint8_t)(pad - 1);
    if (length) { /* an empty final DATA frame may come with no buffer (HEAD, 204) */
        memcpy(c->out.data + c->out.len, x->rbuf + x->roff, length);
        c->out.len += length;
    }
    if (pad > 1) {
        memset(c->out.data + c->out.len, 0, pad - 1);
        c->out.len += pad - 1;
    }
    x->roff += length;
    if (x->roff == x->rlen)
        x->roff = x->rlen = 0;
    x->q_out += length;
    x->send_mark = now_ms(c);
    clist_add(c, x);
    return 0;
}

/* The response body source: what the stream's buffer holds. */
static ssize_t data_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *ud)
{
    (void)buf;
    h2s *x = source->ptr;
    if (((h2conn *)ud)->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    size_t avail = x->rlen - x->roff;
    size_t n = avail < length ? avail : length;
    if (n == 0 && !x->resp_end)
        return NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == avail && x->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (x->n_tnv) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ng, id, x->tnv, x->n_tnv) != 0)
                *flags &= ~(uint32_t)NGHTTP2_DATA_FLAG_NO_END_STREAM;
            x->n_tnv = 0;
        }
    }
    return (ssize_t)n;
}

/* A frame left: the end of a response closes our side; a client still
 * sending a body it no longer needs to is told to stop (RFC 9113 8.1). */
static int frame_send_cb(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        c->resets[c->n_resets++ % H2_RESET_RING] = frame->hd.stream_id;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2s *x = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!x)
        return 0;
    if (x->s)
        x->s->resp_done = true;
    if (!x->end_stream)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

void h2_set_send_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, frame_send_cb);
}

int h2_submit_head(h2s *x, const nghttp2_nv *nv, size_t n, bool with_body)
{
    nghttp2_data_provider prd = {.source = {.ptr = x}, .read_callback = data_read_cb};
    int rv = nghttp2_submit_response(x->c->ng, x->id, nv, n, with_body ? &prd : NULL);
    if (rv != 0)
        return -EINVAL;
    x->head_sent = true;
    x->send_mark = now_ms(x->c);
    h2_want_flush(x->c);
    return 0;
}

void h2_credit_written(h2s *x, uint64_t n)
{
    if (x->ws) {
        if (n)
            ws_session_written(x->ws, n);
        return;
    }
    stream_credit_written(x->s, &x->unacked, n);
}

/* Credit what the finished write carried, per stream. */
static void credit_write(h2conn *c)
{
    h2s **pp = &c->clist;
    while (*pp) {
        h2s *x = *pp;
        uint64_t n = x->q_w;
        x->q_w = 0;
        h2_credit_written(x, n);
        if (x->q_out == 0) {
            *pp = x->cnext;
            x->in_clist = false;
        } else {
            pp = &x->cnext;
        }
    }
}

/* Nothing in flight: give the buffers back (an idle connection costs
 * its session and socket only). */
static void release_idle(h2conn *c)
{
    if (c->n_streams || c->writing || c->out.len || c->closed)
        return;
    sluice_buf_close(&c->out);
    sluice_buf_close(&c->wbuf);
    c->tr->ops->idle(c->tr); /* TLS: the session's buffers too */
}

/* Everything written and nothing left to do: close. After an error, at
 * once; after a graceful end (our GOAWAY and the last stream, or the
 * client's GOAWAY) linger first: keep reading -- answering a PING, taking a
 * WINDOW_UPDATE -- until the client closes or H2_LINGER_MS pass, since
 * closing a socket with unread input sends a TCP reset in place of the
 * FIN, which the client sees as an error (and may lose what it had not
 * read yet). */
static void close_when_done(h2conn *c)
{
    if (c->closed || c->writing || c->out.len || c->linger_due)
        return;
    if (!c->closing && (nghttp2_session_want_read(c->ng) || nghttp2_session_want_write(c->ng))) {
        release_idle(c);
        return;
    }
    if (c->hard_close || c->eof) {
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    c->linger_due = now_ms(c) + H2_LINGER_MS;
    h2_arm(c, H2_LINGER_MS);
    h2_update_reading(c);
}

static void on_written(transport *t, int status)
{
    h2conn *c = t->owner;
    c->writing = false;
    sluice_buf_reset(&c->wbuf);
    if (c->wbuf.cap > 2 * H2_OUT_HIGH) /* a burst beyond the usual: give it back */
        sluice_buf_close(&c->wbuf);
    if (c->closed)
        return;
    if (status < 0) {
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    credit_write(c);
    h2_flush(&c->flush);
    if (!c->closed)
        h2_update_reading(c);
}

void h2_flush(flush_node *n)
{
    h2conn *c = (h2conn *)((char *)n - offsetof(h2conn, flush));
    if (c->closed)
        return;
    if (c->out.len < H2_OUT_HIGH && nghttp2_session_send(c->ng) != 0) {
        h2_close(c, SLUICE_CANCEL_INTERNAL);
        return;
    }
    if (c->writing || c->out.len == 0) {
        close_when_done(c);
        return;
    }
    int w = c->tr->ops->try_write(c->tr, (const char *)c->out.data, c->out.len);
    if (w == (int)c->out.len) {
        sluice_buf_reset(&c->out);
        for (h2s *x = c->clist; x; x = x->cnext) {
            x->q_w += x->q_out;
            x->q_out = 0;
        }
        credit_write(c);
        if (nghttp2_session_want_write(c->ng))
            h2_want_flush(c); /* frames held back by the high-water mark */
        close_when_done(c);
        h2_update_reading(c);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    sluice_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    sluice_buf_reset(&c->out);
    for (h2s *x = c->clist; x; x = x->cnext) {
        x->q_w += x->q_out;
        x->q_out = 0;
    }
    c->writing = true;
    c->write_mark = now_ms(c);
    /* whatever else is due, a write that makes no progress is judged */
    if (c->gw->cfg->send_timeout_ms)
        h2_arm(c, c->gw->cfg->send_timeout_ms);
    if (c->tr->ops->write(c->tr, (const char *)c->wbuf.data + done, c->wbuf.len - done) < 0) {
        c->writing = false;
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    /* more frames may come now that `out` is empty */
    if (nghttp2_session_want_write(c->ng))
        h2_want_flush(c);
    h2_update_reading(c);
}

/* ---- input ------------------------------------------------------------ */

void h2_update_reading(h2conn *c)
{
    bool want = (!c->closing || c->linger_due) && !c->closed && !c->eof && c->out.len < H2_OUT_HIGH;
    transport_set_reading(c->tr, &c->reading, want);
}

void h2_input(h2conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv = nghttp2_session_mem_recv(c->ng, data, len);
    if (c->closed)
        return;
    if (rv < 0) {
        /* a callback that failed on purpose has queued a GOAWAY and said why */
        if (rv != NGHTTP2_ERR_CALLBACK_FAILURE || !c->goaway)
            slog(c->gw->log, LOG_INFO, "h2: %s: %s; closing", c->tr->peer, nghttp2_strerror((int)rv));
        /* nghttp2 queued a GOAWAY where the protocol asks for one */
        c->closing = c->hard_close = true;
        h2_update_reading(c);
    }
    h2_want_flush(c);
}

static void alloc_cb(transport *t, uv_buf_t *buf)
{
    h2conn *c = t->owner;
    buf->base = (char *)c->gw->shared_in;
    buf->len = c->gw->shared_in_size;
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf)
{
    h2conn *c = t->owner;
    if (nread == 0 || c->closed)
        return;
    if (nread < 0) {
        c->eof = true;
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    h2_input(c, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---- streams ---------------------------------------------------------- */

h2s *h2s_new(h2conn *c, int32_t id)
{
    h2s *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->max_headers = c->gw->cfg->max_headers;
    x->rc_cap = 2 * (x->max_headers + H2_MAX_TRAILERS + 4);
    x->rc = malloc(x->rc_cap * sizeof *x->rc);
    if (!x->rc) {
        free(x);
        return NULL;
    }
    x->c = c;
    x->id = id;
    x->host_index = -1;
    x->mark = x->body_mark = x->send_mark = now_ms(c);
    x->next = c->streams;
    if (c->streams)
        c->streams->prev = x;
    c->streams = x;
    c->n_streams++;
    return x;
}

static void log_exchange(h2conn *c, stream *s)
{
    double ms = (double)(uv_hrtime() / 1000 - s->start_ms) / 1000.0;
    stream_record(s, ms / 1000.0);
    c->gw->requests_total++;
    if (!sluice_log_access_enabled(c->gw->log))
        return;
    sluice_access a = {
        .remote = c->remote,
        .method = s->req.method.len ? (const char *)s->req.method.ptr : "-",
        .method_len = s->req.method.len ? s->req.method.len : 1,
        .target = s->req.target.len ? (const char *)s->req.target.ptr : "-",
        .target_len = s->req.target.len ? s->req.target.len : 1,
        .version = 20,
        .status = s->status,
        .bytes = s->resp_bytes,
        .duration_ms = ms,
        .worker_id = s->worker_id,
    };
    sluice_log_access(c->gw->log, &a);
}

static void h2s_free(h2s *x)
{
    h2conn *c = x->c;
    if (x->ws) { /* the stream went away: a WebSocket still open gets CLOSE to its worker */
        ws_session_release(x->ws, c->gw->stopping ? WS_CLOSE_GOING_AWAY : WS_CLOSE_ABNORMAL);
        x->ws = NULL;
    }
    for (uint32_t i = 0; i < x->n_rc; i++)
        nghttp2_rcbuf_decref(x->rc[i]);
    free(x->rc);
    free(x->cookie);
    free(x->pending);
    free(x->rbuf);
    free(x->tbuf);
    free(x->tnv);
    clist_remove(c, x);
    if (x->prev)
        x->prev->next = x->next;
    else
        c->streams = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->n_streams--;
    free(x);
}

void h2s_close(h2s *x, uint32_t error_code)
{
    h2conn *c = x->c;
    stream *s = x->s;
    if (s) {
        if (!s->resp_done && s->link)
            stream_cancel(s, error_code == NGHTTP2_NO_ERROR ? SLUICE_CANCEL_INTERNAL : SLUICE_CANCEL_CLIENT_CLOSED);
        else
            stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* no link after END; be safe */
        stream_withdraw(s);
        if (s->status || s->pool) /* an exchange, not a refused head */
            log_exchange(c, s);
        stream_put(c->gw, s);
        x->s = NULL;
    }
    nghttp2_session_set_stream_user_data(c->ng, x->id, NULL);
    h2s_free(x);
    if (c->n_streams == 0) {
        c->idle_since = now_ms(c);
        if (c->goaway)
            c->closing = true;
        else
            h2_arm(c, c->gw->cfg->keepalive_timeout_ms);
        h2_want_flush(c);
    }
    gw_notify_finished(c->gw);
}

/* ---- request body ----------------------------------------------------- */

void h2_forward_body(h2s *x)
{
    stream *s = x->s;
    if (!s || !s->link || x->discard || s->ws_offer) /* a WebSocket's DATA are not a body */
        return;
    if (x->pending_len) {
        uint32_t win = stream_send_window(s);
        size_t n = x->pending_len < win ? x->pending_len : win;
        if (n) {
            if (stream_send_body(s, x->pending, n) < 0)
                return;
            s->body_sent += n;
            memmove(x->pending, x->pending + n, x->pending_len - n);
            x->pending_len -= n;
            nghttp2_session_consume(x->c->ng, x->id, n); /* opens the client's window */
            h2_want_flush(x->c);
        }
    }
    if (s->req_complete && !s->end_sent && x->pending_len == 0 && s->link) {
        s->end_sent = true;
        stream_send_end(s, x->n_trailers ? s->hdrs + x->n_headers : NULL, x->n_trailers);
    }
}

/* ---- response buffer ------------------------------------------------------ */

int h2_rbuf_append(h2s *x, const uint8_t *data, size_t len)
{
    if (x->roff && x->roff == x->rlen)
        x->roff = x->rlen = 0;
    if (x->rlen + len > x->rcap) {
        if (x->roff) { /* room at the front first */
            memmove(x->rbuf, x->rbuf + x->roff, x->rlen - x->roff);
            x->rlen -= x->roff;
            x->roff = 0;
        }
        size_t need = x->rlen + len;
        if (need > x->rcap) {
            size_t nc = x->rcap ? x->rcap : 16384;
            while (nc < need)
                nc *= 2;
            uint8_t *p = nc <= H2_RESP_MAX ? realloc(x->rbuf, nc) : NULL;
            if (!p)
                return -ENOBUFS;
            x->rbuf = p;
            x->rcap = nc;
        }
    }
    if (x->rlen == x->roff) /* the client's window is judged from now */
        x->send_mark = now_ms(x->c);
    memcpy(x->rbuf + x->rlen, data, len);
    x->rlen += len;
    if (x->c->gw->cfg->send_timeout_ms)
        h2_arm(x->c, x->c->gw->cfg->send_timeout_ms);
    nghttp2_session_resume_data(x->c->ng, x->id);
    h2_want_flush(x->c);
    return 0;
}

/* ---- WebSockets (RFC 8441): a session carried by the stream's DATA ------- */

void h2_ws_feed(h2s *x)
{
    if (!x->ws || !x->pending_len)
        return;
    size_t took = ws_session_input(x->ws, x->pending, x->pending_len);
    if (!took)
        return;
    memmove(x->pending, x->pending + took, x->pending_len - took);
    x->pending_len -= took;
    nghttp2_session_consume(x->c->ng, x->id, took); /* opens the client's window */
    h2_want_flush(x->c);
}

static void carrier_out(void *cx, const uint8_t *p, size_t n)
{
    h2s *x = cx;
    if (x->resp_end)
        return;
    if (h2_rbuf_append(x, p, n) < 0) {
        slog(x->c->gw->log, LOG_WARN, "h2: %s: WebSocket output overflow on stream %d; reset", x->c->tr->peer,
             x->id);
        h2_reset(x, NGHTTP2_INTERNAL_ERROR);
    }
}

static void carrier_resume(void *cx) { h2_ws_feed(cx); }

/* RFC 8441 5: the WebSocket's end is the stream's: END_STREAM after our
 * close frame, RST_STREAM for an abrupt one. */
static void carrier_finish(void *cx, bool clean)
{
    h2s *x = cx;
    if (!clean) {
        h2_reset(x, NGHTTP2_CANCEL);
        return;
    }
    x->resp_end = true;
    nghttp2_session_resume_data(x->c->ng, x->id);
    h2_want_flush(x->c);
}

static const ws_carrier h2_carrier = {
    .out = carrier_out,
    .resume = carrier_resume,
    .finish = carrier_finish,
    .gone = NULL,
};

void h2_ws_start(h2s *x, ws_session *ws)
{
    x->ws = ws;
    x->s = NULL; /* the exchange is the session's now */
    ws_session_start(ws, &h2_carrier, x);
    h2_ws_feed(x);
    if (x->end_stream && x->ws)
        ws_session_eof(x->ws); /* the client ended its side already */
}

/* ---- errors ----------------------------------------------------------- */

void h2_reset(h2s *x, uint32_t h2_error)
{
    nghttp2_submit_rst_stream(x->c->ng, NGHTTP2_FLAG_NONE, x->id, h2_error);
    h2_want_flush(x->c);
}

/* Lower-case copy of a status code's reason, the error body. */
static int error_response(h2s *x, int status)
{
    const char *reason = reason_phrase(status);
    size_t blen = strlen(reason) + 1;
    if (grow(&x->rbuf, &x->rcap, blen, H2_RESP_MAX) < 0)
        return -ENOMEM;
    memcpy(x->rbuf, reason, blen - 1);
    x->rbuf[blen - 1] = '\n';
    x->roff = 0;
    x->rlen = blen;
    x->resp_end = true;
    char st[4], len[24];
    snprintf(st, sizeof st, "%d", status);
    snprintf(len, sizeof len, "%zu", blen);
    size_t dlen;
    const char *date = gw_date_line(x->c->gw, &dlen); /* "Date: ...\r\n" */
#define NV(n, v, vl) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[6] = {
        NV(":status", st, strlen(st)),
        NV("server", SLUICE_SERVER_NAME, sizeof SLUICE_SERVER_NAME - 1),
        NV("date", date + 6, dlen - 8),
        NV("content-type", "text/plain; charset=utf-8", 25),
        NV("content-length", len, strlen(len)),
        NV("retry-after", "1", 1),
    };
    if (status == 426) /* RFC 6455 4.4: the WebSocket version we speak */
        nv[5] = (nghttp2_nv)NV("sec-websocket-version", "13", 2);
#undef NV
    if (x->s) {
        x->s->status = status;
        x->s->resp_bytes = blen;
        x->s->resp_started = true;
    }
    return h2_submit_head(x, nv, status == 503 || status == 426 ? 6 : 5, true);
}

void h2_fail(h2s *x, int status, uint32_t cancel_reason)
{
    stream *s = x->s;
    if (s) {
        if (s->link)
            stream_cancel(s, cancel_reason ? cancel_reason : SLUICE_CANCEL_INTERNAL);
        stream_withdraw(s);
    }
    x->discard = true;
    if (x->pending_len) {
        nghttp2_session_consume(x->c->ng, x->id, x->pending_len);
        x->pending_len = 0;
    }
    if (status > 0 && !x->head_sent && error_response(x, status) == 0)
        return;
    /* a stream timed out is no longer wanted (CANCEL); anything else is
     * the gateway's or the worker's failure */
    bool timeout = cancel_reason == SLUICE_CANCEL_TIMEOUT || cancel_reason == SLUICE_CANCEL_BODY_TIMEOUT;
    h2_reset(x, timeout ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
}

/* ---- deadlines -------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

void h2_arm(h2conn *c, uint64_t ms)
{
    if (c->closed)
        return;
    uint64_t now = now_ms(c);
    uint64_t due = now + (ms ? ms : 1);
    if (c->timer_due && c->timer_due <= due)
        return;
    c->timer_due = due;
    uv_timer_start(&c->timer, on_timer, due - now, 0);
}

static void earliest(uint64_t due, int k, uint64_t *best, int *kind)
{
    if (!*best || due < *best) {
        *best = due;
        *kind = k;
    }
}

/* When the first of x's waits ends (0: none), and which (D_*). */
static uint64_t stream_due(h2conn *c, h2s *x, int *kind)
{
    const sluice_config *cfg = c->gw->cfg;
    stream *s = x->s;
    uint64_t best = 0;
    *kind = D_NONE;
    if (s && !x->head_done && cfg->header_timeout_ms) {
        *kind = D_HEAD; /* HEADERS without END_HEADERS, then nothing */
        return x->mark + cfg->header_timeout_ms;
    }
    if (s && !x->discard) {
        const sluice_pool_config *pc = s->pool ? stream_config(s) : NULL;
        if (s->queued && pc)
            earliest(x->mark + (pc->queue_timeout_ms ? pc->queue_timeout_ms : 1), D_QUEUE, &best, kind);
        if (s->link && !s->resp_started && pc && pc->response_timeout_ms)
            earliest(x->mark + pc->response_timeout_ms, D_RESPONSE, &best, kind);
        if (s->link && !x->end_stream && x->pending_len == 0 && cfg->body_timeout_ms && !s->ws_offer &&
            stream_send_window(s) > 0)
            earliest(x->body_mark + cfg->body_timeout_ms, D_BODY, &best, kind);
    }
    if (x->rlen > x->roff && cfg->send_timeout_ms)
        earliest(x->send_mark + cfg->send_timeout_ms, D_SEND, &best, kind);
    return best;
}

static void on_timer(uv_timer_t *t)
{
    h2conn *c = t->data;
    const sluice_config *cfg = c->gw->cfg;
    c->timer_due = 0;
    if (c->closed)
        return;
    uint64_t now = now_ms(c), next = 0;
    if (c->linger_due && now >= c->linger_due) {
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    if (c->linger_due)
        next = c->linger_due;
    if (c->writing && cfg->send_timeout_ms && now >= c->write_mark + cfg->send_timeout_ms) {
        slog(c->gw->log, LOG_INFO, "h2: %s: the client took no bytes for %llu ms; closing", c->tr->peer,
             (unsigned long long)cfg->send_timeout_ms);
        h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
        return;
    }
    if (c->writing && cfg->send_timeout_ms && (!next || c->write_mark + cfg->send_timeout_ms < next))
        next = c->write_mark + cfg->send_timeout_ms;
    h2s *x = c->streams;
    while (x) {
        h2s *nx = x->next;
        int kind;
        uint64_t due = stream_due(c, x, &kind);
        if (due && now >= due) {
            switch (kind) {
            case D_HEAD:
                /* nothing but CONTINUATION may follow on the whole
                 * connection: it is of no further use */
                if (!c->closing)
                    slog(c->gw->log, LOG_INFO, "h2: %s: stream %d: no complete request head for %llu ms; closing",
                         c->tr->peer, x->id, (unsigned long long)cfg->header_timeout_ms);
                h2_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM);
                break;
            case D_QUEUE:
                stream_withdraw(x->s);
                h2_fail(x, 504, 0);
                break;
            case D_RESPONSE:
                h2_fail(x, 504, SLUICE_CANCEL_TIMEOUT);
                break;
            case D_BODY:
                slog(c->gw->log, LOG_INFO, "h2: %s: no request body bytes on stream %d for %llu ms", c->tr->peer,
                     x->id, (unsigned long long)cfg->body_timeout_ms);
                h2_fail(x, x->head_sent ? 0 : 408, SLUICE_CANCEL_BODY_TIMEOUT);
                break;
            case D_SEND:
                slog(c->gw->log, LOG_INFO, "h2: %s: stream %d: the client's window stayed shut for %llu ms; reset",
                     c->tr->peer, x->id, (unsigned long long)cfg->send_timeout_ms);
                x->rlen = x->roff = 0;
                h2_fail(x, 0, SLUICE_CANCEL_TIMEOUT);
                break;
            }
        } else if (due && (!next || due < next)) {
            next = due;
        }
        x = nx;
    }
    if (c->n_streams == 0 && !c->linger_due) {
        uint64_t ms = c->got_request ? cfg->keepalive_timeout_ms : cfg->header_timeout_ms;
        if (now >= c->idle_since + ms) {
            if (!c->got_request) {
                h2_close(c, SLUICE_CANCEL_CLIENT_CLOSED);
                return;
            }
            h2_goaway(c, NGHTTP2_NO_ERROR); /* closes once written: next may be the write's deadline */
        } else {
            uint64_t due = c->idle_since + ms;
            if (!next || due < next)
                next = due;
        }
    }
    if (next)
        h2_arm(c, next > now ? next - now : 1);
    h2_want_flush(c);
}

/* ---- closing ---------------------------------------------------------- */

void h2_goaway(h2conn *c, uint32_t h2_error)
{
    if (c->closed)
        return;
    if (!c->goaway)
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->ng), h2_error,
                              NULL, 0);
    c->goaway = true;
    if (h2_error != NGHTTP2_NO_ERROR)
        c->hard_close = true;
    if (h2_error != NGHTTP2_NO_ERROR || c->n_streams == 0)
        c->closing = true;
    h2_want_flush(c);
}

static void conn_released(h2conn *c)
{
    if (--c->handles > 0)
        return;
    gateway *gw = c->gw;
    listener_remove(gw, &c->base);
    nghttp2_session_del(c->ng); /* here: h2_close may run inside its callbacks */
    sluice_buf_close(&c->out);
    sluice_buf_close(&c->wbuf);
    free(c->scratch);
    free(c);
    gw_notify_finished(gw);
}

static void on_timer_closed(uv_handle_t *h) { conn_released(h->data); }

static void on_transport_closed(transport *t) { conn_released(t->owner); }

void h2_close(h2conn *c, uint32_t reason)
{
    if (c->closed)
        return;
    c->closed = true;
    while (c->streams) {
        h2s *x = c->streams;
        if (x->s) {
            stream_cancel(x->s, reason);
            stream_withdraw(x->s);
            stream_put(c->gw, x->s);
            x->s = NULL;
        }
        nghttp2_session_set_stream_user_data(c->ng, x->id, NULL);
        h2s_free(x);
    }
    c->tr->ops->close(c->tr);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

const transport_cb h2_transport_cb = {
    .alloc = alloc_cb,
    .read = on_read,
    .written = on_written,
    .closed = on_transport_closed,
};
