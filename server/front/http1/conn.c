/* HTTP/1.1 front end: the connection's engine -- reading, feeding the parser
 * as far as the exchange allows (credit, pipelining), timers, keep-alive,
 * writing, and finishing or failing the exchange in flight. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/loop.h"
#include "front/http1/conn.h"
#include "front/h2/h2.h"
#include "front/ws/websocket.h"
#include "front/http1/fields.h"

static void on_timer(uv_timer_t *t);
static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf);

/* Lingering close: at most this long in all, and this long without a byte. */
#define LINGER_MAX_MS 5000
#define LINGER_IDLE_MS 1000

/* Output flushed on a closing connection. A client that may still be
 * sending (an upload the worker did not read, a request refused mid-body)
 * would have the kernel answer its next bytes with RST, which can destroy
 * the response before the client read it. So the write side is shut first,
 * and what still comes is read and dropped for a short while (nginx's
 * lingering close); then the close. */
static void finish_close(conn *c)
{
    if (c->closed || c->lingering)
        return;
    if (!c->linger || c->cur || c->eof || c->tr->ops->shutdown(c->tr) < 0) {
        h1_close(c);
        return;
    }
    c->lingering = true;
    c->linger_start = uv_now(c->gw->loop);
    if (c->own_in)
        c->istart = c->iend = 0;
    h1_set_timer(c, T_LINGER);
    h1_update_reading(c);
}

/* The 101 is written: the WebSocket exchange takes the transport and the
 * bytes the client sent after its handshake. */
static void hand_to_ws(conn *c)
{
    struct wsconn *w = c->upgrade;
    c->upgrade = NULL;
    transport *t = c->tr;
    const uint8_t *data = c->ibase ? c->ibase + c->istart : NULL;
    size_t len = c->iend - c->istart;
    h1_set_timer(c, T_NONE);
    h1_detach(c); /* own_in lives until the timers closed: data stays valid */
    ws_start(w, t, data, len);
}

/* Output drained: a pipelined request held back by PIPELINE_OUT_MAX may go. */
static void resume_pipeline(conn *c)
{
    if (!c->held || c->closed || c->closing || c->cur)
        return;
    c->held = false;
    /* a request waiting in the buffer is a head in progress; none: idle */
    h1_set_timer(c, c->iend > c->istart ? T_HEADER : T_KEEPALIVE);
    h1_parse(c);
}

static void on_written(transport *t, int status)
{
    conn *c = h1_conn_of(t);
    c->writing = false;
    uint64_t credit = c->wbuf_credit;
    c->wbuf_credit = 0;
    sluice_buf_reset(&c->wbuf);
    if (c->wbuf.cap > 256 * 1024)
        sluice_buf_close(&c->wbuf);
    if (c->closed)
        return;
    if (status < 0) {
        c->closing = true;
        if (c->cur && !c->cur->resp_done)
            h1_exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
        h1_close(c);
        return;
    }
    h1_credit_written(c, credit);
    if (c->out.len)
        h1_flush(&c->flush);
    else if (c->upgrade && !c->closing)
        hand_to_ws(c);
    else if (c->closing)
        finish_close(c);
    else if (!c->cur && c->timer_kind == T_KEEPALIVE)
        c->tr->ops->idle(c->tr); /* TLS: give back the session's buffers */
    resume_pipeline(c);
}

void h1_flush(flush_node *n)
{
    conn *c = (conn *)((char *)n - offsetof(conn, flush));
    if (c->closed || c->writing)
        return;
    if (c->out.len == 0) {
        if (c->closing)
            finish_close(c);
        return;
    }
    int w = c->tr->ops->try_write(c->tr, (const char *)c->out.data, c->out.len);
    if (w == (int)c->out.len) {
        uint64_t credit = c->out_credit;
        c->out_credit = 0;
        sluice_buf_reset(&c->out);
        h1_credit_written(c, credit);
        if (c->closing && c->out.len == 0)
            finish_close(c);
        else if (c->upgrade)
            hand_to_ws(c);
        else
            resume_pipeline(c);
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        c->closing = true;
        if (c->cur && !c->cur->resp_done)
            h1_exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
        h1_close(c);
        return;
    }
    size_t done = w > 0 ? (size_t)w : 0;
    sluice_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    sluice_buf_reset(&c->out);
    c->wbuf_credit = c->out_credit;
    c->out_credit = 0;
    c->writing = true;
    int rc = c->tr->ops->write(c->tr, (const char *)c->wbuf.data + done, c->wbuf.len - done);
    if (rc < 0) {
        c->writing = false;
        h1_close(c);
    }
}

