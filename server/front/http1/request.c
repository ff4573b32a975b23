/* HTTP/1.1 front end: the request side -- llhttp callbacks, the strict
 * head checks, building the stream from the head (hop-by-hop fields, Host,
 * Expect, body mode) and submitting it, body bytes within credit. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/loop.h"
#include "front/http1/conn.h"
#include "front/http1/fields.h"
#include "front/ws/websocket.h"

static int head_append(conn *c, const char *at, size_t len)
{
    uint32_t limit = c->gw->cfg->max_header_bytes;
    if (c->in_trailers) {
        if (c->head.len + len > c->head.cap) { /* trailers may not move the head */
            c->error_status = 431;
            return HPE_USER;
        }
    } else if (c->head.len + len > limit) {
        c->error_status = 431;
        return HPE_USER;
    }
    if (sluice_buf_append(&c->head, at, len) < 0) {
        c->error_status = 431;
        return HPE_USER;
    }
    return 0;
}

static conn *P(llhttp_t *p) { return p->data; }

static int cb_message_begin(llhttp_t *p)
{
    conn *c = P(p);
    h1_reset_head(c);
    c->msg_started = true;
    if (c->timer_kind != T_HEADER)
        h1_set_timer(c, T_HEADER);
    return 0;
}

static int cb_method_complete(llhttp_t *p)
{
    P(p)->method_done = true;
    return 0;
}

static int cb_version_complete(llhttp_t *p)
{
    P(p)->line_done = true;
    return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (c->url_len == 0)
        c->url_off = (uint32_t)c->head.len;
    if (c->url_len + len > c->gw->cfg->max_target) {
        c->error_status = 414;
        return HPE_USER;
    }
    c->url_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_field(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (c->hstate != 1) {
        uint32_t max = c->in_trailers ? c->n_req_headers + MAX_TRAILERS : c->max_headers;
        if (c->nh >= max) {
            c->error_status = c->in_trailers ? 400 : 431;
            return HPE_USER;
        }
        hoff *h = &c->hoffs[c->nh];
        h->name_off = (uint32_t)c->head.len;
        h->name_len = 0;
        h->val_off = h->val_len = 0;
        c->hstate = 1;
    }
    c->hoffs[c->nh].name_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_field_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->hoffs[c->nh].val_off = (uint32_t)c->head.len;
    c->hoffs[c->nh].val_len = 0;
    return 0;
}

/* llhttp 8 accepts obs-fold (a value continued on a line starting with
 * whitespace). A value span preceded, across whitespace, by a line feed is
 * such a continuation; the bytes before this feed are kept in prev_tail. */
static bool after_line_feed(conn *c, const char *at)
{
    const char *q = at;
    while (q > c->feed_base) {
        char ch = *--q;
        if (ch == '\n')
            return true;
        if (ch != ' ' && ch != '\t')
            return false;
    }
    for (size_t i = c->prev_tail_len; i > 0; i--) {
        char ch = c->prev_tail[i - 1];
        if (ch == '\n')
            return true;
        if (ch != ' ' && ch != '\t')
            return false;
    }
    return false;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    if (len && after_line_feed(c, at)) {
        c->error_status = 400; /* obs-fold: RFC 9112 5.2 */
        return HPE_USER;
    }
    if (c->hstate != 2) {
        c->hoffs[c->nh].val_off = (uint32_t)c->head.len;
        c->hstate = 2;
    }
    c->hoffs[c->nh].val_len += (uint32_t)len;
    return head_append(c, at, len);
}

static int cb_header_value_complete(llhttp_t *p)
{
    conn *c = P(p);
    /* trim trailing whitespace (llhttp strips the leading) */
    hoff *h = &c->hoffs[c->nh];
    while (h->val_len && (c->head.data[h->val_off + h->val_len - 1] == ' ' ||
                          c->head.data[h->val_off + h->val_len - 1] == '\t'))
        h->val_len--;
    c->nh++;
    c->hstate = 0;
    return 0;
}

static void start_exchange(conn *c);

static int cb_headers_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->n_req_headers = c->nh;
    start_exchange(c);
    if (c->error_status && !c->cur)
        return HPE_USER;
    /* A request with a body stops here: the body is fed only as the
     * worker's credit allows. One without goes on to message_complete. */
    c->pause = P_HEADERS;
    if (p->flags & F_CHUNKED) { /* always paused here: h1_parse reads the size lines */
        c->chunk_line = true;
        chunk_scan_start(&c->cscan);
    }
    if (!c->cur || c->closing || c->cur->body_mode != SLUICE_BODY_NONE)
        return HPE_PAUSED;
    return 0;
}

static int cb_chunk_header(llhttp_t *p)
{
    if (p->content_length == 0)
        P(p)->in_trailers = true;
    return 0;
}

/* After a chunk's data and CRLF: pause, the next size line is ours. */
static int cb_chunk_complete(llhttp_t *p)
{
    conn *c = P(p);
    if (c->in_trailers)
        return 0;
    c->chunk_line = true;
    chunk_scan_start(&c->cscan);
    c->pause = P_CHUNK;
    return HPE_PAUSED;
}

