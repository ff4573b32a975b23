/* HTTP/2 front end: the stream operations (exchange/stream.h) -- what the
 * worker side reports, sent to the client as HEADERS, DATA within the
 * client's window, and trailing HEADERS; errors and retries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "front/h2/conn.h"
#include "front/http1/fields.h"

static void on_dispatched(stream *s)
{
    h2s *x = s->owner;
    if (s->ws_offer && !s->ws) { /* a WebSocket for a worker that takes none */
        h2_fail(x, 501, SLUICE_CANCEL_INTERNAL);
        return;
    }
    if (s->body_mode == SLUICE_BODY_NONE)
        s->end_sent = true;
    x->mark = x->body_mark = uv_now(x->c->gw->loop);
    const sluice_pool_config *pc = stream_config(s);
    if (pc->response_timeout_ms)
        h2_arm(x->c, pc->response_timeout_ms);
    if (x->c->gw->cfg->body_timeout_ms && !x->end_stream)
        h2_arm(x->c, x->c->gw->cfg->body_timeout_ms);
    h2_forward_body(x);
}

static void on_unavailable(stream *s, int status) { h2_fail(s->owner, status, 0); }

static void on_lost(stream *s) { h2_fail(s->owner, 502, 0); }

static void on_reset(stream *s, uint64_t code)
{
    h2s *x = s->owner;
    int rc = stream_retry(s, code);
    if (rc == 1) {
        x->mark = uv_now(x->c->gw->loop);
        h2_arm(x->c, stream_config(s)->queue_timeout_ms);
    }
    if (rc >= 0)
        return;
    h2_fail(x, stream_reset_status(code), 0);
}