void h1_set_timer(conn *c, int kind)
{
    const sluice_config *cfg = c->gw->cfg;
    const sluice_pool_config *pc = c->cur && c->cur->pool ? stream_config(c->cur) : NULL;
    uint64_t ms = 0;
    switch (kind) {
    case T_HEADER: ms = cfg->header_timeout_ms; break;
    case T_KEEPALIVE: ms = cfg->keepalive_timeout_ms; break;
    case T_QUEUE: ms = pc ? pc->queue_timeout_ms : 1; break;
    case T_RESPONSE: ms = pc ? pc->response_timeout_ms : 1; break;
    case T_LINGER: ms = LINGER_IDLE_MS; break;
    default: break;
    }
    c->timer_kind = kind;
    if (kind == T_NONE || c->closed)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms ? ms : 1, 0);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    switch (c->timer_kind) {
    case T_KEEPALIVE:
        h1_close(c);
        break;
    case T_HEADER:
        if (c->msg_started) {
            h1_log_refused(c, 408, h1_write_error(c, 408, true));
            c->closing = true;
            gw_defer_flush(c->gw, &c->flush);
        } else if (c->tr->ops->handshaking(c->tr)) {
            /* TLS handshake still going: its own timeout ends it (and logs) */
            h1_set_timer(c, T_HEADER);
        } else {
            h1_close(c);
        }
        break;
    case T_QUEUE:
        if (c->cur)
            stream_withdraw(c->cur);
        h1_exchange_fail(c, 504, 0);
        break;
    case T_RESPONSE:
        h1_exchange_fail(c, 504, SLUICE_CANCEL_TIMEOUT);
        break;
    case T_LINGER:
        h1_close(c);
        break;
    }
}

/* The client sent no body bytes for body_timeout while the gateway was
 * waiting for them: 408, or once the response started, abort it. */
static void on_body_timer(uv_timer_t *t)
{
    conn *c = t->data;
    c->body_timer_on = false;
    stream *s = c->cur;
    if (!s || s->req_complete || c->closed)
        return;
    if (c->discarding) { /* its response is out: just close */
        h1_discard_give_up(c);
        return;
    }
    slog(c->gw->log, LOG_INFO, "%s: no request body bytes for %llu ms; %s", c->remote,
         (unsigned long long)c->gw->cfg->body_timeout_ms, s->resp_started ? "aborting" : "408");
    c->keepalive = false;
    h1_exchange_fail(c, s->resp_started ? 0 : 408, SLUICE_CANCEL_BODY_TIMEOUT);
}

/* Runs while an exchange waits for request body bytes from the client (not
 * while the worker holds the body back); any bytes read restart it. */
static void update_body_timer(conn *c, bool starved)
{
    stream *s = c->cur;
    bool want = starved && s && !s->req_complete && (s->link || c->discarding) && !c->closing && !c->closed &&
                c->gw->cfg->body_timeout_ms > 0;
    if (want && !c->body_timer_on) {
        uv_timer_start(&c->body_timer, on_body_timer, c->gw->cfg->body_timeout_ms, 0);
        c->body_timer_on = true;
    } else if (!want && c->body_timer_on) {
        uv_timer_stop(&c->body_timer);
        c->body_timer_on = false;
    }
}

/* The most of an unread upload read and dropped to keep a connection. */
#define DISCARD_MAX (256u * 1024u)

/* The worker answered without reading the whole upload. Closing now would
 * reset a keep-alive client's next request (and, with the upload still
 * arriving, maybe the response itself), so a small rest is read and
 * dropped, as nginx and Go's net/http do; the exchange then finishes at
 * its end. A large or endless one, or a client waiting for 100 Continue,
 * gets the close. Returns true while discarding. */
