/* HTTP/2 front end: what the client sends, from nghttp2's receive
 * callbacks -- request heads into streams (pseudo-header fields, Host from
 * :authority, cookies joined, limits), request bodies within the worker's
 * credit, trailers, stream closes, and the flood accounting nghttp2 leaves
 * to us. nghttp2 has already checked the rest of RFC 9113 (stream states,
 * frame sizes, header validity, connection-specific fields, content-length
 * against DATA). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "front/h2/conn.h"
#include "front/http1/fields.h"

static h2s *stream_of(nghttp2_session *ng, int32_t id) { return nghttp2_session_get_stream_user_data(ng, id); }

/* Hold an nghttp2 buffer for the stream's lifetime; its bytes as a view. */
static sluice_bytes hold(h2s *x, nghttp2_rcbuf *rc)
{
    nghttp2_rcbuf_incref(rc);
    x->rc[x->n_rc++] = rc;
    nghttp2_vec v = nghttp2_rcbuf_get_buf(rc);
    return (sluice_bytes){v.base, v.len};
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        h2s *x = stream_of(ng, frame->hd.stream_id);
        if (x)
            x->in_trailers = true;
        return 0;
    }
    c->got_request = true;
    h2s *x = h2s_new(c, frame->hd.stream_id);
    if (!x)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
    /* a slot beyond max_headers for a Host made from :authority */
    stream *s = stream_get(c->gw, x->max_headers + 1 + H2_MAX_TRAILERS);
    if (!s) {
        h2s_close(x, NGHTTP2_NO_ERROR);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->ops = &h2_stream_ops;
    s->owner = x;
    s->start_ms = uv_hrtime() / 1000;
    x->s = s;
    c->requests++;
    nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, x);
    if (c->gw->cfg->header_timeout_ms)
        h2_arm(c, c->gw->cfg->header_timeout_ms); /* for the rest of the header block */
    return 0;
}

static bool is(sluice_bytes b, const char *lit)
{
    size_t n = strlen(lit);
    return b.len == n && !memcmp(b.ptr, lit, n);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, nghttp2_rcbuf *name, nghttp2_rcbuf *value,
                     uint8_t flags, void *ud)
{
    (void)flags;
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2s *x = stream_of(ng, frame->hd.stream_id);
    if (!x || !x->s)
        return 0;
    const sluice_config *cfg = c->gw->cfg;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);
    /* RFC 9113 6.5.2: the uncompressed size, 32 octets per field more; an
     * HPACK bomb is stopped here, each field costing only a count */
    x->head_bytes += n.len + v.len + 32;
    if (x->head_error)
        return 0;
    if (x->head_bytes > (uint64_t)cfg->max_header_bytes + (x->in_trailers ? 4096 : 0)) {
        x->head_error = 431;
        return 0;
    }
    if (x->n_rc + 2 > x->rc_cap) {
        x->head_error = 431;
        return 0;
    }
    if (n.len && n.base[0] == ':') {
        if (x->in_trailers)
            return 0; /* nghttp2 refuses them; never forwarded */
        sluice_bytes nb = {n.base, n.len};
        if (is(nb, ":method"))
            x->method = hold(x, value);
        else if (is(nb, ":path"))
            x->path = hold(x, value);
        else if (is(nb, ":authority"))
            x->authority = hold(x, value);
        else if (is(nb, ":protocol")) /* extended CONNECT: nghttp2 allows it with CONNECT only */
            x->protocol = hold(x, value);
        return 0; /* :scheme: the connection's scheme is what REQUEST carries */
    }
    stream *s = x->s;
    if (x->in_trailers) {
        if (x->n_trailers >= H2_MAX_TRAILERS)
            return 0; /* trailers beyond the bound are dropped, as for HTTP/1.1 */
        uint32_t i = x->n_headers + x->n_trailers++;
        s->hdrs[i].name = hold(x, name);
        s->hdrs[i].value = hold(x, value);
        return 0;
    }
    if (x->n_headers >= x->max_headers) {
        x->head_error = 431;
        return 0;
    }
    if (n.len == 6 && !memcmp(n.base, "expect", 6)) {
        /* handled here, as for HTTP/1.1: 100-continue is answered when the
         * worker starts reading; any other expectation gets 417 */
        if (v.len == 12 && !strncasecmp((const char *)v.base, "100-continue", 12))
            x->expect_continue = true;
        else
            x->head_error = 417;
        return 0;
    }
    uint32_t i = x->n_headers++;
    s->hdrs[i].name = hold(x, name);
    s->hdrs[i].value = hold(x, value);
    if (is(s->hdrs[i].name, "cookie"))
        x->n_cookies++;
    else if (x->host_index < 0 && is(s->hdrs[i].name, "host"))
        x->host_index = (int)i;
    return 0;
}