static int cb_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = P(p);
    stream *s = c->cur;
    if (!s)
        return 0;
    s->body_received += len;
    if (c->discarding) /* its response is out; the bound is the chunk's or the length's */
        return 0;
    if (s->body_received > s->body_limit) {
        c->error_status = 413;
        return HPE_USER;
    }
    size_t sent = 0;
    if (s->link && c->pending_len == 0) {
        uint32_t win = stream_send_window(s);
        sent = len < win ? len : win;
        if (sent && stream_send_body(s, (const uint8_t *)at, sent) < 0)
            sent = 0;
        s->body_sent += sent;
    } else if (!s->link && s->end_sent) {
        return 0; /* the worker finished: the rest is dropped */
    }
    size_t rest = len - sent;
    if (rest) {
        if (rest > SLACK - c->pending_len) { /* cannot happen: feeds are bounded */
            c->error_status = 500;
            return HPE_USER;
        }
        memcpy(c->pending + c->pending_len, at + sent, rest);
        c->pending_len += rest;
    }
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    conn *c = P(p);
    c->pause = P_MESSAGE;
    return HPE_PAUSED;
}

/* Request-smuggling defences beyond llhttp's strict mode (RFC 9112 3.2,
 * 5.2, 6.1): exactly one valid Host on HTTP/1.1 (at most one on 1.0), a
 * valid http(s) authority in an absolute-form target, no obs-fold, and no
 * transfer coding but a lone "chunked" -- anything the gateway would have
 * to interpret differently from the worker or a proxy is refused. */
static bool head_acceptable(conn *c)
{
    uint8_t *hb = c->head.data;
    uint32_t hosts = 0;
    const uint8_t *auth;
    size_t auth_len;
    if (target_authority(hb + c->url_off, c->url_len, &auth, &auth_len) < 0)
        return false;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        sluice_bytes nb = {hb + h->name_off, h->name_len}, vb = {hb + h->val_off, h->val_len};
        if (nb.len == 0)
            return false; /* empty field name: RFC 9110 5.1 */
        if (memchr(vb.ptr, '\r', vb.len) || memchr(vb.ptr, '\n', vb.len))
            return false; /* obs-fold */
        if (name_is(nb, "host")) {
            if (!host_valid(vb.ptr, vb.len))
                return false; /* RFC 9110 7.2: it drives routing */
            hosts++;
        } else if (name_is(nb, "transfer-encoding") &&
                 !(vb.len == 7 && !strncasecmp((const char *)vb.ptr, "chunked", 7)))
            return false;
    }
    bool http11 = c->parser.http_major == 1 && c->parser.http_minor == 1;
    return http11 ? hosts == 1 : hosts <= 1;
}

/* Whether some token of the request's Connection headers satisfies
 * match(token, arg). */
static bool connection_token(conn *c, bool (*match)(sluice_bytes, sluice_bytes), sluice_bytes arg)
{
    uint8_t *hb = c->head.data;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        sluice_bytes nb = {hb + h->name_off, h->name_len}, t;
        if (!name_is(nb, "connection"))
            continue;
        size_t pos = 0;
        while (list_next((sluice_bytes){hb + h->val_off, h->val_len}, &pos, &t))
            if (match(t, arg))
                return true;
    }
    return false;
}

/* A token beyond the usual close, keep-alive and upgrade (hop-by-hop
 * fields or no field): only then are fields looked up in Connection. */
static bool names_a_field(sluice_bytes t, sluice_bytes unused)
{
    (void)unused;
    return !name_is(t, "close") && !name_is(t, "keep-alive") && !name_is(t, "upgrade");
}

/* Some Upgrade field names the WebSocket protocol. */
static bool upgrade_websocket(conn *c)
{
    uint8_t *hb = c->head.data;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        sluice_bytes t;
        if (!name_is((sluice_bytes){hb + h->name_off, h->name_len}, "upgrade"))
            continue;
        size_t pos = 0;
        while (list_next((sluice_bytes){hb + h->val_off, h->val_len}, &pos, &t))
            if (name_is(t, "websocket"))
                return true;
    }
    return false;
}