static bool discard_rest(conn *c, stream *s)
{
    if (c->discarding)
        return true;
    if (!c->keepalive || c->closing || c->closed || c->discard_refused)
        return false;
    if (s->body_mode == SLUICE_BODY_ON_CREDIT && !s->credit_seen)
        return false; /* the client holds its body back: nothing would come */
    if (s->has_length && s->content_length - s->body_received > DISCARD_MAX)
        return false;
    stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* the worker is done with it */
    c->pending_len = 0;
    c->discarding = true;
    c->discard_until = s->body_received + DISCARD_MAX;
    h1_parse(c);
    return true;
}

void h1_discard_give_up(conn *c)
{
    if (!c->discarding)
        return;
    c->discarding = false;
    c->discard_refused = true;
    h1_exchange_maybe_finish(c);
}

/* Stream finished on both sides: next request, or close. */
void h1_exchange_maybe_finish(conn *c)
{
    stream *s = c->cur;
    if (!s || !s->resp_done)
        return;
    if (!s->req_complete && discard_rest(c, s))
        return;
    c->discarding = c->discard_refused = false;
    if (!s->req_complete) {
        c->keepalive = false; /* the rest of the upload was never read */
        c->linger = true;
    }
    if (!s->req_complete && !c->closing) {
        /* the worker answered early: finish writing, then close */
        c->closing = true;
    }
    stream_cancel(s, SLUICE_CANCEL_INTERNAL); /* no link after END; be safe */
    stream_withdraw(s);
    h1_log_exchange(c, s);
    c->gw->requests_total++;
    c->cur = NULL;
    c->out_credit = c->wbuf_credit = 0;
    c->unacked = 0;
    stream_put(c->gw, s);
    h1_reset_head(c);
    if (!c->keepalive)
        c->closing = true;
    if (c->closing) {
        h1_set_timer(c, T_NONE);
        gw_defer_flush(c->gw, &c->flush);
        gw_notify_finished(c->gw);
        return;
    }
    h1_set_timer(c, c->iend > c->istart ? T_HEADER : T_KEEPALIVE);
    h1_parse(c);
    gw_notify_finished(c->gw);
}

/* The exchange cannot complete normally. status 0: nothing to send. */
void h1_exchange_fail(conn *c, int status, uint32_t cancel_reason)
{
    stream *s = c->cur;
    if (!s)
        return;
    stream_cancel(s, cancel_reason ? cancel_reason : SLUICE_CANCEL_INTERNAL);
    stream_withdraw(s);
    if (s->resp_started || status == 0) {
        /* mid-response: the client must see the response is broken */
        s->status = s->status ? s->status : 499;
        s->resp_done = true;
        c->keepalive = false;
        h1_log_exchange(c, s);
        c->cur = NULL;
        stream_put(c->gw, s);
        h1_close(c);
        return;
    }
    bool close = !s->req_complete || !c->keepalive;
    s->status = status;
    s->resp_bytes = h1_write_error(c, status, close);
    s->resp_started = s->resp_done = true;
    if (close)
        c->keepalive = false;
    h1_exchange_maybe_finish(c);
}

static void parse_error(conn *c, llhttp_errno_t err)
{
    int status = c->error_status ? c->error_status : 400;
    c->linger = true; /* the client may be sending the rest of what was refused */
    if (c->cur) {
        uint32_t reason = status == 413 ? SLUICE_CANCEL_BODY_TOO_LARGE : SLUICE_CANCEL_BAD_BODY;
        c->keepalive = false;
        h1_exchange_fail(c, status, reason);
    } else {
        slog(c->gw->log, LOG_DEBUG, "%s: bad request (%s: %s) -> %d", c->remote, llhttp_errno_name(err),
             llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "", status);
        h1_log_refused(c, status, h1_write_error(c, status, true));
    }
    c->closing = true;
    c->istart = c->iend; /* nothing after a bad request is read as a request */
    h1_set_timer(c, T_NONE);
    gw_defer_flush(c->gw, &c->flush);
}