static void on_credit(stream *s)
{
    h2s *x = s->owner;
    if (!s->credit_seen) {
        s->credit_seen = true;
        if (s->body_mode == SLUICE_BODY_ON_CREDIT && s->has_length && s->content_length > s->body_limit) {
            h2_fail(x, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
            return;
        }
        if (s->expect_continue && !s->continue_sent && !s->resp_started && !x->head_sent) {
            s->continue_sent = true; /* the interim response: HEADERS :status 100 */
            nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
            nghttp2_submit_headers(x->c->ng, NGHTTP2_FLAG_NONE, x->id, NULL, &nv, 1, NULL);
            h2_want_flush(x->c);
        }
    }
    h2_forward_body(x);
}

static void on_limit(stream *s, uint64_t max_body)
{
    if (stream_limit(s, max_body)) /* before the 101: the WebSocket's message limit */
        return;
    if (!s->req_complete &&
        (s->body_received > s->body_limit || (s->has_length && s->content_length > s->body_limit)))
        h2_fail(s->owner, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
}

/* Lower-cased copies of the names of `h` in c->scratch, and the name/value
 * pairs (connection-specific fields dropped) in nv, from index *n on. */
static bool scratch_room(h2conn *c, size_t need)
{
    if (need <= c->scratch_cap)
        return true;
    uint8_t *p = realloc(c->scratch, need);
    if (!p)
        return false;
    c->scratch = p;
    c->scratch_cap = need;
    return true;
}

static void lower_into(uint8_t *dst, sluice_bytes name)
{
    for (size_t k = 0; k < name.len; k++) {
        uint8_t ch = name.ptr[k];
        dst[k] = ch >= 'A' && ch <= 'Z' ? (uint8_t)(ch + 32) : ch;
    }
}

#define NVF (NGHTTP2_NV_FLAG_NONE)

/* nghttp2 name/value pairs of a 101's fields, names lower-cased in scratch. */
typedef struct {
    nghttp2_nv *nv;
    size_t n, cap;
    uint8_t *sp;
} nv_list;

static int nv_add(void *ctx, sluice_bytes name, sluice_bytes value)
{
    nv_list *b = ctx;
    if (b->n == b->cap)
        return -ENOMEM;
    lower_into(b->sp, name);
    b->nv[b->n++] = (nghttp2_nv){b->sp, (uint8_t *)value.ptr, name.len, value.len, NVF};
    b->sp += name.len;
    return 0;
}

/* The worker accepted a WebSocket (RFC 8441): :status 200 with its fields,
 * then the stream's DATA carry the session. */
static void accept_websocket(h2s *x, stream *s, const sluice_response *r)
{
    h2conn *c = x->c;
    response_head rh;
    if (!s->ws || r->body != SLUICE_BODY_NONE || !response_head_check(r, &rh)) {
        h2_fail(x, 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    size_t cap = r->headers.count + 3;
    nghttp2_nv stack_nv[64];
    nghttp2_nv *nv = cap <= 64 ? stack_nv : malloc(cap * sizeof *nv);
    if (!nv || !scratch_room(c, rh.name_bytes + 1)) {
        if (nv != stack_nv)
            free(nv);
        h2_fail(x, 503, 0);
        return;
    }
    char date_v[40];
    nv_list b = {nv, 0, cap, c->scratch};
    nv[b.n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)"200", 7, 3, NVF};
    if (!rh.has_server)
        nv[b.n++] = (nghttp2_nv){(uint8_t *)"server", (uint8_t *)SLUICE_SERVER_NAME, 6,
                                 sizeof SLUICE_SERVER_NAME - 1, NVF};
    if (!rh.has_date) {
        size_t dlen;
        const char *d = gw_date_line(c->gw, &dlen); /* "Date: ...\r\n" */
        size_t vl = dlen - 8 < sizeof date_v ? dlen - 8 : sizeof date_v;
        memcpy(date_v, d + 6, vl);
        nv[b.n++] = (nghttp2_nv){(uint8_t *)"date", (uint8_t *)date_v, 4, vl, NVF};
    }
    ws_session *ws = NULL;
    int rc = ws_response_fields(s, r, nv_add, &b);
    if (rc == 0 && !(ws = ws_session_accept(c->gw, s, c->remote)))
        rc = -ENOMEM;
    if (rc < 0) {
        if (nv != stack_nv)
            free(nv);
        slog(c->gw->log, LOG_WARN, "worker %lld accepted a WebSocket with an invalid response (stream %llu); 502",
             (long long)s->worker_id, (unsigned long long)s->sid);
        h2_fail(x, rc == -ENOMEM ? 503 : 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    rc = h2_submit_head(x, nv, b.n, true);
    if (nv != stack_nv)
        free(nv);
    h2_ws_start(x, ws); /* the session owns the stream now */
    if (rc < 0)
        h2_reset(x, NGHTTP2_INTERNAL_ERROR);
}

static void on_response(stream *s, const sluice_response *r)
{
    h2s *x = s->owner;
    h2conn *c = x->c;
    if (r->status == 101) {
        accept_websocket(x, s, r);
        return;
    }
    response_head rh;
    if (!response_head_check(r, &rh)) {
        slog(c->gw->log, LOG_WARN, "worker %lld sent an invalid response head (stream %llu); 502",
             (long long)s->worker_id, (unsigned long long)s->sid);
        h2_fail(x, 502, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    bool has_date = rh.has_date, has_server = rh.has_server;
    uint64_t cl = rh.cl;
    size_t names = rh.name_bytes;
    int st = (int)r->status;
    s->status = st;
    bool head_req = s->req.method.len == 4 && !memcmp(s->req.method.ptr, "HEAD", 4);
    s->resp_no_body = head_req || st == 204 || st == 304;
    s->resp_cl = cl;

    size_t cap = r->headers.count + 3;
    nghttp2_nv stack_nv[64];
    nghttp2_nv *nv = cap <= 64 ? stack_nv : malloc(cap * sizeof *nv);
    if (!nv || !scratch_room(c, names + 1)) {
        if (nv != stack_nv)
            free(nv);
        h2_fail(x, 503, 0);
        return;
    }
    char status[8], date_v[40];
    int sl = snprintf(status, sizeof status, "%d", st);
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, (size_t)sl, NVF};
    if (!has_server)
        nv[n++] = (nghttp2_nv){(uint8_t *)"server", (uint8_t *)SLUICE_SERVER_NAME, 6,
                               sizeof SLUICE_SERVER_NAME - 1, NVF};
    if (!has_date) {
        size_t dlen;
        const char *d = gw_date_line(c->gw, &dlen); /* "Date: ...\r\n" */
        size_t vl = dlen - 8 < sizeof date_v ? dlen - 8 : sizeof date_v;
        memcpy(date_v, d + 6, vl);
        nv[n++] = (nghttp2_nv){(uint8_t *)"date", (uint8_t *)date_v, 4, vl, NVF};
    }
    uint8_t *sp = c->scratch;
    for (size_t i = 0; i < r->headers.count; i++) {
        const sluice_header *h = &r->headers.items[i];
        if (hop_by_hop(h->name) || (st == 204 && name_is(h->name, "content-length")))
            continue;
        lower_into(sp, h->name);
        nv[n++] = (nghttp2_nv){sp, (uint8_t *)h->value.ptr, h->name.len, h->value.len, NVF};
        sp += h->name.len;
    }
    bool with_body = r->body != SLUICE_BODY_NONE;
    s->resp_started = true;
    if (!with_body)
        x->resp_end = true;
    int rc = h2_submit_head(x, nv, n, with_body);
    if (nv != stack_nv)
        free(nv);
    if (rc < 0)
        h2_fail(x, 0, 0);
}

static void on_body(stream *s, const uint8_t *data, size_t len)
{
    h2s *x = s->owner;
    if (!len || x->discard)
        return;
    if (s->resp_no_body) { /* HEAD/204/304: discard, but keep the worker going */
        h2_credit_written(x, len);
        return;
    }
    if (s->resp_cl != UINT64_MAX && s->resp_bytes + len > s->resp_cl) {
        slog(x->c->gw->log, LOG_WARN, "worker %lld sent more than its Content-Length; aborting",
             (long long)s->worker_id);
        h2_fail(x, 0, SLUICE_CANCEL_INVALID_RESPONSE);
        return;
    }
    if (h2_rbuf_append(x, data, len) < 0) {
        slog(x->c->gw->log, LOG_WARN, "worker %lld: response buffer overflow on stream %d; aborting",
             (long long)s->worker_id, x->id);
        h2_fail(x, 0, SLUICE_CANCEL_INTERNAL);
        return;
    }
    s->resp_bytes += len;
}

/* Keep the worker's trailers (valid, not connection-specific, no
 * content-length) as lower-cased pairs until the body is out. */
static int keep_trailers(h2s *x, const sluice_headers *t)
{
    size_t bytes = 0, n = 0;
    for (size_t i = 0; i < t->count; i++)
        bytes += t->items[i].name.len + t->items[i].value.len;
    if (!t->count)
        return 0;
    x->tbuf = malloc(bytes ? bytes : 1);
    x->tnv = malloc(t->count * sizeof *x->tnv);
    if (!x->tbuf || !x->tnv)
        return -ENOMEM;
    uint8_t *p = x->tbuf;
    for (size_t i = 0; i < t->count; i++) {
        const sluice_header *h = &t->items[i];
        if (!valid_name(h->name) || !valid_value(h->value) || hop_by_hop(h->name) ||
            name_is(h->name, "content-length"))
            continue;
        lower_into(p, h->name);
        memcpy(p + h->name.len, h->value.ptr, h->value.len);
        x->tnv[n++] = (nghttp2_nv){p, p + h->name.len, h->name.len, h->value.len, NVF};
        p += h->name.len + h->value.len;
    }
    x->n_tnv = n;
    return 0;
}

static void on_end(stream *s, const sluice_headers *trailers)
{
    h2s *x = s->owner;
    if (x->discard)
        return;
    if (s->resp_cl != UINT64_MAX && !s->resp_no_body && s->resp_bytes != s->resp_cl) {
        slog(x->c->gw->log, LOG_WARN, "worker %lld sent %llu of %llu body bytes; aborting", (long long)s->worker_id,
             (unsigned long long)s->resp_bytes, (unsigned long long)s->resp_cl);
        h2_fail(x, 0, 0);
        return;
    }
    if (keep_trailers(x, trailers) < 0) {
        h2_fail(x, 0, 0);
        return;
    }
    x->resp_end = true;
    nghttp2_session_resume_data(x->c->ng, x->id);
    h2_want_flush(x->c);
}

const stream_ops h2_stream_ops = {
    .dispatched = on_dispatched,
    .response = on_response,
    .body = on_body,
    .end = on_end,
    .credit = on_credit,
    .limit = on_limit,
    .reset = on_reset,
    .lost = on_lost,
    .unavailable = on_unavailable,
};