/* Headers are complete: build the stream and hand it to the pool. */
static void start_exchange(conn *c)
{
    gateway *gw = c->gw;
    const sluice_config *cfg = gw->cfg;
    llhttp_t *p = &c->parser;
    if (!head_acceptable(c)) {
        c->error_status = 400;
        return;
    }
    stream *s = stream_get(gw, c->max_headers + MAX_TRAILERS);
    if (!s) {
        c->error_status = 503;
        return;
    }
    s->ops = &h1_stream_ops;
    s->owner = c;
    c->chunked_out = c->close_delimited = false;
    s->start_ms = uv_hrtime() / 1000;
    c->cur = s;
    c->requests++;
    /* room for trailers that must not move the head buffer later */
    sluice_buf_reserve(&c->head, TRAILER_BYTES);

    uint8_t *hb = c->head.data;
    const char *method = llhttp_method_name((llhttp_method_t)p->method);
    s->req.method = (sluice_bytes){(const uint8_t *)method, strlen(method)};
    s->req.target = (sluice_bytes){hb + c->url_off, c->url_len};
    s->req.version = p->http_major == 1 && p->http_minor == 0 ? 10 : 11;
    s->req.client = (sluice_addr){{(const uint8_t *)c->remote, strlen(c->remote)}, c->remote_port};
    s->req.server = (sluice_addr){{(const uint8_t *)c->local, strlen(c->local)}, c->local_port};
    s->req.scheme = (sluice_bytes){(const uint8_t *)c->scheme, strlen(c->scheme)};

    bool expect_continue = false, expect_other = false;
    sluice_bytes host = {NULL, 0};
    const uint8_t *auth = NULL;
    size_t auth_len = 0;
    bool absolute = target_authority(s->req.target.ptr, s->req.target.len, &auth, &auth_len) == 1;
    bool conn_options = connection_token(c, names_a_field, (sluice_bytes){NULL, 0});
    bool ws_upgrade = upgrade_websocket(c);
    bool conn_upgrade = ws_upgrade && connection_token(c, bytes_caseeq, (sluice_bytes){(const uint8_t *)"upgrade", 7});
    size_t n = 0;
    for (uint32_t i = 0; i < c->n_req_headers; i++) {
        hoff *h = &c->hoffs[i];
        uint8_t *name = hb + h->name_off;
        for (uint32_t k = 0; k < h->name_len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z')
                name[k] += 32;
        sluice_bytes nb = {name, h->name_len}, vb = {hb + h->val_off, h->val_len};
        if (hop_by_hop(nb) && !(name_is(nb, "te") && te_trailers_only(vb)))
            continue;
        if (conn_options && !name_is(nb, "host") && connection_token(c, bytes_caseeq, nb))
            continue; /* RFC 9110 7.6.1: named in Connection, for this hop only */
        if (name_is(nb, "expect")) {
            if (vb.len == 12 && !strncasecmp((const char *)vb.ptr, "100-continue", 12))
                expect_continue = true;
            else
                expect_other = true;
            continue;
        }
        if (!host.ptr && name_is(nb, "host")) {
            host = vb;
            if (absolute) /* RFC 9112 3.2.2: the target's authority replaces Host */
                vb = (sluice_bytes){auth, auth_len};
        }
        s->hdrs[n].name = nb;
        s->hdrs[n].value = vb;
        n++;
    }
    s->req.headers = (sluice_headers){s->hdrs, n};
    if (absolute)
        host = (sluice_bytes){auth, auth_len};
    stream_route(s, host.ptr, host.len);

    bool chunked = p->flags & F_CHUNKED;
    bool has_cl = p->flags & F_CONTENT_LENGTH;
    if (has_cl && !chunked) {
        s->has_length = true;
        s->content_length = p->content_length;
    }
    bool has_body = chunked || (has_cl && p->content_length > 0);
    int ws_status = ws_h1_check(s, ws_upgrade, conn_upgrade, has_body);
    if (ws_status > 0) { /* a broken WebSocket handshake never reaches a worker */
        c->keepalive = false;
        s->body_mode = SLUICE_BODY_NONE;
        s->req_complete = !has_body;
        h1_exchange_fail(c, ws_status, 0);
        return;
    }
    if (!has_body)
        s->body_mode = SLUICE_BODY_NONE;
    else if ((expect_continue && s->req.version == 11) ||
             (s->has_length && s->content_length > s->body_limit))
        s->body_mode = SLUICE_BODY_ON_CREDIT;
    else
        s->body_mode = SLUICE_BODY_FOLLOWS;
    s->expect_continue = expect_continue && s->req.version == 11;
    if (s->body_mode == SLUICE_BODY_NONE)
        s->req_complete = true; /* message_complete follows at once */
    c->keepalive = llhttp_should_keep_alive(p) && !gw->stopping &&
                   (cfg->max_requests_per_conn == 0 || c->requests < cfg->max_requests_per_conn);
    if (chunked && s->req.version == 10)
        c->keepalive = false; /* RFC 9112 6.1: faulty framing for 1.0; serve, then close */
    if (expect_other) {
        h1_exchange_fail(c, 417, 0);
        return;
    }
    int rc = stream_submit(s);
    if (rc == 1)
        h1_set_timer(c, T_QUEUE);
    else if (rc < 0)
        h1_exchange_fail(c, stream_submit_status(rc), 0);
}

const llhttp_settings_t h1_parser_settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_method_complete = cb_method_complete,
    .on_version_complete = cb_version_complete,
    .on_header_field = cb_header_field,
    .on_header_field_complete = cb_header_field_complete,
    .on_header_value = cb_header_value,
    .on_header_value_complete = cb_header_value_complete,
    .on_headers_complete = cb_headers_complete,
    .on_chunk_header = cb_chunk_header,
    .on_chunk_complete = cb_chunk_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};