/* RFC 9113 8.2.3: cookie fields a client split are joined with "; " for
 * the worker, which sees one, as from HTTP/1.1. */
static int join_cookies(h2s *x)
{
    stream *s = x->s;
    size_t total = 0;
    for (uint32_t i = 0; i < x->n_headers; i++)
        if (is(s->hdrs[i].name, "cookie"))
            total += s->hdrs[i].value.len + 2;
    x->cookie = malloc(total);
    if (!x->cookie)
        return -ENOMEM;
    size_t len = 0;
    uint32_t first = UINT32_MAX, out = 0;
    for (uint32_t i = 0; i < x->n_headers; i++) {
        sluice_header h = s->hdrs[i];
        if (is(h.name, "cookie")) {
            if (len) {
                memcpy(x->cookie + len, "; ", 2);
                len += 2;
            }
            memcpy(x->cookie + len, h.value.ptr, h.value.len);
            len += h.value.len;
            if (first != UINT32_MAX)
                continue; /* folded into the first */
            first = out;
        }
        if ((int)i == x->host_index)
            x->host_index = (int)out;
        s->hdrs[out++] = h;
    }
    s->hdrs[first].value = (sluice_bytes){x->cookie, len};
    x->n_headers = out;
    return 0;
}

/* RFC 8441 5: a WebSocket's extended CONNECT carries the version (13;
 * else 426 as RFC 6455 4.4 says) and no key. 0 or the status to answer. */
static int ws_h2_check(h2s *x)
{
    stream *s = x->s;
    int versions = 0;
    bool v13 = false;
    for (uint32_t i = 0; i < x->n_headers; i++)
        if (is(s->hdrs[i].name, "sec-websocket-version")) {
            versions++;
            v13 = is(s->hdrs[i].value, "13");
        }
    if (versions != 1)
        return 400;
    return v13 ? 0 : 426;
}