/* The whole request was read: trailers, END, maybe the exchange is done. */
static void request_complete(conn *c)
{
    stream *s = c->cur;
    uint8_t *hb = c->head.data;
    uint32_t n = 0;
    for (uint32_t i = c->n_req_headers; i < c->nh; i++)
        if (c->hoffs[i].name_len == 0) { /* would not even encode: a bad request */
            c->keepalive = false;
            h1_exchange_fail(c, 400, SLUICE_CANCEL_BAD_BODY);
            return;
        }
    for (uint32_t i = c->n_req_headers; i < c->nh && n < MAX_TRAILERS; i++) {
        hoff *h = &c->hoffs[i];
        uint8_t *name = hb + h->name_off;
        for (uint32_t k = 0; k < h->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] += 32;
        sluice_bytes nb = {name, h->name_len};
        if (hop_by_hop(nb) || name_is(nb, "content-length"))
            continue;
        s->hdrs[c->n_req_headers + n].name = nb;
        s->hdrs[c->n_req_headers + n].value = (sluice_bytes){hb + h->val_off, h->val_len};
        n++;
    }
    c->n_trailers = n;
    s->req_complete = true;
    h1_forward_pending(c);
    h1_exchange_maybe_finish(c);
}

static void remember_tail(conn *c, const char *base, size_t used)
{
    if (!used)
        return;
    size_t t = used < sizeof c->prev_tail ? used : sizeof c->prev_tail;
    memcpy(c->prev_tail, base + used - t, t);
    c->prev_tail_len = t;
}

/* A chunk-size line is checked and consumed here; llhttp only gets the
 * size as "HEX\r\n" (it cannot parse every valid extension). Returns true
 * when the line was complete and parsing can go on. */
static bool feed_chunk_line(conn *c, const uint8_t *base, size_t avail)
{
    bool done;
    int status = 0;
    size_t n = chunk_scan_run(&c->cscan, base, avail, &done, &status);
    if (status) {
        c->error_status = status;
        parse_error(c, HPE_INVALID_CHUNK_SIZE);
        return false;
    }
    c->istart += n;
    if (!done)
        return false;
    c->chunk_line = false;
    /* A chunk that cannot fit under the body limit is refused now, not
     * after the client has sent up to the limit (or waited for credit). */
    stream *s = c->cur;
    if (s && c->discarding && c->cscan.size > c->discard_until - s->body_received) {
        h1_discard_give_up(c);
        return false;
    }
    if (s && !c->discarding &&
        c->cscan.size > s->body_limit - (s->body_received < s->body_limit ? s->body_received : s->body_limit)) {
        c->error_status = 413;
        parse_error(c, HPE_USER);
        return false;
    }
    char line[24];
    int len = snprintf(line, sizeof line, "%" PRIx64 "\r\n", c->cscan.size);
    c->pause = P_NONE;
    c->feed_base = line;
    llhttp_errno_t err = llhttp_execute(&c->parser, line, (size_t)len);
    remember_tail(c, line, (size_t)len);
    if (err != HPE_OK) {
        parse_error(c, err);
        return false;
    }
    if (c->cscan.size == 0)
        head_scan_start(&c->hscan, false); /* the trailer section follows */
    return true;
}

/* Feed the parser as far as the current exchange allows. */
void h1_parse(conn *c)
{
    if (c->upgrade)
        return; /* the bytes after the handshake are WebSocket frames */
    if (c->parsing) {
        c->reparse = true;
        return;
    }
    c->parsing = true;
    bool starved = false; /* stopped for want of client bytes */
    do {
        c->reparse = false;
        starved = false;
        while (!c->closing && !c->closed) {
            stream *s = c->cur;
            size_t avail = c->iend - c->istart;
            size_t feed = avail;
            if (s) {
                if (s->req_complete)
                    break; /* pipelined requests wait for this response */
                if (s->body_mode == SLUICE_BODY_ON_CREDIT && !s->credit_seen)
                    break;
                if (c->pending_len)
                    h1_forward_pending(c);
                if (c->pending_len)
                    break;
                uint32_t win = s->link ? stream_send_window(s) : 0;
                if (!s->link && (s->end_sent || c->discarding))
                    win = UINT32_MAX - SLACK; /* worker done: drain the body at will */
                size_t lim = (size_t)win + SLACK;
                if (feed > lim)
                    feed = lim;
            } else if (c->out.len + (c->writing ? c->wbuf.len : 0) > PIPELINE_OUT_MAX) {
                /* the client is not reading its responses: the next
                 * pipelined request waits until they drain (resume_pipeline);
                 * the wait is ours, not a slow head, so no header timer */
                c->held = true;
                if (c->timer_kind == T_HEADER)
                    h1_set_timer(c, T_NONE);
                break;
            }
            if (avail == 0) {
                starved = true;
                break;
            }
            const uint8_t *ubase = c->ibase + c->istart;
            if (c->chunk_line) {
                if (!feed_chunk_line(c, ubase, avail)) {
                    starved = c->chunk_line;
                    break;
                }
                continue;
            }
            /* Strict checks run ahead of llhttp: it is fed only up to a
             * violation, so nothing after one reaches a worker. */
            int scan_status = 0;
            if (head_scan_active(&c->hscan)) {
                head_scan tmp = c->hscan;
                size_t ok = head_scan_run(&tmp, ubase, feed, &scan_status);
                if (scan_status)
                    feed = ok;
            }
            const char *base = (const char *)ubase;
            llhttp_errno_t err = HPE_OK;
            size_t used = 0;
            if (feed) {
                c->pause = P_NONE;
                c->feed_base = base;
                err = llhttp_execute(&c->parser, base, feed);
                used = feed;
                if (err != HPE_OK)
                    used = (size_t)(llhttp_get_error_pos(&c->parser) - base);
            }
            if (head_scan_active(&c->hscan)) {
                int ignored = 0;
                head_scan_run(&c->hscan, ubase, used, &ignored);
            }
            c->istart += used;
            remember_tail(c, base, used);
            if (err == HPE_PAUSED) {
                llhttp_resume(&c->parser);
                if (c->pause == P_MESSAGE) {
                    head_scan_start(&c->hscan, true); /* the next request */
                    if (c->cur)
                        request_complete(c);
                }
                continue;
            }
            if (err == HPE_PAUSED_UPGRADE) { /* Upgrade is not supported: plain request */
                llhttp_resume_after_upgrade(&c->parser);
                if (c->cur)
                    request_complete(c);
                continue;
            }
            /* the pre-scan found the method bytes to be a token: a method
             * llhttp does not know (or an RTSP one, refused at the version
             * with only this reason to tell), not a malformed one */
            const char *why = llhttp_get_error_reason(&c->parser);
            if ((err == HPE_INVALID_METHOD ||
                 (err == HPE_INVALID_CONSTANT && why && !strcmp(why, "Invalid method for HTTP/x.x request"))) &&
                !scan_status && !c->error_status)
                c->error_status = 501;
            if (err != HPE_OK) {
                parse_error(c, err);
                break;
            }
            if (scan_status) {
                c->error_status = scan_status;
                parse_error(c, HPE_USER);
                break;
            }
        }
    } while (c->reparse && !c->closed);
    c->parsing = false;
    if (!c->closed) {
        update_body_timer(c, starved);
        h1_update_reading(c);
    }
}

static void alloc_cb(transport *t, uv_buf_t *buf)
{
    conn *c = h1_conn_of(t);
    if (c->own_in) {
        if (c->istart > 0 && c->iend == IN_SIZE) {
            memmove(c->own_in, c->own_in + c->istart, c->iend - c->istart);
            c->iend -= c->istart;
            c->istart = 0;
        }
        buf->base = (char *)c->own_in + c->iend;
        buf->len = IN_SIZE - c->iend;
    } else {
        buf->base = (char *)c->gw->shared_in;
        buf->len = c->gw->shared_in_size;
    }
}