/* The request head is complete: build the exchange and place it. */
static void start_exchange(h2s *x, bool end_stream)
{
    h2conn *c = x->c;
    gateway *gw = c->gw;
    const sluice_config *cfg = gw->cfg;
    stream *s = x->s;
    x->head_done = true;
    if (end_stream)
        x->end_stream = true;
    s->req.method = x->method;
    s->req.target = x->path;
    s->req.version = 20;
    s->req.client = (sluice_addr){{(const uint8_t *)c->remote, strlen(c->remote)}, c->remote_port};
    s->req.server = (sluice_addr){{(const uint8_t *)c->local, strlen(c->local)}, c->local_port};
    s->req.scheme = (sluice_bytes){(const uint8_t *)c->scheme, strlen(c->scheme)};
    if (cfg->max_requests_per_conn && c->requests >= cfg->max_requests_per_conn)
        h2_goaway(c, NGHTTP2_NO_ERROR); /* this stream is still served */
    else if (gw->stopping)
        h2_goaway(c, NGHTTP2_NO_ERROR);

    int err = x->head_error;
    /* no tunnels; but a WebSocket over HTTP/2 (RFC 8441) is an extended
     * CONNECT with :protocol websocket */
    bool websocket = is(x->method, "CONNECT") && is(x->protocol, "websocket");
    if (!err && is(x->method, "CONNECT") && !websocket)
        err = 501;
    if (!err && websocket)
        err = ws_h2_check(x);
    if (!err && x->path.len > cfg->max_target)
        err = 414;
    /* Host: :authority wins (RFC 9113 8.3.1), else the client's host field */
    sluice_bytes host = x->authority;
    if (!err && x->authority.len) {
        if (x->host_index >= 0) {
            s->hdrs[x->host_index].value = x->authority;
        } else {
            s->hdrs[x->n_headers].name = (sluice_bytes){(const uint8_t *)"host", 4};
            s->hdrs[x->n_headers].value = x->authority;
            x->host_index = (int)x->n_headers++;
        }
    } else if (!err && x->host_index >= 0) {
        host = s->hdrs[x->host_index].value;
    } else if (!err) {
        err = 400;
    }
    if (!err && !host_valid(host.ptr, host.len))
        err = 400;
    if (!err && x->n_cookies > 1 && join_cookies(x) < 0)
        err = 503;
    s->req.headers = (sluice_headers){s->hdrs, x->n_headers};
    if (err) {
        h2_fail(x, err, 0);
        return;
    }
    stream_route(s, host.ptr, host.len);

    if (websocket) {
        /* the worker sees the request it would see over HTTP/1.1: GET, no
         * body; the stream's DATA are the WebSocket's once it accepts */
        s->req.method = (sluice_bytes){(const uint8_t *)"GET", 3};
        s->body_mode = SLUICE_BODY_NONE;
        s->req_complete = true;
        s->ws_offer = true;
    } else {
        for (uint32_t i = 0; i < x->n_headers; i++)
            if (is(s->hdrs[i].name, "content-length") &&
                parse_content_length(s->hdrs[i].value, &s->content_length))
                s->has_length = true;
        if (end_stream || (s->has_length && s->content_length == 0))
            s->body_mode = SLUICE_BODY_NONE;
        else if (x->expect_continue || (s->has_length && s->content_length > s->body_limit))
            s->body_mode = SLUICE_BODY_ON_CREDIT; /* the worker may raise the limit first */
        else
            s->body_mode = SLUICE_BODY_FOLLOWS;
        s->expect_continue = x->expect_continue && s->body_mode != SLUICE_BODY_NONE;
        if (end_stream)
            s->req_complete = true;
    }
    x->mark = uv_now(gw->loop);
    int rc = stream_submit(s);
    if (rc == 1)
        h2_arm(c, stream_config(s)->queue_timeout_ms);
    else if (rc < 0)
        h2_fail(x, stream_submit_status(rc), 0);
}