/* Keep unparsed bytes across reads in the connection's own buffer. */
static void keep_leftover(conn *c)
{
    size_t left = c->iend - c->istart;
    if (c->own_in) {
        if (left == 0) {
            free(c->own_in);
            c->own_in = NULL;
            c->ibase = NULL;
            c->istart = c->iend = 0;
        }
        return;
    }
    if (left == 0) {
        c->ibase = NULL;
        c->istart = c->iend = 0;
        return;
    }
    c->own_in = malloc(IN_SIZE);
    if (!c->own_in) {
        h1_close(c);
        return;
    }
    memcpy(c->own_in, c->ibase + c->istart, left);
    c->ibase = c->own_in;
    c->istart = 0;
    c->iend = left;
}

void h1_update_reading(conn *c)
{
    bool want = !c->closing && !c->closed && !c->eof && !c->upgrade &&
                !(c->own_in && c->iend - c->istart >= IN_SIZE);
    if (c->lingering)
        want = !c->closed && !c->eof;
    transport_set_reading(c->tr, &c->reading, want);
}

/* Whether the connection speaks HTTP/2: 1 (TLS chose "h2", or the client
 * opened with the preface: h2c with prior knowledge), 0 (HTTP/1.1), -1
 * (the bytes so far are a prefix of the preface). */
static int sniff_h2(conn *c)
{
    const char *alpn = c->tr->ops->alpn(c->tr);
    if (alpn)
        return !strcmp(alpn, "h2");
    size_t n = c->iend - c->istart;
    size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
    if (memcmp(c->ibase + c->istart, H2_PREFACE, k) != 0)
        return 0;
    return n >= H2_PREFACE_LEN ? 1 : -1;
}

/* The HTTP/2 front end takes the transport and the bytes read so far. */
static void hand_to_h2(conn *c)
{
    h1_set_timer(c, T_NONE);
    if (h2_adopt(c->gw, c->tr, c->scheme, c->ibase + c->istart, c->iend - c->istart) < 0) {
        h1_close(c);
        return;
    }
    h1_detach(c);
}

static void on_read(transport *t, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = h1_conn_of(t);
    if (nread == 0 || c->closed)
        return;
    if (c->lingering) { /* dropped; the client's close (or the timers) ends it */
        if (nread < 0 || uv_now(c->gw->loop) - c->linger_start >= LINGER_MAX_MS) {
            h1_close(c);
            return;
        }
        if (c->own_in)
            c->istart = c->iend = 0;
        h1_set_timer(c, T_LINGER);
        return;
    }
    if (nread < 0) {
        c->eof = true;
        if (c->cur && !c->cur->resp_done) {
            /* the client went away (or half-closed) mid-exchange */
            h1_exchange_fail(c, 0, SLUICE_CANCEL_CLIENT_CLOSED);
            return;
        }
        c->closing = true;
        gw_defer_flush(c->gw, &c->flush);
        h1_update_reading(c);
        return;
    }
    if (c->body_timer_on) { /* progress: h1_parse re-arms it if still waiting */
        uv_timer_stop(&c->body_timer);
        c->body_timer_on = false;
    }
    if (buf->base == (char *)c->gw->shared_in) {
        c->ibase = (const uint8_t *)buf->base;
        c->istart = 0;
        c->iend = (size_t)nread;
    } else {
        c->iend += (size_t)nread;
    }
    if (c->sniff) {
        int r = sniff_h2(c);
        if (r < 0) { /* a prefix of the preface: wait for the rest */
            keep_leftover(c);
            if (!c->closed)
                h1_update_reading(c);
            return;
        }
        c->sniff = false;
        if (r == 1) {
            hand_to_h2(c);
            return;
        }
        if (c->gw->cfg->http2 == SLUICE_HTTP2_ONLY) { /* RFC 9113 3.4: just close */
            slog(c->gw->log, LOG_INFO, "h2: %s: not an HTTP/2 connection preface; closing", c->tr->peer);
            h1_close(c);
            return;
        }
    }
    h1_parse(c);
    if (!c->closed)
        keep_leftover(c);
    if (!c->closed)
        h1_update_reading(c);
}

const transport_cb h1_transport_cb = {
    .alloc = alloc_cb,
    .read = on_read,
    .written = on_written,
    .closed = h1_transport_closed,
};