/* One more RST_STREAM from the client within the rapid-reset bucket? */
static bool reset_allowed(h2conn *c)
{
    uint64_t now = uv_now(c->gw->loop);
    c->reset_credit += (now - c->reset_mark) * H2_RESET_RATE; /* per ms: thousandths */
    c->reset_mark = now;
    if (c->reset_credit > H2_RESET_BURST * 1000ull)
        c->reset_credit = H2_RESET_BURST * 1000ull;
    if (c->reset_credit < 1000)
        return false;
    c->reset_credit -= 1000;
    return true;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_DATA:
        /* CVE-2019-9518: empty frames cost work and carry nothing */
        if (frame->hd.length == 0 && !end && ++c->empty_frames > H2_MAX_EMPTY_FRAMES) {
            slog(c->gw->log, LOG_INFO, "h2: %s: more than %u empty DATA frames; closing", c->tr->peer,
                 H2_MAX_EMPTY_FRAMES);
            h2_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM);
            /* the rest of this read is not processed (nor logged per frame):
             * the GOAWAY is queued and the connection is closing */
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
    case NGHTTP2_HEADERS:
        break;
    case NGHTTP2_RST_STREAM:
        if (!reset_allowed(c)) {
            slog(c->gw->log, LOG_INFO, "h2: %s: streams reset faster than %u/s (burst %u); closing", c->tr->peer,
                 H2_RESET_RATE, H2_RESET_BURST);
            h2_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM);
            /* no stream opened after this one reaches a worker */
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
    default:
        return 0;
    }
    h2s *x = stream_of(ng, frame->hd.stream_id);
    if (x && x->ws) { /* a WebSocket: the client's END_STREAM is its end */
        if (end && !x->end_stream) {
            x->end_stream = true;
            ws_session_eof(x->ws);
        }
        return 0;
    }
    if (!x || !x->s)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        start_exchange(x, end);
        return 0;
    }
    if (end && !x->end_stream) { /* the last DATA frame, or trailers */
        x->end_stream = true;
        x->s->req_complete = true;
        h2_forward_body(x);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *ud)
{
    (void)flags;
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2s *x = stream_of(ng, id);
    if (x && !x->discard && (x->ws || (x->s && x->s->ws_offer))) {
        /* WebSocket frames: kept (unmasked in place) until the session
         * takes them; before the worker accepted, only kept. Our stream
         * window bounds them: only what the session took reopens it. */
        if (x->pending_len + len > x->pending_cap) {
            size_t cap = x->pending_len + len < H2_STREAM_WINDOW ? H2_STREAM_WINDOW : x->pending_len + len;
            uint8_t *p = realloc(x->pending, cap);
            if (!p) {
                nghttp2_session_consume(ng, id, len);
                h2_reset(x, NGHTTP2_INTERNAL_ERROR);
                return 0;
            }
            x->pending = p;
            x->pending_cap = cap;
        }
        memcpy(x->pending + x->pending_len, data, len);
        x->pending_len += len;
        h2_ws_feed(x);
        return 0;
    }
    if (!x || !x->s || x->discard) {
        nghttp2_session_consume(ng, id, len); /* not wanted: reopen the window */
        return 0;
    }
    stream *s = x->s;
    x->body_mark = uv_now(c->gw->loop);
    s->body_received += len;
    if (s->body_received > s->body_limit) {
        nghttp2_session_consume(ng, id, len);
        h2_fail(x, 413, SLUICE_CANCEL_BODY_TOO_LARGE);
        return 0;
    }
    if (s->link && x->pending_len == 0) {
        uint32_t win = stream_send_window(s);
        size_t n = len < win ? len : win;
        if (n && stream_send_body(s, data, n) == 0) {
            s->body_sent += n;
            nghttp2_session_consume(ng, id, n);
            data += n;
            len -= n;
        }
    }
    if (len) {
        /* bounded by our stream window: only forwarded bytes reopen it */
        size_t need = x->pending_len + len;
        if (need > x->pending_cap) {
            size_t cap = need < H2_STREAM_WINDOW ? H2_STREAM_WINDOW : need;
            uint8_t *p = realloc(x->pending, cap);
            if (!p) {
                nghttp2_session_consume(ng, id, len);
                h2_fail(x, 503, 0);
                return 0;
            }
            x->pending = p;
            x->pending_cap = cap;
        }
        memcpy(x->pending + x->pending_len, data, len);
        x->pending_len += len;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    h2conn *c = ud;
    if (c->closed)
        return 0;
    h2s *x = stream_of(ng, id);
    if (x)
        h2s_close(x, error_code);
    return 0;
}

static bool reset_recently(const h2conn *c, int32_t id)
{
    uint32_t n = c->n_resets < H2_RESET_RING ? c->n_resets : H2_RESET_RING;
    for (uint32_t i = 0; i < n; i++)
        if (c->resets[i] == id)
            return true;
    return false;
}

/* RFC 9113 5.1.1: a HEADERS frame on a stream id below one the client
 * already used is a connection error. nghttp2 ignores such a frame when
 * it no longer knows the stream (it cannot tell a late trailer on a stream
 * it reset); we remember the streams we reset, so anything else is the
 * client's error. */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    h2conn *c = ud;
    if (c->closed)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (hd->type != NGHTTP2_HEADERS || !(hd->stream_id & 1))
        return 0;
    if (hd->stream_id > c->last_client_id) {
        c->last_client_id = hd->stream_id;
        return 0;
    }
    if (!nghttp2_session_find_stream(ng, hd->stream_id) && !reset_recently(c, hd->stream_id))
        nghttp2_session_terminate_session(ng, NGHTTP2_PROTOCOL_ERROR);
    return 0;
}

void h2_set_recv_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
}
